//! The route's config, Kong's `request-transformer` shape: `http_method`, and `remove`, `rename`,
//! `replace` (with `uri`), `add`, `append`, each with `headers`, `querystring` and `body`. Every
//! error starts with the path of the field it is about.

use crate::template::Template;
use plugin_config::{object, string};
use plugin_transform::json::Json;
use plugin_transform::pointer::Pointer;
use plugin_transform::rules::{header_name, header_value, scalar_text, values, Rules, Sections};
use serde_json::Value;

/// A body rule's value: JSON as written, or a string that names parts of the request.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyValue {
    /// Any JSON value (a map's value; a `"name:value"` string's value is a JSON string).
    Literal(Json),
    /// A string with `$(...)` references; filled, it is a JSON string.
    Template(Template),
}

/// The compiled config of one route.
#[derive(Debug, Default)]
pub struct Config {
    /// The method to send (`http_method`).
    pub method: Option<String>,
    /// The path to send (`replace.uri`), the query kept unless rules change it.
    pub uri: Option<Template>,
    pub headers: Rules<String, Template>,
    pub query: Rules<String, Template>,
    pub body: Rules<Pointer, BodyValue>,
}

const FIELDS: [&str; 6] = [
    "http_method",
    "remove",
    "rename",
    "replace",
    "add",
    "append",
];

/// Reads and checks the route's config (JSON, as the gateway passes it).
pub fn parse(config: &str) -> Result<Config, String> {
    let m = object(
        config,
        &FIELDS,
        "at least one of http_method, remove, rename, replace, add, append",
    )?;
    let sections = Sections::read(&m, |op| match op {
        "replace" => &["headers", "querystring", "body", "uri"],
        _ => &["headers", "querystring", "body"],
    })?;

    let method = string(&m, "http_method")?
        .map(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase()) {
                Ok(s.to_owned())
            } else {
                Err(format!(
                    "http_method: `{s}` is not a method; write it in upper-case letters (GET, POST, ...)"
                ))
            }
        })
        .transpose()?;

    let uri = match sections.get("replace", "uri") {
        None => None,
        Some(Value::String(s)) => Some(uri(s).map_err(|why| format!("replace.uri: {why}"))?),
        Some(other) => {
            return Err(format!(
                "replace.uri: expected a path such as \"/v2/users/{{id}}\", not {other}"
            ))
        }
    };

    let headers = sections.rules("headers", header_name, |op, v| {
        values(op, v, |v| Template::parse(&header_value(v)?, false))
    })?;
    let query = sections.rules(
        "querystring",
        |n| {
            if n.is_empty() {
                Err("a query parameter needs a name".into())
            } else {
                Ok(n.to_owned())
            }
        },
        |op, v| values(op, v, |v| Template::parse(&scalar_text(v)?, false)),
    )?;
    let body = sections.rules("body", Pointer::parse, |_, v| {
        Ok(vec![match v {
            Value::String(s) if s.contains("$(") => BodyValue::Template(Template::parse(s, false)?),
            other => BodyValue::Literal(Json::from(other)),
        }])
    })?;
    plugin_transform::check_body(&body, "body")?;

    let c = Config {
        method,
        uri,
        headers,
        query,
        body,
    };
    if c.method.is_none()
        && c.uri.is_none()
        && c.headers.is_empty()
        && c.query.is_empty()
        && c.body.is_empty()
    {
        return Err(
            "config: no rule; write at least one of http_method, remove, rename, \
                    replace, add, append (see the plugin's README)"
                .into(),
        );
    }
    Ok(c)
}

