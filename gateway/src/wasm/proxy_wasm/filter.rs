//! [`ProxyWasmFilter`]: one plugin with one route's config, as a [`Filter`]. A request's context runs
//! the ABI's HTTP callbacks; a callback that pauses while callouts are in flight makes the phase wait
//! for their responses (`on_http_call_response`) until the plugin resumes, answers, or has nothing
//! left to wait for.

use super::abi::action;
use super::state::{CallEvent, HttpCtx, PendingCall};
use super::vm::Vm;
use super::ProxyWasmPlugin;
use crate::config::FailurePolicy;
use crate::filter::{
    BodyMode, Filter, FilterCtx, FilterError, HeadSnapshot, LocalResponse, RequestHead,
    RequestInfo, ResponseHead, Verdict,
};
use crate::host::{Lent, Phase, SkippedHeads};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, StatusCode};
use std::sync::Arc;
use tokio::sync::MutexGuard;

/// A Proxy-Wasm plugin configured for one route.
pub struct ProxyWasmFilter {
    plugin: Arc<ProxyWasmPlugin>,
    root_id: u32,
    route: Arc<str>,
    policy: FailurePolicy,
}

impl std::fmt::Debug for ProxyWasmFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyWasmFilter")
            .field("plugin", &self.plugin.name())
            .field("route", &self.route)
            .field("root_id", &self.root_id)
            .finish()
    }
}

impl ProxyWasmFilter {
    pub(super) fn new(
        plugin: Arc<ProxyWasmPlugin>,
        root_id: u32,
        route: Arc<str>,
        policy: FailurePolicy,
    ) -> ProxyWasmFilter {
        ProxyWasmFilter {
            plugin,
            root_id,
            route,
            policy,
        }
    }

    /// The failure policy this filter was configured with on its route.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.policy
    }

    /// The root context id of this route's config.
    pub fn root_id(&self) -> u32 {
        self.root_id
    }

    /// The route.
    pub fn route(&self) -> &str {
        &self.route
    }
}

impl Drop for ProxyWasmFilter {
    fn drop(&mut self) {
        self.plugin.drop_root(self.root_id);
    }
}

impl Filter for ProxyWasmFilter {
    fn name(&self) -> &str {
        self.plugin.name()
    }

    fn new_ctx(&self, info: &Arc<RequestInfo>) -> Result<Box<dyn FilterCtx>, FilterError> {
        let skip = self.plugin.skip;
        if skip.everything() {
            // Told that it uses no per-request callback: the request gets no context in the VM.
            return Ok(Box::new(NoCallbacks));
        }
        self.plugin.sandbox().admit()?;
        Ok(Box::new(ProxyWasmCtx {
            plugin: self.plugin.clone(),
            skip,
            root_id: self.root_id,
            id: self.plugin.next_id(),
            pause_limit: info.timeout,
            info: Some(info.clone()),
            home: None,
            generation: None,
            passed: Passed::default(),
            callouts_out: false,
            finished: false,
        }))
    }
}

/// The stage of a plugin whose config skips every per-request callback: every phase continues,
/// and no body is shown to it.
struct NoCallbacks;

impl FilterCtx for NoCallbacks {}

/// One request's HTTP context.
struct ProxyWasmCtx {
    plugin: Arc<ProxyWasmPlugin>,
    /// The callbacks the plugin's config skips (copied from the plugin).
    skip: super::Skip,
    root_id: u32,
    id: u32,
    /// The longest a callback's `Pause` may hold the request (the route's timeout).
    pause_limit: std::time::Duration,
    /// Until the context is created in the VM (at its first phase).
    info: Option<Arc<RequestInfo>>,
    /// The slot of the VM the context lives in (picked at its first phase).
    home: Option<usize>,
    /// The VM generation the context lives in.
    generation: Option<u64>,
    /// The heads its later callbacks read, until the guest is next entered for it.
    passed: Passed,
    /// HTTP callouts were in flight when its last callback returned: an answer may come in the
    /// background before the guest is next entered for it.
    callouts_out: bool,
    finished: bool,
}

