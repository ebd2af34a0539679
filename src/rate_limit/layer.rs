//! [`RateLimitLayer`] and its settings.

use std::{fmt, sync::Arc, time::Duration};

use http::HeaderValue;
use tower_layer::Layer;

use super::{
    service::{RateLimit, Shared},
    KeyExtractor, MemoryStore, Rate, RateLimitStore,
};
use crate::{store::LogGate, ConfigError};

/// The longest [`RateLimitLayer::wait_for_token`] accepts: a webhook sender waits for the answer.
const MAX_WAIT_FOR_TOKEN: Duration = Duration::from_secs(10);

/// Where in the onion a limiter sits, which decides its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Before verification: 429 `rate_limited`.
    PerClient,
    /// After verification: retryable 503 `throttled`.
    Verified,
}

impl Placement {
    pub(crate) fn policy_name(self) -> &'static str {
        match self {
            Self::PerClient => "client",
            Self::Verified => "verified",
        }
    }
}

/// What the layer does with a request its [`KeyExtractor`] found no key for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnMissingKey {
    /// Answer `500` with problem code `client_unidentified` (the default). A missing client
    /// address is a deployment error (no peer address set: hyper without the `SocketAddr`
    /// extension, axum without `into_make_service_with_connect_info::<SocketAddr>()`): failing
    /// loudly shows it at once, and 5xx keeps the sender retrying rather than dropping the
    /// event as a 4xx would.
    #[default]
    Reject,
    /// Pass the request on, unlimited (logged at `warn`). Only for keys that are optional by
    /// design; never for client addresses in front of verification.
    Allow,
}

/// What the layer does when its store cannot decide (a shared store is unreachable).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnStoreError {
    /// Fail open: pass the request on, unlimited (logged at `warn`, one line per 10 s with the
    /// number of failures). The default: a limiter
    /// outage must not turn genuine deliveries away.
    #[default]
    Allow,
    /// Fail closed: answer a retryable `503` with problem code `limiter_unavailable` and
    /// `Retry-After: 1`.
    Reject,
}

