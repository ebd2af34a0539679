//! Signature schemes: how a sender signs a delivery, and how to check it.
//!
//! A [`Scheme`] verifies in two steps, so that a layer can turn forgeries away before reading
//! the body:
//!
//! 1. [`Scheme::begin`] parses the signature headers and checks the signed timestamp against the
//!    clock, *before any body byte is read*, and returns a [`Verifier`] already fed the signed
//!    prefix;
//! 2. the body is fed to [`Verifier::update`] frame by frame as it arrives, and
//!    [`Verifier::finish`] compares the result, in constant time, with every signature the
//!    request carries under every configured secret.
//!
//! Two schemes ship with hookgate:
//!
//! - [`ElevenLabs`]: `ElevenLabs-Signature: t=<unix secs>,v0=<hex HMAC-SHA256 of "t.body">`;
//! - `StandardWebhooks` (feature `standard-webhooks`): the open
//!   [Standard Webhooks](https://www.standardwebhooks.com/) spec, used by many senders.
//!
//! [`Scheme::verify`] does both steps at once over a complete body, for code that is not a tower
//! stack (a CLI, a test, a queue consumer):
//!
//! ```
//! use std::time::{Duration, SystemTime, UNIX_EPOCH};
//! use hookgate::scheme::{ElevenLabs, Scheme, VerifyError};
//!
//! let scheme = ElevenLabs::new("test_secret")?;
//! let body = br#"{"type":"speech_to_text_transcription","data":{}}"#;
//! let now = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
//!
//! let mut headers = http::HeaderMap::new();
//! headers.insert("elevenlabs-signature", scheme.sign(1_600_000_000, body).parse()?);
//! let verified = scheme.verify(&headers, body, now)?;
//! assert_eq!(verified.unix_timestamp(), 1_600_000_000);
//! assert_eq!(verified.secret_index(), 0);
//!
//! // One changed byte, and the delivery is refused.
//! let err = scheme.verify(&headers, br#"{"type":"speech_to_text_transcription","data":[]}"#, now);
//! assert!(matches!(err, Err(VerifyError::SignatureMismatch { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Security notes
//!
//! - Verification runs over the exact bytes received, never over re-serialised JSON, and does
//!   not require UTF-8.
//! - Comparisons are constant time; secrets are kept only as pre-keyed MAC states and never
//!   appear in `Debug` output, errors or problem bodies.
//! - Nothing but the timestamp and the body is signed by ElevenLabs: within the tolerance window
//!   a captured delivery can be replayed byte for byte. [`Verified::signature`] is the key to
//!   deduplicate such replays.

use std::{
    error::Error,
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::problem::{Problem, ProblemCode};

mod elevenlabs;
mod mac;
#[cfg(feature = "standard-webhooks")]
mod standard_webhooks;

pub use elevenlabs::ElevenLabs;
#[cfg(feature = "standard-webhooks")]
pub use standard_webhooks::StandardWebhooks;

/// A way senders sign deliveries. Implement it to verify a sender hookgate does not ship.
pub trait Scheme: Send + Sync + 'static {
    /// The state of one request's verification, fed the body as it arrives.
    type Verifier: Verifier;

    /// Parses the signature headers and checks the signed timestamp against `now`, before any
    /// body byte is read. Errors here are answered without reading the body.
    fn begin(&self, headers: &HeaderMap, now: SystemTime) -> Result<Self::Verifier, VerifyError>;

    /// Verifies a complete body in one call.
    fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let mut verifier = self.begin(headers, now)?;
        verifier.update(body);
        verifier.finish()
    }
}

/// One request's verification in progress: [`Scheme::begin`] made it, the body is fed to it.
pub trait Verifier: Send + 'static {
    /// Feeds the next bytes of the body.
    fn update(&mut self, chunk: &[u8]);

    /// Compares the MACs with the signatures the request carries.
    fn finish(self) -> Result<Verified, VerifyError>;
}

/// Proof that a request was verified, inserted into its extensions by
/// [`VerifySignatureLayer`](crate::VerifySignatureLayer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    timestamp: u64,
    secret_index: usize,
    signature: SignatureDigest,
    message_id: Option<HeaderValue>,
}

