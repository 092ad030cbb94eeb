//! Hot reload: every trigger (file change, SIGHUP, `POST /reload`, `PUT /config`), failed reloads that
//! change nothing, listener changes refused, cluster state kept, zero failed requests while reloading
//! under traffic, and old runtimes freed (live count and RSS over 1 000 reloads).

mod failures;
mod load;
mod plugins;
mod state;
mod triggers;

use crate::harness::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn admin_metric(admin: SocketAddr, name: &str) -> Option<f64> {
    metric(&get(&format!("http://{admin}/metrics")).await.2, name)
}

/// One route `r` that answers `body` itself.
fn one_route(body: &str) -> String {
    GatewayConfig::new()
        .route(Route::new("r").respond(body))
        .yaml()
}

/// The two builds of the versioned fixture filter (`tests/fixtures/versioned`): each answers every
/// request itself with `x-plugin-version: v1|v2` and the body `<version> <route config> <n>\n` x 50,
/// `n` counting the requests its instance served. Built once per process (into the target dir of the
/// component fixtures, whose dependencies it shares).
pub fn versioned_builds() -> &'static (std::path::PathBuf, std::path::PathBuf) {
    static BUILT: std::sync::OnceLock<(std::path::PathBuf, std::path::PathBuf)> =
        std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let t = xtask::build_wasm(
            "tests/fixtures/versioned",
            &["wasm32-wasip2"],
            "fixtures-components",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let dir = t.join("wasm32-wasip2/release");
        (dir.join("versioned_v1.wasm"), dir.join("versioned_v2.wasm"))
    })
}

/// The body a versioned build answers with.
pub fn versioned_body(version: &str, label: &str, n: u64) -> String {
    format!("{version} {label} {n}\n").repeat(50)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
