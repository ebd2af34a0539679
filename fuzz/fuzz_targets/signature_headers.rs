//! Fuzzes the signature header parsers of every scheme: arbitrary header bytes and bodies must
//! produce an answer (verified or a `VerifyError`), never a panic.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use hookgate::scheme::{ElevenLabs, Scheme, StandardWebhooks};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: how many bytes form the header value; the rest is the body.
    let Some((&split, rest)) = data.split_first() else { return };
    let (value, body) = rest.split_at((split as usize).min(rest.len()));
    let Ok(value) = HeaderValue::from_bytes(value) else { return };
    let now = UNIX_EPOCH + Duration::from_secs(1_600_000_000);

    let mut headers = HeaderMap::new();
    headers.insert(ElevenLabs::HEADER, value.clone());
    let elevenlabs = ElevenLabs::new("fuzz").unwrap();
    let _ = elevenlabs.verify(&headers, body, now);

    let mut headers = HeaderMap::new();
    headers.insert(StandardWebhooks::ID_HEADER, HeaderValue::from_static("msg_1"));
    headers.insert(StandardWebhooks::TIMESTAMP_HEADER, HeaderValue::from_static("1600000000"));
    headers.insert(StandardWebhooks::SIGNATURE_HEADER, value);
    let standard = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let _ = standard.verify(&headers, body, now);
});
