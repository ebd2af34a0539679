//! HMAC-SHA256 machinery shared by the schemes: pre-keyed secrets, the per-request MAC set and
//! the constant-time match against the signatures a request carries.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use crate::ConfigError;

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag in bytes.
pub(crate) const DIGEST_LEN: usize = 32;

/// Most secrets one scheme accepts: each one costs a full MAC pass over every body.
pub(crate) const MAX_SECRETS: usize = 8;

/// Most signatures one request may carry; more is refused as malformed, bounding the work a
/// forged header can cause.
pub(crate) const MAX_SIGNATURES: usize = 8;

/// Every configured secret as a pre-keyed HMAC state, in configuration order.
///
/// Keying HMAC costs two SHA-256 blocks; doing it once here, and cloning the keyed state per
/// request, takes that off every request. The raw secrets are not kept.
#[derive(Clone)]
pub(crate) struct Keys {
    keyed: Vec<HmacSha256>,
}

impl Keys {
    pub(crate) fn new(secret: &[u8]) -> Result<Self, ConfigError> {
        let mut keys = Self { keyed: Vec::new() };
        keys.push(secret)?;
        Ok(keys)
    }

    pub(crate) fn push(&mut self, secret: &[u8]) -> Result<(), ConfigError> {
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
        self.keyed.push(mac);
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.keyed.len()
    }

    /// A MAC per secret, each already fed `prefix`.
    pub(crate) fn begin(&self, prefix: &[&[u8]]) -> MacSet {
        let seed = |keyed: &HmacSha256| {
            let mut mac = keyed.clone();
            for part in prefix {
                mac.update(part);
            }
            mac
        };
        match self.keyed.as_slice() {
            [only] => MacSet::One(seed(only)),
            many => MacSet::Many(many.iter().map(seed).collect()),
        }
    }

    /// The tag of `parts` under the first (current) secret.
    pub(crate) fn sign(&self, parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
        let mut mac = self.keyed[0].clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

/// The running MACs of one request, one per configured secret.
pub(crate) enum MacSet {
    // One secret is the common case: no allocation per request.
    One(HmacSha256),
    Many(Vec<HmacSha256>),
}

impl MacSet {
    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Self::One(mac) => mac.update(data),
            Self::Many(macs) => macs.iter_mut().for_each(|mac| mac.update(data)),
        }
    }

    /// Finishes every MAC and compares each, in constant time, with every candidate signature.
    /// Returns the index of the first secret that matched and the matching signature.
    pub(crate) fn finish(self, candidates: &Signatures) -> Option<(usize, [u8; DIGEST_LEN])> {
        let mut found = None;
        let mut check = |index: usize, mac: HmacSha256| {
            let tag: [u8; DIGEST_LEN] = mac.finalize().into_bytes().into();
            // Every candidate is compared in full, whatever the outcome of the others.
            let matched = candidates
                .iter()
                .fold(Choice::from(0), |acc, candidate| acc | tag.ct_eq(candidate));
            if found.is_none() && bool::from(matched) {
                found = Some((index, tag));
            }
        };
        match self {
            Self::One(mac) => check(0, mac),
            Self::Many(macs) => macs
                .into_iter()
                .enumerate()
                .for_each(|(i, mac)| check(i, mac)),
        }
        found
    }
}

