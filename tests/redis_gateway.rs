//! Gateways sharing their state on a real Redis server: two instances in this process, each
//! with its own listener and stack, one `redis-server` (spawned, or `HOOKGATE_TEST_REDIS_URL`),
//! a real upstream on loopback. Exactly once across instances, limits that hold across them,
//! each store's failure policy while Redis is down, and recovery.
//!
//! Without `redis-server` on the PATH and without `HOOKGATE_TEST_REDIS_URL`, each test says it
//! is skipped (and fails when `CI` is set).
#![cfg(feature = "cli")]

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{
    gateway::{exchange, post, sign, transcript, Answer, Gateway},
    redis::{redis_for, RedisServer, TestRedis},
};
use hookgate::{
    gateway::{GatewayBuilder, Upstream},
    store::redis::RedisStore,
};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A test upstream that counts the deliveries it received per body and answers 200 after
/// `delay` (so that concurrent deliveries overlap).
struct CountingUpstream {
    url: String,
    received: Arc<Mutex<HashMap<Bytes, usize>>>,
}

impl CountingUpstream {
    async fn start(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(HashMap::new()));
        let counts = received.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let counts = counts.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: Request<hyper::body::Incoming>| {
                            let counts = counts.clone();
                            async move {
                                let body = request.into_body().collect().await.unwrap().to_bytes();
                                *counts.lock().unwrap().entry(body).or_insert(0) += 1;
                                tokio::time::sleep(delay).await;
                                Ok::<_, std::io::Error>(Response::new(Full::new(
                                    Bytes::from_static(b"handled"),
                                )))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url: format!("http://{addr}/transcripts"),
            received,
        }
    }

    /// How often `body` reached the upstream.
    fn count(&self, body: &str) -> usize {
        self.received
            .lock()
            .unwrap()
            .get(body.as_bytes())
            .copied()
            .unwrap_or(0)
    }

    /// Deliveries received in all.
    fn total(&self) -> usize {
        self.received.lock().unwrap().values().sum()
    }
}

/// The Redis handle every instance of a test shares: same server, same prefix.
fn shared(redis: &TestRedis) -> RedisStore {
    RedisStore::new(&redis.url)
        .unwrap()
        .prefix(redis.prefix.as_str())
}

/// Starts an instance forwarding to `upstream`, its state on `redis`, `settings` applied.
async fn instance(
    upstream: &CountingUpstream,
    redis: RedisStore,
    settings: impl FnOnce(GatewayBuilder) -> GatewayBuilder,
) -> Gateway {
    let url = upstream.url.clone();
    Gateway::start(move |builder| {
        settings(
            builder
                .upstream(Upstream::builder(url))
                .redis(redis)
                .workers(1),
        )
    })
    .await
}

fn is_duplicate(answer: &Answer) -> bool {
    answer
        .headers
        .get("hookgate-duplicate")
        .is_some_and(|v| v == "true")
}

