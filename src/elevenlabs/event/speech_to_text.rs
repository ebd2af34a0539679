//! `speech_to_text_transcription`: the result of an asynchronous speech-to-text request.

use std::{borrow::Cow, io};

use serde::{
    de::{value::MapAccessDeserializer, MapAccess, SeqAccess},
    Deserialize, Deserializer, Serialize, Serializer,
};
use serde_json::{Map, Value};

use super::{
    audio,
    lenient::{
        accept, lenient_str_enum, lenient_struct, required, to_value, Accept, FieldDe, Lenient,
        ToStatic,
    },
};

lenient_struct! {
    /// The `data` of a `speech_to_text_transcription` event: the transcript of the audio sent
    /// with `webhook=true` to `POST /v1/speech-to-text`, delivered once it is ready.
    pub struct SpeechToTextTranscription<'a> {
        /// The id the request was answered with (HTTP 202), which identifies the delivery.
        "request_id" => request_id: Option<Cow<'a, str>>,
        /// The transcript: one channel, or one transcript per channel.
        "transcription" => transcription: Option<Transcription<'a>>,
        /// The `webhook_metadata` given with the request, returned as it was given: an object or
        /// a string (both are documented).
        "webhook_metadata" => webhook_metadata: Option<WebhookMetadata<'a>>,
    }
}

/// The transcript of a speech-to-text request: one channel, or, for a request with
/// `use_multi_channel`, one transcript per audio channel (the `transcripts` array).
///
/// An object with a `transcripts` array is multichannel; any other object is one channel.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Transcription<'a> {
    /// A single channel (or a combined) transcript.
    Single(Transcript<'a>),
    /// One transcript per channel.
    Multichannel(MultichannelTranscript<'a>),
}

impl<'a> Transcription<'a> {
    /// Every channel's transcript: the one transcript, or those of a multichannel result.
    #[must_use]
    pub fn transcripts(&self) -> &[Transcript<'a>] {
        match self {
            Transcription::Single(transcript) => std::slice::from_ref(transcript),
            Transcription::Multichannel(multi) => multi.transcripts.as_deref().unwrap_or(&[]),
        }
    }

    /// The transcription id, when the sender gave one.
    #[must_use]
    pub fn transcription_id(&self) -> Option<&str> {
        match self {
            Transcription::Single(transcript) => transcript.transcription_id.as_deref(),
            Transcription::Multichannel(multi) => multi.transcription_id.as_deref(),
        }
    }

    /// The same value owning all its strings, no longer tied to the input's lifetime.
    #[must_use]
    pub fn into_owned(self) -> Transcription<'static> {
        match self {
            Transcription::Single(transcript) => Transcription::Single(transcript.into_owned()),
            Transcription::Multichannel(multi) => Transcription::Multichannel(multi.into_owned()),
        }
    }
}

lenient_struct! {
    /// One channel's transcript (the synchronous speech-to-text response's shape).
    pub struct Transcript<'a> {
        /// The detected (or requested) language, e.g. `en`.
        "language_code" => language_code: Option<Cow<'a, str>>,
        /// How sure the model is of the language, 0 to 1.
        "language_probability" => language_probability: Option<f64>,
        /// The whole text.
        "text" => text: Option<Cow<'a, str>>,
        /// Words, the spacing between them and audio events, in order.
        "words" => words: Option<Vec<Word<'a>>>,
        /// The audio channel, in a multichannel result.
        "channel_index" => channel_index: Option<i64>,
        /// The formats asked for with `additional_formats` (SRT, DOCX, ...). Items may be `null`.
        "additional_formats" => additional_formats: Option<Vec<Option<AdditionalFormat<'a>>>>,
        /// The transcription id, to fetch it again with `GET /v1/speech-to-text/transcripts/{id}`.
        "transcription_id" => transcription_id: Option<Cow<'a, str>>,
        /// Entities detected in the text, when entity detection was asked for.
        "entities" => entities: Option<Vec<Entity<'a>>>,
        /// The audio's duration in seconds.
        "audio_duration_secs" => audio_duration_secs: Option<f64>,
    }
}

impl<'a> Transcript<'a> {
    /// The words, spacing and audio events (empty when the sender gave none).
    #[must_use]
    pub fn words(&self) -> &[Word<'a>] {
        self.words.as_deref().unwrap_or(&[])
    }
}

lenient_struct! {
    /// A multichannel result: one transcript per channel, each with its `channel_index`.
    pub struct MultichannelTranscript<'a> {
        /// One transcript per channel.
        "transcripts" => transcripts: Option<Vec<Transcript<'a>>>,
        /// The transcription id.
        "transcription_id" => transcription_id: Option<Cow<'a, str>>,
        /// The audio's duration in seconds.
        "audio_duration_secs" => audio_duration_secs: Option<f64>,
    }
}

