//! What `request-transformer` and `response-transformer` share: their config's rules
//! ([`rules`]: Kong's five operations with names and values, list or map form), header rules applied
//! to a request or a response ([`headers`]), and JSON bodies ([`json`], a document that keeps its
//! members' order) changed at JSON Pointers ([`pointer`]).
//!
//! A plain library: the gateway embeds every `cdylib` of this workspace as a plugin.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod headers;
pub mod json;
pub mod pointer;
pub mod rules;

use json::Json;
use pointer::Pointer;
use rules::Rules;

/// Applies body rules to a JSON document in Kong's order (remove, rename, replace, add, append;
/// each in config order). Returns whether anything changed.
pub fn apply_body(doc: &mut Json, r: &Rules<Pointer, Json>) -> bool {
    let mut changed = false;
    for p in &r.remove {
        changed |= pointer::remove(doc, p);
    }
    for (from, to) in &r.rename {
        changed |= pointer::rename(doc, from, to);
    }
    for (p, v) in &r.replace {
        changed |= pointer::replace(doc, p, v.clone());
    }
    for (p, v) in &r.add {
        changed |= pointer::add(doc, p, v.clone());
    }
    for (p, v) in &r.append {
        changed |= pointer::append(doc, p, v.clone());
    }
    changed
}

/// Checks a body `rename`: its source must be an existing field (not `-`), and its destination
/// must not lie inside it.
pub fn rename_pair(from: &Pointer, to: &Pointer) -> Result<(), String> {
    if from.is_end() {
        return Err("`-` (the end of an array) names no field to rename".into());
    }
    if from.contains(to) {
        return Err("a field cannot be renamed to itself or into itself".into());
    }
    Ok(())
}

/// Checks the rules of a body: `-` (the end of an array) names no existing field, so only `add`,
/// `append` and a rename's destination take it; a rename's destination is outside its source.
pub fn check_body<V>(r: &Rules<Pointer, V>, target: &str) -> Result<(), String> {
    if r.remove.iter().any(Pointer::is_end) {
        return Err(format!(
            "remove.{target}: `-` (the end of an array) names no field to remove"
        ));
    }
    if r.replace.iter().any(|(p, _)| p.is_end()) {
        return Err(format!(
            "replace.{target}: `-` (the end of an array) names no field to replace"
        ));
    }
    for (from, to) in &r.rename {
        rename_pair(from, to).map_err(|why| format!("rename.{target}: {why}"))?;
    }
    Ok(())
}

/// Whether a `Content-Type` is JSON: `application/json` or a `+json` type such as
/// `application/problem+json` (parameters and case aside).
pub fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let media = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some((kind, sub)) = media.split_once('/') else {
        return false;
    };
    kind == "application" && (sub == "json" || sub.ends_with("+json"))
}

/// Whether a `Content-Encoding` says the body is compressed (anything but none or `identity`): such a
/// body is not read as JSON.
pub fn is_encoded(content_encoding: Option<&str>) -> bool {
    content_encoding.is_some_and(|e| {
        e.split(',')
            .map(str::trim)
            .any(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/problem+json ",
            "application/vnd.api+json;v=1",
        ] {
            assert!(is_json(Some(yes)), "{yes}");
        }
        for no in [
            "text/json",
            "application/jsonx",
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
            "json",
        ] {
            assert!(!is_json(Some(no)), "{no}");
        }
        assert!(!is_json(None));
    }

    #[test]
    fn encodings() {
        assert!(!is_encoded(None));
        assert!(!is_encoded(Some("identity")));
        assert!(!is_encoded(Some("")));
        assert!(is_encoded(Some("gzip")));
        assert!(is_encoded(Some("identity, br")));
    }

    fn p(s: &str) -> Pointer {
        Pointer::parse(s).unwrap()
    }

    #[test]
    fn body_rules_in_order() {
        let mut doc =
            Json::parse(br#"{"password":"x","user":{"name":"ann"},"tags":["a"],"v":1}"#).unwrap();
        let j = |t: &str| Json::parse(t.as_bytes()).unwrap();
        let r = Rules {
            remove: vec![p("/password")],
            rename: vec![(p("/user/name"), p("/user/full_name"))],
            replace: vec![(p("/v"), j("2")), (p("/user/full_name"), j("\"Ann\""))],
            add: vec![(p("/meta/source"), j("\"gw\"")), (p("/v"), j("3"))],
            append: vec![(p("/tags"), j("\"b\""))],
        };
        assert!(apply_body(&mut doc, &r));
        assert_eq!(
            String::from_utf8(doc.to_vec()).unwrap(),
            r#"{"user":{"full_name":"Ann"},"tags":["a","b"],"v":2,"meta":{"source":"gw"}}"#
        );
        let none = Rules {
            remove: vec![p("/absent")],
            replace: vec![(p("/nope"), j("1"))],
            ..Rules::default()
        };
        assert!(!apply_body(&mut doc, &none));
    }

    #[test]
    fn body_checks() {
        let r = |remove: &[&str], rename: &[(&str, &str)]| Rules::<Pointer, ()> {
            remove: remove.iter().map(|s| p(s)).collect(),
            rename: rename.iter().map(|(a, b)| (p(a), p(b))).collect(),
            ..Rules::default()
        };
        assert!(check_body(&r(&["/a/-"], &[]), "body")
            .unwrap_err()
            .starts_with("remove.body: "));
        assert!(check_body(&r(&[], &[("/a", "/a/b")]), "json")
            .unwrap_err()
            .starts_with("rename.json: "));
        assert!(check_body(&r(&[], &[("/a/-", "/b")]), "json").is_err());
        assert!(check_body(&r(&["/a"], &[("/a/b", "/a"), ("/l/0", "/l/-")]), "body").is_ok());
        let rep = Rules::<Pointer, ()> {
            replace: vec![(p("/l/-"), ())],
            ..Rules::default()
        };
        assert!(check_body(&rep, "body").is_err());
    }
}
