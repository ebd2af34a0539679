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

/// Logs a store's failures at `warn`, at most once per interval with the number of failures
/// since the last line: a store down under a flood of requests must not become a flood of
/// log lines (every request would fail the same way).
#[derive(Debug)]
pub(crate) struct ErrorLog {
    /// Failures not yet logged.
    suppressed: std::sync::atomic::AtomicU64,
    /// When the last line was written, in milliseconds since `start` (0: never).
    last: std::sync::atomic::AtomicU64,
    start: std::time::Instant,
    interval: std::time::Duration,
}

impl ErrorLog {
    /// At most one line per `interval`.
    pub(crate) fn new(interval: std::time::Duration) -> Self {
        Self {
            suppressed: std::sync::atomic::AtomicU64::new(0),
            last: std::sync::atomic::AtomicU64::new(0),
            start: std::time::Instant::now(),
            interval,
        }
    }

    /// Counts one failure; returns how many failures the caller should log now (this one and
    /// those suppressed since the last line), or `None` while the interval runs.
    pub(crate) fn record(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        self.suppressed.fetch_add(1, Relaxed);
        // 1 ms past the start counts as "logged once", so that 0 keeps meaning never.
        let now = (self.start.elapsed().as_millis() as u64).max(1);
        let last = self.last.load(Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= self.interval.as_millis() as u64;
        if due
            && self
                .last
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            // Failures counted after the swap belong to the next line.
            Some(self.suppressed.swap(0, Relaxed).max(1))
        } else {
            None
        }
    }
}

impl Default for ErrorLog {
    /// One line per 10 s.
    fn default() -> Self {
        Self::new(std::time::Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_first_failure_is_logged_then_one_line_per_interval_counts_the_rest() {
        let log = ErrorLog::new(Duration::from_millis(50));
        assert_eq!(log.record(), Some(1));
        assert_eq!(log.record(), None);
        assert_eq!(log.record(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(log.record(), Some(3), "two suppressed and this one");
        assert_eq!(log.record(), None);
    }
}
