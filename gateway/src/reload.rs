//! Hot reload. Every trigger (the watched config file, SIGHUP, admin `POST /reload` and `PUT /config`,
//! [`crate::Gateway::reload_from`]) goes through one [`Reloader`], which parses the new config on a
//! blocking thread and builds it with the [`RuntimeBuilder`] that starts and `gateway check` use too
//! (reusing the clusters whose config did not change, loading its plugins and configuring every
//! route's filters), then swaps it in whole and starts it. Reloads never interleave;
//! one that fails changes nothing and says why (in its answer, the log, `/metrics` and
//! [`Reloader::last`]). Requests keep the runtime they loaded, so an old runtime is freed when its last
//! request ends (`gateway_runtimes_live`). Unchanged plugins and the filter stages of unchanged routes
//! are carried over into the new runtime (see [`crate::plugins::WasmServices::attach`]).
//!
//! What a reload cannot change, because it would need new sockets, a new log subscriber or a new Wasm
//! engine: listeners (names, addresses, limits), the admin API, `server.log_format` and
//! `server.cache_dir`. A config that changes them is
//! refused with the field named; the gateway must be restarted to apply it.

use crate::builder::RuntimeBuilder;
use crate::config::{field_error, Config, ConfigError};
use crate::proxy::Shared;
use crate::runtime::Source;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How often the config file is checked for changes. Default: 500ms.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// How long a changed config file must stay unchanged before it is loaded, so that a file being
/// written is not read half way. Default: 200ms.
pub const WATCH_DEBOUNCE: Duration = Duration::from_millis(200);

/// The name given to a config that came in the body of `PUT /config`, next to the config file so that
/// relative paths in it mean the same as in the file.
pub const PUT_CONFIG_NAME: &str = "<PUT config>";

/// The part of the message of a refused listener, admin or log format change that says what to do.
const RESTART: &str = "restart the gateway to apply this";

/// What started a reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The watched config file changed.
    File,
    /// SIGHUP.
    Signal,
    /// Admin `POST /reload`.
    Admin,
    /// Admin `PUT /config`.
    PutConfig,
    /// A call of the library API ([`crate::Gateway::reload_from`]).
    Api,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::File => "file",
            Trigger::Signal => "signal",
            Trigger::Admin => "admin",
            Trigger::PutConfig => "put_config",
            Trigger::Api => "api",
        })
    }
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config is invalid, or changes what only a restart can change.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Building the runtime failed unexpectedly (a panic in the build).
    #[error("the reload failed: {0}")]
    Internal(String),
}

/// The outcome of one reload, as `GET /reload` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// What started it.
    pub trigger: Trigger,
    /// `ok` or `error`.
    pub result: &'static str,
    /// When it finished, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// What was applied, or the error (`file:line:col: field: message`).
    pub message: String,
    /// The generation serving afterwards: 0 is the config the gateway started with, each applied
    /// reload adds one.
    pub generation: u64,
}

/// Where a reload takes its config from.
enum Input {
    /// The config file, read again.
    File,
    /// Config text (YAML or JSON) given directly.
    Text(String, PathBuf),
}

/// Applies reloads to a running gateway, one at a time.
pub struct Reloader {
    shared: Arc<Shared>,
    file: PathBuf,
    serial: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    last: Mutex<Option<Report>>,
}

