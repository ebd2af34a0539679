//! Deduplication keys: [`EventKey`], and [`DedupeKey`], how one is made from a delivery.

use std::{borrow::Cow, fmt, sync::Arc};

use sha2::{Digest, Sha256};

use crate::Verified;

/// The key one event is deduplicated by: the same for every delivery of the event, different
/// for different events. Made from signed material only (see [`DedupeKey`](super::DedupeKey)).
///
/// [`DeduplicateLayer`](super::DeduplicateLayer) inserts it into the request's extensions (a
/// handler or a sink can name what it stores by it) and into the response's. Its text is the
/// sender's (an id from the body, at most [`MAX_LEN`](Self::MAX_LEN) bytes): escape it before
/// putting it in a path.
///
/// Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EventKey(Arc<str>);

impl EventKey {
    /// The longest key [`DedupeKey`] makes, in bytes: a longer one is replaced by
    /// `sha256-<hex>` of itself (71 bytes), so a store holds a bounded amount per key.
    pub const MAX_LEN: usize = 200;

    /// A key from its text.
    #[must_use]
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        Self(key.into())
    }

    /// The key for `text`: itself when it is at most [`MAX_LEN`](Self::MAX_LEN) bytes,
    /// otherwise `sha256-<hex>` of it.
    pub(crate) fn bounded(text: &str) -> Self {
        if text.len() <= Self::MAX_LEN {
            return Self::new(text);
        }
        Self::new(format!(
            "sha256-{}",
            hex::encode(Sha256::digest(text.as_bytes()))
        ))
    }

    /// The key's text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key function for [`DedupeKey::from_fn`].
type KeyFn = dyn Fn(&Verified, &[u8]) -> Option<String> + Send + Sync;

/// How [`DeduplicateLayer`](super::DeduplicateLayer) makes a delivery's [`EventKey`]: from
/// **signed material only**, the body and what the scheme verified. A key read from an
/// unsigned header could be changed by whoever replays a captured delivery, and every replay
/// would then look like a new event.
///
/// A `DedupeKey` is a chain of sources tried in order; the first that yields a non-empty text
/// makes the key (then bounded to [`EventKey::MAX_LEN`] bytes). A chain that ends in
/// [`signature`](Self::signature) always yields a key; one that does not can find none, and
/// the layer then answers a retryable `500` `dedupe_key_missing` (the delivery is neither
/// handled twice nor dropped: see the [module docs](super)).
///
/// - [`elevenlabs`](Self::elevenlabs) (the default): `data.request_id` (speech-to-text), else
///   `data.conversation_id` and `type` joined as `<conversation_id>.<type>` (a call's
///   `post_call_transcription` and `post_call_audio` share a conversation id and are two
///   events), else the signature.
/// - [`json_pointer`](Self::json_pointer) and [`joined_pointers`](Self::joined_pointers): any
///   field of a JSON body ([RFC 6901] pointers), chained with [`or`](Self::or) and
///   [`or_signature`](Self::or_signature).
/// - [`message_id`](Self::message_id): the id a scheme signs (Standard Webhooks'
///   `webhook-id`), else the signature.
/// - [`signature`](Self::signature): `sig-<hex>` of the signature that matched. It stops
///   byte-identical replays, but not a sender's redelivery: that is signed anew.
/// - [`from_fn`](Self::from_fn): your own.
///
/// ```
/// use hookgate::{dedupe::DedupeKey, Verified};
///
/// let verified = Verified::new(1_700_000_000, 0, [0xab; 32]);
/// let key = |dedupe: &DedupeKey, body: &str| {
///     dedupe.event_key(&verified, body.as_bytes()).map(|key| key.to_string())
/// };
///
/// let elevenlabs = DedupeKey::elevenlabs();
/// let stt = r#"{"type":"speech_to_text_transcription","data":{"request_id":"req_1"}}"#;
/// assert_eq!(key(&elevenlabs, stt).as_deref(), Some("req_1"));
/// let audio = r#"{"type":"post_call_audio","data":{"conversation_id":"conv_7","full_audio":"..."}}"#;
/// assert_eq!(key(&elevenlabs, audio).as_deref(), Some("conv_7.post_call_audio"));
/// let sig = format!("sig-{}", "ab".repeat(32));
/// assert_eq!(key(&elevenlabs, "not json"), Some(sig.clone()));
///
/// // Your own fields, in order of preference.
/// let custom = DedupeKey::json_pointer("/data/event_id")
///     .or(DedupeKey::joined_pointers(["/data/order", "/data/attempt"]))
///     .or_signature();
/// assert_eq!(key(&custom, r#"{"data":{"event_id":"e1"}}"#).as_deref(), Some("e1"));
/// assert_eq!(key(&custom, r#"{"data":{"order":"o9","attempt":2}}"#).as_deref(), Some("o9.2"));
/// assert_eq!(key(&custom, r#"{"data":{"order":"o9"}}"#), Some(sig));
/// // Without a fallback, a body without the fields has no key.
/// assert_eq!(key(&DedupeKey::json_pointer("/id"), "{}"), None);
/// ```
///
/// [RFC 6901]: https://www.rfc-editor.org/rfc/rfc6901
#[derive(Clone)]
#[must_use]
pub struct DedupeKey {
    sources: Arc<[Source]>,
}

