//! Upstream behaviour through the real gateway over real sockets: balancing, timeouts and upstream
//! errors, retries and the retry budget, passive and active health, header hygiene and rewrites,
//! HTTP/2 on either side, and the upstream metrics.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------

/// An endpoint entry for a mock (weight 1).
fn ep(m: &MockUpstream) -> String {
    format!("\"{}\"", m.addr)
}

/// An endpoint entry with a weight.
fn ep_w(addr: SocketAddr, weight: u32) -> String {
    format!("{{address: \"{addr}\", weight: {weight}}}")
}

/// One upstream `up` with these endpoints and extra upstream lines (indented 4 spaces), and one
/// catch-all route `r` to it with extra route lines (indented 4 spaces).
fn one_route(endpoints: &[String], upstream_extra: &str, route_extra: &str) -> String {
    format!(
        "upstreams:\n  - name: up\n    endpoints: [{}]\n{upstream_extra}routes:\n  - name: r\n    upstream: up\n{route_extra}",
        endpoints.join(", ")
    )
}

/// The `error` code of a JSON error body ("" if the body is not one).
fn error_code(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The value of one series in Prometheus text, e.g. `gateway_upstream_requests_total{upstream="up"}`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// An address that refuses connections: a socket bound to it but not listening, so that no other
/// test can take the port while the returned socket is alive.
fn closed_addr() -> (tokio::net::TcpSocket, SocketAddr) {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

/// A listener that is never accepted: connections complete in the kernel's backlog, requests are
/// written and never answered. Keep it alive for as long as the endpoint should hang.
fn black_hole() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

/// POST a body with a known length.
async fn post(url: &str, body: &'static str) -> Resp {
    request(
        http::Request::post(url)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap(),
    )
    .await
}

/// GET with a client whose connections come from `ip` (any 127.0.0.0/8 address on Linux).
async fn get_from(ip: IpAddr, url: &str) -> Resp {
    let mut conn = HttpConnector::new();
    conn.set_local_address(Some(ip));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(conn);
    let req = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    request_via(&client, req).await
}

/// The `x-upstream` header of a response (the mock that answered).
fn answered_by(r: &Resp) -> String {
    r.1.get("x-upstream")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// All values of a header, as strings.
fn values(h: &http::HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("?").to_owned())
        .collect()
}

/// A minimal HTTP/1.1 upstream that answers every request head with `response` (keep-alive).
async fn fixed_upstream(response: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = tcp.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..i + 4);
                        if s.write_all(response).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, task)
}

