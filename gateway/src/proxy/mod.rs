//! The request path: route, act (forward, redirect, answer), finish (headers, metrics, access log).

mod forward;
mod headers;

use crate::body::{self, Body, BodyWatch, Limited, Tracked};
use crate::canonical;
use crate::errors::{self, ProxyError};
use crate::filter::chain::{local_to_response, ChainError, ChainRun, Flow, Held};
use crate::filter::{BodyMode, LocalResponse, RequestHead, RequestInfo, ResponseHead};
use crate::metrics::Metrics;
use crate::router::RouteRequest;
use crate::runtime::{Action, Route, Runtime};
use crate::server::h1_guard::ConnShared;
use arc_swap::ArcSwap;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// State shared by every connection of the process.
pub struct Shared {
    /// The serving snapshot; swapped whole on reload.
    pub runtime: ArcSwap<Runtime>,
    /// Metrics registry (kept across reloads).
    pub metrics: Arc<Metrics>,
    /// The Wasm plugin host (kept across reloads).
    pub plugins: Arc<crate::plugins::PluginHost>,
}

/// Facts about the connection a request came on.
#[derive(Clone)]
pub struct ConnInfo {
    /// Listener name.
    pub listener: Arc<str>,
    /// Client address.
    pub peer: SocketAddr,
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
    /// The request went to the route's upstream cluster.
    forwarded: bool,
    endpoint: Option<EndpointName>,
    method: http::Method,
    path: String,
    peer: SocketAddr,
    status: u16,
    start: Instant,
}

/// Serves one request.
pub async fn handle(
    shared: Arc<Shared>,
    info: ConnInfo,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let in_flight = info.conn.start_request();
    let start = Instant::now();
    let snapshot = shared.runtime.load_full();
    let method = req.method().clone();
    let log = snapshot.config.server.access_log.enabled;
    // Only the access log needs the path after the request is gone.
    let path = if log {
        req.uri().path().to_owned()
    } else {
        String::new()
    };
    let Served {
        mut resp,
        route,
        forwarded,
        endpoint,
        chain,
    } = route_and_serve(&snapshot, &info, &shared.metrics, req).await;
    if let Some(r) = &route {
        r.response_headers.apply(resp.headers_mut());
        r.stats.latency.observe(start.elapsed());
    }
    let done = Done {
        route,
        forwarded,
        endpoint,
        method,
        path,
        peer: info.peer,
        status: resp.status().as_u16(),
        start,
    };
    let metrics = shared.metrics.clone();
    resp.map(move |b| {
        body::boxed(Tracked::new(
            b,
            Box::new(move |bytes, complete| {
                drop(chain);
                drop(in_flight);
                finish(&metrics, done, bytes, complete, log);
            }),
        ))
    })
}

