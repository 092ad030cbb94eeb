//! Consumers (WIT `consumers`, since 0.1.1; the Proxy-Wasm `consumer.*` properties): lookups by key,
//! password and identifier without the secret leaving the host, the request's consumer shared by the
//! filters of a route in both phases, the access log and metrics; secrets from `file:`; `/config`
//! without them; bad sections reported at their line; components built against 0.1.0 still load.

use super::*;

const MAC_OF_HEADER_PAYLOAD: &str =
    "358a8735226c11badfb24e6a17ed82665d3d61f60909e9e33ad1bfe90c16d4c0";

/// The consumers: alice's key is read from the file `key_file`.
fn consumers(key_file: &Path) -> String {
    format!(
        "consumers:
  - name: alice
    groups: [admins, ops]
    credentials:
      key-auth: {{key: \"file:{}\"}}
      jwt-auth: {{key: alice-iss, secret: hs-secret-of-at-least-32-bytes-xxxxx}}
  - name: bob
    credentials:
      key-auth: [{{key: k-bob}}]
      basic-auth: {{username: bob, password: pw-bob}}
",
        key_file.display()
    )
}

/// A file holding alice's key (with the trailing newline editors write).
fn key_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("gw-e2e-alice-key-{}", std::process::id()));
    std::fs::write(&path, "k-alice\n").unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_find_consumers_without_seeing_secrets_and_share_whom_they_authenticated() {
    let b = Backends::start().await;
    let pw = xtask::proxy_wasm_fixtures().unwrap_or_else(|e| panic!("{e}"));
    let key = key_file();
    // Two component filters, then a Proxy-Wasm one, on one route.
    let route = Route::new("c")
        .prefix("/c/")
        .upstream("up")
        .lines("    consumer_metrics: true\n")
        .filter("kitchen", "")
        .filter("kitchen", "")
        .filter("pw", "tag=p");
    let yaml = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(b.up.addr))
        .plugin(plugin(
            "kitchen",
            kitchen(),
            "    capabilities: {consumers: true}\n",
        ))
        .plugin(plugin(
            "pw",
            &pw.kitchen,
            "    capabilities: {consumers: true}\n",
        ))
        .plugin(plugin("ungranted", kitchen(), ""))
        .route(route)
        .route(
            Route::new("u")
                .prefix("/u/")
                .upstream("up")
                .filter("ungranted", ""),
        )
        .raw(&consumers(&key))
        .yaml();
    let gw = TestGateway::start(&yaml).await;
    let call = |extra: &[(&'static str, &'static str)]| {
        let mut h = vec![("x-test", "consumers")];
        h.extend_from_slice(extra);
        h
    };

    // A key from a file: the first filter authenticates, the second and the Proxy-Wasm one see it,
    // and so do the response phases, where it can no longer change.
    let (s, rh, body) = get_with(&gw.url("/c/x"), &call(&[("x-auth-key", "k-alice")])).await;
    assert_eq!(s, 200, "{body}");
    let h = b.up.last().headers;
    assert_eq!(
        hv(&h, "x-consumer-before"),
        "alice",
        "the second filter saw the first's"
    );
    assert_eq!(hv(&h, "x-consumer-after"), "alice");
    assert_eq!(hv(&h, "x-authenticate"), "ok");
    assert_eq!(hv(&h, "x-consumer-groups"), "admins,ops");
    assert_eq!(hv(&h, "x-prop-consumer-name"), "alice");
    assert_eq!(hv(&h, "x-prop-consumer-groups"), "admins,ops");
    assert_eq!(hv(&rh, "x-consumer-seen"), "alice");
    assert_eq!(hv(&rh, "x-late-authenticate"), "wrong-phase");

    // A wrong key finds nobody; nothing is authenticated.
    get_with(&gw.url("/c/x"), &call(&[("x-auth-key", "k-alicf")])).await;
    let h = b.up.last().headers;
    assert_eq!(hv(&h, "x-consumer-after"), "-");
    assert_eq!(hv(&h, "x-prop-consumer-name"), "<none>");
    assert!(h.get("x-authenticate").is_none());

    // A password: right, wrong, and an unknown user.
    for (basic, who) in [
        ("bob:pw-bob", "bob"),
        ("bob:pw-Bob", "-"),
        ("carol:pw-bob", "-"),
    ] {
        get_with(&gw.url("/c/x"), &call(&[("x-auth-basic", basic)])).await;
        assert_eq!(hv(&b.up.last().headers, "x-consumer-after"), who, "{basic}");
    }

    // Authenticating as a name that is no consumer is refused, typed.
    get_with(&gw.url("/c/x"), &call(&[("x-auth-name", "mallory")])).await;
    let h = b.up.last().headers;
    assert_eq!(hv(&h, "x-authenticate"), "invalid");
    assert_eq!(hv(&h, "x-consumer-after"), "-");

    // A Proxy-Wasm filter authenticates by setting `consumer.name`: only to a consumer.
    get_with(&gw.url("/c/x"), &call(&[("x-set-consumer", "bob")])).await;
    let h = b.up.last().headers;
    assert_eq!(hv(&h, "x-set-consumer-result"), "ok", "{h:?}");
    assert_eq!(hv(&h, "x-prop-consumer-name"), "bob");
    // Any other name is `BadArgument`, on which the Rust Proxy-Wasm SDK panics: the filter fails
    // the request (closed) and the upstream is not reached.
    let hits = b.up.hits();
    let (s, _, _) = get_with(&gw.url("/c/x"), &call(&[("x-set-consumer", "mallory")])).await;
    assert_eq!((s, b.up.hits()), (500, hits));

    // A jwt-auth credential: its attributes, and whether a MAC was made with its secret (never
    // the secret, nor a MAC made with it).
    let jwt =
        |key: &'static str, mac: &'static str| call(&[("x-jwt-key", key), ("x-jwt-mac", mac)]);
    get_with(&gw.url("/c/x"), &jwt("alice-iss", MAC_OF_HEADER_PAYLOAD)).await;
    let h = b.up.last().headers;
    assert_eq!(hv(&h, "x-jwt-alg"), "HS256");
    assert_eq!(hv(&h, "x-jwt-verified"), "alice");
    let wrong = "358a8735226c11badfb24e6a17ed82665d3d61f60909e9e33ad1bfe90c16d4c1";
    get_with(&gw.url("/c/x"), &jwt("alice-iss", wrong)).await;
    assert_eq!(hv(&b.up.last().headers, "x-jwt-verified"), "-");
    get_with(&gw.url("/c/x"), &jwt("nobody", MAC_OF_HEADER_PAYLOAD)).await;
    let h = b.up.last().headers;
    assert_eq!(
        (hv(&h, "x-jwt-alg"), hv(&h, "x-jwt-verified")),
        ("-".into(), "-".into())
    );

    // Without `capabilities.consumers` a plugin may read who the request is, not check credentials
    // or authenticate: lookups find nothing, authenticating is denied.
    get_with(&gw.url("/u/x"), &call(&[("x-auth-key", "k-alice")])).await;
    assert_eq!(hv(&b.up.last().headers, "x-consumer-after"), "-");
    get_with(&gw.url("/u/x"), &call(&[("x-auth-name", "alice")])).await;
    let h = b.up.last().headers;
    assert_eq!(
        (hv(&h, "x-authenticate"), hv(&h, "x-consumer-after")),
        ("denied".into(), "-".into())
    );
    let h = {
        get_with(
            &gw.url("/u/x"),
            &call(&[
                ("x-jwt-key", "alice-iss"),
                ("x-jwt-mac", MAC_OF_HEADER_PAYLOAD),
            ]),
        )
        .await;
        b.up.last().headers
    };
    assert_eq!(
        (hv(&h, "x-jwt-alg"), hv(&h, "x-jwt-verified")),
        ("-".into(), "-".into())
    );

    // Metrics count the route's responses by consumer.
    let m = gw.metrics().await;
    for want in [
        "gateway_consumer_requests_total{route=\"c\",consumer=\"alice\",status=\"200\"} 1\n",
        "gateway_consumer_requests_total{route=\"c\",consumer=\"bob\",status=\"200\"} 2\n",
    ] {
        assert!(m.contains(want), "missing {want} in\n{m}");
    }

    // `/config` shows neither inline secrets nor what files hold, only where they are.
    let (s, _, config) = get(&format!("http://{}/config", gw.admin)).await;
    assert_eq!(s, 200);
    for secret in ["k-alice", "k-bob", "pw-bob", "hs-secret-of"] {
        assert!(!config.contains(secret), "{secret} in {config}");
    }
    assert!(
        config.contains(&format!("file:{}", key.display())),
        "{config}"
    );
    assert!(config.contains("<redacted>"), "{config}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_consumers_section_is_reported_at_its_line() {
    for (section, field, line, message) in [
        (
            "consumers:\n  - name: a\n    credentials:\n      key-auth: {key: 'env:GW_E2E_NEVER_SET'}\n",
            "consumers[0].credentials.key-auth.key",
            4,
            "GW_E2E_NEVER_SET",
        ),
        (
            "consumers:\n  - name: a\n  - name: b\n    credentials:\n      basic-auth:\n        - {username: u, password: p}\n        - {username: u, password: q}\n",
            "consumers[1].credentials.basic-auth[1].username",
            7,
            "already a basic-auth credential of consumer `b`",
        ),
    ] {
        let yaml = format!(
            "listeners:\n  - {{name: main, address: '127.0.0.1:0'}}\nroutes:\n  - name: r\n    direct_response: {{body: ok}}\n{section}"
        );
        let path = Path::new("gateway.yaml");
        let cfg = gateway::Config::parse(path, &yaml).unwrap();
        let src = gateway::Source {
            path: path.into(),
            text: Some(yaml.clone()),
        };
        let e = match gateway::Runtime::build(cfg, &src, &Default::default()) {
            Ok(_) => panic!("{section} was accepted"),
            Err(e) => e,
        };
        assert_eq!(e.field, field, "{e}");
        assert_eq!(e.location.map(|l| l.0), Some(line + 5), "{e}");
        assert!(e.message.contains(message), "{e}");
    }
}

/// A component built against the world as it was at 0.1.0 links against today's host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_built_for_world_0_1_0_still_loads_and_runs() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin("old", &fixtures().world_0_1_0, "")],
            &[route("old", "old", "", "")],
        )
        .await;
    let (s, h, body) = get(&gw.url("/old/x")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(hv(&h, "x-world"), "0.1.0");
    let up = b.up.last().headers;
    assert_eq!(hv(&up, "x-world"), "0.1.0");
    assert_eq!(hv(&up, "x-world-route"), "old");
}

