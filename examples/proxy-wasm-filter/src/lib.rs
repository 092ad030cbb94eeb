//! A Proxy-Wasm filter as written for Envoy: it tags requests and responses, denies requests that carry
//! `x-demo-deny`, and counts what it saw. Its route config is a greeting string.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(DemoRoot { greeting: String::new(), requests: 0 })
    });
}}

struct DemoRoot {
    greeting: String,
    requests: u32,
}

impl Context for DemoRoot {}

impl RootContext for DemoRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.greeting = self
            .get_plugin_configuration()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|| "hello".into());
        if self.requests == 0 {
            self.requests =
                proxy_wasm::hostcalls::define_metric(MetricType::Counter, "demo_requests")
                    .unwrap_or(0);
        }
        !self.greeting.is_empty()
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(DemoFilter {
            greeting: self.greeting.clone(),
            counter: self.requests,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct DemoFilter {
    greeting: String,
    counter: u32,
}

impl Context for DemoFilter {}

impl HttpContext for DemoFilter {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let _ = proxy_wasm::hostcalls::increment_metric(self.counter, 1);
        if self.get_http_request_header("x-demo-deny").is_some() {
            self.send_http_response(
                403,
                vec![("content-type", "text/plain")],
                Some(b"denied by a Wasm filter\n"),
            );
            return Action::Pause;
        }
        self.set_http_request_header("x-demo-greeting", Some(&self.greeting));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.set_http_response_header("x-wasm-filter", Some("proxy-wasm-demo"));
        Action::Continue
    }
}