/// Applies a rate limit to requests; see the [module docs](super) for placement and answers.
///
/// The limiter state lives in the store, shared through an `Arc` by every service this layer
/// makes and every clone of them, so the limit holds however the server clones services.
///
/// ```
/// use std::{convert::Infallible, net::SocketAddr, num::NonZeroU32};
/// use bytes::Bytes;
/// use hookgate::{client_ip::ClientIp, problem::ProblemCode, rate_limit::{Rate, RateLimitLayer}};
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use tower::{service_fn, Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Two requests an hour per client, in front of the handler.
/// let layer = RateLimitLayer::per_client(Rate::per_hour(NonZeroU32::new(2).unwrap()), ClientIp::peer());
/// let service = layer.layer(service_fn(|_req: Request<Full<Bytes>>| async {
///     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
/// }));
///
/// let from = |peer: [u8; 4]| {
///     let mut request = Request::new(Full::new(Bytes::new()));
///     request.extensions_mut().insert(SocketAddr::from((peer, 40_000)));
///     request
/// };
/// for _ in 0..2 {
///     assert_eq!(service.clone().oneshot(from([203, 0, 113, 7])).await?.status(), StatusCode::OK);
/// }
/// let limited = service.clone().oneshot(from([203, 0, 113, 7])).await?;
/// assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(limited.extensions().get::<ProblemCode>(), Some(&ProblemCode::RATE_LIMITED));
/// assert!(limited.headers().contains_key("retry-after"));
/// // Another client, another bucket.
/// assert_eq!(service.oneshot(from([198, 51, 100, 1])).await?.status(), StatusCode::OK);
/// # Ok(())
/// # }
/// ```
pub struct RateLimitLayer<E, St> {
    pub(crate) extractor: E,
    pub(crate) store: Arc<St>,
    pub(crate) placement: Placement,
    pub(crate) enforce: bool,
    pub(crate) max_wait: Duration,
    pub(crate) on_missing_key: OnMissingKey,
    pub(crate) on_store_error: OnStoreError,
    /// Store failures, logged once per interval for every service of the layer.
    pub(crate) errors: Arc<LogGate>,
}

impl<E> RateLimitLayer<E, MemoryStore<E::Key>>
where
    E: KeyExtractor,
{
    /// The limit in front of verification: `rate` per key (normally
    /// [`ClientIp`](crate::client_ip::ClientIp)), answered with `429` + `Retry-After`, in
    /// memory.
    pub fn per_client(rate: Rate, key: E) -> Self {
        Self::per_client_with_store(MemoryStore::new(rate), key)
    }

    /// The limit on verified traffic: `rate` per key (often [`GlobalKey`](super::GlobalKey)),
    /// answered with a retryable `503` + `Retry-After`, in memory.
    pub fn verified(rate: Rate, key: E) -> Self {
        Self::verified_with_store(MemoryStore::new(rate), key)
    }
}

impl<E, St> RateLimitLayer<E, St>
where
    E: KeyExtractor,
    St: RateLimitStore<E::Key>,
{
    /// [`per_client`](RateLimitLayer::per_client) on the given store.
    pub fn per_client_with_store(store: St, key: E) -> Self {
        Self::with_placement(store, key, Placement::PerClient)
    }

    /// [`verified`](RateLimitLayer::verified) on the given store.
    pub fn verified_with_store(store: St, key: E) -> Self {
        Self::with_placement(store, key, Placement::Verified)
    }

    fn with_placement(store: St, key: E, placement: Placement) -> Self {
        Self {
            extractor: key,
            store: Arc::new(store),
            placement,
            enforce: true,
            max_wait: Duration::ZERO,
            on_missing_key: OnMissingKey::default(),
            on_store_error: OnStoreError::default(),
            errors: Arc::new(LogGate::new()),
        }
    }
}

impl<E, St> RateLimitLayer<E, St> {
    /// Shadow mode: count every request and report those over the rate (a `debug` trace and a
    /// [`RateLimitExceeded`](super::RateLimitExceeded) extension on the request and the
    /// response), but never reject, and add no rate-limit headers. For trying a rate on real
    /// traffic before enforcing it.
    #[must_use]
    pub fn shadow(mut self) -> Self {
        self.enforce = false;
        self
    }

    /// For verified traffic only: when the next token is due within `max_wait`, hold the request
    /// that long and try once more before answering 503. Off (zero) by default.
    ///
    /// # Errors
    ///
    /// On a per-client limiter (waiting there would let unverified clients hold connections
    /// open), or a wait above 10 s.
    pub fn wait_for_token(mut self, max_wait: Duration) -> Result<Self, ConfigError> {
        if self.placement == Placement::PerClient {
            return Err(ConfigError::new(
                "rate limit: only the verified-traffic limiter may wait for a token",
            ));
        }
        if max_wait > MAX_WAIT_FOR_TOKEN {
            return Err(ConfigError::new(
                "rate limit: the wait for a token must be at most 10 s",
            ));
        }
        self.max_wait = max_wait;
        Ok(self)
    }

    /// What to do with a request that has no key (default [`OnMissingKey::Reject`]).
    #[must_use]
    pub fn on_missing_key(mut self, policy: OnMissingKey) -> Self {
        self.on_missing_key = policy;
        self
    }

    /// What to do when the store cannot decide (default [`OnStoreError::Allow`]).
    #[must_use]
    pub fn on_store_error(mut self, policy: OnStoreError) -> Self {
        self.on_store_error = policy;
        self
    }

    /// The store holding the limiter state, shared with every service made by this layer.
    #[must_use]
    pub fn store(&self) -> &St {
        &self.store
    }
}

impl<E: Clone, St> Clone for RateLimitLayer<E, St> {
    fn clone(&self) -> Self {
        Self {
            extractor: self.extractor.clone(),
            store: Arc::clone(&self.store),
            placement: self.placement,
            enforce: self.enforce,
            max_wait: self.max_wait,
            on_missing_key: self.on_missing_key,
            on_store_error: self.on_store_error,
            errors: Arc::clone(&self.errors),
        }
    }
}

impl<E: fmt::Debug, St: fmt::Debug> fmt::Debug for RateLimitLayer<E, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("extractor", &self.extractor)
            .field("store", &self.store)
            .field("placement", &self.placement)
            .field("enforce", &self.enforce)
            .field("max_wait", &self.max_wait)
            .field("on_missing_key", &self.on_missing_key)
            .field("on_store_error", &self.on_store_error)
            .finish()
    }
}

impl<S, E, St> Layer<S> for RateLimitLayer<E, St>
where
    E: KeyExtractor + Clone,
    St: RateLimitStore<E::Key>,
{
    type Service = RateLimit<S, E, St>;

    fn layer(&self, inner: S) -> Self::Service {
        let (quota, window) = self.store.rate().quota_per_window();
        let policy = format!("\"{}\";q={quota};w={window}", self.placement.policy_name(),);
        let shared = Shared {
            store: Arc::clone(&self.store),
            placement: self.placement,
            enforce: self.enforce,
            max_wait: self.max_wait,
            on_missing_key: self.on_missing_key,
            on_store_error: self.on_store_error,
            errors: Arc::clone(&self.errors),
            reads_block_list: self.store.reads_block_list(),
            // Digits, letters, quotes, `;` and `=` only: always a valid header value.
            policy: HeaderValue::try_from(policy).unwrap_or(HeaderValue::from_static("")),
        };
        RateLimit::new(inner, Arc::new(self.extractor.clone()), Arc::new(shared))
    }
}
