//! What the plugin does with a request: the calls it makes ([`Config::requests`]) and the answer it
//! makes of their results ([`Config::compose`]). Pure functions of the config, the request's values
//! and the results, so `lib.rs` only reads the request, sends the calls and answers.

use crate::config::{Call, Config, JsonTemplate, Merge, OnError, ERRORS_KEY};
use crate::template::{Context, Inputs, RenderError, Source};
use gateway_plugin_sdk::{http, Error};
use serde_json::{json, Value};

/// The `error` of the 502 answered when a call fails the request.
pub const FAILED_CODE: &str = "composition_failed";
/// The `error` of the 400 answered when the request lacks a value a call needs, or has one that
/// cannot go where the template puts it.
pub const BAD_REQUEST_CODE: &str = "bad_request";
/// The `error` of the 500 answered when a call names a path parameter the route does not capture.
pub const MISCONFIGURED_CODE: &str = "composition_misconfigured";

/// A response for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why the calls could not be made for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The call whose template could not be filled.
    pub call: String,
    pub why: RenderError,
}

impl Refusal {
    /// Whether the fault is the route's config (a path parameter its template does not capture),
    /// not the client's request.
    pub fn misconfigured(&self) -> bool {
        matches!(self.why, RenderError::Missing(Source::Path(_)))
    }

    /// What it means, for the client and the log.
    pub fn message(&self) -> String {
        let call = &self.call;
        match &self.why {
            RenderError::Missing(s @ Source::Path(_)) => {
                format!(
                    "call `{call}` needs the {s}, which the route's path template does not capture"
                )
            }
            RenderError::Missing(s) => format!("the request has no {s}, which call `{call}` needs"),
            RenderError::Invalid(s, why) => format!("the request's {s} {why} (call `{call}`)"),
            RenderError::DotSegment(p) => {
                format!("call `{call}` would go to `{p}`: a value of the request is `.` or `..`")
            }
        }
    }

    /// The client's answer: 400, or 500 for a route whose template lacks a parameter.
    pub fn answer(&self, request_id: &str) -> Answer {
        let (status, code) = if self.misconfigured() {
            (500, MISCONFIGURED_CODE)
        } else {
            (400, BAD_REQUEST_CODE)
        };
        let body = json!({"error": code, "message": self.message(), "request_id": request_id});
        error_answer(status, request_id, &body)
    }
}

/// A call that did not give a JSON answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The call's name.
    pub call: String,
    /// A stable code: `status`, `not_json`, `timeout`, `unavailable`, `not_granted`, `bad_request`.
    pub code: &'static str,
    /// The upstream's status, when it answered.
    pub status: Option<u16>,
    pub message: String,
    /// Whether the call could never have worked (not granted, refused by the host): such a failure
    /// fails the request even with `on_error: partial`, so a config mistake does not pass for a
    /// service that is down.
    pub config_fault: bool,
}

impl Failure {
    fn entry(&self) -> Value {
        let mut e = json!({"call": self.call, "error": self.code, "message": self.message});
        if let Some(s) = self.status {
            e["status"] = json!(s);
        }
        e
    }
}

/// How the request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every call answered.
    Complete,
    /// Some calls failed; the answer has their nulls and errors (`on_error: partial`).
    Partial,
    /// A call failed the request: 502.
    Failed,
}

/// The answer made of the calls' results.
#[derive(Debug)]
pub struct Composed {
    pub answer: Answer,
    pub outcome: Outcome,
    pub failures: Vec<Failure>,
}

impl Config {
    /// The calls for a request, in config order: each to its upstream, `x-request-id` set to the
    /// request's id and `accept: application/json` (unless the call's headers set them), a body
    /// with `content-type: application/json` (unless set). A header whose value comes out empty is
    /// left out.
    pub fn requests(
        &self,
        inputs: &Inputs,
        request_id: &str,
    ) -> Result<Vec<(String, http::Request)>, Refusal> {
        self.calls
            .iter()
            .map(|call| {
                request(call, inputs, request_id)
                    .map(|r| (call.upstream.clone(), r))
                    .map_err(|why| Refusal {
                        call: call.name.clone(),
                        why,
                    })
            })
            .collect()
    }

    /// The answer made of `results` (one per call, in config order).
    pub fn compose(
        &self,
        results: Vec<Result<http::Response, Error>>,
        request_id: &str,
    ) -> Composed {
        let mut values: Vec<Option<&[u8]>> = Vec::with_capacity(self.calls.len());
        let mut failures = Vec::new();
        let mut fatal = None;
        for (call, result) in self.calls.iter().zip(&results) {
            match json_of(call, result) {
                Ok(v) => values.push(Some(v)),
                Err(f) => {
                    let fails_request =
                        f.config_fault || call.required || self.on_error == OnError::Fail;
                    if fails_request && fatal.is_none() {
                        fatal = Some(failures.len());
                    }
                    failures.push(f);
                    values.push(None);
                }
            }
        }
        // The host gives one result per request; a shorter list is a host fault, each missing
        // result a failure.
        for call in self.calls.iter().skip(results.len()) {
            fatal.get_or_insert(failures.len());
            failures.push(Failure {
                call: call.name.clone(),
                code: "unavailable",
                status: None,
                message: "the gateway gave no result for this call".into(),
                config_fault: true,
            });
            values.push(None);
        }
        if let Some(i) = fatal {
            let first = &failures[i];
            let body = json!({
                "error": FAILED_CODE,
                "message": format!("call `{}` failed: {}", first.call, first.message),
                "call": first.call,
                "errors": failures.iter().map(Failure::entry).collect::<Vec<_>>(),
                "request_id": request_id,
            });
            return Composed {
                answer: error_answer(502, request_id, &body),
                outcome: Outcome::Failed,
                failures,
            };
        }
        let body = self.merge(&values, &failures);
        Composed {
            answer: Answer {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body,
            },
            outcome: if failures.is_empty() {
                Outcome::Complete
            } else {
                Outcome::Partial
            },
            failures,
        }
    }

