//! Traffic split: a route's `split:` sends each request to one of several upstreams, by header or
//! cookie rules first, then by weight; the route's own settings apply to whichever was chosen; a
//! reload moves the share without failing a request in flight; errors name their line and field.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn pooled() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Upstreams `stable` and `canary` (one mock each) and a route `r` with `split` (indented 4 spaces).
fn split_config(stable: &MockUpstream, canary: &MockUpstream, route_lines: &str) -> String {
    GatewayConfig::new()
        .upstream(Upstream::new("stable").endpoint(stable.addr))
        .upstream(Upstream::new("canary").endpoint(canary.addr))
        .route(Route::new("r").lines(route_lines))
        .yaml()
}

fn weights(stable: u32, canary: u32) -> String {
    format!("    split:\n      weights:\n        - {{upstream: stable, weight: {stable}}}\n        - {{upstream: canary, weight: {canary}}}\n")
}

/// Sends `n` GETs over `tasks` pooled clients at once; every answer must be a 200. Returns how many
/// each upstream answered, by its `x-upstream`.
async fn spread(url: String, n: usize, tasks: usize) -> (usize, usize) {
    let (stable, canary) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut joins = Vec::new();
    for t in 0..tasks {
        let (url, stable, canary) = (url.clone(), stable.clone(), canary.clone());
        let count = n / tasks + usize::from(t < n % tasks);
        joins.push(tokio::spawn(async move {
            let client = pooled();
            for i in 0..count {
                let req = http::Request::get(format!("{url}/w/{t}/{i}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let (status, h, body) = request_via(&client, req).await;
                assert_eq!(status, 200, "{body}");
                match hv(&h, "x-upstream").as_str() {
                    "stable" => stable.fetch_add(1, Ordering::Relaxed),
                    "canary" => canary.fetch_add(1, Ordering::Relaxed),
                    other => panic!("answered by {other:?}"),
                };
            }
        }));
    }
    for j in joins {
        j.await.unwrap();
    }
    (
        stable.load(Ordering::Relaxed),
        canary.load(Ordering::Relaxed),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_80_20_over_2000_requests_stay_within_six_sigma() {
    let stable = MockUpstream::start("stable").await;
    let canary = MockUpstream::start("canary").await;
    let gw = TestGateway::start(&split_config(&stable, &canary, &weights(80, 20))).await;
    const N: usize = 2000;
    let (s, c) = spread(gw.url(""), N, 8).await;
    assert_eq!((s + c, stable.hits() + canary.hits()), (N, N));
    // Binomial(2000, 0.2): mean 400, sigma ~17.9; six sigma either side fails about once in 500
    // million runs.
    let (n, p) = (N as f64, 0.2);
    let (mean, sigma) = (n * p, (n * p * (1.0 - p)).sqrt());
    let (lo, hi) = (mean - 6.0 * sigma, mean + 6.0 * sigma);
    assert!(
        (lo..=hi).contains(&(c as f64)),
        "canary got {c} of {N}, want {lo:.0}..={hi:.0}"
    );
    // The upstreams' figures tell the split too.
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, "gateway_upstream_requests_total{upstream=\"canary\"}"),
        Some(c as f64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_and_cookie_rules_pick_before_the_weights() {
    let stable = MockUpstream::start("stable").await;
    let canary = MockUpstream::start("canary").await;
    // All weight on stable: only a rule reaches canary. A third rule sends `x-canary: 0` to stable
    // explicitly, before a regex rule that would take it.
    let rules = "      rules:\n        - {header: x-canary, exact: \"0\", upstream: stable}\n        - {header: X-Canary, regex: \"[0-9]\", upstream: canary}\n        - {cookie: canary, exact: \"1\", upstream: canary}\n";
    let gw = TestGateway::start(&split_config(&stable, &canary, &(weights(100, 0) + rules))).await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("x-canary", "1")], "canary"),
        (&[("x-canary", "7")], "canary"),
        (&[("x-canary", "0")], "stable"),
        (&[("x-canary", "yes")], "stable"),
        (&[("cookie", "session=abc; canary=1")], "canary"),
        (&[("cookie", "canary=1"), ("cookie", "other=2")], "canary"),
        (&[("cookie", "canary=0")], "stable"),
        (&[("cookie", "xcanary=1; canary_=1")], "stable"),
        // No header, no cookie: the weights decide.
        (&[], "stable"),
    ];
    for _ in 0..10 {
        for (headers, want) in cases {
            let (status, h, body) = get_with(&gw.url("/rule"), headers).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(hv(&h, "x-upstream"), *want, "{headers:?}");
        }
    }
    // The other way round: all weight on canary, and a missing header still falls to the weights.
    let gw = TestGateway::start(&split_config(&stable, &canary, &(weights(0, 100) + rules))).await;
    for _ in 0..20 {
        assert_eq!(hv(&get(&gw.url("/none")).await.1, "x-upstream"), "canary");
    }
    assert_eq!(
        hv(
            &get_with(&gw.url("/zero"), &[("x-canary", "0")]).await.1,
            "x-upstream"
        ),
        "stable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routes_rewrite_headers_and_timeout_apply_to_the_chosen_upstream() {
    let stable = MockUpstream::start("stable").await;
    let canary = MockUpstream::start("canary").await;
    let lines = weights(50, 50)
        + "      rules:\n        - {header: x-canary, present: true, upstream: canary}\n        - {header: x-stable, present: true, upstream: stable}\n"
        + "    match: {path: {prefix: /api}}\n    rewrite: {strip_prefix: /api}\n    request_headers: {set: {x-team: shop}}\n    timeout: 300ms\n";
    let gw = TestGateway::start(&split_config(&stable, &canary, &lines)).await;
    for (header, mock) in [("x-canary", &canary), ("x-stable", &stable)] {
        let (status, _, body) = get_with(&gw.url("/api/items?q=1"), &[(header, "1")]).await;
        assert_eq!(status, 200, "{body}");
        let seen = mock.last();
        assert_eq!(seen.uri, "/items?q=1");
        assert_eq!(hv(&seen.headers, "x-team"), "shop");
        // `/slow` answers after 3 s: the route's 300ms timeout ends it with a 504, whichever
        // upstream was chosen.
        let (status, _, body) = get_with(&gw.url("/api/slow"), &[(header, "1")]).await;
        assert_eq!(status, 504, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_from_100_0_to_0_100_moves_the_share_and_fails_no_request() {
    let stable = MockUpstream::start("stable").await;
    let canary = MockUpstream::start("canary").await;
    let fg = FileGateway::start(&split_config(&stable, &canary, &weights(100, 0))).await;
    let gw = &fg.gw;
    // Requests held at the upstream while the config changes: routed by the old weights, they
    // must end well.
    let held: Vec<_> = (0..4)
        .map(|i| {
            let url = gw.url(&format!("/delay/400?held={i}"));
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    let at_upstream = eventually(Duration::from_secs(10), || async { stable.hits() >= 4 }).await;
    assert!(at_upstream, "the held requests reached the upstream");
    // Traffic runs all along: two clients keep sending until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let runners: Vec<_> = (0..2)
        .map(|t| {
            let (url, stop) = (gw.url(""), stop.clone());
            tokio::spawn(async move {
                let client = pooled();
                let mut answers = Vec::new();
                let mut i = 0;
                // The last request starts after `stop`, which is set after the reload.
                loop {
                    let stopping = stop.load(Ordering::Relaxed);
                    let req = http::Request::get(format!("{url}/run/{t}/{i}"))
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let (status, h, body) = request_via(&client, req).await;
                    answers.push((status, hv(&h, "x-upstream"), body));
                    i += 1;
                    if stopping && answers.len() >= 20 {
                        return answers;
                    }
                }
            })
        })
        .collect();
    fg.write(&split_config(&stable, &canary, &weights(0, 100)));
    let (s, _, body) = admin_call(gw.admin, "POST", "/reload", "").await;
    assert_eq!(s, 200, "{body}");
    // Once the reload is acknowledged, every new request goes to canary.
    for i in 0..50 {
        let (status, h, body) = get(&gw.url(&format!("/after/{i}"))).await;
        assert_eq!(
            (status, hv(&h, "x-upstream")),
            (200, "canary".into()),
            "{body}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut moved = 0;
    for r in runners {
        let answers = r.await.unwrap();
        for (status, upstream, body) in &answers {
            assert_eq!(*status, 200, "{upstream}: {body}");
        }
        // Each client saw stable, then canary, never stable again after its first canary.
        let first_canary = answers.iter().position(|a| a.1 == "canary");
        let first_canary = first_canary.expect("the share moved for every client");
        assert!(
            answers[first_canary..].iter().all(|a| a.1 == "canary"),
            "{:?}",
            answers.iter().map(|a| &a.1).collect::<Vec<_>>()
        );
        moved += 1;
    }
    assert_eq!(moved, 2);
    for h in held {
        let (status, headers, body) = h.await.unwrap();
        assert_eq!(
            (status, hv(&headers, "x-upstream")),
            (200, "stable".into()),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_splits_are_refused_at_their_line_and_field() {
    let up = "upstreams:\n  - name: a\n    endpoints: [127.0.0.1:1]\n  - name: b\n    endpoints: [127.0.0.1:2]\n";
    let cases = [
        (
            "    split:\n      weights:\n        - {upstream: a, weight: 1}\n        - upstream: nope\n          weight: 1\n",
            "- upstream: nope",
            11,
            "routes[0].split.weights[1].upstream: unknown upstream `nope`",
        ),
        (
            "    split:\n      weights:\n        - {upstream: a, weight: 0}\n        - {upstream: b, weight: 0}\n",
            "weights:",
            7,
            "routes[0].split.weights: the weights add up to 0",
        ),
        (
            "    split:\n      rules:\n        - header: x-canary\n          exact: \"1\"\n          upstream: gone\n      weights: [{upstream: a, weight: 1}]\n",
            "upstream: gone",
            11,
            "routes[0].split.rules[0].upstream: unknown upstream `gone`",
        ),
        (
            "    split:\n      rules:\n        - {header: x-canary, upstream: b}\n      weights: [{upstream: a, weight: 1}]\n",
            "- {header: x-canary, upstream: b}",
            11,
            "routes[0].split.rules[0]: write exactly one of `exact`, `regex` or `present`",
        ),
        (
            "    upstream: a\n    split:\n      weights: [{upstream: a, weight: 1}]\n",
            "- name: r",
            5,
            "routes[0].name: route `r` needs exactly one of `upstream`, `split`",
        ),
        (
            "    split:\n      weights: [{upstream: a, weight: 1}]\n      rules: [{header: \"bad header\", exact: x, upstream: b}]\n",
            "upstream: b}]",
            16,
            "routes[0].split.rules[0].header: `bad header` is not a header name",
        ),
    ];
    for (lines, end, col, want) in cases {
        let yaml = format!("{up}routes:\n  - name: r\n{lines}");
        let err = refused(&yaml).await;
        let line = line_ending(&yaml, end);
        let want = format!("test.yaml:{line}:{col}: {want}");
        assert!(err.contains(&want), "want {want}\n got {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_names_the_upstream_each_request_went_to() {
    let stable = MockUpstream::start("stable").await;
    let canary = MockUpstream::start("canary").await;
    let yaml = split_config(
        &stable,
        &canary,
        &(weights(1, 0) + "      rules: [{header: x-canary, present: true, upstream: canary}]\n"),
    ) + "server:\n  log_format: json\n";
    let gw = GatewayProcess::start_with_log(&yaml, "access=info").await;
    assert_eq!(get(&gw.url("/plain")).await.0, 200);
    assert_eq!(
        get_with(&gw.url("/flagged"), &[("x-canary", "1")]).await.0,
        200
    );
    let access = || -> Vec<serde_json::Value> {
        gw.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|v: &serde_json::Value| v["target"] == "access")
            .collect()
    };
    let logged = eventually(Duration::from_secs(10), || async { access().len() == 2 }).await;
    assert!(logged, "{:?}", gw.log.lock().unwrap());
    let by_path = |p: &str| {
        let lines = access();
        let l = lines.iter().find(|l| l["path"] == p).expect("a line");
        (l["upstream"].clone(), l["endpoint"].clone())
    };
    assert_eq!(
        by_path("/plain"),
        ("stable".into(), stable.addr.to_string().into())
    );
    assert_eq!(
        by_path("/flagged"),
        ("canary".into(), canary.addr.to_string().into())
    );
}
