//! [`FailureLimit`]: the service made by [`FailureLimitLayer`](super::FailureLimitLayer).

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

use super::{
    future::{Deferred, FailureResponseFuture},
    Shared,
};
use crate::{
    body::ProblemBody,
    rate_limit::{service::LookedUpBlock, Check, KeyExtractor, RateLimitStore, StoreError},
};

/// The service made by [`FailureLimitLayer`](super::FailureLimitLayer).
pub struct FailureLimit<S, E, St> {
    inner: S,
    extractor: Arc<E>,
    shared: Arc<Shared<St>>,
}

impl<S, E, St> FailureLimit<S, E, St> {
    pub(super) fn new(inner: S, extractor: Arc<E>, shared: Arc<Shared<St>>) -> Self {
        Self {
            inner,
            extractor,
            shared,
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

impl<S: Clone, E, St> Clone for FailureLimit<S, E, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            extractor: Arc::clone(&self.extractor),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, E: fmt::Debug, St: fmt::Debug> fmt::Debug for FailureLimit<S, E, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureLimit")
            .field("inner", &self.inner)
            .field("extractor", &self.extractor)
            .field("store", &self.shared.store)
            .finish_non_exhaustive()
    }
}

impl<S, E, St, ReqBody, ResBody> Service<Request<ReqBody>> for FailureLimit<S, E, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    E: KeyExtractor,
    St: RateLimitStore<E::Key>,
    ResBody: ProblemBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future =
        FailureResponseFuture<S::Future, ResBody, St::BlockFuture, S, ReqBody, E::Key, St>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let key = match self.extractor.extract(&request) {
            Ok(key) if !self.extractor.is_known_sender(&key) => key,
            // Known senders and unidentified requests are neither counted nor blocked.
            _ => return FailureResponseFuture::untracked(self.inner.call(request)),
        };
        // A per-client limiter in front may have looked the block up already, in its own
        // decision on the same store (one round trip instead of two).
        let looked_up = self.shared.store.block_list().and_then(|list| {
            let block = request.extensions().get::<LookedUpBlock<E::Key>>()?;
            (block.lookup.list == list && block.key == key).then_some(if block.lookup.failed {
                Err(StoreError::new(
                    "the store failed the per-client limiter's decision, which looks up blocks",
                ))
            } else {
                Ok(block.lookup.blocked)
            })
        });
        if let Some(blocked) = looked_up {
            return FailureResponseFuture::admit(
                &mut self.inner,
                request,
                key,
                &self.shared,
                blocked,
            );
        }
        match self.shared.store.blocked(&key) {
            Check::Ready(blocked) => {
                FailureResponseFuture::admit(&mut self.inner, request, key, &self.shared, blocked)
            }
            Check::Pending(check) => {
                // The tower idiom for calling the readied service later, from the future.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                FailureResponseFuture::checking(
                    check,
                    Deferred::new(inner, request, key, &self.shared),
                )
            }
        }
    }
}
