//! [`RedisDedupeStore`]: claims and done marks in Redis strings, one token-checked Lua script
//! call per transition.

use std::{
    fmt,
    sync::{Arc, LazyLock},
    time::Duration,
};

use ::redis::Script;

use super::{
    connection::{eval, unexpected, StoreFuture},
    key::redis_key,
    RedisStore,
};
use crate::{
    dedupe::{Claim, DedupeStore, EventKey, LeaseToken, Settled},
    store::Check,
};

static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/claim.lua")));
static COMPLETE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/complete.lua")));
static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/release.lua")));

/// The longest lease or keep time written, in milliseconds (about 317 years): Redis refuses an
/// expiry beyond its clock's range.
const MAX_MILLIS: u64 = 10_000_000_000_000;

/// A [`DedupeStore`] in Redis: made by [`RedisStore::dedupe_store`].
///
/// One string per event, `{prefix}:{name}:{event key}` (the event key as it is, or `sha256:`
/// and its hex SHA-256 when longer than 200 bytes):
///
/// | value | state | expires |
/// |---|---|---|
/// | (no key) | free | |
/// | `c:<token, 32 hex digits>` | claimed by the delivery holding that token | with the lease (`PX`) |
/// | `d` | done | after the keep time (`PX`) |
///
/// Each of [`claim`](DedupeStore::claim), [`complete`](DedupeStore::complete) and
/// [`release`](DedupeStore::release) is one `EVALSHA` of a Lua script on that key:
/// `complete` and `release` change it only while it holds the caller's token, and answer
/// [`Settled::LeaseLost`] otherwise. An in-flight claim answers the time left of its lease
/// (`PTTL`). Leases and keep times are whole milliseconds (rounded up, at least 1 ms) on the
/// server's clock.
#[derive(Clone)]
pub struct RedisDedupeStore {
    redis: RedisStore,
    namespace: Arc<[u8]>,
}

impl RedisStore {
    /// A deduplication store keeping its keys as `{prefix}:{name}:{event key}`. Instances that
    /// deduplicate the same events need the same prefix and name.
    #[must_use]
    pub fn dedupe_store(&self, name: &str) -> RedisDedupeStore {
        RedisDedupeStore {
            redis: self.clone(),
            namespace: self.namespace(name),
        }
    }
}

impl RedisDedupeStore {
    fn key(&self, key: &EventKey) -> Vec<u8> {
        redis_key(&self.namespace, key.as_str().as_bytes())
    }
}

impl fmt::Debug for RedisDedupeStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisDedupeStore")
            .field("namespace", &String::from_utf8_lossy(&self.namespace))
            .field("redis", &self.redis)
            .finish()
    }
}

impl DedupeStore for RedisDedupeStore {
    type ClaimFuture = StoreFuture<Claim>;
    type SettleFuture = StoreFuture<Settled>;

    fn claim(
        &self,
        key: &EventKey,
        token: LeaseToken,
        lease: Duration,
    ) -> Check<Self::ClaimFuture, Claim> {
        let key = self.key(key);
        let op = "dedupe.claim";
        Check::Pending(self.redis.call(op, move |manager| async move {
            let args = (claim_value(token), millis(lease));
            let answer: Vec<i64> = eval(manager, op, &CLAIM, key, args).await?;
            claimed(&answer).ok_or_else(|| unexpected(op, &answer))
        }))
    }

    fn complete(
        &self,
        key: &EventKey,
        token: LeaseToken,
        keep: Duration,
    ) -> Check<Self::SettleFuture, Settled> {
        let key = self.key(key);
        let op = "dedupe.complete";
        Check::Pending(self.redis.call(op, move |manager| async move {
            let args = (claim_value(token), millis(keep));
            let answer: i64 = eval(manager, op, &COMPLETE, key, args).await?;
            settled(answer).ok_or_else(|| unexpected(op, &[answer]))
        }))
    }

