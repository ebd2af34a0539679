//! [`RateLimit`]: the service made by [`RateLimitLayer`](super::RateLimitLayer).

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::BytesMut;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use tower_service::Service;

use super::{
    future::{Deferred, Extra, Kind, ResponseFuture},
    layer::Placement,
    store::{BlockListId, BlockLookup},
    Check, Decision, KeyExtractor, OnMissingKey, OnStoreError, RateLimitStore, StoreError,
};
use crate::{
    body::ProblemBody,
    client_ip::Unidentified,
    problem::{retry_after_secs, Problem, ProblemCode, ResponseForm},
    store::LogGate,
};

// The names are constants, not statics: each use is a name built at compile time, handed to
// the header map as it is, where a static's would be cloned (an indirect call) on every answer.
// Their bytes are static and never written, so the interior mutability the lint warns of
// (`Bytes`' atomic pointer) is never used.
/// The `RateLimit-Policy` header (draft-ietf-httpapi-ratelimit-headers-10).
#[allow(clippy::declare_interior_mutable_const)]
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The `RateLimit` header (draft-ietf-httpapi-ratelimit-headers-10).
#[allow(clippy::declare_interior_mutable_const)]
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The bytes a service sets aside at a time for its `RateLimit` header values (about a dozen).
const HEADER_CHUNK: usize = 256;

/// A request over the rate, recorded in the request extensions (shadow mode) and in the
/// response extensions (shadow mode and rejections), for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitExceeded {
    /// The policy name: `"client"` (before verification) or `"verified"`.
    pub policy: &'static str,
    /// When the key may make its next request.
    pub retry_after: Duration,
    /// `false` in shadow mode: the request was let through.
    pub enforced: bool,
}

/// Enforces a rate limit on the inner service; made by [`RateLimitLayer`](super::RateLimitLayer).
pub struct RateLimit<S, E, St> {
    inner: S,
    extractor: Arc<E>,
    shared: Arc<Shared<St>>,
    /// Where this service writes its `RateLimit` header values (see `Shared::headers`); each
    /// clone starts with none.
    header_buf: HeaderBuf,
}

/// Where a service writes its `RateLimit` header values, and the last one it wrote.
#[derive(Default)]
pub(crate) struct HeaderBuf {
    /// The chunk the values are written into and split off (see `Shared::headers`).
    chunk: BytesMut,
    /// The last value written, with its `r` and `t`: a client well under its rate finds its
    /// burst full at every request, and gets the same value answer after answer.
    last: Option<(u32, u64, HeaderValue)>,
}

/// What every service of a [`RateLimitLayer`](super::RateLimitLayer) shares: the store and the
/// settings (the extractor is shared beside it, so a decision deferred to a future needs only
/// this).
pub(crate) struct Shared<St> {
    pub(crate) store: Arc<St>,
    pub(crate) placement: Placement,
    pub(crate) enforce: bool,
    pub(crate) max_wait: Duration,
    pub(crate) on_missing_key: OnMissingKey,
    pub(crate) on_store_error: OnStoreError,
    pub(crate) errors: Arc<LogGate>,
    /// The block list the store's checks look up ([`RateLimitStore::reads_block_list`]).
    pub(crate) reads_block_list: Option<BlockListId>,
    pub(crate) policy: HeaderValue,
}

/// A block list looked up for `key` with the rate limiter's decision, passed on with the
/// request to a failure limiter inside (see [`Decision::with_block`]).
#[derive(Clone, Debug)]
pub(crate) struct LookedUpBlock<K> {
    pub(crate) lookup: BlockLookup,
    pub(crate) key: K,
}

/// The headers added to an answer: `RateLimit-Policy` and `RateLimit`.
pub(crate) type RateHeaders = (HeaderValue, HeaderValue);

/// What to do with a request once the store has decided.
pub(crate) enum Verdict {
    /// On to the inner service, with what to add to its answer (in one field: this is moved
    /// around on every allowed request, and small values are moved without a `memcpy` call).
    Pass {
        extra: Extra,
        block: Option<BlockLookup>,
    },
    Reject(Box<Rejection>),
    Wait(Duration),
}

