//! The built-in `request-validation` plugin through the real gateway: JSON Schemas on a route with a
//! path template (its parameters are checked), an OpenAPI document on another; a bad request is
//! answered 400 with each violation and never reaches the mock upstream, a good one reaches it with
//! its body unchanged.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;

/// The filter with `config` (YAML lines, indented for a `config:` of a route's filter entry).
fn filter(config: &str) -> String {
    format!("    filters:\n      - plugin: request-validation\n        config:\n{config}")
}

const ORDERS: &str = "          body_schema:
            type: object
            required: [items]
            properties:
              items:
                type: array
                minItems: 1
                items:
                  type: object
                  required: [sku]
                  properties:
                    sku: {type: string}
                    qty: {type: integer, minimum: 1}
          query_schema:
            type: object
            properties: {notify: {type: boolean}}
          path_schema:
            type: object
            properties: {shop: {type: integer, minimum: 1}}
";

const API: &str = "          openapi:
            openapi: 3.1.0
            info: {title: users, version: '1'}
            servers: [{url: /api}]
            paths:
              /users/{id}:
                get:
                  parameters:
                    - {name: id, in: path, required: true, schema: {type: integer, minimum: 1}}
                    - {name: expand, in: query, schema: {type: array, items: {enum: [groups, keys]}}}
";

fn post(url: &str, body: &str) -> http::Request<Full<Bytes>> {
    http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// The `in:pointer` of each violation of a refusal.
fn violations(body: &str) -> Vec<String> {
    json(body)["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["in"].as_str().unwrap(),
                e["pointer"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_before_the_upstream_and_good_ones_pass_unchanged() {
    let up = MockUpstream::start("up").await;
    let config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .route(
            Route::new("orders")
                .upstream("up")
                .lines("    match: {path: {template: \"/shops/{shop}/orders\"}}\n")
                .lines(&filter(ORDERS)),
        )
        .route(
            Route::new("api")
                .prefix("/api")
                .upstream("up")
                .lines(&filter(API)),
        )
        .yaml();
    let gw = TestGateway::start(&config).await;

    // A good order: through, the body as sent.
    let order = r#"{"items": [{"sku": "A-1", "qty": 2}]}"#;
    let (s, h, body) = request(post(&gw.url("/shops/3/orders?notify=true"), order)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(hv(&h, "x-upstream"), "up");
    assert_eq!(up.hits(), 1);
    let seen = up.last();
    assert_eq!(seen.method, http::Method::POST);
    assert_eq!(seen.uri, "/shops/3/orders?notify=true");
    assert_eq!(seen.body, order.as_bytes());

    // A bad one: every violation, body and parameters, with its pointer; the upstream never sees it.
    let (s, h, body) = request(post(
        &gw.url("/shops/0/orders?notify=often"),
        r#"{"items": [{"qty": 0}, {"sku": 7}]}"#,
    ))
    .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(hv(&h, "content-type"), "application/json");
    assert_eq!(
        violations(&body),
        [
            "query:/notify",
            "path:/shop",
            "body:/items/0/qty",
            "body:/items/0/sku",
            "body:/items/1/sku"
        ],
        "{body}"
    );
    let first = &json(&body)["errors"][2];
    assert_eq!(first["expected"], ">= 1", "{body}");
    assert_eq!(json(&body)["message"], "the request is not valid");
    // Not JSON, and no body at all.
    let (s, _, body) = request(post(&gw.url("/shops/1/orders"), "{\"items\": [")).await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(violations(&body), ["body:"]);
    let (s, _, body) = get(&gw.url("/shops/1/orders")).await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(
        json(&body)["errors"][0]["message"],
        "the request has no body"
    );
    assert_eq!(up.hits(), 1);

    // The OpenAPI route: the operation by path template under the servers' base path.
    let (s, _, body) = get(&gw.url("/api/users/7?expand=groups&expand=keys")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(up.last().uri, "/api/users/7?expand=groups&expand=keys");
    let (s, _, body) = get(&gw.url("/api/users/x?expand=all")).await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(violations(&body), ["query:/expand/0", "path:/id"], "{body}");
    let (s, _, body) = get(&gw.url("/api/groups")).await;
    assert_eq!(s, 404, "{body}");
    let (s, h, body) = request(post(&gw.url("/api/users/7"), "{}")).await;
    assert_eq!(s, 405, "{body}");
    assert_eq!(hv(&h, "allow"), "GET");
    assert_eq!(up.hits(), 2);

    let m = gw.metrics().await;
    let series = |outcome: &str| {
        format!(r#"plugin_request_validation_{outcome}_total{{plugin="request-validation"}}"#)
    };
    assert_eq!(metric(&m, &series("passed")), Some(2.0), "{m}");
    assert_eq!(metric(&m, &series("rejected")), Some(6.0), "{m}");

    // Run here rather than as a test of its own: the plugin is compiled once (then cached on disk),
    // where two tests at once would both compile it (~50 s of CPU each in a debug build).
    a_schema_that_does_not_compile_is_reported_at_its_line().await;
}

async fn a_schema_that_does_not_compile_is_reported_at_its_line() {
    let config = GatewayConfig::new()
        .route(Route::new("r").respond("hi").lines(&filter(
            "          body_schema:\n            properties:\n              price: {type: nmber}\n",
        )))
        .yaml();
    let err = refused(&config).await;
    let line = line_ending(&config, "price: {type: nmber}");
    assert!(
        err.contains(&format!(
            "test.yaml:{line}:23: routes[0].filters[0].config.body_schema.properties.price.type"
        )),
        "{err}"
    );
    assert!(err.contains("not a valid schema"), "{err}");
}
