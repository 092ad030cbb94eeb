//! gRPC-Web (`grpc_web: true` on a route): a browser's gRPC-Web requests, binary and base64 text,
//! over HTTP/1.1 and HTTP/2, reach a real tonic server as gRPC over HTTP/2; answers come back as
//! gRPC-Web with the trailers in the body, unary and server-streaming, with the catalog's `cors` on
//! the same route. The client side (framing a request, reading the answer's frames) is written here:
//! no maintained Rust gRPC-Web client fits; the upstream is the real tonic bookstore.

use crate::harness::*;
use base64::Engine as _;
use bytes::Bytes;
use gateway_test_support::bookstore::{
    frame, Book, BookstoreServer, GetShelfRequest, ListBooksRequest, Shelf,
};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const SVC: &str = "/bookstore.v1.Bookstore";

async fn gateway(server: &BookstoreServer, filters: &str) -> TestGateway {
    let yaml = format!(
        "upstreams:\n  - name: books\n    endpoints: [\"{}\"]\n    protocol: http2\n\
         routes:\n  - name: web\n    upstream: books\n    grpc_web: true\n{filters}",
        server.addr
    );
    TestGateway::start(&yaml).await
}

/// A gRPC-Web answer: status, headers, body bytes (decoded from base64 in text mode).
struct WebAnswer {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
    /// Data frames the client received (the answer streamed in that many pieces at least).
    pieces: usize,
}

async fn call(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &str,
    content_type: &str,
    body: Bytes,
    extra: &[(&str, &str)],
) -> WebAnswer {
    let text = content_type.starts_with("application/grpc-web-text");
    let mut req = http::Request::post(url)
        .header("content-type", content_type)
        .header("x-grpc-web", "1");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        client.request(req.body(Full::new(body)).unwrap()),
    )
    .await
    .expect("in time")
    .expect("response");
    let (parts, mut incoming) = resp.into_parts();
    let mut raw = Vec::new();
    let mut pieces = 0;
    while let Some(f) = incoming.frame().await {
        if let Ok(d) = f.expect("body").into_data() {
            if !d.is_empty() {
                pieces += 1;
                raw.extend_from_slice(&d);
            }
        }
    }
    let body = match text {
        // Chunks are padded one by one: decode four characters at a time.
        true => {
            let mut out = Vec::new();
            for g in raw.chunks(4) {
                B64.decode_vec(g, &mut out).expect("base64 answer");
            }
            Bytes::from(out)
        }
        false => Bytes::from(raw),
    };
    WebAnswer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        pieces,
    }
}

/// The frames of a gRPC-Web body: messages, and the trailers of the last (flag 0x80) frame.
fn frames(mut b: &[u8]) -> (Vec<Bytes>, Vec<(String, String)>) {
    let mut messages = Vec::new();
    let mut trailers = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 5, "a frame prefix is cut: {b:?}");
        let flag = b[0];
        let n = u32::from_be_bytes(b[1..5].try_into().unwrap()) as usize;
        let data = &b[5..5 + n];
        if flag & 0x80 != 0 {
            assert!(trailers.is_empty(), "one trailer frame");
            for line in std::str::from_utf8(data).unwrap().split("\r\n") {
                if let Some((k, v)) = line.split_once(':') {
                    trailers.push((k.trim().to_owned(), v.trim().to_owned()));
                }
            }
        } else {
            assert!(trailers.is_empty(), "no message after the trailers");
            messages.push(Bytes::copy_from_slice(data));
        }
        b = &b[5 + n..];
    }
    (messages, trailers)
}

