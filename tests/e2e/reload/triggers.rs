//! Reload triggers: `POST /reload`, `PUT /config`, the library handle, file changes and SIGHUP.

use super::*;

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
