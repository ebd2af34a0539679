//! [`MemoryDedupeStore`]: claims and done marks in a bounded concurrent map.

use std::{
    fmt,
    future::Ready,
    num::NonZeroUsize,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    time::Duration,
};

use dashmap::{mapref::entry::Entry, DashMap};
use tokio::time::Instant;

use super::{Check, Claim, DedupeStore, EventKey, LeaseToken, Settled, StoreError};

/// The least time between two sweeps of expired keys.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The in-memory deduplication store (the default): each key's claim or done mark in a
/// concurrent map, for one instance.
///
/// # Bounded memory, no housekeeping
///
/// - Claims expire with their lease and done marks with their keep time. Expired keys are
///   swept by the store itself, inside a [`claim`](DedupeStore::claim) that adds a key (or
///   meets the cap), at most once a second. No background task.
/// - At most [`max_keys`](Self::max_keys) keys (default 1 000 000) are held. **At the cap**,
///   after a sweep, a claim of a key not yet held answers a [`StoreError`], which the layer
///   answers with a retryable `503` `dedupe_unavailable`: an event that cannot be recorded is
///   never answered `200`. Keys already held keep working. The cap may be exceeded by at most
///   one key per concurrently running claim.
/// - A key costs about 180 bytes, map overhead included: 175 for an ElevenLabs request id
///   (a 36-byte UUID), 183 for a conversation key (55 bytes), measured with a million done
///   marks by `cargo run --release --example dedupe_memory --features dedupe`. The default
///   cap therefore holds about 175 MiB at most; at 24 hours of done marks it is reached by
///   11.6 deliveries a second around the clock. Size the cap from your traffic times
///   [`keep_done`](super::DeduplicateLayer::keep_done).
///
/// # Time
///
/// Read from [`tokio::time::Instant`], so claims follow `tokio::time::pause` and `advance` in
/// tests. Make the store inside the runtime whose time it follows.
///
/// ```
/// use std::time::Duration;
/// use hookgate::dedupe::{Check, Claim, DedupeStore, EventKey, LeaseToken, MemoryDedupeStore, Settled};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// fn answer<F, T>(check: Check<F, T>) -> T {
///     match check {
///         Check::Ready(answer) => answer.unwrap(),
///         Check::Pending(_) => unreachable!("the memory store answers at once"),
///     }
/// }
/// let store = MemoryDedupeStore::new();
/// let key = EventKey::new("req_1");
/// let (first, second) = (LeaseToken::random(), LeaseToken::random());
/// let lease = Duration::from_secs(60);
/// assert_eq!(answer(store.claim(&key, first, lease)), Claim::Claimed);
/// assert_eq!(
///     answer(store.claim(&key, second, lease)),
///     Claim::InFlight { lease_left: lease }
/// );
/// // Only the token holding the claim settles it.
/// assert_eq!(answer(store.complete(&key, second, Duration::from_secs(3600))), Settled::LeaseLost);
/// assert_eq!(answer(store.complete(&key, first, Duration::from_secs(3600))), Settled::Settled);
/// assert_eq!(answer(store.claim(&key, second, lease)), Claim::Done);
/// tokio::time::advance(Duration::from_secs(3600)).await;
/// assert_eq!(answer(store.claim(&key, second, lease)), Claim::Claimed);
/// # }
/// ```
pub struct MemoryDedupeStore {
    map: DashMap<EventKey, State>,
    /// The number of keys in `map`, exact, so the cap costs no map scan.
    len: AtomicUsize,
    max_keys: usize,
    origin: Instant,
    /// When the last sweep ran, in nanoseconds since `origin`.
    last_sweep: AtomicU64,
}

/// A held key: claimed by a token, or done; either until a time (nanoseconds since the
/// store's origin). A key past its time is free.
#[derive(Clone, Copy, Debug)]
enum State {
    Claimed { token: LeaseToken, until: u64 },
    Done { until: u64 },
}

impl State {
    fn until(self) -> u64 {
        match self {
            Self::Claimed { until, .. } | Self::Done { until } => until,
        }
    }

    /// Whether `token` holds this key's claim at `now`.
    fn is_held_by(self, token: LeaseToken, now: u64) -> bool {
        matches!(self, Self::Claimed { token: holder, until } if holder == token && until > now)
    }

