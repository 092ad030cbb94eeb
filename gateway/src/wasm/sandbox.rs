//! The sandbox both ABIs run their guests in: one [`Sandbox`] per loaded plugin owns store creation,
//! the memory limiter ([`StoreLimiter`]), the epoch deadlines (the start budget [`START_CPU_LIMIT`]
//! and the per-call budget), turning a failed guest call into the filter error and the health
//! failure kind ([`classify`]), the health accounting around each call, and instance admission (the
//! plugin's budget of requests in flight), the plugin's budget of output lines ([`OutputLimiter`]),
//! and explaining a failure in the log and the error: the guest's last stderr lines (a panic's
//! message and location) and the Wasm backtrace ([`explain`]). The ABIs (`component`, `proxy_wasm`) keep only their wire
//! formats; everything on the per-call path here is generic or inline, never dynamic.

use crate::config::PluginLimits;
use crate::filter::FilterError;
use crate::wasm::health::FailureKind;
use crate::wasm::wasi::{escape_controls, OutputLimiter, ProcExit};
use crate::wasm::{PluginHealth, WasmEngine};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Store, Trap, UpdateDeadline, WasmBacktrace};

/// CPU time that starting an instance may take (a component's instantiation and `init`; a
/// Proxy-Wasm VM's `_initialize`, `_start`, `main`), when the per-call limit is smaller. Default: 1s.
pub const START_CPU_LIMIT: Duration = Duration::from_secs(1);

/// Most table elements an instance may have. Default: 100 000.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The guest broke its ABI in a way that cannot be answered with a status (its allocator returned
/// memory it does not have, a callback returned a value outside the ABI). Traps the call.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AbiViolation(pub String);

/// Caps memory growth of one instance, and remembers that it said no so that a following trap is
/// reported as a memory limit.
#[derive(Debug)]
pub struct StoreLimiter {
    memory_cap: usize,
    hit: bool,
    /// The plugin's counters, where the largest linear memory granted is kept.
    health: Arc<PluginHealth>,
}

impl StoreLimiter {
    /// A limiter allowing `memory_cap` bytes of linear memory, recording the largest growth it
    /// grants in `health`.
    pub fn new(memory_cap: u64, health: Arc<PluginHealth>) -> StoreLimiter {
        StoreLimiter {
            memory_cap: usize::try_from(memory_cap).unwrap_or(usize::MAX),
            hit: false,
            health,
        }
    }

    /// Whether a growth was refused since the last `reset`.
    pub fn hit(&self) -> bool {
        self.hit
    }

    /// Forgets earlier refusals (before each call into the guest).
    pub fn reset(&mut self) {
        self.hit = false;
    }
}

impl wasmtime::ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.hit = true;
            return Ok(false);
        }
        self.health.memory_grown(desired as u64);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// What the sandbox needs of an ABI's store data.
