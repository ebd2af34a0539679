//! [`FailureLimitLayer`]: blocks clients that keep failing verification.

mod future;
mod service;

use std::{fmt, hash::Hash, sync::Arc, time::Duration};

use tower_layer::Layer;

pub use self::{future::FailureResponseFuture, service::FailureLimit};
use super::{KeyExtractor, MemoryStore, OnStoreError, Rate};
use crate::store::LogGate;
use crate::{problem::ProblemCode, ConfigError};

/// The policy name of failure-only limiting, in [`RateLimitExceeded::policy`].
///
/// [`RateLimitExceeded::policy`]: super::RateLimitExceeded::policy
const POLICY: &str = "failures";

/// The answers that count as a failed verification: the verification layer's own rejections,
/// known by the [`ProblemCode`] in their extensions. A handler's own `400`/`401` never counts:
/// refusing a verified delivery must not get the genuine sender blocked.
///
/// A body that never arrived in time or was abandoned counts too: until its MAC is known such a
/// request may be forged, and it held a connection and buffer memory all the while, so a client
/// that keeps doing it is blocked like one that keeps sending bad signatures. So do the static
/// token check's refusals (`RequireTokenLayer`, feature `auth`): a client guessing tokens is
/// blocked.
const FAILED_VERIFICATION: [ProblemCode; 9] = [
    ProblemCode::MISSING_CREDENTIALS,
    ProblemCode::INVALID_CREDENTIALS,
    ProblemCode::MISSING_SIGNATURE,
    ProblemCode::MALFORMED_SIGNATURE,
    ProblemCode::SIGNATURE_MISMATCH,
    ProblemCode::TIMESTAMP_STALE,
    ProblemCode::TIMESTAMP_IN_FUTURE,
    ProblemCode::BODY_TIMEOUT,
    ProblemCode::BODY_UNREADABLE,
];

/// What happens to a client that fails verification more often than its rate allows: it is
/// blocked for a cooldown (or, in shadow mode, only reported).
///
/// ```
/// use std::time::Duration;
/// use hookgate::rate_limit::FailurePolicy;
///
/// let policy = FailurePolicy::block_for(Duration::from_secs(300)).unwrap();
/// let try_it_first = policy.shadow();
/// assert_ne!(policy, try_it_first);
/// assert!(FailurePolicy::block_for(Duration::ZERO).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct FailurePolicy {
    cooldown: Duration,
    enforce: bool,
    on_store_error: OnStoreError,
}

impl FailurePolicy {
    /// A client over its failure rate is blocked for `cooldown`.
    ///
    /// # Errors
    ///
    /// A zero cooldown.
    pub fn block_for(cooldown: Duration) -> Result<Self, ConfigError> {
        if cooldown.is_zero() {
            return Err(ConfigError::new(
                "failure limit: the cooldown must be longer than zero",
            ));
        }
        Ok(Self {
            cooldown,
            enforce: true,
            on_store_error: OnStoreError::Allow,
        })
    }

    /// What to do when the store cannot say whether a client is blocked (a shared store is
    /// unreachable). [`OnStoreError::Allow`], the default, fails open: the client is let
    /// through unchecked and its failed verifications go uncounted while the store fails (a
    /// store outage must not turn genuine deliveries away). [`OnStoreError::Reject`] fails
    /// closed: a retryable `503` `limiter_unavailable` + `Retry-After: 1`. Either way the
    /// failures are logged at `warn`, one line per 10 s with their count.
    pub fn on_store_error(mut self, policy: OnStoreError) -> Self {
        self.on_store_error = policy;
        self
    }

    /// Shadow mode: count failures and report would-be blocks (a `debug` trace and a
    /// [`RateLimitExceeded`](super::RateLimitExceeded) extension with policy `"failures"`),
    /// never block.
    pub fn shadow(mut self) -> Self {
        self.enforce = false;
        self
    }
}