lenient_struct! {
    /// The union of a transcript's and a multichannel result's fields: what a `transcription`
    /// object is read as before it is known to be one or the other (keys come in any order).
    struct TranscriptionFields<'a> {
        "language_code" => language_code: Option<Cow<'a, str>>,
        "language_probability" => language_probability: Option<f64>,
        "text" => text: Option<Cow<'a, str>>,
        "words" => words: Option<Vec<Word<'a>>>,
        "channel_index" => channel_index: Option<i64>,
        "additional_formats" => additional_formats: Option<Vec<Option<AdditionalFormat<'a>>>>,
        "transcription_id" => transcription_id: Option<Cow<'a, str>>,
        "entities" => entities: Option<Vec<Entity<'a>>>,
        "audio_duration_secs" => audio_duration_secs: Option<f64>,
        "transcripts" => transcripts: Option<Vec<Transcript<'a>>>,
    }
}

impl<'a> From<TranscriptionFields<'a>> for Transcription<'a> {
    fn from(fields: TranscriptionFields<'a>) -> Self {
        let TranscriptionFields {
            language_code,
            language_probability,
            text,
            words,
            channel_index,
            additional_formats,
            transcription_id,
            entities,
            audio_duration_secs,
            transcripts,
            mut extra,
        } = fields;
        let Some(transcripts) = transcripts else {
            return Transcription::Single(Transcript {
                language_code,
                language_probability,
                text,
                words,
                channel_index,
                additional_formats,
                transcription_id,
                entities,
                audio_duration_secs,
                extra,
            });
        };
        // A multichannel result documents none of a single transcript's own fields: keep any
        // that came, as received.
        fn keep<T: Serialize>(extra: &mut Map<String, Value>, key: &str, value: Option<T>) {
            if let Some(value) = value {
                extra.insert(key.to_owned(), to_value(&value));
            }
        }
        keep(&mut extra, "language_code", language_code);
        keep(&mut extra, "language_probability", language_probability);
        keep(&mut extra, "text", text);
        keep(&mut extra, "words", words);
        keep(&mut extra, "channel_index", channel_index);
        keep(&mut extra, "additional_formats", additional_formats);
        keep(&mut extra, "entities", entities);
        Transcription::Multichannel(MultichannelTranscript {
            transcripts: Some(transcripts),
            transcription_id,
            audio_duration_secs,
            extra,
        })
    }
}

impl<'de: 'a, 'a> FieldDe<'de> for Transcription<'a> {
    fn de<D: Deserializer<'de>>(deserializer: D) -> Result<Lenient<Self>, D::Error> {
        Ok(TranscriptionFields::de(deserializer)?.map(Transcription::from))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Transcription<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        required(Self::de(deserializer)?, "a transcription object")
    }
}

impl Serialize for Transcription<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Transcription::Single(transcript) => transcript.serialize(serializer),
            Transcription::Multichannel(multi) => multi.serialize(serializer),
        }
    }
}

impl ToStatic for Transcription<'_> {
    type Static = Transcription<'static>;

    fn to_static(self) -> Self::Static {
        self.into_owned()
    }
}

lenient_struct! {
    /// A word, the spacing after it, or an audio event (`(laughter)`), with its timing.
    pub struct Word<'a> {
        /// The text: a word, the spacing, or the event's description.
        "text" => text: Option<Cow<'a, str>>,
        /// What this entry is (the JSON `type`).
        "type" => kind: Option<WordKind<'a>>,
        /// Where it starts, in seconds from the start of the audio.
        "start" => start: Option<f64>,
        /// Where it ends, in seconds.
        "end" => end: Option<f64>,
        /// Who said it, with diarization (`speaker_0`, ...).
        "speaker_id" => speaker_id: Option<Cow<'a, str>>,
        /// The log probability of the word, at most 0 (the API documents it; the examples in
        /// the documentation leave it out).
        "logprob" => logprob: Option<f64>,
        /// Its characters with their timing, when character timestamps were asked for.
        "characters" => characters: Option<Vec<Character<'a>>>,
        /// The audio channel, in a multichannel result.
        "channel_index" => channel_index: Option<i64>,
    }
}

lenient_str_enum! {
    /// What a [`Word`] is.
    pub enum WordKind<'a> {
        /// A word.
        "word" => Word,
        /// The spacing between two words.
        "spacing" => Spacing,
        /// A non-speech sound, e.g. `(laughter)`.
        "audio_event" => AudioEvent,
    }
}

lenient_struct! {
    /// One character of a [`Word`], with its timing.
    pub struct Character<'a> {
        /// The character.
        "text" => text: Option<Cow<'a, str>>,
        /// Where it starts, in seconds.
        "start" => start: Option<f64>,
        /// Where it ends, in seconds.
        "end" => end: Option<f64>,
    }
}

lenient_struct! {
    /// A transcript in a format asked for with `additional_formats` (SRT, plain text, DOCX...).
    pub struct AdditionalFormat<'a> {
        /// The format asked for, e.g. `srt`.
        "requested_format" => requested_format: Option<Cow<'a, str>>,
        /// The file extension, e.g. `srt`.
        "file_extension" => file_extension: Option<Cow<'a, str>>,
        /// The content's media type.
        "content_type" => content_type: Option<Cow<'a, str>>,
        /// Whether `content` is base64 (binary formats) or the text itself.
        "is_base64_encoded" => is_base64_encoded: Option<bool>,
        /// The content, base64 or text as `is_base64_encoded` says; it can be large.
        "content" => content: Option<Cow<'a, str>>,
    }
}

