//! A no-op component filter for the benchmark: a request-headers handler that continues, the shape of
//! most filters (auth, header rewrites). Exported in the `export_filter! { impl ... }` form, it
//! declares that phase only (WIT 0.1.5), so what the benchmark measures is the host's cost of one
//! component call per request.

use gateway_plugin_sdk::{export_filter, Action, Filter, Request};

#[derive(Default)]
struct Noop;

export_filter! {
    impl Filter for Noop {
        fn on_request(&mut self, _req: &Request) -> Action {
            Action::Continue
        }
    }
}
