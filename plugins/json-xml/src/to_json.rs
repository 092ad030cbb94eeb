//! XML to JSON (the mapping is in README.md): an element without attributes or child elements is
//! its text (a string; `null` when empty), any other element an object with `@attribute` keys,
//! `#text` for its text and a key per child element name, whose value is an array when the name
//! repeats or its path is in `array_paths`.

use crate::config::{Mapping, Namespaces};
use crate::json::Json;
use crate::xml::{is_xml_space, local, Element};
use serde_json::Number;
use std::collections::HashMap;

/// The JSON of a document whose root is `root`: `{"name": content}`, or the root's content alone
/// when `unwrap` (the config's `root`, or a SOAP operation).
pub fn document(root: &Element, m: &Mapping, unwrap: bool) -> Json {
    if unwrap {
        content(root, m, &mut Vec::new())
    } else {
        let name = name(&root.name, m).to_string();
        let mut path = vec![name.clone()];
        let value = content(root, m, &mut path);
        Json::Object(vec![(name, value)])
    }
}

/// The name as JSON shows it.
fn name<'a>(n: &'a str, m: &Mapping) -> &'a str {
    match m.namespaces {
        Namespaces::Keep => n,
        Namespaces::Strip => local(n),
    }
}

fn is_declaration(attr: &str) -> bool {
    attr == "xmlns" || attr.starts_with("xmlns:")
}

