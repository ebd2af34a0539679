//! The ElevenLabs signature: `ElevenLabs-Signature: t=<unix secs>,v0=<hex>`.

use std::{fmt, time::Duration, time::SystemTime};

use http::{HeaderMap, HeaderName};

use super::{
    check_freshness, decode_hex_signature,
    hmac::{HmacVerifier, Keys, Signatures},
    parse_unix_seconds, single_header, Malformed, Scheme, Verified, Verifier, VerifyError,
};
use crate::ConfigError;

const HEADER_DISPLAY: &str = "ElevenLabs-Signature";

/// The ElevenLabs webhook signature scheme.
///
/// ElevenLabs signs each delivery with HMAC-SHA256 over `"{t}.{raw body}"`, keyed with the
/// webhook secret's UTF-8 bytes, and sends `ElevenLabs-Signature: t=<unix secs>,v0=<hex>`.
///
/// What this implementation does beyond the official SDKs:
///
/// - every `v0` element is tried (up to 8), and every configured secret, so a key rotation never
///   refuses a genuine delivery: add the new secret with [`with_secret`](Self::with_secret),
///   switch the sender over, then drop the old one, or give it an expiry from the start with
///   [`with_secret_until`](Self::with_secret_until);
/// - comparisons are constant time;
/// - timestamps too far in the future are refused ([`future_skew`](Self::future_skew), 5 min by
///   default), so a leaked signed delivery cannot be post-dated to extend its replay window;
/// - a malformed header (non-numeric, negative or overflowing `t`, empty, truncated or non-hex
///   `v0`, conflicting duplicate header lines) is a clear 400, never a panic or a silent skip.
///
/// ```
/// use std::time::Duration;
/// use hookgate::scheme::ElevenLabs;
///
/// let scheme = ElevenLabs::new("current-secret")?
///     .with_secret("previous-secret")?
///     .tolerance(Duration::from_secs(30 * 60))
///     .future_skew(Duration::from_secs(300));
/// assert!(scheme.sign(1_600_000_000, b"{}").starts_with("t=1600000000,v0="));
/// assert!(ElevenLabs::new("").is_err());
/// // Secrets never show in Debug output.
/// assert!(!format!("{scheme:?}").contains("secret"));
/// # Ok::<(), hookgate::ConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct ElevenLabs {
    keys: Keys,
    tolerance: Duration,
    future_skew: Duration,
}

impl ElevenLabs {
    /// The signature header (`ElevenLabs-Signature`; header names are case-insensitive).
    pub const HEADER: HeaderName = HeaderName::from_static("elevenlabs-signature");

    /// How old a signed timestamp may be by default: 30 minutes, as the official SDKs.
    pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(30 * 60);

    /// How far ahead a signed timestamp may be by default: 5 minutes of clock skew.
    pub const DEFAULT_FUTURE_SKEW: Duration = Duration::from_secs(5 * 60);

