//! Component plugins (the gateway's WIT world, written with `plugin-sdk`) through the real gateway:
//! every host import of the world reached from requests over real sockets, capabilities and their
//! typed denials, bodies whole and in chunks, logs on the process's stderr, metrics on the admin API,
//! hostile components failing by each route's policy, and requests in flight on one filter never
//! seeing each other's data, in both instance modes.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn fixtures() -> &'static xtask::ComponentFixtures {
    xtask::component_fixtures().unwrap_or_else(|e| panic!("{e}"))
}

fn kitchen() -> &'static Path {
    &fixtures().kitchen
}

/// A `plugins:` entry; `extra` is indented YAML lines (capabilities, instance mode, limits).
fn plugin(name: &str, wasm: &Path, extra: &str) -> String {
    format!("  - name: {name}\n    path: {}\n{extra}", wasm.display())
}

/// A route `/<name>/...` to the upstream `up` (the prefix `/<name>` stripped) with one filter.
fn route(name: &str, plugin: &str, config: &str, filter_extra: &str) -> String {
    format!(
        "  - name: {name}\n    match: {{path: {{prefix: /{name}/}}}}\n    rewrite: {{strip_prefix: /{name}}}\n    upstream: up\n    filters: [{{plugin: {plugin}, config: \"{config}\"{filter_extra}}}]\n"
    )
}

/// The backends of a test: `up` serves the routes, `callee` is what plugins call out to.
struct Backends {
    up: MockUpstream,
    callee: MockUpstream,
    /// A port nothing listens on (the upstream `dead`).
    dead: u16,
}

impl Backends {
    async fn start() -> Backends {
        Backends {
            up: MockUpstream::start("up").await,
            callee: MockUpstream::start("callee").await,
            dead: free_port(),
        }
    }

    fn yaml(&self, plugins: &[String], routes: &[String]) -> String {
        format!(
            "plugins:\n{}upstreams:\n  - name: up\n    endpoints: [\"{}\"]\n  - name: callee\n    endpoints: [\"{}\"]\n  - name: dead\n    endpoints: [\"127.0.0.1:{}\"]\n    health: {{passive: {{consecutive_failures: 0}}}}\nroutes:\n{}",
            plugins.concat(),
            self.up.addr,
            self.callee.addr,
            self.dead,
            routes.concat()
        )
    }

    async fn gateway(&self, plugins: &[String], routes: &[String]) -> TestGateway {
        TestGateway::start(&self.yaml(plugins, routes)).await
    }
}

