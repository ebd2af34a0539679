//! [`ResponseFuture`] of [`RateLimit`](super::RateLimit).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
    time::Duration,
};

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{
    service::{HeaderBuf, LookedUpBlock, Rejection, Shared, Verdict, RATELIMIT, RATELIMIT_POLICY},
    Check, Decision, RateLimitExceeded, RateLimitStore, StoreError,
};
use crate::{body::ProblemBody, problem::ResponseForm};

pin_project! {
    /// Response future of [`RateLimit`](super::RateLimit).
    ///
    /// `F` is the inner service's future and `SF` the store's (a decision taken later). While a
    /// decision is pending (a store across the network, a bounded wait for a token), the future
    /// holds the readied inner service `S`, the request (body `ReqBody`), its key `K` and the
    /// store `St`.
    pub struct ResponseFuture<F, SF, S, ReqBody, K, St> {
        #[pin]
        kind: Kind<F, SF, S, ReqBody, K, St>,
    }
}

impl<F, SF, S, ReqBody, K, St> ResponseFuture<F, SF, S, ReqBody, K, St> {
    pub(crate) fn new(kind: Kind<F, SF, S, ReqBody, K, St>) -> Self {
        Self { kind }
    }
}

impl<F, SF, S, ReqBody, K, St> fmt::Debug for ResponseFuture<F, SF, S, ReqBody, K, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Other { other } => match other {
                Other::Rejected { .. } => "rejected",
                Other::Checking { .. } => "checking",
                Other::Waiting { .. } => "waiting",
            },
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

pin_project! {
    #[project = KindProj]
    pub(crate) enum Kind<F, SF, S, ReqBody, K, St> {
        Inner {
            #[pin]
            future: F,
            extra: Extra,
        },
        // Every other state in one variant of its own type: the future is dropped after every
        // request, and with the other states' payloads dropped by a function of their own,
        // dropping this one is small enough to be inlined (a call otherwise).
        Other {
            #[pin]
            other: Other<SF, S, ReqBody, K, St>,
        },
    }
}

pin_project! {
    #[project = OtherProj]
    pub(crate) enum Other<SF, S, ReqBody, K, St> {
        // The paths other than `Inner` keep their payloads boxed: a refusal allocates its
        // problem body anyway and a deferred decision waits for a store or a timer, while
        // every allowed request moves this future around, at the size of its largest variant.
        Rejected {
            rejection: Option<Box<Rejection>>,
            form: ResponseForm,
        },
        Checking {
            #[pin]
            check: SF,
            deferred: Option<Box<Deferred<S, ReqBody, K, St>>>,
            may_wait: bool,
        },
        Waiting {
            sleep: Pin<Box<tokio::time::Sleep>>,
            deferred: Option<Box<Deferred<S, ReqBody, K, St>>>,
        },
    }
}

impl<F, SF, S, ReqBody, K, St> Kind<F, SF, S, ReqBody, K, St> {
    pub(crate) fn inner(future: F, extra: Extra) -> Self {
        Self::Inner { future, extra }
    }

    pub(crate) fn rejected(rejection: Box<Rejection>, form: ResponseForm) -> Self {
        Self::Other {
            other: Other::Rejected {
                rejection: Some(rejection),
                form,
            },
        }
    }

    pub(crate) fn checking(
        check: SF,
        deferred: Box<Deferred<S, ReqBody, K, St>>,
        may_wait: bool,
    ) -> Self {
        Self::Other {
            other: Other::Checking {
                check,
                deferred: Some(deferred),
                may_wait,
            },
        }
    }

    pub(crate) fn waiting(wait: Duration, deferred: Box<Deferred<S, ReqBody, K, St>>) -> Self {
        Self::Other {
            other: Other::Waiting {
                sleep: Box::pin(tokio::time::sleep(wait)),
                deferred: Some(deferred),
            },
        }
    }
}

/// What the layer adds to the inner service's answer: headers while enforcing, a
/// [`RateLimitExceeded`] in shadow mode, never both (in one field, so that what every allowed
/// request moves around stays small).
pub(crate) enum Extra {
    Nothing,
    /// `RateLimit-Policy` and `RateLimit` (enforcing).
    Headers(HeaderValue, HeaderValue),
    /// Over the rate in shadow mode.
    Exceeded(RateLimitExceeded),
}

/// A request whose decision is still to come: the readied inner service, the request, its key.
pub(crate) struct Deferred<S, ReqBody, K, St> {
    inner: S,
    request: Request<ReqBody>,
    key: K,
    shared: Arc<Shared<St>>,
}

impl<S, ReqBody, K, St> Deferred<S, ReqBody, K, St> {
    pub(crate) fn new(
        inner: S,
        request: Request<ReqBody>,
        key: K,
        shared: &Arc<Shared<St>>,
    ) -> Box<Self> {
        Box::new(Self {
            inner,
            request,
            key,
            shared: Arc::clone(shared),
        })
    }

