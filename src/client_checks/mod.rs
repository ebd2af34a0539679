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
//!
//! [`ClientIp`]: crate::client_ip::ClientIp
//! [`ClientIp::behind_proxies`]: crate::client_ip::ClientIp::behind_proxies

mod allow_ip;
mod require_https;

pub use self::{
    allow_ip::{AllowIp, AllowIpLayer},
    require_https::{RequireHttps, RequireHttpsLayer},
};

/// Marks a request that arrived over a TLS connection. Insert it into the request extensions
/// when you serve TLS (the `hookgate` binary does); [`RequireHttps`] trusts nothing else from
/// an untrusted peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsConnection;

/// What the tests of both checks share: a handler and requests from a peer.
#[cfg(test)]
mod test_support {
    use std::{convert::Infallible, net::SocketAddr};

    use http::{Request, Response, StatusCode};
    use http_body_util::BodyExt;
    use tower::service_fn;
    use tower_service::Service;

    use crate::problem::ProblemCode;

    pub(super) fn ok(
    ) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new("ok".to_owned())) })
    }

    pub(super) fn request(peer: [u8; 4], headers: &[(&str, &str)]) -> Request<()> {
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

    pub(super) async fn code(response: Response<String>) -> (StatusCode, String) {
        let status = response.status();
        let code = response
            .extensions()
            .get::<ProblemCode>()
            .map(ToString::to_string)
            .unwrap_or_default();
        let _ = response.into_body().collect().await;
        (status, code)
    }
}
