//! The route's config: read from JSON, checked, and compiled into [`Config`]. Every error names the
//! field it is about.

use crate::xml::{is_ncname, is_qname};
use plugin_config::{boolean, list, object, string, Fields};
use serde_json::Value;

/// `xml_content_type` when the config does not set it.
pub const DEFAULT_XML_CONTENT_TYPE: &str = "application/xml; charset=utf-8";

/// What happens to a body going one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convert {
    JsonToXml,
    XmlToJson,
    None,
}

/// How names with a namespace prefix come out in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespaces {
    /// `ns:name` as written, `xmlns` declarations as attributes.
    Keep,
    /// Local names only, no `xmlns` declarations.
    Strip,
}

/// The SOAP version of the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    V11,
    V12,
}

/// The `soap` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soap {
    pub version: SoapVersion,
    pub operation: String,
    pub namespace: Option<String>,
    pub prefix: Option<String>,
    pub action: Option<String>,
}

/// How XML and JSON map onto each other (see README.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub attribute_prefix: String,
    pub text_key: String,
    pub namespaces: Namespaces,
    pub infer_types: bool,
    /// `array_paths`, split into their names (`*` matches any).
    pub arrays: Vec<Vec<String>>,
}

/// The compiled config of one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub request: Convert,
    pub response: Convert,
    /// The root element's name when the JSON is its content.
    pub root: Option<String>,
    pub xml_content_type: String,
    pub soap: Option<Soap>,
    pub mapping: Mapping,
}

const FIELDS: [&str; 10] = [
    "request",
    "response",
    "root",
    "array_paths",
    "infer_types",
    "namespaces",
    "attribute_prefix",
    "text_key",
    "xml_content_type",
    "soap",
];

const SOAP_FIELDS: [&str; 5] = ["version", "operation", "namespace", "prefix", "action"];

/// Reads and checks the route's config (JSON, as the gateway passes it; none at all is `{}`).
pub fn parse(config: &str) -> Result<Config, String> {
    let config = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    let m = object(config, &FIELDS, "request and response")?;
    let request = convert(&m, "request", Convert::JsonToXml)?;
    let response = convert(&m, "response", Convert::XmlToJson)?;
    let root = match string(&m, "root")? {
        None => None,
        Some(r) if is_qname(r) => Some(r.to_string()),
        Some(r) => return Err(format!("root: `{r}` is not an XML element name")),
    };
    let attribute_prefix = string(&m, "attribute_prefix")?.unwrap_or("@").to_string();
    if attribute_prefix.is_empty() || attribute_prefix.contains(|c: char| is_ncname(&c.to_string()))
    {
        return Err(format!(
            "attribute_prefix: `{attribute_prefix}` cannot be told from an element name; use \
             characters that cannot start one, such as `@` or `-`"
        ));
    }
    let text_key = string(&m, "text_key")?.unwrap_or("#text").to_string();
    if text_key.is_empty() || is_qname(&text_key) || text_key.starts_with(&attribute_prefix) {
        return Err(format!(
            "text_key: `{text_key}` cannot be told from an element or attribute name; use a key \
             such as `#text` or `$`"
        ));
    }
    let namespaces = match string(&m, "namespaces")? {
        None | Some("keep") => Namespaces::Keep,
        Some("strip") => Namespaces::Strip,
        Some(other) => {
            return Err(format!(
                "namespaces: expected `keep` or `strip`, not `{other}`"
            ))
        }
    };
    let arrays = list(&m, "array_paths", "paths such as /order/items/item", |p| {
        let Some(rest) = p.strip_prefix('/') else {
            return Err(format!(
                "`{p}` is not a path: start it with `/` and the outermost JSON key"
            ));
        };
        rest.split('/')
            .map(|name| match name {
                "*" => Ok(name.to_string()),
                _ if is_qname(name) => Ok(name.to_string()),
                _ => Err(format!("`{name}` in `{p}` is not an element name or `*`")),
            })
            .collect()
    })?;
    let xml_content_type = match string(&m, "xml_content_type")? {
        None => DEFAULT_XML_CONTENT_TYPE.to_string(),
        Some(t) if !t.is_empty() && t.bytes().all(|b| (b' '..=b'~').contains(&b)) => t.to_string(),
        Some(t) => {
            return Err(format!(
                "xml_content_type: `{t}` is not a header value (visible ASCII, not empty)"
            ))
        }
    };
    let soap = match m.get("soap") {
        None => None,
        Some(Value::Object(s)) => Some(soap(s)?),
        Some(other) => {
            return Err(format!(
                "soap: expected a map with version and operation, not {other}"
            ))
        }
    };
    if soap.is_some() {
        if request != Convert::JsonToXml || response == Convert::JsonToXml {
            return Err(
                "soap: a SOAP envelope needs `request: json_to_xml` and `response: \
                        xml_to_json` (or `none`)"
                    .into(),
            );
        }
        if root.is_some() {
            return Err("root: not used with soap: the operation element is the root".into());
        }
    }
    Ok(Config {
        request,
        response,
        root,
        xml_content_type,
        soap,
        mapping: Mapping {
            attribute_prefix,
            text_key,
            namespaces,
            infer_types: boolean(&m, "infer_types")?,
            arrays,
        },
    })
}

