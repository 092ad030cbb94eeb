//! The route's config: read from JSON, checked, and compiled into [`Introspection`], the policy the
//! handler applies. Every error names the field it is about.

use base64::Engine;
use plugin_config::{boolean, list, object, string, Fields};
use serde_json::Value;

/// `token_type_hint` when the config does not set it.
pub const DEFAULT_TOKEN_TYPE_HINT: &str = "access_token";

/// `timeout_ms` when the config does not set it.
pub const DEFAULT_TIMEOUT_MS: u32 = 3000;

/// The longest `timeout_ms`: the host bounds every callout by 60 s.
pub const MAX_TIMEOUT_MS: u32 = 60_000;

/// `cache_ttl` (seconds) when the config does not set it.
pub const DEFAULT_CACHE_TTL_S: u64 = 60;

/// The longest `cache_ttl`: a day. An answer is never kept past the token's `exp` either.
pub const MAX_CACHE_TTL_S: u64 = 86_400;

/// `cache_max_entries` when the config does not set it.
pub const DEFAULT_CACHE_MAX_ENTRIES: usize = 1000;

/// The most `cache_max_entries`. An entry takes some 300 to 500 bytes (README, "Memory"), so 100000
/// of them are 30 to 50 MB: most of an instance's default memory limit (64 MiB). A bigger cache
/// could not fill up: the instance would run out of memory first and be thrown away, cache and the
/// request it served with it, again and again. A config asking for more is refused when it is
/// loaded rather than failing requests under load.
pub const MAX_CACHE_MAX_ENTRIES: usize = 100_000;

/// The field of the introspection answer whose value names the consumer the request is
/// authenticated as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerBy {
    /// No consumer: the upstream gets the `x-credential-*` headers only.
    None,
    /// `username`.
    Username,
    /// `client_id`.
    ClientId,
    /// `sub`.
    Sub,
}

impl ConsumerBy {
    /// The answer's field.
    pub fn field(self) -> Option<&'static str> {
        match self {
            ConsumerBy::None => None,
            ConsumerBy::Username => Some("username"),
            ConsumerBy::ClientId => Some("client_id"),
            ConsumerBy::Sub => Some("sub"),
        }
    }
}

/// The compiled policy of one route.
#[derive(Debug)]
pub struct Introspection {
    /// The named upstream of the introspection endpoint.
    pub upstream: String,
    /// Path (and query) of the introspection endpoint.
    pub path: String,
    /// The `authorization` header of the introspection request (HTTP Basic from `client_id` and
    /// `client_secret`, or `authorization_value`), if any.
    pub authorization: Option<String>,
    /// The `token_type_hint` sent (none when empty).
    pub token_type_hint: Option<String>,
    pub timeout_ms: u32,
    /// Scopes the token must all have.
    pub scopes_required: Vec<String>,
    /// How long an active answer is kept, in milliseconds (0: not at all); never past `exp`.
    pub cache_ttl_ms: u64,
    pub cache_max_entries: usize,
    pub consumer_by: ConsumerBy,
    /// Remove the client's `authorization` header before the request goes upstream.
    pub hide_credentials: bool,
    /// The consumer requests without a valid token go on as (checked to exist by `lib.rs`).
    pub anonymous: Option<String>,
    /// The `realm` of the `WWW-Authenticate` challenge, if any.
    pub realm: Option<String>,
}

const FIELDS: [&str; 15] = [
    "upstream",
    "path",
    "client_id",
    "client_secret",
    "authorization_value",
    "token_type_hint",
    "timeout_ms",
    "scopes_required",
    "cache_ttl",
    "cache_max_entries",
    "consumer_by",
    "hide_credentials",
    "anonymous",
    "realm",
    // Not a field of ours, but Kong's name for the whole endpoint: refused with a pointer.
    "introspection_url",
];

/// Reads the route's config as a map of known fields.
pub fn fields(config: &str) -> Result<Fields, String> {
    object(config, &FIELDS, "upstream and path")
}

/// Reads and checks the route's config (JSON, as the gateway passes it).
#[cfg(test)]
pub fn parse(config: &str) -> Result<Introspection, String> {
    compile(&fields(config)?)
}

