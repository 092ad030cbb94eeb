//! oauth2-introspection: bearer tokens checked by the authorization server (RFC 7662), as Kong's
//! `oauth2-introspection` and the introspection of APISIX's `openid-connect` do. The token of
//! `Authorization: Bearer` is posted to the introspection endpoint on a named upstream; an active
//! token with the route's `scopes_required` lets the request through (with `x-credential-*`
//! headers, and as a consumer with `consumer_by`), anything else is answered as RFC 6750 says.
//! Active answers are kept in the instance's memory, keyed by the token's SHA-256, until the
//! token expires or `cache_ttl` passes. See README.md.
//!
//! ```yaml
//! plugins:
//!   - name: oauth2-introspection
//!     capabilities: {upstreams: [idp]}
//! routes:
//!   - name: api
//!     upstream: api
//!     filters:
//!       - plugin: oauth2-introspection
//!         config: {upstream: idp, path: /oauth2/introspect, client_id: gateway,
//!                  client_secret: s3cret, scopes_required: [orders.read]}
//! ```

mod cache;
mod config;
mod introspect;
mod token;

use cache::Cache;
use config::Introspection;
use gateway_plugin_sdk::{
    clock, consumers, export_filter, http, log, metrics, Action, Filter, Request,
};
use introspect::{Answer, Claims, Refusal};
use token::Bearer;

/// The headers that tell the upstream about the token (Kong's), with the answer's field each
/// comes from.
const CREDENTIAL_HEADERS: [(&str, &str); 4] = [
    ("x-credential-sub", "sub"),
    ("x-credential-client-id", "client_id"),
    ("x-credential-username", "username"),
    ("x-credential-scope", "scope"),
];

/// The prefix of the headers that tell an upstream about a token. Kong's plugin writes more of them
/// than this one does (`x-credential-aud`, `-iss`, `-exp`, `-iat`, `-nbf`, `-jti`,
/// `-token-type`, ...), and an upstream made for Kong may trust any of them, so a client's own
/// header of this prefix is removed from every request, whatever the outcome: the upstream gets
/// only those this plugin writes from the server's answer. `x-credential-identifier` is left to
/// the consumer headers' rules (`plugin_auth`): an earlier auth plugin may have written it.
const CREDENTIAL_PREFIX: &str = "x-credential-";

#[derive(Default)]
struct IntrospectionFilter {
    /// The route's policy (set by `init`).
    policy: Option<Introspection>,
    /// Active answers, by token hash (lives as long as the instance).
    cache: Cache<Claims>,
}

fn count(outcome: &str) {
    let _ = metrics::counter_add(&format!("oauth2_introspection_{outcome}"), 1);
}

/// A 500 for a request the plugin could not handle (a header edit or authentication refused, no
/// config), logged. Auth fails closed: the request does not go on with a token or a forged header
/// the plugin could not take out, or without the headers it should carry.
fn failed(id: &str, why: &str) -> Action {
    log::error(&format!("oauth2-introspection: request {id}: {why}"));
    count("failed");
    plugin_auth::internal_error(id)
}

