//! Hot reload: every trigger (file change, SIGHUP, `POST /reload`, `PUT /config`), failed reloads that
//! change nothing, listener changes refused, cluster state kept, zero failed requests while reloading
//! under traffic, and old runtimes freed (live count and RSS over 1 000 reloads).

use crate::harness::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The value of a metric line that starts with `name` (labels included).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn admin_metric(admin: SocketAddr, name: &str) -> Option<f64> {
    metric(&get(&format!("http://{admin}/metrics")).await.2, name)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn one_route(body: &str) -> String {
    format!("routes:\n  - name: r\n    direct_response: {{body: \"{body}\"}}\n")
}

// ---------------------------------------------------------------------------------------------------
// Triggers
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_reads_the_file_again_and_get_reload_shows_the_result() {
    let fg = FileGateway::start(&one_route("one")).await;
    let gw = &fg.gw;
    assert_eq!(get(&gw.url("/")).await.2, "one");
    let (s, _, body) = admin_call(gw.admin, "GET", "/reload", "").await;
    assert_eq!(s, 200);
    let before = json(&body);
    assert_eq!(before["generation"], 0);
    assert!(before["last"].is_null(), "{body}");

    fg.write(&one_route("two"));
    let (s, _, body) = admin_call(gw.admin, "POST", "/reload", "").await;
    assert_eq!(s, 200, "{body}");
    let r = json(&body);
    assert_eq!(r["result"], "ok");
    assert_eq!(r["trigger"], "admin");
    assert_eq!(r["generation"], 1);
    assert_eq!(get(&gw.url("/")).await.2, "two");

    let last = json(&admin_call(gw.admin, "GET", "/reload", "").await.2);
    assert_eq!(last["generation"], 1);
    assert_eq!(last["last"]["result"], "ok");
    assert_eq!(last["last"]["trigger"], "admin");
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, "gateway_reloads_total{result=\"ok\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "gateway_reloads_total{result=\"error\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&m, "gateway_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(metric(&m, "gateway_config_last_reload_success_timestamp_seconds").unwrap() > 1.6e9);
    let (s, _, _) = admin_call(gw.admin, "DELETE", "/reload", "").await;
    assert_eq!(s, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_config_applies_yaml_or_json_and_is_not_written_back() {
    let fg = FileGateway::start(&one_route("one")).await;
    let gw = &fg.gw;
    let file_before = std::fs::read_to_string(&fg.config_path).unwrap();

    let (s, _, body) =
        admin_call(gw.admin, "PUT", "/config", &config_text(&one_route("two"))).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(json(&body)["trigger"], "put_config");
    assert_eq!(get(&gw.url("/")).await.2, "two");
    let shown = json(&admin_call(gw.admin, "GET", "/config", "").await.2);
    assert_eq!(shown["routes"][0]["direct_response"]["body"], "two");
    assert_eq!(
        std::fs::read_to_string(&fg.config_path).unwrap(),
        file_before,
        "PUT /config does not write the file"
    );

    // What GET /config shows can be edited and sent back as JSON.
    let mut edited = shown.clone();
    edited["routes"][0]["direct_response"]["body"] = "three".into();
    let (s, _, body) = admin_call(gw.admin, "PUT", "/config", &edited.to_string()).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(get(&gw.url("/")).await.2, "three");

    // A reload from the file replaces what PUT applied.
    assert_eq!(admin_call(gw.admin, "POST", "/reload", "").await.0, 200);
    assert_eq!(get(&gw.url("/")).await.2, "one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_reload_handle_applies_text() {
    let gw = TestGateway::start(&one_route("one")).await;
    let report = gw
        .gw
        .as_ref()
        .unwrap()
        .reload_from(&config_text(&one_route("two")))
        .await
        .expect("reloaded");
    assert_eq!(report.generation, 1);
    assert_eq!(get(&gw.url("/")).await.2, "two");
    let err = gw
        .gw
        .as_ref()
        .unwrap()
        .reload_from(&config_text("routes:\n  - name: r\n    upstream: nope\n"))
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("routes[0].upstream: unknown upstream `nope`"),
        "{err}"
    );
    assert_eq!(get(&gw.url("/")).await.2, "two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_reloads_on_file_change_and_on_sighup() {
    let gw = GatewayProcess::start(&one_route("v1")).await;
    assert_eq!(get(&gw.url("/")).await.2, "v1");
    let admin = gw.admin;
    let last =
        || async move { json(&admin_call(admin, "GET", "/reload", "").await.2)["last"].clone() };

    // The watcher picks up a changed file.
    gw.write_config(&one_route("v2"));
    let url = gw.url("/");
    let seen = eventually(Duration::from_secs(10), || {
        let url = url.clone();
        async move { get(&url).await.2 == "v2" }
    })
    .await;
    assert!(seen, "the file change was applied");
    assert_eq!(last().await["trigger"], "file");

    // A broken file is reported and changes nothing.
    gw.write_config("routes:\n  - name: r\n    upstream: nope\n");
    let failed = eventually(Duration::from_secs(10), || async move {
        last().await["result"] == "error"
    })
    .await;
    assert!(failed, "the broken file was reported");
    let l = last().await;
    assert_eq!(l["trigger"], "file");
    let msg = l["message"].as_str().unwrap().to_owned();
    let want = format!(
        "{}:8:5: routes[0].upstream: unknown upstream `nope`",
        gw.config_path.display()
    );
    assert!(msg.starts_with(&want), "{msg}\nwanted {want}");
    assert_eq!(get(&gw.url("/")).await.2, "v2");

    // SIGHUP reads the file again: apply v3 with PUT (the file keeps the broken config), fix the file
    // to v4 and wait for the watcher, PUT v5, then SIGHUP must bring back the file's v4.
    gw.write_config(&one_route("v4"));
    let fixed = eventually(Duration::from_secs(10), || {
        let url = url.clone();
        async move { get(&url).await.2 == "v4" }
    })
    .await;
    assert!(fixed);
    let put = format!(
        "listeners:\n  - name: main\n    address: 127.0.0.1:{}\nadmin:\n  address: 127.0.0.1:{}\n{}",
        gw.addr.port(),
        gw.admin.port(),
        one_route("v5")
    );
    assert_eq!(admin_call(admin, "PUT", "/config", &put).await.0, 200);
    assert_eq!(get(&gw.url("/")).await.2, "v5");
    gw.signal("HUP");
    let back = eventually(Duration::from_secs(10), || {
        let url = url.clone();
        async move { get(&url).await.2 == "v4" }
    })
    .await;
    assert!(back, "SIGHUP reloaded the file");
    assert_eq!(last().await["trigger"], "signal");
}

// ---------------------------------------------------------------------------------------------------
// Failed reloads
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_changes_nothing_and_says_where() {
    let up = MockUpstream::start("up").await;
    let good = format!(
        "upstreams:\n  - name: up\n    endpoints: [\"{}\"]\nroutes:\n  - name: api\n    match: {{path: {{prefix: /api}}}}\n    upstream: up\n{}",
        up.addr,
        "  - name: r\n    direct_response: {body: \"v1\"}\n"
    );
    let fg = FileGateway::start(&good).await;
    let gw = &fg.gw;
    let config_before = get(&format!("http://{}/config", gw.admin)).await.2;
    let file = fg.config_path.display().to_string();
    // The written file starts with 7 lines of defaults (listener, admin, access log), so the third line
    // of each case is line 10.
    let cases = [
        (
            "routes:\n  - name: r\n    direct_response: {body: \"v2\"\n",
            0,
            "(top level)",
            "",
        ),
        (
            "routes:\n  - name: r\n    upstream: nope\n",
            10,
            "routes[0].upstream",
            "unknown upstream `nope`",
        ),
        (
            "routes:\n  - name: r\n    match: {path: {regex: '('}}\n    direct_response: {body: \"v2\"}\n",
            10,
            "routes[0].match.path.regex",
            "invalid regex",
        ),
        (
            "routes:\n  - name: r\n    direct_response: {body: \"v2\", colour: red}\n",
            10,
            "routes[0].direct_response",
            "unknown field `colour`",
        ),
    ];
    for (n, (yaml, line, field, what)) in cases.into_iter().enumerate() {
        fg.write(yaml);
        let (s, _, body) = admin_call(gw.admin, "POST", "/reload", "").await;
        assert_eq!(s, 400, "{yaml}: {body}");
        let e = json(&body);
        assert_eq!(e["error"], "reload_failed");
        let msg = e["message"].as_str().unwrap();
        assert!(msg.starts_with(&format!("{file}:")), "{msg}");
        assert_eq!(e["file"], file.as_str());
        if field != "(top level)" {
            assert_eq!(e["line"], line, "{msg}");
            assert!(
                msg.starts_with(&format!("{file}:{line}:"))
                    && msg.contains(&format!(": {field}: {what}")),
                "{msg}"
            );
        } else {
            assert!(
                e["line"].as_u64().is_some(),
                "a YAML error has a line: {msg}"
            );
        }
        // Nothing changed.
        assert_eq!(get(&gw.url("/")).await.2, "v1");
        let (s, _, b) = get(&gw.url("/api/x")).await;
        assert_eq!((s, b.as_str()), (200, "mock up /api/x\n"));
        assert_eq!(
            get(&format!("http://{}/config", gw.admin)).await.2,
            config_before
        );
        let last = json(&admin_call(gw.admin, "GET", "/reload", "").await.2);
        assert_eq!(last["generation"], 0);
        assert_eq!(last["last"]["result"], "error");
        assert_eq!(last["last"]["message"], msg);
        let m = gw.metrics().await;
        assert_eq!(
            metric(&m, "gateway_reloads_total{result=\"error\"}"),
            Some(n as f64 + 1.0)
        );
        assert_eq!(
            metric(&m, "gateway_config_last_reload_successful"),
            Some(0.0)
        );
    }
    // PUT /config errors name the body, placed next to the file.
    let (s, _, body) = admin_call(
        gw.admin,
        "PUT",
        "/config",
        &config_text("routes:\n  - name: r\n    upstream: nope\n"),
    )
    .await;
    assert_eq!(s, 400);
    let msg = json(&body)["message"].as_str().unwrap().to_owned();
    let put_name = fg.config_path.with_file_name("<PUT config>");
    assert!(
        msg.starts_with(&format!("{}:10:5: routes[0].upstream", put_name.display())),
        "{msg}"
    );
    let (s, _, _) = admin_call(gw.admin, "PUT", "/config", "\u{0}\u{1}not: [yaml").await;
    assert_eq!(s, 400);
    assert_eq!(get(&gw.url("/")).await.2, "v1");

    fg.write(&good.replace("v1", "v2"));
    assert_eq!(admin_call(gw.admin, "POST", "/reload", "").await.0, 200);
    assert_eq!(get(&gw.url("/")).await.2, "v2");
    assert_eq!(
        metric(&gw.metrics().await, "gateway_config_last_reload_successful"),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_whose_plugins_fail_changes_nothing() {
    let fg = FileGateway::start(&one_route("v1")).await;
    let gw = &fg.gw;
    let cases = [
        (
            "routes:\n  - name: r\n    filters: [{plugin: nope}]\n    direct_response: {body: v2}\n",
            "routes[0].filters[0].plugin",
        ),
        (
            "plugins:\n  - name: p\n    path: missing.wasm\nroutes:\n  - name: r\n    filters: [{plugin: p}]\n    direct_response: {body: v2}\n",
            "plugins[0].path",
        ),
    ];
    for (yaml, field) in cases {
        fg.write(yaml);
        let (s, _, body) = admin_call(gw.admin, "POST", "/reload", "").await;
        assert_eq!(s, 400, "{body}");
        let e = json(&body);
        assert_eq!(e["field"], field, "{body}");
        assert!(e["line"].as_u64().is_some(), "{body}");
        assert_eq!(get(&gw.url("/")).await.2, "v1");
    }
    assert_eq!(
        json(&admin_call(gw.admin, "GET", "/reload", "").await.2)["generation"],
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_gives_routes_new_filter_instances_with_their_new_config() {
    let demo = &xtask::examples()
        .unwrap_or_else(|e| panic!("{e}"))
        .proxy_wasm_demo;
    let up = MockUpstream::start("up").await;
    let cfg = |a: &str, b_filters: &str| {
        config_text(&format!(
            "plugins:\n  - name: demo\n    path: {}\nupstreams:\n  - name: up\n    endpoints: [\"{}\"]\nroutes:\n  - name: a\n    match: {{path: {{prefix: /a}}}}\n    upstream: up\n    filters: [{{plugin: demo, config: {a}}}]\n  - name: b\n    upstream: up\n{b_filters}",
            demo.display(),
            up.addr
        ))
    };
    let gw = TestGateway::start(&cfg("hello-1", "")).await;
    let handle = gw.gw.as_ref().unwrap();
    get(&gw.url("/a")).await;
    assert_eq!(up.last().headers["x-demo-greeting"], "hello-1");
    let (_, h, _) = get(&gw.url("/b")).await;
    assert!(h.get("x-wasm-filter").is_none());

    handle
        .reload_from(&cfg(
            "hello-2",
            "    filters: [{plugin: demo, config: hello-b}]\n",
        ))
        .await
        .unwrap();
    get(&gw.url("/a")).await;
    assert_eq!(up.last().headers["x-demo-greeting"], "hello-2");
    let (_, h, _) = get(&gw.url("/b")).await;
    assert_eq!(h["x-wasm-filter"], "proxy-wasm-demo");
    assert_eq!(up.last().headers["x-demo-greeting"], "hello-b");

    // Back without the filter on b.
    handle.reload_from(&cfg("hello-1", "")).await.unwrap();
    let (_, h, _) = get(&gw.url("/b")).await;
    assert!(h.get("x-wasm-filter").is_none());
    get(&gw.url("/a")).await;
    assert_eq!(up.last().headers["x-demo-greeting"], "hello-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_changes_are_refused_with_the_field_named() {
    let base = "listeners:\n  - name: main\n    address: 127.0.0.1:0\n";
    let routes =
        |body: &str| format!("routes:\n  - name: r\n    direct_response: {{body: \"{body}\"}}\n");
    let fg = FileGateway::start(&format!("{base}{}", routes("v1"))).await;
    let gw = &fg.gw;
    let cases = [
        (
            format!(
                "listeners:\n  - name: main\n    address: 127.0.0.1:1\n{}",
                routes("v2")
            ),
            "listeners[0].address",
        ),
        (
            format!("{base}    limits: {{max_connections: 7}}\n{}", routes("v2")),
            "listeners[0].limits.max_connections",
        ),
        (
            format!(
                "{base}  - name: extra\n    address: 127.0.0.1:0\n{}",
                routes("v2")
            ),
            "listeners[1].name",
        ),
        (
            format!(
                "listeners:\n  - name: renamed\n    address: 127.0.0.1:0\n{}",
                routes("v2")
            ),
            "listeners[0].name",
        ),
        (
            format!("{base}admin:\n  address: 127.0.0.1:1\n{}", routes("v2")),
            "admin.address",
        ),
    ];
    for (yaml, field) in cases {
        fg.write(&yaml);
        let (s, _, body) = admin_call(gw.admin, "POST", "/reload", "").await;
        assert_eq!(s, 400, "{yaml}: {body}");
        let e = json(&body);
        assert_eq!(e["field"], field, "{body}");
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains("restart the gateway"), "{msg}");
        assert!(e["line"].as_u64().is_some(), "{msg}");
        assert_eq!(
            get(&gw.url("/")).await.2,
            "v1",
            "nothing of {yaml} was applied"
        );
    }
    // Routes may change while the listeners stay as they are.
    fg.write(&format!("{base}{}", routes("v2")));
    assert_eq!(admin_call(gw.admin, "POST", "/reload", "").await.0, 200);
    assert_eq!(get(&gw.url("/")).await.2, "v2");
}

// ---------------------------------------------------------------------------------------------------
// State kept and freed
// ---------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------
// Under load
// ---------------------------------------------------------------------------------------------------

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
    // Two versions: every route answers differently, and upstream `u2` changes (so its cluster is
    // rebuilt and the old one dropped on every reload) while `u0` and `u1` are kept.
    let config = |v: usize| {
        let mut s = String::from("upstreams:\n");
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
