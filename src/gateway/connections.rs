//! What a connection may hold, and for how long.
//!
//! A socket is the cheapest thing an attacker can hold: a thousand clients that connect and say
//! nothing would, left alone, use up the process's file descriptors and take the gateway off
//! the air for every genuine delivery. So every connection
//!
//! - counts against a total cap and a per-client cap ([`ConnectionLimits`]); one over either is
//!   answered a polite, retryable `503` and closed, never left waiting in the accept queue;
//! - is closed when it has no request in flight for too long ([`Activity`]): before its first
//!   request (covering protocol detection, a quiet TLS session and a slow request head) and
//!   between keep-alive requests, for HTTP/1 and HTTP/2 alike;
//! - is closed the way nginx does (`lingering_close`, [`Lingering`]): our side is shut down,
//!   then what the client still sends is read and discarded for a bounded time and size, so a
//!   client still uploading a body we refused early reads our answer instead of a reset.
//!
//! Accept errors (out of descriptors) back off and are logged once per interval with a count
//! ([`AcceptErrors`]).

use super::codes;
use std::{
    collections::HashMap,
    future::Future,
    io,
    net::IpAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use crate::problem::Problem;
use http::StatusCode;
use pin_project_lite::pin_project;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
};
use tower::Service;

/// How long a lingering close reads and discards what the client still sends.
const LINGER_TIME: Duration = Duration::from_secs(5);
/// How many bytes a lingering close reads and discards at most.
const LINGER_BYTES: u64 = 64 << 20;
/// How long a refused connection is waited for (its first bytes; our answer to be taken).
const REFUSAL_WAIT: Duration = Duration::from_secs(1);
/// `Retry-After` of a refused connection: held connections usually free up within seconds.
const REFUSED_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The caps on connections: in all, and per client address.
pub(crate) struct ConnectionLimits {
    total: usize,
    per_client: usize,
    open: AtomicUsize,
    by_client: Mutex<HashMap<IpAddr, usize>>,
    /// Addresses the per-client cap never applies to: trusted proxies (they carry many
    /// clients) and known senders (a sender's few addresses carry all its customers).
    exempt: Box<dyn Fn(IpAddr) -> bool + Send + Sync>,
}

impl std::fmt::Debug for ConnectionLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLimits")
            .field("total", &self.total)
            .field("per_client", &self.per_client)
            .field("open", &self.open())
            .finish_non_exhaustive()
    }
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Total,
    PerClient,
}

impl ConnectionLimits {
    pub(crate) fn new(
        total: usize,
        per_client: usize,
        exempt: Box<dyn Fn(IpAddr) -> bool + Send + Sync>,
    ) -> Arc<Self> {
        Arc::new(Self {
            total: total.max(1),
            per_client: per_client.max(1),
            open: AtomicUsize::new(0),
            by_client: Mutex::new(HashMap::new()),
            exempt,
        })
    }

    /// Connections open right now (a gauge).
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// A slot for a connection from `client`, held until the guard drops.
    pub(crate) fn admit(self: &Arc<Self>, client: IpAddr) -> Result<ConnectionGuard, Refusal> {
        let client = client.to_canonical();
        if self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.total).then_some(n + 1)
            })
            .is_err()
        {
            return Err(Refusal::Total);
        }
        let counted = !(self.exempt)(client);
        if counted {
            let mut by_client = self.by_client.lock().unwrap_or_else(|e| e.into_inner());
            let held = by_client.entry(client).or_insert(0);
            if *held >= self.per_client {
                drop(by_client);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::PerClient);
            }
            *held += 1;
        }
        Ok(ConnectionGuard {
            limits: Arc::clone(self),
            client: counted.then_some(client),
        })
    }
}

/// A connection's slot; given back when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionGuard {
    limits: Arc<ConnectionLimits>,
    client: Option<IpAddr>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Some(client) = self.client {
            let mut by_client = self
                .limits
                .by_client
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(held) = by_client.get_mut(&client) {
                *held -= 1;
                if *held == 0 {
                    by_client.remove(&client);
                }
            }
        }
        self.limits.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The answer written, without hyper, to a connection over a cap: a complete HTTP/1.1 `503`
/// problem that closes the connection.
pub(crate) fn refusal_response(why: Refusal) -> Vec<u8> {
    let detail = match why {
        Refusal::Total => "the receiver holds as many connections as it may; retry later",
        Refusal::PerClient => {
            "the receiver holds as many connections from this client as it may; retry later"
        }
    };
    let problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE, codes::TOO_MANY_CONNECTIONS)
        .with_detail(detail)
        .with_retry_after(REFUSED_RETRY_AFTER);
    let body = problem.to_json();
    let mut response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {}\r\ncache-control: no-store\r\n\
         retry-after: {}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        crate::problem::PROBLEM_JSON,
        problem.retry_after_secs().unwrap_or(1),
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    response
}

