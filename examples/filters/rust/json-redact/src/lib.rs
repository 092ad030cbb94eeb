//! json-redact: replaces the values of listed keys, at any depth, in JSON response bodies, and says how
//! many it replaced in `x-redacted`. Other bodies pass unchanged. See examples/filters/README.md.
//!
//! ```yaml
//! config: {fields: [password, ssn], replacement: "[redacted]"}
//! ```

use gateway_plugin_sdk::{export_filter, log, Action, BodyMode, Filter, Options, Response};
use serde_json::Value;

struct JsonRedact {
    fields: Vec<String>,
    replacement: String,
    /// Whether the response being handled is JSON (decided in `on_response`).
    is_json: bool,
}

impl Default for JsonRedact {
    fn default() -> Self {
        JsonRedact {
            fields: Vec::new(),
            replacement: "[redacted]".into(),
            is_json: false,
        }
    }
}

/// `application/json`, with or without parameters (`; charset=utf-8`).
fn is_json_type(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json")
}

impl JsonRedact {
    /// Replaces the values under listed keys in `v`; returns how many it replaced.
    fn redact(&self, v: &mut Value) -> u64 {
        match v {
            Value::Object(m) => m
                .iter_mut()
                .map(|(k, v)| {
                    if self.fields.iter().any(|f| f == k) {
                        *v = Value::String(self.replacement.clone());
                        1
                    } else {
                        self.redact(v)
                    }
                })
                .sum(),
            Value::Array(items) => items.iter_mut().map(|v| self.redact(v)).sum(),
            _ => 0,
        }
    }
}

export_filter! {
    impl Filter for JsonRedact {
        fn init(&mut self, config: &str) -> Result<(), String> {
            let v: Value = serde_json::from_str(config)
                .map_err(|_| "expected a map with `fields` (a list of keys)".to_string())?;
            let Value::Object(m) = v else {
                return Err("expected a map with `fields` (a list of keys)".into());
            };
            let mut fields = None;
            for (k, v) in &m {
                match k.as_str() {
                    "fields" => {
                        let list = v
                            .as_array()
                            .ok_or_else(|| format!("fields: expected a list of keys, not {v}"))?;
                        let keys = list
                            .iter()
                            .map(|i| match i {
                                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                                other => Err(format!("fields: expected a non-empty key, not {other}")),
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        fields = Some(keys);
                    }
                    "replacement" => {
                        self.replacement = v
                            .as_str()
                            .ok_or_else(|| format!("replacement: expected a string, not {v}"))?
                            .to_string()
                    }
                    _ => return Err(format!("unknown key `{k}` (expected fields, replacement)")),
                }
            }
            self.fields = match fields {
                Some(f) if !f.is_empty() => f,
                Some(_) => return Err("fields: must not be empty".into()),
                None => return Err("fields: required (the keys to redact)".into()),
            };
            Ok(())
        }

        fn options(&self) -> Options {
            Options {
                response_body: BodyMode::Whole,
                ..Options::default()
            }
        }

        fn on_response(&mut self, resp: &Response) -> Action {
            self.is_json = resp
                .header("content-type")
                .is_some_and(|ct| is_json_type(&ct));
            Action::Continue
        }

        fn on_response_body(&mut self, resp: &Response, _end_of_stream: bool) -> Action {
            if !self.is_json {
                return Action::Continue;
            }
            let Some(body) = resp.body() else {
                return Action::Continue;
            };
            let Ok(mut doc) = serde_json::from_slice::<Value>(&body) else {
                return Action::Continue;
            };
            let count = self.redact(&mut doc);
            let out = serde_json::to_vec(&doc).unwrap_or(body);
            if let Err(e) = resp.set_body(&out) {
                log::warn(&format!("json-redact: cannot replace the body: {e}"));
            }
            if let Err(e) = resp.set_header("x-redacted", &count.to_string()) {
                log::warn(&format!("json-redact: cannot set x-redacted: {e}"));
            }
            Action::Continue
        }
    }
}
