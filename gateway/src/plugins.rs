//! Plugins on routes: loading the config's plugins into the process's Wasm engine, configuring one
//! filter per route stage, and the upstream access plugins get for their HTTP callouts.
//!
//! The engine, the host core (shared data, queues, plugin metrics) and the compiled-code cache live for
//! the whole process; a config (re)load creates new filters from them.

use crate::config::ConfigError;
use crate::filter::chain::Stage;
use crate::host::{CalloutError, HostCore, Upstreams};
use crate::proxy::Shared;
use crate::runtime::{Runtime, Source};
use crate::wasm::{self, EngineOptions, LoadedPlugin, Plugins, WasmEngine};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// The process's plugin host: the Wasm services, started the first time a config has plugins (the
/// engine reserves address space for its instance pool, so a gateway without plugins does not start
/// one).
pub struct PluginHost {
    cache_dir: Option<PathBuf>,
    pool: crate::config::WasmPool,
    services: Mutex<Option<Arc<WasmServices>>>,
    shared: OnceLock<Weak<Shared>>,
}

impl PluginHost {
    /// A host that caches compiled code in `cache_dir` (None: no disk cache), with the engine's
    /// instance pool sized by `pool`.
    pub fn new(cache_dir: Option<PathBuf>, pool: crate::config::WasmPool) -> PluginHost {
        PluginHost {
            cache_dir,
            pool,
            services: Mutex::new(None),
            shared: OnceLock::new(),
        }
    }

    /// Lets plugin callouts reach the upstreams of the serving runtime.
    pub fn bind(&self, shared: &Arc<Shared>) {
        let _ = self.shared.set(Arc::downgrade(shared));
        if let Some(s) = self.services() {
            s.bind(shared);
        }
    }

    /// The Wasm services, if started.
    pub fn services(&self) -> Option<Arc<WasmServices>> {
        self.services.lock().unwrap().clone()
    }

    /// Loads `cfg`'s plugins and attaches filter stages to `rt`'s routes (see
    /// [`WasmServices::attach`]). Starts the Wasm services on first use.
    pub async fn attach(&self, src: &Source, rt: &Runtime) -> Result<(), ConfigError> {
        let cfg = &rt.config;
        if cfg.plugins.is_empty() && cfg.routes.iter().all(|r| r.filters.is_empty()) {
            if let Some(s) = self.services() {
                s.loaded.lock().unwrap().clear();
            }
            return Ok(());
        }
        let services = {
            let mut slot = self.services.lock().unwrap();
            match &*slot {
                Some(s) => s.clone(),
                None => {
                    let s = WasmServices::new(self.cache_dir.clone(), &self.pool).map_err(|e| {
                        src.err("plugins", format!("cannot start the Wasm engine: {e}"))
                    })?;
                    if let Some(shared) = self.shared.get().and_then(Weak::upgrade) {
                        s.bind(&shared);
                    }
                    *slot = Some(s.clone());
                    s
                }
            }
        };
        services.attach(src, rt).await
    }

    /// Prometheus text for plugins (nothing when no plugin was ever loaded).
    pub fn render_metrics(&self, out: &mut String) {
        if let Some(s) = self.services() {
            s.render_metrics(out);
        }
    }
}

/// The process's Wasm services.
pub struct WasmServices {
    plugins: Plugins,
    /// Shared data, queues and metrics of all plugins.
    pub host: Arc<HostCore>,
    upstreams: Arc<GatewayUpstreams>,
    /// Plugins of the serving config, by name (for metrics and the admin API).
    loaded: Mutex<Vec<Arc<LoadedPlugin>>>,
}

impl std::fmt::Debug for WasmServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmServices").finish_non_exhaustive()
    }
}

/// The default directory for compiled plugin code: `$GATEWAY_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/gateway/wasm`, else `$HOME/.cache/gateway/wasm`, else a temporary directory.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("GATEWAY_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("gateway/wasm");
    }
    if let Some(d) = std::env::var_os("HOME") {
        return PathBuf::from(d).join(".cache/gateway/wasm");
    }
    std::env::temp_dir().join("gateway-wasm-cache")
}

impl WasmServices {
    /// Starts the engine (with its epoch ticker) and the host core.
    pub fn new(
        cache_dir: Option<PathBuf>,
        pool: &crate::config::WasmPool,
    ) -> Result<Arc<WasmServices>, wasm::PluginError> {
        let engine = WasmEngine::new(EngineOptions {
            cache_dir,
            max_instances: pool.max_instances,
            max_memory: pool.max_instance_memory.0,
        })?;
        let upstreams = Arc::new(GatewayUpstreams::default());
        Ok(Arc::new(WasmServices {
            plugins: Plugins::new(engine),
            host: HostCore::new(upstreams.clone()),
            upstreams,
            loaded: Mutex::new(Vec::new()),
        }))
    }

    /// Lets plugin callouts reach the upstreams of the serving runtime.
    pub fn bind(&self, shared: &Arc<Shared>) {
        let _ = self.upstreams.shared.set(Arc::downgrade(shared));
    }

