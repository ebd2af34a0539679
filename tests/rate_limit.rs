//! RateLimitLayer and FailureLimitLayer as tower services: answers, headers, shadow mode,
//! key handling, shared state, waits and store failures. Deterministic: fake or paused clocks.
#![cfg(feature = "rate-limit")]

use std::{
    convert::Infallible,
    future::{ready, Ready},
    net::SocketAddr,
    num::{NonZeroU32, NonZeroUsize},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use governor::clock::FakeRelativeClock;
use hookgate::{
    client_ip::{ClientIp, ForwardedHeader},
    problem::ProblemCode,
    rate_limit::{
        BlockListId, Check, Decision, FailureLimitLayer, FailurePolicy, GlobalKey, HeaderKey,
        KeyExtractor, MemoryStore, OnMissingKey, OnStoreError, Rate, RateLimitExceeded,
        RateLimitLayer, RateLimitStore, StoreError, TokioClock,
    },
};
use http::{HeaderName, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};

type Body = Full<Bytes>;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// The handler: answers 200 "ok" and counts its calls.
fn handler(
    calls: Arc<AtomicUsize>,
) -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = Ready<Result<Response<Body>, Infallible>>,
> + Clone {
    service_fn(move |_req: Request<Body>| {
        calls.fetch_add(1, Ordering::SeqCst);
        ready(Ok::<_, Infallible>(Response::new(Full::new(
            Bytes::from_static(b"ok"),
        ))))
    })
}

fn from(peer: [u8; 4]) -> Request<Body> {
    let mut request = Request::post("/webhooks/elevenlabs")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    request
        .extensions_mut()
        .insert(SocketAddr::from((peer, 40_000)));
    request
}

fn from_proxy(xff: &str) -> Request<Body> {
    let mut request = from([10, 0, 0, 2]);
    request
        .headers_mut()
        .insert("x-forwarded-for", xff.parse().unwrap());
    request
}

async fn json<B>(response: Response<B>) -> serde_json::Value
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

/// The status `service` (a clone of it) answers `request` with.
async fn status<S, B>(service: &S, request: Request<Body>) -> StatusCode
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    service.clone().oneshot(request).await.unwrap().status()
}

fn per_client<E: KeyExtractor>(
    rate: Rate,
    key: E,
    clock: &FakeRelativeClock,
) -> RateLimitLayer<E, MemoryStore<E::Key>> {
    RateLimitLayer::per_client_with_store(MemoryStore::with_clock(rate, clock.clone()), key)
}

/// A failure limiter on a memory store on `clock`: `allowed` failures, then `policy`.
fn failure_limit<E: KeyExtractor>(
    allowed: Rate,
    policy: FailurePolicy,
    key: E,
    clock: &FakeRelativeClock,
) -> FailureLimitLayer<E, MemoryStore<E::Key>> {
    FailureLimitLayer::with_store(MemoryStore::with_clock(allowed, clock.clone()), policy, key)
}

/// Blocks for `secs` seconds.
fn block_for(secs: u64) -> FailurePolicy {
    FailurePolicy::block_for(Duration::from_secs(secs)).unwrap()
}

#[tokio::test]
async fn per_client_answers_429_problem_json_with_retry_after_and_ratelimit_headers() {
    let clock = FakeRelativeClock::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = per_client(Rate::per_minute(nz(2)), ClientIp::peer(), &clock);
    let service = layer.layer(handler(calls.clone()));

    let ok = service
        .clone()
        .oneshot(from([203, 0, 113, 1]))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["ratelimit-policy"], "\"client\";q=2;w=60");
    assert_eq!(ok.headers()["ratelimit"], "\"client\";r=1;t=30");
    assert!(
        ok.extensions().get::<ProblemCode>().is_none(),
        "the handler's answer"
    );
    service
        .clone()
        .oneshot(from([203, 0, 113, 1]))
        .await
        .unwrap();

    clock.advance(Duration::from_millis(500));
    let limited = service
        .clone()
        .oneshot(from([203, 0, 113, 1]))
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    // 29.5 s until the next request: rounded up.
    assert_eq!(limited.headers()["retry-after"], "30");
    assert_eq!(
        limited.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(limited.headers()["ratelimit-policy"], "\"client\";q=2;w=60");
    assert_eq!(limited.headers()["ratelimit"], "\"client\";r=0;t=30");
    assert_eq!(
        limited.extensions().get::<ProblemCode>(),
        Some(&ProblemCode::RATE_LIMITED)
    );
    let exceeded = *limited.extensions().get::<RateLimitExceeded>().unwrap();
    assert!(exceeded.enforced);
    assert_eq!(exceeded.policy, "client");
    let body = json(limited).await;
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(body["status"], 429);
    assert_eq!(body["retry_after"], 30);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a rejected request never reaches the handler"
    );
}

#[tokio::test]
async fn sub_second_waits_are_announced_as_one_second() {
    let clock = FakeRelativeClock::default();
    let service = per_client(
        Rate::per_second(nz(10)).burst(nz(1)),
        ClientIp::peer(),
        &clock,
    )
    .layer(handler(Arc::default()));
    service
        .clone()
        .oneshot(from([203, 0, 113, 1]))
        .await
        .unwrap();
    let limited = service
        .clone()
        .oneshot(from([203, 0, 113, 1]))
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(limited.headers()["ratelimit"], "\"client\";r=0;t=1");
}

