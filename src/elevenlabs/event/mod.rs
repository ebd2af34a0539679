//! Typed ElevenLabs webhook events (feature `elevenlabs`); the docs are the parent module's.

use std::{borrow::Cow, io, marker::PhantomData};

use serde::{
    de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess},
    ser::SerializeMap,
    Deserialize, Serialize, Serializer,
};
use serde_json::{Map, Number, Value};

mod audio;
mod call_initiation;
pub(crate) mod lenient;
mod post_call;
mod speech_to_text;
mod voice_removal;

pub use audio::{Base64Audio, DecodeError, PostCallAudio};
pub use call_initiation::{
    CallInitiationFailure, FailureBody, FailureMetadata, FailureReason, SipFailure, TwilioFailure,
};
pub use post_call::{
    Analysis, CallMetadata, ConversationInitiationClientData, PostCallTranscription, Role,
    ToolCall, ToolResult, Turn,
};
pub use speech_to_text::{
    AdditionalFormat, Character, Entity, MultichannelTranscript, SpeechToTextTranscription,
    Transcript, Transcription, WebhookMetadata, Word, WordKind,
};
pub use voice_removal::VoiceRemoval;

use lenient::{accept, next_key, Accept, FieldDe, Lenient, Seed, ToStatic};

/// A delivered ElevenLabs webhook event: the envelope `{"type", "event_timestamp", "data"}`,
/// with `data` typed by `type`.
///
/// Parse it from the exact bytes received with [`Event::from_slice`] (strings are borrowed from
/// them), after the signature has been verified. See the [module docs](super) for what is
/// lenient and an example.
// One event per delivery, built once and moved little: boxing the larger variants would cost
// an allocation per event for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// `speech_to_text_transcription`: the result of an asynchronous speech-to-text request.
    /// Also the documentation's other name for it, `speech_to_text.completed`, and the bare
    /// transcription object an older revision delivered without an envelope.
    SpeechToTextTranscription(Envelope<'a, SpeechToTextTranscription<'a>>),
    /// `post_call_transcription`: an agent conversation, once it has ended and been analysed.
    PostCallTranscription(Envelope<'a, PostCallTranscription<'a>>),
    /// `post_call_audio`: the conversation's full audio, base64 MP3.
    PostCallAudio(Envelope<'a, PostCallAudio<'a>>),
    /// `call_initiation_failure`: an outbound call that could not be started.
    CallInitiationFailure(Envelope<'a, CallInitiationFailure<'a>>),
    /// `voice_removal_notice`: a shared voice is scheduled to be removed.
    VoiceRemovalNotice(Envelope<'a, VoiceRemoval>),
    /// `voice_removal_notice_withdrawn`: a shared voice is no longer scheduled for removal.
    VoiceRemovalNoticeWithdrawn(Envelope<'a, VoiceRemoval>),
    /// `voice_removed`: a shared voice has been removed and can no longer be used.
    VoiceRemoved(Envelope<'a, VoiceRemoval>),
    /// Any other `type` (e.g. `post_call_transcription_otel`), kept whole.
    Unknown(UnknownEvent<'a>),
}

/// The envelope of a known event type: everything but `type`, which the [`Event`] variant says.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Envelope<'a, D> {
    /// When the event occurred (`event_timestamp`).
    pub event_timestamp: Option<Timestamp<'a>>,
    /// The event's `data`. A missing or `null` `data` reads as the default (every field
    /// `None`); one that is not an object is kept in `extra` under `data`.
    pub data: D,
    /// Every other envelope field, as received.
    pub extra: Map<String, Value>,
}

impl<'a, D> Envelope<'a, D> {
    /// An envelope around `data`, without a timestamp.
    pub fn new(data: D) -> Self {
        Envelope {
            event_timestamp: None,
            data,
            extra: Map::new(),
        }
    }
}

/// An event whose `type` this version does not know, kept as received.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct UnknownEvent<'a> {
    /// The event's `type`.
    pub event_type: Cow<'a, str>,
    /// When the event occurred (`event_timestamp`).
    pub event_timestamp: Option<Timestamp<'a>>,
    /// The event's `data`, as received; `None` when there was none.
    pub data: Option<Value>,
    /// Every other envelope field, as received.
    pub extra: Map<String, Value>,
}

/// When an event occurred. ElevenLabs' documents disagree: their examples give an integer of
/// Unix seconds, their field tables say "string". Both are accepted and kept as received.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Timestamp<'a> {
    /// A JSON number, as received (Unix seconds).
    Number(Number),
    /// A JSON string, as received.
    Text(Cow<'a, str>),
}

impl Timestamp<'_> {
    /// The time in Unix seconds: a number (a fraction rounded down), or a string holding one,
    /// or an RFC 3339 date-time (`2025-02-14T12:48:17Z`, any offset). `None` for anything else.
    #[must_use]
    pub fn unix_secs(&self) -> Option<i64> {
        match self {
            Timestamp::Number(number) => number
                .as_i64()
                .or_else(|| number.as_f64().and_then(floor_secs)),
            Timestamp::Text(text) => {
                let text = text.trim();
                text.parse::<i64>()
                    .ok()
                    .or_else(|| text.parse::<f64>().ok().and_then(floor_secs))
                    .or_else(|| parse_rfc3339(text))
            }
        }
    }

    /// The same value, no longer tied to the input's lifetime.
    #[must_use]
    pub fn into_owned(self) -> Timestamp<'static> {
        match self {
            Timestamp::Number(number) => Timestamp::Number(number),
            Timestamp::Text(text) => Timestamp::Text(text.to_static()),
        }
    }
}