fn trailer<'a>(t: &'a [(String, String)], name: &str) -> Option<&'a str> {
    t.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn h1() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn h2() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_in_binary_and_text_over_http1_and_http2() {
    let server = BookstoreServer::start().await;
    let gw = gateway(&server, "").await;
    let url = gw.url(&format!("{SVC}/GetShelf"));
    let ask = frame(&GetShelfRequest {
        shelf: 1,
        name: String::new(),
    });
    for (client, version) in [(h1(), "HTTP/1.1"), (h2(), "HTTP/2")] {
        for ct in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpc-web-text",
            "application/grpc-web-text+proto",
        ] {
            let text = ct.contains("text");
            let body = match text {
                // Two padded base64 chunks one after the other, as a browser streaming its
                // request may send them.
                true => Bytes::from(format!(
                    "{}{}",
                    B64.encode(&ask[..4]),
                    B64.encode(&ask[4..])
                )),
                false => ask.clone(),
            };
            let a = call(&client, &url, ct, body, &[("x-user", "ann")]).await;
            assert_eq!(a.status, 200, "{version} {ct}");
            assert_eq!(
                hv(&a.headers, "content-type"),
                ct,
                "{version}: the request's kind"
            );
            assert_eq!(
                hv(&a.headers, "x-served-by"),
                "bookstore",
                "initial metadata"
            );
            assert!(a.headers.get("grpc-status").is_none(), "status in the body");
            let (messages, trailers) = frames(&a.body);
            assert_eq!(messages.len(), 1, "{version} {ct}");
            let shelf: Shelf = prost::Message::decode(messages[0].clone()).unwrap();
            assert_eq!((shelf.id, shelf.theme.as_str()), (1, "fiction"));
            assert_eq!(
                trailer(&trailers, "grpc-status"),
                Some("0"),
                "{version} {ct}"
            );
        }
    }
    // The upstream got gRPC: its content type, the message format kept, no gRPC-Web marker.
    let calls = server.calls();
    assert_eq!(calls.len(), 8);
    assert!(calls
        .iter()
        .all(|c| c.path == "/bookstore.v1.Bookstore/GetShelf"));
    assert_eq!(calls[0].content_type.as_deref(), Some("application/grpc"));
    assert_eq!(
        calls[1].content_type.as_deref(),
        Some("application/grpc+proto")
    );
    assert_eq!(calls[0].user.as_deref(), Some("ann"));

    // An error: tonic answers trailers-only, which stays in the headers (gRPC-Web allows it).
    let a = call(
        &h1(),
        &url,
        "application/grpc-web+proto",
        frame(&GetShelfRequest {
            shelf: 9,
            name: String::new(),
        }),
        &[],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(hv(&a.headers, "grpc-status"), "5");
    assert_eq!(
        hv(&a.headers, "grpc-message"),
        "no%20shelf%209%20(%C3%BCn%C3%AFcode)",
        "as tonic encodes it"
    );
    assert_eq!(hv(&a.headers, "content-type"), "application/grpc-web+proto");
    assert!(a.body.is_empty());

    // A request that is not gRPC-Web passes as it is.
    request(
        http::Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap(),
    )
    .await;
    let last = server.calls().pop().unwrap();
    assert_eq!(last.content_type.as_deref(), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streams_come_back_framed_with_their_trailers() {
    let server = BookstoreServer::start().await;
    let gw = gateway(&server, "").await;
    let url = gw.url(&format!("{SVC}/ListBooks"));
    for ct in ["application/grpc-web+proto", "application/grpc-web-text"] {
        for client in [h1(), h2()] {
            let ask = frame(&ListBooksRequest {
                shelf: 1,
                page_size: 3,
                author: "bo".into(),
                ..Default::default()
            });
            let body = match ct.contains("text") {
                true => Bytes::from(B64.encode(&ask)),
                false => ask,
            };
            let a = call(&client, &url, ct, body, &[]).await;
            assert_eq!(a.status, 200, "{ct}");
            let (messages, trailers) = frames(&a.body);
            let books: Vec<Book> = messages
                .iter()
                .map(|m| prost::Message::decode(m.clone()).unwrap())
                .collect();
            assert_eq!(
                books.iter().map(|b| b.title.as_str()).collect::<Vec<_>>(),
                ["book 1", "book 2", "book 3"]
            );
            assert!(books.iter().all(|b| b.author == "bo"));
            assert_eq!(trailer(&trailers, "grpc-status"), Some("0"));
            // Each book is sent as it comes (20 ms apart), not gathered into one piece.
            assert!(a.pieces >= 4, "{ct}: {} pieces", a.pieces);
        }
    }

    // A stream that fails after two books: the books, then its status in the trailer frame.
    let ask = frame(&ListBooksRequest {
        page_size: 2,
        fail_with: 9,
        ..Default::default()
    });
    let a = call(&h2(), &url, "application/grpc-web", ask, &[]).await;
    let (messages, trailers) = frames(&a.body);
    assert_eq!(messages.len(), 2);
    assert_eq!(trailer(&trailers, "grpc-status"), Some("9"));
    assert_eq!(
        trailer(&trailers, "grpc-message"),
        Some("failed%20after%202"),
        "as gRPC encodes it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_on_the_same_route_answers_preflights_and_exposes_the_status() {
    let server = BookstoreServer::start().await;
    let gw = gateway(
        &server,
        "    filters:\n      - plugin: cors\n        config:\n          allow_origins: [\"https://app.example\"]\n          allow_methods: [POST]\n          allow_headers: [content-type, x-grpc-web, x-user-agent, grpc-timeout]\n          expose_headers: [grpc-status, grpc-message, grpc-status-details-bin]\n          max_age: 600\n",
    )
    .await;
    let url = gw.url(&format!("{SVC}/GetShelf"));
    let hits = server.calls().len();
    let (s, h, _) = request(
        http::Request::options(&url)
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,x-grpc-web,x-user-agent",
            )
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(hv(&h, "access-control-allow-origin"), "https://app.example");
    assert!(hv(&h, "access-control-allow-headers").contains("x-grpc-web"));
    assert_eq!(
        server.calls().len(),
        hits,
        "the preflight stays at the gateway"
    );

    // The actual call, answered with an error in the headers: a script can read it.
    let origin = [("origin", "https://app.example")];
    let a = call(
        &h1(),
        &url,
        "application/grpc-web-text",
        Bytes::from(B64.encode(frame(&GetShelfRequest {
            shelf: 7,
            name: String::new(),
        }))),
        &origin,
    )
    .await;
    assert_eq!(hv(&a.headers, "grpc-status"), "5");
    assert_eq!(
        hv(&a.headers, "access-control-allow-origin"),
        "https://app.example"
    );
    let exposed = hv(&a.headers, "access-control-expose-headers");
    assert!(
        exposed.contains("grpc-status") && exposed.contains("grpc-message"),
        "{exposed}"
    );
    // And a successful one.
    let a = call(
        &h1(),
        &url,
        "application/grpc-web+proto",
        frame(&GetShelfRequest {
            shelf: 1,
            name: String::new(),
        }),
        &origin,
    )
    .await;
    let (messages, trailers) = frames(&a.body);
    assert_eq!(
        (messages.len(), trailer(&trailers, "grpc-status")),
        (1, Some("0"))
    );
    assert_eq!(
        hv(&a.headers, "access-control-allow-origin"),
        "https://app.example"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_web_route_needs_an_http2_upstream() {
    let yaml = "upstreams:\n  - name: books\n    endpoints: [\"127.0.0.1:1\"]\n\
                routes:\n  - name: web\n    upstream: books\n    grpc_web: true\n";
    let err = refused(yaml).await;
    assert!(
        err.contains(&format!(":{}:", line_ending(yaml, "grpc_web: true")))
            && err.contains("routes[0].grpc_web")
            && err.contains("protocol: http2"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_own_errors_reach_a_grpc_web_client_in_grpc_web_form() {
    // Nothing listens on the upstream's port: the gateway's 503 becomes a trailers-only UNAVAILABLE
    // in the request's gRPC-Web content type, which a browser client reads from the headers.
    let yaml = format!(
        "upstreams:\n  - name: books\n    endpoints: [\"127.0.0.1:{}\"]\n    protocol: http2\n    health: {{passive: {{consecutive_failures: 0}}}}\n\
         routes:\n  - name: web\n    upstream: books\n    grpc_web: true\n",
        free_port()
    );
    let gw = TestGateway::start(&yaml).await;
    let url = gw.url(&format!("{SVC}/GetShelf"));
    for ct in ["application/grpc-web+proto", "application/grpc-web-text"] {
        let a = call(&h1(), &url, ct, Bytes::new(), &[]).await;
        assert_eq!(a.status, 200, "{ct}");
        assert_eq!(hv(&a.headers, "grpc-status"), "14", "{ct}");
        assert!(hv(&a.headers, "content-type").starts_with(ct), "{ct}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_body_that_is_not_base64_is_the_clients_error_not_the_endpoints() {
    let server = BookstoreServer::start().await;
    let gw = gateway(&server, "").await;
    let url = gw.url(&format!("{SVC}/GetShelf"));
    // More than passive health's default 5 consecutive failures: counted against the endpoint,
    // they would eject it, and the good call after them would be UNAVAILABLE.
    for (client, version) in [(h1(), "HTTP/1.1"), (h2(), "HTTP/2")] {
        for _ in 0..4 {
            let bad = Bytes::from_static(b"!!!!!!!!");
            let a = call(&client, &url, "application/grpc-web-text", bad, &[]).await;
            assert_eq!(a.status, 200, "{version}");
            assert!(
                hv(&a.headers, "content-type").starts_with("application/grpc-web-text"),
                "{version}"
            );
            // The gateway's 400 in gRPC form (INTERNAL, as gRPC maps HTTP 400), not UNAVAILABLE.
            assert_eq!(hv(&a.headers, "grpc-status"), "13", "{version}");
        }
    }
    let m = gw.metrics().await;
    assert!(
        !m.contains("gateway_upstream_errors_total{upstream=\"books\""),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "gateway_upstream_endpoint_healthy{{upstream=\"books\",endpoint=\"{}\"}} 1",
            server.addr
        )),
        "{m}"
    );
    let ask = frame(&GetShelfRequest {
        shelf: 1,
        name: String::new(),
    });
    let a = call(
        &h1(),
        &url,
        "application/grpc-web-text",
        Bytes::from(B64.encode(&ask)),
        &[],
    )
    .await;
    let (messages, trailers) = frames(&a.body);
    assert_eq!(
        (messages.len(), trailer(&trailers, "grpc-status")),
        (1, Some("0"))
    );
}
