//! request-transformer: changes a request on its way to the upstream, configured like Kong's
//! plugin of the same name: remove, rename, replace, add and append headers, query parameters and
//! JSON body fields (by JSON Pointer), set the method (`http_method`) and the path (`replace.uri`, a
//! template over the route's path parameters). See README.md.
//!
//! ```yaml
//! routes:
//!   - name: users
//!     match: {path: {template: "/users/{id}"}}
//!     upstream: users-v2
//!     filters:
//!       - plugin: request-transformer
//!         config:
//!           http_method: POST
//!           replace: {uri: "/v2/users/{id}"}
//!           add: {headers: ["x-api-version:2"], body: {"/meta/source": gateway}}
//! ```
//!
//! The body is asked for (whole) only when a body rule is configured; otherwise it streams past.

mod config;
mod query;
mod template;

use config::{BodyValue, Config};
use gateway_plugin_sdk::{export_filter, facts, log, Action, BodyMode, Filter, Options, Request};
use plugin_transform::json::Json;
use plugin_transform::pointer::Pointer;
use plugin_transform::rules::Rules;
use plugin_transform::{apply_body, headers, is_encoded, is_json};
use std::cell::OnceCell;
use template::{Dest, Missing, Source, Template};

#[derive(Default)]
struct RequestTransformer {
    /// The route's rules (set by `init`).
    config: Option<Config>,
    /// This request's body rules, their templates filled from the request as the client sent it
    /// (set by `on_request`, used by `on_request_body`).
    body: Option<Rules<Pointer, Json>>,
}

/// The request's parts that templates name, each read from the host once, when first needed.
struct RequestSource<'r, 'a> {
    req: &'r Request<'a>,
    query: OnceCell<Vec<(String, String)>>,
    params: OnceCell<Vec<(String, String)>>,
}

impl<'r, 'a> RequestSource<'r, 'a> {
    fn new(req: &'r Request<'a>) -> Self {
        RequestSource {
            req,
            query: OnceCell::new(),
            params: OnceCell::new(),
        }
    }
}

impl Source for RequestSource<'_, '_> {
    fn header(&self, name: &str) -> Option<String> {
        let values = self.req.header_all(name);
        (!values.is_empty()).then(|| values.join(", "))
    }