fn floor_secs(secs: f64) -> Option<i64> {
    let secs = secs.floor();
    (secs.is_finite() && secs >= i64::MIN as f64 && secs < i64::MAX as f64).then_some(secs as i64)
}

/// `YYYY-MM-DD(T|t| )HH:MM:SS[.fraction](Z|z|±HH:MM)` in Unix seconds (the fraction dropped).
fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0_i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let sep = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    if sep(at, b".") {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return None;
        }
    }
    let offset = match b.get(at)? {
        b'Z' | b'z' if at + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if at + 6 == b.len() && sep(at + 3, b":") => {
            let (hours, minutes) = (num(at + 1..at + 3)?, num(at + 4..at + 6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'+' {
                offset
            } else {
                -offset
            }
        }
        _ => return None,
    };
    // Days from 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

impl<'de: 'a, 'a> Accept<'de> for Timestamp<'a> {
    fn string(v: Cow<'de, str>) -> Lenient<Self> {
        Ok(Timestamp::Text(v))
    }

    fn signed(v: i64) -> Lenient<Self> {
        Ok(Timestamp::Number(v.into()))
    }

    fn unsigned(v: u64) -> Lenient<Self> {
        Ok(Timestamp::Number(v.into()))
    }

    fn float(v: f64) -> Lenient<Self> {
        Number::from_f64(v)
            .map(Timestamp::Number)
            .ok_or(Value::Null)
    }
}

impl<'de: 'a, 'a> FieldDe<'de> for Timestamp<'a> {
    fn de<D: Deserializer<'de>>(deserializer: D) -> Result<Lenient<Self>, D::Error> {
        accept(deserializer)
    }
}

impl Serialize for Timestamp<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Timestamp::Number(number) => number.serialize(serializer),
            Timestamp::Text(text) => serializer.serialize_str(text),
        }
    }
}

impl ToStatic for Timestamp<'_> {
    type Static = Timestamp<'static>;

    fn to_static(self) -> Self::Static {
        self.into_owned()
    }
}

