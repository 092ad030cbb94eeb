//! A Proxy-Wasm plugin runs in several VMs (`vms:`, by default one per worker thread, as in Envoy):
//! a request is served by another VM while a callback of an earlier one holds the first.

use crate::harness::*;
use gateway_test_support::RedisServer;
use std::time::Duration;

/// The kitchen filter on a route, in `vms` VMs, its shared data in Redis at `redis` (a command
/// waits up to a minute for its answer, so a frozen server holds a callback that reads it); its
/// `on_log`, which counts requests in shared data (`logged:v`), runs only with `log`. `/read` goes
/// through a second kitchen plugin, `reader`, which reads that shared data and never logs (so that
/// no callback of a read is left waiting when the test freezes the store).
fn config(vms: u32, log: bool, redis: &RedisServer, up: &MockUpstream) -> String {
    let kitchen = &xtask::proxy_wasm_fixtures()
        .unwrap_or_else(|e| panic!("{e}"))
        .kitchen;
    let caps = "    capabilities: {kv_namespace: kitchen}\n";
    format!(
        "{}{}kv_namespaces:\n  kitchen:\n    backend: redis\n    redis: {{url: \"{}\", command_timeout: 60s}}\n\
         routes:\n  - name: read\n    match: {{path: {{prefix: /read}}}}\n    upstream: up\n    filters: [{{plugin: reader, config: \"tag=read\"}}]\n\
         \x20 - name: r\n    upstream: up\n    filters: [{{plugin: kitchen, config: \"tag=v\"}}]\n",
        GatewayConfig::new()
            .plugin(Plugin::new("kitchen", kitchen).lines(&format!(
                "    vms: {vms}\n{caps}{}",
                if log { "" } else { "    skip: [on_log]\n" }
            )))
            .plugin(Plugin::new("reader", kitchen).lines(&format!("{caps}    skip: [on_log]\n")))
            .yaml(),
        GatewayConfig::new()
            .upstream(Upstream::new("up").endpoint(up.addr))
            .yaml(),
        redis.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_vm_serves_requests_while_a_callback_waits_in_the_first() {
    let redis = RedisServer::start();
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&config(2, false, &redis, &up)).await;
    // The plugin's connection to Redis is made (mode `shared` reads and writes shared data).
    let (s, _, body) = get_with(&gw.url("/x"), &[("x-test", "shared")]).await;
    assert_eq!(s, 200, "{body}");
    let seen = up.last().headers["x-shared"].to_str().unwrap().to_owned();
    assert!(seen.contains("v2=v2"), "{seen:?}");

    // A request whose request headers callback reads shared data from a frozen Redis: the
    // callback, and so its VM, is held until the server answers.
    redis.freeze();
    let url = gw.url("/x");
    let held = tokio::spawn(async move { get_with(&url, &[("x-test", "shared")]).await });
    let within = tokio::time::Instant::now() + Duration::from_secs(30);
    while redis.unread_bytes() == 0 {
        assert!(
            tokio::time::Instant::now() < within,
            "the held request's command never reached Redis"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!held.is_finished());

    // Another request through the same filter is served by the other VM meanwhile. With one VM it
    // would wait for the held callback (a minute, the command timeout): the bound below is a hang
    // guard, not a speed assertion.
    let served = tokio::time::timeout(
        Duration::from_secs(20),
        get_with(&gw.url("/x"), &[("x-test", "none")]),
    )
    .await;
    let still_held = !held.is_finished();
    redis.thaw();
    let (s, _, body) = served.expect("a request waited for another request's callback");
    assert_eq!(s, 200, "{body}");
    assert!(
        still_held,
        "the first request was no longer held when the second was served"
    );
    let (s, _, body) = held.await.unwrap();
    assert_eq!(s, 200, "{body}");
    let seen = up.last().headers["x-shared"].to_str().unwrap().to_owned();
    assert!(seen.contains("v2=v2"), "{seen:?}");

    // Two VMs live: the second started when the second request needed it.
    let (_, _, body) = get(&format!("http://{}/plugins", gw.admin)).await;
    let v = json(&body);
    let kitchen = v["plugins"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "kitchen").cloned())
        .unwrap_or_else(|| panic!("no plugin kitchen in {v:#}"));
    assert_eq!(kitchen["instances"]["live"], 2, "{kitchen:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_out_of_range_or_on_a_component_is_refused_at_its_line() {
    let kitchen = &xtask::proxy_wasm_fixtures()
        .unwrap_or_else(|e| panic!("{e}"))
        .kitchen;
    let component = &xtask::component_fixtures()
        .unwrap_or_else(|e| panic!("{e}"))
        .kitchen;
    let cases = [
        (
            Plugin::new("k", kitchen).lines("    vms: 0\n"),
            "between 1 and 64",
        ),
        (
            Plugin::new("k", kitchen).lines("    vms: 65\n"),
            "between 1 and 64",
        ),
        (
            Plugin::new("c", component).lines("    vms: 2\n"),
            "number of Proxy-Wasm VMs",
        ),
    ];
    for (plugin, expected) in cases {
        let yaml = GatewayConfig::new().plugin(plugin).yaml();
        let line = config_text(&yaml)
            .lines()
            .position(|l| l.contains("vms:"))
            .unwrap()
            + 1;
        let err = refused(&yaml).await;
        assert!(
            err.contains(&format!("test.yaml:{line}:"))
                && err.contains("vms")
                && err.contains(expected),
            "{err}\n{}",
            config_text(&yaml)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_ends_without_waiting_for_an_on_log_that_waits_on_the_store() {
    let redis = RedisServer::start();
    let up = MockUpstream::start("up").await;
    // The kitchen's on_log counts the request in shared data (`logged:<tag>`), here in Redis.
    let gw = TestGateway::start(&config(1, true, &redis, &up)).await;
    let read = async || {
        let (_, h, _) = get_with(
            &gw.url("/read"),
            &[("x-test", "get-shared"), ("x-key", "logged:v")],
        )
        .await;
        h.get("x-shared-value")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (s, _, body) = get_with(&gw.url("/x"), &[("x-test", "none")]).await;
    assert_eq!(s, 200, "{body}");
    assert!(eventually(Duration::from_secs(10), async || read().await == "1").await);

    // With the store frozen, the response still ends: its on_log waits after it, not before its
    // last bytes (the bound is a hang guard; the store's command timeout is a minute).
    redis.freeze();
    let served = tokio::time::timeout(
        Duration::from_secs(20),
        get_with(&gw.url("/x"), &[("x-test", "none")]),
    )
    .await;
    redis.thaw();
    let (s, _, body) = served.expect("the response waited for its on_log");
    assert_eq!(s, 200, "{body}");
    // And its log callback did run, once the store answered.
    assert!(eventually(Duration::from_secs(10), async || read().await == "2").await);
}