/// A header's value as a string ("" when absent).
fn hv(h: &http::HeaderMap, name: &str) -> String {
    h.get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// GETs `path` with `x-test: test` and `extra` headers; returns the response and the headers the
/// upstream `up` saw (the filter's results).
async fn run(
    gw: &TestGateway,
    b: &Backends,
    path: &str,
    test: &str,
    extra: &[(&str, &str)],
) -> (Resp, http::HeaderMap) {
    let mut headers = vec![("x-test", test)];
    headers.extend_from_slice(extra);
    let hits = b.up.hits();
    let resp = get_with(&gw.url(path), &headers).await;
    assert_eq!(resp.0, 200, "{test}: {}", resp.2);
    assert_eq!(
        b.up.hits(),
        hits + 1,
        "{test}: the request reached the upstream"
    );
    (resp, b.up.last().headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_handles_read_and_change_the_real_exchange() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin("kitchen", kitchen(), "")],
            &[route("h", "kitchen", "", "")],
        )
        .await;
    let req = http::Request::get(gw.url("/h/path?q=1"))
        .header("x-test", "headers")
        .header("x-multi", "1")
        .header("x-multi", "2")
        .header("x-remove-me", "bye")
        .header("x-resp-test", "edit")
        .header("x-want-status", "299")
        .header("x-id", "A")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, h, body) = request(req).await;
    let seen = b.up.last();
    // The request as the filter saw it, and as it changed it.
    let u = &seen.headers;
    assert_eq!(hv(u, "x-method"), "GET");
    assert_eq!(hv(u, "x-path"), "/h/path");
    assert_eq!(hv(u, "x-query"), "q=1");
    assert_eq!(hv(u, "x-host"), gw.addr.to_string());
    assert_eq!(hv(u, "x-multi"), "1|2");
    let count: usize = hv(u, "x-count").parse().unwrap();
    assert!(count >= 6, "{count}");
    let appended: Vec<_> = u.get_all("x-appended").iter().collect();
    assert_eq!(appended, ["a", "b"]);
    assert!(u.get("x-remove-me").is_none());
    assert_eq!(hv(u, "x-bad-name"), "invalid");
    assert_eq!(hv(u, "x-body-in-headers"), "true");
    assert_eq!(hv(u, "x-bad-path"), "invalid");
    assert_eq!(
        seen.uri, "/rewritten?x=1",
        "set-path-with-query reached the upstream"
    );
    // The response handle: status read and changed, headers read, set, appended and removed.
    assert_eq!(status, 299, "{body}");
    assert_eq!(hv(&h, "x-status-seen"), "200");
    assert_eq!(hv(&h, "x-resp-status-before"), "200");
    assert_eq!(hv(&h, "x-resp-status-after"), "299");
    assert_eq!(hv(&h, "x-resp-bad-status"), "invalid");
    assert_eq!(hv(&h, "x-resp-upstream"), "up");
    assert!(h.get("x-upstream").is_none(), "removed by the filter");
    let count: usize = hv(&h, "x-resp-count").parse().unwrap();
    assert!(count >= 2, "{count}");
    let appended: Vec<_> = h.get_all("x-resp-appended").iter().collect();
    assert_eq!(appended, ["a", "b"]);
    assert_eq!(hv(&h, "x-resp-bad-name"), "invalid");
    assert_eq!(hv(&h, "x-resp-body-in-headers"), "true");
    assert_eq!(hv(&h, "x-resp-set-body-in-headers"), "wrong-phase");
    assert_eq!(hv(&h, "x-id-echo"), "A");
    assert_eq!(body, "mock up /rewritten\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_response_answers_without_the_backend() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin("kitchen", kitchen(), "")],
            &[route("r", "kitchen", "", "")],
        )
        .await;
    let (s, h, body) = get_with(&gw.url("/r/x"), &[("x-test", "respond")]).await;
    assert_eq!((s, body.as_str()), (418, "i am a teapot\n"));
    assert_eq!(hv(&h, "x-local"), "yes");
    assert_eq!(b.up.hits(), 0);
    let (s, _, _) = get(&gw.url("/r/x")).await;
    assert_eq!(s, 200);
    assert_eq!(b.up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_whole_and_in_chunks() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin("kitchen", kitchen(), "")],
            &[
                route("whole", "kitchen", "request-body=whole", ""),
                route("chunks", "kitchen", "request-body=chunks", ""),
            ],
        )
        .await;
    let req = http::Request::post(gw.url("/whole/echo"))
        .body(Full::new(Bytes::from_static(b"abcd")))
        .unwrap();
    let (s, h, body) = request(req).await;
    assert_eq!((s, body.as_str()), (200, "ABCD|chunks=1"));
    assert_eq!(b.up.last().body, "ABCD|chunks=1");
    // A whole-mode body call may still change the request head (it waited for the body).
    assert_eq!(hv(&h, "x-body-phase-set-header"), "ok");

    // Chunks: the body arrives in pieces with pauses between them, and each piece is a call.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /chunks/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nab\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(b"2\r\ncd\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let resp = read_all(&mut s, Duration::from_secs(5)).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    // In chunk mode the request head went upstream first: the body calls cannot change it.
    assert!(
        resp.to_lowercase()
            .contains("x-body-phase-set-header: wrong-phase\r\n"),
        "{resp}"
    );
    assert!(b.up.last().headers.get("x-late").is_none());
    let body = String::from_utf8_lossy(&b.up.last().body).into_owned();
    // Two calls with data; the end of the stream may come with the last piece or in a third call.
    assert!(
        body == "ABCD|chunks=2" || body == "ABCD|chunks=3",
        "the body was not seen in chunks: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_bodies_whole_and_in_chunks() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin("kitchen", kitchen(), "")],
            &[
                route("whole", "kitchen", "response-body=whole", ""),
                route("chunks", "kitchen", "response-body=chunks", ""),
            ],
        )
        .await;
    // Whole: one call with all 18 bytes, replaced; the response head waited for it, so the call's
    // header edit is allowed (more in the whole-body section below).
    let (s, h, body) = get(&gw.url("/whole/foo/3")).await;
    assert_eq!((s, body.as_str()), (200, "len=18;late=ok"));
    assert_eq!(hv(&h, "x-late"), "1");
    // An answer from the whole response body phase replaces the response.
    let resp = raw(
        gw.addr,
        b"POST /whole/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\nConnection: close\r\n\r\ndeny this",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(status_of(&resp), 403, "{resp}");
    assert!(resp.ends_with("\r\n\r\ndenied by body\n"), "{resp}");
    assert_eq!(get(&gw.url("/whole/foo/1")).await.2, "len=6;late=ok");
    // Chunks: 4 x 64 KiB stream through; only the last call (end of stream) replaces its chunk.
    let (s, _, body) = get(&gw.url("/chunks/stream/4")).await;
    assert_eq!(s, 200);
    let xs = body.bytes().take_while(|c| *c == b'x').count();
    let tail = &body[xs..];
    let last: usize = tail
        .strip_prefix("len=")
        .and_then(|t| t.strip_suffix(";late=wrong-phase"))
        .unwrap_or_else(|| panic!("unexpected tail {tail}"))
        .parse()
        .unwrap();
    assert!(xs > 0, "earlier chunks passed through unchanged");
    assert_eq!(xs + last, 4 * 64 * 1024);
}

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
    let b = Backends::start().await;
    let ns = |n: &str| format!("    capabilities: {{kv_namespace: {n}}}\n");
    let gw = b
        .gateway(
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
        )
        .await;
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
        "plugin_kitchen_requests{plugin=\"kitchen\"} 4\n",
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