impl<'a> Event<'a> {
    /// Parses an event from the exact bytes received, borrowing its strings from them (a big
    /// transcript's words, the base64 audio: no copy). Keys may come in any order; when `data`
    /// comes before `type` (no ElevenLabs example does that), the bytes are read a second time
    /// rather than held as an untyped tree.
    ///
    /// # Errors
    /// The bytes are not JSON, not an object, or have no string `type` (and are not the bare
    /// transcription object an older revision delivered). Nothing else is an error: see the
    /// [module docs](super).
    pub fn from_slice(body: &'a [u8]) -> Result<Self, serde_json::Error> {
        match Self::read_slice(body, None)? {
            Outcome::Event(event) => Ok(event),
            Outcome::Retry(kind) => match Self::read_slice(body, Some(kind))? {
                Outcome::Event(event) => Ok(event),
                Outcome::Retry(_) => Err(de::Error::custom("`data` could not be read")),
            },
        }
    }

    fn read_slice(body: &'a [u8], hint: Option<Kind>) -> Result<Outcome<'a>, serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let outcome = EnvelopeSeed {
            hint,
            data_first: DataFirst::Skip,
            lifetime: PhantomData,
        }
        .deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(outcome)
    }

    /// The event's `type`, as received.
    #[must_use]
    pub fn event_type(&self) -> &str {
        match self {
            Event::SpeechToTextTranscription(_) => "speech_to_text_transcription",
            Event::PostCallTranscription(_) => "post_call_transcription",
            Event::PostCallAudio(_) => "post_call_audio",
            Event::CallInitiationFailure(_) => "call_initiation_failure",
            Event::VoiceRemovalNotice(_) => "voice_removal_notice",
            Event::VoiceRemovalNoticeWithdrawn(_) => "voice_removal_notice_withdrawn",
            Event::VoiceRemoved(_) => "voice_removed",
            Event::Unknown(unknown) => &unknown.event_type,
        }
    }

    /// When the event occurred (`event_timestamp`), as received.
    #[must_use]
    pub fn event_timestamp(&self) -> Option<&Timestamp<'a>> {
        match self {
            Event::SpeechToTextTranscription(e) => e.event_timestamp.as_ref(),
            Event::PostCallTranscription(e) => e.event_timestamp.as_ref(),
            Event::PostCallAudio(e) => e.event_timestamp.as_ref(),
            Event::CallInitiationFailure(e) => e.event_timestamp.as_ref(),
            Event::VoiceRemovalNotice(e)
            | Event::VoiceRemovalNoticeWithdrawn(e)
            | Event::VoiceRemoved(e) => e.event_timestamp.as_ref(),
            Event::Unknown(e) => e.event_timestamp.as_ref(),
        }
    }

    /// What identifies the event, the same as [`event_id`](super::event_id) reads from the
    /// bytes: the data's `request_id` (a transcription's), or else its `conversation_id`
    /// (conversation events: combine it with the type, a call's transcript and audio share it).
    /// `None` when the first present is empty, or neither is there (the voice removal events).
    #[must_use]
    pub fn event_id(&self) -> Option<&str> {
        fn in_extra<'e>(extra: &'e Map<String, Value>, key: &str) -> Option<&'e str> {
            extra.get(key).and_then(Value::as_str)
        }
        let (request_id, conversation_id) = match self {
            Event::SpeechToTextTranscription(e) => (
                e.data.request_id.as_deref(),
                in_extra(&e.data.extra, "conversation_id"),
            ),
            Event::PostCallTranscription(e) => (
                in_extra(&e.data.extra, "request_id"),
                e.data.conversation_id.as_deref(),
            ),
            Event::PostCallAudio(e) => (
                in_extra(&e.data.extra, "request_id"),
                e.data.conversation_id.as_deref(),
            ),
            Event::CallInitiationFailure(e) => (
                in_extra(&e.data.extra, "request_id"),
                e.data.conversation_id.as_deref(),
            ),
            Event::VoiceRemovalNotice(e)
            | Event::VoiceRemovalNoticeWithdrawn(e)
            | Event::VoiceRemoved(e) => (
                in_extra(&e.data.extra, "request_id"),
                in_extra(&e.data.extra, "conversation_id"),
            ),
            Event::Unknown(e) => match e.data.as_ref().and_then(Value::as_object) {
                Some(data) => (
                    in_extra(data, "request_id"),
                    in_extra(data, "conversation_id"),
                ),
                None => (None, None),
            },
        };
        request_id.or(conversation_id).filter(|id| !id.is_empty())
    }

    /// The same event owning all its strings, no longer tied to the input's lifetime (to keep
    /// it after the body is gone, or send it to another task).
    #[must_use]
    pub fn into_owned(self) -> Event<'static> {
        match self {
            Event::SpeechToTextTranscription(e) => Event::SpeechToTextTranscription(e.to_static()),
            Event::PostCallTranscription(e) => Event::PostCallTranscription(e.to_static()),
            Event::PostCallAudio(e) => Event::PostCallAudio(e.to_static()),
            Event::CallInitiationFailure(e) => Event::CallInitiationFailure(e.to_static()),
            Event::VoiceRemovalNotice(e) => Event::VoiceRemovalNotice(e.to_static()),
            Event::VoiceRemovalNoticeWithdrawn(e) => {
                Event::VoiceRemovalNoticeWithdrawn(e.to_static())
            }
            Event::VoiceRemoved(e) => Event::VoiceRemoved(e.to_static()),
            Event::Unknown(e) => Event::Unknown(UnknownEvent {
                event_type: e.event_type.to_static(),
                event_timestamp: e.event_timestamp.to_static(),
                data: e.data,
                extra: e.extra,
            }),
        }
    }

    /// Parses an event from a reader. Every string is copied (nothing can be borrowed from a
    /// reader), and a `data` that comes before `type` is held as an untyped tree first: prefer
    /// [`Event::from_slice`] on the bytes received.
    ///
    /// # Errors
    /// As [`Event::from_slice`], plus the reader's errors.
    pub fn from_reader<R: io::Read>(reader: R) -> Result<Event<'static>, serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_reader(reader);
        let event = Event::deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(event)
    }
}

