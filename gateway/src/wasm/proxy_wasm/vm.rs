//! One VM: a store with an instance of the plugin, its callbacks, and calling them under the limits.

use super::abi::map;
use super::state::{CallEvent, CalloutResponse, HttpCtx, RootCtx, VmState};
use super::{ProxyWasmPlugin, RootSpec};
use crate::config::ProxyWasmCallback;
use crate::filter::{FilterError, RequestInfo};
use crate::host::{CalloutError, GrpcEvent};
use crate::wasm::sandbox::{classify, InstanceGuard, SandboxState, StoreLimiter};
use crate::wasm::wasi::{ProcExit, WasiHost};
use crate::wasm::PluginError;
use bytes::Bytes;
use std::collections::HashMap;
use wasmtime::{Instance, Memory, Store, TypedFunc, WasmParams, WasmResults};

/// The most HTTP contexts of one VM that may wait for `proxy_done` after their request.
pub const MAX_AWAITING_DONE: usize = 1024;

impl SandboxState for VmState {
    /// A callout is started and delivered in a later callback, but shared data in a Redis namespace
    /// is awaited inside the call.
    const WAITS: bool = true;

    fn limiter(&mut self) -> &mut StoreLimiter {
        &mut self.limiter
    }

    fn take_waited(&mut self) -> std::time::Duration {
        std::mem::take(&mut self.waited)
    }
}

impl WasiHost for VmState {
    fn memory(&self) -> Option<Memory> {
        self.memory
    }

    /// Lines go to the log through the plugin's output budget, with the route and request of the
    /// HTTP context running, if one is.
    fn output(&mut self, fd: u32, bytes: &[u8]) {
        use crate::wasm::wasi::{OutputRequest, Stream};
        let request = self.https.get(&self.current).map(|h| OutputRequest {
            route: h.info.route.clone(),
            id: h.info.id,
        });
        let (stream, pending) = if fd == 1 {
            (Stream::Stdout, &mut self.stdout)
        } else {
            (Stream::Stderr, &mut self.stderr)
        };
        self.shared
            .ctx
            .sandbox
            .output()
            .write(pending, stream, request.as_ref(), bytes, |_| {});
    }
}

type F1 = TypedFunc<u32, ()>;
type F2 = TypedFunc<(u32, u32), ()>;
type F1R = TypedFunc<u32, u32>;
type F2R = TypedFunc<(u32, u32), u32>;
type F3R = TypedFunc<(u32, u32, u32), u32>;
type F3 = TypedFunc<(u32, u32, u32), ()>;
type F5 = TypedFunc<(u32, u32, u32, u32, u32), ()>;

/// The callbacks a module exports (all optional but the allocator).
pub struct Exports {
    on_context_create: Option<F2>,
    on_vm_start: Option<F2R>,
    on_configure: Option<F2R>,
    on_tick: Option<F1>,
    on_queue_ready: Option<F2>,
    pub on_request_headers: Option<F3R>,
    pub on_request_body: Option<F3R>,
    pub on_request_trailers: Option<F2R>,
    pub on_response_headers: Option<F3R>,
    pub on_response_body: Option<F3R>,
    pub on_response_trailers: Option<F2R>,
    on_http_call_response: Option<F5>,
    on_grpc_receive_initial_metadata: Option<F3>,
    on_grpc_receive: Option<F3>,
    on_grpc_receive_trailing_metadata: Option<F3>,
    on_grpc_close: Option<F3>,
    on_done: Option<F1R>,
    on_log: Option<F1>,
    on_delete: Option<F1>,
}

/// A running VM.
pub struct Vm {
    pub store: Store<VmState>,
    pub exports: std::sync::Arc<Exports>,
    /// Its slot in the plugin.
    pub index: usize,
    pub generation: u64,
    _live: InstanceGuard,
}

/// A root context callback run in the background.
pub enum RootCall {
    Tick,
    QueueReady(u32),
    Delete,
}

/// Why a root context did not start.
pub enum RootError {
    VmStartRejected,
    ConfigureRejected,
    Failed(FilterError),
}

impl RootError {
    pub fn into_plugin_error(self, plugin: &str, route: &str) -> PluginError {
        match self {
            RootError::VmStartRejected => PluginError::VmStartRejected {
                plugin: plugin.to_string(),
            },
            RootError::ConfigureRejected => PluginError::ConfigureRejected {
                plugin: plugin.to_string(),
                route: route.to_string(),
            },
            RootError::Failed(e) => PluginError::ConfigureFailed {
                plugin: plugin.to_string(),
                route: route.to_string(),
                reason: e.to_string(),
            },
        }
    }
}

