//! An OpenAPI 3.1 document of the routes a config serves (`gateway routes --openapi`, and
//! `/routes/openapi.json` on the admin API): the "documentation generated from the gateway".
//!
//! What a route's matchers say becomes what OpenAPI can say:
//! - paths: an `exact` path as it is; a `template` with its `{name}` parameters (path parameters,
//!   required strings; a last `{*rest}` is the parameter `rest`, which may hold `/`); a `prefix` as
//!   its literal path with `x-gateway-match: prefix` (OpenAPI has no prefixes: the route also takes
//!   every path under it); a route without a path matcher as `/` with the same mark. A `regex` or
//!   `string_prefix` path cannot be written as an OpenAPI path: such routes are listed under
//!   `x-gateway-unlisted` with the reason, as are routes a route written before already answers
//!   (same path and method) and routes whose path another route has on another host (an OpenAPI
//!   path item has one `servers`);
//! - methods: the route's `methods`, or, for a route that takes any method, `get`, `post`, `put`,
//!   `patch` and `delete` with `x-gateway-any-method: true` on the path;
//! - header and query matchers: required parameters, with the exact value as `const` (or the
//!   regular expression as `pattern`); `present: false` matchers are left out (OpenAPI cannot forbid a
//!   parameter);
//! - a host matcher: the path's own `servers` (`https://` on TLS listeners);
//! - the built-in authentication plugins on a route's filters: security schemes (`key-auth`: an
//!   `apiKey` per place the key is looked for; `basic-auth`: HTTP basic; `jwt-auth`: HTTP bearer
//!   with `bearerFormat: JWT`, or an `apiKey` for other headers and cookies; `oauth2-introspection`:
//!   HTTP bearer), all of a route's required together, and optional (`{}` among the alternatives)
//!   when the plugin has an `anonymous` consumer. A `plugins:` entry with its own `path` or `url`
//!   under a built-in name is someone else's plugin and is not read as one.
//!
//! `servers` are the listeners the document is for (`http://` or `https://`, with the listen
//! address; `0.0.0.0` and `[::]` written as `localhost`).

use crate::config::{Config, Listener, PathMatch, Route, ValueMatch};
use serde_json::{json, Map, Value};

