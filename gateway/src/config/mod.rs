//! What the user writes: the YAML config as plain serde structs, and loading it with errors that name
//! the file, line, column and field. Turning it into something that serves is `runtime`'s job.

pub mod access_log;
pub mod cache;
pub mod consumers;
pub mod functions;
pub mod grpc;
mod locate;
pub mod redact;
pub mod schema;
mod source;
pub mod stores;
pub mod tracing;
pub mod traffic;
mod units;
pub mod upgrades;

pub use source::Source;
pub use units::{parse_duration, parse_size, Dur, Size};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole config file.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the gateway accepts traffic.
    pub listeners: Vec<Listener>,
    /// The admin API (health, metrics, config). Default: 127.0.0.1:9901.
    #[serde(default)]
    pub admin: Admin,
    /// Named upstream clusters that routes forward to.
    #[serde(default)]
    pub upstreams: Vec<Upstream>,
    /// Routes, matched most specific first, then in the order written.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Wasm plugins that routes can use as filters.
    #[serde(default)]
    pub plugins: Vec<Plugin>,
    /// Function backends: `wasi:http` components that routes send requests to (`function: <name>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<functions::Function>,
    /// The API users that authentication plugins identify requests as (`key-auth`, `basic-auth`,
    /// `jwt-auth`, ...), with their groups and credentials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<consumers::Consumer>,
    /// Where key-value namespaces keep their data (`local` or `redis`), by namespace name. A
    /// namespace not listed here is local.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kv_namespaces: BTreeMap<String, stores::KvNamespace>,
    /// The response cache that plugins share (`max_size`, `max_entry_size`). Default: 64MiB, 4MiB.
    #[serde(default, skip_serializing_if = "cache::CacheConfig::is_default")]
    pub cache: cache::CacheConfig,
    /// Process-wide settings.
    #[serde(default)]
    pub server: Server,
}

/// A Wasm plugin: one module or component, loaded once and configured per route.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plugin {
    /// Unique name that routes refer to.
    pub name: String,
    /// Path of the `.wasm` file (relative paths are relative to the config file). Write exactly one of
    /// `path` and `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// An `https://` URL to fetch the `.wasm` file from (once: it is kept in the cache directory by its
    /// sha256 and not fetched again). Needs `sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The sha256 of the `.wasm` file, in hex: required with `url`, checked when given with `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// CA bundle (PEM) to verify the server of `url` with. Default: the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Which ABI the plugin speaks. Default: detected from the file (a core module is Proxy-Wasm, a
    /// component is the gateway's WIT world).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abi: Option<PluginAbi>,
    /// Sandbox limits.
    #[serde(default)]
    pub limits: PluginLimits,
    /// Proxy-Wasm VM configuration (passed to `on_vm_start`). Default: empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_config: Option<serde_json::Value>,
    /// What the plugin may use beyond logs, metrics, clock and randomness. Default (none given): a
    /// component gets nothing (no upstreams, no key-value store); a Proxy-Wasm plugin may send
    /// callouts to any upstream, as filters written for Envoy expect. Given, it is enforced for both
    /// ABIs (a Proxy-Wasm callout to an upstream not listed is refused with `BadArgument`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<PluginCapabilities>,
    /// How a component plugin's instances serve requests. Default: `fresh` (`reuse` for the
    /// built-in plugins, which reset what a request sets when the next one starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_mode: Option<InstanceMode>,
    /// Runs a Proxy-Wasm plugin as a background service with no route, as Envoy's Wasm service: one
    /// root context starts with the gateway (and with each reload that changes the plugin) and gets
    /// `on_vm_start`, `on_configure` with `service.config`, ticks and queue callbacks; it may send
    /// callouts and write shared data. Default: none (the plugin runs only as routes' filters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSettings>,
    /// Proxy-Wasm callbacks the plugin does not use: the host never calls them (the SDKs export
    /// every callback, so the host cannot tell by itself). A skipped body callback also means the
    /// body passes this filter without being buffered or copied for it; a skipped `on_done` counts
    /// as one that returned true. When every per-request callback is skipped, a request gets no
    /// context in the plugin at all (no `on_context_create`, no `on_delete`). Proxy-Wasm only.
    /// Default: none skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<ProxyWasmCallback>,
    /// How many VMs a Proxy-Wasm plugin runs in, each an instance with its own memory (the
    /// memory limit is per VM). Every route's root context is made in each VM, so `on_vm_start`,
    /// `on_configure` and ticks run once per VM, and what a plugin keeps in its own memory is per
    /// VM, as with Envoy's VM per worker thread; a request's context lives in one VM (its worker
    /// thread's, or a free one). A service runs in the first VM only. VMs after the first start
    /// when first used. Give `1` for a plugin that counts on one memory for every request.
    /// Each VM takes a slot of the instance pool (`server.wasm_pool`); a VM that cannot start leaves
    /// its requests to the first. Proxy-Wasm only. Default: one per worker thread, at most 16.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "vm_count"
    )]
    #[schemars(range(min = 1, max = 64))]
    pub vms: Option<u16>,
}

fn vm_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let n = Option::<u16>::deserialize(d)?;
    if let Some(n) = n.filter(|n| !(1..=64).contains(n)) {
        return Err(serde::de::Error::custom(format!(
            "{n} VMs: between 1 and 64"
        )));
    }
    Ok(n)
}

