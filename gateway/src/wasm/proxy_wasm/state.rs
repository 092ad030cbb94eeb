//! What the host keeps for one VM: its contexts (root contexts per route config, HTTP contexts per
//! request) and the effects of host calls that the caller applies after each callback.

use super::abi::{map, Status};
use super::Shared;
use crate::filter::{LocalResponse, RequestHead, RequestInfo, ResponseHead};
use crate::host::{
    edit_headers, header_name, header_value, set_authority, set_path_with_query, CalloutError,
    GrpcCall, GrpcEvent, HandleError, HeaderEdit, HttpData,
};
use crate::wasm::StoreLimiter;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http::{HeaderMap, Method, StatusCode};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::sync::{mpsc, oneshot};
use wasmtime::{Memory, TypedFunc};

/// Contexts by id. Ids are handed out by the host from a counter, never chosen by the guest, so a
/// multiplicative hash (one multiply) spreads them as well as SipHash does, at a fraction of the cost
/// of the several lookups each callback makes.
pub type IdMap<V> = HashMap<u32, V, std::hash::BuildHasherDefault<IdHasher>>;

/// The hasher of [`IdMap`]: Fibonacci hashing of a `u32`.
#[derive(Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Data of one VM's store.
pub struct VmState {
    pub shared: Arc<Shared>,
    pub limiter: StoreLimiter,
    /// The plugin's slot this VM runs in.
    pub slot: usize,
    pub memory: Option<Memory>,
    pub malloc: Option<TypedFunc<u32, u32>>,
    /// The context the running callback was called for.
    pub current: u32,
    /// The context host calls act on (`proxy_set_effective_context` changes it for the callback).
    pub effective: u32,
    pub roots: IdMap<RootCtx>,
    pub https: IdMap<Box<HttpCtx>>,
    /// The callout response being delivered by `on_http_call_response`.
    pub callout: Option<CalloutResponse>,
    /// `proxy_get_status`: code and message of the last callout.
    pub status: (u32, Bytes),
    /// Callouts started during the callback, collected by the caller.
    pub pending: Vec<PendingCall>,
    /// gRPC calls and streams in flight, by token; removing one cancels it (no callback follows).
    pub grpc: IdMap<GrpcEntry>,
    /// The gRPC message being delivered (`on_grpc_receive`): buffer `GRPC_RECEIVE_BUFFER`.
    pub grpc_message: Option<Bytes>,
    /// The gRPC metadata being delivered: its map type (initial or trailing) and the map.
    pub grpc_metadata: Option<(u32, HeaderMap)>,
    pub next_token: u32,
    /// Tick periods set during the callback: (root context, milliseconds).
    pub tick_changes: Vec<(u32, u32)>,
    /// HTTP contexts that called `proxy_done` after their `on_done` returned false: they end
    /// (`on_log`, `on_delete`) once the current callback returns.
    pub done_requested: Vec<u32>,
    /// A callback failed where its VM could not be discarded at once: it is, before its next use.
    pub poisoned: bool,
    /// Time host calls waited (shared data in Redis): the next epoch deadline credits it instead of
    /// interrupting, since the wait was not the guest's CPU time.
    pub waited: std::time::Duration,
    /// The warning that too many contexts wait for `proxy_done` was given (once per VM).
    pub warned_awaiting: bool,
    /// Foreign function arguments while `on_foreign_function` runs (never: none are registered).
    pub call_data: Option<Bytes>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl VmState {
    pub fn new(shared: Arc<Shared>, limiter: StoreLimiter, slot: usize) -> VmState {
        VmState {
            shared,
            limiter,
            slot,
            memory: None,
            malloc: None,
            current: 0,
            effective: 0,
            roots: IdMap::default(),
            https: IdMap::default(),
            callout: None,
            status: (0, Bytes::new()),
            pending: Vec::new(),
            grpc: IdMap::default(),
            grpc_message: None,
            grpc_metadata: None,
            next_token: 0,
            tick_changes: Vec::new(),
            done_requested: Vec::new(),
            poisoned: false,
            waited: std::time::Duration::ZERO,
            warned_awaiting: false,
            call_data: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    /// The root context that owns the effective context.
    pub fn root_of_effective(&self) -> Option<u32> {
        if self.roots.contains_key(&self.effective) {
            Some(self.effective)
        } else {
            self.https.get(&self.effective).map(|h| h.root_id)
        }
    }

    /// The trace of the request whose context is the effective one, if it is traced.
    pub fn trace(&self) -> Option<&crate::telemetry::RequestTrace> {
        self.https.get(&self.effective)?.info.trace.as_ref()
    }
}

/// A root context: one per (plugin, route config).
pub struct RootCtx {
    pub route: Arc<str>,
    pub config: Bytes,
    pub properties: HashMap<Vec<u8>, Bytes>,
}

/// An HTTP context: one per request.
pub struct HttpCtx {
    pub root_id: u32,
    /// The request's facts, shared by its stages.
    pub info: Arc<RequestInfo>,
    pub started: Instant,
    pub started_wall: SystemTime,
    /// What the running callback was lent, and copies of the heads for later callbacks.
    pub data: HttpData,
    /// The request head as the request headers phase left it, shared with the request's other
    /// stages: read when `data` has no request head.
    pub shared_req: Option<Arc<RequestHead>>,
    /// The response head as the response headers phase left it, like `shared_req`.
    pub shared_resp: Option<Arc<ResponseHead>>,
    pub properties: HashMap<Vec<u8>, Bytes>,
    pub local: Option<LocalResponse>,
    pub continue_request: bool,
    pub continue_response: bool,
    pub closed: bool,
    /// Its `on_done` returned false: the request is over and the context waits for `proxy_done`.
    pub awaiting_done: bool,
    /// Woken when something another callback did may end a pause of this context: it asked to
    /// continue, answered, or closed the stream. Made when first used ([`HttpCtx::wake`]), under
    /// the VM's lock as every use: most requests never pause.
    pub wake: Option<Arc<tokio::sync::Notify>>,
    pub req_body_size: u64,
    pub resp_body_size: u64,
    /// HTTP callouts it made whose answer has not been delivered yet. While one is in flight, a
    /// head lent to its callbacks stays a copy of its own, which the answer reads.
    pub callouts: u32,
    /// When its request ended, once it did (its end callbacks may run later): `request.duration`
    /// stops there.
    pub ended: Option<Instant>,
}

impl HttpCtx {
    pub fn new(root_id: u32, info: Arc<RequestInfo>) -> HttpCtx {
        HttpCtx {
            root_id,
            info,
            started: Instant::now(),
            started_wall: SystemTime::now(),
            data: HttpData::default(),
            shared_req: None,
            shared_resp: None,
            properties: HashMap::new(),
            local: None,
            continue_request: false,
            continue_response: false,
            closed: false,
            awaiting_done: false,
            wake: None,
            req_body_size: 0,
            resp_body_size: 0,
            callouts: 0,
            ended: None,
        }
    }

    /// The context's wake-up (see `wake`).
    pub fn wake(&mut self) -> &Arc<tokio::sync::Notify> {
        self.wake
            .get_or_insert_with(|| Arc::new(tokio::sync::Notify::new()))
    }

    /// The request head this context can read: lent to its callback, its own copy, or the shared
    /// one.
    pub fn request(&self) -> Option<&RequestHead> {
        self.data.req.as_ref().or(self.shared_req.as_deref())
    }

    /// The response head this context can read, like [`HttpCtx::request`].
    pub fn response(&self) -> Option<&ResponseHead> {
        self.data.resp.as_ref().or(self.shared_resp.as_deref())
    }
}

/// A callout response (or failure) being delivered.
pub struct CalloutResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The kind of a callout token, in its low two bits; as in proxy-wasm-cpp-host, whose tokens step
/// by 4 so that `proxy_grpc_*` can tell a call from a stream by its token.
pub mod token_kind {
    pub const HTTP: u32 = 0;
    pub const GRPC_CALL: u32 = 1;
    pub const GRPC_STREAM: u32 = 2;
}

/// A gRPC call or stream. As in Envoy, it belongs to the root context of the context that made it:
/// it outlives that context, its callbacks name the root, and it ends with the root.
pub struct GrpcEntry {
    pub call: GrpcCall,
    pub root_id: u32,
    /// The upstream closed the stream; it goes once the plugin closes it too.
    pub remote_closed: bool,
}

impl VmState {
    /// A new callout token of `kind` (one of [`token_kind`]).
    pub fn next_token(&mut self, kind: u32) -> u32 {
        loop {
            self.next_token = self.next_token.wrapping_add(4).max(4);
            let token = (self.next_token & !3) | kind;
            // After 2^30 callouts the counter wraps: a token still in use is skipped.
            if !self.grpc.contains_key(&token) {
                return token;
            }
        }
    }
}

/// How an HTTP callout ended.
pub type CallResult = Result<http::Response<Bytes>, CalloutError>;

/// What a call in flight reports: an HTTP callout its one result, a gRPC call its events.
pub enum CallEvent {
    Http(CallResult),
    Grpc(GrpcEvent),
}

enum CallRx {
    Http(oneshot::Receiver<CallResult>),
    /// A gRPC call's events; `bounded` for a unary call (it has a timeout), not for a stream.
    Grpc(mpsc::Receiver<GrpcEvent>, bool),
}

/// A callout in flight (HTTP or gRPC).
pub struct PendingCall {
    pub token: u32,
    pub context_id: u32,
    rx: CallRx,
}

impl PendingCall {
    pub fn http(token: u32, context_id: u32, rx: oneshot::Receiver<CallResult>) -> PendingCall {
        PendingCall {
            token,
            context_id,
            rx: CallRx::Http(rx),
        }
    }

    pub fn grpc(
        token: u32,
        context_id: u32,
        rx: mpsc::Receiver<GrpcEvent>,
        unary: bool,
    ) -> PendingCall {
        PendingCall {
            token,
            context_id,
            rx: CallRx::Grpc(rx, unary),
        }
    }

    /// Whether the call ends by itself in bounded time (an HTTP callout or a unary gRPC call, which
    /// have timeouts); a stream may stay open as long as the plugin and the upstream keep it.
    pub fn bounded(&self) -> bool {
        match &self.rx {
            CallRx::Http(_) => true,
            CallRx::Grpc(_, unary) => *unary,
        }
    }

    /// The call's next event, and whether it is its last (after which this is not polled again).
    pub async fn next(&mut self) -> (CallEvent, bool) {
        match &mut self.rx {
            CallRx::Http(rx) => {
                let result = rx
                    .await
                    .unwrap_or_else(|_| Err(CalloutError::Failed("callout task ended".into())));
                (CallEvent::Http(result), true)
            }
            CallRx::Grpc(rx, _) => match rx.recv().await {
                Some(event) => {
                    let last = event.is_last();
                    (CallEvent::Grpc(event), last)
                }
                // Only a cancelled call (its entry dropped) ends without a last event, and nothing
                // is delivered for a call no longer in `VmState::grpc`.
                None => (
                    CallEvent::Grpc(GrpcEvent::Close {
                        status: crate::host::grpc_code::CANCELLED,
                        message: "cancelled".into(),
                    }),
                    true,
                ),
            },
        }
    }
}

/// A header map as the ABI sees it, with pseudo-headers.
pub enum MapRef<'a> {
    Request(&'a mut RequestHead, &'static str),
    Response(&'a mut ResponseHead),
    /// A head shared with other stages, for reading only (see [`map_ref`]'s `write`).
    SharedRequest(&'a RequestHead, &'static str),
    SharedResponse(&'a ResponseHead),
    Plain(&'a mut HeaderMap),
    Callout(&'a mut CalloutResponse),
}

/// Finds the map `map_type` of the effective context. Maps that do not exist in this phase are
/// `BadArgument` (as in Envoy); gRPC metadata outside its callback is `NotFound`. A head shared
/// with other stages is read in place; to `write` to it, the context first takes a copy of its own
/// (which, as any head read after its phase, changes nothing that is sent on).
pub fn map_ref(state: &mut VmState, map_type: u32, write: bool) -> Result<MapRef<'_>, Status> {
    let effective = state.effective;
    if map_type == map::HTTP_CALL_RESPONSE_HEADERS {
        return state
            .callout
            .as_mut()
            .map(MapRef::Callout)
            .ok_or(Status::BadArgument);
    }
    if map_type == map::HTTP_CALL_RESPONSE_TRAILERS {
        // Callout responses carry no trailers here: an empty map during delivery.
        return match state.callout.as_mut() {
            Some(_) => Err(Status::NotFound),
            None => Err(Status::BadArgument),
        };
    }
    if map_type == map::GRPC_INITIAL_METADATA || map_type == map::GRPC_TRAILING_METADATA {
        return match &mut state.grpc_metadata {
            Some((ty, m)) if *ty == map_type => Ok(MapRef::Plain(m)),
            _ => Err(Status::NotFound),
        };
    }
    let http = state.https.get_mut(&effective).ok_or(Status::BadArgument)?;
    let scheme = http.info.scheme;
    let HttpCtx {
        data: http,
        shared_req,
        shared_resp,
        ..
    } = &mut **http;
    match map_type {
        map::REQUEST_HEADERS => {
            if write && http.req.is_none() {
                http.req = shared_req.take().map(Arc::unwrap_or_clone);
            }
            match (http.req.as_mut(), shared_req.as_deref()) {
                (Some(r), _) => Ok(MapRef::Request(r, scheme)),
                (None, Some(r)) => Ok(MapRef::SharedRequest(r, scheme)),
                (None, None) => Err(Status::BadArgument),
            }
        }
        map::REQUEST_TRAILERS => http
            .req_trailers
            .as_mut()
            .map(MapRef::Plain)
            .ok_or(Status::BadArgument),
        map::RESPONSE_HEADERS => {
            if write && http.resp.is_none() {
                http.resp = shared_resp.take().map(Arc::unwrap_or_clone);
            }
            match (http.resp.as_mut(), shared_resp.as_deref()) {
                (Some(r), _) => Ok(MapRef::Response(r)),
                (None, Some(r)) => Ok(MapRef::SharedResponse(r)),
                (None, None) => Err(Status::BadArgument),
            }
        }
        map::RESPONSE_TRAILERS => http
            .resp_trailers
            .as_mut()
            .map(MapRef::Plain)
            .ok_or(Status::BadArgument),
        _ => Err(Status::BadArgument),
    }
}

fn bad(_: HandleError) -> Status {
    Status::BadArgument
}

fn name(key: &[u8]) -> Result<HeaderName, Status> {
    header_name(key).map_err(bad)
}

/// A header value a plugin wants to set: CR, LF, NUL and other control bytes are refused.
pub fn value(v: &[u8]) -> Result<HeaderValue, Status> {
    header_value(b"", v).map_err(bad)
}

fn authority(req: &RequestHead) -> Option<Vec<u8>> {
    req.headers
        .get(HOST)
        .map(|v| v.as_bytes().to_vec())
        .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes().to_vec()))
}

/// Puts the request's pseudo-headers in `out`; its headers are the rest.
fn request_pseudo<'h>(
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    req: &'h RequestHead,
    scheme: &str,
) -> &'h HeaderMap {
    out.push((b":method".to_vec(), req.method.as_str().as_bytes().to_vec()));
    let scheme = req.uri.scheme_str().unwrap_or(scheme);
    out.push((b":scheme".to_vec(), scheme.as_bytes().to_vec()));
    if let Some(a) = authority(req) {
        out.push((b":authority".to_vec(), a));
    }
    let path = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    out.push((b":path".to_vec(), path.as_bytes().to_vec()));
    &req.headers
}

/// Puts the response's pseudo-header in `out`; its headers are the rest.
fn response_pseudo<'h>(out: &mut Vec<(Vec<u8>, Vec<u8>)>, resp: &'h ResponseHead) -> &'h HeaderMap {
    out.push((
        b":status".to_vec(),
        resp.status.as_str().as_bytes().to_vec(),
    ));
    &resp.headers
}