fn typed<P: WasmParams, R: WasmResults>(
    store: &mut Store<VmState>,
    instance: &Instance,
    name: &str,
) -> Result<Option<TypedFunc<P, R>>, String> {
    match instance.get_func(&mut *store, name) {
        None => Ok(None),
        Some(f) => f
            .typed::<P, R>(&*store)
            .map(Some)
            .map_err(|e| format!("export `{name}` has the wrong signature: {e:#}")),
    }
}

impl ProxyWasmPlugin {
    /// Calls `f` in the sandbox, under the per-call limits; a failure is classified and counted.
    #[inline]
    pub(super) fn call<P, R>(
        &self,
        vm: &mut Vm,
        f: &TypedFunc<P, R>,
        args: P,
    ) -> Result<R, FilterError>
    where
        P: WasmParams,
        R: WasmResults,
    {
        self.sandbox().call(&mut vm.store, f, args)
    }

    /// Sets the context a callback runs for.
    pub(super) fn enter(vm: &mut Vm, context_id: u32) {
        let state = vm.store.data_mut();
        state.current = context_id;
        state.effective = context_id;
    }

    /// Instantiates the module and runs its start functions as proxy-wasm-cpp-host does: a reactor's
    /// `_initialize` (then `main(0, 0)` if exported), otherwise a command's `_start`.
    pub(super) fn start_vm(&self, index: usize, generation: u64) -> Result<Vm, String> {
        let state = VmState::new(self.shared.clone(), self.sandbox().limiter(), index);
        let mut store: Store<VmState> = self.sandbox().store(state);
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| format!("instantiation failed: {e:#}"))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or("the module exports no memory")?;
        let malloc = match typed::<u32, u32>(&mut store, &instance, "proxy_on_memory_allocate")? {
            Some(f) => f,
            None => typed::<u32, u32>(&mut store, &instance, "malloc")?
                .ok_or("the module exports no allocator")?,
        };
        store.data_mut().memory = Some(memory);
        store.data_mut().malloc = Some(malloc);

        let run = |e: wasmtime::Error, store: &Store<VmState>| {
            let (err, _) = classify(&e, store.data().limiter.hit());
            format!("start function failed: {err}")
        };
        if let Some(init) = typed::<(), ()>(&mut store, &instance, "_initialize")? {
            init.call(&mut store, ()).map_err(|e| run(e, &store))?;
            if let Some(main) = typed::<(u32, u32), u32>(&mut store, &instance, "main")? {
                main.call(&mut store, (0, 0)).map_err(|e| run(e, &store))?;
            }
        } else if let Some(start) = typed::<(), ()>(&mut store, &instance, "_start")? {
            match start.call(&mut store, ()) {
                Ok(()) => {}
                Err(e) if matches!(e.downcast_ref::<ProcExit>(), Some(ProcExit(0))) => {}
                Err(e) => return Err(run(e, &store)),
            }
        }

