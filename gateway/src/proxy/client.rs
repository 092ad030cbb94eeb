//! Who the client is when the gateway sits behind other proxies: a listener names the proxies it
//! trusts (`trusted_proxies`), and a request from one of them has its client taken from the
//! forwarding headers, computed once per request and given to filters and the access log.
//!
//! The rule is the one nginx's `real_ip_recursive` and Envoy's trusted hops apply: walk the
//! listener's client header (`X-Forwarded-For`, or `Forwarded` (RFC 7239) `for=` parameters; only
//! that one, never the other, so a client cannot pick the header the proxies do not write) from the
//! right (the hop nearest to the gateway) and take the first address that is not a trusted proxy;
//! when every hop is trusted, the leftmost. A hop that is not an address (`unknown`, an obfuscated
//! `_id`, a `Forwarded` element without `for=`, a header line that is not text) stops the walk at
//! the trusted hop to its right: nothing further left can be believed. IPv4-mapped IPv6 addresses
//! (and networks) count as IPv4.

#[cfg(test)]
use crate::config::parse_network;
use crate::config::ClientHeader;
use http::header::{HeaderMap, FORWARDED};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

const X_FORWARDED_FOR: &str = "x-forwarded-for";

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    proxies.iter().any(|n| n.contains(&ip))
}

/// An address of a forwarding header: a bare IP, `ip:port`, `[v6]` or `[v6]:port`, quoted or not.
fn hop_address(text: &str) -> Option<IpAddr> {
    let t = text.trim().trim_matches('"');
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    let inner = t.strip_prefix('[')?.split(']').next()?;
    inner.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The hops `header` lists, leftmost first (several header lines are one list). `None` for a hop
/// that is not an address.
fn hops(headers: &HeaderMap, header: ClientHeader) -> Vec<Option<IpAddr>> {
    let mut out = Vec::new();
    let name = match header {
        ClientHeader::XForwardedFor => X_FORWARDED_FOR,
        ClientHeader::Forwarded => FORWARDED.as_str(),
    };
    for line in headers.get_all(name) {
        // A line that is not text is one unreadable hop, in its place: dropping it would let the
        // entries before it pass for the proxy's.
        let Ok(line) = line.to_str() else {
            out.push(None);
            continue;
        };
        for element in line.split(',').filter(|e| !e.trim().is_empty()) {
            out.push(match header {
                ClientHeader::XForwardedFor => hop_address(element),
                ClientHeader::Forwarded => element.split(';').find_map(|pair| {
                    let (name, value) = pair.split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| hop_address(value))?
                }),
            });
        }
    }
    out
}

