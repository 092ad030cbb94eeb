//! Plugins on routes: loading the config's plugins into the process's Wasm engine, configuring one
//! filter per route stage, and the upstream access plugins get for their HTTP callouts.
//!
//! The engine, the host core (shared data, queues, plugin metrics) and the compiled-code caches live for
//! the whole process. A config (re)load takes over the plugins and route filter stages that did not
//! change, and loads or configures the rest ([`WasmServices::attach`]); plugin files come from
//! [`crate::plugin_source`].

use crate::config::{self, ConfigError};
use crate::filter::chain::{Stage, StageTimings};
use crate::host::{CalloutError, HostCore, Upstreams};
use crate::metrics::Exposition;
use crate::plugin_source;
use crate::runtime::{Runtime, Source};
use crate::wasm::engine::Origin;
use crate::wasm::{self, EngineOptions, LoadedPlugin, Plugins, WasmEngine};
use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
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
    serving: OnceLock<Weak<ArcSwap<Runtime>>>,
}

impl PluginHost {
    /// A host that caches compiled code and fetched plugins in `cache_dir` (None: no disk cache) unless
    /// the config's `server.cache_dir` names another, with the engine's instance pool sized by `pool`.
    pub fn new(cache_dir: Option<PathBuf>, pool: crate::config::WasmPool) -> PluginHost {
        PluginHost {
            cache_dir,
            pool,
            services: Mutex::new(None),
            serving: OnceLock::new(),
        }
    }

    /// Lets plugin callouts reach the upstreams of the serving runtime.
    pub fn bind(&self, serving: &Arc<ArcSwap<Runtime>>) {
        let _ = self.serving.set(Arc::downgrade(serving));
        if let Some(s) = self.services() {
            s.bind(serving);
        }
    }

    /// The Wasm services, if started.
    pub fn services(&self) -> Option<Arc<WasmServices>> {
        self.services.lock().unwrap().clone()
    }

    /// Loads `cfg`'s plugins and attaches filter stages to `rt`'s routes (see
    /// [`WasmServices::attach`]). Starts the Wasm services on first use.
    pub async fn attach(&self, src: &Source, rt: &Runtime) -> Result<AttachReport, ConfigError> {
        let cfg = &rt.config;
        if cfg.plugins.is_empty()
            && cfg.functions.is_empty()
            && cfg
                .routes
                .iter()
                .all(|r| r.filters.is_empty() && r.function.is_none())
        {
            if let Some(s) = self.services() {
                *s.state.lock().unwrap() = State::default();
                s.functions.clear();
                // No plugin uses a namespace any more: the clients of the old ones close.
                s.host.stores.install(crate::host::StoreSet::default());
            }
            return Ok(AttachReport::default());
        }
        let services = {
            let mut slot = self.services.lock().unwrap();
            match &*slot {
                Some(s) => s.clone(),
                None => {
                    // `server.cache_dir` (relative to the config file) wins over the default.
                    let dir = match &cfg.server.cache_dir {
                        Some(d) => Some(plugin_source::resolve(src, d)),
                        None => self.cache_dir.clone(),
                    };
                    let s = WasmServices::new(dir, &self.pool).map_err(|e| {
                        src.err("plugins", format!("cannot start the Wasm engine: {e}"))
                    })?;
                    if let Some(serving) = self.serving.get().and_then(Weak::upgrade) {
                        s.bind(&serving);
                    }
                    *slot = Some(s.clone());
                    s
                }
            }
        };
        services.attach(src, rt).await
    }

    /// Adds the plugin families to `e`: live plugins and instances, and (once a plugin was loaded)
    /// the plugins' own figures.
    pub fn expose_metrics(&self, e: &mut Exposition) {
        e.gauge("gateway_plugins_live", "Plugins loaded and not yet freed.")
            .value(wasm::live_plugins() as u64);
        e.gauge(
            "gateway_wasm_instances_live",
            "Wasm instances alive (component instances and Proxy-Wasm VMs).",
        )
        .value(wasm::live_instances() as u64);
        if let Some(s) = self.services() {
            s.expose_metrics(e);
        }
    }
}

