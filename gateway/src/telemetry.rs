//! OpenTelemetry tracing of requests (`server.tracing:`): a server span per request, a span per
//! filter stage call and per upstream try, W3C Trace Context (and optionally B3) read from clients
//! and written to upstreams and plugin callouts, and an OTLP exporter (HTTP/protobuf or gRPC over
//! the gateway's own hyper client) behind a bounded queue that drops and counts when full.
//!
//! Without `server.tracing` nothing here runs: the runtime has no [`Tracing`], a request no
//! [`RequestTrace`]. A request that is not sampled has a [`RequestTrace`] (for its ids, which go
//! to the upstream with the sampled flag off) but no span at all: its sampling is decided before
//! the SDK is asked for one, so it allocates nothing (but a `tracestate` the client sent).

use crate::config::tracing::{OtlpProtocol, Propagation};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// W3C `traceparent`.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// W3C `tracestate`.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const B3: HeaderName = HeaderName::from_static("b3");
const B3_TRACE: HeaderName = HeaderName::from_static("x-b3-traceid");
const B3_SPAN: HeaderName = HeaderName::from_static("x-b3-spanid");
const B3_PARENT: HeaderName = HeaderName::from_static("x-b3-parentspanid");
const B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
const B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// W3C Trace Context's bounds of `tracestate`: a list of more members is invalid (not passed on);
/// a longer one loses whole members (those over [`TRACESTATE_LONG_MEMBER`] first, then from the
/// end) until it fits. The length counts the commas, not optional white space.
const TRACESTATE_MAX_MEMBERS: usize = 32;
const TRACESTATE_MAX_LEN: usize = 512;
const TRACESTATE_LONG_MEMBER: usize = 128;

/// What the recorded `url.query` and `url.full` put in place of every query value.
const REDACTED: &str = "REDACTED";

/// The longest attribute key a plugin may set; a longer one is ignored. Default: 256 bytes.
pub const MAX_PLUGIN_KEY: usize = 256;

/// The longest attribute value or event name a plugin may set; longer ones are cut (at a character
/// boundary). Default: 4096 bytes.
pub const MAX_PLUGIN_VALUE: usize = 4096;

fn cut(s: &str) -> &str {
    if s.len() <= MAX_PLUGIN_VALUE {
        return s;
    }
    let mut end = MAX_PLUGIN_VALUE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Export figures, kept across reloads (on `/metrics` as `gateway_tracing_*`); they live with the
/// other process figures in `crate::metrics`, which does not depend on this module.
pub use crate::metrics::TraceStats;

/// The tracing of one config: its sampler, propagation formats and exporter.
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagation: Vec<Propagation>,
    /// The export task's end of the queue, until [`Tracing::start`] spawns it.
    pending: Mutex<Option<(mpsc::Receiver<SpanData>, Exporter)>>,
    /// The ratio alone, for B3 parents that leave the decision to the gateway.
    ratio: Sampler,
    batch: usize,
    delay: Duration,
}

