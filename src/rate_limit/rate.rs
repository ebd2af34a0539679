//! [`Rate`]: how many requests per period a key may make, and how many at once.

use std::{fmt, num::NonZeroU32, time::Duration};

use crate::ConfigError;

/// The finest rate a limiter counts: one request per nanosecond.
const MAX_PER_SECOND: u32 = 1_000_000_000;

/// The longest span a limiter tracks, in nanoseconds (about 292 years): the time to refill a
/// whole burst must fit, with room for the clock's own reading, in 64 bits of nanoseconds.
const MAX_SPAN_NANOS: u64 = u64::MAX / 2;

/// How many requests a key may make per period, and how many it may make at once (the burst).
///
/// The unit is always in the name: [`Rate::per_second(n)`](Rate::per_second) means **n requests
/// every second**, [`Rate::per_minute(n)`](Rate::per_minute) means n requests every minute. (Not
/// "one request every n seconds", the trap some rate-limiting crates set.)
///
/// Requests are spread evenly over the period (GCRA, the algorithm of [governor]):
/// `per_minute(60)` refills one request every second. The burst, the number of requests a fresh
/// key may make at once, is the count unless [`burst`](Rate::burst) sets it. Over any span of
/// `D` seconds a key is granted at most `burst + rate * D` requests.
///
/// **A `Rate` is valid once built**: every constructor either checks its values (a zero count or
/// period from configuration is refused by [`Rate::new`]) or takes types that cannot be wrong,
/// so building a limiter or a store from a `Rate` cannot fail.
///
/// ```
/// use std::{num::NonZeroU32, time::Duration};
/// use hookgate::rate_limit::Rate;
///
/// let ten_per_second = Rate::per_second(NonZeroU32::new(10).unwrap());
/// assert_eq!(ten_per_second.replenish_interval(), Duration::from_millis(100));
/// assert_eq!(ten_per_second.burst_size().get(), 10);
///
/// let steady = Rate::per_minute(NonZeroU32::new(120).unwrap()).burst(NonZeroU32::new(5).unwrap());
/// assert_eq!(steady.replenish_interval(), Duration::from_millis(500));
/// assert_eq!(steady.burst_size().get(), 5);
///
/// // From configuration: a zero count or period is refused.
/// assert!(Rate::new(0, Duration::from_secs(1)).is_err());
/// assert!(Rate::new(3, Duration::ZERO).is_err());
/// assert!(Rate::new(3, Duration::from_secs(2)).is_ok());
/// ```
///
/// [governor]: https://docs.rs/governor
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub struct Rate {
    // Invariants, kept by every constructor: `period` holds at least `count` nanoseconds (a
    // request is refilled at most once per nanosecond), and the refill interval times the burst
    // is at most `MAX_SPAN_NANOS`.
    count: NonZeroU32,
    period: Duration,
    burst: Option<NonZeroU32>,
}

impl Rate {
    /// `count` requests every second.
    ///
    /// One request per nanosecond is the finest a limiter counts: a count above 1 000 000 000
    /// is taken as 1 000 000 000.
    pub const fn per_second(count: NonZeroU32) -> Self {
        let count = if count.get() > MAX_PER_SECOND {
            match NonZeroU32::new(MAX_PER_SECOND) {
                Some(max) => max,
                None => count,
            }
        } else {
            count
        };
        Self {
            count,
            period: Duration::from_secs(1),
            burst: None,
        }
    }

    /// `count` requests every minute.
    pub const fn per_minute(count: NonZeroU32) -> Self {
        Self {
            count,
            period: Duration::from_secs(60),
            burst: None,
        }
    }

    /// `count` requests every hour.
    pub const fn per_hour(count: NonZeroU32) -> Self {
        Self {
            count,
            period: Duration::from_secs(3600),
            burst: None,
        }
    }

    /// `count` requests every `period`, e.g. from configuration.
    ///
    /// # Errors
    ///
    /// A zero count or period, a period so short that a request would be refilled more often
    /// than once per nanosecond, or one longer than a limiter tracks (about 292 years).
    pub fn new(count: u32, period: Duration) -> Result<Self, ConfigError> {
        let count = NonZeroU32::new(count)
            .ok_or_else(|| ConfigError::new("rate limit: the request count must be at least 1"))?;
        if period.is_zero() {
            return Err(ConfigError::new(
                "rate limit: the period must be longer than zero",
            ));
        }
        if period.as_nanos() < u128::from(count.get()) {
            return Err(ConfigError::new(
                "rate limit: the period divided by the count must be at least one nanosecond",
            ));
        }
        if period.as_nanos() > u128::from(MAX_SPAN_NANOS) {
            return Err(ConfigError::new(
                "rate limit: the period must be at most 292 years",
            ));
        }
        Ok(Self {
            count,
            period,
            burst: None,
        })
    }

    /// How many requests a fresh (or long idle) key may make at once. Defaults to the count.
    ///
    /// A burst that would take longer to refill than a limiter tracks (about 292 years; only
    /// with bursts in the millions at rates of a few an hour) is cut to what it can track.
    pub const fn burst(mut self, burst: NonZeroU32) -> Self {
        let most = MAX_SPAN_NANOS / self.interval_nanos();
        self.burst = if (burst.get() as u64) > most {
            // `most` is at least 1 (the interval is at most the period, itself at most
            // `MAX_SPAN_NANOS`) and below `burst`, a `u32`.
            NonZeroU32::new(most as u32)
        } else {
            Some(burst)
        };
        self
    }

