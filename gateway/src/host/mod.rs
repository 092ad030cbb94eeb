//! The host core: everything a plugin can ask of the gateway, whichever ABI it speaks. The Proxy-Wasm
//! host (`wasm::proxy_wasm`) and the gateway's WIT world both call into this one place, so shared data,
//! queues, metrics, logs and outbound HTTP (grants, request building, timeout) behave the same for
//! both. Nothing here knows of wasmtime: the ABIs translate their wire formats into these calls.

mod cache;
mod grpc;
mod handle;
mod http;
mod kv;
mod log;
mod metrics;
mod queue;
mod redis;
mod store;

pub use cache::{
    Cache, CacheKey, CacheLimits, CachedResponse, Fill, Found, Lookup, Purged, PutError,
    DEFAULT_MAX_ENTRY_SIZE as CACHE_DEFAULT_MAX_ENTRY_SIZE,
    DEFAULT_MAX_SIZE as CACHE_DEFAULT_MAX_SIZE,
};
pub use grpc::{
    code as grpc_code, GrpcCall, GrpcError, GrpcEvent, GrpcRequest,
    MAX_QUEUED_MESSAGES as GRPC_MAX_QUEUED,
};
pub use handle::{
    edit_headers, header_name, header_value, set_authority, set_path_with_query, status,
    HandleError, HeaderEdit, HttpData, Lent, Phase, SkippedHeads,
};
pub use http::{
    callout, callout_request, callout_timeout, stream_callout, CalloutError, Grants, Upstreams,
    MAX_CALLOUT_TIMEOUT,
};
pub use kv::{CasMismatch, IncrementError, SharedData, StoreError};
pub use log::{log_level, plugin_log, LogLevel};
pub use metrics::{MetricError, MetricKind, Metrics};
pub use queue::{QueueError, QueueNotify, Queues};
pub use store::{StoreConfigError, StoreSet, Stores};

use std::sync::Arc;

/// The services that plugins share within one process. Cheap to clone behind an `Arc`; one per process
/// (it survives config reloads, so shared data and metrics do too).
pub struct HostCore {
    /// Shared key-value data with compare-and-swap tokens.
    pub shared: SharedData,
    /// The namespaces the config puts in Redis, and their clients.
    pub stores: Stores,
    /// Named shared queues.
    pub queues: Queues,
    /// Plugin-defined metrics.
    pub metrics: Metrics,
    /// The response cache (WIT `cache`), bounded by the config's `cache:`.
    pub cache: Cache,
    /// Outbound HTTP to named upstreams.
    pub upstreams: Arc<dyn Upstreams>,
}

impl HostCore {
    /// A host core whose callouts go through `upstreams`.
    pub fn new(upstreams: Arc<dyn Upstreams>) -> Arc<HostCore> {
        Arc::new(HostCore {
            shared: SharedData::default(),
            stores: Stores::default(),
            queues: Queues::default(),
            metrics: Metrics::default(),
            cache: Cache::default(),
            upstreams,
        })
    }
}

impl std::fmt::Debug for HostCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCore").finish_non_exhaustive()
    }
}
