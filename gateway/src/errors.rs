//! The errors a request can end in, and the one place that turns them into HTTP responses.

use crate::body::{full, Body};
use crate::proxy::grpc::{self, Code};
use http::{header, Response, StatusCode};

/// Why a request did not get an upstream's answer.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No route matched.
    #[error("no route matches this request")]
    NoRoute,
    /// The request body is over the route's limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The client's request body broke off or was malformed.
    #[error("request body could not be read: {0}")]
    BadRequestBody(String),
    /// The request's path or authority has no canonical form (see `crate::canonical`).
    #[error("bad request target: {0}")]
    BadTarget(#[from] crate::canonical::BadTarget),
    /// An HTTP/2 request target over the listener's `max_uri_bytes` (the HTTP/1 guard answers
    /// HTTP/1's).
    #[error("request target too long")]
    UriTooLong,
    /// An HTTP/2 request with more header fields than the listener's `max_headers`.
    #[error("too many header fields")]
    TooManyHeaders,
    /// CONNECT is not proxied.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request asks to switch protocols (`Upgrade`, HTTP/2 extended CONNECT) and its route does
    /// not tunnel that protocol (see `crate::proxy::upgrade`).
    #[error("upgrade refused: {0}")]
    UpgradeRefused(&'static str),
    /// Every endpoint is ejected or unhealthy.
    #[error("no healthy endpoint in upstream {upstream}")]
    NoHealthyEndpoint {
        /// The upstream cluster.
        upstream: String,
    },
    /// Could not connect to the endpoint.
    #[error("could not connect to {endpoint}: {detail}")]
    Connect {
        /// The endpoint address.
        endpoint: String,
        /// The cause.
        detail: String,
    },
    /// The exchange with the endpoint broke (reset, malformed response).
    #[error("upstream {endpoint} failed: {detail}")]
    Protocol {
        /// The endpoint address.
        endpoint: String,
        /// The cause.
        detail: String,
    },
    /// A filter failed and its failure policy is closed.
    #[error(transparent)]
    Filter(#[from] crate::filter::chain::ChainError),
    /// The route's function backend failed or was over a limit before its response head.
    #[error(transparent)]
    Function(#[from] crate::wasm::function::error::FunctionError),
    /// No response headers within the route's timeout.
    #[error("upstream {endpoint} timed out after {after_ms} ms")]
    Timeout {
        /// The endpoint address (the last tried).
        endpoint: String,
        /// Elapsed time.
        after_ms: u64,
    },
}

/// Where a failure came from: what pingora's error type calls the fault's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The client sent something the gateway refuses.
    Client,
    /// The upstream failed or could not be reached.
    Upstream,
    /// A filter failed.
    Filter,
    /// The gateway itself (nothing matched, a limit of its own).
    Gateway,
}

/// How an error is answered: status, stable code, where it came from, and whether the request may
/// be tried again as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable, machine-readable code in the body (`upstream_timeout`, ...).
    pub code: &'static str,
    /// Where it came from.
    pub origin: Origin,
    /// Whether sending the same request again may succeed.
    pub retryable: bool,
}

impl ProxyError {
    /// The error's class.
    pub fn class(&self) -> Class {
        use Origin::*;
        let (status, code, origin, retryable) = match self {
            ProxyError::NoRoute => (StatusCode::NOT_FOUND, "no_route", Gateway, false),
            ProxyError::BodyTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                Client,
                false,
            ),
            ProxyError::BadRequestBody(_) => {
                (StatusCode::BAD_REQUEST, "bad_request_body", Client, false)
            }
            ProxyError::BadTarget(_) => {
                (StatusCode::BAD_REQUEST, "bad_request_target", Client, false)
            }
            ProxyError::UriTooLong => (StatusCode::URI_TOO_LONG, status_code(414), Client, false),
            ProxyError::TooManyHeaders => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                status_code(431),
                Client,
                false,
            ),
            ProxyError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                Client,
                false,
            ),
            ProxyError::UpgradeRefused(_) => {
                (StatusCode::FORBIDDEN, "upgrade_refused", Client, false)
            }
            ProxyError::NoHealthyEndpoint { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no_healthy_endpoint",
                Upstream,
                true,
            ),
            ProxyError::Connect { .. } => (
                StatusCode::BAD_GATEWAY,
                "upstream_connect_failure",
                Upstream,
                true,
            ),
            ProxyError::Protocol { .. } => (
                StatusCode::BAD_GATEWAY,
                "upstream_protocol_error",
                Upstream,
                false,
            ),
            ProxyError::Timeout { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                Upstream,
                true,
            ),
            ProxyError::Function(e) => match e {
                crate::wasm::function::error::FunctionError::Timeout { .. } => (
                    StatusCode::GATEWAY_TIMEOUT,
                    "function_timeout",
                    Upstream,
                    true,
                ),
                e if e.is_limit() => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "function_unavailable",
                    Upstream,
                    true,
                ),
                _ => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "function_failed",
                    Upstream,
                    false,
                ),
            },
            ProxyError::Filter(e) => match e.error {
                crate::filter::FilterError::Unavailable(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "filter_unavailable",
                    Filter,
                    true,
                ),
                // Never sent: the stream is reset instead.
                crate::filter::FilterError::Reset => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "stream_reset",
                    Filter,
                    false,
                ),
                _ => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "filter_failed",
                    Filter,
                    false,
                ),
            },
        };
        Class {
            status,
            code,
            origin,
            retryable,
        }
    }

    /// Status and short machine-readable code for this error.
    pub fn status(&self) -> (StatusCode, &'static str) {
        let c = self.class();
        (c.status, c.code)
    }

    /// What the client is told: the kind of failure, never internal detail (endpoint addresses, trap
    /// messages, the upstream's own words), which goes to the log line with the same request id.
    pub fn public_message(&self) -> std::borrow::Cow<'static, str> {
        match self {
            ProxyError::NoRoute => "no route matches this request".into(),
            ProxyError::BodyTooLarge { limit } => {
                format!("the request body exceeds the limit of {limit} bytes").into()
            }
            ProxyError::BadRequestBody(_) => "the request body could not be read".into(),
            ProxyError::BadTarget(e) => format!("bad request target: {e}").into(),
            ProxyError::UriTooLong => "request target too long".into(),
            ProxyError::TooManyHeaders => "too many header fields".into(),
            ProxyError::MethodNotAllowed => "method not allowed".into(),
            ProxyError::UpgradeRefused(why) => format!("upgrade refused: {why}").into(),
            ProxyError::NoHealthyEndpoint { .. } => "no healthy upstream endpoint".into(),
            ProxyError::Connect { .. } => "the upstream could not be reached".into(),
            ProxyError::Protocol { .. } => "the exchange with the upstream failed".into(),
            ProxyError::Timeout { .. } => "the upstream did not answer in time".into(),
            ProxyError::Function(e) => match e {
                crate::wasm::function::error::FunctionError::Timeout { .. } => {
                    "the function did not answer in time".into()
                }
                e if e.is_limit() => "the function is unavailable".into(),
                _ => "the function failed".into(),
            },
            ProxyError::Filter(e) => match e.error {
                crate::filter::FilterError::Unavailable(_) => {
                    format!("filter `{}` is unavailable", e.plugin).into()
                }
                crate::filter::FilterError::Reset => {
                    format!("filter `{}` closed the stream", e.plugin).into()
                }
                _ => format!("filter `{}` failed", e.plugin).into(),
            },
        }
    }

    /// The endpoint involved, if any.
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            ProxyError::Connect { endpoint, .. }
            | ProxyError::Protocol { endpoint, .. }
            | ProxyError::Timeout { endpoint, .. } => Some(endpoint),
            _ => None,
        }
    }
}

