//! Deterministic generators of realistic ElevenLabs webhook bodies, too big to keep in the
//! repository: an hour of transcribed speech with word and character timestamps, a
//! multichannel transcript, a multi-megabyte `post_call_audio`. The same seed gives the same
//! bytes on every machine (a hand-written SplitMix64, no floating-point formatting that depends
//! on the platform). Shared by `tests/elevenlabs_*.rs` and `benches/events.rs`.
#![allow(dead_code, unreachable_pub)] // each user takes a part

use std::fmt::Write as _;

use base64::Engine as _;

/// SplitMix64: small, fast, and the same everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[0, 1)`, from 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let random = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&random[..chunk.len()]);
        }
    }
}

/// Common words, some with punctuation or non-ASCII letters, one with quotes (an escape sequence
/// in the JSON, as real transcripts have now and then).
const VOCABULARY: &[&str] = &[
    "the",
    "and",
    "to",
    "of",
    "a",
    "I",
    "you",
    "that",
    "it",
    "is",
    "in",
    "we",
    "so",
    "for",
    "this",
    "was",
    "on",
    "with",
    "but",
    "they",
    "have",
    "be",
    "are",
    "not",
    "what",
    "just",
    "like",
    "know",
    "do",
    "about",
    "if",
    "can",
    "think",
    "right",
    "there",
    "yeah,",
    "okay.",
    "really",
    "people",
    "going",
    "because",
    "would",
    "when",
    "time",
    "well,",
    "actually",
    "customer",
    "account",
    "payment",
    "schedule",
    "Tuesday",
    "morning",
    "afternoon",
    "appointment",
    "confirm",
    "number",
    "address",
    "delivery",
    "order",
    "question",
    "problem",
    "thanks!",
    "perfect.",
    "sure.",
    "café",
    "naïve",
    "Zürich",
    "São",
    "Paulo",
    "résumé",
    "coöperate",
    "Kraków",
    "\"quote\"",
    "it's",
    "don't",
    "we'll",
    "transcription",
    "webhook",
    "signature",
    "verification",
    "minute",
    "second",
    "hour",
    "percent",
    "twenty",
    "thirty",
    "fifty",
    "hundred",
    "thousand",
    "million",
    "maybe",
    "probably",
    "exactly",
    "absolutely",
];

const AUDIO_EVENTS: &[&str] = &[
    "(laughter)",
    "(applause)",
    "(music)",
    "(cough)",
    "(silence)",
];

/// A generated transcript body and what it holds, to check a parse against.
pub struct GeneratedTranscript {
    /// The whole webhook body.
    pub body: Vec<u8>,
    /// Entries of type `word`, `spacing`, `audio_event`.
    pub words: usize,
    pub spacings: usize,
    pub audio_events: usize,
    /// Character entries, over all words.
    pub characters: usize,
    /// Channels (1 for a single transcript).
    pub channels: usize,
    /// The end of the last entry, in seconds.
    pub last_end: f64,
    /// The request id in `data`.
    pub request_id: String,
}

/// Seconds with three decimals, as ElevenLabs writes them.
fn secs(s: f64) -> String {
    format!("{s:.3}")
}

/// A JSON string literal for `text` (escaping quotes and backslashes, as a sender would).
fn json_str(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

struct Channel {
    json: String,
    words: usize,
    spacings: usize,
    audio_events: usize,
    characters: usize,
    last_end: f64,
}

/// One channel's transcript object: words with spacing between them, an audio event now and
/// then, speakers taking turns, every entry with its characters.
fn channel(rng: &mut Rng, duration_secs: f64, channel_index: Option<usize>) -> Channel {
    let mut words_json = String::new();
    let mut text = String::new();
    let (mut words, mut spacings, mut audio_events, mut characters) = (0, 0, 0, 0);
    let mut t = 0.0_f64;
    let mut speaker = 0;
    let mut turn_left = 5 + rng.below(30);
    let channel_field = channel_index.map_or(String::new(), |c| format!(",\"channel_index\":{c}"));
    let entry = |out: &mut String,
                 text: &str,
                 kind: &str,
                 start: f64,
                 end: f64,
                 speaker: u64,
                 logprob: f64,
                 rng: &mut Rng|
     -> usize {
        if !out.is_empty() {
            out.push(',');
        }
        write!(
            out,
            "{{\"text\":{},\"start\":{},\"end\":{},\"type\":\"{kind}\",\"speaker_id\":\"speaker_{speaker}\",\"logprob\":{logprob}{channel_field},\"characters\":[",
            json_str(text),
            secs(start),
            secs(end),
        )
        .unwrap();
        let chars: Vec<char> = text.chars().collect();
        let step = (end - start) / chars.len().max(1) as f64;
        for (i, c) in chars.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let c_start = start + step * i as f64;
            let jitter = step * 0.2 * rng.unit();
            write!(
                out,
                "{{\"text\":{},\"start\":{},\"end\":{}}}",
                json_str(&c.to_string()),
                secs(c_start),
                secs((c_start + step - jitter).max(c_start)),
            )
            .unwrap();
        }
        out.push_str("]}");
        chars.len()
    };
    while t < duration_secs {
        if turn_left == 0 {
            speaker = (speaker + 1 + rng.below(2)) % 3;
            turn_left = 5 + rng.below(30);
        }
        turn_left -= 1;
        let (word, kind) = if rng.below(250) == 0 {
            (
                AUDIO_EVENTS[rng.below(AUDIO_EVENTS.len() as u64) as usize],
                "audio_event",
            )
        } else {
            (
                VOCABULARY[rng.below(VOCABULARY.len() as u64) as usize],
                "word",
            )
        };
        let length = if kind == "audio_event" {
            0.8 + 1.5 * rng.unit()
        } else {
            0.08 + 0.035 * word.chars().count() as f64 * (0.5 + rng.unit())
        };
        let start = t;
        let end = t + length;
        let logprob = -(rng.unit() * rng.unit() * 2.5);
        characters += entry(
            &mut words_json,
            word,
            kind,
            start,
            end,
            speaker,
            logprob,
            rng,
        );
        if kind == "word" {
            words += 1;
        } else {
            audio_events += 1;
        }
        text.push_str(word);
        let gap = if rng.below(15) == 0 {
            0.2 + 0.8 * rng.unit()
        } else {
            0.01 + 0.06 * rng.unit()
        };
        characters += entry(
            &mut words_json,
            " ",
            "spacing",
            end,
            end + gap,
            speaker,
            0.0,
            rng,
        );
        spacings += 1;
        text.push(' ');
        t = end + gap;
    }
    let mut json = String::with_capacity(words_json.len() + text.len() + 256);
    write!(
        json,
        "{{\"language_code\":\"en\",\"language_probability\":{},\"text\":{}{channel_field},\"words\":[{words_json}]}}",
        0.9 + 0.1 * rng.unit(),
        json_str(text.trim_end()),
    )
    .unwrap();
    Channel {
        json,
        words,
        spacings,
        audio_events,
        characters,
        last_end: t,
    }
}

