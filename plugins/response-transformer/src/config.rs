//! The route's config, Kong's `response-transformer` shape: `remove`, `rename`, `replace`, `add`,
//! `append`, each with `headers` and `json` (and `json_types` for the values of a `json` list), and
//! `status`. Every error starts with the path of the field it is about.

use plugin_config::object;
use plugin_transform::json::Json;
use plugin_transform::pointer::Pointer;
use plugin_transform::rules::{header_name, header_value, values, Rules, Sections};
use serde_json::Value;

/// The compiled config of one route.
#[derive(Debug, Default)]
pub struct Config {
    /// The status every response gets.
    pub status: Option<u16>,
    pub headers: Rules<String, String>,
    pub json: Rules<Pointer, Json>,
}

const FIELDS: [&str; 6] = ["remove", "rename", "replace", "add", "append", "status"];

/// Reads and checks the route's config (JSON, as the gateway passes it).
pub fn parse(config: &str) -> Result<Config, String> {
    let m = object(
        config,
        &FIELDS,
        "at least one of remove, rename, replace, add, append, status",
    )?;
    let sections = Sections::read(&m, |op| match op {
        "remove" | "rename" => &["headers", "json"],
        _ => &["headers", "json", "json_types"],
    })?;
    let status = match m.get("status") {
        None => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|s| (100..=599).contains(&s)) => {
            Some(n.as_u64().expect("checked") as u16)
        }
        Some(other) => {
            return Err(format!(
                "status: expected a status code from 100 to 599, not {other}"
            ))
        }
    };
    let headers = sections.rules("headers", header_name, |op, v| values(op, v, header_value))?;
    let mut json = sections.rules("json", Pointer::parse, |_, v| Ok(vec![Json::from(v)]))?;
    plugin_transform::check_body(&json, "json")?;
    for (op, rules) in [
        ("replace", &mut json.replace),
        ("add", &mut json.add),
        ("append", &mut json.append),
    ] {
        if let Some(types) = sections.get(op, "json_types") {
            json_types(op, types, sections.get(op, "json"), rules)?;
        }
    }
    let c = Config {
        status,
        headers,
        json,
    };
    if c.status.is_none() && c.headers.is_empty() && c.json.is_empty() {
        return Err(
            "config: no rule; write at least one of remove, rename, replace, add, \
                    append, status (see the plugin's README)"
                .into(),
        );
    }
    Ok(c)
}