/// The stable code of a status the gateway answers with itself: its reason phrase in snake case
/// (`431` -> `request_header_fields_too_large`).
pub fn status_code(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "payload_too_large",
        414 => "uri_too_long",
        431 => "request_header_fields_too_large",
        500 => "internal",
        501 => "not_implemented",
        503 => "unavailable",
        505 => "http_version_not_supported",
        _ => "error",
    }
}

/// A request's id: made by the gateway per request, or the client's `x-request-id` on a listener
/// that trusts it. It is sent to the upstream, written in error bodies and in log lines.
#[derive(Debug, Clone)]
pub struct RequestId {
    seq: u64,
    value: http::HeaderValue,
    /// The request's gRPC protocol, if it is a gRPC call: only then does an error answer carry
    /// what a gRPC client is told instead ([`Made`]).
    grpc: Option<grpc::Protocol>,
}

/// The request id header.
pub const REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// The most bytes of a client's `x-request-id` that a trusting listener takes (longer ones are
/// replaced). Default: 128.
pub const MAX_REQUEST_ID: usize = 128;

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static ID_SALT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// The bytes of id text each thread writes ids into before it starts another buffer: the ids of
/// one buffer share it (a reference count each), so that an id costs no allocation of its own. A
/// buffer is freed when the last of its ids is. Default: 1 KiB (64 ids).
const ID_BUFFER: usize = 1024;

