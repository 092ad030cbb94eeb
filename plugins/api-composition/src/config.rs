//! The route's config: read from JSON, checked, and compiled into [`Config`], the calls and the way
//! their answers are merged. Every error starts with the path of the field it is about
//! (`calls[1].path: ...`).

use crate::template::Template;
use gateway_plugin_sdk::http::MAX_SEND_ALL;
use plugin_config::{is_token, object, Fields};
use serde_json::Value;

/// A call's `timeout` when the config does not set one.
pub const DEFAULT_TIMEOUT_MS: u32 = 3000;

/// The longest `timeout`: the host bounds every callout by 60 s.
pub const MAX_TIMEOUT_MS: u32 = 60_000;

/// The key of the failures in an answer with `on_error: partial`, so no call may be named so.
pub const ERRORS_KEY: &str = "errors";

/// Headers of a call that the host writes itself (or that would make the request something else).
const OWN_HEADERS: [&str; 4] = ["host", "content-length", "transfer-encoding", "connection"];

/// How the answers are put together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// One object, each answer under its call's name.
    Object,
    /// One array, the answers in the order of the calls.
    Array,
}

/// What a failed call does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// The whole request answers 502.
    Fail,
    /// The call's value is null and an entry of `errors` says why.
    Partial,
}

/// A JSON body whose strings are templates.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonTemplate {
    /// A value without templates (a number, a boolean, null, or a string without placeholders).
    Literal(Value),
    /// A string with placeholders.
    String(Template),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
}

/// One upstream call.
#[derive(Debug, Clone)]
pub struct Call {
    /// Its key in the merged object, and its name in errors and logs.
    pub name: String,
    /// The gateway upstream it goes to (granted to the plugin).
    pub upstream: String,
    pub method: String,
    /// Path and query.
    pub path: Template,
    /// Header names (lower case) and value templates, in config order.
    pub headers: Vec<(String, Template)>,
    pub body: Option<JsonTemplate>,
    pub timeout_ms: u32,
    /// With `on_error: partial`, a failure of this call still fails the request.
    pub required: bool,
}

/// The compiled config of one route.
#[derive(Debug, Clone)]
pub struct Config {
    pub calls: Vec<Call>,
    pub merge: Merge,
    pub on_error: OnError,
}

const FIELDS: [&str; 3] = ["calls", "merge", "on_error"];

const CALL_FIELDS: [&str; 8] = [
    "name", "upstream", "method", "path", "headers", "body", "timeout", "required",
];

/// Reads and checks the route's config (JSON, as the gateway passes it).
pub fn parse(config: &str) -> Result<Config, String> {
    let m = object(config, &FIELDS, "calls")?;
    let merge = match m.get("merge") {
        None => Merge::Object,
        Some(Value::String(s)) if s == "object" => Merge::Object,
        Some(Value::String(s)) if s == "array" => Merge::Array,
        Some(other) => return Err(format!("merge: expected object or array, not {other}")),
    };
    let on_error = match m.get("on_error") {
        None => OnError::Fail,
        Some(Value::String(s)) if s == "fail" => OnError::Fail,
        Some(Value::String(s)) if s == "partial" => OnError::Partial,
        Some(other) => return Err(format!("on_error: expected fail or partial, not {other}")),
    };
    let items = match m.get("calls") {
        None => {
            return Err(
                "calls: missing; list the upstream calls whose answers make the response \
                        ({name, upstream, path})"
                    .into(),
            )
        }
        Some(Value::Array(items)) => items,
        Some(other) => return Err(format!("calls: expected a list of calls, not {other}")),
    };
    if items.is_empty() {
        return Err("calls: expected at least one call".into());
    }
    if items.len() > MAX_SEND_ALL {
        return Err(format!(
            "calls: {} calls, at most {MAX_SEND_ALL} (what the gateway sends at once)",
            items.len()
        ));
    }
    let mut calls: Vec<Call> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("calls[{i}]");
        let call = parse_call(item, &at, merge)?;
        if let Some(j) = calls.iter().position(|c| c.name == call.name) {
            return Err(format!(
                "{at}.name: `{}` is also the name of calls[{j}] (names are the answer's keys)",
                call.name
            ));
        }
        calls.push(call);
    }
    Ok(Config {
        calls,
        merge,
        on_error,
    })
}

