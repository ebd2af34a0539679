//! Rate limiting.

mod clock;
mod failure;
mod future;
mod key;
mod layer;
mod rate;
mod service;
mod store;

pub use self::{
    clock::TokioClock,
    failure::{FailureLimit, FailureLimitLayer, FailurePolicy, FailureResponseFuture},
    future::ResponseFuture,
    key::{ClientIp, ForwardedHeader, GlobalKey, HeaderKey, KeyExtractor, MissingKey, PeerAddrFn},
    layer::{OnMissingKey, OnStoreError, RateLimitLayer, MAX_WAIT_FOR_TOKEN},
    rate::Rate,
    service::{RateLimit, RateLimitExceeded},
    store::{Check, Decision, MemoryStore, RateLimitStore, StoreError},
};
