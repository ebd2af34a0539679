//! Status normalization: every outcome of the inner service becomes the sender's retry contract.
//!
//! A webhook sender decides from the status alone whether an event is delivered, retried or
//! dropped for good. A handler that answers `201`, a timeout middleware that answers `408`, a
//! `tower::timeout` error, a redirect, a panic that resets the connection: each of these silently
//! breaks that contract. [`NormalizeStatusLayer`] rewrites every outcome into an answer the
//! sender reads the way the handler meant it.
//!
//! # Where it goes
//!
//! Outermost, so that it sees everything: the handler, every other hookgate layer and any tower
//! middleware in between (timeouts, load shedding, concurrency limits). Its error type is
//! [`Infallible`], so a stack whose inner layers fail with a `BoxError` can be mounted in axum
//! without `HandleErrorLayer`.
//!
//! ```text
//! request ─▶ NormalizeStatus ─▶ RateLimit ─▶ VerifySignature ─▶ … ─▶ handler
//! ```
//!
//! # The contract (ElevenLabs profile, the default)
//!
//! | the inner service … | answer | `Normalized` cause |
//! |---|---|---|
//! | answered `200` | `200`, untouched | – |
//! | answered another 2xx | exactly `200`, the handler's headers and body kept | [`SuccessStatus`] |
//! | answered 3xx | `500` problem | [`Redirect`] |
//! | answered `408`, `425` or `429` | `503` problem, the inner `Retry-After` kept (or the layer's [`retry_after`]) | [`RetryLaterStatus`] |
//! | answered another 4xx | kept: it is the handler's own, deliberate rejection | – |
//! | answered `408`, `425` or `429` written by a hookgate layer (a flood limit, a blocked client, a slow body) | the contract's retry-later status (`503`) with the same problem code, detail, `Retry-After` and rate-limit headers; kept where the contract retries it | [`RetryLaterStatus`] |
//! | answered another 4xx written by a hookgate layer (it carries a [`ProblemCode`]) | kept | – |
//! | answered 5xx | kept | – |
//! | answered a status outside 200–599 | `500` problem | [`UnexpectedStatus`] |
//! | failed with [`tower::timeout::error::Elapsed`] (or a tokio `Elapsed`) | `503` problem + `Retry-After` | [`Timeout`] |
//! | failed with [`tower::load_shed::error::Overloaded`] | `503` problem + `Retry-After` | [`Overloaded`] |
//! | failed with any other error | `500` problem | [`Error`] |
//! | panicked in `poll_ready`, `call` or while its future was polled | `500` problem | [`Panic`] |
//! | did not answer within the [`handler_deadline`] | `503` problem + `Retry-After` | [`Deadline`] |
//! | answered gRPC (`content-type: application/grpc*`) | untouched | – |
//!
//! What happens to the inner response: a kept answer passes on unchanged (headers, body,
//! extensions). A 2xx rewritten to the success status keeps the handler's headers, body and
//! extensions: only the status changes. Every other rewrite replaces the response with a
//! problem: the inner body is dropped unread and its headers (a `Location`, cookies) are
//! discarded; only the `Retry-After` of a `408`/`425`/`429` is carried over.
//!
//! Errors are found by downcasting the boxed error and walking its `source()` chain, so an
//! `Elapsed` wrapped by another layer is still recognised. A failing `poll_ready` does not kill
//! the connection either: the layer reports itself ready and answers the next request from the
//! failure, without calling the inner service.
//!
//! Every answer the layer writes itself is an `application/problem+json` body
//! ([`crate::problem`]) with a stable [`ProblemCode`] (`handler_timeout`, `handler_overloaded`,
//! `handler_error`, `handler_panicked`, `handler_throttled`, `handler_redirected`), and every
//! response the layer changed carries a [`Normalized`] extension with the original status and the
//! cause, so metrics and logs can count them. The text of an inner error or of a panic never
//! reaches a body: it is logged with `tracing` (`warn` for errors and deadlines, `error` for
//! panics) and the body only names the cause.
//!
//! Answers that hookgate's own inner layers wrote (they carry a [`ProblemCode`] extension) pass
//! through, with one exception. The layers answer "retry later" with the precise status (`429`
//! for a flood or a blocked client, `408` for a body that arrives too slowly), and such an answer
//! can reach a *genuine* delivery: a sender's few egress addresses are shared by all its
//! customers, and a network can be slow. So wherever the contract would drop the event on that
//! status (ElevenLabs), the layer answers the same problem with the contract's retry-later status
//! (`503`) instead; under a contract that retries `408`/`429` (Standard Webhooks, where `429` also
//! slows the sender down) the precise status stays. Final rejections (`400`, `401`, `403`, `413`)
//! are kept: a genuine delivery never triggers them.
//!
//! # Why a 4xx for your own trouble loses events
//!
//! ElevenLabs retries 5xx and drops an event on a 4xx (its newer docs also retry `408` and
//! `429`, but only for webhooks that opted in to retries, and an older page says an event is
//! dispatched once). So a `429` from a throttled handler, or a `408` from a timeout middleware,
//! means the transcript is gone for good although nothing was wrong with it. Only a genuine
//! rejection of the event itself (a malformed payload, an unknown event type) should be a 4xx;
//! this layer turns "not now" into `503` and "something broke" into `500`, both retried.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use hookgate::normalize::{NormalizeCause, NormalizeStatusLayer, Normalized};
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // A handler that answers 201 Created: ElevenLabs counts only 200 as success.
//! let handler = tower::service_fn(|_req: Request<Full<Bytes>>| async {
//!     let mut response = Response::new(Full::new(Bytes::from_static(b"stored")));
//!     *response.status_mut() = StatusCode::CREATED;
//!     Ok::<_, Infallible>(response)
//! });
//! let service = ServiceBuilder::new()
//!     .layer(NormalizeStatusLayer::elevenlabs())
//!     .service(handler);
//!
//! let response = service.oneshot(Request::new(Full::default())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(
//!     response.extensions().get::<Normalized>().map(|n| (n.original, n.cause)),
//!     Some((Some(StatusCode::CREATED), NormalizeCause::SuccessStatus)),
//! );
//! # }
//! ```
//!
//! Errors become responses, so a tower stack with a `TimeoutLayer` inside has error type
//! [`Infallible`]:
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use hookgate::normalize::NormalizeStatusLayer;
//! use hookgate::problem::ProblemCode;
//! use http::{header, Request, Response, StatusCode};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use tower::{timeout::TimeoutLayer, Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let slow = tower::service_fn(|_req: Request<Full<Bytes>>| async {
//!     tokio::time::sleep(Duration::from_secs(60)).await;
//!     Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
//! });
//! let mut service = ServiceBuilder::new()
//!     .layer(NormalizeStatusLayer::elevenlabs())
//!     .layer(TimeoutLayer::new(Duration::from_millis(10)))
//!     .service(slow);
//!
//! let response: Result<_, Infallible> =
//!     service.ready().await.unwrap().call(Request::new(Full::default())).await;
//! let response = response.unwrap();
//! assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(response.headers()[header::RETRY_AFTER], "30");
//! assert_eq!(response.extensions().get::<ProblemCode>(), Some(&ProblemCode::HANDLER_TIMEOUT));
//! # }
//! ```
//!
//! Mounted in axum, around the whole router:
//!
//! ```
//! use axum::{body::Body, routing::post, Router};
//! use hookgate::normalize::NormalizeStatusLayer;
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = Router::new()
//!     .route("/webhooks/elevenlabs", post(|| async { StatusCode::ACCEPTED }))
//!     .layer(NormalizeStatusLayer::elevenlabs());
//!
//! let request = Request::post("/webhooks/elevenlabs").body(Body::empty()).unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! # }
//! ```
//!
//! # Other senders
//!
//! The contract is a value, [`SenderContract`]: which statuses the sender counts as success,
//! retries, throttles on, drops or disables the endpoint for, and which statuses this layer
//! answers with. [`SenderContract::standard_webhooks`] expresses the Standard Webhooks rules
//! (2xx success, `410` disables the endpoint, `429`/`502`/`504` throttle, everything else is
//! retried); [`SenderContract::builder`] expresses any other sender's. The layer keeps an inner
//! status whenever the sender already reads it the way the handler meant it, and replaces it
//! with the contract's answer otherwise.
//!
//! # Caveats
//!
//! - The [`handler_deadline`] cancels the inner future (it is dropped, like `tower::timeout`
//!   does): a handler that must not be interrupted half-way should commit in a spawned task.
//!   The event is retried, so put a deduplication layer inside.
//! - The deadline needs a tokio runtime with its time driver; without a deadline the layer
//!   needs no runtime at all.
//! - A handler `410` under the Standard Webhooks contract disables the endpoint; the layer keeps
//!   it because it is the handler's deliberate answer.
//! - Errors and panics on a gRPC request are answered with HTTP `500`/`503`, which gRPC clients
//!   map to `INTERNAL`/`UNAVAILABLE`.
//! - A panic while the response *body* streams comes after the status line was sent: it cannot
//!   become a `500` any more. Handlers that answer webhooks should answer with a complete body.
//!
//! [`SuccessStatus`]: NormalizeCause::SuccessStatus
//! [`Redirect`]: NormalizeCause::Redirect
//! [`RetryLaterStatus`]: NormalizeCause::RetryLaterStatus
//! [`UnexpectedStatus`]: NormalizeCause::UnexpectedStatus
//! [`Timeout`]: NormalizeCause::Timeout
//! [`Overloaded`]: NormalizeCause::Overloaded
//! [`Error`]: NormalizeCause::Error
//! [`Panic`]: NormalizeCause::Panic
//! [`Deadline`]: NormalizeCause::Deadline
//! [`retry_after`]: NormalizeStatusLayer::retry_after
//! [`handler_deadline`]: NormalizeStatusLayer::handler_deadline

