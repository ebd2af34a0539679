//! [`FailureLimitLayer`]: blocks clients that keep failing verification.

use std::{
    fmt,
    future::Future,
    num::NonZeroUsize,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{ready, Context, Poll},
    time::Duration,
};

use dashmap::DashMap;
use governor::{
    clock::{Clock, DefaultClock, Reference},
    nanos::Nanos,
};
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{service::Rejection, KeyExtractor, MemoryStore, Rate, RateLimitExceeded};
use crate::{
    body::ProblemBody,
    problem::{Problem, ProblemCode, ResponseForm},
    ConfigError,
};

/// The policy name of failure-only limiting, in [`RateLimitExceeded::policy`].
const POLICY: &str = "failures";

/// The answers that count as a failed verification: the verification layer's own rejections,
/// known by the [`ProblemCode`] in their extensions. A handler's own `400`/`401` never counts:
/// refusing a verified delivery must not get the genuine sender blocked.
///
/// A body that never arrived in time or was abandoned counts too: until its MAC is known such a
/// request may be forged, and it held a connection and buffer memory all the while, so a client
/// that keeps doing it is blocked like one that keeps sending bad signatures.
const FAILED_VERIFICATION: [ProblemCode; 7] = [
    ProblemCode::MISSING_SIGNATURE,
    ProblemCode::MALFORMED_SIGNATURE,
    ProblemCode::SIGNATURE_MISMATCH,
    ProblemCode::TIMESTAMP_STALE,
    ProblemCode::TIMESTAMP_IN_FUTURE,
    ProblemCode::BODY_TIMEOUT,
    ProblemCode::BODY_UNREADABLE,
];

/// How many failed verifications a client may have, and how long it is blocked after more.
///
/// Failures are counted like requests under a [`Rate`]: `Rate::per_minute(10)` lets a client
/// fail 10 times at once, then once every 6 s; the failure beyond that blocks it for the
/// cooldown.
///
/// ```
/// use std::{num::NonZeroU32, time::Duration};
/// use hookgate::rate_limit::{FailurePolicy, Rate};
///
/// let policy = FailurePolicy::new(Rate::per_minute(NonZeroU32::new(10).unwrap()), Duration::from_secs(300)).unwrap();
/// assert!(FailurePolicy::new(Rate::per_minute(NonZeroU32::new(10).unwrap()), Duration::ZERO).is_err());
/// # let _ = policy;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct FailurePolicy {
    allowed: Rate,
    cooldown: Duration,
    max_keys: NonZeroUsize,
    enforce: bool,
}

impl FailurePolicy {
    /// `allowed` failures per key, then a block of `cooldown`.
    ///
    /// # Errors
    ///
    /// A zero cooldown.
    pub fn new(allowed: Rate, cooldown: Duration) -> Result<Self, ConfigError> {
        if cooldown.is_zero() {
            return Err(ConfigError::new(
                "failure limit: the cooldown must be longer than zero",
            ));
        }
        Ok(Self {
            allowed,
            cooldown,
            max_keys: NonZeroUsize::new(100_000).unwrap_or(NonZeroUsize::MIN),
            enforce: true,
        })
    }

