//! JSON Schema through the `jsonschema` crate: compiling the route's schemas once (at init) and
//! turning a failed validation into a flat list of [`Violation`]s, each with the JSON Pointer of the
//! value and what was expected there.

use jsonschema::error::{TypeKind, ValidationErrorKind as K};
use jsonschema::{Draft, Registry, ValidationError, Validator};
use serde_json::Value;
/// Where a violation is in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    Body,
    Query,
    Header,
    Path,
}

impl Loc {
    pub fn as_str(self) -> &'static str {
        match self {
            Loc::Body => "body",
            Loc::Query => "query",
            Loc::Header => "header",
            Loc::Path => "path",
        }
    }
}

/// One thing wrong with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub loc: Loc,
    /// JSON Pointer to the value (in the body, or in the object of the parameters of `loc`).
    pub pointer: String,
    pub expected: String,
    pub message: String,
}

impl Violation {
    pub fn new(loc: Loc, pointer: &str, expected: &str, message: impl Into<String>) -> Violation {
        Violation {
            loc,
            pointer: pointer.to_string(),
            expected: expected.to_string(),
            message: message.into(),
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "in": self.loc.as_str(),
            "pointer": self.pointer,
            "expected": self.expected,
            "message": self.message,
        })
    }
}

/// The URL a schema document of the config is known by (`$ref`s inside it resolve against it).
/// Not fetchable: no loader is registered, so a `$ref` to anything outside the config is a config
/// error.
pub fn resource_url(name: &str) -> String {
    format!("urn:request-validation:{name}")
}

/// The JSON Schema draft of a schema without `$schema`.
pub fn draft(name: &str) -> Option<Draft> {
    match name {
        "2020-12" => Some(Draft::Draft202012),
        "2019-09" => Some(Draft::Draft201909),
        "7" | "draft-07" => Some(Draft::Draft7),
        "6" | "draft-06" => Some(Draft::Draft6),
        "4" | "draft-04" => Some(Draft::Draft4),
        _ => None,
    }
}

/// The route's compiled schemas; a [`SchemaIndex`] names one.
#[derive(Default)]
pub struct Schemas(Vec<Validator>);

/// One compiled schema of a [`Schemas`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaIndex(usize);

/// Compiles the route's schemas: the documents of the config (schemas, or an OpenAPI document whose
/// schemas are compiled by pointer) are resources `$ref`s may point into; nothing else is.
pub struct Builder {
    draft: Draft,
    registry: Registry<'static>,
    pub schemas: Schemas,
    /// The documents, by name: their URL, field path in the config, and content.
    docs: Vec<(String, String, String, Value)>,
}

impl Builder {
    /// `docs`: (name, field path, document). `draft` is for schemas without `$schema`.
    pub fn new(draft: Draft, docs: Vec<(&str, &str, Value)>) -> Result<Builder, String> {
        let mut registry = Registry::new().draft(draft);
        let mut kept = Vec::new();
        for (name, field, doc) in docs {
            let url = resource_url(name);
            registry = registry
                .add(&url, doc.clone())
                .map_err(|e| format!("{field}: {e}"))?;
            kept.push((name.to_string(), url, field.to_string(), doc));
        }
        let registry = registry.prepare().map_err(|e| {
            let field = kept.first().map_or("config", |d| d.2.as_str());
            format!("{field}: {e}; a $ref may only point inside the config's schemas (nothing is fetched)")
        })?;
        Ok(Builder {
            draft,
            registry,
            schemas: Schemas::default(),
            docs: kept,
        })
    }