impl AdditionalFormat<'_> {
    /// Writes the content's bytes to `out`: decoded when `is_base64_encoded` (in chunks, with
    /// the fixed buffers of [`Base64Audio::decode_to`](super::Base64Audio::decode_to)), the
    /// text as it is otherwise. Returns how many bytes were written (0 without content).
    ///
    /// # Errors
    /// `InvalidData` (with a [`DecodeError`](super::DecodeError) inside) when the content is
    /// not valid base64, and any error of `out`.
    pub fn write_content_to<W: io::Write>(&self, mut out: W) -> io::Result<u64> {
        let Some(content) = &self.content else {
            return Ok(0);
        };
        if self.is_base64_encoded == Some(true) {
            audio::decode_base64_to(content, out)
        } else {
            out.write_all(content.as_bytes())?;
            Ok(content.len() as u64)
        }
    }
}

lenient_struct! {
    /// An entity detected in the text (entity detection).
    pub struct Entity<'a> {
        /// The entity's text.
        "text" => text: Option<Cow<'a, str>>,
        /// Its kind, e.g. `person_name`.
        "entity_type" => entity_type: Option<Cow<'a, str>>,
        /// Where it starts in the transcript's text, in characters.
        "start_char" => start_char: Option<i64>,
        /// Where it ends, in characters.
        "end_char" => end_char: Option<i64>,
    }
}

/// The `webhook_metadata` given with a speech-to-text request, returned in the delivery. The
/// API takes a JSON object or a string (depth at most 2, at most 16 KB); both are accepted, and
/// any other JSON value is kept as `Other`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WebhookMetadata<'a> {
    /// An object, as given.
    Object(Map<String, Value>),
    /// A string, as given (possibly JSON text itself: see [`WebhookMetadata::to_object`]).
    Text(Cow<'a, str>),
    /// Any other JSON value, as received.
    Other(Value),
}

impl WebhookMetadata<'_> {
    /// The metadata as an object: the object itself, or a string holding a JSON object parsed.
    #[must_use]
    pub fn to_object(&self) -> Option<Cow<'_, Map<String, Value>>> {
        match self {
            WebhookMetadata::Object(object) => Some(Cow::Borrowed(object)),
            WebhookMetadata::Text(text) => serde_json::from_str(text).ok().map(Cow::Owned),
            WebhookMetadata::Other(_) => None,
        }
    }

    /// The same value, no longer tied to the input's lifetime.
    #[must_use]
    pub fn into_owned(self) -> WebhookMetadata<'static> {
        match self {
            WebhookMetadata::Object(object) => WebhookMetadata::Object(object),
            WebhookMetadata::Text(text) => WebhookMetadata::Text(text.to_static()),
            WebhookMetadata::Other(other) => WebhookMetadata::Other(other),
        }
    }
}

impl<'de: 'a, 'a> Accept<'de> for WebhookMetadata<'a> {
    fn string(v: Cow<'de, str>) -> Lenient<Self> {
        Ok(WebhookMetadata::Text(v))
    }

    fn object<A: MapAccess<'de>>(map: A) -> Result<Lenient<Self>, A::Error> {
        Map::deserialize(MapAccessDeserializer::new(map)).map(|m| Ok(WebhookMetadata::Object(m)))
    }

    fn signed(v: i64) -> Lenient<Self> {
        Ok(WebhookMetadata::Other(v.into()))
    }

    fn unsigned(v: u64) -> Lenient<Self> {
        Ok(WebhookMetadata::Other(v.into()))
    }

    fn float(v: f64) -> Lenient<Self> {
        Ok(WebhookMetadata::Other(v.into()))
    }

    fn boolean(v: bool) -> Lenient<Self> {
        Ok(WebhookMetadata::Other(v.into()))
    }

    fn array<A: SeqAccess<'de>>(seq: A) -> Result<Lenient<Self>, A::Error> {
        Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
            .map(|v| Ok(WebhookMetadata::Other(v)))
    }
}

impl<'de: 'a, 'a> FieldDe<'de> for WebhookMetadata<'a> {
    fn de<D: Deserializer<'de>>(deserializer: D) -> Result<Lenient<Self>, D::Error> {
        accept(deserializer)
    }
}

impl Serialize for WebhookMetadata<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            WebhookMetadata::Object(object) => object.serialize(serializer),
            WebhookMetadata::Text(text) => serializer.serialize_str(text),
            WebhookMetadata::Other(other) => other.serialize(serializer),
        }
    }
}

impl ToStatic for WebhookMetadata<'_> {
    type Static = WebhookMetadata<'static>;

    fn to_static(self) -> Self::Static {
        self.into_owned()
    }
}