thread_local! {
    static ID_TEXT: std::cell::RefCell<bytes::BytesMut> =
        std::cell::RefCell::new(bytes::BytesMut::new());
}

impl RequestId {
    /// A new id: 16 hex digits, unique in this process and unlikely to repeat across restarts.
    pub fn new() -> RequestId {
        let seq = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        RequestId {
            seq,
            value: Self::text(seq),
            grpc: None,
        }
    }

    fn text(seq: u64) -> http::HeaderValue {
        let salt = *ID_SALT.get_or_init(rand::random::<u64>);
        // A bijection of the counter, so that ids of one process never repeat.
        let v = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 16];
        for (i, b) in out.iter_mut().enumerate() {
            *b = HEX[((v >> (60 - 4 * i)) & 15) as usize];
        }
        // Written into the thread's shared buffer rather than a copy of its own (which, cloned
        // into the upstream request, would take a second allocation for the shared count).
        let shared = ID_TEXT.with(|buf| {
            let mut buf = buf.borrow_mut();
            if buf.capacity() < out.len() {
                *buf = bytes::BytesMut::with_capacity(ID_BUFFER);
            }
            buf.extend_from_slice(&out);
            buf.split_to(out.len()).freeze()
        });
        http::HeaderValue::from_maybe_shared(shared).expect("hex is a header value")
    }

    /// The id the gateway gives the request numbered `seq` (what its `x-request-id` and error body
    /// say, unless the listener trusts the client's id), for log lines that know only the number.
    pub fn text_of(seq: u64) -> String {
        Self::text(seq).to_str().unwrap_or("-").to_owned()
    }

    /// The client's id if it is one the gateway can carry (visible ASCII, at most
    /// [`MAX_REQUEST_ID`] bytes), else a new one.
    pub fn from_client(value: Option<&http::HeaderValue>) -> RequestId {
        match value {
            Some(v)
                if !v.is_empty()
                    && v.len() <= MAX_REQUEST_ID
                    && v.as_bytes().iter().all(|b| b.is_ascii_graphic()) =>
            {
                RequestId {
                    seq: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                    value: v.clone(),
                    grpc: None,
                }
            }
            _ => RequestId::new(),
        }
    }

    /// The id of a request in `protocol` (its content type's, [`grpc::protocol`]).
    pub fn with_grpc(mut self, protocol: Option<grpc::Protocol>) -> RequestId {
        self.grpc = protocol;
        self
    }

    /// The request's gRPC protocol, if it is a gRPC call.
    pub fn grpc(&self) -> Option<grpc::Protocol> {
        self.grpc
    }

    /// The id as a header value.
    pub fn header(&self) -> &http::HeaderValue {
        &self.value
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        self.value.to_str().unwrap_or("-")
    }

    /// The process-unique number of the request (the filters' numeric request id).
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId::new()
    }
}

/// The response for an error: its status, `x-request-id`, and the one body shape of every error the
/// gateway answers, `{"error": code, "message": text, "request_id": id}`. The detail is logged with
/// the same request id (5xx at warn, 4xx at debug).
pub fn respond(err: &ProxyError, id: &RequestId) -> Response<Body> {
    let class = err.class();
    if class.status.is_server_error() {
        tracing::warn!(request_id = id.as_str(), code = class.code, error = %err, "request failed");
    } else {
        tracing::debug!(request_id = id.as_str(), code = class.code, error = %err, "request refused");
    }
    error_response(class.status, class.code, &err.public_message(), id)
}

