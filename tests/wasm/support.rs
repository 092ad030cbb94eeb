//! Test support: builds the fixture plugins from source once per test process, a mock upstream on
//! 127.0.0.1, an `Upstreams` over it, and helpers to drive a filter's phases.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use gateway::config::{self, FailurePolicy, PluginLimits};
use gateway::filter::{Filter, FilterCtx, FilterError, RequestHead, RequestInfo, Verdict};
use gateway::host::{CalloutError, HostCore, Upstreams};
use gateway::wasm::{EngineOptions, LoadedPlugin, Plugins, WasmEngine};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use xtask::Fixtures;

/// The fixture plugins, built from source once per test process (see `xtask::proxy_wasm_fixtures`).
pub fn fixtures() -> &'static Fixtures {
    xtask::proxy_wasm_fixtures().unwrap_or_else(|e| panic!("{e}"))
}

/// The process's plugin loader (one engine, as in the gateway).
pub fn plugins() -> &'static Plugins {
    static PLUGINS: OnceLock<Plugins> = OnceLock::new();
    PLUGINS.get_or_init(|| {
        Plugins::new(
            WasmEngine::new(EngineOptions {
                max_instances: 200,
                ..Default::default()
            })
            .unwrap(),
        )
    })
}

/// A mock upstream: `/auth` answers 200 `allowed` (403 `forbidden` when the body is `deny`) and echoes
/// `x-from`; `/slow` answers after 3s; anything else 200 `ok <path>`.
pub async fn mock_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let path = req.uri().path().to_string();
                    let from = req.headers().get("x-from").cloned();
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    if path == "/slow" {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                    }
                    let (status, text) = match path.as_str() {
                        "/auth" if &body[..] == b"deny" => (403, "forbidden".to_string()),
                        "/auth" => (200, "allowed".to_string()),
                        p => (200, format!("ok {p}")),
                    };
                    let mut resp = hyper::Response::builder().status(status);
                    if let Some(f) = from {
                        resp = resp.header("x-echo-from", f);
                    }
                    Ok::<_, std::convert::Infallible>(
                        resp.body(Full::new(Bytes::from(text))).unwrap(),
                    )
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    addr
}

/// Callouts to the one upstream `mock`, over a fresh HTTP/1 connection each.
pub struct TestUpstreams {
    pub mock: SocketAddr,
}

impl Upstreams for TestUpstreams {
    fn has(&self, upstream: &str) -> bool {
        upstream == "mock"
    }

    fn call(
        &self,
        upstream: &str,
        req: http::Request<Bytes>,
        _timeout: Duration,
    ) -> BoxFuture<'static, Result<http::Response<Bytes>, CalloutError>> {
        let addr = self.mock;
        let known = upstream == "mock";
        let name = upstream.to_string();
        Box::pin(async move {
            if !known {
                return Err(CalloutError::UnknownUpstream(name));
            }
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| CalloutError::Failed(e.to_string()))?;
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| CalloutError::Failed(e.to_string()))?;
            tokio::spawn(conn);
            let req = req.map(Full::new);
            let resp = send
                .send_request(req)
                .await
                .map_err(|e| CalloutError::Failed(e.to_string()))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| CalloutError::Failed(e.to_string()))?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

/// A host core whose `mock` upstream is a fresh mock server.
pub async fn host() -> Arc<HostCore> {
    let mock = mock_upstream().await;
    HostCore::new(Arc::new(TestUpstreams { mock }))
}

/// A plugin config.
pub fn plugin_cfg(name: &str, path: &Path) -> config::Plugin {
    config::Plugin {
        name: name.into(),
        path: Some(path.into()),
        url: None,
        sha256: None,
        ca: None,
        abi: None,
        limits: PluginLimits::default(),
        vm_config: None,
        capabilities: Default::default(),
        instance_mode: Default::default(),
    }
}

/// Loads a plugin.
pub async fn load(cfg: config::Plugin, host: Arc<HostCore>) -> Arc<LoadedPlugin> {
    plugins().load(&cfg, Path::new("/"), host).await.unwrap()
}

/// A filter for `route` with `config`.
pub async fn filter(plugin: &LoadedPlugin, route: &str, config: &str) -> Arc<dyn Filter> {
    plugin
        .filter(
            route,
            Bytes::from(config.to_string()),
            FailurePolicy::Closed,
        )
        .await
        .unwrap()
}

/// Request facts.
pub fn info() -> RequestInfo {
    RequestInfo {
        route: Arc::from("r"),
        upstream: Some(Arc::from("backend")),
        peer: "10.1.2.3:4567".parse().unwrap(),
        local: "127.0.0.1:8080".parse().unwrap(),
        scheme: "http",
        protocol: "1.1",
        id: 42,
        tls: None,
    }
}

/// A GET of `/path?q=1` for host `example.com` with extra headers.
pub fn request(headers: &[(&str, &str)]) -> RequestHead {
    let mut h = http::HeaderMap::new();
    h.insert("host", "example.com".parse().unwrap());
    for (k, v) in headers {
        h.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    RequestHead {
        method: http::Method::GET,
        uri: "/path?q=1".parse().unwrap(),
        headers: h,
    }
}

/// Runs the request-headers phase of a new context.
pub async fn request_headers(
    f: &Arc<dyn Filter>,
    headers: &[(&str, &str)],
    end_of_stream: bool,
) -> (
    Result<Verdict, FilterError>,
    RequestHead,
    Box<dyn FilterCtx>,
) {
    let mut ctx = f.new_ctx(&info()).unwrap();
    let mut req = request(headers);
    let v = ctx.on_request_headers(&mut req, end_of_stream).await;
    (v, req, ctx)
}

/// A header's value as a string ("" when absent).
pub fn hv(h: &http::HeaderMap, name: &str) -> String {
    h.get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Waits up to 5s for `check` to hold.
pub async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// A shared-data value of the Proxy-Wasm namespace as a string.
pub fn shared(host: &HostCore, key: &str) -> String {
    host.shared
        .get("", key)
        .map(|(v, _)| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}
