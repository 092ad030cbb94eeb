//! Query, header and path parameters: their values are strings on the wire; this module reads them
//! (by OpenAPI style), turns them into JSON the way the schema asks (`"7"` is the integer 7 where the
//! schema wants an integer or a number, `"true"` a boolean where it wants a boolean), and builds the
//! object of a location's parameters that its schema validates.

use serde_json::{Map, Number, Value};

use crate::schema::{check, escape, Loc, SchemaIndex, Schemas, Violation};

/// The JSON types a schema allows, as far as coercion cares (`type`, through `$ref`s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prim {
    /// No `type` (or a string allowed): the value stays a string.
    pub string: bool,
    pub integer: bool,
    pub number: bool,
    pub boolean: bool,
    pub null: bool,
}

/// What a parameter's schema says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    Scalar(Prim),
    /// An array of items of this kind.
    Array(Prim),
    /// An object whose members are read as these kinds (others as strings).
    Object(Vec<(String, Prim)>),
}

/// How a parameter is written (OpenAPI `style` and `explode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `a,b,c` (path and header default); objects `k,v,k,v` or, exploded, `k=v,k=v`.
    Simple,
    /// Query default: exploded, an array is the parameter repeated; not exploded, `a,b,c`.
    Form,
    /// Query arrays `a b c` (`%20`).
    SpaceDelimited,
    /// Query arrays `a|b|c`.
    PipeDelimited,
    /// Query objects `name[key]=value`.
    DeepObject,
}

/// One parameter a location declares.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub shape: Shape,
    pub style: Style,
    pub explode: bool,
    /// Written as JSON (OpenAPI `content: {application/json: ...}`), parsed before checking.
    pub json: bool,
    /// The parameter's own schema (OpenAPI), checked against its value.
    pub schema: Option<SchemaIndex>,
    /// Whether a request must have it (OpenAPI; a `*_schema` says it with `required`).
    pub required: bool,
}

/// The parameters of one location: each checked by its own schema (OpenAPI), and their object by
/// the location's schema (`query_schema`, ...).
pub struct ParamSet {
    pub loc: Loc,
    pub params: Vec<Param>,
    /// The schema of the object of the parameters.
    pub whole: Option<SchemaIndex>,
    /// Whether parameters the set does not declare are in the object too (as strings, or arrays
    /// of strings when repeated), so that `additionalProperties` can refuse them: for the
    /// `*_schema` fields, not for OpenAPI, where undeclared parameters are allowed.
    pub undeclared: bool,
}

impl ParamSet {
    /// Checks the location's parameters (`values`: name and raw value, decoded, in order; header
    /// names lower-cased).
    pub fn check(&self, schemas: &Schemas, values: &[(String, String)], out: &mut Vec<Violation>) {
        let object = self.object(values, out);
        for p in &self.params {
            let pointer = format!("/{}", escape(&p.name));
            match object.get(&p.name) {
                None if p.required => out.push(Violation::new(
                    self.loc,
                    &pointer,
                    "a value (required)",
                    format!(
                        "missing required {} parameter `{}`",
                        self.loc.as_str(),
                        p.name
                    ),
                )),
                Some(v) => {
                    if let Some(schema) = p.schema {
                        let mut found = Vec::new();
                        check(schemas, schema, v, self.loc, &mut found);
                        out.extend(found.into_iter().map(|mut f| {
                            f.pointer = format!("{pointer}{}", f.pointer);
                            f
                        }));
                    }
                }
                None => {}
            }
        }
        if let Some(whole) = self.whole {
            check(schemas, whole, &Value::Object(object), self.loc, out);
        }
    }

