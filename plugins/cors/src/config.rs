//! The route's config: read from JSON, checked, and compiled into [`Cors`], the policy the handlers
//! apply. Every error names the field it is about.

use plugin_config::{boolean, header_names, is_token, list, object};
use regex_lite::Regex;
use serde_json::Value;

/// `allow_methods` when the config does not set it.
pub const DEFAULT_METHODS: [&str; 6] = ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"];

/// `max_age` (seconds) when the config does not set it; `null` sends no `Access-Control-Max-Age`.
pub const DEFAULT_MAX_AGE: u64 = 5;

/// Which origins are allowed.
#[derive(Debug, Default)]
pub struct Origins {
    /// `"*"` was listed: every origin is allowed and answered with a literal `*`.
    pub any: bool,
    /// Exact origins, lower-cased.
    pub exact: Vec<String>,
    /// Patterns matched against the whole origin.
    pub regexes: Vec<Regex>,
}

/// A list that may be `["*"]`: then the request's own value is echoed.
#[derive(Debug, PartialEq, Eq)]
pub enum Listed {
    /// Echo what the preflight asks for.
    Echo,
    /// These names, and the header value that lists them (`GET, POST`; empty for none).
    Only(Vec<String>, String),
}

/// The compiled policy of one route.
#[derive(Debug)]
pub struct Cors {
    pub origins: Origins,
    pub methods: Listed,
    pub headers: Listed,
    /// `Access-Control-Expose-Headers`, if any are configured.
    pub expose: Option<String>,
    pub credentials: bool,
    /// `Access-Control-Max-Age`, if sent.
    pub max_age: Option<String>,
    pub preflight_continue: bool,
}

const FIELDS: [&str; 8] = [
    "allow_origins",
    "allow_origins_by_regex",
    "allow_methods",
    "allow_headers",
    "expose_headers",
    "allow_credentials",
    "max_age",
    "preflight_continue",
];

/// Reads and checks the route's config (JSON, as the gateway passes it).
pub fn parse(config: &str) -> Result<Cors, String> {
    let m = object(config, &FIELDS, "allow_origins")?;

    let mut origins = Origins::default();
    for o in list(&m, "allow_origins", "strings", |o| match o {
        "*" => Ok(None),
        _ => origin(o).map(Some),
    })? {
        match o {
            None => origins.any = true,
            Some(o) => origins.exact.push(o),
        }
    }
    origins.regexes = list(&m, "allow_origins_by_regex", "strings", |p| {
        Regex::new(&format!("^(?:{p})$")).map_err(|e| format!("`{p}` is not a valid regex: {e}"))
    })?;
    if !m.contains_key("allow_origins") && !m.contains_key("allow_origins_by_regex") {
        return Err("allow_origins: missing; list the allowed origins \
                    (e.g. [\"https://app.example.com\"], or [\"*\"] for any), \
                    or set allow_origins_by_regex"
            .into());
    }

    let credentials = boolean(&m, "allow_credentials")?;
    if credentials && origins.any {
        return Err(
            "allow_credentials: cannot be true with \"*\" in allow_origins \
                    (browsers refuse `*` with credentials); list the origins instead"
                .into(),
        );
    }

    let methods = match m.get("allow_methods") {
        None => listed(DEFAULT_METHODS.iter().map(|s| s.to_string()).collect()),
        Some(_) => listed(list(&m, "allow_methods", "strings", |s| {
            if is_token(s) {
                Ok(s.to_ascii_uppercase())
            } else {
                Err(format!("`{s}` is not a valid name"))
            }
        })?),
    };
    let headers = match m.get("allow_headers") {
        None => Listed::Echo,
        Some(_) => listed(header_names(&m, "allow_headers")?),
    };
    let expose = header_names(&m, "expose_headers")?;
    if credentials && expose.iter().any(|h| h == "*") {
        return Err(
            "expose_headers: `*` is not a wildcard when allow_credentials is true \
                    (browsers read it as a header named `*`); list the headers instead"
                .into(),
        );
    }
    let max_age = match m.get("max_age") {
        None => Some(DEFAULT_MAX_AGE.to_string()),
        Some(Value::Null) => None,
        Some(Value::Number(n)) if n.is_u64() => Some(n.to_string()),
        Some(other) => {
            return Err(format!(
                "max_age: expected a number of seconds (0 or more) or null, not {other}"
            ))
        }
    };
    Ok(Cors {
        origins,
        methods,
        headers,
        expose: (!expose.is_empty()).then(|| expose.join(", ")),
        credentials,
        max_age,
        preflight_continue: boolean(&m, "preflight_continue")?,
    })
}

/// `["*"]` (or any list with `*`) echoes; otherwise the names and their header value.
fn listed(names: Vec<String>) -> Listed {
    if names.iter().any(|n| n == "*") {
        Listed::Echo
    } else {
        let value = names.join(", ");
        Listed::Only(names, value)
    }
}

