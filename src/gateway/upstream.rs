//! Reverse proxy to the team's own handler: the exact verified bytes, pooled keep-alive
//! connections, connect and response timeouts, and upstream trouble answered as retryable 5xx.
//!
//! Each gateway worker has its own small pool of HTTP/1.1 connections (hyper's connection-level
//! client): a request, its upstream connection and its answer stay on one thread. A request that
//! could not even be written on a pooled connection the upstream had closed is sent again on a
//! new one. The pool keeps a bounded number of idle connections and closes those idle too long
//! ([`Pool`]).
//!
//! The upstream's answer is read whole (at most [`MAX_ANSWER_BYTES`], within the response
//! timeout, which covers head and body) before anything is answered: a `200` reaches the sender
//! only once the handler has finished answering it. An answer that breaks off, stalls or is too
//! large is a retryable `502`/`504`, never a truncated `200`. A connection goes back to the pool
//! only after a whole answer; one whose exchange failed or timed out is dropped.

use super::codes;
use std::{
    convert::Infallible,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError, Weak,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{
    header, uri::PathAndQuery, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode,
    Uri,
};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::{
    body::Incoming,
    client::conn::http1::{self, SendRequest},
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use super::Error;
use crate::{
    body::ResponseBody, client_checks::TlsConnection, problem::Problem, signature::VerifiedBody,
};

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1); never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Upstream forwarding: a reverse proxy to the team's own handler, as a tower service behind
/// [`VerifySignatureLayer`](crate::VerifySignatureLayer). Made with [`Upstream::builder`].
///
/// Each call forwards the exact verified bytes with the request's headers (the signature
/// header included), hop-by-hop headers dropped and `X-Forwarded-For` / `-Proto` / `-Host`
/// added, to the configured URL (the delivery's query appended to the URL's), over a pooled
/// HTTP/1.1 keep-alive connection. The upstream's whole answer (at most 1 MiB, read within the
/// response timeout) is passed on with an exact `Content-Length`; trouble is a retryable
/// problem, never a `4xx`: unreachable `503 upstream_unavailable` (with `Retry-After`), failed,
/// broke off or answered too much `502 upstream_failed`, too slow `504 upstream_timeout`.
///
/// Clones share one connection pool: at most [`pool_max_idle`](UpstreamBuilder::pool_max_idle)
/// idle connections (64), each closed once idle for
/// [`pool_idle_timeout`](UpstreamBuilder::pool_idle_timeout) (90 s), by a task on the runtime
/// that made the pool's first connection. The gateway gives each worker thread a pool of its
/// own (one [`UpstreamBuilder::build`] each), so that a request and its upstream connection
/// stay on one thread.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use hookgate::{gateway::Upstream, scheme::ElevenLabs, VerifySignatureLayer};
/// use tower::ServiceBuilder;
///
/// let upstream = Upstream::builder("http://127.0.0.1:9000/hook")
///     .response_timeout(Duration::from_secs(5))
///     .build()?;
/// let scheme = ElevenLabs::new(std::env::var("ELEVENLABS_WEBHOOK_SECRET")?)?;
/// let service = ServiceBuilder::new()
///     .layer(VerifySignatureLayer::new(scheme))
///     .service(upstream);
/// # let _ = service;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Upstream {
    pool: Arc<Pool>,
    // Behind an `Arc`: every layer's future holds a clone of this service, and moves it.
    forwarding: Arc<Forwarding>,
    response_timeout: Duration,
}

/// How a delivery's request is rewritten for the upstream, worked out once.
#[derive(Debug)]
struct Forwarding {
    base: Uri,
    /// The request target when the delivery has no query: the base path, parsed once.
    target: Uri,
    /// The `Host` header for the upstream.
    host: Option<HeaderValue>,
}

