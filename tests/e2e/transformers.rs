//! The built-in `request-transformer` and `response-transformer` through the real gateway: a route
//! with a path template whose request the upstream gets with a new method, path, query, headers
//! and JSON body (with the body's new length); a response the client gets transformed; and routes
//! whose rules are headers only, whose bodies stream past without being held.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;
use std::time::Duration;

/// A route `name` to the upstream `up` with `lines` (YAML, indented 4 spaces) for its match,
/// filters and limits.
fn route(name: &str, lines: &str) -> Route {
    Route::new(name).upstream("up").lines(lines)
}

fn json_request(method: &str, url: &str, body: &str) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .header("x-client-name", "e2e")
        .header("x-debug", "1")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_the_transformed_request_and_the_client_the_transformed_response() {
    let up = MockUpstream::start("up").await;
    let users = route(
        "users",
        r#"    match: {path: {template: "/users/{id}"}}
    filters:
      - plugin: request-transformer
        config:
          http_method: POST
          remove: {headers: [x-debug], querystring: [debug], body: [/password]}
          rename: {querystring: ["p:page"], body: ["/name:/full_name"]}
          replace: {uri: "/v2/users/{id}", body: {/status: active}}
          add:
            headers: {x-user-id: "$(uri_captures.id)", x-client: "$(headers.x-client-name)"}
            querystring: ["source:gateway"]
            body: {/meta/id: "$(uri_captures.id)", /roles/-: admin}
"#,
    );
    // The mock's /echo answers with the request body and no Content-Type: the response rules say it
    // is JSON, then change it.
    let echo = route(
        "echo",
        r#"    match: {path: {exact: /echo}}
    filters:
      - plugin: request-transformer
        config: {add: {body: {/via: gateway}}}
      - plugin: response-transformer
        config:
          status: 201
          add: {headers: {content-type: application/json}, json: {/served: true}}
          remove: {headers: [x-upstream], json: [/secret]}
"#,
    );
    let config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .route(users)
        .route(echo)
        .yaml();
    let gw = TestGateway::start(&config).await;

    // The request: method, path from the template, query, headers and body.
    let body = r#"{"name": "Ann", "password": "s3", "status": "new", "roles": ["user"]}"#;
    let (s, _, text) = request(json_request(
        "PUT",
        &gw.url("/users/42?debug=1&p=3&tag=a"),
        body,
    ))
    .await;
    assert_eq!(s, 200, "{text}");
    let seen = up.last();
    assert_eq!(seen.method, http::Method::POST);
    assert_eq!(seen.uri, "/v2/users/42?page=3&tag=a&source=gateway");
    assert_eq!(hv(&seen.headers, "x-user-id"), "42");
    assert_eq!(hv(&seen.headers, "x-client"), "e2e");
    assert!(values(&seen.headers, "x-debug").is_empty());
    let sent =
        r#"{"full_name":"Ann","status":"active","roles":["user","admin"],"meta":{"id":"42"}}"#;
    assert_eq!(std::str::from_utf8(&seen.body).unwrap(), sent);
    // The upstream is told the length of the body it gets, not the client's.
    assert_eq!(hv(&seen.headers, "content-length"), sent.len().to_string());
    assert!(values(&seen.headers, "transfer-encoding").is_empty());

    // A body that says it is JSON and is not: a 400 from the plugin; the upstream is not called.
    let hits = up.hits();
    let (s, h, text) = request(json_request("PUT", &gw.url("/users/42"), "{\"name\":")).await;
    assert_eq!(s, 400, "{text}");
    assert_eq!(hv(&h, "content-type"), "application/json");
    assert_eq!(json(&text)["error"], "invalid_json");
    assert_eq!(up.hits(), hits);

    // Both ways on one route: the request body gets a field, the upstream echoes it, and the
    // client gets the echo transformed, with its status, type and length.
    let (s, h, text) = request(json_request(
        "POST",
        &gw.url("/echo"),
        r#"{"secret": "x", "a": [1, 2]}"#,
    ))
    .await;
    assert_eq!(s, 201, "{text}");
    let want = r#"{"a":[1,2],"via":"gateway","served":true}"#;
    assert_eq!(text, want);
    assert_eq!(hv(&h, "content-type"), "application/json");
    assert_eq!(hv(&h, "content-length"), want.len().to_string());
    assert!(values(&h, "x-upstream").is_empty());
    assert_eq!(
        std::str::from_utf8(&up.last().body).unwrap(),
        r#"{"secret":"x","a":[1,2],"via":"gateway"}"#
    );
}

