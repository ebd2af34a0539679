//! `post_call_audio`: a conversation's full audio, base64 MP3, and its streaming decoder.

use std::{borrow::Cow, fmt, io};

use base64::{
    alphabet,
    engine::{general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig},
    DecodeSliceError, Engine as _,
};
use serde::{Deserializer, Serialize, Serializer};

use super::lenient::{accept, lenient_struct, Accept, FieldDe, Lenient, ToStatic};

lenient_struct! {
    /// The `data` of a `post_call_audio` event: the whole conversation's audio, sent once the
    /// call has ended (with `transfer-encoding: chunked`: bodies of several megabytes).
    pub struct PostCallAudio<'a> {
        /// The agent that held the conversation.
        "agent_id" => agent_id: Option<Cow<'a, str>>,
        /// The conversation, shared with its `post_call_transcription` event.
        "conversation_id" => conversation_id: Option<Cow<'a, str>>,
        /// The audio: base64 of an MP3 file.
        "full_audio" => full_audio: Option<Base64Audio<'a>>,
    }
}

/// Base64 text held as received, decoded on demand, in chunks.
///
/// # Memory
///
/// Parsed with [`Event::from_slice`](super::Event::from_slice), the text is borrowed from the
/// request body: the event holds no second copy of it. (A JSON string with an escape sequence
/// in it, such as `\/`, cannot be borrowed: serde_json unescapes it into one owned copy, and
/// [`is_borrowed`](Base64Audio::is_borrowed) says so. ElevenLabs' JSON has no reason to escape
/// base64, whose alphabet needs none.)
///
/// [`decode_to`](Base64Audio::decode_to) decodes 64 KiB of text at a time into a 48 KiB buffer
/// and writes each piece out before the next: whatever the audio's size, it holds those
/// 112 KiB and nothing else, so a file, a socket or a hash sees the MP3 without it ever being
/// whole in memory. [`decode`](Base64Audio::decode) builds the bytes in a `Vec` sized once
/// (three quarters of the text's length), for when the whole MP3 is wanted in memory.
///
/// Decoding is lenient where senders differ: padding (`=`) may be present or absent, and ASCII
/// whitespace (line breaks every 76 characters, as MIME writes base64) is skipped.
#[derive(Clone, PartialEq, Eq)]
pub struct Base64Audio<'a>(Cow<'a, str>);

/// The standard alphabet, padding optional, non-zero trailing bits accepted.
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Base64 text decoded at a time (a multiple of 4, so chunks split on whole quads).
const TEXT_CHUNK: usize = 64 * 1024;
/// The bytes one text chunk decodes to.
const BYTES_CHUNK: usize = TEXT_CHUNK / 4 * 3;

impl<'a> Base64Audio<'a> {
    /// Wraps base64 text.
    #[must_use]
    pub fn new(text: impl Into<Cow<'a, str>>) -> Self {
        Base64Audio(text.into())
    }

    /// The base64 text, as received.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the text is borrowed from the input rather than copied (see the type's docs).
    #[must_use]
    pub fn is_borrowed(&self) -> bool {
        matches!(self.0, Cow::Borrowed(_))
    }

    /// An upper bound on the decoded length, in bytes.
    #[must_use]
    pub fn decoded_len_estimate(&self) -> usize {
        self.0.len().div_ceil(4) * 3
    }

    /// Decodes the audio into `out`, 48 KiB at a time, and returns how many bytes were
    /// written. Holds 112 KiB of buffers whatever the audio's size (see the type's docs).
    ///
    /// # Errors
    /// `InvalidData`, with a [`DecodeError`] inside, when the text is not base64 (what was
    /// decoded before the bad chunk has been written), and any error of `out`.
    pub fn decode_to<W: io::Write>(&self, out: W) -> io::Result<u64> {
        decode_base64_to(&self.0, out)
    }

    /// Decodes the whole audio into one `Vec`, allocated once.
    ///
    /// # Errors
    /// [`DecodeError`] when the text is not base64.
    pub fn decode(&self) -> Result<Vec<u8>, DecodeError> {
        let mut bytes = Vec::with_capacity(self.decoded_len_estimate());
        decode_chunks(
            &self.0,
            |chunk| {
                bytes.extend_from_slice(chunk);
                Ok::<_, DecodeError>(())
            },
            |error| error,
        )?;
        Ok(bytes)
    }

    /// The same value, no longer tied to the input's lifetime (copies a borrowed text).
    #[must_use]
    pub fn into_owned(self) -> Base64Audio<'static> {
        Base64Audio(self.0.to_static())
    }
}

