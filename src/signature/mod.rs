//! Signature verification: [`VerifySignatureLayer`].
//!
//! The layer checks every request against a [`Scheme`](crate::Scheme) before the inner service
//! sees it, and hands the inner service the exact bytes received (a [`VerifiedBody`]) with a
//! [`Verified`](crate::Verified) request extension.
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use hookgate::{scheme::ElevenLabs, signature::VerifiedBody, Verified, VerifySignatureLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let scheme = ElevenLabs::new("whsec-test")?;
//! let signer = scheme.clone();
//! let service = ServiceBuilder::new()
//!     .layer(VerifySignatureLayer::new(scheme).max_body_size(1 << 20))
//!     .service_fn(|request: Request<VerifiedBody>| async move {
//!         assert!(request.extensions().get::<Verified>().is_some());
//!         let bytes = request.into_body().to_bytes(); // exactly the bytes that were signed
//!         Ok::<_, Infallible>(Response::new(Full::new(bytes)))
//!     });
//!
//! let body = r#"{"type":"speech_to_text_transcription","data":{"request_id":"r1"}}"#;
//! let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
//! let request = Request::post("/webhooks/elevenlabs")
//!     .header("elevenlabs-signature", signer.sign(now, body.as_bytes()))
//!     .body(Full::new(Bytes::from(body)))?;
//! let response = service.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! // No signature: 401 with a problem+json body, and the handler never runs.
//! let forged = Request::post("/webhooks/elevenlabs").body(Full::new(Bytes::from(body)))?;
//! let response = service.oneshot(forged).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! # Ok(())
//! # }
//! ```
//!
//! ## What happens to a request
//!
//! 1. **Headers, before any body byte is read.** The signature header is parsed and its
//!    timestamp checked against the clock. Missing header: `401 missing_signature`; unparsable:
//!    `400 malformed_signature`; stale or too far ahead: `401 timestamp_stale` /
//!    `timestamp_in_future`. A declared `Content-Length` above
//!    [`max_body_size`](VerifySignatureLayer::max_body_size) is `413 payload_too_large` at once.
//!    Because the body is never polled, a client sending `Expect: 100-continue` is refused
//!    before it uploads anything.
//! 2. **The body, under three limits.** Frames are fed to the MAC as they arrive (one pass,
//!    no second hash after the last byte) and kept as the `Bytes` the server produced:
//!    - more bytes than `max_body_size` (chunked bodies, or bodies longer than declared):
//!      `413 payload_too_large`;
//!    - not complete within [`body_timeout`](VerifySignatureLayer::body_timeout) of the call:
//!      `408 body_timeout` (a slow network can hit a genuine delivery, so `NormalizeStatusLayer`
//!      answers it with a retryable `503` under a contract that drops `408`, as ElevenLabs'
//!      older rules do);
//!    - the [`BufferBudget`] for all in-flight bodies exhausted: `503 buffer_budget_exhausted`
//!      with `Retry-After`, because that is our own transient trouble, never the sender's fault.
//!      The budget is taken **as bytes arrive**, never for a declared `Content-Length`: until
//!      the MAC is known a request may be forged, and a header with a fresh timestamp costs
//!      nothing to forge, so reserving what a request merely declares would let a few forged
//!      connections that send one byte each hold the whole budget. Holding it now costs an
//!      attacker the bytes themselves, sent within the body deadline; and a body that is
//!      abandoned or too slow (`body_timeout`, `body_unreadable`) counts as a failed
//!      verification for `FailureLimitLayer`, so a client that keeps doing it is blocked;
//!    - the body stream fails (client broke off, bad framing): `400 body_unreadable`.
//! 3. **The MAC is compared**, in constant time, with every signature in the header under
//!    every configured secret. No match: `401 signature_mismatch`.
//! 4. **The inner service is called** with a [`VerifiedBody`] holding the received frames and
//!    a [`Verified`](crate::Verified) extension. Its response and error pass through untouched.
//!
//! Nothing of a rejected request reaches the inner service. Each rejection is logged at `debug`
//! level with its code (never a secret or an expected signature).
//!
//! ## Deployment notes
//!
//! - **Body size.** The default cap is 64 MiB per body (an hour-long call's audio event is about 38 MiB) and the default budget 256 MiB for all
//!   bodies in flight. Set the budget from the memory you can spare, and keep it at least as
//!   large as the per-body cap. What is left to an attacker: really uploading forged bytes as
//!   fast as the budget drains (256 MiB per 30 s body deadline, about 9 MiB/s) keeps bodies
//!   answered `503` (retryable) while it lasts; a shorter body deadline or a smaller cap raises
//!   that rate.
//! - **Replays.** ElevenLabs signs only the timestamp and the body, so within the tolerance a
//!   captured delivery verifies again. Deduplicate on the event id or on
//!   [`Verified::signature`](crate::Verified::signature).
//! - **Runtime.** The body deadline uses tokio's timer: run the layer on a tokio runtime with
//!   time enabled (as hyper, axum and tonic servers do).
//! - **gRPC.** Rejections are plain HTTP statuses; tonic clients see them as `Unauthenticated`,
//!   `InvalidArgument` and so on, following the gRPC HTTP-status mapping.

mod body;
mod budget;
mod future;
mod layer;
mod service;

use std::time::Duration;

pub use body::VerifiedBody;
pub use budget::BufferBudget;
pub use future::ResponseFuture;
pub use layer::VerifySignatureLayer;
pub use service::VerifySignature;

/// `Retry-After` when the buffer budget is exhausted: buffered bodies usually drain in seconds.
const BUDGET_RETRY_AFTER: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests;
