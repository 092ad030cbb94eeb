//! key-auth: API key authentication for a route (Kong's and APISIX's `key-auth`). The key is looked
//! for in a header, a query parameter or a cookie (`key_names`, default `apikey`); a key a consumer
//! holds (`consumers:` in the gateway config, credential kind `key-auth`) authenticates the request
//! as that consumer, anything else is a 401 with `WWW-Authenticate: Key realm="..."`, or goes on as
//! the `anonymous` consumer. The gateway compares keys; the plugin never sees a consumer's key.
//! See README.md.
//!
//! ```yaml
//! consumers:
//!   - name: alice
//!     credentials: {key-auth: {key: env:ALICE_KEY}}
//! routes:
//!   - name: api
//!     upstream: api
//!     filters:
//!       - plugin: key-auth
//!         config: {key_names: [x-api-key], hide_credentials: true}
//! ```

mod config;
mod lookup;

use config::KeyAuth;
use gateway_plugin_sdk::consumers;
use gateway_plugin_sdk::{export_filter, log, metrics, Action, Error, Filter, Request};
use lookup::{is_preflight, Incoming, Lookup, Place, PREFLIGHT_HEADERS};

/// The credential kind of the gateway's `consumers:` that holds the keys.
const KIND: &str = "key-auth";

#[derive(Default)]
struct KeyAuthFilter {
    /// The route's settings (set by `init`).
    auth: Option<KeyAuth>,
    /// The headers a request is read for ([`KeyAuth::header_reads`], set by `init`).
    reads: Vec<String>,
}

/// Counts `name` (the metric's full name: `key_auth_<outcome>`).
fn count(name: &str) {
    let _ = metrics::counter_add(name, 1);
}

/// The values of the headers `reads` (lower case, each once) and, for an `OPTIONS` request that
/// `preflight` says may be one, of [`PREFLIGHT_HEADERS`]: the headers the lookup, `hidden` and
/// `is_preflight` look at, one host call each, instead of every header the request has.
fn read_headers(req: &Request, reads: &[String], preflight: bool) -> Vec<(String, String)> {
    let extra = PREFLIGHT_HEADERS
        .into_iter()
        .filter(|n| preflight && !reads.iter().any(|r| r == n));
    let mut headers = Vec::new();
    for name in reads.iter().map(String::as_str).chain(extra) {
        headers.extend(
            req.header_all(name)
                .into_iter()
                .map(|v| (name.to_owned(), v)),
        );
    }
    headers
}

/// Why a request has no consumer: the refusal's code and message.
struct Refusal {
    code: &'static str,
    message: String,
}

impl KeyAuthFilter {
    /// Applies `hide_credentials` (when set) to `req`.
    fn hide(auth: &KeyAuth, req: &Request, incoming: &Incoming) -> Result<(), Error> {
        if !auth.hide_credentials {
            return Ok(());
        }
        let hidden = auth.hidden(incoming);
        for name in &hidden.headers {
            req.remove_header(name)?;
        }
        match hidden.cookie {
            None => {}
            Some(None) => req.remove_header("cookie")?,
            Some(Some(cookie)) => req.set_header("cookie", &cookie)?,
        }
        if let Some(query) = hidden.query {
            let path = req.path();
            if query.is_empty() {
                req.set_path_with_query(&path)?;
            } else {
                req.set_path_with_query(&format!("{path}?{query}"))?;
            }
        }
        Ok(())
    }

    /// Lets the request go on (after hiding the key, when asked); a change the gateway refuses
    /// (not expected in the request phase) fails the request rather than let a key through.
    /// `id` gives the request's id, read only if it is needed.
    fn go_on(
        auth: &KeyAuth,
        req: &Request,
        incoming: &Incoming,
        id: impl FnOnce() -> String,
    ) -> Action {
        match Self::hide(auth, req, incoming) {
            Ok(()) => Action::Continue,
            Err(e) => Self::failed(
                &id(),
                &format!("cannot remove the key from the request: {e}"),
            ),
        }
    }

