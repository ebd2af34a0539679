//! ElevenLabs specifics beyond the signature: the recommended onion as one layer
//! ([`ElevenLabsLayer`], features `signature`, `rate-limit` and `normalize`), the identity of a
//! delivered event and the published webhook egress addresses.

use serde::Deserialize;

#[cfg(all(feature = "signature", feature = "rate-limit", feature = "normalize"))]
mod layer;

#[cfg(all(feature = "signature", feature = "rate-limit", feature = "normalize"))]
pub use layer::{ElevenLabsLayer, ElevenLabsService};

/// The identity of a delivered ElevenLabs event, read leniently from the body: `data.request_id`
/// for speech-to-text transcriptions, `data.conversation_id` for conversation events
/// (`post_call_transcription`, `post_call_audio`, ...). `None` when the body is not JSON or
/// carries neither. Unknown fields are ignored and nothing else is validated, so a large
/// `full_audio` costs one pass of the JSON scanner and no allocation beyond the id.
///
/// ```
/// use hookgate::elevenlabs::event_id;
///
/// let body = br#"{"type":"speech_to_text_transcription","data":{"request_id":"req_123","transcription":{}}}"#;
/// assert_eq!(event_id(body).as_deref(), Some("req_123"));
/// assert_eq!(event_id(br#"{"type":"post_call_audio","data":{"conversation_id":"c1"}}"#).as_deref(), Some("c1"));
/// assert_eq!(event_id(b"not json"), None);
/// ```
#[must_use]
pub fn event_id(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Envelope {
        data: Option<Data>,
    }
    #[derive(Deserialize)]
    struct Data {
        request_id: Option<String>,
        conversation_id: Option<String>,
    }
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    let data = envelope.data?;
    data.request_id
        .or(data.conversation_id)
        .filter(|id| !id.is_empty())
}

/// The key a delivered ElevenLabs event is told apart by, read leniently from the body like
/// [`event_id`]: `data.request_id` for speech-to-text transcriptions; for conversation events,
/// `data.conversation_id` and the event's `type` joined by a dot, for a call's transcript
/// and its audio share one conversation id (`conv_1.post_call_transcription`,
/// `conv_1.post_call_audio`); `None` when the body carries neither (or no `type` beside a
/// conversation id).
///
/// Every delivery of one event has the same key, whatever its timestamp and signature: the
/// gateway's sink names an event's file by it, and deduplication
/// ([`DedupeKey::elevenlabs`](crate::dedupe::DedupeKey::elevenlabs)) claims it.
///
/// ```
/// use hookgate::elevenlabs::event_key;
///
/// let stt = br#"{"type":"speech_to_text_transcription","data":{"request_id":"req_123"}}"#;
/// assert_eq!(event_key(stt).as_deref(), Some("req_123"));
/// let audio = br#"{"type":"post_call_audio","data":{"conversation_id":"c1","full_audio":"SUQz"}}"#;
/// assert_eq!(event_key(audio).as_deref(), Some("c1.post_call_audio"));
/// assert_eq!(event_key(br#"{"data":{"conversation_id":"c1"}}"#), None);
/// ```
#[must_use]
pub fn event_key(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(rename = "type", borrow, default)]
        kind: Option<std::borrow::Cow<'a, str>>,
        data: Option<KeyData>,
    }
    let envelope: Envelope<'_> = serde_json::from_slice(body).ok()?;
    key_of(envelope.kind.as_deref(), envelope.data?)
}

/// [`event_key`] of a body read from `body` (one that arrived in several frames), without
/// joining it into one buffer first.
#[cfg(feature = "gateway")]
pub(crate) fn event_key_from_reader(body: impl std::io::Read) -> Option<String> {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(rename = "type", default)]
        kind: Option<String>,
        data: Option<KeyData>,
    }
    let envelope: Envelope = serde_json::from_reader(body).ok()?;
    key_of(envelope.kind.as_deref(), envelope.data?)
}

/// What [`event_key`] reads of `data`.
#[derive(Deserialize)]
struct KeyData {
    request_id: Option<String>,
    conversation_id: Option<String>,
}

