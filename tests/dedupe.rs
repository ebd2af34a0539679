//! DeduplicateLayer inside VerifySignatureLayer, fed genuinely signed ElevenLabs deliveries:
//! redeliveries, replays, concurrent deliveries, failures, expiry, a failing store, the memory
//! store's cap, gRPC clients, and a real hyper server on loopback.

use std::{
    convert::Infallible,
    future::{ready, Ready},
    net::SocketAddr,
    num::NonZeroUsize,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use hookgate::{
    dedupe::{
        Check, Claim, DedupeKey, DedupeOutcome, DedupeStore, DeduplicateLayer, EventKey,
        LeaseToken, MemoryDedupeStore, Settled, StoreError,
    },
    problem::ProblemCode,
    scheme::ElevenLabs,
    signature::VerifiedBody,
    VerifySignatureLayer,
};
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Notify, time::advance};
use tower::{Service, ServiceBuilder, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

const SECRET: &str = "whsec_dedupe_test";
const STT: &str = r#"{"type":"speech_to_text_transcription","event_timestamp":1739537297,"data":{"request_id":"req_8f2c","transcription":{"language_code":"en","text":"Hello"}}}"#;

fn scheme() -> ElevenLabs {
    ElevenLabs::new(SECRET).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A delivery of `body` signed at `t`.
fn signed(body: &str, t: u64) -> Request<Full<Bytes>> {
    Request::post("/webhooks/elevenlabs")
        .header("elevenlabs-signature", scheme().sign(t, body.as_bytes()))
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// What the handler got: the key in the request's extensions, and the body.
type Seen = Vec<(Option<EventKey>, Bytes)>;

/// The handler: counts its calls, records the keys and bodies it got, answers from a script
/// (then `200`), and waits for a go when gated.
#[derive(Clone, Default)]
struct Handler {
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Seen>>,
    script: Arc<Mutex<Vec<Result<StatusCode, ()>>>>,
    gate: Option<Arc<Notify>>,
    entered: Arc<Notify>,
}

impl Handler {
    fn gated(gate: &Arc<Notify>) -> Self {
        Self {
            gate: Some(Arc::clone(gate)),
            ..Self::default()
        }
    }

    fn answering(script: Vec<Result<StatusCode, ()>>) -> Self {
        let mut script = script;
        script.reverse();
        Self {
            script: Arc::new(Mutex::new(script)),
            ..Self::default()
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn keys(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(key, _)| key.as_ref().unwrap().to_string())
            .collect()
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
        let key = request.extensions().get::<EventKey>().cloned();
        self.seen
            .lock()
            .unwrap()
            .push((key, request.body().to_bytes()));
        let answer = self
            .script
            .lock()
            .unwrap()
            .pop()
            .unwrap_or(Ok(StatusCode::OK));
        let (gate, entered) = (self.gate.clone(), Arc::clone(&self.entered));
        Box::pin(async move {
            entered.notify_one();
            if let Some(gate) = gate {
                gate.notified().await;
            }
            let status = answer.map_err(|()| "the handler failed")?;
            let mut response = Response::new(Full::from("stored"));
            *response.status_mut() = status;
            Ok(response)
        })
    }
}

/// The onion under test: verification, then deduplication, then `handler`.
fn stack<St>(
    dedupe: DeduplicateLayer<St>,
    handler: &Handler,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = BoxError,
    Future: Send,
> + Clone
       + Send
       + 'static
where
    St: DedupeStore + Send + Sync + 'static,
    St::ClaimFuture: Send,
    St::SettleFuture: Send,
{
    ServiceBuilder::new()
        .layer(VerifySignatureLayer::new(scheme()))
        .layer(dedupe)
        .service(handler.clone())
}

/// Runs a test on paused time, failing it (rather than hanging) when every task is stuck:
/// paused time jumps to the deadline as soon as nothing else can run.
async fn bounded<T>(test: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30 * 24 * 3600), test)
        .await
        .expect("stuck: a delivery or the handler never finished")
}

fn outcome<B>(response: &Response<B>) -> Option<DedupeOutcome> {
    response.extensions().get::<DedupeOutcome>().copied()
}

fn problem_code<B>(response: &Response<B>) -> Option<ProblemCode> {
    response.extensions().get::<ProblemCode>().copied()
}

async fn body_json(response: Response<Full<Bytes>>) -> serde_json::Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn elevenlabs() -> DeduplicateLayer {
    DeduplicateLayer::new(DedupeKey::elevenlabs())
}

#[tokio::test]
async fn a_redelivery_signed_anew_reaches_the_handler_once() {
    let handler = Handler::default();
    let service = stack(elevenlabs(), &handler);
    let t = now();

    let first = service.clone().oneshot(signed(STT, t - 120)).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(outcome(&first), Some(DedupeOutcome::Handled));
    assert!(first.headers().get("hookgate-duplicate").is_none());
    assert_eq!(
        first.into_body().collect().await.unwrap().to_bytes(),
        "stored"
    );

    // The sender's retry: a new timestamp, so a new signature; the same body.
    let redelivery = service.clone().oneshot(signed(STT, t)).await.unwrap();
    assert_eq!(redelivery.status(), StatusCode::OK);
    assert_eq!(redelivery.headers()["hookgate-duplicate"], "true");
    assert_eq!(
        redelivery.headers()[header::CONTENT_TYPE],
        "application/json"
    );
    assert_eq!(outcome(&redelivery), Some(DedupeOutcome::Duplicate));
    assert_eq!(
        body_json(redelivery).await,
        serde_json::json!({"duplicate": true, "key": "req_8f2c"})
    );
    assert_eq!(handler.calls(), 1);
    assert_eq!(handler.keys(), ["req_8f2c"]);
}

#[tokio::test]
async fn a_byte_identical_replay_never_reaches_the_handler() {
    let handler = Handler::default();
    let service = stack(elevenlabs(), &handler);
    let t = now() - 600; // ten minutes old: still within the 30-minute tolerance

    // An event id in the body, and a body with none (keyed by its signature).
    for body in [STT, "plain text, not JSON"] {
        let captured = signed(body, t);
        let signature = captured.headers()["elevenlabs-signature"].clone();
        let first = service.clone().oneshot(captured).await.unwrap();
        assert_eq!(outcome(&first), Some(DedupeOutcome::Handled), "{body}");
        for _ in 0..3 {
            let replay = Request::post("/webhooks/elevenlabs")
                .header("elevenlabs-signature", signature.clone())
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let answer = service.clone().oneshot(replay).await.unwrap();
            assert_eq!(answer.status(), StatusCode::OK, "{body}");
            assert_eq!(answer.headers()["hookgate-duplicate"], "true");
            assert_eq!(outcome(&answer), Some(DedupeOutcome::Duplicate), "{body}");
        }
    }
    assert_eq!(handler.calls(), 2);
    let signature_key = handler.keys()[1].clone();
    assert!(signature_key.starts_with("sig-"), "{signature_key}");
    assert_eq!(signature_key.len(), 4 + 64);

    // A body without an id cannot be told apart from another event when signed anew: that
    // is what the signature fallback can and cannot do.
    let resigned = service
        .oneshot(signed("plain text, not JSON", t + 1))
        .await
        .unwrap();
    assert_eq!(outcome(&resigned), Some(DedupeOutcome::Handled));
}

#[tokio::test]
async fn a_calls_transcript_and_audio_are_two_events() {
    let handler = Handler::default();
    let service = stack(elevenlabs(), &handler);
    let event = |kind: &str| {
        format!(
            r#"{{"type":"{kind}","event_timestamp":1739537297,"data":{{"agent_id":"agent_1","conversation_id":"conv_01jx","full_audio":"SUQzBAAAAAAA"}}}}"#
        )
    };
    let (transcript, audio) = (event("post_call_transcription"), event("post_call_audio"));
    let t = now();
    for body in [&transcript, &audio] {
        let response = service.clone().oneshot(signed(body, t)).await.unwrap();
        assert_eq!(outcome(&response), Some(DedupeOutcome::Handled), "{body}");
    }
    for body in [&transcript, &audio] {
        let response = service.clone().oneshot(signed(body, t + 1)).await.unwrap();
        assert_eq!(outcome(&response), Some(DedupeOutcome::Duplicate), "{body}");
    }
    assert_eq!(
        handler.keys(),
        [
            "conv_01jx.post_call_transcription",
            "conv_01jx.post_call_audio"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_concurrent_deliveries_run_the_handler_once() {
    let gate = Arc::new(Notify::new());
    let handler = Handler::gated(&gate);
    let service = stack(elevenlabs(), &handler);
    let t = now();
    let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..6 {
        let (service, answers) = (service.clone(), answers.clone());
        tokio::spawn(async move {
            let response = service.oneshot(signed(STT, t - i)).await.unwrap();
            answers.send(response).unwrap();
        });
    }
    // One delivery holds the claim inside the handler; the other five are answered meanwhile.
    let mut in_flight = 0;
    for _ in 0..5 {
        let response = answered.recv().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let retry_after: u64 = response.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert_eq!(
            problem_code(&response),
            Some(ProblemCode::DELIVERY_IN_FLIGHT)
        );
        in_flight += 1;
    }
    assert_eq!(handler.calls(), 1);
    gate.notify_one();
    let handled = answered.recv().await.unwrap();
    assert_eq!(handled.status(), StatusCode::OK);
    assert_eq!(outcome(&handled), Some(DedupeOutcome::Handled));
    assert_eq!(in_flight, 5);

    // A seventh, afterwards: a duplicate.
    let late = service.oneshot(signed(STT, t + 1)).await.unwrap();
    assert_eq!(late.status(), StatusCode::OK);
    assert_eq!(outcome(&late), Some(DedupeOutcome::Duplicate));
    assert_eq!(handler.calls(), 1);
}

#[tokio::test]
async fn a_handler_answering_500_or_failing_releases_the_claim() {
    let handler = Handler::answering(vec![Ok(StatusCode::INTERNAL_SERVER_ERROR), Err(())]);
    let service = stack(elevenlabs(), &handler);
    let t = now();

    let failed = service.clone().oneshot(signed(STT, t - 60)).await.unwrap();
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(outcome(&failed), Some(DedupeOutcome::Released));

    let error = service
        .clone()
        .oneshot(signed(STT, t - 30))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "the handler failed");

    let retry = service.clone().oneshot(signed(STT, t)).await.unwrap();
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(outcome(&retry), Some(DedupeOutcome::Handled));
    assert_eq!(handler.calls(), 3, "every retry reached the handler");

    let after = service.oneshot(signed(STT, t)).await.unwrap();
    assert_eq!(outcome(&after), Some(DedupeOutcome::Duplicate));
    assert_eq!(handler.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_expired_lease_lets_a_new_delivery_claim_and_the_late_answer_marks_nothing() {
    bounded(async {
        let gate = Arc::new(Notify::new());
        let handler = Handler::gated(&gate);
        let lease = Duration::from_secs(30);
        let service = stack(elevenlabs().lease(lease).unwrap(), &handler);
        let t = now();

        let slow = tokio::spawn(service.clone().oneshot(signed(STT, t)));
        handler.entered.notified().await;
        let during = service.clone().oneshot(signed(STT, t)).await.unwrap();
        assert_eq!(outcome(&during), Some(DedupeOutcome::InFlight));
        assert_eq!(during.headers()[header::RETRY_AFTER], "30");

        advance(lease).await;
        let newer = tokio::spawn(service.clone().oneshot(signed(STT, t + 1)));
        handler.entered.notified().await;
        assert_eq!(
            handler.calls(),
            2,
            "the newer delivery claimed the expired key"
        );

        // The slow handler answers at last: its answer goes out, but it marks nothing done.
        gate.notify_one();
        let late = slow.await.unwrap().unwrap();
        assert_eq!(late.status(), StatusCode::OK);
        assert_eq!(outcome(&late), Some(DedupeOutcome::LeaseLost));
        let meanwhile = service.clone().oneshot(signed(STT, t + 2)).await.unwrap();
        assert_eq!(meanwhile.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(outcome(&meanwhile), Some(DedupeOutcome::InFlight));

        // The newer delivery's completion does.
        gate.notify_one();
        let newer = newer.await.unwrap().unwrap();
        assert_eq!(outcome(&newer), Some(DedupeOutcome::Handled));
        let after = service.oneshot(signed(STT, t + 3)).await.unwrap();
        assert_eq!(outcome(&after), Some(DedupeOutcome::Duplicate));
        assert_eq!(handler.calls(), 2);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_done_mark_goes_after_keep_done() {
    bounded(async {
        let handler = Handler::default();
        let keep = Duration::from_secs(30 * 60);
        let service = stack(elevenlabs().keep_done(keep).unwrap(), &handler);
        let t = now();
        let first = service.clone().oneshot(signed(STT, t)).await.unwrap();
        assert_eq!(outcome(&first), Some(DedupeOutcome::Handled));

        advance(keep - Duration::from_secs(1)).await;
        let kept = service.clone().oneshot(signed(STT, t)).await.unwrap();
        assert_eq!(outcome(&kept), Some(DedupeOutcome::Duplicate));

        advance(Duration::from_secs(1)).await;
        let forgotten = service.oneshot(signed(STT, t)).await.unwrap();
        assert_eq!(outcome(&forgotten), Some(DedupeOutcome::Handled));
        assert_eq!(handler.calls(), 2);
    })
    .await;
}

/// A store whose every answer is an error: the layer's collaborator, failing.
#[derive(Debug)]
struct DownStore;

impl DedupeStore for DownStore {
    type ClaimFuture = Ready<Result<Claim, StoreError>>;
    type SettleFuture = Ready<Result<Settled, StoreError>>;

    fn claim(&self, _: &EventKey, _: LeaseToken, _: Duration) -> Check<Self::ClaimFuture, Claim> {
        Check::Pending(ready(Err(StoreError::new("connection refused"))))
    }

    fn complete(
        &self,
        _: &EventKey,
        _: LeaseToken,
        _: Duration,
    ) -> Check<Self::SettleFuture, Settled> {
        Check::Ready(Err(StoreError::new("connection refused")))
    }

    fn release(&self, _: &EventKey, _: LeaseToken) -> Check<Self::SettleFuture, Settled> {
        Check::Ready(Err(StoreError::new("connection refused")))
    }
}

#[tokio::test]
async fn a_store_that_is_down_is_503_dedupe_unavailable_and_the_handler_is_not_called() {
    let handler = Handler::default();
    let service = stack(
        DeduplicateLayer::with_store(DownStore, DedupeKey::elevenlabs()),
        &handler,
    );
    for i in 0..3 {
        let response = service
            .clone()
            .oneshot(signed(STT, now() - i))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert_eq!(outcome(&response), Some(DedupeOutcome::StoreUnavailable));
        let problem = body_json(response).await;
        assert_eq!(problem["code"], "dedupe_unavailable");
        assert_eq!(problem["status"], 503);
        assert!(
            !problem.to_string().contains("connection refused"),
            "the store's error stays in the logs"
        );
    }
    assert_eq!(handler.calls(), 0);
}

#[tokio::test]
async fn a_request_that_skipped_verification_is_a_loud_500() {
    let handler = Handler::default();
    // Deduplication without the verification layer, called with a hand-made body.
    let service = ServiceBuilder::new()
        .layer(elevenlabs())
        .service(handler.clone());
    let request = Request::post("/webhooks/elevenlabs")
        .body(VerifiedBody::from_bytes(STT))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(outcome(&response), Some(DedupeOutcome::Unverified));
    let problem = body_json(response).await;
    assert_eq!(problem["code"], "dedupe_key_missing");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("verification layer is missing"));
    assert_eq!(handler.calls(), 0);
}

#[tokio::test]
async fn a_full_memory_store_answers_503_not_200() {
    let handler = Handler::default();
    let store = MemoryDedupeStore::new().max_keys(NonZeroUsize::new(1).unwrap());
    let service = stack(
        DeduplicateLayer::with_store(store, DedupeKey::elevenlabs()),
        &handler,
    );
    let t = now();
    let first = service.clone().oneshot(signed(STT, t)).await.unwrap();
    assert_eq!(outcome(&first), Some(DedupeOutcome::Handled));

    let other = r#"{"type":"speech_to_text_transcription","data":{"request_id":"req_other"}}"#;
    let full = service.clone().oneshot(signed(other, t)).await.unwrap();
    assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem_code(&full), Some(ProblemCode::DEDUPE_UNAVAILABLE));
    assert!(full.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(
        handler.calls(),
        1,
        "an event that cannot be recorded is not handled"
    );

    let duplicate = service.oneshot(signed(STT, t + 1)).await.unwrap();
    assert_eq!(
        outcome(&duplicate),
        Some(DedupeOutcome::Duplicate),
        "what is held still works"
    );
}

#[tokio::test]
async fn grpc_requests_get_their_answers_in_grpc_form() {
    let gate = Arc::new(Notify::new());
    let handler = Handler::gated(&gate);
    let service = stack(elevenlabs(), &handler);
    let grpc = |t| {
        let mut request = signed(STT, t);
        request
            .headers_mut()
            .insert(header::CONTENT_TYPE, "application/grpc".parse().unwrap());
        request
    };
    let t = now();
    let first = tokio::spawn(service.clone().oneshot(grpc(t)));
    handler.entered.notified().await;
    let busy = service.clone().oneshot(grpc(t + 1)).await.unwrap();
    assert_eq!(busy.status(), StatusCode::OK, "gRPC reads grpc-status");
    assert_eq!(busy.headers()[header::CONTENT_TYPE], "application/grpc");
    assert_eq!(busy.headers()["grpc-status"], "14");
    assert!(busy.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(problem_code(&busy), Some(ProblemCode::DELIVERY_IN_FLIGHT));
    gate.notify_one();
    assert_eq!(
        outcome(&first.await.unwrap().unwrap()),
        Some(DedupeOutcome::Handled)
    );
    let duplicate = service.clone().oneshot(grpc(t + 2)).await.unwrap();
    assert_eq!(duplicate.headers()["grpc-status"], "6");
    assert_eq!(duplicate.headers()["hookgate-duplicate"], "true");

    let down = stack(
        DeduplicateLayer::with_store(DownStore, DedupeKey::elevenlabs()),
        &handler,
    );
    let unavailable = down.oneshot(grpc(t)).await.unwrap();
    assert_eq!(unavailable.headers()["grpc-status"], "14");
    assert_eq!(
        problem_code(&unavailable),
        Some(ProblemCode::DEDUPE_UNAVAILABLE)
    );
    assert_eq!(handler.calls(), 1);
}

/// Serves `service` on a loopback port with hyper (HTTP/1 and HTTP/2).
async fn serve<S>(service: S) -> SocketAddr
where
    S: Service<Request<hyper::body::Incoming>, Response = Response<Full<Bytes>>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn end_to_end_over_hyper_a_streamed_event_is_handled_once() {
    let handler = Handler::default();
    let service = ServiceBuilder::new()
        .layer(VerifySignatureLayer::new(scheme()))
        .layer(elevenlabs())
        .service(handler.clone());
    let addr = serve(service).await;
    let client = Client::builder(TokioExecutor::new()).build_http();

    // A 200 KiB transcript, streamed in 8 KiB frames (chunked): the key is read across them.
    let words: Vec<String> = (0..8000).map(|i| format!(r#"{{"w":"word{i}"}}"#)).collect();
    let body = format!(
        r#"{{"type":"speech_to_text_transcription","data":{{"transcription":{{"words":[{}]}},"request_id":"req_stream"}}}}"#,
        words.join(",")
    );
    let send = |t: u64| {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = body
            .as_bytes()
            .chunks(8 * 1024)
            .map(|chunk| Ok(Frame::data(Bytes::copy_from_slice(chunk))))
            .collect();
        let request = Request::post(format!("http://{addr}/webhooks/elevenlabs"))
            .header("elevenlabs-signature", scheme().sign(t, body.as_bytes()))
            .body(StreamBody::new(futures_util::stream::iter(frames)))
            .unwrap();
        client.request(request)
    };
    let t = now();
    let first = send(t).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert!(first.headers().get("hookgate-duplicate").is_none());
    assert_eq!(
        first.into_body().collect().await.unwrap().to_bytes(),
        "stored"
    );

    for t in [t, t + 1] {
        let again = send(t).await.unwrap();
        assert_eq!(again.status(), StatusCode::OK);
        assert_eq!(again.headers()["hookgate-duplicate"], "true");
        assert_eq!(again.headers()[header::CONTENT_TYPE], "application/json");
        let json: serde_json::Value =
            serde_json::from_slice(&again.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"duplicate": true, "key": "req_stream"})
        );
    }
    assert_eq!(handler.calls(), 1);
    let seen = handler.seen.lock().unwrap();
    assert_eq!(seen[0].0.as_ref().unwrap().as_str(), "req_stream");
    assert!(
        seen[0].1 == body.as_bytes(),
        "the handler got the body intact"
    );
}
