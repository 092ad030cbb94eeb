//! The one `wasmtime::Engine` of the process: pooling allocator, epoch interruption driven by a ticker
//! thread, fiber-based async calls, copy-on-write memory images, and an on-disk cache of compiled code
//! keyed by the module's sha256 and the engine's settings.

use super::PluginError;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, Module, OptLevel, PoolingAllocationConfig,
};

/// How often the ticker advances the engine's epoch; CPU limits are counted in these ticks. Default: 5ms.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Native stack a guest may use before it traps with a stack overflow. Default: 512KiB.
pub const MAX_WASM_STACK: usize = 512 << 10;

/// Stack of the fiber each async call runs on; must exceed [`MAX_WASM_STACK`] with room for host
/// functions. Default: 2MiB.
pub const ASYNC_STACK: usize = 2 << 20;

/// Settings of the process's engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where compiled modules are cached; `None` disables the cache. Default: `None`.
    pub cache_dir: Option<PathBuf>,
    /// Instances the pooling allocator holds across all plugins. Default: 1000.
    pub max_instances: u32,
    /// Largest linear memory any instance can have (the per-plugin limit is enforced below it).
    /// Default: 4GiB.
    pub max_memory: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            cache_dir: None,
            max_instances: 1000,
            max_memory: 4 << 30,
        }
    }
}

/// The process's engine with its ticker and compiled-code cache.
pub struct WasmEngine {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    settings_key: String,
    compilations: AtomicU64,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine")
            .field("cache_dir", &self.cache_dir)
            .field("settings_key", &self.settings_key)
            .finish_non_exhaustive()
    }
}

impl WasmEngine {
    /// Builds the engine and starts its epoch ticker.
    pub fn new(options: EngineOptions) -> Result<Arc<WasmEngine>, PluginError> {
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK)
            .async_stack_size(ASYNC_STACK)
            .memory_init_cow(true)
            .cranelift_opt_level(OptLevel::Speed);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(options.max_instances)
            .total_memories(options.max_instances)
            .total_tables(options.max_instances)
            .total_stacks(options.max_instances)
            .total_component_instances(options.max_instances)
            .max_memory_size(usize::try_from(options.max_memory).unwrap_or(usize::MAX));
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| PluginError::Engine(format!("{e:#}")))?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let settings_key = format!("{:016x}", hasher.finish());

        if let Some(dir) = &options.cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| PluginError::Cache {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
        }

        let stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let ticker_stop = stop.clone();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(|e| PluginError::Engine(format!("epoch ticker: {e}")))?;

        Ok(Arc::new(WasmEngine {
            engine,
            cache_dir: options.cache_dir,
            settings_key,
            compilations: AtomicU64::new(0),
            stop,
        }))
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// How many modules this engine compiled (rather than loading them from the cache).
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }

    /// Epoch ticks that make up `cpu` (at least one more than the whole ticks, so a deadline is never
    /// shorter than asked).
    pub fn ticks_for(cpu: Duration) -> u64 {
        (cpu.as_nanos() / EPOCH_TICK.as_nanos()).saturating_add(1) as u64
    }

    /// Compiles `bytes`, or loads the compiled form from the cache.
    pub fn module(&self, plugin: &str, bytes: &[u8]) -> Result<(Module, String), PluginError> {
        let sha256 = hex(&Sha256::digest(bytes));
        let Some(dir) = &self.cache_dir else {
            return Ok((self.compile(plugin, bytes)?, sha256));
        };
        let path = dir.join(format!("{sha256}-{}.cwasm", self.settings_key));
        if path.is_file() {
            match self.load_cached(&path) {
                Ok(module) => return Ok((module, sha256)),
                Err(e) => tracing::warn!(
                    plugin,
                    path = %path.display(),
                    "cached module unusable, compiling again: {e:#}"
                ),
            }
        }
        let module = self.compile(plugin, bytes)?;
        if let Err(e) = write_atomically(&path, &module) {
            tracing::warn!(plugin, path = %path.display(), "could not cache compiled module: {e}");
        }
        Ok((module, sha256))
    }

    /// Compiles the component `bytes`, or loads the compiled form from the cache (as [`Self::module`]).
    pub fn component(
        &self,
        plugin: &str,
        bytes: &[u8],
    ) -> Result<(Component, String), PluginError> {
        let sha256 = hex(&Sha256::digest(bytes));
        let compile = || {
            self.compilations.fetch_add(1, Ordering::Relaxed);
            Component::new(&self.engine, bytes).map_err(|e| PluginError::Compile {
                plugin: plugin.to_string(),
                reason: format!("{e:#}"),
            })
        };
        let Some(dir) = &self.cache_dir else {
            return Ok((compile()?, sha256));
        };
        let path = dir.join(format!("{sha256}-{}.component.cwasm", self.settings_key));
        if path.is_file() {
            #[allow(unsafe_code)]
            // SAFETY: as in `load_cached`: the file is this build's own `Component::serialize` output,
            // named by the source's sha256 and the engine's compatibility hash.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => return Ok((c, sha256)),
                Err(e) => tracing::warn!(
                    plugin,
                    path = %path.display(),
                    "cached component unusable, compiling again: {e:#}"
                ),
            }
        }
        let component = compile()?;
        let written = component
            .serialize()
            .map_err(|e| format!("{e:#}"))
            .and_then(|bytes| write_bytes_atomically(&path, &bytes));
        if let Err(e) = written {
            tracing::warn!(plugin, path = %path.display(), "could not cache compiled component: {e}");
        }
        Ok((component, sha256))
    }

    fn compile(&self, plugin: &str, bytes: &[u8]) -> Result<Module, PluginError> {
        self.compilations.fetch_add(1, Ordering::Relaxed);
        Module::new(&self.engine, bytes).map_err(|e| PluginError::Compile {
            plugin: plugin.to_string(),
            reason: format!("{e:#}"),
        })
    }

    #[allow(unsafe_code)]
    fn load_cached(&self, path: &Path) -> wasmtime::Result<Module> {
        // SAFETY: `deserialize_file` trusts the file to be wasmtime's own output. This file was written
        // by `write_atomically` below from `Module::serialize` of this same build of wasmtime; its name
        // holds the sha256 of the source and the engine's compatibility hash, so a file for other code or
        // other settings is never opened, and wasmtime still checks its header for version and settings.
        // The cache directory belongs to the gateway (like its binary, it must not be writable by others).
        unsafe { Module::deserialize_file(&self.engine, path) }
    }
}

impl Drop for WasmEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn write_atomically(path: &Path, module: &Module) -> Result<(), String> {
    let bytes = module.serialize().map_err(|e| format!("{e:#}"))?;
    write_bytes_atomically(path, &bytes)
}

fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
