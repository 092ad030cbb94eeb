#![forbid(unsafe_code)]
#![deny(missing_docs)]

//! What the first-party authentication plugins (key-auth, basic-auth, jwt-auth, oauth2-introspection,
//! acl) share, so that they answer and identify alike:
//!
//! - refusals are JSON bodies `{"error": CODE, "message": ..., "request_id": ...}` with the request id
//!   also in `x-request-id` ([`refuse`]);
//! - an authenticated request carries who it is to the upstream in the headers Kong uses
//!   (`x-consumer-username`, `x-consumer-groups`, `x-credential-identifier`, `x-anonymous-consumer`),
//!   and whatever the client wrote in those and Kong's other consumer headers is removed first, so a
//!   client cannot claim to be someone ([`authenticate`], [`strip_consumer_headers`]);
//! - the `anonymous` option names a configured consumer that a request without valid credentials is
//!   let through as ([`anonymous`]);
//! - with `anonymous`, auth plugins are alternatives: one leaves alone a request that an earlier one
//!   authenticated as a real consumer ([`authenticated_earlier`]);
//! - a request that goes on without this plugin naming a consumer keeps the consumer an earlier
//!   plugin gave it ([`no_consumer`]).

use gateway_plugin_sdk::consumers::{self, Consumer};
use gateway_plugin_sdk::{facts, Action, Error, Request};

/// The header that marks a request as the anonymous consumer's (`true`).
pub const ANONYMOUS_HEADER: &str = "x-anonymous-consumer";

/// The headers that tell the upstream who the request is authenticated as: the four the plugins
/// write, and Kong's `x-consumer-id` and `x-consumer-custom-id`, which they never write but an
/// upstream made for Kong may trust. A client's own values of all of them are removed before any
/// are set.
pub const CONSUMER_HEADERS: [&str; 6] = [
    "x-consumer-username",
    "x-consumer-groups",
    "x-credential-identifier",
    ANONYMOUS_HEADER,
    "x-consumer-id",
    "x-consumer-custom-id",
];

/// The request's id: the one the gateway logs and writes into its own error bodies
/// (`x-request-id`), or the numeric id of `facts` where the request has none (outside the gateway's
/// proxy, as in `gateway plugin test`).
pub fn request_id(req: &Request) -> String {
    req.header("x-request-id")
        .unwrap_or_else(|| facts::get().request_id.to_string())
}

/// A JSON refusal: `status`, `{"error": code, "message": message, "request_id": id}`, with
/// `content-type: application/json`, `x-request-id` and the `headers` given (such as
/// `www-authenticate`).
pub fn refuse(
    status: u16,
    code: &str,
    message: &str,
    request_id: &str,
    headers: Vec<(String, String)>,
) -> Action {
    let body = serde_json::json!({
        "error": code,
        "message": message,
        "request_id": request_id,
    });
    let mut all = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("x-request-id".to_owned(), request_id.to_owned()),
    ];
    all.extend(headers);
    Action::Respond {
        status,
        headers: all,
        body: format!("{body}\n").into_bytes(),
    }
}

/// The `error` code of a 500: the plugin could not handle the request.
pub const INTERNAL_ERROR: &str = "internal_error";

/// A 500 `internal_error` for a request an auth plugin could not handle: a host call it needs was
/// refused (a header edit, authenticating the consumer), or it has no config (never expected: the
/// gateway calls `init` first). Auth fails closed: such a request never reaches the upstream, and
/// never goes on as it came. The caller logs why, at error.
pub fn internal_error(request_id: &str) -> Action {
    refuse(
        500,
        INTERNAL_ERROR,
        "the request could not be authenticated",
        request_id,
        Vec::new(),
    )
}

/// Removes the consumer headers ([`CONSUMER_HEADERS`]) from the request.
pub fn strip_consumer_headers(req: &Request) -> Result<(), Error> {
    for name in CONSUMER_HEADERS {
        req.remove_header(name)?;
    }
    Ok(())
}