/// Writes `response` to a connection refused before hyper saw it, then closes it lingering.
///
/// The answer waits for the client's first bytes (a second at most): an HTTP client that is
/// answered before it has sent its request takes the answer for a broken connection.
pub(crate) async fn refuse(mut stream: Lingering, response: &[u8]) {
    let mut first = [0_u8; 1024];
    let _ = tokio::time::timeout(REFUSAL_WAIT, stream.read(&mut first)).await;
    let _ = tokio::time::timeout(REFUSAL_WAIT, stream.write_all(response)).await;
    // Dropping shuts our side down and reads what the client still sends (its request).
}

/// A TCP stream that, when dropped, closes the way nginx's `lingering_close` does: shut our
/// side down, then read and discard what the client still sends for at most [`LINGER_TIME`]
/// and [`LINGER_BYTES`], and only then close. Closing a socket with unread bytes in its receive
/// buffer sends a reset, and a reset can destroy an answer the client has not read yet (a `413`
/// sent while the client was still uploading).
///
/// The connection's slot ([`ConnectionGuard`]) is held until the lingering ends.
#[derive(Debug)]
pub(crate) struct Lingering {
    stream: Option<TcpStream>,
    guard: Option<ConnectionGuard>,
}

impl Lingering {
    pub(crate) fn new(stream: TcpStream, guard: ConnectionGuard) -> Self {
        Self {
            stream: Some(stream),
            guard: Some(guard),
        }
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let (Some(stream), guard) = (self.stream.take(), self.guard.take()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            linger(stream).await;
            drop(guard);
        });
    }
}

async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let discard = async {
        let mut buf = [0_u8; 16 * 1024];
        let mut read = 0_u64;
        while read < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n as u64,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, discard).await;
}

impl AsyncRead for Lingering {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().stream()?).poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().stream()?).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().stream()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().stream()?).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().stream()?).poll_shutdown(cx)
    }
}

/// Whether a connection has a request in flight, and since when it has had none: what the idle
/// deadline is measured from.
#[derive(Debug)]
pub(crate) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when the last request ended (0: none yet).
    last_ended_ms: AtomicU64,
    requests: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ended_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        })
    }

    /// When the connection is due to close for idleness, or `None` while a request is in
    /// flight: `first_request` after it opened until a request arrives, then `idle` after the
    /// last request ended.
    pub(crate) fn idle_deadline(&self, first_request: Duration, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.requests.load(Ordering::Acquire) == 0 {
            return Some(self.opened + first_request);
        }
        let ended = Duration::from_millis(self.last_ended_ms.load(Ordering::Acquire));
        Some(self.opened + ended + idle)
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }
}

/// One request in flight; ends when dropped (its response future finished or was dropped).
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let elapsed = self.0.opened.elapsed().as_millis() as u64;
        self.0
            .last_ended_ms
            .fetch_max(elapsed.max(1), Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Marks each request as in flight on its connection's [`Activity`] until its response is
/// ready.
#[derive(Clone, Debug)]
pub(crate) struct TrackActivity<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> TrackActivity<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S, R> Service<R> for TrackActivity<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let in_flight = self.activity.begin();
        Tracked {
            future: self.inner.call(request),
            in_flight: Some(in_flight),
        }
    }
}

pin_project! {
    /// Response future of [`TrackActivity`].
    pub(crate) struct Tracked<F> {
        #[pin]
        future: F,
        in_flight: Option<InFlight>,
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.future.poll(cx));
        this.in_flight.take();
        Poll::Ready(output)
    }
}

/// Accept failures (out of file descriptors, mostly): a growing pause between attempts, and one
/// log line per interval with how many failed, instead of a line per failure.
#[derive(Debug)]
pub(crate) struct AcceptErrors {
    backoff: Duration,
    failed: u64,
}

impl AcceptErrors {
    const FIRST_BACKOFF: Duration = Duration::from_millis(10);
    const MAX_BACKOFF: Duration = Duration::from_secs(1);
    const LOG_INTERVAL: Duration = Duration::from_secs(10);

    pub(crate) fn new() -> Self {
        Self {
            backoff: Self::FIRST_BACKOFF,
            failed: 0,
        }
    }

