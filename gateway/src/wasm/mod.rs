//! The Wasm sandbox: the process's engine ([`engine`]), plugin loading ([`Plugins`],
//! [`LoadedPlugin`]), the WASI preview 1 shim ([`wasi`]), and the two ABIs, which translate wire
//! formats only: the Proxy-Wasm host ([`proxy_wasm`]) and the host of the gateway's WIT world
//! ([`component`]). What both share: `sandbox` (stores, limits, epoch deadlines, failure
//! classification, health accounting, admission), `context` (one plugin's name, host core, grants and
//! sandbox) and, outside this module because it knows nothing of wasmtime, [`crate::host`] (the
//! request handle with its phase rules, callouts, shared data, queues, metrics, logs). A loaded plugin
//! makes a [`crate::filter::Filter`] per route config.

pub mod component;
mod context;
pub mod engine;
pub mod function;
mod health;
pub mod proxy_wasm;
pub(crate) mod sandbox;
pub mod wasi;

pub use engine::{EngineOptions, WasmEngine};
pub use health::{HealthSnapshot, PluginHealth};
pub use sandbox::{live_instances, StoreLimiter, START_CPU_LIMIT};

use crate::config::{self, FailurePolicy, PluginAbi};
use crate::filter::Filter;
use crate::host::HostCore;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a plugin could not be loaded or configured. Every variant names the plugin (or the file).
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The engine could not be built.
    #[error("wasm engine: {0}")]
    Engine(String),
    /// The compiled-code cache directory is unusable.
    #[error("wasm cache {path}: {reason}")]
    Cache {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The `.wasm` file could not be read.
    #[error("plugin `{plugin}`: cannot read {path}: {reason}")]
    Read {
        /// Plugin name.
        plugin: String,
        /// Resolved path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The module does not compile (not Wasm, unsupported feature, ...).
    #[error("plugin `{plugin}`: does not compile: {reason}")]
    Compile {
        /// Plugin name.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// The module is not something this gateway can run (ABI, imports, exports).
    #[error("plugin `{plugin}`: {reason}")]
    Unsupported {
        /// Plugin name.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// Instantiating or starting the module failed (including a trap in its start functions).
    #[error("plugin `{plugin}`: failed to start: {reason}")]
    Start {
        /// Plugin name.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// `on_vm_start` returned false.
    #[error("plugin `{plugin}`: rejected its VM configuration (on_vm_start returned false)")]
    VmStartRejected {
        /// Plugin name.
        plugin: String,
    },
    /// `on_configure` returned false for a route's config.
    #[error("plugin `{plugin}`: rejected the configuration of route `{route}` (on_configure returned false)")]
    ConfigureRejected {
        /// Plugin name.
        plugin: String,
        /// Route name.
        route: String,
    },
    /// A component's `init` returned an error for a route's config.
    #[error("plugin `{plugin}`: rejected the configuration of route `{route}`: {message}")]
    InitRejected {
        /// Plugin name.
        plugin: String,
        /// Route name.
        route: String,
        /// The plugin's message.
        message: String,
    },
    /// The plugin failed (trapped, hit a limit) while being configured.
    #[error("plugin `{plugin}`: failed while configuring route `{route}`: {reason}")]
    ConfigureFailed {
        /// Plugin name.
        plugin: String,
        /// Route name.
        route: String,
        /// Why.
        reason: String,
    },
}

/// Loads plugins into the process's engine.
#[derive(Debug, Clone)]
pub struct Plugins {
    engine: Arc<WasmEngine>,
}

impl Plugins {
    /// Plugins loaded into `engine` (one per process; keep it across reloads so its cache stays warm).
    pub fn new(engine: Arc<WasmEngine>) -> Plugins {
        Plugins { engine }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<WasmEngine> {
        &self.engine
    }

    /// Reads, compiles (or loads from cache) and starts the plugin `cfg` from its `path`; a relative
    /// path is resolved against `base_dir`. Call from within a tokio runtime (timers and callouts are
    /// spawned on it).
    pub async fn load(
        &self,
        cfg: &config::Plugin,
        base_dir: &Path,
        host: Arc<HostCore>,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let Some(p) = &cfg.path else {
            return Err(PluginError::Unsupported {
                plugin: cfg.name.clone(),
                reason:
                    "no `path` to read (a `url` source is fetched by the gateway's plugin host)"
                        .into(),
            });
        };
        let path = if p.is_absolute() {
            p.clone()
        } else {
            base_dir.join(p)
        };
        let bytes = std::fs::read(&path).map_err(|e| PluginError::Read {
            plugin: cfg.name.clone(),
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(self.load_bytes(cfg, bytes.into(), host).await?.0)
    }

    /// Compiles (or takes from a cache) and starts the plugin `cfg` whose `.wasm` file is `bytes`, and
    /// says where its compiled code came from. Compilation runs on a blocking thread, so the async
    /// workers keep serving meanwhile.
    pub async fn load_bytes(
        &self,
        cfg: &config::Plugin,
        bytes: Arc<[u8]>,
        host: Arc<HostCore>,
    ) -> Result<(Arc<LoadedPlugin>, engine::Origin), PluginError> {
        if !bytes.starts_with(b"\0asm") || bytes.len() < 8 {
            return Err(PluginError::Unsupported {
                plugin: cfg.name.clone(),
                reason: format!(
                    "not a WebAssembly module or component ({} bytes without the `\\0asm` header)",
                    bytes.len()
                ),
            });
        }
        let is_component = bytes[6..8] == [1, 0];
        let abi = cfg.abi.unwrap_or(if is_component {
            PluginAbi::Component
        } else {
            PluginAbi::ProxyWasm
        });
        if is_component != (abi == PluginAbi::Component) {
            return Err(PluginError::Unsupported {
                plugin: cfg.name.clone(),
                reason: format!(
                    "the config says abi `{}` but the file is {}",
                    if abi == PluginAbi::Component {
                        "component"
                    } else {
                        "proxy_wasm"
                    },
                    if is_component {
                        "a component"
                    } else {
                        "a core module"
                    }
                ),
            });
        }
        let engine = self.engine.clone();
        let name = cfg.name.clone();
        let (compiled, sha256, origin) =
            tokio::task::spawn_blocking(move || engine.compiled(&name, &bytes, is_component))
                .await
                .map_err(|e| PluginError::Compile {
                    plugin: cfg.name.clone(),
                    reason: format!("the compiler thread failed: {e}"),
                })??;
        let ctx = context::PluginCtx::new(cfg, abi, self.engine.clone(), host);
        let inner = match compiled {
            engine::Compiled::Component(compiled) => {
                Inner::Component(component::ComponentPlugin::new(
                    ctx,
                    compiled,
                    cfg.instance_mode.unwrap_or_default(),
                )?)
            }
            engine::Compiled::Module(module) => {
                let vm_config = match &cfg.vm_config {
                    None => Bytes::new(),
                    Some(serde_json::Value::String(s)) => Bytes::from(s.clone()),
                    Some(other) => Bytes::from(other.to_string()),
                };
                Inner::ProxyWasm(
                    proxy_wasm::ProxyWasmPlugin::new(
                        ctx,
                        module,
                        vm_config,
                        proxy_wasm::Skip::of(&cfg.skip),
                        cfg.vms.map(|n| n as usize),
                    )
                    .await?,
                )
            }
        };
        LIVE_PLUGINS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok((
            Arc::new(LoadedPlugin {
                name: cfg.name.clone(),
                sha256,
                inner,
            }),
            origin,
        ))
    }
}

/// A plugin's instances at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct InstanceCounts {
    /// Instances alive (component instances, or Proxy-Wasm VMs).
    pub live: usize,
    /// Of those, instances not serving a request now.
    pub idle: usize,
    /// Requests being served by the plugin now.
    pub in_flight: usize,
}

/// Loaded plugins alive in this process (shown as `gateway_plugins_live`).
static LIVE_PLUGINS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many loaded plugins are alive: those of the serving config plus old ones still held by requests
/// in flight.
pub fn live_plugins() -> usize {
    LIVE_PLUGINS.load(std::sync::atomic::Ordering::Relaxed)
}

impl Drop for LoadedPlugin {
    fn drop(&mut self) {
        LIVE_PLUGINS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One loaded plugin: compiled, started, ready to be configured per route.
#[derive(Debug)]
pub struct LoadedPlugin {
    name: String,
    sha256: String,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    ProxyWasm(Arc<proxy_wasm::ProxyWasmPlugin>),
    Component(Arc<component::ComponentPlugin>),
}

impl LoadedPlugin {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sha256 of its `.wasm` file, in hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Its health counters (for the admin API and metrics).
    pub fn health(&self) -> &Arc<PluginHealth> {
        match &self.inner {
            Inner::ProxyWasm(p) => p.health(),
            Inner::Component(c) => c.health(),
        }
    }

    /// Lines of its stdout and stderr left out of the log by the output rate limit.
    pub fn output_lines_dropped(&self) -> u64 {
        match &self.inner {
            Inner::ProxyWasm(p) => p.sandbox().output().dropped(),
            Inner::Component(c) => c.sandbox().output().dropped(),
        }
    }

    /// Its instances now.
    pub fn instances(&self) -> InstanceCounts {
        let (live, in_flight) = match &self.inner {
            Inner::ProxyWasm(p) => p.instance_counts(),
            Inner::Component(c) => c.instance_counts(),
        };
        InstanceCounts {
            live,
            idle: live.saturating_sub(in_flight),
            in_flight,
        }
    }

    /// The ABI the plugin speaks.
    pub fn abi(&self) -> PluginAbi {
        match &self.inner {
            Inner::ProxyWasm(_) => PluginAbi::ProxyWasm,
            Inner::Component(_) => PluginAbi::Component,
        }
    }

    /// Whether calls into the plugin run on a fiber: a component that imports a host call that can
    /// wait (outbound HTTP, the key-value store, a cache lookup, a WASI timer, socket or file).
    /// Proxy-Wasm callbacks, whose host functions never wait, and other components are called on
    /// the caller's thread.
    pub fn on_fiber(&self) -> bool {
        match &self.inner {
            Inner::ProxyWasm(_) => false,
            Inner::Component(c) => !c.is_sync(),
        }
    }

    /// A filter for `route` with this route's plugin config (`on_configure` runs now; false → error).
    /// `policy` is recorded on the filter for the chain to read ([`ProxyWasmFilter::failure_policy`]).
    pub async fn filter(
        &self,
        route: &str,
        config: Bytes,
        policy: FailurePolicy,
    ) -> Result<Arc<dyn Filter>, PluginError> {
        self.filter_in(route, config, policy, &Arc::default()).await
    }

    /// Like [`LoadedPlugin::filter`], for a config whose consumers are `registry` (a component's
    /// `init` may look them up).
    pub async fn filter_in(
        &self,
        route: &str,
        config: Bytes,
        policy: FailurePolicy,
        registry: &Arc<crate::consumers::Registry>,
    ) -> Result<Arc<dyn Filter>, PluginError> {
        match &self.inner {
            Inner::ProxyWasm(p) => {
                Ok(proxy_wasm::ProxyWasmPlugin::filter(p, route, config, policy, false).await?)
            }
            Inner::Component(c) => {
                Ok(component::ComponentPlugin::filter(c, route, config, policy, registry).await?)
            }
        }
    }

    /// Like [`LoadedPlugin::filter`], with the concrete type of a component plugin.
    pub async fn component_filter(
        &self,
        route: &str,
        config: Bytes,
        policy: FailurePolicy,
    ) -> Result<Arc<component::ComponentFilter>, PluginError> {
        match &self.inner {
            Inner::Component(c) => {
                component::ComponentPlugin::filter(c, route, config, policy, &Arc::default()).await
            }
            Inner::ProxyWasm(_) => Err(PluginError::Unsupported {
                plugin: self.name.clone(),
                reason: "a Proxy-Wasm plugin, not a component".into(),
            }),
        }
    }

    /// Like [`LoadedPlugin::filter`], with the concrete type.
    pub async fn proxy_wasm_filter(
        &self,
        route: &str,
        config: Bytes,
        policy: FailurePolicy,
    ) -> Result<Arc<proxy_wasm::ProxyWasmFilter>, PluginError> {
        self.proxy_wasm_root(route, config, policy, false).await
    }

    /// The root context of a Proxy-Wasm plugin's background service (`service` in its config):
    /// made in the plugin's first VM only, as Envoy runs a singleton service once.
    pub async fn proxy_wasm_service(
        &self,
        config: Bytes,
    ) -> Result<Arc<proxy_wasm::ProxyWasmFilter>, PluginError> {
        self.proxy_wasm_root(&self.name, config, FailurePolicy::Closed, true)
            .await
    }

    async fn proxy_wasm_root(
        &self,
        route: &str,
        config: Bytes,
        policy: FailurePolicy,
        service: bool,
    ) -> Result<Arc<proxy_wasm::ProxyWasmFilter>, PluginError> {
        match &self.inner {
            Inner::ProxyWasm(p) => {
                proxy_wasm::ProxyWasmPlugin::filter(p, route, config, policy, service).await
            }
            Inner::Component(_) => Err(PluginError::Unsupported {
                plugin: self.name.clone(),
                reason: "a component, not a Proxy-Wasm plugin".into(),
            }),
        }
    }
}

/// The bytes a route's filter config becomes: a string as it is, anything else as JSON, none as empty.
pub fn config_bytes(config: Option<&serde_json::Value>) -> Bytes {
    match config {
        None => Bytes::new(),
        Some(serde_json::Value::String(s)) => Bytes::from(s.clone()),
        Some(other) => Bytes::from(other.to_string()),
    }
}
