//! [`RedisRateLimitStore`]: GCRA rates and failure blocks in Redis hashes, one Lua script call
//! per decision.

use std::{
    fmt,
    marker::PhantomData,
    sync::{Arc, LazyLock},
    time::Duration,
};

use ::redis::Script;

use super::{
    connection::{eval, unexpected, StoreFuture},
    key::{store_key, StoreKey},
    RedisStore,
};
use crate::rate_limit::{BlockListId, Check, Decision, Rate, RateLimitStore};

/// The scripts, each with the time helpers and GCRA in front.
macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("scripts/time.lua"),
                include_str!(concat!("scripts/", $file))
            ))
        })
    };
}

static CHECK: LazyLock<Script> = script!("check.lua");
static FAILURE: LazyLock<Script> = script!("failure.lua");
static BLOCKED: LazyLock<Script> = script!("blocked.lua");

/// The hash field of a standalone store's TAT, and of the per-client requests' TAT.
const REQUESTS: &str = "r";
/// The hash field of the per-client failures' TAT.
const FAILURES: &str = "f";

/// The longest cooldown written: about 292 years (a longer one is taken as this).
const MAX_COOLDOWN: Duration = Duration::from_nanos(u64::MAX / 2);

/// A [`RateLimitStore`] in Redis: made by [`RedisStore::rate_limit_store`] (a standalone
/// limiter) or [`RedisStore::client_stores`] (the per-client pair, sharing one hash per client).
///
/// Every method is **one** `EVALSHA` of a Lua script on **one** key, `{prefix}:{name}:{key}`, a
/// hash whose fields hold times in nanoseconds since the Unix epoch on the server's clock:
///
/// | field | what | written by |
/// |---|---|---|
/// | `r` | the TAT of requests (a standalone store's only TAT) | `check` (`record_failure` of a standalone store) |
/// | `f` | the TAT of failures (the pair's failure store) | `record_failure` |
/// | `b` | the end of the key's block | `record_failure`, over the rate |
///
/// The answers are [`MemoryStore`](crate::rate_limit::MemoryStore)'s, with the server's time:
/// the same GCRA, the same remaining counts, resets and retry-afters (to the nanosecond; the
/// server's clock reads microseconds), except that a failure over the rate **never shortens a
/// block** (a shorter cooldown leaves a longer block running) and answers the block's time
/// left. A cooldown is at most about 292 years.
///
/// A key expires (`PEXPIRE`, set by the script that writes it) once every time in it is past:
/// its bursts refilled and its block over, when it is as good as a key never seen.
pub struct RedisRateLimitStore<K> {
    redis: RedisStore,
    namespace: Arc<[u8]>,
    rate: Rate,
    gcra: Gcra,
    /// The hash field of this store's TAT.
    field: &'static str,
    /// The block list `check` reads with every decision (the pair's requests).
    reads: Option<BlockListId>,
    /// The block list this store keeps for a failure limiter (the pair's failures).
    keeps: Option<BlockListId>,
    ops: Ops,
    key: PhantomData<fn(&K)>,
}

/// The operation names reported to an observer.
#[derive(Clone, Copy, Debug)]
struct Ops {
    check: &'static str,
    record_failure: &'static str,
    blocked: &'static str,
}

const STANDALONE: Ops = Ops {
    check: "rate.check",
    record_failure: "rate.record_failure",
    blocked: "rate.blocked",
};

const CLIENT: Ops = Ops {
    check: "client.check",
    record_failure: "client.record_failure",
    blocked: "client.blocked",
};

impl RedisStore {
    /// A store for one limiter, e.g. the verified-traffic limiter
    /// ([`RateLimitLayer::verified_with_store`](crate::rate_limit::RateLimitLayer::verified_with_store)
    /// with [`GlobalKey`](crate::rate_limit::GlobalKey), keyed by `()`): `rate` per key, in
    /// keys `{prefix}:{name}:{key}`. Works as a failure limiter's store too.
    ///
    /// Stores that must share state (several instances enforcing one limit) need the same
    /// prefix, name and rate; different limiters need different names.
    pub fn rate_limit_store<K: StoreKey>(&self, name: &str, rate: Rate) -> RedisRateLimitStore<K> {
        RedisRateLimitStore::new(self, name, rate, REQUESTS, STANDALONE)
    }

