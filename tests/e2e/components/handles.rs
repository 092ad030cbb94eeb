//! Request and response handles, local responses, bodies whole and in chunks.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_handles_read_and_change_the_real_exchange() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin("kitchen", kitchen(), "")],
            &[route("h", "kitchen", "", "")],
        )
        .await;
    let req = http::Request::get(gw.url("/h/path?q=1"))
        .header("x-test", "headers")
        .header("x-multi", "1")
        .header("x-multi", "2")
        .header("x-remove-me", "bye")
        .header("x-resp-test", "edit")
        .header("x-want-status", "299")
        .header("x-id", "A")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, h, body) = request(req).await;
    let seen = b.up.last();
    // The request as the filter saw it, and as it changed it.
    let u = &seen.headers;
    assert_eq!(hv(u, "x-method"), "GET");
    assert_eq!(hv(u, "x-path"), "/h/path");
    assert_eq!(hv(u, "x-query"), "q=1");
    assert_eq!(hv(u, "x-host"), gw.addr.to_string());
    assert_eq!(hv(u, "x-multi"), "1|2");
    let count: usize = hv(u, "x-count").parse().unwrap();
    assert!(count >= 6, "{count}");
    let appended: Vec<_> = u.get_all("x-appended").iter().collect();
    assert_eq!(appended, ["a", "b"]);
    assert!(u.get("x-remove-me").is_none());
    assert_eq!(hv(u, "x-bad-name"), "invalid");
    assert_eq!(hv(u, "x-body-in-headers"), "true");
    assert_eq!(hv(u, "x-bad-path"), "invalid");
    assert_eq!(
        seen.uri, "/rewritten?x=1",
        "set-path-with-query reached the upstream"
    );
    // The response handle: status read and changed, headers read, set, appended and removed.
    assert_eq!(status, 299, "{body}");
    assert_eq!(hv(&h, "x-status-seen"), "200");
    assert_eq!(hv(&h, "x-resp-status-before"), "200");
    assert_eq!(hv(&h, "x-resp-status-after"), "299");
    assert_eq!(hv(&h, "x-resp-bad-status"), "invalid");
    assert_eq!(hv(&h, "x-resp-upstream"), "up");
    assert!(h.get("x-upstream").is_none(), "removed by the filter");
    let count: usize = hv(&h, "x-resp-count").parse().unwrap();
    assert!(count >= 2, "{count}");
    let appended: Vec<_> = h.get_all("x-resp-appended").iter().collect();
    assert_eq!(appended, ["a", "b"]);
    assert_eq!(hv(&h, "x-resp-bad-name"), "invalid");
    assert_eq!(hv(&h, "x-resp-body-in-headers"), "true");
    assert_eq!(hv(&h, "x-resp-set-body-in-headers"), "wrong-phase");
    assert_eq!(hv(&h, "x-id-echo"), "A");
    assert_eq!(body, "mock up /rewritten\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_response_answers_without_the_backend() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin("kitchen", kitchen(), "")],
            &[route("r", "kitchen", "", "")],
        )
        .await;
    let (s, h, body) = get_with(&gw.url("/r/x"), &[("x-test", "respond")]).await;
    assert_eq!((s, body.as_str()), (418, "i am a teapot\n"));
    assert_eq!(hv(&h, "x-local"), "yes");
    assert_eq!(b.up.hits(), 0);
    let (s, _, _) = get(&gw.url("/r/x")).await;
    assert_eq!(s, 200);
    assert_eq!(b.up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_whole_and_in_chunks() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin("kitchen", kitchen(), "")],
            &[
                route("whole", "kitchen", "request-body=whole", ""),
                route("chunks", "kitchen", "request-body=chunks", ""),
            ],
        )
        .await;
    let req = http::Request::post(gw.url("/whole/echo"))
        .body(Full::new(Bytes::from_static(b"abcd")))
        .unwrap();
    let (s, h, body) = request(req).await;
    assert_eq!((s, body.as_str()), (200, "ABCD|chunks=1"));
    assert_eq!(b.up.last().body, "ABCD|chunks=1");
    // A whole-mode body call may still change the request head (it waited for the body).
    assert_eq!(hv(&h, "x-body-phase-set-header"), "ok");

    // Chunks: the body arrives in pieces with pauses between them, and each piece is a call.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /chunks/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nab\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(b"2\r\ncd\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let resp = read_all(&mut s, Duration::from_secs(5)).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    // In chunk mode the request head went upstream first: the body calls cannot change it.
    assert!(
        resp.to_lowercase()
            .contains("x-body-phase-set-header: wrong-phase\r\n"),
        "{resp}"
    );
    assert!(b.up.last().headers.get("x-late").is_none());
    let body = String::from_utf8_lossy(&b.up.last().body).into_owned();
    // Two calls with data; the end of the stream may come with the last piece or in a third call.
    assert!(
        body == "ABCD|chunks=2" || body == "ABCD|chunks=3",
        "the body was not seen in chunks: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_bodies_whole_and_in_chunks() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin("kitchen", kitchen(), "")],
            &[
                route("whole", "kitchen", "response-body=whole", ""),
                route("chunks", "kitchen", "response-body=chunks", ""),
            ],
        )
        .await;
    // Whole: one call with all 18 bytes, replaced; the response head waited for it, so the call's
    // header edit is allowed (more in the whole-body section below).
    let (s, h, body) = get(&gw.url("/whole/foo/3")).await;
    assert_eq!((s, body.as_str()), (200, "len=18;late=ok"));
    assert_eq!(hv(&h, "x-late"), "1");
    // An answer from the whole response body phase replaces the response.
    let resp = raw(
        gw.addr,
        b"POST /whole/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\nConnection: close\r\n\r\ndeny this",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(status_of(&resp), 403, "{resp}");
    assert!(resp.ends_with("\r\n\r\ndenied by body\n"), "{resp}");
    assert_eq!(get(&gw.url("/whole/foo/1")).await.2, "len=6;late=ok");
    // Chunks: 4 x 64 KiB stream through; only the last call (end of stream) replaces its chunk.
    let (s, _, body) = get(&gw.url("/chunks/stream/4")).await;
    assert_eq!(s, 200);
    let xs = body.bytes().take_while(|c| *c == b'x').count();
    let tail = &body[xs..];
    let last: usize = tail
        .strip_prefix("len=")
        .and_then(|t| t.strip_suffix(";late=wrong-phase"))
        .unwrap_or_else(|| panic!("unexpected tail {tail}"))
        .parse()
        .unwrap();
    assert!(xs > 0, "earlier chunks passed through unchanged");
    assert_eq!(xs + last, 4 * 64 * 1024);
}

