//! Where the gateway keeps its per-client and per-event state: in memory (one instance, the
//! default) or on a Redis server shared by every instance ([`GatewayBuilder::redis`]).
//!
//! One store type per kind of state, either in memory or on Redis, so that the stack's type
//! does not depend on the setting: a memory store answers at once, a Redis store later.
//!
//! [`GatewayBuilder::redis`]: super::GatewayBuilder::redis

use std::{net::IpAddr, sync::Arc, time::Duration};

use crate::{
    dedupe::{Claim, DedupeStore, EventKey, LeaseToken, MemoryDedupeStore, Settled},
    rate_limit::{BlockListId, Decision, MemoryStore, Rate, RateLimitStore},
    store::{
        redis::{RedisDedupeStore, RedisRateLimitStore, StoreFuture},
        Check,
    },
};

/// A memory store's answer, which is always ready, as an answer of this module's stores.
fn at_once<T>(
    check: Check<std::future::Ready<Result<T, crate::store::StoreError>>, T>,
) -> Check<StoreFuture<T>, T> {
    match check {
        Check::Ready(result) => Check::Ready(result),
        Check::Pending(ready) => Check::Ready(ready.into_inner()),
    }
}

/// A rate limiter's store: the per-client limiter's, or the failure limiter's.
#[derive(Debug)]
pub(crate) enum LimiterStore {
    Memory(MemoryStore<IpAddr>),
    Redis(RedisRateLimitStore<IpAddr>),
}

impl LimiterStore {
    /// Clients tracked, for the gauges (only known in memory).
    pub(crate) fn tracked(&self) -> Option<usize> {
        match self {
            Self::Memory(store) => Some(store.len()),
            Self::Redis(_) => None,
        }
    }

    /// Clients blocked now, for the gauges (only known in memory).
    pub(crate) fn blocked(&self) -> Option<usize> {
        match self {
            Self::Memory(store) => Some(store.blocked_keys()),
            Self::Redis(_) => None,
        }
    }
}

impl RateLimitStore<IpAddr> for LimiterStore {
    type CheckFuture = StoreFuture<Decision>;
    type BlockFuture = StoreFuture<Option<Duration>>;

    fn check(&self, key: &IpAddr) -> Check<Self::CheckFuture, Decision> {
        match self {
            Self::Memory(store) => at_once(store.check(key)),
            Self::Redis(store) => store.check(key),
        }
    }

    fn record_failure(
        &self,
        key: &IpAddr,
        cooldown: Duration,
    ) -> Check<Self::BlockFuture, Option<Duration>> {
        match self {
            Self::Memory(store) => at_once(store.record_failure(key, cooldown)),
            Self::Redis(store) => store.record_failure(key, cooldown),
        }
    }

    fn blocked(&self, key: &IpAddr) -> Check<Self::BlockFuture, Option<Duration>> {
        match self {
            Self::Memory(store) => at_once(store.blocked(key)),
            Self::Redis(store) => store.blocked(key),
        }
    }

    fn rate(&self) -> Rate {
        match self {
            Self::Memory(store) => store.rate(),
            Self::Redis(store) => store.rate(),
        }
    }

    fn block_list(&self) -> Option<BlockListId> {
        match self {
            Self::Memory(store) => store.block_list(),
            Self::Redis(store) => store.block_list(),
        }
    }

    fn reads_block_list(&self) -> Option<BlockListId> {
        match self {
            Self::Memory(store) => store.reads_block_list(),
            Self::Redis(store) => store.reads_block_list(),
        }
    }
}

/// Deduplication's store.
#[derive(Debug)]
pub(crate) enum EventStore {
    Memory(Arc<MemoryDedupeStore>),
    Redis(RedisDedupeStore),
}

impl DedupeStore for EventStore {
    type ClaimFuture = StoreFuture<Claim>;
    type SettleFuture = StoreFuture<Settled>;

    fn claim(
        &self,
        key: &EventKey,
        token: LeaseToken,
        lease: Duration,
    ) -> Check<Self::ClaimFuture, Claim> {
        match self {
            Self::Memory(store) => at_once(store.claim(key, token, lease)),
            Self::Redis(store) => store.claim(key, token, lease),
        }
    }

    fn complete(
        &self,
        key: &EventKey,
        token: LeaseToken,
        keep: Duration,
    ) -> Check<Self::SettleFuture, Settled> {
        match self {
            Self::Memory(store) => at_once(store.complete(key, token, keep)),
            Self::Redis(store) => store.complete(key, token, keep),
        }
    }

    fn release(&self, key: &EventKey, token: LeaseToken) -> Check<Self::SettleFuture, Settled> {
        match self {
            Self::Memory(store) => at_once(store.release(key, token)),
            Self::Redis(store) => store.release(key, token),
        }
    }
}