    /// The most clients tracked for failures, and the most blocked at once (default 100 000 each).
    ///
    /// At the cap, failures of new clients count against one shared bucket (as in
    /// [`MemoryStore`]); when the block list is full of unexpired blocks, further clients are not
    /// blocked (logged at `warn`) until blocks expire.
    pub fn max_keys(mut self, max_keys: NonZeroUsize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Shadow mode: count failures and report would-be blocks (a `debug` trace and a
    /// [`RateLimitExceeded`] extension with policy `"failures"`), never block.
    pub fn shadow(mut self) -> Self {
        self.enforce = false;
        self
    }
}

/// Counts failed verifications per client (answers from a verification layer inside carrying
/// `missing_signature`, `malformed_signature`, `signature_mismatch`, `timestamp_stale`,
/// `timestamp_in_future`, `body_timeout` or `body_unreadable`; never a handler's own
/// `400`/`401`) and, once a
/// client has failed more than its [`FailurePolicy`] allows, answers `429` `client_blocked` +
/// `Retry-After` for the cooldown **without calling the inner service**, so a blocked client's
/// body is never read and no MAC is computed for it.
///
/// Place it outside the verification layer, next to the per-client limiter:
///
/// ```
/// use std::{convert::Infallible, net::SocketAddr, num::NonZeroU32, time::Duration};
/// use bytes::Bytes;
/// use governor::clock::FakeRelativeClock;
/// use hookgate::problem::{Problem, ProblemCode};
/// use hookgate::client_ip::ClientIp;
/// use hookgate::rate_limit::{FailureLimitLayer, FailurePolicy, Rate};
/// use http::{Request, StatusCode};
/// use http_body_util::{Empty, Full};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let clock = FakeRelativeClock::default();
/// let policy = FailurePolicy::new(Rate::per_hour(NonZeroU32::new(2).unwrap()), Duration::from_secs(60)).unwrap();
/// // Stands in for the verification layer: every request fails with 401.
/// let verify = service_fn(|_req: Request<Empty<Bytes>>| async {
///     let problem = Problem::new(StatusCode::UNAUTHORIZED, ProblemCode::SIGNATURE_MISMATCH);
///     Ok::<_, Infallible>(problem.into_response::<Full<Bytes>>())
/// });
/// let service = ServiceBuilder::new()
///     .layer(FailureLimitLayer::with_clock(policy, ClientIp::peer(), clock.clone()))
///     .service(verify);
///
/// let request = || {
///     let mut request = Request::new(Empty::<Bytes>::new());
///     request.extensions_mut().insert(SocketAddr::from(([203, 0, 113, 7], 5000)));
///     request
/// };
/// for _ in 0..3 {
///     let response = service.clone().oneshot(request()).await.unwrap();
///     assert_eq!(response.status(), StatusCode::UNAUTHORIZED); // the third failure blocks
/// }
/// let response = service.clone().oneshot(request()).await.unwrap();
/// assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(response.headers()["retry-after"], "60");
///
/// clock.advance(Duration::from_secs(60));
/// let response = service.clone().oneshot(request()).await.unwrap();
/// assert_eq!(response.status(), StatusCode::UNAUTHORIZED); // unblocked, verified again
/// # }
/// ```
///
/// A request without a key (see [`ClientIp`](crate::client_ip::ClientIp)) is passed on unlimited by this
/// layer: the per-client limiter in front decides what happens to unidentified clients.
pub struct FailureLimitLayer<E, C = DefaultClock>
where
    E: KeyExtractor,
    C: Clock,
{
    state: Arc<FailureState<E, C>>,
}

struct FailureState<E, C>
where
    E: KeyExtractor,
    C: Clock,
{
    extractor: E,
    failures: MemoryStore<E::Key>,
    blocked: DashMap<E::Key, C::Instant>,
    clock: C,
    start: C::Instant,
    last_purge: AtomicU64,
    cooldown: Duration,
    max_blocked: usize,
    enforce: bool,
}

impl<E> FailureLimitLayer<E>
where
    E: KeyExtractor,
{
    /// Failure-only limiting per key under `policy`, on the system's monotonic clock.
    pub fn new(policy: FailurePolicy, key: E) -> Self {
        Self::with_clock(policy, key, DefaultClock::default())
    }
}

impl<E, C> FailureLimitLayer<E, C>
where
    E: KeyExtractor,
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    /// Failure-only limiting on the given clock (e.g. governor's `FakeRelativeClock` in tests).
    pub fn with_clock(policy: FailurePolicy, key: E, clock: C) -> Self {
        let failures =
            MemoryStore::with_clock(policy.allowed, clock.clone()).max_keys(policy.max_keys);
        let start = clock.now();
        Self {
            state: Arc::new(FailureState {
                extractor: key,
                failures,
                blocked: DashMap::new(),
                clock,
                start,
                last_purge: AtomicU64::new(0),
                cooldown: policy.cooldown,
                max_blocked: policy.max_keys.get(),
                enforce: policy.enforce,
            }),
        }
    }
}

impl<E, C> FailureLimitLayer<E, C>
where
    E: KeyExtractor,
    C: Clock,
{
    /// The number of clients blocked now (including blocks expired but not yet purged).
    #[must_use]
    pub fn blocked_clients(&self) -> usize {
        self.state.blocked.len()
    }
}

impl<E, C> FailureState<E, C>
where
    E: KeyExtractor,
    C: Clock,
{
    /// How much longer `key` is blocked, if it is.
    fn blocked_for(&self, key: &E::Key, now: C::Instant) -> Option<Duration> {
        let until = *self.blocked.get(key)?;
        if until > now {
            return Some(until.duration_since(now).into());
        }
        self.blocked.remove_if(key, |_, until| *until <= now);
        None
    }

    fn record_failure(&self, key: &E::Key) {
        if self.failures.decide(key).is_allowed() {
            return;
        }
        let now = self.clock.now();
        if self.blocked.len() >= self.max_blocked {
            self.purge_expired(now);
            if self.blocked.len() >= self.max_blocked {
                tracing::warn!(
                    target: "hookgate::rate_limit",
                    policy = POLICY,
                    "block list full: a failing client is not blocked"
                );
                return;
            }
        }
        tracing::debug!(
            target: "hookgate::rate_limit",
            policy = POLICY,
            cooldown_ms = self.cooldown.as_millis() as u64,
            enforced = self.enforce,
            "client blocked after repeated verification failures"
        );
        self.blocked
            .insert(key.clone(), now + Nanos::from(self.cooldown));
    }

    /// Drops expired blocks, at most once per second (a full list of live blocks must not
    /// turn every failure into a scan).
    fn purge_expired(&self, now: C::Instant) {
        let elapsed = u64::from(now.duration_since(self.start));
        let last = self.last_purge.load(Ordering::Relaxed);
        let second = u64::from(Nanos::from(Duration::from_secs(1)));
        if (last == 0 || elapsed.saturating_sub(last) >= second)
            && self
                .last_purge
                .compare_exchange(last, elapsed.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.blocked.retain(|_, until| *until > now);
        }
    }
}

impl<E, C> Clone for FailureLimitLayer<E, C>
where
    E: KeyExtractor,
    C: Clock,
{
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
        }
    }
}