    fn query(&self, name: &str) -> Option<String> {
        let query = self.query.get_or_init(|| {
            let q = self.req.query().unwrap_or_default();
            form_urlencoded::parse(q.as_bytes()).into_owned().collect()
        });
        query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn param(&self, name: &str) -> Option<String> {
        let params = self.params.get_or_init(|| self.req.path_params());
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

/// The plugin's own answer: `status` with the gateway's JSON error body and the request id.
fn answer(req: &Request, status: u16, code: &str, message: &str) -> Action {
    let id = req
        .header("x-request-id")
        .unwrap_or_else(|| facts::get().request_id.to_string());
    let level = if status >= 500 {
        log::error
    } else {
        log::debug
    };
    level(&format!(
        "request-transformer: request {id}: {status} {code}: {message}"
    ));
    let body = serde_json::json!({"error": code, "message": message, "request_id": id});
    Action::respond(status, format!("{body}\n"))
        .with_header("content-type", "application/json")
        .with_header("x-request-id", &id)
}

/// A 500 for a change the gateway refused (not expected: the config was checked at load).
fn refused(req: &Request, what: &str, e: gateway_plugin_sdk::Error) -> Action {
    answer(
        req,
        500,
        "transform_failed",
        &format!("the request could not be transformed ({what}: {e})"),
    )
}

/// Whether a filled template is a header value (a decoded query or path parameter may hold a
/// control character).
fn header_safe(v: &str) -> bool {
    !v.chars().any(|c| c.is_control() && c != '\t')
}

impl RequestTransformer {
    /// Path and query after `replace.uri` and the query rules, if they change them.
    fn target(
        req: &Request,
        path: Option<String>,
        query: &Rules<String, String>,
    ) -> Option<String> {
        let old = req.query();
        let new = if query.is_empty() {
            None
        } else {
            query::apply(old.as_deref().unwrap_or_default(), query)
        };
        if path.is_none() && new.is_none() {
            return None;
        }
        let path = path.unwrap_or_else(|| req.path());
        let query = new.or(old).unwrap_or_default();
        Some(if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        })
    }
}

export_filter! {
    impl Filter for RequestTransformer {
        fn init(&mut self, config: &str) -> Result<(), String> {
            self.config = Some(config::parse(config)?);
            Ok(())
        }

        fn options(&self) -> Options {
            let body = self.config.as_ref().is_some_and(|c| !c.body.is_empty());
            Options {
                request_body: if body {
                    BodyMode::Whole
                } else {
                    BodyMode::Skip
                },
                ..Options::default()
            }
        }

        fn on_request(&mut self, req: &Request) -> Action {
            self.body = None;
            let Some(c) = &self.config else {
                return Action::Continue;
            };
            // Every template is filled from the request as it came, before any rule changes it.
            let src = RequestSource::new(req);
            let text = |t: &Template| match t.render(&src, Dest::Text) {
                Ok(v) => Some(v),
                Err(Missing { what, .. }) => {
                    log::debug(&format!(
                        "request-transformer: a rule is skipped: the request has no {what}"
                    ));
                    None
                }
            };
            let header_rules = c.headers.map(|t| {
                text(t).filter(|v| {
                    header_safe(v) || {
                        log::warn(&format!(
                            "request-transformer: a header rule is skipped: `{}` is not a header value",
                            v.escape_debug()
                        ));
                        false
                    }
                })
            });
            let query_rules = c.query.map(text);
            let body_rules = c.body.map(|v| match v {
                BodyValue::Literal(j) => Some(j.clone()),
                BodyValue::Template(t) => text(t).map(Json::String),
            });
            let path = match c.uri.as_ref().map(|t| t.render(&src, Dest::Path)) {
                None => None,
                // A value of `..` (or `%2e%2e`) would walk out of the path the template writes.
                Some(Ok(p)) if template::has_dot_segment(&p) => {
                    return answer(
                        req,
                        400,
                        "bad_request",
                        "the path made from replace.uri would have a `.` or `..` segment",
                    )
                }
                Some(Ok(p)) => Some(p),
                // The route's template has no such parameter: the config is wrong for this route.
                Some(Err(Missing { what, capture: true })) => {
                    return answer(
                        req,
                        500,
                        "transform_failed",
                        &format!(
                            "replace.uri names the {what}, which the route's path template does not capture"
                        ),
                    )
                }
                Some(Err(Missing { what, .. })) => {
                    return answer(
                        req,
                        400,
                        "bad_request",
                        &format!("the request has no {what}, which its new path is made of"),
                    )
                }
            };

            if let Some(m) = &c.method {
                if let Err(e) = req.set_method(m) {
                    return refused(req, "http_method", e);
                }
            }
            if let Err(e) = headers::apply(req, &header_rules) {
                return refused(req, "headers", e);
            }
            if let Some(target) = Self::target(req, path, &query_rules) {
                if let Err(e) = req.set_path_with_query(&target) {
                    return refused(req, "uri and querystring", e);
                }
            }
            self.body = (!body_rules.is_empty()).then_some(body_rules);
            Action::Continue
        }

        fn on_request_body(&mut self, req: &Request, _end_of_stream: bool) -> Action {
            let Some(rules) = self.body.take() else {
                return Action::Continue;
            };
            // Only a JSON body that is not compressed is read; any other passes as it is.
            if !is_json(req.header("content-type").as_deref())
                || is_encoded(req.header("content-encoding").as_deref())
            {
                return Action::Continue;
            }
            let body = req.body().unwrap_or_default();
            if body.is_empty() {
                return Action::Continue;
            }
            let mut doc = match Json::parse(&body) {
                Ok(doc) => doc,
                Err(e) => {
                    return answer(
                        req,
                        400,
                        "invalid_json",
                        &format!("the request body is not valid JSON: {e}"),
                    )
                }
            };
            if apply_body(&mut doc, &rules) {
                if let Err(e) = req.set_body(&doc.to_vec()) {
                    return refused(req, "body", e);
                }
            }
            Action::Continue
        }
    }
}