/// Authenticates the request as `consumer` (for later filters, the access log and metrics) and tells
/// the upstream: `x-consumer-username`, `x-consumer-groups` (comma-separated, when it has groups),
/// `x-credential-identifier` (when the credential has an identifier that is not a secret) and
/// `x-anonymous-consumer: true` for the anonymous consumer. The client's own values of these headers
/// are removed first.
pub fn authenticate(
    req: &Request,
    consumer: &Consumer,
    credential_id: Option<&str>,
    anonymous: bool,
) -> Result<(), Error> {
    consumers::authenticate(&consumer.name)?;
    strip_consumer_headers(req)?;
    req.set_header("x-consumer-username", &consumer.name)?;
    if !consumer.groups.is_empty() {
        req.set_header("x-consumer-groups", &consumer.groups.join(", "))?;
    }
    if let Some(id) = credential_id {
        req.set_header("x-credential-identifier", id)?;
    }
    if anonymous {
        req.set_header(ANONYMOUS_HEADER, "true")?;
    }
    Ok(())
}

/// The `anonymous` option of an auth plugin's config: the name of a consumer that requests without
/// valid credentials go on as. Checked when the config is loaded: the consumer must exist.
pub fn anonymous(config: &plugin_config::Fields) -> Result<Option<String>, String> {
    let Some(name) = plugin_config::string(config, "anonymous")? else {
        return Ok(None);
    };
    if consumers::get(name).is_none() {
        return Err(format!("anonymous: no consumer is called `{name}`"));
    }
    Ok(Some(name.to_owned()))
}

/// Whether, with an `anonymous` consumer configured (`has_anonymous`), an earlier filter already
/// authenticated the request as a real consumer: then the auth plugins are alternatives (Kong's
/// "logical OR") and this one leaves the request as it is. Without `anonymous`, every auth plugin
/// on the route decides ("logical AND").
///
/// A real consumer is any consumer but an anonymous one, whichever plugin's anonymous consumer that
/// is: a request counts as authenticated by another when the gateway has a consumer for it and it
/// does not carry `x-anonymous-consumer: true`. That header is trustworthy here: the plugin that
/// authenticated the request removed the client's value and set it only for its anonymous consumer
/// ([`authenticate`]).
pub fn authenticated_earlier(req: &Request, has_anonymous: bool) -> bool {
    has_anonymous
        && is_real_consumer(
            consumers::current().as_ref(),
            &req.header_all(ANONYMOUS_HEADER),
        )
}

/// Whether `current` (the gateway's consumer for a request whose `x-anonymous-consumer` values are
/// `anonymous_marks`) is a consumer authenticated by credentials.
fn is_real_consumer(current: Option<&Consumer>, anonymous_marks: &[String]) -> bool {
    current.is_some() && !anonymous_marks.iter().any(|v| v.trim() == "true")
}

/// For a request that goes on without this plugin naming a consumer (a valid token of nobody in
/// `consumers:`, a preflight let through): when no filter has authenticated it yet, the consumer
/// headers are the client's and are removed; when one has, its consumer and headers stay as they
/// are, so that later filters (`acl`), which read the gateway's consumer, and the upstream, which
/// reads the headers, agree about who the request is.
pub fn no_consumer(req: &Request) -> Result<(), Error> {
    match consumers::current() {
        None => strip_consumer_headers(req),
        Some(_) => Ok(()),
    }
}

/// Lets the request go on as the anonymous consumer `name`, when the config names one; otherwise
/// (or if it is gone) returns `refusal`.
pub fn anonymous_or(req: &Request, name: Option<&str>, refusal: Action) -> Action {
    let Some(consumer) = name.and_then(consumers::get) else {
        return refusal;
    };
    match authenticate(req, &consumer, None, true) {
        Ok(()) => Action::Continue,
        Err(_) => refusal,
    }
}

