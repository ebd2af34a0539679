//! The layer's service against scripted handlers and stores: every answer, the outcome it
//! reports, what it does to the claim, and the same with a store that answers later.

use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::{sync::Notify, time::advance};
use tower::{Layer, Service, ServiceExt};

use super::*;
use crate::{problem::ProblemCode, signature::VerifiedBody, Verified};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

const BODY: &str = r#"{"type":"speech_to_text_transcription","data":{"request_id":"req_1"}}"#;

/// What the handler answers, in order; once the script is done, `200`.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(StatusCode),
    Fail,
}

/// A handler counting its calls, answering from a script, optionally waiting for a go.
#[derive(Clone, Default)]
struct Handler {
    calls: Arc<AtomicUsize>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    keys: Arc<Mutex<Vec<Option<EventKey>>>>,
    gate: Option<Arc<Notify>>,
    entered: Arc<Notify>,
}

impl Handler {
    fn answering(answers: impl IntoIterator<Item = Answer>) -> Self {
        Self {
            script: Arc::new(Mutex::new(answers.into_iter().collect())),
            ..Self::default()
        }
    }

    fn gated(gate: &Arc<Notify>) -> Self {
        Self {
            gate: Some(Arc::clone(gate)),
            ..Self::default()
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<Request<VerifiedBody>> for Handler {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<VerifiedBody>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.keys
            .lock()
            .unwrap()
            .push(request.extensions().get::<EventKey>().cloned());
        let answer = self.script.lock().unwrap().pop_front();
        let gate = self.gate.clone();
        let entered = Arc::clone(&self.entered);
        Box::pin(async move {
            entered.notify_one();
            if let Some(gate) = gate {
                gate.notified().await;
            }
            let body = request.into_body().to_bytes();
            match answer.unwrap_or(Answer::Status(StatusCode::OK)) {
                Answer::Status(status) => {
                    let mut response = Response::new(Full::new(body));
                    *response.status_mut() = status;
                    Ok(response)
                }
                Answer::Fail => Err("handler failed".into()),
            }
        })
    }
}

/// A memory store that can fail, and can answer through futures that are pending once.
#[derive(Default)]
struct TestStore {
    memory: MemoryDedupeStore,
    later: bool,
    fail_claim: AtomicBool,
    fail_settle: AtomicBool,
    claims: AtomicUsize,
    completes: AtomicUsize,
    releases: AtomicUsize,
}

impl TestStore {
    fn later() -> Self {
        Self {
            later: true,
            ..Self::default()
        }
    }

    fn answer<T: Send + 'static>(
        &self,
        result: Result<T, StoreError>,
    ) -> Check<BoxFuture<Result<T, StoreError>>, T> {
        if self.later {
            Check::Pending(Box::pin(async move {
                tokio::task::yield_now().await;
                result
            }))
        } else {
            Check::Ready(result)
        }
    }
}

fn now<T>(check: Check<std::future::Ready<Result<T, StoreError>>, T>) -> Result<T, StoreError> {
    match check {
        Check::Ready(result) => result,
        Check::Pending(future) => future.into_inner(),
    }
}

impl DedupeStore for TestStore {
    type ClaimFuture = BoxFuture<Result<Claim, StoreError>>;
    type SettleFuture = BoxFuture<Result<Settled, StoreError>>;

    fn claim(
        &self,
        key: &EventKey,
        token: LeaseToken,
        lease: Duration,
    ) -> Check<Self::ClaimFuture, Claim> {
        self.claims.fetch_add(1, Ordering::SeqCst);
        if self.fail_claim.load(Ordering::SeqCst) {
            return self.answer(Err(StoreError::new("test store: claim failed")));
        }
        self.answer(now(self.memory.claim(key, token, lease)))
    }

    fn complete(
        &self,
        key: &EventKey,
        token: LeaseToken,
        keep: Duration,
    ) -> Check<Self::SettleFuture, Settled> {
        self.completes.fetch_add(1, Ordering::SeqCst);
        if self.fail_settle.load(Ordering::SeqCst) {
            return self.answer(Err(StoreError::new("test store: complete failed")));
        }
        self.answer(now(self.memory.complete(key, token, keep)))
    }

