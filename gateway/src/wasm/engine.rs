//! The one `wasmtime::Engine` of the process: pooling allocator, epoch interruption driven by a ticker
//! thread, fiber-based async calls for components (Proxy-Wasm callbacks, whose host functions never wait,
//! are called synchronously on the caller's thread), copy-on-write memory images, and caches of compiled code keyed by
//! the module's sha256: in memory (the last [`MEMORY_CACHE_ENTRIES`] used), and on disk (also keyed by
//! the engine's compatibility hash, so a restart or another build never loads code for other settings;
//! an unusable entry is compiled again and overwritten).

use super::PluginError;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// Wasm frames a trap's backtrace keeps (the innermost): enough to see past a Rust panic's dozen
/// frames of machinery into the filter. Walking frames happens only when a call traps. Default: 32.
pub const WASM_BACKTRACE_FRAMES: usize = 32;

/// Dropped instances whose memories and tables are reset (`madvise`) and whose slots go back to the
/// pool together. Default: 1, each at once. Measured with a fresh instance per request (callgrind,
/// the no-op WIT filter): batches of 4 or 16 cost 0.2-0.5 k instructions more per request, not less
/// (the pool's slots wait in the queue, so new instances take other slots, and a full pool flushes
/// it on demand); batching saves system calls, which callgrind does not count, so it stays a
/// candidate for a CPU-time measurement.
pub const DECOMMIT_BATCH_SIZE: usize = 1;

/// Bytes of a dropped instance's linear memory and of each table that are zeroed in place (kept
/// resident) instead of returned to the kernel. Default: 0, all returned. Measured: 64 KiB for
/// tables cost 7.9 k instructions more per fresh instance (the `memset` of the whole table range)
/// than the page faults it saves are worth in a callgrind count.
pub const KEEP_RESIDENT: usize = 0;

/// Function tables are filled as their entries are first used, not at instantiation. Default: true.
/// Measured: eager filling cost a fresh instance of the no-op WIT filter 44 k instructions more
/// (167 k against 123 k per request): a Rust component's tables hold every function that may be
/// called indirectly, and a request calls few of them.
pub const TABLE_LAZY_INIT: bool = true;

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
    /// Keep a module's debug info (DWARF) with its compiled code, so that a trap's backtrace names
    /// the file and line of each frame that has them. Costs compile time and memory for modules
    /// built with debug info (the built-in plugins are built without). Default: false; `gateway
    /// plugin test` turns it on, `gateway run` when `GATEWAY_WASM_BACKTRACE_DETAILS=1`.
    pub debug_info: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            cache_dir: None,
            max_instances: 1000,
            max_memory: 4 << 30,
            debug_info: false,
        }
    }
}

/// The process's engine with its ticker and compiled-code cache.
pub struct WasmEngine {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    settings_key: String,
    compilations: AtomicU64,
    disk_hits: AtomicU64,
    memory_hits: AtomicU64,
    memory: Mutex<MemoryCache>,
    stop: Arc<AtomicBool>,
}

/// Compiled code: a core module (Proxy-Wasm) or a component (the WIT world).
#[derive(Clone)]
pub enum Compiled {
    /// A core module.
    Module(Module),
    /// A component.
    Component(Component),
}

/// Where compiled code came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Compiled now.
    Compiled,
    /// The memory cache: compiled for an earlier config of this process.
    Memory,
    /// The disk cache: compiled by an earlier process (or engine) with the same settings.
    Disk,
}

/// Compiled code kept in memory, by sha256 and kind: enough for the plugins of the serving config and
/// a few earlier versions (switching back and forth between versions compiles nothing).
pub const MEMORY_CACHE_ENTRIES: usize = 16;

/// The memory cache: the most recently used [`MEMORY_CACHE_ENTRIES`] entries.
#[derive(Default)]
struct MemoryCache {
    entries: std::collections::VecDeque<((String, bool), Compiled)>,
}

