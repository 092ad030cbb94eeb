//! ext-auth: forward auth for a route (Traefik's forwardAuth, Envoy's HTTP ext_authz, APISIX's
//! forward-auth). Each request is first sent, as a callout, to an auth service on a named upstream: a
//! 2xx lets it through (with the answer's `upstream_headers` set on it), any other status goes back
//! to the client instead, and no answer is a 503 (or, with `allow_degradation`, lets it through).
//! See README.md.
//!
//! ```yaml
//! plugins:
//!   - name: ext-auth
//!     capabilities: {upstreams: [auth]}
//! routes:
//!   - name: api
//!     upstream: api
//!     filters:
//!       - plugin: ext-auth
//!         config: {upstream: auth, path: /verify, upstream_headers: [x-user-id]}
//! ```

mod config;
mod policy;

use config::ExtAuth;
use gateway_plugin_sdk::{
    export_filter, facts, http, log, metrics, Action, BodyMode, Filter, Options, Request,
};
use policy::{Incoming, Verdict};

#[derive(Default)]
struct ExtAuthFilter {
    /// The route's policy (set by `init`).
    auth: Option<ExtAuth>,
    /// Where the request being served is in its check.
    check: Check,
}

/// The state of one request's check, with `request_body`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Decided (or nothing to decide).
    #[default]
    Done,
    /// The request has a body: the auth service is asked once the body is whole.
    AwaitingBody,
    /// Asked without a body, as the request announced none; a body that arrives all the same
    /// (HTTP/2 needs no `content-length`) is checked again, and that answer decides.
    AskedWithoutBody,
}

/// Whether the request announces a body: a `content-length` above 0 or a `transfer-encoding`, as
/// the client sent them. Only then does the gateway call the body handler.
fn announces_body(req: &Request) -> bool {
    let length = req
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    length.is_some_and(|n| n > 0) || req.header("transfer-encoding").is_some()
}

/// Logs a failed header edit (the names were checked at init, so this is not expected).
fn edited(r: Result<(), gateway_plugin_sdk::Error>) {
    if let Err(e) = r {
        log::warn(&format!("ext-auth: cannot change a request header: {e}"));
    }
}

fn count(outcome: &str) {
    let _ = metrics::counter_add(&format!("ext_auth_{outcome}"), 1);
}

impl ExtAuthFilter {
    /// Asks the auth service about `req` (with `body`, once whole) and acts on the answer.
    fn check(auth: &ExtAuth, req: &Request, body: Option<&[u8]>) -> Action {
        let facts = facts::get();
        let headers = req.headers();
        let (path, query) = (req.path(), req.query());
        let incoming = Incoming {
            method: &req.method(),
            path: &path,
            query: query.as_deref(),
            headers: &headers,
            scheme: &facts.scheme,
            client_address: &facts.client_address,
        };
        // The id the gateway logs and writes in its own error bodies; the numeric one of `facts`
        // where the request has none (outside the gateway's proxy, as in `gateway plugin test`).
        let id = req
            .header("x-request-id")
            .unwrap_or_else(|| facts.request_id.to_string());
        let call = auth.auth_request(&incoming, Some(&id), body);
        match auth.verdict(http::send(&auth.upstream, call)) {
            Verdict::Allow(set) => {
                count("allowed");
                for name in &auth.upstream_headers {
                    edited(req.remove_header(name));
                }
                for (name, value) in &set {
                    edited(req.append_header(name, value));
                }
                Action::Continue
            }
            Verdict::Deny {
                status,
                headers,
                body,
            } => {
                count("denied");
                log::debug(&format!(
                    "ext-auth: request {id} refused by the auth service with {status}"
                ));
                Action::Respond {
                    status,
                    headers,
                    body,
                }
            }
            Verdict::Unavailable { why, degradable } => {
                if degradable && auth.allow_degradation {
                    count("degraded");
                    log::warn(&format!(
                        "ext-auth: request {id} let through unchecked (allow_degradation): {why}"
                    ));
                    return Action::Continue;
                }
                count("unavailable");
                let level = if degradable { log::warn } else { log::error };
                level(&format!("ext-auth: request {id} answered 503: {why}"));
                let (status, headers, body) = policy::unavailable(&id);
                Action::Respond {
                    status,
                    headers,
                    body,
                }
            }
        }
    }
}

export_filter! {
    impl Filter for ExtAuthFilter {
        fn init(&mut self, config: &str) -> Result<(), String> {
            self.auth = Some(config::parse(config)?);
            Ok(())
        }

        fn options(&self) -> Options {
            let whole = self.auth.as_ref().is_some_and(|a| a.request_body);
            Options {
                request_body: if whole {
                    BodyMode::Whole
                } else {
                    BodyMode::Skip
                },
                ..Options::default()
            }
        }

        fn on_request(&mut self, req: &Request) -> Action {
            self.check = Check::Done;
            let Some(auth) = &self.auth else {
                return Action::Continue;
            };
            // The client's own values never reach the upstream, whatever the auth service answers.
            for name in &auth.upstream_headers {
                edited(req.remove_header(name));
            }
            if auth.request_body {
                if announces_body(req) {
                    self.check = Check::AwaitingBody;
                    return Action::Continue;
                }
                self.check = Check::AskedWithoutBody;
            }
            Self::check(auth, req, None)
        }

        fn on_request_body(&mut self, req: &Request, _end_of_stream: bool) -> Action {
            let check = std::mem::take(&mut self.check);
            let Some(auth) = &self.auth else {
                return Action::Continue;
            };
            let body = req.body().unwrap_or_default();
            match check {
                Check::AwaitingBody => Self::check(auth, req, Some(&body)),
                Check::AskedWithoutBody if !body.is_empty() => Self::check(auth, req, Some(&body)),
                _ => Action::Continue,
            }
        }
    }
}
