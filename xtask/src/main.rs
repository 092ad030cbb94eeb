//! `cargo xtask demo`: build the example plugins, then serve the quickstart demo.
//! `cargo xtask plugins`: only build them.
//! `cargo xtask bench [ARGS]`: the benchmark (`bench/run.py`, see BENCHMARKS.md); ARGS go to it.

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
        "plugins" | "demo" => {
            if let Err(e) = xtask::examples() {
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
            eprintln!("usage: cargo xtask demo | plugins | bench [--help | ARGS]");
            ExitCode::FAILURE
        }
    }
}