/// Counts failed verifications per client (answers from a verification layer inside carrying
/// `missing_signature`, `malformed_signature`, `signature_mismatch`, `timestamp_stale`,
/// `timestamp_in_future`, `body_timeout` or `body_unreadable`, or from a static token check
/// carrying `missing_credentials` or `invalid_credentials`; never a handler's own
/// `400`/`401`) and, once a client has failed more often than its rate allows, answers `429`
/// `client_blocked` + `Retry-After` for the [`FailurePolicy`]'s cooldown **without calling the
/// inner service**, so a blocked client's body is never read and no MAC is computed for it.
///
/// Failures are counted like requests under a [`Rate`]: `Rate::per_minute(10)` lets a client
/// fail 10 times at once, then once every 6 s; the failure beyond that blocks it for the
/// cooldown. Known senders ([`ClientIp::known_senders`]) are never counted or blocked: anyone
/// can make a sender fail verification against you.
///
/// The counts and the block list live in a [`RateLimitStore`](super::RateLimitStore): in memory
/// by default ([`new`](FailureLimitLayer::new)), or in a store of your choice
/// ([`with_store`](FailureLimitLayer::with_store)), e.g. one shared by several instances.
///
/// Place it outside the verification layer, next to the per-client limiter:
///
/// ```
/// use std::{convert::Infallible, net::SocketAddr, num::NonZeroU32, time::Duration};
/// use bytes::Bytes;
/// use hookgate::client_ip::ClientIp;
/// use hookgate::problem::{Problem, ProblemCode};
/// use hookgate::rate_limit::{FailureLimitLayer, FailurePolicy, Rate};
/// use http::{Request, StatusCode};
/// use http_body_util::{Empty, Full};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Two failures an hour allowed, then a block of one minute.
/// let allowed = Rate::per_hour(NonZeroU32::new(2).unwrap());
/// let policy = FailurePolicy::block_for(Duration::from_secs(60))?;
/// // Stands in for the verification layer: every request fails with 401.
/// let verify = service_fn(|_req: Request<Empty<Bytes>>| async {
///     let problem = Problem::new(StatusCode::UNAUTHORIZED, ProblemCode::SIGNATURE_MISMATCH);
///     Ok::<_, Infallible>(problem.into_response::<Full<Bytes>>())
/// });
/// let service = ServiceBuilder::new()
///     .layer(FailureLimitLayer::new(allowed, policy, ClientIp::peer()))
///     .service(verify);
///
/// let request = || {
///     let mut request = Request::new(Empty::<Bytes>::new());
///     request.extensions_mut().insert(SocketAddr::from(([203, 0, 113, 7], 5000)));
///     request
/// };
/// for _ in 0..3 {
///     let response = service.clone().oneshot(request()).await?;
///     assert_eq!(response.status(), StatusCode::UNAUTHORIZED); // the third failure blocks
/// }
/// let response = service.clone().oneshot(request()).await?;
/// assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(response.headers()["retry-after"], "60");
/// assert_eq!(response.extensions().get::<ProblemCode>(), Some(&ProblemCode::CLIENT_BLOCKED));
/// # Ok(())
/// # }
/// ```
///
/// A request without a key (see [`ClientIp`](crate::client_ip::ClientIp)) is passed on
/// unlimited by this layer: the per-client limiter in front decides what happens to
/// unidentified clients.
///
/// [`ClientIp::known_senders`]: crate::client_ip::ClientIp::known_senders
pub struct FailureLimitLayer<E, St = MemoryStore<<E as KeyExtractor>::Key>> {
    extractor: Arc<E>,
    shared: Arc<Shared<St>>,
}

/// What every service of a [`FailureLimitLayer`] shares.
struct Shared<St> {
    store: St,
    cooldown: Duration,
    enforce: bool,
    on_store_error: OnStoreError,
    errors: LogGate,
}

impl<E> FailureLimitLayer<E>
where
    E: KeyExtractor,
{
    /// Failure-only limiting per key: `allowed` failures under `policy`, counted in memory
    /// ([`MemoryStore`], at most 100 000 clients tracked and as many blocked).
    pub fn new(allowed: Rate, policy: FailurePolicy, key: E) -> Self {
        Self::with_store(MemoryStore::new(allowed), policy, key)
    }
}

impl<E, St> FailureLimitLayer<E, St> {
    /// Failure-only limiting per key in `store`, which counts failures under its own rate
    /// (e.g. [`MemoryStore::with_clock`] for a test clock, [`MemoryStore::max_keys`] for
    /// another bound, or a store shared by several instances).
    pub fn with_store(store: St, policy: FailurePolicy, key: E) -> Self {
        Self {
            extractor: Arc::new(key),
            shared: Arc::new(Shared {
                store,
                cooldown: policy.cooldown,
                enforce: policy.enforce,
                on_store_error: policy.on_store_error,
                errors: LogGate::new(),
            }),
        }
    }
}

impl<E, St> FailureLimitLayer<E, St> {
    /// The store holding the failure counts and blocks, shared with every service made by
    /// this layer.
    #[must_use]
    pub fn store(&self) -> &St {
        &self.shared.store
    }
}

impl<E, K> FailureLimitLayer<E, MemoryStore<K>>
where
    K: Hash + Eq + Clone,
{
    /// The number of clients blocked now (including blocks expired but not yet dropped).
    #[must_use]
    pub fn blocked_clients(&self) -> usize {
        self.shared.store.blocked_keys()
    }
}

impl<E, St> Clone for FailureLimitLayer<E, St> {
    fn clone(&self) -> Self {
        Self {
            extractor: Arc::clone(&self.extractor),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<E: fmt::Debug, St: fmt::Debug> fmt::Debug for FailureLimitLayer<E, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureLimitLayer")
            .field("extractor", &self.extractor)
            .field("store", &self.shared.store)
            .field("cooldown", &self.shared.cooldown)
            .field("enforce", &self.shared.enforce)
            .finish()
    }
}

impl<S, E, St> Layer<S> for FailureLimitLayer<E, St> {
    type Service = FailureLimit<S, E, St>;

    fn layer(&self, inner: S) -> Self::Service {
        FailureLimit::new(inner, Arc::clone(&self.extractor), Arc::clone(&self.shared))
    }
}
