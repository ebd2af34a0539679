//! What a run of `send` saw: every attempt's latency (recorded exactly, sorted at the end) and
//! every answer by status and problem code.

use std::{collections::BTreeMap, fmt, time::Duration};

/// One answer's key in the summary: its status, or no status for a failed connection.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum AnswerKind {
    /// An HTTP answer, with the problem+json `code` when there was one.
    Status(u16, Option<String>),
    /// No answer: the connection failed or the attempt timed out.
    NoAnswer,
}

impl fmt::Display for AnswerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(status, code) => {
                let reason = http::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                write!(f, "{status} {reason}")?;
                match code {
                    Some(code) => write!(f, " ({code})"),
                    None => Ok(()),
                }
            }
            Self::NoAnswer => f.write_str("no answer"),
        }
    }
}

/// One worker's (then, merged, the run's) record.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Latency of every attempt that got an answer, send to last body byte.
    pub(crate) latencies: Vec<Duration>,
    /// Answers by kind.
    pub(crate) answers: BTreeMap<AnswerKind, u64>,
    /// Events acknowledged with 2xx.
    pub(crate) delivered: u64,
    /// Events given up on.
    pub(crate) failed: u64,
    /// Events abandoned in a retry wait because of Ctrl-C.
    pub(crate) interrupted: u64,
    /// Why the first attempt without an answer had none.
    pub(crate) first_error: Option<String>,
    /// Retry waits begun, and their time added up (over every worker).
    pub(crate) retry_waits: u64,
    pub(crate) retry_wait: Duration,
}

impl Stats {
    pub(crate) fn record(&mut self, kind: AnswerKind, latency: Option<Duration>) {
        if let Some(latency) = latency {
            self.latencies.push(latency);
        }
        *self.answers.entry(kind).or_insert(0) += 1;
    }