    /// Whether the set checks anything.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty() && self.whole.is_none()
    }

    /// The object of the parameters, or violations for values that cannot be read (bad JSON).
    fn object(&self, values: &[(String, String)], out: &mut Vec<Violation>) -> Map<String, Value> {
        let mut object = Map::new();
        for p in &self.params {
            if let Some(v) = self.read(p, values, out) {
                object.insert(p.name.clone(), v);
            }
        }
        if self.undeclared {
            for (name, _) in values {
                if object.contains_key(name) {
                    continue;
                }
                let all: Vec<&String> = values
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| v)
                    .collect();
                let v = match all.as_slice() {
                    [one] => Value::String(one.to_string()),
                    // Headers sent on several lines are one comma-separated list (RFC 9110).
                    many if self.loc == Loc::Header => Value::String(
                        many.iter()
                            .map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                    many => {
                        Value::Array(many.iter().map(|v| Value::String(v.to_string())).collect())
                    }
                };
                object.insert(name.clone(), v);
            }
        }
        object
    }

    fn read(
        &self,
        p: &Param,
        values: &[(String, String)],
        out: &mut Vec<Violation>,
    ) -> Option<Value> {
        let all: Vec<&str> = values
            .iter()
            .filter(|(n, _)| *n == p.name)
            .map(|(_, v)| v.as_str())
            .collect();
        if p.style == Style::DeepObject {
            let prefix = format!("{}[", p.name);
            let mut m = Map::new();
            for (n, v) in values {
                if let Some(key) = n.strip_prefix(&prefix).and_then(|k| k.strip_suffix(']')) {
                    m.insert(key.to_string(), coerce(v, member(&p.shape, key)));
                }
            }
            return (!m.is_empty()).then_some(Value::Object(m));
        }
        if all.is_empty() {
            return None;
        }
        if p.json {
            return match serde_json::from_str(all[0]) {
                Ok(v) => Some(v),
                Err(e) => {
                    out.push(Violation::new(
                        self.loc,
                        &format!("/{}", escape(&p.name)),
                        "JSON",
                        format!("`{}` is not JSON: {e}", p.name),
                    ));
                    None
                }
            };
        }
        // Headers sent on several lines are one comma-separated list (RFC 9110).
        let joined = all.join(", ");
        let one = if self.loc == Loc::Header {
            joined.as_str()
        } else {
            all[0]
        };
        Some(match &p.shape {
            Shape::Scalar(prim) => {
                if all.len() > 1 && self.loc != Loc::Header {
                    // Repeated where one value is expected: the schema sees them all, and says no.
                    Value::Array(all.iter().map(|v| coerce(v, *prim)).collect())
                } else {
                    coerce(one, *prim)
                }
            }
            Shape::Array(prim) => {
                let items: Vec<&str> = match p.style {
                    Style::Form if p.explode => all,
                    Style::SpaceDelimited => one.split(' ').collect(),
                    Style::PipeDelimited => one.split('|').collect(),
                    _ => one.split(',').map(str::trim).collect(),
                };
                Value::Array(
                    items
                        .into_iter()
                        .filter(|s| !s.is_empty() || p.style == Style::Form)
                        .map(|v| coerce(v, *prim))
                        .collect(),
                )
            }
            Shape::Object(_) => {
                let mut m = Map::new();
                let parts: Vec<&str> = one.split(',').map(str::trim).collect();
                if p.explode {
                    for kv in parts {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        m.insert(k.to_string(), coerce(v, member(&p.shape, k)));
                    }
                } else {
                    for kv in parts.chunks(2) {
                        let v = kv.get(1).copied().unwrap_or("");
                        m.insert(kv[0].to_string(), coerce(v, member(&p.shape, kv[0])));
                    }
                }
                Value::Object(m)
            }
        })
    }
}

/// The kind of an object parameter's member.
fn member(shape: &Shape, key: &str) -> Prim {
    match shape {
        Shape::Object(members) => members
            .iter()
            .find(|(k, _)| k == key)
            .map_or(STRING, |(_, p)| *p),
        _ => STRING,
    }
}

