//! `rate-limiting` across replicas: three gateway processes share one limit through a real
//! redis-server and together admit exactly the limit; Redis killed or frozen gives each route its
//! `on_store_error` policy within the command timeout, and limiting resumes when Redis is back.

use crate::harness::*;
use gateway_test_support::RedisServer;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Config of a route `/api/` limited to `limit` per minute by the `x-tenant` header, counters in
/// the Redis namespace `limits` at `url`.
fn yaml(
    upstream: std::net::SocketAddr,
    url: &str,
    limit: u32,
    on_store_error: &str,
    timeout: &str,
) -> String {
    format!(
        "upstreams:\n  - name: up\n    endpoints: [{{address: \"{upstream}\"}}]\n\
kv_namespaces:\n  limits:\n    backend: redis\n    redis: {{url: \"{url}\", connect_timeout: {timeout}, command_timeout: {timeout}}}\n\
plugins:\n  - name: rate-limiting\n    capabilities: {{kv_namespace: limits}}\n\
routes:\n  - name: api\n    match: {{path: {{prefix: /api/}}}}\n    upstream: up\n    filters:\n      - plugin: rate-limiting\n        config:\n          limits: [{{per: minute, limit: {limit}}}]\n          by: \"header:x-tenant\"\n          policy: cluster\n          on_store_error: {on_store_error}\n"
    )
}

