//! [`Verified`], the proof a request was verified, and [`SignatureDigest`], the signature that
//! matched.

use std::{
    fmt,
    hash::{Hash, Hasher},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::HeaderValue;

/// Proof that a request was verified, inserted into its extensions by
/// [`VerifySignatureLayer`](crate::VerifySignatureLayer).
///
/// A [`Verifier`](super::Verifier) makes one in [`finish`](super::Verifier::finish) when a
/// signature matched, with what its scheme knows:
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use hookgate::scheme::Verified;
///
/// // A scheme that signs a timestamp (checked for freshness in `Scheme::begin`).
/// let tag = [0x5a; 32]; // the signature that matched, as decoded from the request
/// let verified = Verified::new(1_600_000_000, 0, tag)
///     .with_message_id(http::HeaderValue::from_static("msg_1"));
/// assert!(verified.is_timestamp_signed());
/// assert_eq!(verified.unix_timestamp(), 1_600_000_000);
/// assert_eq!(verified.signature().as_bytes(), &tag);
///
/// // A scheme that signs none: the timestamp is when the request was received.
/// let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let verified = Verified::received_at(now, 1, [0x17; 20]);
/// assert!(!verified.is_timestamp_signed());
/// assert_eq!(verified.timestamp(), now);
/// assert_eq!(verified.secret_index(), 1);
/// ```
///
/// ## The timestamp of a scheme that signs none
///
/// Some senders (GitHub's `X-Hub-Signature-256`, for one) sign the body alone. Such a scheme
/// builds its `Verified` with [`received_at`](Self::received_at), passing the `now` that
/// [`Scheme::begin`](super::Scheme::begin) was given: [`timestamp`](Self::timestamp) is then the
/// time of receipt and [`is_timestamp_signed`](Self::is_timestamp_signed) is `false`. Freshness
/// is checked by each scheme in `begin`, never by the layer, so a scheme without a timestamp is
/// never refused as stale; but nothing bounds how long a captured delivery can be replayed
/// either: deduplicate on [`signature`](Self::signature) or on an event id of the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    timestamp: u64,
    timestamp_signed: bool,
    secret_index: usize,
    signature: SignatureDigest,
    message_id: Option<HeaderValue>,
}

impl Verified {
    /// A delivery signed at `unix_timestamp` (seconds since the Unix epoch) whose `signature`
    /// matched under the configured secret number `secret_index` (0 for the first, in
    /// configuration order). `signature` is a [`SignatureDigest`] or a byte array of 1 to
    /// [`SignatureDigest::MAX_LEN`] bytes.
    #[must_use]
    pub fn new(
        unix_timestamp: u64,
        secret_index: usize,
        signature: impl Into<SignatureDigest>,
    ) -> Self {
        Self {
            timestamp: unix_timestamp,
            timestamp_signed: true,
            secret_index,
            signature: signature.into(),
            message_id: None,
        }
    }

    /// A delivery whose scheme signs no timestamp, received at `received` (the `now` given to
    /// [`Scheme::begin`](super::Scheme::begin)); otherwise as [`new`](Self::new). A clock before
    /// 1970 counts as 1970.
    #[must_use]
    pub fn received_at(
        received: SystemTime,
        secret_index: usize,
        signature: impl Into<SignatureDigest>,
    ) -> Self {
        let seconds = received
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        Self {
            timestamp_signed: false,
            ..Self::new(seconds, secret_index, signature)
        }
    }

    /// Also records the sender's message id, for schemes that sign one (Standard Webhooks'
    /// `webhook-id`).
    #[must_use]
    pub fn with_message_id(mut self, message_id: HeaderValue) -> Self {
        self.message_id = Some(message_id);
        self
    }

    /// The signed timestamp, in seconds since the Unix epoch; for a scheme that signs none, when
    /// the request was received (see [`is_timestamp_signed`](Self::is_timestamp_signed)).
    #[must_use]
    pub fn unix_timestamp(&self) -> u64 {
        self.timestamp
    }

    /// The signed timestamp; for a scheme that signs none, when the request was received (to
    /// the second).
    #[must_use]
    pub fn timestamp(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.timestamp)
    }

    /// Whether the sender signed the [`timestamp`](Self::timestamp) (`false`: it is the time of
    /// receipt, see [`received_at`](Self::received_at)).
    #[must_use]
    pub fn is_timestamp_signed(&self) -> bool {
        self.timestamp_signed
    }

    /// Which configured secret matched, in configuration order: 0 is the secret given to the
    /// constructor, 1 the first `with_secret`, and so on (Standard Webhooks counts its secrets
    /// and public keys together, in the order they were added; an expired one keeps its number).
    /// Watch it during a key rotation to know when the old secret is no longer used.
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