/// A per-request Proxy-Wasm callback that a plugin may be told to skip (the ABI's names, with or
/// without the `proxy_` prefix).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProxyWasmCallback {
    /// `proxy_on_request_headers`.
    #[serde(alias = "proxy_on_request_headers")]
    OnRequestHeaders,
    /// `proxy_on_request_body`: the request body is not shown to the plugin.
    #[serde(alias = "proxy_on_request_body")]
    OnRequestBody,
    /// `proxy_on_request_trailers`.
    #[serde(alias = "proxy_on_request_trailers")]
    OnRequestTrailers,
    /// `proxy_on_response_headers`.
    #[serde(alias = "proxy_on_response_headers")]
    OnResponseHeaders,
    /// `proxy_on_response_body`: the response body is not shown to the plugin.
    #[serde(alias = "proxy_on_response_body")]
    OnResponseBody,
    /// `proxy_on_response_trailers`.
    #[serde(alias = "proxy_on_response_trailers")]
    OnResponseTrailers,
    /// `proxy_on_done` (taken as having returned true: the context ends at once).
    #[serde(alias = "proxy_on_done")]
    OnDone,
    /// `proxy_on_log`.
    #[serde(alias = "proxy_on_log")]
    OnLog,
}

/// A plugin's background service.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceSettings {
    /// The service's config, given to `on_configure`: a string is passed as it is, anything else as
    /// JSON. Default: empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
}

/// Capabilities granted to a plugin. A call outside them returns a typed error to the plugin
/// (`denied` in the WIT world, `BadArgument` in Proxy-Wasm) and is logged.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PluginCapabilities {
    /// Upstreams the plugin may send HTTP requests to, by name. Default: none.
    pub upstreams: Vec<String>,
    /// The key-value store namespace a component reads and writes; components that name the same
    /// namespace share data. Default: none (the store is denied). Proxy-Wasm shared data is not
    /// affected (it is the VM's, as in Envoy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_namespace: Option<String>,
    /// The plugin may check consumers' credentials and authenticate requests as consumers (WIT
    /// `consumers`: find-by-key, check-secret, find-credential, verify-hmac, authenticate; Proxy-Wasm:
    /// setting `consumer.name`). Reading whom the request is authenticated as needs no grant. The
    /// built-in plugins always have it. Default: false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub consumers: bool,
}

/// How a component plugin's instances serve requests.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceMode {
    /// A new instance for every request (from a pre-linked component and the pooling allocator):
    /// nothing in the guest's memory survives a request.
    #[default]
    Fresh,
    /// Warm instances are kept and reused by one request after another (never two at once), for
    /// guests whose start is expensive. Request handles still only live for one call.
    Reuse,
}

/// Plugin ABI.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PluginAbi {
    /// Proxy-Wasm ABI 0.2.1 / 0.2.0 (a core module).
    ProxyWasm,
    /// The gateway's WIT world (a component).
    Component,
}

/// Sandbox limits of a plugin.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// Linear memory per instance. Default: 64MiB.
    pub memory: Size,
    /// CPU time of one call into the plugin (enforced by epoch interruption). Default: 100ms.
    pub cpu_per_call: Dur,
    /// Live instances of the plugin across all routes. Default: 256.
    pub instances: u32,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory: Size(64 << 20),
            cpu_per_call: Dur(Duration::from_millis(100)),
            instances: 256,
        }
    }
}

/// One filter stage on a route.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterRef {
    /// The plugin's name.
    pub plugin: String,
    /// This route's config for the plugin: a string is passed as it is, anything else as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// What a failure of this filter does to the request. Default: closed.
    #[serde(default)]
    pub failure: FailurePolicy,
}

/// Failure policy of a filter stage.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// The request fails (500 for a trap or ABI misuse, 503 when the plugin is unavailable).
    #[default]
    Closed,
    /// The filter is skipped for the rest of the request, logged and counted.
    Open,
}

/// Process-wide settings.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// How long in-flight requests may run after SIGTERM/SIGINT. Default: 30s.
    pub drain_timeout: Dur,
    /// The access log: one line per request.
    pub access_log: AccessLog,
    /// Log line format, for the access log and every other log. Default: text.
    pub log_format: LogFormat,
    /// The Wasm engine's instance pool, shared by all plugins. Read at start; a reload does not
    /// change it.
    pub wasm_pool: WasmPool,
    /// Where compiled plugin code and plugins fetched from URLs are kept (relative paths are relative
    /// to the config file). Read at start; a reload does not change it. Default:
    /// `$GATEWAY_CACHE_DIR`, else `$XDG_CACHE_HOME/gateway/wasm`, else `$HOME/.cache/gateway/wasm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// OpenTelemetry tracing of requests, exported over OTLP. Default: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracing: Option<tracing::Tracing>,
}

/// The Wasm engine's pooling allocator. The engine reserves address space (not memory) for
/// `max_instances` slots of `max_instance_memory` each, so lower figures suit tools that cannot map
/// large reservations (valgrind) or hosts with a limited address space.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WasmPool {
    /// Plugin instances alive at once across all plugins. Default: 512.
    pub max_instances: u32,
    /// Linear memory one instance may use at most; a plugin's `limits.memory` cannot exceed it.
    /// Default: 1GiB.
    pub max_instance_memory: Size,
}

impl Default for WasmPool {
    fn default() -> Self {
        WasmPool {
            max_instances: 512,
            max_instance_memory: Size(1 << 30),
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            drain_timeout: Dur(Duration::from_secs(30)),
            access_log: AccessLog::default(),
            log_format: LogFormat::Text,
            wasm_pool: WasmPool::default(),
            cache_dir: None,
            tracing: None,
        }
    }
}

/// Access log settings.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLog {
    /// Default: true.
    pub enabled: bool,
    /// The fields of each line, in this order: `route`, `upstream`, `endpoint` (the address of the
    /// try that answered), `client`, `peer`, `consumer`, `request_id`, `trace_id`, `span_id`,
    /// `listener`, `method`, `host`, `path`, `query`, `protocol`, `status`, `bytes`, `complete`,
    /// `request_filters_ms`, `upstream_ms`, `response_filters_ms`, `duration_ms`, and
    /// `request_header.NAME` / `response_header.NAME`. A field the request has no value for is
    /// left out of its line. A field is listed at most once. Default: route, upstream, endpoint,
    /// client, consumer, request_id, trace_id, span_id, method, path, status, bytes, complete and
    /// the four timings.
    #[serde(deserialize_with = "access_log::unique_fields")]
    #[schemars(extend("default" = access_log::DEFAULT_FIELDS, "uniqueItems" = true))]
    pub fields: Vec<access_log::Field>,
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog {
            enabled: true,
            fields: access_log::default_fields(),
        }
    }
}

