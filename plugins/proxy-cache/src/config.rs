//! The route's config: read from JSON and checked. Every error starts with the path of the field it
//! is about (`cache_key.headers[1]: ...`), which the gateway maps to the YAML line.

use plugin_config::{boolean, header_names, is_token, list, object, Fields};
use serde_json::Value;

/// The fields a config may have.
const KNOWN: [&str; 7] = [
    "ttl",
    "methods",
    "statuses",
    "cache_key",
    "cache_authorized",
    "lock_timeout",
    "stale_if_error",
];

/// Default of `ttl`: the freshness of a response whose `Cache-Control` sets none.
pub const DEFAULT_TTL_MS: u64 = 60_000;
/// Default of `lock_timeout`: how long a request waits for another's fill of its key.
pub const DEFAULT_LOCK_TIMEOUT_MS: u64 = 5_000;
/// The longest `lock_timeout` (the gateway waits at most this long in a lookup).
pub const MAX_LOCK_TIMEOUT_MS: u64 = 60_000;
/// The longest `ttl` and `stale_if_error`: one year.
pub const MAX_TTL_MS: u64 = 365 * 86_400_000;

/// The plugin's settings for one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Freshness of a response without `s-maxage` or `max-age`, in milliseconds.
    pub ttl_ms: u64,
    /// Methods whose responses are cached (upper case). `HEAD` is answered from the `GET` entry.
    pub methods: Vec<String>,
    /// Statuses cached.
    pub statuses: Vec<u16>,
    /// Request headers the key includes (lower case).
    pub key_headers: Vec<String>,
    /// Whether the key includes the consumer an earlier filter authenticated the request as.
    pub key_consumer: bool,
    /// Whether requests with `Authorization` are cached (shared by everyone who sends the same key).
    pub cache_authorized: bool,
    /// How long a miss waits for another request's fill of the same key, in milliseconds.
    pub lock_timeout_ms: u64,
    /// How long an expired entry is kept to answer when the upstream fails, in milliseconds (a
    /// response's own `stale-if-error` may make it longer).
    pub stale_if_error_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ttl_ms: DEFAULT_TTL_MS,
            methods: vec!["GET".into(), "HEAD".into()],
            statuses: vec![200, 301, 404],
            key_headers: Vec::new(),
            key_consumer: false,
            cache_authorized: false,
            lock_timeout_ms: DEFAULT_LOCK_TIMEOUT_MS,
            stale_if_error_ms: 0,
        }
    }
}

/// Parses a duration: `250ms`, `5s`, `10m`, `1h`, `1d`, or a number of seconds.
pub fn duration_ms(v: &Value) -> Result<u64, String> {
    let s = match v {
        Value::Number(n) => {
            return n
                .as_u64()
                .and_then(|s| s.checked_mul(1000))
                .ok_or_else(|| format!("expected a duration like 60s, not {n}"))
        }
        Value::String(s) => s.trim(),
        other => return Err(format!("expected a duration like 60s, not {other}")),
    };
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = s.split_at(digits);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("expected a duration like 60s, not {s:?}"))?;
    let scale = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "expected a duration like 60s (ms, s, m, h or d), not {s:?}"
            ))
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too long"))
}

fn bounded_duration(m: &Fields, field: &str, default: u64, max: u64) -> Result<u64, String> {
    match m.get(field) {
        None => Ok(default),
        Some(v) => {
            let ms = duration_ms(v).map_err(|e| format!("{field}: {e}"))?;
            if ms > max {
                return Err(format!("{field}: at most {}s", max / 1000));
            }
            Ok(ms)
        }
    }
}

