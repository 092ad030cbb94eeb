//! request-validation: checks requests against JSON Schemas for the body, query, headers and path
//! parameters (drafts 2020-12 and 7, and 2019-09, 6, 4), or against the operations of an OpenAPI
//! 3.0/3.1 document; a request that does not pass gets a 400 (`rejected_code`) listing each
//! violation with its JSON Pointer, and never reaches the backend. Schemas are compiled once, at
//! init. See README.md.
//!
//! ```yaml
//! filters:
//!   - plugin: request-validation
//!     config:
//!       body_schema: {type: object, required: [name], properties: {name: {type: string}}}
//! ```

mod check;
mod config;
mod openapi;
mod params;
mod schema;

use check::{Head, Pending, Step};
use config::Validator;
use gateway_plugin_sdk::{
    export_filter, facts, log, metrics, Action, BodyMode, Filter, Options, Request,
};

#[derive(Default)]
struct RequestValidation {
    /// The route's compiled config (set by `init`).
    validator: Option<Validator>,
    /// The body check the request being served waits for.
    pending: Option<Pending>,
}

fn count(outcome: &str) {
    let _ = metrics::counter_add(&format!("request_validation_{outcome}"), 1);
}

fn act(step: Step) -> Action {
    match step {
        Step::Pass => {
            count("passed");
            Action::Continue
        }
        Step::Answer(a) => {
            count("rejected");
            if log::debug_enabled() {
                log::debug(&format!(
                    "request-validation: refused with {}: {}",
                    a.status,
                    String::from_utf8_lossy(&a.body).trim_end()
                ));
            }
            Action::Respond {
                status: a.status,
                headers: a.headers,
                body: a.body,
            }
        }
        // Decided once the body is whole.
        Step::Body(_) => Action::Continue,
    }
}

export_filter! {
    impl Filter for RequestValidation {
        fn init(&mut self, config: &str) -> Result<(), String> {
            self.validator = Some(config::parse(config)?);
            Ok(())
        }

        fn options(&self) -> Options {
            let reads = self.validator.as_ref().is_some_and(Validator::reads_bodies);
            Options {
                request_body: if reads {
                    BodyMode::Whole
                } else {
                    BodyMode::Skip
                },
                ..Options::default()
            }
        }

        fn on_request(&mut self, req: &Request) -> Action {
            self.pending = None;
            let Some(v) = &self.validator else {
                return Action::Continue;
            };
            let headers: Vec<(String, String)> = req
                .headers()
                .into_iter()
                .map(|(n, val)| (n.to_ascii_lowercase(), val))
                .collect();
            let (method, path, query) = (req.method(), req.path(), req.query());
            let path_params = req.path_params();
            let head = Head {
                method: &method,
                path: &path,
                query: query.as_deref(),
                headers: &headers,
                path_params: &path_params,
            };
            let body = || check::announced(&headers, || facts::get().protocol == "2");
            match v.head(&head, body) {
                Step::Body(p) => {
                    self.pending = Some(p);
                    Action::Continue
                }
                step => act(step),
            }
        }

        fn on_request_body(&mut self, req: &Request, _end_of_stream: bool) -> Action {
            let (Some(v), Some(p)) = (&self.validator, self.pending.take()) else {
                return Action::Continue;
            };
            act(v.body(p, &req.body().unwrap_or_default()))
        }
    }
}
