//! The README's guides "Write your first filter (Rust)" and "Filters in Go", followed command by
//! command: the commands are read from the README itself (between the `guide:first-filter` and
//! `guide:go-filter` markers), so a guide cannot drift from what works. They run as a new author would
//! run them, in an empty temporary directory outside the repository, with only the ports (free ones
//! instead of 8080 and 9901) and the `gateway` binary (this build's) put in. Every command must
//! succeed, and print what the guide's `#>` lines say it prints.

use crate::harness::{free_port, TempDir};
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One command of the guide and the output it should print.
#[derive(Debug)]
struct Step {
    command: String,
    expect: Vec<String>,
}

/// The `sh` blocks between the markers, as steps: a line is a command (with its here-document, if it
/// has one), `#>` lines are expected output of the command before, other comments and blank lines are
/// skipped.
fn guide_steps(readme: &str, guide: &str) -> Vec<Step> {
    let start = readme
        .find(&format!("<!-- guide:{guide} -->"))
        .expect("the README has the guide's start marker");
    let end = readme
        .find(&format!("<!-- /guide:{guide} -->"))
        .expect("the README has the guide's end marker");
    let mut steps: Vec<Step> = Vec::new();
    let mut in_block = false;
    let mut lines = readme[start..end].lines();
    while let Some(line) = lines.next() {
        if line.starts_with("```") {
            in_block = !in_block && line.trim() == "```sh";
            continue;
        }
        if !in_block || line.trim().is_empty() {
            continue;
        }
        if let Some(out) = line.strip_prefix("#> ") {
            steps
                .last_mut()
                .expect("expected output follows a command")
                .expect
                .push(out.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let mut command = line.to_string();
        if let Some((_, tag)) = line.split_once("<<") {
            let tag = tag.trim().trim_matches('\'').trim_matches('"').to_string();
            for body in lines.by_ref() {
                command.push('\n');
                command.push_str(body);
                if body == tag {
                    break;
                }
            }
        }
        steps.push(Step {
            command,
            expect: Vec::new(),
        });
    }
    steps
}

/// A shell for the guide's commands, without the settings of the test's own cargo run that would send
/// the build elsewhere.
fn shell(command: &str, cwd: &Path, env: &[(&str, OsString)]) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", command])
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
    c
}

/// Kills the background gateway (which this test started) when the test ends, however it ends.
struct Background(Vec<std::process::Child>);

impl Drop for Background {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `curl` if the machine has it; otherwise makes the same request (its `-H` headers and URL)
/// with this test's HTTP client and prints it as `curl -i` would: status line, headers, body.
async fn curl(command: &str, cwd: &Path, env: &[(&str, OsString)]) -> (bool, String) {
    let has_curl = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has_curl {
        let out = shell(command, cwd, env).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        return (out.status.success(), text);
    }
    let (url, pairs) = curl_request(command);
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, h, body) = crate::harness::get_with(&url, &borrowed).await;
    let mut text = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in &h {
        text.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or("")));
    }
    text.push_str("\r\n");
    text.push_str(&body);
    (true, text)
}

/// The URL and `-H` headers of a `curl` command line (header values in single quotes).
fn curl_request(command: &str) -> (String, Vec<(String, String)>) {
    let mut url = None;
    let mut headers = Vec::new();
    for (i, part) in command.split('\'').enumerate() {
        if i % 2 == 1 {
            if let Some((k, v)) = part.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            continue;
        }
        for w in part.split_whitespace() {
            if w.starts_with("http://") {
                url = Some(w.to_string());
            } else if w.starts_with("localhost:") || w.starts_with("127.0.0.1:") {
                url = Some(format!("http://{w}"));
            }
        }
    }
    (url.expect("the curl command has a URL"), headers)
}

#[test]
fn curl_commands_are_understood_without_curl() {
    assert_eq!(
        curl_request("curl -i -H 'x-api-key: k1' localhost:8080/"),
        (
            "http://localhost:8080/".to_string(),
            vec![("x-api-key".to_string(), "k1".to_string())]
        )
    );
    assert_eq!(
        curl_request("curl -i http://127.0.0.1:1/a"),
        ("http://127.0.0.1:1/a".to_string(), vec![])
    );
}