fn parse_call(item: &Value, at: &str, merge: Merge) -> Result<Call, String> {
    let Value::Object(m) = item else {
        return Err(format!(
            "{at}: expected a call ({{name, upstream, path}}), not {item}"
        ));
    };
    if let Some(k) = m.keys().find(|k| !CALL_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "{at}.{k}: unknown field (expected one of {})",
            CALL_FIELDS.join(", ")
        ));
    }
    let name = required_string(m, at, "name")?;
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(format!(
            "{at}.name: `{name}` may hold only letters, digits, `_`, `-` and `.`"
        ));
    }
    if merge == Merge::Object && name == ERRORS_KEY {
        return Err(format!(
            "{at}.name: `{ERRORS_KEY}` is where failed calls are listed; name the call otherwise"
        ));
    }
    let upstream = required_string(m, at, "upstream")?;
    let method = match m.get("method") {
        None => "GET".to_string(),
        Some(Value::String(s)) if is_token(s) => s.to_ascii_uppercase(),
        Some(other) => return Err(format!("{at}.method: expected a method, not {other}")),
    };
    let path = match m.get("path") {
        None => Template::parse("/").expect("a literal"),
        Some(Value::String(s)) => path_template(s).map_err(|e| format!("{at}.path: {e}"))?,
        Some(other) => return Err(format!("{at}.path: expected a path template, not {other}")),
    };
    let headers = headers(m, at)?;
    let body = match m.get("body") {
        None => None,
        Some(v @ (Value::Object(_) | Value::Array(_))) => {
            if method == "GET" || method == "HEAD" {
                return Err(format!(
                    "{at}.body: a {method} has no body; set `method` (POST, PUT, ...)"
                ));
            }
            Some(json_template(v, &format!("{at}.body"))?)
        }
        Some(other) => {
            return Err(format!(
                "{at}.body: expected the JSON body as a map or a list (its strings are templates), \
                 not {other}"
            ))
        }
    };
    let timeout_ms = match m.get("timeout") {
        None => DEFAULT_TIMEOUT_MS,
        Some(v) => timeout_ms(v).map_err(|e| format!("{at}.timeout: {e}"))?,
    };
    let required = match m.get("required") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "{at}.required: expected true or false, not {other}"
            ))
        }
    };
    Ok(Call {
        name,
        upstream,
        method,
        path,
        headers,
        body,
        timeout_ms,
        required,
    })
}

fn required_string(m: &Fields, at: &str, field: &str) -> Result<String, String> {
    match m.get(field) {
        None => Err(format!("{at}.{field}: missing")),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(other) => Err(format!(
            "{at}.{field}: expected a non-empty string, not {other}"
        )),
    }
}

/// A path-and-query template: once its placeholders are filled with a plain value, a path starting
/// with `/`, of visible ASCII, without a fragment or a `.`/`..` segment.
fn path_template(s: &str) -> Result<Template, String> {
    let t = Template::parse(s)?;
    let sample = t.sample("x");
    if !sample.starts_with('/') {
        return Err(format!("`{s}` must start with `/`"));
    }
    if !sample.bytes().all(|b| b.is_ascii_graphic()) || sample.contains(['#', '{', '}']) {
        return Err(format!(
            "`{s}` is not a path (no spaces, fragments, braces or non-ASCII; percent-encode them)"
        ));
    }
    let path = sample.split('?').next().unwrap_or_default();
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!("`{s}` has a `.` or `..` segment"));
    }
    Ok(t)
}

fn headers(m: &Fields, at: &str) -> Result<Vec<(String, Template)>, String> {
    let map = match m.get("headers") {
        None => return Ok(Vec::new()),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(format!(
                "{at}.headers: expected a map of header names to value templates, not {other}"
            ))
        }
    };
    let mut out = Vec::with_capacity(map.len());
    for (name, v) in map {
        let field = format!("{at}.headers.{name}");
        if !is_token(name) {
            return Err(format!("{field}: `{name}` is not a valid header name"));
        }
        let name = name.to_ascii_lowercase();
        if OWN_HEADERS.contains(&name.as_str()) {
            return Err(format!(
                "{field}: `{name}` is written by the gateway for each call"
            ));
        }
        let Value::String(s) = v else {
            return Err(format!("{field}: expected a value template, not {v}"));
        };
        let t = Template::parse(s).map_err(|e| format!("{field}: {e}"))?;
        if t.literal_text()
            .bytes()
            .any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Err(format!("{field}: a header value has no control characters"));
        }
        out.push((name, t));
    }
    Ok(out)
}

fn json_template(v: &Value, at: &str) -> Result<JsonTemplate, String> {
    Ok(match v {
        Value::String(s) => {
            let t = Template::parse(s).map_err(|e| format!("{at}: {e}"))?;
            if t.is_literal() {
                JsonTemplate::Literal(Value::String(t.literal_text()))
            } else {
                JsonTemplate::String(t)
            }
        }
        Value::Array(items) => JsonTemplate::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| json_template(v, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => JsonTemplate::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), json_template(v, &format!("{at}.{k}"))?)))
                .collect::<Result<_, String>>()?,
        ),
        other => JsonTemplate::Literal(other.clone()),
    })
}

