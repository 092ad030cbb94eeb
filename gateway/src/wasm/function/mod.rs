//! Function backends: `wasi:http/proxy` components that answer a route's requests themselves,
//! served with wasmtime-wasi-http as `wasmtime serve` and Spin serve them.
//!
//! One [`LoadedFunction`] per `functions:` entry: the component compiled by the process's engine
//! (and its caches), linked once (`ProxyPre`), and instantiated per request from the pooling
//! allocator (`fresh`), or kept warm and reused by one request after another (`reuse`). The request
//! body streams into the guest and its response body out of it as it writes them; the request's
//! task holds the instance until the response body has ended (or been dropped). Limits: linear
//! memory (the plugins' [`StoreLimiter`](crate::wasm::StoreLimiter)), CPU per request (the thread's
//! CPU time while the guest's call is polled, looked at on each epoch tick: [`cpu`]), requests at
//! once (a queue bounded in time), and the whole request's wall-clock time. A failure before the response head is an error response (500 for a trap, 503
//! for a limit or a full queue, 504 for the timeout); after it, the response body is aborted.
//! Outgoing requests go only to granted upstreams ([`state`]).

mod cpu;
pub mod error;
mod serving;
mod state;
mod sync_body;

pub use error::FunctionError;
pub use serving::Functions;
pub use state::Resolver;
pub use sync_body::Aborted;

use crate::body::Body;
use crate::config::functions::{Function as FunctionConfig, CONFIG_ENV};
use crate::config::InstanceMode;
use crate::filter::FilterError;
use crate::metrics::Histogram;
use crate::wasm::sandbox::{InstanceGuard, Sandbox};
use crate::wasm::wasi::GuestOutput;
use crate::wasm::{PluginError, WasmEngine};
use futures_util::FutureExt as _;
use http_body_util::BodyExt;
use state::{FnState, Outbound};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use sync_body::{Close, FunctionBody, Outcome, SyncBody, Waited};
use tokio::sync::{oneshot, Semaphore};
use wasmtime::component::{Component, Linker};
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::WasiHttpView as _;

/// Longest wait of a request for an instance whose response was just let go of (reuse mode): the
/// request's task puts it back as soon as it runs, normally within microseconds.
const RETURN_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// A function's response body as wasmtime-wasi-http makes it.
type HyperBody = wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// How much of a HEAD response's body (which the client never gets) is read, and for how long,
/// while the guest finishes it, so that its instance ends well and can be reused: a short body is
/// read to its end, a longer one is dropped there (the guest's next write fails, and the instance
/// goes) rather than hold the function's slot while the guest writes it all.
const HEAD_DRAIN: (u64, std::time::Duration) = (64 << 10, std::time::Duration::from_millis(200));

/// Reads, in a task of its own, the rest of a response body that owes the client nothing more
/// (its `content-length` has all gone out, or the request was a HEAD) while the guest still runs:
/// to its end, or within `bound` (bytes, time).
fn drain(mut rest: FunctionBody<HyperBody>, bound: Option<(u64, std::time::Duration)>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        let read = async {
            let mut n = 0u64;
            while let Some(Ok(frame)) = rest.frame().await {
                n += frame.data_ref().map_or(0, |d| d.len() as u64);
                if bound.is_some_and(|(most, _)| n > most) {
                    break;
                }
            }
        };
        match bound {
            Some((_, time)) => {
                let _ = tokio::time::timeout(time, read).await;
            }
            None => read.await,
        }
    });
}

/// A route's `function:`, resolved to the loaded function when the config is attached.
pub struct FunctionSlot {
    name: String,
    function: OnceLock<Arc<LoadedFunction>>,
}

