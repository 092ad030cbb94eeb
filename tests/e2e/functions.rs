//! Function backends through the real gateway: `wasi:http/proxy` components built from source
//! (`tests/fixtures/functions`, one component whose behaviour the path picks), served on routes with
//! their filter chains, bodies streamed both ways, limits and faults before and after the response
//! head, outgoing requests to granted upstreams only, environment, config and read-only directories,
//! instance modes, reload, `/plugins` and `/metrics`.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn fixture() -> String {
    xtask::function_fixtures()
        .unwrap_or_else(|e| panic!("{e}"))
        .display()
        .to_string()
}

/// A config with the test component as function `f` (with `settings`, indented YAML lines) on a
/// route `/f/` (with `route`, indented lines), after `extra` (top-level YAML).
fn config(settings: &str, route: &str, extra: &str) -> String {
    format!(
        "{extra}functions:\n  - name: f\n    path: {}\n{settings}routes:\n  - name: fn\n    match: {{path: {{prefix: /f/}}}}\n    function: f\n{route}",
        fixture()
    )
}

/// The function `name`'s entry in `/plugins`.
async fn described(gw: &TestGateway, name: &str) -> serde_json::Value {
    let (_, _, body) = get(&format!("http://{}/plugins", gw.admin)).await;
    let v = json(&body);
    v["functions"]
        .as_array()
        .and_then(|a| a.iter().find(|f| f["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no function {name} in {v:#}"))
}

/// Reads from `s` until `marker` has arrived (or fails after 10 s).
async fn read_until(s: &mut TcpStream, got: &mut Vec<u8>, marker: &str) {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(got).contains(marker) {
        let mut buf = [0u8; 65536];
        let n = tokio::time::timeout_at(until, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {marker:?} in time; got {:?}",
                    String::from_utf8_lossy(got)
                )
            })
            .unwrap();
        assert!(
            n > 0,
            "closed before {marker:?}: {:?}",
            String::from_utf8_lossy(got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_chain_runs_around_the_function() {
    let yaml = config(
        "",
        "    filters:\n      - plugin: key-auth\n        config: {key_names: [apikey]}\n      - plugin: response-transformer\n        config: {add: {headers: {x-transformed: \"yes\"}}}\n    response_headers: {set: {x-route: fn}}\n",
        "consumers:\n  - name: alice\n    credentials: {key-auth: {key: k-alice}}\n",
    );
    let gw = TestGateway::start(&yaml).await;
    // key-auth refuses before the function runs.
    let (s, _, body) = get(&gw.url("/f/headers")).await;
    assert_eq!(s, 401, "{body}");
    assert_eq!(described(&gw, "f").await["requests"], 0);
    // With a key: the function answers, the response filter and the route's rule see its answer.
    let (s, h, body) = get_with(&gw.url("/f/headers?x=1"), &[("apikey", "k-alice")]).await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("method: Method::Get\npath: /f/headers?x=1\n"),
        "{body}"
    );
    assert!(body.contains("x-consumer-username: alice"), "{body}");
    assert_eq!(h["x-transformed"], "yes");
    assert_eq!(h["x-route"], "fn");
    let d = described(&gw, "f").await;
    assert_eq!(d["requests"], 1, "{d:#}");
    assert_eq!(d["routes"], serde_json::json!(["fn"]));
    assert_eq!(d["failures"], 0);
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, r#"gateway_function_requests_total{function="f"}"#),
        Some(1.0),
        "{m}"
    );
    // Observed when the response body has ended, by the request's task: soon after the client
    // has it.
    assert!(
        eventually(Duration::from_secs(5), async || metric(
            &gw.metrics().await,
            r#"gateway_function_duration_seconds_count{function="f"}"#
        ) == Some(1.0))
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_is_echoed_whole() {
    let route = "    max_body_size: 64MiB\n";
    // The guest's CPU account counts the host's stream work done inside its calls: a 24 MiB echo
    // through a debug build took 0.7 s and more of the default 1 s when ticks were counted (the
    // body was cut under load: cpu_limits 1, the client's connection reset). This test is about
    // streaming, not the limit.
    let cpu = "    limits: {cpu_per_request: 20s";
    let gw = TestGateway::start(&config(&format!("{cpu}}}\n"), route, "")).await;
    // 24 MiB through a function whose memory is 16 MiB: it cannot have held the body.
    let gw2 = TestGateway::start(&config(&format!("{cpu}, memory: 16MiB}}\n"), route, "")).await;
    let body: Vec<u8> = (0..24u32 << 20).map(|i| (i % 251) as u8).collect();
    for g in [&gw, &gw2] {
        let resp =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http()
                .request(
                    http::Request::post(g.url("/f/echo"))
                        .header("content-type", "application/x-test")
                        .body(Full::new(Bytes::from(body.clone())))
                        .unwrap(),
                )
                .await
                .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/x-test");
        let got = match resp.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => panic!("{e}: {:#}", described(g, "f").await),
        };
        assert_eq!(got.len(), body.len());
        assert!(got == body, "the echo differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_bodies_stream_chunk_by_chunk() {
    let gw = TestGateway::start(&config("", "", "")).await;
    // Ping-pong over one request: each chunk is sent only once the previous one came back, so the
    // exchange finishes only if neither body is held by the gateway or the function.
    let (mut tx, body) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(1);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = http::Request::post(gw.url("/f/echo")).body(body).unwrap();
    tx.send_data(Bytes::from_static(b"ping-0;")).await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("head in time")
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut resp = resp.into_body();
    let mut got = Vec::new();
    for i in 0..5 {
        let want = format!("ping-{i};");
        while !String::from_utf8_lossy(&got).ends_with(&want) {
            let frame = tokio::time::timeout(Duration::from_secs(10), resp.frame())
                .await
                .unwrap_or_else(|_| panic!("chunk {i} did not come back: {got:?}"))
                .expect("more body")
                .unwrap();
            if let Ok(d) = frame.into_data() {
                got.extend_from_slice(&d);
            }
        }
        if i < 4 {
            tx.send_data(Bytes::from(format!("ping-{};", i + 1)))
                .await
                .unwrap();
        }
    }
    drop(tx);
    let rest = resp.collect().await.unwrap().to_bytes();
    assert!(rest.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&got),
        "ping-0;ping-1;ping-2;ping-3;ping-4;"
    );
}

/// An upstream that answers `ok` to each request only once the test opens the gate for it (one
/// `send` per request; each answer closes its connection).
async fn gate() -> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedSender<()>) {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (open, opened) = tokio::sync::mpsc::unbounded_channel::<()>();
    let opened = std::sync::Arc::new(tokio::sync::Mutex::new(opened));
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = tcp.accept().await else {
                return;
            };
            let opened = opened.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                opened.lock().await.recv().await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, open)
}

/// A config whose function may call the upstream `gate` at `addr`.
fn gated(addr: std::net::SocketAddr) -> String {
    config(
        "    upstreams: [gate]\n",
        "",
        &format!("upstreams:\n  - name: gate\n    endpoints: [{addr}]\n"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_chunk_reaches_the_client_before_the_function_writes_the_second() {
    let (gate_addr, open) = gate().await;
    let gw = TestGateway::start(&gated(gate_addr)).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /f/stream HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    // The function waits for the gate (which waits for the test) before its second chunk.
    read_until(&mut s, &mut got, "first\n").await;
    assert!(!String::from_utf8_lossy(&got).contains("second"));
    open.send(()).unwrap();
    read_until(&mut s, &mut got, "0\r\n\r\n").await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("second:ok"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_before_the_head_are_answered_by_policy() {
    let yaml = config(
        "    limits: {memory: 16MiB, cpu_per_request: 100ms}\n",
        "",
        "",
    );
    let gw = TestGateway::start(&yaml).await;
    for (path, status, code) in [
        ("/f/trap", 500, "function_failed"),
        ("/f/no-response", 500, "function_failed"),
        ("/f/error-code", 500, "function_failed"),
        ("/f/loop", 503, "function_unavailable"),
        ("/f/hog", 503, "function_unavailable"),
    ] {
        let (s, _, body) = get(&gw.url(path)).await;
        assert_eq!(s, status, "{path}: {body}");
        assert!(body.contains(code), "{path}: {body}");
        assert!(!body.contains("panicked"), "no guest detail: {body}");
    }
    // Waiting is not CPU: 300 ms asleep under a 100 ms CPU limit is fine.
    let (s, _, body) = get(&gw.url("/f/sleep?ms=300")).await;
    assert_eq!((s, body.as_str()), (200, "slept"));
    // The function works again after each failure (each instance was thrown away).
    let (s, _, _) = get(&gw.url("/f/headers")).await;
    assert_eq!(s, 200);
    let d = described(&gw, "f").await;
    assert_eq!(d["traps"], 1, "{d:#}");
    assert_eq!(d["cpu_limits"], 1, "{d:#}");
    assert_eq!(d["memory_limits"], 1, "{d:#}");
    assert_eq!(d["failures"], 5, "{d:#}");
    assert_eq!(d["requests"], 7, "{d:#}");
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, r#"gateway_function_cpu_limit_total{function="f"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, r#"gateway_function_failures_total{function="f"}"#),
        Some(5.0)
    );

    // The timeout: 504 when no head came in time.
    let gw = TestGateway::start(&config("    limits: {timeout: 300ms}\n", "", "")).await;
    let (s, _, body) = get(&gw.url("/f/sleep?ms=5000")).await;
    assert_eq!(s, 504, "{body}");
    assert!(body.contains("function_timeout"), "{body}");
}

/// The CPU limit counts the thread's CPU time while the guest runs, not the epoch ticks it is seen
/// running in: a request body trickling in a chunk every 4 ms for over a second wakes the echoing
/// guest in nearly every 5 ms tick, which as ticks went over the 600 ms limit (cut off, cpu_limits 1)
/// though its polls took a fraction of that (about 100 ms in a debug build).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_woken_often_by_a_slow_client_is_charged_its_cpu_not_the_waits() {
    let gw = TestGateway::start(&config("    limits: {cpu_per_request: 600ms}\n", "", "")).await;
    let (mut tx, body) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(1);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = http::Request::post(gw.url("/f/echo")).body(body).unwrap();
    const CHUNKS: usize = 250;
    let sender = tokio::spawn(async move {
        for i in 0..CHUNKS {
            if tx.send_data(Bytes::from(format!("{i:04};"))).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
    });
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let got = resp.into_body().collect().await.map(|b| b.to_bytes());
    sender.await.unwrap();
    let d = described(&gw, "f").await;
    let got = got.unwrap_or_else(|e| panic!("{e}: {d:#}"));
    let want: String = (0..CHUNKS).map(|i| format!("{i:04};")).collect();
    assert!(
        got == want.as_bytes(),
        "{} of {} bytes",
        got.len(),
        want.len()
    );
    assert_eq!(d["cpu_limits"], 0, "{d:#}");
    assert_eq!(d["failures"], 0, "{d:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_after_the_head_abort_the_response() {
    let (gate_addr, open) = gate().await;
    let gw = TestGateway::start(&gated(gate_addr)).await;
    // HTTP/1: the head and the first chunk reach the client; after the function fails (or returns
    // without finishing its body) the connection closes without the last chunk.
    for path in ["/f/trap-mid", "/f/no-finish"] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut got = Vec::new();
        read_until(&mut s, &mut got, "partial\n").await;
        open.send(()).unwrap();
        // Closed, not left open: read to the end.
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
            .await
            .unwrap_or_else(|_| panic!("{path}: the aborted response's connection stays open"))
            .unwrap();
        let text = String::from_utf8_lossy(&got).into_owned();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {text}");
        assert!(
            !text.ends_with("0\r\n\r\n"),
            "{path}: a truncated body ended as complete: {text:?}"
        );
    }
    // HTTP/2: the stream is reset after the first data.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    for path in ["/f/trap-mid", "/f/no-finish"] {
        let resp = client
            .request(
                http::Request::get(gw.url(path))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().unwrap(), "partial\n");
        open.send(()).unwrap();
        let err = tokio::time::timeout(Duration::from_secs(10), body.collect())
            .await
            .expect("the stream ends in time")
            .expect_err("the body is not complete");
        let err = format!("{err:?}");
        assert!(
            err.contains("INTERNAL_ERROR") || err.to_lowercase().contains("reset"),
            "{path}: {err}"
        );
    }
    let d = described(&gw, "f").await;
    assert_eq!(d["failures"], 4, "{d:#}");
    assert_eq!(d["traps"], 2, "{d:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_concurrency_wait_then_get_503() {
    // One at a time, waiting up to 3 s: the second request waits for the first, then is served.
    let gw = TestGateway::start(&config(
        "    limits: {concurrency: 1, queue_timeout: 3s}\n",
        "",
        "",
    ))
    .await;
    let u = gw.url("/f/sleep?ms=600");
    let first = tokio::spawn(async move { get(&u).await });
    assert!(
        eventually(Duration::from_secs(5), async || described(&gw, "f").await
            ["instances"]["in_flight"]
            == 1)
        .await
    );
    let (s, _, body) = get(&gw.url("/f/sleep?ms=1")).await;
    assert_eq!((s, body.as_str()), (200, "slept"));
    assert_eq!(first.await.unwrap().0, 200);

    // Waiting at most 200 ms for a request that holds the only slot for 3 s: 503.
    let gw = TestGateway::start(&config(
        "    limits: {concurrency: 1, queue_timeout: 200ms}\n",
        "",
        "",
    ))
    .await;
    let u = gw.url("/f/sleep?ms=3000");
    let first = tokio::spawn(async move { get(&u).await });
    assert!(
        eventually(Duration::from_secs(5), async || described(&gw, "f").await
            ["instances"]["in_flight"]
            == 1)
        .await
    );
    let (s, _, body) = get(&gw.url("/f/sleep?ms=1")).await;
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("function_unavailable"), "{body}");
    assert_eq!(first.await.unwrap().0, 200);
    let d = described(&gw, "f").await;
    assert_eq!(d["busy"], 1, "{d:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_requests_reach_only_granted_upstreams() {
    let users = MockUpstream::start("users").await;
    let other = MockUpstream::start("other").await;
    let yaml = config(
        "    upstreams: [users]\n",
        "",
        &format!(
            "upstreams:\n  - name: users\n    endpoints: [{}]\n  - name: other\n    endpoints: [{}]\n",
            users.addr, other.addr
        ),
    );
    let gw = TestGateway::start(&yaml).await;
    let (s, _, body) = get(&gw.url("/f/fetch?url=http://users/v1/u/42")).await;
    assert_eq!(s, 200);
    assert_eq!(body, "status 200: mock users /v1/u/42\n");
    assert_eq!(users.last().headers["host"], users.addr.to_string());
    for url in [
        "http://other/x".to_string(),
        format!("http://{}/x", other.addr),
        format!("http://{}/x", users.addr),
        "https://example.com/".to_string(),
    ] {
        let (s, _, body) = get(&gw.url(&format!("/f/fetch?url={url}"))).await;
        assert_eq!(s, 200);
        assert_eq!(body, "error: ErrorCode::HttpRequestDenied", "{url}");
    }
    assert_eq!(users.hits(), 1);
    assert_eq!(other.hits(), 0);
}

/// A config granting function `f` the upstream `up` (endpoints `endpoints`) with `grant` (the
/// flow-map entries after `upstream: up`).
fn granting(endpoints: &str, grant: &str) -> String {
    config(
        &format!("    upstreams: [{{upstream: up{grant}}}]\n"),
        "",
        &format!("upstreams:\n  - name: up\n    endpoints: [{endpoints}]\n"),
    )
}

fn retries(m: &str) -> f64 {
    metric(m, r#"gateway_upstream_retries_total{upstream="up"}"#).unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_functions_request_is_retried_on_another_endpoint_when_one_refuses() {
    let good = MockUpstream::start("good").await;
    let dead = format!("127.0.0.1:{}", free_port());
    let gw = TestGateway::start(&granting(
        &format!("\"{dead}\", \"{}\"", good.addr),
        ", retry: {on: [connect_failure]}",
    ))
    .await;
    // Round robin sends one of every two requests to the refusing endpoint first: each is tried
    // again on the good one.
    for i in 0..4 {
        let (s, _, body) = get(&gw.url(&format!("/f/fetch?url=http://up/r{i}"))).await;
        assert_eq!(
            (s, body.as_str()),
            (200, format!("status 200: mock good /r{i}\n").as_str())
        );
    }
    assert_eq!(good.hits(), 4);
    assert!(retries(&gw.metrics().await) >= 1.0);
    // A plain grant tries once: the refusing endpoint's error is the function's.
    let plain = TestGateway::start(&config(
        "    upstreams: [up]\n",
        "",
        &format!("upstreams:\n  - name: up\n    endpoints: [\"{dead}\"]\n"),
    ))
    .await;
    let (_, _, body) = get(&plain.url("/f/fetch?url=http://up/x")).await;
    assert_eq!(body, "error: ErrorCode::ConnectionRefused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_functions_request_is_retried_on_the_statuses_its_grant_names() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&granting(
        &format!("\"{}\"", up.addr),
        ", retry: {on: [503], attempts: 2, backoff_base: 1ms}",
    ))
    .await;
    up.fail_next(1, 503);
    let (_, _, body) = get(&gw.url("/f/fetch?url=http://up/a")).await;
    assert_eq!(body, "status 200: mock up /a\n");
    assert_eq!(up.hits(), 2, "a 503, then the 200");
    // Tries exhausted: the last answer is the function's.
    up.fail_next(5, 503);
    let (_, _, body) = get(&gw.url("/f/fetch?url=http://up/b")).await;
    assert!(body.starts_with("status 503"), "{body}");
    assert_eq!(up.hits(), 5, "the first try and 2 retries");
    // A status the policy does not name is answered as it is.
    up.fail_next(1, 500);
    let (_, _, body) = get(&gw.url("/f/fetch?url=http://up/c")).await;
    assert!(body.starts_with("status 500"), "{body}");
    assert_eq!(up.hits(), 6);
    assert_eq!(retries(&gw.metrics().await), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_replayable_request_body_is_sent_again() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&granting(
        &format!("\"{}\"", up.addr),
        ", retry: {on: [503], allow_non_idempotent: true, buffer_limit: 1KiB, backoff_base: 1ms}",
    ))
    .await;
    // A declared length within the buffer limit: kept, and sent whole again.
    up.fail_next(1, 503);
    let (_, _, body) = get(&gw.url("/f/post?url=http://up/p1&size=1000&declared=1")).await;
    assert_eq!(body, "status 200: mock up /p1\n");
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.body.len() == 1000), "{seen:?}");
    // Longer than the limit, or of no declared length: streamed once, the 503 is the function's.
    for (q, hits) in [("size=2000&declared=1", 3), ("size=1000", 4)] {
        up.fail_next(1, 503);
        let (_, _, body) = get(&gw.url(&format!("/f/post?url=http://up/p2&{q}"))).await;
        assert!(body.starts_with("status 503"), "{q}: {body}");
        assert_eq!(up.hits(), hits, "{q}: one try");
    }
    // Without `allow_non_idempotent`, a POST is not retried at all.
    let strict = TestGateway::start(&granting(
        &format!("\"{}\"", up.addr),
        ", retry: {on: [503]}",
    ))
    .await;
    up.fail_next(1, 503);
    let (_, _, body) = get(&strict.url("/f/post?url=http://up/p3&size=10&declared=1")).await;
    assert!(body.starts_with("status 503"), "{body}");
    assert_eq!(up.hits(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grants_timeout_bounds_the_wait_for_the_head() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&granting(&format!("\"{}\"", up.addr), ", timeout: 200ms")).await;
    let started = std::time::Instant::now();
    let (_, _, body) = get(&gw.url("/f/fetch?url=http://up/delay/3000")).await;
    assert_eq!(body, "error: ErrorCode::HttpResponseTimeout");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_reaches_an_http2_upstream() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&config(
        "    upstreams: [up]\n",
        "",
        &format!(
            "upstreams:\n  - name: up\n    endpoints: [\"{}\"]\n    protocol: http2\n",
            up.addr
        ),
    ))
    .await;
    for i in 0..3 {
        let (_, _, body) =
            get(&gw.url(&format!("/f/post?url=http://up/echo&size={}", 100 * i))).await;
        assert_eq!(body, format!("status 200: {}", "x".repeat(100 * i)));
    }
    let seen = up.seen();
    assert!(
        seen.iter().all(|s| s.version == http::Version::HTTP_2),
        "{seen:?}"
    );
    assert_eq!(
        up.connections(),
        1,
        "one HTTP/2 connection for the three requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_reaches_a_tls_upstream() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let dir = TempDir::new("fn-tls");
    let (ca, mut server) = test_ca_server(&dir.0, "ca.pem", "up.example.com");
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = tcp.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let text = format!("tls {:?} {}", req.version(), req.uri().path());
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from(text),
                        )))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    let mut extra = String::from("upstreams:\n");
    for (name, protocol) in [("h1", "http1"), ("h2", "http2")] {
        extra += &format!(
            "  - name: {name}\n    endpoints: [\"{addr}\"]\n    protocol: {protocol}\n    tls: {{ca: {}, server_name: up.example.com}}\n",
            ca.display()
        );
    }
    let gw = TestGateway::start(&config("    upstreams: [h1, h2]\n", "", &extra)).await;
    for (name, version) in [("h1", "HTTP/1.1"), ("h2", "HTTP/2.0")] {
        let (_, _, body) = get(&gw.url(&format!("/f/fetch?url=https://{name}/v"))).await;
        assert_eq!(body, format!("status 200: tls {version} /v"), "{name}");
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_config_and_read_only_directories() {
    let dir = TempDir::new("fn-dirs");
    std::fs::create_dir_all(dir.0.join("data")).unwrap();
    std::fs::write(dir.0.join("data/hello.txt"), "from the host").unwrap();
    let yaml = config(
        &format!(
            "    env: {{GREETING: bonjour}}\n    config: {{a: 1}}\n    dirs: {{/data: {}}}\n",
            dir.0.join("data").display()
        ),
        "",
        "",
    );
    let gw = TestGateway::start(&yaml).await;
    let (s, _, body) = get(&gw.url("/f/env")).await;
    assert_eq!(s, 200);
    assert_eq!(
        body,
        "GREETING=bonjour\nCONFIG={\"a\":1}\nHOME set: false\n"
    );
    let (_, _, body) = get(&gw.url("/f/read?path=/data/hello.txt")).await;
    assert_eq!(body, "from the host\nwrite: refused\n");
    assert!(!dir.0.join("data/written.txt").exists());
    // Nothing outside the granted directory.
    let (_, _, body) = get(&gw.url("/f/read?path=/etc/hostname")).await;
    assert!(body.starts_with("error: "), "{body}");

    // Without `dirs`, no filesystem at all.
    let gw = TestGateway::start(&config("", "", "")).await;
    let (_, _, body) = get(&gw.url("/f/read?path=/data/hello.txt")).await;
    assert!(body.starts_with("error: "), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_keeps_a_warm_instance_and_fresh_does_not() {
    let fresh = TestGateway::start(&config("", "", "")).await;
    let reuse = TestGateway::start(&config("    instance_mode: reuse\n", "", "")).await;
    let mut seen = (Vec::new(), Vec::new());
    for _ in 0..3 {
        seen.0.push(get(&fresh.url("/f/count")).await.2);
        seen.1.push(get(&reuse.url("/f/count")).await.2);
    }
    assert_eq!(seen.0, ["1", "1", "1"]);
    // Answered with a content-length (hyper stops at it) and still kept.
    assert_eq!(seen.1, ["1", "2", "3"]);
    // A HEAD request (hyper never reads the body): the guest finished it, the instance is kept.
    let (s, _, _) = request(
        http::Request::head(reuse.url("/f/count"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(get(&reuse.url("/f/count")).await.2, "5");
    assert_eq!(described(&fresh, "f").await["instances_created"], 3);
    assert_eq!(described(&reuse, "f").await["instances_created"], 1);
    // A failure throws the warm instance away: the count starts again.
    let (s, _, _) = get(&reuse.url("/f/trap")).await;
    assert_eq!(s, 500);
    assert_eq!(get(&reuse.url("/f/count")).await.2, "1");
}

/// A HEAD request's body, which its client never gets, is read only up to a small bound (64 KiB)
/// while the guest writes it, then dropped: the guest's next write fails (the fixture panics on it)
/// and the only slot comes back within milliseconds, instead of once the guest has written all
/// 64 MiB (0.85 s in a debug build; the time and CPU limits here would allow 120 s). The next
/// request waits for the slot up to the generous bound of 500 ms; the failure shows the guest was
/// cut off whatever the machine's speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_request_does_not_hold_the_slot_while_the_guest_writes_a_long_body() {
    let settings =
        "    limits: {concurrency: 1, queue_timeout: 500ms, cpu_per_request: 120s, timeout: 120s}\n";
    let gw = TestGateway::start(&config(settings, "", "")).await;
    let (s, h, body) = request(
        http::Request::head(gw.url("/f/big"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!((s, body.as_str()), (200, ""), "{h:?}");
    let (s, _, body) = get(&gw.url("/f/count")).await;
    let d = described(&gw, "f").await;
    assert_eq!(
        (s, body.as_str()),
        (200, "1"),
        "the slot stayed taken after the HEAD's answer: {d:#}"
    );
    assert_eq!(d["requests"], 2, "{d:#}");
    assert_eq!(d["failures"], 1, "the guest wrote its whole body: {d:#}");
}

/// A client that goes away in the middle of a long answer frees the function's slot at once: the
/// guest's next write fails (its body is dropped), instead of waiting for room in a body nobody
/// reads until the function's timeout (60 s here) while the only slot is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_answer_frees_the_slot() {
    let settings = "    instance_mode: reuse\n    limits: {concurrency: 1, queue_timeout: 200ms, timeout: 60s}\n";
    let gw = TestGateway::start(&config(settings, "", "")).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /f/big HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = 0;
    let mut buf = vec![0u8; 65536];
    while got < 1 << 20 {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("the answer streams")
            .unwrap();
        assert!(n > 0, "the answer ended after {got} bytes");
        got += n;
    }
    drop(s);
    assert!(
        eventually(Duration::from_secs(10), async || get(&gw.url("/f/count"))
            .await
            .0
            == 200)
        .await,
        "the slot stayed taken after the client left: {:#}",
        described(&gw, "f").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_keeps_at_most_max_idle_warm_instances_and_drops_idle_ones() {
    let settings =
        "    instance_mode: reuse\n    limits: {concurrency: 8, max_idle: 2, idle_timeout: 1s}\n";
    let gw = TestGateway::start(&config(settings, "", "")).await;
    let live = async || described(&gw, "f").await["instances"]["live"].clone();
    let created = async || described(&gw, "f").await["instances_created"].clone();
    // A burst of 6 at once: 6 instances, of which 2 stay warm afterwards.
    let burst: Vec<_> = (0..6)
        .map(|_| {
            let u = gw.url("/f/sleep?ms=500");
            tokio::spawn(async move { get(&u).await })
        })
        .collect();
    for r in burst {
        let (s, _, body) = r.await.unwrap();
        assert_eq!((s, body.as_str()), (200, "slept"));
    }
    assert_eq!(created().await, 6);
    assert!(
        eventually(Duration::from_secs(5), async || live().await == 2).await,
        "{:#}",
        described(&gw, "f").await
    );
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, r#"gateway_function_instances{function="f"}"#),
        Some(2.0),
        "{m}"
    );
    // A request within the idle timeout takes a warm instance.
    assert_eq!(get(&gw.url("/f/count")).await.0, 200);
    assert_eq!(created().await, 6);
    // Both idle past the timeout: dropped when the next request looks, which gets a new one.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(get(&gw.url("/f/count")).await.2, "1");
    assert_eq!(created().await, 7);
    assert!(
        eventually(Duration::from_secs(5), async || live().await == 1).await,
        "{:#}",
        described(&gw, "f").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_function_answers_request_after_request_without_waiting() {
    let gw = TestGateway::start(&config("    instance_mode: reuse\n", "", "")).await;
    // Sequential requests answered with a content-length, on one instance: only a response that
    // waited for a timer (or the request's timeout) could take 5 s.
    let started = std::time::Instant::now();
    for i in 1..=10 {
        let (s, h, body) = get(&gw.url("/f/count")).await;
        assert_eq!((s, body.as_str()), (200, i.to_string().as_str()));
        assert_eq!(h["content-length"], i.to_string().len().to_string());
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let d = described(&gw, "f").await;
    assert_eq!(d["instances_created"], 1, "{d:#}");
    // Each request found the instance back, or waited for it without waiting out the bound.
    assert_eq!(d["return_wait_timeouts"], 0, "{d:#}");
    // A guest that returns without a response and keeps its response outparam (StarlingMonkey's
    // second fetch event on an instance does): answered 500 as soon as it returned, not at the
    // function's 30 s timeout; the instance is not kept.
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let (s, _, body) = get(&gw.url("/f/leak-response")).await;
        assert_eq!(s, 500, "{body}");
        assert!(body.contains("function_failed"), "{body}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(get(&gw.url("/f/count")).await.2, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_clients_is_served_by_returning_instances_without_waiting_out_the_bound() {
    // N clients, each sending its next request as soon as it has the previous answer (whose
    // instance is then on its way back), N instances at most, N kept warm: every request that
    // waits for a returning instance gets one (or starts its own) without waiting out the 50 ms
    // bound, and no instance is thrown away.
    const N: usize = 4;
    let gw = TestGateway::start(&config(
        "    instance_mode: reuse\n    limits: {concurrency: 4, max_idle: 4, queue_timeout: 10s}\n",
        "",
        "",
    ))
    .await;
    let url = gw.url("/f/count");
    let clients: Vec<_> = (0..N)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    let (s, _, body) = get(&url).await;
                    assert_eq!(s, 200, "{body}");
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let d = described(&gw, "f").await;
    assert_eq!(d["requests"], 100, "{d:#}");
    assert_eq!(d["failures"], 0, "{d:#}");
    assert_eq!(d["return_wait_timeouts"], 0, "{d:#}");
    assert!(
        d["instances_created"].as_u64().unwrap() <= N as u64,
        "{d:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_waiter_waits_for_each_instance_on_its_way_back() {
    // The client has the whole answer while the guest still lingers 2 s before returning: its
    // instance is on its way back for that long. Of a burst of 4 requests meanwhile (each held
    // 500 ms in the guest, so that none comes back while the others arrive), one waits for it, and
    // waits out the bound as it lingers; the other 3 start their own at once (each waited before).
    let gw = TestGateway::start(&config(
        "    instance_mode: reuse\n    limits: {concurrency: 8, max_idle: 8}\n",
        "",
        "",
    ))
    .await;
    let (s, _, body) = get(&gw.url("/f/linger?ms=2000")).await;
    assert_eq!((s, body.as_str()), (200, "lingered"));
    let burst: Vec<_> = (0..4)
        .map(|_| {
            let url = gw.url("/f/sleep?ms=500");
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    for b in burst {
        assert_eq!(b.await.unwrap().0, 200);
    }
    let d = described(&gw, "f").await;
    assert_eq!(d["return_waits"], 1, "{d:#}");
    assert_eq!(d["return_wait_timeouts"], 1, "{d:#}");
    assert_eq!(d["instances_created"], 5, "{d:#}");
    assert_eq!(d["failures"], 0, "{d:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_cannot_set_forbidden_or_oversized_headers() {
    let gw = TestGateway::start(&config("", "", "")).await;
    // wasmtime-wasi-http refuses hop-by-hop and routing headers set by a guest.
    let (s, _, body) = get(&gw.url("/f/forbidden")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body,
        "host: Err(HeaderError::Forbidden)\nconnection: Err(HeaderError::Forbidden)\nx-ok: Ok(()) true\n"
    );
    // Headers up to the fields' size limit (128 KiB in all) are taken...
    let (s, _, body) = get(&gw.url("/f/big-header?kib=64")).await;
    assert_eq!((s, body.as_str()), (200, "x-big: Ok(())\n"));
    // ...past it the guest is trapped: answered 500 before any head.
    let (s, _, body) = get(&gw.url("/f/big-header?kib=200")).await;
    assert_eq!(s, 500, "{body}");
    assert!(body.contains("function_failed"), "{body}");
    let d = described(&gw, "f").await;
    assert_eq!(d["failures"], 1, "{d:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_a_changed_function_and_requests_in_flight_finish() {
    let v1 = config("    env: {GREETING: one}\n", "", "");
    let gw = FileGateway::start(&v1).await;
    let g = &gw.gw;
    assert_eq!(
        get(&g.url("/f/env")).await.2.lines().next(),
        Some("GREETING=one")
    );
    // An unchanged reload keeps the function.
    let (s, _, b) = admin_call(g.admin, "POST", "/reload", "").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(described(g, "f").await["last_reload"]["action"], "reused");
    // A request in flight on the old function when its settings change.
    let u = g.url("/f/sleep?ms=800");
    let slow = tokio::spawn(async move { get(&u).await });
    assert!(
        eventually(Duration::from_secs(5), async || described(g, "f").await
            ["instances"]["in_flight"]
            == 1)
        .await
    );
    gw.write(&config("    env: {GREETING: two}\n", "", ""));
    let (s, _, b) = admin_call(g.admin, "POST", "/reload", "").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(described(g, "f").await["last_reload"]["action"], "loaded");
    assert_eq!(
        get(&g.url("/f/env")).await.2.lines().next(),
        Some("GREETING=two")
    );
    let (s, _, body) = slow.await.unwrap();
    assert_eq!((s, body.as_str()), (200, "slept"));
}

/// A function's answers are not read as gRPC (a try ends in a status, a connect failure, a reset
/// or a timeout), so a gRPC retry condition in a grant could never fire: refused at its line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_retry_condition_in_a_grant_is_refused_at_its_line() {
    let yaml = config(
        "    upstreams:\n      - upstream: up\n        retry:\n          on:\n            - 503\n            - grpc:unavailable\n",
        "",
        "upstreams:\n  - {name: up, endpoints: [127.0.0.1:9]}\n",
    );
    let e = refused(&yaml).await;
    let line = line_ending(&yaml, "- grpc:unavailable");
    assert!(
        e.contains(&format!("test.yaml:{line}:")),
        "line {line}: {e}"
    );
    assert!(
        e.contains("functions[0].upstreams[0].retry.on[1]")
            && e.contains("`grpc:unavailable`")
            && e.contains("connect_failure, reset, timeout or a status code"),
        "{e}"
    );
    // The same grant without it loads.
    TestGateway::start(&yaml.replace("            - grpc:unavailable\n", "")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_name_the_field() {
    let e = refused(&config("", "", "").replace("    function: f\n", "    function: g\n")).await;
    assert!(
        e.contains("routes[0].function") && e.contains("unknown function `g`"),
        "{e}"
    );
    let e = refused(&config("    upstreams: [nowhere]\n", "", "")).await;
    assert!(
        e.contains("functions[0].upstreams") && e.contains("nowhere"),
        "{e}"
    );
    let up = "upstreams:\n  - {name: up, endpoints: [127.0.0.1:9]}\n";
    let e = refused(&config(
        "    upstreams: [up, {upstream: nowhere}]\n",
        "",
        up,
    ))
    .await;
    assert!(
        e.contains("functions[0].upstreams[1]") && e.contains("unknown upstream `nowhere`"),
        "{e}"
    );
    let e = refused(&config("    upstreams: [up, {upstream: up}]\n", "", up)).await;
    assert!(
        e.contains("functions[0].upstreams[1]") && e.contains("granted twice"),
        "{e}"
    );
    let e = refused(&config(
        "    upstreams: [{upstream: up, retry: {on: [teapot]}}]\n",
        "",
        up,
    ))
    .await;
    assert!(
        e.contains("functions[0].upstreams[0].retry.on") && e.contains("unknown retry condition"),
        "{e}"
    );
    let e = refused(&config(
        "    upstreams: [{upstream: up, retries: 2}]\n",
        "",
        up,
    ))
    .await;
    assert!(
        e.contains("functions[0].upstreams[0]") && e.contains("unknown field `retries`"),
        "{e}"
    );
    let e = refused(&config(
        "",
        "    upstream: up\n",
        "upstreams:\n  - {name: up, endpoints: [127.0.0.1:9]}\n",
    ))
    .await;
    assert!(
        e.contains("routes[0]") && e.contains("exactly one of"),
        "{e}"
    );
    let e = refused("functions:\n  - name: f\n    path: /nonexistent/f.wasm\nroutes:\n  - {name: r, function: f}\n").await;
    assert!(
        e.contains("functions[0].path") && e.contains("cannot read"),
        "{e}"
    );
    // A core module, or a component that is not a wasi:http/proxy one, is refused.
    let filter = xtask::component_fixtures().unwrap_or_else(|e| panic!("{e}"));
    let yaml = format!(
        "functions:\n  - name: f\n    path: {}\nroutes:\n  - {{name: r, function: f}}\n",
        filter.kitchen.display()
    );
    let e = refused(&yaml).await;
    assert!(
        e.contains("functions[0].path") && e.contains("wasi:http"),
        "{e}"
    );
    let e = refused("functions:\n  - name: f\nroutes:\n  - {name: r, function: f}\n").await;
    assert!(
        e.contains("functions[0].name") && e.contains("needs a `path`"),
        "{e}"
    );
    let e = refused(&config("    limits: {concurrency: 0}\n", "", "")).await;
    assert!(
        e.contains("functions[0].limits.concurrency") && e.contains("at least 1"),
        "{e}"
    );
    let e = refused(&config("    limits: {cpu: 1s}\n", "", "")).await;
    assert!(
        e.contains("functions[0].limits.cpu") && e.contains("unknown field"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_function_is_fetched_once_pinned_and_its_code_cached_on_disk() {
    let bytes = std::fs::read(fixture()).unwrap();
    let sha = crate::reload::sha256_hex(&bytes);
    let dir = TempDir::new("fn-url");
    let server =
        crate::plugin_sources::WasmServer::start(&dir.0, vec![("/f.wasm", bytes.clone())]).await;
    let cache = dir.0.join("cache");
    let (url, ca) = (server.url("/f.wasm"), server.ca.clone());
    let yaml = |sha: &str| {
        format!(
            "server:\n  access_log: {{enabled: false}}\n  cache_dir: {}\nfunctions:\n  - name: f\n    url: {url}\n    sha256: {sha}\n    ca: {}\nroutes:\n  - name: fn\n    function: f\n",
            cache.display(),
            ca.display()
        )
    };
    let gw = TestGateway::start(&yaml(&sha)).await;
    assert_eq!(get(&gw.url("/f/count")).await.2, "1");
    assert_eq!(server.hits(), 1);
    let d = described(&gw, "f").await;
    assert_eq!(d["sha256"], sha);
    assert_eq!(d["source"]["url"], url);
    drop(gw);
    // A new process (a new engine) with the server gone: the file from the cache directory, its
    // compiled code from the disk cache.
    drop(server);
    let gw = TestGateway::start(&yaml(&sha)).await;
    assert_eq!(get(&gw.url("/f/count")).await.2, "1");
    let d = described(&gw, "f").await;
    assert_eq!(d["last_reload"]["compiled"], "disk", "{d:#}");

    // A path whose content is not the pinned sha256 is refused at that field.
    let wrong = "0".repeat(64);
    let e = refused(&format!(
        "functions:\n  - name: f\n    path: {}\n    sha256: {wrong}\nroutes:\n  - {{name: r, function: f}}\n",
        fixture()
    ))
    .await;
    assert!(
        e.contains("functions[0].sha256") && e.contains("sha256 mismatch"),
        "{e}"
    );
}