use std::{
    any::Any,
    convert::Infallible,
    error::Error as StdError,
    fmt,
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use http::{header, HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    body::ProblemBody,
    problem::{is_grpc, Problem, ProblemCode, ResponseForm, RetryLaterProblem},
    ConfigError,
};

type BoxError = Box<dyn StdError + Send + Sync>;

/// The `Retry-After` the layer sends with its own `503`s unless told otherwise: ElevenLabs'
/// first retry comes after 30 s.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Applies a [`SenderContract`] to every outcome of the inner service: see the
/// [module docs](self).
///
/// ```
/// use std::time::Duration;
/// use hookgate::normalize::{NormalizeStatusLayer, SenderContract};
///
/// let layer = NormalizeStatusLayer::new(SenderContract::standard_webhooks())
///     .handler_deadline(Duration::from_secs(10))
///     .retry_after(Duration::from_secs(5));
/// assert_eq!(layer.contract().name(), "standard-webhooks");
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct NormalizeStatusLayer {
    contract: SenderContract,
    settings: Settings,
}

/// What a service and its response futures need per request: the contract reduced to the
/// statuses the layer looks up, plus the layer's options. Small and `Copy`: no shared state
/// and no allocation per request.
#[derive(Clone, Copy)]
struct Settings {
    /// Bit `i`: the sender counts `200 + i` as success.
    success_2xx: u128,
    /// Bit `i`: the sender retries `500 + i`.
    retried_5xx: u128,
    /// Bits 0, 1, 2: the sender retries `408`, `425`, `429`.
    retried_retry_later: u8,
    success_status: StatusCode,
    retry_later_status: StatusCode,
    failure_status: StatusCode,
    retry_after: Duration,
    handler_deadline: Option<Duration>,
}

impl fmt::Debug for Settings {
    /// The answers and options; the status bits are the contract's, shown by its own `Debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("success_status", &self.success_status.as_u16())
            .field("retry_later_status", &self.retry_later_status.as_u16())
            .field("failure_status", &self.failure_status.as_u16())
            .field("retry_after", &self.retry_after)
            .field("handler_deadline", &self.handler_deadline)
            .finish_non_exhaustive()
    }
}

impl Settings {
    fn new(contract: &SenderContract) -> Self {
        let bits = |from: u16, set: &StatusSet| {
            (0..100u16).fold(0u128, |acc, i| {
                acc | (u128::from(set.contains(from + i)) << i)
            })
        };
        let retried_retry_later = [408u16, 425, 429]
            .iter()
            .enumerate()
            .fold(0u8, |acc, (i, &code)| {
                acc | (u8::from(contract.retried.contains(code)) << i)
            });
        Self {
            success_2xx: bits(200, &contract.success),
            retried_5xx: bits(500, &contract.retried),
            retried_retry_later,
            success_status: contract.success_status,
            retry_later_status: contract.retry_later_status,
            failure_status: contract.failure_status,
            retry_after: DEFAULT_RETRY_AFTER,
            handler_deadline: None,
        }
    }

    /// Whether the sender counts `code` (a 2xx) as success.
    fn is_success(&self, code: u16) -> bool {
        matches!(code, 200..=299) && (self.success_2xx >> (code - 200)) & 1 == 1
    }

    /// Whether the sender retries `code` (a 5xx, `408`, `425` or `429`).
    fn is_retried(&self, code: u16) -> bool {
        match code {
            500..=599 => (self.retried_5xx >> (code - 500)) & 1 == 1,
            408 => self.retried_retry_later & 1 != 0,
            425 => self.retried_retry_later & 2 != 0,
            429 => self.retried_retry_later & 4 != 0,
            _ => false,
        }
    }
}

impl NormalizeStatusLayer {
    /// A layer applying `contract`, with no handler deadline and a `Retry-After` of 30 s on the
    /// `503`s it writes itself.
    pub fn new(contract: SenderContract) -> Self {
        Self {
            settings: Settings::new(&contract),
            contract,
        }
    }

    /// The ElevenLabs profile ([`SenderContract::elevenlabs`]), the default.
    pub fn elevenlabs() -> Self {
        Self::new(SenderContract::elevenlabs())
    }

    /// The Standard Webhooks profile ([`SenderContract::standard_webhooks`]).
    pub fn standard_webhooks() -> Self {
        Self::new(SenderContract::standard_webhooks())
    }

    /// Answers `503` + `Retry-After` ([`NormalizeCause::Deadline`]) when the inner service has
    /// not answered within `deadline` of the call, and drops (cancels) its future. Choose it
    /// shorter than the sender's own request timeout: a sender timeout has unknown retry
    /// behaviour, a `503` is retried. Needs a tokio runtime with the time driver.
    pub fn handler_deadline(mut self, deadline: Duration) -> Self {
        self.settings.handler_deadline = Some(deadline);
        self
    }

    /// The wait announced in `Retry-After` on the `503`s this layer writes itself (timeouts,
    /// overload, deadline, and `408`/`425`/`429` answers that carried none). Rounded up to whole
    /// seconds, at least 1 s. Default 30 s.
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.settings.retry_after = wait;
        self
    }

    /// The contract this layer applies.
    #[must_use]
    pub fn contract(&self) -> &SenderContract {
        &self.contract
    }
}

impl Default for NormalizeStatusLayer {
    fn default() -> Self {
        Self::elevenlabs()
    }
}

impl<S> Layer<S> for NormalizeStatusLayer {
    type Service = NormalizeStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NormalizeStatus {
            inner,
            settings: self.settings,
            not_ready: None,
        }
    }
}

/// The service of [`NormalizeStatusLayer`]: see the [module docs](self).
pub struct NormalizeStatus<S> {
    inner: S,
    settings: Settings,
    /// A failure of the inner `poll_ready`, answered by the next `call`.
    not_ready: Option<NormalizeCause>,
}

impl<S> NormalizeStatus<S> {
    /// Wraps `inner` with `contract`; see [`NormalizeStatusLayer::new`].
    pub fn new(inner: S, contract: SenderContract) -> Self {
        NormalizeStatusLayer::new(contract).layer(inner)
    }

