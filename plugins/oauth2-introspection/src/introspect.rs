//! The introspection call (RFC 7662 section 2.1), what its answer says (section 2.2), the decision on
//! the request, and the refusals (RFC 6750 section 3). Pure functions of the config, the answer and
//! the time, so the handler in `lib.rs` only sends, caches and applies them.

use crate::config::Introspection;
use gateway_plugin_sdk::{http, Action, Error};
use serde_json::{Map, Value};

/// What an active token's answer says that the plugin uses (the rest is dropped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// `scope`, space-separated (an answer's list of scopes is joined with spaces).
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub sub: Option<String>,
    /// `exp`, seconds since the Unix epoch.
    pub exp: Option<u64>,
    /// `nbf`, seconds since the Unix epoch.
    pub nbf: Option<u64>,
}

impl Claims {
    /// The string claim `field` (`username`, `client_id`, `sub`, `scope`).
    pub fn get(&self, field: &str) -> Option<&str> {
        match field {
            "scope" => self.scope.as_deref(),
            "client_id" => self.client_id.as_deref(),
            "username" => self.username.as_deref(),
            "sub" => self.sub.as_deref(),
            _ => None,
        }
    }

    /// Whether every scope of `required` is among the token's.
    pub fn has_scopes(&self, required: &[String]) -> bool {
        let have: Vec<&str> = self
            .scope
            .as_deref()
            .unwrap_or("")
            .split_ascii_whitespace()
            .collect();
        required.iter().all(|r| have.contains(&r.as_str()))
    }
}

/// The authorization server's verdict on a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `active: true`.
    Active(Claims),
    /// `active: false`.
    Inactive,
}

/// Why the authorization server gave no usable answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Unavailable {
    /// What happened (never the token).
    pub why: String,
    /// Whether it is a mistake of the configuration rather than a server being down (the
    /// upstream not granted, the server refusing the gateway's credentials): logged at error.
    pub misconfigured: bool,
}

