//! The built-in `acl` plugin through the real gateway, after an auth plugin that names the consumer:
//! `oauth2-introspection` with `consumer_by: username` against a real authorization server (the
//! test's [`Idp`]), and `key-auth`. The route's upstream is a mock that records what it got.

use crate::harness::*;
use crate::oauth2_introspection::{Idp, GRANT};

const CONSUMERS: &str = "consumers:
  - name: alice
    groups: [admins, ops]
    credentials:
      key-auth: {key: k-alice}
  - name: bob
    groups: [devs]
    credentials:
      key-auth: {key: k-bob}
  - name: mallory
    groups: [admins, suspended]
  - name: guest
    groups: [public]
";

/// A route `/{name}` whose filters are oauth2-introspection (`consumer_by: username`, and
/// `introspection`'s other fields) and acl with `acl` (each the inside of a YAML flow map).
fn route(name: &str, introspection: &str, acl: &str) -> Route {
    Route::new(name)
        .prefix(&format!("/{name}"))
        .upstream("up")
        .lines(&format!(
            "    filters:\n      - {{plugin: oauth2-introspection, config: {{upstream: idp, path: /introspect, consumer_by: username{introspection}}}}}\n      - {{plugin: acl, config: {{{acl}}}}}\n"
        ))
}

/// Asserts a JSON refusal of acl: status, code, and the request id of its header.
fn assert_refused(resp: &Resp, status: u16, code: &str) {
    let (s, h, body) = resp;
    assert_eq!(*s, status, "{body}");
    assert_eq!(hv(h, "content-type"), "application/json");
    let v = json(body);
    assert_eq!(v["error"], code, "{body}");
    let id = hv(h, "x-request-id");
    assert_eq!(id.len(), 16, "{body}");
    assert_eq!(v["request_id"], id.as_str());
}

async fn setup() -> (TestGateway, MockUpstream, Idp) {
    let up = MockUpstream::start("up").await;
    let idp = Idp::start().await;
    for user in ["alice", "bob", "mallory", "zed"] {
        idp.answer(
            &format!("tok-{user}"),
            serde_json::json!({"active": true, "username": user}),
        );
    }
    let config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .upstream(Upstream::new("idp").endpoint(idp.addr))
        .upstream(Upstream::new("idp-down").endpoint(format!("127.0.0.1:{}", free_port())))
        .route(route(
            "admin",
            "",
            "allow: [admins], deny: [group:suspended]",
        ))
        .route(route(
            "public",
            ", anonymous: guest",
            "allow: [public, admins]",
        ))
        .route(route(
            "hidden",
            "",
            "allow: [admins], hide_groups_header: true",
        ))
        .route(route("bob-only", "", "allow: [consumer:bob]"))
        .route(route("not-bob", "", "deny: [bob]"))
        .route(
            Route::new("alone")
                .prefix("/alone")
                .upstream("up")
                .lines("    filters: [{plugin: acl, config: {deny: [mallory]}}]\n"),
        )
        .raw(CONSUMERS)
        .yaml();
    let gw = TestGateway::start(&format!("{GRANT}{config}")).await;
    (gw, up, idp)
}

