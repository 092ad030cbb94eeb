//! Failed reloads change nothing and say where; listener changes are refused.

use super::*;

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