impl Tracing {
    /// Builds the tracing of `cfg` (checked). Starts nothing: see [`Tracing::start`].
    pub fn new(cfg: &crate::config::tracing::Tracing, stats: Arc<TraceStats>) -> Tracing {
        let (tx, rx) = mpsc::channel(cfg.max_queue_size);
        let mut attrs: Vec<KeyValue> = cfg
            .resource
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        if !cfg.resource.contains_key("service.name") {
            attrs.push(KeyValue::new("service.name", "gateway"));
        }
        let resource = Resource::builder_empty().with_attributes(attrs).build();
        let exporter = Exporter::new(cfg, (&resource).into(), stats.clone());
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                cfg.sampling_ratio,
            ))))
            .with_resource(resource)
            .with_id_generator(Ids)
            .with_span_processor(QueueProcessor { tx, stats })
            .build();
        let tracer = provider.tracer("gateway");
        Tracing {
            provider,
            tracer,
            propagation: cfg.propagation.clone(),
            pending: Mutex::new(Some((rx, exporter))),
            ratio: Sampler::TraceIdRatioBased(cfg.sampling_ratio),
            batch: cfg.max_export_batch_size,
            delay: cfg.scheduled_delay.0,
        }
    }

    /// Spawns the export task (once; on the caller's tokio runtime). It sends what remains in the
    /// queue and ends when this tracing is dropped and its last span has ended.
    pub fn start(&self) {
        let Some((rx, exporter)) = self.pending.lock().unwrap().take() else {
            return;
        };
        tokio::spawn(export_loop(rx, exporter, self.batch, self.delay));
    }

    /// Starts the trace of a request whose headers are `headers`: a child of the trace the
    /// client's headers name, if they name a valid one, else a new trace. The sampling is decided
    /// here as the SDK's sampler would (parent-based, then the ratio on the trace id): a request
    /// that is not sampled gets its ids and no span, so nothing is allocated for it.
    pub fn start_request(self: &Arc<Self>, headers: &HeaderMap) -> RequestTrace {
        let parent = self.extract(headers);
        let (trace_id, sampled) = match &parent {
            Some(sc) => (sc.trace_id(), sc.is_sampled()),
            None => {
                let id = RandomIdGenerator::default().new_trace_id();
                (id, self.ratio_samples(id))
            }
        };
        if !sampled {
            let state = parent.map(|p| p.trace_state().clone()).unwrap_or_default();
            let span = RandomIdGenerator::default().new_span_id();
            let ids = SpanContext::new(trace_id, span, TraceFlags::default(), false, state);
            return RequestTrace(Repr::Off {
                tracing: self.clone(),
                ids,
            });
        }
        let parent = match parent {
            Some(sc) => Context::new().with_remote_span_context(sc),
            None => {
                // The new trace gets the id its sampling was decided on (see `Ids`).
                NEXT_TRACE_ID.set(Some(trace_id));
                Context::new()
            }
        };
        let span = self
            .tracer
            .span_builder("request")
            .with_kind(SpanKind::Server)
            .start_with_context(&self.tracer, &parent);
        NEXT_TRACE_ID.set(None);
        let ids = span.span_context().clone();
        if !ids.is_sampled() {
            // The SDK decided otherwise (a provider shut down): the ids alone.
            return RequestTrace(Repr::Off {
                tracing: self.clone(),
                ids,
            });
        }
        RequestTrace(Repr::On(Arc::new(TraceInner {
            tracing: self.clone(),
            ids,
            cx: Context::new().with_span(span),
            stage: Mutex::new(None),
        })))
    }

    /// Whether the ratio samples a new trace `id` (as the SDK's `TraceIdRatioBased` does).
    fn ratio_samples(&self, id: TraceId) -> bool {
        use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};
        let decision = self
            .ratio
            .should_sample(None, id, "request", &SpanKind::Server, &[], &[])
            .decision;
        decision == SamplingDecision::RecordAndSample
    }

    /// The parent span context the client's headers name, in the order of the configured formats.
    fn extract(&self, headers: &HeaderMap) -> Option<SpanContext> {
        self.propagation.iter().find_map(|p| match p {
            Propagation::W3c => extract_w3c(headers),
            Propagation::B3 => extract_b3_single(headers).map(|b| self.decide(b)),
            Propagation::B3Multi => extract_b3_multi(headers).map(|b| self.decide(b)),
        })
    }

    /// A B3 parent whose header left the decision to the gateway ("deferred") is sampled by the
    /// ratio, as a new trace would be; one that says sampled or not keeps its decision.
    fn decide(&self, (sc, deferred): (SpanContext, bool)) -> SpanContext {
        if !deferred {
            return sc;
        }
        let flags = match self.ratio_samples(sc.trace_id()) {
            true => TraceFlags::SAMPLED,
            false => TraceFlags::default(),
        };
        SpanContext::new(
            sc.trace_id(),
            sc.span_id(),
            flags,
            true,
            TraceState::default(),
        )
    }

    /// Replaces the trace headers of every configured format in `headers` with `sc`'s.
    fn inject(&self, sc: &SpanContext, headers: &mut HeaderMap) {
        let trace = sc.trace_id();
        let span = sc.span_id();
        let sampled = sc.is_sampled();
        for p in &self.propagation {
            match p {
                Propagation::W3c => {
                    let flags = if sampled { "01" } else { "00" };
                    let tp = format!("00-{trace}-{span}-{flags}");
                    headers.insert(TRACEPARENT, HeaderValue::from_str(&tp).expect("hex"));
                    let ts = sc.trace_state().header();
                    match HeaderValue::from_str(&ts) {
                        Ok(v) if !ts.is_empty() => {
                            headers.insert(TRACESTATE, v);
                        }
                        _ => {
                            headers.remove(TRACESTATE);
                        }
                    }
                }
                Propagation::B3 => {
                    let v = format!("{trace}-{span}-{}", if sampled { '1' } else { '0' });
                    headers.insert(B3, HeaderValue::from_str(&v).expect("hex"));
                }
                Propagation::B3Multi => {
                    let t = HeaderValue::from_str(&trace.to_string()).expect("hex");
                    headers.insert(B3_TRACE, t);
                    let s = HeaderValue::from_str(&span.to_string()).expect("hex");
                    headers.insert(B3_SPAN, s);
                    headers.remove(B3_PARENT);
                    headers.remove(B3_FLAGS);
                    let v = HeaderValue::from_static(if sampled { "1" } else { "0" });
                    headers.insert(B3_SAMPLED, v);
                }
            }
        }
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        // Ends the processor's side of the queue (spans still open keep it until they end).
        let _ = self.provider.shutdown_with_timeout(Duration::ZERO);
    }
}

/// A request's trace: its ids, and when sampled its server span and the filter stage span in
/// progress. Cloned cheaply (the filters' contexts and the upstream path hold it). The access log
/// reads [`RequestTrace::trace_id`] and [`RequestTrace::span_id`].
#[derive(Clone)]
pub struct RequestTrace(Repr);

#[derive(Clone)]
enum Repr {
    /// Not sampled: the ids alone, for the upstream's and callouts' headers.
    Off {
        tracing: Arc<Tracing>,
        ids: SpanContext,
    },
    /// Sampled: recorded and exported.
    On(Arc<TraceInner>),
}

thread_local! {
    /// The trace id of the new trace whose server span the SDK is building on this thread.
    static NEXT_TRACE_ID: std::cell::Cell<Option<TraceId>> = const { std::cell::Cell::new(None) };
}