// ---------------------------------------------------------------------------------------------------
// 1. Balancing
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_follows_weights_exactly() {
    let a = MockUpstream::start("a").await;
    let b = MockUpstream::start("b").await;
    let gw = TestGateway::start(&one_route(&[ep_w(a.addr, 3), ep_w(b.addr, 1)], "", "")).await;
    let mut by_header: HashMap<String, usize> = HashMap::new();
    for i in 0..40 {
        let r = get(&gw.url(&format!("/rr/{i}"))).await;
        assert_eq!(r.0, 200, "{r:?}");
        *by_header.entry(answered_by(&r)).or_default() += 1;
    }
    assert_eq!(
        (a.hits(), b.hits()),
        (30, 10),
        "weights 3:1 over 40 requests"
    );
    assert_eq!(by_header.get("a"), Some(&30), "{by_header:?}");
    assert_eq!(by_header.get("b"), Some(&10), "{by_header:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sends_traffic_to_every_endpoint() {
    let a = MockUpstream::start("a").await;
    let b = MockUpstream::start("b").await;
    let gw = TestGateway::start(&one_route(&[ep(&a), ep(&b)], "    balancer: random\n", "")).await;
    for _ in 0..40 {
        assert_eq!(get(&gw.url("/rand")).await.0, 200);
    }
    assert_eq!(a.hits() + b.hits(), 40);
    assert!(
        a.hits() > 0 && b.hits() > 0,
        "a={} b={}",
        a.hits(),
        b.hits()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_sends_fewer_requests_to_a_slow_endpoint() {
    // The slow endpoint is a second gateway that answers every request through `/delay/300` of its
    // own mock; the fast endpoint is a mock answering at once.
    let fast = MockUpstream::start("fast").await;
    let slow = MockUpstream::start("slow").await;
    let relay = TestGateway::start(&one_route(
        &[ep(&slow)],
        "",
        "    rewrite: {path: /delay/300}\n",
    ))
    .await;
    let gw = TestGateway::start(&one_route(
        &[ep(&fast), format!("\"{}\"", relay.addr)],
        "    balancer: least_request\n",
        "",
    ))
    .await;
    const N: usize = 80;
    let mut tasks = Vec::new();
    for _ in 0..N {
        let url = gw.url("/lr");
        tasks.push(tokio::spawn(async move { get(&url).await.0 }));
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let (f, s) = (fast.hits(), slow.hits());
    assert_eq!(f + s, N);
    // Power of two choices over two endpoints: the loaded one wins only when both picks are it (~1/4);
    // random would give it ~1/2.
    assert!(
        s < f && s * 10 <= N * 4,
        "slow endpoint got {s} of {N}, fast {f}"
    );
}

/// Sends `n` requests per key and returns the endpoint that answered each key; asserts stickiness.
async fn sticky_per_key<F, Fut>(keys: &[String], n: usize, mut send: F) -> HashMap<String, String>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    let mut out = HashMap::new();
    for k in keys {
        let mut seen = HashSet::new();
        for _ in 0..n {
            let r = send(k.clone()).await;
            assert_eq!(r.0, 200, "{r:?}");
            seen.insert(answered_by(&r));
        }
        assert_eq!(seen.len(), 1, "key {k} went to {seen:?}");
        out.insert(k.clone(), seen.into_iter().next().unwrap());
    }
    out
}

async fn three_mocks() -> (MockUpstream, MockUpstream, MockUpstream) {
    (
        MockUpstream::start("m0").await,
        MockUpstream::start("m1").await,
        MockUpstream::start("m2").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_by_header_is_sticky_and_spreads() {
    let (m0, m1, m2) = three_mocks().await;
    let gw = TestGateway::start(&one_route(
        &[ep(&m0), ep(&m1), ep(&m2)],
        "    balancer: {consistent_hash: {header: x-user}}\n",
        "",
    ))
    .await;
    let keys: Vec<String> = (0..20).map(|i| format!("user-{i}")).collect();
    let url = gw.url("/hash");
    let map = sticky_per_key(&keys, 4, |k| {
        let url = url.clone();
        async move { get_with(&url, &[("x-user", &k)]).await }
    })
    .await;
    let used: HashSet<_> = map.values().collect();
    assert!(used.len() >= 2, "20 keys all went to {used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_by_cookie_is_sticky_and_spreads() {
    let (m0, m1, m2) = three_mocks().await;
    let gw = TestGateway::start(&one_route(
        &[ep(&m0), ep(&m1), ep(&m2)],
        "    balancer: {consistent_hash: {cookie: sid}}\n",
        "",
    ))
    .await;
    let keys: Vec<String> = (0..20).map(|i| format!("session-{i}")).collect();
    let url = gw.url("/hash");
    let map = sticky_per_key(&keys, 4, |k| {
        let url = url.clone();
        // Other cookies around the one hashed on, and a changing one, must not matter.
        let n = rand_suffix();
        async move {
            get_with(
                &url,
                &[("cookie", &format!("theme=dark; sid={k}; nonce={n}"))],
            )
            .await
        }
    })
    .await;
    let used: HashSet<_> = map.values().collect();
    assert!(used.len() >= 2, "20 cookies all went to {used:?}");
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_by_client_ip_is_sticky_and_spreads() {
    let (m0, m1, m2) = three_mocks().await;
    let gw = TestGateway::start(&one_route(
        &[ep(&m0), ep(&m1), ep(&m2)],
        "    balancer: {consistent_hash: {client_ip: true}}\n",
        "",
    ))
    .await;
    let url = gw.url("/hash");
    // Client addresses 127.0.0.1 .. 127.0.0.20, each on fresh connections (so fresh source ports).
    let keys: Vec<String> = (1..=20).map(|i| format!("127.0.0.{i}")).collect();
    let map = sticky_per_key(&keys, 4, |k| {
        let url = url.clone();
        async move { get_from(k.parse().unwrap(), &url).await }
    })
    .await;
    let used: HashSet<_> = map.values().collect();
    assert!(used.len() >= 2, "20 client addresses all went to {used:?}");
    // The mocks saw the client address in X-Forwarded-For.
    let xff: HashSet<String> = [&m0, &m1, &m2]
        .iter()
        .flat_map(|m| m.seen())
        .flat_map(|s| values(&s.headers, "x-forwarded-for"))
        .collect();
    assert_eq!(xff.len(), 20, "{xff:?}");
}

// ---------------------------------------------------------------------------------------------------
// 2. Timeouts and upstream failures
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_answers_504_upstream_timeout_in_time() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(&[ep(&up)], "", "    timeout: 200ms\n")).await;
    let t = Instant::now();
    let r = get(&gw.url("/delay/2000")).await;
    let took = t.elapsed();
    assert_eq!(r.0, 504, "{r:?}");
    assert_eq!(error_code(&r.2), "upstream_timeout", "{}", r.2);
    assert_eq!(r.1["content-type"], "application/json");
    assert!(
        took >= Duration::from_millis(190),
        "answered before the timeout: {took:?}"
    );
    assert!(took < Duration::from_millis(1000), "took {took:?}");
    assert_eq!(up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_answers_502_upstream_connect_failure() {
    let (_hold, dead) = closed_addr();
    let gw = TestGateway::start(&one_route(&[format!("\"{dead}\"")], "", "")).await;
    let r = get(&gw.url("/x")).await;
    assert_eq!(r.0, 502, "{r:?}");
    assert_eq!(error_code(&r.2), "upstream_connect_failure", "{}", r.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_answers_502_upstream_protocol_error() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(&[ep(&up)], "", "")).await;
    let r = get(&gw.url("/close")).await;
    assert_eq!(r.0, 502, "{r:?}");
    assert_eq!(error_code(&r.2), "upstream_protocol_error", "{}", r.2);
    assert_eq!(up.hits(), 1, "not retried without a retry policy");
    // The gateway goes on serving through the same upstream.
    assert_eq!(get(&gw.url("/ok")).await.0, 200);
}

// ---------------------------------------------------------------------------------------------------
// 3. Retries
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_503_succeeds_on_the_next_try() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(
        &[ep(&up)],
        "",
        "    retry: {attempts: 2, on: [503]}\n",
    ))
    .await;
    up.fail_next(1, 503);
    let r = get(&gw.url("/flaky")).await;
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(r.2, "mock up /flaky\n");
    assert_eq!(up.hits(), 2, "one failed try and one retry");
    let seen = up.seen();
    assert!(seen.iter().all(|s| s.uri == "/flaky"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_exhausted_pass_the_last_answer_through() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(
        &[ep(&up)],
        "",
        "    retry: {attempts: 2, on: [503]}\n",
    ))
    .await;
    up.fail_next(10, 503);
    let r = get(&gw.url("/down")).await;
    assert_eq!(r.0, 503, "{r:?}");
    assert!(
        r.2.contains("forced failure"),
        "the upstream's own 503 body: {}",
        r.2
    );
    assert_eq!(up.hits(), 3, "first try and two retries");
    // A status not listed in `on` is not retried.
    up.fail_next(1, 500);
    let r = get(&gw.url("/down")).await;
    assert_eq!(r.0, 500);
    assert_eq!(up.hits(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_exchange_is_retried_on_reset() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(
        &[ep(&up)],
        "",
        "    retry: {attempts: 2, on: [reset], backoff_base: 5ms}\n",
    ))
    .await;
    let r = get(&gw.url("/close")).await;
    assert_eq!(r.0, 502, "{r:?}");
    assert_eq!(error_code(&r.2), "upstream_protocol_error");
    assert_eq!(up.hits(), 3, "the broken exchange was tried three times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_is_retried_only_when_non_idempotent_retries_are_allowed() {
    let up = MockUpstream::start("up").await;
    let yaml = "upstreams:\n  - name: up\n    endpoints: [\"ADDR\"]\nroutes:\n  - name: strict\n    match: {path: {prefix: /strict}}\n    upstream: up\n    retry: {attempts: 2, on: [503]}\n  - name: lax\n    match: {path: {prefix: /lax}}\n    upstream: up\n    retry: {attempts: 2, on: [503], allow_non_idempotent: true}\n"
        .replace("ADDR", &up.addr.to_string());
    let gw = TestGateway::start(&yaml).await;

    up.fail_next(1, 503);
    let r = post(&gw.url("/strict"), "payload").await;
    assert_eq!(r.0, 503, "POST not retried by default: {r:?}");
    assert_eq!(up.hits(), 1);

    // GET on the same route is retried.
    up.fail_next(1, 503);
    assert_eq!(get(&gw.url("/strict")).await.0, 200);
    assert_eq!(up.hits(), 3);

    up.fail_next(1, 503);
    let r = post(&gw.url("/lax"), "payload").await;
    assert_eq!(r.0, 200, "POST retried when allowed: {r:?}");
    assert_eq!(up.hits(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_post_body_is_replayed_intact() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(
        &[ep(&up)],
        "",
        "    retry: {attempts: 2, on: [503], allow_non_idempotent: true}\n",
    ))
    .await;
    up.fail_next(1, 503);
    let body = "{\"order\": 42, \"items\": [\"a\", \"b\"]}";
    let r = post(&gw.url("/echo"), body).await;
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(r.2, body, "the echo of the retried try");
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.method, http::Method::POST);
        assert_eq!(s.body, Bytes::from(body), "each try carried the whole body");
        assert_eq!(s.headers["content-length"], body.len().to_string().as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_retried_on_the_live_endpoint() {
    let live = MockUpstream::start("live").await;
    let (_hold, dead) = closed_addr();
    let gw = TestGateway::start(&one_route(
        &[format!("\"{dead}\""), ep(&live)],
        "",
        "    retry: {attempts: 2, on: [connect_failure], backoff_base: 5ms}\n",
    ))
    .await;
    for i in 0..10 {
        let r = get(&gw.url(&format!("/x/{i}"))).await;
        assert_eq!(r.0, 200, "request {i}: {r:?}");
        assert_eq!(answered_by(&r), "live");
    }
    assert_eq!(live.hits(), 10);
    let m = gw.metrics().await;
    let retries = metric(&m, "gateway_upstream_retries_total{upstream=\"up\"}").unwrap();
    assert!(
        retries >= 1.0,
        "the first request went to the dead endpoint and was retried\n{m}"
    );
    assert!(
        metric(
            &m,
            "gateway_upstream_errors_total{upstream=\"up\",kind=\"connect\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_retry_budget_stops_retries() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(
        &[ep(&up)],
        "",
        "    retry: {attempts: 2, on: [503], budget_ratio: 0, budget_min_per_second: 0}\n",
    ))
    .await;
    for i in 1..=3 {
        up.fail_next(1, 503);
        let r = get(&gw.url("/budget")).await;
        assert_eq!(r.0, 503, "no budget, no retry: {r:?}");
        assert!(r.2.contains("forced failure"));
        assert_eq!(up.hits(), i);
    }
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, "gateway_upstream_retries_total{upstream=\"up\"}"),
        Some(0.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeout_retries_a_slow_try() {
    // Endpoint 0 accepts connections and never answers; round robin tries it first.
    let hole = black_hole();
    let fast = MockUpstream::start("fast").await;
    let gw = TestGateway::start(&one_route(
        &[format!("\"{}\"", hole.local_addr().unwrap()), ep(&fast)],
        "",
        "    timeout: 5s\n    retry: {attempts: 1, on: [timeout], per_try_timeout: 200ms, backoff_base: 5ms}\n",
    ))
    .await;
    let t = Instant::now();
    let r = get(&gw.url("/slow-first")).await;
    let took = t.elapsed();
    assert_eq!(r.0, 200, "{r:?}");
    assert_eq!(answered_by(&r), "fast");
    assert!(
        took >= Duration::from_millis(190),
        "the first try waited its per-try timeout: {took:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "not the 5 s route timeout: {took:?}"
    );
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, "gateway_upstream_retries_total{upstream=\"up\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "gateway_upstream_errors_total{upstream=\"up\",kind=\"timeout\"}"
        ),
        Some(1.0),
        "{m}"
    );
    drop(hole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_retry_buffer_limit_is_not_retried() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(
        &[ep(&up)],
        "",
        "    retry: {attempts: 2, on: [503], allow_non_idempotent: true, buffer_limit: 16}\n",
    ))
    .await;
    up.fail_next(1, 503);
    let r = post(&gw.url("/echo"), "this body is longer than sixteen bytes").await;
    assert_eq!(
        r.0, 503,
        "a body that was not kept cannot be sent again: {r:?}"
    );
    assert_eq!(up.hits(), 1);
    // A body within the limit is retried.
    up.fail_next(1, 503);
    let r = post(&gw.url("/echo"), "short").await;
    assert_eq!((r.0, r.2.as_str()), (200, "short"));
    assert_eq!(up.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_deadline_reached_during_backoff_does_not_charge_the_endpoint() {
    // One real failure per round; passive health needs two in a row to eject.
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(
        &[ep(&up)],
        "    health:\n      passive: {consecutive_failures: 2, ejection_time: 10s}\n",
        "    timeout: 200ms\n    retry: {attempts: 2, on: [503], backoff_base: 1s, backoff_max: 1s}\n",
    ))
    .await;
    // The path answers after 20 ms (once fail_next is used up), so a try started with no time left
    // cannot slip through before its zero timeout fires.
    let url = gw.url("/delay/20");
    for round in 0..3 {
        up.fail_next(1, 503);
        let t = Instant::now();
        let first = get(&url).await;
        assert!(
            t.elapsed() < Duration::from_millis(600),
            "backoff is clipped to the route timeout"
        );
        // The endpoint failed once; the backoff then ran into the deadline. No second try had any time,
        // so the endpoint must not be charged a second failure.
        let r = get(&url).await;
        assert_eq!(
            r.0, 200,
            "round {round}: first answer {first:?}, then the endpoint was ejected: {r:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// 4. Health
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_health_ejects_a_failing_endpoint() {
    let bad = MockUpstream::start("bad").await;
    let good = MockUpstream::start("good").await;
    bad.fail_next(1000, 503);
    let gw = TestGateway::start(&one_route(
        &[ep(&bad), ep(&good)],
        "    health:\n      passive: {consecutive_failures: 2, ejection_time: 10s}\n",
        "",
    ))
    .await;
    // Round robin: bad, good, bad (second failure: ejected), good.
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(get(&gw.url("/p")).await.0);
        }
        v
    };
    assert_eq!(statuses, vec![503, 200, 503, 200]);
    assert_eq!(bad.hits(), 2);
    for i in 0..10 {
        let r = get(&gw.url("/p")).await;
        assert_eq!(r.0, 200, "request {i} after the ejection: {r:?}");
        assert_eq!(answered_by(&r), "good");
    }
    assert_eq!(bad.hits(), 2, "the ejected endpoint got no traffic");
    let m = gw.metrics().await;
    let h = |a: SocketAddr| {
        format!("gateway_upstream_endpoint_healthy{{upstream=\"up\",endpoint=\"{a}\"}}")
    };
    assert_eq!(metric(&m, &h(bad.addr)), Some(0.0), "{m}");
    assert_eq!(metric(&m, &h(good.addr)), Some(1.0), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_health_with_every_endpoint_ejected_answers_503_no_healthy_endpoint() {
    let only = MockUpstream::start("only").await;
    only.fail_next(1000, 503);
    let gw = TestGateway::start(&one_route(
        &[ep(&only)],
        "    health:\n      passive: {consecutive_failures: 2, ejection_time: 10s}\n",
        "",
    ))
    .await;
    for _ in 0..2 {
        let r = get(&gw.url("/p")).await;
        assert_eq!(r.0, 503);
        assert!(
            r.2.contains("forced failure"),
            "the upstream's answer: {}",
            r.2
        );
    }
    let r = get(&gw.url("/p")).await;
    assert_eq!(r.0, 503, "{r:?}");
    assert_eq!(error_code(&r.2), "no_healthy_endpoint", "{}", r.2);
    assert_eq!(only.hits(), 2, "nothing is sent to an ejected endpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ejection_time_doubles_with_each_consecutive_ejection() {
    let bad = MockUpstream::start("bad").await;
    bad.fail_next(100_000, 503);
    let gw = TestGateway::start(&one_route(
        &[ep(&bad)],
        "    health:\n      passive: {consecutive_failures: 1, ejection_time: 100ms}\n",
        "",
    ))
    .await;
    let url = gw.url("/p");
    let r = get(&url).await;
    assert!(
        r.2.contains("forced failure"),
        "first failure reaches the endpoint: {r:?}"
    );
    let mut measured = Vec::new();
    for _ in 0..4 {
        // Measured from the failing answer to the first request the endpoint sees again.
        let ejected_at = Instant::now();
        let before = bad.hits();
        loop {
            let r = get(&url).await;
            if bad.hits() > before {
                break;
            }
            assert_eq!(error_code(&r.2), "no_healthy_endpoint", "{r:?}");
            assert!(
                ejected_at.elapsed() < Duration::from_secs(3),
                "never came back"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        measured.push(ejected_at.elapsed());
    }
    let expected = [100u64, 200, 400, 800];
    for (m, e) in measured.iter().zip(expected) {
        let m = m.as_millis() as u64;
        assert!(
            m + 40 >= e && m <= e + 150,
            "ejections lasted {measured:?}, expected about {expected:?} ms"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_marks_a_failing_endpoint_unhealthy() {
    // Two clusters with one mock each: `sick` is probed on a path that fails, `fine` on one that works.
    let sick = MockUpstream::start("sick").await;
    let fine = MockUpstream::start("fine").await;
    let yaml = format!(
        "upstreams:
  - name: sick
    endpoints: [\"{}\"]
    health:
      active: {{path: /status/500, interval: 100ms, unhealthy_threshold: 2}}
  - name: fine
    endpoints: [\"{}\"]
    health:
      active: {{path: /healthz, interval: 100ms, unhealthy_threshold: 2}}
routes:
  - name: sick
    match: {{path: {{prefix: /sick}}}}
    upstream: sick
  - name: fine
    match: {{path: {{prefix: /fine}}}}
    upstream: fine
",
        sick.addr, fine.addr
    );
    let gw = TestGateway::start(&yaml).await;
    let url = gw.url("/sick");
    let turned = eventually(Duration::from_secs(3), || {
        let url = url.clone();
        async move {
            let r = get(&url).await;
            r.0 == 503 && error_code(&r.2) == "no_healthy_endpoint"
        }
    })
    .await;
    assert!(
        turned,
        "the endpoint failing its checks was never taken out"
    );
    let probes: Vec<_> = sick
        .seen()
        .into_iter()
        .filter(|s| s.uri == "/status/500")
        .collect();
    assert!(probes.len() >= 2, "{probes:?}");
    assert_eq!(probes[0].method, http::Method::GET);

    let m = gw.metrics().await;
    let h = |u: &str, a: SocketAddr| {
        format!("gateway_upstream_endpoint_healthy{{upstream=\"{u}\",endpoint=\"{a}\"}}")
    };
    assert_eq!(metric(&m, &h("sick", sick.addr)), Some(0.0), "{m}");
    assert_eq!(metric(&m, &h("fine", fine.addr)), Some(1.0), "{m}");
    // The cluster whose checks pass keeps serving.
    let r = get(&gw.url("/fine")).await;
    assert_eq!((r.0, r.2.as_str()), (200, "mock fine /fine\n"));
    assert!(
        fine.seen().iter().any(|s| s.uri == "/healthz"),
        "fine was probed too"
    );
    // And the sick one stays out: nothing but probes reaches it any more.
    let proxied = || {
        sick.seen()
            .iter()
            .filter(|s| s.uri != "/status/500")
            .count()
    };
    let before = proxied();
    tokio::time::sleep(Duration::from_millis(250)).await;
    for _ in 0..5 {
        assert_eq!(get(&url).await.0, 503);
    }
    assert_eq!(proxied(), before, "requests reached the unhealthy endpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_brings_an_endpoint_back_after_healthy_threshold() {
    let up = MockUpstream::start("up").await;
    // The first three probes fail, the following ones pass.
    up.fail_next(3, 500);
    let gw = TestGateway::start(&one_route(
        &[ep(&up)],
        "    health:\n      active: {path: /healthz, interval: 100ms, unhealthy_threshold: 2, healthy_threshold: 2}\n",
        "",
    ))
    .await;
    let series = format!(
        "gateway_upstream_endpoint_healthy{{upstream=\"up\",endpoint=\"{}\"}}",
        up.addr
    );
    let went_down = eventually(Duration::from_secs(3), || {
        let series = series.clone();
        let gw = &gw;
        async move { metric(&gw.metrics().await, &series) == Some(0.0) }
    })
    .await;
    assert!(went_down, "two failed probes mark the endpoint unhealthy");
    let came_back = eventually(Duration::from_secs(3), || {
        let series = series.clone();
        let gw = &gw;
        async move { metric(&gw.metrics().await, &series) == Some(1.0) }
    })
    .await;
    assert!(came_back, "two passing probes bring it back");
    let r = get(&gw.url("/again")).await;
    assert_eq!(r.0, 200, "{r:?}");
}

// ---------------------------------------------------------------------------------------------------
// 5. Headers and rewrites
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_and_host_pass_through() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(&[ep(&up)], "", "")).await;
    let r = get_with(
        &gw.url("/fwd"),
        &[
            ("host", "front.example:8080"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
    )
    .await;
    assert_eq!(r.0, 200, "{r:?}");
    let h = up.last().headers;
    assert_eq!(
        values(&h, "x-forwarded-for"),
        vec!["203.0.113.9, 127.0.0.1"]
    );
    assert_eq!(values(&h, "x-forwarded-proto"), vec!["http"]);
    assert_eq!(values(&h, "x-forwarded-host"), vec!["front.example:8080"]);
    assert_eq!(
        values(&h, "host"),
        vec!["front.example:8080"],
        "Host passed through"
    );

    // Without a client X-Forwarded-For the header is just the client address.
    get(&gw.url("/fwd2")).await;
    let h = up.last().headers;
    assert_eq!(values(&h, "x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(values(&h, "host"), vec![gw.addr.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_is_rewritten_when_configured() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(
        &[ep(&up)],
        "",
        "    rewrite: {host: users.internal}\n",
    ))
    .await;
    let r = get_with(&gw.url("/h"), &[("host", "front.example")]).await;
    assert_eq!(r.0, 200);
    let h = up.last().headers;
    assert_eq!(values(&h, "host"), vec!["users.internal"]);
    assert_eq!(
        values(&h, "x-forwarded-host"),
        vec!["front.example"],
        "the original Host"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_not_forwarded_to_the_upstream() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(&[ep(&up)], "", "")).await;
    let req = b"GET /hop HTTP/1.1\r\nHost: front.example\r\nConnection: close, x-secret\r\nX-Secret: named by Connection\r\nKeep-Alive: timeout=5\r\nTE: gzip;q=0.5\r\nTrailer: x-checksum\r\nUpgrade: websocket\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\nProxy-Connection: keep-alive\r\nX-Keep: yes\r\n\r\n";
    let resp = raw(gw.addr, req, Duration::from_millis(1000)).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(up.hits(), 1);
    let h = up.last().headers;
    for name in [
        "connection",
        "x-secret",
        "keep-alive",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(!h.contains_key(name), "{name} reached the upstream: {h:?}");
    }
    assert_eq!(
        values(&h, "x-keep"),
        vec!["yes"],
        "end-to-end headers are kept"
    );
    assert_eq!(values(&h, "host"), vec!["front.example"]);
    // TE is the gateway's own: the client's codings are not passed on, the gateway asks for trailers.
    assert_eq!(values(&h, "te"), vec!["trailers"]);
    // Trailer is end-to-end (RFC 9110) and kept, so that the trailers it declares pass through.
    assert_eq!(values(&h, "trailer"), vec!["x-checksum"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_not_forwarded_to_the_client() {
    let (addr, task) = fixed_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: x-secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nProxy-Agent: up\r\nTrailer: x-t\r\nX-Keep: yes\r\n\r\nok",
    )
    .await;
    let gw = TestGateway::start(&one_route(&[format!("\"{addr}\"")], "", "")).await;
    let r = get(&gw.url("/resp")).await;
    assert_eq!((r.0, r.2.as_str()), (200, "ok"), "{r:?}");
    for name in [
        "x-secret",
        "keep-alive",
        "proxy-authenticate",
        "proxy-agent",
    ] {
        assert!(
            !r.1.contains_key(name),
            "{name} reached the client: {:?}",
            r.1
        );
    }
    assert!(
        r.1.get("connection")
            .is_none_or(|v| !v.to_str().unwrap_or("").contains("x-secret")),
        "{:?}",
        r.1
    );
    assert_eq!(values(&r.1, "x-keep"), vec!["yes"]);
    assert_eq!(
        values(&r.1, "trailer"),
        vec!["x-t"],
        "Trailer is end-to-end"
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_header_changes_reach_their_targets() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(
        &[ep(&up)],
        "",
        "    request_headers: {set: {x-team: core}, add: {x-via: gw}, remove: [x-internal]}\n    response_headers: {set: {cache-control: no-store, x-upstream: hidden}}\n",
    ))
    .await;
    let r = get_with(
        &gw.url("/ops"),
        &[
            ("x-team", "other"),
            ("x-via", "client"),
            ("x-internal", "secret"),
            ("x-other", "kept"),
        ],
    )
    .await;
    assert_eq!(r.0, 200);
    let h = up.last().headers;
    assert_eq!(values(&h, "x-team"), vec!["core"], "set replaces");
    assert_eq!(values(&h, "x-via"), vec!["client", "gw"], "add appends");
    assert!(!h.contains_key("x-internal"), "remove removes");
    assert_eq!(values(&h, "x-other"), vec!["kept"]);
    assert_eq!(values(&r.1, "cache-control"), vec!["no-store"]);
    assert_eq!(
        values(&r.1, "x-upstream"),
        vec!["hidden"],
        "set replaces the upstream's value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_rewrites_keep_the_query() {
    let up = MockUpstream::start("up").await;
    let yaml = format!(
        "upstreams:
  - name: up
    endpoints: [\"{}\"]
routes:
  - name: strip
    match: {{path: {{prefix: /api}}}}
    upstream: up
    rewrite: {{strip_prefix: /api}}
  - name: fixed
    match: {{path: {{prefix: /old}}}}
    upstream: up
    rewrite: {{path: /fixed}}
  - name: tmpl
    match: {{path: {{template: \"/users/{{id}}\"}}}}
    upstream: up
    rewrite: {{template: \"/v2/u/{{id}}\"}}
  - name: two
    match: {{path: {{template: \"/orgs/{{org}}/repos/{{repo}}\"}}}}
    upstream: up
    rewrite: {{template: \"/r/{{repo}}/of/{{org}}\"}}
",
        up.addr
    );
    let gw = TestGateway::start(&yaml).await;
    let cases = [
        ("/api/users/7?x=1&y=2", "/users/7?x=1&y=2"),
        ("/api", "/"),
        ("/api?only=query", "/?only=query"),
        ("/old/anything?q=1", "/fixed?q=1"),
        ("/users/42", "/v2/u/42"),
        (
            "/users/42?expand=true&f=a%20b",
            "/v2/u/42?expand=true&f=a%20b",
        ),
        (
            "/orgs/acme/repos/rocket?tab=code",
            "/r/rocket/of/acme?tab=code",
        ),
    ];
    for (sent, expected) in cases {
        let r = get(&gw.url(sent)).await;
        assert_eq!(r.0, 200, "{sent}: {r:?}");
        assert_eq!(up.last().uri, expected, "{sent}");
    }
    // A template matches whole segments only.
    let before = up.hits();
    let r = get(&gw.url("/users/42/extra")).await;
    assert_eq!((r.0, error_code(&r.2).as_str()), (404, "no_route"));
    assert_eq!(up.hits(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_rewrite_substitutes_each_parameter_once() {
    let up = MockUpstream::start("up").await;
    let yaml = format!(
        "upstreams:\n  - name: up\n    endpoints: [\"{}\"]\nroutes:\n  - name: two\n    match: {{path: {{template: \"/orgs/{{org}}/repos/{{repo}}\"}}}}\n    upstream: up\n    rewrite: {{template: \"/r/{{repo}}/of/{{org}}\"}}\n",
        up.addr
    );
    let gw = TestGateway::start(&yaml).await;
    // The client's `org` segment is the literal text `{repo}`.
    let resp = raw(
        gw.addr,
        b"GET /orgs/{repo}/repos/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        Duration::from_millis(1000),
    )
    .await;
    let uris: Vec<String> = up.seen().into_iter().map(|s| s.uri).collect();
    match status_of(&resp) {
        // Refusing the (strictly invalid) braces is fine; forwarding them must keep them as they are.
        400 => assert!(uris.is_empty(), "{uris:?}"),
        200 => assert_eq!(
            uris,
            vec!["/r/x/of/{repo}"],
            "each parameter is substituted once"
        ),
        _ => panic!("unexpected answer: {resp}"),
    }
}

// ---------------------------------------------------------------------------------------------------
// 6. HTTP/2
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upstream_gets_http2() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(&[ep(&up)], "    protocol: http2\n", "")).await;
    let r = get(&gw.url("/h2?q=1")).await;
    assert_eq!((r.0, r.2.as_str()), (200, "mock up /h2\n"), "{r:?}");
    let seen = up.last();
    assert_eq!(seen.version, http::Version::HTTP_2);
    assert!(seen.uri.ends_with("/h2?q=1"), "{}", seen.uri);

    // A body goes through too.
    let r = post(&gw.url("/echo"), "over h2").await;
    assert_eq!((r.0, r.2.as_str()), (200, "over h2"));

    // Connection-specific headers from an HTTP/1.1 client must not break the HTTP/2 exchange.
    let resp = raw(
        gw.addr,
        b"GET /h2-hop HTTP/1.1\r\nHost: front.example\r\nConnection: close, x-secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\n\r\n",
        Duration::from_millis(1000),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let seen = up.last();
    assert_eq!(seen.version, http::Version::HTTP_2);
    for name in ["connection", "x-secret", "keep-alive", "proxy-connection"] {
        assert!(
            !seen.headers.contains_key(name),
            "{name}: {:?}",
            seen.headers
        );
    }
    assert_eq!(
        values(&seen.headers, "te"),
        vec!["trailers"],
        "TE: trailers is allowed in HTTP/2"
    );
    // All of it on HTTP/2 streams of pooled connections.
    assert!(up.connections() <= 2, "connections: {}", up.connections());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upstream_is_health_checked_over_http2() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(
        &[ep(&up)],
        "    protocol: http2\n    health:\n      active: {path: /healthz, interval: 100ms, unhealthy_threshold: 2}\n",
        "",
    ))
    .await;
    let probed = eventually(Duration::from_secs(2), || async {
        up.seen()
            .iter()
            .filter(|s| s.uri.ends_with("/healthz"))
            .count()
            >= 3
    })
    .await;
    assert!(probed, "probes: {:?}", up.seen());
    assert!(up.seen().iter().all(|s| s.version == http::Version::HTTP_2));
    let m = gw.metrics().await;
    let series = format!(
        "gateway_upstream_endpoint_healthy{{upstream=\"up\",endpoint=\"{}\"}}",
        up.addr
    );
    assert_eq!(metric(&m, &series), Some(1.0), "{m}");
    assert_eq!(get(&gw.url("/after-probes")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_client_reaches_an_http1_upstream() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(&[ep(&up)], "", "")).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    for i in 0..3 {
        let req = http::Request::get(gw.url(&format!("/from-h2/{i}")))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .expect("in time")
            .expect("response");
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, Bytes::from(format!("mock up /from-h2/{i}\n")));
    }
    let seen = up.last();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.uri, "/from-h2/2");
    assert_eq!(
        values(&seen.headers, "host"),
        vec![gw.addr.to_string()],
        "Host from :authority"
    );
    assert_eq!(
        values(&seen.headers, "x-forwarded-host"),
        vec![gw.addr.to_string()]
    );
}

// ---------------------------------------------------------------------------------------------------
// 7. Metrics
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_metrics_count_tries_retries_and_errors() {
    let up = MockUpstream::start("billing").await;
    let (_hold, dead) = closed_addr();
    let yaml = format!(
        "upstreams:
  - name: billing
    endpoints: [\"{}\"]
  - name: gone
    endpoints: [\"{dead}\"]
routes:
  - name: pay
    match: {{path: {{prefix: /pay}}}}
    upstream: billing
    retry: {{attempts: 2, on: [503]}}
  - name: lost
    match: {{path: {{prefix: /lost}}}}
    upstream: gone
",
        up.addr
    );
    let gw = TestGateway::start(&yaml).await;
    let req = |u: &str| format!("gateway_upstream_requests_total{{upstream=\"{u}\"}}");
    let ret = |u: &str| format!("gateway_upstream_retries_total{{upstream=\"{u}\"}}");

    let m = gw.metrics().await;
    assert_eq!(metric(&m, &req("billing")), Some(0.0), "{m}");
    assert_eq!(metric(&m, &ret("billing")), Some(0.0), "{m}");

    for _ in 0..3 {
        assert_eq!(get(&gw.url("/pay")).await.0, 200);
    }
    let m = gw.metrics().await;
    assert_eq!(metric(&m, &req("billing")), Some(3.0), "{m}");
    assert_eq!(metric(&m, &ret("billing")), Some(0.0), "{m}");

    up.fail_next(1, 503);
    assert_eq!(get(&gw.url("/pay")).await.0, 200);
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, &req("billing")),
        Some(5.0),
        "every try counts: {m}"
    );
    assert_eq!(metric(&m, &ret("billing")), Some(1.0), "{m}");
    assert_eq!(
        metric(&m, "gateway_requests_total{route=\"pay\",status=\"200\"}"),
        Some(4.0),
        "the client saw four answers: {m}"
    );

    assert_eq!(get(&gw.url("/lost")).await.0, 502);
    let m = gw.metrics().await;
    assert_eq!(metric(&m, &req("gone")), Some(1.0), "{m}");
    assert_eq!(metric(&m, &ret("gone")), Some(0.0), "{m}");
    assert_eq!(
        metric(
            &m,
            "gateway_upstream_errors_total{upstream=\"gone\",kind=\"connect\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, &req("billing")),
        Some(5.0),
        "other upstreams unchanged: {m}"
    );
}