impl Verified {
    pub(crate) fn new(
        timestamp: u64,
        secret_index: usize,
        signature: [u8; mac::DIGEST_LEN],
        message_id: Option<HeaderValue>,
    ) -> Self {
        Self {
            timestamp,
            secret_index,
            signature: SignatureDigest(signature),
            message_id,
        }
    }

    /// The signed timestamp, in seconds since the Unix epoch.
    #[must_use]
    pub fn unix_timestamp(&self) -> u64 {
        self.timestamp
    }

    /// The signed timestamp.
    #[must_use]
    pub fn timestamp(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.timestamp)
    }

    /// Which configured secret matched, in configuration order: 0 is the secret given to the
    /// constructor, 1 the first `with_secret`, and so on. Watch it during a key rotation to know
    /// when the old secret is no longer used.
    #[must_use]
    pub fn secret_index(&self) -> usize {
        self.secret_index
    }

    /// The signature that matched. Identical deliveries carry identical signatures, so it is a
    /// replay key: a replayed delivery has the same one.
    #[must_use]
    pub fn signature(&self) -> &SignatureDigest {
        &self.signature
    }

    /// The sender's message id, for schemes that sign one (Standard Webhooks' `webhook-id`).
    #[must_use]
    pub fn message_id(&self) -> Option<&HeaderValue> {
        self.message_id.as_ref()
    }
}

/// An HMAC-SHA256 signature that matched. It was sent in the clear, so it is no secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignatureDigest([u8; mac::DIGEST_LEN]);

impl SignatureDigest {
    /// The raw 32 bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, as in the `v0=` element.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for SignatureDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignatureDigest({})", self.to_hex())
    }
}

impl fmt::Display for SignatureDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a delivery was refused. Each variant maps to a status and a [`ProblemCode`]; the
/// `Display` text says exactly what was wrong and never contains a secret or an expected
/// signature.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// A header the scheme needs is absent (401).
    MissingHeader {
        /// The header, as the sender's documentation spells it.
        header: &'static str,
    },
    /// A header the scheme needs cannot be parsed (400).
    Malformed {
        /// The header, as the sender's documentation spells it.
        header: &'static str,
        /// What is wrong with it.
        reason: Malformed,
    },
    /// The signed timestamp is older than the tolerance (401).
    TimestampStale {
        /// How old the timestamp is.
        age: Duration,
        /// The configured tolerance.
        tolerance: Duration,
    },
    /// The signed timestamp is further ahead than the allowed clock skew (401).
    TimestampInFuture {
        /// How far ahead of this receiver's clock it is.
        ahead: Duration,
        /// The configured skew.
        skew: Duration,
    },
    /// No configured secret produced any of the signatures sent (401).
    SignatureMismatch {
        /// How many signatures the request carried.
        signatures: usize,
        /// How many secrets were tried.
        secrets: usize,
    },
}

impl VerifyError {
    /// The status this error is answered with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Malformed { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The stable code naming the cause.
    #[must_use]
    pub fn code(&self) -> ProblemCode {
        match self {
            Self::MissingHeader { .. } => ProblemCode::MISSING_SIGNATURE,
            Self::Malformed { .. } => ProblemCode::MALFORMED_SIGNATURE,
            Self::TimestampStale { .. } => ProblemCode::TIMESTAMP_STALE,
            Self::TimestampInFuture { .. } => ProblemCode::TIMESTAMP_IN_FUTURE,
            Self::SignatureMismatch { .. } => ProblemCode::SIGNATURE_MISMATCH,
        }
    }