/// The SDK's id generator: random ids, but a new trace takes the id `Tracing::start_request`
/// decided its sampling on, so the SDK's own (identical) decision agrees with it.
#[derive(Debug)]
struct Ids;

impl IdGenerator for Ids {
    fn new_trace_id(&self) -> TraceId {
        NEXT_TRACE_ID
            .take()
            .unwrap_or_else(|| RandomIdGenerator::default().new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        RandomIdGenerator::default().new_span_id()
    }
}

impl std::fmt::Debug for RequestTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTrace")
            .field("trace_id", &self.trace_id())
            .field("span_id", &self.span_id())
            .field("sampled", &self.sampled())
            .finish()
    }
}

struct TraceInner {
    tracing: Arc<Tracing>,
    /// The server span's context.
    ids: SpanContext,
    /// Holds the server span.
    cx: Context,
    /// The filter stage call in progress, if it is traced.
    stage: Mutex<Option<opentelemetry_sdk::trace::Span>>,
}

/// What a filter stage call ended in, for its span.
pub enum StageEnd<'a> {
    /// The filter let the request (or response) go on.
    Continue,
    /// The filter answered the request itself.
    Respond(u16),
    /// The filter held the body to see more of it.
    Buffer,
    /// The call failed: trap, limit hit, ABI misuse; `(kind, message)`.
    Failed(&'static str, &'a str),
}

impl RequestTrace {
    /// The request's span context (also when it is not sampled).
    fn ids(&self) -> &SpanContext {
        match &self.0 {
            Repr::Off { ids, .. } => ids,
            Repr::On(t) => &t.ids,
        }
    }

    fn tracing(&self) -> &Tracing {
        match &self.0 {
            Repr::Off { tracing, .. } => tracing,
            Repr::On(t) => &t.tracing,
        }
    }

    /// The recording trace, when sampled.
    fn on(&self) -> Option<&TraceInner> {
        match &self.0 {
            Repr::Off { .. } => None,
            Repr::On(t) => Some(t),
        }
    }

    /// The trace id (32 hex digits when formatted with `{}`).
    pub fn trace_id(&self) -> TraceId {
        self.ids().trace_id()
    }

    /// The request's own (server) span id (16 hex digits with `{}`).
    pub fn span_id(&self) -> SpanId {
        self.ids().span_id()
    }

    /// Whether the request is recorded and exported.
    pub fn sampled(&self) -> bool {
        matches!(self.0, Repr::On(_))
    }

