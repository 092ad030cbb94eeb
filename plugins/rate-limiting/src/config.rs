//! The route's config: read from JSON, checked, and compiled into [`RateLimiting`]. Every error
//! starts with the path of the field it is about (`limits[1].per: ...`).

use plugin_config::{is_token, object, string, Fields};
use serde_json::{Map, Value};

/// `message` of a 429 when the config does not set it (Kong's words).
pub const DEFAULT_MESSAGE: &str = "API rate limit exceeded";

/// The largest `limit` and `burst`: far above any real limit, and small enough that counts and
/// token arithmetic never overflow.
pub const MAX_LIMIT: u64 = 1_000_000_000;

/// The length of a `group` name at most (it goes into every counter's key).
pub const MAX_GROUP_LEN: usize = 128;

/// The period a limit counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day (UTC days: windows start at midnight UTC).
    Day,
}

impl Period {
    /// Its length in milliseconds.
    pub fn ms(self) -> u64 {
        match self {
            Period::Second => 1_000,
            Period::Minute => 60_000,
            Period::Hour => 3_600_000,
            Period::Day => 86_400_000,
        }
    }

    /// Its name in the config (`minute`).
    pub fn name(self) -> &'static str {
        match self {
            Period::Second => "second",
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
        }
    }
}

/// How a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// A counter per window of the period, aligned on the clock (minutes start at :00).
    FixedWindow,
    /// The current window's counter plus the previous one's, weighted by how much of the previous
    /// window a period ending now still covers.
    SlidingWindow,
    /// A bucket of `burst` tokens refilled at `limit` per period; a request takes one.
    TokenBucket {
        /// The bucket's size.
        burst: u64,
    },
}

impl Algorithm {
    /// Its name in the config and in counters' keys.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::SlidingWindow => "sliding_window",
            Algorithm::TokenBucket { .. } => "token_bucket",
        }
    }
}

/// One limit: at most `limit` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The period.
    pub per: Period,
    /// Requests per period (for a token bucket: its refill rate).
    pub limit: u64,
    /// How it counts.
    pub algorithm: Algorithm,
}

/// What a request's counters are keyed by (one part of the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The authenticated consumer; the client IP for a request without one.
    Consumer,
    /// The client IP, as the gateway resolved it.
    Ip,
    /// A request header's value (lower-cased name); the client IP when the request has none.
    Header(String),
    /// The request's path (without the query).
    Path,
    /// The route's name.
    Route,
}

/// Which headers tell the client about its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderStyle {
    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (IETF draft), for the most
    /// restrictive limit.
    Ietf,
    /// Kong's `X-RateLimit-Limit-<Period>` and `X-RateLimit-Remaining-<Period>`, for every limit.
    XRateLimit,
    /// None (a 429 still has `Retry-After`).
    None,
}

/// What a request gets when the store cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// It goes on, without rate-limit headers (a warning is logged, at most every 30 s).
    Allow,
    /// A 503 with a JSON body.
    Deny,
}

/// Where the counters must live: checked against the kv namespace's backend at init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// In this gateway process (a `local` namespace).
    Local,
    /// Shared by every gateway process (a `redis` namespace).
    Cluster,
}

/// The compiled config of one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimiting {
    /// The limits, all applied to every request.
    pub limits: Vec<Limit>,
    /// What counters are keyed by, in order.
    pub by: Vec<KeyPart>,
    /// Routes with the same group share counters; `None`: counters are the route's own.
    pub group: Option<String>,
    /// Which headers to add.
    pub headers: HeaderStyle,
    /// What to do when the store fails.
    pub on_store_error: OnStoreError,
    /// The backend the kv namespace must have, if the config says.
    pub policy: Option<Policy>,
    /// The `message` of a 429's body.
    pub message: String,
}

const FIELDS: [&str; 7] = [
    "limits",
    "by",
    "group",
    "headers",
    "on_store_error",
    "policy",
    "message",
];

const LIMIT_FIELDS: [&str; 4] = ["per", "limit", "algorithm", "burst"];