/// The process's Wasm services.
pub struct WasmServices {
    plugins: Plugins,
    /// Shared data, queues and metrics of all plugins.
    pub host: Arc<HostCore>,
    upstreams: Arc<GatewayUpstreams>,
    /// Where compiled code and fetched plugins are kept.
    cache_dir: Option<PathBuf>,
    /// Plugins and route stages of the serving config (for reuse by the next reload, metrics and the
    /// admin API).
    state: Mutex<State>,
    /// How long each plugin's calls take on each route, kept across reloads like the routes'
    /// figures (locked when stages are made and when figures are read).
    timings: Mutex<BTreeMap<(String, String), Arc<StageTimings>>>,
    /// Function backends of the serving config, and their figures.
    pub functions: wasm::function::Functions,
}

impl std::fmt::Debug for WasmServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmServices").finish_non_exhaustive()
    }
}

/// The default directory for compiled plugin code: `$GATEWAY_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/gateway/wasm`, else `$HOME/.cache/gateway/wasm`, else none (no disk cache: a
/// shared temporary directory is not a place to load executable code from).
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("GATEWAY_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("gateway/wasm"));
    }
    std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/gateway/wasm"))
}

impl WasmServices {
    /// Starts the engine (with its epoch ticker) and the host core.
    pub fn new(
        cache_dir: Option<PathBuf>,
        pool: &crate::config::WasmPool,
    ) -> Result<Arc<WasmServices>, wasm::PluginError> {
        let engine = WasmEngine::new(EngineOptions {
            cache_dir: cache_dir.clone(),
            max_instances: pool.max_instances,
            max_memory: pool.max_instance_memory.0,
            // File and line in traps' backtraces for plugins built with debug info: opt-in, since
            // it costs compile time and memory for every such plugin.
            debug_info: std::env::var_os("GATEWAY_WASM_BACKTRACE_DETAILS")
                .is_some_and(|v| v == "1"),
        })?;
        let upstreams = Arc::new(GatewayUpstreams::default());
        Ok(Arc::new(WasmServices {
            plugins: Plugins::new(engine),
            host: HostCore::new(upstreams.clone()),
            upstreams,
            cache_dir,
            state: Mutex::new(State::default()),
            timings: Mutex::default(),
            functions: Default::default(),
        }))
    }

    /// Lets plugin callouts reach the upstreams of the serving runtime.
    pub fn bind(&self, serving: &Arc<ArcSwap<Runtime>>) {
        let _ = self.upstreams.serving.set(Arc::downgrade(serving));
    }

    /// Loads every plugin of `rt`'s config and makes the filter stages of every route that has filters,
    /// then attaches them to `rt`. A plugin whose file content (sha256) and settings (abi, limits,
    /// capabilities, instance mode, vm_config) are those of the serving config's plugin of the same
    /// name is taken over as it is: not read from a URL, not compiled, its instances and their state
    /// kept. A route whose filters (same plugins, configs and failure policies) are unchanged keeps its
    /// filter stages, and so its warm instances. Nothing changes here until everything has loaded and
    /// been configured; then the new set becomes the serving one (the caller swaps `rt` in right
    /// after). Errors name the config field: the plugin's `path`, `url` or `sha256` for load failures,
    /// the route's filter for a rejected config.
    pub async fn attach(&self, src: &Source, rt: &Runtime) -> Result<AttachReport, ConfigError> {
        // The config's key-value namespaces are in place before the plugins' `init` runs (a plugin
        // may ask where its namespace lives), and put back if the config is refused.
        let base = src.path.parent().unwrap_or(std::path::Path::new("."));
        let stores = self
            .host
            .stores
            .prepare(&rt.config.kv_namespaces, base)
            .map_err(|e| src.err(e.field, e.message))?;
        let replaced = self.host.stores.install(stores);
        let attached = match self.attach_inner(src, rt).await {
            Ok(r) => self
                .attach_functions(src, rt)
                .await
                .map(|()| r)
                .map_err(|e| (None, e)),
            Err(e) => Err(e),
        };
        match attached {
            Ok(r) => {
                self.host.cache.configure(rt.config.cache.limits());
                Ok(r)
            }
            Err((plugin, e)) => {
                self.host.stores.install(replaced);
                let mut state = self.state.lock().unwrap();
                if let Some(p) =
                    plugin.and_then(|n| state.plugins.iter_mut().find(|p| p.cfg.name == n))
                {
                    p.last = PluginReload::error(e.to_string());
                }
                Err(e)
            }
        }
    }

