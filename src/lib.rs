//! # hookgate
//!
//! Tower middleware for *receiving* signed webhooks, first of all the asynchronous
//! speech-to-text results ElevenLabs delivers.
//!
//! A webhook sender decides from the status alone what happens to an event: 2xx is success, 4xx
//! drops the event for good, 5xx is retried. hookgate's promise: every genuine delivery is either
//! accepted exactly once and answered 200, or answered with a retryable status; everything else
//! (forged, stale, oversized, floods) is turned away early, cheaply, with a clear non-retryable 4xx
//! and an `application/problem+json` body naming the cause ([`problem`]).
//!
//! ## The onion (outermost first)
//!
//! ```text
//! request ─▶ NormalizeStatus ─▶ client checks ─▶ RateLimit (per client) ─▶ FailureLimit ─▶ VerifySignature ─▶ RateLimit (verified) ─▶ Deduplicate ─▶ handler
//!             (contract)         (https, ip)      503*, pre-auth            503*, blocked   400/401/413        503 + Retry-After     200 duplicate, 503 in flight
//! ```
//!
//! - `NormalizeStatusLayer` (feature `normalize`), outermost: every outcome, including inner
//!   errors, panics and deadlines, becomes the sender's contract (`SenderContract`).
//! - `RequireHttpsLayer` and `AllowIpLayer` (feature `client-checks`): turn away clients that
//!   are not on HTTPS or not on the allow-list, with a permanent 403.
//! - `RateLimitLayer::per_client` and `FailureLimitLayer` (feature `rate-limit`): floods and
//!   clients that keep failing verification get 429 + `Retry-After` before any body is read.
//!   (*) A genuine delivery can meet these limits (a sender's few egress addresses are shared
//!   by all its customers), so under a contract that drops 429 (ElevenLabs) the normalization
//!   layer answers them with a retryable 503; known senders (`client_ip::ClientIp::known_senders`)
//!   never meet them at all.
//! - [`VerifySignatureLayer`] (feature `signature`, on by default) checks the signature header
//!   and its timestamp *before* reading any body byte, then reads the body under a size cap, a
//!   read deadline and a global memory budget while feeding the MAC frame by frame, and hands the
//!   handler the exact bytes received plus a [`Verified`] request extension.
//! - `RateLimitLayer::verified` (feature `rate-limit`): verified traffic over its rate gets a
//!   retryable 503, never a 4xx.
//!
//! ### In one call
//!
//! `elevenlabs::ElevenLabsLayer` (features `signature`, `rate-limit`, `normalize`) is the
//! recommended onion for ElevenLabs deliveries, in the right order: normalization, the failure
//! limiter, the per-client limit, verification.
//!
//! ### Your own onion: mind the order
//!
//! `ServiceBuilder::layer` lists layers **outermost first**; axum's `Router::layer` wraps
//! everything added before it, so a router lists them **innermost first**. Written in the
//! table's order on a router, the stack verifies (and reads the body of) forged traffic before
//! rate limiting it, and nothing says so. The same onion both ways:
//!
//! ```
//! # #[cfg(all(feature = "rate-limit", feature = "normalize", feature = "axum"))] {
//! use std::num::NonZeroU32;
//!
//! use axum::{routing::post, Router};
//! use hookgate::{
//!     client_ip::ClientIp, rate_limit::Rate, scheme::ElevenLabs, NormalizeStatusLayer,
//!     RateLimitLayer, VerifySignatureLayer,
//! };
//! use tower::ServiceBuilder;
//!
//! let scheme = ElevenLabs::new("whsec_test").unwrap();
//! let per_client = Rate::per_second(NonZeroU32::new(50).unwrap());
//!
//! // ServiceBuilder: outermost first.
//! let onion = ServiceBuilder::new()
//!     .layer(NormalizeStatusLayer::elevenlabs())
//!     .layer(RateLimitLayer::per_client(per_client, ClientIp::peer()))
//!     .layer(VerifySignatureLayer::new(scheme.clone()));
//! let app: Router = Router::new()
//!     .route("/webhooks/elevenlabs", post(|| async { "stored" }))
//!     .layer(onion);
//!
//! // Router::layer, one at a time: innermost first.
//! let app: Router = Router::new()
//!     .route("/webhooks/elevenlabs", post(|| async { "stored" }))
//!     .layer(VerifySignatureLayer::new(scheme))
//!     .layer(RateLimitLayer::per_client(per_client, ClientIp::peer()))
//!     .layer(NormalizeStatusLayer::elevenlabs());
//! # let _ = app;
//! # }
//! ```
//!
//! Every layer is usable on its own, under hyper, axum or tonic, and composes like any tower
//! layer (`ServiceBuilder::option_layer`, `tower::util::Either`): a layer's response has the
//! handler's own body type ([`body::ProblemBody`]). The gateway composed of them is a library
//! too (`gateway`, feature `gateway`): its builder, its durable sink and its upstream
//! forwarding as tower services. The `hookgate` binary (feature `cli`) is that gateway behind a
//! command line.
//!
//! The crate root re-exports every layer and the few types every user of them names
//! ([`Scheme`], [`Verified`], [`ConfigError`]); everything else, services and futures
//! included, lives in its module.
//!
//! ## Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `signature` (default) | [`VerifySignatureLayer`]; the [`scheme::ElevenLabs`] scheme is always available |
//! | `standard-webhooks` | `scheme::StandardWebhooks`: symmetric `v1` and asymmetric `v1a` (ed25519) signatures |
//! | `auth` | `RequireTokenLayer`: a static bearer token or header value, for senders that do not sign |
//! | `client-ip` | `client_ip::ClientIp`: who the client is (enabled by the two below) |
//! | `rate-limit` | `RateLimitLayer`, `FailureLimitLayer`, the key extractors and stores |
//! | `client-checks` | `RequireHttpsLayer`, `AllowIpLayer` |
//! | `normalize` | `NormalizeStatusLayer`, `SenderContract` |
//! | `elevenlabs` | `elevenlabs::Event`: typed ElevenLabs webhook events, lenient, borrowing from the body; with `axum`, the `elevenlabs::VerifiedEvent` extractor (with `signature`, `elevenlabs::verified_event` for tower services) |
//! | `axum` | the layers answer with axum's body (needed to layer an axum `Router`); `ClientIp` also reads axum's `ConnectInfo<SocketAddr>` |
//! | `tonic` | the layers answer with tonic's body (to layer a tonic server's routes) |
//! | `full` | every library feature |
//! | `gateway` | `gateway`: the gateway as a library (builder, sink, upstream, serving) |
//! | `cli` | the `hookgate` gateway binary |
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "auth")]
pub mod auth;
pub mod body;
pub mod elevenlabs;
mod error;
pub mod future;
pub mod problem;
pub mod scheme;

