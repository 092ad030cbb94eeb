//! Capabilities: outbound HTTP, the key-value store, logs, metrics, clock, randomness, facts.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_reaches_granted_upstreams_and_denials_are_typed() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[
                plugin(
                    "kitchen",
                    kitchen(),
                    "    capabilities: {upstreams: [callee, ghost, dead]}\n",
                ),
                plugin("bare", kitchen(), ""),
            ],
            &[route("r", "kitchen", "", ""), route("bare", "bare", "", "")],
        )
        .await;
    let call = |up: &'static str, extra: Vec<(&'static str, &'static str)>| {
        let mut h = vec![("x-upstream", up)];
        h.extend(extra);
        h
    };
    let (_, h) = run(
        &gw,
        &b,
        "/r/x",
        "http",
        &call("callee", vec![("x-body", "hi")]),
    )
    .await;
    assert_eq!(hv(&h, "x-call-status"), "200");
    assert_eq!(hv(&h, "x-call-body"), "allowed");
    let c = b.callee.last();
    assert_eq!((c.method.as_str(), c.uri.as_str()), ("POST", "/auth"));
    assert_eq!(hv(&c.headers, "x-from"), "kitchen");
    assert_eq!(c.body, "hi");
    // The upstream's answer comes back whatever its status.
    b.callee.fail_next(1, 403);
    let (_, h) = run(&gw, &b, "/r/x", "http", &call("callee", vec![])).await;
    assert_eq!(hv(&h, "x-call-status"), "403");
    let callee_hits = b.callee.hits();
    // `up` exists but is not granted; `ghost` is granted but does not exist.
    for up in ["up", "ghost"] {
        let (_, h) = run(&gw, &b, "/r/x", "http", &call(up, vec![])).await;
        assert_eq!(hv(&h, "x-call-error"), "denied", "{up}");
        assert!(h.get("x-call-status").is_none());
    }
    let (_, h) = run(&gw, &b, "/bare/x", "http", &call("callee", vec![])).await;
    assert_eq!(hv(&h, "x-call-error"), "denied", "no grants at all");
    assert_eq!(b.callee.hits(), callee_hits, "denied calls never left");
    let (_, h) = run(
        &gw,
        &b,
        "/r/x",
        "http",
        &call("callee", vec![("x-call-path", "no-slash")]),
    )
    .await;
    assert_eq!(hv(&h, "x-call-error"), "bad-request");
    let started = Instant::now();
    let (_, h) = run(
        &gw,
        &b,
        "/r/x",
        "http",
        &call(
            "callee",
            vec![("x-call-path", "/delay/3000"), ("x-timeout-ms", "200")],
        ),
    )
    .await;
    assert_eq!(hv(&h, "x-call-error"), "timeout");
    assert!(started.elapsed() < Duration::from_millis(2500));
    let (_, h) = run(&gw, &b, "/r/x", "http", &call("dead", vec![])).await;
    assert_eq!(hv(&h, "x-call-error"), "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_value_store_keeps_data_across_requests_by_namespace() {
    key_value_store_semantics("").await;
}

/// The same calls and the same answers with both namespaces in a real redis-server: the backend is
/// config, the plugin does not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_value_store_keeps_the_same_semantics_in_redis() {
    let redis = gateway_test_support::RedisServer::start();
    let url = redis.url();
    key_value_store_semantics(&format!(
        "kv_namespaces:\n  shared: {{backend: redis, redis: {{url: \"{url}\"}}}}\n  other: {{backend: redis, redis: {{url: \"{url}/1\"}}}}\n"
    ))
    .await;
    // The data is in Redis: the kitchen's keys of `shared` and its version counter.
    assert!(redis.dbsize() >= 3, "keys in Redis: {}", redis.dbsize());
}

