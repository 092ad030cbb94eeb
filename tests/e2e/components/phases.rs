//! Phase interest (WIT 0.1.5 `phases`): a component says from `init` which handlers it has, and the
//! gateway calls only those. Counted with the per-plugin call figures on `/metrics` (one count per
//! call the chain makes into a stage), never with timings.

use super::*;

use crate::harness::plugin_calls as calls;

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
    // `phases.declare` outside `init` is refused with `wrong-phase`, and changes nothing: the request
    // that asked (for its request phase only) still has its response phase, and the next request is
    // served by the same instance (the second it serves) with both head phases.
    let ((_, h, _), up) = run(&gw, &b, "/k/x", "phases-late", &[]).await;
    assert_eq!(hv(&up, "x-phases-late"), "wrong-phase");
    assert_eq!(hv(&up, "x-served"), "1");
    assert_eq!(hv(&h, "x-status-seen"), "200", "{h:?}");
    let ((_, h, _), up) = run(&gw, &b, "/k/x", "none", &[]).await;
    assert_eq!(hv(&up, "x-served"), "2");
    assert_eq!(hv(&h, "x-status-seen"), "200", "{h:?}");

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
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        calls(&m, "kitchen", "k", "response_headers"),
        Some(2.0),
        "{m}"
    );
}

/// A component built against world 0.1.2 declares nothing (the interface did not exist): every
/// handler is called, as before 0.1.5, the body handlers too when `init` asks for bodies.
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
            &[
                route("old", "old", "", ""),
                route("oldb", "old", "bodies", ""),
            ],
        )
        .await;
    for _ in 0..2 {
        let (s, h, body) = get(&gw.url("/old/x")).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(hv(&h, "x-world"), "0.1.2");
    }
    let req = http::Request::post(gw.url("/oldb/echo"))
        .body(Full::new(Bytes::from_static(b"abc")))
        .unwrap();
    let (s, h, body) = request(req).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(hv(&h, "x-world"), "0.1.2");
    assert_eq!(b.up.last().body, Bytes::from_static(b"abc|0.1.2"));
    assert_eq!(body, "abc|0.1.2|0.1.2");
    let m = gw.metrics().await;
    assert_eq!(calls(&m, "old", "old", "request_headers"), Some(2.0), "{m}");
    assert_eq!(
        calls(&m, "old", "old", "response_headers"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(calls(&m, "old", "old", "request_body"), None, "{m}");
    for phase in [
        "request_headers",
        "request_body",
        "response_headers",
        "response_body",
    ] {
        assert!(
            calls(&m, "old", "oldb", phase).is_some_and(|n| n >= 1.0),
            "{phase}: {m}"
        );
    }
}

/// A filter with body handlers only (exported in the `export_filter! { impl .. }` form, so it
/// declares no head phase) is never entered for a head, and still reads the head of its direction
/// in its body calls: the request's method, path, query and headers, the response's status and
/// headers; in chunks and whole, request after request on one reused instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_with_body_handlers_only_reads_the_heads_in_them() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin(
                "body",
                &fixtures().body_only,
                "    instance_mode: reuse\n",
            )],
            &[
                route("bc", "body", "chunks", ""),
                route("bw", "body", "whole", ""),
            ],
        )
        .await;
    for (route, n) in [("bc", 1), ("bc", 2), ("bw", 3)] {
        let probe = format!("p{n}");
        let req = http::Request::post(gw.url(&format!("/{route}/echo?q={n}")))
            .header("content-type", "text/plain")
            .header("x-probe", &probe)
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        let (s, h, body) = request(req).await;
        assert_eq!(s, 200, "{body}");
        let sent = String::from_utf8(b.up.last().body.to_vec()).unwrap();
        let want =
            format!("hello\nreq: POST /{route}/echo q={n} ct=text/plain probe={probe} headers=");
        assert!(sent.starts_with(&want), "{route} {n}: {sent:?}");
        assert!(!sent.ends_with("headers=0"), "{route} {n}: {sent:?}");
        let rest = body
            .strip_prefix(&sent)
            .unwrap_or_else(|| panic!("{body:?}"));
        assert!(
            rest.starts_with("\nresp: 200 up headers="),
            "{route} {n}: {body:?}"
        );
        assert!(!rest.ends_with("headers=0"), "{route} {n}: {body:?}");
        assert_eq!(hv(&h, "x-upstream"), "up");
    }
    let m = gw.metrics().await;
    for route in ["bc", "bw"] {
        assert_eq!(calls(&m, "body", route, "request_headers"), None, "{m}");
        assert_eq!(calls(&m, "body", route, "response_headers"), None, "{m}");
        assert!(calls(&m, "body", route, "request_body").is_some(), "{m}");
        assert!(calls(&m, "body", route, "response_body").is_some(), "{m}");
    }
}
