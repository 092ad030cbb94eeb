//! The route's config: read from JSON, checked, and compiled into [`IpRestriction`], the policy the
//! handler applies. Every error names the field it is about.

use ipnet::{IpNet, Ipv4Net};
use plugin_config::{list, object, string, Fields};
use serde_json::Value;
use std::net::IpAddr;

/// `status` when the config does not set it.
pub const DEFAULT_STATUS: u16 = 403;

/// `message` when the config does not set it.
pub const DEFAULT_MESSAGE: &str = "Your IP address is not allowed";

/// The compiled policy of one route.
#[derive(Debug)]
pub struct IpRestriction {
    /// Networks a client must be in (when not empty), IPv4-mapped ones written as IPv4.
    pub allow: Vec<IpNet>,
    /// Networks a client must not be in; they win over `allow`.
    pub deny: Vec<IpNet>,
    /// The status of a refusal.
    pub status: u16,
    /// The `message` of a refusal's body.
    pub message: String,
}

const FIELDS: [&str; 4] = ["allow", "deny", "status", "message"];

/// Reads and checks the route's config (JSON, as the gateway passes it).
pub fn parse(config: &str) -> Result<IpRestriction, String> {
    let m = object(config, &FIELDS, "allow, deny or both")?;
    if !m.contains_key("allow") && !m.contains_key("deny") {
        return Err(
            "allow: missing; list the addresses or CIDRs allowed (allow), \
                    refused (deny), or both"
                .into(),
        );
    }
    let status = match m.get("status") {
        None => DEFAULT_STATUS,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(s @ 400..=599) => s as u16,
            _ => return Err(format!("status: expected 400 to 599, not {n}")),
        },
        Some(other) => return Err(format!("status: expected a status code, not {other}")),
    };
    let message = string(&m, "message")?
        .unwrap_or(DEFAULT_MESSAGE)
        .to_string();
    Ok(IpRestriction {
        allow: networks(&m, "allow")?,
        deny: networks(&m, "deny")?,
        status,
        message,
    })
}

/// A list of addresses and CIDRs (absent: empty; given: not empty).
fn networks(m: &Fields, field: &str) -> Result<Vec<IpNet>, String> {
    if matches!(m.get(field), Some(Value::Array(items)) if items.is_empty()) {
        return Err(format!(
            "{field}: empty; list addresses or CIDRs, or leave the field out"
        ));
    }
    list(m, field, "addresses or CIDRs", network)
}

/// An address (`10.0.0.1`, `2001:db8::1`: that address alone) or a CIDR (`10.0.0.0/8`). A CIDR
/// with bits set past its prefix (`10.0.0.1/8`) is refused, as it may mean the network or a typo
/// of the address. An IPv4-mapped IPv6 entry (`::ffff:10.0.0.0/104`) is its IPv4 network.
fn network(s: &str) -> Result<IpNet, String> {
    let not = || format!("\"{s}\" is not an address or CIDR");
    let (addr, len) = match s.split_once('/') {
        None => (s, None),
        Some((addr, len)) => (addr, Some(len)),
    };
    let addr: IpAddr = addr.parse().map_err(|_| not())?;
    let net = match len {
        None => IpNet::from(addr),
        Some(len) => {
            let len =
                (!len.is_empty() && len.len() <= 3 && len.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| len.parse::<u8>().ok())
                    .flatten()
                    .ok_or_else(not)?;
            IpNet::new(addr, len).map_err(|_| not())?
        }
    };
    if net.addr() != net.network() {
        return Err(format!(
            "\"{s}\" has bits set past its /{}; write the network, \"{}\", or the address alone",
            net.prefix_len(),
            net.trunc()
        ));
    }
    Ok(unmapped(net))
}

