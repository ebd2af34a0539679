//! [`Rate`]: how many requests per period a key may make, and how many at once.

use std::{fmt, num::NonZeroU32, time::Duration};

use governor::Quota;

use crate::ConfigError;

/// How many requests a key may make per period, and how many it may make at once (the burst).
///
/// The unit is always in the name: [`Rate::per_second(n)`](Rate::per_second) means **n requests
/// every second**, [`Rate::per_minute(n)`](Rate::per_minute) means n requests every minute. (Not
/// "one request every n seconds", the trap some rate-limiting crates set.)
///
/// Requests are spread evenly over the period (GCRA, as in [governor]): `per_minute(60)` refills
/// one request every second. The burst, the number of requests a fresh key may make at once, is
/// the count unless [`burst`](Rate::burst) sets it. Over any span of `D` seconds a key is granted
/// at most `burst + rate * D` requests.
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
/// assert!(Rate::new(3, Duration::from_secs(2)).is_ok());
/// ```
///
/// [governor]: https://docs.rs/governor
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub struct Rate {
    count: NonZeroU32,
    period: Duration,
    burst: Option<NonZeroU32>,
}

impl Rate {
    /// `count` requests every second.
    pub const fn per_second(count: NonZeroU32) -> Self {
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
    /// A zero count, or a period so short that a request would be refilled more often than once
    /// per nanosecond.
    pub fn new(count: u32, period: Duration) -> Result<Self, ConfigError> {
        let count = NonZeroU32::new(count)
            .ok_or_else(|| ConfigError::new("rate limit: the request count must be at least 1"))?;
        let rate = Self {
            count,
            period,
            burst: None,
        };
        rate.to_quota()?;
        Ok(rate)
    }

    /// How many requests a fresh (or long idle) key may make at once. Defaults to the count.
    pub const fn burst(mut self, burst: NonZeroU32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The number of requests per [`period`](Rate::period).
    #[must_use]
    pub const fn count(&self) -> NonZeroU32 {
        self.count
    }

    /// The period the [`count`](Rate::count) is stated for.
    #[must_use]
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// How many requests a fresh key may make at once.
    #[must_use]
    pub const fn burst_size(&self) -> NonZeroU32 {
        match self.burst {
            Some(burst) => burst,
            None => self.count,
        }
    }

    /// The time it takes to refill one request: `period / count`.
    #[must_use]
    pub fn replenish_interval(&self) -> Duration {
        self.period / self.count.get()
    }

    /// The governor quota enforcing this rate.
    pub(crate) fn to_quota(self) -> Result<Quota, ConfigError> {
        Quota::with_period(self.replenish_interval())
            .map(|quota| quota.allow_burst(self.burst_size()))
            .ok_or_else(|| {
                ConfigError::new(
                    "rate limit: the period divided by the count must be at least one nanosecond",
                )
            })
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
        let quota = rate.to_quota().unwrap();
        assert_eq!(quota.replenish_interval(), Duration::from_secs(1) / 60);
        assert_eq!(quota.burst_size().get(), 60);
        assert_eq!(rate.quota_per_window(), (60, 1));
    }

    #[test]
    fn burst_overrides_the_default_burst() {
        let rate = Rate::per_hour(nz(3600)).burst(nz(7));
        let quota = rate.to_quota().unwrap();
        assert_eq!(quota.replenish_interval(), Duration::from_secs(1));
        assert_eq!(quota.burst_size().get(), 7);
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
        // Valid constants can still describe an impossible interval; the layer refuses it.
        assert!(Rate::per_second(nz(u32::MAX)).to_quota().is_err());
        assert!(Rate::new(2, Duration::from_millis(1500)).is_ok());
    }
}
