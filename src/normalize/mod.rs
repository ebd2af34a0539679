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
//! [`Infallible`]: std::convert::Infallible
//! [`ProblemCode`]: crate::problem::ProblemCode

mod cause;
mod contract;
mod future;
mod layer;
mod service;

pub use cause::{NormalizeCause, Normalized};
pub use contract::{SenderAction, SenderContract, SenderContractBuilder};
pub use future::ResponseFuture;
pub use layer::NormalizeStatusLayer;
pub use service::NormalizeStatus;

/// What the inner service may fail with: anything that converts into it.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[cfg(test)]
mod tests;
