//! Which bucket a request counts against: the [`KeyExtractor`] trait and its implementations.

use std::{
    fmt,
    hash::Hash,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::atomic::{AtomicU64, Ordering},
};

use http::{header::HeaderName, Extensions, HeaderMap, HeaderValue, Request};
use ipnet::IpNet;

use crate::ConfigError;

/// Finds the key a request is counted under: the client address, a header value, one global
/// bucket, or anything you write.
///
/// An extractor that cannot find a key returns [`MissingKey`]; the layer then answers as its
/// [`OnMissingKey`](super::OnMissingKey) setting says. It never silently puts such requests in
/// a shared bucket.
///
/// ```
/// use hookgate::rate_limit::{KeyExtractor, MissingKey};
/// use http::Request;
///
/// /// Counts requests per tenant, from the path `/webhooks/{tenant}`.
/// #[derive(Clone, Debug)]
/// struct Tenant;
///
/// impl KeyExtractor for Tenant {
///     type Key = String;
///
///     fn extract<B>(&self, request: &Request<B>) -> Result<String, MissingKey> {
///         request
///             .uri()
///             .path()
///             .strip_prefix("/webhooks/")
///             .filter(|tenant| !tenant.is_empty() && tenant.len() <= 64)
///             .map(str::to_owned)
///             .ok_or(MissingKey::new("no tenant in the path"))
///     }
/// }
///
/// let request = Request::post("/webhooks/acme").body(()).unwrap();
/// assert_eq!(Tenant.extract(&request).unwrap(), "acme");
/// let request = Request::post("/other").body(()).unwrap();
/// assert_eq!(Tenant.extract(&request).unwrap_err().reason(), "no tenant in the path");
/// ```
pub trait KeyExtractor {
    /// The key: keep it small, every tracked key is held in memory.
    type Key: Clone + Hash + Eq + fmt::Debug + Send + Sync + 'static;

    /// The key for this request, or why there is none.
    ///
    /// # Errors
    ///
    /// [`MissingKey`] when the request carries nothing to key it by.
    fn extract<B>(&self, request: &Request<B>) -> Result<Self::Key, MissingKey>;

    /// Whether `key` belongs to a known sender that the limiters let through without counting
    /// it or storing it ([`ClientIp::known_senders`]). None by default.
    fn is_known_sender(&self, key: &Self::Key) -> bool {
        let _ = key;
        false
    }
}

/// Why a [`KeyExtractor`] found no key for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingKey {
    reason: &'static str,
}

impl MissingKey {
    /// A missing key with a short reason (logged, never sent to the client).
    #[must_use]
    pub const fn new(reason: &'static str) -> Self {
        Self { reason }
    }

    /// The reason the key is missing.
    #[must_use]
    pub const fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for MissingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
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

