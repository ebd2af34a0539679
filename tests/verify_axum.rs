//! VerifySignatureLayer on an axum Router served on a real loopback socket.
#![cfg(all(feature = "signature", feature = "axum"))]

use std::time::{SystemTime, UNIX_EPOCH};

use axum::{body::Bytes, http::StatusCode, routing::post, Extension, Router};
use hookgate::{scheme::ElevenLabs, Verified, VerifySignatureLayer};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

const SECRET: &str = "axum-secret";
const TRANSCRIPT: &str = r#"{"type":"speech_to_text_transcription","data":{"request_id":"req_1","transcription":{"language_code":"en","language_probability":0.98,"text":"Hi","words":[]}}}"#;

async fn handler(Extension(verified): Extension<Verified>, body: Bytes) -> (StatusCode, String) {
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    (
        StatusCode::OK,
        format!("{} {}", json["data"]["request_id"], verified.signature()),
    )
}

async fn serve() -> std::net::SocketAddr {
    let app = Router::new()
        .route("/webhooks/elevenlabs", post(handler))
        .layer(VerifySignatureLayer::new(ElevenLabs::new(SECRET).unwrap()).max_body_size(4096));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn post_with(
    addr: std::net::SocketAddr,
    signature: Option<String>,
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value, String) {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::post(format!("http://{addr}/webhooks/elevenlabs"));
    if let Some(signature) = signature {
        request = request.header("elevenlabs-signature", signature);
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = if content_type == "application/problem+json" {
        serde_json::from_slice(&bytes).unwrap()
    } else {
        serde_json::Value::String(String::from_utf8(bytes.to_vec()).unwrap())
    };
    (status, json, content_type)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn genuine_delivery_reaches_the_axum_handler() {
    let addr = serve().await;
    let signature = ElevenLabs::new(SECRET)
        .unwrap()
        .sign(now(), TRANSCRIPT.as_bytes());
    let v0 = signature.split_once("v0=").unwrap().1.to_owned();
    let (status, body, _) = post_with(addr, Some(signature), TRANSCRIPT.into()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, format!("\"req_1\" {v0}"));
}

#[tokio::test]
async fn rejections_are_problem_json_and_never_reach_the_handler() {
    let addr = serve().await;
    let scheme = ElevenLabs::new(SECRET).unwrap();

    let (status, json, content_type) = post_with(addr, None, TRANSCRIPT.into()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(json["code"], "missing_signature");

    let (status, json, _) = post_with(addr, Some("t=now,v0=zz".into()), TRANSCRIPT.into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["code"], "malformed_signature");

    let stale = scheme.sign(now() - 31 * 60, TRANSCRIPT.as_bytes());
    let (status, json, _) = post_with(addr, Some(stale), TRANSCRIPT.into()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["code"], "timestamp_stale");

    // Signed, then tampered with: the handler (which would unwrap the JSON) never runs.
    let signature = scheme.sign(now(), TRANSCRIPT.as_bytes());
    let tampered = TRANSCRIPT.replace("Hi", "Yo");
    let (status, json, _) = post_with(addr, Some(signature), tampered.into()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["code"], "signature_mismatch");
    assert!(!json.to_string().contains(SECRET));

    let big = vec![b' '; 5000];
    let signature = scheme.sign(now(), &big);
    let (status, json, _) = post_with(addr, Some(signature), big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json["code"], "payload_too_large");
}
