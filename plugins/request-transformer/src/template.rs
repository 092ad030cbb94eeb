//! Values that name parts of the request, in Kong's syntax: `$(headers.x-user)` (or
//! `$(headers["x-user"])`), `$(query_params.page)` and `$(uri_captures.id)` (a parameter of the
//! route's path template), and in `uri` also `{id}`, the route template's own syntax. Templates are
//! filled from the request as the client sent it, before any rule changes it.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use plugin_config::is_token;

/// What a path segment keeps as it is: RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where the parts of a template come from.
pub trait Source {
    /// A request header's values, joined by `, ` (`None` when absent).
    fn header(&self, name: &str) -> Option<String>;
    /// A query parameter's first value, decoded (`None` when absent).
    fn query(&self, name: &str) -> Option<String>;
    /// A path template parameter as captured, percent-encoding kept (`None` when absent).
    fn param(&self, name: &str) -> Option<String>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Header(String),
    Query(String),
    Capture(String),
}

/// A value with the parts of the request it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Where a filled template goes, which decides how the request's values are written into it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// A header, query or body value: every value as text (path parameters percent-decoded).
    Text,
    /// The path: path parameters as captured, other values percent-encoded as one segment.
    Path,
}

/// A reference that was not in the request.
#[derive(Debug, PartialEq, Eq)]
pub struct Missing {
    /// What it names (``header `x-user` ``).
    pub what: String,
    /// Whether it is a path parameter (which the route's template decides, not the client).
    pub capture: bool,
}

impl Template {
    /// Reads a value; with `braces`, `{name}` is a path parameter too (for `uri`).
    pub fn parse(s: &str, braces: bool) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        loop {
            let dollar = rest.find("$(");
            let brace = if braces { rest.find('{') } else { None };
            let (at, kind) = match (dollar, brace) {
                (Some(d), Some(b)) if b < d => (b, '{'),
                (Some(d), _) => (d, '$'),
                (None, Some(b)) => (b, '{'),
                (None, None) => break,
            };
            text.push_str(&rest[..at]);
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            if kind == '{' {
                let Some(end) = rest[at..].find('}') else {
                    return Err(format!("`{s}`: `{{` without a closing `}}`"));
                };
                let inner = &rest[at + 1..at + end];
                let name = inner.strip_prefix('*').unwrap_or(inner);
                parts.push(Part::Capture(param_name(name, s)?));
                rest = &rest[at + end + 1..];
            } else {
                let Some(end) = rest[at..].find(')') else {
                    return Err(format!("`{s}`: `$(` without a closing `)`"));
                };
                parts.push(reference(rest[at + 2..at + end].trim(), s)?);
                rest = &rest[at + end + 1..];
            }
        }
        text.push_str(rest);
        if !text.is_empty() || parts.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts })
    }

    /// Whether the value names no part of the request.
    #[cfg(test)]
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The literal text between references (to check it as a header value, a path).
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            _ => None,
        })
    }

    /// Fills the template, or says which reference the request does not have.
    pub fn render(&self, src: &impl Source, dest: Dest) -> Result<String, Missing> {
        let mut out = String::new();
        for p in &self.parts {
            let (value, raw) = match p {
                Part::Text(t) => {
                    out.push_str(t);
                    continue;
                }
                Part::Header(n) => (src.header(n), false),
                Part::Query(n) => (src.query(n), false),
                Part::Capture(n) => (src.param(n), true),
            };
            let Some(value) = value else {
                return Err(Missing {
                    what: describe(p),
                    capture: raw,
                });
            };
            match (dest, raw) {
                (Dest::Path, true) => out.push_str(&value),
                (Dest::Path, false) => out.extend(utf8_percent_encode(&value, SEGMENT)),
                (Dest::Text, true) => out.push_str(&percent_decode_str(&value).decode_utf8_lossy()),
                (Dest::Text, false) => out.push_str(&value),
            }
        }
        Ok(out)
    }
}

/// Whether a path has a `.` or `..` segment, percent-encoded or not (an upstream resolves either).
pub fn has_dot_segment(path: &str) -> bool {
    path.split('?')
        .next()
        .unwrap_or("")
        .split('/')
        .any(|seg| matches!(&*percent_decode_str(seg).decode_utf8_lossy(), "." | ".."))
}

fn describe(p: &Part) -> String {
    match p {
        Part::Header(n) => format!("header `{n}`"),
        Part::Query(n) => format!("query parameter `{n}`"),
        Part::Capture(n) => format!("path parameter `{n}`"),
        Part::Text(_) => unreachable!("text is always there"),
    }
}

