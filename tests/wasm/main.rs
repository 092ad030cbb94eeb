//! Integration tests of the Wasm sandbox and the Proxy-Wasm host: real fixture plugins built from
//! source (`tests/fixtures/proxy-wasm`, `tests/fixtures/components`), driven through the `Filter` trait.

mod support;

mod bodies;
mod callouts;
mod components;
mod hostcalls;
mod hostile;
mod loading;
mod store;