/// A signature that matched, as raw bytes: 32 for HMAC-SHA256 (both shipped schemes), 20 for
/// HMAC-SHA1, up to [`MAX_LEN`](Self::MAX_LEN) (64, HMAC-SHA512 or Ed25519). It was sent in the
/// clear, so it is no secret. It is held inline: making, copying or comparing one never
/// allocates.
///
/// ```
/// use hookgate::scheme::SignatureDigest;
///
/// let sha1 = SignatureDigest::from([0xab; 20]);
/// assert_eq!(sha1.as_bytes().len(), 20);
/// assert_eq!(sha1.to_hex(), "ab".repeat(20));
/// assert_eq!(SignatureDigest::new(&[0xab; 20]), Some(sha1));
/// // Empty, or longer than 64 bytes, is no digest.
/// assert_eq!(SignatureDigest::new(&[]), None);
/// assert_eq!(SignatureDigest::new(&[0; 65]), None);
/// ```
///
/// From an array, the length is checked when the program is built (by `cargo build`;
/// `cargo check` does not evaluate it):
///
/// ```compile_fail
/// let _ = hookgate::scheme::SignatureDigest::from([0u8; 65]);
/// ```
#[derive(Clone, Copy)]
pub struct SignatureDigest {
    // `bytes[len..]` is always zero.
    len: u8,
    bytes: [u8; Self::MAX_LEN],
}

impl SignatureDigest {
    /// The longest digest held, in bytes.
    pub const MAX_LEN: usize = 64;

    /// The digest `bytes`; `None` when they are empty or longer than [`MAX_LEN`](Self::MAX_LEN).
    #[must_use]
    pub fn new(bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty() || bytes.len() > Self::MAX_LEN {
            return None;
        }
        let mut digest = Self {
            len: bytes.len() as u8,
            bytes: [0; Self::MAX_LEN],
        };
        digest.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(digest)
    }

    /// The raw bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Lower-case hex, as in ElevenLabs' `v0=` element.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }
}

/// A digest of `N` bytes, `N` from 1 to [`SignatureDigest::MAX_LEN`]; other lengths fail to
/// build.
impl<const N: usize> From<[u8; N]> for SignatureDigest {
    fn from(bytes: [u8; N]) -> Self {
        const {
            assert!(
                N >= 1 && N <= SignatureDigest::MAX_LEN,
                "a SignatureDigest holds 1 to 64 bytes"
            );
        }
        let mut digest = Self {
            len: N as u8,
            bytes: [0; Self::MAX_LEN],
        };
        digest.bytes[..N].copy_from_slice(&bytes);
        digest
    }
}

impl PartialEq for SignatureDigest {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for SignatureDigest {}

impl Hash for SignatureDigest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Debug for SignatureDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignatureDigest({self})")
    }
}

