//! The gateway as a library (feature `gateway`): what `hookgate serve` is made of, to serve
//! as it does from your own program, or to take parts of into your own stack.
//!
//! ## Serve a gateway
//!
//! [`Gateway::builder`] takes the scheme (with its secrets and tolerance: where secrets come
//! from is yours to decide) and has every setting of `hookgate serve`, typed and with the same
//! defaults. [`GatewayBuilder::build`] checks them; [`Gateway::serve`] binds and starts the
//! workers, and returns a [`GatewayHandle`] with the addresses it got and the way to stop it.
//!
//! ```no_run
//! use std::time::Duration;
//! use hookgate::{gateway::Gateway, scheme::ElevenLabs};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let scheme = ElevenLabs::new(std::env::var("ELEVENLABS_WEBHOOK_SECRET")?)?
//!     .tolerance(Duration::from_secs(30 * 60));
//! let gateway = Gateway::builder(scheme)
//!     .listen("127.0.0.1:0".parse()?)
//!     .admin_listen("127.0.0.1:0".parse::<std::net::SocketAddr>()?)
//!     .sink_dir("./events")
//!     .client_rate(100)
//!     .build()?
//!     .serve()
//!     .await?;
//! println!("receiving at {}", gateway.url());
//! tokio::signal::ctrl_c().await?;       // the library installs no signal handler
//! gateway.shutdown().await;             // in-flight requests finish within the grace period
//! # Ok(())
//! # }
//! ```
//!
//! ## The parts
//!
//! - **The onion** ([`Gateway`] composes it for each worker, statically: no boxing, a layer
//!   left out costs one branch): the request id and its trace span (tower-http), metrics and
//!   the rejection log, routing (`POST <path>` only),
//!   `NormalizeStatusLayer` under the ElevenLabs contract, `RequireHttpsLayer` and
//!   `AllowIpLayer` when asked for, `FailureLimitLayer`, `RateLimitLayer::per_client`,
//!   `VerifySignatureLayer`, then the destination.
//! - **Destinations**, tower services taking the `Request<VerifiedBody>` that
//!   [`VerifySignatureLayer`](crate::VerifySignatureLayer) hands on, usable in your own stack:
//!   [`Sink`], the durable sink directory; [`Upstream`], forwarding to your handler over a
//!   pooled connection.
//! - **Serving**: a thread per core, each with its own runtime and upstream pool, accepting on
//!   one socket bound without `SO_REUSEPORT` (a second instance fails with
//!   [`Error::AddressInUse`]); rustls HTTPS (HTTP/2 and HTTP/1.1); graceful shutdown.
//! - **Connections**: caps in all and per client (over them a `503 too_many_connections` and a
//!   close), deadlines for the first request head and for idleness, a lingering close so an
//!   early answer reaches a client still uploading, accept errors backed off and logged once
//!   per interval.
//! - **Metrics** on the admin listener: `/healthz` (`503` while the sink cannot write) and
//!   Prometheus `/metrics` (`hookgate_requests_total` by outcome and status, latency
//!   histograms, buffer, limiter and connection gauges).
//! - **Rejection log**: each rejection at `info` with its problem code and client, repeated
//!   ones counted into one line per interval.
//! - **Request ids** (set as a header only, and tower-http's `PropagateRequestIdLayer`): every
//!   request has an `X-Request-Id`, the client's when it is a short plain token (at most 64
//!   letters, digits, `-`, `_`, `.`, `:`) and 32 hex digits made here otherwise. It is
//!   forwarded upstream, echoed on the answer, repeated as `request_id` in every problem
//!   body (read back from the answer, so an accepted delivery pays no copy of it), and named
//!   by the `request` span every log line of the request is written in (the service call and
//!   the answer's future run in it; it logs nothing itself: the gateway's own lines say what
//!   happened). The signature header is marked sensitive (`SetSensitiveRequestHeadersLayer`),
//!   so whatever logs a request's headers shows `Sensitive` in its place.
//!
//! `examples/custom_gateway.rs` puts the layers and the [`Sink`] into an axum router beside
//! routes of its own.

/// A destination's answer body: a named wrapper around a `ResponseBody` (the destination's own
/// answer, or a problem+json body from a layer in front of it), so the public type says whose
/// answer it is and hides how it is made. Expands to the struct (given with its docs), its
/// `ProblemBody`, `Body` and size-only `Debug`.
macro_rules! destination_body {
    ($(#[$doc:meta])* $name:ident($inner:ty), $problem_doc:literal) => {
        pin_project_lite::pin_project! {
            $(#[$doc])*
            pub struct $name {
                #[pin]
                inner: crate::body::ResponseBody<$inner>,
            }
        }

        #[doc = $problem_doc]
        impl crate::body::ProblemBody for $name {
            fn from_problem(bytes: bytes::Bytes) -> Self {
                Self {
                    inner: crate::body::ResponseBody::from_problem(bytes),
                }
            }
        }

        impl http_body::Body for $name {
            type Data = bytes::Bytes;
            type Error = std::convert::Infallible;

            fn poll_frame(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
                self.project().inner.poll_frame(cx)
            }

            fn is_end_stream(&self) -> bool {
                self.inner.is_end_stream()
            }

            fn size_hint(&self) -> http_body::SizeHint {
                self.inner.size_hint()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("len", &self.inner.size_hint().exact())
                    .finish()
            }
        }
    };
}

mod builder;
pub mod codes;
mod connections;
mod error;
mod metrics;
mod rejection_log;
mod request_id;
mod serve;
mod sink;
mod stack;
mod state;
mod tls;
mod upstream;

pub use builder::{Gateway, GatewayBuilder};
pub use error::{Error, Setting};
pub use serve::GatewayHandle;
pub use sink::{Sink, SinkBody};
pub use upstream::{Upstream, UpstreamBody, UpstreamBuilder};
