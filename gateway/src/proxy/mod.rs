//! The request path: route, act (forward, redirect, answer), finish (headers, metrics, access log).

mod client;
mod forward;
pub mod grpc;
mod grpc_web;
mod headers;
pub mod mirror;
mod target;
mod transcode;
mod tunnel;
pub mod upgrade;

pub use client::client_of;
pub use headers::forwarded_for;

use crate::body::{self, Body, BodyWatch, Tracked};
use crate::canonical;
use crate::conn::ConnShared;
use crate::errors::{self, ProxyError, RequestId, REQUEST_ID};
use crate::exchange::{Backend, Exchange};
use crate::filter::chain::ChainRun;
use crate::filter::RequestInfo;
use crate::metrics::Metrics;
use crate::router::RouteRequest;
use crate::runtime::{Action, ListenerRoutes, Route, Runtime};
use arc_swap::ArcSwap;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::Body as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// State shared by every connection of the process.
pub struct Shared {
    /// The serving snapshot; swapped whole on reload (plugin callouts reach its upstreams too).
    pub runtime: Arc<ArcSwap<Runtime>>,
    /// Metrics registry (kept across reloads).
    pub metrics: Arc<Metrics>,
    /// The Wasm plugin host (kept across reloads).
    pub plugins: Arc<crate::plugins::PluginHost>,
    /// Open tunnels' drain signal (kept across reloads).
    pub tunnels: tunnel::Tunnels,
}

/// Facts about the connection a request came on.
#[derive(Clone)]
pub struct ConnInfo {
    /// Listener name.
    pub listener: Arc<str>,
    /// Client address.
    pub peer: SocketAddr,
    /// The client's address as an `X-Forwarded-For` entry ([`forwarded_for`]).
    pub forwarded_for: HeaderValue,
    /// The local address the connection came in on.
    pub local: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// What the TLS handshake established, on TLS listeners.
    pub tls: Option<Arc<crate::tls::TlsInfo>>,
    /// The connection's guard state.
    pub conn: Arc<ConnShared>,
    /// Listener body limit (used when a route sets none).
    pub max_body_size: u64,
    /// Listener limits for HTTP/2 requests, which the HTTP/1 guard does not see.
    pub max_uri_bytes: usize,
    /// Header count limit, likewise.
    pub max_headers: usize,
    /// HTTP/2 streams the client may cancel per connection in [`crate::conn::RESET_WINDOW`] (see
    /// [`crate::conn::ConnShared::note_reset`]).
    pub h2_max_resets: u64,
}

/// Counts an HTTP/2 request as cancelled by the client if it is dropped before its response head
/// was made (hyper drops the request's future when the client resets the stream); a cancel after
/// the head is seen when the response body is dropped before its end.
struct ResetWatch<'a> {
    info: &'a ConnInfo,
    done: bool,
}

impl Drop for ResetWatch<'_> {
    fn drop(&mut self) {
        if !self.done {
            cancelled(&self.info.conn, self.info.h2_max_resets, self.info.peer);
        }
    }
}

/// Counts an HTTP/2 stream its client cancelled, and says so when that made the client abusive.
fn cancelled(conn: &ConnShared, limit: u64, peer: SocketAddr) {
    if conn.note_reset(limit) {
        tracing::warn!(%peer, limit, "HTTP/2 client cancelled too many streams; sending GOAWAY");
    }
}

/// The endpoint that answered (or failed), for the access log; named without copying when known.
enum EndpointName {
    State(Arc<crate::upstream::EndpointState>),
    Text(String),
}

impl EndpointName {
    fn as_str(&self) -> &str {
        match self {
            EndpointName::State(ep) => &ep.address,
            EndpointName::Text(s) => s,
        }
    }
}

