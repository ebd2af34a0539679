//! One entry of a forwarding header: an `X-Forwarded-For` address, or the `for` node of an
//! RFC 7239 `Forwarded` element.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One `X-Forwarded-For` entry: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:443`.
pub(super) fn parse_x_forwarded_for_entry(entry: &str) -> Option<IpAddr> {
    parse_node(entry.trim())
}

/// One RFC 7239 `Forwarded` element (`for=...;proto=...`): its `for` node.
pub(super) fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
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
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
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
}