/// One listening socket.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Unique name, used by routes that are restricted to some listeners.
    pub name: String,
    /// `host:port` to bind; port 0 picks a free port.
    pub address: String,
    /// Connection and request limits.
    #[serde(default)]
    pub limits: Limits,
    /// TLS termination. Default: none (cleartext HTTP/1.1 and HTTP/2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// How request paths are made canonical before routing (see `crate::canonical`).
    #[serde(default)]
    pub paths: PathPolicy,
    /// Take a client's `x-request-id` as the request's id (for a listener behind another proxy that
    /// sets it). Default: false, every request gets an id of the gateway's.
    #[serde(default)]
    pub trust_request_id: bool,
    /// Addresses and CIDRs of the proxies in front of this listener (`10.0.0.0/8`, `::1`). A request
    /// from one of them has its client taken from `client_header`: the rightmost address that is
    /// not a trusted proxy. That client is what filters see as the client address, what
    /// `client_ip` balancing hashes and what the access log shows. Default: none (the client is the
    /// peer; forwarding headers are never believed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    /// The header the trusted proxies write the client in: `x-forwarded-for` (default) or
    /// `forwarded` (RFC 7239 `for=`). Only that one is read, never the other.
    #[serde(default)]
    pub client_header: ClientHeader,
}

/// An address (`10.0.0.1`, `::1`) or a network (`10.0.0.0/8`) of a `trusted_proxies` list.
/// An IPv4-mapped network (`::ffff:10.0.0.0/104`) is its IPv4 network, as addresses are compared
/// as IPv4.
pub fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    let net = match text.parse::<ipnet::IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => text
            .parse::<std::net::IpAddr>()
            .map(ipnet::IpNet::from)
            .map_err(|_| {
                format!("`{text}` is not an IP address or a CIDR (`10.0.0.0/8`, `::1`)")
            })?,
    };
    if let ipnet::IpNet::V6(v6) = net {
        if let (Some(v4), true) = (v6.addr().to_ipv4_mapped(), v6.prefix_len() >= 96) {
            let v4 = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).expect("a prefix of at most 32");
            return Ok(ipnet::IpNet::V4(v4));
        }
    }
    Ok(net)
}