impl Reloader {
    /// A reloader for the gateway serving `shared`, whose config file is `file`.
    pub fn new(shared: Arc<Shared>, file: PathBuf) -> Reloader {
        let m = &shared.metrics;
        m.last_reload_ok.store(true, Ordering::Relaxed);
        m.last_reload_success_unix
            .store(unix_ms() / 1000, Ordering::Relaxed);
        Reloader {
            shared,
            file,
            serial: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }

    /// The config file that [`Reloader::reload_file`] reads.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The generation serving now (0: the config the gateway started with).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The outcome of the last reload, if there was one.
    pub fn last(&self) -> Option<Report> {
        self.last.lock().unwrap().clone()
    }

    /// Reads the config file again and applies it.
    pub async fn reload_file(&self, trigger: Trigger) -> Result<Report, ReloadError> {
        self.apply(trigger, Input::File).await
    }

    /// Applies config text (YAML or JSON). Errors name it [`PUT_CONFIG_NAME`], beside the config file.
    pub async fn reload_text(&self, trigger: Trigger, text: String) -> Result<Report, ReloadError> {
        let name = self.file.with_file_name(PUT_CONFIG_NAME);
        self.apply(trigger, Input::Text(text, name)).await
    }

    async fn apply(&self, trigger: Trigger, input: Input) -> Result<Report, ReloadError> {
        let _one_at_a_time = self.serial.lock().await;
        let current = self.shared.runtime.load_full();
        let metrics = self.shared.metrics.clone();
        let file = self.file.clone();
        let previous = current.clone();
        let parsed = tokio::task::spawn_blocking(move || {
            let (cfg, src) = match input {
                Input::File => Source::load(&file)?,
                Input::Text(text, path) => {
                    let cfg = Config::parse(&path, &text)?;
                    (
                        cfg,
                        Source {
                            path,
                            text: Some(text),
                        },
                    )
                }
            };
            keep_fixed(cfg, &src, &current.config).map(|cfg| (cfg, src))
        })
        .await;
        let m = &self.shared.metrics;
        // Every plugin loaded, instantiated and configured with each route's config before the swap.
        let built = match parsed {
            Ok(Ok((cfg, src))) => RuntimeBuilder::new(&self.shared.plugins, metrics)
                .replacing(previous)
                .build(cfg, &src)
                .await
                .map(|b| (b.runtime, b.plugins))
                .map_err(ReloadError::Config),
            Ok(Err(e)) => Err(ReloadError::Config(e)),
            Err(e) => Err(ReloadError::Internal(e.to_string())),
        };
        match built {
            Ok((mut rt, plugins)) => {
                let message = format!(
                    "applied: {} routes, {} upstreams ({} kept with their connections and health); {plugins}",
                    rt.config.routes.len(),
                    rt.upstreams.len(),
                    rt.kept_upstreams().len()
                );
                // One reload at a time (`serial`): nothing else moves the generation meanwhile.
                let generation = self.generation() + 1;
                rt.generation = generation;
                let new = Arc::new(rt);
                self.shared.runtime.store(new.clone());
                // Tunnels of requests that loaded an older config get the drain timeout to finish.
                self.shared
                    .tunnels
                    .retire(generation, new.config.server.drain_timeout.0);
                new.start(m);
                self.generation.store(generation, Ordering::SeqCst);
                m.reloads_ok.fetch_add(1, Ordering::Relaxed);
                m.last_reload_ok.store(true, Ordering::Relaxed);
                m.last_reload_success_unix
                    .store(unix_ms() / 1000, Ordering::Relaxed);
                tracing::info!(%trigger, generation, "config reloaded: {message}");
                Ok(self.record(trigger, "ok", message))
            }
            Err(e) => {
                m.reloads_failed.fetch_add(1, Ordering::Relaxed);
                m.last_reload_ok.store(false, Ordering::Relaxed);
                // One line, even when the cause spans several (a plugin that trapped while
                // configuring a route brings its stderr and backtrace): the report keeps them all.
                let error = one_line(&e.to_string());
                tracing::warn!(%trigger, %error, "config reload failed; the running config stays");
                self.record(trigger, "error", e.to_string());
                Err(e)
            }
        }
    }

    fn record(&self, trigger: Trigger, result: &'static str, message: String) -> Report {
        let report = Report {
            trigger,
            result,
            at_unix_ms: unix_ms(),
            message,
            generation: self.generation(),
        };
        *self.last.lock().unwrap() = Some(report.clone());
        report
    }

    /// Watches the config file and reloads it when its content changes: its size and modification
    /// time are checked every `interval`; a change must hold still for `debounce` and change the
    /// content's sha256 to trigger a reload. A missing file is waited for; the running config stays.
    pub fn watch(
        self: &Arc<Self>,
        interval: Duration,
        debounce: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let file = this.file.clone();
            let mut seen = stats(&this.watched_files()).await;
            let mut seen_hash = content_hash(&this.watched_files()).await;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let files = this.watched_files();
                let mut now = stats(&files).await;
                if now.first().is_none_or(Option::is_none) || now == seen {
                    continue;
                }
                loop {
                    tokio::time::sleep(debounce).await;
                    let again = stats(&files).await;
                    if again == now {
                        break;
                    }
                    now = again;
                }
                if now.first().is_none_or(Option::is_none) {
                    continue;
                }
                seen = now;
                let hash = content_hash(&files).await;
                if hash == seen_hash {
                    continue;
                }
                seen_hash = hash;
                tracing::info!(file = %file.display(), "config file or a file it names changed; reloading");
                // The outcome is logged, counted and recorded by `apply`.
                let _ = this.reload_file(Trigger::File).await;
            }
        })
    }

    /// The config file, then every file the running config names: TLS certificates, keys and CA
    /// bundles, and plugin modules (relative paths resolved against the config file's folder).
    fn watched_files(&self) -> Vec<PathBuf> {
        let rt = self.shared.runtime.load();
        let base = self.file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let at = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let mut files = vec![self.file.clone()];
        for l in &rt.config.listeners {
            if let Some(t) = &l.tls {
                for c in &t.certificates {
                    files.push(at(&c.cert));
                    files.push(at(&c.key));
                }
                if let Some(a) = &t.client_auth {
                    files.push(at(&a.ca));
                }
            }
        }
        for u in &rt.config.upstreams {
            if let Some(t) = &u.tls {
                files.extend(t.ca.as_deref().map(at));
                if let Some(c) = &t.client_cert {
                    files.push(at(&c.cert));
                    files.push(at(&c.key));
                }
            }
        }
        files.extend(
            rt.config
                .plugins
                .iter()
                .filter_map(|p| p.path.as_deref().map(at)),
        );
        // Consumers' secrets kept in files: a rotated key or password takes effect (and a revoked
        // one stops working) without a manual reload.
        files.extend(
            crate::config::consumers::secret_files(&rt.config.consumers).map(|p| at(Path::new(p))),
        );
        // Redis passwords kept in files: a rotated one reconnects with it.
        files.extend(
            crate::config::stores::secret_files(&rt.config.kv_namespaces).map(|p| at(Path::new(p))),
        );
        files
    }
}