impl FunctionSlot {
    /// The slot of the function `name`, empty until attached.
    pub fn new(name: &str) -> FunctionSlot {
        FunctionSlot {
            name: name.to_owned(),
            function: OnceLock::new(),
        }
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the loaded function (once).
    pub fn attach(&self, f: Arc<LoadedFunction>) {
        let _ = self.function.set(f);
    }

    /// The loaded function, if attached.
    pub fn get(&self) -> Option<&Arc<LoadedFunction>> {
        self.function.get()
    }
}

/// A function's figures, kept across reloads by name (like routes' figures).
#[derive(Debug, Default)]
pub struct FunctionStats {
    /// Requests that reached the function.
    pub requests: AtomicU64,
    /// Requests it failed (any cause: busy, trap, limit, timeout, aborted body).
    pub failures: AtomicU64,
    /// Requests turned away because every slot stayed busy.
    pub busy: AtomicU64,
    /// Time from the request's arrival at the function to the end of its response body.
    pub duration: Histogram,
    /// Requests (reuse mode) that found no warm instance and waited for one on its way back.
    pub return_waits: AtomicU64,
    /// Of those, the ones that waited the whole bound (50 ms) for it.
    pub return_wait_timeouts: AtomicU64,
}

/// A failure before the request's task started (counted by [`LoadedFunction::serve`]).
struct Early(FunctionError);

/// One warm instance (reuse mode).
struct Instance {
    store: Store<FnState>,
    proxy: wasmtime_wasi_http::p2::bindings::Proxy,
    _live: InstanceGuard,
}

/// One loaded function.
pub struct LoadedFunction {
    name: Arc<str>,
    sha256: String,
    cfg: FunctionConfig,
    pre: ProxyPre<FnState>,
    sandbox: Sandbox,
    env: Vec<(String, String)>,
    dirs: Vec<(String, std::path::PathBuf)>,
    outbound: Arc<Outbound>,
    permits: Arc<Semaphore>,
    /// Warm instances (reuse mode), each with when it was put back; the last is the most recent.
    warm: Mutex<Vec<(Instance, Instant)>>,
    /// Responses let go of whose instance the request's task has not yet put back or dropped
    /// (reuse mode): the client may have the whole answer, and send its next request, first.
    returns: Arc<sync_body::Returns>,
    stats: Arc<FunctionStats>,
}

impl std::fmt::Debug for LoadedFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedFunction")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl LoadedFunction {
    /// Links the compiled `component` of function `cfg` (whose file has `sha256`) for serving:
    /// it must export `wasi:http/incoming-handler` and import nothing beyond the `wasi:http/proxy`
    /// world (and the WASI CLI interfaces). `dirs` are its directories resolved against the config
    /// file; `resolve` finds upstreams of the serving config.
    pub fn new(
        cfg: &FunctionConfig,
        sha256: String,
        component: &Component,
        engine: Arc<WasmEngine>,
        dirs: Vec<(String, std::path::PathBuf)>,
        resolve: Resolver,
        stats: Arc<FunctionStats>,
    ) -> Result<Arc<LoadedFunction>, PluginError> {
        let unsupported = |reason: String| PluginError::Unsupported {
            plugin: cfg.name.clone(),
            reason,
        };
        for (guest, host) in &dirs {
            if !host.is_dir() {
                return Err(unsupported(format!(
                    "directory `{guest}`: {} is not a directory",
                    host.display()
                )));
            }
        }
        let mut linker: Linker<FnState> = Linker::new(engine.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| unsupported(format!("{e:#}")))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| unsupported(format!("{e:#}")))?;
        let pre = linker.instantiate_pre(component).map_err(|e| {
            unsupported(format!("cannot link as a wasi:http/proxy component: {e:#}"))
        })?;
        let pre = ProxyPre::new(pre).map_err(|e| {
            unsupported(format!(
                "not a wasi:http/proxy component (it must export wasi:http/incoming-handler@0.2): {e:#}"
            ))
        })?;
        let name: Arc<str> = Arc::from(cfg.name.as_str());
        let source = cfg.source();
        let mut env: Vec<(String, String)> = cfg
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(c) = &cfg.config {
            let text = crate::wasm::config_bytes(Some(c));
            env.push((
                CONFIG_ENV.to_owned(),
                String::from_utf8_lossy(&text).into_owned(),
            ));
        }
        Ok(Arc::new(LoadedFunction {
            sandbox: Sandbox::new(name.clone(), engine, &source.limits),
            outbound: Arc::new(Outbound {
                name: name.clone(),
                granted: cfg.upstreams.iter().map(state::Grant::new).collect(),
                resolve,
                timeout: cfg.limits.timeout.0,
            }),
            permits: Arc::new(Semaphore::new(cfg.limits.concurrency.max(1) as usize)),
            warm: Mutex::new(Vec::new()),
            returns: Arc::default(),
            name,
            sha256,
            cfg: cfg.clone(),
            pre,
            env,
            dirs,
            stats,
        }))
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sha256 of its `.wasm` file.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The config it was loaded from.
    pub fn config(&self) -> &FunctionConfig {
        &self.cfg
    }