/// Follows the README's guide `guide` in an empty temporary directory, with `env` set for every
/// command. A Rust project the guide makes gets a `target` link to `target/scaffold-rust` of the
/// repository (made right after `gateway plugin new`), the build directory `tests/e2e/cli.rs` uses too,
/// so that the SDK's dependencies are compiled once for both and across runs; nothing else of the
/// repository is there.
async fn follow_guide(guide: &str, env: &[(&str, OsString)]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let steps = guide_steps(&readme, guide);
    assert!(steps.len() >= 8, "the guide has its commands: {steps:#?}");
    let dir = TempDir::new(&format!("guide-{guide}"));
    let gateway = PathBuf::from(env!("CARGO_BIN_EXE_gateway"));
    let (port, admin) = (free_port(), free_port());
    let mut cwd = dir.0.clone();
    let mut background = Background(Vec::new());
    for step in &steps {
        let mut command = step
            .command
            .replace(":8080", &format!(":{port}"))
            .replace(":9901", &format!(":{admin}"));
        if let Some(rest) = command.strip_prefix("gateway ") {
            command = format!("{} {rest}", gateway.display());
        }
        if let Some(to) = command.strip_prefix("cd ") {
            cwd = cwd.join(to.trim());
            assert!(cwd.is_dir(), "{command}: no such directory");
            continue;
        }
        let (ok, output) = if let Some(cmd) = command.strip_suffix(" &") {
            // Served in the background: ready once the admin API answers.
            let mut child = shell(&format!("exec {cmd}"), &cwd, env)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let started = Instant::now();
            let mut up = false;
            while started.elapsed() < Duration::from_secs(30) {
                if std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok() {
                    up = true;
                    break;
                }
                if let Some(status) = child.try_wait().unwrap() {
                    let mut err = String::new();
                    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                    panic!("{command}: exited with {status}: {err}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            background.0.push(child);
            (up, String::from("(serving)"))
        } else if command.starts_with("curl ") {
            curl(&command, &cwd, env).await
        } else {
            let out = tokio::task::spawn_blocking({
                let mut c = shell(&command, &cwd, env);
                move || c.output().unwrap()
            })
            .await
            .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            (out.status.success(), text)
        };
        assert!(ok, "the guide's command failed: {command}\n{output}");
        for want in &step.expect {
            assert!(
                output.contains(want.as_str()),
                "{command}: the guide says it prints {want:?}; it printed:\n{output}"
            );
        }
        if let Some(name) = step.command.strip_prefix("gateway plugin new rust ") {
            let project = cwd.join(name.split_whitespace().next().unwrap());
            let build = root.join("target/scaffold-rust");
            std::fs::create_dir_all(&build).unwrap();
            std::os::unix::fs::symlink(&build, project.join("target")).unwrap();
        }
    }
    assert_eq!(background.0.len(), 1, "the guide serves the filter");
}

/// A `RUSTUP_HOME` whose default toolchain is this machine's default toolchain without the
/// wasm32-wasip2 target (its files hard-linked, rustup's records of it copied and edited), and a dist
/// server on 127.0.0.1 that `RUSTUP_DIST_SERVER` names, serving that target's package made from the
/// installed files: `rustup target add wasm32-wasip2` then really installs it, without the network.
struct ToolchainWithoutTarget {
    home: TempDir,
    toolchain: PathBuf,
    server: String,
}

/// The target the guide adds.
const WASM: &str = "wasm32-wasip2";

impl ToolchainWithoutTarget {
    fn new() -> ToolchainWithoutTarget {
        let out = Command::new("rustc")
            .args(["--print", "sysroot"])
            .current_dir(std::env::temp_dir())
            .env_remove("RUSTUP_TOOLCHAIN")
            .output()
            .unwrap();
        let sysroot = std::fs::canonicalize(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
        let rustlib = sysroot.join("lib/rustlib");
        assert!(
            rustlib.join(WASM).is_dir() && rustlib.join("multirust-channel-manifest.toml").is_file(),
            "the default toolchain ({}) is a rustup toolchain with {WASM} (as rust-toolchain.toml asks)",
            sysroot.display()
        );
        let name = sysroot.file_name().unwrap().to_str().unwrap().to_string();
        let home = TempDir::new("rustup-home");
        let toolchain = home.0.join("toolchains").join(&name);
        link_tree(&sysroot, &toolchain, &|rel: &Path| {
            rel.starts_with(Path::new("lib/rustlib").join(WASM))
                || rel == Path::new("lib/rustlib").join(format!("manifest-rust-std-{WASM}"))
        });
        let records = toolchain.join("lib/rustlib");
        let components = std::fs::read_to_string(rustlib.join("components")).unwrap();
        let kept: Vec<&str> = components
            .lines()
            .filter(|l| *l != format!("rust-std-{WASM}"))
            .collect();
        replace_file(&records.join("components"), &(kept.join("\n") + "\n"));
        let config = std::fs::read_to_string(rustlib.join("multirust-config.toml")).unwrap();
        let entry = format!(
            "[[components]]\npkg = \"rust-std\"\ntarget = \"{WASM}\"\nis_extension = false\n\n"
        );
        assert!(config.contains(&entry), "{config}");
        replace_file(
            &records.join("multirust-config.toml"),
            &config.replace(&entry, ""),
        );

        let package = wasm_std_package(&rustlib);
        let hash = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
            std::fs::read(&package).unwrap(),
        ));
        let hash: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        let manifest =
            std::fs::read_to_string(rustlib.join("multirust-channel-manifest.toml")).unwrap();
        let mut edited = String::new();
        let mut in_wasm = false;
        for line in manifest.lines() {
            if line.starts_with('[') {
                in_wasm = line == format!("[pkg.rust-std.target.{WASM}]");
            }
            if in_wasm && line.starts_with("url = ") {
                edited += &format!(
                    "url = \"https://static.rust-lang.org/dist/local/rust-std-{WASM}.tar.gz\"\n"
                );
            } else if in_wasm && line.starts_with("hash = ") {
                edited += &format!("hash = \"{hash}\"\n");
            } else if !(in_wasm && line.starts_with("xz_")) {
                edited += line;
                edited.push('\n');
            }
        }
        replace_file(&records.join("multirust-channel-manifest.toml"), &edited);
        std::fs::write(
            home.0.join("settings.toml"),
            format!("version = \"12\"\ndefault_toolchain = \"{name}\"\nprofile = \"minimal\"\nauto_self_update = \"disable\"\n"),
        )
        .unwrap();
        let server = serve_file(package);
        ToolchainWithoutTarget {
            home,
            toolchain,
            server,
        }
    }

    fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("RUSTUP_HOME", self.home.0.clone().into_os_string()),
            ("RUSTUP_DIST_SERVER", self.server.clone().into()),
        ]
    }

    fn has_target(&self) -> bool {
        self.toolchain.join("lib/rustlib").join(WASM).is_dir()
    }
}

