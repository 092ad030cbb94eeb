//! Key-value namespaces in a real redis-server: what a request gets when Redis dies or freezes (a
//! typed `unavailable` within the command timeout, never a hang), recovery when it comes back, a
//! reload that moves a namespace to another server, figures on /metrics, and config errors.

use super::*;
use gateway_test_support::{metric, RedisServer};

/// A gateway whose route `/r/` runs the kitchen with the namespace `shared` at `url`.
fn yaml(b: &Backends, url: &str) -> String {
    let cfg = b.yaml(
        &[plugin(
            "kitchen",
            kitchen(),
            "    capabilities: {kv_namespace: shared}\n    instance_mode: reuse\n",
        )],
        &[route("r", "kitchen", "", "")],
    );
    format!(
        "{cfg}kv_namespaces:\n  shared:\n    backend: redis\n    redis: {{url: \"{url}\", connect_timeout: 200ms, command_timeout: 200ms}}\n"
    )
}

/// `kv-incr` of `key`: the new value, or the error kind.
async fn incr(gw: &TestGateway, b: &Backends, key: &str) -> String {
    let (_, h) = run(gw, b, "/r/x", "kv-incr", &[("x-key", key)]).await;
    match h.get("x-kv-value") {
        Some(v) => v.to_str().unwrap().to_owned(),
        None => format!("error:{}", hv(&h, "x-kv-error")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_dies_or_freezes_fails_store_calls_in_time_and_they_recover() {
    let mut redis = RedisServer::start();
    let b = Backends::start().await;
    let gw = TestGateway::start(&yaml(&b, &redis.url())).await;
    assert_eq!(incr(&gw, &b, "n").await, "1");

    // Frozen: connections stay open and nothing answers. The call gives up at its timeout and the
    // request goes on (the filter decides; the kitchen reports the error kind).
    redis.freeze();
    let started = Instant::now();
    assert_eq!(incr(&gw, &b, "n").await, "error:unavailable");
    // A hang detector, not a speed assertion: the timeout is 200 ms.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let m = gw.metrics().await;
    let timeouts = "gateway_kv_redis_commands_total{namespace=\"shared\",op=\"increment\",outcome=\"timeout\"}";
    assert!(metric(&m, timeouts).unwrap_or(0.0) >= 1.0, "{m}");
    redis.thaw();
    // The frozen call may have been applied when Redis woke up: whether a write happened is unknown.
    let back = eventually(Duration::from_secs(10), async || {
        incr(&gw, &b, "n").await.parse::<u64>().is_ok()
    })
    .await;
    assert!(back, "the store answers again after the thaw");

    // Killed: calls fail at once or at the timeout, the requests still complete.
    redis.kill();
    for _ in 0..3 {
        assert_eq!(incr(&gw, &b, "n").await, "error:unavailable");
    }
    let m = gw.metrics().await;
    let errors =
        "gateway_kv_redis_commands_total{namespace=\"shared\",op=\"increment\",outcome=\"error\"}";
    let failed = metric(&m, errors).unwrap_or(0.0) + metric(&m, timeouts).unwrap_or(0.0);
    assert!(failed >= 4.0, "{m}");
    // Back on the same port (empty: no persistence): the client reconnects by itself. Each pooled
    // connection finds out it was cut on its next call (that call is unavailable, and the breaker
    // holds the next ones for a moment): wait until calls on both succeed in a row.
    redis.restart();
    let back = eventually(Duration::from_secs(15), async || {
        let a = incr(&gw, &b, "fresh").await.parse::<u64>();
        let b2 = incr(&gw, &b, "fresh").await.parse::<u64>();
        matches!((a, b2), (Ok(x), Ok(y)) if y == x + 1)
    })
    .await;
    assert!(back, "the client reconnected to the restarted server");
    let n: u64 = incr(&gw, &b, "fresh").await.parse().unwrap();
    assert_eq!(incr(&gw, &b, "fresh").await, (n + 1).to_string());
    let m = gw.metrics().await;
    let ok =
        "gateway_kv_redis_commands_total{namespace=\"shared\",op=\"increment\",outcome=\"ok\"}";
    assert!(metric(&m, ok).unwrap_or(0.0) >= 3.0, "{m}");
    assert!(
        m.contains("gateway_kv_redis_command_duration_seconds_bucket{namespace=\"shared\",op=\"increment\""),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_a_namespace_to_another_redis_without_failing_requests() {
    let (one, two) = (RedisServer::start(), RedisServer::start());
    let b = Backends::start().await;
    let gw = TestGateway::start(&yaml(&b, &one.url())).await;
    let url = gw.url("/r/x");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u32;
            // Until told to stop (bounded by the waits below, 10 s each at most).
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (s, h, body) =
                    get_with(&url, &[("x-test", "kv-incr"), ("x-key", "hits")]).await;
                assert_eq!(s, 200, "{body}");
                assert!(h.get("x-kv-error").is_none(), "request {n} failed");
                n += 1;
            }
            n
        })
    };
    let moved = eventually(Duration::from_secs(10), async || {
        one.command("HGET gw:{shared}:d:hits v")
            .is_some_and(|a| a != "$-1")
    })
    .await;
    assert!(moved, "the first server counts");
    let (s, _, body) = admin_call(
        gw.admin,
        "PUT",
        "/config",
        &config_text(&yaml(&b, &two.url())),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let counted = eventually(Duration::from_secs(10), async || {
        two.command("HGET gw:{shared}:d:hits v")
            .is_some_and(|a| a != "$-1")
    })
    .await;
    assert!(counted, "the second server counts after the reload");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let n = load.await.unwrap();
    assert!(n > 0);
    // The upstream saw the requests, none failed (checked in the task); the kitchen's key is in
    // `two` now and `one` keeps what it had.
    let (_, h) = run(&gw, &b, "/r/x", "kv-read", &[("x-key", "hits")]).await;
    let in_two: u64 = hv(&h, "x-kv-value").parse().unwrap();
    assert!(in_two >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_namespace_settings_are_refused_at_their_line() {
    let cases = [
        (
            "kv_namespaces:\n  a:\n    backend: redis\n",
            "  a:",
            "needs a `redis:` section",
        ),
        (
            "kv_namespaces:\n  a:\n    backend: redis\n    redis: {url: \"http://127.0.0.1:1\"}\n",
            "redis: {url: \"http://127.0.0.1:1\"}",
            "is not a redis:// or rediss:// URL",
        ),
        (
            "kv_namespaces:\n  a:\n    backend: redis\n    redis: {url: \"redis://127.0.0.1:1\", pool_size: 0}\n",
            "pool_size: 0}",
            "between 1 and 64",
        ),
        (
            "kv_namespaces:\n  a:\n    backend: redis\n    redis: {url: \"redis://127.0.0.1:1\", command_timeout: 0ms}\n",
            "command_timeout: 0ms}",
            "between 1ms and 60s",
        ),
        (
            "kv_namespaces:\n  a:\n    backend: redis\n    redis: {url: \"rediss://127.0.0.1:1/#insecure\"}\n",
            "#insecure\"}",
            "turns certificate checks off",
        ),
        (
            "kv_namespaces:\n  \"a b\":\n    backend: local\n",
            "\"a b\":",
            "is not a namespace name",
        ),
        (
            "kv_namespaces:\n  a:\n    backend: redis\n    redis: {url: \"redis://127.0.0.1:1\", password: \"env:GW_TEST_NO_SUCH_VAR\"}\n",
            "GW_TEST_NO_SUCH_VAR\"}",
            "`GW_TEST_NO_SUCH_VAR` is not set",
        ),
    ];
    for (yaml, line_end, message) in cases {
        let e = refused(yaml).await;
        assert!(e.contains(message), "{yaml}: {e}");
        let line = line_ending(yaml, line_end);
        assert!(e.contains(&format!(":{line}:")), "{yaml}: line {line}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_a_password_from_a_file() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = TempDir::new("redis-tls");
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    let path = |f: &str| dir.0.join(f).display().to_string();
    std::fs::write(path("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(path("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(path("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(path("password"), "s3cret\n").unwrap();
    std::fs::write(path("wrong"), "nope\n").unwrap();
    let (cert, key_file, ca_file) = (path("cert.pem"), path("key.pem"), path("ca.pem"));
    let redis = RedisServer::start_with(
        &[
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key_file,
            "--tls-ca-cert-file",
            &ca_file,
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "s3cret",
        ],
        true,
    );
    let b = Backends::start().await;
    let config = |password: &str| {
        let cfg = b.yaml(
            &[plugin(
                "kitchen",
                kitchen(),
                "    capabilities: {kv_namespace: shared}\n    instance_mode: reuse\n",
            )],
            &[route("r", "kitchen", "", "")],
        );
        format!(
            "{cfg}kv_namespaces:\n  shared:\n    backend: redis\n    redis:\n      url: \"rediss://127.0.0.1:{}\"\n      ca: {ca_file}\n      password: \"file:{}\"\n      command_timeout: 1s\n",
            redis.port,
            path(password)
        )
    };
    let gw = TestGateway::start(&config("password")).await;
    assert_eq!(incr(&gw, &b, "n").await, "1");
    assert_eq!(incr(&gw, &b, "n").await, "2");
    // /config shows the password's reference, never its value.
    let (_, _, shown) = get(&format!("http://{}/config", gw.admin)).await;
    assert!(shown.contains("file:"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
    drop(gw);
    // The wrong password: the config loads (Redis is not asked at load), calls are unavailable.
    let gw = TestGateway::start(&config("wrong")).await;
    assert_eq!(incr(&gw, &b, "n").await, "error:unavailable");
}

/// Waiting on Redis is not CPU time, but only what was really waited is credited: a loop of store
/// calls that fail at once (Redis down, the breaker open) is stopped by the CPU limit, not let run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_of_store_calls_that_fail_at_once_hits_the_cpu_limit() {
    let mut redis = RedisServer::start();
    let b = Backends::start().await;
    let gw = TestGateway::start(&yaml(&b, &redis.url())).await;
    assert_eq!(incr(&gw, &b, "n").await, "1");
    redis.kill();
    let started = Instant::now();
    let (s, _, body) = get_with(&gw.url("/r/x"), &[("x-test", "kv-spin")]).await;
    assert_eq!(s, 500, "the loop ran its 5 s: {body}");
    assert!(body.contains("filter_failed"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let m = gw.metrics().await;
    assert!(
        m.lines().any(|l| l.starts_with("gateway_plugin_cpu_limit")
            && l.contains("kitchen")
            && !l.ends_with(" 0")),
        "{m}"
    );
}
