//! A no-op component filter for the benchmark: every phase uses the SDK's default (continue, no body
//! phases), so what the benchmark measures is the host's cost of running one component stage.

use gateway_plugin_sdk::{export_filter, Filter};

#[derive(Default)]
struct Noop;

impl Filter for Noop {}

export_filter!(Noop);