/// `to` as a tree of hard links to the files of `from` (so nothing is copied), but for the paths
/// `skip` names, and the files directly in `lib/rustlib` (rustup rewrites those in place: they are
/// copies).
fn link_tree(from: &Path, to: &Path, skip: &dyn Fn(&Path) -> bool) {
    fn walk(base: &Path, dir: &Path, to: &Path, skip: &dyn Fn(&Path) -> bool) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap();
            if skip(rel) {
                continue;
            }
            let dst = to.join(rel);
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&p).unwrap(), &dst).unwrap();
            } else if meta.is_dir() {
                std::fs::create_dir_all(&dst).unwrap();
                walk(base, &p, to, skip);
            } else if rel.parent() == Some(Path::new("lib/rustlib")) {
                std::fs::copy(&p, &dst).unwrap();
            } else {
                std::fs::hard_link(&p, &dst).unwrap();
            }
        }
    }
    std::fs::create_dir_all(to).unwrap();
    walk(from, from, to, skip);
}

/// Writes `text` to a new file at `path` (never into a file another link shares).
fn replace_file(path: &Path, text: &str) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, text).unwrap();
}

/// The rust-std package of wasm32-wasip2 in rustup's format (rust-installer 3), made once from the
/// installed target into `target/guide-rustup/`.
fn wasm_std_package(rustlib: &Path) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guide-rustup");
    let package = dir.join(format!("rust-std-{WASM}.tar.gz"));
    if package.is_file() {
        return package;
    }
    let stage = dir.join("stage");
    let _ = std::fs::remove_dir_all(&stage);
    let top = stage.join(format!("rust-std-{WASM}"));
    let component = top.join(format!("rust-std-{WASM}"));
    link_tree(
        &rustlib.join(WASM),
        &component.join("lib/rustlib").join(WASM),
        &|_| false,
    );
    std::fs::write(top.join("rust-installer-version"), "3\n").unwrap();
    std::fs::write(top.join("components"), format!("rust-std-{WASM}\n")).unwrap();
    std::fs::copy(
        rustlib.join(format!("manifest-rust-std-{WASM}")),
        component.join("manifest.in"),
    )
    .unwrap();
    let partial = dir.join("partial.tar.gz");
    let status = Command::new("tar")
        .arg("czf")
        .arg(&partial)
        .arg("-C")
        .arg(&stage)
        .arg(format!("rust-std-{WASM}"))
        .status()
        .unwrap();
    assert!(status.success(), "tar czf");
    std::fs::rename(&partial, &package).unwrap();
    std::fs::remove_dir_all(&stage).unwrap();
    package
}

/// Serves `file` to every GET on 127.0.0.1 (any path: rustup asks only for the package), in a thread
/// that lives as long as the test; returns the server's URL.
fn serve_file(file: PathBuf) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let body = std::fs::read(&file).unwrap();
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\ncontent-type: application/gzip\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut conn, answer.as_bytes());
            let _ = std::io::Write::write_all(&mut conn, &body);
        }
    });
    url
}

