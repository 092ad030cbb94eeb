//! The SDKs the binary carries, so that `gateway plugin new` makes a project that builds with nothing
//! but the binary, Rust or Go (the Rust SDK's own dependencies come from crates.io). These are the
//! files of `plugin-sdk/` (the Rust crate, with its packed WIT) and `plugin-sdk/go/` (the Go module,
//! without its tests and test fixture) as the binary was built; `tests/e2e/cli.rs` checks that the
//! lists name every such file.

macro_rules! files {
    ($dir:literal: $($f:literal),* $(,)?) => {
        &[$(($f, include_str!(concat!("../../../", $dir, $f)))),*]
    };
}

/// The Rust SDK crate (`gateway-plugin-sdk`): path in the crate, text.
pub static RUST: &[(&str, &str)] = files!("plugin-sdk/":
    "Cargo.toml",
    "build.rs",
    "README.md",
    "src/config.rs",
    "src/handles.rs",
    "src/host.rs",
    "src/lib.rs",
    "src/panic.rs",
    "src/rt.rs",
    "wit/world.wit",
);

/// The Go SDK module (`gateway/filter`): path in the module, text.
pub static GO: &[(&str, &str)] = files!("plugin-sdk/go/":
    "go.mod",
    "README.md",
    "export_wasip1.go",
    "filter.go",
    "config.go",
    "handles.go",
    "run.go",
    "clock/clock.go",
    "consumers/consumers.go",
    "facts/facts.go",
    "http/http.go",
    "internal/abi/calls.go",
    "internal/abi/errors.go",
    "internal/abi/gc_wasip1.go",
    "internal/abi/imports_native.go",
    "internal/abi/imports_wasip1.go",
    "internal/abi/layout.go",
    "internal/abi/memory.go",
    "internal/abi/memory_native.go",
    "internal/abi/memory_wasip1.go",
    "kv/kv.go",
    "log/log.go",
    "metrics/metrics.go",
    "random/random.go",
    "trace/trace.go",
);

/// The WIT world (`wit/world.wit`), for packaging Go filters into components.
pub const WIT: &str = include_str!("../../../wit/world.wit");
