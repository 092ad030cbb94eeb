//! Header hygiene, forwarded headers and rewrites.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_and_host_pass_through() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(&[up.addr], "", "")).await;
    let r = get_with(
        &gw.url("/fwd"),
        &[
            ("host", "front.example:8080"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
    )
    .await;
    assert_eq!(r.0, 200, "{r:?}");
    let h = up.last().headers;
    assert_eq!(
        values(&h, "x-forwarded-for"),
        vec!["203.0.113.9, 127.0.0.1"]
    );
    assert_eq!(values(&h, "x-forwarded-proto"), vec!["http"]);
    assert_eq!(values(&h, "x-forwarded-host"), vec!["front.example:8080"]);
    assert_eq!(
        values(&h, "host"),
        vec!["front.example:8080"],
        "Host passed through"
    );

    // Without a client X-Forwarded-For the header is just the client address.
    get(&gw.url("/fwd2")).await;
    let h = up.last().headers;
    assert_eq!(values(&h, "x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(values(&h, "host"), vec![gw.addr.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_is_rewritten_when_configured() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(
        &[up.addr],
        "",
        "    rewrite: {host: users.internal}\n",
    ))
    .await;
    let r = get_with(&gw.url("/h"), &[("host", "front.example")]).await;
    assert_eq!(r.0, 200);
    let h = up.last().headers;
    assert_eq!(values(&h, "host"), vec!["users.internal"]);
    assert_eq!(
        values(&h, "x-forwarded-host"),
        vec!["front.example"],
        "the original Host"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_not_forwarded_to_the_upstream() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(&[up.addr], "", "")).await;
    let req = b"GET /hop HTTP/1.1\r\nHost: front.example\r\nConnection: close, x-secret\r\nX-Secret: named by Connection\r\nKeep-Alive: timeout=5\r\nTE: gzip;q=0.5\r\nTrailer: x-checksum\r\nUpgrade: websocket\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\nProxy-Connection: keep-alive\r\nX-Keep: yes\r\n\r\n";
    let resp = raw(gw.addr, req, Duration::from_millis(1000)).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(up.hits(), 1);
    let h = up.last().headers;
    for name in [
        "connection",
        "x-secret",
        "keep-alive",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(!h.contains_key(name), "{name} reached the upstream: {h:?}");
    }
    assert_eq!(
        values(&h, "x-keep"),
        vec!["yes"],
        "end-to-end headers are kept"
    );
    assert_eq!(values(&h, "host"), vec!["front.example"]);
    // TE is the gateway's own: the client's codings are not passed on, the gateway asks for trailers.
    assert_eq!(values(&h, "te"), vec!["trailers"]);
    // Trailer is end-to-end (RFC 9110) and kept, so that the trailers it declares pass through.
    assert_eq!(values(&h, "trailer"), vec!["x-checksum"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_not_forwarded_to_the_client() {
    let (addr, task) = fixed_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: x-secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nProxy-Agent: up\r\nTrailer: x-t\r\nX-Keep: yes\r\n\r\nok",
    )
    .await;
    let gw = TestGateway::start(&one_route(&[addr], "", "")).await;
    let r = get(&gw.url("/resp")).await;
    assert_eq!((r.0, r.2.as_str()), (200, "ok"), "{r:?}");
    for name in [
        "x-secret",
        "keep-alive",
        "proxy-authenticate",
        "proxy-agent",
    ] {
        assert!(
            !r.1.contains_key(name),
            "{name} reached the client: {:?}",
            r.1
        );
    }
    assert!(
        r.1.get("connection")
            .is_none_or(|v| !v.to_str().unwrap_or("").contains("x-secret")),
        "{:?}",
        r.1
    );
    assert_eq!(values(&r.1, "x-keep"), vec!["yes"]);
    assert_eq!(
        values(&r.1, "trailer"),
        vec!["x-t"],
        "Trailer is end-to-end"
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_response_header_changes_reach_their_targets() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(
        &[up.addr],
        "",
        "    request_headers: {set: {x-team: core}, add: {x-via: gw}, remove: [x-internal]}\n    response_headers: {set: {cache-control: no-store, x-upstream: hidden}}\n",
    ))
    .await;
    let r = get_with(
        &gw.url("/ops"),
        &[
            ("x-team", "other"),
            ("x-via", "client"),
            ("x-internal", "secret"),
            ("x-other", "kept"),
        ],
    )
    .await;
    assert_eq!(r.0, 200);
    let h = up.last().headers;
    assert_eq!(values(&h, "x-team"), vec!["core"], "set replaces");
    assert_eq!(values(&h, "x-via"), vec!["client", "gw"], "add appends");
    assert!(!h.contains_key("x-internal"), "remove removes");
    assert_eq!(values(&h, "x-other"), vec!["kept"]);
    assert_eq!(values(&r.1, "cache-control"), vec!["no-store"]);
    assert_eq!(
        values(&r.1, "x-upstream"),
        vec!["hidden"],
        "set replaces the upstream's value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_rewrites_keep_the_query() {
    let up = MockUpstream::start("up").await;
    let yaml = format!(
        "upstreams:
  - name: up
    endpoints: [\"{}\"]
routes:
  - name: strip
    match: {{path: {{prefix: /api}}}}
    upstream: up
    rewrite: {{strip_prefix: /api}}
  - name: fixed
    match: {{path: {{prefix: /old}}}}
    upstream: up
    rewrite: {{path: /fixed}}
  - name: tmpl
    match: {{path: {{template: \"/users/{{id}}\"}}}}
    upstream: up
    rewrite: {{template: \"/v2/u/{{id}}\"}}
  - name: two
    match: {{path: {{template: \"/orgs/{{org}}/repos/{{repo}}\"}}}}
    upstream: up
    rewrite: {{template: \"/r/{{repo}}/of/{{org}}\"}}
",
        up.addr
    );
    let gw = TestGateway::start(&yaml).await;
    let cases = [
        ("/api/users/7?x=1&y=2", "/users/7?x=1&y=2"),
        ("/api", "/"),
        ("/api?only=query", "/?only=query"),
        ("/old/anything?q=1", "/fixed?q=1"),
        ("/users/42", "/v2/u/42"),
        (
            "/users/42?expand=true&f=a%20b",
            "/v2/u/42?expand=true&f=a%20b",
        ),
        (
            "/orgs/acme/repos/rocket?tab=code",
            "/r/rocket/of/acme?tab=code",
        ),
    ];
    for (sent, expected) in cases {
        let r = get(&gw.url(sent)).await;
        assert_eq!(r.0, 200, "{sent}: {r:?}");
        assert_eq!(up.last().uri, expected, "{sent}");
    }
    // A template matches whole segments only.
    let before = up.hits();
    let r = get(&gw.url("/users/42/extra")).await;
    assert_eq!((r.0, error_code(&r.2).as_str()), (404, "no_route"));
    assert_eq!(up.hits(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_rewrite_substitutes_each_parameter_once() {
    let up = MockUpstream::start("up").await;
    let yaml = format!(
        "upstreams:\n  - name: up\n    endpoints: [\"{}\"]\nroutes:\n  - name: two\n    match: {{path: {{template: \"/orgs/{{org}}/repos/{{repo}}\"}}}}\n    upstream: up\n    rewrite: {{template: \"/r/{{repo}}/of/{{org}}\"}}\n",
        up.addr
    );
    let gw = TestGateway::start(&yaml).await;
    // The client's `org` segment is the literal text `{repo}`.
    let resp = raw(
        gw.addr,
        b"GET /orgs/{repo}/repos/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        Duration::from_millis(1000),
    )
    .await;
    let uris: Vec<String> = up.seen().into_iter().map(|s| s.uri).collect();
    match status_of(&resp) {
        // Refusing the (strictly invalid) braces is fine; forwarding them must keep them as they are.
        400 => assert!(uris.is_empty(), "{uris:?}"),
        200 => assert_eq!(
            uris,
            vec!["/r/x/of/{repo}"],
            "each parameter is substituted once"
        ),
        _ => panic!("unexpected answer: {resp}"),
    }
}