/// What the access log and metrics need after the response is done.
struct Done {
    route: Option<Arc<Route>>,
    /// The request went to this cluster of the route (see [`Route::pick`]).
    forwarded: Option<u16>,
    endpoint: Option<EndpointName>,
    method: http::Method,
    peer: SocketAddr,
    /// The client as the access log names it: the peer, or who trusted proxies say it is.
    client: SocketAddr,
    status: u16,
    start: Instant,
    id: RequestId,
    /// The request's trace when `server.tracing` is on (sampled or not): its ids for the access log
    /// are `trace.trace_id()` and `trace.span_id()` (hex with `{}`); its server span ends in
    /// [`finish`].
    trace: Option<crate::telemetry::RequestTrace>,
    /// What the access log needs beyond the above, when it is on.
    access: Option<Box<Access>>,
}

/// A request's facts for its access line, taken while they are at hand.
struct Access {
    fields: Arc<[crate::access_log::Field]>,
    format: crate::config::LogFormat,
    marks: Arc<crate::access_log::Marks>,
    listener: Arc<str>,
    path: Option<String>,
    host: Option<String>,
    query: Option<String>,
    protocol: &'static str,
    /// The values of the `request_header.*` and `response_header.*` fields.
    headers: Vec<(std::borrow::Cow<'static, str>, String)>,
}

/// The values of the header fields of `fields` (`request: true` for the request's), by key.
fn logged_headers(
    fields: &[crate::access_log::Field],
    headers: &http::HeaderMap,
    request: bool,
    out: &mut Vec<(std::borrow::Cow<'static, str>, String)>,
) {
    use crate::access_log::Field;
    for f in fields {
        let name = match (f, request) {
            (Field::RequestHeader(h), true) | (Field::ResponseHeader(h), false) => h,
            _ => continue,
        };
        let mut values = headers.get_all(name).iter().peekable();
        if values.peek().is_none() {
            continue;
        }
        let joined: Vec<String> = values
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        out.push((f.key(), joined.join(", ")));
    }
}

/// A filter closed the stream: the request ends without a response. hyper resets the HTTP/2 stream
/// (`RST_STREAM`) or closes the HTTP/1 connection.
#[derive(Debug)]
pub struct StreamReset;

impl std::fmt::Display for StreamReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a filter closed the stream")
    }
}

impl std::error::Error for StreamReset {}

