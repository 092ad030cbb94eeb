//! jwt-auth: bearer-token authentication with JSON Web Tokens (RFC 7519, signed as RFC 7515 JWS).
//! The one token of a request (a header, a query parameter or a cookie; several different ones are
//! refused) is verified with a consumer's credential (named by the token's `iss`, or the claim
//! `key_claim_name` says; on routes that trust consumers' credentials), a key of the route's config,
//! or a key of a JWKS fetched from a granted upstream; then its `exp`, `nbf`, `iss` and `aud` are
//! checked. A request without a valid token is answered 401 with an RFC 6750
//! challenge and a JSON error (or goes on as the `anonymous` consumer). See README.md.
//!
//! ```yaml
//! filters:
//!   - plugin: jwt-auth
//!     config:
//!       jwks: {upstream: idp, path: /.well-known/jwks.json}
//!       issuers: [https://idp.example]
//!       audiences: [api]
//!       claims_to_headers: {sub: x-user-id}
//! ```

mod claims;
mod config;
mod extract;
mod failure;
mod jwks;
mod keys;
#[cfg(test)]
mod test_keys;
mod token;
mod verify;

use config::JwtAuth;
use failure::Failure;
use gateway_plugin_sdk::consumers::{self, Consumer, HmacAlgorithm};
use gateway_plugin_sdk::{clock, export_filter, http, log, metrics, Action, Filter, Request};
use keys::{Alg, Key, KeyType, Material};
use std::collections::HashMap;
use token::Token;

/// The credential kind jwt-auth reads.
const KIND: &str = "jwt-auth";

/// The most consumer public keys kept parsed in an instance (the map is emptied when full).
const MAX_CONSUMER_KEYS: usize = 64;

#[derive(Default)]
struct JwtAuthFilter {
    /// The route's policy (set by `init`).
    auth: Option<JwtAuth>,
    /// The JWKS, while this instance lives.
    jwks: jwks::Cache,
    /// Consumers' public keys, parsed, by credential id: the PEM and algorithm they were read from,
    /// and the key.
    consumer_keys: HashMap<String, (String, Alg, Material)>,
}

/// Who a verified token is.
struct Verified {
    consumer: Option<Consumer>,
    /// The consumer credential's key, when a credential verified the token.
    credential: Option<String>,
    claims: serde_json::Map<String, serde_json::Value>,
}

fn count(outcome: &str) {
    let _ = metrics::counter_add(&format!("jwt_auth_{outcome}"), 1);
}

impl JwtAuthFilter {
    /// The token of the request: the one token in the configured headers, query parameters and
    /// cookies (`Missing` without any, `Malformed` with several different ones).
    fn find_token(auth: &JwtAuth, req: &Request) -> Result<String, Failure> {
        let header_values: Vec<String> = auth
            .header_names
            .iter()
            .flat_map(|name| req.header_all(name))
            .collect();
        let query = req.query();
        let cookie_values = if auth.cookie_names.is_empty() {
            Vec::new()
        } else {
            req.header_all("cookie")
        };
        extract::the_token(&extract::Places {
            header_values: &header_values,
            query: query.as_deref(),
            uri_param_names: &auth.uri_param_names,
            cookie_values: &cookie_values,
            cookie_names: &auth.cookie_names,
        })
    }

    /// Takes out of the request what must not reach the upstream whatever the outcome: the
    /// client's own values of the claim headers, and with `hide_credentials` every token (the
    /// configured headers that hold one, query parameters and cookies). A refused edit fails the
    /// request: the token or a forged header would go upstream.
    fn clean(auth: &JwtAuth, req: &Request) -> Result<(), Failure> {
        let fail = |what: &str, e: gateway_plugin_sdk::Error| {
            log::error(&format!("jwt-auth: cannot remove {what}: {e}"));
            Failure::Internal
        };
        for (_, header) in &auth.claims_to_headers {
            req.remove_header(header)
                .map_err(|e| fail("a claim header", e))?;
        }
        if !auth.hide_credentials {
            return Ok(());
        }
        for name in &auth.header_names {
            let values = req.header_all(name);
            if values
                .iter()
                .any(|v| extract::from_header_value(v).is_some())
            {
                req.remove_header(name).map_err(|e| fail("the token", e))?;
            }
        }
        if let Some(q) = req.query() {
            if let Some(rest) = extract::strip_query(&q, &auth.uri_param_names) {
                let path = req.path();
                let target = if rest.is_empty() {
                    path
                } else {
                    format!("{path}?{rest}")
                };
                req.set_path_with_query(&target)
                    .map_err(|e| fail("the token", e))?;
            }
        }
        if !auth.cookie_names.is_empty() {
            let cookies = req.header_all("cookie");
            let edit = match extract::strip_cookies(&cookies, &auth.cookie_names) {
                Some(rest) if rest.is_empty() => req.remove_header("cookie"),
                Some(rest) => req.set_header("cookie", &rest),
                None => Ok(()),
            };
            edit.map_err(|e| fail("the token", e))?;
        }
        Ok(())
    }

