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
        &format!("gateway_upstream_endpoint_healthy{{upstream=\"up\",endpoint=\"{}\"}} 1", up.addr),
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
    let post = http::Request::post(admin("/metrics")).body(Default::default()).unwrap();
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
    assert_eq!(get_with(&url, &[("authorization", "Bearer wrong")]).await.0, 401);
    assert_eq!(get_with(&url, &[("authorization", "Bearer s3cret-token-longer")]).await.0, 401);
    let (s, _, body) = get_with(&url, &[("authorization", "Bearer s3cret-token")]).await;
    assert_eq!(s, 200);
    assert!(!body.contains("s3cret"), "{body}");
    assert!(body.contains("<redacted>"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_admin_without_token_is_refused() {
    let err = TestGateway::try_start("admin:\n  address: 0.0.0.0:0\nroutes: []\n").await.err().expect("refused");
    let text = err.to_string();
    assert!(text.contains("admin.address") && text.contains("token"), "{text}");
}
