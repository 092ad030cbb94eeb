//! The request path: route, act (forward, redirect, answer), finish (headers, metrics, access log).

mod forward;
mod headers;

use crate::body::{self, Body, BodyWatch, Limited, Tracked};
use crate::errors::{self, ProxyError};
use crate::metrics::Metrics;
use crate::router::RouteRequest;
use crate::runtime::{Action, Route, Runtime};
use crate::server::h1_guard::ConnShared;
use arc_swap::ArcSwap;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::Body as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// State shared by every connection of the process.
pub struct Shared {
    /// The serving snapshot; swapped whole on reload.
    pub runtime: ArcSwap<Runtime>,
    /// Metrics registry (kept across reloads).
    pub metrics: Arc<Metrics>,
}

/// Facts about the connection a request came on.
#[derive(Clone)]
pub struct ConnInfo {
    /// Listener name.
    pub listener: Arc<str>,
    /// Client address.
    pub peer: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The connection's guard state.
    pub conn: Arc<ConnShared>,
    /// Listener body limit (used when a route sets none).
    pub max_body_size: u64,
    /// Listener limits for HTTP/2 requests, which the HTTP/1 guard does not see.
    pub max_uri_bytes: usize,
    /// Header count limit, likewise.
    pub max_headers: usize,
}

/// What the access log and metrics need after the response is done.
struct Done {
    route: Option<Arc<Route>>,
    upstream: Option<String>,
    endpoint: Option<String>,
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
    let path = req.uri().path().to_owned();
    let (resp, route, upstream, endpoint) =
        route_and_serve(&snapshot, &info, &shared.metrics, req).await;
    let mut resp = resp;
    if let Some(r) = &route {
        r.response_headers.apply(resp.headers_mut());
        r.stats.latency.observe(start.elapsed());
    }
    let done = Done {
        route,
        upstream,
        endpoint,
        method,
        path,
        peer: info.peer,
        status: resp.status().as_u16(),
        start,
    };
    let log = snapshot.config.server.access_log.enabled;
    let metrics = shared.metrics.clone();
    resp.map(move |b| {
        body::boxed(Tracked::new(
            b,
            Box::new(move |bytes, complete| {
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
            upstream = d.upstream.as_deref().unwrap_or("-"),
            endpoint = d.endpoint.as_deref().unwrap_or("-"),
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

type Served = (
    Response<Body>,
    Option<Arc<Route>>,
    Option<String>,
    Option<String>,
);

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
        return (
            errors::respond(&ProxyError::MethodNotAllowed),
            None,
            None,
            None,
        );
    }
    if req.uri() == "*" {
        // OPTIONS * asks about the server, not a resource: the gateway answers for itself.
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        resp.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
        );
        return (resp, None, None, None);
    }
    if req.version() == http::Version::HTTP_2 {
        let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
        if uri_len > info.max_uri_bytes {
            metrics.refused.inc(414);
            return (
                errors::json_error(
                    StatusCode::URI_TOO_LONG,
                    "uri_too_long",
                    "request target too long",
                ),
                None,
                None,
                None,
            );
        }
        if req.headers().len() > info.max_headers {
            metrics.refused.inc(431);
            return (
                errors::json_error(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "headers_too_large",
                    "too many header fields",
                ),
                None,
                None,
                None,
            );
        }
    }
    let Some(listener) = rt.listeners.get(&*info.listener) else {
        return (errors::respond(&ProxyError::NoRoute), None, None, None);
    };
    let host = headers::request_host(&req).unwrap_or_default();
    let found = listener.find(&RouteRequest {
        host: &host,
        path: req.uri().path(),
        query: req.uri().query(),
        method: req.method(),
        headers: req.headers(),
    });
    let Some((route, params)) = found else {
        return (errors::respond(&ProxyError::NoRoute), None, None, None);
    };
    let route = route.clone();
    let limit = route.max_body_size.unwrap_or(info.max_body_size);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return (
            errors::respond(&ProxyError::BodyTooLarge { limit }),
            Some(route),
            None,
            None,
        );
    }
    match &route.action {
        Action::Direct {
            status,
            body,
            headers,
        } => {
            let mut resp = Response::new(body::full(body.clone()));
            *resp.status_mut() = *status;
            *resp.headers_mut() = headers.clone();
            (resp, Some(route), None, None)
        }
        Action::Redirect(rd) => (
            redirect(rd, &req, &host, info.scheme),
            Some(route),
            None,
            None,
        ),
        Action::Upstream(cluster) => {
            let cluster = cluster.clone();
            let watch = Arc::new(BodyWatch::default());
            let (parts, incoming) = req.into_parts();
            let body = if incoming.is_end_stream() {
                body::empty()
            } else {
                body::boxed(Limited::new(body::boxed(incoming), limit, watch.clone()))
            };
            let result = forward::forward(
                &route, &cluster, info, parts, body, &params, &watch, declared,
            )
            .await;
            let upstream = Some(cluster.name.clone());
            match result {
                Ok((resp, endpoint)) => (resp, Some(route), upstream, Some(endpoint)),
                Err(e) => {
                    let (status, _) = e.status();
                    if status.is_server_error() {
                        tracing::warn!(route = %route.name, upstream = %cluster.name, endpoint = e.endpoint().unwrap_or("-"), error = %e, "upstream request failed");
                    }
                    let endpoint = e.endpoint().map(str::to_owned);
                    (errors::respond(&e), Some(route), upstream, endpoint)
                }
            }
        }
    }
}

fn redirect<B>(
    rd: &crate::config::Redirect,
    req: &Request<B>,
    host: &str,
    scheme: &str,
) -> Response<Body> {
    let scheme = rd.scheme.as_deref().unwrap_or(scheme);
    let bare_host = crate::router::normalize_host(host);
    let host = rd.host.as_deref().unwrap_or(&bare_host);
    let port = match rd.port {
        Some(p) => format!(":{p}"),
        None if rd.host.is_none() && rd.scheme.is_none() => {
            host_port(req).map(|p| format!(":{p}")).unwrap_or_default()
        }
        None => String::new(),
    };
    let path = rd.path.as_deref().unwrap_or(req.uri().path());
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let location = format!("{scheme}://{host}{port}{path}{query}");
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::from_u16(rd.status).unwrap_or(StatusCode::FOUND);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn host_port<B>(req: &Request<B>) -> Option<String> {
    let h = headers::request_host(req)?;
    let (_, port) = h.rsplit_once(':')?;
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(']'))
        .then(|| port.to_owned())
}