    async fn attach_inner(
        &self,
        src: &Source,
        rt: &Runtime,
    ) -> Result<AttachReport, (Option<String>, ConfigError)> {
        let cfg = &rt.config;
        let previous = self.state.lock().unwrap().clone();
        let mut report = AttachReport::default();
        // The plugins to serve: those listed under `plugins`, then the first-party plugins that
        // routes name without an entry, which come from the binary.
        let mut entries: Vec<(std::borrow::Cow<'_, config::Plugin>, Listing)> = cfg
            .plugins
            .iter()
            .enumerate()
            .map(|(i, p)| (std::borrow::Cow::Borrowed(p), Listing::Listed(i)))
            .collect();
        for (i, r) in cfg.routes.iter().enumerate() {
            for (j, f) in r.filters.iter().enumerate() {
                if entries.iter().any(|(p, _)| p.name == f.plugin) {
                    continue;
                }
                if let Some(builtin) = crate::builtin::get(&f.plugin) {
                    let used = Listing::Used {
                        route: i,
                        filter: j,
                    };
                    entries.push((std::borrow::Cow::Owned(builtin.config()), used));
                }
            }
        }
        let mut plugins: Vec<ServingPlugin> = Vec::with_capacity(entries.len());
        for (p, listing) in &entries {
            let p: &config::Plugin = p;
            let named = |e: ConfigError| (Some(p.name.clone()), e);
            if let Listing::Listed(i) = *listing {
                if plugins.iter().any(|q| q.cfg.name == p.name) {
                    return Err(named(src.err(
                        format!("plugins[{i}].name"),
                        format!("plugin `{}` is defined twice", p.name),
                    )));
                }
            }
            // Built in: used by name, or listed without a source to give it settings (`check`
            // refused any other entry without one).
            let builtin = match (&p.path, &p.url) {
                (None, None) => crate::builtin::get(&p.name),
                _ => None,
            };
            // A built-in plugin keeps its own instance mode unless the entry names one, and may
            // always check consumers' credentials (first-party code, shipped in the binary).
            let with_defaults;
            let p = match builtin {
                Some(b) => {
                    let mut q = p.clone();
                    if q.instance_mode.is_none() && b.reuse {
                        q.instance_mode = Some(config::InstanceMode::Reuse);
                    }
                    let caps = q.capabilities.get_or_insert_with(Default::default);
                    caps.consumers = true;
                    if caps.kv_namespace.is_none() {
                        caps.kv_namespace = b.kv_namespace.map(str::to_owned);
                    }
                    with_defaults = q;
                    &with_defaults
                }
                None => p,
            };
            // A path is read to learn its content's hash; a URL's content is pinned by its sha256.
            let (sha256, mut wasm) = match (builtin, *listing) {
                (Some(b), _) => {
                    let w = plugin_source::Wasm {
                        bytes: Arc::from(b.wasm),
                        sha256: plugin_source::sha256_hex(b.wasm),
                    };
                    (w.sha256.clone(), Some(w))
                }
                (None, Listing::Listed(i)) if p.path.is_some() => {
                    let w = plugin_source::read_path(p, i, src).await.map_err(named)?;
                    (w.sha256.clone(), Some(w))
                }
                (None, _) => (plugin_source::pinned(p).unwrap_or_default(), None),
            };
            let store = namespace_settings(cfg, p);
            let same = previous.plugins.iter().find(|q| {
                q.cfg.name == p.name
                    && q.sha256 == sha256
                    && same_settings(&q.cfg, p)
                    && q.store == store
            });
            if let Some(old) = same {
                report.plugins_reused.push(p.name.clone());
                let detail = match listing {
                    Listing::Listed(_) => "unchanged: kept with its instances",
                    Listing::Used { .. } => "built in: kept with its instances",
                };
                plugins.push(ServingPlugin {
                    cfg: p.clone(),
                    store: store.clone(),
                    sha256,
                    plugin: old.plugin.clone(),
                    last: PluginReload::ok("reused", None, detail),
                });
                continue;
            }
            let wasm = match (wasm.take(), *listing) {
                (Some(w), _) => w,
                (None, Listing::Listed(i)) => {
                    plugin_source::fetch_url(p, i, src, self.cache_dir.as_deref())
                        .await
                        .map_err(named)?
                }
                (None, Listing::Used { .. }) => unreachable!("a used plugin is built in"),
            };
            let (plugin, origin) = self
                .plugins
                .load_bytes(p, wasm.bytes, self.host.clone())
                .await
                .map_err(|e| {
                    named(match *listing {
                        Listing::Listed(i) => {
                            let field = match (&p.path, &p.url) {
                                (Some(_), _) => "path",
                                (None, Some(_)) => "url",
                                (None, None) => "name",
                            };
                            src.err(format!("plugins[{i}].{field}"), e.to_string())
                        }
                        Listing::Used { route, filter } => src.err(
                            format!("routes[{route}].filters[{filter}].plugin"),
                            format!("built-in plugin `{}`: {e}", p.name),
                        ),
                    })
                })?;
            if let (false, Listing::Listed(i)) = (p.skip.is_empty(), *listing) {
                if plugin.abi() != config::PluginAbi::ProxyWasm {
                    return Err(named(src.err(
                        format!("plugins[{i}].skip"),
                        "`skip` names Proxy-Wasm callbacks: a component declares the phases it uses itself",
                    )));
                }
            }
            if let (Some(_), Listing::Listed(i)) = (p.vms, *listing) {
                if plugin.abi() != config::PluginAbi::ProxyWasm {
                    return Err(named(src.err(
                        format!("plugins[{i}].vms"),
                        "`vms` is the number of Proxy-Wasm VMs: a component's instances are set by `instance_mode` and the instance pool",
                    )));
                }
            }
            report.plugins_loaded.push(p.name.clone());
            let how = match (origin, listing) {
                (_, Listing::Used { .. }) => "built in",
                (Origin::Compiled, _) => "compiled",
                (Origin::Memory, _) => "compiled code taken from the memory cache",
                (Origin::Disk, _) => "compiled code loaded from the disk cache",
            };
            tracing::info!(plugin = %p.name, sha256 = %wasm.sha256, "plugin loaded: {how}");
            plugins.push(ServingPlugin {
                cfg: p.clone(),
                store,
                sha256: wasm.sha256,
                plugin,
                last: PluginReload::ok("loaded", Some(origin), how),
            });
        }
        let mut routes = HashMap::new();
        for (i, r) in cfg.routes.iter().enumerate() {
            if r.filters.is_empty() {
                continue;
            }
            let mut key = Vec::with_capacity(r.filters.len());
            for (j, f) in r.filters.iter().enumerate() {
                let Some(p) = plugins.iter().find(|p| p.cfg.name == f.plugin) else {
                    return Err((
                        None,
                        src.err(
                            format!("routes[{i}].filters[{j}].plugin"),
                            unknown_plugin(&f.plugin),
                        ),
                    ));
                };
                key.push(StageKey {
                    plugin: p.plugin.clone(),
                    config: wasm::config_bytes(f.config.as_ref()),
                    policy: f.failure,
                });
            }
            let consumers = rt.consumers.fingerprint();
            let same = |old: &&RouteStages| old.key == key && old.consumers == consumers;
            if let Some(old) = previous.routes.get(&r.name).filter(same) {
                report.routes_kept.push(r.name.clone());
                routes.insert(r.name.clone(), old.clone());
                continue;
            }
            let mut stages = Vec::with_capacity(key.len());
            for (j, k) in key.iter().enumerate() {
                let filter = k
                    .plugin
                    .filter_in(&r.name, k.config.clone(), k.policy, &rt.consumers)
                    .await
                    .map_err(|e| {
                        let field =
                            config_field(src, &format!("routes[{i}].filters[{j}].config"), &e);
                        (
                            Some(k.plugin.name().to_owned()),
                            src.err(field, e.to_string()),
                        )
                    })?;
                stages.push(Stage {
                    filter,
                    policy: k.policy,
                    failures: AtomicU64::new(0),
                    timings: self.timings(k.plugin.name(), &r.name),
                });
            }
            report.routes_rebuilt.push(r.name.clone());
            routes.insert(
                r.name.clone(),
                RouteStages {
                    key,
                    consumers,
                    stages: Arc::from(stages),
                },
            );
        }
        rt.attach_filters(
            routes
                .iter()
                .map(|(name, r)| (name.clone(), r.stages.clone()))
                .collect(),
        );
        // Services: kept with a plugin taken over unchanged (its settings, `service` included, are the
        // same), started for a plugin loaded now.
        let mut services = Vec::new();
        for (i, p) in plugins.iter().enumerate() {
            let Some(service) = &p.cfg.service else {
                continue;
            };
            if let Some(old) = previous
                .services
                .iter()
                .find(|s| Arc::ptr_eq(&s.plugin, &p.plugin))
            {
                services.push(old.clone());
                continue;
            }
            let root = p
                .plugin
                .proxy_wasm_service(wasm::config_bytes(service.config.as_ref()))
                .await
                .map_err(|e| {
                    let why = match e {
                        wasm::PluginError::Unsupported { .. } => {
                            "only a Proxy-Wasm plugin runs as a service (the WIT world has no root context)".to_string()
                        }
                        e => e.to_string(),
                    };
                    (Some(p.cfg.name.clone()), src.err(format!("plugins[{i}].service"), why))
                })?;
            tracing::info!(plugin = %p.cfg.name, "plugin service started");
            services.push(ServiceRoot {
                plugin: p.plugin.clone(),
                _root: root,
            });
        }
        *self.state.lock().unwrap() = State {
            plugins,
            routes,
            services,
        };
        Ok(report)
    }

    /// Loads the config's functions and attaches them to the routes that name them.
    async fn attach_functions(&self, src: &Source, rt: &Runtime) -> Result<(), ConfigError> {
        let upstreams = self.upstreams.clone();
        let resolve: wasm::function::Resolver = Arc::new(move |name| upstreams.cluster(name));
        self.functions
            .attach(
                src,
                rt,
                self.plugins.engine(),
                self.cache_dir.as_deref(),
                &resolve,
            )
            .await
    }

    /// The call timings of `plugin` on `route`, made on first use.
    fn timings(&self, plugin: &str, route: &str) -> Arc<StageTimings> {
        self.timings
            .lock()
            .unwrap()
            .entry((plugin.to_owned(), route.to_owned()))
            .or_default()
            .clone()
    }

    /// Adds the plugins' families to `e`: health counters of the serving config's plugins, the
    /// compiled-code caches, and the metrics the plugins defined themselves.
    pub fn expose_metrics(&self, e: &mut Exposition) {
        self.functions.expose_metrics(e);
        self.host.stores.expose(e);
        self.host.cache.expose(e);
        let loaded = self.loaded();
        let snaps: Vec<_> = loaded
            .iter()
            .map(|p| (p.name(), p.health().snapshot()))
            .collect();
        let counters: [(&str, &str, HealthField); 5] = [
            ("gateway_plugin_calls", "Guest calls, by plugin.", |h| {
                h.calls
            }),
            (
                "gateway_plugin_failures",
                "Requests a plugin failed (any cause), by plugin.",
                |h| h.failures,
            ),
            ("gateway_plugin_traps", "Guest traps, by plugin.", |h| {
                h.traps
            }),
            (
                "gateway_plugin_cpu_limit",
                "Calls stopped by the CPU time limit, by plugin.",
                |h| h.cpu_limits,
            ),
            (
                "gateway_plugin_memory_limit",
                "Calls stopped by the memory limit, by plugin.",
                |h| h.memory_limits,
            ),
        ];
        for (name, help, read) in counters {
            let f = e.counter(name, help);
            for (plugin, snap) in &snaps {
                f.sample(&[("plugin", plugin)], read(snap));
            }
        }
        let f = e.counter(
            "gateway_plugin_output_lines_dropped",
            "Lines of a plugin's stdout and stderr left out of the log by its output rate, by plugin.",
        );
        for p in &loaded {
            f.sample(&[("plugin", p.name())], p.output_lines_dropped());
        }
        let f = e.gauge(
            "gateway_plugin_healthy",
            "Whether a plugin is healthy (not failing repeatedly), by plugin.",
        );
        for (plugin, snap) in &snaps {
            f.sample(&[("plugin", plugin)], u64::from(snap.healthy));
        }
        let counters: [(&str, &str, HealthField); 2] = [
            (
                "gateway_plugin_instances_created",
                "Instances (component instances, Proxy-Wasm VMs) started, by plugin.",
                |h| h.instances_created,
            ),
            (
                "gateway_plugin_instances_discarded",
                "Instances thrown away after a failure, by plugin.",
                |h| h.instances_discarded,
            ),
        ];
        for (name, help, read) in counters {
            let f = e.counter(name, help);
            for (plugin, snap) in &snaps {
                f.sample(&[("plugin", plugin)], read(snap));
            }
        }
        let f = e.gauge(
            "gateway_plugin_memory_peak_bytes",
            "The largest linear memory an instance of a plugin was granted, by plugin.",
        );
        for (plugin, snap) in &snaps {
            f.sample(&[("plugin", plugin)], snap.memory_peak);
        }
        let counts: Vec<_> = loaded.iter().map(|p| (p.name(), p.instances())).collect();
        let f = e.gauge(
            "gateway_plugin_instances",
            "Instances (component instances, Proxy-Wasm VMs) of a plugin alive now, by plugin.",
        );
        for (plugin, c) in &counts {
            f.sample(&[("plugin", plugin)], c.live as u64);
        }
        let f = e.gauge(
            "gateway_plugin_requests_in_flight",
            "Requests a plugin is serving now, by plugin.",
        );
        for (plugin, c) in &counts {
            f.sample(&[("plugin", plugin)], c.in_flight as u64);
        }
        let timings = self.timings.lock().unwrap().clone();
        let f = e.histogram(
            "gateway_plugin_call_duration_seconds",
            "Wall time of calls into a plugin (host waits such as outbound HTTP included), by plugin, route and phase.",
        );
        for ((plugin, route), t) in &timings {
            for (phase, h) in t.phases() {
                if h.count_and_sum().0 > 0 {
                    f.sample(
                        &[("plugin", plugin), ("route", route), ("phase", phase)],
                        h.snapshot(),
                    );
                }
            }
        }
        let engine = self.plugins.engine();
        e.counter(
            "gateway_wasm_compilations",
            "Plugins compiled (not taken from a cache of compiled code).",
        )
        .value(engine.compilations());
        e.counter(
            "gateway_wasm_cache_hits",
            "Compiled plugin code taken from a cache, by cache.",
        )
        .sample(&[("cache", "memory")], engine.memory_cache_hits())
        .sample(&[("cache", "disk")], engine.disk_cache_hits());
        self.host.metrics.expose(e);
    }

    /// The serving config's plugins.
    pub fn loaded(&self) -> Vec<Arc<LoadedPlugin>> {
        let state = self.state.lock().unwrap();
        state.plugins.iter().map(|p| p.plugin.clone()).collect()
    }

    /// The serving config's plugins as `GET /plugins` shows them; `rt` is the serving runtime (for the
    /// routes that use each plugin).
    pub fn describe(&self, rt: &Runtime) -> Vec<serde_json::Value> {
        let timings = self.timings.lock().unwrap().clone();
        let state = self.state.lock().unwrap();
        state
            .plugins
            .iter()
            .map(|p| {
                let health = p.plugin.health().snapshot();
                let routes: Vec<&str> = rt
                    .config
                    .routes
                    .iter()
                    .filter(|r| r.filters.iter().any(|f| f.plugin == p.cfg.name))
                    .map(|r| r.name.as_str())
                    .collect();
                let source = match (&p.cfg.path, &p.cfg.url) {
                    (Some(path), _) => serde_json::json!({"path": path}),
                    (None, url) => serde_json::json!({
                        "url": url.as_deref().map(crate::config::redact::shown_url)
                    }),
                };
                // Calls by route and phase: how many, and their total and mean time.
                let mut calls_by_route = serde_json::Map::new();
                for route in &routes {
                    let Some(t) = timings.get(&(p.cfg.name.clone(), (*route).to_owned())) else {
                        continue;
                    };
                    let mut phases = serde_json::Map::new();
                    for (phase, h) in t.phases() {
                        let (count, sum) = h.count_and_sum();
                        if count > 0 {
                            phases.insert(
                                phase.into(),
                                serde_json::json!({
                                    "calls": count,
                                    "seconds": sum,
                                    "mean_us": (sum * 1e6 / count as f64).round(),
                                }),
                            );
                        }
                    }
                    calls_by_route.insert((*route).to_owned(), phases.into());
                }
                serde_json::json!({
                    "name": p.cfg.name,
                    "sha256": p.sha256,
                    "source": source,
                    "abi": p.plugin.abi(),
                    "routes": routes,
                    "instances": p.plugin.instances(),
                    "instances_created": health.instances_created,
                    "instances_discarded": health.instances_discarded,
                    "memory_peak_bytes": health.memory_peak,
                    "calls": health.calls,
                    "calls_by_route": calls_by_route,
                    "failures": health.failures,
                    "traps": health.traps,
                    "cpu_limits": health.cpu_limits,
                    "memory_limits": health.memory_limits,
                    "healthy": health.healthy,
                    "last_reload": p.last,
                })
            })
            .collect()
    }

    /// Compiled-code figures of the engine: compilations and cache hits.
    pub fn cache_figures(&self) -> serde_json::Value {
        let e = self.plugins.engine();
        serde_json::json!({
            "dir": self.cache_dir,
            "compilations": e.compilations(),
            "memory_hits": e.memory_cache_hits(),
            "disk_hits": e.disk_cache_hits(),
        })
    }
}

/// What [`WasmServices::attach`] did, by name.
#[derive(Debug, Default, Clone)]
pub struct AttachReport {
    /// Plugins taken over unchanged from the serving config.
    pub plugins_reused: Vec<String>,
    /// Plugins loaded (compiled, or taken from a cache of compiled code).
    pub plugins_loaded: Vec<String>,
    /// Routes with filters that kept their filter stages.
    pub routes_kept: Vec<String>,
    /// Routes with filters that got new filter stages.
    pub routes_rebuilt: Vec<String>,
}

impl std::fmt::Display for AttachReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "plugins: {} reused, {} loaded; routes with filters: {} kept, {} rebuilt",
            self.plugins_reused.len(),
            self.plugins_loaded.len(),
            self.routes_kept.len(),
            self.routes_rebuilt.len()
        )
    }
}

