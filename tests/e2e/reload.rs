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
            "routes[0].direct_response.colour",
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

// ---------------------------------------------------------------------------------------------------
// Plugins: reuse across reloads, caches of compiled code, /plugins, version swaps under load
// ---------------------------------------------------------------------------------------------------

/// The two builds of the versioned fixture filter (`tests/fixtures/versioned`): each answers every
/// request itself with `x-plugin-version: v1|v2` and the body `<version> <route config> <n>\n` x 50,
/// `n` counting the requests its instance served. Built once per process (into the target dir of the
/// component fixtures, whose dependencies it shares).
pub fn versioned_builds() -> &'static (std::path::PathBuf, std::path::PathBuf) {
    static BUILT: std::sync::OnceLock<(std::path::PathBuf, std::path::PathBuf)> =
        std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let t = xtask::build_wasm(
            "tests/fixtures/versioned",
            &["wasm32-wasip2"],
            "fixtures-components",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let dir = t.join("wasm32-wasip2/release");
        (dir.join("versioned_v1.wasm"), dir.join("versioned_v2.wasm"))
    })
}

/// The body a versioned build answers with.
pub fn versioned_body(version: &str, label: &str, n: u64) -> String {
    format!("{version} {label} {n}\n").repeat(50)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

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
    // Two inits and three requests (one call each).
    assert_eq!(p["calls"], 5, "{p:#}");
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
