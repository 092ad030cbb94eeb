//! header-rewrite: sets, appends and removes request headers (in `on_request`) and response headers
//! (in `on_response`), as the route's config says. See examples/filters/README.md.
//!
//! ```yaml
//! config:
//!   request:  {set: {x-env: prod}, add: {x-tag: a}, remove: [x-debug]}
//!   response: {set: {x-frame-options: DENY}, remove: [server]}
//! ```

use gateway_plugin_sdk::{export_filter, log, Action, Filter, Request, Response};
use serde_json::Value;

/// The edits of one direction, applied in the order remove, set, add.
#[derive(Default)]
struct Edits {
    set: Vec<(String, String)>,
    add: Vec<(String, String)>,
    remove: Vec<String>,
}

#[derive(Default)]
struct HeaderRewrite {
    request: Edits,
    response: Edits,
}

/// A header name as HTTP allows it (an RFC 9110 token), lower-cased.
fn header_name(field: &str, name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(format!("{field}: `{name}` is not a valid header name"))
    }
}

fn header_value(field: &str, value: &Value) -> Result<String, String> {
    let Value::String(s) = value else {
        return Err(format!("{field}: the value must be a string, not {value}"));
    };
    if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!("{field}: the value must not contain CR, LF or NUL"));
    }
    Ok(s.clone())
}

fn pairs(field: &str, v: &Value) -> Result<Vec<(String, String)>, String> {
    let Value::Object(m) = v else {
        return Err(format!(
            "{field}: expected a map of header names to strings"
        ));
    };
    m.iter()
        .map(|(k, v)| {
            let f = format!("{field}.{k}");
            Ok((header_name(&f, k)?, header_value(&f, v)?))
        })
        .collect()
}

fn names(field: &str, v: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = v else {
        return Err(format!("{field}: expected a list of header names"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => header_name(&format!("{field}[{i}]"), s),
            other => Err(format!("{field}[{i}]: expected a header name, not {other}")),
        })
        .collect()
}

fn edits(field: &str, v: &Value) -> Result<Edits, String> {
    let Value::Object(m) = v else {
        return Err(format!("{field}: expected a map with set, add and remove"));
    };
    let mut e = Edits::default();
    for (k, v) in m {
        let f = format!("{field}.{k}");
        match k.as_str() {
            "set" => e.set = pairs(&f, v)?,
            "add" => e.add = pairs(&f, v)?,
            "remove" => e.remove = names(&f, v)?,
            _ => {
                return Err(format!(
                    "{field}: unknown key `{k}` (expected set, add, remove)"
                ))
            }
        }
    }
    Ok(e)
}

fn parse(config: &str) -> Result<HeaderRewrite, String> {
    if config.trim().is_empty() {
        return Ok(HeaderRewrite::default());
    }
    let v: Value = serde_json::from_str(config)
        .map_err(|_| "expected a map with `request` and `response` sections".to_string())?;
    let Value::Object(m) = v else {
        return Err("expected a map with `request` and `response` sections".into());
    };
    let mut f = HeaderRewrite::default();
    for (k, v) in &m {
        match k.as_str() {
            "request" => f.request = edits("request", v)?,
            "response" => f.response = edits("response", v)?,
            _ => return Err(format!("unknown key `{k}` (expected request, response)")),
        }
    }
    Ok(f)
}

/// The three header operations of a request or a response.
trait Headers {
    fn set(&self, name: &str, value: &str) -> Result<(), gateway_plugin_sdk::Error>;
    fn add(&self, name: &str, value: &str) -> Result<(), gateway_plugin_sdk::Error>;
    fn remove(&self, name: &str) -> Result<(), gateway_plugin_sdk::Error>;
}

impl Headers for Request<'_> {
    fn set(&self, name: &str, value: &str) -> Result<(), gateway_plugin_sdk::Error> {
        self.set_header(name, value)
    }
    fn add(&self, name: &str, value: &str) -> Result<(), gateway_plugin_sdk::Error> {
        self.append_header(name, value)
    }
    fn remove(&self, name: &str) -> Result<(), gateway_plugin_sdk::Error> {
        self.remove_header(name)
    }
}

impl Headers for Response<'_> {
    fn set(&self, name: &str, value: &str) -> Result<(), gateway_plugin_sdk::Error> {
        self.set_header(name, value)
    }
    fn add(&self, name: &str, value: &str) -> Result<(), gateway_plugin_sdk::Error> {
        self.append_header(name, value)
    }
    fn remove(&self, name: &str) -> Result<(), gateway_plugin_sdk::Error> {
        self.remove_header(name)
    }
}

impl Edits {
    fn apply(&self, h: &impl Headers) {
        let results = self
            .remove
            .iter()
            .map(|n| h.remove(n))
            .chain(self.set.iter().map(|(n, v)| h.set(n, v)))
            .chain(self.add.iter().map(|(n, v)| h.add(n, v)));
        for r in results {
            if let Err(e) = r {
                log::warn(&format!("header-rewrite: {e}"));
            }
        }
    }
}

export_filter! {
    impl Filter for HeaderRewrite {
        fn init(&mut self, config: &str) -> Result<(), String> {
            *self = parse(config)?;
            Ok(())
        }

        fn on_request(&mut self, req: &Request) -> Action {
            self.request.apply(req);
            Action::Continue
        }

        fn on_response(&mut self, resp: &Response) -> Action {
            self.response.apply(resp);
            Action::Continue
        }
    }
}
