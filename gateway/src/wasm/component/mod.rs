//! The host of the gateway's own WIT world (`wit/`, package `gateway:filter@0.1.0`): components bound
//! with `wasmtime::component::bindgen!`, run under the same limits and failure policy as Proxy-Wasm
//! plugins, calling the same host core. A [`ComponentPlugin`] is one loaded component; configured for
//! a route it becomes a [`ComponentFilter`], whose requests run on a fresh instance each
//! ([`InstanceMode::Fresh`]) or on warm instances reused one request after another
//! ([`InstanceMode::Reuse`]).

mod ctx;
mod host;
mod kv;
mod state;

pub use host::MAX_RANDOM_BYTES;
pub use kv::{MAX_KEY_LEN, MAX_VALUE_LEN};
pub use state::{CompState, RequestRes, ResponseRes};

use crate::config::{FailurePolicy, InstanceMode, PluginCapabilities, PluginLimits};
use crate::filter::{Filter, FilterCtx, FilterError, RequestInfo};
use crate::host::HostCore;
use crate::wasm::health::FailureKind;
use crate::wasm::{PluginError, PluginHealth, WasmEngine};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Store, Trap, UpdateDeadline};

/// Generated bindings of the `filter` world.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "filter",
        imports: {
            "gateway:filter/http-client.send": async,
        },
        exports: { default: async },
        with: {
            "gateway:filter/types.request": crate::wasm::component::RequestRes,
            "gateway:filter/types.response": crate::wasm::component::ResponseRes,
        },
    });
}

use bindings::gateway::filter::types::{BodyMode as WitBodyMode, Options};

/// CPU time that instantiating a component and its `init` may take, when the per-call limit is
/// smaller. Default: 1s.
pub const START_CPU_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// What host calls need of the plugin, outside the store.
pub struct PluginShared {
    pub(crate) name: Arc<str>,
    pub(crate) host: Arc<HostCore>,
    pub(crate) capabilities: PluginCapabilities,
}