impl Config {
    /// Reads a route's config; an empty one is every default.
    pub fn parse(config: &str) -> Result<Config, String> {
        let d = Config::default();
        if config.trim().is_empty() {
            return Ok(d);
        }
        let m = object(config, &KNOWN, "ttl, methods, statuses, cache_key")?;
        let ttl_ms = bounded_duration(&m, "ttl", d.ttl_ms, MAX_TTL_MS)?;
        if ttl_ms == 0 {
            return Err("ttl: must be more than 0".into());
        }
        let methods = match m.get("methods") {
            None => d.methods,
            Some(_) => {
                let ms = list(&m, "methods", "methods", |s| {
                    if is_token(s) {
                        Ok(s.to_ascii_uppercase())
                    } else {
                        Err(format!("`{s}` is not a method"))
                    }
                })?;
                if ms.is_empty() {
                    return Err("methods: at least one method".into());
                }
                ms
            }
        };
        let statuses = match m.get("statuses") {
            None => d.statuses,
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, v) in items.iter().enumerate() {
                    match v.as_u64() {
                        Some(s @ 100..=599) => out.push(s as u16),
                        _ => {
                            return Err(format!(
                                "statuses[{i}]: expected a status 100-599, not {v}"
                            ))
                        }
                    }
                }
                if out.is_empty() {
                    return Err("statuses: at least one status".into());
                }
                out
            }
            Some(other) => {
                return Err(format!(
                    "statuses: expected a list of statuses, not {other}"
                ))
            }
        };
        let (key_headers, key_consumer) = match m.get("cache_key") {
            None => (Vec::new(), false),
            Some(Value::Object(k)) => {
                if let Some(f) = k.keys().find(|f| !["headers", "consumer"].contains(&f.as_str())) {
                    return Err(format!(
                        "cache_key.{f}: unknown field (expected headers, consumer)"
                    ));
                }
                let mut h = header_names(k, "headers").map_err(|e| format!("cache_key.{e}"))?;
                if let Some(i) = h.iter().position(|n| n == "*") {
                    return Err(format!("cache_key.headers[{i}]: `*` is not a header name"));
                }
                h.sort();
                h.dedup();
                let consumer = boolean(k, "consumer").map_err(|e| format!("cache_key.{e}"))?;
                (h, consumer)
            }
            Some(other) => {
                return Err(format!(
                    "cache_key: expected a map with headers (a list of header names) and consumer, not {other}"
                ))
            }
        };
        Ok(Config {
            ttl_ms,
            methods,
            statuses,
            key_headers,
            key_consumer,
            cache_authorized: boolean(&m, "cache_authorized")?,
            lock_timeout_ms: bounded_duration(
                &m,
                "lock_timeout",
                d.lock_timeout_ms,
                MAX_LOCK_TIMEOUT_MS,
            )?,
            stale_if_error_ms: bounded_duration(&m, "stale_if_error", 0, MAX_TTL_MS)?,
        })
    }

    /// Whether responses to `method` are cached.
    pub fn caches_method(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m == method)
    }

    /// Whether responses with `status` are cached.
    pub fn caches_status(&self, status: u16) -> bool {
        self.statuses.contains(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_every_default() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(Config::parse("{}").unwrap(), Config::default());
    }

    #[test]
    fn fields_are_read() {
        let c = Config::parse(
            r#"{"ttl": "10m", "methods": ["get", "POST"], "statuses": [200], "cache_key": {"headers": ["Accept-Language", "x-tenant"], "consumer": true},
                "cache_authorized": true, "lock_timeout": "250ms", "stale_if_error": 30}"#,
        )
        .unwrap();
        assert_eq!(c.ttl_ms, 600_000);
        assert_eq!(c.methods, ["GET", "POST"]);
        assert_eq!(c.statuses, [200]);
        assert_eq!(c.key_headers, ["accept-language", "x-tenant"]);
        assert!(c.key_consumer);
        assert!(c.cache_authorized);
        assert_eq!(c.lock_timeout_ms, 250);
        assert_eq!(c.stale_if_error_ms, 30_000);
    }

    #[test]
    fn errors_start_with_the_field() {
        for (config, start) in [
            (r#"{"ttl": "soon"}"#, "ttl: "),
            (r#"{"ttl": 0}"#, "ttl: "),
            (r#"{"ttl": "2y"}"#, "ttl: "),
            (r#"{"methods": ["GET", "B AD"]}"#, "methods[1]: "),
            (r#"{"methods": []}"#, "methods: "),
            (r#"{"statuses": [200, 700]}"#, "statuses[1]: "),
            (r#"{"statuses": "200"}"#, "statuses: "),
            (
                r#"{"cache_key": {"headers": ["ok", "not ok"]}}"#,
                "cache_key.headers[1]: ",
            ),
            (r#"{"cache_key": {"query": true}}"#, "cache_key.query: "),
            (
                r#"{"cache_key": {"consumer": "yes"}}"#,
                "cache_key.consumer: ",
            ),
            (r#"{"cache_key": ["a"]}"#, "cache_key: "),
            (r#"{"cache_authorized": "yes"}"#, "cache_authorized: "),
            (r#"{"lock_timeout": "2m"}"#, "lock_timeout: "),
            (r#"{"stale_if_error": -1}"#, "stale_if_error: "),
            (r#"{"colour": 1}"#, "colour: unknown field"),
            ("[1]", "config: "),
        ] {
            let e = Config::parse(config).unwrap_err();
            assert!(e.starts_with(start), "{config}: {e}");
        }
    }
}