    /// Its health counters (instances, traps, limits, memory peak).
    pub fn health(&self) -> &Arc<crate::wasm::PluginHealth> {
        self.sandbox.health()
    }

    /// Its figures.
    pub fn stats(&self) -> &Arc<FunctionStats> {
        &self.stats
    }

    /// Instances alive now, and requests being served.
    pub fn instances(&self) -> crate::wasm::InstanceCounts {
        let (live, _) = self.sandbox.instance_counts();
        let limit = self.cfg.limits.concurrency.max(1) as usize;
        let in_flight = limit.saturating_sub(self.permits.available_permits());
        crate::wasm::InstanceCounts {
            live,
            idle: live.saturating_sub(in_flight),
            in_flight,
        }
    }

    /// Serves one request: waits for a slot (up to the queue timeout), takes an instance, and
    /// returns the response as soon as the guest sets its head; the body follows as the guest
    /// writes it. `scheme` is the client's.
    pub async fn serve(
        self: &Arc<Self>,
        parts: http::request::Parts,
        body: Body,
        scheme: &str,
    ) -> Result<http::Response<Body>, FunctionError> {
        let started = Instant::now();
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        match self.serve_inner(parts, body, scheme, started).await {
            Ok(r) => r,
            Err(Early(e)) => {
                // Failed before its task started (the task counts the rest).
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                self.stats.duration.observe(started.elapsed());
                Err(e)
            }
        }
    }

    async fn serve_inner(
        self: &Arc<Self>,
        parts: http::request::Parts,
        body: Body,
        scheme: &str,
        started: Instant,
    ) -> Result<Result<http::Response<Body>, FunctionError>, Early> {
        let limits = &self.cfg.limits;
        let head_only = parts.method == http::Method::HEAD;
        let permit = match tokio::time::timeout(
            limits.queue_timeout.0,
            self.permits.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(p)) => p,
            _ => {
                self.stats.busy.fetch_add(1, Ordering::Relaxed);
                return Err(Early(FunctionError::Busy {
                    function: self.name.to_string(),
                    concurrency: limits.concurrency,
                }));
            }
        };
        let deadline = tokio::time::Instant::from_std(started) + limits.timeout.0;
        let mut inst = match self.checkout().await {
            Some(i) => i,
            None => self.instantiate().await.map_err(|error| {
                Early(FunctionError::Failed {
                    function: self.name.to_string(),
                    error,
                })
            })?,
        };
        inst.store.data_mut().begin_request();
        inst.store.set_epoch_deadline(1);
        let cpu = inst.store.data().cpu.clone();
        self.sandbox.health().call();

        let scheme = match scheme {
            "https" => wasmtime_wasi_http::p2::bindings::http::types::Scheme::Https,
            _ => wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http,
        };
        let body = SyncBody::new(body.map_err(|e| {
            wasmtime_wasi_http::Error::InternalError(Some(format!("request body: {e}")))
        }));
        let req = http::Request::from_parts(parts, body);
        let (head_tx, head_rx) = oneshot::channel();
        let made = {
            let mut view = inst.store.data_mut().http();
            view.new_incoming_request(scheme, req)
                .and_then(|r| Ok((r, view.new_response_outparam(head_tx)?)))
        };
        let (req, out) = match made {
            Ok(x) => x,
            Err(e) => {
                return Err(Early(FunctionError::Failed {
                    function: self.name.to_string(),
                    error: FilterError::Unavailable(format!("{e:#}")),
                }))
            }
        };

