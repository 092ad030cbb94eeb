//! request-counter: counts the route's requests in the shared store (atomically, so every instance and
//! every route naming the same key shares the count) and tells each response its number in
//! `x-request-count`; also counts `requests_total` in the plugin's metrics. See
//! examples/filters/README.md.
//!
//! ```yaml
//! config: {key: hits}   # default: the route's name
//! ```

use gateway_plugin_sdk::{
    config, export_filter, facts, kv, log, metrics, Action, Filter, Request, Response,
};
use serde::Deserialize;

/// The route's config, read with the SDK's typed config: a field it does not have, or a `key` that
/// is not a string, is refused at the YAML line where it is written.
#[derive(Deserialize, Default)]
struct Settings {
    key: Option<String>,
}

#[derive(Default)]
struct RequestCounter {
    /// The configured key; `None` counts under the route's name.
    key: Option<String>,
    /// This request's number, once counted.
    count: Option<i64>,
}

impl Filter for RequestCounter {
    fn init(&mut self, raw: &str) -> Result<(), String> {
        let settings: Settings = config::parse(raw)?;
        if settings.key.as_deref() == Some("") {
            return Err("key: expected a non-empty string".into());
        }
        self.key = settings.key;
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
