//! Headers, properties, logs, time, metrics, shared data, queues, ticks, per-route config.

use crate::support::*;
use gateway::filter::{FilterError, ResponseHead, Verdict};
use std::sync::Arc;

#[tokio::test]
async fn headers_and_pseudo_headers() {
    for path in [&fixtures().kitchen, &fixtures().kitchen_unknown] {
        let host = host().await;
        let p = load(plugin_cfg("headers", path), host).await;
        let f = filter(&p, "r", "tag=h").await;
        let (v, req, _ctx) = request_headers(
            &f,
            &[
                ("x-test", "headers"),
                ("x-replaced", "old"),
                ("x-remove-me", "1"),
            ],
            true,
        )
        .await;
        assert!(matches!(v, Ok(Verdict::Continue)), "{v:?}");
        let h = &req.headers;
        assert_eq!(
            hv(h, "x-pseudo"),
            ":method=GET,:scheme=http,:authority=example.com,:path=/path?q=1"
        );
        assert_eq!(h.get_all("x-added").iter().count(), 2);
        assert_eq!(hv(h, "x-replaced"), "new");
        assert!(h.get("x-remove-me").is_none());
        assert_eq!(hv(h, "x-got"), "1");
        assert_eq!(hv(h, "x-missing-is-none"), "true");
        assert_eq!(hv(h, "x-eos"), "true");
        assert_eq!(req.method, http::Method::PUT);
        assert_eq!(req.uri.to_string(), "/rewritten?x=1");
        assert_eq!(hv(h, "host"), "rewritten.example");
    }
}

#[tokio::test]
async fn set_header_pairs_replaces_the_map() {
    let p = load(plugin_cfg("pairs", &fixtures().kitchen), host().await).await;
    let f = filter(&p, "r", "").await;
    let (v, req, _ctx) =
        request_headers(&f, &[("x-test", "set-pairs"), ("x-drop", "1")], false).await;
    assert!(matches!(v, Ok(Verdict::Continue)));
    assert!(req.headers.get("x-drop").is_none());
    assert_eq!(hv(&req.headers, "x-from-pairs"), "yes");
    assert_eq!(hv(&req.headers, "host"), "example.com");
    assert_eq!(req.uri.to_string(), "/path?q=1");
}

#[tokio::test]
async fn properties() {
    let p = load(plugin_cfg("props", &fixtures().kitchen), host().await).await;
    let f = filter(&p, "route-a", "").await;
    let (_, req, _ctx) =
        request_headers(&f, &[("x-test", "props"), ("x-request-id", "abc")], true).await;
    let h = &req.headers;
    for (k, want) in [
        ("x-prop-request-path", "/path?q=1"),
        ("x-prop-request-url_path", "/path"),
        ("x-prop-request-host", "example.com"),
        ("x-prop-request-scheme", "http"),
        ("x-prop-request-method", "GET"),
        ("x-prop-request-query", "q=1"),
        ("x-prop-request-protocol", "HTTP/1.1"),
        ("x-prop-request-id", "abc"),
        ("x-prop-source-address", "10.1.2.3:4567"),
        ("x-prop-source-port", "4567"),
        ("x-prop-destination-address", "127.0.0.1:8080"),
        ("x-prop-destination-port", "8080"),
        ("x-prop-connection-id", "7"),
        ("x-prop-plugin_name", "props"),
        ("x-prop-plugin_root_id", "route-a"),
        ("x-prop-plugin_vm_id", "props"),
        ("x-prop-route_name", "route-a"),
        ("x-prop-cluster_name", "backend"),
        ("x-prop-upstream-name", "backend"),
        ("x-prop-connection_id", "7"),
        ("x-prop-kong-route_id", "route-a"),
        ("x-prop-kong-service_id", "backend"),
        ("x-prop-kong-client-protocol", "http"),
        ("x-prop-ngx-remote_addr", "10.1.2.3"),
        ("x-prop-ngx-remote_port", "4567"),
        ("x-prop-ngx-request_uri", "/path?q=1"),
        ("x-prop-ngx-http_x_test", "props"),
        ("x-prop-my-key", "my-value"),
        ("x-prop-missing", "<none>"),
    ] {
        assert_eq!(hv(h, k), want, "{k}");
    }
    assert!(
        hv(h, "x-prop-request-headers-count")
            .parse::<u32>()
            .unwrap()
            >= 3
    );
}

#[tokio::test]
async fn logs_time_foreign_functions_effective_context_grpc() {
    let p = load(plugin_cfg("misc", &fixtures().kitchen), host().await).await;
    let f = filter(&p, "r", "tag=m").await;
    let (v, req, _ctx) = request_headers(&f, &[("x-test", "misc")], true).await;
    assert!(matches!(v, Ok(Verdict::Continue)), "{v:?}");
    let h = &req.headers;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let secs: u64 = hv(h, "x-now-secs").parse().unwrap();
    assert!(secs.abs_diff(now) < 5);
    assert_eq!(hv(h, "x-foreign"), "not-found");
    assert_eq!(hv(h, "x-effective"), "ok,BadArgument");
    assert_eq!(
        hv(h, "x-grpc-call"),
        "ok,BadArgument,ok,NotFound,NotFound,ParseFailure"
    );
    assert!(hv(h, "x-log-level").parse::<u32>().unwrap() <= 5);
    assert_eq!(hv(h, "x-tag"), "m");
}

