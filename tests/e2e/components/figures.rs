//! Per-plugin figures on `/metrics` and `/plugins`: call durations by plugin, route and phase,
//! instance counts, peak linear memory, traps and limit hits.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_plugin_figures_are_on_metrics_and_plugins() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[
                // Warm instances stay between requests: the instance gauge has something to show.
                plugin("kitchen", kitchen(), "    instance_mode: reuse\n"),
                plugin(
                    "hostile",
                    &fixtures().hostile,
                    "    limits: {memory: 16MiB, cpu_per_call: 250ms}\n",
                ),
            ],
            &[
                route("r", "kitchen", "request-body=whole", ""),
                route("s", "kitchen", "", ""),
                route("h", "hostile", "", ""),
            ],
        )
        .await;
    for _ in 0..3 {
        let req = http::Request::post(gw.url("/r/x"))
            .header("x-test", "none")
            .body(Full::new(Bytes::from_static(b"a body")))
            .unwrap();
        let (s, _, body) = request(req).await;
        assert_eq!(s, 200, "{body}");
    }
    let (s, _, _) = get_with(&gw.url("/s/x"), &[("x-test", "none")]).await;
    assert_eq!(s, 200);
    for misdeed in ["trap", "memory"] {
        let (s, _, _) = get_with(&gw.url("/h/x"), &[("x-hostile", misdeed)]).await;
        assert!(s >= 500, "{misdeed}: {s}");
    }
    let m = gw.metrics().await;
    let count = |route: &str, phase: &str| plugin_calls(&m, "kitchen", route, phase);
    // One call per request and phase, by route; a phase the filter asked for shows, one it did
    // not ask for does not.
    assert_eq!(count("r", "request_headers"), Some(3.0), "{m}");
    assert_eq!(count("r", "request_body"), Some(3.0), "{m}");
    assert_eq!(count("r", "response_headers"), Some(3.0), "{m}");
    assert_eq!(count("s", "request_headers"), Some(1.0), "{m}");
    assert_eq!(count("s", "request_body"), None, "{m}");
    assert!(
        m.contains("gateway_plugin_call_duration_seconds_bucket{plugin=\"kitchen\",route=\"r\",phase=\"request_headers\",le=\"+Inf\"} 3"),
        "{m}"
    );
    let sum = metric(
        &m,
        "gateway_plugin_call_duration_seconds_sum{plugin=\"kitchen\",route=\"r\",phase=\"request_headers\"}",
    )
    .unwrap();
    assert!(sum > 0.0, "{sum}");
    assert!(
        metric(&m, "gateway_plugin_instances{plugin=\"kitchen\"}").is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "gateway_plugin_requests_in_flight{plugin=\"kitchen\"}"),
        Some(0.0)
    );
    assert!(
        metric(
            &m,
            "gateway_plugin_instances_created_total{plugin=\"kitchen\"}"
        )
        .unwrap()
            >= 1.0
    );
    let peak = metric(&m, "gateway_plugin_memory_peak_bytes{plugin=\"kitchen\"}").unwrap();
    assert!(peak >= 65536.0, "at least one Wasm page: {peak}");
    // The hog grew up to its limit and no further.
    let hog = metric(&m, "gateway_plugin_memory_peak_bytes{plugin=\"hostile\"}").unwrap();
    assert!(hog <= 16.0 * 1024.0 * 1024.0, "{hog}");
    assert_eq!(
        metric(&m, "gateway_plugin_traps_total{plugin=\"hostile\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "gateway_plugin_memory_limit_total{plugin=\"hostile\"}"),
        Some(1.0),
        "{m}"
    );
    // The same on /plugins.
    let (s, _, body) = admin_call(gw.admin, "GET", "/plugins", "").await;
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let find = |name: &str| {
        v.as_array()
            .or_else(|| v["plugins"].as_array())
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {body}"))
    };
    let k = find("kitchen");
    assert_eq!(
        k["calls_by_route"]["r"]["request_headers"]["calls"], 3,
        "{k}"
    );
    assert_eq!(k["calls_by_route"]["r"]["request_body"]["calls"], 3, "{k}");
    assert_eq!(
        k["calls_by_route"]["s"]["request_headers"]["calls"], 1,
        "{k}"
    );
    assert!(
        k["calls_by_route"]["r"]["request_headers"]["seconds"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(k["memory_peak_bytes"].as_u64().unwrap() >= 65536, "{k}");
    assert_eq!(k["traps"], 0);
    let h = find("hostile");
    assert_eq!(
        (h["traps"].as_u64(), h["memory_limits"].as_u64()),
        (Some(1), Some(1)),
        "{h}"
    );
    assert_eq!(h["cpu_limits"], 0);
}
