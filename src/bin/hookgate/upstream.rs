//! Reverse proxy to the team's own handler: the exact verified bytes, pooled keep-alive
//! connections, connect and response timeouts, and upstream trouble answered as retryable 5xx.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use hookgate::{
    body::ResponseBody,
    client_checks::TlsConnection,
    problem::{Problem, ProblemCode},
    signature::VerifiedBody,
};
use http::{
    header, uri::PathAndQuery, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode,
    Uri,
};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioTimer},
};
use tower::Service;

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

/// The upstream, as a tower service.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    client: Client<HttpConnector, VerifiedBody>,
    base: Uri,
    response_timeout: Duration,
}

impl Upstream {
    /// An upstream at `url` (`http://host:port/path`).
    pub(crate) fn new(
        url: &str,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self, String> {
        let base: Uri = url
            .parse()
            .map_err(|e| format!("--upstream {url:?}: {e}"))?;
        match base.scheme_str() {
            Some("http") => {}
            Some(other) => return Err(format!("--upstream {url:?}: scheme {other} is not supported; use http:// to a local handler")),
            None => return Err(format!("--upstream {url:?}: needs http://host:port")),
        }
        if base.authority().is_none() {
            return Err(format!("--upstream {url:?}: needs a host"));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            client,
            base,
            response_timeout,
        })
    }

    /// The upstream URI for a request: the configured one, with the request's query appended.
    fn target(&self, original: &Uri) -> Uri {
        let path = self.base.path();
        let query = match (self.base.query(), original.query()) {
            (Some(a), Some(b)) => Some(format!("{a}&{b}")),
            (Some(a), None) => Some(a.to_owned()),
            (None, Some(b)) => Some(b.to_owned()),
            (None, None) => None,
        };
        let path_and_query = match query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        let mut parts = self.base.clone().into_parts();
        parts.path_and_query = PathAndQuery::try_from(path_and_query).ok();
        Uri::from_parts(parts).unwrap_or_else(|_| self.base.clone())
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
}

fn forwarded_request(upstream: &Upstream, request: Request<VerifiedBody>) -> Request<VerifiedBody> {
    let (mut parts, body) = request.into_parts();
    let peer = parts.extensions.get::<SocketAddr>().map(|a| a.ip());
    let tls = parts.extensions.get::<TlsConnection>().is_some();
    parts.uri = upstream.target(&parts.uri);
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    if let Some(host) = headers.remove(header::HOST) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    if let Some(ip) = peer {
        // Append to what a trusted proxy in front already said.
        let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prior) => format!("{prior}, {ip}"),
            None => ip.to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static("x-forwarded-for"), value);
        }
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    parts.version = http::Version::HTTP_11;
    Request::from_parts(parts, body)
}

impl Service<Request<VerifiedBody>> for Upstream {
    type Response = Response<ResponseBody<Incoming>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<VerifiedBody>) -> Self::Future {
        let request = forwarded_request(self, request);
        let response = self.client.request(request);
        let timeout = self.response_timeout;
        Box::pin(async move {
            let problem = match tokio::time::timeout(timeout, response).await {
                Ok(Ok(response)) => {
                    let (mut parts, body) = response.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    return Ok(Response::from_parts(parts, ResponseBody::new(body)));
                }
                Ok(Err(error)) if error.is_connect() => {
                    tracing::warn!(%error, "upstream unreachable");
                    Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        ProblemCode::UPSTREAM_UNAVAILABLE,
                    )
                    .with_detail("the upstream handler could not be reached; retry later")
                    .with_retry_after(Duration::from_secs(30))
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "upstream failed");
                    Problem::new(StatusCode::BAD_GATEWAY, ProblemCode::UPSTREAM_FAILED)
                        .with_detail("the upstream handler failed before answering; retry later")
                }
                Err(_) => {
                    tracing::warn!(
                        timeout_ms = timeout.as_millis() as u64,
                        "upstream timed out"
                    );
                    Problem::new(StatusCode::GATEWAY_TIMEOUT, ProblemCode::UPSTREAM_TIMEOUT)
                        .with_detail(format!(
                            "the upstream handler did not answer within {} ms; retry later",
                            timeout.as_millis()
                        ))
                }
            };
            Ok(problem.into_response())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(url: &str) -> Upstream {
        Upstream::new(url, Duration::from_secs(1), Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn only_plain_http_upstreams_with_a_host() {
        let new = |url| Upstream::new(url, Duration::from_secs(1), Duration::from_secs(1));
        assert!(new("https://example.test/").is_err());
        assert!(new("/just/a/path").is_err());
        assert!(new("not a url").is_err());
        assert!(new("http://127.0.0.1:9000/hook").is_ok());
    }

    #[test]
    fn target_keeps_the_upstream_path_and_appends_the_query() {
        let u = upstream("http://127.0.0.1:9000/hook?src=gw");
        let t = u.target(&"/webhooks/elevenlabs?x=1".parse().unwrap());
        assert_eq!(t, "http://127.0.0.1:9000/hook?src=gw&x=1");
        let t = upstream("http://127.0.0.1:9000").target(&"/webhooks/elevenlabs".parse().unwrap());
        assert_eq!(t, "http://127.0.0.1:9000/");
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
        assert!(h.get("host").is_none());
        assert_eq!(h["x-forwarded-host"], "gw.example");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["elevenlabs-signature"], "t=1,v0=ab");
        assert_eq!(forwarded.uri(), "http://127.0.0.1:9000/hook");
    }
}
