//! Who the client is: [`ClientIp`] finds a request's client address, behind your proxies if
//! you have any (feature `client-ip`, enabled by `rate-limit` and `client-checks`).
//!
//! The rate limiters key their buckets by it, the failure limiter counts failures by it, the
//! client checks allow-list it; they all find the client the same way, so one [`ClientIp`]
//! configured once serves them all.
//!
//! # Client addresses and proxies
//!
//! **Read this before deploying behind a load balancer, CDN or reverse proxy.**
//!
//! [`ClientIp`] takes the **socket peer** for the client. Behind a proxy every request comes
//! from the proxy, so all clients look like one (one rate-limit bucket: a single flood blocks
//! everyone, including the sender), unless you declare the proxy: [`ClientIp::behind_proxies`]
//! with its CIDRs and the header it appends to ([`ForwardedHeader::XForwardedFor`] or RFC 7239
//! [`ForwardedHeader::Forwarded`]). The header is then walked **right to left** past trusted
//! hops; the first untrusted address is the client.
//!
//! - **Never trust the leftmost entry**: it is whatever the client wrote. The walk never gets
//!   to it unless every hop to its right is a trusted proxy.
//! - **Never list a proxy you do not run** (or a CIDR wider than your proxies): anything in
//!   the list can make up client addresses and pass for any client.
//! - Only the one header you name is read; a client can write the other one freely.
//! - An untrusted peer is the client, whatever headers it sends.
//! - IPv6 clients are known by their /64 ([`ClientIp::ipv6_prefix`]): one host can hold a whole
//!   /64.
//!
//! The peer address comes from a [`SocketAddr`] request extension (insert it when you accept a
//! connection with hyper), from axum's `ConnectInfo<SocketAddr>` (feature `axum`, with
//! `into_make_service_with_connect_info::<SocketAddr>()`), or from wherever
//! [`ClientIp::peer_addr_with`] says (tonic's `TcpConnectInfo`, your own types). A request with
//! no peer address at all is [`Unidentified`]: that is a deployment error, and the layers answer
//! it with `500 client_unidentified`, naming the fix.

mod forwarded;

use std::{
    error::Error,
    fmt,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::atomic::{AtomicU64, Ordering},
};

use http::{Extensions, HeaderMap, Request};
use ipnet::IpNet;

use self::forwarded::{parse_forwarded_element, parse_x_forwarded_for_entry};
use crate::ConfigError;

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

/// Why the client of a request could not be identified: the request carries nothing to tell
/// who sent it (no peer address, or, for a rate-limit key of your own, nothing to key it by).
///
/// The layers answer such a request `500` with problem code `client_unidentified` and the
/// reason in the problem's detail, and log it at `warn`: it is a deployment error, and the
/// reason says how to fix it.
///
/// ```
/// use hookgate::client_ip::{ClientIp, Unidentified};
/// use http::Request;
///
/// let unidentified = ClientIp::peer().identify(&Request::new(())).unwrap_err();
/// assert!(unidentified.reason().contains("into_make_service_with_connect_info"));
///
/// let custom = Unidentified::new("no tenant in the path");
/// assert_eq!(custom.to_string(), "no tenant in the path");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unidentified {
    reason: &'static str,
}

impl Unidentified {
    /// An unidentified client, with a short, fixed reason saying what is missing (it is logged
    /// and sent in the problem's detail: name the fix, never anything from the request).
    #[must_use]
    pub const fn new(reason: &'static str) -> Self {
        Self { reason }
    }

    /// What is missing, and how to fix it.
    #[must_use]
    pub const fn reason(&self) -> &'static str {
        self.reason
    }
}

impl fmt::Display for Unidentified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl Error for Unidentified {}

/// The reason a request without a peer address is unidentified: the fix for each server.
#[cfg(feature = "axum")]
const NO_PEER: &str = "no peer address in the request extensions: under axum serve with \
     `into_make_service_with_connect_info::<SocketAddr>()`; under hyper insert the connection's \
     `SocketAddr`; elsewhere tell `ClientIp::peer_addr_with` where the peer is";
/// The reason a request without a peer address is unidentified: the fix for each server.
#[cfg(not(feature = "axum"))]
const NO_PEER: &str = "no peer address in the request extensions: under axum serve with \
     `into_make_service_with_connect_info::<SocketAddr>()` and enable hookgate's `axum` \
     feature; under hyper insert the connection's `SocketAddr`; elsewhere tell \
     `ClientIp::peer_addr_with` where the peer is";

