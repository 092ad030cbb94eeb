//! HTTP callouts: pause, the callout's response, resume; denial; timeout; bad upstreams.

use crate::support::*;
use gateway::filter::Verdict;

/// Loads the kitchen-sink fixture as `cfg` and runs the request phase of its `callout` test: the
/// verdict and the request head the filter left.
async fn ask_callout(
    cfg: gateway::config::Plugin,
) -> (
    Result<Verdict, gateway::filter::FilterError>,
    gateway::filter::RequestHead,
) {
    let p = load(cfg, host().await).await;
    let f = filter(&p, "r", "").await;
    let (v, req, _ctx) = request_headers(
        &f,
        &[("x-test", "callout"), ("x-callout-body", "please")],
        true,
    )
    .await;
    (v, req)
}

#[tokio::test]
async fn pause_callout_resume() {
    let (v, req) = ask_callout(plugin_cfg("callout", &fixtures().kitchen)).await;
    assert!(matches!(v, Ok(Verdict::Continue)), "{v:?}");
    assert_eq!(hv(&req.headers, "x-callout-status"), "200");
    assert_eq!(hv(&req.headers, "x-callout-body"), "allowed");
    assert_eq!(hv(&req.headers, "x-callout-echo"), "kitchen");
    assert_eq!(hv(&req.headers, "x-callout-code"), "0");
}

#[tokio::test]
async fn callout_response_can_deny_locally() {
    let p = load(
        plugin_cfg("callout-deny", &fixtures().kitchen),
        host().await,
    )
    .await;
    let f = filter(&p, "r", "").await;
    let (v, _, _ctx) = request_headers(
        &f,
        &[("x-test", "callout"), ("x-callout-body", "deny")],
        true,
    )
    .await;
    let Ok(Verdict::Respond(local)) = v else {
        panic!("{v:?}")
    };
    assert_eq!(local.status, 403);
    assert_eq!(hv(&local.headers, "x-denied-by"), "callout");
    assert_eq!(&local.body[..], b"forbidden");
}

#[tokio::test]
async fn callout_timeout_is_delivered_as_a_failure() {
    let p = load(
        plugin_cfg("callout-slow", &fixtures().kitchen),
        host().await,
    )
    .await;
    let f = filter(&p, "r", "").await;
    let started = std::time::Instant::now();
    let (v, _, _ctx) = request_headers(&f, &[("x-test", "callout-slow")], true).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let Ok(Verdict::Respond(local)) = v else {
        panic!("{v:?}")
    };
    assert_eq!(local.status, 504);
    assert_eq!(hv(&local.headers, "x-status-code"), "11");
    assert_eq!(hv(&local.headers, "x-status-message"), "timeout");
}

#[tokio::test]
async fn callout_to_unknown_upstream_or_without_pseudo_headers_is_bad_argument() {
    let p = load(plugin_cfg("callout-bad", &fixtures().kitchen), host().await).await;
    let f = filter(&p, "r", "").await;
    let (v, req, _ctx) = request_headers(&f, &[("x-test", "callout-unknown")], true).await;
    assert!(matches!(v, Ok(Verdict::Continue)));
    assert_eq!(
        hv(&req.headers, "x-callout-error"),
        "BadArgument,BadArgument"
    );
}

#[tokio::test]
async fn local_responses_plain_and_grpc() {
    let p = load(plugin_cfg("local", &fixtures().kitchen), host().await).await;
    let f = filter(&p, "r", "").await;
    let (v, _, _ctx) = request_headers(&f, &[("x-test", "deny")], true).await;
    let Ok(Verdict::Respond(local)) = v else {
        panic!("{v:?}")
    };
    assert_eq!(local.status, 403);
    assert_eq!(hv(&local.headers, "x-denied"), "1");
    assert_eq!(&local.body[..], b"denied by kitchen");

    let (v, _, _ctx) = request_headers(&f, &[("x-test", "grpc-deny")], true).await;
    let Ok(Verdict::Respond(local)) = v else {
        panic!("{v:?}")
    };
    assert_eq!(local.status, 200);
    assert_eq!(hv(&local.headers, "content-type"), "application/grpc");
    assert_eq!(hv(&local.headers, "grpc-status"), "7");
    assert_eq!(hv(&local.headers, "grpc-message"), "no entry");
    assert_eq!(hv(&local.headers, "x-grpc-denied"), "1");

    // A local response from the response phase.
    let (_, _, mut ctx) = request_headers(&f, &[("x-test", "resp-deny")], true).await;
    let mut resp = gateway::filter::ResponseHead {
        status: http::StatusCode::OK,
        headers: Default::default(),
        upstream: None,
    };
    let v = ctx.on_response_headers(&mut resp, false).await;
    let Ok(Verdict::Respond(local)) = v else {
        panic!("{v:?}")
    };
    assert_eq!(local.status, 418);
}

#[tokio::test]
async fn with_capabilities_callouts_go_only_to_granted_upstreams() {
    let caps = |upstreams: &[&str]| {
        Some(gateway::config::PluginCapabilities {
            upstreams: upstreams.iter().map(|u| u.to_string()).collect(),
            kv_namespace: None,
            consumers: false,
        })
    };
    // Granted: the callout is sent and answered as without `capabilities`.
    let mut cfg = plugin_cfg("callout-granted", &fixtures().kitchen);
    cfg.capabilities = caps(&["mock"]);
    let (v, req) = ask_callout(cfg).await;
    assert!(matches!(v, Ok(Verdict::Continue)), "{v:?}");
    assert_eq!(hv(&req.headers, "x-callout-status"), "200");
    assert_eq!(hv(&req.headers, "x-callout-body"), "allowed");

    // Not granted (another upstream is, or none): refused at dispatch with the status of a bad
    // cluster name, so the plugin carries on without a response to wait for.
    for (name, granted) in [("callout-other", &["elsewhere"][..]), ("callout-none", &[])] {
        let mut cfg = plugin_cfg(name, &fixtures().kitchen);
        cfg.capabilities = caps(granted);
        let (v, req) = ask_callout(cfg).await;
        assert!(matches!(v, Ok(Verdict::Continue)), "{name}: {v:?}");
        assert_eq!(hv(&req.headers, "x-callout-error"), "BadArgument", "{name}");
        assert!(req.headers.get("x-callout-status").is_none(), "{name}");
    }
}
