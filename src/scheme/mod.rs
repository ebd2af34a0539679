//! Signature schemes: how a sender signs a delivery, and how to check it.
//!
//! A [`Scheme`] verifies in two steps, so that a layer can turn forgeries away before reading
//! the body:
//!
//! 1. [`Scheme::begin`] parses the signature headers and checks the signed timestamp, if the
//!    sender signs one, against the clock, *before any body byte is read*, and returns a
//!    [`Verifier`] already fed the signed prefix;
//! 2. the body is fed to [`Verifier::update`] frame by frame as it arrives, and
//!    [`Verifier::finish`] compares the result, in constant time, with every signature the
//!    request carries under every configured secret.
//!
//! Two schemes ship with hookgate:
//!
//! - [`ElevenLabs`]: `ElevenLabs-Signature: t=<unix secs>,v0=<hex HMAC-SHA256 of "t.body">`;
//! - `StandardWebhooks` (feature `standard-webhooks`): the open
//!   [Standard Webhooks](https://www.standardwebhooks.com/) spec, used by many senders, with
//!   its symmetric `v1` (HMAC-SHA256) and asymmetric `v1a` (ed25519) signatures.
//!
//! Every scheme takes several secrets (or public keys) for a rotation, and each one may expire
//! on its own (`with_secret_until`): see [`ElevenLabs::with_secret_until`].
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
//! ## A scheme of your own
//!
//! Any crate can implement [`Scheme`] for a sender hookgate does not ship, and use it with
//! `VerifySignatureLayer` like the shipped ones. Everything it needs is here:
//!
//! - [`Scheme::begin`] reads the headers with [`single_header`] (absent: 401
//!   `missing_signature`; ambiguous or not text: 400 `malformed_signature`), decodes the
//!   signatures ([`decode_hex_signature`], or the sender's encoding, reporting a [`Malformed`]
//!   reason), and, when the sender signs a timestamp, parses it with [`parse_unix_seconds`] and
//!   checks it with [`check_freshness`]. A [`VerifyError`] returned here is answered at once,
//!   without reading the body. The verifier it returns is already fed whatever the sender signs
//!   before the body.
//! - [`Verifier::update`] runs once per body frame: feed the MAC and nothing else (no
//!   allocation, no copy of the bytes).
//! - [`Verifier::finish`] compares in constant time (the `subtle` crate, or `hmac`'s
//!   `verify_slice`) and returns a [`Verified`]: [`Verified::new`] with the signed timestamp, or
//!   [`Verified::received_at`] with `begin`'s `now` when the sender signs none (freshness is the
//!   scheme's own check, so such a scheme is never refused as stale). No match is
//!   [`VerifyError::SignatureMismatch`] (401 `signature_mismatch`).
//! - Secrets stay out of `Debug` output and error texts.
//!
//! `examples/custom_scheme.rs` in the repository implements GitHub's `X-Hub-Signature-256`
//! (an HMAC-SHA256 of the body alone) this way, with only this public API.
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

use std::time::SystemTime;

use http::HeaderMap;

#[cfg(feature = "standard-webhooks")]
mod ed25519;
mod elevenlabs;
mod error;
mod header;
mod hmac;
#[cfg(feature = "standard-webhooks")]
mod standard_webhooks;
mod verified;

pub use elevenlabs::ElevenLabs;
pub use error::{Malformed, VerifyError};
#[cfg(feature = "standard-webhooks")]
pub use standard_webhooks::{StandardWebhooks, StandardWebhooksSigningKey};
pub use verified::{SignatureDigest, Verified};

pub use header::{check_freshness, decode_hex_signature, parse_unix_seconds, single_header};

/// A way senders sign deliveries. Implement it to verify a sender hookgate does not ship: see
/// [a scheme of your own](self#a-scheme-of-your-own).
pub trait Scheme: Send + Sync + 'static {
    /// The state of one request's verification, fed the body as it arrives.
    type Verifier: Verifier;

    /// Parses the signature headers and checks the signed timestamp, if the sender signs one,
    /// against `now`, before any body byte is read. Errors here are answered without reading the
    /// body. For a sender that signs no timestamp, `now` is the time of receipt to put in
    /// [`Verified::received_at`].
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

    /// Compares, in constant time, the signature the body should have with the signatures the
    /// request carries: the [`Verified`] of the first secret that matches, or
    /// [`VerifyError::SignatureMismatch`].
    fn finish(self) -> Result<Verified, VerifyError>;
}
