//! The config as `GET /config` shows it: without secrets.
//!
//! The rule, one for every free-form part of the config (header values a route sets, a route's
//! `match`, a filter's `config`, a plugin's `vm_config`): a value is shown as `<redacted>` when its
//! key or header name contains one of [`SECRET_WORDS`] (in any case), at any depth; in an object
//! that names a field (`name`, `header` or `key` holding such a name, as in
//! `{name: x-api-key, exact: ...}` or `{name: authorization, value: ...}`), every other value is
//! redacted too; a filter `config` or `vm_config` that is a plain string (its structure unknown) is
//! redacted whole. A plugin `url` is shown without user information and query (a presigned URL's
//! signature). The admin token is always redacted. Paths (certificate keys, CA bundles) are not
//! secrets and are shown. The running config itself is never changed: plugins get their config as
//! written.

use super::Config;
use serde_json::Value;

/// What a redacted value is shown as.
pub const REDACTED: &str = "<redacted>";

/// Words that mark a key or header name as holding a secret.
pub const SECRET_WORDS: [&str; 11] = [
    "pass",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
    "cookie",
    "session",
    "signature",
    "private",
    "bearer",
];

/// Whether a key or header name holds a secret by the rule above.
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| lower.contains(w))
}

/// `cfg` as JSON with every secret replaced by [`REDACTED`].
pub fn view(cfg: &Config) -> serde_json::Result<Value> {
    let mut v = serde_json::to_value(cfg)?;
    if let Some(routes) = v.get_mut("routes").and_then(Value::as_array_mut) {
        for r in routes {
            for ops in ["request_headers", "response_headers"] {
                for kind in ["set", "add"] {
                    if let Some(m) = r.get_mut(ops).and_then(|o| o.get_mut(kind)) {
                        by_name(m);
                    }
                }
            }
            if let Some(m) = r
                .get_mut("direct_response")
                .and_then(|d| d.get_mut("headers"))
            {
                by_name(m);
            }
            if let Some(m) = r.get_mut("match") {
                by_name(m);
            }
            if let Some(filters) = r.get_mut("filters").and_then(Value::as_array_mut) {
                for f in filters {
                    if let Some(c) = f.get_mut("config") {
                        free_form(c);
                    }
                }
            }
        }
    }
    // A Redis URL may hold a password (`redis://:pw@host`).
    if let Some(spaces) = v.get_mut("kv_namespaces").and_then(Value::as_object_mut) {
        for ns in spaces.values_mut() {
            if let Some(Value::String(url)) = ns.get_mut("redis").and_then(|r| r.get_mut("url")) {
                *url = shown_url(url);
            }
        }
    }
    if let Some(plugins) = v.get_mut("plugins").and_then(Value::as_array_mut) {
        for p in plugins {
            if let Some(c) = p.get_mut("vm_config") {
                free_form(c);
            }
            if let Some(Value::String(url)) = p.get_mut("url") {
                *url = shown_url(url);
            }
        }
    }
    Ok(v)
}

/// A filter's or VM's config: a string whole, an object or array by its keys.
fn free_form(v: &mut Value) {
    match v {
        Value::String(_) => *v = Value::String(REDACTED.into()),
        _ => by_name(v),
    }
}

/// A URL as shown: without user information, and with its query (a presigned URL's signature, a
/// token) as [`REDACTED`].
pub fn shown_url(url: &str) -> String {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return REDACTED.into();
    };
    let mut out = String::new();
    if let Some(s) = uri.scheme_str() {
        out.push_str(s);
        out.push_str("://");
    }
    if let Some(a) = uri.authority() {
        let hostport = a.as_str().rsplit_once('@').map_or(a.as_str(), |(_, h)| h);
        out.push_str(hostport);
    }
    out.push_str(uri.path());
    if uri.query().is_some() {
        out.push('?');
        out.push_str(REDACTED);
    }
    out
}