/// Size and modification time of each file (None for one that cannot be read).
async fn stats(paths: &[PathBuf]) -> Vec<Option<(u64, Option<SystemTime>)>> {
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        out.push(stat(p).await);
    }
    out
}

/// One hash over the contents of all the files (a missing file counts as empty).
async fn content_hash(paths: &[PathBuf]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in paths {
        let bytes = tokio::fs::read(p).await.unwrap_or_default();
        h.update(Sha256::digest(&bytes));
    }
    h.finalize().into()
}

/// Size and modification time of a file, if it can be read.
async fn stat(path: &Path) -> Option<(u64, Option<SystemTime>)> {
    let m = tokio::fs::metadata(path).await.ok()?;
    Some((m.len(), m.modified().ok()))
}

/// `text` on one line: its lines trimmed and joined by ` | `.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Refuses changes that need a restart (listeners, the admin API, the log format). A token written as
/// `<redacted>` (as `/config` shows it) means the running token, so `/config` can be edited and sent
/// back with `PUT /config`.
fn keep_fixed(mut cfg: Config, src: &Source, running: &Config) -> Result<Config, ConfigError> {
    if cfg.admin.token.as_deref() == Some("<redacted>") {
        cfg.admin.token = running.admin.token.clone();
    }
    for (i, l) in cfg.listeners.iter().enumerate() {
        let Some(old) = running.listeners.iter().find(|o| o.name == l.name) else {
            return Err(located(
                src,
                &format!("listeners[{i}].name"),
                format!(
                    "listener `{}` is new; listeners cannot change on reload; {RESTART}",
                    l.name
                ),
            ));
        };
        if old.address != l.address {
            return Err(located(
                src,
                &format!("listeners[{i}].address"),
                format!(
                    "the address of listener `{}` changed from `{}` to `{}`; listeners cannot change on reload; {RESTART}",
                    l.name, old.address, l.address
                ),
            ));
        }
        if old.limits != l.limits {
            let which = first_difference(&old.limits, &l.limits);
            return Err(located(
                src,
                &format!("listeners[{i}].limits.{which}"),
                format!(
                    "the limits of listener `{}` changed; listeners cannot change on reload; {RESTART}",
                    l.name
                ),
            ));
        }
    }
    if let Some(gone) = running
        .listeners
        .iter()
        .find(|o| !cfg.listeners.iter().any(|l| l.name == o.name))
    {
        return Err(located(
            src,
            "listeners",
            format!(
                "listener `{}` was removed; listeners cannot change on reload; {RESTART}",
                gone.name
            ),
        ));
    }
    if cfg.admin.address != running.admin.address {
        return Err(located(
            src,
            "admin.address",
            format!("the admin API cannot move on reload; {RESTART}"),
        ));
    }
    if cfg.admin.token != running.admin.token {
        return Err(located(
            src,
            "admin.token",
            format!("the admin token cannot change on reload; {RESTART}"),
        ));
    }
    if cfg.server.cache_dir != running.server.cache_dir {
        return Err(located(
            src,
            "server.cache_dir",
            format!("the cache directory cannot change on reload; {RESTART}"),
        ));
    }
    if cfg.server.log_format != running.server.log_format {
        return Err(located(
            src,
            "server.log_format",
            format!("the log format cannot change on reload; {RESTART}"),
        ));
    }
    Ok(cfg)
}

