//! OpenAPI 3.0 schemas as JSON Schema 2020-12 (`nullable`, boolean `exclusiveMinimum` and
//! `exclusiveMaximum`, `$ref` siblings ignored); 3.1 schemas are 2020-12 already. In both,
//! `format: int32`/`int64` become the bounds they mean.

use serde_json::Value;

/// Reads the document's version and translates a 3.0 document's schemas.
pub fn prepare(mut doc: Value) -> Result<Value, String> {
    let version =
        match doc.get("openapi") {
            Some(Value::String(v)) => v.clone(),
            _ => return Err(
                "openapi.openapi: missing; expected the document's version, \"3.0.x\" or \"3.1.x\""
                    .into(),
            ),
        };
    let v30 = version.starts_with("3.0.") || version == "3.0";
    let v31 = version.starts_with("3.1.") || version == "3.1";
    if !v30 && !v31 {
        return Err(format!(
            "openapi.openapi: version `{version}` is not supported (3.0.x or 3.1.x)"
        ));
    }
    if !doc.get("paths").is_some_and(Value::is_object) {
        return Err("openapi.paths: expected a map of the API's paths".into());
    }
    walk_document(&mut doc, v30);
    Ok(doc)
}

/// Applies the schema translation to every schema of the document: `schema` of parameters, media
/// types and headers, and `components.schemas`.
fn walk_document(v: &mut Value, v30: bool) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                match k.as_str() {
                    "schema" => translate(child, v30),
                    "schemas" => {
                        if let Value::Object(schemas) = child {
                            for s in schemas.values_mut() {
                                translate(s, v30);
                            }
                        }
                    }
                    "example" | "examples" => {}
                    _ => walk_document(child, v30),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| walk_document(i, v30)),
        _ => {}
    }
}

/// One schema (and its subschemas): a 3.0 schema to its 2020-12 equivalent, and in both versions
/// `format: int32`/`int64` as the bounds they mean (JSON Schema's `format` knows neither).
fn translate(s: &mut Value, v30: bool) {
    let Value::Object(m) = s else {
        return;
    };
    if v30 && m.contains_key("$ref") {
        // 3.0: "properties adjacent to a $ref are ignored".
        m.retain(|k, _| k == "$ref");
        return;
    }
    if v30 {
        if m.remove("nullable") == Some(Value::Bool(true)) {
            match m.get_mut("type") {
                Some(Value::String(t)) => {
                    let t = t.clone();
                    m.insert("type".into(), Value::Array(vec![t.into(), "null".into()]));
                }
                Some(Value::Array(ts)) if !ts.contains(&Value::from("null")) => {
                    ts.push("null".into())
                }
                _ => {}
            }
            if let Some(Value::Array(e)) = m.get_mut("enum") {
                if !e.contains(&Value::Null) {
                    e.push(Value::Null);
                }
            }
        }
        for (excl, bound) in [
            ("exclusiveMinimum", "minimum"),
            ("exclusiveMaximum", "maximum"),
        ] {
            if let Some(Value::Bool(b)) = m.get(excl).cloned() {
                m.remove(excl);
                if b {
                    if let Some(n) = m.remove(bound) {
                        m.insert(excl.into(), n);
                    }
                }
            }
        }
    }
    let bounds = match m.get("format").and_then(Value::as_str) {
        Some("int32") => Some((i32::MIN as i64, i32::MAX as i64)),
        Some("int64") => Some((i64::MIN, i64::MAX)),
        _ => None,
    };
    if let Some((lo, hi)) = bounds {
        if !m.contains_key("minimum") && !m.contains_key("exclusiveMinimum") {
            m.insert("minimum".into(), lo.into());
        }
        if !m.contains_key("maximum") && !m.contains_key("exclusiveMaximum") {
            m.insert("maximum".into(), hi.into());
        }
    }
    for (k, child) in m.iter_mut() {
        match k.as_str() {
            "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas" => {
                if let Value::Object(subs) = child {
                    subs.values_mut().for_each(|c| translate(c, v30));
                }
            }
            "allOf" | "anyOf" | "oneOf" | "prefixItems" => {
                if let Value::Array(subs) = child {
                    subs.iter_mut().for_each(|c| translate(c, v30));
                }
            }
            "items"
            | "additionalProperties"
            | "not"
            | "if"
            | "then"
            | "else"
            | "contains"
            | "propertyNames"
            | "unevaluatedItems"
            | "unevaluatedProperties" => translate(child, v30),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openapi_3_0_schemas_become_2020_12() {
        let mut s = json!({
            "type": "object",
            "properties": {
                "tag": {"type": "string", "nullable": true, "enum": ["a", "b"]},
                "age": {"type": "integer", "minimum": 0, "exclusiveMinimum": true,
                        "maximum": 10, "exclusiveMaximum": false},
                "id": {"type": "integer", "format": "int32"},
                "owner": {"$ref": "#/components/schemas/Owner", "nullable": true},
                "list": {"type": "array", "items": {"type": "number", "nullable": true}}
            }
        });
        translate(&mut s, true);
        assert_eq!(
            s,
            json!({
                "type": "object",
                "properties": {
                    "tag": {"type": ["string", "null"], "enum": ["a", "b", null]},
                    "age": {"type": "integer", "exclusiveMinimum": 0, "maximum": 10},
                    "id": {"type": "integer", "format": "int32",
                           "minimum": -2147483648i64, "maximum": 2147483647},
                    "owner": {"$ref": "#/components/schemas/Owner"},
                    "list": {"type": "array", "items": {"type": ["number", "null"]}}
                }
            })
        );
        // 3.1 is 2020-12 already: `nullable` means nothing there, and $ref siblings apply.
        let mut s = json!({"$ref": "#/x", "nullable": true, "description": "d"});
        translate(&mut s, false);
        assert_eq!(
            s,
            json!({"$ref": "#/x", "nullable": true, "description": "d"})
        );
    }
}
