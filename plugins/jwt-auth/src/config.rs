//! The route's config: read from JSON, checked, and compiled into [`JwtAuth`], the policy the
//! handler applies. Every error starts with the path of the field it is about (`keys[1].algorithm:`),
//! which the gateway maps to the YAML line.

use crate::claims::Rules;
use crate::jwks::Timing;
use crate::keys::{self, Alg, Key, KeyType, Material, ALGORITHMS};
use plugin_config::{boolean, header_names, is_token, list, object, string, strings, Fields};
use serde_json::{Map, Value};

/// `key_claim_name` when the config does not set it: the claim that names a consumer's credential,
/// as in Kong.
pub const DEFAULT_KEY_CLAIM: &str = "iss";
/// The `key_claim_name` that means the token header's `kid` (not a claim of that name).
pub const KID: &str = "kid";
/// `header_names` when the config does not set it.
pub const DEFAULT_HEADER_NAMES: [&str; 1] = ["authorization"];
/// `uri_param_names` when the config does not set it.
pub const DEFAULT_URI_PARAM_NAMES: [&str; 1] = ["jwt"];
/// `jwks.path` when the config does not set it (the OpenID Connect convention's usual place).
pub const DEFAULT_JWKS_PATH: &str = "/.well-known/jwks.json";
/// `jwks.cache_ttl` when the config does not set it, in seconds.
pub const DEFAULT_CACHE_TTL: u64 = 300;
/// `jwks.min_refresh_interval` when the config does not set it, in seconds.
pub const DEFAULT_MIN_REFRESH_INTERVAL: u64 = 10;
/// `jwks.timeout_ms` when the config does not set it.
pub const DEFAULT_JWKS_TIMEOUT_MS: u64 = 3000;
/// `jwks.max_stale` when the config does not set it: this many times `cache_ttl`.
pub const DEFAULT_MAX_STALE_TTLS: u64 = 4;
/// The most `jwks.max_stale` may be, in seconds (a week).
pub const MAX_MAX_STALE: u64 = 7 * 86_400;
/// The most `clock_skew` may be, in seconds.
pub const MAX_CLOCK_SKEW: u64 = 600;

/// Headers `claims_to_headers` may not write: framing and routing headers and the gateway's request
/// id (the consumer headers the auth plugins own, `plugin_auth::CONSUMER_HEADERS`, neither).
const RESERVED_HEADERS: [&str; 10] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "x-request-id",
];

/// Where the JWKS comes from and how long it is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Jwks {
    /// The granted upstream that serves it.
    pub upstream: String,
    /// Its path (and query).
    pub path: String,
    pub timing: Timing,
    pub timeout_ms: u32,
}

/// A route's policy.
#[derive(Debug)]
pub struct JwtAuth {
    /// Keys of the route's config.
    pub keys: Vec<Key>,
    pub jwks: Option<Jwks>,
    /// Whether tokens may be verified with consumers' credentials (named by `key_claim_name`).
    pub consumer_credentials: bool,
    /// The claim whose value names a consumer's credential ([`KID`]: the header's `kid`).
    pub key_claim_name: String,
    /// Request headers a token is looked for in, lower case.
    pub header_names: Vec<String>,
    pub uri_param_names: Vec<String>,
    pub cookie_names: Vec<String>,
    pub rules: Rules,
    /// Claim name, header name (lower case).
    pub claims_to_headers: Vec<(String, String)>,
    pub hide_credentials: bool,
    /// Whether CORS preflights are checked too (otherwise they go on unauthenticated).
    pub run_on_preflight: bool,
    /// The consumer requests without a valid token go on as (checked by `init` with the host).
    pub anonymous: Option<String>,
    /// The claim naming the consumer of a token verified by a route or JWKS key.
    pub consumer_claim: Option<String>,
    pub realm: String,
}

const FIELDS: [&str; 17] = [
    "keys",
    "jwks",
    "consumer_credentials",
    "key_claim_name",
    "header_names",
    "uri_param_names",
    "cookie_names",
    "issuers",
    "audiences",
    "clock_skew",
    "maximum_expiration",
    "claims_to_headers",
    "hide_credentials",
    "run_on_preflight",
    "anonymous",
    "consumer_claim",
    "realm",
];

/// Reads the route's config as a map of known fields. An absent config is an empty map: every
/// field has a default (tokens are then checked against the consumers' credentials only).
pub fn fields(config: &str) -> Result<Fields, String> {
    if config.trim().is_empty() {
        return Ok(Fields::new());
    }
    object(config, &FIELDS, "keys or jwks")
}

