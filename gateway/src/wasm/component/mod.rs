//! The host of the gateway's own WIT world (`wit/`, package `gateway:filter@0.1.5`; components built against 0.1.0 to 0.1.4 link too, and get every handler called): components bound
//! with `wasmtime::component::bindgen!`, run under the same limits and failure policy as Proxy-Wasm
//! plugins, calling the same host core. A [`ComponentPlugin`] is one loaded component; configured for
//! a route it becomes a [`ComponentFilter`], whose requests run on a fresh instance each
//! ([`InstanceMode::Fresh`]) or on warm instances reused one request after another
//! ([`InstanceMode::Reuse`]).

mod cache;
mod consumers;
mod ctx;
mod host;
mod kv;
mod phases;
mod state;
mod sync_io;
mod trace;

pub use cache::MAX_CACHE_KEY_LEN;
pub use host::MAX_RANDOM_BYTES;
pub use kv::{MAX_KEY_LEN, MAX_VALUE_LEN};
pub use state::{CompState, RequestRes, ResponseRes};

use crate::config::{FailurePolicy, InstanceMode};
use crate::filter::{Filter, FilterCtx, FilterError, RequestInfo};
use crate::wasm::context::PluginCtx;
use crate::wasm::sandbox::InstanceGuard;
use crate::wasm::{PluginError, PluginHealth};
use std::sync::{Arc, Mutex};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::Store;

/// Generated bindings of the `filter` world.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "filter",
        // Every host call is a TRACE event with its arguments and result (lists too), for
        // `gateway plugin test --trace`; off, each costs one check of the log level.
        imports: {
            default: tracing | verbose_tracing,
            "gateway:filter/http-client.send": async | tracing | verbose_tracing,
            "gateway:filter/http-client.send-all": async | tracing | verbose_tracing,
            // A namespace may be in Redis: every store call can wait on the network.
            "gateway:filter/kv.get": async | tracing | verbose_tracing,
            "gateway:filter/kv.set": async | tracing | verbose_tracing,
            "gateway:filter/kv.delete": async | tracing | verbose_tracing,
            "gateway:filter/kv.increment": async | tracing | verbose_tracing,
            "gateway:filter/kv.compare-and-swap": async | tracing | verbose_tracing,
            "gateway:filter/store.backend": async | tracing | verbose_tracing,
            "gateway:filter/store.get": async | tracing | verbose_tracing,
            "gateway:filter/store.set": async | tracing | verbose_tracing,
            "gateway:filter/store.delete": async | tracing | verbose_tracing,
            "gateway:filter/store.increment": async | tracing | verbose_tracing,
            "gateway:filter/store.compare-and-swap": async | tracing | verbose_tracing,
            // A lookup may wait for another request's fill of the same key.
            "gateway:filter/cache.lookup": async | tracing | verbose_tracing,
        },
        exports: { default: async },
        with: {
            "gateway:filter/types.request": crate::wasm::component::RequestRes,
            "gateway:filter/types.response": crate::wasm::component::ResponseRes,
        },
    });

    use wasmtime::component::{ComponentExportIndex, Instance};
    use wasmtime::AsContextMut;

    impl<T: Send + 'static> FilterPre<T> {
        /// [`FilterPre::instantiate_async`] without the type-check of every export that
        /// `FilterIndices::load` repeats on each new instance (2.9 k instructions, 4% of a fresh
        /// instance): [`FilterPre::new`] checked the exports against the component's type once, and
        /// every instance of the component has that type.
        pub(crate) async fn instantiate_checked_async(
            &self,
            mut store: impl AsContextMut<Data = T>,
        ) -> wasmtime::Result<Filter> {
            let mut store = store.as_context_mut();
            let instance = self.instance_pre.instantiate_async(&mut store).await?;
            self.indices.exports(store, &instance)
        }

        /// [`FilterPre::instantiate`] without the repeated type-checks (as
        /// [`Self::instantiate_checked_async`]).
        pub(crate) fn instantiate_checked(
            &self,
            mut store: impl AsContextMut<Data = T>,
        ) -> wasmtime::Result<Filter> {
            let mut store = store.as_context_mut();
            let instance = self.instance_pre.instantiate(&mut store)?;
            self.indices.exports(store, &instance)
        }
    }

    impl FilterIndices {
        /// The exports of `instance`, an instance of the component these indices were checked
        /// against.
        fn exports(
            &self,
            mut store: impl AsContextMut,
            instance: &Instance,
        ) -> wasmtime::Result<Filter> {
            let mut func = |index: &ComponentExportIndex| {
                instance
                    .get_func(&mut store, index)
                    .ok_or_else(|| wasmtime::format_err!("a checked export is missing"))
            };
            Ok(Filter {
                init: func(&self.init)?,
                on_request: func(&self.on_request)?,
                on_request_body: func(&self.on_request_body)?,
                on_response: func(&self.on_response)?,
                on_response_body: func(&self.on_response_body)?,
            })
        }
    }
}

