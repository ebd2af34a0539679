//! [`TokioClock`]: limiter time that follows tokio's clock.

use governor::{clock::Clock, nanos::Nanos};

/// A governor clock reading tokio's time, so limiter state follows `tokio::time::pause` and
/// `advance` in tests, in step with the layer's bounded waits.
///
/// ```
/// use std::{num::NonZeroU32, time::Duration};
/// use hookgate::rate_limit::{MemoryStore, Rate, TokioClock};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let store = MemoryStore::with_clock(Rate::per_second(NonZeroU32::new(1).unwrap()), TokioClock::new());
/// assert!(store.decide(&"k").is_allowed());
/// assert!(!store.decide(&"k").is_allowed());
/// tokio::time::advance(Duration::from_secs(1)).await;
/// assert!(store.decide(&"k").is_allowed());
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock starting now. Call it inside a tokio runtime when time is paused.
    #[must_use]
    pub fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.origin.elapsed())
    }
}