/// A component built against the world as it was at 0.1.2 (before `set-method`, `path-params` and
/// `send-all`) links against today's host, with the interfaces 0.1.2 added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_built_for_world_0_1_2_still_loads_and_runs() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin(
                "old",
                &fixtures().world_0_1_2,
                "    capabilities: {kv_namespace: old}\n",
            )],
            &[route("old", "old", "", "")],
        )
        .await;
    for n in 1..=2 {
        let (s, h, body) = get(&gw.url("/old/x")).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(hv(&h, "x-world"), "0.1.2");
        let up = b.up.last().headers;
        assert_eq!(hv(&up, "x-world"), "0.1.2");
        assert_eq!(hv(&up, "x-world-count"), n.to_string());
        assert_eq!(hv(&up, "x-world-cache-bound"), "true");
    }
}

/// A running gateway process: consumers follow reloads (a rotated `file:` key takes effect through the
/// file watch, a changed section makes the filter stages anew), `/config` sent back with an inline
/// secret shown as `<redacted>` is refused and changes nothing, and the access log names the consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_follow_reloads_and_rotated_secret_files() {
    let up = MockUpstream::start("up").await;
    let key = std::env::temp_dir().join(format!("gw-e2e-rotated-key-{}", std::process::id()));
    std::fs::write(&key, "k-one\n").unwrap();
    let yaml = |bob: &str| {
        format!(
            "upstreams:\n  - name: up\n    endpoints: [\"{}\"]\n\
             plugins:\n  - name: kitchen\n    path: {}\n    capabilities: {{consumers: true}}\n\
             routes:\n  - name: c\n    upstream: up\n    filters: [{{plugin: kitchen, config: \"\"}}]\n\
             consumers:\n  - name: alice\n    credentials: {{key-auth: {{key: \"file:{}\"}}}}\n\
             \x20 - name: {bob}\n    credentials: {{key-auth: {{key: k-bob}}}}\n\
             server:\n  log_format: json\n",
            up.addr,
            kitchen().display(),
            key.display()
        )
    };
    let mut gw = GatewayProcess::start_with_log(&yaml("bob"), "access=info,warn").await;
    let who = |k: &'static str| {
        let url = gw.url("/x");
        let up = &up;
        async move {
            let (s, _, body) = get_with(&url, &[("x-test", "consumers"), ("x-auth-key", k)]).await;
            assert_eq!(s, 200, "{body}");
            hv(&up.last().headers, "x-consumer-after")
        }
    };
    assert_eq!(who("k-one").await, "alice");
    assert_eq!(who("k-bob").await, "bob");

    // The key file is rotated: the watch reloads, the new key works and the old one no longer does.
    std::fs::write(&key, "k-two\n").unwrap();
    let rotated = eventually(Duration::from_secs(10), || async {
        who("k-two").await == "alice"
    })
    .await;
    assert!(rotated, "the rotated key was not picked up");
    assert_eq!(who("k-one").await, "-");

    // /config sent back as shown: bob's inline key reads `<redacted>`, which is refused.
    let shown = admin_call(gw.admin, "GET", "/config", "").await.2;
    assert!(!shown.contains("k-bob"), "{shown}");
    let (s, _, body) = admin_call(gw.admin, "PUT", "/config", &shown).await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("how /config shows a secret"), "{body}");
    assert_eq!(who("<redacted>").await, "-");
    assert_eq!(who("k-bob").await, "bob");

    // A reload that changes only the consumers makes the route's filter stages anew.
    gw.write_config(&yaml("robert"));
    let (s, _, body) = admin_call(gw.admin, "POST", "/reload", "").await;
    assert_eq!(s, 200, "{body}");
    let msg = json(&body)["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        msg.contains("routes with filters: 0 kept, 1 rebuilt"),
        "{msg}"
    );
    assert_eq!(who("k-bob").await, "robert");

    // The access log names the consumer (and `-` for none).
    gw.signal("TERM");
    gw.wait_exit(Duration::from_secs(5)).await.expect("exit");
    let logged = |consumer: &str| {
        gw.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| v["target"] == "access" && v["consumer"] == consumer)
    };
    assert!(
        eventually(Duration::from_secs(2), || async { logged("robert") }).await,
        "{:#?}",
        gw.log.lock().unwrap()
    );
    assert!(logged("alice") && logged("-"));
    let _ = std::fs::remove_file(&key);
}
