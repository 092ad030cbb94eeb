//! The one form of a request's authority and path that routing looks at and the upstream receives.
//!
//! Made once per request, before routing, so that a route's restriction cannot be walked around by
//! spelling the same resource differently (`/api//admin`, `/api/./admin`, `/api/x/../admin`,
//! `/api/%61dmin`, `/api%2fadmin`, an absolute-form target whose authority differs from `Host`):
//!
//! - Authority: HTTP/1 takes an absolute-form target's authority over `Host`, and `Host` is replaced
//!   by it (RFC 9112 section 3.2.2); HTTP/2 takes `:authority`, and a `host` header that names
//!   something else is malformed (RFC 9113 section 8.3.1). The result is the request's one `Host`.
//! - Path, as Envoy's `normalize_path` with `merge_slashes`: percent-encoded unreserved characters are
//!   decoded (`%61` -> `a`, `%2E` -> `.`), every other escape is written with upper-case hex, bytes
//!   outside ASCII are percent-encoded, runs of `/` become one, `.` and `..` segments are resolved
//!   (RFC 3986 section 5.2.4) and a path that climbs above the root is refused. `%00`, a malformed
//!   escape and a dot segment with parameters (`..;x`, which some servers read as `..`) are refused.
//!   Encoded slashes (`%2F`), encoded backslashes (`%5C`) and backslashes follow the listener's
//!   [`EscapedSlashes`] policy: refused (the default), kept as data (`%2F`, `%5C`, never a separator),
//!   or decoded into `/` before the dot segments are resolved. `;` parameters are kept, or refused
//!   where the listener's [`PathParameters`] says so.
//!
//! Normalizing a canonical path again changes nothing; the query is left as it is.

use crate::config::{EscapedSlashes, PathParameters, PathPolicy};
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery, Uri};
use std::borrow::Cow;

/// Why a request's path or authority cannot be made canonical; each is a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadTarget {
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding in the path")]
    BadEscape,
    /// `%00` in the path.
    #[error("the path contains an encoded NUL")]
    Nul,
    /// `%2F`, `%5C` or `\` while the listener refuses them.
    #[error("the path contains an encoded slash or a backslash")]
    EscapedSlash,
    /// `..` that would climb above `/`.
    #[error("the path climbs above the root")]
    AboveRoot,
    /// A `.` or `..` segment with `;` parameters.
    #[error("the path has a dot segment with parameters")]
    DotParameters,
    /// `;` parameters while the listener refuses them.
    #[error("the path has ; parameters")]
    Parameters,
    /// The path does not start with `/`.
    #[error("the path does not start with /")]
    NotAbsolute,
    /// No authority: neither an absolute-form target nor a Host header.
    #[error("the request names no host")]
    NoAuthority,
    /// The authority is not `host[:port]`.
    #[error("the request's host is malformed")]
    BadAuthority,
    /// An HTTP/2 `host` header that differs from `:authority`.
    #[error("the host header differs from :authority")]
    HostMismatch,
}

const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

/// Whether `path` may need any change: one scan, so that a path that is already canonical (almost
/// every request) is neither copied nor parsed again.
fn needs_work(path: &[u8]) -> bool {
    let mut prev = 0u8;
    for &b in path {
        if b == b'%' || b == b'\\' || b >= 0x80 || (prev == b'/' && (b == b'/' || b == b'.')) {
            return true;
        }
        prev = b;
    }
    false
}

