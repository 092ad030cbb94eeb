//! A filter template: requires an API key header (its name is the route's config), counts requests
//! per key in the shared store, and stamps responses.

use gateway_plugin_sdk::{export_filter, kv, log, metrics, Action, Filter, Request, Response};

#[derive(Default)]
struct ApiKey {
    header: String,
}

export_filter! {
    impl Filter for ApiKey {
        fn init(&mut self, config: &str) -> Result<(), String> {
            self.header = if config.is_empty() {
                "x-api-key".into()
            } else {
                config.to_string()
            };
            // `init` runs in every new instance: with `instance_mode: fresh`, for every request. Debug,
            // so the log is not a line per request.
            log::debug(&format!("requiring header `{}`", self.header));
            Ok(())
        }

        fn on_request(&mut self, req: &Request) -> Action {
            let Some(key) = req.header(&self.header) else {
                let _ = metrics::counter_add("api_key_missing", 1);
                return Action::respond(401, "missing API key\n");
            };
            // Counting needs `capabilities.kv_namespace`; without it the filter still works.
            if let Ok(n) = kv::increment(&format!("requests:{key}"), 1) {
                let _ = req.set_header("x-api-key-requests", &n.to_string());
            }
            Action::Continue
        }

        fn on_response(&mut self, resp: &Response) -> Action {
            let _ = resp.set_header("x-filtered-by", "{{name}}");
            Action::Continue
        }
    }
}