/// Which forwarding header names the client behind trusted proxies.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ClientHeader {
    /// `X-Forwarded-For: client, proxy1, ...`
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1`
    Forwarded,
}

/// How a listener makes request paths canonical. Dot segments, repeated slashes and percent-encoded
/// unreserved characters are always normalized; this chooses what encoded slashes do.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PathPolicy {
    /// What `%2F`, `%5C` and `\` in a path do. Default: `reject` (400).
    pub escaped_slashes: EscapedSlashes,
    /// What `;` parameters in a path do. Default: `keep` (part of their segment).
    pub parameters: PathParameters,
}

/// What `;` parameters in a path (`/api;x/admin`, `/admin;jsessionid=1`) do.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PathParameters {
    /// They are part of their segment, routed and forwarded as they came. The default.
    #[default]
    Keep,
    /// The request is refused with 400: for backends that strip parameters from every segment
    /// (Tomcat, Jetty, Spring), where `/api;x/admin` means `/api/admin`.
    Reject,
}

/// What encoded slashes (`%2F`), encoded backslashes (`%5C`) and backslashes in a path do.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EscapedSlashes {
    /// The request is refused with 400. The default.
    #[default]
    Reject,
    /// They are data, not separators: kept as `%2F` and `%5C` (a backslash is sent as `%5C`), never
    /// matched by a template parameter.
    Keep,
    /// They become `/` before dot segments are resolved and slashes merged.
    Decode,
}

/// TLS on a listener.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// Certificates, chosen by SNI against each certificate's DNS names; the first is the default.
    pub certificates: Vec<CertKey>,
    /// Client-certificate authentication. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
}

/// A PEM certificate chain and its PEM private key (paths relative to the config file).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertKey {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// Client certificates on a listener.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    /// CA bundle that client certificates must chain to.
    pub ca: PathBuf,
    /// Refuse clients without a certificate. Default: true.
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// Limits applied on a listener. Every default is chosen to be safe for an internet-facing gateway.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Bytes in a request head (request line and headers); over it: 431. Default: 32KiB.
    pub max_header_bytes: Size,
    /// Header fields in a request; over it: 431. Default: 100.
    pub max_headers: usize,
    /// Bytes in the request target; over it: 414. Default: 8KiB.
    pub max_uri_bytes: Size,
    /// Time for a client to send a whole request head once it started one; then 408 and close. Default: 10s.
    pub header_read_timeout: Dur,
    /// Time a connection with no request in flight stays open. Default: 60s.
    pub idle_timeout: Dur,
    /// Open client connections; more are closed as soon as accepted. Default: 10000.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per connection (advertised in SETTINGS). Default: 100.
    pub h2_max_concurrent_streams: u32,
    /// Time a write to a client may wait without progress (the client does not read its socket);
    /// then the connection is closed, and its responses and their upstream connections are let go,
    /// as nginx's `send_timeout`. Default: 30s.
    pub send_timeout: Dur,
    /// HTTP/2 streams a client may cancel (RST_STREAM before its response ended) per connection in
    /// 10 seconds (a count that drains continuously); past it, or once a client that started 4x
    /// this many streams cancelled more than half of them, the connection gets GOAWAY, as a
    /// rapid-reset flood does. Default: 200.
    pub h2_max_resets: u64,
    /// Request body size when a route does not set its own; over it: 413. Default: 10MiB.
    pub max_body_size: Size,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: Size(32 * 1024),
            max_headers: 100,
            max_uri_bytes: Size(8 * 1024),
            header_read_timeout: Dur(Duration::from_secs(10)),
            idle_timeout: Dur(Duration::from_secs(60)),
            max_connections: 10_000,
            h2_max_concurrent_streams: 100,
            send_timeout: Dur(Duration::from_secs(30)),
            h2_max_resets: 200,
            max_body_size: Size(10 * 1024 * 1024),
        }
    }
}

/// The admin API listener.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Default: 127.0.0.1:9901. A non-loopback address requires `token`.
    pub address: String,
    /// Bearer token required on every admin request when set.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "redact")]
    pub token: Option<String>,
    /// Serve `GET /healthz` and `/readyz` without the token (for load balancers); every other path
    /// still requires it. Default: false.
    pub public_health: bool,
    /// Open admin connections; more are closed as soon as accepted, so the admin API cannot take
    /// the descriptors the data plane needs. Default: 64.
    pub max_connections: usize,
    /// Time for an admin client to send a whole request head (from the connection's start or the
    /// previous response); then the connection is closed. Default: 10s.
    pub header_read_timeout: Dur,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            address: "127.0.0.1:9901".into(),
            token: None,
            public_health: false,
            max_connections: 64,
            header_read_timeout: Dur(Duration::from_secs(10)),
        }
    }
}

fn redact<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("<redacted>"),
        None => s.serialize_none(),
    }
}

/// A named cluster of upstream endpoints.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Unique name that routes refer to.
    pub name: String,
    /// The endpoints, each `host:port` or `{address, weight}`.
    pub endpoints: Vec<Endpoint>,
    /// How an endpoint is picked. Default: round_robin.
    #[serde(default)]
    pub balancer: Balancer,
    /// Protocol spoken to the endpoints. Default: http1.
    #[serde(default)]
    pub protocol: Protocol,
    /// Time to establish a connection. Default: 2s.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    /// Connection pool settings.
    #[serde(default)]
    pub pool: Pool,
    /// Passive and active health checking.
    #[serde(default)]
    pub health: Health,
    /// TLS to the endpoints. Default: none (cleartext).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
}

/// TLS to an upstream's endpoints.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTls {
    /// CA bundle to verify endpoints with. Default: the system roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Name sent in SNI and verified against the certificate. Default: the endpoint's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Client certificate for mutual TLS. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<CertKey>,
    /// Accept any certificate. Default: false. Logged as a warning at every load: never in production.
    pub insecure_skip_verify: bool,
}

fn default_connect_timeout() -> Dur {
    Dur(Duration::from_secs(2))
}

/// One endpoint of a cluster.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Endpoint {
    /// `host:port`.
    pub address: String,
    /// Relative share of traffic. Default: 1.
    pub weight: u32,
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            address: String,
            #[serde(default = "one")]
            weight: u32,
        }
        fn one() -> u32 {
            1
        }
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "`host:port` or {address, weight}")]
        enum Form {
            Short(String),
            Full(Full),
        }
        Ok(match Form::deserialize(d)? {
            Form::Short(address) => Endpoint { address, weight: 1 },
            Form::Full(f) => Endpoint {
                address: f.address,
                weight: f.weight,
            },
        })
    }
}

/// Load-balancing policy: `round_robin`, `least_request`, `random`, or
/// `{consistent_hash: {header: NAME}}` (also `cookie: NAME` or `client_ip: true`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(try_from = "RawBalancer", rename_all = "snake_case")]
pub enum Balancer {
    /// Smooth weighted round robin.
    #[default]
    RoundRobin,
    /// The less loaded of two endpoints picked at random (weighted).
    LeastRequest,
    /// Weighted random.
    Random,
    /// A hash ring keyed by a header, a cookie or the client IP.
    ConsistentHash(HashKey),
}

#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "round_robin, least_request, random or {consistent_hash: {...}}"
)]
enum RawBalancer {
    Name(String),
    Hash { consistent_hash: RawHashKey },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHashKey {
    header: Option<String>,
    cookie: Option<String>,
    #[serde(default)]
    client_ip: bool,
}

impl TryFrom<RawBalancer> for Balancer {
    type Error = String;
    fn try_from(r: RawBalancer) -> Result<Self, String> {
        match r {
            RawBalancer::Name(n) => match n.as_str() {
                "round_robin" => Ok(Balancer::RoundRobin),
                "least_request" => Ok(Balancer::LeastRequest),
                "random" => Ok(Balancer::Random),
                other => Err(format!(
                    "unknown balancer `{other}`, expected round_robin, least_request, random or consistent_hash"
                )),
            },
            RawBalancer::Hash { consistent_hash: k } => match (k.header, k.cookie, k.client_ip) {
                (Some(h), None, false) => Ok(Balancer::ConsistentHash(HashKey::Header(h))),
                (None, Some(c), false) => Ok(Balancer::ConsistentHash(HashKey::Cookie(c))),
                (None, None, true) => Ok(Balancer::ConsistentHash(HashKey::ClientIp)),
                _ => Err("consistent_hash takes exactly one of `header`, `cookie` or `client_ip: true`".into()),
            },
        }
    }
}

/// What a consistent-hash balancer hashes.
#[derive(Clone, Debug, PartialEq)]
pub enum HashKey {
    /// A request header's value.
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// The client's IP address.
    ClientIp,
}

impl Serialize for HashKey {
    /// Written the way it is read: `{header: NAME}`, `{cookie: NAME}` or `{client_ip: true}`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match self {
            HashKey::Header(h) => m.serialize_entry("header", h)?,
            HashKey::Cookie(c) => m.serialize_entry("cookie", c)?,
            HashKey::ClientIp => m.serialize_entry("client_ip", &true)?,
        }
        m.end()
    }
}

/// Upstream protocol.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (cleartext) .
    Http2,
}

/// Connection pool settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Pool {
    /// How long an idle pooled connection is kept. Default: 90s.
    pub idle_timeout: Dur,
    /// Idle connections kept per endpoint. Default: 64.
    pub max_idle_per_endpoint: usize,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            idle_timeout: Dur(Duration::from_secs(90)),
            max_idle_per_endpoint: 64,
        }
    }
}

/// Health checking.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    /// Ejects endpoints that fail requests. On by default.
    pub passive: Passive,
    /// Probes endpoints periodically. Off unless written.
    pub active: Option<Active>,
}

/// Passive health: consecutive failures eject an endpoint for a while.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Passive {
    /// Consecutive failures (connect errors, timeouts, 502/503/504) that eject. 0 disables. Default: 5.
    pub consecutive_failures: u32,
    /// Ejection time; doubles with each consecutive ejection up to 10x. Default: 30s.
    pub ejection_time: Dur,
}

impl Default for Passive {
    fn default() -> Self {
        Passive {
            consecutive_failures: 5,
            ejection_time: Dur(Duration::from_secs(30)),
        }
    }
}

/// Active health checks.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Active {
    /// Path requested with GET; a 2xx answer is healthy.
    pub path: String,
    /// Default: 5s.
    #[serde(default = "default_interval")]
    pub interval: Dur,
    /// Default: 1s.
    #[serde(default = "default_check_timeout")]
    pub timeout: Dur,
    /// Consecutive successes that make an unhealthy endpoint healthy. Default: 2.
    #[serde(default = "two")]
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy endpoint unhealthy. Default: 3.
    #[serde(default = "three")]
    pub unhealthy_threshold: u32,
}

fn default_interval() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_check_timeout() -> Dur {
    Dur(Duration::from_secs(1))
}
fn two() -> u32 {
    2
}
fn three() -> u32 {
    3
}

/// A route: what it matches and what it does.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique name, used in metrics and logs.
    pub name: String,
    /// Listeners this route serves on. Default: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<String>,
    /// What requests the route takes. Default: everything.
    #[serde(default, rename = "match")]
    pub matcher: Match,
    /// Forward to this upstream cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Forward to one of several upstream clusters, chosen per request by header or cookie rules,
    /// then by weight (instead of `upstream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<traffic::Split>,
    /// Also send a copy of a share of the forwarded requests to a shadow upstream, whose answers
    /// are dropped. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<traffic::Mirror>,
    /// Answer with a redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Redirect>,
    /// Answer with a fixed response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<DirectResponse>,
    /// Answer with a function backend (a `functions:` entry), which gets the request after the
    /// route's request filters and whose response goes through its response filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Wasm filters: request phase in this order, response phase in reverse.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterRef>,
    /// Path and host rewrites before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// Header changes on the request before forwarding.
    #[serde(default)]
    pub request_headers: HeaderOps,
    /// Header changes on the response before it is sent.
    #[serde(default)]
    pub response_headers: HeaderOps,
    /// Total time for the upstream exchange, retries included (until response headers). Default: 15s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// Retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// Request body limit for this route; over it: 413. Default: the listener's `max_body_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_size: Option<Size>,
    /// Also count this route's responses by the consumer a filter authenticated the request as
    /// (`gateway_consumer_requests_total{route, consumer, status}`). Default: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub consumer_metrics: bool,
    /// Protocol upgrades through this route (WebSocket over HTTP/1.1 `Upgrade` and HTTP/2 extended
    /// CONNECT): which protocols, the tunnel's idle timeout and longest life. Default: WebSocket
    /// allowed, 5m idle timeout, no longest life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrades: Option<upgrades::Upgrades>,
    /// Translate gRPC-Web requests (`application/grpc-web`, `application/grpc-web-text`, from
    /// browsers, over HTTP/1.1 or HTTP/2) to gRPC for the route's HTTP/2 upstream, and its answers
    /// back (trailers in the body). Other requests pass as they are. Default: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grpc_web: bool,
    /// Serve the gRPC methods of a protobuf descriptor set as REST/JSON (`google.api.http`
    /// annotations) to the route's HTTP/2 upstream. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_transcode: Option<grpc::GrpcTranscode>,
}

