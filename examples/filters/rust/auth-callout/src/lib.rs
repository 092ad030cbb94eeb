//! auth-callout: asks an auth service (an upstream the plugin is granted) about every request. A 2xx
//! answer lets the request go on with the user it names; 401 and 403 are passed to the client as JSON;
//! anything else (another status, a timeout, a failed call) answers 503. See examples/filters/README.md.
//!
//! ```yaml
//! config: {upstream: auth, path: /check, forward_headers: [authorization], user_header: x-user, timeout_ms: 1000}
//! ```

use gateway_plugin_sdk::{export_filter, http, log, Action, Filter, Request};
use serde_json::Value;

struct AuthCallout {
    upstream: String,
    path: String,
    forward_headers: Vec<String>,
    user_header: String,
    timeout_ms: u32,
}

impl Default for AuthCallout {
    fn default() -> Self {
        AuthCallout {
            upstream: String::new(),
            path: "/check".into(),
            forward_headers: vec!["authorization".into()],
            user_header: "x-user".into(),
            timeout_ms: 1000,
        }
    }
}

fn string(key: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        other => Err(format!("{key}: expected a non-empty string, not {other}")),
    }
}

fn json_error(status: u16, error: &str) -> Action {
    Action::respond(status, format!("{{\"error\":\"{error}\"}}"))
        .with_header("content-type", "application/json")
}

export_filter! {
    impl Filter for AuthCallout {
        fn init(&mut self, config: &str) -> Result<(), String> {
            let v: Value = serde_json::from_str(config)
                .map_err(|_| "expected a map with at least `upstream`".to_string())?;
            let Value::Object(m) = v else {
                return Err("expected a map with at least `upstream`".into());
            };
            for (k, v) in &m {
                match k.as_str() {
                    "upstream" => self.upstream = string(k, v)?,
                    "path" => {
                        self.path = string(k, v)?;
                        if !self.path.starts_with('/') {
                            return Err(format!("path: `{}` must start with `/`", self.path));
                        }
                    }
                    "forward_headers" => {
                        let Value::Array(items) = v else {
                            return Err("forward_headers: expected a list of header names".into());
                        };
                        self.forward_headers = items
                            .iter()
                            .map(|i| string("forward_headers", i).map(|s| s.to_ascii_lowercase()))
                            .collect::<Result<_, _>>()?;
                    }
                    "user_header" => self.user_header = string(k, v)?.to_ascii_lowercase(),
                    "timeout_ms" => {
                        self.timeout_ms = v
                            .as_u64()
                            .and_then(|n| u32::try_from(n).ok())
                            .filter(|n| *n > 0)
                            .ok_or_else(|| format!("timeout_ms: expected a positive number, not {v}"))?
                    }
                    _ => {
                        return Err(format!(
                            "unknown key `{k}` (expected upstream, path, forward_headers, user_header, timeout_ms)"
                        ))
                    }
                }
            }
            if self.upstream.is_empty() {
                return Err("upstream: required (the upstream to ask)".into());
            }
            Ok(())
        }

        fn on_request(&mut self, req: &Request) -> Action {
            let mut check = http::Request::new("GET", &self.path).timeout_ms(self.timeout_ms);
            for name in &self.forward_headers {
                for value in req.header_all(name) {
                    check = check.header(name, &value);
                }
            }
            let resp = match http::send(&self.upstream, check) {
                Ok(r) => r,
                Err(e) => {
                    log::warn(&format!("auth-callout: {}: {e}", self.upstream));
                    return json_error(503, "auth unavailable");
                }
            };
            match resp.status {
                200..=299 => {
                    // Only the auth service names the user: a client's own value never passes.
                    let done = match resp.header("x-user") {
                        Some(user) => req.set_header(&self.user_header, user),
                        None => req.remove_header(&self.user_header),
                    };
                    match done {
                        Ok(()) => Action::Continue,
                        Err(e) => {
                            log::warn(&format!(
                                "auth-callout: cannot set {}: {e}",
                                self.user_header
                            ));
                            json_error(503, "auth unavailable")
                        }
                    }
                }
                401 => json_error(401, "unauthorized"),
                403 => json_error(403, "forbidden"),
                other => {
                    log::warn(&format!("auth-callout: {} answered {other}", self.upstream));
                    json_error(503, "auth unavailable")
                }
            }
        }
    }
}
