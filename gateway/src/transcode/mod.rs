//! gRPC-JSON transcoding: a route's protobuf descriptor set and its `google.api.http` annotations,
//! compiled at config load into rules that turn a REST/JSON request into one gRPC request message
//! and a gRPC answer into JSON (the proto3 JSON mapping, by `prost-reflect`). The HTTP side (the
//! upstream exchange, framing, statuses) is `proxy::transcode`'s.
//!
//! Built into the gateway rather than as a plugin: the answer's status is in the HTTP/2 trailers,
//! which the WIT world does not give plugins, and every call needs a descriptor runtime that would
//! otherwise be compiled into each guest.

mod template;

use crate::config::grpc::{GrpcTranscode, StreamFormat};
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor,
    MethodDescriptor, ReflectMessage, SerializeOptions, Value,
};
use serde::de::DeserializeSeed;
use template::Template;

/// A gRPC method the route transcodes.
pub struct Method {
    /// The method's descriptor (input and output messages).
    pub desc: MethodDescriptor,
    /// `/package.Service/Method`, the gRPC request path.
    pub path: http::uri::PathAndQuery,
}

/// Which part of the request message the HTTP body is.
#[derive(Clone)]
enum BodyField {
    /// No body: path and query only.
    None,
    /// `body: "*"`: the whole message (fields not bound by the path).
    Whole,
    /// `body: "field"`: one top-level field.
    Field(FieldDescriptor),
}

/// One HTTP binding of a method (`get: "/v1/shelves/{shelf}"`).
struct Rule {
    verb: http::Method,
    template: Template,
    method: usize,
    body: BodyField,
    response_body: Option<FieldDescriptor>,
}

/// A route's transcoding, compiled from its descriptor set.
pub struct Transcoder {
    methods: Vec<Method>,
    rules: Vec<Rule>,
    method_paths: bool,
    ignore_unknown_query: bool,
    /// How server streams are written.
    pub stream_format: StreamFormat,
    print: SerializeOptions,
    proto_names: bool,
}

/// A request matched to a method.
pub struct Call {
    /// The method called.
    pub method: MethodDescriptor,
    /// Its gRPC request path.
    pub path: http::uri::PathAndQuery,
    body: BodyField,
    response_body: Option<FieldDescriptor>,
    bound: Vec<(Vec<String>, String)>,
}

/// What a request is to the transcoder.
pub enum Found<'a> {
    /// A call of this method.
    Call(Call),
    /// A method the gateway does not transcode (client or bidirectional streaming).
    Unsupported(&'a Method),
}