/// `net` as an IPv4 network when it lies within the IPv4-mapped range `::ffff:0:0/96`.
fn unmapped(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(config: &str) -> String {
        parse(config).expect_err("the config should be refused")
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn defaults() {
        let c = parse(r#"{"allow": ["127.0.0.1"]}"#).unwrap();
        assert_eq!(c.allow, nets(&["127.0.0.1/32"]));
        assert!(c.deny.is_empty());
        assert_eq!(c.status, 403);
        assert_eq!(c.message, "Your IP address is not allowed");
    }

    #[test]
    fn fields() {
        let c = parse(
            r#"{"allow": ["10.0.0.0/8", "2001:db8::/32", "::1", "0.0.0.0/0"],
                "deny": ["10.1.0.0/16", "::ffff:192.168.0.0/112", "::ffff:1.2.3.4"],
                "status": 451, "message": "not from there"}"#,
        )
        .unwrap();
        assert_eq!(
            c.allow,
            nets(&["10.0.0.0/8", "2001:db8::/32", "::1/128", "0.0.0.0/0"])
        );
        assert_eq!(
            c.deny,
            nets(&["10.1.0.0/16", "192.168.0.0/16", "1.2.3.4/32"])
        );
        assert_eq!((c.status, c.message.as_str()), (451, "not from there"));
        let c = parse(r#"{"deny": ["::/0", "::ffff:0:0/96"], "status": 400}"#).unwrap();
        assert!(c.allow.is_empty());
        assert_eq!(c.deny, nets(&["::/0", "0.0.0.0/0"]));
    }

    #[test]
    fn refusals_name_the_field() {
        for (config, field) in [
            ("", "no config"),
            ("[\"10.0.0.0/8\"]", "config"),
            ("{}", "allow: missing"),
            (r#"{"status": 403}"#, "allow: missing"),
            (r#"{"allow": ["::1"], "whitelist": []}"#, "whitelist: unknown field"),
            (r#"{"allow": []}"#, "allow: empty"),
            (r#"{"allow": ["::1"], "deny": []}"#, "deny: empty"),
            (r#"{"allow": "10.0.0.0/8"}"#, "allow: expected a list"),
            (r#"{"deny": null}"#, "deny: expected a list"),
            (r#"{"allow": ["::1", 10]}"#, "allow[1]: expected a string"),
            (
                r#"{"deny": ["::1", "10.0.0.0/8", "10.0.0.0/33"]}"#,
                "deny[2]: \"10.0.0.0/33\" is not an address or CIDR",
            ),
            (
                r#"{"allow": ["2001:db8::/129"]}"#,
                "allow[0]: \"2001:db8::/129\" is not",
            ),
            (r#"{"allow": ["localhost"]}"#, "allow[0]: \"localhost\" is not"),
            (r#"{"allow": ["10.0.0"]}"#, "allow[0]:"),
            (r#"{"allow": ["010.0.0.1"]}"#, "allow[0]:"),
            (r#"{"allow": [" 10.0.0.1"]}"#, "allow[0]:"),
            (r#"{"allow": ["10.0.0.0/"]}"#, "allow[0]:"),
            (r#"{"allow": ["10.0.0.0/+8"]}"#, "allow[0]:"),
            (r#"{"allow": ["10.0.0.0/8/8"]}"#, "allow[0]:"),
            (r#"{"allow": ["10.0.0.0/0008"]}"#, "allow[0]:"),
            (r#"{"allow": ["fe80::1%eth0"]}"#, "allow[0]:"),
            (r#"{"allow": ["[::1]"]}"#, "allow[0]:"),
            (r#"{"allow": ["10.0.0.1:80"]}"#, "allow[0]:"),
            (
                r#"{"allow": ["10.1.2.3/8"]}"#,
                "allow[0]: \"10.1.2.3/8\" has bits set past its /8; write the network, \"10.0.0.0/8\"",
            ),
            (r#"{"deny": ["2001:db8::1/32"]}"#, "deny[0]: \"2001:db8::1/32\" has bits"),
            (r#"{"allow": ["::1"], "status": 200}"#, "status: expected 400 to 599"),
            (r#"{"allow": ["::1"], "status": 600}"#, "status:"),
            (r#"{"allow": ["::1"], "status": 403.5}"#, "status:"),
            (r#"{"allow": ["::1"], "status": -403}"#, "status:"),
            (r#"{"allow": ["::1"], "status": "403"}"#, "status: expected a status code"),
            (r#"{"allow": ["::1"], "message": 1}"#, "message: expected a string"),
        ] {
            let e = err(config);
            assert!(e.starts_with(field), "{config}: {e}");
        }
    }
}
