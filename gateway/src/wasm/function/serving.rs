//! The serving config's functions: loading them on a config (re)load (a function whose file and
//! settings did not change is kept, warm instances and all), attaching them to the routes that name
//! them, and what `/plugins` and `/metrics` show of them.

use super::{FunctionStats, LoadedFunction, Resolver};
use crate::config::functions::Grant;
use crate::config::{ConfigError, RetryOn};
use crate::metrics::Exposition;
use crate::plugin_source;
use crate::runtime::{Runtime, Source};
use crate::wasm::engine::{Compiled, Origin};
use crate::wasm::WasmEngine;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The functions of the serving config, and every function's figures (kept across reloads).
#[derive(Default)]
pub struct Functions {
    serving: Mutex<Vec<Serving>>,
    stats: Mutex<BTreeMap<String, Arc<FunctionStats>>>,
}

#[derive(Clone)]
struct Serving {
    function: Arc<LoadedFunction>,
    /// How it was had on the last reload: `loaded` (and where its code came from) or `reused`.
    last: serde_json::Value,
}

impl Functions {
    /// Loads `rt`'s functions (taking over unchanged ones) and attaches them to its routes. Nothing
    /// changes until all loaded; errors name the field (`functions[i].path`, `routes[i].function`).
    pub async fn attach(
        &self,
        src: &Source,
        rt: &Runtime,
        engine: &Arc<WasmEngine>,
        cache_dir: Option<&Path>,
        resolve: &Resolver,
    ) -> Result<(), ConfigError> {
        let cfg = &rt.config;
        let previous = self.serving.lock().unwrap().clone();
        let mut serving: Vec<Serving> = Vec::with_capacity(cfg.functions.len());
        for (i, f) in cfg.functions.iter().enumerate() {
            let at = |field: &str| format!("functions[{i}].{field}");
            if serving.iter().any(|s| s.function.name() == f.name) {
                return Err(src.err(
                    at("name"),
                    format!("function `{}` is defined twice", f.name),
                ));
            }
            for (j, g) in f.upstreams.iter().enumerate() {
                let g = g.upstream();
                if !cfg.upstreams.iter().any(|u| u.name == g) {
                    return Err(src.err(
                        at(&format!("upstreams[{j}]")),
                        format!("unknown upstream `{g}`; define it under `upstreams`"),
                    ));
                }
                if f.upstreams[..j].iter().any(|h| h.upstream() == g) {
                    return Err(src.err(
                        at(&format!("upstreams[{j}]")),
                        format!("upstream `{g}` is granted twice"),
                    ));
                }
                // A function's tries end in a status, a connect failure, a reset or a timeout:
                // its answers are not read as gRPC, so a gRPC condition would never fire.
                let on = match &f.upstreams[j] {
                    Grant::Upstream(o) => o.retry.as_ref().map_or(&[][..], |r| &r.on[..]),
                    Grant::Name(_) => &[],
                };
                let grpc = on.iter().enumerate().find_map(|(k, c)| match c {
                    RetryOn::Grpc(code) => Some((k, code.name())),
                    _ => None,
                });
                if let Some((k, code)) = grpc {
                    return Err(src.err(
                        at(&format!("upstreams[{j}].retry.on[{k}]")),
                        format!(
                            "`grpc:{code}`: gRPC retry conditions do not apply to a function's requests (their answers are not read as gRPC); use connect_failure, reset, timeout or a status code"
                        ),
                    ));
                }
            }
            let source = f.source();
            let prefix = format!("functions[{i}]");
            let wasm = match &f.path {
                Some(_) => Some(plugin_source::read_path_at(&source, &prefix, src).await?),
                None => None,
            };
            let sha256 = match &wasm {
                Some(w) => w.sha256.clone(),
                None => plugin_source::pinned(&source).unwrap_or_default(),
            };
            let dirs: Vec<(String, PathBuf)> = f
                .dirs
                .iter()
                .map(|(guest, host)| (guest.clone(), plugin_source::resolve(src, host)))
                .collect();
            let same = previous.iter().find(|s| {
                let old = s.function.config();
                s.function.name() == f.name
                    && s.function.sha256() == sha256
                    && same_settings(old, f)
                    && s.function.dirs == dirs
            });
            if let Some(old) = same {
                serving.push(Serving {
                    function: old.function.clone(),
                    last: serde_json::json!({"action": "reused", "message": "unchanged: kept with its instances"}),
                });
                continue;
            }
            let wasm = match wasm {
                Some(w) => w,
                None => plugin_source::fetch_url_at(&source, &prefix, src, cache_dir).await?,
            };
            let field = at(if f.path.is_some() { "path" } else { "url" });
            if !wasm.bytes.starts_with(b"\0asm") || wasm.bytes.get(6..8) != Some(&[1, 0]) {
                return Err(src.err(
                    field,
                    format!(
                        "function `{}`: not a WebAssembly component (a function is a wasi:http/proxy component)",
                        f.name
                    ),
                ));
            }
            let (e, name, bytes) = (engine.clone(), f.name.clone(), wasm.bytes.clone());
            let compiled = tokio::task::spawn_blocking(move || e.compiled(&name, &bytes, true))
                .await
                .map_err(|e| src.err(&field, format!("the compiler thread failed: {e}")))?
                .map_err(|e| src.err(&field, e.to_string()))?;
            let (Compiled::Component(component), _, origin) = compiled else {
                return Err(src.err(&field, "not a component"));
            };
            let stats = self
                .stats
                .lock()
                .unwrap()
                .entry(f.name.clone())
                .or_default()
                .clone();
            let function = LoadedFunction::new(
                f,
                wasm.sha256.clone(),
                &component,
                engine.clone(),
                dirs,
                resolve.clone(),
                stats,
            )
            .map_err(|e| {
                let field = match e {
                    crate::wasm::PluginError::Unsupported { ref reason, .. }
                        if reason.starts_with("directory") =>
                    {
                        at("dirs")
                    }
                    _ => field.clone(),
                };
                src.err(field, e.to_string())
            })?;
            let how = match origin {
                Origin::Compiled => "compiled",
                Origin::Memory => "compiled code taken from the memory cache",
                Origin::Disk => "compiled code loaded from the disk cache",
            };
            tracing::info!(function = %f.name, sha256 = %wasm.sha256, "function loaded: {how}");
            serving.push(Serving {
                function,
                last: serde_json::json!({"action": "loaded", "compiled": origin, "message": how}),
            });
        }
        let by_name: HashMap<&str, &Arc<LoadedFunction>> = serving
            .iter()
            .map(|s| (s.function.name(), &s.function))
            .collect();
        for (i, r) in cfg.routes.iter().enumerate() {
            if let Some(name) = &r.function {
                if !by_name.contains_key(name.as_str()) {
                    return Err(src.err(
                        format!("routes[{i}].function"),
                        format!("unknown function `{name}`; define it under `functions`"),
                    ));
                }
            }
        }
        rt.function_slots(|slot| {
            if let Some(f) = by_name.get(slot.name()) {
                slot.attach((*f).clone());
            }
        });
        *self.serving.lock().unwrap() = serving;
        Ok(())
    }

