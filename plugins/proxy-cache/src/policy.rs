//! What is cached and for how long: the request's bypass rules, `Cache-Control` directives, the key,
//! a response's freshness, and the headers an entry keeps. Pure functions over header lists, so they
//! are tested here without a gateway.

use crate::config::Config;

/// `Cache-Control` directives that matter to a shared cache.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (with or without field names: a shared cache treats both as "do not store").
    pub no_cache: bool,
    /// `private` (with or without field names).
    pub private: bool,
    /// `max-age`, in seconds.
    pub max_age: Option<u64>,
    /// `s-maxage`, in seconds.
    pub s_maxage: Option<u64>,
    /// `stale-if-error` (RFC 5861), in seconds.
    pub stale_if_error: Option<u64>,
}

/// Reads every `Cache-Control` value of `headers` (names in any case). A directive's name is not
/// case-sensitive; a malformed number leaves the directive unset, except `max-age` and `s-maxage`,
/// which then count as 0 (RFC 9111 section 4.2.1: an invalid freshness is stale).
pub fn directives(headers: &[(String, String)]) -> Directives {
    let mut d = Directives::default();
    for (_, v) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cache-control"))
    {
        for part in v.split(',') {
            let (name, arg) = match part.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (part.trim(), None),
            };
            let secs = || arg.and_then(|a| a.parse::<u64>().ok());
            match name.to_ascii_lowercase().as_str() {
                "no-store" => d.no_store = true,
                "no-cache" => d.no_cache = true,
                "private" => d.private = true,
                "max-age" => d.max_age = Some(secs().unwrap_or(0)),
                "s-maxage" => d.s_maxage = Some(secs().unwrap_or(0)),
                "stale-if-error" => d.stale_if_error = secs().or(d.stale_if_error),
                _ => {}
            }
        }
    }
    d
}

/// All values of `name` in `headers`.
pub fn values<'a>(headers: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Why a request goes upstream without the cache, if it does.
pub fn bypass(config: &Config, method: &str, headers: &[(String, String)]) -> Option<&'static str> {
    if !config.caches_method(method) {
        return Some("method");
    }
    let d = directives(headers);
    if d.no_cache || d.no_store {
        return Some("request cache-control");
    }
    let has_cc = values(headers, "cache-control").next().is_some();
    if !has_cc && values(headers, "pragma").any(|v| v.to_ascii_lowercase().contains("no-cache")) {
        return Some("request pragma");
    }
    if !config.cache_authorized && values(headers, "authorization").next().is_some() {
        return Some("authorization");
    }
    None
}