#[tokio::test]
async fn metrics_are_defined_updated_and_rendered() {
    let host = host().await;
    let p = load(
        plugin_cfg("metrics-plugin", &fixtures().kitchen),
        host.clone(),
    )
    .await;
    let f = filter(&p, "r", "").await;
    let (_, req, _ctx) = request_headers(&f, &[("x-test", "metrics")], true).await;
    assert_eq!(
        hv(&req.headers, "x-metrics"),
        "counter=1,gauge=3,negative=BadArgument,bad_id=NotFound"
    );
    let (_, req, _ctx) = request_headers(&f, &[("x-test", "metrics")], true).await;
    assert_eq!(
        hv(&req.headers, "x-metrics"),
        "counter=2,gauge=6,negative=BadArgument,bad_id=NotFound"
    );
    let mut e = gateway::metrics::Exposition::default();
    host.metrics.expose(&mut e);
    let out = e.render();
    assert!(
        out.contains("plugin_kitchen_requests_total{plugin=\"metrics-plugin\"} 2\n"),
        "{out}"
    );
    assert!(
        out.contains("plugin_kitchen_inflight{plugin=\"metrics-plugin\"} 6\n"),
        "{out}"
    );
    assert!(
        out.contains("plugin_kitchen_body_bytes_count{plugin=\"metrics-plugin\"} 2\n"),
        "{out}"
    );
}

