//! Shared by the examples: the secret, a sample delivery, and a self-test that plays the sender.

use std::{error::Error, net::SocketAddr, time::SystemTime};

use bytes::Bytes;
use hookgate::scheme::ElevenLabs;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

/// A speech-to-text delivery as ElevenLabs sends it.
pub(crate) const SAMPLE_TRANSCRIPT: &str = r#"{"type":"speech_to_text_transcription","event_timestamp":1739537297,"data":{"request_id":"example-request-1","webhook_metadata":{"job":"42"},"transcription":{"language_code":"en","language_probability":0.98,"text":"Hello world!","words":[{"text":"Hello","start":0.0,"end":0.5,"type":"word","speaker_id":"speaker_1","logprob":-0.1},{"text":" ","start":0.5,"end":0.5,"type":"spacing","speaker_id":"speaker_1","logprob":0.0},{"text":"world!","start":0.5,"end":1.2,"type":"word","speaker_id":"speaker_1","logprob":-0.2}]}}}"#;

/// The variable holding the webhook secret(s), comma-separated (the first one signs).
const SECRET_ENV: &str = "ELEVENLABS_WEBHOOK_SECRET";

/// Where `hookgate serve` keeps the development secret it creates when none is configured
/// (`DEV_SECRET_FILE` in src/bin/hookgate/secrets.rs, which .ci/deploy-check keeps it equal to).
const DEV_SECRET_FILE: &str = ".hookgate-dev-secret";

/// Where the examples' secret came from: the one `hookgate send` and `hookgate sign` find when
/// run in the same directory, in the same order, so their deliveries verify here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SecretSource {
    /// `ELEVENLABS_WEBHOOK_SECRET` in the environment.
    Environment,
    /// `ELEVENLABS_WEBHOOK_SECRET` in the working directory's `.env`.
    DotEnv,
    /// The development secret of `hookgate serve`, in `.hookgate-dev-secret`.
    GatewayDevelopment,
    /// None of them: the fixed `dev-secret`, which `hookgate` only uses when told to.
    Fallback,
}

/// The fixed secret used when nothing else is configured.
const FALLBACK_SECRET: &str = "dev-secret";

/// The first secret of a list as `hookgate` reads one (comma- or line-separated, each maybe
/// followed by ` expires=...`).
fn first_secret(list: &str) -> Option<String> {
    list.split([',', '\n'])
        .filter_map(|item| item.split_whitespace().next())
        .next()
        .map(str::to_owned)
}

/// `ELEVENLABS_WEBHOOK_SECRET`'s value in a dotenv file's text (its first one, as `hookgate`
/// reads it), quotes removed.
fn dotenv_secret(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line.split_once('=')?;
        if key.trim() != SECRET_ENV {
            return None;
        }
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        Some(unquoted.to_owned())
    })
}

/// The secret and where it came from: `ELEVENLABS_WEBHOOK_SECRET` (environment, then `./.env`),
/// else the development secret `hookgate serve` created in this directory, else `dev-secret`.
fn find_secret() -> (String, SecretSource) {
    if let Ok(list) = std::env::var(SECRET_ENV) {
        if let Some(secret) = first_secret(&list) {
            return (secret, SecretSource::Environment);
        }
    }
    if let Some(secret) = std::fs::read_to_string(".env")
        .ok()
        .and_then(|text| dotenv_secret(&text))
        .and_then(|list| first_secret(&list))
    {
        return (secret, SecretSource::DotEnv);
    }
    if let Some(secret) = std::fs::read_to_string(DEV_SECRET_FILE)
        .ok()
        .and_then(|text| first_secret(&text))
    {
        return (secret, SecretSource::GatewayDevelopment);
    }
    (FALLBACK_SECRET.to_owned(), SecretSource::Fallback)
}

/// The webhook secret: the one `hookgate send` and `hookgate sign` use in this directory
/// (`ELEVENLABS_WEBHOOK_SECRET` from the environment or `./.env`, else the development secret
/// of `hookgate serve` in `./.hookgate-dev-secret`), else `dev-secret` (said loudly).
pub(crate) fn secret() -> String {
    let (secret, source) = find_secret();
    match source {
        SecretSource::Environment => {}
        SecretSource::DotEnv => eprintln!("using {SECRET_ENV} from ./.env"),
        SecretSource::GatewayDevelopment => eprintln!(
            "{SECRET_ENV} is not set: using the development secret of `hookgate serve` in \
             ./{DEV_SECRET_FILE}. Never use it in production."
        ),
        SecretSource::Fallback => eprintln!(
            "{SECRET_ENV} is not set: using the development secret \"{FALLBACK_SECRET}\". \
             Never use it in production."
        ),
    }
    secret
}

/// What to run to send this example a signed delivery by hand, with the secret it uses.
/// `url` is where it receives deliveries.
#[allow(dead_code)] // each example that serves calls it
pub(crate) fn next_steps(url: &str) -> String {
    let (_, source) = find_secret();
    let mut text = String::from("try it from another terminal, in this directory");
    text.push_str(match source {
        SecretSource::Environment => {
            " (with the same ELEVENLABS_WEBHOOK_SECRET in its environment):\n"
        }
        SecretSource::DotEnv => " (hookgate reads ./.env too):\n",
        SecretSource::GatewayDevelopment => " (hookgate finds ./.hookgate-dev-secret too):\n",
        SecretSource::Fallback => ":\n  export ELEVENLABS_WEBHOOK_SECRET=dev-secret\n",
    });
    text.push_str(&format!(
        "  hookgate send --url {url}\n\
         or by hand:\n  \
         printf '%s' '{{\"type\":\"ping\"}}' > body.json   # any body; hookgate send's is a transcript\n  \
         curl -H \"ElevenLabs-Signature: $(hookgate sign < body.json)\" --data-binary @body.json {url}\n\
         (hookgate: `cargo install --path . --features cli`, or `cargo run --features cli --` here)"
    ));
    text
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
