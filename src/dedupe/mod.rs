//! Deduplication: every event handled once, however often it is delivered (feature
//! `dedupe`).
//!
//! A sender delivers one event more than once: it redelivers on a 5xx or a timeout (a new
//! timestamp, a new signature, the same body), and anyone who captured a delivery can replay
//! it byte for byte while its signed timestamp is fresh (30 minutes for ElevenLabs, which signs
//! only the timestamp and the body). [`DeduplicateLayer`] makes every genuine event reach the
//! handler **once**: the first delivery is handled, the others are answered `200` without the
//! handler (the event *was* handled, so the sender must stop), or a retryable `503` while the
//! first is still being handled.
//!
//! ```
//! use std::{
//!     convert::Infallible,
//!     sync::{atomic::{AtomicUsize, Ordering}, Arc},
//! };
//!
//! use bytes::Bytes;
//! use hookgate::{
//!     dedupe::{DedupeKey, DeduplicateLayer, EventKey},
//!     scheme::ElevenLabs,
//!     signature::VerifiedBody,
//!     VerifySignatureLayer,
//! };
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let scheme = ElevenLabs::new("whsec_test")?;
//! let handled = Arc::new(AtomicUsize::new(0));
//! let service = ServiceBuilder::new()
//!     .layer(VerifySignatureLayer::new(scheme.clone())) // outside: verifies first
//!     .layer(DeduplicateLayer::new(DedupeKey::elevenlabs())) // inside: keys from signed bytes
//!     .service_fn({
//!         let handled = Arc::clone(&handled);
//!         move |request: Request<VerifiedBody>| {
//!             let handled = Arc::clone(&handled);
//!             async move {
//!                 // The event's key, to name what is stored.
//!                 let key = request.extensions().get::<EventKey>().unwrap().clone();
//!                 assert_eq!(key.as_str(), "req_1");
//!                 handled.fetch_add(1, Ordering::SeqCst);
//!                 Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("stored")))
//!             }
//!         }
//!     });
//!
//! let body = r#"{"type":"speech_to_text_transcription","data":{"request_id":"req_1"}}"#;
//! let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
//! let deliver = |t: u64| {
//!     Request::post("/webhooks/elevenlabs")
//!         .header("elevenlabs-signature", scheme.sign(t, body.as_bytes()))
//!         .body(Full::new(Bytes::from(body)))
//! };
//! let first = service.clone().oneshot(deliver(now)?).await?;
//! assert_eq!(first.status(), StatusCode::OK);
//!
//! // The sender redelivers the event: signed anew, the same body. Not handled again.
//! let again = service.clone().oneshot(deliver(now + 5)?).await?;
//! assert_eq!(again.status(), StatusCode::OK);
//! assert_eq!(again.headers()["hookgate-duplicate"], "true");
//! assert_eq!(handled.load(Ordering::SeqCst), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Keys come from signed material only
//!
//! Every delivery of an event must get the same key, and different events different keys
//! ([`EventKey`]). [`DedupeKey`] makes it from what the signature covers: the body (ElevenLabs'
//! `data.request_id`, or `data.conversation_id` joined with `type`, since a call's transcript
//! and audio are two events of one conversation), a message id the scheme signs (Standard
//! Webhooks' `webhook-id`), or the signature itself. Never from an unsigned header: whoever
//! replays a captured delivery could change or strip it, and each replay would look like a new
//! event. That is also why the layer sits **inside** [`VerifySignatureLayer`]: its service
//! takes the `Request<VerifiedBody>` only verification makes, so a stack without it does not
//! compile; and a request that reaches it without the [`Verified`](crate::Verified) extension
//! anyway (a hand-made request) is answered a loud `500` `dedupe_key_missing`, never let
//! through. When the body is not JSON or lacks the fields, the ElevenLabs key falls back to
//! the signature, which still stops byte-identical replays.
//!
//! # States, leases, token-checked settling
//!
//! A key is **free**, **claimed** by one delivery, or **done** (see [`DedupeStore`]). Each
//! delivery claims its key with a fresh random [`LeaseToken`], for a lease
//! ([`DeduplicateLayer::lease`], 60 s by default):
//!
//! | the store answers | the layer |
//! |---|---|
//! | [`Claim::Claimed`] | calls the handler. A 2xx answer marks the key done for [`keep_done`](DeduplicateLayer::keep_done) (24 h by default), then is returned; any other answer, or an error, releases the claim first, so that the sender's retry is handled. |
//! | [`Claim::Done`] | answers `200`, `hookgate-duplicate: true`, `{"duplicate":true,"key":"..."}`, **without calling the handler** (logged at `info`). |
//! | [`Claim::InFlight`] | answers `503` `delivery_in_flight` with `Retry-After` = what is left of the other delivery's lease (whole seconds, rounded up, at least 1). |
//! | a [`StoreError`] | answers `503` `dedupe_unavailable`, `Retry-After: 1`, logged at `warn` (one line per 10 s at most, with the count of lines left out). |
//!
//! The lease is what makes a crash safe: a delivery whose handler never returns (the process
//! died, the response future was dropped because the client went away) leaves a claim that
//! simply expires, and the next delivery is handled. No task is spawned to clean up. So the
//! lease must outlive the handler's deadline: a handler still running when its lease runs out
//! lets a redelivery claim the key and be handled concurrently.
//!
//! Marking done and releasing are **checked against the token**: when a slow handler finally
//! answers after its lease expired and another delivery claimed the key, its answer is still
//! returned (it was handled) but it neither marks done nor frees the newer delivery's claim
//! ([`Settled::LeaseLost`], logged at `warn` with the key, never body content). The newer
//! delivery settles the key itself.
//!
//! Every answer carries a [`DedupeOutcome`] and the [`EventKey`] in its extensions, for metrics.
//!
//! # Failure policy
//!
//! - **Never a `200` for an event neither recorded nor handled.** A store that cannot claim
//!   (unreachable, or a [`MemoryDedupeStore`] full of live keys) gets a retryable `503`, and
//!   the handler is not called.
//! - **A handled event's answer is never lost.** When the store fails to mark it done, the
//!   handler's answer is returned anyway ([`DedupeOutcome::SettleFailed`]) and the claim
//!   expires with its lease: a redelivery after that is handled again (at least once, in that
//!   failure alone).
//! - **Duplicates get `200`, not a 4xx**: the sender did nothing wrong, and a 4xx could count
//!   against the webhook. A gRPC client gets `ALREADY_EXISTS` (a `200` without a message
//!   would read as an error to it); every problem is in gRPC form for a gRPC request, as with
//!   the other layers.
//! - **A key that cannot be made** (a custom [`DedupeKey`] without a fallback, for a body
//!   without its fields) is a `500` `dedupe_key_missing`: retryable, logged at `warn`, so the
//!   event is neither dropped nor handled without deduplication while the key is fixed.
//!
//! # Memory
//!
//! [`MemoryDedupeStore`] (the default) holds at most `max_keys` keys (1 000 000 by default,
//! about 180 bytes each, map included) and sweeps expired ones itself. It serves one
//! instance: several instances behind a load balancer need a store they share.
//!
//! [`VerifySignatureLayer`]: crate::VerifySignatureLayer

mod future;
mod key;
mod layer;
mod memory;
mod service;
mod store;

#[cfg(test)]
mod tests;

pub use self::{
    future::ResponseFuture,
    key::{DedupeKey, EventKey},
    layer::DeduplicateLayer,
    memory::MemoryDedupeStore,
    service::{DedupeOutcome, Deduplicate, DUPLICATE_HEADER},
    store::{Claim, DedupeStore, LeaseToken, Settled},
};
pub use crate::store::{Check, StoreError};
