//! The one internal filter interface that every kind of filter stage implements (the Proxy-Wasm ABI and
//! the gateway's own WIT world), and the per-request chain that runs them.
//!
//! A [`Filter`] is one configured stage on one route (a plugin plus that route's config). For every
//! request it makes a [`FilterCtx`], which sees the phases in order: request headers, request body,
//! response headers, response body, done. Request phases run in chain order, response phases in reverse.
//! Each phase answers with a [`Verdict`]: go on, answer locally, or (body phases) wait for more body.

pub mod chain;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, Method, StatusCode, Uri};
use std::net::SocketAddr;
use std::sync::Arc;

/// The request as filters see and change it.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// Method.
    pub method: Method,
    /// URI (path and query; scheme and authority when known).
    pub uri: Uri,
    /// Headers (no pseudo-headers; `:authority` is the `host` header).
    pub headers: HeaderMap,
}

/// The response as filters see and change it.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The upstream endpoint (`host:port`) that answered, when one did (not for a local or fixed
    /// response).
    pub upstream: Option<Arc<str>>,
}

/// A response made by a filter instead of the backend's.
#[derive(Debug, Clone)]
pub struct LocalResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// What a phase decided.
#[derive(Debug)]
pub enum Verdict {
    /// Go on with the next filter (or the backend / the client).
    Continue,
    /// Stop the chain here and answer with this response. In the request phase the backend is skipped and
    /// the response phases of the filters before this one still run on it (as in Envoy).
    Respond(LocalResponse),
    /// Body phases only: the filter wants the rest of the body before it decides; the chain buffers up to
    /// the route's body limit (413 beyond) and calls the phase again with everything so far.
    Buffer,
}

/// How a filter wants to see bodies. Asked once per request, after its header phase. Ordered by how
/// much the chain must do for it: `Skip` < `Stream` < `Whole`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BodyMode {
    /// The body passes without this filter seeing it; no buffering is added.
    Skip,
    /// Chunks are shown as they arrive.
    Stream,
    /// The whole body, once: the chain holds this direction's head, collects the body (bounded by the
    /// route's body limit) and calls `on_request_body_whole` / `on_response_body_whole` with the head
    /// still open to changes, then sends head and body on with a correct `Content-Length`.
    Whole,
}

/// Facts about the request that are not headers (for properties and request facts).
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// Route name.
    pub route: Arc<str>,
    /// Upstream name, if the route forwards.
    pub upstream: Option<Arc<str>>,
    /// Client address.
    pub peer: SocketAddr,
    /// Local address the request came in on.
    pub local: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// HTTP version as `1.0`, `1.1` or `2`.
    pub protocol: &'static str,
    /// A process-unique request id.
    pub id: u64,
    /// A process-unique id of the client connection the request came on.
    pub connection: u64,
    /// What the TLS handshake established, when the client connected over TLS.
    pub tls: Option<Arc<crate::tls::TlsInfo>>,
    /// The route's timeout: also the longest a filter may keep the request paused waiting for
    /// something of its own (a Proxy-Wasm filter's `Pause` with nothing in flight).
    pub timeout: std::time::Duration,
    /// The consumers of the request's config and whom a filter authenticated the request as; `None`
    /// when the config has no consumers (nobody can be authenticated).
    pub identity: Option<Arc<crate::consumers::Identity>>,
    /// The parameters the route's path template captured, in template order (empty without a
    /// template): WIT `request.path-params`.
    pub params: crate::router::Params,
    /// The request's trace, when `server.tracing` is on: filter stage calls get spans of their own
    /// (when sampled), plugins' `trace` calls act on them, callouts carry their ids.
    pub trace: Option<crate::telemetry::RequestTrace>,
}

/// Why a filter failed. The chain applies the filter's failure policy to it.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The guest trapped (including stack overflow and out-of-bounds access).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The CPU time limit for one call was hit.
    #[error("plugin exceeded its CPU time limit")]
    CpuLimit,
    /// The memory limit was hit.
    #[error("plugin exceeded its memory limit")]
    MemoryLimit,
    /// The guest misused the ABI in a way that fails the request.
    #[error("plugin misused the host ABI: {0}")]
    Abi(String),
    /// No instance could be had (instance limit, instantiation failure).
    #[error("plugin unavailable: {0}")]
    Unavailable(String),
    /// The filter asked for a whole body that is over the limit of this many bytes.
    #[error("the body is over the whole-body limit of {0} bytes")]
    BodyTooLarge(u64),
    /// The filter closed the stream (Proxy-Wasm `proxy_close_stream`): the request ends without an
    /// answer, as a reset (HTTP/2 `RST_STREAM`, HTTP/1 the connection closed). Not a failure, so the
    /// failure policy does not apply.
    #[error("the filter closed the stream")]
    Reset,
}

/// One configured filter stage.
pub trait Filter: Send + Sync {
    /// The plugin's name (for metrics, logs and errors).
    fn name(&self) -> &str;

    /// A context for one request, whose facts are shared by all its stages.
    fn new_ctx(&self, info: &Arc<RequestInfo>) -> Result<Box<dyn FilterCtx>, FilterError>;
}

