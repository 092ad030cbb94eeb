//! The admin API: health, readiness, metrics, effective config with secrets redacted, tokens.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_metrics_and_config() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&format!(
        "upstreams:\n  - name: up\n    endpoints: [\"{}\"]\nroutes:\n  - name: api\n    upstream: up\n",
        up.addr
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/x")).await.0, 200);
    }
    let admin = |p: &str| format!("http://{}{p}", gw.admin);
    assert_eq!(get(&admin("/healthz")).await.0, 200);
    assert_eq!(get(&admin("/readyz")).await.0, 200);
    let m = gw.metrics().await;
    for want in [
        "gateway_requests_total{route=\"api\",status=\"200\"} 3",
        "gateway_request_duration_seconds_count{route=\"api\"} 3",
        "gateway_upstream_requests_total{upstream=\"up\"} 3",
        "gateway_upstream_duration_seconds_count{upstream=\"up\"} 3",
        &format!(
            "gateway_upstream_endpoint_healthy{{upstream=\"up\",endpoint=\"{}\"}} 1",
            up.addr
        ),
        "gateway_connections_total",
        "gateway_connections_active",
    ] {
        assert!(m.contains(want), "missing `{want}` in\n{m}");
    }
    let (s, h, body) = get(&admin("/config")).await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "application/json");
    let cfg: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cfg["routes"][0]["name"], "api");
    assert_eq!(get(&admin("/nope")).await.0, 404);
    let post = http::Request::post(admin("/metrics"))
        .body(Default::default())
        .unwrap();
    assert_eq!(request(post).await.0, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_when_set_and_never_shown() {
    let gw = TestGateway::start(
        "admin:\n  address: 127.0.0.1:0\n  token: s3cret-token\nroutes:\n  - name: r\n    direct_response: {}\n",
    )
    .await;
    let url = format!("http://{}/config", gw.admin);
    assert_eq!(get(&url).await.0, 401);
    assert_eq!(
        get_with(&url, &[("authorization", "Bearer wrong")]).await.0,
        401
    );
    assert_eq!(
        get_with(&url, &[("authorization", "Bearer s3cret-token-longer")])
            .await
            .0,
        401
    );
    let (s, _, body) = get_with(&url, &[("authorization", "Bearer s3cret-token")]).await;
    assert_eq!(s, 200);
    assert!(!body.contains("s3cret"), "{body}");
    assert!(body.contains("<redacted>"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_admin_without_token_is_refused() {
    let err = TestGateway::try_start("admin:\n  address: 0.0.0.0:0\nroutes: []\n")
        .await
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("admin.address") && text.contains("token"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_draining_during_shutdown() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&format!(
        "upstreams:\n  - name: up\n    endpoints: [\"{}\"]\nroutes:\n  - name: api\n    upstream: up\n",
        up.addr
    ))
    .await;
    let url = gw.url("/delay/600");
    let slow = tokio::spawn(async move { get(&url).await.0 });
    assert!(
        eventually(std::time::Duration::from_secs(3), || async {
            up.hits() == 1
        })
        .await
    );
    let admin = gw.admin;
    let shutdown = tokio::spawn(gw.shutdown(std::time::Duration::from_secs(5)));
    let draining = eventually(std::time::Duration::from_secs(2), || async move {
        get(&format!("http://{admin}/readyz")).await.0 == 503
    })
    .await;
    assert!(draining, "/readyz answers 503 while draining");
    assert_eq!(slow.await.unwrap(), 200);
    assert!(shutdown.await.unwrap(), "drained in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_one_json_line_per_request() {
    let up = MockUpstream::start("up").await;
    let mut gw = GatewayProcess::start_with_log(
        &format!(
            "upstreams:\n  - name: up\n    endpoints: [\"{}\"]\nroutes:\n  - name: api\n    upstream: up\nserver:\n  log_format: json\n  drain_timeout: 1s\n",
            up.addr
        ),
        "access=info",
    )
    .await;
    assert_eq!(get(&gw.url("/one")).await.0, 200);
    assert_eq!(get(&gw.url("/two")).await.0, 200);
    gw.signal("TERM");
    gw.wait_exit(std::time::Duration::from_secs(5))
        .await
        .expect("exit");
    // The reader thread has the lines once the pipe closed at exit.
    assert!(
        eventually(std::time::Duration::from_secs(2), || async {
            gw.log.lock().unwrap().iter().any(|l| l.contains("/two"))
        })
        .await
    );
    let lines: Vec<serde_json::Value> = gw
        .log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["target"] == "access")
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let l = &lines[1];
    assert_eq!(l["route"], "api");
    assert_eq!(l["upstream"], "up");
    assert_eq!(l["endpoint"], up.addr.to_string());
    assert_eq!(l["status"], 200);
    assert_eq!(l["path"], "/two");
    assert_eq!(l["bytes"], "mock up /two\n".len());
    assert!(l["duration_ms"].as_f64().unwrap() > 0.0);
}

/// Half-sent heads on the admin port are closed after its head timeout, connections past its own
/// limit are closed at once, and the data plane keeps serving all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_cannot_starve_the_data_plane() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = TestGateway::start(
        "admin:\n  address: 127.0.0.1:0\n  max_connections: 8\n  header_read_timeout: 500ms\n\
         routes:\n  - name: r\n    direct_response: {body: ok}\n",
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut s = tokio::net::TcpStream::connect(gw.admin).await.unwrap();
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").await;
        held.push(s);
    }
    // The data plane answers while they are held.
    assert_eq!(get(&gw.url("/")).await.2, "ok");
    // Past the limit: closed at once. Within it: closed by the head timeout.
    let mut all = 0;
    for s in held.iter_mut() {
        let mut buf = [0u8; 512];
        // EOF, a reset, or a last answer before the close: anything but waiting on.
        let read = tokio::time::timeout(std::time::Duration::from_secs(3), s.read(&mut buf)).await;
        all += usize::from(read.is_ok());
    }
    assert_eq!(all, 40, "every half-sent head was closed");
    // And the admin API answers again.
    let (s, _, _) = admin_call(gw.admin, "GET", "/healthz", "").await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_can_be_public_and_the_bearer_scheme_is_case_insensitive() {
    let gw = TestGateway::start(
        "admin:\n  address: 127.0.0.1:0\n  token: s3cret\n  public_health: true\n\
         routes:\n  - name: r\n    direct_response: {body: ok}\n",
    )
    .await;
    let admin = |p: &str| format!("http://{}{p}", gw.admin);
    assert_eq!(get(&admin("/healthz")).await.0, 200);
    assert_eq!(get(&admin("/readyz")).await.0, 200);
    assert_eq!(get(&admin("/metrics")).await.0, 401);
    assert_eq!(get(&admin("/config")).await.0, 401);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let auth = format!("{scheme} s3cret");
        let (s, _, _) = get_with(&admin("/metrics"), &[("authorization", auth.as_str())]).await;
        assert_eq!(s, 200, "{scheme}");
    }
    let (s, _, _) = get_with(&admin("/metrics"), &[("authorization", "Basic s3cret")]).await;
    assert_eq!(s, 401);
    // Without public_health, health needs the token too.
    let gw = TestGateway::start(
        "admin:\n  address: 127.0.0.1:0\n  token: s3cret\nroutes:\n  - name: r\n    direct_response: {body: ok}\n",
    )
    .await;
    assert_eq!(get(&format!("http://{}/healthz", gw.admin)).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_config_is_refused_promptly_and_changes_nothing() {
    let gw = TestGateway::start("routes:\n  - name: r\n    direct_response: {body: ok}\n").await;
    let before = admin_call(gw.admin, "GET", "/config", "").await.2;
    let deep = format!("routes: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let start = std::time::Instant::now();
    let (s, _, body) = admin_call(gw.admin, "PUT", "/config", &deep).await;
    assert!((400..500).contains(&s), "{s} {body}");
    assert!(body.contains("nest deeper than 64"), "{body}");
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(admin_call(gw.admin, "GET", "/config", "").await.2, before);
    assert_eq!(get(&gw.url("/")).await.2, "ok");
}

/// `/config` shows no secret of routes, filters or plugins (the rule is in `config::redact`), and
/// the gateway still uses them: the upstream gets the real header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_shows_no_secret_and_the_running_config_keeps_them() {
    let up = MockUpstream::start("up").await;
    let demo = &xtask::examples()
        .unwrap_or_else(|e| panic!("{e}"))
        .proxy_wasm_demo;
    let gw = TestGateway::start(&format!(
        "plugins:\n  - {{name: demo, path: {}, vm_config: {{signing_key: vmk3y, mode: strict}}}}\n\
         upstreams:\n  - {{name: up, endpoints: [\"{}\"]}}\n\
         routes:\n  - name: api\n    upstream: up\n\
         \x20   request_headers: {{set: {{authorization: Bearer upstr3am, x-team: core}}, add: {{x-api-key: ak3y}}}}\n\
         \x20   filters: [{{plugin: demo, config: {{password: hunter2, user: ann}}}}]\n",
        demo.display(),
        up.addr
    ))
    .await;
    let (s, _, body) = admin_call(gw.admin, "GET", "/config", "").await;
    assert_eq!(s, 200);
    for secret in ["vmk3y", "upstr3am", "ak3y", "hunter2"] {
        assert!(!body.contains(secret), "{secret} shown in {body}");
    }
    for shown in ["\"api\"", "strict", "core", "ann", &up.addr.to_string()] {
        assert!(body.contains(shown), "{shown} not shown in {body}");
    }
    assert_eq!(get(&gw.url("/x")).await.0, 200);
    assert_eq!(up.last().headers["authorization"], "Bearer upstr3am");
    assert_eq!(up.last().headers["x-api-key"], "ak3y");
}