    /// A scheme checking signatures made with `secret` (its bytes as given: no decoding, no
    /// prefix stripping). An empty secret is an error.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Ok(Self {
            keys: Keys::new(secret.as_ref())?,
            tolerance: Self::DEFAULT_TOLERANCE,
            future_skew: Self::DEFAULT_FUTURE_SKEW,
        })
    }

    /// Also accepts signatures made with `secret`, for key rotation. At most 8 secrets; each one
    /// costs one more MAC pass over every body.
    pub fn with_secret(mut self, secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let index = self.keys.len();
        self.keys.push(secret.as_ref(), None, index)?;
        Ok(self)
    }

    /// Also accepts signatures made with `secret`, until `until`: from that instant on it no
    /// longer verifies, with nobody left to remember to remove it. For the old secret of a
    /// rotation.
    ///
    /// ## Expiry
    ///
    /// - A secret verifies strictly before `until`, checked against the `now` each request is
    ///   verified at (the receiver's clock, not the signed timestamp, which whoever holds the
    ///   secret could choose). An expired secret costs nothing: it gets no MAC pass.
    /// - A delivery signed only with an expired secret is answered `401 signature_mismatch`,
    ///   like any other wrong signature, never with a code of its own: saying "expired" would
    ///   confirm to whoever holds a leaked old secret (the usual reason for a rotation) that it
    ///   was genuine, and telling the two apart would cost a MAC pass per expired secret on
    ///   every request. Watch [`Verified::secret_index`] instead: once it no longer reports the
    ///   old secret, nothing needs it.
    /// - Leave the sender time to switch: ElevenLabs retries a delivery for up to about 40
    ///   minutes (where retries are enabled), and a signed timestamp stays acceptable for the
    ///   [`replay_window`](Self::replay_window); expire the old secret that long after the
    ///   sender stopped using it.
    /// - The secret given to [`new`](Self::new) never expires: it is the current one, and the
    ///   one [`sign`](Self::sign) uses.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use hookgate::scheme::{ElevenLabs, Scheme, VerifyError};
    ///
    /// let expiry = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    /// let scheme = ElevenLabs::new("new-secret")?.with_secret_until("old-secret", expiry)?;
    /// let old = ElevenLabs::new("old-secret")?;
    ///
    /// let (t, body) = (1_699_999_990, b"{}");
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("elevenlabs-signature", old.sign(t, body).parse()?);
    /// // One second before the expiry, the old secret still verifies, as secret number 1.
    /// let verified = scheme.verify(&headers, body, expiry - Duration::from_secs(1))?;
    /// assert_eq!(verified.secret_index(), 1);
    /// // From the expiry on, it does not.
    /// assert!(matches!(
    ///     scheme.verify(&headers, body, expiry),
    ///     Err(VerifyError::SignatureMismatch { .. })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_secret_until(
        mut self,
        secret: impl AsRef<[u8]>,
        until: SystemTime,
    ) -> Result<Self, ConfigError> {
        let index = self.keys.len();
        self.keys.push(secret.as_ref(), Some(until), index)?;
        Ok(self)
    }

    /// How old the signed timestamp may be (default 30 minutes).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// How far ahead of this receiver's clock the signed timestamp may be (default 5 minutes).
    pub fn future_skew(mut self, skew: Duration) -> Self {
        self.future_skew = skew;
        self
    }

    /// How long one signed delivery stays acceptable: from [`future_skew`](Self::future_skew)
    /// before its timestamp to [`tolerance`](Self::tolerance) after it. A deduplication
    /// store that remembers handled events at least this long answers every replay of a
    /// captured delivery as a duplicate.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookgate::scheme::ElevenLabs;
    ///
    /// let scheme = ElevenLabs::new("secret").unwrap();
    /// assert_eq!(scheme.replay_window(), Duration::from_secs(35 * 60));
    /// ```
    #[must_use]
    pub fn replay_window(&self) -> Duration {
        self.tolerance.saturating_add(self.future_skew)
    }

    /// The `ElevenLabs-Signature` value for `body` signed at `unix_secs` with the first secret:
    /// `t=<unix_secs>,v0=<hex>`. For tests, and for playing the sender.
    #[must_use]
    pub fn sign(&self, unix_secs: u64, body: &[u8]) -> String {
        let t = unix_secs.to_string();
        let tag = self
            .keys
            .sign(&[t.as_bytes(), b".", body])
            .expect("an ElevenLabs scheme has a secret from its constructor on");
        format!("t={t},v0={}", hex::encode(tag))
    }
}

impl fmt::Debug for ElevenLabs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElevenLabs")
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .field("tolerance", &self.tolerance)
            .field("future_skew", &self.future_skew)
            .finish()
    }
}

impl Scheme for ElevenLabs {
    type Verifier = ElevenLabsVerifier;

    fn begin(&self, headers: &HeaderMap, now: SystemTime) -> Result<Self::Verifier, VerifyError> {
        let value = single_header(headers, &Self::HEADER, HEADER_DISPLAY)?;
        let parsed = parse_header(value).map_err(|reason| VerifyError::Malformed {
            header: HEADER_DISPLAY,
            reason,
        })?;
        check_freshness(parsed.timestamp, now, self.tolerance, self.future_skew)?;
        // The timestamp is signed exactly as written in the header.
        let macs = self
            .keys
            .begin(&[parsed.timestamp_text.as_bytes(), b"."], now);
        Ok(ElevenLabsVerifier(HmacVerifier::new(
            macs,
            parsed.signatures,
            parsed.timestamp,
        )))
    }
}

/// One request's ElevenLabs verification in progress.
pub struct ElevenLabsVerifier(HmacVerifier);