impl<D: ToStatic> ToStatic for Envelope<'_, D> {
    type Static = Envelope<'static, D::Static>;

    fn to_static(self) -> Self::Static {
        Envelope {
            event_timestamp: self.event_timestamp.to_static(),
            data: self.data.to_static(),
            extra: self.extra,
        }
    }
}

/// The known types (and their other names), and `Unknown` for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SpeechToText,
    PostCallTranscription,
    PostCallAudio,
    CallInitiationFailure,
    VoiceRemovalNotice,
    VoiceRemovalNoticeWithdrawn,
    VoiceRemoved,
    Unknown,
}

impl Kind {
    fn of(event_type: &str) -> Kind {
        match event_type {
            // The second name is what one of ElevenLabs' how-tos tests for.
            "speech_to_text_transcription" | "speech_to_text.completed" => Kind::SpeechToText,
            "post_call_transcription" => Kind::PostCallTranscription,
            "post_call_audio" => Kind::PostCallAudio,
            "call_initiation_failure" => Kind::CallInitiationFailure,
            "voice_removal_notice" => Kind::VoiceRemovalNotice,
            "voice_removal_notice_withdrawn" => Kind::VoiceRemovalNoticeWithdrawn,
            "voice_removed" => Kind::VoiceRemoved,
            _ => Kind::Unknown,
        }
    }
}

