//! The route's config: read from JSON, checked, and compiled (every schema once) into a
//! [`Validator`]. Every error starts with the field path it is about.

use plugin_config::{object, string};
use serde_json::{Map, Value};

use crate::openapi::{self, Api};
use crate::params::{self, Param, ParamSet};
use crate::schema::{self, Builder, Loc, SchemaIndex, Schemas};

const FIELDS: [&str; 10] = [
    "body_schema",
    "query_schema",
    "header_schema",
    "path_schema",
    "draft",
    "openapi",
    "base_path",
    "unknown_operation",
    "rejected_code",
    "rejected_msg",
];

/// What the route checks.
pub enum Mode {
    /// `body_schema`, `query_schema`, `header_schema`, `path_schema`.
    Schemas {
        body: Option<BodySchema>,
        query: ParamSet,
        header: ParamSet,
        path: ParamSet,
    },
    /// An OpenAPI document; `allow`: requests that match no operation pass.
    OpenApi { api: Api, allow: bool },
}

/// `body_schema`, and how a form body's fields are read for it.
pub struct BodySchema {
    pub schema: SchemaIndex,
    pub form: Vec<Param>,
}

/// The compiled config of one route.
pub struct Validator {
    pub schemas: Schemas,
    pub mode: Mode,
    /// Status of a refusal (`rejected_code`, default 400).
    pub rejected_code: u16,
    /// `message` of a refusal (`rejected_msg`).
    pub rejected_msg: Option<String>,
}

impl Validator {
    /// Whether a request body may have to be read (init's answer to `options`).
    pub fn reads_bodies(&self) -> bool {
        match &self.mode {
            Mode::Schemas { body, .. } => body.is_some(),
            Mode::OpenApi { api, .. } => api
                .paths
                .iter()
                .flat_map(|p| &p.ops)
                .any(|o| o.body.is_some()),
        }
    }
}

/// Reads, checks and compiles the route's config (JSON, as the gateway passes it).
pub fn parse(config: &str) -> Result<Validator, String> {
    let m = object(
        config,
        &FIELDS,
        "body_schema, query_schema, header_schema, path_schema or openapi",
    )?;
    let rejected_code = match m.get("rejected_code") {
        None => 400,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|c| (400..=599).contains(&c)) => {
            n.as_u64().unwrap_or(400) as u16
        }
        Some(other) => {
            return Err(format!(
                "rejected_code: expected an HTTP status from 400 to 599, not {other}"
            ))
        }
    };
    let rejected_msg = string(&m, "rejected_msg")?.map(str::to_string);
    let draft = match string(&m, "draft")? {
        None => jsonschema::Draft::Draft202012,
        Some(d) => schema::draft(d).ok_or_else(|| {
            format!("draft: `{d}` is not a JSON Schema draft this plugin knows (2020-12, 2019-09, 7, 6 or 4)")
        })?,
    };
    let schemas_given: Vec<&str> = [
        "body_schema",
        "query_schema",
        "header_schema",
        "path_schema",
    ]
    .into_iter()
    .filter(|f| m.contains_key(*f))
    .collect();
    match m.get("openapi") {
        Some(doc) => {
            if let Some(f) = schemas_given.first() {
                return Err(format!(
                    "{f}: cannot be set with openapi (the document's operations say what to check)"
                ));
            }
            if m.contains_key("draft") {
                return Err(
                    "draft: not with openapi (3.0 schemas are translated, 3.1 schemas are 2020-12)"
                        .into(),
                );
            }
            let Value::Object(_) = doc else {
                return Err(
                    "openapi: expected the OpenAPI document (3.0 or 3.1) as a map, inline".into(),
                );
            };
            let allow = match string(&m, "unknown_operation")? {
                None | Some("reject") => false,
                Some("allow") => true,
                Some(other) => {
                    return Err(format!(
                        "unknown_operation: expected reject or allow, not `{other}`"
                    ))
                }
            };
            let base_path = match string(&m, "base_path")? {
                Some(p) if !p.starts_with('/') => {
                    return Err(format!("base_path: `{p}` must start with `/`"))
                }
                p => p,
            };
            let doc = openapi::prepare(doc.clone())?;
            let mut b = Builder::new(
                jsonschema::Draft::Draft202012,
                vec![(openapi::DOC, "openapi", doc.clone())],
            )?;
            let api = openapi::operations(&doc, base_path, &mut b)?;
            Ok(Validator {
                schemas: b.schemas,
                mode: Mode::OpenApi { api, allow },
                rejected_code,
                rejected_msg,
            })
        }
        None => {
            for f in ["unknown_operation", "base_path"] {
                if m.contains_key(f) {
                    return Err(format!("{f}: only with openapi"));
                }
            }
            if schemas_given.is_empty() {
                return Err(
                    "no config: expected body_schema, query_schema, header_schema, \
                            path_schema or openapi (and the other fields in the plugin's README)"
                        .into(),
                );
            }
            let mut docs = Vec::new();
            for f in &schemas_given {
                let mut v = m[*f].clone();
                if !matches!(v, Value::Object(_) | Value::Bool(_)) {
                    return Err(format!("{f}: expected a JSON Schema (a map), not {v}"));
                }
                if *f == "header_schema" {
                    lower_header_names(&mut v);
                }
                docs.push((*f, *f, v));
            }
            let values: Map<String, Value> = docs
                .iter()
                .map(|(f, _, v)| (f.to_string(), v.clone()))
                .collect();
            let mut b = Builder::new(draft, docs)?;
            let body = match values.get("body_schema") {
                Some(schema) => Some(BodySchema {
                    schema: b.compile("body_schema", "")?,
                    form: params::declared(schema, &local(schema), Loc::Body),
                }),
                None => None,
            };
            let mut set = |field: &str, loc: Loc| -> Result<ParamSet, String> {
                let Some(schema) = values.get(field) else {
                    return Ok(ParamSet {
                        loc,
                        params: Vec::new(),
                        whole: None,
                        undeclared: false,
                    });
                };
                let whole = Some(b.compile(field, "")?);
                Ok(ParamSet {
                    loc,
                    params: params::declared(schema, &local(schema), loc),
                    whole,
                    undeclared: true,
                })
            };
            let (query, header, path) = (
                set("query_schema", Loc::Query)?,
                set("header_schema", Loc::Header)?,
                set("path_schema", Loc::Path)?,
            );
            Ok(Validator {
                schemas: b.schemas,
                mode: Mode::Schemas {
                    body,
                    query,
                    header,
                    path,
                },
                rejected_code,
                rejected_msg,
            })
        }
    }
}

/// Resolves a `$ref` inside `schema` itself (`#/$defs/x`).
fn local(schema: &Value) -> impl Fn(&str) -> Option<Value> + '_ {
    |r: &str| r.strip_prefix('#').and_then(|p| schema.pointer(p)).cloned()
}

/// Header names are case-insensitive: the names in `header_schema`'s `properties` and `required`
/// are lower-cased, as the request's are.
fn lower_header_names(schema: &mut Value) {
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        *props = std::mem::take(props)
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
    }
    if let Some(Value::Array(req)) = schema.get_mut("required") {
        for r in req.iter_mut() {
            if let Value::String(s) = r {
                *s = s.to_ascii_lowercase();
            }
        }
    }
}
