//! The built-in `basic-auth` plugin through the real gateway, alone and as an alternative to
//! `key-auth`: consumers with usernames and passwords, and a mock upstream that records what it saw,
//! so every assertion about credentials and consumer headers is about what reached the upstream.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;

/// A route `/{name}` to the upstream `up` with basic-auth configured by `config` (a YAML flow map's
/// inside).
fn route(name: &str, config: &str) -> Route {
    Route::new(name)
        .prefix(&format!("/{name}"))
        .upstream("up")
        .lines(&format!(
            "    filters: [{{plugin: basic-auth, config: {{{config}}}}}]\n"
        ))
}

/// `Basic base64(user:password)`.
fn basic(user_pass: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("Basic ");
    for chunk in user_pass.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Asserts that `resp` is basic-auth's 401 with `code`, the challenge of `realm`, and the request
/// id of its `x-request-id` header.
fn assert_refused(resp: &Resp, code: &str, realm: &str) {
    let (s, h, body) = resp;
    assert_eq!(*s, 401, "{body}");
    assert_eq!(
        hv(h, "www-authenticate"),
        format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")
    );
    assert_eq!(hv(h, "content-type"), "application/json");
    let id = hv(h, "x-request-id");
    assert_eq!(id.len(), 16, "{body}");
    let v = json(body);
    assert_eq!(v["error"], code, "{body}");
    assert_eq!(v["request_id"], id.as_str(), "{body}");
}

const CONSUMERS: &str = "consumers:\n\
    \x20 - name: alice\n    groups: [staff]\n    credentials: {basic-auth: {username: alice, password: \"open:sesame\"}}\n\
    \x20 - name: bob\n    credentials:\n      basic-auth: {username: bob, password: b0b}\n      key-auth: {key: k-bob}\n\
    \x20 - name: public\n";

#[test]
fn the_test_encoder_is_base64() {
    // RFC 7617's example, and the three padding cases.
    assert_eq!(
        basic("Aladdin:open sesame"),
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
    assert_eq!(basic("a:b"), "Basic YTpi");
    assert_eq!(basic("a:bc"), "Basic YTpiYw==");
    assert_eq!(basic("a:bcd"), "Basic YTpiY2Q=");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_name_consumers_and_everything_else_is_refused() {
    let up = MockUpstream::start("up").await;
    let config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .route(route("plain", ""))
        .route(route("hidden", "realm: Staff area, hide_credentials: true"))
        .route(route("anon", "anonymous: public, hide_credentials: true"))
        .raw(CONSUMERS)
        .yaml();
    let gw = TestGateway::start(&config).await;
    let alice = basic("alice:open:sesame");

    // A good login, the password holding `:`: through as alice; the header stays.
    let spoofed = [
        ("authorization", alice.as_str()),
        ("x-consumer-username", "bob"),
        ("x-credential-identifier", "bob"),
        ("x-anonymous-consumer", "true"),
    ];
    let (s, _, body) = get_with(&gw.url("/plain/x"), &spoofed).await;
    assert_eq!(s, 200, "{body}");
    let seen = up.last();
    assert_eq!(values(&seen.headers, "x-consumer-username"), ["alice"]);
    assert_eq!(hv(&seen.headers, "x-consumer-groups"), "staff");
    assert_eq!(values(&seen.headers, "x-credential-identifier"), ["alice"]);
    assert!(seen.headers.get("x-anonymous-consumer").is_none());
    assert_eq!(hv(&seen.headers, "authorization"), alice);
    // Credentials in Proxy-Authorization reach the plugin (hop-by-hop: never forwarded), unless the
    // client's Connection names it.
    let (s, _, body) = get_with(
        &gw.url("/plain/x"),
        &[("proxy-authorization", alice.as_str())],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(values(&up.last().headers, "x-consumer-username"), ["alice"]);
    assert!(up.last().headers.get("proxy-authorization").is_none());
    let named = [
        ("proxy-authorization", alice.as_str()),
        ("connection", "proxy-authorization"),
    ];
    assert_refused(
        &get_with(&gw.url("/plain/x"), &named).await,
        "missing_credentials",
        "gateway",
    );
    // A lower-case scheme.
    let lower = basic("bob:b0b").replace("Basic", "basic");
    let (s, _, body) = get_with(&gw.url("/plain/x"), &[("authorization", &lower)]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(hv(&up.last().headers, "x-consumer-username"), "bob");
    assert_eq!(up.hits(), 3);

    // Missing, malformed, wrong: 401s with the challenge, and the upstream is not called.
    let plain = gw.url("/plain/x");
    let refusals = [
        (vec![], "missing_credentials"),
        (
            vec![("x-consumer-username", "alice")],
            "missing_credentials",
        ),
        (vec![("authorization", "Bearer abc")], "missing_credentials"),
        (vec![("authorization", "Basic")], "malformed_credentials"),
        (
            vec![("authorization", "Basic alice:open:sesame")],
            "malformed_credentials",
        ),
        (
            vec![("authorization", "Basic YWxpY2U=")],
            "malformed_credentials",
        ),
        (
            vec![("authorization", "Basic YWxpY2U6cHd=")],
            "malformed_credentials",
        ),
    ];
    for (headers, code) in &refusals {
        assert_refused(&get_with(&plain, headers).await, code, "gateway");
    }
    for wrong in [
        "alice:open",
        "alice:open:sesame:",
        "Alice:open:sesame",
        "mallory:open:sesame",
    ] {
        let refused = get_with(&plain, &[("authorization", &basic(wrong))]).await;
        assert_refused(&refused, "invalid_credentials", "gateway");
        assert!(!refused.2.contains("alice") && !refused.2.contains("mallory"));
    }
    // Authorization twice, even with good credentials.
    let twice = http::Request::get(&plain)
        .header("authorization", &alice)
        .header("authorization", &alice)
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_refused(&request(twice).await, "malformed_credentials", "gateway");
    assert_eq!(up.hits(), 3);

    // hide_credentials: the password never reaches the upstream.
    let (s, _, body) = get_with(&gw.url("/hidden/x"), &[("authorization", &alice)]).await;
    assert_eq!(s, 200, "{body}");
    let seen = up.last();
    assert_eq!(hv(&seen.headers, "x-consumer-username"), "alice");
    assert!(seen.headers.get("authorization").is_none());
    assert!(!format!("{seen:?}").contains(&alice[6..]), "{seen:?}");
    assert_refused(
        &get_with(
            &gw.url("/hidden/x"),
            &[("authorization", &basic("alice:nope"))],
        )
        .await,
        "invalid_credentials",
        "Staff area",
    );
    assert_eq!(up.hits(), 4);

    // anonymous: no, wrong or malformed credentials go on as `public`, without them.
    for headers in [
        vec![],
        vec![("authorization", basic("alice:nope"))],
        vec![("authorization", "Basic !".to_owned())],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, h, body) = get_with(&gw.url("/anon/x"), &headers).await;
        assert_eq!(s, 200, "{body}");
        assert!(h.get("www-authenticate").is_none());
        let seen = up.last();
        assert_eq!(hv(&seen.headers, "x-consumer-username"), "public");
        assert_eq!(hv(&seen.headers, "x-anonymous-consumer"), "true");
        assert!(seen.headers.get("authorization").is_none());
        assert!(seen.headers.get("x-credential-identifier").is_none());
    }
    assert_eq!(up.hits(), 7);

    let m = gw.metrics().await;
    let series =
        |outcome: &str| format!(r#"plugin_basic_auth_{outcome}_total{{plugin="basic-auth"}}"#);
    assert_eq!(metric(&m, &series("authenticated")), Some(4.0), "{m}");
    assert_eq!(metric(&m, &series("anonymous")), Some(3.0), "{m}");
    assert_eq!(metric(&m, &series("refused")), Some(14.0), "{m}");
}

/// With `anonymous` on both, key-auth and basic-auth are alternatives (Kong's "logical OR"): either
/// credential gets a client in as its consumer, neither gets it in as the anonymous one, and the
/// second plugin does not undo what the first decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_anonymous_key_auth_and_basic_auth_are_alternatives() {
    let up = MockUpstream::start("up").await;
    let config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .route(Route::new("api").upstream("up").lines(
            "    filters:\n\
             \x20     - plugin: key-auth\n        config: {anonymous: public, hide_credentials: true}\n\
             \x20     - plugin: basic-auth\n        config: {anonymous: public, hide_credentials: true}\n",
        ))
        .raw(CONSUMERS)
        .yaml();
    let gw = TestGateway::start(&config).await;
    let who = |resp: Resp| {
        assert_eq!(resp.0, 200, "{}", resp.2);
        let seen = up.last();
        assert!(seen.headers.get("apikey").is_none());
        assert!(seen.headers.get("authorization").is_none());
        (
            hv(&seen.headers, "x-consumer-username"),
            hv(&seen.headers, "x-anonymous-consumer"),
            hv(&seen.headers, "x-credential-identifier"),
        )
    };
    let s = |v: &str| v.to_owned();
    // A key: bob, by key-auth; basic-auth leaves him (and hides the wrong password it carries).
    let resp = get_with(
        &gw.url("/x"),
        &[("apikey", "k-bob"), ("authorization", &basic("alice:nope"))],
    )
    .await;
    assert_eq!(who(resp), (s("bob"), s(""), s("")));
    // A password: key-auth lets it on as anonymous, basic-auth makes it alice.
    let resp = get_with(
        &gw.url("/x"),
        &[("authorization", &basic("alice:open:sesame"))],
    )
    .await;
    assert_eq!(who(resp), (s("alice"), s(""), s("alice")));
    // Neither: anonymous.
    let resp = get_with(&gw.url("/x?apikey=k-nobody"), &[]).await;
    assert_eq!(who(resp), (s("public"), s("true"), s("")));
    assert_eq!(up.last().uri, "/x");
}

/// Each with an anonymous consumer of its own (key-auth's `guest`, basic-auth's `public`), the two
/// are still alternatives: a request key-auth let on as `guest` is anonymous to basic-auth too (by
/// `x-anonymous-consumer`, not by the name), so basic-auth checks its password, and acl after them
/// decides about the consumer the upstream is told about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_plugins_anonymous_consumer_does_not_skip_a_good_password() {
    let up = MockUpstream::start("up").await;
    let consumers = format!("{CONSUMERS}\x20 - name: guest\n    groups: [visitors]\n");
    let config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .route(Route::new("api").upstream("up").lines(
            "    filters:\n\
             \x20     - plugin: key-auth\n        config: {anonymous: guest}\n\
             \x20     - plugin: basic-auth\n        config: {anonymous: public}\n\
             \x20     - plugin: acl\n        config: {allow: [staff, bob]}\n",
        ))
        .raw(&consumers)
        .yaml();
    let gw = TestGateway::start(&config).await;

    // No key: guest to key-auth; alice's password makes it alice, whom acl lets in.
    let (s, _, body) = get_with(
        &gw.url("/x"),
        &[("authorization", &basic("alice:open:sesame"))],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let seen = up.last();
    assert_eq!(values(&seen.headers, "x-consumer-username"), ["alice"]);
    assert_eq!(hv(&seen.headers, "x-consumer-groups"), "staff");
    assert!(seen.headers.get("x-anonymous-consumer").is_none());
    // Bob's key: basic-auth leaves him as he is.
    let (s, _, body) = get_with(&gw.url("/x"), &[("apikey", "k-bob")]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(values(&up.last().headers, "x-consumer-username"), ["bob"]);
    // Neither: basic-auth's anonymous consumer, whom acl does not let in.
    let (s, _, body) = get(&gw.url("/x")).await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(up.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_realm_is_reported_at_its_line() {
    let config = GatewayConfig::new()
        .route(Route::new("r").respond("hi").lines(
            "    filters:\n      - plugin: basic-auth\n        config:\n          hide_credentials: true\n          realm: say \"hi\"\n",
        ))
        .yaml();
    let err = refused(&config).await;
    let line = line_ending(&config, "realm: say \"hi\"");
    let want =
        format!("test.yaml:{line}:11: routes[0].filters[0].config.realm: plugin `basic-auth`");
    assert!(err.contains(&want), "{err}");
    assert!(
        err.contains("cannot be written in `WWW-Authenticate`"),
        "{err}"
    );
}
