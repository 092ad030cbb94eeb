//! The rules of a transformer's config, Kong's shape: five operations (`remove`, `rename`,
//! `replace`, `add`, `append`, applied in that order), each a map of targets (`headers`,
//! `querystring`, `body`, `json`) whose entries are either a list of `"name:value"` strings (Kong's
//! form) or a map `{name: value}`. Every error starts with the path of the entry it is about.

use plugin_config::{is_token, Fields};
use serde_json::Value;

/// The operations, in the order they are applied.
pub const OPS: [&str; 5] = ["remove", "rename", "replace", "add", "append"];

/// The rules for one target (the headers, the query, the body): names of type `N`, values of `V`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules<N, V> {
    /// Fields to remove.
    pub remove: Vec<N>,
    /// Fields to rename (from, to).
    pub rename: Vec<(N, N)>,
    /// Fields to set, only where they are.
    pub replace: Vec<(N, V)>,
    /// Fields to set, only where they are not.
    pub add: Vec<(N, V)>,
    /// Values to add to a field, whether it is there or not.
    pub append: Vec<(N, V)>,
}

impl<N, V> Default for Rules<N, V> {
    fn default() -> Self {
        Rules {
            remove: Vec::new(),
            rename: Vec::new(),
            replace: Vec::new(),
            add: Vec::new(),
            append: Vec::new(),
        }
    }
}

impl<N: Clone, V> Rules<N, V> {
    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.replace.is_empty()
            && self.add.is_empty()
            && self.append.is_empty()
    }

    /// The same rules with each value mapped by `f`; a rule whose value maps to `None` is left out
    /// (a template whose source is missing).
    pub fn map<W>(&self, mut f: impl FnMut(&V) -> Option<W>) -> Rules<N, W> {
        let mut each = |list: &[(N, V)]| {
            list.iter()
                .filter_map(|(n, v)| f(v).map(|w| (n.clone(), w)))
                .collect()
        };
        Rules {
            remove: self.remove.clone(),
            rename: self.rename.clone(),
            replace: each(&self.replace),
            add: each(&self.add),
            append: each(&self.append),
        }
    }
}

/// The five operation maps of a config (`remove: {headers: [...]}`, ...), each checked to hold
/// only the targets in `known` (which may differ by operation: Kong's `replace` also has `uri`).
pub struct Sections {
    ops: Vec<(&'static str, Fields)>,
}

impl Sections {
    /// Reads the operation maps of `m`; `known(op)` lists the targets each may hold.
    pub fn read(
        m: &Fields,
        known: impl Fn(&str) -> &'static [&'static str],
    ) -> Result<Sections, String> {
        let mut ops = Vec::new();
        for op in OPS {
            let targets = known(op);
            let s = match m.get(op) {
                None => continue,
                Some(Value::Object(s)) => s,
                Some(other) => {
                    return Err(format!(
                        "{op}: expected a map with {}, not {other}",
                        targets.join(", ")
                    ))
                }
            };
            if let Some(k) = s.keys().find(|k| !targets.contains(&k.as_str())) {
                return Err(format!(
                    "{op}.{k}: unknown field (expected one of {})",
                    targets.join(", ")
                ));
            }
            ops.push((op, s.clone()));
        }
        Ok(Sections { ops })
    }

    /// The value of `op.field`, if written.
    pub fn get(&self, op: &str, field: &str) -> Option<&Value> {
        self.ops
            .iter()
            .find(|(o, _)| *o == op)
            .and_then(|(_, s)| s.get(field))
    }

    /// The rules for `target`: `name` reads a name (a header name, a JSON Pointer), `value` reads a
    /// value for an operation (several values for one name are several rules, as Kong's `append`
    /// of a name listed twice). Errors start with the entry's path (`add.headers[1]: ...`,
    /// `add.headers.x-a: ...`).
    pub fn rules<N: Clone, V>(
        &self,
        target: &str,
        name: impl Fn(&str) -> Result<N, String>,
        value: impl Fn(&str, &Value) -> Result<Vec<V>, String>,
    ) -> Result<Rules<N, V>, String> {
        let mut r = Rules::default();
        for (op, s) in &self.ops {
            let Some(field) = s.get(target) else {
                continue;
            };
            let path = format!("{op}.{target}");
            if *op == "remove" {
                let Value::Array(items) = field else {
                    return Err(format!("{path}: expected a list of names, not {field}"));
                };
                for (i, item) in items.iter().enumerate() {
                    let Value::String(n) = item else {
                        return Err(format!("{path}[{i}]: expected a string, not {item}"));
                    };
                    r.remove
                        .push(name(n).map_err(|why| format!("{path}[{i}]: {why}"))?);
                }
                continue;
            }
            for e in entries(field, &path)? {
                let at = |why: String| e.error(&why);
                let n = name(&e.name).map_err(at)?;
                if *op == "rename" {
                    let to = match &e.value {
                        Value::String(to) => name(to).map_err(at)?,
                        other => return Err(at(format!("expected the new name, not {other}"))),
                    };
                    r.rename.push((n, to));
                    continue;
                }
                let list = match *op {
                    "replace" => &mut r.replace,
                    "add" => &mut r.add,
                    _ => &mut r.append,
                };
                for v in value(op, &e.value).map_err(at)? {
                    list.push((n.clone(), v));
                }
            }
        }
        Ok(r)
    }
}