/// The last reload's outcome for one plugin, as `/plugins` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginReload {
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// `ok` or `error`.
    pub result: &'static str,
    /// `reused` (kept from the previous config), `loaded`, or `failed`.
    pub action: &'static str,
    /// Where a loaded plugin's compiled code came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compiled: Option<Origin>,
    /// What happened, or the error (the plugin that serves is the one loaded before).
    pub message: String,
}

impl PluginReload {
    fn ok(action: &'static str, compiled: Option<Origin>, message: &str) -> PluginReload {
        PluginReload {
            at_unix_ms: unix_ms(),
            result: "ok",
            action,
            compiled,
            message: message.to_owned(),
        }
    }

    fn error(message: String) -> PluginReload {
        PluginReload {
            at_unix_ms: unix_ms(),
            result: "error",
            action: "failed",
            compiled: None,
            message,
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where a rejected filter config is wrong: a component whose `init` error starts with a field path
/// inside its config (`key_names[1]: ...`, the convention of the first-party plugins) points at that
/// field under `config` when the config writes it; otherwise at `config`.
fn config_field(src: &Source, config: &str, e: &wasm::PluginError) -> String {
    let wasm::PluginError::InitRejected { message, .. } = e else {
        return config.to_string();
    };
    let Some((path, _)) = message.split_once(": ") else {
        return config.to_string();
    };
    let is_path = path.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']'));
    let field = format!("{config}.{path}");
    if is_path && src.has_field(&field) {
        field
    } else {
        config.to_string()
    }
}

/// Where a plugin to serve comes from.
#[derive(Clone, Copy)]
enum Listing {
    /// `plugins[i]`.
    Listed(usize),
    /// A built-in plugin named by `routes[route].filters[filter]` without a `plugins` entry.
    Used { route: usize, filter: usize },
}

/// The error for a filter naming a plugin that is neither defined nor built in.
fn unknown_plugin(name: &str) -> String {
    let builtins: Vec<&str> = crate::builtin::all().iter().map(|b| b.name).collect();
    let builtins = if builtins.is_empty() {
        "none".to_string()
    } else {
        builtins.join(", ")
    };
    format!("unknown plugin `{name}`; define it under `plugins` (built in: {builtins})")
}

/// Whether two plugin configs load the same plugin from the same content: everything but where the
/// file comes from (`path`, `url`, `sha256`, `ca`) is equal.
/// The `kv_namespaces:` settings of the namespace `p` is granted, if it has one listed there.
fn namespace_settings(
    cfg: &config::Config,
    p: &config::Plugin,
) -> Option<config::stores::KvNamespace> {
    let ns = p.capabilities.as_ref()?.kv_namespace.as_ref()?;
    cfg.kv_namespaces.get(ns).cloned()
}

fn same_settings(a: &config::Plugin, b: &config::Plugin) -> bool {
    let strip = |p: &config::Plugin| config::Plugin {
        path: None,
        url: None,
        sha256: None,
        ca: None,
        ..p.clone()
    };
    strip(a) == strip(b)
}

/// The plugins and route stages of the serving config.
#[derive(Clone, Default)]
struct State {
    plugins: Vec<ServingPlugin>,
    routes: HashMap<String, RouteStages>,
    /// The root contexts of plugins that run as services, kept alive with the plugin (dropping one
    /// deletes its root context).
    services: Vec<ServiceRoot>,
}

/// A plugin's background service: its root context, made for the plugin it was made with.
#[derive(Clone)]
struct ServiceRoot {
    plugin: Arc<LoadedPlugin>,
    _root: Arc<wasm::proxy_wasm::ProxyWasmFilter>,
}

/// A plugin of the serving config.
#[derive(Clone)]
struct ServingPlugin {
    cfg: config::Plugin,
    /// The settings of its key-value namespace when it was loaded (`kv_namespaces:`; `None`: local,
    /// not listed): a plugin whose namespace moves to another backend is loaded again, so its `init`
    /// sees where its data now lives (rate-limiting checks its `policy` there).
    store: Option<config::stores::KvNamespace>,
    sha256: String,
    plugin: Arc<LoadedPlugin>,
    last: PluginReload,
}

/// What a route's filter stages were made from.
#[derive(Clone)]
struct StageKey {
    plugin: Arc<LoadedPlugin>,
    config: Bytes,
    policy: config::FailurePolicy,
}

impl PartialEq for StageKey {
    fn eq(&self, other: &StageKey) -> bool {
        Arc::ptr_eq(&self.plugin, &other.plugin)
            && self.config == other.config
            && self.policy == other.policy
    }
}

/// A route's filter stages and what they were made from.
#[derive(Clone)]
struct RouteStages {
    key: Vec<StageKey>,
    /// The fingerprint of the consumers the stages were configured with: `init` may have looked
    /// them up (an `anonymous` or `acl` entry naming one), so stages are made anew when they change.
    consumers: [u8; 32],
    stages: Arc<[Stage]>,
}

/// Reads one counter of a plugin's health.
type HealthField = fn(&wasm::HealthSnapshot) -> u64;

/// Plugin callouts through the upstream clusters of whatever runtime is serving.
#[derive(Default)]
struct GatewayUpstreams {
    serving: OnceLock<Weak<ArcSwap<Runtime>>>,
}

impl GatewayUpstreams {
    fn cluster(&self, name: &str) -> Option<Arc<crate::upstream::Cluster>> {
        let serving = self.serving.get()?.upgrade()?;
        let rt = serving.load();
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
            let cluster = cluster.ok_or(CalloutError::UnknownUpstream(name))?;
            crate::host::callout(&cluster, req, timeout).await
        })
    }

    fn stream(
        &self,
        upstream: &str,
        req: http::Request<crate::body::Body>,
    ) -> BoxFuture<'static, Result<http::Response<crate::body::Body>, CalloutError>> {
        let cluster = self.cluster(upstream);
        let name = upstream.to_owned();
        Box::pin(async move {
            let cluster = cluster.ok_or(CalloutError::UnknownUpstream(name))?;
            crate::host::stream_callout(&cluster, req).await
        })
    }
}