async fn hostile_components_fail_by_policy(mode: &str) {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin(
                "hostile",
                &fixtures().hostile,
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
    hostile_components_fail_by_policy("fresh").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_components_fail_by_policy_in_reuse_mode() {
    hostile_components_fail_by_policy("reuse").await;
}

// Whole-body mode holds the head: a filter that asks for the whole body sees it before the head of
// that direction is sent on, so its body call may change the head or answer instead; chunk mode still
// streams with the head already sent.

/// A backend that answers every request with a chunked `first`, then waits for `release` before it
/// sends `last` and ends the body.
async fn paused_upstream() -> (std::net::SocketAddr, std::sync::Arc<tokio::sync::Notify>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let r = release.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let r = r.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                if s.write_all(format!("{head}5\r\nfirst\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                r.notified().await;
                let _ = s.write_all(b"4\r\nlast\r\n0\r\n\r\n").await;
                let _ = read_all(&mut s, Duration::from_millis(200)).await;
            });
        }
    });
    (addr, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_response_body_call_changes_the_head_and_the_length_is_right() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin("kitchen", kitchen(), "")],
            &[
                route("whole", "kitchen", "response-body=whole", ""),
                route("small", "kitchen", "response-body=whole", "") + "    max_body_size: 1KiB\n",
                route(
                    "smallopen",
                    "kitchen",
                    "response-body=whole",
                    ", failure: open",
                ) + "    max_body_size: 1KiB\n",
            ],
        )
        .await;
    // Header and status set in the body call arrive, with the length of the replaced body.
    let (s, h, body) = get_with(
        &gw.url("/whole/foo/3"),
        &[("x-resp-test", "late-status"), ("x-want-status", "299")],
    )
    .await;
    assert_eq!((s, body.as_str()), (299, "len=18;late=ok;status=ok"));
    assert_eq!(hv(&h, "x-late"), "1");
    assert_eq!(hv(&h, "content-length"), body.len().to_string());
    assert!(h.get("transfer-encoding").is_none());
    // The same on HTTP/1.1 bytes on the wire: a Content-Length message, not chunked.
    let resp = raw(
        gw.addr,
        b"GET /whole/foo/2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    let lower = resp.to_lowercase();
    assert!(lower.contains("\r\ncontent-length: 14\r\n"), "{resp}");
    assert!(!lower.contains("transfer-encoding"), "{resp}");
    assert!(resp.ends_with("\r\n\r\nlen=12;late=ok"), "{resp}");

    // A local answer from the body call replaces the response: its status, headers and body only.
    let req = http::Request::post(gw.url("/whole/echo"))
        .body(Full::new(Bytes::from_static(b"deny this")))
        .unwrap();
    let (s, h, body) = request(req).await;
    assert_eq!((s, body.as_str()), (403, "denied by body\n"));
    assert_eq!(hv(&h, "x-denied-by"), "response-body");
    assert_eq!(hv(&h, "content-length"), "15");
    assert!(h.get("x-upstream").is_none(), "{h:?}");
    assert!(h.get("x-late").is_none(), "{h:?}");

    // Trailers still pass after a held body (HTTP/2 client, so they are delivered).
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let resp = client
        .get(gw.url("/whole/trailers").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(hv(resp.headers(), "x-late"), "1");
    let collected = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    assert_eq!(collected.to_bytes(), "len=14;late=ok");
    assert_eq!(hv(&trailers, "x-checksum"), "abc123");

    // Over the route's body limit the filter fails by its policy: closed fails the request ...
    let (s, _, body) = get(&gw.url("/small/stream/1")).await;
    assert_eq!(s, 500, "{body}");
    // The client is told which filter failed, not why (that is in the log with the request id).
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "filter_failed", "{body}");
    assert!(!body.contains("whole-body limit"), "{body}");
    assert_eq!(v["request_id"].as_str().map(str::len), Some(16), "{body}");
    // ... open skips the filter and the body streams on unchanged.
    let (s, h, body) = get(&gw.url("/smallopen/stream/2")).await;
    assert_eq!(s, 200);
    assert_eq!(body.len(), 2 * 64 * 1024);
    assert!(body.bytes().all(|c| c == b'x'));
    assert!(h.get("x-late").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_request_body_call_changes_the_head_upstream_and_can_answer() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin("kitchen", kitchen(), "")],
            &[
                route("whole", "kitchen", "request-body=whole", ""),
                route("small", "kitchen", "request-body=whole", "") + "    max_body_size: 1KiB\n",
            ],
        )
        .await;
    // A chunked request: the upstream gets the header set in the body call and a Content-Length for
    // the replaced body.
    let resp = raw(
        gw.addr,
        b"POST /whole/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(resp.ends_with("ABCD|chunks=1"), "{resp}");
    let seen = b.up.last();
    assert_eq!(seen.body, "ABCD|chunks=1");
    assert_eq!(hv(&seen.headers, "x-late"), "1");
    assert_eq!(hv(&seen.headers, "content-length"), "13");
    assert!(seen.headers.get("transfer-encoding").is_none());
    // A declared length that the filter changes is corrected too.
    let req = http::Request::post(gw.url("/whole/echo"))
        .body(Full::new(Bytes::from_static(b"xyz")))
        .unwrap();
    let (s, h, body) = request(req).await;
    assert_eq!((s, body.as_str()), (200, "XYZ|chunks=1"));
    assert_eq!(hv(&h, "x-body-phase-set-header"), "ok");
    assert_eq!(hv(&b.up.last().headers, "content-length"), "12");

    // A local answer from the body call: the upstream is not asked.
    let hits = b.up.hits();
    let req = http::Request::post(gw.url("/whole/echo"))
        .body(Full::new(Bytes::from_static(b"deny me")))
        .unwrap();
    let (s, h, body) = request(req).await;
    assert_eq!((s, body.as_str()), (403, "denied by request body\n"));
    assert_eq!(hv(&h, "x-denied-by"), "request-body");
    assert_eq!(b.up.hits(), hits);

    // Over the route's limit: 413 as without the filter, also when the length was not declared.
    let big = Bytes::from(vec![b'a'; 2048]);
    let req = http::Request::post(gw.url("/small/echo"))
        .body(Full::new(big))
        .unwrap();
    assert_eq!(request(req).await.0, 413);
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /small/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n400\r\n")
        .await
        .unwrap();
    s.write_all(&[b'a'; 0x400]).await.unwrap();
    s.write_all(b"\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The gateway may answer and close as soon as the limit is crossed.
    let _ = s.write_all(b"400\r\n").await;
    let _ = s.write_all(&[b'a'; 0x400]).await;
    let _ = s.write_all(b"\r\n0\r\n\r\n").await;
    let resp = read_all(&mut s, Duration::from_secs(3)).await;
    assert_eq!(status_of(&resp), 413, "{resp}");
    assert_eq!(b.up.hits(), hits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_mode_streams_while_whole_mode_holds_the_response_head() {
    let (addr, release) = paused_upstream().await;
    let gw = TestGateway::start(&format!(
        "plugins:\n{}upstreams:\n  - name: up\n    endpoints: [\"{addr}\"]\nroutes:\n{}{}",
        plugin("kitchen", kitchen(), ""),
        route("chunks", "kitchen", "response-body=chunks", ""),
        route("whole", "kitchen", "response-body=whole", ""),
    ))
    .await;
    // Chunks: the first chunk reaches the client while the upstream is still waiting to finish.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /chunks/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let early = read_all(&mut s, Duration::from_millis(1500)).await;
    assert_eq!(status_of(&early), 200, "{early}");
    assert!(
        early.contains("first"),
        "the first chunk did not stream: {early}"
    );
    release.notify_one();
    let rest = read_all(&mut s, Duration::from_secs(3)).await;
    let all = early + &rest;
    // The last call's replacement says the header edit was refused; the header is not there.
    assert!(all.contains(";late=wrong-phase"), "{all}");
    assert!(!all.to_lowercase().contains("x-late:"), "{all}");

    // Whole: nothing reaches the client until the upstream has finished.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /whole/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let early = read_all(&mut s, Duration::from_millis(700)).await;
    assert_eq!(early, "", "the head was sent before the body was whole");
    release.notify_one();
    let resp = read_all(&mut s, Duration::from_secs(3)).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let lower = resp.to_lowercase();
    assert!(lower.contains("\r\nx-late: 1\r\n"), "{resp}");
    assert!(lower.contains("\r\ncontent-length: 13\r\n"), "{resp}");
    assert!(resp.ends_with("\r\n\r\nlen=9;late=ok"), "{resp}");
}

/// A backend that sends each request it gets, as raw text (head, chunked body, trailers), on the
/// channel, and answers `ok`.
async fn recording_upstream() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut text = String::new();
                let mut buf = [0u8; 4096];
                loop {
                    if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                        let head = head.to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|n| n.trim().parse::<usize>().ok());
                        let complete = match len {
                            Some(n) => rest.len() >= n,
                            None if head.contains("transfer-encoding: chunked") => {
                                rest.ends_with("\r\n\r\n")
                                    && (rest.starts_with("0\r\n") || rest.contains("\r\n0\r\n"))
                            }
                            None => true,
                        };
                        if complete {
                            break;
                        }
                    }
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
                    }
                }
                let _ = tx.send(text);
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_trailers_pass_after_a_held_request_body() {
    let (addr, mut seen) = recording_upstream().await;
    let gw = TestGateway::start(&format!(
        "plugins:\n{}upstreams:\n  - name: up\n    endpoints: [\"{addr}\"]\nroutes:\n{}",
        plugin("kitchen", kitchen(), ""),
        route("whole", "kitchen", "request-body=whole", ""),
    ))
    .await;
    let resp = raw(
        gw.addr,
        b"POST /whole/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\nConnection: close\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\nx-sum: 7\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let up = tokio::time::timeout(Duration::from_secs(3), seen.recv())
        .await
        .unwrap()
        .unwrap();
    let lower = up.to_lowercase();
    // The body as the filter left it, sent chunked (trailers need it), then the trailers.
    assert!(lower.contains("\r\nx-late: 1\r\n"), "{up}");
    assert!(!lower.contains("content-length"), "{up}");
    assert!(up.contains("ABCD|chunks=1"), "{up}");
    assert!(lower.ends_with("\r\n0\r\nx-sum: 7\r\n\r\n"), "{up}");
}

/// A filter that holds the response body whole is not shown (and does not wait for) a body that a
/// response cannot have: the answer to HEAD keeps the backend's Content-Length and sends no body, 204
/// and 304 go through, and the keep-alive connection stays in step for the request after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_body_filters_skip_responses_without_a_body() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin("kitchen", kitchen(), "")],
            &[route("whole", "kitchen", "response-body=whole", "")],
        )
        .await;
    // What the backend itself says to HEAD.
    let direct = raw(
        b.up.addr,
        b"HEAD /auth HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    let length = direct
        .to_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length: ").map(str::to_owned))
        .unwrap_or_else(|| panic!("the backend sends a length to HEAD: {direct}"));
    assert!(length.trim() != "0", "{direct}");

    let started = Instant::now();
    let resp = raw(
        gw.addr,
        b"HEAD /whole/auth HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /whole/status/204 HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /whole/status/304 HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /whole/foo/2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "nothing waits for a body that cannot come: {resp}"
    );
    let parts: Vec<&str> = resp.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(parts.len(), 4, "four answers in order: {resp}");
    let head = parts[0].to_lowercase();
    assert!(head.starts_with("200 "), "{resp}");
    assert!(
        head.contains(&format!("\r\ncontent-length: {}\r\n", length.trim())),
        "HEAD keeps the backend's length: {resp}"
    );
    assert!(head.ends_with("\r\n\r\n"), "no body after HEAD: {resp}");
    assert!(
        parts[1].starts_with("204 ") && parts[1].ends_with("\r\n\r\n"),
        "{resp}"
    );
    assert!(
        parts[2].starts_with("304 ") && parts[2].ends_with("\r\n\r\n"),
        "{resp}"
    );
    assert!(parts[3].starts_with("200 "), "{resp}");
    assert!(parts[3].ends_with("\r\n\r\nlen=12;late=ok"), "{resp}");
}
