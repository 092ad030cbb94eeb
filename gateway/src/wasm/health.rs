//! Per-plugin health counters, read by the admin API and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Consecutive failures after which a plugin reports as unhealthy. Default: 5.
pub const UNHEALTHY_AFTER: u64 = 5;

/// Counters of one plugin; updated by the host on every call into it.
#[derive(Debug, Default)]
pub struct PluginHealth {
    calls: AtomicU64,
    failures: AtomicU64,
    traps: AtomicU64,
    cpu_limits: AtomicU64,
    memory_limits: AtomicU64,
    consecutive_failures: AtomicU64,
    instances_created: AtomicU64,
    instances_discarded: AtomicU64,
    memory_peak: AtomicU64,
}

/// A copy of a plugin's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthSnapshot {
    /// Calls into the plugin (one per phase or callback).
    pub calls: u64,
    /// Calls that failed (any reason).
    pub failures: u64,
    /// Failures that were traps (including stack overflow and ABI violations).
    pub traps: u64,
    /// Failures that hit the CPU limit.
    pub cpu_limits: u64,
    /// Failures that hit the memory limit.
    pub memory_limits: u64,
    /// Failures since the last success.
    pub consecutive_failures: u64,
    /// VM instances started (the first one plus replacements).
    pub instances_created: u64,
    /// VM instances thrown away after a failure.
    pub instances_discarded: u64,
    /// The largest linear memory (bytes) any instance was granted.
    pub memory_peak: u64,
    /// Whether `consecutive_failures` is below [`UNHEALTHY_AFTER`].
    pub healthy: bool,
}

/// What kind of failure to count.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FailureKind {
    Trap,
    Cpu,
    Memory,
}

impl PluginHealth {
    pub(crate) fn call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn success(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    pub(crate) fn failure(&self, kind: FailureKind) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        match kind {
            FailureKind::Trap => &self.traps,
            FailureKind::Cpu => &self.cpu_limits,
            FailureKind::Memory => &self.memory_limits,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn instance_created(&self) {
        self.instances_created.fetch_add(1, Ordering::Relaxed);
    }

    /// An instance's linear memory was allowed to grow to `bytes`.
    pub(crate) fn memory_grown(&self, bytes: u64) {
        self.memory_peak.fetch_max(bytes, Ordering::Relaxed);
    }

    pub(crate) fn instance_discarded(&self) {
        self.instances_discarded.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> HealthSnapshot {
        let consecutive_failures = self.consecutive_failures.load(Ordering::Relaxed);
        HealthSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            traps: self.traps.load(Ordering::Relaxed),
            cpu_limits: self.cpu_limits.load(Ordering::Relaxed),
            memory_limits: self.memory_limits.load(Ordering::Relaxed),
            consecutive_failures,
            instances_created: self.instances_created.load(Ordering::Relaxed),
            instances_discarded: self.instances_discarded.load(Ordering::Relaxed),
            memory_peak: self.memory_peak.load(Ordering::Relaxed),
            healthy: consecutive_failures < UNHEALTHY_AFTER,
        }
    }
}
