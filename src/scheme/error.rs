//! Why a delivery was refused: [`VerifyError`] and [`Malformed`], with their statuses and
//! problem codes.

use std::{error::Error, fmt, time::Duration};

use http::StatusCode;

use crate::problem::{Problem, ProblemCode};

/// Why a delivery was refused. Each variant maps to a status and a [`ProblemCode`]; the
/// `Display` text says exactly what was wrong and never contains a secret or an expected
/// signature. A scheme of your own returns them too, from [`Scheme::begin`](super::Scheme::begin)
/// and [`Verifier::finish`](super::Verifier::finish).
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
    /// A signature that is not valid base64 of a signature of its version (32 bytes for
    /// Standard Webhooks' `v1`, 64 for `v1a`).
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
                write!(
                    f,
                    "signature element {position} is not base64 of a signature of its version's length"
                )
            }
            Self::TooManySignatures { max } => {
                write!(f, "it carries more than {max} signatures")
            }
            Self::EmptyMessageId => f.write_str("the message id is empty"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_texts_say_what_is_wrong() {
        let error = |reason| {
            VerifyError::Malformed {
                header: "webhook-signature",
                reason,
            }
            .to_string()
        };
        assert_eq!(
            error(Malformed::SignatureNotBase64 { position: 2 }),
            "the webhook-signature header is malformed: signature element 2 is not base64 of a signature of its version's length"
        );
        assert_eq!(
            error(Malformed::TooManySignatures { max: 4 }),
            "the webhook-signature header is malformed: it carries more than 4 signatures"
        );
        assert_eq!(
            error(Malformed::MissingSignature),
            "the webhook-signature header is malformed: it has no signature of a supported version"
        );
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