    fn extract<B>(&self, _request: &Request<B>) -> Result<(), MissingKey> {
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

    fn extract<B>(&self, request: &Request<B>) -> Result<HeaderValue, MissingKey> {
        match request.headers().get(&self.name) {
            // A copy: hyper's header values share its read buffer, and a key kept in a
            // limiter's store would keep that whole buffer alive.
            Some(value) if value.len() <= self.max_len => HeaderValue::from_bytes(value.as_bytes())
                .map_err(|_| MissingKey::new("key header value unreadable")),
            Some(_) => Err(MissingKey::new("key header value too long")),
            None => Err(MissingKey::new("key header missing")),
        }
    }
}

/// Which forwarding header the trusted proxies in front of you append the client address to.
///
/// Only one is read: if your proxy writes `X-Forwarded-For`, a client could fill in `Forwarded`
/// with anything it likes, and the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (addresses, optionally with a port; IPv6 may be
    /// bracketed).
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=192.0.2.60;proto=https, for="[2001:db8::1]:4711"`.
    Forwarded,
}

/// Finds the socket peer address in a request's extensions.
pub type PeerAddrFn = fn(&Extensions) -> Option<SocketAddr>;

/// Keys requests by the client's IP address.
///
/// # Which address
///
/// The client is the **socket peer**, read from a [`SocketAddr`] request extension (and, with the
/// `axum` feature, from axum's `ConnectInfo<SocketAddr>`, which
/// `into_make_service_with_connect_info::<SocketAddr>()` sets). With hyper, insert the peer
/// yourself when you accept the connection (`request.extensions_mut().insert(peer)`); with tonic
/// or anything else, tell the extractor where to look with
/// [`peer_addr_with`](ClientIp::peer_addr_with).
///
/// Only when the peer is one of your **trusted proxies** (a CIDR list) is the forwarding header
/// read, walked **right to left** past trusted hops: the first address that is not a trusted
/// proxy is the client. The leftmost entry is whatever the client wrote and is never trusted
/// for that reason alone. A request from an untrusted peer is keyed by the peer, whatever
/// headers it sends.
///
/// # When the walk finds no untrusted address
///
/// The client is then the **nearest address the walk established**: the trusted peer itself
/// when it sent no forwarding header (a proxy's health check, a host in the trusted range
/// talking directly, a proxy configured without the header), the last trusted hop before an
/// entry the walk cannot parse (including `unknown` and obfuscated RFC 7239 identifiers), or
/// the leftmost entry when every hop is trusted. What an operator expects: such requests are
/// served and limited as that hop, not refused. Since everything such a hop sends then shares
/// one bucket, the first occurrence (and then at most one a minute) is logged at `warn`.
/// Only a request with no peer address at all is unidentified ([`MissingKey`]).
///
/// # IPv6
///
/// One host owns a whole IPv6 /64 and can change its address within it at will, so IPv6 clients
/// are keyed by their /64 prefix ([`ipv6_prefix`](ClientIp::ipv6_prefix) changes it). IPv4-mapped
/// IPv6 addresses (`::ffff:192.0.2.1`, seen on dual-stack sockets) count as their IPv4 address.
///
/// ```
/// use std::net::{IpAddr, SocketAddr};
/// use hookgate::rate_limit::{ClientIp, ForwardedHeader, KeyExtractor};
/// use http::Request;
///
/// let key = ClientIp::behind_proxies(["10.0.0.0/8"], ForwardedHeader::XForwardedFor).unwrap();
///
/// // From the proxy at 10.0.0.2: the client is the rightmost untrusted entry.
/// let mut request = Request::builder()
///     .header("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.7")
///     .body(())
///     .unwrap();
/// request.extensions_mut().insert(SocketAddr::from(([10, 0, 0, 2], 41000)));
/// assert_eq!(key.extract(&request).unwrap(), IpAddr::from([203, 0, 113, 9]));
///
/// // A direct, untrusted peer: its headers are ignored.
/// request.extensions_mut().insert(SocketAddr::from(([198, 51, 100, 4], 41000)));
/// assert_eq!(key.extract(&request).unwrap(), IpAddr::from([198, 51, 100, 4]));
/// ```
#[derive(Clone)]
pub struct ClientIp {
    trusted: Vec<IpNet>,
    known_senders: Vec<IpNet>,
    header: ForwardedHeader,
    ipv6_prefix: u8,
    peer: PeerAddrFn,
}

impl ClientIp {
    /// The socket peer is the client; forwarding headers are ignored. Use this when clients
    /// connect to you directly.
    #[must_use]
    pub fn peer() -> Self {
        Self {
            trusted: Vec::new(),
            known_senders: Vec::new(),
            header: ForwardedHeader::XForwardedFor,
            ipv6_prefix: 64,
            peer: default_peer_addr,
        }
    }

    /// Behind proxies: peers in `trusted` (CIDRs such as `"10.0.0.0/8"`, or single addresses)
    /// are proxies whose `header` is believed, walked right to left.
    ///
    /// # Errors
    ///
    /// An entry that is neither a CIDR nor an IP address.
    pub fn behind_proxies<I, S>(trusted: I, header: ForwardedHeader) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let trusted = parse_networks(trusted, "rate limit: trusted proxy")?;
        Ok(Self {
            trusted,
            header,
            ..Self::peer()
        })
    }