#[derive(Clone)]
enum Source {
    /// `data.request_id`, else `data.conversation_id` + `.` + `type`.
    ElevenLabs,
    /// The values at these pointers, joined with `.`; all must be present.
    Pointers(Arc<[String]>),
    /// The scheme's signed message id.
    MessageId,
    /// `sig-<hex>` of the matched signature; never misses.
    Signature,
    /// The user's function.
    Fn(Arc<KeyFn>),
}

impl DedupeKey {
    fn of(source: Source) -> Self {
        Self {
            sources: Arc::from([source]),
        }
    }

    /// ElevenLabs' event identity (the default): `data.request_id` when it is a non-empty
    /// string; else `data.conversation_id` and `type`, both non-empty strings, joined as
    /// `<conversation_id>.<type>`; else, for a body that is not JSON or carries neither, the
    /// signature (`sig-<hex>`, which stops byte-identical replays).
    ///
    /// The body is read once, without building a JSON tree: fields other than these three are
    /// skipped, so a large `full_audio` costs one scan and no allocation.
    pub fn elevenlabs() -> Self {
        Self {
            sources: Arc::from([Source::ElevenLabs, Source::Signature]),
        }
    }

    /// `sig-<hex>` of the signature that matched ([`Verified::signature`]). Identical
    /// deliveries carry identical signatures, so it stops replays of a captured delivery; a
    /// sender's redelivery is signed again (a new timestamp) and gets a new key.
    pub fn signature() -> Self {
        Self::of(Source::Signature)
    }

    /// The message id the scheme signs ([`Verified::message_id`], e.g. Standard Webhooks'
    /// `webhook-id`), else the signature (a scheme that signs no id).
    pub fn message_id() -> Self {
        Self {
            sources: Arc::from([Source::MessageId, Source::Signature]),
        }
    }

    /// The value at a JSON pointer ([RFC 6901], e.g. `"/data/id"`) of the body: a non-empty
    /// string, or a number (its JSON text). Anything else, or a body that is not JSON, misses.
    ///
    /// # Panics
    ///
    /// When `pointer` does not start with `/` (a pointer that could never match).
    ///
    /// [RFC 6901]: https://www.rfc-editor.org/rfc/rfc6901
    pub fn json_pointer(pointer: &str) -> Self {
        Self::joined_pointers([pointer])
    }

    /// The values at several JSON pointers, as for [`json_pointer`](Self::json_pointer),
    /// joined with `.`: when one misses, the whole source misses.
    ///
    /// # Panics
    ///
    /// When no pointer is given, or one does not start with `/`.
    pub fn joined_pointers<I, P>(pointers: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let pointers: Arc<[String]> = pointers
            .into_iter()
            .map(|pointer| {
                let pointer = pointer.as_ref();
                assert!(
                    pointer.starts_with('/'),
                    "a dedupe key's JSON pointer starts with `/`: {pointer:?}"
                );
                pointer.to_owned()
            })
            .collect();
        assert!(!pointers.is_empty(), "a dedupe key needs a JSON pointer");
        Self::of(Source::Pointers(pointers))
    }

    /// Your own key: `key` gets what the scheme verified and the whole body, and returns the
    /// key's text (`None` or an empty text: no key). Use only what is signed.
    ///
    /// ```
    /// use hookgate::{dedupe::DedupeKey, Verified};
    ///
    /// // The first line of a signed text body.
    /// let key = DedupeKey::from_fn(|_verified: &Verified, body: &[u8]| {
    ///     let text = std::str::from_utf8(body).ok()?;
    ///     Some(text.lines().next()?.to_owned())
    /// })
    /// .or_signature();
    /// let verified = Verified::new(1, 0, [1; 32]);
    /// assert_eq!(key.event_key(&verified, b"evt_1\n...").unwrap().as_str(), "evt_1");
    /// ```
    pub fn from_fn<F>(key: F) -> Self
    where
        F: Fn(&Verified, &[u8]) -> Option<String> + Send + Sync + 'static,
    {
        Self::of(Source::Fn(Arc::new(key)))
    }

