//! Errors answered by the gateway: one body shape with a stable code and the request's id, the same
//! codes over HTTP/1 and HTTP/2, no internal detail for the client; request ids made per request and
//! taken from the client only on a listener that trusts it.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;
use std::time::Duration;

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Every error body is `{"error", "message", "request_id"}` and nothing else.
fn check_shape(body: &str, code: &str) -> String {
    let v = json(body);
    let o = v.as_object().unwrap();
    let mut keys: Vec<_> = o.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["error", "message", "request_id"], "{body}");
    assert_eq!(v["error"], code, "{body}");
    v["request_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_one_shape_and_codes_and_no_internal_detail() {
    let up = MockUpstream::start("app").await;
    let dead = free_port();
    let gw = TestGateway::start(&format!(
        "listeners:\n  - {{name: main, address: 127.0.0.1:0, limits: {{max_headers: 8}}}}\n\
         upstreams:\n  - {{name: app, endpoints: [\"{}\"]}}\n  - name: dead\n    endpoints: [\"127.0.0.1:{dead}\"]\n    health: {{passive: {{consecutive_failures: 0}}}}\n\
         routes:\n  - {{name: app, match: {{path: {{prefix: /app}}}}, upstream: app}}\n  - {{name: dead, match: {{path: {{prefix: /dead}}}}, upstream: dead}}\n",
        up.addr
    ))
    .await;
    let (s, h, body) = get(&gw.url("/nothing")).await;
    assert_eq!(s, 404);
    let id = check_shape(&body, "no_route");
    assert_eq!(h["x-request-id"], id.as_str());
    assert_eq!(id.len(), 16);

    // A connect failure names no address to the client.
    let (s, _, body) = get(&gw.url("/dead/x")).await;
    assert_eq!(s, 502);
    check_shape(&body, "upstream_connect_failure");
    assert!(!body.contains(&dead.to_string()), "{body}");

    // The same 431 code over HTTP/2 as over HTTP/1.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let mut b = http::Request::get(gw.url("/app/x"));
    for i in 0..12 {
        b = b.header(format!("x-h{i}"), "v");
    }
    let (s, _, body) = request_via(&client, b.body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(s, 431);
    check_shape(&body, "request_header_fields_too_large");
    let mut req = String::from("GET /app/x HTTP/1.1\r\nHost: x\r\n");
    for i in 0..12 {
        req += &format!("x-h{i}: v\r\n");
    }
    req += "\r\n";
    let resp = raw(gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(status_of(&resp), 431, "{resp}");
    let body = resp.split_once("\r\n\r\n").unwrap().1;
    check_shape(body, "request_header_fields_too_large");

    // Two requests, two ids.
    let a = check_shape(&get(&gw.url("/nothing")).await.2, "no_route");
    let b = check_shape(&get(&gw.url("/nothing")).await.2, "no_route");
    assert_ne!(a, b);

    // The admin API's errors have the same shape.
    let (s, _, body) = admin_call(gw.admin, "GET", "/nope", "").await;
    assert_eq!(s, 404);
    check_shape(&body, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_reach_the_upstream_and_client_ids_only_when_trusted() {
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&format!(
        "listeners:\n  - {{name: main, address: 127.0.0.1:0}}\n  - {{name: inner, address: 127.0.0.1:0, trust_request_id: true}}\n\
         upstreams:\n  - {{name: app, endpoints: [\"{}\"]}}\n\
         routes:\n  - {{name: app, match: {{}}, upstream: app}}\n",
        up.addr
    ))
    .await;
    let inner = gw.gw.as_ref().unwrap().addr("inner").unwrap();
    // Made by the gateway, whatever the client says, on an ordinary listener.
    get_with(&gw.url("/a"), &[("x-request-id", "client-1")]).await;
    let id = up.last().headers["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(id, "client-1");
    assert_eq!(id.len(), 16);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    // Taken from the client on a trusting listener; made when it has none or a bad one.
    get_with(
        &format!("http://{inner}/a"),
        &[("x-request-id", "client-1")],
    )
    .await;
    assert_eq!(up.last().headers["x-request-id"], "client-1");
    get(&format!("http://{inner}/a")).await;
    assert_eq!(up.last().headers["x-request-id"].len(), 16);
    let long = "x".repeat(200);
    get_with(
        &format!("http://{inner}/a"),
        &[("x-request-id", long.as_str())],
    )
    .await;
    assert_eq!(up.last().headers["x-request-id"].len(), 16);
    // One id per request.
    get(&gw.url("/a")).await;
    assert_ne!(up.last().headers["x-request-id"], id.as_str());
}
