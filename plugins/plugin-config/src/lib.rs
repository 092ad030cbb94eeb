//! The checks every first-party plugin makes of its route config (JSON, as the gateway passes it):
//! a map of known fields, booleans, strings, lists of strings and header names.
//!
//! Every error starts with the path of the field it is about (`allow_origins[1]: ...`, `upstream: ...`),
//! which the gateway maps to the line of the route's YAML; `no config:` and `config:` are about the
//! config as a whole.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use serde_json::{Map, Value};

/// The fields of a route's config.
pub type Fields = Map<String, Value>;

/// Reads `config` as a JSON map whose keys are all in `known`. `wants` names what the map must hold,
/// for the error of a config that is empty or not a map: `expected a map with {wants} (and the other
/// fields in the plugin's README)`. An unknown field's error starts with its name, as every other
/// error starts with its field's path (`colour: unknown field (expected one of ...)`), so that the
/// gateway reports it at that field's line rather than at `config:`.
pub fn object(config: &str, known: &[&str], wants: &str) -> Result<Fields, String> {
    let expected =
        format!("expected a map with {wants} (and the other fields in the plugin's README)");
    if config.trim().is_empty() {
        return Err(format!("no config: {expected}"));
    }
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(config) else {
        return Err(format!("config: {expected}"));
    };
    if let Some(k) = m.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!(
            "{k}: unknown field (expected one of {})",
            known.join(", ")
        ));
    }
    Ok(m)
}

/// A boolean field (absent: `false`).
pub fn boolean(m: &Fields, field: &str) -> Result<bool, String> {
    match m.get(field) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!("{field}: expected true or false, not {other}")),
    }
}

/// A string field (absent: `None`).
pub fn string<'a>(m: &'a Fields, field: &str) -> Result<Option<&'a str>, String> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("{field}: expected a string, not {other}")),
    }
}

/// A list of strings, each read by `item` (absent: empty). `what` names the entries for the error of
/// a field that is not a list (`{field}: expected a list of {what}, not ...`); an error of `item` is
/// prefixed with the entry's path (`{field}[{i}]: `). Entries are checked in order and the first
/// wrong one is the error.
pub fn list<T>(
    m: &Fields,
    field: &str,
    what: &str,
    mut item: impl FnMut(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let items = match m.get(field) {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(format!("{field}: expected a list of {what}, not {other}")),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => item(s).map_err(|why| format!("{field}[{i}]: {why}")),
            other => Err(format!("{field}[{i}]: expected a string, not {other}")),
        })
        .collect()
}

/// A list of strings (absent: empty).
pub fn strings(m: &Fields, field: &str) -> Result<Vec<String>, String> {
    list(m, field, "strings", |s| Ok(s.to_string()))
}

/// A list of header names (absent: empty), lower-cased. `*` is a valid name, kept as it is: a plugin
/// that gives it a meaning (a wildcard) checks for it.
pub fn header_names(m: &Fields, field: &str) -> Result<Vec<String>, String> {
    list(m, field, "header names", |s| {
        if is_token(s) {
            Ok(s.to_ascii_lowercase())
        } else {
            Err(format!("`{s}` is not a valid header name"))
        }
    })
}

