//! Templates: the path, header values and body strings of a call, with placeholders filled from the
//! client's request. `{id}` is a path parameter of the route's template, `{query.page}` a query
//! parameter, `{header.x-user}` a request header; `{query.page|1}` gives a default for an absent
//! value; `{{` and `}}` are literal braces.
//!
//! Where a value lands decides how it is written: percent-encoded in a path or query (so it is one
//! value whatever it holds: `/`, `?`, `&`, `#` and spaces are encoded), checked for line breaks in a
//! header, a plain string in a JSON body (which the body writer escapes).

use percent_encoding::{percent_decode, percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What a value may keep unencoded in a path or query: RFC 3986's unreserved characters.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where a placeholder's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A parameter of the route's path template (`/users/{id}`), percent-decoded.
    Path(String),
    /// A query parameter (the first of that name), decoded as a form (`+` is a space).
    Query(String),
    /// A request header (its first value), by lower-case name.
    Header(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Path(n) => write!(f, "path parameter `{n}`"),
            Source::Query(n) => write!(f, "query parameter `{n}`"),
            Source::Header(n) => write!(f, "header `{n}`"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Value {
        source: Source,
        default: Option<String>,
    },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Where a rendered value goes, which decides how it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// A path and query: values percent-encoded.
    Path,
    /// A header value: values as they are, refused if they hold a control character.
    Header,
    /// A string in a JSON body: values as they are, refused if not UTF-8.
    Body,
}

/// Why a template could not be filled for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// The request has no such value and the placeholder gives no default.
    Missing(Source),
    /// The value cannot go where the placeholder is (`why` says why).
    Invalid(Source, &'static str),
    /// The path came out with a `.` or `..` segment (a value of `..` in a segment of its own),
    /// which would walk out of the path the config names.
    DotSegment(String),
}

/// The client's request, as far as templates read it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Inputs<'a> {
    /// The route's path template parameters, percent-encoded as the host gives them.
    pub path_params: &'a [(String, String)],
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// Every request header, in order.
    pub headers: &'a [(String, String)],
}

impl Inputs<'_> {
    /// The value of `source` in this request, as bytes (decoded), if present.
    pub fn value(&self, source: &Source) -> Option<Vec<u8>> {
        match source {
            Source::Path(name) => self
                .path_params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| percent_decode(v.as_bytes()).collect()),
            Source::Query(name) => {
                let query = self.query?;
                query
                    .split('&')
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
                    .find(|(k, _)| form_decode(k) == name.as_bytes())
                    .map(|(_, v)| form_decode(v))
            }
            Source::Header(name) => self
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_bytes().to_vec()),
        }
    }
}

/// A query string component decoded as a form does: `+` is a space, then percent-decoding.
fn form_decode(s: &str) -> Vec<u8> {
    let spaced = s.replace('+', " ");
    percent_decode(spaced.as_bytes()).collect()
}

/// Whether `name` can be a path parameter's name: as the gateway's router allows them, letters,
/// digits and `_`.
fn is_param_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_')
}

impl Template {
    /// Parses `s`. The error says what is wrong, without the field's path (the caller adds it).
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(i) = rest.find(['{', '}']) {
            text.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("{{") {
                text.push('{');
                rest = after;
            } else if let Some(after) = tail.strip_prefix("}}") {
                text.push('}');
                rest = after;
            } else if tail.starts_with('}') {
                return Err(format!(
                    "`{s}`: a `}}` without its `{{` (write `}}}}` for a brace)"
                ));
            } else {
                let Some(end) = tail.find('}') else {
                    return Err(format!(
                        "`{s}`: a `{{` without its `}}` (write `{{{{` for a brace)"
                    ));
                };
                let inner = &tail[1..end];
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(placeholder(inner).map_err(|why| format!("`{s}`: {why}"))?);
                rest = &tail[end + 1..];
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts })
    }

    /// Whether the template has no placeholder.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The literal text of the template (its placeholders left out).
    pub fn literal_text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                Part::Value { .. } => None,
            })
            .collect()
    }

    /// The sources the template reads, in order.
    #[cfg(test)]
    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.parts.iter().filter_map(|p| match p {
            Part::Value { source, .. } => Some(source),
            Part::Text(_) => None,
        })
    }

    /// The template with every placeholder replaced by `with` (as a literal), to check the shape of
    /// what it makes when the config is read.
    pub fn sample(&self, with: &str) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                Part::Value { .. } => with,
            })
            .collect()
    }

    /// Fills the template for a request, writing each value as `context` needs.
    pub fn render(&self, inputs: &Inputs, context: Context) -> Result<String, RenderError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Value { source, default } => {
                    let value = match (inputs.value(source), default) {
                        (Some(v), _) => v,
                        (None, Some(d)) => d.as_bytes().to_vec(),
                        (None, None) => return Err(RenderError::Missing(source.clone())),
                    };
                    write_value(&mut out, source, &value, context)?;
                }
            }
        }
        if context == Context::Path {
            let path = out.split('?').next().unwrap_or_default();
            if path.split('/').any(|seg| seg == "." || seg == "..") {
                return Err(RenderError::DotSegment(path.to_string()));
            }
        }
        Ok(out)
    }
}