/// Request matchers; all that are written must match.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Exact host (`api.example.com`) or suffix wildcard (`*.example.com`); port ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// Methods accepted. Default: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Header matchers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueMatch>,
    /// Query parameter matchers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<ValueMatch>,
    /// Matchers on the verified client certificate (TLS listeners with `client_auth`): `name` is
    /// `subject` (the RFC 4514 subject, e.g. `CN=client-1`) or `san` (any subject alternative name,
    /// written `DNS:host`, `URI:...` or `email:...`). `present: false` matches requests without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_cert: Vec<ValueMatch>,
    /// A gRPC service and method: matches `POST /<service>/<method>` with a gRPC content type
    /// (`application/grpc*`, gRPC-Web's too). Takes the place of `path` and `methods`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcMatch>,
}

/// A gRPC route matcher.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrpcMatch {
    /// The fully qualified service, `package.Service` (`helloworld.Greeter`).
    pub service: String,
    /// The method (`SayHello`). Default: every method of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// How a path is matched: write exactly one of `exact`, `prefix`, `string_prefix`, `template` or
/// `regex`. Every matcher sees the canonical path (see `crate::canonical`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(try_from = "RawPathMatch", rename_all = "snake_case")]
pub enum PathMatch {
    /// The whole path.
    Exact(String),
    /// Whole leading segments of the path: `/api` matches `/api`, `/api/x` and `/api;v=1`, not
    /// `/apix`.
    Prefix(String),
    /// A string prefix of the path, on any character: `/api` also matches `/apix`.
    StringPrefix(String),
    /// Segments with `{name}` parameters, e.g. `/users/{id}`; `{*rest}` as the last segment takes the rest.
    Template(String),
    /// A regular expression that must match the whole path.
    Regex(String),
}

