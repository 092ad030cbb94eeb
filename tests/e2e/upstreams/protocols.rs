//! HTTP/2 on either side, and the upstream metrics.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upstream_gets_http2() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(&[up.addr], "    protocol: http2\n", "")).await;
    let r = get(&gw.url("/h2?q=1")).await;
    assert_eq!((r.0, r.2.as_str()), (200, "mock up /h2\n"), "{r:?}");
    let seen = up.last();
    assert_eq!(seen.version, http::Version::HTTP_2);
    assert!(seen.uri.ends_with("/h2?q=1"), "{}", seen.uri);

    // A body goes through too.
    let r = post(&gw.url("/echo"), "over h2").await;
    assert_eq!((r.0, r.2.as_str()), (200, "over h2"));

    // Connection-specific headers from an HTTP/1.1 client must not break the HTTP/2 exchange.
    let resp = raw(
        gw.addr,
        b"GET /h2-hop HTTP/1.1\r\nHost: front.example\r\nConnection: close, x-secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\n\r\n",
        Duration::from_millis(1000),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let seen = up.last();
    assert_eq!(seen.version, http::Version::HTTP_2);
    for name in ["connection", "x-secret", "keep-alive", "proxy-connection"] {
        assert!(
            !seen.headers.contains_key(name),
            "{name}: {:?}",
            seen.headers
        );
    }
    assert_eq!(
        values(&seen.headers, "te"),
        vec!["trailers"],
        "TE: trailers is allowed in HTTP/2"
    );
    // All of it on HTTP/2 streams of pooled connections.
    assert!(up.connections() <= 2, "connections: {}", up.connections());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upstream_is_health_checked_over_http2() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(
        &[up.addr],
        "    protocol: http2\n    health:\n      active: {path: /healthz, interval: 100ms, unhealthy_threshold: 2}\n",
        "",
    ))
    .await;
    let probed = eventually(Duration::from_secs(2), || async {
        up.seen()
            .iter()
            .filter(|s| s.uri.ends_with("/healthz"))
            .count()
            >= 3
    })
    .await;
    assert!(probed, "probes: {:?}", up.seen());
    assert!(up.seen().iter().all(|s| s.version == http::Version::HTTP_2));
    let m = gw.metrics().await;
    let series = format!(
        "gateway_upstream_endpoint_healthy{{upstream=\"up\",endpoint=\"{}\"}}",
        up.addr
    );
    assert_eq!(metric(&m, &series), Some(1.0), "{m}");
    assert_eq!(get(&gw.url("/after-probes")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_client_reaches_an_http1_upstream() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(&[up.addr], "", "")).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    for i in 0..3 {
        let req = http::Request::get(gw.url(&format!("/from-h2/{i}")))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .expect("in time")
            .expect("response");
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, Bytes::from(format!("mock up /from-h2/{i}\n")));
    }
    let seen = up.last();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.uri, "/from-h2/2");
    assert_eq!(
        values(&seen.headers, "host"),
        vec![gw.addr.to_string()],
        "Host from :authority"
    );
    assert_eq!(
        values(&seen.headers, "x-forwarded-host"),
        vec![gw.addr.to_string()]
    );
}

// 7. Metrics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_metrics_count_tries_retries_and_errors() {
    let up = MockUpstream::start("billing").await;
    let (_hold, dead) = closed_addr();
    let yaml = format!(
        "upstreams:
  - name: billing
    endpoints: [\"{}\"]
  - name: gone
    endpoints: [\"{dead}\"]
routes:
  - name: pay
    match: {{path: {{prefix: /pay}}}}
    upstream: billing
    retry: {{attempts: 2, on: [503]}}
  - name: lost
    match: {{path: {{prefix: /lost}}}}
    upstream: gone
",
        up.addr
    );
    let gw = TestGateway::start(&yaml).await;
    let req = |u: &str| format!("gateway_upstream_requests_total{{upstream=\"{u}\"}}");
    let ret = |u: &str| format!("gateway_upstream_retries_total{{upstream=\"{u}\"}}");

    let m = gw.metrics().await;
    assert_eq!(metric(&m, &req("billing")), Some(0.0), "{m}");
    assert_eq!(metric(&m, &ret("billing")), Some(0.0), "{m}");

    for _ in 0..3 {
        assert_eq!(get(&gw.url("/pay")).await.0, 200);
    }
    let m = gw.metrics().await;
    assert_eq!(metric(&m, &req("billing")), Some(3.0), "{m}");
    assert_eq!(metric(&m, &ret("billing")), Some(0.0), "{m}");

    up.fail_next(1, 503);
    assert_eq!(get(&gw.url("/pay")).await.0, 200);
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, &req("billing")),
        Some(5.0),
        "every try counts: {m}"
    );
    assert_eq!(metric(&m, &ret("billing")), Some(1.0), "{m}");
    assert_eq!(
        metric(&m, "gateway_requests_total{route=\"pay\",status=\"200\"}"),
        Some(4.0),
        "the client saw four answers: {m}"
    );

    assert_eq!(get(&gw.url("/lost")).await.0, 502);
    let m = gw.metrics().await;
    assert_eq!(metric(&m, &req("gone")), Some(1.0), "{m}");
    assert_eq!(metric(&m, &ret("gone")), Some(0.0), "{m}");
    assert_eq!(
        metric(
            &m,
            "gateway_upstream_errors_total{upstream=\"gone\",kind=\"connect\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, &req("billing")),
        Some(5.0),
        "other upstreams unchanged: {m}"
    );
}
