//! Checking a request with a route's [`Validator`]: the parameters when its head arrives, the body
//! (if a schema applies to it) when it is whole; and the answers to a request that fails.

use serde_json::{json, Value};

use crate::config::{BodySchema, Mode, Validator};
use crate::openapi::{is_json, Found, RequestBody, FORM};
use crate::params::{Param, ParamSet};
use crate::schema::{check, Loc, SchemaIndex, Violation};

/// A request's head, as the checks need it.
pub struct Head<'a> {
    pub method: &'a str,
    /// As sent (percent-encoded), without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// Names lower-case.
    pub headers: &'a [(String, String)],
    /// The route's path template parameters, as sent (percent-encoded).
    pub path_params: &'a [(String, String)],
}

/// A local answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What to do after the head.
#[derive(Debug)]
pub enum Step {
    Pass,
    Answer(Answer),
    /// Wait for the whole body and finish with [`Validator::body`].
    Body(Pending),
}

/// The body check a request waits for, and what its head already got wrong.
#[derive(Debug)]
pub struct Pending {
    schema: Option<SchemaIndex>,
    required: bool,
    kind: Kind,
    found: Vec<Violation>,
}

/// How a body is read.
#[derive(Debug, Clone)]
enum Kind {
    /// JSON, parsed (and checked, with a schema).
    Json,
    /// `application/x-www-form-urlencoded`: its fields as an object, read like query parameters.
    Form(Vec<Param>),
    /// Another media type: not read.
    Unread,
}

/// How a request's body is announced by its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announced {
    /// `content-length` above 0, or `transfer-encoding`.
    Yes,
    /// Nothing says a body follows, and nothing can come (HTTP/1, or `content-length: 0`).
    No,
    /// Nothing says a body follows, but one may (HTTP/2 needs no `content-length`).
    Maybe,
}

/// Whether the head announces a body; `h2` says whether the request came over HTTP/2 (asked only
/// when the headers do not tell).
pub fn announced(headers: &[(String, String)], h2: impl FnOnce() -> bool) -> Announced {
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.trim());
    match get("content-length").map(|v| v.parse::<u64>()) {
        Some(Ok(0)) => return Announced::No,
        Some(_) => return Announced::Yes,
        None => {}
    }
    if get("transfer-encoding").is_some() {
        Announced::Yes
    } else if h2() {
        Announced::Maybe
    } else {
        Announced::No
    }
}

