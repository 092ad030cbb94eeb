//! Builds the Wasm plugins that live outside the main workspace (they target wasm32), for the demo
//! (`cargo xtask demo`) and for the tests (which call these functions).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

pub mod go;
pub mod guests;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the repository root")
        .to_path_buf()
}

/// Builds the cargo workspace at `dir` (relative to the root) in release mode for `targets`, into
/// `target/<out>`; returns that target directory. Builds of one process are serialized.
pub fn build_wasm(dir: &str, targets: &[&str], out: &str) -> Result<PathBuf, String> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let root = repo_root();
    let target_dir = root.join("target").join(out);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root.join(dir)).args(["build", "--release"]);
    for t in targets {
        cmd.args(["--target", t]);
    }
    let status = cmd
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .map_err(|e| format!("cannot run cargo for {dir}: {e}"))?;
    if !status.success() {
        return Err(format!("building the plugins in {dir} failed ({status})"));
    }
    Ok(target_dir)
}

/// Runs the first-party plugins' own tests (`plugins/`, their `#[cfg(test)]` units: config parsing,
/// crypto, policies) natively with `cargo test`, and returns cargo's output (stdout and stderr).
pub fn plugins_unit_tests() -> Result<String, String> {
    let root = repo_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root.join("plugins"))
        .args(["test", "--workspace"])
        .env(
            "CARGO_TARGET_DIR",
            root.join("target").join("plugins-native"),
        )
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .map_err(|e| format!("cannot run cargo test in plugins/: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.success() {
        true => Ok(text),
        false => Err(format!(
            "cargo test in plugins/ failed ({}):
{text}",
            out.status
        )),
    }
}

