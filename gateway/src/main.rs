//! The `gateway` binary: `run`, `check`, `plugin test`, `plugin new`, `plugin build`, `--version`.
//! `run` reloads its config file when the file changes and on SIGHUP, and drains on SIGTERM/SIGINT.

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::builder::RuntimeBuilder;
use gateway::config::LogFormat;
use gateway::reload::Trigger;
use gateway::{Gateway, Source};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "An API gateway with WebAssembly filter chains"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve with a config file.
    Run {
        /// The YAML config.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and exit (non-zero with the error if it is invalid).
    Check {
        /// The YAML config.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Write an OpenAPI 3.1 document of the routes a config serves (JSON, on stdout): paths and
    /// methods, parameters from path templates and matchers, security schemes of the built-in
    /// authentication plugins.
    Routes {
        /// The YAML config.
        #[arg(long, short)]
        config: PathBuf,
        /// Write the OpenAPI document (the only output this command has today).
        #[arg(long)]
        openapi: bool,
        /// The routes of this listener only, with it as the server [default: every route].
        #[arg(long)]
        listener: Option<String>,
    },
    /// List the first-party plugins built into this binary (usable on routes by name, without a
    /// `plugins:` entry).
    Plugins,
    /// Work with the config format.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Work with plugins.
    Plugin {
        #[command(subcommand)]
        cmd: PluginCmd,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Write the config's JSON Schema (draft 2020-12) on stdout: what docs/config.schema.json
    /// holds and the admin API serves at `GET /config/schema`, for editors (yaml-language-server)
    /// and CI checks.
    Schema,
}

#[derive(Subcommand)]
enum PluginCmd {
    /// Run a built filter against the requests of fixture files, in-process, and check the outcome
    /// (PASS/FAIL per case; non-zero exit on any failure). The format is in `gateway::plugin_runner`.
    Test {
        /// Fixture files (`*.test.yaml`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Test this `.wasm` file instead of the fixture's `plugin.path` (e.g. another SDK's build of
        /// the same filter).
        #[arg(long)]
        wasm: Option<PathBuf>,
        /// Print every host call a component filter makes (the WIT world's imports), with its
        /// arguments and result, as it makes them. Proxy-Wasm host calls are not traced.
        #[arg(long)]
        trace: bool,
    },
    /// Write a new filter project: the code, a fixture for `plugin test` (tests/NAME.test.yaml), a
    /// README, and the SDK (this binary's copy in DIR/sdk, unless --sdk names one; for js and python
    /// the WIT world in DIR/wit). Refuses to write into a folder that is not empty.
    New {
        /// The language: rust, go, js or python.
        lang: Lang,
        /// The filter's name (lower-case letters, digits and `-`).
        name: String,
        /// Where to write it [default: ./NAME].
        dir: Option<PathBuf>,
        /// Depend on this SDK instead of writing a copy: the Rust SDK's folder (plugin-sdk) or the
        /// Go SDK's (plugin-sdk/go).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build the filter project in DIR (cargo for Rust, go for Go, packaged into a component;
    /// componentize-js or componentize-py, installed into the project on first use, for JavaScript
    /// and Python) and print the path of the `.wasm`.
    Build {
        /// The project [default: the current directory].
        dir: Option<PathBuf>,
    },
}

/// The languages of `plugin new`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Lang {
    Rust,
    Go,
    Js,
    Python,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { config } => match check(&config) {
            Ok(summary) => {
                println!("{}: ok ({summary})", config.display());
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Cmd::Plugins => {
            print!("{}", builtin_list());
            std::process::ExitCode::SUCCESS
        }
        Cmd::Config {
            cmd: ConfigCmd::Schema,
        } => {
            print!("{}", gateway::config::schema::config_schema_text());
            std::process::ExitCode::SUCCESS
        }
        Cmd::Plugin {
            cmd: PluginCmd::Test { files, wasm, trace },
        } => {
            if trace {
                init_trace();
            } else {
                init_logging_default(LogFormat::Text, "warn");
            }
            if gateway::plugin_runner::run_files(&files, wasm.as_deref()) {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Cmd::Plugin {
            cmd:
                PluginCmd::New {
                    lang,
                    name,
                    dir,
                    sdk,
                },
        } => {
            let lang = match lang {
                Lang::Rust => gateway::scaffold::Lang::Rust,
                Lang::Go => gateway::scaffold::Lang::Go,
                Lang::Js => gateway::scaffold::Lang::Js,
                Lang::Python => gateway::scaffold::Lang::Python,
            };
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            match gateway::scaffold::new_project(lang, &name, &dir, sdk.as_deref()) {
                Ok(files) => {
                    println!("wrote {} files to {}:", files.len(), dir.display());
                    for f in files
                        .iter()
                        .filter(|f| !f.starts_with(gateway::scaffold::SDK_DIR))
                    {
                        println!("  {}", f.display());
                    }
                    if sdk.is_none()
                        && files
                            .iter()
                            .any(|f| f.starts_with(gateway::scaffold::SDK_DIR))
                    {
                        println!(
                            "  {}/ (the SDK, this binary's copy)",
                            gateway::scaffold::SDK_DIR
                        );
                    }
                    println!(
                        "next: cd {} && gateway plugin build && gateway plugin test tests/{name}.test.yaml",
                        dir.display()
                    );
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Cmd::Plugin {
            cmd: PluginCmd::Build { dir },
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("."));
            match gateway::scaffold::build(&dir) {
                Ok(wasm) => {
                    // Relative to the current directory when it is under it, as the author sees it.
                    let shown = std::env::current_dir()
                        .ok()
                        .and_then(|cwd| wasm.strip_prefix(cwd).ok().map(PathBuf::from))
                        .unwrap_or_else(|| wasm.clone());
                    let size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
                    println!("built {} ({size} bytes)", shown.display());
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Cmd::Routes {
            config,
            openapi,
            listener,
        } => match routes(&config, openapi, listener.as_deref()) {
            Ok(doc) => {
                println!("{doc}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Cmd::Run { config } => match run(config) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}

/// The built-in plugins, one a line: name, version, size and sha256.
fn builtin_list() -> String {
    let all = gateway::builtin::all();
    if all.is_empty() {
        return "no built-in plugins (built with GATEWAY_NO_BUILTIN_PLUGINS, or `plugins/` has none)\n".into();
    }
    let mut out = format!("{:<24} {:<10} {:>10}  sha256\n", "name", "version", "bytes");
    for b in all {
        out += &format!(
            "{:<24} {:<10} {:>10}  {}\n",
            b.name,
            b.version,
            b.wasm.len(),
            gateway::plugin_source::sha256_hex(b.wasm)
        );
    }
    out
}

/// Validates completely, as a start would: every plugin is loaded and configured with each route's
/// config. Nothing is bound or served.
/// `gateway routes --openapi`: the config is parsed and checked as `check` does (without loading
/// plugins), then written as an OpenAPI document.
fn routes(path: &std::path::Path, openapi: bool, listener: Option<&str>) -> Result<String, String> {
    if !openapi {
        return Err("say what to write: --openapi".into());
    }
    let cfg = gateway::config::Config::load(path).map_err(|e| e.to_string())?;
    let doc = gateway::openapi::document(&cfg, listener)?;
    Ok(format!("{doc:#}"))
}

fn check(path: &std::path::Path) -> Result<String, gateway::config::ConfigError> {
    let (cfg, src) = Source::load(path)?;
    let plugins = gateway::plugins::PluginHost::new(
        gateway::plugins::default_cache_dir(),
        cfg.server.wasm_pool.clone(),
    );
    let io = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| src.err("(check)", format!("cannot start the async runtime: {e}")))?;
    let built = io.block_on(RuntimeBuilder::new(&plugins, Default::default()).build(cfg, &src))?;
    let rt = built.runtime;
    let cfg = &rt.config;
    // Built-in plugins that routes use without a `plugins:` entry count too.
    let mut builtins: Vec<&str> = cfg
        .routes
        .iter()
        .flat_map(|r| r.filters.iter().map(|f| f.plugin.as_str()))
        .filter(|name| !cfg.plugins.iter().any(|p| p.name == *name))
        .collect();
    builtins.sort_unstable();
    builtins.dedup();
    Ok(format!(
        "{} listeners, {} routes, {} upstreams, {} plugins",
        cfg.listeners.len(),
        cfg.routes.len(),
        cfg.upstreams.len(),
        cfg.plugins.len() + builtins.len()
    ))
}

fn init_logging(format: LogFormat) {
    init_logging_default(format, "info")
}

/// Logs to stderr, filtered by `GATEWAY_LOG` (default: `default`); in colour only when stderr is a
/// terminal, so a file, a pipe or a log collector gets no escape codes.
fn init_logging_default(format: LogFormat, default: &str) {
    use std::io::IsTerminal;
    let text = std::env::var("GATEWAY_LOG").unwrap_or_else(|_| default.to_owned());
    // The WIT bindings' TRACE events show every host call's arguments, credentials included (for
    // `plugin test --trace`): a server logs them only when GATEWAY_LOG names their target.
    let text = match text.contains("component::bindings") {
        true => text,
        false => format!("{text},gateway::wasm::component::bindings=off"),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&text)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.json().flatten_event(true).init(),
        LogFormat::Text => b.init(),
    }
}

/// `plugin test --trace`: the host calls of component filters (TRACE events of the WIT bindings) on
/// stdout, next to the test report, one line each, without time stamps; warnings as usual.
fn init_trace() {
    let filter =
        tracing_subscriber::EnvFilter::new("warn,gateway::wasm::component::bindings=trace");
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_level(false)
        .with_writer(std::io::stdout)
        .init();
}

fn run(path: PathBuf) -> anyhow::Result<()> {
    let (cfg, src) = Source::load(&path)?;
    init_logging(cfg.server.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        // Installed before serving, so that an early SIGHUP reloads instead of killing the process.
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        let mut gw = Gateway::start(cfg, src).await?;
        gw.watch_config_file();
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the config file");
                    // The outcome is logged, counted and shown on the admin API by the reloader.
                    let _ = gw.reloader().reload_file(Trigger::Signal).await;
                }
            }
        }
        tracing::info!("shutting down");
        // The drain timeout of the config serving now: it may have been reloaded.
        let drain = gw.shared.runtime.load().config.server.drain_timeout.0;
        gw.shutdown(drain).await;
        Ok(())
    })
}
