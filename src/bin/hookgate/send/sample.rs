//! The sample speech-to-text delivery `send` plays: the ElevenLabs payload shape, a fresh
//! `data.request_id` and `event_timestamp` per event, pre-serialised once so that building an
//! event is three copies.

use std::io::Write as _;

use bytes::Bytes;
use serde::Serialize;

/// The transcript's sentence, spoken by one speaker, word by word.
const SENTENCE: &str =
    "Thanks for calling. Your order has shipped and should arrive on Thursday afternoon.";

/// Placeholders replaced per event; both have the width of the real values.
const TIMESTAMP_PLACEHOLDER: u64 = 9_999_999_999;
const ID_PLACEHOLDER: &str = "ffffffffffffffffeeeeeeeeeeeeeeee";

/// A pre-serialised sample delivery with holes for the event's timestamp and id.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    head: Box<[u8]>,
    middle: Box<[u8]>,
    tail: Box<[u8]>,
}

#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    event_timestamp: u64,
    data: Data<'a>,
}

#[derive(Serialize)]
struct Data<'a> {
    request_id: &'a str,
    webhook_metadata: Metadata<'a>,
    transcription: Transcription<'a>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    source: &'a str,
}

#[derive(Serialize)]
struct Transcription<'a> {
    language_code: &'a str,
    language_probability: f64,
    text: &'a str,
    words: Vec<Word<'a>>,
    audio_duration_secs: f64,
}

#[derive(Serialize)]
struct Word<'a> {
    text: &'a str,
    start: f64,
    end: f64,
    #[serde(rename = "type")]
    kind: &'a str,
    speaker_id: &'a str,
    logprob: f64,
}

/// The words of [`SENTENCE`] with spacing entries between them, 0.32 s a word.
fn words() -> (Vec<Word<'static>>, f64) {
    let mut words = Vec::new();
    let mut at = 0.0_f64;
    for (index, text) in SENTENCE.split(' ').enumerate() {
        let round = |x: f64| (x * 100.0).round() / 100.0;
        if index > 0 {
            words.push(Word {
                text: " ",
                start: round(at),
                end: round(at),
                kind: "spacing",
                speaker_id: "speaker_0",
                logprob: 0.0,
            });
        }
        let end = at + 0.32;
        words.push(Word {
            text,
            start: round(at),
            end: round(end),
            kind: "word",
            speaker_id: "speaker_0",
            logprob: -round(0.01 + (index % 7) as f64 * 0.03),
        });
        at = end + 0.04;
    }
    (words, (at * 100.0).round() / 100.0)
}

fn serialise(text: &str) -> Vec<u8> {
    let (words, duration) = words();
    let event = Event {
        kind: "speech_to_text_transcription",
        event_timestamp: TIMESTAMP_PLACEHOLDER,
        data: Data {
            request_id: ID_PLACEHOLDER,
            webhook_metadata: Metadata {
                source: "hookgate send",
            },
            transcription: Transcription {
                language_code: "en",
                language_probability: 0.98,
                text,
                words,
                audio_duration_secs: duration,
            },
        },
    };
    serde_json::to_vec(&event).expect("the sample serialises")
}

/// Splits `haystack` once around `needle`.
fn split_once<'a>(haystack: &'a [u8], needle: &[u8]) -> (&'a [u8], &'a [u8]) {
    let at = haystack
        .windows(needle.len())
        .position(|window| window == needle)
        .expect("the placeholder is in the sample");
    (&haystack[..at], &haystack[at + needle.len()..])
}

impl Sample {
    /// The sample transcript, its text padded so that every body is exactly `body_bytes` long
    /// (when given). Errors when `body_bytes` is smaller than the unpadded sample.
    pub(crate) fn new(body_bytes: Option<usize>) -> Result<Self, String> {
        let mut text = SENTENCE.to_owned();
        if let Some(wanted) = body_bytes {
            let base = serialise(&text).len();
            if wanted < base {
                return Err(format!(
                    "--body-bytes {wanted} is smaller than the sample transcript ({base} bytes)"
                ));
            }
            // Repeat the sentence (plain ASCII, nothing JSON escapes) until the body fits.
            let mut missing = wanted - base;
            while missing > 0 {
                let piece = &format!(" {SENTENCE}")[..(SENTENCE.len() + 1).min(missing)];
                text.push_str(piece);
                missing -= piece.len();
            }
        }
        let bytes = serialise(&text);
        let (head, rest) = split_once(&bytes, TIMESTAMP_PLACEHOLDER.to_string().as_bytes());
        let (middle, tail) = split_once(rest, ID_PLACEHOLDER.as_bytes());
        Ok(Self {
            head: head.into(),
            middle: middle.into(),
            tail: tail.into(),
        })
    }