impl fmt::Display for SignatureDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_bytes()
            .iter()
            .try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn a_digest_holds_1_to_64_bytes_exactly() {
        for len in 1..=SignatureDigest::MAX_LEN {
            let bytes: Vec<u8> = (1..=len as u8).collect();
            let digest = SignatureDigest::new(&bytes).unwrap();
            assert_eq!(digest.as_bytes(), &bytes[..], "{len}");
        }
        assert_eq!(SignatureDigest::new(&[]), None);
        assert_eq!(
            SignatureDigest::new(&[7; SignatureDigest::MAX_LEN + 1]),
            None
        );
        assert_eq!(SignatureDigest::new(&[7; 1000]), None);
    }

    #[test]
    fn a_20_byte_digest() {
        let sha1: [u8; 20] = std::array::from_fn(|i| i as u8 * 13);
        let digest = SignatureDigest::from(sha1);
        assert_eq!(digest.as_bytes(), &sha1);
        assert_eq!(SignatureDigest::new(&sha1), Some(digest));
        assert_eq!(digest.to_hex(), hex::encode(sha1));
        assert_eq!(digest.to_hex().len(), 40);
        assert_eq!(digest.to_string(), digest.to_hex());
        assert_eq!(
            format!("{digest:?}"),
            format!("SignatureDigest({})", hex::encode(sha1))
        );
    }

    #[test]
    fn a_64_byte_digest() {
        let sha512: [u8; 64] = std::array::from_fn(|i| 255 - i as u8);
        let digest = SignatureDigest::from(sha512);
        assert_eq!(digest.as_bytes(), &sha512);
        assert_eq!(SignatureDigest::new(&sha512), Some(digest));
        assert_eq!(digest.to_hex(), hex::encode(sha512));
        assert_eq!(digest.to_string(), hex::encode(sha512));
        let verified = Verified::new(1, 0, sha512);
        assert_eq!(verified.signature().as_bytes(), &sha512);
    }

    #[test]
    fn digests_of_other_lengths_differ_even_when_one_is_the_others_prefix() {
        // The unused tail is zero: a short digest must not equal a longer one padded with zeros.
        let short = SignatureDigest::from([0; 20]);
        let long = SignatureDigest::from([0; 32]);
        assert_ne!(short, long);
        let prefix = SignatureDigest::from([9; 31]);
        let whole = SignatureDigest::from([9; 32]);
        assert_ne!(prefix, whole);
        assert_eq!(whole, SignatureDigest::new(&[9; 32]).unwrap());
        let set: HashSet<SignatureDigest> = [short, long, prefix, whole, long].into();
        assert_eq!(set.len(), 4);
        assert!(set.contains(&SignatureDigest::new(&[0; 20]).unwrap()));
        assert!(!set.contains(&SignatureDigest::new(&[0; 21]).unwrap()));
        // Equal lengths, one differing byte.
        let mut other = [9; 32];
        other[31] = 8;
        assert_ne!(whole, SignatureDigest::from(other));
    }

    #[test]
    fn a_digest_hashes_as_its_bytes() {
        use std::hash::DefaultHasher;
        fn hash_of(value: &(impl Hash + ?Sized)) -> u64 {
            let mut hasher = DefaultHasher::new();
            value.hash(&mut hasher);
            hasher.finish()
        }
        let bytes = [0x42; 20];
        assert_eq!(hash_of(&SignatureDigest::from(bytes)), hash_of(&bytes[..]));
        assert_ne!(
            hash_of(&SignatureDigest::from([1; 32])),
            hash_of(&SignatureDigest::from([2; 32]))
        );
    }

    #[test]
    fn hex_is_lower_case_and_keeps_leading_zeros() {
        let digest = SignatureDigest::from([0x00, 0x0f, 0xab, 0xf0]);
        assert_eq!(digest.to_hex(), "000fabf0");
        assert_eq!(digest.to_string(), "000fabf0");
        assert_eq!(format!("{digest:?}"), "SignatureDigest(000fabf0)");
    }

    #[test]
    fn new_records_what_the_scheme_knows() {
        let verified = Verified::new(1_600_000_000, 3, [0xcd; 32]);
        assert_eq!(verified.unix_timestamp(), 1_600_000_000);
        assert_eq!(
            verified.timestamp(),
            UNIX_EPOCH + Duration::from_secs(1_600_000_000)
        );
        assert!(verified.is_timestamp_signed());
        assert_eq!(verified.secret_index(), 3);
        assert_eq!(verified.signature(), &SignatureDigest::from([0xcd; 32]));
        assert_eq!(verified.message_id(), None);
        let id = HeaderValue::from_static("msg_2");
        let with_id = verified.clone().with_message_id(id.clone());
        assert_eq!(with_id.message_id(), Some(&id));
        assert_ne!(with_id, verified);
        // A digest made beforehand is taken as it is.
        let digest = SignatureDigest::new(&[1, 2, 3]).unwrap();
        assert_eq!(Verified::new(0, 0, digest).signature(), &digest);
    }

    #[test]
    fn received_at_is_the_time_of_receipt_and_says_so() {
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_900);
        let verified = Verified::received_at(now, 2, [0x11; 20]);
        assert!(!verified.is_timestamp_signed());
        assert_eq!(verified.unix_timestamp(), 1_700_000_000);
        assert_eq!(verified.secret_index(), 2);
        assert_eq!(verified.signature().as_bytes(), &[0x11; 20]);
        assert_eq!(verified.message_id(), None);
        assert_ne!(verified, Verified::new(1_700_000_000, 2, [0x11; 20]));
        // Before 1970: 1970.
        let early = Verified::received_at(UNIX_EPOCH - Duration::from_secs(5), 0, [1; 32]);
        assert_eq!(early.unix_timestamp(), 0);
    }
}
