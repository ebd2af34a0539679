//! Store decision costs, Redis against memory: the per-client check, recording a failure, and a
//! deduplication claim + complete. Sequential (the latency of one decision) and 16 tasks at
//! once (throughput: the time per decision with 16 in flight on one multiplexed connection).
//!
//! The Redis stores run on a `redis-server` the bench spawns on loopback (no persistence); with
//! no `redis-server` on `PATH` the bench says so and measures nothing. (No memory
//! deduplication store exists on this branch yet: deduplication is measured on Redis only.)
//!
//! Run: `cargo bench --bench stores --features redis`

#[path = "../tests/common/redis.rs"]
#[allow(dead_code, unreachable_pub)]
mod redis_server;

use std::{
    future::Future,
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    num::NonZeroU32,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use criterion::{Criterion, Throughput};
use hookgate::{
    dedupe::{DedupeStore, EventKey, LeaseToken},
    rate_limit::{Check, MemoryStore, Rate, RateLimitStore},
    store::{redis::RedisStore, StoreError},
};
use redis_server::RedisServer;
use tokio::runtime::Runtime;

/// Tasks in flight at once in the throughput runs.
const TASKS: u64 = 16;

/// Distinct clients the decisions cycle through.
const CLIENTS: u32 = 1_000;

fn main() {
    let Some(server) = RedisServer::start() else {
        println!("skipped: stores bench: no redis-server on PATH");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let redis = RedisStore::new(&server.url())
        .unwrap()
        .prefix("bench")
        .timeout(Duration::from_secs(2));
    runtime
        .block_on(redis.ping())
        .expect("the spawned server answers");

    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let stores = Stores::new(&redis);
    sequential(&mut criterion, &runtime, &stores);
    concurrent(&mut criterion, &runtime, &stores);
    criterion.final_summary();
    drop(server);
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// Rates so high that every decision passes: the common path.
fn high() -> Rate {
    Rate::per_second(nz(1_000_000_000))
}

type Requests = hookgate::store::redis::RedisRateLimitStore<IpAddr>;

/// Every store measured, shared by the tasks.
struct Stores {
    requests: Requests,
    failures: Requests,
    dedupe: hookgate::store::redis::RedisDedupeStore,
    memory_requests: MemoryStore<IpAddr>,
    memory_failures: MemoryStore<IpAddr>,
    next_client: AtomicU32,
    next_event: AtomicU64,
}

impl Stores {
    fn new(redis: &RedisStore) -> Arc<Self> {
        let (requests, failures) = redis.client_stores::<IpAddr>("clients", high(), high());
        Arc::new(Self {
            requests,
            failures,
            dedupe: redis.dedupe_store("events"),
            memory_requests: MemoryStore::new(high()),
            memory_failures: MemoryStore::new(high()),
            next_client: AtomicU32::new(0),
            next_event: AtomicU64::new(0),
        })
    }

    fn client(&self) -> IpAddr {
        let n = self.next_client.fetch_add(1, Ordering::Relaxed) % CLIENTS;
        IpAddr::V4(Ipv4Addr::from(0xCB00_7100 + n))
    }

    async fn redis_check(&self) {
        let decision = answer(self.requests.check(&self.client())).await.unwrap();
        assert!(decision.is_allowed());
    }

    async fn memory_check(&self) {
        let decision = answer(self.memory_requests.check(&self.client()))
            .await
            .unwrap();
        assert!(decision.is_allowed());
    }

    async fn redis_failure(&self) {
        let cooldown = Duration::from_secs(60);
        let blocked = answer(self.failures.record_failure(&self.client(), cooldown)).await;
        assert_eq!(blocked.unwrap(), None);
    }

    async fn memory_failure(&self) {
        let cooldown = Duration::from_secs(60);
        let blocked = answer(
            self.memory_failures
                .record_failure(&self.client(), cooldown),
        )
        .await;
        assert_eq!(blocked.unwrap(), None);
    }

    async fn redis_claim_complete(&self) {
        let n = self.next_event.fetch_add(1, Ordering::Relaxed);
        let key = EventKey::new(format!("evt_{n:016x}"));
        let token = LeaseToken::random();
        let claim = answer(self.dedupe.claim(&key, token, Duration::from_secs(30))).await;
        black_box(claim.unwrap());
        let settled = answer(self.dedupe.complete(&key, token, Duration::from_secs(10))).await;
        black_box(settled.unwrap());
    }
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

/// The benchmarks, each one decision (or claim + complete) of one store.
macro_rules! each_bench {
    ($run:ident) => {
        $run!("client_check/memory", memory_check);
        $run!("client_check/redis", redis_check);
        $run!("failure_record/memory", memory_failure);
        $run!("failure_record/redis", redis_failure);
        $run!("dedupe_claim_complete/redis", redis_claim_complete);
    };
}

fn sequential(criterion: &mut Criterion, runtime: &Runtime, stores: &Arc<Stores>) {
    let mut group = criterion.benchmark_group("sequential");
    group.throughput(Throughput::Elements(1));
    macro_rules! run {
        ($name:literal, $method:ident) => {
            group.bench_function($name, |b| {
                b.to_async(runtime).iter(|| stores.$method());
            });
        };
    }
    each_bench!(run);
    group.finish();
}

fn concurrent(criterion: &mut Criterion, runtime: &Runtime, stores: &Arc<Stores>) {
    let mut group = criterion.benchmark_group("concurrent_16");
    group.throughput(Throughput::Elements(1));
    macro_rules! run {
        ($name:literal, $method:ident) => {
            group.bench_function($name, |b| {
                b.to_async(runtime).iter_custom(|iters| {
                    let stores = Arc::clone(stores);
                    async move {
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..TASKS)
                            .map(|task| {
                                let stores = Arc::clone(&stores);
                                // The iterations spread over the tasks.
                                let share = iters / TASKS + u64::from(task < iters % TASKS);
                                tokio::spawn(async move {
                                    for _ in 0..share {
                                        stores.$method().await;
                                    }
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.unwrap();
                        }
                        start.elapsed()
                    }
                });
            });
        };
    }
    each_bench!(run);
    group.finish();
}