/// A loaded component plugin.
pub struct ComponentPlugin {
    shared: Arc<PluginShared>,
    engine: Arc<WasmEngine>,
    pre: bindings::FilterPre<CompState>,
    limits: PluginLimits,
    mode: InstanceMode,
    health: Arc<PluginHealth>,
    live: AtomicU32,
    instances: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for ComponentPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentPlugin")
            .field("name", &self.shared.name)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// One instance with its store.
pub(crate) struct Instance {
    store: Store<CompState>,
    bindings: bindings::Filter,
    _live: crate::wasm::sandbox::InstanceGuard,
}

/// Turns a failed call into the filter error, using what the limiter saw.
fn classify(err: &wasmtime::Error, memory_hit: bool) -> (FilterError, FailureKind) {
    if let Some(trap) = err.downcast_ref::<Trap>() {
        if *trap == Trap::Interrupt {
            return (FilterError::CpuLimit, FailureKind::Cpu);
        }
    }
    if memory_hit {
        return (FilterError::MemoryLimit, FailureKind::Memory);
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return (FilterError::Trap(trap.to_string()), FailureKind::Trap);
    }
    (FilterError::Trap(format!("{err:#}")), FailureKind::Trap)
}

impl ComponentPlugin {
    /// Links the component against the host (the WIT world and WASI with nothing granted).
    pub(crate) fn new(
        engine: Arc<WasmEngine>,
        name: String,
        component: Component,
        cfg: &crate::config::Plugin,
        host: Arc<HostCore>,
    ) -> Result<Arc<ComponentPlugin>, PluginError> {
        let unsupported = |reason: String| PluginError::Unsupported {
            plugin: name.clone(),
            reason,
        };
        let mut linker: Linker<CompState> = Linker::new(engine.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| unsupported(format!("{e:#}")))?;
        bindings::Filter::add_to_linker::<CompState, HasSelf<CompState>>(&mut linker, |s| s)
            .map_err(|e| unsupported(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| unsupported(format!("cannot link: {e:#}")))?;
        let pre = bindings::FilterPre::new(pre).map_err(|e| {
            unsupported(format!(
                "not a gateway:filter@0.1.0 component (exports): {e:#}"
            ))
        })?;
        Ok(Arc::new(ComponentPlugin {
            shared: Arc::new(PluginShared {
                name: Arc::from(name.as_str()),
                host,
                capabilities: cfg.capabilities.clone(),
            }),
            engine,
            pre,
            limits: cfg.limits.clone(),
            mode: cfg.instance_mode,
            health: Arc::new(PluginHealth::default()),
            live: AtomicU32::new(0),
            instances: Arc::default(),
        }))
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its health counters.
    pub fn health(&self) -> &Arc<PluginHealth> {
        &self.health
    }

    /// Instances alive and requests in flight.
    pub(crate) fn instance_counts(&self) -> (usize, usize) {
        (
            self.instances.load(Ordering::Relaxed),
            self.live.load(Ordering::Relaxed) as usize,
        )
    }

    /// Its instance mode.
    pub fn instance_mode(&self) -> InstanceMode {
        self.mode
    }

    fn cpu_ticks(&self) -> u64 {
        WasmEngine::ticks_for(self.limits.cpu_per_call.0)
    }

    /// A new instance with `init(config)` run on it.
    async fn instantiate(&self, config: &str) -> Result<(Instance, Options), InitError> {
        let state = CompState::new(self.shared.clone(), self.limits.memory.0);
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|s| &mut s.limiter);
        let ticks = self.cpu_ticks();
        store.epoch_deadline_callback(move |mut ctx| {
            if std::mem::take(&mut ctx.data_mut().waited) {
                Ok(UpdateDeadline::Continue(ticks))
            } else {
                Err(Trap::Interrupt.into())
            }
        });
        let start_budget = self.limits.cpu_per_call.0.max(START_CPU_LIMIT);
        store.set_epoch_deadline(WasmEngine::ticks_for(start_budget));
        self.health.instance_created();
        let bindings = match self.pre.instantiate_async(&mut store).await {
            Ok(b) => b,
            Err(e) => {
                let (err, kind) = classify(&e, store.data().limiter.hit());
                self.health.failure(kind);
                return Err(InitError::Failed(err));
            }
        };
        let mut inst = Instance {
            store,
            bindings,
            _live: crate::wasm::sandbox::InstanceGuard::new(&self.instances),
        };
        inst.store
            .set_epoch_deadline(WasmEngine::ticks_for(start_budget));
        inst.store.data_mut().limiter.reset();
        self.health.call();
        let r = inst
            .bindings
            .call_init(&mut inst.store, config)
            .await
            .map_err(|e| InitError::Failed(self.failed(&e, &inst.store)));
        match r? {
            Ok(options) => {
                self.health.success();
                Ok((inst, options))
            }
            Err(message) => Err(InitError::Rejected(message)),
        }
    }

    /// Counts and logs a failed call; the caller throws the instance away.
    fn failed(&self, e: &wasmtime::Error, store: &Store<CompState>) -> FilterError {
        let (err, kind) = classify(e, store.data().limiter.hit());
        self.health.failure(kind);
        self.health.instance_discarded();
        tracing::warn!(plugin = %self.shared.name, "plugin call failed: {err}");
        err
    }

    /// Configures the plugin for `route`: `init` runs now on a new instance, and its error rejects
    /// the config.
    pub(crate) async fn filter(
        this: &Arc<ComponentPlugin>,
        route: &str,
        config: bytes::Bytes,
        policy: FailurePolicy,
    ) -> Result<Arc<ComponentFilter>, PluginError> {
        let config =
            String::from_utf8(config.to_vec()).map_err(|_| PluginError::ConfigureFailed {
                plugin: this.name().to_string(),
                route: route.to_string(),
                reason: "the config is not UTF-8".into(),
            })?;
        let (inst, options) = this.instantiate(&config).await.map_err(|e| match e {
            InitError::Rejected(message) => PluginError::InitRejected {
                plugin: this.name().to_string(),
                route: route.to_string(),
                message,
            },
            InitError::Failed(e) => PluginError::ConfigureFailed {
                plugin: this.name().to_string(),
                route: route.to_string(),
                reason: e.to_string(),
            },
        })?;
        let filter = FilterInner {
            plugin: this.clone(),
            route: Arc::from(route),
            config: Arc::from(config.as_str()),
            options: (options.request_body, options.response_body),
            policy,
            warm: Mutex::new(Vec::new()),
        };
        if this.mode == InstanceMode::Reuse {
            filter.release(inst);
        }
        Ok(Arc::new(ComponentFilter {
            inner: Arc::new(filter),
        }))
    }
}

/// Why an instance could not be had.
enum InitError {
    /// `init` returned an error.
    Rejected(String),
    /// Instantiation or `init` failed.
    Failed(FilterError),
}

/// A component plugin configured for one route.
pub struct ComponentFilter {
    inner: Arc<FilterInner>,
}

/// What a filter's request contexts share.
pub(crate) struct FilterInner {
    plugin: Arc<ComponentPlugin>,
    route: Arc<str>,
    config: Arc<str>,
    options: (WitBodyMode, WitBodyMode),
    policy: FailurePolicy,
    /// Idle warm instances (reuse mode), each already initialized with this route's config.
    warm: Mutex<Vec<Instance>>,
}

impl std::fmt::Debug for ComponentFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentFilter")
            .field("plugin", &self.inner.plugin.name())
            .field("route", &self.inner.route)
            .finish_non_exhaustive()
    }
}

