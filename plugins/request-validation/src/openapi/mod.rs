//! An OpenAPI 3.0 or 3.1 document: its operations (path templates under the servers' base path,
//! methods), their parameters and request bodies, read once at init. Finding the operation of a
//! request is in [`paths`]; the translation of 3.0 schemas to JSON Schema 2020-12 in [`translate`].

mod paths;
mod translate;

pub use translate::prepare;

use serde_json::Value;

use crate::params::{self, Param, ParamSet, Style};
use crate::schema::{escape, field_path, Builder, Loc, SchemaIndex};
use paths::{parse_template, servers, Part};

/// The name of the document among the route's schema documents.
pub const DOC: &str = "openapi";

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The operations of the document.
pub struct Api {
    /// Base paths from `servers` (or `base_path`), without a trailing slash; `""` is the root.
    pub base_paths: Vec<String>,
    pub paths: Vec<PathItem>,
}

/// One entry of `paths`.
pub struct PathItem {
    pub template: String,
    segments: Vec<Vec<Part>>,
    pub ops: Vec<Operation>,
}

/// One operation: what its request must be.
pub struct Operation {
    /// Upper-case.
    pub method: String,
    pub query: ParamSet,
    pub header: ParamSet,
    pub path: ParamSet,
    pub body: Option<RequestBody>,
}

/// An operation's `requestBody`.
pub struct RequestBody {
    pub required: bool,
    pub media: Vec<Media>,
}

/// One media type of a `requestBody`'s `content`.
pub struct Media {
    /// Lower-cased: `application/json`, `application/*`, `*/*`.
    pub range: String,
    pub schema: Option<SchemaIndex>,
    /// How an `application/x-www-form-urlencoded` body's fields are read for the schema.
    pub form: Vec<Param>,
}