/// The methods written for a route that takes any method.
const ANY_METHOD: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The document for the routes that serve `listener` (every route, with every listener as a
/// server, when `None`). An unknown listener is an error naming the known ones.
pub fn document(config: &Config, listener: Option<&str>) -> Result<Value, String> {
    let listeners: Vec<&Listener> = match listener {
        None => config.listeners.iter().collect(),
        Some(name) => {
            let l = config
                .listeners
                .iter()
                .find(|l| l.name == name)
                .ok_or_else(|| {
                    let known: Vec<&str> =
                        config.listeners.iter().map(|l| l.name.as_str()).collect();
                    format!(
                        "no listener `{name}` (the config has: {})",
                        known.join(", ")
                    )
                })?;
            vec![l]
        }
    };
    let serves = |r: &Route| match listener {
        None => true,
        Some(name) => r.listeners.is_empty() || r.listeners.iter().any(|l| l == name),
    };
    let mut paths = Map::new();
    let mut schemes = Map::new();
    let mut unlisted = Vec::new();
    // The route that made each path's item, and the host it matches.
    let mut hosts: std::collections::HashMap<String, (String, Option<String>)> =
        std::collections::HashMap::new();
    for route in config.routes.iter().filter(|r| serves(r)) {
        let (path, params, mark) = match &route.matcher.path {
            None => ("/".to_owned(), Vec::new(), Some("prefix")),
            Some(PathMatch::Exact(p)) => (p.clone(), Vec::new(), None),
            Some(PathMatch::Prefix(p)) => (p.clone(), Vec::new(), Some("prefix")),
            Some(PathMatch::Template(t)) => {
                let (p, params) = template(t);
                (p, params, None)
            }
            Some(PathMatch::StringPrefix(p)) => {
                unlisted.push(json!({"route": route.name, "reason": format!("a string prefix (`{p}`) is not an OpenAPI path")}));
                continue;
            }
            Some(PathMatch::Regex(re)) => {
                unlisted.push(json!({"route": route.name, "reason": format!("a regular expression (`{re}`) is not an OpenAPI path")}));
                continue;
            }
        };
        let methods: Vec<String> = if route.matcher.methods.is_empty() {
            ANY_METHOD.iter().map(|m| (*m).to_owned()).collect()
        } else {
            route
                .matcher
                .methods
                .iter()
                .map(|m| m.to_ascii_lowercase())
                .collect()
        };
        let mut parameters: Vec<Value> = params
            .iter()
            .map(|(name, rest)| {
                let mut p = json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}});
                if *rest {
                    p["description"] = "The rest of the path: may hold `/`.".into();
                }
                p
            })
            .collect();
        parameters.extend(matchers("header", &route.matcher.headers));
        parameters.extend(matchers("query", &route.matcher.query));
        // One path item per path: routes of the same path on other hosts cannot share it (its
        // `servers` say which host it is on).
        match hosts.get(&path) {
            Some((other, host)) if *host != route.matcher.host => {
                unlisted.push(json!({
                    "route": route.name,
                    "reason": format!("route `{other}` has the path {path} on {}; an OpenAPI path is on one host", host.as_deref().unwrap_or("every host")),
                }));
                continue;
            }
            Some(_) => {}
            None => {
                hosts.insert(
                    path.clone(),
                    (route.name.clone(), route.matcher.host.clone()),
                );
            }
        }
        let security = security(config, route, &mut schemes);
        let item = paths
            .entry(path.clone())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("path items are objects");
        if let Some(host) = &route.matcher.host {
            let servers: Vec<Value> = listeners
                .iter()
                .map(|l| json!({"url": format!("{}://{}{}", scheme(l), host, port(l))}))
                .collect();
            item.insert("servers".into(), servers.into());
        }
        let mut taken = Vec::new();
        for method in methods {
            if item.contains_key(&method) {
                taken.push(method);
                continue;
            }
            let mut op = json!({
                "operationId": format!("{}_{}", route.name, method),
                "summary": route.name,
                "description": action(route),
                "responses": {"default": {"description": "The upstream's answer, or the gateway's own."}},
            });
            if !parameters.is_empty() {
                op["parameters"] = parameters.clone().into();
            }
            if let Some(s) = &security {
                op["security"] = s.clone();
            }
            if let Some(m) = mark {
                op["x-gateway-match"] = m.into();
            }
            if route.matcher.methods.is_empty() {
                op["x-gateway-any-method"] = true.into();
            }
            item.insert(method, op);
        }
        if !taken.is_empty() {
            unlisted.push(json!({
                "route": route.name,
                "reason": format!("an earlier route already answers {} {path}", taken.join(", ").to_ascii_uppercase()),
            }));
        }
    }
    let servers: Vec<Value> = listeners
        .iter()
        .map(|l| json!({"url": format!("{}://{}{}", scheme(l), host(l), port(l)), "description": format!("listener `{}`", l.name)}))
        .collect();
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": match listener {
                Some(l) => format!("Routes of listener {l}"),
                None => "Routes".to_owned(),
            },
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Generated by the gateway from its config.",
        },
        "servers": servers,
        "paths": paths,
    });
    if !schemes.is_empty() {
        doc["components"] = json!({"securitySchemes": schemes});
    }
    if !unlisted.is_empty() {
        doc["x-gateway-unlisted"] = unlisted.into();
    }
    Ok(doc)
}

/// A template's OpenAPI path and its parameters in order (`true`: the `{*rest}` one).
fn template(t: &str) -> (String, Vec<(String, bool)>) {
    let mut params = Vec::new();
    let path = t
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    let (name, rest) = match name.strip_prefix('*') {
                        Some(n) => (n, true),
                        None => (name, false),
                    };
                    params.push((name.to_owned(), rest));
                    format!("{{{name}}}")
                }
                None => seg.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/");
    (path, params)
}

