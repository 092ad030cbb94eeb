//! The host side of the WIT imports: request and response handles, outbound HTTP, logs, metrics,
//! clock, randomness and request facts. Everything that is shared goes through [`crate::host`].

use super::bindings::gateway::filter::{clock, facts, http_client, log, metrics, random, types};
use super::state::{CompState, RequestRes, ResponseRes};
use crate::host::{
    callout_request, callout_timeout, edit_headers, header_name, header_value, plugin_log,
    set_path_with_query, status, CalloutError, HandleError, HeaderEdit, LogLevel, MetricKind,
};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};
use types::HostError;
use wasmtime::component::Resource;

/// Most bytes `random.bytes` returns in one call. Default: 65 536.
pub const MAX_RANDOM_BYTES: u32 = 65_536;

fn host_error(e: HandleError) -> HostError {
    match e {
        HandleError::WrongPhase(what) => {
            HostError::WrongPhase(format!("{what} is not possible in this phase"))
        }
        HandleError::Invalid(m) => HostError::Invalid(m),
    }
}

fn values(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// Every header as (name, value) pairs; values that are not UTF-8 are shown lossily.
pub(crate) fn pairs(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The header map of `pairs`; the first bad name or value is the error.
pub(crate) fn header_map(pairs: &[(String, String)]) -> Result<HeaderMap, HostError> {
    let mut h = HeaderMap::with_capacity(pairs.len());
    for (n, v) in pairs {
        let (n, v) = name_value(n, v)?;
        h.append(n, v);
    }
    Ok(h)
}

fn name_value(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), HostError> {
    let n = header_name(name.as_bytes()).map_err(host_error)?;
    let v = header_value(name.as_bytes(), value.as_bytes()).map_err(host_error)?;
    Ok((n, v))
}

/// What a header call changes, once its name and value are checked.
enum Edit<'a> {
    Set(&'a str, &'a str),
    Append(&'a str, &'a str),
    Remove(&'a str),
}

/// Whether `name` is a header name as `HeaderName::from_bytes` would keep it: lower-case token
/// characters, at least one and at most 64. Such a name needs no parsing to be compared with the
/// names of a `HeaderMap` (all lower case); any other name goes through `header_name`, which
/// lowercases or refuses it.
fn plain_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

fn edit(h: &mut HeaderMap, e: Edit<'_>) -> Result<(), HostError> {
    match e {
        // Removing is the most frequent edit, most often of a header that is not there (auth
        // plugins remove the consumer headers a client may have sent): a look along the names
        // (compared by length first) finds that without parsing the name, which costs more.
        Edit::Remove(n) if plain_name(n) => {
            if h.keys().any(|k| k.as_str() == n) {
                h.remove(n);
            }
        }
        Edit::Set(n, v) => {
            let (n, v) = name_value(n, v)?;
            edit_headers(h, HeaderEdit::Set(n, v));
        }
        Edit::Append(n, v) => {
            let (n, v) = name_value(n, v)?;
            edit_headers(h, HeaderEdit::Append(n, v));
        }
        Edit::Remove(n) => {
            let n = header_name(n.as_bytes()).map_err(host_error)?;
            edit_headers(h, HeaderEdit::Remove(&n));
        }
    }
    Ok(())
}

impl CompState {
    fn req_headers_mut(&mut self) -> Result<&mut HeaderMap, HostError> {
        self.data
            .request_head_mut("changing request headers")
            .map(|r| &mut r.headers)
            .map_err(host_error)
    }

    fn resp_headers_mut(&mut self) -> Result<&mut HeaderMap, HostError> {
        self.data
            .response_head_mut("changing response headers")
            .map(|r| &mut r.headers)
            .map_err(host_error)
    }

    fn req_uri(&self) -> Option<&http::Uri> {
        self.data.req.as_ref().map(|r| &r.uri)
    }
}

impl types::Host for CompState {}

impl types::HostRequest for CompState {
    fn method(&mut self, _: Resource<RequestRes>) -> String {
        self.data
            .req
            .as_ref()
            .map(|r| r.method.to_string())
            .unwrap_or_default()
    }

    fn path(&mut self, _: Resource<RequestRes>) -> String {
        self.req_uri()
            .map(|u| u.path().to_string())
            .unwrap_or_default()
    }

    fn query(&mut self, _: Resource<RequestRes>) -> Option<String> {
        self.req_uri().and_then(|u| u.query().map(str::to_string))
    }

    fn set_path_with_query(
        &mut self,
        _: Resource<RequestRes>,
        pq: String,
    ) -> Result<(), HostError> {
        let req = self
            .data
            .request_head_mut("changing the path")
            .map_err(host_error)?;
        set_path_with_query(req, pq.as_bytes(), false).map_err(host_error)
    }

    fn header(&mut self, _: Resource<RequestRes>, name: String) -> Vec<String> {
        self.data
            .req
            .as_ref()
            .map(|r| values(&r.headers, &name))
            .unwrap_or_default()
    }

    fn headers(&mut self, _: Resource<RequestRes>) -> Vec<(String, String)> {
        self.data
            .req
            .as_ref()
            .map(|r| pairs(&r.headers))
            .unwrap_or_default()
    }

    fn set_header(
        &mut self,
        _: Resource<RequestRes>,
        name: String,
        value: String,
    ) -> Result<(), HostError> {
        edit(self.req_headers_mut()?, Edit::Set(&name, &value))
    }

    fn append_header(
        &mut self,
        _: Resource<RequestRes>,
        name: String,
        value: String,
    ) -> Result<(), HostError> {
        edit(self.req_headers_mut()?, Edit::Append(&name, &value))
    }

    fn remove_header(&mut self, _: Resource<RequestRes>, name: String) -> Result<(), HostError> {
        edit(self.req_headers_mut()?, Edit::Remove(&name))
    }

    fn body(&mut self, _: Resource<RequestRes>) -> Option<Vec<u8>> {
        self.data.body_mut(false).map(|b| b.to_vec())
    }

    fn set_body(&mut self, _: Resource<RequestRes>, body: Vec<u8>) -> Result<(), HostError> {
        self.data
            .replace_body(false, Bytes::from(body))
            .map_err(host_error)
    }

    fn set_method(&mut self, _: Resource<RequestRes>, method: String) -> Result<(), HostError> {
        let req = self
            .data
            .request_head_mut("changing the method")
            .map_err(host_error)?;
        let m = http::Method::from_bytes(method.as_bytes())
            .map_err(|_| HostError::Invalid(format!("`{method}` is not an HTTP method token")))?;
        // A CONNECT with a path is no request an upstream can take, and the gateway's client would
        // read a 2xx to it as a tunnel.
        if m == http::Method::CONNECT {
            return Err(HostError::Invalid(
                "CONNECT cannot be set: the gateway does not forward it".into(),
            ));
        }
        req.method = m;
        Ok(())
    }

    fn path_params(&mut self, _: Resource<RequestRes>) -> Vec<(String, String)> {
        self.info
            .as_ref()
            .map(|i| {
                i.params
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn drop(&mut self, _: Resource<RequestRes>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl types::HostResponse for CompState {
    fn status(&mut self, _: Resource<ResponseRes>) -> u16 {
        self.data
            .resp
            .as_ref()
            .map(|r| r.status.as_u16())
            .unwrap_or(0)
    }

    fn set_status(&mut self, _: Resource<ResponseRes>, code: u16) -> Result<(), HostError> {
        let resp = self
            .data
            .response_head_mut("changing the status")
            .map_err(host_error)?;
        resp.status = status(code).map_err(host_error)?;
        Ok(())
    }

    fn header(&mut self, _: Resource<ResponseRes>, name: String) -> Vec<String> {
        self.data
            .resp
            .as_ref()
            .map(|r| values(&r.headers, &name))
            .unwrap_or_default()
    }

    fn headers(&mut self, _: Resource<ResponseRes>) -> Vec<(String, String)> {
        self.data
            .resp
            .as_ref()
            .map(|r| pairs(&r.headers))
            .unwrap_or_default()
    }

    fn set_header(
        &mut self,
        _: Resource<ResponseRes>,
        name: String,
        value: String,
    ) -> Result<(), HostError> {
        edit(self.resp_headers_mut()?, Edit::Set(&name, &value))
    }

    fn append_header(
        &mut self,
        _: Resource<ResponseRes>,
        name: String,
        value: String,
    ) -> Result<(), HostError> {
        edit(self.resp_headers_mut()?, Edit::Append(&name, &value))
    }

    fn remove_header(&mut self, _: Resource<ResponseRes>, name: String) -> Result<(), HostError> {
        edit(self.resp_headers_mut()?, Edit::Remove(&name))
    }

    fn body(&mut self, _: Resource<ResponseRes>) -> Option<Vec<u8>> {
        self.data.body_mut(true).map(|b| b.to_vec())
    }

    fn set_body(&mut self, _: Resource<ResponseRes>, body: Vec<u8>) -> Result<(), HostError> {
        self.data
            .replace_body(true, Bytes::from(body))
            .map_err(host_error)
    }

    fn drop(&mut self, _: Resource<ResponseRes>) -> wasmtime::Result<()> {
        Ok(())
    }
}

fn http_error(e: CalloutError) -> http_client::HttpError {
    use http_client::HttpError;
    match e {
        e @ CalloutError::NotGranted(_) => HttpError::Denied(e.to_string()),
        CalloutError::UnknownUpstream(u) => HttpError::Denied(format!("no upstream `{u}`")),
        CalloutError::BadRequest(m) => HttpError::BadRequest(m),
        CalloutError::Timeout => HttpError::Timeout,
        e @ CalloutError::Unsupported(_) => HttpError::Failed(e.to_string()),
        CalloutError::Failed(m) => HttpError::Failed(m),
    }
}

/// The most requests one `send-all` takes (WIT 0.1.3).
pub const MAX_SEND_ALL: usize = 32;

/// One outbound request of `send` or `send-all`: checked against the plugin's grants, sent, and
/// waited for within its own timeout.
async fn send_one(
    ctx: &crate::wasm::context::PluginCtx,
    trace: Option<&crate::telemetry::RequestTrace>,
    upstream: &str,
    request: http_client::OutgoingRequest,
) -> Result<http_client::IncomingResponse, http_client::HttpError> {
    ctx.callout_allowed(upstream).map_err(http_error)?;
    let headers = header_map(&request.headers).map_err(|e| match e {
        HostError::Invalid(m) => http_client::HttpError::BadRequest(m),
        other => http_client::HttpError::BadRequest(format!("{other:?}")),
    })?;
    let mut req = callout_request(
        request.method.as_bytes(),
        request.path_with_query.as_bytes(),
        None,
        headers,
        Bytes::from(request.body),
    )
    .map_err(http_error)?;
    if let Some(t) = trace {
        t.inject_callout(req.headers_mut());
    }
    let timeout = callout_timeout(u64::from(request.timeout_ms));
    let resp = ctx
        .host
        .callout(upstream, req, timeout)
        .await
        .map_err(http_error)?;
    let (parts, body) = resp.into_parts();
    Ok(http_client::IncomingResponse {
        status: parts.status.as_u16(),
        headers: pairs(&parts.headers),
        body: body.to_vec(),
    })
}

impl http_client::Host for CompState {
    async fn send(
        &mut self,
        upstream: String,
        request: http_client::OutgoingRequest,
    ) -> Result<http_client::IncomingResponse, http_client::HttpError> {
        let ctx = self.ctx.clone();
        let trace = self.info.as_ref().and_then(|i| i.trace.clone());
        let started = Instant::now();
        let result = send_one(&ctx, trace.as_ref(), &upstream, request).await;
        self.waited += started.elapsed();
        result
    }

    async fn send_all(
        &mut self,
        requests: Vec<(String, http_client::OutgoingRequest)>,
    ) -> Vec<Result<http_client::IncomingResponse, http_client::HttpError>> {
        if requests.len() > MAX_SEND_ALL {
            let why = format!(
                "{} requests in one send-all; at most {MAX_SEND_ALL}",
                requests.len()
            );
            return requests
                .iter()
                .map(|_| Err(http_client::HttpError::BadRequest(why.clone())))
                .collect();
        }
        let ctx = self.ctx.clone();
        let trace = self.info.as_ref().and_then(|i| i.trace.clone());
        let started = Instant::now();
        // Every request is polled by this one future (no task per request): they wait together,
        // and all of them end with the call, whatever happens to it.
        let results =
            futures_util::future::join_all(requests.into_iter().map(|(upstream, request)| {
                let (ctx, trace) = (&ctx, trace.as_ref());
                async move { send_one(ctx, trace, &upstream, request).await }
            }))
            .await;
        self.waited += started.elapsed();
        results
    }
}

fn level(l: log::Level) -> LogLevel {
    match l {
        log::Level::Trace => LogLevel::Trace,
        log::Level::Debug => LogLevel::Debug,
        log::Level::Info => LogLevel::Info,
        log::Level::Warn => LogLevel::Warn,
        log::Level::Error => LogLevel::Error,
    }
}

impl log::Host for CompState {
    fn log(&mut self, l: log::Level, message: String) {
        plugin_log(&self.ctx.name, level(l), &message);
    }

    fn enabled(&mut self, l: log::Level) -> bool {
        level(l) >= crate::host::log_level()
    }
}

impl CompState {
    fn metric(
        &self,
        kind: MetricKind,
        name: &str,
        op: impl FnOnce(&crate::host::Metrics, &str, u32) -> Result<(), crate::host::MetricError>,
    ) -> Result<(), HostError> {
        let plugin = &self.ctx.name;
        let m = &self.ctx.host.metrics;
        let id = m
            .define(plugin, kind, name)
            .map_err(|e| HostError::Invalid(format!("metric `{name}`: {e}")))?;
        op(m, plugin, id).map_err(|e| HostError::Invalid(format!("metric `{name}`: {e}")))
    }
}

impl metrics::Host for CompState {
    fn counter_add(&mut self, name: String, delta: u64) -> Result<(), HostError> {
        let delta = i64::try_from(delta).unwrap_or(i64::MAX);
        self.metric(MetricKind::Counter, &name, |m, p, id| {
            m.increment(p, id, delta)
        })
    }

    fn gauge_set(&mut self, name: String, value: u64) -> Result<(), HostError> {
        self.metric(MetricKind::Gauge, &name, |m, p, id| m.record(p, id, value))
    }

    fn gauge_add(&mut self, name: String, delta: i64) -> Result<(), HostError> {
        self.metric(MetricKind::Gauge, &name, |m, p, id| {
            m.increment(p, id, delta)
        })
    }

    fn histogram_record(&mut self, name: String, value: u64) -> Result<(), HostError> {
        self.metric(MetricKind::Histogram, &name, |m, p, id| {
            m.record(p, id, value)
        })
    }
}

impl clock::Host for CompState {
    fn now_ms(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn monotonic_ns(&mut self) -> u64 {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

impl random::Host for CompState {
    fn bytes(&mut self, len: u32) -> Vec<u8> {
        use rand::RngCore;
        let mut v = vec![0; len.min(MAX_RANDOM_BYTES) as usize];
        rand::rng().fill_bytes(&mut v);
        v
    }

    fn next_u64(&mut self) -> u64 {
        rand::random()
    }
}

impl facts::Host for CompState {
    fn get(&mut self) -> facts::RequestFacts {
        let Some(i) = self.info.as_ref() else {
            return facts::RequestFacts {
                route: String::new(),
                upstream: None,
                client_address: String::new(),
                local_address: String::new(),
                scheme: String::new(),
                protocol: String::new(),
                request_id: 0,
                tls: None,
            };
        };
        facts::RequestFacts {
            route: i.route.to_string(),
            upstream: i.upstream.as_ref().map(|u| u.to_string()),
            client_address: i.peer.to_string(),
            local_address: i.local.to_string(),
            scheme: i.scheme.to_string(),
            protocol: i.protocol.to_string(),
            request_id: i.id,
            tls: i.tls.as_ref().map(|t| facts::TlsFacts {
                server_name: t.server_name.clone(),
                alpn: t.alpn.clone(),
                version: t.version.to_string(),
                client_certificate: t.peer_cert.as_ref().map(|c| facts::ClientCertificate {
                    subject: c.subject.clone(),
                    sans: c.sans.clone(),
                }),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_the_header_names_kept_as_they_are() {
        let mut names: Vec<String> = (0..=255u8).map(|b| (b as char).to_string()).collect();
        names.extend(
            [
                "x-consumer-username",
                "Cookie",
                "a b",
                "",
                "x-\u{e9}",
                "ok~`|^",
            ]
            .map(String::from),
        );
        names.push("a".repeat(64));
        names.push("a".repeat(65));
        for n in &names {
            let parsed = HeaderName::from_bytes(n.as_bytes()).ok();
            if plain_name(n) {
                assert_eq!(
                    parsed.as_ref().map(HeaderName::as_str),
                    Some(n.as_str()),
                    "{n:?}"
                );
            } else {
                assert!(
                    parsed.is_none_or(|p| p.as_str() != n || n.len() > 64),
                    "{n:?}"
                );
            }
        }
        let mut h = HeaderMap::new();
        h.append("x-consumer-username", HeaderValue::from_static("a"));
        h.append("x-consumer-username", HeaderValue::from_static("b"));
        h.append("cookie", HeaderValue::from_static("c=1"));
        edit(&mut h, Edit::Remove("x-consumer-username")).unwrap();
        edit(&mut h, Edit::Remove("COOKIE")).unwrap();
        assert!(h.is_empty());
        assert!(edit(&mut h, Edit::Remove("a b")).is_err());
    }
}