/// Shows the length, not megabytes of base64.
impl fmt::Debug for Base64Audio<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Base64Audio")
            .field("len", &self.0.len())
            .field("borrowed", &self.is_borrowed())
            .finish()
    }
}

impl<'de: 'a, 'a> Accept<'de> for Base64Audio<'a> {
    fn string(v: Cow<'de, str>) -> Lenient<Self> {
        Ok(Base64Audio(v))
    }
}

impl<'de: 'a, 'a> FieldDe<'de> for Base64Audio<'a> {
    fn de<D: Deserializer<'de>>(deserializer: D) -> Result<Lenient<Self>, D::Error> {
        accept(deserializer)
    }
}

impl Serialize for Base64Audio<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl ToStatic for Base64Audio<'_> {
    type Static = Base64Audio<'static>;

    fn to_static(self) -> Self::Static {
        self.into_owned()
    }
}

/// Base64 text that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    offset: usize,
}

impl DecodeError {
    /// About where in the text (in bytes, whitespace not counted) decoding failed.
    #[must_use]
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid base64 near byte {}", self.offset)
    }
}

impl std::error::Error for DecodeError {}

impl From<DecodeError> for io::Error {
    fn from(error: DecodeError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, error)
    }
}

/// Decodes `text` into `out` in chunks (see [`Base64Audio`]'s docs).
pub(crate) fn decode_base64_to<W: io::Write>(text: &str, mut out: W) -> io::Result<u64> {
    decode_chunks(text, |chunk| out.write_all(chunk), io::Error::from)
}

/// Decodes `text` a chunk at a time, handing each decoded chunk to `sink`. The fast path decodes
/// straight from the text; the first chunk that fails and holds whitespace switches to copying
/// the rest, whitespace dropped, through a 64 KiB buffer.
fn decode_chunks<E>(
    text: &str,
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
    error: impl Fn(DecodeError) -> E,
) -> Result<u64, E> {
    let text = text.as_bytes();
    let mut decoded = vec![0; BYTES_CHUNK];
    let mut written = 0_u64;
    let mut decode = |chunk: &[u8], at: usize, written: &mut u64| -> Result<(), DecodeResult<E>> {
        match ENGINE.decode_slice(chunk, &mut decoded) {
            Ok(n) => {
                *written += n as u64;
                sink(&decoded[..n]).map_err(DecodeResult::Sink)
            }
            Err(DecodeSliceError::DecodeError(e)) => Err(DecodeResult::Invalid(at + offset_of(&e))),
            // A text chunk of at most TEXT_CHUNK decodes to at most BYTES_CHUNK bytes.
            Err(DecodeSliceError::OutputSliceTooSmall) => Err(DecodeResult::Invalid(at)),
        }
    };
    enum DecodeResult<E> {
        Invalid(usize),
        Sink(E),
    }
    let finish = |result: Result<(), DecodeResult<E>>| -> Result<(), E> {
        match result {
            Ok(()) => Ok(()),
            Err(DecodeResult::Sink(e)) => Err(e),
            Err(DecodeResult::Invalid(offset)) => Err(error(DecodeError { offset })),
        }
    };

    let mut at = 0;
    while at < text.len() {
        let chunk = &text[at..(at + TEXT_CHUNK).min(text.len())];
        match decode(chunk, at, &mut written) {
            Err(DecodeResult::Invalid(_)) if text[at..].iter().any(u8::is_ascii_whitespace) => {
                break;
            }
            result => finish(result)?,
        }
        at += chunk.len();
    }
    if at < text.len() {
        // Whitespace in the rest: compact it away, a chunk at a time.
        let mut compact = Vec::with_capacity(TEXT_CHUNK);
        let mut compact_at = at;
        for &byte in &text[at..] {
            if byte.is_ascii_whitespace() {
                continue;
            }
            compact.push(byte);
            if compact.len() == TEXT_CHUNK {
                finish(decode(&compact, compact_at, &mut written))?;
                compact_at += compact.len();
                compact.clear();
            }
        }
        if !compact.is_empty() {
            finish(decode(&compact, compact_at, &mut written))?;
        }
    }
    Ok(written)
}

fn offset_of(error: &base64::DecodeError) -> usize {
    match *error {
        base64::DecodeError::InvalidByte(offset, _)
        | base64::DecodeError::InvalidLastSymbol(offset, _) => offset,
        base64::DecodeError::InvalidLength(length) => length,
        base64::DecodeError::InvalidPadding => 0,
    }
}