/// Why a request does not go on.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No bearer token.
    Missing,
    /// The `authorization` header is not a bearer token: why.
    Malformed(&'static str),
    /// The token is not valid: why.
    Invalid(&'static str),
    /// The token lacks a required scope.
    InsufficientScope,
    /// The authorization server could not be asked.
    Unavailable,
}

/// Refusal codes, in the JSON body.
pub const MISSING_TOKEN: &str = "missing_token";
pub const INVALID_REQUEST: &str = "invalid_request";
pub const INVALID_TOKEN: &str = "invalid_token";
pub const INSUFFICIENT_SCOPE: &str = "insufficient_scope";
pub const AUTH_UNAVAILABLE: &str = "auth_unavailable";

impl Introspection {
    /// The introspection request for `token`: `POST path` with the form
    /// `token=...&token_type_hint=...` and the client's authentication.
    pub fn request(&self, token: &str) -> http::Request {
        let mut form = form_urlencoded::Serializer::new(String::with_capacity(token.len() + 40));
        form.append_pair("token", token);
        if let Some(hint) = &self.token_type_hint {
            form.append_pair("token_type_hint", hint);
        }
        let mut req = http::Request::new("POST", &self.path)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form.finish().as_bytes())
            .timeout_ms(self.timeout_ms);
        if let Some(auth) = &self.authorization {
            req = req.header("authorization", auth);
        }
        req
    }

    /// What the server's answer (or the failure to get one) says.
    pub fn answer(&self, result: Result<http::Response, Error>) -> Result<Answer, Unavailable> {
        let fail = |why: String, misconfigured| Unavailable { why, misconfigured };
        let resp = match result {
            Ok(resp) => resp,
            Err(e @ (Error::Denied(_) | Error::BadRequest(_))) => {
                return Err(fail(format!("cannot call `{}`: {e}", self.upstream), true))
            }
            Err(e) => return Err(fail(format!("`{}`: {e}", self.upstream), false)),
        };
        if resp.status != 200 {
            // 401 and 403: the server does not accept the gateway's client credentials.
            let misconfigured = matches!(resp.status, 400 | 401 | 403 | 404 | 405);
            return Err(fail(
                format!(
                    "`{}` answered {} instead of 200 on {}",
                    self.upstream, resp.status, self.path
                ),
                misconfigured,
            ));
        }
        parse_answer(&resp.body).map_err(|why| {
            fail(
                format!(
                    "`{}` gave an answer that is not RFC 7662's: {why}",
                    self.upstream
                ),
                false,
            )
        })
    }

    /// The decision on a token the server answered about, at `now_s` (seconds since the epoch).
    pub fn check<'a>(&self, answer: &'a Answer, now_s: u64) -> Result<&'a Claims, Refusal> {
        let Answer::Active(claims) = answer else {
            return Err(Refusal::Invalid("the token is not active"));
        };
        if claims.exp.is_some_and(|exp| exp <= now_s) {
            return Err(Refusal::Invalid("the token has expired"));
        }
        if claims.nbf.is_some_and(|nbf| nbf > now_s) {
            return Err(Refusal::Invalid("the token is not valid yet"));
        }
        if !claims.has_scopes(&self.scopes_required) {
            return Err(Refusal::InsufficientScope);
        }
        Ok(claims)
    }

    /// Until when (milliseconds since the epoch) an active answer received at `now_ms` may be
    /// reused: `cache_ttl` from now, never past the token's `exp`; `None` when not at all.
    pub fn keep_until(&self, claims: &Claims, now_ms: u64) -> Option<u64> {
        if self.cache_ttl_ms == 0
            || claims
                .nbf
                .is_some_and(|nbf| nbf.saturating_mul(1000) > now_ms)
        {
            return None;
        }
        let mut until = now_ms.saturating_add(self.cache_ttl_ms);
        if let Some(exp) = claims.exp {
            until = until.min(exp.saturating_mul(1000));
        }
        (until > now_ms).then_some(until)
    }

    /// The answer for `refusal`: status, `www-authenticate` (RFC 6750 section 3; none for a 503),
    /// and a JSON body with the code and the request id.
    pub fn refusal(&self, refusal: &Refusal, request_id: &str) -> Action {
        let (status, code, message) = match refusal {
            Refusal::Missing => (401, MISSING_TOKEN, "a bearer token is required"),
            Refusal::Malformed(why) => (400, INVALID_REQUEST, *why),
            Refusal::Invalid(why) => (401, INVALID_TOKEN, *why),
            Refusal::InsufficientScope => (
                403,
                INSUFFICIENT_SCOPE,
                "the token does not have the scopes this route requires",
            ),
            Refusal::Unavailable => (
                503,
                AUTH_UNAVAILABLE,
                "the authorization server did not answer",
            ),
        };
        let mut params = Vec::new();
        if let Some(realm) = &self.realm {
            params.push(format!("realm=\"{realm}\""));
        }
        // A request without a token gets no error code (RFC 6750 section 3.1).
        if !matches!(refusal, Refusal::Missing) {
            params.push(format!("error=\"{code}\""));
            params.push(format!("error_description=\"{message}\""));
        }
        if matches!(refusal, Refusal::InsufficientScope) {
            params.push(format!("scope=\"{}\"", self.scopes_required.join(" ")));
        }
        let headers = match refusal {
            Refusal::Unavailable => Vec::new(),
            _ if params.is_empty() => vec![("www-authenticate".to_owned(), "Bearer".to_owned())],
            _ => vec![(
                "www-authenticate".to_owned(),
                format!("Bearer {}", params.join(", ")),
            )],
        };
        plugin_auth::refuse(status, code, message, request_id, headers)
    }
}

/// Reads an introspection answer: a JSON object with a boolean `active`; for an active token,
/// `scope` (a string, or a list of strings), `client_id`, `username`, `sub` (strings: other types
/// are ignored), `exp` and `nbf` (numbers: any other type makes the answer unusable, since the
/// token's lifetime would be unknown).
pub fn parse_answer(body: &[u8]) -> Result<Answer, String> {
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) else {
        return Err("not a JSON object".into());
    };
    match m.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Ok(Answer::Inactive),
        Some(other) => return Err(format!("`active` is {other}, not true or false")),
        None => return Err("no `active`".into()),
    }
    let text = |f: &str| m.get(f).and_then(Value::as_str).map(str::to_owned);
    let scope = match m.get("scope") {
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => text("scope"),
    };
    Ok(Answer::Active(Claims {
        scope,
        client_id: text("client_id"),
        username: text("username"),
        sub: text("sub"),
        exp: time(&m, "exp")?,
        nbf: time(&m, "nbf")?,
    }))
}

