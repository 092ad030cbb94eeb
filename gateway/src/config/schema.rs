//! The config's JSON Schema (draft 2020-12), derived from the config types with `schemars`: the
//! doc comments are its descriptions, `deny_unknown_fields` its `additionalProperties: false`. The
//! types read by hand (units, endpoints, balancers, retry conditions, secrets, the cache bounds) say
//! here what their deserializers accept.
//!
//! The schema is committed as `docs/config.schema.json` (a test checks it is current) and served
//! by the admin API at `GET /config/schema`. Regenerate it with [`REGENERATE`].

use super::{
    cache::CacheConfig, consumers::Secret, Balancer, Dur, Endpoint, HashKey, RetryOn, Size,
};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use std::borrow::Cow;

/// The command that writes the committed schema file from the config types.
pub const REGENERATE: &str = "cargo run -p gateway -- config schema > docs/config.schema.json";

/// What `parse_duration` accepts: numbers with units, possibly several (`1m30s`).
const DURATION_PATTERN: &str = r"^\s*([0-9]+(ms|s|m|h))+\s*$";

/// What `parse_size` accepts as text: a number and an optional unit.
const SIZE_PATTERN: &str = r"^\s*[0-9]+\s*(B|KiB|MiB|GiB|KB|kB|MB|GB)?\s*$";

/// The route config schemas of the first-party plugins that have one
/// (`plugins/<name>/config.schema.json`, draft 2020-12), by plugin name.
pub const PLUGIN_SCHEMAS: &[(&str, &str)] = &[
    (
        "acl",
        include_str!("../../../plugins/acl/config.schema.json"),
    ),
    (
        "api-composition",
        include_str!("../../../plugins/api-composition/config.schema.json"),
    ),
    (
        "basic-auth",
        include_str!("../../../plugins/basic-auth/config.schema.json"),
    ),
    (
        "cors",
        include_str!("../../../plugins/cors/config.schema.json"),
    ),
    (
        "ext-auth",
        include_str!("../../../plugins/ext-auth/config.schema.json"),
    ),
    (
        "ip-restriction",
        include_str!("../../../plugins/ip-restriction/config.schema.json"),
    ),
    (
        "json-xml",
        include_str!("../../../plugins/json-xml/config.schema.json"),
    ),
    (
        "jwt-auth",
        include_str!("../../../plugins/jwt-auth/config.schema.json"),
    ),
    (
        "key-auth",
        include_str!("../../../plugins/key-auth/config.schema.json"),
    ),
    (
        "oauth2-introspection",
        include_str!("../../../plugins/oauth2-introspection/config.schema.json"),
    ),
    (
        "proxy-cache",
        include_str!("../../../plugins/proxy-cache/config.schema.json"),
    ),
    (
        "rate-limiting",
        include_str!("../../../plugins/rate-limiting/config.schema.json"),
    ),
    (
        "request-transformer",
        include_str!("../../../plugins/request-transformer/config.schema.json"),
    ),
    (
        "request-validation",
        include_str!("../../../plugins/request-validation/config.schema.json"),
    ),
    (
        "response-transformer",
        include_str!("../../../plugins/response-transformer/config.schema.json"),
    ),
];

/// The config's JSON Schema, as committed in `docs/config.schema.json`: the config types' schema,
/// with a filter's `config` checked against its plugin's schema when the filter names a first-party
/// plugin that has one (under `$defs`, `plugin-config.<name>`). A `config` written as a string is
/// passed to the plugin as it is and not checked.
pub fn config_schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator();
    let mut schema = generator.into_root_schema_for::<super::Config>();
    schema.insert("title".into(), "API gateway config (gateway.yaml)".into());
    let mut schema = schema.to_value();
    let mut by_plugin = Vec::new();
    for (name, text) in PLUGIN_SCHEMAS {
        let mut plugin: serde_json::Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("plugins/{name}/config.schema.json: {e}"));
        let fields = plugin
            .as_object_mut()
            .expect("a plugin schema is an object");
        fields.remove("$schema");
        fields.remove("$id");
        let key = format!("plugin-config.{name}");
        schema["$defs"][&key] = plugin;
        by_plugin.push(serde_json::json!({
            "if": {"properties": {"plugin": {"const": name}}, "required": ["plugin"]},
            "then": {"properties": {"config": {"anyOf": [
                {"type": "string"},
                {"$ref": format!("#/$defs/{key}")}
            ]}}}
        }));
    }
    schema["$defs"]["FilterRef"]["allOf"] = by_plugin.into();
    schema
}