/// Compiles the fields into the route's policy.
pub fn parse(m: &Fields) -> Result<JwtAuth, String> {
    let keys = match m.get("keys") {
        None => Vec::new(),
        Some(Value::Array(items)) => inline_keys(items)?,
        Some(other) => {
            return Err(format!(
            "keys: expected a list of keys ({{algorithm, secret or public_key, kid}}), not {other}"
        ))
        }
    };
    let jwks = m.get("jwks").map(jwks).transpose()?;
    // A route that trusts an identity provider (its keys, a JWKS) does not also trust every
    // consumer's credential unless it says so: a consumer could otherwise sign tokens that look like
    // the provider's (its `iss`, `aud`, any `sub`).
    let consumer_credentials = match m.get("consumer_credentials") {
        None => keys.is_empty() && jwks.is_none(),
        Some(_) => boolean(m, "consumer_credentials")?,
    };
    if !consumer_credentials && keys.is_empty() && jwks.is_none() {
        return Err(
            "consumer_credentials: false leaves the route no key to verify tokens with; \
                    give `keys` or `jwks`"
                .into(),
        );
    }
    let header_names = match m.get("header_names") {
        None => DEFAULT_HEADER_NAMES.map(String::from).to_vec(),
        Some(_) => header_names(m, "header_names")?,
    };
    let uri_param_names = match m.get("uri_param_names") {
        None => DEFAULT_URI_PARAM_NAMES.map(String::from).to_vec(),
        Some(_) => list(m, "uri_param_names", "query parameter names", |s| {
            if !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"&=#%+".contains(&b))
            {
                Ok(s.to_owned())
            } else {
                Err(format!("`{s}` is not a query parameter name"))
            }
        })?,
    };
    let cookie_names = list(m, "cookie_names", "cookie names", |s| {
        if is_token(s) {
            Ok(s.to_owned())
        } else {
            Err(format!("`{s}` is not a cookie name"))
        }
    })?;
    let claim = |field: &str| -> Result<Option<String>, String> {
        match string(m, field)? {
            Some("") => Err(format!("{field}: expected the name of a claim")),
            other => Ok(other.map(str::to_owned)),
        }
    };
    let rules = Rules {
        clock_skew: number(m, "clock_skew", 0, 0..=MAX_CLOCK_SKEW, "seconds")?,
        maximum_expiration: number(
            m,
            "maximum_expiration",
            0,
            0..=u64::from(u32::MAX),
            "seconds",
        )?,
        issuers: strings(m, "issuers")?,
        audiences: strings(m, "audiences")?,
    };
    let realm = plugin_auth::realm(m)?.unwrap_or_else(|| plugin_auth::DEFAULT_REALM.to_owned());
    Ok(JwtAuth {
        keys,
        jwks,
        consumer_credentials,
        key_claim_name: claim("key_claim_name")?.unwrap_or_else(|| DEFAULT_KEY_CLAIM.to_owned()),
        claims_to_headers: claims_to_headers(m, &header_names)?,
        header_names,
        uri_param_names,
        cookie_names,
        rules,
        hide_credentials: boolean(m, "hide_credentials")?,
        run_on_preflight: match m.get("run_on_preflight") {
            None => true,
            Some(_) => boolean(m, "run_on_preflight")?,
        },
        anonymous: string(m, "anonymous")?.map(str::to_owned),
        consumer_claim: claim("consumer_claim")?,
        realm,
    })
}

/// A map's fields, all of them `known`; errors start with `path`.
fn map<'a>(v: &'a Value, path: &str, known: &[&str]) -> Result<&'a Map<String, Value>, String> {
    let Value::Object(m) = v else {
        return Err(format!("{path}: expected a map, not {v}"));
    };
    if let Some(k) = m.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!(
            "{path}.{k}: unknown field (expected one of {})",
            known.join(", ")
        ));
    }
    Ok(m)
}

/// A whole number field in `range` (absent: `default`).
fn number(
    m: &Map<String, Value>,
    path: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    unit: &str,
) -> Result<u64, String> {
    let field = path.rsplit('.').next().unwrap_or(path);
    match m.get(field) {
        None => Ok(default),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if range.contains(&v) => Ok(v),
            _ => Err(format!(
                "{path}: expected {} to {} {unit}, not {n}",
                range.start(),
                range.end()
            )),
        },
        Some(other) => Err(format!("{path}: expected a number of {unit}, not {other}")),
    }
}