#[cfg(feature = "signature")]
pub mod signature;

#[cfg(feature = "client-ip")]
pub mod client_ip;

#[cfg(feature = "rate-limit")]
pub mod rate_limit;

#[cfg(feature = "client-checks")]
pub mod client_checks;

#[cfg(feature = "normalize")]
pub mod normalize;

#[cfg(feature = "dedupe")]
pub mod dedupe;

#[cfg(any(feature = "rate-limit", feature = "dedupe"))]
pub mod store;

#[cfg(feature = "gateway")]
pub mod gateway;

pub use error::ConfigError;
pub use scheme::{Scheme, Verified};

#[cfg(feature = "signature")]
pub use signature::VerifySignatureLayer;

#[cfg(feature = "rate-limit")]
pub use rate_limit::{FailureLimitLayer, RateLimitLayer};

#[cfg(feature = "normalize")]
pub use normalize::NormalizeStatusLayer;

#[cfg(feature = "client-checks")]
pub use client_checks::{AllowIpLayer, RequireHttpsLayer};

#[cfg(feature = "auth")]
pub use auth::RequireTokenLayer;

#[cfg(feature = "dedupe")]
pub use dedupe::DeduplicateLayer;

#[cfg(all(feature = "signature", feature = "rate-limit", feature = "normalize"))]
pub use elevenlabs::ElevenLabsLayer;

// The README's examples are compiled and run as doctests.
#[cfg(all(doctest, feature = "full", feature = "gateway"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