/// Whether `s` is an HTTP token (RFC 9110), as a method or a header name is.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: [&str; 2] = ["a", "b"];

    fn fields(json: &str) -> Fields {
        object(json, &KNOWN, "a").unwrap()
    }

    #[test]
    fn object_checks_the_whole_config() {
        let wants = "expected a map with a (and the other fields in the plugin's README)";
        for config in ["", " \n"] {
            assert_eq!(
                object(config, &KNOWN, "a").unwrap_err(),
                format!("no config: {wants}")
            );
        }
        for config in ["[]", "\"a\"", "{", "null"] {
            assert_eq!(
                object(config, &KNOWN, "a").unwrap_err(),
                format!("config: {wants}")
            );
        }
        assert_eq!(
            object(r#"{"a": 1, "c": 2}"#, &KNOWN, "a").unwrap_err(),
            "c: unknown field (expected one of a, b)"
        );
        assert!(fields("{}").is_empty());
        assert_eq!(fields(r#"{"a": 1, "b": 2}"#).len(), 2);
    }

    #[test]
    fn boolean_is_false_when_absent() {
        assert_eq!(boolean(&fields("{}"), "a"), Ok(false));
        assert_eq!(boolean(&fields(r#"{"a": true}"#), "a"), Ok(true));
        assert_eq!(
            boolean(&fields(r#"{"a": "yes"}"#), "a"),
            Err("a: expected true or false, not \"yes\"".into())
        );
    }

    #[test]
    fn string_is_none_when_absent() {
        assert_eq!(string(&fields("{}"), "a"), Ok(None));
        assert_eq!(string(&fields(r#"{"a": "x"}"#), "a"), Ok(Some("x")));
        assert_eq!(
            string(&fields(r#"{"a": 1}"#), "a"),
            Err("a: expected a string, not 1".into())
        );
    }

    #[test]
    fn list_names_the_entry() {
        let even = |s: &str| match s.parse::<u32>() {
            Ok(n) if n % 2 == 0 => Ok(n),
            _ => Err(format!("`{s}` is not even")),
        };
        assert_eq!(list(&fields("{}"), "a", "evens", even), Ok(vec![]));
        assert_eq!(
            list(&fields(r#"{"a": ["2", "4"]}"#), "a", "evens", even),
            Ok(vec![2, 4])
        );
        assert_eq!(
            list(&fields(r#"{"a": "2"}"#), "a", "evens", even),
            Err("a: expected a list of evens, not \"2\"".into())
        );
        assert_eq!(
            list(&fields(r#"{"a": ["2", 4]}"#), "a", "evens", even),
            Err("a[1]: expected a string, not 4".into())
        );
        assert_eq!(
            list(&fields(r#"{"a": ["2", "3", 5]}"#), "a", "evens", even),
            Err("a[1]: `3` is not even".into())
        );
    }

    #[test]
    fn strings_are_a_list() {
        assert_eq!(strings(&fields("{}"), "a"), Ok(vec![]));
        assert_eq!(
            strings(&fields(r#"{"a": ["x", ""]}"#), "a"),
            Ok(vec!["x".into(), "".into()])
        );
        assert_eq!(
            strings(&fields(r#"{"a": null}"#), "a"),
            Err("a: expected a list of strings, not null".into())
        );
        assert_eq!(
            strings(&fields(r#"{"a": ["x", true]}"#), "a"),
            Err("a[1]: expected a string, not true".into())
        );
    }

    #[test]
    fn header_names_are_tokens_lower_cased() {
        assert_eq!(
            header_names(&fields(r#"{"b": ["X-Api-Key", "*"]}"#), "b"),
            Ok(vec!["x-api-key".into(), "*".into()])
        );
        assert_eq!(
            header_names(&fields(r#"{"b": "x-a"}"#), "b"),
            Err("b: expected a list of header names, not \"x-a\"".into())
        );
        assert_eq!(
            header_names(&fields(r#"{"b": ["x-a", "x y"]}"#), "b"),
            Err("b[1]: `x y` is not a valid header name".into())
        );
        assert_eq!(
            header_names(&fields(r#"{"b": [""]}"#), "b"),
            Err("b[0]: `` is not a valid header name".into())
        );
    }

    #[test]
    fn tokens() {
        for ok in ["GET", "x-request-id", "!#$%&'*+-.^_`|~09az"] {
            assert!(is_token(ok), "{ok}");
        }
        for bad in ["", "a b", "a:b", "a\"b", "a(b", "é", "a\tb"] {
            assert!(!is_token(bad), "{bad}");
        }
    }
}