/// The example plugins (`examples/proxy-wasm-filter`), built once per process.
pub fn examples() -> Result<&'static Examples, String> {
    static BUILT: OnceLock<Result<Examples, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let t = build_wasm("examples/proxy-wasm-filter", &["wasm32-wasip1"], "examples")?;
            Ok(Examples {
                proxy_wasm_demo: t.join("wasm32-wasip1/release/proxy_wasm_demo.wasm"),
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Paths of the built example plugins.
#[derive(Debug)]
pub struct Examples {
    /// The quickstart's Proxy-Wasm filter.
    pub proxy_wasm_demo: PathBuf,
}

/// The Proxy-Wasm test fixtures (`tests/fixtures/proxy-wasm`), built once per process for
/// wasm32-wasip1 and wasm32-unknown-unknown.
pub fn proxy_wasm_fixtures() -> Result<&'static Fixtures, String> {
    static BUILT: OnceLock<Result<Fixtures, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let t = build_wasm(
                "tests/fixtures/proxy-wasm",
                &["wasm32-wasip1", "wasm32-unknown-unknown"],
                "fixtures",
            )?;
            Ok(Fixtures {
                kitchen: t.join("wasm32-wasip1/release/kitchen_sink.wasm"),
                kitchen_unknown: t.join("wasm32-unknown-unknown/release/kitchen_sink.wasm"),
                hostile: t.join("wasm32-wasip1/release/hostile.wasm"),
                grpc_authz: t.join("wasm32-wasip1/release/grpc_authz.wasm"),
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Paths of the built fixture plugins.
#[derive(Debug)]
pub struct Fixtures {
    /// Every host function and phase, driven by the `x-test` request header (wasm32-wasip1).
    pub kitchen: PathBuf,
    /// The same for wasm32-unknown-unknown.
    pub kitchen_unknown: PathBuf,
    /// Trap, loop, memory hog, recursion, bad pointers, CR/LF headers (`x-hostile` header).
    pub hostile: PathBuf,
    /// An ext_authz-style filter that authorizes through a gRPC service, and drives gRPC streams
    /// (`x-grpc-test` header).
    pub grpc_authz: PathBuf,
}

/// The component test fixtures (`tests/fixtures/components`, written with `plugin-sdk`), built once
/// per process for wasm32-wasip2, which makes components directly.
pub fn component_fixtures() -> Result<&'static ComponentFixtures, String> {
    static BUILT: OnceLock<Result<ComponentFixtures, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let t = build_wasm(
                "tests/fixtures/components",
                &["wasm32-wasip2"],
                "fixtures-components",
            )?;
            Ok(ComponentFixtures {
                kitchen: t.join("wasm32-wasip2/release/kitchen_sink_component.wasm"),
                hostile: t.join("wasm32-wasip2/release/hostile_component.wasm"),
                hostile_fiber: t.join("wasm32-wasip2/release/hostile_fiber_component.wasm"),
                world_0_1_0: t.join("wasm32-wasip2/release/world_0_1_0.wasm"),
                world_0_1_2: t.join("wasm32-wasip2/release/world_0_1_2.wasm"),
                body_only: t.join("wasm32-wasip2/release/body_only_component.wasm"),
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Paths of the built fixture components.
#[derive(Debug)]
pub struct ComponentFixtures {
    /// Every host import of the WIT world, driven by the `x-test` request header.
    pub kitchen: PathBuf,
    /// Trap, loop, memory hog, recursion, bad status (`x-hostile` header); `trap` config traps `init`.
    pub hostile: PathBuf,
    /// The same built with feature `waits`: it imports the key-value store, so it is called on a
    /// fiber where `hostile` is called without one; its mode `kv` answers `200 kv <outcome>`.
    pub hostile_fiber: PathBuf,
    /// Built against the world as it was at 0.1.0 (`tests/fixtures/wit-0.1.0`): sets `x-world`.
    pub world_0_1_0: PathBuf,
    /// Built against the world as it was at 0.1.2 (`tests/fixtures/wit-0.1.2`): sets `x-world` and
    /// uses `store` and `cache`.
    pub world_0_1_2: PathBuf,
    /// Body handlers only (WIT 0.1.5 declares no head phase): adds what it reads of the request
    /// and response heads to the bodies.
    pub body_only: PathBuf,
}

/// The Rust filter template (`examples/rust-filter`), built once per process for wasm32-wasip2.
pub fn rust_filter_example() -> Result<&'static PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let t = build_wasm("examples/rust-filter", &["wasm32-wasip2"], "examples-rust")?;
            Ok(t.join("wasm32-wasip2/release/rust_filter.wasm"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The example filters written with the Rust SDK (`examples/filters/rust`, one cargo workspace), built
/// once per process for wasm32-wasip2.
pub fn rust_example_filters() -> Result<&'static ExampleFilters, String> {
    static BUILT: OnceLock<Result<ExampleFilters, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let t = build_wasm(
                "examples/filters/rust",
                &["wasm32-wasip2"],
                "examples-filters-rust",
            )?;
            let release = t.join("wasm32-wasip2/release");
            Ok(ExampleFilters {
                header_rewrite: release.join("header_rewrite.wasm"),
                auth_callout: release.join("auth_callout.wasm"),
                json_redact: release.join("json_redact.wasm"),
                request_counter: release.join("request_counter.wasm"),
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The example function backend in Rust (`examples/functions/rust-hello`, a `wasi:http/proxy`
/// component), built once per process for wasm32-wasip2.
pub fn rust_hello_function() -> Result<&'static PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let t = build_wasm(
                "examples/functions/rust-hello",
                &["wasm32-wasip2"],
                "examples-functions",
            )?;
            Ok(t.join("wasm32-wasip2/release/rust_hello.wasm"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The test functions (`tests/fixtures/functions`: one `wasi:http/proxy` component whose behaviour
/// the request path picks: echo, streaming, traps, loops, memory hogs, outgoing requests, files),
/// built once per process for wasm32-wasip2.
pub fn function_fixtures() -> Result<&'static PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let t = build_wasm(
                "tests/fixtures/functions",
                &["wasm32-wasip2"],
                "fixtures-functions",
            )?;
            Ok(t.join("wasm32-wasip2/release/test_functions.wasm"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Paths of the four example filters of `examples/filters/README.md` (built from either SDK).
#[derive(Debug, Clone)]
pub struct ExampleFilters {
    /// Sets, adds and removes request and response headers.
    pub header_rewrite: PathBuf,
    /// Asks an auth upstream about every request.
    pub auth_callout: PathBuf,
    /// Redacts keys in JSON response bodies.
    pub json_redact: PathBuf,
    /// Counts requests in the shared store.
    pub request_counter: PathBuf,
}