fn text<'a>(m: &'a Map<String, Value>, path: &str) -> Result<Option<&'a str>, String> {
    let field = path.rsplit('.').next().unwrap_or(path);
    match m.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("{path}: expected a string, not {other}")),
    }
}

fn inline_keys(items: &[Value]) -> Result<Vec<Key>, String> {
    let names: Vec<&str> = ALGORITHMS.iter().map(|a| a.name()).collect();
    let mut keys: Vec<Key> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = |f: &str| format!("keys[{i}].{f}");
        let m = map(
            item,
            &format!("keys[{i}]"),
            &["kid", "algorithm", "secret", "public_key"],
        )?;
        let kid = text(m, &at("kid"))?.map(str::to_owned);
        if let Some(k) = &kid {
            if let Some(j) = keys.iter().position(|o| o.kid.as_ref() == Some(k)) {
                return Err(format!("{}: `{k}` is also the kid of keys[{j}]", at("kid")));
            }
        }
        let alg = match text(m, &at("algorithm"))? {
            None => {
                return Err(format!(
                    "{}: missing (one of {})",
                    at("algorithm"),
                    names.join(", ")
                ))
            }
            Some(name) => Alg::parse(name).ok_or_else(|| {
                format!(
                    "{}: unknown algorithm `{name}` (expected one of {})",
                    at("algorithm"),
                    names.join(", ")
                )
            })?,
        };
        let secret = text(m, &at("secret"))?;
        let public_key = text(m, &at("public_key"))?;
        let material = match (alg.key_type(), secret, public_key) {
            (KeyType::Hmac, Some(s), None) => {
                if s.len() < alg.min_secret_len() {
                    return Err(format!(
                        "{}: {} needs a secret of at least {} bytes (RFC 7518 section 3.2)",
                        at("secret"),
                        alg.name(),
                        alg.min_secret_len()
                    ));
                }
                Material::Hmac(s.as_bytes().to_vec())
            }
            (KeyType::Hmac, _, _) => {
                return Err(format!(
                    "{}: {} needs a `secret` and no `public_key`",
                    at("secret"),
                    alg.name()
                ))
            }
            (_, None, Some(pem)) => {
                keys::from_pem(alg, pem).map_err(|e| format!("{}: {e}", at("public_key")))?
            }
            (_, _, _) => {
                return Err(format!(
                    "{}: {} needs a `public_key` (PEM) and no `secret`",
                    at("public_key"),
                    alg.name()
                ))
            }
        };
        keys.push(Key {
            kid,
            alg: Some(alg),
            material,
        });
    }
    Ok(keys)
}

fn jwks(v: &Value) -> Result<Jwks, String> {
    let m = map(
        v,
        "jwks",
        &[
            "upstream",
            "path",
            "cache_ttl",
            "min_refresh_interval",
            "max_stale",
            "timeout_ms",
        ],
    )?;
    let upstream = match text(m, "jwks.upstream")? {
        Some(u) if !u.trim().is_empty() => u.to_owned(),
        _ => {
            return Err(
                "jwks.upstream: missing; name the upstream that serves the JWKS \
                        (and grant it to the plugin under `plugins:`)"
                    .into(),
            )
        }
    };
    let path = match text(m, "jwks.path")? {
        None => DEFAULT_JWKS_PATH.to_owned(),
        Some(p)
            if p.starts_with('/')
                && p.bytes().all(|b| b.is_ascii_graphic())
                && !p.contains('#') =>
        {
            p.to_owned()
        }
        Some(p) => {
            return Err(format!(
                "jwks.path: `{p}` must start with `/`, without spaces, fragments or non-ASCII"
            ))
        }
    };
    let cache_ttl = number(
        m,
        "jwks.cache_ttl",
        DEFAULT_CACHE_TTL,
        1..=86_400,
        "seconds",
    )?;
    let min_refresh = number(
        m,
        "jwks.min_refresh_interval",
        DEFAULT_MIN_REFRESH_INTERVAL,
        1..=3_600,
        "seconds",
    )?;
    let max_stale = number(
        m,
        "jwks.max_stale",
        DEFAULT_MAX_STALE_TTLS * cache_ttl,
        0..=MAX_MAX_STALE,
        "seconds",
    )?;
    let timeout_ms = number(
        m,
        "jwks.timeout_ms",
        DEFAULT_JWKS_TIMEOUT_MS,
        1..=60_000,
        "milliseconds",
    )?;
    Ok(Jwks {
        upstream,
        path,
        timing: Timing {
            cache_ttl_ms: cache_ttl * 1000,
            min_refresh_ms: min_refresh * 1000,
            max_stale_ms: max_stale * 1000,
        },
        timeout_ms: timeout_ms as u32,
    })
}

