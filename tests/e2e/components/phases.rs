//! Phase interest (WIT 0.1.5 `phases`): a component says from `init` which handlers it has, and the
//! gateway calls only those. Counted with the per-plugin call figures on `/metrics` (one count per
//! call the chain makes into a stage), never with timings.

use super::*;

/// `gateway_plugin_call_duration_seconds_count` of `plugin` on `route` in `phase`.
fn calls(m: &str, plugin: &str, route: &str, phase: &str) -> Option<f64> {
    metric(
        m,
        &format!(
            "gateway_plugin_call_duration_seconds_count{{plugin=\"{plugin}\",route=\"{route}\",phase=\"{phase}\"}}"
        ),
    )
}

/// The built-in `ip-restriction` (its SDK export has `on_request` only) is entered once per request,
/// bodies or not; the built-in `response-transformer` (`on_response` and `on_response_body`) only
/// in the response phases. The kitchen-sink fixture, exported with `export_filter!(Type)` (handlers
/// not known to the SDK), still gets every header phase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_is_entered_only_in_the_phases_it_implements() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin("kitchen", kitchen(), "    instance_mode: reuse\n")],
            &[
                Route::new("ip")
                    .prefix("/ip/")
                    .upstream("up")
                    .lines("    filters: [{plugin: ip-restriction, config: {allow: [\"127.0.0.0/8\", \"::1\"]}}]\n"),
                Route::new("rt").prefix("/rt/").upstream("up").lines(
                    "    filters: [{plugin: response-transformer, config: {add: {headers: {x-rt: \"yes\"}}}}]\n",
                ),
                route("k", "kitchen", "", ""),
            ],
        )
        .await;
    for _ in 0..3 {
        let (s, _, body) = get(&gw.url("/ip/x")).await;
        assert_eq!(s, 200, "{body}");
    }
    let req = http::Request::post(gw.url("/ip/upload"))
        .body(Full::new(Bytes::from_static(
            b"a body the filter has no handler for",
        )))
        .unwrap();
    let (s, _, body) = request(req).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        b.up.last().body,
        Bytes::from_static(b"a body the filter has no handler for")
    );
    for _ in 0..2 {
        let (s, h, body) = get(&gw.url("/rt/x")).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(hv(&h, "x-rt"), "yes");
    }
    // `phases.declare` outside `init` is refused with `wrong-phase` (and changes nothing).
    let (_, up) = run(&gw, &b, "/k/x", "phases-late", &[]).await;
    assert_eq!(hv(&up, "x-phases-late"), "wrong-phase");

    let m = gw.metrics().await;
    assert_eq!(
        calls(&m, "ip-restriction", "ip", "request_headers"),
        Some(4.0),
        "{m}"
    );
    assert_eq!(
        calls(&m, "ip-restriction", "ip", "request_body"),
        None,
        "{m}"
    );
    assert_eq!(
        calls(&m, "ip-restriction", "ip", "response_headers"),
        None,
        "{m}"
    );
    assert_eq!(
        calls(&m, "response-transformer", "rt", "request_headers"),
        None,
        "{m}"
    );
    assert_eq!(
        calls(&m, "response-transformer", "rt", "response_headers"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        calls(&m, "kitchen", "k", "request_headers"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        calls(&m, "kitchen", "k", "response_headers"),
        Some(1.0),
        "{m}"
    );
}

/// A component built against world 0.1.2 declares nothing (the interface did not exist): every
/// handler is called, as before 0.1.5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_world_component_still_gets_every_phase() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin(
                "old",
                &fixtures().world_0_1_2,
                "    capabilities: {kv_namespace: old}\n",
            )],
            &[route("old", "old", "", "")],
        )
        .await;
    for _ in 0..2 {
        let (s, h, body) = get(&gw.url("/old/x")).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(hv(&h, "x-world"), "0.1.2");
    }
    let m = gw.metrics().await;
    assert_eq!(calls(&m, "old", "old", "request_headers"), Some(2.0), "{m}");
    assert_eq!(
        calls(&m, "old", "old", "response_headers"),
        Some(2.0),
        "{m}"
    );
}