pub(crate) trait SandboxState: Send + 'static {
    /// Whether host calls of this ABI wait (outbound HTTP, a Redis store, a cache fill awaited inside
    /// a call): then an epoch deadline that passes after waits extends the budget by the time waited
    /// (at most one call's budget), since that time was not the guest's CPU time. Without waits, or
    /// with less than a tick of them, the deadline traps.
    const WAITS: bool;

    /// The instance's memory limiter.
    fn limiter(&mut self) -> &mut StoreLimiter;

    /// How long host calls waited since the last call to this (only asked when [`Self::WAITS`]).
    fn take_waited(&mut self) -> Duration {
        Duration::ZERO
    }

    /// A call into the guest begins (the output it writes is for the request being served, if any).
    fn entering(&mut self) {}

    /// A call failed: the stderr lines the guest wrote during it (its partial lines are logged).
    fn last_words(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// The guest's side of a failed call, for the log and the error: the stderr lines it wrote during
/// the call (a panic hook's message and location) and the Wasm backtrace, one frame a line (function
/// names from the module's name section; file and line for frames that have them, which takes an
/// engine that reads DWARF: see [`crate::wasm::engine::WASM_BACKTRACE_FRAMES`]'s settings). Empty
/// when there is neither.
pub fn explain(err: &wasmtime::Error, last_words: &[String]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if !last_words.is_empty() {
        out.push_str("\nguest stderr:");
        for line in last_words {
            let _ = write!(out, "\n  {}", escape_controls(line));
        }
    }
    if let Some(bt) = err.downcast_ref::<WasmBacktrace>() {
        let frames = bt.frames();
        // A Rust panic's trace starts with a dozen frames of the panic machinery (abort,
        // rust_panic, std::panicking, core::panicking::panic_fmt): the reader wants what called it.
        let machinery = frames
            .iter()
            .rposition(|f| f.func_name().is_some_and(|n| n.contains("panicking")))
            .map_or(0, |i| i + 1);
        if machinery < frames.len() {
            out.push_str("\nwasm backtrace:");
            if machinery > 0 {
                let _ = write!(out, " ({machinery} frames of the panic machinery left out)");
            }
        }
        for (i, frame) in frames.iter().enumerate().skip(machinery) {
            let name = frame
                .func_name()
                .map(without_hash)
                .unwrap_or_else(|| format!("<function {}>", frame.func_index()));
            let _ = write!(out, "\n  {i:>2}: {name}");
            if let Some(sym) = frame.symbols().iter().find(|s| s.file().is_some()) {
                let file = escape_controls(sym.file().unwrap_or_default());
                let _ = write!(out, "\n        at {file}");
                if let Some(line) = sym.line() {
                    let _ = write!(out, ":{line}");
                    if let Some(col) = sym.column() {
                        let _ = write!(out, ":{col}");
                    }
                }
            }
        }
    }
    out
}

/// A function name as a reader wants it: a Rust symbol (legacy `_ZN..E` or v0 `_R`) demangled
/// without its hash by rustc-demangle (already in the build through wasmtime's `demangle`), anything
/// else as it is; control characters escaped, since the name comes from the guest.
fn without_hash(name: &str) -> String {
    let readable = match rustc_demangle::try_demangle(name) {
        Ok(d) => format!("{d:#}"),
        Err(_) => name.to_owned(),
    };
    escape_controls(&readable)
}

/// Turns a failed guest call into the filter error and the kind of failure to count, using what
/// the limiter saw. An interrupt is the CPU limit even when memory was refused too.
pub fn classify(err: &wasmtime::Error, memory_hit: bool) -> (FilterError, FailureKind) {
    let trap = err.downcast_ref::<Trap>();
    if trap == Some(&Trap::Interrupt) {
        return (FilterError::CpuLimit, FailureKind::Cpu);
    }
    if memory_hit {
        return (FilterError::MemoryLimit, FailureKind::Memory);
    }
    if let Some(abi) = err.downcast_ref::<AbiViolation>() {
        return (FilterError::Abi(abi.0.clone()), FailureKind::Trap);
    }
    if let Some(exit) = err.downcast_ref::<ProcExit>() {
        return (FilterError::Trap(exit.to_string()), FailureKind::Trap);
    }
    if let Some(trap) = trap {
        return (FilterError::Trap(trap.to_string()), FailureKind::Trap);
    }
    (FilterError::Trap(format!("{err:#}")), FailureKind::Trap)
}

/// Wasm instances (component instances and Proxy-Wasm VMs) alive in this process (shown as
/// `gateway_wasm_instances_live`).
static LIVE_INSTANCES: AtomicUsize = AtomicUsize::new(0);

/// How many Wasm instances are alive, across all plugins.
pub fn live_instances() -> usize {
    LIVE_INSTANCES.load(Ordering::Relaxed)
}

/// Counts one instance as alive (in the process and in its plugin's counter) until dropped; made by
/// [`Sandbox::instance_guard`].
pub(crate) struct InstanceGuard(Arc<AtomicUsize>);

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        LIVE_INSTANCES.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One plugin's sandbox: its engine, limits, health counters, instances and requests in flight.
pub(crate) struct Sandbox {
    name: Arc<str>,
    engine: Arc<WasmEngine>,
    memory: u64,
    /// Epoch ticks of one call.
    call_ticks: u64,
    /// Epoch ticks of starting an instance: the per-call budget, or [`START_CPU_LIMIT`] if larger.
    start_ticks: u64,
    /// Requests in flight at most (`limits.instances`).
    admit_limit: u32,
    in_flight: AtomicU32,
    instances: Arc<AtomicUsize>,
    health: Arc<PluginHealth>,
    output: Arc<OutputLimiter>,
}

impl Sandbox {
    /// The sandbox of plugin `name` under `limits`.
    pub(crate) fn new(name: Arc<str>, engine: Arc<WasmEngine>, limits: &PluginLimits) -> Sandbox {
        let cpu = limits.cpu_per_call.0;
        Sandbox {
            engine,
            memory: limits.memory.0,
            call_ticks: WasmEngine::ticks_for(cpu),
            start_ticks: WasmEngine::ticks_for(cpu.max(START_CPU_LIMIT)),
            admit_limit: limits.instances,
            in_flight: AtomicU32::new(0),
            instances: Arc::default(),
            health: Arc::new(PluginHealth::default()),
            output: Arc::new(OutputLimiter::new(name.clone())),
            name,
        }
    }

    /// The process's engine.
    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        self.engine.engine()
    }

    /// The plugin's health counters.
    pub(crate) fn health(&self) -> &Arc<PluginHealth> {
        &self.health
    }

    /// The plugin's budget of output lines, shared by its instances.
    pub(crate) fn output(&self) -> &Arc<OutputLimiter> {
        &self.output
    }

    /// The memory limiter of a new instance: [`Self::memory_cap`] bytes, growth recorded in the
    /// plugin's counters.
    pub(crate) fn limiter(&self) -> StoreLimiter {
        StoreLimiter::new(self.memory, self.health.clone())
    }

    /// Requests the plugin may serve at once (also the most warm instances worth keeping).
    pub(crate) fn instance_limit(&self) -> u32 {
        self.admit_limit
    }

    /// Instances alive and requests in flight.
    pub(crate) fn instance_counts(&self) -> (usize, usize) {
        (
            self.instances.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed) as usize,
        )
    }

    /// A store for a new instance holding `data`: memory limited, with the start budget as its
    /// deadline. Counted as an instance created.
    pub(crate) fn store<T: SandboxState>(&self, data: T) -> Store<T> {
        let mut store = Store::new(self.engine.engine(), data);
        store.limiter(|s| s.limiter());
        if T::WAITS {
            let ticks = self.call_ticks;
            store.epoch_deadline_callback(move |mut ctx| {
                // Credit what was waited, not a whole budget per wait: a loop of calls that answer
                // at once (a Redis that fails fast) earns nothing and is stopped.
                let waited = ctx.data_mut().take_waited();
                let credit =
                    (waited.as_nanos() / crate::wasm::engine::EPOCH_TICK.as_nanos()) as u64;
                match credit.min(ticks) {
                    0 => Err(Trap::Interrupt.into()),
                    n => Ok(UpdateDeadline::Continue(n)),
                }
            });
        } else {
            store.epoch_deadline_trap();
        }
        store.set_epoch_deadline(self.start_ticks);
        self.health.instance_created();
        store
    }

    /// Counts an instance as alive until the guard is dropped (keep it with the instance).
    pub(crate) fn instance_guard(&self) -> InstanceGuard {
        self.instances.fetch_add(1, Ordering::Relaxed);
        LIVE_INSTANCES.fetch_add(1, Ordering::Relaxed);
        InstanceGuard(self.instances.clone())
    }

    /// Before a call into the guest: the per-call deadline, the limiter and waits forgotten, the
    /// call counted.
    #[inline]
    pub(crate) fn enter<T: SandboxState>(&self, store: &mut Store<T>) {
        self.enter_with(store, self.call_ticks);
    }

    /// [`Sandbox::enter`] with the start budget (a component's `init`).
    #[inline]
    pub(crate) fn enter_start<T: SandboxState>(&self, store: &mut Store<T>) {
        self.enter_with(store, self.start_ticks);
    }

    #[inline]
    fn enter_with<T: SandboxState>(&self, store: &mut Store<T>, ticks: u64) {
        let data = store.data_mut();
        data.limiter().reset();
        if T::WAITS {
            data.take_waited();
        }
        data.entering();
        store.set_epoch_deadline(ticks);
        self.health.call();
    }

    /// After a call into the guest: a failure is classified, counted and logged.
    #[inline]
    pub(crate) fn leave<T: SandboxState, R>(
        &self,
        result: wasmtime::Result<R>,
        store: &mut Store<T>,
    ) -> Result<R, FilterError> {
        match result {
            Ok(r) => Ok(r),
            Err(e) => Err(self.failed(&e, store)),
        }
    }

    /// Counts and logs a failed guest call (or instantiation); the caller throws the instance away.
    #[cold]
    pub(crate) fn failed<T: SandboxState>(
        &self,
        e: &wasmtime::Error,
        store: &mut Store<T>,
    ) -> FilterError {
        let (err, kind) = classify(e, store.data_mut().limiter().hit());
        self.health.failure(kind);
        let why = explain(e, &store.data_mut().last_words());
        tracing::warn!(plugin = %self.name, "plugin call failed: {err}{why}");
        match err {
            FilterError::Trap(m) => FilterError::Trap(m + &why),
            other => other,
        }
    }

    /// Calls a core function under the per-call limits (the whole of [`Sandbox::enter`] and
    /// [`Sandbox::leave`] for a synchronous call).
    #[inline]
    pub(crate) fn call<T, P, R>(
        &self,
        store: &mut Store<T>,
        f: &wasmtime::TypedFunc<P, R>,
        args: P,
    ) -> Result<R, FilterError>
    where
        T: SandboxState,
        P: wasmtime::WasmParams,
        R: wasmtime::WasmResults,
    {
        self.enter(store);
        let r = f.call(&mut *store, args);
        self.leave(r, store)
    }

    /// A call ended well: the plugin's run of failures is over.
    #[inline]
    pub(crate) fn success(&self) {
        self.health.success();
    }

    /// The guest answered a call with something its ABI does not allow (an action or a local
    /// response that does not exist): counted and logged as a trap; the caller throws the instance
    /// away.
    #[cold]
    pub(crate) fn violation(&self, message: String) -> FilterError {
        self.health.failure(FailureKind::Trap);
        tracing::warn!(plugin = %self.name, "plugin misused the host ABI: {message}");
        FilterError::Abi(message)
    }

    /// Counts an instance thrown away after a failure.
    #[cold]
    pub(crate) fn discarded(&self) {
        self.health.instance_discarded();
    }

    /// Takes one request in, if fewer than the plugin's instance limit are in flight; each admitted
    /// request is given back with [`Sandbox::release`].
    #[inline]
    pub(crate) fn admit(&self) -> Result<(), FilterError> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.admit_limit {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(self.full());
        }
        Ok(())
    }

    #[cold]
    fn full(&self) -> FilterError {
        FilterError::Unavailable(format!(
            "plugin `{}` has {} requests in flight (its instance limit)",
            self.name, self.admit_limit
        ))
    }

    /// Ends a request taken in by [`Sandbox::admit`].
    #[inline]
    pub(crate) fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(err: wasmtime::Error, memory_hit: bool) -> (String, &'static str) {
        let (e, k) = classify(&err, memory_hit);
        let k = match k {
            FailureKind::Trap => "trap",
            FailureKind::Cpu => "cpu",
            FailureKind::Memory => "memory",
        };
        (e.to_string(), k)
    }

    #[test]
    fn an_interrupt_is_the_cpu_limit_even_after_a_refused_growth() {
        let (e, k) = kind(Trap::Interrupt.into(), true);
        assert_eq!(k, "cpu");
        assert_eq!(e, FilterError::CpuLimit.to_string());
    }

    #[test]
    fn a_trap_after_a_refused_growth_is_the_memory_limit() {
        let (e, k) = kind(Trap::UnreachableCodeReached.into(), true);
        assert_eq!(k, "memory");
        assert_eq!(e, FilterError::MemoryLimit.to_string());
        let (_, k) = kind(wasmtime::Error::msg("allocation failed"), true);
        assert_eq!(k, "memory");
    }

    #[test]
    fn traps_abi_violations_and_exits_are_traps_with_their_message() {
        let (e, k) = kind(Trap::UnreachableCodeReached.into(), false);
        assert_eq!(k, "trap");
        assert!(e.starts_with("plugin trapped:"), "{e}");
        let (e, k) = kind(
            wasmtime::Error::new(AbiViolation("bad pointer".into())),
            false,
        );
        assert_eq!(k, "trap");
        assert_eq!(e, "plugin misused the host ABI: bad pointer");
        let (e, k) = kind(wasmtime::Error::new(ProcExit(3)), false);
        assert_eq!(k, "trap");
        assert_eq!(e, format!("plugin trapped: {}", ProcExit(3)));
        let (e, k) = kind(wasmtime::Error::msg("host said no"), false);
        assert_eq!(k, "trap");
        assert_eq!(e, "plugin trapped: host said no");
    }

    #[test]
    fn a_trap_under_context_is_still_seen() {
        let err = wasmtime::Error::from(Trap::Interrupt).context("in proxy_on_request_headers");
        assert_eq!(kind(err, false).1, "cpu");
    }

    #[test]
    fn legacy_rust_symbols_are_demangled_and_lose_their_hash() {
        assert_eq!(
            without_hash(
                "_ZN49_$LT$F$u20$as$u20$gateway_plugin_sdk..rt..Dyn$GT$10on_request17hcf792f2c85061b65E"
            ),
            "<F as gateway_plugin_sdk::rt::Dyn>::on_request"
        );
        assert_eq!(
            without_hash("_ZN4core9panicking5panic17h0123456789abcdefE"),
            "core::panicking::panic"
        );
        assert_eq!(without_hash("on-request"), "on-request");
        assert_eq!(without_hash("_ZN3bad"), "_ZN3bad");
        assert_eq!(without_hash("_ZN99xE"), "_ZN99xE");
        assert_eq!(
            without_hash("_ZN18446744073709551615xE"),
            "_ZN18446744073709551615xE"
        );
    }

    #[test]
    fn guest_text_cannot_forge_a_log_line() {
        let forged = "x\n2026-12-07T00:00:00Z  INFO gateway::admin: config reloaded\r\u{1b}[2J";
        let shown = without_hash(forged);
        assert!(!shown.contains('\n') && !shown.contains('\r') && !shown.contains('\u{1b}'));
        assert!(shown.contains("\\u{a}2026"), "{shown}");
        assert_eq!(escape_controls("plain text"), "plain text");
    }

    #[test]
    fn admission_stops_at_the_instance_limit_and_reopens_on_release() {
        let engine = WasmEngine::new(Default::default()).unwrap();
        let limits = PluginLimits {
            instances: 2,
            ..Default::default()
        };
        let s = Sandbox::new(Arc::from("p"), engine, &limits);
        assert!(s.admit().is_ok());
        assert!(s.admit().is_ok());
        let Err(FilterError::Unavailable(m)) = s.admit() else {
            panic!("a third request was admitted")
        };
        assert!(m.contains("2 requests in flight"), "{m}");
        assert_eq!(s.instance_counts(), (0, 2));
        s.release();
        assert!(s.admit().is_ok());
    }
}
