//! The key a request's counters live under: the scope (the route, or the config's `group`), then
//! each part of `by` for this request. Every part is written length-first (`5:alice`), so no value
//! can pass for two parts; a part longer than [`MAX_PART_LEN`] is written as `#` and its SHA-256
//! instead, so that a key stays well under 1 KiB whatever a client sends.

use crate::config::{KeyPart, RateLimiting};
use sha2::{Digest, Sha256};
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

/// Parts longer than this many bytes are hashed.
pub const MAX_PART_LEN: usize = 64;

/// What the key is made of, as the filter gathers it for one request.
pub trait Request {
    /// The route's name.
    fn route(&self) -> String;
    /// The client's address (`ip:port`) as the gateway resolved it.
    fn client_address(&self) -> String;
    /// The authenticated consumer's name, if any.
    fn consumer(&self) -> Option<String>;
    /// The first value of a header, if any.
    fn header(&self, name: &str) -> Option<String>;
    /// The path, without the query.
    fn path(&self) -> String;
}

/// The request's key (`v1|r|3:api|c|5:alice`).
pub fn base(config: &RateLimiting, req: &impl Request) -> String {
    let mut key = String::from("v1");
    match &config.group {
        Some(g) => push(&mut key, 'g', g),
        None => push(&mut key, 'r', &req.route()),
    }
    for part in &config.by {
        match part {
            KeyPart::Consumer => match req.consumer() {
                Some(name) => push(&mut key, 'c', &name),
                None => push(&mut key, 'i', &client_ip(&req.client_address())),
            },
            KeyPart::Ip => push(&mut key, 'i', &client_ip(&req.client_address())),
            KeyPart::Header(name) => match req.header(name) {
                Some(value) => push(&mut key, 'h', &value),
                None => push(&mut key, 'i', &client_ip(&req.client_address())),
            },
            KeyPart::Path => push(&mut key, 'p', &req.path()),
            KeyPart::Route => push(&mut key, 'r', &req.route()),
        }
    }
    key
}

fn push(key: &mut String, kind: char, value: &str) {
    key.push('|');
    key.push(kind);
    key.push('|');
    if value.len() <= MAX_PART_LEN {
        let _ = write!(key, "{}:{value}", value.len());
    } else {
        key.push('#');
        for b in Sha256::digest(value.as_bytes()) {
            let _ = write!(key, "{b:02x}");
        }
    }
}

/// The IP of an `ip:port`, `[ipv6]:port` or bare address, an IPv4-mapped IPv6 address as its IPv4
/// address (as ip-restriction reads it); anything else as it is.
pub fn client_ip(address: &str) -> String {
    let ip = match address.parse::<SocketAddr>() {
        Ok(a) => a.ip(),
        Err(_) => match address.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => return address.to_string(),
        },
    };
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    #[derive(Default)]
    struct Fake {
        consumer: Option<String>,
        header: Option<String>,
        path: String,
    }

    impl Request for Fake {
        fn route(&self) -> String {
            "api".into()
        }
        fn client_address(&self) -> String {
            "[::ffff:10.0.0.7]:4711".into()
        }
        fn consumer(&self) -> Option<String> {
            self.consumer.clone()
        }
        fn header(&self, name: &str) -> Option<String> {
            assert_eq!(name, "x-tenant");
            self.header.clone()
        }
        fn path(&self) -> String {
            self.path.clone()
        }
    }

    fn key(by: &str, req: &Fake) -> String {
        let c = parse(&format!(
            r#"{{"limits": [{{"per": "minute", "limit": 1}}], "by": {by}}}"#
        ))
        .unwrap();
        base(&c, req)
    }

    #[test]
    fn parts_and_fallbacks() {
        let alice = Fake {
            consumer: Some("alice".into()),
            header: Some("t|1".into()),
            path: "/items".into(),
        };
        let nobody = Fake::default();
        assert_eq!(key(r#""consumer""#, &alice), "v1|r|3:api|c|5:alice");
        assert_eq!(
            key(r#""consumer""#, &nobody),
            "v1|r|3:api|i|8:10.0.0.7",
            "no consumer: the client IP"
        );
        assert_eq!(key(r#""header:X-Tenant""#, &alice), "v1|r|3:api|h|3:t|1");
        assert_eq!(
            key(r#""header:x-tenant""#, &nobody),
            "v1|r|3:api|i|8:10.0.0.7"
        );
        assert_eq!(
            key(r#"["route", "path", "ip"]"#, &alice),
            "v1|r|3:api|r|3:api|p|6:/items|i|8:10.0.0.7"
        );
        let c = parse(r#"{"limits": [{"per": "minute", "limit": 1}], "group": "g1", "by": "ip"}"#)
            .unwrap();
        assert_eq!(base(&c, &alice), "v1|g|2:g1|i|8:10.0.0.7");
    }

    #[test]
    fn long_parts_are_hashed() {
        let long = Fake {
            consumer: Some("x".repeat(10_000)),
            header: Some("é".repeat(33)),
            path: format!("/{}", "a".repeat(MAX_PART_LEN - 1)),
        };
        let k = key(r#"["consumer", "header:x-tenant", "path"]"#, &long);
        assert!(k.len() < 300, "{k}");
        let parts: Vec<&str> = k.split('|').collect();
        assert_eq!(parts[4].len(), 65);
        assert!(parts[4].starts_with('#'));
        assert!(parts[6].starts_with('#'), "33 characters, 66 bytes");
        assert_eq!(parts[8], format!("64:/{}", "a".repeat(63)));
    }

    #[test]
    fn client_ips() {
        assert_eq!(client_ip("127.0.0.1:80"), "127.0.0.1");
        assert_eq!(client_ip("[2001:db8::1]:80"), "2001:db8::1");
        assert_eq!(client_ip("::ffff:1.2.3.4"), "1.2.3.4");
        assert_eq!(client_ip("unix"), "unix");
    }
}