const STRING: Prim = Prim {
    string: true,
    integer: false,
    number: false,
    boolean: false,
    null: false,
};

/// A parameter's text as the JSON value the schema asks for: a number where it wants an integer or
/// a number (and the text is one), a boolean for `true`/`false` where it wants a boolean, `null` for
/// an empty value where it allows null and not a string. Anything else stays a string, for the
/// schema to refuse.
pub fn coerce(text: &str, prim: Prim) -> Value {
    if prim.string {
        return Value::String(text.to_string());
    }
    // Only what JSON writes as a number (no `+5`, no spaces), and for an integer only digits:
    // `1e3` and `1.0` are integers to JSON Schema but not to many upstreams' parsers.
    let digits = |t: &str| {
        let t = t.strip_prefix('-').unwrap_or(t);
        !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())
    };
    if prim.integer || prim.number {
        if digits(text) {
            if let Ok(i) = text.parse::<i64>() {
                return Value::Number(i.into());
            }
            if let Ok(u) = text.parse::<u64>() {
                return Value::Number(u.into());
            }
        }
        let json_number = !text.starts_with('+')
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
        if let Some(n) = text
            .parse::<f64>()
            .ok()
            .filter(|_| json_number && prim.number)
            .and_then(Number::from_f64)
        {
            return Value::Number(n);
        }
    }
    if prim.boolean {
        match text {
            "true" => return Value::Bool(true),
            "false" => return Value::Bool(false),
            _ => {}
        }
    }
    if prim.null && text.is_empty() {
        return Value::Null;
    }
    Value::String(text.to_string())
}

/// The parameters an object schema declares in `properties` (through `$ref`s), read as their
/// schemas say: in the query and in form bodies (`form`, exploded) an array is the parameter
/// repeated; in headers and paths (`simple`) it is comma-separated.
pub fn declared(schema: &Value, resolve: &dyn Fn(&str) -> Option<Value>, loc: Loc) -> Vec<Param> {
    let schema = deref(schema, resolve);
    let Some(Value::Object(props)) = schema.get("properties") else {
        return Vec::new();
    };
    let form = matches!(loc, Loc::Query | Loc::Body);
    props
        .iter()
        .map(|(name, s)| Param {
            name: name.clone(),
            shape: shape(s, resolve),
            style: if form { Style::Form } else { Style::Simple },
            explode: form,
            json: false,
            schema: None,
            required: false,
        })
        .collect()
}

/// The shape of a parameter's schema; `resolve` finds the target of a `$ref` (None: unknown).
pub fn shape(schema: &Value, resolve: &dyn Fn(&str) -> Option<Value>) -> Shape {
    let s = deref(schema, resolve);
    let prim = prim(&s, resolve);
    let types = types(&s);
    if types.iter().any(|t| t == "array") && types.len() == 1 {
        let items = s.get("items").map_or(STRING, |i| prim_of(i, resolve));
        return Shape::Array(items);
    }
    if types.iter().any(|t| t == "object") && types.len() == 1 {
        let members = s
            .get("properties")
            .and_then(Value::as_object)
            .map(|props| {
                props
                    .iter()
                    .map(|(k, v)| (k.clone(), prim_of(v, resolve)))
                    .collect()
            })
            .unwrap_or_default();
        return Shape::Object(members);
    }
    Shape::Scalar(prim)
}

fn prim_of(schema: &Value, resolve: &dyn Fn(&str) -> Option<Value>) -> Prim {
    prim(&deref(schema, resolve), resolve)
}

fn prim(s: &Value, _resolve: &dyn Fn(&str) -> Option<Value>) -> Prim {
    let types = types(s);
    if types.is_empty() {
        return STRING;
    }
    let has = |t: &str| types.iter().any(|x| x == t);
    Prim {
        string: has("string"),
        integer: has("integer"),
        number: has("number"),
        boolean: has("boolean"),
        null: has("null"),
    }
}

