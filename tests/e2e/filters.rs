//! Wasm filters on routes through the real gateway: a Proxy-Wasm filter written for Envoy runs
//! unchanged, chains keep Envoy's order, callouts pause and resume, bodies are rewritten, and hostile
//! plugins fail by policy while the gateway carries on.

use crate::harness::*;
use std::path::Path;
use std::time::Duration;

fn demo() -> &'static Path {
    &xtask::examples()
        .unwrap_or_else(|e| panic!("{e}"))
        .proxy_wasm_demo
}

fn fixtures() -> &'static xtask::Fixtures {
    xtask::proxy_wasm_fixtures().unwrap_or_else(|e| panic!("{e}"))
}

fn plugins() -> String {
    plugins_with("")
}

/// [`plugins`], with `kitchen_lines` added to the kitchen plugin's entry.
fn plugins_with(kitchen_lines: &str) -> String {
    let f = fixtures();
    GatewayConfig::new()
        .plugin(Plugin::new("demo", demo()))
        .plugin(Plugin::new("kitchen", &f.kitchen).lines(kitchen_lines))
        .plugin(
            Plugin::new("hostile", &f.hostile)
                .lines("    limits: {memory: 16MiB, cpu_per_call: 250ms}\n"),
        )
        .yaml()
}

fn upstreams(up: &MockUpstream, callee: &MockUpstream) -> String {
    GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .upstream(Upstream::new("mock").endpoint(callee.addr))
        .yaml()
}

/// The test's backends (`up` serves the routes; `callee` answers callouts, as the upstream `mock`)
/// and a gateway with the test plugins and these `routes` (the YAML under `routes:`).
async fn gateway(routes: &str) -> (MockUpstream, MockUpstream, TestGateway) {
    gateway_in(&plugins(), routes).await
}

/// [`gateway`] with these `plugins` (the YAML of [`plugins_with`]).
async fn gateway_in(plugins: &str, routes: &str) -> (MockUpstream, MockUpstream, TestGateway) {
    let up = MockUpstream::start("up").await;
    let callee = MockUpstream::start("callee").await;
    let gw = TestGateway::start(&format!(
        "{plugins}{}routes:\n{routes}",
        upstreams(&up, &callee)
    ))
    .await;
    (up, callee, gw)
}