/// Waits, if needed, until a fixed one-minute window has more than 15 s left, so that a burst of
/// requests falls in one window.
async fn clear_of_a_window_edge() {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let into = secs % 60;
    if into > 45 {
        tokio::time::sleep(Duration::from_secs(61 - into)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateway_processes_share_one_limit_through_redis() {
    const LIMIT: usize = 30;
    let redis = RedisServer::start();
    let up = MockUpstream::start("up").await;
    // Timeouts long enough that a loaded machine never turns a slow answer into a 503: this test is
    // about the count, the next one about timeouts.
    let config = yaml(up.addr, &redis.url(), LIMIT as u32, "deny", "2s");
    let mut gws = Vec::new();
    for _ in 0..3 {
        let gw = GatewayProcess::start(&config).await;
        // Connected to Redis before the burst (another tenant's count).
        let (s, _, body) = get_with(&gw.url("/api/warm"), &[("x-tenant", "warm-up")]).await;
        assert_eq!(s, 200, "{body}");
        gws.push(gw);
    }
    clear_of_a_window_edge().await;
    // Twice the limit, sent to the three processes at once.
    let tasks: Vec<_> = (0..2 * LIMIT)
        .map(|i| {
            let url = gws[i % 3].url("/api/orders");
            tokio::spawn(async move { get_with(&url, &[("x-tenant", "acme")]).await })
        })
        .collect();
    let mut admitted = 0;
    let mut limited = 0;
    for t in tasks {
        let (status, headers, body) = t.await.unwrap();
        match status {
            200 => admitted += 1,
            429 => {
                limited += 1;
                assert_eq!(hv(&headers, "ratelimit-remaining"), "0");
                assert!(hv(&headers, "retry-after").parse::<u64>().unwrap() <= 60);
                assert!(body.contains("rate_limited"), "{body}");
            }
            other => panic!("status {other}: {body}"),
        }
    }
    // Exact: every process increments the one counter in Redis (no local batching).
    assert_eq!((admitted, limited), (LIMIT, LIMIT));
    assert_eq!(
        up.hits(),
        LIMIT + 3,
        "the three warm-ups and no more: refused requests never reached the upstream"
    );
    // Another tenant has its own count, on any process.
    let (s, h, _) = get_with(&gws[2].url("/api/orders"), &[("x-tenant", "other")]).await;
    assert_eq!(s, 200);
    assert_eq!(hv(&h, "ratelimit-remaining"), (LIMIT - 1).to_string());
    // Nothing grows per request: a counter per tenant and window (expiring), and the version key.
    assert!(redis.dbsize() <= 4, "keys in Redis: {}", redis.dbsize());
    let ttl = redis.command("KEYS *acme*").unwrap_or_default();
    assert!(
        ttl.starts_with("*1"),
        "one key for the tenant's window: {ttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_or_frozen_gives_each_route_its_policy_and_limiting_resumes() {
    let mut redis = RedisServer::start();
    let up = MockUpstream::start("up").await;
    let deny = yaml(up.addr, &redis.url(), 1000, "deny", "200ms");
    // A second route on the same namespace that lets requests through when Redis fails.
    let allow_route = "  - name: open\n    match: {path: {prefix: /open/}}\n    upstream: up\n    filters:\n      - plugin: rate-limiting\n        config:\n          limits: [{per: minute, limit: 1000}]\n          by: \"header:x-tenant\"\n          on_store_error: allow\n";
    let gw = TestGateway::start(&format!("{deny}{allow_route}")).await;
    let call = |path: &'static str| {
        let url = gw.url(path);
        async move { get_with(&url, &[("x-tenant", "t")]).await }
    };
    let (s, h, _) = call("/api/x").await;
    assert_eq!((s, hv(&h, "ratelimit-remaining").as_str()), (200, "999"));

    for (how, stop) in [("frozen", true), ("killed", false)] {
        if stop {
            redis.freeze();
        } else {
            redis.kill();
        }
        let started = std::time::Instant::now();
        let (s, h, body) = call("/api/x").await;
        assert_eq!(s, 503, "{how}: {body}");
        assert!(body.contains("request_id"), "{how}: {body}");
        assert!(h.get("ratelimit-remaining").is_none(), "{how}");
        let (s, h, _) = call("/open/x").await;
        assert_eq!(s, 200, "{how}: allowed through");
        assert!(
            h.get("ratelimit-remaining").is_none(),
            "{how}: no count to show"
        );
        // A hang detector, not a speed assertion: each call gives up after 200 ms.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{how}: {:?}",
            started.elapsed()
        );
        if stop {
            redis.thaw();
        } else {
            redis.restart();
        }
        let back = eventually(Duration::from_secs(15), async || {
            let (s, h, _) = call("/api/x").await;
            s == 200 && h.get("ratelimit-remaining").is_some()
        })
        .await;
        assert!(back, "{how}: limiting resumes when Redis is back");
    }
    let m = gw.metrics().await;
    assert!(
        m.contains("gateway_kv_redis_commands_total{namespace=\"limits\",op=\"increment\",outcome=\"timeout\"}"),
        "{m}"
    );
}

/// A reload that moves the plugin's namespace to another backend loads the plugin again, so its
/// `init` checks `policy` against where the counters now live: taking the Redis namespace away from a
/// `policy: cluster` route is refused, as a start with that config would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_moves_the_namespace_is_checked_against_the_policy() {
    let redis = RedisServer::start();
    let up = MockUpstream::start("up").await;
    let cluster = yaml(up.addr, &redis.url(), 100, "deny", "2s");
    let gw = TestGateway::start(&cluster).await;
    let (s, h, _) = get_with(&gw.url("/api/x"), &[("x-tenant", "t")]).await;
    assert_eq!((s, hv(&h, "ratelimit-remaining").as_str()), (200, "99"));
    // The same config without the Redis namespace: `limits` is then local.
    let start = cluster.find("kv_namespaces:").unwrap();
    let end = cluster.find("plugins:").unwrap();
    let local = format!("{}{}", &cluster[..start], &cluster[end..]);
    let (s, _, body) = admin_call(gw.admin, "PUT", "/config", &config_text(&local)).await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("policy: cluster"), "{body}");
    // The running config is untouched: still counting in Redis.
    let (s, h, _) = get_with(&gw.url("/api/x"), &[("x-tenant", "t")]).await;
    assert_eq!((s, hv(&h, "ratelimit-remaining").as_str()), (200, "98"));
    assert!(redis.dbsize() >= 2);
}
