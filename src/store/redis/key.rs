//! Redis key names: [`StoreKey`], and `{prefix}:{name}:{key}` with long keys hashed.

use std::{io::Write as _, net::IpAddr};

use http::HeaderValue;
use sha2::{Digest, Sha256};

/// The longest key text put into a Redis key as it is; a longer one is replaced by
/// `sha256:` and the hex SHA-256 of it, so that a Redis key stays short whatever the client
/// sends.
pub const MAX_KEY_TEXT: usize = 200;

/// A limiter key that names itself in a shared store: the `{key}` of a Redis key
/// `{prefix}:{name}:{key}`.
///
/// Implemented for the keys of hookgate's extractors: [`IpAddr`] (`ClientIp`, written as
/// `203.0.113.7` or `2001:db8::1`), `()` (`GlobalKey`, written as `global`) and
/// [`HeaderValue`] (`HeaderKey`, its bytes), and for [`String`]. Two keys that differ must
/// write different texts.
///
/// ```
/// use hookgate::store::redis::StoreKey;
///
/// #[derive(Clone, Debug, PartialEq, Eq, Hash)]
/// struct Tenant(u64);
///
/// impl StoreKey for Tenant {
///     fn write_key(&self, out: &mut Vec<u8>) {
///         out.extend_from_slice(format!("tenant-{}", self.0).as_bytes());
///     }
/// }
/// ```
pub trait StoreKey {
    /// Appends the key's text (any bytes: Redis keys are binary-safe) to `out`.
    fn write_key(&self, out: &mut Vec<u8>);
}

impl StoreKey for IpAddr {
    fn write_key(&self, out: &mut Vec<u8>) {
        // Writing into a `Vec` cannot fail.
        let _ = write!(out, "{self}");
    }
}

impl StoreKey for () {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"global");
    }
}

impl StoreKey for String {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl StoreKey for HeaderValue {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

/// The Redis key of `text` in `namespace` (`{prefix}:{name}:`): the text as it is, or
/// `sha256:<hex>` when it is longer than [`MAX_KEY_TEXT`].
pub(super) fn redis_key(namespace: &[u8], text: &[u8]) -> Vec<u8> {
    if text.len() > MAX_KEY_TEXT {
        let mut key = Vec::with_capacity(namespace.len() + 7 + 64);
        key.extend_from_slice(namespace);
        key.extend_from_slice(b"sha256:");
        key.extend_from_slice(hex::encode(Sha256::digest(text)).as_bytes());
        return key;
    }
    let mut key = Vec::with_capacity(namespace.len() + text.len());
    key.extend_from_slice(namespace);
    key.extend_from_slice(text);
    key
}

/// The Redis key of a limiter key in `namespace`.
pub(super) fn store_key<K: StoreKey + ?Sized>(namespace: &[u8], key: &K) -> Vec<u8> {
    let mut text = Vec::with_capacity(40);
    key.write_key(&mut text);
    redis_key(namespace, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_write_their_text() {
        let text = |key: &dyn Fn(&mut Vec<u8>)| {
            let mut out = Vec::new();
            key(&mut out);
            String::from_utf8(out).unwrap()
        };
        let v4: IpAddr = [203, 0, 113, 7].into();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(text(&|out| v4.write_key(out)), "203.0.113.7");
        assert_eq!(text(&|out| v6.write_key(out)), "2001:db8::1");
        assert_eq!(text(&|out| ().write_key(out)), "global");
        assert_eq!(text(&|out| "tenant".to_owned().write_key(out)), "tenant");
        assert_eq!(
            text(&|out| HeaderValue::from_static("acme").write_key(out)),
            "acme"
        );
    }

    #[test]
    fn short_keys_are_kept_and_long_ones_hashed() {
        assert_eq!(store_key(b"hg:c:", &v4()), b"hg:c:198.51.100.1");
        let at_most = "k".repeat(MAX_KEY_TEXT);
        assert_eq!(
            redis_key(b"hg:d:", at_most.as_bytes()),
            format!("hg:d:{at_most}").into_bytes()
        );
        let long = "k".repeat(MAX_KEY_TEXT + 1);
        let hashed = String::from_utf8(redis_key(b"hg:d:", long.as_bytes())).unwrap();
        assert_eq!(
            hashed,
            format!(
                "hg:d:sha256:{}",
                hex::encode(Sha256::digest(long.as_bytes()))
            )
        );
        assert_eq!(hashed.len(), "hg:d:sha256:".len() + 64);
    }

    fn v4() -> IpAddr {
        [198, 51, 100, 1].into()
    }
}
