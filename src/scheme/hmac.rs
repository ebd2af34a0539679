//! The one HMAC-SHA256 verifier of the shipped schemes: pre-keyed secrets (each live until its
//! expiry, if it has one), the per-request MAC set, the signatures a request carries and the
//! constant-time match between them.
//!
//! A scheme only parses its headers into a signed prefix and [`Signatures`]; [`MacSet`] (and,
//! for ElevenLabs, [`HmacVerifier`]) does the rest.

use std::time::SystemTime;

use ::hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use super::{Malformed, Verified, Verifier, VerifyError};
use crate::ConfigError;

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag in bytes.
pub(crate) const DIGEST_LEN: usize = 32;

/// Most secrets one scheme accepts: each one costs a full MAC pass over every body.
pub(crate) const MAX_SECRETS: usize = 8;

/// Most signatures one request may carry; more is refused as malformed, bounding the work a
/// forged header can cause.
pub(crate) const MAX_SIGNATURES: usize = 8;

/// Whether a secret that expires at `until` (never, if `None`) still verifies at `now`: it
/// does strictly before `until`, and no longer from that instant on.
pub(crate) fn is_live(until: Option<SystemTime>, now: SystemTime) -> bool {
    until.is_none_or(|until| now < until)
}

/// One configured secret: its pre-keyed HMAC state, its place in the scheme's configuration
/// order (what [`Verified::secret_index`] reports) and when it stops verifying, if ever.
#[derive(Clone)]
struct Key {
    mac: HmacSha256,
    index: usize,
    until: Option<SystemTime>,
}

/// Every configured secret as a pre-keyed HMAC state, in configuration order.
///
/// Keying HMAC costs two SHA-256 blocks; doing it once here, and cloning the keyed state per
/// request, takes that off every request. The raw secrets are not kept.
#[derive(Clone)]
pub(crate) struct Keys {
    keyed: Vec<Key>,
}

impl Keys {
    /// No secret yet (a Standard Webhooks scheme with public keys only).
    #[cfg_attr(not(feature = "standard-webhooks"), allow(dead_code))]
    pub(crate) const fn empty() -> Self {
        Self { keyed: Vec::new() }
    }

    /// One secret that never expires, number 0 in the configuration.
    pub(crate) fn new(secret: &[u8]) -> Result<Self, ConfigError> {
        let mut keys = Self { keyed: Vec::new() };
        keys.push(secret, None, 0)?;
        Ok(keys)
    }

    /// Adds `secret`, number `index` in the scheme's configuration, verifying until `until`
    /// (forever if `None`).
    pub(crate) fn push(
        &mut self,
        secret: &[u8],
        until: Option<SystemTime>,
        index: usize,
    ) -> Result<(), ConfigError> {
        if secret.is_empty() {
            return Err(ConfigError::new("webhook secret is empty"));
        }
        if self.keyed.len() >= MAX_SECRETS {
            return Err(ConfigError::new(format!(
                "at most {MAX_SECRETS} webhook secrets can be configured at once"
            )));
        }
        // HMAC accepts keys of any length.
        let mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        self.keyed.push(Key { mac, index, until });
        Ok(())
    }

    /// How many secrets are configured, expired or not.
    pub(crate) fn len(&self) -> usize {
        self.keyed.len()
    }

    /// A MAC per secret still live at `now`, each already fed `prefix`. Expired secrets cost
    /// nothing: they get no MAC.
    pub(crate) fn begin(&self, prefix: &[&[u8]], now: SystemTime) -> MacSet {
        let seed = |key: &Key| {
            let mut mac = key.mac.clone();
            for part in prefix {
                mac.update(part);
            }
            (key.index, mac)
        };
        let mut live = self.keyed.iter().filter(|key| is_live(key.until, now));
        let Some(first) = live.next() else {
            return MacSet::Empty;
        };
        let Some(second) = live.next() else {
            let (index, mac) = seed(first);
            return MacSet::One(index, mac);
        };
        let mut macs = Vec::with_capacity(self.keyed.len());
        macs.push(seed(first));
        macs.push(seed(second));
        macs.extend(live.map(seed));
        MacSet::Many(macs)
    }

    /// The tag of `parts` under the first configured secret (expired or not); `None` without
    /// any secret.
    pub(crate) fn sign(&self, parts: &[&[u8]]) -> Option<[u8; DIGEST_LEN]> {
        let mut mac = self.keyed.first()?.mac.clone();
        for part in parts {
            mac.update(part);
        }
        Some(mac.finalize().into_bytes().into())
    }
}