    /// The merged body: the answers as they came (their key order and numbers kept), a failed
    /// call's as `null`; with `on_error: partial`, the `errors` (empty when none failed).
    fn merge(&self, values: &[Option<&[u8]>], failures: &[Failure]) -> Vec<u8> {
        let mut out = Vec::new();
        let value = |out: &mut Vec<u8>, v: &Option<&[u8]>| match v {
            Some(raw) => out.extend_from_slice(raw),
            None => out.extend_from_slice(b"null"),
        };
        let errors = |out: &mut Vec<u8>| {
            let list: Vec<Value> = failures.iter().map(Failure::entry).collect();
            out.extend_from_slice(&serde_json::to_vec(&list).expect("JSON values serialize"));
        };
        let partial = self.on_error == OnError::Partial;
        match self.merge {
            Merge::Object => {
                out.push(b'{');
                for (i, (call, v)) in self.calls.iter().zip(values).enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(&serde_json::to_vec(&call.name).expect("a string"));
                    out.push(b':');
                    value(&mut out, v);
                }
                if partial {
                    out.extend_from_slice(format!(",\"{ERRORS_KEY}\":").as_bytes());
                    errors(&mut out);
                }
                out.push(b'}');
            }
            Merge::Array => {
                if partial {
                    out.extend_from_slice(b"{\"results\":");
                }
                out.push(b'[');
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    value(&mut out, v);
                }
                out.push(b']');
                if partial {
                    out.extend_from_slice(format!(",\"{ERRORS_KEY}\":").as_bytes());
                    errors(&mut out);
                    out.push(b'}');
                }
            }
        }
        out.push(b'\n');
        out
    }
}

fn request(call: &Call, inputs: &Inputs, request_id: &str) -> Result<http::Request, RenderError> {
    let path = call.path.render(inputs, Context::Path)?;
    let mut out = http::Request::new(&call.method, &path).timeout_ms(call.timeout_ms);
    for (name, value) in &call.headers {
        let v = value.render(inputs, Context::Header)?;
        if !v.is_empty() {
            out = out.header(name, &v);
        }
    }
    let has = |out: &http::Request, name: &str| out.headers.iter().any(|(n, _)| n == name);
    if !has(&out, "accept") {
        out = out.header("accept", "application/json");
    }
    if !has(&out, "x-request-id") {
        out = out.header("x-request-id", request_id);
    }
    if let Some(body) = &call.body {
        let v = render_json(body, inputs)?;
        if !has(&out, "content-type") {
            out = out.header("content-type", "application/json");
        }
        out = out.body(&serde_json::to_vec(&v).expect("JSON values serialize"));
    }
    Ok(out)
}

fn render_json(t: &JsonTemplate, inputs: &Inputs) -> Result<Value, RenderError> {
    Ok(match t {
        JsonTemplate::Literal(v) => v.clone(),
        JsonTemplate::String(s) => Value::String(s.render(inputs, Context::Body)?),
        JsonTemplate::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| render_json(i, inputs))
                .collect::<Result<_, _>>()?,
        ),
        JsonTemplate::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), render_json(v, inputs)?)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// The JSON of a call's result (its body, trimmed), or why there is none.
fn json_of<'r>(
    call: &Call,
    result: &'r Result<http::Response, Error>,
) -> Result<&'r [u8], Failure> {
    let fail = |code, status, message: String, config_fault| Failure {
        call: call.name.clone(),
        code,
        status,
        message,
        config_fault,
    };
    let upstream = &call.upstream;
    let resp = match result {
        Ok(resp) => resp,
        Err(Error::Timeout) => {
            return Err(fail(
                "timeout",
                None,
                format!(
                    "upstream `{upstream}` did not answer within {} ms",
                    call.timeout_ms
                ),
                false,
            ))
        }
        Err(Error::Failed(m)) => {
            return Err(fail(
                "unavailable",
                None,
                format!("upstream `{upstream}` failed: {m}"),
                false,
            ))
        }
        Err(Error::Denied(m)) => {
            return Err(fail(
                "not_granted",
                None,
                format!("the gateway refused the call to upstream `{upstream}`: {m}"),
                true,
            ))
        }
        Err(e) => {
            return Err(fail(
                "bad_request",
                None,
                format!("the gateway refused the call to upstream `{upstream}`: {e}"),
                true,
            ))
        }
    };
    if !(200..300).contains(&resp.status) {
        return Err(fail(
            "status",
            Some(resp.status),
            format!("upstream `{upstream}` answered {}", resp.status),
            false,
        ));
    }
    let body = resp.body.trim_ascii();
    match serde_json::from_slice::<Value>(body) {
        Ok(_) => Ok(body),
        Err(e) => Err(fail(
            "not_json",
            Some(resp.status),
            format!(
                "upstream `{upstream}` answered {} with a body that is not JSON ({e})",
                resp.status
            ),
            false,
        )),
    }
}

/// An error answer in the gateway's shape, with the request id as `x-request-id`.
fn error_answer(status: u16, request_id: &str, body: &Value) -> Answer {
    Answer {
        status,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-request-id".into(), request_id.into()),
        ],
        body: format!("{body}\n").into_bytes(),
    }
}

#[cfg(test)]
mod tests;
