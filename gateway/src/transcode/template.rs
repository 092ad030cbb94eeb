//! `google.api.http` path templates (`/v1/{name=shelves/*}/books/{book}:publish`): parsed once,
//! matched against request paths, giving the field paths they bind and their values.
//!
//! Grammar (google/api/http.proto):
//! `Template = "/" Segments [ Verb ]`, `Segment = "*" | "**" | LITERAL | Variable`,
//! `Variable = "{" FieldPath [ "=" Segments ] "}"`, `Verb = ":" LITERAL`.

use percent_encoding::percent_decode_str;

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Literal(String),
    /// `*`: one segment.
    One,
    /// `**`: the rest of the path (zero or more segments); only last.
    Rest,
}

/// A variable: the field path it binds and the segments it covers (`start..end`, `end` None: to the
/// end of the path, for `**`).
#[derive(Debug, Clone)]
struct Var {
    field: Vec<String>,
    start: usize,
    multi: bool,
    len: usize,
}

/// A compiled path template.
#[derive(Debug, Clone)]
pub struct Template {
    segs: Vec<Seg>,
    vars: Vec<Var>,
    verb: Option<String>,
}

impl Template {
    /// Parses a template, or says what is wrong with it.
    pub fn parse(t: &str) -> Result<Template, String> {
        let rest = t
            .strip_prefix('/')
            .ok_or_else(|| format!("path template `{t}` does not start with /"))?;
        // The verb is after the last `:` outside braces.
        let (body, verb) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('}') => (&rest[..i], Some(rest[i + 1..].to_owned())),
            _ => (rest, None),
        };
        let mut segs = Vec::new();
        let mut vars = Vec::new();
        let mut chars = body;
        while !chars.is_empty() {
            if let Some(v) = chars.strip_prefix('{') {
                let close = v
                    .find('}')
                    .ok_or_else(|| format!("unclosed `{{` in path template `{t}`"))?;
                let inner = &v[..close];
                let (field, pattern) = match inner.split_once('=') {
                    Some((f, p)) => (f, p),
                    None => (inner, "*"),
                };
                if field.is_empty() || field.split('.').any(|p| p.is_empty()) {
                    return Err(format!("bad field path `{field}` in path template `{t}`"));
                }
                let start = segs.len();
                for p in pattern.split('/') {
                    segs.push(segment(p, t)?);
                }
                let multi = segs[start..].contains(&Seg::Rest) || segs.len() - start > 1;
                vars.push(Var {
                    field: field.split('.').map(str::to_owned).collect(),
                    start,
                    multi,
                    len: segs.len() - start,
                });
                chars = &v[close + 1..];
            } else {
                let end = chars.find('/').unwrap_or(chars.len());
                segs.push(segment(&chars[..end], t)?);
                chars = &chars[end..];
            }
            chars = match chars.strip_prefix('/') {
                Some("") => return Err(format!("path template `{t}` ends with /")),
                Some(r) => r,
                None if chars.is_empty() => chars,
                None => return Err(format!("expected / after a segment in path template `{t}`")),
            };
        }
        if let Some(i) = segs.iter().position(|s| *s == Seg::Rest) {
            if i + 1 != segs.len() {
                return Err(format!(
                    "`**` is supported only as the last segment (path template `{t}`)"
                ));
            }
        }
        Ok(Template { segs, vars, verb })
    }

    /// How specific the template is: literal segments count most, then a fixed length.
    pub fn rank(&self) -> (usize, bool) {
        let literals = self
            .segs
            .iter()
            .filter(|s| matches!(s, Seg::Literal(_)))
            .count();
        (
            literals + usize::from(self.verb.is_some()),
            !self.segs.contains(&Seg::Rest),
        )
    }

    /// The field paths and values `path` binds, if it matches (values percent-decoded; a
    /// multi-segment value keeps its `/`s).
    pub fn matches(&self, path: &str) -> Option<Vec<(Vec<String>, String)>> {
        let rest = path.strip_prefix('/')?;
        let rest = match &self.verb {
            Some(v) => rest.strip_suffix(v.as_str())?.strip_suffix(':')?,
            None => rest,
        };
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let rest_at = self.segs.iter().position(|s| *s == Seg::Rest);
        match rest_at {
            Some(i) if parts.len() < i => return None,
            None if parts.len() != self.segs.len() => return None,
            _ => {}
        }
        for (i, s) in self.segs.iter().enumerate() {
            match s {
                Seg::Literal(l) if parts[i] != l => return None,
                Seg::One if parts[i].is_empty() => return None,
                _ => {}
            }
        }
        let mut out = Vec::with_capacity(self.vars.len());
        for v in &self.vars {
            let end = if v.start + v.len == self.segs.len() && rest_at.is_some() {
                parts.len()
            } else {
                v.start + v.len
            };
            let raw = parts[v.start..end].join("/");
            let value = if v.multi {
                // Reserved characters stay encoded in a multi-segment value (`%2F` is not a `/`).
                raw.split("%2F")
                    .map(|p| percent_decode_str(p).decode_utf8_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("%2F")
            } else {
                percent_decode_str(&raw).decode_utf8_lossy().into_owned()
            };
            out.push((v.field.clone(), value));
        }
        Some(out)
    }

    /// The field paths the template binds.
    pub fn fields(&self) -> impl Iterator<Item = &[String]> {
        self.vars.iter().map(|v| v.field.as_slice())
    }
}

