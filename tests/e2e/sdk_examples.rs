//! The four example filters of `examples/filters/README.md` through the real gateway: config rejection,
//! every behaviour branch, and the store counter across requests and routes.
//!
//! The scenarios are plain functions of the built `.wasm` paths and the instance mode, so that the same
//! assertions run against every SDK's builds: this module runs them on the Rust builds
//! (`examples/filters/rust`), `go_sdk.rs` on the Go builds. A scenario panics with what differed.

use crate::harness::*;
use bytes::Bytes;
use gateway::config::InstanceMode;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use xtask::ExampleFilters;

/// The instance mode as the config writes it.
fn mode_yaml(mode: InstanceMode) -> &'static str {
    match mode {
        InstanceMode::Fresh => "fresh",
        InstanceMode::Reuse => "reuse",
    }
}

/// One plugin definition.
pub fn plugin(
    name: &str,
    path: &std::path::Path,
    mode: InstanceMode,
    capabilities: &str,
) -> String {
    Plugin::new(name, path)
        .lines(&format!(
            "    instance_mode: {}\n    capabilities: {capabilities}\n",
            mode_yaml(mode)
        ))
        .to_string()
}

/// A request as the examples' service saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: http::HeaderMap,
}

/// The examples' service, on 127.0.0.1: an auth service on `/check` and a JSON backend on `/reply`.
///
/// `/check` answers by the `authorization` header: `Bearer alice` 200 with `x-user: alice`, `Bearer
/// anon` 204 without `x-user`, `Bearer bad` (or none) 401, `Bearer nope` 403, `Bearer broken` 500,
/// `Bearer slow` 200 after 3 s. `/reply` answers 200 with the request body and the content type the
/// request names in `x-reply-type`. Every request is recorded.
pub struct Service {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Service {
    pub async fn start() -> Service {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = tcp.accept().await else {
                    continue;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(req, &log).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Service { addr, seen, task }
    }

    /// The requests seen on `path`.
    pub fn seen(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    log: &Mutex<Vec<Seen>>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    log.lock().unwrap().push(Seen {
        path: path.clone(),
        headers: parts.headers.clone(),
    });
    let reply = |status: u16, user: Option<&str>| {
        let mut b = hyper::Response::builder().status(status);
        if let Some(u) = user {
            b = b.header("x-user", u);
        }
        b.body(Full::new(Bytes::from(format!("check {status}\n"))))
            .unwrap()
    };
    if path == "/reply" {
        let mut b = hyper::Response::builder().status(200);
        if let Some(t) = parts.headers.get("x-reply-type") {
            b = b.header("content-type", t);
        }
        return b.body(Full::new(body)).unwrap();
    }
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match auth {
        "Bearer alice" => reply(200, Some("alice")),
        "Bearer anon" => reply(204, None),
        "Bearer nope" => reply(403, None),
        "Bearer broken" => reply(500, None),
        "Bearer slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            reply(200, Some("slow"))
        }
        _ => reply(401, None),
    }
}

/// Starts a gateway whose config must be rejected, and returns the error.
pub async fn rejected(yaml: &str) -> String {
    match TestGateway::try_start(yaml).await {
        Ok(_) => panic!("the gateway started with an invalid filter config:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

/// Every example rejects a config that does not fit its shape, at load time, with an error that names
/// the route's filter config and the offending key.
pub async fn config_rejection(f: &ExampleFilters, mode: InstanceMode) {
    let up = MockUpstream::start("up").await;
    let cases: [(&std::path::Path, &str, &str); 9] = [
        (&f.header_rewrite, "{request: {bogus: {x-a: b}}}", "bogus"),
        (&f.header_rewrite, "{elsewhere: {}}", "elsewhere"),
        (&f.header_rewrite, "{request: {set: {x-a: [1, 2]}}}", "x-a"),
        (&f.auth_callout, "{path: /check}", "upstream"),
        (&f.auth_callout, "{upstream: auth, bogus: 1}", "bogus"),
        (&f.json_redact, "{fields: []}", "fields"),
        (&f.json_redact, "{replacement: x}", "fields"),
        // The typed config of both SDKs: the field's path and what was expected.
        (&f.request_counter, "{key: 5}", "config.key: "),
        (&f.request_counter, "{bogus: 1}", "config.bogus: "),
    ];
    for (path, config, names) in cases {
        let yaml = format!(
            "plugins:\n{}upstreams:\n  - name: up\n    endpoints: [\"{}\"]\n  - name: auth\n    endpoints: [\"{}\"]\nroutes:\n  - name: r\n    upstream: up\n    filters:\n      - plugin: p\n        config: {config}\n",
            plugin("p", path, mode, "{upstreams: [auth], kv_namespace: counters}"),
            up.addr,
            up.addr,
        );
        let err = rejected(&yaml).await;
        assert!(
            err.contains("routes[0].filters[0].config") && err.contains(names),
            "{}: config {config}: the error should name the filter config and `{names}`: {err}",
            path.display()
        );
    }
}

/// header-rewrite: set, add and remove on the request (what the backend receives) and on the response
/// (what the client receives); a config with one section leaves the other direction alone.
pub async fn header_rewrite(f: &ExampleFilters, mode: InstanceMode) {
    header_rewrite_at(&f.header_rewrite, mode).await
}

/// The header-rewrite scenario on the build at `wasm` (the JavaScript and Python builds have no
/// `ExampleFilters` of their own).
pub async fn header_rewrite_at(wasm: &std::path::Path, mode: InstanceMode) {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&format!(
        "plugins:\n{}upstreams:\n  - name: up\n    endpoints: [\"{}\"]\nroutes:\n\
         \x20 - name: both\n    match: {{path: {{prefix: /both}}}}\n    upstream: up\n    filters:\n      - plugin: rewrite\n        config:\n          request: {{set: {{x-env: prod}}, add: {{x-tag: a}}, remove: [x-debug]}}\n          response: {{set: {{x-frame-options: DENY}}, add: {{x-resp-tag: b}}, remove: [x-upstream]}}\n\
         \x20 - name: resp-only\n    match: {{path: {{prefix: /resp}}}}\n    upstream: up\n    filters:\n      - plugin: rewrite\n        config: {{response: {{set: {{x-only: resp}}}}}}\n",
        plugin("rewrite", wasm, mode, "{}"),
        up.addr
    ))
    .await;
    for round in 0..2 {
        let (s, h, _) = get_with(
            &gw.url("/both"),
            &[("x-env", "dev"), ("x-tag", "client"), ("x-debug", "1")],
        )
        .await;
        assert_eq!(s, 200, "round {round}");
        let seen = up.last().headers;
        assert_eq!(values(&seen, "x-env"), ["prod"], "set replaces");
        assert_eq!(values(&seen, "x-tag"), ["client", "a"], "add appends");
        assert!(seen.get("x-debug").is_none(), "remove drops: {seen:?}");
        assert_eq!(values(&h, "x-frame-options"), ["DENY"]);
        assert_eq!(values(&h, "x-resp-tag"), ["b"]);
        assert!(h.get("x-upstream").is_none(), "response remove: {h:?}");
    }
    let (s, h, _) = get_with(&gw.url("/resp"), &[("x-debug", "1"), ("x-env", "dev")]).await;
    assert_eq!(s, 200);
    let seen = up.last().headers;
    assert_eq!(
        values(&seen, "x-debug"),
        ["1"],
        "no request section: unchanged"
    );
    assert_eq!(values(&seen, "x-env"), ["dev"]);
    assert_eq!(values(&h, "x-only"), ["resp"]);
    assert_eq!(values(&h, "x-upstream"), ["up"]);
}

/// auth-callout: a 2xx check lets the request go on with the user it names (or without the user
/// header at all, so a client cannot forge one); 401 and 403 reach the client as JSON; another status,
/// a timeout or an unreachable auth service answer 503.
pub async fn auth_callout(f: &ExampleFilters, mode: InstanceMode) {
    let up = MockUpstream::start("up").await;
    let auth = Service::start().await;
    let dead = free_port();
    let gw = TestGateway::start(&format!(
        "plugins:\n{}upstreams:\n  - name: up\n    endpoints: [\"{}\"]\n  - name: auth\n    endpoints: [\"{}\"]\n  - name: auth-down\n    endpoints: [\"127.0.0.1:{dead}\"]\nroutes:\n\
         \x20 - name: api\n    match: {{path: {{prefix: /api}}}}\n    upstream: up\n    filters:\n      - plugin: auth\n        config: {{upstream: auth, forward_headers: [authorization, x-tenant], timeout_ms: 300}}\n\
         \x20 - name: down\n    match: {{path: {{prefix: /down}}}}\n    upstream: up\n    filters:\n      - plugin: auth\n        config: {{upstream: auth-down, path: /check}}\n\
         \x20 - name: custom\n    match: {{path: {{prefix: /custom}}}}\n    upstream: up\n    filters:\n      - plugin: auth\n        config: {{upstream: auth, user_header: x-principal}}\n",
        plugin("auth", &f.auth_callout, mode, "{upstreams: [auth, auth-down]}"),
        up.addr,
        auth.addr
    ))
    .await;
    let json = |h: &http::HeaderMap| values(h, "content-type") == ["application/json"];

    // 2xx with x-user: the request goes on with it, whatever the client sent.
    let hits = up.hits();
    let (s, _, _) = get_with(
        &gw.url("/api/a"),
        &[
            ("authorization", "Bearer alice"),
            ("x-user", "mallory"),
            ("x-tenant", "blue"),
            ("cookie", "secret"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(up.hits(), hits + 1);
    assert_eq!(values(&up.last().headers, "x-user"), ["alice"]);
    let check = auth
        .seen("/check")
        .pop()
        .expect("the auth service was asked");
    assert_eq!(values(&check.headers, "authorization"), ["Bearer alice"]);
    assert_eq!(values(&check.headers, "x-tenant"), ["blue"]);
    assert!(
        check.headers.get("cookie").is_none(),
        "only listed headers are forwarded"
    );
    assert!(check.headers.get("x-user").is_none());

    // 2xx without x-user: a forged x-user is removed.
    let (s, _, _) = get_with(
        &gw.url("/api/b"),
        &[("authorization", "Bearer anon"), ("x-user", "mallory")],
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        up.last().headers.get("x-user").is_none(),
        "forged x-user removed"
    );

    // The user header is configurable.
    let (s, _, _) = get_with(
        &gw.url("/custom"),
        &[
            ("authorization", "Bearer alice"),
            ("x-principal", "mallory"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(values(&up.last().headers, "x-principal"), ["alice"]);

    // 401 (also with no credentials at all) and 403 go back to the client; the backend is not asked.
    let hits = up.hits();
    for (auth_header, status, body) in [
        (Some("Bearer bad"), 401, r#"{"error":"unauthorized"}"#),
        (None, 401, r#"{"error":"unauthorized"}"#),
        (Some("Bearer nope"), 403, r#"{"error":"forbidden"}"#),
        (
            Some("Bearer broken"),
            503,
            r#"{"error":"auth unavailable"}"#,
        ),
    ] {
        let headers: Vec<(&str, &str)> = auth_header
            .map(|a| ("authorization", a))
            .into_iter()
            .collect();
        let (s, h, b) = get_with(&gw.url("/api/c"), &headers).await;
        assert_eq!((s, b.as_str()), (status, body), "{auth_header:?}");
        assert!(json(&h), "{auth_header:?}: {h:?}");
    }
    assert_eq!(
        up.hits(),
        hits,
        "a refused request never reaches the backend"
    );

    // An unreachable auth service, then a slow one (the config's 300 ms timeout): 503.
    let (s, h, b) = get_with(&gw.url("/down"), &[("authorization", "Bearer alice")]).await;
    assert_eq!((s, b.as_str()), (503, r#"{"error":"auth unavailable"}"#));
    assert!(json(&h), "{h:?}");
    let started = std::time::Instant::now();
    let (s, h, b) = get_with(&gw.url("/api/d"), &[("authorization", "Bearer slow")]).await;
    assert_eq!((s, b.as_str()), (503, r#"{"error":"auth unavailable"}"#));
    assert!(json(&h), "{h:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout is the config's: {:?}",
        started.elapsed()
    );
    assert_eq!(
        up.hits(),
        hits,
        "a refused request never reaches the backend"
    );
}

/// Sends `body` to the JSON backend through the gateway, which answers it back with `content_type`.
async fn reply(gw: &TestGateway, path: &str, content_type: &str, body: &str) -> Resp {
    request(
        http::Request::post(gw.url(path))
            .header("x-reply-type", content_type)
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap(),
    )
    .await
}

/// json-redact: values under listed keys, at any depth and inside arrays, become the replacement in a
/// compact body with the key order kept; bodies that are not JSON, or not labelled JSON, pass unchanged
/// without `x-redacted`. (The count in `x-redacted` is `json_redact_count`.)
pub async fn json_redact(f: &ExampleFilters, mode: InstanceMode) {
    let (_svc, gw) = redact_gateway(f, mode).await;
    for content_type in ["application/json", "application/json; charset=utf-8"] {
        let (s, _, b) = reply(&gw, "/default/reply", content_type, REDACT_IN).await;
        assert_eq!((s, b.as_str()), (200, REDACT_OUT), "{content_type}");
    }
    let (s, _, b) = reply(
        &gw,
        "/stars/reply",
        "application/json",
        r#"{"token":"t","password":"p"}"#,
    )
    .await;
    assert_eq!((s, b.as_str()), (200, r#"{"token":"***","password":"p"}"#));
    // Nothing to redact: still compact.
    let (_, _, b) = reply(&gw, "/default/reply", "application/json", r#"{ "a": 1 }"#).await;
    assert_eq!(b, r#"{"a":1}"#);
    // Not JSON, or not labelled JSON: unchanged, no header.
    for (content_type, body) in [
        ("application/json", "{\"password\": \"p\""),
        ("text/plain", r#"{"password": "p"}"#),
        ("application/jsonx", r#"{"password": "p"}"#),
    ] {
        let (s, h, b) = reply(&gw, "/default/reply", content_type, body).await;
        assert_eq!((s, b.as_str()), (200, body), "{content_type}");
        assert!(h.get("x-redacted").is_none(), "{content_type}: {h:?}");
    }
}

/// json-redact's `x-redacted: <count>` response header on JSON responses (0 when nothing matched).
pub async fn json_redact_count(f: &ExampleFilters, mode: InstanceMode) {
    let (_svc, gw) = redact_gateway(f, mode).await;
    for (path, body, count) in [
        ("/default/reply", REDACT_IN, "5"),
        ("/stars/reply", r#"{"token":"t","password":"p"}"#, "1"),
        ("/default/reply", r#"{"a":1}"#, "0"),
    ] {
        let (s, h, _) = reply(&gw, path, "application/json", body).await;
        assert_eq!(s, 200);
        assert_eq!(values(&h, "x-redacted"), [count], "{path} {body}: {h:?}");
    }
}

const REDACT_IN: &str = r#"{"user": "ann", "password": "p1", "profile": {"ssn": "123", "keep": 2, "password": {"old": "p0"}},
    "list": [{"ssn": 9}, {"other": true}, [{"password": null}]], "z": "last"}"#;
const REDACT_OUT: &str = r#"{"user":"ann","password":"[redacted]","profile":{"ssn":"[redacted]","keep":2,"password":"[redacted]"},"list":[{"ssn":"[redacted]"},{"other":true},[{"password":"[redacted]"}]],"z":"last"}"#;

/// A gateway with json-redact on `/default` (password, ssn) and `/stars` (token, as `***`) in front of
/// the JSON backend.
async fn redact_gateway(f: &ExampleFilters, mode: InstanceMode) -> (Service, TestGateway) {
    let svc = Service::start().await;
    let gw = TestGateway::start(&format!(
        "plugins:\n{}upstreams:\n  - name: svc\n    endpoints: [\"{}\"]\nroutes:\n\
         \x20 - name: default\n    match: {{path: {{prefix: /default}}}}\n    upstream: svc\n    rewrite: {{strip_prefix: /default}}\n    filters:\n      - plugin: redact\n        config: {{fields: [password, ssn]}}\n\
         \x20 - name: stars\n    match: {{path: {{prefix: /stars}}}}\n    upstream: svc\n    rewrite: {{strip_prefix: /stars}}\n    filters:\n      - plugin: redact\n        config: {{fields: [token], replacement: \"***\"}}\n",
        plugin("redact", &f.json_redact, mode, "{}"),
        svc.addr
    ))
    .await;
    (svc, gw)
}

/// The value of a plugin metric line (`plugin_<name>{plugin="<plugin>"} <value>`), if present.
fn metric(text: &str, name: &str, plugin: &str) -> Option<u64> {
    let prefix = format!("plugin_{name}{{plugin=\"{plugin}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// request-counter: each response carries its request's number in the route's key (or the configured
/// key, shared by the routes naming it); `requests_total` counts every request; without the store grant
/// requests go on without the header.
pub async fn request_counter(f: &ExampleFilters, mode: InstanceMode) {
    request_counter_at(&f.request_counter, mode).await
}

/// The request-counter scenario on the build at `wasm`.
pub async fn request_counter_at(wasm: &std::path::Path, mode: InstanceMode) {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&format!(
        "plugins:\n{}{}upstreams:\n  - name: up\n    endpoints: [\"{}\"]\nroutes:\n\
         \x20 - name: counted\n    match: {{path: {{prefix: /counted}}}}\n    upstream: up\n    filters: [{{plugin: counter}}]\n\
         \x20 - name: shared-a\n    match: {{path: {{prefix: /a}}}}\n    upstream: up\n    filters: [{{plugin: counter, config: {{key: hits}}}}]\n\
         \x20 - name: shared-b\n    match: {{path: {{prefix: /b}}}}\n    upstream: up\n    filters: [{{plugin: counter, config: {{key: hits}}}}]\n\
         \x20 - name: no-store\n    match: {{path: {{prefix: /nostore}}}}\n    upstream: up\n    filters: [{{plugin: counter-denied}}]\n",
        plugin("counter", wasm, mode, "{kv_namespace: counters}"),
        plugin("counter-denied", wasm, mode, "{}"),
        up.addr
    ))
    .await;
    let count = |h: &http::HeaderMap| values(h, "x-request-count");
    for n in 1..=3 {
        let (s, h, _) = get(&gw.url("/counted")).await;
        assert_eq!(s, 200);
        assert_eq!(
            count(&h),
            [n.to_string()],
            "request {n} on the route's own key"
        );
    }
    for (path, n) in [("/a", 1), ("/b", 2), ("/a", 3)] {
        let (_, h, _) = get(&gw.url(path)).await;
        assert_eq!(
            count(&h),
            [n.to_string()],
            "{path}: one key shared by two routes"
        );
    }
    // Concurrent requests each get their own number.
    let mut all: Vec<u64> =
        futures_util::future::join_all((0..8).map(|_| async { get(&gw.url("/counted")).await.1 }))
            .await
            .iter()
            .map(|h| count(h).join(",").parse().expect("a number"))
            .collect();
    all.sort_unstable();
    assert_eq!(all, (4..=11).collect::<Vec<u64>>());
    let (s, h, _) = get(&gw.url("/nostore")).await;
    assert_eq!(s, 200, "the store is denied, the request goes on");
    assert!(h.get("x-request-count").is_none(), "{h:?}");
    let m = gw.metrics().await;
    assert_eq!(metric(&m, "requests_total", "counter"), Some(14), "{m}");
    assert_eq!(
        metric(&m, "requests_total", "counter-denied"),
        Some(1),
        "{m}"
    );
}

/// `gateway plugin test` as a user runs it: (exit code, stdout, stderr).
pub fn plugin_test(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["plugin", "test"])
        .args(args)
        .env("GATEWAY_LOG", "error")
        .output()
        .expect("run the gateway binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `gateway plugin test` fixture of each example (`examples/filters/rust/<name>/tests/`), with the
/// number of cases it has.
const FIXTURES: [(&str, usize); 4] = [
    ("header-rewrite", 2),
    ("auth-callout", 7),
    ("json-redact", 3),
    ("request-counter", 2),
];

/// The examples' `gateway plugin test` fixtures pass against these builds (`--wasm`): every case PASS,
/// exit code 0.
pub fn plugin_test_fixtures(f: &ExampleFilters) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/filters/rust");
    for ((name, cases), wasm) in FIXTURES.iter().zip([
        &f.header_rewrite,
        &f.auth_callout,
        &f.json_redact,
        &f.request_counter,
    ]) {
        let fixture = root.join(format!("{name}/tests/{name}.test.yaml"));
        let (code, out, err) =
            plugin_test(&["--wasm".as_ref(), wasm.as_os_str(), fixture.as_os_str()]);
        assert_eq!(code, 0, "{name}: {out}{err}");
        assert_eq!(
            out.lines().filter(|l| l.starts_with("PASS  ")).count(),
            *cases,
            "{name}: {out}"
        );
        assert!(!out.contains("FAIL"), "{out}");
        assert!(out.contains(&format!("{cases} passed, 0 failed")), "{out}");
    }
}

#[test]
fn plugin_test_runs_the_rust_examples_fixtures() {
    plugin_test_fixtures(rust());
}

#[test]
fn plugin_test_runs_the_templates_fixture_from_its_own_folder() {
    // As the template's README says: the fixture names the build by a path relative to itself.
    let dir = TempDir::new("template-fixture");
    let built = xtask::rust_filter_example().unwrap_or_else(|e| panic!("{e}"));
    let release = dir.0.join("target/wasm32-wasip2/release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::copy(built, release.join("rust_filter.wasm")).unwrap();
    std::fs::create_dir_all(dir.0.join("tests")).unwrap();
    let fixture = dir.0.join("tests/filter.test.yaml");
    let template = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/rust-filter/tests/filter.test.yaml");
    std::fs::copy(template, &fixture).unwrap();
    let (code, out, err) = plugin_test(&[fixture.as_os_str()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("PASS  ")).count(),
        3,
        "{out}"
    );
}

#[test]
fn plugin_test_reports_each_difference_and_fails() {
    // The request counter's cases against header-rewrite (with no config, it changes nothing).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/filters/rust");
    let fixture = root.join("request-counter/tests/request-counter.test.yaml");
    let (code, out, err) = plugin_test(&[
        "--wasm".as_ref(),
        rust().header_rewrite.as_os_str(),
        fixture.as_os_str(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    for line in [
        "FAIL  the first request is number 1\n      response.headers.x-request-count: expected [\"1\"], got (absent)\n",
        "FAIL  the second is number 2\n      response.headers.x-request-count: expected [\"2\"], got (absent)\n",
        "request-counter.test.yaml: 0 passed, 2 failed",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}{err}");
    }
}

#[test]
fn plugin_test_drives_the_body_phases() {
    let kitchen = &xtask::component_fixtures()
        .unwrap_or_else(|e| panic!("{e}"))
        .kitchen;
    let dir = TempDir::new("plugin-test-body");
    let fixture = dir.0.join("body.test.yaml");
    std::fs::write(
        &fixture,
        format!(
            "plugin:\n  path: {}\n  config: request-body=whole\ncases:\n  - name: the filter rewrites the request body\n    request: {{method: POST, path: /upload, body: abc}}\n    expect:\n      backend: {{method: POST, body: \"ABC|chunks=1\"}}\n  - name: a wrong body is a difference\n    request: {{method: POST, path: /upload, body: xyz}}\n    expect:\n      backend: {{body_contains: xyz}}\n",
            kitchen.display()
        ),
    )
    .unwrap();
    let (code, out, err) = plugin_test(&[fixture.as_os_str()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("PASS  the filter rewrites the request body"),
        "{out}{err}"
    );
    assert!(
        out.contains("FAIL  a wrong body is a difference\n      backend.body: expected to contain \"xyz\"\n        got \"XYZ|chunks=1\""),
        "{out}{err}"
    );
}

#[test]
fn plugin_test_expects_failed_filters_and_locates_bad_fixtures() {
    let hostile = &xtask::component_fixtures()
        .unwrap_or_else(|e| panic!("{e}"))
        .hostile;
    let dir = TempDir::new("plugin-test");
    let write = |name: &str, text: &str| {
        let p = dir.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let trap = write(
        "trap.test.yaml",
        &format!(
            "plugin: {{path: {}}}\ncases:\n  - name: a trap fails the request\n    request: {{path: /, headers: {{x-hostile: trap}}}}\n    expect:\n      failed: true\n      backend: {{reached: false}}\n      response: {{status: 500, body_contains: filter_failed}}\n  - name: the next request is served\n    request: {{path: /}}\n    expect:\n      backend: {{headers: {{x-hostile-ok: \"1\"}}}}\n  - name: an unexpected failure is reported\n    request: {{path: /, headers: {{x-hostile: trap}}}}\n",
            hostile.display()
        ),
    );
    let (code, out, err) = plugin_test(&[trap.as_os_str()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("PASS  a trap fails the request"), "{out}");
    assert!(out.contains("PASS  the next request is served"), "{out}");
    assert!(
        out.contains("FAIL  an unexpected failure is reported\n      the filter failed the request: filter `trap` failed: plugin trapped"),
        "{out}"
    );

    let typo = write(
        "typo.test.yaml",
        "plugin: {path: x.wasm}\ncases:\n  - name: a\n    request: {path: /}\n    expect:\n      respnse: {status: 200}\n",
    );
    let (code, out, err) = plugin_test(&[typo.as_os_str()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains(&format!(
            "{}:6:7: cases[0].expect.respnse: unknown field `respnse`",
            typo.display()
        )),
        "{err}"
    );
    let header = write(
        "header.test.yaml",
        "plugin: {path: x.wasm}\ncases:\n  - name: a\n    request: {path: /}\n  - name: b\n    request: {path: /, headers: {\"x y\": v}}\n",
    );
    let (code, _, err) = plugin_test(&[header.as_os_str()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "{}:6:34: cases[1].request.headers.x y: `x y` is not a valid header name",
            header.display()
        )),
        "{err}"
    );
    let config = write(
        "config.test.yaml",
        &format!(
            "plugin:\n  path: {}\n  config: {{bogus: 1}}\ncases:\n  - name: a\n    request: {{path: /}}\n",
            rust().header_rewrite.display()
        ),
    );
    let (code, _, err) = plugin_test(&[config.as_os_str()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("{}:3:3: plugin.config:", config.display())) && err.contains("bogus"),
        "{err}"
    );
    let missing = write(
        "missing.test.yaml",
        "plugin: {path: nowhere.wasm}\ncases:\n  - name: a\n    request: {path: /}\n",
    );
    let (code, _, err) = plugin_test(&[missing.as_os_str()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("missing.test.yaml:1:10: plugin.path") && err.contains("nowhere.wasm"),
        "{err}"
    );
}

/// The Rust builds (`examples/filters/rust`), built from source once per test process.
fn rust() -> &'static ExampleFilters {
    xtask::rust_example_filters().unwrap_or_else(|e| panic!("{e}"))
}

macro_rules! rust_scenarios {
    ($($(#[$attr:meta])* $test:ident: $scenario:ident, $mode:ident;)*) => {$(
        $(#[$attr])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            $scenario(rust(), InstanceMode::$mode).await;
        }
    )*};
}

rust_scenarios! {
    rust_config_rejection_fresh: config_rejection, Fresh;
    rust_header_rewrite_fresh: header_rewrite, Fresh;
    rust_header_rewrite_reuse: header_rewrite, Reuse;
    rust_auth_callout_fresh: auth_callout, Fresh;
    rust_auth_callout_reuse: auth_callout, Reuse;
    rust_json_redact_fresh: json_redact, Fresh;
    rust_json_redact_reuse: json_redact, Reuse;
    rust_json_redact_count_fresh: json_redact_count, Fresh;
    rust_request_counter_fresh: request_counter, Fresh;
    rust_request_counter_reuse: request_counter, Reuse;
}
