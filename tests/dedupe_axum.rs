//! DeduplicateLayer in the full onion on an axum router served on loopback: status
//! normalization to ElevenLabs' contract, the per-client limit, verification, then
//! deduplication, in one `ServiceBuilder` given to `Router::layer`. Duplicates stay `200`,
//! a delivery in flight stays a retryable `503`, and a handler's failure is retried.

use std::{
    net::SocketAddr,
    num::NonZeroU32,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{extract::State, http::StatusCode, routing::post, Extension, Router};
use bytes::Bytes;
use hookgate::{
    client_ip::ClientIp,
    dedupe::{DedupeKey, DeduplicateLayer, EventKey},
    rate_limit::Rate,
    scheme::ElevenLabs,
    NormalizeStatusLayer, RateLimitLayer, VerifySignatureLayer,
};
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::Notify,
};
use tower::ServiceBuilder;

const SECRET: &str = "whsec_dedupe_axum";

/// The handler's state: its calls, a gate it waits on for bodies containing `"slow"`, and
/// how many more calls it answers `500`.
#[derive(Clone, Default)]
struct Handler {
    calls: Arc<AtomicUsize>,
    failures_left: Arc<AtomicUsize>,
    gate: Arc<Notify>,
    entered: Arc<Notify>,
}

async fn handle(
    State(handler): State<Handler>,
    Extension(key): Extension<EventKey>,
    body: Bytes,
) -> (StatusCode, String) {
    handler.calls.fetch_add(1, Ordering::SeqCst);
    handler.entered.notify_one();
    if body.windows(4).any(|window| window == b"slow") {
        handler.gate.notified().await;
    }
    let failing = handler
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return (StatusCode::INTERNAL_SERVER_ERROR, "disk full".to_owned());
    }
    (StatusCode::OK, format!("stored {key}"))
}

async fn serve(handler: Handler) -> SocketAddr {
    let onion = ServiceBuilder::new()
        .layer(NormalizeStatusLayer::elevenlabs())
        .layer(RateLimitLayer::per_client(
            Rate::per_second(NonZeroU32::new(100).unwrap()),
            ClientIp::peer(),
        ))
        .layer(VerifySignatureLayer::new(ElevenLabs::new(SECRET).unwrap()))
        .layer(DeduplicateLayer::new(DedupeKey::elevenlabs()));
    let app = Router::new()
        .route("/webhooks/elevenlabs", post(handle))
        .with_state(handler)
        .layer(onion);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// POSTs `body` signed at `t` on a new connection: status, headers and body.
async fn deliver(addr: SocketAddr, body: &str, t: u64) -> (StatusCode, HeaderMap, String) {
    let signature = ElevenLabs::new(SECRET).unwrap().sign(t, body.as_bytes());
    let body = Bytes::from(body.to_owned());
    let exchange = async move {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = Request::post("/webhooks/elevenlabs")
            .header("host", "localhost")
            .header("elevenlabs-signature", signature)
            .body(Full::new(body))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the loopback exchange finished in time")
}

fn event(request_id: &str) -> String {
    format!(r#"{{"type":"speech_to_text_transcription","data":{{"request_id":"{request_id}"}}}}"#)
}

#[tokio::test]
async fn a_redelivery_through_the_whole_onion_is_a_200_duplicate() {
    let handler = Handler::default();
    let addr = serve(handler.clone()).await;
    let t = now();
    let (status, headers, body) = deliver(addr, &event("req_a"), t).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("hookgate-duplicate").is_none());
    assert_eq!(body, "stored req_a");

    let (status, headers, body) = deliver(addr, &event("req_a"), t + 30).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["hookgate-duplicate"], "true");
    assert_eq!(body, r#"{"duplicate":true,"key":"req_a"}"#);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_delivery_in_flight_stays_a_retryable_503() {
    let handler = Handler::default();
    let addr = serve(handler.clone()).await;
    let t = now();
    let slow = event("req_slow");
    let first = tokio::spawn({
        let slow = slow.clone();
        async move { deliver(addr, &slow, t).await }
    });
    handler.entered.notified().await;
    let (status, headers, body) = deliver(addr, &slow, t + 1).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["code"], "delivery_in_flight");
    handler.gate.notify_one();
    assert_eq!(first.await.unwrap().0, StatusCode::OK);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_handler_failure_is_retried_and_then_handled() {
    let handler = Handler::default();
    handler.failures_left.store(1, Ordering::SeqCst);
    let addr = serve(handler.clone()).await;
    let t = now();
    let (status, _, _) = deliver(addr, &event("req_f"), t).await;
    assert!(status.is_server_error(), "{status}: the sender retries");
    let (status, headers, body) = deliver(addr, &event("req_f"), t + 60).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("hookgate-duplicate").is_none());
    assert_eq!(body, "stored req_f");
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2);
}
