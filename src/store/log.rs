//! [`LogGate`]: at most one log line per period for a failure that can repeat on every
//! request (a store that is down), with a count of the lines left out. Shared by the layers
//! whose stores can fail: the rate limiter, the failure limiter, deduplication.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::time::Instant;

/// The least time between two lines of one kind.
pub(crate) const LOG_PERIOD: Duration = Duration::from_secs(10);

/// Lets one line through per [`LOG_PERIOD`], and counts the others.
#[derive(Debug)]
pub(crate) struct LogGate {
    origin: Instant,
    /// When the last line went out, in nanoseconds since `origin`, plus one; 0: never.
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl LogGate {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines left out since the last one)` when a line may go out now.
    pub(crate) fn admit(&self) -> Option<u64> {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.admit_at(now.saturating_add(1))
    }

    /// [`admit`](Self::admit) at `now` (nanoseconds since the origin, plus one).
    fn admit_at(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= LOG_PERIOD.as_nanos() as u64;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn one_line_per_period_with_the_count_left_out() {
        let gate = LogGate::new();
        assert_eq!(gate.admit_at(1), Some(0), "the first line goes out");
        assert_eq!(gate.admit_at(2), None);
        assert_eq!(gate.admit_at(10 * SEC), None, "just under the period");
        assert_eq!(gate.admit_at(10 * SEC + 1), Some(2), "two left out");
        assert_eq!(gate.admit_at(10 * SEC + 2), None);
        assert_eq!(gate.admit_at(30 * SEC), Some(1));
        assert_eq!(gate.admit_at(30 * SEC), None);
    }

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time() {
        let gate = LogGate::new();
        assert_eq!(gate.admit(), Some(0));
        assert_eq!(gate.admit(), None);
        tokio::time::advance(LOG_PERIOD - Duration::from_millis(1)).await;
        assert_eq!(gate.admit(), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(gate.admit(), Some(2));
    }
}
