//! Timeouts, upstream errors, retries and the retry budget.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_answers_504_upstream_timeout_in_time() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(&[up.addr], "", "    timeout: 200ms\n")).await;
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
    let gw = TestGateway::start(&one_route(&[dead], "", "")).await;
    let r = get(&gw.url("/x")).await;
    assert_eq!(r.0, 502, "{r:?}");
    assert_eq!(error_code(&r.2), "upstream_connect_failure", "{}", r.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_answers_502_upstream_protocol_error() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(&[up.addr], "", "")).await;
    let r = get(&gw.url("/close")).await;
    assert_eq!(r.0, 502, "{r:?}");
    assert_eq!(error_code(&r.2), "upstream_protocol_error", "{}", r.2);
    assert_eq!(up.hits(), 1, "not retried without a retry policy");
    // The gateway goes on serving through the same upstream.
    assert_eq!(get(&gw.url("/ok")).await.0, 200);
}

// 3. Retries

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_503_succeeds_on_the_next_try() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(
        &[up.addr],
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
        &[up.addr],
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
        &[up.addr],
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
        &[up.addr],
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
        &[dead, live.addr],
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
        &[up.addr],
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
        &[hole.local_addr().unwrap(), fast.addr],
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
        &[up.addr],
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
        &[up.addr],
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
