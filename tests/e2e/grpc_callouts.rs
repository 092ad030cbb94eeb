//! gRPC callouts of Proxy-Wasm filters: an ext_authz-style filter written against the public Rust SDK
//! (`tests/fixtures/proxy-wasm/grpc-authz`) asks a real gRPC server (tonic) through the real gateway,
//! unary and streaming, over cleartext HTTP/2 and TLS; statuses, metadata, timeouts, cancel and
//! half-close behave as in Envoy.

use crate::harness::*;
use gateway_test_support::GrpcServer;
use std::time::Duration;

fn authz_plugin() -> Plugin {
    let f = xtask::proxy_wasm_fixtures().unwrap_or_else(|e| panic!("{e}"));
    Plugin::new("authz", &f.grpc_authz)
}

/// A gateway whose route `/` goes to `up` through the authz filter configured with `cluster` (the
/// gRPC upstream it asks), with these `upstreams` besides `up`.
async fn gateway(up: &MockUpstream, upstreams: &[Upstream], cluster: &str) -> TestGateway {
    let mut cfg = GatewayConfig::new()
        .plugin(authz_plugin())
        .upstream(Upstream::new("up").endpoint(up.addr));
    for u in upstreams {
        cfg = cfg.upstream(u.clone());
    }
    let cfg = cfg.route(Route::new("r").upstream("up").filter("authz", cluster));
    TestGateway::start(&cfg.yaml()).await
}

fn grpc_upstream(name: &str, addr: impl std::fmt::Display) -> Upstream {
    Upstream::new(name)
        .endpoint(addr)
        .lines("    protocol: http2\n    health: {passive: {consecutive_failures: 0}}\n")
}

