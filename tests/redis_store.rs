//! The Redis stores on a real server (`tests/common/redis.rs`: `HOOKGATE_TEST_REDIS_URL`, or a
//! `redis-server` spawned per test; skipped with a message when neither is there, unless `CI`
//! is set): the same GCRA answers as the memory store, state shared by instances, the
//! per-client pair's fused block lookup, blocks never shortened, TTLs, deduplication's token
//! checks and expiries, and outages (server stopped, restarted; a server that never answers).
#![cfg(feature = "redis")]

mod common;

use std::{
    future::Future,
    net::{IpAddr, TcpListener},
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::redis::{redis_for, RedisServer, TestRedis};
use hookgate::{
    dedupe::{Claim, DedupeStore, EventKey, LeaseToken, Settled},
    rate_limit::{Check, Decision, MemoryStore, Rate, RateLimitStore},
    store::{
        redis::{CallOutcome, RedisStore, StoreCall},
        StoreError,
    },
};
use redis::aio::MultiplexedConnection;

const MS: Duration = Duration::from_millis(1);

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// A store on the test's server, with a generous timeout (the tests of timeouts set theirs).
fn store(redis: &TestRedis) -> RedisStore {
    RedisStore::new(&redis.url)
        .unwrap()
        .prefix(redis.prefix.clone())
        .timeout(Duration::from_secs(2))
}

/// A plain connection, to look at keys.
async fn inspect(redis: &TestRedis) -> MultiplexedConnection {
    redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn answer<F, T>(check: Check<F, T>) -> Result<T, StoreError>
where
    F: Future<Output = Result<T, StoreError>>,
{
    match check {
        Check::Ready(answer) => answer,
        Check::Pending(future) => future.await,
    }
}

async fn check<K, S: RateLimitStore<K>>(store: &S, key: &K) -> Decision {
    answer(store.check(key)).await.unwrap()
}

async fn fail<K, S: RateLimitStore<K>>(store: &S, key: &K, cooldown: Duration) -> Option<Duration> {
    answer(store.record_failure(key, cooldown)).await.unwrap()
}

async fn blocked<K, S: RateLimitStore<K>>(store: &S, key: &K) -> Option<Duration> {
    answer(store.blocked(key)).await.unwrap()
}

fn memory_check<K: std::hash::Hash + Eq + Clone>(store: &MemoryStore<K>, key: &K) -> Decision {
    match store.check(key) {
        Check::Ready(decision) => decision.unwrap(),
        Check::Pending(_) => unreachable!(),
    }
}

/// The server's clock, in nanoseconds since the Unix epoch.
async fn server_now(con: &mut MultiplexedConnection) -> u128 {
    let (s, us): (u128, u128) = redis::cmd("TIME").query_async(con).await.unwrap();
    s * 1_000_000_000 + us * 1_000
}

async fn pttl(con: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(con).await.unwrap()
}

async fn field(con: &mut MultiplexedConnection, key: &str, field: &str) -> Option<u128> {
    let text: Option<String> = redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query_async(con)
        .await
        .unwrap();
    text.map(|text| text.parse().unwrap())
}

async fn set_field(con: &mut MultiplexedConnection, key: &str, field: &str, nanos: u128) {
    let _: i64 = redis::cmd("HSET")
        .arg(key)
        .arg(field)
        .arg(nanos.to_string())
        .query_async(con)
        .await
        .unwrap();
    // Gone in a minute even if no script writes it (an external server is shared).
    let _: i64 = redis::cmd("PEXPIRE")
        .arg(key)
        .arg(60_000)
        .query_async(con)
        .await
        .unwrap();
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([203, 0, 113, last])
}

/// Whether `actual` is within `slack` below `expected` (time passes between reading the
/// server's clock and the script's own reading).
fn just_below(actual: Duration, expected: Duration, slack: Duration) -> bool {
    actual <= expected && actual + slack >= expected
}

#[tokio::test]
async fn gcra_answers_agree_with_the_memory_store() {
    let Some(redis) = redis_for("gcra_answers_agree_with_the_memory_store") else {
        return;
    };
    // t = 200 ms, burst 3 (tau = 400 ms).
    let rate = Rate::per_second(nz(5)).burst(nz(3));
    let shared = store(&redis).rate_limit_store::<String>("gcra", rate);
    let memory = MemoryStore::new(rate);
    let key = "client".to_owned();
    assert_eq!(RateLimitStore::<String>::rate(&shared), rate);

    // The burst: the same remaining counts and resets, exactly.
    for remaining in (0..3).rev() {
        let (from_redis, from_memory) = (check(&shared, &key).await, memory_check(&memory, &key));
        assert_eq!(from_redis, from_memory);
        assert_eq!(
            from_redis,
            Decision::allowed(remaining, 200 * MS * (3 - remaining))
        );
        assert_eq!(
            from_redis.block(),
            None,
            "a standalone store reads no block"
        );
    }
    // Over the rate: denied, with the same retry-after (less the time both spent).
    let start = Instant::now();
    let (from_redis, from_memory) = (check(&shared, &key).await, memory_check(&memory, &key));
    assert!(!from_redis.is_allowed() && !from_memory.is_allowed());
    assert_eq!(from_redis.remaining(), 0);
    assert!(
        from_redis.reset() <= 200 * MS && from_redis.reset() >= 100 * MS,
        "{from_redis:?}"
    );
    let apart = from_redis.reset().abs_diff(from_memory.reset());
    assert!(apart <= 30 * MS, "{from_redis:?} / {from_memory:?}");
    // Denied again while waiting: nothing was counted.
    assert!(!check(&shared, &key).await.is_allowed());

    // After the retry-after: one more passes (the last of the burst), then none.
    tokio::time::sleep(from_redis.reset().max(from_memory.reset()) + 10 * MS - start.elapsed())
        .await;
    let (from_redis, from_memory) = (check(&shared, &key).await, memory_check(&memory, &key));
    assert_eq!(from_redis, from_memory);
    assert_eq!(from_redis, Decision::allowed(0, 600 * MS));
    assert!(!check(&shared, &key).await.is_allowed());

    // Refilled after 600 ms idle: the whole burst again.
    tokio::time::sleep(650 * MS).await;
    let (from_redis, from_memory) = (check(&shared, &key).await, memory_check(&memory, &key));
    assert_eq!(from_redis, from_memory);
    assert_eq!(from_redis, Decision::allowed(2, 200 * MS));

    // Another key, another bucket.
    assert_eq!(
        check(&shared, &"other".to_owned()).await,
        Decision::allowed(2, 200 * MS)
    );
}

/// Pins the script's arithmetic: TATs seeded on the server's clock, with intervals of
/// nanoseconds that carry and borrow across seconds.
#[tokio::test]
async fn the_script_arithmetic_is_exact_to_the_nanosecond() {
    let Some(redis) = redis_for("the_script_arithmetic_is_exact_to_the_nanosecond") else {
        return;
    };
    let mut con = inspect(&redis).await;
    // 7 a minute: t = 8.571428571 s; burst 3: tau = 17.142857142 s.
    let rate = Rate::per_minute(nz(7)).burst(nz(3));
    let t = 8_571_428_571_u128;
    let tau = 2 * t;
    let limiter = store(&redis).rate_limit_store::<String>("exact", rate);
    let key = |name: &str| (name.to_owned(), format!("{}:exact:{name}", redis.prefix));

    // A fresh key: its TAT becomes now + t, the decision is the memory store's.
    let (fresh, fresh_key) = key("fresh");
    let before = server_now(&mut con).await;
    let first = check(&limiter, &fresh).await;
    let after = server_now(&mut con).await;
    assert_eq!(first, Decision::allowed(2, Duration::from_nanos(t as u64)));
    let tat = field(&mut con, &fresh_key, "r").await.unwrap();
    assert!(
        tat >= before + t && tat <= after + t,
        "{before} {tat} {after}"
    );
    // The next request moves it by exactly t, whatever carries across a second.
    let second = check(&limiter, &fresh).await;
    assert_eq!(
        second,
        Decision::allowed(1, Duration::from_nanos(2 * t as u64))
    );
    assert_eq!(field(&mut con, &fresh_key, "r").await.unwrap(), tat + t);

    // A TAT ending in 999 999 999 ns: adding t carries into the seconds.
    let (carry, carry_key) = key("carry");
    let now = server_now(&mut con).await;
    let seeded = (now / 1_000_000_000 + 2) * 1_000_000_000 + 999_999_999;
    set_field(&mut con, &carry_key, "r", seeded).await;
    // Ahead of now by 2 to 3 s, within tau: conforms, one request left at most.
    assert_eq!(
        check(&limiter, &carry).await,
        Decision::allowed(1, Duration::from_nanos(2 * t as u64))
    );
    assert_eq!(field(&mut con, &carry_key, "r").await.unwrap(), seeded + t);

    // A TAT on a whole second: tat - tau borrows from the seconds. Ahead by tau + 5 s: denied
    // for 5 s (less the time since we read the clock), and nothing changes.
    let (borrow, borrow_key) = key("borrow");
    let now = server_now(&mut con).await;
    let seeded = (now / 1_000_000_000 + 1) * 1_000_000_000 + tau + 4_000_000_000;
    set_field(&mut con, &borrow_key, "r", seeded).await;
    let denied = check(&limiter, &borrow).await;
    let expected = Duration::from_nanos((seeded - tau - now) as u64);
    assert!(!denied.is_allowed());
    assert!(
        just_below(denied.reset(), expected, 100 * MS),
        "{denied:?} vs {expected:?}"
    );
    assert_eq!(field(&mut con, &borrow_key, "r").await.unwrap(), seeded);

    // Exactly tau ahead (to the microsecond of the seeding): conforms once, then not.
    let (edge, edge_key) = key("edge");
    let now = server_now(&mut con).await;
    set_field(&mut con, &edge_key, "r", now + tau).await;
    let at_edge = check(&limiter, &edge).await;
    assert_eq!(
        at_edge,
        Decision::allowed(0, Duration::from_nanos(3 * t as u64))
    );
    assert_eq!(
        field(&mut con, &edge_key, "r").await.unwrap(),
        now + tau + t
    );
    let over = check(&limiter, &edge).await;
    assert!(!over.is_allowed());
    assert!(
        just_below(over.reset(), Duration::from_nanos(t as u64), 100 * MS),
        "{over:?}"
    );

    // A TAT in the past counts as now: a whole burst less one.
    let (stale, stale_key) = key("stale");
    let now = server_now(&mut con).await;
    set_field(&mut con, &stale_key, "r", now - 3_600_000_000_000).await;
    assert_eq!(
        check(&limiter, &stale).await,
        Decision::allowed(2, Duration::from_nanos(t as u64))
    );
    let tat = field(&mut con, &stale_key, "r").await.unwrap();
    assert!(tat > now + t && tat < now + t + 100_000_000, "{now} {tat}");
}

#[tokio::test]
async fn two_instances_share_one_budget() {
    let Some(redis) = redis_for("two_instances_share_one_budget") else {
        return;
    };
    let rate = Rate::per_minute(nz(4));
    // Two handles, two connections: two gateway instances.
    let a = store(&redis).rate_limit_store::<IpAddr>("shared", rate);
    let b = store(&redis).rate_limit_store::<IpAddr>("shared", rate);
    let mut allowed = 0;
    for i in 0..10 {
        let instance = if i % 2 == 0 { &a } else { &b };
        allowed += u32::from(check(instance, &ip(1)).await.is_allowed());
    }
    assert_eq!(allowed, 4);
    // Another name is another limiter.
    let c = store(&redis).rate_limit_store::<IpAddr>("other", rate);
    assert!(check(&c, &ip(1)).await.is_allowed());
    // Another prefix is another deployment.
    let d = RedisStore::new(&redis.url)
        .unwrap()
        .prefix(format!("{}-other", redis.prefix))
        .rate_limit_store::<IpAddr>("shared", rate);
    assert!(check(&d, &ip(1)).await.is_allowed());
}

#[tokio::test]
async fn the_client_pair_reads_blocks_with_its_list_in_every_check() {
    let Some(redis) = redis_for("the_client_pair_reads_blocks_with_its_list_in_every_check") else {
        return;
    };
    let mut con = inspect(&redis).await;
    let handle = store(&redis);
    let (requests, failures) =
        handle.client_stores::<IpAddr>("clients", Rate::per_minute(nz(100)), Rate::per_hour(nz(2)));
    let (_, other_failures) =
        handle.client_stores::<IpAddr>("clients", Rate::per_minute(nz(100)), Rate::per_hour(nz(2)));
    let list = failures
        .block_list()
        .expect("the failures store keeps the list");
    assert_eq!(RateLimitStore::<IpAddr>::block_list(&requests), None);
    assert_ne!(
        other_failures.block_list(),
        Some(list),
        "each pair has its own list"
    );
    assert_eq!(
        RateLimitStore::<IpAddr>::rate(&failures),
        Rate::per_hour(nz(2))
    );

    let client = ip(7);
    let first = check(&requests, &client).await;
    assert!(first.is_allowed());
    assert_eq!(first.block(), Some((list, None)));

    // Two failures an hour pass; the third blocks for the cooldown, exactly.
    let cooldown = Duration::from_secs(60);
    assert_eq!(fail(&failures, &client, cooldown).await, None);
    assert_eq!(fail(&failures, &client, cooldown).await, None);
    assert_eq!(blocked(&failures, &client).await, None);
    assert_eq!(fail(&failures, &client, cooldown).await, Some(cooldown));

    // The request check reads the block in the same call.
    let decision = check(&requests, &client).await;
    assert!(decision.is_allowed());
    let (seen_list, left) = decision.block().unwrap();
    assert_eq!(seen_list, list);
    assert!(just_below(left.unwrap(), cooldown, 500 * MS), "{left:?}");
    assert!(just_below(
        blocked(&failures, &client).await.unwrap(),
        cooldown,
        500 * MS
    ));
    // Other clients are not blocked.
    assert_eq!(check(&requests, &ip(8)).await.block(), Some((list, None)));
    assert_eq!(blocked(&failures, &ip(8)).await, None);

    // A shorter cooldown never shortens the block; a longer one extends it.
    let shorter = fail(&failures, &client, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(just_below(shorter, cooldown, 500 * MS), "{shorter:?}");
    let longer = Duration::from_secs(120);
    assert_eq!(fail(&failures, &client, longer).await, Some(longer));
    assert!(just_below(
        blocked(&failures, &client).await.unwrap(),
        longer,
        500 * MS
    ));

    // One hash per client, with the requests' TAT, the failures' TAT and the block's end.
    let key = format!("{}:clients:203.0.113.7", redis.prefix);
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    let mut fields = fields;
    fields.sort();
    assert_eq!(fields, ["b", "f", "r"]);
    let now = server_now(&mut con).await;
    let end = field(&mut con, &key, "b").await.unwrap();
    assert!(end > now + 119_000_000_000 && end <= now + 120_000_000_000);
    // The key lives until its last time is past: here the failures' burst refills (two an
    // hour, both taken: an hour), after the block's end.
    let ttl = pttl(&mut con, &key).await;
    assert!((3_599_000..=3_600_000).contains(&ttl), "{ttl}");

    // The requests store counts requests on their own: 100 a minute, two taken above.
    let mut allowed = 0;
    for _ in 0..150 {
        allowed += u32::from(check(&requests, &client).await.is_allowed());
    }
    assert_eq!(allowed, 98);
}

#[tokio::test]
async fn a_standalone_store_blocks_too() {
    let Some(redis) = redis_for("a_standalone_store_blocks_too") else {
        return;
    };
    let failures = store(&redis).rate_limit_store::<()>("failures", Rate::per_hour(nz(1)));
    assert_eq!(RateLimitStore::<()>::block_list(&failures), None);
    let cooldown = Duration::from_millis(1_500);
    assert_eq!(fail(&failures, &(), cooldown).await, None);
    assert_eq!(fail(&failures, &(), cooldown).await, Some(cooldown));
    assert!(just_below(
        blocked(&failures, &()).await.unwrap(),
        cooldown,
        500 * MS
    ));
    // A cooldown of centuries is taken as about 292 years.
    let forever = fail(&failures, &(), Duration::MAX).await.unwrap();
    let years = forever.as_secs() / (365 * 24 * 3600);
    assert!((291..=293).contains(&years), "{forever:?}");
}

#[tokio::test]
async fn keys_expire_once_as_good_as_fresh_and_never_before_a_block_ends() {
    let Some(redis) = redis_for("keys_expire_once_as_good_as_fresh_and_never_before_a_block_ends")
    else {
        return;
    };
    let mut con = inspect(&redis).await;
    let handle = store(&redis);

    // t = 100 ms: one request lives 100 ms, five 500 ms.
    let limiter = handle.rate_limit_store::<String>("ttl", Rate::per_second(nz(10)).burst(nz(5)));
    let key = "k".to_owned();
    let redis_key = format!("{}:ttl:k", redis.prefix);
    check(&limiter, &key).await;
    let ttl = pttl(&mut con, &redis_key).await;
    assert!((50..=100).contains(&ttl), "{ttl}");
    for _ in 0..4 {
        check(&limiter, &key).await;
    }
    let ttl = pttl(&mut con, &redis_key).await;
    assert!((400..=500).contains(&ttl), "{ttl}");
    // A denied request writes nothing.
    assert!(!check(&limiter, &key).await.is_allowed());
    assert!(pttl(&mut con, &redis_key).await <= ttl);
    tokio::time::sleep(Duration::from_millis(ttl as u64) + 50 * MS).await;
    assert_eq!(pttl(&mut con, &redis_key).await, -2, "gone once refilled");

    // A block outlives the TATs, and a later request does not shorten the key's life.
    let (requests, failures) = handle.client_stores::<IpAddr>(
        "pair",
        Rate::per_second(nz(10)),
        Rate::per_second(nz(2)).burst(nz(1)),
    );
    let pair_key = format!("{}:pair:203.0.113.9", redis.prefix);
    let client = ip(9);
    let cooldown = Duration::from_millis(900);
    assert_eq!(fail(&failures, &client, cooldown).await, None);
    assert_eq!(fail(&failures, &client, cooldown).await, Some(cooldown));
    let ttl = pttl(&mut con, &pair_key).await;
    assert!((850..=900).contains(&ttl), "{ttl}");
    check(&requests, &client).await;
    let after_request = pttl(&mut con, &pair_key).await;
    assert!((800..=900).contains(&after_request), "{after_request}");
    tokio::time::sleep(Duration::from_millis(after_request as u64) + 50 * MS).await;
    assert_eq!(
        pttl(&mut con, &pair_key).await,
        -2,
        "gone once the block is over"
    );
    assert_eq!(blocked(&failures, &client).await, None);
}

#[tokio::test]
async fn dedupe_claims_settle_only_with_their_token() {
    let Some(redis) = redis_for("dedupe_claims_settle_only_with_their_token") else {
        return;
    };
    let mut con = inspect(&redis).await;
    let dedupe = store(&redis).dedupe_store("events");
    let [t1, t2, t3] = [1, 2, 3].map(LeaseToken::from_u128);
    let lease = Duration::from_secs(10);
    let claim = |key: &EventKey, token, lease| answer(dedupe.claim(key, token, lease));
    let complete = |key: &EventKey, token, keep| answer(dedupe.complete(key, token, keep));
    let release = |key: &EventKey, token| answer(dedupe.release(key, token));

    // Claimed, then in flight for another delivery, with the lease left.
    let a = EventKey::new("evt-a");
    assert_eq!(claim(&a, t1, lease).await.unwrap(), Claim::Claimed);
    match claim(&a, t2, lease).await.unwrap() {
        Claim::InFlight { lease_left } => assert!(just_below(lease_left, lease, 500 * MS)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        claim(&a, t1, lease).await.unwrap(),
        Claim::InFlight { .. }
    ));
    // Another's token settles nothing.
    assert_eq!(complete(&a, t2, lease).await.unwrap(), Settled::LeaseLost);
    assert_eq!(release(&a, t2).await.unwrap(), Settled::LeaseLost);
    // Completed: done for every later delivery.
    assert_eq!(
        complete(&a, t1, Duration::from_secs(60)).await.unwrap(),
        Settled::Settled
    );
    assert_eq!(claim(&a, t3, lease).await.unwrap(), Claim::Done);
    let a_key = format!("{}:events:evt-a", redis.prefix);
    let ttl = pttl(&mut con, &a_key).await;
    assert!((59_000..=60_000).contains(&ttl), "{ttl}");
    // A done key is settled: neither its token nor another's changes it.
    assert_eq!(complete(&a, t1, lease).await.unwrap(), Settled::LeaseLost);
    assert_eq!(release(&a, t1).await.unwrap(), Settled::LeaseLost);
    assert_eq!(claim(&a, t2, lease).await.unwrap(), Claim::Done);

    // Released: free for the next delivery.
    let b = EventKey::new("evt-b");
    assert_eq!(claim(&b, t1, lease).await.unwrap(), Claim::Claimed);
    assert_eq!(release(&b, t1).await.unwrap(), Settled::Settled);
    assert_eq!(
        release(&b, t1).await.unwrap(),
        Settled::LeaseLost,
        "free already"
    );
    assert_eq!(claim(&b, t2, lease).await.unwrap(), Claim::Claimed);

    // Never claimed: nothing to settle.
    let c = EventKey::new("evt-c");
    assert_eq!(complete(&c, t1, lease).await.unwrap(), Settled::LeaseLost);
    assert_eq!(release(&c, t1).await.unwrap(), Settled::LeaseLost);
    assert_eq!(claim(&c, t1, lease).await.unwrap(), Claim::Claimed);

    // A long event key is stored under its hash.
    let long = EventKey::new("x".repeat(300));
    assert_eq!(claim(&long, t1, lease).await.unwrap(), Claim::Claimed);
    let exists: i64 = redis::cmd("EXISTS")
        .arg(format!(
            "{}:events:sha256:{}",
            redis.prefix,
            hex_sha256(long.as_str().as_bytes())
        ))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(exists, 1);
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test]
async fn an_expired_lease_is_lost_to_a_newer_claim() {
    let Some(redis) = redis_for("an_expired_lease_is_lost_to_a_newer_claim") else {
        return;
    };
    let mut con = inspect(&redis).await;
    let dedupe = store(&redis).dedupe_store("events");
    let key = EventKey::new("evt-slow");
    let redis_key = format!("{}:events:evt-slow", redis.prefix);
    let (old, new) = (LeaseToken::from_u128(0xaaaa), LeaseToken::from_u128(0xbbbb));

    assert_eq!(
        answer(dedupe.claim(&key, old, 150 * MS)).await.unwrap(),
        Claim::Claimed
    );
    let ttl = pttl(&mut con, &redis_key).await;
    assert!((100..=150).contains(&ttl), "{ttl}");
    tokio::time::sleep(250 * MS).await;
    // The lease expired: a newer delivery claims the key.
    let lease = Duration::from_secs(30);
    assert_eq!(
        answer(dedupe.claim(&key, new, lease)).await.unwrap(),
        Claim::Claimed
    );
    // The old delivery's late answers change nothing.
    assert_eq!(
        answer(dedupe.complete(&key, old, Duration::from_secs(60)))
            .await
            .unwrap(),
        Settled::LeaseLost
    );
    assert_eq!(
        answer(dedupe.release(&key, old)).await.unwrap(),
        Settled::LeaseLost
    );
    let value: String = redis::cmd("GET")
        .arg(&redis_key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(value, format!("c:{:032x}", 0xbbbb));
    let ttl = pttl(&mut con, &redis_key).await;
    assert!(
        (29_000..=30_000).contains(&ttl),
        "the newer lease runs on: {ttl}"
    );
    assert!(matches!(
        answer(dedupe.claim(&key, old, lease)).await.unwrap(),
        Claim::InFlight { .. }
    ));
    // The newer claim settles.
    assert_eq!(
        answer(dedupe.complete(&key, new, 200 * MS)).await.unwrap(),
        Settled::Settled
    );
    assert_eq!(
        answer(dedupe.claim(&key, old, lease)).await.unwrap(),
        Claim::Done
    );
    // Once the done mark expires the key is free again.
    tokio::time::sleep(300 * MS).await;
    assert_eq!(pttl(&mut con, &redis_key).await, -2);
    assert_eq!(
        answer(dedupe.claim(&key, old, lease)).await.unwrap(),
        Claim::Claimed
    );
}

#[tokio::test]
async fn a_key_of_another_type_is_an_error_not_a_panic() {
    let Some(redis) = redis_for("a_key_of_another_type_is_an_error_not_a_panic") else {
        return;
    };
    let mut con = inspect(&redis).await;
    let () = redis::cmd("SET")
        .arg(format!("{}:rates:global", redis.prefix))
        .arg("not a hash")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut con)
        .await
        .unwrap();
    let limiter = store(&redis).rate_limit_store::<()>("rates", Rate::per_second(nz(1)));
    let error = answer(limiter.check(&())).await.unwrap_err();
    assert!(
        error.to_string().starts_with("redis rate.check: "),
        "{error}"
    );
    assert!(answer(limiter.blocked(&())).await.is_err());
}

/// Records every call the observer sees.
fn observed(store: RedisStore) -> (RedisStore, Arc<Mutex<Vec<StoreCall>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    let store = store.observe(move |call| seen.lock().unwrap().push(call));
    (store, calls)
}

/// A generous bound on a call that must fail at its 250 ms timeout (or sooner).
const FAILS_WITHIN: Duration = Duration::from_millis(700);

#[tokio::test]
async fn while_the_server_is_down_calls_fail_within_the_timeout_and_recover_after() {
    let Some(mut server) = RedisServer::for_test(
        "while_the_server_is_down_calls_fail_within_the_timeout_and_recover_after",
    ) else {
        return;
    };
    let (handle, calls) = observed(
        RedisStore::new(&server.url())
            .unwrap()
            .timeout(Duration::from_millis(250)),
    );
    let (requests, failures) =
        handle.client_stores::<IpAddr>("clients", Rate::per_second(nz(100)), Rate::per_hour(nz(5)));
    let dedupe = handle.dedupe_store("events");
    assert!(check(&requests, &ip(1)).await.is_allowed());
    assert!(handle.ping().await.unwrap() < Duration::from_secs(1));

    server.stop();
    for _ in 0..5 {
        let start = Instant::now();
        assert!(answer(requests.check(&ip(1))).await.is_err());
        assert!(
            answer(failures.record_failure(&ip(1), Duration::from_secs(1)))
                .await
                .is_err()
        );
        assert!(
            answer(dedupe.claim(&EventKey::new("e"), LeaseToken::random(), MS * 100))
                .await
                .is_err()
        );
        assert!(handle.ping().await.is_err());
        assert!(start.elapsed() < 4 * FAILS_WITHIN, "{:?}", start.elapsed());
        tokio::time::sleep(50 * MS).await;
    }
    for call in calls
        .lock()
        .unwrap()
        .iter()
        .filter(|call| call.outcome != CallOutcome::Ok)
    {
        assert!(call.elapsed < FAILS_WITHIN, "{call:?}");
    }

    // Back: the same handle and stores work again, without being made again.
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    while answer(requests.check(&ip(1))).await.is_err() {
        assert!(Instant::now() < deadline, "no recovery after the restart");
        tokio::time::sleep(50 * MS).await;
    }
    assert_eq!(
        answer(dedupe.claim(&EventKey::new("e"), LeaseToken::random(), MS * 100))
            .await
            .unwrap(),
        Claim::Claimed,
        "the restarted server is empty"
    );
    assert!(handle.ping().await.is_ok());

    let calls = calls.lock().unwrap();
    let ops: Vec<_> = calls.iter().map(|call| call.op).collect();
    for op in [
        "client.check",
        "client.record_failure",
        "dedupe.claim",
        "ping",
    ] {
        assert!(ops.contains(&op), "{op} in {ops:?}");
    }
    assert!(calls.iter().any(|call| call.outcome == CallOutcome::Ok));
    assert!(calls.iter().any(|call| call.outcome != CallOutcome::Ok));
    assert_eq!(calls.last().unwrap().outcome, CallOutcome::Ok);
}

#[tokio::test]
async fn a_store_made_while_the_server_is_down_works_once_it_is_up() {
    let Some(mut server) =
        RedisServer::for_test("a_store_made_while_the_server_is_down_works_once_it_is_up")
    else {
        return;
    };
    server.stop();
    // Neither fails nor blocks: there is nothing to connect to yet.
    let handle = RedisStore::new(&server.url()).unwrap();
    let limiter = handle.rate_limit_store::<()>("verified", Rate::per_second(nz(10)));
    for _ in 0..3 {
        let start = Instant::now();
        assert!(answer(limiter.check(&())).await.is_err());
        assert!(start.elapsed() < FAILS_WITHIN, "{:?}", start.elapsed());
    }
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    while answer(limiter.check(&())).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no recovery once the server is up"
        );
        tokio::time::sleep(50 * MS).await;
    }
}

#[tokio::test]
async fn a_server_that_never_answers_fails_calls_at_the_timeout() {
    // Accepts connections and never writes a byte.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let (handle, calls) = observed(
        RedisStore::new(&format!("redis://{addr}/0"))
            .unwrap()
            .timeout(Duration::from_millis(250)),
    );
    let limiter = handle.rate_limit_store::<()>("verified", Rate::per_second(nz(10)));
    let dedupe = handle.dedupe_store("events");
    for _ in 0..3 {
        let start = Instant::now();
        let error = answer(limiter.check(&())).await.unwrap_err();
        let elapsed = start.elapsed();
        assert!(
            elapsed >= 200 * MS && elapsed < FAILS_WITHIN,
            "{elapsed:?}: {error}"
        );
        let start = Instant::now();
        assert!(
            answer(dedupe.claim(&EventKey::new("e"), LeaseToken::random(), 100 * MS))
                .await
                .is_err()
        );
        assert!(start.elapsed() < FAILS_WITHIN);
        let start = Instant::now();
        assert!(handle.ping().await.is_err());
        assert!(start.elapsed() < FAILS_WITHIN);
    }
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 9);
    assert!(
        calls.iter().all(|call| call.outcome != CallOutcome::Ok),
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|call| call.outcome == CallOutcome::Timeout),
        "{calls:?}"
    );
}

