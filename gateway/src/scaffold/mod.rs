//! `gateway plugin new` and `gateway plugin build`: a filter project from the templates the binary
//! carries (`gateway/templates/`), with the SDK it needs (the binary's own copy, or one the author
//! names), and its build into a component: with cargo for Rust, with go and the packaging of
//! [`componentize`] for Go, with componentize-js or componentize-py ([`guests`]) for JavaScript and
//! Python, which the build installs into the project from npm or PyPI.

pub mod componentize;
pub mod guests;
mod sdk;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The languages a project can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// The Rust SDK (`gateway-plugin-sdk`), built for wasm32-wasip2.
    Rust,
    /// The Go SDK (`gateway/filter`), built for wasip1 and packaged into a component.
    Go,
    /// JavaScript, built with componentize-js against the WIT world (`wit/`, carried by the project).
    Js,
    /// Python, built with componentize-py against the WIT world (`wit/`, carried by the project).
    Python,
}

/// The Rust target filters are built for.
pub const RUST_TARGET: &str = "wasm32-wasip2";

/// The oldest Go that has `go:wasmexport` and `-buildmode=c-shared` for `wasip1`.
pub const MIN_GO: (u32, u32) = (1, 24);

/// The folder of a new project that holds the binary's copy of the SDK, when no `--sdk` is given.
pub const SDK_DIR: &str = "sdk";

/// The folder of a JavaScript or Python project that holds the binary's copy of the WIT world, which
/// the bindings are generated from at build time (these languages have no SDK beyond it).
pub const WIT_DIR: &str = "wit";

/// The world a filter is a component of.
pub const FILTER_WORLD: &str = "filter";

/// The folder of a Python project where `plugin build` installs componentize-py.
pub const PY_TOOLS_DIR: &str = ".componentize-py";

macro_rules! template {
    ($($f:literal),* $(,)?) => {
        &[$(($f, include_str!(concat!("../../templates/", $f)))),*]
    };
}

/// Template files: path under `templates/`, text with `{{name}}`, `{{crate}}` and `{{sdk}}`.
static TEMPLATES: &[(&str, &str)] = template!(
    "rust/Cargo.toml",
    "rust/README.md",
    "rust/gitignore",
    "rust/src/lib.rs",
    "rust/tests/filter.test.yaml",
    "go/go.mod",
    "go/README.md",
    "go/gitignore",
    "go/main.go",
    "go/tests/filter.test.yaml",
    "js/package.json",
    "js/README.md",
    "js/gitignore",
    "js/filter.js",
    "js/tests/filter.test.yaml",
    "python/pyproject.toml",
    "python/README.md",
    "python/gitignore",
    "python/app.py",
    "python/tests/filter.test.yaml",
);

/// A project name: lower-case letters, digits and `-`, starting with a letter (it names the crate or
/// Go module, the fixture file and the `.wasm`).
fn check_name(name: &str) -> Result<(), String> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a filter name: use lower-case letters, digits and `-`, starting with a \
             letter (e.g. `api-key`)"
        ))
    }
}

/// The name of the `.wasm` a project called `name` builds: `-` and `.` become `_`, as cargo does.
fn artifact_name(name: &str) -> String {
    name.replace(['-', '.'], "_")
}

