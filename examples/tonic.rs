//! A gRPC service and the ElevenLabs webhook on one server: tonic's routes (here the standard
//! `grpc.health.v1.Health` service, from `tonic-health`) merged into an axum router with the
//! webhook route. Only the webhook route is behind `VerifySignatureLayer` (gRPC clients do not
//! sign their calls); `NormalizeStatusLayer` wraps the whole server and leaves every gRPC
//! answer, `grpc-status` errors included, untouched.
//!
//! ```text
//! cargo run --example tonic --features axum,elevenlabs,normalize            # serves on 127.0.0.1:3002 after a self-test
//! cargo run --example tonic --features axum,elevenlabs,normalize -- --once  # self-test only, then exit (what CI runs)
//! ```
//!
//! The layers wrap an axum router here, so hookgate's `axum` feature is the one needed; its
//! `tonic` feature is for layering a tonic `Server` directly (`Server::builder().layer(..)`,
//! see `tests/verify_tonic.rs`). The secret comes from `ELEVENLABS_WEBHOOK_SECRET` (a
//! development secret otherwise).

mod common;

use std::{error::Error, net::SocketAddr};

use axum::{http::StatusCode, routing::post, Router};
use hookgate::{
    elevenlabs::{Event, VerifiedEvent},
    scheme::ElevenLabs,
    NormalizeStatusLayer, VerifySignatureLayer,
};
use tonic::{service::Routes, transport::Endpoint, Code};
use tonic_health::{
    pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest},
    server::health_reporter,
};

/// The gRPC service name the health service reports on.
const SERVICE: &str = "hookgate.example.Transcripts";

/// The webhook: runs only for verified deliveries that parse as an ElevenLabs event.
async fn webhook(
    VerifiedEvent {
        verified, event, ..
    }: VerifiedEvent,
) -> StatusCode {
    let text = match &event {
        Event::SpeechToTextTranscription(stt) => stt
            .data
            .transcription
            .as_ref()
            .and_then(|t| t.transcripts().first()?.text.as_deref()),
        _ => None,
    };
    println!(
        "webhook: {} {} (signed at {}): {text:?}",
        event.event_type(),
        event.event_id().unwrap_or("-"),
        verified.unix_timestamp()
    );
    // Store the event durably here, before answering 200.
    StatusCode::OK
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let scheme = ElevenLabs::new(common::secret())?;

    // The gRPC side: tonic's routes, as an axum router.
    let (reporter, health) = health_reporter();
    reporter
        .set_service_status(SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    let grpc = Routes::new(health).prepare().into_axum_router();

    // The webhook side: verification on this route only.
    let webhooks = Router::new()
        .route("/webhooks/elevenlabs", post(webhook))
        .layer(VerifySignatureLayer::new(scheme.clone()).max_body_size(64 << 20));

    // One server for both; the sender's contract outermost (gRPC passes through it untouched).
    let app = grpc
        .merge(webhooks)
        .layer(NormalizeStatusLayer::elevenlabs());

    let addr = if common::once() {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:3002"
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!("listening on {addr}: gRPC grpc.health.v1.Health and POST /webhooks/elevenlabs");
    // axum serves HTTP/1.1 and HTTP/2 (gRPC's h2c) on the same port.
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // A signed delivery (200) and a forged one (401), then real gRPC calls.
    common::self_test(addr, "/webhooks/elevenlabs", &scheme).await?;
    grpc_self_test(addr).await?;

    if common::once() {
        return Ok(());
    }
    print_next_steps(addr);
    server.await??;
    Ok(())
}

/// Calls the health service over gRPC: the service is `SERVING`, and an unknown one is the
/// service's own `NOT_FOUND` status, which no hookgate layer turned into anything else.
async fn grpc_self_test(addr: SocketAddr) -> Result<(), Box<dyn Error>> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = HealthClient::new(channel);

    let answer = client
        .check(HealthCheckRequest {
            service: SERVICE.to_owned(),
        })
        .await?
        .into_inner();
    println!("gRPC Health/Check {SERVICE} -> {:?}", answer.status());
    if answer.status() != ServingStatus::Serving {
        return Err(format!("gRPC health answered {:?}", answer.status()).into());
    }

    let status = client
        .check(HealthCheckRequest {
            service: "no.such.Service".to_owned(),
        })
        .await
        .err()
        .ok_or("gRPC health knew a service that does not exist")?;
    println!(
        "gRPC Health/Check no.such.Service -> {:?} {:?}",
        status.code(),
        status.message()
    );
    if status.code() != Code::NotFound {
        return Err(format!("gRPC error status changed on the way: {status:?}").into());
    }
    Ok(())
}

/// What to try by hand while the server runs.
fn print_next_steps(addr: SocketAddr) {
    let env = match std::env::var("ELEVENLABS_WEBHOOK_SECRET") {
        Ok(secret) if !secret.is_empty() => String::new(),
        _ => "ELEVENLABS_WEBHOOK_SECRET=dev-secret ".to_owned(),
    };
    println!(
        "\nTry it:\n\
         \x20 # a signed delivery, retried on the ElevenLabs schedule until answered 200\n\
         \x20 {env}cargo run --features cli -- send --url http://{addr}/webhooks/elevenlabs\n\
         \x20 # or sign a body yourself and POST it\n\
         \x20 echo -n '{{\"type\":\"voice_removed\",\"data\":{{}}}}' > body.json\n\
         \x20 sig=$({env}cargo run -q --features cli -- sign < body.json)\n\
         \x20 curl -i http://{addr}/webhooks/elevenlabs -H \"elevenlabs-signature: $sig\" --data-binary @body.json\n\
         \x20 # the gRPC side\n\
         \x20 grpc_health_probe -addr={addr} -service={SERVICE}"
    );
}