/// The body of every error the gateway answers itself.
pub fn error_body(code: &str, message: &str, id: &RequestId) -> String {
    serde_json::json!({ "error": code, "message": message, "request_id": id.as_str() }).to_string()
        + "\n"
}

/// An error response with the body shape of [`respond`].
pub fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    id: &RequestId,
) -> Response<Body> {
    let mut resp = Response::new(full(error_body(code, message, id)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    h.insert(REQUEST_ID, id.header().clone());
    // Only a gRPC client is told something else (`grpc_form`): no cost for the others.
    if id.grpc.is_some() {
        resp.extensions_mut().insert(Made {
            status,
            grpc: grpc_code(status, code),
            message: message.to_owned(),
        });
    }
    resp
}

/// Marks a response the gateway made for an error of its own ([`error_response`]) or a filter's
/// local answer that is not a 2xx: what it tells a gRPC client instead ([`grpc_form`]).
#[derive(Debug, Clone)]
pub struct Made {
    /// The status it was made with (a response filter may change it since).
    pub status: StatusCode,
    /// The gRPC status it stands for.
    pub grpc: Code,
    /// The message the client is told.
    pub message: String,
}

/// The gRPC status of an error the gateway answers, by its stable code, else by its HTTP status
/// ([`grpc::code_of_http`]). The table is README.md's ("gRPC: errors the gateway makes").
pub fn grpc_code(status: StatusCode, code: &str) -> Code {
    match code {
        "no_route" => Code::Unimplemented,
        "body_too_large" => Code::ResourceExhausted,
        "upstream_timeout" | "function_timeout" => Code::DeadlineExceeded,
        "no_healthy_endpoint"
        | "upstream_connect_failure"
        | "upstream_protocol_error"
        | "upgrade_failed"
        | "filter_unavailable"
        | "function_unavailable" => Code::Unavailable,
        "filter_failed" | "function_failed" => Code::Internal,
        _ => grpc::code_of_http(status),
    }
}

/// Answers a gRPC request's error in gRPC form: a response the gateway made ([`Made`]) becomes the
/// trailers-only answer (HTTP 200, `grpc-status`, `grpc-message`) of `protocol`. The one place where
/// gateway errors and filters' local answers are turned for gRPC clients; an answer that already has
/// a `grpc-status`, and every upstream answer, stay as they are.
pub fn grpc_form(resp: &mut Response<Body>, protocol: grpc::Protocol) {
    let Some(made) = resp.extensions_mut().remove::<Made>() else {
        return;
    };
    if resp.headers().contains_key(grpc::GRPC_STATUS) {
        return;
    }
    // A response filter that changed the status changed what the error is; one that made it a
    // success answered for itself.
    let code = match resp.status() == made.status {
        true => made.grpc,
        false if resp.status().is_success() => return,
        false => grpc::code_of_http(resp.status()),
    };
    grpc::make_trailers_only(resp, protocol, code, &made.message);
}

/// The message a gRPC client is told for a filter's local answer: its body when that is short text
/// (or the `message` of a JSON object), else the status's reason phrase.
pub fn local_message(status: StatusCode, body: &[u8]) -> String {
    /// The longest body taken as the message. Default: 1 KiB.
    const MAX: usize = 1024;
    let reason = || status.canonical_reason().unwrap_or("error").to_owned();
    if body.len() > MAX {
        return reason();
    }
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice(body) {
        if let Some(serde_json::Value::String(m)) = o.get("message") {
            return m.clone();
        }
    }
    match std::str::from_utf8(body).map(str::trim) {
        Ok(t) if !t.is_empty() => t.to_owned(),
        _ => reason(),
    }
}

/// A small JSON error response with a new request id (for answers outside a proxied request, such
/// as the admin API's).
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    error_response(status, code, message, &RequestId::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let e = |err: ProxyError| err.status().0.as_u16();
        assert_eq!(e(ProxyError::NoRoute), 404);
        assert_eq!(e(ProxyError::BodyTooLarge { limit: 1 }), 413);
        assert_eq!(
            e(ProxyError::NoHealthyEndpoint {
                upstream: "u".into()
            }),
            503
        );
        let connect = ProxyError::Connect {
            endpoint: "e".into(),
            detail: "refused".into(),
        };
        assert_eq!(connect.endpoint(), Some("e"));
        assert_eq!(e(connect), 502);
        assert_eq!(
            e(ProxyError::Timeout {
                endpoint: "e".into(),
                after_ms: 5
            }),
            504
        );
    }

    #[test]
    fn grpc_form_of_the_gateways_answers() {
        let id = RequestId::new().with_grpc(Some(grpc::Protocol::Grpc));
        let grpc = |resp: &mut Response<Body>| {
            grpc_form(resp, grpc::Protocol::Grpc);
            let h = resp.headers();
            let v = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_owned());
            (resp.status().as_u16(), v("grpc-status"), v("grpc-message"))
        };
        let some = |s: &str| Some(s.to_owned());
        let mut r = respond(&ProxyError::NoRoute, &id);
        assert_eq!(
            grpc(&mut r),
            (200, some("12"), some("no route matches this request"))
        );
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()[REQUEST_ID], id.as_str());
        let timeout = ProxyError::Timeout {
            endpoint: "e".into(),
            after_ms: 5,
        };
        assert_eq!(grpc(&mut respond(&timeout, &id)).1, some("4"));
        // A response filter changed the status: its code; made it a success: left alone.
        let mut r = respond(&timeout, &id);
        *r.status_mut() = StatusCode::FORBIDDEN;
        assert_eq!(grpc(&mut r).1, some("7"));
        let mut r = respond(&timeout, &id);
        *r.status_mut() = StatusCode::OK;
        assert_eq!(grpc(&mut r), (200, None, None));
        // An answer with its own grpc-status, and one the gateway did not make, stay as they are.
        let mut r = respond(&ProxyError::NoRoute, &id);
        r.headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(grpc(&mut r), (404, some("5"), None));
        let mut r = Response::new(full("upstream"));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        assert_eq!(grpc(&mut r), (503, None, None));
    }

    #[test]
    fn only_a_grpc_requests_errors_carry_their_grpc_form() {
        // Another client's error costs nothing for gRPC: no message copied, no extension.
        let plain = RequestId::new();
        let r = respond(&ProxyError::NoRoute, &plain);
        assert!(r.extensions().get::<Made>().is_none());
        assert!(r.extensions().is_empty());
        let web = RequestId::new().with_grpc(Some(grpc::Protocol::GrpcWeb));
        let made = respond(&ProxyError::NoRoute, &web)
            .extensions_mut()
            .remove::<Made>()
            .unwrap();
        assert_eq!(made.grpc, Code::Unimplemented);
    }

    #[test]
    fn local_messages() {
        let m = |status: u16, body: &str| {
            local_message(StatusCode::from_u16(status).unwrap(), body.as_bytes())
        };
        assert_eq!(
            m(401, "{\"error\":\"x\",\"message\":\"key missing\"}"),
            "key missing"
        );
        assert_eq!(m(403, "denied by authz\n"), "denied by authz");
        assert_eq!(m(429, ""), "Too Many Requests");
        assert_eq!(m(403, &"x".repeat(2000)), "Forbidden");
    }

    #[test]
    fn request_ids_are_distinct_hex_across_id_buffers() {
        // Enough ids to fill a few of the thread's shared buffers, with some still held.
        let n = ID_BUFFER / 16 * 3 + 5;
        let ids: Vec<RequestId> = (0..n).map(|_| RequestId::new()).collect();
        let mut seen = std::collections::HashSet::new();
        for id in &ids {
            let text = id.as_str();
            assert_eq!(text.len(), 16, "{text}");
            assert!(text
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert_eq!(id.header().as_bytes(), text.as_bytes());
            assert!(seen.insert(text.to_owned()), "{text} repeated");
        }
    }
}