    /// How many requests a fresh key may make at once.
    #[must_use]
    pub const fn burst_size(&self) -> NonZeroU32 {
        match self.burst {
            Some(burst) => burst,
            None => self.count,
        }
    }

    /// The time it takes to refill one request: `period / count`, at least one nanosecond.
    #[must_use]
    pub const fn replenish_interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos())
    }

    /// [`replenish_interval`](Rate::replenish_interval) in nanoseconds: at least 1, and times
    /// the burst at most `MAX_SPAN_NANOS`.
    pub(crate) const fn interval_nanos(&self) -> u64 {
        // The invariants bound the period by `MAX_SPAN_NANOS` (or an hour), so this fits.
        (self.period.as_nanos() / self.count.get() as u128) as u64
    }

    /// The `q` and `w` of `RateLimit-Policy`: the period in whole seconds (rounded up, at least
    /// 1), and the requests granted over it (rounded down, so never more than granted).
    pub(crate) fn quota_per_window(&self) -> (u64, u64) {
        let window = crate::problem::retry_after_secs(self.period);
        let quota = u128::from(self.count.get()) * u128::from(window) * 1_000_000_000
            / self.period.as_nanos().max(1);
        (u64::try_from(quota).unwrap_or(u64::MAX), window)
    }
}

impl fmt::Debug for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Rate({} per {:?}, burst {})",
            self.count,
            self.period,
            self.burst_size()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn per_second_means_count_per_second_not_one_every_count_seconds() {
        let rate = Rate::per_second(nz(60));
        assert_eq!(rate.replenish_interval(), Duration::from_secs(1) / 60);
        assert_eq!(rate.burst_size().get(), 60);
        assert_eq!(rate.quota_per_window(), (60, 1));
    }

    #[test]
    fn burst_overrides_the_default_burst() {
        let rate = Rate::per_hour(nz(3600)).burst(nz(7));
        assert_eq!(rate.replenish_interval(), Duration::from_secs(1));
        assert_eq!(rate.burst_size().get(), 7);
        assert_eq!(rate.quota_per_window(), (3600, 3600));
    }

    #[test]
    fn periods_of_no_whole_seconds_are_announced_over_whole_seconds() {
        // 5 per 500 ms is 10 per second; 2 per 1.5 s is 2.67 per 2 s, announced as 2.
        let q_w = |count, millis| {
            Rate::new(count, Duration::from_millis(millis))
                .unwrap()
                .quota_per_window()
        };
        assert_eq!(q_w(5, 500), (10, 1));
        assert_eq!(q_w(2, 1500), (2, 2));
        assert_eq!(q_w(1, 250), (4, 1));
    }

    #[test]
    fn invalid_rates_are_refused() {
        assert!(Rate::new(0, Duration::from_secs(1)).is_err());
        assert!(Rate::new(5, Duration::ZERO).is_err());
        assert!(Rate::new(u32::MAX, Duration::from_nanos(1)).is_err());
        assert!(Rate::new(u32::MAX, Duration::from_secs(1)).is_err());
        assert!(Rate::new(2, Duration::from_millis(1500)).is_ok());
        // One request per nanosecond is the finest: exactly that is valid, finer is not.
        assert_eq!(
            Rate::new(7, Duration::from_nanos(7))
                .unwrap()
                .replenish_interval(),
            Duration::from_nanos(1)
        );
        assert!(Rate::new(8, Duration::from_nanos(7)).is_err());
        // The longest period a limiter tracks, and one nanosecond more.
        let longest = Duration::from_nanos(MAX_SPAN_NANOS);
        assert_eq!(Rate::new(1, longest).unwrap().period, longest);
        assert!(Rate::new(1, longest + Duration::from_nanos(1)).is_err());
    }

    #[test]
    fn constants_too_fine_to_count_are_held_to_one_per_nanosecond() {
        let finest = Rate::per_second(nz(u32::MAX));
        assert_eq!(finest.count.get(), 1_000_000_000);
        assert_eq!(finest.replenish_interval(), Duration::from_nanos(1));
        assert_eq!(finest, Rate::per_second(nz(1_000_000_000)));
        assert_eq!(Rate::per_second(nz(999_999_999)).count.get(), 999_999_999);
    }

    #[test]
    fn bursts_too_long_to_refill_are_cut_to_what_a_limiter_tracks() {
        // One an hour: a burst refilled over more than MAX_SPAN_NANOS is cut.
        let rate = Rate::per_hour(nz(1)).burst(nz(u32::MAX));
        let most = MAX_SPAN_NANOS / 3_600_000_000_000;
        assert_eq!(u64::from(rate.burst_size().get()), most);
        assert!(rate.interval_nanos() * u64::from(rate.burst_size().get()) <= MAX_SPAN_NANOS);
        // Exactly the most is kept as it is.
        let at_most = Rate::per_hour(nz(1)).burst(nz(u32::try_from(most).unwrap()));
        assert_eq!(at_most, rate);
        // A rate per second takes any burst.
        let rate = Rate::per_second(nz(1)).burst(nz(u32::MAX));
        assert_eq!(rate.burst_size().get(), u32::MAX);
        // The longest period allows a burst of one.
        let slow = Rate::new(1, Duration::from_nanos(MAX_SPAN_NANOS))
            .unwrap()
            .burst(nz(2));
        assert_eq!(slow.burst_size().get(), 1);
    }
}
