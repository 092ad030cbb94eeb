//! basic-auth: HTTP Basic authentication (RFC 7617) for a route (Kong's and APISIX's `basic-auth`).
//! A username and password a consumer holds (`consumers:` in the gateway config, credential kind
//! `basic-auth`) authenticate the request as that consumer; anything else is a 401 with
//! `WWW-Authenticate: Basic realm="...", charset="UTF-8"`, or goes on as the `anonymous` consumer.
//! The gateway checks passwords (hashed, in constant time); the plugin never sees a consumer's.
//! See README.md.
//!
//! ```yaml
//! consumers:
//!   - name: alice
//!     credentials: {basic-auth: {username: alice, password: env:ALICE_PASSWORD}}
//! routes:
//!   - name: admin
//!     upstream: admin
//!     filters:
//!       - plugin: basic-auth
//!         config: {realm: admin, hide_credentials: true}
//! ```

mod config;
mod credentials;

use config::BasicAuth;
use credentials::{identify, is_basic, Refusal, HEADERS};
use gateway_plugin_sdk::consumers;
use gateway_plugin_sdk::{export_filter, log, metrics, Action, Filter, Request};

/// The credential kind of the gateway's `consumers:` that holds usernames and passwords.
const KIND: &str = "basic-auth";

#[derive(Default)]
struct BasicAuthFilter {
    /// The route's settings (set by `init`).
    auth: Option<BasicAuth>,
}

fn count(outcome: &str) {
    let _ = metrics::counter_add(&format!("basic_auth_{outcome}"), 1);
}

impl BasicAuthFilter {
    /// Lets the request go on, without its Basic credentials when `hide_credentials` is set
    /// (headers of other schemes stay, for the plugins that read them); a change the gateway
    /// refuses (not expected in the request phase) fails the request rather than let a password
    /// through.
    fn go_on(auth: &BasicAuth, req: &Request, values: &[Vec<String>; 2], id: &str) -> Action {
        if auth.hide_credentials {
            for (header, values) in HEADERS.iter().zip(values) {
                if values.iter().any(|v| is_basic(v)) {
                    if let Err(e) = req.remove_header(header) {
                        return Self::failed(id, &format!("cannot remove the credentials: {e}"));
                    }
                }
            }
        }
        Action::Continue
    }

    /// A 500 for a request the plugin could not handle (a host call refused, no config), logged.
    fn failed(id: &str, why: &str) -> Action {
        log::error(&format!("basic-auth: request {id}: {why}"));
        count("failed");
        plugin_auth::internal_error(id)
    }
}

export_filter! {
    impl Filter for BasicAuthFilter {
        fn init(&mut self, config: &str) -> Result<(), String> {
            self.auth = Some(config::parse(config, plugin_auth::anonymous)?);
            Ok(())
        }

        fn on_request(&mut self, req: &Request) -> Action {
            let id = plugin_auth::request_id(req);
            let Some(auth) = &self.auth else {
                // Never expected (the gateway calls `init` first); auth fails closed.
                return Self::failed(&id, "no config");
            };
            let values = HEADERS.map(|h| req.header_all(h));

            // With `anonymous`, auth plugins are alternatives (Kong's "logical OR"): a request an
            // earlier one authenticated as a real consumer is left as it is.
            if plugin_auth::authenticated_earlier(req, auth.anonymous.is_some()) {
                return Self::go_on(auth, req, &values, &id);
            }

            match identify(&values, |user_id, password| {
                consumers::check_secret(KIND, user_id, password)
            }) {
                Ok((consumer, username)) => {
                    if let Err(e) = plugin_auth::authenticate(req, &consumer, Some(&username), false) {
                        return Self::failed(&id, &format!("cannot authenticate the request: {e}"));
                    }
                    count("authenticated");
                    if log::debug_enabled() {
                        log::debug(&format!(
                            "basic-auth: request {id} is consumer `{}`",
                            consumer.name
                        ));
                    }
                    Self::go_on(auth, req, &values, &id)
                }
                Err(Refusal { code, message }) => {
                    let anonymous = auth.anonymous.as_deref();
                    let challenge = &auth.challenge;
                    match plugin_auth::unauthenticated(
                        req,
                        "basic-auth",
                        anonymous,
                        challenge,
                        code,
                        &message,
                        &id,
                    ) {
                        None => Self::go_on(auth, req, &values, &id),
                        Some(refusal) => refusal,
                    }
                }
            }
        }
    }
}