/// The heads a stage's later callbacks read, kept by the stage until the guest is next entered for
/// its context (so that a phase that enters nothing touches no VM).
#[derive(Default)]
struct Passed {
    /// Heads whose callback was skipped (made only when a head is skipped).
    skipped: Option<Box<SkippedHeads>>,
    /// The request head as its phase left it, shared with the request's other stages.
    req: Option<Arc<RequestHead>>,
    /// The response head as its phase left it, like `req`.
    resp: Option<Arc<ResponseHead>>,
    /// The request headers callback ran and did not pause, and a later callback may read the
    /// head: `req` is taken once the phase has left every stage (replacing, at the next entry, a
    /// copy the stage kept for callouts in flight).
    share_req: bool,
    /// The same for the response headers callback and `resp`.
    share_resp: bool,
}

impl Passed {
    /// Whether there is something to hand in.
    fn any(&self) -> bool {
        self.skipped.is_some() || self.req.is_some() || self.resp.is_some()
    }

    /// Gives the heads to the context (where its callbacks read them).
    fn hand_in(&mut self, http: &mut HttpCtx) {
        if let Some(skipped) = self.skipped.as_mut() {
            skipped.hand_in(&mut http.data);
        }
        if let Some(r) = self.req.take() {
            http.data.req = None;
            http.shared_req = Some(r);
        }
        if let Some(r) = self.resp.take() {
            http.data.resp = None;
            http.shared_resp = Some(r);
        }
    }
}

/// Hands `passed` to context `id` of `vm`, whose request ended at `ended`.
fn hand_in_to(passed: &mut Passed, vm: &mut Vm, id: u32, ended: std::time::Instant) {
    if let Some(http) = vm.store.data_mut().https.get_mut(&id) {
        http.ended = Some(ended);
        if passed.any() {
            passed.hand_in(http);
        }
    }
}