    /// Declares the addresses a known sender delivers from (CIDRs or single addresses), such as
    /// [`EGRESS_IPS`](crate::elevenlabs::EGRESS_IPS), ElevenLabs' published webhook egress
    /// addresses. Every limiter keyed by this extractor ([`RateLimitLayer`], [`FailureLimitLayer`])
    /// lets their requests through without counting or storing them; verification still applies.
    ///
    /// Why: a sender delivers every customer's webhooks from the same few addresses, so anything
    /// that limits or blocks such an address turns away genuine deliveries, and anyone can make
    /// a sender fail verification against you (another customer of the sender pointing a
    /// webhook with another secret at your URL would get the sender blocked). A connection's
    /// source address cannot be forged, and a trusted proxy's header is walked from the right,
    /// so a client cannot pass for a known sender. The memory a known sender costs is nil: it
    /// never enters a store, so a flood of other addresses can never push it into a store's
    /// shared overflow bucket. Protect the handler behind verification with a verified limiter
    /// ([`RateLimitLayer::verified`]), which covers known senders too.
    ///
    /// [`RateLimitLayer`]: super::RateLimitLayer
    /// [`RateLimitLayer::verified`]: super::RateLimitLayer::verified
    /// [`FailureLimitLayer`]: super::FailureLimitLayer
    ///
    /// # Errors
    ///
    /// An entry that is neither a CIDR nor an IP address.
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use hookgate::{elevenlabs::EGRESS_IPS, rate_limit::{ClientIp, KeyExtractor}};
    ///
    /// let key = ClientIp::peer().known_senders(EGRESS_IPS)?;
    /// assert!(key.is_known_sender(&"34.67.146.145".parse::<IpAddr>()?));
    /// assert!(!key.is_known_sender(&"203.0.113.9".parse::<IpAddr>()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn known_senders<I, S>(mut self, senders: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.known_senders
            .extend(parse_networks(senders, "rate limit: known sender")?);
        Ok(self)
    }

    /// Keys IPv6 clients by their first `bits` bits (default 64; 128 keys every address
    /// separately).
    ///
    /// # Errors
    ///
    /// `bits` outside `1..=128`.
    pub fn ipv6_prefix(mut self, bits: u8) -> Result<Self, ConfigError> {
        if !(1..=128).contains(&bits) {
            return Err(ConfigError::new(
                "rate limit: the IPv6 prefix length must be between 1 and 128",
            ));
        }
        self.ipv6_prefix = bits;
        Ok(self)
    }

    /// Where to find the socket peer in the request's extensions, e.g. tonic's
    /// `TcpConnectInfo`:
    /// `|ext| ext.get::<TcpConnectInfo>().and_then(|info| info.remote_addr())`.
    #[must_use]
    pub fn peer_addr_with(mut self, peer: PeerAddrFn) -> Self {
        self.peer = peer;
        self
    }

    /// The client key for a request from `peer` carrying `headers`: the walk described on
    /// [`ClientIp`], then the IPv6 prefix.
    ///
    /// # Errors
    ///
    /// None today: a trusted peer whose header leads nowhere is keyed by the nearest trusted
    /// hop (see [`ClientIp`]). The `Result` leaves room for stricter policies.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> Result<IpAddr, MissingKey> {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return Ok(self.group(peer));
        }
        let name = match self.header {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        };
        let parse = match self.header {
            ForwardedHeader::XForwardedFor => parse_x_forwarded_for_entry,
            ForwardedHeader::Forwarded => parse_forwarded_element,
        };
        // The nearest address known so far: the peer, then each trusted hop the walk passes.
        let mut nearest = peer;
        let mut walked = false;
        // Lines in order, entries in order: the last entry of the last line is the nearest hop.
        for line in headers.get_all(name).iter().rev() {
            // Splitting on every comma is right for the entries that matter: a trusted proxy
            // writes addresses, which contain no commas. What a client wrote further left may
            // split oddly, or hold any bytes at all, and is never reached before a well-formed
            // untrusted address: so the line is read entry by entry, as bytes, never whole.
            for entry in line.as_bytes().rsplit(|&b| b == b',') {
                walked = true;
                let Some(ip) = std::str::from_utf8(entry).ok().and_then(parse) else {
                    warn_fallback("an unparseable forwarding header entry", nearest);
                    return Ok(self.group(nearest));
                };
                let ip = ip.to_canonical();
                if !self.is_trusted(ip) {
                    return Ok(self.group(ip));
                }
                nearest = ip;
            }
        }
        if !walked {
            warn_fallback("no forwarding header", nearest);
        }
        Ok(self.group(nearest))
    }

    /// The socket peer address this extractor finds in a request's extensions.
    #[must_use]
    pub fn peer_addr(&self, extensions: &Extensions) -> Option<SocketAddr> {
        (self.peer)(extensions)
    }

    /// Whether `ip` is one of the trusted proxies.
    #[must_use]
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.is_trusted(ip.to_canonical())
    }

    /// The forwarding header the trusted proxies write.
    #[must_use]
    pub fn forwarded_header(&self) -> ForwardedHeader {
        self.header
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    fn group(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => {
                let bits = u32::from(self.ipv6_prefix);
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }
}

impl Default for ClientIp {
    fn default() -> Self {
        Self::peer()
    }
}

impl fmt::Debug for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIp")
            .field("trusted", &self.trusted)
            .field("known_senders", &self.known_senders)
            .field("header", &self.header)
            .field("ipv6_prefix", &self.ipv6_prefix)
            .finish_non_exhaustive()
    }
}