/// Serves one request.
pub async fn handle(
    shared: Arc<Shared>,
    info: Arc<ConnInfo>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, StreamReset> {
    let in_flight = info.conn.start_request();
    let version = req.version();
    if version == http::Version::HTTP_2 {
        info.conn.note_stream();
    }
    let mut reset_watch = ResetWatch {
        info: &info,
        done: version != http::Version::HTTP_2,
    };
    let start = Instant::now();
    let snapshot = shared.runtime.load_full();
    let method = req.method().clone();
    // Nothing is gathered for a line `GATEWAY_LOG` filters out (`access=off`).
    let log = crate::access_log::gathers(&snapshot.config.server.access_log);
    let listener = snapshot.listeners.get(&*info.listener);
    // A gRPC client gets the gateway's own errors in gRPC form (`errors::grpc_form`).
    let grpc = grpc::protocol(req.headers());
    let id = match listener {
        Some(l) if l.trust_request_id => RequestId::from_client(req.headers().get(REQUEST_ID)),
        _ => RequestId::new(),
    }
    .with_grpc(grpc);
    // The request's trace rides in its extensions, for the filters and the upstream tries.
    let mut req = req;
    // A gRPC call's deadline counts from here (`proxy::forward`).
    if grpc.is_some() {
        req.extensions_mut().insert(grpc::Arrival(start));
    }
    let mut access = log.then(|| {
        let fields = snapshot.access_log_fields.clone();
        let marks = Arc::new(crate::access_log::Marks::new(start));
        // The backend marks its start and end (see `RouteBackend::serve`).
        req.extensions_mut().insert(marks.clone());
        let logs = |name: &str| {
            fields
                .iter()
                .any(|f| matches!(f, crate::access_log::Field::Named(n) if *n == name))
        };
        let (logs_path, logs_host, logs_query) = (logs("path"), logs("host"), logs("query"));
        let mut headers = Vec::new();
        logged_headers(&fields, req.headers(), true, &mut headers);
        Box::new(Access {
            fields,
            format: snapshot.config.server.log_format,
            marks,
            listener: info.listener.clone(),
            // Copied only when the line has the field: only the access log needs them after the
            // request is gone.
            path: logs_path.then(|| req.uri().path().to_owned()),
            host: logs_host
                .then(|| {
                    req.uri()
                        .authority()
                        .map(|a| a.as_str())
                        .or_else(|| req.headers().get(http::header::HOST)?.to_str().ok())
                        .map(str::to_owned)
                })
                .flatten(),
            query: logs_query
                .then(|| req.uri().query().map(str::to_owned))
                .flatten(),
            protocol: match version {
                http::Version::HTTP_10 => "HTTP/1.0",
                http::Version::HTTP_2 => "HTTP/2",
                _ => "HTTP/1.1",
            },
            headers,
        })
    });
    let trace = snapshot.tracing.as_ref().map(|t| {
        let trace = t.start_request(req.headers());
        trace.set_request(&req, &info.listener, id.as_str(), info.peer.ip());
        req.extensions_mut().insert(trace.clone());
        trace
    });
    let Served {
        mut resp,
        route,
        forwarded,
        endpoint,
        chain,
        reset,
        client,
        tunnel,
    } = route_and_serve(listener, &snapshot.consumers, &info, &id, req).await;
    reset_watch.done = true;
    drop(reset_watch);
    if let Some(a) = &access {
        a.marks.mark(crate::access_log::Mark::Responded);
    }
    // An upgrade asked for is decided now: the HTTP/1 guard tunnels the bytes after the head, or
    // parses them as the next request.
    match tunnel {
        Some(t) => {
            info.conn.decide_upgrade(true);
            t.spawn(
                &shared.tunnels,
                snapshot.generation,
                info.conn.open_tunnel(),
                info.conn.start_request(),
            );
        }
        None if version != http::Version::HTTP_2 => info.conn.decide_upgrade(false),
        None => {}
    }
    if let (false, Some(r)) = (reset, &route) {
        r.response_headers.apply(resp.headers_mut());
        r.stats.latency.observe(start.elapsed());
    }
    if let Some(a) = &mut access {
        logged_headers(&a.fields, resp.headers(), false, &mut a.headers);
    }
    let done = Done {
        route,
        forwarded,
        endpoint,
        method,
        peer: info.peer,
        client: client.unwrap_or(info.peer),
        // A reset has no response: logged with status 0, counted in no status.
        status: if reset { 0 } else { resp.status().as_u16() },
        start,
        id,
        trace,
        access,
    };
    // After `done`: the access log and the status metrics keep the HTTP status of the error.
    if let Some(p) = grpc {
        errors::grpc_form(&mut resp, p);
    }
    if reset {
        let consumer = chain.as_ref().and_then(ChainRun::consumer);
        drop(chain);
        drop(in_flight);
        finish(&shared.metrics, done, 0, false, consumer);
        return Err(StreamReset);
    }
    let metrics = shared.metrics.clone();
    // On HTTP/2 the response's clock lets the connection find a stream the client stopped reading,
    // and a stream dropped before its end (not broken by the backend) was cancelled by the client.
    let h2 = (version == http::Version::HTTP_2).then(|| (info.conn.clone(), info.h2_max_resets));
    let clock = h2.as_ref().map(|(conn, _)| conn.stream_clock());
    Ok(resp.map(move |b| {
        body::boxed(Tracked::new(b, clock, move |end: body::BodyEnd| {
            let consumer = chain.as_ref().and_then(ChainRun::consumer);
            drop(chain);
            drop(in_flight);
            if let Some((conn, limit)) = h2 {
                if !end.complete && !end.failed {
                    cancelled(&conn, limit, done.peer);
                }
            }
            finish(&metrics, done, end.bytes, end.complete, consumer);
        }))
    }))
}

fn finish(
    metrics: &Metrics,
    d: Done,
    bytes: u64,
    complete: bool,
    consumer: Option<Arc<crate::consumers::Consumer>>,
) {
    match &d.route {
        Some(_) if d.status == 0 => {}
        Some(r) => {
            r.stats.responses.inc(d.status);
            if let (true, Some(c)) = (r.consumer_metrics, &consumer) {
                r.stats.consumer_response(&c.name, d.status);
            }
        }
        None if d.status == 404 => {
            metrics
                .no_route
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        None => metrics.refused.inc(d.status),
    }
    if let Some(t) = &d.trace {
        let route = d.route.as_ref().map(|r| &*r.name);
        let consumer = consumer.as_ref().map(|c| &*c.name);
        t.finish(&d.method, route, d.status, consumer, complete);
    }
    if let Some(a) = &d.access {
        access_line(&d, a, bytes, complete, consumer.as_deref());
    }
}

/// Writes the access line of a finished request.
fn access_line(
    d: &Done,
    a: &Access,
    bytes: u64,
    complete: bool,
    consumer: Option<&crate::consumers::Consumer>,
) {
    use crate::access_log::{ms, Field, Value};
    let text = |s: &str| Some(Value::Text(s.to_owned()));
    let mut pairs = Vec::with_capacity(a.fields.len());
    for f in a.fields.iter() {
        let value = match f {
            Field::Named(name) => match *name {
                "route" => text(d.route.as_ref().map_or("-", |r| &*r.name)),
                "upstream" => text(
                    d.route
                        .as_ref()
                        .zip(d.forwarded)
                        .and_then(|(r, pick)| r.upstream_name(pick))
                        .map_or("-", |n| &**n),
                ),
                "endpoint" => text(d.endpoint.as_ref().map_or("-", EndpointName::as_str)),
                "client" => text(&d.client.ip().to_string()),
                "peer" => text(&d.peer.to_string()),
                "consumer" => text(consumer.map_or("-", |c| &*c.name)),
                "request_id" => text(d.id.as_str()),
                "trace_id" => d
                    .trace
                    .as_ref()
                    .and_then(|t| text(&t.trace_id().to_string())),
                "span_id" => d
                    .trace
                    .as_ref()
                    .and_then(|t| text(&t.span_id().to_string())),
                "listener" => text(&a.listener),
                "method" => text(d.method.as_str()),
                "host" => a.host.as_deref().and_then(text),
                "path" => a.path.as_deref().and_then(text),
                "query" => a.query.as_deref().and_then(text),
                "protocol" => text(a.protocol),
                "status" => Some(Value::Int(d.status.into())),
                "bytes" => Some(Value::Int(bytes)),
                "complete" => Some(Value::Bool(complete)),
                "request_filters_ms" => a.marks.request_phase().map(ms),
                "upstream_ms" => a.marks.backend().map(ms),
                "response_filters_ms" => a.marks.response_phase().map(ms),
                "duration_ms" => Some(ms(d.start.elapsed())),
                _ => None,
            },
            Field::RequestHeader(_) | Field::ResponseHeader(_) => {
                let key = f.key();
                a.headers
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| Value::Text(v.clone()))
            }
        };
        if let Some(v) = value {
            pairs.push((f.key(), v));
        }
    }
    crate::access_log::write(a.format, &pairs);
}

/// What serving a request produced, for the response and the access log.
struct Served {
    resp: Response<Body>,
    route: Option<Arc<Route>>,
    /// The route's upstream cluster was asked: which one, for a split (its name is the route's
    /// `upstream_name(pick)`).
    forwarded: Option<u16>,
    endpoint: Option<EndpointName>,
    /// Kept until the response body is done, so filters see `on_done` after the exchange.
    chain: Option<ChainRun>,
    /// A filter closed the stream: no response is sent, the stream is reset.
    reset: bool,
    /// The client trusted proxies named, when it is not the peer.
    client: Option<SocketAddr>,
    /// The upstream switched protocols: the tunnel to run once the client has the switch.
    tunnel: Option<tunnel::Pending>,
}

impl Served {
    fn plain(resp: Response<Body>) -> Served {
        Served {
            resp,
            route: None,
            forwarded: None,
            endpoint: None,
            chain: None,
            reset: false,
            client: None,
            tunnel: None,
        }
    }
}

async fn route_and_serve(
    listener: Option<&ListenerRoutes>,
    consumers: &Arc<crate::consumers::Registry>,
    info: &ConnInfo,
    id: &RequestId,
    req: Request<hyper::body::Incoming>,
) -> Served {
    // Read before the client's `Connection` header goes (see `upgrade`).
    let asked = match upgrade::asked(&req) {
        Ok(a) => a,
        Err(e) => return Served::plain(errors::respond(&e, id)),
    };
    if req.uri() == "*" {
        // OPTIONS * asks about the server, not a resource: the gateway answers for itself.
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        resp.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
        );
        return Served::plain(resp);
    }
    let h2 = req.version() == http::Version::HTTP_2;
    if h2 {
        let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
        if uri_len > info.max_uri_bytes {
            return Served::plain(errors::respond(&ProxyError::UriTooLong, id));
        }
    }
    let Some(listener) = listener else {
        return Served::plain(errors::respond(&ProxyError::NoRoute, id));
    };
    // Who the client is, once: the peer, or whom the listener's trusted proxies name.
    let client = match listener.trusted_proxies.is_empty() {
        true => info.peer,
        false => client_of(
            info.peer,
            req.headers(),
            &listener.trusted_proxies,
            listener.client_header,
        ),
    };
    let refused = |e: ProxyError| Served {
        client: (client != info.peer).then_some(client),
        ..Served::plain(errors::respond(&e, id))
    };
    // One authority and one path from here on: what routing sees is what the upstream gets.
    let (mut parts, incoming) = req.into_parts();
    if let Err(e) = canonical::canonicalize(&mut parts.uri, &mut parts.headers, h2, listener.paths)
    {
        return refused(ProxyError::BadTarget(e));
    }
    if h2 && parts.headers.len() > info.max_headers {
        return refused(ProxyError::TooManyHeaders);
    }
    // What the client's `Connection` makes hop-by-hop goes now, before the route's filters and
    // header rules: it must not remove a header they set (`x-anonymous-consumer`, a route's
    // `x-team`) on the way to the upstream. The other hop-by-hop headers go when forwarding.
    crate::framing::strip_connection(&mut parts.headers);
    parts.headers.insert(REQUEST_ID, id.header().clone());
    let req = Request::from_parts(parts, incoming);
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let found = listener.find(&RouteRequest {
        host,
        path: req.uri().path(),
        query: req.uri().query(),
        method: req.method(),
        headers: req.headers(),
        client_cert: info.tls.as_ref().and_then(|t| t.peer_cert.as_ref()),
    });
    let Some((route, params)) = found else {
        return refused(ProxyError::NoRoute);
    };
    let route = route.clone();
    // The cluster of a split is chosen with the route, from the request as the client sent it.
    let pick = route.pick(req.headers());
    let accepted = match asked.map(|a| upgrade::accept(a, &route, pick)) {
        None | Some(Ok(None)) => None,
        Some(Ok(Some(a))) => Some(a),
        Some(Err(e)) => {
            return Served {
                route: Some(route),
                ..refused(e)
            }
        }
    };
    // The authority as routed, kept only for a redirect (filters may change the headers).
    let host = match route.action {
        Action::Redirect(_) => host.to_owned(),
        _ => String::new(),
    };
    let (mut parts, incoming) = req.into_parts();
    // The client's side of a tunnel, if the upstream switches.
    let client_switch = match &accepted {
        Some(a) => {
            a.prepare(&mut parts);
            parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
        }
        None => None,
    };
    let backend = RouteBackend {
        route: &route,
        pick,
        info,
        client: client.ip(),
        params: &params,
        host: &host,
        upgrade: accepted.as_ref().map(|a| &a.protocol),
    };
    let incoming = if incoming.is_end_stream() {
        body::empty()
    } else {
        body::boxed(incoming)
    };
    let exchange = Exchange {
        stages: route.filters.get(),
        limit: route.max_body_size.unwrap_or(info.max_body_size),
        id,
    };
    let version = parts.version;
    let trace = parts
        .extensions
        .get::<crate::telemetry::RequestTrace>()
        .cloned();
    let request_info = || RequestInfo {
        route: route.name.clone(),
        upstream: route.upstream_name(pick).cloned(),
        peer: client,
        local: info.local,
        scheme: info.scheme,
        protocol: match version {
            http::Version::HTTP_10 => "1.0",
            http::Version::HTTP_2 => "2",
            _ => "1.1",
        },
        id: id.seq(),
        connection: info.conn.id(),
        tls: info.tls.clone(),
        timeout: route.timeout,
        identity: (!consumers.is_empty())
            .then(|| Arc::new(crate::consumers::Identity::new(consumers.clone()))),
        params: params.clone(),
        trace,
    };
    let mut outcome = exchange.run(request_info, parts, incoming, backend).await;
    let reset = matches!(
        &outcome.error,
        Some(ProxyError::Filter(e)) if matches!(e.error, crate::filter::FilterError::Reset)
    );
    // The upstream switched (and the response filters left its 101): the tunnel opens. No other
    // answer may say a tunnel opened: a 101 that opens none (a filter's own, one to a client
    // whose connection cannot switch, one to a request that asked for no upgrade), or a 2xx to an
    // extended CONNECT (RFC 8441: the client takes it as its tunnel), becomes a 502.
    let resp = &mut outcome.resp;
    let upstream_switch = resp.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
    let status = resp.status();
    let mut tunnel = None;
    let failed = match (&accepted, client_switch, upstream_switch) {
        (Some(a), Some(client), Some(upstream)) if status == StatusCode::SWITCHING_PROTOCOLS => {
            a.switch(resp);
            tunnel = Some(tunnel::Pending {
                client,
                upstream,
                route: route.clone(),
            });
            None
        }
        (_, _, None) if status == StatusCode::SWITCHING_PROTOCOLS => {
            Some("the switch of protocols did not come from the upstream")
        }
        _ if status == StatusCode::SWITCHING_PROTOCOLS => {
            Some("the upstream switched protocols for a request that cannot switch")
        }
        (Some(a), ..) if a.h2 && status.is_success() => {
            Some("the upstream answered the handshake without switching protocols")
        }
        _ => None,
    };
    if let Some(why) = failed {
        *resp = errors::error_response(StatusCode::BAD_GATEWAY, "upgrade_failed", why, id);
    }
    Served {
        tunnel,
        resp: outcome.resp,
        forwarded: (outcome.served && route.cluster(pick).is_some()).then_some(pick),
        endpoint: outcome.note,
        chain: outcome.chain,
        route: Some(route),
        reset,
        client: (client != info.peer).then_some(client),
    }
}