    fn release(&self, key: &EventKey, token: LeaseToken) -> Check<Self::SettleFuture, Settled> {
        self.releases.fetch_add(1, Ordering::SeqCst);
        if self.fail_settle.load(Ordering::SeqCst) {
            return self.answer(Err(StoreError::new("test store: release failed")));
        }
        self.answer(now(self.memory.release(key, token)))
    }
}

/// Runs a test on paused time, failing it (rather than hanging) when every task is stuck:
/// paused time jumps to the deadline as soon as nothing else can run.
async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30 * 24 * 3600), test)
        .await
        .expect("stuck: a delivery or the handler never finished")
}

/// A verified delivery of `body` whose matched signature is `[sig; 32]`.
fn delivery(body: &str, sig: u8) -> Request<VerifiedBody> {
    let mut request = Request::post("/hooks")
        .body(VerifiedBody::from_bytes(body.to_owned()))
        .unwrap();
    request
        .extensions_mut()
        .insert(Verified::new(1_700_000_000, 0, [sig; 32]));
    request
}

fn grpc(mut request: Request<VerifiedBody>) -> Request<VerifiedBody> {
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    request
}

fn outcome<B>(response: &Response<B>) -> Option<DedupeOutcome> {
    response.extensions().get::<DedupeOutcome>().copied()
}

fn key_of<B>(response: &Response<B>) -> Option<&str> {
    response
        .extensions()
        .get::<EventKey>()
        .map(EventKey::as_str)
}

fn code<B>(response: &Response<B>) -> Option<ProblemCode> {
    response.extensions().get::<ProblemCode>().copied()
}

async fn json(response: Response<Full<Bytes>>) -> serde_json::Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn layer(store: &Arc<TestStore>) -> DeduplicateLayer<Arc<TestStore>> {
    DeduplicateLayer::with_store(Arc::clone(store), DedupeKey::elevenlabs())
}

