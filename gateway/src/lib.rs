//! An API gateway whose request and response filter chains are sandboxed WebAssembly plugins.
//!
//! The map: `config` (what the user writes) is compiled by `runtime` into routers, routes and upstream
//! clusters; `server` accepts connections and hands requests to `proxy`, which makes their target
//! canonical (`canonical`), routes them and runs them through an `exchange`: the route's filters
//! (`filter`, run by the Wasm host in `wasm`) around a backend (an `upstream` cluster, a fixed
//! response; `plugin_runner` plugs in a test fixture instead); `errors` turns failures into
//! responses in one place; `admin` and `metrics` show what happens; `reload` swaps in a new runtime
//! while traffic flows.
#![deny(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod body;
pub mod builder;
pub mod builtin;
pub mod canonical;
pub mod config;
pub mod conn;
pub mod consumers;
pub mod errors;
pub mod exchange;
pub mod filter;
pub mod framing;
pub mod host;
pub mod metrics;
pub mod openapi;
pub mod plugin_runner;
pub mod plugin_source;
pub mod plugins;
pub mod proxy;
pub mod reload;
pub mod router;
pub mod runtime;
pub mod scaffold;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod transcode;
pub mod upstream;
pub mod wasm;

pub use config::Config;
pub use runtime::{Runtime, Source};
pub use server::Gateway;