impl<E, C> fmt::Debug for FailureLimitLayer<E, C>
where
    E: KeyExtractor + fmt::Debug,
    C: Clock,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureLimitLayer")
            .field("extractor", &self.state.extractor)
            .field("failures", &self.state.failures)
            .field("blocked", &self.state.blocked.len())
            .field("cooldown", &self.state.cooldown)
            .field("enforce", &self.state.enforce)
            .finish()
    }
}

impl<S, E, C> Layer<S> for FailureLimitLayer<E, C>
where
    E: KeyExtractor,
    C: Clock,
{
    type Service = FailureLimit<S, E, C>;

    fn layer(&self, inner: S) -> Self::Service {
        FailureLimit {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

/// The service made by [`FailureLimitLayer`].
pub struct FailureLimit<S, E, C = DefaultClock>
where
    E: KeyExtractor,
    C: Clock,
{
    inner: S,
    state: Arc<FailureState<E, C>>,
}

impl<S, E, C> FailureLimit<S, E, C>
where
    E: KeyExtractor,
    C: Clock,
{
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the limiter.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, E, C> Clone for FailureLimit<S, E, C>
where
    E: KeyExtractor,
    C: Clock,
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            state: Arc::clone(&self.state),
        }
    }
}

impl<S: fmt::Debug, E, C> fmt::Debug for FailureLimit<S, E, C>
where
    E: KeyExtractor,
    C: Clock,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureLimit")
            .field("inner", &self.inner)
            .field("blocked", &self.state.blocked.len())
            .finish_non_exhaustive()
    }
}