#[tokio::test]
async fn shared_data_get_set_cas() {
    let p = load(plugin_cfg("shared", &fixtures().kitchen), host().await).await;
    let f = filter(&p, "r", "tag=s").await;
    let (_, req, _ctx) = request_headers(&f, &[("x-test", "shared")], true).await;
    assert_eq!(
        hv(&req.headers, "x-shared"),
        "missing=None/None,v1=v1,mismatch=CasMismatch,good=ok,v2=v2,cas_advanced=true"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_data_under_concurrent_cas_contention() {
    let host = host().await;
    // Two plugins are two VMs that run in parallel and share the Proxy-Wasm shared data.
    let a = load(plugin_cfg("cas-a", &fixtures().kitchen), host.clone()).await;
    let b = load(plugin_cfg("cas-b", &fixtures().kitchen), host.clone()).await;
    let fa = filter(&a, "r", "").await;
    let fb = filter(&b, "r", "").await;
    host.shared
        .set("", "cas-race", bytes::Bytes::from_static(b"0"), None)
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..80 {
        let f = if i % 2 == 0 { fa.clone() } else { fb.clone() };
        tasks.push(tokio::spawn(async move {
            let (v, req, _ctx) = request_headers(&f, &[("x-test", "cas-race")], true).await;
            assert!(matches!(v, Ok(Verdict::Continue)), "{v:?}");
            hv(&req.headers, "x-cas-retries").parse::<u32>().unwrap()
        }));
    }
    let mut retries = 0;
    for t in tasks {
        retries += t.await.unwrap();
    }
    assert_eq!(
        shared(&host, "cas-race"),
        "80",
        "no increment may be lost ({retries} retries)"
    );
}

/// Two hosts (two gateway processes) whose plugins are granted one namespace in a real redis-server:
/// Proxy-Wasm shared data lives there, and compare-and-swap keeps every increment made through
/// either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_data_in_a_redis_namespace_is_one_store_for_every_process() {
    let redis = gateway_test_support::RedisServer::start();
    let namespaces: std::collections::BTreeMap<String, gateway::config::stores::KvNamespace> =
        serde_yaml_ng::from_str(&format!(
            "counters: {{backend: redis, redis: {{url: \"{}\"}}}}",
            redis.url()
        ))
        .unwrap();
    let mut filters = Vec::new();
    let mut hosts = Vec::new();
    for name in ["proc-a", "proc-b"] {
        let host = host().await;
        hosts.push(host.clone());
        let set = host
            .stores
            .prepare(&namespaces, std::path::Path::new("/"))
            .unwrap();
        host.stores.install(set);
        let mut cfg = plugin_cfg(name, &fixtures().kitchen);
        cfg.capabilities = Some(gateway::config::PluginCapabilities {
            kv_namespace: Some("counters".into()),
            ..Default::default()
        });
        let p = load(cfg, host).await;
        filters.push(filter(&p, "r", "tag=s").await);
    }
    // The get/set/CAS rules hold on Redis as on the local store.
    let (_, req, _ctx) = request_headers(&filters[0], &[("x-test", "shared")], true).await;
    assert_eq!(
        hv(&req.headers, "x-shared"),
        "missing=None/None,v1=v1,mismatch=CasMismatch,good=ok,v2=v2,cas_advanced=true"
    );
    // The other process reads what the first wrote (the kitchen's last write: v2).
    let h = &hosts[1];
    let (v, _) = h
        .stores
        .get(&h.shared, "counters", "shared:s")
        .await
        .unwrap()
        .expect("written through the first host");
    assert_eq!(&v[..], b"v2");
    // And the rules hold through the second one too.
    let (_, req, _ctx) = request_headers(&filters[1], &[("x-test", "shared")], true).await;
    assert_eq!(
        hv(&req.headers, "x-shared"),
        "missing=None/None,v1=v1,mismatch=CasMismatch,good=ok,v2=v2,cas_advanced=true"
    );
    // The kitchen's increment needs the key to exist (a CAS token of 0 would be a blind write).
    let h = &hosts[0];
    let zero = bytes::Bytes::from_static(b"0");
    h.stores
        .set(&h.shared, "counters", "cas-race", zero, None)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let f = filters[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let (v, req, _ctx) = request_headers(&f, &[("x-test", "cas-race")], true).await;
            assert!(matches!(v, Ok(Verdict::Continue)), "{v:?}");
            hv(&req.headers, "x-cas-retries").parse::<u32>().unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let h = &hosts[1];
    let (v, _) = h
        .stores
        .get(&h.shared, "counters", "cas-race")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&v[..], b"40", "no increment lost");
    // Nothing of it is in either process's own memory.
    assert!(hosts.iter().all(|h| shared(h, "cas-race").is_empty()));
}

#[tokio::test]
async fn queues_deliver_on_queue_ready() {
    let host = host().await;
    let p = load(plugin_cfg("queue", &fixtures().kitchen), host.clone()).await;
    let f = filter(&p, "r", "tag=qq").await;
    let (_, req, _ctx) =
        request_headers(&f, &[("x-test", "queue"), ("x-message", "hello")], true).await;
    assert_eq!(hv(&req.headers, "x-queue-result"), "ok,NotFound,NotFound");
    assert!(eventually(WAIT, async || shared(&host, "queue-last:qq") == "hello").await);
    // The host side can feed the queue too.
    let id = host.queues.resolve("", "q-qq").unwrap();
    host.queues
        .enqueue(id, bytes::Bytes::from_static(b"from-host"))
        .unwrap();
    assert!(eventually(WAIT, async || shared(&host, "queue-last:qq") == "from-host").await);
    assert!(eventually(WAIT, async || shared(&host, "queue-count:qq") == "2").await);
}

#[tokio::test]
async fn ticks_run_on_the_root_context_and_stop_with_the_filter() {
    let host = host().await;
    let p = load(plugin_cfg("ticker", &fixtures().kitchen), host.clone()).await;
    let f = filter(&p, "r", "tag=t;tick_ms=10;tick_callout=1").await;
    let ticks = || shared(&host, "ticks:t").parse::<u32>().unwrap_or(0);
    assert!(eventually(WAIT, async || ticks() >= 3).await);
    // A callout made from on_tick is delivered to the root context (with the mock's answer).
    let answer = "mock mock /tick\n";
    assert!(eventually(WAIT, async || shared(&host, "tick-callout:t") == answer).await);
    drop(f);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let stopped = shared(&host, "ticks:t");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(shared(&host, "ticks:t"), stopped);
}

#[tokio::test]
async fn per_route_config_two_routes_one_plugin() {
    let p = load(plugin_cfg("per-route", &fixtures().kitchen), host().await).await;
    let fa = filter(&p, "route-a", "tag=alpha").await;
    let fb = filter(&p, "route-b", "tag=beta").await;
    let (_, ra, _c1) = request_headers(&fa, &[], true).await;
    let (_, rb, _c2) = request_headers(&fb, &[], true).await;
    assert_eq!(hv(&ra.headers, "x-seen-tag"), "alpha");
    assert_eq!(hv(&rb.headers, "x-seen-tag"), "beta");
}

#[tokio::test]
async fn response_phase_headers_status_and_on_log() {
    let host = host().await;
    let p = load(plugin_cfg("resp", &fixtures().kitchen), host.clone()).await;
    let f = filter(&p, "r", "tag=resp").await;
    let (_, _, mut ctx) = request_headers(&f, &[("x-test", "resp-status")], true).await;
    let mut resp = ResponseHead {
        status: http::StatusCode::OK,
        headers: Default::default(),
        upstream: None,
    };
    let v = ctx.on_response_headers(&mut resp, true).await;
    assert!(matches!(v, Ok(Verdict::Continue)));
    assert_eq!(hv(&resp.headers, "x-resp-status-seen"), "200");
    assert_eq!(hv(&resp.headers, "x-resp-code-prop"), "200");
    assert_eq!(resp.status, http::StatusCode::ACCEPTED);
    ctx.on_done();
    drop(ctx);
    assert!(eventually(WAIT, async || shared(&host, "logged:resp") == "1").await);
    // Reading response headers in the request phase is a wrong-phase call: BadArgument.
    let (_, req, _ctx) = request_headers(&f, &[("x-test", "wrong-phase")], true).await;
    assert_eq!(hv(&req.headers, "x-wrong-phase"), "2");
    let _ = FilterError::CpuLimit;
    let _ = Arc::clone(&f);
}
