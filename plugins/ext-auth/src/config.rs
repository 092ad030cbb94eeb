//! The route's config: read from JSON, checked, and compiled into [`ExtAuth`], the policy the
//! handlers apply. Every error names the field it is about.

use plugin_config::{boolean, header_names, object, string};
use serde_json::Value;

/// `path` when the config does not set it.
pub const DEFAULT_PATH: &str = "/";

/// `request_headers` when the config does not set it: the credentials browsers and API clients send.
pub const DEFAULT_REQUEST_HEADERS: [&str; 2] = ["authorization", "cookie"];

/// `client_headers` when the config does not set it: what a client needs to answer a refusal (a
/// challenge, a redirect to a login page, and the cookies that go with that redirect).
pub const DEFAULT_CLIENT_HEADERS: [&str; 3] = ["www-authenticate", "location", "set-cookie"];

/// `timeout_ms` when the config does not set it.
pub const DEFAULT_TIMEOUT_MS: u32 = 3000;

/// The longest `timeout_ms`: the host bounds every callout by 60 s.
pub const MAX_TIMEOUT_MS: u32 = 60_000;

/// Headers the plugin writes on the auth request itself, so a config may not copy them from the
/// client.
pub const OWN_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "x-forwarded-method",
    "x-forwarded-uri",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-for",
    "x-request-id",
];

/// The method of the auth request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// The compiled policy of one route.
#[derive(Debug)]
pub struct ExtAuth {
    /// The named upstream of the auth service.
    pub upstream: String,
    /// Path and query of the auth request.
    pub path: String,
    pub method: Method,
    /// Client request headers sent to the auth service, lower-cased.
    pub request_headers: Vec<String>,
    /// Whether the client's body (and its `content-type`) is sent too.
    pub request_body: bool,
    /// Headers of a 2xx answer set on the upstream request (and always removed from the client's).
    pub upstream_headers: Vec<String>,
    /// Headers of a refusal passed to the client.
    pub client_headers: Vec<String>,
    pub timeout_ms: u32,
    /// Let requests through (logged) when the auth service cannot answer.
    pub allow_degradation: bool,
}

const FIELDS: [&str; 9] = [
    "upstream",
    "path",
    "method",
    "request_headers",
    "request_body",
    "upstream_headers",
    "client_headers",
    "timeout_ms",
    "allow_degradation",
];

/// Reads and checks the route's config (JSON, as the gateway passes it).
pub fn parse(config: &str) -> Result<ExtAuth, String> {
    let m = object(config, &FIELDS, "upstream")?;

    let upstream = match m.get("upstream") {
        None => {
            return Err("upstream: missing; name the upstream of the auth service \
                        (and grant it to the plugin under `plugins:`)"
                .into())
        }
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(other) => {
            return Err(format!(
                "upstream: expected the name of an upstream, not {other}"
            ))
        }
    };
    let path = match string(&m, "path")? {
        None => DEFAULT_PATH.to_string(),
        Some(s) => path_with_query(s)?,
    };
    let method = match m.get("method") {
        None => Method::Get,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("GET") => Method::Get,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("POST") => Method::Post,
        Some(other) => return Err(format!("method: expected GET or POST, not {other}")),
    };
    let request_body = boolean(&m, "request_body")?;
    if request_body && method == Method::Get {
        return Err("request_body: needs method: POST (servers ignore the body of a GET)".into());
    }
    let request_headers = match m.get("request_headers") {
        None => DEFAULT_REQUEST_HEADERS.map(String::from).to_vec(),
        Some(_) => header_names(&m, "request_headers")?,
    };
    for (i, h) in request_headers.iter().enumerate() {
        if OWN_HEADERS.contains(&h.as_str()) {
            return Err(format!(
                "request_headers[{i}]: `{h}` is written by the plugin itself \
                 (the original host, method, path and scheme go in x-forwarded-*)"
            ));
        }
    }
    let client_headers = match m.get("client_headers") {
        None => DEFAULT_CLIENT_HEADERS.map(String::from).to_vec(),
        Some(_) => header_names(&m, "client_headers")?,
    };
    let timeout_ms = match m.get("timeout_ms") {
        None => DEFAULT_TIMEOUT_MS,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(ms @ 1..) if ms <= u64::from(MAX_TIMEOUT_MS) => ms as u32,
            _ => {
                return Err(format!(
                    "timeout_ms: expected 1 to {MAX_TIMEOUT_MS} (the gateway's longest callout), not {n}"
                ))
            }
        },
        Some(other) => {
            return Err(format!(
                "timeout_ms: expected a number of milliseconds, not {other}"
            ))
        }
    };
    Ok(ExtAuth {
        upstream,
        path,
        method,
        request_headers,
        request_body,
        upstream_headers: header_names(&m, "upstream_headers")?,
        client_headers,
        timeout_ms,
        allow_degradation: boolean(&m, "allow_degradation")?,
    })
}