/// Idle keep-alive connections to the upstream: at most `max_idle`, each closed once it has
/// been idle for `idle_timeout`.
///
/// Connections are taken from and given back to the top of the stack, so the stack is ordered
/// by when each connection became idle, oldest at the bottom, and the connections a quieter
/// moment does not need sink to the bottom and expire. Expiry is the reaper's work (one task
/// per pool, sleeping until the oldest connection is due): a delivery only reads the clock when
/// it gives its connection back.
struct Pool {
    authority: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
    /// Whether the reaper runs (started by the first connection made).
    reaper: AtomicBool,
}

/// An idle connection, and since when.
struct Idle {
    sender: SendRequest<VerifiedBody>,
    since: Instant,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("authority", &self.authority)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_idle", &self.max_idle)
            .finish_non_exhaustive()
    }
}

/// Most idle connections kept per pool (per worker), by default.
const MAX_IDLE: usize = 64;
/// How long a connection may stay idle in the pool, by default (hyper-util's client's).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The largest answer body read from the upstream; a larger one is an upstream failure. The
/// sender only looks at the status, so this bounds what a misbehaving handler can make each
/// in-flight delivery hold in memory.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Why a delivery could not be handed to the upstream, or its answer not read whole.
enum Failure {
    Connect(String),
    /// Failed before the answer's head arrived.
    Exchange(hyper::Error),
    /// The answer's head arrived, its body broke off.
    Body(Box<dyn std::error::Error + Send + Sync>),
    /// The answer's body is larger than [`MAX_ANSWER_BYTES`].
    TooLarge,
}

impl Pool {
    /// An idle connection that can take a request now; closed or busy ones are dropped.
    fn take_idle(&self) -> Option<SendRequest<VerifiedBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(Idle { sender, .. }) = idle.pop() {
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    /// Keeps `sender` for the next exchange, unless it is closed or the pool holds as many as it
    /// may; a connection not kept is closed (dropping its sender ends it).
    fn give_back(&self, sender: SendRequest<VerifiedBody>) {
        if sender.is_closed() || self.idle_timeout.is_zero() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Closes the connections idle since `now - idle_timeout` or longer; when the oldest of the
    /// others is due.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let expired: Vec<Idle> = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let due = idle.partition_point(|held| held.since + self.idle_timeout <= now);
            idle.drain(..due).collect()
        };
        // Closed outside the lock.
        drop(expired);
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.first().map(|oldest| oldest.since + self.idle_timeout)
    }

    /// Starts the reaper on the current runtime, once.
    fn start_reaper(self: &Arc<Self>) {
        if !self.reaper.swap(true, Ordering::AcqRel) {
            tokio::spawn(reap(Arc::downgrade(self)));
        }
    }

    async fn connect(self: &Arc<Self>) -> Result<SendRequest<VerifiedBody>, Failure> {
        let stream =
            tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.authority))
                .await
                .map_err(|_| {
                    Failure::Connect(format!("no connection within {:?}", self.connect_timeout))
                })?
                .map_err(|e| Failure::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Failure::Connect(e.to_string()))?;
        // On this worker's runtime: the connection is driven where its requests come from.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        self.start_reaper();
        Ok(sender)
    }

    /// Sends on a pooled connection, or a new one, and reads the whole answer; the connection
    /// comes back to the pool only then. On any failure (and when the caller's deadline drops
    /// this future) the connection is dropped with it, never reused.
    async fn exchange(
        self: Arc<Self>,
        mut request: Request<VerifiedBody>,
    ) -> Result<Response<PooledBody>, Failure> {
        loop {
            let (mut sender, fresh) = match self.take_idle() {
                Some(sender) => (sender, false),
                // Boxed: connecting is rare, and its future would otherwise make every
                // exchange's future as large as itself.
                None => (Box::pin(self.connect()).await?, true),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let bytes = read_whole(body).await?;
                    // Read to its end: the connection can carry the next exchange.
                    self.give_back(sender);
                    return Ok(Response::from_parts(parts, PooledBody::new(bytes)));
                }
                Err(mut error) => match error.take_message() {
                    // Never written: the pooled connection was already closed. Try another.
                    Some(unsent) if !fresh => request = unsent,
                    _ => return Err(Failure::Exchange(error.into_error())),
                },
            }
        }
    }
}