impl Transcoder {
    /// Compiles the transcoding of `cfg` from the descriptor set's bytes. Errors are
    /// `(field under grpc_transcode, message)`.
    pub fn new(cfg: &GrpcTranscode, set: &[u8]) -> Result<Transcoder, (String, String)> {
        let pool = DescriptorPool::decode(set).map_err(|e| {
            (
                "descriptor_set".to_owned(),
                format!("not a protobuf FileDescriptorSet: {e}"),
            )
        })?;
        let http_ext = pool.get_extension_by_name("google.api.http");
        let mut methods = Vec::new();
        let mut rules = Vec::new();
        for (j, name) in cfg.services.iter().enumerate() {
            let at = format!("services[{j}]");
            let svc = pool.get_service_by_name(name).ok_or_else(|| {
                let known: Vec<_> = pool.services().map(|s| s.full_name().to_owned()).collect();
                (
                    at.clone(),
                    format!(
                        "no service `{name}` in the descriptor set (it has: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                )
            })?;
            for m in svc.methods() {
                let path = format!("/{}/{}", svc.full_name(), m.name());
                let index = methods.len();
                let err = |msg: String| (at.clone(), format!("method `{}`: {msg}", m.full_name()));
                if let Some(ext) = &http_ext {
                    let opts = m.options();
                    if opts.has_extension(ext) {
                        if let Value::Message(rule) = opts.get_extension(ext).as_ref() {
                            add_rules(&mut rules, rule, &m, index, 0).map_err(err)?;
                        }
                    }
                }
                methods.push(Method {
                    path: path.parse().map_err(|_| err("not a path".into()))?,
                    desc: m,
                });
            }
        }
        Ok(Transcoder {
            methods,
            rules,
            method_paths: cfg.method_paths,
            ignore_unknown_query: cfg.ignore_unknown_query_parameters,
            stream_format: cfg.stream_format,
            print: SerializeOptions::new()
                .use_proto_field_name(cfg.preserve_proto_field_names)
                .skip_default_fields(!cfg.always_print_primitive_fields),
            proto_names: cfg.preserve_proto_field_names,
        })
    }

    /// The method a request calls, by the annotations (the most specific template that matches
    /// wins), or by its gRPC path with `POST` when `method_paths` is on.
    pub fn find(&self, verb: &http::Method, path: &str) -> Option<Found<'_>> {
        let rule = self
            .rules
            .iter()
            .filter(|r| r.verb == verb)
            .filter_map(|r| r.template.matches(path).map(|b| (r, b)))
            .max_by_key(|(r, _)| r.template.rank());
        let (method, call) = match rule {
            Some((r, bound)) => {
                let m = &self.methods[r.method];
                (
                    m,
                    Call {
                        method: m.desc.clone(),
                        path: m.path.clone(),
                        body: r.body.clone(),
                        response_body: r.response_body.clone(),
                        bound,
                    },
                )
            }
            None if self.method_paths && verb == http::Method::POST => {
                let m = self.methods.iter().find(|m| m.path.path() == path)?;
                (
                    m,
                    Call {
                        method: m.desc.clone(),
                        path: m.path.clone(),
                        body: BodyField::Whole,
                        response_body: None,
                        bound: Vec::new(),
                    },
                )
            }
            None => return None,
        };
        Some(match method.desc.is_client_streaming() {
            true => Found::Unsupported(method),
            false => Found::Call(call),
        })
    }

    /// The request message of `call` from the JSON body, the path's variables and the query,
    /// encoded; or a message for a 400 that names the field.
    pub fn request(
        &self,
        call: &Call,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Vec<u8>, String> {
        let input = call.method.input();
        let mut msg = DynamicMessage::new(input.clone());
        let blank = body.iter().all(u8::is_ascii_whitespace);
        match &call.body {
            BodyField::None => {}
            BodyField::Whole if blank => {}
            BodyField::Whole => msg = from_json(input.clone(), body, "")?,
            BodyField::Field(_) if blank => {}
            BodyField::Field(f) => match f.kind() {
                Kind::Message(m) if !f.is_list() && !f.is_map() => {
                    let v = from_json(m, body, &format!("{}.", f.name()))?;
                    msg.set_field(f, Value::Message(v));
                }
                _ => {
                    // A scalar or repeated field: read as the one field of the message.
                    let v: serde_json::Value = serde_json::from_slice(body)
                        .map_err(|e| format!("the body is not JSON: {e}"))?;
                    let wrapped = serde_json::json!({ f.json_name(): v }).to_string();
                    let one = from_json(input.clone(), wrapped.as_bytes(), "")?;
                    msg.set_field(f, one.get_field(f).into_owned());
                }
            },
        }
        for (path, value) in &call.bound {
            set_text(&mut msg, path, value, false)
                .map_err(|e| format!("path variable `{}`: {e}", path.join(".")))?;
        }
        if let Some(q) = query.filter(|_| !matches!(call.body, BodyField::Whole)) {
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                // A recursive message would otherwise nest as deep as the URI is long (setting,
                // encoding and dropping it recurse once per level).
                if k.split('.').count() > MAX_FIELD_PATH {
                    return Err(format!(
                        "query parameter `{}`: a field path has at most {MAX_FIELD_PATH} segments",
                        shorten(&k)
                    ));
                }
                let path: Vec<String> = k.split('.').map(str::to_owned).collect();
                let taken = call.bound.iter().any(|(b, _)| same_field(&input, b, &path))
                    || matches!(&call.body, BodyField::Field(f) if resolve(&input, &path[..1]).is_some_and(|q| q.name() == f.name()));
                if taken {
                    return Err(format!(
                        "query parameter `{k}`: the field is set by the path or the body"
                    ));
                }
                match set_text(&mut msg, &path, &v, true) {
                    Ok(()) => {}
                    Err(SetError::Unknown) if self.ignore_unknown_query => {}
                    Err(e) => return Err(format!("query parameter `{k}`: {e}")),
                }
            }
        } else if query.is_some_and(|q| !q.is_empty()) && !self.ignore_unknown_query {
            return Err("query parameters are not taken: the body is the whole message".into());
        }
        Ok(prost::Message::encode_to_vec(&msg))
    }

    /// The JSON of one answer message of `call` (or of its `response_body` field).
    pub fn response(&self, call: &Call, message: &[u8]) -> Result<Vec<u8>, String> {
        let out = call.method.output();
        let msg = DynamicMessage::decode(out, message)
            .map_err(|e| format!("the upstream's message does not decode: {e}"))?;
        let mut json = Vec::with_capacity(message.len() * 2);
        let mut ser = serde_json::Serializer::new(&mut json);
        msg.serialize_with_options(&mut ser, &self.print)
            .map_err(|e| e.to_string())?;
        let Some(field) = &call.response_body else {
            return Ok(json);
        };
        let mut v: serde_json::Value = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
        let key = if self.proto_names {
            field.name()
        } else {
            field.json_name()
        };
        let part = v
            .as_object_mut()
            .and_then(|o| o.remove(key))
            .unwrap_or(serde_json::Value::Null);
        Ok(part.to_string().into_bytes())
    }
}

/// The largest descriptor set read: 64 MiB.
pub const MAX_DESCRIPTOR_SET_BYTES: u64 = 64 << 20;

/// Reads a route's descriptor set and compiles its transcoding; errors are at `at.<field>` (`at`:
/// the route's `grpc_transcode`).
pub fn load(
    cfg: &GrpcTranscode,
    src: &crate::config::Source,
    at: &str,
) -> Result<Transcoder, crate::config::ConfigError> {
    let err = |(field, message): (String, String)| src.err(format!("{at}.{field}"), message);
    cfg.check().map_err(err)?;
    let path = crate::tls::resolve(src, std::path::Path::new(&cfg.descriptor_set));
    let cannot = |e: std::io::Error| {
        err((
            "descriptor_set".into(),
            format!("cannot read `{}`: {e}", path.display()),
        ))
    };
    let len = std::fs::metadata(&path).map_err(cannot)?.len();
    if len > MAX_DESCRIPTOR_SET_BYTES {
        return Err(err((
            "descriptor_set".into(),
            format!(
                "`{}` is {len} bytes; at most {MAX_DESCRIPTOR_SET_BYTES} are read",
                path.display()
            ),
        )));
    }
    let bytes = std::fs::read(&path).map_err(cannot)?;
    Transcoder::new(cfg, &bytes).map_err(err)
}

/// Reads the `google.api.http` rule `rule` (and its `additional_bindings`) of method `m`.
fn add_rules(
    rules: &mut Vec<Rule>,
    rule: &DynamicMessage,
    m: &MethodDescriptor,
    index: usize,
    depth: usize,
) -> Result<(), String> {
    let text = |name: &str| match rule.get_field_by_name(name).as_deref() {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let has = |name: &str| rule.has_field_by_name(name);
    let (verb, path) = if let Some(v) = ["get", "put", "post", "delete", "patch"]
        .into_iter()
        .find(|v| has(v))
    {
        let verb = http::Method::from_bytes(v.to_ascii_uppercase().as_bytes()).expect("a method");
        (verb, text(v))
    } else if has("custom") {
        let Some(Value::Message(c)) = rule.get_field_by_name("custom").as_deref().cloned() else {
            return Err("custom pattern is not a message".into());
        };
        let kind = match c.get_field_by_name("kind").as_deref() {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let path = match c.get_field_by_name("path").as_deref() {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let verb = http::Method::from_bytes(kind.as_bytes())
            .map_err(|_| format!("custom kind `{kind}` is not an HTTP method"))?;
        (verb, path)
    } else {
        return Err("a google.api.http rule without a pattern (get, put, post, ...)".into());
    };
    let template = Template::parse(&path)?;
    let input = m.input();
    for f in template.fields() {
        check_path(&input, f).map_err(|e| format!("{path}: {e}"))?;
    }
    let body = match text("body").as_str() {
        "" => BodyField::None,
        "*" => BodyField::Whole,
        f => BodyField::Field(
            input
                .get_field_by_name(f)
                .ok_or_else(|| format!("body `{f}` is not a field of `{}`", input.full_name()))?,
        ),
    };
    let response_body = match text("response_body").as_str() {
        "" => None,
        f => Some(m.output().get_field_by_name(f).ok_or_else(|| {
            format!(
                "response_body `{f}` is not a field of `{}`",
                m.output().full_name()
            )
        })?),
    };
    rules.push(Rule {
        verb,
        template,
        method: index,
        body,
        response_body,
    });
    if depth == 0 {
        if let Some(Value::List(more)) = rule.get_field_by_name("additional_bindings").as_deref() {
            for r in more {
                if let Value::Message(r) = r {
                    add_rules(rules, r, m, index, 1)?;
                }
            }
        }
    }
    Ok(())
}

/// The field at `path` (proto or JSON names) under `msg`, through singular message fields.
fn resolve(msg: &MessageDescriptor, path: &[String]) -> Option<FieldDescriptor> {
    let mut desc = msg.clone();
    let mut found = None;
    for (i, name) in path.iter().enumerate() {
        let f = desc
            .get_field_by_name(name)
            .or_else(|| desc.get_field_by_json_name(name))?;
        if i + 1 < path.len() {
            match f.kind() {
                Kind::Message(m) if !f.is_list() && !f.is_map() => desc = m,
                _ => return None,
            }
        }
        found = Some(f);
    }
    found
}

fn same_field(msg: &MessageDescriptor, a: &[String], b: &[String]) -> bool {
    a.len() == b.len()
        && (1..=a.len()).all(|n| match (resolve(msg, &a[..n]), resolve(msg, &b[..n])) {
            (Some(x), Some(y)) => x.number() == y.number(),
            _ => false,
        })
}

fn check_path(msg: &MessageDescriptor, path: &[String]) -> Result<(), String> {
    let f = resolve(msg, path).ok_or_else(|| {
        format!(
            "`{}` is not a field of `{}`",
            path.join("."),
            msg.full_name()
        )
    })?;
    if f.is_list() || f.is_map() || matches!(f.kind(), Kind::Message(_)) {
        return Err(format!(
            "`{}` is not a singular scalar field: a path variable cannot set it",
            path.join(".")
        ));
    }
    Ok(())
}

/// A JSON body as a message of type `desc`; an error names the field (`book.pages: invalid type`).
fn from_json(desc: MessageDescriptor, body: &[u8], prefix: &str) -> Result<DynamicMessage, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut track = serde_path_to_error::Track::new();
    let seed = MessageSeed(desc);
    let msg = seed
        .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
        .map_err(|inner| {
            let path = track.path().to_string();
            match path.as_str() {
                "." | "" if prefix.is_empty() => format!("{inner}"),
                "." | "" => format!("{}: {inner}", prefix.trim_end_matches('.')),
                p => format!("{prefix}{p}: {inner}"),
            }
        })?;
    de.end()
        .map_err(|e| format!("trailing characters after the JSON: {e}"))?;
    Ok(msg)
}

struct MessageSeed(MessageDescriptor);

impl<'de> DeserializeSeed<'de> for MessageSeed {
    type Value = DynamicMessage;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<DynamicMessage, D::Error> {
        DynamicMessage::deserialize_with_options(self.0, d, &DeserializeOptions::new())
    }
}

/// The most segments a query parameter's field path (`a.b.c`) has.
pub const MAX_FIELD_PATH: usize = 32;

/// A query parameter's name as an error message quotes it: its first 100 characters.
fn shorten(name: &str) -> String {
    match name.char_indices().nth(100) {
        Some((i, _)) => format!("{}...", &name[..i]),
        None => name.to_owned(),
    }
}

#[derive(Debug)]
enum SetError {
    Unknown,
    Bad(String),
}

impl std::fmt::Display for SetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetError::Unknown => f.write_str("no such field in the request message"),
            SetError::Bad(m) => f.write_str(m),
        }
    }
}