/// What the upstream saw of the last request, header `name`.
fn last(up: &MockUpstream, name: &str) -> String {
    hv(&up.last().headers, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ext_authz_filter_follows_a_unary_grpc_answer() {
    let grpc = GrpcServer::start(None).await;
    let up = MockUpstream::start("up").await;
    let gw = gateway(&up, &[grpc_upstream("authz", grpc.addr)], "authz").await;
    let url = gw.url("/x");

    // Allowed: the answer goes upstream; the server saw a well-formed gRPC request.
    let (s, _, _) = get_with(&url, &[("x-verdict", "allow"), ("x-user", "ann")]).await;
    assert_eq!(s, 200);
    assert_eq!(last(&up, "x-authz"), "ok:ann");
    let call = grpc.calls().pop().unwrap();
    assert_eq!(call.path, "/test.Authz/Check");
    assert_eq!(call.authority, "authz");
    assert_eq!(call.content_type.as_deref(), Some("application/grpc"));
    assert_eq!(call.te.as_deref(), Some("trailers"));
    assert_eq!(call.grpc_timeout.as_deref(), Some("5000m"));
    assert_eq!(call.user.as_deref(), Some("ann"));

    // Denied: the filter answers with the status and message the service gave (`grpc-message` as
    // sent, percent-encoded, as Envoy hands it over).
    let hits = up.hits();
    let (s, h, body) = get_with(&url, &[("x-verdict", "deny")]).await;
    assert_eq!((s, body.as_str()), (403, "denied by authz\n"));
    assert_eq!(
        (hv(&h, "x-grpc-status"), hv(&h, "x-grpc-message")),
        ("7".into(), "no%20entry".into())
    );
    assert_eq!(up.hits(), hits);

    // The target named by a serialized GrpcService proto, as C++ filters pass it.
    let (s, _, _) = get_with(
        &url,
        &[
            ("x-grpc-test", "proto"),
            ("x-verdict", "allow"),
            ("x-user", "bo"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(last(&up, "x-authz"), "ok:bo");

    // An upstream that does not exist: the call is refused at once with ParseFailure, as in Envoy.
    let (s, _, _) = get_with(&url, &[("x-grpc-test", "unknown")]).await;
    assert_eq!(s, 200);
    assert_eq!(last(&up, "x-grpc-error"), "ParseFailure");

    // Past its timeout: DEADLINE_EXCEEDED.
    let (s, h, _) = get_with(&url, &[("x-grpc-test", "timeout"), ("x-verdict", "slow")]).await;
    assert_eq!((s, hv(&h, "x-grpc-status")), (403, "4".into()));
    assert_eq!(
        grpc.calls().pop().unwrap().grpc_timeout.as_deref(),
        Some("200m")
    );

    // Cancelled: no callback ever comes for it; the next call of the same request is answered.
    let (s, _, _) = get_with(&url, &[("x-grpc-test", "cancel")]).await;
    assert_eq!(s, 200);
    assert_eq!(last(&up, "x-authz"), "ok:slow");
    assert_eq!(last(&up, "x-late"), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_streams_deliver_metadata_messages_trailers_and_status() {
    let grpc = GrpcServer::start(None).await;
    let up = MockUpstream::start("up").await;
    let gw = gateway(&up, &[grpc_upstream("authz", grpc.addr)], "authz").await;
    let url = gw.url("/x");

    // Two messages, the second ending the filter's side: both echoed, then trailers and OK.
    let (s, _, _) = get_with(&url, &[("x-grpc-test", "stream")]).await;
    assert_eq!(s, 200);
    assert_eq!(last(&up, "x-stream"), "A,B");
    assert_eq!(last(&up, "x-stream-initial"), "hello");
    assert_eq!(last(&up, "x-stream-trailing"), "2");
    assert_eq!(last(&up, "x-stream-status"), "0:");
    assert_eq!(grpc.calls().pop().unwrap().path, "/test.Echo/Chat");

    // `proxy_grpc_close` half-closes: the server sees the end of the filter's messages and still
    // answers.
    let (s, _, _) = get_with(&url, &[("x-grpc-test", "stream-close")]).await;
    assert_eq!(s, 200);
    assert_eq!(last(&up, "x-stream"), "C");
    assert_eq!(last(&up, "x-stream-trailing"), "1");
    assert_eq!(last(&up, "x-stream-status"), "0:");
    assert_eq!(grpc.streams_ended(), 2);

    // Cancelled after its first answer: the server sees the stream reset (not a clean end), and no
    // callback of the stream comes after the cancel.
    let (s, _, _) = get_with(&url, &[("x-grpc-test", "stream-cancel")]).await;
    assert_eq!(s, 200);
    assert_eq!(last(&up, "x-authz"), "ok:slow");
    assert_eq!(last(&up, "x-late"), "");
    assert!(eventually(Duration::from_secs(5), async || grpc.streams_reset() == 1).await);
    assert_eq!(grpc.streams_ended(), 2);

    // A trailers-only failure: empty initial metadata, no message, the status and its message.
    let (s, _, _) = get_with(&url, &[("x-grpc-test", "stream-fail")]).await;
    assert_eq!(s, 200);
    assert_eq!(last(&up, "x-stream"), "");
    assert_eq!(last(&up, "x-stream-initial"), "");
    assert_eq!(last(&up, "x-stream-status"), "5:missing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_callouts_reach_tls_upstreams_and_fail_by_status_when_they_cannot() {
    let dir = TempDir::new("grpc-tls");
    let (ca_pem, server) = test_ca_server(&dir.0, "ca.pem", "authz.example.com");
    let grpc = GrpcServer::start(Some(server)).await;
    let up = MockUpstream::start("up").await;
    let tls = grpc_upstream("authz-tls", grpc.addr).lines(&format!(
        "    tls: {{ca: {}, server_name: authz.example.com}}\n",
        ca_pem.display()
    ));
    let gw = gateway(&up, &[tls], "authz-tls").await;

    let (s, _, _) = get_with(&gw.url("/x"), &[("x-verdict", "allow"), ("x-user", "cy")]).await;
    assert_eq!(s, 200);
    assert_eq!(last(&up, "x-authz"), "ok:cy");
    let (s, h, _) = get_with(&gw.url("/x"), &[("x-verdict", "deny")]).await;
    assert_eq!((s, hv(&h, "x-grpc-status")), (403, "7".into()));

    // Nothing listening: UNAVAILABLE, with the reason.
    let gw = gateway(
        &up,
        &[grpc_upstream("down", format!("127.0.0.1:{}", free_port()))],
        "down",
    )
    .await;
    let (s, h, _) = get_with(&gw.url("/x"), &[("x-verdict", "allow")]).await;
    assert_eq!((s, hv(&h, "x-grpc-status")), (403, "14".into()));
    assert!(!hv(&h, "x-grpc-message").is_empty());

    // An upstream configured for HTTP/1.1 cannot carry gRPC: UNAVAILABLE, saying why.
    let gw = gateway(&up, &[Upstream::new("h1").endpoint(grpc.addr)], "h1").await;
    let (s, h, _) = get_with(&gw.url("/x"), &[("x-verdict", "allow")]).await;
    assert_eq!((s, hv(&h, "x-grpc-status")), (403, "14".into()));
    assert!(hv(&h, "x-grpc-message").contains("http2"), "{h:?}");
}