/// A request without valid credentials, for a plugin (`plugin`, as its metrics and logs name it)
/// whose challenge is `challenge`: `None` when it goes on as the `anonymous` consumer, otherwise the
/// 401 refusal with `code` and `message`. Counts `<plugin>_anonymous` or `<plugin>_refused` (the
/// plugin's name with `_` for `-`) and logs a refusal at debug.
pub fn unauthenticated(
    req: &Request,
    plugin: &str,
    anonymous: Option<&str>,
    challenge: &str,
    code: &str,
    message: &str,
    id: &str,
) -> Option<Action> {
    let count = |outcome: &str| {
        let name = format!("{}_{outcome}", plugin.replace('-', "_"));
        let _ = gateway_plugin_sdk::metrics::counter_add(&name, 1);
    };
    let headers = vec![("www-authenticate".to_owned(), challenge.to_owned())];
    match anonymous_or(req, anonymous, refuse(401, code, message, id, headers)) {
        Action::Continue => {
            count("anonymous");
            None
        }
        refusal => {
            count("refused");
            gateway_plugin_sdk::log::debug(&format!("{plugin}: request {id} refused: {code}"));
            Some(refusal)
        }
    }
}

/// The realm of a challenge when the config gives none.
pub const DEFAULT_REALM: &str = "gateway";

/// The `realm` field of an auth plugin's config, if given: printable ASCII without `"` and `\`, so it
/// can be quoted in `WWW-Authenticate` as it is.
pub fn realm(config: &plugin_config::Fields) -> Result<Option<String>, String> {
    let Some(realm) = plugin_config::string(config, "realm")? else {
        return Ok(None);
    };
    if let Some(bad) = realm
        .chars()
        .find(|c| !(' '..='~').contains(c) || *c == '"' || *c == '\\')
    {
        return Err(format!(
            "realm: {bad:?} cannot be written in `WWW-Authenticate`; use printable ASCII \
             without `\"` and `\\`"
        ));
    }
    Ok(Some(realm.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumer(name: &str) -> Consumer {
        Consumer {
            name: name.into(),
            groups: Vec::new(),
        }
    }

    fn marks(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn a_real_consumer_is_any_consumer_not_marked_anonymous() {
        let alice = consumer("alice");
        assert!(is_real_consumer(Some(&alice), &[]));
        assert!(!is_real_consumer(None, &[]));
        // Whichever plugin's anonymous consumer it is, by the mark, not by its name: key-auth's
        // `guest` is anonymous to a jwt-auth whose own anonymous consumer is `public`.
        let guest = consumer("guest");
        assert!(!is_real_consumer(Some(&guest), &marks(&["true"])));
        assert!(!is_real_consumer(Some(&guest), &marks(&["false", " true"])));
        assert!(is_real_consumer(Some(&guest), &marks(&["false"])));
        // A client's mark without a consumer authenticates nobody.
        assert!(!is_real_consumer(None, &marks(&["false"])));
    }

    #[test]
    fn an_internal_error_is_a_500_that_never_goes_on() {
        let Action::Respond {
            status,
            headers,
            body,
        } = internal_error("req-7")
        else {
            panic!("an internal error must answer the request");
        };
        assert_eq!(status, 500);
        assert!(headers.contains(&("x-request-id".into(), "req-7".into())));
        assert!(!headers.iter().any(|(h, _)| h == "www-authenticate"));
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "{\"error\":\"internal_error\",\"message\":\"the request could not be authenticated\",\"request_id\":\"req-7\"}\n"
        );
    }

    #[test]
    fn kongs_identity_headers_are_consumer_headers() {
        for h in [
            "x-consumer-id",
            "x-consumer-custom-id",
            "x-consumer-username",
            "x-consumer-groups",
            "x-credential-identifier",
            "x-anonymous-consumer",
        ] {
            assert!(CONSUMER_HEADERS.contains(&h), "{h}");
        }
    }
}