/// The Rust guide, from a toolchain that lacks the wasm32-wasip2 target: the guide's
/// `rustup target add wasm32-wasip2` adds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_filter_guide_works_as_written() {
    let _ = std::fs::remove_file(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/scaffold-rust/wasm32-wasip2/release/my_filter.wasm"),
    );
    let toolchain = ToolchainWithoutTarget::new();
    assert!(!toolchain.has_target());
    follow_guide("first-filter", &toolchain.env()).await;
    assert!(toolchain.has_target(), "the guide added {WASM}");
}

/// The Go guide, with `go` on PATH: the one xtask finds there, or installs into `target/tools`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_guide_works_as_written() {
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
    follow_guide("go-filter", &env).await;
}

#[test]
fn the_guide_is_read_from_the_readme() {
    let steps = guide_steps(
        "x\n<!-- guide:first-filter -->\n```sh\n# a comment\ncd a\n\ncat > f <<'EOF'\nk: v\n#> not output\nEOF\ngateway check\n#> ok\n```\n```yaml\nnot: run\n```\n<!-- /guide:first-filter -->\nafter\n",
        "first-filter",
    );
    let got: Vec<(&str, Vec<String>)> = steps
        .iter()
        .map(|s| (s.command.as_str(), s.expect.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("cd a", vec![]),
            ("cat > f <<'EOF'\nk: v\n#> not output\nEOF", vec![]),
            ("gateway check", vec!["ok".to_string()]),
        ]
    );
}

/// The quickstart (`cargo xtask demo`) serves the filter written with the Rust SDK on `/api/orders`, as
/// the README's first paragraph says: its config with free ports, and the plugin paths (relative to
/// `examples/quickstart`) made absolute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_serves_the_rust_sdk_filter() {
    xtask::examples().unwrap_or_else(|e| panic!("{e}"));
    xtask::rust_example_filters().unwrap_or_else(|e| panic!("{e}"));
    xtask::rust_hello_function().unwrap_or_else(|e| panic!("{e}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("examples/quickstart/gateway.yaml")).unwrap();
    let (public, backend, admin) = (free_port(), free_port(), free_port());
    let text = text
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{public}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{backend}"))
        .replace("127.0.0.1:9901", &format!("127.0.0.1:{admin}"))
        .replace("../../target/", &format!("{}/target/", root.display()));
    let dir = TempDir::new("quickstart");
    let config = dir.0.join("gateway.yaml");
    std::fs::write(&config, text).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--config"])
        .arg(&config)
        .env("GATEWAY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _serving = Background(vec![child]);
    let up = crate::harness::eventually(Duration::from_secs(30), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", admin))
            .await
            .is_ok()
    })
    .await;
    assert!(up, "the quickstart gateway did not start");
    let (s, h, body) =
        crate::harness::get(&format!("http://127.0.0.1:{public}/api/orders/7")).await;
    assert_eq!(s, 200, "{h:?} {body}");
    assert_eq!(h["x-rust-sdk"], "header-rewrite");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(
        h.get("server").is_none(),
        "the backend's server header is removed: {h:?}"
    );
    assert_eq!(body, "{\"order\": \"from the backend\"}\n");
    let (s, h, _) = crate::harness::get(&format!("http://127.0.0.1:{public}/api/users/42")).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-wasm-filter"], "proxy-wasm-demo");

    // /fn/hello: the Rust function backend, with the route's response header rule around it.
    let (s, h, body) =
        crate::harness::get(&format!("http://127.0.0.1:{public}/fn/hello?name=Ada")).await;
    assert_eq!(s, 200, "{h:?} {body}");
    assert_eq!(
        body,
        "Hello, Ada! (a Wasm function answered /fn/hello?name=Ada)\n"
    );
    assert_eq!(h["x-function"], "rust-hello");
    assert_eq!(h["x-served-by"], "gateway");
    assert!(h.get("x-rust-sdk").is_none());

    // /api/account: built-in key-auth and cors, as the README's curl lines show.
    let account = format!("http://127.0.0.1:{public}/api/account");
    let (s, h, body) = crate::harness::get(&account).await;
    assert_eq!(s, 401, "{body}");
    assert!(h.contains_key("www-authenticate"), "{h:?}");
    let (s, _, body) = crate::harness::get_with(&account, &[("apikey", "demo-key")]).await;
    assert_eq!(
        (s, body.as_str()),
        (200, "{\"account\": \"from the backend\"}\n")
    );
    let (s, _, _) = crate::harness::get_with(&account, &[("apikey", "wrong")]).await;
    assert_eq!(s, 401);
    let preflight = http::Request::options(&account)
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let (s, h, _) = crate::harness::request(preflight).await;
    assert_eq!(s, 204, "{h:?}");
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    let metrics = crate::harness::get(&format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .2;
    let counted = "gateway_consumer_requests_total{route=\"account\",consumer=\"demo-user\",status=\"200\"} 1";
    assert!(metrics.contains(counted), "{metrics}");
}
