//! Shared by the examples: the secret, a sample delivery, and a self-test that plays the sender.

use std::{error::Error, net::SocketAddr, time::SystemTime};

use bytes::Bytes;
use hookgate::scheme::ElevenLabs;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

/// A speech-to-text delivery as ElevenLabs sends it.
pub(crate) const SAMPLE_TRANSCRIPT: &str = r#"{"type":"speech_to_text_transcription","event_timestamp":1739537297,"data":{"request_id":"example-request-1","webhook_metadata":{"job":"42"},"transcription":{"language_code":"en","language_probability":0.98,"text":"Hello world!","words":[{"text":"Hello","start":0.0,"end":0.5,"type":"word","speaker_id":"speaker_1","logprob":-0.1},{"text":" ","start":0.5,"end":0.5,"type":"spacing","speaker_id":"speaker_1","logprob":0.0},{"text":"world!","start":0.5,"end":1.2,"type":"word","speaker_id":"speaker_1","logprob":-0.2}]}}}"#;

/// The webhook secret from `ELEVENLABS_WEBHOOK_SECRET`, or a development secret (said loudly).
pub(crate) fn secret() -> String {
    match std::env::var("ELEVENLABS_WEBHOOK_SECRET") {
        Ok(secret) if !secret.is_empty() => secret,
        _ => {
            eprintln!(
                "ELEVENLABS_WEBHOOK_SECRET is not set: using the development secret \
                 \"dev-secret\". Never use it in production."
            );
            "dev-secret".to_owned()
        }
    }
}

/// Plays the sender against `addr`: one genuine delivery (must be 200) and one forged
/// (must be 401). Prints both answers.
pub(crate) async fn self_test(
    addr: SocketAddr,
    path: &str,
    scheme: &ElevenLabs,
) -> Result<(), Box<dyn Error>> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let url = format!("http://{addr}{path}");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs();

    let genuine = Request::post(&url)
        .header(
            "elevenlabs-signature",
            scheme.sign(now, SAMPLE_TRANSCRIPT.as_bytes()),
        )
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(SAMPLE_TRANSCRIPT.as_bytes())))?;
    let response = client.request(genuine).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!(
        "genuine delivery -> {status} {}",
        String::from_utf8_lossy(&body)
    );
    if status != StatusCode::OK {
        return Err(format!("genuine delivery answered {status}").into());
    }

    let forged = Request::post(&url)
        .header(
            "elevenlabs-signature",
            format!("t={now},v0={}", "0".repeat(64)),
        )
        .body(Full::new(Bytes::from_static(SAMPLE_TRANSCRIPT.as_bytes())))?;
    let response = client.request(forged).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!(
        "forged delivery  -> {status} {}",
        String::from_utf8_lossy(&body)
    );
    if status != StatusCode::UNAUTHORIZED {
        return Err(format!("forged delivery answered {status}").into());
    }
    Ok(())
}

/// `--once` runs the self-test and exits; otherwise the example keeps serving.
pub(crate) fn once() -> bool {
    std::env::args().any(|a| a == "--once")
}