/// Header or query matchers as required parameters (matchers for an absent value are left out).
fn matchers(place: &str, ms: &[ValueMatch]) -> Vec<Value> {
    ms.iter()
        .filter(|m| m.present != Some(false))
        .map(|m| {
            let mut schema = json!({"type": "string"});
            if let Some(v) = &m.exact {
                schema["const"] = v.clone().into();
            }
            if let Some(re) = &m.regex {
                schema["pattern"] = format!("^(?:{re})$").into();
            }
            json!({"name": m.name, "in": place, "required": true, "schema": schema})
        })
        .collect()
}

/// What a route does with a request it takes.
fn action(r: &Route) -> String {
    if let Some(u) = &r.upstream {
        format!("Forwarded to upstream `{u}`.")
    } else if r.split.is_some() {
        "Forwarded to one of the route's upstream clusters (a traffic split).".into()
    } else if r.redirect.is_some() {
        "Answered with a redirect.".into()
    } else if r.direct_response.is_some() {
        "Answered by the gateway with a fixed response.".into()
    } else {
        "Answered by the route's filters.".into()
    }
}

fn scheme(l: &Listener) -> &'static str {
    if l.tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// The listen address's host, `localhost` for a wildcard address.
fn host(l: &Listener) -> String {
    match l.address.rsplit_once(':') {
        Some(("0.0.0.0" | "[::]" | "", _)) => "localhost".into(),
        Some((h, _)) => h.to_owned(),
        None => l.address.clone(),
    }
}

/// `:port` of the listen address, none for the scheme's default port.
fn port(l: &Listener) -> String {
    match l.address.rsplit_once(':').map(|(_, p)| p) {
        Some("80") if l.tls.is_none() => String::new(),
        Some("443") if l.tls.is_some() => String::new(),
        Some(p) => format!(":{p}"),
        None => String::new(),
    }
}

