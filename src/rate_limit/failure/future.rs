//! [`FailureResponseFuture`]: the future of [`FailureLimit`](super::FailureLimit).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
    time::Duration,
};

use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{Shared, FAILED_VERIFICATION, POLICY};
use crate::{
    body::ProblemBody,
    problem::{Problem, ProblemCode, ResponseForm},
    rate_limit::{
        service::Rejection, Check, OnStoreError, RateLimitExceeded, RateLimitStore, StoreError,
    },
};

pin_project! {
    /// Response future of [`FailureLimit`](super::FailureLimit).
    ///
    /// `F` is the inner service's future and `B` its response body; `SF` the store's future (a
    /// block looked up, a failure recorded). While the store looks up whether a client is
    /// blocked, the future holds the readied inner service `S`, the request (body `ReqBody`),
    /// its key `K` and the store `St`.
    pub struct FailureResponseFuture<F, B, SF, S, ReqBody, K, St> {
        #[pin]
        kind: Kind<F, B, SF, S, ReqBody, K, St>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, SF, S, ReqBody, K, St> {
        // The store is looking up whether the client is blocked.
        Checking {
            #[pin]
            check: SF,
            deferred: Option<Deferred<S, ReqBody, K, St>>,
        },
        // The inner service is answering; a failed verification is then counted.
        Inner {
            #[pin]
            future: F,
            track: Option<Tracked<K, St>>,
            exceeded: Option<RateLimitExceeded>,
        },
        // The store is counting a failure; the answer waits for it.
        Recording {
            #[pin]
            record: SF,
            response: Option<Response<B>>,
            shared: Arc<Shared<St>>,
        },
        // The client is blocked: the layer's own answer.
        Blocked {
            rejection: Option<Rejection>,
            form: ResponseForm,
        },
    }
}

/// A request whose client the store has still to look up: the readied inner service, the
/// request, its key.
pub(super) struct Deferred<S, ReqBody, K, St> {
    inner: S,
    request: Request<ReqBody>,
    key: K,
    shared: Arc<Shared<St>>,
}

impl<S, ReqBody, K, St> Deferred<S, ReqBody, K, St> {
    pub(super) fn new(
        inner: S,
        request: Request<ReqBody>,
        key: K,
        shared: &Arc<Shared<St>>,
    ) -> Self {
        Self {
            inner,
            request,
            key,
            shared: Arc::clone(shared),
        }
    }
}

/// The client whose answer is watched for a failed verification.
struct Tracked<K, St> {
    shared: Arc<Shared<St>>,
    key: K,
}

impl<F, B, SF, S, ReqBody, K, St> FailureResponseFuture<F, B, SF, S, ReqBody, K, St> {
    /// The inner service's answer, nothing counted (a known sender, an unidentified client).
    pub(super) fn untracked(future: F) -> Self {
        Self {
            kind: Kind::Inner {
                future,
                track: None,
                exceeded: None,
            },
        }
    }

    /// Waits for the store to say whether the client is blocked.
    pub(super) fn checking(check: SF, deferred: Deferred<S, ReqBody, K, St>) -> Self {
        Self {
            kind: Kind::Checking {
                check,
                deferred: Some(deferred),
            },
        }
    }

    /// Answers a blocked client, or calls the inner service and watches its answer.
    pub(super) fn admit(
        inner: &mut S,
        request: Request<ReqBody>,
        key: K,
        shared: &Arc<Shared<St>>,
        blocked: Result<Option<Duration>, StoreError>,
    ) -> Self
    where
        S: Service<Request<ReqBody>, Future = F>,
    {
        Self {
            kind: Kind::admit(inner, request, key, shared, blocked),
        }
    }
}

impl<F, B, SF, S, ReqBody, K, St> Kind<F, B, SF, S, ReqBody, K, St> {
    fn admit(
        inner: &mut S,
        mut request: Request<ReqBody>,
        key: K,
        shared: &Arc<Shared<St>>,
        blocked: Result<Option<Duration>, StoreError>,
    ) -> Self
    where
        S: Service<Request<ReqBody>, Future = F>,
    {
        let mut exceeded = None;
        match blocked {
            Ok(Some(remaining)) if shared.enforce => {
                return Self::Blocked {
                    rejection: Some(blocked_rejection(remaining)),
                    form: ResponseForm::of(request.headers()),
                };
            }
            Ok(Some(remaining)) => {
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
            Ok(None) => {}
            Err(error) => {
                let fail_closed = shared.on_store_error == OnStoreError::Reject;
                if let Some(suppressed) = shared.errors.admit() {
                    tracing::warn!(
                        target: "hookgate::rate_limit",
                        policy = POLICY,
                        %error,
                        suppressed,
                        fail_closed,
                        "failure limit store failed: blocks are not looked up while it fails"
                    );
                }
                if fail_closed {
                    return Self::Blocked {
                        rejection: Some(store_unavailable()),
                        form: ResponseForm::of(request.headers()),
                    };
                }
            }
        }
        Self::Inner {
            future: inner.call(request),
            track: Some(Tracked {
                shared: Arc::clone(shared),
                key,
            }),
            exceeded,
        }
    }
}

/// The answer to a blocked client: `429` `client_blocked`, `Retry-After` the block's remainder.
fn blocked_rejection(remaining: Duration) -> Rejection {
    Rejection {
        problem: Problem::new(StatusCode::TOO_MANY_REQUESTS, ProblemCode::CLIENT_BLOCKED)
            .with_detail(
                "too many failed verifications from this client; retry after the indicated delay",
            )
            .with_retry_after(remaining),
        headers: None,
        exceeded: Some(RateLimitExceeded {
            policy: POLICY,
            retry_after: remaining,
            enforced: true,
        }),
    }
}

/// The answer when the store cannot say whether a client is blocked and the policy is to fail
/// closed: our own trouble, so retryable.
fn store_unavailable() -> Rejection {
    Rejection {
        problem: Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ProblemCode::LIMITER_UNAVAILABLE,
        )
        .with_detail("the failure limiter's store is unavailable; retry later")
        .with_retry_after(Duration::from_secs(1)),
        headers: None,
        exceeded: None,
    }
}

/// Logs what counting a failure came to.
fn recorded<St>(result: Result<Option<Duration>, StoreError>, shared: &Shared<St>) {
    let enforce = shared.enforce;
    match result {
        Ok(Some(blocked_for)) => tracing::debug!(
            target: "hookgate::rate_limit",
            policy = POLICY,
            cooldown_ms = blocked_for.as_millis() as u64,
            enforced = enforce,
            "client blocked after repeated verification failures"
        ),
        Ok(None) => {}
        Err(error) => {
            if let Some(suppressed) = shared.errors.admit() {
                tracing::warn!(
                    target: "hookgate::rate_limit",
                    policy = POLICY,
                    %error,
                    suppressed,
                    "failure limit store failed: failed verifications go uncounted while it fails"
                );
            }
        }
    }
}

impl<F, B, SF, S, ReqBody, K, St, Error> Future
    for FailureResponseFuture<F, B, SF, S, ReqBody, K, St>
where
    F: Future<Output = Result<Response<B>, Error>>,
    SF: Future<Output = Result<Option<Duration>, StoreError>>,
    S: Service<Request<ReqBody>, Future = F>,
    St: RateLimitStore<K, BlockFuture = SF>,
    B: ProblemBody,
{
    type Output = Result<Response<B>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            let next = match kind.as_mut().project() {
                KindProj::Checking { check, deferred } => {
                    let blocked = ready!(check.poll(cx));
                    let Deferred {
                        mut inner,
                        request,
                        key,
                        shared,
                    } = deferred.take().expect("future polled after completion");
                    Kind::admit(&mut inner, request, key, &shared, blocked)
                }
                KindProj::Inner {
                    future,
                    track,
                    exceeded,
                } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(exceeded) = exceeded.take() {
                        response.extensions_mut().insert(exceeded);
                    }
                    let failed = response
                        .extensions()
                        .get::<ProblemCode>()
                        .is_some_and(|code| FAILED_VERIFICATION.contains(code));
                    let Some(Tracked { shared, key }) = track.take().filter(|_| failed) else {
                        return Poll::Ready(Ok(response));
                    };
                    match shared.store.record_failure(&key, shared.cooldown) {
                        Check::Ready(result) => {
                            recorded(result, &shared);
                            return Poll::Ready(Ok(response));
                        }
                        Check::Pending(record) => Kind::Recording {
                            record,
                            response: Some(response),
                            shared,
                        },
                    }
                }
                KindProj::Recording {
                    record,
                    response,
                    shared,
                } => {
                    recorded(ready!(record.poll(cx)), shared);
                    let response = response.take().expect("future polled after completion");
                    return Poll::Ready(Ok(response));
                }
                KindProj::Blocked { rejection, form } => {
                    let rejection = rejection.take().expect("future polled after completion");
                    return Poll::Ready(Ok(rejection.into_response(*form)));
                }
            };
            kind.set(next);
        }
    }
}

impl<F, B, SF, S, ReqBody, K, St> fmt::Debug
    for FailureResponseFuture<F, B, SF, S, ReqBody, K, St>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Checking { .. } => "checking",
            Kind::Inner { .. } => "inner",
            Kind::Recording { .. } => "recording",
            Kind::Blocked { .. } => "blocked",
        };
        f.debug_struct("FailureResponseFuture")
            .field("state", &state)
            .finish()
    }
}