/// The running MACs of one request, one per live secret, each with the secret's configuration
/// index.
pub(crate) enum MacSet {
    // No live secret, or nothing to check with one.
    Empty,
    // One secret is the common case: no allocation per request.
    One(usize, HmacSha256),
    Many(Vec<(usize, HmacSha256)>),
}

impl MacSet {
    /// How many secrets are tried.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(..) => 1,
            Self::Many(macs) => macs.len(),
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Self::Empty => {}
            Self::One(_, mac) => mac.update(data),
            Self::Many(macs) => macs.iter_mut().for_each(|(_, mac)| mac.update(data)),
        }
    }

    /// Finishes every MAC and compares each, in constant time, with every candidate signature.
    /// Returns the configuration index of the first secret that matched and the matching
    /// signature.
    pub(crate) fn finish(self, candidates: &Signatures) -> Option<(usize, [u8; DIGEST_LEN])> {
        let mut found = None;
        let mut check = |index: usize, mac: HmacSha256| {
            let tag: [u8; DIGEST_LEN] = mac.finalize().into_bytes().into();
            // Every candidate is compared in full, whatever the outcome of the others.
            let matched = candidates.iter().fold(Choice::from(0), |acc, candidate| {
                acc | tags_equal(&tag, candidate)
            });
            if found.is_none() && bool::from(matched) {
                found = Some((index, tag));
            }
        };
        match self {
            Self::Empty => {}
            Self::One(index, mac) => check(index, mac),
            Self::Many(macs) => macs.into_iter().for_each(|(index, mac)| check(index, mac)),
        }
        found
    }
}

/// The decoded signatures a request carries: one, the common case, inline; more (during a key
/// rotation) in one allocation. Kept small because it lives in every request's future, which
/// each layer around the verifier moves.
/// `a == b` in constant time: the differences of all 32 bytes are OR-ed together as four words,
/// with no branch on the data, and only the result goes through `subtle`'s optimization
/// barrier (one barrier per comparison instead of one per byte, as `<[u8]>::ct_eq` pays).
fn tags_equal(a: &[u8; DIGEST_LEN], b: &[u8; DIGEST_LEN]) -> Choice {
    let difference = a
        .chunks_exact(8)
        .zip(b.chunks_exact(8))
        .fold(0u64, |acc, (a, b)| {
            let word = |bytes: &[u8]| u64::from_ne_bytes(bytes.try_into().expect("8 bytes"));
            acc | (word(a) ^ word(b))
        });
    difference.ct_eq(&0)
}

#[derive(Clone, Default)]
pub(crate) struct Signatures {
    first: Option<[u8; DIGEST_LEN]>,
    more: Vec<[u8; DIGEST_LEN]>,
}

impl Signatures {
    pub(crate) const fn new() -> Self {
        Self {
            first: None,
            more: Vec::new(),
        }
    }

    /// Adds one; more than [`MAX_SIGNATURES`] is a malformed header.
    pub(crate) fn push(&mut self, signature: [u8; DIGEST_LEN]) -> Result<(), Malformed> {
        if self.first.is_none() {
            self.first = Some(signature);
            return Ok(());
        }
        if self.len() == MAX_SIGNATURES {
            return Err(Malformed::TooManySignatures {
                max: MAX_SIGNATURES,
            });
        }
        self.more.push(signature);
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8; DIGEST_LEN]> {
        self.first.iter().chain(&self.more)
    }
}

/// One request's HMAC verification, as ElevenLabs runs it: a MAC per live secret already fed
/// the signed prefix, then the body; at the end, the first secret whose tag is among the
/// signatures sent.
pub(crate) struct HmacVerifier {
    macs: MacSet,
    signatures: Signatures,
    timestamp: u64,
}

impl HmacVerifier {
    /// A verifier of `signatures` over the running `macs` (see [`Keys::begin`]); `timestamp` is
    /// the signed one, checked for freshness by the scheme.
    pub(crate) fn new(macs: MacSet, signatures: Signatures, timestamp: u64) -> Self {
        Self {
            macs,
            signatures,
            timestamp,
        }
    }

    pub(crate) fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// How many signatures the request carries.
    pub(crate) fn signatures(&self) -> usize {
        self.signatures.len()
    }

    /// How many secrets are tried.
    pub(crate) fn secrets(&self) -> usize {
        self.macs.len()
    }
}

impl Verifier for HmacVerifier {
    fn update(&mut self, chunk: &[u8]) {
        self.macs.update(chunk);
    }