fn finish(metrics: &Metrics, d: Done, bytes: u64, complete: bool, log: bool) {
    match &d.route {
        Some(r) => r.stats.responses.inc(d.status),
        None if d.status == 404 => {
            metrics
                .no_route
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        None => metrics.refused.inc(d.status),
    }
    if log {
        tracing::info!(
            target: "access",
            route = d.route.as_ref().map(|r| r.name.as_str()).unwrap_or("-"),
            upstream = d
                .route
                .as_ref()
                .and_then(|r| r.upstream_name())
                .filter(|_| d.forwarded)
                .unwrap_or("-"),
            endpoint = d.endpoint.as_ref().map_or("-", EndpointName::as_str),
            client = %d.peer.ip(),
            method = %d.method,
            path = %d.path,
            status = d.status,
            bytes,
            complete,
            duration_ms = (d.start.elapsed().as_secs_f64() * 1e6).round() / 1000.0,
        );
    }
}

/// What serving a request produced, for the response and the access log.
struct Served {
    resp: Response<Body>,
    route: Option<Arc<Route>>,
    /// The route's upstream cluster was asked (its name is the route's `upstream_name`).
    forwarded: bool,
    endpoint: Option<EndpointName>,
    /// Kept until the response body is done, so filters see `on_done` after the exchange.
    chain: Option<ChainRun>,
}

impl Served {
    fn plain(resp: Response<Body>) -> Served {
        Served {
            resp,
            route: None,
            forwarded: false,
            endpoint: None,
            chain: None,
        }
    }

    fn routed(resp: Response<Body>, route: Arc<Route>) -> Served {
        Served {
            route: Some(route),
            ..Served::plain(resp)
        }
    }
}

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

async fn route_and_serve(
    rt: &Runtime,
    info: &ConnInfo,
    metrics: &Metrics,
    req: Request<hyper::body::Incoming>,
) -> Served {
    let is_upgrade =
        req.headers().contains_key(header::UPGRADE) || req.method() == http::Method::CONNECT;
    if is_upgrade {
        // Upgrades are not tunnelled: the request is served as plain HTTP without its Upgrade header,
        // and the connection's guard resumes parsing what follows as the next request.
        info.conn.decide_upgrade(false);
    }
    if req.method() == http::Method::CONNECT {
        return Served::plain(errors::respond(&ProxyError::MethodNotAllowed));
    }
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
            metrics.refused.inc(414);
            return Served::plain(errors::json_error(
                StatusCode::URI_TOO_LONG,
                "uri_too_long",
                "request target too long",
            ));
        }
    }
    let Some(listener) = rt.listeners.get(&*info.listener) else {
        return Served::plain(errors::respond(&ProxyError::NoRoute));
    };
    // One authority and one path from here on: what routing sees is what the upstream gets.
    let (mut parts, incoming) = req.into_parts();
    if let Err(e) = canonical::canonicalize(
        &mut parts.uri,
        &mut parts.headers,
        h2,
        listener.escaped_slashes,
    ) {
        metrics.refused.inc(400);
        return Served::plain(errors::respond(&ProxyError::BadTarget(e)));
    }
    let req = Request::from_parts(parts, incoming);
    if h2 && req.headers().len() > info.max_headers {
        metrics.refused.inc(431);
        return Served::plain(errors::json_error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            "too many header fields",
        ));
    }
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
        return Served::plain(errors::respond(&ProxyError::NoRoute));
    };
    let route = route.clone();
    // The Host as the client sent it, kept only for a redirect (filters may change the headers).
    let host = match route.action {
        Action::Redirect(_) => host.to_owned(),
        _ => String::new(),
    };
    let limit = route.max_body_size.unwrap_or(info.max_body_size);
    let mut declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Served::routed(errors::respond(&ProxyError::BodyTooLarge { limit }), route);
    }
    let watch = Arc::new(BodyWatch::default());
    let (mut parts, incoming) = req.into_parts();
    let end_of_stream = incoming.is_end_stream();
    // The answer to a HEAD request has no body, whatever its Content-Length says.
    let head_request = parts.method == http::Method::HEAD;
    let mut body = if end_of_stream {
        body::empty()
    } else {
        body::boxed(Limited::new(body::boxed(incoming), limit, watch.clone()))
    };

    // The request phase of the route's filters.
    let mut chain = None;
    let mut upto = 0;
    let mut body_verdict = None;
    if let Some(stages) = route.filters.get() {
        let request_info = RequestInfo {
            route: Arc::from(route.name.as_str()),
            upstream: route.upstream_name().map(Arc::from),
            peer: info.peer,
            local: info.local,
            scheme: info.scheme,
            protocol: match parts.version {
                http::Version::HTTP_10 => "1.0",
                http::Version::HTTP_2 => "2",
                _ => "1.1",
            },
            id: REQUEST_IDS.fetch_add(1, Ordering::Relaxed),
            tls: info.tls.clone(),
        };
        let run = match ChainRun::start(stages.clone(), &request_info) {
            Ok(run) => run.with_body_limit(limit),
            Err(e) => return Served::routed(errors::respond(&ProxyError::Filter(e)), route),
        };
        upto = stages.len();
        let mut head = RequestHead {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: std::mem::take(&mut parts.headers),
        };
        match run.request_headers(&mut head, end_of_stream).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::Respond { response, upto }) => {
                let resp =
                    response_phase(&run, local_to_response(response), upto, head_request).await;
                return Served {
                    chain: Some(run),
                    ..Served::routed(resp, route)
                };
            }
            Err(e) => return Served::routed(errors::respond(&ProxyError::Filter(e)), route),
        }
        // A filter asked for the whole body: the head waits for it, and may still change.
        let mode = if end_of_stream {
            BodyMode::Skip
        } else {
            run.request_body_mode().await
        };
        let held = mode == BodyMode::Whole;
        if held {
            let taken = std::mem::replace(&mut body, body::empty());
            let err = match run.request_body_whole(&mut head, taken).await {
                Held::Body(b, len) => {
                    (body, declared) = (b, len);
                    None
                }
                Held::Respond { response, upto } => {
                    let resp =
                        response_phase(&run, local_to_response(response), upto, head_request).await;
                    return Served {
                        chain: Some(run),
                        ..Served::routed(resp, route)
                    };
                }
                Held::Failed(e) => Some(ProxyError::Filter(e)),
                Held::TooLarge(_) | Held::Overflow(_) => Some(ProxyError::BodyTooLarge { limit }),
                Held::Unreadable(_) if watch.too_large.load(Ordering::Acquire) => {
                    Some(ProxyError::BodyTooLarge { limit })
                }
                Held::Unreadable(e) => Some(ProxyError::BadRequestBody(e.to_string())),
            };
            if let Some(err) = err {
                return Served::routed(errors::respond(&err), route);
            }
        }
        parts.method = head.method;
        parts.uri = head.uri;
        parts.headers = head.headers;
        if mode == BodyMode::Stream {
            // A filter may change the body, so its length is no longer known.
            parts.headers.remove(header::CONTENT_LENGTH);
            declared = None;
            let (b, verdict) = run.request_body(body);
            body = b;
            body_verdict = Some(verdict);
        }
        chain = Some(run);
    }

    let mut served = match &route.action {
        Action::Upstream(cluster) => {
            let fwd = forward::forward(
                &route, cluster, info, parts, body, &params, &watch, declared,
            );
            let outcome = match body_verdict {
                None => Backend::Done(fwd.await),
                Some(verdict) => {
                    tokio::select! {
                        r = fwd => Backend::Done(r),
                        Some(v) = body_phase_answer(verdict) => v,
                    }
                }
            };
            match outcome {
                Backend::Done(Ok((resp, endpoint))) => Served {
                    forwarded: true,
                    endpoint: Some(EndpointName::State(endpoint)),
                    ..Served::routed(resp, route.clone())
                },
                Backend::Done(Err(e)) => {
                    let (status, _) = e.status();
                    if status.is_server_error() {
                        tracing::warn!(route = %route.name, upstream = %cluster.name, endpoint = e.endpoint().unwrap_or("-"), error = %e, "upstream request failed");
                    }
                    Served {
                        forwarded: true,
                        endpoint: e.endpoint().map(|e| EndpointName::Text(e.to_owned())),
                        ..Served::routed(errors::respond(&e), route.clone())
                    }
                }
                Backend::Local(r, at) => {
                    upto = at;
                    Served::routed(local_to_response(r), route.clone())
                }
                Backend::Failed(e) => {
                    return Served::routed(errors::respond(&ProxyError::Filter(e)), route)
                }
            }
        }
        action => {
            // A fixed answer; filters that asked for the request body still see all of it first.
            if let Some(verdict) = body_verdict {
                let drained = body.collect().await;
                match body_phase_answer(verdict).await {
                    Some(Backend::Local(r, at)) => {
                        upto = at;
                        let resp = local_to_response(r);
                        return finish_chain(chain, resp, upto, route, head_request).await;
                    }
                    Some(Backend::Failed(e)) => {
                        return Served::routed(errors::respond(&ProxyError::Filter(e)), route)
                    }
                    _ => {}
                }
                if let Err(e) = drained {
                    let err = if watch.too_large.load(Ordering::Acquire) {
                        ProxyError::BodyTooLarge { limit }
                    } else {
                        ProxyError::BadRequestBody(e.to_string())
                    };
                    return Served::routed(errors::respond(&err), route);
                }
            }
            let resp = match action {
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
                Action::Redirect(rd) => redirect(rd, &parts.uri, &host, info.scheme),
                Action::Upstream(_) => errors::json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "route action changed while serving",
                ),
            };
            return finish_chain(chain, resp, upto, route, head_request).await;
        }
    };
    if let Some(run) = chain {
        served.resp = response_phase(&run, served.resp, upto, head_request).await;
        served.chain = Some(run);
    }
    served
}