/// Sets the field at `path` from its text (a path variable or query value); `append` adds to a
/// repeated field.
fn set_text(
    msg: &mut DynamicMessage,
    path: &[String],
    text: &str,
    append: bool,
) -> Result<(), SetError> {
    let desc = msg.descriptor();
    let name = &path[0];
    let f = desc
        .get_field_by_name(name)
        .or_else(|| desc.get_field_by_json_name(name))
        .ok_or(SetError::Unknown)?;
    if path.len() > 1 {
        if f.is_list() || f.is_map() || !matches!(f.kind(), Kind::Message(_)) {
            return Err(SetError::Unknown);
        }
        let Value::Message(inner) = msg.get_field_mut(&f) else {
            return Err(SetError::Unknown);
        };
        return set_text(inner, &path[1..], text, append);
    }
    if f.is_map() {
        return Err(SetError::Bad("a map field is not set from text".into()));
    }
    let value = scalar(&f.kind(), text).map_err(SetError::Bad)?;
    if f.is_list() {
        match msg.get_field_mut(&f) {
            Value::List(l) if append => l.push(value),
            Value::List(l) => *l = vec![value],
            _ => return Err(SetError::Unknown),
        }
    } else {
        msg.set_field(&f, value);
    }
    Ok(())
}

/// A scalar field's value from text: numbers, booleans, enum names or numbers, base64 bytes, and the
/// wrapper types (`google.protobuf.Int64Value`, ...) as their value.
fn scalar(kind: &Kind, t: &str) -> Result<Value, String> {
    use base64::Engine as _;
    let bad = |what: &str| format!("`{t}` is not {what}");
    Ok(match kind {
        Kind::Double => Value::F64(t.parse().map_err(|_| bad("a number"))?),
        Kind::Float => Value::F32(t.parse().map_err(|_| bad("a number"))?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(t.parse().map_err(|_| bad("a 32-bit integer"))?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(t.parse().map_err(|_| bad("a 64-bit integer"))?)
        }
        Kind::Uint32 | Kind::Fixed32 => {
            Value::U32(t.parse().map_err(|_| bad("an unsigned 32-bit integer"))?)
        }
        Kind::Uint64 | Kind::Fixed64 => {
            Value::U64(t.parse().map_err(|_| bad("an unsigned 64-bit integer"))?)
        }
        Kind::Bool => Value::Bool(match t {
            "true" => true,
            "false" => false,
            _ => return Err(bad("true or false")),
        }),
        Kind::String => Value::String(t.to_owned()),
        Kind::Bytes => {
            let e = base64::engine::general_purpose::STANDARD;
            let u = base64::engine::general_purpose::URL_SAFE;
            let b = e
                .decode(t)
                .or_else(|_| u.decode(t))
                .map_err(|_| bad("base64"))?;
            Value::Bytes(b.into())
        }
        Kind::Enum(e) => match e.get_value_by_name(t) {
            Some(v) => Value::EnumNumber(v.number()),
            None => Value::EnumNumber(
                t.parse()
                    .map_err(|_| bad(&format!("a value of `{}`", e.full_name())))?,
            ),
        },
        Kind::Message(m) if m.full_name().starts_with("google.protobuf.") => {
            let Some(f) = m.get_field_by_name("value") else {
                return Err(format!("`{}` is not set from text", m.full_name()));
            };
            let v = scalar(&f.kind(), t)?;
            let mut w = DynamicMessage::new(m.clone());
            w.set_field(&f, v);
            Value::Message(w)
        }
        Kind::Message(m) => return Err(format!("`{}` is not set from text", m.full_name())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_by_kind() {
        assert!(matches!(scalar(&Kind::Int64, "-5"), Ok(Value::I64(-5))));
        assert!(scalar(&Kind::Int32, "5000000000").is_err());
        assert!(matches!(scalar(&Kind::Bool, "true"), Ok(Value::Bool(true))));
        assert!(scalar(&Kind::Bool, "yes").is_err());
        assert!(matches!(scalar(&Kind::Bytes, "aGk="), Ok(Value::Bytes(b)) if &b[..] == b"hi"));
    }
}