/// The schema as the committed file holds it: pretty JSON and a final newline.
pub fn config_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&config_schema()).expect("a schema is JSON");
    text.push('\n');
    text
}

impl JsonSchema for Dur {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: a whole number and a unit (`ms`, `s`, `m`, `h`), or several of them (`1m30s`).",
            "type": "string",
            "pattern": DURATION_PATTERN,
            "examples": ["250ms", "15s", "1m30s"]
        })
    }
}

impl JsonSchema for Size {
    fn schema_name() -> Cow<'static, str> {
        "Size".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A byte size: a whole number of bytes, or a number and a unit (`B`, `KiB`, `MiB`, `GiB`, `KB`, `MB`, `GB`).",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": SIZE_PATTERN}
            ],
            "examples": ["64KiB", "10MiB", 1024]
        })
    }
}

impl JsonSchema for RetryOn {
    fn schema_name() -> Cow<'static, str> {
        "RetryOn".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A retry condition: `connect_failure`, `reset` (the exchange broke after the connection was made), `timeout` (a try timed out), a status code the upstream answered with (a number), or `grpc:<status>`.",
            "anyOf": [
                {"enum": ["connect_failure", "reset", "timeout"]},
                {"type": "integer", "minimum": 100, "maximum": 599},
                {
                    "description": "The gRPC status of a trailers-only answer (Envoy's retriable gRPC statuses).",
                    "enum": [
                        "grpc:cancelled",
                        "grpc:deadline-exceeded",
                        "grpc:internal",
                        "grpc:resource-exhausted",
                        "grpc:unavailable"
                    ]
                }
            ]
        })
    }
}

