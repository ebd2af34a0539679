//! ElevenLabs specifics beyond the signature: the recommended onion as one layer
//! (`ElevenLabsLayer`, features `signature`, `rate-limit` and `normalize`), the identity of a
//! delivered event, the published webhook egress addresses, and the typed events (`Event`,
//! feature `elevenlabs`).
//!
//! # Typed events (feature `elevenlabs`)
//!
//! Every ElevenLabs webhook is the envelope `{"type", "event_timestamp", "data"}`. `Event` is
//! that envelope with `data` typed by `type`: `speech_to_text_transcription`,
//! `post_call_transcription`, `post_call_audio`, `call_initiation_failure`,
//! `voice_removal_notice`, `voice_removal_notice_withdrawn`, `voice_removed`, and `Unknown` for
//! any other type. Parse the exact bytes received, once the signature has been verified:
//!
//! ```
//! # #[cfg(feature = "elevenlabs")] {
//! use hookgate::elevenlabs::{Event, WordKind};
//!
//! let body = br#"{
//!   "type": "speech_to_text_transcription",
//!   "event_timestamp": 1739537297,
//!   "data": {
//!     "request_id": "some-request-id-123",
//!     "webhook_metadata": {"job": "42"},
//!     "transcription": {
//!       "language_code": "en", "language_probability": 0.98, "text": "Hello world!",
//!       "words": [
//!         {"text": "Hello", "start": 0.0, "end": 0.5, "type": "word", "speaker_id": "speaker_1", "logprob": -0.1},
//!         {"text": " ", "start": 0.5, "end": 0.5, "type": "spacing", "speaker_id": "speaker_1", "logprob": 0.0},
//!         {"text": "world!", "start": 0.5, "end": 1.2, "type": "word", "speaker_id": "speaker_1", "logprob": -0.2}
//!       ]
//!     }
//!   }
//! }"#;
//!
//! let event = Event::from_slice(body).unwrap();
//! assert_eq!(event.event_id(), Some("some-request-id-123"));
//! match &event {
//!     Event::SpeechToTextTranscription(stt) => {
//!         let transcription = stt.data.transcription.as_ref().unwrap();
//!         let words: Vec<&str> = transcription.transcripts()[0]
//!             .words()
//!             .iter()
//!             .filter(|w| w.kind == Some(WordKind::Word))
//!             .filter_map(|w| w.text.as_deref())
//!             .collect();
//!         assert_eq!(words, ["Hello", "world!"]);
//!         let metadata = stt.data.webhook_metadata.as_ref().unwrap().to_object().unwrap();
//!         assert_eq!(metadata["job"], "42");
//!     }
//!     Event::PostCallTranscription(call) => {
//!         let _summary = call.data.analysis.as_ref().and_then(|a| a.transcript_summary.as_deref());
//!     }
//!     Event::PostCallAudio(audio) => {
//!         // Decodes in 48 KiB pieces, straight into the file.
//!         # let mut file = std::io::sink();
//!         if let Some(mp3) = &audio.data.full_audio {
//!             mp3.decode_to(&mut file).unwrap();
//!         }
//!     }
//!     Event::CallInitiationFailure(failure) => {
//!         let _reason = failure.data.failure_reason.as_ref().map(|r| r.as_str());
//!     }
//!     Event::Unknown(unknown) => {
//!         // A type this version does not know: stored, not refused.
//!         let _ = (&unknown.event_type, &unknown.data);
//!     }
//!     _ => {} // the voice removal events, and types added later
//! }
//! # }
//! ```
//!
//! ## In a handler: verified, then typed
//!
//! Behind [`VerifySignatureLayer`](crate::VerifySignatureLayer), an axum handler takes a
//! `VerifiedEvent` (features `elevenlabs` and `axum`): the [`Verified`](crate::Verified) proof
//! and the event, parsed from the verified bytes. A plain tower or hyper service calls
//! `verified_event(&mut request)` (features `elevenlabs` and `signature`), which borrows the
//! event from the body. Both refuse a request the layer did not verify (`500
//! verification_layer_missing`, logged at `error`: the layer is missing in front of the handler)
//! and a signed body that is not an event (`400 invalid_event`); `VerifiedJson<T>` and
//! `verified_json` do the same for a type of your own.
//!
//! ## What is lenient, and why
//!
//! A parse that fails leaves a handler two bad answers: a 4xx, which tells ElevenLabs to drop
//! the event for good, or a 5xx for a delivery that will never parse. So, like the official SDKs'
//! models, the types accept what ElevenLabs adds or changes, and lose nothing:
//!
//! - **Unknown types** are an `Event::Unknown` holding the `type`, the timestamp and the `data`
//!   as a `serde_json::Value`.
//! - **Unknown fields** go into the `extra` map every struct has (the envelope too), and are
//!   written back by `Serialize`: parsing then serializing keeps them.
//! - **Every field is an `Option`**: missing and `null` are both `None`. A missing or `null`
//!   `data` is the default (every field `None`).
//! - **A known field whose value has another JSON type** than the documented one is `None`, and
//!   the value is kept as received in `extra` under its name. An array with one element of the
//!   wrong type is kept whole that way. A `data` that is not an object is kept in the envelope's
//!   `extra`.
//! - **Numbers**: seconds, probabilities and costs are `f64` and accept integers and floats;
//!   indices, offsets, status codes and Unix times are `i64` and accept integers and floats
//!   without a fraction (`2.0`), anything else going to `extra`.
//! - **Enumerations** (a word's `type`, a turn's `role`, `failure_reason`) have an `Other`
//!   variant holding any value not documented.
//!
//! What is an error: bytes that are not JSON, a top level that is not an object, and an object
//! without a string `type` (unless it is the bare transcription object below). What is not kept:
//! the difference between a known field that was `null` and one that was missing (both are left
//! out when serializing), the keys' order, and a number's spelling (`0` may come back `0.0`).
//!
//! ## Where ElevenLabs' documents disagree, both are accepted
//!
//! - `event_timestamp`: the examples give an integer of Unix seconds, the field tables say
//!   "string"; it is absent from the speech-to-text example. A `Timestamp` holds a number or a
//!   string as received; `Timestamp::unix_secs` reads numbers, numeric strings and RFC 3339.
//! - `webhook_metadata` is an object or a string (`WebhookMetadata`).
//! - The speech-to-text type: `speech_to_text_transcription` in the payloads, but one how-to
//!   tests `speech_to_text.completed`; both are `Event::SpeechToTextTranscription` (serialized
//!   back with the first name).
//! - An older revision delivered the bare transcription object, without the envelope: an object
//!   with no `type` and a `words` or `transcripts` array reads as a `speech_to_text_transcription`
//!   (serialized back in the envelope).
//! - A word's `logprob` is required by the API but missing from the documentation's examples.
//! - A transcription is one transcript or, with `transcripts`, one per channel (`Transcription`).
//! - The voice removal events are documented without their `data`: it is kept whole
//!   (`VoiceRemoval`).
//!
//! ## Memory, and big bodies
//!
//! `Event::from_slice` borrows every string from the bytes (words, speaker ids, the base64 audio)
//! unless it holds an escape sequence (`\"`, `\u00e9`), which serde_json must unescape into a copy:
//! an hour-long transcript costs its words' structs, not a second copy of its text. Keys may come
//! in any order: a `data` before `type` is skipped and the bytes read a second time, rather than
//! held as an untyped tree. `Event::into_owned` copies the borrowed strings, to keep an event
//! past its body's lifetime; `Event::from_reader` copies everything.
//!
//! A `post_call_audio` body is several megabytes of base64 (`transfer-encoding: chunked`). The
//! event holds it once: as `Base64Audio`, borrowed from the body. `Base64Audio::decode_to`
//! decodes it 64 KiB of text at a time into a 48 KiB buffer, written out before the next: 112 KiB
//! whatever the audio's size, so the MP3 never sits whole in memory next to its base64.
//! `Base64Audio::decode` returns the bytes in one `Vec`, sized once. serde_json needs the body
//! contiguous: `VerifiedBody::to_bytes` joins the frames of a body that arrived in several (a
//! copy, while the `VerifiedBody` still holds the frames: drop it before parsing). Mind the
//! verification layer's body cap too (64 MiB by default): an hour of 64 kbit/s MP3 is 28 MiB,
//! 38 MiB as base64.
//! Measured on a 32 MiB body (`tests/elevenlabs_audio_memory.rs`): parsing raises the peak
//! resident set by under a megabyte (no copy), `decode_to` by 40 KiB, `decode` by the decoded
//! audio's size, and `into_owned` by the base64's size.
//!
//! ## Speed
//!
//! On an hour-long transcript (5 MiB: 10k words, as many spacings, 65k characters, all with
//! their timing) the typed parse runs about five times as fast as parsing the same bytes into a
//! `serde_json::Value`, in about 2.2 times the instructions serde_json needs to only scan them;
//! copying its strings (`into_owned`) costs another half. Most of the rest is serde_json's own
//! reading of numbers and strings (`benches/events.rs`).