/// A complete answer written by the layer.
#[derive(Debug)]
pub(crate) struct Rejection {
    pub(crate) problem: Problem,
    pub(crate) headers: Option<RateHeaders>,
    pub(crate) exceeded: Option<RateLimitExceeded>,
}

impl Rejection {
    pub(crate) fn into_response<B: ProblemBody>(self, form: ResponseForm) -> Response<B> {
        let mut response = self.problem.into_response_for(form);
        if let Some((policy, limit)) = self.headers {
            response.headers_mut().insert(RATELIMIT_POLICY, policy);
            response.headers_mut().insert(RATELIMIT, limit);
        }
        if let Some(exceeded) = self.exceeded {
            response.extensions_mut().insert(exceeded);
        }
        response
    }
}

impl<St> Shared<St> {
    /// The two headers for `remaining` requests left and the burst full again after `reset`.
    ///
    /// This runs on every allowed request, so it allocates nothing of its own: the policy is
    /// built once (a clone shares it), and the `RateLimit` value is written into `buf`, the
    /// calling service's chunk of a few hundred bytes, and split off it (a new chunk once
    /// every dozen or so answers, freed when the last answer written into it is dropped).
    ///
    /// When `r` and `t` are those of the last value `buf` wrote, that value is shared instead
    /// (a reference count, no formatting or validation).
    fn headers(&self, buf: &mut HeaderBuf, remaining: u32, reset: Duration) -> RateHeaders {
        let reset = reset_secs(reset);
        let limit = match &buf.last {
            Some((r, t, value)) if *r == remaining && *t == reset => value.clone(),
            _ => {
                let value = self.limit_value(&mut buf.chunk, remaining, reset);
                buf.last = Some((remaining, reset, value.clone()));
                value
            }
        };
        (self.policy.clone(), limit)
    }

    /// The `RateLimit` value for `remaining` requests left and the burst full again after
    /// `reset` seconds, written into `buf` and split off it.
    fn limit_value(&self, buf: &mut BytesMut, remaining: u32, reset: u64) -> HeaderValue {
        // `"verified";r=4294967295;t=18446744073709551615` fits in 64 bytes: written on the
        // stack, then copied into `buf` at once.
        let mut value = [0_u8; 64];
        let mut len = 0;
        let mut push = |bytes: &[u8]| {
            value[len..len + bytes.len()].copy_from_slice(bytes);
            len += bytes.len();
        };
        push(match self.placement {
            Placement::PerClient => b"\"client\";r=",
            Placement::Verified => b"\"verified\";r=",
        });
        let mut digits = itoa::Buffer::new();
        push(digits.format(remaining).as_bytes());
        push(b";t=");
        push(digits.format(reset).as_bytes());
        if buf.capacity() < value.len() {
            *buf = BytesMut::with_capacity(HEADER_CHUNK);
        }
        buf.extend_from_slice(&value[..len]);
        HeaderValue::from_maybe_shared(buf.split().freeze()).unwrap_or(HeaderValue::from_static(""))
    }

    /// Turns a store's answer into what the layer does.
    ///
    /// `buf` is where the `RateLimit` header's value is written (see `headers`).
    pub(crate) fn judge(
        &self,
        result: Result<Decision, StoreError>,
        may_wait: bool,
        buf: &mut HeaderBuf,
    ) -> Verdict {
        match result {
            Ok(decision) if decision.is_allowed() => Verdict::Pass {
                extra: self.allowed(buf, &decision),
                block: decision.block_lookup(),
            },
            Ok(decision) => self.over_rate(&decision, may_wait, buf),
            Err(error) => self.store_failed(&error),
        }
    }