/// A NumericDate claim (seconds, possibly with a fraction, which is dropped).
fn time(m: &Map<String, Value>, field: &str) -> Result<Option<u64>, String> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(s), _) => Ok(Some(s)),
            (None, Some(f)) if f >= 0.0 && f.is_finite() => Ok(Some(f as u64)),
            _ => Err(format!("`{field}` is {n}, not a time")),
        },
        Some(other) => Err(format!("`{field}` is {other}, not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn policy(extra: &str) -> Introspection {
        parse(&format!(
            r#"{{"upstream": "idp", "path": "/introspect"{extra}}}"#
        ))
        .unwrap()
    }

    fn resp(status: u16, body: &str) -> Result<http::Response, Error> {
        Ok(http::Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        })
    }

    fn claims(json: &str) -> Claims {
        match parse_answer(json.as_bytes()).unwrap() {
            Answer::Active(c) => c,
            Answer::Inactive => panic!("inactive"),
        }
    }

    fn header<'a>(a: &'a Action, name: &str) -> Option<&'a str> {
        let Action::Respond { headers, .. } = a else {
            return None;
        };
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn status(a: &Action) -> u16 {
        match a {
            Action::Respond { status, .. } => *status,
            Action::Continue => 0,
        }
    }

    fn body(a: &Action) -> serde_json::Value {
        match a {
            Action::Respond { body, .. } => serde_json::from_slice(body).unwrap(),
            Action::Continue => serde_json::Value::Null,
        }
    }

    #[test]
    fn the_request_is_a_form_post() {
        let p = policy(r#", "client_id": "gw", "client_secret": "s""#);
        let r = p.request("a+b/c==&x");
        assert_eq!(
            (r.method.as_str(), r.path_with_query.as_str()),
            ("POST", "/introspect")
        );
        assert_eq!(r.timeout_ms, 3000);
        // The token is percent-encoded: `+`, `/`, `=` and `&` are not sent as they are.
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "token=a%2Bb%2Fc%3D%3D%26x&token_type_hint=access_token"
        );
        let h = |n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(h("content-type"), Some("application/x-www-form-urlencoded"));
        assert_eq!(h("accept"), Some("application/json"));
        assert_eq!(h("authorization"), Some("Basic Z3c6cw=="));

        let p = policy(r#", "token_type_hint": "", "timeout_ms": 250"#);
        let r = p.request("t");
        assert_eq!(r.body, b"token=t");
        assert_eq!(r.timeout_ms, 250);
        assert!(!r.headers.iter().any(|(k, _)| k == "authorization"));
    }

    #[test]
    fn answers() {
        let p = policy("");
        assert_eq!(
            p.answer(resp(200, r#"{"active": false}"#)),
            Ok(Answer::Inactive)
        );
        let a = p
            .answer(resp(
                200,
                r#"{"active": true, "scope": "read write", "client_id": "app", "username": "alice",
                    "sub": "u-1", "exp": 1700000000, "nbf": 1600000000.5, "iss": "x", "aud": ["a"]}"#,
            ))
            .unwrap();
        assert_eq!(
            a,
            Answer::Active(Claims {
                scope: Some("read write".into()),
                client_id: Some("app".into()),
                username: Some("alice".into()),
                sub: Some("u-1".into()),
                exp: Some(1_700_000_000),
                nbf: Some(1_600_000_000),
            })
        );
        // A list of scopes; claims of other types than expected are left out.
        assert_eq!(
            claims(
                r#"{"active": true, "scope": ["a", "b"], "sub": 7, "username": null, "exp": null}"#
            ),
            Claims {
                scope: Some("a b".into()),
                ..Claims::default()
            }
        );
    }

    #[test]
    fn unusable_answers() {
        let p = policy("");
        for body in [
            "",
            "not json",
            "[]",
            r#"{"scope": "read"}"#,
            r#"{"active": "true"}"#,
            r#"{"active": 1}"#,
            r#"{"active": true, "exp": "1700000000"}"#,
            r#"{"active": true, "exp": -5}"#,
            r#"{"active": true, "nbf": {}}"#,
        ] {
            let e = p.answer(resp(200, body)).unwrap_err();
            assert!(!e.misconfigured, "{body}");
            assert!(e.why.contains("not RFC 7662's"), "{body}: {}", e.why);
        }
        for (status, misconfigured) in [
            (401, true),
            (403, true),
            (404, true),
            (500, false),
            (502, false),
            (204, false),
        ] {
            let e = p.answer(resp(status, r#"{"active": true}"#)).unwrap_err();
            assert_eq!(e.misconfigured, misconfigured, "{status}");
            assert!(e.why.contains(&status.to_string()), "{}", e.why);
        }
        for (err, misconfigured) in [
            (Error::Timeout, false),
            (Error::Failed("connection refused".into()), false),
            (Error::Denied("not granted".into()), true),
            (Error::BadRequest("bad".into()), true),
        ] {
            assert_eq!(p.answer(Err(err)).unwrap_err().misconfigured, misconfigured);
        }
    }

    #[test]
    fn checks() {
        let p = policy(r#", "scopes_required": ["read", "orders"]"#);
        let now = 1_700_000_000;
        let active = |json: &str| Answer::Active(claims(json));
        let ok = active(r#"{"active": true, "scope": "orders write read", "exp": 1700000001}"#);
        assert!(p.check(&ok, now).is_ok());
        assert_eq!(
            p.check(&Answer::Inactive, now),
            Err(Refusal::Invalid("the token is not active"))
        );
        assert_eq!(
            p.check(
                &active(r#"{"active": true, "scope": "read orders", "exp": 1700000000}"#),
                now
            ),
            Err(Refusal::Invalid("the token has expired"))
        );
        assert_eq!(
            p.check(
                &active(r#"{"active": true, "scope": "read orders", "nbf": 1700000001}"#),
                now
            ),
            Err(Refusal::Invalid("the token is not valid yet"))
        );
        for scope in [r#""read""#, r#""""#, r#""read ordersX""#, "null"] {
            assert_eq!(
                p.check(
                    &active(&format!(r#"{{"active": true, "scope": {scope}}}"#)),
                    now
                ),
                Err(Refusal::InsufficientScope),
                "{scope}"
            );
        }
        // No scopes required: any active token, with or without scopes.
        assert!(policy("")
            .check(&active(r#"{"active": true}"#), now)
            .is_ok());
    }

    #[test]
    fn answers_are_kept_for_their_lifetime_capped_by_cache_ttl() {
        let p = policy(r#", "cache_ttl": 60"#);
        let now = 1_700_000_000_000;
        let c = |json: &str| claims(json);
        assert_eq!(
            p.keep_until(&c(r#"{"active": true}"#), now),
            Some(now + 60_000)
        );
        assert_eq!(
            p.keep_until(&c(r#"{"active": true, "exp": 1700000010}"#), now),
            Some(now + 10_000)
        );
        assert_eq!(
            p.keep_until(&c(r#"{"active": true, "exp": 1800000000}"#), now),
            Some(now + 60_000)
        );
        assert_eq!(
            p.keep_until(&c(r#"{"active": true, "exp": 1700000000}"#), now),
            None
        );
        assert_eq!(
            p.keep_until(&c(r#"{"active": true, "nbf": 1700000001}"#), now),
            None
        );
        assert_eq!(
            policy(r#", "cache_ttl": 0"#).keep_until(&c(r#"{"active": true}"#), now),
            None
        );
    }

    #[test]
    fn refusals_follow_rfc_6750() {
        let p = policy(r#", "realm": "api", "scopes_required": ["read", "write"]"#);
        let missing = p.refusal(&Refusal::Missing, "r1");
        assert_eq!(status(&missing), 401);
        assert_eq!(
            header(&missing, "www-authenticate"),
            Some(r#"Bearer realm="api""#)
        );
        assert_eq!(body(&missing)["error"], "missing_token");
        assert_eq!(body(&missing)["request_id"], "r1");
        assert_eq!(header(&missing, "x-request-id"), Some("r1"));

        let invalid = p.refusal(&Refusal::Invalid("the token has expired"), "r2");
        assert_eq!(status(&invalid), 401);
        assert_eq!(
            header(&invalid, "www-authenticate"),
            Some(
                r#"Bearer realm="api", error="invalid_token", error_description="the token has expired""#
            )
        );
        assert_eq!(body(&invalid)["error"], "invalid_token");
        assert_eq!(body(&invalid)["message"], "the token has expired");

        let malformed = p.refusal(&Refusal::Malformed("the bearer token is empty"), "r3");
        assert_eq!(status(&malformed), 400);
        assert!(header(&malformed, "www-authenticate")
            .unwrap()
            .contains(r#"error="invalid_request""#));

        let scope = p.refusal(&Refusal::InsufficientScope, "r4");
        assert_eq!(status(&scope), 403);
        let challenge = header(&scope, "www-authenticate").unwrap();
        assert!(
            challenge.contains(r#"error="insufficient_scope""#),
            "{challenge}"
        );
        assert!(
            challenge.ends_with(r#", scope="read write""#),
            "{challenge}"
        );

        let down = p.refusal(&Refusal::Unavailable, "r5");
        assert_eq!(status(&down), 503);
        assert_eq!(header(&down, "www-authenticate"), None);
        assert_eq!(body(&down)["error"], "auth_unavailable");

        // Without a realm.
        let p = policy("");
        assert_eq!(
            header(&p.refusal(&Refusal::Missing, "r"), "www-authenticate"),
            Some("Bearer")
        );
        assert!(
            header(&p.refusal(&Refusal::Invalid("x"), "r"), "www-authenticate")
                .unwrap()
                .starts_with(r#"Bearer error="invalid_token""#)
        );
    }
}
