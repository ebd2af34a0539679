use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use bytes::Buf;
use http::{request::Parts, HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::{
    body::Frames,
    budget::BudgetPermit,
    layer::Limits,
    service::{budget_exhausted, too_large},
    VerifiedBody,
};
use crate::{
    body::ProblemBody,
    problem::{Problem, ProblemCode, ResponseForm},
    scheme::Verifier,
};

pin_project! {
    /// Response future of [`VerifySignature`](super::VerifySignature): reads and verifies the
    /// body, then calls the inner service.
    pub struct ResponseFuture<S, F, V, B> {
        #[pin]
        state: State<S, F, V, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F, V, B> {
        Reading {
            #[pin]
            body: B,
            read: Option<Read<S, V>>,
            // Only armed once the body makes us wait: a body that is already complete never
            // touches the timer.
            deadline: Option<Pin<Box<Sleep>>>,
        },
        Calling {
            #[pin]
            future: F,
        },
        Rejected {
            problem: Option<Problem>,
            form: ResponseForm,
        },
    }
}

/// Everything a body read needs besides the body itself.
struct Read<S, V> {
    parts: Parts,
    inner: S,
    verifier: V,
    frames: Frames,
    received: usize,
    // The length the body declares (`Content-Length`, as its size hint): only to size the
    // list of frames, never trusted for anything else.
    declared: u64,
    // Boxed: rare, and the future is moved whole at every state change.
    trailers: Option<Box<HeaderMap>>,
    permit: BudgetPermit,
    limits: Limits,
}

impl<S, F, V, B> ResponseFuture<S, F, V, B> {
    pub(super) fn rejected(problem: Problem, form: ResponseForm) -> Self {
        log_rejection(&problem);
        Self {
            state: State::Rejected {
                problem: Some(problem),
                form,
            },
        }
    }

    pub(super) fn reading(
        request: Request<B>,
        declared: u64,
        inner: S,
        verifier: V,
        permit: BudgetPermit,
        limits: Limits,
    ) -> Self {
        let (parts, body) = request.into_parts();
        Self {
            state: State::Reading {
                body,
                read: Some(Read {
                    parts,
                    inner,
                    verifier,
                    frames: Frames::default(),
                    received: 0,
                    declared,
                    trailers: None,
                    permit,
                    limits,
                }),
                deadline: None,
            },
        }
    }
}

impl<S, V, B, ResBody> Future for ResponseFuture<S, S::Future, V, B>
where
    S: Service<Request<VerifiedBody>, Response = Response<ResBody>>,
    V: Verifier,
    B: Body,
    B::Data: Buf,
    B::Error: std::fmt::Display,
    ResBody: ProblemBody,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Reading {
                    body,
                    read,
                    deadline,
                } => {
                    let state = read
                        .as_mut()
                        .expect("ResponseFuture polled after completion");
                    let outcome = ready!(poll_body(body, state, deadline, cx));
                    let read = read.take().expect("checked above");
                    let next = match read.verify(outcome) {
                        Ok((mut inner, request)) => State::Calling {
                            future: inner.call(request),
                        },
                        Err((problem, form)) => {
                            log_rejection(&problem);
                            State::Rejected {
                                problem: Some(problem),
                                form,
                            }
                        }
                    };
                    this.state.set(next);
                }
                StateProj::Calling { future } => {
                    return future.poll(cx);
                }
                StateProj::Rejected { problem, form } => {
                    let problem = problem
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(problem.into_response_for(*form)));
                }
            }
        }
    }
}

impl<S, V: Verifier> Read<S, V> {
    /// After the body read ended with `outcome`, finishes the MAC; on success, the request the
    /// inner service gets, otherwise the rejection and its form (gRPC or HTTP, decided only
    /// now, from the request's own headers: the success path never looks).
    fn verify(
        mut self,
        outcome: Result<(), Problem>,
    ) -> Result<(S, Request<VerifiedBody>), (Problem, ResponseForm)> {
        let verified = outcome.and_then(|()| self.verifier.finish().map_err(|e| e.to_problem()));
        let verified = match verified {
            Ok(verified) => verified,
            Err(problem) => return Err((problem, ResponseForm::of(&self.parts.headers))),
        };
        self.parts.extensions.insert(verified);
        let trailers = self.trailers.map(|trailers| *trailers);
        let body = VerifiedBody::new(self.frames, self.received, trailers, self.permit);
        Ok((self.inner, Request::from_parts(self.parts, body)))
    }
}

/// Reads the body to its end, feeding the MAC frame by frame as it arrives.
fn poll_body<S, V, B>(
    mut body: Pin<&mut B>,
    read: &mut Read<S, V>,
    deadline: &mut Option<Pin<Box<Sleep>>>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Problem>>
where
    V: Verifier,
    B: Body,
    B::Data: Buf,
    B::Error: std::fmt::Display,
{
    loop {
        match body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    // Zero-copy when the data is already `Bytes`, as with hyper, axum and tonic.
                    let chunk = data.copy_to_bytes(data.remaining());
                    read.received += chunk.len();
                    if read.received > read.limits.max_body_size {
                        return Poll::Ready(Err(too_large(read.limits.max_body_size)));
                    }
                    if !read.permit.cover(read.received) {
                        return Poll::Ready(Err(budget_exhausted()));
                    }
                    read.verifier.update(&chunk);
                    read.frames.push_expecting(chunk, read.declared);
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        read.trailers
                            .get_or_insert_with(Box::default)
                            .extend(trailers);
                    }
                }
            },
            Poll::Ready(Some(Err(error))) => {
                tracing::debug!(%error, "webhook body could not be read");
                return Poll::Ready(Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    ProblemCode::BODY_UNREADABLE,
                )
                .with_detail("the request body ended abnormally")));
            }
            Poll::Ready(None) => return Poll::Ready(Ok(())),
            Poll::Pending => {
                // The deadline counts from the first wait: the body was first polled right after
                // the call, so this is the request's start to within microseconds, and a body
                // that is already complete never reads the clock.
                let sleep = deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(read.limits.body_timeout)));
                ready!(sleep.as_mut().poll(cx));
                return Poll::Ready(Err(Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    ProblemCode::BODY_TIMEOUT,
                )
                .with_detail(format!(
                    "the body did not arrive within {} ms",
                    read.limits.body_timeout.as_millis()
                ))));
            }
        }
    }
}

fn log_rejection(problem: &Problem) {
    tracing::debug!(
        status = problem.status().as_u16(),
        code = problem.code().as_str(),
        detail = problem.detail().unwrap_or_default(),
        "webhook rejected"
    );
}
