//! Response bodies: what a hookgate layer needs from the inner service's body to write its own
//! answers into it.
//!
//! hookgate's layers do not wrap the inner service's body: a layer's response is the inner
//! service's `Response<B>`, and a rejection is a `B` made from the problem's bytes through
//! [`ProblemBody`]. So a stack of layers has the handler's own body type, and tower's
//! [`option_layer`] and `Either` compose them like any other layer:
//!
//! ```
//! # #[cfg(feature = "rate-limit")] {
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use hookgate::{
//!     client_ip::ClientIp, rate_limit::Rate, scheme::ElevenLabs, signature::VerifiedBody,
//!     RateLimitLayer, VerifySignatureLayer,
//! };
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{service_fn, ServiceBuilder};
//!
//! let limit = std::env::var("NO_LIMIT").is_err().then(|| {
//!     RateLimitLayer::per_client(Rate::per_second(5.try_into().unwrap()), ClientIp::peer())
//! });
//! let service = ServiceBuilder::new()
//!     .option_layer(limit)
//!     .layer(VerifySignatureLayer::new(ElevenLabs::new("secret").unwrap()))
//!     .service(service_fn(|_request: Request<VerifiedBody>| async {
//!         Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("ok")))
//!     }));
//! # fn is_service<S: tower::Service<Request<Full<Bytes>>>>(_: &S) {}
//! # is_service(&service);
//! # }
//! ```
//!
//! A body type of your own implements [`ProblemBody`] in one line; a body type you do not own
//! (hyper's `Incoming`, a proxy's) is wrapped once in [`ResponseBody`], which implements it for
//! any body.
//!
//! [`option_layer`]: https://docs.rs/tower/latest/tower/builder/struct.ServiceBuilder.html#method.option_layer

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{
    combinators::{BoxBody, UnsyncBoxBody},
    BodyExt, Full,
};
use pin_project_lite::pin_project;

/// A response body a hookgate layer can write its own answer into: the complete
/// `application/problem+json` document (or, for a gRPC client, nothing: the status travels in
/// the headers).
///
/// Implemented for the bodies handlers commonly return ([`Full<Bytes>`], `String`,
/// http-body-util's boxed bodies, axum's body with the `axum` feature, tonic's with the `tonic`
/// feature) and for [`ResponseBody`], the adapter for any other body.
#[diagnostic::on_unimplemented(
    message = "hookgate's layers cannot write their answers into a `{Self}` body",
    note = "under axum, enable hookgate's `axum` feature; under tonic, its `tonic` feature; wrap any other body in `hookgate::body::ResponseBody`"
)]
pub trait ProblemBody {
    /// The body holding exactly `bytes`.
    fn from_problem(bytes: Bytes) -> Self;
}

impl ProblemBody for Full<Bytes> {
    fn from_problem(bytes: Bytes) -> Self {
        Full::new(bytes)
    }
}

impl ProblemBody for String {
    fn from_problem(bytes: Bytes) -> Self {
        // Problem bodies are JSON written by hookgate: always UTF-8.
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl<E> ProblemBody for BoxBody<Bytes, E> {
    fn from_problem(bytes: Bytes) -> Self {
        BoxBody::new(Full::new(bytes).map_err(|never| match never {}))
    }
}

impl<E> ProblemBody for UnsyncBoxBody<Bytes, E> {
    fn from_problem(bytes: Bytes) -> Self {
        UnsyncBoxBody::new(Full::new(bytes).map_err(|never| match never {}))
    }
}

#[cfg(feature = "axum")]
impl ProblemBody for axum::body::Body {
    fn from_problem(bytes: Bytes) -> Self {
        axum::body::Body::from(bytes)
    }
}

#[cfg(feature = "tonic")]
impl ProblemBody for tonic::body::Body {
    fn from_problem(bytes: Bytes) -> Self {
        tonic::body::Body::new(Full::new(bytes))
    }
}

impl<B> ProblemBody for ResponseBody<B> {
    fn from_problem(bytes: Bytes) -> Self {
        Self::problem(bytes)
    }
}

pin_project! {
    /// Adapts any body to hookgate's layers: either the inner service's body, passed through
    /// untouched, or a complete `application/problem+json` body written by a layer. Wrap a body
    /// type that does not implement [`ProblemBody`] once, innermost (for instance with
    /// `tower::ServiceBuilder::map_response(|r: Response<B>| r.map(ResponseBody::new))`).
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Problem { bytes: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    /// Wraps the inner service's body.
    pub fn new(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// A complete body of the given bytes (a layer's own answer).
    fn problem(bytes: Bytes) -> Self {
        Self {
            // An empty body yields no frame at all (a gRPC trailers-only answer).
            kind: Kind::Problem {
                bytes: (!bytes.is_empty()).then_some(bytes),
            },
        }
    }

    /// Whether this body was written by a hookgate layer rather than the inner service.
    pub fn is_problem(&self) -> bool {
        matches!(self.kind, Kind::Problem { .. })
    }
}

impl<B: Default> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::new(B::default())
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Problem { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Problem { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Problem { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.write_str("ResponseBody::Inner"),
            Kind::Problem { bytes } => f
                .debug_struct("ResponseBody::Problem")
                .field("len", &bytes.as_ref().map_or(0, Bytes::len))
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;

    #[tokio::test]
    async fn inner_body_passes_through() {
        let body = ResponseBody::new(Full::new(Bytes::from_static(b"hello")));
        assert!(!body.is_problem());
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
    }

    #[tokio::test]
    async fn problem_body_yields_its_bytes_once() {
        let body = ResponseBody::<Empty<Bytes>>::from_problem(Bytes::from_static(b"{}"));
        assert!(body.is_problem());
        assert_eq!(body.size_hint().exact(), Some(2));
        assert!(!body.is_end_stream());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "{}");
    }
}

#[cfg(test)]
mod problem_body_tests {
    use super::*;

    async fn bytes_of<B: Body<Data = Bytes>>(body: B) -> Bytes
    where
        B::Error: fmt::Debug,
    {
        body.collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn every_shipped_body_holds_the_problem_bytes() {
        let json = Bytes::from_static(br#"{"code":"x"}"#);
        assert_eq!(bytes_of(Full::from_problem(json.clone())).await, json);
        assert_eq!(bytes_of(String::from_problem(json.clone())).await, json);
        assert_eq!(
            bytes_of(BoxBody::<Bytes, std::io::Error>::from_problem(json.clone())).await,
            json
        );
        assert_eq!(
            bytes_of(UnsyncBoxBody::<Bytes, std::io::Error>::from_problem(
                json.clone()
            ))
            .await,
            json
        );
    }
}
