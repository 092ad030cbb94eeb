//! Component plugins (the gateway's WIT world, written with `plugin-sdk`) through the real gateway:
//! every host import of the world reached from requests over real sockets, capabilities and their
//! typed denials, bodies whole and in chunks, logs on the process's stderr, metrics on the admin API,
//! hostile components failing by each route's policy, and requests in flight on one filter never
//! seeing each other's data, in both instance modes.

mod capabilities;
mod consumers;
mod figures;
mod handles;
mod isolation;
mod phases;
mod redis;
mod whole_body;

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn fixtures() -> &'static xtask::ComponentFixtures {
    xtask::component_fixtures().unwrap_or_else(|e| panic!("{e}"))
}

fn kitchen() -> &'static Path {
    &fixtures().kitchen
}

/// A `plugins:` entry; `extra` is indented YAML lines (capabilities, instance mode, limits).
fn plugin(name: &str, wasm: &Path, extra: &str) -> Plugin {
    Plugin::new(name, wasm).lines(extra)
}

/// A route `/<name>/...` to the upstream `up` (the prefix `/<name>` stripped) with one filter.
fn route(name: &str, plugin: &str, config: &str, filter_extra: &str) -> Route {
    Route::new(name)
        .prefix(&format!("/{name}/"))
        .strip_prefix(&format!("/{name}"))
        .upstream("up")
        .filter_with(plugin, config, filter_extra)
}

/// The backends of a test: `up` serves the routes, `callee` is what plugins call out to.
struct Backends {
    up: MockUpstream,
    callee: MockUpstream,
    /// A port nothing listens on (the upstream `dead`).
    dead: u16,
}

impl Backends {
    async fn start() -> Backends {
        Backends {
            up: MockUpstream::start("up").await,
            callee: MockUpstream::start("callee").await,
            dead: free_port(),
        }
    }

    fn yaml(&self, plugins: &[Plugin], routes: &[Route]) -> String {
        let mut cfg = GatewayConfig::new()
            .upstream(Upstream::new("up").endpoint(self.up.addr))
            .upstream(Upstream::new("callee").endpoint(self.callee.addr))
            .upstream(
                Upstream::new("dead")
                    .endpoint(format!("127.0.0.1:{}", self.dead))
                    .lines("    health: {passive: {consecutive_failures: 0}}\n"),
            );
        for p in plugins {
            cfg = cfg.plugin(p.clone());
        }
        for r in routes {
            cfg = cfg.route(r.clone());
        }
        cfg.yaml()
    }

    async fn gateway(&self, plugins: &[Plugin], routes: &[Route]) -> TestGateway {
        TestGateway::start(&self.yaml(plugins, routes)).await
    }
}

/// GETs `path` with `x-test: test` and `extra` headers; returns the response and the headers the
/// upstream `up` saw (the filter's results).
async fn run(
    gw: &TestGateway,
    b: &Backends,
    path: &str,
    test: &str,
    extra: &[(&str, &str)],
) -> (Resp, http::HeaderMap) {
    let mut headers = vec![("x-test", test)];
    headers.extend_from_slice(extra);
    let hits = b.up.hits();
    let resp = get_with(&gw.url(path), &headers).await;
    assert_eq!(resp.0, 200, "{test}: {}", resp.2);
    assert_eq!(
        b.up.hits(),
        hits + 1,
        "{test}: the request reached the upstream"
    );
    (resp, b.up.last().headers)
}