/// The key's `extra`: the method (`HEAD` is looked up as `GET`), the query, the consumer when the
/// key has it (`None`: it does not; `Some("")`: nobody), and the configured headers' values, one per
/// line (neither a query, a consumer name nor a header value holds a newline).
pub fn key_extra(
    method: &str,
    query: Option<&str>,
    consumer: Option<&str>,
    key_headers: &[String],
    headers: &[(String, String)],
) -> String {
    let method = if method == "HEAD" { "GET" } else { method };
    let mut out = format!("{method}\n{}", query.unwrap_or(""));
    if let Some(c) = consumer {
        out.push_str("\nconsumer ");
        out.push_str(c);
    }
    for name in key_headers {
        out.push('\n');
        out.push_str(name);
        out.push(':');
        let vals: Vec<&str> = values(headers, name).collect();
        out.push_str(&vals.join(", "));
    }
    // A request with credentials (cached only with `cache_authorized`) is its own entry, one per
    // credential: a response to Alice is never an answer to Bob or to a request without any. The
    // key holds a digest, not the credential.
    let auth: Vec<&str> = values(headers, "authorization").collect();
    if !auth.is_empty() {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(auth.join(", ").as_bytes());
        out.push_str("\nauthorization ");
        for b in digest {
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}

/// How long a stored response is fresh and then kept for `stale-if-error`, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Fresh.
    pub ttl_ms: u64,
    /// Kept after that to answer when the upstream fails.
    pub stale_ms: u64,
}

/// Seconds since the Unix epoch of an HTTP date in the preferred format (IMF-fixdate, RFC 9110
/// section 5.6.7: `Sun, 06 Nov 1994 08:49:37 GMT`); `None` for anything else.
pub fn http_date(s: &str) -> Option<u64> {
    let rest = s.trim().split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: u64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" || parts.next().is_some() || hms.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || year < 1970 || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days since the epoch of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

/// Whether a response is stored, and for how long: its status must be one of `statuses`; `no-store`,
/// `no-cache`, `private`, `Set-Cookie` and `Vary: *` are not stored. Freshness is `s-maxage`, else
/// `max-age` (less the response's `Age`), else `Expires` less `Date` (or less `now_secs`, the
/// gateway's clock, without a `Date`; an `Expires` that is not a date has expired), else the config's
/// `ttl`; a freshness of 0 is not stored. The stale window is the larger of the config's
/// `stale_if_error` and the response's.
pub fn storable(
    config: &Config,
    status: u16,
    headers: &[(String, String)],
    now_secs: u64,
) -> Result<Lifetime, &'static str> {
    if !config.caches_status(status) {
        return Err("status");
    }
    let d = directives(headers);
    if d.no_store || d.no_cache || d.private {
        return Err("response cache-control");
    }
    if values(headers, "set-cookie").next().is_some() {
        return Err("set-cookie");
    }
    if values(headers, "vary").any(|v| v.split(',').any(|n| n.trim() == "*")) {
        return Err("vary: *");
    }
    let age: u64 = values(headers, "age")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or(0);
    let expires = || {
        let expires = values(headers, "expires").next()?;
        let date = values(headers, "date")
            .next()
            .and_then(http_date)
            .unwrap_or(now_secs);
        Some(http_date(expires).map_or(0, |e| e.saturating_sub(date)))
    };
    let ttl_ms = match d.s_maxage.or(d.max_age).or_else(expires) {
        Some(secs) => secs.saturating_sub(age).saturating_mul(1000),
        None => config.ttl_ms,
    };
    if ttl_ms == 0 {
        return Err("no freshness");
    }
    let stale_ms = d
        .stale_if_error
        .map(|s| s.saturating_mul(1000))
        .unwrap_or(0)
        .max(config.stale_if_error_ms);
    Ok(Lifetime { ttl_ms, stale_ms })
}

/// Headers an entry does not keep: the message's framing and hop-by-hop headers (the gateway frames
/// what it sends), and what the cache writes itself.
const NOT_KEPT: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "age",
    "x-cache-status",
];

