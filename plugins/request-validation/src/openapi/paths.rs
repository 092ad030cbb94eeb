//! Finding a request's operation: the servers' base paths, path templates and their matching.

use super::{Api, Found, PathItem};
use crate::params;
use serde_json::Value;

/// A piece of a template's segment: text, or a `{parameter}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part {
    Lit(String),
    Param(String),
}

/// The base paths of `servers` (their URL's path, variables at their defaults); `[""]` without
/// servers.
pub(super) fn servers(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for s in doc
        .get("servers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(url) = s.get("url").and_then(Value::as_str) else {
            continue;
        };
        let mut url = url.to_string();
        if let Some(Value::Object(vars)) = s.get("variables") {
            for (k, var) in vars {
                let d = var.get("default").and_then(Value::as_str).unwrap_or("");
                url = url.replace(&format!("{{{k}}}"), d);
            }
        }
        let path = match url.split_once("//") {
            Some((scheme, rest)) if scheme.is_empty() || scheme.ends_with(':') => {
                rest.find('/').map_or("", |i| &rest[i..]).to_string()
            }
            _ => url,
        };
        let path = path.trim_end_matches('/').to_string();
        if !out.contains(&path) {
            out.push(path);
        }
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

pub(super) fn parse_template(t: &str) -> Result<Vec<Vec<Part>>, String> {
    t.split('/')
        .skip(1)
        .map(|seg| {
            let mut parts = Vec::new();
            let mut rest = seg;
            while !rest.is_empty() {
                match rest.find('{') {
                    Some(0) => {
                        let end = rest.find('}').ok_or("a `{` without `}`")?;
                        let name = &rest[1..end];
                        if name.is_empty() {
                            return Err("an empty `{}`".to_string());
                        }
                        if matches!(parts.last(), Some(Part::Param(_))) {
                            return Err("two parameters with nothing between them".to_string());
                        }
                        parts.push(Part::Param(name.to_string()));
                        rest = &rest[end + 1..];
                    }
                    Some(i) => {
                        parts.push(Part::Lit(rest[..i].to_string()));
                        rest = &rest[i..];
                    }
                    None => {
                        parts.push(Part::Lit(rest.to_string()));
                        rest = "";
                    }
                }
            }
            Ok(parts)
        })
        .collect()
}

/// Matches one path segment (as sent) against a template segment; captures parameters.
fn match_segment(parts: &[Part], seg: &str, caught: &mut Vec<(String, String)>) -> bool {
    match parts.split_first() {
        None => seg.is_empty(),
        Some((Part::Lit(l), rest)) => seg
            .strip_prefix(l.as_str())
            .is_some_and(|s| match_segment(rest, s, caught)),
        Some((Part::Param(name), rest)) => {
            // A parameter takes at least one character, up to where the rest matches.
            let n = caught.len();
            for end in (1..=seg.len()).filter(|i| seg.is_char_boundary(*i)) {
                caught.push((name.clone(), seg[..end].to_string()));
                if match_segment(rest, &seg[end..], caught) {
                    return true;
                }
                caught.truncate(n);
            }
            false
        }
    }
}

impl Api {
    /// The operation for `method` and `path` (as sent, percent-encoded). Among templates that
    /// match, the one with literal segments first wins (`/pets/mine` over `/pets/{id}`).
    pub fn find(&self, method: &str, path: &str) -> Found<'_> {
        // The path item, its parameters, and which of its segments are literal.
        type Match<'a> = (&'a PathItem, Vec<(String, String)>, Vec<bool>);
        let mut best: Option<Match> = None;
        for base in &self.base_paths {
            let Some(rest) = path.strip_prefix(base.as_str()) else {
                continue;
            };
            if !rest.starts_with('/') {
                continue;
            }
            let segs: Vec<&str> = rest.split('/').skip(1).collect();
            for item in &self.paths {
                if item.segments.len() != segs.len() {
                    continue;
                }
                let mut caught = Vec::new();
                if !item
                    .segments
                    .iter()
                    .zip(&segs)
                    .all(|(parts, seg)| match_segment(parts, seg, &mut caught))
                {
                    continue;
                }
                let rank: Vec<bool> = item
                    .segments
                    .iter()
                    .map(|parts| parts.iter().all(|p| matches!(p, Part::Lit(_))))
                    .collect();
                if best.as_ref().is_none_or(|(_, _, r)| rank > *r) {
                    best = Some((item, caught, rank));
                }
            }
        }
        let Some((item, caught, _)) = best else {
            return Found::NoPath;
        };
        let upper = method.to_ascii_uppercase();
        let op = item
            .ops
            .iter()
            .find(|o| o.method == upper)
            // HEAD is GET without the body.
            .or_else(|| {
                (upper == "HEAD")
                    .then(|| item.ops.iter().find(|o| o.method == "GET"))
                    .flatten()
            });
        match op {
            Some(op) => Found::Op(
                op,
                caught
                    .into_iter()
                    .map(|(n, v)| (n, params::decode_path(&v)))
                    .collect(),
            ),
            None => Found::NoMethod(
                &item.template,
                item.ops.iter().map(|o| o.method.clone()).collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_match_segments_and_literals_win() {
        let api = Api {
            base_paths: vec!["/v1".into()],
            paths: ["/pets/{id}", "/pets/mine", "/files/{name}.{ext}"]
                .iter()
                .map(|t| PathItem {
                    template: t.to_string(),
                    segments: parse_template(t).unwrap(),
                    ops: vec![],
                })
                .collect(),
        };
        let template = |path: &str| match api.find("GET", path) {
            Found::NoMethod(t, _) => Some(t.to_string()),
            _ => None,
        };
        assert_eq!(template("/v1/pets/7").as_deref(), Some("/pets/{id}"));
        assert_eq!(template("/v1/pets/mine").as_deref(), Some("/pets/mine"));
        assert_eq!(
            template("/v1/files/a.b.json").as_deref(),
            Some("/files/{name}.{ext}")
        );
        assert_eq!(template("/pets/7"), None);
        assert_eq!(template("/v1/pets/"), None);
        assert_eq!(template("/v1/pets/7/x"), None);
        assert_eq!(template("/v1x/pets/7"), None);
        let mut caught = Vec::new();
        let parts = parse_template("/{name}.{ext}").unwrap();
        assert!(match_segment(&parts[0], "a.b.json", &mut caught));
        assert_eq!(
            caught,
            [("name".into(), "a".into()), ("ext".into(), "b.json".into())]
        );
        assert!(parse_template("/a/{}").is_err());
        assert!(parse_template("/a/{x").is_err());
    }

    #[test]
    fn servers_give_base_paths() {
        let doc = json!({"servers": [
            {"url": "https://api.example.com/v1/"},
            {"url": "/v2"},
            {"url": "{scheme}://example.com/{version}", "variables": {
                "scheme": {"default": "https"}, "version": {"default": "v3"}}},
            {"url": "https://example.com"}
        ]});
        assert_eq!(servers(&doc), ["/v1", "/v2", "/v3", ""]);
        assert_eq!(servers(&json!({})), [""]);
    }
}
