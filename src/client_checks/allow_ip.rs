//! [`AllowIpLayer`]: only clients on an allow-list of networks.

use std::{
    net::IpAddr,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response, StatusCode};
use ipnet::IpNet;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    body::ProblemBody,
    client_ip::{parse_networks, ClientIp},
    elevenlabs::EGRESS_IPS,
    future::ResponseFuture,
    problem::{Problem, ProblemCode, ResponseForm},
    ConfigError,
};

/// Only lets through clients whose address is in one of the allowed networks: see the
/// [module docs](super). Others get a permanent `403` `client_not_allowed`.
///
/// ```
/// use std::{convert::Infallible, net::SocketAddr};
/// use bytes::Bytes;
/// use hookgate::{client_checks::AllowIpLayer, client_ip::ClientIp, problem::ProblemCode};
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let layer = AllowIpLayer::new(["192.0.2.0/24", "2001:db8::1"], ClientIp::peer())?;
/// let service = layer.layer(service_fn(|_req: Request<Full<Bytes>>| async {
///     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
/// }));
///
/// let from = |peer: SocketAddr| {
///     let mut request = Request::new(Full::new(Bytes::new()));
///     request.extensions_mut().insert(peer);
///     request
/// };
/// let allowed = service.clone().oneshot(from(SocketAddr::from(([192, 0, 2, 7], 40_000)))).await?;
/// assert_eq!(allowed.status(), StatusCode::OK);
/// let refused = service.oneshot(from(SocketAddr::from(([198, 51, 100, 7], 40_000)))).await?;
/// assert_eq!(refused.status(), StatusCode::FORBIDDEN);
/// assert_eq!(refused.extensions().get::<ProblemCode>(), Some(&ProblemCode::CLIENT_NOT_ALLOWED));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct AllowIpLayer {
    allowed: Arc<[IpNet]>,
    client: ClientIp,
}

impl AllowIpLayer {
    /// Allows the networks in `cidrs` (`"192.0.2.0/24"`, or single addresses), finding the
    /// client with `client`.
    ///
    /// # Errors
    ///
    /// An entry that is neither a CIDR nor an IP address, or an empty list.
    pub fn new<I, S>(cidrs: I, client: ClientIp) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let allowed = parse_networks(cidrs, "allow-list:")?;
        if allowed.is_empty() {
            return Err(ConfigError::new("allow-list: no network given"));
        }
        Ok(Self {
            allowed: allowed.into(),
            // The exact address, not the rate limiter's IPv6 /64 grouping.
            client: client.exact(),
        })
    }

    /// Allows ElevenLabs' published webhook egress addresses ([`EGRESS_IPS`]).
    pub fn elevenlabs_egress(client: ClientIp) -> Self {
        Self::new(EGRESS_IPS, client).expect("the preset parses")
    }

    /// Whether `ip` is allowed.
    fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allowed.iter().any(|net| net.contains(&ip))
    }
}

impl<S> Layer<S> for AllowIpLayer {
    type Service = AllowIp<S>;

    fn layer(&self, inner: S) -> AllowIp<S> {
        AllowIp {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service of [`AllowIpLayer`].
#[derive(Clone, Debug)]
pub struct AllowIp<S> {
    inner: S,
    layer: AllowIpLayer,
}

impl<S, B, ResBody> Service<Request<B>> for AllowIp<S>
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
        let problem = match self.layer.client.identify(&request) {
            Ok(ip) if self.layer.allows(ip) => {
                return ResponseFuture::inner(self.inner.call(request))
            }
            Ok(ip) => {
                tracing::debug!(%ip, "client not on the allow-list");
                Problem::new(StatusCode::FORBIDDEN, ProblemCode::CLIENT_NOT_ALLOWED)
                    .with_detail(format!("{ip} is not an allowed sender address"))
            }
            Err(unidentified) => {
                tracing::warn!(
                    reason = unidentified.reason(),
                    "allow-list: client unidentified"
                );
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ProblemCode::CLIENT_UNIDENTIFIED,
                )
                .with_detail(format!(
                    "the receiver could not tell which client sent the request ({})",
                    unidentified.reason()
                ))
            }
        };
        ResponseFuture::answered(problem.into_response_for(ResponseForm::of(request.headers())))
    }
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;
    use crate::{
        client_checks::test_support::{code, ok, request},
        client_ip::ForwardedHeader,
    };

    #[tokio::test]
    async fn allow_list_passes_members_and_refuses_others_with_403() {
        let layer = AllowIpLayer::new(["192.0.2.0/24", "2001:db8::1"], ClientIp::peer()).unwrap();
        let svc = layer.layer(ok());
        let (status, _) = code(
            svc.clone()
                .oneshot(request([192, 0, 2, 200], &[]))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, c) = code(
            svc.clone()
                .oneshot(request([192, 0, 3, 1], &[]))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, c.as_str()),
            (StatusCode::FORBIDDEN, "client_not_allowed")
        );
        // No peer address at all: a deployment error, retryable, and the answer names the fix.
        let response = svc.oneshot(Request::new(())).await.unwrap();
        let detail = response.body().clone();
        let (status, c) = code(response).await;
        assert_eq!(
            (status, c.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, "client_unidentified")
        );
        assert!(
            detail.contains("into_make_service_with_connect_info::<SocketAddr>()"),
            "{detail}"
        );
    }

    #[tokio::test]
    async fn allow_list_reads_forwarded_addresses_only_from_trusted_proxies() {
        let client =
            ClientIp::behind_proxies(["10.0.0.0/8"], ForwardedHeader::XForwardedFor).unwrap();
        let svc = AllowIpLayer::elevenlabs_egress(client).layer(ok());
        let via_proxy = request([10, 0, 0, 5], &[("x-forwarded-for", "34.67.146.145")]);
        assert_eq!(
            svc.clone().oneshot(via_proxy).await.unwrap().status(),
            StatusCode::OK
        );
        // The same claim from an untrusted peer is ignored: the peer is the client.
        let spoofed = request([198, 51, 100, 1], &[("x-forwarded-for", "34.67.146.145")]);
        assert_eq!(
            svc.clone().oneshot(spoofed).await.unwrap().status(),
            StatusCode::FORBIDDEN
        );
        // A leftmost spoof behind the proxy does not help either.
        let spoofed = request(
            [10, 0, 0, 5],
            &[("x-forwarded-for", "34.67.146.145, 203.0.113.9")],
        );
        assert_eq!(
            svc.oneshot(spoofed).await.unwrap().status(),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn allow_list_configuration_errors() {
        assert!(AllowIpLayer::new(["not an ip"], ClientIp::peer()).is_err());
        assert!(AllowIpLayer::new(Vec::<String>::new(), ClientIp::peer()).is_err());
        let layer = AllowIpLayer::new(["192.0.2.1", "198.51.100.0/24"], ClientIp::peer()).unwrap();
        assert!(layer.allows("198.51.100.9".parse().unwrap()));
        assert!(
            layer.allows("::ffff:192.0.2.1".parse().unwrap()),
            "IPv4-mapped counts as IPv4"
        );
        assert!(!layer.allows("192.0.2.2".parse().unwrap()));
    }
}