    /// Compiles the schema at `pointer` (JSON Pointer, "" for the root) of the document `name`.
    pub fn compile(&mut self, name: &str, pointer: &str) -> Result<SchemaIndex, String> {
        let (_, url, field, doc) = self
            .docs
            .iter()
            .find(|d| d.0 == name)
            .ok_or_else(|| format!("config: no document {name}"))?;
        let Some(schema) = doc.pointer(pointer) else {
            return Err(format!("{}: missing", field_path(field, doc, pointer)));
        };
        // A schema's own `$schema` picks its draft; the config's `draft` is for those without.
        let draft = self.draft.detect(schema);
        if draft == Draft::Unknown {
            return Err(format!(
                "{}: not a draft this plugin knows (4, 6, 7, 2019-09 or 2020-12)",
                field_path(field, doc, &format!("{pointer}/$schema"))
            ));
        }
        let explain = |docs: &[(String, String, String, Value)], e: ValidationError, at: &str| {
            let what = match e.kind() {
                K::Referencing(r) => format!(
                    "{r}: a $ref may only point inside the config's schemas (nothing is fetched)"
                ),
                _ => format!("not a valid schema: {e}"),
            };
            let what = docs
                .iter()
                .fold(what, |w, (_, u, f, _)| w.replace(u.as_str(), f));
            format!("{}: {what}", field_path(field, doc, at))
        };
        let mut options = jsonschema::options();
        options = options
            .with_draft(draft)
            .with_registry(&self.registry)
            // `format` is checked, in every draft (OpenAPI's and most validators' habit):
            // date-time, email, uuid, ipv4, ...
            .should_validate_formats(true);
        let validator = if pointer.is_empty() {
            options
                .with_base_uri(url.clone())
                .build(schema)
                .map_err(|e| {
                    let at = e.instance_path().to_string();
                    explain(&self.docs, e, &at)
                })?
        } else {
            // A schema inside a document (OpenAPI's) is checked against its draft where it is,
            // then compiled through a reference, so that its own `$ref`s (`#/components/...`)
            // resolve in the document.
            self.meta(name, pointer)?;
            let wrapper = serde_json::json!({"$ref": format!("{url}#{}", fragment(pointer))});
            // (The wrapper has a URL of its own: under the document's, it would hide it.)
            options
                .with_base_uri(resource_url("compiling"))
                .build(&wrapper)
                .map_err(|e| explain(&self.docs, e, pointer))?
        };
        self.schemas.0.push(validator);
        Ok(SchemaIndex(self.schemas.0.len() - 1))
    }
}

impl Builder {
    /// Checks the schema at `pointer` of the document `name` against its draft's meta-schema.
    pub fn meta(&self, name: &str, pointer: &str) -> Result<(), String> {
        let Some((_, _, field, doc)) = self.docs.iter().find(|d| d.0 == name) else {
            return Ok(());
        };
        let Some(schema) = doc.pointer(pointer) else {
            return Err(format!("{}: missing", field_path(field, doc, pointer)));
        };
        let draft = self.draft.detect(schema);
        let meta = match draft {
            Draft::Draft4 => jsonschema::draft4::meta::validate(schema),
            Draft::Draft6 => jsonschema::draft6::meta::validate(schema),
            Draft::Draft7 => jsonschema::draft7::meta::validate(schema),
            Draft::Draft201909 => jsonschema::draft201909::meta::validate(schema),
            _ => jsonschema::draft202012::meta::validate(schema),
        };
        meta.map_err(|e| {
            let at = format!("{pointer}{}", e.instance_path());
            format!("{}: not a valid schema: {e}", field_path(field, doc, &at))
        })
    }
}

/// `pointer` as a URL fragment (what a fragment may not hold, percent-encoded).
fn fragment(pointer: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'<')
        .add(b'>')
        .add(b'`')
        .add(b'#')
        .add(b'%')
        .add(b'{')
        .add(b'}')
        .add(b'^')
        .add(b'|')
        .add(b'[')
        .add(b']')
        .add(b'\\');
    percent_encoding::utf8_percent_encode(pointer, SET).to_string()
}

/// The config field path of a JSON Pointer into `doc` written at `field`: object members as
/// `.name`, array items as `[i]` (`openapi.paths./pets.post.parameters[0].schema`).
pub fn field_path(field: &str, doc: &Value, pointer: &str) -> String {
    let mut out = field.to_string();
    let mut at = Some(doc);
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        match at {
            Some(Value::Array(items)) => {
                out.push_str(&format!("[{token}]"));
                at = token.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            other => {
                out.push('.');
                out.push_str(&token);
                at = other.and_then(|v| v.get(&token));
            }
        }
    }
    out
}

/// Escapes a JSON Pointer token (`~` and `/`).
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Validates `instance` with the compiled schema `index`; what is wrong is appended to `out`.
pub fn check(
    schemas: &Schemas,
    index: SchemaIndex,
    instance: &Value,
    loc: Loc,
    out: &mut Vec<Violation>,
) {
    let mut found = Vec::new();
    for e in schemas.0[index.0].iter_errors(instance) {
        violations(&e, loc, &mut found);
    }
    // In the instance's order (array items by index), whatever order the keywords ran in.
    found.sort_by_cached_key(|v| {
        v.pointer
            .split('/')
            .map(|t| (t.parse::<u64>().unwrap_or(u64::MAX), t.to_string()))
            .collect::<Vec<_>>()
    });
    out.extend(found);
}

/// A validation error as violations (one per missing or unexpected property).
fn violations(e: &ValidationError, loc: Loc, out: &mut Vec<Violation>) {
    let at = e.instance_path().to_string();
    let mut push = |pointer: String, expected: String, message: String| {
        let v = Violation {
            loc,
            pointer,
            expected,
            message,
        };
        if !out.contains(&v) {
            out.push(v);
        }
    };
    match e.kind() {
        K::Required { property } => {
            let p = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_string);
            push(
                format!("{at}/{}", escape(&p)),
                "a value (required)".into(),
                format!("missing required property `{p}`"),
            );
        }
        K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
            for p in unexpected {
                push(
                    format!("{at}/{}", escape(p)),
                    "no such property (additional properties are not allowed)".into(),
                    format!("property `{p}` is not allowed"),
                );
            }
        }
        kind => push(at, expected(kind, e), e.to_string()),
    }
}

