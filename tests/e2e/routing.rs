//! Routing through the real gateway: matchers, precedence, redirects, direct responses, 404.

use crate::harness::*;

/// Every route answers with its own name, so the test sees which one matched.
fn named(name: &str, matcher: &str) -> String {
    format!("  - name: {name}\n    match: {matcher}\n    direct_response: {{status: 200, body: {name}}}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precedence_most_specific_first_then_declaration_order() {
    let mut y = String::from("routes:\n");
    y += &named("catch-all", "{}");
    y += &named("prefix-api", "{path: {prefix: /api}}");
    y += &named("prefix-api-v1", "{path: {prefix: /api/v1}}");
    y += &named("regex-v1", "{path: {regex: \"/api/v1/[0-9]+\"}}");
    y += &named(
        "template-item",
        "{path: {template: \"/api/v1/items/{id}\"}}",
    );
    y += &named("exact-health", "{path: {exact: /api/v1/health}}");
    y += &named(
        "post-only",
        "{path: {exact: /api/v1/health}, methods: [POST]}",
    );
    y += &named(
        "with-header",
        "{path: {prefix: /api}, headers: [{name: x-beta, present: true}]}",
    );
    y += &named(
        "with-query",
        "{path: {prefix: /api}, query: [{name: debug, exact: \"1\"}]}",
    );
    y += &named(
        "header-regex",
        "{path: {prefix: /re}, headers: [{name: x-v, regex: \"v[12]\"}]}",
    );
    y += &named("host-exact", "{host: api.example.com}");
    y += &named("host-wild", "{host: \"*.example.com\"}");
    y += &named(
        "host-wild-first",
        "{host: \"*.example.com\", path: {prefix: /dup}}",
    );
    y += &named(
        "host-wild-second",
        "{host: \"*.example.com\", path: {prefix: /dup}}",
    );
    let gw = TestGateway::start(&y).await;
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        ("/", vec![], "catch-all"),
        ("/api/x", vec![], "prefix-api"),
        ("/api/v1/x", vec![], "prefix-api-v1"),
        ("/api/v1/123", vec![], "regex-v1"),
        ("/api/v1/items/9", vec![], "template-item"),
        ("/api/v1/health", vec![], "exact-health"),
        ("/api/x", vec![("x-beta", "yes")], "with-header"),
        ("/api/x?debug=1", vec![], "with-query"),
        ("/api/x?debug=2", vec![], "prefix-api"),
        ("/re", vec![("x-v", "v2")], "header-regex"),
        ("/re", vec![("x-v", "v3")], "catch-all"),
        ("/", vec![("host", "api.example.com")], "host-exact"),
        ("/", vec![("host", "API.Example.com:8080")], "host-exact"),
        ("/", vec![("host", "www.example.com")], "host-wild"),
        ("/dup", vec![("host", "a.b.example.com")], "host-wild-first"),
        ("/", vec![("host", "example.com")], "catch-all"),
    ];
    for (path, headers, want) in cases {
        let (status, _, body) = get_with(&gw.url(path), &headers).await;
        assert_eq!((status, body.as_str()), (200, want), "{path} {headers:?}");
    }
    let req = http::Request::post(gw.url("/api/v1/health"))
        .body(Default::default())
        .unwrap();
    assert_eq!(request(req).await.2, "post-only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_a_404_with_a_json_body() {
    let gw = TestGateway::start(
        &named("only", "{path: {exact: /only}}").replace("  - ", "routes:\n  - "),
    )
    .await;
    let (status, headers, body) = get(&gw.url("/other")).await;
    assert_eq!(status, 404);
    assert_eq!(headers["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "no_route");
    assert!(gw
        .metrics()
        .await
        .contains("gateway_requests_total{route=\"\",status=\"404\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_and_direct_responses() {
    let gw = TestGateway::start(
        "routes:\n\
         \x20 - name: to-https\n    match: {path: {prefix: /secure}}\n    redirect: {status: 308, scheme: https}\n\
         \x20 - name: moved\n    match: {path: {prefix: /old}}\n    redirect: {status: 301, host: new.example.com, port: 8443, path: /new}\n\
         \x20 - name: same-host\n    match: {path: {prefix: /here}}\n    redirect: {path: /there}\n\
         \x20 - name: teapot\n    match: {path: {exact: /tea}}\n    direct_response: {status: 418, body: \"short and stout\\n\", headers: {content-type: text/plain, x-pot: yes}}\n\
         \x20 - name: tagged\n    match: {path: {exact: /tagged}}\n    direct_response: {status: 200}\n    response_headers: {set: {x-tag: t1}, add: {x-multi: b}}\n",
    )
    .await;
    let (s, h, _) = get_with(&gw.url("/secure/a?x=1"), &[("host", "shop.example.com")]).await;
    assert_eq!(s, 308);
    assert_eq!(h["location"], "https://shop.example.com/secure/a?x=1");
    let (s, h, _) = get_with(&gw.url("/old/page?q=2"), &[("host", "old.example.com")]).await;
    assert_eq!(s, 301);
    assert_eq!(h["location"], "http://new.example.com:8443/new?q=2");
    let (s, h, _) = get(&gw.url("/here")).await;
    assert_eq!(s, 302);
    assert_eq!(
        h["location"],
        format!("http://127.0.0.1:{}/there", gw.addr.port())
    );
    let (s, h, b) = get(&gw.url("/tea")).await;
    assert_eq!((s, b.as_str()), (418, "short and stout\n"));
    assert_eq!(h["x-pot"], "yes");
    let (s, h, _) = get(&gw.url("/tagged")).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-tag"], "t1");
    assert_eq!(h["x-multi"], "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_routes_route_correctly() {
    let mut y = String::from("routes:\n");
    for i in 0..10_000 {
        match i % 4 {
            0 => y += &format!("  - name: r{i}\n    match: {{path: {{exact: /exact/{i}}}}}\n    direct_response: {{body: r{i}}}\n"),
            1 => y += &format!("  - name: r{i}\n    match: {{path: {{prefix: /prefix/{i}/}}}}\n    direct_response: {{body: r{i}}}\n"),
            2 => y += &format!("  - name: r{i}\n    match: {{path: {{template: \"/t/{i}/{{id}}\"}}}}\n    direct_response: {{body: r{i}}}\n"),
            _ => y += &format!("  - name: r{i}\n    match: {{host: h{i}.example.com}}\n    direct_response: {{body: r{i}}}\n"),
        }
    }
    let gw = TestGateway::start(&y).await;
    for i in [0usize, 4, 5000, 9996] {
        assert_eq!(
            get(&gw.url(&format!("/exact/{i}"))).await.2,
            format!("r{i}")
        );
    }
    for i in [1usize, 9997] {
        assert_eq!(
            get(&gw.url(&format!("/prefix/{i}/deep/path"))).await.2,
            format!("r{i}")
        );
    }
    for i in [2usize, 9998] {
        assert_eq!(
            get(&gw.url(&format!("/t/{i}/abc"))).await.2,
            format!("r{i}")
        );
    }
    let (_, _, b) = get_with(&gw.url("/"), &[("host", "h9999.example.com")]).await;
    assert_eq!(b, "r9999");
    assert_eq!(get(&gw.url("/exact/1")).await.0, 404);
}