impl fmt::Debug for ElevenLabsVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElevenLabsVerifier")
            .field("timestamp", &self.0.timestamp())
            .field("signatures", &self.0.signatures())
            .field("secrets", &self.0.secrets())
            .finish_non_exhaustive()
    }
}

impl Verifier for ElevenLabsVerifier {
    fn update(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
    }

    fn finish(self) -> Result<Verified, VerifyError> {
        self.0.finish()
    }
}

/// `text` without the spaces and tabs around it.
fn trim_blank(text: &str) -> &str {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let bytes = text.as_bytes();
    let start = bytes.iter().take_while(|b| blank(b)).count();
    let end = bytes.len() - bytes[start..].iter().rev().take_while(|b| blank(b)).count();
    &text[start..end]
}

struct ParsedHeader<'a> {
    timestamp_text: &'a str,
    timestamp: u64,
    signatures: Signatures,
}

/// Parses `t=<digits>,v0=<64 hex>[,v0=...]`. Unknown elements (other versions) are ignored, as
/// the SDKs do; anything ambiguous is refused.
fn parse_header(value: &str) -> Result<ParsedHeader<'_>, Malformed> {
    let mut timestamp = None;
    let mut signatures = Signatures::new();
    // The elements between commas, each trimmed of spaces and tabs, scanned byte by byte: every
    // delimiter is ASCII, so each slice falls on character boundaries.
    let bytes = value.as_bytes();
    let mut start = 0;
    let mut position = 0;
    while start <= bytes.len() {
        position += 1;
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b',')
            .map_or(bytes.len(), |at| start + at);
        let element = &value[start..end];
        start = end + 1;
        let element = trim_blank(element);
        if element.is_empty() {
            return Err(Malformed::EmptyElement { position });
        }
        let equals = element
            .bytes()
            .position(|b| b == b'=')
            .ok_or(Malformed::ElementWithoutValue { position })?;
        let (name, text) = (&element[..equals], &element[equals + 1..]);
        match name {
            "t" => {
                if timestamp.is_some() {
                    return Err(Malformed::DuplicateTimestamp);
                }
                let seconds = parse_unix_seconds(text).ok_or(Malformed::InvalidTimestamp)?;
                timestamp = Some((text, seconds));
            }
            "v0" => {
                signatures.push(decode_hex_signature(text, position)?)?;
            }
            _ => {}
        }
    }
    let (timestamp_text, timestamp) = timestamp.ok_or(Malformed::MissingTimestamp)?;
    if signatures.is_empty() {
        return Err(Malformed::MissingSignature);
    }
    Ok(ParsedHeader {
        timestamp_text,
        timestamp,
        signatures,
    })
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use http::HeaderValue;
    use proptest::prelude::*;

    use super::*;
    use crate::scheme::hmac::{MAX_SECRETS, MAX_SIGNATURES};

    // The known vector of the ElevenLabs SDKs' algorithm: secret `test_secret`,
    // `t=1600000000`, the body below.
    const VECTOR_BODY: &[u8] = br#"{"type":"speech_to_text_transcription","event_timestamp":1600000000,"data":{"request_id":"req_123","transcription":{"language_code":"en","language_probability":0.98,"text":"Hello world!","words":[]}}}"#;
    const VECTOR_HEADER: &str =
        "t=1600000000,v0=14b663348e582d020752c7549318c2bcd4db22edeadf4336d667024ec8f72b0c";
    const T: u64 = 1_600_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ElevenLabs::HEADER, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn scheme() -> ElevenLabs {
        ElevenLabs::new("test_secret").unwrap()
    }

    fn malformed(value: &str) -> Malformed {
        match scheme().begin(&headers(value), at(T)) {
            Err(VerifyError::Malformed { reason, header }) => {
                assert_eq!(header, "ElevenLabs-Signature");
                reason
            }
            Err(other) => panic!("{value:?}: expected malformed, got {other:?}"),
            Ok(_) => panic!("{value:?}: expected malformed, got a verifier"),
        }
    }

    #[test]
    fn known_vector_signs_and_verifies() {
        assert_eq!(scheme().sign(T, VECTOR_BODY), VECTOR_HEADER);
        let verified = scheme()
            .verify(&headers(VECTOR_HEADER), VECTOR_BODY, at(T))
            .unwrap();
        assert_eq!(verified.unix_timestamp(), T);
        assert_eq!(verified.secret_index(), 0);
        assert_eq!(
            verified.signature().to_hex(),
            "14b663348e582d020752c7549318c2bcd4db22edeadf4336d667024ec8f72b0c"
        );
        assert_eq!(verified.message_id(), None);
    }

    #[test]
    fn upper_case_hex_and_spaces_around_elements_verify() {
        let value = VECTOR_HEADER
            .replace("v0=14b6", "v0=14B6")
            .replace(',', " , ");
        assert!(scheme()
            .verify(&headers(&value), VECTOR_BODY, at(T))
            .is_ok());
    }

    #[test]
    fn wrong_secret_is_a_mismatch() {
        let other = ElevenLabs::new("other_secret").unwrap();
        let err = other
            .verify(&headers(VECTOR_HEADER), VECTOR_BODY, at(T))
            .unwrap_err();
        assert_eq!(
            err,
            VerifyError::SignatureMismatch {
                signatures: 1,
                secrets: 1
            }
        );
        assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn changed_body_is_a_mismatch() {
        let mut body = VECTOR_BODY.to_vec();
        body[10] ^= 1;
        assert!(matches!(
            scheme().verify(&headers(VECTOR_HEADER), &body, at(T)),
            Err(VerifyError::SignatureMismatch { .. })
        ));
    }

    #[test]
    fn re_serialised_json_does_not_verify() {
        // The classic receiver bug: parse, re-serialise, verify. The bytes differ, so it fails.
        let value: serde_json::Value = serde_json::from_slice(VECTOR_BODY).unwrap();
        let reserialised = serde_json::to_vec_pretty(&value).unwrap();
        assert!(scheme()
            .verify(&headers(VECTOR_HEADER), &reserialised, at(T))
            .is_err());
    }

    #[test]
    fn timestamp_is_signed_as_written() {
        // Leading zeros change the signed text, so a signature over "1600000000" does not
        // verify with "t=01600000000", although both are the same number.
        let value = VECTOR_HEADER.replace("t=16", "t=016");
        assert!(matches!(
            scheme().verify(&headers(&value), VECTOR_BODY, at(T)),
            Err(VerifyError::SignatureMismatch { .. })
        ));
    }

    #[test]
    fn rotation_any_secret_and_any_v0_may_match() {
        let old = ElevenLabs::new("old").unwrap();
        let new = ElevenLabs::new("new").unwrap();
        let both = ElevenLabs::new("new").unwrap().with_secret("old").unwrap();
        let body = b"payload";

        // Signed with the old secret only: matches secret 1.
        let verified = both
            .verify(&headers(&old.sign(T, body)), body, at(T))
            .unwrap();
        assert_eq!(verified.secret_index(), 1);

        // Several v0 elements, the first one garbage: the second still matches.
        let good = new.sign(T, body);
        let v0 = good.split_once(",v0=").unwrap().1;
        let value = format!("t={T},v0={},v0={v0}", "0".repeat(64));
        let verified = both.verify(&headers(&value), body, at(T)).unwrap();
        assert_eq!(verified.secret_index(), 0);
        assert_eq!(verified.signature().to_hex(), v0);
    }

    #[test]
    fn the_replay_window_spans_the_skew_and_the_tolerance() {
        assert_eq!(scheme().replay_window(), Duration::from_secs(35 * 60));
        let custom = scheme()
            .tolerance(Duration::from_secs(60))
            .future_skew(Duration::from_secs(5));
        assert_eq!(custom.replay_window(), Duration::from_secs(65));
    }

    #[test]
    fn an_expiring_secret_verifies_until_its_expiry_and_never_after() {
        let until = at(T + 600);
        let old = ElevenLabs::new("old").unwrap();
        let new = ElevenLabs::new("new").unwrap();
        let scheme = ElevenLabs::new("new")
            .unwrap()
            .with_secret_until("old", until)
            .unwrap()
            .with_secret("spare")
            .unwrap();
        let body = b"payload";
        let by_old = headers(&old.sign(T, body));
        let by_new = headers(&new.sign(T, body));
        let just_before = until - Duration::from_nanos(1);
        assert_eq!(
            scheme
                .verify(&by_old, body, just_before)
                .unwrap()
                .secret_index(),
            1
        );
        for now in [until, until + Duration::from_secs(1)] {
            assert_eq!(
                scheme.verify(&by_old, body, now).unwrap_err(),
                // The expired secret is not even tried.
                VerifyError::SignatureMismatch {
                    signatures: 1,
                    secrets: 2
                }
            );
            // The live ones still verify.
            assert_eq!(scheme.verify(&by_new, body, now).unwrap().secret_index(), 0);
        }
        // The spare secret keeps index 2 after the old one expired.
        let spare = ElevenLabs::new("spare").unwrap();
        let by_spare = headers(&spare.sign(T, body));
        assert_eq!(
            scheme
                .verify(&by_spare, body, until)
                .unwrap()
                .secret_index(),
            2
        );
        // An expiring secret counts towards the cap and is refused empty, like any other.
        assert!(scheme.clone().with_secret_until("", until).is_err());
        let mut full = scheme;
        for i in 3..MAX_SECRETS {
            full = full.with_secret_until(format!("s{i}"), until).unwrap();
        }
        assert!(full.with_secret_until("one too many", until).is_err());
        // Signing uses the first secret, which never expires.
        assert_eq!(
            ElevenLabs::new("new")
                .unwrap()
                .with_secret_until("old", at(0))
                .unwrap()
                .sign(T, body),
            new.sign(T, body)
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_with_how_far_off() {
        let s = scheme();
        let h = headers(VECTOR_HEADER);
        assert!(s.verify(&h, VECTOR_BODY, at(T + 1800)).is_ok());
        assert_eq!(
            s.begin(&h, at(T + 1801)).unwrap_err(),
            VerifyError::TimestampStale {
                age: Duration::from_secs(1801),
                tolerance: ElevenLabs::DEFAULT_TOLERANCE
            }
        );
        assert!(s.verify(&h, VECTOR_BODY, at(T - 300)).is_ok());
        assert_eq!(
            s.begin(&h, at(T - 301)).unwrap_err(),
            VerifyError::TimestampInFuture {
                ahead: Duration::from_secs(301),
                skew: ElevenLabs::DEFAULT_FUTURE_SKEW
            }
        );
        let strict = scheme()
            .tolerance(Duration::from_secs(60))
            .future_skew(Duration::ZERO);
        assert!(strict.begin(&h, at(T + 61)).is_err());
        assert!(strict.begin(&h, at(T - 1)).is_err());
        assert!(strict.begin(&h, at(T + 60)).is_ok());
    }

    #[test]
    fn missing_header_is_401() {
        let err = scheme().begin(&HeaderMap::new(), at(T)).unwrap_err();
        assert_eq!(
            err,
            VerifyError::MissingHeader {
                header: "ElevenLabs-Signature"
            }
        );
        assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn header_name_is_case_insensitive() {
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_bytes(b"ElevenLabs-Signature").unwrap(),
            HeaderValue::from_static(VECTOR_HEADER),
        );
        assert!(scheme().verify(&h, VECTOR_BODY, at(T)).is_ok());
    }

    #[test]
    fn malformed_headers_say_what_is_wrong() {
        let sig = "14b663348e582d020752c7549318c2bcd4db22edeadf4336d667024ec8f72b0c";
        assert_eq!(malformed(""), Malformed::EmptyElement { position: 1 });
        assert_eq!(malformed(&format!("v0={sig}")), Malformed::MissingTimestamp);
        assert_eq!(malformed("t=1600000000"), Malformed::MissingSignature);
        assert_eq!(
            malformed("t=1600000000,v1=abc"),
            Malformed::MissingSignature
        );
        for t in [
            "abc",
            "-1",
            "+1600000000",
            "",
            "1.5",
            "18446744073709551616",
        ] {
            assert_eq!(
                malformed(&format!("t={t},v0={sig}")),
                Malformed::InvalidTimestamp,
                "t={t}"
            );
        }
        assert_eq!(
            malformed(&format!("t=1,t=2,v0={sig}")),
            Malformed::DuplicateTimestamp
        );
        assert_eq!(
            malformed("t=1600000000,v0="),
            Malformed::EmptySignature { position: 2 }
        );
        assert_eq!(
            malformed(&format!("t=1600000000,v0={}", &sig[..63])),
            Malformed::SignatureLength {
                position: 2,
                found: 63,
                expected: 64
            }
        );
        assert_eq!(
            malformed(&format!("t=1600000000,v0={}", "g".repeat(64))),
            Malformed::SignatureNotHex { position: 2 }
        );
        assert_eq!(
            malformed(&format!("t=1600000000,v0={sig},")),
            Malformed::EmptyElement { position: 3 }
        );
        assert_eq!(
            malformed(&format!("t=1600000000,v0{sig}")),
            Malformed::ElementWithoutValue { position: 2 }
        );
        let many = format!("t=1600000000{}", format!(",v0={sig}").repeat(9));
        assert_eq!(malformed(&many), Malformed::TooManySignatures { max: 8 });
    }

    #[test]
    fn conflicting_header_lines_are_malformed() {
        let mut h = headers(VECTOR_HEADER);
        h.append(ElevenLabs::HEADER, HeaderValue::from_static("t=1,v0=00"));
        assert!(matches!(
            scheme().begin(&h, at(T)),
            Err(VerifyError::Malformed {
                reason: Malformed::ConflictingHeaders,
                ..
            })
        ));
    }

    #[test]
    fn debug_redacts_secrets() {
        let s = ElevenLabs::new("hunter2-very-secret").unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("redacted"));
        let verifier = s.begin(&headers(&s.sign(T, b"x")), at(T)).unwrap();
        assert!(!format!("{verifier:?}").contains("hunter2"));
    }

    #[test]
    fn error_texts_never_contain_the_expected_signature() {
        let s = scheme();
        let expected = s.sign(T, b"real body");
        let forged = format!("t={T},v0={}", "a".repeat(64));
        let err = s
            .verify(&headers(&forged), b"real body", at(T))
            .unwrap_err();
        let v0 = expected.split_once("v0=").unwrap().1;
        assert!(!err.to_string().contains(v0));
        assert!(!String::from_utf8_lossy(&err.to_problem().to_json()).contains(v0));
    }

    /// The vector's `v0` hex.
    fn vector_v0() -> &'static str {
        VECTOR_HEADER.split_once("v0=").unwrap().1
    }

    #[test]
    fn a_repeated_valid_v0_verifies() {
        let value = format!("t={T},v0={0},v0={0}", vector_v0());
        let verified = scheme()
            .verify(&headers(&value), VECTOR_BODY, at(T))
            .unwrap();
        assert_eq!(verified.signature().to_hex(), vector_v0());
    }

    #[test]
    fn a_valid_v0_among_invalid_ones_verifies_wherever_it_stands() {
        let wrong = "ab".repeat(32);
        for at_position in 0..MAX_SIGNATURES {
            let elements: Vec<String> = (0..MAX_SIGNATURES)
                .map(|i| {
                    let sig = if i == at_position {
                        vector_v0()
                    } else {
                        &wrong
                    };
                    format!("v0={sig}")
                })
                .collect();
            let value = format!("t={T},{}", elements.join(","));
            let verified = scheme()
                .verify(&headers(&value), VECTOR_BODY, at(T))
                .unwrap_or_else(|e| panic!("valid v0 at {at_position}: {e}"));
            assert_eq!(verified.signature().to_hex(), vector_v0());
        }
        // The common rotation case: the valid one first, then one that does not match.
        let value = format!("{VECTOR_HEADER},v0={wrong}");
        assert!(scheme()
            .verify(&headers(&value), VECTOR_BODY, at(T))
            .is_ok());
    }

    #[test]
    fn a_mismatch_counts_the_signatures_sent_and_the_secrets_tried() {
        let two = ElevenLabs::new("one").unwrap().with_secret("two").unwrap();
        let value = format!(
            "t={T},v0={},v0={},v0={}",
            "a".repeat(64),
            "b".repeat(64),
            "c".repeat(64)
        );
        let err = two
            .verify(&headers(&value), VECTOR_BODY, at(T))
            .unwrap_err();
        assert_eq!(
            err,
            VerifyError::SignatureMismatch {
                signatures: 3,
                secrets: 2
            }
        );
        assert_eq!(
            err.to_string(),
            "none of the 2 configured secret(s) produced any of the 3 signature(s) sent"
        );
    }

    #[test]
    fn freshness_edges_follow_the_configured_tolerance_and_skew() {
        let h = headers(VECTOR_HEADER);
        let s = scheme()
            .tolerance(Duration::from_secs(60))
            .future_skew(Duration::from_secs(10));
        assert!(s.verify(&h, VECTOR_BODY, at(T + 60)).is_ok());
        assert_eq!(
            s.begin(&h, at(T + 61)).unwrap_err(),
            VerifyError::TimestampStale {
                age: Duration::from_secs(61),
                tolerance: Duration::from_secs(60)
            }
        );
        assert!(s.verify(&h, VECTOR_BODY, at(T - 10)).is_ok());
        assert_eq!(
            s.begin(&h, at(T - 11)).unwrap_err(),
            VerifyError::TimestampInFuture {
                ahead: Duration::from_secs(11),
                skew: Duration::from_secs(10)
            }
        );
        // Zero tolerance and zero skew: exactly now, and nothing else.
        let exact = scheme()
            .tolerance(Duration::ZERO)
            .future_skew(Duration::ZERO);
        assert!(exact.verify(&h, VECTOR_BODY, at(T)).is_ok());
        assert!(matches!(
            exact.begin(&h, at(T + 1)),
            Err(VerifyError::TimestampStale { .. })
        ));
        assert!(matches!(
            exact.begin(&h, at(T - 1)),
            Err(VerifyError::TimestampInFuture { .. })
        ));
        // The defaults, at their edges and one second past them (the clock may be late or early).
        let d = scheme();
        let tolerance = ElevenLabs::DEFAULT_TOLERANCE.as_secs();
        let skew = ElevenLabs::DEFAULT_FUTURE_SKEW.as_secs();
        assert!(d.begin(&h, at(T + tolerance)).is_ok());
        assert!(d.begin(&h, at(T + tolerance + 1)).is_err());
        assert!(d.begin(&h, at(T - skew)).is_ok());
        assert!(d.begin(&h, at(T - skew - 1)).is_err());
    }

    #[test]
    fn upper_case_hex_verifies_and_the_match_is_reported_in_lower_case() {
        let value = format!("t={T},v0={}", vector_v0().to_ascii_uppercase());
        let verified = scheme()
            .verify(&headers(&value), VECTOR_BODY, at(T))
            .unwrap();
        assert_eq!(verified.signature().to_hex(), vector_v0());
    }

    #[test]
    fn tabs_and_spaces_around_elements_are_ignored_and_order_does_not_matter() {
        let value = format!("\tv0={} ,\t t={T}\t", vector_v0());
        assert!(scheme()
            .verify(&headers(&value), VECTOR_BODY, at(T))
            .is_ok());
        // Unknown elements between the known ones are skipped.
        let value = format!("t={T},v1=not-hex,x=1,v0={}", vector_v0());
        assert!(scheme()
            .verify(&headers(&value), VECTOR_BODY, at(T))
            .is_ok());
    }

    #[test]
    fn signatures_are_exactly_64_hex_digits() {
        let sig = vector_v0();
        assert_eq!(
            malformed(&format!("t={T},v0={sig}0")),
            Malformed::SignatureLength {
                position: 2,
                found: 65,
                expected: 64
            }
        );
        assert_eq!(
            malformed(&format!("t={T},v0={}", &sig[..32])),
            Malformed::SignatureLength {
                position: 2,
                found: 32,
                expected: 64
            }
        );
        // A non-hex digit anywhere, even the last.
        assert_eq!(
            malformed(&format!("t={T},v0={}x", &sig[..63])),
            Malformed::SignatureNotHex { position: 2 }
        );
        // A malformed v0 is refused even beside a valid one.
        assert_eq!(
            malformed(&format!("t={T},v0={sig},v0={}", "g".repeat(64))),
            Malformed::SignatureNotHex { position: 3 }
        );
    }

    #[test]
    fn exactly_the_maximum_number_of_v0_elements_is_accepted() {
        let wrong = "0".repeat(64);
        let mut elements = vec![format!("v0={wrong}"); MAX_SIGNATURES - 1];
        elements.push(format!("v0={}", vector_v0()));
        let value = format!("t={T},{}", elements.join(","));
        assert!(scheme()
            .verify(&headers(&value), VECTOR_BODY, at(T))
            .is_ok());
        elements.push(format!("v0={wrong}"));
        let value = format!("t={T},{}", elements.join(","));
        assert_eq!(
            malformed(&value),
            Malformed::TooManySignatures {
                max: MAX_SIGNATURES
            }
        );
    }

    #[test]
    fn empty_elements_are_refused_wherever_they_are() {
        let sig = vector_v0();
        assert_eq!(
            malformed(&format!(",t={T},v0={sig}")),
            Malformed::EmptyElement { position: 1 }
        );
        assert_eq!(
            malformed(&format!("t={T},,v0={sig}")),
            Malformed::EmptyElement { position: 2 }
        );
        assert_eq!(
            malformed(&format!("t={T}, \t ,v0={sig}")),
            Malformed::EmptyElement { position: 2 }
        );
        // No signature at all, only empty ones, or only other versions.
        assert_eq!(malformed(&format!("t={T}")), Malformed::MissingSignature);
        assert_eq!(
            malformed(&format!("t={T},v0=")),
            Malformed::EmptySignature { position: 2 }
        );
    }

    #[test]
    fn verifier_debug_shows_counts_only() {
        let s = ElevenLabs::new("hunter2")
            .unwrap()
            .with_secret("hunter3")
            .unwrap();
        let value = format!("t={T},v0={0},v0={0}", vector_v0());
        let verifier = s.begin(&headers(&value), at(T)).unwrap();
        let debug = format!("{verifier:?}");
        assert!(debug.starts_with("ElevenLabsVerifier {"), "{debug}");
        assert!(debug.contains("timestamp: 1600000000"), "{debug}");
        assert!(debug.contains("signatures: 2"), "{debug}");
        assert!(debug.contains("secrets: 2"), "{debug}");
        assert!(!debug.contains("hunter"), "{debug}");
        assert!(!debug.contains(vector_v0()), "{debug}");
        assert!(format!("{s:?}").contains("[2 redacted]"));
    }

    proptest! {
        #[test]
        fn sign_verify_round_trip(
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            secrets in proptest::collection::vec("[ -~]{1,40}", 1..4),
            signer in 0usize..4,
            splits in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            t in 0u64..4_000_000_000,
        ) {
            let signer = signer % secrets.len();
            let mut scheme = ElevenLabs::new(&secrets[0]).unwrap();
            for s in &secrets[1..] { scheme = scheme.with_secret(s).unwrap(); }
            let header = ElevenLabs::new(&secrets[signer]).unwrap().sign(t, &body);
            let mut verifier = scheme.begin(&headers(&header), at(t)).unwrap();
            // Feed the body in arbitrary frames.
            let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(body.len() + 1)).collect();
            cuts.sort_unstable();
            let mut start = 0;
            for cut in cuts { verifier.update(&body[start..cut]); start = cut; }
            verifier.update(&body[start..]);
            let verified = verifier.finish().unwrap();
            // The first secret equal to the signer's matches (secrets may repeat).
            let first = secrets.iter().position(|s| s == &secrets[signer]).unwrap();
            prop_assert_eq!(verified.secret_index(), first);
        }

        #[test]
        fn any_single_bit_flip_is_rejected(
            body in proptest::collection::vec(any::<u8>(), 1..512),
            bit in any::<prop::sample::Index>(),
            part in 0u8..3,
        ) {
            let scheme = scheme();
            let header = scheme.sign(T, &body);
            let (mut body, mut header) = (body, header.into_bytes());
            match part {
                0 => { let i = bit.index(body.len() * 8); body[i / 8] ^= 1 << (i % 8); }
                // Flip a bit in the digits of t (positions 2..12) or the hex of v0 (16..80).
                1 => { let i = 2 + bit.index(10); header[i] ^= 1; }
                _ => { let i = 16 + bit.index(64); header[i] ^= 1; }
            }
            let Ok(value) = HeaderValue::from_bytes(&header) else { return Ok(()); };
            let mut h = HeaderMap::new();
            h.insert(ElevenLabs::HEADER, value);
            prop_assert!(scheme.verify(&h, &body, at(T)).is_err());
        }

        #[test]
        fn header_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let mut h = HeaderMap::new();
                h.insert(ElevenLabs::HEADER, value);
                let _ = scheme().begin(&h, at(T));
            }
        }

        #[test]
        fn header_parser_never_panics_on_near_valid_text(
            value in "(t=[0-9+-]{0,22}|v0=[0-9a-fA-Fg]{0,70}|[a-z0-9]{0,3}=?[ -~]{0,5}|)(,(t=[0-9+-]{0,22}|v0=[0-9a-fA-F]{0,70}|[ -~]{0,8})){0,10}"
        ) {
            let _ = parse_header(&value);
        }
    }
}
