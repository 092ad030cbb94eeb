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