impl ProxyWasmCtx {
    /// Locks the slot of the VM this context lives in, picking one on first use.
    async fn lock<'p>(&mut self, plugin: &'p Arc<ProxyWasmPlugin>) -> MutexGuard<'p, super::Slot> {
        match self.home {
            Some(index) => crate::filter::lock(&plugin.slots[index]).await,
            None => {
                let slot = plugin.pick().await;
                self.home = Some(slot.index);
                slot
            }
        }
    }

    /// The VM this context lives in, creating the context on first use.
    fn vm<'s>(&mut self, slot: &'s mut super::Slot) -> Result<&'s mut Vm, FilterError> {
        let plugin = &self.plugin;
        plugin.drop_poisoned(slot);
        if let Some(generation) = self.generation {
            return match slot.vm.as_mut() {
                Some(vm) if vm.generation == generation => Ok(vm),
                _ => Err(FilterError::Unavailable(format!(
                    "plugin `{}` was restarted after a failure during this request",
                    plugin.name()
                ))),
            };
        }
        plugin.ensure_vm(slot).map_err(|e| {
            FilterError::Unavailable(format!("plugin `{}` cannot start: {e}", plugin.name()))
        })?;
        let Some(vm) = slot.vm.as_mut() else {
            return Err(FilterError::Unavailable("no VM".into()));
        };
        if !vm.store.data().roots.contains_key(&self.root_id) {
            return Err(FilterError::Unavailable(format!(
                "plugin `{}` has no root context for this route",
                plugin.name()
            )));
        }
        let info = self
            .info
            .take()
            .ok_or_else(|| FilterError::Unavailable("context lost".into()))?;
        self.generation = Some(vm.generation);
        let r = plugin.create_http(vm, self.id, self.root_id, info);
        if let Err(e) = r {
            plugin.discard(slot);
            return Err(e);
        }
        slot.vm
            .as_mut()
            .ok_or_else(|| FilterError::Unavailable("no VM".into()))
    }

    /// Runs one callback with `lent` data, then waits for callouts while the plugin is paused.
    async fn phase(
        &mut self,
        mut lent: Lent<'_>,
        size: u32,
        end_of_stream: bool,
    ) -> Result<Verdict, FilterError> {
        let phase = lent.phase();
        if self.skip.phase(phase) {
            // Skipped by config: the guest is not entered (nor its context made for it). A head
            // stays readable for the later callbacks that run, as if its callback had run, and
            // for the answer of a callout still in flight, which may come before them: then it
            // goes to the context at once.
            if self.callouts_out && matches!(lent, Lent::RequestHead(_) | Lent::ResponseHead(_)) {
                let plugin = self.plugin.clone();
                let mut slot = self.lock(&plugin).await;
                let id = self.id;
                if let Ok(vm) = self.vm(&mut slot) {
                    if let Some(http) = vm.store.data_mut().https.get_mut(&id) {
                        let mut heads = SkippedHeads::default();
                        heads.keep(&lent);
                        heads.hand_in(&mut http.data);
                    }
                }
            } else if self.skip.any_after(phase) {
                self.passed
                    .skipped
                    .get_or_insert_with(Box::default)
                    .keep(&lent);
            }
            return Ok(Verdict::Continue);
        }
        let plugin = self.plugin.clone();
        let id = self.id;
        // The heads stay readable after the phase only for a later callback that may read them:
        // one not skipped, or a callout's answer.
        let later = self.skip.any_after(phase);
        // As in Envoy, a `Pause` from a header or trailer callback, or from the last body callback,
        // holds the stream until the filter continues it (or answers, or closes it), even with
        // nothing in flight; bounded by the route's timeout. A `Pause` mid-body buffers instead.
        let holds = !phase.is_body() || end_of_stream;
        let (action_code, mut pending, wake) = {
            let mut slot = self.lock(&plugin).await;
            let vm = self.vm(&mut slot)?;
            let eos = end_of_stream as u32;
            let e = vm.exports.clone();
            let (three, two) = match phase {
                Phase::RequestHeaders => (e.on_request_headers.as_ref(), None),
                Phase::RequestBody => (e.on_request_body.as_ref(), None),
                Phase::RequestTrailers => (None, e.on_request_trailers.as_ref()),
                Phase::ResponseHeaders => (e.on_response_headers.as_ref(), None),
                Phase::ResponseBody => (e.on_response_body.as_ref(), None),
                Phase::ResponseTrailers => (None, e.on_response_trailers.as_ref()),
                Phase::Idle => (None, None),
            };
            let Some(http) = vm.store.data_mut().https.get_mut(&id) else {
                return Err(FilterError::Unavailable("context lost".into()));
            };
            http.continue_request = false;
            http.continue_response = false;
            if self.passed.any() {
                self.passed.hand_in(http);
            }
            match &lent {
                Lent::RequestBody(b) => http.req_body_size += b.len() as u64,
                Lent::ResponseBody(b) => http.resp_body_size += b.len() as u64,
                _ => {}
            }
            http.data.lend(&mut lent);
            ProxyWasmPlugin::enter(vm, id);
            let r = match (three, two) {
                (Some(f), _) => plugin.call(vm, f, (id, size, eos)),
                (None, Some(f)) => plugin.call(vm, f, (id, size)),
                (None, None) => Ok(action::CONTINUE),
            };
            let state = vm.store.data_mut();
            let paused = matches!(r, Ok(a) if a == action::PAUSE);
            // A head read while this call may still be answered (a pause, callouts in flight,
            // started by this callback or an earlier one) is a copy of the stage's own: an answer
            // in the background reads it until the guest is next entered for the stage. The later
            // callbacks of a stage that did not pause read the chain's shared copy, taken when the
            // phase has left every stage (`*_headers_left`) and handed in at that next entry, so
            // what they read does not depend on whether a callout was still in flight.
            self.callouts_out = state.https.get(&id).is_some_and(|h| h.callouts > 0);
            let own_copy = paused || !state.pending.is_empty() || self.callouts_out;
            if later && !paused {
                match phase {
                    Phase::RequestHeaders => self.passed.share_req = true,
                    Phase::ResponseHeaders => self.passed.share_resp = true,
                    _ => {}
                }
            }
            if let Some(http) = state.https.get_mut(&id) {
                http.data.take_back(&mut lent, own_copy);
            }
            let action_code = match r {
                Ok(a) => a,
                Err(e) => {
                    plugin.discard(&mut slot);
                    return Err(e);
                }
            };
            if action_code > action::PAUSE {
                let err = plugin.sandbox().violation(format!(
                    "callback returned {action_code}, which is not an action"
                ));
                plugin.discard(&mut slot);
                return Err(err);
            }
            let pending = plugin.after_callback(vm, Some(id));
            // Only a pause can wait; then an answer or a close ends it at once.
            let answered = action_code == action::PAUSE
                && vm
                    .store
                    .data()
                    .https
                    .get(&id)
                    .is_none_or(|h| h.local.is_some() || h.closed);
            let bounded = pending.iter().any(PendingCall::bounded);
            if action_code != action::PAUSE || answered || (!bounded && !holds) {
                // Nothing to wait for: the verdict under the same lock. Callouts the callback
                // started are still answered (`on_http_call_response`), in the background.
                plugin.detach(pending, vm.index, vm.generation);
                return phase_verdict(&plugin, vm, id, phase, action_code, false, end_of_stream);
            }
            let wake = vm
                .store
                .data_mut()
                .https
                .get_mut(&id)
                .map(|h| h.wake().clone());
            let waiting = Waiting {
                plugin: plugin.clone(),
                index: vm.index,
                generation: vm.generation,
                calls: pending,
            };
            (action_code, waiting, wake.unwrap_or_default())
        };

        let response_phase = phase.is_response();
        let mut resumed = false;
        // The route's timeout bounds a hold on nothing, counted from when nothing bounded is in
        // flight any more (callouts and unary gRPC calls have their own timeouts; an open gRPC
        // stream does not count, though its events are delivered); [`MAX_PAUSE`] bounds the whole
        // pause.
        let now = tokio::time::Instant::now();
        let mut idle_until = now + self.pause_limit;
        let give_up = now + MAX_PAUSE.max(self.pause_limit);
        while action_code == action::PAUSE && !resumed && (holds || pending.bounded()) {
            if self.local_response_ready().await? {
                break;
            }
            let woke = tokio::select! {
                call = first_event(&mut pending.calls), if !pending.calls.is_empty() => Ok(Some(call)),
                _ = wake.notified() => Ok(None),
                _ = tokio::time::sleep_until(idle_until), if !pending.bounded() => Err(self.pause_limit),
                _ = tokio::time::sleep_until(give_up) => Err(MAX_PAUSE),
            };
            let woke = match woke {
                Ok(w) => w,
                Err(limit) => {
                    // Callouts still in flight are answered in the background (`Waiting`).
                    return Ok(paused_too_long(&plugin, &pending.calls, limit));
                }
            };
            let mut slot = self.lock(&plugin).await;
            let vm = self.vm(&mut slot)?;
            let Some(http) = vm.store.data_mut().https.get_mut(&id) else {
                return Err(FilterError::Unavailable("context lost".into()));
            };
            let r = match woke {
                // A callout of this context came back: its callback runs with the data lent.
                Some((token, event)) => {
                    http.data.lend(&mut lent);
                    let r = plugin.deliver(vm, id, token, event);
                    if let Some(http) = vm.store.data_mut().https.get_mut(&id) {
                        http.data.take_back(&mut lent, true);
                    }
                    r
                }
                // Another callback (a tick, a queue, another context's callout) may have resumed,
                // answered or closed this one.
                None => Ok(()),
            };
            if let Some(http) = vm.store.data().https.get(&id) {
                resumed = if response_phase {
                    http.continue_response
                } else {
                    http.continue_request
                };
            }
            if let Err(e) = r {
                plugin.discard(&mut slot);
                return Err(e);
            }
            pending.calls.extend(plugin.after_callback(vm, Some(id)));
            if !pending.bounded() {
                idle_until = tokio::time::Instant::now() + self.pause_limit;
            }
        }

        // What is still in flight is delivered in the background (`Waiting`).
        drop(pending);
        let mut slot = self.lock(&plugin).await;
        let vm = self.vm(&mut slot)?;
        phase_verdict(&plugin, vm, id, phase, action_code, resumed, end_of_stream)
    }

    /// Whether the context answered or closed its stream (which ends a pause).
    async fn local_response_ready(&mut self) -> Result<bool, FilterError> {
        let plugin = self.plugin.clone();
        let mut slot = self.lock(&plugin).await;
        let vm = self.vm(&mut slot)?;
        Ok(vm
            .store
            .data()
            .https
            .get(&self.id)
            .is_some_and(|h| h.local.is_some() || h.closed))
    }

    fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let plugin = self.plugin.clone();
        let (id, root) = (self.id, self.root_id);
        // A context the chain never reached (a filter before it answered, or the request failed
        // first), or whose every callback so far was skipped, is made now, as Envoy makes it for
        // its log: every stage sees `on_done` and `on_log` in every case (and the heads that
        // passed it, `passed`).
        let end = match (self.home.zip(self.generation), self.info.take()) {
            (Some((index, generation)), _) => End::Created(index, generation),
            // Made only for `on_done` and `on_log`: not when both are skipped.
            (None, Some(info)) if !self.skip.ends() => End::Unreached(info),
            (None, _) => {
                plugin.sandbox().release();
                return;
            }
        };
        let passed = std::mem::take(&mut self.passed);
        let ended = std::time::Instant::now();
        // The callbacks are short and run without waiting: here, when the VM is free (the common
        // case), otherwise in a task that waits for it. A context made only to end goes to any VM.
        // A plugin whose shared data is in Redis may wait inside them (`on_log` counting requests
        // there, say): they run in a task, so that the response's end, written once this returns,
        // does not wait for the store (Envoy logs after the stream too).
        let may_wait = super::hostcalls::shared_data_waits(&plugin.shared);
        let ready = if may_wait {
            None
        } else {
            end.free_slot(&plugin)
        };
        if let Some(mut slot) = ready {
            end.run(&plugin, &mut slot, id, root, passed, ended);
            return;
        }
        drop(ready);
        plugin.shared.handle.clone().spawn(async move {
            let mut slot = match end.free_slot(&plugin) {
                Some(slot) => slot,
                None => {
                    let index = match &end {
                        End::Created(index, _) => *index,
                        // The first VM is always started (unless it failed just now).
                        End::Unreached(_) => 0,
                    };
                    crate::filter::lock(&plugin.slots[index]).await
                }
            };
            end.run(&plugin, &mut slot, id, root, passed, ended);
        });
    }
}