fn envelope(request_id: &str, transcription: &str, timestamp: u64) -> Vec<u8> {
    format!(
        "{{\"type\":\"speech_to_text_transcription\",\"event_timestamp\":{timestamp},\"data\":{{\"request_id\":\"{request_id}\",\"webhook_metadata\":{{\"job\":\"nightly-42\"}},\"transcription\":{transcription}}}}}"
    )
    .into_bytes()
}

/// An hour of one channel of speech, transcribed with word and character timestamps: about 10k
/// words, as many spacings, 65k characters with their timing; about 5 MiB.
pub fn hour_transcript(seed: u64) -> GeneratedTranscript {
    let mut rng = Rng::new(seed);
    let channel = channel(&mut rng, 3600.0, None);
    let request_id = format!("req_{seed:016x}");
    GeneratedTranscript {
        body: envelope(&request_id, &channel.json, 1_739_537_297),
        words: channel.words,
        spacings: channel.spacings,
        audio_events: channel.audio_events,
        characters: channel.characters,
        channels: 1,
        last_end: channel.last_end,
        request_id,
    }
}

/// `channels` channels of `duration_secs` each, as a multichannel result.
pub fn multichannel_transcript(
    seed: u64,
    channels: usize,
    duration_secs: f64,
) -> GeneratedTranscript {
    let mut rng = Rng::new(seed);
    let parts: Vec<Channel> = (0..channels)
        .map(|c| channel(&mut rng, duration_secs, Some(c)))
        .collect();
    let transcripts: Vec<&str> = parts.iter().map(|c| c.json.as_str()).collect();
    let transcription = format!(
        "{{\"transcripts\":[{}],\"transcription_id\":\"tr_{seed:x}\",\"audio_duration_secs\":{duration_secs}}}",
        transcripts.join(",")
    );
    let request_id = format!("req_multi_{seed:016x}");
    GeneratedTranscript {
        body: envelope(&request_id, &transcription, 1_739_537_297),
        words: parts.iter().map(|c| c.words).sum(),
        spacings: parts.iter().map(|c| c.spacings).sum(),
        audio_events: parts.iter().map(|c| c.audio_events).sum(),
        characters: parts.iter().map(|c| c.characters).sum(),
        channels,
        last_end: parts.iter().map(|c| c.last_end).fold(0.0, f64::max),
        request_id,
    }
}

/// A `post_call_audio` body carrying `audio_len` pseudo-random bytes (behind an ID3 header) as
/// base64, and those bytes.
pub fn post_call_audio(seed: u64, audio_len: usize) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng::new(seed);
    let mut audio = vec![0_u8; audio_len];
    rng.fill(&mut audio);
    let header = b"ID3\x04\x00\x00\x00\x00\x00\x00";
    let n = header.len().min(audio_len);
    audio[..n].copy_from_slice(&header[..n]);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&audio);
    let mut body = Vec::with_capacity(encoded.len() + 200);
    body.extend_from_slice(
        format!("{{\"type\":\"post_call_audio\",\"event_timestamp\":1739537319,\"data\":{{\"agent_id\":\"agent_{seed:x}\",\"conversation_id\":\"conv_{seed:x}\",\"full_audio\":\"").as_bytes(),
    );
    body.extend_from_slice(encoded.as_bytes());
    body.extend_from_slice(b"\"}}");
    (body, audio)
}
