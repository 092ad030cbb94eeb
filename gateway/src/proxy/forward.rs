//! Forwarding to an upstream cluster: the upstream request, endpoint choice, timeouts, retries and
//! passive health.

use super::headers::{request_host_value, set_forwarded, strip_hop_by_hop};
use super::target::{upstream_uri, version_and_authority, UpstreamPath};
use super::ConnInfo;
use crate::body::{self, Body, BodyWatch};
use crate::config::HashKey;
use crate::errors::ProxyError;
use crate::exchange::body_error;
use crate::router::Params;
use crate::runtime::{PathRewrite, Route};
use crate::upstream::retry::TryOutcome;
use crate::upstream::{hash_ip, hash_str, Cluster, EndpointGuard, EndpointState, PooledBody};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{request::Parts, Request, Response, Uri};
use http_body::Body as _;
use http_body_util::BodyExt;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

/// Sends the request to an endpoint of `cluster` (retrying by the route's policy) and returns the
/// upstream's response and the endpoint that answered. `upgrade`: the protocol the upstream is
/// asked to switch to (see [`super::upgrade`]); its 101 keeps the switch hyper made of it.
#[allow(clippy::too_many_arguments)]
pub async fn forward(
    route: &Route,
    cluster: &Cluster,
    info: &ConnInfo,
    client: std::net::IpAddr,
    parts: Parts,
    body: Body,
    params: &Params,
    watch: &BodyWatch,
    declared_len: Option<u64>,
    upgrade: Option<&HeaderValue>,
) -> Result<(Response<Body>, Arc<EndpointState>), ProxyError> {
    let limit = route.max_body_size.unwrap_or(info.max_body_size);
    let present = parts.headers.get(header::HOST);
    let has_host = present.is_some();
    let host = request_host_value(&parts.uri, present);
    let path_and_query = upstream_path(route, &parts.uri, params);
    let mut headers = parts.headers;
    // Keeps Host (never hop-by-hop), so `has_host` still holds after it.
    strip_hop_by_hop(&mut headers);
    set_forwarded(
        &mut headers,
        &info.forwarded_for,
        info.scheme,
        host.as_ref(),
    );
    if !has_host {
        if let Some(v) = host {
            headers.insert(header::HOST, v);
        }
    }
    if let Some(h) = &route.host_rewrite {
        headers.insert(header::HOST, h.clone());
    }
    route.request_headers.apply(&mut headers);
    // The gateway answered `Expect: 100-continue` itself (hyper does when the body is first read);
    // the upstream gets the body without being asked.
    headers.remove(header::EXPECT);
    // TE is hop-by-hop: it says what the gateway, as the upstream's client, accepts. The gateway passes
    // trailers on (to clients that accept them), so it always asks for them.
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    // A copy for the route's mirror, if it takes this request, of the request as it goes upstream
    // (not a handshake: a shadow cannot take part in a tunnel).
    let body = match &route.mirror {
        None => body,
        Some(_) if upgrade.is_some() => body,
        Some(m) => m.start(
            &parts.method,
            path_and_query.as_str(),
            &headers,
            body,
            declared_len,
        ),
    };
    // A gRPC call's own deadline (`grpc-timeout`) ends the whole call, counted from the request's
    // arrival; its response headers are also bounded by the route's timeout. A value that does not
    // parse is no deadline, and is not passed on (a gRPC server would refuse the call for it).
    let grpc = super::grpc::is_grpc(&headers);
    let grpc_timeout = match grpc {
        true => match headers.get(super::grpc::GRPC_TIMEOUT) {
            Some(v) => {
                let t = super::grpc::parse_timeout(v);
                if t.is_none() {
                    headers.remove(super::grpc::GRPC_TIMEOUT);
                }
                t
            }
            None => None,
        },
        false => None,
    };
    let arrival = parts.extensions.get::<super::grpc::Arrival>().map(|a| a.0);
    let (version, authority) = version_and_authority(cluster.protocol, &mut headers);
    if let Some(protocol) = upgrade {
        super::upgrade::upstream_request_headers(&mut headers, protocol);
    }

    let retry = route
        .retry
        .as_ref()
        .filter(|p| p.method_allowed(&parts.method) || (grpc && p.retries_grpc()));
    if let Some(p) = retry {
        p.deposit();
    }
    // A body can be sent again only if it is kept; keep it when it is small and its size is known.
    let replayable = retry.is_some()
        && (body.is_end_stream()
            || declared_len.is_some_and(|n| n <= retry.map_or(0, |p| p.cfg.buffer_limit.0)));
    // A gRPC call's body is not held back (a streaming call must stream): it is kept as it goes,
    // and the call can be sent again if its body has ended, whole, when the answer comes.
    let mut recording = None;
    let (mut once, mut replay): (Option<Body>, Option<Bytes>) = if replayable {
        match body.collect().await {
            Ok(c) => (None, Some(c.to_bytes())),
            Err(e) => return Err(body_error(watch, e.to_string(), limit)),
        }
    } else if let (true, Some(p)) = (grpc, retry) {
        let keep = usize::try_from(p.cfg.buffer_limit.0).unwrap_or(usize::MAX);
        let (b, rec) = super::grpc::Recorded::new(body, keep);
        recording = Some(rec);
        (Some(body::boxed(b)), None)
    } else {
        (Some(body), None)
    };
    let retry = retry.filter(|_| replay.is_some() || recording.is_some());

    let hash_key = cluster.hash_key.as_ref().and_then(|k| match k {
        HashKey::Header(name) => headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .map(hash_str),
        HashKey::Cookie(name) => cookie(&headers, name).map(|c| hash_str(&c)),
        HashKey::ClientIp => Some(hash_ip(client)),
    });

    // Without retries there is one try, which takes the headers; with retries each try gets a copy.
    let mut headers = Some(headers);
    let start = Instant::now();
    // The call's deadline (body included), and the one for the response headers.
    let call_deadline = grpc_timeout.map(|t| arrival.unwrap_or(start) + t);
    let deadline = call_deadline.map_or(start + route.timeout, |d| d.min(start + route.timeout));
    let mut attempt = 0u32;
    // The tries' clock: the connection's, kept between its requests.
    let mut clock = info.conn.try_clock();
    let mut idx = cluster
        .policy
        .pick(&cluster.endpoints, hash_key, None)
        .ok_or_else(|| ProxyError::NoHealthyEndpoint {
            upstream: cluster.name.to_string(),
        })?;
    loop {
        let ep = cluster.endpoints[idx].clone();
        let guard = EndpointGuard::new(ep.clone());
        let body = match (&replay, once.take()) {
            (Some(b), _) => body::full(b.clone()),
            (None, Some(b)) => b,
            (None, None) => body::empty(),
        };
        let uri = upstream_uri(
            cluster.scheme,
            version,
            &ep,
            authority.as_ref(),
            &path_and_query,
        )?;
        let mut req = Request::new(body);
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = version;
        *req.headers_mut() = match retry {
            Some(_) => headers.clone().unwrap_or_default(),
            None => headers.take().unwrap_or_default(),
        };

        // The first try starts now (the clock was just read).
        let now = if attempt == 0 { start } else { Instant::now() };
        let remaining = deadline.saturating_duration_since(now);
        let per_try = retry
            .and_then(|p| p.cfg.per_try_timeout)
            .map_or(remaining, |t| t.0.min(remaining));
        // The upstream gets the call's time left, less what the gateway has spent (as Envoy does);
        // the route's timeout bounds only the headers, so a stream may go on past it.
        if let Some(d) = call_deadline {
            req.headers_mut().insert(
                super::grpc::GRPC_TIMEOUT,
                super::grpc::timeout_value(d.saturating_duration_since(now)),
            );
        }
        // The try's span (when the request is traced) is the upstream's parent in its headers.
        let mut traced = parts
            .extensions
            .get::<crate::telemetry::RequestTrace>()
            .map(|t| {
                let span = t.start_try(&req, &cluster.name, &ep.address, attempt);
                t.inject_try(&span, req.headers_mut());
                span
            });
        cluster.stats.requests.fetch_add(1, Ordering::Relaxed);
        clock.set(now + per_try);
        let result = {
            let mut send = std::pin::pin!(cluster.client.send(idx, req));
            std::future::poll_fn(|cx| match send.as_mut().poll(cx) {
                Poll::Ready(r) => Poll::Ready(Ok(r)),
                Poll::Pending => clock.poll_elapsed(cx).map(Err),
            })
            .await
        };
        cluster.stats.latency.observe(now.elapsed());
        let (outcome, result) = match result {
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                // A trailers-only gRPC answer has its status in the headers; one after a body has
                // it in trailers, too late to retry.
                let code = grpc
                    .then(|| super::grpc::status_in_headers(resp.headers()))
                    .flatten();
                // Passive health takes a gRPC status as the HTTP status it maps to (as Envoy's
                // outlier detection does): UNAVAILABLE (503) and DEADLINE_EXCEEDED (504) fail.
                let health = code.map_or(status, |c| c.http_status().as_u16());
                ep.record(!matches!(health, 502..=504), &cluster.passive);
                if let (Some(span), Some(code)) = (&mut traced, code) {
                    span.grpc_status(code);
                }
                let outcome = match code {
                    Some(code) if code != super::grpc::Code::Ok => TryOutcome::Grpc(code),
                    _ => TryOutcome::Status(status),
                };
                (outcome, Ok(resp))
            }
            Ok(Err(e)) => {
                // The request body broke off (the client's fault) or the filters cut it off (their
                // answer is the client's): not the endpoint's failure.
                if watch.explains_failure() {
                    return Err(body_error(watch, chain(&e), limit));
                }
                ep.record(false, &cluster.passive);
                let connect = e.is_connect();
                cluster
                    .stats
                    .error(if connect { "connect" } else { "protocol" });
                let endpoint = ep.address.clone();
                let detail = chain(&e);
                if connect {
                    (
                        TryOutcome::ConnectFailure,
                        Err(ProxyError::Connect { endpoint, detail }),
                    )
                } else {
                    (
                        TryOutcome::Reset,
                        Err(ProxyError::Protocol { endpoint, detail }),
                    )
                }
            }
            Err(_) => {
                ep.record(false, &cluster.passive);
                cluster.stats.error("timeout");
                let err = ProxyError::Timeout {
                    endpoint: ep.address.clone(),
                    after_ms: start.elapsed().as_millis() as u64,
                };
                (TryOutcome::Timeout, Err(err))
            }
        };
        if let Some(span) = traced {
            let http = result.as_ref().ok().map(|r| r.status().as_u16());
            span.end(try_status(outcome, http, &result));
        }
        // Retry only when the policy allows it, another try can start before the deadline (backoff
        // included), an endpoint is available for it, and the budget has a retry left.
        let next = retry.and_then(|p| {
            let pause = p.next_pause(attempt, outcome, deadline)?;
            // A streamed gRPC body is sent again only if it ended, whole, before the answer.
            if replay.is_none() {
                replay = recording.as_ref().and_then(|r| r.replay());
                replay.as_ref()?;
            }
            let next = cluster
                .policy
                .pick(&cluster.endpoints, hash_key, Some(idx))?;
            p.withdraw().then_some((next, pause))
        });
        let Some((next, pause)) = next else {
            return match result {
                Ok(resp) => {
                    let (mut p, incoming) = resp.into_parts();
                    let switched = match upgrade {
                        Some(asked) if p.status == http::StatusCode::SWITCHING_PROTOCOLS => {
                            Some((p.headers.get(header::UPGRADE).cloned(), asked))
                        }
                        _ => None,
                    };
                    strip_hop_by_hop(&mut p.headers);
                    if let Some((named, asked)) = switched {
                        super::upgrade::upstream_switch(&mut p.headers, named, asked);
                    }
                    let b = UpstreamBody {
                        inner: incoming,
                        _guard: guard,
                    };
                    // A gRPC call's deadline also ends its response body.
                    let b = match call_deadline {
                        Some(d) => body::boxed(super::grpc::Deadline::new(b, d.into())),
                        None => body::boxed(b),
                    };
                    Ok((Response::from_parts(p, b), ep))
                }
                Err(e) => Err(e),
            };
        };
        drop(result);
        drop(guard);
        attempt += 1;
        cluster.stats.retries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(route = %route.name, endpoint = %ep.address, ?outcome, attempt, "retrying");
        tokio::time::sleep(pause).await;
        idx = next;
    }
}

