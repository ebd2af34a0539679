//! [`ResponseFuture`], the future of every hookgate layer that decides before calling the
//! inner service: the inner service's own future, or the layer's answer, ready at once. Layers
//! of your own built on [`Problem`](crate::problem::Problem) can use it too.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::Response;
use pin_project_lite::pin_project;

pin_project! {
    /// Response future of the layers that either pass a request on or answer it themselves
    /// (the client checks, the failure limiter while a client is blocked): the inner
    /// service's future, untouched, or the layer's own response.
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] future: F },
        Answered { response: Option<Response<B>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    /// The inner service's future.
    pub fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    /// The layer's own answer.
    pub fn answered(response: Response<B>) -> Self {
        Self {
            kind: Kind::Answered {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Answered { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled again after completion: the contract of `Future` allows anything but
                // undefined behaviour; an honest panic names the caller's bug.
                None => panic!("hookgate ResponseFuture polled after completion"),
            },
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Answered { .. } => "answered",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
