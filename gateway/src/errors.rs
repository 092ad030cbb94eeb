//! The errors a request can end in, and the one place that turns them into HTTP responses.

use crate::body::{full, Body};
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
    /// CONNECT is not proxied.
    #[error("method not allowed")]
    MethodNotAllowed,
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
    /// No response headers within the route's timeout.
    #[error("upstream {endpoint} timed out after {after_ms} ms")]
    Timeout {
        /// The endpoint address (the last tried).
        endpoint: String,
        /// Elapsed time.
        after_ms: u64,
    },
}

impl ProxyError {
    /// Status and short machine-readable code for this error.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ProxyError::NoRoute => (StatusCode::NOT_FOUND, "no_route"),
            ProxyError::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ProxyError::BadRequestBody(_) => (StatusCode::BAD_REQUEST, "bad_request_body"),
            ProxyError::BadTarget(_) => (StatusCode::BAD_REQUEST, "bad_request_target"),
            ProxyError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ProxyError::NoHealthyEndpoint { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "no_healthy_endpoint")
            }
            ProxyError::Connect { .. } => (StatusCode::BAD_GATEWAY, "upstream_connect_failure"),
            ProxyError::Protocol { .. } => (StatusCode::BAD_GATEWAY, "upstream_protocol_error"),
            ProxyError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
            ProxyError::Filter(e) => match e.error {
                crate::filter::FilterError::Unavailable(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "filter_unavailable")
                }
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "filter_failed"),
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

/// The response for an error: its status and a small JSON body `{"error": code, "message": text}`.
pub fn respond(err: &ProxyError) -> Response<Body> {
    let (status, code) = err.status();
    json_error(status, code, &err.to_string())
}

/// A small JSON error response.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": code, "message": message }).to_string() + "\n";
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
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
}
