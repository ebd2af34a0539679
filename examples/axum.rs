//! An axum receiver for ElevenLabs speech-to-text webhooks, verified by hookgate.
//!
//! ```text
//! cargo run --example axum --features axum,elevenlabs            # serves on 127.0.0.1:3000 after a self-test
//! cargo run --example axum --features axum,elevenlabs -- --once  # self-test only, then exit (what CI runs)
//! ```
//!
//! The secret comes from `ELEVENLABS_WEBHOOK_SECRET` (a development secret otherwise). Try it by
//! hand with the signature `hookgate` prints on start, or read `examples/common/mod.rs`.

mod common;

use axum::{http::StatusCode, routing::post, Router};
use hookgate::{
    elevenlabs::{Event, VerifiedEvent},
    scheme::ElevenLabs,
    VerifySignatureLayer,
};

/// Runs only for verified deliveries that parse as an ElevenLabs event: a request the layer did
/// not verify is answered `500 verification_layer_missing`, a signed body that is not an event
/// `400 invalid_event`, both by the extractor, before this runs.
async fn webhook(
    VerifiedEvent {
        verified, event, ..
    }: VerifiedEvent,
) -> StatusCode {
    match &event {
        Event::SpeechToTextTranscription(stt) => {
            let text = stt
                .data
                .transcription
                .as_ref()
                .and_then(|t| t.transcripts().first()?.text.as_deref());
            println!(
                "{} {} (signed at {}): {text:?}",
                event.event_type(),
                event.event_id().unwrap_or("-"),
                verified.unix_timestamp(),
            );
        }
        // Other types, known or not (`Event::Unknown`), are events too: keep them all.
        other => println!(
            "{} (signed at {})",
            other.event_type(),
            verified.unix_timestamp()
        ),
    }
    // Store the event durably here, before answering 200.
    StatusCode::OK
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scheme = ElevenLabs::new(common::secret())?;
    let app = Router::new()
        .route("/webhooks/elevenlabs", post(webhook))
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
    println!(
        "{}",
        common::next_steps(&format!("http://{addr}/webhooks/elevenlabs"))
    );
    server.await??;
    Ok(())
}