fn write_value(
    out: &mut String,
    source: &Source,
    value: &[u8],
    context: Context,
) -> Result<(), RenderError> {
    match context {
        Context::Path => out.extend(percent_encode(value, VALUE)),
        Context::Header => {
            // RFC 9110 field values: no control characters but tab (CR and LF above all).
            if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(RenderError::Invalid(
                    source.clone(),
                    "holds a control character and cannot go in a header",
                ));
            }
            let text = std::str::from_utf8(value).map_err(|_| {
                RenderError::Invalid(source.clone(), "is not UTF-8 and cannot go in a header")
            })?;
            out.push_str(text);
        }
        Context::Body => {
            let text = std::str::from_utf8(value).map_err(|_| {
                RenderError::Invalid(source.clone(), "is not UTF-8 and cannot go in a JSON body")
            })?;
            out.push_str(text);
        }
    }
    Ok(())
}

/// Reads the inside of `{...}`: `name`, `query.name`, `header.name`, each with an optional
/// `|default`.
fn placeholder(inner: &str) -> Result<Part, String> {
    let (name, default) = match inner.split_once('|') {
        Some((n, d)) => (n, Some(d.to_string())),
        None => (inner, None),
    };
    let source = if let Some(q) = name.strip_prefix("query.") {
        if q.is_empty() {
            return Err("`{query.}` names no query parameter".into());
        }
        Source::Query(q.to_string())
    } else if let Some(h) = name.strip_prefix("header.") {
        if !plugin_config::is_token(h) {
            return Err(format!("`{{{name}}}`: `{h}` is not a header name"));
        }
        Source::Header(h.to_ascii_lowercase())
    } else if is_param_name(name) {
        Source::Path(name.to_string())
    } else {
        return Err(format!(
            "`{{{inner}}}` is not a placeholder (write `{{id}}` for a path parameter, \
             `{{query.name}}`, `{{header.name}}`, or `{{{{` for a brace)"
        ));
    };
    Ok(Part::Value { source, default })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Template {
        Template::parse(s).unwrap()
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_placeholders_and_braces() {
        let x = t("/users/{id}/orders?since={query.since|0}&u={header.X-User}");
        assert_eq!(
            x.sources().cloned().collect::<Vec<_>>(),
            [
                Source::Path("id".into()),
                Source::Query("since".into()),
                Source::Header("x-user".into())
            ]
        );
        assert_eq!(x.literal_text(), "/users//orders?since=&u=");
        assert_eq!(x.sample("x"), "/users/x/orders?since=x&u=x");
        assert!(!x.is_literal());
        let braces = t("{{\"a\": {id}}}");
        assert_eq!(braces.literal_text(), "{\"a\": }");
        assert!(t("plain").is_literal());
        assert_eq!(t("").sample("x"), "");
    }

    #[test]
    fn refuses_what_is_not_a_template() {
        for (s, why) in [
            ("/users/{id", "without its `}`"),
            ("/users/id}", "without its `{`"),
            ("/users/{}", "`{}` is not a placeholder"),
            ("/users/{a b}", "`{a b}` is not a placeholder"),
            ("/users/{path.id}", "`{path.id}` is not a placeholder"),
            ("/x?{query.}", "names no query parameter"),
            ("{header.x y}", "`x y` is not a header name"),
            ("{header.}", "is not a header name"),
        ] {
            let e = Template::parse(s).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
            assert!(e.starts_with(&format!("`{s}`")), "{e}");
        }
    }

    #[test]
    fn fills_from_the_request_and_encodes_for_a_path() {
        let params = h(&[("id", "a%20b"), ("rest", "x%2Fy")]);
        let headers = h(&[("X-User", "ann"), ("x-user", "second"), ("x-t", "a/b?c")]);
        let inputs = Inputs {
            path_params: &params,
            query: Some("q=caf%C3%A9+au+lait&k&e=&q=second&amp=a%26b"),
            headers: &headers,
        };
        let x = t("/u/{id}/{rest}?q={query.q}&k={query.k}&e={query.e}&h={header.x-user}&t={header.x-t}&amp={query.amp}");
        assert_eq!(
            x.render(&inputs, Context::Path).unwrap(),
            "/u/a%20b/x%2Fy?q=caf%C3%A9%20au%20lait&k=&e=&h=ann&t=a%2Fb%3Fc&amp=a%26b"
        );
        // Unreserved characters stay as they are; a value cannot add a parameter.
        let inputs = Inputs {
            query: Some("v=A-z_0.9~%2B%26x%3D1%23"),
            ..Inputs::default()
        };
        assert_eq!(
            t("/s?v={query.v}").render(&inputs, Context::Path).unwrap(),
            "/s?v=A-z_0.9~%2B%26x%3D1%23"
        );
    }

    #[test]
    fn defaults_only_for_absent_values() {
        let inputs = Inputs {
            query: Some("page=&size=5"),
            ..Inputs::default()
        };
        let x = t("/l?page={query.page|1}&size={query.size|20}&sort={query.sort|name asc}");
        assert_eq!(
            x.render(&inputs, Context::Path).unwrap(),
            "/l?page=&size=5&sort=name%20asc"
        );
        assert_eq!(
            t("{query.x|}").render(&inputs, Context::Header).unwrap(),
            ""
        );
    }

    #[test]
    fn missing_values_are_errors() {
        let inputs = Inputs::default();
        assert_eq!(
            t("/u/{id}").render(&inputs, Context::Path),
            Err(RenderError::Missing(Source::Path("id".into())))
        );
        assert_eq!(
            t("{query.q}").render(&inputs, Context::Body),
            Err(RenderError::Missing(Source::Query("q".into())))
        );
        assert_eq!(
            t("Bearer {header.authorization}").render(&inputs, Context::Header),
            Err(RenderError::Missing(Source::Header("authorization".into())))
        );
    }

    #[test]
    fn headers_and_bodies_take_values_as_they_are_when_they_can() {
        let params = h(&[("id", "a%2Fb%20c")]);
        let headers = h(&[("authorization", "Bearer t0k/en")]);
        let inputs = Inputs {
            path_params: &params,
            query: Some("name=J%C3%B6rg&crlf=a%0D%0Ab&bad=%FF"),
            headers: &headers,
        };
        assert_eq!(
            t("{header.authorization}")
                .render(&inputs, Context::Header)
                .unwrap(),
            "Bearer t0k/en"
        );
        assert_eq!(
            t("user {id}: {query.name}")
                .render(&inputs, Context::Body)
                .unwrap(),
            "user a/b c: Jörg"
        );
        assert!(matches!(
            t("x{query.crlf}").render(&inputs, Context::Header),
            Err(RenderError::Invalid(Source::Query(q), _)) if q == "crlf"
        ));
        assert!(matches!(
            t("{query.bad}").render(&inputs, Context::Body),
            Err(RenderError::Invalid(..))
        ));
        assert!(matches!(
            t("{query.bad}").render(&inputs, Context::Header),
            Err(RenderError::Invalid(..))
        ));
        // In a path the bytes are encoded, whatever they are.
        assert_eq!(
            t("/{query.bad}/{query.crlf}")
                .render(&inputs, Context::Path)
                .unwrap(),
            "/%FF/a%0D%0Ab"
        );
    }

    #[test]
    fn a_value_cannot_walk_out_of_the_path() {
        for id in ["..", "%2E%2E", ".", "%2e"] {
            let params = h(&[("id", id)]);
            let inputs = Inputs {
                path_params: &params,
                ..Inputs::default()
            };
            assert!(
                matches!(
                    t("/users/{id}/profile").render(&inputs, Context::Path),
                    Err(RenderError::DotSegment(_))
                ),
                "{id}"
            );
            // Inside a segment, or in the query, dots are only dots.
            assert!(t("/users/x{id}?v={id}")
                .render(&inputs, Context::Path)
                .is_ok());
        }
    }
}