impl KeyExtractor for ClientIp {
    type Key = IpAddr;

    fn extract<B>(&self, request: &Request<B>) -> Result<IpAddr, MissingKey> {
        let peer = (self.peer)(request.extensions()).ok_or(MissingKey::new(
            "no socket peer address in the request extensions",
        ))?;
        self.resolve(peer.ip(), request.headers())
    }

    fn is_known_sender(&self, key: &IpAddr) -> bool {
        // IPv6 keys are prefixes (`ipv6_prefix`): a known sender narrower than the prefix is
        // matched by the prefix its addresses are keyed by.
        self.known_senders.iter().any(|net| {
            net.contains(key) || (matches!(net, IpNet::V6(_)) && self.group(net.network()) == *key)
        })
    }
}

/// Warns, at most once a minute per process, that a trusted proxy's request was keyed by the
/// nearest trusted hop: a proxy that forwards without its header (or a health check, or a
/// host in the trusted range talking directly) puts everything it sends in one bucket, which
/// the operator should know about without a log line per request.
fn warn_fallback(why: &'static str, nearest: IpAddr) {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if once_per_interval(&LAST, now, 60) {
        tracing::warn!(
            target: "hookgate::rate_limit",
            client = %nearest,
            "a trusted proxy's request carried {why}: the client is taken to be the nearest \
             trusted hop (this warning repeats at most once a minute)"
        );
    }
}

/// Whether an event at `now` (whole seconds, above 0) is the first in `interval` seconds after
/// the one `last` holds (0: none yet); if so `last` becomes `now`. Of racing callers one wins.
fn once_per_interval(last: &AtomicU64, now: u64, interval: u64) -> bool {
    let seen = last.load(Ordering::Relaxed);
    (seen == 0 || now >= seen.saturating_add(interval))
        && last
            .compare_exchange(seen, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// Parses CIDRs (`"10.0.0.0/8"`) or single addresses; `what` names the setting in errors.
pub(crate) fn parse_networks<I, S>(entries: I, what: &str) -> Result<Vec<IpNet>, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    entries
        .into_iter()
        .map(|entry| {
            let entry = entry.as_ref().trim();
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| {
                    ConfigError::new(format!(
                        "{what} {entry:?} is neither a CIDR nor an IP address"
                    ))
                })
        })
        .collect()
}

/// The default peer lookup: a plain `SocketAddr` extension, then axum's `ConnectInfo`.
fn default_peer_addr(extensions: &Extensions) -> Option<SocketAddr> {
    if let Some(addr) = extensions.get::<SocketAddr>() {
        return Some(*addr);
    }
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0);
    }
    None
}

/// One `X-Forwarded-For` entry: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:443`.
pub(crate) fn parse_x_forwarded_for_entry(entry: &str) -> Option<IpAddr> {
    parse_node(entry.trim())
}

