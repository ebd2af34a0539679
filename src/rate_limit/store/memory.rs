//! [`MemoryStore`]: limiter state in a bounded concurrent map.

use std::{
    fmt,
    future::Ready,
    hash::Hash,
    num::NonZeroUsize,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        OnceLock,
    },
    time::Duration,
};

use dashmap::{mapref::one::Ref, DashMap};
use governor::clock::{Clock, DefaultClock, Reference};

use super::{Check, Decision, RateLimitStore, StoreError};
use crate::rate_limit::Rate;

/// The in-memory store: one GCRA state (8 bytes) per key in a concurrent map.
///
/// # Bounded memory, no housekeeping
///
/// - Keys whose state is indistinguishable from a fresh key (idle for as long as it takes to
///   refill their burst) are evicted by the store itself, in a sweep run inside a decision that
///   adds a key (or meets the cap), at most once a second. No background task.
/// - At most [`max_keys`](MemoryStore::max_keys) keys (default 100 000) are tracked. **At the
///   cap**, a key that is not yet tracked is counted against one shared *overflow* bucket with
///   the same rate until a sweep frees room, and its decision says so
///   ([`Decision::is_overflow`]); tracked keys keep their own buckets. A flood of distinct
///   (spoofed) keys therefore shares one bucket instead of growing memory. The cap may be
///   exceeded by at most one key per concurrently running decision.
/// - Under a [`FailureLimitLayer`](crate::rate_limit::FailureLimitLayer), the block list holds at
///   most `max_keys` blocked keys too: when it is full of blocks still running, a key that
///   fails too often is not blocked (logged at `warn`) until blocks expire; expired blocks
///   are dropped when they are next looked up, or all at once (at most once a second) when
///   the list is full.
///
/// # Time
///
/// [`new`](MemoryStore::new) reads the system's monotonic clock (governor's default clock);
/// [`with_clock`](MemoryStore::with_clock) takes any governor clock, e.g. governor's
/// `FakeRelativeClock` in tests or [`TokioClock`](crate::rate_limit::TokioClock).
///
/// ```
/// use std::{num::NonZeroU32, num::NonZeroUsize, time::Duration};
/// use governor::clock::FakeRelativeClock;
/// use hookgate::rate_limit::{Check, MemoryStore, Rate, RateLimitStore};
///
/// let clock = FakeRelativeClock::default();
/// let store = MemoryStore::with_clock(Rate::per_second(NonZeroU32::new(2).unwrap()), clock.clone())
///     .max_keys(NonZeroUsize::new(10_000).unwrap());
/// let decide = |key: &str| match store.check(&key.to_owned()) {
///     Check::Ready(decision) => decision.unwrap(),
///     Check::Pending(_) => unreachable!("the memory store always answers at once"),
/// };
/// assert!(decide("a").is_allowed());
/// assert!(decide("a").is_allowed());
/// let denied = decide("a");
/// assert!(!denied.is_allowed());
/// assert_eq!(denied.reset(), Duration::from_millis(500));
/// assert!(decide("b").is_allowed()); // another key, another bucket
/// clock.advance(Duration::from_millis(500));
/// assert!(decide("a").is_allowed());
/// ```
pub struct MemoryStore<K> {
    /// Each key's theoretical arrival time.
    map: DashMap<K, Tat>,
    /// The number of keys in `map`, exact, so the cap costs no map scan.
    len: AtomicUsize,
    /// The bucket shared by keys that arrive while the map is full.
    overflow: Tat,
    gcra: Gcra,
    rate: Rate,
    max_keys: usize,
    sweep_interval: u64,
    last_sweep: AtomicU64,
    /// The keys blocked by a failure limiter, each until a time; made by the first block.
    blocked: OnceLock<DashMap<K, u64>>,
    last_purge: AtomicU64,
    time: Time,
}

