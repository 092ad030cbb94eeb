//! Routes that cannot be walked around: one authority and one canonical path decide the route, and are
//! what the upstream receives, over HTTP/1 (raw bytes) and HTTP/2.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::time::Duration;

/// A deny route under an allowed prefix that strips itself, a template route, and a catch-all that
/// forwards untouched, on three listeners that differ only in their encoded-slash policy.
fn config(up: &MockUpstream) -> String {
    format!(
        "listeners:\n\
         \x20 - {{name: main, address: 127.0.0.1:0}}\n\
         \x20 - {{name: keep, address: 127.0.0.1:0, paths: {{escaped_slashes: keep}}}}\n\
         \x20 - {{name: decode, address: 127.0.0.1:0, paths: {{escaped_slashes: decode}}}}\n\
         upstreams:\n  - {{name: app, endpoints: [\"{}\"]}}\n\
         routes:\n\
         \x20 - name: admin-deny\n    match: {{path: {{prefix: /api/admin}}}}\n    direct_response: {{status: 403, body: denied}}\n\
         \x20 - name: api\n    match: {{path: {{prefix: /api}}}}\n    upstream: app\n    rewrite: {{strip_prefix: /api}}\n\
         \x20 - name: item\n    match: {{path: {{template: \"/items/{{id}}\"}}}}\n    upstream: app\n    rewrite: {{template: \"/v2/items/{{id}}\"}}\n\
         \x20 - name: public\n    match: {{host: www.public}}\n    upstream: app\n\
         \x20 - name: internal\n    match: {{host: admin.internal}}\n    direct_response: {{status: 403, body: internal}}\n\
         \x20 - name: other\n    match: {{}}\n    upstream: app\n",
        up.addr
    )
}

/// What happened to a request: `fwd PATH` (the path the upstream saw) or the status code.
fn outcome(status: u16, body: &str) -> String {
    match body.strip_prefix("mock app ") {
        Some(path) if status == 200 => format!("fwd {}", path.trim_end()),
        _ => status.to_string(),
    }
}

async fn h1(addr: SocketAddr, target: &[u8], host: &str) -> String {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let resp = raw(addr, &req, Duration::from_secs(5)).await;
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    outcome(status_of(&resp), body)
}

fn h2_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

async fn h2(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    target: &str,
) -> String {
    let uri = format!("http://{addr}{target}");
    let req = http::Request::get(uri.as_str())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = request_via(client, req).await;
    outcome(status, &body)
}

