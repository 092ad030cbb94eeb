//! The built-in `rate-limiting` plugin through the real gateway, on its default local kv namespace:
//! a limit admits exactly its count then answers 429 with `Retry-After` and the rate-limit headers,
//! which upstream answers carry too; counters keyed by a header and by the consumer key-auth found;
//! a token bucket's burst and refill; a bad config reported at its line. Fixed windows use `hour`
//! and start away from an hour's end, so a window never ends in the middle of a test.

use crate::harness::*;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A route `/{name}` to the upstream `up` with `filters` (a YAML flow list's inside).
fn route(name: &str, filters: &str) -> Route {
    Route::new(name)
        .prefix(&format!("/{name}"))
        .upstream("up")
        .lines(&format!("    filters: [{filters}]\n"))
}

/// `rate-limiting` with `config` (a YAML flow map's inside).
fn limiting(config: &str) -> String {
    format!("{{plugin: rate-limiting, config: {{{config}}}}}")
}

/// Waits out the end of the current hour when it is less than 10 s away, so that hourly windows
/// hold still for the test.
async fn away_from_the_hours_end() {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let left = 3_600_000 - ms % 3_600_000;
    if left < 10_000 {
        tokio::time::sleep(Duration::from_millis(left + 100)).await;
    }
}

fn num(h: &http::HeaderMap, name: &str) -> u64 {
    hv(h, name)
        .parse()
        .unwrap_or_else(|_| panic!("{name}: {:?}", hv(h, name)))
}

/// Asserts that `resp` is the plugin's 429, and returns its `Retry-After`.
fn assert_limited(resp: &Resp) -> u64 {
    let (s, h, body) = resp;
    assert_eq!(*s, 429, "{body}");
    assert_eq!(hv(h, "content-type"), "application/json");
    let id = hv(h, "x-request-id");
    let wait = num(h, "retry-after");
    assert!(wait >= 1, "{wait}");
    assert_eq!(
        json(body),
        serde_json::json!({"error": "rate_limited", "message": "API rate limit exceeded",
                           "request_id": id, "retry_after": wait})
    );
    wait
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_admits_exactly_its_count_then_429s_with_headers_on_every_answer() {
    away_from_the_hours_end().await;
    let up = MockUpstream::start("up").await;
    let config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .route(route("a", &limiting("limits: [{per: hour, limit: 3}]")))
        .route(route(
            "b",
            &limiting(
                "limits: [{per: hour, limit: 2}, {per: day, limit: 100}], headers: x-ratelimit",
            ),
        ))
        .route(route(
            "c",
            &limiting("limits: [{per: hour, limit: 1}], headers: none"),
        ))
        .yaml();
    let gw = TestGateway::start(&config).await;

    for left in [2, 1, 0] {
        let (s, h, body) = get(&gw.url("/a/items")).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(hv(&h, "x-upstream"), "up", "the upstream's answer");
        assert_eq!(num(&h, "ratelimit-limit"), 3);
        assert_eq!(num(&h, "ratelimit-remaining"), left);
        let reset = num(&h, "ratelimit-reset");
        assert!((10..=3600).contains(&reset), "{reset}");
    }
    assert_eq!(up.hits(), 3);
    let resp = get(&gw.url("/a/items")).await;
    let wait = assert_limited(&resp);
    let h = &resp.1;
    assert_eq!(num(h, "ratelimit-remaining"), 0);
    assert_eq!(num(h, "ratelimit-reset"), wait, "the window's end");
    assert!(wait <= 3600, "{wait}");
    assert_limited(&get(&gw.url("/a/other")).await);
    assert_eq!(up.hits(), 3, "refused requests never reach the upstream");

    // Another route counts apart, with Kong's headers for each limit.
    for left in [1, 0] {
        let (s, h, body) = get(&gw.url("/b/items")).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(num(&h, "x-ratelimit-limit-hour"), 2);
        assert_eq!(num(&h, "x-ratelimit-remaining-hour"), left);
        assert_eq!(num(&h, "x-ratelimit-limit-day"), 100);
        assert_eq!(num(&h, "x-ratelimit-remaining-day"), 98 + left);
        assert_eq!(hv(&h, "ratelimit-limit"), "");
    }
    let resp = get(&gw.url("/b/items")).await;
    assert_limited(&resp);
    assert_eq!(num(&resp.1, "x-ratelimit-remaining-hour"), 0);
    assert_eq!(
        num(&resp.1, "x-ratelimit-remaining-day"),
        98,
        "a refused request is not counted"
    );

    // No headers, but a 429 still says when to come back.
    let (s, h, _) = get(&gw.url("/c/items")).await;
    assert_eq!(s, 200);
    assert_eq!(
        (hv(&h, "ratelimit-limit"), hv(&h, "x-ratelimit-limit-hour")),
        ("".into(), "".into())
    );
    let resp = get(&gw.url("/c/items")).await;
    assert_limited(&resp);
    assert_eq!(hv(&resp.1, "ratelimit-remaining"), "");

    let m = gw.metrics().await;
    let series = |outcome: &str| {
        format!(r#"plugin_rate_limiting_{outcome}_total{{plugin="rate-limiting"}}"#)
    };
    assert_eq!(metric(&m, &series("admitted")), Some(6.0), "{m}");
    assert_eq!(metric(&m, &series("refused")), Some(4.0), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_keyed_by_a_header_and_by_the_consumer() {
    away_from_the_hours_end().await;
    let up = MockUpstream::start("up").await;
    let consumers = "consumers:\n  - name: alice\n    credentials: {key-auth: {key: k-alice}}\n  - name: bob\n    credentials: {key-auth: {key: k-bob}}\n";
    let config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .route(route(
            "tenant",
            &limiting("limits: [{per: hour, limit: 1}], by: \"header:x-tenant\""),
        ))
        .route(route(
            "user",
            &format!(
                "{{plugin: key-auth}}, {}",
                limiting("limits: [{per: hour, limit: 2}], by: consumer")
            ),
        ))
        .raw(consumers)
        .yaml();
    let gw = TestGateway::start(&config).await;

    let tenant = |t: &'static str| [("x-tenant", t)];
    assert_eq!(get_with(&gw.url("/tenant/x"), &tenant("a")).await.0, 200);
    assert_limited(&get_with(&gw.url("/tenant/x"), &tenant("a")).await);
    assert_eq!(get_with(&gw.url("/tenant/x"), &tenant("b")).await.0, 200);
    // Without the header: the client's IP, a counter of its own.
    assert_eq!(get(&gw.url("/tenant/x")).await.0, 200);
    assert_limited(&get(&gw.url("/tenant/x")).await);

    let key = |k: &'static str| [("apikey", k)];
    for left in [1, 0] {
        let (s, h, body) = get_with(&gw.url("/user/x"), &key("k-alice")).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(num(&h, "ratelimit-remaining"), left);
    }
    assert_limited(&get_with(&gw.url("/user/x"), &key("k-alice")).await);
    let (s, h, _) = get_with(&gw.url("/user/x"), &key("k-bob")).await;
    assert_eq!(
        (s, num(&h, "ratelimit-remaining")),
        (200, 1),
        "bob counts apart"
    );
    // key-auth refuses a bad key before rate-limiting runs; its 401 goes back through nothing
    // that counted, and carries no rate-limit headers.
    let (s, h, _) = get_with(&gw.url("/user/x"), &key("k-nobody")).await;
    assert_eq!((s, hv(&h, "ratelimit-limit")), (401, "".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_bucket_lets_a_burst_through_then_refills() {
    let up = MockUpstream::start("up").await;
    let config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .route(route(
            "tb",
            &limiting("limits: [{per: second, limit: 2, algorithm: token_bucket, burst: 4}]"),
        ))
        .yaml();
    let gw = TestGateway::start(&config).await;

    // The burst, as fast as the client sends (a token comes back every 500 ms).
    let started = Instant::now();
    let mut admitted = 0;
    let refusal = loop {
        let resp = get(&gw.url("/tb/x")).await;
        if resp.0 != 200 {
            break resp;
        }
        assert_eq!(num(&resp.1, "ratelimit-limit"), 4);
        admitted += 1;
        assert!(admitted <= 10, "never refused");
    };
    // At least the burst; at most the burst and the tokens that came back meanwhile.
    let refilled = started.elapsed().as_millis() / 500;
    assert!(
        admitted >= 4 && admitted as u128 <= 4 + refilled,
        "{admitted} admitted in {:?}",
        started.elapsed()
    );
    assert_eq!(
        assert_limited(&refusal),
        1,
        "half a second to the next token"
    );
    // Refilled: admitted again within a bound.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (s, _, _) = get(&gw.url("/tb/x")).await;
        if s == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never admitted again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_reported_at_its_line() {
    let config = GatewayConfig::new()
        .route(Route::new("r").respond("hi").lines(
            "    filters:\n      - plugin: rate-limiting\n        config:\n          limits:\n            - {per: minute, limit: 10}\n            - {per: week, limit: 100}\n",
        ))
        .yaml();
    let err = refused(&config).await;
    let line = line_ending(&config, "- {per: week, limit: 100}");
    assert!(
        err.contains(&format!("test.yaml:{line}:"))
            && err.contains("routes[0].filters[0].config.limits[1].per: plugin `rate-limiting`")
            && err.contains("expected one of second, minute, hour, day, not `week`"),
        "{err}"
    );

    // `policy: cluster` on the default (local) namespace.
    let config = GatewayConfig::new()
        .route(Route::new("r").respond("hi").lines(
            "    filters:\n      - plugin: rate-limiting\n        config:\n          limits: [{per: minute, limit: 10}]\n          policy: cluster\n",
        ))
        .yaml();
    let err = refused(&config).await;
    let line = line_ending(&config, "policy: cluster");
    assert!(
        err.contains(&format!("test.yaml:{line}:"))
            && err.contains("policy: cluster needs a kv namespace whose backend is redis"),
        "{err}"
    );
}

/// A Redis namespace whose server is not there (a closed port): `policy: local` is refused at load,
/// and requests follow `on_store_error`: through without rate-limit headers, or a 503. The shared
/// limit itself, and Redis killed or frozen, are in redis_store.rs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_answer_follows_on_store_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis = format!(
        "kv_namespaces:\n  limits:\n    backend: redis\n    redis: {{url: \"redis://127.0.0.1:{port}/0\", connect_timeout: 200ms, command_timeout: 200ms}}\nplugins:\n  - name: rate-limiting\n    capabilities: {{kv_namespace: limits}}\n"
    );
    let up = MockUpstream::start("up").await;
    let limits = "limits: [{per: hour, limit: 1}]";
    let config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .route(route("allow", &limiting(limits)))
        .route(route(
            "deny",
            &limiting(&format!("{limits}, on_store_error: deny, policy: cluster")),
        ))
        .raw(&redis)
        .yaml();
    let gw = TestGateway::start(&config).await;

    for _ in 0..3 {
        let started = Instant::now();
        let (s, h, body) = get(&gw.url("/allow/x")).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(hv(&h, "ratelimit-limit"), "", "no headers without counts");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(up.hits(), 3);
    let (s, h, body) = get(&gw.url("/deny/x")).await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(
        json(&body),
        serde_json::json!({"error": "rate_limit_store_unavailable",
                           "message": "Rate limiting is unavailable; try again later",
                           "request_id": hv(&h, "x-request-id")})
    );
    assert_eq!(up.hits(), 3);
    let m = gw.metrics().await;
    let series = |outcome: &str| {
        format!(r#"plugin_rate_limiting_{outcome}_total{{plugin="rate-limiting"}}"#)
    };
    assert_eq!(metric(&m, &series("store_error_allowed")), Some(3.0), "{m}");
    assert_eq!(metric(&m, &series("store_error_denied")), Some(1.0), "{m}");

    // `policy: local` on that namespace is refused when the config loads.
    let config = GatewayConfig::new()
        .route(Route::new("r").respond("hi").lines(
            "    filters:\n      - plugin: rate-limiting\n        config:\n          limits: [{per: minute, limit: 10}]\n          policy: local\n",
        ))
        .raw(&redis)
        .yaml();
    let err = refused(&config).await;
    assert!(
        err.contains("policy: local needs a kv namespace whose backend is local"),
        "{err}"
    );
}
