//! response-transformer: changes a response on its way to the client, configured like Kong's plugin
//! of the same name: remove, rename, replace, add and append headers and JSON body fields (by JSON
//! Pointer), and set the status. See README.md.
//!
//! ```yaml
//! filters:
//!   - plugin: response-transformer
//!     config:
//!       remove: {headers: [server], json: ["/internal"]}
//!       add: {headers: ["x-api-version:2"], json: {"/meta/source": gateway}}
//! ```
//!
//! The body is asked for (whole) only when a `json` rule is configured; otherwise it streams past.

mod config;

use config::Config;
use gateway_plugin_sdk::{export_filter, log, Action, BodyMode, Filter, Options, Response};
use plugin_transform::json::Json;
use plugin_transform::{apply_body, headers, is_encoded, is_json};

#[derive(Default)]
struct ResponseTransformer {
    /// The route's rules (set by `init`).
    config: Option<Config>,
}

export_filter! {
    impl Filter for ResponseTransformer {
        fn init(&mut self, config: &str) -> Result<(), String> {
            self.config = Some(config::parse(config)?);
            Ok(())
        }

        fn options(&self) -> Options {
            let json = self.config.as_ref().is_some_and(|c| !c.json.is_empty());
            Options {
                response_body: if json {
                    BodyMode::Whole
                } else {
                    BodyMode::Skip
                },
                ..Options::default()
            }
        }

        fn on_response(&mut self, resp: &Response) -> Action {
            let Some(c) = &self.config else {
                return Action::Continue;
            };
            if let Some(status) = c.status {
                if let Err(e) = resp.set_status(status) {
                    log::warn(&format!("response-transformer: cannot set the status: {e}"));
                }
            }
            if let Err(e) = headers::apply(resp, &c.headers) {
                log::warn(&format!("response-transformer: a header rule failed: {e}"));
            }
            Action::Continue
        }

        fn on_response_body(&mut self, resp: &Response, _end_of_stream: bool) -> Action {
            let Some(c) = self.config.as_ref().filter(|c| !c.json.is_empty()) else {
                return Action::Continue;
            };
            // The type as the header rules left it (a rule may say that a body is JSON); a body of
            // another type, or compressed, passes as it is.
            if !is_json(resp.header("content-type").as_deref())
                || is_encoded(resp.header("content-encoding").as_deref())
            {
                return Action::Continue;
            }
            let body = resp.body().unwrap_or_default();
            if body.is_empty() {
                return Action::Continue;
            }
            let mut doc = match Json::parse(&body) {
                Ok(doc) => doc,
                Err(e) => {
                    // The upstream's answer is not what it says; the client gets it as it is (Kong's
                    // choice too), and the log says why it was not transformed.
                    log::warn(&format!(
                        "response-transformer: the response body says it is JSON and is not ({e}); \
                         it passes unchanged"
                    ));
                    return Action::Continue;
                }
            };
            if apply_body(&mut doc, &c.json) {
                if let Err(e) = resp.set_body(&doc.to_vec()) {
                    log::warn(&format!("response-transformer: cannot set the body: {e}"));
                }
            }
            Action::Continue
        }
    }
}
