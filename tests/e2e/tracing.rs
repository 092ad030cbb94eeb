//! OpenTelemetry tracing (`server.tracing`): spans for the request, its filter stages and its
//! upstream tries, checked as an OTLP receiver in the test decodes them; trace headers read from
//! the client and written to the upstream; sampling; an unreachable collector and a full queue.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// Spans as they arrived, each with its resource's attributes.
type Kept = Arc<Mutex<Vec<(Vec<KeyValue>, Span)>>>;

/// An OTLP receiver (HTTP/protobuf on `/v1/traces`, and gRPC `TraceService/Export` answered
/// trailers-only) that keeps every span it decodes, with its resource's attributes.
pub struct Collector {
    pub addr: SocketAddr,
    spans: Kept,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collector {
    pub async fn start() -> Collector {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let spans: Kept = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = tcp.accept().await else {
                    return;
                };
                let kept = kept.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let kept = kept.clone();
                        async move {
                            let grpc = req.uri().path().ends_with("TraceService/Export");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let msg = if grpc { body.slice(5..) } else { body };
                            let m: ExportTraceServiceRequest =
                                prost::Message::decode(msg).expect("an OTLP trace export");
                            for rs in m.resource_spans {
                                let res = rs.resource.map(|r| r.attributes).unwrap_or_default();
                                for ss in rs.scope_spans {
                                    for s in ss.spans {
                                        kept.lock().unwrap().push((res.clone(), s));
                                    }
                                }
                            }
                            let mut resp = http::Response::new(Full::new(Bytes::new()));
                            if grpc {
                                let h = resp.headers_mut();
                                h.insert("content-type", "application/grpc".parse().unwrap());
                                h.insert("grpc-status", "0".parse().unwrap());
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Collector { addr, spans, task }
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }

    pub fn resource(&self) -> Vec<KeyValue> {
        self.spans.lock().unwrap()[0].0.clone()
    }

    /// Waits until `n` spans of the trace `trace` arrived (or 10 s passed), and returns them.
    pub async fn trace(&self, trace: &[u8], n: usize) -> Vec<Span> {
        let of_trace = || -> Vec<Span> {
            self.spans()
                .into_iter()
                .filter(|s| s.trace_id == trace)
                .collect()
        };
        eventually(Duration::from_secs(10), async || of_trace().len() >= n).await;
        of_trace()
    }
}

/// The string or integer value of attribute `key`.
pub fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    let v = attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `00-{trace}-{span}-{flags}` split into its fields.
fn traceparent(v: &str) -> (String, String, String) {
    let p: Vec<&str> = v.split('-').collect();
    assert_eq!(p.len(), 4, "{v}");
    assert_eq!(p[0], "00", "{v}");
    (p[1].into(), p[2].into(), p[3].into())
}

/// A route `r` to the mock `up` through the built-in `cors` filter, retrying a 503 once.
pub fn config(tracing: &str, up: SocketAddr) -> String {
    format!(
        "server:\n  access_log: {{enabled: false}}\n  tracing:\n{tracing}\
         upstreams:\n  - name: up\n    endpoints: [{{address: \"{up}\"}}]\n\
         routes:\n  - name: r\n    upstream: up\n    retry: {{attempts: 2, on: [503]}}\n\
         \x20   filters: [{{plugin: cors, config: {{allow_origins: [\"https://a.example\"]}}}}]\n"
    )
}

fn to(c: &Collector) -> String {
    format!(
        "    endpoint: http://{}/v1/traces\n    scheduled_delay: 50ms\n",
        c.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_filter_and_a_retry_makes_linked_spans_and_the_upstream_continues_the_trace(
) {
    let up = MockUpstream::start("up").await;
    let c = Collector::start().await;
    let tracing = format!(
        "{}    resource: {{service.name: edge, deployment.environment: test}}\n",
        to(&c)
    );
    let gw = TestGateway::start(&config(&tracing, up.addr)).await;
    up.fail_next(1, 503);
    let incoming_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let incoming_span = "00f067aa0ba902b7";
    let tp = format!("00-{incoming_trace}-{incoming_span}-01");
    let (s, _, _) = get_with(
        &gw.url("/items?x=1"),
        &[
            ("traceparent", &tp),
            ("tracestate", "vendor=abc"),
            ("origin", "https://a.example"),
        ],
    )
    .await;
    assert_eq!(s, 200);

    // Request span, two stage calls (request and response headers), two upstream tries.
    let spans = c.trace(&unhex(incoming_trace), 5).await;
    assert_eq!(spans.len(), 5, "{spans:#?}");
    let server: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(server.len(), 1, "{spans:#?}");
    let server = server[0];
    assert_eq!(
        hex(&server.parent_span_id),
        incoming_span,
        "the client's span is the parent"
    );
    assert_eq!(server.name, "GET r");
    let a = &server.attributes;
    assert_eq!(attr(a, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(attr(a, "url.path").as_deref(), Some("/items"));
    assert_eq!(attr(a, "http.route").as_deref(), Some("r"));
    assert_eq!(attr(a, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr(a, "gateway.listener").as_deref(), Some("main"));
    assert!(
        attr(a, "gateway.request_id").is_some_and(|id| id.len() == 16),
        "{a:?}"
    );
    assert_eq!(server.trace_state, "vendor=abc");
    let resource = c.resource();
    assert_eq!(attr(&resource, "service.name").as_deref(), Some("edge"));
    assert_eq!(
        attr(&resource, "deployment.environment").as_deref(),
        Some("test")
    );

    let stages: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Internal as i32)
        .collect();
    let phases: Vec<String> = stages
        .iter()
        .map(|s| attr(&s.attributes, "gateway.plugin.phase").unwrap())
        .collect();
    assert_eq!(stages.len(), 2, "{stages:#?}");
    assert!(
        phases.contains(&"request_headers".to_string()),
        "{phases:?}"
    );
    assert!(
        phases.contains(&"response_headers".to_string()),
        "{phases:?}"
    );
    for s in &stages {
        assert_eq!(
            s.parent_span_id, server.span_id,
            "a stage is the request's child"
        );
        assert_eq!(
            attr(&s.attributes, "gateway.plugin.name").as_deref(),
            Some("cors")
        );
        assert_eq!(
            attr(&s.attributes, "gateway.plugin.verdict").as_deref(),
            Some("continue")
        );
    }

    let mut tries: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    tries.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(tries.len(), 2, "{spans:#?}");
    let address = up.addr.to_string();
    for (i, t) in tries.iter().enumerate() {
        assert_eq!(
            t.parent_span_id, server.span_id,
            "a try is the request's child"
        );
        assert_eq!(attr(&t.attributes, "server.address"), Some(address.clone()));
        assert_eq!(
            attr(&t.attributes, "gateway.upstream").as_deref(),
            Some("up")
        );
        let resend = attr(&t.attributes, "http.request.resend_count");
        assert_eq!(resend, (i > 0).then(|| i.to_string()), "{t:?}");
    }
    assert_eq!(
        attr(&tries[0].attributes, "http.response.status_code").as_deref(),
        Some("503")
    );
    assert_eq!(
        tries[0].status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );
    assert_eq!(
        attr(&tries[1].attributes, "http.response.status_code").as_deref(),
        Some("200")
    );

    // Each try carried its own span as the upstream's parent, in the client's trace.
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    for (s, t) in seen.iter().zip(&tries) {
        let v = s.headers["traceparent"].to_str().unwrap();
        let (trace, span, flags) = traceparent(v);
        assert_eq!(trace, incoming_trace);
        assert_eq!(span, hex(&t.span_id));
        assert_eq!(flags, "01");
        assert_eq!(s.headers["tracestate"], "vendor=abc");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_valid_traceparent_starts_a_trace_and_ratio_zero_exports_nothing() {
    let up = MockUpstream::start("up").await;
    let c = Collector::start().await;
    let gw = TestGateway::start(&config(&to(&c), up.addr)).await;
    // An invalid traceparent (all-zero trace id) is not continued.
    let bad = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    assert_eq!(
        get_with(&gw.url("/a"), &[("traceparent", bad)]).await.0,
        200
    );
    let v = up.last().headers["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    let (trace, _, flags) = traceparent(&v);
    assert_ne!(trace, "00000000000000000000000000000000");
    assert_eq!(flags, "01", "ratio 1 samples every new trace");
    let spans = c.trace(&unhex(&trace), 4).await;
    assert_eq!(
        spans.len(),
        4,
        "request, two stage calls, one try: {spans:#?}"
    );
    let server = spans.iter().find(|s| s.kind == SpanKind::Server as i32);
    assert!(server.unwrap().parent_span_id.is_empty(), "a root span");

    // Ratio 0: nothing is recorded, the upstream still gets ids (not sampled); a sampled parent
    // is still followed.
    let c0 = Collector::start().await;
    let tracing = format!("{}    sampling_ratio: 0\n", to(&c0));
    let gw = TestGateway::start(&config(&tracing, up.addr)).await;
    for _ in 0..5 {
        assert_eq!(get(&gw.url("/b")).await.0, 200);
    }
    let v = up.last().headers["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    let (_, _, flags) = traceparent(&v);
    assert_eq!(flags, "00");
    let sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    assert_eq!(
        get_with(&gw.url("/c"), &[("traceparent", sampled)]).await.0,
        200
    );
    let spans = c0
        .trace(&unhex("0af7651916cd43dd8448eb211c80319c"), 4)
        .await;
    assert_eq!(
        spans.len(),
        4,
        "a sampled parent is kept whatever the ratio"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c0.spans().len(), 4, "nothing of the unsampled requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b3_headers_are_read_and_written_when_configured_and_grpc_export_works() {
    let up = MockUpstream::start("up").await;
    let c = Collector::start().await;
    let tracing = format!(
        "    endpoint: http://{}\n    protocol: grpc\n    scheduled_delay: 50ms\n    propagation: [b3, b3_multi, w3c]\n",
        c.addr
    );
    let gw = TestGateway::start(&config(&tracing, up.addr)).await;
    let b3 = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1";
    assert_eq!(get_with(&gw.url("/a"), &[("b3", b3)]).await.0, 200);
    let h = up.last().headers;
    let (trace, span, _) = traceparent(h["traceparent"].to_str().unwrap());
    assert_eq!(trace, "80f198ee56343ba864fe8b2a57d3eff7");
    assert_eq!(
        h["b3"].to_str().unwrap(),
        format!("{trace}-{span}-1"),
        "the single header names the same span"
    );
    assert_eq!(h["x-b3-traceid"], trace.as_str());
    assert_eq!(h["x-b3-spanid"], span.as_str());
    assert_eq!(h["x-b3-sampled"], "1");
    let spans = c.trace(&unhex(&trace), 4).await;
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("the request span, over OTLP/gRPC");
    assert_eq!(hex(&server.parent_span_id), "e457b5a2e4d86bd1");

    // Several headers without a decision: the gateway's ratio (1) decides, and says so upstream.
    let multi = [
        ("x-b3-traceid", "a0f198ee56343ba864fe8b2a57d3eff7"),
        ("x-b3-spanid", "e457b5a2e4d86bd2"),
    ];
    assert_eq!(get_with(&gw.url("/b"), &multi).await.0, 200);
    let h = up.last().headers;
    assert_eq!(h["x-b3-traceid"], "a0f198ee56343ba864fe8b2a57d3eff7");
    assert_eq!(h["x-b3-sampled"], "1");
    assert_eq!(
        c.trace(&unhex("a0f198ee56343ba864fe8b2a57d3eff7"), 4)
            .await
            .len(),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_stuck_collector_never_holds_requests_and_a_full_queue_drops_and_counts()
{
    let up = MockUpstream::start("up").await;
    // A collector that accepts connections and never answers: the exporter waits for its timeout
    // while spans pile up in a queue of 4.
    let stuck = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stuck_addr = stuck.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = stuck.accept().await {
            conns.push(s);
        }
    });
    let tracing = format!(
        "    endpoint: http://{stuck_addr}/v1/traces\n    scheduled_delay: 10ms\n    export_timeout: 30s\n    max_queue_size: 4\n    max_export_batch_size: 2\n"
    );
    let gw = TestGateway::start(&config(&tracing, up.addr)).await;
    // 20 requests of 4 spans each, in parallel, each given 5 s: a gateway whose requests waited
    // on the export (30 s) could not answer them.
    let calls = (0..20).map(|i| {
        let url = gw.url(&format!("/q{i}"));
        async move { tokio::time::timeout(Duration::from_secs(5), get(&url)).await }
    });
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.expect("answered while the collector is stuck").0, 200);
    }
    let m = gw.metrics().await;
    let dropped = metric(&m, "gateway_tracing_spans_dropped_total").unwrap_or(0.0);
    assert!(
        dropped >= 70.0,
        "80 spans, 2 in export and 4 queued at most: {dropped}\n{m}"
    );
    held.abort();

    // A collector nobody listens on: exports fail and are counted, requests are served.
    let closed = free_port();
    let tracing = format!(
        "    endpoint: http://127.0.0.1:{closed}/v1/traces\n    scheduled_delay: 10ms\n    export_timeout: 1s\n"
    );
    let gw = TestGateway::start(&config(&tracing, up.addr)).await;
    for i in 0..5 {
        let url = gw.url(&format!("/r{i}"));
        let r = tokio::time::timeout(Duration::from_secs(5), get(&url)).await;
        assert_eq!(r.expect("answered").0, 200);
    }
    let failed = eventually(Duration::from_secs(10), async || {
        let m = gw.metrics().await;
        metric(&m, "gateway_tracing_spans_failed_total").unwrap_or(0.0) >= 20.0
    })
    .await;
    assert!(failed, "{}", gw.metrics().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tracing_block_is_refused_at_its_field() {
    let up = MockUpstream::start("up").await;
    for (block, field, what) in [
        (
            "    sampling_ratio: 1.5\n",
            "server.tracing.sampling_ratio",
            "between 0 and 1",
        ),
        (
            "    endpoint: https://collector:4318/v1/traces\n",
            "server.tracing.endpoint",
            "unsupported",
        ),
        (
            "    propagation: [jaeger]\n",
            "server.tracing.propagation",
            "jaeger",
        ),
    ] {
        let e = refused(&config(block, up.addr)).await;
        assert!(e.contains(field) && e.contains(what), "{block}: {e}");
    }
}

/// The value of attribute `key` on the stage span of `plugin` in `phase`.
fn stage<'a>(spans: &'a [Span], plugin: &str, phase: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| {
            attr(&s.attributes, "gateway.plugin.name").as_deref() == Some(plugin)
                && attr(&s.attributes, "gateway.plugin.phase").as_deref() == Some(phase)
        })
        .unwrap_or_else(|| panic!("no {plugin} {phase} span in {spans:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_add_attributes_and_events_to_their_stage_span_and_callouts_continue_it() {
    let up = MockUpstream::start("up").await;
    let callee = MockUpstream::start("callee").await;
    let c = Collector::start().await;
    let comps = xtask::component_fixtures().unwrap_or_else(|e| panic!("{e}"));
    let pw = xtask::proxy_wasm_fixtures().unwrap_or_else(|e| panic!("{e}"));
    let go = xtask::go::go_kitchen().unwrap_or_else(|e| panic!("{e}"));
    let yaml = format!(
        "server:\n  access_log: {{enabled: false}}\n  tracing:\n{}\
         plugins:\n  - name: rust-kitchen\n    path: {}\n  - name: pw-kitchen\n    path: {}\n\
         \x20 - name: go-kitchen\n    path: {}\n    instance_mode: reuse\n\
         upstreams:\n  - name: up\n    endpoints: [{{address: \"{}\"}}]\n\
         \x20 - name: mock\n    endpoints: [{{address: \"{}\"}}]\n\
         routes:\n  - name: r\n    upstream: up\n    filters:\n\
         \x20     - {{plugin: rust-kitchen, config: \"request-body=skip\"}}\n\
         \x20     - {{plugin: pw-kitchen, config: \"tag=t\"}}\n\
         \x20     - {{plugin: go-kitchen}}\n",
        to(&c),
        comps.kitchen.display(),
        pw.kitchen.display(),
        go.display(),
        up.addr,
        callee.addr,
    );
    let gw = TestGateway::start(&yaml).await;
    let trace = "11111111111111111111111111111111";
    let tp = format!("00-{trace}-2222222222222222-01");
    let (s, _, _) = get_with(
        &gw.url("/x"),
        &[
            ("traceparent", &tp),
            ("x-trace-attr", "v1"),
            ("x-test", "callout"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(hv(&up.last().headers, "x-span-calls"), "ok");
    let spans = c.trace(&unhex(trace), 8).await;
    for plugin in ["rust-kitchen", "pw-kitchen", "go-kitchen"] {
        let s = stage(&spans, plugin, "request_headers");
        assert_eq!(
            attr(&s.attributes, "fixture.attr").as_deref(),
            Some("v1"),
            "{plugin}: {s:#?}"
        );
        let e = s.events.iter().find(|e| e.name == "fixture.event");
        let e = e.unwrap_or_else(|| panic!("{plugin}: no event in {s:#?}"));
        assert_eq!(attr(&e.attributes, "fixture.value").as_deref(), Some("v1"));
        // Nothing lands on the response's span.
        let r = stage(&spans, plugin, "response_headers");
        assert_eq!(attr(&r.attributes, "fixture.attr"), None);
    }
    // The Proxy-Wasm filter's callout carried its stage span as the parent.
    let pw_span = stage(&spans, "pw-kitchen", "request_headers");
    let v = callee.last().headers["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    let (t, parent, _) = traceparent(&v);
    assert_eq!(t, trace);
    assert_eq!(parent, hex(&pw_span.span_id));

    // Untraced (tracing off), the same calls are no-ops: the request is served as before.
    let plain = yaml.replace(&format!("  tracing:\n{}", to(&c)), "");
    let gw = TestGateway::start(&plain).await;
    let (s, _, _) = get_with(&gw.url("/x"), &[("x-trace-attr", "v2")]).await;
    assert_eq!(s, 200);
    assert_eq!(hv(&up.last().headers, "x-span-calls"), "ok");
    assert!(up.last().headers.get("traceparent").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_or_looping_filter_call_is_an_error_on_its_span_and_the_request_span() {
    let up = MockUpstream::start("up").await;
    let c = Collector::start().await;
    let pw = xtask::proxy_wasm_fixtures().unwrap_or_else(|e| panic!("{e}"));
    let yaml = format!(
        "server:\n  access_log: {{enabled: false}}\n  tracing:\n{}\
         plugins:\n  - name: hostile\n    path: {}\n    limits: {{memory: 16MiB, cpu_per_call: 250ms}}\n\
         upstreams:\n  - name: up\n    endpoints: [{{address: \"{}\"}}]\n\
         routes:\n  - name: r\n    upstream: up\n    filters: [{{plugin: hostile}}]\n",
        to(&c),
        pw.hostile.display(),
        up.addr,
    );
    let gw = TestGateway::start(&yaml).await;
    for (i, (mode, kind)) in [("trap", "trap"), ("loop", "cpu_limit")].iter().enumerate() {
        let trace = format!("{:032x}", 0xabc0 + i);
        let tp = format!("00-{trace}-3333333333333333-01");
        let (s, _, _) = get_with(&gw.url("/x"), &[("traceparent", &tp), ("x-hostile", mode)]).await;
        assert_eq!(s, 500, "{mode}");
        let spans = c.trace(&unhex(&trace), 2).await;
        let call = stage(&spans, "hostile", "request_headers");
        assert_eq!(
            call.status.as_ref().map(|s| s.code),
            Some(StatusCode::Error as i32),
            "{mode}: {call:#?}"
        );
        assert_eq!(attr(&call.attributes, "error.type").as_deref(), Some(*kind));
        assert_eq!(
            attr(&call.attributes, "gateway.plugin.verdict").as_deref(),
            Some("fail")
        );
        let server = spans.iter().find(|s| s.kind == SpanKind::Server as i32);
        let server = server.unwrap_or_else(|| panic!("{spans:#?}"));
        assert_eq!(
            attr(&server.attributes, "http.response.status_code").as_deref(),
            Some("500")
        );
        assert_eq!(
            server.status.as_ref().map(|s| s.code),
            Some(StatusCode::Error as i32)
        );
        assert!(
            !spans.iter().any(|s| s.kind == SpanKind::Client as i32),
            "no upstream try"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_values_reach_the_upstream_but_not_the_collector() {
    let up = MockUpstream::start("up").await;
    let c = Collector::start().await;
    let gw = TestGateway::start(&config(&to(&c), up.addr)).await;
    let trace = "5bf92f3577b34da6a3ce929d0e0e4736";
    let tp = format!("00-{trace}-00f067aa0ba902b7-01");
    let url = gw.url("/items?apikey=s3cr3t-k3y&page=2&flag");
    let (s, _, _) = get_with(&url, &[("traceparent", &tp)]).await;
    assert_eq!(s, 200);
    assert!(
        up.last()
            .uri
            .ends_with("/items?apikey=s3cr3t-k3y&page=2&flag"),
        "the upstream gets the query as sent: {}",
        up.last().uri
    );
    let spans = c.trace(&unhex(trace), 4).await;
    let server = spans.iter().find(|s| s.kind == SpanKind::Server as i32);
    let server = server.unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(
        attr(&server.attributes, "url.query").as_deref(),
        Some("apikey=REDACTED&page=REDACTED&flag")
    );
    let tried = spans.iter().find(|s| s.kind == SpanKind::Client as i32);
    let full = attr(&tried.expect("a try").attributes, "url.full").unwrap();
    assert!(
        full.ends_with("/items?apikey=REDACTED&page=REDACTED&flag"),
        "{full}"
    );
    for s in &spans {
        for kv in &s.attributes {
            let v = format!("{:?}", kv.value);
            assert!(!v.contains("s3cr3t"), "{}: {v} in {s:#?}", kv.key);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uppercase_traceparent_starts_a_trace_and_tracestate_is_held_to_its_bounds() {
    let up = MockUpstream::start("up").await;
    let c = Collector::start().await;
    let gw = TestGateway::start(&config(&to(&c), up.addr)).await;
    let trace = "6bf92f3577b34da6a3ce929d0e0e4736";
    // Uppercase flags: not a valid traceparent, so not continued.
    let upper = format!("00-{trace}-00f067aa0ba902b7-0A");
    let (s, _, _) = get_with(&gw.url("/a"), &[("traceparent", &upper)]).await;
    assert_eq!(s, 200);
    let sent = up.last().headers["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(traceparent(&sent).0, trace, "{sent}");

    let tp = format!("00-{trace}-00f067aa0ba902b7-01");
    let members: Vec<String> = (0..33).map(|i| format!("k{i}=v{i}")).collect();
    // 33 members: an invalid list, dropped; the traceparent is continued.
    let (s, _, _) = get_with(
        &gw.url("/b"),
        &[("traceparent", &tp), ("tracestate", &members.join(","))],
    )
    .await;
    assert_eq!(s, 200);
    let seen = up.last();
    assert_eq!(
        traceparent(seen.headers["traceparent"].to_str().unwrap()).0,
        trace
    );
    assert!(
        seen.headers.get("tracestate").is_none(),
        "{:?}",
        seen.headers
    );
    // 32 members pass on as they are.
    let ok = members[..32].join(",");
    get_with(&gw.url("/c"), &[("traceparent", &tp), ("tracestate", &ok)]).await;
    assert_eq!(up.last().headers["tracestate"], ok.as_str());
    // Over 512 characters: the member over 128 characters goes, the rest fits.
    let ten: Vec<String> = (0..10)
        .map(|i| format!("w{i}={}", "x".repeat(36)))
        .collect();
    let wide = format!("{},big={}", ten.join(","), "y".repeat(200));
    assert!(wide.len() > 512);
    get_with(
        &gw.url("/d"),
        &[("traceparent", &tp), ("tracestate", &wide)],
    )
    .await;
    assert_eq!(up.last().headers["tracestate"], ten.join(",").as_str());
}
