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
use crate::{body::ResponseBody, problem::ProblemCode, scheme::ElevenLabs, Verified};

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
) -> Response<ResponseBody<Full<Bytes>>>
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

async fn problem_code(response: Response<ResponseBody<Full<Bytes>>>) -> String {
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
    assert!(!response.body().is_problem());
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

    // Declared length larger than what is left: refused before reading.
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
