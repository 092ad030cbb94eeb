#![forbid(unsafe_code)]
#![deny(missing_docs)]

//! What the first-party authentication plugins (key-auth, basic-auth, jwt-auth, oauth2-introspection,
//! acl) share, so that they answer and identify alike:
//!
//! - refusals are JSON bodies `{"error": CODE, "message": ..., "request_id": ...}` with the request id
//!   also in `x-request-id` ([`refuse`]);
//! - an authenticated request carries who it is to the upstream in the headers Kong uses
//!   (`x-consumer-username`, `x-consumer-groups`, `x-credential-identifier`, `x-anonymous-consumer`),
//!   and whatever the client wrote in those headers is removed first, so a client cannot claim to be
//!   someone ([`authenticate`], [`strip_consumer_headers`]);
//! - the `anonymous` option names a configured consumer that a request without valid credentials is
//!   let through as ([`anonymous`]).

use gateway_plugin_sdk::consumers::{self, Consumer};
use gateway_plugin_sdk::{facts, Action, Error, Request};

/// The headers that tell the upstream who the request is authenticated as. A client's own values are
/// removed before any are set.
pub const CONSUMER_HEADERS: [&str; 4] = [
    "x-consumer-username",
    "x-consumer-groups",
    "x-credential-identifier",
    "x-anonymous-consumer",
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
        req.set_header("x-anonymous-consumer", "true")?;
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

/// Whether, with an `anonymous` consumer configured, an earlier filter already authenticated the
/// request as a real consumer: then the auth plugins are alternatives (Kong's "logical OR") and this
/// one leaves the request as it is. Without `anonymous`, every auth plugin on the route decides.
pub fn authenticated_by_another(anonymous: Option<&str>) -> bool {
    anonymous.is_some_and(|a| consumers::current().is_some_and(|c| c.name != a))
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
