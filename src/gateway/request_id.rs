//! Request ids: every request through the gateway has an `X-Request-Id`, taken from the client
//! when it sent a usable one and made here otherwise ([`RequestIdHeaderLayer`]). The id
//! is forwarded upstream with the request, echoed on the answer (`PropagateRequestIdLayer`),
//! named by the trace span every log line of the request is written in ([`span`]), and added
//! to every problem+json body the layers write ([`ProblemRequestIdLayer`]), so that a sender's
//! report, the gateway's logs and the upstream's can be matched.
//!
//! A client's id goes into log lines and bodies, so only a short plain token is taken
//! ([`accept_client_id`]); anything else is replaced by one of ours.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{ready, Context, Poll},
};

use http::{header, HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tower_http::request_id::{MakeRequestId, RequestId};

use crate::{
    body::ProblemBody,
    problem::{Problem, PROBLEM_JSON},
};

/// The header the id travels in.
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client id taken.
const MAX_CLIENT_ID: usize = 64;

/// Removes a client's `X-Request-Id` that is not one short plain token (letters, digits,
/// `-`, `_`, `.`, `:`; at most 64 bytes; one header), so that one of ours replaces it: it
/// would otherwise be copied into every log line and problem body of the request.
pub(crate) fn accept_client_id<B>(mut request: Request<B>) -> Request<B> {
    let headers = request.headers_mut();
    let mut values = headers.get_all(&X_REQUEST_ID).iter();
    let usable = match (values.next(), values.next()) {
        (None, _) => return request,
        (Some(value), None) => is_plain_token(value.as_bytes()),
        (Some(_), Some(_)) => false,
    };
    if !usable {
        headers.remove(&X_REQUEST_ID);
    }
    request
}

fn is_plain_token(bytes: &[u8]) -> bool {
    (1..=MAX_CLIENT_ID).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Makes ids: 32 hex digits, a random per-process half and a counter half, so ids are unique
/// across restarts and instances without a random draw per request.
#[derive(Clone, Debug)]
pub(crate) struct MakeId {
    prefix: u64,
    counter: Arc<AtomicU64>,
}

impl MakeId {
    pub(crate) fn new() -> Self {
        Self {
            prefix: fastrand::u64(..),
            counter: Arc::new(AtomicU64::new(0)),
        }
    }

    fn next(&self) -> HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut text = [0_u8; 32];
        for (i, byte) in self
            .prefix
            .to_be_bytes()
            .into_iter()
            .chain(count.to_be_bytes())
            .enumerate()
        {
            text[2 * i] = HEX[usize::from(byte >> 4)];
            text[2 * i + 1] = HEX[usize::from(byte & 0xf)];
        }
        HeaderValue::from_bytes(&text).expect("hex digits are a valid header value")
    }
}

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        Some(RequestId::new(self.next()))
    }
}

/// The span a request's log lines are written in, naming its id.
pub(crate) fn span<B>(request: &Request<B>) -> tracing::Span {
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", id)
}

/// Adds the request's id to the problem+json bodies written inside it. The id is read from the
/// answer's `X-Request-Id` (set inside by `PropagateRequestIdLayer`), and only when the answer
/// is a problem: an accepted delivery costs one header comparison.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProblemRequestIdLayer;

impl<S> Layer<S> for ProblemRequestIdLayer {
    type Service = ProblemRequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProblemRequestId { inner }
    }
}

/// Service of [`ProblemRequestIdLayer`].
#[derive(Clone, Debug)]
pub(crate) struct ProblemRequestId<S> {
    inner: S,
}

impl<S, B, ResBody> Service<Request<B>> for ProblemRequestId<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: ProblemBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ProblemRequestIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ProblemRequestIdFuture {
            future: self.inner.call(request),
        }
    }
}

pin_project! {
    /// The future of [`ProblemRequestId`].
    pub(crate) struct ProblemRequestIdFuture<F> {
        #[pin]
        future: F,
    }
}

impl<F, B, E> Future for ProblemRequestIdFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: ProblemBody,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = ready!(self.project().future.poll(cx))?;
        let is_problem_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|value| value == PROBLEM_JSON);
        if !is_problem_json || response.extensions().get::<Problem>().is_none() {
            return Poll::Ready(Ok(response));
        }
        let Some(id) = response
            .headers()
            .get(&X_REQUEST_ID)
            .and_then(|id| id.to_str().ok())
            .map(str::to_owned)
        else {
            return Poll::Ready(Ok(response));
        };
        let (mut parts, _written) = response.into_parts();
        let problem = parts
            .extensions
            .remove::<Problem>()
            .expect("checked above")
            .with_request_id(id);
        let body = B::from_problem(problem.to_json());
        parts.extensions.insert(problem);
        Poll::Ready(Ok(Response::from_parts(parts, body)))
    }
}

