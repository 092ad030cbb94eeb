//! Header hygiene between client and upstream: hop-by-hop removal and X-Forwarded-*.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Request;
use std::net::SocketAddr;

/// The Host of a request: the Host header, or the authority of an absolute or HTTP/2 URI.
pub fn request_host<B>(req: &Request<B>) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str().to_owned());
    }
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
}

/// Removes hop-by-hop headers: Connection and every header it names, Keep-Alive, TE,
/// Transfer-Encoding, Upgrade, and Proxy-*.
///
/// `Trailer` is kept: it is end-to-end (RFC 9110 section 6.6.2; RFC 2616 listed "Trailers" among
/// hop-by-hop headers), and an HTTP/1.1 hop only sends the trailer fields it declares, so removing it
/// would drop the trailers themselves.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in [
        header::CONNECTION,
        header::TE,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HeaderName::from_static("keep-alive"),
    ] {
        h.remove(n);
    }
    let proxy: Vec<HeaderName> = h
        .keys()
        .filter(|k| k.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for n in proxy {
        h.remove(n);
    }
}

/// Sets X-Forwarded-For (appending the client), X-Forwarded-Proto and X-Forwarded-Host.
pub fn set_forwarded(h: &mut HeaderMap, peer: SocketAddr, scheme: &str, host: Option<&str>) {
    let ip = peer.ip().to_string();
    let xff = HeaderName::from_static("x-forwarded-for");
    let prior: Vec<String> = h
        .get_all(&xff)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    let value = if prior.is_empty() {
        ip
    } else {
        format!("{}, {ip}", prior.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(xff, v);
    }
    h.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(if scheme == "https" { "https" } else { "http" }),
    );
    if let Some(v) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        h.insert(HeaderName::from_static("x-forwarded-host"), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "192.0.2.7:5555".parse().unwrap(),
            "http",
            Some("example.com"),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");
    }
}