/// The pool's reaper: sleeps until its oldest idle connection is due (or an idle timeout, when
/// it holds none: a connection given back later is due later still), closes what is due, and
/// ends with the pool.
async fn reap(pool: Weak<Pool>) {
    loop {
        let next = {
            let Some(pool) = pool.upgrade() else {
                return;
            };
            let now = Instant::now();
            pool.expire(now).unwrap_or(now + pool.idle_timeout)
        };
        tokio::time::sleep_until(next.into()).await;
    }
}

/// The upstream's answer body, up to [`MAX_ANSWER_BYTES`], in one buffer (one copy at most:
/// none when it arrived in one piece).
async fn read_whole(body: Incoming) -> Result<Bytes, Failure> {
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    // A declared length over the cap fails before anything is read.
    if body.size_hint().lower() > MAX_ANSWER_BYTES as u64 {
        return Err(Failure::TooLarge);
    }
    match Limited::new(body, MAX_ANSWER_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(Failure::TooLarge),
        Err(error) => Err(Failure::Body(error)),
    }
}

/// The upstream's whole answer body, already read (its connection back in the pool): one data
/// frame of an exact size. Trailers are not passed on.
#[derive(Debug, Default)]
struct PooledBody {
    bytes: Option<Bytes>,
}

impl PooledBody {
    fn new(bytes: Bytes) -> Self {
        // An empty body yields no frame at all.
        Self {
            bytes: (!bytes.is_empty()).then_some(bytes),
        }
    }

    fn len(&self) -> usize {
        self.bytes.as_ref().map_or(0, Bytes::len)
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    // Never produced: the answer was read whole.
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(self.get_mut().bytes.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len() as u64)
    }
}

destination_body!(
    /// The answer body of the [`Upstream`]: the upstream's whole answer, already read, or a
    /// problem+json body saying why there is none. One frame of an exact size.
    UpstreamBody(PooledBody),
    "So that hookgate's layers in front of an [`Upstream`] answer with the same body type."
);

/// Makes the answer's `Content-Length` the body's: the upstream's may be missing (a chunked
/// answer) or describe what a 204/304 does not carry.
fn exact_content_length(status: StatusCode, headers: &mut HeaderMap, len: usize) {
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        // No body, so no length: the server writes what the status sent on allows.
        headers.remove(header::CONTENT_LENGTH);
        return;
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared != Some(len as u64) || headers.get_all(header::CONTENT_LENGTH).iter().count() > 1 {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len as u64));
    }
}

/// The settings of an [`Upstream`]: its URL, and how long connecting and answering may take.
#[derive(Clone, Debug)]
pub struct UpstreamBuilder {
    url: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    pool_idle_timeout: Duration,
    pool_max_idle: usize,
}

impl UpstreamBuilder {
    /// How long connecting to the upstream may take; then `503 upstream_unavailable`. 2 s by
    /// default.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the upstream's whole answer (head and body) may take from when the delivery is
    /// handed to it; then `504 upstream_timeout`. 10 s by default.
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long a connection may stay idle in the pool before it is closed (90 s); zero keeps
    /// no connection for a next delivery. Below the upstream's own keep-alive timeout, so that
    /// the gateway closes an idle connection before the upstream does.
    #[must_use]
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// How many idle connections the pool keeps at most (64); more, after a burst, are closed
    /// as their exchanges end. The gateway has a pool per worker, so a gateway keeps up to this
    /// many per worker.
    #[must_use]
    pub fn pool_max_idle(mut self, connections: usize) -> Self {
        self.pool_max_idle = connections;
        self
    }

