//! First-party plugins shipped in the binary: a route names one without a `plugins:` entry; a
//! `plugins:` entry of the same name overrides it; an unknown name lists what is built in.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;

fn preflight(url: &str) -> http::Request<Full<Bytes>> {
    http::Request::options(url)
        .header("origin", "https://a.example")
        .header("access-control-request-method", "PUT")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_uses_a_built_in_plugin_by_name_and_a_plugins_entry_overrides_it() {
    let up = MockUpstream::start("up").await;
    let routes = |config: &str| {
        format!("routes:\n  - name: r\n    upstream: up\n    filters: [{{plugin: cors, config: {config}}}]\n")
    };
    let upstreams = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .yaml();
    let cors = routes("{allow_origins: [\"https://a.example\"]}");
    let gw = TestGateway::start(&format!("{upstreams}{cors}")).await;

    // The built-in `cors` answers the preflight itself.
    let (s, h, _) = request(preflight(&gw.url("/x"))).await;
    assert_eq!(s, 204);
    assert_eq!(hv(&h, "access-control-allow-origin"), "https://a.example");
    assert_eq!(up.hits(), 0);
    let (s, h, _) = get_with(&gw.url("/x"), &[("origin", "https://a.example")]).await;
    assert_eq!(
        (s, hv(&h, "access-control-allow-origin")),
        (200, "https://a.example".into())
    );

    // A `plugins:` entry named `cors` takes its place: this one (a fixture that does no CORS, and
    // takes `key=value` configs) lets the preflight through to the upstream.
    let fixtures = xtask::component_fixtures().unwrap_or_else(|e| panic!("{e}"));
    let own = GatewayConfig::new()
        .plugin(Plugin::new("cors", &fixtures.kitchen))
        .yaml();
    let gw = TestGateway::start(&format!(
        "{own}{upstreams}{}",
        routes("\"request-body=skip\"")
    ))
    .await;
    let hits = up.hits();
    let (_, h, _) = request(preflight(&gw.url("/x"))).await;
    assert_eq!(hv(&h, "access-control-allow-origin"), "");
    assert_eq!(up.hits(), hits + 1);

    // An entry without a source gives the built-in plugin settings of the user's.
    let settings = "plugins:\n  - name: cors\n    limits: {instances: 8}\n";
    let gw = TestGateway::start(&format!("{settings}{upstreams}{cors}")).await;
    let (s, h, _) = request(preflight(&gw.url("/x"))).await;
    assert_eq!(
        (s, hv(&h, "access-control-allow-origin")),
        (204, "https://a.example".into())
    );
    let nameless = format!("plugins:\n  - name: nope\n{upstreams}");
    let err = TestGateway::try_start(&nameless)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("not a built-in plugin"), "{err}");

    // A name that is neither defined nor built in: the error lists what is built in.
    let bad = format!(
        "{upstreams}routes:\n  - name: r\n    upstream: up\n    filters: [{{plugin: corz}}]\n"
    );
    let err = TestGateway::try_start(&bad)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("unknown plugin `corz`") && err.contains("built in: ") && err.contains("cors"),
        "{err}"
    );
}

/// The first-party plugins' own unit tests (config parsing, policies, crypto) pass, natively.
#[test]
fn built_in_plugins_pass_their_unit_tests() {
    let out = xtask::plugins_unit_tests().unwrap_or_else(|e| panic!("{e}"));
    let passed = out
        .lines()
        .filter(|l| l.starts_with("test result: ok."))
        .count();
    assert!(passed >= gateway::builtin::all().len(), "{out}");
    assert!(!out.contains("FAILED"), "{out}");
}

/// Every built-in plugin passes its own `gateway plugin test` fixtures (`plugins/<name>/tests/`),
/// run against the very component the binary embeds.
#[test]
fn built_in_plugins_pass_their_fixtures() {
    let dir = TempDir::new("builtin-fixtures");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    assert!(!gateway::builtin::all().is_empty());
    for b in gateway::builtin::all() {
        let wasm = dir.0.join(format!("{}.wasm", b.name));
        std::fs::write(&wasm, b.wasm).unwrap();
        let mut files: Vec<std::ffi::OsString> = std::fs::read_dir(root.join(b.name).join("tests"))
            .unwrap_or_else(|e| panic!("plugins/{}/tests: {e}", b.name))
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".test.yaml"))
            .map(Into::into)
            .collect();
        assert!(!files.is_empty(), "plugins/{} has no fixtures", b.name);
        files.sort();
        let mut args: Vec<&std::ffi::OsStr> = vec!["--wasm".as_ref(), wasm.as_os_str()];
        args.extend(files.iter().map(|f| f.as_os_str()));
        let (code, out, err) = crate::sdk_examples::plugin_test(&args);
        assert_eq!(code, 0, "{}:\n{out}\n{err}", b.name);
        assert!(
            out.contains("PASS") && !out.contains("FAIL"),
            "{}:\n{out}",
            b.name
        );
    }
}