/// The backend a route names: its upstream cluster, a fixed response or a redirect.
struct RouteBackend<'a> {
    route: &'a Route,
    /// Which cluster of the route's split.
    pick: u16,
    info: &'a ConnInfo,
    /// The client (the peer, or whom trusted proxies name), for `client_ip` balancing.
    client: std::net::IpAddr,
    params: &'a crate::router::Params,
    /// The request's authority, for a redirect to the same host.
    host: &'a str,
    /// The protocol the upstream is asked to switch to, for an upgrade the route accepted.
    upgrade: Option<&'a HeaderValue>,
}

impl Backend for RouteBackend<'_> {
    type Note = Option<EndpointName>;

    fn answered_by(note: &Self::Note) -> Option<Arc<str>> {
        match note {
            Some(EndpointName::State(ep)) => Some(ep.shared_address.clone()),
            _ => None,
        }
    }

    fn takes_body(&self) -> bool {
        matches!(
            self.route.action,
            Action::Upstream(_) | Action::Split(_) | Action::Function(_)
        )
    }

    async fn serve(
        self,
        parts: http::request::Parts,
        body: Body,
        declared: Option<u64>,
        watch: &BodyWatch,
    ) -> (Result<Response<Body>, ProxyError>, Self::Note) {
        use crate::access_log::{Mark, Marks};
        // The access log's upstream time: from here to the response head (retries included).
        let marks = parts.extensions.get::<Arc<Marks>>().cloned();
        if let Some(m) = &marks {
            m.mark(Mark::BackendStart);
        }
        let served = self.serve_backend(parts, body, declared, watch).await;
        if let Some(m) = &marks {
            m.mark(Mark::BackendEnd);
        }
        served
    }
}

