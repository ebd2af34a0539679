//! Property tests for the forwarding-header walk of `ClientIp`: it never panics, and whatever a
//! client writes to the left of what trusted proxies appended (any bytes hyper accepts) never
//! changes the client found.
#![cfg(feature = "rate-limit")]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hookgate::client_ip::{ClientIp, ForwardedHeader};
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

const TRUSTED: [&str; 2] = ["10.0.0.0/8", "fd00::/8"];

fn key(header: ForwardedHeader) -> ClientIp {
    ClientIp::behind_proxies(TRUSTED, header).unwrap()
}

/// Arbitrary visible-ASCII header text (what a client can put in a header).
fn header_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::char::range(' ', '~'),
            1 => prop::sample::select(vec![',', ';', '=', '"', '[', ']', ':', '_']),
        ],
        0..80,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// Arbitrary header bytes as hyper accepts them: visible ASCII, tab, and obs-text (0x80-0xFF).
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            3 => 0x20u8..0x7f,
            1 => 0x80u8..=0xff,
            1 => Just(b','),
            1 => Just(b'\t'),
        ],
        0..80,
    )
}

/// A left part a client may write: random bytes, or lists of plausible entries.
fn spoofed_prefix() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        header_bytes(),
        proptest::collection::vec(
            prop_oneof![
                any::<Ipv4Addr>().prop_map(|ip| ip.to_string()),
                any::<Ipv6Addr>().prop_map(|ip| format!("[{ip}]:443")),
                any::<Ipv6Addr>().prop_map(|ip| ip.to_string()),
                Just("10.1.2.3".to_owned()),
                Just("unknown".to_owned()),
                Just("for=\"".to_owned()),
                header_text(),
            ],
            1..6
        )
        .prop_map(|entries| entries.join(", ").into_bytes()),
    ]
}

/// The key `ClientIp` gives a client: IPv4 as is, IPv6 by its /64.
fn grouped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
    }
}

fn untrusted_client() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<Ipv4Addr>()
            .prop_filter("untrusted", |ip| ip.octets()[0] != 10)
            .prop_map(IpAddr::V4),
        any::<Ipv6Addr>()
            .prop_filter("untrusted", |ip| ip.octets()[0] != 0xfd
                && ip.to_ipv4_mapped().is_none())
            .prop_map(IpAddr::V6),
    ]
}

/// How a trusted proxy writes a hop, in either header.
fn hop(header: ForwardedHeader, ip: IpAddr, port: Option<u16>) -> String {
    match (header, ip, port) {
        (ForwardedHeader::XForwardedFor, IpAddr::V6(v6), Some(port)) => format!("[{v6}]:{port}"),
        (ForwardedHeader::XForwardedFor, ip, Some(port)) => format!("{ip}:{port}"),
        (ForwardedHeader::XForwardedFor, ip, None) => ip.to_string(),
        (_, IpAddr::V6(v6), Some(port)) => format!("for=\"[{v6}]:{port}\";proto=https"),
        (_, IpAddr::V6(v6), None) => format!("for=\"[{v6}]\""),
        (_, ip, Some(port)) => format!("for=\"{ip}:{port}\""),
        (_, ip, None) => format!("for={ip};proto=https"),
    }
}

fn header_name(header: ForwardedHeader) -> &'static str {
    match header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        _ => "forwarded",
    }
}

fn any_header() -> impl Strategy<Value = ForwardedHeader> {
    prop_oneof![
        Just(ForwardedHeader::XForwardedFor),
        Just(ForwardedHeader::Forwarded)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn resolve_never_panics(header in any_header(), lines in proptest::collection::vec(header_bytes(), 0..4), peer in any::<IpAddr>()) {
        let mut map = HeaderMap::new();
        for line in &lines {
            if let Ok(value) = HeaderValue::from_bytes(line) {
                map.append(header_name(header), value.clone());
                map.append(header_name(ForwardedHeader::XForwardedFor), value.clone());
                map.append(header_name(ForwardedHeader::Forwarded), value);
            }
        }
        let _ = key(header).resolve(peer, &map);
        let _ = key(header).resolve("10.0.0.1".parse().unwrap(), &map);
        let _ = ClientIp::peer().resolve(peer, &map);
    }

    #[test]
    fn leftmost_spoofing_never_changes_the_client(
        header in any_header(),
        client in untrusted_client(),
        client_port in proptest::option::of(any::<u16>()),
        proxies in proptest::collection::vec(any::<u8>(), 0..3),
        prefix in spoofed_prefix(),
        separate_line in any::<bool>(),
    ) {
        // What the trusted proxies appended: the client, then the inner proxies.
        let mut appended = vec![hop(header, client, client_port)];
        appended.extend(proxies.iter().map(|last| hop(header, IpAddr::V4(Ipv4Addr::new(10, 0, 0, *last)), None)));
        let appended = appended.join(", ");
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let key = key(header);

        let mut honest = HeaderMap::new();
        honest.insert(header_name(header), HeaderValue::from_str(&appended).unwrap());
        let expected = key.resolve(peer, &honest);
        prop_assert_eq!(expected, grouped(client));

        let mut spoofed = HeaderMap::new();
        if separate_line {
            if let Ok(value) = HeaderValue::from_bytes(&prefix) {
                spoofed.append(header_name(header), value);
            }
            spoofed.append(header_name(header), HeaderValue::from_str(&appended).unwrap());
        } else {
            let line = [&prefix[..], b", ", appended.as_bytes()].concat();
            spoofed.insert(header_name(header), HeaderValue::from_bytes(&line).unwrap());
        }
        prop_assert_eq!(key.resolve(peer, &spoofed), expected);
    }

    #[test]
    fn an_untrusted_peer_is_its_own_key_whatever_it_sends(
        header in any_header(),
        peer in untrusted_client(),
        text in header_text(),
    ) {
        let mut map = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&text) {
            map.insert(header_name(header), value);
        }
        let alone = key(header).resolve(peer, &HeaderMap::new());
        prop_assert_eq!(key(header).resolve(peer, &map), alone);
    }
}