    /// Verifies `text` and checks its claims.
    fn verify(&mut self, text: &str) -> Result<Verified, Failure> {
        let Self {
            auth,
            jwks,
            consumer_keys,
        } = self;
        let auth = auth.as_ref().expect("verify runs after init");
        let token = token::parse(text)?;
        let credential = match credential_key(auth, &token) {
            Some(key) => consumers::credential(KIND, key).filter(|c| c.id == key),
            None => None,
        };
        let (consumer, credential) = match credential {
            Some(cred) => {
                verify_with_credential(consumer_keys, &cred, &token)?;
                (Some(cred.consumer), Some(cred.id))
            }
            None => {
                verify::with_keys(auth, jwks, &token, clock::now_ms(), fetch)?;
                let consumer = auth
                    .consumer_claim
                    .as_ref()
                    .and_then(|c| token.claims.get(c))
                    .and_then(|v| v.as_str())
                    .and_then(consumers::get);
                (consumer, None)
            }
        };
        auth.rules.check(&token.claims, clock::now_ms())?;
        Ok(Verified {
            consumer,
            credential,
            claims: token.claims,
        })
    }

    /// Lets a verified request through: who it is (or that it is nobody the gateway knows), and
    /// the claims the config copies.
    fn admit(auth: &JwtAuth, req: &Request, v: &Verified) -> Result<(), Failure> {
        let who = match &v.consumer {
            Some(c) => plugin_auth::authenticate(req, c, v.credential.as_deref(), false),
            // A token of nobody the gateway knows: the request stays whoever it was (an earlier
            // auth plugin's consumer, with its headers), or nobody, without the client's headers.
            None => plugin_auth::no_consumer(req),
        };
        if let Err(e) = who {
            log::error(&format!("jwt-auth: cannot authenticate the request: {e}"));
            return Err(Failure::Internal);
        }
        for (claim, header) in &auth.claims_to_headers {
            if let Some(value) = v.claims.get(claim) {
                // A value the host refuses (a line break in a claim) is left out; the client's
                // own value of the header is gone already.
                if let Err(e) = req.set_header(header, &claims::header_value(value)) {
                    log::debug(&format!(
                        "jwt-auth: claim `{claim}` not copied to `{header}`: {e}"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The key of the consumer credential `token` names, on a route that trusts consumers' credentials:
/// the value of its `key_claim_name` claim (`iss` by default), or with `key_claim_name: kid` its
/// header's `kid`. Nothing else names one: a route's `kid`s name the route's and the JWKS's keys.
fn credential_key<'t>(auth: &JwtAuth, token: &'t Token<'_>) -> Option<&'t str> {
    if !auth.consumer_credentials {
        return None;
    }
    if auth.key_claim_name == config::KID {
        return token.kid.as_deref();
    }
    token.claims.get(&auth.key_claim_name)?.as_str()
}

/// Verifies `token` with the consumer credential `cred`: its algorithm must be the token's; an HMAC
/// is checked by the gateway with the consumer's secret (which the plugin never sees), in constant
/// time; a public key is read from the credential's PEM (and kept).
fn verify_with_credential(
    parsed: &mut HashMap<String, (String, Alg, Material)>,
    cred: &consumers::Credential,
    token: &Token,
) -> Result<(), Failure> {
    let Some(alg) = cred.attribute("algorithm").and_then(Alg::parse) else {
        log::warn(&format!(
            "jwt-auth: the credential `{}` has no algorithm this plugin verifies",
            cred.id
        ));
        return Err(Failure::UnknownKey);
    };
    if alg != token.alg {
        return Err(Failure::AlgorithmMismatch);
    }
    let input = token.signing_input.as_bytes();
    let good = if alg.key_type() == KeyType::Hmac {
        let hash = match alg {
            Alg::HS384 => HmacAlgorithm::Sha384,
            Alg::HS512 => HmacAlgorithm::Sha512,
            _ => HmacAlgorithm::Sha256,
        };
        consumers::verify_hmac(KIND, &cred.id, hash, input, &token.signature).is_some()
    } else {
        let pem = cred.attribute("public-key").unwrap_or_default();
        let fresh = parsed
            .get(&cred.id)
            .is_some_and(|(p, a, _)| p == pem && *a == alg);
        if !fresh {
            let material = keys::from_pem(alg, pem).map_err(|why| {
                log::warn(&format!(
                    "jwt-auth: the public key of the credential `{}`: {why}",
                    cred.id
                ));
                Failure::UnknownKey
            })?;
            if parsed.len() >= MAX_CONSUMER_KEYS {
                parsed.clear();
            }
            parsed.insert(cred.id.clone(), (pem.to_owned(), alg, material));
        }
        let (_, _, material) = &parsed[&cred.id];
        material.verify(alg, input, &token.signature)
    };
    if good {
        Ok(())
    } else {
        Err(Failure::BadSignature)
    }
}

/// Fetches the JWKS from its upstream; failures are logged and counted.
fn fetch(source: &config::Jwks) -> Result<Vec<Key>, String> {
    count("jwks_fetches");
    let request = http::Request::new("GET", &source.path)
        .header("accept", "application/jwk-set+json, application/json")
        .timeout_ms(source.timeout_ms);
    let result = match http::send(&source.upstream, request) {
        Err(e) => Err(format!("no answer ({e})")),
        Ok(resp) if resp.status != 200 => Err(format!("answered {}", resp.status)),
        Ok(resp) => jwks::parse(&resp.body),
    };
    match result {
        Ok(set) => {
            for why in &set.skipped {
                log::debug(&format!("jwt-auth: JWKS key skipped: {why}"));
            }
            Ok(set.keys)
        }
        Err(why) => {
            count("jwks_fetch_failures");
            let why = format!(
                "jwt-auth: the JWKS at `{}{}`: {why}",
                source.upstream, source.path
            );
            log::warn(&why);
            Err(why)
        }
    }
}

export_filter! {
    impl Filter for JwtAuthFilter {
        fn init(&mut self, config: &str) -> Result<(), String> {
            let fields = config::fields(config)?;
            let mut auth = config::parse(&fields)?;
            auth.anonymous = plugin_auth::anonymous(&fields)?;
            self.auth = Some(auth);
            Ok(())
        }

        fn on_request(&mut self, req: &Request) -> Action {
            let Some(auth) = &self.auth else {
                // Never expected (the gateway calls `init` first); auth fails closed.
                let id = plugin_auth::request_id(req);
                log::error(&format!("jwt-auth: request {id}: no config"));
                count("failed");
                return plugin_auth::internal_error(&id);
            };
            let outcome = if !auth.run_on_preflight && is_preflight(req) {
                // Browsers send no credentials on a preflight. Not authenticated here, so the client's
                // consumer headers must not reach the upstream (an earlier auth plugin's stay).
                count("preflight");
                plugin_auth::no_consumer(req).map(|()| None).map_err(|e| {
                    log::error(&format!(
                        "jwt-auth: cannot remove the consumer headers: {e}"
                    ));
                    Failure::Internal
                })
            } else if plugin_auth::authenticated_earlier(req, auth.anonymous.is_some()) {
                // With `anonymous`, auth plugins are alternatives (Kong's "logical OR"): a request an
                // earlier one authenticated as a real consumer goes on as it is.
                Ok(None)
            } else {
                Self::find_token(auth, req).and_then(|text| self.verify(&text).map(Some))
            };
            let auth = self.auth.as_ref().expect("set above");
            let outcome = Self::clean(auth, req).and(outcome).and_then(|v| match v {
                Some(v) => Self::admit(auth, req, &v).map(|()| Some(v)),
                None => Ok(None),
            });
            let failure = match outcome {
                Ok(None) => return Action::Continue,
                Ok(Some(v)) => {
                    count("allowed");
                    if log::debug_enabled() {
                        let who = v.consumer.map_or("no consumer".into(), |c| c.name);
                        log::debug(&format!("jwt-auth: token accepted ({who})"));
                    }
                    return Action::Continue;
                }
                Err(f) => f,
            };
            let id = plugin_auth::request_id(req);
            log::debug(&format!(
                "jwt-auth: request {id} refused: {} ({})",
                failure.code(),
                failure.description()
            ));
            let headers = failure
                .challenge(&auth.realm)
                .map(|c| vec![("www-authenticate".to_owned(), c)])
                .unwrap_or_default();
            let refusal = plugin_auth::refuse(
                failure.status(),
                failure.code(),
                failure.description(),
                &id,
                headers,
            );
            if failure.status() == 401 && auth.anonymous.is_some() {
                count("anonymous");
                return plugin_auth::anonymous_or(req, auth.anonymous.as_deref(), refusal);
            }
            count(match failure.status() {
                401 => "denied",
                503 => "unavailable",
                _ => "failed",
            });
            refusal
        }
    }
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
fn is_preflight(req: &Request) -> bool {
    req.method() == "OPTIONS"
        && req.header("origin").is_some()
        && req.header("access-control-request-method").is_some()
}