#[tokio::test]
async fn verified_traffic_over_its_rate_gets_a_retryable_503_never_a_4xx() {
    let clock = FakeRelativeClock::default();
    let layer = RateLimitLayer::verified_with_store(
        MemoryStore::with_clock(Rate::per_second(nz(1)), clock.clone()),
        GlobalKey,
    );
    let service = layer.layer(handler(Arc::default()));
    assert_eq!(status(&service, from([1, 1, 1, 1])).await, StatusCode::OK);
    let throttled = service.clone().oneshot(from([2, 2, 2, 2])).await.unwrap();
    assert_eq!(throttled.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(throttled.headers()["retry-after"], "1");
    assert_eq!(
        throttled.headers()["ratelimit-policy"],
        "\"verified\";q=1;w=1"
    );
    assert_eq!(throttled.headers()["ratelimit"], "\"verified\";r=0;t=1");
    assert_eq!(
        throttled.extensions().get::<ProblemCode>(),
        Some(&ProblemCode::THROTTLED)
    );
    let body = json(throttled).await;
    assert_eq!(body["code"], "throttled");
    assert_eq!(body["status"], 503);
    clock.advance(Duration::from_secs(1));
    assert_eq!(status(&service, from([2, 2, 2, 2])).await, StatusCode::OK);
}

#[tokio::test]
async fn state_is_shared_by_every_clone_and_every_service_of_the_layer() {
    let clock = FakeRelativeClock::default();
    let layer = per_client(Rate::per_hour(nz(3)), ClientIp::peer(), &clock);
    let calls = Arc::new(AtomicUsize::new(0));
    // Two services from the layer (as a server making one per connection) and fresh clones.
    let a = layer.layer(handler(calls.clone()));
    let b = layer.clone().layer(handler(calls.clone()));
    let mut statuses = Vec::new();
    for service in [a.clone(), b.clone(), a.clone(), b.clone(), a, b] {
        statuses.push(
            service
                .oneshot(from([198, 51, 100, 9]))
                .await
                .unwrap()
                .status(),
        );
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 3);
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        3
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn clients_have_separate_buckets() {
    let clock = FakeRelativeClock::default();
    let service =
        per_client(Rate::per_hour(nz(1)), ClientIp::peer(), &clock).layer(handler(Arc::default()));
    assert_eq!(
        status(&service, from([203, 0, 113, 1])).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&service, from([203, 0, 113, 1])).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status(&service, from([203, 0, 113, 2])).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn forwarded_for_spoofing_cannot_move_a_client_into_another_bucket() {
    let clock = FakeRelativeClock::default();
    let key = ClientIp::behind_proxies(["10.0.0.0/8"], ForwardedHeader::XForwardedFor).unwrap();
    let service = per_client(Rate::per_hour(nz(1)), key, &clock).layer(handler(Arc::default()));

    // The attacker at 203.0.113.66 (as seen by our proxy) uses up its bucket.
    assert_eq!(
        status(&service, from_proxy("203.0.113.66")).await,
        StatusCode::OK
    );
    // Whatever it writes to the left of what the proxy appended, it stays in its own bucket.
    for spoof in [
        "198.51.100.1, 203.0.113.66",
        "10.0.0.99, 203.0.113.66",
        "garbage, ;;;, 203.0.113.66",
        "[2001:db8::1]:443, 2001:db8::2, 203.0.113.66",
        "unknown,203.0.113.66",
        "203.0.113.67, 203.0.113.66",
    ] {
        let response = service.clone().oneshot(from_proxy(spoof)).await.unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{spoof}");
    }
    // The client it tried to impersonate still has its own, untouched bucket.
    assert_eq!(
        status(&service, from_proxy("198.51.100.1")).await,
        StatusCode::OK
    );

    // A peer that is not a trusted proxy is keyed by itself, whatever header it sends.
    let mut direct = from([198, 51, 100, 200]);
    direct
        .headers_mut()
        .insert("x-forwarded-for", "203.0.113.99".parse().unwrap());
    assert_eq!(status(&service, direct).await, StatusCode::OK);
    let mut again = from([198, 51, 100, 200]);
    again
        .headers_mut()
        .insert("x-forwarded-for", "203.0.113.100".parse().unwrap());
    assert_eq!(status(&service, again).await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn ipv6_clients_in_one_64_share_a_bucket() {
    let clock = FakeRelativeClock::default();
    let service =
        per_client(Rate::per_hour(nz(1)), ClientIp::peer(), &clock).layer(handler(Arc::default()));
    let v6 = |addr: &str| {
        let mut request = Request::new(Full::new(Bytes::new()));
        request
            .extensions_mut()
            .insert(SocketAddr::new(addr.parse().unwrap(), 443));
        request
    };
    assert_eq!(
        status(&service, v6("2001:db8:1:2::1")).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&service, v6("2001:db8:1:2:ffff::9")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status(&service, v6("2001:db8:1:3::1")).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn shadow_mode_never_rejects_and_reports_what_it_would_have_done() {
    let clock = FakeRelativeClock::default();
    let seen = Arc::new(AtomicUsize::new(0));
    let seen_in_handler = seen.clone();
    let inner = service_fn(move |req: Request<Body>| {
        if req.extensions().get::<RateLimitExceeded>().is_some() {
            seen_in_handler.fetch_add(1, Ordering::SeqCst);
        }
        ready(Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))))
    });
    let service = per_client(Rate::per_hour(nz(2)), ClientIp::peer(), &clock)
        .shadow()
        .layer(inner);
    for i in 0..10 {
        let response = service
            .clone()
            .oneshot(from([203, 0, 113, 5]))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("ratelimit").is_none());
        let exceeded = response.extensions().get::<RateLimitExceeded>();
        if i < 2 {
            assert!(exceeded.is_none());
        } else {
            assert!(!exceeded.unwrap().enforced);
        }
    }
    assert_eq!(seen.load(Ordering::SeqCst), 8);
}

#[tokio::test]
async fn a_request_without_a_key_gets_500_client_unidentified_by_default() {
    let clock = FakeRelativeClock::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let service =
        per_client(Rate::per_hour(nz(5)), ClientIp::peer(), &clock).layer(handler(calls.clone()));
    let response = service
        .clone()
        .oneshot(Request::new(Full::new(Bytes::new())))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.headers().get("retry-after").is_none());
    assert_eq!(json(response).await["code"], "client_unidentified");
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // Unidentified requests never share a bucket by accident: with `Allow` they are unlimited.
    let service = per_client(Rate::per_hour(nz(1)), ClientIp::peer(), &clock)
        .on_missing_key(OnMissingKey::Allow)
        .layer(handler(calls.clone()));
    for _ in 0..5 {
        let response = service
            .clone()
            .oneshot(Request::new(Full::new(Bytes::new())))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn verified_limiter_waits_a_bounded_time_for_a_token() {
    let store = MemoryStore::with_clock(Rate::per_second(nz(4)).burst(nz(1)), TokioClock::new());
    let service = RateLimitLayer::verified_with_store(store, GlobalKey)
        .wait_for_token(Duration::from_millis(300))
        .unwrap()
        .layer(handler(Arc::default()));
    let start = tokio::time::Instant::now();
    assert_eq!(status(&service, from([1, 1, 1, 1])).await, StatusCode::OK);
    // The next token is due in 250 ms, within the bound: the request waits, then passes.
    assert_eq!(status(&service, from([1, 1, 1, 1])).await, StatusCode::OK);
    assert_eq!(start.elapsed(), Duration::from_millis(250));

    // Three callers at once: a refusal takes no token, so each is told the next one is due in
    // 250 ms (within the bound) and waits; then one takes it and the other two, checked again
    // without waiting, get 503.
    let (a, b, c) = tokio::join!(
        service.clone().oneshot(from([1, 1, 1, 1])),
        service.clone().oneshot(from([1, 1, 1, 1])),
        service.clone().oneshot(from([1, 1, 1, 1])),
    );
    let mut statuses = [
        a.unwrap().status(),
        b.unwrap().status(),
        c.unwrap().status(),
    ];
    statuses.sort();
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE
        ]
    );
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(500),
        "one wait of 250 ms each, never a second"
    );
}

#[test]
fn only_the_verified_limiter_may_wait_and_only_briefly() {
    let per_client = RateLimitLayer::per_client(Rate::per_second(nz(1)), GlobalKey);
    assert!(per_client
        .wait_for_token(Duration::from_millis(100))
        .is_err());
    let verified = RateLimitLayer::verified(Rate::per_second(nz(1)), GlobalKey);
    assert!(verified
        .clone()
        .wait_for_token(Duration::from_secs(11))
        .is_err());
    assert!(verified.wait_for_token(Duration::from_secs(2)).is_ok());
    // A rate too fine to count is refused where it is built, never by a layer.
    assert!(Rate::new(u32::MAX, Duration::from_secs(1)).is_err());
}

/// A store that answers later, like one across the network, deciding with a memory store.
struct RemoteLike {
    memory: MemoryStore<()>,
    fail: bool,
}

impl RateLimitStore<()> for RemoteLike {
    type CheckFuture = Ready<Result<Decision, StoreError>>;
    type BlockFuture = Ready<Result<Option<Duration>, StoreError>>;

    fn check(&self, key: &()) -> Check<Self::CheckFuture, Decision> {
        if self.fail {
            Check::Pending(ready(Err(StoreError::new("connection refused"))))
        } else {
            Check::Pending(ready(Ok(self.memory.decide(key))))
        }
    }

    fn record_failure(
        &self,
        key: &(),
        cooldown: Duration,
    ) -> Check<Self::BlockFuture, Option<Duration>> {
        if self.fail {
            return Check::Pending(ready(Err(StoreError::new("connection refused"))));
        }
        match self.memory.record_failure(key, cooldown) {
            Check::Ready(result) => Check::Pending(ready(result)),
            Check::Pending(future) => Check::Pending(future),
        }
    }

    fn blocked(&self, key: &()) -> Check<Self::BlockFuture, Option<Duration>> {
        if self.fail {
            return Check::Pending(ready(Err(StoreError::new("connection refused"))));
        }
        match self.memory.blocked(key) {
            Check::Ready(result) => Check::Pending(ready(result)),
            Check::Pending(future) => Check::Pending(future),
        }
    }

    fn rate(&self) -> Rate {
        self.memory.rate()
    }
}

fn remote_like(fail: bool) -> RemoteLike {
    RemoteLike {
        memory: MemoryStore::with_clock(Rate::per_hour(nz(1)), FakeRelativeClock::default()),
        fail,
    }
}

#[tokio::test]
async fn a_store_that_answers_later_is_awaited() {
    let calls = Arc::new(AtomicUsize::new(0));
    let service = RateLimitLayer::verified_with_store(remote_like(false), GlobalKey)
        .layer(handler(calls.clone()));
    assert_eq!(status(&service, from([1, 1, 1, 1])).await, StatusCode::OK);
    let second = service.clone().oneshot(from([1, 1, 1, 1])).await.unwrap();
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn store_failures_fail_open_by_default_and_closed_on_request() {
    let calls = Arc::new(AtomicUsize::new(0));
    let open = RateLimitLayer::per_client_with_store(remote_like(true), GlobalKey)
        .layer(handler(calls.clone()));
    for _ in 0..3 {
        assert_eq!(status(&open, from([1, 1, 1, 1])).await, StatusCode::OK);
    }
    let closed = RateLimitLayer::per_client_with_store(remote_like(true), GlobalKey)
        .on_store_error(OnStoreError::Reject)
        .layer(handler(calls.clone()));
    let response = closed.oneshot(from([1, 1, 1, 1])).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(json(response).await["code"], "limiter_unavailable");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_failure_limiter_waits_for_a_store_that_answers_later() {
    let calls = Arc::new(AtomicUsize::new(0));
    let service = FailureLimitLayer::with_store(remote_like(false), block_for(60), GlobalKey)
        .layer(verifier(calls.clone()));
    // One failure allowed an hour: the second blocks.
    for _ in 0..2 {
        assert_eq!(
            status(&service, from([1, 1, 1, 1])).await,
            StatusCode::UNAUTHORIZED
        );
    }
    let blocked = service
        .clone()
        .oneshot(valid(from([1, 1, 1, 1])))
        .await
        .unwrap();
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(blocked.headers()["retry-after"], "60");
    assert_eq!(json(blocked).await["code"], "client_blocked");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a blocked client never reaches verification"
    );
}

#[tokio::test]
async fn the_failure_limiter_fails_open_when_its_store_fails() {
    let calls = Arc::new(AtomicUsize::new(0));
    let service = FailureLimitLayer::with_store(remote_like(true), block_for(60), GlobalKey)
        .layer(verifier(calls.clone()));
    for _ in 0..5 {
        assert_eq!(
            status(&service, from([1, 1, 1, 1])).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        status(&service, valid(from([1, 1, 1, 1]))).await,
        StatusCode::OK
    );
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn the_failure_limiter_fails_closed_with_a_retryable_503_on_request() {
    let calls = Arc::new(AtomicUsize::new(0));
    let policy = block_for(60).on_store_error(OnStoreError::Reject);
    let service = FailureLimitLayer::with_store(remote_like(true), policy, GlobalKey)
        .layer(verifier(calls.clone()));
    let response = service
        .clone()
        .oneshot(valid(from([1, 1, 1, 1])))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(json(response).await["code"], "limiter_unavailable");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing passes unchecked");
}

/// The failure limiter's half of a pair of stores keeping one key per client: it counts how
/// often it is asked whether a client is blocked.
struct FailureHalf {
    memory: Arc<MemoryStore<()>>,
    list: Option<BlockListId>,
    lookups: Arc<AtomicUsize>,
}

impl RateLimitStore<()> for FailureHalf {
    type CheckFuture = Ready<Result<Decision, StoreError>>;
    type BlockFuture = Ready<Result<Option<Duration>, StoreError>>;

    fn check(&self, key: &()) -> Check<Self::CheckFuture, Decision> {
        self.memory.check(key)
    }

    fn record_failure(
        &self,
        key: &(),
        cooldown: Duration,
    ) -> Check<Self::BlockFuture, Option<Duration>> {
        self.memory.record_failure(key, cooldown)
    }

    fn blocked(&self, key: &()) -> Check<Self::BlockFuture, Option<Duration>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.memory.blocked(key)
    }

    fn rate(&self) -> Rate {
        self.memory.rate()
    }

    fn block_list(&self) -> Option<BlockListId> {
        self.list
    }
}

/// The per-client limiter's half: its decisions look the block up too, in list `list` (or
/// fail, when `down`).
struct RequestHalf {
    memory: MemoryStore<()>,
    failures: Arc<MemoryStore<()>>,
    list: BlockListId,
    down: bool,
}

impl RateLimitStore<()> for RequestHalf {
    type CheckFuture = Ready<Result<Decision, StoreError>>;
    type BlockFuture = Ready<Result<Option<Duration>, StoreError>>;

    fn check(&self, key: &()) -> Check<Self::CheckFuture, Decision> {
        if self.down {
            return Check::Pending(ready(Err(StoreError::new("timed out"))));
        }
        let Check::Ready(Ok(blocked)) = self.failures.blocked(key) else {
            unreachable!("the memory store answers at once")
        };
        Check::Pending(ready(Ok(self
            .memory
            .decide(key)
            .with_block(self.list, blocked))))
    }

    fn record_failure(&self, _: &(), _: Duration) -> Check<Self::BlockFuture, Option<Duration>> {
        unreachable!("the per-client limiter counts no failures")
    }

    fn blocked(&self, _: &()) -> Check<Self::BlockFuture, Option<Duration>> {
        unreachable!("the per-client limiter looks blocks up in its decisions")
    }

    fn rate(&self) -> Rate {
        self.memory.rate()
    }

    fn reads_block_list(&self) -> Option<BlockListId> {
        Some(self.list)
    }
}

/// A per-client limiter in front of a failure limiter, their stores paired on `list` (the
/// failure store names `failure_list`), and the count of the failure store's own lookups.
fn paired(
    list: BlockListId,
    failure_list: Option<BlockListId>,
    calls: Arc<AtomicUsize>,
) -> (
    impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
    Arc<AtomicUsize>,
) {
    paired_with(list, failure_list, false, block_for(60), calls)
}

/// [`paired`], the per-client store failing every decision when `down`, the failure limiter
/// under `policy`.
fn paired_with(
    list: BlockListId,
    failure_list: Option<BlockListId>,
    down: bool,
    policy: FailurePolicy,
    calls: Arc<AtomicUsize>,
) -> (
    impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
    Arc<AtomicUsize>,
) {
    let failures = Arc::new(MemoryStore::with_clock(
        Rate::per_hour(nz(1)),
        FakeRelativeClock::default(),
    ));
    let lookups = Arc::new(AtomicUsize::new(0));
    let requests = RequestHalf {
        memory: MemoryStore::with_clock(Rate::per_hour(nz(100)), FakeRelativeClock::default()),
        failures: failures.clone(),
        list,
        down,
    };
    let failure_half = FailureHalf {
        memory: failures,
        list: failure_list,
        lookups: lookups.clone(),
    };
    let service = tower::ServiceBuilder::new()
        .layer(RateLimitLayer::per_client_with_store(requests, GlobalKey))
        .layer(FailureLimitLayer::with_store(
            failure_half,
            policy,
            GlobalKey,
        ))
        .service(verifier(calls));
    (service, lookups)
}

#[tokio::test]
async fn a_block_looked_up_with_the_rate_decision_is_not_looked_up_again() {
    let list = BlockListId::unique();
    let calls = Arc::new(AtomicUsize::new(0));
    let (service, lookups) = paired(list, Some(list), calls.clone());
    // One failure allowed an hour: the second blocks.
    for _ in 0..2 {
        assert_eq!(
            status(&service, from([1, 1, 1, 1])).await,
            StatusCode::UNAUTHORIZED
        );
    }
    let blocked = service
        .clone()
        .oneshot(valid(from([1, 1, 1, 1])))
        .await
        .unwrap();
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(json(blocked).await["code"], "client_blocked");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the blocked request is not read"
    );
    assert_eq!(
        lookups.load(Ordering::SeqCst),
        0,
        "every block came with the rate decision: no second round trip"
    );
}

#[tokio::test]
async fn when_the_paired_decision_fails_the_failure_limiter_applies_its_policy_without_asking() {
    let list = BlockListId::unique();
    let calls = Arc::new(AtomicUsize::new(0));
    // Fail open (the default): through, unchecked, and no second call to a failing store.
    let (open, lookups) = paired_with(list, Some(list), true, block_for(60), calls.clone());
    assert_eq!(
        status(&open, valid(from([1, 1, 1, 1]))).await,
        StatusCode::OK
    );
    assert_eq!(lookups.load(Ordering::SeqCst), 0);
    // Fail closed: a retryable 503, at once.
    let policy = block_for(60).on_store_error(OnStoreError::Reject);
    let (closed, lookups) = paired_with(list, Some(list), true, policy, calls.clone());
    let response = closed.oneshot(valid(from([1, 1, 1, 1]))).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(response).await["code"], "limiter_unavailable");
    assert_eq!(lookups.load(Ordering::SeqCst), 0);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "only the fail-open request was handled"
    );
}