/// The SDK's typed config: a route config read into the filter's own struct, unknown fields refused,
/// and an error reported at the YAML line and field path where the user wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_config_is_read_into_the_filters_type_and_its_errors_are_at_their_line() {
    let b = Backends::start().await;
    // The route by hand: its config is YAML (a map), not the string the `route` helper writes.
    let with = |config: &str| {
        let head = b.yaml(&[plugin("kitchen", kitchen(), "")], &[]);
        format!(
            "{head}routes:\n  - name: r\n    match: {{path: {{prefix: /r/}}}}\n    upstream: up\n    filters:\n      - plugin: kitchen\n        config: {config}\n"
        )
    };
    let gw = TestGateway::start(&with(
        "{request-body: skip, limits: [{per: minute, limit: 3}, {per: hour, limit: 4}]}",
    ))
    .await;
    let (_, h) = run(&gw, &b, "/r/x", "typed-config", &[]).await;
    assert_eq!(hv(&h, "x-config-limits"), "7");
    // The config is written as a block so each field has its own line.
    let block = "\n          limits:\n            - per: minute\n              limit: lots\n";
    let yaml = with(block);
    let e = refused(&yaml).await;
    let line = line_ending(&yaml, "limit: lots");
    let want = format!("test.yaml:{line}:");
    assert!(e.contains(&want), "{e}");
    assert!(
        e.contains("routes[0].filters[0].config.limits[0].limit"),
        "{e}"
    );
    assert!(e.contains("invalid type: string \"lots\""), "{e}");
    assert!(!e.contains("column 1"), "no position in the JSON: {e}");
    let block = "\n          request-body: skip\n          colour: red\n";
    let yaml = with(block);
    let e = refused(&yaml).await;
    let line = line_ending(&yaml, "colour: red");
    assert!(e.contains(&format!("test.yaml:{line}:")), "{e}");
    assert!(e.contains("routes[0].filters[0].config.colour"), "{e}");
    assert!(e.contains("unknown field"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_method_can_be_set_and_path_template_parameters_are_read() {
    let b = Backends::start().await;
    let templated = Route::new("t")
        .lines("    match: {path: {template: \"/t/{id}/items/{item}\"}}\n")
        .upstream("up")
        .filter("kitchen", "");
    let gw = b
        .gateway(
            &[plugin("kitchen", kitchen(), "")],
            &[route("h", "kitchen", "", ""), templated],
        )
        .await;
    // The method a filter sets is the one the upstream gets; a method that is not a token is refused.
    let (_, h) = run(&gw, &b, "/h/x", "method", &[("x-want-method", "PURGE")]).await;
    assert_eq!(hv(&h, "x-method-set"), "ok");
    assert_eq!(hv(&h, "x-method-bad"), "invalid");
    assert_eq!(hv(&h, "x-method-connect"), "invalid");
    assert_eq!(hv(&h, "x-method-now"), "PURGE");
    assert_eq!(b.up.last().method, "PURGE");
    // Template parameters in template order, percent-encoding kept; none on a prefix route.
    let (_, h) = run(&gw, &b, "/t/7/items/a%20b", "params", &[]).await;
    assert_eq!(hv(&h, "x-params"), "id=7,item=a%20b");
    assert_eq!(hv(&h, "x-param-id"), "7");
    let (_, h) = run(&gw, &b, "/h/7", "params", &[]).await;
    assert_eq!(hv(&h, "x-params"), "");
    assert_eq!(hv(&h, "x-param-id"), "-");
}
