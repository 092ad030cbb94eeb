//! State kept across reloads (cluster health) and freed after them (old runtimes).

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_upstreams_keep_their_health_and_changed_ones_start_afresh() {
    let up = MockUpstream::start("up").await;
    let other = MockUpstream::start("other").await;
    let cfg = |body: &str, connect: &str, with_other: bool| {
        let mut s = format!(
            "upstreams:\n  - name: up\n    endpoints: [\"{}\"]\n    connect_timeout: {connect}\n    health:\n      passive: {{consecutive_failures: 1, ejection_time: 60s}}\n",
            up.addr
        );
        if with_other {
            s.push_str(&format!(
                "  - name: other\n    endpoints: [\"{}\"]\n",
                other.addr
            ));
        }
        s.push_str(&format!(
            "routes:\n  - name: api\n    match: {{path: {{prefix: /api}}}}\n    upstream: up\n  - name: r\n    direct_response: {{body: \"{body}\"}}\n"
        ));
        config_text(&s)
    };
    let gw = TestGateway::start(&cfg("a", "2s", true)[..]).await;
    let handle = gw.gw.as_ref().unwrap();
    let healthy = format!(
        "gateway_upstream_endpoint_healthy{{upstream=\"up\",endpoint=\"{}\"}}",
        up.addr
    );
    up.fail_next(1, 503);
    assert_eq!(get(&gw.url("/api/x")).await.0, 503);
    assert_eq!(metric(&gw.metrics().await, &healthy), Some(0.0), "ejected");
    let cluster = |name: &str| handle.shared.runtime.load().upstreams[name].clone();
    let before = cluster("up");
    let other_before = Arc::downgrade(&cluster("other"));

    // Only a route changes, and `other` goes away: `up` is the same cluster, still ejected.
    let report = handle.reload_from(&cfg("b", "2s", false)).await.unwrap();
    assert!(report.message.contains("1 kept"), "{}", report.message);
    assert_eq!(get(&gw.url("/")).await.2, "b");
    assert!(Arc::ptr_eq(&before, &cluster("up")), "the same cluster");
    assert_eq!(
        metric(&gw.metrics().await, &healthy),
        Some(0.0),
        "still ejected"
    );
    let hits = up.hits();
    let r = get(&gw.url("/api/x")).await;
    assert_eq!(r.0, 503, "no healthy endpoint: {r:?}");
    assert_eq!(up.hits(), hits, "nothing sent to the ejected endpoint");
    assert!(
        eventually(Duration::from_secs(5), || async {
            other_before.upgrade().is_none()
        })
        .await,
        "the removed cluster was freed"
    );
    assert!(
        !gw.metrics().await.contains("upstream=\"other\",endpoint"),
        "a removed cluster's health is no longer shown"
    );

    // The upstream itself changes: a new cluster with fresh health.
    handle.reload_from(&cfg("c", "3s", false)).await.unwrap();
    assert!(!Arc::ptr_eq(&before, &cluster("up")), "a new cluster");
    assert_eq!(metric(&gw.metrics().await, &healthy), Some(1.0));
    let (s, _, b) = get(&gw.url("/api/x")).await;
    assert_eq!((s, b.as_str()), (200, "mock up /api/x\n"));
    let old = Arc::downgrade(&before);
    drop(before);
    assert!(old.upgrade().is_none(), "the replaced cluster was freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_runtime_lives_until_its_last_request_ends() {
    let up = MockUpstream::start("up").await;
    let yaml = |body: &str| {
        format!(
            "upstreams:\n  - name: up\n    endpoints: [\"{}\"]\nroutes:\n  - name: api\n    match: {{path: {{prefix: /delay}}}}\n    upstream: up\n  - name: r\n    direct_response: {{body: \"{body}\"}}\n",
            up.addr
        )
    };
    let gw = GatewayProcess::start(&yaml("v1")).await;
    let live = "gateway_runtimes_live";
    assert_eq!(admin_metric(gw.admin, live).await, Some(1.0));
    let url = gw.url("/delay/1500");
    let slow = tokio::spawn(async move { get(&url).await });
    assert!(eventually(Duration::from_secs(5), || async { up.hits() == 1 }).await);
    for v in ["v2", "v3"] {
        gw.write_config(&yaml(v));
        assert_eq!(admin_call(gw.admin, "POST", "/reload", "").await.0, 200);
    }
    assert_eq!(get(&gw.url("/")).await.2, "v3");
    // The serving runtime and the first one, held by the slow request; v2 served nothing and is gone.
    assert_eq!(admin_metric(gw.admin, live).await, Some(2.0));
    let (s, _, b) = slow.await.unwrap();
    assert_eq!((s, b.as_str()), (200, "delayed\n"));
    let admin = gw.admin;
    assert!(
        eventually(Duration::from_secs(5), || async move {
            admin_metric(admin, live).await == Some(1.0)
        })
        .await,
        "the old runtime was freed when its request ended"
    );
}
