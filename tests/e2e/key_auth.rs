//! The built-in `key-auth` plugin through the real gateway: consumers whose keys are written inline,
//! read from a file or from the environment, and a mock upstream that records what it saw, so every assertion about the
//! key and the consumer headers is about what really reached the upstream.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;

/// A route `/{name}` to the upstream `up` with key-auth configured by `config` (a YAML flow map's
/// inside).
fn route(name: &str, config: &str) -> Route {
    Route::new(name)
        .prefix(&format!("/{name}"))
        .upstream("up")
        .lines(&format!(
            "    filters: [{{plugin: key-auth, config: {{{config}}}}}]\n"
        ))
}

/// Asserts that `resp` is key-auth's 401 with `code`, the challenge of `realm`, and the request id
/// of its `x-request-id` header.
fn assert_refused(resp: &Resp, code: &str, realm: &str) {
    let (s, h, body) = resp;
    assert_eq!(*s, 401, "{body}");
    assert_eq!(hv(h, "www-authenticate"), format!("Key realm=\"{realm}\""));
    assert_eq!(hv(h, "content-type"), "application/json");
    let id = hv(h, "x-request-id");
    assert_eq!(id.len(), 16, "{body}");
    let v = json(body);
    assert_eq!(v["error"], code, "{body}");
    assert_eq!(v["request_id"], id.as_str(), "{body}");
}

