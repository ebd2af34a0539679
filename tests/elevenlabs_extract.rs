//! The verified-event extractors: `VerifiedEvent` and `VerifiedJson` on an axum router served on
//! loopback and called by a real hyper client, and `verified_event` / `verified_json` behind the
//! real `VerifySignatureLayer` in a plain tower service.

use std::{
    convert::Infallible,
    net::SocketAddr,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{routing::post, Router};
use bytes::Bytes;
use hookgate::{
    elevenlabs::{verified_event, verified_json, Event, VerifiedEvent, VerifiedJson},
    problem::{ProblemCode, ResponseForm},
    scheme::ElevenLabs,
    signature::VerifiedBody,
    VerifySignatureLayer,
};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tower::{ServiceBuilder, ServiceExt};

const SECRET: &str = "whsec_extract";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/elevenlabs/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn scheme() -> ElevenLabs {
    ElevenLabs::new(SECRET).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// What the handlers answer: the event's type, id and timestamps, so the client can check
/// what was extracted.
async fn typed(
    VerifiedEvent {
        verified, event, ..
    }: VerifiedEvent,
) -> String {
    let timestamp = event.event_timestamp().and_then(|t| t.unix_secs());
    let unknown = matches!(event, Event::Unknown(_));
    format!(
        "{} {} {timestamp:?} signed={} unknown={unknown}",
        event.event_type(),
        event.event_id().unwrap_or("-"),
        verified.unix_timestamp(),
    )
}

#[derive(Deserialize)]
struct Delivery {
    #[serde(rename = "type")]
    kind: String,
    data: DeliveryData,
}

#[derive(Deserialize)]
struct DeliveryData {
    request_id: String,
}

async fn json(
    VerifiedJson {
        verified, value, ..
    }: VerifiedJson<Delivery>,
) -> String {
    format!(
        "{} {} signed={}",
        value.kind,
        value.data.request_id,
        verified.unix_timestamp()
    )
}

/// `/verified/*` behind the layer; `/unverified` added to the router after it (so outside it:
/// the mis-ordering the extractor must catch).
async fn serve() -> SocketAddr {
    let app = Router::new()
        .route("/verified/event", post(typed))
        .route("/verified/json", post(json))
        .layer(VerifySignatureLayer::new(scheme()))
        .route("/unverified", post(typed));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// POSTs `frames` (one body, in these frames) with `headers` on a new connection.
async fn post_frames(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, String)],
    frames: Vec<Bytes>,
) -> (StatusCode, HeaderMap, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::post(path).header("host", "localhost");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let body = StreamBody::new(futures_util::stream::iter(
        frames
            .into_iter()
            .map(|frame| Ok::<_, Infallible>(http_body::Frame::data(frame))),
    ));
    let response = sender
        .send_request(request.body(body).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// POSTs `body` signed now with the test secret.
async fn deliver(addr: SocketAddr, path: &str, body: &[u8]) -> (StatusCode, HeaderMap, String) {
    let signature = scheme().sign(now(), body);
    post_frames(
        addr,
        path,
        &[("elevenlabs-signature", signature)],
        vec![Bytes::copy_from_slice(body)],
    )
    .await
}

fn problem(headers: &HeaderMap, body: &str) -> serde_json::Value {
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "{body}"
    );
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn a_verified_transcript_is_extracted_typed() {
    let addr = serve().await;
    let body = fixture("speech_to_text_transcription.json");
    let (status, _, answer) = deliver(addr, "/verified/event", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let signed = now();
    let (head, tail) = answer.split_once(" signed=").unwrap();
    assert_eq!(
        head,
        "speech_to_text_transcription some-request-id-123 Some(1739537297)"
    );
    let (signed_at, unknown) = tail.split_once(' ').unwrap();
    assert!(signed_at.parse::<u64>().unwrap().abs_diff(signed) <= 5);
    assert_eq!(unknown, "unknown=false");
}

#[tokio::test]
async fn a_body_in_several_frames_is_extracted_whole() {
    let addr = serve().await;
    let body = fixture("post_call_transcription.json");
    let signature = scheme().sign(now(), &body);
    let frames = body
        .chunks(7)
        .map(Bytes::copy_from_slice)
        .collect::<Vec<_>>();
    assert!(frames.len() > 2);
    let (status, _, answer) = post_frames(
        addr,
        "/verified/event",
        &[("elevenlabs-signature", signature)],
        frames,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer.starts_with("post_call_transcription "), "{answer}");
}

#[tokio::test]
async fn an_unknown_event_type_is_still_extracted() {
    let addr = serve().await;
    let body = fixture("unknown_type.json");
    let (status, _, answer) = deliver(addr, "/verified/event", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        answer.starts_with("post_call_transcription_otel conv_otel Some(1739539000) signed="),
        "{answer}"
    );
    assert!(answer.ends_with(" unknown=true"), "{answer}");
}

#[tokio::test]
async fn signed_garbage_is_a_400_problem() {
    let addr = serve().await;
    for garbage in [&b"not json at all"[..], b"", b"[1,2,3]", br#"{"data":{}}"#] {
        let (status, headers, answer) = deliver(addr, "/verified/event", garbage).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        let json = problem(&headers, &answer);
        assert_eq!(json["code"], "invalid_event");
        assert_eq!(json["status"], 400);
        assert!(
            json["detail"]
                .as_str()
                .unwrap()
                .starts_with("the verified body is not an ElevenLabs webhook event"),
            "{json}"
        );
    }
}

#[tokio::test]
async fn json_of_your_own_type_is_extracted_and_another_shape_is_a_400() {
    let addr = serve().await;
    let body = fixture("speech_to_text_transcription.json");
    let (status, _, answer) = deliver(addr, "/verified/json", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        answer.starts_with("speech_to_text_transcription some-request-id-123 signed="),
        "{answer}"
    );

    // A genuine event, but not the shape the handler reads (no `data.request_id`).
    let body = fixture("post_call_transcription.json");
    let (status, headers, answer) = deliver(addr, "/verified/json", &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let json = problem(&headers, &answer);
    assert_eq!(json["code"], "invalid_event");
    assert!(
        json["detail"].as_str().unwrap().contains("request_id"),
        "{json}"
    );
}

#[tokio::test]
async fn a_route_outside_the_layer_is_a_loud_500_never_a_pass() {
    let addr = serve().await;
    let body = fixture("speech_to_text_transcription.json");
    // Signed or not, the route outside the layer must not hand anything on.
    for signed in [true, false] {
        let headers = if signed {
            vec![("elevenlabs-signature", scheme().sign(now(), &body))]
        } else {
            Vec::new()
        };
        let (status, headers, answer) = post_frames(
            addr,
            "/unverified",
            &headers,
            vec![Bytes::from(body.clone())],
        )
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
        let json = problem(&headers, &answer);
        assert_eq!(
            json["code"],
            ProblemCode::VERIFICATION_LAYER_MISSING.as_str()
        );
        assert_eq!(json["status"], 500);
        let detail = json["detail"].as_str().unwrap();
        assert!(
            detail.contains("VerifySignatureLayer is missing in front of this handler"),
            "{detail}"
        );
    }
}

#[tokio::test]
async fn a_grpc_client_is_answered_in_grpc_form() {
    let addr = serve().await;
    let (status, headers, answer) = post_frames(
        addr,
        "/unverified",
        &[("content-type", "application/grpc".to_owned())],
        vec![Bytes::from_static(b"{}")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["grpc-status"], "13", "INTERNAL");
    assert!(
        headers["grpc-message"]
            .to_str()
            .unwrap()
            .starts_with("verification_layer_missing: "),
        "{headers:?}"
    );
    assert!(answer.is_empty());
}

// --- a plain tower service, behind the real layer ---

async fn tower_handler(
    mut request: Request<VerifiedBody>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let form = ResponseForm::of(request.headers());
    if request.uri().path() == "/json" {
        return Ok(match verified_json::<Delivery>(&mut request) {
            Ok((_, delivery)) => Response::new(Full::from(delivery.data.request_id)),
            Err(problem) => problem.into_response_for(form),
        });
    }
    Ok(match verified_event(&mut request) {
        Ok((verified, event)) => Response::new(Full::from(format!(
            "{} {} {}",
            event.event_type(),
            event.event_id().unwrap_or("-"),
            verified.is_timestamp_signed()
        ))),
        Err(problem) => problem.into_response_for(form),
    })
}

async fn call_tower(path: &str, body: &[u8], layered: bool) -> (StatusCode, HeaderMap, String) {
    let request = Request::post(path)
        .header("elevenlabs-signature", scheme().sign(now(), body))
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let response = if layered {
        ServiceBuilder::new()
            .layer(VerifySignatureLayer::new(scheme()))
            .service_fn(tower_handler)
            .oneshot(request)
            .await
            .unwrap()
    } else {
        // The layer forgotten: the handler still gets a `VerifiedBody`, built by hand.
        let request = request.map(|_| VerifiedBody::from_bytes(Bytes::copy_from_slice(body)));
        tower::service_fn(tower_handler)
            .oneshot(request)
            .await
            .unwrap()
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn tower_a_verified_transcript_is_extracted_typed() {
    let body = fixture("speech_to_text_transcription.json");
    let (status, _, answer) = call_tower("/event", &body, true).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        "speech_to_text_transcription some-request-id-123 true"
    );

    let (status, _, answer) = call_tower("/json", &body, true).await;
    assert_eq!(
        (status, answer.as_str()),
        (StatusCode::OK, "some-request-id-123")
    );
}

#[tokio::test]
async fn tower_an_unknown_event_type_is_still_extracted() {
    let body = fixture("unknown_type.json");
    let (status, _, answer) = call_tower("/event", &body, true).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, "post_call_transcription_otel conv_otel true");
}

#[tokio::test]
async fn tower_signed_garbage_is_a_400_problem() {
    for (path, body) in [
        ("/event", &b"{not json"[..]),
        ("/event", br#"{"type":["a"]}"#),
        ("/json", br#"{"type":"voice_removed","data":{}}"#),
    ] {
        let (status, headers, answer) = call_tower(path, body, true).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {answer}");
        assert_eq!(problem(&headers, &answer)["code"], "invalid_event");
    }
}

#[tokio::test]
async fn tower_without_the_layer_is_a_loud_500() {
    let body = fixture("speech_to_text_transcription.json");
    for path in ["/event", "/json"] {
        let (status, headers, answer) = call_tower(path, &body, false).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
        let json = problem(&headers, &answer);
        assert_eq!(json["code"], "verification_layer_missing");
        assert!(json["detail"]
            .as_str()
            .unwrap()
            .contains("VerifySignatureLayer is missing in front of this handler"));
    }
}