/// Runs the kitchen's key-value calls through a gateway whose config adds `extra` (top-level YAML).
async fn key_value_store_semantics(extra: &str) {
    let b = Backends::start().await;
    let ns = |n: &str| format!("    capabilities: {{kv_namespace: {n}}}\n");
    let yaml = b.yaml(
        &[
            plugin("kitchen", kitchen(), &ns("shared")),
            plugin(
                "kitchen-reuse",
                kitchen(),
                &format!("{}    instance_mode: reuse\n", ns("shared")),
            ),
            plugin("other", kitchen(), &ns("other")),
            plugin("bare", kitchen(), ""),
        ],
        &[
            route("fresh", "kitchen", "", ""),
            route("reuse", "kitchen-reuse", "", ""),
            route("other", "other", "", ""),
            route("bare", "bare", "", ""),
        ],
    );
    let gw = TestGateway::start(&format!("{yaml}{extra}")).await;
    let (_, h) = run(&gw, &b, "/fresh/x", "kv", &[("x-key", "k")]).await;
    assert_eq!(hv(&h, "x-kv-before"), "none");
    assert_eq!(hv(&h, "x-kv-get"), "one");
    assert_eq!(hv(&h, "x-kv-version-matches"), "true");
    assert_eq!(hv(&h, "x-kv-cas-stale"), "version-mismatch");
    assert_eq!(hv(&h, "x-kv-cas"), "two");
    assert_eq!(hv(&h, "x-kv-cas-new-version"), "true");
    assert_eq!(hv(&h, "x-kv-incr-nan"), "not-a-number");
    assert_eq!(hv(&h, "x-kv-deleted"), "true");
    assert_eq!(hv(&h, "x-kv-incr"), "5,3");
    assert_eq!(hv(&h, "x-kv-long"), "true");
    // Across requests (fresh instances remember nothing): the 1 ms TTL has passed, the long one not.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let read = |path: &'static str, key: &'static str| {
        let (gw, b) = (&gw, &b);
        async move {
            let (_, h) = run(gw, b, path, "kv-read", &[("x-key", key)]).await;
            hv(&h, "x-kv-value")
        }
    };
    assert_eq!(read("/fresh/x", "k:ttl").await, "absent");
    assert_eq!(read("/fresh/x", "k:long").await, "long");
    assert_eq!(read("/fresh/x", "k:n").await, "3");
    // Another plugin granted the same namespace shares it; another namespace does not.
    assert_eq!(read("/reuse/x", "k:long").await, "long");
    assert_eq!(read("/other/x", "k:long").await, "absent");
    let incr = |path: &'static str| {
        let (gw, b) = (&gw, &b);
        async move {
            let (_, h) = run(gw, b, path, "kv-incr", &[("x-key", "hits")]).await;
            hv(&h, "x-kv-value")
        }
    };
    assert_eq!(incr("/fresh/x").await, "1");
    assert_eq!(incr("/reuse/x").await, "2");
    assert_eq!(incr("/other/x").await, "1");
    assert_eq!(incr("/fresh/x").await, "3");
    // Keys up to 1 KiB and values up to 1 MiB; beyond, the store says why.
    use gateway::wasm::component::{MAX_KEY_LEN, MAX_VALUE_LEN};
    for (key_len, value_len, want) in [
        (MAX_KEY_LEN, 1, "ok"),
        (MAX_KEY_LEN + 1, 1, "invalid"),
        (1, MAX_VALUE_LEN, "ok"),
        (1, MAX_VALUE_LEN + 1, "invalid"),
    ] {
        let (k, v) = (key_len.to_string(), value_len.to_string());
        let (_, h) = run(
            &gw,
            &b,
            "/fresh/x",
            "kv-limits",
            &[("x-key-len", &k), ("x-value-len", &v)],
        )
        .await;
        assert_eq!(hv(&h, "x-kv-set"), want, "key {key_len}, value {value_len}");
    }
    // No namespace granted: every call is denied, typed.
    let (_, h) = run(&gw, &b, "/bare/x", "kv", &[]).await;
    assert_eq!(hv(&h, "x-kv-error"), "denied");
    let (_, h) = run(&gw, &b, "/bare/x", "kv-incr", &[("x-key", "hits")]).await;
    assert_eq!(hv(&h, "x-kv-error"), "denied");
    // Concurrent increments through the gateway lose nothing.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let url = gw.url(if i % 2 == 0 { "/fresh/x" } else { "/reuse/x" });
            tokio::spawn(async move {
                let (s, _, _) =
                    get_with(&url, &[("x-test", "kv-incr"), ("x-key", "together")]).await;
                assert_eq!(s, 200);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(read("/fresh/x", "together").await, "20");
}

/// GETs `/r/x` with `x-test: test` from a gateway process; returns the response and what `up` saw.
async fn run_proc(gw: &GatewayProcess, b: &Backends, test: &str) -> (Resp, http::HeaderMap) {
    let resp = get_with(
        &gw.url("/r/x"),
        &[("x-test", test), ("x-upstream", "callee")],
    )
    .await;
    assert_eq!(resp.0, 200, "{test}: {}", resp.2);
    (resp, b.up.last().headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_logs_reach_the_gateways_stderr_at_their_levels() {
    let b = Backends::start().await;
    let gw = GatewayProcess::start_with_log(
        &b.yaml(
            &[plugin("kitchen", kitchen(), "")],
            &[route("r", "kitchen", "", "")],
        ),
        "warn,plugin=debug",
    )
    .await;
    let (_, h) = run_proc(&gw, &b, "log").await;
    assert_eq!(hv(&h, "x-logged"), "5");
    assert_eq!(hv(&h, "x-debug-enabled"), "true");
    assert_eq!(hv(&h, "x-trace-enabled"), "false");
    let lines = || gw.log.lock().unwrap().clone();
    let has = |text: &str| {
        lines()
            .iter()
            .any(|l| l.contains(text) && l.contains("kitchen"))
    };
    let all_there = eventually(Duration::from_secs(5), || async {
        [
            "kitchen debug",
            "kitchen info",
            "kitchen warn",
            "kitchen error",
            "kitchen leveled warn",
        ]
        .iter()
        .all(|m| has(m))
    })
    .await;
    assert!(all_there, "{:#?}", lines());
    for level in ["DEBUG", "INFO", "WARN", "ERROR"] {
        let m = format!("kitchen {}", level.to_lowercase());
        assert!(
            lines().iter().any(|l| l.contains(&m) && l.contains(level)),
            "{m} at {level}: {:#?}",
            lines()
        );
    }
    assert!(!has("kitchen trace"), "trace is below the filter");
    // Denied capabilities are logged by the host, naming the plugin.
    for test in ["http", "kv"] {
        let (_, h) = run_proc(&gw, &b, test).await;
        assert_eq!(
            hv(
                &h,
                if test == "kv" {
                    "x-kv-error"
                } else {
                    "x-call-error"
                }
            ),
            "denied"
        );
    }
    for denial in ["denied: outbound HTTP", "denied: key-value store"] {
        let logged = eventually(Duration::from_secs(5), || async { has(denial) }).await;
        assert!(logged, "{denial}: {:#?}", lines());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_clock_randomness_and_plain_http_facts() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin("kitchen", kitchen(), "")],
            &[route("facts", "kitchen", "", "")],
        )
        .await;
    let (_, h) = run(&gw, &b, "/facts/x", "metrics", &[]).await;
    assert_eq!(hv(&h, "x-metric-clash"), "invalid");
    run(&gw, &b, "/facts/x", "metrics", &[]).await;
    let m = gw.metrics().await;
    for want in [
        "plugin_kitchen_requests_total{plugin=\"kitchen\"} 4\n",
        "plugin_kitchen_level{plugin=\"kitchen\"} 4\n",
        "plugin_kitchen_sizes_count{plugin=\"kitchen\"} 2\n",
    ] {
        assert!(m.contains(want), "missing {want} in\n{m}");
    }

    let (_, h) = run(&gw, &b, "/facts/x", "clock", &[]).await;
    let now: u64 = hv(&h, "x-now-ms").parse().unwrap();
    let sys = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(sys.abs_diff(now) < 10_000, "{now} vs {sys}");
    assert_eq!(hv(&h, "x-monotonic"), "true");

    let (_, h) = run(&gw, &b, "/facts/x", "random", &[]).await;
    assert_eq!(hv(&h, "x-random-len"), "16");
    assert_eq!(hv(&h, "x-random-capped"), "65536");
    assert_eq!(hv(&h, "x-random-differ"), "true");

    // Facts: over raw sockets, so the test knows the client's address.
    let mut ids = Vec::new();
    for version in ["1.1", "1.0"] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        let client = s.local_addr().unwrap();
        s.write_all(
            format!("GET /facts/x HTTP/{version}\r\nHost: h\r\nx-test: facts\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let resp = read_all(&mut s, Duration::from_secs(5)).await;
        assert_eq!(status_of(&resp), 200, "{resp}");
        let h = b.up.last().headers;
        assert_eq!(hv(&h, "x-route"), "facts");
        assert_eq!(hv(&h, "x-upstream"), "up");
        assert_eq!(hv(&h, "x-client"), client.to_string());
        assert_eq!(hv(&h, "x-local"), gw.addr.to_string());
        assert_eq!(hv(&h, "x-scheme"), "http");
        assert_eq!(hv(&h, "x-protocol"), version);
        assert_eq!(hv(&h, "x-tls"), "false");
        assert!(h.get("x-tls-version").is_none());
        ids.push(hv(&h, "x-request-id").parse::<u64>().unwrap());
    }
    assert_ne!(ids[0], ids[1], "request ids are unique");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_all_sends_in_parallel_in_order_with_a_result_each() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin(
                "kitchen",
                kitchen(),
                "    capabilities: {upstreams: [callee]}\n",
            )],
            &[route("r", "kitchen", "", "")],
        )
        .await;
    // Three calls of 400 ms each: one after another they take at least 1.2 s whatever the
    // machine's load, so the bound is the property itself (parallel: about 400 ms).
    let started = Instant::now();
    let (_, h) = run(
        &gw,
        &b,
        "/r/x",
        "send-all",
        &[(
            "x-calls",
            "callee:/delay/400,callee:/delay/400,callee:/delay/400,callee:/named",
        )],
    )
    .await;
    let took = started.elapsed();
    assert_eq!(hv(&h, "x-all"), "200,200,200,200");
    // In the order asked, whatever order they finished in.
    assert_eq!(
        hv(&h, "x-all-bodies"),
        "delayed|delayed|delayed|mock callee /named"
    );
    assert!(
        took < Duration::from_millis(1200),
        "three 400 ms calls took {took:?}: not sent in parallel"
    );
    // Each request stands alone: a denial, a timeout and a success in one call.
    let (_, h) = run(
        &gw,
        &b,
        "/r/x",
        "send-all",
        &[
            ("x-calls", "ghost:/x,callee:/slow,callee:/status/418"),
            ("x-timeout-ms", "300"),
        ],
    )
    .await;
    assert_eq!(hv(&h, "x-all"), "denied,timeout,418");
    // An answer over the host's bound (16 MiB; 300 chunks of 64 KiB) fails its call alone.
    let (_, h) = run(
        &gw,
        &b,
        "/r/x",
        "send-all",
        &[("x-calls", "callee:/stream/300,callee:/stream/2")],
    )
    .await;
    assert_eq!(hv(&h, "x-all"), "failed,200");
    // Over the bound: every request is refused, none is sent.
    let hits = b.callee.hits();
    let (_, h) = run(
        &gw,
        &b,
        "/r/x",
        "send-all",
        &[("x-calls", "callee:/named"), ("x-all-count", "33")],
    )
    .await;
    assert_eq!(hv(&h, "x-all"), vec!["bad-request"; 33].join(","));
    assert_eq!(b.callee.hits(), hits);
    let (_, h) = run(
        &gw,
        &b,
        "/r/x",
        "send-all",
        &[("x-calls", "callee:/named"), ("x-all-count", "32")],
    )
    .await;
    assert_eq!(hv(&h, "x-all"), vec!["200"; 32].join(","));
    assert_eq!(b.callee.hits(), hits + 32);
}