/// Writes a new project `name` in `dir` (which must not exist or be empty) and returns the files it
/// wrote, relative to `dir`. `sdk` is the SDK to depend on: the Rust SDK's folder (`plugin-sdk`) or the
/// Go SDK's (`plugin-sdk/go`; `plugin-sdk` is accepted too); without it the binary's own copy is
/// written into `dir/sdk`. A JavaScript or Python project gets the binary's copy of the WIT world in
/// `dir/wit` (there is no SDK to name).
pub fn new_project(
    lang: Lang,
    name: &str,
    dir: &Path,
    sdk: Option<&Path>,
) -> Result<Vec<PathBuf>, String> {
    check_name(name)?;
    if sdk.is_some() && matches!(lang, Lang::Js | Lang::Python) {
        return Err(
            "--sdk is for Rust and Go: a JavaScript or Python project is built from the WIT world \
             it carries in wit/ (this binary's copy)"
                .into(),
        );
    }
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        if entries.next().is_some() {
            return Err(format!(
                "{} already exists and is not empty; nothing was written (choose another DIR)",
                dir.display()
            ));
        }
    }
    let sdk_path = match sdk {
        Some(p) => sdk_dependency(lang, p)?,
        None => format!("./{SDK_DIR}"),
    };
    let prefix = match lang {
        Lang::Rust => "rust/",
        Lang::Go => "go/",
        Lang::Js => "js/",
        Lang::Python => "python/",
    };
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for (path, text) in TEMPLATES {
        let Some(rel) = path.strip_prefix(prefix) else {
            continue;
        };
        let rel = match rel {
            "gitignore" => ".gitignore".to_string(),
            "tests/filter.test.yaml" => format!("tests/{name}.test.yaml"),
            other => other.to_string(),
        };
        let text = text
            .replace("{{name}}", name)
            .replace("{{crate}}", &artifact_name(name))
            .replace("{{sdk}}", &sdk_in(lang, &sdk_path))
            .replace("{{wit_version}}", wit_version())
            .replace("{{componentize_js}}", guests::COMPONENTIZE_JS.0)
            .replace("{{componentize_js_version}}", guests::COMPONENTIZE_JS.1)
            .replace("{{componentize_py}}", guests::COMPONENTIZE_PY.0)
            .replace("{{componentize_py_version}}", guests::COMPONENTIZE_PY.1);
        files.push((PathBuf::from(rel), text));
    }
    if sdk.is_none() {
        let (carried, into) = match lang {
            Lang::Rust => (sdk::RUST, SDK_DIR),
            Lang::Go => (sdk::GO, SDK_DIR),
            Lang::Js | Lang::Python => (&[("world.wit", sdk::WIT)][..], WIT_DIR),
        };
        for (path, text) in carried {
            files.push((Path::new(into).join(path), text.to_string()));
        }
    }
    for (rel, text) in &files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// The version of the WIT package the binary carries (`package gateway:filter@0.1.3;`): JavaScript
/// imports name it (`gateway:filter/log@0.1.3`).
fn wit_version() -> &'static str {
    sdk::WIT
        .lines()
        .find_map(|l| l.trim().strip_prefix("package gateway:filter@"))
        .and_then(|v| v.strip_suffix(';'))
        .expect("wit/world.wit names its package with a version")
}

/// The dependency path written for an SDK the author named: absolute, and checked to be that SDK.
fn sdk_dependency(lang: Lang, given: &Path) -> Result<String, String> {
    let path =
        std::fs::canonicalize(given).map_err(|e| format!("--sdk {}: {e}", given.display()))?;
    let path = match lang {
        Lang::Rust if path.join("Cargo.toml").is_file() => path,
        Lang::Go if path.join("go.mod").is_file() => path,
        Lang::Go if path.join("go/go.mod").is_file() => path.join("go"),
        Lang::Rust => {
            return Err(format!(
                "--sdk {}: not the Rust SDK (no Cargo.toml; give the `plugin-sdk` folder)",
                given.display()
            ))
        }
        Lang::Go => {
            return Err(format!(
                "--sdk {}: not the Go SDK (no go.mod; give the `plugin-sdk/go` folder)",
                given.display()
            ))
        }
        Lang::Js | Lang::Python => {
            return Err(format!(
                "--sdk {}: JavaScript and Python projects have no SDK",
                given.display()
            ))
        }
    };
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("--sdk {}: the path is not UTF-8", given.display()))
}

/// Builds the project in `dir` (a `Cargo.toml` makes it Rust, a `go.mod` Go, a `package.json`
/// JavaScript, an `app.py` Python) and returns the path of the component it wrote. Progress goes to
/// stderr.
pub fn build(dir: &Path) -> Result<PathBuf, String> {
    if dir.join("Cargo.toml").is_file() {
        build_rust(dir)
    } else if dir.join("go.mod").is_file() {
        build_go(dir)
    } else if dir.join("package.json").is_file() {
        build_js(dir)
    } else if dir.join("app.py").is_file() {
        build_python(dir)
    } else {
        Err(format!(
            "{} has neither Cargo.toml nor go.mod (nor package.json, nor app.py): not a filter \
             project (`gateway plugin new` makes one)",
            dir.display()
        ))
    }
}

