//! The headers that frame a message or a connection. The gateway decides them from the body it
//! really sends and the connection it keeps, never from what a client, a backend, a filter or a
//! config says:
//!
//! - hop-by-hop headers of a message passed on (a proxied request or response, a filter's callout)
//!   go: [`strip_hop_by_hop`];
//! - a head that a filter or the gateway made (a local reply, a response the filters changed)
//!   loses the framing headers it was given, and hyper frames the body that is sent:
//!   [`strip_framing`]. A `content-length: 0` on an 11-byte body would otherwise desync the
//!   keep-alive connection (the client reads the 11 bytes as the start of the next response).

use http::header::{self, HeaderMap, HeaderName};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The headers that frame a message or its connection, which only the gateway writes.
pub const FRAMING: [HeaderName; 7] = [
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::UPGRADE,
    header::TE,
];

/// Whether `name` is one of [`FRAMING`].
pub fn is_framing(name: &HeaderName) -> bool {
    FRAMING.contains(name)
}

/// Removes what a plugin's callout request may not carry: its hop-by-hop headers, as on the main
/// request ([`strip_hop_by_hop`]), and `content-length` (the gateway frames the body it sends).
pub fn strip_for_callout(h: &mut HeaderMap) {
    strip_hop_by_hop(h);
    h.remove(header::CONTENT_LENGTH);
}

/// Removes the [`FRAMING`] headers from a head the gateway is about to send with a body it frames
/// itself.
pub fn strip_framing(h: &mut HeaderMap) {
    h.remove(header::CONTENT_LENGTH);
    strip_connection_framing(h);
}

/// Removes the [`FRAMING`] headers but `content-length` (which the caller settles): the same one
/// pass over the names as [`strip_hop_by_hop`], and a lookup only for those present (almost never
/// any). Other `proxy-*` headers stay (a filter's `407` may carry `proxy-authenticate`).
pub fn strip_connection_framing(h: &mut HeaderMap) {
    let found = hop_headers(h);
    if found == 0 {
        return;
    }
    remove_fixed(h, found);
    if found & HOP_PROXY != 0 {
        h.remove(PROXY_CONNECTION);
    }
}

const HOP_CONNECTION: u8 = 1;
const HOP_TE: u8 = 2;
const HOP_TRANSFER_ENCODING: u8 = 4;
const HOP_UPGRADE: u8 = 8;
const HOP_KEEP_ALIVE: u8 = 16;
const HOP_PROXY: u8 = 32;

/// Which of the headers that are hop-by-hop whatever the Connection header says `n` is (a `HOP_*`
/// bit, or 0).
fn hop_bit(n: &HeaderName) -> u8 {
    if *n == header::CONNECTION {
        HOP_CONNECTION
    } else if *n == header::TE {
        HOP_TE
    } else if *n == header::TRANSFER_ENCODING {
        HOP_TRANSFER_ENCODING
    } else if *n == header::UPGRADE {
        HOP_UPGRADE
    } else if *n == KEEP_ALIVE {
        HOP_KEEP_ALIVE
    } else if n.as_str().starts_with("proxy-") {
        HOP_PROXY
    } else {
        0
    }
}

/// The `HOP_*` bits of the headers of `h`: one pass over the names.
fn hop_headers(h: &HeaderMap) -> u8 {
    h.keys().fold(0u8, |acc, k| acc | hop_bit(k))
}

/// The hop-by-hop headers of fixed names, with their `HOP_*` bits.
static FIXED: [(u8, HeaderName); 5] = [
    (HOP_CONNECTION, header::CONNECTION),
    (HOP_TE, header::TE),
    (HOP_TRANSFER_ENCODING, header::TRANSFER_ENCODING),
    (HOP_UPGRADE, header::UPGRADE),
    (HOP_KEEP_ALIVE, KEEP_ALIVE),
];

/// Removes the hop-by-hop headers of fixed names among `found` (`HOP_*` bits).
fn remove_fixed(h: &mut HeaderMap, found: u8) {
    for (bit, name) in &FIXED {
        if found & bit != 0 {
            h.remove(name);
        }
    }
}

/// Removes the headers Connection names. Tokens are looked up without copying; tokens that are not
/// valid header names cannot name a header and are skipped, `keep-alive` is removed by the callers,
/// and `Host` is never hop-by-hop (the upstream request always carries one).
fn remove_named_by_connection(h: &mut HeaderMap) {
    let mut named: Vec<HeaderName> = Vec::new();
    for v in h.get_all(header::CONNECTION) {
        for token in v.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if token.is_empty()
                || token.eq_ignore_ascii_case(b"keep-alive")
                || token.eq_ignore_ascii_case(b"host")
            {
                continue;
            }
            let Ok(token) = std::str::from_utf8(token) else {
                continue;
            };
            if h.contains_key(token) {
                if let Ok(n) = HeaderName::from_bytes(token.as_bytes()) {
                    named.push(n);
                }
            }
        }
    }
    for n in named {
        h.remove(n);
    }
}

/// Removes what a client's `Connection` header makes hop-by-hop: the headers it names, itself and
/// `Keep-Alive`. Run on the client's request before the route's filters and header rules, so a
/// client cannot name a header they set and have it removed on the way upstream. The other
/// hop-by-hop headers (TE, Transfer-Encoding, Upgrade, Proxy-*) stay for the filters to see (basic-auth
/// reads `Proxy-Authorization`, ext-auth tells a chunked body by `Transfer-Encoding`) and are removed
/// when the request is forwarded ([`strip_hop_by_hop`]).
pub fn strip_connection(h: &mut HeaderMap) {
    if !h.contains_key(header::CONNECTION) {
        return;
    }
    remove_named_by_connection(h);
    h.remove(header::CONNECTION);
    h.remove(KEEP_ALIVE);
}

/// Removes hop-by-hop headers: Connection and every header it names, Keep-Alive, TE,
/// Transfer-Encoding, Upgrade, and Proxy-*.
///
/// `Trailer` is kept: it is end-to-end (RFC 9110 section 6.6.2; RFC 2616 listed "Trailers" among
/// hop-by-hop headers), and an HTTP/1.1 hop only sends the trailer fields it declares, so removing it
/// would drop the trailers themselves.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // One pass over the names says which are present; the map is only looked up and changed for
    // those (headers named by Connection can only be present along with Connection). This runs on
    // every request and response, most of which carry only `Connection: keep-alive`.
    let found = hop_headers(h);
    if found == 0 {
        return;
    }
    if found & HOP_CONNECTION != 0 {
        remove_named_by_connection(h);
    }
    remove_fixed(h, found);
    if found & HOP_PROXY != 0 {
        let proxy: Vec<HeaderName> = h
            .keys()
            .filter(|k| k.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for n in proxy {
            h.remove(n);
        }
    }
}
