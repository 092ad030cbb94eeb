//! The binary: `check` exit codes and messages (a function's grants too), `--version`, every example
//! config is valid.

use std::process::Command;

fn gateway(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gateway-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn version() {
    let (code, out, _) = gateway(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("gateway {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn plugins_lists_the_built_in_plugins_with_their_versions() {
    let (code, out, _) = gateway(&["plugins"]);
    assert_eq!(code, 0);
    let cors = out
        .lines()
        .find(|l| l.starts_with("cors "))
        .unwrap_or_else(|| panic!("{out}"));
    let fields: Vec<&str> = cors.split_whitespace().collect();
    assert_eq!(fields[1], "0.1.0", "{cors}");
    assert!(fields[2].parse::<u64>().unwrap() > 1000, "{cors}");
    assert_eq!(fields[3].len(), 64, "{cors}");
}

#[test]
fn a_built_in_plugin_config_error_points_at_the_field_inside_the_config() {
    let p = write(
        "cors.yaml",
        "listeners:\n  - name: main\n    address: 127.0.0.1:8080\nroutes:\n  - name: r\n    direct_response: {body: hi}\n    filters:\n      - plugin: cors\n        config:\n          allow_origins:\n            - https://a.example\n            - https://b.example/path\n",
    );
    let (code, _, err) = gateway(&["check", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 1);
    let want = format!(
        "{}:12:15: routes[0].filters[0].config.allow_origins[1]: plugin `cors`",
        p.display()
    );
    assert!(err.contains(&want), "{err}");
}

#[test]
fn check_reports_file_line_column_field_and_expectation() {
    let p = write(
        "bad.yaml",
        "listeners:\n  - name: main\n    address: 127.0.0.1:8080\nroutes:\n  - name: r\n    upstream: missing\n",
    );
    let (code, _, err) = gateway(&["check", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 1);
    let want = format!(
        "{}:6:5: routes[0].upstream: unknown upstream `missing`",
        p.display()
    );
    assert!(err.contains(&want), "{err}");

    let p = write(
        "typo.yaml",
        "listeners:\n  - name: main\n    adress: 127.0.0.1:8080\n",
    );
    let (code, _, err) = gateway(&["check", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("typo.yaml:3:5") && err.contains("unknown field `adress`"),
        "{err}"
    );

    let p = write("dur.yaml", "listeners:\n  - name: main\n    address: 127.0.0.1:8080\n    limits: {idle_timeout: soon}\n");
    let (code, _, err) = gateway(&["check", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("listeners[0].limits.idle_timeout") && err.contains("duration"),
        "{err}"
    );

    let (code, _, err) = gateway(&["check", "--config", "/nonexistent/gateway.yaml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent/gateway.yaml") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn run_refuses_an_invalid_config() {
    let p = write("run-bad.yaml", "listeners: []\n");
    let (code, _, err) = gateway(&["run", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("at least one listener"), "{err}");
}

#[test]
fn every_example_config_is_valid() {
    xtask::examples().expect("the example plugins build");
    xtask::rust_example_filters().expect("the Rust SDK example filters build");
    // The quickstart's `/fn/hello` route is served by this function.
    xtask::rust_hello_function().expect("the Rust example function builds");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let cfg = dir.join("gateway.yaml");
        if cfg.exists() {
            let (code, out, err) = gateway(&["check", "--config", cfg.to_str().unwrap()]);
            assert_eq!(code, 0, "{}: {out}{err}", cfg.display());
            checked += 1;
        }
    }
    assert!(checked >= 4, "found {checked} example configs");
}

/// `check` validates a function's grants as a start does: an upstream that is not defined, or one
/// granted twice, is refused at its line; the same function with its grants right passes.
#[test]
fn check_refuses_a_functions_unknown_or_twice_granted_upstream() {
    let wasm = xtask::function_fixtures().unwrap_or_else(|e| panic!("{e}"));
    let yaml = |grants: &str| {
        format!(
            "listeners:\n  - name: main\n    address: 127.0.0.1:8080\nupstreams:\n  - {{name: up, endpoints: [127.0.0.1:9]}}\n  - {{name: other, endpoints: [127.0.0.1:9]}}\nfunctions:\n  - name: f\n    path: {}\n    upstreams:\n      - up\n{grants}routes:\n  - {{name: r, function: f}}\n",
            wasm.display()
        )
    };
    let p = write(
        "grants-ok.yaml",
        &yaml("      - {upstream: other, timeout: 2s}\n"),
    );
    let (code, out, err) = gateway(&["check", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    for (name, grant, message) in [
        (
            "grants-unknown.yaml",
            "      - nowhere\n",
            "unknown upstream `nowhere`",
        ),
        (
            "grants-twice.yaml",
            "      - {upstream: up}\n",
            "upstream `up` is granted twice",
        ),
    ] {
        let p = write(name, &yaml(grant));
        let (code, _, err) = gateway(&["check", "--config", p.to_str().unwrap()]);
        assert_eq!(code, 1, "{err}");
        let want = format!("{}:12:", p.display());
        assert!(err.contains(&want), "{want} not in {err}");
        assert!(
            err.contains(&format!("functions[0].upstreams[1]: {message}")),
            "{err}"
        );
    }
}

#[test]
fn a_garbage_wasm_is_reported_in_one_line() {
    let junk = write("junk.wasm", "this is not wasm at all\n");
    let bad = {
        let p = write("bad.wasm", "");
        std::fs::write(&p, b"\0asm\x01\0\0\0\xff\xff\xff").unwrap();
        p
    };
    for (wasm, reason) in [
        (&junk, "not a WebAssembly module or component"),
        (&bad, "does not compile"),
    ] {
        let p = write(
            "garbage.yaml",
            &format!(
                "listeners: [{{name: main, address: 127.0.0.1:0}}]\nplugins:\n  - {{name: junk, path: {}}}\nroutes:\n  - {{name: r, direct_response: {{}}, filters: [{{plugin: junk}}]}}\n",
                wasm.display()
            ),
        );
        let (code, _, err) = gateway(&["check", "--config", p.to_str().unwrap()]);
        assert_eq!(code, 1);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        for part in [
            "garbage.yaml:3:",
            "plugins[0].path",
            "plugin `junk`",
            reason,
        ] {
            assert!(err.contains(part), "{part} not in {err}");
        }
    }
}

// `gateway plugin new` and `gateway plugin build`, used as an author outside the repository would:
// in a temporary directory, with the SDK the binary carries.

/// The repository root.
fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `gateway ARGS` in `cwd`, with `env` set, outside the test's own cargo settings.
fn gateway_in(
    cwd: &std::path::Path,
    args: &[&str],
    env: &[(&str, std::ffi::OsString)],
) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gateway"));
    c.args(args)
        .current_dir(cwd)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTUP_TOOLCHAIN")
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

/// The files under `dir` (relative paths, sorted), without `skip`ped folders and files.
fn files_under(dir: &std::path::Path, skip: &dyn Fn(&str) -> bool) -> Vec<String> {
    fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_str().unwrap().to_string());
            }
        }
    }
    let mut all = Vec::new();
    walk(dir, dir, &mut all);
    all.retain(|f| !skip(f));
    all.sort();
    all
}

/// The Rust SDK builds from its own `wit/`, which must be the repository's `wit/` (its build script
/// copies it; this catches a copy edited by hand or not refreshed).
#[test]
fn the_rust_sdk_packs_the_repository_wit() {
    let root = root();
    let packed = files_under(&root.join("plugin-sdk/wit"), &|_| false);
    let source = files_under(&root.join("wit"), &|f| !f.ends_with(".wit"));
    assert_eq!(packed, source);
    for f in &source {
        assert_eq!(
            std::fs::read(root.join("plugin-sdk/wit").join(f)).unwrap(),
            std::fs::read(root.join("wit").join(f)).unwrap(),
            "plugin-sdk/wit/{f} differs from wit/{f}: build the SDK (its build.rs copies it)"
        );
    }
}

/// The version of the world in `wit/world.wit` (`package gateway:filter@<version>;`).
pub(crate) fn world_version(wit: &str) -> &str {
    wit.lines()
        .find_map(|l| l.trim().strip_prefix("package gateway:filter@"))
        .and_then(|v| v.strip_suffix(';'))
        .expect("a versioned package")
}

/// Each interface of `wit/world.wit` and its world has its own doc comment right above it (or above
/// its `@since`), which the SDKs' generated docs show: a new interface put between a doc and what it
/// documented takes that doc over.
#[test]
fn each_item_of_the_world_has_its_own_doc() {
    let wit = std::fs::read_to_string(root().join("wit/world.wit")).unwrap();
    let lines: Vec<&str> = wit.lines().collect();
    let mut items = 0;
    for (i, line) in lines.iter().enumerate() {
        if !(line.starts_with("interface ") || line.starts_with("world ")) {
            continue;
        }
        items += 1;
        let mut above = lines[..i].iter().rev().skip_while(|l| l.starts_with('@'));
        let doc: Vec<&str> = above
            .by_ref()
            .take_while(|l| l.starts_with("///"))
            .copied()
            .collect();
        assert!(!doc.is_empty(), "`{line}` has no doc comment");
        if line.starts_with("world filter") {
            assert_eq!(doc, ["/// A gateway filter."], "the doc of `{line}`");
        } else {
            assert!(
                !doc.contains(&"/// A gateway filter."),
                "`{line}` has the world's doc: {doc:?}"
            );
        }
    }
    assert!(items > 10, "{items} items");
}

/// The Go SDK names the world it is written against as `wit/world.wit` has it: its imports and the
/// ABI package's doc (which says which world its layouts are of).
#[test]
fn the_go_sdk_names_the_version_of_the_world() {
    let root = root();
    let wit = std::fs::read_to_string(root.join("wit/world.wit")).unwrap();
    let version = world_version(&wit);
    let go = files_under(&root.join("plugin-sdk/go"), &|f| !f.ends_with(".go"));
    let mut named = 0;
    for f in &go {
        let text = std::fs::read_to_string(root.join("plugin-sdk/go").join(f)).unwrap();
        for (at, _) in text.match_indices("gateway:filter") {
            let spec: String = text[at..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != ')' && *c != '"')
                .collect();
            if let Some((_, v)) = spec.split_once('@') {
                named += 1;
                assert_eq!(v, version, "plugin-sdk/go/{f} names {spec}");
            }
        }
    }
    assert!(named > 10, "{named} names of the world");
    let abi = std::fs::read_to_string(root.join("plugin-sdk/go/internal/abi/memory.go")).unwrap();
    assert!(
        abi.contains(&format!("gateway:filter@{version})")),
        "memory.go: {}",
        &abi[..abi.find("\n\n").unwrap_or(abi.len())]
    );
}

/// `cargo package` makes a crate of the Rust SDK (with its WIT, without the Go SDK) and builds it
/// from the package alone (offline: the dependencies come from the local registry cache), in the
/// build directory the other Rust projects of these tests share.
#[test]
fn the_rust_sdk_packages_and_builds_from_the_package() {
    let root = root();
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["package", "--offline", "--allow-dirty", "--list"])
        .current_dir(root.join("plugin-sdk"))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(list.lines().any(|l| l == "wit/world.wit"), "{list}");
    assert!(!list.lines().any(|l| l.starts_with("go/")), "{list}");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["package", "--offline", "--allow-dirty"])
        .current_dir(root.join("plugin-sdk"))
        .env("CARGO_TARGET_DIR", root.join("target/scaffold-rust"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Verifying gateway-plugin-sdk"), "{err}");
}

/// The SDKs the binary writes into a new project are the repository's, file for file: every file of
/// the Rust crate (`plugin-sdk/`, but Cargo.lock and the Go SDK) and of the Go module (but its tests
/// and test fixture).
#[test]
fn plugin_new_writes_the_sdks_of_the_repository() {
    let root = root();
    let dir = crate::harness::TempDir::new("plugin-new-sdk");
    for (lang, sdk, skip) in [
        (
            "rust",
            root.join("plugin-sdk"),
            &(|f: &str| f.starts_with("go/") || f.starts_with("target/") || f == "Cargo.lock")
                as &dyn Fn(&str) -> bool,
        ),
        (
            "go",
            root.join("plugin-sdk/go"),
            &(|f: &str| f.ends_with("_test.go") || f.starts_with("internal/kitchen/"))
                as &dyn Fn(&str) -> bool,
        ),
    ] {
        let (code, out, err) = gateway_in(&dir.0, &["plugin", "new", lang, "f"], &[]);
        assert_eq!(code, 0, "{out}{err}");
        let written = dir.0.join("f/sdk");
        let want = files_under(&sdk, skip);
        assert_eq!(files_under(&written, &|_| false), want, "{lang}");
        for f in &want {
            assert_eq!(
                std::fs::read_to_string(written.join(f)).unwrap(),
                std::fs::read_to_string(sdk.join(f)).unwrap(),
                "{lang}: {f} (rebuild the gateway, or list a new file in gateway/src/scaffold/sdk.rs)"
            );
        }
        std::fs::remove_dir_all(dir.0.join("f")).unwrap();
    }
}

#[test]
fn plugin_new_refuses_a_folder_that_is_not_empty_and_a_bad_name() {
    let dir = crate::harness::TempDir::new("plugin-new-refuses");
    std::fs::create_dir_all(dir.0.join("taken")).unwrap();
    std::fs::write(dir.0.join("taken/notes.txt"), "mine").unwrap();
    let (code, _, err) = gateway_in(&dir.0, &["plugin", "new", "go", "f", "taken"], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("taken already exists and is not empty"),
        "{err}"
    );
    assert_eq!(files_under(&dir.0.join("taken"), &|_| false), ["notes.txt"]);
    assert_eq!(
        std::fs::read_to_string(dir.0.join("taken/notes.txt")).unwrap(),
        "mine"
    );

    let (code, _, err) = gateway_in(&dir.0, &["plugin", "new", "rust", "My_Filter"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("`My_Filter` is not a filter name"), "{err}");
    assert!(!dir.0.join("My_Filter").exists());

    let (code, _, err) = gateway_in(&dir.0, &["plugin", "build"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("neither Cargo.toml nor go.mod"), "{err}");
}

/// `--sdk` points the project at an SDK folder (an absolute path) instead of writing a copy.
#[test]
fn plugin_new_depends_on_the_sdk_it_is_given() {
    let root = root();
    let dir = crate::harness::TempDir::new("plugin-new-sdk-flag");
    let sdk = root.join("plugin-sdk");
    let sdk_arg = sdk.to_str().unwrap();
    let (code, out, err) = gateway_in(
        &dir.0,
        &["plugin", "new", "rust", "r", "--sdk", sdk_arg],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    let manifest = std::fs::read_to_string(dir.0.join("r/Cargo.toml")).unwrap();
    let canonical = std::fs::canonicalize(&sdk).unwrap();
    let want = format!(
        "gateway-plugin-sdk = {{ path = \"{}\" }}",
        canonical.display()
    );
    assert!(manifest.contains(&want), "{manifest}");
    assert!(!dir.0.join("r/sdk").exists());
    // The repository's plugin-sdk is accepted for Go too: its go/ folder is the module.
    let (code, out, err) = gateway_in(&dir.0, &["plugin", "new", "go", "g", "--sdk", sdk_arg], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let go_mod = std::fs::read_to_string(dir.0.join("g/go.mod")).unwrap();
    let want = format!(
        "replace gateway/filter => {}",
        canonical.join("go").display()
    );
    assert!(go_mod.contains(&want), "{go_mod}");
    let (code, _, err) = gateway_in(
        &dir.0,
        &[
            "plugin",
            "new",
            "rust",
            "x",
            "--sdk",
            dir.0.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("not the Rust SDK"), "{err}");
}

/// Without the wasm32-wasip2 target and without rustup, `plugin build` says what to run. (A toolchain
/// without the target is played by a `rustc` on PATH whose sysroot has none.)
#[test]
fn plugin_build_names_the_rustup_command_when_the_target_is_missing() {
    let dir = crate::harness::TempDir::new("plugin-build-no-target");
    let (code, out, err) = gateway_in(&dir.0, &["plugin", "new", "rust", "f"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let bin = dir.0.join("bin");
    std::fs::create_dir_all(dir.0.join("sysroot/lib/rustlib/x86_64-unknown-linux-gnu")).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let rustc = bin.join("rustc");
    std::fs::write(
        &rustc,
        format!("#!/bin/sh\necho {}\n", dir.0.join("sysroot").display()),
    )
    .unwrap();
    std::fs::set_permissions(&rustc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (code, out, err) = gateway_in(
        &dir.0.join("f"),
        &["plugin", "build"],
        &[("PATH", bin.clone().into_os_string())],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("wasm32-wasip2 is not installed")
            && err.contains("rustup target add wasm32-wasip2"),
        "{err}"
    );
}

/// Without the wasm32-wasip2 target but with rustup, `plugin build` adds the target with rustup
/// (said on stderr) before it builds. Played by a `rustc` whose sysroot lacks the target and a `rustup`
/// that records its arguments and installs it there; there is no `cargo` on that PATH, so the build
/// stops right after.
#[test]
fn plugin_build_adds_the_missing_target_with_rustup() {
    let dir = crate::harness::TempDir::new("plugin-build-rustup");
    let (code, out, err) = gateway_in(&dir.0, &["plugin", "new", "rust", "f"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let (bin, sysroot) = (dir.0.join("bin"), dir.0.join("sysroot"));
    std::fs::create_dir_all(sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu")).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let script = |name: &str, body: String| {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    script("rustc", format!("echo {}\n", sysroot.display()));
    script(
        "rustup",
        format!(
            "echo \"$@\" >> {log}\n[ \"$*\" = \"target add wasm32-wasip2\" ] && /bin/mkdir -p {target}\n",
            log = dir.0.join("rustup.log").display(),
            target = sysroot.join("lib/rustlib/wasm32-wasip2").display()
        ),
    );
    let (code, out, err) = gateway_in(
        &dir.0.join("f"),
        &["plugin", "build"],
        &[("PATH", bin.clone().into_os_string())],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("running rustup target add wasm32-wasip2"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.0.join("rustup.log")).unwrap(),
        "target add wasm32-wasip2\n"
    );
    assert!(sysroot.join("lib/rustlib/wasm32-wasip2").is_dir());
    // Then it goes on to cargo, which this PATH does not have.
    assert!(err.contains("cannot run cargo"), "{err}");
}

/// The three commands of a Rust author, in a temporary directory outside the repository, with the SDK
/// the binary writes. The project's `target` is a link to `target/scaffold-rust` of the repository,
/// so that the SDK's dependencies are compiled once across runs.
#[test]
fn plugin_new_build_test_in_rust() {
    let dir = crate::harness::TempDir::new("plugin-rust");
    let (code, out, err) = gateway_in(&dir.0, &["plugin", "new", "rust", "api-key"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("tests/api-key.test.yaml"), "{out}");
    let project = dir.0.join("api-key");
    for f in [
        "Cargo.toml",
        "src/lib.rs",
        "tests/api-key.test.yaml",
        "README.md",
        ".gitignore",
        "sdk/wit/world.wit",
    ] {
        assert!(project.join(f).is_file(), "{f}");
    }
    let shared = root().join("target/scaffold-rust");
    std::fs::create_dir_all(&shared).unwrap();
    let _ = std::fs::remove_file(shared.join("wasm32-wasip2/release/api_key.wasm"));
    std::os::unix::fs::symlink(&shared, project.join("target")).unwrap();

    let started = std::time::Instant::now();
    let (code, out, err) = gateway_in(&project, &["plugin", "build"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("built target/wasm32-wasip2/release/api_key.wasm ("),
        "{out}{err}"
    );
    assert!(
        err.contains("cargo build --release --target wasm32-wasip2"),
        "{err}"
    );
    eprintln!("plugin build (rust): {:?}", started.elapsed());

    let (code, out, err) = gateway_in(
        &project,
        &["plugin", "test", "tests/api-key.test.yaml"],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 passed, 0 failed"), "{out}{err}");
}

/// Without Go 1.24+ on PATH, `plugin build` of a Go project says what it needs (and writes nothing).
#[test]
fn plugin_build_of_go_says_which_go_it_needs() {
    let dir = crate::harness::TempDir::new("plugin-build-no-go");
    let (code, out, err) = gateway_in(&dir.0, &["plugin", "new", "go", "g"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let bin = dir.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = [("PATH", bin.clone().into_os_string())];
    let (code, _, err) = gateway_in(&dir.0.join("g"), &["plugin", "build"], &path);
    assert_eq!(code, 1);
    assert!(
        err.contains("no `go` on PATH: Go filters need Go 1.24 or newer"),
        "{err}"
    );
    let go = bin.join("go");
    std::fs::write(&go, "#!/bin/sh\necho go1.22.4\n").unwrap();
    std::fs::set_permissions(&go, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (code, _, err) = gateway_in(&dir.0.join("g"), &["plugin", "build"], &path);
    assert_eq!(code, 1);
    assert!(
        err.contains("is Go 1.22; Go filters need Go 1.24 or newer"),
        "{err}"
    );
    assert!(!dir.0.join("g/g.wasm").exists());
}

/// The three commands of a Go author, in a temporary directory outside the repository: the binary
/// writes the Go SDK, builds with `go` from PATH (the test puts the one xtask finds or installs there)
/// and packages the component itself.
#[test]
fn plugin_new_build_test_in_go() {
    let go = xtask::go::go_tool().unwrap_or_else(|e| panic!("{e}"));
    let path = std::env::join_paths(std::iter::once(go.parent().unwrap().to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let env = [
        ("PATH", path),
        ("GOTOOLCHAIN", "local".into()),
        ("GOPROXY", "off".into()),
    ];
    let dir = crate::harness::TempDir::new("plugin-go");
    let (code, out, err) = gateway_in(
        &dir.0,
        &["plugin", "new", "go", "hello-go", "filters/hello"],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    let project = dir.0.join("filters/hello");
    for f in [
        "go.mod",
        "main.go",
        "tests/hello-go.test.yaml",
        "README.md",
        ".gitignore",
        "sdk/go.mod",
    ] {
        assert!(project.join(f).is_file(), "{f}");
    }
    let started = std::time::Instant::now();
    let (code, out, err) = gateway_in(&dir.0, &["plugin", "build", "filters/hello"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("built filters/hello/hello_go.wasm ("),
        "{out}{err}"
    );
    assert!(
        err.contains("go build") && err.contains("component"),
        "{err}"
    );
    eprintln!("plugin build (go): {:?}", started.elapsed());
    let wasm = std::fs::read(project.join("hello_go.wasm")).unwrap();
    // A component (layer 1), not a core module.
    assert_eq!(&wasm[..8], b"\0asm\x0d\0\x01\0", "a component");

    let (code, out, err) = gateway_in(
        &project,
        &["plugin", "test", "tests/hello-go.test.yaml"],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 passed, 0 failed"), "{out}{err}");
}

/// `plugin test --trace` prints each host call a component filter makes, with its arguments and
/// result (here the built-in key-auth's lookup of the key); without it, nothing of the kind; and a
/// server at GATEWAY_LOG=trace does not log them (they hold credentials).
#[test]
fn plugin_test_trace_prints_each_host_call() {
    let dir = crate::harness::TempDir::new("trace");
    let wasm = dir.0.join("key-auth.wasm");
    std::fs::write(
        &wasm,
        gateway::builtin::get("key-auth").expect("built in").wasm,
    )
    .unwrap();
    let fixture = xtask::repo_root().join("plugins/key-auth/tests/key-auth.test.yaml");
    let run = |trace: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"));
        cmd.args(["plugin", "test", "--wasm"]).arg(&wasm);
        if trace {
            cmd.arg("--trace");
        }
        let out = cmd.arg(&fixture).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let traced = run(true);
    assert!(
        traced.contains(r#"function="find-by-key"}: call kind="key-auth" key="k-alice""#),
        "{traced}"
    );
    assert!(
        traced.contains(r#"function="find-by-key"}: return result=Some(Consumer { name: "alice""#),
        "{traced}"
    );
    assert!(
        traced.contains(r#"function="[method]request.set-header"}: call"#),
        "{traced}"
    );
    assert!(traced.contains(" passed, 0 failed"), "{traced}");
    let plain = run(false);
    assert!(!plain.contains("wit-bindgen import"), "{plain}");
    assert!(plain.contains(" passed, 0 failed"), "{plain}");
}

/// A server started with GATEWAY_LOG=trace logs no host call of the WIT bindings (their arguments
/// hold credentials) unless GATEWAY_LOG names that target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_log_does_not_show_host_call_arguments() {
    let gw = crate::harness::GatewayProcess::start_with_log(
        "consumers:\n  - name: alice\n    credentials: {key-auth: {key: k-secret-alice}}\nroutes:\n  - name: r\n    direct_response: {status: 200, body: ok}\n    filters: [{plugin: key-auth}]\n",
        "trace",
    )
    .await;
    let (s, _, _) = crate::harness::get_with(&gw.url("/"), &[("apikey", "k-secret-alice")]).await;
    assert_eq!(s, 200);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = gw.log.lock().unwrap().join("\n");
    assert!(
        log.contains("TRACE"),
        "traced at all: {}",
        &log[..log.len().min(2000)]
    );
    assert!(!log.contains("wit-bindgen import"), "host calls logged");
    assert!(!log.contains("k-secret-alice"), "the key is in the log");
}