#[tokio::test]
async fn a_block_lookup_of_another_list_is_not_trusted() {
    let calls = Arc::new(AtomicUsize::new(0));
    // The failure store keeps another list (or names none): it looks the block up itself.
    for failure_list in [Some(BlockListId::unique()), None] {
        let (service, lookups) = paired(BlockListId::unique(), failure_list, calls.clone());
        assert_eq!(
            status(&service, valid(from([1, 1, 1, 1]))).await,
            StatusCode::OK
        );
        assert_eq!(lookups.load(Ordering::SeqCst), 1);
    }
    assert_ne!(BlockListId::unique(), BlockListId::unique());
}

/// An inner service that is never ready: its readiness error must come through the layer.
#[derive(Clone, Debug)]
struct Unready;

impl Service<Request<Body>> for Unready {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Ready<Result<Response<Body>, BoxError>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Err("inner overloaded".into()))
    }

    fn call(&mut self, _req: Request<Body>) -> Self::Future {
        ready(Ok(Response::new(Full::new(Bytes::new()))))
    }
}

#[tokio::test]
async fn poll_ready_passes_through_to_the_inner_service() {
    let clock = FakeRelativeClock::default();
    let mut service = per_client(Rate::per_hour(nz(1)), ClientIp::peer(), &clock).layer(Unready);
    let ready = std::future::poll_fn(|cx| service.poll_ready(cx)).await;
    assert_eq!(ready.unwrap_err().to_string(), "inner overloaded");
}