/// How a request's context ends.
enum End {
    /// It lives in the VM of this slot and generation.
    Created(usize, u64),
    /// No callback of it ran (the chain never reached it, or skipped them all): it is made in the
    /// running VM (none is started for it) only to be ended.
    Unreached(Arc<RequestInfo>),
}

impl End {
    /// Its VM's slot if free now: the context's own; for one made only to end, the first free
    /// slot with a running VM, from the thread's own.
    fn free_slot<'p>(&self, plugin: &'p ProxyWasmPlugin) -> Option<MutexGuard<'p, super::Slot>> {
        match self {
            End::Created(index, _) => plugin.slots[*index].try_lock().ok(),
            End::Unreached(_) => {
                let (n, home) = (plugin.slots.len(), plugin.home());
                (0..n).find_map(|k| {
                    let slot = plugin.slots[(home + k) % n].try_lock().ok()?;
                    slot.vm.is_some().then_some(slot)
                })
            }
        }
    }

    /// Ends context `id` (`on_done`, `on_log`, `on_delete`), the heads `passed` to it readable
    /// and its request over at `ended`, and releases its instance slot.
    fn run(
        self,
        plugin: &Arc<ProxyWasmPlugin>,
        slot: &mut super::Slot,
        id: u32,
        root: u32,
        mut passed: Passed,
        ended: std::time::Instant,
    ) {
        plugin.drop_poisoned(slot);
        if let Some(vm) = slot.vm.as_mut() {
            let ended = match self {
                End::Created(_, generation) if vm.generation == generation => {
                    hand_in_to(&mut passed, vm, id, ended);
                    plugin.finish_http(vm, id)
                }
                End::Created(..) => Ok(()),
                End::Unreached(info) if vm.store.data().roots.contains_key(&root) => {
                    plugin.create_http(vm, id, root, info).and_then(|()| {
                        hand_in_to(&mut passed, vm, id, ended);
                        plugin.finish_http(vm, id)
                    })
                }
                End::Unreached(_) => Ok(()),
            };
            match ended {
                // What the end callbacks started (callouts, timers, `proxy_done`) goes on.
                Ok(()) => {
                    let _ = plugin.after_callback(vm, None);
                }
                Err(_) => plugin.discard(slot),
            }
        }
        plugin.sandbox().release();
    }
}

