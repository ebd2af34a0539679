//! [`NormalizeStatus`], the service: catches what the inner service does in `poll_ready` and
//! `call` (errors, panics) and hands the rest to its [`ResponseFuture`].

use std::{
    convert::Infallible,
    fmt,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{
    cause::NormalizeCause, contract::SenderContract, future::ResponseFuture, layer::Settings,
    BoxError, NormalizeStatusLayer,
};
use crate::{body::ProblemBody, problem::ResponseForm};

/// The service of [`NormalizeStatusLayer`]: see the [module docs](super).
pub struct NormalizeStatus<S> {
    inner: S,
    settings: Arc<Settings>,
    /// A failure of the inner `poll_ready`, answered by the next `call`.
    not_ready: Option<NormalizeCause>,
}

impl<S> NormalizeStatus<S> {
    /// Wraps `inner` with `contract`; see [`NormalizeStatusLayer::new`].
    pub fn new(inner: S, contract: SenderContract) -> Self {
        NormalizeStatusLayer::new(contract).layer(inner)
    }

    /// A [`NormalizeStatusLayer`] applying `contract`.
    pub fn layer(contract: SenderContract) -> NormalizeStatusLayer {
        NormalizeStatusLayer::new(contract)
    }

    /// Wraps `inner` with a layer's settings.
    pub(super) fn with_settings(inner: S, settings: Arc<Settings>) -> Self {
        Self {
            inner,
            settings,
            not_ready: None,
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

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for NormalizeStatus<S> {
    /// A clone is a fresh service: a pending `poll_ready` failure stays with the original.
    fn clone(&self) -> Self {
        Self::with_settings(self.inner.clone(), Arc::clone(&self.settings))
    }
}

impl<S: fmt::Debug> fmt::Debug for NormalizeStatus<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NormalizeStatus")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .field("not_ready", &self.not_ready)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for NormalizeStatus<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: ProblemBody,
{
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.not_ready.is_some() {
            return Poll::Ready(Ok(()));
        }
        // A failing `poll_ready` does not kill the connection: the layer reports itself ready
        // and answers the next request from the failure, without calling the inner service.
        match catch_unwind(AssertUnwindSafe(|| self.inner.poll_ready(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(Ok(()))) => Poll::Ready(Ok(())),
            Ok(Poll::Ready(Err(error))) => {
                self.not_ready = Some(NormalizeCause::of_error(&error.into(), "poll_ready"));
                Poll::Ready(Ok(()))
            }
            Err(payload) => {
                self.not_ready = Some(NormalizeCause::of_panic(payload, "poll_ready"));
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let form = ResponseForm::of(request.headers());
        let settings = Arc::clone(&self.settings);
        if let Some(cause) = self.not_ready.take() {
            return ResponseFuture::failed(cause, settings, form);
        }
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => ResponseFuture::inner(future, settings, form),
            Err(payload) => {
                let cause = NormalizeCause::of_panic(payload, "call");
                ResponseFuture::failed(cause, settings, form)
            }
        }
    }
}
