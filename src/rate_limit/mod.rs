//! Rate limiting that stops floods without ever dropping a legitimate delivery (feature
//! `rate-limit`).
//!
//! A webhook endpoint is public: anyone can flood it. But a sender treats a 4xx as "drop this
//! event for good", and ElevenLabs counts every non-200 towards disabling the webhook. So the
//! limits here turn floods away cheaply, *before* any body is read or any MAC computed, and
//! never answer verified traffic with a 4xx.
//!
//! # Two places in the onion, two answers
//!
//! ```text
//! request ─▶ NormalizeStatus ─▶ RateLimit::per_client ─▶ FailureLimit ─▶ VerifySignature ─▶ RateLimit::verified ─▶ handler
//!                               429 + Retry-After       429 blocked      400/401             503 + Retry-After
//! ```
//!
//! - [`RateLimitLayer::per_client`], in front of verification, keyed by client address
//!   ([`ClientIp`]): a client over its rate gets **`429 Too Many Requests`** with problem code
//!   `rate_limited` and `Retry-After` (whole seconds, rounded up, at least 1). Nothing behind it
//!   runs: no body read, no MAC. A genuine sender can meet this limit (its few egress addresses
//!   are shared by all its customers), so under a contract that drops 429 (ElevenLabs)
//!   `NormalizeStatusLayer` outside answers the same problem with a retryable `503`; put it
//!   outermost. Better still, declare the sender's addresses ([`ClientIp::known_senders`]):
//!   they are then never limited here at all.
//! - [`RateLimitLayer::verified`], behind verification, usually one [`GlobalKey`] bucket sized to
//!   what the handler can take: traffic over it is genuine, so it gets a **retryable `503
//!   Service Unavailable`** with problem code `throttled` and `Retry-After`, never a 4xx. It
//!   can first wait a short, bounded time for a token ([`RateLimitLayer::wait_for_token`]).
//! - [`FailureLimitLayer`] counts failed verifications (the verification layer's `400`/`401`,
//!   never the handler's) per client and blocks a client that keeps failing for a cooldown:
//!   `429` `client_blocked` + `Retry-After` (a `503` under the ElevenLabs contract, as above),
//!   answered before the request goes further, so its body is never read. Known senders are
//!   never counted or blocked: anyone can make a sender fail verification against you.
//!
//! Every answer the layers write is `application/problem+json` ([`crate::problem`]) with the
//! [`ProblemCode`](crate::problem::ProblemCode) and a [`RateLimitExceeded`] in the response
//! extensions.
//!
//! ```
//! use std::{convert::Infallible, net::SocketAddr, num::NonZeroU32, time::Duration};
//! use bytes::Bytes;
//! use hookgate::client_ip::ClientIp;
//! use hookgate::rate_limit::{FailureLimitLayer, FailurePolicy, GlobalKey, Rate, RateLimitLayer};
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let per_minute = |n| Rate::per_minute(NonZeroU32::new(n).unwrap());
//! let handler = service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
//! });
//! let service = ServiceBuilder::new()
//!     .layer(RateLimitLayer::per_client(per_minute(2), ClientIp::peer()))
//!     .layer(FailureLimitLayer::new(per_minute(10), FailurePolicy::block_for(Duration::from_secs(600))?, ClientIp::peer()))
//!     // .layer(VerifySignatureLayer::new(scheme))
//!     .layer(RateLimitLayer::verified(per_minute(600), GlobalKey).wait_for_token(Duration::from_secs(1))?)
//!     .service(handler);
//!
//! let from = |peer: [u8; 4]| {
//!     let mut request = Request::post("/webhooks/elevenlabs").body(Full::new(Bytes::new())).unwrap();
//!     request.extensions_mut().insert(SocketAddr::from((peer, 40_000))); // hyper: the accepted peer
//!     request
//! };
//! let ok = service.clone().oneshot(from([203, 0, 113, 7])).await?;
//! assert_eq!(ok.status(), StatusCode::OK);
//! assert_eq!(ok.headers()["ratelimit-policy"], "\"client\";q=2;w=60");
//! assert_eq!(ok.headers()["ratelimit"], "\"client\";r=1;t=30");
//! assert_eq!(service.clone().oneshot(from([203, 0, 113, 7])).await?.status(), StatusCode::OK);
//!
//! let flood = service.clone().oneshot(from([203, 0, 113, 7])).await?;
//! assert_eq!(flood.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(flood.headers()["content-type"], "application/problem+json");
//! let retry_after: u64 = flood.headers()["retry-after"].to_str()?.parse()?;
//! assert!((1..=30).contains(&retry_after));
//!
//! // Another client has its own bucket.
//! assert_eq!(service.clone().oneshot(from([198, 51, 100, 1])).await?.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```
//!
//! # Rates
//!
//! [`Rate::per_second(n)`](Rate::per_second) means *n requests per second* (likewise
//! `per_minute`, `per_hour`, [`Rate::new`] for any period), refilled evenly (GCRA, on
//! [governor](https://docs.rs/governor)), with a burst that defaults to `n`
//! ([`Rate::burst`]). Over any `D` seconds a key is granted at most `burst + rate × D`.
//!
//! # Client addresses and proxies
//!
//! **Read [`crate::client_ip`] before deploying behind a load balancer, CDN or reverse proxy.**
//! [`ClientIp`] keys by the socket peer: behind a proxy every request comes from the proxy, so
//! all clients share one bucket and a single flood blocks everyone, unless you declare the proxy
//! ([`ClientIp::behind_proxies`]).
//!
//! # Requests without a key
//!
//! A request whose client cannot be identified (no peer address at all) is never put in a
//! shared bucket by accident. (A trusted proxy whose forwarding header leads nowhere is not such
//! a case: its request is keyed by the nearest trusted hop, with a warning at most once a
//! minute; see [`ClientIp`].) By default ([`OnMissingKey::Reject`]) it is answered `500` with
//! problem code `client_unidentified` and logged at `warn`, with the fix in the problem's detail
//! and the log line (the [`Unidentified`](crate::client_ip::Unidentified) reason; under axum,
//! serving without `into_make_service_with_connect_info::<SocketAddr>()` is the classic cause):
//! that is a deployment error, and 5xx keeps the sender retrying until it is fixed.
//! [`OnMissingKey::Allow`] lets such requests through unlimited instead. [`FailureLimitLayer`]
//! lets them through.
//!
//! # Memory is bounded, with no housekeeping for you
//!
//! The in-memory [`MemoryStore`] (the default) evicts idle keys itself, in a sweep run inside a
//! decision that adds a key, at most once per second, with no background task, and tracks at most
//! [`MemoryStore::max_keys`] keys (100 000 by default; an IP-address key costs about 50 to 70
//! bytes, map overhead included). At the cap, keys not yet tracked share one overflow bucket
//! until a sweep frees room ([`Decision::is_overflow`]), so a flood of a million spoofed
//! addresses costs a bounded map, not a growing one. The per-client limiter refuses on the
//! overflow bucket with a retryable `503` `limiter_unavailable`: such a client is turned away
//! for our capacity, not for its own rate. A [`FailureLimitLayer`]'s memory store bounds its
//! block list the same way.
//!
//! # `RateLimit-Policy` and `RateLimit` headers
//!
//! Both limiters add the headers of the IETF draft *RateLimit header fields for HTTP*, in the
//! structured-field form of
//! [draft-ietf-httpapi-ratelimit-headers-10](https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/10/)
//! (the form in use since -08), to every answer while enforcing:
//!
//! ```text
//! RateLimit-Policy: "client";q=120;w=60      (policy "client" or "verified": q requests per w seconds)
//! RateLimit: "client";r=17;t=52              (r more requests now; full again after t seconds)
//! ```
//!
//! On a rejection `r=0` and `t` is the wait until the next request may pass (as `Retry-After`).
//!
//! # Shadow mode
//!
//! [`RateLimitLayer::shadow`] and [`FailurePolicy::shadow`] count as usual but never reject:
//! a request over the limit goes on with a [`RateLimitExceeded`] (`enforced: false`) in its
//! request and response extensions and a `debug` trace on target `hookgate::rate_limit`. No
//! rate-limit headers are added. Use it to try a rate on real traffic first.
//!
//! # Shared stores
//!
//! Limiter state lives behind [`RateLimitStore`], the request counts of both rate limiters and
//! the failure counts and block list of the failure limiter alike, so several gateway instances
//! can share one limit through a store such as Redis ([`RateLimitLayer::per_client_with_store`],
//! [`FailureLimitLayer::with_store`]). A store that decides synchronously returns
//! [`Check::Ready`]; one that must wait returns its own future in [`Check::Pending`] (no boxed
//! future per request either way). When a store fails, the rate limiter fails open by default
//! ([`OnStoreError`]) and the failure limiter fails open.
//!
//! # Testing
//!
//! [`MemoryStore::with_clock`] takes any governor clock: governor's `FakeRelativeClock` for
//! deterministic tests, [`TokioClock`] to follow `tokio::time::pause`/`advance` together with
//! the verified limiter's waits. Hand such a store to a layer with
//! [`RateLimitLayer::per_client_with_store`], [`RateLimitLayer::verified_with_store`] or
//! [`FailureLimitLayer::with_store`].
//!
//! [`ClientIp`]: crate::client_ip::ClientIp
//! [`ClientIp::known_senders`]: crate::client_ip::ClientIp::known_senders
//! [`ClientIp::behind_proxies`]: crate::client_ip::ClientIp::behind_proxies

mod clock;
mod failure;
mod future;
mod key;
mod layer;
mod rate;
mod service;
mod store;

pub use self::{
    clock::TokioClock,
    failure::{FailureLimit, FailureLimitLayer, FailurePolicy, FailureResponseFuture},
    future::ResponseFuture,
    key::{GlobalKey, HeaderKey, KeyExtractor},
    layer::{OnMissingKey, OnStoreError, RateLimitLayer},
    rate::Rate,
    service::{RateLimit, RateLimitExceeded},
    store::{BlockListId, Check, Decision, MemoryStore, RateLimitStore, StoreError},
};