fn claims_to_headers(
    m: &Fields,
    token_headers: &[String],
) -> Result<Vec<(String, String)>, String> {
    let Some(v) = m.get("claims_to_headers") else {
        return Ok(Vec::new());
    };
    let Value::Object(pairs) = v else {
        return Err(format!(
            "claims_to_headers: expected a map of claim names to header names, not {v}"
        ));
    };
    let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
    for (claim, header) in pairs {
        let at = format!("claims_to_headers.{claim}");
        let header = match header {
            Value::String(h) if is_token(h) => h.to_ascii_lowercase(),
            Value::String(h) => return Err(format!("{at}: `{h}` is not a valid header name")),
            other => return Err(format!("{at}: expected a header name, not {other}")),
        };
        if RESERVED_HEADERS.contains(&header.as_str())
            || plugin_auth::CONSUMER_HEADERS.contains(&header.as_str())
            || token_headers.contains(&header)
        {
            return Err(format!(
                "{at}: `{header}` is a header the gateway or this plugin owns (framing, the request id, the consumer headers, the token's headers)"
            ));
        }
        if let Some((other, _)) = out.iter().find(|(_, h)| *h == header) {
            return Err(format!(
                "{at}: `{header}` is already the header of claim `{other}`"
            ));
        }
        out.push((claim.clone(), header));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys::*;
    use serde_json::json;

    fn parse_json(v: Value) -> Result<JwtAuth, String> {
        parse(&fields(&v.to_string())?)
    }

    fn err(v: Value) -> String {
        parse_json(v).expect_err("the config should be refused")
    }

    #[test]
    fn defaults() {
        for config in ["", "  ", "{}"] {
            let c = parse(&fields(config).unwrap()).unwrap();
            assert!(c.keys.is_empty() && c.jwks.is_none());
            assert!(c.consumer_credentials);
            assert_eq!(c.key_claim_name, "iss");
            assert_eq!(c.header_names, ["authorization"]);
            assert_eq!(c.uri_param_names, ["jwt"]);
            assert!(c.cookie_names.is_empty());
            assert_eq!(c.rules, Rules::default());
            assert!(c.claims_to_headers.is_empty());
            assert!(!c.hide_credentials);
            assert!(c.run_on_preflight);
            assert_eq!((c.anonymous, c.consumer_claim), (None, None));
            assert_eq!(c.realm, "gateway");
        }
    }

    #[test]
    fn everything_set() {
        let c = parse_json(json!({
            "keys": [
                {"kid": "hs", "algorithm": "HS256", "secret": String::from_utf8(secret(Alg::HS256)).unwrap()},
                {"algorithm": "RS256", "public_key": RSA_PUB},
                {"kid": "ed", "algorithm": "EdDSA", "public_key": ED25519_PUB},
            ],
            "jwks": {"upstream": "idp", "path": "/keys?v=2", "cache_ttl": 60, "min_refresh_interval": 5, "max_stale": 30, "timeout_ms": 500},
            "key_claim_name": "kid_claim",
            "header_names": ["Authorization", "X-Token"],
            "uri_param_names": ["token"],
            "cookie_names": ["session"],
            "issuers": ["https://idp.example"],
            "audiences": ["api"],
            "clock_skew": 30,
            "maximum_expiration": 3600,
            "claims_to_headers": {"sub": "X-User", "roles": "x-roles"},
            "hide_credentials": true,
            "run_on_preflight": false,
            "anonymous": "guest",
            "consumer_claim": "preferred_username",
            "realm": "api",
        }))
        .unwrap();
        assert_eq!(c.keys.len(), 3);
        assert_eq!(c.keys[0].kid.as_deref(), Some("hs"));
        assert_eq!(c.keys[1].alg, Some(Alg::RS256));
        let j = c.jwks.unwrap();
        assert_eq!(
            (j.upstream.as_str(), j.path.as_str(), j.timeout_ms),
            ("idp", "/keys?v=2", 500)
        );
        assert_eq!(
            j.timing,
            Timing {
                cache_ttl_ms: 60_000,
                min_refresh_ms: 5_000,
                max_stale_ms: 30_000,
            }
        );
        assert_eq!(c.key_claim_name, "kid_claim");
        assert_eq!(c.header_names, ["authorization", "x-token"]);
        assert_eq!(c.uri_param_names, ["token"]);
        assert_eq!(c.cookie_names, ["session"]);
        assert_eq!(
            c.rules,
            Rules {
                clock_skew: 30,
                maximum_expiration: 3600,
                issuers: vec!["https://idp.example".into()],
                audiences: vec!["api".into()],
            }
        );
        assert_eq!(
            c.claims_to_headers,
            [
                ("roles".to_string(), "x-roles".to_string()),
                ("sub".into(), "x-user".into())
            ]
        );
        assert!(c.hide_credentials);
        assert!(!c.run_on_preflight);
        assert_eq!(c.anonymous.as_deref(), Some("guest"));
        assert_eq!(c.consumer_claim.as_deref(), Some("preferred_username"));
        assert_eq!(c.realm, "api");

        let j = parse_json(json!({"jwks": {"upstream": "idp"}}))
            .unwrap()
            .jwks
            .unwrap();
        assert_eq!(j.path, "/.well-known/jwks.json");
        assert_eq!(j.timing.cache_ttl_ms, 300_000);
        assert_eq!(j.timing.min_refresh_ms, 10_000);
        assert_eq!(j.timing.max_stale_ms, 1_200_000);
        assert_eq!(j.timeout_ms, 3000);
        // max_stale follows cache_ttl unless set; 0 never uses an expired copy.
        let stale = |jwks: Value| {
            parse_json(json!({ "jwks": jwks }))
                .unwrap()
                .jwks
                .unwrap()
                .timing
                .max_stale_ms
        };
        assert_eq!(stale(json!({"upstream": "idp", "cache_ttl": 10})), 40_000);
        assert_eq!(stale(json!({"upstream": "idp", "max_stale": 0})), 0);
    }

    #[test]
    fn consumer_credentials_are_trusted_by_default_only_without_keys_or_a_jwks() {
        let creds = |v: Value| parse_json(v).unwrap().consumer_credentials;
        let ed = json!([{"algorithm": "EdDSA", "public_key": ED25519_PUB}]);
        assert!(creds(json!({})));
        assert!(!creds(json!({ "keys": ed })));
        assert!(!creds(json!({"jwks": {"upstream": "idp"}})));
        assert!(creds(json!({"keys": ed, "consumer_credentials": true})));
        assert!(creds(
            json!({"jwks": {"upstream": "idp"}, "consumer_credentials": true})
        ));
        assert!(creds(json!({"consumer_credentials": true})));
        assert!(!creds(json!({"keys": ed, "consumer_credentials": false})));
    }

    #[test]
    fn errors_name_the_field() {
        let hs = String::from_utf8(secret(Alg::HS256)).unwrap();
        for (config, message) in [
            (json!([]), "config: expected a map"),
            (json!({"key": []}), "key: unknown field"),
            (json!({"keys": {}}), "keys: expected a list of keys"),
            (json!({"keys": ["k"]}), "keys[0]: expected a map"),
            (
                json!({"keys": [{"algorithm": "HS256", "secret": hs, "x": 1}]}),
                "keys[0].x: unknown field",
            ),
            (
                json!({"keys": [{"secret": hs}]}),
                "keys[0].algorithm: missing",
            ),
            (
                json!({"keys": [{"algorithm": "none", "secret": hs}]}),
                "keys[0].algorithm: unknown algorithm `none`",
            ),
            (
                json!({"keys": [{"algorithm": "HS256"}]}),
                "keys[0].secret: HS256 needs a `secret`",
            ),
            (
                json!({"keys": [{"algorithm": "HS256", "secret": hs, "public_key": RSA_PUB}]}),
                "keys[0].secret: HS256 needs a `secret` and no `public_key`",
            ),
            (
                json!({"keys": [{"algorithm": "HS384", "secret": hs}]}),
                "keys[0].secret: HS384 needs a secret of at least 48 bytes",
            ),
            (
                json!({"keys": [{"algorithm": "RS256", "secret": hs}]}),
                "keys[0].public_key: RS256 needs a `public_key`",
            ),
            (
                json!({"keys": [{"algorithm": "ES256", "public_key": RSA_PUB}]}),
                "keys[0].public_key: expected a P-256 public key for ES256",
            ),
            (
                json!({"keys": [{"algorithm": "ES256", "public_key": 1}]}),
                "keys[0].public_key: expected a string",
            ),
            (
                json!({"keys": [{"kid": "a", "algorithm": "EdDSA", "public_key": ED25519_PUB}, {"kid": "a", "algorithm": "ES256", "public_key": P256_PUB}]}),
                "keys[1].kid: `a` is also the kid of keys[0]",
            ),
            (
                json!({"consumer_credentials": false}),
                "consumer_credentials: false leaves the route no key",
            ),
            (
                json!({"consumer_credentials": "yes"}),
                "consumer_credentials: expected true or false",
            ),
            (json!({"jwks": "idp"}), "jwks: expected a map"),
            (json!({"jwks": {}}), "jwks.upstream: missing"),
            (json!({"jwks": {"upstream": " "}}), "jwks.upstream: missing"),
            (
                json!({"jwks": {"upstream": "idp", "url": "x"}}),
                "jwks.url: unknown field",
            ),
            (
                json!({"jwks": {"upstream": "idp", "path": "keys"}}),
                "jwks.path: `keys` must start with `/`",
            ),
            (
                json!({"jwks": {"upstream": "idp", "cache_ttl": 0}}),
                "jwks.cache_ttl: expected 1 to 86400 seconds, not 0",
            ),
            (
                json!({"jwks": {"upstream": "idp", "cache_ttl": "5m"}}),
                "jwks.cache_ttl: expected a number of seconds",
            ),
            (
                json!({"jwks": {"upstream": "idp", "min_refresh_interval": 1.5}}),
                "jwks.min_refresh_interval: expected 1 to 3600 seconds, not 1.5",
            ),
            (
                json!({"jwks": {"upstream": "idp", "max_stale": 604801}}),
                "jwks.max_stale: expected 0 to 604800 seconds",
            ),
            (
                json!({"jwks": {"upstream": "idp", "timeout_ms": 60001}}),
                "jwks.timeout_ms: expected 1 to 60000 milliseconds",
            ),
            (
                json!({"header_names": ["x y"]}),
                "header_names[0]: `x y` is not a valid header name",
            ),
            (
                json!({"uri_param_names": ["a&b"]}),
                "uri_param_names[0]: `a&b` is not a query parameter name",
            ),
            (
                json!({"cookie_names": ["", "s"]}),
                "cookie_names[0]: `` is not a cookie name",
            ),
            (
                json!({"issuers": "x"}),
                "issuers: expected a list of strings",
            ),
            (json!({"audiences": [1]}), "audiences[0]: expected a string"),
            (
                json!({"clock_skew": -1}),
                "clock_skew: expected 0 to 600 seconds, not -1",
            ),
            (
                json!({"clock_skew": 601}),
                "clock_skew: expected 0 to 600 seconds",
            ),
            (
                json!({"maximum_expiration": true}),
                "maximum_expiration: expected a number of seconds",
            ),
            (
                json!({"claims_to_headers": ["sub"]}),
                "claims_to_headers: expected a map",
            ),
            (
                json!({"claims_to_headers": {"sub": "x user"}}),
                "claims_to_headers.sub: `x user` is not a valid header name",
            ),
            (
                json!({"claims_to_headers": {"sub": 1}}),
                "claims_to_headers.sub: expected a header name",
            ),
            (
                json!({"claims_to_headers": {"sub": "X-Consumer-Username"}}),
                "claims_to_headers.sub: `x-consumer-username` is a header",
            ),
            (
                json!({"claims_to_headers": {"sub": "X-Consumer-Id"}}),
                "claims_to_headers.sub: `x-consumer-id` is a header",
            ),
            (
                json!({"claims_to_headers": {"sub": "host"}}),
                "claims_to_headers.sub: `host` is a header",
            ),
            (
                json!({"claims_to_headers": {"sub": "authorization"}}),
                "claims_to_headers.sub: `authorization` is a header",
            ),
            (
                json!({"claims_to_headers": {"a": "x-u", "b": "X-U"}}),
                "claims_to_headers.b: `x-u` is already the header of claim `a`",
            ),
            (
                json!({"hide_credentials": "yes"}),
                "hide_credentials: expected true or false",
            ),
            (
                json!({"run_on_preflight": 0}),
                "run_on_preflight: expected true or false",
            ),
            (json!({"anonymous": 1}), "anonymous: expected a string"),
            (
                json!({"key_claim_name": ""}),
                "key_claim_name: expected the name of a claim",
            ),
            (
                json!({"consumer_claim": 1}),
                "consumer_claim: expected a string",
            ),
            (json!({"realm": "a\"b"}), "realm: '\"' cannot be written"),
        ] {
            let e = err(config.clone());
            assert!(e.starts_with(message), "{config}: {e}");
        }
    }
}