    /// A 500 for a request the plugin could not handle (a host call refused, no config), logged.
    fn failed(id: &str, why: &str) -> Action {
        log::error(&format!("key-auth: request {id}: {why}"));
        count("key_auth_failed");
        plugin_auth::internal_error(id)
    }

    /// Who the request is: the consumer holding the key it carries (and where the key was, for
    /// the log: its name's index in `key_names` and its place), or why none.
    fn consumer(
        auth: &KeyAuth,
        incoming: &Incoming,
    ) -> Result<(consumers::Consumer, usize, Place), Refusal> {
        match auth.lookup(incoming) {
            Lookup::Key { key, name, place } => match consumers::find_by_key(KIND, &key) {
                Some(c) => Ok((c, name, place)),
                None => Err(Refusal {
                    code: "invalid_credentials",
                    message: "Invalid authentication credentials".into(),
                }),
            },
            Lookup::Missing => Err(Refusal {
                code: "missing_credentials",
                message: "No API key found in request".into(),
            }),
            Lookup::Malformed(message) => Err(Refusal {
                code: "malformed_credentials",
                message,
            }),
        }
    }
}

export_filter! {
    impl Filter for KeyAuthFilter {
        fn init(&mut self, config: &str) -> Result<(), String> {
            let auth = config::parse(config, plugin_auth::anonymous)?;
            self.reads = auth.header_reads();
            self.auth = Some(auth);
            Ok(())
        }

        fn on_request(&mut self, req: &Request) -> Action {
            // The request's id is read only where it is written (a refusal, a log line).
            let id = || plugin_auth::request_id(req);
            let Some(auth) = &self.auth else {
                // Never expected (the gateway calls `init` first); auth fails closed.
                return Self::failed(&id(), "no config");
            };
            let method = req.method();
            let maybe_preflight = !auth.run_on_preflight && method == "OPTIONS";
            let headers = read_headers(req, &self.reads, maybe_preflight);
            let query = if auth.in_query { req.query() } else { None };
            let incoming = Incoming {
                method: &method,
                headers: &headers,
                query: query.as_deref(),
            };

            if !auth.run_on_preflight && is_preflight(&incoming) {
                // Not authenticated here: the client's consumer headers must not reach the upstream
                // (an earlier auth plugin's stay).
                if let Err(e) = plugin_auth::no_consumer(req) {
                    return Self::failed(&id(), &format!("cannot remove the consumer headers: {e}"));
                }
                count("key_auth_preflight");
                return Self::go_on(auth, req, &incoming, id);
            }
            if plugin_auth::authenticated_earlier(req, auth.anonymous.is_some()) {
                return Self::go_on(auth, req, &incoming, id);
            }

            match Self::consumer(auth, &incoming) {
                Ok((consumer, name, place)) => {
                    if let Err(e) = plugin_auth::authenticate(req, &consumer, None, false) {
                        return Self::failed(&id(), &format!("cannot authenticate the request: {e}"));
                    }
                    count("key_auth_authenticated");
                    if log::debug_enabled() {
                        log::debug(&format!(
                            "key-auth: request {} is consumer `{}` (key in {} `{}`)",
                            id(),
                            consumer.name,
                            place.noun(),
                            auth.key_names[name]
                        ));
                    }
                    Self::go_on(auth, req, &incoming, id)
                }
                Err(Refusal { code, message }) => {
                    let anonymous = auth.anonymous.as_deref();
                    let challenge = &auth.challenge;
                    let id = id();
                    match plugin_auth::unauthenticated(
                        req, "key-auth", anonymous, challenge, code, &message, &id,
                    ) {
                        None => Self::go_on(auth, req, &incoming, || id.clone()),
                        Some(refusal) => refusal,
                    }
                }
            }
        }
    }
}