/// `type` as a list (`"integer"`, or `["integer", "null"]`).
fn types(s: &Value) -> Vec<String> {
    match s.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Follows `$ref`s (at most 16) to the schema that says something.
fn deref(schema: &Value, resolve: &dyn Fn(&str) -> Option<Value>) -> Value {
    let mut s = schema.clone();
    for _ in 0..16 {
        match s.get("$ref").and_then(Value::as_str).and_then(resolve) {
            Some(target) if s.get("type").is_none() => s = target,
            _ => break,
        }
    }
    s
}

/// A query string's parameters, decoded (`+` is a space), in order.
pub fn query(q: Option<&str>) -> Vec<(String, String)> {
    q.map(|q| {
        form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

/// Percent-decodes a path parameter (`%2F` is `/`). Bytes that are not UTF-8 read as U+FFFD, as the
/// query's do: the schema always checks the decoded text an upstream would see, never the encoded
/// form (`a%3C%FF` is `a<\u{FFFD}`, which a pattern refusing `<` refuses).
pub fn decode_path(v: &str) -> String {
    percent_encoding::percent_decode_str(v)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_refs(_: &str) -> Option<Value> {
        None
    }

    #[test]
    fn coercion_follows_the_schema() {
        let int = shape(&json!({"type": "integer"}), &no_refs);
        let Shape::Scalar(int) = int else { panic!() };
        assert_eq!(coerce("7", int), json!(7));
        assert_eq!(coerce("-7", int), json!(-7));
        // Only digits are an integer: the rest stays text, which `type: integer` refuses.
        for text in ["7.5", "1.0", "1e3", "+5", " 5", "-", ""] {
            assert_eq!(coerce(text, int), json!(text), "{text:?}");
        }
        assert_eq!(coerce("seven", int), json!("seven"));
        let Shape::Scalar(num) = shape(&json!({"type": "number"}), &no_refs) else {
            panic!()
        };
        assert_eq!(coerce("7.5", num), json!(7.5));
        assert_eq!(coerce("1e3", num), json!(1000.0));
        assert_eq!(coerce("-2", num), json!(-2));
        assert_eq!(coerce("+5", num), json!("+5"));
        assert_eq!(coerce("inf", int), json!("inf"));
        let Shape::Scalar(b) = shape(&json!({"type": ["boolean", "null"]}), &no_refs) else {
            panic!()
        };
        assert_eq!(coerce("true", b), json!(true));
        assert_eq!(coerce("", b), json!(null));
        assert_eq!(coerce("yes", b), json!("yes"));
        // A string is allowed: it stays one.
        let Shape::Scalar(s) = shape(&json!({"type": ["string", "integer"]}), &no_refs) else {
            panic!()
        };
        assert_eq!(coerce("7", s), json!("7"));
        // No type: a string.
        assert_eq!(
            shape(&json!({"minLength": 1}), &no_refs),
            Shape::Scalar(STRING)
        );
    }

    #[test]
    fn shapes_follow_refs() {
        let target = json!({"type": "array", "items": {"$ref": "#/n"}});
        let resolve = |r: &str| match r {
            "#/a" => Some(target.clone()),
            "#/n" => Some(json!({"type": "number"})),
            _ => None,
        };
        let s = shape(&json!({"$ref": "#/a"}), &resolve);
        assert_eq!(
            s,
            Shape::Array(Prim {
                number: true,
                ..Prim::default()
            })
        );
    }

    #[test]
    fn queries_and_paths_are_decoded() {
        assert_eq!(
            query(Some("a=1&b=x+y&a=%2F&c")),
            [("a", "1"), ("b", "x y"), ("a", "/"), ("c", "")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(decode_path("a%20b%2Fc"), "a b/c");
        assert_eq!(decode_path("%FF"), "\u{FFFD}");
        assert_eq!(decode_path("a%3Cb%3E%FF"), "a<b>\u{FFFD}");
    }
}