/// A signed delivery of `body` to `gateway`.
async fn deliver(gateway: &Gateway, body: &str) -> Answer {
    post(&gateway.url(), sign(body.as_bytes()), body.to_owned()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_delivered_six_times_at_once_across_two_instances_reaches_the_upstream_once() {
    let Some(redis) = redis_for("six_at_once") else {
        return;
    };
    let upstream = CountingUpstream::start(Duration::from_millis(400)).await;
    let a = instance(&upstream, shared(&redis), |b| b).await;
    let b = instance(&upstream, shared(&redis), |b| b).await;

    let body = transcript("req_six_at_once");
    let deliveries: Vec<_> = (0..6)
        .map(|i| {
            let url = if i % 2 == 0 { a.url() } else { b.url() };
            let body = body.clone();
            tokio::spawn(async move { post(&url, sign(body.as_bytes()), body).await })
        })
        .collect();
    let mut answers = Vec::new();
    for delivery in deliveries {
        answers.push(delivery.await.unwrap());
    }
    for answer in &answers {
        match answer.status {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(answer.code(), "delivery_in_flight");
                assert!(answer.headers.contains_key("retry-after"));
            }
            other => panic!("every delivery gets 200 or 503, not {other}"),
        }
    }
    assert!(answers.iter().any(|answer| answer.status == StatusCode::OK));
    assert_eq!(
        upstream.count(&body),
        1,
        "handled once across both instances"
    );

    // The sender retries what got a 503: each instance answers it as a duplicate.
    for gateway in [&a, &b] {
        let retry = deliver(gateway, &body).await;
        assert_eq!(retry.status, StatusCode::OK);
        assert!(is_duplicate(&retry));
    }
    assert_eq!(upstream.count(&body), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_capture_is_answered_200_and_never_reaches_the_upstream() {
    let Some(redis) = redis_for("replay") else {
        return;
    };
    let upstream = CountingUpstream::start(Duration::ZERO).await;
    let a = instance(&upstream, shared(&redis), |b| b).await;
    let b = instance(&upstream, shared(&redis), |b| b).await;
    let body = transcript("req_captured");
    let signature = sign(body.as_bytes());
    let first = post(&a.url(), signature.clone(), body.clone()).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(!is_duplicate(&first));
    // The very same request, replayed within the tolerance, on either instance.
    for gateway in [&a, &b] {
        let replay = post(&gateway.url(), signature.clone(), body.clone()).await;
        assert_eq!(replay.status, StatusCode::OK);
        assert!(is_duplicate(&replay), "marked as a duplicate");
    }
    assert_eq!(upstream.count(&body), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_client_burst_holds_across_two_instances_not_twice_over() {
    let Some(redis) = redis_for("burst") else {
        return;
    };
    let upstream = CountingUpstream::start(Duration::ZERO).await;
    // 4 requests at once, then 1 a second; failures never block here.
    let limits = |b: GatewayBuilder| b.client_rate(1).client_burst(4).max_failures_per_minute(0);
    let a = instance(&upstream, shared(&redis), limits).await;
    let b = instance(&upstream, shared(&redis), limits).await;

    let started = Instant::now();
    let mut passed = 0;
    for i in 0..12 {
        let gateway = if i % 2 == 0 { &a } else { &b };
        // Unsigned: a request the limiter lets through is refused by verification.
        let answer = post(&gateway.url(), None, "{}").await;
        match (answer.status, answer.code().as_str()) {
            (StatusCode::UNAUTHORIZED, "missing_signature") => passed += 1,
            (StatusCode::SERVICE_UNAVAILABLE, "rate_limited") => {}
            (status, code) => panic!("unexpected {status} {code}"),
        }
    }
    // One more token per whole second the loop took.
    let refilled = started.elapsed().as_secs() as usize;
    assert!(
        (4..=4 + refilled).contains(&passed),
        "{passed} requests passed: one burst of 4 for both instances, not 8"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_failing_on_one_instance_is_blocked_on_both() {
    let Some(redis) = redis_for("blocks") else {
        return;
    };
    let upstream = CountingUpstream::start(Duration::ZERO).await;
    let limits = |b: GatewayBuilder| b.client_rate(0).max_failures_per_minute(3);
    let a = instance(&upstream, shared(&redis), limits).await;
    let b = instance(&upstream, shared(&redis), limits).await;

    // Three failures are allowed at once; the fourth blocks. Spread over both instances.
    for i in 0..4 {
        let gateway = if i % 2 == 0 { &a } else { &b };
        let answer = post(&gateway.url(), Some("t=1,v0=00".into()), "{}").await;
        assert!(
            matches!(
                answer.status,
                StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED
            ),
            "failure {i} is answered as such, not blocked yet: {}",
            answer.status
        );
    }
    for gateway in [&a, &b] {
        // Even a genuine delivery from the blocked client: retryable, never handled now.
        let body = transcript("req_from_blocked_client");
        let answer = deliver(gateway, &body).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.code(), "client_blocked");
        assert!(answer.headers.contains_key("retry-after"));
    }
    assert_eq!(upstream.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_each_store_keeps_its_policy_and_deliveries_recover_after() {
    let Some(mut server) = RedisServer::for_test("outage") else {
        return;
    };
    let upstream = CountingUpstream::start(Duration::ZERO).await;
    let redis = RedisStore::new(&server.url())
        .unwrap()
        .timeout(Duration::from_millis(200));
    let gateway = instance(&upstream, redis, |b| b.client_rate(1000)).await;
    let admin = gateway.admin.unwrap();

    let mut handled = 0;

    for i in 0..5 {
        let answer = deliver(&gateway, &transcript(&format!("req_before_{i}"))).await;
        assert_eq!(answer.status, StatusCode::OK);
        answered(&answer, &mut handled);
    }
    assert_eq!(health(admin).await, StatusCode::OK);

    server.stop();
    let mut refused = 0;
    for i in 0..5 {
        let answer = deliver(&gateway, &transcript(&format!("req_during_{i}"))).await;
        answered(&answer, &mut handled);
        refused += usize::from(answer.status == StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(
        refused, 5,
        "nothing is answered 200 that was not stored as handled"
    );
    assert_eq!(health(admin).await, StatusCode::SERVICE_UNAVAILABLE);

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut recovered = false;
    let mut i = 0;
    while Instant::now() < deadline {
        let answer = deliver(&gateway, &transcript(&format!("req_after_{i}"))).await;
        answered(&answer, &mut handled);
        refused += usize::from(answer.status == StatusCode::SERVICE_UNAVAILABLE);
        i += 1;
        if answer.status == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "deliveries go through again once Redis is back");
    assert_eq!(health(admin).await, StatusCode::OK);
    assert_eq!(
        upstream.total(),
        handled,
        "every 200 was handled, and only those"
    );

    let metrics = admin_get(admin, "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(r#"hookgate_store_calls_total{op="dedupe.claim",outcome="ok"}"#),
        "{text}"
    );
    assert!(
        text.lines().any(|line| line
            .starts_with(r#"hookgate_store_calls_total{op="dedupe.claim",outcome="error"}"#)
            || line
                .starts_with(r#"hookgate_store_calls_total{op="dedupe.claim",outcome="timeout"}"#)),
        "store errors are counted: {text}"
    );
    assert!(
        text.contains(&format!(
            r#"hookgate_dedupe_total{{outcome="store_unavailable"}} {refused}"#
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sink_instances_on_one_redis_store_an_event_once() {
    let Some(redis) = redis_for("sinks") else {
        return;
    };
    let a = Gateway::start({
        let redis = shared(&redis);
        move |b| b.redis(redis)
    })
    .await;
    let b = Gateway::start({
        let redis = shared(&redis);
        move |b| b.redis(redis)
    })
    .await;
    assert_ne!(a.events(), b.events(), "two directories");
    let body = transcript("req_two_sinks");
    let first = deliver(&a, &body).await;
    assert_eq!(first.status, StatusCode::OK);
    let second = deliver(&b, &body).await;
    assert_eq!(second.status, StatusCode::OK);
    assert!(is_duplicate(&second));
    assert_eq!(
        std::fs::read(a.events().join("req_two_sinks.json")).unwrap(),
        body.as_bytes()
    );
    assert!(!b.events().join("req_two_sinks.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_upstream_mode_deduplicates_in_memory_and_it_can_be_turned_off() {
    let upstream = CountingUpstream::start(Duration::ZERO).await;
    let url = upstream.url.clone();
    let on = Gateway::start(move |b| b.upstream(Upstream::builder(url))).await;
    let body = transcript("req_memory");
    assert!(!is_duplicate(&deliver(&on, &body).await));
    assert!(is_duplicate(&deliver(&on, &body).await));
    assert_eq!(upstream.count(&body), 1);

    let url = upstream.url.clone();
    let off = Gateway::start(move |b| b.upstream(Upstream::builder(url)).dedupe(false)).await;
    let body = transcript("req_not_deduplicated");
    for _ in 0..2 {
        let answer = deliver(&off, &body).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(!is_duplicate(&answer));
    }
    assert_eq!(upstream.count(&body), 2);
}

#[tokio::test]
async fn a_dedupe_ttl_shorter_than_a_signatures_life_is_refused() {
    let settings = hookgate::gateway::Gateway::builder(
        hookgate::scheme::ElevenLabs::new(common::gateway::SECRET).unwrap(),
    )
    .upstream(Upstream::builder("http://127.0.0.1:9/"))
    .dedupe_ttl(Duration::from_secs(600));
    let error = settings.build().unwrap_err().to_string();
    assert!(error.contains("dedupe TTL"), "{error}");
}

/// Counts a 200 as handled; a 503 must be deduplication's (the limiters fail open).
fn answered(answer: &Answer, handled: &mut usize) {
    match answer.status {
        StatusCode::OK => {
            assert!(!is_duplicate(answer));
            *handled += 1;
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            assert_eq!(
                answer.code(),
                "dedupe_unavailable",
                "dedupe fails closed, the limiters open"
            );
            assert!(answer.headers.contains_key("retry-after"));
        }
        other => panic!("200 or a retryable 503 only, not {other}"),
    }
}

async fn health(admin: SocketAddr) -> StatusCode {
    admin_get(admin, "/healthz").await.status
}

async fn admin_get(admin: SocketAddr, path: &str) -> Answer {
    exchange(
        Request::get(format!("http://{admin}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
}