    /// A [`NormalizeStatusLayer`] applying `contract`.
    pub fn layer(contract: SenderContract) -> NormalizeStatusLayer {
        NormalizeStatusLayer::new(contract)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for NormalizeStatus<S> {
    /// A clone is a fresh service: a pending `poll_ready` failure stays with the original.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            settings: self.settings,
            not_ready: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for NormalizeStatus<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NormalizeStatus")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .field("not_ready", &self.not_ready)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for NormalizeStatus<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: ProblemBody,
{
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.not_ready.is_some() {
            return Poll::Ready(Ok(()));
        }
        match catch_unwind(AssertUnwindSafe(|| self.inner.poll_ready(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(Ok(()))) => Poll::Ready(Ok(())),
            Ok(Poll::Ready(Err(error))) => {
                self.not_ready = Some(error_cause(&error.into(), "poll_ready"));
                Poll::Ready(Ok(()))
            }
            Err(payload) => {
                log_panic(payload, "poll_ready");
                self.not_ready = Some(NormalizeCause::Panic);
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let form = ResponseForm::of(request.headers());
        if let Some(cause) = self.not_ready.take() {
            return ResponseFuture::failed(cause, &self.settings, form);
        }
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => ResponseFuture {
                kind: Kind::Inner { future },
                deadline: self.settings.handler_deadline.map(tokio::time::sleep),
                settings: self.settings,
                form,
            },
            Err(payload) => {
                log_panic(payload, "call");
                ResponseFuture::failed(NormalizeCause::Panic, &self.settings, form)
            }
        }
    }
}

pin_project! {
    /// Response future of [`NormalizeStatus`]: resolves to the normalized response, never to
    /// an error.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
        #[pin]
        deadline: Option<Sleep>,
        settings: Settings,
        form: ResponseForm,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Failed { cause: Option<NormalizeCause> },
    }
}

impl<F> ResponseFuture<F> {
    fn failed(cause: NormalizeCause, settings: &Settings, form: ResponseForm) -> Self {
        Self {
            kind: Kind::Failed { cause: Some(cause) },
            deadline: None,
            settings: *settings,
            form,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Failed { .. } => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("deadline", &self.deadline.as_ref().map(Sleep::deadline))
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: ProblemBody,
{
    type Output = Result<Response<B>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let settings: &Settings = this.settings;
        let form = *this.form;
        let future = match this.kind.project() {
            KindProj::Inner { future } => future,
            KindProj::Failed { cause } => {
                let cause = cause
                    .take()
                    .expect("ResponseFuture polled after completion");
                return Poll::Ready(Ok(failure_response(cause, None, None, settings, form)));
            }
        };
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Ready(Ok(response))) => Poll::Ready(Ok(normalize(response, settings, form))),
            Ok(Poll::Ready(Err(error))) => {
                let cause = error_cause(&error.into(), "response future");
                Poll::Ready(Ok(failure_response(cause, None, None, settings, form)))
            }
            Err(payload) => {
                log_panic(payload, "response future");
                Poll::Ready(Ok(failure_response(
                    NormalizeCause::Panic,
                    None,
                    None,
                    settings,
                    form,
                )))
            }
            Ok(Poll::Pending) => match this.deadline.as_pin_mut().map(|d| d.poll(cx)) {
                Some(Poll::Ready(())) => {
                    tracing::warn!(
                        deadline = ?settings.handler_deadline.unwrap_or_default(),
                        "handler did not answer before the deadline; answered 503"
                    );
                    Poll::Ready(Ok(failure_response(
                        NormalizeCause::Deadline,
                        None,
                        None,
                        settings,
                        form,
                    )))
                }
                _ => Poll::Pending,
            },
        }
    }
}

/// Applies the contract to a response of the inner service.
fn normalize<B: ProblemBody>(
    response: Response<B>,
    settings: &Settings,
    form: ResponseForm,
) -> Response<B> {
    let status = response.status();
    let code = status.as_u16();
    match code {
        // The fast path: the sender already reads the answer the way the handler meant it.
        200..=299 if settings.is_success(code) => response,
        400..=499 if !matches!(code, 408 | 425 | 429) => response,
        500..=599 if settings.is_retried(code) => response,
        408 | 425 | 429 if settings.is_retried(code) => response,
        _ if is_grpc(response.headers()) => response,
        // A hookgate layer's own "retry later" (a flood limit, a blocked client, a slow body)
        // under a contract that drops this status: the same problem, answered retryably. Such
        // an answer can reach a genuine delivery, which must never be dropped for it.
        408 | 425 | 429 if response.extensions().get::<RetryLaterProblem>().is_some() => {
            retry_later_rejection(response, settings)
        }
        200..=299 => {
            tracing::debug!(
                original = code,
                answer = settings.success_status.as_u16(),
                "success status rewritten for the sender"
            );
            let mut response = response;
            *response.status_mut() = settings.success_status;
            response.extensions_mut().insert(Normalized {
                original: Some(status),
                cause: NormalizeCause::SuccessStatus,
            });
            response
        }
        300..=399 => failure_response(NormalizeCause::Redirect, Some(status), None, settings, form),
        408 | 425 | 429 => {
            let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
            failure_response(
                NormalizeCause::RetryLaterStatus,
                Some(status),
                retry_after,
                settings,
                form,
            )
        }
        _ => failure_response(
            NormalizeCause::UnexpectedStatus,
            Some(status),
            None,
            settings,
            form,
        ),
    }
}

/// A hookgate layer's retry-later 4xx, answered with the contract's retry-later status: the same
/// problem code, detail and headers (`Retry-After`, rate-limit fields), only the status moved.
fn retry_later_rejection<B: ProblemBody>(
    response: Response<B>,
    settings: &Settings,
) -> Response<B> {
    let (mut parts, body) = response.into_parts();
    let Some(RetryLaterProblem(problem)) = parts.extensions.remove::<RetryLaterProblem>() else {
        return Response::from_parts(parts, body);
    };
    let original = parts.status;
    let mut problem = problem.with_status(settings.retry_later_status);
    if problem.retry_after().is_none() {
        // A retry-later answer says when: the layer's own wait where the problem named none.
        problem = problem.with_retry_after(settings.retry_after);
        if let Some(secs) = problem.retry_after_secs() {
            parts
                .headers
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
    }
    parts.status = problem.status();
    parts.extensions.insert(Normalized {
        original: Some(original),
        cause: NormalizeCause::RetryLaterStatus,
    });
    tracing::debug!(
        original = original.as_u16(),
        answer = parts.status.as_u16(),
        code = problem.code().as_str(),
        "retry-later rejection moved to the contract's retry-later status"
    );
    Response::from_parts(parts, B::from_problem(problem.to_json()))
}

/// The problem+json answer for `cause`, with the [`Normalized`] extension.
fn failure_response<B: ProblemBody>(
    cause: NormalizeCause,
    original: Option<StatusCode>,
    inner_retry_after: Option<HeaderValue>,
    settings: &Settings,
    form: ResponseForm,
) -> Response<B> {
    let (status, code) = match cause {
        NormalizeCause::Timeout | NormalizeCause::Deadline => {
            (settings.retry_later_status, ProblemCode::HANDLER_TIMEOUT)
        }
        NormalizeCause::Overloaded => {
            (settings.retry_later_status, ProblemCode::HANDLER_OVERLOADED)
        }
        NormalizeCause::RetryLaterStatus => {
            (settings.retry_later_status, ProblemCode::HANDLER_THROTTLED)
        }
        NormalizeCause::Redirect => (settings.failure_status, ProblemCode::HANDLER_REDIRECTED),
        NormalizeCause::Panic => (settings.failure_status, ProblemCode::HANDLER_PANICKED),
        NormalizeCause::Error
        | NormalizeCause::UnexpectedStatus
        | NormalizeCause::SuccessStatus => (settings.failure_status, ProblemCode::HANDLER_ERROR),
    };
    let mut problem = Problem::new(status, code).with_detail(cause.detail());
    // A `Retry-After` the inner service set in delta-seconds goes into the body too; an
    // HTTP-date is copied to the header as it is; anything else is no wait at all, and the
    // layer's own applies.
    let mut verbatim_retry_after = None;
    let inner = inner_retry_after
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if let Some(secs) = inner.and_then(|text| text.parse::<u64>().ok()) {
        problem = problem.with_retry_after(Duration::from_secs(secs));
    } else if inner.is_some_and(|text| httpdate::parse_http_date(text).is_ok()) {
        verbatim_retry_after = inner_retry_after;
    } else if cause.is_retry_later() {
        problem = problem.with_retry_after(settings.retry_after);
    }
    let mut response = problem.into_response_for(form);
    if let Some(value) = verbatim_retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
        .extensions_mut()
        .insert(Normalized { original, cause });
    if let Some(original) = original {
        tracing::debug!(
            original = original.as_u16(),
            answer = status.as_u16(),
            cause = cause.as_str(),
            "status rewritten for the sender"
        );
    }
    response
}

/// Names the cause of an inner error and logs the error (never sent to the client).
fn error_cause(error: &BoxError, site: &'static str) -> NormalizeCause {
    let mut cause = NormalizeCause::Error;
    let mut current: Option<&(dyn StdError + 'static)> = Some(&**error);
    while let Some(e) = current {
        if e.is::<tower::timeout::error::Elapsed>() || e.is::<tokio::time::error::Elapsed>() {
            cause = NormalizeCause::Timeout;
            break;
        }
        if e.is::<tower::load_shed::error::Overloaded>() {
            cause = NormalizeCause::Overloaded;
            break;
        }
        current = e.source();
    }
    tracing::warn!(
        cause = cause.as_str(),
        site,
        error = %error,
        "inner service failed; answered with the contract's retryable status"
    );
    cause
}

fn log_panic(payload: Box<dyn Any + Send>, site: &'static str) {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload");
    tracing::error!(
        site,
        panic = message,
        "inner service panicked; answered 500"
    );
}

/// Why [`NormalizeStatus`] changed a response; see [`Normalized`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NormalizeCause {
    /// The handler answered a 2xx the sender does not count as success (ElevenLabs: anything
    /// but `200`); answered with the contract's success status, headers and body kept.
    SuccessStatus,
    /// The handler answered a redirect, which webhook senders do not follow.
    Redirect,
    /// The handler answered `408`, `425` or `429`, which the sender would not retry.
    RetryLaterStatus,
    /// The handler answered a status outside 200–599, or a 5xx the sender does not retry.
    UnexpectedStatus,
    /// The inner service failed with a timeout error (`tower::timeout::error::Elapsed`,
    /// `tokio::time::error::Elapsed`).
    Timeout,
    /// The inner service failed with `tower::load_shed::error::Overloaded`.
    Overloaded,
    /// The inner service failed with any other error.
    Error,
    /// The inner service panicked (in `poll_ready`, `call`, or while its future was polled).
    Panic,
    /// The handler did not answer within the layer's handler deadline.
    Deadline,
}

impl NormalizeCause {
    /// A stable label for metrics and logs, e.g. `"deadline"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SuccessStatus => "success_status",
            Self::Redirect => "redirect",
            Self::RetryLaterStatus => "retry_later_status",
            Self::UnexpectedStatus => "unexpected_status",
            Self::Timeout => "timeout",
            Self::Overloaded => "overloaded",
            Self::Error => "error",
            Self::Panic => "panic",
            Self::Deadline => "deadline",
        }
    }

    /// Whether the layer answers this cause with the contract's "retry later" status and a
    /// `Retry-After`.
    const fn is_retry_later(self) -> bool {
        matches!(
            self,
            Self::Timeout | Self::Overloaded | Self::Deadline | Self::RetryLaterStatus
        )
    }

    /// The fixed problem detail: written by hookgate, never taken from an inner error.
    const fn detail(self) -> &'static str {
        match self {
            Self::SuccessStatus => "the handler succeeded",
            Self::Redirect => {
                "the handler answered with a redirect; webhook senders do not follow redirects"
            }
            Self::RetryLaterStatus => "the handler asked to retry later",
            Self::UnexpectedStatus => {
                "the handler answered with a status the sender does not retry"
            }
            Self::Timeout => "the handler timed out",
            Self::Overloaded => "the handler is overloaded",
            Self::Error => "the handler failed",
            Self::Panic => "the handler panicked",
            Self::Deadline => "the handler did not answer before the deadline",
        }
    }
}

impl fmt::Display for NormalizeCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Response extension added by [`NormalizeStatus`] to every response it changed or wrote, so
/// metrics and logs can count normalizations by cause.
///
/// ```
/// use hookgate::normalize::{NormalizeCause, NormalizeStatusLayer, Normalized};
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use bytes::Bytes;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let shedding = tower::service_fn(|_req: Request<()>| async {
///     Err::<Response<Full<Bytes>>, _>(tower::load_shed::error::Overloaded::new())
/// });
/// let response = NormalizeStatusLayer::elevenlabs()
///     .layer(shedding)
///     .oneshot(Request::new(()))
///     .await
///     .unwrap();
/// assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
///
/// let normalized = response.extensions().get::<Normalized>().unwrap();
/// assert_eq!(normalized.original, None); // the inner service answered nothing
/// assert_eq!(normalized.cause, NormalizeCause::Overloaded);
/// assert_eq!(normalized.cause.as_str(), "overloaded"); // a stable metrics label
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Normalized {
    /// The status the inner service answered; `None` when it answered nothing (an error, a
    /// panic, the deadline).
    pub original: Option<StatusCode>,
    /// Why the response was changed.
    pub cause: NormalizeCause,
}

/// What a sender does with an event when the receiver answers a given status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SenderAction {
    /// The event is delivered; the sender is done.
    Success,
    /// The sender retries the event later.
    Retry,
    /// The sender retries the event later and slows down its deliveries to this endpoint.
    Throttle,
    /// The sender drops the event for good.
    Drop,
    /// The sender drops the event and disables the endpoint.
    Disable,
}

impl SenderAction {
    /// Whether the sender delivers the event again ([`Retry`](Self::Retry) or
    /// [`Throttle`](Self::Throttle)).
    #[must_use]
    pub const fn is_retried(self) -> bool {
        matches!(self, Self::Retry | Self::Throttle)
    }
}

/// A set of HTTP statuses 100–599, one bit each.
#[derive(Clone, Copy, PartialEq, Eq)]
struct StatusSet([u64; 8]);

impl StatusSet {
    const EMPTY: Self = Self([0; 8]);

    const fn contains(&self, code: u16) -> bool {
        if code < 100 || code > 599 {
            return false;
        }
        let i = (code - 100) as usize;
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, code: u16, on: bool) {
        let i = usize::from(code - 100);
        if on {
            self.0[i / 64] |= 1 << (i % 64);
        } else {
            self.0[i / 64] &= !(1 << (i % 64));
        }
    }
}

impl fmt::Debug for StatusSet {
    /// Runs of statuses: `{200-299, 410}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        let mut first = true;
        let mut code = 100;
        while code <= 599 {
            if !self.contains(code) {
                code += 1;
                continue;
            }
            let start = code;
            while code < 599 && self.contains(code + 1) {
                code += 1;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            if start == code {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{code}")?;
            }
            code += 1;
        }
        f.write_str("}")
    }
}

/// A webhook sender's retry contract: what it does on each status, and which statuses
/// [`NormalizeStatusLayer`] answers with.
///
/// ```
/// use hookgate::normalize::{SenderAction, SenderContract};
/// use http::StatusCode;
///
/// let elevenlabs = SenderContract::elevenlabs();
/// assert_eq!(elevenlabs.action_for(StatusCode::OK), SenderAction::Success);
/// assert_eq!(elevenlabs.action_for(StatusCode::CREATED), SenderAction::Drop);
/// assert_eq!(elevenlabs.action_for(StatusCode::TOO_MANY_REQUESTS), SenderAction::Drop);
/// assert_eq!(elevenlabs.action_for(StatusCode::SERVICE_UNAVAILABLE), SenderAction::Retry);
///
/// let standard = SenderContract::standard_webhooks();
/// assert_eq!(standard.action_for(StatusCode::GONE), SenderAction::Disable);
/// assert_eq!(standard.action_for(StatusCode::GATEWAY_TIMEOUT), SenderAction::Throttle);
/// assert_eq!(standard.action_for(StatusCode::BAD_REQUEST), SenderAction::Retry);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SenderContract {
    name: &'static str,
    success: StatusSet,
    /// Retried statuses, throttling ones included.
    retried: StatusSet,
    throttled: StatusSet,
    disabling: StatusSet,
    success_status: StatusCode,
    retry_later_status: StatusCode,
    failure_status: StatusCode,
}

impl SenderContract {
    /// ElevenLabs: only `200` is success (its API calls failures "any non-200 codes"); 5xx is
    /// retried; every other status drops the event.
    ///
    /// Its newer docs also retry `408` and `429`, but only for webhooks that opted in to
    /// retries, while older docs say 4xx is never retried: the profile takes the reading that
    /// holds under both, so the layer answers `503` instead of an inner `408`/`425`/`429`.
    /// The layer answers `200`, `503` (retry later) and `500` (failure).
    #[must_use]
    pub fn elevenlabs() -> Self {
        Self::builder("elevenlabs")
            .on([200], SenderAction::Success)
            .on(500..=599, SenderAction::Retry)
            .build()
            .expect("the ElevenLabs profile is a valid contract")
    }

