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
/// comes from. A client's own values are always removed.
const CREDENTIAL_HEADERS: [(&str, &str); 4] = [
    ("x-credential-sub", "sub"),
    ("x-credential-client-id", "client_id"),
    ("x-credential-username", "username"),
    ("x-credential-scope", "scope"),
];

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

/// Logs a failed header edit.
fn edited(r: Result<(), gateway_plugin_sdk::Error>, what: &str) {
    if let Err(e) = r {
        log::warn(&format!("oauth2-introspection: cannot change {what}: {e}"));
    }
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

/// The request goes on with a valid token: the `x-credential-*` headers, the consumer
/// (`consumer_by`), and without the token (`hide_credentials`).
fn grant(policy: &Introspection, req: &Request, claims: &Claims, id: &str) -> Action {
    edited(
        plugin_auth::strip_consumer_headers(req),
        "the consumer headers",
    );
    for (header, field) in CREDENTIAL_HEADERS {
        if let Some(v) = claims.get(field) {
            edited(req.set_header(header, v), header);
        }
    }
    let named = policy.consumer_by.field().and_then(|f| claims.get(f));
    if let Some(consumer) = named.and_then(consumers::get) {
        if let Err(e) = plugin_auth::authenticate(req, &consumer, named, false) {
            log::error(&format!(
                "oauth2-introspection: request {id}: cannot authenticate as `{}`: {e}",
                consumer.name
            ));
            return plugin_auth::refuse(
                500,
                "internal_error",
                "the request could not be authenticated",
                id,
                Vec::new(),
            );
        }
    }
    if policy.hide_credentials {
        edited(req.remove_header("authorization"), "authorization");
    }
    count("allowed");
    Action::Continue
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
    if action == Action::Continue {
        count("anonymous");
        if policy.hide_credentials {
            edited(req.remove_header("authorization"), "authorization");
        }
    } else {
        count("unauthenticated");
    }
    action
}

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
        let Some(policy) = &self.policy else {
            return Action::Continue;
        };
        // Whatever the outcome, the upstream never gets a client's own credential headers.
        for (header, _) in CREDENTIAL_HEADERS {
            edited(req.remove_header(header), header);
        }
        if plugin_auth::authenticated_by_another(policy.anonymous.as_deref()) {
            return Action::Continue;
        }
        let id = plugin_auth::request_id(req);
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
            Ok(claims) => grant(policy, req, claims, &id),
            Err(r) => refuse(policy, req, r, &id),
        }
    }
}

export_filter!(IntrospectionFilter);
