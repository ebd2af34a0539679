//! The [Standard Webhooks](https://www.standardwebhooks.com/) signature scheme.

use std::{
    fmt,
    time::{Duration, SystemTime},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use http::{HeaderMap, HeaderName};

use super::{
    check_freshness,
    hmac::{HmacVerifier, Keys, Signatures, DIGEST_LEN},
    parse_unix_seconds, single_header, Malformed, Scheme, Verified, Verifier, VerifyError,
};
use crate::ConfigError;

/// The Standard Webhooks scheme: `webhook-id`, `webhook-timestamp` and
/// `webhook-signature: v1,<base64> [v1,<base64> ...]`, an HMAC-SHA256 over
/// `"{id}.{timestamp}.{body}"` keyed with the base64-decoded `whsec_` secret.
///
/// Timestamps may be 5 minutes off either way by default, as the spec recommends. The message id
/// is signed and handed on in [`Verified::message_id`], the natural deduplication key.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use hookgate::scheme::{Scheme, StandardWebhooks};
///
/// let scheme = StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
/// let body = br#"{"test": 2432232314}"#;
/// let mut headers = http::HeaderMap::new();
/// headers.insert("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek".parse()?);
/// headers.insert("webhook-timestamp", "1614265330".parse()?);
/// headers.insert("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".parse()?);
///
/// let verified = scheme.verify(&headers, body, UNIX_EPOCH + Duration::from_secs(1614265330))?;
/// assert_eq!(verified.message_id().unwrap(), "msg_p5jXN8AQM9LWM0D4loKWxJek");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct StandardWebhooks {
    keys: Keys,
    tolerance: Duration,
    future_skew: Duration,
}

impl StandardWebhooks {
    /// The message id header.
    pub const ID_HEADER: HeaderName = HeaderName::from_static("webhook-id");
    /// The timestamp header.
    pub const TIMESTAMP_HEADER: HeaderName = HeaderName::from_static("webhook-timestamp");
    /// The signature header.
    pub const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("webhook-signature");
    /// The spec's tolerance, either way: 5 minutes.
    pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

    /// A scheme for a `whsec_<base64>` secret (the prefix is optional). An empty or
    /// non-base64 secret is an error.
    pub fn new(secret: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            keys: Keys::new(&decode_secret(secret)?)?,
            tolerance: Self::DEFAULT_TOLERANCE,
            future_skew: Self::DEFAULT_TOLERANCE,
        })
    }

    /// Also accepts signatures made with `secret`, for key rotation (at most 8 secrets).
    pub fn with_secret(mut self, secret: &str) -> Result<Self, ConfigError> {
        self.keys.push(&decode_secret(secret)?)?;
        Ok(self)
    }

    /// How old the signed timestamp may be (default 5 minutes).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// How far ahead of this receiver's clock the signed timestamp may be (default 5 minutes).
    pub fn future_skew(mut self, skew: Duration) -> Self {
        self.future_skew = skew;
        self
    }

    /// The `webhook-signature` value (`v1,<base64>`) for a message signed with the first secret.
    #[must_use]
    pub fn sign(&self, message_id: &str, unix_secs: u64, body: &[u8]) -> String {
        let t = unix_secs.to_string();
        let tag = self
            .keys
            .sign(&[message_id.as_bytes(), b".", t.as_bytes(), b".", body]);
        format!("v1,{}", STANDARD.encode(tag))
    }
}

fn decode_secret(secret: &str) -> Result<Vec<u8>, ConfigError> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    if encoded.is_empty() {
        return Err(ConfigError::new("webhook secret is empty"));
    }
    STANDARD
        .decode(encoded)
        .map_err(|_| ConfigError::new("Standard Webhooks secret is not valid base64"))
}

impl fmt::Debug for StandardWebhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandardWebhooks")
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .field("tolerance", &self.tolerance)
            .field("future_skew", &self.future_skew)
            .finish()
    }
}

