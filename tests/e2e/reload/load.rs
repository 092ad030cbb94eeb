//! Reloads under traffic: no failed request, no mixed version, old runtimes freed, RSS flat.

use super::*;

fn versioned(up: SocketAddr, v: &str) -> String {
    let mut s = format!("upstreams:\n  - name: up\n    endpoints: [\"{up}\"]\nroutes:\n");
    for r in ["a", "b", "c"] {
        s.push_str(&format!(
            "  - name: {r}\n    match: {{path: {{exact: /{r}}}}}\n    direct_response:\n      body: \"{}\"\n      headers: {{x-version: {v}}}\n",
            direct_body(v, r)
        ));
    }
    s.push_str(&format!(
        "  - name: api\n    match: {{path: {{prefix: /api}}}}\n    upstream: up\n    rewrite: {{path: /{v}}}\n    response_headers:\n      set: {{x-version: {v}}}\n"
    ));
    s
}

fn direct_body(v: &str, route: &str) -> String {
    format!("{v}-{route}-").repeat(40)
}

/// The body a route answers with in version `v`.
fn expected(v: &str, path: &str) -> String {
    match path {
        "/api/x" => format!("mock up /{v}\n"),
        p => direct_body(v, &p[1..]),
    }
}

struct Served {
    start: Instant,
    end: Instant,
    version: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_during_100_reloads_sees_no_failure_and_no_mixed_version() {
    const RELOADS: usize = 100;
    const MAX_PER_CLIENT: usize = 20_000;
    let up = MockUpstream::start("up").await;
    let fg = FileGateway::start(&versioned(up.addr, "v1")).await;
    let addr = fg.gw.addr;
    let admin = fg.gw.admin;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for c in 0..4 {
        let stop = stop.clone();
        let failures = failures.clone();
        clients.push(tokio::spawn(async move {
            // One pooled keep-alive client per task: connections outlive the reloads.
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Full<bytes::Bytes>>();
            let paths = ["/a", "/b", "/c", "/api/x"];
            let mut served = Vec::new();
            let mut i = c;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(std::sync::atomic::Ordering::SeqCst)
                && served.len() < MAX_PER_CLIENT
                && Instant::now() < deadline
            {
                let path = paths[i % paths.len()];
                i += 1;
                let start = Instant::now();
                let req = http::Request::get(format!("http://{addr}{path}"))
                    .body(Default::default())
                    .unwrap();
                let resp = match client.request(req).await {
                    Ok(r) => r,
                    Err(e) => {
                        failures.lock().unwrap().push(format!("{path}: {e}"));
                        continue;
                    }
                };
                let status = resp.status();
                let version = resp
                    .headers()
                    .get("x-version")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let body = match http_body_util::BodyExt::collect(resp.into_body()).await {
                    Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                    Err(e) => {
                        failures.lock().unwrap().push(format!("{path}: body: {e}"));
                        continue;
                    }
                };
                let end = Instant::now();
                if status != 200 {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{path}: {status} {body}"));
                } else if (version != "v1" && version != "v2") || body != expected(&version, path) {
                    failures.lock().unwrap().push(format!(
                        "{path}: mixed: x-version {version:?}, body {body:?}"
                    ));
                }
                served.push(Served {
                    start,
                    end,
                    version,
                });
            }
            served
        }));
    }

    // Each reload: (sent, acknowledged, version).
    let mut reloads = Vec::new();
    let mut first_after_ack = Vec::new();
    for n in 0..RELOADS {
        let v = if n % 2 == 0 { "v2" } else { "v1" };
        fg.write(&versioned(up.addr, v));
        let sent = Instant::now();
        let (s, _, body) = admin_call(admin, "POST", "/reload", "").await;
        assert_eq!(s, 200, "reload {n}: {body}");
        let acked = Instant::now();
        reloads.push((sent, acked, v));
        let (s, h, body) = get(&format!("http://{addr}/b")).await;
        assert_eq!(s, 200);
        first_after_ack.push((n, v, h["x-version"].to_str().unwrap().to_owned(), body));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut served = Vec::new();
    for c in clients {
        served.extend(c.await.unwrap());
    }

    for (n, want, got, body) in &first_after_ack {
        assert_eq!(
            got, want,
            "the first request after reload {n} was acknowledged"
        );
        assert_eq!(body, &expected(want, "/b"));
    }
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    assert!(
        failures.is_empty(),
        "{} failed of {}: {:?}",
        failures.len(),
        served.len() + failures.len(),
        &failures[..failures.len().min(10)]
    );
    // Any request that started after reload k was acknowledged and ended before reload k+1 was sent
    // saw version k.
    let mut checked = 0;
    for (k, (_, acked, v)) in reloads.iter().enumerate() {
        let next_sent = reloads.get(k + 1).map(|r| r.0);
        for s in &served {
            if s.start >= *acked && next_sent.is_none_or(|n| s.end <= n) {
                assert_eq!(&s.version, v, "a request between reload {k} and the next");
                checked += 1;
            }
        }
    }
    let m = get(&format!("http://{admin}/metrics")).await.2;
    assert_eq!(
        metric(&m, "gateway_reloads_total{result=\"ok\"}"),
        Some(RELOADS as f64)
    );
    println!(
        "{} requests served during {RELOADS} reloads, 0 failed; {checked} fell wholly between two reloads",
        served.len()
    );
    assert!(checked > 0, "some requests fell between two reloads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_reloads_free_every_old_runtime_and_keep_rss_flat() {
    const WARM_UP: usize = 50;
    const RELOADS: usize = 1_000;
    const BOUND_KIB: u64 = 20 * 1024;
    let ups = [
        MockUpstream::start("u0").await,
        MockUpstream::start("u1").await,
        MockUpstream::start("u2").await,
    ];
    let (v1, v2) = versioned_builds();
    // Two versions: every route answers differently, upstream `u2` changes (so its cluster is
    // rebuilt and the old one dropped on every reload) while `u0` and `u1` are kept, and plugin `ver`
    // switches between its two builds every 10 reloads (100 swaps, each with new instances; a debug
    // build instantiates slowly) while plugin `steady` is kept.
    let config = |v: usize| {
        let mut s = format!(
            "plugins:\n  - name: ver\n    path: {}\n    instance_mode: reuse\n  - name: steady\n    path: {}\n    instance_mode: reuse\n",
            [v1, v2][v / 10 % 2].display(),
            v1.display()
        );
        s.push_str("upstreams:\n");
        for (i, u) in ups.iter().enumerate() {
            let timeout = if i == 2 { 2 + v % 2 } else { 2 };
            s.push_str(&format!(
                "  - name: u{i}\n    endpoints: [\"{}\"]\n    connect_timeout: {timeout}s\n",
                u.addr
            ));
        }
        s.push_str("routes:\n");
        for r in 0..30 {
            // A few regexes (slow to compile in debug builds), the rest exact values.
            let test = if r % 10 == 0 {
                "regex: \"v[0-9]+\""
            } else {
                "exact: v1"
            };
            s.push_str(&format!(
                "  - name: r{r}\n    match: {{path: {{template: \"/r{r}/{{id}}\"}}, headers: [{{name: x-v, {test}}}]}}\n    direct_response: {{body: \"v{} r{r}\"}}\n",
                v % 2
            ));
        }
        for i in 0..3 {
            s.push_str(&format!(
                "  - name: api{i}\n    match: {{path: {{prefix: /u{i}}}}}\n    upstream: u{i}\n"
            ));
        }
        for (name, plugin) in [("pv", "ver"), ("ps", "steady")] {
            s.push_str(&format!(
                "  - name: {name}\n    match: {{path: {{exact: /{name}}}}}\n    filters: [{{plugin: {plugin}, config: {name}}}]\n    direct_response: {{}}\n"
            ));
        }
        s
    };
    let gw = GatewayProcess::start(&config(0)).await;
    let pid = gw.pid();
    let started = Instant::now();
    let mut rss_warm = 0;
    for n in 1..=RELOADS {
        gw.write_config(&config(n));
        let (s, _, body) = admin_call(gw.admin, "POST", "/reload", "").await;
        assert_eq!(s, 200, "reload {n}: {body}");
        if n % 10 == 0 {
            for i in 0..3 {
                assert_eq!(get(&gw.url(&format!("/u{i}/x"))).await.0, 200);
            }
            for r in [7, 20] {
                let (s, _, b) = get_with(&gw.url(&format!("/r{r}/42")), &[("x-v", "v1")]).await;
                assert_eq!((s, b), (200, format!("v{} r{r}", n % 2)));
            }
            let (s, h, _) = get(&gw.url("/pv")).await;
            assert_eq!(s, 200);
            assert_eq!(h["x-plugin-version"], ["v1", "v2"][n / 10 % 2]);
            let (s, h, _) = get(&gw.url("/ps")).await;
            assert_eq!(s, 200);
            assert_eq!(
                h["x-served"],
                (n / 10).to_string(),
                "the kept plugin's warm instance"
            );
        }
        if n == WARM_UP {
            rss_warm = rss_kib(pid);
        }
    }
    let admin = gw.admin;
    let one_left = eventually(Duration::from_secs(5), || async move {
        admin_metric(admin, "gateway_runtimes_live").await == Some(1.0)
    })
    .await;
    let live = admin_metric(admin, "gateway_runtimes_live").await;
    assert!(
        one_left,
        "runtimes still alive after {RELOADS} reloads: {live:?}"
    );
    // Old plugins and their instances are freed: the two plugins of the serving config are left, with
    // one warm instance each.
    for (name, want) in [
        ("gateway_plugins_live", 2.0),
        ("gateway_wasm_instances_live", 2.0),
    ] {
        let freed = eventually(Duration::from_secs(5), || async move {
            admin_metric(admin, name).await == Some(want)
        })
        .await;
        let got = admin_metric(admin, name).await;
        assert!(
            freed,
            "{name} after {RELOADS} reloads: {got:?}, want {want}"
        );
    }
    let rss_end = rss_kib(pid);
    let ok = admin_metric(admin, "gateway_reloads_total{result=\"ok\"}")
        .await
        .unwrap();
    assert!(ok >= RELOADS as f64, "{ok} reloads applied");
    println!(
        "{RELOADS} reloads in {:?}: RSS {rss_warm} KiB after {WARM_UP}, {rss_end} KiB after {RELOADS} ({:+} KiB)",
        started.elapsed(),
        rss_end as i64 - rss_warm as i64
    );
    assert!(rss_warm > 0, "RSS readable");
    assert!(
        rss_end < rss_warm + BOUND_KIB,
        "RSS grew from {rss_warm} KiB to {rss_end} KiB over {} reloads",
        RELOADS - WARM_UP
    );
}