/// The longest a callback's `Pause` may hold a request in all, callouts included: Envoy's default
/// stream idle timeout.
const MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(300);

/// The answer for a request a filter kept paused past `limit` (its callouts still in flight are
/// dropped with the request).
fn paused_too_long(
    plugin: &ProxyWasmPlugin,
    pending: &[PendingCall],
    limit: std::time::Duration,
) -> Verdict {
    tracing::warn!(
        plugin = plugin.name(),
        limit_ms = limit.as_millis() as u64,
        callouts_in_flight = pending.len(),
        "a paused filter was not resumed in time"
    );
    Verdict::Respond(LocalResponse {
        status: StatusCode::GATEWAY_TIMEOUT,
        headers: HeaderMap::new(),
        body: Bytes::from_static(b"a filter kept the request paused past the route's timeout\n"),
    })
}

/// What a phase ended in, once the plugin has nothing left to wait for.
fn phase_verdict(
    plugin: &ProxyWasmPlugin,
    vm: &mut Vm,
    id: u32,
    phase: Phase,
    action_code: u32,
    resumed: bool,
    end_of_stream: bool,
) -> Result<Verdict, FilterError> {
    let Some(http) = vm.store.data_mut().https.get_mut(&id) else {
        return Err(FilterError::Unavailable("context lost".into()));
    };
    plugin.sandbox().success();
    if let Some(local) = http.local.take() {
        return Ok(Verdict::Respond(local));
    }
    if std::mem::take(&mut http.closed) {
        return Err(FilterError::Reset);
    }
    if action_code == action::PAUSE && !resumed && phase.is_body() && !end_of_stream {
        return Ok(Verdict::Buffer);
    }
    Ok(Verdict::Continue)
}

