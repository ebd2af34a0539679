//! [`ResponseFuture`] of [`Deduplicate`](super::Deduplicate).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{service::Shared, Check, DedupeStore, EventKey, LeaseToken};
use crate::{body::ProblemBody, problem::ResponseForm, signature::VerifiedBody};

pin_project! {
    /// Response future of [`Deduplicate`](super::Deduplicate): a claim the store answers later
    /// (a shared store), the handler, then the settling of its claim (done or released), or
    /// the layer's own answer.
    ///
    /// Nothing is spawned: if this future is dropped while the handler runs (the client went
    /// away), the claim is neither marked done nor released, and simply expires with its
    /// lease; a redelivery after that is handled.
    pub struct ResponseFuture<S, St>
    where
        S: Service<Request<VerifiedBody>>,
        St: DedupeStore,
    {
        #[pin]
        state: State<S, St>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, St>
    where
        S: Service<Request<VerifiedBody>>,
        St: DedupeStore,
    {
        Claiming {
            #[pin]
            claim: St::ClaimFuture,
            call: Option<Call<S, St>>,
        },
        Handling {
            #[pin]
            future: S::Future,
            held: Option<Held<St>>,
        },
        Settling {
            #[pin]
            settle: St::SettleFuture,
            handled: Option<Handled<S, St>>,
        },
        Answered {
            response: Option<S::Response>,
        },
    }
}

/// A claim held by one delivery: what settling it takes.
pub(crate) struct Held<St> {
    shared: Arc<Shared<St>>,
    key: EventKey,
    token: LeaseToken,
}

impl<St> Held<St> {
    pub(crate) fn new(shared: &Arc<Shared<St>>, key: EventKey, token: LeaseToken) -> Self {
        Self {
            shared: Arc::clone(shared),
            key,
            token,
        }
    }
}

/// A call waiting for the store's claim: the readied inner service and the request.
struct Call<S, St> {
    inner: S,
    request: Request<VerifiedBody>,
    held: Held<St>,
    form: ResponseForm,
}

/// The handler's output, waiting for its claim to be settled.
struct Handled<S: Service<Request<VerifiedBody>>, St> {
    output: Result<S::Response, S::Error>,
    held: Held<St>,
    completing: bool,
}

impl<S, St> ResponseFuture<S, St>
where
    S: Service<Request<VerifiedBody>>,
    St: DedupeStore,
{
    pub(crate) fn answered(response: S::Response) -> Self {
        Self {
            state: State::Answered {
                response: Some(response),
            },
        }
    }

    pub(crate) fn handling(future: S::Future, held: Held<St>) -> Self {
        Self {
            state: State::Handling {
                future,
                held: Some(held),
            },
        }
    }

    pub(crate) fn claiming(
        claim: St::ClaimFuture,
        inner: S,
        request: Request<VerifiedBody>,
        held: Held<St>,
        form: ResponseForm,
    ) -> Self {
        Self {
            state: State::Claiming {
                claim,
                call: Some(Call {
                    inner,
                    request,
                    held,
                    form,
                }),
            },
        }
    }
}

impl<S, St> fmt::Debug for ResponseFuture<S, St>
where
    S: Service<Request<VerifiedBody>>,
    St: DedupeStore,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Claiming { .. } => "claiming",
            State::Handling { .. } => "handling",
            State::Settling { .. } => "settling",
            State::Answered { .. } => "answered",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

const POLLED_AFTER_COMPLETION: &str = "hookgate dedupe ResponseFuture polled after completion";

impl<S, St, B> Future for ResponseFuture<S, St>
where
    S: Service<Request<VerifiedBody>, Response = Response<B>>,
    St: DedupeStore,
    B: ProblemBody,
{
    type Output = Result<Response<B>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let next = match state.as_mut().project() {
                StateProj::Claiming { claim, call } => {
                    let result = ready!(claim.poll(cx));
                    let Call {
                        mut inner,
                        request,
                        held,
                        form,
                    } = call.take().expect(POLLED_AFTER_COMPLETION);
                    if let Some(answer) = held.shared.on_claim(result, &held.key, form) {
                        return Poll::Ready(Ok(answer));
                    }
                    State::Handling {
                        future: inner.call(request),
                        held: Some(held),
                    }
                }
                StateProj::Handling { future, held } => {
                    let output = ready!(future.poll(cx));
                    let held = held.take().expect(POLLED_AFTER_COMPLETION);
                    let completing =
                        matches!(&output, Ok(response) if response.status().is_success());
                    match held.shared.settle(&held.key, held.token, completing) {
                        Check::Ready(result) => {
                            let Held { shared, key, .. } = held;
                            return Poll::Ready(shared.settled(output, result, completing, key));
                        }
                        Check::Pending(settle) => State::Settling {
                            settle,
                            handled: Some(Handled {
                                output,
                                held,
                                completing,
                            }),
                        },
                    }
                }
                StateProj::Settling { settle, handled } => {
                    let result = ready!(settle.poll(cx));
                    let Handled {
                        output,
                        held: Held { shared, key, .. },
                        completing,
                    } = handled.take().expect(POLLED_AFTER_COMPLETION);
                    return Poll::Ready(shared.settled(output, result, completing, key));
                }
                StateProj::Answered { response } => {
                    return Poll::Ready(Ok(response.take().expect(POLLED_AFTER_COMPLETION)));
                }
            };
            state.set(next);
        }
    }
}