    /// [Standard Webhooks]: 2xx is success, `410 Gone` disables the endpoint, `429`, `502`
    /// and `504` throttle, every other status (3xx and 4xx included) is a retried failure.
    /// The layer answers `200`, `503` (retry later) and `500` (failure).
    ///
    /// [Standard Webhooks]: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
    #[must_use]
    pub fn standard_webhooks() -> Self {
        Self::builder("standard-webhooks")
            .on(100..=599, SenderAction::Retry)
            .on(200..=299, SenderAction::Success)
            .on([410], SenderAction::Disable)
            .on([429, 502, 504], SenderAction::Throttle)
            .build()
            .expect("the Standard Webhooks profile is a valid contract")
    }

    /// A contract of your own. It starts with every status dropping the event and answers
    /// `200`, `503` and `500`; [`SenderContractBuilder::build`] checks that the sender reads
    /// those answers as success and as retried.
    ///
    /// ```
    /// use hookgate::normalize::{SenderAction, SenderContract};
    /// use http::StatusCode;
    ///
    /// // A sender that retries 5xx and 429, and accepts 200 and 204.
    /// let contract = SenderContract::builder("acme")
    ///     .on([200, 204], SenderAction::Success)
    ///     .on(500..=599, SenderAction::Retry)
    ///     .on([429], SenderAction::Throttle)
    ///     .build()?;
    /// assert_eq!(contract.action_for(StatusCode::NO_CONTENT), SenderAction::Success);
    ///
    /// // A contract under which the layer's own 503 would drop the event is refused.
    /// assert!(SenderContract::builder("broken").on([200], SenderAction::Success).build().is_err());
    /// # Ok::<(), hookgate::ConfigError>(())
    /// ```
    pub fn builder(name: &'static str) -> SenderContractBuilder {
        SenderContractBuilder {
            contract: Self {
                name,
                success: StatusSet::EMPTY,
                retried: StatusSet::EMPTY,
                throttled: StatusSet::EMPTY,
                disabling: StatusSet::EMPTY,
                success_status: StatusCode::OK,
                retry_later_status: StatusCode::SERVICE_UNAVAILABLE,
                failure_status: StatusCode::INTERNAL_SERVER_ERROR,
            },
            invalid: None,
        }
    }

