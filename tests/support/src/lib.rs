//! What the gateway's test binaries share (`tests/e2e`, `tests/wasm`): one mock upstream that counts
//! hits ([`MockUpstream`]), named mock upstreams for plugin callouts reached through the gateway's own
//! callout client ([`MockUpstreams`]), one [`eventually`], and one config builder ([`GatewayConfig`])
//! that writes the YAML a user would write.
//!
//! The gateway dev-depends on this crate; this crate depends on the gateway, never the other way, so
//! the shipped `gateway plugin test` keeps its own fixture answers and uses nothing from here.

pub mod bookstore;
pub mod config;
pub mod grpc;
pub mod mock;
pub mod redis;
pub mod upstreams;

pub use config::{GatewayConfig, Plugin, Route, Upstream};
pub use grpc::{GrpcServer, SeenCall};
pub use mock::{MockUpstream, Seen};
pub use redis::RedisServer;
pub use upstreams::MockUpstreams;

use std::path::PathBuf;
use std::time::Duration;

/// Checks `check` every 20 ms until it holds (true) or `within` passes (false). `check` is an async
/// closure (`async || ...`), or a closure returning a future.
pub async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free TCP port on 127.0.0.1 (for configs of a gateway started as a separate process, or an
/// endpoint nothing listens on).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory under the system's temporary directory, named after the process and `tag`.
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("gateway-test-{}-{tag}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The hostile fixture component's source file as a panic's location names it (`FILE:LINE:COL`):
/// the build of it that is called on a fiber (`tests/fixtures/components/hostile/fiber`, feature
/// `waits`, `xtask::ComponentFixtures::hostile_fiber`) compiles the same file from its own package.
pub fn hostile_component_source(fiber: bool) -> &'static str {
    match fiber {
        true => "hostile/fiber/../src/lib.rs",
        false => "hostile/src/lib.rs",
    }
}

/// A header's value as a string ("" when absent).
pub fn hv(h: &http::HeaderMap, name: &str) -> String {
    h.get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// All values of a header in order, as strings (`?` for one that is not text).
pub fn values(h: &http::HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("?").to_owned())
        .collect()
}

/// The value of one series in Prometheus text: the line that starts with `series` (labels included),
/// e.g. `gateway_upstream_requests_total{upstream="up"}`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The calls the chain made into `plugin`'s stage on `route` in `phase`
/// (`gateway_plugin_call_duration_seconds_count`), in Prometheus text `m`.
pub fn plugin_calls(m: &str, plugin: &str, route: &str, phase: &str) -> Option<f64> {
    metric(
        m,
        &format!(
            "gateway_plugin_call_duration_seconds_count{{plugin=\"{plugin}\",route=\"{route}\",phase=\"{phase}\"}}"
        ),
    )
}
