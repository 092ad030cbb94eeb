//! What the config says of the access log's fields: their names, the default list, and [`Field`]
//! as `server.access_log.fields` writes it. Writing the line is `crate::access_log`'s job.

use schemars::JsonSchema;
use std::borrow::Cow;

/// The fields of a line when the config lists none: what the log had before fields were
/// configurable, then the trace, the per-phase timings and the total.
pub const DEFAULT_FIELDS: &[&str] = &[
    "route",
    "upstream",
    "endpoint",
    "client",
    "consumer",
    "request_id",
    "trace_id",
    "span_id",
    "method",
    "path",
    "status",
    "bytes",
    "complete",
    "request_filters_ms",
    "upstream_ms",
    "response_filters_ms",
    "duration_ms",
];

/// Every field name a line may have besides the header fields.
pub const FIELDS: &[&str] = &[
    "route",
    "upstream",
    "endpoint",
    "client",
    "peer",
    "consumer",
    "request_id",
    "trace_id",
    "span_id",
    "listener",
    "method",
    "host",
    "path",
    "query",
    "protocol",
    "status",
    "bytes",
    "complete",
    "request_filters_ms",
    "upstream_ms",
    "response_filters_ms",
    "duration_ms",
];

/// One field of the access log: a name of [`FIELDS`], or `request_header.NAME` /
/// `response_header.NAME` (the header's value; several values joined with `, `).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// A field of [`FIELDS`].
    Named(&'static str),
    /// A request header, as the client sent it (lower-case name).
    RequestHeader(http::HeaderName),
    /// A response header, as the client gets it (lower-case name).
    ResponseHeader(http::HeaderName),
}

impl Field {
    /// Reads a field as the config writes it.
    pub fn parse(text: &str) -> Result<Field, String> {
        if let Some(name) = FIELDS.iter().find(|f| **f == text) {
            return Ok(Field::Named(name));
        }
        let header = |name: &str| {
            http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` in `{text}` is not a header name"))
        };
        if let Some(name) = text.strip_prefix("request_header.") {
            return header(name).map(Field::RequestHeader);
        }
        if let Some(name) = text.strip_prefix("response_header.") {
            return header(name).map(Field::ResponseHeader);
        }
        Err(format!(
            "unknown access log field `{text}`, expected one of {}, request_header.NAME or response_header.NAME",
            FIELDS.join(", ")
        ))
    }

    /// The key the field has in a line.
    pub fn key(&self) -> Cow<'static, str> {
        match self {
            Field::Named(n) => Cow::Borrowed(n),
            Field::RequestHeader(h) => Cow::Owned(format!("request_header.{h}")),
            Field::ResponseHeader(h) => Cow::Owned(format!("response_header.{h}")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Field::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Field {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.key())
    }
}

impl JsonSchema for Field {
    fn schema_name() -> Cow<'static, str> {
        "AccessLogField".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An access log field: one of the names listed, or `request_header.NAME` / `response_header.NAME` for a header's value.",
            "anyOf": [
                {"enum": FIELDS},
                {"type": "string", "pattern": "^(request|response)_header\\.[!#$%&'*+.^_`|~0-9A-Za-z-]+$"}
            ]
        })
    }
}

/// The default field list.
pub fn default_fields() -> Vec<Field> {
    DEFAULT_FIELDS.iter().map(|f| Field::Named(f)).collect()
}

/// Reads `server.access_log.fields`, refusing a field listed twice at that item
/// (`server.access_log.fields[i]`): the text line would have the field twice, while a JSON object
/// cannot. Two spellings of one header (`request_header.X-Id`, `request_header.x-id`) are one field.
pub fn unique_fields<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Field>, D::Error> {
    struct List;

    impl<'de> serde::de::Visitor<'de> for List {
        type Value = Vec<Field>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of access log fields")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<Field>, A::Error> {
            let mut fields = Vec::new();
            while let Some(field) = seq.next_element_seed(Unlisted(&fields))? {
                fields.push(field);
            }
            Ok(fields)
        }
    }

    d.deserialize_seq(List)
}

/// One more item of a field list, which must not be one of the fields before it. (Checked as the
/// item is read, so that the error's path names the item.)
struct Unlisted<'a>(&'a [Field]);

impl<'de> serde::de::DeserializeSeed<'de> for Unlisted<'_> {
    type Value = Field;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Field, D::Error> {
        let field = <Field as serde::Deserialize>::deserialize(d)?;
        match self.0.iter().position(|f| *f == field) {
            Some(i) => Err(serde::de::Error::custom(format!(
                "`{}` is listed twice (also item {i}); a line has each field once",
                field.key()
            ))),
            None => Ok(field),
        }
    }
}