/// One entry of a rule map or list.
struct Entry {
    name: String,
    value: Value,
    /// Where it is written: `add.headers[1]`, or `add.headers.x-a` for a map key that is a plain
    /// name (a key such as `/a/b` is reported at the map, with the key in the message).
    path: String,
    key: Option<String>,
}

impl Entry {
    fn error(&self, why: &str) -> String {
        match &self.key {
            Some(k) => format!("{}: `{k}`: {why}", self.path),
            None => format!("{}: {why}", self.path),
        }
    }
}

/// The entries of a list of `"name:value"` strings (split at the first `:`) or of a map.
fn entries(field: &Value, path: &str) -> Result<Vec<Entry>, String> {
    match field {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let path = format!("{path}[{i}]");
                let Value::String(s) = item else {
                    return Err(format!(
                        "{path}: expected a \"name:value\" string, not {item}"
                    ));
                };
                let Some((name, value)) = s.split_once(':') else {
                    return Err(format!(
                        "{path}: expected \"name:value\", not `{s}` (no `:`)"
                    ));
                };
                Ok(Entry {
                    name: name.to_owned(),
                    value: Value::String(value.to_owned()),
                    path,
                    key: None,
                })
            })
            .collect(),
        // In the order of their names, whether or not serde_json keeps a map's order.
        Value::Object(m) => Ok(sorted(m)
            .map(|(k, v)| {
                let plain = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                Entry {
                    name: k.clone(),
                    value: v.clone(),
                    path: if plain {
                        format!("{path}.{k}")
                    } else {
                        path.to_owned()
                    },
                    key: (!plain).then(|| k.clone()),
                }
            })
            .collect()),
        other => Err(format!(
            "{path}: expected a list of \"name:value\" strings or a map, not {other}"
        )),
    }
}

fn sorted(m: &Fields) -> impl Iterator<Item = (&String, &Value)> {
    let mut members: Vec<_> = m.iter().collect();
    members.sort_by(|a, b| a.0.cmp(b.0));
    members.into_iter()
}

/// A header name for a rule, lower-cased. The framing headers are the gateway's to write.
pub fn header_name(s: &str) -> Result<String, String> {
    if !is_token(s) {
        return Err(format!("`{s}` is not a valid header name"));
    }
    let lower = s.to_ascii_lowercase();
    if matches!(lower.as_str(), "content-length" | "transfer-encoding") {
        return Err(format!(
            "`{s}` is written by the gateway from the body it sends; a rule cannot change it"
        ));
    }
    Ok(lower)
}

/// A header value as text (a string, or a number or boolean as written), without surrounding
/// whitespace; control characters (CR, LF, NUL, ...) are refused.
pub fn header_value(v: &Value) -> Result<String, String> {
    let s = scalar_text(v)?;
    let s = s.trim_matches([' ', '\t']);
    if let Some(c) = s.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(format!(
            "`{}` is not a valid header value (it has the control character {:?})",
            s.escape_debug(),
            c
        ));
    }
    Ok(s.to_owned())
}

/// The values of a header or query rule: one, or for `append` a list of them.
pub fn values<T>(
    op: &str,
    v: &Value,
    one: impl Fn(&Value) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    match v {
        Value::Array(items) if op == "append" => items.iter().map(one).collect(),
        Value::Array(_) => Err(format!(
            "a list of values is for append; {op} sets one value"
        )),
        other => Ok(vec![one(other)?]),
    }
}