/// The client of a request that came from `peer`: the peer itself unless it is a trusted proxy,
/// otherwise the address the forwarding headers name (see the module). The port is the peer's when
/// the client is the peer, else 0 (the headers do not carry it).
pub fn client_of(
    peer: SocketAddr,
    headers: &HeaderMap,
    proxies: &[IpNet],
    header: ClientHeader,
) -> SocketAddr {
    if proxies.is_empty() || !trusted(peer.ip(), proxies) {
        return peer;
    }
    let mut client = peer.ip().to_canonical();
    for hop in hops(headers, header).into_iter().rev() {
        match hop {
            Some(ip) if trusted(ip, proxies) => client = ip,
            Some(ip) => return SocketAddr::new(ip, 0),
            None => break,
        }
    }
    if client == peer.ip().to_canonical() {
        return peer;
    }
    SocketAddr::new(client, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| parse_network(n).unwrap()).collect()
    }

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        h
    }

    fn client_by(
        peer: &str,
        list: &[(&str, &str)],
        proxies: &[&str],
        header: ClientHeader,
    ) -> String {
        client_of(
            peer.parse().unwrap(),
            &headers(list),
            &nets(proxies),
            header,
        )
        .to_string()
    }

    fn client(peer: &str, list: &[(&str, &str)], proxies: &[&str]) -> String {
        client_by(peer, list, proxies, ClientHeader::XForwardedFor)
    }

    #[test]
    fn networks_are_addresses_or_cidrs() {
        assert_eq!(
            parse_network("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(parse_network("::1").unwrap().to_string(), "::1/128");
        assert_eq!(
            parse_network("::ffff:10.0.0.0/104").unwrap().to_string(),
            "10.0.0.0/8"
        );
        for bad in ["10.0.0.0/33", "example.com", "10.0.0.1:80", ""] {
            assert!(parse_network(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop_behind_trusted_proxies() {
        let lb = &["10.0.0.0/8"];
        let xff = |v| vec![("x-forwarded-for", v)];
        // Not from a trusted proxy: the headers are not believed.
        assert_eq!(
            client("192.0.2.1:5000", &xff("203.0.113.9"), lb),
            "192.0.2.1:5000"
        );
        assert_eq!(
            client("10.0.0.2:5000", &xff("203.0.113.9"), lb),
            "203.0.113.9:0"
        );
        // A client that forged a leftmost entry gets its own address, not the forged one.
        assert_eq!(
            client("10.0.0.2:5000", &xff("1.2.3.4, 203.0.113.9, 10.0.0.7"), lb),
            "203.0.113.9:0"
        );
        // Several header lines are one list.
        let two = vec![
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "203.0.113.9"),
        ];
        assert_eq!(client("10.0.0.2:5000", &two, lb), "203.0.113.9:0");
        // Every hop trusted: the leftmost; no header: the peer.
        assert_eq!(
            client("10.0.0.2:5000", &xff("10.9.9.9, 10.0.0.7"), lb),
            "10.9.9.9:0"
        );
        assert_eq!(client("10.0.0.2:5000", &[], lb), "10.0.0.2:5000");
        // Garbage stops the walk at the trusted hop to its right.
        assert_eq!(
            client("10.0.0.2:5000", &xff("203.0.113.9, unknown, 10.0.0.7"), lb),
            "10.0.0.7:0"
        );
        // A line that is not text stops the walk in its place (the forged line before it is not
        // believed).
        let odd = vec![
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "203.0.113.9\u{80}"),
        ];
        assert_eq!(client("10.0.0.2:5000", &odd, lb), "10.0.0.2:5000");
        // The listener reads one header: `Forwarded` sent by the client is not looked at.
        assert_eq!(
            client("10.0.0.2:5000", &[("forwarded", "for=1.2.3.4")], lb),
            "10.0.0.2:5000"
        );
        // IPv6 and IPv4-mapped peers and hops.
        assert_eq!(
            client("[::ffff:10.0.0.2]:5000", &xff("2001:db8::5"), lb),
            "[2001:db8::5]:0"
        );
        assert_eq!(
            client("10.0.0.2:5000", &xff("::ffff:203.0.113.9"), lb),
            "203.0.113.9:0"
        );
    }

    #[test]
    fn forwarded_is_read_when_the_listener_says_so() {
        let lb = &["10.0.0.0/8"];
        let fwd = |peer, v| client_by(peer, &[("forwarded", v)], lb, ClientHeader::Forwarded);
        assert_eq!(
            fwd(
                "10.0.0.2:1",
                "for=198.51.100.17;proto=https, for=\"[2001:db8::1]:4711\""
            ),
            "[2001:db8::1]:0"
        );
        assert_eq!(
            fwd("10.0.0.2:1", "For=\"198.51.100.17:80\""),
            "198.51.100.17:0"
        );
        assert_eq!(fwd("10.0.0.2:1", "for=_hidden, for=10.0.0.9"), "10.0.0.9:0");
        // An element without `for=` stops the walk.
        assert_eq!(
            fwd("10.0.0.2:1", "for=198.51.100.17, by=10.0.0.9;proto=https"),
            "10.0.0.2:1"
        );
        // X-Forwarded-For is not looked at.
        let xff = [("x-forwarded-for", "203.0.113.9")];
        assert_eq!(
            client_by("10.0.0.2:1", &xff, lb, ClientHeader::Forwarded),
            "10.0.0.2:1"
        );
    }
}