/// What the backend step ended in.
enum Backend {
    Done(Result<(Response<Body>, Arc<crate::upstream::EndpointState>), ProxyError>),
    Local(LocalResponse, usize),
    Failed(ChainError),
}

/// Resolves if a filter answered (or failed) during the request body; never resolves otherwise.
async fn body_phase_answer(
    verdict: oneshot::Receiver<Result<Flow, ChainError>>,
) -> Option<Backend> {
    match verdict.await {
        Ok(Ok(Flow::Respond { response, upto })) => Some(Backend::Local(response, upto)),
        Ok(Err(e)) => Some(Backend::Failed(e)),
        _ => std::future::pending().await,
    }
}

async fn finish_chain(
    chain: Option<ChainRun>,
    resp: Response<Body>,
    upto: usize,
    route: Arc<Route>,
    head_request: bool,
) -> Served {
    let mut served = Served::routed(resp, route);
    if let Some(run) = chain {
        served.resp = response_phase(&run, served.resp, upto, head_request).await;
        served.chain = Some(run);
    }
    served
}

/// The response phase of filters `0..upto`, in reverse order. `head_request`: the response to a HEAD
/// request, which (like a 1xx, 204 or 304) has no body to show filters, and keeps its Content-Length.
async fn response_phase(
    run: &ChainRun,
    resp: Response<Body>,
    upto: usize,
    head_request: bool,
) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    let bodiless = head_request
        || parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    let mut head = ResponseHead {
        status: parts.status,
        headers: std::mem::take(&mut parts.headers),
    };
    match run
        .response_headers(&mut head, body.is_end_stream(), upto)
        .await
    {
        Ok(Flow::Continue) => {}
        Ok(Flow::Respond { response, .. }) => return local_to_response(response),
        Err(e) => return errors::respond(&ProxyError::Filter(e)),
    }
    // A filter asked for the whole body: the head waits for it, and may still change.
    let mut held = false;
    let mut mode = if bodiless || body.is_end_stream() {
        BodyMode::Skip
    } else {
        run.response_body_mode(upto).await
    };
    let body = if mode == BodyMode::Whole {
        match run.response_body_whole(&mut head, body, upto).await {
            Held::Body(b, _) => {
                held = true;
                b
            }
            Held::Overflow(b) => {
                // The whole-mode filters failed open: ask again who still wants the body.
                mode = run.response_body_mode(upto).await;
                b
            }
            Held::Respond { response, .. } => return local_to_response(response),
            Held::Failed(e) => return errors::respond(&ProxyError::Filter(e)),
            Held::TooLarge(_) | Held::Unreadable(_) => {
                tracing::warn!("the response body held for a whole-body filter broke off");
                return errors::json_error(
                    StatusCode::BAD_GATEWAY,
                    "upstream_protocol_error",
                    "the response body broke off before it was whole",
                );
            }
        }
    } else {
        body
    };
    parts.status = head.status;
    parts.headers = head.headers;
    let body = if !held && mode != BodyMode::Skip && !body.is_end_stream() {
        parts.headers.remove(header::CONTENT_LENGTH);
        run.response_body(body, upto).0
    } else {
        body
    };
    Response::from_parts(parts, body)
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
