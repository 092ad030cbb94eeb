//! The built-in `oauth2-introspection` plugin through the real gateway: a real authorization server
//! (a small hyper server in the test, [`Idp`]) answers RFC 7662 introspection requests and counts
//! them; the route's upstream is a mock that records what it got. Built in, the plugin runs on warm
//! reused instances by default, so its cache lives across requests; requests are sent one after
//! another, so one instance serves them. Its `plugins:` entry only grants the upstreams.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One introspection request as the authorization server saw it.
#[derive(Clone, Debug)]
pub struct IdpSeen {
    pub method: http::Method,
    pub uri: String,
    pub headers: http::HeaderMap,
    /// The form's fields, decoded, in order.
    pub form: Vec<(String, String)>,
}

#[derive(Default)]
struct IdpState {
    /// What the server answers for a token (`{"active": false}` for any other).
    answers: Mutex<HashMap<String, serde_json::Value>>,
    seen: Mutex<Vec<IdpSeen>>,
}

/// An authorization server's introspection endpoint: answers each token as [`Idp::answer`] told it
/// (a token starting with `slow-` after 2 s, `status-500` with a 500), anything else inactive.
pub struct Idp {
    pub addr: std::net::SocketAddr,
    state: Arc<IdpState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space, `%XX` a byte).
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).expect("percent-encoded byte"));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

async fn introspect(
    req: http::Request<hyper::body::Incoming>,
    state: Arc<IdpState>,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let form: Vec<(String, String)> = std::str::from_utf8(&body)
        .unwrap()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(k), form_decode(v))
        })
        .collect();
    let token = form
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    state.seen.lock().unwrap().push(IdpSeen {
        method: parts.method,
        uri: parts.uri.to_string(),
        headers: parts.headers,
        form,
    });
    if token.starts_with("slow-") {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (status, answer) = match token.as_str() {
        "status-500" => (500, serde_json::json!({"error": "server_error"})),
        t => (
            200,
            state
                .answers
                .lock()
                .unwrap()
                .get(t)
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"active": false})),
        ),
    };
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(answer.to_string())))
        .unwrap()
}