    /// Sets the request facts known when it arrives (a no-op unless sampled).
    pub fn set_request<B>(
        &self,
        parts: &http::Request<B>,
        listener: &str,
        request_id: &str,
        client: std::net::IpAddr,
    ) {
        let Some(t) = self.on() else {
            return;
        };
        let span = t.cx.span();
        span.update_name(parts.method().to_string());
        let mut attrs = vec![
            KeyValue::new("http.request.method", parts.method().to_string()),
            KeyValue::new("url.path", parts.uri().path().to_owned()),
            KeyValue::new("client.address", client.to_string()),
            KeyValue::new("gateway.listener", listener.to_owned()),
            KeyValue::new("gateway.request_id", request_id.to_owned()),
            KeyValue::new("network.protocol.version", version(parts.version())),
        ];
        if let Some(q) = parts.uri().query() {
            attrs.push(KeyValue::new("url.query", redact_query(q)));
        }
        if let Some(s) = parts.uri().scheme_str() {
            attrs.push(KeyValue::new("url.scheme", s.to_owned()));
        }
        let host = parts
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or(parts.uri().host());
        if let Some(h) = host {
            attrs.push(KeyValue::new("server.address", h.to_owned()));
        }
        if let Some(ua) = parts
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|h| h.to_str().ok())
        {
            attrs.push(KeyValue::new("user_agent.original", ua.to_owned()));
        }
        span.set_attributes(attrs);
    }

    /// Ends the server span: its route, status (0: the stream was reset) and consumer. A 5xx, a
    /// reset or an incomplete response body is an error.
    pub fn finish(
        &self,
        method: &http::Method,
        route: Option<&str>,
        status: u16,
        consumer: Option<&str>,
        complete: bool,
    ) {
        let Some(t) = self.on() else {
            return;
        };
        let span = t.cx.span();
        if let Some(r) = route {
            span.update_name(format!("{method} {r}"));
            span.set_attribute(KeyValue::new("http.route", r.to_owned()));
        }
        if status != 0 {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if let Some(c) = consumer {
            span.set_attribute(KeyValue::new("gateway.consumer", c.to_owned()));
        }
        if status == 0 {
            span.set_status(Status::error("the stream was reset"));
        } else if status >= 500 {
            span.set_attribute(KeyValue::new("error.type", status.to_string()));
            span.set_status(Status::error(""));
        } else if !complete {
            span.set_status(Status::error("the response body did not complete"));
        }
        span.end();
    }

    /// Starts the span of one filter stage call (a no-op unless sampled); it is the span that
    /// plugins' `trace` calls and callouts act on until [`RequestTrace::end_stage`].
    pub fn start_stage(&self, plugin: &str, phase: &'static str) {
        let Some(on) = self.on() else {
            return;
        };
        let t = &on.tracing.tracer;
        let span = t
            .span_builder(format!("{plugin} {phase}"))
            .with_kind(SpanKind::Internal)
            .with_attributes([
                KeyValue::new("gateway.plugin.name", plugin.to_owned()),
                KeyValue::new("gateway.plugin.phase", phase),
            ])
            .start_with_context(t, &on.cx);
        *on.stage.lock().unwrap() = Some(span);
    }

    /// Ends the stage span [`RequestTrace::start_stage`] began.
    pub fn end_stage(&self, end: StageEnd<'_>) {
        let Some(on) = self.on() else {
            return;
        };
        let Some(mut span) = on.stage.lock().unwrap().take() else {
            return;
        };
        let verdict = match end {
            StageEnd::Continue => "continue",
            StageEnd::Buffer => "buffer",
            StageEnd::Respond(status) => {
                span.set_attribute(KeyValue::new(
                    "gateway.plugin.response_status",
                    i64::from(status),
                ));
                "respond"
            }
            StageEnd::Failed(kind, message) => {
                span.set_attribute(KeyValue::new("error.type", kind));
                span.set_status(Status::error(message.to_owned()));
                "fail"
            }
        };
        span.set_attribute(KeyValue::new("gateway.plugin.verdict", verdict));
        span.end();
    }

    /// Sets an attribute on the stage span in progress (a plugin's `trace.set-attribute`); a no-op
    /// when there is none.
    pub fn stage_attribute(&self, key: &str, value: &str) {
        let Some(on) = self.on().filter(|_| key.len() <= MAX_PLUGIN_KEY) else {
            return;
        };
        if let Some(span) = on.stage.lock().unwrap().as_mut() {
            span.set_attribute(KeyValue::new(key.to_owned(), cut(value).to_owned()));
        }
    }

    /// Adds an event to the stage span in progress (a plugin's `trace.add-event`); a no-op when
    /// there is none.
    pub fn stage_event(&self, name: &str, attrs: &[(String, String)]) {
        let Some(on) = self.on() else {
            return;
        };
        if let Some(span) = on.stage.lock().unwrap().as_mut() {
            let attrs = attrs
                .iter()
                .filter(|(k, _)| k.len() <= MAX_PLUGIN_KEY)
                .map(|(k, v)| KeyValue::new(k.clone(), cut(v).to_owned()))
                .collect();
            span.add_event(cut(name).to_owned(), attrs);
        }
    }

    /// Writes the trace headers of a plugin's callout: the stage span in progress is its parent
    /// (the request's span outside one, or when not sampled).
    pub fn inject_callout(&self, headers: &mut HeaderMap) {
        let stage = self.on().and_then(|on| {
            let stage = on.stage.lock().unwrap();
            stage.as_ref().map(|s| s.span_context().clone())
        });
        let sc = stage.as_ref().unwrap_or(self.ids());
        self.tracing().inject(sc, headers);
    }

    /// Starts the client span of one upstream try (retry 0 is the first try) and writes its trace
    /// headers into `headers`. Not sampled: no span, and the headers carry the request's ids with
    /// the sampled flag off.
    pub fn start_try(
        &self,
        req: &http::Request<crate::body::Body>,
        upstream: &str,
        endpoint: &str,
        retry: u32,
    ) -> TrySpan {
        let Some(on) = self.on() else {
            return TrySpan(None);
        };
        let t = &on.tracing.tracer;
        let mut attrs = vec![
            KeyValue::new("http.request.method", req.method().to_string()),
            KeyValue::new("server.address", endpoint.to_owned()),
            KeyValue::new("url.full", redact_uri(req.uri())),
            KeyValue::new("gateway.upstream", upstream.to_owned()),
        ];
        if let Some(port) = req.uri().port_u16() {
            attrs.push(KeyValue::new("server.port", i64::from(port)));
        }
        if retry > 0 {
            attrs.push(KeyValue::new("http.request.resend_count", i64::from(retry)));
        }
        let span = t
            .span_builder(req.method().to_string())
            .with_kind(SpanKind::Client)
            .with_attributes(attrs)
            .start_with_context(t, &on.cx);
        TrySpan(Some(span))
    }

    /// Writes the trace headers of an upstream request: `span`'s ids when the try is traced, else
    /// the request's.
    pub fn inject_try(&self, span: &TrySpan, headers: &mut HeaderMap) {
        let sc = span.0.as_ref().map(|s| s.span_context());
        self.tracing().inject(sc.unwrap_or(self.ids()), headers);
    }
}

/// The query with every value replaced by `REDACTED` and the names kept (`a=1&b` is recorded as
/// `a=REDACTED&b`): OpenTelemetry's semantic conventions ask for sensitive query values to be
/// redacted, and the gateway cannot tell which are (key-auth reads `apikey`, a signed URL has its
/// signature there, ...). Names are written form-encoded again, so `a%20b` comes out as `a+b`.
fn redact_query(q: &str) -> String {
    let mut out = form_urlencoded::Serializer::new(String::with_capacity(q.len()));
    for (name, value) in form_urlencoded::parse(q.as_bytes()) {
        if value.is_empty() {
            out.append_key_only(&name);
        } else {
            out.append_pair(&name, REDACTED);
        }
    }
    out.finish()
}

