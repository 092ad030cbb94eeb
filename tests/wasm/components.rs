//! Component plugins (the gateway's WIT world, written with `plugin-sdk`) through the `Filter` trait:
//! every host import, capabilities and their denials, bodies, both instance modes, isolation between
//! requests, and hostile components failing by policy while the next request succeeds.

use crate::support::*;
use bytes::Bytes;
use gateway::config::{self, Dur, InstanceMode, Size};
use gateway::filter::{Filter, FilterError, ResponseHead, Verdict};
use gateway::host::HostCore;
use gateway::wasm::{LoadedPlugin, PluginError};
use std::sync::Arc;
use std::time::Duration;

fn fixtures() -> &'static xtask::ComponentFixtures {
    xtask::component_fixtures().unwrap_or_else(|e| panic!("{e}"))
}

fn kitchen_cfg(mode: InstanceMode) -> config::Plugin {
    let mut cfg = plugin_cfg("kitchen", &fixtures().kitchen);
    cfg.instance_mode = Some(mode);
    cfg
}

fn granted(mut cfg: config::Plugin, upstreams: &[&str], ns: Option<&str>) -> config::Plugin {
    let caps = cfg.capabilities.get_or_insert_default();
    caps.upstreams = upstreams.iter().map(|u| u.to_string()).collect();
    caps.kv_namespace = ns.map(str::to_string);
    cfg
}

async fn kitchen(config: &str) -> (Arc<LoadedPlugin>, Arc<dyn Filter>, Arc<HostCore>) {
    let host = host().await;
    let cfg = granted(
        kitchen_cfg(InstanceMode::Fresh),
        &["mock", "nope"],
        Some("ns"),
    );
    let p = load(cfg, host.clone()).await;
    let f = filter(&p, "r", config).await;
    (p, f, host)
}

fn response(headers: &[(&str, &str)]) -> ResponseHead {
    let mut h = http::HeaderMap::new();
    for (k, v) in headers {
        h.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    ResponseHead {
        status: http::StatusCode::OK,
        headers: h,
        upstream: None,
    }
}

async fn test_headers(f: &Arc<dyn Filter>, test: &str, extra: &[(&str, &str)]) -> http::HeaderMap {
    let mut headers = vec![("x-test", test)];
    headers.extend_from_slice(extra);
    let (v, req, _ctx) = request_headers(f, &headers, true).await;
    assert!(matches!(v, Ok(Verdict::Continue)), "{v:?}");
    req.headers
}

#[tokio::test]
async fn loads_as_a_component_and_the_abi_must_match_the_file() {
    let host = host().await;
    let p = load(kitchen_cfg(InstanceMode::Fresh), host.clone()).await;
    assert_eq!(p.abi(), config::PluginAbi::Component);
    let mut cfg = kitchen_cfg(InstanceMode::Fresh);
    cfg.abi = Some(config::PluginAbi::ProxyWasm);
    let err = plugins()
        .load(&cfg, std::path::Path::new("/"), host)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, PluginError::Unsupported { .. }), "{err}");
}

#[tokio::test]
async fn request_handle_reads_and_changes_method_path_query_headers() {
    let (_p, f, _h) = kitchen("").await;
    let (v, req, _ctx) = request_headers(
        &f,
        &[
            ("x-test", "headers"),
            ("x-multi", "1"),
            ("x-multi", "2"),
            ("x-remove-me", "bye"),
        ],
        true,
    )
    .await;
    assert!(matches!(v, Ok(Verdict::Continue)), "{v:?}");
    let h = &req.headers;
    assert_eq!(hv(h, "x-method"), "GET");
    assert_eq!(hv(h, "x-path"), "/path");
    assert_eq!(hv(h, "x-query"), "q=1");
    assert_eq!(hv(h, "x-host"), "example.com");
    assert_eq!(hv(h, "x-multi"), "1|2");
    // host, x-test, x-multi x2, x-remove-me, x-served, x-method, x-path, x-query, x-host, x-multi
    // (replaced, so still two values -> one name) ... counted before x-count itself was set.
    assert!(!hv(h, "x-count").is_empty());
    let appended: Vec<_> = h.get_all("x-appended").iter().collect();
    assert_eq!(appended, ["a", "b"]);
    assert!(h.get("x-remove-me").is_none());
    assert_eq!(hv(h, "x-bad-name"), "invalid");
    assert_eq!(hv(h, "x-body-in-headers"), "true");
    assert_eq!(req.uri, "/rewritten?x=1");
    assert_eq!(hv(h, "x-bad-path"), "invalid");
}