#[tokio::test]
async fn the_failure_limiters_readiness_is_the_inner_services_and_its_debug_names_it() {
    let layer = FailureLimitLayer::new(Rate::per_hour(nz(1)), block_for(60), ClientIp::peer());
    let mut service = layer.layer(Unready);
    let ready = std::future::poll_fn(|cx| service.poll_ready(cx)).await;
    assert_eq!(ready.unwrap_err().to_string(), "inner overloaded");
    let debug = format!("{service:?}");
    assert!(
        debug.starts_with("FailureLimit {") && debug.contains("inner: Unready"),
        "{debug}"
    );
}

#[test]
fn a_decision_says_which_block_list_it_looked_up_and_what_it_found() {
    let list = BlockListId::unique();
    let allowed = Decision::allowed(3, Duration::from_secs(1));
    assert_eq!(allowed.block(), None, "no lookup unless the store made one");
    let blocked = allowed.with_block(list, Some(Duration::from_secs(5)));
    assert_eq!(blocked.block(), Some((list, Some(Duration::from_secs(5)))));
    assert!(
        blocked.is_allowed(),
        "the rate decision itself is unchanged"
    );
    let denied = Decision::denied(Duration::from_secs(2)).with_block(list, None);
    assert_eq!(denied.block(), Some((list, None)));
}