/// The callouts a paused phase waits on. Whatever is left in it when it is dropped (the phase ended,
/// failed, or the request went away mid-pause) is handed to the background, so the plugin still gets
/// its callbacks.
struct Waiting {
    plugin: Arc<ProxyWasmPlugin>,
    index: usize,
    generation: u64,
    calls: Vec<PendingCall>,
}

impl Waiting {
    /// Whether something in flight ends by itself in bounded time (see [`PendingCall::bounded`]).
    fn bounded(&self) -> bool {
        self.calls.iter().any(PendingCall::bounded)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.calls.is_empty() {
            self.plugin
                .detach(std::mem::take(&mut self.calls), self.index, self.generation);
        }
    }
}

/// Waits for the next event of any callout in `pending`; a callout that reported its last event is
/// taken out.
async fn first_event(pending: &mut Vec<PendingCall>) -> (u32, CallEvent) {
    let ((event, last), index) = {
        let futs = pending.iter_mut().map(|c| Box::pin(c.next()));
        let (r, i, _) = futures_util::future::select_all(futs).await;
        (r, i)
    };
    let token = pending[index].token;
    if last {
        pending.swap_remove(index);
    }
    (token, event)
}

impl Drop for ProxyWasmCtx {
    fn drop(&mut self) {
        self.finish();
    }
}

