//! The Proxy-Wasm ABI host (0.2.1 and 0.2.0). A plugin runs in several VMs, by default one per
//! worker thread of the runtime, as Envoy runs one per worker (the plugin's `vms` setting says how
//! many). Every VM has a root context for every route that uses the plugin (a service's root context
//! lives in the first VM only); a request's HTTP context lives in one VM, picked when the context is
//! made: the worker thread's own, or a free one if another request's callback is in it. Each VM sits
//! behind its own async lock, so two worker threads run the plugin at once. A VM that traps or hits a
//! limit is thrown away; the next call for that VM starts a fresh one and replays the root contexts of
//! the live filters (`on_vm_start`, `on_configure`). VMs after the first start on first use.

mod abi;
mod filter;
mod hostcalls;
mod memory;
mod properties;
mod state;
mod vm;

pub use crate::host::MAX_CALLOUT_TIMEOUT;
pub use abi::{deserialize_map, serialize_map, Status};
pub use filter::ProxyWasmFilter;
pub use memory::AbiViolation;

use crate::config::{FailurePolicy, ProxyWasmCallback};
use crate::host::{Phase, QueueNotify};
use crate::wasm::context::PluginCtx;
use crate::wasm::sandbox::Sandbox;
use crate::wasm::{PluginError, PluginHealth};
use bytes::Bytes;
use state::VmState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use vm::Vm;
use wasmtime::{InstancePre, Linker, Module};

/// What host functions need of the plugin, outside the store.
pub(crate) struct Shared {
    /// The plugin's name, host core, grants and sandbox, as for components.
    pub ctx: Arc<PluginCtx>,
    pub vm_config: Bytes,
    /// Shared data and queue namespace: the VM id. Plugins in this gateway have no configurable VM id,
    /// so all Proxy-Wasm plugins share the empty one, as Envoy filters with the default `vm_id` do.
    pub namespace: String,
    pub handle: tokio::runtime::Handle,
    pub plugin: OnceLock<Weak<ProxyWasmPlugin>>,
}

impl Shared {
    /// A hook that delivers `on_queue_ready` to `root` on the VM.
    pub fn queue_notifier(&self, slot: usize, root: u32) -> QueueNotify {
        let weak = self.plugin.get().cloned().unwrap_or_default();
        let handle = self.handle.clone();
        Arc::new(move |queue_id| {
            let weak = weak.clone();
            handle.spawn(async move {
                if let Some(plugin) = weak.upgrade() {
                    plugin
                        .root_callback(slot, root, vm::RootCall::QueueReady(queue_id))
                        .await;
                }
            });
        })
    }
}

/// The per-request callbacks a plugin was told to skip (`skip:` in its config), as a bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Skip(u8);

impl Skip {
    const ALL: u8 = 0xff;

    fn bit(cb: ProxyWasmCallback) -> u8 {
        1 << match cb {
            ProxyWasmCallback::OnRequestHeaders => 0,
            ProxyWasmCallback::OnRequestBody => 1,
            ProxyWasmCallback::OnRequestTrailers => 2,
            ProxyWasmCallback::OnResponseHeaders => 3,
            ProxyWasmCallback::OnResponseBody => 4,
            ProxyWasmCallback::OnResponseTrailers => 5,
            ProxyWasmCallback::OnDone => 6,
            ProxyWasmCallback::OnLog => 7,
        }
    }

    /// The set of `list`.
    pub(crate) fn of(list: &[ProxyWasmCallback]) -> Skip {
        Skip(list.iter().fold(0, |m, cb| m | Self::bit(*cb)))
    }

    /// Whether `cb` is skipped.
    #[inline]
    fn has(self, cb: ProxyWasmCallback) -> bool {
        self.0 & Self::bit(cb) != 0
    }

    /// Whether the callback of a request phase is skipped.
    #[inline]
    fn phase(self, phase: Phase) -> bool {
        use ProxyWasmCallback as C;
        match phase {
            Phase::RequestHeaders => self.has(C::OnRequestHeaders),
            Phase::RequestBody => self.has(C::OnRequestBody),
            Phase::RequestTrailers => self.has(C::OnRequestTrailers),
            Phase::ResponseHeaders => self.has(C::OnResponseHeaders),
            Phase::ResponseBody => self.has(C::OnResponseBody),
            Phase::ResponseTrailers => self.has(C::OnResponseTrailers),
            Phase::Idle => true,
        }
    }