use std::{borrow::Cow, fmt};

use serde::{de, Deserialize, Deserializer};

#[cfg(feature = "elevenlabs")]
mod event;
#[cfg(all(feature = "elevenlabs", any(feature = "signature", feature = "axum")))]
mod extract;
#[cfg(all(feature = "signature", feature = "rate-limit", feature = "normalize"))]
mod layer;

#[cfg(feature = "elevenlabs")]
pub use event::{
    AdditionalFormat, Analysis, Base64Audio, CallInitiationFailure, CallMetadata, Character,
    ConversationInitiationClientData, DecodeError, Entity, Envelope, Event, FailureBody,
    FailureMetadata, FailureReason, MultichannelTranscript, PostCallAudio, PostCallTranscription,
    Role, SipFailure, SpeechToTextTranscription, Timestamp, ToolCall, ToolResult, Transcript,
    Transcription, Turn, TwilioFailure, UnknownEvent, VoiceRemoval, WebhookMetadata, Word,
    WordKind,
};

#[cfg(all(feature = "elevenlabs", feature = "signature"))]
pub use extract::{verified_event, verified_json};
#[cfg(all(feature = "elevenlabs", feature = "axum"))]
pub use extract::{EventRejection, VerifiedEvent, VerifiedJson};

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
/// A non-empty `request_id` decides the key as soon as it is read: the rest of the body is not
/// looked at, so a speech-to-text event (whose `request_id` comes first in `data`) costs a
/// few dozen bytes of reading, not a scan of its transcript. Without one the whole body is
/// read, and must be one JSON value.
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
    event_key_text(body).map(Cow::into_owned)
}