    /// This key, or else `other` when this one finds nothing.
    pub fn or(self, other: DedupeKey) -> Self {
        let sources: Arc<[Source]> = self
            .sources
            .iter()
            .chain(other.sources.iter())
            .cloned()
            .collect();
        Self { sources }
    }

    /// This key, or else the signature ([`signature`](Self::signature)): a key is then always
    /// found.
    pub fn or_signature(self) -> Self {
        self.or(Self::signature())
    }

    /// Whether making a key may read the body (the layer then gathers a body that arrived in
    /// several frames into one).
    pub(crate) fn reads_body(&self) -> bool {
        self.sources.iter().any(|source| {
            matches!(
                source,
                Source::ElevenLabs | Source::Pointers(_) | Source::Fn(_)
            )
        })
    }

    /// The key of a delivery whose scheme verified `verified` and whose body is `body`, or
    /// `None` when no source of the chain finds one.
    #[must_use]
    pub fn event_key(&self, verified: &Verified, body: &[u8]) -> Option<EventKey> {
        // Parsed once for every pointer source; `None` inside: not JSON.
        let mut document: Option<Option<serde_json::Value>> = None;
        for source in self.sources.iter() {
            let text: Option<Cow<'_, str>> = match source {
                Source::ElevenLabs => crate::elevenlabs::event_key_text(body),
                Source::Pointers(pointers) => document
                    .get_or_insert_with(|| serde_json::from_slice(body).ok())
                    .as_ref()
                    .and_then(|document| joined(document, pointers))
                    .map(Cow::Owned),
                Source::MessageId => verified
                    .message_id()
                    .and_then(|id| id.to_str().ok())
                    .map(Cow::Borrowed),
                Source::Signature => return Some(signature_key(verified)),
                Source::Fn(key) => key(verified, body).map(Cow::Owned),
            };
            if let Some(text) = text.filter(|text| !text.is_empty()) {
                return Some(EventKey::bounded(&text));
            }
        }
        None
    }
}

impl Default for DedupeKey {
    /// [`DedupeKey::elevenlabs`].
    fn default() -> Self {
        Self::elevenlabs()
    }
}

impl fmt::Debug for DedupeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for source in self.sources.iter() {
            match source {
                Source::ElevenLabs => list.entry(&format_args!("elevenlabs")),
                Source::Pointers(pointers) => list.entry(&pointers),
                Source::MessageId => list.entry(&format_args!("message_id")),
                Source::Signature => list.entry(&format_args!("signature")),
                Source::Fn(_) => list.entry(&format_args!("from_fn")),
            };
        }
        list.finish()
    }
}

/// `sig-<hex>` of the matched signature, written in place (at most 132 bytes: never
/// bounded).
fn signature_key(verified: &Verified) -> EventKey {
    const PREFIX: &[u8] = b"sig-";
    let digest = verified.signature().as_bytes();
    let mut text = [0_u8; PREFIX.len() + 2 * crate::scheme::SignatureDigest::MAX_LEN];
    let len = PREFIX.len() + 2 * digest.len();
    text[..PREFIX.len()].copy_from_slice(PREFIX);
    // The buffer holds twice the longest digest: encoding cannot fail.
    let _ = hex::encode_to_slice(digest, &mut text[PREFIX.len()..len]);
    EventKey::new(std::str::from_utf8(&text[..len]).unwrap_or_default())
}

