//! Protocol upgrades: a request that asks to switch protocols (HTTP/1.1 `Upgrade`, or HTTP/2 extended
//! CONNECT, RFC 8441) goes through its route's filters like any request; if the upstream switches
//! (101), the two connections become one tunnel of bytes until either side closes, the route's idle
//! timeout or longest life passes, or a drain ends it.
//!
//! - Which protocols: a route's `upgrades.allow` (default `websocket`, compared without case). Any
//!   other `Upgrade` token is refused with 403, as Envoy refuses an upgrade it is not configured
//!   for; `upgrades.allow: []` forbids upgrades on the route. `Upgrade: h2c` (a client offering
//!   cleartext HTTP/2) is not an upgrade here: the header is dropped and the request served as
//!   HTTP/1.1, as Envoy does. An `Upgrade` header without `Connection: upgrade` asks for nothing.
//! - The request the filters see and the upstream gets is an HTTP/1.1 upgrade whatever the client
//!   spoke: an HTTP/2 `CONNECT` with `:protocol websocket` becomes `GET` with `Upgrade: websocket`
//!   (and a `Sec-WebSocket-Key` of the gateway's when the client sent none, which RFC 8441 clients
//!   never do), so one auth rule covers both. The upstream's 101 is what the response filters see;
//!   an HTTP/2 client then gets the 200 that RFC 8441 asks for.
//! - No body: an upgrade request has none in the HTTP sense (the HTTP/1 guard refuses one with a
//!   body, hyper gives an HTTP/2 CONNECT none), so filters that ask for bodies see none, and the
//!   tunnel's bytes are never shown to filters.
//! - Nothing is tunnelled before the upstream's 101: the HTTP/1 guard holds every byte after the
//!   head until [`crate::conn::ConnShared::decide_upgrade`]; an upstream that answers otherwise
//!   has its answer sent as a normal response, and the connection goes on as HTTP.
//! - A route that does not forward (a fixed response, a redirect) answers HTTP/1 upgrade requests
//!   as plain requests; an HTTP/2 extended CONNECT to it, or to a route whose upstream speaks
//!   HTTP/2, is refused with 403 (its 2xx would open a tunnel to nowhere).

use crate::body::Body;
use crate::config::Protocol;
use crate::errors::ProxyError;
use crate::runtime::{Action, Route};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");
const UPGRADE_TOKEN: HeaderValue = HeaderValue::from_static("upgrade");

/// The protocols a request asks to switch to, read before its `Connection` header goes.
pub(super) struct Asked {
    /// `Upgrade` tokens (or the one `:protocol`), in the client's order of preference.
    protocols: Vec<String>,
    /// An HTTP/2 extended CONNECT.
    h2: bool,
}

/// What a request asks for: `Ok(None)` for a plain request (see [`h1_protocols`]), an error for a
/// CONNECT that is not an extended CONNECT of HTTP/2.
pub(super) fn asked<B>(req: &Request<B>) -> Result<Option<Asked>, ProxyError> {
    if req.method() == Method::CONNECT {
        return match req.extensions().get::<hyper::ext::Protocol>() {
            Some(p) if req.version() == Version::HTTP_2 => Ok(Some(Asked {
                protocols: vec![p.as_str().to_owned()],
                h2: true,
            })),
            _ => Err(ProxyError::MethodNotAllowed),
        };
    }
    let h = req.headers();
    // The usual request: no `Upgrade`, so nothing asked whatever `Connection` says (one lookup).
    if !h.contains_key(header::UPGRADE) {
        return Ok(None);
    }
    let values = |name| h.get_all(name).into_iter().map(HeaderValue::as_bytes);
    let protocols: Vec<String> = h1_protocols(
        req.version() == Version::HTTP_11,
        values(header::CONNECTION),
        values(header::UPGRADE),
    )
    .map(|p| String::from_utf8_lossy(p).into_owned())
    .collect();
    Ok((!protocols.is_empty()).then_some(Asked {
        protocols,
        h2: false,
    }))
}

