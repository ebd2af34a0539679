//! Which bucket a request counts against: the [`KeyExtractor`] trait and its implementations,
//! for [`ClientIp`] among others.

use std::{fmt, hash::Hash, net::IpAddr};

use http::{header::HeaderName, HeaderValue, Request};

use crate::client_ip::{ClientIp, Unidentified};

/// Finds the key a request is counted under: the client address ([`ClientIp`]), a header value,
/// one global bucket, or anything you write.
///
/// An extractor that cannot find a key returns [`Unidentified`]; the layer then answers as its
/// [`OnMissingKey`](super::OnMissingKey) setting says. It never silently puts such requests in
/// a shared bucket.
///
/// ```
/// use hookgate::client_ip::Unidentified;
/// use hookgate::rate_limit::KeyExtractor;
/// use http::Request;
///
/// /// Counts requests per tenant, from the path `/webhooks/{tenant}`.
/// #[derive(Clone, Debug)]
/// struct Tenant;
///
/// impl KeyExtractor for Tenant {
///     type Key = String;
///
///     fn extract<B>(&self, request: &Request<B>) -> Result<String, Unidentified> {
///         request
///             .uri()
///             .path()
///             .strip_prefix("/webhooks/")
///             .filter(|tenant| !tenant.is_empty() && tenant.len() <= 64)
///             .map(str::to_owned)
///             .ok_or(Unidentified::new("no tenant in the path: POST to /webhooks/{tenant}"))
///     }
/// }
///
/// let request = Request::post("/webhooks/acme").body(()).unwrap();
/// assert_eq!(Tenant.extract(&request).unwrap(), "acme");
/// let request = Request::post("/other").body(()).unwrap();
/// assert!(Tenant.extract(&request).unwrap_err().reason().starts_with("no tenant in the path"));
/// ```
pub trait KeyExtractor {
    /// The key: keep it small, every tracked key is held in memory.
    type Key: Clone + Hash + Eq + fmt::Debug + Send + Sync + 'static;

    /// The key for this request, or why there is none.
    ///
    /// # Errors
    ///
    /// [`Unidentified`] when the request carries nothing to key it by.
    fn extract<B>(&self, request: &Request<B>) -> Result<Self::Key, Unidentified>;

    /// Whether `key` belongs to a known sender that the limiters let through without counting
    /// it or storing it ([`ClientIp::known_senders`]). None by default.
    fn is_known_sender(&self, key: &Self::Key) -> bool {
        let _ = key;
        false
    }
}

/// One bucket for every request: a global limit.
///
/// ```
/// use hookgate::rate_limit::{GlobalKey, KeyExtractor};
///
/// let request = http::Request::new(());
/// assert_eq!(GlobalKey.extract(&request), Ok(()));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalKey;

impl KeyExtractor for GlobalKey {
    type Key = ();

    fn extract<B>(&self, _request: &Request<B>) -> Result<(), Unidentified> {
        Ok(())
    }
}

/// Keys requests by the value of one header, e.g. an API key or a tenant id set by a trusted
/// gateway.
///
/// A request without the header, or with a value longer than
/// [`max_len`](HeaderKey::max_len) bytes (default 128), has no key. Values are held in memory
/// as the key, so keep them short; they are never logged.
///
/// **Any client can send any header value**: key by a header only when something you trust has
/// set or checked it, or accept that a client can pick its own bucket.
///
/// ```
/// use hookgate::rate_limit::{HeaderKey, KeyExtractor};
/// use http::{HeaderName, Request};
///
/// let key = HeaderKey::new(HeaderName::from_static("x-tenant"));
/// let request = Request::builder().header("x-tenant", "acme").body(()).unwrap();
/// assert_eq!(key.extract(&request).unwrap(), "acme");
/// assert!(key.extract(&Request::new(())).is_err());
/// ```
#[derive(Clone, Debug)]
pub struct HeaderKey {
    name: HeaderName,
    max_len: usize,
}

impl HeaderKey {
    /// Keys by the value of the header `name`.
    #[must_use]
    pub fn new(name: HeaderName) -> Self {
        Self { name, max_len: 128 }
    }

    /// The longest value accepted as a key, in bytes; longer values have no key.
    #[must_use]
    pub fn max_len(mut self, bytes: usize) -> Self {
        self.max_len = bytes;
        self
    }
}

impl KeyExtractor for HeaderKey {
    type Key = HeaderValue;

    fn extract<B>(&self, request: &Request<B>) -> Result<HeaderValue, Unidentified> {
        match request.headers().get(&self.name) {
            // A copy: hyper's header values share its read buffer, and a key kept in a
            // limiter's store would keep that whole buffer alive.
            Some(value) if value.len() <= self.max_len => HeaderValue::from_bytes(value.as_bytes())
                .map_err(|_| Unidentified::new("key header value unreadable")),
            Some(_) => Err(Unidentified::new("key header value too long")),
            None => Err(Unidentified::new("key header missing")),
        }
    }
}

impl KeyExtractor for ClientIp {
    type Key = IpAddr;

    #[inline]
    fn extract<B>(&self, request: &Request<B>) -> Result<IpAddr, Unidentified> {
        self.identify(request)
    }

    #[inline]
    fn is_known_sender(&self, key: &IpAddr) -> bool {
        ClientIp::is_known_sender(self, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_keys_are_copies_not_views_of_the_request() {
        let request = Request::builder()
            .header("x-tenant", "acme")
            .body(())
            .unwrap();
        let key = HeaderKey::new(HeaderName::from_static("x-tenant"))
            .extract(&request)
            .unwrap();
        assert_eq!(key, "acme");
        assert_ne!(
            key.as_bytes().as_ptr(),
            request.headers()["x-tenant"].as_bytes().as_ptr()
        );
    }

    #[test]
    fn the_client_ip_key_is_the_client_and_known_senders_are_known() {
        let key = ClientIp::peer().known_senders(["34.67.146.145"]).unwrap();
        let mut request = Request::new(());
        assert_eq!(key.extract(&request), key.identify(&request));
        assert!(key.extract(&request).is_err());
        request
            .extensions_mut()
            .insert(std::net::SocketAddr::from(([34, 67, 146, 145], 443)));
        let client = key.extract(&request).unwrap();
        assert_eq!(client, IpAddr::from([34, 67, 146, 145]));
        assert!(KeyExtractor::is_known_sender(&key, &client));
        assert!(!KeyExtractor::is_known_sender(
            &key,
            &IpAddr::from([34, 67, 146, 146])
        ));
        assert!(!KeyExtractor::is_known_sender(&GlobalKey, &()));
    }
}