/// A `data` read for its kind.
#[allow(clippy::large_enum_variant)] // short-lived, on the stack
enum Data<'a> {
    SpeechToText(SpeechToTextTranscription<'a>),
    PostCallTranscription(PostCallTranscription<'a>),
    PostCallAudio(PostCallAudio<'a>),
    CallInitiationFailure(CallInitiationFailure<'a>),
    VoiceRemoval(VoiceRemoval),
    /// A known kind's `data` that is not an object (kept in the envelope's `extra`).
    NotAnObject(Value),
    /// An unknown kind's `data`, `None` when there was none.
    Unknown(Option<Value>),
}

impl Data<'_> {
    fn default_for(kind: Kind) -> Self {
        match kind {
            Kind::SpeechToText => Data::SpeechToText(Default::default()),
            Kind::PostCallTranscription => Data::PostCallTranscription(Default::default()),
            Kind::PostCallAudio => Data::PostCallAudio(Default::default()),
            Kind::CallInitiationFailure => Data::CallInitiationFailure(Default::default()),
            Kind::VoiceRemovalNotice | Kind::VoiceRemovalNoticeWithdrawn | Kind::VoiceRemoved => {
                Data::VoiceRemoval(Default::default())
            }
            Kind::Unknown => Data::Unknown(None),
        }
    }
}

struct DataSeed<'a>(Kind, PhantomData<&'a ()>);

impl<'de: 'a, 'a> DeserializeSeed<'de> for DataSeed<'a> {
    type Value = Data<'a>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Data<'a>, D::Error> {
        fn typed<'a, T: Default>(
            read: Lenient<Option<T>>,
            wrap: impl FnOnce(T) -> Data<'a>,
        ) -> Data<'a> {
            match read {
                Ok(data) => wrap(data.unwrap_or_default()),
                Err(raw) => Data::NotAnObject(raw),
            }
        }
        Ok(match self.0 {
            Kind::SpeechToText => typed(Option::de(deserializer)?, Data::SpeechToText),
            Kind::PostCallTranscription => {
                typed(Option::de(deserializer)?, Data::PostCallTranscription)
            }
            Kind::PostCallAudio => typed(Option::de(deserializer)?, Data::PostCallAudio),
            Kind::CallInitiationFailure => {
                typed(Option::de(deserializer)?, Data::CallInitiationFailure)
            }
            Kind::VoiceRemovalNotice | Kind::VoiceRemovalNoticeWithdrawn | Kind::VoiceRemoved => {
                typed(Option::de(deserializer)?, Data::VoiceRemoval)
            }
            Kind::Unknown => Data::Unknown(Some(Value::deserialize(deserializer)?)),
        })
    }
}

/// What to do with a `data` that comes before `type`.
#[derive(Clone, Copy)]
enum DataFirst {
    /// Hold it as a `Value` and type it once `type` is known (any deserializer).
    Buffer,
    /// Skip it and ask for a second pass with the type known (a slice, which can be re-read).
    Skip,
}

#[allow(clippy::large_enum_variant)] // short-lived, on the stack
enum Outcome<'a> {
    Event(Event<'a>),
    /// `data` was skipped: read again, knowing the kind.
    Retry(Kind),
}

