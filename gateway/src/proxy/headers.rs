//! Header hygiene between client and upstream: hop-by-hop removal and X-Forwarded-*.

pub use crate::framing::strip_hop_by_hop;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The Host of a request as a header value, without copying: the Host header, which
/// `crate::canonical` made the request's one authority before routing (a filter may have changed it
/// since), else the URI's authority.
pub fn request_host_value(uri: &http::Uri, host: Option<&HeaderValue>) -> Option<HeaderValue> {
    if let Some(h) = host.filter(|h| h.to_str().is_ok()) {
        return Some(h.clone());
    }
    uri.authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// A client's address as an X-Forwarded-For entry: made once per connection, and shared (not
/// copied) by the requests it carries.
pub fn forwarded_for(ip: std::net::IpAddr) -> HeaderValue {
    HeaderValue::try_from(ip.to_string()).expect("an IP address is a header value")
}

/// Sets X-Forwarded-For (appending `client`, from [`forwarded_for`]), X-Forwarded-Proto and
/// X-Forwarded-Host.
pub fn set_forwarded(
    h: &mut HeaderMap,
    client: &HeaderValue,
    scheme: &str,
    host: Option<&HeaderValue>,
) {
    // One lookup of X-Forwarded-For for reading the prior values and writing the new one.
    match h.entry(X_FORWARDED_FOR) {
        http::header::Entry::Occupied(mut prior) => {
            let mut value: Vec<u8> = Vec::with_capacity(48);
            for p in prior.iter() {
                if let Ok(p) = p.to_str() {
                    value.extend_from_slice(p.as_bytes());
                    value.extend_from_slice(b", ");
                }
            }
            value.extend_from_slice(client.as_bytes());
            if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
                prior.insert(v);
            }
        }
        http::header::Entry::Vacant(e) => {
            e.insert(client.clone());
        }
    }
    h.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if scheme == "https" { "https" } else { "http" }),
    );
    if let Some(v) = host {
        h.insert(X_FORWARDED_HOST, v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;
    use std::net::SocketAddr;

    #[test]
    fn hop_by_hop_and_forwarded() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "basic x"),
            ("proxy-connection", "keep-alive"),
            ("x-keep", "yes"),
            ("x-forwarded-for", "10.0.0.1"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, vec!["trailer", "x-forwarded-for", "x-keep"]);
        set_forwarded(
            &mut h,
            &forwarded_for("192.0.2.7".parse().unwrap()),
            "http",
            Some(&HeaderValue::from_static("example.com")),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");
    }

    #[test]
    fn connection_tokens_any_case_and_nothing_to_strip() {
        let mut h = HeaderMap::new();
        h.append(
            header::CONNECTION,
            HeaderValue::from_static(" X-Secret ,, bad token"),
        );
        h.append(header::CONNECTION, HeaderValue::from_static("Close"));
        h.append(
            HeaderName::from_static("x-secret"),
            HeaderValue::from_static("1"),
        );
        h.append(
            HeaderName::from_static("close"),
            HeaderValue::from_static("1"),
        );
        h.append(header::HOST, HeaderValue::from_static("a"));
        h.append(header::CONNECTION, HeaderValue::from_static("host"));
        strip_hop_by_hop(&mut h);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["host"]
        );

        let mut h = HeaderMap::new();
        h.append(header::HOST, HeaderValue::from_static("a"));
        h.append(
            HeaderName::from_static("x-proxy"),
            HeaderValue::from_static("1"),
        );
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }

    #[test]
    fn forwarded_for_addresses() {
        for (peer, prior, want) in [
            ("0.0.0.0:1", None, "0.0.0.0"),
            ("10.99.100.255:1", None, "10.99.100.255"),
            ("127.0.0.1:1", Some(""), ", 127.0.0.1"),
            ("[2001:db8::1]:1", Some("1.2.3.4"), "1.2.3.4, 2001:db8::1"),
        ] {
            let mut h = HeaderMap::new();
            if let Some(p) = prior {
                h.append("x-forwarded-for", HeaderValue::from_static(p));
            }
            let peer: SocketAddr = peer.parse().unwrap();
            set_forwarded(&mut h, &forwarded_for(peer.ip()), "https", None);
            assert_eq!(h["x-forwarded-for"], want, "{peer}");
            assert_eq!(h["x-forwarded-proto"], "https");
            assert!(!h.contains_key("x-forwarded-host"));
        }
    }
}