    fn finish(self) -> Result<Verified, VerifyError> {
        let secrets = self.macs.len();
        match self.macs.finish(&self.signatures) {
            Some((secret_index, signature)) => {
                Ok(Verified::new(self.timestamp, secret_index, signature))
            }
            None => Err(VerifyError::SignatureMismatch {
                signatures: self.signatures.len(),
                secrets,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// When the tests verify: no secret of theirs has expired by then, unless it says so.
    const NOW: SystemTime = UNIX_EPOCH;

    #[test]
    fn empty_secret_is_refused() {
        assert!(Keys::new(b"").is_err());
        let mut keys = Keys::new(b"a").unwrap();
        assert!(keys.push(b"", None, 1).is_err());
    }

    #[test]
    fn secret_count_is_capped() {
        let mut keys = Keys::new(b"0").unwrap();
        for i in 1..MAX_SECRETS {
            keys.push(i.to_string().as_bytes(), None, i).unwrap();
        }
        assert!(keys.push(b"one too many", None, MAX_SECRETS).is_err());
        assert_eq!(keys.len(), MAX_SECRETS);
    }

    #[test]
    fn incremental_mac_equals_one_shot_sign() {
        let keys = Keys::new(b"secret").unwrap();
        let mut set = keys.begin(&[b"12", b"."], NOW);
        set.update(b"bo");
        set.update(b"dy");
        let expected = keys.sign(&[b"12.body"]).unwrap();
        let mut sigs = Signatures::new();
        sigs.push(expected).unwrap();
        assert_eq!(set.finish(&sigs), Some((0, expected)));
    }

    #[test]
    fn reports_which_secret_matched() {
        let mut keys = Keys::new(b"old").unwrap();
        keys.push(b"new", None, 1).unwrap();
        let by_new = Keys::new(b"new").unwrap().sign(&[b"x"]).unwrap();
        let mut sigs = Signatures::new();
        sigs.push([7; DIGEST_LEN]).unwrap();
        sigs.push(by_new).unwrap();
        let mut set = keys.begin(&[], NOW);
        set.update(b"x");
        assert_eq!(set.finish(&sigs), Some((1, by_new)));
    }

    #[test]
    fn no_candidate_means_no_match() {
        let keys = Keys::new(b"secret").unwrap();
        assert_eq!(keys.begin(&[], NOW).finish(&Signatures::new()), None);
    }

    fn candidates(list: &[[u8; DIGEST_LEN]]) -> Signatures {
        let mut sigs = Signatures::new();
        for sig in list {
            assert!(sigs.push(*sig).is_ok());
        }
        sigs
    }

    fn keys_of(secrets: &[&[u8]]) -> Keys {
        let mut keys = Keys::new(secrets[0]).unwrap();
        for (index, secret) in secrets.iter().enumerate().skip(1) {
            keys.push(secret, None, index).unwrap();
        }
        keys
    }

    #[test]
    fn the_same_valid_signature_twice_matches() {
        let keys = Keys::new(b"secret").unwrap();
        let tag = keys.sign(&[b"body"]).unwrap();
        let mut set = keys.begin(&[], NOW);
        set.update(b"body");
        assert_eq!(set.finish(&candidates(&[tag, tag])), Some((0, tag)));
        // And under several secrets.
        let keys = keys_of(&[b"a", b"b"]);
        let tag = Keys::new(b"b").unwrap().sign(&[b"body"]).unwrap();
        let mut set = keys.begin(&[], NOW);
        set.update(b"body");
        assert_eq!(set.finish(&candidates(&[tag, tag])), Some((1, tag)));
    }

    #[test]
    fn a_valid_signature_matches_beside_invalid_ones_in_any_order() {
        let keys = Keys::new(b"secret").unwrap();
        let tag = keys.sign(&[b"body"]).unwrap();
        let wrong = [0xab; DIGEST_LEN];
        for list in [
            vec![tag, wrong],
            vec![wrong, tag],
            vec![wrong, wrong, wrong, tag, wrong, wrong, wrong, wrong],
        ] {
            let mut set = keys.begin(&[], NOW);
            set.update(b"body");
            assert_eq!(set.finish(&candidates(&list)), Some((0, tag)));
        }
        let mut set = keys.begin(&[], NOW);
        set.update(b"body");
        assert_eq!(set.finish(&candidates(&[wrong, wrong])), None);
    }

    #[test]
    fn the_first_configured_secret_that_matches_wins() {
        let keys = keys_of(&[b"a", b"b", b"c"]);
        let by = |secret: &[u8]| Keys::new(secret).unwrap().sign(&[b"t.", b"body"]).unwrap();
        let (a, b, c) = (by(b"a"), by(b"b"), by(b"c"));
        for list in [[b, c], [c, b]] {
            let mut set = keys.begin(&[b"t."], NOW);
            set.update(b"body");
            assert_eq!(set.finish(&candidates(&list)), Some((1, b)), "{list:?}");
        }
        let mut set = keys.begin(&[b"t."], NOW);
        set.update(b"body");
        assert_eq!(set.finish(&candidates(&[c, b, a])), Some((0, a)));
        // The same secret configured twice: the first index.
        let twice = keys_of(&[b"a", b"a"]);
        let mut set = twice.begin(&[b"t."], NOW);
        set.update(b"body");
        assert_eq!(set.finish(&candidates(&[a])), Some((0, a)));
    }

    #[test]
    fn every_mac_of_a_set_gets_the_prefix_and_every_update() {
        let keys = keys_of(&[b"a", b"b", b"c"]);
        let want = Keys::new(b"c")
            .unwrap()
            .sign(&[b"1600000000.hello world"])
            .unwrap();
        let mut set = keys.begin(&[b"1600000000", b"."], NOW);
        set.update(b"hello ");
        set.update(b"");
        set.update(b"world");
        assert_eq!(set.finish(&candidates(&[want])), Some((2, want)));
        // Without the prefix it is another message.
        let mut set = keys.begin(&[], NOW);
        set.update(b"hello world");
        assert_eq!(set.finish(&candidates(&[want])), None);
    }

    #[test]
    fn signing_uses_the_first_secret() {
        let keys = keys_of(&[b"current", b"previous"]);
        assert_eq!(
            keys.sign(&[b"x"]).unwrap(),
            Keys::new(b"current").unwrap().sign(&[b"x"]).unwrap()
        );
        assert_ne!(
            keys.sign(&[b"x"]).unwrap(),
            Keys::new(b"previous").unwrap().sign(&[b"x"]).unwrap()
        );
        assert_eq!(keys.len(), 2);
    }

    #[test]
    fn signatures_count_and_keep_what_was_pushed_in_order() {
        let mut sigs = Signatures::new();
        assert!(sigs.is_empty());
        assert_eq!(sigs.len(), 0);
        assert_eq!(sigs.iter().count(), 0);
        for i in 0..3u8 {
            assert!(sigs.push([i; DIGEST_LEN]).is_ok());
        }
        assert!(!sigs.is_empty());
        assert_eq!(sigs.len(), 3);
        let kept: Vec<u8> = sigs.iter().map(|s| s[0]).collect();
        assert_eq!(kept, [0, 1, 2]);
    }

    #[test]
    fn signatures_capacity_is_bounded() {
        let mut sigs = Signatures::new();
        for _ in 0..MAX_SIGNATURES {
            assert!(sigs.push([0; DIGEST_LEN]).is_ok());
        }
        assert_eq!(
            sigs.push([0; DIGEST_LEN]),
            Err(Malformed::TooManySignatures {
                max: MAX_SIGNATURES
            })
        );
        assert_eq!(sigs.len(), MAX_SIGNATURES);
    }

    #[test]
    fn the_verifier_reports_the_match_or_what_was_tried() {
        let keys = keys_of(&[b"a", b"b"]);
        let tag = Keys::new(b"b").unwrap().sign(&[b"7.", b"body"]).unwrap();
        let mut verifier = HmacVerifier::new(keys.begin(&[b"7."], NOW), candidates(&[tag]), 7);
        assert_eq!(
            (
                verifier.timestamp(),
                verifier.signatures(),
                verifier.secrets()
            ),
            (7, 1, 2)
        );
        verifier.update(b"bo");
        verifier.update(b"dy");
        let verified = verifier.finish().unwrap();
        assert_eq!(verified.unix_timestamp(), 7);
        assert_eq!(verified.secret_index(), 1);
        assert_eq!(verified.signature().as_bytes(), &tag);
        assert_eq!(verified.message_id(), None);

        let mut verifier = HmacVerifier::new(
            keys.begin(&[b"7."], NOW),
            candidates(&[[1; DIGEST_LEN], [2; DIGEST_LEN], [3; DIGEST_LEN]]),
            7,
        );
        verifier.update(b"body");
        assert_eq!(
            verifier.finish().unwrap_err(),
            VerifyError::SignatureMismatch {
                signatures: 3,
                secrets: 2
            }
        );
        assert_eq!(Keys::new(b"a").unwrap().begin(&[], NOW).len(), 1);
    }

    #[test]
    fn a_secret_is_live_strictly_before_its_expiry() {
        let until = UNIX_EPOCH + Duration::from_secs(1_000);
        assert!(is_live(None, until));
        assert!(is_live(Some(until), until - Duration::from_nanos(1)));
        assert!(!is_live(Some(until), until));
        assert!(!is_live(Some(until), until + Duration::from_secs(1)));
    }

    #[test]
    fn expired_secrets_get_no_mac_and_keep_their_index() {
        let until = UNIX_EPOCH + Duration::from_secs(1_000);
        let before = until - Duration::from_secs(1);
        let mut keys = Keys::new(b"current").unwrap();
        keys.push(b"old", Some(until), 1).unwrap();
        keys.push(b"other", None, 5).unwrap();
        let by = |secret: &[u8]| Keys::new(secret).unwrap().sign(&[b"body"]).unwrap();
        let (current, old, other) = (by(b"current"), by(b"old"), by(b"other"));
        let run = |now: SystemTime, sig: [u8; DIGEST_LEN]| {
            let mut set = keys.begin(&[], now);
            set.update(b"body");
            (set.len(), set.finish(&candidates(&[sig])))
        };
        // Before the expiry every secret is tried and the old one still matches, as number 1.
        assert_eq!(run(before, old), (3, Some((1, old))));
        // From the expiry on, the old secret is not tried: its signature no longer matches.
        assert_eq!(run(until, old), (2, None));
        // The others still do, under their own configuration index.
        assert_eq!(run(until, current), (2, Some((0, current))));
        assert_eq!(run(until, other), (2, Some((5, other))));
        // Signing ignores expiry: it uses the first configured secret.
        assert_eq!(keys.sign(&[b"body"]), Some(current));
    }

    #[test]
    fn one_live_secret_among_several_is_the_single_mac() {
        let until = UNIX_EPOCH + Duration::from_secs(10);
        let mut keys = Keys::new(b"a").unwrap();
        keys.push(b"b", Some(until), 1).unwrap();
        keys.push(b"c", Some(until), 2).unwrap();
        let later = until + Duration::from_secs(1);
        assert!(matches!(keys.begin(&[], later), MacSet::One(0, _)));
        assert!(matches!(keys.begin(&[], NOW), MacSet::Many(ref macs) if macs.len() == 3));

        // Every secret expired: nothing is tried, nothing matches.
        let mut keys = Keys::empty();
        keys.push(b"b", Some(until), 3).unwrap();
        let tag = keys.sign(&[b"x"]).unwrap();
        let mut set = keys.begin(&[], later);
        assert_eq!(set.len(), 0);
        set.update(b"x");
        assert_eq!(set.finish(&candidates(&[tag])), None);
        let mut set = keys.begin(&[], NOW);
        set.update(b"x");
        assert_eq!(set.finish(&candidates(&[tag])), Some((3, tag)));
        assert_eq!(Keys::empty().sign(&[b"x"]), None);
        assert_eq!(Keys::empty().len(), 0);
    }

    #[test]
    fn tags_are_equal_only_when_every_bit_is() {
        let tag: [u8; DIGEST_LEN] = std::array::from_fn(|i| (i * 37 + 11) as u8);
        assert!(bool::from(tags_equal(&tag, &tag)));
        assert!(bool::from(tags_equal(&[0; DIGEST_LEN], &[0; DIGEST_LEN])));
        for byte in 0..DIGEST_LEN {
            for bit in 0..8 {
                let mut other = tag;
                other[byte] ^= 1 << bit;
                assert!(!bool::from(tags_equal(&tag, &other)), "{byte}/{bit}");
                assert!(!bool::from(tags_equal(&other, &tag)), "{byte}/{bit}");
                // The same difference in two words, or in every word, does not cancel out.
                let mut twice = other;
                twice[(byte + 8) % DIGEST_LEN] ^= 1 << bit;
                assert!(!bool::from(tags_equal(&tag, &twice)), "{byte}/{bit} twice");
                let mut everywhere = tag;
                for word in 0..DIGEST_LEN / 8 {
                    everywhere[word * 8 + byte % 8] ^= 1 << bit;
                }
                assert!(
                    !bool::from(tags_equal(&tag, &everywhere)),
                    "{byte}/{bit} x4"
                );
            }
        }
    }
}