/// Gives every request its `X-Request-Id` header: the client's when [`accept_client_id`] keeps
/// it, one of [`MakeId`]'s otherwise. In place of tower-http's `SetRequestIdLayer`, which also
/// put a `RequestId` extension on every request (an allocation and a hash map entry per
/// request) that nothing in the gateway reads: the header is what is forwarded, echoed and
/// named.
#[derive(Clone, Debug)]
pub(crate) struct RequestIdHeaderLayer(pub(crate) MakeId);

impl<S> Layer<S> for RequestIdHeaderLayer {
    type Service = RequestIdHeader<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdHeader {
            inner,
            make: self.0.clone(),
        }
    }
}

/// Service of [`RequestIdHeaderLayer`].
#[derive(Clone, Debug)]
pub(crate) struct RequestIdHeader<S> {
    inner: S,
    make: MakeId,
}

impl<S, B> Service<Request<B>> for RequestIdHeader<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut request = accept_client_id(request);
        if !request.headers().contains_key(&X_REQUEST_ID) {
            request
                .headers_mut()
                .insert(X_REQUEST_ID.clone(), self.make.next());
        }
        self.inner.call(request)
    }
}

/// Runs each request's service call and response future inside its [`span`], so that every
/// log line of the request names its id. In place of tower-http's `TraceLayer`, which with
/// nothing to log still read the clock twice per body frame, classified every answer and
/// wrapped the answer's body to enter the span on each frame: the gateway's answer bodies are
/// read whole before the head goes out, so nothing logs while they are written.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct InSpanLayer;

impl<S> Layer<S> for InSpanLayer {
    type Service = InSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InSpan { inner }
    }
}

/// Service of [`InSpanLayer`].
#[derive(Clone, Debug)]
pub(crate) struct InSpan<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for InSpan<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tracing::instrument::Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        use tracing::Instrument;
        let span = span(&request);
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        future.instrument(span)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::StatusCode;
    use http_body_util::{BodyExt, Full};
    use tower::{service_fn, ServiceExt};

    use tower_http::request_id::PropagateRequestIdLayer;

    use super::*;
    use crate::gateway::codes;

    fn with_ids(values: &[&'static str]) -> Request<()> {
        let mut request = Request::new(());
        for value in values {
            request
                .headers_mut()
                .append(&X_REQUEST_ID, HeaderValue::from_static(value));
        }
        request
    }

    fn kept(values: &[&'static str]) -> Option<String> {
        accept_client_id(with_ids(values))
            .headers()
            .get(&X_REQUEST_ID)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn a_short_plain_client_id_is_kept_and_anything_else_dropped() {
        assert_eq!(kept(&[]), None);
        assert_eq!(kept(&["req_01:a-b.c"]).as_deref(), Some("req_01:a-b.c"));
        let longest = "a".repeat(MAX_CLIENT_ID);
        let mut request = Request::new(());
        request
            .headers_mut()
            .insert(&X_REQUEST_ID, HeaderValue::from_str(&longest).unwrap());
        assert!(accept_client_id(request)
            .headers()
            .contains_key(&X_REQUEST_ID));
        let too_long = "a".repeat(MAX_CLIENT_ID + 1);
        let mut request = Request::new(());
        request
            .headers_mut()
            .insert(&X_REQUEST_ID, HeaderValue::from_str(&too_long).unwrap());
        assert!(!accept_client_id(request)
            .headers()
            .contains_key(&X_REQUEST_ID));
        assert_eq!(kept(&[""]), None);
        assert_eq!(kept(&["has space"]), None);
        assert_eq!(kept(&["quote\"d"]), None);
        assert_eq!(kept(&["a", "b"]), None, "two ids: neither is taken");
    }

    #[test]
    fn made_ids_are_32_hex_digits_and_differ() {
        let make = MakeId::new();
        let first = make.next();
        let second = make.clone().next();
        for id in [&first, &second] {
            assert_eq!(id.len(), 32);
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit), "{id:?}");
        }
        assert_ne!(first, second, "clones share the counter");
        assert_eq!(
            first.as_bytes()[..16],
            second.as_bytes()[..16],
            "one process prefix"
        );
        assert_ne!(MakeId::new().prefix, MakeId::new().prefix);
    }

    #[tokio::test]
    async fn problem_bodies_name_the_request_and_other_answers_are_untouched() {
        let refuse = service_fn(|_request: Request<()>| async {
            Ok::<_, Infallible>(
                Problem::new(StatusCode::NOT_FOUND, codes::NOT_FOUND)
                    .into_response::<Full<Bytes>>(),
            )
        });
        let response = ProblemRequestIdLayer
            .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()).layer(refuse))
            .oneshot(with_ids(&["abc123"]))
            .await
            .unwrap();
        assert_eq!(
            response.extensions().get::<Problem>().unwrap().request_id(),
            Some("abc123")
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["request_id"], "abc123");
        assert_eq!(json["code"], "not_found");

        let accept = service_fn(|_request: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("stored")))
        });
        let response = ProblemRequestIdLayer
            .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()).layer(accept))
            .oneshot(with_ids(&["abc123"]))
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "stored");
    }
}