/// The `uri` template: a path (`/` first; no query, fragment, space or control character), with
/// `{name}` and `$(...)` references.
fn uri(s: &str) -> Result<Template, String> {
    if !s.starts_with('/') {
        return Err(format!("`{s}` is not a path (it must start with /)"));
    }
    let t = Template::parse(s, true)?;
    for text in t.texts() {
        if let Some(c) = text
            .chars()
            .find(|c| matches!(c, '?' | '#' | '{' | '}') || c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "`{s}`: {c:?} cannot be in a path (the query is set with querystring rules; \
                 percent-encode other characters)"
            ));
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config() {
        let c = parse(
            r#"{"http_method": "POST",
                "remove": {"headers": ["x-debug"], "querystring": ["debug"], "body": ["/password"]},
                "rename": {"headers": ["x-old:x-new"], "querystring": {"p": "page"}, "body": ["/a:/b"]},
                "replace": {"uri": "/v2/users/{id}", "headers": ["x-env:prod"], "body": {"/n": 5}},
                "add": {"headers": {"x-user": "$(headers.x-id)"}, "querystring": ["v:2"],
                        "body": ["/meta/by:$(uri_captures.id)", "/s:plain"]},
                "append": {"headers": {"x-tag": ["a", "b"]}, "body": {"/tags": {"k": [1]}}}}"#,
        )
        .unwrap();
        assert_eq!(c.method.as_deref(), Some("POST"));
        assert!(c.uri.is_some());
        assert_eq!(c.headers.remove, ["x-debug"]);
        assert_eq!(c.headers.append.len(), 2);
        assert!(!c.headers.add[0].1.is_literal());
        assert_eq!(c.query.rename, [("p".into(), "page".into())]);
        assert_eq!(c.body.remove, [Pointer::parse("/password").unwrap()]);
        assert_eq!(
            c.body.replace[0].1,
            BodyValue::Literal(Json::parse(b"5").unwrap())
        );
        assert!(matches!(c.body.add[0].1, BodyValue::Template(_)));
        assert_eq!(
            c.body.add[1].1,
            BodyValue::Literal(Json::String("plain".into()))
        );
        assert_eq!(
            c.body.append[0].1,
            BodyValue::Literal(Json::parse(br#"{"k":[1]}"#).unwrap())
        );
        // Only a method, or only a path.
        assert!(parse(r#"{"http_method": "PUT"}"#).is_ok());
        assert!(parse(r#"{"replace": {"uri": "/x"}}"#).is_ok());
    }

    #[test]
    fn refusals_name_the_field() {
        for (config, field) in [
            ("", "no config:"),
            ("[]", "config:"),
            ("{}", "config: no rule"),
            (r#"{"add": {}}"#, "config: no rule"),
            (r#"{"http_method": "get"}"#, "http_method:"),
            (r#"{"http_method": 1}"#, "http_method:"),
            (r#"{"methods": []}"#, "methods: unknown field"),
            (r#"{"add": {"uri": "/x"}}"#, "add.uri: unknown field"),
            (
                r#"{"replace": {"uri": "v2"}}"#,
                "replace.uri: `v2` is not a path",
            ),
            (
                r#"{"replace": {"uri": "/a?b=1"}}"#,
                "replace.uri: `/a?b=1`: '?'",
            ),
            (
                r#"{"replace": {"uri": "/a b"}}"#,
                "replace.uri: `/a b`: ' '",
            ),
            (
                r#"{"replace": {"uri": "/a/{id"}}"#,
                "replace.uri: `/a/{id`: `{` without",
            ),
            (
                r#"{"replace": {"uri": "/a/$(x.y)"}}"#,
                "replace.uri: `/a/$(x.y)`:",
            ),
            (r#"{"replace": {"uri": 5}}"#, "replace.uri: expected a path"),
            (
                r#"{"add": {"headers": ["x-a:$(headers.x"]}}"#,
                "add.headers[0]: `$(headers.x`",
            ),
            (
                r#"{"add": {"headers": ["x:a\u0001"]}}"#,
                "add.headers[0]: `a\\u{1}` is not a valid header value",
            ),
            (
                r#"{"add": {"querystring": [":v"]}}"#,
                "add.querystring[0]: a query parameter needs a name",
            ),
            (
                r#"{"add": {"querystring": {"a": {}}}}"#,
                "add.querystring.a: expected a string",
            ),
            (
                r#"{"add": {"body": {"/a~3": 1}}}"#,
                "add.body: `/a~3`: `/a~3` is not a JSON Pointer",
            ),
            (r#"{"add": {"body": [":1"]}}"#, "add.body[0]: an empty name"),
            (
                r#"{"add": {"body": {"/a": "$(nope.x)"}}}"#,
                "add.body: `/a`: `$(nope.x)`",
            ),
            (r#"{"remove": {"body": ["/l/-"]}}"#, "remove.body: `-`"),
            (
                r#"{"rename": {"body": ["/a:/a/b"]}}"#,
                "rename.body: a field cannot",
            ),
        ] {
            let e = parse(config).expect_err(config);
            assert!(e.starts_with(field), "{config}: {e}");
        }
    }
}