/// A timeout: a number of milliseconds, or a string `250ms` or `2s`; 1 ms to 60 s.
fn timeout_ms(v: &Value) -> Result<u32, String> {
    let expected = "expected milliseconds (250) or a duration (250ms, 2s)";
    let ms = match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| format!("{expected}, not {n}"))?,
        Value::String(s) => {
            let s = s.trim();
            let digits = s.bytes().take_while(u8::is_ascii_digit).count();
            let (n, unit) = s.split_at(digits);
            let scale = match unit.trim() {
                "ms" => 1,
                "s" => 1000,
                _ => return Err(format!("{expected}, not {s:?}")),
            };
            n.parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(scale))
                .ok_or_else(|| format!("{expected}, not {s:?}"))?
        }
        other => return Err(format!("{expected}, not {other}")),
    };
    match u32::try_from(ms) {
        Ok(ms @ 1..=MAX_TIMEOUT_MS) => Ok(ms),
        _ => Err(format!(
            "{ms} ms; expected 1 ms to {} s (the gateway's longest call)",
            MAX_TIMEOUT_MS / 1000
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Source;

    fn err(config: &str) -> String {
        parse(config).expect_err("the config should be refused")
    }

    #[test]
    fn defaults() {
        let c = parse(r#"{"calls": [{"name": "users", "upstream": "users"}]}"#).unwrap();
        assert_eq!(c.merge, Merge::Object);
        assert_eq!(c.on_error, OnError::Fail);
        let call = &c.calls[0];
        assert_eq!(
            (call.name.as_str(), call.upstream.as_str()),
            ("users", "users")
        );
        assert_eq!(call.method, "GET");
        assert_eq!(call.path.sample("x"), "/");
        assert!(call.headers.is_empty() && call.body.is_none() && !call.required);
        assert_eq!(call.timeout_ms, DEFAULT_TIMEOUT_MS);
    }

    #[test]
    fn fields() {
        let c = parse(
            r#"{"merge": "array", "on_error": "partial", "calls": [
                {"name": "user", "upstream": "users", "path": "/users/{id}", "timeout": "250ms",
                 "headers": {"X-User": "{header.x-user}", "accept": "application/json"}},
                {"name": "orders", "upstream": "orders", "method": "post", "path": "/search?u={id}",
                 "body": {"user": "{id}", "limit": 10, "tags": ["a", "{query.tag|none}"]},
                 "timeout": 1500, "required": true},
                {"name": "errors", "upstream": "x", "timeout": "2s"}
            ]}"#,
        )
        .unwrap();
        assert_eq!((c.merge, c.on_error), (Merge::Array, OnError::Partial));
        let [user, orders, errors] = &c.calls[..] else {
            panic!("three calls")
        };
        assert_eq!(user.timeout_ms, 250);
        assert_eq!(
            user.path.sources().cloned().collect::<Vec<_>>(),
            [Source::Path("id".into())]
        );
        let mut names: Vec<&str> = user.headers.iter().map(|(n, _)| n.as_str()).collect();
        names.sort();
        assert_eq!(names, ["accept", "x-user"]);
        assert_eq!(orders.method, "POST");
        assert_eq!(orders.timeout_ms, 1500);
        assert!(orders.required);
        let Some(JsonTemplate::Object(body)) = &orders.body else {
            panic!("a body")
        };
        let keys: Vec<&str> = body.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["limit", "tags", "user"]);
        assert_eq!(body[0].1, JsonTemplate::Literal(serde_json::json!(10)));
        assert!(matches!(&body[1].1, JsonTemplate::Array(a)
            if a[0] == JsonTemplate::Literal(serde_json::json!("a"))
            && matches!(a[1], JsonTemplate::String(_))));
        // `errors` is free as a name when the answer is an array.
        assert_eq!(errors.timeout_ms, 2000);
    }

    #[test]
    fn at_most_max_send_all_calls() {
        let calls = |n: usize| {
            let list: Vec<String> = (0..n)
                .map(|i| format!(r#"{{"name": "c{i}", "upstream": "u"}}"#))
                .collect();
            format!(r#"{{"calls": [{}]}}"#, list.join(","))
        };
        assert_eq!(parse(&calls(MAX_SEND_ALL)).unwrap().calls.len(), 32);
        assert_eq!(
            err(&calls(MAX_SEND_ALL + 1)),
            "calls: 33 calls, at most 32 (what the gateway sends at once)"
        );
        assert_eq!(err(&calls(0)), "calls: expected at least one call");
    }

    #[test]
    fn refusals_name_the_field() {
        let call =
            |extra: &str| format!(r#"{{"calls": [{{"name": "a", "upstream": "u"{extra}}}]}}"#);
        for (config, start) in [
            ("".to_string(), "no config:"),
            ("[]".into(), "config:"),
            ("{}".into(), "calls: missing"),
            (r#"{"calls": {}}"#.into(), "calls: expected a list"),
            (
                r#"{"calls": ["users"]}"#.into(),
                "calls[0]: expected a call",
            ),
            (
                r#"{"calls": [{"upstream": "u"}]}"#.into(),
                "calls[0].name: missing",
            ),
            (
                r#"{"calls": [{"name": "a"}]}"#.into(),
                "calls[0].upstream: missing",
            ),
            (
                r#"{"calls": [{"name": "", "upstream": "u"}]}"#.into(),
                "calls[0].name: expected a non-empty",
            ),
            (
                r#"{"calls": [{"name": "a b", "upstream": "u"}]}"#.into(),
                "calls[0].name: `a b` may hold",
            ),
            (
                r#"{"calls": [{"name": "errors", "upstream": "u"}]}"#.into(),
                "calls[0].name: `errors` is where",
            ),
            (
                r#"{"calls": [{"name": "a", "upstream": "u"}, {"name": "a", "upstream": "v"}]}"#
                    .into(),
                "calls[1].name: `a` is also the name of calls[0]",
            ),
            (
                r#"{"calls": [], "merge": "deep"}"#.into(),
                "merge: expected object or array",
            ),
            (
                r#"{"calls": [], "on_error": "ignore"}"#.into(),
                "on_error: expected fail or partial",
            ),
            (
                r#"{"calls": [], "timeout": 5}"#.into(),
                "timeout: unknown field",
            ),
            (
                call(r#", "uri": "/""#),
                "calls[0].uri: unknown field (expected one of name, upstream",
            ),
            (
                call(r#", "upstream": 1"#),
                "calls[0].upstream: expected a non-empty string",
            ),
            (
                call(r#", "method": "GE T""#),
                "calls[0].method: expected a method",
            ),
            (
                call(r#", "path": "users""#),
                "calls[0].path: `users` must start with `/`",
            ),
            (
                call(r#", "path": "/a b""#),
                "calls[0].path: `/a b` is not a path",
            ),
            (
                call(r#", "path": "/a#b""#),
                "calls[0].path: `/a#b` is not a path",
            ),
            (
                call(r#", "path": "/a/{{x}}""#),
                "calls[0].path: `/a/{{x}}` is not a path",
            ),
            (
                call(r#", "path": "/a/../{id}""#),
                "calls[0].path: `/a/../{id}` has a `.` or `..` segment",
            ),
            (
                call(r#", "path": "/u/{id""#),
                "calls[0].path: `/u/{id`: a `{` without",
            ),
            (
                call(r#", "path": "/u/{query.}""#),
                "calls[0].path: `/u/{query.}`: `{query.}` names",
            ),
            (
                call(r#", "path": ["/"]"#),
                "calls[0].path: expected a path template",
            ),
            (
                call(r#", "headers": ["x"]"#),
                "calls[0].headers: expected a map",
            ),
            (
                call(r#", "headers": {"x y": "1"}"#),
                "calls[0].headers.x y: `x y` is not a valid header name",
            ),
            (
                call(r#", "headers": {"Host": "a"}"#),
                "calls[0].headers.Host: `host` is written by the gateway",
            ),
            (
                call(r#", "headers": {"x-a": 1}"#),
                "calls[0].headers.x-a: expected a value template",
            ),
            (
                call(r#", "headers": {"x-a": "{nope"}"#),
                "calls[0].headers.x-a: `{nope`",
            ),
            (
                call(r#", "headers": {"x-a": "a\nb"}"#),
                "calls[0].headers.x-a: a header value has no control",
            ),
            (
                call(r#", "body": {"a": 1}"#),
                "calls[0].body: a GET has no body",
            ),
            (
                call(r#", "method": "POST", "body": "{\"a\": 1}""#),
                "calls[0].body: expected the JSON body as a map",
            ),
            (
                call(r#", "method": "POST", "body": {"a": {"b": ["{x"]}}"#),
                "calls[0].body.a.b[0]: `{x`",
            ),
            (
                call(r#", "timeout": 0"#),
                "calls[0].timeout: 0 ms; expected 1 ms to 60 s",
            ),
            (call(r#", "timeout": "61s""#), "calls[0].timeout: 61000 ms"),
            (
                call(r#", "timeout": "1m""#),
                "calls[0].timeout: expected milliseconds",
            ),
            (
                call(r#", "timeout": "ms""#),
                "calls[0].timeout: expected milliseconds",
            ),
            (
                call(r#", "timeout": -1"#),
                "calls[0].timeout: expected milliseconds",
            ),
            (
                call(r#", "timeout": 1.5"#),
                "calls[0].timeout: expected milliseconds",
            ),
            (
                call(r#", "required": "yes""#),
                "calls[0].required: expected true or false",
            ),
        ] {
            let e = err(&config);
            assert!(
                e.starts_with(start),
                "{config}\n  gave: {e}\n  expected: {start}..."
            );
        }
    }
}