fn key_of(kind: Option<&str>, data: KeyData) -> Option<String> {
    if let Some(id) = data.request_id.filter(|id| !id.is_empty()) {
        return Some(id);
    }
    let conversation = data.conversation_id.filter(|id| !id.is_empty())?;
    let kind = kind.filter(|kind| !kind.is_empty())?;
    Some(format!("{conversation}.{kind}"))
}

/// The static IPv4 addresses ElevenLabs sends webhooks from (US, EU, Asia, EU data residency,
/// India, Singapore), for an allow-list. Check ElevenLabs' documentation before relying on
/// them: they can change.
pub const EGRESS_IPS: [&str; 12] = [
    "34.67.146.145",
    "34.59.11.47",
    "35.204.38.71",
    "34.147.113.54",
    "35.185.187.110",
    "35.247.157.189",
    "34.77.234.246",
    "34.140.184.144",
    "34.93.26.174",
    "34.93.252.69",
    "34.87.23.17",
    "34.126.179.103",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_is_preferred_and_extra_fields_are_ignored() {
        let body = br#"{"type":"x","event_timestamp":1,"data":{"conversation_id":"c","request_id":"r","words":[1,2,{"a":null}]},"extra":true}"#;
        assert_eq!(event_id(body).as_deref(), Some("r"));
    }

    #[test]
    fn missing_empty_or_mistyped_ids_are_none() {
        assert_eq!(event_id(br#"{"type":"x"}"#), None);
        assert_eq!(event_id(br#"{"data":{}}"#), None);
        assert_eq!(event_id(br#"{"data":{"request_id":""}}"#), None);
        assert_eq!(event_id(br#"{"data":{"request_id":42}}"#), None);
        assert_eq!(event_id(b"\xff\xfe"), None);
        assert_eq!(event_id(b""), None);
    }

    #[test]
    fn event_keys_tell_a_calls_events_apart_and_ignore_the_rest() {
        let transcript = br#"{"type":"post_call_transcription","event_timestamp":1,"data":{"conversation_id":"c","agent_id":"a"}}"#;
        assert_eq!(
            event_key(transcript).as_deref(),
            Some("c.post_call_transcription")
        );
        let with_request_id = br#"{"type":"x","data":{"conversation_id":"c","request_id":"r"}}"#;
        assert_eq!(event_key(with_request_id).as_deref(), Some("r"));
        let escaped = br#"{"type":"post\u005fcall_audio","data":{"conversation_id":"c"}}"#;
        assert_eq!(event_key(escaped).as_deref(), Some("c.post_call_audio"));
        assert_eq!(
            event_key(br#"{"type":"","data":{"conversation_id":"c"}}"#),
            None
        );
        assert_eq!(
            event_key(br#"{"type":"t","data":{"conversation_id":""}}"#),
            None
        );
        assert_eq!(event_key(br#"{"type":"t","data":{"request_id":""}}"#), None);
        assert_eq!(event_key(br#"{"type":"t"}"#), None);
        assert_eq!(event_key(b"[]"), None);
    }

    /// Read in pieces, a body has the key it has in one buffer.
    #[cfg(feature = "gateway")]
    #[test]
    fn event_keys_read_from_a_reader_are_the_same() {
        let bodies: [&[u8]; 8] = [
            br#"{"type":"post_call_transcription","data":{"conversation_id":"c","agent_id":"a"}}"#,
            br#"{"type":"x","data":{"conversation_id":"c","request_id":"r"}}"#,
            br#"{"type":"post\u005fcall_audio","data":{"conversation_id":"c"}}"#,
            br#"{"type":"","data":{"conversation_id":"c"}}"#,
            br#"{"type":"t","data":{"request_id":""}}"#,
            br#"{"type":"t"} trailing"#,
            b"[]",
            b"",
        ];
        for body in bodies {
            let from_reader = event_key_from_reader(std::io::Read::chain(
                &body[..body.len() / 2],
                &body[body.len() / 2..],
            ));
            assert_eq!(
                from_reader,
                event_key(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn egress_ips_parse() {
        for ip in EGRESS_IPS {
            assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
        }
    }
}