    /// What to add to the answer to an allowed request: the headers while enforcing.
    #[inline]
    pub(crate) fn allowed(&self, buf: &mut HeaderBuf, decision: &Decision) -> Extra {
        if self.enforce {
            let (policy, limit) = self.headers(buf, decision.remaining(), decision.reset());
            Extra::Headers(policy, limit)
        } else {
            Extra::Nothing
        }
    }

    /// What the layer does when the store failed.
    #[inline(never)]
    fn store_failed(&self, error: &StoreError) -> Verdict {
        if let Some(suppressed) = self.errors.admit() {
            tracing::warn!(
                target: "hookgate::rate_limit",
                policy = self.placement.policy_name(),
                %error,
                suppressed,
                fail_closed = self.on_store_error == OnStoreError::Reject,
                "rate limit store failed"
            );
        }
        match self.on_store_error {
            OnStoreError::Reject => Verdict::Reject(Box::new(Rejection {
                problem: Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ProblemCode::LIMITER_UNAVAILABLE,
                )
                .with_retry_after(Duration::from_secs(1)),
                headers: None,
                exceeded: None,
            })),
            OnStoreError::Allow => Verdict::Pass {
                extra: Extra::Nothing,
                block: self.reads_block_list.map(|list| BlockLookup {
                    list,
                    blocked: None,
                    failed: true,
                }),
            },
        }
    }

    /// What the layer does with a request over the rate.
    #[inline(never)]
    fn over_rate(&self, decision: &Decision, may_wait: bool, buf: &mut HeaderBuf) -> Verdict {
        let retry_after = decision.reset();
        if !self.enforce {
            tracing::debug!(
                target: "hookgate::rate_limit",
                policy = self.placement.policy_name(),
                retry_after_ms = retry_after.as_millis() as u64,
                overflow = decision.is_overflow(),
                "rate limit exceeded (shadow mode: not enforced)"
            );
            return Verdict::Pass {
                block: decision.block_lookup(),
                extra: Extra::Exceeded(RateLimitExceeded {
                    policy: self.placement.policy_name(),
                    retry_after,
                    enforced: false,
                }),
            };
        }
        if may_wait && !self.max_wait.is_zero() && retry_after <= self.max_wait {
            return Verdict::Wait(retry_after);
        }
        tracing::debug!(
            target: "hookgate::rate_limit",
            policy = self.placement.policy_name(),
            retry_after_ms = retry_after.as_millis() as u64,
            overflow = decision.is_overflow(),
            "rate limit exceeded"
        );
        let (status, code, detail) = match self.placement {
            // Not tracked, for the store is full: turned away for our capacity, not for the
            // client's own rate, so retryable (a genuine sender must not be dropped for it).
            Placement::PerClient if decision.is_overflow() => (
                StatusCode::SERVICE_UNAVAILABLE,
                ProblemCode::LIMITER_UNAVAILABLE,
                "the limiter is tracking as many clients as it may; retry after the indicated delay",
            ),
            Placement::PerClient => (
                StatusCode::TOO_MANY_REQUESTS,
                ProblemCode::RATE_LIMITED,
                "too many requests from this client; retry after the indicated delay",
            ),
            Placement::Verified => (
                StatusCode::SERVICE_UNAVAILABLE,
                ProblemCode::THROTTLED,
                "verified deliveries are arriving faster than the configured rate; retry later",
            ),
        };
        Verdict::Reject(Box::new(Rejection {
            problem: Problem::new(status, code)
                .with_detail(detail)
                .with_retry_after(retry_after),
            headers: Some(self.headers(buf, 0, retry_after)),
            exceeded: Some(RateLimitExceeded {
                policy: self.placement.policy_name(),
                retry_after,
                enforced: true,
            }),
        }))
    }

    fn unidentified(&self, unidentified: Unidentified) -> Option<Box<Rejection>> {
        tracing::warn!(
            target: "hookgate::rate_limit",
            policy = self.placement.policy_name(),
            reason = unidentified.reason(),
            "rate limit key missing"
        );
        match self.on_missing_key {
            OnMissingKey::Allow => None,
            OnMissingKey::Reject => Some(Box::new(Rejection {
                problem: Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ProblemCode::CLIENT_UNIDENTIFIED,
                )
                .with_detail(format!(
                    "the receiver could not identify the client for rate limiting ({})",
                    unidentified.reason()
                )),
                headers: None,
                exceeded: None,
            })),
        }
    }
}