struct EnvelopeSeed<'a> {
    /// The kind, known from a first pass.
    hint: Option<Kind>,
    data_first: DataFirst,
    lifetime: PhantomData<&'a ()>,
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for EnvelopeSeed<'a> {
    type Value = Outcome<'a>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Outcome<'a>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de: 'a, 'a> de::Visitor<'de> for EnvelopeSeed<'a> {
    type Value = Outcome<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an ElevenLabs webhook event (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Outcome<'a>, A::Error> {
        let mut event_type: Option<Cow<'a, str>> = None;
        let mut event_timestamp: Option<Timestamp<'a>> = None;
        let mut data: Option<Data<'a>> = None;
        let mut buffered: Option<Value> = None;
        let mut skipped = false;
        let mut extra = Map::new();
        while let Some(key) = next_key(&mut map)? {
            match key.bytes() {
                b"type" => match map.next_value_seed(Seed::<Option<Cow<'a, str>>>::new())? {
                    Ok(value) => event_type = value,
                    Err(_) => return Err(de::Error::custom("`type` is not a string")),
                },
                b"event_timestamp" => {
                    match map.next_value_seed(Seed::<Option<Timestamp<'a>>>::new())? {
                        Ok(value) => event_timestamp = value,
                        Err(raw) => {
                            extra.insert("event_timestamp".to_owned(), raw);
                        }
                    }
                }
                b"data" => {
                    let kind = event_type.as_deref().map(Kind::of).or(self.hint);
                    (buffered, skipped) = (None, false);
                    match (kind, self.data_first) {
                        (Some(kind), _) => {
                            data = Some(map.next_value_seed(DataSeed(kind, PhantomData))?)
                        }
                        (None, DataFirst::Buffer) => buffered = Some(map.next_value()?),
                        (None, DataFirst::Skip) => {
                            map.next_value::<IgnoredAny>()?;
                            skipped = true;
                        }
                    }
                }
                _ => {
                    let key = key.into_string()?;
                    let value: Value = map.next_value()?;
                    extra.insert(key, value);
                }
            }
        }

        let Some(event_type) = event_type else {
            let bare = data.is_none()
                && buffered.is_none()
                && !skipped
                && (extra.contains_key("words") || extra.contains_key("transcripts"));
            if !bare {
                return Err(de::Error::missing_field("type"));
            }
            // The bare transcription object an older revision delivered, without an envelope.
            let transcription =
                Transcription::deserialize(Value::Object(extra)).map_err(de::Error::custom)?;
            return Ok(Outcome::Event(Event::SpeechToTextTranscription(Envelope {
                event_timestamp,
                data: SpeechToTextTranscription {
                    transcription: Some(transcription),
                    ..Default::default()
                },
                extra: Map::new(),
            })));
        };

        let kind = Kind::of(&event_type);
        if self.hint.is_some_and(|hint| hint != kind) {
            return Err(de::Error::custom("`type` changed between two reads"));
        }
        if skipped {
            return Ok(Outcome::Retry(kind));
        }
        let data = match (data, buffered) {
            (Some(data), _) => data,
            (None, Some(value)) => DataSeed(kind, PhantomData)
                .deserialize(value)
                .map_err(de::Error::custom)?,
            (None, None) => Data::default_for(kind),
        };
        Ok(Outcome::Event(assemble(
            kind,
            event_type,
            event_timestamp,
            data,
            extra,
        )))
    }
}

fn assemble<'a>(
    kind: Kind,
    event_type: Cow<'a, str>,
    event_timestamp: Option<Timestamp<'a>>,
    data: Data<'a>,
    mut extra: Map<String, Value>,
) -> Event<'a> {
    let data = match data {
        Data::NotAnObject(raw) => {
            extra.insert("data".to_owned(), raw);
            Data::default_for(kind)
        }
        data => data,
    };
    macro_rules! envelope {
        ($data:expr) => {
            Envelope {
                event_timestamp,
                data: $data,
                extra,
            }
        };
    }
    match (kind, data) {
        (_, Data::SpeechToText(d)) => Event::SpeechToTextTranscription(envelope!(d)),
        (_, Data::PostCallTranscription(d)) => Event::PostCallTranscription(envelope!(d)),
        (_, Data::PostCallAudio(d)) => Event::PostCallAudio(envelope!(d)),
        (_, Data::CallInitiationFailure(d)) => Event::CallInitiationFailure(envelope!(d)),
        (Kind::VoiceRemovalNotice, Data::VoiceRemoval(d)) => {
            Event::VoiceRemovalNotice(envelope!(d))
        }
        (Kind::VoiceRemovalNoticeWithdrawn, Data::VoiceRemoval(d)) => {
            Event::VoiceRemovalNoticeWithdrawn(envelope!(d))
        }
        (_, Data::VoiceRemoval(d)) => Event::VoiceRemoved(envelope!(d)),
        (_, Data::Unknown(data)) => Event::Unknown(UnknownEvent {
            event_type,
            event_timestamp,
            data,
            extra,
        }),
        // Taken out above.
        (_, Data::NotAnObject(data)) => Event::Unknown(UnknownEvent {
            event_type,
            event_timestamp,
            data: Some(data),
            extra,
        }),
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Event<'a> {
    /// Any deserializer; a `data` before `type` is held as an untyped tree first. From bytes,
    /// prefer [`Event::from_slice`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let seed = EnvelopeSeed {
            hint: None,
            data_first: DataFirst::Buffer,
            lifetime: PhantomData,
        };
        match seed.deserialize(deserializer)? {
            Outcome::Event(event) => Ok(event),
            Outcome::Retry(_) => Err(de::Error::custom("`data` could not be read")),
        }
    }
}