    /// A claim of a held key: taken over when the key has expired.
    fn claim(&mut self, token: LeaseToken, now: u64, until: u64) -> Claim {
        match *self {
            held if held.until() <= now => {
                *self = Self::Claimed { token, until };
                Claim::Claimed
            }
            Self::Done { .. } => Claim::Done,
            Self::Claimed { until: held, .. } => Claim::InFlight {
                lease_left: Duration::from_nanos(held - now),
            },
        }
    }
}

impl MemoryDedupeStore {
    /// The default cap on keys held.
    pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

    /// An empty store holding at most [`DEFAULT_MAX_KEYS`](Self::DEFAULT_MAX_KEYS) keys.
    #[must_use]
    pub fn new() -> Self {
        Self {
            map: DashMap::new(),
            len: AtomicUsize::new(0),
            max_keys: Self::DEFAULT_MAX_KEYS,
            origin: Instant::now(),
            last_sweep: AtomicU64::new(0),
        }
    }

    /// The most keys held at once (default 1 000 000); see the type docs for what happens at
    /// the cap.
    #[must_use]
    pub fn max_keys(mut self, max_keys: NonZeroUsize) -> Self {
        self.max_keys = max_keys.get();
        self
    }

    /// The number of keys held now (claimed or done), expired ones not yet swept included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Now, in nanoseconds since the store was made.
    fn now(&self) -> u64 {
        nanos(self.origin.elapsed())
    }

    fn claim_now(
        &self,
        key: &EventKey,
        token: LeaseToken,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let now = self.now();
        let until = now.saturating_add(nanos(lease));
        if let Some(mut state) = self.map.get_mut(key) {
            return Ok(state.claim(token, now, until));
        }
        if self.len() >= self.max_keys {
            self.maybe_sweep(now);
            if self.len() >= self.max_keys {
                return Err(StoreError::new(
                    "the memory dedupe store holds max_keys keys, none of them expired",
                ));
            }
        }
        // The entry's shard lock is released (at the end of the `match`) before a sweep,
        // which locks every shard in turn.
        let (claim, added) = match self.map.entry(key.clone()) {
            Entry::Occupied(mut held) => (held.get_mut().claim(token, now, until), false),
            Entry::Vacant(free) => {
                free.insert(State::Claimed { token, until });
                self.len.fetch_add(1, Ordering::Relaxed);
                (Claim::Claimed, true)
            }
        };
        if added {
            // Memory only grows when a key is added: that is when expired keys are swept.
            self.maybe_sweep(now);
        }
        Ok(claim)
    }

    fn complete_now(&self, key: &EventKey, token: LeaseToken, keep: Duration) -> Settled {
        let now = self.now();
        match self.map.get_mut(key) {
            Some(mut state) if state.is_held_by(token, now) => {
                *state = State::Done {
                    until: now.saturating_add(nanos(keep)),
                };
                Settled::Settled
            }
            _ => Settled::LeaseLost,
        }
    }

    fn release_now(&self, key: &EventKey, token: LeaseToken) -> Settled {
        let now = self.now();
        if self
            .map
            .remove_if(key, |_, state| state.is_held_by(token, now))
            .is_some()
        {
            self.len.fetch_sub(1, Ordering::Relaxed);
            Settled::Settled
        } else {
            Settled::LeaseLost
        }
    }

    /// Sweeps expired keys if the last sweep is at least [`SWEEP_INTERVAL`] ago.
    fn maybe_sweep(&self, now: u64) {
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= nanos(SWEEP_INTERVAL)
            && self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sweep(now);
        }
    }

    /// Drops every key expired at `now`.
    fn sweep(&self, now: u64) {
        let before = self.len();
        let mut removed = 0;
        self.map.retain(|_, state| {
            let keep = state.until() > now;
            removed += usize::from(!keep);
            keep
        });
        self.len.fetch_sub(removed, Ordering::Relaxed);
        if removed > 0 && worth_shrinking(self.map.capacity(), before.saturating_sub(removed)) {
            self.map.shrink_to_fit();
        }
    }
}

/// Whether a map with room for `capacity` keys, `left` of them still held after a sweep, is
/// worth a rehash to give memory back: only when it holds under a quarter of its room, and never
/// for room of 256 keys or less.
fn worth_shrinking(capacity: usize, left: usize) -> bool {
    capacity > left.max(64).saturating_mul(4)
}

impl Default for MemoryDedupeStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryDedupeStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDedupeStore")
            .field("keys", &self.len())
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