/// How an upstream try ended, for its span: the HTTP status of an answer (`http`), also when its
/// gRPC status (on the span already) is not OK.
fn try_status<T>(
    outcome: TryOutcome,
    http: Option<u16>,
    result: &Result<T, ProxyError>,
) -> Result<u16, (&'static str, String)> {
    let message = || {
        result
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    match outcome {
        TryOutcome::Status(s) => Ok(s),
        TryOutcome::ConnectFailure => Err(("connect", message())),
        TryOutcome::Reset => Err(("protocol", message())),
        TryOutcome::Timeout => Err(("timeout", message())),
        // The HTTP status of the answer (200); the gRPC status is on the span as its own attribute.
        TryOutcome::Grpc(_) => Ok(http.unwrap_or(200)),
    }
}

/// An upstream response body; the endpoint counts the request in flight until the body is dropped.
struct UpstreamBody {
    inner: PooledBody,
    _guard: EndpointGuard,
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn upstream_path(route: &Route, uri: &Uri, params: &Params) -> UpstreamPath {
    match uri.path_and_query() {
        // `path?query` exactly as `rewrite_path` would write it without a rewrite.
        Some(pq) if route.path_rewrite.is_none() && pq.as_str().starts_with('/') => {
            UpstreamPath::Same(pq.clone())
        }
        _ => UpstreamPath::Text(rewrite_path(route, uri, params)),
    }
}

/// The path and query sent upstream after the route's rewrite.
fn rewrite_path(route: &Route, uri: &Uri, params: &Params) -> String {
    let path = uri.path();
    let new_path = match &route.path_rewrite {
        None => path.to_owned(),
        Some(PathRewrite::Replace(p)) => p.clone(),
        // Only whole segments are stripped: `/api` takes `/api/x` to `/x`, and leaves `/apix` alone.
        Some(PathRewrite::StripPrefix(prefix)) => match path.strip_prefix(prefix.as_str()) {
            Some(rest) if rest.starts_with('/') => rest.to_owned(),
            Some(rest) if rest.is_empty() || rest.starts_with(';') || prefix.ends_with('/') => {
                format!("/{rest}")
            }
            _ => path.to_owned(),
        },
        Some(PathRewrite::Template(t)) => fill_template(t, params),
    };
    match uri.query() {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    }
}

/// Replaces each `{name}` (or `{*name}`) of a template with its parameter, in one pass, so that a
/// value that itself looks like `{other}` is left as it is.
fn fill_template(t: &str, params: &Params) -> String {
    let mut out = String::with_capacity(t.len() + 16);
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = rest[open + 1..open + close].trim_start_matches('*');
        match params.iter().find(|(n, _)| &**n == name) {
            Some((_, v)) => out.push_str(v),
            None => out.push_str(&rest[open..=open + close]),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

fn cookie(h: &http::HeaderMap, name: &str) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
