//! Proxy-Wasm filters for the benchmark, written for Envoy with the proxy-wasm Rust SDK. The route's
//! filter config chooses what a filter stage does:
//!
//! - `noop` (or empty): nothing. Every callback is the SDK's default, which continues.
//! - `auth`: the request must carry `authorization: Bearer bench-token`, else 401 is sent from the
//!   filter; an authorized request gets `x-auth-user: bench` and loses its `authorization` header.
//! - `ratelimit`: a fixed one-second window counted in shared data (`get_shared_data` then
//!   `set_shared_data` with the CAS token, retried on a mismatch), one counter for every route and
//!   worker; over `limit` requests in a window (config `ratelimit limit=N`, default 1e9, i.e. never in
//!   a benchmark) is answered 429.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, Status};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { mode: Mode::Noop }) });
}}

#[derive(Clone, Copy)]
enum Mode {
    Noop,
    Auth,
    RateLimit { limit: u64 },
}

struct Root {
    mode: Mode,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let config = String::from_utf8_lossy(&config);
        let mut words = config.split_whitespace();
        self.mode = match words.next().unwrap_or("noop") {
            "noop" => Mode::Noop,
            "auth" => Mode::Auth,
            "ratelimit" => {
                let limit = words
                    .find_map(|w| w.strip_prefix("limit="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1_000_000_000);
                Mode::RateLimit { limit }
            }
            _ => return false,
        };
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(match self.mode {
            Mode::Noop => Box::new(Noop),
            Mode::Auth => Box::new(Auth),
            Mode::RateLimit { limit } => Box::new(RateLimit { limit }),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop;

impl Context for Noop {}
impl HttpContext for Noop {}

struct Auth;

impl Context for Auth {}

impl HttpContext for Auth {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        match self.get_http_request_header("authorization") {
            Some(v) if v == "Bearer bench-token" => {
                self.set_http_request_header("authorization", None);
                self.set_http_request_header("x-auth-user", Some("bench"));
                Action::Continue
            }
            _ => {
                self.send_http_response(401, vec![("www-authenticate", "Bearer")], None);
                Action::Pause
            }
        }
    }
}

struct RateLimit {
    limit: u64,
}

impl Context for RateLimit {}

impl HttpContext for RateLimit {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        const KEY: &str = "bench-ratelimit";
        let window = (self.get_current_time().duration_since(std::time::UNIX_EPOCH))
            .map(|d| d.as_secs())
            .unwrap_or(0);
        loop {
            let (value, cas) = hostcalls::get_shared_data(KEY).unwrap_or((None, None));
            // The value is "<window>:<count>".
            let (w, n) = value
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|s| s.split_once(':'))
                .and_then(|(w, n)| Some((w.parse::<u64>().ok()?, n.parse::<u64>().ok()?)))
                .unwrap_or((0, 0));
            let n = if w == window { n + 1 } else { 1 };
            if n > self.limit {
                self.send_http_response(429, vec![("retry-after", "1")], None);
                return Action::Pause;
            }
            let next = format!("{window}:{n}");
            match hostcalls::set_shared_data(KEY, Some(next.as_bytes()), cas) {
                Ok(()) => return Action::Continue,
                Err(Status::CasMismatch) => continue,
                Err(_) => return Action::Continue,
            }
        }
    }
}
