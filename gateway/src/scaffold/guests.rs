//! JavaScript and Python guests: the pinned tools that make components of them
//! (`@bytecodealliance/componentize-js` from npm, `componentize-py` from PyPI), installed into a folder
//! of the caller's choice with the registries' ordinary clients, and the command lines that build a
//! source file or module against a WIT world. Neither tool needs a download beyond its package:
//! componentize-js embeds StarlingMonkey (SpiderMonkey), componentize-py CPython. componentize-js's
//! AOT option (`--aot`, weval) is not used: it fetches more at build time.
//! Shared by the `gateway plugin build` command and `xtask` (which includes this file); std only.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The npm package and version of componentize-js (written into a JS project's `package.json`).
pub const COMPONENTIZE_JS: (&str, &str) = ("@bytecodealliance/componentize-js", "0.23.0");

/// The PyPI package and version of componentize-py.
pub const COMPONENTIZE_PY: (&str, &str) = ("componentize-py", "0.25.1");

/// The oldest Node.js componentize-js runs on.
pub const MIN_NODE: u32 = 18;

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The `node` on PATH, checked to be [`MIN_NODE`] or newer.
pub fn node() -> Result<PathBuf, String> {
    let node = on_path("node").ok_or_else(|| {
        format!("no `node` on PATH: JavaScript filters need Node.js {MIN_NODE} or newer (with npm)")
    })?;
    let out = Command::new(&node)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", node.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let major = text
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if m >= MIN_NODE => Ok(node),
        _ => Err(format!(
            "{} is Node.js {}; JavaScript filters need {MIN_NODE} or newer",
            node.display(),
            text.trim()
        )),
    }
}

/// The componentize-js entry point under a folder where npm installed it (`<dir>/node_modules`).
pub fn js_cli(dir: &Path) -> PathBuf {
    dir.join("node_modules")
        .join(COMPONENTIZE_JS.0)
        .join("src/cli.js")
}

/// The version of componentize-js installed under `dir`, if any.
fn js_installed_version(dir: &Path) -> Option<String> {
    let manifest = dir
        .join("node_modules")
        .join(COMPONENTIZE_JS.0)
        .join("package.json");
    let text = std::fs::read_to_string(manifest).ok()?;
    // `"version": "0.23.0"` of the package's own manifest (its first "version" key).
    let rest = &text[text.find("\"version\"")? + "\"version\"".len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

/// Makes sure componentize-js is installed under `dir` (which holds a `package.json` naming it):
/// `npm install` there when it is missing or another version. Progress goes to stderr.
pub fn ensure_js_tools(dir: &Path) -> Result<PathBuf, String> {
    if js_installed_version(dir).as_deref() == Some(COMPONENTIZE_JS.1) && js_cli(dir).is_file() {
        return Ok(js_cli(dir));
    }
    let npm = on_path("npm").ok_or_else(|| {
        format!(
            "no `npm` on PATH: it installs {}@{} (comes with Node.js)",
            COMPONENTIZE_JS.0, COMPONENTIZE_JS.1
        )
    })?;
    eprintln!(
        "gateway: npm install in {} ({}@{}, about 150 MB, once)",
        dir.display(),
        COMPONENTIZE_JS.0,
        COMPONENTIZE_JS.1
    );
    let status = Command::new(npm)
        .current_dir(dir)
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
        .status()
        .map_err(|e| format!("cannot run npm install in {}: {e}", dir.display()))?;
    if !status.success() {
        return Err(format!(
            "npm install in {} failed ({status})",
            dir.display()
        ));
    }
    match js_installed_version(dir) {
        Some(v) if v == COMPONENTIZE_JS.1 => Ok(js_cli(dir)),
        v => Err(format!(
            "npm install in {} gave {} {v:?}, not {}: its package.json should name \"{}\": \"{}\"",
            dir.display(),
            COMPONENTIZE_JS.0,
            COMPONENTIZE_JS.1,
            COMPONENTIZE_JS.0,
            COMPONENTIZE_JS.1
        )),
    }
}

/// Builds the ES module `source` into a component of `world` of the WIT package in `wit`, written to
/// `out`, with componentize-js installed under `tools`. `disable` are the WASI features of the
/// engine to leave out (`http` and `fetch-event` for a filter: the filter world has no `wasi:http`).
pub fn build_js(
    tools: &Path,
    source: &Path,
    wit: &Path,
    world: &str,
    disable: &[&str],
    out: &Path,
) -> Result<(), String> {
    let mut cmd = Command::new(node()?);
    cmd.arg(js_cli(tools))
        .arg(source)
        .arg("--wit")
        .arg(wit)
        .args(["--world-name", world]);
    for f in disable {
        cmd.args(["--disable", f]);
    }
    cmd.arg("-o").arg(out);
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run componentize-js: {e}"))?;
    if output.status.success() && out.is_file() {
        return Ok(());
    }
    // componentize-js exits 0 on some errors: the missing output tells.
    Err(format!(
        "componentize-js {} failed ({}):\n{}{}",
        source.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// Where `pip install --target <dir>` puts the componentize-py package.
fn py_installed(dir: &Path) -> bool {
    let marker = format!(
        "{}-{}.dist-info",
        COMPONENTIZE_PY.0.replace('-', "_"),
        COMPONENTIZE_PY.1
    );
    dir.join(marker).is_dir() && dir.join("componentize_py").is_dir()
}

/// A `python3` (3.9 or newer; componentize-py is a compiled wheel with the interpreter it embeds, so
/// the one that runs it matters only for pip).
fn python() -> PathBuf {
    on_path("python3").unwrap_or_else(|| PathBuf::from("python3"))
}

/// Makes sure componentize-py is installed in `dir` (`python3 -m pip install --target dir`).
pub fn ensure_py_tools(dir: &Path) -> Result<(), String> {
    if py_installed(dir) {
        return Ok(());
    }
    let spec = format!("{}=={}", COMPONENTIZE_PY.0, COMPONENTIZE_PY.1);
    eprintln!(
        "gateway: python3 -m pip install --target {} {spec} (about 50 MB, once)",
        dir.display()
    );
    let status = Command::new(python())
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--upgrade",
            "--target",
        ])
        .arg(dir)
        .arg(&spec)
        .status()
        .map_err(|e| format!("cannot run python3 -m pip (Python 3 with pip is needed): {e}"))?;
    if !status.success() || !py_installed(dir) {
        return Err(format!(
            "python3 -m pip install --target {} {spec} failed ({status})",
            dir.display()
        ));
    }
    Ok(())
}

/// Builds the Python module `module` (found in `app_dir`) into a component of `world` of the WIT
/// package in `wit`, written to `out`, with componentize-py installed in `tools`.
pub fn build_py(
    tools: &Path,
    app_dir: &Path,
    module: &str,
    wit: &Path,
    world: &str,
    out: &Path,
) -> Result<(), String> {
    let output = Command::new(python())
        .current_dir(app_dir)
        .env("PYTHONPATH", tools)
        .args([
            "-c",
            "import sys; from componentize_py import script; sys.exit(script())",
        ])
        .arg("-d")
        .arg(wit)
        .args(["-w", world, "componentize", "-p", "."])
        .arg(module)
        .arg("-o")
        .arg(out)
        .output()
        .map_err(|e| format!("cannot run componentize-py: {e}"))?;
    if output.status.success() && out.is_file() {
        return Ok(());
    }
    Err(format!(
        "componentize-py {module} in {} failed ({}):\n{}{}",
        app_dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}