#[tokio::test(start_paused = true)]
async fn a_first_delivery_is_handled_and_marked_done() {
    bounded(async {
        let handler = Handler::default();
        let store = Arc::new(TestStore::default());
        let service = layer(&store).layer(handler.clone());

        let response = service.oneshot(delivery(BODY, 1)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(outcome(&response), Some(DedupeOutcome::Handled));
        assert_eq!(key_of(&response), Some("req_1"));
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            BODY
        );
        assert_eq!(handler.calls(), 1);
        assert_eq!(
            handler.keys.lock().unwrap()[0]
                .as_ref()
                .map(EventKey::as_str),
            Some("req_1"),
            "the handler finds the key in the request's extensions"
        );
        assert_eq!(store.completes.load(Ordering::SeqCst), 1);
        assert_eq!(store.releases.load(Ordering::SeqCst), 0);
        let key = EventKey::new("req_1");
        assert_eq!(
            now(store
                .memory
                .claim(&key, LeaseToken::random(), Duration::from_secs(1))),
            Ok(Claim::Done)
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_is_answered_200_without_the_handler() {
    bounded(async {
        let handler = Handler::default();
        let store = Arc::new(TestStore::default());
        let service = layer(&store).layer(handler.clone());
        service.clone().oneshot(delivery(BODY, 1)).await.unwrap();

        // Another signature (a redelivery), the same body.
        let response = service.oneshot(delivery(BODY, 2)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[&DUPLICATE_HEADER], "true");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(outcome(&response), Some(DedupeOutcome::Duplicate));
        assert_eq!(key_of(&response), Some("req_1"));
        assert_eq!(code(&response), None, "not a problem");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, r#"{"duplicate":true,"key":"req_1"}"#);
        assert_eq!(handler.calls(), 1);
        assert_eq!(store.completes.load(Ordering::SeqCst), 1, "nothing settled");
        assert_eq!(store.releases.load(Ordering::SeqCst), 0);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_delivery_during_another_is_503_with_the_lease_left() {
    bounded(async {
        let gate = Arc::new(Notify::new());
        let handler = Handler::gated(&gate);
        let store = Arc::new(TestStore::default());
        let service = layer(&store)
            .lease(Duration::from_secs(90))
            .unwrap()
            .layer(handler.clone());
        let first = tokio::spawn(service.clone().oneshot(delivery(BODY, 1)));
        handler.entered.notified().await;
        advance(Duration::from_millis(30_500)).await;

        let response = service.clone().oneshot(delivery(BODY, 2)).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers()[header::RETRY_AFTER],
            "60",
            "59.5 s, rounded up"
        );
        assert_eq!(code(&response), Some(ProblemCode::DELIVERY_IN_FLIGHT));
        assert_eq!(outcome(&response), Some(DedupeOutcome::InFlight));
        assert_eq!(key_of(&response), Some("req_1"));
        let problem = json(response).await;
        assert_eq!(problem["code"], "delivery_in_flight");
        assert_eq!(problem["retry_after"], 60);
        assert_eq!(handler.calls(), 1);

        gate.notify_one();
        let response = first.await.unwrap().unwrap();
        assert_eq!(outcome(&response), Some(DedupeOutcome::Handled));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn in_flight_retry_after_is_at_least_one_second() {
    bounded(async {
        let gate = Arc::new(Notify::new());
        let handler = Handler::gated(&gate);
        let service = DeduplicateLayer::new(DedupeKey::signature()).layer(handler.clone());
        let _first = tokio::spawn(service.clone().oneshot(delivery(BODY, 1)));
        handler.entered.notified().await;
        advance(Duration::from_millis(59_999)).await;
        let response = service.oneshot(delivery(BODY, 1)).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_answer_releases_the_claim_so_the_retry_is_handled() {
    bounded(async {
        for failure in [
            Answer::Status(StatusCode::INTERNAL_SERVER_ERROR),
            Answer::Status(StatusCode::SERVICE_UNAVAILABLE),
            Answer::Status(StatusCode::BAD_REQUEST),
            Answer::Status(StatusCode::FOUND),
            Answer::Fail,
        ] {
            let handler = Handler::answering([failure]);
            let store = Arc::new(TestStore::default());
            let service = layer(&store).layer(handler.clone());
            let answer = service.clone().oneshot(delivery(BODY, 1)).await;
            match failure {
                Answer::Status(status) => {
                    let response = answer.unwrap();
                    assert_eq!(response.status(), status);
                    assert_eq!(outcome(&response), Some(DedupeOutcome::Released));
                    assert_eq!(key_of(&response), Some("req_1"));
                }
                Answer::Fail => assert_eq!(answer.unwrap_err().to_string(), "handler failed"),
            }
            assert_eq!(store.releases.load(Ordering::SeqCst), 1, "{failure:?}");
            assert_eq!(store.completes.load(Ordering::SeqCst), 0, "{failure:?}");

            let retry = service.oneshot(delivery(BODY, 2)).await.unwrap();
            assert_eq!(retry.status(), StatusCode::OK, "{failure:?}");
            assert_eq!(outcome(&retry), Some(DedupeOutcome::Handled));
            assert_eq!(
                handler.calls(),
                2,
                "{failure:?}: the retry reached the handler"
            );
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn every_2xx_marks_done() {
    bounded(async {
        for status in [StatusCode::OK, StatusCode::ACCEPTED, StatusCode::NO_CONTENT] {
            let handler = Handler::answering([Answer::Status(status)]);
            let service = DeduplicateLayer::new(DedupeKey::elevenlabs()).layer(handler.clone());
            let response = service.clone().oneshot(delivery(BODY, 1)).await.unwrap();
            assert_eq!(response.status(), status);
            assert_eq!(outcome(&response), Some(DedupeOutcome::Handled));
            let again = service.oneshot(delivery(BODY, 1)).await.unwrap();
            assert_eq!(outcome(&again), Some(DedupeOutcome::Duplicate), "{status}");
            assert_eq!(handler.calls(), 1);
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_store_that_cannot_claim_is_503_and_the_handler_is_not_called() {
    bounded(async {
        for store in [TestStore::default(), TestStore::later()] {
            let handler = Handler::default();
            let store = Arc::new(store);
            store.fail_claim.store(true, Ordering::SeqCst);
            let service = layer(&store).layer(handler.clone());
            let response = service.clone().oneshot(delivery(BODY, 1)).await.unwrap();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
            assert_eq!(code(&response), Some(ProblemCode::DEDUPE_UNAVAILABLE));
            assert_eq!(outcome(&response), Some(DedupeOutcome::StoreUnavailable));
            assert_eq!(key_of(&response), Some("req_1"));
            assert_eq!(json(response).await["code"], "dedupe_unavailable");
            assert_eq!(handler.calls(), 0);

            store.fail_claim.store(false, Ordering::SeqCst);
            let response = service.oneshot(delivery(BODY, 1)).await.unwrap();
            assert_eq!(
                outcome(&response),
                Some(DedupeOutcome::Handled),
                "back once the store is"
            );
            assert_eq!(handler.calls(), 1);
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_store_that_cannot_settle_still_returns_the_handlers_answer() {
    bounded(async {
        for (answer, settle) in [
            (Answer::Status(StatusCode::OK), "complete"),
            (Answer::Status(StatusCode::INTERNAL_SERVER_ERROR), "release"),
        ] {
            let handler = Handler::answering([answer]);
            let store = Arc::new(TestStore::later());
            store.fail_settle.store(true, Ordering::SeqCst);
            let service = layer(&store).layer(handler.clone());
            let response = service.clone().oneshot(delivery(BODY, 1)).await.unwrap();
            let Answer::Status(status) = answer else {
                unreachable!()
            };
            assert_eq!(response.status(), status, "{settle}");
            assert_eq!(outcome(&response), Some(DedupeOutcome::SettleFailed));
            assert_eq!(key_of(&response), Some("req_1"));
            // The claim stays until its lease runs out.
            let again = service.clone().oneshot(delivery(BODY, 1)).await.unwrap();
            assert_eq!(outcome(&again), Some(DedupeOutcome::InFlight), "{settle}");
            advance(DeduplicateLayer::<()>::DEFAULT_LEASE).await;
            store.fail_settle.store(false, Ordering::SeqCst);
            let later = service.oneshot(delivery(BODY, 1)).await.unwrap();
            assert_eq!(outcome(&later), Some(DedupeOutcome::Handled), "{settle}");
            assert_eq!(handler.calls(), 2);
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_store_answering_later_gives_the_same_answers() {
    bounded(async {
        let gate = Arc::new(Notify::new());
        let handler = Handler::gated(&gate);
        let store = Arc::new(TestStore::later());
        let service = layer(&store).layer(handler.clone());

        let first = tokio::spawn(service.clone().oneshot(delivery(BODY, 1)));
        handler.entered.notified().await;
        let in_flight = service.clone().oneshot(delivery(BODY, 2)).await.unwrap();
        assert_eq!(in_flight.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(outcome(&in_flight), Some(DedupeOutcome::InFlight));
        assert_eq!(in_flight.headers()[header::RETRY_AFTER], "60");

        gate.notify_one();
        let handled = first.await.unwrap().unwrap();
        assert_eq!(handled.status(), StatusCode::OK);
        assert_eq!(outcome(&handled), Some(DedupeOutcome::Handled));
        assert_eq!(
            handled.into_body().collect().await.unwrap().to_bytes(),
            BODY
        );

        let duplicate = service.clone().oneshot(delivery(BODY, 3)).await.unwrap();
        assert_eq!(duplicate.status(), StatusCode::OK);
        assert_eq!(outcome(&duplicate), Some(DedupeOutcome::Duplicate));
        assert_eq!(duplicate.headers()[&DUPLICATE_HEADER], "true");
        assert_eq!(handler.calls(), 1);
        assert_eq!(store.claims.load(Ordering::SeqCst), 3);
        assert_eq!(store.completes.load(Ordering::SeqCst), 1);

        // A failure through the later store: released, then handled.
        let other = r#"{"data":{"request_id":"req_2"}}"#;
        let handler = Handler::answering([Answer::Fail]);
        let service = layer(&store).layer(handler.clone());
        assert!(service.clone().oneshot(delivery(other, 1)).await.is_err());
        assert_eq!(store.releases.load(Ordering::SeqCst), 1);
        let retry = service.oneshot(delivery(other, 1)).await.unwrap();
        assert_eq!(outcome(&retry), Some(DedupeOutcome::Handled));
        assert_eq!(handler.calls(), 2);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_late_answer_after_the_lease_settles_nothing() {
    bounded(async {
        let gate = Arc::new(Notify::new());
        let handler = Handler::gated(&gate);
        let store = Arc::new(TestStore::default());
        let service = layer(&store)
            .lease(Duration::from_secs(10))
            .unwrap()
            .layer(handler.clone());

        let slow = tokio::spawn(service.clone().oneshot(delivery(BODY, 1)));
        handler.entered.notified().await;
        advance(Duration::from_secs(10)).await;
        let newer = tokio::spawn(service.clone().oneshot(delivery(BODY, 2)));
        handler.entered.notified().await;
        assert_eq!(handler.calls(), 2, "the expired claim was taken over");

        gate.notify_one();
        let late = slow.await.unwrap().unwrap();
        assert_eq!(
            late.status(),
            StatusCode::OK,
            "its answer is still returned"
        );
        assert_eq!(outcome(&late), Some(DedupeOutcome::LeaseLost));
        assert_eq!(key_of(&late), Some("req_1"));
        let during = service.clone().oneshot(delivery(BODY, 3)).await.unwrap();
        assert_eq!(
            outcome(&during),
            Some(DedupeOutcome::InFlight),
            "the newer claim was neither marked done nor freed"
        );

        gate.notify_one();
        let newer = newer.await.unwrap().unwrap();
        assert_eq!(outcome(&newer), Some(DedupeOutcome::Handled));
        let after = service.oneshot(delivery(BODY, 4)).await.unwrap();
        assert_eq!(outcome(&after), Some(DedupeOutcome::Duplicate));
        assert_eq!(handler.calls(), 2);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_dropped_response_future_leaves_the_claim_to_expire() {
    bounded(async {
        let gate = Arc::new(Notify::new());
        let handler = Handler::gated(&gate);
        let mut service = DeduplicateLayer::new(DedupeKey::elevenlabs())
            .lease(Duration::from_secs(5))
            .unwrap()
            .layer(handler.clone());
        let mut future = service.ready().await.unwrap().call(delivery(BODY, 1));
        assert!(futures_poll_once(&mut future).is_pending());
        assert_eq!(
            format!("{future:?}"),
            r#"ResponseFuture { state: "handling" }"#
        );
        drop(future);

        let response = service.clone().oneshot(delivery(BODY, 2)).await.unwrap();
        assert_eq!(outcome(&response), Some(DedupeOutcome::InFlight));
        advance(Duration::from_secs(5)).await;
        let handled = tokio::spawn(service.oneshot(delivery(BODY, 3)));
        handler.entered.notified().await;
        gate.notify_one();
        let handled = handled.await.unwrap().unwrap();
        assert_eq!(outcome(&handled), Some(DedupeOutcome::Handled));
        assert_eq!(handler.calls(), 2);
    })
    .await;
}

fn futures_poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    let waker = std::task::Waker::noop();
    Pin::new(future).poll(&mut Context::from_waker(waker))
}

#[tokio::test(start_paused = true)]
async fn done_marks_are_kept_for_keep_done() {
    bounded(async {
        let handler = Handler::default();
        let service = DeduplicateLayer::new(DedupeKey::elevenlabs())
            .keep_done(Duration::from_secs(1800))
            .unwrap()
            .layer(handler.clone());
        service.clone().oneshot(delivery(BODY, 1)).await.unwrap();
        advance(Duration::from_secs(1799)).await;
        let kept = service.clone().oneshot(delivery(BODY, 1)).await.unwrap();
        assert_eq!(outcome(&kept), Some(DedupeOutcome::Duplicate));
        advance(Duration::from_secs(1)).await;
        let forgotten = service.oneshot(delivery(BODY, 1)).await.unwrap();
        assert_eq!(outcome(&forgotten), Some(DedupeOutcome::Handled));
        assert_eq!(handler.calls(), 2);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn the_default_keep_is_a_day() {
    bounded(async {
        let handler = Handler::default();
        let service = DeduplicateLayer::new(DedupeKey::elevenlabs()).layer(handler.clone());
        service.clone().oneshot(delivery(BODY, 1)).await.unwrap();
        advance(Duration::from_secs(24 * 3600 - 1)).await;
        let kept = service.clone().oneshot(delivery(BODY, 1)).await.unwrap();
        assert_eq!(outcome(&kept), Some(DedupeOutcome::Duplicate));
        advance(Duration::from_secs(1)).await;
        let forgotten = service.oneshot(delivery(BODY, 1)).await.unwrap();
        assert_eq!(outcome(&forgotten), Some(DedupeOutcome::Handled));
    })
    .await;
}

#[tokio::test]
async fn an_unverified_request_is_a_loud_500() {
    let handler = Handler::default();
    let store = Arc::new(TestStore::default());
    let service = layer(&store).layer(handler.clone());
    let request = Request::post("/")
        .body(VerifiedBody::from_bytes(BODY))
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code(&response), Some(ProblemCode::DEDUPE_KEY_MISSING));
    assert_eq!(outcome(&response), Some(DedupeOutcome::Unverified));
    assert_eq!(key_of(&response), None);
    let problem = json(response).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("verification layer is missing"),
        "{problem}"
    );
    assert_eq!(handler.calls(), 0);
    assert_eq!(store.claims.load(Ordering::SeqCst), 0);

    let grpc = service
        .oneshot(grpc(Request::new(VerifiedBody::from_bytes(BODY))))
        .await
        .unwrap();
    assert_eq!(grpc.status(), StatusCode::OK);
    assert_eq!(grpc.headers()["grpc-status"], "13");
}

#[tokio::test]
async fn a_body_without_the_keys_fields_is_a_500_unless_the_key_falls_back() {
    let handler = Handler::default();
    let store = Arc::new(TestStore::default());
    let strict = DeduplicateLayer::with_store(Arc::clone(&store), DedupeKey::json_pointer("/id"))
        .layer(handler.clone());
    let response = strict.oneshot(delivery("{}", 1)).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code(&response), Some(ProblemCode::DEDUPE_KEY_MISSING));
    assert_eq!(outcome(&response), Some(DedupeOutcome::KeyMissing));
    assert!(json(response).await["detail"]
        .as_str()
        .unwrap()
        .contains("none of the fields"));
    assert_eq!(handler.calls(), 0);
    assert_eq!(store.claims.load(Ordering::SeqCst), 0);

    let lenient = DeduplicateLayer::with_store(
        Arc::clone(&store),
        DedupeKey::json_pointer("/id").or_signature(),
    )
    .layer(handler.clone());
    let response = lenient.oneshot(delivery("{}", 0xab)).await.unwrap();
    assert_eq!(outcome(&response), Some(DedupeOutcome::Handled));
    assert_eq!(
        key_of(&response),
        Some(format!("sig-{}", "ab".repeat(32)).as_str())
    );
}

#[tokio::test(start_paused = true)]
async fn grpc_clients_get_grpc_answers() {
    bounded(async {
        let gate = Arc::new(Notify::new());
        let handler = Handler::gated(&gate);
        let store = Arc::new(TestStore::default());
        let service = layer(&store).layer(handler.clone());

        let first = tokio::spawn(service.clone().oneshot(grpc(delivery(BODY, 1))));
        handler.entered.notified().await;
        let in_flight = service
            .clone()
            .oneshot(grpc(delivery(BODY, 2)))
            .await
            .unwrap();
        assert_eq!(in_flight.status(), StatusCode::OK);
        assert_eq!(
            in_flight.headers()[header::CONTENT_TYPE],
            "application/grpc"
        );
        assert_eq!(
            in_flight.headers()["grpc-status"],
            "14",
            "UNAVAILABLE: retried"
        );
        assert!(in_flight.headers()["grpc-message"]
            .to_str()
            .unwrap()
            .starts_with("delivery_in_flight"));
        assert_eq!(in_flight.headers()[header::RETRY_AFTER], "60");
        assert_eq!(code(&in_flight), Some(ProblemCode::DELIVERY_IN_FLIGHT));
        assert_eq!(outcome(&in_flight), Some(DedupeOutcome::InFlight));
        assert!(in_flight
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty());

        gate.notify_one();
        first.await.unwrap().unwrap();
        let duplicate = service
            .clone()
            .oneshot(grpc(delivery(BODY, 3)))
            .await
            .unwrap();
        assert_eq!(duplicate.status(), StatusCode::OK);
        assert_eq!(
            duplicate.headers()[header::CONTENT_TYPE],
            "application/grpc"
        );
        assert_eq!(
            duplicate.headers()["grpc-status"],
            "6",
            "ALREADY_EXISTS: not retried"
        );
        assert_eq!(
            duplicate.headers()["grpc-message"],
            "duplicate delivery of an event already handled"
        );
        assert_eq!(duplicate.headers()[&DUPLICATE_HEADER], "true");
        assert_eq!(outcome(&duplicate), Some(DedupeOutcome::Duplicate));
        assert!(duplicate
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty());

        store.fail_claim.store(true, Ordering::SeqCst);
        let unavailable = service.oneshot(grpc(delivery(BODY, 4))).await.unwrap();
        assert_eq!(unavailable.status(), StatusCode::OK);
        assert_eq!(unavailable.headers()["grpc-status"], "14");
        assert_eq!(code(&unavailable), Some(ProblemCode::DEDUPE_UNAVAILABLE));
        assert_eq!(handler.calls(), 1);
    })
    .await;
}

#[test]
fn zero_lease_or_keep_is_refused() {
    let lease = DeduplicateLayer::new(DedupeKey::signature())
        .lease(Duration::ZERO)
        .unwrap_err();
    assert!(lease.to_string().contains("lease"), "{lease}");
    let keep = DeduplicateLayer::new(DedupeKey::signature())
        .keep_done(Duration::ZERO)
        .unwrap_err();
    assert!(keep.to_string().contains("kept"), "{keep}");
    assert!(DeduplicateLayer::new(DedupeKey::signature())
        .lease(Duration::from_nanos(1))
        .and_then(|layer| layer.keep_done(Duration::from_nanos(1)))
        .is_ok());
}

#[test]
fn outcomes_have_stable_names() {
    let all = [
        (DedupeOutcome::Handled, "handled"),
        (DedupeOutcome::Released, "released"),
        (DedupeOutcome::Duplicate, "duplicate"),
        (DedupeOutcome::InFlight, "in_flight"),
        (DedupeOutcome::StoreUnavailable, "store_unavailable"),
        (DedupeOutcome::LeaseLost, "lease_lost"),
        (DedupeOutcome::SettleFailed, "settle_failed"),
        (DedupeOutcome::Unverified, "unverified"),
        (DedupeOutcome::KeyMissing, "key_missing"),
    ];
    for (outcome, name) in all {
        assert_eq!(outcome.as_str(), name);
        assert_eq!(outcome.to_string(), name);
    }
}

#[tokio::test]
async fn debug_output_names_the_settings_and_the_inner_service() {
    let layer = DeduplicateLayer::new(DedupeKey::message_id())
        .lease(Duration::from_secs(2))
        .unwrap();
    assert_eq!(
        format!("{layer:?}"),
        "DeduplicateLayer { store: MemoryDedupeStore { keys: 0, max_keys: 1000000, .. }, key: [message_id, signature], lease: 2s, keep_done: 86400s }"
    );
    assert_eq!(
        layer
            .key()
            .event_key(&Verified::new(0, 0, [1; 32]), BODY.as_bytes())
            .unwrap()
            .as_str(),
        format!("sig-{}", "01".repeat(32)),
        "the message-id key, not the default"
    );
    assert_eq!(layer.store().len(), 0);
    let mut service = layer.layer(tower::service_fn(|_: Request<VerifiedBody>| async {
        Ok::<_, BoxError>(Response::new(Full::<Bytes>::default()))
    }));
    assert!(format!("{service:?}").starts_with("Deduplicate { inner: ServiceFn"));
    assert!(format!("{service:?}")
        .ends_with("key: [message_id, signature], lease: 2s, keep_done: 86400s }"));
    let _ = service.get_ref();
    let _ = service.get_mut();
    let _ = service.clone().into_inner();
    let future = service
        .ready()
        .await
        .unwrap()
        .call(Request::new(VerifiedBody::from_bytes("")));
    assert_eq!(
        format!("{future:?}"),
        r#"ResponseFuture { state: "answered" }"#
    );
}

/// An inner service that is never ready.
#[derive(Clone, Debug)]
struct Overloaded;

impl Service<Request<VerifiedBody>> for Overloaded {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Err("overloaded".into()))
    }

    fn call(&mut self, _: Request<VerifiedBody>) -> Self::Future {
        unreachable!("never ready")
    }
}

#[tokio::test]
async fn readiness_is_the_inner_services() {
    let mut service = DeduplicateLayer::new(DedupeKey::elevenlabs()).layer(Overloaded);
    let error = service.ready().await.unwrap_err();
    assert_eq!(error.to_string(), "overloaded");
}