        let exports = std::sync::Arc::new(Exports {
            on_context_create: typed(&mut store, &instance, "proxy_on_context_create")?,
            on_vm_start: typed(&mut store, &instance, "proxy_on_vm_start")?,
            on_configure: typed(&mut store, &instance, "proxy_on_configure")?,
            on_tick: typed(&mut store, &instance, "proxy_on_tick")?,
            on_queue_ready: typed(&mut store, &instance, "proxy_on_queue_ready")?,
            on_request_headers: typed(&mut store, &instance, "proxy_on_request_headers")?,
            on_request_body: typed(&mut store, &instance, "proxy_on_request_body")?,
            on_request_trailers: typed(&mut store, &instance, "proxy_on_request_trailers")?,
            on_response_headers: typed(&mut store, &instance, "proxy_on_response_headers")?,
            on_response_body: typed(&mut store, &instance, "proxy_on_response_body")?,
            on_response_trailers: typed(&mut store, &instance, "proxy_on_response_trailers")?,
            on_http_call_response: typed(&mut store, &instance, "proxy_on_http_call_response")?,
            on_grpc_receive_initial_metadata: typed(
                &mut store,
                &instance,
                "proxy_on_grpc_receive_initial_metadata",
            )?,
            on_grpc_receive: typed(&mut store, &instance, "proxy_on_grpc_receive")?,
            on_grpc_receive_trailing_metadata: typed(
                &mut store,
                &instance,
                "proxy_on_grpc_receive_trailing_metadata",
            )?,
            on_grpc_close: typed(&mut store, &instance, "proxy_on_grpc_close")?,
            on_done: typed(&mut store, &instance, "proxy_on_done")?,
            on_log: typed(&mut store, &instance, "proxy_on_log")?,
            on_delete: typed(&mut store, &instance, "proxy_on_delete")?,
        });
        Ok(Vm {
            store,
            exports,
            index,
            generation,
            _live: self.sandbox().instance_guard(),
        })
    }

    /// Creates a root context and runs `on_vm_start` and `on_configure` on it.
    pub(super) fn start_root(&self, vm: &mut Vm, spec: &RootSpec) -> Result<(), RootError> {
        vm.store.data_mut().roots.insert(
            spec.id,
            RootCtx {
                route: spec.route.clone(),
                config: spec.config.clone(),
                properties: HashMap::new(),
            },
        );
        Self::enter(vm, spec.id);
        if let Some(f) = vm.exports.clone().on_context_create.as_ref() {
            self.call(vm, f, (spec.id, 0)).map_err(RootError::Failed)?;
        }
        if let Some(f) = vm.exports.clone().on_vm_start.as_ref() {
            Self::enter(vm, spec.id);
            let size = self.shared.vm_config.len() as u32;
            if self
                .call(vm, f, (spec.id, size))
                .map_err(RootError::Failed)?
                == 0
            {
                return Err(RootError::VmStartRejected);
            }
        }
        if let Some(f) = vm.exports.clone().on_configure.as_ref() {
            Self::enter(vm, spec.id);
            let size = spec.config.len() as u32;
            if self
                .call(vm, f, (spec.id, size))
                .map_err(RootError::Failed)?
                == 0
            {
                return Err(RootError::ConfigureRejected);
            }
        }
        Ok(())
    }

    /// Runs a background callback on a root context.
    pub(super) fn call_root(
        &self,
        vm: &mut Vm,
        root: u32,
        call: RootCall,
    ) -> Result<(), FilterError> {
        Self::enter(vm, root);
        match call {
            RootCall::Tick => {
                if let Some(f) = vm.exports.clone().on_tick.as_ref() {
                    self.call(vm, f, root)?;
                }
            }
            RootCall::QueueReady(q) => {
                if let Some(f) = vm.exports.clone().on_queue_ready.as_ref() {
                    self.call(vm, f, (root, q))?;
                }
            }
            RootCall::Delete => {
                // Contexts of this root still waiting for `proxy_done` end with it.
                let kept: Vec<u32> = vm
                    .store
                    .data()
                    .https
                    .iter()
                    .filter(|(_, h)| h.root_id == root && h.awaiting_done)
                    .map(|(id, _)| *id)
                    .collect();
                for id in kept {
                    self.end_http(vm, id)?;
                }
                if let Some(f) = vm.exports.clone().on_done.as_ref() {
                    self.call(vm, f, root)?;
                }
                if let Some(f) = vm.exports.clone().on_delete.as_ref() {
                    Self::enter(vm, root);
                    self.call(vm, f, root)?;
                }
                let state = vm.store.data_mut();
                state.roots.remove(&root);
                // Its gRPC calls end with it (dropped: cancelled, no callback).
                state.grpc.retain(|_, g| g.root_id != root);
            }
        }
        Ok(())
    }

    /// Creates an HTTP context for a request.
    pub(super) fn create_http(
        &self,
        vm: &mut Vm,
        id: u32,
        root: u32,
        info: std::sync::Arc<RequestInfo>,
    ) -> Result<(), FilterError> {
        vm.store
            .data_mut()
            .https
            .insert(id, Box::new(HttpCtx::new(root, info)));
        Self::enter(vm, id);
        if let Some(f) = vm.exports.clone().on_context_create.as_ref() {
            self.call(vm, f, (id, root))?;
        }
        Ok(())
    }

    /// Ends an HTTP context: `on_done`, then `on_log` and `on_delete`. A context whose `on_done`
    /// returns false is kept (the request is over) until it calls `proxy_done`, as the ABI says; at
    /// most [`MAX_AWAITING_DONE`] are kept per VM, beyond that one ends at once.
    pub(super) fn finish_http(&self, vm: &mut Vm, id: u32) -> Result<(), FilterError> {
        if !vm.store.data().https.contains_key(&id) {
            return Ok(());
        }
        let exports = vm.exports.clone();
        let done = match exports.on_done.as_ref() {
            Some(f) if !self.skip.has(ProxyWasmCallback::OnDone) => Some(f),
            _ => None,
        };
        if let Some(done) = done {
            Self::enter(vm, id);
            let finished = self.call(vm, done, id)?;
            if finished == 0 {
                let state = vm.store.data_mut();
                let kept = state.https.values().filter(|h| h.awaiting_done).count();
                if kept < MAX_AWAITING_DONE {
                    if let Some(h) = state.https.get_mut(&id) {
                        h.awaiting_done = true;
                    }
                    return Ok(());
                }
                if !std::mem::replace(&mut state.warned_awaiting, true) {
                    tracing::warn!(
                        plugin = %self.shared.ctx.name,
                        "{MAX_AWAITING_DONE} contexts already wait for proxy_done (their on_done returned false); ending the ones over that at once"
                    );
                }
            }
        }
        self.end_http(vm, id)
    }

    /// `on_log` and `on_delete` for an HTTP context, which then goes (once: a context already gone,
    /// or ending, is left alone).
    pub(super) fn end_http(&self, vm: &mut Vm, id: u32) -> Result<(), FilterError> {
        match vm.store.data_mut().https.get_mut(&id) {
            Some(h) => h.awaiting_done = false,
            None => return Ok(()),
        }
        let exports = vm.exports.clone();
        let log = match exports.on_log.as_ref() {
            Some(f) if !self.skip.has(ProxyWasmCallback::OnLog) => Some(f),
            _ => None,
        };
        for f in [log, exports.on_delete.as_ref()].into_iter().flatten() {
            Self::enter(vm, id);
            self.call(vm, f, id)?;
        }
        vm.store.data_mut().https.remove(&id);
        Ok(())
    }

    /// Delivers what a call in flight reported.
    pub(super) fn deliver(
        &self,
        vm: &mut Vm,
        context_id: u32,
        token: u32,
        event: CallEvent,
    ) -> Result<(), FilterError> {
        match event {
            CallEvent::Http(result) => self.deliver_callout(vm, context_id, token, result),
            CallEvent::Grpc(event) => self.deliver_grpc(vm, token, event),
        }
    }

    /// Delivers a gRPC call's event to the root context that owns the call, as Envoy does (the SDKs
    /// find the context that made the call by its token). Nothing is delivered for a call that was
    /// cancelled. A unary call is gone after its callback; a stream once both sides closed.
    fn deliver_grpc(&self, vm: &mut Vm, token: u32, event: GrpcEvent) -> Result<(), FilterError> {
        let exports = vm.exports.clone();
        let state = vm.store.data_mut();
        let Some(entry) = state.grpc.get_mut(&token) else {
            return Ok(());
        };
        let root = entry.root_id;
        // A unary call's reply and any close end the call on the upstream's side.
        entry.remote_closed |= event.is_last();
        let (f, arg) = match event {
            GrpcEvent::InitialMetadata(h) => {
                let n = h.len() as u32;
                state.grpc_metadata = Some((map::GRPC_INITIAL_METADATA, h));
                (exports.on_grpc_receive_initial_metadata.as_ref(), n)
            }
            GrpcEvent::TrailingMetadata(h) => {
                let n = h.len() as u32;
                state.grpc_metadata = Some((map::GRPC_TRAILING_METADATA, h));
                (exports.on_grpc_receive_trailing_metadata.as_ref(), n)
            }
            GrpcEvent::Message(m) | GrpcEvent::Reply(m) => {
                let n = m.len() as u32;
                state.grpc_message = Some(m);
                state.status = (0, Bytes::new());
                (exports.on_grpc_receive.as_ref(), n)
            }
            GrpcEvent::Close { status, message } => {
                state.status = (status, Bytes::from(message));
                (exports.on_grpc_close.as_ref(), status)
            }
        };
        let r = match f {
            Some(f) => {
                Self::enter(vm, root);
                self.call(vm, f, (root, token, arg))
            }
            None => Ok(()),
        };
        let state = vm.store.data_mut();
        state.grpc_message = None;
        state.grpc_metadata = None;
        let done = state
            .grpc
            .get(&token)
            .is_some_and(|g| g.remote_closed && (g.call.is_unary() || g.call.is_half_closed()));
        if done {
            state.grpc.remove(&token);
        }
        r
    }

    /// Delivers a callout's response (or failure) to the context that made it, with the effective
    /// context set to that context.
    pub(super) fn deliver_callout(
        &self,
        vm: &mut Vm,
        context_id: u32,
        token: u32,
        result: Result<http::Response<Bytes>, CalloutError>,
    ) -> Result<(), FilterError> {
        let state = vm.store.data_mut();
        match state.https.get_mut(&context_id) {
            Some(http) => http.callouts = http.callouts.saturating_sub(1),
            None if !state.roots.contains_key(&context_id) => return Ok(()),
            None => {}
        }
        let exports = vm.exports.clone();
        let Some(f) = exports.on_http_call_response.as_ref() else {
            return Ok(());
        };
        let (args, callout, status) = match result {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                let n = parts.headers.len() as u32 + 1;
                let len = body.len() as u32;
                (
                    (context_id, token, n, len, 0),
                    Some(CalloutResponse {
                        status: parts.status,
                        headers: parts.headers,
                        body,
                    }),
                    (0, Bytes::new()),
                )
            }
            Err(e) => {
                let msg = match &e {
                    CalloutError::Timeout => "timeout".to_string(),
                    other => other.to_string(),
                };
                ((context_id, token, 0, 0, 0), None, (11, Bytes::from(msg)))
            }
        };
        Self::enter(vm, context_id);
        let state = vm.store.data_mut();
        state.callout = callout;
        state.status = status;
        let r = self.call(vm, f, args);
        vm.store.data_mut().callout = None;
        r
    }
}