/// [`event_key`], borrowed from the body where the JSON has no escapes: read with a borrowed
/// struct (no JSON tree, no copy of the strings), each field leniently (a field of another
/// type reads as missing and never fails the rest).
pub(crate) fn event_key_text(body: &[u8]) -> Option<Cow<'_, str>> {
    read_key(serde_json::Deserializer::from_slice(body))
}

/// [`event_key`] of a body read from `body` (one that arrived in several frames), without
/// joining it into one buffer first.
#[cfg(feature = "gateway")]
pub(crate) fn event_key_from_reader(body: impl std::io::Read) -> Option<String> {
    read_key(serde_json::Deserializer::from_reader(body))
}

/// Reads an event's key from the one JSON value `json` holds. A non-empty `data.request_id`
/// decides the key whatever follows it, so reading stops there: a speech-to-text event, whose
/// `request_id` comes first in `data`, costs the few bytes before it rather than a scan of its
/// whole transcript. (What follows is then not checked to be JSON: the body is the signed
/// sender's, and the key is read leniently anyway.) Otherwise the whole value is read.
fn read_key<'de, T, R>(mut json: serde_json::Deserializer<R>) -> Option<T>
where
    T: JsonText<'de> + AsRef<str> + From<String>,
    R: serde_json::de::Read<'de>,
{
    let mut parts = KeyParts::default();
    match de::DeserializeSeed::deserialize(EnvelopeSeed(&mut parts), &mut json) {
        Ok(()) => json.end().ok()?,
        // The only error raised after the request id is found is the one that stops reading.
        Err(_) if parts.request_id.is_some() => {}
        Err(_) => return None,
    }
    parts.key()
}