/// Finds a request's client: its IP address.
///
/// # Which address
///
/// The client is the **socket peer**, read from a [`SocketAddr`] request extension (and, with the
/// `axum` feature, from axum's `ConnectInfo<SocketAddr>`, which
/// `into_make_service_with_connect_info::<SocketAddr>()` sets). With hyper, insert the peer
/// yourself when you accept the connection (`request.extensions_mut().insert(peer)`); with tonic
/// or anything else, tell `ClientIp` where to look with
/// [`peer_addr_with`](ClientIp::peer_addr_with).
///
/// Only when the peer is one of your **trusted proxies** (a CIDR list) is the forwarding header
/// read, walked **right to left** past trusted hops: the first address that is not a trusted
/// proxy is the client. The leftmost entry is whatever the client wrote and is never trusted
/// for that reason alone. A request from an untrusted peer is the peer's, whatever headers it
/// sends.
///
/// # When the walk finds no untrusted address
///
/// The client is then the **nearest address the walk established**: the trusted peer itself
/// when it sent no forwarding header (a proxy's health check, a host in the trusted range
/// talking directly, a proxy configured without the header), the last trusted hop before an
/// entry the walk cannot parse (including `unknown` and obfuscated RFC 7239 identifiers), or
/// the leftmost entry when every hop is trusted. What an operator expects: such requests are
/// served and limited as that hop, not refused. Since everything such a hop sends then counts
/// as one client, the first occurrence (and then at most one a minute) is logged at `warn`.
/// Only a request with no peer address at all is [`Unidentified`].
///
/// # IPv6
///
/// One host owns a whole IPv6 /64 and can change its address within it at will, so IPv6 clients
/// are known by their /64 prefix ([`ipv6_prefix`](ClientIp::ipv6_prefix) changes it). IPv4-mapped
/// IPv6 addresses (`::ffff:192.0.2.1`, seen on dual-stack sockets) count as their IPv4 address.
///
/// ```
/// use std::net::{IpAddr, SocketAddr};
/// use hookgate::client_ip::{ClientIp, ForwardedHeader};
/// use http::Request;
///
/// let client_ip = ClientIp::behind_proxies(["10.0.0.0/8"], ForwardedHeader::XForwardedFor).unwrap();
///
/// // From the proxy at 10.0.0.2: the client is the rightmost untrusted entry.
/// let mut request = Request::builder()
///     .header("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.7")
///     .body(())
///     .unwrap();
/// request.extensions_mut().insert(SocketAddr::from(([10, 0, 0, 2], 41000)));
/// assert_eq!(client_ip.identify(&request).unwrap(), IpAddr::from([203, 0, 113, 9]));
///
/// // A direct, untrusted peer: its headers are ignored.
/// request.extensions_mut().insert(SocketAddr::from(([198, 51, 100, 4], 41000)));
/// assert_eq!(client_ip.identify(&request).unwrap(), IpAddr::from([198, 51, 100, 4]));
/// ```
#[derive(Clone)]
pub struct ClientIp {
    trusted: Vec<IpNet>,
    known_senders: Vec<IpNet>,
    /// The IPv4 known senders as `(network, mask)` integers, worked out once: every delivery
    /// asks, and a masked compare per network is a few instructions where `Ipv4Net::contains`
    /// works the mask out from the prefix length each time.
    known_v4: Vec<(u32, u32)>,
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
            known_v4: Vec::new(),
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
        let trusted = parse_networks(trusted, "client ip: trusted proxy")?;
        Ok(Self {
            trusted,
            header,
            ..Self::peer()
        })
    }

    /// Declares the addresses a known sender delivers from (CIDRs or single addresses), such as
    /// [`EGRESS_IPS`](crate::elevenlabs::EGRESS_IPS), ElevenLabs' published webhook egress
    /// addresses. Every limiter keyed by this `ClientIp` (`RateLimitLayer`, `FailureLimitLayer`,
    /// feature `rate-limit`) lets their requests through without counting or storing them;
    /// verification still applies.
    ///
    /// Why: a sender delivers every customer's webhooks from the same few addresses, so anything
    /// that limits or blocks such an address turns away genuine deliveries, and anyone can make
    /// a sender fail verification against you (another customer of the sender pointing a
    /// webhook with another secret at your URL would get the sender blocked). A connection's
    /// source address cannot be forged, and a trusted proxy's header is walked from the right,
    /// so a client cannot pass for a known sender. The memory a known sender costs is nil: it
    /// never enters a store, so a flood of other addresses can never push it into a store's
    /// shared overflow bucket. Protect the handler behind verification with a verified limiter
    /// (`RateLimitLayer::verified`), which covers known senders too.
    ///
    /// # Errors
    ///
    /// An entry that is neither a CIDR nor an IP address.
    ///
    /// ```
    /// use std::net::IpAddr;
    /// use hookgate::{client_ip::ClientIp, elevenlabs::EGRESS_IPS};
    ///
    /// let client_ip = ClientIp::peer().known_senders(EGRESS_IPS)?;
    /// assert!(client_ip.is_known_sender(&"34.67.146.145".parse::<IpAddr>()?));
    /// assert!(!client_ip.is_known_sender(&"203.0.113.9".parse::<IpAddr>()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn known_senders<I, S>(mut self, senders: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.known_senders
            .extend(parse_networks(senders, "client ip: known sender")?);
        self.known_v4 = self
            .known_senders
            .iter()
            .filter_map(|net| match net {
                IpNet::V4(net) => Some((u32::from(net.network()), u32::from(net.netmask()))),
                IpNet::V6(_) => None,
            })
            .collect();
        Ok(self)
    }

    /// Knows IPv6 clients by their first `bits` bits (default 64; 128 tells every address
    /// apart).
    ///
    /// # Errors
    ///
    /// `bits` outside `1..=128`.
    pub fn ipv6_prefix(mut self, bits: u8) -> Result<Self, ConfigError> {
        if !(1..=128).contains(&bits) {
            return Err(ConfigError::new(
                "client ip: the IPv6 prefix length must be between 1 and 128",
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

    /// The client of `request`: the walk described on [`ClientIp`], then the IPv6 prefix.
    ///
    /// # Errors
    ///
    /// [`Unidentified`] when the request carries no peer address; its reason names the fix.
    #[inline]
    pub fn identify<B>(&self, request: &Request<B>) -> Result<IpAddr, Unidentified> {
        match (self.peer)(request.extensions()) {
            // Every request asks, and most come from an IPv4 peer with no proxy trusted: the
            // peer is then the client, as `resolve` would find, without the walk's code.
            Some(SocketAddr::V4(peer)) if self.trusted.is_empty() => Ok(IpAddr::V4(*peer.ip())),
            Some(peer) => Ok(self.resolve(peer.ip(), request.headers())),
            None => Err(Unidentified::new(NO_PEER)),
        }
    }

    /// The client of a request from `peer` carrying `headers`: the walk described on
    /// [`ClientIp`], then the IPv6 prefix. A trusted peer whose header leads nowhere is the
    /// nearest trusted hop's.
    #[must_use]
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return self.group(peer);
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
                    return self.group(nearest);
                };
                let ip = ip.to_canonical();
                if !self.is_trusted(ip) {
                    return self.group(ip);
                }
                nearest = ip;
            }
        }
        if !walked {
            warn_fallback("no forwarding header", nearest);
        }
        self.group(nearest)
    }

    /// Whether `client` (as [`identify`](ClientIp::identify) gives it, IPv6 by prefix) is one
    /// of the [`known_senders`](ClientIp::known_senders).
    #[must_use]
    #[inline]
    pub fn is_known_sender(&self, client: &IpAddr) -> bool {
        // Every request asks; most deployments declare no sender.
        !self.known_senders.is_empty() && self.is_listed_sender(client)
    }

    /// [`is_known_sender`](ClientIp::is_known_sender) with senders declared.
    fn is_listed_sender(&self, client: &IpAddr) -> bool {
        // IPv6 clients are prefixes (`ipv6_prefix`): a known sender narrower than the prefix is
        // matched by the prefix its addresses are known by.
        match client {
            // Every delivery asks: an IPv4 client is only in IPv4 networks, compared as
            // integers, without the IPv6 prefix of every IPv6 network.
            IpAddr::V4(ip) => {
                let ip = u32::from(*ip);
                self.known_v4
                    .iter()
                    .any(|&(network, mask)| ip & mask == network)
            }
            IpAddr::V6(_) => self.known_senders.iter().any(|net| {
                net.contains(client)
                    || (matches!(net, IpNet::V6(_)) && self.group(net.network()) == *client)
            }),
        }
    }

    /// Whether `ip` is one of the trusted proxies.
    #[must_use]
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.is_trusted(ip.to_canonical())
    }

    /// The socket peer address this `ClientIp` finds in a request's extensions.
    #[cfg(feature = "client-checks")]
    pub(crate) fn peer_addr(&self, extensions: &Extensions) -> Option<SocketAddr> {
        (self.peer)(extensions)
    }

    /// The forwarding header the trusted proxies write.
    #[cfg(feature = "client-checks")]
    pub(crate) fn forwarded_header(&self) -> ForwardedHeader {
        self.header
    }

    /// Tells every address apart: no IPv6 prefix grouping (the allow-list's view).
    #[cfg(feature = "client-checks")]
    pub(crate) fn exact(mut self) -> Self {
        self.ipv6_prefix = 128;
        self
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

/// Warns, at most once a minute per process, that a trusted proxy's request was taken for the
/// nearest trusted hop's: a proxy that forwards without its header (or a health check, or a
/// host in the trusted range talking directly) makes everything it sends one client, which the
/// operator should know about without a log line per request.
fn warn_fallback(why: &'static str, nearest: IpAddr) {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if once_per_interval(&LAST, now, 60) {
        tracing::warn!(
            target: "hookgate::client_ip",
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

#[cfg(test)]
mod tests;