        let (done_tx, done_rx) = oneshot::channel::<Outcome>();
        let (closed_tx, closed_rx) = oneshot::channel::<Close<HyperBody>>();
        let (fail_tx, fail_rx) = oneshot::channel::<FunctionError>();
        let this = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let call =
                inst.proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut inst.store, req, out);
            let result = tokio::time::timeout_at(deadline, cpu.metered(call)).await;
            let error = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(FunctionError::Failed {
                    function: this.name.to_string(),
                    error: this.sandbox.failed(&e, &mut inst.store),
                }),
                Err(_) => Some(FunctionError::Timeout {
                    function: this.name.to_string(),
                    after_ms: started.elapsed().as_millis() as u64,
                }),
            };
            match error {
                Some(e) => {
                    this.sandbox.discarded();
                    let _ = done_tx.send(Err(e.to_string()));
                    // Before the instance goes (which tells the waiting request there is no head).
                    let _ = fail_tx.send(e);
                    this.stats.failures.fetch_add(1, Ordering::Relaxed);
                    this.stats.duration.observe(started.elapsed());
                    drop(inst);
                }
                None => {
                    this.sandbox.success();
                    let _ = done_tx.send(Ok(()));
                    drop(fail_tx);
                    // The instance lives until the body has ended (so that its end is the guest's
                    // `finish`, not the instance going away), within the request's timeout.
                    let closed = tokio::time::timeout_at(deadline, closed_rx).await;
                    // Counts the instance as on its way back until it is put back (dropped below).
                    let (complete, returning) = match closed {
                        Ok(Ok(Close::Complete(r))) => (true, r),
                        // Let go of before its end: the guest has returned, so everything it
                        // wrote is there; complete if it finished the body.
                        Ok(Ok(Close::Left(mut body, r))) => (
                            loop {
                                match body.frame().now_or_never() {
                                    Some(None) => break true,
                                    Some(Some(Ok(_))) => continue,
                                    Some(Some(Err(_))) | None => break false,
                                }
                            },
                            r,
                        ),
                        _ => (false, None),
                    };
                    if !complete {
                        this.stats.failures.fetch_add(1, Ordering::Relaxed);
                    }
                    this.stats.duration.observe(started.elapsed());
                    if complete && this.cfg.instance_mode == InstanceMode::Reuse {
                        this.put_warm(inst);
                    } else {
                        drop(inst);
                    }
                    drop(returning);
                }
            }
        });

        // The head, or the guest's return without one. A guest may return without setting its
        // response outparam and without dropping it (StarlingMonkey does when its fetch event fails):
        // the outparam then lives in the instance, which the task keeps until the body ends, so the
        // head channel alone would wait out the timeout. A head is always sent before the guest
        // returns, so when it has returned and no head is there, none will come.
        let mut head_rx = head_rx;
        let mut fail_rx = fail_rx;
        let head = tokio::select! {
            biased;
            h = &mut head_rx => h,
            f = &mut fail_rx => match head_rx.try_recv() {
                Ok(h) => Ok(h),
                Err(_) => {
                    return Ok(Err(f.unwrap_or_else(|_| {
                        FunctionError::NoResponse(self.name.to_string())
                    })))
                }
            },
        };
        Ok(match head {
            Ok(Ok(resp)) => {
                let (parts, body) = resp.into_parts();
                let reuse = self.cfg.instance_mode == InstanceMode::Reuse;
                // Nothing of the body goes to the client of a HEAD request.
                let declared = if head_only {
                    Some(0)
                } else {
                    parts
                        .headers
                        .get(http::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok()?.parse().ok())
                };
                let body = FunctionBody::new(
                    body,
                    self.name.to_string(),
                    done_rx,
                    closed_tx,
                    reuse.then(|| self.returns.clone()),
                    declared,
                    if head_only {
                        |rest| drain(rest, Some(HEAD_DRAIN))
                    } else {
                        |rest| drain(rest, None)
                    },
                );
                Ok(http::Response::from_parts(
                    parts,
                    crate::body::boxed(SyncBody::new(body)),
                ))
            }
            Ok(Err(code)) => Err(FunctionError::ErrorCode {
                function: self.name.to_string(),
                code: format!("{code:?}"),
            }),
            // No head: the guest failed, timed out, or returned without setting one.
            Err(_) => Err(fail_rx
                .await
                .unwrap_or_else(|_| FunctionError::NoResponse(self.name.to_string()))),
        })
    }

    /// A new instance, from the pre-linked component and the pooling allocator.
    async fn instantiate(&self) -> Result<Instance, FilterError> {
        let output = Arc::new(Mutex::new(GuestOutput::new(self.sandbox.output().clone())));
        let wasi =
            FnState::wasi(&self.env, &self.dirs, &output).map_err(FilterError::Unavailable)?;
        let state = FnState::new(wasi, output, self.sandbox.limiter(), self.outbound.clone());
        let cpu = state.cpu.clone();
        let mut store = self.sandbox.store(state);
        let limit = self.cfg.limits.cpu_per_request.0;
        // Called on each epoch tick while guest code runs, inside a poll of the call: the CPU time
        // of the call's polls so far (not the ticks seen, which count the thread's preemptions and
        // host work between them as the guest's whenever the machine is busy).
        store.epoch_deadline_callback(move |ctx| {
            if ctx.data().cpu.spent() > limit {
                return Err(Trap::Interrupt.into());
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store.set_epoch_deadline(1);
        // Instantiating runs guest code too (under the same limit; the request's account starts
        // afresh).
        let made = cpu.metered(self.pre.instantiate_async(&mut store)).await;
        let proxy = match made {
            Ok(p) => p,
            Err(e) => {
                let err = self.sandbox.failed(&e, &mut store);
                self.sandbox.discarded();
                return Err(err);
            }
        };
        Ok(Instance {
            store,
            proxy,
            _live: self.sandbox.instance_guard(),
        })
    }

    /// A warm instance (reuse mode). When there is none but a response was just let go of, its
    /// instance is on its way back (the request's task puts it back right after): waits for it a
    /// little rather than start another, if no earlier request already waits for it. Each return
    /// wakes one waiter; one left without an instance (another request took it, or it was dropped)
    /// stops waiting and starts a new one.
    async fn checkout(&self) -> Option<Instance> {
        if let Some(i) = self.take_warm() {
            return Some(i);
        }
        if self.cfg.instance_mode != InstanceMode::Reuse || self.cfg.limits.max_idle == 0 {
            return None;
        }
        let waiter = self.returns.enlist()?;
        self.stats.return_waits.fetch_add(1, Ordering::Relaxed);
        let until = tokio::time::Instant::now() + RETURN_WAIT;
        match waiter.wait(until, || self.take_warm()).await {
            Waited::Got(i) => Some(i),
            Waited::NotComing => None,
            Waited::TimedOut(i) => {
                self.stats
                    .return_wait_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                i
            }
        }
    }

    fn take_warm(&self) -> Option<Instance> {
        if self.cfg.instance_mode != InstanceMode::Reuse {
            return None;
        }
        let mut warm = self.warm.lock().unwrap();
        let expired = self.expired(&mut warm);
        // The most recently used: the others stay idle and expire.
        let inst = warm.pop().map(|(i, _)| i);
        drop(warm);
        drop(expired);
        inst
    }

    fn put_warm(&self, inst: Instance) {
        let mut warm = self.warm.lock().unwrap();
        let expired = self.expired(&mut warm);
        let extra = if warm.len() < self.cfg.limits.max_idle as usize {
            warm.push((inst, Instant::now()));
            None
        } else {
            Some(inst)
        };
        drop(warm);
        // Dropped outside the lock (a store's teardown returns its slot to the pool).
        drop((expired, extra));
    }

    /// Takes out the warm instances idle for longer than `idle_timeout` (the oldest are first).
    fn expired(&self, warm: &mut Vec<(Instance, Instant)>) -> Vec<(Instance, Instant)> {
        let timeout = self.cfg.limits.idle_timeout.0;
        let n = warm
            .iter()
            .take_while(|(_, since)| since.elapsed() >= timeout)
            .count();
        warm.drain(..n).collect()
    }
}
