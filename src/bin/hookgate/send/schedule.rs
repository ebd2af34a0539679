//! The ElevenLabs retry contract, as `send` plays it: which answers are retried, and when.

use std::time::Duration;

use http::StatusCode;

/// Waits before the 2nd to 5th attempt: 30 s, 2 min, 8 min, 30 min (the first is immediate).
pub(crate) const WAITS: [Duration; 4] = [
    Duration::from_secs(30),
    Duration::from_secs(2 * 60),
    Duration::from_secs(8 * 60),
    Duration::from_secs(30 * 60),
];

/// At most this many attempts per event.
pub(crate) const MAX_ATTEMPTS: usize = WAITS.len() + 1;

/// The most jitter added to a wait, as a fraction of it.
pub(crate) const MAX_JITTER: f64 = 0.10;

/// What an attempt's outcome means for the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// 2xx: delivered.
    Delivered,
    /// 5xx, 408, 429, or no answer at all: try again later.
    Retry,
    /// Any other status: the receiver refused the event for good.
    Permanent,
}

/// How ElevenLabs treats an answer of `status`.
pub(crate) fn verdict(status: StatusCode) -> Verdict {
    if status.is_success() {
        Verdict::Delivered
    } else if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        Verdict::Retry
    } else {
        Verdict::Permanent
    }
}

/// The wait before attempt `next` (2 to 5) after a retryable failure: the schedule's wait
/// plus `jitter` (0 to 1) times 10% of it, all multiplied by `time_scale`.
pub(crate) fn wait_before(next: usize, jitter: f64, time_scale: f64) -> Duration {
    let base = WAITS[next - 2];
    base.mul_f64((1.0 + MAX_JITTER * jitter.clamp(0.0, 1.0)) * time_scale)
}

/// [`wait_before`] with a fresh random jitter.
pub(crate) fn jittered_wait_before(next: usize, time_scale: f64) -> Duration {
    wait_before(next, fastrand::f64(), time_scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal within a microsecond (float rounding).
    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_micros(1)
    }

    #[test]
    fn retried_statuses_are_5xx_408_and_429() {
        for code in [500, 502, 503, 504, 599, 408, 429] {
            assert_eq!(verdict(StatusCode::from_u16(code).unwrap()), Verdict::Retry);
        }
        for code in [400, 401, 403, 404, 409, 413, 422, 301, 302, 304, 101] {
            assert_eq!(
                verdict(StatusCode::from_u16(code).unwrap()),
                Verdict::Permanent,
                "{code}"
            );
        }
        for code in [200, 201, 202, 204, 299] {
            assert_eq!(
                verdict(StatusCode::from_u16(code).unwrap()),
                Verdict::Delivered
            );
        }
    }

    #[test]
    fn the_schedule_is_five_attempts() {
        assert_eq!(MAX_ATTEMPTS, 5);
        let waits: Vec<u64> = (2..=5)
            .map(|n| wait_before(n, 0.0, 1.0).as_secs())
            .collect();
        assert_eq!(waits, [30, 120, 480, 1800]);
    }

    #[test]
    fn jitter_adds_at_most_ten_percent() {
        for next in 2..=MAX_ATTEMPTS {
            let base = WAITS[next - 2];
            let most = base.mul_f64(1.1);
            assert!(close(wait_before(next, 1.0, 1.0), most));
            // Out-of-range jitter is clamped rather than trusted.
            assert!(close(wait_before(next, 7.0, 1.0), most));
            assert!(close(wait_before(next, -1.0, 1.0), base));
            for _ in 0..1000 {
                let wait = jittered_wait_before(next, 1.0);
                assert!(wait >= base && wait <= most, "{wait:?}");
            }
        }
    }

    #[test]
    fn the_time_scale_multiplies_every_wait() {
        assert!(close(wait_before(2, 0.0, 0.001), Duration::from_millis(30)));
        assert!(close(
            wait_before(5, 0.5, 0.001),
            Duration::from_millis(1890)
        ));
        assert_eq!(wait_before(3, 1.0, 0.0), Duration::ZERO);
    }
}