    /// Records a failure; the pause to take before accepting again.
    pub(crate) fn failed(&mut self, error: &io::Error) -> Duration {
        self.failed += 1;
        // One line per interval for the whole process, whichever worker fails.
        static LAST_LOGGED: Mutex<Option<Instant>> = Mutex::new(None);
        let now = Instant::now();
        let due = {
            let mut last = LAST_LOGGED.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|at| now.duration_since(at) >= Self::LOG_INTERVAL);
            if due {
                *last = Some(now);
            }
            due
        };
        if due {
            tracing::warn!(
                %error,
                failures = self.failed,
                "accepting connections fails (out of file descriptors?); backing off, \
                 next report in {} s at the earliest",
                Self::LOG_INTERVAL.as_secs()
            );
            self.failed = 0;
        }
        let pause = self.backoff;
        self.backoff = (self.backoff * 2).min(Self::MAX_BACKOFF);
        pause
    }

    /// Records a success: the next failure starts over with a short pause.
    pub(crate) fn succeeded(&mut self) {
        if self.backoff != Self::FIRST_BACKOFF {
            if self.failed > 0 {
                tracing::info!(failures = self.failed, "accepting connections again");
                self.failed = 0;
            }
            self.backoff = Self::FIRST_BACKOFF;
        }
    }
}

/// The soft limit on open file descriptors (`/proc/self/limits`), where it can be read.
pub(crate) fn descriptor_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn caps_hold_in_all_and_per_client_and_slots_come_back() {
        let limits = ConnectionLimits::new(3, 2, Box::new(|ip| ip == IpAddr::from([10, 0, 0, 1])));
        let a1 = limits.admit(ip("192.0.2.1")).unwrap();
        let _a2 = limits.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            limits.admit(ip("192.0.2.1")).unwrap_err(),
            Refusal::PerClient
        );
        assert_eq!(limits.open(), 2, "a refusal holds no slot");
        let _b = limits.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            limits.admit(ip("198.51.100.1")).unwrap_err(),
            Refusal::Total
        );
        drop(a1);
        assert_eq!(limits.open(), 2);
        let _c = limits.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(limits.admit(ip("10.0.0.1")).unwrap_err(), Refusal::Total);
    }

    #[test]
    fn exempt_clients_are_not_capped_per_client() {
        let limits = ConnectionLimits::new(10, 1, Box::new(|ip| ip == IpAddr::from([10, 0, 0, 1])));
        let held: Vec<_> = (0..5)
            .map(|_| limits.admit(ip("10.0.0.1")).unwrap())
            .collect();
        assert_eq!(limits.open(), 5);
        // IPv4-mapped IPv6 counts as its IPv4 address.
        let _one = limits.admit(ip("::ffff:192.0.2.9")).unwrap();
        assert_eq!(
            limits.admit(ip("192.0.2.9")).unwrap_err(),
            Refusal::PerClient
        );
        drop(held);
        assert_eq!(limits.open(), 1);
    }

    #[test]
    fn refusal_is_a_complete_retryable_problem_response() {
        let response = String::from_utf8(refusal_response(Refusal::PerClient)).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains("content-type: application/problem+json"));
        assert!(head.contains("retry-after: 5"));
        assert!(head.contains("connection: close"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], "too_many_connections");
    }

    #[test]
    fn idle_deadline_counts_from_open_then_from_the_last_request() {
        let activity = Activity::new();
        let first = Duration::from_secs(10);
        let idle = Duration::from_secs(60);
        assert_eq!(
            activity.idle_deadline(first, idle),
            Some(activity.opened + first)
        );
        let in_flight = activity.begin();
        assert_eq!(
            activity.idle_deadline(first, idle),
            None,
            "busy: no deadline"
        );
        std::thread::sleep(Duration::from_millis(5));
        drop(in_flight);
        let deadline = activity.idle_deadline(first, idle).unwrap();
        assert!(deadline >= activity.opened + idle + Duration::from_millis(1));
        assert!(deadline <= Instant::now() + idle);
    }

    #[test]
    fn accept_errors_back_off_up_to_a_second_and_start_over_after_a_success() {
        let mut errors = AcceptErrors::new();
        let error = io::Error::other("too many open files");
        let pauses: Vec<_> = (0..10).map(|_| errors.failed(&error)).collect();
        assert_eq!(pauses[0], Duration::from_millis(10));
        assert_eq!(pauses[1], Duration::from_millis(20));
        assert_eq!(*pauses.last().unwrap(), Duration::from_secs(1));
        errors.succeeded();
        assert_eq!(errors.failed(&error), Duration::from_millis(10));
    }

    #[test]
    fn descriptor_limit_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(descriptor_limit().is_some_and(|n| n > 0));
        }
    }
}