/// Reads and checks the route's config (JSON, as the gateway passes it).
pub fn parse(config: &str) -> Result<RateLimiting, String> {
    let m = object(config, &FIELDS, "limits")?;
    let limits = limits(&m)?;
    let by = match m.get("by") {
        None => vec![KeyPart::Consumer],
        Some(Value::String(s)) => vec![key_part(s).map_err(|why| format!("by: {why}"))?],
        Some(Value::Array(items)) if items.is_empty() => {
            return Err("by: empty; name what counters are keyed by, or leave the field out".into())
        }
        Some(Value::Array(items)) => {
            let mut parts = Vec::with_capacity(items.len());
            for (i, v) in items.iter().enumerate() {
                let Value::String(s) = v else {
                    return Err(format!("by[{i}]: expected a string, not {v}"));
                };
                let part = key_part(s).map_err(|why| format!("by[{i}]: {why}"))?;
                if parts.contains(&part) {
                    return Err(format!("by[{i}]: `{s}` is already in the list"));
                }
                parts.push(part);
            }
            parts
        }
        Some(other) => {
            return Err(format!(
                "by: expected a key (consumer, ip, header:<name>, path, route) or a list of them, \
                 not {other}"
            ))
        }
    };
    let group = match string(&m, "group")? {
        None => None,
        Some(g) if g.is_empty() || g.len() > MAX_GROUP_LEN || g.chars().any(char::is_control) => {
            return Err(format!(
                "group: expected a name of 1 to {MAX_GROUP_LEN} characters without control \
                 characters"
            ))
        }
        Some(g) => Some(g.to_string()),
    };
    let headers = match string(&m, "headers")? {
        None | Some("ietf") => HeaderStyle::Ietf,
        Some("x-ratelimit") => HeaderStyle::XRateLimit,
        Some("none") => HeaderStyle::None,
        Some(other) => {
            return Err(format!(
                "headers: expected one of ietf, x-ratelimit, none, not `{other}`"
            ))
        }
    };
    let on_store_error = match string(&m, "on_store_error")? {
        None | Some("allow") => OnStoreError::Allow,
        Some("deny") => OnStoreError::Deny,
        Some(other) => {
            return Err(format!(
                "on_store_error: expected one of allow, deny, not `{other}`"
            ))
        }
    };
    let policy = match string(&m, "policy")? {
        None => None,
        Some("local") => Some(Policy::Local),
        Some("cluster") => Some(Policy::Cluster),
        Some(other) => {
            return Err(format!(
                "policy: expected one of local, cluster, not `{other}`"
            ))
        }
    };
    let message = string(&m, "message")?
        .unwrap_or(DEFAULT_MESSAGE)
        .to_string();
    Ok(RateLimiting {
        limits,
        by,
        group,
        headers,
        on_store_error,
        policy,
        message,
    })
}

fn limits(m: &Fields) -> Result<Vec<Limit>, String> {
    let items = match m.get("limits") {
        None => {
            return Err("limits: missing; list the limits, as [{per: minute, limit: 100}]".into())
        }
        Some(Value::Array(items)) if items.is_empty() => {
            return Err("limits: empty; list the limits, as [{per: minute, limit: 100}]".into())
        }
        Some(Value::Array(items)) => items,
        Some(other) => return Err(format!("limits: expected a list of limits, not {other}")),
    };
    let mut limits: Vec<Limit> = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let path = format!("limits[{i}]");
        let limit = one_limit(&path, v)?;
        if let Some(j) = limits.iter().position(|l| l.per == limit.per) {
            return Err(format!(
                "{path}.per: {} is already limited by limits[{j}]; one limit per period",
                limit.per.name()
            ));
        }
        limits.push(limit);
    }
    Ok(limits)
}

fn one_limit(path: &str, v: &Value) -> Result<Limit, String> {
    let m = map(path, v, &LIMIT_FIELDS)?;
    let per = match m.get("per") {
        None => {
            return Err(format!(
                "{path}.per: missing; one of second, minute, hour, day"
            ))
        }
        Some(Value::String(s)) => match s.as_str() {
            "second" => Period::Second,
            "minute" => Period::Minute,
            "hour" => Period::Hour,
            "day" => Period::Day,
            other => {
                return Err(format!(
                    "{path}.per: expected one of second, minute, hour, day, not `{other}`"
                ))
            }
        },
        Some(other) => {
            return Err(format!(
                "{path}.per: expected one of second, minute, hour, day, not {other}"
            ))
        }
    };
    let limit = count(path, "limit", m)?.ok_or_else(|| {
        format!(
            "{path}.limit: missing; the requests allowed per {}",
            per.name()
        )
    })?;
    let burst = count(path, "burst", m)?;
    let algorithm = match m.get("algorithm") {
        None => Algorithm::FixedWindow,
        Some(Value::String(s)) => match s.as_str() {
            "fixed_window" => Algorithm::FixedWindow,
            "sliding_window" => Algorithm::SlidingWindow,
            "token_bucket" => Algorithm::TokenBucket {
                burst: burst.unwrap_or(limit),
            },
            other => {
                return Err(format!(
                    "{path}.algorithm: expected one of fixed_window, sliding_window, \
                     token_bucket, not `{other}`"
                ))
            }
        },
        Some(other) => {
            return Err(format!(
                "{path}.algorithm: expected one of fixed_window, sliding_window, token_bucket, \
                 not {other}"
            ))
        }
    };
    if burst.is_some() && !matches!(algorithm, Algorithm::TokenBucket { .. }) {
        return Err(format!(
            "{path}.burst: only for algorithm token_bucket (this limit is {})",
            algorithm.name()
        ));
    }
    Ok(Limit {
        per,
        limit,
        algorithm,
    })
}