impl JsonSchema for Endpoint {
    fn schema_name() -> Cow<'static, str> {
        "Endpoint".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An endpoint of a cluster: `host:port`, or `{address, weight}`.",
            "anyOf": [
                {"type": "string", "description": "`host:port`, weight 1."},
                {
                    "type": "object",
                    "properties": {
                        "address": {"type": "string", "description": "`host:port`."},
                        "weight": {
                            "type": "integer", "minimum": 0, "maximum": u32::MAX, "default": 1,
                            "description": "Relative share of traffic. Default: 1."
                        }
                    },
                    "required": ["address"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

impl JsonSchema for HashKey {
    fn schema_name() -> Cow<'static, str> {
        "HashKey".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "What a consistent-hash balancer hashes: exactly one of `header: NAME`, `cookie: NAME` or `client_ip: true`.",
            "type": "object",
            "properties": {
                "header": {"type": "string", "description": "A request header's value."},
                "cookie": {"type": "string", "description": "A cookie's value."},
                "client_ip": {"type": "boolean", "description": "The client's IP address."}
            },
            "additionalProperties": false,
            "oneOf": [
                {"required": ["header"]},
                {"required": ["cookie"]},
                {"required": ["client_ip"], "properties": {"client_ip": {"const": true}}}
            ]
        })
    }
}

impl JsonSchema for Balancer {
    fn schema_name() -> Cow<'static, str> {
        "Balancer".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let key = generator.subschema_for::<HashKey>();
        json_schema!({
            "description": "Load-balancing policy: `round_robin` (smooth weighted round robin), `least_request` (the less loaded of two endpoints picked at random), `random` (weighted random), or `{consistent_hash: {header: NAME}}` (also `cookie: NAME` or `client_ip: true`): a hash ring.",
            "anyOf": [
                {"enum": ["round_robin", "least_request", "random"]},
                {
                    "type": "object",
                    "properties": {"consistent_hash": key},
                    "required": ["consistent_hash"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

impl JsonSchema for CacheConfig {
    fn schema_name() -> Cow<'static, str> {
        "CacheConfig".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let size = generator.subschema_for::<Size>();
        json_schema!({
            "description": "The response cache's bounds.",
            "type": "object",
            "properties": {
                "max_size": {
                    "description": "The bytes of every plugin's entries together (bodies, headers, keys, and 256 bytes of bookkeeping each); more than 0. Default: 64MiB.",
                    "allOf": [size.clone()],
                    "default": "64MiB"
                },
                "max_entry_size": {
                    "description": "The largest entry stored, at most `max_size`; a larger response goes to the client without being stored. Default: 4MiB (or `max_size` when that is smaller).",
                    "allOf": [size],
                    "default": "4MiB"
                }
            },
            "additionalProperties": false
        })
    }
}

impl JsonSchema for Secret {
    fn schema_name() -> Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A secret: the value itself, `env:NAME` (an environment variable) or `file:PATH` (a file's content without one trailing newline, relative to the config file). Write numbers and booleans in quotes.",
            "type": "string",
            "minLength": 1
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn validator() -> jsonschema::Validator {
        jsonschema::draft202012::new(&config_schema()).expect("the config schema is a valid schema")
    }

    /// What the schema says about `yaml`: `Ok` or the first errors, with where they are.
    fn check(v: &jsonschema::Validator, yaml: &str) -> Result<(), String> {
        let value: serde_json::Value =
            serde_yaml_ng::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
        let errors: Vec<String> = v
            .iter_errors(&value)
            .take(5)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// Every `gateway.yaml` under `dir`, at any depth (build outputs skipped).
    fn configs_under(dir: &Path, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name();
            if path.is_dir() && name != "target" && name != "node_modules" {
                configs_under(&path, found);
            } else if name == "gateway.yaml" {
                found.push(path);
            }
        }
    }

    /// The committed example configs are valid configs, and the schema accepts them: the schema is
    /// not stricter than the gateway.
    #[test]
    fn the_example_configs_validate_against_the_schema() {
        let v = validator();
        let mut files = Vec::new();
        configs_under(&root().join("examples"), &mut files);
        assert!(
            files.iter().any(|f| f.ends_with("quickstart/gateway.yaml")),
            "{files:?}"
        );
        assert!(files.len() >= 5, "{files:?}");
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            super::super::Config::parse(file, &text)
                .unwrap_or_else(|e| panic!("the gateway refuses {}: {e}", file.display()));
            if let Err(e) = check(&v, &text) {
                panic!("the schema refuses {}:\n{e}", file.display());
            }
        }
    }

    /// The README's YAML blocks that are whole configs or top-level sections (each key a field of
    /// the config) validate against the schema (`listeners: []` added where a block has none).
    #[test]
    fn the_readme_config_blocks_validate_against_the_schema() {
        let v = validator();
        let schema = config_schema();
        let top: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
        let mut checked = 0;
        for (i, block) in readme.split("```yaml\n").skip(1).enumerate() {
            let block = &block[..block.find("```").expect("a closed block")];
            let Ok(serde_json::Value::Object(map)) =
                serde_yaml_ng::from_str::<serde_json::Value>(block)
            else {
                continue;
            };
            if map.is_empty() || !map.keys().all(|k| top.contains(&k.as_str())) {
                continue;
            }
            let text = if map.contains_key("listeners") {
                block.to_owned()
            } else {
                format!("listeners: []\n{block}")
            };
            if let Err(e) = check(&v, &text) {
                panic!("the schema refuses README block {}:\n{block}\n{e}", i + 1);
            }
            checked += 1;
        }
        assert!(checked >= 8, "only {checked} README blocks checked");
    }

    /// Configs the gateway refuses at parse time that the schema refuses too: a misspelt field, a
    /// wrong enum value, a unit the parsers do not know, two path matchers.
    #[test]
    fn configs_the_gateway_refuses_the_schema_refuses() {
        let v = validator();
        let base = "listeners: [{name: l, address: 127.0.0.1:0}]\n";
        let bad = [
            "listners: []\n",
            "server: {log_format: xml}\n",
            "server: {drain_timeout: 30}\n",
            "server: {drain_timeout: 5 seconds}\n",
            "server: {access_log: {enabeld: true}}\n",
            "upstreams: [{name: u, endpoints: [a:1], balancer: fastest}]\n",
            "upstreams: [{name: u, endpoints: [{address: a:1, wieght: 2}]}]\n",
            "upstreams: [{name: u, endpoints: [a:1], balancer: {consistent_hash: {header: h, cookie: c}}}]\n",
            "routes: [{name: r, match: {path: {prefix: /a, exact: /b}}, direct_response: {}}]\n",
            "routes: [{name: r, match: {path: {}}, direct_response: {}}]\n",
            "routes: [{name: r, upstream: u, retry: {on: [503, gateway_error]}}]\n",
            "routes: [{name: r, upstream: u, max_body_size: 1TiB}]\n",
            "routes: [{name: r, upstream: u, filters: [{plugin: p, failure: ignore}]}]\n",
            "plugins: [{name: p, path: p.wasm, instance_mode: pooled}]\n",
            "consumers: [{name: c, credentials: {key-auth: k1}}]\n",
            "kv_namespaces: {n: {backend: redis, redis: {url: 'http://x'}}}\n",
            "kv_namespaces: {n: {backend: redis, redis: {url: 'redis://x', pool_size: 0}}}\n",
        ];
        for extra in bad {
            let text = if extra.starts_with("listners") {
                extra.to_owned()
            } else {
                format!("{base}{extra}")
            };
            assert!(
                super::super::Config::parse(Path::new("bad.yaml"), &text).is_err(),
                "the gateway accepts {extra}"
            );
            assert!(check(&v, &text).is_err(), "the schema accepts {extra}");
        }
        // And the forms the hand-written readers take are accepted.
        let good = "upstreams: [{name: u, endpoints: [a:1, {address: 'b:2', weight: 3}], balancer: {consistent_hash: {client_ip: true}}, connect_timeout: 1m30s}]\nroutes: [{name: r, upstream: u, max_body_size: 16KiB, retry: {on: [connect_failure, 503], buffer_limit: 1024}, match: {path: {template: '/a/{id}'}}}]\nconsumers: [{name: c, credentials: {key-auth: {key: env:K}, basic-auth: [{username: u, password: p}]}}]\n";
        let text = format!("{base}{good}");
        super::super::Config::parse(Path::new("good.yaml"), &text).unwrap();
        check(&v, &text).unwrap();
    }

    /// Each `(plugin, config)` of a filter in `value` (a config, a fixture, a README block): maps
    /// with `plugin: NAME` and a `config`, at any depth; and a fixture's `plugin: {config}`.
    fn filter_configs(value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
        match value {
            serde_json::Value::Object(m) => {
                if let (Some(serde_json::Value::String(p)), Some(c)) =
                    (m.get("plugin"), m.get("config"))
                {
                    out.push((p.clone(), c.clone()));
                }
                m.values().for_each(|v| filter_configs(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| filter_configs(v, out)),
            _ => {}
        }
    }

    /// Every first-party plugin's schema file is listed in [`PLUGIN_SCHEMAS`] and is a valid draft
    /// 2020-12 schema; each plugin's fixture configs (`plugins/<name>/tests/*.test.yaml`) and the
    /// configs its README's YAML blocks give it validate against it.
    #[test]
    fn plugin_fixtures_and_readme_examples_validate_against_the_plugin_schemas() {
        let plugins = root().join("plugins");
        let mut with_schema = Vec::new();
        for e in std::fs::read_dir(&plugins).unwrap().flatten() {
            if e.path().join("config.schema.json").is_file() {
                with_schema.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        with_schema.sort();
        let listed: Vec<&str> = PLUGIN_SCHEMAS.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            with_schema, listed,
            "plugins/*/config.schema.json against PLUGIN_SCHEMAS"
        );
        let mut checked = 0;
        for (name, text) in PLUGIN_SCHEMAS {
            let schema: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
                "{name}"
            );
            let v = jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{name}: {e}"));
            let dir = plugins.join(name);
            let mut sources: Vec<(String, serde_json::Value)> = Vec::new();
            for e in std::fs::read_dir(dir.join("tests"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = e.path();
                if path.to_string_lossy().ends_with(".test.yaml") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let value: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
                    let config = value["plugin"].get("config").cloned();
                    sources.push((
                        path.display().to_string(),
                        config.unwrap_or(serde_json::Value::Null),
                    ));
                }
            }
            let readme = std::fs::read_to_string(dir.join("README.md")).unwrap_or_default();
            for (i, block) in readme.split("```yaml\n").skip(1).enumerate() {
                let block = &block[..block.find("```").expect("a closed block")];
                let Ok(value) = serde_yaml_ng::from_str::<serde_json::Value>(block) else {
                    continue;
                };
                let mut found = Vec::new();
                filter_configs(&value, &mut found);
                for (plugin, config) in found {
                    if plugin == *name {
                        sources.push((format!("{name}/README.md block {}", i + 1), config));
                    }
                }
            }
            for (source, config) in sources {
                // No config at all is the plugin's to judge (its defaults, or its error).
                if config.is_null() || config.is_string() {
                    continue;
                }
                let errors: Vec<String> = v
                    .iter_errors(&config)
                    .map(|e| format!("{e} at {}", e.instance_path()))
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{source}: {config}\n{}",
                    errors.join("\n")
                );
                checked += 1;
            }
        }
        assert!(checked >= 30, "only {checked} plugin configs checked");
    }

    /// Configs the plugins refuse (their unit tests' cases) are refused by their schemas, also as a
    /// filter's `config` in a gateway config; and a filter of a plugin without a schema, or with a
    /// config written as a string, is not checked.
    #[test]
    fn plugin_configs_the_plugins_refuse_the_schema_refuses() {
        let v = validator();
        let bad = [
            ("key-auth", r#"{"key_names": []}"#),
            ("key-auth", r#"{"colour": 1}"#),
            (
                "key-auth",
                r#"{"key_in_header": false, "key_in_query": false}"#,
            ),
            ("basic-auth", r#"{"realm": "a", "users": []}"#),
            ("basic-auth", r#"{"realm": "say \"hi\""}"#),
            ("acl", r#"{"hide_groups_header": true}"#),
            ("acl", r#"{"deny": ["a", "b", "groups:ops"]}"#),
            ("acl", r#"{"allow": ["a", " b"]}"#),
            ("ip-restriction", r#"{"allow": ["::1"], "status": 200}"#),
            ("ip-restriction", r#"{"allow": []}"#),
            ("ip-restriction", r#"{"allow": ["localhost"]}"#),
            (
                "cors",
                r#"{"allow_origins": ["*"], "allow_credentials": true}"#,
            ),
            ("cors", r#"{"allow_origins": ["a.example"]}"#),
            ("cors", r#"{"allow_methods": ["GET"]}"#),
            ("ext-auth", r#"{"path": "/verify"}"#),
            ("ext-auth", r#"{"upstream": "auth", "request_body": true}"#),
            ("ext-auth", r#"{"upstream": "auth", "timeout_ms": 0}"#),
            ("oauth2-introspection", r#"{"upstream": "idp"}"#),
            (
                "oauth2-introspection",
                r#"{"upstream": "idp", "path": "/i", "client_id": "gw"}"#,
            ),
            (
                "oauth2-introspection",
                r#"{"upstream": "idp", "path": "/i", "consumer_by": "email"}"#,
            ),
            ("jwt-auth", r#"{"consumer_credentials": false}"#),
            (
                "jwt-auth",
                r#"{"keys": [{"algorithm": "HS256", "public_key": "x"}]}"#,
            ),
            (
                "jwt-auth",
                r#"{"keys": [{"algorithm": "HS257", "secret": "x"}]}"#,
            ),
            ("jwt-auth", r#"{"jwks": {"path": "/k"}}"#),
            ("rate-limiting", r#"{}"#),
            (
                "rate-limiting",
                r#"{"limits": [{"per": "minute", "limit": 1}], "x": 1}"#,
            ),
            (
                "rate-limiting",
                r#"{"limits": [{"per": "week", "limit": 1}]}"#,
            ),
            (
                "rate-limiting",
                r#"{"limits": [{"per": "minute", "limit": 0}]}"#,
            ),
            (
                "rate-limiting",
                r#"{"limits": [{"per": "minute", "limit": 1000000001}]}"#,
            ),
            (
                "rate-limiting",
                r#"{"limits": [{"per": "minute", "limit": "10"}]}"#,
            ),
            (
                "rate-limiting",
                r#"{"limits": [{"per": "minute", "limit": 1, "burst": 5}]}"#,
            ),
            (
                "rate-limiting",
                r#"{"limits": [{"per": "minute", "limit": 1}], "by": ["ip", "header:a b"]}"#,
            ),
            (
                "rate-limiting",
                r#"{"limits": [{"per": "minute", "limit": 1}], "by": ["ip", "ip"]}"#,
            ),
            (
                "rate-limiting",
                r#"{"limits": [{"per": "minute", "limit": 1}], "on_store_error": true}"#,
            ),
            ("proxy-cache", r#"{"ttl": 0}"#),
            ("proxy-cache", r#"{"ttl": "soon"}"#),
            ("proxy-cache", r#"{"lock_timeout": 120}"#),
            ("proxy-cache", r#"{"statuses": [200, 700]}"#),
            ("proxy-cache", r#"{"methods": []}"#),
            ("proxy-cache", r#"{"cache_key": {"query": true}}"#),
            ("proxy-cache", r#"{"cache_key": {"headers": ["*"]}}"#),
            ("proxy-cache", r#"{"colour": 1}"#),
            ("request-transformer", r#"{}"#),
            ("request-transformer", r#"{"add": {}}"#),
            ("request-transformer", r#"{"http_method": "get"}"#),
            ("request-transformer", r#"{"methods": []}"#),
            ("request-transformer", r#"{"add": {"uri": "/x"}}"#),
            ("request-transformer", r#"{"replace": {"uri": "/a?b=1"}}"#),
            (
                "request-transformer",
                r#"{"add": {"querystring": {"a": {}}}}"#,
            ),
            ("request-transformer", r#"{"add": {"body": {"/a~3": 1}}}"#),
            (
                "request-transformer",
                r#"{"remove": {"headers": ["Content-Length"]}}"#,
            ),
            ("response-transformer", r#"{"remove": {"json": []}}"#),
            ("response-transformer", r#"{"status": 99}"#),
            ("response-transformer", r#"{"status": "201"}"#),
            ("response-transformer", r#"{"add": {"body": []}}"#),
            ("response-transformer", r#"{"add": {"headers": ["x-a"]}}"#),
            (
                "response-transformer",
                r#"{"add": {"json": {"/n": 1}, "json_types": ["number"]}}"#,
            ),
            ("json-xml", r#"{"colour": 1}"#),
            ("json-xml", r#"{"request": "xml"}"#),
            ("json-xml", r#"{"root": "a b"}"#),
            ("json-xml", r#"{"array_paths": ["/a", "/a//b"]}"#),
            ("json-xml", r#"{"attribute_prefix": "a"}"#),
            ("json-xml", r#"{"text_key": "@t"}"#),
            ("json-xml", r#"{"infer_types": "yes"}"#),
            (
                "json-xml",
                r#"{"soap": {"version": "2", "operation": "A"}}"#,
            ),
            (
                "json-xml",
                r#"{"soap": {"version": "1.1", "operation": "A", "prefix": "u"}}"#,
            ),
            (
                "json-xml",
                r#"{"soap": {"version": "1.1", "operation": "A"}, "request": "xml_to_json"}"#,
            ),
            (
                "json-xml",
                r#"{"soap": {"version": "1.1", "operation": "A"}, "root": "r"}"#,
            ),
            ("api-composition", r#"{}"#),
            ("api-composition", r#"{"calls": []}"#),
            ("api-composition", r#"{"calls": [{"upstream": "u"}]}"#),
            (
                "api-composition",
                r#"{"calls": [{"name": "a b", "upstream": "u"}]}"#,
            ),
            (
                "api-composition",
                r#"{"calls": [{"name": "errors", "upstream": "u"}]}"#,
            ),
            (
                "api-composition",
                r#"{"calls": [{"name": "a", "upstream": "u"}], "merge": "deep"}"#,
            ),
            (
                "api-composition",
                r#"{"calls": [{"name": "a", "upstream": "u", "uri": "/"}]}"#,
            ),
            (
                "api-composition",
                r#"{"calls": [{"name": "a", "upstream": "u", "path": "users"}]}"#,
            ),
            (
                "api-composition",
                r#"{"calls": [{"name": "a", "upstream": "u", "headers": {"Host": "a"}}]}"#,
            ),
            (
                "api-composition",
                r#"{"calls": [{"name": "a", "upstream": "u", "body": {"a": 1}}]}"#,
            ),
            (
                "api-composition",
                r#"{"calls": [{"name": "a", "upstream": "u", "timeout": 0}]}"#,
            ),
            ("request-validation", r#"{}"#),
            ("request-validation", r#"{"body_schema": 5}"#),
            ("request-validation", r#"{"body_schema": {}, "draft": "8"}"#),
            (
                "request-validation",
                r#"{"body_schema": {}, "rejected_code": 200}"#,
            ),
            ("request-validation", r#"{"body_schema": {}, "schema": {}}"#),
            (
                "request-validation",
                r#"{"body_schema": {}, "unknown_operation": "allow"}"#,
            ),
            (
                "request-validation",
                r#"{"openapi": {"openapi": "3.0.3", "paths": {}}, "body_schema": {}}"#,
            ),
            (
                "request-validation",
                r#"{"openapi": {"openapi": "2.0", "paths": {}}}"#,
            ),
            (
                "request-validation",
                r#"{"openapi": {"openapi": "3.0.3", "paths": {}}, "base_path": "v1"}"#,
            ),
        ];
        let base = "listeners: [{name: l, address: 127.0.0.1:0}]\nroutes: [{name: r, direct_response: {}, filters: [{plugin: PLUGIN, config: CONFIG}]}]\n";
        for (plugin, config) in bad {
            let text = base.replace("PLUGIN", plugin).replace("CONFIG", config);
            assert!(
                check(&v, &text).is_err(),
                "the schema accepts {plugin} {config}"
            );
        }
        for (plugin, config) in [
            (
                "key-auth",
                r#"{"key_names": ["x-api-key"], "key_in_query": false}"#,
            ),
            (
                "jwt-auth",
                r#"{"keys": [{"algorithm": "HS256", "secret": "0123456789abcdef0123456789abcdef"}]}"#,
            ),
            (
                "rate-limiting",
                r#"{"limits": [{"per": "second", "limit": 5, "algorithm": "token_bucket", "burst": 20}], "by": ["consumer", "header:X-Tenant"]}"#,
            ),
            (
                "request-transformer",
                r#"{"rename": {"body": ["/a:/b"]}, "append": {"headers": {"x-tag": ["a", "b"]}}}"#,
            ),
            ("rate-limiting-like", r#"{"anything": 1}"#),
            ("key-auth", r#""{\"colour\": 1}""#),
        ] {
            let text = base.replace("PLUGIN", plugin).replace("CONFIG", config);
            check(&v, &text).unwrap_or_else(|e| panic!("{plugin} {config}: {e}"));
        }
    }

    /// `deny_unknown_fields` types are closed objects in the schema.
    #[test]
    fn closed_types_refuse_unknown_fields() {
        let schema = config_schema();
        assert_eq!(schema["additionalProperties"], false);
        for def in [
            "Listener",
            "Limits",
            "Route",
            "FilterRef",
            "Plugin",
            "Upstream",
            "Server",
        ] {
            assert_eq!(schema["$defs"][def]["additionalProperties"], false, "{def}");
        }
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
    }

    /// The committed `docs/config.schema.json` is what the config types generate.
    #[test]
    fn the_committed_schema_is_current() {
        let committed = include_str!("../../../docs/config.schema.json");
        let generated = config_schema_text();
        assert!(
            committed == generated,
            "docs/config.schema.json is not what the config types generate; regenerate it from the \
             repository's root with:\n\n    {REGENERATE}\n"
        );
    }
}