fn count(h: &HeaderMap) -> u32 {
    h.len() as u32
}

impl FilterCtx for ProxyWasmCtx {
    fn on_request_headers<'a>(
        &'a mut self,
        req: &'a mut RequestHead,
        end_of_stream: bool,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(async move {
            // Pseudo-headers count too: :method, :scheme, :authority, :path.
            let n = count(&req.headers) + 4 - req.headers.contains_key(http::header::HOST) as u32;
            self.phase(Lent::RequestHead(req), n, end_of_stream).await
        })
    }

    fn request_body_mode(&self) -> BodyMode {
        // The body streams past a skipped body callback (which returns at once) while the
        // trailers callback runs: trailers come only at the end of a body read through the chain.
        if self.skip.phase(Phase::RequestBody) && self.skip.phase(Phase::RequestTrailers) {
            BodyMode::Skip
        } else {
            BodyMode::Stream
        }
    }

    fn on_request_body<'a>(
        &'a mut self,
        body: &'a mut Bytes,
        end_of_stream: bool,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(async move {
            let n = body.len() as u32;
            self.phase(Lent::RequestBody(body), n, end_of_stream).await
        })
    }

    fn on_request_trailers<'a>(
        &'a mut self,
        trailers: &'a mut HeaderMap,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(async move {
            let n = count(trailers);
            self.phase(Lent::RequestTrailers(trailers), n, true).await
        })
    }

    fn on_response_headers<'a>(
        &'a mut self,
        resp: &'a mut ResponseHead,
        end_of_stream: bool,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(async move {
            let n = count(&resp.headers) + 1;
            self.phase(Lent::ResponseHead(resp), n, end_of_stream).await
        })
    }

    fn response_body_mode(&self) -> BodyMode {
        // As for the request body: Skip only when the trailers callback is skipped too.
        if self.skip.phase(Phase::ResponseBody) && self.skip.phase(Phase::ResponseTrailers) {
            BodyMode::Skip
        } else {
            BodyMode::Stream
        }
    }

    fn on_response_body<'a>(
        &'a mut self,
        body: &'a mut Bytes,
        end_of_stream: bool,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(async move {
            let n = body.len() as u32;
            self.phase(Lent::ResponseBody(body), n, end_of_stream).await
        })
    }

    fn on_response_trailers<'a>(
        &'a mut self,
        trailers: &'a mut HeaderMap,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(async move {
            let n = count(trailers);
            self.phase(Lent::ResponseTrailers(trailers), n, true).await
        })
    }

    fn request_headers_left(&mut self, req: &mut HeadSnapshot<'_, RequestHead>) {
        if std::mem::take(&mut self.passed.share_req) {
            self.passed.req = Some(req.get());
        }
    }

    fn response_headers_left(&mut self, resp: &mut HeadSnapshot<'_, ResponseHead>) {
        if std::mem::take(&mut self.passed.share_resp) {
            self.passed.resp = Some(resp.get());
        }
    }

    fn on_done(&mut self) {
        self.finish();
    }
}