    /// Whether a callback that may come after `phase` (a later phase, `on_done`, `on_log`) is not
    /// skipped: then the heads are kept readable after the phase.
    #[inline]
    fn any_after(self, phase: Phase) -> bool {
        let later: u8 = match phase {
            Phase::RequestHeaders => 0b1111_1110,
            Phase::RequestBody => 0b1111_1110,
            Phase::RequestTrailers => 0b1111_1000,
            Phase::ResponseHeaders => 0b1111_0000,
            Phase::ResponseBody => 0b1111_0000,
            Phase::ResponseTrailers => 0b1100_0000,
            Phase::Idle => Self::ALL,
        };
        self.0 & later != later
    }

    /// Every per-request callback is skipped: requests get no context.
    #[inline]
    fn everything(self) -> bool {
        self.0 == Self::ALL
    }

    /// Both end callbacks (`on_done`, `on_log`) are skipped.
    #[inline]
    fn ends(self) -> bool {
        self.has(ProxyWasmCallback::OnDone) && self.has(ProxyWasmCallback::OnLog)
    }
}

/// A live filter's root context, replayed on every new VM.
#[derive(Clone)]
struct RootSpec {
    id: u32,
    route: Arc<str>,
    config: Bytes,
    /// A service's root context: made in the first VM only (a route's is made in every VM).
    service: bool,
}

impl RootSpec {
    /// Whether the VM of slot `index` has this root context.
    fn in_slot(&self, index: usize) -> bool {
        index == 0 || !self.service
    }
}

/// One VM's place: the VM (none before its first use, or after a failure) and its generation.
struct Slot {
    vm: Option<Vm>,
    generation: u64,
    /// Its place in the plugin's slots.
    index: usize,
}

/// A loaded Proxy-Wasm plugin.
pub struct ProxyWasmPlugin {
    shared: Arc<Shared>,
    pre: InstancePre<VmState>,
    /// Its VMs, each behind its own lock.
    slots: Box<[tokio::sync::Mutex<Slot>]>,
    roots: Mutex<Vec<RootSpec>>,
    next_context: AtomicU32,
    /// Timers by (slot, root context): each VM's root context has its own, as in Envoy.
    ticks: Mutex<HashMap<(usize, u32), tokio::task::JoinHandle<()>>>,
    /// The callbacks its config says to skip.
    skip: Skip,
}

/// The most VMs a plugin gets by default (one per worker thread, up to this; `vms` can say 64).
const MAX_DEFAULT_VMS: usize = 16;

/// Gives each thread that runs requests a number: a thread's own VM is its number modulo the VMs.
static NEXT_HOME: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    static HOME: usize = NEXT_HOME.fetch_add(1, Ordering::Relaxed);
}

impl std::fmt::Debug for ProxyWasmPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyWasmPlugin")
            .field("name", &self.shared.ctx.name)
            .finish_non_exhaustive()
    }
}

fn background_handle() -> tokio::runtime::Handle {
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        return h;
    }
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("wasm-background")
            .enable_all()
            .build()
            .expect("a tokio runtime for plugin timers and callouts")
    })
    .handle()
    .clone()
}