/// The decoded signatures a request carries: one, the common case, inline; more (during a key
/// rotation) in one allocation. Kept small because it lives in every request's future, which
/// each layer around the verifier moves.
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

    /// Adds one; `false` when [`MAX_SIGNATURES`] are already held.
    pub(crate) fn push(&mut self, signature: [u8; DIGEST_LEN]) -> bool {
        if self.first.is_none() {
            self.first = Some(signature);
            return true;
        }
        if self.len() == MAX_SIGNATURES {
            return false;
        }
        self.more.push(signature);
        true
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_secret_is_refused() {
        assert!(Keys::new(b"").is_err());
        let mut keys = Keys::new(b"a").unwrap();
        assert!(keys.push(b"").is_err());
    }

    #[test]
    fn secret_count_is_capped() {
        let mut keys = Keys::new(b"0").unwrap();
        for i in 1..MAX_SECRETS {
            keys.push(i.to_string().as_bytes()).unwrap();
        }
        assert!(keys.push(b"one too many").is_err());
        assert_eq!(keys.len(), MAX_SECRETS);
    }

    #[test]
    fn incremental_mac_equals_one_shot_sign() {
        let keys = Keys::new(b"secret").unwrap();
        let mut set = keys.begin(&[b"12", b"."]);
        set.update(b"bo");
        set.update(b"dy");
        let expected = keys.sign(&[b"12.body"]);
        let mut sigs = Signatures::new();
        sigs.push(expected);
        assert_eq!(set.finish(&sigs), Some((0, expected)));
    }

    #[test]
    fn reports_which_secret_matched() {
        let mut keys = Keys::new(b"old").unwrap();
        keys.push(b"new").unwrap();
        let by_new = Keys::new(b"new").unwrap().sign(&[b"x"]);
        let mut sigs = Signatures::new();
        sigs.push([7; DIGEST_LEN]);
        sigs.push(by_new);
        let mut set = keys.begin(&[]);
        set.update(b"x");
        assert_eq!(set.finish(&sigs), Some((1, by_new)));
    }

    #[test]
    fn no_candidate_means_no_match() {
        let keys = Keys::new(b"secret").unwrap();
        assert_eq!(keys.begin(&[]).finish(&Signatures::new()), None);
    }

    fn candidates(list: &[[u8; DIGEST_LEN]]) -> Signatures {
        let mut sigs = Signatures::new();
        for sig in list {
            assert!(sigs.push(*sig));
        }
        sigs
    }

    fn keys_of(secrets: &[&[u8]]) -> Keys {
        let mut keys = Keys::new(secrets[0]).unwrap();
        for secret in &secrets[1..] {
            keys.push(secret).unwrap();
        }
        keys
    }

    #[test]
    fn the_same_valid_signature_twice_matches() {
        let keys = Keys::new(b"secret").unwrap();
        let tag = keys.sign(&[b"body"]);
        let mut set = keys.begin(&[]);
        set.update(b"body");
        assert_eq!(set.finish(&candidates(&[tag, tag])), Some((0, tag)));
        // And under several secrets.
        let keys = keys_of(&[b"a", b"b"]);
        let tag = Keys::new(b"b").unwrap().sign(&[b"body"]);
        let mut set = keys.begin(&[]);
        set.update(b"body");
        assert_eq!(set.finish(&candidates(&[tag, tag])), Some((1, tag)));
    }

    #[test]
    fn a_valid_signature_matches_beside_invalid_ones_in_any_order() {
        let keys = Keys::new(b"secret").unwrap();
        let tag = keys.sign(&[b"body"]);
        let wrong = [0xab; DIGEST_LEN];
        for list in [
            vec![tag, wrong],
            vec![wrong, tag],
            vec![wrong, wrong, wrong, tag, wrong, wrong, wrong, wrong],
        ] {
            let mut set = keys.begin(&[]);
            set.update(b"body");
            assert_eq!(set.finish(&candidates(&list)), Some((0, tag)));
        }
        let mut set = keys.begin(&[]);
        set.update(b"body");
        assert_eq!(set.finish(&candidates(&[wrong, wrong])), None);
    }

    #[test]
    fn the_first_configured_secret_that_matches_wins() {
        let keys = keys_of(&[b"a", b"b", b"c"]);
        let by = |secret: &[u8]| Keys::new(secret).unwrap().sign(&[b"t.", b"body"]);
        let (a, b, c) = (by(b"a"), by(b"b"), by(b"c"));
        for list in [[b, c], [c, b]] {
            let mut set = keys.begin(&[b"t."]);
            set.update(b"body");
            assert_eq!(set.finish(&candidates(&list)), Some((1, b)), "{list:?}");
        }
        let mut set = keys.begin(&[b"t."]);
        set.update(b"body");
        assert_eq!(set.finish(&candidates(&[c, b, a])), Some((0, a)));
        // The same secret configured twice: the first index.
        let twice = keys_of(&[b"a", b"a"]);
        let mut set = twice.begin(&[b"t."]);
        set.update(b"body");
        assert_eq!(set.finish(&candidates(&[a])), Some((0, a)));
    }

    #[test]
    fn every_mac_of_a_set_gets_the_prefix_and_every_update() {
        let keys = keys_of(&[b"a", b"b", b"c"]);
        let want = Keys::new(b"c").unwrap().sign(&[b"1600000000.hello world"]);
        let mut set = keys.begin(&[b"1600000000", b"."]);
        set.update(b"hello ");
        set.update(b"");
        set.update(b"world");
        assert_eq!(set.finish(&candidates(&[want])), Some((2, want)));
        // Without the prefix it is another message.
        let mut set = keys.begin(&[]);
        set.update(b"hello world");
        assert_eq!(set.finish(&candidates(&[want])), None);
    }

    #[test]
    fn signing_uses_the_first_secret() {
        let keys = keys_of(&[b"current", b"previous"]);
        assert_eq!(
            keys.sign(&[b"x"]),
            Keys::new(b"current").unwrap().sign(&[b"x"])
        );
        assert_ne!(
            keys.sign(&[b"x"]),
            Keys::new(b"previous").unwrap().sign(&[b"x"])
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
            assert!(sigs.push([i; DIGEST_LEN]));
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
            assert!(sigs.push([0; DIGEST_LEN]));
        }
        assert!(!sigs.push([0; DIGEST_LEN]));
        assert_eq!(sigs.len(), MAX_SIGNATURES);
    }
}
