//! The route's config: read from JSON, checked, and compiled into [`KeyAuth`], the settings the
//! handler applies. Every error names the field it is about.

use plugin_config::{boolean, is_token, list, object, Fields};
use serde_json::Value;

/// `key_names` when the config does not set it.
pub const DEFAULT_KEY_NAME: &str = "apikey";

/// The compiled settings of one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAuth {
    /// The names the key is looked for under, in order: header names (compared without case),
    /// query parameter and cookie names (compared exactly).
    pub key_names: Vec<String>,
    /// Whether the key is looked for in the request headers.
    pub in_header: bool,
    /// Whether the key is looked for in the query parameters.
    pub in_query: bool,
    /// Whether the key is looked for in the cookies.
    pub in_cookie: bool,
    /// Whether the key is removed from the request before the upstream sees it.
    pub hide_credentials: bool,
    /// The consumer that requests without a valid key go on as.
    pub anonymous: Option<String>,
    /// Whether CORS preflights are authenticated too.
    pub run_on_preflight: bool,
    /// The `WWW-Authenticate` value of refusals: `Key realm="..."`.
    pub challenge: String,
}

const FIELDS: [&str; 8] = [
    "key_names",
    "key_in_header",
    "key_in_query",
    "key_in_cookie",
    "hide_credentials",
    "anonymous",
    "run_on_preflight",
    "realm",
];

/// Reads and checks the route's config (JSON, as the gateway passes it; none at all means every
/// default). `anonymous` reads and checks the `anonymous` field (the plugin passes
/// `plugin_auth::anonymous`, which asks the gateway whether that consumer exists).
pub fn parse(
    config: &str,
    anonymous: impl FnOnce(&Fields) -> Result<Option<String>, String>,
) -> Result<KeyAuth, String> {
    let config = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    let m = object(config, &FIELDS, "key_names")?;
    let key_names = key_names(&m)?;
    let in_header = flag(&m, "key_in_header", true)?;
    let in_query = flag(&m, "key_in_query", true)?;
    let in_cookie = flag(&m, "key_in_cookie", false)?;
    // key_in_header defaults to true, so it is written (false) whenever all three are false.
    if !(in_header || in_query || in_cookie) {
        return Err(
            "key_in_header: key_in_header, key_in_query and key_in_cookie are all false, \
                    so no key could ever be found; set one of them to true"
                .into(),
        );
    }
    let hide_credentials = boolean(&m, "hide_credentials")?;
    let anonymous = anonymous(&m)?;
    let run_on_preflight = flag(&m, "run_on_preflight", true)?;
    let realm = plugin_auth::realm(&m)?;
    let realm = realm.as_deref().unwrap_or(plugin_auth::DEFAULT_REALM);
    Ok(KeyAuth {
        key_names,
        in_header,
        in_query,
        in_cookie,
        hide_credentials,
        anonymous,
        run_on_preflight,
        challenge: format!("Key realm=\"{realm}\""),
    })
}

/// A boolean field with its default.
fn flag(m: &Fields, field: &str, default: bool) -> Result<bool, String> {
    if m.contains_key(field) {
        boolean(m, field)
    } else {
        Ok(default)
    }
}