impl RouteBackend<'_> {
    /// [`Backend::serve`], without the access log's marks.
    async fn serve_backend(
        self,
        parts: http::request::Parts,
        body: Body,
        declared: Option<u64>,
        watch: &BodyWatch,
    ) -> (Result<Response<Body>, ProxyError>, Option<EndpointName>) {
        let route = self.route;
        let resp = match &route.action {
            Action::Upstream(_) | Action::Split(_) => {
                let cluster = route.cluster(self.pick).expect("a route that forwards");
                let mut parts = parts;
                if let Some(t) = &route.transcode {
                    if !transcode::is_grpc(&parts.headers) {
                        // Boxed, as `forward` below.
                        return Box::pin(transcode::serve(t, &self, cluster, parts, body, watch))
                            .await;
                    }
                }
                let web = route
                    .grpc_web
                    .then(|| grpc_web::detect(&parts.headers))
                    .flatten();
                let (body, declared) = match &web {
                    Some(w) => (w.request(&mut parts, body), None),
                    None => (body, declared),
                };
                // Boxed: its state (about 3 KiB: the request's parts, the upstream request, the
                // try's timeout and send) would otherwise be in every future above it, each of which
                // is copied whole at least once per request (`serve`, `Exchange::run`, `handle`, an
                // HTTP/2 stream's task). One allocation costs less than the copies (BENCHMARKS.md,
                // issue 17: 1.1 k instructions per HTTP/1 request, 96 k per HTTP/2 one).
                let forwarded = Box::pin(forward::forward(
                    route,
                    cluster,
                    self.info,
                    self.client,
                    parts,
                    body,
                    self.params,
                    watch,
                    declared,
                    self.upgrade,
                ))
                .await;
                return match forwarded {
                    Ok((resp, endpoint)) => {
                        let resp = match &web {
                            Some(w) => w.response(resp),
                            None => resp,
                        };
                        (Ok(resp), Some(EndpointName::State(endpoint)))
                    }
                    Err(e) => {
                        // The warning is `errors::respond`'s, once, with the request id (the
                        // access line has the route and upstream); here only for debugging.
                        tracing::debug!(route = %route.name, upstream = %cluster.name, endpoint = e.endpoint().unwrap_or("-"), error = %e, "upstream request failed");
                        let endpoint = e.endpoint().map(|e| EndpointName::Text(e.to_owned()));
                        (Err(e), endpoint)
                    }
                };
            }
            Action::Direct {
                status,
                body,
                headers,
            } => {
                let mut resp = Response::new(body::full(body.clone()));
                *resp.status_mut() = *status;
                *resp.headers_mut() = headers.clone();
                resp
            }
            Action::Redirect(rd) => redirect(rd, &parts.uri, self.host, self.info.scheme),
            Action::Function(slot) => {
                let Some(f) = slot.get() else {
                    let e = crate::wasm::function::FunctionError::NotLoaded(slot.name().into());
                    return (Err(e.into()), None);
                };
                // Boxed, as `forward` above.
                return (
                    Box::pin(f.serve(parts, body, self.info.scheme))
                        .await
                        .map_err(Into::into),
                    None,
                );
            }
        };
        (Ok(resp), None)
    }
}

fn redirect(
    rd: &crate::config::Redirect,
    uri: &http::Uri,
    host: &str,
    scheme: &str,
) -> Response<Body> {
    let scheme = rd.scheme.as_deref().unwrap_or(scheme);
    let bare_host = crate::router::normalize_host(host);
    let target_host = rd.host.as_deref().unwrap_or(&bare_host);
    let port = match rd.port {
        Some(p) => format!(":{p}"),
        None if rd.host.is_none() && rd.scheme.is_none() => {
            host_port(host).map(|p| format!(":{p}")).unwrap_or_default()
        }
        None => String::new(),
    };
    let path = rd.path.as_deref().unwrap_or(uri.path());
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let location = format!("{scheme}://{target_host}{port}{path}{query}");
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::from_u16(rd.status).unwrap_or(StatusCode::FOUND);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// The port of a `host:port` Host value, if it has one.
fn host_port(host: &str) -> Option<&str> {
    let (_, port) = host.rsplit_once(':')?;
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(']'))
        .then_some(port)
}
