//! What every store of hookgate's layers shares: a [`Check`], the answer of one decision (at
//! once, or a future to wait for), and a [`StoreError`] when a store cannot decide.
//!
//! Two kinds of state live in stores: the limiters' (per-client rates, failure counts and
//! blocks: [`RateLimitStore`](crate::rate_limit::RateLimitStore)) and deduplication's (claims
//! and done marks: [`DedupeStore`](crate::dedupe::DedupeStore)). Each trait has an in-memory
//! store (bounded, expiring its keys by itself: the default) and, with the `redis` feature, a
//! store on a Redis or Valkey server shared by several instances (`store::redis`). Every method
//! of either trait takes **one decision for one key**, designed to be one round trip to a
//! shared server.

use std::{borrow::Cow, error::Error, fmt};

mod log;

pub(crate) use self::log::LogGate;

#[cfg(feature = "redis")]
pub mod redis;

/// A store could not decide (e.g. a shared store is unreachable or too slow).
///
/// What a layer does then is its documented failure policy: the rate limiter fails open or
/// closed ([`OnStoreError`](crate::rate_limit::OnStoreError)), deduplication answers a
/// retryable `503`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError {
    message: Cow<'static, str>,
}

impl StoreError {
    /// An error with a message for logs (never sent to the client).
    #[must_use]
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for StoreError {}

/// A store's answer: at once (in-memory stores), or later (a store across the network).
///
/// `T` is what the store answers, e.g. a rate limiter's
/// [`Decision`](crate::rate_limit::Decision) or a deduplication
/// [`Claim`](crate::dedupe::Claim). A layer polls a pending answer inside its own response
/// future, so nothing is boxed or spawned per request by the layer.
#[derive(Debug)]
pub enum Check<F, T> {
    /// The answer, taken synchronously; the layer then needs no future of its own.
    Ready(Result<T, StoreError>),
    /// An answer to wait for.
    Pending(F),
}
