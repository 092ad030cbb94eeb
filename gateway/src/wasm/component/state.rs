//! What one component instance's store holds: the WASI context (nothing granted), the memory limiter,
//! the plugin's grants and host core, and the data of the call in progress (the request or response
//! lent to the guest for exactly one call).

use super::PluginShared;
use crate::filter::{RequestHead, RequestInfo, ResponseHead};
use crate::wasm::sandbox::SandboxState;
use crate::wasm::StoreLimiter;
use bytes::Bytes;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Which handler is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No handler (init, or between calls).
    Idle,
    /// `on-request`.
    RequestHead,
    /// `on-request-body`.
    RequestBody,
    /// `on-response`.
    ResponseHead,
    /// `on-response-body`.
    ResponseBody,
}

/// The host marker for the WIT `request` resource: the handle always means "this call's request".
pub struct RequestRes;
/// The host marker for the WIT `response` resource.
pub struct ResponseRes;

/// Store data of one instance.
pub struct CompState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: StoreLimiter,
    pub(crate) shared: Arc<PluginShared>,
    pub(crate) phase: Phase,
    /// The request during request handlers; a copy for reading during its body handler.
    pub(crate) req: Option<RequestHead>,
    /// The response during response handlers.
    pub(crate) resp: Option<ResponseHead>,
    /// The body (chunk or whole) lent to a body handler.
    pub(crate) body: Option<Bytes>,
    /// The body handler running is a whole-mode one: the head (`req` or `resp`) is the live one, not
    /// yet sent on, and may change.
    pub(crate) whole: bool,
    /// Facts of the request being served; `None` between requests.
    pub(crate) info: Option<RequestInfo>,
    /// Set by host calls that waited (outbound HTTP): the next epoch deadline grants a fresh CPU budget
    /// instead of interrupting, since the wait was not the guest's CPU time.
    pub(crate) waited: bool,
}

impl CompState {
    pub(crate) fn new(shared: Arc<PluginShared>, memory_cap: u64) -> CompState {
        CompState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limiter: StoreLimiter::new(memory_cap),
            shared,
            phase: Phase::Idle,
            req: None,
            resp: None,
            body: None,
            whole: false,
            info: None,
            waited: false,
        }
    }

    /// Forgets everything of the request served so far (a warm instance goes back to its pool).
    pub(crate) fn end_request(&mut self) {
        self.phase = Phase::Idle;
        self.req = None;
        self.resp = None;
        self.body = None;
        self.whole = false;
        self.info = None;
    }
}

impl SandboxState for CompState {
    const WAITS: bool = true;

    fn limiter(&mut self) -> &mut StoreLimiter {
        &mut self.limiter
    }

    fn take_waited(&mut self) -> bool {
        std::mem::take(&mut self.waited)
    }
}

impl WasiView for CompState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The bytes of a body as the guest sees them.
pub(crate) fn body_bytes(b: &Option<Bytes>) -> Option<Vec<u8>> {
    b.as_ref().map(|b| b.to_vec())
}
