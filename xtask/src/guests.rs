//! JavaScript and Python guests: installs the pinned componentize-js (npm) and componentize-py (PyPI)
//! into `target/tools/` once, and builds the repository's JavaScript and Python filters and functions
//! with them into `target/guests/`. The tools and command lines are the gateway's
//! (`gateway/src/scaffold/guests.rs`, included here), so the tests build what `gateway plugin build`
//! builds.
//!
//! A build is skipped when its `.wasm` is newer than every source file it is made of (and the pinned
//! tool versions are unchanged): these components are 12-19 MB, and an unchanged component keeps its
//! sha256, so the gateway's disk cache of compiled code (the tests' `GATEWAY_CACHE_DIR`) still has it.

use crate::repo_root;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

/// The tools and command lines, shared with the gateway binary.
#[path = "../../gateway/src/scaffold/guests.rs"]
pub mod shared;

/// Where componentize-js is installed (`npm install` of a `package.json` naming the pinned version).
fn js_tools_dir() -> PathBuf {
    repo_root().join("target/tools/componentize-js")
}

/// Where componentize-py is installed (`pip install --target`).
fn py_tools_dir() -> PathBuf {
    repo_root().join("target/tools/componentize-py")
}

/// componentize-js, installed into `target/tools/componentize-js` on first use; its folder.
pub fn js_tools() -> Result<&'static PathBuf, String> {
    static TOOLS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            let dir = js_tools_dir();
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let manifest = format!(
                "{{\n  \"name\": \"gateway-guest-tools\",\n  \"private\": true,\n  \"devDependencies\": {{\n    \"{}\": \"{}\"\n  }}\n}}\n",
                shared::COMPONENTIZE_JS.0,
                shared::COMPONENTIZE_JS.1
            );
            std::fs::write(dir.join("package.json"), manifest)
                .map_err(|e| format!("cannot write {}/package.json: {e}", dir.display()))?;
            shared::ensure_js_tools(&dir)?;
            Ok(dir)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// componentize-py, installed into `target/tools/componentize-py` on first use; its folder.
pub fn py_tools() -> Result<&'static PathBuf, String> {
    static TOOLS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    TOOLS
        .get_or_init(|| {
            let dir = py_tools_dir();
            shared::ensure_py_tools(&dir)?;
            Ok(dir)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The newest modification time of the files directly in `dir`, of `wit/world.wit` and of the files in
/// `wit/deps` (following links), or None when one cannot be read.
fn newest_source(dir: &Path, wit: &Path) -> Option<SystemTime> {
    let mut newest = std::fs::metadata(wit.join("world.wit"))
        .ok()?
        .modified()
        .ok()?;
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.is_file() {
            newest = newest.max(std::fs::metadata(&path).ok()?.modified().ok()?);
        }
    }
    if let Ok(entries) = std::fs::read_dir(wit.join("deps")) {
        for e in entries.flatten() {
            newest = newest.max(e.metadata().ok()?.modified().ok()?);
        }
    }
    Some(newest)
}

/// Whether `out` was built from the current sources by the pinned tool (its stamp file names it).
fn up_to_date(out: &Path, dir: &Path, wit: &Path, tool: &str) -> bool {
    let stamp = out.with_extension("tool");
    let built = std::fs::metadata(out).and_then(|m| m.modified()).ok();
    std::fs::read_to_string(&stamp).ok().as_deref() == Some(tool)
        && matches!((built, newest_source(dir, wit)), (Some(b), Some(s)) if b > s)
}

fn mark_built(out: &Path, tool: &str) -> Result<(), String> {
    std::fs::write(out.with_extension("tool"), tool)
        .map_err(|e| format!("cannot write the stamp of {}: {e}", out.display()))
}

/// What kind of guest a source folder holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guest {
    /// A JavaScript module (`<dir>/<main>`), built with componentize-js.
    Js,
    /// A Python module `app` (`<dir>/app.py`), built with componentize-py.
    Python,
}

