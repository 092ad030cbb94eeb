//! The built-in `ip-restriction` plugin through the real gateway: the test client connects from
//! 127.0.0.1 (or ::1), so each route's lists decide about that address; the upstream is a mock that
//! counts hits.

use crate::harness::*;

/// A route `/{name}` to the upstream `up` with the plugin configured by `config` (a YAML flow map's
/// inside).
fn route(name: &str, config: &str) -> Route {
    Route::new(name)
        .prefix(&format!("/{name}"))
        .upstream("up")
        .lines(&format!(
            "    filters: [{{plugin: ip-restriction, config: {{{config}}}}}]\n"
        ))
}

/// Asserts that `resp` is the plugin's refusal, with the request id of its `x-request-id` header.
fn assert_refused(resp: &Resp, status: u16, message: &str) {
    let (s, h, body) = resp;
    assert_eq!(*s, status, "{body}");
    assert_eq!(hv(h, "content-type"), "application/json");
    assert_eq!(values(h, "x-request-id").len(), 1);
    let id = hv(h, "x-request-id");
    assert_eq!(id.len(), 16, "{body}");
    assert_eq!(
        json(body),
        serde_json::json!({"error": "ip_denied", "message": message, "request_id": id})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lists_decide_about_the_clients_address() {
    let up = MockUpstream::start("up").await;
    let config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .route(route("allowed", r#"allow: ["127.0.0.1"]"#))
        .route(route("elsewhere", r#"allow: ["10.0.0.0/8", "::1"]"#))
        .route(route(
            "denied",
            r#"deny: ["127.0.0.0/8"], status: 404, message: Not found"#,
        ))
        .route(route(
            "both",
            r#"allow: ["::1", "127.0.0.0/8"], deny: ["127.0.0.1"]"#,
        ))
        .route(route("others", r#"deny: ["10.0.0.0/8", "2001:db8::/32"]"#))
        .yaml();
    let gw = TestGateway::start(&config).await;

    // In the allow list: through to the upstream, untouched.
    let (s, h, body) = get(&gw.url("/allowed/items")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(hv(&h, "x-upstream"), "up");
    assert_eq!(up.hits(), 1);

    // Outside it: refused, and headers naming an allowed client change nothing.
    let spoofed = [("x-forwarded-for", "10.0.0.1"), ("x-real-ip", "10.0.0.1")];
    assert_refused(
        &get_with(&gw.url("/elsewhere/items"), &spoofed).await,
        403,
        "Your IP address is not allowed",
    );
    // In the deny list, with the route's own status and message.
    assert_refused(&get(&gw.url("/denied/items")).await, 404, "Not found");
    // In both lists: deny wins.
    assert_refused(
        &get(&gw.url("/both/items")).await,
        403,
        "Your IP address is not allowed",
    );
    assert_eq!(up.hits(), 1);

    // In no entry of a deny-only list: through.
    let (s, _, body) = get(&gw.url("/others/items")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(up.hits(), 2);

    let m = gw.metrics().await;
    let series = |outcome: &str| {
        format!(r#"plugin_ip_restriction_{outcome}_total{{plugin="ip-restriction"}}"#)
    };
    assert_eq!(metric(&m, &series("allowed")), Some(2.0), "{m}");
    assert_eq!(metric(&m, &series("denied")), Some(3.0), "{m}");
}

/// A `listeners:` section with `address` (`[::1]:0`, `[::]:0`), if this machine can bind it.
fn ipv6_listener(address: &str) -> Option<String> {
    match std::net::TcpListener::bind(address) {
        Ok(_) => Some(format!(
            "listeners:\n  - name: main\n    address: \"{address}\"\n"
        )),
        Err(e) => {
            eprintln!("skipped: cannot bind {address} here: {e}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_client_is_matched_by_ipv6_entries() {
    let Some(listener) = ipv6_listener("[::1]:0") else {
        return;
    };
    let up = MockUpstream::start("up").await;
    let config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .route(route("v6", r#"allow: ["10.0.0.0/8", "::1"]"#))
        .route(route("v4", r#"allow: ["127.0.0.0/8"]"#))
        .route(route("any-v6", r#"deny: ["::/0"]"#))
        .yaml();
    let gw = TestGateway::start(&format!("{listener}{config}")).await;
    assert!(gw.addr.is_ipv6());

    let (s, _, body) = get(&gw.url("/v6/items")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(up.hits(), 1);
    let refused = "Your IP address is not allowed";
    assert_refused(&get(&gw.url("/v4/items")).await, 403, refused);
    assert_refused(&get(&gw.url("/any-v6/items")).await, 403, refused);
    assert_eq!(up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv4_client_of_a_dual_stack_listener_is_matched_by_ipv4_entries() {
    let Some(listener) = ipv6_listener("[::]:0") else {
        return;
    };
    let up = MockUpstream::start("up").await;
    let config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .route(route("v4", r#"allow: ["127.0.0.1"]"#))
        .route(route("any-v6", r#"deny: ["::/0"]"#))
        .route(route("mapped", r#"deny: ["::ffff:127.0.0.0/104"]"#))
        .yaml();
    let gw = TestGateway::start(&format!("{listener}{config}")).await;
    // Over IPv4 to the IPv6 socket: the gateway sees `[::ffff:127.0.0.1]:port`.
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", gw.addr.port());

    let (s, _, body) = get(&url("/v4/items")).await;
    assert_eq!(s, 200, "{body}");
    let (s, _, body) = get(&url("/any-v6/items")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(up.hits(), 2);
    assert_refused(
        &get(&url("/mapped/items")).await,
        403,
        "Your IP address is not allowed",
    );
    assert_eq!(up.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_entry_is_reported_at_its_line() {
    let config = GatewayConfig::new()
        .route(Route::new("r").respond("hi").lines(
            "    filters:\n      - plugin: ip-restriction\n        config:\n          allow:\n            - 127.0.0.1\n            - 10.0.0.0/33\n",
        ))
        .yaml();
    let err = refused(&config).await;
    let line = line_ending(&config, "- 10.0.0.0/33");
    let want = format!(
        "test.yaml:{line}:15: routes[0].filters[0].config.allow[1]: plugin `ip-restriction`"
    );
    assert!(err.contains(&want), "{err}");
    assert!(
        err.contains(r#""10.0.0.0/33" is not an address or CIDR"#),
        "{err}"
    );

    // Neither list: the config itself is wrong.
    let config = GatewayConfig::new()
        .route(
            Route::new("r")
                .respond("hi")
                .lines("    filters: [{plugin: ip-restriction, config: {status: 403}}]\n"),
        )
        .yaml();
    let err = refused(&config).await;
    assert!(
        err.contains("routes[0].filters[0].config") && err.contains("allow: missing"),
        "{err}"
    );
}

/// Behind a trusted proxy (the listener's `trusted_proxies`), the client is whom `X-Forwarded-For`
/// names, for the plugin as for the access log; from anyone else the header is not believed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_trusted_proxies_the_forwarded_client_is_the_client() {
    let up = MockUpstream::start("up").await;
    let rest = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .route(route("api", r#"allow: ["203.0.113.0/24"]"#))
        .yaml();
    let listener_with = |trusted: &str, more: &str| {
        format!("listeners:\n  - name: main\n    address: 127.0.0.1:0\n    trusted_proxies: [{trusted}]\n{more}{rest}")
    };
    let listener = |trusted: &str| listener_with(trusted, "");
    // The test client (127.0.0.1) is the trusted proxy.
    let gw = TestGateway::start(&listener("\"127.0.0.0/8\"")).await;
    let url = gw.url("/api/x");
    let (s, _, body) = get_with(&url, &[("x-forwarded-for", "203.0.113.5")]).await;
    assert_eq!(s, 200, "{body}");
    // A forged leftmost entry is not the client: the rightmost untrusted hop is.
    let forged = [("x-forwarded-for", "203.0.113.5, 198.51.100.1")];
    assert_refused(
        &get_with(&url, &forged).await,
        403,
        "Your IP address is not allowed",
    );
    // No header: the client is the proxy itself, which the list does not allow; nor is a
    // `Forwarded` header looked at by a listener that reads `X-Forwarded-For`.
    assert_refused(&get(&url).await, 403, "Your IP address is not allowed");
    let rfc = [("forwarded", "for=\"203.0.113.7:4711\"")];
    assert_refused(
        &get_with(&url, &rfc).await,
        403,
        "Your IP address is not allowed",
    );

    // A listener whose proxies write `Forwarded` reads that one (and not X-Forwarded-For).
    let gw = TestGateway::start(&listener(
        "\"127.0.0.0/8\"]\n    client_header: forwarded\n    #[",
    ))
    .await;
    let url = gw.url("/api/x");
    let (s, _, body) = get_with(&url, &rfc).await;
    assert_eq!(s, 200, "{body}");
    let xff = [("x-forwarded-for", "203.0.113.5")];
    assert_refused(
        &get_with(&url, &xff).await,
        403,
        "Your IP address is not allowed",
    );

    // A listener that trusts nobody (or another network) ignores the header.
    let gw = TestGateway::start(&listener("\"10.0.0.0/8\"")).await;
    let spoofed = [("x-forwarded-for", "203.0.113.5")];
    assert_refused(
        &get_with(&gw.url("/api/x"), &spoofed).await,
        403,
        "Your IP address is not allowed",
    );

    // A bad entry is refused at its line.
    let err = refused(&listener("\"10.0.0.0/33\"")).await;
    assert!(
        err.contains("listeners[0].trusted_proxies[0]") && err.contains("CIDR"),
        "{err}"
    );
}