/// The canonical form of `path` (without the query), or why it has none.
pub fn normalize_path(path: &str, slashes: EscapedSlashes) -> Result<Cow<'_, str>, BadTarget> {
    if !path.starts_with('/') {
        return Err(BadTarget::NotAbsolute);
    }
    let raw = path.as_bytes();
    if !needs_work(raw) {
        return Ok(Cow::Borrowed(path));
    }
    // 1. Escapes: decode unreserved characters, write the others in one case, apply the slash policy.
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(BadTarget::BadEscape);
            };
            let v = h << 4 | l;
            match v {
                0 => return Err(BadTarget::Nul),
                b'/' | b'\\' => match slashes {
                    EscapedSlashes::Reject => return Err(BadTarget::EscapedSlash),
                    EscapedSlashes::Keep => push_escaped(&mut decoded, v),
                    EscapedSlashes::Decode => decoded.push(b'/'),
                },
                v if is_unreserved(v) => decoded.push(v),
                v => push_escaped(&mut decoded, v),
            }
            i += 3;
            continue;
        }
        match b {
            b'\\' => match slashes {
                EscapedSlashes::Reject => return Err(BadTarget::EscapedSlash),
                EscapedSlashes::Keep => push_escaped(&mut decoded, b),
                EscapedSlashes::Decode => decoded.push(b'/'),
            },
            0x80.. => push_escaped(&mut decoded, b),
            _ => decoded.push(b),
        }
        i += 1;
    }
    // 2. Segments: merge slashes, resolve dot segments, keep a trailing slash.
    let mut out: Vec<u8> = Vec::with_capacity(decoded.len());
    let segments: Vec<&[u8]> = decoded[1..].split(|&b| b == b'/').collect();
    let last = segments.len() - 1;
    for (n, seg) in segments.iter().enumerate() {
        let name = seg.split(|&b| b == b';').next().unwrap_or(seg);
        let dot = name == b"." || name == b"..";
        if dot && name.len() != seg.len() {
            return Err(BadTarget::DotParameters);
        }
        match *seg {
            b"" | b"." => {}
            b".." => {
                if out.is_empty() {
                    return Err(BadTarget::AboveRoot);
                }
                let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(cut);
            }
            s => {
                out.push(b'/');
                out.extend_from_slice(s);
            }
        }
        // `/a/`, `/a/.`, `/a/b/..` and `/a//` all end in a slash.
        if n == last && (seg.is_empty() || dot) {
            out.push(b'/');
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    // Every byte is ASCII now: non-ASCII bytes were escaped.
    Ok(Cow::Owned(
        String::from_utf8(out).expect("a canonical path is ASCII"),
    ))
}

/// Whether a segment holds an encoded slash or backslash (kept as data by [`EscapedSlashes::Keep`]);
/// such a segment never fills a template parameter.
pub fn has_escaped_slash(segment: &str) -> bool {
    segment.contains("%2F") || segment.contains("%5C")
}

/// The authority a request is routed by, and made its one `Host` header; and the request's URI with
/// its path made canonical under the listener's `paths` policy. `h2`: the request came over HTTP/2.
pub fn canonicalize(
    uri: &mut Uri,
    headers: &mut HeaderMap,
    h2: bool,
    paths: PathPolicy,
) -> Result<(), BadTarget> {
    let authority = match uri.authority() {
        Some(a) => {
            if h2 {
                // RFC 9113 8.3.1: a `host` header must not name another entity than `:authority`.
                if let Some(h) = headers.get(header::HOST) {
                    if !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes()) {
                        return Err(BadTarget::HostMismatch);
                    }
                }
            }
            match canonical_authority(a)? {
                Some(v) => Some(v),
                None => {
                    Some(HeaderValue::from_str(a.as_str()).map_err(|_| BadTarget::BadAuthority)?)
                }
            }
        }
        None => {
            let mut hosts = headers.get_all(header::HOST).iter();
            match (hosts.next(), hosts.next()) {
                // One Host, one authority (the HTTP/1 guard refuses a second one before this;
                // an HTTP/2 request without `:authority` may carry several).
                (Some(_), Some(_)) => return Err(BadTarget::BadAuthority),
                // Almost every Host is a plain name or IPv4 address with an optional port, and
                // already canonical: checked in place, neither copied nor parsed.
                (Some(h), None) if plain_host(h.as_bytes()) => None,
                (Some(h), None) => {
                    let a = h
                        .to_str()
                        .ok()
                        .and_then(|s| s.parse::<Authority>().ok())
                        .ok_or(BadTarget::BadAuthority)?;
                    canonical_authority(&a)?
                }
                // HTTP/1.0 may name no host; such a request is routed by its path alone.
                (None, _) if !h2 => None,
                (None, _) => return Err(BadTarget::NoAuthority),
            }
        }
    };
    if let Some(v) = authority {
        headers.insert(header::HOST, v);
    }
    if h2 {
        join_cookies(headers);
    }
    let path = uri.path();
    let path = if path.is_empty() { "/" } else { path };
    if paths.parameters == PathParameters::Reject && path.contains(';') {
        return Err(BadTarget::Parameters);
    }
    let canonical = normalize_path(path, paths.escaped_slashes)?;
    if let Cow::Owned(p) = canonical {
        let pq = match uri.query() {
            Some(q) => format!("{p}?{q}"),
            None => p,
        };
        let pq = PathAndQuery::try_from(pq).map_err(|_| BadTarget::BadEscape)?;
        let mut parts = std::mem::take(uri).into_parts();
        parts.path_and_query = Some(pq);
        *uri = Uri::from_parts(parts).map_err(|_| BadTarget::BadAuthority)?;
    }
    Ok(())
}

