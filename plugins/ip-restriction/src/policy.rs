//! What the policy decides: whether a client address may go on, and the answer when it may not. Pure
//! functions of the config and the request's facts, so the handler in `lib.rs` only reads them.

use crate::config::IpRestriction;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The stable code in the body of a refusal.
pub const DENIED_CODE: &str = "ip_denied";

/// What the policy decides about a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The request goes on.
    Allow,
    /// Refused: the client is in this `deny` entry.
    Denied(IpNet),
    /// Refused: `allow` is given and the client is in none of its entries.
    NotAllowed,
    /// Refused: the client's address is not an address (not expected from the gateway).
    Unknown,
}

impl IpRestriction {
    /// The verdict on the client at `client_address` (`ip:port`, `[ipv6]:port`, or an address
    /// alone). A `deny` entry wins over an `allow` entry; an unreadable address is refused.
    pub fn verdict(&self, client_address: &str) -> Verdict {
        let Some(ip) = client_ip(client_address) else {
            return Verdict::Unknown;
        };
        if let Some(net) = self.deny.iter().find(|n| n.contains(&ip)) {
            return Verdict::Denied(*net);
        }
        if self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip)) {
            Verdict::Allow
        } else {
            Verdict::NotAllowed
        }
    }

    /// The refusal: `status`, `content-type: application/json`, `x-request-id`, and the body
    /// `{"error":"ip_denied","message":...,"request_id":...}` (the gateway's error body shape).
    pub fn refusal(&self, request_id: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let body = serde_json::json!({
            "error": DENIED_CODE,
            "message": self.message,
            "request_id": request_id,
        });
        (
            self.status,
            vec![
                ("content-type".into(), "application/json".into()),
                ("x-request-id".into(), request_id.into()),
            ],
            format!("{body}\n").into_bytes(),
        )
    }
}