impl<K> MemoryStore<K>
where
    K: Hash + Eq,
{
    /// A store enforcing `rate` per key, on the system's monotonic clock.
    #[must_use]
    pub fn new(rate: Rate) -> Self {
        let clock = DefaultClock::default();
        let start = clock.now();
        Self::with_time(rate, Time::Monotonic { clock, start })
    }

    /// A store on the given clock, e.g. governor's `FakeRelativeClock` in tests, or
    /// [`TokioClock`](crate::rate_limit::TokioClock) to follow tokio's (pausable) time.
    #[must_use]
    pub fn with_clock<C>(rate: Rate, clock: C) -> Self
    where
        C: Clock + Send + Sync + 'static,
        C::Instant: Send + Sync,
    {
        let start = clock.now();
        let now = move || u64::from(clock.now().duration_since(start));
        Self::with_time(rate, Time::Custom(Box::new(now)))
    }

    fn with_time(rate: Rate, time: Time) -> Self {
        Self {
            map: DashMap::new(),
            len: AtomicUsize::new(0),
            overflow: Tat::default(),
            gcra: Gcra::new(rate),
            rate,
            max_keys: 100_000,
            sweep_interval: nanos(Duration::from_secs(1)),
            last_sweep: AtomicU64::new(0),
            blocked: OnceLock::new(),
            last_purge: AtomicU64::new(0),
            time,
        }
    }
}

impl<K> MemoryStore<K> {
    /// The most keys tracked at once (default 100 000); see the type docs for what happens at
    /// the cap. An IP-address key costs about 50 to 70 bytes with the map's spare room
    /// (`examples/rate_limit_memory.rs` measures it), so the default cap holds under 10 MiB.
    #[must_use]
    pub fn max_keys(mut self, max_keys: NonZeroUsize) -> Self {
        self.max_keys = max_keys.get();
        self
    }

    /// The least time between two sweeps of idle keys (default 1 s). A sweep visits every
    /// tracked key, inside the decision that triggers it: one that adds a new key or finds the
    /// store full.
    #[cfg(test)]
    pub(crate) fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = nanos(interval);
        self
    }

    /// The number of keys tracked now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no key is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K> MemoryStore<K>
where
    K: Hash + Eq + Clone,
{
    /// Counts one request against `key` and decides, at once.
    #[inline(always)]
    pub fn decide(&self, key: &K) -> Decision {
        let now = self.time.now();
        if self.len() >= self.max_keys && !self.map.contains_key(key) {
            self.maybe_sweep(now);
            if self.len() >= self.max_keys {
                return self.gcra.decide(&self.overflow, now).in_overflow();
            }
        }
        self.decide_keyed(key, now)
    }

    #[inline(always)]
    fn decide_keyed(&self, key: &K, now: u64) -> Decision {
        // One decision for a tracked key and a new one alike: with a second, out-of-line
        // decision for new keys, the two would meet in memory (the decision written and read
        // back on every request). A new key's state is put where the lookup's answer lies, so
        // a tracked key's is read where it is, not moved.
        let mut tat = self.map.get(key);
        let tat = tat.get_or_insert_with(|| self.track(key, now));
        self.gcra.decide(tat, now)
    }

    /// The state of `key`, not tracked a moment ago: added fresh unless another decision just
    /// added it.
    #[inline(never)]
    fn track(&self, key: &K, now: u64) -> Ref<'_, K, Tat> {
        // Memory only grows when a key is added: that is when idle keys are swept (here, where
        // the decision holds no lock of the map yet, rather than after it on every request).
        self.maybe_sweep(now);
        self.map
            .entry(key.clone())
            .or_insert_with(|| {
                self.len.fetch_add(1, Ordering::Relaxed);
                Tat::default()
            })
            .downgrade()
    }

    /// Sweeps idle keys if the last sweep is at least `sweep_interval` ago.
    fn maybe_sweep(&self, now: u64) {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= self.sweep_interval
            && self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sweep(now);
        }
    }

    /// The number of keys blocked now, including expired blocks not yet dropped.
    pub(crate) fn blocked_keys(&self) -> usize {
        self.blocked.get().map_or(0, DashMap::len)
    }

    /// Counts one failure of `key`; over the rate, blocks it for `cooldown` and says for how
    /// long.
    fn fail(&self, key: &K, cooldown: Duration) -> Option<Duration> {
        if self.decide(key).is_allowed() {
            return None;
        }
        let now = self.time.now();
        let blocked = self.blocked.get_or_init(DashMap::new);
        if blocked.len() >= self.max_keys {
            self.purge_expired(blocked, now);
            if blocked.len() >= self.max_keys {
                tracing::warn!(
                    target: "hookgate::rate_limit",
                    policy = "failures",
                    "block list full: a failing client is not blocked"
                );
                return None;
            }
        }
        blocked.insert(key.clone(), now.saturating_add(nanos(cooldown)));
        Some(cooldown)
    }

    /// How much longer `key` is blocked, if it is; drops its block once expired.
    fn blocked_for(&self, key: &K) -> Option<Duration> {
        let blocked = self.blocked.get()?;
        let until = *blocked.get(key)?;
        let now = self.time.now();
        if until > now {
            return Some(Duration::from_nanos(until - now));
        }
        blocked.remove_if(key, |_, until| *until <= now);
        None
    }

    /// Drops expired blocks, at most once per second (a full list of live blocks must not
    /// turn every failure into a scan).
    fn purge_expired(&self, blocked: &DashMap<K, u64>, now: u64) {
        let last = self.last_purge.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= nanos(Duration::from_secs(1)))
            && self
                .last_purge
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            blocked.retain(|_, until| *until > now);
        }
    }

    /// Evicts the keys as good as fresh at `now`: those whose whole burst has refilled.
    fn sweep(&self, now: u64) {
        let before = self.len();
        let mut removed = 0;
        self.map.retain(|_, tat| {
            let keep = tat.0.load(Ordering::Relaxed) > now;
            removed += usize::from(!keep);
            keep
        });
        self.len.fetch_sub(removed, Ordering::Relaxed);
        if removed > 0 && self.map.capacity() > 4 * before.saturating_sub(removed).max(64) {
            self.map.shrink_to_fit();
        }
    }
}