    /// The problem+json answer for this error.
    pub fn to_problem(&self) -> Problem {
        Problem::new(self.status(), self.code()).with_detail(self.to_string())
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingHeader { header } => write!(f, "the {header} header is missing"),
            Self::Malformed { header, reason } => {
                write!(f, "the {header} header is malformed: {reason}")
            }
            Self::TimestampStale { age, tolerance } => write!(
                f,
                "the signed timestamp is {} s old, more than the {} s tolerance",
                age.as_secs(),
                tolerance.as_secs()
            ),
            Self::TimestampInFuture { ahead, skew } => write!(
                f,
                "the signed timestamp is {} s ahead of this receiver's clock, more than the {} s allowed skew",
                ahead.as_secs(),
                skew.as_secs()
            ),
            Self::SignatureMismatch {
                signatures,
                secrets,
            } => write!(
                f,
                "none of the {secrets} configured secret(s) produced any of the {signatures} signature(s) sent"
            ),
        }
    }
}

impl Error for VerifyError {}

/// What is wrong with a malformed signature header. Positions count the header's elements from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// The header appears on several lines with different values.
    ConflictingHeaders,
    /// The value is not visible ASCII.
    NotText,
    /// An element is empty (e.g. a doubled or trailing separator).
    EmptyElement {
        /// Which element.
        position: usize,
    },
    /// An element has no `=` (or `,` in Standard Webhooks) between its name and value.
    ElementWithoutValue {
        /// Which element.
        position: usize,
    },
    /// No timestamp element.
    MissingTimestamp,
    /// More than one timestamp element.
    DuplicateTimestamp,
    /// The timestamp is not a non-negative integer of seconds that fits in 64 bits.
    InvalidTimestamp,
    /// No signature of the version this scheme checks.
    MissingSignature,
    /// A signature element with an empty value.
    EmptySignature {
        /// Which element.
        position: usize,
    },
    /// A signature of the wrong length (truncated or padded).
    SignatureLength {
        /// Which element.
        position: usize,
        /// Its length in characters.
        found: usize,
        /// The length a signature has.
        expected: usize,
    },
    /// A signature that is not valid hex.
    SignatureNotHex {
        /// Which element.
        position: usize,
    },
    /// A signature that is not valid base64 of 32 bytes.
    SignatureNotBase64 {
        /// Which element.
        position: usize,
    },
    /// More signatures than a sender ever sends.
    TooManySignatures {
        /// The most accepted.
        max: usize,
    },
    /// The message id is empty.
    EmptyMessageId,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConflictingHeaders => {
                f.write_str("it is sent several times with different values")
            }
            Self::NotText => f.write_str("it is not visible ASCII text"),
            Self::EmptyElement { position } => write!(f, "element {position} is empty"),
            Self::ElementWithoutValue { position } => {
                write!(f, "element {position} has no name/value separator")
            }
            Self::MissingTimestamp => f.write_str("it has no timestamp element"),
            Self::DuplicateTimestamp => f.write_str("it has more than one timestamp element"),
            Self::InvalidTimestamp => f.write_str(
                "the timestamp is not a non-negative whole number of seconds that fits in 64 bits",
            ),
            Self::MissingSignature => f.write_str("it has no signature of a supported version"),
            Self::EmptySignature { position } => write!(f, "signature element {position} is empty"),
            Self::SignatureLength {
                position,
                found,
                expected,
            } => write!(
                f,
                "signature element {position} has {found} characters, expected {expected}"
            ),
            Self::SignatureNotHex { position } => {
                write!(f, "signature element {position} is not hexadecimal")
            }
            Self::SignatureNotBase64 { position } => {
                write!(f, "signature element {position} is not base64 of 32 bytes")
            }
            Self::TooManySignatures { max } => {
                write!(f, "it carries more than {max} signatures")
            }
            Self::EmptyMessageId => f.write_str("the message id is empty"),
        }
    }
}

/// The one value of a header that must not be ambiguous: absent is an error, repeated lines are
/// accepted only when identical.
fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    display: &'static str,
) -> Result<&'a str, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let first = values
        .next()
        .ok_or(VerifyError::MissingHeader { header: display })?;
    let malformed = |reason| VerifyError::Malformed {
        header: display,
        reason,
    };
    if values.any(|other| other != first) {
        return Err(malformed(Malformed::ConflictingHeaders));
    }
    first.to_str().map_err(|_| malformed(Malformed::NotText))
}