/// One filter's view of one request. Every phase has a default that continues, so a filter implements
/// only what it needs. Phases are called at most once each, except the body phases (once per chunk,
/// and again with the whole body after `Buffer`).
pub trait FilterCtx: Send {
    /// Request headers; `end_of_stream` when the request has no body.
    fn on_request_headers<'a>(
        &'a mut self,
        _req: &'a mut RequestHead,
        _end_of_stream: bool,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(async { Ok(Verdict::Continue) })
    }

    /// Whether this filter has a request headers phase at all: `false` and the chain neither calls
    /// [`FilterCtx::on_request_headers`] nor counts a call (a WIT filter that declared no `on-request`).
    fn wants_request_headers(&self) -> bool {
        true
    }

    /// Whether this filter has a response headers phase at all, like
    /// [`FilterCtx::wants_request_headers`].
    fn wants_response_headers(&self) -> bool {
        true
    }

    /// The request head, shown instead of [`FilterCtx::on_request_headers`] to a filter that does not
    /// want that phase: one whose body phase reads the head keeps a copy. Not a call (neither counted
    /// nor traced).
    fn request_headers_skipped(&mut self, _req: &RequestHead) {}

    /// The response head, shown instead of [`FilterCtx::on_response_headers`], like
    /// [`FilterCtx::request_headers_skipped`].
    fn response_headers_skipped(&mut self, _resp: &ResponseHead) {}

    /// The request head as it left the request headers phase of the whole chain (every stage, or
    /// up to the one that answered or failed), for a filter that reads it in its later calls: it
    /// takes [`HeadSnapshot::get`], one copy shared by every stage that does, instead of a copy of
    /// its own. Called once the phase is over, on every stage that has a context. Not a call.
    fn request_headers_left(&mut self, _req: &mut HeadSnapshot<'_, RequestHead>) {}

    /// The response head as it left the response headers phase, like
    /// [`FilterCtx::request_headers_left`].
    fn response_headers_left(&mut self, _resp: &mut HeadSnapshot<'_, ResponseHead>) {}

    /// Whether this filter wants to see the request body.
    fn request_body_mode(&self) -> BodyMode {
        BodyMode::Skip
    }

    /// A request body chunk (or, after `Buffer`, everything buffered so far) which the filter may
    /// replace in place.
    fn on_request_body<'a>(
        &'a mut self,
        _body: &'a mut Bytes,
        _end_of_stream: bool,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(async { Ok(Verdict::Continue) })
    }

    /// The whole request body of a filter whose mode is [`BodyMode::Whole`], with the request head not
    /// yet sent upstream: the filter may change both. Filters of other modes never see this call.
    fn on_request_body_whole<'a>(
        &'a mut self,
        _req: &'a mut RequestHead,
        body: &'a mut Bytes,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        self.on_request_body(body, true)
    }

    /// Request trailers, if the request has any (they end the request body).
    fn on_request_trailers<'a>(
        &'a mut self,
        _trailers: &'a mut HeaderMap,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(async { Ok(Verdict::Continue) })
    }

    /// Response headers (from the backend or a local response).
    fn on_response_headers<'a>(
        &'a mut self,
        _resp: &'a mut ResponseHead,
        _end_of_stream: bool,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(async { Ok(Verdict::Continue) })
    }

    /// Whether this filter wants to see the response body.
    fn response_body_mode(&self) -> BodyMode {
        BodyMode::Skip
    }

    /// A response body chunk, like `on_request_body`.
    fn on_response_body<'a>(
        &'a mut self,
        _body: &'a mut Bytes,
        _end_of_stream: bool,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(async { Ok(Verdict::Continue) })
    }

    /// The whole response body of a filter whose mode is [`BodyMode::Whole`], with the response head not
    /// yet sent to the client: the filter may change both, or answer instead.
    fn on_response_body_whole<'a>(
        &'a mut self,
        _resp: &'a mut ResponseHead,
        body: &'a mut Bytes,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        self.on_response_body(body, true)
    }

    /// Response trailers, if the response has any.
    fn on_response_trailers<'a>(
        &'a mut self,
        _trailers: &'a mut HeaderMap,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(async { Ok(Verdict::Continue) })
    }

    /// The request is over (normally or not). Called exactly once.
    fn on_done(&mut self) {}
}

/// A head as it left a header phase, copied at most once for the stages that read it later (as
/// Envoy's filters share one header map, each later call of a stage sees the head as the phase left
/// it). Read only: a change a filter makes to it outside its phase changes its own copy.
pub struct HeadSnapshot<'a, T> {
    head: &'a T,
    shared: Option<Arc<T>>,
}

impl<'a, T: Clone> HeadSnapshot<'a, T> {
    /// The snapshot of `head`, not yet copied.
    pub fn new(head: &'a T) -> HeadSnapshot<'a, T> {
        HeadSnapshot { head, shared: None }
    }

    /// The shared copy, made by the first stage that asks.
    pub fn get(&mut self) -> Arc<T> {
        let head = self.head;
        self.shared
            .get_or_insert_with(|| Arc::new(head.clone()))
            .clone()
    }
}

/// Takes `m`'s lock: at once when it is free (the usual case for a request's own filter state, whose
/// phases run one after another), else by waiting in line.
pub(crate) async fn lock<T>(m: &tokio::sync::Mutex<T>) -> tokio::sync::MutexGuard<'_, T> {
    match m.try_lock() {
        Ok(g) => g,
        Err(_) => m.lock().await,
    }
}
