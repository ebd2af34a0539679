use http::HeaderValue;

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
fn untrusted_peer_headers_are_ignored() {
    let key = xff(&["10.0.0.0/8"]);
    let map = headers("x-forwarded-for", &["10.1.1.1", "203.0.113.5"]);
    assert_eq!(key.resolve(ip("198.51.100.7"), &map), ip("198.51.100.7"));
    assert_eq!(
        ClientIp::peer().resolve(ip("10.0.0.1"), &map),
        ip("10.0.0.1")
    );
}

#[test]
fn walk_stops_at_the_first_untrusted_hop_from_the_right() {
    let key = xff(&["10.0.0.0/8", "192.168.1.1"]);
    let map = headers(
        "x-forwarded-for",
        &["1.1.1.1, 203.0.113.5", "192.168.1.1, 10.2.3.4"],
    );
    assert_eq!(key.resolve(ip("10.0.0.1"), &map), ip("203.0.113.5"));
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
    assert_eq!(key.resolve(ip("10.0.0.1"), &honest), ip("203.0.113.5"));
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
        ip("203.0.113.5")
    );
    assert_eq!(
        key.resolve(ip("10.0.0.1"), &line(b"1.2.3.4\xff, 203.0.113.5, 10.0.0.2")),
        ip("203.0.113.5")
    );
    // Reached (every hop to its right trusted), it is no address: the nearest trusted hop
    // is the client.
    assert_eq!(
        key.resolve(ip("10.0.0.1"), &line(b"\xff, 10.0.0.2")),
        ip("10.0.0.2")
    );
}

#[test]
fn a_trusted_peer_whose_header_leads_nowhere_is_keyed_by_the_nearest_trusted_hop() {
    let key = xff(&["10.0.0.0/8"]);
    // No header at all (a health check, a proxy configured without it): the peer.
    assert_eq!(
        key.resolve(ip("10.0.0.1"), &HeaderMap::new()),
        ip("10.0.0.1")
    );
    // An entry that is no address, nearest first: the peer.
    let map = headers("x-forwarded-for", &["203.0.113.5, bogus"]);
    assert_eq!(key.resolve(ip("10.0.0.1"), &map), ip("10.0.0.1"));
    // ... after a trusted hop: that hop.
    let map = headers("x-forwarded-for", &["203.0.113.5, unknown, 10.9.9.9"]);
    assert_eq!(key.resolve(ip("10.0.0.1"), &map), ip("10.9.9.9"));
    // The other header is never read.
    let map = headers("forwarded", &["for=203.0.113.5"]);
    assert_eq!(key.resolve(ip("10.0.0.1"), &map), ip("10.0.0.1"));
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
fn ipv4_known_senders_match_as_their_networks_contain() {
    let nets = [
        "10.0.0.0/8",
        "34.67.146.145",
        "198.51.100.0/24",
        "203.0.113.128/25",
    ];
    // Declared in two calls: both are kept.
    let key = ClientIp::peer()
        .known_senders(&nets[..2])
        .unwrap()
        .known_senders(&nets[2..])
        .unwrap();
    let parsed: Vec<ipnet::Ipv4Net> = nets
        .iter()
        .map(|n| {
            n.parse()
                .unwrap_or_else(|_| format!("{n}/32").parse().unwrap())
        })
        .collect();
    let mut x: u32 = 0x9e37_79b9;
    let mut candidates: Vec<std::net::Ipv4Addr> = (0..2000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            std::net::Ipv4Addr::from(x)
        })
        .collect();
    for net in &parsed {
        let (first, last) = (u32::from(net.network()), u32::from(net.broadcast()));
        for edge in [
            first.wrapping_sub(1),
            first,
            first + 1,
            last - 1,
            last,
            last.wrapping_add(1),
        ] {
            candidates.push(edge.into());
        }
    }
    for ip in candidates {
        let expected = parsed.iter().any(|net| net.contains(&ip));
        assert_eq!(key.is_known_sender(&IpAddr::V4(ip)), expected, "{ip}");
    }
    let everyone = ClientIp::peer().known_senders(["0.0.0.0/0"]).unwrap();
    assert!(everyone.is_known_sender(&ip("255.255.255.255")));
    assert!(everyone.is_known_sender(&ip("0.0.0.0")));
    assert!(!everyone.is_known_sender(&ip("2001:db8::1")));
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
    let grouped = key.resolve(ip("2001:db8:1:2::7"), &HeaderMap::new());
    assert!(key.is_known_sender(&grouped));
    let other = key.resolve(ip("2001:db8:1:3::7"), &HeaderMap::new());
    assert!(!key.is_known_sender(&other));
    assert!(ClientIp::peer().known_senders(["not an address"]).is_err());
    assert!(!ClientIp::peer().is_known_sender(&ip("34.67.146.145")));
}

