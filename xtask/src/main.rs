//! `cargo xtask demo`: build the example plugins, then serve the quickstart demo.
//! `cargo xtask plugins`: only build them.
//! `cargo xtask bench [ARGS]`: the benchmark (`bench/run.py`, see BENCHMARKS.md); ARGS go to it.
//! `cargo xtask go-filter build DIR [-o OUT.wasm]`: build a Go filter into a component (see
//! plugin-sdk/go/README.md); `cargo xtask go-filter test`: the Go SDK's own tests, natively.
//! `cargo xtask guests`: build the JavaScript and Python examples (filters and functions) with the
//! pinned componentize-js and componentize-py (installed into target/tools), print `name path` lines.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let cmd = std::env::args().nth(1).unwrap_or_default();
    match cmd.as_str() {
        "bench" => {
            let status = Command::new("python3")
                .current_dir(xtask::repo_root())
                .arg("bench/run.py")
                .args(std::env::args().skip(2))
                .status();
            match status {
                Ok(s) if s.success() => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("xtask: cannot run python3 bench/run.py: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        "go-filter" => go_filter(std::env::args().skip(2).collect()),
        "guests" => guests(),
        "plugins" | "demo" => {
            if let Err(e) = xtask::examples() {
                eprintln!("xtask: {e}");
                return ExitCode::FAILURE;
            }
            // The quickstart's `orders` route runs header-rewrite, written with the Rust SDK.
            if let Err(e) = xtask::rust_example_filters() {
                eprintln!("xtask: {e}");
                return ExitCode::FAILURE;
            }
            // The quickstart's `/fn/hello` route is a function backend in Rust.
            if let Err(e) = xtask::rust_hello_function() {
                eprintln!("xtask: {e}");
                return ExitCode::FAILURE;
            }
            if cmd == "plugins" {
                return ExitCode::SUCCESS;
            }
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .current_dir(xtask::repo_root())
                .args([
                    "run",
                    "-p",
                    "gateway",
                    "--",
                    "run",
                    "--config",
                    "examples/quickstart/gateway.yaml",
                ])
                .status();
            match status {
                Ok(s) if s.success() => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("xtask: cannot run the gateway: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!("usage: cargo xtask demo | plugins | bench [--help | ARGS] | go-filter build DIR [-o OUT] | guests");
            ExitCode::FAILURE
        }
    }
}

/// `go-filter build DIR [-o OUT]` and `go-filter test`.
fn go_filter(args: Vec<String>) -> ExitCode {
    let usage = "usage: cargo xtask go-filter build DIR [-o OUT.wasm] | go-filter test";
    let result = match args.first().map(String::as_str) {
        Some("build") => {
            let (mut dir, mut out) = (None, None);
            let mut rest = args[1..].iter();
            while let Some(a) = rest.next() {
                match a.as_str() {
                    "-o" | "--out" => out = rest.next().map(std::path::PathBuf::from),
                    _ if dir.is_none() && !a.starts_with('-') => {
                        dir = Some(std::path::PathBuf::from(a))
                    }
                    _ => {
                        eprintln!("{usage}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            let Some(dir) = dir else {
                eprintln!("{usage}");
                return ExitCode::FAILURE;
            };
            let out = out.unwrap_or_else(|| {
                let name = std::fs::canonicalize(&dir)
                    .ok()
                    .and_then(|d| d.file_name().map(|n| n.to_string_lossy().replace('-', "_")))
                    .unwrap_or_else(|| "filter".into());
                dir.join(format!("{name}.wasm"))
            });
            xtask::go::build_go_filter(&dir, &out).map(|()| {
                println!("{}", out.display());
            })
        }
        Some("test") => xtask::go::go_test_sdk().map(|text| print!("{text}")),
        _ => {
            eprintln!("{usage}");
            return ExitCode::FAILURE;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `guests`: the JavaScript and Python example filters and functions, as `name path` lines.
fn guests() -> ExitCode {
    use xtask::guests::*;
    let built = (|| -> Result<Vec<(&str, &std::path::Path)>, String> {
        let (js, py) = (js_example_filters()?, python_example_filters()?);
        Ok(vec![
            ("js-header-rewrite", js.header_rewrite.as_path()),
            ("js-request-counter", js.request_counter.as_path()),
            ("python-header-rewrite", py.header_rewrite.as_path()),
            ("python-request-counter", py.request_counter.as_path()),
            ("js-hello", js_hello_function()?.as_path()),
            ("python-hello", python_hello_function()?.as_path()),
        ])
    })();
    match built {
        Ok(list) => {
            for (name, path) in list {
                println!("{name} {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
