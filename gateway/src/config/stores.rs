//! `kv_namespaces:`: where each key-value namespace that plugins are granted
//! (`capabilities.kv_namespace`) keeps its data. A namespace not listed is `local`.
//!
//! ```yaml
//! kv_namespaces:
//!   limits:
//!     backend: redis
//!     redis:
//!       url: redis://127.0.0.1:6379/0     # rediss:// for TLS
//!       password: env:REDIS_PASSWORD       # or file:PATH, or inline
//!       command_timeout: 250ms
//! ```

use super::consumers::Secret;
use super::Dur;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// One namespace's settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, try_from = "RawNamespace")]
pub struct KvNamespace {
    /// Where the data lives.
    pub backend: KvBackend,
    /// The server, for `backend: redis`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSettings>,
}

/// Where a namespace's data lives.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KvBackend {
    /// In this process's memory (the default).
    #[default]
    Local,
    /// In a Redis server, shared by every gateway process configured with it.
    Redis,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawNamespace {
    #[serde(default)]
    backend: KvBackend,
    #[serde(default)]
    redis: Option<RedisSettings>,
}

impl TryFrom<RawNamespace> for KvNamespace {
    type Error = String;

    fn try_from(r: RawNamespace) -> Result<Self, String> {
        match (r.backend, &r.redis) {
            (KvBackend::Redis, None) => {
                Err("`backend: redis` needs a `redis:` section with at least `url`".into())
            }
            (KvBackend::Local, Some(_)) => {
                Err("a `redis:` section needs `backend: redis` (the default is local)".into())
            }
            _ => Ok(KvNamespace {
                backend: r.backend,
                redis: r.redis,
            }),
        }
    }
}

/// A Redis server and how to talk to it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port[/db]`, or `rediss://` for TLS. A password can be written here too
    /// (`redis://:pw@host`), but `password` keeps it out of the URL and can come from `env:`/`file:`.
    #[serde(deserialize_with = "redis_url")]
    #[schemars(regex(pattern = r"^rediss?://[^#]*$"))]
    pub url: String,
    /// ACL user name. Default: none (the `default` user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password: inline, `env:NAME` or `file:PATH` (read at load and on every reload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Database number (overrides the URL's). Default: the URL's, else 0.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "database"
    )]
    #[schemars(range(min = 0))]
    pub database: Option<i64>,
    /// CA bundle (PEM) to verify a `rediss://` server with. Default: the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Connections to the server, each multiplexing commands. Default: 2.
    #[serde(default = "default_pool_size", deserialize_with = "pool_size")]
    #[schemars(range(min = 1, max = 64))]
    pub pool_size: usize,
    /// Longest wait for a connection (TCP and TLS handshake, AUTH, SELECT). Default: 1s.
    #[serde(default = "default_connect_timeout", deserialize_with = "timeout")]
    pub connect_timeout: Dur,
    /// Longest wait for one command's answer, reconnecting included; past it the plugin gets
    /// `unavailable`. Default: 250ms.
    #[serde(default = "default_command_timeout", deserialize_with = "timeout")]
    pub command_timeout: Dur,
    /// Prefix of every key the gateway writes, so several gateways (or other users) can share a
    /// server. Default: `gw:`.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
}

fn default_pool_size() -> usize {
    2
}

fn default_connect_timeout() -> Dur {
    Dur(Duration::from_secs(1))
}

fn default_command_timeout() -> Dur {
    Dur(Duration::from_millis(250))
}

fn default_prefix() -> String {
    "gw:".into()
}

fn redis_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let url = String::deserialize(d)?;
    let ok = url.starts_with("redis://") || url.starts_with("rediss://");
    if !ok {
        return Err(serde::de::Error::custom(format!(
            "`{}` is not a redis:// or rediss:// URL",
            super::redact::shown_url(&url)
        )));
    }
    // The client reads `#insecure` as "do not verify the server's certificate".
    if url.contains('#') {
        return Err(serde::de::Error::custom(
            "a Redis URL with a fragment (`#insecure` turns certificate checks off): remove it; `ca` names the CA to trust",
        ));
    }
    Ok(url)
}

fn database<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let n = i64::deserialize(d)?;
    if n < 0 {
        return Err(serde::de::Error::custom(format!(
            "database {n}: a number from 0"
        )));
    }
    Ok(Some(n))
}

/// A connect or command timeout: from 1 ms to 60 s (0 would fail every call; an hour would hold
/// requests that long).
fn timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
    let t = Dur::deserialize(d)?;
    if t.0 < Duration::from_millis(1) || t.0 > Duration::from_secs(60) {
        return Err(serde::de::Error::custom(format!(
            "{:?}: between 1ms and 60s",
            t.0
        )));
    }
    Ok(t)
}

fn pool_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if !(1..=64).contains(&n) {
        return Err(serde::de::Error::custom(format!(
            "{n} connections: between 1 and 64"
        )));
    }
    Ok(n)
}

/// A namespace name as `capabilities.kv_namespace` and `kv_namespaces:` write it: letters, digits,
/// `-`, `_`, `.`; 1 to 64 bytes (it becomes part of Redis keys).
pub fn valid_namespace(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a namespace name: 1 to 64 letters, digits, `-`, `_` or `.`"
        ))
    }
}

/// Checks what serde cannot: namespace names, and that each password can be read (`base`: the config
/// file's folder). An error is the field path and what is wrong.
pub fn check(
    namespaces: &std::collections::BTreeMap<String, KvNamespace>,
    base: &std::path::Path,
) -> Result<(), (String, String)> {
    for (name, ns) in namespaces {
        valid_namespace(name).map_err(|m| (format!("kv_namespaces.{name}"), m))?;
        if let Some(p) = ns.redis.as_ref().and_then(|r| r.password.as_ref()) {
            p.resolve(base)
                .map_err(|m| (format!("kv_namespaces.{name}.redis.password"), m))?;
        }
    }
    Ok(())
}

/// The files the Redis passwords are read from (`file:PATH`, as written), watched like the config.
pub fn secret_files(
    namespaces: &std::collections::BTreeMap<String, KvNamespace>,
) -> impl Iterator<Item = &str> {
    namespaces
        .values()
        .filter_map(|n| n.redis.as_ref()?.password.as_ref()?.reference())
        .filter_map(|r| r.strip_prefix("file:"))
}