    /// The per-client pair: the store of the per-client limiter (`requests`, at
    /// `request_rate`) and the store of the failure limiter (`failures`, at `failure_rate`),
    /// sharing **one hash per client**, `{prefix}:{name}:{key}`.
    ///
    /// `requests.check` reads the client's block in the same script call as it takes the rate
    /// decision and passes it on ([`Decision::with_block`], with a [`BlockListId`] of the
    /// pair); `failures` keeps that list ([`RateLimitStore::block_list`]), so a
    /// [`FailureLimitLayer`](crate::rate_limit::FailureLimitLayer) on `failures` placed
    /// **inside** a per-client [`RateLimitLayer`](crate::rate_limit::RateLimitLayer) on
    /// `requests` takes that answer instead of asking Redis again: one round trip per request
    /// for both limiters. (Placed outside it, it asks Redis itself, one round trip more.)
    ///
    /// Every request is counted, blocked client or not, as with two memory stores in that
    /// order.
    pub fn client_stores<K: StoreKey>(
        &self,
        name: &str,
        request_rate: Rate,
        failure_rate: Rate,
    ) -> (RedisRateLimitStore<K>, RedisRateLimitStore<K>) {
        let list = BlockListId::unique();
        let mut requests = RedisRateLimitStore::new(self, name, request_rate, REQUESTS, CLIENT);
        requests.reads = Some(list);
        let mut failures = RedisRateLimitStore::new(self, name, failure_rate, FAILURES, CLIENT);
        failures.keeps = Some(list);
        (requests, failures)
    }
}

impl<K> RedisRateLimitStore<K> {
    fn new(redis: &RedisStore, name: &str, rate: Rate, field: &'static str, ops: Ops) -> Self {
        Self {
            redis: redis.clone(),
            namespace: redis.namespace(name),
            rate,
            gcra: Gcra::new(rate),
            field,
            reads: None,
            keeps: None,
            ops,
            key: PhantomData,
        }
    }
}

impl<K> Clone for RedisRateLimitStore<K> {
    fn clone(&self) -> Self {
        Self {
            redis: self.redis.clone(),
            namespace: Arc::clone(&self.namespace),
            rate: self.rate,
            gcra: self.gcra,
            field: self.field,
            reads: self.reads,
            keeps: self.keeps,
            ops: self.ops,
            key: PhantomData,
        }
    }
}

impl<K> fmt::Debug for RedisRateLimitStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimitStore")
            .field("namespace", &String::from_utf8_lossy(&self.namespace))
            .field("field", &self.field)
            .field("rate", &self.rate)
            .field("reads_block_list", &self.reads)
            .field("keeps_block_list", &self.keeps)
            .field("redis", &self.redis)
            .finish()
    }
}

impl<K: StoreKey> RateLimitStore<K> for RedisRateLimitStore<K> {
    type CheckFuture = StoreFuture<Decision>;
    type BlockFuture = StoreFuture<Option<Duration>>;

    fn check(&self, key: &K) -> Check<Self::CheckFuture, Decision> {
        let key = store_key(&self.namespace, key);
        let (op, field, gcra, reads) = (self.ops.check, self.field, self.gcra, self.reads);
        Check::Pending(self.redis.call(op, move |manager| async move {
            let (t, tau) = (split(gcra.t), split(gcra.tau));
            let args = (field, t.0, t.1, tau.0, tau.1);
            let answer: Vec<i64> = eval(manager, op, &CHECK, key, args).await?;
            decision(&gcra, reads, &answer).ok_or_else(|| unexpected(op, &answer))
        }))
    }

    fn record_failure(
        &self,
        key: &K,
        cooldown: Duration,
    ) -> Check<Self::BlockFuture, Option<Duration>> {
        let key = store_key(&self.namespace, key);
        let (op, field, gcra) = (self.ops.record_failure, self.field, self.gcra);
        let cooldown = split(nanos(cooldown.min(MAX_COOLDOWN)));
        Check::Pending(self.redis.call(op, move |manager| async move {
            let (t, tau) = (split(gcra.t), split(gcra.tau));
            let args = (field, t.0, t.1, tau.0, tau.1, cooldown.0, cooldown.1);
            let answer: Vec<i64> = eval(manager, op, &FAILURE, key, args).await?;
            block_left(&answer).ok_or_else(|| unexpected(op, &answer))
        }))
    }

    fn blocked(&self, key: &K) -> Check<Self::BlockFuture, Option<Duration>> {
        let key = store_key(&self.namespace, key);
        let op = self.ops.blocked;
        Check::Pending(self.redis.call(op, move |manager| async move {
            let answer: Vec<i64> = eval(manager, op, &BLOCKED, key, None::<u8>).await?;
            block_left(&answer).ok_or_else(|| unexpected(op, &answer))
        }))
    }

    fn rate(&self) -> Rate {
        self.rate
    }