use bindings::gateway::filter::types::{BodyMode as WitBodyMode, Options};
pub(crate) use phases::Interest;

/// A loaded component plugin.
pub struct ComponentPlugin {
    ctx: Arc<PluginCtx>,
    pre: bindings::FilterPre<CompState>,
    mode: InstanceMode,
    /// It imports nothing that can wait: its instances are made and called without a fiber
    /// (see `sync_io`).
    sync: bool,
}

impl std::fmt::Debug for ComponentPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentPlugin")
            .field("name", &self.ctx.name)
            .field("mode", &self.mode)
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}

/// One instance with its store.
pub(crate) struct Instance {
    store: Store<CompState>,
    bindings: bindings::Filter,
    _live: InstanceGuard,
}

impl ComponentPlugin {
    /// Links the component against the host (the WIT world and WASI with nothing granted); one that
    /// imports nothing that can wait gets the synchronous `wasi:io` functions and is called without a
    /// fiber.
    pub(crate) fn new(
        ctx: Arc<PluginCtx>,
        component: Component,
        mode: InstanceMode,
    ) -> Result<Arc<ComponentPlugin>, PluginError> {
        let unsupported = |reason: String| PluginError::Unsupported {
            plugin: ctx.name.to_string(),
            reason,
        };
        let mut linker: Linker<CompState> = Linker::new(ctx.sandbox.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| unsupported(format!("{e:#}")))?;
        bindings::Filter::add_to_linker::<CompState, HasSelf<CompState>>(&mut linker, |s| s)
            .map_err(|e| unsupported(format!("{e:#}")))?;
        let sync = !sync_io::imports_wait(&component, ctx.sandbox.engine());
        if sync {
            sync_io::shadow(&mut linker, CompState::table)
                .map_err(|e| unsupported(format!("{e:#}")))?;
        }
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| unsupported(format!("cannot link: {e:#}")))?;
        let pre = bindings::FilterPre::new(pre).map_err(|e| {
            unsupported(format!(
                "not a gateway:filter@0.1 component (exports): {e:#}"
            ))
        })?;
        Ok(Arc::new(ComponentPlugin {
            ctx,
            pre,
            mode,
            sync,
        }))
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.ctx.name
    }

    /// Its health counters.
    pub fn health(&self) -> &Arc<PluginHealth> {
        self.ctx.sandbox.health()
    }

    /// Its sandbox (limits, health, output).
    pub(crate) fn sandbox(&self) -> &crate::wasm::sandbox::Sandbox {
        &self.ctx.sandbox
    }

    /// Instances alive and requests in flight.
    pub(crate) fn instance_counts(&self) -> (usize, usize) {
        self.ctx.sandbox.instance_counts()
    }

    /// Its instance mode.
    pub fn instance_mode(&self) -> InstanceMode {
        self.mode
    }

    /// Whether its instances are called without a fiber (it imports nothing that can wait).
    pub fn is_sync(&self) -> bool {
        self.sync
    }

    /// A new instance with `init(config)` run on it, under the start budget.
    async fn instantiate(
        &self,
        config: &str,
        registry: Arc<crate::consumers::Registry>,
    ) -> Result<(Instance, Options, Interest), InitError> {
        let state = CompState::new(self.ctx.clone(), registry);
        let mut store: Store<CompState> = self.ctx.sandbox.store(state);
        let made = if self.sync {
            self.pre.instantiate_checked(&mut store)
        } else {
            self.pre.instantiate_checked_async(&mut store).await
        };
        let bindings = match made {
            Ok(b) => b,
            Err(e) => return Err(InitError::Failed(self.ctx.sandbox.failed(&e, &mut store))),
        };
        let mut inst = Instance {
            store,
            bindings,
            _live: self.ctx.sandbox.instance_guard(),
        };
        self.ctx.sandbox.enter_start(&mut inst.store);
        inst.store.data_mut().initializing = true;
        let r = if self.sync {
            let init = inst.bindings.func_init();
            init.call(&mut inst.store, (config,)).map(|(r,)| r)
        } else {
            inst.bindings.call_init(&mut inst.store, config).await
        };
        inst.store.data_mut().initializing = false;
        let interest = Interest::from_declared(inst.store.data_mut().declared.take());
        let r = self.ctx.sandbox.leave(r, &mut inst.store).map_err(|e| {
            self.ctx.sandbox.discarded();
            InitError::Failed(e)
        });
        match r? {
            Ok(options) => {
                self.ctx.sandbox.success();
                Ok((inst, options, interest))
            }
            Err(message) => Err(InitError::Rejected(message)),
        }
    }

    /// Configures the plugin for `route`: `init` runs now on a new instance, and its error rejects
    /// the config.
    pub(crate) async fn filter(
        this: &Arc<ComponentPlugin>,
        route: &str,
        config: bytes::Bytes,
        policy: FailurePolicy,
        registry: &Arc<crate::consumers::Registry>,
    ) -> Result<Arc<ComponentFilter>, PluginError> {
        let config =
            String::from_utf8(config.to_vec()).map_err(|_| PluginError::ConfigureFailed {
                plugin: this.name().to_string(),
                route: route.to_string(),
                reason: "the config is not UTF-8".into(),
            })?;
        let (inst, options, interest) =
            this.instantiate(&config, registry.clone())
                .await
                .map_err(|e| match e {
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
            // A body the filter has no handler for is neither buffered nor shown.
            options: (
                if interest.request_body {
                    options.request_body
                } else {
                    WitBodyMode::Skip
                },
                if interest.response_body {
                    options.response_body
                } else {
                    WitBodyMode::Skip
                },
            ),
            interest,
            policy,
            registry: registry.clone(),
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
    /// The handlers `init` declared (every one for a component that declares nothing).
    interest: Interest,
    policy: FailurePolicy,
    /// The consumers of the config the filter was configured by (for `init` on new instances made
    /// outside a request's config).
    registry: Arc<crate::consumers::Registry>,
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
    /// An instance for one request: a warm one (reuse mode) or a new one, whose `init` looks
    /// consumers up in `registry` (the request's config's) when given.
    async fn acquire(
        &self,
        registry: Option<&Arc<crate::consumers::Registry>>,
    ) -> Result<Instance, FilterError> {
        if self.plugin.mode == InstanceMode::Reuse {
            if let Some(inst) = self.warm.lock().unwrap_or_else(|e| e.into_inner()).pop() {
                return Ok(inst);
            }
        }
        let registry = registry.unwrap_or(&self.registry).clone();
        match self.plugin.instantiate(&self.config, registry).await {
            Ok((inst, ..)) => Ok(inst),
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
        if warm.len() < self.plugin.ctx.sandbox.instance_limit() as usize {
            warm.push(inst);
        }
    }
}

impl Filter for ComponentFilter {
    fn name(&self) -> &str {
        self.inner.plugin.name()
    }

    fn new_ctx(&self, info: &Arc<RequestInfo>) -> Result<Box<dyn FilterCtx>, FilterError> {
        self.inner.plugin.ctx.sandbox.admit()?;
        Ok(Box::new(ctx::ComponentCtx::new(
            self.inner.clone(),
            RequestInfo::clone(info),
        )))
    }
}