impl MemoryCache {
    fn get(&mut self, key: &(String, bool)) -> Option<Compiled> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        let entry = self.entries.remove(i)?;
        let c = entry.1.clone();
        self.entries.push_back(entry);
        Some(c)
    }

    fn put(&mut self, key: (String, bool), c: Compiled) {
        self.entries.retain(|(k, _)| *k != key);
        self.entries.push_back((key, c));
        while self.entries.len() > MEMORY_CACHE_ENTRIES {
            self.entries.pop_front();
        }
    }
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
            .cranelift_opt_level(OptLevel::Speed)
            .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(WASM_BACKTRACE_FRAMES))
            // Function names come from the name section at no cost. File and line take the module's
            // DWARF kept with the compiled code: only when asked (`debug_info`), whatever
            // WASMTIME_BACKTRACE_DETAILS says, so that variable cannot make compiling slower or
            // change the disk cache's key.
            .wasm_backtrace_details(match options.debug_info {
                true => wasmtime::WasmBacktraceDetails::Enable,
                false => wasmtime::WasmBacktraceDetails::Disable,
            });
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(options.max_instances)
            .total_memories(options.max_instances)
            .total_tables(options.max_instances)
            .total_stacks(options.max_instances)
            .total_component_instances(options.max_instances)
            .max_memory_size(usize::try_from(options.max_memory).unwrap_or(usize::MAX))
            .decommit_batch_size(DECOMMIT_BATCH_SIZE)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);
        config.table_lazy_init(TABLE_LAZY_INIT);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| PluginError::Engine(format!("{e:#}")))?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let settings_key = format!("{:016x}", hasher.finish());

        if let Some(dir) = &options.cache_dir {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(|e| PluginError::Cache {
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
            disk_hits: AtomicU64::new(0),
            memory_hits: AtomicU64::new(0),
            memory: Mutex::new(MemoryCache::default()),
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

    /// Compiles `bytes`, or takes the compiled form from the memory or disk cache.
    pub fn module(&self, plugin: &str, bytes: &[u8]) -> Result<(Module, String), PluginError> {
        match self.compiled(plugin, bytes, false)? {
            (Compiled::Module(m), sha256, _) => Ok((m, sha256)),
            (Compiled::Component(_), ..) => unreachable!("asked for a module"),
        }
    }

    /// Compiles the component `bytes`, or takes the compiled form from the memory or disk cache (as
    /// [`Self::module`]).
    pub fn component(
        &self,
        plugin: &str,
        bytes: &[u8],
    ) -> Result<(Component, String), PluginError> {
        match self.compiled(plugin, bytes, true)? {
            (Compiled::Component(c), sha256, _) => Ok((c, sha256)),
            (Compiled::Module(_), ..) => unreachable!("asked for a component"),
        }
    }

    /// How many compiled modules or components came from the disk cache.
    pub fn disk_cache_hits(&self) -> u64 {
        self.disk_hits.load(Ordering::Relaxed)
    }

    /// How many compiled modules or components came from the memory cache.
    pub fn memory_cache_hits(&self) -> u64 {
        self.memory_hits.load(Ordering::Relaxed)
    }

    /// The compiled form of `bytes` (a component when `component`), its sha256 in hex, and where it
    /// came from: the memory cache (code compiled for an earlier config), the disk cache (code compiled
    /// by an earlier process), or the compiler. Compiling takes long: call it off the async workers.
    pub fn compiled(
        &self,
        plugin: &str,
        bytes: &[u8],
        component: bool,
    ) -> Result<(Compiled, String, Origin), PluginError> {
        let sha256 = hex(&Sha256::digest(bytes));
        let key = (sha256.clone(), component);
        if let Some(c) = self.memory.lock().unwrap().get(&key) {
            self.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok((c, sha256, Origin::Memory));
        }
        let (compiled, origin) = self.compiled_uncached(plugin, bytes, &sha256, component)?;
        self.memory.lock().unwrap().put(key, compiled.clone());
        Ok((compiled, sha256, origin))
    }

    fn compiled_uncached(
        &self,
        plugin: &str,
        bytes: &[u8],
        sha256: &str,
        component: bool,
    ) -> Result<(Compiled, Origin), PluginError> {
        let compile = || -> Result<Compiled, PluginError> {
            self.compilations.fetch_add(1, Ordering::Relaxed);
            let compiled = if component {
                Component::new(&self.engine, bytes).map(Compiled::Component)
            } else {
                Module::new(&self.engine, bytes).map(Compiled::Module)
            };
            compiled.map_err(|e| {
                // wasmtime's reasons can span lines (pretty-printed byte arrays): one line each.
                let reason = format!("{e:#}")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                PluginError::Compile {
                    plugin: plugin.to_string(),
                    reason,
                }
            })
        };
        let Some(dir) = &self.cache_dir else {
            return Ok((compile()?, Origin::Compiled));
        };
        let kind = if component { ".component" } else { "" };
        let path = dir.join(format!("{sha256}-{}{kind}.cwasm", self.settings_key));
        if path.is_file() {
            match self.load_cached(&path, component) {
                Ok(c) => {
                    self.disk_hits.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(plugin, path = %path.display(), "compiled plugin code loaded from the disk cache");
                    return Ok((c, Origin::Disk));
                }
                Err(e) => tracing::warn!(
                    plugin,
                    path = %path.display(),
                    "cached compiled code unusable, compiling again: {e:#}"
                ),
            }
        }
        let compiled = compile()?;
        let serialized = match &compiled {
            Compiled::Module(m) => m.serialize(),
            Compiled::Component(c) => c.serialize(),
        };
        let written = serialized
            .map_err(|e| format!("{e:#}"))
            .and_then(|bytes| write_bytes_atomically(&path, &bytes));
        if let Err(e) = written {
            tracing::warn!(plugin, path = %path.display(), "could not cache compiled code: {e}");
        }
        Ok((compiled, Origin::Compiled))
    }

    #[allow(unsafe_code)]
    fn load_cached(&self, path: &Path, component: bool) -> wasmtime::Result<Compiled> {
        if let Some(dir) = path.parent() {
            trusted(&std::fs::metadata(dir)?, dir)?;
        }
        let bytes = read_trusted(path)?;
        // SAFETY: `deserialize` trusts the bytes to be wasmtime's own output, and runs the machine
        // code in them. These were written by `write_bytes_atomically` from `Module::serialize` (or
        // `Component::serialize`) of this same build of wasmtime; the name holds the sha256 of the
        // source and the engine's compatibility hash, so a file for other code or other settings is
        // never opened, and wasmtime still checks the header for version and settings. The file and
        // its directory must belong to the gateway's user and be writable by nobody else, and the
        // file is read through one handle that does not follow symlinks (`read_trusted`).
        unsafe {
            if component {
                Component::deserialize(&self.engine, &bytes).map(Compiled::Component)
            } else {
                Module::deserialize(&self.engine, &bytes).map(Compiled::Module)
            }
        }
    }
}

impl Drop for WasmEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Compiled code from the cache is executed as it is, so only a file or directory that belongs to
/// the gateway's user and that nobody else may write is trusted; anything else is compiled again.
fn trusted(meta: &std::fs::Metadata, path: &Path) -> wasmtime::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let euid = effective_uid();
        if meta.uid() != euid {
            wasmtime::bail!(
                "{} belongs to uid {}, not to the gateway's user ({euid}); cached code there is not trusted",
                path.display(),
                meta.uid()
            );
        }
        if meta.mode() & 0o022 != 0 {
            wasmtime::bail!(
                "{} is writable by group or others (mode {:o}); cached code there is not trusted",
                path.display(),
                meta.mode() & 0o777
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (meta, path);
    Ok(())
}

#[cfg(unix)]
#[allow(unsafe_code)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Reads a cache entry through one handle that does not follow symlinks, checked with `trusted`.
fn read_trusted(path: &Path) -> wasmtime::Result<Vec<u8>> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    let mut file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        wasmtime::bail!("{} is not a regular file", path.display());
    }
    trusted(&meta, path)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Writes `path` through a new file of a random name (never an existing file or a symlink planted
/// under a predictable name) renamed over it.
fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{:016x}", rand::random::<u64>()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| e.to_string())?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.to_string());
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The smallest valid module: the magic number and version.
    const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "gateway-engine-{name}-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn engine(cache: &Path) -> Arc<WasmEngine> {
        WasmEngine::new(EngineOptions {
            cache_dir: Some(cache.to_owned()),
            max_instances: 2,
            max_memory: 1 << 20,
            ..EngineOptions::default()
        })
        .unwrap()
    }

    fn entry(cache: &Path) -> PathBuf {
        std::fs::read_dir(cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .expect("a cache entry")
    }

    fn set_mode(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn cached_code_is_used_only_when_nobody_else_can_write_it() {
        let root = scratch("trust");
        let cache = root.join("cache");
        let (_, _, origin) = engine(&cache).compiled("p", EMPTY_MODULE, false).unwrap();
        assert_eq!(origin, Origin::Compiled);
        let file = entry(&cache);

        // Owned by us, 0644 in a 0700 directory: loaded.
        let e = engine(&cache);
        assert_eq!(
            e.compiled("p", EMPTY_MODULE, false).unwrap().2,
            Origin::Disk
        );
        assert_eq!(e.compilations(), 0);

        // Group- or other-writable entry: compiled again (and rewritten, so trusted afterwards).
        for mode in [0o664, 0o646] {
            set_mode(&file, mode);
            let e = engine(&cache);
            assert_eq!(
                e.compiled("p", EMPTY_MODULE, false).unwrap().2,
                Origin::Compiled
            );
            assert_eq!(e.compilations(), 1, "mode {mode:o}");
            let file = entry(&cache);
            assert_eq!(
                std::fs::metadata(&file).unwrap().permissions().mode() & 0o022,
                0
            );
        }

        // A directory others may write: nothing in it is trusted.
        set_mode(&cache, 0o777);
        let e = engine(&cache);
        assert_eq!(
            e.compiled("p", EMPTY_MODULE, false).unwrap().2,
            Origin::Compiled
        );
        set_mode(&cache, 0o700);

        // A symlink in place of the entry is not followed.
        let file = entry(&cache);
        let elsewhere = root.join("elsewhere.cwasm");
        std::fs::rename(&file, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
        let e = engine(&cache);
        assert_eq!(
            e.compiled("p", EMPTY_MODULE, false).unwrap().2,
            Origin::Compiled
        );

        // An entry that belongs to another user (needs root to arrange).
        if effective_uid() == 0 {
            let file = entry(&cache);
            std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
            let meta = std::fs::symlink_metadata(&file).unwrap();
            let err = trusted(&meta, &file).unwrap_err().to_string();
            assert!(err.contains("belongs to uid 65534"), "{err}");
            let e = engine(&cache);
            assert_eq!(
                e.compiled("p", EMPTY_MODULE, false).unwrap().2,
                Origin::Compiled
            );
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
