//! Write gateway filters in Rust.
//!
//! A filter is a type that implements [`Filter`] (every method has a no-op default) and is exported
//! with [`export_filter!`]. Built for `wasm32-wasip2`, the crate is a component of the gateway's WIT
//! world `gateway:filter/filter@0.1.5`, which the gateway loads as a plugin.
//!
//! ```no_run
//! use gateway_plugin_sdk::{export_filter, Action, Filter, Request};
//!
//! #[derive(Default)]
//! struct AddHeader;
//!
//! impl Filter for AddHeader {
//!     fn on_request(&mut self, req: &Request) -> Action {
//!         let _ = req.set_header("x-hello", "world");
//!         Action::Continue
//!     }
//! }
//!
//! export_filter!(AddHeader);
//! ```
//!
//! Host capabilities live in modules: [`http`] (outbound calls to upstreams the plugin is granted),
//! [`kv`] (the shared store, in the granted namespace), [`log`], [`metrics`], [`clock`], [`random`],
//! [`facts`], [`consumers`], [`cache`] (responses kept in the gateway's memory) and [`trace`]
//! (attributes and events on the span of the current call).
#![deny(missing_docs)]

#[doc(hidden)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "filter",
        pub_export_macro: true,
        export_macro_name: "__export_filter_world",
        default_bindings_module: "gateway_plugin_sdk::__bindings",
    });
}

pub mod config;
mod handles;
pub mod host;
#[doc(hidden)]
pub mod panic;
#[doc(hidden)]
pub mod rt;

pub use handles::{Action, BodyMode, Error, Options, Request, Response};
pub use host::{cache, clock, consumers, facts, http, kv, log, metrics, random, trace};

/// A filter. Every method has a default that does nothing and continues, so a filter implements only
/// what it needs. One value of the type lives in each instance: [`Filter::init`] configures it for its
/// route, then the handlers run for the requests the instance serves (one, or many one after another
/// when the plugin is configured with `instance_mode: reuse`).
///
/// ```no_run
/// use gateway_plugin_sdk::{Action, Filter, Request};
///
/// #[derive(Default)]
/// struct Deny {
///     header: String,
/// }
///
/// impl Filter for Deny {
///     fn init(&mut self, config: &str) -> Result<(), String> {
///         if config.is_empty() {
///             return Err("config: the name of a header to require".into());
///         }
///         self.header = config.to_string();
///         Ok(())
///     }
///
///     fn on_request(&mut self, req: &Request) -> Action {
///         match req.header(&self.header) {
///             Some(_) => Action::Continue,
///             None => Action::respond(403, "missing header\n"),
///         }
///     }
/// }
/// ```
pub trait Filter: Default + 'static {
    /// Configures the filter with its route's config (a string as written, other YAML as JSON). An
    /// error rejects the config when the gateway loads it.
    ///
    /// ```no_run
    /// # use gateway_plugin_sdk::Filter;
    /// # #[derive(Default)] struct F { limit: u32 }
    /// impl Filter for F {
    ///     fn init(&mut self, config: &str) -> Result<(), String> {
    ///         self.limit = config.parse().map_err(|e| format!("limit: {e}"))?;
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn init(&mut self, _config: &str) -> Result<(), String> {
        Ok(())
    }

    /// How this filter wants to see bodies (read once, after `init`). Default: no bodies.
    ///
    /// ```no_run
    /// # use gateway_plugin_sdk::{BodyMode, Filter, Options};
    /// # #[derive(Default)] struct F;
    /// impl Filter for F {
    ///     fn options(&self) -> Options {
    ///         Options { request_body: BodyMode::Whole, ..Options::default() }
    ///     }
    /// }
    /// ```
    fn options(&self) -> Options {
        Options::default()
    }

    /// The request headers arrived; headers, path and query may be changed here.
    ///
    /// ```no_run
    /// # use gateway_plugin_sdk::{Action, Filter, Request};
    /// # #[derive(Default)] struct F;
    /// impl Filter for F {
    ///     fn on_request(&mut self, req: &Request) -> Action {
    ///         if req.path().starts_with("/admin") {
    ///             return Action::respond(404, "");
    ///         }
    ///         Action::Continue
    ///     }
    /// }
    /// ```
    fn on_request(&mut self, _req: &Request) -> Action {
        Action::Continue
    }

    /// The request body (whole, or one chunk), if [`Filter::options`] asked for it; read it with
    /// [`Request::body`], replace it with [`Request::set_body`].
    ///
    /// ```no_run
    /// # use gateway_plugin_sdk::{Action, Filter, Request};
    /// # #[derive(Default)] struct F;
    /// impl Filter for F {
    ///     fn on_request_body(&mut self, req: &Request, _end_of_stream: bool) -> Action {
    ///         let body = req.body().unwrap_or_default();
    ///         let _ = req.set_body(&body.to_ascii_uppercase());
    ///         Action::Continue
    ///     }
    /// }
    /// ```
    fn on_request_body(&mut self, _req: &Request, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    /// The response headers arrived (from the backend or a local response).
    ///
    /// ```no_run
    /// # use gateway_plugin_sdk::{Action, Filter, Response};
    /// # #[derive(Default)] struct F;
    /// impl Filter for F {
    ///     fn on_response(&mut self, resp: &Response) -> Action {
    ///         let _ = resp.remove_header("server");
    ///         Action::Continue
    ///     }
    /// }
    /// ```
    fn on_response(&mut self, _resp: &Response) -> Action {
        Action::Continue
    }

    /// The response body (whole, or one chunk), like [`Filter::on_request_body`].
    ///
    /// ```no_run
    /// # use gateway_plugin_sdk::{Action, Filter, Response};
    /// # #[derive(Default)] struct F;
    /// impl Filter for F {
    ///     fn on_response_body(&mut self, resp: &Response, _end_of_stream: bool) -> Action {
    ///         let _ = resp.set_body(b"redacted");
    ///         Action::Continue
    ///     }
    /// }
    /// ```
    fn on_response_body(&mut self, _resp: &Response, _end_of_stream: bool) -> Action {
        Action::Continue
    }
}