/// The headers an entry keeps.
pub fn kept_headers(headers: Vec<(String, String)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter(|(n, _)| !NOT_KEPT.iter().any(|k| n.eq_ignore_ascii_case(k)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn directives_are_read_from_every_value() {
        let d = directives(&h(&[
            ("Cache-Control", "public, Max-Age=60"),
            (
                "cache-control",
                "s-maxage=\"120\", stale-if-error=30, private=\"x\"",
            ),
        ]));
        assert_eq!(d.max_age, Some(60));
        assert_eq!(d.s_maxage, Some(120));
        assert_eq!(d.stale_if_error, Some(30));
        assert!(d.private && !d.no_store && !d.no_cache);
        assert_eq!(
            directives(&h(&[("cache-control", "max-age=soon")])).max_age,
            Some(0)
        );
    }

    #[test]
    fn requests_that_bypass() {
        let c = Config::default();
        assert_eq!(bypass(&c, "GET", &[]), None);
        assert_eq!(bypass(&c, "HEAD", &[]), None);
        assert_eq!(bypass(&c, "POST", &[]), Some("method"));
        for (n, v) in [
            ("cache-control", "no-cache"),
            ("Cache-Control", "max-age=0, no-store"),
            ("pragma", "no-cache"),
            ("authorization", "Bearer x"),
        ] {
            assert!(bypass(&c, "GET", &h(&[(n, v)])).is_some(), "{n}: {v}");
        }
        // Pragma is for HTTP/1.0 caches: a Cache-Control without no-cache wins.
        assert_eq!(
            bypass(
                &c,
                "GET",
                &h(&[("cache-control", "max-age=5"), ("pragma", "no-cache")])
            ),
            None
        );
        let c = Config {
            cache_authorized: true,
            ..Config::default()
        };
        assert_eq!(
            bypass(&c, "GET", &h(&[("authorization", "Bearer x")])),
            None
        );
    }

    #[test]
    fn the_key_has_method_query_and_configured_headers() {
        let headers = h(&[("Accept-Language", "en"), ("x-other", "1")]);
        let names = vec!["accept-language".to_string(), "x-tenant".to_string()];
        assert_eq!(
            key_extra("HEAD", Some("a=1"), None, &names, &headers),
            "GET\na=1\naccept-language:en\nx-tenant:"
        );
        assert_ne!(
            key_extra("GET", Some("a=1"), None, &[], &headers),
            key_extra("GET", Some("a=2"), None, &[], &headers)
        );
        assert_ne!(
            key_extra("GET", None, None, &names, &headers),
            key_extra("GET", None, None, &names, &h(&[("accept-language", "fr")]))
        );
    }

    #[test]
    fn each_consumer_has_its_own_key_when_asked() {
        let alice = key_extra("GET", None, Some("alice"), &[], &[]);
        assert_eq!(alice, "GET\n\nconsumer alice");
        assert_ne!(alice, key_extra("GET", None, Some("bob"), &[], &[]));
        assert_ne!(
            key_extra("GET", None, Some(""), &[], &[]),
            key_extra("GET", None, None, &[], &[])
        );
    }

    #[test]
    fn each_credential_has_its_own_key_and_none_is_written_in_it() {
        let none = key_extra("GET", None, None, &[], &[]);
        let alice = key_extra(
            "GET",
            None,
            None,
            &[],
            &h(&[("authorization", "Bearer alice")]),
        );
        let bob = key_extra(
            "GET",
            None,
            None,
            &[],
            &h(&[("authorization", "Bearer bob")]),
        );
        assert_ne!(alice, none);
        assert_ne!(alice, bob);
        assert!(!alice.contains("alice"), "{alice}");
    }

    #[test]
    fn what_is_stored_and_for_how_long() {
        let c = Config {
            stale_if_error_ms: 10_000,
            ..Config::default()
        };
        let life = |s, p: &[(&str, &str)]| storable(&c, s, &h(p), 784_111_777);
        assert_eq!(
            life(200, &[]),
            Ok(Lifetime {
                ttl_ms: 60_000,
                stale_ms: 10_000
            })
        );
        assert_eq!(
            life(200, &[("cache-control", "max-age=30, s-maxage=90")])
                .unwrap()
                .ttl_ms,
            90_000
        );
        assert_eq!(
            life(200, &[("cache-control", "max-age=30"), ("age", "10")])
                .unwrap()
                .ttl_ms,
            20_000
        );
        assert_eq!(
            life(200, &[("cache-control", "max-age=30, stale-if-error=60")])
                .unwrap()
                .stale_ms,
            60_000
        );
        for (status, p) in [
            (500, &[][..]),
            (200, &[("cache-control", "no-store")][..]),
            (200, &[("cache-control", "private")][..]),
            (200, &[("cache-control", "no-cache")][..]),
            (200, &[("cache-control", "max-age=0")][..]),
            (200, &[("set-cookie", "a=b")][..]),
            (200, &[("vary", "accept, *")][..]),
        ] {
            assert!(life(status, p).is_err(), "{status} {p:?}");
        }
        // Expires less Date, or less the gateway's clock; max-age wins over it.
        let date = ("date", "Sun, 06 Nov 1994 08:49:37 GMT");
        let expires = ("expires", "Sun, 06 Nov 1994 08:50:07 GMT");
        assert_eq!(life(200, &[date, expires]).unwrap().ttl_ms, 30_000);
        assert_eq!(life(200, &[expires]).unwrap().ttl_ms, 30_000);
        assert_eq!(
            life(200, &[expires, ("cache-control", "max-age=5")])
                .unwrap()
                .ttl_ms,
            5_000
        );
        assert!(
            life(200, &[date, ("expires", "0")]).is_err(),
            "already expired"
        );
        assert!(life(200, &[("expires", "Sun, 06 Nov 1994 08:00:00 GMT")]).is_err());
        assert!(life(404, &[]).is_ok());
        assert!(life(301, &[]).is_ok());
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            http_date("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1_835_481_599)
        );
        for bad in [
            "0",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT x",
        ] {
            assert_eq!(http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn framing_and_hop_by_hop_headers_are_not_kept() {
        let kept = kept_headers(h(&[
            ("content-type", "text/plain"),
            ("Content-Length", "5"),
            ("transfer-encoding", "chunked"),
            ("vary", "accept-language"),
            ("age", "3"),
        ]));
        assert_eq!(
            kept,
            h(&[("content-type", "text/plain"), ("vary", "accept-language")])
        );
    }
}