impl<K> fmt::Debug for MemoryStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("rate", &self.rate)
            .field("keys", &self.len())
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

impl<K> RateLimitStore<K> for MemoryStore<K>
where
    K: Hash + Eq + Clone,
{
    type CheckFuture = Ready<Result<Decision, StoreError>>;
    type BlockFuture = Ready<Result<Option<Duration>, StoreError>>;

    #[inline(always)]
    fn check(&self, key: &K) -> Check<Self::CheckFuture, Decision> {
        Check::Ready(Ok(self.decide(key)))
    }

    fn record_failure(
        &self,
        key: &K,
        cooldown: Duration,
    ) -> Check<Self::BlockFuture, Option<Duration>> {
        Check::Ready(Ok(self.fail(key, cooldown)))
    }

    fn blocked(&self, key: &K) -> Check<Self::BlockFuture, Option<Duration>> {
        Check::Ready(Ok(self.blocked_for(key)))
    }

    fn rate(&self) -> Rate {
        self.rate
    }
}

/// A duration in nanoseconds, saturating (a sweep interval of centuries is never).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Where the store reads the time: nanoseconds since the store was made.
enum Time {
    /// The system's monotonic clock, read without an indirect call: every decision reads it.
    Monotonic {
        clock: DefaultClock,
        start: <DefaultClock as Clock>::Instant,
    },
    /// Any other governor clock.
    Custom(Box<dyn Fn() -> u64 + Send + Sync>),
}

impl Time {
    #[inline(always)]
    fn now(&self) -> u64 {
        match self {
            Self::Monotonic { clock, start } => u64::from(clock.now().duration_since(*start)),
            Self::Custom(now) => now(),
        }
    }
}

/// A key's theoretical arrival time (GCRA's TAT) in nanoseconds since the store was made; 0
/// while the key has made no request.
#[derive(Default)]
struct Tat(AtomicU64);

/// The generic cell rate algorithm, as governor runs it: a request at `now` conforms when
/// `now >= tat - tau`, and then moves `tat` to `max(tat, now) + t`.
#[derive(Clone, Copy, Debug)]
struct Gcra {
    /// The refill interval of one request.
    t: u64,
    /// How far ahead of `now` the TAT may run: `t * (burst - 1)`.
    tau: u64,
    burst: u32,
    /// `t` as a `Duration`, worked out once: the reset of nearly every decision (a division
    /// by 10^9 otherwise).
    t_duration: Duration,
}