    /// Loads every plugin of `rt`'s config and makes the filter stages of every route that has filters, then
    /// attaches them to `rt`. Errors name the config field: the plugin's `path` for load failures, the
    /// route's filter for a rejected config.
    pub async fn attach(&self, src: &Source, rt: &Runtime) -> Result<(), ConfigError> {
        let cfg = &rt.config;
        let base = src.path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut by_name: HashMap<&str, (usize, Arc<LoadedPlugin>)> = HashMap::new();
        for (i, p) in cfg.plugins.iter().enumerate() {
            if by_name.contains_key(p.name.as_str()) {
                return Err(src.err(
                    format!("plugins[{i}].name"),
                    format!("plugin `{}` is defined twice", p.name),
                ));
            }
            let loaded = self
                .plugins
                .load(p, &base, self.host.clone())
                .await
                .map_err(|e| src.err(format!("plugins[{i}].path"), e.to_string()))?;
            by_name.insert(p.name.as_str(), (i, loaded));
        }
        let mut stages_by_route = HashMap::new();
        for (i, r) in cfg.routes.iter().enumerate() {
            if r.filters.is_empty() {
                continue;
            }
            let mut stages = Vec::with_capacity(r.filters.len());
            for (j, f) in r.filters.iter().enumerate() {
                let Some((_, plugin)) = by_name.get(f.plugin.as_str()) else {
                    return Err(src.err(
                        format!("routes[{i}].filters[{j}].plugin"),
                        format!("unknown plugin `{}`; define it under `plugins`", f.plugin),
                    ));
                };
                let filter = plugin
                    .filter(&r.name, wasm::config_bytes(f.config.as_ref()), f.failure)
                    .await
                    .map_err(|e| {
                        src.err(format!("routes[{i}].filters[{j}].config"), e.to_string())
                    })?;
                stages.push(Stage {
                    filter,
                    policy: f.failure,
                    failures: AtomicU64::new(0),
                });
            }
            stages_by_route.insert(r.name.clone(), Arc::<[Stage]>::from(stages));
        }
        rt.attach_filters(stages_by_route);
        *self.loaded.lock().unwrap() = by_name.into_values().map(|(_, p)| p).collect();
        Ok(())
    }

    /// Prometheus text for plugins: health counters of the serving config's plugins and the metrics the
    /// plugins defined themselves.
    pub fn render_metrics(&self, out: &mut String) {
        let loaded = self.loaded.lock().unwrap().clone();
        let families: [(&str, &str, HealthField); 6] = [
            ("gateway_plugin_calls_total", "counter", |h| h.calls),
            ("gateway_plugin_failures_total", "counter", |h| h.failures),
            ("gateway_plugin_traps_total", "counter", |h| h.traps),
            ("gateway_plugin_cpu_limit_total", "counter", |h| {
                h.cpu_limits
            }),
            ("gateway_plugin_memory_limit_total", "counter", |h| {
                h.memory_limits
            }),
            ("gateway_plugin_healthy", "gauge", |h| u64::from(h.healthy)),
        ];
        for (name, kind, read) in families {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for p in &loaded {
                let snap = p.health().snapshot();
                let _ = writeln!(
                    out,
                    "{name}{{plugin=\"{}\"}} {}",
                    crate::metrics::esc(p.name()),
                    read(&snap)
                );
            }
        }
        self.host.metrics.render_prometheus(out);
    }

    /// The serving config's plugins.
    pub fn loaded(&self) -> Vec<Arc<LoadedPlugin>> {
        self.loaded.lock().unwrap().clone()
    }
}

/// Reads one counter of a plugin's health.
type HealthField = fn(&wasm::HealthSnapshot) -> u64;

/// Plugin callouts through the upstream clusters of whatever runtime is serving.
#[derive(Default)]
struct GatewayUpstreams {
    shared: OnceLock<Weak<Shared>>,
}

impl GatewayUpstreams {
    fn cluster(&self, name: &str) -> Option<Arc<crate::upstream::Cluster>> {
        let shared = self.shared.get()?.upgrade()?;
        let rt = shared.runtime.load();
        rt.upstreams.get(name).cloned()
    }
}

impl Upstreams for GatewayUpstreams {
    fn has(&self, upstream: &str) -> bool {
        self.cluster(upstream).is_some()
    }

    fn call(
        &self,
        upstream: &str,
        req: http::Request<Bytes>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<http::Response<Bytes>, CalloutError>> {
        let cluster = self.cluster(upstream);
        let name = upstream.to_owned();
        Box::pin(async move {
            let cluster = cluster.ok_or(CalloutError::UnknownUpstream(name.clone()))?;
            let idx = cluster
                .policy
                .pick(&cluster.endpoints, None, None)
                .ok_or_else(|| {
                    CalloutError::Failed(format!("no healthy endpoint in upstream `{name}`"))
                })?;
            let ep = cluster.endpoints[idx].clone();
            let (mut parts, body) = req.into_parts();
            let pq = parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            parts.uri = format!("{}://{}{pq}", cluster.scheme, ep.address)
                .parse()
                .map_err(|e| CalloutError::BadRequest(format!("{e}")))?;
            parts.version = match cluster.protocol {
                crate::config::Protocol::Http1 => http::Version::HTTP_11,
                crate::config::Protocol::Http2 => http::Version::HTTP_2,
            };
            let req = http::Request::from_parts(parts, crate::body::full(body));
            let exchange = async {
                let resp = cluster
                    .client
                    .request(req)
                    .await
                    .map_err(|e| CalloutError::Failed(e.to_string()))?;
                let (parts, body) = resp.into_parts();
                let body = body
                    .collect()
                    .await
                    .map_err(|e| CalloutError::Failed(e.to_string()))?
                    .to_bytes();
                Ok(http::Response::from_parts(parts, body))
            };
            let result = tokio::time::timeout(timeout, exchange)
                .await
                .map_err(|_| CalloutError::Timeout)?;
            ep.record(result.is_ok(), &cluster.passive);
            result
        })
    }
}