    /// The URL deliveries are forwarded to.
    /// The longest a forwarded delivery may take: connecting, then the answer.
    pub(crate) fn deadline(&self) -> Duration {
        self.connect_timeout + self.response_timeout
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// An upstream with these settings and a connection pool of its own (empty: connections
    /// are made as deliveries need them).
    ///
    /// # Errors
    ///
    /// [`Error::UpstreamUrl`] unless the URL is `http://host[:port][/path][?query]` (plain HTTP:
    /// the upstream is the team's own handler, next to the gateway).
    pub fn build(&self) -> Result<Upstream, Error> {
        let url = &self.url;
        let invalid = |reason: String| Error::UpstreamUrl {
            url: url.clone(),
            reason,
        };
        let base: Uri = url.parse().map_err(|e| invalid(format!("{e}")))?;
        match base.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(invalid(format!(
                    "scheme {other} is not supported; use http:// to a local handler"
                )))
            }
            None => return Err(invalid("needs http://host:port".into())),
        }
        let Some(authority) = base.authority() else {
            return Err(invalid("needs a host".into()));
        };
        let host = HeaderValue::from_str(authority.as_str()).ok();
        let authority = if base.port().is_some() {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let target = target(&base, None);
        Ok(Upstream {
            pool: Arc::new(Pool {
                authority,
                connect_timeout: self.connect_timeout,
                idle_timeout: self.pool_idle_timeout,
                max_idle: self.pool_max_idle,
                idle: Mutex::new(Vec::new()),
                reaper: AtomicBool::new(false),
            }),
            forwarding: Arc::new(Forwarding { base, target, host }),
            response_timeout: self.response_timeout,
        })
    }
}