/// The protocols an HTTP/1 request asks to switch to, in the client's order, from its version and
/// its `Connection` and `Upgrade` field values: none unless it is HTTP/1.1 (RFC 9110 section 7.8:
/// `Upgrade` in HTTP/1.0 is ignored, and hyper gives such a request no switch) and `Connection`
/// lists `upgrade`; never `h2c` (an offer of cleartext HTTP/2, dropped) or an empty token.
///
/// The HTTP/1 guard (on the raw head, before hyper) and [`asked`] both decide with it: a request
/// the guard holds for a tunnel, and refuses with a body, is exactly one the proxy may tunnel.
pub fn h1_protocols<'a>(
    http11: bool,
    connection: impl IntoIterator<Item = &'a [u8]>,
    upgrade: impl IntoIterator<Item = &'a [u8]>,
) -> impl Iterator<Item = &'a [u8]> {
    let asks = http11
        && connection
            .into_iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    upgrade
        .into_iter()
        .filter(move |_| asks)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty() && !p.eq_ignore_ascii_case(b"h2c"))
}

/// The upgrade a route goes ahead with: the protocol the upstream is asked for.
pub(super) struct Accepted {
    /// The `Upgrade` value sent upstream.
    pub protocol: HeaderValue,
    /// The client spoke HTTP/2 (it gets a 200, not a 101).
    pub h2: bool,
}

/// Decides what `route` does with an upgrade request: `Ok(None)` serves it as a plain request
/// (HTTP/1 to a route that does not forward), else the protocol to ask the upstream for, or why
/// it is refused.
pub(super) fn accept(
    asked: Asked,
    route: &Route,
    pick: u16,
) -> Result<Option<Accepted>, ProxyError> {
    let forwards = matches!(route.action, Action::Upstream(_) | Action::Split(_));
    if !forwards {
        return match asked.h2 {
            false => Ok(None),
            true => Err(ProxyError::UpgradeRefused("the route does not forward")),
        };
    }
    if route.upgrades.forbids_all() {
        return Err(ProxyError::UpgradeRefused(
            "the route does not allow upgrades",
        ));
    }
    let Some(protocol) = asked.protocols.iter().find(|p| route.upgrades.allows(p)) else {
        return Err(ProxyError::UpgradeRefused(
            "the route does not allow this protocol",
        ));
    };
    if route
        .cluster(pick)
        .is_some_and(|c| c.protocol != Protocol::Http1)
    {
        return Err(ProxyError::UpgradeRefused(
            "the route's upstream speaks HTTP/2",
        ));
    }
    let protocol = HeaderValue::from_str(protocol)
        .map_err(|_| ProxyError::UpgradeRefused("not a protocol name"))?;
    Ok(Some(Accepted {
        protocol,
        h2: asked.h2,
    }))
}

impl Accepted {
    /// Makes the request head the one the filters see and the upstream gets: an HTTP/1.1 upgrade
    /// (after the client's `Connection` header and what it named went).
    pub(super) fn prepare(&self, parts: &mut http::request::Parts) {
        parts.headers.insert(header::UPGRADE, self.protocol.clone());
        if self.h2 {
            parts.method = Method::GET;
            if self.protocol.as_bytes().eq_ignore_ascii_case(b"websocket")
                && !parts.headers.contains_key(SEC_WEBSOCKET_KEY)
            {
                parts.headers.insert(SEC_WEBSOCKET_KEY, websocket_key());
            }
        }
    }

    /// Makes the switch the client gets from the upstream's 101 (after the response filters): a
    /// 101 with `Upgrade` and `Connection: upgrade` for HTTP/1.1, a 200 without them for HTTP/2.
    pub(super) fn switch(&self, resp: &mut Response<Body>) {
        let h = resp.headers_mut();
        h.remove(header::CONTENT_LENGTH);
        h.remove(header::TRANSFER_ENCODING);
        if self.h2 {
            *resp.status_mut() = StatusCode::OK;
            let h = resp.headers_mut();
            h.remove(header::UPGRADE);
            h.remove(header::CONNECTION);
            h.remove(SEC_WEBSOCKET_ACCEPT);
        } else {
            h.insert(header::CONNECTION, UPGRADE_TOKEN);
            if !h.contains_key(header::UPGRADE) {
                h.insert(header::UPGRADE, self.protocol.clone());
            }
        }
    }
}

