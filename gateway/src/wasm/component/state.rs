//! What one component instance's store holds: the WASI context (nothing granted; stdout and stderr
//! go to the log through [`GuestOutput`]; made at the instance's first WASI call, so an instance
//! that makes none, as most filters in fresh mode, never pays for one), the memory limiter,
//! the plugin's grants and host core, and the data of the call in progress (the request or response
//! lent to the guest for exactly one call).

use crate::filter::RequestInfo;
use crate::host::HttpData;
use crate::wasm::context::PluginCtx;
use crate::wasm::sandbox::SandboxState;
use crate::wasm::wasi::{GuestOutput, OutputPipe, OutputRequest, Stream};
use crate::wasm::StoreLimiter;
use std::sync::{Arc, Mutex};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The host marker for the WIT `request` resource: the handle always means "this call's request".
pub struct RequestRes;
/// The host marker for the WIT `response` resource.
pub struct ResponseRes;

/// Store data of one instance.
pub struct CompState {
    /// Made at the first WASI call ([`WasiView::ctx`]): building one seeds three random
    /// generators (twice over, inside `WasiCtxBuilder`) and boxes a dozen objects, 4.3 k
    /// instructions of a fresh instance's 80 k, for a context most filters never touch.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    pub(crate) limiter: StoreLimiter,
    /// What the guest writes to stdout and stderr, shared with its WASI streams.
    output: Arc<Mutex<GuestOutput>>,
    pub(crate) ctx: Arc<PluginCtx>,
    /// The request data lent to the running handler (the head, read-only copies of heads sent
    /// on), and which handler that is.
    pub(crate) data: HttpData,
    /// Facts of the request being served; `None` between requests.
    pub(crate) info: Option<RequestInfo>,
    /// The consumers of the config the instance was made for, for lookups during `init` (during a
    /// request, those of the request's config in `info`).
    pub(crate) registry: Arc<crate::consumers::Registry>,
    /// Time host calls waited (outbound HTTP, Redis, a cache fill): the next epoch deadline credits it
    /// instead of interrupting, since the wait was not the guest's CPU time.
    pub(crate) waited: std::time::Duration,
    /// The cache keys the request fills (WIT `cache`): dropped with the request, so its fills end
    /// however it ends.
    pub(crate) cache_fills: Vec<crate::host::Fill>,
    /// `init` is running (WIT `phases.declare` is allowed).
    pub(crate) initializing: bool,
    /// What `init` declared through WIT `phases` (since 0.1.5); `None`: nothing, every handler.
    pub(crate) declared: Option<super::bindings::gateway::filter::phases::PhaseSet>,
}

impl CompState {
    pub(crate) fn new(ctx: Arc<PluginCtx>, registry: Arc<crate::consumers::Registry>) -> CompState {
        let output = Arc::new(Mutex::new(GuestOutput::new(ctx.sandbox.output().clone())));
        CompState {
            wasi: None,
            output,
            table: ResourceTable::new(),
            limiter: ctx.sandbox.limiter(),
            ctx,
            data: HttpData::default(),
            info: None,
            registry,
            waited: std::time::Duration::ZERO,
            cache_fills: Vec::new(),
            initializing: false,
            declared: None,
        }
    }

    /// The WASI resource table (streams, pollables).
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// Forgets everything of the request served so far (a warm instance goes back to its pool).
    pub(crate) fn end_request(&mut self) {
        self.data.clear();
        self.info = None;
        self.cache_fills.clear();
    }
}

impl SandboxState for CompState {
    const WAITS: bool = true;

    fn limiter(&mut self) -> &mut StoreLimiter {
        &mut self.limiter
    }

    fn take_waited(&mut self) -> std::time::Duration {
        std::mem::take(&mut self.waited)
    }

    fn entering(&mut self) {
        let request = self.info.as_ref().map(|i| OutputRequest {
            route: i.route.clone(),
            id: i.id,
        });
        crate::wasm::wasi::lock(&self.output).begin_call(request);
    }

    fn last_words(&mut self) -> Vec<String> {
        crate::wasm::wasi::lock(&self.output).take_last_words()
    }
}

impl WasiView for CompState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let output = &self.output;
        let ctx = self.wasi.get_or_insert_with(|| {
            WasiCtx::builder()
                .stdout(OutputPipe::new(output.clone(), Stream::Stdout))
                .stderr(OutputPipe::new(output.clone(), Stream::Stderr))
                .build()
        });
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}