/// The operation a request is for, or why there is none.
pub enum Found<'a> {
    Op(&'a Operation, Vec<(String, String)>),
    /// No path of the document matches.
    NoPath,
    /// A path matches (its template), not with this method; the methods it has.
    NoMethod(&'a str, Vec<String>),
}
/// A local `$ref` (`#/components/...`) of the document, as a JSON Pointer.
fn local_ref(r: &str) -> Option<String> {
    let p = r.strip_prefix('#')?;
    Some(
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// Follows a `$ref` of a parameter, request body or path item (at `pointer`) to the object it
/// names; returns that object's pointer.
fn follow(doc: &Value, mut pointer: String) -> Result<String, String> {
    for _ in 0..16 {
        let v = doc
            .pointer(&pointer)
            .ok_or_else(|| format!("{}: missing", field_path("openapi", doc, &pointer)))?;
        match v.get("$ref") {
            Some(Value::String(r)) => {
                pointer = local_ref(r)
                    .filter(|p| doc.pointer(p).is_some())
                    .ok_or_else(|| {
                        format!(
                            "{}: `{r}` is not a reference inside the document",
                            field_path("openapi", doc, &format!("{pointer}/$ref"))
                        )
                    })?;
            }
            _ => return Ok(pointer),
        }
    }
    Err(format!(
        "{}: too many $refs",
        field_path("openapi", doc, &pointer)
    ))
}

/// Reads the operations of the (prepared) document, compiling their schemas with `b`.
pub fn operations(doc: &Value, base_path: Option<&str>, b: &mut Builder) -> Result<Api, String> {
    let base_paths = match base_path {
        Some(p) => vec![p.trim_end_matches('/').to_string()],
        None => servers(doc),
    };
    // Components are checked where they are written (a path's schema reaches them by $ref).
    if let Some(Value::Object(schemas)) = doc.pointer("/components/schemas") {
        for k in schemas.keys() {
            b.meta(DOC, &format!("/components/schemas/{}", escape(k)))?;
        }
    }
    let mut paths = Vec::new();
    let Some(Value::Object(items)) = doc.get("paths") else {
        return Err("openapi.paths: expected a map of the API's paths".into());
    };
    for (template, _) in items {
        let at = follow(doc, format!("/paths/{}", escape(template)))?;
        let field = |p: &str| field_path("openapi", doc, p);
        if !template.starts_with('/') {
            return Err(format!(
                "{}: a path must start with `/`",
                field(&format!("/paths/{}", escape(template)))
            ));
        }
        let segments = parse_template(template)
            .map_err(|e| format!("{}: {e}", field(&format!("/paths/{}", escape(template)))))?;
        let item = &doc.pointer(&at).cloned().unwrap_or_default();
        let shared = param_pointers(doc, &at, item)?;
        let mut ops = Vec::new();
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let op_at = format!("{at}/{method}");
            if !op.is_object() {
                return Err(format!("{}: expected an operation object", field(&op_at)));
            }
            let mut ptrs = shared.clone();
            for (key, p) in param_pointers(doc, &op_at, op)? {
                ptrs.retain(|(k, _)| *k != key);
                ptrs.push((key, p));
            }
            let mut sets = [Loc::Query, Loc::Header, Loc::Path].map(|loc| ParamSet {
                loc,
                params: Vec::new(),
                whole: None,
                undeclared: false,
            });
            for ((name, inn), p) in &ptrs {
                let loc = match inn.as_str() {
                    "query" => Loc::Query,
                    "header" => Loc::Header,
                    "path" => Loc::Path,
                    // Cookies are not checked.
                    _ => continue,
                };
                // "If in is header and the name is Accept, Content-Type or Authorization, the
                // parameter definition SHALL be ignored."
                let lower = name.to_ascii_lowercase();
                if loc == Loc::Header
                    && ["accept", "content-type", "authorization"].contains(&lower.as_str())
                {
                    continue;
                }
                let param = parameter(doc, p, loc, b)?;
                if loc == Loc::Path
                    && !segments
                        .iter()
                        .flatten()
                        .any(|s| *s == Part::Param(name.clone()))
                {
                    return Err(format!(
                        "{}: the path `{template}` has no parameter `{{{name}}}`",
                        field(&format!("{p}/name"))
                    ));
                }
                sets[match loc {
                    Loc::Query => 0,
                    Loc::Header => 1,
                    _ => 2,
                }]
                .params
                .push(param);
            }
            let [query, header, path] = sets;
            let body = match op.get("requestBody") {
                None => None,
                Some(_) => Some(request_body(doc, &format!("{op_at}/requestBody"), b)?),
            };
            ops.push(Operation {
                method: method.to_ascii_uppercase(),
                query,
                header,
                path,
                body,
            });
        }
        paths.push(PathItem {
            template: template.clone(),
            segments,
            ops,
        });
    }
    Ok(Api { base_paths, paths })
}

/// The parameters of a path item or operation: ((name, in), pointer of the parameter object).
#[allow(clippy::type_complexity)]
fn param_pointers(
    doc: &Value,
    at: &str,
    obj: &Value,
) -> Result<Vec<((String, String), String)>, String> {
    let mut out: Vec<((String, String), String)> = Vec::new();
    let Some(list) = obj.get("parameters") else {
        return Ok(out);
    };
    let Value::Array(list) = list else {
        return Err(format!(
            "{}: expected a list of parameters",
            field_path("openapi", doc, &format!("{at}/parameters"))
        ));
    };
    for i in 0..list.len() {
        let p = follow(doc, format!("{at}/parameters/{i}"))?;
        let v = doc.pointer(&p).cloned().unwrap_or_default();
        let field = field_path("openapi", doc, &p);
        let (Some(Value::String(name)), Some(Value::String(inn))) = (v.get("name"), v.get("in"))
        else {
            return Err(format!(
                "{field}: a parameter needs `name` and `in` (path, query, header or cookie)"
            ));
        };
        if !["path", "query", "header", "cookie"].contains(&inn.as_str()) {
            return Err(format!(
                "{field}.in: `{inn}` is not path, query, header or cookie"
            ));
        }
        let name = if inn == "header" {
            name.to_ascii_lowercase()
        } else {
            name.clone()
        };
        let key = (name, inn.clone());
        out.retain(|(k, _)| *k != key);
        out.push((key, p));
    }
    Ok(out)
}

/// One parameter object (at `p`, `$ref`s followed): how to read it and its compiled schema.
fn parameter(doc: &Value, p: &str, loc: Loc, b: &mut Builder) -> Result<Param, String> {
    let v = doc.pointer(p).cloned().unwrap_or_default();
    let field = |k: &str| field_path("openapi", doc, &format!("{p}/{k}"));
    let name = v["name"].as_str().unwrap_or_default();
    let name = if loc == Loc::Header {
        name.to_ascii_lowercase()
    } else {
        name.to_string()
    };
    let required = match v.get("required") {
        None => false,
        Some(Value::Bool(r)) => *r,
        Some(other) => {
            return Err(format!(
                "{}: expected true or false, not {other}",
                field("required")
            ))
        }
    };
    if loc == Loc::Path && !required {
        return Err(format!(
            "{}: a path parameter must be required: true",
            field("required")
        ));
    }
    let style = match (v.get("style").and_then(Value::as_str), loc) {
        (None, Loc::Query) | (Some("form"), Loc::Query) => Style::Form,
        (None | Some("simple"), Loc::Path | Loc::Header) => Style::Simple,
        (Some("spaceDelimited"), Loc::Query) => Style::SpaceDelimited,
        (Some("pipeDelimited"), Loc::Query) => Style::PipeDelimited,
        (Some("deepObject"), Loc::Query) => Style::DeepObject,
        (Some(s), _) => {
            return Err(format!(
                "{}: style `{s}` is not supported for a {} parameter (query: form, \
                 spaceDelimited, pipeDelimited, deepObject; path and header: simple)",
                field("style"),
                loc.as_str()
            ))
        }
        (None, Loc::Body) => Style::Simple,
    };
    let explode = match v.get("explode") {
        None => style == Style::Form,
        Some(Value::Bool(e)) => *e,
        Some(other) => {
            return Err(format!(
                "{}: expected true or false, not {other}",
                field("explode")
            ))
        }
    };
    let (schema_at, json) = if v.get("schema").is_some() {
        (format!("{p}/schema"), false)
    } else if let Some(Value::Object(content)) = v.get("content") {
        let Some((mt, _)) = content.iter().next().filter(|_| content.len() == 1) else {
            return Err(format!(
                "{}: expected exactly one media type",
                field("content")
            ));
        };
        if !is_json(mt) {
            return Err(format!(
                "{}: only JSON media types are supported for parameters",
                field(&format!("content/{}", escape(mt)))
            ));
        }
        (format!("{p}/content/{}/schema", escape(mt)), true)
    } else {
        return Err(format!(
            "{}: a parameter needs `schema` or `content`",
            field_path("openapi", doc, p)
        ));
    };
    let schema_value = doc
        .pointer(&schema_at)
        .cloned()
        .unwrap_or(Value::Bool(true));
    let resolve = |r: &str| local_ref(r).and_then(|p| doc.pointer(&p).cloned());
    let shape = params::shape(&schema_value, &resolve);
    if let params::Shape::Object(_) = shape {
        if style == Style::Form && explode {
            return Err(format!(
                "{}: an object query parameter with style form and explode true is not supported \
                 (use deepObject, or explode: false)",
                field_path("openapi", doc, p)
            ));
        }
    }
    let schema = if doc.pointer(&schema_at).is_some() {
        Some(b.compile(DOC, &schema_at)?)
    } else {
        None
    };
    Ok(Param {
        name,
        shape,
        style,
        explode,
        json,
        schema,
        required,
    })
}

/// An operation's `requestBody` (at `p`).
fn request_body(doc: &Value, p: &str, b: &mut Builder) -> Result<RequestBody, String> {
    let p = follow(doc, p.to_string())?;
    let v = doc.pointer(&p).cloned().unwrap_or_default();
    let field = |k: &str| field_path("openapi", doc, &format!("{p}/{k}"));
    let required = match v.get("required") {
        None => false,
        Some(Value::Bool(r)) => *r,
        Some(other) => {
            return Err(format!(
                "{}: expected true or false, not {other}",
                field("required")
            ))
        }
    };
    let Some(Value::Object(content)) = v.get("content") else {
        return Err(format!(
            "{}: expected a map of media types",
            field("content")
        ));
    };
    let mut media = Vec::new();
    let resolve = |r: &str| local_ref(r).and_then(|p| doc.pointer(&p).cloned());
    for (range, m) in content {
        let (schema, form) = match m.get("schema") {
            Some(s) => (
                Some(b.compile(DOC, &format!("{p}/content/{}/schema", escape(range)))?),
                params::declared(s, &resolve, Loc::Body),
            ),
            None => (None, Vec::new()),
        };
        media.push(Media {
            range: range.to_ascii_lowercase(),
            schema,
            form,
        });
    }
    Ok(RequestBody { required, media })
}

/// The media type of HTML forms, whose fields are checked like query parameters.
pub const FORM: &str = "application/x-www-form-urlencoded";

/// Whether a media type is JSON (`application/json`, `application/problem+json`, ...).
pub fn is_json(media_type: &str) -> bool {
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl RequestBody {
    /// The media range of `content` that a request's content type (its essence, lower-cased)
    /// falls in: the exact type first, then `type/*`, then `*/*`.
    pub fn media_for(&self, essence: &str) -> Option<&Media> {
        let major = essence.split('/').next().unwrap_or("");
        let find = |range: &str| self.media.iter().find(|m| m.range == range);
        find(essence)
            .or_else(|| find(&format!("{major}/*")))
            .or_else(|| find("*/*"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ranges_match_most_specific_first() {
        let rb = RequestBody {
            required: true,
            media: ["*/*", "application/*", "application/json"]
                .map(|r| Media {
                    range: r.into(),
                    schema: None,
                    form: Vec::new(),
                })
                .into(),
        };
        assert_eq!(
            rb.media_for("application/json").unwrap().range,
            "application/json"
        );
        assert_eq!(
            rb.media_for("application/xml").unwrap().range,
            "application/*"
        );
        assert_eq!(rb.media_for("text/plain").unwrap().range, "*/*");
        assert!(is_json("application/merge-patch+json; charset=utf-8"));
        assert!(!is_json("text/json"));
    }
}