/// The values at `pointers`, joined with `.`; `None` when one misses.
fn joined(document: &serde_json::Value, pointers: &[String]) -> Option<String> {
    let mut key = String::new();
    for (i, pointer) in pointers.iter().enumerate() {
        if i > 0 {
            key.push('.');
        }
        match document.pointer(pointer)? {
            serde_json::Value::String(text) if !text.is_empty() => key.push_str(text),
            serde_json::Value::Number(number) => key.push_str(&number.to_string()),
            _ => return None,
        }
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified() -> Verified {
        Verified::new(1_700_000_000, 0, [0x5a; 32])
    }

    fn sig() -> String {
        format!("sig-{}", "5a".repeat(32))
    }

    fn key(dedupe: &DedupeKey, body: &str) -> Option<String> {
        dedupe
            .event_key(&verified(), body.as_bytes())
            .map(|key| key.as_str().to_owned())
    }

    #[test]
    fn elevenlabs_prefers_the_request_id() {
        let body = r#"{"type":"speech_to_text_transcription","data":{"conversation_id":"c","request_id":"r1","words":[1,{"a":null}]},"extra":true}"#;
        assert_eq!(key(&DedupeKey::elevenlabs(), body).as_deref(), Some("r1"));
    }

    #[test]
    fn elevenlabs_joins_the_conversation_id_and_the_type() {
        let key_of = |kind: &str| {
            key(
                &DedupeKey::elevenlabs(),
                &format!(
                    r#"{{"data":{{"conversation_id":"conv_1","full_audio":"AAAA"}},"type":"{kind}"}}"#
                ),
            )
        };
        let transcript = key_of("post_call_transcription").unwrap();
        let audio = key_of("post_call_audio").unwrap();
        assert_eq!(transcript, "conv_1.post_call_transcription");
        assert_eq!(audio, "conv_1.post_call_audio");
        assert_ne!(transcript, audio);
    }

    #[test]
    fn elevenlabs_falls_back_to_the_signature() {
        let preset = DedupeKey::elevenlabs();
        for body in [
            "not json",
            "",
            "[]",
            r#"{"type":"x"}"#,
            r#"{"type":"x","data":null}"#,
            r#"{"type":"x","data":{}}"#,
            r#"{"type":"x","data":{"request_id":""}}"#,
            r#"{"type":"x","data":{"request_id":42}}"#,
            r#"{"data":{"conversation_id":"c"}}"#,
            r#"{"type":"","data":{"conversation_id":"c"}}"#,
            r#"{"type":7,"data":{"conversation_id":"c"}}"#,
            r#"{"type":"x","data":{"conversation_id":""}}"#,
            r#"{"type":"x","data":{"conversation_id":"c"}} trailing"#,
        ] {
            assert_eq!(key(&preset, body), Some(sig()), "{body}");
        }
        // A request id decides the key as soon as it is read: what follows is not looked at.
        let stopped = r#"{"type":"x","data":{"request_id":"r"}} trailing"#;
        assert_eq!(key(&preset, stopped).as_deref(), Some("r"));
    }

    #[test]
    fn elevenlabs_skips_mistyped_fields_without_failing() {
        let body = r#"{"type":"t","data":{"request_id":{"nested":[1,2]},"conversation_id":"c"}}"#;
        assert_eq!(key(&DedupeKey::elevenlabs(), body).as_deref(), Some("c.t"));
        let body = r#"{"type":"t","data":{"request_id":[true,null,1.5,-3],"conversation_id":"c"}}"#;
        assert_eq!(key(&DedupeKey::elevenlabs(), body).as_deref(), Some("c.t"));
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let body = r#"{"data":{"request_id":"r\u0031\"x"}}"#;
        assert_eq!(
            key(&DedupeKey::elevenlabs(), body).as_deref(),
            Some("r1\"x")
        );
    }

    #[test]
    fn pointers_chain_in_order() {
        let chain = DedupeKey::json_pointer("/a")
            .or(DedupeKey::joined_pointers(["/b", "/c/0"]))
            .or(DedupeKey::json_pointer("/d"));
        assert_eq!(key(&chain, r#"{"a":"x","d":"y"}"#).as_deref(), Some("x"));
        assert_eq!(
            key(&chain, r#"{"b":"p","c":[3],"d":"y"}"#).as_deref(),
            Some("p.3")
        );
        assert_eq!(key(&chain, r#"{"b":"p","d":"y"}"#).as_deref(), Some("y"));
        assert_eq!(
            key(&chain, r#"{"a":"","b":"p","c":[""],"d":1.5}"#).as_deref(),
            Some("1.5")
        );
        assert_eq!(key(&chain, r#"{"a":true,"d":null}"#), None);
        assert_eq!(key(&chain, "not json"), None);
        let chain = chain.or_signature();
        assert_eq!(key(&chain, "not json"), Some(sig()));
        assert_eq!(key(&chain, r#"{"a":"x"}"#).as_deref(), Some("x"));
        assert_eq!(key(&chain, r#"{"d":"y"}"#).as_deref(), Some("y"));
    }

    #[test]
    fn signature_keys_are_prefixed_hex() {
        assert_eq!(key(&DedupeKey::signature(), "anything"), Some(sig()));
        for digest in [&[0x01_u8, 0xef][..], &[0xff; 20], &[0x0a; 64]] {
            let verified =
                Verified::new(1, 0, crate::scheme::SignatureDigest::new(digest).unwrap());
            let key = DedupeKey::signature().event_key(&verified, b"").unwrap();
            assert_eq!(key.as_str(), format!("sig-{}", hex::encode(digest)));
        }
        assert!(!DedupeKey::signature().reads_body());
        assert!(DedupeKey::elevenlabs().reads_body());
        assert!(DedupeKey::json_pointer("/a").reads_body());
        assert!(DedupeKey::from_fn(|_, _| None).reads_body());
        assert!(!DedupeKey::message_id().reads_body());
    }

    #[test]
    fn message_ids_are_taken_as_they_are_else_the_signature() {
        let with_id = verified().with_message_id(http::HeaderValue::from_static("msg_2abc"));
        let key = DedupeKey::message_id().event_key(&with_id, b"{}").unwrap();
        assert_eq!(key.as_str(), "msg_2abc");
        let empty = verified().with_message_id(http::HeaderValue::from_static(""));
        let key = DedupeKey::message_id().event_key(&empty, b"{}").unwrap();
        assert_eq!(key.as_str(), sig());
        let opaque = verified().with_message_id(http::HeaderValue::from_bytes(b"\xff").unwrap());
        let key = DedupeKey::message_id().event_key(&opaque, b"{}").unwrap();
        assert_eq!(key.as_str(), sig());
        let key = DedupeKey::message_id()
            .event_key(&verified(), b"{}")
            .unwrap();
        assert_eq!(key.as_str(), sig());
    }

    #[test]
    fn from_fn_gets_the_verified_and_the_body() {
        let dedupe = DedupeKey::from_fn(|verified, body| {
            Some(format!("{}:{}", verified.unix_timestamp(), body.len()))
        });
        assert_eq!(key(&dedupe, "abc").as_deref(), Some("1700000000:3"));
        let empty = DedupeKey::from_fn(|_, _| Some(String::new()));
        assert_eq!(key(&empty, "abc"), None);
        assert_eq!(key(&empty.or_signature(), "abc"), Some(sig()));
        let named = DedupeKey::from_fn(|_, body| Some(String::from_utf8_lossy(body).into()));
        let body = r#"{"data":{"request_id":"r"}}"#;
        assert_eq!(key(&named.or_signature(), body).as_deref(), Some(body));
    }

    #[test]
    fn long_keys_are_hashed_and_short_ones_kept() {
        let at_limit = "k".repeat(EventKey::MAX_LEN);
        let body = format!(r#"{{"data":{{"request_id":"{at_limit}"}}}}"#);
        assert_eq!(key(&DedupeKey::elevenlabs(), &body), Some(at_limit.clone()));
        let over = format!("{at_limit}k");
        let body = format!(r#"{{"data":{{"request_id":"{over}"}}}}"#);
        let hashed = key(&DedupeKey::elevenlabs(), &body).unwrap();
        assert_eq!(
            hashed,
            format!("sha256-{}", hex::encode(Sha256::digest(over.as_bytes())))
        );
        assert_eq!(hashed.len(), 71);
    }

    #[test]
    fn debug_names_the_sources() {
        let dedupe = DedupeKey::json_pointer("/a").or(DedupeKey::message_id());
        assert_eq!(format!("{dedupe:?}"), r#"[["/a"], message_id, signature]"#);
        assert_eq!(
            format!("{:?}", DedupeKey::default()),
            "[elevenlabs, signature]"
        );
        assert_eq!(
            format!("{:?}", DedupeKey::from_fn(|_, _| None)),
            "[from_fn]"
        );
    }

    #[test]
    #[should_panic(expected = "starts with `/`")]
    fn a_pointer_without_a_slash_is_refused() {
        let _ = DedupeKey::json_pointer("data/id");
    }

    #[test]
    #[should_panic(expected = "needs a JSON pointer")]
    fn no_pointer_is_refused() {
        let _ = DedupeKey::joined_pointers(Vec::<String>::new());
    }

    #[test]
    fn event_keys_show_their_text() {
        let key = EventKey::new("k1");
        assert_eq!(key.to_string(), "k1");
        assert_eq!(format!("{key:?}"), "\"k1\"");
        assert_eq!(key, EventKey::bounded("k1"));
    }
}