async fn as_user(gw: &TestGateway, path: &str, user: &str) -> Resp {
    let auth = format!("Bearer tok-{user}");
    get_with(
        &gw.url(path),
        &[
            ("authorization", auth.as_str()),
            ("x-consumer-groups", "admins"),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lists_decide_by_consumer_name_and_group() {
    let (gw, up, _idp) = setup().await;

    // In an allowed group: through, with the groups as the gateway knows them.
    let (s, h, body) = as_user(&gw, "/admin/x", "alice").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(hv(&h, "x-upstream"), "up");
    let got = up.last();
    assert_eq!(values(&got.headers, "x-consumer-username"), ["alice"]);
    assert_eq!(values(&got.headers, "x-consumer-groups"), ["admins, ops"]);

    // Not in an allowed group: 403, and a client's own groups header changes nothing.
    assert_refused(&as_user(&gw, "/admin/x", "bob").await, 403, "forbidden");
    // In an allowed group and a denied one: deny wins.
    assert_refused(&as_user(&gw, "/admin/x", "mallory").await, 403, "forbidden");
    // A valid token of nobody in `consumers:`: no consumer, so acl has nobody to allow.
    assert_refused(
        &as_user(&gw, "/admin/x", "zed").await,
        401,
        "unauthenticated",
    );
    assert_eq!(up.hits(), 1);

    // By name only (`consumer:`), and a deny list alone.
    let (s, _, body) = as_user(&gw, "/bob-only/x", "bob").await;
    assert_eq!(s, 200, "{body}");
    assert_refused(
        &as_user(&gw, "/bob-only/x", "alice").await,
        403,
        "forbidden",
    );
    assert_refused(&as_user(&gw, "/not-bob/x", "bob").await, 403, "forbidden");
    let (s, _, body) = as_user(&gw, "/not-bob/x", "mallory").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(up.hits(), 3);

    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, r#"plugin_acl_forbidden_total{plugin="acl"}"#),
        Some(4.0)
    );
    assert_eq!(
        metric(&m, r#"plugin_acl_allowed_total{plugin="acl"}"#),
        Some(3.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_consumer_is_decided_by_its_groups() {
    let (gw, up, _idp) = setup().await;
    // No token: the introspection plugin lets the request on as `guest`, whose group is allowed.
    let (s, _, body) = get(&gw.url("/public/x")).await;
    assert_eq!(s, 200, "{body}");
    let got = up.last();
    assert_eq!(hv(&got.headers, "x-consumer-username"), "guest");
    assert_eq!(hv(&got.headers, "x-consumer-groups"), "public");
    assert_eq!(hv(&got.headers, "x-anonymous-consumer"), "true");
    // An authenticated consumer in another allowed group.
    let (s, _, _) = as_user(&gw, "/public/x", "alice").await;
    assert_eq!(s, 200);
    // Not allowed: bob is neither in `public` nor `admins`.
    assert_refused(&as_user(&gw, "/public/x", "bob").await, 403, "forbidden");
    // Without `anonymous`, no token never gets as far as acl: the auth plugin's 401.
    let (s, h, body) = get(&gw.url("/admin/x")).await;
    assert_eq!(s, 401);
    assert_eq!(json(&body)["error"], "missing_token");
    assert_eq!(hv(&h, "www-authenticate"), "Bearer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hide_groups_header_keeps_the_groups_from_the_upstream() {
    let (gw, up, _idp) = setup().await;
    let (s, _, body) = as_user(&gw, "/hidden/x", "alice").await;
    assert_eq!(s, 200, "{body}");
    let got = up.last();
    assert_eq!(hv(&got.headers, "x-consumer-username"), "alice");
    assert_eq!(
        values(&got.headers, "x-consumer-groups"),
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_auth_plugin_before_it_every_request_is_a_401() {
    let (gw, up, _idp) = setup().await;
    for resp in [
        get(&gw.url("/alone/x")).await,
        as_user(&gw, "/alone/x", "alice").await,
    ] {
        assert_refused(&resp, 401, "unauthenticated");
        assert_eq!(hv(&resp.1, "www-authenticate"), "");
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_auth_then_acl() {
    let up = MockUpstream::start("up").await;
    let config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .route(
            Route::new("ops")
                .prefix("/ops")
                .upstream("up")
                .lines("    filters:\n      - {plugin: key-auth, config: {}}\n      - {plugin: acl, config: {allow: [ops]}}\n"),
        )
        .raw(CONSUMERS)
        .yaml();
    let gw = TestGateway::start(&config).await;
    let (s, _, body) = get_with(&gw.url("/ops/x"), &[("apikey", "k-alice")]).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(hv(&up.last().headers, "x-consumer-groups"), "admins, ops");
    assert_refused(
        &get_with(&gw.url("/ops/x"), &[("apikey", "k-bob")]).await,
        403,
        "forbidden",
    );
    // No key: key-auth answers before acl is asked.
    let (s, h, _) = get(&gw.url("/ops/x")).await;
    assert_eq!(s, 401);
    assert!(hv(&h, "www-authenticate").starts_with("Key"), "{h:?}");
    assert_eq!(up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_entry_is_reported_at_its_line() {
    let config = |acl: &str| {
        GatewayConfig::new()
            .route(Route::new("r").respond("hi").lines(&format!(
                "    filters:\n      - plugin: acl\n        config:\n{acl}"
            )))
            .raw(CONSUMERS)
            .yaml()
    };
    // A `consumer:` entry naming nobody.
    let yaml = config("          deny:\n            - mallory\n            - consumer:malory\n");
    let err = refused(&yaml).await;
    let line = line_ending(&yaml, "- consumer:malory");
    let want = format!("test.yaml:{line}:15: routes[0].filters[0].config.deny[1]: plugin `acl`");
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("no consumer is called `malory`"), "{err}");

    // A misspelt prefix.
    let yaml = config("          allow: [\"groups:admins\"]\n");
    let err = refused(&yaml).await;
    assert!(
        err.contains("routes[0].filters[0].config.allow[0]") && err.contains("group:NAME"),
        "{err}"
    );
}