/// How a path is matched: write exactly one of `exact`, `prefix`, `string_prefix`, `template` or
/// `regex`. Every matcher sees the canonical path.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PathMatch", extend("minProperties" = 1, "maxProperties" = 1))]
struct RawPathMatch {
    /// The whole path.
    exact: Option<String>,
    /// Whole leading segments of the path: `/api` matches `/api`, `/api/x` and `/api;v=1`, not
    /// `/apix`.
    prefix: Option<String>,
    /// A string prefix of the path, on any character: `/api` also matches `/apix`.
    string_prefix: Option<String>,
    /// Segments with `{name}` parameters, e.g. `/users/{id}`; `{*rest}` as the last segment takes
    /// the rest.
    template: Option<String>,
    /// A regular expression that must match the whole path.
    regex: Option<String>,
}

impl TryFrom<RawPathMatch> for PathMatch {
    type Error = String;
    fn try_from(r: RawPathMatch) -> Result<Self, String> {
        let one = [
            r.exact.map(PathMatch::Exact),
            r.prefix.map(PathMatch::Prefix),
            r.string_prefix.map(PathMatch::StringPrefix),
            r.template.map(PathMatch::Template),
            r.regex.map(PathMatch::Regex),
        ];
        let mut given = one.into_iter().flatten();
        match (given.next(), given.next()) {
            (Some(m), None) => Ok(m),
            _ => Err(
                "write exactly one of `exact`, `prefix`, `string_prefix`, `template` or `regex`"
                    .into(),
            ),
        }
    }
}

/// A header or query parameter matcher: `name` plus one of `exact`, `regex`, `present`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValueMatch {
    /// Header or parameter name (headers are case-insensitive).
    pub name: String,
    /// The value must equal this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value must match this regular expression (whole value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// `true`: must be present; `false`: must be absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

/// A redirect response.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    /// 301, 302, 303, 307 or 308. Default: 302.
    #[serde(default = "default_redirect_status")]
    pub status: u16,
    /// Replaces the scheme. Default: the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Replaces the host. Default: the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Replaces the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Replaces the path (the query is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

fn default_redirect_status() -> u16 {
    302
}

/// A fixed response.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectResponse {
    /// Status code. Default: 200.
    #[serde(default = "default_status")]
    pub status: u16,
    /// Body text. Default: empty.
    #[serde(default)]
    pub body: String,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_status() -> u16 {
    200
}

/// Rewrites applied to the forwarded request.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// Removes this prefix from the path (`/api/users` -> `/users`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_prefix: Option<String>,
    /// Replaces the whole path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Builds the path from the template match's parameters, e.g. `/v2/accounts/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Replaces the Host header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// Header changes, applied in the order remove, set, add.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderOps {
    /// Appends a value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Replaces all values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Removes the header.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// Retry policy.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Retries after the first try. Default: 2.
    #[serde(default = "two")]
    pub attempts: u32,
    /// What is retried: `connect_failure`, `reset` (a broken exchange), `timeout`, a status code, or
    /// the gRPC status of a trailers-only answer (`grpc:unavailable`, `grpc:resource-exhausted`,
    /// `grpc:cancelled`, `grpc:deadline-exceeded`, `grpc:internal`).
    #[serde(default = "default_retry_on")]
    pub on: Vec<RetryOn>,
    /// Time for one try. Default: the route timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Dur>,
    /// Also retry methods that are not idempotent (POST, PATCH). Default: false.
    #[serde(default)]
    pub allow_non_idempotent: bool,
    /// First backoff; doubles with each retry, with jitter. Default: 25ms.
    #[serde(default = "default_backoff_base")]
    pub backoff_base: Dur,
    /// Longest backoff. Default: 250ms.
    #[serde(default = "default_backoff_max")]
    pub backoff_max: Dur,
    /// Retries allowed as a share of requests on this route. Default: 0.2.
    #[serde(default = "default_budget_ratio")]
    pub budget_ratio: f64,
    /// Retries per second always allowed regardless of the ratio. Default: 10.
    #[serde(default = "default_budget_min")]
    pub budget_min_per_second: u32,
    /// Request bodies up to this size are kept so they can be sent again; larger ones are not retried.
    /// Default: 64KiB.
    #[serde(default = "default_retry_buffer")]
    pub buffer_limit: Size,
}

/// One retry condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryOn {
    /// The connection could not be established.
    ConnectFailure,
    /// The exchange broke after the connection was made.
    Reset,
    /// A try timed out.
    Timeout,
    /// The upstream answered with this status.
    Status(u16),
    /// The upstream answered a gRPC call with this status in a trailers-only answer.
    Grpc(crate::proxy::grpc::Code),
}

/// The gRPC statuses a retry condition may name, as Envoy's `retry_on` does.
pub const GRPC_RETRY_ON: [crate::proxy::grpc::Code; 5] = {
    use crate::proxy::grpc::Code;
    [
        Code::Cancelled,
        Code::DeadlineExceeded,
        Code::Internal,
        Code::ResourceExhausted,
        Code::Unavailable,
    ]
};

impl Serialize for RetryOn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RetryOn::ConnectFailure => s.serialize_str("connect_failure"),
            RetryOn::Reset => s.serialize_str("reset"),
            RetryOn::Timeout => s.serialize_str("timeout"),
            RetryOn::Status(c) => s.serialize_u16(*c),
            RetryOn::Grpc(c) => s.serialize_str(&format!("grpc:{}", c.name())),
        }
    }
}