/// The body rule that applies to a request.
enum BodyRule<'a> {
    /// `body_schema`: a JSON (or form) body, required.
    Schema(&'a BodySchema),
    Operation(&'a RequestBody),
}

impl Validator {
    /// Checks a request's head. `body` says whether it announces a body (asked only when a body
    /// rule applies: it may cost a host call).
    pub fn head(&self, head: &Head, body: impl FnOnce() -> Announced) -> Step {
        let mut found = Vec::new();
        let query = crate::params::query(head.query);
        let rule = match &self.mode {
            Mode::Schemas {
                body,
                query: q,
                header: h,
                path: p,
            } => {
                if !q.is_empty() {
                    q.check(&self.schemas, &query, &mut found);
                }
                if !h.is_empty() {
                    h.check(&self.schemas, head.headers, &mut found);
                }
                if !p.is_empty() {
                    let decoded: Vec<(String, String)> = head
                        .path_params
                        .iter()
                        .map(|(n, v)| (n.clone(), crate::params::decode_path(v)))
                        .collect();
                    p.check(&self.schemas, &decoded, &mut found);
                }
                body.as_ref().map(BodyRule::Schema)
            }
            Mode::OpenApi { api, allow } => match api.find(head.method, head.path) {
                Found::Op(op, path_params) => {
                    op.query.check(&self.schemas, &query, &mut found);
                    op.header.check(&self.schemas, head.headers, &mut found);
                    op.path.check(&self.schemas, &path_params, &mut found);
                    op.body.as_ref().map(BodyRule::Operation)
                }
                _ if *allow => return Step::Pass,
                Found::NoPath => {
                    return Step::Answer(answer(
                        404,
                        &format!(
                            "no operation of the API matches {} {}",
                            head.method, head.path
                        ),
                        &[],
                    ))
                }
                Found::NoMethod(template, methods) => {
                    let mut a = answer(
                        405,
                        &format!("the API has no {} operation on {template}", head.method),
                        &[],
                    );
                    a.headers.push(("allow".into(), methods.join(", ")));
                    return Step::Answer(a);
                }
            },
        };
        let Some(rule) = rule else {
            return self.verdict(found);
        };
        let content_type = head
            .headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.as_str());
        let essence = content_type.map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        let body = body();
        let (required, schema, kind) = match rule {
            BodyRule::Schema(b) => match essence.as_deref() {
                None => (true, Some(b.schema), Kind::Json),
                Some(e) if is_json(e) => (true, Some(b.schema), Kind::Json),
                Some(FORM) => (true, Some(b.schema), Kind::Form(b.form.clone())),
                Some(e) => {
                    let ranges = ["application/json".to_string(), FORM.to_string()];
                    return Step::Answer(unsupported(e, &ranges, found));
                }
            },
            BodyRule::Operation(rb) => {
                // Without a content type, a body is taken for JSON where the operation takes it.
                let essence = essence.clone().unwrap_or_else(|| "application/json".into());
                match rb.media_for(&essence) {
                    Some(m) => {
                        let kind = if is_json(&essence) {
                            Kind::Json
                        } else if essence == FORM && m.schema.is_some() {
                            Kind::Form(m.form.clone())
                        } else {
                            Kind::Unread
                        };
                        (rb.required, m.schema, kind)
                    }
                    // No body (or, over HTTP/2, none announced and no content type): nothing to
                    // refuse where the body is optional.
                    None if !rb.required
                        && (body == Announced::No
                            || (body == Announced::Maybe && content_type.is_none())) =>
                    {
                        (false, None, Kind::Unread)
                    }
                    None => {
                        let ranges: Vec<String> =
                            rb.media.iter().map(|m| m.range.clone()).collect();
                        return Step::Answer(unsupported(&essence, &ranges, found));
                    }
                }
            }
        };
        if body == Announced::No {
            if required {
                found.push(missing_body());
            }
            return self.verdict(found);
        }
        if let Kind::Unread = kind {
            // A body of another media type is not read (its schema, if any, is not checked).
            return self.verdict(found);
        }
        Step::Body(Pending {
            schema,
            required,
            kind,
            found,
        })
    }

    /// Checks the whole body a request waited for.
    pub fn body(&self, pending: Pending, body: &[u8]) -> Step {
        let Pending {
            schema,
            required,
            kind,
            mut found,
        } = pending;
        if body.is_empty() {
            if required {
                found.push(missing_body());
            }
            return self.verdict(found);
        }
        match kind {
            Kind::Json => match serde_json::from_slice::<Value>(body) {
                Err(e) => found.push(Violation::new(
                    Loc::Body,
                    "",
                    "JSON",
                    format!("the body is not JSON: {e}"),
                )),
                Ok(v) => {
                    if let Some(s) = schema {
                        check(&self.schemas, s, &v, Loc::Body, &mut found);
                    }
                }
            },
            Kind::Form(params) => {
                let fields = ParamSet {
                    loc: Loc::Body,
                    params,
                    whole: schema,
                    undeclared: true,
                };
                fields.check(
                    &self.schemas,
                    &crate::params::query(Some(&String::from_utf8_lossy(body))),
                    &mut found,
                );
            }
            Kind::Unread => {}
        }
        self.verdict(found)
    }

    fn verdict(&self, found: Vec<Violation>) -> Step {
        if found.is_empty() {
            return Step::Pass;
        }
        let message = self
            .rejected_msg
            .clone()
            .unwrap_or_else(|| "the request is not valid".into());
        Step::Answer(answer(self.rejected_code, &message, &found))
    }
}

fn missing_body() -> Violation {
    Violation::new(
        Loc::Body,
        "",
        "a body (required)",
        "the request has no body",
    )
}

/// 415 for a content type the rule does not take (with what the head got wrong too).
fn unsupported(essence: &str, ranges: &[String], mut found: Vec<Violation>) -> Answer {
    found.push(Violation::new(
        Loc::Header,
        "/content-type",
        &ranges.join(" or "),
        format!("content type `{essence}` is not accepted"),
    ));
    answer(
        415,
        &format!(
            "unsupported content type `{essence}`; expected {}",
            ranges.join(" or ")
        ),
        &found,
    )
}

/// The JSON answer: `{"message": ..., "errors": [...]}`.
fn answer(status: u16, message: &str, found: &[Violation]) -> Answer {
    let body = json!({
        "message": message,
        "errors": found.iter().map(Violation::to_json).collect::<Vec<_>>(),
    });
    Answer {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: format!("{body}\n").into_bytes(),
    }
}

#[cfg(test)]
mod tests;