/// Fields that name another field of the same object (`{name: authorization, value: ...}`); `key`
/// only beside a `value` (alone, a `key` is itself a secret).
const NAMING_FIELDS: [&str; 3] = ["name", "header", "key"];

/// Redacts the value of every key that holds a secret, at any depth, and every value beside a
/// naming field that names a secret.
fn by_name(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let naming = |f: &str| f != "key" || m.contains_key("value");
            let named = NAMING_FIELDS
                .iter()
                .copied()
                .filter(|f| naming(f))
                .find(|f| {
                    m.get(*f)
                        .and_then(Value::as_str)
                        .is_some_and(is_secret_name)
                });
            for (k, val) in m.iter_mut() {
                if let Some(named) = named {
                    if k != named {
                        *val = Value::String(REDACTED.into());
                    }
                    // The naming field itself is shown: what it names is redacted.
                    continue;
                }
                if is_secret_name(k) {
                    *val = Value::String(REDACTED.into());
                } else {
                    by_name(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(by_name),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_by_name_and_the_rest_is_shown() {
        let cfg = Config::parse(
            std::path::Path::new("c.yaml"),
            "listeners: [{name: main, address: 127.0.0.1:0}]\n\
             admin: {token: adm1n}\n\
             plugins:\n  - {name: p, path: p.wasm, vm_config: {api_key: k3y, level: 2}}\n  - {name: q, path: q.wasm, vm_config: \"raw s3cret\"}\n\
             routes:\n  - name: r\n    direct_response: {body: ok, headers: {set-cookie: c00kie, content-type: text/plain}}\n\
             \x20   request_headers: {set: {authorization: Bearer t0ken, x-team: core}, add: {x-api-key: abc}}\n\
             \x20   filters: [{plugin: p, config: {users: [{name: ann, password: hunter2}], header: x-user}}, {plugin: q, config: \"opaque s3cret\"}]\n",
        )
        .unwrap();
        let text = serde_json::to_string(&view(&cfg).unwrap()).unwrap();
        for secret in [
            "adm1n",
            "k3y",
            "raw s3cret",
            "c00kie",
            "t0ken",
            "abc",
            "hunter2",
            "opaque s3cret",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        for shown in [
            "\"level\":2",
            "\"x-team\":\"core\"",
            "\"name\":\"ann\"",
            "x-user",
            "text/plain",
            "p.wasm",
        ] {
            assert!(text.contains(shown), "{shown} not in {text}");
        }
        // Route matchers and name/value lists, and a plugin URL's user information and query.
        let cfg2 = Config::parse(
            std::path::Path::new("c.yaml"),
            "listeners: [{name: main, address: 127.0.0.1:0}]\n\
             plugins:\n  - {name: p, url: \"https://u:pw@example.com/p.wasm?X-Amz-Signature=s1g\", sha256: \"0000000000000000000000000000000000000000000000000000000000000000\"}\n\
             routes:\n  - name: r\n    match: {headers: [{name: x-api-key, exact: m4tch}, {name: x-team, exact: core}], query: [{name: access_token, exact: qu3ry}]}\n\
             \x20   direct_response: {body: ok}\n\
             \x20   filters: [{plugin: p, config: {set_headers: [{name: authorization, value: Bearer l1st}, {name: x-env, value: prod}], pairs: [{key: x-api-key, value: p4ir}]}}]\n",
        )
        .unwrap();
        let text2 = serde_json::to_string(&view(&cfg2).unwrap()).unwrap();
        for secret in ["m4tch", "qu3ry", "l1st", "p4ir", "pw", "s1g"] {
            assert!(!text2.contains(secret), "{secret} in {text2}");
        }
        for shown in [
            "\"x-team\"",
            "\"core\"",
            "\"prod\"",
            "\"x-api-key\"",
            "https://example.com/p.wasm?<redacted>",
        ] {
            assert!(text2.contains(shown), "{shown} not in {text2}");
        }
        // The running config is untouched.
        assert_eq!(
            cfg.routes[0].request_headers.set["authorization"],
            "Bearer t0ken"
        );
    }
}