    fn block_list(&self) -> Option<BlockListId> {
        self.keeps
    }

    fn reads_block_list(&self) -> Option<BlockListId> {
        self.reads
    }
}

/// The GCRA parameters of a rate, in nanoseconds (see
/// [`RateLimitStore`](crate::rate_limit::RateLimitStore)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Gcra {
    /// The refill interval of one request.
    t: u64,
    /// How far ahead of now the TAT may run: `t * (burst - 1)`.
    tau: u64,
    burst: u32,
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
        }
    }

    /// The decision on a conforming request whose new TAT is `ahead` of now:
    /// [`MemoryStore`](crate::rate_limit::MemoryStore)'s.
    fn allowed(&self, ahead: u64) -> Decision {
        // Requests that could still pass right now: `(now + tau + t - tat) / t`, below the
        // burst (the TAT is at least `now + t` after a request).
        let remaining = (self.tau + self.t).saturating_sub(ahead) / self.t;
        let remaining = u32::try_from(remaining).unwrap_or(self.burst);
        let missing = self.burst - remaining;
        Decision::allowed(remaining, Duration::from_nanos(self.t * u64::from(missing)))
    }
}

/// The decision in a `check` answer: `[allowed, s, n, block s, block n]`.
fn decision(gcra: &Gcra, reads: Option<BlockListId>, answer: &[i64]) -> Option<Decision> {
    let &[allowed, s, n, block_s, block_n] = answer else {
        return None;
    };
    let span = time(s, n)??;
    let decision = match allowed {
        1 => gcra.allowed(nanos(span)),
        0 => Decision::denied(span),
        _ => return None,
    };
    let blocked = time(block_s, block_n)?;
    Some(match reads {
        Some(list) => decision.with_block(list, blocked),
        None => decision,
    })
}

/// A block's time left in an answer `[s, n]` (`[-1, -1]`: none).
fn block_left(answer: &[i64]) -> Option<Option<Duration>> {
    let &[s, n] = answer else { return None };
    time(s, n)
}

/// A span from a script, `(seconds, nanoseconds)`: `Some(None)` for the "none" mark `(-1,
/// -1)`, `None` for anything else out of range.
fn time(s: i64, n: i64) -> Option<Option<Duration>> {
    if (s, n) == (-1, -1) {
        return Some(None);
    }
    let s = u64::try_from(s).ok()?;
    let n = u32::try_from(n).ok().filter(|n| *n < NANOS_PER_SEC)?;
    Some(Some(Duration::new(s, n)))
}

const NANOS_PER_SEC: u32 = 1_000_000_000;

/// Nanoseconds as a script's `(seconds, nanoseconds)`.
fn split(nanos: u64) -> (u64, u32) {
    let per_sec = u64::from(NANOS_PER_SEC);
    // The remainder is below one second's nanoseconds, a `u32`.
    (nanos / per_sec, (nanos % per_sec) as u32)
}