    /// The contract's name, e.g. `"elevenlabs"`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// What the sender does when the receiver answers `status`. Statuses outside 100–599 drop
    /// the event.
    #[must_use]
    pub fn action_for(&self, status: StatusCode) -> SenderAction {
        let code = status.as_u16();
        if self.success.contains(code) {
            SenderAction::Success
        } else if self.disabling.contains(code) {
            SenderAction::Disable
        } else if self.throttled.contains(code) {
            SenderAction::Throttle
        } else if self.retried.contains(code) {
            SenderAction::Retry
        } else {
            SenderAction::Drop
        }
    }

    /// The status the layer answers when the handler succeeded with a status the sender does
    /// not count as success. Default `200`.
    #[must_use]
    pub fn success_status(&self) -> StatusCode {
        self.success_status
    }

    /// The status the layer answers, with `Retry-After`, for timeouts, overload, the deadline
    /// and handler answers meaning "retry later". Default `503`.
    #[must_use]
    pub fn retry_later_status(&self) -> StatusCode {
        self.retry_later_status
    }

    /// The status the layer answers for errors, panics, redirects and statuses the sender does
    /// not retry. Default `500`.
    #[must_use]
    pub fn failure_status(&self) -> StatusCode {
        self.failure_status
    }
}

impl Default for SenderContract {
    fn default() -> Self {
        Self::elevenlabs()
    }
}

impl fmt::Debug for SenderContract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderContract")
            .field("name", &self.name)
            .field("success", &self.success)
            .field("retried", &self.retried)
            .field("throttled", &self.throttled)
            .field("disabling", &self.disabling)
            .field("success_status", &self.success_status.as_u16())
            .field("retry_later_status", &self.retry_later_status.as_u16())
            .field("failure_status", &self.failure_status.as_u16())
            .finish()
    }
}

/// Builds a [`SenderContract`]; see [`SenderContract::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct SenderContractBuilder {
    contract: SenderContract,
    invalid: Option<u16>,
}

impl SenderContractBuilder {
    /// The sender does `action` on each of `statuses` (100–599). A later call overrides an
    /// earlier one for the same status; statuses never mentioned drop the event.
    pub fn on(mut self, statuses: impl IntoIterator<Item = u16>, action: SenderAction) -> Self {
        for code in statuses {
            if !(100..=599).contains(&code) {
                self.invalid.get_or_insert(code);
                continue;
            }
            let c = &mut self.contract;
            c.success.set(code, action == SenderAction::Success);
            c.retried.set(code, action.is_retried());
            c.throttled.set(code, action == SenderAction::Throttle);
            c.disabling.set(code, action == SenderAction::Disable);
        }
        self
    }

    /// The status the layer answers for a handler success the sender would not count as one.
    /// Default `200`.
    pub fn answer_success_with(mut self, status: StatusCode) -> Self {
        self.contract.success_status = status;
        self
    }

    /// The status the layer answers for "retry later" (timeouts, overload, deadline, handler
    /// `408`/`425`/`429`). Default `503`.
    pub fn answer_retry_later_with(mut self, status: StatusCode) -> Self {
        self.contract.retry_later_status = status;
        self
    }

    /// The status the layer answers for failures (errors, panics, redirects). Default `500`.
    pub fn answer_failure_with(mut self, status: StatusCode) -> Self {
        self.contract.failure_status = status;
        self
    }