impl Gcra {
    fn new(rate: Rate) -> Self {
        // A valid `Rate` keeps `t * burst` within 63 bits.
        let t = rate.interval_nanos();
        let burst = rate.burst_size().get();
        Self {
            t,
            tau: t * u64::from(burst - 1),
            burst,
            t_duration: Duration::from_nanos(t),
        }
    }

    /// Counts one request at `now` against `tat` and decides.
    #[inline(always)]
    fn decide(&self, tat: &Tat, now: u64) -> Decision {
        let Self {
            t,
            tau,
            burst,
            t_duration,
        } = *self;
        let mut seen = tat.0.load(Ordering::Acquire);
        loop {
            let current = if seen == 0 { now } else { seen };
            let earliest = current.saturating_sub(tau);
            if now < earliest {
                return Decision::denied(Duration::from_nanos(earliest - now));
            }
            let next = current.max(now) + t;
            match tat
                .0
                .compare_exchange_weak(seen, next, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    if current <= now {
                        // The burst was full (the usual case: a client well under its rate),
                        // and this request took one of it: no division needed.
                        return Decision::allowed(burst - 1, t_duration);
                    }
                    // Requests that could still pass right now, after this one: at most
                    // `burst - 2` here, since the TAT before this request (`next - t`) is
                    // past `now`.
                    let remaining = (now + tau + t).saturating_sub(next) / t;
                    // At most `burst`, a `u32`.
                    let remaining = u32::try_from(remaining).unwrap_or(burst);
                    let missing = burst.saturating_sub(remaining);
                    return Decision::allowed(
                        remaining,
                        Duration::from_nanos(t * u64::from(missing)),
                    );
                }
                Err(actual) => seen = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{num::NonZeroU32, thread};

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    fn store(rate: Rate, clock: &FakeRelativeClock) -> MemoryStore<u64> {
        MemoryStore::with_clock(rate, clock.clone())
    }

    /// Takes every request the key is granted right now.
    fn drain(store: &MemoryStore<u64>, key: u64) -> u64 {
        let mut granted = 0;
        while store.decide(&key).is_allowed() {
            granted += 1;
        }
        granted
    }

    #[test]
    fn grants_exactly_rate_times_duration_plus_burst_over_fake_time() {
        let clock = FakeRelativeClock::default();
        let store = store(Rate::per_second(nz(10)).burst(nz(5)), &clock);
        let mut granted = drain(&store, 1);
        assert_eq!(granted, 5);
        // 30 s in uneven steps of 7 ms (the last step lands exactly on 30 s).
        let mut elapsed = Duration::ZERO;
        while elapsed < Duration::from_secs(30) {
            let step = Duration::from_millis(7).min(Duration::from_secs(30) - elapsed);
            clock.advance(step);
            elapsed += step;
            granted += drain(&store, 1);
        }
        assert_eq!(granted, 10 * 30 + 5);
    }

    #[test]
    fn grants_exactly_rate_times_duration_plus_burst_for_a_per_minute_rate() {
        let clock = FakeRelativeClock::default();
        let store = store(Rate::per_minute(nz(120)).burst(nz(3)), &clock);
        let mut granted = drain(&store, 9);
        for _ in 0..600 {
            clock.advance(Duration::from_millis(100));
            granted += drain(&store, 9);
        }
        assert_eq!(granted, 2 * 60 + 3);
    }

    #[test]
    fn keys_are_isolated() {
        let clock = FakeRelativeClock::default();
        let store = store(Rate::per_second(nz(3)), &clock);
        assert_eq!(drain(&store, 1), 3);
        assert_eq!(drain(&store, 2), 3);
        assert!(!store.decide(&1).is_allowed());
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn denied_decisions_say_when_to_retry_and_allowed_ones_what_remains() {
        let clock = FakeRelativeClock::default();
        let store = store(Rate::per_second(nz(4)), &clock);
        let first = store.decide(&1);
        assert_eq!(
            (first.remaining(), first.reset()),
            (3, Duration::from_millis(250))
        );
        drain(&store, 1);
        let denied = store.decide(&1);
        assert!(!denied.is_allowed());
        assert_eq!(denied.reset(), Duration::from_millis(250));
        clock.advance(Duration::from_millis(100));
        assert_eq!(store.decide(&1).reset(), Duration::from_millis(150));
    }

    #[test]
    fn concurrent_callers_on_one_key_never_over_grant() {
        let clock = FakeRelativeClock::default();
        let store = store(Rate::per_second(nz(50)).burst(nz(100)), &clock);
        // 8 threads asking 2000 times each: how many were granted in all.
        let race = || -> u64 {
            thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            (0..2_000).filter(|_| store.decide(&7).is_allowed()).count() as u64
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            })
        };
        assert_eq!(race(), 100);
        clock.advance(Duration::from_secs(1));
        assert_eq!(race(), 50);
    }

    #[test]
    fn callers_racing_to_add_new_keys_add_each_once_and_never_over_grant() {
        let clock = FakeRelativeClock::default();
        let store =
            store(Rate::per_second(nz(50)).burst(nz(100)), &clock).sweep_interval(Duration::ZERO);
        // Every thread meets the keys untracked at first, and some find a key added by another
        // when they go to add it: each key is counted once and its burst granted once.
        let granted: usize = thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        (0..60)
                            .flat_map(|_| [0, 1_000, 2_000, 3_000])
                            .filter(|key| store.decide(key).is_allowed())
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 4 * 100);
        assert_eq!(store.len(), 4);
    }