impl DedupeStore for MemoryDedupeStore {
    type ClaimFuture = Ready<Result<Claim, StoreError>>;
    type SettleFuture = Ready<Result<Settled, StoreError>>;

    fn claim(
        &self,
        key: &EventKey,
        token: LeaseToken,
        lease: Duration,
    ) -> Check<Self::ClaimFuture, Claim> {
        Check::Ready(self.claim_now(key, token, lease))
    }

    fn complete(
        &self,
        key: &EventKey,
        token: LeaseToken,
        keep: Duration,
    ) -> Check<Self::SettleFuture, Settled> {
        Check::Ready(Ok(self.complete_now(key, token, keep)))
    }

    fn release(&self, key: &EventKey, token: LeaseToken) -> Check<Self::SettleFuture, Settled> {
        Check::Ready(Ok(self.release_now(key, token)))
    }
}

/// A duration in nanoseconds, saturating (a keep time of centuries is forever).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::time::advance;

    use super::*;

    const LEASE: Duration = Duration::from_secs(60);
    const KEEP: Duration = Duration::from_secs(3600);

    fn ready<T>(check: Check<Ready<Result<T, StoreError>>, T>) -> Result<T, StoreError> {
        match check {
            Check::Ready(answer) => answer,
            Check::Pending(_) => unreachable!("the memory store answers at once"),
        }
    }

    fn claim(store: &MemoryDedupeStore, key: &str, token: LeaseToken) -> Result<Claim, StoreError> {
        ready(store.claim(&EventKey::new(key), token, LEASE))
    }

    fn complete(store: &MemoryDedupeStore, key: &str, token: LeaseToken) -> Settled {
        ready(store.complete(&EventKey::new(key), token, KEEP)).unwrap()
    }

    fn release(store: &MemoryDedupeStore, key: &str, token: LeaseToken) -> Settled {
        ready(store.release(&EventKey::new(key), token)).unwrap()
    }

    fn token(n: u128) -> LeaseToken {
        LeaseToken::from_u128(n)
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_is_in_flight_then_done_for_its_keep_time() {
        let store = MemoryDedupeStore::new();
        assert_eq!(claim(&store, "k", token(1)), Ok(Claim::Claimed));
        advance(Duration::from_millis(1500)).await;
        assert_eq!(
            claim(&store, "k", token(2)),
            Ok(Claim::InFlight {
                lease_left: LEASE - Duration::from_millis(1500)
            })
        );
        assert_eq!(complete(&store, "k", token(1)), Settled::Settled);
        assert_eq!(claim(&store, "k", token(2)), Ok(Claim::Done));
        assert_eq!(store.len(), 1);
        advance(KEEP - Duration::from_nanos(1)).await;
        assert_eq!(
            claim(&store, "k", token(2)),
            Ok(Claim::Done),
            "kept to the end"
        );
        advance(Duration::from_nanos(1)).await;
        assert_eq!(
            claim(&store, "k", token(2)),
            Ok(Claim::Claimed),
            "then free"
        );
        assert_eq!(
            store.len(),
            1,
            "the expired entry was taken over, not added"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_holding_token_settles() {
        let store = MemoryDedupeStore::new();
        assert!(store.is_empty());
        assert_eq!(claim(&store, "k", token(1)), Ok(Claim::Claimed));
        assert!(!store.is_empty());
        assert_eq!(complete(&store, "k", token(2)), Settled::LeaseLost);
        assert_eq!(release(&store, "k", token(2)), Settled::LeaseLost);
        assert_eq!(
            claim(&store, "k", token(3)),
            Ok(Claim::InFlight { lease_left: LEASE }),
            "still claimed by the first token"
        );
        assert_eq!(release(&store, "k", token(1)), Settled::Settled);
        assert_eq!(store.len(), 0, "a release frees the entry");
        assert!(store.is_empty());
        assert_eq!(
            release(&store, "k", token(1)),
            Settled::LeaseLost,
            "nothing left"
        );
        assert_eq!(complete(&store, "k", token(1)), Settled::LeaseLost);
        assert_eq!(store.len(), 0);
        assert_eq!(claim(&store, "k", token(4)), Ok(Claim::Claimed));
        assert_eq!(store.len(), 1);
        assert_eq!(complete(&store, "k", token(4)), Settled::Settled);
        assert_eq!(
            complete(&store, "k", token(4)),
            Settled::LeaseLost,
            "done is not a claim"
        );
        assert_eq!(
            release(&store, "k", token(4)),
            Settled::LeaseLost,
            "a done key stays done"
        );
        assert_eq!(claim(&store, "k", token(5)), Ok(Claim::Done));
        assert_eq!(store.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_lease_settles_nothing_and_the_key_is_claimed_again() {
        let store = MemoryDedupeStore::new();
        assert_eq!(claim(&store, "k", token(1)), Ok(Claim::Claimed));
        advance(LEASE - Duration::from_nanos(1)).await;
        assert_eq!(
            claim(&store, "k", token(2)),
            Ok(Claim::InFlight {
                lease_left: Duration::from_nanos(1)
            })
        );
        advance(Duration::from_nanos(1)).await;
        // Expired, not yet claimed again: the old token has lost it all the same.
        assert_eq!(complete(&store, "k", token(1)), Settled::LeaseLost);
        assert_eq!(release(&store, "k", token(1)), Settled::LeaseLost);
        assert_eq!(claim(&store, "k", token(2)), Ok(Claim::Claimed));
        assert_eq!(complete(&store, "k", token(1)), Settled::LeaseLost);
        assert_eq!(release(&store, "k", token(1)), Settled::LeaseLost);
        assert_eq!(
            claim(&store, "k", token(3)),
            Ok(Claim::InFlight { lease_left: LEASE }),
            "the newer claim is intact"
        );
        assert_eq!(complete(&store, "k", token(2)), Settled::Settled);
        assert_eq!(claim(&store, "k", token(3)), Ok(Claim::Done));
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_a_new_key_is_an_error_until_a_sweep_frees_room() {
        let store = MemoryDedupeStore::new().max_keys(NonZeroUsize::new(2).unwrap());
        assert_eq!(claim(&store, "a", token(1)), Ok(Claim::Claimed));
        assert_eq!(claim(&store, "b", token(2)), Ok(Claim::Claimed));
        let full = claim(&store, "c", token(3)).unwrap_err();
        assert!(full.to_string().contains("max_keys"), "{full}");
        assert_eq!(store.len(), 2);
        // Keys already held keep working at the cap.
        assert_eq!(
            claim(&store, "a", token(4)),
            Ok(Claim::InFlight { lease_left: LEASE })
        );
        assert_eq!(complete(&store, "a", token(1)), Settled::Settled);
        assert_eq!(claim(&store, "a", token(4)), Ok(Claim::Done));
        // `b` expires; the next claim of a new key sweeps it and takes its room.
        advance(LEASE).await;
        assert_eq!(claim(&store, "c", token(3)), Ok(Claim::Claimed));
        assert_eq!(store.len(), 2);
        assert_eq!(claim(&store, "d", token(5)).unwrap_err(), full);
        assert_eq!(
            claim(&store, "a", token(4)),
            Ok(Claim::Done),
            "a's done mark survived"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_release_at_the_cap_frees_room_at_once() {
        let store = MemoryDedupeStore::new().max_keys(NonZeroUsize::new(1).unwrap());
        assert_eq!(claim(&store, "a", token(1)), Ok(Claim::Claimed));
        assert!(claim(&store, "b", token(2)).is_err());
        assert_eq!(release(&store, "a", token(1)), Settled::Settled);
        assert_eq!(claim(&store, "b", token(2)), Ok(Claim::Claimed));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_keys_are_swept_by_an_insert_at_most_once_a_second() {
        let store = MemoryDedupeStore::new();
        let short = Duration::from_millis(100);
        let claim_for = |key: &str, lease| ready(store.claim(&EventKey::new(key), token(9), lease));
        // The first sweep is due one second after the store was made.
        assert_eq!(claim_for("a", short), Ok(Claim::Claimed));
        advance(Duration::from_millis(900)).await;
        assert_eq!(claim_for("b", short), Ok(Claim::Claimed));
        assert_eq!(store.len(), 2, "`a` expired, but no sweep is due yet");
        advance(Duration::from_millis(100)).await;
        // `b` expired just now: taken over, which adds no key, so sweeps nothing.
        assert_eq!(claim_for("b", short), Ok(Claim::Claimed));
        assert_eq!(store.len(), 2);
        assert_eq!(claim_for("c", short), Ok(Claim::Claimed));
        assert_eq!(store.len(), 2, "swept `a` at one second, with `c` added");
        advance(Duration::from_millis(500)).await;
        assert_eq!(claim_for("d", short), Ok(Claim::Claimed));
        assert_eq!(
            store.len(),
            3,
            "`b` and `c` expired, but the last sweep is 0.5 s old"
        );
        advance(Duration::from_millis(500)).await;
        assert_eq!(claim_for("e", LEASE), Ok(Claim::Claimed));
        assert_eq!(store.len(), 1, "only `e` is left");
    }

    /// Claims `n` keys named `prefix<i>` for `lease`.
    fn fill(store: &MemoryDedupeStore, prefix: &str, n: usize, lease: Duration) {
        for i in 0..n {
            let key = EventKey::new(format!("{prefix}{i}"));
            assert_eq!(
                ready(store.claim(&key, token(1), lease)),
                Ok(Claim::Claimed)
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_sweep_that_empties_a_large_map_gives_its_room_back() {
        let store = MemoryDedupeStore::new();
        fill(&store, "old", 10_000, Duration::from_millis(10));
        let grown = store.map.capacity();
        assert!(grown >= 10_000, "{grown}");
        advance(SWEEP_INTERVAL).await;
        fill(&store, "new", 1, LEASE);
        assert_eq!(store.len(), 1);
        assert!(
            store.map.capacity() < grown / 4,
            "{} of {grown}",
            store.map.capacity()
        );
    }

    #[test]
    fn a_small_map_keeps_its_room() {
        // Room for a few hundred keys is never worth a rehash, however empty. (The map's own
        // `capacity()` cannot show this end to end: removed keys may leave tombstones behind,
        // which lower it by chance, depending on the random hash seed.)
        assert!(!worth_shrinking(256, 0));
        assert!(!worth_shrinking(256, 63));
        assert!(worth_shrinking(257, 0));
        assert!(worth_shrinking(257, 64));
        // Larger maps once under a quarter full.
        assert!(!worth_shrinking(4_000, 1_000));
        assert!(worth_shrinking(4_001, 1_000));
        assert!(!worth_shrinking(usize::MAX, usize::MAX / 3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sweep_that_frees_nothing_does_not_rehash() {
        // Released keys leave room behind without a sweep; a sweep that then finds nothing
        // expired leaves the map as it is.
        let store = MemoryDedupeStore::new();
        fill(&store, "old", 10_000, LEASE);
        for i in 0..10_000 {
            let key = EventKey::new(format!("old{i}"));
            assert_eq!(ready(store.release(&key, token(1))), Ok(Settled::Settled));
        }
        let grown = store.map.capacity();
        assert!(grown >= 10_000, "{grown}");
        advance(SWEEP_INTERVAL).await;
        fill(&store, "new", 1, LEASE);
        assert!(store.map.capacity() >= grown, "not shrunk");
    }

    #[tokio::test(start_paused = true)]
    async fn huge_durations_saturate() {
        let store = MemoryDedupeStore::new();
        let key = EventKey::new("k");
        assert_eq!(
            ready(store.claim(&key, token(1), Duration::MAX)),
            Ok(Claim::Claimed)
        );
        advance(Duration::from_secs(365 * 24 * 3600)).await;
        assert!(matches!(
            ready(store.claim(&key, token(2), LEASE)),
            Ok(Claim::InFlight { .. })
        ));
        assert_eq!(
            ready(store.complete(&key, token(1), Duration::MAX)),
            Ok(Settled::Settled)
        );
        assert_eq!(ready(store.claim(&key, token(2), LEASE)), Ok(Claim::Done));
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_store_is_one_store() {
        let store = Arc::new(MemoryDedupeStore::new());
        let other = Arc::clone(&store);
        let key = EventKey::new("k");
        assert_eq!(
            ready(store.claim(&key, token(1), LEASE)),
            Ok(Claim::Claimed)
        );
        assert_eq!(
            ready(other.claim(&key, token(2), LEASE)),
            Ok(Claim::InFlight { lease_left: LEASE })
        );
        assert_eq!(
            ready(other.complete(&key, token(1), KEEP)),
            Ok(Settled::Settled)
        );
        assert_eq!(ready(store.claim(&key, token(2), LEASE)), Ok(Claim::Done));
        assert_eq!(ready(other.release(&key, token(2))), Ok(Settled::LeaseLost));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn debug_shows_counts() {
        let store = MemoryDedupeStore::default().max_keys(NonZeroUsize::new(7).unwrap());
        assert_eq!(
            format!("{store:?}"),
            "MemoryDedupeStore { keys: 0, max_keys: 7, .. }"
        );
    }
}