/// A positive integer field of a limit, at most [`MAX_LIMIT`] (absent: `None`).
fn count(path: &str, field: &str, m: &Map<String, Value>) -> Result<Option<u64>, String> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(c @ 1..=MAX_LIMIT) => Ok(Some(c)),
            _ => Err(format!(
                "{path}.{field}: expected an integer from 1 to {MAX_LIMIT}, not {n}"
            )),
        },
        Some(other) => Err(format!(
            "{path}.{field}: expected an integer from 1 to {MAX_LIMIT}, not {other}"
        )),
    }
}

/// A nested map whose keys are all in `known`.
fn map<'a>(path: &str, v: &'a Value, known: &[&str]) -> Result<&'a Map<String, Value>, String> {
    let Value::Object(m) = v else {
        return Err(format!("{path}: expected a map, not {v}"));
    };
    if let Some(k) = m.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!(
            "{path}.{k}: unknown field (expected one of {})",
            known.join(", ")
        ));
    }
    Ok(m)
}

fn key_part(s: &str) -> Result<KeyPart, String> {
    Ok(match s {
        "consumer" => KeyPart::Consumer,
        "ip" => KeyPart::Ip,
        "path" => KeyPart::Path,
        "route" => KeyPart::Route,
        _ => match s.strip_prefix("header:") {
            Some(name) if is_token(name) => KeyPart::Header(name.to_ascii_lowercase()),
            Some(name) => return Err(format!("`{name}` is not a valid header name")),
            None => {
                return Err(format!(
                    "expected one of consumer, ip, header:<name>, path, route, not `{s}`"
                ))
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(config: Value) -> RateLimiting {
        parse(&config.to_string()).unwrap_or_else(|e| panic!("{config}: {e}"))
    }

    #[test]
    fn defaults() {
        let c = ok(json!({"limits": [{"per": "minute", "limit": 100}]}));
        assert_eq!(
            c,
            RateLimiting {
                limits: vec![Limit {
                    per: Period::Minute,
                    limit: 100,
                    algorithm: Algorithm::FixedWindow
                }],
                by: vec![KeyPart::Consumer],
                group: None,
                headers: HeaderStyle::Ietf,
                on_store_error: OnStoreError::Allow,
                policy: None,
                message: DEFAULT_MESSAGE.into(),
            }
        );
    }

    #[test]
    fn everything_set() {
        let c = ok(json!({
            "limits": [
                {"per": "second", "limit": 5, "algorithm": "token_bucket", "burst": 20},
                {"per": "hour", "limit": 1000, "algorithm": "sliding_window"},
                {"per": "day", "limit": 9, "algorithm": "token_bucket"},
            ],
            "by": ["consumer", "header:X-Tenant", "path", "route", "ip"],
            "group": "public-api",
            "headers": "x-ratelimit",
            "on_store_error": "deny",
            "policy": "cluster",
            "message": "slow down",
        }));
        assert_eq!(c.limits[0].algorithm, Algorithm::TokenBucket { burst: 20 });
        assert_eq!(c.limits[1].algorithm, Algorithm::SlidingWindow);
        assert_eq!(
            c.limits[2].algorithm,
            Algorithm::TokenBucket { burst: 9 },
            "burst defaults to the limit"
        );
        assert_eq!(
            c.by,
            vec![
                KeyPart::Consumer,
                KeyPart::Header("x-tenant".into()),
                KeyPart::Path,
                KeyPart::Route,
                KeyPart::Ip
            ]
        );
        assert_eq!(c.group.as_deref(), Some("public-api"));
        assert_eq!(c.headers, HeaderStyle::XRateLimit);
        assert_eq!(c.on_store_error, OnStoreError::Deny);
        assert_eq!(c.policy, Some(Policy::Cluster));
        assert_eq!(c.message, "slow down");
        assert_eq!(
            ok(json!({"limits": [{"per": "day", "limit": 1}], "by": "header:x-k", "policy": "local", "headers": "none"})).by,
            vec![KeyPart::Header("x-k".into())]
        );
    }

    #[test]
    fn errors_start_with_the_field_path() {
        let l = json!([{"per": "minute", "limit": 1}]);
        for (config, message) in [
            (json!({}), "limits: missing"),
            (json!({"limits": []}), "limits: empty"),
            (json!({"limits": {}}), "limits: expected a list of limits"),
            (json!({"limits": l, "x": 1}), "x: unknown field"),
            (json!({"limits": ["minute"]}), "limits[0]: expected a map"),
            (
                json!({"limits": [{"per": "minute", "limit": 1}, {"per": "week", "limit": 1}]}),
                "limits[1].per: expected one of second, minute, hour, day, not `week`",
            ),
            (json!({"limits": [{"limit": 1}]}), "limits[0].per: missing"),
            (
                json!({"limits": [{"per": 60, "limit": 1}]}),
                "limits[0].per: expected one of",
            ),
            (
                json!({"limits": [{"per": "minute"}]}),
                "limits[0].limit: missing",
            ),
            (
                json!({"limits": [{"per": "minute", "limit": 0}]}),
                "limits[0].limit: expected an integer from 1 to 1000000000, not 0",
            ),
            (
                json!({"limits": [{"per": "minute", "limit": -1}]}),
                "limits[0].limit: expected",
            ),
            (
                json!({"limits": [{"per": "minute", "limit": 1.5}]}),
                "limits[0].limit: expected",
            ),
            (
                json!({"limits": [{"per": "minute", "limit": "10"}]}),
                "limits[0].limit: expected",
            ),
            (
                json!({"limits": [{"per": "minute", "limit": 1_000_000_001u64}]}),
                "limits[0].limit: expected",
            ),
            (
                json!({"limits": [{"per": "minute", "limit": 1, "rate": 2}]}),
                "limits[0].rate: unknown field",
            ),
            (
                json!({"limits": [{"per": "minute", "limit": 1, "algorithm": "leaky"}]}),
                "limits[0].algorithm: expected one of fixed_window, sliding_window, token_bucket",
            ),
            (
                json!({"limits": [{"per": "minute", "limit": 1, "burst": 5}]}),
                "limits[0].burst: only for algorithm token_bucket",
            ),
            (
                json!({"limits": [{"per": "minute", "limit": 1, "algorithm": "token_bucket", "burst": 0}]}),
                "limits[0].burst: expected an integer",
            ),
            (
                json!({"limits": [{"per": "minute", "limit": 1}, {"per": "minute", "limit": 2, "algorithm": "sliding_window"}]}),
                "limits[1].per: minute is already limited by limits[0]",
            ),
            (json!({"limits": l, "by": []}), "by: empty"),
            (json!({"limits": l, "by": 1}), "by: expected a key"),
            (
                json!({"limits": l, "by": "user"}),
                "by: expected one of consumer, ip",
            ),
            (
                json!({"limits": l, "by": ["ip", 2]}),
                "by[1]: expected a string",
            ),
            (
                json!({"limits": l, "by": ["ip", "header:a b"]}),
                "by[1]: `a b` is not a valid header name",
            ),
            (
                json!({"limits": l, "by": ["ip", "header:"]}),
                "by[1]: `` is not a valid header name",
            ),
            (
                json!({"limits": l, "by": ["ip", "ip"]}),
                "by[1]: `ip` is already in the list",
            ),
            (json!({"limits": l, "group": ""}), "group: expected a name"),
            (
                json!({"limits": l, "group": "a\nb"}),
                "group: expected a name",
            ),
            (json!({"limits": l, "group": 1}), "group: expected a string"),
            (
                json!({"limits": l, "headers": "kong"}),
                "headers: expected one of ietf, x-ratelimit, none",
            ),
            (
                json!({"limits": l, "on_store_error": "open"}),
                "on_store_error: expected one of allow, deny",
            ),
            (
                json!({"limits": l, "on_store_error": true}),
                "on_store_error: expected a string",
            ),
            (
                json!({"limits": l, "policy": "redis"}),
                "policy: expected one of local, cluster",
            ),
            (
                json!({"limits": l, "message": 3}),
                "message: expected a string",
            ),
        ] {
            let e = parse(&config.to_string()).expect_err(&config.to_string());
            assert!(e.starts_with(message), "{config}: {e}");
        }
        assert!(parse("").unwrap_err().starts_with("no config:"));
        assert!(parse("[]").unwrap_err().starts_with("config:"));
    }
}
