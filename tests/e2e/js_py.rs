//! Filters in JavaScript (componentize-js) and Python (componentize-py), built from source with the
//! tools xtask installs from npm and PyPI into `target/tools` (`xtask::guests`), through the real
//! gateway: two of the example filters (`examples/filters/{js,python}`) under the Rust builds'
//! scenarios (`sdk_examples.rs`) and their config errors, their `gateway plugin test` fixtures, each
//! template as an author uses it (`gateway plugin new`, `plugin build`, `plugin test`), and the
//! example functions (`examples/functions/{js,python}-hello`) as route backends.
//!
//! These components carry an engine (StarlingMonkey, about 12 MB; CPython, about 18 MB): the gateway
//! compiles each once and keeps the compiled code in its disk cache, and xtask rebuilds a component
//! only when its sources change, so that cache keeps hitting across runs. They run with
//! `instance_mode: reuse`; one scenario each also runs fresh, which works but starts an engine per
//! request.

use crate::harness::*;
use crate::sdk_examples;
use gateway::config::InstanceMode;
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use xtask::guests::GuestFilters;

fn js() -> &'static GuestFilters {
    xtask::guests::js_example_filters().unwrap_or_else(|e| panic!("{e}"))
}

fn python() -> &'static GuestFilters {
    xtask::guests::python_example_filters().unwrap_or_else(|e| panic!("{e}"))
}

macro_rules! scenarios {
    ($($test:ident: $builds:ident, $scenario:ident, $field:ident, $mode:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let started = std::time::Instant::now();
            sdk_examples::$scenario(&$builds().$field, InstanceMode::$mode).await;
            eprintln!("{}: {:?}", stringify!($test), started.elapsed());
        }
    )*};
}

scenarios! {
    js_header_rewrite_reuse: js, header_rewrite_at, header_rewrite, Reuse;
    js_header_rewrite_fresh: js, header_rewrite_at, header_rewrite, Fresh;
    js_request_counter_reuse: js, request_counter_at, request_counter, Reuse;
    python_header_rewrite_reuse: python, header_rewrite_at, header_rewrite, Reuse;
    python_header_rewrite_fresh: python, header_rewrite_at, header_rewrite, Fresh;
    python_request_counter_reuse: python, request_counter_at, request_counter, Reuse;
}

/// A config that does not fit is refused at load time with the filter's message, which names the
/// offending key (what `init` threw in JavaScript, the `Err` it raised in Python).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_and_python_filters_reject_bad_configs_at_load() {
    let up = MockUpstream::start("up").await;
    for f in [js(), python()] {
        let cases: [(&Path, &str, &str); 5] = [
            (&f.header_rewrite, "{request: {bogus: {x-a: b}}}", "bogus"),
            (&f.header_rewrite, "{elsewhere: {}}", "elsewhere"),
            (&f.header_rewrite, "{request: {set: {x-a: [1, 2]}}}", "x-a"),
            (&f.request_counter, "{key: 5}", "config.key: "),
            (&f.request_counter, "{bogus: 1}", "config.bogus: "),
        ];
        for (path, config, names) in cases {
            let yaml = format!(
                "plugins:\n{}upstreams:\n  - name: up\n    endpoints: [\"{}\"]\nroutes:\n  - name: r\n    upstream: up\n    filters:\n      - plugin: p\n        config: {config}\n",
                sdk_examples::plugin("p", path, InstanceMode::Reuse, "{kv_namespace: counters}"),
                up.addr,
            );
            let err = sdk_examples::rejected(&yaml).await;
            assert!(
                err.contains("routes[0].filters[0].config") && err.contains(names),
                "{}: config {config}: the error should name the filter config and `{names}`: {err}",
                path.display()
            );
        }
    }
}

/// Each example's fixture (`examples/filters/<lang>/<name>/tests/`) passes against the build.
#[test]
fn the_js_and_python_examples_fixtures_pass() {
    let root = xtask::repo_root().join("examples/filters");
    for (lang, f) in [("js", js()), ("python", python())] {
        for (name, wasm) in [
            ("header-rewrite", &f.header_rewrite),
            ("request-counter", &f.request_counter),
        ] {
            let fixture = root.join(format!("{lang}/{name}/tests/{name}.test.yaml"));
            let (code, out, err) = sdk_examples::plugin_test(&[
                "--wasm".as_ref(),
                wasm.as_os_str(),
                fixture.as_os_str(),
            ]);
            assert_eq!(code, 0, "{lang} {name}: {out}{err}");
            assert!(out.contains("2 passed, 0 failed"), "{lang} {name}: {out}");
        }
    }
}