    #[test]
    fn a_new_key_sweeps_idle_ones_and_starts_with_its_own_full_burst() {
        let clock = FakeRelativeClock::default();
        let store = store(Rate::per_second(nz(2)), &clock).sweep_interval(Duration::ZERO);
        assert_eq!(drain(&store, 1), 2);
        clock.advance(Duration::from_secs(1));
        // Key 1 has refilled: adding key 2 sweeps it, and key 2's decision is its own.
        let first = store.decide(&2);
        assert_eq!(
            (first.remaining(), first.reset()),
            (1, Duration::from_millis(500))
        );
        assert_eq!(store.len(), 1);
        store.decide(&3);
        assert_eq!(store.len(), 2);
        // Keys 2 and 3 have refilled: a tracked key sweeps nothing, even with no interval.
        clock.advance(Duration::from_secs(1));
        assert!(store.decide(&2).is_allowed());
        assert_eq!(store.len(), 2, "a tracked key sweeps nothing");
        // A new key does: key 3 goes, key 2 (just used) stays.
        assert_eq!(drain(&store, 1), 2);
        assert_eq!(store.len(), 2);
        assert!(store.decide(&2).is_allowed());
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn idle_keys_are_evicted_by_the_store_itself() {
        let clock = FakeRelativeClock::default();
        let store = store(Rate::per_second(nz(2)), &clock).sweep_interval(Duration::from_secs(5));
        for key in 0..1_000 {
            store.decide(&key);
        }
        store.decide(&5_000);
        store.decide(&5_000);
        assert_eq!(store.len(), 1_001);
        // Refilled after 1 s, but the next sweep is only due after 5 s.
        clock.advance(Duration::from_secs(2));
        store.decide(&5_000);
        store.decide(&6_000);
        assert_eq!(store.len(), 1_002);
        clock.advance(Duration::from_secs(3));
        store.decide(&5_000);
        assert_eq!(store.len(), 1_002, "known keys never trigger a sweep");
        store.decide(&6_001); // a new key: sweeps, only the keys in use stay
        assert_eq!(store.len(), 2);
        // An evicted key starts fresh with its full burst.
        assert_eq!(drain(&store, 3), 2);
    }

    #[test]
    fn a_key_in_use_is_not_evicted() {
        let clock = FakeRelativeClock::default();
        let store = store(Rate::per_minute(nz(1)), &clock).sweep_interval(Duration::ZERO);
        assert!(store.decide(&1).is_allowed());
        clock.advance(Duration::from_secs(30));
        store.decide(&2); // sweeps: key 1 is still refilling, so it stays and stays limited
        assert!(!store.decide(&1).is_allowed());
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn at_the_cap_new_keys_share_the_overflow_bucket_and_tracked_keys_keep_theirs() {
        let clock = FakeRelativeClock::default();
        let store = store(Rate::per_second(nz(2)), &clock).max_keys(NonZeroUsize::new(10).unwrap());
        for key in 0..10 {
            assert!(!store.decide(&key).is_overflow());
        }
        // Keys 100.. are not tracked: they share one bucket of burst 2.
        let first = store.decide(&100);
        assert!(first.is_allowed() && first.is_overflow());
        assert!(store.decide(&101).is_allowed());
        assert!(!store.decide(&102).is_allowed());
        assert_eq!(store.len(), 10);
        // Tracked key 3 still has its own bucket (one request left).
        let tracked = store.decide(&3);
        assert!(tracked.is_allowed() && !tracked.is_overflow());
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_within_the_cap() {
        let clock = FakeRelativeClock::default();
        let store =
            store(Rate::per_second(nz(1)), &clock).max_keys(NonZeroUsize::new(1_000).unwrap());
        for key in 0..200_000 {
            store.decide(&key);
            if key % 1_000 == 0 {
                clock.advance(Duration::from_millis(10));
            }
        }
        assert!(store.len() <= 1_000, "{} keys tracked", store.len());
        // After the flood, idle keys go and new clients get their own buckets again.
        clock.advance(Duration::from_secs(2));
        let decision = store.decide(&u64::MAX);
        assert!(decision.is_allowed() && !decision.is_overflow());
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn failures_over_the_rate_block_for_the_cooldown_and_blocks_expire() {
        let clock = FakeRelativeClock::default();
        let store = store(Rate::per_minute(nz(2)), &clock);
        let cooldown = Duration::from_secs(60);
        assert_eq!(store.blocked_for(&1), None, "no block list yet");
        assert_eq!(store.fail(&1, cooldown), None);
        assert_eq!(store.fail(&1, cooldown), None);
        assert_eq!(store.blocked_for(&1), None);
        assert_eq!(store.blocked_keys(), 0);
        assert_eq!(
            store.fail(&1, cooldown),
            Some(cooldown),
            "the third failure blocks"
        );
        assert_eq!(store.blocked_keys(), 1);
        clock.advance(Duration::from_secs(20));
        assert_eq!(store.blocked_for(&1), Some(Duration::from_secs(40)));
        assert_eq!(store.blocked_for(&2), None, "other keys are not blocked");
        // A failure while blocked renews the block.
        assert_eq!(store.fail(&1, cooldown), Some(cooldown));
        assert_eq!(store.blocked_for(&1), Some(cooldown));
        clock.advance(cooldown - Duration::from_nanos(1));
        assert_eq!(store.blocked_for(&1), Some(Duration::from_nanos(1)));
        clock.advance(Duration::from_nanos(1));
        assert_eq!(store.blocked_for(&1), None, "over at the cooldown's end");
        assert_eq!(
            store.blocked_keys(),
            0,
            "an expired block is dropped when looked up"
        );
        // The trait answers the same, at once.
        assert!(matches!(
            RateLimitStore::blocked(&store, &1),
            Check::Ready(Ok(None))
        ));
        // The rate has refilled meanwhile: two failures are allowed again, the third blocks.
        for _ in 0..2 {
            assert!(matches!(
                RateLimitStore::record_failure(&store, &1, cooldown),
                Check::Ready(Ok(None))
            ));
        }
        assert!(matches!(
            RateLimitStore::record_failure(&store, &1, cooldown),
            Check::Ready(Ok(Some(blocked_for))) if blocked_for == cooldown
        ));
        assert!(matches!(
            RateLimitStore::blocked(&store, &1),
            Check::Ready(Ok(Some(left))) if left == cooldown
        ));
    }

    #[test]
    fn a_full_block_list_takes_new_blocks_only_once_blocks_expire() {
        let clock = FakeRelativeClock::default();
        let store = store(Rate::per_hour(nz(1)), &clock).max_keys(NonZeroUsize::new(2).unwrap());
        let cooldown = Duration::from_secs(60);
        for key in 0..2 {
            assert_eq!(store.fail(&key, cooldown), None);
            assert_eq!(store.fail(&key, cooldown), Some(cooldown));
        }
        assert_eq!(store.blocked_keys(), 2);
        // Full of blocks still running: another failing key is not blocked.
        assert_eq!(store.fail(&2, cooldown), None);
        assert_eq!(store.fail(&2, cooldown), None);
        assert_eq!(store.blocked_for(&2), None);
        assert_eq!(store.blocked_keys(), 2);
        // Once they expire, the next block makes room by dropping them.
        clock.advance(Duration::from_secs(61));
        assert_eq!(store.fail(&3, cooldown), Some(cooldown));
        assert_eq!(store.blocked_keys(), 1);
        assert_eq!(store.blocked_for(&3), Some(cooldown));
    }

    #[test]
    fn expired_blocks_are_purged_at_most_once_a_second() {
        let clock = FakeRelativeClock::default();
        let store = store(Rate::per_hour(nz(1)), &clock).max_keys(NonZeroUsize::new(1).unwrap());
        let blocked = store.blocked.get_or_init(DashMap::new);
        // A purge at 1 s drops what expired by then.
        clock.advance(Duration::from_secs(1));
        blocked.insert(1, nanos(Duration::from_millis(1_100)));
        blocked.insert(2, nanos(Duration::from_millis(500)));
        store.purge_expired(blocked, store.time.now());
        assert_eq!(store.blocked_keys(), 1);
        // Another within the second changes nothing, even with blocks expired.
        clock.advance(Duration::from_millis(999));
        store.purge_expired(blocked, store.time.now());
        assert_eq!(store.blocked_keys(), 1);
        // A second later it runs again.
        clock.advance(Duration::from_millis(1));
        store.purge_expired(blocked, store.time.now());
        assert_eq!(store.blocked_keys(), 0);
    }

    #[test]
    fn a_cooldown_of_centuries_saturates() {
        let clock = FakeRelativeClock::default();
        let store = store(Rate::per_hour(nz(1)), &clock);
        store.fail(&1, Duration::MAX);
        assert_eq!(store.fail(&1, Duration::MAX), Some(Duration::MAX));
        assert!(store.blocked_for(&1).unwrap() > Duration::from_secs(100 * 365 * 24 * 3600));
    }

    #[test]
    fn a_full_burst_reports_one_taken_whether_fresh_refilled_or_just_refilled() {
        let clock = FakeRelativeClock::default();
        let store = store(Rate::per_second(nz(10)).burst(nz(3)), &clock);
        let full = (2, Duration::from_millis(100));
        let fresh = store.decide(&1);
        assert_eq!((fresh.remaining(), fresh.reset()), full);
        // Refilled exactly now (the TAT is now): full again.
        clock.advance(Duration::from_millis(100));
        let just = store.decide(&1);
        assert_eq!((just.remaining(), just.reset()), full);
        // A nanosecond short of refilled: one less remains, and it takes longer.
        clock.advance(Duration::from_millis(100) - Duration::from_nanos(1));
        let short = store.decide(&1);
        assert_eq!(
            (short.remaining(), short.reset()),
            (1, Duration::from_millis(200))
        );
        // Long refilled: full.
        clock.advance(Duration::from_secs(60));
        let refilled = store.decide(&1);
        assert_eq!((refilled.remaining(), refilled.reset()), full);
        // A burst of one: nothing remains after a request, full again after the interval.
        let single_burst =
            MemoryStore::with_clock(Rate::per_second(nz(4)).burst(nz(1)), clock.clone());
        let first = single_burst.decide(&1);
        assert_eq!(
            (first.remaining(), first.reset()),
            (0, Duration::from_millis(250))
        );
        assert!(!single_burst.decide(&1).is_allowed());
    }

    #[test]
    fn decisions_report_what_remains_and_when_the_burst_is_full_again() {
        let clock = FakeRelativeClock::default();
        let store = store(Rate::per_second(nz(10)).burst(nz(3)), &clock);
        let first = store.decide(&1);
        assert_eq!(
            (first.remaining(), first.reset()),
            (2, Duration::from_millis(100))
        );
        let second = store.decide(&1);
        assert_eq!(
            (second.remaining(), second.reset()),
            (1, Duration::from_millis(200))
        );
        clock.advance(Duration::from_millis(150));
        // 1.5 refilled: one more whole request now than before.
        let third = store.decide(&1);
        assert_eq!(
            (third.remaining(), third.reset()),
            (1, Duration::from_millis(200))
        );
        assert!(!first.is_overflow() && third.is_allowed());
    }
}