impl Scheme for StandardWebhooks {
    type Verifier = StandardWebhooksVerifier;

    fn begin(&self, headers: &HeaderMap, now: SystemTime) -> Result<Self::Verifier, VerifyError> {
        let id = single_header(headers, &Self::ID_HEADER, "webhook-id")?;
        if id.is_empty() {
            return Err(VerifyError::Malformed {
                header: "webhook-id",
                reason: Malformed::EmptyMessageId,
            });
        }
        let timestamp_text = single_header(headers, &Self::TIMESTAMP_HEADER, "webhook-timestamp")?;
        let timestamp = parse_unix_seconds(timestamp_text).ok_or(VerifyError::Malformed {
            header: "webhook-timestamp",
            reason: Malformed::InvalidTimestamp,
        })?;
        let signature = single_header(headers, &Self::SIGNATURE_HEADER, "webhook-signature")?;
        let signatures = parse_signatures(signature).map_err(|reason| VerifyError::Malformed {
            header: "webhook-signature",
            reason,
        })?;
        check_freshness(timestamp, now, self.tolerance, self.future_skew)?;
        let macs = self
            .keys
            .begin(&[id.as_bytes(), b".", timestamp_text.as_bytes(), b"."]);
        Ok(StandardWebhooksVerifier(HmacVerifier::new(
            macs,
            signatures,
            timestamp,
            // single_header returned Ok, so the header is present.
            headers.get(Self::ID_HEADER).cloned(),
        )))
    }
}

/// One request's Standard Webhooks verification in progress.
pub struct StandardWebhooksVerifier(HmacVerifier);

impl fmt::Debug for StandardWebhooksVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandardWebhooksVerifier")
            .field("message_id", &self.0.message_id())
            .field("timestamp", &self.0.timestamp())
            .field("signatures", &self.0.signatures())
            .finish_non_exhaustive()
    }
}

impl Verifier for StandardWebhooksVerifier {
    fn update(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
    }

    fn finish(self) -> Result<Verified, VerifyError> {
        self.0.finish()
    }
}

