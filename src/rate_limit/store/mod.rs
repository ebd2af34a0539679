//! Where limiter state lives: the [`RateLimitStore`] trait, and the in-memory [`MemoryStore`]
//! in [`memory`].

mod memory;

use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

pub use self::memory::MemoryStore;
use super::Rate;
pub use crate::store::{Check, StoreError};

/// The answer of a store for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    remaining: u32,
    reset: Duration,
    overflow: bool,
    block: Option<BlockLookup>,
}

/// Names one block list (a failure limiter's), so that a decision taken on it can be told
/// apart from one taken on another: see [`Decision::with_block`].
///
/// Each id made by [`unique`](BlockListId::unique) differs from every other in the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockListId(u64);

impl BlockListId {
    /// An id no other call in this process returns.
    #[must_use]
    pub fn unique() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A block list looked up by a rate limiter's store in the same decision as the rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockLookup {
    pub(crate) list: BlockListId,
    pub(crate) blocked: Option<Duration>,
    /// The decision failed: the block is unknown, and asking the same store again for it
    /// would most likely fail too (after another timeout).
    pub(crate) failed: bool,
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
            block: None,
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
            block: None,
        }
    }

    /// Marks a decision taken on the shared overflow bucket (the store was full).
    #[must_use]
    pub const fn in_overflow(mut self) -> Self {
        self.overflow = true;
        self
    }

    /// Says that the store also looked `key` up in the block list `list` in this very decision
    /// (one round trip to a shared store instead of two): `blocked` is the time left of its
    /// block, `None` if it is not blocked.
    ///
    /// A per-client [`RateLimitLayer`](super::RateLimitLayer) passes such a lookup on with the
    /// request; a [`FailureLimitLayer`](super::FailureLimitLayer) inside it whose store keeps
    /// that list ([`RateLimitStore::block_list`]) takes it for the same key instead of asking
    /// its store. A store does this when the per-client limiter's and the failure limiter's
    /// state of a client share one key (a Redis hash, say).
    #[must_use]
    pub const fn with_block(mut self, list: BlockListId, blocked: Option<Duration>) -> Self {
        self.block = Some(BlockLookup {
            list,
            blocked,
            failed: false,
        });
        self
    }

    /// The block list looked up with this decision and what it said, if it was.
    #[must_use]
    pub fn block(&self) -> Option<(BlockListId, Option<Duration>)> {
        self.block.map(|lookup| (lookup.list, lookup.blocked))
    }

    pub(crate) const fn block_lookup(&self) -> Option<BlockLookup> {
        self.block
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

/// Holds the limiter state of every key: in memory ([`MemoryStore`], the default) or in a store
/// shared by several instances.
///
/// One store enforces one [`Rate`] per key ([`rate`](RateLimitStore::rate)). A
/// [`RateLimitLayer`](super::RateLimitLayer) counts requests in it
/// ([`check`](RateLimitStore::check)); a [`FailureLimitLayer`](super::FailureLimitLayer) counts
/// failed verifications in it and keeps its block list there
/// ([`record_failure`](RateLimitStore::record_failure), [`blocked`](RateLimitStore::blocked)).
/// Give each limiter a store of its own (a key prefix of its own in a shared server).
///
/// # Implementing a store
///
/// Every method takes **one decision for one key**, designed to be one round trip to a shared
/// store: a script that reads and updates the key atomically (a Redis Lua script with
/// `EVALSHA`, say), never a read and a separate write that two instances could interleave.
///
/// - **Ready or pending.** A store that can answer at once returns [`Check::Ready`] (the memory
///   store always does). One that must wait returns its own future in [`Check::Pending`]: the
///   layer polls it inside its response future, so nothing is boxed or spawned per request,
///   and the inner service is not called (no body is read) before the answer.
/// - **Time is the store's.** A shared store reads the time where the state lives (Redis
///   `TIME`), so instances whose clocks disagree still agree on every key. Answers carry
///   durations ("retry after", "blocked for"), never instants.
/// - **Keys** are the layer's [`KeyExtractor::Key`](super::KeyExtractor::Key) (an IP address for
///   [`ClientIp`](crate::client_ip::ClientIp)); a shared store serializes them.
/// - **Bounded memory.** Expire a key's state once it is as good as fresh (its burst refilled,
///   its block over), e.g. with a TTL set by the same script.
/// - **Failures.** When the store cannot answer, return a [`StoreError`]: the rate limiter then
///   fails open or closed as [`OnStoreError`](super::OnStoreError) says; the failure limiter
///   fails open (a request is let through, a failure goes uncounted), logged at `warn`.
///
/// The arithmetic, for `check` and `record_failure` alike, is GCRA: with `t` the rate's
/// [`replenish_interval`](Rate::replenish_interval), `burst` its
/// [`burst_size`](Rate::burst_size), `tau = t * (burst - 1)` and the key's theoretical arrival
/// time `tat` (`now` for a key never seen), an event at `now` conforms when
/// `now >= tat - tau`, and then `tat` becomes `max(tat, now) + t`; a non-conforming event
/// changes nothing.
pub trait RateLimitStore<K> {
    /// The future of a [`check`](RateLimitStore::check) the store cannot answer at once.
    type CheckFuture: Future<Output = Result<Decision, StoreError>>;

    /// The future of a [`record_failure`](RateLimitStore::record_failure) or
    /// [`blocked`](RateLimitStore::blocked) the store cannot answer at once.
    type BlockFuture: Future<Output = Result<Option<Duration>, StoreError>>;

    /// Counts one request against `key` under [`rate`](RateLimitStore::rate) and decides.
    ///
    /// Allowed: [`Decision::allowed`] with the requests that could still pass at once
    /// (`(now + tau + t - tat) / t` after the update, at most the burst) and the time until
    /// the key is back to its full burst. Over the rate: [`Decision::denied`] with the time
    /// until the next request conforms (`tat - tau - now`). A store that tracks a bounded
    /// number of keys marks decisions taken for a key it could not track
    /// ([`Decision::in_overflow`]).
    fn check(&self, key: &K) -> Check<Self::CheckFuture, Decision>;

    /// Counts one failure of `key` under [`rate`](RateLimitStore::rate), as
    /// [`check`](RateLimitStore::check) counts a request. A failure over the rate **blocks the
    /// key for `cooldown`** from now (a block already running is renewed) and the answer is
    /// `Some(time blocked for)`; otherwise `None`. A store with no room left for another block
    /// may leave the key unblocked and answer `None`.
    fn record_failure(
        &self,
        key: &K,
        cooldown: Duration,
    ) -> Check<Self::BlockFuture, Option<Duration>>;

    /// Whether `key` is blocked: `Some(time left)` while a block runs, `None` once it is over
    /// (or if there never was one).
    fn blocked(&self, key: &K) -> Check<Self::BlockFuture, Option<Duration>>;

    /// The rate this store enforces (for the `RateLimit-Policy` header).
    fn rate(&self) -> Rate;

    /// The block list this store keeps for a failure limiter, when another store (a per-client
    /// limiter's) may look it up in its own decisions ([`Decision::with_block`]); `None` (the
    /// default) when none does. A failure limiter on a store naming a list trusts a lookup of
    /// that list for the same key, taken in front of it for the same request, instead of
    /// asking [`blocked`](RateLimitStore::blocked).
    fn block_list(&self) -> Option<BlockListId> {
        None
    }

    /// The block list this store's [`check`](RateLimitStore::check) looks up with its
    /// decisions ([`Decision::with_block`]), if any; `None` by default. When such a check
    /// fails, the per-client limiter tells the failure limiter behind it that the block is
    /// unknown, and the failure limiter applies its store-error policy at once instead of
    /// asking a store that just failed (and waiting for it to fail again).
    fn reads_block_list(&self) -> Option<BlockListId> {
        None
    }
}
