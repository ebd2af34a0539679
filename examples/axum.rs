//! An axum receiver for ElevenLabs speech-to-text webhooks, verified by hookgate.
//!
//! ```text
//! cargo run --example axum --features axum            # serves on 127.0.0.1:3000 after a self-test
//! cargo run --example axum --features axum -- --once  # self-test only, then exit (what CI runs)
//! ```
//!
//! The secret comes from `ELEVENLABS_WEBHOOK_SECRET` (a development secret otherwise). Try it by
//! hand with the signature `hookgate` prints on start, or read `examples/common/mod.rs`.

mod common;

use axum::{body::Bytes, http::StatusCode, routing::post, Extension, Router};
use hookgate::{scheme::ElevenLabs, Verified, VerifySignatureLayer};
use serde::Deserialize;

/// The parts of the delivery this handler uses; unknown fields are ignored, never denied.
#[derive(Deserialize)]
struct Delivery {
    #[serde(rename = "type")]
    kind: String,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    request_id: String,
    transcription: Transcription,
}

#[derive(Deserialize)]
struct Transcription {
    text: String,
}

/// Runs only for verified deliveries: `body` holds exactly the bytes ElevenLabs signed.
async fn transcript(Extension(verified): Extension<Verified>, body: Bytes) -> StatusCode {
    match serde_json::from_slice::<Delivery>(&body) {
        Ok(delivery) => {
            println!(
                "{} {} (signed at {}): {:?}",
                delivery.kind,
                delivery.data.request_id,
                verified.unix_timestamp(),
                delivery.data.transcription.text
            );
            // Store the event durably here, before answering 200.
            StatusCode::OK
        }
        // Genuine but not a transcript we understand: a permanent answer, not a retry loop.
        Err(_) => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scheme = ElevenLabs::new(common::secret())?;
    let app = Router::new()
        .route("/webhooks/elevenlabs", post(transcript))
        .layer(VerifySignatureLayer::new(scheme.clone()).max_body_size(32 << 20));

    let addr = if common::once() {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:3000"
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}/webhooks/elevenlabs");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    common::self_test(addr, "/webhooks/elevenlabs", &scheme).await?;
    if common::once() {
        return Ok(());
    }
    server.await??;
    Ok(())
}
