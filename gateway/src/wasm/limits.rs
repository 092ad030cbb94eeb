//! The store limiter that caps a plugin's linear memory and tables, and remembers that it said no so a
//! following trap is reported as a memory limit.

/// Most table elements an instance may have. Default: 100 000.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Caps memory growth of one instance.
#[derive(Debug)]
pub struct StoreLimiter {
    memory_cap: usize,
    hit: bool,
}

impl StoreLimiter {
    /// A limiter allowing `memory_cap` bytes of linear memory.
    pub fn new(memory_cap: u64) -> StoreLimiter {
        StoreLimiter {
            memory_cap: usize::try_from(memory_cap).unwrap_or(usize::MAX),
            hit: false,
        }
    }

    /// Whether a growth was refused since the last `reset`.
    pub fn hit(&self) -> bool {
        self.hit
    }

    /// Forgets earlier refusals (before each call into the guest).
    pub fn reset(&mut self) {
        self.hit = false;
    }
}

impl wasmtime::ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
