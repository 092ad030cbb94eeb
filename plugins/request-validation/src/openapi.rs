//! An OpenAPI 3.0 or 3.1 document: its operations (path templates under the servers' base path,
//! methods), their parameters and request bodies, read once at init; and finding the operation of a
//! request. OpenAPI 3.0 schemas are translated to JSON Schema 2020-12 first (`nullable`, boolean
//! `exclusiveMinimum`/`exclusiveMaximum`, `$ref` siblings ignored); 3.1 schemas are 2020-12.

use serde_json::Value;

use crate::params::{self, Param, ParamSet, Style};
use crate::schema::{escape, field_path, Builder, Loc, SchemaIndex};

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

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Param(String),
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
    /// Media ranges (lower-cased, `application/json`, `application/*`, `*/*`) and their schemas.
    pub media: Vec<(String, Option<SchemaIndex>)>,
}

/// The operation a request is for, or why there is none.
pub enum Found<'a> {
    Op(&'a Operation, Vec<(String, String)>),
    /// No path of the document matches.
    NoPath,
    /// A path matches (its template), not with this method; the methods it has.
    NoMethod(&'a str, Vec<String>),
}

/// Reads the document's version and translates a 3.0 document's schemas.
pub fn prepare(mut doc: Value) -> Result<Value, String> {
    let version =
        match doc.get("openapi") {
            Some(Value::String(v)) => v.clone(),
            _ => return Err(
                "openapi.openapi: missing; expected the document's version, \"3.0.x\" or \"3.1.x\""
                    .into(),
            ),
        };
    let v30 = version.starts_with("3.0.") || version == "3.0";
    let v31 = version.starts_with("3.1.") || version == "3.1";
    if !v30 && !v31 {
        return Err(format!(
            "openapi.openapi: version `{version}` is not supported (3.0.x or 3.1.x)"
        ));
    }
    if !doc.get("paths").is_some_and(Value::is_object) {
        return Err("openapi.paths: expected a map of the API's paths".into());
    }
    walk_document(&mut doc, v30);
    Ok(doc)
}

/// Applies the schema translation to every schema of the document: `schema` of parameters, media
/// types and headers, and `components.schemas`.
fn walk_document(v: &mut Value, v30: bool) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                match k.as_str() {
                    "schema" => translate(child, v30),
                    "schemas" => {
                        if let Value::Object(schemas) = child {
                            for s in schemas.values_mut() {
                                translate(s, v30);
                            }
                        }
                    }
                    "example" | "examples" => {}
                    _ => walk_document(child, v30),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| walk_document(i, v30)),
        _ => {}
    }
}

