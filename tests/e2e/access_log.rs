//! The access log's fields: the default line for a request through a filter to an upstream (request
//! id, trace id, consumer, endpoint, per-phase timings), a configured field list with header fields
//! in its order, and the text form.

use crate::harness::*;
use std::time::Duration;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn config(up: &MockUpstream, server: &str) -> String {
    format!(
        "server:\n{server}  tracing:\n    endpoint: http://127.0.0.1:9/v1/traces\n\
         consumers:\n  - {{name: ann, credentials: {{key-auth: {{key: k-ann}}}}}}\n\
         upstreams:\n  - name: up\n    endpoints: [\"{}\"]\n\
         routes:\n  - name: api\n    upstream: up\n    filters: [{{plugin: key-auth}}]\n\
         \x20   response_headers: {{set: {{x-out: one}}}}\n",
        up.addr
    )
}

/// The access lines the gateway wrote so far (JSON form).
fn access(gw: &GatewayProcess) -> Vec<serde_json::Map<String, serde_json::Value>> {
    gw.log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["target"] == "access")
        .filter_map(|v| v.as_object().cloned())
        .collect()
}

async fn call(gw: &GatewayProcess) -> String {
    let traceparent = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let r = get_with(
        &gw.url("/items?page=2"),
        &[
            ("apikey", "k-ann"),
            ("traceparent", &traceparent),
            ("x-foo", "bar"),
        ],
    )
    .await;
    assert_eq!(r.0, 200, "{}", r.2);
    r.2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_line_has_every_field_right() {
    let up = MockUpstream::start("up").await;
    let gw =
        GatewayProcess::start_with_log(&config(&up, "  log_format: json\n"), "access=info").await;
    let body = call(&gw).await;
    assert!(
        eventually(Duration::from_secs(10), || async { access(&gw).len() == 1 }).await,
        "{:?}",
        gw.log.lock().unwrap()
    );
    let l = &access(&gw)[0];
    let mut keys: Vec<&str> = l.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want: Vec<&str> = gateway::access_log::DEFAULT_FIELDS.to_vec();
    want.extend(["timestamp", "level", "target"]);
    want.sort_unstable();
    assert_eq!(keys, want, "{l:?}");
    assert_eq!(l["route"], "api");
    assert_eq!(l["upstream"], "up");
    assert_eq!(l["endpoint"], up.addr.to_string());
    assert_eq!(l["client"], "127.0.0.1");
    assert_eq!(l["consumer"], "ann");
    assert!(!l["request_id"].as_str().unwrap().is_empty());
    assert_eq!(l["trace_id"], TRACE);
    let span = l["span_id"].as_str().unwrap();
    assert!(span.len() == 16 && span != "00f067aa0ba902b7", "{span}");
    assert_eq!(l["method"], "GET");
    assert_eq!(l["path"], "/items");
    assert_eq!(l["status"], 200);
    assert_eq!(l["bytes"], body.len());
    assert_eq!(l["complete"], true);
    let ms = |k: &str| l[k].as_f64().unwrap_or_else(|| panic!("{k}: {l:?}"));
    let (req, upstream, resp, total) = (
        ms("request_filters_ms"),
        ms("upstream_ms"),
        ms("response_filters_ms"),
        ms("duration_ms"),
    );
    assert!(req > 0.0 && upstream > 0.0 && resp >= 0.0, "{l:?}");
    assert!(req + upstream + resp <= total, "{l:?}");
    // The request id is the one the upstream got.
    assert_eq!(
        up.last().headers.get("x-request-id").unwrap(),
        l["request_id"].as_str().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_field_list_gives_exactly_those_fields_in_json_and_text() {
    let up = MockUpstream::start("up").await;
    let fields = "  access_log:\n    fields: [status, request_header.x-foo, response_header.x-out, request_header.x-absent, route, query]\n";
    let gw = GatewayProcess::start_with_log(
        &config(&up, &format!("{fields}  log_format: json\n")),
        "access=info",
    )
    .await;
    let _ = call(&gw).await;
    assert!(eventually(Duration::from_secs(10), || async { access(&gw).len() == 1 }).await);
    let l = &access(&gw)[0];
    let mut got: Vec<&str> = l.keys().map(String::as_str).collect();
    // In the order configured, between `level` and `target`; the absent header left out.
    let want = [
        "timestamp",
        "level",
        "status",
        "request_header.x-foo",
        "response_header.x-out",
        "route",
        "query",
        "target",
    ];
    got.sort_unstable();
    let mut sorted = want.to_vec();
    sorted.sort_unstable();
    assert_eq!(got, sorted, "{l:?}");
    let line = gw
        .log
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains(r#""target":"access""#))
        .cloned()
        .unwrap();
    let at: Vec<Option<usize>> = want
        .iter()
        .map(|k| line.find(&format!("\"{k}\":")))
        .collect();
    assert!(
        at.iter().all(Option::is_some) && at.is_sorted(),
        "keys out of order: {line}"
    );
    assert_eq!(l["request_header.x-foo"], "bar");
    assert_eq!(l["response_header.x-out"], "one");
    assert_eq!(l["query"], "page=2");

    // Text: the same fields, in the order written.
    let gw = GatewayProcess::start_with_log(&config(&up, fields), "access=info").await;
    let _ = call(&gw).await;
    let line = || {
        gw.log
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(" INFO access: "))
            .cloned()
    };
    assert!(eventually(Duration::from_secs(10), || async { line().is_some() }).await);
    let line = line().unwrap();
    let fields = line.split(" INFO access: ").nth(1).unwrap();
    assert_eq!(
        fields,
        "status=200 request_header.x-foo=bar response_header.x-out=one route=api query=page=2"
            .replace("query=page=2", "query=\"page=2\""),
        "{line}"
    );
}

/// With the access log on in the config but its target filtered out (`GATEWAY_LOG=...,access=off`),
/// no line is written while the other targets still log. (That the request then gathers nothing
/// for its line is not visible from outside the process: `access_log::gathers`, the proxy's
/// decision, has the unit test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_out_access_target_writes_no_line() {
    let up = MockUpstream::start("up").await;
    let gw = GatewayProcess::start_with_log(
        &config(&up, "  log_format: json\n  access_log: {enabled: true}\n"),
        "info,access=off",
    )
    .await;
    for _ in 0..3 {
        call(&gw).await;
    }
    // Lines are written as responses end, which the client may see first: time for them to come.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = gw.log.lock().unwrap().clone();
    assert!(
        log.iter().any(|l| l.contains(r#""level":"INFO""#)),
        "other targets log: {log:?}"
    );
    assert!(access(&gw).is_empty(), "{log:?}");
}

/// A field listed twice (which the text line would write twice) is a config error at that item's
/// line and field, at the start and on a reload, which keeps the running config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_listed_twice_is_refused_at_its_line_and_a_reload_keeps_the_config() {
    let up = MockUpstream::start("up").await;
    let yaml = |fields: &str| {
        format!(
            "server:\n  access_log:\n    fields:\n{fields}upstreams:\n  - name: up\n    endpoints: [\"{}\"]\nroutes:\n  - name: api\n    upstream: up\n",
            up.addr
        )
    };
    let twice = yaml("      - status\n      - route\n      - status\n");
    // The second `- status`, in the text the gateway reads.
    let line = config_text(&twice)
        .lines()
        .enumerate()
        .filter(|(_, l)| l.ends_with("- status"))
        .map(|(i, _)| i + 1)
        .last()
        .unwrap();
    let e = refused(&twice).await;
    assert!(
        e.contains(&format!("test.yaml:{line}:")),
        "line {line}: {e}"
    );
    assert!(
        e.contains("server.access_log.fields[2]: `status` is listed twice"),
        "{e}"
    );

    let fg = FileGateway::start(&yaml("      - status\n      - route\n")).await;
    let gw = &fg.gw;
    let before = get(&format!("http://{}/config", gw.admin)).await.2;
    fg.write(&twice);
    let (s, _, body) = admin_call(gw.admin, "POST", "/reload", "").await;
    assert_eq!(s, 400, "{body}");
    let msg = json(&body)["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains(&format!("gateway.yaml:{line}:"))
            && msg.contains("server.access_log.fields[2]: `status` is listed twice"),
        "line {line}: {msg}"
    );
    assert_eq!(get(&format!("http://{}/config", gw.admin)).await.2, before);
    assert_eq!(get(&gw.url("/items")).await.0, 200);
}