    /// Forgets the serving functions (a config without any).
    pub fn clear(&self) {
        self.serving.lock().unwrap().clear();
    }

    /// The serving functions as `GET /plugins` shows them (under `functions`).
    pub fn describe(&self, rt: &Runtime) -> Vec<serde_json::Value> {
        let serving = self.serving.lock().unwrap().clone();
        serving
            .iter()
            .map(|s| {
                let f = &s.function;
                let cfg = f.config();
                let health = f.health().snapshot();
                let stats = f.stats();
                let routes: Vec<&str> = rt
                    .config
                    .routes
                    .iter()
                    .filter(|r| r.function.as_deref() == Some(f.name()))
                    .map(|r| r.name.as_str())
                    .collect();
                let source = match (&cfg.path, &cfg.url) {
                    (Some(path), _) => serde_json::json!({"path": path}),
                    (None, url) => serde_json::json!({
                        "url": url.as_deref().map(crate::config::redact::shown_url)
                    }),
                };
                let (count, seconds) = stats.duration.count_and_sum();
                serde_json::json!({
                    "name": f.name(),
                    "kind": "function",
                    "sha256": f.sha256(),
                    "source": source,
                    "instance_mode": cfg.instance_mode,
                    "routes": routes,
                    "upstreams": cfg.upstreams,
                    "instances": f.instances(),
                    "instances_created": health.instances_created,
                    "instances_discarded": health.instances_discarded,
                    "memory_peak_bytes": health.memory_peak,
                    "requests": stats.requests.load(std::sync::atomic::Ordering::Relaxed),
                    "failures": stats.failures.load(std::sync::atomic::Ordering::Relaxed),
                    "busy": stats.busy.load(std::sync::atomic::Ordering::Relaxed),
                    "return_waits": stats.return_waits.load(std::sync::atomic::Ordering::Relaxed),
                    "return_wait_timeouts": stats.return_wait_timeouts.load(std::sync::atomic::Ordering::Relaxed),
                    "traps": health.traps,
                    "cpu_limits": health.cpu_limits,
                    "memory_limits": health.memory_limits,
                    "mean_ms": if count > 0 { (seconds * 1e3 / count as f64 * 1e3).round() / 1e3 } else { 0.0 },
                    "last_reload": s.last,
                })
            })
            .collect()
    }