/// Each raw path, and what it must come to on the default listener (encoded slashes refused), on
/// `keep` and on `decode`. `None`: the same as the default.
#[rustfmt::skip]
const CASES: &[(&str, &str, Option<&str>, Option<&str>)] = &[
    ("/api/x", "fwd /x", None, None),
    ("/api/admin/x", "403", None, None),
    ("/api/admin", "403", None, None),
    ("/api/admin/", "403", None, None),
    ("/apiadmin/x", "fwd /apiadmin/x", None, None),
    ("/api/adminx", "fwd /adminx", None, None),
    ("/api//admin/x", "403", None, None),
    ("//api//admin", "403", None, None),
    ("/api///admin///x", "403", None, None),
    ("/api/./admin/x", "403", None, None),
    ("/./api/admin", "403", None, None),
    ("/api/admin/.", "403", None, None),
    ("/api/x/../admin/x", "403", None, None),
    ("/api/admin/..", "fwd /", None, None),
    ("/api/admin/../x", "fwd /x", None, None),
    ("/api/%61dmin/x", "403", None, None),
    ("/api/%61DMIN/x", "fwd /aDMIN/x", None, None),
    ("/API/admin", "fwd /API/admin", None, None),
    ("/api/%2E/admin/x", "403", None, None),
    ("/api/%2e%2e/api/admin", "403", None, None),
    ("/api/%2561dmin", "fwd /%2561dmin", None, None),
    ("/api/admin;x=1/y", "403", None, None),
    ("/api/x;y/..", "fwd /", None, None),
    ("/api/..;/admin", "400", None, None),
    ("/api/.;/admin", "400", None, None),
    ("/api%2fadmin/x", "400", Some("fwd /api%2Fadmin/x"), Some("403")),
    ("/api%2Fadmin/x", "400", Some("fwd /api%2Fadmin/x"), Some("403")),
    ("/api/..%2fadmin", "400", Some("fwd /..%2Fadmin"), Some("fwd /admin")),
    ("/api%5cadmin", "400", Some("fwd /api%5Cadmin"), Some("403")),
    ("/api\\admin", "400", Some("fwd /api%5Cadmin"), Some("403")),
    ("/api/../../etc/passwd", "400", None, None),
    ("/../etc/passwd", "400", None, None),
    ("/api/%2e%2e/%2e%2e/etc/passwd", "400", None, None),
    ("/x/..%2f..%2fetc/passwd", "400", Some("fwd /x/..%2F..%2Fetc/passwd"), Some("400")),
    ("/api/%00", "400", None, None),
    ("/api/a%00b", "400", None, None),
    ("/api/%zz", "400", None, None),
    ("/x/%", "400", None, None),
    ("/x/%4", "400", None, None),
    ("/api/%C0%AE%C0%AE/admin", "fwd /%C0%AE%C0%AE/admin", None, None),
    ("/api/%c0%ae%c0%ae/admin", "fwd /%C0%AE%C0%AE/admin", None, None),
    ("/x/caf%c3%a9", "fwd /x/caf%C3%A9", None, None),
    ("/x/%7Euser", "fwd /x/~user", None, None),
    ("/x/a%20b", "fwd /x/a%20b", None, None),
    ("/x/a%3fb", "fwd /x/a%3Fb", None, None),
    ("/x?q=../a", "fwd /x", None, None),
    ("/api/x?p=/api/admin", "fwd /x", None, None),
    ("/items/42", "fwd /v2/items/42", None, None),
    ("/items/%34%32", "fwd /v2/items/42", None, None),
    ("/items/..", "fwd /", None, None),
    ("/items/%2e%2e", "fwd /", None, None),
    ("/items/a%2Fb", "400", Some("fwd /items/a%2Fb"), Some("fwd /items/a/b")),
    ("/items/x/..", "fwd /items/", None, None),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_canonical_before_routing_and_upstream_over_http1_and_http2() {
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&config(&up)).await;
    let g = gw.gw.as_ref().unwrap();
    let listeners = [gw.addr, g.addr("keep").unwrap(), g.addr("decode").unwrap()];
    let client = h2_client();
    let mut failures = Vec::new();
    assert!(CASES.len() >= 40);
    for &(path, default, keep, decode) in CASES {
        let wants = [default, keep.unwrap_or(default), decode.unwrap_or(default)];
        for (addr, want) in listeners.iter().zip(wants) {
            let got = h1(*addr, path.as_bytes(), "x.test").await;
            if got != want {
                failures.push(format!("h1 {path} on {addr}: got {got}, want {want}"));
            }
            let got = h2(&client, *addr, path).await;
            if got != want {
                failures.push(format!("h2 {path} on {addr}: got {got}, want {want}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The query is forwarded as it came.
    for (target, want) in [
        ("/x/./y?q=../a", "/x/y?q=../a"),
        ("/api/x?p=/api/admin", "/x?p=/api/admin"),
    ] {
        assert_eq!(
            h1(gw.addr, target.as_bytes(), "x.test").await,
            format!("fwd {}", want.split('?').next().unwrap())
        );
        assert_eq!(up.last().uri, want);
        h2(&client, gw.addr, target).await;
        assert!(up.last().uri.ends_with(want), "{}", up.last().uri);
    }
    // A raw non-ASCII byte in an HTTP/1 target is not a request target (RFC 9112 3.2): 400.
    assert_eq!(h1(gw.addr, "/x/café".as_bytes(), "x.test").await, "400");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_authority_routes_and_reaches_the_upstream() {
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&config(&up)).await;
    // HTTP/1 absolute form: the target's authority is the one, and replaces Host (RFC 9112 3.2.2).
    let got = h1(gw.addr, b"http://www.public/secret", "admin.internal").await;
    assert_eq!(got, "fwd /secret");
    assert_eq!(up.last().headers["host"], "www.public");
    assert_eq!(up.last().headers["x-forwarded-host"], "www.public");
    // The Host alone decides when the target is in origin form.
    assert_eq!(h1(gw.addr, b"/secret", "admin.internal").await, "403");
    assert_eq!(h1(gw.addr, b"/secret", "www.public").await, "fwd /secret");
    assert_eq!(up.last().headers["host"], "www.public");
    // Userinfo in the target is refused.
    assert_eq!(
        h1(gw.addr, b"http://u@www.public/x", "www.public").await,
        "400"
    );
    // A fully qualified name's trailing dot is dropped: the same route, the same host upstream.
    assert_eq!(h1(gw.addr, b"/secret", "admin.internal.").await, "403");
    assert_eq!(h1(gw.addr, b"/secret", "www.public.").await, "fwd /secret");
    assert_eq!(up.last().headers["host"], "www.public");
    assert_eq!(
        h1(gw.addr, b"http://admin.internal./x", "www.public").await,
        "403"
    );
    assert_eq!(h1(gw.addr, b"/secret", "www.public..").await, "400");

    // HTTP/2: `:authority` routes; a `host` header that names another host is malformed (RFC 9113
    // 8.3.1); the same host in another case is fine. One connection to the gateway, any authority.
    let port = gw.addr.port();
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for (authority, host, want) in [
        ("www.public", None, "fwd /secret"),
        ("www.public", Some("admin.internal".to_owned()), "400"),
        (
            "www.public",
            Some(format!("WWW.Public:{port}")),
            "fwd /secret",
        ),
        ("www.public.", None, "fwd /secret"),
        ("admin.internal.", None, "403"),
    ] {
        let mut b = http::Request::get(format!("http://{authority}:{port}/secret"));
        if let Some(h) = &host {
            b = b.header("host", h.as_str());
        }
        let resp = send
            .send_request(b.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let got = outcome(status, &String::from_utf8_lossy(&body));
        assert_eq!(got, want, "{authority} host {host:?}");
        if want.starts_with("fwd") {
            assert_eq!(
                up.last().headers["host"],
                format!("www.public:{port}").as_str()
            );
        }
    }
}

/// An HTTP/2 request without `:authority` is routed by its one `host` header; two are malformed,
/// as they are over HTTP/1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_without_authority_takes_exactly_one_host() {
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&config(&up)).await;
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    for (hosts, want) in [
        (&["www.public"][..], "fwd /secret"),
        (&["admin.internal"][..], "403"),
        (&["www.public", "admin.internal"][..], "400"),
        (&["admin.internal", "www.public"][..], "400"),
    ] {
        let mut b = http::Request::get("/secret");
        for h in hosts {
            b = b.header("host", *h);
        }
        let (resp, _) = client.send_request(b.body(()).unwrap(), true).unwrap();
        let resp = resp.await.unwrap();
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut text = Vec::new();
        while let Some(chunk) = body.data().await {
            text.extend_from_slice(&chunk.unwrap());
        }
        let got = outcome(status, &String::from_utf8_lossy(&text));
        assert_eq!(got, want, "hosts {hosts:?}");
        if want.starts_with("fwd") {
            assert_eq!(up.last().headers["host"], hosts[0]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cookie_crumbs_are_one_header_upstream_and_against_the_limit() {
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&format!(
        "listeners:\n  - {{name: main, address: 127.0.0.1:0, limits: {{max_headers: 6}}}}\n\
         upstreams:\n  - {{name: app, endpoints: [\"{}\"]}}\n\
         routes:\n  - {{name: all, match: {{}}, upstream: app}}\n",
        up.addr
    ))
    .await;
    let client = h2_client();
    let mut b = http::Request::get(gw.url("/c"));
    for i in 0..10 {
        b = b.header("cookie", format!("c{i}=v{i}"));
    }
    let (s, _, body) = request_via(&client, b.body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(s, 200, "{body}");
    let cookies: Vec<_> = up
        .last()
        .headers
        .get_all("cookie")
        .iter()
        .cloned()
        .collect();
    assert_eq!(cookies.len(), 1);
    assert_eq!(
        cookies[0],
        "c0=v0; c1=v1; c2=v2; c3=v3; c4=v4; c5=v5; c6=v6; c7=v7; c8=v8; c9=v9"
    );
    // Other repeated headers still count one by one.
    let mut b = http::Request::get(gw.url("/c"));
    for i in 0..10 {
        b = b.header("x-many", format!("{i}"));
    }
    let (s, _, _) = request_via(&client, b.body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(s, 431);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_continue_is_answered_by_the_gateway_and_not_forwarded() {
    let up = MockUpstream::start("app").await;
    let gw = TestGateway::start(&config(&up)).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("100 Continue in time")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    s.write_all(b"hello").await.unwrap();
    let rest = read_all(&mut s, Duration::from_secs(5)).await;
    assert!(rest.contains("200 OK") && rest.ends_with("hello"), "{rest}");
    assert!(!up.last().headers.contains_key("expect"));
}

/// A listener for backends that strip `;` parameters refuses them, over HTTP/1 and HTTP/2; the
/// default listener routes them as part of their segment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_can_refuse_path_parameters() {
    let up = MockUpstream::start("app").await;
    let yaml = config(&up).replace(
        "  - {name: main, address: 127.0.0.1:0}\n",
        "  - {name: main, address: 127.0.0.1:0, paths: {parameters: reject}}\n  - {name: lax, address: 127.0.0.1:0}\n",
    );
    let gw = TestGateway::start(&yaml).await;
    let lax = gw.gw.as_ref().unwrap().addr("lax").unwrap();
    let h2c = h2_client();
    for target in ["/api;x/admin", "/api/admin;", "/items/1;v=2"] {
        assert_eq!(h1(gw.addr, target.as_bytes(), "h").await, "400", "{target}");
        assert_eq!(h2(&h2c, gw.addr, target).await, "400", "{target}");
    }
    assert_eq!(h1(gw.addr, b"/api/ok", "h").await, "fwd /ok");
    assert_eq!(h2(&h2c, gw.addr, "/api/ok").await, "fwd /ok");
    assert_eq!(h1(lax, b"/api;x/admin", "h").await, "fwd /;x/admin");
    assert_eq!(h1(lax, b"/api/admin;", "h").await, "403");
}