/// Kong's `json_types`: the type of each value of the `json` list at the same position (`string`,
/// `number` or `boolean`; `string` for positions past its end).
fn json_types(
    op: &str,
    types: &Value,
    json: Option<&Value>,
    rules: &mut [(Pointer, Json)],
) -> Result<(), String> {
    let Value::Array(types) = types else {
        return Err(format!(
            "{op}.json_types: expected a list of string, number or boolean, not {types}"
        ));
    };
    if !matches!(json, Some(Value::Array(_))) {
        return Err(format!(
            "{op}.json_types: types are for a list of \"name:value\" strings in {op}.json; \
             the values of a map are typed as written"
        ));
    }
    if types.len() > rules.len() {
        return Err(format!(
            "{op}.json_types: {} types for {} entries of {op}.json",
            types.len(),
            rules.len()
        ));
    }
    for (i, (t, (_, value))) in types.iter().zip(rules.iter_mut()).enumerate() {
        let at = format!("{op}.json_types[{i}]");
        let Json::String(text) = value else {
            unreachable!("a \"name:value\" string's value is a string");
        };
        *value = match t.as_str() {
            Some("string") => continue,
            Some("number") => match serde_json::from_str::<Value>(text.trim()) {
                Ok(Value::Number(n)) => Json::Number(n),
                _ => return Err(format!("{at}: `{text}` ({op}.json[{i}]) is not a number")),
            },
            Some("boolean") => match text.trim() {
                "true" => Json::Bool(true),
                "false" => Json::Bool(false),
                _ => {
                    return Err(format!(
                        "{at}: `{text}` ({op}.json[{i}]) is not true or false"
                    ))
                }
            },
            _ => return Err(format!("{at}: expected string, number or boolean, not {t}")),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(text: &str) -> Json {
        Json::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_full_config() {
        let c = parse(
            r#"{"status": 201,
                "remove": {"headers": ["server"], "json": ["/internal", "debug"]},
                "rename": {"headers": {"x-old": "x-new"}, "json": ["/id:/user_id"]},
                "replace": {"headers": ["x-env:prod"], "json": ["/n:5", "/ok:true"], "json_types": ["number", "boolean"]},
                "add": {"json": {"/meta": {"via": "gw"}, "/count": 3}},
                "append": {"headers": {"x-tag": ["a", "b"]}, "json": ["/tags:x", "/ids:7"], "json_types": ["string", "number"]}}"#,
        )
        .unwrap();
        assert_eq!(c.status, Some(201));
        assert_eq!(c.headers.remove, ["server"]);
        assert_eq!(c.headers.append.len(), 2);
        assert_eq!(c.json.remove[1], Pointer::parse("/debug").unwrap());
        assert_eq!(c.json.replace[0].1, j("5"));
        assert_eq!(c.json.replace[1].1, j("true"));
        assert_eq!(c.json.add[0].1, j("3"));
        assert_eq!(c.json.add[1].1, j(r#"{"via":"gw"}"#));
        assert_eq!(c.json.append[0].1, j("\"x\""));
        assert_eq!(c.json.append[1].1, j("7"));
        assert!(parse(r#"{"status": 200}"#).is_ok());
        // Without json_types a list's values are strings, as in Kong.
        let c = parse(r#"{"add": {"json": ["/n:5"]}}"#).unwrap();
        assert_eq!(c.json.add[0].1, j("\"5\""));
    }

    #[test]
    fn refusals_name_the_field() {
        for (config, field) in [
            ("", "no config:"),
            ("{}", "config: no rule"),
            (r#"{"remove": {"json": []}}"#, "config: no rule"),
            (r#"{"status": 99}"#, "status:"),
            (r#"{"status": "201"}"#, "status:"),
            (
                r#"{"remove": {"json_types": []}}"#,
                "remove.json_types: unknown field",
            ),
            (r#"{"add": {"body": []}}"#, "add.body: unknown field"),
            (r#"{"add": {"headers": ["x-a"]}}"#, "add.headers[0]:"),
            (
                r#"{"add": {"json": ["/n:x"], "json_types": ["number"]}}"#,
                "add.json_types[0]: `x` (add.json[0]) is not a number",
            ),
            (
                r#"{"add": {"json": ["/n:yes"], "json_types": ["boolean"]}}"#,
                "add.json_types[0]:",
            ),
            (
                r#"{"add": {"json": ["/n:1"], "json_types": ["integer"]}}"#,
                "add.json_types[0]: expected string",
            ),
            (
                r#"{"add": {"json": ["/n:1"], "json_types": ["number", "number"]}}"#,
                "add.json_types: 2 types for 1 entries",
            ),
            (
                r#"{"add": {"json": {"/n": 1}, "json_types": ["number"]}}"#,
                "add.json_types: types are for a list",
            ),
            (
                r#"{"add": {"json_types": "number"}}"#,
                "add.json_types: expected a list",
            ),
            (r#"{"replace": {"json": ["/l/-:1"]}}"#, "replace.json: `-`"),
            (r#"{"rename": {"json": ["/a:/a/b"]}}"#, "rename.json:"),
            (
                r#"{"remove": {"headers": ["transfer-encoding"]}}"#,
                "remove.headers[0]:",
            ),
        ] {
            let e = parse(config).expect_err(config);
            assert!(e.starts_with(field), "{config}: {e}");
        }
    }
}