impl<'de> Deserialize<'de> for RetryOn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(
            untagged,
            expecting = "connect_failure, reset, timeout or a status code like 503"
        )]
        enum Raw {
            Code(u16),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Code(c) if (100..600).contains(&c) => Ok(RetryOn::Status(c)),
            Raw::Code(c) => Err(serde::de::Error::custom(format!(
                "{c} is not an HTTP status code"
            ))),
            Raw::Word(w) => match w.as_str() {
                "connect_failure" => Ok(RetryOn::ConnectFailure),
                "reset" => Ok(RetryOn::Reset),
                "timeout" => Ok(RetryOn::Timeout),
                other if other.starts_with("grpc:") => crate::proxy::grpc::Code::from_name(&other[5..])
                    .filter(|c| GRPC_RETRY_ON.contains(c))
                    .map(RetryOn::Grpc)
                    .ok_or_else(|| {
                        // Another spelling of a name it takes (`grpc:UNAVAILABLE`): the one to write.
                        let spelled = crate::proxy::grpc::Code::from_other_spelling(&other[5..])
                            .filter(|c| GRPC_RETRY_ON.contains(c))
                            .map(|c| format!(" (written `grpc:{}`: lower case, with hyphens)", c.name()))
                            .unwrap_or_default();
                        serde::de::Error::custom(format!(
                            "unknown gRPC retry condition `{other}`{spelled}, expected one of {}",
                            GRPC_RETRY_ON.map(|c| format!("grpc:{}", c.name())).join(", ")
                        ))
                    }),
                other => Err(serde::de::Error::custom(format!(
                    "unknown retry condition `{other}`, expected connect_failure, reset, timeout or a status code"
                ))),
            },
        }
    }
}

fn default_retry_on() -> Vec<RetryOn> {
    vec![RetryOn::ConnectFailure]
}
fn default_backoff_base() -> Dur {
    Dur(Duration::from_millis(25))
}
fn default_backoff_max() -> Dur {
    Dur(Duration::from_millis(250))
}
fn default_budget_ratio() -> f64 {
    0.2
}
fn default_budget_min() -> u32 {
    10
}
fn default_retry_buffer() -> Size {
    Size(64 * 1024)
}

/// A config error: where it is and what was expected.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {field}: {message}", file.display(), location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file the config came from.
    pub file: PathBuf,
    /// Line and column (1-based), when known.
    pub location: Option<(usize, usize)>,
    /// The field path, e.g. `routes[2].upstream`.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl Config {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Source::load(path).map(|(cfg, _)| cfg)
    }

    /// Parses config text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        from_yaml(path, text)
    }
}

/// The largest config text (a file, `PUT /config`, a plugin test fixture) that is parsed; a larger
/// one is refused before parsing. Default: 16MiB.
pub const MAX_CONFIG_BYTES: usize = 16 << 20;

/// The deepest nesting of lists and maps in a config; a deeper one is refused before the text is
/// deserialized (a real config nests about 8 deep; 200 KB of nested lists used to take 20 s of CPU
/// while every other reload waited). Default: 64.
pub const MAX_CONFIG_DEPTH: usize = 64;

/// Refuses text over [`MAX_CONFIG_BYTES`] or nested deeper than [`MAX_CONFIG_DEPTH`], in one linear
/// pass over the YAML events that stops at the first one past the limit.
fn check_bounds(path: &Path, text: &str) -> Result<(), ConfigError> {
    use yaml_rust2::parser::{Event, Parser};
    let err = |location, message: String| ConfigError {
        file: path.to_owned(),
        location,
        field: "(top level)".into(),
        message,
    };
    if text.len() > MAX_CONFIG_BYTES {
        return Err(err(
            None,
            format!(
                "the config is {} bytes; at most {MAX_CONFIG_BYTES} are read",
                text.len()
            ),
        ));
    }
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        match parser.next_token() {
            Ok((Event::SequenceStart(..) | Event::MappingStart(..), mark)) => {
                depth += 1;
                if depth > MAX_CONFIG_DEPTH {
                    return Err(err(
                        Some((mark.line(), mark.col() + 1)),
                        format!("lists and maps nest deeper than {MAX_CONFIG_DEPTH} levels here"),
                    ));
                }
            }
            Ok((Event::SequenceEnd | Event::MappingEnd, _)) => depth = depth.saturating_sub(1),
            Ok((Event::StreamEnd, _)) => return Ok(()),
            Ok(_) => {}
            // The scanner's own nesting limit (flow collections) is the same refusal.
            Err(e) if e.info().contains("recursion limit") => {
                return Err(err(
                    Some((e.marker().line(), e.marker().col() + 1)),
                    format!("lists and maps nest deeper than {MAX_CONFIG_DEPTH} levels here"),
                ));
            }
            // A syntax error here: the deserializer (a different YAML reader) reports it with its
            // location and field, unless it would accept what this one refused; so before it
            // reads the text, a plain count of the nesting must stay within the limit too.
            Err(_) => {
                return match lexical_depth_over(text, MAX_CONFIG_DEPTH) {
                    Some(at) => Err(err(
                        Some(at),
                        format!("lists and maps nest deeper than {MAX_CONFIG_DEPTH} levels here"),
                    )),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Where the nesting of `text` goes past `limit`, counted without a YAML parser: flow brackets
/// (`[`, `{`) outside quotes and comments, plus block levels (indentation deeper than the line
/// above). Over-counts rather than under-counts; the 1-based line and column of the first excess.
fn lexical_depth_over(text: &str, limit: usize) -> Option<(usize, usize)> {
    let mut flow = 0usize;
    let mut indents: Vec<usize> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let body = line.trim_start_matches([' ', '\t']);
        let indent = line.len() - body.len();
        if flow == 0 && !body.is_empty() && !body.starts_with('#') {
            while indents.last().is_some_and(|&i| i >= indent) {
                indents.pop();
            }
            indents.push(indent);
        }
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        let mut chars = line.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match (quote, c) {
                (Some('"'), '\\') => {
                    chars.next();
                }
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '#') if prev == ' ' || prev == '\t' => break,
                (None, '[' | '{') => {
                    flow += 1;
                    if flow + indents.len() > limit {
                        return Some((n + 1, i + 1));
                    }
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
            prev = c;
        }
        if indents.len() > limit {
            return Some((n + 1, indent + 1));
        }
    }
    None
}

/// Deserializes YAML `text` (a config, a plugin test fixture); an error names `path`, the line and
/// column, and the field's path, once. Text over the size or nesting limits is refused first.
pub fn from_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    check_bounds(path, text)?;
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        // A list item's own error (a retry condition, an access log field), and a value refused
        // by its field's own check (`vms: 0`), are placed by the YAML reader at the start of the
        // enclosing list or map, before the field: then the field's place is found by its path.
        // (An error inside the field, such as an unknown key of a map or a value of the wrong
        // type, is at or after it, and stays where the reader put it.)
        let location = inner.location().map(|l| (l.line(), l.column()));
        let location = match location {
            Some(at) => match locate::locate(text, &field) {
                Some(item) if item > at => Some(item),
                _ => Some(at),
            },
            None => None,
        };
        let mut message = inner.to_string();
        // serde_yaml appends " at line L column C"; the location is reported separately.
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        // serde_yaml prefixes the path of the map the error is in, which `field` already holds
        // (the whole path, or the map's path for an unknown field).
        if let Some((prefix, rest)) = message.split_once(": ") {
            if !prefix.contains(' ') && field.starts_with(prefix) {
                message = rest.to_owned();
            }
        }
        ConfigError {
            file: path.to_owned(),
            location,
            field: if field == "." {
                "(top level)".into()
            } else {
                field
            },
            message,
        }
    })
}