impl ProxyWasmPlugin {
    /// Links the module against the host, checks its ABI version and starts its first VM.
    pub(crate) async fn new(
        ctx: Arc<PluginCtx>,
        module: Module,
        vm_config: Bytes,
        skip: Skip,
        vms: Option<usize>,
    ) -> Result<Arc<ProxyWasmPlugin>, PluginError> {
        let name = ctx.name.to_string();
        let unsupported = |reason: String| PluginError::Unsupported {
            plugin: name.clone(),
            reason,
        };
        let exports: Vec<String> = module.exports().map(|e| e.name().to_string()).collect();
        let has = |n: &str| exports.iter().any(|e| e == n);
        if !(has("proxy_abi_version_0_2_1") || has("proxy_abi_version_0_2_0")) {
            return Err(unsupported(if has("proxy_abi_version_0_1_0") {
                "Proxy-Wasm ABI 0.1.0 is not supported (0.2.0 and 0.2.1 are)".into()
            } else {
                "not a Proxy-Wasm module (no proxy_abi_version_0_2_x export)".into()
            }));
        }
        if !has("memory") {
            return Err(unsupported("the module exports no memory".into()));
        }
        if !(has("proxy_on_memory_allocate") || has("malloc")) {
            return Err(unsupported(
                "the module exports no allocator (proxy_on_memory_allocate or malloc)".into(),
            ));
        }
        let mut linker: Linker<VmState> = Linker::new(ctx.sandbox.engine());
        hostcalls::add_to_linker(&mut linker).map_err(|e| unsupported(format!("{e:#}")))?;
        crate::wasm::wasi::add_to_linker(&mut linker).map_err(|e| unsupported(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| unsupported(format!("cannot link: {e:#}")))?;
        let shared = Arc::new(Shared {
            ctx,
            vm_config,
            namespace: String::new(),
            handle: background_handle(),
            plugin: OnceLock::new(),
        });
        // One VM per worker thread unless the config says how many (a current-thread runtime, or
        // none, has one).
        let vms = vms.unwrap_or_else(|| {
            tokio::runtime::Handle::try_current()
                .map_or(1, |h| h.metrics().num_workers())
                .min(MAX_DEFAULT_VMS)
        });
        let slots = (0..vms.max(1))
            .map(|index| {
                tokio::sync::Mutex::new(Slot {
                    vm: None,
                    generation: 0,
                    index,
                })
            })
            .collect();
        let plugin = Arc::new(ProxyWasmPlugin {
            shared: shared.clone(),
            pre,
            slots,
            roots: Mutex::new(Vec::new()),
            next_context: AtomicU32::new(1),
            ticks: Mutex::new(HashMap::new()),
            skip,
        });
        let _ = shared.plugin.set(Arc::downgrade(&plugin));
        let mut slot = plugin.slots[0].lock().await;
        plugin
            .ensure_vm(&mut slot)
            .map_err(|reason| PluginError::Start {
                plugin: name.clone(),
                reason,
            })?;
        drop(slot);
        Ok(plugin)
    }

    /// Its sandbox: limits, health, admission.
    #[inline]
    pub(crate) fn sandbox(&self) -> &Sandbox {
        &self.shared.ctx.sandbox
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.shared.ctx.name
    }

    /// VMs alive (those started, and any being replaced) and requests in flight.
    pub(crate) fn instance_counts(&self) -> (usize, usize) {
        self.sandbox().instance_counts()
    }

    /// Its health counters.
    pub fn health(&self) -> &Arc<PluginHealth> {
        self.sandbox().health()
    }

    fn next_id(&self) -> u32 {
        self.next_context.fetch_add(1, Ordering::Relaxed)
    }

    /// The slot of a VM for a new request context, locked: the thread's own VM; if another
    /// request's callback is in it now, the first free one; if all are busy, the thread's own, once
    /// it is free.
    async fn pick(self: &Arc<Self>) -> tokio::sync::MutexGuard<'_, Slot> {
        let n = self.slots.len();
        if n == 1 {
            return crate::filter::lock(&self.slots[0]).await;
        }
        let home = self.home();
        let mut slot = 'found: {
            for k in 0..n {
                if let Ok(slot) = self.slots[(home + k) % n].try_lock() {
                    break 'found slot;
                }
            }
            self.slots[home].lock().await
        };
        // A VM not started yet starts here; one that cannot (the instance pool is full, say)
        // leaves the request to the first VM, which is always started.
        if slot.index != 0 && slot.vm.is_none() && self.ensure_vm(&mut slot).is_err() {
            drop(slot);
            slot = crate::filter::lock(&self.slots[0]).await;
        }
        slot
    }

    /// The slot of the running thread's own VM.
    fn home(&self) -> usize {
        HOME.with(|h| *h) % self.slots.len()
    }

    /// Creates the root context for one route's config and runs `on_vm_start` and `on_configure`,
    /// in every VM started so far (the others replay it when they start). A `service` root context
    /// is made in the first VM only.
    pub(crate) async fn filter(
        this: &Arc<ProxyWasmPlugin>,
        route: &str,
        config: Bytes,
        policy: FailurePolicy,
        service: bool,
    ) -> Result<Arc<ProxyWasmFilter>, PluginError> {
        let spec = RootSpec {
            id: this.next_id(),
            route: Arc::from(route),
            config,
            service,
        };
        let started = |e: String| PluginError::Start {
            plugin: this.name().to_string(),
            reason: e,
        };
        {
            let mut slot = this.slots[0].lock().await;
            this.ensure_vm(&mut slot).map_err(started)?;
            this.start_root_in(&mut slot, &spec)
                .map_err(|e| e.into_plugin_error(this.name(), route))?;
            // Listed once the first VM took it, still under that VM's lock (a config the plugin
            // refuses is never replayed by another VM): a VM started by a request from now on
            // replays it, and the loop below gives it to those started before, skipping a VM
            // that already has it.
            this.roots
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(spec.clone());
        }
        if !service {
            for index in 1..this.slots.len() {
                let mut slot = this.slots[index].lock().await;
                let Some(vm) = slot.vm.as_ref() else { continue };
                if vm.store.data().roots.contains_key(&spec.id) {
                    continue;
                }
                if let Err(e) = this.start_root_in(&mut slot, &spec) {
                    drop(slot);
                    this.drop_root(spec.id);
                    return Err(e.into_plugin_error(this.name(), route));
                }
            }
        }
        Ok(Arc::new(ProxyWasmFilter::new(
            this.clone(),
            spec.id,
            spec.route,
            policy,
        )))
    }

    /// Starts root context `spec` in the (running) VM of `slot`; a VM that failed to is discarded.
    fn start_root_in(
        self: &Arc<Self>,
        slot: &mut Slot,
        spec: &RootSpec,
    ) -> Result<(), vm::RootError> {
        let vm = slot.vm.as_mut().expect("a running VM");
        match self.start_root(vm, spec) {
            Ok(()) => {
                let _ = self.after_callback(vm, None);
                Ok(())
            }
            Err(e) => {
                // The root context stays in the VM's table only if it started; a failed VM goes.
                vm.store.data_mut().roots.remove(&spec.id);
                if matches!(e, vm::RootError::Failed(_)) {
                    self.discard(slot);
                }
                Err(e)
            }
        }
    }

    /// Forgets a root context (its filter is gone): timers stop and the VM deletes the context.
    pub(crate) fn drop_root(self: &Arc<Self>, root_id: u32) {
        self.roots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|r| r.id != root_id);
        self.ticks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&(_, root), t| {
                if root == root_id {
                    t.abort();
                }
                root != root_id
            });
        let this = self.clone();
        self.shared.handle.spawn(async move {
            for index in 0..this.slots.len() {
                this.root_callback(index, root_id, vm::RootCall::Delete)
                    .await;
            }
        });
    }

    /// Whether root context `root` belongs to a live filter.
    fn is_live(&self, root: u32) -> bool {
        self.roots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|r| r.id == root)
    }

    fn discard(&self, slot: &mut Slot) {
        if let Some(vm) = slot.vm.take() {
            // Requests paused on this VM find it gone when woken, and fail by their policy.
            for h in vm.store.data().https.values() {
                if let Some(w) = &h.wake {
                    w.notify_one();
                }
            }
            self.sandbox().discarded();
            tracing::warn!(plugin = %self.shared.ctx.name, "plugin VM discarded after a failure");
        }
    }

    /// Throws the VM away if a failure marked it for that (see `VmState::poisoned`); every use of
    /// the slot's VM goes through here or [`ProxyWasmPlugin::ensure_vm`].
    fn drop_poisoned(&self, slot: &mut Slot) {
        if slot.vm.as_ref().is_some_and(|vm| vm.store.data().poisoned) {
            self.discard(slot);
        }
    }

    /// Starts a VM if there is none (the first, or a replacement) and replays the live root contexts.
    fn ensure_vm(self: &Arc<Self>, slot: &mut Slot) -> Result<(), String> {
        self.drop_poisoned(slot);
        if slot.vm.is_some() {
            return Ok(());
        }
        slot.generation += 1;
        let mut vm = self.start_vm(slot.index, slot.generation)?;
        let roots = self.roots.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for spec in roots.iter().filter(|r| r.in_slot(slot.index)) {
            if let Err(e) = self.start_root(&mut vm, spec) {
                return Err(format!(
                    "replaying route `{}` on a new VM: {}",
                    spec.route,
                    e.into_plugin_error(self.name(), &spec.route)
                ));
            }
        }
        let _ = self.after_callback(&mut vm, None);
        slot.vm = Some(vm);
        Ok(())
    }

    /// Applies the effects of a callback (timers, contexts that called `proxy_done`) and hands out
    /// callouts: those of `keep` are returned for the caller to wait on, the others are delivered in
    /// the background.
    fn after_callback(self: &Arc<Self>, vm: &mut Vm, keep: Option<u32>) -> Vec<state::PendingCall> {
        for id in std::mem::take(&mut vm.store.data_mut().done_requested) {
            if let Err(e) = self.end_http(vm, id) {
                // No request waits on it any more: the context goes, the failure is logged, and the
                // VM is replaced before its next use (the caller may not hold its slot to do it now).
                let state = vm.store.data_mut();
                state.https.remove(&id);
                state.poisoned = true;
                tracing::warn!(plugin = %self.shared.ctx.name, "ending a context after proxy_done failed: {e}");
            }
        }
        let state = vm.store.data_mut();
        for (root, ms) in std::mem::take(&mut state.tick_changes) {
            self.set_tick(vm.index, root, ms);
        }
        let mut mine = Vec::new();
        for call in std::mem::take(&mut state.pending) {
            if Some(call.context_id) == keep {
                mine.push(call);
            } else {
                let this = self.clone();
                let (index, generation) = (vm.index, vm.generation);
                self.shared.handle.spawn(async move {
                    this.deliver_detached(call, index, generation).await;
                });
            }
        }
        mine
    }

    /// Callouts of a context that stopped waiting for them: their answers are still delivered
    /// (`on_http_call_response`), in the background.
    fn detach(self: &Arc<Self>, pending: Vec<state::PendingCall>, index: usize, generation: u64) {
        for call in pending {
            let this = self.clone();
            self.shared.handle.spawn(async move {
                this.deliver_detached(call, index, generation).await;
            });
        }
    }

    fn deliver_detached(
        self: Arc<Self>,
        mut call: state::PendingCall,
        index: usize,
        generation: u64,
    ) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(async move {
            loop {
                let (event, last) = call.next().await;
                let mut slot = self.slots[index].lock().await;
                self.drop_poisoned(&mut slot);
                let Some(vm) = slot.vm.as_mut() else { return };
                if vm.generation != generation {
                    return;
                }
                match self.deliver(vm, call.context_id, call.token, event) {
                    Ok(()) => {
                        let _ = self.after_callback(vm, None);
                    }
                    Err(_) => {
                        self.discard(&mut slot);
                        return;
                    }
                }
                if last {
                    return;
                }
            }
        })
    }

    fn set_tick(self: &Arc<Self>, index: usize, root: u32, ms: u32) {
        let mut ticks = self.ticks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = ticks.remove(&(index, root)) {
            old.abort();
        }
        if ms == 0 {
            return;
        }
        let weak = Arc::downgrade(self);
        let period = std::time::Duration::from_millis(ms as u64);
        let task = self.shared.handle.spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                let Some(plugin) = weak.upgrade() else { return };
                plugin.root_callback(index, root, vm::RootCall::Tick).await;
            }
        });
        ticks.insert((index, root), task);
    }

    /// Runs a callback on a root context of the VM of slot `index` in the background (tick,
    /// queue, delete).
    async fn root_callback(self: &Arc<Self>, index: usize, root: u32, call: vm::RootCall) {
        let mut slot = self.slots[index].lock().await;
        // Checked under the slot's lock: a route's root context is listed under the first VM's
        // lock, after its `on_configure` (which may set the timer) returned.
        if matches!(call, vm::RootCall::Tick) && !self.is_live(root) {
            // A timer a VM set while the root context was being dropped, or for a config it
            // refused: it goes too.
            if let Some(t) = self
                .ticks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(index, root))
            {
                t.abort();
            }
            return;
        }
        self.drop_poisoned(&mut slot);
        if !matches!(call, vm::RootCall::Delete) && self.ensure_vm(&mut slot).is_err() {
            return;
        }
        let Some(vm) = slot.vm.as_mut() else { return };
        if !vm.store.data().roots.contains_key(&root) {
            return;
        }
        match self.call_root(vm, root, call) {
            Ok(()) => {
                let _ = self.after_callback(vm, None);
            }
            Err(e) => {
                tracing::warn!(plugin = %self.shared.ctx.name, "root context callback failed: {e}");
                self.discard(&mut slot);
            }
        }
    }
}