impl MapRef<'_> {
    /// Every pair, pseudo-headers first.
    pub fn pairs(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let headers = match self {
            MapRef::Request(req, scheme) => request_pseudo(&mut out, req, scheme),
            MapRef::SharedRequest(req, scheme) => request_pseudo(&mut out, req, scheme),
            MapRef::Response(resp) => response_pseudo(&mut out, resp),
            MapRef::SharedResponse(resp) => response_pseudo(&mut out, resp),
            MapRef::Callout(c) => {
                out.push((b":status".to_vec(), c.status.as_str().as_bytes().to_vec()));
                &c.headers
            }
            MapRef::Plain(h) => &**h,
        };
        let skip_host = matches!(self, MapRef::Request(..) | MapRef::SharedRequest(..));
        for (k, v) in headers.iter() {
            if skip_host && k == HOST {
                continue;
            }
            out.push((k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()));
        }
        out
    }

    /// The first value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let key = key.to_ascii_lowercase();
        if key.starts_with(b":") {
            return self
                .pairs()
                .into_iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v);
        }
        let headers = match self {
            MapRef::Request(r, _) => &r.headers,
            MapRef::SharedRequest(r, _) => &r.headers,
            MapRef::Response(r) => &r.headers,
            MapRef::SharedResponse(r) => &r.headers,
            MapRef::Callout(c) => &c.headers,
            MapRef::Plain(h) => &**h,
        };
        let name = HeaderName::from_bytes(&key).ok()?;
        headers.get(name).map(|v| v.as_bytes().to_vec())
    }

    /// The headers to change; a shared head cannot be (`map_ref` gives writers a copy instead).
    fn headers_mut(&mut self) -> Result<&mut HeaderMap, Status> {
        match self {
            MapRef::Request(r, _) => Ok(&mut r.headers),
            MapRef::Response(r) => Ok(&mut r.headers),
            MapRef::Callout(c) => Ok(&mut c.headers),
            MapRef::Plain(h) => Ok(h),
            MapRef::SharedRequest(..) | MapRef::SharedResponse(_) => Err(Status::BadArgument),
        }
    }

    fn set_pseudo(&mut self, key: &[u8], v: &[u8]) -> Result<(), Status> {
        value(v)?;
        match (self, key) {
            (MapRef::Request(r, _), b":method") => {
                // CONNECT is not forwarded (the client would read a 2xx to it as a tunnel).
                match Method::from_bytes(v) {
                    Ok(m) if m != Method::CONNECT => r.method = m,
                    _ => return Err(Status::BadArgument),
                }
            }
            (MapRef::Request(r, _), b":path") => set_path_with_query(r, v, true).map_err(bad)?,
            (MapRef::Request(r, _), b":authority") => set_authority(r, v).map_err(bad)?,
            (MapRef::Request(r, _), b":scheme") => {
                // The scheme of the downstream connection is a fact; a plugin may only restate it.
                let current = r.uri.scheme_str().unwrap_or("");
                if !current.is_empty() && current.as_bytes() != v {
                    return Err(Status::BadArgument);
                }
            }
            (MapRef::Response(r), b":status") => {
                r.status = StatusCode::from_bytes(v).map_err(|_| Status::BadArgument)?;
            }
            (MapRef::Callout(c), b":status") => {
                c.status = StatusCode::from_bytes(v).map_err(|_| Status::BadArgument)?;
            }
            _ => return Err(Status::BadArgument),
        }
        Ok(())
    }

    /// Adds a value (a pseudo-header is replaced, having one value).
    pub fn add(&mut self, key: &[u8], v: &[u8]) -> Result<(), Status> {
        let key = key.to_ascii_lowercase();
        if key.starts_with(b":") {
            return self.set_pseudo(&key, v);
        }
        let (n, v) = (name(&key)?, value(v)?);
        edit_headers(self.headers_mut()?, HeaderEdit::Append(n, v));
        Ok(())
    }

    /// Replaces all values of `key` with one (adds it when absent).
    pub fn replace(&mut self, key: &[u8], v: &[u8]) -> Result<(), Status> {
        let key = key.to_ascii_lowercase();
        if key.starts_with(b":") {
            return self.set_pseudo(&key, v);
        }
        let (n, v) = (name(&key)?, value(v)?);
        edit_headers(self.headers_mut()?, HeaderEdit::Set(n, v));
        Ok(())
    }

    /// Removes `key`. Removing `:authority` removes `host`; other pseudo-headers cannot be removed
    /// and are left as they are.
    pub fn remove(&mut self, key: &[u8]) -> Result<(), Status> {
        let key = key.to_ascii_lowercase();
        if key == b":authority" {
            if let MapRef::Request(r, _) = self {
                r.headers.remove(HOST);
            }
            return Ok(());
        }
        if key.starts_with(b":") {
            return Ok(());
        }
        let n = name(&key)?;
        edit_headers(self.headers_mut()?, HeaderEdit::Remove(&n));
        Ok(())
    }

    /// Replaces the whole map (pseudo-headers in `pairs` are set; absent ones keep their values).
    /// Validated first, so a bad pair changes nothing.
    pub fn set_pairs(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), Status> {
        let mut fresh = HeaderMap::new();
        let mut pseudo = Vec::new();
        for (k, v) in pairs {
            let k = k.to_ascii_lowercase();
            if k.starts_with(b":") {
                value(v)?;
                pseudo.push((k, v));
            } else {
                fresh.append(name(&k)?, value(v)?);
            }
        }
        let keep_host = match self {
            MapRef::Request(r, _) if !pseudo.iter().any(|(k, _)| k == b":authority") => {
                r.headers.get(HOST).cloned()
            }
            _ => None,
        };
        *self.headers_mut()? = fresh;
        if let Some(h) = keep_host {
            self.headers_mut()?.insert(HOST, h);
        }
        for (k, v) in pseudo {
            self.set_pseudo(&k, v)?;
        }
        Ok(())
    }
}

/// Parses a map sent by the guest.
pub fn deserialize(bytes: &[u8]) -> Result<super::abi::Pairs, Status> {
    super::abi::deserialize_map(bytes).ok_or(Status::SerializationFailure)
}