#[test]
fn all_hops_trusted_gives_the_leftmost() {
    let key = xff(&["10.0.0.0/8"]);
    let map = headers("x-forwarded-for", &["10.5.5.5, 10.6.6.6"]);
    assert_eq!(key.resolve(ip("10.0.0.1"), &map), ip("10.5.5.5"));
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
    assert_eq!(key.resolve(ip("10.0.0.1"), &map), ip("2001:db8:1:2::"));
}

#[test]
fn ipv6_is_grouped_by_64_and_mapped_v4_is_v4() {
    let key = ClientIp::peer();
    let a = key.resolve(ip("2001:db8:1:2:aaaa::1"), &HeaderMap::new());
    let b = key.resolve(ip("2001:db8:1:2:bbbb::2"), &HeaderMap::new());
    let c = key.resolve(ip("2001:db8:1:3::1"), &HeaderMap::new());
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(
        key.resolve(ip("::ffff:192.0.2.1"), &HeaderMap::new()),
        ip("192.0.2.1")
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
    assert!(ClientIp::behind_proxies(["::1", "10.0.0.0/8"], ForwardedHeader::Forwarded).is_ok());
}

#[test]
fn missing_peer_is_unidentified_and_the_reason_names_the_fix() {
    let request = Request::new(());
    let unidentified = ClientIp::peer().identify(&request).unwrap_err();
    assert_eq!(unidentified, Unidentified::new(NO_PEER));
    for fix in [
        "into_make_service_with_connect_info::<SocketAddr>()",
        "insert the connection's `SocketAddr`",
        "peer_addr_with",
    ] {
        assert!(unidentified.reason().contains(fix), "{fix}");
    }
    assert_eq!(unidentified.to_string(), unidentified.reason());
    let custom = ClientIp::peer().peer_addr_with(|_| Some(SocketAddr::from(([192, 0, 2, 9], 1))));
    assert_eq!(custom.identify(&request), Ok(ip("192.0.2.9")));
}

#[test]
fn settings_show_in_debug() {
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

#[cfg(feature = "client-checks")]
#[test]
fn the_allow_lists_view_tells_every_ipv6_address_apart() {
    let exact = ClientIp::peer().exact();
    assert_ne!(
        exact.resolve(ip("2001:db8:1:2::1"), &HeaderMap::new()),
        exact.resolve(ip("2001:db8:1:2::2"), &HeaderMap::new())
    );
    assert_eq!(
        exact.resolve(ip("2001:db8:1:2::1"), &HeaderMap::new()),
        ip("2001:db8:1:2::1")
    );
}

/// A request from `peer` carrying `x-forwarded-for: forwarded`.
fn from(peer: &str, forwarded: &str) -> Request<()> {
    let mut request = Request::builder()
        .header("x-forwarded-for", forwarded)
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(SocketAddr::new(ip(peer), 40_000));
    request
}

#[test]
fn identify_takes_an_ipv4_peer_as_is_only_when_no_proxy_is_trusted() {
    // No proxy trusted: an IPv4 peer is the client, whatever it forwards.
    let direct = ClientIp::peer();
    let request = from("10.0.0.1", "203.0.113.5");
    assert_eq!(direct.identify(&request), Ok(ip("10.0.0.1")));
    // The same request from a trusted proxy is its forwarded client's.
    assert_eq!(
        xff(&["10.0.0.0/8"]).identify(&request),
        Ok(ip("203.0.113.5"))
    );
    // A proxy trusted elsewhere: this IPv4 peer is not one, so it is the client.
    assert_eq!(
        xff(&["192.168.0.0/16"]).identify(&request),
        Ok(ip("10.0.0.1"))
    );
}

#[test]
fn identify_groups_ipv6_peers_and_unmaps_mapped_ipv4_without_proxies() {
    let direct = ClientIp::peer();
    assert_eq!(
        direct.identify(&from("2001:db8:1:2:aaaa::1", "203.0.113.5")),
        Ok(ip("2001:db8:1:2::"))
    );
    assert_eq!(
        direct.identify(&from("::ffff:192.0.2.1", "203.0.113.5")),
        Ok(ip("192.0.2.1"))
    );
    // A mapped IPv4 peer inside a trusted range is a proxy like its IPv4 address.
    assert_eq!(
        xff(&["192.0.2.0/24"]).identify(&from("::ffff:192.0.2.1", "203.0.113.5")),
        Ok(ip("203.0.113.5"))
    );
}

#[test]
fn without_declared_senders_no_client_is_a_known_sender() {
    let key = ClientIp::peer();
    for client in ["34.67.146.145", "0.0.0.0", "2001:db8:1:2::", "::"] {
        assert!(!key.is_known_sender(&ip(client)), "{client}");
    }
    // One sender declared: only it.
    let key = key.known_senders(["2001:db8:1:2::7"]).unwrap();
    assert!(key.is_known_sender(&ip("2001:db8:1:2::")));
    assert!(!key.is_known_sender(&ip("2001:db8:1:3::")));
    assert!(!key.is_known_sender(&ip("34.67.146.145")));
}