/// The stand-in for the verification layer: 401 unless the request says `x-valid`.
fn verifier(
    calls: Arc<AtomicUsize>,
) -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = Ready<Result<Response<Body>, Infallible>>,
> + Clone {
    service_fn(move |req: Request<Body>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let mut response = Response::new(Full::new(Bytes::new()));
        if req.headers().get("x-valid").is_none() {
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
                .extensions_mut()
                .insert(ProblemCode::SIGNATURE_MISMATCH);
        }
        ready(Ok::<_, Infallible>(response))
    })
}

fn valid(mut request: Request<Body>) -> Request<Body> {
    request
        .headers_mut()
        .insert("x-valid", "1".parse().unwrap());
    request
}

#[tokio::test]
async fn failure_limiter_blocks_a_failing_client_before_its_request_is_read_and_unblocks_it() {
    let clock = FakeRelativeClock::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = failure_limit(
        Rate::per_minute(nz(3)),
        block_for(120),
        ClientIp::peer(),
        &clock,
    );
    let service = layer.layer(verifier(calls.clone()));

    // Successes never count.
    for _ in 0..10 {
        assert_eq!(
            status(&service, valid(from([203, 0, 113, 8]))).await,
            StatusCode::OK
        );
    }
    // Three failures are allowed; the fourth blocks.
    for _ in 0..4 {
        assert_eq!(
            status(&service, from([203, 0, 113, 8])).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(layer.blocked_clients(), 1);
    let before = calls.load(Ordering::SeqCst);
    clock.advance(Duration::from_secs(20));
    let blocked = service
        .clone()
        .oneshot(valid(from([203, 0, 113, 8])))
        .await
        .unwrap();
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(blocked.headers()["retry-after"], "100");
    assert_eq!(
        blocked.extensions().get::<ProblemCode>(),
        Some(&ProblemCode::CLIENT_BLOCKED)
    );
    assert_eq!(json(blocked).await["code"], "client_blocked");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "a blocked client never reaches verification"
    );

    // Another client is unaffected.
    assert_eq!(
        status(&service, valid(from([203, 0, 113, 9]))).await,
        StatusCode::OK
    );

    // After the cooldown the client is verified again.
    clock.advance(Duration::from_secs(100));
    assert_eq!(
        status(&service, valid(from([203, 0, 113, 8]))).await,
        StatusCode::OK
    );
    assert_eq!(layer.blocked_clients(), 0);
}

/// An inner service answering `status` with `code` in the response extensions, if any.
fn answering(
    status: u16,
    code: Option<ProblemCode>,
) -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = Ready<Result<Response<Body>, Infallible>>,
> + Clone {
    service_fn(move |_req: Request<Body>| {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        if let Some(code) = code {
            response.extensions_mut().insert(code);
        }
        ready(Ok::<_, Infallible>(response))
    })
}

#[tokio::test]
async fn failure_limiter_counts_failed_verifications_and_abandoned_bodies_only() {
    // One failure allowed per hour: a second counted answer blocks the third request.
    let blocks = |answer, code| async move {
        let clock = FakeRelativeClock::default();
        let layer = failure_limit(
            Rate::per_hour(nz(1)),
            block_for(60),
            ClientIp::peer(),
            &clock,
        );
        let service = layer.layer(answering(answer, code));
        for _ in 0..2 {
            service
                .clone()
                .oneshot(from([203, 0, 113, 1]))
                .await
                .unwrap();
        }
        let third = service.oneshot(from([203, 0, 113, 1])).await.unwrap();
        third.extensions().get::<ProblemCode>() == Some(&ProblemCode::CLIENT_BLOCKED)
    };
    for (status, code) in [
        (400, ProblemCode::MISSING_SIGNATURE),
        (400, ProblemCode::MALFORMED_SIGNATURE),
        (401, ProblemCode::SIGNATURE_MISMATCH),
        (401, ProblemCode::TIMESTAMP_STALE),
        (401, ProblemCode::TIMESTAMP_IN_FUTURE),
        // A body abandoned or too slow: maybe forged, and it held a connection and memory.
        (408, ProblemCode::BODY_TIMEOUT),
        (400, ProblemCode::BODY_UNREADABLE),
        // A static token check's refusals: a client guessing tokens.
        (401, ProblemCode::MISSING_CREDENTIALS),
        (401, ProblemCode::INVALID_CREDENTIALS),
    ] {
        assert!(blocks(status, Some(code)).await, "{code}");
    }
    for (status, code) in [
        (413, Some(ProblemCode::PAYLOAD_TOO_LARGE)),
        (503, Some(ProblemCode::BUFFER_BUDGET_EXHAUSTED)),
        (400, None),
        (401, None),
        (404, None),
        (429, None),
        (500, None),
        (200, None),
    ] {
        assert!(!blocks(status, code).await, "{status} {code:?}");
    }
}

#[tokio::test]
async fn failure_limiter_in_shadow_mode_never_blocks() {
    let clock = FakeRelativeClock::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let policy = block_for(60).shadow();
    let service = failure_limit(Rate::per_hour(nz(1)), policy, ClientIp::peer(), &clock)
        .layer(verifier(calls.clone()));
    for _ in 0..5 {
        service
            .clone()
            .oneshot(from([203, 0, 113, 1]))
            .await
            .unwrap();
    }
    let response = service
        .clone()
        .oneshot(valid(from([203, 0, 113, 1])))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let exceeded = response.extensions().get::<RateLimitExceeded>().unwrap();
    assert_eq!(exceeded.policy, "failures");
    assert!(!exceeded.enforced);
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn a_client_turned_away_because_the_store_is_full_gets_a_retryable_503() {
    let clock = FakeRelativeClock::default();
    let store = MemoryStore::with_clock(Rate::per_minute(nz(1)), clock.clone())
        .max_keys(NonZeroUsize::new(2).unwrap());
    let service = RateLimitLayer::per_client_with_store(store, ClientIp::peer())
        .layer(handler(Arc::default()));
    for host in [1, 2] {
        assert_eq!(
            status(&service, from([203, 0, 113, host])).await,
            StatusCode::OK
        );
    }
    // A tracked client over its own rate: 429.
    assert_eq!(
        status(&service, from([203, 0, 113, 1])).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // New clients share the overflow bucket (one request a minute): the second is refused
    // for our capacity, retryably.
    assert_eq!(
        status(&service, from([203, 0, 113, 3])).await,
        StatusCode::OK
    );
    let refused = service
        .clone()
        .oneshot(from([203, 0, 113, 4]))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(json(refused).await["code"], "limiter_unavailable");
}

#[tokio::test]
async fn failure_limiter_block_list_is_bounded() {
    let clock = FakeRelativeClock::default();
    let store = MemoryStore::with_clock(Rate::per_hour(nz(1)), clock.clone())
        .max_keys(NonZeroUsize::new(5).unwrap());
    let layer = FailureLimitLayer::with_store(store, block_for(60), ClientIp::peer());
    let service = layer.layer(verifier(Arc::default()));
    for host in 0..50u8 {
        for _ in 0..2 {
            service
                .clone()
                .oneshot(from([203, 0, 113, host]))
                .await
                .unwrap();
        }
    }
    assert!(layer.blocked_clients() <= 5, "{}", layer.blocked_clients());
    // Once blocks expire, room is made for new ones.
    clock.advance(Duration::from_secs(61));
    for _ in 0..2 {
        service
            .clone()
            .oneshot(from([198, 51, 100, 1]))
            .await
            .unwrap();
    }
    assert_eq!(
        status(&service, from([198, 51, 100, 1])).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert!(layer.blocked_clients() <= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_tasks_on_one_key_never_over_grant() {
    let clock = FakeRelativeClock::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let service = per_client(
        Rate::per_minute(nz(10)).burst(nz(25)),
        ClientIp::peer(),
        &clock,
    )
    .layer(handler(calls.clone()));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move {
                let mut ok = 0;
                for _ in 0..20 {
                    let status = status(&service, from([203, 0, 113, 50])).await;
                    ok += usize::from(status == StatusCode::OK);
                }
                ok
            })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        granted += task.await.unwrap();
    }
    assert_eq!(granted, 25);
    assert_eq!(calls.load(Ordering::SeqCst), 25);
}

#[tokio::test]
async fn the_handlers_own_400_and_401_never_get_a_client_blocked() {
    let clock = FakeRelativeClock::default();
    let layer = failure_limit(
        Rate::per_hour(nz(1)),
        block_for(60),
        ClientIp::peer(),
        &clock,
    );
    // A handler behind verification refusing verified deliveries, with and without a problem
    // body of its own.
    let refusing = service_fn(|req: Request<Body>| {
        let own_problem = req.headers().contains_key("x-problem");
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        if own_problem {
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
                .extensions_mut()
                .insert(ProblemCode::new("not_my_tenant", "Unknown tenant"));
        }
        ready(Ok::<_, Infallible>(response))
    });
    let service = layer.layer(refusing);
    for _ in 0..5 {
        assert_eq!(
            status(&service, from([203, 0, 113, 9])).await,
            StatusCode::BAD_REQUEST
        );
        let mut request = from([203, 0, 113, 9]);
        request
            .headers_mut()
            .insert("x-problem", "1".parse().unwrap());
        assert_eq!(status(&service, request).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(layer.blocked_clients(), 0);
}

#[tokio::test]
async fn failure_limiter_lets_unidentified_requests_through_and_never_blocks_them_together() {
    let clock = FakeRelativeClock::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = failure_limit(
        Rate::per_hour(nz(1)),
        block_for(60),
        ClientIp::peer(),
        &clock,
    );
    let service = layer.layer(verifier(calls.clone()));
    let anonymous = || Request::new(Full::new(Bytes::new()));
    for _ in 0..5 {
        let response = service.clone().oneshot(anonymous()).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(layer.blocked_clients(), 0);
    assert_eq!(status(&service, valid(anonymous())).await, StatusCode::OK);
}

/// A header value longer than `max_len` gives no key (else any client could grow the store with
/// keys as large as its headers); a value exactly at the cap is a key.
#[test]
fn header_key_values_over_the_cap_have_no_key_and_at_the_cap_do() {
    let with = |value: &str| {
        Request::builder()
            .header("x-tenant", value)
            .body(())
            .unwrap()
    };
    let key = HeaderKey::new(HeaderName::from_static("x-tenant")).max_len(8);
    assert_eq!(key.extract(&with("12345678")).unwrap(), "12345678");
    assert!(key.extract(&with("123456789")).is_err());
    // The default cap is 128 bytes.
    let default = HeaderKey::new(HeaderName::from_static("x-tenant"));
    let at_cap = "a".repeat(128);
    assert_eq!(default.extract(&with(&at_cap)).unwrap(), at_cap.as_str());
    assert!(default.extract(&with(&"a".repeat(129))).is_err());
    assert!(default.extract(&with(&"a".repeat(64 * 1024))).is_err());
}

#[tokio::test]
async fn header_key_values_over_the_cap_never_enter_the_limiter_store() {
    let clock = FakeRelativeClock::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let key = HeaderKey::new(HeaderName::from_static("x-tenant")).max_len(16);
    let tenant = |value: String| {
        let mut request = Request::post("/webhooks/elevenlabs")
            .body(Full::new(Bytes::new()))
            .unwrap();
        request
            .headers_mut()
            .insert("x-tenant", value.parse().unwrap());
        request
    };

    // By default a request without a key is refused, never counted in anyone's bucket.
    let strict = per_client(Rate::per_hour(nz(1)), key.clone(), &clock);
    let service = strict.layer(handler(calls.clone()));
    let response = service
        .clone()
        .oneshot(tenant("x".repeat(17)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(json(response).await["code"], "client_unidentified");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(strict.store().len(), 0);

    // Let through unlimited: however many distinct oversized values, the store stays empty.
    let lenient =
        per_client(Rate::per_hour(nz(1)), key, &clock).on_missing_key(OnMissingKey::Allow);
    let service = lenient.layer(handler(calls.clone()));
    for i in 0..50 {
        let value = format!("{i:0>17}");
        assert_eq!(status(&service, tenant(value)).await, StatusCode::OK);
    }
    assert_eq!(
        lenient.store().len(),
        0,
        "oversized values were stored as keys"
    );
    // At the cap, the value is a key with a bucket of its own.
    assert_eq!(
        status(&service, tenant("y".repeat(16))).await,
        StatusCode::OK
    );
    assert_eq!(lenient.store().len(), 1);
    assert_eq!(
        status(&service, tenant("y".repeat(16))).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn known_senders_never_meet_the_overflow_bucket_of_a_store_full_of_other_clients() {
    // Per-minute rates keep keys tracked for a minute: a flood of distinct addresses fills the
    // store, and every client not yet tracked shares one overflow bucket.
    let clock = FakeRelativeClock::default();
    let key = ClientIp::peer().known_senders(["34.67.146.145"]).unwrap();
    let store = MemoryStore::with_clock(Rate::per_minute(nz(60)), clock.clone())
        .max_keys(std::num::NonZeroUsize::new(100).unwrap());
    let layer = RateLimitLayer::per_client_with_store(store, key);
    let calls = Arc::new(AtomicUsize::new(0));
    let service = layer.layer(handler(calls.clone()));
    let mut overflowed = 0;
    for n in 0..1_000_u32 {
        let [_, b, c, d] = n.to_be_bytes();
        let response = service.clone().oneshot(from([198, b, c, d])).await.unwrap();
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(json(response).await["code"], "limiter_unavailable");
            overflowed += 1;
        }
    }
    assert!(
        overflowed > 500,
        "the flood filled the store ({overflowed})"
    );
    assert_eq!(layer.store().len(), 100);
    // The known sender: never limited, never stored, however often it delivers.
    for _ in 0..200 {
        assert_eq!(
            status(&service, from([34, 67, 146, 145])).await,
            StatusCode::OK
        );
    }
    assert_eq!(layer.store().len(), 100);
    // Another new client still meets the overflow bucket.
    assert_eq!(
        status(&service, from([203, 0, 113, 77])).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn known_senders_are_never_counted_or_blocked_by_the_failure_limiter() {
    let key = ClientIp::peer().known_senders(["34.67.146.145"]).unwrap();
    let clock = FakeRelativeClock::default();
    let layer = failure_limit(Rate::per_hour(nz(1)), block_for(60), key, &clock);
    let service = layer.layer(answering(401, Some(ProblemCode::SIGNATURE_MISMATCH)));
    for _ in 0..10 {
        let response = service
            .clone()
            .oneshot(from([34, 67, 146, 145]))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(layer.blocked_clients(), 0);
    // Anyone else is blocked after the allowed failure.
    for _ in 0..2 {
        let _ = service.clone().oneshot(from([203, 0, 113, 1])).await;
    }
    let third = service.oneshot(from([203, 0, 113, 1])).await.unwrap();
    assert_eq!(
        third.extensions().get::<ProblemCode>(),
        Some(&ProblemCode::CLIENT_BLOCKED)
    );
}