/// What a kitchen filter wrote in shared data under `key` (empty if nothing), read by a request to
/// `path`, whose route's first filter is a kitchen filter.
async fn shared(gw: &TestGateway, path: &str, key: &str) -> String {
    let (_, h, _) = get_with(&gw.url(path), &[("x-test", "get-shared"), ("x-key", key)]).await;
    h.get("x-shared-value")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envoy_proxy_wasm_filter_runs_unchanged_with_each_routes_config() {
    let up = MockUpstream::start("up").await;
    let callee = MockUpstream::start("callee").await;
    let gw = TestGateway::start(&format!(
        "{}{}routes:\n\
         \x20 - name: a\n    match: {{path: {{prefix: /a}}}}\n    upstream: up\n    filters: [{{plugin: demo, config: hello-a}}]\n\
         \x20 - name: b\n    match: {{path: {{prefix: /b}}}}\n    upstream: up\n    filters: [{{plugin: demo, config: hello-b}}]\n\
         \x20 - name: plain\n    upstream: up\n",
        plugins(),
        upstreams(&up, &callee)
    ))
    .await;
    let (s, h, _) = get(&gw.url("/a")).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-wasm-filter"], "proxy-wasm-demo");
    assert_eq!(up.last().headers["x-demo-greeting"], "hello-a");
    get(&gw.url("/b")).await;
    assert_eq!(up.last().headers["x-demo-greeting"], "hello-b");
    let (s, h, _) = get(&gw.url("/plain")).await;
    assert_eq!(s, 200);
    assert!(h.get("x-wasm-filter").is_none());
    let hits = up.hits();
    let (s, _, body) = get_with(&gw.url("/a"), &[("x-demo-deny", "1")]).await;
    assert_eq!((s, body.as_str()), (403, "denied by a Wasm filter\n"));
    assert_eq!(up.hits(), hits, "a local response skips the backend");
    let m = gw.metrics().await;
    assert!(m.contains("plugin_demo_requests"), "{m}");
    assert!(
        m.contains("gateway_plugin_calls_total{plugin=\"demo\"}"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_response_goes_back_through_the_filter_that_sent_it_and_those_before_it() {
    let (up, _callee, gw) = gateway("  - name: r\n    match: {path: {prefix: /x}}\n    upstream: up\n    filters:\n      - {plugin: kitchen, config: \"tag=outer\"}\n      - {plugin: demo, config: inner}\n      - {plugin: kitchen, config: \"tag=after\"}\n  - name: reader\n    upstream: up\n    filters: [{plugin: kitchen, config: \"tag=reader\"}]\n").await;
    let (s, h, _) = get_with(&gw.url("/x"), &[("x-demo-deny", "1")]).await;
    assert_eq!(s, 403);
    // As in Envoy: the answering filter stamps its own reply, the filter before it sees it too; the
    // filter after it never saw the request and does not see the reply.
    assert_eq!(h["x-wasm-filter"], "proxy-wasm-demo");
    assert_eq!(values(&h, "x-resp-seen-by"), ["outer"]);
    assert_eq!(
        h["x-resp-upstream-address"], "<none>",
        "no endpoint answered"
    );
    assert_eq!(up.hits(), 0);
    // Every stage, reached or not, gets `on_log` (the kitchen counts its calls in shared data).
    assert!(
        eventually(Duration::from_secs(5), async || shared(
            &gw,
            "/read",
            "logged:after"
        )
        .await
            == "1")
        .await
    );
    // Without the deny, every response phase runs (in reverse order) on the upstream's answer.
    let (s, h, _) = get(&gw.url("/x")).await;
    assert_eq!(s, 200);
    assert_eq!(values(&h, "x-resp-seen-by"), ["after", "outer"]);
    // The response phase knows the endpoint that answered (`upstream.address`, `upstream.port`).
    assert_eq!(h["x-resp-upstream-address"], up.addr.to_string().as_str());
    assert_eq!(
        h["x-resp-upstream-port"],
        up.addr.port().to_string().as_str()
    );
    assert_eq!(h["x-wasm-filter"], "proxy-wasm-demo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callout_goes_without_the_hop_by_hop_headers_the_filter_passed() {
    let (up, callee, gw) =
        gateway("  - name: r\n    upstream: up\n    filters: [{plugin: kitchen}]\n").await;
    let (s, _, body) = get_with(&gw.url("/x"), &[("x-test", "callout-hop")]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(up.last().headers["x-callout-status"], "200");
    let call = callee.last();
    assert_eq!((call.uri.as_str(), &call.body[..]), ("/auth", &b"abc"[..]));
    for h in [
        "connection",
        "x-named",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(
            call.headers.get(h).is_none(),
            "{h} reached the callee: {:?}",
            call.headers
        );
    }
    assert_eq!(call.headers["content-length"], "3", "the body's own length");
    assert_eq!(call.headers["x-kept"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callout_pauses_the_request_and_its_answer_resumes_or_denies_it() {
    let (up, callee, gw) =
        gateway("  - name: r\n    upstream: up\n    filters: [{plugin: kitchen}]\n").await;
    let (s, _, body) = get_with(
        &gw.url("/x"),
        &[("x-test", "callout"), ("x-callout-body", "hi")],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let seen = up.last();
    assert_eq!(seen.headers["x-callout-status"], "200");
    assert_eq!(seen.headers["x-callout-body"], "allowed");
    let call = callee.last();
    assert_eq!((call.method.as_str(), call.uri.as_str()), ("POST", "/auth"));
    assert_eq!(call.body, "hi");
    callee.fail_next(1, 403);
    let hits = up.hits();
    let (s, h, _) = get_with(&gw.url("/x"), &[("x-test", "callout")]).await;
    assert_eq!(s, 403);
    assert_eq!(h["x-denied-by"], "callout");
    assert_eq!(up.hits(), hits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upstream_body_is_rewritten_and_request_bodies_are_buffered() {
    let (up, _callee, gw) = gateway("  - name: r\n    upstream: up\n    max_body_size: 1KiB\n    filters: [{plugin: kitchen}]\n").await;
    let (s, h, body) = get_with(&gw.url("/foo/3"), &[("x-test", "resp-stream")]).await;
    assert_eq!(s, 200);
    assert!(h.get("content-length").is_none());
    assert_eq!(body, "bar 0\nbar 1\nbar 2\n");
    // A filter that buffers the request body gets all of it (chunked, in pieces) and rewrites it.
    let resp = raw(
        gw.addr,
        b"POST /echo HTTP/1.1\r\nHost: h\r\nx-test: body-buffer\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(up.last().body, "ABCDEF");
    // Buffering is bounded by the route's body limit.
    let big = format!(
        "POST /echo HTTP/1.1\r\nHost: h\r\nx-test: body-buffer\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n400\r\n{}\r\n400\r\n{}\r\n0\r\n\r\n",
        "a".repeat(1024),
        "b".repeat(1024)
    );
    let resp = raw(gw.addr, big.as_bytes(), Duration::from_secs(2)).await;
    assert_eq!(status_of(&resp), 413, "{resp}");
    // A streaming filter that answers mid-body on an upstream route: its answer is the client's,
    // not an upstream error.
    let resp = raw(
        gw.addr,
        b"POST /echo HTTP/1.1\r\nHost: h\r\nx-test: body-deny\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n4\r\ndeny\r\n0\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(status_of(&resp), 403, "{resp}");
    assert!(resp.contains("denied in body"), "{resp}");
    assert!(
        !gw.metrics()
            .await
            .contains("gateway_upstream_errors_total{"),
        "no upstream error was counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_fail_by_policy_and_the_gateway_carries_on() {
    let up = MockUpstream::start("up").await;
    let callee = MockUpstream::start("callee").await;
    let gw = TestGateway::start(&format!(
        "{}{}routes:\n\
         \x20 - name: closed\n    match: {{path: {{prefix: /closed}}}}\n    upstream: up\n    filters: [{{plugin: hostile}}]\n\
         \x20 - name: open\n    match: {{path: {{prefix: /open}}}}\n    upstream: up\n    filters: [{{plugin: hostile, failure: open}}]\n\
         \x20 - name: other\n    upstream: up\n",
        plugins(),
        upstreams(&up, &callee)
    ))
    .await;
    for mode in ["trap", "loop", "memory", "recursion", "crlf-sdk"] {
        let (s, _, body) = get_with(&gw.url("/closed"), &[("x-hostile", mode)]).await;
        assert_eq!(s, 500, "{mode}: {body}");
        assert!(body.contains("filter_failed"), "{mode}: {body}");
        // Other routes are unaffected and the next request on this one succeeds.
        assert_eq!(get(&gw.url("/other")).await.0, 200, "{mode}");
        assert_eq!(get(&gw.url("/closed")).await.0, 200, "{mode}");
        // Fail open: the filter is skipped and the request goes on.
        let (s, _, _) = get_with(&gw.url("/open"), &[("x-hostile", mode)]).await;
        assert_eq!(s, 200, "{mode} open");
    }
    // Bad pointers and CR/LF values through the raw ABI get error statuses, never a forwarded header.
    for mode in ["bad-pointers", "crlf"] {
        let (s, _, _) = get_with(&gw.url("/closed"), &[("x-hostile", mode)]).await;
        assert_eq!(s, 200, "{mode}");
        assert!(up.last().headers.get("x-injected").is_none(), "{mode}");
    }
    let m = gw.metrics().await;
    for want in [
        "gateway_plugin_traps_total{plugin=\"hostile\"}",
        "gateway_plugin_cpu_limit_total{plugin=\"hostile\"} 2",
        "gateway_plugin_memory_limit_total{plugin=\"hostile\"} 2",
        "gateway_requests_total{route=\"closed\",status=\"500\"} 5",
    ] {
        assert!(m.contains(want), "missing {want} in\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_route_config_stops_the_start_with_its_field() {
    let up = MockUpstream::start("up").await;
    let callee = MockUpstream::start("callee").await;
    let err = TestGateway::try_start(&format!(
        "{}{}routes:\n  - name: ok\n    upstream: up\n  - name: bad\n    upstream: up\n    filters: [{{plugin: kitchen, config: \"reject=1\"}}]\n",
        plugins(),
        upstreams(&up, &callee)
    ))
    .await
    .err()
    .expect("on_configure false rejects the config");
    let text = err.to_string();
    assert!(text.contains("routes[1].filters[0].config"), "{text}");
    assert!(text.contains("kitchen"), "{text}");
    let err = TestGateway::try_start(
        "plugins:\n  - name: missing\n    path: /nonexistent/plugin.wasm\nroutes: []\n",
    )
    .await
    .err()
    .expect("a missing file is an error");
    assert!(err.to_string().contains("plugins[0].path"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_trapping_requests_keep_memory_bounded() {
    let up = MockUpstream::start("up").await;
    let callee = MockUpstream::start("callee").await;
    let gw = GatewayProcess::start(&format!(
        "{}{}routes:\n  - name: r\n    upstream: up\n    filters: [{{plugin: hostile}}]\nserver:\n  access_log: {{enabled: false}}\n",
        plugins(),
        upstreams(&up, &callee)
    ))
    .await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let trap = |c: &hyper_util::client::legacy::Client<_, _>| {
        let req = http::Request::get(gw.url("/t"))
            .header("x-hostile", "trap")
            .body(Default::default())
            .unwrap();
        c.request(req)
    };
    for _ in 0..100 {
        assert_eq!(trap(&client).await.unwrap().status(), 500);
    }
    let base = rss_kib(gw.pid());
    for _ in 0..1000 {
        assert_eq!(trap(&client).await.unwrap().status(), 500);
    }
    let after = rss_kib(gw.pid());
    let growth_mib = after.saturating_sub(base) as f64 / 1024.0;
    eprintln!("RSS after 100 traps {base} KiB, after 1000 more {after} KiB (+{growth_mib:.1} MiB)");
    assert!(
        growth_mib < 16.0,
        "RSS grew {growth_mib:.1} MiB over 1000 trapping requests"
    );
    assert_eq!(get(&gw.url("/fine")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_wasm_pool_serves_filters() {
    let up = MockUpstream::start("up").await;
    let yaml = |plugin_memory: &str| {
        format!(
            "server:\n  access_log: {{enabled: false}}\n  wasm_pool: {{max_instances: 16, max_instance_memory: 32MiB}}\n\
             plugins:\n  - name: demo\n    path: {}\n    limits: {{memory: {plugin_memory}}}\n\
             upstreams:\n  - name: up\n    endpoints: [\"{}\"]\n\
             routes:\n  - name: r\n    upstream: up\n    filters: [{{plugin: demo, config: small}}]\n",
            demo().display(),
            up.addr
        )
    };
    let gw = TestGateway::start(&yaml("16MiB")).await;
    let (s, h, _) = get(&gw.url("/x")).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-wasm-filter"], "proxy-wasm-demo");
    assert_eq!(up.last().headers["x-demo-greeting"], "small");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_with_nothing_in_flight_holds_until_the_filter_continues_or_the_timeout() {
    let (up, _callee, gw) = gateway("  - name: r\n    upstream: up\n    timeout: 400ms\n    filters: [{plugin: kitchen, config: \"tag=p;tick_ms=20\"}]\n").await;
    // Paused in the request headers; the root context's tick continues it (as a filter waiting for
    // an outside event would).
    let (s, _, body) = get_with(&gw.url("/x"), &[("x-test", "pause")]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(up.last().headers["x-paused"], "1");
    // Paused in the response headers, continued the same way.
    let (s, h, _) = get_with(&gw.url("/x"), &[("x-test", "pause-response")]).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-paused"], "1");
    // Never continued: held until the route's timeout, not let through.
    let hits = up.hits();
    let (s, _, body) = get_with(&gw.url("/x"), &[("x-test", "pause-forever")]).await;
    assert_eq!(s, 504, "{body}");
    assert!(body.contains("paused past the route's timeout"), "{body}");
    assert_eq!(up.hits(), hits, "the request never reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stream_is_reset_not_answered() {
    let (up, _callee, gw) = gateway(
        "  - name: r\n    upstream: up\n    filters: [{plugin: kitchen, config: \"tag=c\"}]\n",
    )
    .await;
    // HTTP/1: the connection is closed without a response, and the gateway serves the next one.
    let text = raw(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: h\r\nx-test: reset\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(text, "", "no response on a closed stream");
    assert_eq!(up.hits(), 0);
    let (s, _, _) = get(&gw.url("/x")).await;
    assert_eq!(s, 200);
    // HTTP/2: the stream is reset; the connection carries on with the next stream.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = |test: &str| {
        http::Request::get(gw.url("/x"))
            .header("x-test", test)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let err = client.request(req("reset")).await.expect_err("reset");
    let reason = std::error::Error::source(&err)
        .and_then(|e| e.downcast_ref::<hyper::Error>())
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| format!("{err:?}"));
    assert!(
        reason.contains("INTERNAL_ERROR") || reason.contains("Reset"),
        "{reason}"
    );
    let ok = client.request(req("none")).await.expect("the next stream");
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_whose_on_done_returns_false_lives_until_proxy_done() {
    // One VM: the second request ends the first one's context, which lives in the VM it was made
    // in (with a VM per worker thread, the second request may run in another).
    let (up, _callee, gw) = gateway_in(
        &plugins_with("    vms: 1\n"),
        "  - name: d\n    match: {path: {prefix: /d}}\n    upstream: up\n    filters: [{plugin: kitchen, config: \"tag=d\"}]\n\
         \x20 - name: r\n    upstream: up\n    filters: [{plugin: kitchen, config: \"tag=r\"}]\n",
    )
    .await;
    let read = |key: &'static str| shared(&gw, "/read", key);
    let (s, _, _) = get_with(&gw.url("/d"), &[("x-test", "keep-done")]).await;
    assert_eq!(s, 200);
    // Its on_done said false: it is kept, so it has not logged.
    assert!(
        eventually(Duration::from_secs(5), async || !read("keep-done:d")
            .await
            .is_empty())
        .await
    );
    assert_eq!(read("logged:d").await, "");
    // Another request's filter calls proxy_done on it: it ends (on_log, on_delete).
    let (s, _, _) = get_with(
        &gw.url("/r"),
        &[("x-test", "finish-kept"), ("x-kept-tag", "d")],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(up.last().headers["x-done"], "ok");
    assert!(
        eventually(Duration::from_secs(5), async || read("logged:d").await
            == "1")
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_without_a_route_runs_as_a_service_and_is_reloaded() {
    let up = MockUpstream::start("up").await;
    let callee = MockUpstream::start("callee").await;
    let yaml = |tag: &str| {
        let f = fixtures();
        format!(
            "{}{}routes:\n  - name: r\n    upstream: up\n    filters: [{{plugin: reader, config: \"tag=r\"}}]\n",
            GatewayConfig::new()
                .plugin(Plugin::new("svc", &f.kitchen).lines(&format!(
                    "    service: {{config: \"tag={tag};tick_ms=20;tick_callout=1\"}}\n"
                )))
                .plugin(Plugin::new("reader", &f.kitchen))
                .yaml(),
            upstreams(&up, &callee)
        )
    };
    let gw = TestGateway::start(&yaml("svc")).await;
    // Reads what the service wrote to shared data (the two plugins share the VM id's namespace).
    let read = |key: &'static str| shared(&gw, "/read", key);
    // It started with the gateway: configured, ticking, calling out from its root context.
    assert!(
        eventually(Duration::from_secs(5), async || {
            read("tick-callout:svc").await == "mock callee /tick"
        })
        .await
    );
    assert!(callee.seen().iter().any(|s| s.uri == "/tick"));
    // Its queue gets messages from requests: on_queue_ready runs on the service's root context.
    let (s, _, _) = get_with(
        &gw.url("/x"),
        &[
            ("x-test", "queue"),
            ("x-queue", "q-svc"),
            ("x-message", "hello"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        up.last().headers["x-queue-result"]
            .to_str()
            .unwrap()
            .split(',')
            .next(),
        Some("ok")
    );
    assert!(
        eventually(Duration::from_secs(5), async || read("queue-last:svc")
            .await
            == "hello")
        .await
    );
    // A reload that changes its config starts a new service (and deletes the old root context).
    let report = gw
        .gw
        .as_ref()
        .unwrap()
        .reload_from(&config_text(&yaml("svc2")))
        .await
        .unwrap();
    assert!(report.message.contains("loaded"), "{}", report.message);
    assert!(
        eventually(Duration::from_secs(5), async || {
            read("ticks:svc2").await.parse::<u64>().unwrap_or(0) > 0
        })
        .await
    );
    let before = read("ticks:svc").await.parse::<u64>().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        read("ticks:svc").await.parse::<u64>().unwrap_or(0),
        before,
        "the old service no longer ticks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_proxy_wasm_plugin_runs_as_a_service() {
    let kitchen = &xtask::component_fixtures()
        .unwrap_or_else(|e| panic!("{e}"))
        .kitchen;
    let err = TestGateway::try_start(
        &GatewayConfig::new()
            .plugin(Plugin::new("c", kitchen).lines("    service: {config: x}\n"))
            .yaml(),
    )
    .await
    .err()
    .expect("refused")
    .to_string();
    assert!(
        err.contains("plugins[0].service") && err.contains("only a Proxy-Wasm plugin"),
        "{err}"
    );
}

/// `skip:` on a Proxy-Wasm plugin: a skipped callback never enters the guest (the kitchen filter
/// counts each callback it gets, config `count`), a skipped body callback lets the body through
/// untouched, and a plugin that skips every per-request callback gets no context at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_wasm_plugin_told_to_skip_callbacks_never_gets_them() {
    let f = fixtures();
    let up = MockUpstream::start("up").await;
    let callee = MockUpstream::start("callee").await;
    let config = format!(
        "{}{}routes:\n\
         \x20 - name: all\n    match: {{path: {{prefix: /all}}}}\n    upstream: up\n    filters: [{{plugin: kitchen, config: \"tag=all;count=1\"}}]\n\
         \x20 - name: hdr\n    match: {{path: {{prefix: /hdr}}}}\n    upstream: up\n    filters: [{{plugin: headers-only, config: \"tag=hdr;count=1\"}}]\n\
         \x20 - name: late\n    match: {{path: {{prefix: /late}}}}\n    upstream: up\n    filters: [{{plugin: late, config: \"tag=late;count=1\"}}]\n\
         \x20 - name: none\n    match: {{path: {{prefix: /none}}}}\n    upstream: up\n    filters: [{{plugin: nothing, config: \"tag=none;count=1\"}}]\n\
         \x20 - name: read\n    upstream: up\n    filters: [{{plugin: kitchen, config: \"tag=read\"}}]\n",
        GatewayConfig::new()
            .plugin(Plugin::new("kitchen", &f.kitchen))
            .plugin(Plugin::new("headers-only", &f.kitchen).lines(
                "    skip: [on_request_body, on_request_trailers, proxy_on_response_body, on_response_trailers, on_log]\n",
            ))
            .plugin(
                Plugin::new("late", &f.kitchen).lines("    skip: [on_request_headers]\n"),
            )
            .plugin(Plugin::new("nothing", &f.kitchen).lines(
                "    skip: [on_request_headers, on_request_body, on_request_trailers, on_response_headers,\n\
                 \x20          on_response_body, on_response_trailers, on_done, on_log]\n",
            ))
            .yaml(),
        upstreams(&up, &callee)
    );
    let gw = TestGateway::start(&config).await;
    for tag in ["all", "hdr", "late", "none"] {
        let (s, h, body) = request(
            http::Request::post(gw.url(&format!("/{tag}/echo")))
                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                    b"request body",
                )))
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200, "{tag}");
        assert_eq!(
            body,
            format!("mock up /{tag}/echo\n"),
            "{tag}: the body passes"
        );
        assert_eq!(up.last().body, "request body", "{tag}");
        // A header callback that runs leaves its marks; a skipped one does not.
        let marked = up.last().headers.contains_key("x-seen-tag");
        assert_eq!(
            marked,
            !["late", "none"].contains(&tag),
            "{tag}: request headers seen"
        );
        assert_eq!(
            h.contains_key("x-resp-tag"),
            tag != "none",
            "{tag}: response headers seen"
        );
    }
    let count = |key: String| {
        let gw = &gw;
        async move { shared(gw, "/read", &key).await }
    };
    // The end callbacks run after the response: wait for the last one the full plugin gets.
    assert!(
        eventually(Duration::from_secs(5), async || count(
            "calls:all:on_log".into()
        )
        .await
            == "1")
        .await
    );
    assert!(
        eventually(Duration::from_secs(5), async || count(
            "calls:hdr:on_done".into()
        )
        .await
            == "1")
        .await
    );
    assert!(
        eventually(Duration::from_secs(5), async || count(
            "calls:late:on_log".into()
        )
        .await
            == "1")
        .await
    );
    // A context whose first callbacks are skipped is made at its first one that is not.
    let expect = [
        ("create", ["1", "1", "1", ""]),
        ("on_request_headers", ["1", "1", "", ""]),
        ("on_request_body", ["1", "", "1", ""]),
        ("on_response_headers", ["1", "1", "1", ""]),
        ("on_response_body", ["1", "", "1", ""]),
        ("on_done", ["1", "1", "1", ""]),
        ("on_log", ["1", "", "1", ""]),
    ];
    for (callback, counts) in expect {
        for (tag, want) in ["all", "hdr", "late", "none"].into_iter().zip(counts) {
            assert_eq!(
                count(format!("calls:{tag}:{callback}")).await,
                want,
                "{callback} on {tag}"
            );
        }
    }
}

/// `skip:` of a body callback alone leaves that direction's trailers callback: the trailers that end
/// a body still reach it (a gRPC stats plugin that skips the response body reads `grpc-status` there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_wasm_plugin_skipping_only_its_body_callbacks_still_gets_the_trailers() {
    let f = fixtures();
    let up = MockUpstream::start("up").await;
    let callee = MockUpstream::start("callee").await;
    let config = format!(
        "{}{}routes:\n\
         \x20 - name: tb\n    match: {{path: {{prefix: /tb}}}}\n    upstream: up\n    rewrite: {{strip_prefix: /tb}}\n    filters: [{{plugin: bodyless, config: \"tag=tb;count=1\"}}]\n\
         \x20 - name: read\n    upstream: up\n    filters: [{{plugin: kitchen, config: \"tag=read\"}}]\n",
        GatewayConfig::new()
            .plugin(Plugin::new("kitchen", &f.kitchen))
            .plugin(
                Plugin::new("bodyless", &f.kitchen)
                    .lines("    skip: [on_request_body, on_response_body]\n"),
            )
            .yaml(),
        upstreams(&up, &callee)
    );
    let gw = TestGateway::start(&config).await;
    // A chunked request body that ends in trailers.
    let resp = raw(
        gw.addr,
        b"POST /tb/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          4\r\nabcd\r\n0\r\nx-trailer: 1\r\n\r\n",
        Duration::from_millis(1500),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(up.last().body, "abcd", "the body passes untouched");
    // A response body that ends in trailers.
    let resp = raw(
        gw.addr,
        b"GET /tb/trailers HTTP/1.1\r\nHost: h\r\nTE: trailers\r\nConnection: close\r\n\r\n",
        Duration::from_millis(1500),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(resp.contains("with trailers"), "{resp}");
    assert!(resp.contains("x-checksum: abc123"), "{resp}");
    let count = |callback: &str| {
        let (gw, key) = (&gw, format!("calls:tb:{callback}"));
        async move { shared(gw, "/read", &key).await }
    };
    assert!(
        eventually(Duration::from_secs(5), async || count("on_log").await
            == "2")
        .await
    );
    assert_eq!(count("on_request_trailers").await, "1");
    assert_eq!(count("on_response_trailers").await, "1");
    // The skipped body callbacks stay skipped.
    assert_eq!(count("on_request_body").await, "");
    assert_eq!(count("on_response_body").await, "");
}

/// A head whose callback is skipped stays readable in the callbacks that run after it, as when its
/// callback runs (Envoy lets a later callback read the heads already seen): an access log that skips
/// everything but `on_log` reads the request's path and headers and the response status there, and a
/// filter that skips both header callbacks reads the heads in its body callbacks, and one that skips
/// the response's callbacks reads the response head in `on_log`. (The kitchen
/// filter writes what each callback could read, `<:path>|<x-probe>|<:status>|<x-probe>`, `!1` for a
/// header that is not there, `!2` for a read refused with BadArgument.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_wasm_plugin_reads_the_head_of_a_skipped_header_callback_later() {
    let f = fixtures();
    let up = MockUpstream::start("up").await;
    let callee = MockUpstream::start("callee").await;
    let config = format!(
        "{}{}routes:\n\
         \x20 - name: log\n    match: {{path: {{prefix: /log}}}}\n    upstream: up\n    filters: [{{plugin: log-only, config: \"tag=log;count=1\"}}]\n\
         \x20 - name: bodies\n    match: {{path: {{prefix: /bodies}}}}\n    upstream: up\n    filters: [{{plugin: bodies, config: \"tag=bodies;count=1\"}}]\n\
         \x20 - name: req\n    match: {{path: {{prefix: /req}}}}\n    upstream: up\n    filters: [{{plugin: request-side, config: \"tag=req;count=1\"}}]\n\
         \x20 - name: read\n    upstream: up\n    filters: [{{plugin: kitchen, config: \"tag=read\"}}]\n",
        GatewayConfig::new()
            .plugin(Plugin::new("kitchen", &f.kitchen))
            .plugin(Plugin::new("request-side", &f.kitchen).lines(
                "    skip: [on_response_headers, on_response_body, on_response_trailers]\n",
            ))
            .plugin(Plugin::new("log-only", &f.kitchen).lines(
                "    skip: [on_request_headers, on_request_body, on_request_trailers, on_response_headers,\n\
                 \x20          on_response_body, on_response_trailers, on_done]\n",
            ))
            .plugin(
                Plugin::new("bodies", &f.kitchen)
                    .lines("    skip: [on_request_headers, on_response_headers]\n"),
            )
            .yaml(),
        upstreams(&up, &callee)
    );
    let gw = TestGateway::start(&config).await;
    for tag in ["log", "bodies", "req"] {
        let (s, _, body) = request(
            http::Request::post(gw.url(&format!("/{tag}/echo")))
                .header("x-probe", "yes")
                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                    b"request body",
                )))
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200, "{tag}");
        assert_eq!(body, format!("mock up /{tag}/echo\n"), "{tag}");
    }
    let read = |key: String| {
        let gw = &gw;
        async move { shared(gw, "/read", &key).await }
    };
    for tag in ["log", "bodies", "req"] {
        assert!(
            eventually(Duration::from_secs(5), async || read(format!(
                "calls:{tag}:on_log"
            ))
            .await
                == "1")
            .await,
            "{tag}"
        );
    }
    assert_eq!(
        read("heads:log:on_log".into()).await,
        "/log/echo|yes|200|!1",
        "the access log reads both heads"
    );
    for (callback, want) in [
        // No response yet: its head is not there to read.
        ("on_request_body", "/bodies/echo|yes|!2|!2"),
        ("on_response_body", "/bodies/echo|yes|200|!1"),
        ("on_log", "/bodies/echo|yes|200|!1"),
    ] {
        assert_eq!(
            read(format!("heads:bodies:{callback}")).await,
            want,
            "{callback}"
        );
    }
    // A context made at its first callback gets the response head for its last.
    assert_eq!(
        read("heads:req:on_request_headers".into()).await,
        "/req/echo|yes|!2|!2"
    );
    assert_eq!(
        read("heads:req:on_log".into()).await,
        "/req/echo|yes|200|!1"
    );
    assert_eq!(read("calls:req:on_response_headers".into()).await, "");
    // The header callbacks stay skipped.
    for callback in ["on_request_headers", "on_response_headers"] {
        assert_eq!(
            read(format!("calls:bodies:{callback}")).await,
            "",
            "{callback}"
        );
        assert_eq!(
            read(format!("calls:log:{callback}")).await,
            "",
            "{callback}"
        );
    }
}

/// Reads what the kitchen filters of `gw` wrote in shared data under `key`, through its `/read` route.
fn reader(gw: &TestGateway) -> impl AsyncFn(&str) -> String + '_ {
    async move |key: &str| shared(gw, "/read", key).await
}

/// Waits until each kitchen stage tagged in `tags` has run `on_log` `times` times.
async fn logged(gw: &TestGateway, tags: &[&str], times: &str) {
    let read = reader(gw);
    for tag in tags {
        let key = format!("calls:{tag}:on_log");
        assert!(
            eventually(Duration::from_secs(5), async || read(&key).await == times).await,
            "{key}: {}",
            read(&key).await
        );
    }
}

/// Asserts what the kitchen filters wrote under each key.
async fn recorded(gw: &TestGateway, want: &[(&str, &str)]) {
    let read = reader(gw);
    for (key, want) in want {
        assert_eq!(read(key).await, *want, "{key}");
    }
}

/// The rule "Heads after their phase" of docs/proxy-wasm.md, its first clause: a callback after a
/// header phase reads the head as the whole chain left that phase, as Envoy's filters share one
/// header map. Stage `sa` then `sb` each set `x-probe` on the request (in chain order) and on the
/// response (in reverse order): `sa`'s later callbacks see `sb`'s request edit, `sb`'s `on_log` sees
/// `sa`'s response edit. (The kitchen filter writes what each callback could read,
/// `<:path>|<x-probe>|<:status>|<x-probe>`, request then response; `!1` no such header, `!2` no
/// such head.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_read_a_head_after_its_phase_as_the_whole_chain_left_it() {
    let (up, _callee, gw) = gateway(
        "  - name: s\n    match: {path: {prefix: /s}}\n    upstream: up\n    filters:\n\
         \x20     - {plugin: kitchen, config: \"tag=sa;count=1;probe=a\"}\n\
         \x20     - {plugin: kitchen, config: \"tag=sb;count=1;probe=b\"}\n\
         \x20 - name: read\n    upstream: up\n    filters: [{plugin: kitchen, config: \"tag=read\"}]\n",
    )
    .await;
    let (s, h, _) = get_with(&gw.url("/s"), &[("x-probe", "yes")]).await;
    assert_eq!(s, 200);
    assert_eq!(up.last().headers["x-probe"], "b");
    assert_eq!(h["x-probe"], "a", "the response leaves through sa last");
    logged(&gw, &["sa", "sb"], "1").await;
    recorded(
        &gw,
        &[
            // In its phase, a stage reads the head as the stages before it left it.
            ("heads:sa:on_request_headers", "/s|yes|!2|!2"),
            ("heads:sb:on_request_headers", "/s|a|!2|!2"),
            ("heads:sb:on_response_headers", "/s|b|200|!1"),
            // After it, as the whole chain left it.
            ("heads:sa:on_response_headers", "/s|b|200|b"),
            ("heads:sa:on_log", "/s|b|200|a"),
            ("heads:sb:on_log", "/s|b|200|a"),
        ],
    )
    .await;
}

/// "Heads after their phase": a stage whose request headers callback paused (on a callout, resumed
/// by its answer) keeps its own copy of the request head, as its callbacks left it: its later
/// callbacks do not see the edit of the stage after it (Envoy's shared map would show it). Its
/// response head is shared as any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_that_paused_in_its_header_callback_keeps_the_head_as_it_left_it() {
    let (up, _callee, gw) = gateway(
        "  - name: p\n    match: {path: {prefix: /p}}\n    upstream: up\n    filters:\n\
         \x20     - {plugin: kitchen, config: \"tag=pa;count=1;probe=a;test=callout\"}\n\
         \x20     - {plugin: kitchen, config: \"tag=pb;count=1;probe=b\"}\n\
         \x20 - name: read\n    upstream: up\n    filters: [{plugin: kitchen, config: \"tag=read\"}]\n",
    )
    .await;
    let (s, _, body) = get_with(&gw.url("/p"), &[("x-probe", "yes")]).await;
    assert_eq!(s, 200, "{body}");
    let seen = up.last();
    assert_eq!(
        seen.headers["x-callout-status"], "200",
        "the answer resumed pa"
    );
    assert_eq!(seen.headers["x-probe"], "b");
    logged(&gw, &["pa", "pb"], "1").await;
    recorded(
        &gw,
        &[
            // The answer came during the pause, the head lent to it.
            ("heads:pa:on_http_call_response", "/p|a|!2|!2"),
            ("heads:pb:on_request_headers", "/p|a|!2|!2"),
            ("heads:pa:on_response_headers", "/p|a|200|b"),
            ("heads:pa:on_log", "/p|a|200|a"),
            ("heads:pb:on_log", "/p|b|200|a"),
        ],
    )
    .await;
}

/// "Heads after their phase": a stage that writes to a head after its phase (here `wb`, to the
/// request head in `on_response_headers`) gets a copy of its own first. The write succeeds and the
/// writer reads it back later, but it changes nothing sent and the other stage (`wa`, whose response
/// callback runs after `wb`'s) does not see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_to_a_head_after_its_phase_changes_only_the_writers_copy() {
    let (up, _callee, gw) = gateway(
        "  - name: w\n    match: {path: {prefix: /w}}\n    upstream: up\n    filters:\n\
         \x20     - {plugin: kitchen, config: \"tag=wa;count=1;probe=a\"}\n\
         \x20     - {plugin: kitchen, config: \"tag=wb;count=1;test=write-late\"}\n\
         \x20 - name: read\n    upstream: up\n    filters: [{plugin: kitchen, config: \"tag=read\"}]\n",
    )
    .await;
    let (s, h, _) = get_with(&gw.url("/w"), &[("x-probe", "yes")]).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-late-write"], "ok");
    assert_eq!(up.last().headers["x-probe"], "a");
    logged(&gw, &["wa", "wb"], "1").await;
    recorded(
        &gw,
        &[
            ("heads:wb:on_response_headers", "/w|a|200|!1"),
            ("heads:wa:on_response_headers", "/w|a|200|!1"),
            ("heads:wa:on_log", "/w|a|200|a"),
            ("heads:wb:on_log", "/w|late-wb|200|a"),
        ],
    )
    .await;
}

/// Takes the next connection on `l` and reads a request head from it, for an upstream the test
/// answers by hand.
async fn next_request(l: &tokio::net::TcpListener) -> (tokio::net::TcpStream, String) {
    let (mut s, _) = tokio::time::timeout(Duration::from_secs(10), l.accept())
        .await
        .expect("a connection in time")
        .expect("accept");
    let head = read_head(&mut s).await;
    (s, head)
}

/// Reads from `s` up to the end of a head (`\r\n\r\n`).
async fn read_head(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("a head in time")
            .expect("read");
        assert!(n > 0, "closed before the end of the head");
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// "Heads after their phase": a callout started in a header callback that continued is answered
/// in the background after the phase has left the chain. Its stage (`ga`, between `gb` and `gc`)
/// keeps a copy of each head lent to it while the callout is in flight (the head as its callback
/// left it), and an answer before the stage's next callback reads that copy: without the edits of
/// the stage after it, and without a response head when it comes before the response. The stage's
/// later callbacks read the shared heads all the same, whether or not a callout was in flight. The
/// test answers the upstream and the callout by hand, to order them: first the callout between the
/// request phase and the response, then, on a second request, after the response phase while the
/// response body is still to come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callout_answered_after_its_phase_reads_its_stages_own_copy_of_the_head() {
    use tokio::io::AsyncWriteExt;
    let held = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callee = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&format!(
        "{}{}routes:\n\
         \x20 - name: bg\n    match: {{path: {{prefix: /bg}}}}\n    upstream: held\n    filters:\n\
         \x20     - {{plugin: kitchen, config: \"tag=gb;count=1;probe=b\"}}\n\
         \x20     - {{plugin: kitchen, config: \"tag=ga;count=1;probe=a;test=callout-bg\"}}\n\
         \x20     - {{plugin: kitchen, config: \"tag=gc;count=1;probe=c\"}}\n\
         \x20 - name: read\n    upstream: up\n    filters: [{{plugin: kitchen, config: \"tag=read\"}}]\n",
        plugins(),
        GatewayConfig::new()
            .upstream(Upstream::new("held").endpoint(held.local_addr().unwrap()))
            .upstream(Upstream::new("mock").endpoint(callee.local_addr().unwrap()))
            .upstream(Upstream::new("up").endpoint(up.addr))
            .yaml()
    ))
    .await;
    let read = reader(&gw);
    let answered = async |n: &str| {
        eventually(Duration::from_secs(5), async || {
            read("calls:ga:on_http_call_response").await == n
        })
        .await
    };
    let request = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nhost: h\r\nx-probe: yes\r\nconnection: close\r\n\r\n")
    };
    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";

    // 1. Answered after the request phase, before the response.
    let mut client = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    client
        .write_all(request("/bg/before").as_bytes())
        .await
        .unwrap();
    let (mut upstream, head) = next_request(&held).await;
    assert!(head.starts_with("GET /bg/before "), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("\r\nx-probe: c\r\n"),
        "{head}"
    );
    let (mut call, head) = next_request(&callee).await;
    assert!(head.starts_with("GET /bg "), "{head}");
    call.write_all(ANSWER).await.unwrap();
    assert!(answered("1").await);
    assert_eq!(
        read("heads:ga:on_http_call_response").await,
        "/bg/before|a|!2|!2"
    );
    upstream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nup")
        .await
        .unwrap();
    let resp = read_all(&mut client, Duration::from_secs(5)).await;
    assert_eq!(status_of(&resp), 200, "{resp}");

    // 2. Answered after the response phase, the response body not sent yet (the request goes on).
    let mut client = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    client
        .write_all(request("/bg/after").as_bytes())
        .await
        .unwrap();
    let (mut upstream, _) = next_request(&held).await;
    upstream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    // The client has the response head: the response phase has left every stage.
    let head = read_head(&mut client).await;
    assert_eq!(status_of(&head), 200, "{head}");
    let (mut call, _) = next_request(&callee).await;
    call.write_all(ANSWER).await.unwrap();
    assert!(answered("2").await);
    // Entered for the response headers since, the stage has the shared request head; its
    // response head is its own copy (the callout was in flight when that callback returned).
    assert_eq!(
        read("heads:ga:on_http_call_response").await,
        "/bg/after|c|200|a"
    );
    upstream.write_all(b"up").await.unwrap();
    let rest = read_all(&mut client, Duration::from_secs(5)).await;
    // Chunked: the body streams through filters that may change it.
    assert!(rest.ends_with("2\r\nup\r\n0\r\n\r\n"), "{head}{rest}");
    logged(&gw, &["ga", "gb", "gc"], "2").await;
    // The end of the request: every stage reads the heads as the whole chain left them, ga too,
    // although its callout was in flight when both its header callbacks returned.
    for tag in ["ga", "gb", "gc"] {
        assert_eq!(
            read(&format!("heads:{tag}:on_log")).await,
            "/bg/after|c|200|b",
            "{tag}"
        );
    }
}

/// "Heads after their phase" with `skip:`: a stage whose response headers callback is skipped, and
/// whose callout (started in its request callback, not waited for) is answered after the response
/// phase, before the stage is entered again: the answer reads the response head as it reached the
/// stage (the skipped head goes to the context at once while a callout is in flight; it used to
/// wait for the next entry, and the answer found none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callout_answered_after_a_skipped_header_callback_reads_that_head() {
    use tokio::io::AsyncWriteExt;
    let f = fixtures();
    let held = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callee = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&format!(
        "{}routes:\n\
         \x20 - name: k\n    match: {{path: {{prefix: /k}}}}\n    upstream: held\n    filters:\n\
         \x20     - {{plugin: kitchen, config: \"tag=kx;probe=x\"}}\n\
         \x20     - {{plugin: no-response-head, config: \"tag=kg;count=1;test=callout-bg\"}}\n\
         \x20 - name: read\n    upstream: up\n    filters: [{{plugin: kitchen, config: \"tag=read\"}}]\n",
        GatewayConfig::new()
            .plugin(Plugin::new("kitchen", &f.kitchen))
            .plugin(
                Plugin::new("no-response-head", &f.kitchen)
                    .lines("    skip: [on_response_headers]\n"),
            )
            .upstream(Upstream::new("held").endpoint(held.local_addr().unwrap()))
            .upstream(Upstream::new("mock").endpoint(callee.local_addr().unwrap()))
            .upstream(Upstream::new("up").endpoint(up.addr))
            .yaml()
    ))
    .await;
    let mut client = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    client
        .write_all(b"GET /k HTTP/1.1\r\nhost: h\r\nx-probe: yes\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let (mut upstream, _) = next_request(&held).await;
    upstream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    // The client has the response head: the response phase has passed the stage.
    let head = read_head(&mut client).await;
    assert_eq!(status_of(&head), 200, "{head}");
    let (mut call, _) = next_request(&callee).await;
    call.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        .await
        .unwrap();
    let read = reader(&gw);
    assert!(
        eventually(Duration::from_secs(5), async || read(
            "calls:kg:on_http_call_response"
        )
        .await
            == "1")
        .await
    );
    // The response head as it reached kg (before kx's edit: the response runs kg first).
    assert_eq!(read("heads:kg:on_http_call_response").await, "/k|x|200|!1");
    upstream.write_all(b"up").await.unwrap();
    let rest = read_all(&mut client, Duration::from_secs(5)).await;
    assert!(rest.ends_with("2\r\nup\r\n0\r\n\r\n"), "{head}{rest}");
}

/// "Heads after their phase", a phase dropped half way: the client resets its HTTP/2 stream while
/// the second stage waits on its callout (the callee never answers), so the request phase never
/// ends; the first stage, which kept no copy of its own, still reads the request head in `on_log`,
/// as the chain left it (the hand-over runs when the phase's future is dropped). No response head:
/// there was none, which also shows the phase did not end by the callout's timeout. (Over HTTP/1
/// the request would go on: the server keeps half-closed connections.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_reads_the_head_in_on_log_when_the_client_resets_mid_phase() {
    let callee = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&format!(
        "{}{}routes:\n\
         \x20 - name: d\n    match: {{path: {{prefix: /d}}}}\n    upstream: up\n    filters:\n\
         \x20     - {{plugin: kitchen, config: \"tag=da;count=1;probe=a\"}}\n\
         \x20     - {{plugin: kitchen, config: \"tag=db;count=1;probe=b;test=callout\"}}\n\
         \x20 - name: read\n    upstream: up\n    filters: [{{plugin: kitchen, config: \"tag=read\"}}]\n",
        plugins(),
        GatewayConfig::new()
            .upstream(Upstream::new("mock").endpoint(callee.local_addr().unwrap()))
            .upstream(Upstream::new("up").endpoint(up.addr))
            .yaml()
    ))
    .await;
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::get(format!("http://{}/d", gw.addr))
        .header("x-probe", "yes")
        .body(())
        .unwrap();
    let (resp, mut stream) = client.send_request(req, true).unwrap();
    // db's callout is at the callee, unanswered: the request phase waits in db.
    let (_call, head) = next_request(&callee).await;
    assert!(head.starts_with("POST /auth "), "{head}");
    stream.send_reset(h2::Reason::CANCEL);
    drop(resp);
    let read = reader(&gw);
    assert!(
        eventually(Duration::from_secs(5), async || read("calls:da:on_log")
            .await
            == "1")
        .await
    );
    assert_eq!(read("heads:da:on_log").await, "/d|b|!2|!2");
    assert_eq!(up.hits(), 0, "the request never reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_is_refused_on_a_component_and_an_unknown_callback_at_its_line() {
    let component = &xtask::component_fixtures()
        .unwrap_or_else(|e| panic!("{e}"))
        .kitchen;
    let cases = [
        (
            GatewayConfig::new()
                .plugin(Plugin::new("c", component).lines("    skip: [on_log]\n"))
                .yaml(),
            "plugins[0].skip",
            "Proxy-Wasm callbacks",
        ),
        (
            GatewayConfig::new()
                .plugin(
                    Plugin::new("k", &fixtures().kitchen)
                        .lines("    skip: [on_log, on_request_headerz]\n"),
                )
                .yaml(),
            "on_request_headerz",
            "on_request_headers",
        ),
    ];
    for (yaml, what, expected) in cases {
        let text = config_text(&yaml);
        let line = text.lines().position(|l| l.contains("skip:")).unwrap() + 1;
        let err = TestGateway::try_start(&yaml)
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains(&format!("test.yaml:{line}:"))
                && err.contains(what)
                && err.contains(expected),
            "{err}"
        );
    }
}
