//! Where limiter state lives: the [`RateLimitStore`] trait, and the in-memory [`MemoryStore`]
//! in [`memory`].

mod memory;

use std::{borrow::Cow, error::Error, fmt, future::Future, time::Duration};

pub use self::memory::MemoryStore;
use super::Rate;

/// The answer of a store for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    remaining: u32,
    reset: Duration,
    overflow: bool,
}

impl Decision {
    /// The request may pass; `remaining` more could pass right now, and the key is back to its
    /// full burst after `reset`.
    #[must_use]
    pub const fn allowed(remaining: u32, reset: Duration) -> Self {
        Self {
            allowed: true,
            remaining,
            reset,
            overflow: false,
        }
    }

    /// The request is over the rate; the next one may pass after `retry_after`.
    #[must_use]
    pub const fn denied(retry_after: Duration) -> Self {
        Self {
            allowed: false,
            remaining: 0,
            reset: retry_after,
            overflow: false,
        }
    }

    /// Marks a decision taken on the shared overflow bucket (the store was full).
    #[must_use]
    pub const fn in_overflow(mut self) -> Self {
        self.overflow = true;
        self
    }

    /// Whether the request may pass.
    #[must_use]
    pub const fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// How many more requests the key could make right now.
    #[must_use]
    pub const fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Allowed: when the key is back to its full burst. Denied: when the next request may pass.
    #[must_use]
    pub const fn reset(&self) -> Duration {
        self.reset
    }

    /// Whether the decision was taken on the overflow bucket shared by keys that arrived while
    /// the store was full.
    #[must_use]
    pub const fn is_overflow(&self) -> bool {
        self.overflow
    }
}

/// A store could not decide (e.g. a shared store is unreachable).
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
#[derive(Debug)]
pub enum Check<F> {
    /// The decision, taken synchronously; the layer then needs no future of its own.
    Ready(Result<Decision, StoreError>),
    /// A decision to wait for.
    Pending(F),
}

/// Holds the rate-limiting state of every key: in memory ([`MemoryStore`], the default) or in a
/// store shared by several instances.
///
/// `check` counts one request against `key` and decides. A store that answers at once returns
/// [`Check::Ready`]; one that must wait returns its own future type in [`Check::Pending`], so
/// no future is boxed per request.
pub trait RateLimitStore<K> {
    /// The future of a decision the store cannot take synchronously.
    type Future: Future<Output = Result<Decision, StoreError>>;

    /// Counts one request against `key`.
    fn check(&self, key: &K) -> Check<Self::Future>;

    /// The rate this store enforces (for the `RateLimit-Policy` header).
    fn rate(&self) -> Rate;
}
