//! Malformed HTTP/1.1 over raw TCP: each vector gets its status, the upstream sees nothing, and the
//! gateway goes on serving.

use crate::harness::*;
use std::time::Duration;

const W: Duration = Duration::from_millis(1500);

fn config(up: &MockUpstream) -> String {
    format!(
        "upstreams:\n  - name: up\n    endpoints: [\"{}\"]\nroutes:\n  - name: all\n    upstream: up\n",
        up.addr
    )
}

/// (name, raw request, expected status)
fn vectors() -> Vec<(&'static str, &'static [u8], u16)> {
    vec![
        ("CL then TE", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("TE then CL", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
        ("differing duplicate CL", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
        ("differing CL list", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\nhello!", 400),
        ("non-numeric CL", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n", 400),
        ("negative CL", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -5\r\n\r\nhello", 400),
        ("plus-signed CL", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello", 400),
        ("CL with inner space", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 1\r\n\r\nhello", 400),
        ("CL overflow", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
        ("TE on HTTP/1.0", b"POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("TE not chunked", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\nabc", 400),
        ("TE chunked then gzip", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
        ("TE chunked twice", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("TE unknown coding", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
        ("TE gzip, chunked", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        ("TE empty element", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , chunked\r\n\r\n0\r\n\r\n", 400),
        ("bad chunk size", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
        ("chunk size overflow", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n", 400),
        ("negative chunk size", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", 400),
        ("0x chunk size", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
        ("chunk size with bare LF", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", 400),
        ("chunk without CRLF after data", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX0\r\n\r\n", 400),
        ("chunk longer than its size", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", 400),
        ("bad chunk extension", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n", 400),
        ("folded trailer", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\r\n b\r\n\r\n", 400),
        ("bare LF after request line", b"GET / HTTP/1.1\nHost: h\r\n\r\n", 400),
        ("bare LF between headers", b"GET / HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n", 400),
        ("bare LF head end", b"GET / HTTP/1.1\r\nHost: h\n\n", 400),
        ("NUL in header value", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", 400),
        ("CR in header value", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", 400),
        ("line of a lone CR among headers", b"GET / HTTP/1.1\r\nHost: h\r\n\r\r\nX-A: b\r\n\r\n", 400),
        ("lone CR before the head end", b"GET / HTTP/1.1\r\nHost: h\r\n\r\r\n\r\n", 400),
        ("line of a lone CR in trailers", b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\r\n\r\r\n\r\n", 400),
        ("control char in header value", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x07b\r\n\r\n", 400),
        ("empty header name", b"GET / HTTP/1.1\r\nHost: h\r\n: value\r\n\r\n", 400),
        ("space before colon", b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
        ("header line without colon", b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400),
        ("non-token header name", b"GET / HTTP/1.1\r\nHost: h\r\nX(A): b\r\n\r\n", 400),
        ("non-ASCII header name", b"GET / HTTP/1.1\r\nHost: h\r\nX-\xc3\xa9: b\r\n\r\n", 400),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n  folded\r\n\r\n", 400),
        ("obs-fold with tab", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tfolded\r\n\r\n", 400),
        ("missing Host", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
        ("duplicate Host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("Host with space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        ("Host with slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        ("invalid method", b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        ("leading space", b" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        ("double space in request line", b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        ("missing version", b"GET /\r\nHost: h\r\n\r\n", 400),
        ("lowercase version", b"GET / http/1.1\r\nHost: h\r\n\r\n", 400),
        ("HTTP/2.0 in a text request line", b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        ("control char in target", b"GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        ("relative target", b"GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        ("asterisk target for GET", b"GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        ("non-http absolute target", b"GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        ("upgrade request with a body", b"POST / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello", 400),
        ("CONNECT then tunnel bytes", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 405),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_and_never_forwarded() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&config(&up)).await;
    let vs = vectors();
    assert!(vs.len() >= 40, "the table has {} vectors", vs.len());
    let mut failures = Vec::new();
    for (name, bytes, want) in &vs {
        let resp = raw(gw.addr, bytes, W).await;
        let got = status_of(&resp);
        if got != *want {
            failures.push(format!("{name}: want {want}, got {got}: {resp:?}"));
        }
        // The gateway still serves the next request.
        let ok = raw(
            gw.addr,
            b"GET /after HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            W,
        )
        .await;
        if status_of(&ok) != 200 {
            failures.push(format!("{name}: the next request got {ok:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Only the follow-up requests reached the upstream, never a malformed one.
    let seen: Vec<String> = up.seen().iter().map(|s| s.uri.clone()).collect();
    assert!(seen.iter().all(|u| u == "/after"), "{seen:?}");
    assert_eq!(seen.len(), vs.len());
    let m = gw.metrics().await;
    assert!(
        m.contains("gateway_requests_refused_total{status=\"400\"}"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_request_before_a_malformed_one_is_answered_then_the_connection_closes() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&config(&up)).await;
    let resp = raw(
        gw.addr,
        b"GET /first HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
        W,
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(resp.contains("mock up /first"), "{resp}");
    let second = resp.split("HTTP/1.1 ").nth(2).unwrap_or_default();
    assert!(second.starts_with("400"), "{resp}");
    assert!(second.contains("differing Content-Length"), "{resp}");
    assert_eq!(up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_edge_cases_are_accepted() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&config(&up)).await;
    let ok: Vec<&[u8]> = vec![
        b"\r\nGET /leading-crlf HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /http10 HTTP/1.0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
        b"GET http://h/absolute HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /obs-text HTTP/1.1\r\nHost: h\r\nX-A: caf\xc3\xa9\tend\r\nConnection: close\r\n\r\n",
    ];
    for req in ok {
        let resp = raw(gw.addr, req, W).await;
        assert_eq!(
            status_of(&resp),
            200,
            "{:?} -> {resp}",
            String::from_utf8_lossy(req)
        );
    }
    // OPTIONS * asks about the server itself: the gateway answers it.
    let resp = raw(
        gw.addr,
        b"OPTIONS * HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        W,
    )
    .await;
    assert_eq!(status_of(&resp), 204, "{resp}");
    assert!(resp.to_ascii_lowercase().contains("allow: "), "{resp}");
    let echoed: Vec<_> = up
        .seen()
        .iter()
        .filter(|s| s.uri == "/echo")
        .map(|s| s.body.clone())
        .collect();
    assert_eq!(
        echoed,
        vec![bytes::Bytes::from("hello"), bytes::Bytes::from("hello")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upgrade_is_not_tunnelled_and_early_bytes_are_parsed_as_http() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&config(&up)).await;
    // A WebSocket handshake followed at once by frame bytes, to an upstream that does not switch
    // (it answers 200): its answer is a plain response, and the frame bytes are never sent
    // anywhere: they are not a valid request. (tests/e2e/websocket.rs has upstreams that switch.)
    let resp = raw(
        gw.addr,
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58\r\n\r\n",
        W,
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(
        resp.contains("HTTP/1.1 400"),
        "the early bytes are refused as HTTP: {resp}"
    );
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["upgrade"], "websocket");
    assert!(seen[0].body.is_empty());
}