/// What [`event_key`] reads of a body, each field leniently (a field of another type reads as
/// missing and never fails the rest), its text borrowed from the body (`Cow`) or owned
/// (`String`, from a reader).
struct KeyParts<T> {
    /// `type`.
    kind: Option<T>,
    /// `data.request_id`, kept only when not empty.
    request_id: Option<T>,
    /// `data.conversation_id`.
    conversation_id: Option<T>,
}

impl<T> Default for KeyParts<T> {
    fn default() -> Self {
        Self {
            kind: None,
            request_id: None,
            conversation_id: None,
        }
    }
}

impl<T: AsRef<str> + From<String>> KeyParts<T> {
    /// `data.request_id`, else `data.conversation_id` and `type` joined by a dot.
    fn key(self) -> Option<T> {
        if self.request_id.is_some() {
            return self.request_id;
        }
        let present = |text: &T| !text.as_ref().is_empty();
        let conversation = self.conversation_id.filter(present)?;
        let kind = self.kind.filter(present)?;
        Some(T::from(format!(
            "{}.{}",
            conversation.as_ref(),
            kind.as_ref()
        )))
    }
}

/// The names [`event_key`] looks for; any other is skipped.
enum KeyField {
    Type,
    Data,
    RequestId,
    ConversationId,
    Other,
}

impl<'de> Deserialize<'de> for KeyField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl de::Visitor<'_> for Visitor {
            type Value = KeyField;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }

            fn visit_str<E>(self, name: &str) -> Result<KeyField, E> {
                Ok(match name {
                    "type" => KeyField::Type,
                    "data" => KeyField::Data,
                    "request_id" => KeyField::RequestId,
                    "conversation_id" => KeyField::ConversationId,
                    _ => KeyField::Other,
                })
            }
        }

        deserializer.deserialize_identifier(Visitor)
    }
}

/// Reads the envelope (`type`, `data`) into [`KeyParts`].
struct EnvelopeSeed<'p, T>(&'p mut KeyParts<T>);