/// The names of the request's headers that are a client's own credential headers (of
/// [`CREDENTIAL_PREFIX`], but not the consumer headers), each once, lower case.
fn forged_credential_headers(headers: &[(String, String)]) -> Vec<String> {
    let mut names: Vec<String> = headers
        .iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .filter(|name| {
            name.starts_with(CREDENTIAL_PREFIX)
                && !plugin_auth::CONSUMER_HEADERS.contains(&name.as_str())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The server's answer about `token`: from the cache, or asked and then cached when active.
fn answer(
    policy: &Introspection,
    cache: &mut Cache<Claims>,
    token: &str,
    now_ms: u64,
) -> Result<Answer, introspect::Unavailable> {
    let key = cache::key(token);
    if let Some(claims) = cache.get(&key, now_ms) {
        count("cache_hits");
        return Ok(Answer::Active(claims.clone()));
    }
    count("introspections");
    let answer = policy.answer(http::send(&policy.upstream, policy.request(token)))?;
    if let Answer::Active(claims) = &answer {
        if let Some(until) = policy.keep_until(claims, now_ms) {
            cache.insert(key, claims.clone(), until, now_ms);
        }
    }
    Ok(answer)
}

/// The request goes on with a valid token: as the consumer `consumer_by` names (or, naming nobody,
/// as whoever an earlier auth plugin made it: `plugin_auth::no_consumer`), with the
/// `x-credential-*` headers, and without the token (`hide_credentials`).
fn grant(policy: &Introspection, req: &Request, claims: &Claims) -> Result<(), String> {
    let named = policy.consumer_by.field().and_then(|f| claims.get(f));
    match named.and_then(consumers::get) {
        Some(consumer) => plugin_auth::authenticate(req, &consumer, named, false)
            .map_err(|e| format!("cannot authenticate as `{}`: {e}", consumer.name))?,
        None => plugin_auth::no_consumer(req)
            .map_err(|e| format!("cannot remove the consumer headers: {e}"))?,
    }
    for (header, field) in CREDENTIAL_HEADERS {
        if let Some(v) = claims.get(field) {
            req.set_header(header, v)
                .map_err(|e| format!("cannot set {header}: {e}"))?;
        }
    }
    hide(policy, req)
}

/// Takes the client's `authorization` header out of the request (`hide_credentials`).
fn hide(policy: &Introspection, req: &Request) -> Result<(), String> {
    if policy.hide_credentials {
        req.remove_header("authorization")
            .map_err(|e| format!("cannot remove the token: {e}"))?;
    }
    Ok(())
}

/// The request does not go on with its token: `refusal`, or the anonymous consumer when the
/// config names one and the token is missing or not valid (a token without the scopes is refused).
fn refuse(policy: &Introspection, req: &Request, refusal: Refusal, id: &str) -> Action {
    log::debug(&format!(
        "oauth2-introspection: request {id} refused: {refusal:?}"
    ));
    let answer = policy.refusal(&refusal, id);
    if refusal == Refusal::InsufficientScope {
        count("insufficient_scope");
        return answer;
    }
    let action = plugin_auth::anonymous_or(req, policy.anonymous.as_deref(), answer);
    if action != Action::Continue {
        count("unauthenticated");
        return action;
    }
    if let Err(why) = hide(policy, req) {
        return failed(id, &why);
    }
    count("anonymous");
    Action::Continue
}

export_filter! {
    impl Filter for IntrospectionFilter {
        fn init(&mut self, config: &str) -> Result<(), String> {
            let fields = config::fields(config)?;
            let mut policy = config::compile(&fields)?;
            policy.anonymous = plugin_auth::anonymous(&fields)?;
            self.cache = Cache::new(policy.cache_max_entries);
            self.policy = Some(policy);
            Ok(())
        }

        fn on_request(&mut self, req: &Request) -> Action {
            let id = plugin_auth::request_id(req);
            let Some(policy) = &self.policy else {
                // Never expected (the gateway calls `init` first); auth fails closed.
                return failed(&id, "no config");
            };
            // Whatever the outcome, the upstream never gets a client's own credential headers.
            for header in forged_credential_headers(&req.headers()) {
                if let Err(e) = req.remove_header(&header) {
                    return failed(&id, &format!("cannot remove {header}: {e}"));
                }
            }
            if plugin_auth::authenticated_earlier(req, policy.anonymous.is_some()) {
                // Another plugin decided; a bearer token sent along is still hidden if asked (as
                // key-auth, basic-auth and jwt-auth hide theirs), other credentials are not this
                // plugin's.
                let bearer = req.header("authorization").is_some_and(|v| {
                    v.get(..7)
                        .is_some_and(|s| s.eq_ignore_ascii_case("bearer "))
                });
                if bearer {
                    if let Err(e) = hide(policy, req) {
                        return failed(&id, &e);
                    }
                }
                return Action::Continue;
            }
            let values = req.header_all("authorization");
            let token = match token::bearer(&values) {
                Bearer::Token(token) => token,
                Bearer::Missing => return refuse(policy, req, Refusal::Missing, &id),
                Bearer::Malformed(why) => return refuse(policy, req, Refusal::Malformed(why), &id),
            };
            let now_ms = clock::now_ms();
            let answer = match answer(policy, &mut self.cache, token, now_ms) {
                Ok(a) => a,
                Err(e) => {
                    // Auth fails closed: no answer is no access, and not the anonymous consumer.
                    count("unavailable");
                    let level = if e.misconfigured {
                        log::error
                    } else {
                        log::warn
                    };
                    level(&format!(
                        "oauth2-introspection: request {id} answered 503: {}",
                        e.why
                    ));
                    return policy.refusal(&Refusal::Unavailable, &id);
                }
            };
            match policy.check(&answer, now_ms / 1000) {
                Ok(claims) => match grant(policy, req, claims) {
                    Ok(()) => {
                        count("allowed");
                        Action::Continue
                    }
                    Err(why) => failed(&id, &why),
                },
                Err(r) => refuse(policy, req, r, &id),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_credential_header_of_a_client_is_forged_but_the_consumers() {
        let headers: Vec<(String, String)> = [
            ("X-Credential-Aud", "api"),
            ("x-credential-sub", "root"),
            ("x-credential-token-type", "access_token"),
            ("x-credential-sub", "admin"),
            ("x-credential-identifier", "alice"),
            ("x-credentials", "kept"),
            ("authorization", "Bearer t"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            forged_credential_headers(&headers),
            [
                "x-credential-aud",
                "x-credential-sub",
                "x-credential-token-type"
            ]
        );
        assert!(forged_credential_headers(&[]).is_empty());
    }
}
