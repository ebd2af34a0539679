//! Tests of the layer over scripted bodies: every rule of the body read, on a paused clock.

use std::{
    collections::VecDeque,
    convert::Infallible,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Service, ServiceExt};

use super::*;
use crate::{problem::ProblemCode, scheme::ElevenLabs, Verified};

const SECRET: &str = "test_secret";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(body: &[u8]) -> String {
    ElevenLabs::new(SECRET).unwrap().sign(now(), body)
}

/// One step of a scripted body.
enum Step {
    Data(Bytes),
    Trailers(HeaderMap),
    /// Returns `Pending` once (waking at once), like a frame still in flight.
    Yield,
    /// Never produces anything more.
    Stall,
    Fail,
}

/// A request body that plays a script, records whether it was polled, and reports the size
/// hint it is told to (which may lie).
struct Scripted {
    steps: VecDeque<Step>,
    hint: SizeHint,
    polled: Arc<AtomicBool>,
}

impl Scripted {
    fn new(steps: Vec<Step>) -> Self {
        Self {
            steps: steps.into(),
            hint: SizeHint::default(),
            polled: Arc::new(AtomicBool::new(false)),
        }
    }

    fn frames(body: &[u8], frame_len: usize) -> Self {
        Self::new(
            body.chunks(frame_len.max(1))
                .map(|c| Step::Data(Bytes::copy_from_slice(c)))
                .collect(),
        )
    }

    fn hint_exact(mut self, len: u64) -> Self {
        self.hint = SizeHint::with_exact(len);
        self
    }
}