/// One RFC 7239 `Forwarded` element (`for=...;proto=...`): its `for` node.
pub(crate) fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    let mut node = None;
    for pair in element.split(';') {
        if pair.trim().is_empty() {
            continue; // `for=192.0.2.1;` or `;;`: empty pairs carry nothing
        }
        let (name, value) = pair.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("for") {
            if node.is_some() {
                return None; // two `for` parameters: ambiguous
            }
            let value = value.trim();
            let value = match value.strip_prefix('"') {
                Some(quoted) => quoted.strip_suffix('"')?,
                None => value,
            };
            node = Some(value);
        }
    }
    parse_node(node?)
}

fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return inside.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    // `192.0.2.1:80`: only IPv4 may carry a port without brackets.
    let (host, port) = node.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn xff(trusted: &[&str]) -> ClientIp {
        ClientIp::behind_proxies(trusted, ForwardedHeader::XForwardedFor).unwrap()
    }

    #[test]
    fn node_forms_parse() {
        assert_eq!(
            parse_x_forwarded_for_entry(" 192.0.2.1 "),
            Some(ip("192.0.2.1"))
        );
        assert_eq!(
            parse_x_forwarded_for_entry("192.0.2.1:8080"),
            Some(ip("192.0.2.1"))
        );
        assert_eq!(
            parse_x_forwarded_for_entry("2001:db8::1"),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            parse_x_forwarded_for_entry("[2001:db8::1]"),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            parse_x_forwarded_for_entry("[2001:db8::1]:443"),
            Some(ip("2001:db8::1"))
        );
        for garbage in [
            "",
            "unknown",
            "[2001:db8::1",
            "[192.0.2.1]",
            "1.2.3.4:",
            "1.2.3.4:99999",
            "[::1]x",
            "_hidden",
            "::1:80:",
        ] {
            assert_eq!(parse_x_forwarded_for_entry(garbage), None, "{garbage:?}");
        }
        assert_eq!(
            parse_forwarded_element("for=192.0.2.60;proto=http;by=203.0.113.43"),
            Some(ip("192.0.2.60"))
        );
        assert_eq!(
            parse_forwarded_element(" For=\"[2001:db8:cafe::17]:4711\""),
            Some(ip("2001:db8:cafe::17"))
        );
        assert_eq!(
            parse_forwarded_element("for=192.0.2.60;"),
            Some(ip("192.0.2.60"))
        );
        assert_eq!(parse_forwarded_element(""), None);
        assert_eq!(parse_forwarded_element("proto=https"), None);
        assert_eq!(parse_forwarded_element("for=unknown"), None);
        assert_eq!(parse_forwarded_element("for=_gazonk"), None);
        assert_eq!(parse_forwarded_element("for=\"1.2.3.4"), None);
        assert_eq!(parse_forwarded_element("for=1.2.3.4;for=5.6.7.8"), None);
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let key = xff(&["10.0.0.0/8"]);
        let map = headers("x-forwarded-for", &["10.1.1.1", "203.0.113.5"]);
        assert_eq!(
            key.resolve(ip("198.51.100.7"), &map),
            Ok(ip("198.51.100.7"))
        );
        assert_eq!(
            ClientIp::peer().resolve(ip("10.0.0.1"), &map),
            Ok(ip("10.0.0.1"))
        );
    }

    #[test]
    fn walk_stops_at_the_first_untrusted_hop_from_the_right() {
        let key = xff(&["10.0.0.0/8", "192.168.1.1"]);
        let map = headers(
            "x-forwarded-for",
            &["1.1.1.1, 203.0.113.5", "192.168.1.1, 10.2.3.4"],
        );
        assert_eq!(key.resolve(ip("10.0.0.1"), &map), Ok(ip("203.0.113.5")));
    }

    #[test]
    fn spoofed_leftmost_entries_do_not_move_the_client() {
        let key = xff(&["10.0.0.0/8"]);
        let honest = headers("x-forwarded-for", &["203.0.113.5"]);
        for spoof in [
            "1.2.3.4, 203.0.113.5",
            "10.9.9.9, 203.0.113.5",
            "garbage, not-an-ip, 203.0.113.5",
            "[::1]:80, 203.0.113.5",
            "\"for=1.2.3.4\", 203.0.113.5",
        ] {
            let spoofed = headers("x-forwarded-for", &[spoof]);
            assert_eq!(
                key.resolve(ip("10.0.0.1"), &spoofed),
                key.resolve(ip("10.0.0.1"), &honest)
            );
        }
        assert_eq!(key.resolve(ip("10.0.0.1"), &honest), Ok(ip("203.0.113.5")));
    }

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
    fn bytes_a_client_wrote_do_not_spoil_the_entries_a_proxy_appended() {
        // Not visible ASCII (obs-text), as hyper accepts it; a proxy appends to the same line.
        let key = xff(&["10.0.0.0/8"]);
        let line = |value: &[u8]| {
            let mut map = HeaderMap::new();
            map.insert("x-forwarded-for", HeaderValue::from_bytes(value).unwrap());
            map
        };
        assert_eq!(
            key.resolve(ip("10.0.0.1"), &line(b"\xff\xfe, 203.0.113.5")),
            Ok(ip("203.0.113.5"))
        );
        assert_eq!(
            key.resolve(ip("10.0.0.1"), &line(b"1.2.3.4\xff, 203.0.113.5, 10.0.0.2")),
            Ok(ip("203.0.113.5"))
        );
        // Reached (every hop to its right trusted), it is no address: the nearest trusted hop
        // is the client.
        assert_eq!(
            key.resolve(ip("10.0.0.1"), &line(b"\xff, 10.0.0.2")),
            Ok(ip("10.0.0.2"))
        );
    }

    #[test]
    fn a_trusted_peer_whose_header_leads_nowhere_is_keyed_by_the_nearest_trusted_hop() {
        let key = xff(&["10.0.0.0/8"]);
        // No header at all (a health check, a proxy configured without it): the peer.
        assert_eq!(
            key.resolve(ip("10.0.0.1"), &HeaderMap::new()),
            Ok(ip("10.0.0.1"))
        );
        // An entry that is no address, nearest first: the peer.
        let map = headers("x-forwarded-for", &["203.0.113.5, bogus"]);
        assert_eq!(key.resolve(ip("10.0.0.1"), &map), Ok(ip("10.0.0.1")));
        // ... after a trusted hop: that hop.
        let map = headers("x-forwarded-for", &["203.0.113.5, unknown, 10.9.9.9"]);
        assert_eq!(key.resolve(ip("10.0.0.1"), &map), Ok(ip("10.9.9.9")));
        // The other header is never read.
        let map = headers("forwarded", &["for=203.0.113.5"]);
        assert_eq!(key.resolve(ip("10.0.0.1"), &map), Ok(ip("10.0.0.1")));
    }

    #[test]
    fn the_fallback_warning_is_due_once_per_interval() {
        let last = AtomicU64::new(0);
        assert!(once_per_interval(&last, 1_000, 60), "the first is due");
        assert_eq!(last.load(Ordering::Relaxed), 1_000);
        assert!(!once_per_interval(&last, 1_000, 60));
        assert!(!once_per_interval(&last, 1_059, 60));
        assert!(
            once_per_interval(&last, 1_060, 60),
            "due again after the interval"
        );
        assert_eq!(last.load(Ordering::Relaxed), 1_060);
        assert!(!once_per_interval(&last, 1_061, 60));
        // A clock before the epoch reads 0; it still counts as seen.
        let last = AtomicU64::new(0);
        assert!(once_per_interval(&last, 0, 60));
        assert_eq!(last.load(Ordering::Relaxed), 1);
        assert!(!once_per_interval(&last, 0, 60));
    }

    #[test]
    fn missing_keys_say_why_and_extractors_show_their_settings() {
        let missing = MissingKey::new("no tenant in the path");
        assert_eq!(missing.reason(), "no tenant in the path");
        assert_eq!(missing.to_string(), "no tenant in the path");
        let key = ClientIp::behind_proxies(["10.0.0.0/8"], ForwardedHeader::Forwarded)
            .unwrap()
            .known_senders(["34.67.146.145"])
            .unwrap();
        assert_eq!(
            format!("{key:?}"),
            "ClientIp { trusted: [10.0.0.0/8], known_senders: [34.67.146.145/32], \
             header: Forwarded, ipv6_prefix: 64, .. }"
        );
    }

    #[test]
    fn known_senders_are_matched_by_address_and_by_ipv6_prefix() {
        let key = ClientIp::peer()
            .known_senders(["34.67.146.145", "2001:db8:1:2::7", "198.51.100.0/24"])
            .unwrap();
        assert!(key.is_known_sender(&ip("34.67.146.145")));
        assert!(!key.is_known_sender(&ip("34.67.146.146")));
        assert!(key.is_known_sender(&ip("198.51.100.77")));
        assert!(!key.is_known_sender(&ip("198.51.101.1")));
        // IPv6 keys are /64 prefixes: the known host's prefix is known, its neighbours' not.
        let grouped = key
            .resolve(ip("2001:db8:1:2::7"), &HeaderMap::new())
            .unwrap();
        assert!(key.is_known_sender(&grouped));
        let other = key
            .resolve(ip("2001:db8:1:3::7"), &HeaderMap::new())
            .unwrap();
        assert!(!key.is_known_sender(&other));
        assert!(ClientIp::peer().known_senders(["not an address"]).is_err());
        assert!(!ClientIp::peer().is_known_sender(&ip("34.67.146.145")));
    }

    #[test]
    fn all_hops_trusted_gives_the_leftmost() {
        let key = xff(&["10.0.0.0/8"]);
        let map = headers("x-forwarded-for", &["10.5.5.5, 10.6.6.6"]);
        assert_eq!(key.resolve(ip("10.0.0.1"), &map), Ok(ip("10.5.5.5")));
    }

    #[test]
    fn forwarded_header_walks_the_same_way() {
        let key = ClientIp::behind_proxies(
            ["10.0.0.0/8", "2001:db8:ffff::/48"],
            ForwardedHeader::Forwarded,
        )
        .unwrap();
        let map = headers(
            "forwarded",
            &["for=6.6.6.6, for=\"[2001:db8:1:2::99]:4711\";proto=https, for=\"[2001:db8:ffff::1]\""],
        );
        assert_eq!(key.resolve(ip("10.0.0.1"), &map), Ok(ip("2001:db8:1:2::")));
    }

    #[test]
    fn ipv6_is_grouped_by_64_and_mapped_v4_is_v4() {
        let key = ClientIp::peer();
        let a = key
            .resolve(ip("2001:db8:1:2:aaaa::1"), &HeaderMap::new())
            .unwrap();
        let b = key
            .resolve(ip("2001:db8:1:2:bbbb::2"), &HeaderMap::new())
            .unwrap();
        let c = key
            .resolve(ip("2001:db8:1:3::1"), &HeaderMap::new())
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            key.resolve(ip("::ffff:192.0.2.1"), &HeaderMap::new()),
            Ok(ip("192.0.2.1"))
        );
        let exact = ClientIp::peer().ipv6_prefix(128).unwrap();
        assert_ne!(
            exact.resolve(ip("2001:db8:1:2::1"), &HeaderMap::new()),
            exact.resolve(ip("2001:db8:1:2::2"), &HeaderMap::new())
        );
        assert!(ClientIp::peer().ipv6_prefix(0).is_err());
        assert!(ClientIp::peer().ipv6_prefix(129).is_err());
    }

    #[test]
    fn bad_trusted_entries_are_refused() {
        assert!(ClientIp::behind_proxies(["10.0.0.0/33"], ForwardedHeader::Forwarded).is_err());
        assert!(ClientIp::behind_proxies(["proxy.local"], ForwardedHeader::Forwarded).is_err());
        assert!(
            ClientIp::behind_proxies(["::1", "10.0.0.0/8"], ForwardedHeader::Forwarded).is_ok()
        );
    }

    #[test]
    fn missing_peer_is_unidentified() {
        let request = Request::new(());
        assert_eq!(
            ClientIp::peer().extract(&request),
            Err(MissingKey::new(
                "no socket peer address in the request extensions"
            ))
        );
        let custom =
            ClientIp::peer().peer_addr_with(|_| Some(SocketAddr::from(([192, 0, 2, 9], 1))));
        assert_eq!(custom.extract(&request), Ok(ip("192.0.2.9")));
    }
}