/// An origin as browsers send it: `scheme://host[:port]` (or `null`), compared lower-cased.
fn origin(s: &str) -> Result<String, String> {
    if s == "null" {
        return Ok(s.to_string());
    }
    let bad = |why: &str| {
        Err(format!(
            "`{s}` is not an origin ({why}); an origin is scheme://host[:port], \
             with no path and no trailing slash"
        ))
    };
    let Some((scheme, rest)) = s.split_once("://") else {
        return bad("no `://`");
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok {
        return bad("bad scheme");
    }
    if rest.is_empty() {
        return bad("no host");
    }
    if rest.contains(['/', '?', '#', '@']) || rest.contains(|c: char| c.is_whitespace()) {
        return bad("it has a path, query, user or space");
    }
    if s.contains('*') {
        return bad("a wildcard belongs in allow_origins_by_regex");
    }
    Ok(s.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(config: &str) -> String {
        parse(config).expect_err("the config should be refused")
    }

    #[test]
    fn defaults() {
        let c = parse(r#"{"allow_origins": ["https://A.example"]}"#).unwrap();
        assert_eq!(c.origins.exact, ["https://a.example"]);
        assert!(!c.origins.any && !c.credentials && !c.preflight_continue);
        let methods = "GET, HEAD, PUT, PATCH, POST, DELETE";
        assert!(matches!(&c.methods, Listed::Only(_, v) if v == methods));
        assert_eq!(c.headers, Listed::Echo);
        assert_eq!(c.expose, None);
        assert_eq!(c.max_age.as_deref(), Some("5"));
    }

    #[test]
    fn fields() {
        let c = parse(
            r#"{"allow_origins": ["*"], "allow_methods": ["get", "*"], "allow_headers": ["X-A", "x-b"],
                "expose_headers": ["X-Total"], "max_age": null, "preflight_continue": true}"#,
        )
        .unwrap();
        assert!(c.origins.any);
        assert_eq!(c.methods, Listed::Echo);
        assert!(matches!(&c.headers, Listed::Only(_, v) if v == "x-a, x-b"));
        assert_eq!(c.expose.as_deref(), Some("x-total"));
        assert_eq!(c.max_age, None);
        assert!(c.preflight_continue);
        let c = parse(
            r#"{"allow_origins_by_regex": ["https://.*\\.example\\.com"], "allow_headers": []}"#,
        )
        .unwrap();
        assert!(c.origins.regexes[0].is_match("https://a.example.com"));
        assert!(!c.origins.regexes[0].is_match("https://a.example.com.evil"));
        assert!(matches!(&c.headers, Listed::Only(n, v) if n.is_empty() && v.is_empty()));
    }

    #[test]
    fn refusals_name_the_field() {
        for (config, field) in [
            ("", "no config"),
            ("\"https://a.example\"", "config"),
            (r#"{"allow_methods": ["GET"]}"#, "allow_origins: missing"),
            (
                r#"{"allow_origins": ["*"], "allow_credentials": true}"#,
                "allow_credentials:",
            ),
            (
                r#"{"allow_origins": ["*"], "origins": []}"#,
                "origins: unknown field",
            ),
            (
                r#"{"allow_origins": "*"}"#,
                "allow_origins: expected a list",
            ),
            (
                r#"{"allow_origins": [1]}"#,
                "allow_origins[0]: expected a string",
            ),
            (
                r#"{"allow_origins": ["https://a.example/"]}"#,
                "allow_origins[0]:",
            ),
            (r#"{"allow_origins": ["a.example"]}"#, "allow_origins[0]:"),
            (
                r#"{"allow_origins": ["https://*.example"]}"#,
                "allow_origins[0]:",
            ),
            (
                r#"{"allow_origins_by_regex": ["https://(a"]}"#,
                "allow_origins_by_regex[0]:",
            ),
            (
                r#"{"allow_origins": ["*"], "allow_credentials": "yes"}"#,
                "allow_credentials:",
            ),
            (
                r#"{"allow_origins": ["*"], "allow_methods": ["GE T"]}"#,
                "allow_methods[0]:",
            ),
            (
                r#"{"allow_origins": ["*"], "allow_headers": ["x:y"]}"#,
                "allow_headers[0]: `x:y` is not a valid header name",
            ),
            (r#"{"allow_origins": ["*"], "max_age": -1}"#, "max_age:"),
            (r#"{"allow_origins": ["*"], "max_age": "5"}"#, "max_age:"),
            (
                r#"{"allow_origins": ["*"], "preflight_continue": 1}"#,
                "preflight_continue:",
            ),
            (
                r#"{"allow_origins": ["https://a.example"], "allow_credentials": true, "expose_headers": ["*"]}"#,
                "expose_headers:",
            ),
        ] {
            let e = err(config);
            assert!(e.starts_with(field), "{config}: {e}");
        }
    }
}