/// Whether `v` is `name[:port]` that [`canonical_authority`] would keep as it is: a non-empty name of
/// letters, digits, `-` and `.` that does not end in `.`, and a port of one to five digits up to
/// 65535. Anything else (an IP literal, user information, a trailing dot, other characters) takes
/// the full parse.
fn plain_host(v: &[u8]) -> bool {
    let (name, port) = match v.iter().position(|&b| b == b':') {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    let name_ok = !name.is_empty()
        && name.last() != Some(&b'.')
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    name_ok
        && port.is_none_or(|p| {
            (1..=5).contains(&p.len())
                && p.iter().all(u8::is_ascii_digit)
                && p.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65535
        })
}

/// Checks `host[:port]` with no user information (RFC 9110 section 4.2.4 forbids it in http(s)
/// URIs); the `Host` value to write when it is not already canonical: a fully qualified name's
/// trailing dot is dropped (`admin.internal.` is
/// `admin.internal`, for routing and for the upstream alike, as nginx and Envoy's
/// `strip_trailing_host_dot` do).
fn canonical_authority(a: &Authority) -> Result<Option<HeaderValue>, BadTarget> {
    let host = a.host();
    if a.as_str().contains('@') || host.is_empty() {
        return Err(BadTarget::BadAuthority);
    }
    let Some(bare) = host.strip_suffix('.') else {
        // Already canonical: a `Host` that says it stays as it is (nothing to copy or insert).
        return Ok(None);
    };
    if bare.is_empty() || bare.ends_with('.') {
        return Err(BadTarget::BadAuthority);
    }
    let text = match a.port() {
        Some(p) => format!("{bare}:{p}"),
        None => bare.to_owned(),
    };
    HeaderValue::from_str(&text)
        .map(Some)
        .map_err(|_| BadTarget::BadAuthority)
}

/// HTTP/2 may split `cookie` into crumbs; they are one header again for what follows (routing,
/// filters, an HTTP/1 upstream), joined with "; " (RFC 9113 section 8.2.3).
fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for v in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EscapedSlashes::*;

    fn n(p: &str) -> Result<String, BadTarget> {
        normalize_path(p, Reject).map(Cow::into_owned)
    }

    #[test]
    fn paths() {
        let ok = [
            ("/", "/"),
            ("/api/x", "/api/x"),
            ("/api//admin/x", "/api/admin/x"),
            ("//api///x//", "/api/x/"),
            ("/api/./admin/x", "/api/admin/x"),
            ("/api/x/../admin/x", "/api/admin/x"),
            ("/api/%61dmin/x", "/api/admin/x"),
            ("/api/%2e%2E/admin", "/admin"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/..", "/"),
            ("/..a/b..", "/..a/b.."),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/café", "/caf%C3%A9"),
            ("/%C0%AE%C0%AE/x", "/%C0%AE%C0%AE/x"),
            ("/a;b=c/d", "/a;b=c/d"),
            ("/~user/%7Ea", "/~user/~a"),
        ];
        for (raw, want) in ok {
            assert_eq!(n(raw).as_deref(), Ok(want), "{raw}");
            assert_eq!(n(want).as_deref(), Ok(want), "again: {want}");
        }
        let bad = [
            ("/api/../../etc/passwd", BadTarget::AboveRoot),
            ("/..", BadTarget::AboveRoot),
            ("/%2e%2e/x", BadTarget::AboveRoot),
            ("/api%2fadmin", BadTarget::EscapedSlash),
            ("/api%5cadmin", BadTarget::EscapedSlash),
            ("/api\\admin", BadTarget::EscapedSlash),
            ("/a%00b", BadTarget::Nul),
            ("/a%zz", BadTarget::BadEscape),
            ("/a%4", BadTarget::BadEscape),
            ("/a/..;/b", BadTarget::DotParameters),
            ("/a/.;x/b", BadTarget::DotParameters),
            ("a/b", BadTarget::NotAbsolute),
        ];
        for (raw, want) in bad {
            assert_eq!(n(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn slash_policies() {
        let keep = |p| normalize_path(p, Keep).map(Cow::into_owned);
        let decode = |p| normalize_path(p, Decode).map(Cow::into_owned);
        assert_eq!(keep("/api%2fadmin").as_deref(), Ok("/api%2Fadmin"));
        assert_eq!(keep("/a\\b").as_deref(), Ok("/a%5Cb"));
        assert_eq!(keep("/a/..%2f..%2fx").as_deref(), Ok("/a/..%2F..%2Fx"));
        assert_eq!(decode("/api%2fadmin").as_deref(), Ok("/api/admin"));
        assert_eq!(decode("/a\\..\\b").as_deref(), Ok("/b"));
        assert_eq!(decode("/a/..%2f..%2fx"), Err(BadTarget::AboveRoot));
        assert!(has_escaped_slash("..%2F..%2Fx"));
    }

    /// Seeded random paths over an alphabet rich in the characters that matter: whatever is accepted
    /// is canonical (normalizing it again changes nothing, it has no dot segment, no empty segment
    /// but a trailing one, no escape of an unreserved character, no lower-case escape).
    #[test]
    fn random_paths_normalize_to_a_fixed_point() {
        const ALPHABET: &[&str] = &[
            "/", "/", "/", ".", "..", "a", "B", "%2e", "%2E", "%2f", "%5C", "%61", "%7e", "%41",
            "%c3%a9", "\\", ";", ";x=1", "%00", "%", "%g1", "é", "~", "-", "%20", "%3F", "%25",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for _ in 0..50_000 {
            let len = 1 + next() % 12;
            let mut p = String::from("/");
            for _ in 0..len {
                p.push_str(ALPHABET[(next() % ALPHABET.len() as u64) as usize]);
            }
            for policy in [Reject, Keep, Decode] {
                let Ok(c) = normalize_path(&p, policy) else {
                    continue;
                };
                accepted += 1;
                let again =
                    normalize_path(&c, policy).unwrap_or_else(|e| panic!("{p} -> {c}: {e}"));
                assert_eq!(again, c, "{p}");
                assert!(!c.contains("//"), "{p} -> {c}");
                for seg in c.split('/') {
                    assert!(seg != "." && seg != "..", "{p} -> {c}");
                }
                let b = c.as_bytes();
                for (i, _) in c.match_indices('%') {
                    let v = hex(b[i + 1]).unwrap() << 4 | hex(b[i + 2]).unwrap();
                    assert!(!is_unreserved(v), "{p} -> {c}");
                    assert!(!b[i + 1].is_ascii_lowercase() && !b[i + 2].is_ascii_lowercase());
                }
                assert!(
                    c.is_ascii() && c.parse::<PathAndQuery>().is_ok(),
                    "{p} -> {c}"
                );
            }
        }
        assert!(accepted > 10_000, "only {accepted} accepted");
    }

    /// How a lenient backend reads a path: every escape decoded once (but `%3B`, which no server takes
    /// for a parameter delimiter), backslashes as slashes, dot segments resolved (clamped at the
    /// root), empty segments dropped.
    fn lenient(p: &str) -> Vec<Vec<u8>> {
        let b = p.as_bytes();
        let mut bytes = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let esc = (b[i] == b'%')
                .then(|| Some(hex(*b.get(i + 1)?)? << 4 | hex(*b.get(i + 2)?)?))
                .flatten()
                .filter(|&v| v != b';');
            match esc {
                Some(v) => {
                    bytes.push(v);
                    i += 3;
                }
                None => {
                    bytes.push(if b[i] == b'\\' { b'/' } else { b[i] });
                    i += 1;
                }
            }
        }
        let mut segs: Vec<Vec<u8>> = Vec::new();
        for s in bytes.split(|&c| c == b'/') {
            match s {
                b"" | b"." => {}
                b".." => {
                    segs.pop();
                }
                s => segs.push(s.to_vec()),
            }
        }
        segs
    }

    /// Seeded random paths through the canonical form and a router with a deny route under an allowed
    /// prefix: whatever the gateway accepts reaches the deny route exactly when a lenient backend
    /// would read it as a path under `/api/admin`, and routing the canonical path again picks the same.
    #[test]
    fn random_paths_cannot_walk_around_a_prefix_route() {
        use crate::router::{PathSpec, RouteMatch, RouteRequest, Router};
        const ALPHABET: &[&str] = &[
            "/api", "/admin", "/%61dmin", "/%61", "dmin", "/.", "/..", "/%2e", "/%2E%2e", "%2f",
            "%5c", "\\\\", ";", ";x", "%3B", "%25", "/x", "/%41PI", "%00", "%", "/", "//", "admin",
        ];
        let r = Router::new(vec![
            RouteMatch {
                host: None,
                path: Some(PathSpec::Prefix("/api/admin".into())),
                methods: vec![],
                headers: vec![],
                query: vec![],
                client_cert: vec![],
            },
            RouteMatch {
                host: None,
                path: Some(PathSpec::Prefix("/api".into())),
                methods: vec![],
                headers: vec![],
                query: vec![],
                client_cert: vec![],
            },
        ])
        .unwrap();
        let headers = HeaderMap::new();
        let find = |path: &str| {
            r.find(&RouteRequest {
                host: "h",
                path,
                query: None,
                method: &http::Method::GET,
                headers: &headers,
                client_cert: None,
            })
            .map(|(i, _)| i)
        };
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut denied, mut accepted) = (0, 0);
        for _ in 0..100_000 {
            let mut p = String::from(if next() % 2 == 0 { "/api" } else { "" });
            for _ in 0..1 + next() % 6 {
                p.push_str(ALPHABET[(next() % ALPHABET.len() as u64) as usize]);
            }
            let Ok(c) = normalize_path(&p, EscapedSlashes::Reject) else {
                continue;
            };
            accepted += 1;
            let lenient = lenient(&p);
            let under_admin = lenient.len() >= 2
                && lenient[0] == b"api"
                && (lenient[1] == b"admin" || lenient[1].starts_with(b"admin;"));
            let hit = find(&c);
            assert_eq!(hit == Some(0), under_admin, "{p} -> {c}");
            assert_eq!(lenient, super::tests::lenient(&c), "{p} -> {c}");
            assert_eq!(
                find(&normalize_path(&c, EscapedSlashes::Reject).unwrap()),
                hit
            );
            denied += usize::from(under_admin);
        }
        assert!(
            accepted > 20_000 && denied > 500,
            "{accepted} accepted, {denied} denied"
        );
    }

    #[test]
    fn authorities() {
        let run = |uri: &str, host: Option<&str>, h2: bool| {
            let mut uri: Uri = uri.parse().unwrap();
            let mut h = HeaderMap::new();
            if let Some(host) = host {
                h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            }
            canonicalize(&mut uri, &mut h, h2, PathPolicy::default()).map(|()| {
                (
                    h.get(header::HOST).map(|v| v.to_str().unwrap().to_owned()),
                    uri,
                )
            })
        };
        // Absolute form: the target's authority replaces Host.
        let (host, uri) = run("http://www.public/secret", Some("admin.internal"), false).unwrap();
        assert_eq!(host.as_deref(), Some("www.public"));
        assert_eq!(uri.path(), "/secret");
        // Origin form: Host.
        let (host, _) = run("/x", Some("a.example"), false).unwrap();
        assert_eq!(host.as_deref(), Some("a.example"));
        assert_eq!(run("/x", None, false).unwrap().0, None);
        assert_eq!(run("/x", Some("a b"), false), Err(BadTarget::BadAuthority));
        assert_eq!(
            run("http://u@h/x", None, false),
            Err(BadTarget::BadAuthority)
        );
        // HTTP/2: a differing host header is malformed; the same one (any case) is fine.
        assert_eq!(
            run("http://www.public/x", Some("admin.internal"), true),
            Err(BadTarget::HostMismatch)
        );
        let (host, _) = run("http://www.public/x", Some("WWW.public"), true).unwrap();
        assert_eq!(host.as_deref(), Some("www.public"));
        let (host, uri) = run("http://h/a/../b?q=%2e", None, true).unwrap();
        assert_eq!(host.as_deref(), Some("h"));
        assert_eq!(uri.to_string(), "http://h/b?q=%2e");
    }

    #[test]
    fn plain_hosts_are_what_the_full_parse_keeps() {
        let plain = [
            "a",
            "a.example",
            "A-b.Example:8080",
            "10.0.0.1",
            "h:1",
            "h:65535",
        ];
        let other = [
            "", ":80", "h:", "h:65536", "h:123456", "h:8a", "a.", "a.:80", "a..", "[::1]:80",
            "u@h", "a b", "h:80:80", "a_b", "é",
        ];
        for v in plain {
            assert!(plain_host(v.as_bytes()), "{v}");
            let a: Authority = v.parse().unwrap();
            assert_eq!(canonical_authority(&a), Ok(None), "{v}");
        }
        for v in other {
            assert!(!plain_host(v.as_bytes()), "{v}");
        }
        // Those the fast path leaves to the full parse still come out as before.
        let host = |v: &str| {
            let mut uri: Uri = "/x".parse().unwrap();
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(v).unwrap());
            canonicalize(&mut uri, &mut h, false, PathPolicy::default())
                .map(|()| h[header::HOST].to_str().unwrap().to_owned())
        };
        assert_eq!(host("a.example.:8080").as_deref(), Ok("a.example:8080"));
        assert_eq!(host("[::1]:80").as_deref(), Ok("[::1]:80"));
        assert_eq!(host("a."), Ok("a".to_owned()));
        assert_eq!(host("u@h"), Err(BadTarget::BadAuthority));
        assert_eq!(host("a.."), Err(BadTarget::BadAuthority));
        assert_eq!(host("h:80:80"), Err(BadTarget::BadAuthority));
    }

    #[test]
    fn cookie_crumbs_are_joined() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        join_cookies(&mut h);
        let all: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(all, vec!["a=1; b=2; c=3"]);
    }
}