impl ComponentFilter {
    /// The failure policy this filter was configured with on its route.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.inner.policy
    }

    /// The route.
    pub fn route(&self) -> &str {
        &self.inner.route
    }

    /// Idle warm instances (always 0 in fresh mode).
    pub fn warm_instances(&self) -> usize {
        self.inner
            .warm
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl FilterInner {
    /// An instance for one request: a warm one (reuse mode) or a new one.
    async fn acquire(&self) -> Result<Instance, FilterError> {
        if self.plugin.mode == InstanceMode::Reuse {
            if let Some(inst) = self.warm.lock().unwrap_or_else(|e| e.into_inner()).pop() {
                return Ok(inst);
            }
        }
        match self.plugin.instantiate(&self.config).await {
            Ok((inst, _)) => Ok(inst),
            Err(InitError::Failed(e)) => Err(e),
            Err(InitError::Rejected(m)) => Err(FilterError::Unavailable(format!(
                "plugin `{}` rejected its config on a new instance: {m}",
                self.plugin.name()
            ))),
        }
    }

    /// Gives a healthy instance back after its request (reuse mode; fresh instances are dropped).
    fn release(&self, mut inst: Instance) {
        if self.plugin.mode != InstanceMode::Reuse {
            return;
        }
        inst.store.data_mut().end_request();
        let mut warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        if warm.len() < self.plugin.limits.instances as usize {
            warm.push(inst);
        }
    }
}

impl Filter for ComponentFilter {
    fn name(&self) -> &str {
        self.inner.plugin.name()
    }

    fn new_ctx(&self, info: &RequestInfo) -> Result<Box<dyn FilterCtx>, FilterError> {
        let plugin = &self.inner.plugin;
        let limit = plugin.limits.instances;
        if plugin.live.fetch_add(1, Ordering::AcqRel) >= limit {
            plugin.live.fetch_sub(1, Ordering::AcqRel);
            return Err(FilterError::Unavailable(format!(
                "plugin `{}` has {limit} requests in flight (its instance limit)",
                plugin.name()
            )));
        }
        Ok(Box::new(ctx::ComponentCtx::new(
            self.inner.clone(),
            info.clone(),
        )))
    }
}
