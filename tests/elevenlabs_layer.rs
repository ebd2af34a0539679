//! `ElevenLabsLayer` on an axum router served on loopback: the recommended onion in the right
//! order, whatever order a newcomer would have guessed.
#![cfg(all(
    feature = "signature",
    feature = "rate-limit",
    feature = "normalize",
    feature = "axum"
))]

use std::{net::SocketAddr, num::NonZeroU32, time::Duration};

use axum::{routing::post, Router};
use bytes::Bytes;
use hookgate::{
    elevenlabs::ElevenLabsLayer,
    rate_limit::{FailurePolicy, Rate},
    scheme::ElevenLabs,
};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "whsec_layer_test";
const BODY: &str = r#"{"type":"speech_to_text_transcription","data":{"request_id":"r1"}}"#;

async fn serve(layer: ElevenLabsLayer) -> SocketAddr {
    let app = Router::new()
        .route("/webhooks/elevenlabs", post(|| async { "stored" }))
        .layer(layer);
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

/// POSTs `BODY` with `signature` on a new connection: the status and the problem code, if any.
async fn deliver(addr: SocketAddr, signature: &str) -> (StatusCode, Option<String>) {
    let exchange = async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = Request::post("/webhooks/elevenlabs")
            .header("host", "localhost")
            .header("elevenlabs-signature", signature)
            .body(Full::new(Bytes::from_static(BODY.as_bytes())))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let code = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|json| json["code"].as_str().map(str::to_owned));
        (status, code)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the loopback exchange finished in time")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn forged() -> String {
    format!("t={},v0={}", now(), "ab".repeat(32))
}

fn per_minute(n: u32) -> Rate {
    Rate::per_minute(NonZeroU32::new(n).unwrap())
}

#[tokio::test]
async fn a_genuine_delivery_passes_the_whole_onion() {
    let scheme = ElevenLabs::new(SECRET).unwrap();
    let addr = serve(ElevenLabsLayer::new(scheme.clone())).await;
    let signature = scheme.sign(now(), BODY.as_bytes());
    assert_eq!(deliver(addr, &signature).await, (StatusCode::OK, None));
}

#[tokio::test]
async fn forged_traffic_is_rate_limited_before_it_is_verified() {
    let scheme = ElevenLabs::new(SECRET).unwrap();
    let layer = ElevenLabsLayer::new(scheme).client_rate(per_minute(2));
    let addr = serve(layer).await;
    for _ in 0..2 {
        let (status, code) = deliver(addr, &forged()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(code.as_deref(), Some("signature_mismatch"));
    }
    // Verified first, the flood would still be answered 401 (and its bodies read); limited
    // first, it is turned away before any body is read, retryably under ElevenLabs' contract.
    let (status, code) = deliver(addr, &forged()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code.as_deref(), Some("rate_limited"));
}

#[tokio::test]
async fn a_client_that_keeps_failing_is_blocked_retryably() {
    let scheme = ElevenLabs::new(SECRET).unwrap();
    let policy = FailurePolicy::block_for(Duration::from_secs(60)).unwrap();
    let layer = ElevenLabsLayer::new(scheme.clone()).failure_limit(per_minute(2), policy);
    let addr = serve(layer).await;
    // Two failures are allowed; the third is answered and blocks the client.
    for _ in 0..3 {
        assert_eq!(deliver(addr, &forged()).await.0, StatusCode::UNAUTHORIZED);
    }
    let (status, code) = deliver(addr, &forged()).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a 503, never a 4xx"
    );
    assert_eq!(code.as_deref(), Some("client_blocked"));
    // A genuine delivery from the same address meets the block too, and is told to retry.
    let genuine = scheme.sign(now(), BODY.as_bytes());
    assert_eq!(
        deliver(addr, &genuine).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