/// Whole seconds for the `t` parameter: rounded up; 0 only for no wait at all.
fn reset_secs(reset: Duration) -> u64 {
    if reset.is_zero() {
        0
    } else {
        retry_after_secs(reset)
    }
}

impl<S, E, St> RateLimit<S, E, St> {
    pub(crate) fn new(inner: S, extractor: Arc<E>, shared: Arc<Shared<St>>) -> Self {
        Self {
            inner,
            extractor,
            shared,
            header_buf: HeaderBuf::default(),
        }
    }

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

impl<S: Clone, E, St> Clone for RateLimit<S, E, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            extractor: Arc::clone(&self.extractor),
            shared: Arc::clone(&self.shared),
            header_buf: HeaderBuf::default(),
        }
    }
}

impl<S: fmt::Debug, E: fmt::Debug, St: fmt::Debug> fmt::Debug for RateLimit<S, E, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("extractor", &self.extractor)
            .field("store", &self.shared.store)
            .field("placement", &self.shared.placement)
            .field("enforce", &self.shared.enforce)
            .finish_non_exhaustive()
    }
}

impl<S, E, St, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, E, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    E: KeyExtractor,
    St: RateLimitStore<E::Key>,
    ResBody: ProblemBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, St::CheckFuture, S, ReqBody, E::Key, St>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let key = match self.extractor.extract(&request) {
            Ok(key) => key,
            Err(unidentified) => {
                return match shared.unidentified(unidentified) {
                    Some(rejection) => ResponseFuture::new(Kind::rejected(
                        rejection,
                        ResponseForm::of(request.headers()),
                    )),
                    None => {
                        ResponseFuture::new(Kind::inner(self.inner.call(request), Extra::Nothing))
                    }
                }
            }
        };
        if self.extractor.is_known_sender(&key) {
            return ResponseFuture::new(Kind::inner(self.inner.call(request), Extra::Nothing));
        }
        let result = match shared.store.check(&key) {
            Check::Ready(result) => result,
            Check::Pending(check) => {
                let inner = self.take_ready_inner();
                let deferred = Deferred::new(inner, request, key, &self.shared);
                return ResponseFuture::new(Kind::checking(check, deferred, true));
            }
        };
        let verdict = match result {
            Ok(decision) if decision.is_allowed() => {
                // Nearly every request: straight on, with no `Verdict` built and taken apart.
                if let Some(lookup) = decision.block_lookup() {
                    request
                        .extensions_mut()
                        .insert(LookedUpBlock { lookup, key });
                }
                if !shared.enforce {
                    // Shadow mode: nothing to add, written as such where the future is built
                    // rather than chosen at run time and copied in.
                    return ResponseFuture::new(Kind::inner(
                        self.inner.call(request),
                        Extra::Nothing,
                    ));
                }
                let extra = shared.allowed(&mut self.header_buf, &decision);
                return ResponseFuture::new(Kind::inner(self.inner.call(request), extra));
            }
            result => shared.judge(result, true, &mut self.header_buf),
        };
        match verdict {
            Verdict::Pass { extra, block } => {
                if let Extra::Exceeded(exceeded) = extra {
                    request.extensions_mut().insert(exceeded);
                }
                if let Some(lookup) = block {
                    request
                        .extensions_mut()
                        .insert(LookedUpBlock { lookup, key });
                }
                ResponseFuture::new(Kind::inner(self.inner.call(request), extra))
            }
            Verdict::Reject(rejection) => ResponseFuture::new(Kind::rejected(
                rejection,
                ResponseForm::of(request.headers()),
            )),
            Verdict::Wait(wait) => {
                let inner = self.take_ready_inner();
                let deferred = Deferred::new(inner, request, key, &self.shared);
                ResponseFuture::new(Kind::waiting(wait, deferred))
            }
        }
    }
}

