//! Client checks, before anything else is spent on a request: [`RequireHttpsLayer`] and an IP
//! allow-list, [`AllowIpLayer`] (with ElevenLabs' published egress addresses as a preset).
//!
//! Both find the client the way the rate limiter does, through a [`ClientIp`]
//! ([`crate::client_ip`]): the socket peer, or, when the peer is one of your trusted proxies,
//! the forwarding header walked right to left. Both answer a failed check with
//! a permanent `403` and a problem+json body (`client_not_allowed`, `https_required`): such a
//! request does not come from the sender.
//!
//! ```
//! use std::{convert::Infallible, net::SocketAddr};
//! use hookgate::client_checks::{AllowIpLayer, RequireHttpsLayer, TlsConnection};
//! use hookgate::client_ip::ClientIp;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = ServiceBuilder::new()
//!     .layer(RequireHttpsLayer::new(ClientIp::peer()))
//!     .layer(AllowIpLayer::new(["192.0.2.0/24"], ClientIp::peer())?)
//!     .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
//!
//! let mut request = Request::new(());
//! request.extensions_mut().insert(SocketAddr::from(([192, 0, 2, 7], 40000)));
//! request.extensions_mut().insert(TlsConnection); // what your server sets on TLS connections
//! assert_eq!(service.clone().oneshot(request).await?.status(), StatusCode::OK);
//!
//! let mut request = Request::new(());
//! request.extensions_mut().insert(SocketAddr::from(([198, 51, 100, 1], 40000)));
//! request.extensions_mut().insert(TlsConnection);
//! assert_eq!(service.oneshot(request).await?.status(), StatusCode::FORBIDDEN);
//! # Ok(())
//! # }
//! ```
//!
//! ## Deployment notes
//!
//! - An allow-list of the sender's egress IPs is defence in depth, never a replacement for the
//!   signature: addresses change, and cloud egress ranges are shared.
//! - Behind a TLS-terminating proxy, the connection to you is plain HTTP: declare the proxy
//!   with [`ClientIp::behind_proxies`] so its
//!   `X-Forwarded-Proto` (or `Forwarded: proto=`) is believed. Nobody else's is.
//! - A request whose client cannot be identified (no peer address) is a deployment error:
//!   `500 client_unidentified`, retryable. A trusted proxy without a usable forwarding header
//!   is checked as itself, the nearest trusted hop (see [`ClientIp`]): behind a proxy, allow-list
//!   the sender's addresses, not the proxy's.

use std::{
    net::IpAddr,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, Request, Response, StatusCode};
use ipnet::IpNet;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    body::ProblemBody,
    client_ip::{parse_networks, ClientIp, ForwardedHeader},
    elevenlabs::EGRESS_IPS,
    future::ResponseFuture,
    problem::{Problem, ProblemCode, ResponseForm},
    ConfigError,
};

/// Marks a request that arrived over a TLS connection. Insert it into the request extensions
/// when you serve TLS (the `hookgate` binary does); [`RequireHttps`] trusts nothing else from
/// an untrusted peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsConnection;

// ---------------------------------------------------------------------------------------------
// AllowIp

/// Only lets through clients whose address is in one of the allowed networks: see the
/// [module docs](self).
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

    /// Also allows the networks in `cidrs`.
    ///
    /// # Errors
    ///
    /// An entry that is neither a CIDR nor an IP address.
    pub fn allow<I, S>(self, cidrs: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut allowed = self.allowed.to_vec();
        allowed.extend(parse_networks(cidrs, "allow-list:")?);
        Ok(Self {
            allowed: allowed.into(),
            client: self.client,
        })
    }

    /// Whether `ip` is allowed.
    #[must_use]
    pub fn allows(&self, ip: IpAddr) -> bool {
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

// ---------------------------------------------------------------------------------------------
// RequireHttps

/// Refuses requests that did not arrive over HTTPS: see the [module docs](self).
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
    #[must_use]
    pub fn is_https<B>(&self, request: &Request<B>) -> bool {
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
    use std::{convert::Infallible, net::SocketAddr};

    use http_body_util::BodyExt;
    use tower::{service_fn, ServiceExt};

    use super::*;

    fn ok() -> impl Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new("ok".to_owned())) })
    }

    fn request(peer: [u8; 4], headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder();
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(()).unwrap();
        request
            .extensions_mut()
            .insert(SocketAddr::from((peer, 40000)));
        request
    }

    async fn code(response: Response<String>) -> (StatusCode, String) {
        let status = response.status();
        let code = response
            .extensions()
            .get::<ProblemCode>()
            .map(ToString::to_string)
            .unwrap_or_default();
        let _ = response.into_body().collect().await;
        (status, code)
    }

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
        let layer = AllowIpLayer::new(["192.0.2.1"], ClientIp::peer())
            .unwrap()
            .allow(["198.51.100.0/24"])
            .unwrap();
        assert!(layer.allows("198.51.100.9".parse().unwrap()));
        assert!(
            layer.allows("::ffff:192.0.2.1".parse().unwrap()),
            "IPv4-mapped counts as IPv4"
        );
        assert!(!layer.allows("192.0.2.2".parse().unwrap()));
    }

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