/// `type`, then `event_timestamp` when there is one, then `data`, then the other fields.
impl Serialize for Event<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        fn envelope<M: SerializeMap, D: Serialize>(
            map: &mut M,
            envelope: &Envelope<'_, D>,
        ) -> Result<(), M::Error> {
            if let Some(timestamp) = &envelope.event_timestamp {
                map.serialize_entry("event_timestamp", timestamp)?;
            }
            // A `data` that was not an object is in `extra`, and written from there.
            if !envelope.extra.contains_key("data") {
                map.serialize_entry("data", &envelope.data)?;
            }
            for (key, value) in &envelope.extra {
                map.serialize_entry(key, value)?;
            }
            Ok(())
        }
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", self.event_type())?;
        match self {
            Event::SpeechToTextTranscription(e) => envelope(&mut map, e)?,
            Event::PostCallTranscription(e) => envelope(&mut map, e)?,
            Event::PostCallAudio(e) => envelope(&mut map, e)?,
            Event::CallInitiationFailure(e) => envelope(&mut map, e)?,
            Event::VoiceRemovalNotice(e)
            | Event::VoiceRemovalNoticeWithdrawn(e)
            | Event::VoiceRemoved(e) => envelope(&mut map, e)?,
            Event::Unknown(e) => {
                if let Some(timestamp) = &e.event_timestamp {
                    map.serialize_entry("event_timestamp", timestamp)?;
                }
                if let Some(data) = &e.data {
                    map.serialize_entry("data", data)?;
                }
                for (key, value) in &e.extra {
                    map.serialize_entry(key, value)?;
                }
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_read_as_unix_seconds() {
        let at = |text: &str| Timestamp::Text(Cow::Borrowed(text)).unix_secs();
        assert_eq!(at("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(at("2025-02-14T12:48:17Z"), Some(1_739_537_297));
        assert_eq!(at("2025-02-14t12:48:17.999z"), Some(1_739_537_297));
        assert_eq!(at("2025-02-14 13:48:17+01:00"), Some(1_739_537_297));
        assert_eq!(at("2025-02-14T07:48:17-05:00"), Some(1_739_537_297));
        assert_eq!(at("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(at("1969-12-31T23:59:59Z"), Some(-1));
        assert_eq!(at(" 1739537297 "), Some(1_739_537_297));
        assert_eq!(at("1739537297.9"), Some(1_739_537_297));
        for bad in [
            "2025-02-30T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-02-14T24:00:00Z",
            "2025-02-14T12:48:17",
            "2025-02-14T12:48:17.Z",
            "2025-02-14T12:48:17+0100",
            "2025-02-14",
            "yesterday",
            "",
        ] {
            assert_eq!(at(bad), None, "{bad}");
        }
    }

    #[test]
    fn numeric_timestamps_are_rounded_down() {
        let number = |n: Number| Timestamp::Number(n).unix_secs();
        assert_eq!(number(1_739_537_297_i64.into()), Some(1_739_537_297));
        assert_eq!(number(Number::from_f64(-0.5).unwrap()), Some(-1));
        assert_eq!(number(Number::from_f64(1e300).unwrap()), None);
        assert_eq!(number(u64::MAX.into()), None);
    }

    #[test]
    fn every_known_kind_is_read_back_as_its_name() {
        for name in [
            "speech_to_text_transcription",
            "post_call_transcription",
            "post_call_audio",
            "call_initiation_failure",
            "voice_removal_notice",
            "voice_removal_notice_withdrawn",
            "voice_removed",
        ] {
            let body = format!(r#"{{"type":"{name}","data":{{}}}}"#);
            let event = Event::from_slice(body.as_bytes()).unwrap();
            assert_eq!(event.event_type(), name);
            assert!(!matches!(event, Event::Unknown(_)));
        }
    }
}
