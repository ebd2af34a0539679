//! [`Verified`], the proof a request was verified, and [`SignatureDigest`], the signature that
//! matched.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::HeaderValue;

use super::hmac;

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
        signature: [u8; hmac::DIGEST_LEN],
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
pub struct SignatureDigest([u8; hmac::DIGEST_LEN]);

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
