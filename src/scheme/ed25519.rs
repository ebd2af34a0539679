//! The ed25519 verifier of Standard Webhooks' asymmetric `v1a` signatures: public keys (each
//! live until its expiry, if it has one), and one streaming verification per (signature, key)
//! pair of a request.
//!
//! ## Streaming, not buffering
//!
//! An ed25519 signature (RFC 8032, not the prehashed Ed25519ph) is checked by hashing
//! `R || A || message` with SHA-512, where `R` is the first half of the signature and `A` the
//! public key, then comparing `[S]B - [k]A` with `R`. Both `R` and `A` are known before the
//! first body byte, so the message can be hashed as it arrives, like an HMAC:
//! `ed25519_dalek`'s `StreamVerifier` (feature `hazmat`) does exactly that. A verifier therefore
//! keeps no copy of the body: each pair costs a SHA-512 state and the key, about 0.6 KiB, whatever
//! the body's size, and one SHA-512 pass over the body.
//!
//! That pass cannot be shared between pairs (the hash starts with the pair's own `R` and `A`),
//! so the number of pairs is bounded: at most [`MAX_PASSES`] per request, or
//! [`ROTATION_SIGNATURES`] signatures per key when more keys are configured.

use std::time::SystemTime;

use ed25519_dalek::{Signature, StreamVerifier, VerifyingKey};

use super::hmac::is_live;

/// Length of an ed25519 signature in bytes.
pub(crate) const SIGNATURE_LEN: usize = 64;

/// Length of an ed25519 public key in bytes.
pub(crate) const PUBLIC_KEY_LEN: usize = 32;

/// Most ed25519 verifications of one request (its `v1a` signatures times the configured public
/// keys), as many as the HMAC passes of the most secrets a scheme takes: each one is a SHA-512
/// pass over the whole body, so they bound what a forged request can cost. A request may carry
/// [`ROTATION_SIGNATURES`] even beyond it.
pub(crate) const MAX_PASSES: usize = 8;

/// The `v1a` signatures a request may always carry, however many keys are configured: the old
/// and the new key's during a sender's rotation.
pub(crate) const ROTATION_SIGNATURES: usize = 2;

/// Why a public key is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyError {
    /// Not the encoding of a point of the curve.
    NotAPoint,
    /// A point of small order: anyone could make signatures that verify under it.
    Weak,
}

/// Decodes a public key, refusing encodings that are not curve points and weak (small-order)
/// keys.
pub(crate) fn public_key(bytes: &[u8; PUBLIC_KEY_LEN]) -> Result<VerifyingKey, KeyError> {
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::NotAPoint)?;
    if key.is_weak() {
        return Err(KeyError::Weak);
    }
    Ok(key)
}

/// One configured public key, with its place in the scheme's configuration order and when it
/// stops verifying, if ever.
#[derive(Clone)]
struct PublicKey {
    key: VerifyingKey,
    index: usize,
    until: Option<SystemTime>,
}

/// Every configured public key, in configuration order.
#[derive(Clone, Default)]
pub(crate) struct PublicKeys {
    keys: Vec<PublicKey>,
}

impl PublicKeys {
    /// Adds `key`, number `index` in the scheme's configuration, verifying until `until`
    /// (forever if `None`).
    pub(crate) fn push(&mut self, key: VerifyingKey, until: Option<SystemTime>, index: usize) {
        self.keys.push(PublicKey { key, index, until });
    }

    /// How many keys are configured, expired or not.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// A verification per pair of a live key and one of `signatures`, each already fed
    /// `prefix`; key by key in configuration order, so the first pair that verifies is the
    /// first configured key that matches. The caller bounds the pairs (see [`MAX_PASSES`]).
    pub(crate) fn begin(
        &self,
        signatures: &[[u8; SIGNATURE_LEN]],
        prefix: &[&[u8]],
        now: SystemTime,
    ) -> StreamSet {
        let mut streams = Vec::new();
        if signatures.is_empty() {
            return StreamSet { streams, keys: 0 };
        }
        let mut keys = 0;
        for key in self.keys.iter().filter(|key| is_live(key.until, now)) {
            keys += 1;
            for signature in signatures {
                // A signature whose `S` is not a canonical scalar can never verify: no stream.
                let Ok(mut verifier) = key.key.verify_stream(&Signature::from_bytes(signature))
                else {
                    continue;
                };
                for part in prefix {
                    verifier.update(part);
                }
                streams.push(Stream {
                    index: key.index,
                    signature: *signature,
                    verifier,
                });
            }
        }
        StreamSet { streams, keys }
    }
}

/// One signature under one key, hashing the body as it arrives.
struct Stream {
    index: usize,
    signature: [u8; SIGNATURE_LEN],
    verifier: StreamVerifier,
}

/// The running verifications of one request.
pub(crate) struct StreamSet {
    streams: Vec<Stream>,
    keys: usize,
}

impl StreamSet {
    /// How many public keys are tried.
    pub(crate) fn keys(&self) -> usize {
        self.keys
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        for stream in &mut self.streams {
            stream.verifier.update(data);
        }
    }