/// `gateway ARGS` in `cwd`, outside the test's own cargo settings.
fn gateway_in(cwd: &Path, args: &[&str], env: &[(&str, OsString)]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gateway"));
    c.args(args)
        .current_dir(cwd)
        .env_remove("CARGO_TARGET_DIR")
        .env("GATEWAY_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The three commands of an author, in a temporary directory outside the repository, for `lang`:
/// `plugin new` writes the project (with the WIT world), `plugin build` finds the tool in the
/// project (here a link to the one xtask installed: `tools_link` -> `tools`) and builds, `plugin
/// test` runs the template's fixture.
fn new_build_test(lang: &str, files: &[&str], tools_link: &str, tools: &Path, says: &str) {
    let dir = TempDir::new(&format!("plugin-{lang}"));
    let name = format!("hello-{lang}");
    let (code, out, err) = gateway_in(&dir.0, &["plugin", "new", lang, &name], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("sdk/"), "no SDK folder for {lang}: {out}");
    let project = dir.0.join(&name);
    for f in files
        .iter()
        .chain(&["README.md", ".gitignore", "wit/world.wit"])
    {
        assert!(project.join(f).is_file(), "{lang}: {f}");
    }
    assert!(
        project.join(format!("tests/{name}.test.yaml")).is_file(),
        "{lang}: the fixture"
    );
    assert_eq!(
        std::fs::read_to_string(project.join("wit/world.wit")).unwrap(),
        std::fs::read_to_string(xtask::repo_root().join("wit/world.wit")).unwrap(),
        "the binary's copy of the world"
    );
    std::os::unix::fs::symlink(tools, project.join(tools_link)).unwrap();

    let started = std::time::Instant::now();
    let (code, out, err) = gateway_in(&project, &["plugin", "build"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let wasm_name = format!("hello_{lang}.wasm");
    assert!(out.contains(&format!("built {wasm_name} (")), "{out}{err}");
    assert!(err.contains(says), "{err}");
    eprintln!("plugin build ({lang}): {:?}", started.elapsed());
    let wasm = std::fs::read(project.join(&wasm_name)).unwrap();
    assert_eq!(&wasm[..8], b"\0asm\x0d\0\x01\0", "a component");

    let (code, out, err) = gateway_in(
        &project,
        &["plugin", "test", &format!("tests/{name}.test.yaml")],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 passed, 0 failed"), "{out}{err}");
}

#[test]
fn plugin_new_build_test_in_js() {
    let tools = xtask::guests::js_tools().unwrap_or_else(|e| panic!("{e}"));
    new_build_test(
        "js",
        &["package.json", "filter.js"],
        "node_modules",
        &tools.join("node_modules"),
        "componentize-js filter.js",
    );
}

#[test]
fn plugin_new_build_test_in_python() {
    let tools = xtask::guests::py_tools().unwrap_or_else(|e| panic!("{e}"));
    new_build_test(
        "python",
        &["pyproject.toml", "app.py"],
        ".componentize-py",
        tools,
        "componentize-py app",
    );
}

/// JavaScript and Python projects have no SDK to name; a folder with none of the four project files
/// is not a project.
#[test]
fn plugin_new_js_refuses_sdk_and_build_names_the_project_files() {
    let dir = TempDir::new("plugin-js-sdk");
    let (code, _, err) = gateway_in(&dir.0, &["plugin", "new", "js", "f", "--sdk", "."], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("--sdk is for Rust and Go"), "{err}");
    assert!(!dir.0.join("f").exists());
    let (code, _, err) = gateway_in(&dir.0, &["plugin", "build"], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("package.json") && err.contains("app.py"),
        "{err}"
    );
}

/// The JavaScript and Python example functions (`examples/functions/{js,python}-hello`) as a route's
/// backend, behind key-auth: refused before the function without a key; with one, the greeting from
/// the function's `env:`, the consumer key-auth set, and a 100 KB POST body read to its end. Warm
/// instances (`reuse`) serve every request of the loop; `fresh` works too, one engine per request.
/// The JavaScript function runs `fresh` only: StarlingMonkey (componentize-js 0.23) cannot serve a
/// second fetch event on one instance (bytecodealliance/StarlingMonkey#247; README "Serve a
/// function"); what the gateway does with a guest that returns without answering is tested in
/// `functions::a_reused_function_answers_request_after_request_without_waiting`.
async fn hello_function(wasm: &Path, name: &str, lang: &str, mode: &str) {
    let yaml = format!(
        "consumers:\n  - name: alice\n    credentials: {{key-auth: {{key: k-alice}}}}\n\
         functions:\n  - name: hello\n    path: {}\n    env: {{GREETING: Bonjour}}\n    instance_mode: {mode}\n\
         routes:\n  - name: hello\n    match: {{path: {{prefix: /fn/hello}}}}\n    function: hello\n    filters:\n      - plugin: key-auth\n        config: {{key_names: [apikey]}}\n",
        wasm.display()
    );
    let gw = TestGateway::start(&yaml).await;
    let (s, _, body) = get(&gw.url("/fn/hello?name=Ada")).await;
    assert_eq!(s, 401, "{body}");
    for round in 0..3 {
        let (s, h, body) = get_with(&gw.url("/fn/hello?name=Ada"), &[("apikey", "k-alice")]).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(
            body,
            format!("Bonjour, Ada! ({lang} answered GET /fn/hello?name=Ada)\nconsumer: alice\n"),
            "round {round}"
        );
        assert_eq!(h["x-function"], name);
        assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    }
    let upload = vec![b'x'; 100_000];
    let (s, _, body) = request(
        http::Request::post(gw.url("/fn/hello"))
            .header("apikey", "k-alice")
            .body(http_body_util::Full::new(bytes::Bytes::from(upload)))
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body.starts_with(&format!(
            "Bonjour, world! ({lang} answered POST /fn/hello)\n"
        )) && body.ends_with("read 100000 bytes\n"),
        "{body}"
    );
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, r#"gateway_function_requests_total{function="hello"}"#),
        Some(4.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_hello_function_fresh() {
    let wasm = xtask::guests::js_hello_function().unwrap_or_else(|e| panic!("{e}"));
    hello_function(wasm, "js-hello", "JavaScript", "fresh").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hello_function_reuse() {
    let wasm = xtask::guests::python_hello_function().unwrap_or_else(|e| panic!("{e}"));
    hello_function(wasm, "python-hello", "Python", "reuse").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hello_function_fresh() {
    let wasm = xtask::guests::python_hello_function().unwrap_or_else(|e| panic!("{e}"));
    hello_function(wasm, "python-hello", "Python", "fresh").await;
}

/// A JavaScript import names the world's version (`gateway:filter/kv@0.1.3`), and componentize-js
/// finds no interface of another: the examples must follow `wit/world.wit` when its version moves (the
/// template writes the version of the world the binary carries).
#[test]
fn the_js_examples_import_the_version_of_the_world() {
    let root = xtask::repo_root();
    let wit = std::fs::read_to_string(root.join("wit/world.wit")).unwrap();
    let version = crate::cli::world_version(&wit);
    for example in ["header-rewrite", "request-counter"] {
        let path = root.join(format!("examples/filters/js/{example}/filter.js"));
        let text = std::fs::read_to_string(&path).unwrap();
        for import in text.split("'gateway:filter/").skip(1) {
            let spec = &import[..import.find('\'').unwrap()];
            assert!(
                spec.ends_with(&format!("@{version}")),
                "{}: imports gateway:filter/{spec}, but wit/world.wit is {version}",
                path.display()
            );
        }
    }
}

/// Without Node.js 18+ on PATH, `plugin build` of a JavaScript project says what it needs (and writes
/// nothing, installs nothing).
#[test]
fn plugin_build_of_js_says_which_node_it_needs() {
    let dir = TempDir::new("plugin-build-no-node");
    let (code, out, err) = gateway_in(&dir.0, &["plugin", "new", "js", "j"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let bin = dir.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = [("PATH", bin.clone().into_os_string())];
    let (code, _, err) = gateway_in(&dir.0.join("j"), &["plugin", "build"], &path);
    assert_eq!(code, 1);
    assert!(
        err.contains("no `node` on PATH: JavaScript filters need Node.js 18 or newer"),
        "{err}"
    );
    let node = bin.join("node");
    std::fs::write(&node, "#!/bin/sh\necho v16.20.2\n").unwrap();
    std::fs::set_permissions(&node, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (code, _, err) = gateway_in(&dir.0.join("j"), &["plugin", "build"], &path);
    assert_eq!(code, 1);
    assert!(
        err.contains("is Node.js v16.20.2; JavaScript filters need 18 or newer"),
        "{err}"
    );
    assert!(!dir.0.join("j/j.wasm").exists());
    assert!(!dir.0.join("j/node_modules").exists());
}