/// Checks the fields of a route's config and compiles them.
pub fn compile(m: &Fields) -> Result<Introspection, String> {
    if m.contains_key("introspection_url") {
        return Err(
            "introspection_url: the endpoint is an upstream of the gateway: name it in \
                    `upstream` (granted to the plugin under `plugins:`) and its path in `path`"
                .into(),
        );
    }
    let upstream = match m.get("upstream") {
        None => {
            return Err(
                "upstream: missing; name the upstream of the authorization server \
                        (and grant it to the plugin under `plugins:`)"
                    .into(),
            )
        }
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(other) => {
            return Err(format!(
                "upstream: expected the name of an upstream, not {other}"
            ))
        }
    };
    let path = match string(m, "path")? {
        None => {
            return Err("path: missing; the path of the introspection endpoint \
                        (`/oauth2/introspect`, `/realms/NAME/protocol/openid-connect/token/introspect`)"
                .into())
        }
        Some(s) => path_with_query(s)?,
    };
    let token_type_hint = match string(m, "token_type_hint")? {
        None => Some(DEFAULT_TOKEN_TYPE_HINT.to_owned()),
        Some("") => None,
        Some(s) => Some(s.to_owned()),
    };
    Ok(Introspection {
        upstream,
        path,
        authorization: client_authentication(m)?,
        token_type_hint,
        timeout_ms: number(
            m,
            "timeout_ms",
            DEFAULT_TIMEOUT_MS.into(),
            1,
            MAX_TIMEOUT_MS.into(),
        )? as u32,
        scopes_required: list(m, "scopes_required", "scopes", scope)?,
        cache_ttl_ms: number(m, "cache_ttl", DEFAULT_CACHE_TTL_S, 0, MAX_CACHE_TTL_S)? * 1000,
        cache_max_entries: number(
            m,
            "cache_max_entries",
            DEFAULT_CACHE_MAX_ENTRIES as u64,
            1,
            MAX_CACHE_MAX_ENTRIES as u64,
        )? as usize,
        consumer_by: match string(m, "consumer_by")? {
            None | Some("none") => ConsumerBy::None,
            Some("username") => ConsumerBy::Username,
            Some("client_id") => ConsumerBy::ClientId,
            Some("sub") => ConsumerBy::Sub,
            Some(other) => {
                return Err(format!(
                    "consumer_by: expected username, client_id, sub or none, not \"{other}\""
                ))
            }
        },
        hide_credentials: boolean(m, "hide_credentials")?,
        anonymous: string(m, "anonymous")?.map(str::to_owned),
        realm: plugin_auth::realm(m)?,
    })
}

/// The `authorization` header of the introspection request: HTTP Basic with `client_id` and
/// `client_secret`, each form-urlencoded first (RFC 6749 section 2.3.1, which RFC 7662 points to),
/// or `authorization_value` as it is.
fn client_authentication(m: &Fields) -> Result<Option<String>, String> {
    let id = string(m, "client_id")?;
    let secret = string(m, "client_secret")?;
    if let Some(v) = string(m, "authorization_value")? {
        if id.is_some() || secret.is_some() {
            return Err(
                "authorization_value: give either client_id and client_secret, or \
                        authorization_value, not both"
                    .into(),
            );
        }
        if v.is_empty()
            || !v
                .bytes()
                .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
        {
            return Err(
                "authorization_value: expected a header value (visible ASCII, such as \
                        `Bearer ...`), not empty"
                    .into(),
            );
        }
        return Ok(Some(v.to_owned()));
    }
    match (id, secret) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(
            "client_id: no client_secret; client_id and client_secret go together (HTTP Basic)"
                .into(),
        ),
        (None, Some(_)) => Err(
            "client_secret: no client_id; client_id and client_secret go together (HTTP Basic)"
                .into(),
        ),
        (Some(""), Some(_)) => Err("client_id: empty".into()),
        (Some(id), Some(secret)) => {
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(id), enc(secret));
            Ok(Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )))
        }
    }
}