    /// The contract, or a [`ConfigError`] when a status is outside 100–599, when the sender
    /// would not count the success answer as success, or would not retry the retry-later or
    /// failure answers.
    pub fn build(self) -> Result<SenderContract, ConfigError> {
        let c = self.contract;
        if let Some(code) = self.invalid {
            return Err(ConfigError::new(format!(
                "sender contract {:?}: status {code} is outside 100-599",
                c.name
            )));
        }
        if c.action_for(c.success_status) != SenderAction::Success {
            return Err(ConfigError::new(format!(
                "sender contract {:?}: the success answer {} is not a success for the sender",
                c.name,
                c.success_status.as_u16()
            )));
        }
        for (what, status) in [
            ("retry-later", c.retry_later_status),
            ("failure", c.failure_status),
        ] {
            if !c.action_for(status).is_retried() {
                return Err(ConfigError::new(format!(
                    "sender contract {:?}: the {what} answer {} is not retried by the sender",
                    c.name,
                    status.as_u16()
                )));
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body::Body as _;
    use http_body_util::{BodyExt, Full};
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };
    use tower::{service_fn, ServiceBuilder, ServiceExt};

    type Reply = Response<Full<Bytes>>;

    fn inner_response(status: u16) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from_static(b"handler body")));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        response
            .headers_mut()
            .insert("x-handler", HeaderValue::from_static("yes"));
        response
    }

    /// Calls `layer` around a handler that answers `make()`.
    async fn answer_with<F>(layer: NormalizeStatusLayer, make: F) -> Reply
    where
        F: Fn() -> Response<Full<Bytes>> + Clone + Send + 'static,
    {
        let handler = service_fn(move |_req: Request<Full<Bytes>>| {
            let make = make.clone();
            async move { Ok::<_, Infallible>(make()) }
        });
        layer
            .layer(handler)
            .oneshot(Request::new(Full::default()))
            .await
            .unwrap()
    }

    async fn answer_status(status: u16) -> Reply {
        answer_with(NormalizeStatusLayer::elevenlabs(), move || {
            inner_response(status)
        })
        .await
    }

    async fn answer_error(error: BoxError) -> Reply {
        let error = Arc::new(std::sync::Mutex::new(Some(error)));
        let handler = service_fn(move |_req: Request<Full<Bytes>>| {
            let error = error.lock().unwrap().take().unwrap();
            async move { Err::<Response<Full<Bytes>>, BoxError>(error) }
        });
        NormalizeStatusLayer::elevenlabs()
            .layer(handler)
            .oneshot(Request::new(Full::default()))
            .await
            .unwrap()
    }

    async fn body_text(response: Reply) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn normalized(response: &Reply) -> Option<(Option<u16>, NormalizeCause)> {
        response
            .extensions()
            .get::<Normalized>()
            .map(|n| (n.original.map(|s| s.as_u16()), n.cause))
    }

    /// Asserts a problem+json answer with `status`, `code`, and the extension, and returns the body.
    async fn assert_problem(
        response: Reply,
        status: u16,
        code: ProblemCode,
        original: Option<u16>,
        cause: NormalizeCause,
    ) -> serde_json::Value {
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            crate::problem::PROBLEM_JSON
        );
        assert!(response.headers().get("x-handler").is_none());
        assert_eq!(response.extensions().get::<ProblemCode>(), Some(&code));
        assert_eq!(normalized(&response), Some((original, cause)));
        let json: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
        assert_eq!(json["code"], code.as_str());
        assert_eq!(json["status"], status);
        json
    }

    // --- the table, one test per row ---

    #[tokio::test]
    async fn ok_passes_through_untouched() {
        let response = answer_status(200).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-handler"], "yes");
        assert_eq!(normalized(&response), None);
        assert_eq!(body_text(response).await, "handler body");
    }

    #[tokio::test]
    async fn other_2xx_becomes_exactly_200_keeping_headers_and_body() {
        for status in [201, 202, 204, 226, 299] {
            let response = answer_status(status).await;
            assert_eq!(response.status(), StatusCode::OK, "{status}");
            assert_eq!(response.headers()["x-handler"], "yes");
            assert_eq!(
                normalized(&response),
                Some((Some(status), NormalizeCause::SuccessStatus))
            );
            assert_eq!(body_text(response).await, "handler body");
        }
    }

    #[tokio::test]
    async fn redirect_becomes_500_problem_without_location() {
        for status in [301, 302, 303, 304, 307, 308] {
            let response = answer_with(NormalizeStatusLayer::elevenlabs(), move || {
                let mut r = inner_response(status);
                r.headers_mut()
                    .insert(header::LOCATION, HeaderValue::from_static("/elsewhere"));
                r
            })
            .await;
            assert!(response.headers().get(header::LOCATION).is_none());
            assert!(response.headers().get(header::RETRY_AFTER).is_none());
            assert_problem(
                response,
                500,
                ProblemCode::HANDLER_REDIRECTED,
                Some(status),
                NormalizeCause::Redirect,
            )
            .await;
        }
    }

    #[tokio::test]
    async fn retry_later_statuses_become_503_keeping_the_inner_retry_after() {
        for status in [408, 425, 429] {
            let response = answer_with(NormalizeStatusLayer::elevenlabs(), move || {
                let mut r = inner_response(status);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
                r
            })
            .await;
            assert_eq!(response.headers()[header::RETRY_AFTER], "7");
            let json = assert_problem(
                response,
                503,
                ProblemCode::HANDLER_THROTTLED,
                Some(status),
                NormalizeCause::RetryLaterStatus,
            )
            .await;
            assert_eq!(json["retry_after"], 7);
        }
    }

    #[tokio::test]
    async fn retry_later_status_without_retry_after_gets_the_layer_default() {
        let response = answer_status(429).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "30");

        let layer = NormalizeStatusLayer::elevenlabs().retry_after(Duration::from_millis(4500));
        let response = answer_with(layer, || inner_response(408)).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
    }

    #[tokio::test]
    async fn retry_after_as_http_date_is_copied_verbatim() {
        const DATE: &str = "Wed, 21 Oct 2037 07:28:00 GMT";
        let response = answer_with(NormalizeStatusLayer::elevenlabs(), || {
            let mut r = inner_response(429);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(DATE));
            r
        })
        .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], DATE);
    }

    #[tokio::test]
    async fn a_retry_after_that_is_neither_seconds_nor_a_date_gets_the_layer_default() {
        for garbage in ["1.5", "-1", "", "soon", "Wed, 99 Oct 2037 07:28:00 GMT"] {
            let response = answer_with(NormalizeStatusLayer::elevenlabs(), move || {
                let mut r = inner_response(429);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static(garbage));
                r
            })
            .await;
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "30", "{garbage:?}");
        }
    }

    #[tokio::test]
    async fn other_4xx_are_kept_with_the_handlers_body() {
        for status in [400, 401, 403, 404, 409, 410, 413, 415, 422, 451, 499] {
            let response = answer_status(status).await;
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()["x-handler"], "yes");
            assert_eq!(normalized(&response), None);
            assert_eq!(body_text(response).await, "handler body");
        }
    }

    #[tokio::test]
    async fn server_errors_are_kept_with_their_retry_after() {
        for status in [500, 501, 502, 503, 504, 599] {
            let response = answer_with(NormalizeStatusLayer::elevenlabs(), move || {
                let mut r = inner_response(status);
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
                r
            })
            .await;
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()[header::RETRY_AFTER], "3");
            assert_eq!(normalized(&response), None);
            assert_eq!(body_text(response).await, "handler body");
        }
    }

    #[tokio::test]
    async fn grpc_responses_are_untouched() {
        for content_type in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC-Web",
        ] {
            for status in [201, 302, 429, 600] {
                let response = answer_with(NormalizeStatusLayer::elevenlabs(), move || {
                    let mut r = inner_response(status);
                    r.headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                    r
                })
                .await;
                assert_eq!(response.status().as_u16(), status, "{content_type}");
                assert_eq!(normalized(&response), None);
                assert_eq!(body_text(response).await, "handler body");
            }
        }
    }

    #[tokio::test]
    async fn statuses_outside_200_to_599_become_500() {
        for status in [100, 103, 600, 999] {
            let response = answer_status(status).await;
            assert_problem(
                response,
                500,
                ProblemCode::HANDLER_ERROR,
                Some(status),
                NormalizeCause::UnexpectedStatus,
            )
            .await;
        }
    }

    async fn hookgate_rejection(
        layer: NormalizeStatusLayer,
        status: StatusCode,
        code: ProblemCode,
    ) -> Reply {
        answer_with(layer, move || {
            let problem = Problem::new(status, code)
                .with_detail("from an inner hookgate layer")
                .with_retry_after(Duration::from_secs(2))
                .into_response::<Full<Bytes>>();
            let (mut parts, body) = problem.into_parts();
            parts
                .headers
                .insert("ratelimit", HeaderValue::from_static("\"client\";r=0;t=2"));
            Response::from_parts(parts, Full::new(futures_body(body)))
        })
        .await
    }

    #[tokio::test]
    async fn hookgate_retry_later_4xx_becomes_503_under_elevenlabs_keeping_code_and_headers() {
        for (status, code) in [
            (StatusCode::TOO_MANY_REQUESTS, ProblemCode::RATE_LIMITED),
            (StatusCode::TOO_MANY_REQUESTS, ProblemCode::CLIENT_BLOCKED),
            (StatusCode::REQUEST_TIMEOUT, ProblemCode::BODY_TIMEOUT),
        ] {
            let response =
                hookgate_rejection(NormalizeStatusLayer::elevenlabs(), status, code).await;
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{code}");
            assert_eq!(
                SenderContract::elevenlabs().action_for(response.status()),
                SenderAction::Retry
            );
            assert_eq!(response.headers()[header::RETRY_AFTER], "2");
            assert_eq!(response.headers()["ratelimit"], "\"client\";r=0;t=2");
            assert_eq!(response.extensions().get::<ProblemCode>(), Some(&code));
            assert_eq!(
                normalized(&response),
                Some((Some(status.as_u16()), NormalizeCause::RetryLaterStatus))
            );
            let body: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
            assert_eq!(body["status"], 503);
            assert_eq!(body["code"], code.as_str());
            assert_eq!(body["detail"], "from an inner hookgate layer");
        }
    }

    #[tokio::test]
    async fn hookgate_retry_later_4xx_without_a_wait_gets_the_layers_retry_after() {
        let layer = NormalizeStatusLayer::elevenlabs().retry_after(Duration::from_secs(7));
        let response = answer_with(layer, || {
            let problem = Problem::new(StatusCode::REQUEST_TIMEOUT, ProblemCode::BODY_TIMEOUT)
                .into_response::<Full<Bytes>>();
            let (parts, body) = problem.into_parts();
            Response::from_parts(parts, Full::new(futures_body(body)))
        })
        .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        let body: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
        assert_eq!(body["retry_after"], 7);
        assert_eq!(body["code"], "body_timeout");
    }

    #[tokio::test]
    async fn hookgate_retry_later_4xx_is_kept_where_the_contract_retries_it() {
        let response = hookgate_rejection(
            NormalizeStatusLayer::standard_webhooks(),
            StatusCode::TOO_MANY_REQUESTS,
            ProblemCode::RATE_LIMITED,
        )
        .await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(normalized(&response), None);
    }

    #[tokio::test]
    async fn hookgate_final_4xx_rejections_pass_through() {
        let response = hookgate_rejection(
            NormalizeStatusLayer::elevenlabs(),
            StatusCode::UNAUTHORIZED,
            ProblemCode::SIGNATURE_MISMATCH,
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.extensions().get::<ProblemCode>(),
            Some(&ProblemCode::SIGNATURE_MISMATCH)
        );
        assert_eq!(normalized(&response), None);
    }

    /// The bytes of a problem body, synchronously (a problem body is one ready frame).
    fn futures_body(body: Full<Bytes>) -> Bytes {
        let mut body = std::pin::pin!(body);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap(),
            _ => panic!("a problem body is one ready data frame"),
        }
    }

    #[tokio::test]
    async fn server_error_the_contract_does_not_retry_becomes_the_failure_status() {
        let contract = SenderContract::builder("picky")
            .on([200], SenderAction::Success)
            .on([500, 503], SenderAction::Retry)
            .build()
            .unwrap();
        let response =
            answer_with(NormalizeStatusLayer::new(contract), || inner_response(501)).await;
        assert_problem(
            response,
            500,
            ProblemCode::HANDLER_ERROR,
            Some(501),
            NormalizeCause::UnexpectedStatus,
        )
        .await;
    }

    // --- errors ---

    #[tokio::test]
    async fn elapsed_error_becomes_503_with_retry_after() {
        let response = answer_error(Box::new(tower::timeout::error::Elapsed::new())).await;
        assert_eq!(response.headers()[header::RETRY_AFTER], "30");
        assert_problem(
            response,
            503,
            ProblemCode::HANDLER_TIMEOUT,
            None,
            NormalizeCause::Timeout,
        )
        .await;
    }

    #[tokio::test]
    async fn overloaded_error_becomes_503_with_retry_after() {
        let response = answer_error(Box::new(tower::load_shed::error::Overloaded::new())).await;
        assert_eq!(response.headers()[header::RETRY_AFTER], "30");
        assert_problem(
            response,
            503,
            ProblemCode::HANDLER_OVERLOADED,
            None,
            NormalizeCause::Overloaded,
        )
        .await;
    }

    #[derive(Debug)]
    struct Wrapper(tower::timeout::error::Elapsed);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("upstream call failed")
        }
    }

    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[tokio::test]
    async fn elapsed_found_in_the_source_chain_is_a_timeout() {
        let error = Wrapper(tower::timeout::error::Elapsed::new());
        let response = answer_error(Box::new(error)).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(normalized(&response), Some((None, NormalizeCause::Timeout)));
    }

    #[tokio::test]
    async fn other_error_becomes_500_without_leaking_its_text() {
        let response =
            answer_error("connection to postgres://admin:hunter2@db failed".into()).await;
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        let json = assert_problem(
            response,
            500,
            ProblemCode::HANDLER_ERROR,
            None,
            NormalizeCause::Error,
        )
        .await;
        let text = json.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("postgres"),
            "{text}"
        );
    }

    /// A service whose `poll_ready` is never ready: `LoadShed` sheds every request.
    #[derive(Clone, Debug)]
    struct NeverReady;

    impl Service<Request<Full<Bytes>>> for NeverReady {
        type Response = Response<Full<Bytes>>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Pending
        }

        fn call(&mut self, _req: Request<Full<Bytes>>) -> Self::Future {
            unreachable!("never ready")
        }
    }

    #[tokio::test]
    async fn real_load_shed_becomes_503() {
        let service = ServiceBuilder::new()
            .layer(NormalizeStatusLayer::elevenlabs())
            .load_shed()
            .service(NeverReady);
        let response = service
            .oneshot(Request::new(Full::default()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            normalized(&response),
            Some((None, NormalizeCause::Overloaded))
        );
    }

    /// A service whose `poll_ready` fails or panics once, counting calls.
    #[derive(Clone, Debug)]
    struct FailingReady {
        panic: bool,
        failed: bool,
        calls: Arc<AtomicUsize>,
    }

    impl Service<Request<Full<Bytes>>> for FailingReady {
        type Response = Response<Full<Bytes>>;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Self::Response, BoxError>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            if self.failed {
                return Poll::Ready(Ok(()));
            }
            self.failed = true;
            if self.panic {
                panic!("poll_ready exploded");
            }
            Poll::Ready(Err(Box::new(tower::load_shed::error::Overloaded::new())))
        }

        fn call(&mut self, _req: Request<Full<Bytes>>) -> Self::Future {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(inner_response(200)))
        }
    }

    #[tokio::test]
    async fn poll_ready_failures_are_answered_without_calling_the_inner_service() {
        for (panic, status, cause) in [
            (false, 503, NormalizeCause::Overloaded),
            (true, 500, NormalizeCause::Panic),
        ] {
            let calls = Arc::new(AtomicUsize::new(0));
            let mut service = NormalizeStatusLayer::elevenlabs().layer(FailingReady {
                panic,
                failed: false,
                calls: calls.clone(),
            });
            let response = service
                .ready()
                .await
                .unwrap()
                .call(Request::new(Full::default()))
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(normalized(&response), Some((None, cause)));
            assert_eq!(calls.load(Ordering::SeqCst), 0);

            // The next request reaches the (now ready) inner service.
            let response = service
                .ready()
                .await
                .unwrap()
                .call(Request::new(Full::default()))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }

    // --- panics ---

    #[derive(Clone, Debug)]
    struct PanicsInCall;

    impl Service<Request<Full<Bytes>>> for PanicsInCall {
        type Response = Response<Full<Bytes>>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _req: Request<Full<Bytes>>) -> Self::Future {
            panic!("call exploded: secret=hunter2")
        }
    }

    #[tokio::test]
    async fn panic_in_call_becomes_500() {
        let response = NormalizeStatusLayer::elevenlabs()
            .layer(PanicsInCall)
            .oneshot(Request::new(Full::default()))
            .await
            .unwrap();
        let json = assert_problem(
            response,
            500,
            ProblemCode::HANDLER_PANICKED,
            None,
            NormalizeCause::Panic,
        )
        .await;
        assert!(!json.to_string().contains("hunter2"));
    }

    #[tokio::test]
    async fn panic_while_polling_the_future_becomes_500() {
        let handler = service_fn(|_req: Request<Full<Bytes>>| async {
            tokio::task::yield_now().await;
            if true {
                panic!("{}", String::from("future exploded: secret=hunter2"));
            }
            Ok::<_, Infallible>(inner_response(200))
        });
        let response = NormalizeStatusLayer::elevenlabs()
            .layer(handler)
            .oneshot(Request::new(Full::default()))
            .await
            .unwrap();
        let json = assert_problem(
            response,
            500,
            ProblemCode::HANDLER_PANICKED,
            None,
            NormalizeCause::Panic,
        )
        .await;
        assert!(!json.to_string().contains("hunter2"));
    }

    // --- the handler deadline (paused clock) ---

    fn sleeping_handler(
        wait: Duration,
    ) -> impl Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
    > + Clone {
        service_fn(move |_req: Request<Full<Bytes>>| async move {
            tokio::time::sleep(wait).await;
            Ok::<_, Infallible>(inner_response(201))
        })
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_answers_503_before_a_slow_handler() {
        let layer = NormalizeStatusLayer::elevenlabs()
            .handler_deadline(Duration::from_secs(10))
            .retry_after(Duration::from_secs(60));
        let start = tokio::time::Instant::now();
        let response = layer
            .layer(sleeping_handler(Duration::from_secs(3600)))
            .oneshot(Request::new(Full::default()))
            .await
            .unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert_eq!(response.headers()[header::RETRY_AFTER], "60");
        assert_problem(
            response,
            503,
            ProblemCode::HANDLER_TIMEOUT,
            None,
            NormalizeCause::Deadline,
        )
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn handler_answering_before_the_deadline_is_normalized_as_usual() {
        let layer = NormalizeStatusLayer::elevenlabs().handler_deadline(Duration::from_secs(10));
        let start = tokio::time::Instant::now();
        let response = layer
            .layer(sleeping_handler(Duration::from_secs(9)))
            .oneshot(Request::new(Full::default()))
            .await
            .unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(9));
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            normalized(&response),
            Some((Some(201), NormalizeCause::SuccessStatus))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_deadline_a_slow_handler_is_awaited() {
        let start = tokio::time::Instant::now();
        let response = NormalizeStatusLayer::elevenlabs()
            .layer(sleeping_handler(Duration::from_secs(3600)))
            .oneshot(Request::new(Full::default()))
            .await
            .unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(3600));
        assert_eq!(response.status(), StatusCode::OK);
    }

    // --- the contract value ---

    #[test]
    fn elevenlabs_profile_reads_the_documented_rules() {
        let c = SenderContract::elevenlabs();
        for code in 100..=599u16 {
            let status = StatusCode::from_u16(code).unwrap();
            let expected = match code {
                200 => SenderAction::Success,
                500..=599 => SenderAction::Retry,
                _ => SenderAction::Drop,
            };
            assert_eq!(c.action_for(status), expected, "{code}");
        }
        assert_eq!(
            c.action_for(StatusCode::from_u16(700).unwrap()),
            SenderAction::Drop
        );
        assert_eq!(
            (
                c.success_status(),
                c.retry_later_status(),
                c.failure_status()
            ),
            (
                StatusCode::OK,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::INTERNAL_SERVER_ERROR
            )
        );
        assert_eq!(SenderContract::default(), c);
    }

    #[test]
    fn standard_webhooks_profile_reads_the_spec() {
        let c = SenderContract::standard_webhooks();
        for code in 100..=599u16 {
            let status = StatusCode::from_u16(code).unwrap();
            let expected = match code {
                200..=299 => SenderAction::Success,
                410 => SenderAction::Disable,
                429 | 502 | 504 => SenderAction::Throttle,
                _ => SenderAction::Retry,
            };
            assert_eq!(c.action_for(status), expected, "{code}");
        }
    }

    #[tokio::test]
    async fn standard_webhooks_keeps_what_the_sender_already_reads_right() {
        for (inner, answer) in [
            (201, 201),
            (204, 204),
            (429, 429),
            (408, 408),
            (410, 410),
            (502, 502),
            (302, 500),
        ] {
            let response = answer_with(NormalizeStatusLayer::standard_webhooks(), move || {
                inner_response(inner)
            })
            .await;
            assert_eq!(response.status().as_u16(), answer, "inner {inner}");
        }
    }

    #[test]
    fn builder_refuses_contracts_the_layer_cannot_honour() {
        let base = || {
            SenderContract::builder("t")
                .on([200], SenderAction::Success)
                .on(500..=599, SenderAction::Retry)
        };
        assert!(base().build().is_ok());
        let out_of_range = base().on([600], SenderAction::Retry).build().unwrap_err();
        assert!(out_of_range.to_string().contains("600"), "{out_of_range}");
        let no_success = base()
            .answer_success_with(StatusCode::NO_CONTENT)
            .build()
            .unwrap_err();
        assert!(no_success.to_string().contains("204"), "{no_success}");
        let dropped_retry = base()
            .answer_retry_later_with(StatusCode::TOO_MANY_REQUESTS)
            .build()
            .unwrap_err();
        assert!(dropped_retry.to_string().contains("429"), "{dropped_retry}");
        let dropped_failure = base().on([500], SenderAction::Drop).build().unwrap_err();
        assert!(
            dropped_failure.to_string().contains("500"),
            "{dropped_failure}"
        );
        // A later `on` overrides an earlier one.
        let c = base().on([503], SenderAction::Throttle).build().unwrap();
        assert_eq!(
            c.action_for(StatusCode::SERVICE_UNAVAILABLE),
            SenderAction::Throttle
        );
    }

    #[test]
    fn per_request_settings_agree_with_the_contract() {
        let odd = SenderContract::builder("odd")
            .on([200, 203, 299], SenderAction::Success)
            .on([425, 500, 503, 511, 599], SenderAction::Retry)
            .on([429, 502], SenderAction::Throttle)
            .build()
            .unwrap();
        for contract in [
            SenderContract::elevenlabs(),
            SenderContract::standard_webhooks(),
            odd,
        ] {
            let settings = Settings::new(&contract);
            for code in 100..=599u16 {
                let action = contract.action_for(StatusCode::from_u16(code).unwrap());
                if (200..=299).contains(&code) {
                    assert_eq!(
                        settings.is_success(code),
                        action == SenderAction::Success,
                        "{} {code}",
                        contract.name()
                    );
                }
                if (500..=599).contains(&code) || matches!(code, 408 | 425 | 429) {
                    assert_eq!(
                        settings.is_retried(code),
                        action.is_retried(),
                        "{} {code}",
                        contract.name()
                    );
                }
            }
        }
    }

    #[test]
    fn contract_debug_lists_status_runs() {
        let debug = format!("{:?}", SenderContract::standard_webhooks());
        assert!(debug.contains("success: {200-299}"), "{debug}");
        assert!(debug.contains("disabling: {410}"), "{debug}");
        assert!(debug.contains("throttled: {429, 502, 504}"), "{debug}");
    }

    #[test]
    fn service_error_type_is_infallible() {
        fn assert_infallible<S: Service<Request<Full<Bytes>>, Error = Infallible>>(_: &S) {}
        let timeout = tower::timeout::Timeout::new(
            sleeping_handler(Duration::from_secs(1)),
            Duration::from_secs(1),
        );
        assert_infallible(&NormalizeStatusLayer::elevenlabs().layer(timeout));
    }
}
