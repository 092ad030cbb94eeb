//! Passive and active health.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_health_ejects_a_failing_endpoint() {
    let bad = MockUpstream::start("bad").await;
    let good = MockUpstream::start("good").await;
    bad.fail_next(1000, 503);
    let gw = TestGateway::start(&one_route(
        &[bad.addr, good.addr],
        "    health:\n      passive: {consecutive_failures: 2, ejection_time: 10s}\n",
        "",
    ))
    .await;
    // Round robin: bad, good, bad (second failure: ejected), good.
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(get(&gw.url("/p")).await.0);
        }
        v
    };
    assert_eq!(statuses, vec![503, 200, 503, 200]);
    assert_eq!(bad.hits(), 2);
    for i in 0..10 {
        let r = get(&gw.url("/p")).await;
        assert_eq!(r.0, 200, "request {i} after the ejection: {r:?}");
        assert_eq!(answered_by(&r), "good");
    }
    assert_eq!(bad.hits(), 2, "the ejected endpoint got no traffic");
    let m = gw.metrics().await;
    let h = |a: SocketAddr| {
        format!("gateway_upstream_endpoint_healthy{{upstream=\"up\",endpoint=\"{a}\"}}")
    };
    assert_eq!(metric(&m, &h(bad.addr)), Some(0.0), "{m}");
    assert_eq!(metric(&m, &h(good.addr)), Some(1.0), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_health_with_every_endpoint_ejected_answers_503_no_healthy_endpoint() {
    let only = MockUpstream::start("only").await;
    only.fail_next(1000, 503);
    let gw = TestGateway::start(&one_route(
        &[only.addr],
        "    health:\n      passive: {consecutive_failures: 2, ejection_time: 10s}\n",
        "",
    ))
    .await;
    for _ in 0..2 {
        let r = get(&gw.url("/p")).await;
        assert_eq!(r.0, 503);
        assert!(
            r.2.contains("forced failure"),
            "the upstream's answer: {}",
            r.2
        );
    }
    let r = get(&gw.url("/p")).await;
    assert_eq!(r.0, 503, "{r:?}");
    assert_eq!(error_code(&r.2), "no_healthy_endpoint", "{}", r.2);
    assert_eq!(only.hits(), 2, "nothing is sent to an ejected endpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ejection_time_doubles_with_each_consecutive_ejection() {
    let bad = MockUpstream::start("bad").await;
    bad.fail_next(100_000, 503);
    let gw = TestGateway::start(&one_route(
        &[bad.addr],
        "    health:\n      passive: {consecutive_failures: 1, ejection_time: 100ms}\n",
        "",
    ))
    .await;
    let url = gw.url("/p");
    let r = get(&url).await;
    assert!(
        r.2.contains("forced failure"),
        "first failure reaches the endpoint: {r:?}"
    );
    let mut measured = Vec::new();
    for _ in 0..4 {
        // Measured from the failing answer to the first request the endpoint sees again.
        let ejected_at = Instant::now();
        let before = bad.hits();
        loop {
            let r = get(&url).await;
            if bad.hits() > before {
                break;
            }
            assert_eq!(error_code(&r.2), "no_healthy_endpoint", "{r:?}");
            assert!(
                ejected_at.elapsed() < Duration::from_secs(3),
                "never came back"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        measured.push(ejected_at.elapsed());
    }
    let expected = [100u64, 200, 400, 800];
    for (m, e) in measured.iter().zip(expected) {
        let m = m.as_millis() as u64;
        assert!(
            m + 40 >= e && m <= e + 150,
            "ejections lasted {measured:?}, expected about {expected:?} ms"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_marks_a_failing_endpoint_unhealthy() {
    // Two clusters with one mock each: `sick` is probed on a path that fails, `fine` on one that works.
    let sick = MockUpstream::start("sick").await;
    let fine = MockUpstream::start("fine").await;
    let yaml = format!(
        "upstreams:
  - name: sick
    endpoints: [\"{}\"]
    health:
      active: {{path: /status/500, interval: 100ms, unhealthy_threshold: 2}}
  - name: fine
    endpoints: [\"{}\"]
    health:
      active: {{path: /healthz, interval: 100ms, unhealthy_threshold: 2}}
routes:
  - name: sick
    match: {{path: {{prefix: /sick}}}}
    upstream: sick
  - name: fine
    match: {{path: {{prefix: /fine}}}}
    upstream: fine
",
        sick.addr, fine.addr
    );
    let gw = TestGateway::start(&yaml).await;
    let url = gw.url("/sick");
    let turned = eventually(Duration::from_secs(3), || {
        let url = url.clone();
        async move {
            let r = get(&url).await;
            r.0 == 503 && error_code(&r.2) == "no_healthy_endpoint"
        }
    })
    .await;
    assert!(
        turned,
        "the endpoint failing its checks was never taken out"
    );
    let probes: Vec<_> = sick
        .seen()
        .into_iter()
        .filter(|s| s.uri == "/status/500")
        .collect();
    assert!(probes.len() >= 2, "{probes:?}");
    assert_eq!(probes[0].method, http::Method::GET);

    let m = gw.metrics().await;
    let h = |u: &str, a: SocketAddr| {
        format!("gateway_upstream_endpoint_healthy{{upstream=\"{u}\",endpoint=\"{a}\"}}")
    };
    assert_eq!(metric(&m, &h("sick", sick.addr)), Some(0.0), "{m}");
    assert_eq!(metric(&m, &h("fine", fine.addr)), Some(1.0), "{m}");
    // The cluster whose checks pass keeps serving.
    let r = get(&gw.url("/fine")).await;
    assert_eq!((r.0, r.2.as_str()), (200, "mock fine /fine\n"));
    assert!(
        fine.seen().iter().any(|s| s.uri == "/healthz"),
        "fine was probed too"
    );
    // And the sick one stays out: nothing but probes reaches it any more.
    let proxied = || {
        sick.seen()
            .iter()
            .filter(|s| s.uri != "/status/500")
            .count()
    };
    let before = proxied();
    tokio::time::sleep(Duration::from_millis(250)).await;
    for _ in 0..5 {
        assert_eq!(get(&url).await.0, 503);
    }
    assert_eq!(proxied(), before, "requests reached the unhealthy endpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_brings_an_endpoint_back_after_healthy_threshold() {
    let up = MockUpstream::start("up").await;
    // The first three probes fail, the following ones pass.
    up.fail_next(3, 500);
    let gw = TestGateway::start(&one_route(
        &[up.addr],
        "    health:\n      active: {path: /healthz, interval: 100ms, unhealthy_threshold: 2, healthy_threshold: 2}\n",
        "",
    ))
    .await;
    let series = format!(
        "gateway_upstream_endpoint_healthy{{upstream=\"up\",endpoint=\"{}\"}}",
        up.addr
    );
    let went_down = eventually(Duration::from_secs(3), || {
        let series = series.clone();
        let gw = &gw;
        async move { metric(&gw.metrics().await, &series) == Some(0.0) }
    })
    .await;
    assert!(went_down, "two failed probes mark the endpoint unhealthy");
    let came_back = eventually(Duration::from_secs(3), || {
        let series = series.clone();
        let gw = &gw;
        async move { metric(&gw.metrics().await, &series) == Some(1.0) }
    })
    .await;
    assert!(came_back, "two passing probes bring it back");
    let r = get(&gw.url("/again")).await;
    assert_eq!(r.0, 200, "{r:?}");
}