/// A string, number or boolean as text.
pub fn scalar_text(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("expected a string, not {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> Fields {
        serde_json::from_str(json).unwrap()
    }

    const TARGETS: &[&str] = &["headers", "body"];

    fn header_rules(json: &str) -> Result<Rules<String, String>, String> {
        Sections::read(&fields(json), |_| TARGETS)?
            .rules("headers", header_name, |op, v| values(op, v, header_value))
    }

    #[test]
    fn list_and_map_forms() {
        let r = header_rules(
            r#"{"remove": {"headers": ["X-Debug"]}, "rename": {"headers": ["x-old:X-New"]},
                "replace": {"headers": {"x-env": "prod"}},
                "add": {"headers": ["x-a:1", "x-url:http://a:80/"]},
                "append": {"headers": {"x-tag": ["a", "b"], "x-n": 5}}}"#,
        )
        .unwrap();
        assert_eq!(r.remove, ["x-debug"]);
        assert_eq!(r.rename, [("x-old".into(), "x-new".into())]);
        assert_eq!(r.replace, [("x-env".into(), "prod".into())]);
        assert_eq!(
            r.add,
            [
                ("x-a".into(), "1".into()),
                ("x-url".into(), "http://a:80/".into())
            ]
        );
        assert_eq!(
            r.append,
            [
                ("x-n".into(), "5".into()),
                ("x-tag".into(), "a".into()),
                ("x-tag".into(), "b".into())
            ]
        );
        assert!(!r.is_empty());
        assert!(header_rules("{}").unwrap().is_empty());
        let mapped = r.map(|v| (v != "a").then_some(v.len()));
        assert_eq!(mapped.append, [("x-n".into(), 1), ("x-tag".into(), 1)]);
        assert_eq!(mapped.remove, ["x-debug"]);
    }

    #[test]
    fn errors_name_the_entry() {
        for (json, want) in [
            (
                r#"{"add": []}"#,
                "add: expected a map with headers, body, not []",
            ),
            (
                r#"{"add": {"cookies": []}}"#,
                "add.cookies: unknown field (expected one of headers, body)",
            ),
            (
                r#"{"remove": {"headers": "x"}}"#,
                "remove.headers: expected a list of names, not \"x\"",
            ),
            (
                r#"{"remove": {"headers": ["x", 1]}}"#,
                "remove.headers[1]: expected a string, not 1",
            ),
            (
                r#"{"remove": {"headers": ["a b"]}}"#,
                "remove.headers[0]: `a b` is not a valid header name",
            ),
            (
                r#"{"add": {"headers": ["x-a:1", "x-b"]}}"#,
                "add.headers[1]: expected \"name:value\", not `x-b` (no `:`)",
            ),
            (
                r#"{"add": {"headers": [3]}}"#,
                "add.headers[0]: expected a \"name:value\" string, not 3",
            ),
            (
                r#"{"add": {"headers": "x:1"}}"#,
                "add.headers: expected a list of \"name:value\" strings or a map, not \"x:1\"",
            ),
            (
                r#"{"add": {"headers": {"x-a": "a\nb"}}}"#,
                "add.headers.x-a: `a\\nb` is not a valid header value",
            ),
            (
                r#"{"add": {"headers": {"x a": "v"}}}"#,
                "add.headers: `x a`: `x a` is not a valid header name",
            ),
            (
                r#"{"add": {"headers": {"x-a": ["1"]}}}"#,
                "add.headers.x-a: a list of values is for append",
            ),
            (
                r#"{"add": {"headers": {"x-a": null}}}"#,
                "add.headers.x-a: expected a string, not null",
            ),
            (
                r#"{"rename": {"headers": {"x-a": 1}}}"#,
                "rename.headers.x-a: expected the new name, not 1",
            ),
            (
                r#"{"rename": {"headers": ["x-a:b c"]}}"#,
                "rename.headers[0]: `b c` is not a valid header name",
            ),
            (
                r#"{"replace": {"headers": ["content-length:1"]}}"#,
                "replace.headers[0]: `content-length` is written by the gateway",
            ),
        ] {
            let e = header_rules(json).unwrap_err();
            assert!(e.starts_with(want), "{json}: {e}");
        }
    }

    #[test]
    fn header_values() {
        assert_eq!(header_value(&Value::from(" a b\t")), Ok("a b".into()));
        assert_eq!(header_value(&Value::from(true)), Ok("true".into()));
        assert_eq!(header_value(&Value::from(1.5)), Ok("1.5".into()));
        assert_eq!(header_value(&Value::from("é")), Ok("é".into()));
        assert!(header_value(&Value::from("a\u{0}")).is_err());
        assert!(header_value(&Value::from("a\u{7f}")).is_err());
        assert!(header_value(&serde_json::json!({})).is_err());
    }
}