/// Parses space-separated `version,base64` signatures; versions other than `v1` (such as the
/// asymmetric `v1a`) are skipped.
fn parse_signatures(value: &str) -> Result<Signatures, Malformed> {
    let mut signatures = Signatures::new();
    for (index, element) in value.split(' ').filter(|e| !e.is_empty()).enumerate() {
        let position = index + 1;
        let (version, encoded) = element
            .split_once(',')
            .ok_or(Malformed::ElementWithoutValue { position })?;
        if version != "v1" {
            continue;
        }
        if encoded.is_empty() {
            return Err(Malformed::EmptySignature { position });
        }
        let mut signature = [0; DIGEST_LEN];
        match STANDARD.decode_slice(encoded, &mut signature) {
            Ok(DIGEST_LEN) => {}
            _ => return Err(Malformed::SignatureNotBase64 { position }),
        }
        signatures.push(signature)?;
    }
    if signatures.is_empty() {
        return Err(Malformed::MissingSignature);
    }
    Ok(signatures)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use proptest::prelude::*;

    use super::*;

    // The example from the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const T: u64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn headers(id: &str, t: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(StandardWebhooks::ID_HEADER, id.parse().unwrap());
        h.insert(StandardWebhooks::TIMESTAMP_HEADER, t.parse().unwrap());
        h.insert(StandardWebhooks::SIGNATURE_HEADER, sig.parse().unwrap());
        h
    }

    fn scheme() -> StandardWebhooks {
        StandardWebhooks::new(SECRET).unwrap()
    }

    #[test]
    fn spec_example_signs_and_verifies() {
        assert_eq!(scheme().sign(ID, T, BODY), SIGNATURE);
        let verified = scheme()
            .verify(&headers(ID, "1614265330", SIGNATURE), BODY, at(T))
            .unwrap();
        assert_eq!(verified.message_id().unwrap(), ID);
        assert_eq!(verified.unix_timestamp(), T);
    }

    #[test]
    fn secret_prefix_is_optional_and_bad_secrets_are_refused() {
        let bare = StandardWebhooks::new(SECRET.trim_start_matches("whsec_")).unwrap();
        assert_eq!(bare.sign(ID, T, BODY), SIGNATURE);
        assert!(StandardWebhooks::new("whsec_").is_err());
        assert!(StandardWebhooks::new("").is_err());
        assert!(StandardWebhooks::new("whsec_not base64!").is_err());
    }

    #[test]
    fn the_id_is_signed() {
        let err = scheme()
            .verify(&headers("msg_other", "1614265330", SIGNATURE), BODY, at(T))
            .unwrap_err();
        assert!(matches!(err, VerifyError::SignatureMismatch { .. }));
    }

    #[test]
    fn several_signatures_and_unknown_versions() {
        let value = format!("v1a,AAAA v1,{} {}", "A".repeat(43) + "=", SIGNATURE);
        assert!(scheme()
            .verify(&headers(ID, "1614265330", &value), BODY, at(T))
            .is_ok());
    }

    #[test]
    fn window_is_five_minutes_either_way() {
        let h = headers(ID, "1614265330", SIGNATURE);
        assert!(scheme().verify(&h, BODY, at(T + 300)).is_ok());
        assert!(scheme().verify(&h, BODY, at(T - 300)).is_ok());
        assert!(matches!(
            scheme().begin(&h, at(T + 301)),
            Err(VerifyError::TimestampStale { .. })
        ));
        assert!(matches!(
            scheme().begin(&h, at(T - 301)),
            Err(VerifyError::TimestampInFuture { .. })
        ));
    }

    #[test]
    fn missing_headers_are_named() {
        let mut h = headers(ID, "1614265330", SIGNATURE);
        h.remove(StandardWebhooks::TIMESTAMP_HEADER);
        assert_eq!(
            scheme().begin(&h, at(T)).unwrap_err(),
            VerifyError::MissingHeader {
                header: "webhook-timestamp"
            }
        );
    }

    #[test]
    fn malformed_values() {
        let reason =
            |id: &str, t: &str, sig: &str| match scheme().begin(&headers(id, t, sig), at(T)) {
                Err(VerifyError::Malformed { reason, .. }) => reason,
                other => panic!("expected malformed, got {other:?}"),
            };
        assert_eq!(
            reason("", "1614265330", SIGNATURE),
            Malformed::EmptyMessageId
        );
        assert_eq!(reason(ID, "-5", SIGNATURE), Malformed::InvalidTimestamp);
        assert_eq!(
            reason(ID, "1614265330", "v2,abc"),
            Malformed::MissingSignature
        );
        assert_eq!(
            reason(ID, "1614265330", "v1"),
            Malformed::ElementWithoutValue { position: 1 }
        );
        assert_eq!(
            reason(ID, "1614265330", "v1,"),
            Malformed::EmptySignature { position: 1 }
        );
        assert_eq!(
            reason(ID, "1614265330", "v1,g0hM9SsE+OTPJTGt"),
            Malformed::SignatureNotBase64 { position: 1 }
        );
        assert_eq!(
            reason(ID, "1614265330", "v1,!!!!"),
            Malformed::SignatureNotBase64 { position: 1 }
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        assert!(!format!("{:?}", scheme()).contains("MfKQ9r8"));
    }

    proptest! {
        #[test]
        fn round_trip(body in proptest::collection::vec(any::<u8>(), 0..1024), id in "[a-zA-Z0-9_]{1,32}", t in 0u64..4_000_000_000) {
            let s = scheme();
            let h = headers(&id, &t.to_string(), &s.sign(&id, t, &body));
            prop_assert!(s.verify(&h, &body, at(t)).is_ok());
        }

        #[test]
        fn signature_parser_never_panics(value in "[ -~]{0,200}") {
            let _ = parse_signatures(&value);
        }
    }
}