/// `1 item`, `2 items`.
fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// What the keyword that failed asks for, in words.
fn expected(kind: &K, e: &ValidationError) -> String {
    let list = |v: &Value| match v {
        Value::Array(items) => items
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    match kind {
        K::Type {
            kind: TypeKind::Single(t),
        } => t.to_string(),
        K::Type {
            kind: TypeKind::Multiple(ts),
        } => ts
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(" or "),
        K::Enum { options } => format!("one of {}", list(options)),
        K::Constant { expected_value } => format!("the value {expected_value}"),
        K::Format { format } => format!("format {format}"),
        K::MinProperties { limit } => {
            format!("at least {}", plural(*limit, "property", "properties"))
        }
        K::MaxProperties { limit } => {
            format!("at most {}", plural(*limit, "property", "properties"))
        }
        K::MinItems { limit } => format!("at least {}", plural(*limit, "item", "items")),
        K::MaxItems { limit } => format!("at most {}", plural(*limit, "item", "items")),
        K::AdditionalItems { limit } => {
            format!("at most {}", plural(*limit as u64, "item", "items"))
        }
        K::UnevaluatedItems { .. } => "no more items".into(),
        K::UniqueItems => "unique items".into(),
        K::Contains => "an item matching `contains`".into(),
        K::MinLength { limit } => format!("at least {}", plural(*limit, "character", "characters")),
        K::MaxLength { limit } => format!("at most {}", plural(*limit, "character", "characters")),
        K::Pattern { pattern } => format!("a string matching `{pattern}`"),
        K::Minimum { limit } => format!(">= {limit}"),
        K::Maximum { limit } => format!("<= {limit}"),
        K::ExclusiveMinimum { limit } => format!("> {limit}"),
        K::ExclusiveMaximum { limit } => format!("< {limit}"),
        K::MultipleOf { multiple_of } => format!("a multiple of {multiple_of}"),
        K::FalseSchema => "no value here".into(),
        K::Not { .. } => "a value not matching the `not` schema".into(),
        K::PropertyNames { .. } => "a valid property name".into(),
        K::AnyOf { .. } => "a value matching at least one of the `anyOf` schemas".into(),
        K::OneOfNotValid { .. } | K::OneOfMultipleValid { .. } => {
            "a value matching exactly one of the `oneOf` schemas".into()
        }
        K::ContentEncoding { content_encoding } => format!("{content_encoding}-encoded content"),
        K::ContentMediaType { content_media_type } => {
            format!("content of media type {content_media_type}")
        }
        _ => format!("a value matching `{}`", e.kind().keyword()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(draft: Draft, schema: Value, instance: Value) -> Result<Vec<Violation>, String> {
        let mut b = Builder::new(draft, vec![("body_schema", "body_schema", schema)])?;
        let i = b.compile("body_schema", "")?;
        let mut out = Vec::new();
        check(&b.schemas, i, &instance, Loc::Body, &mut out);
        Ok(out)
    }

    fn pointers(v: &[Violation]) -> Vec<&str> {
        v.iter().map(|v| v.pointer.as_str()).collect()
    }

    #[test]
    fn violations_point_at_the_value_and_say_what_was_expected() {
        let schema = json!({
            "type": "object",
            "required": ["name", "items"],
            "properties": {
                "name": {"type": "string", "minLength": 2},
                "items": {"type": "array", "items": {
                    "type": "object",
                    "required": ["price"],
                    "properties": {"price": {"type": "number", "minimum": 0}}
                }}
            }
        });
        let v = run(
            Draft::Draft202012,
            schema.clone(),
            json!({"items": [{"price": -1}, {"price": "x"}, {}]}),
        )
        .unwrap();
        assert_eq!(
            pointers(&v),
            [
                "/items/0/price",
                "/items/1/price",
                "/items/2/price",
                "/name"
            ],
            "{v:#?}"
        );
        assert_eq!(v[0].expected, ">= 0");
        assert_eq!(v[1].expected, "number");
        assert!(v[1].message.contains("number"), "{}", v[1].message);
        assert_eq!(v[2].expected, "a value (required)");
        assert_eq!(v[3].message, "missing required property `name`");
        assert!(run(
            Draft::Draft202012,
            schema,
            json!({"name": "ab", "items": []})
        )
        .unwrap()
        .is_empty());
    }

    #[test]
    fn prefix_items_is_2020_12_and_items_arrays_are_draft_7() {
        // 2020-12: `prefixItems` for the positions, `items` for the rest.
        let tuple = json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": false});
        let v = run(Draft::Draft202012, tuple.clone(), json!(["a", "b", 3])).unwrap();
        assert_eq!(pointers(&v), ["/1", "/2"], "{v:#?}");
        assert_eq!(v[0].expected, "integer");
        assert!(run(Draft::Draft202012, tuple.clone(), json!(["a", 1]))
            .unwrap()
            .is_empty());
        // Draft 7 does not know `prefixItems`: only `items: false` applies, to every item.
        let v = run(Draft::Draft7, tuple, json!(["a", 1])).unwrap();
        assert_eq!(pointers(&v), ["/0", "/1"], "{v:#?}");

        // Draft 7: `items` as an array is the tuple, `additionalItems` the rest.
        let tuple7 = json!({"type": "array", "items": [{"type": "string"}, {"type": "integer"}], "additionalItems": false});
        let v = run(Draft::Draft7, tuple7.clone(), json!(["a", "b", 3])).unwrap();
        assert_eq!(pointers(&v), ["", "/1"], "{v:#?}");
        assert_eq!(v[0].expected, "at most 2 items");
        // 2020-12 refuses the array form of `items` as a schema.
        let e = run(Draft::Draft202012, tuple7, json!([])).unwrap_err();
        assert!(
            e.starts_with("body_schema.items: not a valid schema"),
            "{e}"
        );
    }

    #[test]
    fn dependent_required_is_2019_and_later_dependencies_is_draft_7() {
        let schema = json!({"dependentRequired": {"card": ["billing_address"]}});
        let v = run(Draft::Draft202012, schema.clone(), json!({"card": "4111"})).unwrap();
        assert_eq!(pointers(&v), ["/billing_address"]);
        // Draft 7 ignores it (an unknown keyword) ...
        assert!(run(Draft::Draft7, schema, json!({"card": "4111"}))
            .unwrap()
            .is_empty());
        // ... and says it with `dependencies`.
        let schema = json!({"dependencies": {"card": ["billing_address"]}});
        let v = run(Draft::Draft7, schema, json!({"card": "4111"})).unwrap();
        assert_eq!(pointers(&v), ["/billing_address"]);
    }

    #[test]
    fn the_schema_keyword_picks_the_draft() {
        let schema = json!({"$schema": "http://json-schema.org/draft-07/schema#",
                            "items": [{"type": "string"}]});
        let v = run(Draft::Draft202012, schema, json!([1])).unwrap();
        assert_eq!(pointers(&v), ["/0"]);
    }

    #[test]
    fn refs_resolve_inside_the_schema_only() {
        let schema = json!({"$defs": {"id": {"type": "integer", "minimum": 1}},
                            "properties": {"id": {"$ref": "#/$defs/id"}}});
        let v = run(Draft::Draft202012, schema, json!({"id": 0})).unwrap();
        assert_eq!(pointers(&v), ["/id"]);
        assert_eq!(v[0].expected, ">= 1");
        let e = run(
            Draft::Draft202012,
            json!({"$ref": "https://example.com/schema.json"}),
            json!(1),
        )
        .unwrap_err();
        assert!(
            e.starts_with("body_schema: ") && e.contains("nothing is fetched"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_schema_names_its_field() {
        let e = run(
            Draft::Draft202012,
            json!({"properties": {"price": {"type": "nmber"}}}),
            json!({}),
        )
        .unwrap_err();
        assert!(
            e.starts_with("body_schema.properties.price.type: not a valid schema"),
            "{e}"
        );
        let e = run(
            Draft::Draft202012,
            json!({"properties": {"code": {"pattern": "(a"}}}),
            json!({}),
        )
        .unwrap_err();
        assert!(
            e.starts_with("body_schema.properties.code.pattern: "),
            "{e}"
        );
        let e = run(
            Draft::Draft202012,
            json!({"allOf": [{}, {"minimum": "1"}]}),
            json!(1),
        )
        .unwrap_err();
        assert!(e.starts_with("body_schema.allOf[1].minimum: "), "{e}");
    }

    #[test]
    fn formats_are_checked() {
        let schema = json!({"properties": {
            "at": {"format": "date-time"}, "mail": {"format": "email"}}});
        let v = run(
            Draft::Draft202012,
            schema,
            json!({"at": "yesterday", "mail": "a@b.example"}),
        )
        .unwrap();
        assert_eq!(pointers(&v), ["/at"], "{v:#?}");
        assert_eq!(v[0].expected, "format date-time");
    }

    #[test]
    fn any_of_is_one_violation_with_its_reasons() {
        let schema = json!({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 2}]});
        let v = run(Draft::Draft202012, schema, json!("abc")).unwrap();
        assert_eq!(pointers(&v), [""]);
        assert!(v[0].message.contains("anyOf"), "{v:#?}");
    }
}