/// The JSON of an element's attributes, text and children; `path` is the element's own path of JSON
/// keys (array indexes left out), which `array_paths` are matched against.
pub fn content(e: &Element, m: &Mapping, path: &mut Vec<String>) -> Json {
    let attrs: Vec<(String, Json)> = e
        .attrs
        .iter()
        .filter(|(n, _)| m.namespaces == Namespaces::Keep || !is_declaration(n))
        .map(|(n, v)| {
            (
                format!("{}{}", m.attribute_prefix, name(n, m)),
                scalar(v, m),
            )
        })
        .collect();
    if attrs.is_empty() && e.children.is_empty() {
        return if e.text.is_empty() {
            Json::Null
        } else {
            scalar(&e.text, m)
        };
    }
    let mut members = attrs;
    // A leaf's text is kept as it is; between child elements, white space is layout.
    let text = if e.children.is_empty() {
        e.text.as_str()
    } else {
        e.text.trim_matches(is_xml_space)
    };
    if !text.is_empty() {
        members.push((m.text_key.clone(), scalar(text, m)));
    }
    // Children grouped by name, in the order each name first appears (indexed: an element may
    // have many children of distinct names).
    // The path is kept only when array_paths need it.
    let paths = !m.arrays.is_empty();
    let mut groups: Vec<(&str, Vec<Json>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for child in &e.children {
        let key = name(&child.name, m);
        if paths {
            path.push(key.to_string());
        }
        let value = content(child, m, path);
        if paths {
            path.pop();
        }
        match index.get(key) {
            Some(&i) => groups[i].1.push(value),
            None => {
                index.insert(key, groups.len());
                groups.push((key, vec![value]));
            }
        }
    }
    for (key, mut values) in groups {
        let array = values.len() > 1 || (paths && is_array_path(path, key, &m.arrays));
        let value = if array {
            Json::Array(values)
        } else {
            values.pop().expect("a group has a value")
        };
        members.push((key.to_string(), value));
    }
    Json::Object(members)
}

/// Whether the child `key` of the element at `path` is in `array_paths`.
fn is_array_path(path: &[String], key: &str, arrays: &[Vec<String>]) -> bool {
    let full = path.iter().map(String::as_str).chain(std::iter::once(key));
    arrays.iter().any(|p| {
        p.len() == path.len() + 1
            && p.iter()
                .zip(full.clone())
                .all(|(want, got)| want == "*" || want == got)
    })
}

/// A text or attribute value: a string, or with `infer_types` a boolean or number when it is
/// exactly one.
pub fn scalar(text: &str, m: &Mapping) -> Json {
    if m.infer_types {
        match text {
            "true" => return Json::Bool(true),
            "false" => return Json::Bool(false),
            _ => {}
        }
        if let Some(n) = number(text) {
            return Json::Number(n);
        }
    }
    Json::String(text.to_string())
}

/// `text` as a JSON number when it is written as one (JSON's grammar, nothing around it): an
/// integer that fits in 64 bits, or a finite decimal (a double). Larger integers stay strings, so
/// no digit is lost.
fn number(text: &str) -> Option<Number> {
    let b = text.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let int_len = digits(&mut i);
    if int_len == 0 || (int_len > 1 && b[int_start] == b'0') {
        return None;
    }
    let mut integer = true;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return None;
        }
        integer = false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
        integer = false;
    }
    if i != b.len() {
        return None;
    }
    if integer {
        if let Ok(n) = text.parse::<i64>() {
            return Some(n.into());
        }
        return text.parse::<u64>().ok().map(Number::from);
    }
    text.parse::<f64>().ok().and_then(Number::from_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::xml;

    fn mapping(extra: &str) -> Mapping {
        config::parse(&format!("{{{extra}}}")).unwrap().mapping
    }

    fn convert(xml: &str, extra: &str) -> String {
        let root = xml::parse(xml.as_bytes()).unwrap();
        let json = document(&root, &mapping(extra), false);
        serde_json::to_string(&json).unwrap()
    }

    #[test]
    fn leaves_attributes_text_and_repeats() {
        let xml = r#"<?xml version="1.0"?>
<order id="42" xmlns:x="urn:x">
  <item sku="a1">Pen</item>
  <item sku="b2">Ink</item>
  <note>  keep  my spaces </note>
  <empty/>
  <also></also>
  <x:tag>t</x:tag>
  <price currency="EUR">3.50</price>
</order>"#;
        assert_eq!(
            convert(xml, ""),
            r##"{"order":{"@id":"42","@xmlns:x":"urn:x","item":[{"@sku":"a1","#text":"Pen"},{"@sku":"b2","#text":"Ink"}],"note":"  keep  my spaces ","empty":null,"also":null,"x:tag":"t","price":{"@currency":"EUR","#text":"3.50"}}}"##
        );
        assert_eq!(
            convert(xml, r#""namespaces": "strip", "infer_types": true"#),
            r##"{"order":{"@id":42,"item":[{"@sku":"a1","#text":"Pen"},{"@sku":"b2","#text":"Ink"}],"note":"  keep  my spaces ","empty":null,"also":null,"tag":"t","price":{"@currency":"EUR","#text":3.5}}}"##
        );
    }

    #[test]
    fn mixed_content_keeps_its_text() {
        assert_eq!(
            convert("<p> Hello <b>you</b> there </p>", ""),
            r##"{"p":{"#text":"Hello  there","b":"you"}}"##
        );
        assert_eq!(
            convert("<p a='1'/>", r#""attribute_prefix": "-", "text_key": "$""#),
            r#"{"p":{"-a":"1"}}"#
        );
        assert_eq!(
            convert(
                "<p a='1'>x</p>",
                r#""attribute_prefix": "-", "text_key": "$""#
            ),
            r#"{"p":{"-a":"1","$":"x"}}"#
        );
    }

    #[test]
    fn array_paths_make_one_element_a_list() {
        let xml = "<users><user><role>admin</role></user></users>";
        assert_eq!(convert(xml, ""), r#"{"users":{"user":{"role":"admin"}}}"#);
        assert_eq!(
            convert(xml, r#""array_paths": ["/users/user", "/users/*/role"]"#),
            r#"{"users":{"user":[{"role":["admin"]}]}}"#
        );
        // The path is the JSON's: with the root unwrapped it starts below it.
        let root = xml::parse(xml.as_bytes()).unwrap();
        let json = document(&root, &mapping(r#""array_paths": ["/user"]"#), true);
        assert_eq!(
            serde_json::to_string(&json).unwrap(),
            r#"{"user":[{"role":"admin"}]}"#
        );
    }

    #[test]
    fn types_are_inferred_only_when_asked_and_exact() {
        let m = mapping(r#""infer_types": true"#);
        let cases = [
            ("true", "true"),
            ("false", "false"),
            ("0", "0"),
            ("-12", "-12"),
            ("18446744073709551615", "18446744073709551615"),
            ("1.5", "1.5"),
            ("-2.5e3", "-2500.0"),
            ("1E2", "100.0"),
            ("99999999999999999999999", "\"99999999999999999999999\""),
            ("007", "\"007\""),
            (" 1", "\" 1\""),
            ("1 ", "\"1 \""),
            ("+1", "\"+1\""),
            (".5", "\".5\""),
            ("1.", "\"1.\""),
            ("1e", "\"1e\""),
            ("NaN", "\"NaN\""),
            ("1e999", "\"1e999\""),
            ("True", "\"True\""),
            ("", "\"\""),
        ];
        for (text, json) in cases {
            assert_eq!(
                serde_json::to_string(&scalar(text, &m)).unwrap(),
                json,
                "{text}"
            );
        }
        let plain = mapping("");
        assert_eq!(scalar("12", &plain), Json::String("12".into()));
        assert_eq!(scalar("true", &plain), Json::String("true".into()));
    }
}
