//! request-counter: counts the route's requests in the shared store (atomically, so every instance and
//! every route naming the same key shares the count) and tells each response its number in
//! `x-request-count`; also counts `requests_total` in the plugin's metrics. See
//! examples/filters/README.md.
//!
//! ```yaml
//! config: {key: hits}   # default: the route's name
//! ```

use gateway_plugin_sdk::{
    export_filter, facts, kv, log, metrics, Action, Filter, Request, Response,
};
use serde_json::Value;

#[derive(Default)]
struct RequestCounter {
    /// The configured key; `None` counts under the route's name.
    key: Option<String>,
    /// This request's number, once counted.
    count: Option<i64>,
}

impl Filter for RequestCounter {
    fn init(&mut self, config: &str) -> Result<(), String> {
        if config.trim().is_empty() {
            return Ok(());
        }
        let v: Value = serde_json::from_str(config)
            .map_err(|_| "expected a map with an optional `key`".to_string())?;
        let Value::Object(m) = v else {
            return Err("expected a map with an optional `key`".into());
        };
        for (k, v) in &m {
            match (k.as_str(), v) {
                ("key", Value::String(s)) if !s.is_empty() => self.key = Some(s.clone()),
                ("key", other) => {
                    return Err(format!("key: expected a non-empty string, not {other}"))
                }
                _ => return Err(format!("unknown key `{k}` (expected key)")),
            }
        }
        Ok(())
    }

    fn on_request(&mut self, _req: &Request) -> Action {
        self.count = None;
        let key = match &self.key {
            Some(k) => k.clone(),
            None => facts::get().route,
        };
        match kv::increment(&key, 1) {
            Ok(n) => self.count = Some(n),
            Err(e) => log::warn(&format!("request-counter: cannot count `{key}`: {e}")),
        }
        if let Err(e) = metrics::counter_add("requests_total", 1) {
            log::warn(&format!("request-counter: requests_total: {e}"));
        }
        Action::Continue
    }

    fn on_response(&mut self, resp: &Response) -> Action {
        if let Some(n) = self.count.take() {
            if let Err(e) = resp.set_header("x-request-count", &n.to_string()) {
                log::warn(&format!("request-counter: {e}"));
            }
        }
        Action::Continue
    }
}

export_filter!(RequestCounter);