    /// Adds the functions' families to `e`: requests, failures, requests turned away, duration,
    /// instances, and the guests' traps and limits, by function.
    pub fn expose_metrics(&self, e: &mut Exposition) {
        let stats = self.stats.lock().unwrap().clone();
        if stats.is_empty() {
            return;
        }
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let f = e.counter(
            "gateway_function_requests",
            "Requests that reached a function backend, by function.",
        );
        for (name, s) in &stats {
            f.sample(&[("function", name)], load(&s.requests));
        }
        let f = e.counter(
            "gateway_function_failures",
            "Requests a function failed (trap, limit, timeout, queue full, aborted body), by function.",
        );
        for (name, s) in &stats {
            f.sample(&[("function", name)], load(&s.failures));
        }
        let f = e.counter(
            "gateway_function_busy",
            "Requests turned away (503) because a function's concurrency stayed full for its queue timeout, by function.",
        );
        for (name, s) in &stats {
            f.sample(&[("function", name)], load(&s.busy));
        }
        let f = e.histogram(
            "gateway_function_duration_seconds",
            "Time from a request's arrival at a function to the end of its response body, by function.",
        );
        for (name, s) in &stats {
            if s.duration.count_and_sum().0 > 0 {
                f.sample(&[("function", name)], s.duration.snapshot());
            }
        }
        let serving = self.serving.lock().unwrap().clone();
        let f = e.gauge(
            "gateway_function_instances",
            "Instances of a function alive now, by function.",
        );
        for s in &serving {
            f.sample(
                &[("function", s.function.name())],
                s.function.instances().live as u64,
            );
        }
        let f = e.gauge(
            "gateway_function_requests_in_flight",
            "Requests a function is serving now, by function.",
        );
        for s in &serving {
            f.sample(
                &[("function", s.function.name())],
                s.function.instances().in_flight as u64,
            );
        }
        type Field = fn(&crate::wasm::HealthSnapshot) -> u64;
        let counters: [(&str, &str, Field); 4] = [
            (
                "gateway_function_instances_created",
                "Instances of a function started, by function.",
                |h| h.instances_created,
            ),
            (
                "gateway_function_traps",
                "Guest traps of a function, by function.",
                |h| h.traps,
            ),
            (
                "gateway_function_cpu_limit",
                "Requests stopped by a function's CPU limit, by function.",
                |h| h.cpu_limits,
            ),
            (
                "gateway_function_memory_limit",
                "Requests stopped by a function's memory limit, by function.",
                |h| h.memory_limits,
            ),
        ];
        let snaps: Vec<_> = serving
            .iter()
            .map(|s| (s.function.name(), s.function.health().snapshot()))
            .collect();
        for (name, help, read) in counters {
            let f = e.counter(name, help);
            for (function, snap) in &snaps {
                f.sample(&[("function", function)], read(snap));
            }
        }
    }
}

/// Whether two configs of a function are the same but for where its file comes from.
fn same_settings(
    a: &crate::config::functions::Function,
    b: &crate::config::functions::Function,
) -> bool {
    let strip = |f: &crate::config::functions::Function| crate::config::functions::Function {
        path: None,
        url: None,
        sha256: None,
        ca: None,
        ..f.clone()
    };
    strip(a) == strip(b)
}