impl Upstream {
    /// The settings of an upstream at `url` (`http://host[:port][/path][?query]`), checked by
    /// [`UpstreamBuilder::build`].
    pub fn builder(url: impl Into<String>) -> UpstreamBuilder {
        UpstreamBuilder {
            url: url.into(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(10),
            pool_idle_timeout: IDLE_TIMEOUT,
            pool_max_idle: MAX_IDLE,
        }
    }

    /// The upstream request target for a delivery to `original`.
    fn target(&self, original: &Uri) -> Uri {
        match original.query() {
            None => self.forwarding.target.clone(),
            query => target(&self.forwarding.base, query),
        }
    }
}

/// The upstream request target (origin form): the configured path, with the delivery's query
/// appended to the configured one.
fn target(base: &Uri, query: Option<&str>) -> Uri {
    let path = base.path();
    let path_and_query = match (base.query(), query) {
        (Some(a), Some(b)) => format!("{path}?{a}&{b}"),
        (Some(q), None) | (None, Some(q)) => format!("{path}?{q}"),
        (None, None) => path.to_owned(),
    };
    PathAndQuery::try_from(path_and_query)
        .map(Uri::from)
        .unwrap_or_else(|_| Uri::from_static("/"))
}

/// The index of `name` in [`HOP_BY_HOP`]: one match on the name's text (its length first),
/// instead of eight name comparisons for every header.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-authenticate" => 2,
        "proxy-authorization" => 3,
        "te" => 4,
        "trailer" => 5,
        "transfer-encoding" => 6,
        "upgrade" => 7,
        _ => return None,
    })
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass to see which are present (most messages carry at most `Connection`), then
    // remove only those.
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(index) = hop_by_hop_index(name) {
            present |= 1 << index;
        }
    }
    if present == 0 {
        return;
    }
    // Headers named in `Connection` are hop-by-hop too. The usual tokens, `keep-alive` (listed
    // already) and `close`, name nothing more.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| {
            !token.is_empty()
                && !token.eq_ignore_ascii_case("keep-alive")
                && !token.eq_ignore_ascii_case("close")
        })
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for (index, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << index) != 0 {
            headers.remove(name);
        }
    }
    for name in &named {
        headers.remove(name);
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// `X-Forwarded-For`: what a trusted proxy in front already said, then the peer.
fn forwarded_for(prior: Option<&HeaderValue>, peer: IpAddr) -> Option<HeaderValue> {
    let mut value = Vec::with_capacity(64);
    if let Some(prior) = prior {
        value.extend_from_slice(prior.as_bytes());
        value.extend_from_slice(b", ");
    }
    match peer {
        // The common case, without the formatting machinery.
        IpAddr::V4(ip) => {
            let mut digits = itoa::Buffer::new();
            for (index, octet) in ip.octets().into_iter().enumerate() {
                if index > 0 {
                    value.push(b'.');
                }
                value.extend_from_slice(digits.format(octet).as_bytes());
            }
        }
        IpAddr::V6(ip) => {
            use std::io::Write;
            write!(value, "{ip}").ok()?;
        }
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from(value)).ok()
}

fn forwarded_request(upstream: &Upstream, request: Request<VerifiedBody>) -> Request<VerifiedBody> {
    let (mut parts, body) = request.into_parts();
    let peer = parts.extensions.get::<SocketAddr>().map(|a| a.ip());
    let tls = parts.extensions.get::<TlsConnection>().is_some();
    parts.uri = upstream.target(&parts.uri);
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    if let Some(host) = headers.remove(header::HOST) {
        headers.insert(X_FORWARDED_HOST, host);
    }
    if let Some(host) = &upstream.forwarding.host {
        headers.insert(header::HOST, host.clone());
    }
    if let Some(ip) = peer {
        if let Some(value) = forwarded_for(headers.get(&X_FORWARDED_FOR), ip) {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    parts.version = http::Version::HTTP_11;
    Request::from_parts(parts, body)
}

impl Service<Request<VerifiedBody>> for Upstream {
    type Response = Response<UpstreamBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<VerifiedBody>) -> Self::Future {
        let request = forwarded_request(self, request);
        let pool = self.pool.clone();
        let timeout = self.response_timeout;
        // The exchange's future is made inside the boxed one, in place, rather than made here
        // and moved (with its deadline) into the box: a delivery copies it once, not three
        // times.
        Box::pin(async move {
            let problem = match tokio::time::timeout(timeout, pool.exchange(request)).await {
                Ok(Ok(response)) => {
                    let (mut parts, body) = response.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    exact_content_length(parts.status, &mut parts.headers, body.len());
                    let body = UpstreamBody {
                        inner: ResponseBody::new(body),
                    };
                    return Ok(Response::from_parts(parts, body));
                }
                Ok(Err(Failure::Connect(error))) => {
                    tracing::warn!(%error, "upstream unreachable");
                    Problem::new(StatusCode::SERVICE_UNAVAILABLE, codes::UPSTREAM_UNAVAILABLE)
                        .with_detail("the upstream handler could not be reached; retry later")
                        .with_retry_after(Duration::from_secs(30))
                }
                Ok(Err(Failure::Exchange(error))) => {
                    tracing::warn!(%error, "upstream failed");
                    Problem::new(StatusCode::BAD_GATEWAY, codes::UPSTREAM_FAILED)
                        .with_detail("the upstream handler failed before answering; retry later")
                }
                Ok(Err(Failure::Body(error))) => {
                    tracing::warn!(%error, "upstream answer broke off");
                    Problem::new(StatusCode::BAD_GATEWAY, codes::UPSTREAM_FAILED).with_detail(
                        "the upstream handler's answer broke off before its end; retry later",
                    )
                }
                Ok(Err(Failure::TooLarge)) => {
                    tracing::warn!(max_bytes = MAX_ANSWER_BYTES, "upstream answer too large");
                    Problem::new(StatusCode::BAD_GATEWAY, codes::UPSTREAM_FAILED).with_detail(
                        format!(
                            "the upstream handler's answer is larger than {} MiB; retry later",
                            MAX_ANSWER_BYTES >> 20
                        ),
                    )
                }
                Err(_) => {
                    tracing::warn!(
                        timeout_ms = timeout.as_millis() as u64,
                        "upstream timed out"
                    );
                    Problem::new(StatusCode::GATEWAY_TIMEOUT, codes::UPSTREAM_TIMEOUT).with_detail(
                        format!(
                            "the upstream handler did not answer whole within {} ms; retry later",
                            timeout.as_millis()
                        ),
                    )
                }
            };
            Ok(problem.into_response().map(|inner| UpstreamBody { inner }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::ProblemCode;

    fn upstream(url: &str) -> Upstream {
        Upstream::builder(url).build().unwrap()
    }

    #[test]
    fn only_plain_http_upstreams_with_a_host() {
        let new = |url: &str| Upstream::builder(url).build();
        assert!(new("https://example.test/").is_err());
        assert!(new("/just/a/path").is_err());
        assert!(new("not a url").is_err());
        assert!(new("http://127.0.0.1:9000/hook").is_ok());
    }

    #[test]
    fn target_keeps_the_upstream_path_and_appends_the_query() {
        let u = upstream("http://127.0.0.1:9000/hook?src=gw");
        let t = u.target(&"/webhooks/elevenlabs?x=1".parse().unwrap());
        assert_eq!(t, "/hook?src=gw&x=1");
        let t = upstream("http://127.0.0.1:9000").target(&"/webhooks/elevenlabs".parse().unwrap());
        assert_eq!(t, "/");
    }

    #[test]
    fn forwarded_for_appends_the_peer_of_any_length() {
        for peer in [
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
            "255.255.255.255",
        ] {
            let ip: IpAddr = peer.parse().unwrap();
            assert_eq!(forwarded_for(None, ip).unwrap(), ip.to_string().as_str());
        }
        let prior = HeaderValue::from_static("203.0.113.9, 198.51.100.2");
        assert_eq!(
            forwarded_for(Some(&prior), "10.0.0.7".parse().unwrap()).unwrap(),
            "203.0.113.9, 198.51.100.2, 10.0.0.7"
        );
    }

    #[test]
    fn hop_by_hop_index_matches_the_list() {
        for (index, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(index));
        }
        assert_eq!(hop_by_hop_index(&header::HOST), None);
        assert_eq!(hop_by_hop_index(&HeaderName::from_static("x-te")), None);
    }

    #[test]
    fn only_hop_by_hop_headers_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            "elevenlabs-signature",
            HeaderValue::from_static("t=1,v0=ab"),
        );
        let before = headers.clone();
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers, before);
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers, before);
    }

    #[test]
    fn forwarding_drops_hop_by_hop_and_adds_forwarded_headers() {
        let u = upstream("http://127.0.0.1:9000/hook");
        let mut request = Request::post("/webhooks/elevenlabs")
            .header("host", "gw.example")
            .header("connection", "keep-alive, x-private")
            .header("x-private", "hop")
            .header("keep-alive", "timeout=5")
            .header("elevenlabs-signature", "t=1,v0=ab")
            .header("x-forwarded-for", "203.0.113.9")
            .body(VerifiedBody::from_bytes(&b"{}"[..]))
            .unwrap();
        request
            .extensions_mut()
            .insert("10.0.0.7:5000".parse::<SocketAddr>().unwrap());
        request.extensions_mut().insert(TlsConnection);
        let forwarded = forwarded_request(&u, request);
        let h = forwarded.headers();
        assert!(h.get("connection").is_none());
        assert!(h.get("x-private").is_none());
        assert!(h.get("keep-alive").is_none());
        assert_eq!(h["x-forwarded-host"], "gw.example");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["elevenlabs-signature"], "t=1,v0=ab");
        assert_eq!(forwarded.uri(), "/hook");
        assert_eq!(h["host"], "127.0.0.1:9000");
    }

    /// A loopback upstream that answers 200 after the delay in `x-delay-ms`; counts the
    /// connections it accepts.
    async fn delaying_upstream() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                    let delay = request
                        .headers()
                        .get("x-delay-ms")
                        .and_then(|v| v.to_str().ok()?.parse().ok())
                        .unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (addr, connections)
    }

    #[tokio::test]
    async fn each_exchange_on_a_pooled_connection_has_its_own_response_deadline() {
        use http_body_util::BodyExt;
        use std::sync::atomic::Ordering;
        let (addr, connections) = delaying_upstream().await;
        let mut upstream = Upstream::builder(format!("http://{addr}/"))
            .response_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let mut deliver = |delay_ms: u64| {
            let request = Request::post("/webhooks/elevenlabs")
                .header("x-delay-ms", delay_ms)
                .body(VerifiedBody::from_bytes(&b"{}"[..]))
                .unwrap();
            let answer = upstream.call(request);
            async move {
                let response = answer.await.unwrap();
                let status = response.status();
                // Read to the end, which gives the connection back to the pool.
                response.into_body().collect().await.unwrap();
                status
            }
        };

        assert_eq!(deliver(0).await, StatusCode::OK);
        // Later than the first exchange's deadline, on the same connection: the next exchange
        // is timed from its own start.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(deliver(200).await, StatusCode::OK);
        assert_eq!(
            connections.load(Ordering::SeqCst),
            1,
            "the connection was reused"
        );

        let started = std::time::Instant::now();
        assert_eq!(deliver(5_000).await, StatusCode::GATEWAY_TIMEOUT);
        let waited = started.elapsed();
        assert!(
            (Duration::from_millis(250)..Duration::from_secs(2)).contains(&waited),
            "timed out after {waited:?}, not at the 300 ms deadline"
        );

        // A connection that timed out still has the request on it: never reused.
        assert_eq!(deliver(0).await, StatusCode::OK);
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    /// What a raw upstream does after writing its answer bytes.
    #[derive(Clone, Copy)]
    enum Then {
        /// Closes the connection.
        Close,
        /// Keeps the connection open, writing nothing more.
        Stall,
        /// Reads the next request on the connection and answers it the same way.
        KeepAlive,
    }

    /// Reads one request (head and `Content-Length` body) off `stream`; false at its end.
    async fn read_request(stream: &mut TcpStream) -> bool {
        use tokio::io::AsyncReadExt;
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while seen.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
        true
    }

    /// A loopback upstream writing exactly `answer` to each request, then doing `then`; counts
    /// the connections it accepts.
    async fn raw_upstream(
        answer: Vec<u8>,
        then: Then,
    ) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let answer = answer.clone();
                tokio::spawn(async move {
                    while read_request(&mut stream).await {
                        if stream.write_all(&answer).await.is_err() {
                            return;
                        }
                        match then {
                            Then::Close => return,
                            Then::Stall => {
                                tokio::time::sleep(Duration::from_secs(60)).await;
                                return;
                            }
                            Then::KeepAlive => {}
                        }
                    }
                });
            }
        });
        (addr, connections)
    }

    /// Delivers `{}` through `upstream`: the answer's status, headers, body and problem code.
    async fn deliver_to(
        upstream: &mut Upstream,
    ) -> (StatusCode, HeaderMap, Bytes, Option<ProblemCode>) {
        let request = Request::post("/webhooks/elevenlabs")
            .body(VerifiedBody::from_bytes(&b"{}"[..]))
            .unwrap();
        let response = upstream.call(request).await.unwrap();
        let code = response.extensions().get::<ProblemCode>().cloned();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, body, code)
    }

    /// The upstream service for `addr`, with a 300 ms response timeout.
    fn upstream_at(addr: SocketAddr) -> Upstream {
        Upstream::builder(format!("http://{addr}/"))
            .response_timeout(Duration::from_millis(300))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn an_answer_that_breaks_off_or_stalls_is_never_passed_on_as_it_is() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789".to_vec();
        let unfinished_chunk =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec();
        let over_the_cap = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_ANSWER_BYTES + 1
        )
        .into_bytes();
        let mut undeclared_over_the_cap =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..=MAX_ANSWER_BYTES / 65_536 {
            undeclared_over_the_cap.extend_from_slice(b"10000\r\n");
            undeclared_over_the_cap.extend_from_slice(&[b'x'; 65_536]);
            undeclared_over_the_cap.extend_from_slice(b"\r\n");
        }
        let cases = [
            (head.clone(), Then::Close, StatusCode::BAD_GATEWAY),
            (head, Then::Stall, StatusCode::GATEWAY_TIMEOUT),
            (
                unfinished_chunk.clone(),
                Then::Stall,
                StatusCode::GATEWAY_TIMEOUT,
            ),
            (unfinished_chunk, Then::Close, StatusCode::BAD_GATEWAY),
            (over_the_cap, Then::Stall, StatusCode::BAD_GATEWAY),
            (
                undeclared_over_the_cap,
                Then::Stall,
                StatusCode::BAD_GATEWAY,
            ),
        ];
        for (index, (answer, then, status)) in cases.into_iter().enumerate() {
            let (addr, connections) = raw_upstream(answer, then).await;
            let mut upstream = upstream_at(addr);
            let started = std::time::Instant::now();
            let (got, _, _, code) = deliver_to(&mut upstream).await;
            let waited = started.elapsed();
            assert_eq!(got, status, "case {index}");
            let expected = if status == StatusCode::GATEWAY_TIMEOUT {
                assert!(
                    (Duration::from_millis(250)..Duration::from_secs(2)).contains(&waited),
                    "case {index}: timed out after {waited:?}, not at the 300 ms deadline"
                );
                codes::UPSTREAM_TIMEOUT
            } else {
                assert!(
                    waited < Duration::from_millis(250),
                    "case {index}: {waited:?}"
                );
                codes::UPSTREAM_FAILED
            };
            assert_eq!(code, Some(expected), "case {index}");
            // The failed connection was not pooled: the next delivery opens another.
            let _ = deliver_to(&mut upstream).await;
            assert_eq!(
                connections.load(std::sync::atomic::Ordering::SeqCst),
                2,
                "case {index}"
            );
        }
    }

    #[tokio::test]
    async fn a_whole_answer_is_passed_on_with_its_exact_length_and_its_connection_reused() {
        let chunked = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Handler: yes\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec();
        let (addr, connections) = raw_upstream(chunked, Then::KeepAlive).await;
        let mut upstream = upstream_at(addr);
        for _ in 0..3 {
            let (status, headers, body, code) = deliver_to(&mut upstream).await;
            assert_eq!(status, StatusCode::CREATED);
            assert_eq!(code, None);
            assert_eq!(body, "hello world");
            assert_eq!(headers["content-length"], "11");
            assert_eq!(headers["x-handler"], "yes");
            assert!(headers.get("transfer-encoding").is_none());
        }
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);

        let body = vec![b'a'; MAX_ANSWER_BYTES];
        let mut whole =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        whole.extend_from_slice(&body);
        let (addr, _) = raw_upstream(whole, Then::KeepAlive).await;
        let (status, headers, got, _) = deliver_to(&mut upstream_at(addr)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "an answer of exactly the cap passes"
        );
        assert_eq!(got, body);
        assert_eq!(
            headers["content-length"],
            MAX_ANSWER_BYTES.to_string().as_str()
        );

        let empty = b"HTTP/1.1 204 No Content\r\n\r\n".to_vec();
        let (addr, _) = raw_upstream(empty, Then::KeepAlive).await;
        let (status, headers, got, _) = deliver_to(&mut upstream_at(addr)).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(got.is_empty());
        assert!(headers.get("content-length").is_none());
    }

    #[test]
    fn the_content_length_sent_is_the_body_read() {
        let mut headers = HeaderMap::new();
        exact_content_length(StatusCode::OK, &mut headers, 0);
        assert_eq!(headers["content-length"], "0");
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("9"));
        exact_content_length(StatusCode::OK, &mut headers, 4);
        assert_eq!(headers["content-length"], "4");
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("4"));
        exact_content_length(StatusCode::OK, &mut headers, 4);
        assert_eq!(headers.get_all(header::CONTENT_LENGTH).iter().count(), 1);
        exact_content_length(StatusCode::NO_CONTENT, &mut headers, 0);
        assert!(headers.get(header::CONTENT_LENGTH).is_none());
    }
}
