//! gRPC-JSON transcoding (`grpc_transcode:` on a route): REST/JSON calls mapped by the
//! `google.api.http` annotations of a descriptor set (compiled here from
//! `tests/fixtures/protos/bookstore.proto` by protox) reach a real tonic server as gRPC; answers
//! are proto3 JSON, gRPC errors HTTP statuses with a JSON body, bad JSON a 400 naming the field.

use crate::harness::*;
use bytes::Bytes;
use gateway_test_support::bookstore::{
    descriptor_set, descriptor_set_of, fixtures, BookstoreServer,
};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// The bookstore's descriptor set written to a file of `dir`.
fn write_set(dir: &TempDir) -> std::path::PathBuf {
    let path = dir.0.join("bookstore.pb");
    std::fs::write(&path, descriptor_set()).unwrap();
    path
}

fn config(server: &BookstoreServer, set: &Path, extra: &str) -> String {
    format!(
        "upstreams:\n  - name: books\n    endpoints: [\"{}\"]\n    protocol: http2\n\
         routes:\n  - name: rest\n    upstream: books\n    grpc_transcode:\n      descriptor_set: {}\n      services: [bookstore.v1.Bookstore]\n{extra}",
        server.addr,
        set.display()
    )
}

async fn send(method: &str, url: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    request(b.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await
}

/// A JSON error answer's status, gRPC code and message.
async fn error_of(method: &str, url: &str, body: &str) -> (u16, i64, String) {
    let (s, h, b) = send(method, url, body, &[]).await;
    assert_eq!(hv(&h, "content-type"), "application/json", "{b}");
    let v = json(&b);
    (
        s,
        v["code"].as_i64().unwrap_or(-1),
        v["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_calls_reach_grpc_methods_and_answer_proto3_json() {
    let server = BookstoreServer::start().await;
    let dir = TempDir::new("transcode");
    let gw = TestGateway::start(&config(&server, &write_set(&dir), "")).await;

    // A path variable; int64 as a string (proto3 JSON), default fields left out, metadata as headers.
    let (s, h, b) = get(&gw.url("/v1/shelves/1")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(hv(&h, "content-type"), "application/json");
    assert_eq!(hv(&h, "x-served-by"), "bookstore");
    assert!(h.get("grpc-status").is_none());
    assert_eq!(
        json(&b),
        json!({"id": "1", "theme": "fiction", "tags": ["a", "b"]})
    );
    let call = server.calls().pop().unwrap();
    assert_eq!(call.path, "/bookstore.v1.Bookstore/GetShelf");
    assert_eq!(call.content_type.as_deref(), Some("application/grpc"));

    // An additional binding with a multi-segment variable.
    let (s, _, b) = get(&gw.url("/v1/rooms/r1/shelves/1")).await;
    assert_eq!(
        (s, json(&b)["name"].clone()),
        (200, json!("rooms/r1/shelves/1"))
    );

    // `body: "*"`: the whole message, its id from the path; lowerCamelCase and proto names taken.
    let (s, _, b) = send(
        "PUT",
        &gw.url("/v1/shelves/7"),
        r#"{"theme": "history", "tags": ["x"], "name": "n"}"#,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        json(&b),
        json!({"id": "7", "theme": "history", "tags": ["x"], "name": "n"})
    );

    // `body: "book"` and `response_body: "book"`: enums by name, a wrapper type as its value.
    let (s, _, b) = send(
        "POST",
        &gw.url("/v1/shelves/3/books"),
        r#"{"author": "ann", "page_count": 12, "genre": "HISTORY", "rating": 5}"#,
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        json(&b),
        json!({"id": "301", "author": "ann", "pageCount": 12, "genre": "HISTORY", "rating": 5})
    );

    // A method without an annotation, by its gRPC path with POST.
    let (s, _, b) = send(
        "POST",
        &gw.url("/bookstore.v1.Bookstore/Echo"),
        r#"{"title": "t", "pageCount": 3}"#,
        &[],
    )
    .await;
    assert_eq!((s, json(&b)), (200, json!({"title": "t", "pageCount": 3})));

    // Server streaming with query parameters to fields (a repeated enum, a JSON name): a JSON array.
    let (s, h, b) =
        get(&gw.url("/v1/shelves/2/books?page_size=2&author=bo&genres=FICTION&genres=HISTORY"))
            .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(hv(&h, "content-type"), "application/json");
    assert_eq!(
        json(&b),
        json!([
            {"id": "1", "author": "bo", "title": "book 1", "pageCount": 101, "genre": "FICTION"},
            {"id": "2", "author": "bo", "title": "book 2", "pageCount": 102, "genre": "FICTION"}
        ])
    );
    let (s, _, b) = get(&gw.url("/v1/shelves/2/books?pageSize=0")).await;
    assert_eq!((s, b.as_str()), (200, "[]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_errors_and_bad_requests_are_json_errors_with_http_statuses() {
    let server = BookstoreServer::start().await;
    let dir = TempDir::new("transcode");
    let gw = TestGateway::start(&config(&server, &write_set(&dir), "")).await;

    // gRPC statuses of the service, as google.rpc.Code maps them; the message decoded.
    assert_eq!(
        error_of("GET", &gw.url("/v1/shelves/9"), "").await,
        (404, 5, "no shelf 9 (ünïcode)".into())
    );
    assert_eq!(
        error_of("GET", &gw.url("/v1/shelves/0"), "").await,
        (400, 3, "shelf is required".into())
    );
    let (s, _, b) = get_with(&gw.url("/v1/shelves/1"), &[("x-fail", "unauthenticated")]).await;
    assert_eq!((s, json(&b)["code"].clone()), (401, json!(16)));
    // A stream that fails before its first message: its status.
    assert_eq!(
        error_of("GET", &gw.url("/v1/shelves/1/books?fail_with=8"), "").await,
        (429, 8, "failed after 0".into())
    );

    // The gateway's own 400s name the field, and the upstream is not called.
    let calls = server.calls().len();
    let cases = [
        (
            "PUT",
            "/v1/shelves/7",
            r#"{"theme": "x", "colour": 1}"#,
            "colour",
        ),
        ("PUT", "/v1/shelves/7", r#"{"tags": 5}"#, "tags"),
        (
            "POST",
            "/v1/shelves/7/books",
            r#"{"pageCount": "many"}"#,
            "book.pageCount",
        ),
        (
            "POST",
            "/v1/shelves/7/books",
            r#"{"genre": "POETRY"}"#,
            "book.genre",
        ),
        ("PUT", "/v1/shelves/7", "{not json", "line 1"),
        ("GET", "/v1/shelves/x", "", "shelf"),
        ("GET", "/v1/shelves/1/books?page_size=lots", "", "page_size"),
        ("GET", "/v1/shelves/1/books?colour=red", "", "colour"),
        ("GET", "/v1/shelves/1/books?shelf=2", "", "shelf"),
    ];
    for (method, path, body, names) in cases {
        let (s, code, message) = error_of(method, &gw.url(path), body).await;
        assert_eq!((s, code), (400, 3), "{method} {path} {body}: {message}");
        assert!(message.contains(names), "{method} {path} {body}: {message}");
    }
    assert_eq!(server.calls().len(), calls);

    // No method for the path; a client-streaming method (not transcoded).
    let (s, code, _) = error_of("GET", &gw.url("/v1/nothing"), "").await;
    assert_eq!((s, code), (404, 5));
    let (s, code, message) = error_of("DELETE", &gw.url("/v1/shelves/1"), "").await;
    assert_eq!((s, code), (404, 5), "{message}");
    let (s, code, message) =
        error_of("POST", &gw.url("/bookstore.v1.Bookstore/Upload"), "{}").await;
    assert_eq!((s, code), (501, 12), "{message}");
    assert!(message.contains("Upload"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streams_as_ndjson_and_a_failing_stream_is_cut() {
    let server = BookstoreServer::start().await;
    let dir = TempDir::new("transcode");
    let gw = TestGateway::start(&config(
        &server,
        &write_set(&dir),
        "      stream_format: ndjson\n      preserve_proto_field_names: true\n",
    ))
    .await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url = gw.url("/v1/shelves/1/books?page_size=3&author=cy");
    let resp = client
        .request(
            http::Request::get(&url)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(hv(resp.headers(), "content-type"), "application/x-ndjson");
    let mut body = resp.into_body();
    let mut lines = String::new();
    let mut pieces = 0;
    while let Some(f) = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .unwrap()
    {
        if let Ok(d) = f.unwrap().into_data() {
            pieces += 1;
            lines.push_str(std::str::from_utf8(&d).unwrap());
        }
    }
    let books: Vec<serde_json::Value> = lines.lines().map(json).collect();
    assert_eq!(books.len(), 3, "{lines}");
    assert_eq!(books[2]["page_count"], json!(103), "proto field names");
    // Each book went out as it came (20 ms apart), not gathered at the end.
    assert!(pieces >= 3, "{pieces} pieces");

    // A stream that fails after its first books: the answer is cut (the client sees the body break
    // off, or the connection close before the head if its bytes were not yet written), never a
    // complete-looking one.
    let url = gw.url("/v1/shelves/1/books?page_size=2&fail_with=13");
    let sent = client
        .request(
            http::Request::get(&url)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    if let Ok(resp) = sent {
        assert_eq!(resp.status(), 200);
        assert!(resp.into_body().collect().await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_set_errors_are_config_errors_at_their_line_and_reload_reads_a_new_set() {
    let server = BookstoreServer::start().await;
    let dir = TempDir::new("transcode");
    let set = write_set(&dir);

    // A service not in the set.
    let yaml = config(&server, &set, "").replace(
        "services: [bookstore.v1.Bookstore]",
        "services: [bookstore.v1.Library]",
    );
    let err = refused(&yaml).await;
    let line = line_ending(&yaml, "services: [bookstore.v1.Library]");
    assert!(
        err.contains(&format!("test.yaml:{line}:"))
            && err.contains("routes[0].grpc_transcode.services[0]")
            && err.contains("bookstore.v1.Bookstore"),
        "{err}"
    );
    // A file that is not a descriptor set, and a missing one.
    let bad = dir.0.join("bad.pb");
    std::fs::write(&bad, b"not a descriptor set at all").unwrap();
    for file in [bad, dir.0.join("missing.pb")] {
        let yaml = config(&server, &file, "");
        let err = refused(&yaml).await;
        let line = line_ending(&yaml, &format!("descriptor_set: {}", file.display()));
        assert!(
            err.contains(&format!("test.yaml:{line}:"))
                && err.contains("routes[0].grpc_transcode.descriptor_set"),
            "{err}"
        );
    }
    // An upstream that is not HTTP/2.
    let yaml = config(&server, &set, "").replace("    protocol: http2\n", "");
    let err = refused(&yaml).await;
    assert!(
        err.contains("routes[0].grpc_transcode") && err.contains("protocol: http2"),
        "{err}"
    );

    // Hot reload: the set is read again. First without ListBooks' annotation, then with it.
    let trimmed = dir.0.join("protos");
    std::fs::create_dir_all(&trimmed).unwrap();
    let proto = std::fs::read_to_string(fixtures().join("bookstore.proto"))
        .unwrap()
        .replace(
            "get: \"/v1/shelves/{shelf}/books\"",
            "get: \"/v1/racks/{shelf}/books\"",
        );
    std::fs::write(trimmed.join("bookstore.proto"), proto).unwrap();
    let live = dir.0.join("live.pb");
    std::fs::write(&live, descriptor_set_of(&trimmed.join("bookstore.proto"))).unwrap();
    let fg = FileGateway::start(&config(&server, &live, "")).await;
    let gw = &fg.gw;
    assert_eq!(get(&gw.url("/v1/racks/1/books?page_size=1")).await.0, 200);
    assert_eq!(get(&gw.url("/v1/shelves/1/books?page_size=1")).await.0, 404);
    std::fs::write(&live, descriptor_set()).unwrap();
    let (s, _, b) = admin_call(gw.admin, "POST", "/reload", "").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(get(&gw.url("/v1/shelves/1/books?page_size=1")).await.0, 200);
    assert_eq!(get(&gw.url("/v1/racks/1/books?page_size=1")).await.0, 404);
}

type AnswerBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// A hand-made gRPC upstream over HTTP/2 answering every call with what `answer` makes: the
/// answers the tonic server does not give (a trailers-only OK, a stall after the head, frames
/// without end after a unary message).
async fn h2_upstream(answer: fn() -> http::Response<AnswerBody>) -> std::net::SocketAddr {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |_: http::Request<hyper::body::Incoming>| async move {
                        Ok::<_, std::convert::Infallible>(answer())
                    },
                );
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn config_at(addr: std::net::SocketAddr, set: &Path, extra: &str) -> String {
    format!(
        "upstreams:\n  - name: books\n    endpoints: [\"{addr}\"]\n    protocol: http2\n\
         routes:\n  - name: rest\n    upstream: books\n    grpc_transcode:\n      descriptor_set: {}\n      services: [bookstore.v1.Bookstore]\n{extra}",
        set.display()
    )
}

fn grpc_head() -> http::response::Builder {
    http::Response::builder().header("content-type", "application/grpc")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailers_only_ok_is_an_empty_stream_and_a_unary_answer_without_a_message() {
    // grpc-go and grpc-java answer a stream that ends at once with `grpc-status: 0` in the
    // headers and END_STREAM (tonic sends headers, then trailers).
    let addr = h2_upstream(|| {
        grpc_head()
            .header("grpc-status", "0")
            .body(http_body_util::Empty::new().boxed())
            .unwrap()
    })
    .await;
    let dir = TempDir::new("transcode");
    let set = write_set(&dir);
    let gw = TestGateway::start(&config_at(addr, &set, "")).await;
    let (s, h, b) = get(&gw.url("/v1/shelves/1/books")).await;
    assert_eq!((s, b.as_str()), (200, "[]"));
    assert_eq!(hv(&h, "content-type"), "application/json");
    // A unary call has no answer without its message: a 502.
    let (s, _, _) = get(&gw.url("/v1/shelves/1")).await;
    assert_eq!(s, 502);

    let gw = TestGateway::start(&config_at(addr, &set, "      stream_format: ndjson\n")).await;
    let (s, h, b) = get(&gw.url("/v1/shelves/1/books")).await;
    assert_eq!((s, b.as_str()), (200, ""));
    assert_eq!(hv(&h, "content-type"), "application/x-ndjson");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stalls_after_its_head_is_a_504_by_the_routes_timeout() {
    let addr = h2_upstream(|| {
        let never = futures_util::stream::pending::<
            Result<http_body::Frame<Bytes>, std::convert::Infallible>,
        >();
        grpc_head()
            .body(http_body_util::StreamBody::new(never).boxed())
            .unwrap()
    })
    .await;
    let dir = TempDir::new("transcode");
    let gw = TestGateway::start(&config_at(addr, &write_set(&dir), "    timeout: 1s\n")).await;
    // Unary and server-streaming: both wait for a first message before the head.
    for path in ["/v1/shelves/1", "/v1/shelves/1/books"] {
        let (s, _, b) = get(&gw.url(path)).await;
        assert_eq!(s, 504, "{path}: {b}");
    }
    let m = gw.metrics().await;
    assert!(
        m.contains("gateway_upstream_errors_total{upstream=\"books\",kind=\"timeout\"} 2"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_answer_going_on_after_its_message_is_cut_at_the_message_limit() {
    // An empty Shelf, then 64 KiB frames (64 MiB in all) and no trailers: a 502 once the answer
    // passes the 4 MiB message limit, not the whole of it buffered (or a wait for the end).
    let addr = h2_upstream(|| {
        use futures_util::StreamExt as _;
        let data = |b: Bytes| Ok::<_, std::convert::Infallible>(http_body::Frame::data(b));
        let message = futures_util::stream::once(async move { data(Bytes::from_static(&[0; 5])) });
        let flood =
            futures_util::stream::repeat_with(move || data(Bytes::from(vec![0u8; 64 << 10])))
                .take(1024);
        let body = message.chain(flood).chain(futures_util::stream::pending());
        grpc_head()
            .body(BodyExt::boxed(http_body_util::StreamBody::new(body)))
            .unwrap()
    })
    .await;
    let dir = TempDir::new("transcode");
    let gw = TestGateway::start(&config_at(addr, &write_set(&dir), "    timeout: 15s\n")).await;
    let (s, _, b) = get(&gw.url("/v1/shelves/1")).await;
    assert_eq!(s, 502, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_field_paths_are_at_most_32_segments() {
    let server = BookstoreServer::start().await;
    let dir = TempDir::new("transcode");
    let gw = TestGateway::start(&config(&server, &write_set(&dir), "")).await;
    let path = |levels: usize| format!("tree.{}name", "n.".repeat(levels));
    // 32 segments: set.
    let (s, _, b) = get(&gw.url(&format!("/v1/shelves/1/books?page_size=1&{}=x", path(30)))).await;
    assert_eq!(s, 200, "{b}");
    // 33, and about 3,500 (a 7 KiB URI, which would nest the message that deep): a 400 naming it.
    for levels in [31, 3500] {
        let (s, code, message) = error_of(
            "GET",
            &gw.url(&format!("/v1/shelves/1/books?{}=x", path(levels))),
            "",
        )
        .await;
        assert_eq!((s, code), (400, 3), "{levels}: {message}");
        assert!(
            message.starts_with("query parameter `tree.n.n.") && message.contains("32 segments"),
            "{levels}: {message}"
        );
    }
}
