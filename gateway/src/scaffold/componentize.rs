//! Turns a Go filter's core module (`GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared`, a reactor)
//! into a component of the gateway's `filter` world: what `wasm-tools component embed` and
//! `wasm-tools component new --adapt wasi_snapshot_preview1=<reactor adapter>` do, with the same crates
//! (`wit-component`, `wit-parser`) and the WASI preview 1 reactor adapter of the gateway's wasmtime.
//! Shared by the `gateway plugin build` command and `xtask` (which includes this file).

/// The world Go filters are components of.
pub const WORLD: &str = "filter";

/// Embeds the type information of the world `filter` of the WIT package `wit` (the text of
/// `wit/world.wit`; `wit_name` names it in errors), then wraps the module with the WASI preview 1
/// reactor adapter. The adapter allocates through the Go SDK's `cabi_realloc_adapter` (a static arena
/// that works while the Go runtime initializes), not `realloc_via_memory_grow`: pages the adapter grew
/// would later be handed out again by the Go runtime's allocator, which assumes it owns all memory past
/// its data.
pub fn componentize(core: &[u8], wit_name: &str, wit: &str) -> Result<Vec<u8>, String> {
    let mut resolve = wit_parser::Resolve::default();
    let pkg = resolve
        .push_str(wit_name, wit)
        .map_err(|e| format!("cannot parse {wit_name}: {e:#}"))?;
    let world = resolve
        .select_world(&[pkg], Some(WORLD))
        .map_err(|e| format!("no world `{WORLD}` in {wit_name}: {e:#}"))?;
    let mut module = core.to_vec();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .map_err(|e| format!("cannot embed the world's metadata: {e:#}"))?;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .realloc_via_memory_grow(false)
        .module(&module)
        .map_err(|e| format!("not a module of the filter world: {e:#}"))?
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .map_err(|e| format!("the WASI adapter: {e:#}"))?
        .encode()
        .map_err(|e| format!("cannot make the component: {e:#}"))
}