/// `headers.x-user`, `headers["x-user"]`, `query_params.page`, `uri_captures.id`.
fn reference(inner: &str, whole: &str) -> Result<Part, String> {
    let bad = || {
        format!(
            "`{whole}`: `$({inner})` is not a template; write $(headers.NAME), \
             $(query_params.NAME) or $(uri_captures.NAME)"
        )
    };
    let (source, rest) = inner.split_at(inner.find(['.', '[']).ok_or_else(bad)?);
    let name = if let Some(n) = rest.strip_prefix('.') {
        n
    } else {
        let quoted = rest
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .map(str::trim)
            .ok_or_else(bad)?;
        quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .or_else(|| quoted.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')))
            .ok_or_else(bad)?
    };
    match source {
        "headers" if is_token(name) => Ok(Part::Header(name.to_ascii_lowercase())),
        "headers" => Err(format!("`{whole}`: `{name}` is not a valid header name")),
        "query_params" if !name.is_empty() => Ok(Part::Query(name.to_owned())),
        "uri_captures" => Ok(Part::Capture(param_name(name, whole)?)),
        _ => Err(bad()),
    }
}

/// A path template parameter's name: letters, digits and `_`, as the route's template has them.
fn param_name(name: &str, whole: &str) -> Result<String, String> {
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Err(format!(
            "`{whole}`: `{name}` is not a path parameter name (letters, digits or _, as in the route's template)"
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Req;

    impl Source for Req {
        fn header(&self, name: &str) -> Option<String> {
            (name == "x-user").then(|| "ann lee".into())
        }
        fn query(&self, name: &str) -> Option<String> {
            (name == "q").then(|| "a/b?c".into())
        }
        fn param(&self, name: &str) -> Option<String> {
            match name {
                "id" => Some("7%20x".into()),
                "rest" => Some("a/b".into()),
                _ => None,
            }
        }
    }

    fn render(t: &str, braces: bool, dest: Dest) -> Result<String, Missing> {
        Template::parse(t, braces).unwrap().render(&Req, dest)
    }

    #[test]
    fn dot_segments_are_found_encoded_or_not() {
        for p in [
            "/a/../b",
            "/a/%2e%2E/b",
            "/a/./b",
            "/a/%2E",
            "/..",
            "/a/..?x=1",
        ] {
            assert!(has_dot_segment(p), "{p}");
        }
        for p in ["/a/b", "/a/..b/c", "/a/b.c", "/a/b?x=..", "/%2e%2ex"] {
            assert!(!has_dot_segment(p), "{p}");
        }
    }

    #[test]
    fn literal_values() {
        let t = Template::parse("plain {x} (y) $ x", false).unwrap();
        assert!(t.is_literal());
        assert_eq!(t.render(&Req, Dest::Text).unwrap(), "plain {x} (y) $ x");
        assert!(Template::parse("", false).unwrap().is_literal());
        assert_eq!(render("", false, Dest::Text).unwrap(), "");
    }

    #[test]
    fn references_as_text() {
        assert_eq!(
            render(
                "u=$(headers.X-User) q=$( query_params['q'] ) id=$(uri_captures[\"id\"])",
                false,
                Dest::Text
            )
            .unwrap(),
            "u=ann lee q=a/b?c id=7 x"
        );
        let t = Template::parse("$(headers.x-user)", false).unwrap();
        assert!(!t.is_literal());
        assert_eq!(t.texts().count(), 0);
    }

    #[test]
    fn references_in_a_path() {
        assert_eq!(
            render("/v2/users/{id}/$(query_params.q)/{*rest}", true, Dest::Path).unwrap(),
            "/v2/users/7%20x/a%2Fb%3Fc/a/b"
        );
        assert_eq!(
            render("/u/$(uri_captures.id)", true, Dest::Path).unwrap(),
            "/u/7%20x"
        );
    }

    #[test]
    fn a_missing_source_is_named() {
        let missing = |what: &str, capture| {
            Err(Missing {
                what: what.into(),
                capture,
            })
        };
        assert_eq!(
            render("/v2/{nope}", true, Dest::Path),
            missing("path parameter `nope`", true)
        );
        assert_eq!(
            render("$(headers.x-none)", false, Dest::Text),
            missing("header `x-none`", false)
        );
        assert_eq!(
            render("$(query_params.z)", false, Dest::Text),
            missing("query parameter `z`", false)
        );
    }

    #[test]
    fn bad_templates() {
        for (t, braces, want) in [
            ("$(headers.x", false, "without a closing `)`"),
            ("$(cookies.a)", false, "is not a template"),
            ("$(headers)", false, "is not a template"),
            ("$(headers[x])", false, "is not a template"),
            ("$(headers.a b)", false, "is not a valid header name"),
            ("$(query_params.)", false, "is not a template"),
            ("$(uri_captures.a-b)", false, "is not a path parameter name"),
            ("/a/{id", true, "without a closing `}`"),
            ("/a/{}", true, "is not a path parameter name"),
            ("/a/{a.b}", true, "is not a path parameter name"),
        ] {
            let e = Template::parse(t, braces).unwrap_err();
            assert!(e.contains(want), "{t}: {e}");
        }
    }
}