/// Builds a config error for a field found invalid after parsing, locating it in `text`.
pub fn field_error(path: &Path, text: Option<&str>, field: &str, message: String) -> ConfigError {
    ConfigError {
        file: path.to_owned(),
        location: text.and_then(|t| locate::locate(t, field)),
        field: field.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's plugin reference (the `plugins:` block beginning `- name: auth` with `path`)
    /// writes every field a `plugins:` entry takes, and the block is a valid config.
    #[test]
    fn the_readme_plugin_reference_writes_every_plugin_field() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("plugins:\n  - name: auth\n    path: plugins/auth.wasm")
            .expect("the plugin reference block");
        let block = &readme[start..];
        let block = &block[..block.find("\n\n").unwrap()];
        let parsed: Config = serde_yaml_ng::from_str(&format!("listeners: []\n{block}"))
            .unwrap_or_else(|e| panic!("the README's plugin reference does not parse: {e}"));
        assert_eq!(parsed.plugins.len(), 1);
        // Every field, from an entry with all of them set (`url`, `sha256` and `ca` are the URL
        // form's, shown in the next block of the README).
        let full = Plugin {
            name: "x".into(),
            path: Some("p".into()),
            url: None,
            sha256: None,
            ca: None,
            abi: Some(PluginAbi::Component),
            limits: PluginLimits::default(),
            vm_config: Some(serde_json::json!({})),
            capabilities: Some(PluginCapabilities {
                upstreams: vec!["u".into()],
                kv_namespace: Some("n".into()),
                consumers: true,
            }),
            instance_mode: Some(InstanceMode::Reuse),
            service: Some(ServiceSettings::default()),
            skip: vec![ProxyWasmCallback::OnRequestBody],
            vms: Some(2),
        };
        let json = serde_json::to_value(&full).unwrap();
        let mut missing = Vec::new();
        let mut walk = vec![(String::new(), &json)];
        while let Some((path, v)) = walk.pop() {
            let Some(m) = v.as_object() else { continue };
            for (k, v) in m {
                if !block.contains(&format!("{k}:")) {
                    missing.push(format!("{path}{k}"));
                }
                if matches!(k.as_str(), "limits" | "capabilities") {
                    walk.push((format!("{k}."), v));
                }
            }
        }
        for url_field in ["url:", "sha256:", "ca:"] {
            assert!(readme.contains(&format!("    {url_field}")), "{url_field}");
        }
        assert!(
            missing.is_empty(),
            "the README's plugin reference lacks {missing:?}"
        );
    }

    #[test]
    fn deep_or_huge_configs_are_refused_before_parsing() {
        let path = Path::new("deep.yaml");
        // 200 KB of nested lists (the shape that took 20 s of CPU), in flow and block style.
        let flow = format!("routes: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let start = std::time::Instant::now();
        let e = Config::parse(path, &flow).unwrap_err();
        assert!(e.message.contains("nest deeper than 64"), "{e}");
        assert_eq!(e.location.map(|(line, _)| line), Some(1), "{e}");
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "no superlinear work"
        );
        let mut block = String::from("routes:\n");
        for i in 0..100 {
            block.push_str(&" ".repeat(2 * i + 2));
            block.push_str("-\n");
        }
        let e = Config::parse(path, &block).unwrap_err();
        assert!(e.message.contains("nest deeper"), "{e}");
        let big = format!("# {}\nlisteners: []\n", "x".repeat(MAX_CONFIG_BYTES));
        let e = Config::parse(path, &big).unwrap_err();
        assert!(e.message.contains("at most"), "{e}");
        // At the limit it parses (and fails for what it says, not for its depth).
        let ok = format!("x: {}1{}\n", "[".repeat(63), "]".repeat(63));
        let e = Config::parse(path, &ok).unwrap_err();
        assert!(!e.message.contains("nest"), "{e}");
    }

    #[test]
    fn text_the_bounds_reader_cannot_scan_is_still_bounded() {
        let path = Path::new("deep.yaml");
        // A tab after a colon: refused by the reader that counts depth, accepted by the one that
        // deserializes; the nesting behind it is still counted.
        let deep = format!(
            "x:\tb\nroutes: {}{}\n",
            "[".repeat(20_000),
            "]".repeat(20_000)
        );
        let e = Config::parse(path, &deep).unwrap_err();
        assert!(e.message.contains("nest deeper than 64"), "{e}");
        assert_eq!(e.location, Some((2, 72)), "{e}");
        let mut block = String::from("x:\tb\nroutes:\n");
        for i in 0..100 {
            block.push_str(&" ".repeat(i + 1));
            block.push_str("- a:\n");
        }
        let e = Config::parse(path, &block).unwrap_err();
        assert!(e.message.contains("nest deeper"), "{e}");
        // Brackets in quotes and comments are not nesting.
        let fine = format!("x:\tb\ny: \"{}\" # {}\n", "[".repeat(100), "{".repeat(100));
        let e = Config::parse(path, &fine).unwrap_err();
        assert!(!e.message.contains("nest"), "{e}");
    }
}
