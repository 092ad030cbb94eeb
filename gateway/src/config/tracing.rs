//! Distributed tracing (`server.tracing:`): where spans go (an OTLP collector), which requests are
//! traced, which trace headers are read and written, and the bounds of the export queue.

use super::Dur;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// OpenTelemetry tracing of requests. Absent: nothing is traced, and trace headers pass through
/// untouched.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    /// The OTLP receiver. Default: `http://127.0.0.1:4318/v1/traces` with `http_protobuf` (the URL is
    /// taken as it is: write the `/v1/traces` path), `http://127.0.0.1:4317` with `grpc`. Only
    /// `http://` collectors (a local agent or sidecar) are supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// How spans are sent. Default: `http_protobuf`.
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// Headers sent with every export (for example a collector's API key). Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The share of new traces recorded, from 0 to 1. A request whose `traceparent` (or B3 header)
    /// says sampled is always recorded, one that says not sampled never is (OpenTelemetry's
    /// parent-based sampler); the ratio decides for the others. Default: 1.
    #[serde(default = "default_ratio")]
    pub sampling_ratio: f64,
    /// Trace header formats read from clients (the first one present wins, in this order) and
    /// written to upstreams and plugin callouts (all of them). Default: `[w3c]`.
    #[serde(default = "default_propagation")]
    pub propagation: Vec<Propagation>,
    /// Resource attributes of every span. `service.name` defaults to `gateway`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resource: BTreeMap<String, String>,
    /// Spans waiting for export at most; a span ended while the queue is full is dropped and
    /// counted (`gateway_tracing_spans_dropped_total`). Default: 2048.
    #[serde(default = "default_queue")]
    pub max_queue_size: usize,
    /// Spans sent in one export at most. Default: 512.
    #[serde(default = "default_batch")]
    pub max_export_batch_size: usize,
    /// Longest a span waits for its batch to fill before the batch is sent. Default: 5s.
    #[serde(default = "default_delay")]
    pub scheduled_delay: Dur,
    /// Longest one export may take; then it is abandoned and its spans counted as failed. Default: 10s.
    #[serde(default = "default_export_timeout")]
    pub export_timeout: Dur,
}

/// The OTLP transport.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocol {
    /// OTLP/HTTP with a protobuf body (`POST` to the endpoint URL).
    #[default]
    HttpProtobuf,
    /// OTLP/gRPC (`TraceService/Export` over HTTP/2 without TLS).
    Grpc,
}

/// A trace header format.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Propagation {
    /// W3C Trace Context: `traceparent` and `tracestate`.
    W3c,
    /// Zipkin B3, one header: `b3: {trace id}-{span id}-{sampled}`.
    B3,
    /// Zipkin B3, several headers: `x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled`.
    B3Multi,
}

fn default_ratio() -> f64 {
    1.0
}
fn default_propagation() -> Vec<Propagation> {
    vec![Propagation::W3c]
}
fn default_queue() -> usize {
    2048
}
fn default_batch() -> usize {
    512
}
fn default_delay() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_export_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

impl Tracing {
    /// The collector's URL, as configured or by default for the protocol.
    pub fn endpoint(&self) -> &str {
        match (&self.endpoint, self.protocol) {
            (Some(e), _) => e,
            (None, OtlpProtocol::HttpProtobuf) => "http://127.0.0.1:4318/v1/traces",
            (None, OtlpProtocol::Grpc) => "http://127.0.0.1:4317",
        }
    }

    /// What is wrong with these settings, as `(field under tracing, message)`.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |f: &str, m: String| Err((f.to_owned(), m));
        match self.endpoint().parse::<http::Uri>() {
            Ok(u) if u.scheme_str() == Some("http") && u.authority().is_some() => {}
            Ok(u) if u.scheme_str() == Some("https") => {
                return bad(
                    "endpoint",
                    "unsupported: an https:// collector (export to a local agent or sidecar over http://)".into(),
                )
            }
            _ => {
                return bad(
                    "endpoint",
                    format!("`{}` is not an http:// URL", self.endpoint()),
                )
            }
        }
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return bad(
                "sampling_ratio",
                format!("{} is not between 0 and 1", self.sampling_ratio),
            );
        }
        if self.propagation.is_empty() {
            return bad(
                "propagation",
                "name at least one format (w3c, b3, b3_multi)".into(),
            );
        }
        if self.max_queue_size == 0 {
            return bad("max_queue_size", "must be at least 1".into());
        }
        if self.max_export_batch_size == 0 {
            return bad("max_export_batch_size", "must be at least 1".into());
        }
        for k in self.headers.keys() {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                return bad(&format!("headers.{k}"), "not a header name".into());
            }
        }
        for (k, v) in &self.headers {
            if http::HeaderValue::from_str(v).is_err() {
                return bad(&format!("headers.{k}"), "not a header value".into());
            }
        }
        Ok(())
    }
}
