//! Plugins across reloads: reuse, compiled-code caches, `/plugins`, version swaps under load.

use super::*;

/// Copies `from` over `to` in one step (a sibling file renamed), as a deploy would.
fn install(from: &std::path::Path, to: &std::path::Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

async fn plugins_json(admin: SocketAddr) -> serde_json::Value {
    let (s, _, body) = admin_call(admin, "GET", "/plugins", "").await;
    assert_eq!(s, 200, "{body}");
    json(&body)
}

fn plugin<'a>(list: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no plugin {name} in {list:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_plugins_keep_their_instances_and_a_changed_wasm_rebuilds_only_its_routes() {
    let (v1, v2) = versioned_builds();
    let dir = TempDir::new("reuse");
    let (a, b) = (dir.0.join("a.wasm"), dir.0.join("b.wasm"));
    install(v1, &a);
    install(v1, &b);
    let cfg = |ra: &str, rb: &str, body: &str| {
        format!(
            "plugins:\n  - name: pa\n    path: {}\n    instance_mode: reuse\n  - name: pb\n    path: {}\n    instance_mode: reuse\nroutes:\n  - name: ra\n    match: {{path: {{prefix: /a}}}}\n    filters: [{{plugin: pa, config: {ra}}}]\n    direct_response: {{body: unused}}\n  - name: rb\n    match: {{path: {{prefix: /b}}}}\n    filters: [{{plugin: pb, config: {rb}}}]\n    direct_response: {{body: unused}}\n  - name: rc\n    direct_response: {{body: \"{body}\"}}\n",
            a.display(),
            b.display()
        )
    };
    let fg = FileGateway::start(&cfg("ra", "rb", "c1")).await;
    let gw = &fg.gw;
    let served = |path: &'static str| {
        let url = gw.url(path);
        async move {
            let (s, h, body) = get(&url).await;
            assert_eq!(s, 200, "{body}");
            let v = h["x-plugin-version"].to_str().unwrap().to_owned();
            let n: u64 = h["x-served"].to_str().unwrap().parse().unwrap();
            (v, n, body)
        }
    };
    for n in 1..=3 {
        let (v, got, body) = served("/a").await;
        assert_eq!((v.as_str(), got), ("v1", n), "a warm instance counts up");
        assert_eq!(body, versioned_body("v1", "ra", n));
    }
    assert_eq!(served("/b").await.1, 1);
    let before = plugins_json(gw.admin).await;
    let compilations = before["cache"]["compilations"].as_u64().unwrap();

    // Only a route without filters changes: both plugins and both filter stages are kept.
    fg.write(&cfg("ra", "rb", "c2"));
    let (s, _, body) = admin_call(gw.admin, "POST", "/reload", "").await;
    assert_eq!(s, 200, "{body}");
    let msg = json(&body)["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("plugins: 2 reused, 0 loaded; routes with filters: 2 kept, 0 rebuilt"),
        "{msg}"
    );
    assert_eq!(get(&gw.url("/")).await.2, "c2");
    assert_eq!(served("/a").await.1, 4, "the same warm instance serves /a");
    let after = plugins_json(gw.admin).await;
    assert_eq!(after["cache"]["compilations"].as_u64(), Some(compilations));
    for name in ["pa", "pb"] {
        let p = plugin(&after, name);
        assert_eq!(p["last_reload"]["result"], "ok");
        assert_eq!(p["last_reload"]["action"], "reused", "{p:#}");
        assert_eq!(p["sha256"], plugin(&before, name)["sha256"]);
    }

    // b.wasm changes: only pb is loaded again and only route rb gets a new instance.
    install(v2, &b);
    let (s, _, body) = admin_call(gw.admin, "POST", "/reload", "").await;
    assert_eq!(s, 200, "{body}");
    let msg = json(&body)["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("plugins: 1 reused, 1 loaded; routes with filters: 1 kept, 1 rebuilt"),
        "{msg}"
    );
    assert_eq!(served("/a").await.1, 5, "route ra kept its instance");
    let (v, n, body) = served("/b").await;
    assert_eq!((v.as_str(), n), ("v2", 1), "route rb runs the new build");
    assert_eq!(body, versioned_body("v2", "rb", 1));
    let list = plugins_json(gw.admin).await;
    let pb = plugin(&list, "pb");
    assert_eq!(pb["sha256"], sha256_hex(&std::fs::read(v2).unwrap()));
    assert_eq!(pb["last_reload"]["action"], "loaded");
    assert!(
        ["compiled", "memory", "disk"].contains(&pb["last_reload"]["compiled"].as_str().unwrap()),
        "{pb:#}"
    );
    assert_eq!(plugin(&list, "pa")["last_reload"]["action"], "reused");

    // A route's filter config changes: its stage is rebuilt on the kept plugin.
    fg.write(&cfg("ra2", "rb", "c2"));
    let (s, _, body) = admin_call(gw.admin, "POST", "/reload", "").await;
    assert_eq!(s, 200, "{body}");
    let msg = json(&body)["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("plugins: 2 reused, 0 loaded; routes with filters: 1 kept, 1 rebuilt"),
        "{msg}"
    );
    let (_, n, body) = served("/a").await;
    assert_eq!(n, 1, "a new instance for the new config");
    assert_eq!(body, versioned_body("v1", "ra2", 1));
    assert_eq!(served("/b").await.1, 2, "route rb kept its instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_shows_hash_source_routes_instances_calls_and_the_last_reload() {
    let (v1, _) = versioned_builds();
    let cfg = |config: &str| {
        format!(
            "plugins:\n  - name: ver\n    path: {}\n    instance_mode: reuse\nroutes:\n  - name: one\n    match: {{path: {{prefix: /one}}}}\n    filters: [{{plugin: ver, config: {config}}}]\n    direct_response: {{}}\n  - name: two\n    filters: [{{plugin: ver, config: two}}]\n    direct_response: {{}}\n",
            v1.display()
        )
    };
    let fg = FileGateway::start(&cfg("one")).await;
    let gw = &fg.gw;
    assert_eq!(get(&gw.url("/one")).await.0, 200);
    assert_eq!(get(&gw.url("/two")).await.0, 200);
    assert_eq!(get(&gw.url("/two")).await.0, 200);
    let list = plugins_json(gw.admin).await;
    let p = plugin(&list, "ver");
    assert_eq!(p["sha256"], sha256_hex(&std::fs::read(v1).unwrap()));
    assert_eq!(p["source"]["path"], v1.display().to_string());
    assert_eq!(p["abi"], "component");
    assert_eq!(p["routes"], serde_json::json!(["one", "two"]));
    // One warm instance per route, none serving now.
    assert_eq!(
        p["instances"],
        serde_json::json!({"live": 2, "idle": 2, "in_flight": 0}),
        "{p:#}"
    );
    // Two inits and three requests, each answered by the filter: `on-request`, then `on-response`
    // for its own local response (as Envoy runs a local reply back through the filter that sent it).
    assert_eq!(p["calls"], 8, "{p:#}");
    assert_eq!(p["failures"], 0);
    assert_eq!(p["last_reload"]["result"], "ok");
    assert_eq!(p["last_reload"]["action"], "loaded");
    assert!(p["last_reload"]["at_unix_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(list["live_instances"].as_u64().unwrap() >= 2);

    // The plugin rejects a route's config: nothing changes, and /plugins says why.
    fg.write(&cfg("reject"));
    let (s, _, body) = admin_call(gw.admin, "POST", "/reload", "").await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(json(&body)["field"], "routes[0].filters[0].config");
    let list = plugins_json(gw.admin).await;
    let p = plugin(&list, "ver");
    assert_eq!(p["last_reload"]["result"], "error");
    let msg = p["last_reload"]["message"].as_str().unwrap();
    assert!(msg.contains("v1 rejects the config `reject`"), "{msg}");
    assert_eq!(list["last_reload"]["result"], "error");
    let (s, _, body) = get(&gw.url("/one")).await;
    assert_eq!((s, body), (200, versioned_body("v1", "one", 2)));
    assert_eq!(admin_call(gw.admin, "POST", "/plugins", "").await.0, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loads_compiled_code_from_the_disk_cache_and_a_corrupt_entry_is_rebuilt() {
    let (v1, _) = versioned_builds();
    let cache = TempDir::new("cache");
    let yaml = format!(
        "server:\n  cache_dir: {}\nplugins:\n  - name: ver\n    path: {}\nroutes:\n  - name: r\n    filters: [{{plugin: ver, config: r}}]\n    direct_response: {{}}\n",
        cache.0.display(),
        v1.display()
    );
    let compiled = |gw: &GatewayProcess| {
        let admin = gw.admin;
        async move {
            let list = plugins_json(admin).await;
            let p = plugin(&list, "ver");
            (
                p["last_reload"]["compiled"].as_str().unwrap().to_owned(),
                list["cache"]["compilations"].as_u64().unwrap(),
                list["cache"]["disk_hits"].as_u64().unwrap(),
            )
        }
    };
    let first = GatewayProcess::start_with_log(&yaml, "info").await;
    assert_eq!(compiled(&first).await, ("compiled".into(), 1, 0));
    assert_eq!(get(&first.url("/")).await.2, versioned_body("v1", "r", 1));
    drop(first);
    let entries: Vec<_> = std::fs::read_dir(&cache.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");

    let second = GatewayProcess::start_with_log(&yaml, "info").await;
    assert_eq!(compiled(&second).await, ("disk".into(), 0, 1));
    assert_eq!(get(&second.url("/")).await.2, versioned_body("v1", "r", 1));
    let m = get(&format!("http://{}/metrics", second.admin)).await.2;
    assert_eq!(
        metric(&m, "gateway_wasm_cache_hits_total{cache=\"disk\"}"),
        Some(1.0)
    );
    assert_eq!(metric(&m, "gateway_wasm_compilations_total"), Some(0.0));
    let logged = second
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("loaded from the disk cache"));
    assert!(logged, "the disk cache hit is logged");
    drop(second);

    // An entry that others may write is not executed: it is compiled again (and replaced).
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&entries[0], std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    let untrusted = GatewayProcess::start_with_log(&yaml, "info").await;
    assert_eq!(compiled(&untrusted).await, ("compiled".into(), 1, 0));
    let logged = untrusted
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("is not trusted"));
    assert!(logged, "the refusal is logged");
    drop(untrusted);

    // An entry that is a symlink (even to good compiled code) is not followed: compiled again.
    let elsewhere = cache.0.join("elsewhere.bin");
    std::fs::rename(&entries[0], &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &entries[0]).unwrap();
    let linked = GatewayProcess::start_with_log(&yaml, "info").await;
    assert_eq!(compiled(&linked).await, ("compiled".into(), 1, 0));
    drop(linked);
    assert!(
        !std::fs::symlink_metadata(&entries[0])
            .unwrap()
            .file_type()
            .is_symlink(),
        "the symlink was replaced by a file of the gateway's own"
    );

    std::fs::write(&entries[0], b"not compiled code").unwrap();
    let third = GatewayProcess::start_with_log(&yaml, "info").await;
    assert_eq!(compiled(&third).await, ("compiled".into(), 1, 0));
    assert_eq!(get(&third.url("/")).await.2, versioned_body("v1", "r", 1));
    assert!(
        std::fs::read(&entries[0]).unwrap().len() > 1000,
        "the corrupt entry was rewritten"
    );
}

/// A config whose plugin `ver` (at `wasm`, fresh instances) serves routes p1 and p2, whose plugin
/// `steady` (never changed, warm instances) serves route s, and whose route d answers directly with
/// `version` in a header and the body.
fn swapping(wasm: &std::path::Path, steady: &std::path::Path, version: &str) -> String {
    format!(
        "plugins:\n  - name: ver\n    path: {}\n  - name: steady\n    path: {}\n    instance_mode: reuse\nroutes:\n  - name: p1\n    match: {{path: {{exact: /p1}}}}\n    filters: [{{plugin: ver, config: p1}}]\n    direct_response: {{}}\n  - name: p2\n    match: {{path: {{exact: /p2}}}}\n    filters: [{{plugin: ver, config: p2}}]\n    direct_response: {{}}\n  - name: s\n    match: {{path: {{exact: /s}}}}\n    filters: [{{plugin: steady, config: s}}]\n    direct_response: {{}}\n  - name: d\n    match: {{path: {{exact: /d}}}}\n    direct_response:\n      body: \"{}\"\n      headers: {{x-plugin-version: {version}}}\n",
        wasm.display(),
        steady.display(),
        versioned_body(version, "d", 1).replace('\n', "\\n")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_during_100_plugin_version_swaps_sees_no_failure_and_no_mixed_answer() {
    const SWAPS: usize = 100;
    const MAX_PER_CLIENT: usize = 20_000;
    let (v1, v2) = versioned_builds();
    let dir = TempDir::new("swap");
    let (wasm, steady) = (dir.0.join("ver.wasm"), dir.0.join("steady.wasm"));
    install(v1, &wasm);
    install(v1, &steady);
    let fg = FileGateway::start(&swapping(&wasm, &steady, "v1")).await;
    let addr = fg.gw.addr;
    let admin = fg.gw.admin;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for c in 0..4 {
        let stop = stop.clone();
        let failures = failures.clone();
        clients.push(tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Full<bytes::Bytes>>();
            let paths = ["/p1", "/p2", "/s", "/d"];
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
                let header = |n: &str| {
                    resp.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let (version, n) = (header("x-plugin-version"), header("x-served"));
                let body = match http_body_util::BodyExt::collect(resp.into_body()).await {
                    Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                    Err(e) => {
                        failures.lock().unwrap().push(format!("{path}: body: {e}"));
                        continue;
                    }
                };
                let end = Instant::now();
                // Fresh instances always count 1; the steady plugin's warm instances count up.
                let n: u64 = n.parse().unwrap_or(1);
                let want_version = if path == "/s" { "v1" } else { version.as_str() };
                if status != 200 {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{path}: {status} {body}"));
                } else if (version != "v1" && version != "v2")
                    || version != want_version
                    || body != versioned_body(&version, &path[1..], n)
                    || (path != "/s" && n != 1)
                {
                    failures.lock().unwrap().push(format!(
                        "{path}: mixed: x-plugin-version {version:?}, x-served {n}, body {:?}",
                        &body[..body.len().min(40)]
                    ));
                }
                served.push((path, start, end, version));
            }
            served
        }));
    }

    let mut swaps = Vec::new();
    for n in 0..SWAPS {
        let (v, build) = if n % 2 == 0 { ("v2", v2) } else { ("v1", v1) };
        install(build, &wasm);
        fg.write(&swapping(&wasm, &steady, v));
        let sent = Instant::now();
        let (s, _, body) = admin_call(admin, "POST", "/reload", "").await;
        assert_eq!(s, 200, "swap {n}: {body}");
        let msg = json(&body)["message"].as_str().unwrap().to_owned();
        assert!(
            msg.contains("plugins: 1 reused, 1 loaded; routes with filters: 1 kept, 2 rebuilt"),
            "swap {n}: {msg}"
        );
        let acked = Instant::now();
        swaps.push((sent, acked, v));
        // The first request started after the swap is acknowledged runs the new build.
        for path in ["/p1", "/d"] {
            let (s, h, body) = get(&format!("http://{addr}{path}")).await;
            assert_eq!(s, 200);
            assert_eq!(h["x-plugin-version"], v, "{path} after swap {n}");
            assert_eq!(
                body,
                versioned_body(v, &path[1..], 1),
                "{path} after swap {n}"
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut served = Vec::new();
    for c in clients {
        served.extend(c.await.unwrap());
    }
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    assert!(
        failures.is_empty(),
        "{} failed of {}: {:?}",
        failures.len(),
        served.len() + failures.len(),
        &failures[..failures.len().min(10)]
    );
    // A request that started after swap k was acknowledged and ended before swap k+1 was sent ran
    // build k.
    let mut checked = 0;
    for (k, (_, acked, v)) in swaps.iter().enumerate() {
        let next_sent = swaps.get(k + 1).map(|s| s.0);
        for (path, start, end, version) in &served {
            if *path != "/s" && *start >= *acked && next_sent.is_none_or(|n| *end <= n) {
                assert_eq!(version, v, "{path} between swap {k} and the next");
                checked += 1;
            }
        }
    }
    let steady_served = served.iter().filter(|s| s.0 == "/s").count();
    println!(
        "{} requests served during {SWAPS} plugin swaps, 0 failed; {checked} fell wholly between two swaps",
        served.len()
    );
    assert!(checked > 0, "some requests fell between two swaps");
    assert!(steady_served > 0);
    let list = plugins_json(admin).await;
    assert_eq!(plugin(&list, "steady")["last_reload"]["action"], "reused");
    assert!(
        list["cache"]["compilations"].as_u64().unwrap() <= 2,
        "each build compiled at most once: {:#}",
        list["cache"]
    );
}

/// Compiling a plugin runs off the async workers: with a single worker thread, requests keep being
/// answered while a reload compiles a plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn traffic_keeps_flowing_while_a_reload_compiles_plugins() {
    let (v1, _) = versioned_builds();
    let cache = TempDir::new("compile");
    let base = format!(
        "server:\n  access_log: {{enabled: false}}\n  cache_dir: {}\nroutes:\n  - name: d\n    match: {{path: {{exact: /d}}}}\n    direct_response: {{body: ok}}\n",
        cache.0.display()
    );
    let fg = FileGateway::start(&base).await;
    let with_plugins = format!(
        "{base}  - name: p\n    filters: [{{plugin: one, config: p}}]\n    direct_response: {{}}\nplugins:\n  - name: one\n    path: {}\n",
        v1.display()
    );
    fg.write(&with_plugins);
    let admin = fg.gw.admin;
    let started = Instant::now();
    let reload = tokio::spawn(async move { admin_call(admin, "POST", "/reload", "").await });
    let mut answered = 0;
    let mut slowest = Duration::ZERO;
    while !reload.is_finished() {
        let t = Instant::now();
        let (s, _, b) = get(&fg.gw.url("/d")).await;
        assert_eq!((s, b.as_str()), (200, "ok"));
        slowest = slowest.max(t.elapsed());
        answered += 1;
    }
    let took = started.elapsed();
    let (s, _, body) = reload.await.unwrap();
    assert_eq!(s, 200, "{body}");
    let list = plugins_json(admin).await;
    assert_eq!(list["cache"]["compilations"], 1, "{list:#}");
    println!("reload compiling a plugin took {took:?}; {answered} requests answered meanwhile, the slowest in {slowest:?}");
    assert!(
        answered >= 5 && slowest < took / 2,
        "requests stalled while compiling: {answered} answered in {took:?}, the slowest took {slowest:?}"
    );
    assert_eq!(get(&fg.gw.url("/")).await.2, versioned_body("v1", "p", 1));
}