#[tokio::test]
async fn local_response() {
    let (_p, f, _h) = kitchen("").await;
    let (v, _req, _ctx) = request_headers(&f, &[("x-test", "respond")], true).await;
    match v {
        Ok(Verdict::Respond(r)) => {
            assert_eq!(r.status, 418);
            assert_eq!(hv(&r.headers, "x-local"), "yes");
            assert_eq!(&r.body[..], b"i am a teapot\n");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn outbound_http_to_a_granted_upstream() {
    let (_p, f, _h) = kitchen("").await;
    let h = test_headers(&f, "http", &[]).await;
    assert_eq!(hv(&h, "x-call-status"), "200");
    assert_eq!(hv(&h, "x-call-body"), "allowed");
    assert_eq!(hv(&h, "x-call-echo"), "kitchen");
    let h = test_headers(&f, "http", &[("x-body", "deny")]).await;
    assert_eq!(hv(&h, "x-call-status"), "403");
    let h = test_headers(&f, "http", &[("x-call-path", "no-slash")]).await;
    assert_eq!(hv(&h, "x-call-error"), "bad-request");
}

#[tokio::test]
async fn outbound_http_is_denied_without_the_grant_or_the_upstream() {
    let (_p, f, _h) = kitchen("").await;
    let h = test_headers(&f, "http", &[("x-upstream", "elsewhere")]).await;
    assert_eq!(hv(&h, "x-call-error"), "denied");
    // Granted but not an upstream of the gateway.
    let h = test_headers(&f, "http", &[("x-upstream", "nope")]).await;
    assert_eq!(hv(&h, "x-call-error"), "denied");
    // No grants at all.
    let host = host().await;
    let p = load(kitchen_cfg(InstanceMode::Fresh), host).await;
    let f = filter(&p, "r", "").await;
    let h = test_headers(&f, "http", &[]).await;
    assert_eq!(hv(&h, "x-call-error"), "denied");
}

#[tokio::test]
async fn waiting_for_a_callout_is_not_cpu_time_and_timeouts_are_typed() {
    let host = host().await;
    let mut cfg = granted(kitchen_cfg(InstanceMode::Fresh), &["mock"], None);
    cfg.limits.cpu_per_call = Dur(Duration::from_millis(20));
    let p = load(cfg, host).await;
    let f = filter(&p, "r", "").await;
    let h = test_headers(
        &f,
        "http",
        &[("x-call-path", "/slow"), ("x-timeout-ms", "300")],
    )
    .await;
    assert_eq!(hv(&h, "x-call-error"), "timeout");
    assert_eq!(p.health().snapshot().cpu_limits, 0);
}

#[tokio::test]
async fn key_value_store_get_set_delete_increment_cas_ttl() {
    let (_p, f, host) = kitchen("").await;
    let h = test_headers(&f, "kv", &[("x-key", "k")]).await;
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
    // The namespace is the component's own (`wit:<ns>`), apart from Proxy-Wasm's.
    assert!(host.shared.get("wit:ns", "k:n").is_some());
    assert!(host.shared.get("", "k:n").is_none());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let h = test_headers(&f, "kv-read", &[("x-key", "k:ttl")]).await;
    assert_eq!(hv(&h, "x-kv-value"), "absent");
    let h = test_headers(&f, "kv-read", &[("x-key", "k:long")]).await;
    assert_eq!(hv(&h, "x-kv-value"), "long");
}

#[tokio::test]
async fn key_value_store_is_denied_without_a_namespace_and_namespaces_are_apart() {
    let host = host().await;
    let none = load(kitchen_cfg(InstanceMode::Fresh), host.clone()).await;
    let f = filter(&none, "r", "").await;
    let h = test_headers(&f, "kv", &[]).await;
    assert_eq!(hv(&h, "x-kv-error"), "denied");

    let mut a = granted(kitchen_cfg(InstanceMode::Fresh), &[], Some("a"));
    a.name = "a".into();
    let mut a2 = granted(kitchen_cfg(InstanceMode::Reuse), &[], Some("a"));
    a2.name = "a2".into();
    let mut b = granted(kitchen_cfg(InstanceMode::Fresh), &[], Some("b"));
    b.name = "b".into();
    let fa = filter(&*load(a, host.clone()).await, "r", "").await;
    let fa2 = filter(&*load(a2, host.clone()).await, "r", "").await;
    let fb = filter(&*load(b, host.clone()).await, "r", "").await;
    let incr = |f: Arc<dyn Filter>| async move {
        hv(
            &test_headers(&f, "kv-incr", &[("x-key", "n")]).await,
            "x-kv-value",
        )
    };
    assert_eq!(incr(fa.clone()).await, "1");
    assert_eq!(incr(fa2.clone()).await, "2");
    assert_eq!(incr(fb.clone()).await, "1");
    assert_eq!(incr(fa).await, "3");
}

#[tokio::test]
async fn concurrent_increments_lose_nothing() {
    let (_p, f, host) = kitchen("").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    let h = test_headers(&f, "kv-incr", &[("x-key", "c")]).await;
                    assert!(hv(&h, "x-kv-error").is_empty());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (raw, _) = host.shared.get("wit:ns", "c").unwrap();
    assert_eq!(&raw[..], b"200");
}

#[tokio::test]
async fn logs_metrics_clock_random_and_facts() {
    let (_p, f, host) = kitchen("").await;
    let h = test_headers(&f, "log", &[]).await;
    assert_eq!(hv(&h, "x-logged"), "5");
    assert!(["true", "false"].contains(&hv(&h, "x-debug-enabled").as_str()));

    let h = test_headers(&f, "metrics", &[]).await;
    assert_eq!(hv(&h, "x-metric-clash"), "invalid");
    let mut e = gateway::metrics::Exposition::default();
    host.metrics.expose(&mut e);
    let out = e.render();
    assert!(
        out.contains("plugin_kitchen_requests_total{plugin=\"kitchen\"} 2\n"),
        "{out}"
    );
    assert!(
        out.contains("plugin_kitchen_level{plugin=\"kitchen\"} 4\n"),
        "{out}"
    );
    assert!(
        out.contains("plugin_kitchen_sizes_count{plugin=\"kitchen\"} 1\n"),
        "{out}"
    );

    let h = test_headers(&f, "clock", &[]).await;
    let now: u64 = hv(&h, "x-now-ms").parse().unwrap();
    let sys = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(sys.abs_diff(now) < 10_000, "{now} vs {sys}");
    assert_eq!(hv(&h, "x-monotonic"), "true");

    let h = test_headers(&f, "random", &[]).await;
    assert_eq!(hv(&h, "x-random-len"), "16");
    assert_eq!(
        hv(&h, "x-random-capped"),
        gateway::wasm::component::MAX_RANDOM_BYTES.to_string()
    );
    assert_eq!(hv(&h, "x-random-differ"), "true");

    let h = test_headers(&f, "facts", &[]).await;
    assert_eq!(hv(&h, "x-route"), "r");
    assert_eq!(hv(&h, "x-upstream"), "backend");
    assert_eq!(hv(&h, "x-client"), "10.1.2.3:4567");
    assert_eq!(hv(&h, "x-local"), "127.0.0.1:8080");
    assert_eq!(hv(&h, "x-scheme"), "http");
    assert_eq!(hv(&h, "x-protocol"), "1.1");
    assert_eq!(hv(&h, "x-request-id"), "42");
    assert_eq!(hv(&h, "x-tls"), "false");
}

#[tokio::test]
async fn whole_request_body_is_one_call_with_the_request_head_open_to_changes() {
    let (_p, f, _h) = kitchen("request-body=whole").await;
    let (v, mut req, mut ctx) = request_headers(&f, &[], false).await;
    assert!(matches!(v, Ok(Verdict::Continue)), "{v:?}");
    assert_eq!(ctx.request_body_mode(), gateway::filter::BodyMode::Whole);
    let mut whole = Bytes::from_static(b"abcd");
    assert!(matches!(
        ctx.on_request_body_whole(&mut req, &mut whole).await,
        Ok(Verdict::Continue)
    ));
    assert_eq!(&whole[..], b"ABCD|chunks=1");
    // The head lent to the body call is the live one: the header phase's edit is there, and the
    // body call's edit comes back.
    assert_eq!(hv(&req.headers, "x-served"), "1");
    assert_eq!(hv(&req.headers, "x-late"), "1");
    let mut resp = response(&[]);
    ctx.on_response_headers(&mut resp, true).await.unwrap();
    assert_eq!(hv(&resp.headers, "x-body-phase-set-header"), "ok");

    // A local answer from the whole body call.
    let (_, mut req, mut ctx) = request_headers(&f, &[], false).await;
    let mut body = Bytes::from_static(b"deny this");
    match ctx.on_request_body_whole(&mut req, &mut body).await {
        Ok(Verdict::Respond(r)) => {
            assert_eq!(r.status, 403);
            assert_eq!(hv(&r.headers, "x-denied-by"), "request-body");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn request_body_in_chunks() {
    let (_p, f, _h) = kitchen("request-body=chunks").await;
    let (_, _req, mut ctx) = request_headers(&f, &[], false).await;
    let mut a = Bytes::from_static(b"ab");
    assert!(matches!(
        ctx.on_request_body(&mut a, false).await,
        Ok(Verdict::Continue)
    ));
    assert_eq!(&a[..], b"AB");
    let mut b = Bytes::from_static(b"cd");
    ctx.on_request_body(&mut b, true).await.unwrap();
    assert_eq!(&b[..], b"CD|chunks=2");
    // In chunk mode the request head has gone upstream: the body calls cannot change it.
    let mut resp = response(&[]);
    ctx.on_response_headers(&mut resp, true).await.unwrap();
    assert_eq!(hv(&resp.headers, "x-body-phase-set-header"), "wrong-phase");
}

#[tokio::test]
async fn response_handle_status_headers_and_whole_body() {
    let (_p, f, _h) = kitchen("response-body=whole").await;
    let (_, _req, mut ctx) = request_headers(&f, &[("x-id", "A")], true).await;
    let mut resp = response(&[("server", "backend"), ("x-teapot", "1")]);
    assert!(matches!(
        ctx.on_response_headers(&mut resp, false).await,
        Ok(Verdict::Continue)
    ));
    assert_eq!(resp.status, 418);
    assert_eq!(hv(&resp.headers, "x-status-seen"), "200");
    assert_eq!(hv(&resp.headers, "x-id-echo"), "A");
    assert!(resp.headers.get("server").is_none());
    assert_eq!(ctx.response_body_mode(), gateway::filter::BodyMode::Whole);
    let mut whole = Bytes::from_static(b"hello world");
    ctx.on_response_body_whole(&mut resp, &mut whole)
        .await
        .unwrap();
    // The whole body call sees the live head (the header phase's edits) and may change it.
    assert_eq!(&whole[..], b"len=11;late=ok");
    assert_eq!(hv(&resp.headers, "x-late"), "1");
    assert_eq!(hv(&resp.headers, "x-id-echo"), "A");
    assert_eq!(resp.status, 418);

    let headers = [("x-resp-test", "late-status"), ("x-want-status", "299")];
    let (_, _req, mut ctx) = request_headers(&f, &headers, true).await;
    let mut resp = response(&[]);
    ctx.on_response_headers(&mut resp, false).await.unwrap();
    // (`late-status` is not `edit`: the header phase leaves the status alone.)
    assert_eq!(resp.status, 200);
    let mut whole = Bytes::from_static(b"abc");
    ctx.on_response_body_whole(&mut resp, &mut whole)
        .await
        .unwrap();
    assert_eq!(&whole[..], b"len=3;late=ok;status=ok");
    assert_eq!(resp.status, 299);

    let (_, _req, mut ctx) = request_headers(&f, &[], true).await;
    let mut resp = response(&[]);
    ctx.on_response_headers(&mut resp, false).await.unwrap();
    let mut body = Bytes::from_static(b"deny this");
    match ctx.on_response_body_whole(&mut resp, &mut body).await {
        Ok(Verdict::Respond(r)) => {
            assert_eq!(r.status, 403);
            assert_eq!(hv(&r.headers, "x-denied-by"), "response-body");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn init_errors_reject_the_config_with_the_plugins_message() {
    let host = host().await;
    let p = load(kitchen_cfg(InstanceMode::Fresh), host.clone()).await;
    let err = p
        .filter(
            "r",
            Bytes::from_static(b"reject"),
            config::FailurePolicy::Closed,
        )
        .await
        .err()
        .unwrap();
    match err {
        PluginError::InitRejected { route, message, .. } => {
            assert_eq!(route, "r");
            assert_eq!(message, "rejected: this config asks to be rejected");
        }
        other => panic!("{other}"),
    }
    let err = p
        .filter(
            "r",
            Bytes::from_static(b"request-body=sideways"),
            config::FailurePolicy::Closed,
        )
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("unknown body mode `sideways`"),
        "{err}"
    );
    let hostile = load(plugin_cfg("hostile", &fixtures().hostile), host).await;
    let err = hostile
        .filter(
            "r",
            Bytes::from_static(b"trap"),
            config::FailurePolicy::Closed,
        )
        .await
        .err()
        .unwrap();
    assert!(matches!(err, PluginError::ConfigureFailed { .. }), "{err}");
}

#[tokio::test]
async fn fresh_mode_gives_every_request_a_new_instance() {
    let (p, f, _h) = kitchen("").await;
    for _ in 0..3 {
        let (_, req, _ctx) = request_headers(&f, &[], true).await;
        assert_eq!(hv(&req.headers, "x-served"), "1");
    }
    // One for `init` at load time, one per request.
    assert_eq!(p.health().snapshot().instances_created, 4);
}

#[tokio::test]
async fn reuse_mode_serves_requests_one_after_another_on_a_warm_instance() {
    let host = host().await;
    let p = load(kitchen_cfg(InstanceMode::Reuse), host).await;
    let f = p
        .component_filter("r", Bytes::new(), config::FailurePolicy::Closed)
        .await
        .unwrap();
    assert_eq!(f.warm_instances(), 1);
    let f: Arc<dyn Filter> = f;
    for n in 1..=3 {
        let (_, req, mut ctx) = request_headers(&f, &[], true).await;
        assert_eq!(hv(&req.headers, "x-served"), n.to_string());
        ctx.on_done();
    }
    assert_eq!(p.health().snapshot().instances_created, 1);
}

/// A request dropped in the middle of a guest call (here: waiting on a slow callout, as when the
/// client goes away) leaves its warm instance half-way through the call: it is thrown away, and the
/// next request gets a new instance.
#[tokio::test]
async fn a_reuse_instance_cancelled_mid_call_is_not_reused() {
    let host = host().await;
    let p = load(
        granted(kitchen_cfg(InstanceMode::Reuse), &["mock"], None),
        host,
    )
    .await;
    let f: Arc<dyn Filter> = p
        .component_filter("r", Bytes::new(), config::FailurePolicy::Closed)
        .await
        .unwrap();
    let (_, req, mut ctx) = request_headers(&f, &[], true).await;
    assert_eq!(hv(&req.headers, "x-served"), "1");
    ctx.on_done();
    drop(ctx);
    let mut ctx = f.new_ctx(&info()).unwrap();
    let mut req = request(&[
        ("x-test", "http"),
        ("x-call-path", "/slow"),
        ("x-timeout-ms", "5000"),
    ]);
    let cut = tokio::time::timeout(
        Duration::from_millis(200),
        ctx.on_request_headers(&mut req, true),
    )
    .await;
    assert!(cut.is_err(), "the callout was still waiting");
    drop(ctx);
    let (_, req, mut ctx) = request_headers(&f, &[], true).await;
    assert_eq!(
        hv(&req.headers, "x-served"),
        "1",
        "a new instance, not the one cut mid-call"
    );
    ctx.on_done();
    assert_eq!(p.health().snapshot().instances_created, 2);
}

/// Two requests in flight on one filter, their phases interleaved: each sees only its own data.
async fn interleaved_requests_do_not_see_each_other(mode: InstanceMode) {
    let host = host().await;
    let p = load(granted(kitchen_cfg(mode), &["mock"], None), host).await;
    let f = filter(&p, "r", "").await;
    let (va, _, mut a) = request_headers(&f, &[("x-id", "A"), ("x-test", "http")], true).await;
    let (vb, _, mut b) = request_headers(&f, &[("x-id", "B"), ("x-test", "http")], true).await;
    assert!(va.is_ok() && vb.is_ok());
    let mut ra = response(&[]);
    let mut rb = response(&[]);
    let (x, y) = tokio::join!(
        a.on_response_headers(&mut ra, true),
        b.on_response_headers(&mut rb, true)
    );
    x.unwrap();
    y.unwrap();
    assert_eq!(hv(&ra.headers, "x-id-echo"), "A");
    assert_eq!(hv(&rb.headers, "x-id-echo"), "B");
    drop((a, b));
    // Concurrent requests through real tasks, with callouts that suspend them mid-call.
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let f = f.clone();
            tokio::spawn(async move {
                let id = format!("id-{i}");
                let (v, req, mut ctx) =
                    request_headers(&f, &[("x-id", &id), ("x-test", "http")], true).await;
                assert!(v.is_ok());
                assert_eq!(hv(&req.headers, "x-call-body"), "allowed");
                let mut resp = response(&[]);
                ctx.on_response_headers(&mut resp, true).await.unwrap();
                assert_eq!(hv(&resp.headers, "x-id-echo"), id);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn concurrent_requests_are_isolated_in_fresh_mode() {
    interleaved_requests_do_not_see_each_other(InstanceMode::Fresh).await;
}

#[tokio::test]
async fn concurrent_requests_are_isolated_in_reuse_mode() {
    interleaved_requests_do_not_see_each_other(InstanceMode::Reuse).await;
}

#[tokio::test]
async fn instance_limit_makes_the_filter_unavailable() {
    let host = host().await;
    let mut cfg = kitchen_cfg(InstanceMode::Fresh);
    cfg.limits.instances = 1;
    let p = load(cfg, host).await;
    let f = filter(&p, "r", "").await;
    let first = f.new_ctx(&info()).unwrap();
    assert!(matches!(
        f.new_ctx(&info()).err(),
        Some(FilterError::Unavailable(_))
    ));
    drop(first);
    assert!(f.new_ctx(&info()).is_ok());
}

/// The hostile component: with `fiber`, its build that imports a call that can wait (called on a
/// fiber), else the one that imports none (called without a fiber). Which path it is on is
/// asserted, so that a build whose imports changed cannot test one path twice.
async fn hostile(fiber: bool, mode: InstanceMode) -> (Arc<LoadedPlugin>, Arc<dyn Filter>) {
    let path = match fiber {
        true => &fixtures().hostile_fiber,
        false => &fixtures().hostile,
    };
    let mut cfg = plugin_cfg("hostile", path);
    cfg.instance_mode = Some(mode);
    // Roomy enough that the memory hog reaches the memory cap first on a loaded machine (the CPU
    // limit counts wall-clock epoch ticks).
    cfg.limits.cpu_per_call = Dur(Duration::from_millis(250));
    cfg.limits.memory = Size(16 << 20);
    let p = load(cfg, host().await).await;
    assert_eq!(p.on_fiber(), fiber, "{}", path.display());
    let f = filter(&p, "r", "").await;
    (p, f)
}

async fn next_request_succeeds(f: &Arc<dyn Filter>) {
    let (v, req, _ctx) = request_headers(f, &[], true).await;
    assert!(matches!(v, Ok(Verdict::Continue)), "{v:?}");
    assert_eq!(hv(&req.headers, "x-hostile-ok"), "1");
}

async fn hostile_fails_by_policy(fiber: bool, mode: InstanceMode) {
    let (p, f) = hostile(fiber, mode).await;
    next_request_succeeds(&f).await;

    let (v, _, mut ctx) = request_headers(&f, &[("x-hostile", "trap")], true).await;
    assert!(matches!(v, Err(FilterError::Trap(_))), "{v:?}");
    // The failed request's later phases do not run on a broken instance.
    let mut resp = response(&[]);
    assert!(matches!(
        ctx.on_response_headers(&mut resp, true).await,
        Err(FilterError::Unavailable(_))
    ));
    drop(ctx);
    next_request_succeeds(&f).await;

    let started = std::time::Instant::now();
    let (v, _, _ctx) = request_headers(&f, &[("x-hostile", "loop")], true).await;
    assert!(matches!(v, Err(FilterError::CpuLimit)), "{v:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    next_request_succeeds(&f).await;

    let (v, _, _ctx) = request_headers(&f, &[("x-hostile", "memory")], true).await;
    assert!(matches!(v, Err(FilterError::MemoryLimit)), "{v:?}");
    next_request_succeeds(&f).await;

    let (v, _, _ctx) = request_headers(&f, &[("x-hostile", "recursion")], true).await;
    match v {
        Err(FilterError::Trap(msg)) => assert!(msg.contains("call stack exhausted"), "{msg}"),
        other => panic!("{other:?}"),
    }
    next_request_succeeds(&f).await;

    let (v, _, _ctx) = request_headers(&f, &[("x-hostile", "bad-status")], true).await;
    assert!(matches!(v, Err(FilterError::Abi(_))), "{v:?}");
    next_request_succeeds(&f).await;

    let h = p.health().snapshot();
    assert_eq!(h.traps, 3, "{h:?}");
    assert_eq!(h.cpu_limits, 1, "{h:?}");
    assert_eq!(h.memory_limits, 1, "{h:?}");
    assert_eq!(h.instances_discarded, 5, "{h:?}");
    assert_eq!(h.consecutive_failures, 0, "{h:?}");
}

#[tokio::test]
async fn hostile_components_fail_by_policy_in_fresh_mode() {
    hostile_fails_by_policy(false, InstanceMode::Fresh).await;
}

#[tokio::test]
async fn hostile_components_fail_by_policy_in_reuse_mode() {
    hostile_fails_by_policy(false, InstanceMode::Reuse).await;
}

/// The same misdeeds inside `call_async`: the CPU limit interrupts the fiber (an epoch deadline
/// whose callback credits only time waited on the host), the memory cap and the traps end the
/// call, and the recursion exhausts the Wasm stack limit, not the fiber's own stack.
#[tokio::test]
async fn hostile_components_on_a_fiber_fail_by_policy_in_fresh_mode() {
    hostile_fails_by_policy(true, InstanceMode::Fresh).await;
}

#[tokio::test]
async fn hostile_components_on_a_fiber_fail_by_policy_in_reuse_mode() {
    hostile_fails_by_policy(true, InstanceMode::Reuse).await;
}

#[tokio::test]
async fn only_components_that_import_a_call_that_can_wait_run_on_a_fiber() {
    let kitchen = load(kitchen_cfg(InstanceMode::Reuse), host().await).await;
    assert!(kitchen.on_fiber());
    // The hostile component's two builds (`hostile` asserts which path each is on): what they
    // print goes through the synchronous `wasi:io` stream calls without a fiber, through
    // wasmtime-wasi's own on one.
    for fiber in [false, true] {
        let (p, f) = hostile(fiber, InstanceMode::Reuse).await;
        let (v, req, ctx) = request_headers(&f, &[("x-hostile", "chatty")], true).await;
        assert!(matches!(v, Ok(Verdict::Continue)), "{v:?}");
        assert_eq!(hv(&req.headers, "x-hostile-ok"), "1");
        drop(ctx);
        next_request_succeeds(&f).await;
        assert_eq!(p.health().snapshot().instances_created, 1);
        // Only the fiber build has mode `kv` (the store call that puts it on a fiber); with no
        // namespace granted the call is denied, and the filter answers.
        let (v, req, _ctx) = request_headers(&f, &[("x-hostile", "kv")], true).await;
        match (fiber, v) {
            (true, Ok(Verdict::Respond(r))) => {
                assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"kv denied"[..]))
            }
            (false, Ok(Verdict::Continue)) => assert_eq!(hv(&req.headers, "x-hostile-ok"), "1"),
            (_, v) => panic!("fiber {fiber}: {v:?}"),
        }
    }
}

#[tokio::test]
async fn a_failed_warm_instance_is_replaced() {
    let (p, f) = hostile(false, InstanceMode::Reuse).await;
    let (_, _, ctx) = request_headers(&f, &[("x-hostile", "trap")], true).await;
    drop(ctx);
    next_request_succeeds(&f).await;
    next_request_succeeds(&f).await;
    // The init instance served until the trap; one replacement serves the rest.
    assert_eq!(p.health().snapshot().instances_created, 2);
}

#[tokio::test]
async fn the_rust_filter_template_builds_and_runs() {
    let path = xtask::rust_filter_example().unwrap_or_else(|e| panic!("{e}"));
    let host = host().await;
    let mut cfg = plugin_cfg("api-key", path);
    cfg.capabilities.get_or_insert_default().kv_namespace = Some("api-key".into());
    let p = load(cfg, host).await;
    let f = filter(&p, "r", "x-api-key").await;
    let (v, _, _ctx) = request_headers(&f, &[], true).await;
    match v {
        Ok(Verdict::Respond(r)) => assert_eq!(r.status, 401),
        other => panic!("{other:?}"),
    }
    for n in 1..=2 {
        let (v, req, mut ctx) = request_headers(&f, &[("x-api-key", "k1")], true).await;
        assert!(matches!(v, Ok(Verdict::Continue)), "{v:?}");
        assert_eq!(hv(&req.headers, "x-api-key-requests"), n.to_string());
        let mut resp = response(&[]);
        ctx.on_response_headers(&mut resp, true).await.unwrap();
        assert_eq!(hv(&resp.headers, "x-filtered-by"), "rust-filter");
    }
}