/// A path with an optional query (`/verify?rd=1`): starts with `/`, visible ASCII only.
fn path_with_query(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!("path: `{s}` must start with `/`"));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) || s.contains('#') {
        return Err(format!(
            "path: `{s}` is not a path (no spaces, fragments or non-ASCII; percent-encode them)"
        ));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(config: &str) -> String {
        parse(config).expect_err("the config should be refused")
    }

    #[test]
    fn defaults() {
        let c = parse(r#"{"upstream": "auth"}"#).unwrap();
        assert_eq!(c.upstream, "auth");
        assert_eq!(c.path, "/");
        assert_eq!(c.method, Method::Get);
        assert_eq!(c.request_headers, ["authorization", "cookie"]);
        assert!(!c.request_body && !c.allow_degradation);
        assert!(c.upstream_headers.is_empty());
        assert_eq!(
            c.client_headers,
            ["www-authenticate", "location", "set-cookie"]
        );
        assert_eq!(c.timeout_ms, 3000);
    }

    #[test]
    fn fields() {
        let c = parse(
            r#"{"upstream": "auth", "path": "/verify?rd=1", "method": "post",
                "request_headers": ["Authorization", "X-Api-Key"], "request_body": true,
                "upstream_headers": ["X-User-Id"], "client_headers": [],
                "timeout_ms": 60000, "allow_degradation": true}"#,
        )
        .unwrap();
        assert_eq!(c.path, "/verify?rd=1");
        assert_eq!(c.method, Method::Post);
        assert_eq!(c.request_headers, ["authorization", "x-api-key"]);
        assert!(c.request_body && c.allow_degradation);
        assert_eq!(c.upstream_headers, ["x-user-id"]);
        assert!(c.client_headers.is_empty());
        assert_eq!(c.timeout_ms, 60_000);
    }

    #[test]
    fn refusals_name_the_field() {
        for (config, field) in [
            ("", "no config"),
            ("\"auth\"", "config"),
            (r#"{"path": "/"}"#, "upstream: missing"),
            (r#"{"upstream": ""}"#, "upstream:"),
            (r#"{"upstream": ["auth"]}"#, "upstream:"),
            (r#"{"upstream": "auth", "uri": "/"}"#, "uri: unknown field"),
            (r#"{"upstream": "auth", "path": "verify"}"#, "path:"),
            (r#"{"upstream": "auth", "path": "/a b"}"#, "path:"),
            (r#"{"upstream": "auth", "path": 1}"#, "path:"),
            (r#"{"upstream": "auth", "method": "PUT"}"#, "method:"),
            (
                r#"{"upstream": "auth", "request_body": true}"#,
                "request_body:",
            ),
            (
                r#"{"upstream": "auth", "method": "POST", "request_body": "yes"}"#,
                "request_body:",
            ),
            (
                r#"{"upstream": "auth", "request_headers": "authorization"}"#,
                "request_headers: expected a list",
            ),
            (
                r#"{"upstream": "auth", "request_headers": ["cookie", "x y"]}"#,
                "request_headers[1]:",
            ),
            (
                r#"{"upstream": "auth", "request_headers": ["X-Forwarded-Uri"]}"#,
                "request_headers[0]:",
            ),
            (
                r#"{"upstream": "auth", "upstream_headers": [1]}"#,
                "upstream_headers[0]: expected a string",
            ),
            (
                r#"{"upstream": "auth", "client_headers": ["a:b"]}"#,
                "client_headers[0]:",
            ),
            (r#"{"upstream": "auth", "timeout_ms": 0}"#, "timeout_ms:"),
            (
                r#"{"upstream": "auth", "timeout_ms": 60001}"#,
                "timeout_ms:",
            ),
            (r#"{"upstream": "auth", "timeout_ms": 1.5}"#, "timeout_ms:"),
            (r#"{"upstream": "auth", "timeout_ms": "3s"}"#, "timeout_ms:"),
            (
                r#"{"upstream": "auth", "allow_degradation": 1}"#,
                "allow_degradation:",
            ),
        ] {
            let e = err(config);
            assert!(e.starts_with(field), "{config}: {e}");
        }
    }
}