    fn release(&self, key: &EventKey, token: LeaseToken) -> Check<Self::SettleFuture, Settled> {
        let key = self.key(key);
        let op = "dedupe.release";
        Check::Pending(self.redis.call(op, move |manager| async move {
            let answer: i64 = eval(manager, op, &RELEASE, key, claim_value(token)).await?;
            settled(answer).ok_or_else(|| unexpected(op, &[answer]))
        }))
    }
}

/// The value of a key claimed with `token`.
fn claim_value(token: LeaseToken) -> String {
    format!("c:{:032x}", token.as_u128())
}

/// A lease or keep time in whole milliseconds, rounded up, at least 1.
fn millis(duration: Duration) -> u64 {
    let millis = duration.as_nanos().div_ceil(1_000_000);
    u64::try_from(millis)
        .unwrap_or(MAX_MILLIS)
        .clamp(1, MAX_MILLIS)
}

/// A claim answer: `[0, _]` claimed, `[1, _]` done, `[2, ms left]` in flight.
fn claimed(answer: &[i64]) -> Option<Claim> {
    match *answer {
        [0, _] => Some(Claim::Claimed),
        [1, _] => Some(Claim::Done),
        // `PTTL` is negative for a key without expiry (never written so) or gone.
        [2, left] => Some(Claim::InFlight {
            lease_left: Duration::from_millis(u64::try_from(left).unwrap_or(0)),
        }),
        _ => None,
    }
}

/// A settle answer: 1 settled, 0 lease lost.
fn settled(answer: i64) -> Option<Settled> {
    match answer {
        1 => Some(Settled::Settled),
        0 => Some(Settled::LeaseLost),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_hold_the_whole_token() {
        assert_eq!(
            claim_value(LeaseToken::from_u128(0xab)),
            "c:000000000000000000000000000000ab"
        );
        assert_eq!(
            claim_value(LeaseToken::from_u128(u128::MAX)),
            format!("c:{}", "f".repeat(32))
        );
    }

    #[test]
    fn times_are_whole_milliseconds_rounded_up() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_nanos(1)), 1);
        assert_eq!(millis(Duration::from_millis(1)), 1);
        assert_eq!(millis(Duration::from_micros(1_001)), 2);
        assert_eq!(millis(Duration::from_secs(30)), 30_000);
        assert_eq!(millis(Duration::from_secs(u64::MAX)), MAX_MILLIS);
        assert_eq!(millis(Duration::from_millis(MAX_MILLIS + 1)), MAX_MILLIS);
    }

    #[test]
    fn the_store_shows_its_namespace_never_the_password() {
        let redis = RedisStore::new("redis://:hunter2@127.0.0.1:1/0")
            .unwrap()
            .prefix("gw");
        let dedupe = redis.dedupe_store("events");
        let debug = format!("{:?}", dedupe.clone());
        assert!(debug.contains("\"gw:events:\""), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert_eq!(dedupe.key(&EventKey::new("e1")), b"gw:events:e1");
    }

    #[test]
    fn answers_are_read() {
        assert_eq!(claimed(&[0, 0]), Some(Claim::Claimed));
        assert_eq!(claimed(&[1, 0]), Some(Claim::Done));
        assert_eq!(
            claimed(&[2, 1_500]),
            Some(Claim::InFlight {
                lease_left: Duration::from_millis(1_500)
            })
        );
        assert_eq!(
            claimed(&[2, -2]),
            Some(Claim::InFlight {
                lease_left: Duration::ZERO
            })
        );
        assert_eq!(claimed(&[3, 0]), None);
        assert_eq!(claimed(&[0]), None);
        assert_eq!(claimed(&[0, 0, 0]), None);
        assert_eq!(settled(1), Some(Settled::Settled));
        assert_eq!(settled(0), Some(Settled::LeaseLost));
        assert_eq!(settled(2), None);
        assert_eq!(settled(-1), None);
    }
}
