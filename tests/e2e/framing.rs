//! Framing is the gateway's: `content-length`, `transfer-encoding`, `connection`, `keep-alive`,
//! `upgrade` and `te` written by a plugin (either ABI) on a local reply or on a response never reach
//! the wire as given, so a second request pipelined on the same keep-alive connection gets its own,
//! uncorrupted answer; a config cannot write them either.

use crate::harness::*;
use std::collections::HashMap;
use std::time::Duration;

/// One parsed response of a raw HTTP/1.1 stream.
#[derive(Debug)]
struct Msg {
    status: u16,
    headers: HashMap<String, Vec<String>>,
    body: String,
}

impl Msg {
    fn one(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// Splits a raw stream of HTTP/1.1 responses, framed by `content-length` or chunked coding (anything
/// else is a test failure: these responses all have bodies of known framing).
fn responses(mut text: &str) -> Vec<Msg> {
    let mut out = Vec::new();
    while !text.is_empty() {
        let end = text
            .find("\r\n\r\n")
            .unwrap_or_else(|| panic!("no head end in {text:?}"));
        let mut lines = text[..end].split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let mut headers: HashMap<String, Vec<String>> = HashMap::new();
        for l in lines {
            let (k, v) = l.split_once(':').expect("header line");
            headers
                .entry(k.trim().to_ascii_lowercase())
                .or_default()
                .push(v.trim().to_owned());
        }
        let mut rest = &text[end + 4..];
        let body = if let Some(len) = headers.get("content-length") {
            assert_eq!(len.len(), 1, "one content-length: {headers:?}");
            let n: usize = len[0].parse().expect("content-length");
            let b = rest[..n].to_owned();
            rest = &rest[n..];
            b
        } else if headers
            .get("transfer-encoding")
            .is_some_and(|v| v.iter().any(|t| t.eq_ignore_ascii_case("chunked")))
        {
            let mut b = String::new();
            loop {
                let line_end = rest.find("\r\n").expect("chunk size line");
                let n = usize::from_str_radix(rest[..line_end].trim(), 16).expect("chunk size");
                rest = &rest[line_end + 2..];
                if n == 0 {
                    rest = &rest[rest.find("\r\n").expect("last chunk") + 2..];
                    break;
                }
                b.push_str(&rest[..n]);
                rest = &rest[n + 2..];
            }
            b
        } else {
            panic!("a response without framing: {headers:?}");
        };
        out.push(Msg {
            status,
            headers,
            body,
        });
        text = rest;
    }
    out
}

/// Sends a request with `headers` on `path` and, pipelined behind it on the same connection, a
/// plain `GET /second`; returns both answers.
async fn pipelined(gw: &TestGateway, path: &str, headers: &str) -> (Msg, Msg) {
    pipelined_raw(
        gw,
        &format!("GET {path} HTTP/1.1\r\nHost: h\r\n{headers}\r\n"),
    )
    .await
}

/// Sends the request `first` and, pipelined behind it on the same connection, a plain
/// `GET /second`; returns both answers.
async fn pipelined_raw(gw: &TestGateway, first: &str) -> (Msg, Msg) {
    let req = format!("{first}GET /second HTTP/1.1\r\nHost: h\r\n\r\n");
    let text = raw(gw.addr, req.as_bytes(), Duration::from_millis(700)).await;
    let mut msgs = responses(&text).into_iter();
    let (Some(first), Some(second), None) = (msgs.next(), msgs.next(), msgs.next()) else {
        panic!("two responses expected: {text:?}");
    };
    (first, second)
}

/// `GET /first` with `headers` (which make a filter write lying framing headers) and a `GET /second`
/// behind it: the first answer is `body`, framed by the gateway; the second is the upstream's own,
/// uncorrupted. Returns the first answer.
async fn framed_then_next(gw: &TestGateway, headers: &str, body: &str) -> Msg {
    let (first, second) = pipelined(gw, "/first", headers).await;
    assert_eq!((first.status, first.body.as_str()), (200, body));
    framed_by_the_gateway(&first);
    assert_eq!(
        (second.status, second.body.as_str()),
        (200, "mock up /second\n")
    );
    first
}

/// No framing header a plugin wrote is left: the body is framed by its own length, or chunked (when
/// it streamed through a filter that could change it), never both and never by the plugin's word.
fn framed_by_the_gateway(m: &Msg) {
    for h in ["keep-alive", "upgrade", "te"] {
        assert!(m.one(h).is_none(), "{h} left: {m:?}");
    }
    assert_ne!(m.one("connection"), Some("close"), "{m:?}");
    match (m.one("content-length"), m.headers.get("transfer-encoding")) {
        (Some(len), None) => assert_eq!(len, m.body.len().to_string(), "{m:?}"),
        (None, Some(te)) => assert_eq!(te, &["chunked"], "{m:?}"),
        _ => panic!("framed twice or not at all: {m:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_written_by_a_proxy_wasm_filter_is_the_gateways() {
    let up = MockUpstream::start("up").await;
    let f = xtask::proxy_wasm_fixtures().unwrap_or_else(|e| panic!("{e}"));
    let gw = TestGateway::start(
        &GatewayConfig::new()
            .plugin(Plugin::new("kitchen", &f.kitchen))
            .upstream(Upstream::new("up").endpoint(up.addr))
            .route(Route::new("r").upstream("up").filter("kitchen", "tag=k"))
            .yaml(),
    )
    .await;
    // A local reply that says `content-length: 0` (and chunked, and close) for 11 bytes.
    let first = framed_then_next(&gw, "x-test: framing-local\r\n", "hello world").await;
    assert_eq!(first.one("x-local"), Some("1"));
    // The upstream's response, on which the filter writes the same lies.
    framed_then_next(&gw, "x-test: framing-response\r\n", "mock up /first\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_written_by_a_component_is_the_gateways() {
    let up = MockUpstream::start("up").await;
    let kitchen = &xtask::component_fixtures()
        .unwrap_or_else(|e| panic!("{e}"))
        .kitchen;
    let gw = TestGateway::start(
        &GatewayConfig::new()
            .plugin(Plugin::new("kitchen", kitchen))
            .upstream(Upstream::new("up").endpoint(up.addr))
            .route(Route::new("r").upstream("up").filter("kitchen", ""))
            .yaml(),
    )
    .await;
    let first = framed_then_next(&gw, "x-test: respond-framing\r\n", "hello world").await;
    assert_eq!(first.one("x-local"), Some("yes"));
    framed_then_next(&gw, "x-resp-test: framing\r\n", "mock up /first\n").await;
    // A filter's `content-length` on the request does not frame the body the backend gets.
    let (first, second) = pipelined_raw(
        &gw,
        "POST /echo HTTP/1.1\r\nHost: h\r\nx-test: req-framing\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!((first.status, first.body.as_str()), (200, "hello"));
    assert_eq!(
        (second.status, second.body.as_str()),
        (200, "mock up /second\n")
    );
    let echo = up
        .seen()
        .into_iter()
        .find(|s| s.uri == "/echo")
        .expect("the POST");
    assert_eq!(echo.headers["content-length"], "5");
    assert_eq!(&echo.body[..], b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_cannot_write_framing_and_direct_responses_are_framed() {
    for (field, lines) in [
        (
            "direct_response.headers",
            "    direct_response: {status: 200, body: hi, headers: {content-length: '0'}}\n",
        ),
        (
            "response_headers",
            "    direct_response: {status: 200}\n    response_headers: {set: {transfer-encoding: chunked}}\n",
        ),
        (
            "request_headers",
            "    direct_response: {status: 200}\n    request_headers: {add: {connection: close}}\n",
        ),
    ] {
        let yaml = format!("routes:\n  - name: r\n{lines}");
        let err = TestGateway::try_start(&yaml)
            .await
            .err()
            .unwrap_or_else(|| panic!("{field}: accepted"))
            .to_string();
        assert!(
            err.contains(field) && err.contains("frames the message"),
            "{field}: {err}"
        );
    }
    // Removing one is harmless.
    let gw = TestGateway::start(
        "routes:\n  - name: r\n    direct_response: {status: 200, body: hello, headers: {x-d: '1'}}\n    response_headers: {remove: [connection]}\n",
    )
    .await;
    let (first, second) = pipelined(&gw, "/first", "").await;
    assert_eq!((first.status, first.body.as_str()), (200, "hello"));
    assert_eq!(first.one("x-d"), Some("1"));
    framed_by_the_gateway(&first);
    assert_eq!((second.status, second.body.as_str()), (200, "hello"));
}

/// A client's `Connection` header names hop-by-hop headers of its own hop: they go before the route's
/// filters and header rules run, so it cannot remove what those add on the way to the upstream (the
/// auth plugins' `x-anonymous-consumer`, a route's `x-team`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_connection_header_cannot_remove_what_the_route_adds() {
    let up = MockUpstream::start("up").await;
    let kitchen = &xtask::component_fixtures()
        .unwrap_or_else(|e| panic!("{e}"))
        .kitchen;
    let gw = TestGateway::start(
        &GatewayConfig::new()
            .plugin(Plugin::new("kitchen", kitchen))
            .upstream(Upstream::new("up").endpoint(up.addr))
            .route(
                Route::new("r")
                    .upstream("up")
                    .lines("    request_headers: {set: {x-team: t}}\n")
                    .filter("kitchen", ""),
            )
            .yaml(),
    )
    .await;
    let (s, _, body) = get_with(
        &gw.url("/x"),
        &[
            ("x-test", "headers"),
            ("connection", "keep-alive, x-team, x-method, x-own-hop"),
            ("x-own-hop", "1"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let h = up.last().headers;
    assert_eq!(hv(&h, "x-team"), "t", "{h:?}");
    assert_eq!(hv(&h, "x-method"), "GET", "{h:?}");
    assert!(h.get("x-own-hop").is_none(), "{h:?}");
}
