//! VerifySignatureLayer in front of a real tonic gRPC server, called by a real tonic client.
#![cfg(all(feature = "signature", feature = "tonic"))]

use std::time::{SystemTime, UNIX_EPOCH};

use hookgate::{scheme::ElevenLabs, VerifySignatureLayer};
use tokio::net::TcpListener;
use tonic::{
    metadata::MetadataValue,
    transport::{server::TcpIncoming, Server},
    Code, Request,
};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

const SECRET: &str = "grpc-secret";

/// The exact bytes a tonic client sends for `HealthCheckRequest { service: "hookgate" }`: the
/// gRPC length-prefixed frame (no compression, 10 bytes) around the protobuf encoding.
const FRAME: &[u8] = b"\x00\x00\x00\x00\x0a\x0a\x08hookgate";

async fn serve() -> std::net::SocketAddr {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("hookgate", tonic_health::ServingStatus::Serving)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        Server::builder()
            .layer(VerifySignatureLayer::new(ElevenLabs::new(SECRET).unwrap()))
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    addr
}

fn signature_for(secret: &str) -> MetadataValue<tonic::metadata::Ascii> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    ElevenLabs::new(secret)
        .unwrap()
        .sign(now, FRAME)
        .parse()
        .unwrap()
}

#[tokio::test]
async fn signed_grpc_call_is_served() {
    let addr = serve().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::with_interceptor(channel, |mut request: Request<()>| {
        request
            .metadata_mut()
            .insert("elevenlabs-signature", signature_for(SECRET));
        Ok(request)
    });
    let response = client
        .check(HealthCheckRequest {
            service: "hookgate".into(),
        })
        .await
        .expect("a signed call is served");
    assert_eq!(response.get_ref().status(), ServingStatus::Serving);
}

#[tokio::test]
async fn unsigned_and_forged_grpc_calls_are_unauthenticated() {
    let addr = serve().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "hookgate".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().starts_with("missing_signature"),
        "{status:?}"
    );

    let mut forged = HealthClient::with_interceptor(channel, |mut request: Request<()>| {
        request
            .metadata_mut()
            .insert("elevenlabs-signature", signature_for("wrong-secret"));
        Ok(request)
    });
    let status = forged
        .check(HealthCheckRequest {
            service: "hookgate".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().starts_with("signature_mismatch"),
        "{status:?}"
    );
}
