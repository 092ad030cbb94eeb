//! Function backends (`functions:`): `wasi:http/proxy` components that answer a route's requests
//! themselves (`function: <name>` on the route), with their source, environment, grants and limits.

use super::{Dur, InstanceMode, Size};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The environment variable a function's `config` is given in (a string as it is, anything else as
/// JSON), beside its `env`.
pub const CONFIG_ENV: &str = "GATEWAY_FUNCTION_CONFIG";

/// A function: one `wasi:http/proxy` component (anything that exports `wasi:http/incoming-handler`:
/// Rust with the `wasi` crate or `wstd`, componentize-js, componentize-py, ...), compiled once and
/// pre-instantiated, that serves the requests of the routes naming it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Function {
    /// Unique name that routes refer to (`function: <name>`).
    pub name: String,
    /// Path of the component's `.wasm` file (relative paths are relative to the config file). Write
    /// exactly one of `path` and `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// An `https://` URL to fetch the `.wasm` file from (once: it is kept in the cache directory by
    /// its sha256). Needs `sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The sha256 of the `.wasm` file, in hex: required with `url`, checked when given with `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// CA bundle (PEM) to verify the server of `url` with. Default: the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Environment variables the function sees (`wasi:cli/environment`). Default: none (the
    /// gateway's own environment is never passed on).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The function's config, given to it as the environment variable `GATEWAY_FUNCTION_CONFIG`: a
    /// string as it is, anything else as JSON (as a filter gets its route config). Default: none
    /// (the variable is not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// Upstreams the function may send HTTP requests to: a request to `http://<name>/...` (or
    /// `https://`) goes to the upstream `<name>` through the gateway's client (its balancer, TLS,
    /// connect timeout and passive health). Any other authority is refused with
    /// `HTTP-request-denied`. Each is a name (one try per request), or `{upstream: <name>, retry:
    /// {...}, timeout: ...}` to retry the function's requests to it as a route's `retry:` does.
    /// Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<Grant>,
    /// Host directories the function may read, by the path it sees them at: `{guest: host}`, host
    /// paths relative to the config file. Read-only. Default: none (no filesystem at all).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dirs: BTreeMap<String, PathBuf>,
    /// Sandbox and traffic limits.
    #[serde(default)]
    pub limits: FunctionLimits,
    /// `fresh`: a new instance per request (nothing in the guest's memory survives a request).
    /// `reuse`: an instance serves one request after another (never two at once), for runtimes whose
    /// start is expensive (JavaScript, Python): its memory, globals, environment and open files
    /// carry over from one request to the next; request and response handles never do. An instance
    /// that failed is thrown away. Default: `fresh`.
    #[serde(default)]
    pub instance_mode: InstanceMode,
}

/// An upstream granted to a function: its name, or the name with how the function's requests to it
/// are retried and timed out.
#[derive(Clone, Debug, Serialize, PartialEq, JsonSchema)]
#[serde(untagged)]
pub enum Grant {
    /// The upstream's name: each request is tried once, its response head awaited up to the
    /// function's `limits.timeout`, or the guest's `first-byte-timeout` when that is shorter.
    Name(String),
    /// The upstream with a retry policy and a timeout.
    Upstream(GrantOptions),
}

/// How a function's requests to a granted upstream are tried.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantOptions {
    /// The upstream's name.
    pub upstream: String,
    /// Retries of a request that failed, as a route's `retry:` (same fields and defaults:
    /// `attempts`, `on`, `per_try_timeout`, `allow_non_idempotent`, backoff, budget,
    /// `buffer_limit`). A request is sent again only if its body can be: none, or a
    /// `content-length` of at most `buffer_limit` (the body is then collected before the first
    /// try); a body of unknown or larger length streams to the upstream once and is not retried.
    /// The function sees the last try's answer, or its error. Default: none (one try).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<super::Retry>,
    /// Time to the response head, all tries and backoffs included (a guest's own
    /// `first-byte-timeout`, when shorter, wins). Default: the function's `limits.timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
}

impl Grant {
    /// The upstream's name.
    pub fn upstream(&self) -> &str {
        match self {
            Grant::Name(n) => n,
            Grant::Upstream(o) => &o.upstream,
        }
    }
}

impl<'de> Deserialize<'de> for Grant {
    // By hand rather than `untagged`: a mistake inside the map is reported at its field.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Grant;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an upstream's name, or {upstream: NAME, retry: {...}, timeout: ...}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Grant, E> {
                Ok(Grant::Name(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Grant, A::Error> {
                GrantOptions::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Grant::Upstream)
            }
        }
        d.deserialize_any(V)
    }
}

/// A function's limits. A request over a limit before the response head is answered 503 (memory,
/// CPU, concurrency) or 504 (timeout); after the head its response is aborted.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FunctionLimits {
    /// Linear memory per instance. Default: 64MiB.
    pub memory: Size,
    /// CPU time one request may use in the function: the CPU time of the thread while the guest's
    /// call runs (its code and the host calls it makes), looked at on each epoch tick (5 ms), so the
    /// guest stops within a tick past it. Time spent waiting for the client, an upstream, a timer
    /// or a full response stream does not count, nor time the thread is preempted. Default: 1s.
    pub cpu_per_request: Dur,
    /// Requests the function serves at once (each on its own instance). At least 1. Default: 100.
    #[serde(deserialize_with = "concurrency")]
    #[schemars(range(min = 1))]
    pub concurrency: u32,
    /// How long a request over `concurrency` waits for a slot before it is answered 503. Default: 1s.
    pub queue_timeout: Dur,
    /// Wall-clock time of the whole request in the function, from its start to the end of its
    /// response body. Default: 30s.
    pub timeout: Dur,
    /// `reuse` mode: warm instances kept between requests, at most (each holds a slot of the
    /// instance pool, `server.wasm_pool.max_instances`, and its memory). An instance that finishes a
    /// request when this many are already warm is dropped. 0 keeps none (each request then gets a new
    /// instance, as with `fresh`). Default: 4.
    pub max_idle: u32,
    /// `reuse` mode: a warm instance unused for this long is dropped (checked when an instance is
    /// taken or put back). Default: 60s.
    pub idle_timeout: Dur,
}

fn concurrency<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom(
            "0 requests at once: a function serves at least 1",
        ));
    }
    Ok(n)
}

impl Default for FunctionLimits {
    fn default() -> Self {
        FunctionLimits {
            memory: Size(64 << 20),
            cpu_per_request: Dur(Duration::from_secs(1)),
            concurrency: 100,
            queue_timeout: Dur(Duration::from_secs(1)),
            timeout: Dur(Duration::from_secs(30)),
            max_idle: 4,
            idle_timeout: Dur(Duration::from_secs(60)),
        }
    }
}

impl Function {
    /// The function's source as a plugin entry, to read or fetch it as plugins are.
    pub fn source(&self) -> super::Plugin {
        super::Plugin {
            name: self.name.clone(),
            path: self.path.clone(),
            url: self.url.clone(),
            sha256: self.sha256.clone(),
            ca: self.ca.clone(),
            abi: None,
            limits: super::PluginLimits {
                memory: self.limits.memory,
                cpu_per_call: self.limits.cpu_per_request,
                instances: self.limits.concurrency,
            },
            vm_config: None,
            capabilities: None,
            instance_mode: Some(self.instance_mode),
            service: None,
            skip: Vec::new(),
            vms: None,
        }
    }
}
