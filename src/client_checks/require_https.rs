//! [`RequireHttpsLayer`]: only requests that arrived over HTTPS.

use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::TlsConnection;
use crate::{
    body::ProblemBody,
    client_ip::{ClientIp, ForwardedHeader},
    future::ResponseFuture,
    problem::{Problem, ProblemCode, ResponseForm},
};

/// Refuses requests that did not arrive over HTTPS (a permanent `403` `https_required`): see
/// the [module docs](super).
///
/// ```
/// use std::{convert::Infallible, net::SocketAddr};
/// use bytes::Bytes;
/// use hookgate::client_checks::{RequireHttpsLayer, TlsConnection};
/// use hookgate::client_ip::{ClientIp, ForwardedHeader};
/// use hookgate::problem::ProblemCode;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Behind a TLS-terminating proxy at 10.0.0.1, which reports the protocol.
/// let client_ip = ClientIp::behind_proxies(["10.0.0.1"], ForwardedHeader::XForwardedFor)?;
/// let service = RequireHttpsLayer::new(client_ip).layer(service_fn(
///     |_req: Request<Full<Bytes>>| async {
///         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
///     },
/// ));
///
/// let from = |peer: [u8; 4], proto: &str| {
///     let mut request = Request::builder()
///         .header("x-forwarded-proto", proto)
///         .body(Full::new(Bytes::new()))
///         .unwrap();
///     request.extensions_mut().insert(SocketAddr::from((peer, 40_000)));
///     request
/// };
/// // The proxy's word is believed.
/// assert_eq!(service.clone().oneshot(from([10, 0, 0, 1], "https")).await?.status(), StatusCode::OK);
/// // Anyone else's is not: only a TLS connection of your own server counts.
/// let claimed = service.clone().oneshot(from([203, 0, 113, 9], "https")).await?;
/// assert_eq!(claimed.status(), StatusCode::FORBIDDEN);
/// assert_eq!(claimed.extensions().get::<ProblemCode>(), Some(&ProblemCode::HTTPS_REQUIRED));
/// let mut direct = from([203, 0, 113, 9], "http");
/// direct.extensions_mut().insert(TlsConnection); // what your server sets on TLS connections
/// assert_eq!(service.oneshot(direct).await?.status(), StatusCode::OK);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct RequireHttpsLayer {
    client: ClientIp,
}

impl RequireHttpsLayer {
    /// HTTPS is a [`TlsConnection`] extension, or a forwarded `proto=https` /
    /// `X-Forwarded-Proto: https` from a peer that `client` trusts as a proxy.
    pub fn new(client: ClientIp) -> Self {
        Self { client }
    }

    /// Whether a request with these extensions and headers arrived over HTTPS.
    fn is_https<B>(&self, request: &Request<B>) -> bool {
        if request.extensions().get::<TlsConnection>().is_some() {
            return true;
        }
        let Some(peer) = self.client.peer_addr(request.extensions()) else {
            return false;
        };
        self.client.is_trusted_proxy(peer.ip())
            && forwarded_proto_is_https(request.headers(), self.client.forwarded_header())
    }
}

/// The protocol the nearest proxy reports: the last `X-Forwarded-Proto` value, or the `proto`
/// of the last `Forwarded` element.
fn forwarded_proto_is_https(headers: &HeaderMap, header: ForwardedHeader) -> bool {
    match header {
        ForwardedHeader::Forwarded => headers
            .get_all("forwarded")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|line| line.rsplit(',').next())
            .is_some_and(|element| {
                element.split(';').any(|pair| {
                    pair.split_once('=').is_some_and(|(name, value)| {
                        name.trim().eq_ignore_ascii_case("proto")
                            && value.trim().trim_matches('"').eq_ignore_ascii_case("https")
                    })
                })
            }),
        _ => headers
            .get_all("x-forwarded-proto")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|line| line.rsplit(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https")),
    }
}

impl<S> Layer<S> for RequireHttpsLayer {
    type Service = RequireHttps<S>;

    fn layer(&self, inner: S) -> RequireHttps<S> {
        RequireHttps {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service of [`RequireHttpsLayer`].
#[derive(Clone, Debug)]
pub struct RequireHttps<S> {
    inner: S,
    layer: RequireHttpsLayer,
}

impl<S, B, ResBody> Service<Request<B>> for RequireHttps<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: ProblemBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if self.layer.is_https(&request) {
            return ResponseFuture::inner(self.inner.call(request));
        }
        let problem = Problem::new(StatusCode::FORBIDDEN, ProblemCode::HTTPS_REQUIRED)
            .with_detail("deliveries must be sent over HTTPS");
        ResponseFuture::answered(problem.into_response_for(ResponseForm::of(request.headers())))
    }
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;
    use crate::client_checks::test_support::{code, ok, request};

    #[tokio::test]
    async fn https_is_direct_tls_or_a_trusted_proxys_word() {
        let direct = RequireHttpsLayer::new(ClientIp::peer()).layer(ok());
        let mut tls = request([203, 0, 113, 1], &[]);
        tls.extensions_mut().insert(TlsConnection);
        assert_eq!(
            direct.clone().oneshot(tls).await.unwrap().status(),
            StatusCode::OK
        );
        let claimed = request([203, 0, 113, 1], &[("x-forwarded-proto", "https")]);
        let (status, c) = code(direct.oneshot(claimed).await.unwrap()).await;
        assert_eq!(
            (status, c.as_str()),
            (StatusCode::FORBIDDEN, "https_required")
        );

        let client =
            ClientIp::behind_proxies(["10.0.0.1"], ForwardedHeader::XForwardedFor).unwrap();
        let proxied = RequireHttpsLayer::new(client).layer(ok());
        let https = request([10, 0, 0, 1], &[("x-forwarded-proto", "https")]);
        assert_eq!(
            proxied.clone().oneshot(https).await.unwrap().status(),
            StatusCode::OK
        );
        let http = request([10, 0, 0, 1], &[("x-forwarded-proto", "http")]);
        assert_eq!(
            proxied.clone().oneshot(http).await.unwrap().status(),
            StatusCode::FORBIDDEN
        );
        let none = request([10, 0, 0, 1], &[]);
        assert_eq!(
            proxied.oneshot(none).await.unwrap().status(),
            StatusCode::FORBIDDEN
        );

        let client = ClientIp::behind_proxies(["10.0.0.1"], ForwardedHeader::Forwarded).unwrap();
        let rfc = RequireHttpsLayer::new(client).layer(ok());
        let https = request(
            [10, 0, 0, 1],
            &[(
                "forwarded",
                "for=192.0.2.1;proto=http, for=192.0.2.9;proto=\"HTTPS\"",
            )],
        );
        assert_eq!(
            rfc.clone().oneshot(https).await.unwrap().status(),
            StatusCode::OK
        );
        let http = request(
            [10, 0, 0, 1],
            &[("forwarded", "for=192.0.2.1;proto=https, for=192.0.2.9")],
        );
        assert_eq!(
            rfc.oneshot(http).await.unwrap().status(),
            StatusCode::FORBIDDEN
        );
    }
}