/// An integer field between `min` and `max` (absent: `default`).
fn number(m: &Fields, field: &str, default: u64, min: u64, max: u64) -> Result<u64, String> {
    match m.get(field) {
        None => Ok(default),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(format!("{field}: expected {min} to {max}, not {n}")),
        },
        Some(other) => Err(format!("{field}: expected a whole number, not {other}")),
    }
}

/// A scope token (RFC 6749 section 3.3: printable ASCII without space, `"` and `\`).
fn scope(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "\"{}\" is not a scope (printable ASCII without spaces, quotes or backslashes)",
            s.escape_debug()
        ))
    }
}

/// A path with an optional query (`/introspect?x=1`): starts with `/`, visible ASCII only.
fn path_with_query(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!("path: `{s}` must start with `/`"));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) || s.contains('#') {
        return Err(format!(
            "path: `{s}` is not a path (no spaces, fragments or non-ASCII; percent-encode them)"
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(config: &str) -> String {
        parse(config).expect_err("the config should be refused")
    }

    #[test]
    fn defaults() {
        let c = parse(r#"{"upstream": "idp", "path": "/introspect"}"#).unwrap();
        assert_eq!(
            (c.upstream.as_str(), c.path.as_str()),
            ("idp", "/introspect")
        );
        assert_eq!(c.authorization, None);
        assert_eq!(c.token_type_hint.as_deref(), Some("access_token"));
        assert_eq!(c.timeout_ms, 3000);
        assert!(c.scopes_required.is_empty());
        assert_eq!(c.cache_ttl_ms, 60_000);
        assert_eq!(c.cache_max_entries, 1000);
        assert_eq!(c.consumer_by, ConsumerBy::None);
        assert!(!c.hide_credentials);
        assert_eq!((c.anonymous, c.realm), (None, None));
    }

    #[test]
    fn fields_are_read() {
        let c = parse(
            r#"{"upstream": "idp", "path": "/oauth2/introspect?v=2",
                "client_id": "gateway", "client_secret": "s3cret",
                "token_type_hint": "", "timeout_ms": 500,
                "scopes_required": ["read", "orders:write"], "cache_ttl": 0,
                "cache_max_entries": 2, "consumer_by": "client_id",
                "hide_credentials": true, "anonymous": "guest", "realm": "api"}"#,
        )
        .unwrap();
        assert_eq!(c.path, "/oauth2/introspect?v=2");
        // base64("gateway:s3cret")
        assert_eq!(
            c.authorization.as_deref(),
            Some("Basic Z2F0ZXdheTpzM2NyZXQ=")
        );
        assert_eq!(c.token_type_hint, None);
        assert_eq!(c.timeout_ms, 500);
        assert_eq!(c.scopes_required, ["read", "orders:write"]);
        assert_eq!((c.cache_ttl_ms, c.cache_max_entries), (0, 2));
        let most = parse(r#"{"upstream": "idp", "path": "/i", "cache_max_entries": 100000}"#);
        assert_eq!(most.unwrap().cache_max_entries, MAX_CACHE_MAX_ENTRIES);
        assert_eq!(c.consumer_by, ConsumerBy::ClientId);
        assert_eq!(c.consumer_by.field(), Some("client_id"));
        assert!(c.hide_credentials);
        assert_eq!(c.anonymous.as_deref(), Some("guest"));
        assert_eq!(c.realm.as_deref(), Some("api"));

        for (by, field) in [
            ("username", Some("username")),
            ("sub", Some("sub")),
            ("none", None),
        ] {
            let c = parse(&format!(
                r#"{{"upstream": "idp", "path": "/i", "consumer_by": "{by}"}}"#
            ))
            .unwrap();
            assert_eq!(c.consumer_by.field(), field);
        }
    }

    #[test]
    fn client_credentials_are_form_encoded_before_base64() {
        // RFC 6749 2.3.1: `a b:c` and `p&q=` are encoded as `a+b%3Ac` and `p%26q%3D`.
        let c = parse(
            r#"{"upstream": "idp", "path": "/i", "client_id": "a b:c", "client_secret": "p&q="}"#,
        )
        .unwrap();
        let basic = c.authorization.unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(decoded, b"a+b%3Ac:p%26q%3D");

        let c =
            parse(r#"{"upstream": "idp", "path": "/i", "authorization_value": "Bearer gw-token"}"#)
                .unwrap();
        assert_eq!(c.authorization.as_deref(), Some("Bearer gw-token"));
    }

    #[test]
    fn refusals_name_the_field() {
        let base = r#""upstream": "idp", "path": "/i""#;
        for (config, field) in [
            ("".to_owned(), "no config"),
            ("\"idp\"".to_owned(), "config"),
            (r#"{"path": "/i"}"#.to_owned(), "upstream: missing"),
            (r#"{"upstream": "", "path": "/i"}"#.to_owned(), "upstream:"),
            (r#"{"upstream": "idp"}"#.to_owned(), "path: missing"),
            (
                r#"{"upstream": "idp", "path": "introspect"}"#.to_owned(),
                "path:",
            ),
            (r#"{"upstream": "idp", "path": "/a b"}"#.to_owned(), "path:"),
            (
                r#"{"introspection_url": "https://idp/introspect"}"#.to_owned(),
                "introspection_url:",
            ),
            (format!(r#"{{{base}, "ttl": 5}}"#), "ttl: unknown field"),
            (
                format!(r#"{{{base}, "client_id": "gw"}}"#),
                "client_id: no client_secret",
            ),
            (
                format!(r#"{{{base}, "client_secret": "s"}}"#),
                "client_secret: no client_id",
            ),
            (
                format!(r#"{{{base}, "client_id": "", "client_secret": "s"}}"#),
                "client_id: empty",
            ),
            (
                format!(
                    r#"{{{base}, "client_id": "gw", "client_secret": "s", "authorization_value": "Basic x"}}"#
                ),
                "authorization_value:",
            ),
            (
                format!(r#"{{{base}, "client_secret": "s", "authorization_value": "Basic x"}}"#),
                "authorization_value:",
            ),
            (
                format!(r#"{{{base}, "authorization_value": "Bearer a\nb"}}"#),
                "authorization_value:",
            ),
            (
                format!(r#"{{{base}, "authorization_value": ""}}"#),
                "authorization_value:",
            ),
            (
                format!(r#"{{{base}, "client_id": 7, "client_secret": "s"}}"#),
                "client_id:",
            ),
            (
                format!(r#"{{{base}, "token_type_hint": 1}}"#),
                "token_type_hint:",
            ),
            (format!(r#"{{{base}, "timeout_ms": 0}}"#), "timeout_ms:"),
            (format!(r#"{{{base}, "timeout_ms": 60001}}"#), "timeout_ms:"),
            (format!(r#"{{{base}, "timeout_ms": "3s"}}"#), "timeout_ms:"),
            (
                format!(r#"{{{base}, "scopes_required": "read"}}"#),
                "scopes_required:",
            ),
            (
                format!(r#"{{{base}, "scopes_required": ["read", "a b"]}}"#),
                "scopes_required[1]:",
            ),
            (
                format!(r#"{{{base}, "scopes_required": [""]}}"#),
                "scopes_required[0]:",
            ),
            (format!(r#"{{{base}, "cache_ttl": -1}}"#), "cache_ttl:"),
            (format!(r#"{{{base}, "cache_ttl": 86401}}"#), "cache_ttl:"),
            (format!(r#"{{{base}, "cache_ttl": 1.5}}"#), "cache_ttl:"),
            (
                format!(r#"{{{base}, "cache_max_entries": 0}}"#),
                "cache_max_entries:",
            ),
            (
                format!(r#"{{{base}, "cache_max_entries": 100001}}"#),
                "cache_max_entries: expected 1 to 100000",
            ),
            (
                format!(r#"{{{base}, "consumer_by": "email"}}"#),
                "consumer_by:",
            ),
            (
                format!(r#"{{{base}, "hide_credentials": "yes"}}"#),
                "hide_credentials:",
            ),
            (format!(r#"{{{base}, "anonymous": true}}"#), "anonymous:"),
            (format!(r#"{{{base}, "realm": "a\"b"}}"#), "realm:"),
        ] {
            let e = err(&config);
            assert!(e.starts_with(field), "{config}: {e}");
        }
    }
}