/// The first field (in serialized form) in which two values differ.
fn first_difference<T: Serialize>(a: &T, b: &T) -> String {
    let (a, b) = (serde_json::to_value(a), serde_json::to_value(b));
    if let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (a, b) {
        if let Some((k, _)) = a.iter().find(|(k, v)| b.get(*k) != Some(*v)) {
            return k.clone();
        }
    }
    String::new()
}

/// A config error located at `field`, or at the closest enclosing field written in the text (a field
/// left to its default is not in the text).
fn located(src: &Source, field: &str, message: String) -> ConfigError {
    let field = field.trim_end_matches('.');
    let mut err = field_error(&src.path, src.text.as_deref(), field, message);
    let mut at = field;
    while err.location.is_none() {
        let Some(i) = at.rfind(['.', '[']) else {
            break;
        };
        at = &at[..i];
        err.location = field_error(&src.path, src.text.as_deref(), at, String::new()).location;
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> (Config, Source) {
        let path = Path::new("gw.yaml");
        let cfg = Config::parse(path, yaml).unwrap();
        let src = Source {
            path: path.into(),
            text: Some(yaml.into()),
        };
        (cfg, src)
    }

    const BASE: &str = "listeners:\n  - name: main\n    address: 127.0.0.1:8080\n";

    fn refused(new: &str) -> ConfigError {
        let (running, _) = parse(BASE);
        let (cfg, src) = parse(new);
        keep_fixed(cfg, &src, &running).expect_err(new)
    }

    #[test]
    fn listener_changes_are_refused_with_the_field() {
        let e = refused("listeners:\n  - name: main\n    address: 127.0.0.1:8081\n");
        assert_eq!(e.field, "listeners[0].address");
        assert_eq!(e.location, Some((3, 5)));
        assert!(e.message.contains("restart"), "{e}");
        let e = refused(&format!("{BASE}    limits: {{max_connections: 5}}\n"));
        assert_eq!(e.field, "listeners[0].limits.max_connections");
        assert_eq!(e.location.map(|l| l.0), Some(4));
        let e = refused(&format!(
            "{BASE}  - name: extra\n    address: 127.0.0.1:8082\n"
        ));
        assert_eq!(e.field, "listeners[1].name");
        assert!(e.message.contains("`extra` is new"), "{e}");
        let e = refused("listeners:\n  - name: other\n    address: 127.0.0.1:8080\n");
        assert!(e.message.contains("`other` is new"), "{e}");
        let e = refused(&format!("{BASE}admin: {{address: 127.0.0.1:9999}}\n"));
        assert_eq!(e.field, "admin.address");
        let e = refused(&format!("{BASE}server: {{log_format: json}}\n"));
        assert_eq!(e.field, "server.log_format");
        let e = refused(&format!("{BASE}server: {{cache_dir: /tmp/other}}\n"));
        assert_eq!(e.field, "server.cache_dir");
        assert_eq!(e.location.map(|l| l.0), Some(4));
    }

    #[test]
    fn routes_may_change_and_a_redacted_token_means_the_running_one() {
        let (running, _) = parse(&format!(
            "{BASE}admin: {{address: 127.0.0.1:9901, token: t0k}}\n"
        ));
        let (cfg, src) = parse(&format!(
            "{BASE}admin: {{address: 127.0.0.1:9901, token: <redacted>}}\nroutes:\n  - name: r\n    direct_response: {{}}\n"
        ));
        let cfg = keep_fixed(cfg, &src, &running).unwrap();
        assert_eq!(cfg.admin.token.as_deref(), Some("t0k"));
        let (cfg, src) = parse(&format!(
            "{BASE}admin: {{address: 127.0.0.1:9901, token: other}}\n"
        ));
        assert_eq!(
            keep_fixed(cfg, &src, &running).unwrap_err().field,
            "admin.token"
        );
    }
}