fn segment(p: &str, t: &str) -> Result<Seg, String> {
    match p {
        "" => Err(format!("empty segment in path template `{t}`")),
        "*" => Ok(Seg::One),
        "**" => Ok(Seg::Rest),
        l if l.contains(['{', '}', '*', '=']) => {
            Err(format!("bad segment `{l}` in path template `{t}`"))
        }
        l => Ok(Seg::Literal(l.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(t: &str, p: &str) -> Option<Vec<(String, String)>> {
        Template::parse(t).unwrap().matches(p).map(|v| {
            v.into_iter()
                .map(|(f, v)| (f.join("."), v))
                .collect::<Vec<_>>()
        })
    }

    #[test]
    fn variables_literals_wildcards_and_verbs() {
        assert_eq!(
            bound(
                "/v1/shelves/{shelf}/books/{book.id}",
                "/v1/shelves/7/books/a%20b"
            ),
            Some(vec![
                ("shelf".into(), "7".into()),
                ("book.id".into(), "a b".into())
            ])
        );
        assert_eq!(bound("/v1/shelves/{shelf}", "/v1/shelves/7/books"), None);
        assert_eq!(bound("/v1/shelves/{shelf}", "/v1/shelves/"), None);
        assert_eq!(bound("/v1/shelves/{shelf}", "/v2/shelves/1"), None);
        assert_eq!(
            bound("/v1/{name=shelves/*}", "/v1/shelves/3"),
            Some(vec![("name".into(), "shelves/3".into())])
        );
        assert_eq!(
            bound("/v1/{path=**}", "/v1/a/b/c"),
            Some(vec![("path".into(), "a/b/c".into())])
        );
        assert_eq!(
            bound("/v1/shelves/{shelf}:clear", "/v1/shelves/4:clear"),
            Some(vec![("shelf".into(), "4".into())])
        );
        assert_eq!(bound("/v1/shelves/{shelf}:clear", "/v1/shelves/4"), None);
        assert_eq!(bound("/v1/*/x", "/v1/q/x"), Some(vec![]));
        for bad in ["v1", "/v1/{a", "/v1/**/x", "/v1/", "/v1/{}", "/v1/a*"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Template::parse("/v1/shelves/x").unwrap().rank()
                > Template::parse("/v1/shelves/{s}").unwrap().rank()
        );
    }
}