/// A request whose body the client keeps open: the first chunk, then the rest when `rest` is
/// signalled.
fn open_upload(
    url: &str,
) -> (
    http::Request<http_body_util::combinators::BoxBody<Bytes, Infallible>>,
    tokio::sync::mpsc::Sender<Bytes>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .body(StreamBody::new(stream).boxed())
        .unwrap();
    (req, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_on_headers_only_let_bodies_stream_past() {
    let up = MockUpstream::start("up").await;
    let headers_only = route(
        "headers",
        r#"    match: {path: {prefix: /h/}}
    rewrite: {strip_prefix: /h}
    max_body_size: 100KiB
    filters:
      - plugin: request-transformer
        config: {add: {headers: {x-seen: "yes"}}}
      - plugin: response-transformer
        config: {add: {headers: {x-transformed: "yes"}}}
"#,
    );
    let with_body_rules = route(
        "body",
        r#"    match: {path: {prefix: /b/}}
    rewrite: {strip_prefix: /b}
    max_body_size: 100KiB
    filters:
      - plugin: request-transformer
        config: {add: {body: {/x: 1}}}
      - plugin: response-transformer
        config: {add: {json: {/x: 1}}}
"#,
    );
    let config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .route(headers_only)
        .route(with_body_rules)
        .yaml();
    let gw = TestGateway::start(&config).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::combinators::BoxBody<Bytes, Infallible>>();

    // A response of 512 KiB, five times the route's body limit, passes with its headers changed:
    // nothing held it.
    let resp = client
        .get(gw.url("/h/stream/8").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(hv(resp.headers(), "x-transformed"), "yes");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 8 * 64 * 1024);
    // The same response on a route with a body rule is held, so the limit stops it (the plugin
    // fails closed, by default).
    let resp = client
        .get(gw.url("/b/stream/8").parse().unwrap())
        .await
        .unwrap();
    assert!(resp.status().is_server_error(), "{}", resp.status());

    // A request body reaches the upstream while the client is still sending it: the upstream is
    // called after the first chunk.
    let hits = up.hits();
    let (req, tx) = open_upload(&gw.url("/h/upload"));
    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.request(req).await }
    });
    tx.send(Bytes::from_static(b"{\"first\": ")).await.unwrap();
    let started = eventually(Duration::from_secs(5), async || up.hits() == hits + 1).await;
    assert!(started, "the upstream was not called before the body ended");
    tx.send(Bytes::from_static(b"\"chunk\"}")).await.unwrap();
    drop(tx);
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&text[..], b"18");
    assert_eq!(hv(&up.last().headers, "x-seen"), "yes");

    // With a body rule the request is held until its body is whole, then sent transformed.
    let hits = up.hits();
    let (req, tx) = open_upload(&gw.url("/b/echo"));
    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.request(req).await }
    });
    tx.send(Bytes::from_static(b"{\"first\": ")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        up.hits(),
        hits,
        "the upstream was called before the body was whole"
    );
    tx.send(Bytes::from_static(b"\"chunk\"}")).await.unwrap();
    drop(tx);
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&text[..], br#"{"first":"chunk","x":1}"#);
    assert_eq!(up.hits(), hits + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_rule_is_reported_at_its_line() {
    let config = |plugin: &str, rules: &str| {
        GatewayConfig::new()
            .route(Route::new("r").respond("hi").lines(&format!(
                "    filters:\n      - plugin: {plugin}\n        config:\n{rules}"
            )))
            .yaml()
    };
    // A header value with a control character, in the second entry of a list.
    let yaml = config(
        "request-transformer",
        "          add:\n            headers:\n              - \"x-a:1\"\n              - \"x-b:a\\rb\"\n",
    );
    let err = refused(&yaml).await;
    let line = line_ending(&yaml, "- \"x-b:a\\rb\"");
    let want = format!(
        "test.yaml:{line}:17: routes[0].filters[0].config.add.headers[1]: plugin `request-transformer`"
    );
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("is not a valid header value"), "{err}");

    // A `json_types` entry that is not a type, at its line.
    let yaml = config(
        "response-transformer",
        "          add:\n            json: [\"/n:1\"]\n            json_types:\n              - integer\n",
    );
    let err = refused(&yaml).await;
    let line = line_ending(&yaml, "- integer");
    let want = format!(
        "test.yaml:{line}:17: routes[0].filters[0].config.add.json_types[0]: plugin `response-transformer`"
    );
    assert!(err.contains(&want), "{err}");
}