/// Parses a timestamp of whole seconds: ASCII digits only (no sign, no spaces), fitting in u64.
fn parse_unix_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Checks a signed timestamp against the receiver's clock.
fn check_freshness(
    timestamp: u64,
    now: SystemTime,
    tolerance: Duration,
    skew: Duration,
) -> Result<(), VerifyError> {
    let signed = Duration::from_secs(timestamp);
    // A clock before 1970 counts as 1970: nothing is fresh then but timestamps near 0.
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    if let Some(age) = now.checked_sub(signed) {
        if age > tolerance {
            return Err(VerifyError::TimestampStale { age, tolerance });
        }
    } else {
        let ahead = signed - now;
        if ahead > skew {
            return Err(VerifyError::TimestampInFuture { ahead, skew });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: HeaderName = HeaderName::from_static("x-sig");

    #[test]
    fn single_header_absent_is_missing() {
        let err = single_header(&HeaderMap::new(), &NAME, "X-Sig").unwrap_err();
        assert_eq!(err, VerifyError::MissingHeader { header: "X-Sig" });
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(err.code(), ProblemCode::MISSING_SIGNATURE);
    }

    #[test]
    fn single_header_identical_repeats_are_accepted_conflicting_are_not() {
        let mut headers = HeaderMap::new();
        headers.append(NAME, HeaderValue::from_static("a"));
        headers.append(NAME, HeaderValue::from_static("a"));
        assert_eq!(single_header(&headers, &NAME, "X-Sig").unwrap(), "a");
        headers.append(NAME, HeaderValue::from_static("b"));
        let err = single_header(&headers, &NAME, "X-Sig").unwrap_err();
        assert!(matches!(
            err,
            VerifyError::Malformed {
                reason: Malformed::ConflictingHeaders,
                ..
            }
        ));
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn single_header_rejects_non_ascii() {
        let mut headers = HeaderMap::new();
        headers.insert(NAME, HeaderValue::from_bytes(b"t=1,\xff").unwrap());
        let err = single_header(&headers, &NAME, "X-Sig").unwrap_err();
        assert!(matches!(
            err,
            VerifyError::Malformed {
                reason: Malformed::NotText,
                ..
            }
        ));
    }

    #[test]
    fn timestamps_are_plain_digits_in_u64() {
        assert_eq!(parse_unix_seconds("1600000000"), Some(1_600_000_000));
        assert_eq!(parse_unix_seconds("0"), Some(0));
        assert_eq!(parse_unix_seconds(&u64::MAX.to_string()), Some(u64::MAX));
        for bad in [
            "",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1.5",
            "1e9",
            "18446744073709551616",
            "abc",
        ] {
            assert_eq!(parse_unix_seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn freshness_window_is_inclusive_at_both_edges() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        let tol = Duration::from_secs(100);
        let skew = Duration::from_secs(10);
        assert!(check_freshness(9_900, now, tol, skew).is_ok());
        assert!(check_freshness(10_010, now, tol, skew).is_ok());
        assert_eq!(
            check_freshness(9_899, now, tol, skew),
            Err(VerifyError::TimestampStale {
                age: Duration::from_secs(101),
                tolerance: tol
            })
        );
        assert_eq!(
            check_freshness(10_011, now, tol, skew),
            Err(VerifyError::TimestampInFuture {
                ahead: Duration::from_secs(11),
                skew
            })
        );
        // Far future timestamps are refused, not overflowed.
        assert!(matches!(
            check_freshness(u64::MAX, now, tol, skew),
            Err(VerifyError::TimestampInFuture { .. })
        ));
    }

    #[test]
    fn error_texts_name_the_cause() {
        let stale = VerifyError::TimestampStale {
            age: Duration::from_secs(3605),
            tolerance: Duration::from_secs(1800),
        };
        assert_eq!(
            stale.to_string(),
            "the signed timestamp is 3605 s old, more than the 1800 s tolerance"
        );
        let problem = stale.to_problem();
        assert_eq!(problem.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(problem.code(), ProblemCode::TIMESTAMP_STALE);
        assert_eq!(problem.detail(), Some(stale.to_string().as_str()));
    }
}