/// Exports a [`Filter`] type as the component's filter. Use it once, at the crate root. It also
/// installs the SDK's panic hook, so a panic's message and location (`panicked at src/lib.rs:12:9:
/// ...`) reach the gateway's log and the error of the call that trapped.
///
/// ```no_run
/// use gateway_plugin_sdk::{export_filter, Filter};
///
/// #[derive(Default)]
/// struct Nothing;
/// impl Filter for Nothing {}
///
/// export_filter!(Nothing);
/// ```
///
/// Written around the `impl Filter` block, it also tells the gateway which handlers the filter has
/// (WIT 0.1.5 `phases`): the gateway then never enters the filter for a phase it does not implement,
/// and buffers no body for a body handler it does not have. This is the form to use; the
/// `export_filter!(Type)` form gets every handler called, as filters built before 0.1.5 do.
///
/// ```no_run
/// use gateway_plugin_sdk::{export_filter, Action, Filter, Request};
///
/// #[derive(Default)]
/// struct AddHeader;
///
/// // Only `on-request` is called: not `on-response`, and no body is shown.
/// export_filter! {
///     impl Filter for AddHeader {
///         fn on_request(&mut self, req: &Request) -> Action {
///             let _ = req.set_header("x-hello", "world");
///             Action::Continue
///         }
///     }
/// }
/// ```
#[macro_export]
macro_rules! export_filter {
    (impl $filter_trait:ident for $filter:ty { $($body:tt)* }) => {
        impl $filter_trait for $filter {
            $($body)*
        }
        $crate::export_filter!(@export $filter, $crate::rt::Phases::of(&[$(stringify!($body)),*]));
    };
    ($filter:ty) => {
        $crate::export_filter!(@export $filter, $crate::rt::Phases::ALL);
    };
    (@export $filter:ty, $phases:expr) => {
        const _: () = {
            struct __GatewayExport;
            impl $crate::rt::Guest for __GatewayExport {
                fn init(config: ::std::string::String) -> $crate::rt::InitResult {
                    $crate::panic::install();
                    const PHASES: $crate::rt::Phases = $phases;
                    $crate::rt::init::<$filter>(&config, PHASES)
                }
                fn on_request(req: &$crate::rt::WitRequest) -> $crate::rt::WitAction {
                    $crate::rt::on_request(req)
                }
                fn on_request_body(req: &$crate::rt::WitRequest, eos: bool) -> $crate::rt::WitAction {
                    $crate::rt::on_request_body(req, eos)
                }
                fn on_response(resp: &$crate::rt::WitResponse) -> $crate::rt::WitAction {
                    $crate::rt::on_response(resp)
                }
                fn on_response_body(
                    resp: &$crate::rt::WitResponse,
                    eos: bool,
                ) -> $crate::rt::WitAction {
                    $crate::rt::on_response_body(resp, eos)
                }
            }
            $crate::__bindings::__export_filter_world!(__GatewayExport with_types_in $crate::__bindings);
        };
    };
}