/// The hop-by-hop headers of an upgrade request sent upstream (after [`super::headers`] removed
/// the client's).
pub(super) fn upstream_request_headers(h: &mut http::HeaderMap, protocol: &HeaderValue) {
    h.insert(header::UPGRADE, protocol.clone());
    h.insert(header::CONNECTION, UPGRADE_TOKEN);
}

/// Puts back the switch on an upstream's 101 after its hop-by-hop headers went: the `Upgrade` it
/// named (`upgrade`, read before), else the one asked for, and `Connection: upgrade`.
pub(super) fn upstream_switch(
    h: &mut http::HeaderMap,
    upgrade: Option<HeaderValue>,
    asked: &HeaderValue,
) {
    h.insert(header::UPGRADE, upgrade.unwrap_or_else(|| asked.clone()));
    h.insert(header::CONNECTION, UPGRADE_TOKEN);
}

/// A random `Sec-WebSocket-Key`: 16 random bytes in base64 (RFC 6455 section 4.1).
fn websocket_key() -> HeaderValue {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let nonce: [u8; 16] = rand::random();
    let mut out = Vec::with_capacity(24);
    for chunk in nonce.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
    HeaderValue::from_bytes(&out).expect("base64 is a header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(lines: &[(&str, &str)]) -> Request<()> {
        let mut r = Request::new(());
        for (k, v) in lines {
            r.headers_mut().append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        r
    }

    #[test]
    fn what_a_request_asks_for() {
        let a = asked(&req(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(a.protocols, vec!["WebSocket"]);
        // Without `Connection: upgrade`, or only h2c: nothing.
        assert!(asked(&req(&[("upgrade", "websocket")])).unwrap().is_none());
        assert!(asked(&req(&[
            ("connection", "upgrade, http2-settings"),
            ("upgrade", "h2c")
        ]))
        .unwrap()
        .is_none());
        let a = asked(&req(&[
            ("connection", "upgrade"),
            ("upgrade", "h2c, foo/2, websocket"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(a.protocols, vec!["foo/2", "websocket"]);
        // Empty tokens only: nothing.
        assert!(
            asked(&req(&[("connection", "upgrade"), ("upgrade", " , ,")]))
                .unwrap()
                .is_none()
        );
        // HTTP/1.0 cannot upgrade (RFC 9110 section 7.8).
        let mut old = req(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        *old.version_mut() = Version::HTTP_10;
        assert!(asked(&old).unwrap().is_none());
        let mut connect = req(&[]);
        *connect.method_mut() = Method::CONNECT;
        assert!(matches!(asked(&connect), Err(ProxyError::MethodNotAllowed)));
    }

    #[test]
    fn h1_protocols_are_the_tokens_after_connection_upgrade_in_http11() {
        let asks = |http11, connection: &[&'static str], upgrade: &[&'static str]| {
            h1_protocols(
                http11,
                connection.iter().map(|v| v.as_bytes()),
                upgrade.iter().map(|v| v.as_bytes()),
            )
            .collect::<Vec<_>>()
        };
        assert_eq!(
            asks(
                true,
                &["keep-alive", " UPGRADE "],
                &["h2c, websocket", "foo"]
            ),
            vec![&b"websocket"[..], b"foo"]
        );
        assert!(asks(false, &["upgrade"], &["websocket"]).is_empty());
        assert!(asks(true, &["upgraded"], &["websocket"]).is_empty());
        assert!(asks(true, &["upgrade, http2-settings"], &["h2c", ""]).is_empty());
    }

    #[test]
    fn websocket_keys_are_16_bytes_of_base64() {
        let (a, b) = (websocket_key(), websocket_key());
        assert_ne!(a, b);
        let a = a.to_str().unwrap();
        assert_eq!(a.len(), 24);
        assert!(a.ends_with("=="));
        assert!(a[..22]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/'));
    }
}