/// The WIT folder of a JavaScript or Python project, checked to be there.
fn project_wit(dir: &Path) -> Result<PathBuf, String> {
    let wit = dir.join(WIT_DIR);
    if wit.join("world.wit").is_file() {
        Ok(wit)
    } else {
        Err(format!(
            "{} has no {WIT_DIR}/world.wit: the WIT world the filter is built against (`gateway \
             plugin new` writes this binary's copy)",
            dir.display()
        ))
    }
}

fn build_js(dir: &Path) -> Result<PathBuf, String> {
    let dir = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let manifest_path = dir.join("package.json");
    let manifest: serde_json::Value = std::fs::read_to_string(&manifest_path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let name = manifest["name"]
        .as_str()
        .ok_or_else(|| format!("{}: no \"name\"", manifest_path.display()))?;
    let main = manifest["main"].as_str().unwrap_or("filter.js");
    let source = dir.join(main);
    if !source.is_file() {
        return Err(format!(
            "{}: \"main\" is {main}, which is not there",
            manifest_path.display()
        ));
    }
    let wit = project_wit(&dir)?;
    guests::node()?;
    guests::ensure_js_tools(&dir)?;
    let out = dir.join(format!("{}.wasm", artifact_name(name)));
    eprintln!(
        "gateway: componentize-js {main} (world `{FILTER_WORLD}` of {WIT_DIR}/, without the http and \
         fetch-event features)"
    );
    guests::build_js(
        &dir,
        &source,
        &wit,
        FILTER_WORLD,
        &["http", "fetch-event"],
        &out,
    )?;
    Ok(out)
}

/// The `name` of the `[project]` table of a `pyproject.toml`.
fn pyproject_name(text: &str) -> Option<&str> {
    let mut in_project = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_project = line == "[project]";
        } else if in_project {
            if let Some(rest) = line.strip_prefix("name") {
                let value = rest.trim_start().strip_prefix('=')?.trim();
                return Some(value.trim_matches(|c| c == '"' || c == '\''));
            }
        }
    }
    None
}

fn build_python(dir: &Path) -> Result<PathBuf, String> {
    let dir = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let pyproject = std::fs::read_to_string(dir.join("pyproject.toml")).unwrap_or_default();
    let folder = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "filter".into());
    let name = pyproject_name(&pyproject).unwrap_or(&folder).to_string();
    let wit = project_wit(&dir)?;
    let tools = dir.join(PY_TOOLS_DIR);
    guests::ensure_py_tools(&tools)?;
    let out = dir.join(format!("{}.wasm", artifact_name(&name)));
    eprintln!("gateway: componentize-py app (world `{FILTER_WORLD}` of {WIT_DIR}/)");
    guests::build_py(&tools, &dir, "app", &wit, FILTER_WORLD, &out)?;
    Ok(out)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether the Rust toolchain that `dir` uses has the standard library for [`RUST_TARGET`].
fn has_wasm_target(dir: &Path) -> Result<bool, String> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run rustc (is Rust installed? https://rustup.rs): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "rustc --print sysroot failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(sysroot.join("lib/rustlib").join(RUST_TARGET).is_dir())
}

fn build_rust(dir: &Path) -> Result<PathBuf, String> {
    if !has_wasm_target(dir)? {
        if on_path("rustup").is_none() {
            return Err(format!(
                "the Rust target {RUST_TARGET} is not installed, and there is no rustup to add it: \
                 install it with your Rust distribution (with rustup: rustup target add {RUST_TARGET})"
            ));
        }
        eprintln!("gateway: the Rust target {RUST_TARGET} is missing; running rustup target add {RUST_TARGET}");
        let status = Command::new("rustup")
            .args(["target", "add", RUST_TARGET])
            .current_dir(dir)
            .status()
            .map_err(|e| format!("cannot run rustup: {e}"))?;
        if !status.success() {
            return Err(format!("rustup target add {RUST_TARGET} failed ({status})"));
        }
    }
    eprintln!("gateway: cargo build --release --target {RUST_TARGET}");
    let mut child = Command::new("cargo")
        .args(["build", "--release", "--target", RUST_TARGET])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run cargo (is Rust installed? https://rustup.rs): {e}"))?;
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().expect("piped"), &mut stdout)
        .map_err(|e| format!("cannot read cargo's output: {e}"))?;
    let status = child.wait().map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build failed ({status})"));
    }
    let manifest = std::fs::canonicalize(dir.join("Cargo.toml"))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    cdylib_of(&stdout, &manifest).ok_or_else(|| {
        format!(
            "cargo built no .wasm for {}: is its [lib] crate-type [\"cdylib\"]?",
            manifest.display()
        )
    })
}