/// Builds the guest in `dir` (relative to the repository root) against `world` of the WIT folder
/// `wit` (relative to the root) into `target/guests/<name>.wasm`, unless that is up to date.
/// JavaScript builds of filters leave out the engine's `http` and `fetch-event` features (the filter
/// world has no `wasi:http`); `disable` says which.
pub fn build_guest(
    kind: Guest,
    dir: &str,
    source: &str,
    wit: &str,
    world: &str,
    disable: &[&str],
    name: &str,
) -> Result<PathBuf, String> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let root = repo_root();
    let (dir, wit) = (root.join(dir), root.join(wit));
    let out_dir = root.join("target/guests");
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let out = out_dir.join(format!("{name}.wasm"));
    let tool = match kind {
        Guest::Js => format!(
            "{}@{} {world} -{}",
            shared::COMPONENTIZE_JS.0,
            shared::COMPONENTIZE_JS.1,
            disable.join(" -")
        ),
        Guest::Python => format!(
            "{}=={} {world}",
            shared::COMPONENTIZE_PY.0,
            shared::COMPONENTIZE_PY.1
        ),
    };
    if up_to_date(&out, &dir, &wit, &tool) {
        return Ok(out);
    }
    let _ = std::fs::remove_file(&out);
    let started = std::time::Instant::now();
    match kind {
        Guest::Js => shared::build_js(js_tools()?, &dir.join(source), &wit, world, disable, &out)?,
        Guest::Python => shared::build_py(py_tools()?, &dir, source, &wit, world, &out)?,
    }
    eprintln!(
        "xtask: built {} ({} bytes) in {:.1} s",
        out.display(),
        std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0),
        started.elapsed().as_secs_f64()
    );
    mark_built(&out, &tool)?;
    Ok(out)
}

/// The example filters of `examples/filters/README.md` written in JavaScript or Python (two of the
/// four: header-rewrite and request-counter).
#[derive(Debug, Clone)]
pub struct GuestFilters {
    /// Sets, adds and removes request and response headers.
    pub header_rewrite: PathBuf,
    /// Counts requests in the shared store.
    pub request_counter: PathBuf,
}

fn filter_examples(kind: Guest) -> Result<GuestFilters, String> {
    let (lang, source) = match kind {
        Guest::Js => ("js", "filter.js"),
        Guest::Python => ("python", "app"),
    };
    let build = |example: &str| {
        build_guest(
            kind,
            &format!("examples/filters/{lang}/{example}"),
            source,
            "wit",
            "filter",
            &["http", "fetch-event"],
            &format!("{lang}_{}", example.replace('-', "_")),
        )
    };
    Ok(GuestFilters {
        header_rewrite: build("header-rewrite")?,
        request_counter: build("request-counter")?,
    })
}

/// The JavaScript example filters (`examples/filters/js`), built once per process.
pub fn js_example_filters() -> Result<&'static GuestFilters, String> {
    static BUILT: OnceLock<Result<GuestFilters, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| filter_examples(Guest::Js))
        .as_ref()
        .map_err(Clone::clone)
}

/// The Python example filters (`examples/filters/python`), built once per process.
pub fn python_example_filters() -> Result<&'static GuestFilters, String> {
    static BUILT: OnceLock<Result<GuestFilters, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| filter_examples(Guest::Python))
        .as_ref()
        .map_err(Clone::clone)
}

/// The example function in JavaScript (`examples/functions/js-hello`, a `wasi:http/proxy`
/// component answering with StarlingMonkey's fetch event), built once per process.
pub fn js_hello_function() -> Result<&'static PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            build_guest(
                Guest::Js,
                "examples/functions/js-hello",
                "function.js",
                "examples/functions/wit",
                "function",
                &[],
                "js_hello",
            )
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The example function in Python (`examples/functions/python-hello`, a `wasi:http/proxy`
/// component), built once per process.
pub fn python_hello_function() -> Result<&'static PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            build_guest(
                Guest::Python,
                "examples/functions/python-hello",
                "app",
                "examples/functions/wit",
                "function",
                &[],
                "python_hello",
            )
        })
        .as_ref()
        .map_err(Clone::clone)
}