impl<S: Clone, E, St> RateLimit<S, E, St> {
    /// The service `poll_ready` readied, leaving a fresh clone in its place (the tower idiom for
    /// calling it later from a future).
    fn take_ready_inner(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(placement: Placement) -> Shared<()> {
        Shared {
            store: Arc::new(()),
            placement,
            enforce: true,
            max_wait: Duration::ZERO,
            on_missing_key: OnMissingKey::Reject,
            on_store_error: OnStoreError::Allow,
            errors: Arc::new(LogGate::new()),
            reads_block_list: None,
            policy: HeaderValue::from_static("\"client\";q=120;w=60"),
        }
    }

    #[test]
    fn header_values_are_split_off_shared_chunks_and_stay_intact() {
        let shared = shared(Placement::PerClient);
        let mut buf = HeaderBuf::default();
        // Enough answers to cross several chunks, all alive at once.
        let answers: Vec<RateHeaders> = (0..100)
            .map(|n| shared.headers(&mut buf, n, Duration::from_millis(1_500 * u64::from(n))))
            .collect();
        for (n, (policy, limit)) in answers.iter().enumerate() {
            assert_eq!(policy, "\"client\";q=120;w=60");
            let t = (1_500 * n as u64).div_ceil(1_000);
            assert_eq!(limit, format!("\"client\";r={n};t={t}").as_str());
        }
        assert!(
            buf.chunk.capacity() < HEADER_CHUNK,
            "the chunk in use is the service's"
        );
        // The longest value fits.
        let verified = self::shared(Placement::Verified);
        let (_, limit) = verified.headers(
            &mut HeaderBuf::default(),
            u32::MAX,
            Duration::from_secs(u64::MAX),
        );
        assert_eq!(limit, "\"verified\";r=4294967295;t=18446744073709551615");
        let (_, limit) = verified.headers(&mut buf, 0, Duration::ZERO);
        assert_eq!(limit, "\"verified\";r=0;t=0");
    }

    #[test]
    fn a_value_is_shared_while_r_and_t_repeat_and_written_anew_when_either_changes() {
        let shared = shared(Placement::PerClient);
        let mut buf = HeaderBuf::default();
        let at = |buf: &mut HeaderBuf, r, millis| {
            shared.headers(buf, r, Duration::from_millis(millis)).1
        };
        let first = at(&mut buf, 7, 1_500);
        // Same r, and t rounds up to the same 2 s: the very same bytes.
        let again = at(&mut buf, 7, 1_001);
        assert_eq!(again, "\"client\";r=7;t=2");
        assert_eq!(again.as_bytes().as_ptr(), first.as_bytes().as_ptr());
        // Either one changed: a value of its own, right.
        let other_r = at(&mut buf, 6, 1_500);
        assert_eq!(other_r, "\"client\";r=6;t=2");
        assert_ne!(other_r.as_bytes().as_ptr(), first.as_bytes().as_ptr());
        let other_t = at(&mut buf, 6, 2_001);
        assert_eq!(other_t, "\"client\";r=6;t=3");
        // Back to an earlier pair: only the last one is remembered, written anew and right.
        let earlier = at(&mut buf, 7, 1_500);
        assert_eq!(earlier, "\"client\";r=7;t=2");
        assert_ne!(earlier.as_bytes().as_ptr(), first.as_bytes().as_ptr());
        // Every value handed out is intact.
        assert_eq!(first, "\"client\";r=7;t=2");
        assert_eq!(other_t, "\"client\";r=6;t=3");
    }

    #[test]
    fn reset_is_whole_seconds_rounded_up_and_zero_only_when_full() {
        assert_eq!(reset_secs(Duration::ZERO), 0);
        assert_eq!(reset_secs(Duration::from_nanos(1)), 1);
        assert_eq!(reset_secs(Duration::from_millis(29_500)), 30);
    }
}
