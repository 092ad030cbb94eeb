//! Who the client is when the gateway sits behind other proxies: a listener names the proxies it
//! trusts (`trusted_proxies`), and a request from one of them has its client taken from the
//! forwarding headers, computed once per request and given to filters and the access log.
//!
//! The rule is the one nginx's `real_ip_recursive` and Envoy's trusted hops apply: walk
//! `X-Forwarded-For` from the right (the hop nearest to the gateway) and take the first address that
//! is not a trusted proxy; when every hop is trusted, the leftmost. Without `X-Forwarded-For`,
//! `Forwarded` (RFC 7239) `for=` parameters are read the same way. A hop that is not an address
//! (`unknown`, an obfuscated `_id`, garbage) stops the walk at the trusted hop to its right: nothing
//! further left can be believed. IPv4-mapped IPv6 addresses count as their IPv4 address.

use http::header::{HeaderMap, FORWARDED};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// An address (`10.0.0.1`, `::1`) or a network (`10.0.0.0/8`) of a `trusted_proxies` list.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("`{text}` is not an IP address or a CIDR (`10.0.0.0/8`, `::1`)"))
}

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

/// The hops a request's forwarding headers list, leftmost first: `X-Forwarded-For`, else the `for=`
/// parameters of `Forwarded`. `None` for a hop that is not an address.
fn hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let xff: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|h| !h.trim().is_empty())
        .collect();
    if !xff.is_empty() {
        return xff.into_iter().map(hop_address).collect();
    }
    headers
        .get_all(FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| hop_address(value))
            })
        })
        .collect()
}

/// The client of a request that came from `peer`: the peer itself unless it is a trusted proxy,
/// otherwise the address the forwarding headers name (see the module). The port is the peer's when
/// the client is the peer, else 0 (the headers do not carry it).
pub fn client_of(peer: SocketAddr, headers: &HeaderMap, proxies: &[IpNet]) -> SocketAddr {
    if proxies.is_empty() || !trusted(peer.ip(), proxies) {
        return peer;
    }
    let mut client = peer.ip().to_canonical();
    for hop in hops(headers).into_iter().rev() {
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

    fn client(peer: &str, headers: &[(&str, &str)], proxies: &[&str]) -> String {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        client_of(peer.parse().unwrap(), &h, &nets(proxies)).to_string()
    }

    #[test]
    fn networks_are_addresses_or_cidrs() {
        assert_eq!(
            parse_network("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(parse_network("::1").unwrap().to_string(), "::1/128");
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
    fn forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let lb = &["10.0.0.0/8"];
        let fwd = |v| vec![("forwarded", v)];
        assert_eq!(
            client(
                "10.0.0.2:1",
                &fwd("for=198.51.100.17;proto=https, for=\"[2001:db8::1]:4711\""),
                lb
            ),
            "[2001:db8::1]:0"
        );
        assert_eq!(
            client("10.0.0.2:1", &fwd("For=\"198.51.100.17:80\""), lb),
            "198.51.100.17:0"
        );
        assert_eq!(
            client("10.0.0.2:1", &fwd("for=_hidden, for=10.0.0.9"), lb),
            "10.0.0.9:0"
        );
        // X-Forwarded-For wins when both are sent.
        let both = vec![
            ("forwarded", "for=198.51.100.17"),
            ("x-forwarded-for", "203.0.113.9"),
        ];
        assert_eq!(client("10.0.0.2:1", &both, lb), "203.0.113.9:0");
    }
}