fn convert(m: &Fields, field: &str, default: Convert) -> Result<Convert, String> {
    match string(m, field)? {
        None => Ok(default),
        Some("json_to_xml") => Ok(Convert::JsonToXml),
        Some("xml_to_json") => Ok(Convert::XmlToJson),
        Some("none") => Ok(Convert::None),
        Some(other) => Err(format!(
            "{field}: expected `json_to_xml`, `xml_to_json` or `none`, not `{other}`"
        )),
    }
}

fn soap(s: &Fields) -> Result<Soap, String> {
    if let Some(k) = s.keys().find(|k| !SOAP_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "soap.{k}: unknown field (expected one of {})",
            SOAP_FIELDS.join(", ")
        ));
    }
    let version = match s.get("version") {
        None => {
            return Err(
                "soap.version: missing; `\"1.1\"` (text/xml, SOAPAction) or `\"1.2\"` \
                        (application/soap+xml)"
                    .into(),
            )
        }
        Some(Value::String(v)) if v == "1.1" => SoapVersion::V11,
        Some(Value::String(v)) if v == "1.2" => SoapVersion::V12,
        // `version: 1.1` unquoted in YAML is a number.
        Some(Value::Number(n)) if n.as_f64() == Some(1.1) => SoapVersion::V11,
        Some(Value::Number(n)) if n.as_f64() == Some(1.2) => SoapVersion::V12,
        Some(other) => {
            return Err(format!(
                "soap.version: expected \"1.1\" or \"1.2\", not {other}"
            ))
        }
    };
    let text = |field: &str| -> Result<Option<String>, String> {
        match s.get(field) {
            None => Ok(None),
            Some(Value::String(v)) => Ok(Some(v.clone())),
            Some(other) => Err(format!("soap.{field}: expected a string, not {other}")),
        }
    };
    let operation = match text("operation")? {
        None => {
            return Err(
                "soap.operation: missing; the name of the operation's element, such as \
                        GetUser"
                    .into(),
            )
        }
        Some(op) if is_ncname(&op) => op,
        Some(op) => {
            return Err(format!(
                "soap.operation: `{op}` is not an element name (without a prefix; set \
                 soap.prefix for one)"
            ))
        }
    };
    let namespace = text("namespace")?;
    if namespace.as_deref() == Some("") {
        return Err("soap.namespace: empty; leave it out for an operation in no namespace".into());
    }
    let prefix = match text("prefix")? {
        None => None,
        Some(p) if is_ncname(&p) && !p.eq_ignore_ascii_case("xmlns") && p != "soap" => Some(p),
        Some(p) => {
            return Err(format!(
                "soap.prefix: `{p}` is not a usable namespace prefix (a name without `:`, not \
                 `xmlns` or `soap`)"
            ))
        }
    };
    if prefix.is_some() && namespace.is_none() {
        return Err("soap.prefix: needs soap.namespace, the URI the prefix stands for".into());
    }
    let action = text("action")?;
    if let Some(a) = &action {
        if a.contains(['"', '\\']) || !a.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return Err(format!(
                "soap.action: `{a}` cannot be sent in a header (visible ASCII without `\"` or `\\`)"
            ));
        }
    }
    Ok(Soap {
        version,
        operation,
        namespace,
        prefix,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(config: &str) -> String {
        parse(config).expect_err("the config should be refused")
    }

    #[test]
    fn defaults() {
        for empty in ["", "{}"] {
            let c = parse(empty).unwrap();
            assert_eq!(c.request, Convert::JsonToXml);
            assert_eq!(c.response, Convert::XmlToJson);
            assert_eq!(c.root, None);
            assert_eq!(c.soap, None);
            assert_eq!(c.xml_content_type, DEFAULT_XML_CONTENT_TYPE);
            assert_eq!(c.mapping.attribute_prefix, "@");
            assert_eq!(c.mapping.text_key, "#text");
            assert_eq!(c.mapping.namespaces, Namespaces::Keep);
            assert!(!c.mapping.infer_types);
            assert!(c.mapping.arrays.is_empty());
        }
    }

    #[test]
    fn every_field() {
        let c = parse(
            r#"{"request": "xml_to_json", "response": "json_to_xml", "root": "ns:doc",
                "array_paths": ["/doc/items/item", "/*/tags"], "infer_types": true,
                "namespaces": "strip", "attribute_prefix": "-", "text_key": "$",
                "xml_content_type": "text/xml"}"#,
        )
        .unwrap();
        assert_eq!(c.request, Convert::XmlToJson);
        assert_eq!(c.response, Convert::JsonToXml);
        assert_eq!(c.root.as_deref(), Some("ns:doc"));
        assert_eq!(
            c.mapping.arrays,
            [vec!["doc", "items", "item"], vec!["*", "tags"]]
        );
        assert!(c.mapping.infer_types);
        assert_eq!(c.mapping.namespaces, Namespaces::Strip);
        assert_eq!(c.mapping.attribute_prefix, "-");
        assert_eq!(c.mapping.text_key, "$");
        assert_eq!(c.xml_content_type, "text/xml");
    }

    #[test]
    fn soap_block() {
        let c = parse(
            r#"{"soap": {"version": "1.2", "operation": "GetUser", "namespace": "urn:users",
                "prefix": "u", "action": "urn:users#GetUser"}}"#,
        )
        .unwrap();
        assert_eq!(
            c.soap,
            Some(Soap {
                version: SoapVersion::V12,
                operation: "GetUser".into(),
                namespace: Some("urn:users".into()),
                prefix: Some("u".into()),
                action: Some("urn:users#GetUser".into()),
            })
        );
        let c = parse(r#"{"soap": {"version": 1.1, "operation": "Ping"}, "response": "none"}"#)
            .unwrap();
        assert_eq!(c.soap.unwrap().version, SoapVersion::V11);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            err(r#"{"colour": 1}"#),
            "colour: unknown field (expected one of request, response, root, array_paths, \
             infer_types, namespaces, attribute_prefix, text_key, xml_content_type, soap)"
        );
        assert_eq!(
            err(r#"{"request": "xml"}"#),
            "request: expected `json_to_xml`, `xml_to_json` or `none`, not `xml`"
        );
        assert_eq!(
            err(r#"{"root": "a b"}"#),
            "root: `a b` is not an XML element name"
        );
        assert!(err(r#"{"array_paths": ["items"]}"#).starts_with("array_paths[0]: `items`"));
        assert!(err(r#"{"array_paths": ["/a", "/a//b"]}"#).starts_with("array_paths[1]: ``"));
        assert!(err(r#"{"attribute_prefix": ""}"#).starts_with("attribute_prefix: "));
        assert!(err(r#"{"attribute_prefix": "a"}"#).starts_with("attribute_prefix: "));
        assert!(err(r#"{"text_key": "text"}"#).starts_with("text_key: "));
        assert!(err(r#"{"text_key": "@t"}"#).starts_with("text_key: "));
        assert!(err(r#"{"namespaces": "drop"}"#).starts_with("namespaces: "));
        assert!(err(r#"{"infer_types": "yes"}"#).starts_with("infer_types: "));
        assert!(err(r#"{"xml_content_type": "a\nb"}"#).starts_with("xml_content_type: "));
        assert!(err(r#"{"soap": "1.1"}"#).starts_with("soap: expected a map"));
        assert!(err(r#"{"soap": {"operation": "A"}}"#).starts_with("soap.version: missing"));
        assert!(err(r#"{"soap": {"version": "2"}}"#).starts_with("soap.version: expected"));
        assert!(err(r#"{"soap": {"version": "1.1"}}"#).starts_with("soap.operation: missing"));
        assert!(err(r#"{"soap": {"version": "1.1", "operation": "a:B"}}"#)
            .starts_with("soap.operation: `a:B`"));
        assert!(
            err(r#"{"soap": {"version": "1.1", "operation": "A", "x": 1}}"#)
                .starts_with("soap.x: unknown field")
        );
        assert!(
            err(r#"{"soap": {"version": "1.1", "operation": "A", "prefix": "u"}}"#)
                .starts_with("soap.prefix: needs soap.namespace")
        );
        assert!(err(
            r#"{"soap": {"version": "1.1", "operation": "A", "namespace": "u", "prefix": "soap"}}"#
        )
        .starts_with("soap.prefix: `soap`"));
        assert!(
            err(r#"{"soap": {"version": "1.1", "operation": "A", "action": "a\"b"}}"#)
                .starts_with("soap.action: ")
        );
        assert!(
            err(r#"{"soap": {"version": "1.1", "operation": "A"}, "request": "xml_to_json"}"#)
                .starts_with("soap: a SOAP envelope needs")
        );
        assert!(
            err(r#"{"soap": {"version": "1.1", "operation": "A"}, "root": "r"}"#)
                .starts_with("root: not used with soap")
        );
    }
}