    pub(crate) fn merge(&mut self, other: Self) {
        self.latencies.extend(other.latencies);
        for (kind, n) in other.answers {
            *self.answers.entry(kind).or_insert(0) += n;
        }
        self.delivered += other.delivered;
        self.failed += other.failed;
        self.interrupted += other.interrupted;
        self.retry_waits += other.retry_waits;
        self.retry_wait += other.retry_wait;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// The run's summary, latencies sorted. `only_waiting`: the part of `elapsed` when no
    /// delivery was in progress and some waited for a retry.
    pub(crate) fn summary(
        mut self,
        elapsed: Duration,
        concurrency: u16,
        only_waiting: Duration,
    ) -> Summary {
        self.latencies.sort_unstable();
        Summary {
            stats: self,
            elapsed,
            concurrency,
            only_waiting: only_waiting.min(elapsed),
        }
    }
}

/// The nearest-rank `p`th percentile (0 < p <= 100) of `sorted` latencies: the smallest value
/// at least `p`% of the values are at or below. `None` when there is none.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Formats a latency with a unit fit for its size.
pub(crate) fn human(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

/// The end-of-run report.
#[derive(Debug)]
pub(crate) struct Summary {
    pub(crate) stats: Stats,
    elapsed: Duration,
    concurrency: u16,
    only_waiting: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stats = &self.stats;
        let events = stats.delivered + stats.failed;
        let requests: u64 = stats.answers.values().sum();
        let seconds = self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        writeln!(
            f,
            "{events} events in {:.3} s at concurrency {}: {} delivered, {} failed",
            seconds, self.concurrency, stats.delivered, stats.failed
        )?;
        writeln!(
            f,
            "throughput: {:.0} deliveries/s, {:.0} requests/s (wall time)",
            stats.delivered as f64 / seconds,
            requests as f64 / seconds
        )?;
        if stats.retry_waits > 0 {
            let active = (self.elapsed - self.only_waiting)
                .as_secs_f64()
                .max(f64::MIN_POSITIVE);
            writeln!(
                f,
                "excluding retry waits: {:.0} deliveries/s, {:.0} requests/s over {} active \
                 (the wall time less the {} when deliveries were only waiting for a retry)",
                stats.delivered as f64 / active,
                requests as f64 / active,
                crate::units::human(self.elapsed - self.only_waiting),
                crate::units::human(self.only_waiting),
            )?;
            writeln!(
                f,
                "retry waits: {}, {} in all (added up over the deliveries)",
                stats.retry_waits,
                crate::units::human(stats.retry_wait)
            )?;
        }
        let sorted = &stats.latencies;
        if let (Some(p50), Some(p90), Some(p99), Some(max)) = (
            percentile(sorted, 50.0),
            percentile(sorted, 90.0),
            percentile(sorted, 99.0),
            sorted.last(),
        ) {
            writeln!(
                f,
                "latency: p50 {}, p90 {}, p99 {}, max {} ({} answers)",
                human(p50),
                human(p90),
                human(p99),
                human(*max),
                sorted.len()
            )?;
        }
        writeln!(f, "answers:")?;
        for (kind, n) in &stats.answers {
            writeln!(f, "  {kind}: {n}")?;
        }
        if let Some(error) = &stats.first_error {
            writeln!(f, "first attempt without an answer: {error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let sorted = ms(1..=100);
        assert_eq!(percentile(&sorted, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&sorted, 90.0), Some(Duration::from_millis(90)));
        assert_eq!(percentile(&sorted, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&sorted, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&sorted, 0.001), Some(Duration::from_millis(1)));
    }

    #[test]
    fn percentiles_of_few_values() {
        assert_eq!(percentile(&[], 50.0), None);
        let one = ms([7]);
        for p in [1.0, 50.0, 99.0, 100.0] {
            assert_eq!(percentile(&one, p), Some(Duration::from_millis(7)));
        }
        let three = ms([1, 2, 3]);
        assert_eq!(percentile(&three, 50.0), Some(Duration::from_millis(2)));
        assert_eq!(percentile(&three, 90.0), Some(Duration::from_millis(3)));
        // p99 of 10 values is the largest, never past the end.
        let ten = ms(1..=10);
        assert_eq!(percentile(&ten, 99.0), Some(Duration::from_millis(10)));
    }

    #[test]
    fn merged_stats_add_up_and_sort() {
        let mut a = Stats::default();
        a.record(
            AnswerKind::Status(200, None),
            Some(Duration::from_millis(3)),
        );
        a.record(AnswerKind::NoAnswer, None);
        a.delivered = 1;
        let mut b = Stats::default();
        b.record(
            AnswerKind::Status(200, None),
            Some(Duration::from_millis(1)),
        );
        b.record(
            AnswerKind::Status(503, Some("throttled".into())),
            Some(Duration::from_millis(2)),
        );
        b.delivered = 1;
        b.failed = 1;
        a.merge(b);
        let summary = a.summary(Duration::from_secs(1), 2, Duration::ZERO);
        assert_eq!(summary.stats.latencies, ms([1, 2, 3]));
        let text = summary.to_string();
        assert!(text.contains("3 events in 1.000 s at concurrency 2: 2 delivered, 1 failed"));
        assert!(
            text.contains("throughput: 2 deliveries/s, 4 requests/s"),
            "{text}"
        );
        assert!(
            text.contains("latency: p50 2.00 ms, p90 3.00 ms, p99 3.00 ms"),
            "{text}"
        );
        assert!(text.contains("  200 OK: 2\n"), "{text}");
        assert!(
            text.contains("  503 Service Unavailable (throttled): 1\n"),
            "{text}"
        );
        assert!(text.contains("  no answer"), "{text}");
    }

    #[test]
    fn the_rate_without_retry_waits_is_over_the_active_time() {
        let mut stats = Stats::default();
        for _ in 0..10 {
            stats.record(
                AnswerKind::Status(200, None),
                Some(Duration::from_millis(1)),
            );
        }
        stats.record(
            AnswerKind::Status(503, None),
            Some(Duration::from_millis(1)),
        );
        stats.delivered = 10;
        stats.retry_waits = 1;
        stats.retry_wait = Duration::from_millis(1800);
        let text = stats
            .summary(Duration::from_secs(2), 1, Duration::from_millis(1750))
            .to_string();
        assert!(
            text.contains("throughput: 5 deliveries/s, 6 requests/s (wall time)"),
            "{text}"
        );
        assert!(
            text.contains(
                "excluding retry waits: 40 deliveries/s, 44 requests/s over 250ms active"
            ),
            "{text}"
        );
        assert!(
            text.contains("1.8s when deliveries were only waiting"),
            "{text}"
        );
        assert!(text.contains("retry waits: 1, 1.8s in all"), "{text}");
        // Without a retry wait, only the wall-time rate.
        let text = Stats::default()
            .summary(Duration::from_secs(1), 1, Duration::ZERO)
            .to_string();
        assert!(!text.contains("excluding retry waits"), "{text}");
    }

    #[test]
    fn latencies_have_readable_units() {
        assert_eq!(human(Duration::from_micros(37)), "37 µs");
        assert_eq!(human(Duration::from_micros(1500)), "1.50 ms");
        assert_eq!(human(Duration::from_millis(2500)), "2.50 s");
    }
}