/// The pair under the layers: the per-client limiter's check reads the block, the failure
/// limiter inside takes it, so a request costs one call for both (and a failed verification
/// one more, counting it); a blocked client is turned away without reaching verification.
#[tokio::test]
async fn under_the_layers_the_pair_costs_one_call_per_request() {
    use std::{convert::Infallible, net::SocketAddr};

    use bytes::Bytes;
    use hookgate::{
        client_ip::ClientIp,
        problem::{Problem, ProblemCode},
        rate_limit::{FailureLimitLayer, FailurePolicy, RateLimitLayer},
    };
    use http::{Request, StatusCode};
    use http_body_util::{Empty, Full};
    use tower::{service_fn, ServiceBuilder, ServiceExt};

    let Some(redis) = redis_for("under_the_layers_the_pair_costs_one_call_per_request") else {
        return;
    };
    let (handle, calls) = observed(store(&redis));
    let (requests, failures) =
        handle.client_stores::<IpAddr>("clients", Rate::per_minute(nz(100)), Rate::per_hour(nz(2)));
    // Stands in for verification: every request fails with 401.
    let verify = service_fn(|_request: Request<Empty<Bytes>>| async {
        let problem = Problem::new(StatusCode::UNAUTHORIZED, ProblemCode::SIGNATURE_MISMATCH);
        Ok::<_, Infallible>(problem.into_response::<Full<Bytes>>())
    });
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::per_client_with_store(
            requests,
            ClientIp::peer(),
        ))
        .layer(FailureLimitLayer::with_store(
            failures,
            FailurePolicy::block_for(Duration::from_secs(60)).unwrap(),
            ClientIp::peer(),
        ))
        .service(verify);
    let request = || {
        let mut request = Request::new(Empty::<Bytes>::new());
        request
            .extensions_mut()
            .insert(SocketAddr::from(([203, 0, 113, 7], 5000)));
        request
    };
    for _ in 0..3 {
        let response = service.clone().oneshot(request()).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = service.clone().oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response.extensions().get::<ProblemCode>(),
        Some(&ProblemCode::CLIENT_BLOCKED)
    );
    let ops: Vec<_> = calls.lock().unwrap().iter().map(|call| call.op).collect();
    assert_eq!(
        ops,
        [
            "client.check",
            "client.record_failure",
            "client.check",
            "client.record_failure",
            "client.check",
            "client.record_failure",
            "client.check",
        ],
        "never a separate client.blocked"
    );
}