/// `uri` as `url.full` records it: its query's values redacted ([`redact_query`]).
fn redact_uri(uri: &http::Uri) -> String {
    let full = uri.to_string();
    match uri.query() {
        // The query is the end of the URI as written (an `http::Uri` has no fragment).
        Some(q) if full.ends_with(q) => {
            format!("{}{}", &full[..full.len() - q.len()], redact_query(q))
        }
        _ => full,
    }
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// The span of one upstream try; ended by [`TrySpan::end`] or when dropped.
pub struct TrySpan(Option<opentelemetry_sdk::trace::Span>);

impl TrySpan {
    /// Records the gRPC status of a gRPC call's answer (`rpc.grpc.status_code`): one that is not
    /// OK makes the try an error (`error.type` its name), whatever its HTTP status.
    pub fn grpc_status(&mut self, code: crate::proxy::grpc::Code) {
        let Some(span) = self.0.as_mut() else {
            return;
        };
        span.set_attribute(KeyValue::new("rpc.grpc.status_code", code as i64));
        if code != crate::proxy::grpc::Code::Ok {
            let name = code.name().to_ascii_uppercase().replace('-', "_");
            span.set_attribute(KeyValue::new("error.type", name));
            span.set_status(Status::error(""));
        }
    }

    /// Ends the try with the upstream's status, or the error that ended it (`kind`, message).
    pub fn end(mut self, status: Result<u16, (&'static str, String)>) {
        let Some(span) = self.0.as_mut() else {
            return;
        };
        match status {
            Ok(s) => {
                span.set_attribute(KeyValue::new("http.response.status_code", i64::from(s)));
                if s >= 400 {
                    span.set_attribute(KeyValue::new("error.type", s.to_string()));
                    span.set_status(Status::error(""));
                }
            }
            Err((kind, message)) => {
                span.set_attribute(KeyValue::new("error.type", kind));
                span.set_status(Status::error(message));
            }
        }
        span.end();
    }
}

fn hex_id<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// A W3C `traceparent` (version 00, or a later version read as 00 says), with its `tracestate`.
fn extract_w3c(headers: &HeaderMap) -> Option<SpanContext> {
    let tp = headers.get(TRACEPARENT)?.to_str().ok()?.trim();
    let mut parts = tp.splitn(5, '-');
    let (ver, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let [v] = hex_id::<1>(ver)?;
    // Version ff is invalid; 00 has exactly four fields; a later version may have more after a '-'.
    if v == 0xff || (v == 0 && (parts.next().is_some() || tp.len() != 55)) {
        return None;
    }
    // The fields are lowercase hex: an uppercase digit makes the header invalid.
    if [ver, trace, span, flags]
        .iter()
        .any(|f| f.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return None;
    }
    let trace = TraceId::from_bytes(hex_id::<16>(trace)?);
    let span = SpanId::from_bytes(hex_id::<8>(span)?);
    let [flags] = hex_id::<1>(flags)?;
    if trace == TraceId::INVALID || span == SpanId::INVALID {
        return None;
    }
    let flags = TraceFlags::new(flags & 1);
    Some(SpanContext::new(
        trace,
        span,
        flags,
        true,
        tracestate(headers),
    ))
}

/// The client's `tracestate` within the W3C bounds (see [`TRACESTATE_MAX_MEMBERS`]); an invalid
/// list is dropped (the `traceparent` is kept). Several `tracestate` header lines are one list.
fn tracestate(headers: &HeaderMap) -> TraceState {
    let lines = headers.get_all(TRACESTATE);
    let mut members: Vec<&str> = Vec::new();
    for line in &lines {
        let Ok(line) = line.to_str() else {
            return TraceState::default();
        };
        let each = line.split(',').map(|m| m.trim_matches([' ', '\t']));
        members.extend(each.filter(|m| !m.is_empty()));
    }
    if members.is_empty() || members.len() > TRACESTATE_MAX_MEMBERS {
        return TraceState::default();
    }
    let len = |m: &[&str]| {
        m.iter()
            .map(|s| s.len() + 1)
            .sum::<usize>()
            .saturating_sub(1)
    };
    while len(&members) > TRACESTATE_MAX_LEN {
        match members
            .iter()
            .rposition(|m| m.len() > TRACESTATE_LONG_MEMBER)
        {
            Some(i) => members.remove(i),
            None => members.pop().expect("not empty while over the bound"),
        };
    }
    TraceState::from_str(&members.join(",")).unwrap_or_default()
}

/// A B3 trace id: 32 or 16 hex digits (a 64-bit id is the low half).
fn b3_trace(s: &str) -> Option<TraceId> {
    let id = match s.len() {
        16 => {
            let low = hex_id::<8>(s)?;
            let mut b = [0u8; 16];
            b[8..].copy_from_slice(&low);
            b
        }
        _ => hex_id::<16>(s)?,
    };
    Some(TraceId::from_bytes(id)).filter(|t| *t != TraceId::INVALID)
}

fn b3_sampled(s: &str) -> Option<bool> {
    match s {
        "1" | "d" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

fn b3_context(trace: TraceId, span: &str, sampled: Option<bool>) -> Option<(SpanContext, bool)> {
    let span = SpanId::from_bytes(hex_id::<8>(&span.to_ascii_lowercase())?);
    if span == SpanId::INVALID {
        return None;
    }
    // No decision in the header (`true` in the result): the gateway's ratio decides, see
    // `Tracing::decide`.
    let flags = match sampled {
        Some(true) => TraceFlags::SAMPLED,
        _ => TraceFlags::default(),
    };
    let sc = SpanContext::new(trace, span, flags, true, TraceState::default());
    Some((sc, sampled.is_none()))
}

/// `b3: {trace}-{span}[-{sampled}[-{parent}]]`. A header that only carries a decision (`0`, `1`,
/// `d`) names no parent.
fn extract_b3_single(headers: &HeaderMap) -> Option<(SpanContext, bool)> {
    let v = headers.get(B3)?.to_str().ok()?.trim().to_ascii_lowercase();
    let mut parts = v.split('-');
    let trace = b3_trace(parts.next()?)?;
    let span = parts.next()?;
    let sampled = match parts.next() {
        Some(s) => Some(b3_sampled(s)?),
        None => None,
    };
    b3_context(trace, span, sampled)
}

/// `x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled` (`x-b3-flags: 1` is a debug: sampled).
fn extract_b3_multi(headers: &HeaderMap) -> Option<(SpanContext, bool)> {
    let get = |h: &HeaderName| headers.get(h).and_then(|v| v.to_str().ok()).map(str::trim);
    let trace = b3_trace(&get(&B3_TRACE)?.to_ascii_lowercase())?;
    let sampled = match (get(&B3_FLAGS), get(&B3_SAMPLED)) {
        (Some("1"), _) => Some(true),
        (_, Some(s)) => Some(b3_sampled(&s.to_ascii_lowercase())?),
        _ => None,
    };
    b3_context(trace, get(&B3_SPAN)?, sampled)
}

/// Hands ended spans to the export task through a bounded queue; a span that finds it full is
/// dropped and counted, so neither a slow collector nor a burst makes the queue grow.
#[derive(Debug)]
struct QueueProcessor {
    tx: mpsc::Sender<SpanData>,
    stats: Arc<TraceStats>,
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.tx.try_send(span).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Collects spans into batches of at most `batch`, each sent when full or `delay` after its first
/// span; one export at a time (spans ended meanwhile wait in the queue, or are dropped when it is
/// full). Ends when the queue's senders are gone, after sending what it holds.
async fn export_loop(
    mut rx: mpsc::Receiver<SpanData>,
    exporter: Exporter,
    batch: usize,
    delay: Duration,
) {
    let mut spans = Vec::with_capacity(batch.min(64));
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        spans.push(first);
        let timer = tokio::time::sleep(delay);
        tokio::pin!(timer);
        let mut closed = false;
        while spans.len() < batch {
            tokio::select! {
                s = rx.recv() => match s {
                    Some(s) => spans.push(s),
                    None => { closed = true; break; }
                },
                _ = &mut timer => break,
            }
        }
        exporter.export(std::mem::take(&mut spans)).await;
        if closed {
            return;
        }
    }
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<Bytes>,
>;

/// Sends batches to the collector over OTLP/HTTP (protobuf) or OTLP/gRPC.
struct Exporter {
    client: Client,
    uri: http::Uri,
    protocol: OtlpProtocol,
    headers: HeaderMap,
    resource: ResourceAttributesWithSchema,
    timeout: Duration,
    stats: Arc<TraceStats>,
}

impl Exporter {
    fn new(
        cfg: &crate::config::tracing::Tracing,
        resource: ResourceAttributesWithSchema,
        stats: Arc<TraceStats>,
    ) -> Exporter {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.export_timeout.0));
        connector.set_nodelay(true);
        let mut builder =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
        builder.pool_idle_timeout(Duration::from_secs(30));
        if cfg.protocol == OtlpProtocol::Grpc {
            builder.http2_only(true);
        }
        let endpoint = cfg.endpoint().trim_end_matches('/');
        let uri = match cfg.protocol {
            OtlpProtocol::HttpProtobuf => endpoint.to_owned(),
            OtlpProtocol::Grpc => {
                format!("{endpoint}/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            }
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                headers.append(k, v);
            }
        }
        Exporter {
            client: builder.build(connector),
            uri: uri.parse().expect("checked with the config"),
            protocol: cfg.protocol,
            headers,
            resource,
            timeout: cfg.export_timeout.0,
            stats,
        }
    }

    async fn export(&self, spans: Vec<SpanData>) {
        let n = spans.len() as u64;
        let msg = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(spans, &self.resource),
        };
        let body = prost::Message::encode_to_vec(&msg);
        let sent = tokio::time::timeout(self.timeout, self.send(body)).await;
        let failure = match sent {
            Ok(Ok(())) => {
                self.stats.exported.fetch_add(n, Ordering::Relaxed);
                return;
            }
            Ok(Err(e)) => e,
            Err(_) => format!("no answer in {:?}", self.timeout),
        };
        self.stats.failed.fetch_add(n, Ordering::Relaxed);
        tracing::warn!(spans = n, endpoint = %self.uri, error = %failure, "trace export failed");
    }

    async fn send(&self, msg: Vec<u8>) -> Result<(), String> {
        let (ctype, body) = match self.protocol {
            OtlpProtocol::HttpProtobuf => ("application/x-protobuf", Bytes::from(msg)),
            OtlpProtocol::Grpc => {
                // One uncompressed gRPC message: flag, big-endian length, bytes.
                let mut b = Vec::with_capacity(msg.len() + 5);
                b.push(0);
                b.extend_from_slice(&(msg.len() as u32).to_be_bytes());
                b.extend_from_slice(&msg);
                ("application/grpc", Bytes::from(b))
            }
        };
        let mut req = http::Request::post(self.uri.clone())
            .body(http_body_util::Full::new(body))
            .map_err(|e| e.to_string())?;
        *req.headers_mut() = self.headers.clone();
        req.headers_mut()
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        if self.protocol == OtlpProtocol::Grpc {
            req.headers_mut()
                .insert(http::header::TE, HeaderValue::from_static("trailers"));
        }
        let resp = self.client.request(req).await.map_err(|e| {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                s.push_str(": ");
                s.push_str(&c.to_string());
                src = c.source();
            }
            s
        })?;
        let status = resp.status();
        let head_grpc = resp.headers().get("grpc-status").cloned();
        let collected = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("the collector answered {status}"));
        }
        if self.protocol == OtlpProtocol::Grpc {
            let grpc = head_grpc.or_else(|| {
                collected
                    .trailers()
                    .and_then(|t| t.get("grpc-status").cloned())
            });
            match grpc.as_ref().map(|v| v.as_bytes()) {
                Some(b"0") => {}
                Some(s) => {
                    return Err(format!(
                        "the collector answered grpc-status {}",
                        String::from_utf8_lossy(s)
                    ))
                }
                None => return Err("the collector's answer has no grpc-status".into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn w3c_traceparent_is_read_strictly() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = extract_w3c(&h(&[("traceparent", ok), ("tracestate", "a=1,b=2")])).unwrap();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(sc.trace_state().header(), "a=1,b=2");
        let unsampled = ok.replace("-01", "-00");
        assert!(!extract_w3c(&h(&[("traceparent", &unsampled)]))
            .unwrap()
            .is_sampled());
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert!(extract_w3c(&h(&[("traceparent", bad)])).is_none(), "{bad}");
        }
        // A later version may carry more fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert!(extract_w3c(&h(&[("traceparent", later)])).is_some());
        // An invalid tracestate is dropped, the traceparent kept.
        let sc = extract_w3c(&h(&[("traceparent", ok), ("tracestate", "=bad=")])).unwrap();
        assert_eq!(sc.trace_state().header(), "");
    }

    #[test]
    fn b3_single_and_multi_are_read() {
        let (sc, deferred) = extract_b3_single(&h(&[(
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
        )]))
        .unwrap();
        assert!(!deferred);
        assert_eq!(
            sc.trace_id().to_string(),
            "80f198ee56343ba864fe8b2a57d3eff7"
        );
        assert_eq!(sc.span_id().to_string(), "e457b5a2e4d86bd1");
        assert!(sc.is_sampled());
        let (sc, _) =
            extract_b3_single(&h(&[("b3", "64fe8b2a57d3eff7-e457b5a2e4d86bd1-0")])).unwrap();
        assert_eq!(
            sc.trace_id().to_string(),
            "000000000000000064fe8b2a57d3eff7"
        );
        assert!(!sc.is_sampled());
        assert!(extract_b3_single(&h(&[("b3", "1")])).is_none());
        let (sc, _) = extract_b3_multi(&h(&[
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-flags", "1"),
        ]))
        .unwrap();
        assert!(sc.is_sampled());
        let (_, deferred) = extract_b3_multi(&h(&[
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ]))
        .unwrap();
        assert!(deferred, "no decision: the gateway's ratio decides");
    }

    #[test]
    fn w3c_uppercase_hex_anywhere_makes_the_traceparent_invalid() {
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0E4736-00f067aa0ba902b7-01",
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(extract_w3c(&h(&[("traceparent", bad)])).is_none(), "{bad}");
        }
        let lower = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0a";
        assert!(!extract_w3c(&h(&[("traceparent", lower)]))
            .unwrap()
            .is_sampled());
    }

    fn state(ts: &str) -> String {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = extract_w3c(&h(&[("traceparent", tp), ("tracestate", ts)])).unwrap();
        sc.trace_state().header()
    }

    #[test]
    fn tracestate_over_32_members_is_dropped() {
        let members = |n: usize| (0..n).map(|i| format!("k{i}=v{i}")).collect::<Vec<_>>();
        let ok = members(32).join(",");
        assert_eq!(state(&ok), ok, "32 members pass on");
        // Also when split over two header lines.
        let m = members(32);
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let two = h(&[
            ("traceparent", tp),
            ("tracestate", &m[..16].join(",")),
            ("tracestate", &m[16..].join(",")),
        ]);
        assert_eq!(extract_w3c(&two).unwrap().trace_state().header(), ok);
        assert_eq!(
            state(&members(33).join(",")),
            "",
            "33 members: not a valid list"
        );
        let mut split = two.clone();
        split.append(TRACESTATE, HeaderValue::from_static("k32=v32"));
        assert_eq!(extract_w3c(&split).unwrap().trace_state().header(), "");
    }

    #[test]
    fn tracestate_over_512_characters_loses_whole_members() {
        // 39 characters a member.
        let member = |i: usize| format!("k{i:02}={}", "x".repeat(35));
        let twelve: Vec<String> = (0..12).map(member).collect();
        assert_eq!(twelve.join(",").len(), 479);
        // A member over 128 characters goes first...
        let long = format!("long={}", "y".repeat(200));
        let mut with_long = twelve.clone();
        with_long.insert(3, long.clone());
        assert!(with_long.join(",").len() > 512);
        assert_eq!(state(&with_long.join(",")), twelve.join(","));
        // ...then members from the end until it fits.
        let fourteen: Vec<String> = (0..14).map(member).collect();
        assert_eq!(state(&fourteen.join(", ")), twelve.join(","));
        // Within the bound a long member stays; optional white space does not count.
        let fits = format!("{long},{}", twelve[..7].join(" , "));
        let kept = state(&fits);
        assert_eq!(kept, format!("{long},{}", twelve[..7].join(",")));
        assert!(kept.len() <= 512);
    }

    #[test]
    fn query_values_are_redacted_and_names_kept() {
        assert_eq!(
            redact_query("apikey=SECRET&b=2&flag&c=a%20b&d=x=y"),
            "apikey=REDACTED&b=REDACTED&flag&c=REDACTED&d=REDACTED"
        );
        assert_eq!(
            redact_query("a+b=1&%C3%A9t%C3%A9=2"),
            "a+b=REDACTED&%C3%A9t%C3%A9=REDACTED"
        );
        assert_eq!(redact_query(""), "");
        let uri: http::Uri = "http://10.0.0.1:8080/x/y?apikey=SECRET&b=2"
            .parse()
            .unwrap();
        assert_eq!(
            redact_uri(&uri),
            "http://10.0.0.1:8080/x/y?apikey=REDACTED&b=REDACTED"
        );
        let uri: http::Uri = "http://10.0.0.1:8080/x/y".parse().unwrap();
        assert_eq!(redact_uri(&uri), "http://10.0.0.1:8080/x/y");
    }

    /// Counts the allocations of the test's own thread.
    struct Counting;
    thread_local! {
        static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    fn allocations() -> u64 {
        ALLOCATIONS.with(|c| c.get())
    }
    // SAFETY: forwards to the system allocator; the counter is a const thread-local without drop.
    // Test builds only: the lib's test binary counts its allocations per thread.
    #[allow(unsafe_code)]
    unsafe impl std::alloc::GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
            unsafe { std::alloc::System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
            unsafe { std::alloc::System.realloc(ptr, layout, new) }
        }
    }
    #[global_allocator]
    static COUNTING: Counting = Counting;

    fn tracing(ratio: &str) -> Arc<Tracing> {
        let cfg: crate::config::tracing::Tracing =
            serde_yaml_ng::from_str(&format!("sampling_ratio: {ratio}")).unwrap();
        Arc::new(Tracing::new(&cfg, Arc::default()))
    }

    #[test]
    fn an_unsampled_request_allocates_nothing_for_its_trace() {
        let t = tracing("0");
        let not_sampled = h(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )]);
        let none = HeaderMap::new();
        let req = http::Request::get("/x?a=1").body(()).unwrap();
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        // Thread-locals (the id generator's random source) start on first use.
        drop(t.start_request(&none));
        for headers in [&none, &not_sampled] {
            let before = allocations();
            let trace = t.start_request(headers);
            trace.set_request(&req, "main", "id", ip);
            let other = trace.clone();
            assert!(!other.sampled());
            assert_ne!(other.trace_id(), TraceId::INVALID);
            assert_ne!(other.span_id(), SpanId::INVALID);
            trace.start_stage("p", "request_headers");
            trace.stage_attribute("k", "v");
            trace.end_stage(StageEnd::Continue);
            trace.finish(&http::Method::GET, Some("r"), 200, None, true);
            drop(other);
            drop(trace);
            assert_eq!(allocations() - before, 0, "{headers:?}");
        }
        // The parent's trace continues, not sampled.
        let trace = t.start_request(&not_sampled);
        assert_eq!(
            trace.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_ne!(trace.span_id().to_string(), "00f067aa0ba902b7");
        let mut out = HeaderMap::new();
        trace.inject_callout(&mut out);
        let (_, rest) = out["traceparent"].to_str().unwrap().split_at(3);
        assert!(
            rest.starts_with("4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{rest}"
        );
        assert!(rest.ends_with("-00"), "{rest}");
    }

    #[test]
    fn the_ratio_decides_new_traces_and_a_sampled_one_records_under_its_id() {
        let t = tracing("0.5");
        let (mut on, mut off) = (0, 0);
        for _ in 0..400 {
            let trace = t.start_request(&HeaderMap::new());
            let mut out = HeaderMap::new();
            trace.inject_callout(&mut out);
            let tp = out["traceparent"].to_str().unwrap().to_owned();
            let want = format!(
                "00-{}-{}-{}",
                trace.trace_id(),
                trace.span_id(),
                if trace.sampled() { "01" } else { "00" }
            );
            assert_eq!(tp, want);
            if trace.sampled() {
                on += 1;
            } else {
                off += 1;
            }
        }
        // A fair coin 400 times lands outside 140..260 (6 standard deviations) with a probability
        // below 1e-8; a second decision by the SDK on another id would sample a quarter.
        assert!((140..260).contains(&on), "{on} sampled, {off} not");
        let sampled = h(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )]);
        assert!(tracing("0").start_request(&sampled).sampled());
    }
}