    fn resume<F, SF>(
        self: Box<Self>,
        result: Result<Decision, StoreError>,
        may_wait: bool,
    ) -> Kind<F, SF, S, ReqBody, K, St>
    where
        S: Service<Request<ReqBody>, Future = F>,
        K: Clone + Send + Sync + 'static,
    {
        match self
            .shared
            .judge(result, may_wait, &mut HeaderBuf::default())
        {
            Verdict::Pass { extra, block } => {
                let Self {
                    mut inner,
                    mut request,
                    key,
                    ..
                } = *self;
                if let Extra::Exceeded(exceeded) = extra {
                    request.extensions_mut().insert(exceeded);
                }
                if let Some(lookup) = block {
                    request
                        .extensions_mut()
                        .insert(LookedUpBlock { lookup, key });
                }
                Kind::inner(inner.call(request), extra)
            }
            Verdict::Reject(rejection) => {
                Kind::rejected(rejection, ResponseForm::of(self.request.headers()))
            }
            Verdict::Wait(wait) => Kind::waiting(wait, self),
        }
    }

    /// After a wait: one more decision, without waiting again.
    fn retry<F, SF>(self: Box<Self>) -> Kind<F, SF, S, ReqBody, K, St>
    where
        S: Service<Request<ReqBody>, Future = F>,
        K: Clone + Send + Sync + 'static,
        St: RateLimitStore<K, CheckFuture = SF>,
    {
        match self.shared.store.check(&self.key) {
            Check::Ready(result) => self.resume(result, false),
            Check::Pending(check) => Kind::checking(check, self, false),
        }
    }
}

impl<F, SF, S, ReqBody, K, St, ResBody, Error> Future for ResponseFuture<F, SF, S, ReqBody, K, St>
where
    F: Future<Output = Result<Response<ResBody>, Error>>,
    SF: Future<Output = Result<Decision, StoreError>>,
    S: Service<Request<ReqBody>, Future = F>,
    St: RateLimitStore<K, CheckFuture = SF>,
    K: Clone + Send + Sync + 'static,
    ResBody: ProblemBody,
{
    type Output = Result<Response<ResBody>, Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        // The inner service's answer, the state of nearly every request, first: the rest of
        // the states out of line.
        match kind.as_mut().project() {
            KindProj::Inner { future, extra } => poll_inner(future, extra, cx),
            _ => poll_other(kind, cx),
        }
    }
}

/// Polls the inner service's future and adds `extra` to its answer.
#[inline(always)]
fn poll_inner<F, ResBody, Error>(
    future: Pin<&mut F>,
    extra: &mut Extra,
    cx: &mut Context<'_>,
) -> Poll<Result<Response<ResBody>, Error>>
where
    F: Future<Output = Result<Response<ResBody>, Error>>,
{
    if let Extra::Nothing = extra {
        // Nothing to add (shadow mode): the inner answer as it comes, written straight where
        // the caller wants it.
        return future.poll(cx);
    }
    // The answer is changed where it lies, never moved out and back: a response is over a
    // hundred bytes, moved by a `memcpy` call.
    let mut output = future.poll(cx);
    if let Poll::Ready(Ok(response)) = &mut output {
        match std::mem::replace(extra, Extra::Nothing) {
            Extra::Nothing => {}
            Extra::Headers(policy, limit) => {
                let map = response.headers_mut();
                map.insert(RATELIMIT_POLICY, policy);
                map.insert(RATELIMIT, limit);
            }
            Extra::Exceeded(exceeded) => {
                response.extensions_mut().insert(exceeded);
            }
        }
    }
    output
}

/// Polls the states other than the inner service's answer: a refusal, a decision to come.
#[inline(never)]
fn poll_other<F, SF, S, ReqBody, K, St, ResBody, Error>(
    mut kind: Pin<&mut Kind<F, SF, S, ReqBody, K, St>>,
    cx: &mut Context<'_>,
) -> Poll<Result<Response<ResBody>, Error>>
where
    F: Future<Output = Result<Response<ResBody>, Error>>,
    SF: Future<Output = Result<Decision, StoreError>>,
    S: Service<Request<ReqBody>, Future = F>,
    St: RateLimitStore<K, CheckFuture = SF>,
    K: Clone + Send + Sync + 'static,
    ResBody: ProblemBody,
{
    loop {
        let other = match kind.as_mut().project() {
            KindProj::Inner { future, extra } => return poll_inner(future, extra, cx),
            KindProj::Other { other } => other,
        };
        let next = match other.project() {
            OtherProj::Rejected { rejection, form } => {
                let rejection = rejection.take().expect("future polled after completion");
                return Poll::Ready(Ok(rejection.into_response(*form)));
            }
            OtherProj::Checking {
                check,
                deferred,
                may_wait,
            } => {
                let result = ready!(check.poll(cx));
                let deferred = deferred.take().expect("future polled after completion");
                deferred.resume(result, *may_wait)
            }
            OtherProj::Waiting { sleep, deferred } => {
                ready!(sleep.as_mut().poll(cx));
                let deferred = deferred.take().expect("future polled after completion");
                deferred.retry()
            }
        };
        kind.set(next);
    }
}