impl<S, E, C, ReqBody, ResBody> Service<Request<ReqBody>> for FailureLimit<S, E, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    E: KeyExtractor,
    C: Clock,
    ResBody: ProblemBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = FailureResponseFuture<S::Future, E, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let state = &self.state;
        let key = match state.extractor.extract(&request) {
            Ok(key) if !state.extractor.is_known_sender(&key) => key,
            _ => return FailureResponseFuture::inner(self.inner.call(request), None, None),
        };
        let mut exceeded = None;
        if let Some(remaining) = state.blocked_for(&key, state.clock.now()) {
            if state.enforce {
                let rejection = Rejection {
                    problem: Problem::new(StatusCode::TOO_MANY_REQUESTS, ProblemCode::CLIENT_BLOCKED)
                        .with_detail("too many failed verifications from this client; retry after the indicated delay")
                        .with_retry_after(remaining),
                    headers: None,
                    exceeded: Some(RateLimitExceeded {
                        policy: POLICY,
                        retry_after: remaining,
                        enforced: true,
                    }),
                };
                return FailureResponseFuture {
                    kind: FailureKind::Blocked {
                        rejection: Some(rejection),
                        form: ResponseForm::of(request.headers()),
                    },
                    track: None,
                };
            }
            tracing::debug!(
                target: "hookgate::rate_limit",
                policy = POLICY,
                "blocked client let through (shadow mode: not enforced)"
            );
            let shadow = RateLimitExceeded {
                policy: POLICY,
                retry_after: remaining,
                enforced: false,
            };
            request.extensions_mut().insert(shadow);
            exceeded = Some(shadow);
        }
        let future = self.inner.call(request);
        FailureResponseFuture::inner(future, Some((Arc::clone(state), key)), exceeded)
    }
}

/// The client whose answer is watched for a failure.
type Tracked<E, C> = (Arc<FailureState<E, C>>, <E as KeyExtractor>::Key);

pin_project! {
    /// Response future of [`FailureLimit`].
    pub struct FailureResponseFuture<F, E, C>
    where
        E: KeyExtractor,
        C: Clock,
    {
        #[pin]
        kind: FailureKind<F>,
        track: Option<Tracked<E, C>>,
    }
}

pin_project! {
    #[project = FailureKindProj]
    enum FailureKind<F> {
        Inner { #[pin] future: F, exceeded: Option<RateLimitExceeded> },
        Blocked { rejection: Option<Rejection>, form: ResponseForm },
    }
}

impl<F, E, C> FailureResponseFuture<F, E, C>
where
    E: KeyExtractor,
    C: Clock,
{
    fn inner(future: F, track: Option<Tracked<E, C>>, exceeded: Option<RateLimitExceeded>) -> Self {
        Self {
            kind: FailureKind::Inner { future, exceeded },
            track,
        }
    }
}

impl<F, E, C> fmt::Debug for FailureResponseFuture<F, E, C>
where
    E: KeyExtractor,
    C: Clock,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            FailureKind::Inner { .. } => "inner",
            FailureKind::Blocked { .. } => "blocked",
        };
        f.debug_struct("FailureResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, E, C, ResBody, Error> Future for FailureResponseFuture<F, E, C>
where
    F: Future<Output = Result<Response<ResBody>, Error>>,
    E: KeyExtractor,
    C: Clock,
    ResBody: ProblemBody,
{
    type Output = Result<Response<ResBody>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            FailureKindProj::Inner { future, exceeded } => {
                let mut response = ready!(future.poll(cx))?;
                if response
                    .extensions()
                    .get::<ProblemCode>()
                    .is_some_and(|code| FAILED_VERIFICATION.contains(code))
                {
                    if let Some((state, key)) = this.track.take() {
                        state.record_failure(&key);
                    }
                }
                if let Some(exceeded) = exceeded.take() {
                    response.extensions_mut().insert(exceeded);
                }
                Poll::Ready(Ok(response))
            }
            FailureKindProj::Blocked { rejection, form } => {
                let rejection = rejection.take().expect("future polled after completion");
                Poll::Ready(Ok(rejection.into_response(*form)))
            }
        }
    }
}