/// `key_names`: HTTP tokens (each is a header name, and a query parameter or cookie name), none
/// listed twice; absent: `["apikey"]`; given: not empty.
fn key_names(m: &Fields) -> Result<Vec<String>, String> {
    match m.get("key_names") {
        None => return Ok(vec![DEFAULT_KEY_NAME.to_owned()]),
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(format!(
                "key_names: empty; name at least one header, query parameter or cookie, or leave \
                 the field out for [\"{DEFAULT_KEY_NAME}\"]"
            ))
        }
        Some(_) => {}
    }
    let mut seen: Vec<String> = Vec::new();
    list(m, "key_names", "names", |s| {
        if !is_token(s) {
            return Err(format!(
                "`{s}` is not a valid name (it is used as a header name: letters, digits and \
                 !#$%&'*+-.^_`|~)"
            ));
        }
        if seen.iter().any(|n| n == s) {
            return Err(format!("`{s}` is listed twice"));
        }
        seen.push(s.to_owned());
        Ok(s.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `anonymous` check of a gateway whose only consumer is `guest`.
    fn guest_only(m: &Fields) -> Result<Option<String>, String> {
        match plugin_config::string(m, "anonymous")? {
            None => Ok(None),
            Some("guest") => Ok(Some("guest".into())),
            Some(other) => Err(format!("anonymous: no consumer is called `{other}`")),
        }
    }

    fn ok(config: &str) -> KeyAuth {
        parse(config, guest_only).unwrap_or_else(|e| panic!("{config}: {e}"))
    }

    #[test]
    fn defaults() {
        let want = KeyAuth {
            key_names: vec!["apikey".into()],
            in_header: true,
            in_query: true,
            in_cookie: false,
            hide_credentials: false,
            anonymous: None,
            run_on_preflight: true,
            challenge: "Key realm=\"gateway\"".into(),
        };
        for config in ["", " \n", "{}"] {
            assert_eq!(ok(config), want, "{config:?}");
        }
    }

    #[test]
    fn fields() {
        let c = ok(
            r#"{"key_names": ["X-API-Key", "token"], "key_in_header": false,
                "key_in_query": true, "key_in_cookie": true, "hide_credentials": true,
                "anonymous": "guest", "run_on_preflight": false, "realm": "api v2 (beta)"}"#,
        );
        assert_eq!(
            c,
            KeyAuth {
                key_names: vec!["X-API-Key".into(), "token".into()],
                in_header: false,
                in_query: true,
                in_cookie: true,
                hide_credentials: true,
                anonymous: Some("guest".into()),
                run_on_preflight: false,
                challenge: "Key realm=\"api v2 (beta)\"".into(),
            }
        );
        let c = ok(
            r#"{"key_in_header": false, "key_in_query": false, "key_in_cookie": true, "realm": ""}"#,
        );
        assert!(!c.in_header && !c.in_query && c.in_cookie);
        assert_eq!(c.challenge, "Key realm=\"\"");
    }

    #[test]
    fn refusals_name_the_field() {
        for (config, field) in [
            ("[]", "config: expected a map with key_names"),
            ("null", "config:"),
            (r#"{"key_name": ["a"]}"#, "key_name: unknown field"),
            (r#"{"key_in_body": true}"#, "key_in_body: unknown field"),
            (r#"{"key_names": []}"#, "key_names: empty"),
            (
                r#"{"key_names": "apikey"}"#,
                "key_names: expected a list of names",
            ),
            (
                r#"{"key_names": ["a", 1]}"#,
                "key_names[1]: expected a string",
            ),
            (
                r#"{"key_names": ["apikey", "api key"]}"#,
                "key_names[1]: `api key` is not a valid name",
            ),
            (
                r#"{"key_names": [""]}"#,
                "key_names[0]: `` is not a valid name",
            ),
            (r#"{"key_names": ["a:b"]}"#, "key_names[0]:"),
            (
                r#"{"key_names": ["a", "b", "a"]}"#,
                "key_names[2]: `a` is listed twice",
            ),
            (
                r#"{"key_in_header": "yes"}"#,
                "key_in_header: expected true or false",
            ),
            (
                r#"{"key_in_query": 1}"#,
                "key_in_query: expected true or false",
            ),
            (
                r#"{"key_in_cookie": null}"#,
                "key_in_cookie: expected true or false",
            ),
            (
                r#"{"key_in_header": false, "key_in_query": false}"#,
                "key_in_header: key_in_header, key_in_query and key_in_cookie are all false",
            ),
            (
                r#"{"key_in_query": false, "key_in_header": false, "key_in_cookie": false}"#,
                "key_in_header:",
            ),
            (
                r#"{"hide_credentials": "true"}"#,
                "hide_credentials: expected true or false",
            ),
            (r#"{"anonymous": 1}"#, "anonymous: expected a string"),
            (
                r#"{"anonymous": "nobody"}"#,
                "anonymous: no consumer is called `nobody`",
            ),
            (
                r#"{"run_on_preflight": 0}"#,
                "run_on_preflight: expected true or false",
            ),
            (r#"{"realm": 1}"#, "realm: expected a string"),
            (r#"{"realm": "a\"b"}"#, "realm: '\"' cannot be written"),
            (r#"{"realm": "a\\b"}"#, "realm: '\\\\' cannot be written"),
            (r#"{"realm": "a\nb"}"#, "realm: '\\n' cannot be written"),
            (r#"{"realm": "caf\u00e9"}"#, "realm: 'é' cannot be written"),
        ] {
            let e = parse(config, guest_only).expect_err(config);
            assert!(e.starts_with(field), "{config}: {e}");
        }
    }
}