/// The `.wasm` of the cdylib of the package `manifest` among cargo's JSON messages.
fn cdylib_of(messages: &str, manifest: &Path) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["manifest_path"]
                .as_str()
                .and_then(|p| std::fs::canonicalize(p).ok())
                .is_some_and(|p| p == manifest)
        })
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
                .collect::<Vec<_>>()
        })
        .rfind(|f| f.extension().is_some_and(|x| x == "wasm"))
}

/// Parses `go1.27.3` / `go1.24` / `go1.25rc1` into (major, minor).
fn parse_go_version(v: &str) -> Option<(u32, u32)> {
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

/// The module path in a `go.mod`.
fn go_module(go_mod: &str) -> Option<&str> {
    go_mod.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("module")?;
        rest.starts_with(char::is_whitespace)
            .then(|| rest.trim().trim_matches('"'))
    })
}

fn build_go(dir: &Path) -> Result<PathBuf, String> {
    let go_mod = std::fs::read_to_string(dir.join("go.mod"))
        .map_err(|e| format!("cannot read {}: {e}", dir.join("go.mod").display()))?;
    let module = go_module(&go_mod)
        .ok_or_else(|| format!("{}: no `module` line", dir.join("go.mod").display()))?;
    let name = artifact_name(module.rsplit('/').next().unwrap_or(module));
    let need = format!("Go {}.{} or newer", MIN_GO.0, MIN_GO.1);
    let go = on_path("go")
        .ok_or_else(|| format!("no `go` on PATH: Go filters need {need} (https://go.dev/dl/)"))?;
    let version = Command::new(&go)
        .args(["env", "GOVERSION"])
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| parse_go_version(&String::from_utf8_lossy(&o.stdout)));
    match version {
        Some(v) if v >= MIN_GO => {}
        v => {
            return Err(format!(
                "{} is Go {}; Go filters need {need}",
                go.display(),
                v.map_or("of an unknown version".into(), |(a, b)| format!("{a}.{b}"))
            ))
        }
    }
    let dir = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let out = dir.join(format!("{name}.wasm"));
    let core =
        std::env::temp_dir().join(format!("gateway-{name}-{}.core.wasm", std::process::id()));
    eprintln!(
        "gateway: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath (the core module)"
    );
    // -trimpath: the same source gives the same component wherever it is built (the gateway caches
    // compiled plugins by their sha256), and no local paths end up in it.
    let status = Command::new(&go)
        .current_dir(&dir)
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .args(["build", "-buildmode=c-shared", "-trimpath", "-o"])
        .arg(&core)
        .arg(".")
        .status()
        .map_err(|e| format!("cannot run go build in {}: {e}", dir.display()))?;
    if !status.success() {
        let _ = std::fs::remove_file(&core);
        return Err(format!("go build failed ({status})"));
    }
    eprintln!("gateway: packaging the core module into a component (world `filter`, WASI preview 1 adapter)");
    let bytes = std::fs::read(&core).map_err(|e| format!("cannot read {}: {e}", core.display()));
    let _ = std::fs::remove_file(&core);
    let component = componentize::componentize(&bytes?, "wit/world.wit", sdk::WIT)?;
    std::fs::write(&out, component).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(out)
}

/// The SDK's path as the project file writes it: inside the TOML string of Cargo.toml (`"` and `\`
/// escaped), or a go.mod path, quoted when it has spaces, quotes or backslashes (a path such as
/// `/home/me/My SDK/go` would otherwise end the directive early).
fn sdk_in(lang: Lang, path: &str) -> String {
    let escaped = path.replace('\\', "\\\\").replace('"', "\\\"");
    match lang {
        Lang::Rust | Lang::Js | Lang::Python => escaped,
        Lang::Go
            if path
                .chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '\\') =>
        {
            format!("\"{escaped}\"")
        }
        Lang::Go => escaped,
    }
}

#[cfg(test)]
mod tests;
