//! api-composition: one route answers by calling several upstreams at once and merging their JSON
//! answers into one (KrakenD's backend aggregation, the "composite API" of API management
//! products). The calls are built from templates over the route's path parameters, the query and the
//! headers, go out together through the gateway's named upstreams (WIT 0.1.3 `send-all`: the
//! request takes as long as the slowest call, not the sum), each with its own timeout. The plugin
//! answers in `on_request`, so the route's own backend is never reached. See README.md.
//!
//! ```yaml
//! plugins:
//!   - name: api-composition
//!     capabilities: {upstreams: [users, orders]}
//! routes:
//!   - name: profile
//!     match: {path: {template: "/profile/{id}"}}
//!     direct_response: {status: 503, body: "api-composition did not run"}
//!     filters:
//!       - plugin: api-composition
//!         config:
//!           calls:
//!             - {name: user, upstream: users, path: "/users/{id}"}
//!             - {name: orders, upstream: orders, path: "/orders?user={id}", timeout: 250ms}
//! ```

mod compose;
mod config;
mod template;

use compose::Outcome;
use config::Config;
use gateway_plugin_sdk::{export_filter, facts, http, log, metrics, Action, Filter, Request};
use template::Inputs;

#[derive(Default)]
struct Composition {
    /// The route's config (set by `init`).
    config: Option<Config>,
}

fn count(outcome: &str) {
    let _ = metrics::counter_add(&format!("api_composition_{outcome}"), 1);
}

export_filter! {
    impl Filter for Composition {
        fn init(&mut self, config: &str) -> Result<(), String> {
            self.config = Some(config::parse(config)?);
            Ok(())
        }

        fn on_request(&mut self, req: &Request) -> Action {
            let Some(config) = &self.config else {
                return Action::Continue;
            };
            // The id the gateway logs and writes in its own error bodies; the numeric one of `facts`
            // where the request has none (outside the gateway's proxy, as in `gateway plugin test`).
            let id = req
                .header("x-request-id")
                .unwrap_or_else(|| facts::get().request_id.to_string());
            let (params, query, headers) = (req.path_params(), req.query(), req.headers());
            let inputs = Inputs {
                path_params: &params,
                query: query.as_deref(),
                headers: &headers,
            };
            let requests = match config.requests(&inputs, &id) {
                Ok(r) => r,
                Err(refusal) => {
                    count("refused");
                    if refusal.misconfigured() {
                        log::error(&format!(
                            "api-composition: request {id}: {}",
                            refusal.message()
                        ));
                    } else {
                        log::debug(&format!(
                            "api-composition: request {id}: {}",
                            refusal.message()
                        ));
                    }
                    return respond(refusal.answer(&id));
                }
            };
            let composed = config.compose(http::send_all(requests), &id);
            for f in &composed.failures {
                let line = format!(
                    "api-composition: request {id}: call `{}`: {}",
                    f.call, f.message
                );
                if f.config_fault {
                    log::error(&line);
                } else {
                    log::warn(&line);
                }
            }
            count(match composed.outcome {
                Outcome::Complete => "complete",
                Outcome::Partial => "partial",
                Outcome::Failed => "failed",
            });
            respond(composed.answer)
        }
    }
}

fn respond(a: compose::Answer) -> Action {
    Action::Respond {
        status: a.status,
        headers: a.headers,
        body: a.body,
    }
}
