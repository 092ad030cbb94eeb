//! Requests in flight never see each other's data; hostile components fail by policy.

use super::*;

/// Request A holds its filter (its body is still arriving) while B goes all the way through the same
/// filter; then many requests at once. Each only ever sees its own `x-id`.
async fn requests_in_flight_do_not_see_each_other(mode: &str) {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin(
                "kitchen",
                kitchen(),
                &format!("    instance_mode: {mode}\n"),
            )],
            &[route("r", "kitchen", "request-body=whole", "")],
        )
        .await;
    let mut a = TcpStream::connect(gw.addr).await.unwrap();
    a.write_all(
        b"POST /r/echo HTTP/1.1\r\nHost: h\r\nx-id: A\r\nContent-Length: 4\r\nConnection: close\r\n\r\nab",
    )
    .await
    .unwrap();
    // A's headers have been through the filter once the gateway waits for the rest of the body.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let req = http::Request::post(gw.url("/r/echo"))
        .header("x-id", "B")
        .body(Full::new(Bytes::from_static(b"xy")))
        .unwrap();
    let (s, h, body) = request(req).await;
    assert_eq!((s, body.as_str()), (200, "XY|chunks=1"));
    assert_eq!(hv(&h, "x-id-echo"), "B");
    a.write_all(b"cd").await.unwrap();
    let resp = read_all(&mut a, Duration::from_secs(5)).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(resp.to_lowercase().contains("x-id-echo: a\r\n"), "{resp}");
    assert!(resp.ends_with("ABCD|chunks=1"), "{resp}");
    // Many at once, each stashing its id in the guest and reading it back in its response phase.
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let url = gw.url("/r/echo");
            tokio::spawn(async move {
                let id = format!("id-{i}");
                let req = http::Request::post(url)
                    .header("x-id", &id)
                    .body(Full::new(Bytes::from(id.clone())))
                    .unwrap();
                let (s, h, body) = request(req).await;
                assert_eq!(s, 200);
                assert_eq!(hv(&h, "x-id-echo"), id);
                assert_eq!(body, format!("{}|chunks=1", id.to_uppercase()));
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let served: Vec<u64> =
        b.up.seen()
            .iter()
            .map(|s| hv(&s.headers, "x-served").parse().unwrap())
            .collect();
    let most = served.iter().copied().max().unwrap();
    match mode {
        "fresh" => assert_eq!(most, 1, "a fresh instance serves one request"),
        _ => assert!(most > 1, "warm instances were reused: {served:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_on_one_filter_are_isolated_in_fresh_mode() {
    requests_in_flight_do_not_see_each_other("fresh").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_on_one_filter_are_isolated_in_reuse_mode() {
    requests_in_flight_do_not_see_each_other("reuse").await;
}

/// With `fiber`, the hostile component's build that is called on a fiber (it imports the key-value
/// store), else the one called without a fiber.
async fn hostile_components_fail_by_policy(fiber: bool, mode: &str) {
    let b = Backends::start().await;
    let wasm = match fiber {
        true => &fixtures().hostile_fiber,
        false => &fixtures().hostile,
    };
    let gw = b
        .gateway(
            &[plugin(
                "hostile",
                wasm,
                &format!(
                    "    instance_mode: {mode}\n    limits: {{memory: 16MiB, cpu_per_call: 250ms}}\n"
                ),
            )],
            &[
                route("closed", "hostile", "", ""),
                route("open", "hostile", "", ", failure: open"),
            ],
        )
        .await;
    // The build asked for (`tests/wasm` asserts which path each is on): only the fiber build has
    // mode `kv`, which it answers itself (the store is denied: no namespace is granted).
    let (s, _, body) = get_with(&gw.url("/closed/x"), &[("x-hostile", "kv")]).await;
    match fiber {
        true => assert_eq!((s, body.as_str()), (200, "kv denied")),
        false => assert_eq!(hv(&b.up.last().headers, "x-hostile-ok"), "1", "{s} {body}"),
    }
    for misdeed in ["trap", "loop", "memory", "recursion", "bad-status"] {
        let started = Instant::now();
        let (s, _, body) = get_with(&gw.url("/closed/x"), &[("x-hostile", misdeed)]).await;
        assert_eq!(s, 500, "{misdeed}: {body}");
        assert!(body.contains("filter_failed"), "{misdeed}: {body}");
        assert!(started.elapsed() < Duration::from_secs(5), "{misdeed}");
        // The next request on the same route succeeds, through the filter.
        let (s, _, _) = get(&gw.url("/closed/x")).await;
        assert_eq!(s, 200, "{misdeed}: next");
        assert_eq!(hv(&b.up.last().headers, "x-hostile-ok"), "1", "{misdeed}");
        // Fail open: the request goes on without the filter's changes.
        let (s, _, _) = get_with(&gw.url("/open/x"), &[("x-hostile", misdeed)]).await;
        assert_eq!(s, 200, "{misdeed}: open");
        assert!(b.up.last().headers.get("x-hostile-ok").is_none());
        let (s, _, _) = get(&gw.url("/open/x")).await;
        assert_eq!(s, 200, "{misdeed}: next open");
        assert_eq!(hv(&b.up.last().headers, "x-hostile-ok"), "1", "{misdeed}");
    }
    let m = gw.metrics().await;
    for want in [
        "gateway_plugin_cpu_limit_total{plugin=\"hostile\"} 2",
        "gateway_plugin_memory_limit_total{plugin=\"hostile\"} 2",
        // trap, recursion and bad-status trap, on both routes.
        "gateway_plugin_traps_total{plugin=\"hostile\"} 6",
        "gateway_plugin_failures_total{plugin=\"hostile\"} 10",
        "gateway_requests_total{route=\"closed\",status=\"500\"} 5",
    ] {
        assert!(m.contains(want), "missing {want} in\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_components_fail_by_policy_in_fresh_mode() {
    hostile_components_fail_by_policy(false, "fresh").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_components_fail_by_policy_in_reuse_mode() {
    hostile_components_fail_by_policy(false, "reuse").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_components_on_a_fiber_fail_by_policy_in_fresh_mode() {
    hostile_components_fail_by_policy(true, "fresh").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_components_on_a_fiber_fail_by_policy_in_reuse_mode() {
    hostile_components_fail_by_policy(true, "reuse").await;
}