/// The security requirement of a route's built-in authentication filters, adding their schemes
/// to `schemes`; `None` without any.
fn security(config: &Config, route: &Route, schemes: &mut Map<String, Value>) -> Option<Value> {
    // One list per authentication filter: the schemes it takes, any one of them.
    let mut required: Vec<Vec<String>> = Vec::new();
    let mut optional = false;
    for f in &route.filters {
        // A `plugins:` entry of that name with its own code is not the built-in plugin.
        let own_code = config
            .plugins
            .iter()
            .any(|p| p.name == f.plugin && (p.path.is_some() || p.url.is_some()));
        if own_code {
            continue;
        }
        let empty = Map::new();
        let cfg = f
            .config
            .as_ref()
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let list = |key: &str, default: &[&str]| -> Vec<String> {
            match cfg.get(key).and_then(Value::as_array) {
                Some(a) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                None => default.iter().map(|s| (*s).to_owned()).collect(),
            }
        };
        let flag =
            |key: &str, default: bool| cfg.get(key).and_then(Value::as_bool).unwrap_or(default);
        let mut options = Vec::new();
        let mut add = |name: String, scheme: Value| {
            schemes.insert(name.clone(), scheme);
            options.push(name);
        };
        match f.plugin.as_str() {
            "key-auth" => {
                for key in list("key_names", &["apikey"]) {
                    for (on, place) in [
                        ("key_in_header", "header"),
                        ("key_in_query", "query"),
                        ("key_in_cookie", "cookie"),
                    ] {
                        if flag(on, place != "cookie") {
                            add(
                                format!("key-auth_{place}_{key}"),
                                json!({"type": "apiKey", "in": place, "name": key, "description": "An API key of a consumer (key-auth)."}),
                            );
                        }
                    }
                }
            }
            "basic-auth" => add(
                "basic-auth".into(),
                json!({"type": "http", "scheme": "basic", "description": "A consumer's username and password (basic-auth)."}),
            ),
            "jwt-auth" => {
                for header in list("header_names", &["authorization"]) {
                    if header.eq_ignore_ascii_case("authorization") {
                        add(
                            "jwt-auth".into(),
                            json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "A signed JWT (jwt-auth)."}),
                        );
                    } else {
                        add(
                            format!("jwt-auth_header_{header}"),
                            json!({"type": "apiKey", "in": "header", "name": header, "description": "A signed JWT (jwt-auth)."}),
                        );
                    }
                }
                for cookie in list("cookie_names", &[]) {
                    add(
                        format!("jwt-auth_cookie_{cookie}"),
                        json!({"type": "apiKey", "in": "cookie", "name": cookie, "description": "A signed JWT (jwt-auth)."}),
                    );
                }
            }
            "oauth2-introspection" => add(
                "oauth2-introspection".into(),
                json!({"type": "http", "scheme": "bearer", "description": "An OAuth 2.0 access token, checked with the authorization server (oauth2-introspection)."}),
            ),
            _ => continue,
        }
        required.push(options);
        optional |= cfg.get("anonymous").is_some_and(|a| !a.is_null());
    }
    if required.is_empty() {
        return None;
    }
    // Each scheme of one filter is an alternative (a key in a header or in the query); the
    // filters of a route are all required: one requirement per combination of their schemes.
    let mut alternatives: Vec<Value> = required
        .into_iter()
        .fold(vec![Map::new()], |acc, options| {
            acc.iter()
                .flat_map(|a| {
                    options.iter().map(move |o| {
                        let mut m = a.clone();
                        m.insert(o.clone(), json!([]));
                        m
                    })
                })
                .collect()
        })
        .into_iter()
        .map(Value::Object)
        .collect();
    if optional {
        alternatives.push(json!({}));
    }
    Some(alternatives.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(yaml: &str) -> Config {
        Config::parse(Path::new("t.yaml"), yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    const BASE: &str = "listeners:\n  - {name: public, address: \"0.0.0.0:8080\"}\n  - {name: internal, address: \"127.0.0.1:9000\"}\nupstreams:\n  - {name: users, endpoints: [\"127.0.0.1:1\"]}\n";

    #[test]
    fn routes_become_paths_methods_parameters_and_security() {
        let c = config(&format!(
            "{BASE}routes:\n\
             \x20 - name: user\n    match: {{path: {{template: \"/users/{{id}}/files/{{*rest}}\"}}, methods: [GET, DELETE], headers: [{{name: x-tenant, exact: blue}}], query: [{{name: v, regex: \"[0-9]+\"}}]}}\n    upstream: users\n    filters: [{{plugin: key-auth, config: {{key_names: [x-api-key], key_in_query: false}}}}]\n\
             \x20 - name: any\n    listeners: [internal]\n    match: {{path: {{prefix: /api}}, host: api.example.com}}\n    upstream: users\n    filters: [{{plugin: jwt-auth}}, {{plugin: basic-auth, config: {{anonymous: guest}}}}]\n\
             \x20 - name: exact\n    match: {{path: {{exact: /health}}, methods: [GET]}}\n    direct_response: {{body: ok}}\n\
             \x20 - name: shadowed\n    match: {{path: {{exact: /health}}, methods: [GET, POST]}}\n    direct_response: {{body: ok}}\n\
             \x20 - name: re\n    match: {{path: {{regex: \"/v[0-9]+/.*\"}}}}\n    upstream: users\n"
        ));
        let d = document(&c, None).unwrap();
        assert_eq!(d["openapi"], "3.1.0");
        assert_eq!(d["servers"][0]["url"], "http://localhost:8080");
        assert_eq!(d["servers"][1]["url"], "http://127.0.0.1:9000");
        let user = &d["paths"]["/users/{id}/files/{rest}"];
        assert!(
            user["get"].is_object() && user["delete"].is_object() && user["post"].is_null(),
            "{user}"
        );
        let params = user["get"]["parameters"].as_array().unwrap();
        let names: Vec<(&str, &str)> = params
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                ("id", "path"),
                ("rest", "path"),
                ("x-tenant", "header"),
                ("v", "query")
            ]
        );
        assert_eq!(params[2]["schema"]["const"], "blue");
        assert_eq!(params[3]["schema"]["pattern"], "^(?:[0-9]+)$");
        assert_eq!(
            user["get"]["security"],
            json!([{"key-auth_header_x-api-key": []}])
        );
        assert_eq!(
            d["components"]["securitySchemes"]["key-auth_header_x-api-key"],
            json!({"type": "apiKey", "in": "header", "name": "x-api-key", "description": "An API key of a consumer (key-auth)."})
        );
        assert!(d["components"]["securitySchemes"]["key-auth_query_x-api-key"].is_null());
        let any = &d["paths"]["/api"];
        assert_eq!(any["get"]["x-gateway-match"], "prefix");
        assert_eq!(any["get"]["x-gateway-any-method"], true);
        assert_eq!(any["servers"][0]["url"], "http://api.example.com:8080");
        assert_eq!(
            any["patch"]["security"],
            json!([{"basic-auth": [], "jwt-auth": []}, {}])
        );
        assert_eq!(
            d["components"]["securitySchemes"]["jwt-auth"]["bearerFormat"],
            "JWT"
        );
        assert_eq!(d["paths"]["/health"]["get"]["operationId"], "exact_get");
        assert_eq!(
            d["paths"]["/health"]["post"]["operationId"],
            "shadowed_post"
        );
        let unlisted = d["x-gateway-unlisted"].as_array().unwrap();
        assert_eq!(unlisted.len(), 2, "{unlisted:?}");
        assert_eq!(unlisted[0]["route"], "shadowed");
        assert!(unlisted[0]["reason"]
            .as_str()
            .unwrap()
            .contains("GET /health"));
        assert_eq!(unlisted[1]["route"], "re");
        // One listener: its routes only, and it as the server.
        let d = document(&c, Some("public")).unwrap();
        assert!(
            d["paths"]["/api"].is_null(),
            "the route serves `internal` only"
        );
        assert_eq!(d["servers"].as_array().unwrap().len(), 1);
        let e = document(&c, Some("nope")).unwrap_err();
        assert!(e.contains("public, internal"), "{e}");
    }

    #[test]
    fn a_path_on_two_hosts_is_listed_once_with_its_host_and_the_other_route_unlisted() {
        let c = config(&format!(
            "{BASE}routes:\n\
             \x20 - name: shop-a\n    match: {{host: a.example.com, path: {{exact: /orders}}, methods: [GET]}}\n    upstream: users\n\
             \x20 - name: shop-b\n    match: {{host: b.example.com, path: {{exact: /orders}}, methods: [GET, POST]}}\n    upstream: users\n    filters: [{{plugin: key-auth}}]\n\
             \x20 - name: any\n    match: {{path: {{prefix: /orders}}, methods: [PUT]}}\n    upstream: users\n\
             \x20 - name: exact-get\n    match: {{path: {{exact: /x}}, methods: [GET]}}\n    upstream: users\n\
             \x20 - name: prefix-post\n    match: {{path: {{prefix: /x}}, methods: [POST]}}\n    upstream: users\n"
        ));
        let d = document(&c, None).unwrap();
        let orders = &d["paths"]["/orders"];
        assert_eq!(orders["servers"][0]["url"], "http://a.example.com:8080");
        assert!(orders["get"]["security"].is_null(), "{orders}");
        assert!(
            orders["post"].is_null() && orders["put"].is_null(),
            "{orders}"
        );
        let unlisted: Vec<&str> = d["x-gateway-unlisted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["route"].as_str().unwrap())
            .collect();
        assert_eq!(unlisted, ["shop-b", "any"]);
        // Marks belong to the operation of the route they describe.
        assert!(d["paths"]["/x"]["get"]["x-gateway-match"].is_null());
        assert_eq!(d["paths"]["/x"]["post"]["x-gateway-match"], "prefix");
    }

    #[test]
    fn a_plugin_with_its_own_code_under_a_built_in_name_is_not_read_as_it() {
        let c = config(&format!(
            "{BASE}plugins:\n  - {{name: key-auth, path: mine.wasm}}\nroutes:\n  - name: r\n    upstream: users\n    filters: [{{plugin: key-auth}}]\n"
        ));
        let d = document(&c, None).unwrap();
        assert!(d["paths"]["/"]["get"]["security"].is_null(), "{d}");
        assert!(d.get("components").is_none());
    }
}