/// One schema (and its subschemas): a 3.0 schema to its 2020-12 equivalent, and in both versions
/// `format: int32`/`int64` as the bounds they mean (JSON Schema's `format` knows neither).
fn translate(s: &mut Value, v30: bool) {
    let Value::Object(m) = s else {
        return;
    };
    if v30 && m.contains_key("$ref") {
        // 3.0: "properties adjacent to a $ref are ignored".
        m.retain(|k, _| k == "$ref");
        return;
    }
    if v30 {
        if m.remove("nullable") == Some(Value::Bool(true)) {
            match m.get_mut("type") {
                Some(Value::String(t)) => {
                    let t = t.clone();
                    m.insert("type".into(), Value::Array(vec![t.into(), "null".into()]));
                }
                Some(Value::Array(ts)) if !ts.contains(&Value::from("null")) => {
                    ts.push("null".into())
                }
                _ => {}
            }
            if let Some(Value::Array(e)) = m.get_mut("enum") {
                if !e.contains(&Value::Null) {
                    e.push(Value::Null);
                }
            }
        }
        for (excl, bound) in [
            ("exclusiveMinimum", "minimum"),
            ("exclusiveMaximum", "maximum"),
        ] {
            if let Some(Value::Bool(b)) = m.get(excl).cloned() {
                m.remove(excl);
                if b {
                    if let Some(n) = m.remove(bound) {
                        m.insert(excl.into(), n);
                    }
                }
            }
        }
    }
    let bounds = match m.get("format").and_then(Value::as_str) {
        Some("int32") => Some((i32::MIN as i64, i32::MAX as i64)),
        Some("int64") => Some((i64::MIN, i64::MAX)),
        _ => None,
    };
    if let Some((lo, hi)) = bounds {
        if !m.contains_key("minimum") && !m.contains_key("exclusiveMinimum") {
            m.insert("minimum".into(), lo.into());
        }
        if !m.contains_key("maximum") && !m.contains_key("exclusiveMaximum") {
            m.insert("maximum".into(), hi.into());
        }
    }
    for (k, child) in m.iter_mut() {
        match k.as_str() {
            "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas" => {
                if let Value::Object(subs) = child {
                    subs.values_mut().for_each(|c| translate(c, v30));
                }
            }
            "allOf" | "anyOf" | "oneOf" | "prefixItems" => {
                if let Value::Array(subs) = child {
                    subs.iter_mut().for_each(|c| translate(c, v30));
                }
            }
            "items"
            | "additionalProperties"
            | "not"
            | "if"
            | "then"
            | "else"
            | "contains"
            | "propertyNames"
            | "unevaluatedItems"
            | "unevaluatedProperties" => translate(child, v30),
            _ => {}
        }
    }
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
    for (range, m) in content {
        let schema = match m.get("schema") {
            Some(_) => Some(b.compile(DOC, &format!("{p}/content/{}/schema", escape(range)))?),
            None => None,
        };
        media.push((range.to_ascii_lowercase(), schema));
    }
    Ok(RequestBody { required, media })
}

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
    pub fn media_for(&self, essence: &str) -> Option<&(String, Option<SchemaIndex>)> {
        let major = essence.split('/').next().unwrap_or("");
        self.media
            .iter()
            .find(|(r, _)| r == essence)
            .or_else(|| self.media.iter().find(|(r, _)| *r == format!("{major}/*")))
            .or_else(|| self.media.iter().find(|(r, _)| r == "*/*"))
    }
}

/// The base paths of `servers` (their URL's path, variables at their defaults); `[""]` without
/// servers.
fn servers(doc: &Value) -> Vec<String> {
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

fn parse_template(t: &str) -> Result<Vec<Vec<Part>>, String> {
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
    fn openapi_3_0_schemas_become_2020_12() {
        let mut s = json!({
            "type": "object",
            "properties": {
                "tag": {"type": "string", "nullable": true, "enum": ["a", "b"]},
                "age": {"type": "integer", "minimum": 0, "exclusiveMinimum": true,
                        "maximum": 10, "exclusiveMaximum": false},
                "id": {"type": "integer", "format": "int32"},
                "owner": {"$ref": "#/components/schemas/Owner", "nullable": true},
                "list": {"type": "array", "items": {"type": "number", "nullable": true}}
            }
        });
        translate(&mut s, true);
        assert_eq!(
            s,
            json!({
                "type": "object",
                "properties": {
                    "tag": {"type": ["string", "null"], "enum": ["a", "b", null]},
                    "age": {"type": "integer", "exclusiveMinimum": 0, "maximum": 10},
                    "id": {"type": "integer", "format": "int32",
                           "minimum": -2147483648i64, "maximum": 2147483647},
                    "owner": {"$ref": "#/components/schemas/Owner"},
                    "list": {"type": "array", "items": {"type": ["number", "null"]}}
                }
            })
        );
        // 3.1 is 2020-12 already: `nullable` means nothing there, and $ref siblings apply.
        let mut s = json!({"$ref": "#/x", "nullable": true, "description": "d"});
        translate(&mut s, false);
        assert_eq!(
            s,
            json!({"$ref": "#/x", "nullable": true, "description": "d"})
        );
    }

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

    #[test]
    fn media_ranges_match_most_specific_first() {
        let rb = RequestBody {
            required: true,
            media: vec![
                ("*/*".into(), None),
                ("application/*".into(), None),
                ("application/json".into(), None),
            ],
        };
        assert_eq!(
            rb.media_for("application/json").unwrap().0,
            "application/json"
        );
        assert_eq!(rb.media_for("application/xml").unwrap().0, "application/*");
        assert_eq!(rb.media_for("text/plain").unwrap().0, "*/*");
        assert!(is_json("application/merge-patch+json; charset=utf-8"));
        assert!(!is_json("text/json"));
    }
}