    /// The configuration index of the first key under which a signature verifies, and that
    /// signature. Public-key verification involves no secret, so it needs no constant-time
    /// care, and stops at the first match.
    pub(crate) fn finish(self) -> Option<(usize, [u8; SIGNATURE_LEN])> {
        self.streams.into_iter().find_map(|stream| {
            stream
                .verifier
                .finalize_and_verify()
                .ok()
                .map(|()| (stream.index, stream.signature))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    const NOW: SystemTime = UNIX_EPOCH;

    fn signer(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn keys_of(seeds: &[u8]) -> PublicKeys {
        let mut keys = PublicKeys::default();
        for (index, seed) in seeds.iter().enumerate() {
            keys.push(signer(*seed).verifying_key(), None, index);
        }
        keys
    }

    fn run(
        keys: &PublicKeys,
        signatures: &[[u8; 64]],
        chunks: &[&[u8]],
    ) -> Option<(usize, [u8; 64])> {
        let mut set = keys.begin(signatures, &[b"id.", b"5."], NOW);
        for chunk in chunks {
            set.update(chunk);
        }
        set.finish()
    }

    #[test]
    fn a_stream_equals_one_shot_verification() {
        let sig = signer(1).sign(b"id.5.hello world").to_bytes();
        let keys = keys_of(&[1]);
        assert_eq!(
            run(&keys, &[sig], &[b"hello", b" ", b"", b"world"]),
            Some((0, sig))
        );
        assert_eq!(run(&keys, &[sig], &[b"hello world"]), Some((0, sig)));
        assert_eq!(run(&keys, &[sig], &[b"hello world!"]), None);
        // The prefix is part of the message.
        let mut set = keys.begin(&[sig], &[b"id.", b"6."], NOW);
        set.update(b"hello world");
        assert_eq!(set.finish(), None);
    }

    #[test]
    fn the_first_configured_key_that_matches_wins() {
        let message = b"id.5.body";
        let (a, b) = (
            signer(1).sign(message).to_bytes(),
            signer(2).sign(message).to_bytes(),
        );
        let keys = keys_of(&[3, 2, 1]);
        assert_eq!(run(&keys, &[a, b], &[b"body"]), Some((1, b)));
        assert_eq!(run(&keys, &[b, a], &[b"body"]), Some((1, b)));
        assert_eq!(run(&keys, &[a], &[b"body"]), Some((2, a)));
        assert_eq!(run(&keys, &[[0; 64]], &[b"body"]), None);
        assert_eq!(run(&keys, &[], &[b"body"]), None);
        assert_eq!(keys.begin(&[a, b], &[], NOW).keys(), 3);
        assert_eq!(keys.begin(&[], &[], NOW).keys(), 0);
    }

    #[test]
    fn a_non_canonical_s_never_verifies() {
        let mut sig = signer(1).sign(b"id.5.body").to_bytes();
        // S + l: the same point equation, but S is no longer reduced (RFC 8032 refuses it).
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (s, l) in sig[32..].iter_mut().zip(l) {
            let sum = u16::from(*s) + u16::from(l) + carry;
            *s = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(run(&keys_of(&[1]), &[sig], &[b"body"]), None);
    }

    #[test]
    fn expired_keys_are_not_tried_and_keep_their_index() {
        let until = UNIX_EPOCH + Duration::from_secs(100);
        let mut keys = PublicKeys::default();
        keys.push(signer(1).verifying_key(), Some(until), 0);
        keys.push(signer(2).verifying_key(), None, 4);
        let message = b"id.5.body";
        let (a, b) = (
            signer(1).sign(message).to_bytes(),
            signer(2).sign(message).to_bytes(),
        );
        let at = |now: SystemTime, sig: [u8; 64]| {
            let mut set = keys.begin(&[sig], &[b"id.5."], now);
            set.update(b"body");
            (set.keys(), set.finish())
        };
        let before = until - Duration::from_nanos(1);
        assert_eq!(at(before, a), (2, Some((0, a))));
        assert_eq!(at(until, a), (1, None));
        assert_eq!(at(until, b), (1, Some((4, b))));
        assert_eq!(keys.len(), 2);
    }

    #[test]
    fn public_keys_must_be_points_of_large_order() {
        let good = signer(9).verifying_key().to_bytes();
        assert_eq!(public_key(&good).unwrap().to_bytes(), good);
        // The identity, a point of order 1.
        let mut identity = [0; 32];
        identity[0] = 1;
        assert_eq!(public_key(&identity).unwrap_err(), KeyError::Weak);
        // y = 2 is not on the curve.
        let mut off = [0; 32];
        off[0] = 2;
        assert_eq!(public_key(&off).unwrap_err(), KeyError::NotAPoint);
    }

    #[test]
    fn a_pair_costs_about_six_hundred_bytes() {
        // What the docs promise: about 0.6 KiB per (signature, key) pair, whatever the body.
        assert!(std::mem::size_of::<Stream>() <= 640);
    }
}