/// A duration in nanoseconds, saturating.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn parameters_are_the_memory_stores() {
        let gcra = Gcra::new(Rate::per_second(nz(10)).burst(nz(3)));
        assert_eq!(
            gcra,
            Gcra {
                t: 100 * MS,
                tau: 200 * MS,
                burst: 3
            }
        );
        let gcra = Gcra::new(Rate::per_minute(nz(7)));
        assert_eq!(gcra.t, 8_571_428_571);
        assert_eq!(gcra.tau, 6 * 8_571_428_571);
    }

    #[test]
    fn allowed_decisions_count_what_remains_and_when_the_burst_is_full() {
        let gcra = Gcra::new(Rate::per_second(nz(10)).burst(nz(3)));
        // A fresh key's first request: the TAT is now + t.
        assert_eq!(
            gcra.allowed(100 * MS),
            Decision::allowed(2, Duration::from_millis(100))
        );
        assert_eq!(
            gcra.allowed(200 * MS),
            Decision::allowed(1, Duration::from_millis(200))
        );
        // The last of the burst.
        assert_eq!(
            gcra.allowed(300 * MS),
            Decision::allowed(0, Duration::from_millis(300))
        );
        // 1.5 refilled after two: the TAT is 50 ms ahead plus t.
        assert_eq!(
            gcra.allowed(150 * MS),
            Decision::allowed(1, Duration::from_millis(200))
        );
        // One nanosecond short of a whole request.
        assert_eq!(
            gcra.allowed(200 * MS + 1),
            Decision::allowed(0, Duration::from_millis(300))
        );
        // An answer below t (never from the script) still gives at most the burst.
        assert_eq!(gcra.allowed(0), Decision::allowed(3, Duration::ZERO));
        assert_eq!(
            gcra.allowed(u64::MAX),
            Decision::allowed(0, Duration::from_millis(300))
        );
    }

    #[test]
    fn a_burst_beyond_u32_is_not_reachable_but_stays_bounded() {
        let gcra = Gcra {
            t: 1,
            tau: u64::from(u32::MAX) * 4,
            burst: u32::MAX,
        };
        assert_eq!(gcra.allowed(1).remaining(), u32::MAX);
    }

    #[test]
    fn check_answers_are_read_with_or_without_the_block() {
        let gcra = Gcra::new(Rate::per_second(nz(4)));
        let list = BlockListId::unique();
        assert_eq!(
            decision(&gcra, None, &[1, 0, 250_000_000, -1, -1]),
            Some(Decision::allowed(3, Duration::from_millis(250)))
        );
        assert_eq!(
            decision(&gcra, None, &[0, 0, 125_000_000, 5, 7]),
            Some(Decision::denied(Duration::from_millis(125)))
        );
        assert_eq!(
            decision(&gcra, Some(list), &[1, 1, 0, -1, -1]),
            Some(Decision::allowed(0, Duration::from_secs(1)).with_block(list, None))
        );
        assert_eq!(
            decision(&gcra, Some(list), &[0, 2, 5, 60, 1]),
            Some(
                Decision::denied(Duration::new(2, 5)).with_block(list, Some(Duration::new(60, 1)))
            )
        );
        for bad in [
            &[1, 0, 0, -1][..],
            &[1, 0, 0, -1, -1, 0],
            &[2, 0, 0, -1, -1],
            &[-1, 0, 0, -1, -1],
            &[1, -1, -1, -1, -1],
            &[1, 0, 1_000_000_000, -1, -1],
            &[1, 0, -1, -1, -1],
            &[1, -1, 0, -1, -1],
            &[1, 0, 0, -1, 0],
            &[1, 0, 0, 0, -1],
            &[1, 0, 0, 0, 1_000_000_000],
        ] {
            assert_eq!(decision(&gcra, Some(list), bad), None, "{bad:?}");
        }
    }

    #[test]
    fn block_answers_are_read() {
        assert_eq!(block_left(&[-1, -1]), Some(None));
        assert_eq!(
            block_left(&[59, 999_999_999]),
            Some(Some(Duration::new(59, 999_999_999)))
        );
        assert_eq!(block_left(&[0, 0]), Some(Some(Duration::ZERO)));
        assert_eq!(block_left(&[1]), None);
        assert_eq!(block_left(&[1, 2, 3]), None);
        assert_eq!(block_left(&[-1, 0]), None);
        assert_eq!(block_left(&[0, 1_000_000_000]), None);
    }

    #[test]
    fn stores_show_their_keys_and_lists_never_the_password() {
        let redis = RedisStore::new("redis://:hunter2@127.0.0.1:1/0")
            .unwrap()
            .prefix("gw");
        let rate = Rate::per_second(nz(5));
        let standalone = redis.rate_limit_store::<()>("verified", rate);
        let (requests, failures) = redis.client_stores::<()>("clients", rate, rate);
        let list = failures.block_list().unwrap();
        let debug = format!("{standalone:?}");
        assert!(
            debug.contains("\"gw:verified:\"") && debug.contains("\"r\""),
            "{debug}"
        );
        let debug = format!("{:?}", requests.clone());
        assert!(debug.contains("gw:clients:") && debug.contains(&format!("Some({list:?})")));
        let debug = format!("{failures:?}");
        assert!(
            debug.contains("\"f\"") && debug.contains("127.0.0.1:1/0"),
            "{debug}"
        );
        assert!(!debug.contains("hunter2"));
        assert_eq!(RateLimitStore::<()>::rate(&requests.clone()), rate);
        assert_eq!(
            RateLimitStore::<()>::block_list(&failures.clone()),
            Some(list)
        );
    }

    #[test]
    fn spans_split_into_seconds_and_nanoseconds() {
        assert_eq!(split(0), (0, 0));
        assert_eq!(split(999_999_999), (0, 999_999_999));
        assert_eq!(split(8_571_428_571), (8, 571_428_571));
        assert_eq!(split(u64::MAX), (18_446_744_073, 709_551_615));
        assert_eq!(nanos(Duration::MAX), u64::MAX);
        assert_eq!(nanos(Duration::new(3, 7)), 3_000_000_007);
        assert_eq!(split(nanos(MAX_COOLDOWN)), (9_223_372_036, 854_775_807));
    }
}