impl<'de, T: JsonText<'de> + AsRef<str>> de::DeserializeSeed<'de> for EnvelopeSeed<'_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: JsonText<'de> + AsRef<str>> de::Visitor<'de> for EnvelopeSeed<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(field) = map.next_key::<KeyField>()? {
            match field {
                KeyField::Type => self.0.kind = map.next_value::<Lenient<T>>()?.0,
                KeyField::Data => map.next_value_seed(DataSeed(&mut *self.0))?,
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Reads `data` into [`KeyParts`], and stops everything (an error) at a non-empty
/// `request_id`.
struct DataSeed<'p, T>(&'p mut KeyParts<T>);

impl<'de, T: JsonText<'de> + AsRef<str>> de::DeserializeSeed<'de> for DataSeed<'_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: JsonText<'de> + AsRef<str>> de::Visitor<'de> for DataSeed<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(field) = map.next_key::<KeyField>()? {
            match field {
                KeyField::RequestId => {
                    let id = map.next_value::<Lenient<T>>()?.0;
                    if let Some(id) = id.filter(|id| !id.as_ref().is_empty()) {
                        self.0.request_id = Some(id);
                        return Err(de::Error::custom("found data.request_id"));
                    }
                }
                KeyField::ConversationId => {
                    self.0.conversation_id = map.next_value::<Lenient<T>>()?.0;
                }
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A string field read leniently: any other JSON value is skipped and reads as `None`.
struct Lenient<T>(Option<T>);

/// The text of a JSON string, borrowed from the input where it can be.
trait JsonText<'de>: Sized {
    fn borrowed(text: &'de str) -> Self;
    fn copied(text: &str) -> Self;
}

impl<'de: 'a, 'a> JsonText<'de> for Cow<'a, str> {
    fn borrowed(text: &'de str) -> Self {
        Cow::Borrowed(text)
    }
    fn copied(text: &str) -> Self {
        Cow::Owned(text.to_owned())
    }
}

impl<'de> JsonText<'de> for String {
    fn borrowed(text: &'de str) -> Self {
        text.to_owned()
    }
    fn copied(text: &str) -> Self {
        text.to_owned()
    }
}

impl<'de, T: JsonText<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: JsonText<'de>> de::Visitor<'de> for Visitor<T> {
            type Value = Lenient<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Lenient(Some(T::borrowed(text))))
            }

            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Lenient(Some(T::copied(text))))
            }

            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }

            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }

            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }

            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }

            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient(None))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Lenient(None))
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Lenient(None))
            }
        }

        deserializer.deserialize_any(Visitor(std::marker::PhantomData))
    }
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

    #[test]
    fn a_request_id_decides_the_key_without_reading_what_follows() {
        // Reading stops at a non-empty request id: what follows is not looked at.
        let stopped = br#"{"type":"speech_to_text_transcription","data":{"request_id":"r1","transcription":{"text":"#;
        assert_eq!(event_key(stopped).as_deref(), Some("r1"));
        let borrowed = event_key_text(stopped).unwrap();
        assert!(matches!(borrowed, Cow::Borrowed("r1")), "{borrowed:?}");
        // ... but everything before it is, and must be JSON.
        assert_eq!(
            event_key(br#"{"type":"t","oops,"data":{"request_id":"r1"}}"#),
            None
        );
        assert_eq!(
            event_key(br#"{"data":{"words":[1,],"request_id":"r1"}}"#),
            None
        );
        // An empty or mistyped request id does not stop it: the conversation id decides.
        let after_empty = br#"{"data":{"request_id":"","conversation_id":"c"},"type":"t"}"#;
        assert_eq!(event_key(after_empty).as_deref(), Some("c.t"));
        let after_mistyped = br#"{"data":{"request_id":{"r":1},"conversation_id":"c"},"type":"t"}"#;
        assert_eq!(event_key(after_mistyped).as_deref(), Some("c.t"));
        // Without a request id the whole value is read, `type` after `data` included, and
        // must be one JSON value.
        let type_last = br#"{"data":{"conversation_id":"c","x":[{}]},"type":"post_call_audio"}"#;
        assert_eq!(event_key(type_last).as_deref(), Some("c.post_call_audio"));
        assert_eq!(
            event_key(br#"{"data":{"conversation_id":"c"},"type":"t"} trailing"#),
            None
        );
        assert_eq!(
            event_key(br#"{"data":{"conversation_id":"c"},"type":"t""#),
            None
        );
        // A `data` that is not an object, or a request id outside `data`, gives no key.
        assert_eq!(event_key(br#"{"type":"t","data":"r1"}"#), None);
        assert_eq!(
            event_key(br#"{"type":"t","request_id":"r1","data":{}}"#),
            None
        );
        assert_eq!(
            event_key(br#"{"type":"t","data":{"type":"u","conversation_id":"c"}}"#).as_deref(),
            Some("c.t")
        );
    }

    #[cfg(feature = "gateway")]
    #[test]
    fn event_keys_read_from_a_reader_are_the_same() {
        let bodies: [&[u8]; 12] = [
            br#"{"type":"post_call_transcription","data":{"conversation_id":"c","agent_id":"a"}}"#,
            br#"{"type":"x","data":{"conversation_id":"c","request_id":"r"}}"#,
            br#"{"type":"post\u005fcall_audio","data":{"conversation_id":"c"}}"#,
            br#"{"type":"","data":{"conversation_id":"c"}}"#,
            br#"{"type":"t","data":{"request_id":""}}"#,
            br#"{"type":7,"data":{"request_id":"r","conversation_id":[1]}}"#,
            br#"{"type":"t","data":{"conversation_id":"c","request_id":null}}"#,
            br#"{"type":"t"} trailing"#,
            br#"{"data":{"request_id":"r1","text":"#,
            br#"{"data":{"conversation_id":"c"},"type":"t"}"#,
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
