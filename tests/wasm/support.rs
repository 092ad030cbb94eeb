//! Test support for driving filters without a gateway: the fixture plugins built from source once per
//! test process, a host core whose upstream `mock` is a mock server, and helpers to drive a filter's
//! phases. The mock upstream, `eventually` and the config builder come from the support crate shared
//! with `tests/e2e`.

use bytes::Bytes;
use gateway::config::{self, FailurePolicy};
use gateway::filter::{
    Filter, FilterCtx, FilterError, HeadSnapshot, RequestHead, RequestInfo, Verdict,
};
use gateway::host::HostCore;
use gateway::wasm::{EngineOptions, LoadedPlugin, Plugins, WasmEngine};
use gateway_test_support::{MockUpstreams, Plugin};
use std::path::Path;
use std::sync::{Arc, OnceLock};

pub use gateway_test_support::{eventually, hv};

/// How long these tests wait for something to happen (`eventually(WAIT, ..)`).
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(5);

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

/// A host core whose one upstream, `mock`, is a fresh [`MockUpstream`](gateway_test_support::MockUpstream):
/// `/auth` answers `allowed` (403 `forbidden` to the body `deny`), `/slow` answers after 3 s, and
/// `x-from` comes back as `x-echo-from`.
pub async fn host() -> Arc<HostCore> {
    HostCore::new(Arc::new(MockUpstreams::start(&["mock"]).await))
}

/// A plugin config, as the gateway parses a `plugins:` entry with only a name and a path.
pub fn plugin_cfg(name: &str, path: &Path) -> config::Plugin {
    Plugin::new(name, path).config()
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

/// Request facts (shared by a request's stages).
pub fn info() -> Arc<RequestInfo> {
    Arc::new(RequestInfo {
        route: Arc::from("r"),
        upstream: Some(Arc::from("backend")),
        peer: "10.1.2.3:4567".parse().unwrap(),
        local: "127.0.0.1:8080".parse().unwrap(),
        scheme: "http",
        protocol: "1.1",
        id: 42,
        connection: 7,
        tls: None,
        timeout: std::time::Duration::from_secs(2),
        identity: None,
        params: Vec::new(),
        trace: None,
    })
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

/// Runs the request-headers phase of a new context, then gives it the head as the phase left it,
/// as the chain does.
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
    ctx.request_headers_left(&mut HeadSnapshot::new(&req));
    (v, req, ctx)
}

/// A shared-data value of the Proxy-Wasm namespace as a string.
pub fn shared(host: &HostCore, key: &str) -> String {
    host.shared
        .get("", key)
        .map(|(v, _)| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}