/// The IP of an `ip:port`, `[ipv6]:port` or bare address; an IPv4-mapped IPv6 address
/// (`::ffff:10.0.0.1`, as a dual-stack socket reports IPv4 clients) as its IPv4 address.
fn client_ip(address: &str) -> Option<IpAddr> {
    let ip = match address.parse::<SocketAddr>() {
        Ok(a) => a.ip(),
        Err(_) => address.parse::<IpAddr>().ok()?,
    };
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn client_ips() {
        let ip = |s: &str| client_ip(s).map(|ip| ip.to_string());
        assert_eq!(ip("10.1.2.3:5000").as_deref(), Some("10.1.2.3"));
        assert_eq!(ip("[2001:db8::1]:443").as_deref(), Some("2001:db8::1"));
        assert_eq!(ip("[::ffff:10.1.2.3]:443").as_deref(), Some("10.1.2.3"));
        assert_eq!(ip("[::ffff:a01:203]:443").as_deref(), Some("10.1.2.3"));
        assert_eq!(ip("10.1.2.3").as_deref(), Some("10.1.2.3"));
        assert_eq!(ip("::1").as_deref(), Some("::1"));
        // IPv4-compatible (`::a.b.c.d`, deprecated) is an IPv6 address, not an IPv4 one.
        assert_eq!(ip("[::10.1.2.3]:1").as_deref(), Some("::a01:203"));
        for bad in [
            "",
            "unix:/run/gw.sock",
            "host:80",
            "[fe80::1%eth0]:80",
            "10.1.2.3:x",
        ] {
            assert_eq!(ip(bad), None, "{bad}");
        }
    }

    #[test]
    fn allow_lets_in_only_its_networks() {
        let p = parse(r#"{"allow": ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]}"#).unwrap();
        for client in [
            "10.0.0.0:1",
            "10.255.255.255:1",
            "192.168.1.7:1",
            "[2001:db8::1]:1",
            "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:1",
            "[::ffff:10.9.8.7]:1",
        ] {
            assert_eq!(p.verdict(client), Verdict::Allow, "{client}");
        }
        for client in [
            "11.0.0.0:1",
            "9.255.255.255:1",
            "192.168.1.8:1",
            "127.0.0.1:1",
            "[2001:db9::1]:1",
            "[::1]:1",
            "[::ffff:11.0.0.1]:1",
        ] {
            assert_eq!(p.verdict(client), Verdict::NotAllowed, "{client}");
        }
    }

    #[test]
    fn deny_refuses_only_its_networks() {
        let p = parse(r#"{"deny": ["127.0.0.0/8", "::1"]}"#).unwrap();
        assert_eq!(
            p.verdict("127.0.0.1:40000"),
            Verdict::Denied(net("127.0.0.0/8"))
        );
        assert_eq!(
            p.verdict("[::ffff:127.0.0.1]:40000"),
            Verdict::Denied(net("127.0.0.0/8"))
        );
        assert_eq!(p.verdict("[::1]:40000"), Verdict::Denied(net("::1/128")));
        assert_eq!(p.verdict("128.0.0.1:40000"), Verdict::Allow);
        assert_eq!(p.verdict("[::2]:40000"), Verdict::Allow);
    }

    #[test]
    fn deny_wins_over_allow() {
        let p = parse(r#"{"allow": ["::1", "127.0.0.0/8"], "deny": ["127.0.0.1"]}"#).unwrap();
        assert_eq!(
            p.verdict("127.0.0.1:40000"),
            Verdict::Denied(net("127.0.0.1/32"))
        );
        assert_eq!(p.verdict("127.0.0.2:40000"), Verdict::Allow);
        assert_eq!(p.verdict("[::1]:40000"), Verdict::Allow);
        // The same entry in both lists: denied.
        let p = parse(r#"{"allow": ["10.0.0.0/8"], "deny": ["10.0.0.0/8"]}"#).unwrap();
        assert_eq!(p.verdict("10.0.0.1:1"), Verdict::Denied(net("10.0.0.0/8")));
    }

    #[test]
    fn ipv4_mapped_clients_and_entries_are_ipv4() {
        // A mapped entry is an IPv4 entry, so it matches plain IPv4 clients too.
        let p = parse(r#"{"allow": ["::ffff:10.0.0.0/104"]}"#).unwrap();
        assert_eq!(p.verdict("10.1.1.1:1"), Verdict::Allow);
        assert_eq!(p.verdict("[::ffff:10.1.1.1]:1"), Verdict::Allow);
        assert_eq!(p.verdict("11.1.1.1:1"), Verdict::NotAllowed);
        // IPv6 entries match IPv6 clients only: `::/0` is every IPv6 client, no IPv4 one.
        let p = parse(r#"{"deny": ["::/0"]}"#).unwrap();
        assert_eq!(p.verdict("[::ffff:10.1.1.1]:1"), Verdict::Allow);
        assert_eq!(p.verdict("10.1.1.1:1"), Verdict::Allow);
        assert_eq!(p.verdict("[2001:db8::1]:1"), Verdict::Denied(net("::/0")));
    }

    #[test]
    fn everything_and_nothing() {
        let p = parse(r#"{"allow": ["0.0.0.0/0", "::/0"]}"#).unwrap();
        assert_eq!(p.verdict("203.0.113.9:1"), Verdict::Allow);
        assert_eq!(p.verdict("[2001:db8::9]:1"), Verdict::Allow);
        let p = parse(r#"{"deny": ["0.0.0.0/0"]}"#).unwrap();
        assert!(matches!(p.verdict("203.0.113.9:1"), Verdict::Denied(_)));
        assert_eq!(p.verdict("[2001:db8::9]:1"), Verdict::Allow);
    }

    #[test]
    fn an_unreadable_client_address_is_refused() {
        for config in [r#"{"allow": ["0.0.0.0/0"]}"#, r#"{"deny": ["10.0.0.0/8"]}"#] {
            let p = parse(config).unwrap();
            assert_eq!(p.verdict(""), Verdict::Unknown, "{config}");
            assert_eq!(p.verdict("unix:/run/gw.sock"), Verdict::Unknown, "{config}");
        }
    }

    #[test]
    fn the_refusal() {
        let p = parse(r#"{"allow": ["10.0.0.0/8"]}"#).unwrap();
        let (status, headers, body) = p.refusal("7f3a");
        assert_eq!(status, 403);
        assert_eq!(
            headers,
            [
                ("content-type".to_string(), "application/json".to_string()),
                ("x-request-id".to_string(), "7f3a".to_string()),
            ]
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": "ip_denied", "message": "Your IP address is not allowed", "request_id": "7f3a"})
        );
        let p =
            parse(r#"{"deny": ["::1"], "status": 404, "message": "no \"such\" page"}"#).unwrap();
        let (status, _, body) = p.refusal("1");
        assert_eq!(status, 404);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["message"], "no \"such\" page");
    }
}