/// A GET with headers that may repeat (each pair is its own header line).
async fn get_lines(url: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = http::Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    request(b.body(Full::new(Bytes::new())).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_name_consumers_and_everything_else_is_refused() {
    let up = MockUpstream::start("up").await;
    let dir = TempDir::new("key-auth");
    let bob_key = dir.0.join("bob.key");
    std::fs::write(&bob_key, "k-bob-from-file\n").unwrap();
    // A variable only this test reads (set before the gateway starts, read once when it loads).
    std::env::set_var("E2E_KEY_AUTH_CAROL_KEY", "k-carol-from-env");
    let consumers = format!(
        "consumers:\n\
         \x20 - name: alice\n    groups: [admins, ops]\n    credentials: {{key-auth: {{key: k-alice}}}}\n\
         \x20 - name: bob\n    credentials: {{key-auth: {{key: \"file:{}\"}}}}\n\
         \x20 - name: carol\n    credentials: {{key-auth: {{key: env:E2E_KEY_AUTH_CAROL_KEY}}}}\n\
         \x20 - name: guest\n",
        bob_key.display()
    );
    let config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .route(route("plain", ""))
        .route(route(
            "hidden",
            "key_names: [x-api-key, apikey], key_in_cookie: true, hide_credentials: true, realm: hidden API",
        ))
        .route(route("anon", "anonymous: guest, hide_credentials: true"))
        .raw(&consumers)
        .yaml();
    let gw = TestGateway::start(&config).await;

    // A key in the header: through as alice, who the upstream is told about; the key stays.
    let (s, _, body) = get_with(&gw.url("/plain/items"), &[("apikey", "k-alice")]).await;
    assert_eq!(s, 200, "{body}");
    let seen = up.last();
    assert_eq!(hv(&seen.headers, "x-consumer-username"), "alice");
    assert_eq!(hv(&seen.headers, "x-consumer-groups"), "admins, ops");
    assert_eq!(hv(&seen.headers, "apikey"), "k-alice");
    assert!(seen.headers.get("x-anonymous-consumer").is_none());
    // The key read from a file, in the query; a client's consumer headers are replaced.
    let spoofed = [
        ("x-consumer-username", "alice"),
        ("x-consumer-groups", "admins"),
        ("x-anonymous-consumer", "false"),
    ];
    let (s, _, body) = get_with(&gw.url("/plain/items?apikey=k-bob-from-file"), &spoofed).await;
    assert_eq!(s, 200, "{body}");
    let seen = up.last();
    assert_eq!(values(&seen.headers, "x-consumer-username"), ["bob"]);
    assert!(seen.headers.get("x-consumer-groups").is_none());
    assert!(seen.headers.get("x-anonymous-consumer").is_none());
    assert_eq!(seen.uri, "/plain/items?apikey=k-bob-from-file");
    // The key read from the environment; the variable's name is no key.
    let (s, _, body) = get_with(&gw.url("/plain/items"), &[("apikey", "k-carol-from-env")]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(hv(&up.last().headers, "x-consumer-username"), "carol");
    assert_refused(
        &get_with(
            &gw.url("/plain/items"),
            &[("apikey", "env:E2E_KEY_AUTH_CAROL_KEY")],
        )
        .await,
        "invalid_credentials",
        "gateway",
    );
    assert_eq!(up.hits(), 3);

    // Missing, unknown, duplicated: 401s with the challenge, and the upstream is not called.
    assert_refused(
        &get_with(&gw.url("/plain/items"), &spoofed).await,
        "missing_credentials",
        "gateway",
    );
    let refused = get_with(&gw.url("/plain/items"), &[("apikey", "k-mallory")]).await;
    assert_refused(&refused, "invalid_credentials", "gateway");
    assert!(!refused.2.contains("k-mallory"), "{}", refused.2);
    assert_refused(
        &get_lines(
            &gw.url("/plain/items"),
            &[("apikey", "k-alice"), ("apikey", "k-alice")],
        )
        .await,
        "malformed_credentials",
        "gateway",
    );
    assert_refused(
        &get(&gw.url("/plain/items?apikey=k-alice&apikey=k-bob-from-file")).await,
        "malformed_credentials",
        "gateway",
    );
    // The file's trailing newline is not part of the key.
    assert_refused(
        &get(&gw.url("/plain/items?apikey=k-bob-from-file%0A")).await,
        "invalid_credentials",
        "gateway",
    );
    assert_eq!(up.hits(), 3);

    // hide_credentials: the key never reaches the upstream, from a header, the query or a cookie.
    let (s, _, body) = get_with(
        &gw.url("/hidden/items?page=2"),
        &[("x-api-key", "k-alice"), ("x-other", "kept")],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let seen = up.last();
    assert_eq!(hv(&seen.headers, "x-consumer-username"), "alice");
    assert!(seen.headers.get("x-api-key").is_none());
    assert_eq!(hv(&seen.headers, "x-other"), "kept");
    assert_eq!(seen.uri, "/hidden/items?page=2");
    let (s, _, body) = get(&gw.url("/hidden/items?a=1&apikey=k-bob-from-file&b=x%20y")).await;
    assert_eq!(s, 200, "{body}");
    let seen = up.last();
    assert_eq!(hv(&seen.headers, "x-consumer-username"), "bob");
    assert_eq!(seen.uri, "/hidden/items?a=1&b=x%20y");
    let (s, _, body) = get_with(
        &gw.url("/hidden/items"),
        &[("cookie", "session=s1; apikey=k-alice; theme=dark")],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let seen = up.last();
    assert_eq!(hv(&seen.headers, "x-consumer-username"), "alice");
    assert_eq!(values(&seen.headers, "cookie"), ["session=s1; theme=dark"]);
    assert!(!format!("{seen:?}").contains("k-alice"), "{seen:?}");
    assert_refused(
        &get(&gw.url("/hidden/items")).await,
        "missing_credentials",
        "hidden API",
    );
    assert_eq!(up.hits(), 6);

    // anonymous: no key, or a wrong one, goes on as guest, without the key it carried.
    let (s, _, body) = get_with(&gw.url("/anon/items"), &[("x-consumer-username", "alice")]).await;
    assert_eq!(s, 200, "{body}");
    let seen = up.last();
    assert_eq!(values(&seen.headers, "x-consumer-username"), ["guest"]);
    assert_eq!(hv(&seen.headers, "x-anonymous-consumer"), "true");
    let (s, h, body) = get(&gw.url("/anon/items?apikey=k-mallory&page=3")).await;
    assert_eq!(s, 200, "{body}");
    assert!(h.get("www-authenticate").is_none());
    let seen = up.last();
    assert_eq!(hv(&seen.headers, "x-consumer-username"), "guest");
    assert_eq!(seen.uri, "/anon/items?page=3");
    let (s, _, body) = get_with(&gw.url("/anon/items"), &[("apikey", "k-alice")]).await;
    assert_eq!(s, 200, "{body}");
    let seen = up.last();
    assert_eq!(hv(&seen.headers, "x-consumer-username"), "alice");
    assert!(seen.headers.get("x-anonymous-consumer").is_none());
    assert!(seen.headers.get("apikey").is_none());
    assert_eq!(up.hits(), 9);

    let m = gw.metrics().await;
    let series = |outcome: &str| format!(r#"plugin_key_auth_{outcome}_total{{plugin="key-auth"}}"#);
    assert_eq!(metric(&m, &series("authenticated")), Some(7.0), "{m}");
    assert_eq!(metric(&m, &series("anonymous")), Some(2.0), "{m}");
    assert_eq!(metric(&m, &series("refused")), Some(7.0), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_reported_at_its_line() {
    let consumers = "consumers:\n  - name: alice\n    credentials: {key-auth: {key: k-alice}}\n";
    let config = GatewayConfig::new()
        .route(Route::new("r").respond("hi").lines(
            "    filters:\n      - plugin: key-auth\n        config:\n          key_names:\n            - x-api-key\n            - api key\n",
        ))
        .raw(consumers)
        .yaml();
    let err = refused(&config).await;
    let line = line_ending(&config, "- api key");
    let want =
        format!("test.yaml:{line}:15: routes[0].filters[0].config.key_names[1]: plugin `key-auth`");
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("`api key` is not a valid name"), "{err}");

    // An anonymous consumer the config does not have: at the `anonymous` line.
    let config = GatewayConfig::new()
        .route(Route::new("r").respond("hi").lines(
            "    filters:\n      - plugin: key-auth\n        config:\n          hide_credentials: true\n          anonymous: nobody\n",
        ))
        .raw(consumers)
        .yaml();
    let err = refused(&config).await;
    let line = line_ending(&config, "anonymous: nobody");
    assert!(
        err.contains(&format!(
            "test.yaml:{line}:11: routes[0].filters[0].config.anonymous: plugin `key-auth`"
        )) && err.contains("no consumer is called `nobody`"),
        "{err}"
    );

    // An unknown field (Kong's `key_in_body`): at its own line, not at `config:`.
    let config = GatewayConfig::new()
        .route(Route::new("r").respond("hi").lines(
            "    filters:\n      - plugin: key-auth\n        config:\n          hide_credentials: true\n          key_in_body: true\n",
        ))
        .raw(consumers)
        .yaml();
    let err = refused(&config).await;
    let line = line_ending(&config, "key_in_body: true");
    assert!(
        err.contains(&format!(
            "test.yaml:{line}:11: routes[0].filters[0].config.key_in_body: plugin `key-auth`"
        )) && err.contains("unknown field (expected one of key_names,"),
        "{err}"
    );
}
