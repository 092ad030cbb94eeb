//! cors: Cross-Origin Resource Sharing for a route. Answers preflights itself (204, or 403 for an
//! origin or method it does not allow) and gives responses to allowed origins their
//! `Access-Control-*` headers; requests without `Origin` pass untouched. See README.md.
//!
//! ```yaml
//! filters:
//!   - plugin: cors
//!     config: {allow_origins: ["https://app.example.com"], allow_credentials: true}
//! ```

mod config;
mod policy;

use config::Cors;
use gateway_plugin_sdk::{export_filter, log, Action, Filter, Request, Response};
use policy::{
    vary_covers, ALLOW_CREDENTIALS, ALLOW_ORIGIN, EXPOSE_HEADERS, REQUEST_HEADERS, REQUEST_METHOD,
    VARY,
};

#[derive(Default)]
struct CorsFilter {
    /// The route's policy (set by `init`).
    cors: Option<Cors>,
    /// The `Origin` of the request being served, when its response is to be decorated (not set
    /// for requests without one, nor for preflights the filter answered).
    origin: Option<String>,
}

/// A header's single value: `None` when absent, or sent more than once (an invalid `Origin`).
fn single(values: Vec<String>) -> Result<Option<String>, ()> {
    match <[String; 1]>::try_from(values) {
        Ok([v]) => Ok(Some(v)),
        Err(v) if v.is_empty() => Ok(None),
        Err(_) => Err(()),
    }
}

export_filter! {
    impl Filter for CorsFilter {
        fn init(&mut self, config: &str) -> Result<(), String> {
            self.cors = Some(config::parse(config)?);
            Ok(())
        }

        fn on_request(&mut self, req: &Request) -> Action {
            self.origin = None;
            let Some(cors) = &self.cors else {
                return Action::Continue;
            };
            // Several `Origin` lines is not something a browser sends; such a request is decorated as
            // one from an origin that matches nothing.
            let origin = match single(req.header_all("origin")) {
                Ok(None) => return Action::Continue,
                Ok(Some(o)) => o,
                Err(()) => String::new(),
            };
            // Only an `OPTIONS` request is asked for its `Access-Control-Request-Method` (one host
            // call less for every other request).
            let asked_method = (!cors.preflight_continue && req.method() == "OPTIONS")
                .then(|| req.header(REQUEST_METHOD))
                .flatten()
                .filter(|m| !m.is_empty());
            if let Some(method) = asked_method {
                return match cors.preflight(&origin, &method, &req.header_all(REQUEST_HEADERS)) {
                    Ok(headers) => Action::Respond {
                        status: 204,
                        headers: headers
                            .into_iter()
                            .map(|(n, v)| (n.to_string(), v))
                            .collect(),
                        body: Vec::new(),
                    },
                    Err(refusal) => {
                        log::debug(&format!(
                            "cors: preflight from `{origin}` for {method} refused: {}",
                            refusal.body().trim_end()
                        ));
                        Action::respond(403, refusal.body()).with_header("content-type", "text/plain")
                    }
                };
            }
            self.origin = Some(origin);
            Action::Continue
        }

        fn on_response(&mut self, resp: &Response) -> Action {
            let (Some(cors), Some(origin)) = (&self.cors, self.origin.take()) else {
                return Action::Continue;
            };
            let d = cors.decorate(&origin);
            // The route's policy decides who may read the response: the upstream's own answer to
            // these three is replaced (or removed, for an origin the policy does not allow). A
            // header that is set needs no removing first: setting replaces every value.
            let edits = [ALLOW_ORIGIN, ALLOW_CREDENTIALS, EXPOSE_HEADERS]
                .into_iter()
                .filter(|n| !d.set.iter().any(|(s, _)| s == n))
                .map(|n| resp.remove_header(n))
                .chain(d.set.iter().map(|(n, v)| resp.set_header(n, v)))
                .chain(
                    (d.vary_origin && !vary_covers(&resp.header_all(VARY), "Origin"))
                        .then(|| resp.append_header(VARY, "Origin")),
                );
            for r in edits {
                if let Err(e) = r {
                    log::warn(&format!("cors: cannot set a response header: {e}"));
                }
            }
            Action::Continue
        }
    }
}
