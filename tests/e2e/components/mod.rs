//! Component plugins (the gateway's WIT world, written with `plugin-sdk`) through the real gateway:
//! every host import of the world reached from requests over real sockets, capabilities and their
//! typed denials, bodies whole and in chunks, logs on the process's stderr, metrics on the admin API,
//! hostile components failing by each route's policy, and requests in flight on one filter never
//! seeing each other's data, in both instance modes.

mod capabilities;
mod handles;
mod isolation;
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
fn plugin(name: &str, wasm: &Path, extra: &str) -> String {
    format!("  - name: {name}\n    path: {}\n{extra}", wasm.display())
}

/// A route `/<name>/...` to the upstream `up` (the prefix `/<name>` stripped) with one filter.
fn route(name: &str, plugin: &str, config: &str, filter_extra: &str) -> String {
    format!(
        "  - name: {name}\n    match: {{path: {{prefix: /{name}/}}}}\n    rewrite: {{strip_prefix: /{name}}}\n    upstream: up\n    filters: [{{plugin: {plugin}, config: \"{config}\"{filter_extra}}}]\n"
    )
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

    fn yaml(&self, plugins: &[String], routes: &[String]) -> String {
        format!(
            "plugins:\n{}upstreams:\n  - name: up\n    endpoints: [\"{}\"]\n  - name: callee\n    endpoints: [\"{}\"]\n  - name: dead\n    endpoints: [\"127.0.0.1:{}\"]\n    health: {{passive: {{consecutive_failures: 0}}}}\nroutes:\n{}",
            plugins.concat(),
            self.up.addr,
            self.callee.addr,
            self.dead,
            routes.concat()
        )
    }

    async fn gateway(&self, plugins: &[String], routes: &[String]) -> TestGateway {
        TestGateway::start(&self.yaml(plugins, routes)).await
    }
}

/// A header's value as a string ("" when absent).
fn hv(h: &http::HeaderMap, name: &str) -> String {
    h.get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
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