impl Body for Scripted {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.polled.store(true, Ordering::SeqCst);
        match self.steps.pop_front() {
            None => Poll::Ready(None),
            Some(Step::Data(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Some(Step::Trailers(t)) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Some(Step::Yield) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Some(Step::Stall) => {
                self.steps.push_front(Step::Stall);
                Poll::Pending
            }
            Some(Step::Fail) => Poll::Ready(Some(Err(std::io::Error::other("connection reset")))),
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

/// What the inner service saw.
#[derive(Clone, Default)]
struct Seen {
    calls: Arc<AtomicUsize>,
    last: Arc<std::sync::Mutex<Option<Call>>>,
}

/// One call of the inner service: the body, where its frames live, the extension, the trailers.
struct Call(Bytes, Vec<usize>, Option<Verified>, Option<HeaderMap>);

fn handler(
    seen: Seen,
) -> impl Service<Request<VerifiedBody>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone
{
    service_fn(move |request: Request<VerifiedBody>| {
        let seen = seen.clone();
        async move {
            seen.calls.fetch_add(1, Ordering::SeqCst);
            let verified = request.extensions().get::<Verified>().cloned();
            let body = request.into_body();
            let ptrs = body.frames().map(|f| f.as_ptr() as usize).collect();
            let bytes = body.to_bytes();
            let collected = body.collect().await.unwrap();
            *seen.last.lock().unwrap() =
                Some(Call(bytes, ptrs, verified, collected.trailers().cloned()));
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    })
}

fn layer() -> VerifySignatureLayer<ElevenLabs> {
    VerifySignatureLayer::new(ElevenLabs::new(SECRET).unwrap())
}

async fn call<B>(
    layer: VerifySignatureLayer<ElevenLabs>,
    seen: &Seen,
    request: Request<B>,
) -> Response<Full<Bytes>>
where
    B: Body + Send + 'static,
    B::Data: bytes::Buf,
    B::Error: std::fmt::Display,
{
    layer
        .layer(handler(seen.clone()))
        .oneshot(request)
        .await
        .unwrap()
}

fn signed<B>(body_bytes: &[u8], body: B) -> Request<B> {
    Request::post("/hook")
        .header("elevenlabs-signature", sign(body_bytes))
        .body(body)
        .unwrap()
}

async fn problem_code(response: Response<Full<Bytes>>) -> String {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let code = response
        .extensions()
        .get::<ProblemCode>()
        .unwrap()
        .to_string();
    let json: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(json["code"], code);
    code
}

use tower_layer::Layer;

#[tokio::test]
async fn genuine_delivery_reaches_the_handler_with_exact_bytes_and_verified() {
    let seen = Seen::default();
    let body = br#"{"type":"speech_to_text_transcription","data":{"request_id":"r"}}"#;
    let response = call(
        layer(),
        &seen,
        signed(body, Full::new(Bytes::from_static(body))),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(answer, "ok", "the handler's own body");
    let Call(bytes, _, verified, _) = seen.last.lock().unwrap().take().unwrap();
    assert_eq!(bytes, &body[..]);
    let verified = verified.expect("Verified extension");
    assert!(verified.unix_timestamp().abs_diff(now()) <= 1);
    assert_eq!(verified.secret_index(), 0);
}

#[tokio::test]
async fn frames_reach_the_handler_without_copies() {
    let seen = Seen::default();
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let scripted = Scripted::frames(&body, 16 * 1024);
    let sent: Vec<usize> = scripted
        .steps
        .iter()
        .map(|s| match s {
            Step::Data(d) => d.as_ptr() as usize,
            _ => unreachable!(),
        })
        .collect();
    let response = call(layer(), &seen, signed(&body, scripted)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let Call(bytes, ptrs, _, _) = seen.last.lock().unwrap().take().unwrap();
    assert_eq!(bytes, body);
    assert_eq!(
        ptrs, sent,
        "the handler got the very frames the body produced"
    );
}

#[tokio::test]
async fn non_utf8_empty_and_many_frame_bodies_verify() {
    let seen = Seen::default();
    let binary = [0xff, 0xfe, 0x00, 0xc3, 0x28];
    let r = call(
        layer(),
        &seen,
        signed(&binary, Scripted::frames(&binary, 1)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = call(layer(), &seen, signed(b"", Full::new(Bytes::new()))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut steps = Vec::new();
    for b in b"split into many frames, some pending" {
        steps.push(Step::Data(Bytes::copy_from_slice(&[*b])));
        steps.push(Step::Yield);
    }
    let r = call(
        layer(),
        &seen,
        signed(
            b"split into many frames, some pending",
            Scripted::new(steps),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(seen.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn trailers_are_handed_on() {
    let seen = Seen::default();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let scripted = Scripted::new(vec![
        Step::Data(Bytes::from_static(b"data")),
        Step::Trailers(trailers),
    ]);
    let r = call(layer(), &seen, signed(b"data", scripted)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let Call(_, _, _, got) = seen.last.lock().unwrap().take().unwrap();
    assert_eq!(got.unwrap()["x-checksum"], "abc");
}

/// Requests refused on their headers alone: the body is never polled, the handler never runs.
#[tokio::test]
async fn header_rejections_never_read_the_body() {
    let fresh = now();
    let sig = "0".repeat(64);
    let cases: Vec<(Option<String>, StatusCode, &str)> = vec![
        (None, StatusCode::UNAUTHORIZED, "missing_signature"),
        (
            Some(String::new()),
            StatusCode::BAD_REQUEST,
            "malformed_signature",
        ),
        (
            Some(format!("v0={sig}")),
            StatusCode::BAD_REQUEST,
            "malformed_signature",
        ),
        (
            Some(format!("t=abc,v0={sig}")),
            StatusCode::BAD_REQUEST,
            "malformed_signature",
        ),
        (
            Some(format!("t=-5,v0={sig}")),
            StatusCode::BAD_REQUEST,
            "malformed_signature",
        ),
        (
            Some(format!("t=99999999999999999999,v0={sig}")),
            StatusCode::BAD_REQUEST,
            "malformed_signature",
        ),
        (
            Some(format!("t={fresh}")),
            StatusCode::BAD_REQUEST,
            "malformed_signature",
        ),
        (
            Some(format!("t={fresh},v0=")),
            StatusCode::BAD_REQUEST,
            "malformed_signature",
        ),
        (
            Some(format!("t={fresh},v0={}", &sig[..40])),
            StatusCode::BAD_REQUEST,
            "malformed_signature",
        ),
        (
            Some(format!("t={fresh},v0={}", "z".repeat(64))),
            StatusCode::BAD_REQUEST,
            "malformed_signature",
        ),
        (
            Some(format!("t={},v0={sig}", fresh - 3600)),
            StatusCode::UNAUTHORIZED,
            "timestamp_stale",
        ),
        (
            Some(format!("t={},v0={sig}", fresh + 3600)),
            StatusCode::UNAUTHORIZED,
            "timestamp_in_future",
        ),
    ];
    for (header, status, code) in cases {
        let seen = Seen::default();
        let body = Scripted::frames(b"{}", 2);
        let polled = body.polled.clone();
        let mut request = Request::post("/hook").body(body).unwrap();
        if let Some(value) = &header {
            request
                .headers_mut()
                .insert("elevenlabs-signature", value.parse().unwrap());
        }
        let response = call(layer(), &seen, request).await;
        assert_eq!(response.status(), status, "{header:?}");
        assert_eq!(problem_code(response).await, code, "{header:?}");
        assert!(!polled.load(Ordering::SeqCst), "{header:?}: body was read");
        assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn conflicting_duplicate_header_lines_are_400() {
    let seen = Seen::default();
    let mut request = signed(b"x", Full::new(Bytes::from_static(b"x")));
    request
        .headers_mut()
        .append("elevenlabs-signature", sign(b"y").parse().unwrap());
    let response = call(layer(), &seen, request).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn wrong_signature_is_401_and_handler_never_runs() {
    let seen = Seen::default();
    let forged = ElevenLabs::new("attacker").unwrap().sign(now(), b"payload");
    let request = Request::post("/hook")
        .header("elevenlabs-signature", forged)
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let response = call(layer(), &seen, request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(problem_code(response).await, "signature_mismatch");
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn declared_length_over_the_cap_is_413_before_reading() {
    let seen = Seen::default();
    let body = Scripted::frames(&[b'a'; 101], 101).hint_exact(101);
    let polled = body.polled.clone();
    let response = call(
        layer().max_body_size(100),
        &seen,
        signed(&[b'a'; 101], body),
    )
    .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem_code(response).await, "payload_too_large");
    assert!(!polled.load(Ordering::SeqCst));
}

#[tokio::test]
async fn chunked_and_lying_bodies_over_the_cap_are_413() {
    let payload = [b'a'; 150];
    // No declared length.
    let seen = Seen::default();
    let response = call(
        layer().max_body_size(100),
        &seen,
        signed(&payload, Scripted::frames(&payload, 40)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Declares 50 bytes, sends 150.
    let response = call(
        layer().max_body_size(100),
        &seen,
        signed(&payload, Scripted::frames(&payload, 40).hint_exact(50)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
    // Exactly at the cap is fine.
    let response = call(
        layer().max_body_size(150),
        &seen,
        signed(&payload, Scripted::frames(&payload, 40)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn slow_body_is_408_at_the_deadline() {
    let seen = Seen::default();
    let body = Scripted::new(vec![
        Step::Data(Bytes::from_static(b"partial")),
        Step::Stall,
    ]);
    let started = tokio::time::Instant::now();
    let response = call(
        layer().body_timeout(Duration::from_secs(10)),
        &seen,
        signed(b"partial and more", body),
    )
    .await;
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(problem_code(response).await, "body_timeout");
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn body_stream_error_is_400_body_unreadable() {
    let seen = Seen::default();
    let body = Scripted::new(vec![Step::Data(Bytes::from_static(b"par")), Step::Fail]);
    let response = call(layer(), &seen, signed(b"partial", body)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(problem_code(response).await, "body_unreadable");
}

#[tokio::test]
async fn exhausted_budget_is_503_with_retry_after_and_is_given_back() {
    let budget = BufferBudget::new(100);
    let layer = layer().shared_buffer_budget(budget.clone());
    let seen = Seen::default();

    // Declared length larger than what is left: refused as the bytes arrive (nothing is
    // reserved for a declared length).
    let body = Scripted::frames(&[1; 101], 101).hint_exact(101);
    let response = call(layer.clone(), &seen, signed(&[1; 101], body)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(problem_code(response).await, "buffer_budget_exhausted");

    // Undeclared length: refused when the bytes received pass the budget.
    let response = call(
        layer.clone(),
        &seen,
        signed(&[1; 101], Scripted::frames(&[1; 101], 30)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(budget.in_use(), 0, "a refused request gives its bytes back");

    // A held body counts against the budget until it is dropped.
    let (tx, rx) = tokio::sync::oneshot::channel::<VerifiedBody>();
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    let keep = service_fn(move |request: Request<VerifiedBody>| {
        let tx = tx.clone();
        async move {
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send(request.into_body());
            }
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }
    });
    let svc = layer.clone().layer(keep);
    let r = svc
        .clone()
        .oneshot(signed(&[2; 80], Full::new(Bytes::from(vec![2; 80]))))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let held = rx.await.unwrap();
    assert_eq!(budget.in_use(), 80);
    let r = svc
        .clone()
        .oneshot(signed(&[3; 30], Full::new(Bytes::from(vec![3; 30]))))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop(held);
    assert_eq!(budget.in_use(), 0);
    let r = svc
        .oneshot(signed(&[3; 30], Full::new(Bytes::from(vec![3; 30]))))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn inner_errors_pass_through_unchanged() {
    #[derive(Debug, PartialEq)]
    struct HandlerDown;
    let failing = service_fn(|_: Request<VerifiedBody>| async {
        Err::<Response<Full<Bytes>>, _>(HandlerDown)
    });
    let result = layer()
        .layer(failing)
        .oneshot(signed(b"x", Full::new(Bytes::from_static(b"x"))))
        .await;
    assert_eq!(result.unwrap_err(), HandlerDown);
}

#[tokio::test]
async fn inner_response_passes_through_unchanged() {
    let teapot = service_fn(|_: Request<VerifiedBody>| async {
        let mut r = Response::new(Full::new(Bytes::from_static(b"short and stout")));
        *r.status_mut() = StatusCode::IM_A_TEAPOT;
        r.headers_mut().insert("x-handler", "yes".parse().unwrap());
        Ok::<_, Infallible>(r)
    });
    let response = layer()
        .layer(teapot)
        .oneshot(signed(b"x", Full::new(Bytes::from_static(b"x"))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(response.headers()["x-handler"], "yes");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "short and stout");
}

/// `(t=…, hex)` of a genuine `elevenlabs-signature` value for `body`.
fn split_signature(body: &[u8]) -> (String, String) {
    let value = sign(body);
    let (t, hex) = value.split_once(",v0=").unwrap();
    (t.to_owned(), hex.to_owned())
}

#[tokio::test]
async fn repeated_and_mixed_v0_signatures_verify_through_the_layer() {
    let body = b"payload";
    let (t, good) = split_signature(body);
    let wrong = "0".repeat(64);
    for header in [
        format!("{t},v0={good},v0={good}"),
        format!("{t},v0={good},v0={wrong}"),
        format!("{t},v0={wrong},v0={good}"),
    ] {
        let seen = Seen::default();
        let request = Request::post("/hook")
            .header("elevenlabs-signature", &header)
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        let response = call(layer(), &seen, request).await;
        assert_eq!(response.status(), StatusCode::OK, "{header}");
        let Call(bytes, _, verified, _) = seen.last.lock().unwrap().take().unwrap();
        assert_eq!(bytes, &body[..]);
        assert_eq!(verified.unwrap().signature().to_hex(), good, "{header}");
    }
}

/// Readiness of every clone of one [`Gated`] service, set by the test.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Gate {
    Closed,
    Open,
    Broken,
}

/// An inner service holding the layer to tower's contract: an instance must be driven ready
/// before each call (a call uses the readiness up), and a clone starts out unready.
#[derive(Debug)]
struct Gated {
    gate: Arc<std::sync::Mutex<Gate>>,
    ready: bool,
    calls: Arc<AtomicUsize>,
    unready_calls: Arc<AtomicUsize>,
}

impl Gated {
    fn new(gate: Gate) -> Self {
        Self {
            gate: Arc::new(std::sync::Mutex::new(gate)),
            ready: false,
            calls: Arc::default(),
            unready_calls: Arc::default(),
        }
    }

    fn set(&self, gate: Gate) {
        *self.gate.lock().unwrap() = gate;
    }
}

impl Clone for Gated {
    fn clone(&self) -> Self {
        Self {
            gate: self.gate.clone(),
            ready: false,
            calls: self.calls.clone(),
            unready_calls: self.unready_calls.clone(),
        }
    }
}

impl Service<Request<VerifiedBody>> for Gated {
    type Response = Response<Full<Bytes>>;
    type Error = &'static str;
    type Future = std::future::Ready<Result<Response<Full<Bytes>>, &'static str>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match *self.gate.lock().unwrap() {
            Gate::Closed => Poll::Pending,
            Gate::Open => {
                self.ready = true;
                Poll::Ready(Ok(()))
            }
            Gate::Broken => Poll::Ready(Err("inner overloaded")),
        }
    }

    fn call(&mut self, _request: Request<VerifiedBody>) -> Self::Future {
        if !std::mem::take(&mut self.ready) {
            self.unready_calls.fetch_add(1, Ordering::SeqCst);
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
    }
}

fn poll_ready_once<S>(service: &mut S) -> Poll<Result<(), S::Error>>
where
    S: Service<Request<Full<Bytes>>>,
{
    service.poll_ready(&mut Context::from_waker(std::task::Waker::noop()))
}

#[tokio::test]
async fn poll_ready_is_the_inner_services_and_only_a_ready_inner_is_called() {
    let gated = Gated::new(Gate::Closed);
    let mut service = layer().layer(gated.clone());

    // Pending inner, pending layer, however often asked.
    assert!(poll_ready_once(&mut service).is_pending());
    assert!(poll_ready_once(&mut service).is_pending());

    gated.set(Gate::Open);
    assert!(matches!(poll_ready_once(&mut service), Poll::Ready(Ok(()))));
    let response = service
        .call(signed(b"one", Full::new(Bytes::from_static(b"one"))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(gated.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        gated.unready_calls.load(Ordering::SeqCst),
        0,
        "the layer called an inner service that was not driven ready"
    );

    // The layer left a clone in place of the service it called: it is driven ready in turn.
    gated.set(Gate::Closed);
    assert!(poll_ready_once(&mut service).is_pending());
    gated.set(Gate::Open);
    for body in [&b"two"[..], b"three"] {
        ServiceExt::<Request<Full<Bytes>>>::ready(&mut service)
            .await
            .unwrap();
        let response = service
            .call(signed(body, Full::new(Bytes::copy_from_slice(body))))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(gated.calls.load(Ordering::SeqCst), 3);
    assert_eq!(gated.unready_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_poll_ready_error_of_the_inner_service_is_the_layers() {
    let gated = Gated::new(Gate::Broken);
    let mut service = layer().layer(gated.clone());
    match poll_ready_once(&mut service) {
        Poll::Ready(Err(error)) => assert_eq!(error, "inner overloaded"),
        other => panic!("expected the inner error, got {other:?}"),
    }
    let error = ServiceExt::<Request<Full<Bytes>>>::ready(&mut service)
        .await
        .unwrap_err();
    assert_eq!(error, "inner overloaded");
    assert_eq!(gated.calls.load(Ordering::SeqCst), 0);
}

/// A body that must never be polled: it declares `len` bytes and panics if asked for one.
struct NeverPolled(u64);

impl Body for NeverPolled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        panic!("the body was polled")
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0)
    }
}

#[tokio::test]
async fn a_declared_length_of_exactly_the_cap_is_read_and_one_more_byte_is_413_unread() {
    let payload = [b'a'; 100];
    let seen = Seen::default();
    // Declared in one frame (as `Full`) and in several (as a server's body with Content-Length).
    let response = call(
        layer().max_body_size(100),
        &seen,
        signed(&payload, Full::new(Bytes::copy_from_slice(&payload))),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = call(
        layer().max_body_size(100),
        &seen,
        signed(&payload, Scripted::frames(&payload, 30).hint_exact(100)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let Call(bytes, _, verified, _) = seen.last.lock().unwrap().take().unwrap();
    assert_eq!(bytes, &payload[..]);
    assert!(verified.is_some());
    assert_eq!(seen.calls.load(Ordering::SeqCst), 2);

    let response = call(
        layer().max_body_size(100),
        &seen,
        signed(&[b'a'; 101], NeverPolled(101)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem_code(response).await, "payload_too_large");
    assert_eq!(seen.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_handler_gets_a_body_with_an_exact_size_its_trailers_and_a_true_end() {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let checked = Arc::new(AtomicBool::new(false));
    let done = checked.clone();
    let handler = service_fn(move |request: Request<VerifiedBody>| {
        let done = done.clone();
        async move {
            let mut body = request.into_body();
            // A proxy forwarding this request sets Content-Length from the exact hint.
            assert_eq!(body.size_hint().exact(), Some(11));
            assert_eq!(body.len(), 11);
            assert!(!body.is_empty());
            assert!(!body.is_end_stream());
            assert_eq!(body.trailers().unwrap()["x-checksum"], "abc");
            let mut data = Vec::new();
            let mut frame_trailers = None;
            while !body.is_end_stream() {
                let frame = body.frame().await.expect("a frame before the end").unwrap();
                match frame.into_data() {
                    Ok(chunk) => {
                        assert!(frame_trailers.is_none(), "data after the trailers");
                        data.extend_from_slice(&chunk);
                        assert_eq!(body.size_hint().exact(), Some(11 - data.len() as u64));
                    }
                    Err(frame) => frame_trailers = Some(frame.into_trailers().unwrap()),
                }
            }
            assert_eq!(data, b"hello world");
            assert_eq!(frame_trailers.unwrap()["x-checksum"], "abc");
            assert!(body.frame().await.is_none());
            done.store(true, Ordering::SeqCst);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }
    });
    let scripted = Scripted::new(vec![
        Step::Data(Bytes::from_static(b"hello ")),
        Step::Yield,
        Step::Data(Bytes::from_static(b"world")),
        Step::Trailers(trailers),
    ]);
    let response = layer()
        .layer(handler)
        .oneshot(signed(b"hello world", scripted))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(checked.load(Ordering::SeqCst), "the handler never ran");
}

/// The fields of one event, as text.
type Fields = Vec<(String, String)>;

/// The events recorded while it is the thread's subscriber.
#[derive(Clone, Default)]
struct Events(Arc<std::sync::Mutex<Vec<Fields>>>);

impl Events {
    fn take(&self) -> Vec<Fields> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct FieldVisitor(Fields);

impl tracing::field::Visit for FieldVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl tracing::Subscriber for Events {
    fn enabled(&self, _metadata: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _span: &tracing::span::Id, _values: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _span: &tracing::span::Id, _follows: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = FieldVisitor(Vec::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }

    fn enter(&self, _span: &tracing::span::Id) {}

    fn exit(&self, _span: &tracing::span::Id) {}
}

/// One rejected request and the code it must be logged with.
struct Rejection {
    code: &'static str,
    header: Option<String>,
    /// What the sender signed, or should have, and when: the signature the layer expects.
    signed: &'static [u8],
    t: u64,
    body: Scripted,
    layer: VerifySignatureLayer<ElevenLabs>,
}

/// Whatever the level rejections are logged at: each is one "webhook rejected" event with its
/// code, and nothing logged holds the secret or the signature the body should have carried.
#[tokio::test]
async fn each_rejection_is_logged_once_with_its_code_and_never_the_secret() {
    const BODY: &[u8] = b"payload";
    const BIG: &[u8] = &[b'a'; 150];
    let events = Events::default();
    let _guard = tracing::subscriber::set_default(events.clone());
    let t = now();
    let genuine = |t: u64, body: &[u8]| ElevenLabs::new(SECRET).unwrap().sign(t, body);
    let forge = |t: u64| ElevenLabs::new("attacker").unwrap().sign(t, BODY);
    let cases = vec![
        Rejection {
            code: "missing_signature",
            header: None,
            signed: BODY,
            t,
            body: Scripted::frames(BODY, 3),
            layer: layer(),
        },
        Rejection {
            code: "malformed_signature",
            header: Some(format!("t={t},v0=zz")),
            signed: BODY,
            t,
            body: Scripted::frames(BODY, 3),
            layer: layer(),
        },
        Rejection {
            code: "timestamp_stale",
            header: Some(forge(t - 3600)),
            signed: BODY,
            t: t - 3600,
            body: Scripted::frames(BODY, 3),
            layer: layer(),
        },
        Rejection {
            code: "timestamp_in_future",
            header: Some(forge(t + 3600)),
            signed: BODY,
            t: t + 3600,
            body: Scripted::frames(BODY, 3),
            layer: layer(),
        },
        Rejection {
            code: "signature_mismatch",
            header: Some(forge(t)),
            signed: BODY,
            t,
            body: Scripted::frames(BODY, 3),
            layer: layer(),
        },
        // Too large as declared, then as received.
        Rejection {
            code: "payload_too_large",
            header: Some(genuine(t, BIG)),
            signed: BIG,
            t,
            body: Scripted::frames(BIG, 150).hint_exact(150),
            layer: layer().max_body_size(100),
        },
        Rejection {
            code: "payload_too_large",
            header: Some(genuine(t, BIG)),
            signed: BIG,
            t,
            body: Scripted::frames(BIG, 40),
            layer: layer().max_body_size(100),
        },
        Rejection {
            code: "body_unreadable",
            header: Some(genuine(t, BODY)),
            signed: BODY,
            t,
            body: Scripted::new(vec![Step::Data(Bytes::from_static(b"pay")), Step::Fail]),
            layer: layer(),
        },
        Rejection {
            code: "body_timeout",
            header: Some(genuine(t, BODY)),
            signed: BODY,
            t,
            body: Scripted::new(vec![Step::Data(Bytes::from_static(b"pay")), Step::Stall]),
            layer: layer().body_timeout(Duration::from_millis(10)),
        },
    ];
    for case in cases {
        let code = case.code;
        let mut request = Request::post("/hook").body(case.body).unwrap();
        if let Some(value) = &case.header {
            request
                .headers_mut()
                .insert("elevenlabs-signature", value.parse().unwrap());
        }
        events.take();
        let response = call(case.layer, &Seen::default(), request).await;
        assert_eq!(problem_code(response).await, code);
        let logged = events.take();
        let rejections: Vec<_> = logged
            .iter()
            .filter(|fields| {
                fields
                    .iter()
                    .any(|(name, value)| name == "message" && value == "webhook rejected")
            })
            .collect();
        assert_eq!(rejections.len(), 1, "{code}: {logged:?}");
        let logged_code = rejections[0].iter().find(|(name, _)| name == "code");
        assert_eq!(logged_code.map(|(_, v)| v.as_str()), Some(code), "{code}");
        let expected = genuine(case.t, case.signed);
        let expected_hex = expected.split_once("v0=").unwrap().1;
        for (name, value) in logged.iter().flatten() {
            assert!(!value.contains(SECRET), "{code}: {name}={value}");
            assert!(!value.contains(expected_hex), "{code}: {name}={value}");
        }
    }

    // A genuine delivery logs no rejection.
    let response = call(
        layer(),
        &Seen::default(),
        signed(BODY, Full::new(Bytes::from_static(BODY))),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        !events
            .take()
            .iter()
            .flatten()
            .any(|(_, value)| value == "webhook rejected"),
        "a verified delivery was logged as rejected"
    );
}

#[cfg(feature = "standard-webhooks")]
#[tokio::test]
async fn standard_webhooks_v1a_is_verified_frame_by_frame() {
    use crate::scheme::{StandardWebhooks, StandardWebhooksSigningKey};

    let sender = StandardWebhooksSigningKey::from_seed([3; 32]);
    let scheme = StandardWebhooks::from_public_key(&sender.public_key()).unwrap();
    let seen = Seen::default();
    let service = VerifySignatureLayer::new(scheme).layer(handler(seen.clone()));
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let t = now();
    let request = |signature: String, frames: Scripted| {
        Request::post("/hook")
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", t)
            .header("webhook-signature", signature)
            .body(frames)
            .unwrap()
    };

    let response = service
        .clone()
        .oneshot(request(
            sender.sign("msg_1", t, &body),
            Scripted::frames(&body, 16 * 1024),
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let Call(bytes, _, verified, _) = seen.last.lock().unwrap().take().unwrap();
    assert_eq!(bytes, body);
    let verified = verified.expect("Verified extension");
    assert_eq!(verified.signature().as_bytes().len(), 64);
    assert_eq!(verified.message_id().unwrap(), "msg_1");

    // One changed byte in the last frame: refused after the body, and the handler never runs.
    let mut tampered = body.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let response = service
        .clone()
        .oneshot(request(
            sender.sign("msg_1", t, &body),
            Scripted::frames(&tampered, 16 * 1024),
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(problem_code(response).await, "signature_mismatch");
    // Signed by another key.
    let other = StandardWebhooksSigningKey::from_seed([4; 32]);
    let response = service
        .oneshot(request(
            other.sign("msg_1", t, &body),
            Scripted::frames(&body, 7),
        ))
        .await
        .unwrap();
    assert_eq!(problem_code(response).await, "signature_mismatch");
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
}
