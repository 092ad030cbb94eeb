//! The Go SDK (`plugin-sdk/go`) through the real gateway: its native `go test`, the four example
//! filters in Go under the same scenarios as the Rust builds (`sdk_examples.rs`), the Go template,
//! every capability through the Go fixture (`plugin-sdk/go/internal/kitchen`; its store also in a
//! real redis-server; world 0.1.3's path parameters, SendAll and SetMethod), consumers (a Go filter authenticating requests, another reading who they
//! are), a Go panic failing the request by policy, and the memory of one instance over 10 000
//! requests. Go filters run with `instance_mode: reuse` (a Go instance takes milliseconds to
//! start); one scenario also runs fresh.
//!
//! Go is found on PATH (1.24+) or bootstrapped from PyPI into target/tools (`xtask::go`).

use crate::harness::*;
use crate::sdk_examples;
use bytes::Bytes;
use gateway::config::InstanceMode;
use http_body_util::{BodyExt, Full};

fn go_examples() -> &'static xtask::ExampleFilters {
    xtask::go::go_example_filters().unwrap_or_else(|e| panic!("{e}"))
}

fn kitchen() -> &'static std::path::Path {
    xtask::go::go_kitchen().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn go_sdk_unit_tests_pass_natively() {
    let out = xtask::go::go_test_sdk().unwrap_or_else(|e| panic!("{e}"));
    for pkg in [
        "gateway/filter\t",
        "gateway/filter/internal/abi\t",
        "gateway/filter/consumers\t",
        "gateway/filter/http\t",
        "gateway/filter/kv\t",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with("ok") && l.contains(pkg)),
            "go test did not pass {pkg}:\n{out}"
        );
    }
}