impl Idp {
    pub async fn start() -> Idp {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let state = Arc::new(IdpState::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = tcp.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, std::convert::Infallible>(introspect(req, st).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Idp { addr, state, task }
    }

    /// From now on, `token` is answered with `answer`.
    pub fn answer(&self, token: &str, answer: serde_json::Value) {
        self.state
            .answers
            .lock()
            .unwrap()
            .insert(token.into(), answer);
    }

    /// The introspection requests so far.
    pub fn seen(&self) -> Vec<IdpSeen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// How many introspection requests it got.
    pub fn hits(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }
}

/// The `plugins:` entry that grants the built-in plugin the `idp` upstreams.
pub const GRANT: &str =
    "plugins:\n  - name: oauth2-introspection\n    capabilities: {upstreams: [idp, idp-down]}\n";

/// A route `/{name}` to the upstream `up` with the plugin configured by `config` (the inside of a
/// YAML flow map; `upstream: idp, path: /oauth2/introspect` come first).
fn route(name: &str, config: &str) -> Route {
    Route::new(name)
        .prefix(&format!("/{name}"))
        .upstream("up")
        .lines(&format!(
            "    filters: [{{plugin: oauth2-introspection, config: {{upstream: idp, path: /oauth2/introspect, {config}}}}}]\n"
        ))
}

/// A gateway with the upstream `up`, the authorization server as `idp` (and `idp-down`, where
/// nothing listens), the routes and extra YAML (`consumers:`).
async fn gateway(routes: Vec<Route>, raw: &str) -> (TestGateway, MockUpstream, Idp) {
    let up = MockUpstream::start("up").await;
    let idp = Idp::start().await;
    let mut config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .upstream(Upstream::new("idp").endpoint(idp.addr))
        .upstream(Upstream::new("idp-down").endpoint(format!("127.0.0.1:{}", free_port())));
    for r in routes {
        config = config.route(r);
    }
    let gw = TestGateway::start(&format!("{GRANT}{}", config.raw(raw).yaml())).await;
    (gw, up, idp)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Asserts a JSON refusal: status, code, the request id of its header, and `WWW-Authenticate`.
fn assert_refused(resp: &Resp, status: u16, code: &str, challenge: Option<&str>) {
    let (s, h, body) = resp;
    assert_eq!(*s, status, "{body}");
    assert_eq!(hv(h, "content-type"), "application/json");
    let v = json(body);
    assert_eq!(v["error"], code, "{body}");
    let id = hv(h, "x-request-id");
    assert_eq!(id.len(), 16, "{body}");
    assert_eq!(v["request_id"], id.as_str());
    assert_eq!(
        values(h, "www-authenticate"),
        challenge.map(str::to_owned).into_iter().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_token_reaches_the_upstream_with_the_credential_headers() {
    let (gw, up, idp) = gateway(
        vec![route(
            "api",
            "client_id: gateway, client_secret: s3cret, scopes_required: [orders.read]",
        )],
        "",
    )
    .await;
    // A token with the characters a form must encode.
    let token = "tok+alice/1==";
    idp.answer(
        token,
        serde_json::json!({"active": true, "scope": "orders.read orders.write", "client_id": "shop",
                           "username": "alice", "sub": "u-1", "exp": now_s() + 3600}),
    );
    let auth = bearer(token);
    let (s, h, body) = get_with(
        &gw.url("/api/orders?page=2"),
        &[
            ("authorization", auth.as_str()),
            ("x-credential-sub", "forged"),
            ("x-credential-scope", "admin"),
            ("x-consumer-username", "root"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(hv(&h, "x-upstream"), "up");

    // The upstream got the token's facts, none of the client's own, and the token itself.
    let got = up.last();
    assert_eq!(got.uri, "/api/orders?page=2");
    assert_eq!(values(&got.headers, "x-credential-sub"), ["u-1"]);
    assert_eq!(values(&got.headers, "x-credential-client-id"), ["shop"]);
    assert_eq!(values(&got.headers, "x-credential-username"), ["alice"]);
    assert_eq!(
        values(&got.headers, "x-credential-scope"),
        ["orders.read orders.write"]
    );
    assert_eq!(hv(&got.headers, "x-consumer-username"), "");
    assert_eq!(hv(&got.headers, "authorization"), auth);

    // The introspection request: a form POST with the token and its hint, the gateway's client
    // credentials as HTTP Basic.
    let asked = idp.seen();
    assert_eq!(asked.len(), 1);
    let a = &asked[0];
    assert_eq!(
        (a.method.as_str(), a.uri.as_str()),
        ("POST", "/oauth2/introspect")
    );
    assert_eq!(
        hv(&a.headers, "content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(hv(&a.headers, "accept"), "application/json");
    // base64("gateway:s3cret")
    assert_eq!(
        hv(&a.headers, "authorization"),
        "Basic Z2F0ZXdheTpzM2NyZXQ="
    );
    assert_eq!(
        a.form,
        [
            ("token".to_owned(), token.to_owned()),
            ("token_type_hint".to_owned(), "access_token".to_owned())
        ]
    );
    let series = r#"plugin_oauth2_introspection_allowed_total{plugin="oauth2-introspection"}"#;
    assert_eq!(metric(&gw.metrics().await, series), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_that_are_not_valid_are_refused_as_rfc_6750_says() {
    let (gw, up, idp) = gateway(
        vec![route(
            "api",
            "realm: api, authorization_value: Bearer gw-secret",
        )],
        "",
    )
    .await;
    idp.answer(
        "tok-expired",
        serde_json::json!({"active": true, "exp": now_s() - 10}),
    );
    let url = gw.url("/api/items");

    // No token: a challenge without an error code, and the server is not asked.
    assert_refused(
        &get(&url).await,
        401,
        "missing_token",
        Some(r#"Bearer realm="api""#),
    );
    assert_refused(
        &get_with(&url, &[("authorization", "Basic YWxpY2U6cHc=")]).await,
        401,
        "missing_token",
        Some(r#"Bearer realm="api""#),
    );
    assert_eq!(idp.hits(), 0);

    // Not a token: 400.
    assert_refused(
        &get_with(&url, &[("authorization", "Bearer not a token")]).await,
        400,
        "invalid_request",
        Some(
            r#"Bearer realm="api", error="invalid_request", error_description="the bearer token has characters a token cannot have""#,
        ),
    );
    assert_eq!(idp.hits(), 0);

    // Inactive (the server says so) and expired (the server says active, its `exp` says not).
    for (token, why) in [
        ("tok-revoked", "the token is not active"),
        ("tok-expired", "the token has expired"),
    ] {
        let auth = bearer(token);
        let resp = get_with(&url, &[("authorization", auth.as_str())]).await;
        let challenge =
            format!(r#"Bearer realm="api", error="invalid_token", error_description="{why}""#);
        assert_refused(&resp, 401, "invalid_token", Some(&challenge));
        assert_eq!(json(&resp.2)["message"], why);
    }
    // The gateway authenticated to the server with the configured header value.
    assert_eq!(
        hv(&idp.seen()[0].headers, "authorization"),
        "Bearer gw-secret"
    );

    // Refusals are not cached: the same inactive token is asked about again.
    let hits = idp.hits();
    let (s, _, _) = get_with(&url, &[("authorization", "Bearer tok-revoked")]).await;
    assert_eq!(s, 401);
    assert_eq!(idp.hits(), hits + 1);
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_are_required_per_route() {
    let (gw, up, idp) = gateway(
        vec![
            route("read", "scopes_required: [orders.read]"),
            route("admin", "scopes_required: [orders.read, orders.admin]"),
            route("any", ""),
        ],
        "",
    )
    .await;
    idp.answer(
        "tok-reader",
        serde_json::json!({"active": true, "scope": "profile orders.read"}),
    );
    let auth = [("authorization", "Bearer tok-reader")];
    let (s, _, body) = get_with(&gw.url("/read/orders"), &auth).await;
    assert_eq!(s, 200, "{body}");
    let (s, _, body) = get_with(&gw.url("/any/orders"), &auth).await;
    assert_eq!(s, 200, "{body}");
    assert_refused(
        &get_with(&gw.url("/admin/orders"), &auth).await,
        403,
        "insufficient_scope",
        Some(
            r#"Bearer error="insufficient_scope", error_description="the token does not have the scopes this route requires", scope="orders.read orders.admin""#,
        ),
    );
    assert_eq!(up.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_cached_for_their_lifetime_capped_by_cache_ttl() {
    let (gw, up, idp) = gateway(
        vec![
            route("long", ""),
            route("short", "cache_ttl: 1"),
            route("never", "cache_ttl: 0"),
        ],
        "",
    )
    .await;
    let exp = now_s() + 2;
    idp.answer("tok-a", serde_json::json!({"active": true, "sub": "a"}));
    idp.answer("tok-exp", serde_json::json!({"active": true, "exp": exp}));
    let call = |route: &'static str, token: &'static str| {
        let url = gw.url(&format!("/{route}/x"));
        let auth = bearer(token);
        async move { get_with(&url, &[("authorization", auth.as_str())]).await.0 }
    };

    // Asked once, then answered from the cache (each route has its own).
    for _ in 0..3 {
        assert_eq!(call("long", "tok-a").await, 200);
    }
    assert_eq!(idp.hits(), 1);
    assert_eq!(call("short", "tok-a").await, 200);
    assert_eq!(call("short", "tok-a").await, 200);
    assert_eq!(idp.hits(), 2);
    assert_eq!(call("long", "tok-exp").await, 200);
    assert_eq!(call("long", "tok-exp").await, 200);
    assert_eq!(idp.hits(), 3);
    // cache_ttl: 0 asks every time.
    assert_eq!(call("never", "tok-a").await, 200);
    assert_eq!(call("never", "tok-a").await, 200);
    assert_eq!(idp.hits(), 5);
    let series = r#"plugin_oauth2_introspection_cache_hits_total{plugin="oauth2-introspection"}"#;
    assert_eq!(metric(&gw.metrics().await, series), Some(4.0));

    // Past the token's exp and `short`'s cache_ttl (and not `long`'s 60 s): the token that
    // expired is asked about again, and refused; `short` asks again; `long` still has tok-a.
    while now_s() < exp + 1 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(call("long", "tok-exp").await, 401);
    assert_eq!(idp.hits(), 6);
    assert_eq!(call("short", "tok-a").await, 200);
    assert_eq!(idp.hits(), 7);
    assert_eq!(call("long", "tok-a").await, 200);
    assert_eq!(idp.hits(), 7);
    assert_eq!(up.hits(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_instances_work_without_the_cache() {
    let up = MockUpstream::start("up").await;
    let idp = Idp::start().await;
    idp.answer("tok-a", serde_json::json!({"active": true}));
    let config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .upstream(Upstream::new("idp").endpoint(idp.addr))
        .route(route("api", ""))
        .yaml();
    let fresh = "plugins:\n  - name: oauth2-introspection\n    instance_mode: fresh\n    capabilities: {upstreams: [idp]}\n";
    let gw = TestGateway::start(&format!("{fresh}{config}")).await;
    for hits in 1..=3 {
        let (s, _, body) = get_with(&gw.url("/api/x"), &[("authorization", "Bearer tok-a")]).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(idp.hits(), hits);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_is_bounded_and_evicts_the_least_recently_used() {
    let (gw, _up, idp) = gateway(vec![route("api", "cache_max_entries: 2")], "").await;
    for t in ["a", "b", "c"] {
        idp.answer(t, serde_json::json!({"active": true, "sub": t}));
    }
    let call = |token: &'static str| {
        let url = gw.url("/api/x");
        let auth = bearer(token);
        async move {
            let (s, _, body) = get_with(&url, &[("authorization", auth.as_str())]).await;
            assert_eq!(s, 200, "{body}");
        }
    };
    for (token, hits) in [
        ("a", 1),
        ("b", 2),
        ("a", 2), // cached; b is now the least recently used
        ("c", 3), // evicts b
        ("a", 3),
        ("c", 3),
        ("b", 4), // asked again; evicts a
        ("c", 4),
        ("a", 5),
    ] {
        call(token).await;
        assert_eq!(idp.hits(), hits, "after {token}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hide_credentials_keeps_the_token_from_the_upstream() {
    let (gw, up, idp) = gateway(vec![route("api", "hide_credentials: true")], "").await;
    idp.answer(
        "tok-secret",
        serde_json::json!({"active": true, "sub": "u-9"}),
    );
    let (s, _, body) = get_with(
        &gw.url("/api/items"),
        &[("authorization", "Bearer tok-secret")],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let got = up.last();
    assert_eq!(hv(&got.headers, "authorization"), "");
    assert_eq!(hv(&got.headers, "x-credential-sub"), "u-9");
    // Nowhere in what the upstream got.
    for (name, value) in &got.headers {
        assert!(
            !value.to_str().unwrap_or("").contains("tok-secret"),
            "{name}: {value:?}"
        );
    }
    // Only the authorization server saw it.
    assert_eq!(idp.seen()[0].form[0].1, "tok-secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_server_that_cannot_answer_is_a_503() {
    let down = Route::new("down")
        .prefix("/down")
        .upstream("up")
        .lines("    filters: [{plugin: oauth2-introspection, config: {upstream: idp-down, path: /introspect, anonymous: guest}}]\n");
    let (gw, up, idp) = gateway(
        vec![down, route("slow", "timeout_ms: 200"), route("api", "")],
        "consumers:\n  - name: guest\n",
    )
    .await;
    let get_auth = |path: &'static str, token: &'static str| {
        let url = gw.url(path);
        let auth = bearer(token);
        async move { get_with(&url, &[("authorization", auth.as_str())]).await }
    };
    // Nothing listens: 503, even with `anonymous` (auth fails closed).
    assert_refused(
        &get_auth("/down/x", "tok-1").await,
        503,
        "auth_unavailable",
        None,
    );

    // Too slow: cut at timeout_ms.
    let start = Instant::now();
    assert_refused(
        &get_auth("/slow/x", "slow-1").await,
        503,
        "auth_unavailable",
        None,
    );
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    // An error of the server.
    assert_refused(
        &get_auth("/api/x", "status-500").await,
        503,
        "auth_unavailable",
        None,
    );
    assert_eq!(idp.hits(), 2);
    assert_eq!(up.hits(), 0);
    let series = r#"plugin_oauth2_introspection_unavailable_total{plugin="oauth2-introspection"}"#;
    assert_eq!(metric(&gw.metrics().await, series), Some(3.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_by_authenticates_the_request_as_the_consumer_the_token_names() {
    let consumers = "consumers:\n  - name: alice\n    groups: [admins, ops]\n  - name: shop-app\n  - name: guest\n    groups: [public]\n";
    let (gw, up, idp) = gateway(
        vec![
            route("users", "consumer_by: username, anonymous: guest"),
            route("clients", "consumer_by: client_id"),
        ],
        consumers,
    )
    .await;
    idp.answer(
        "tok-alice",
        serde_json::json!({"active": true, "username": "alice", "client_id": "shop-app"}),
    );
    let alice = [
        ("authorization", "Bearer tok-alice"),
        ("x-consumer-username", "root"),
    ];

    let (s, _, body) = get_with(&gw.url("/users/x"), &alice).await;
    assert_eq!(s, 200, "{body}");
    let got = up.last();
    assert_eq!(values(&got.headers, "x-consumer-username"), ["alice"]);
    assert_eq!(hv(&got.headers, "x-consumer-groups"), "admins, ops");
    assert_eq!(hv(&got.headers, "x-credential-identifier"), "alice");
    assert_eq!(hv(&got.headers, "x-anonymous-consumer"), "");

    let (s, _, _) = get_with(&gw.url("/clients/x"), &alice).await;
    assert_eq!(s, 200);
    let got = up.last();
    assert_eq!(values(&got.headers, "x-consumer-username"), ["shop-app"]);
    assert_eq!(hv(&got.headers, "x-consumer-groups"), "");

    // No valid token: the anonymous consumer.
    let (s, _, _) = get_with(&gw.url("/users/x"), &[("authorization", "Bearer nope")]).await;
    assert_eq!(s, 200);
    let got = up.last();
    assert_eq!(hv(&got.headers, "x-consumer-username"), "guest");
    assert_eq!(hv(&got.headers, "x-anonymous-consumer"), "true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_config_is_reported_at_its_line() {
    let idp = Idp::start().await;
    let yaml = |config: &str| {
        format!(
            "{GRANT}upstreams:\n  - name: idp\n    endpoints: [\"{}\"]\nroutes:\n  - name: r\n    upstream: idp\n    filters:\n      - plugin: oauth2-introspection\n        config:\n{config}",
            idp.addr
        )
    };
    let config = yaml(
        "          upstream: idp\n          path: /introspect\n          scopes_required:\n            - read\n            - a b\n",
    );
    let err = refused(&config).await;
    let line = line_ending(&config, "- a b");
    let want = format!(
        "test.yaml:{line}:15: routes[0].filters[0].config.scopes_required[1]: plugin `oauth2-introspection`"
    );
    assert!(err.contains(&want), "{err}");
    assert!(err.contains(r#""a b" is not a scope"#), "{err}");

    for (config, field, message) in [
        (
            "          {upstream: idp, path: /i, anonymous: nobody}\n",
            "routes[0].filters[0].config.anonymous",
            "no consumer is called `nobody`",
        ),
        (
            "          {upstream: idp, path: /i, client_id: gw}\n",
            "routes[0].filters[0].config.client_id",
            "client_id and client_secret go together",
        ),
        (
            "          {upstream: idp}\n",
            "routes[0].filters[0].config",
            "path: missing",
        ),
    ] {
        let err = refused(&yaml(config)).await;
        assert!(err.contains(field), "{err}");
        assert!(err.contains(message), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_anonymous_a_key_or_a_token_will_do() {
    let consumers = "consumers:\n  - name: alice\n    credentials:\n      key-auth: {key: k-alice}\n  - name: bob\n  - name: guest\n";
    let either = Route::new("either").prefix("/either").upstream("up").lines(
        "    filters:\n      - {plugin: key-auth, config: {anonymous: guest}}\n      - {plugin: oauth2-introspection, config: {upstream: idp, path: /introspect, consumer_by: username, anonymous: guest}}\n",
    );
    let (gw, up, idp) = gateway(vec![either], consumers).await;
    idp.answer(
        "tok-bob",
        serde_json::json!({"active": true, "username": "bob"}),
    );
    // The consumer a request with `headers` reaches the upstream as.
    async fn consumer(gw: &TestGateway, up: &MockUpstream, headers: &[(&str, &str)]) -> String {
        let (s, _, body) = get_with(&gw.url("/either/x"), headers).await;
        assert_eq!(s, 200, "{body}");
        hv(&up.last().headers, "x-consumer-username")
    }
    // A key: key-auth's consumer; the token plugin does not look (nor ask the server).
    assert_eq!(consumer(&gw, &up, &[("apikey", "k-alice")]).await, "alice");
    assert_eq!(idp.hits(), 0);
    // A token: the token's consumer.
    assert_eq!(
        consumer(&gw, &up, &[("authorization", "Bearer tok-bob")]).await,
        "bob"
    );
    assert_eq!(idp.hits(), 1);
    // Neither: the anonymous consumer.
    assert_eq!(consumer(&gw, &up, &[]).await, "guest");
    assert_eq!(hv(&up.last().headers, "x-anonymous-consumer"), "true");
}