    /// One event's body: `event_timestamp` and `data.request_id` filled in.
    pub(crate) fn build(&self, event_timestamp: u64, request_id: &str) -> Bytes {
        let mut body = Vec::with_capacity(
            self.head.len() + 20 + self.middle.len() + request_id.len() + self.tail.len(),
        );
        body.extend_from_slice(&self.head);
        write!(body, "{event_timestamp}").expect("writing to a Vec");
        body.extend_from_slice(&self.middle);
        body.extend_from_slice(request_id.as_bytes());
        body.extend_from_slice(&self.tail);
        Bytes::from(body)
    }
}

/// Event ids of one run: a random run prefix and a counter, 32 hex digits like ElevenLabs'.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EventIds {
    run: u64,
}

impl EventIds {
    pub(crate) fn new() -> Self {
        Self {
            run: fastrand::u64(..),
        }
    }

    /// The id of the run's `n`th event.
    pub(crate) fn id(&self, n: u64) -> String {
        format!("{:016x}{n:016x}", self.run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Width of `data.request_id`: 32 lower-case hex digits.
    const ID_LEN: usize = 32;

    fn parse(body: &[u8]) -> serde_json::Value {
        serde_json::from_slice(body).expect("valid JSON")
    }

    #[test]
    fn the_sample_has_the_elevenlabs_shape() {
        let sample = Sample::new(None).unwrap();
        let ids = EventIds::new();
        let body = sample.build(1_764_000_000, &ids.id(7));
        let json = parse(&body);
        assert_eq!(json["type"], "speech_to_text_transcription");
        assert_eq!(json["event_timestamp"], 1_764_000_000_u64);
        assert_eq!(json["data"]["request_id"], ids.id(7));
        let transcription = &json["data"]["transcription"];
        assert_eq!(transcription["language_code"], "en");
        assert_eq!(transcription["text"], SENTENCE);
        let words = transcription["words"].as_array().unwrap();
        let spoken: String = words.iter().map(|w| w["text"].as_str().unwrap()).collect();
        assert_eq!(spoken, SENTENCE);
        for word in words {
            assert!(word["type"] == "word" || word["type"] == "spacing");
            assert!(word["logprob"].as_f64().unwrap() <= 0.0);
            assert!(word["start"].as_f64().unwrap() <= word["end"].as_f64().unwrap());
        }
    }

    #[test]
    fn ids_are_distinct_and_have_a_fixed_width() {
        let ids = EventIds::new();
        assert_ne!(ids.id(0), ids.id(1));
        assert_eq!(ids.id(0).len(), ID_LEN);
        assert_eq!(ids.id(u64::MAX).len(), ID_LEN);
        assert!(ids.id(3).bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn padding_gives_the_exact_size_and_stays_valid_json() {
        let ids = EventIds::new();
        let base = Sample::new(None)
            .unwrap()
            .build(1_764_000_000, &ids.id(0))
            .len();
        for wanted in [base, base + 1, base + SENTENCE.len(), 4096, 65_536, 1 << 20] {
            let body = Sample::new(Some(wanted))
                .unwrap()
                .build(1_764_000_000, &ids.id(1));
            assert_eq!(body.len(), wanted, "asked for {wanted}");
            let json = parse(&body);
            assert!(json["data"]["transcription"]["text"]
                .as_str()
                .unwrap()
                .starts_with(SENTENCE));
        }
    }

    #[test]
    fn too_small_a_size_is_refused() {
        let error = Sample::new(Some(10)).unwrap_err();
        assert!(error.contains("smaller than the sample"), "{error}");
    }
}