macro_rules! go_scenarios {
    ($($(#[$attr:meta])* $test:ident: $scenario:ident, $mode:ident;)*) => {$(
        $(#[$attr])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            sdk_examples::$scenario(go_examples(), InstanceMode::$mode).await;
        }
    )*};
}

go_scenarios! {
    go_config_rejection_reuse: config_rejection, Reuse;
    go_header_rewrite_reuse: header_rewrite, Reuse;
    go_header_rewrite_fresh: header_rewrite, Fresh;
    go_auth_callout_reuse: auth_callout, Reuse;
    go_json_redact_reuse: json_redact, Reuse;
    go_json_redact_count_reuse: json_redact_count, Reuse;
    go_request_counter_reuse: request_counter, Reuse;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_filter_template_builds_and_runs() {
    let wasm = xtask::go::go_filter_template().unwrap_or_else(|e| panic!("{e}"));
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&format!(
        "plugins:\n  - name: hello\n    path: {}\n    instance_mode: reuse\nupstreams:\n  - name: up\n    endpoints: [\"{}\"]\nroutes:\n  - name: r\n    upstream: up\n    filters:\n      - plugin: hello\n        config: bonjour\n",
        wasm.display(),
        up.addr
    ))
    .await;
    for _ in 0..3 {
        let (s, h, _) = get(&gw.url("/a")).await;
        assert_eq!(s, 200);
        assert_eq!(h.get("x-hello").unwrap(), "bonjour");
        assert_eq!(up.last().headers.get("x-filter").unwrap(), "go");
    }
    let hits = up.hits();
    let (s, h, b) = get(&gw.url("/private/x")).await;
    assert_eq!((s, b.as_str()), (403, "forbidden\n"));
    assert_eq!(h.get("content-type").unwrap(), "text/plain");
    assert_eq!(up.hits(), hits);
    let err = TestGateway::try_start(&format!(
        "plugins:\n  - name: hello\n    path: {}\nroutes:\n  - name: r\n    direct_response: {{status: 200}}\n    filters:\n      - plugin: hello\n        config: \"a\\nb\"\n",
        wasm.display()
    ))
    .await
    .err()
    .expect("a two-line greeting is rejected by Init")
    .to_string();
    assert!(err.contains("the greeting must be one line"), "{err}");

    // The template's request fixtures pass with `gateway plugin test`, as its README says.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["plugin", "test", "--wasm"])
        .arg(wasm)
        .arg(xtask::repo_root().join("examples/go-filter/tests/filter.test.yaml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("2 passed, 0 failed"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A gateway with the Go fixture on every path of route `kitchen-route` (with the store and the
/// `backend` upstream granted) and on `/open` with failure policy open.
async fn kitchen_gateway(up: &MockUpstream, limits: &str) -> TestGateway {
    TestGateway::start(&format!(
        "plugins:\n\
         \x20 - name: kitchen\n    path: {k}\n    instance_mode: reuse\n    capabilities: {{kv_namespace: kitchen, upstreams: [backend]}}\n    limits: {limits}\n\
         \x20 - name: kitchen-bare\n    path: {k}\n    instance_mode: reuse\n\
         upstreams:\n  - name: backend\n    endpoints: [\"{a}\"]\n\
         routes:\n\
         \x20 - name: open\n    match: {{path: {{prefix: /open}}}}\n    upstream: backend\n    filters: [{{plugin: kitchen, failure: open}}]\n\
         \x20 - name: bare\n    match: {{path: {{prefix: /bare}}}}\n    upstream: backend\n    filters: [{{plugin: kitchen-bare}}]\n\
         \x20 - name: kitchen-route\n    match: {{path: {{prefix: /}}}}\n    upstream: backend\n    filters: [{{plugin: kitchen}}]\n",
        k = kitchen().display(),
        a = up.addr
    ))
    .await
}

async fn test(gw: &TestGateway, path: &str, name: &str) -> Resp {
    get_with(&gw.url(path), &[("x-test", name)]).await
}

/// The kitchen's `kv-ttl` three times (the namespace must not hold its keys yet).
/// kv.IncrementWithTTL: "window" expires 2 s after the call that created it (a later call's TTL does
/// not move it), "lasting" was created without a TTL and keeps none.
async fn increment_with_ttl(gw: &TestGateway) {
    let started = tokio::time::Instant::now();
    let (s, _, b) = test(gw, "/kv", "kv-ttl").await;
    // The window was created before this answer came: it has expired 2 s after this at the latest.
    let created_by = tokio::time::Instant::now();
    assert_eq!((s, b.as_str()), (200, "kv-ttl window=1,2 lasting=2"));
    let (_, _, b) = test(gw, "/kv", "kv-ttl").await;
    assert_eq!(
        b,
        "kv-ttl window=3,4 lasting=4",
        "within the window's 2 s ({:?} after the first request)",
        started.elapsed()
    );
    tokio::time::sleep_until(created_by + std::time::Duration::from_millis(2300)).await;
    let (_, _, b) = test(gw, "/kv", "kv-ttl").await;
    assert_eq!(
        b, "kv-ttl window=1,2 lasting=6",
        "the window expired 2 s after it was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_capability_from_go() {
    let up = MockUpstream::start("up").await;
    let gw = kitchen_gateway(&up, "{}").await;

    let (s, _, b) = test(&gw, "/facts", "facts").await;
    assert_eq!(s, 200, "{b}");
    for part in [
        "route=kitchen-route ",
        "upstream=backend ",
        "scheme=http ",
        "protocol=1.1 ",
        "client=127.0.0.1:",
        "tls=none",
    ] {
        assert!(b.contains(part), "facts: {part} in {b}");
    }
    assert!(!b.contains("id=0 "), "a request id: {b}");

    let (s, _, b) = test(&gw, "/kv", "kv").await;
    assert_eq!((s, b.as_str()), (200, "kv ok n=-5 backend=local"));
    let (_, _, b) = test(&gw, "/kv", "kv").await;
    assert_eq!(
        b, "kv ok n=-10 backend=local",
        "the store keeps the counter across requests"
    );
    increment_with_ttl(&gw).await;
    let (s, _, b) = test(&gw, "/bare", "kv-denied").await;
    assert_eq!(s, 200, "kv.Backend without a namespace is denied: {b}");
    assert!(b.starts_with("denied: "), "{b}");

    let (s, _, b) = test(&gw, "/metrics", "metrics").await;
    assert_eq!((s, b.as_str()), (200, "metrics ok"));
    let m = gw.metrics().await;
    assert!(
        m.contains("plugin_kitchen_total{plugin=\"kitchen\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("plugin_kitchen_level{plugin=\"kitchen\"} 6"),
        "{m}"
    );
    assert!(m.contains("plugin_kitchen_ms"), "{m}");

    let (s, _, b) = test(&gw, "/misc", "misc").await;
    assert_eq!(s, 200, "{b}");
    assert!(b.starts_with("misc ok now="), "{b}");

    let (s, _, b) = test(&gw, "/http", "http").await;
    assert_eq!(
        (s, b.as_str()),
        (200, "status=200 upstream=up body=mock up /called\n")
    );
    let called = up.last();
    assert_eq!(called.method, "POST");
    assert_eq!(called.uri, "/called?via=kitchen");
    assert_eq!(called.headers.get("x-called").unwrap(), "yes");
    assert_eq!(&called.body[..], b"ping");
    let (_, _, b) = test(&gw, "/x", "http-denied").await;
    assert!(b.starts_with("denied=true denied: "), "{b}");

    // The request's accessors and changes (the fixture answers 500 with what failed).
    let (s, _, b) = get_with(
        &gw.url("/kitchen/request?a=1&b=2"),
        &[("x-test", "request"), ("x-multi", "1"), ("x-multi", "2")],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let seen = up.last();
    assert_eq!(seen.uri, "/rewritten?x=1");
    let multi: Vec<_> = seen.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["1", "2", "3"]);
    assert!(seen.headers.get("x-test").is_none());

    // The body in chunks, changed; a header change in the body phase is a wrong-phase error.
    let resp = request(
        http::Request::post(gw.url("/echo"))
            .body(Full::new(Bytes::from_static(b"hello go")))
            .unwrap(),
    )
    .await;
    assert_eq!((resp.0, resp.2.as_str()), (200, "HELLO GO"));
    assert_eq!(resp.1.get("x-body-phase-header").unwrap(), "wrong-phase");

    // The response: status and headers.
    let (s, h, _) = test(&gw, "/status", "status").await;
    assert_eq!(s, 299);
    assert_eq!(h.get("x-was").unwrap(), "299");
    assert!(h.get("x-upstream").is_none());
}

/// Upstream delay of each of the two calls of the kitchen's `compose` (ms): sent one after the
/// other they would take twice this.
const COMPOSE_DELAY_MS: u64 = 400;

/// WIT 0.1.3 from Go (a component built for the new world): `Request.PathParams`/`PathParam` on a
/// templated route (percent-encoding kept; empty without a template), `http.SendAll` to two
/// upstreams delayed COMPOSE_DELAY_MS each (taking about as long as one of them, with a denied and
/// a timed-out call in the same list, each result in its place), `Request.SetMethod` (an invalid
/// token refused; a wrong phase in the body phase, see `every_capability_from_go`), and
/// `http.MaxSendAll` (32 requests answered in order, 33 refused without sending any).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_filters_use_world_0_1_3() {
    let one = MockUpstream::start("one").await;
    let two = MockUpstream::start("two").await;
    let gw = TestGateway::start(&format!(
        "plugins:\n\
         \x20 - name: kitchen\n    path: {k}\n    instance_mode: reuse\n    capabilities: {{upstreams: [backend, second]}}\n\
         upstreams:\n\
         \x20 - name: backend\n    endpoints: [\"{a}\"]\n\
         \x20 - name: second\n    endpoints: [\"{b}\"]\n\
         routes:\n\
         \x20 - name: orders\n    match: {{path: {{template: \"/users/{{id}}/orders/{{order}}\"}}}}\n    upstream: backend\n    filters: [{{plugin: kitchen}}]\n\
         \x20 - name: plain\n    match: {{path: {{prefix: /}}}}\n    upstream: backend\n    filters: [{{plugin: kitchen}}]\n",
        k = kitchen().display(),
        a = one.addr,
        b = two.addr
    ))
    .await;
    let delay = COMPOSE_DELAY_MS.to_string();
    let started = std::time::Instant::now();
    let (s, _, b) = get_with(
        &gw.url("/users/a%20b/orders/7"),
        &[("x-test", "compose"), ("x-delay", &delay)],
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(s, 200, "{b}");
    let forwarded = one.last();
    let h = |name: &str| {
        forwarded
            .headers
            .get(name)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(forwarded.method, "PATCH", "the method the filter set");
    assert_eq!(forwarded.uri, "/users/a%20b/orders/7");
    assert_eq!(h("x-params"), "id=a%20b,order=7");
    assert_eq!(
        (h("x-id").as_str(), h("x-has-id").as_str()),
        ("a%20b", "true")
    );
    assert_eq!(
        h("x-send-all"),
        "200:one:delayed 200:two:delayed denied timeout",
        "one result per call, in order"
    );
    let seen_one: Vec<_> = one
        .seen()
        .iter()
        .map(|r| (r.method.to_string(), r.uri.clone()))
        .collect();
    assert!(
        seen_one.contains(&("GET".into(), format!("/delay/{delay}?user=a%20b"))),
        "{seen_one:?}"
    );
    assert!(
        seen_one.contains(&("GET".into(), "/slow".into())),
        "{seen_one:?}"
    );
    let called = two.last();
    assert_eq!(
        (called.method.as_str(), called.uri.as_str()),
        ("POST", format!("/delay/{delay}").as_str())
    );
    assert_eq!(&called.body[..], b"a%20b");
    assert_eq!(called.headers.get("x-from").unwrap(), "kitchen");
    // The calls ran at the same time: SendAll took about one delay, well under the two in a row.
    let took: u64 = h("x-send-all-ms").parse().unwrap();
    eprintln!(
        "go send-all: two calls of {COMPOSE_DELAY_MS} ms (and a 100 ms timeout) took {took} ms; the request {elapsed:?}"
    );
    // The bound is the property itself: one after the other, the two calls take at least twice
    // the delay, whatever the machine's load; at the same time, less (the whole request, with the
    // Go instance's start, is not bounded: that would time the machine, not SendAll).
    assert!(
        (COMPOSE_DELAY_MS..COMPOSE_DELAY_MS * 2).contains(&took),
        "SendAll took {took} ms for two calls of {COMPOSE_DELAY_MS} ms (request: {elapsed:?})"
    );

    // A route without a template: no parameters.
    let (s, _, b) = get_with(
        &gw.url("/plain"),
        &[("x-test", "compose"), ("x-delay", "0")],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let forwarded = one.last();
    assert_eq!(forwarded.uri, "/plain");
    assert_eq!(forwarded.headers.get("x-params").unwrap(), "");
    assert_eq!(forwarded.headers.get("x-has-id").unwrap(), "false");

    let hits = one.hits();
    let (s, _, b) = test(&gw, "/plain", "send-all-limit").await;
    assert_eq!(s, 200, "{b}");
    assert!(
        b.starts_with("in-order=32/32 bad-request=33/33 bad request: 33 requests"),
        "{b}"
    );
    assert_eq!(one.hits(), hits + 32, "the list of 33 sent nothing");
}

/// The consumers of the consumers tests: alice (groups, a key, a password, an HS256 secret of the
/// 32 bytes HS256 needs at least), bob (an ES256 public key, no groups) and guest (no credentials,
/// the anonymous consumer).
const CONSUMERS: &str = "consumers:\n\
    \x20 - name: alice\n    groups: [admins, ops]\n    credentials:\n\
    \x20     key-auth: {key: k-alice}\n\
    \x20     basic-auth: {username: alice, password: pw}\n\
    \x20     jwt-auth: {key: alice-iss, secret: alice-hs256-secret-32-bytes-long, algorithm: HS256}\n\
    \x20 - name: bob\n    credentials:\n\
    \x20     jwt-auth:\n        key: kid-1\n        algorithm: ES256\n        public_key: |\n\
    \x20         -----BEGIN PUBLIC KEY-----\n\
    \x20         MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTl77Ji/Y6n+9r5B0BHltOjDzFoY\n\
    \x20         PEtST/a6ERp90WKOWkbpEC9gWVVyVGvolZh+EVpBWUqBKH5A5l0/rN/UWQ==\n\
    \x20         -----END PUBLIC KEY-----\n\
    \x20 - name: guest\n";

/// HMACs of `header.payload` keyed with alice's secret (Python's `hmac`), in hex, as the request
/// headers the Go fixture reads: a filter can ask the gateway whose secret made a MAC, not have one
/// made.
const ALICE_MACS: [(&str, &str); 3] = [
    (
        "x-mac-sha256",
        "aab5db36df3cb4af02e15036f20b7b030930df137f529c3453c81046acd87906",
    ),
    (
        "x-mac-sha384",
        "87988f7dada7993e876e82255d2abaf46275218098d5d4987f65498904344e3daaf0eafc2d41d7bbf2fd56c985ca198b",
    ),
    (
        "x-mac-sha512",
        "de5cfc18972afc98538960e28f7ef5f4cee968339b4a88f641356c6466e0792f9f0544e6c5a33996344c1f1b177006ec33d3b654e4d71cc2048bee56a2a57914",
    ),
];

/// `/calls/...`: the Go fixture alone (it makes every consumers call itself). `/auth/...`: the Go
/// fixture as an authenticator (`go-auth`: a key or Basic credentials, else the anonymous `guest`),
/// then as a reporter of the consumer (`go-report`). `/rust-first/...`: the Rust fixture (it
/// authenticates by `x-auth-key` under `x-test: consumers`), then the Go reporter. All of them have
/// `capabilities.consumers` (the reporter too: it tries to authenticate in the response phase) but
/// `/ungranted/...`'s Go fixture.
async fn consumers_gateway(up: &MockUpstream) -> TestGateway {
    let rust = &xtask::component_fixtures()
        .unwrap_or_else(|e| panic!("{e}"))
        .kitchen;
    TestGateway::start(&format!(
        "{CONSUMERS}\
         plugins:\n\
         \x20 - name: kitchen\n    path: {k}\n    instance_mode: reuse\n{g}\
         \x20 - name: go-auth\n    path: {k}\n    instance_mode: reuse\n{g}\
         \x20 - name: go-report\n    path: {k}\n    instance_mode: reuse\n{g}\
         \x20 - name: rust-kitchen\n    path: {r}\n{g}\
         \x20 - name: go-ungranted\n    path: {k}\n    instance_mode: reuse\n\
         upstreams:\n  - name: backend\n    endpoints: [\"{a}\"]\n\
         routes:\n\
         \x20 - name: calls\n    match: {{path: {{prefix: /calls}}}}\n    upstream: backend\n    filters: [{{plugin: kitchen}}]\n\
         \x20 - name: auth\n    match: {{path: {{prefix: /auth}}}}\n    upstream: backend\n\
         \x20   filters: [{{plugin: go-auth, config: \"authenticate anonymous=guest\"}}, {{plugin: go-report, config: report-consumer}}]\n\
         \x20 - name: rust-first\n    match: {{path: {{prefix: /rust-first}}}}\n    upstream: backend\n\
         \x20   filters: [{{plugin: rust-kitchen}}, {{plugin: go-report, config: report-consumer}}]\n\
         \x20 - name: ungranted\n    match: {{path: {{prefix: /ungranted}}}}\n    upstream: backend\n    filters: [{{plugin: go-ungranted}}]\n",
        k = kitchen().display(),
        g = "    capabilities: {consumers: true}\n",
        r = rust.display(),
        a = up.addr
    ))
    .await
}

/// Checks what the Go reporter told the upstream and the client about the request's consumer.
fn assert_reported(
    up: &MockUpstream,
    resp: &http::HeaderMap,
    name: &str,
    groups: &str,
    case: &str,
) {
    let seen = up.last();
    assert_eq!(seen.headers.get("x-go-consumer").unwrap(), name, "{case}");
    assert_eq!(
        seen.headers.get("x-go-consumer-groups").unwrap(),
        groups,
        "{case}"
    );
    assert_eq!(resp.get("x-go-consumer-seen").unwrap(), name, "{case}");
    assert_eq!(
        resp.get("x-go-late-authenticate").unwrap(),
        "true",
        "{case}: authenticating in the response phase is a wrong phase"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_filters_authenticate_and_read_consumers() {
    let up = MockUpstream::start("up").await;
    let gw = consumers_gateway(&up).await;

    // Every call, from one filter: lookups, secrets checked by the host, a credential's attributes
    // without its secret, MACs made with alice's secret verified by the host (the fixture checks
    // that a flipped bit, another message or algorithm, no secret, no credential verify as no one),
    // authenticating (an unknown name is invalid). Twice: the consumer the first request was
    // authenticated as is not the second's.
    let mut headers = vec![("x-test", "consumers")];
    headers.extend(ALICE_MACS);
    for _ in 0..2 {
        let (s, _, b) = get_with(&gw.url("/calls/x"), &headers).await;
        assert_eq!(
            (s, b.as_str()),
            (200, "consumers ok sha256=alice sha384=alice sha512=alice")
        );
    }
    // Without the MACs the same calls verify as no one: the alices above are the host's answers.
    let (s, _, b) = test(&gw, "/calls/x", "consumers").await;
    assert_eq!(
        (s, b.as_str()),
        (200, "consumers ok sha256=none sha384=none sha512=none")
    );

    // A Go filter without `capabilities.consumers` reads consumers (Get, Current) but finds no one
    // by a credential (alice's key, password, jwt-auth key and a MAC of her secret), and is denied
    // authenticating.
    let mut headers = vec![("x-test", "consumers-ungranted")];
    headers.extend(ALICE_MACS);
    let (s, _, b) = get_with(&gw.url("/ungranted/x"), &headers).await;
    assert_eq!(
        (s, b.as_str()),
        (
            200,
            "find-by-key=none check-secret=none credential=none verify-hmac=none get=alice \
             authenticate=denied current=none"
        )
    );

    // A Go filter authenticates (by key, by Basic credentials, else as the anonymous consumer); the
    // next filter, Go too, reads whom as, in both phases.
    let basic = ("authorization", "Basic YWxpY2U6cHc="); // alice:pw
    for (creds, name, groups) in [
        (Some(("x-api-key", "k-alice")), "alice", "admins,ops"),
        (Some(basic), "alice", "admins,ops"),
        (None, "guest", ""),
    ] {
        let (s, h, b) = get_with(&gw.url("/auth/x"), creds.as_slice()).await;
        assert_eq!((s, b.as_str()), (200, "mock up /auth/x\n"), "{creds:?}");
        assert_reported(&up, &h, name, groups, &format!("{creds:?}"));
    }
    // Credentials the host does not know are refused by the Go authenticator; nothing goes upstream.
    let hits = up.hits();
    for (creds, refusal) in [
        (("x-api-key", "k-nobody"), "kitchen: unknown key\n"),
        (
            ("authorization", "Basic YWxpY2U6bm9wZQ=="), // alice:nope
            "kitchen: bad credentials\n",
        ),
    ] {
        let (s, _, b) = get_with(&gw.url("/auth/x"), &[creds]).await;
        assert_eq!((s, b.as_str()), (401, refusal), "{creds:?}");
    }
    assert_eq!(up.hits(), hits);

    // A Rust filter authenticates; the Go filter after it reads the consumer.
    let (s, h, b) = get_with(
        &gw.url("/rust-first/x"),
        &[("x-test", "consumers"), ("x-auth-key", "k-alice")],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(up.last().headers.get("x-authenticate").unwrap(), "ok");
    assert_reported(&up, &h, "alice", "admins,ops", "rust first");
    let (_, h, _) = get_with(&gw.url("/rust-first/x"), &[("x-test", "consumers")]).await;
    assert_reported(&up, &h, "none", "", "rust first, no key");

    // consumers.Get works in Init: an anonymous consumer the config does not have rejects it.
    let err = TestGateway::try_start(&format!(
        "{CONSUMERS}plugins:\n  - name: go-auth\n    path: {}\n    instance_mode: reuse\nroutes:\n  - name: r\n    direct_response: {{status: 200}}\n    filters:\n      - plugin: go-auth\n        config: \"authenticate anonymous=ghost\"\n",
        kitchen().display()
    ))
    .await
    .err()
    .expect("an unknown anonymous consumer is rejected by Init")
    .to_string();
    assert!(
        err.contains("kitchen: anonymous consumer ghost is not in the config"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_panic_fails_the_request_by_policy() {
    let up = MockUpstream::start("up").await;
    let gw = kitchen_gateway(&up, "{}").await;
    let hits = up.hits();
    let (s, _, b) = test(&gw, "/x", "panic").await;
    assert_eq!(s, 500, "closed policy: {b}");
    assert_eq!(up.hits(), hits, "a failed filter does not forward");
    let (s, _, b) = test(&gw, "/open/x", "panic").await;
    assert_eq!(
        (s, b.as_str()),
        (200, "mock up /open/x\n"),
        "open policy skips it"
    );
    // The panicked instance is gone; the next request gets a working one.
    let (s, _, b) = test(&gw, "/kv", "kv").await;
    assert_eq!(s, 200, "{b}");
    let m = gw.metrics().await;
    assert!(
        m.lines().any(
            |l| l.starts_with("gateway_plugin_traps_total{plugin=\"kitchen\"}")
                && !l.ends_with(" 0")
        ),
        "the trap is counted: {m}"
    );

    for (config, expect) in [
        ("reject", "kitchen: rejected as asked"),
        ("panic", "plugin trapped"),
    ] {
        let err = TestGateway::try_start(&format!(
            "plugins:\n  - name: k\n    path: {}\n    instance_mode: reuse\nroutes:\n  - name: r\n    direct_response: {{status: 200}}\n    filters:\n      - plugin: k\n        config: {config}\n",
            kitchen().display()
        ))
        .await
        .err()
        .unwrap_or_else(|| panic!("init with `{config}` must fail the config"))
        .to_string();
        assert!(err.contains(expect), "{config}: {err}");
    }
}

/// Linear memory cap of the instance in the memory test: growing past it traps the request.
const GO_MEMORY_CAP_MIB: u64 = 24;
/// Requests of the memory test, all on one warm instance.
const GO_MEMORY_REQUESTS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_instance_memory_stays_bounded_over_10000_requests() {
    let up = MockUpstream::start("up").await;
    let gw = kitchen_gateway(
        &up,
        &format!("{{memory: {GO_MEMORY_CAP_MIB}MiB, instances: 1}}"),
    )
    .await;
    // Keep-alive connections, requests one after another: one warm instance serves them all.
    let url: http::Uri = gw.url("/churn").parse().unwrap();
    let addr = format!("{}:{}", url.host().unwrap(), url.port_u16().unwrap());
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        send
    };
    let mut send = connect().await;
    let mut sys = Vec::new();
    let started = std::time::Instant::now();
    for i in 0..GO_MEMORY_REQUESTS {
        let req = http::Request::get("/churn")
            .header("host", url.authority().unwrap().as_str())
            .header("x-test", "churn")
            .body(Full::new(Bytes::new()))
            .unwrap();
        if send.ready().await.is_err() {
            send = connect().await; // the gateway closed the connection (keep-alive limits)
        }
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let h = resp.headers().clone();
        let _ = resp.into_body().collect().await;
        assert_eq!(
            status, 200,
            "request {i} failed (memory cap {GO_MEMORY_CAP_MIB} MiB?)"
        );
        let n = |name: &str| -> u64 {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("request {i}: no {name}: {h:?}"))
        };
        if i == 99 || i == GO_MEMORY_REQUESTS - 1 {
            sys.push((
                n("x-go-sys"),
                n("x-go-heap-inuse"),
                n("x-go-gc"),
                n("x-served"),
            ));
        }
    }
    let ((sys100, heap100, _, _), (sys_end, heap_end, gcs, served_end)) = (sys[0], sys[1]);
    eprintln!(
        "go memory: after 100 requests Sys {} KiB heap in use {} KiB; after {GO_MEMORY_REQUESTS}: Sys {} KiB, heap in use {} KiB, {gcs} GCs; cap {GO_MEMORY_CAP_MIB} MiB; {:?}",
        sys100 / 1024,
        heap100 / 1024,
        sys_end / 1024,
        heap_end / 1024,
        started.elapsed()
    );
    assert!(gcs > 10, "the collector ran: {gcs}");
    assert!(
        sys_end <= sys100 + (4 << 20),
        "the Go runtime's memory kept growing: {sys100} -> {sys_end} bytes"
    );
    assert!(
        served_end >= GO_MEMORY_REQUESTS as u64,
        "one instance served every request: it counted {served_end}"
    );
    let m = gw.metrics().await;
    assert!(
        m.contains("gateway_plugin_memory_limit_total{plugin=\"kitchen\"} 0"),
        "{m}"
    );
}

/// The Go kv package on a Redis namespace: the same answers as in process, `kv.Backend` is Redis,
/// and a frozen server is `filter.ErrUnavailable` with the host's message within the command
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_kv_on_redis() {
    let redis = gateway_test_support::RedisServer::start();
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&format!(
        "plugins:\n  - name: kitchen\n    path: {k}\n    instance_mode: reuse\n    capabilities: {{kv_namespace: kitchen}}\n\
         upstreams:\n  - name: backend\n    endpoints: [\"{a}\"]\n\
         routes:\n  - name: r\n    upstream: backend\n    filters: [{{plugin: kitchen}}]\n\
         kv_namespaces:\n  kitchen:\n    backend: redis\n    redis: {{url: \"{r}\", connect_timeout: 200ms, command_timeout: 200ms}}\n",
        k = kitchen().display(),
        a = up.addr,
        r = redis.url()
    ))
    .await;
    let (s, _, b) = test(&gw, "/kv", "kv").await;
    assert_eq!((s, b.as_str()), (200, "kv ok n=-5 backend=redis"));
    increment_with_ttl(&gw).await;
    let (_, _, b) = test(&gw, "/kv", "kv-probe").await;
    assert_eq!(b, "backend=redis probe=1 unavailable=false err=<nil>");

    redis.freeze();
    let started = std::time::Instant::now();
    let (s, _, b) = test(&gw, "/kv", "kv-probe").await;
    assert_eq!(s, 200, "{b}");
    assert!(
        b.starts_with("backend=redis probe=0 unavailable=true err=unavailable: ")
            && b.len() > "backend=redis probe=0 unavailable=true err=unavailable: ".len(),
        "{b}"
    );
    // A hang detector, not a speed assertion: the timeout is 200 ms.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    redis.thaw();
}

/// A Go filter whose type has `OnRequest` only (the benchmark's no-op, `bench/filters-go`): the SDK
/// declares that one phase (WIT 0.1.5), so the gateway enters it once per request, in both instance
/// modes, and never for the response or a body. Counted with the per-plugin call figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_filter_with_only_on_request_is_entered_once_per_request() {
    let root = xtask::repo_root();
    let wasm = root.join("target/go-filters/bench_noop.wasm");
    xtask::go::build_go_filter(&root.join("bench/filters-go"), &wasm)
        .unwrap_or_else(|e| panic!("{e}"));
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&format!(
        "plugins:\n  - name: noop\n    path: {}\n    instance_mode: reuse\n  - name: noop-fresh\n    path: {}\n    instance_mode: fresh\n\
         upstreams:\n  - name: up\n    endpoints: [\"{}\"]\n\
         routes:\n  - name: r\n    match: {{path: {{prefix: /r}}}}\n    upstream: up\n    filters: [{{plugin: noop}}]\n\
         \x20 - name: f\n    match: {{path: {{prefix: /f}}}}\n    upstream: up\n    filters: [{{plugin: noop-fresh}}]\n",
        wasm.display(),
        wasm.display(),
        up.addr
    ))
    .await;
    for _ in 0..3 {
        let (s, _, body) = get(&gw.url("/r/x")).await;
        assert_eq!(s, 200, "{body}");
    }
    let req = http::Request::post(gw.url("/r/upload"))
        .body(Full::new(Bytes::from_static(b"not for the filter")))
        .unwrap();
    let (s, _, body) = request(req).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(up.last().body, Bytes::from_static(b"not for the filter"));
    let (s, _, body) = get(&gw.url("/f/x")).await;
    assert_eq!(s, 200, "{body}");
    let m = gw.metrics().await;
    let calls = |plugin: &str, route: &str, phase: &str| plugin_calls(&m, plugin, route, phase);
    assert_eq!(calls("noop", "r", "request_headers"), Some(4.0), "{m}");
    assert_eq!(calls("noop", "r", "request_body"), None, "{m}");
    assert_eq!(calls("noop", "r", "response_headers"), None, "{m}");
    assert_eq!(
        calls("noop-fresh", "f", "request_headers"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(calls("noop-fresh", "f", "response_headers"), None, "{m}");
}
