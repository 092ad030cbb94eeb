//! The binary: `check` exit codes and messages, `--version`, every example config is valid.

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
