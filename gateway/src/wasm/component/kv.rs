//! The WIT `kv` and `store` interfaces: thin adapters over the host core's namespaces
//! ([`crate::host::Stores`]: this process's store, which also serves Proxy-Wasm shared data, or Redis),
//! in the namespace the plugin is granted. This side checks the grant and the sizes and maps the
//! errors: `store` (0.1.2) reports a remote backend's failure as `unavailable`; `kv`, whose error type
//! is fixed since 0.1.0, as `invalid("unavailable: ...")`.

use super::bindings::gateway::filter::kv::{self, Entry, KvError};
use super::bindings::gateway::filter::store::{self, BackendKind, StoreError as WitStoreError};
use super::state::CompState;
use crate::host::{HostCore, StoreError};
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest key, in bytes. Default: 1KiB.
pub const MAX_KEY_LEN: usize = 1 << 10;
/// Largest value, in bytes. Default: 1MiB.
pub const MAX_VALUE_LEN: usize = 1 << 20;

/// Why a call was refused before reaching the store.
enum Refused {
    Denied(String),
    Invalid(String),
}

impl From<Refused> for WitStoreError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Denied(m) => WitStoreError::Denied(m),
            Refused::Invalid(m) => WitStoreError::Invalid(m),
        }
    }
}

/// `kv` (0.1.0) says what `store` says, in its older error type: an unavailable backend is
/// `invalid("unavailable: ...")`, since `kv-error` cannot gain a case.
fn kv_error(e: WitStoreError) -> KvError {
    match e {
        WitStoreError::Denied(m) => KvError::Denied(m),
        WitStoreError::VersionMismatch => KvError::VersionMismatch,
        WitStoreError::NotANumber => KvError::NotANumber,
        WitStoreError::Invalid(m) => KvError::Invalid(m),
        WitStoreError::Unavailable(m) => KvError::Invalid(format!("unavailable: {m}")),
    }
}

fn store_error(e: StoreError) -> WitStoreError {
    match e {
        StoreError::VersionMismatch => WitStoreError::VersionMismatch,
        StoreError::NotANumber => WitStoreError::NotANumber,
        StoreError::Overflow => WitStoreError::Invalid("increment overflows".into()),
        StoreError::Unavailable(m) => WitStoreError::Unavailable(m),
    }
}

impl CompState {
    /// The plugin's namespace.
    fn namespace(&self, op: &str) -> Result<String, Refused> {
        match self.ctx.grants.kv_namespace() {
            Some(ns) => Ok(ns.to_owned()),
            None => {
                tracing::warn!(plugin = %self.ctx.name, op, "denied: key-value store without `capabilities.kv_namespace`");
                Err(Refused::Denied(
                    "no key-value namespace is granted to this plugin".into(),
                ))
            }
        }
    }

    /// The plugin's namespace, after checking the key's size.
    fn checked_key(&self, op: &str, key: &str) -> Result<String, Refused> {
        let ns = self.namespace(op)?;
        if key.len() > MAX_KEY_LEN {
            return Err(Refused::Invalid(format!(
                "key longer than {MAX_KEY_LEN} bytes"
            )));
        }
        Ok(ns)
    }

    /// The host core and namespace for a call on `key` (the future that makes the call holds no
    /// borrow of the instance state, which is not `Sync`).
    fn target(&self, op: &str, key: &str) -> Result<(Arc<HostCore>, String), Refused> {
        Ok((self.ctx.host.clone(), self.checked_key(op, key)?))
    }
}

type Outcome<T> = Result<T, Result<StoreError, Refused>>;

/// Whether the call goes to a remote backend: it waits on the network, and that time is not the
/// plugin's CPU time (as for outbound HTTP, the next epoch deadline grants a fresh budget).
fn remote(t: &Result<(Arc<HostCore>, String), Refused>) -> bool {
    t.as_ref().is_ok_and(|(host, ns)| host.stores.is_remote(ns))
}

impl CompState {
    /// A remote call begun at `since` waited that long, which is not the guest's CPU time (the next
    /// epoch deadline credits it).
    fn credit_wait(&mut self, since: Option<Instant>) {
        if let Some(s) = since {
            self.waited += s.elapsed();
        }
    }
}

async fn kv_get(t: Result<(Arc<HostCore>, String), Refused>, key: &str) -> Outcome<Option<Entry>> {
    let (host, ns) = t.map_err(Err)?;
    let got = host.stores.get(&host.shared, &ns, key).await.map_err(Ok)?;
    Ok(got.map(|(value, version)| Entry {
        value: value.to_vec(),
        version,
    }))
}

async fn kv_set(
    t: Result<(Arc<HostCore>, String), Refused>,
    key: &str,
    value: Vec<u8>,
    ttl_ms: Option<u64>,
) -> Outcome<u32> {
    let (host, ns) = t.map_err(Err)?;
    check_value(&value).map_err(Err)?;
    let value = Bytes::from(value);
    host.stores
        .set(&host.shared, &ns, key, value, ttl(ttl_ms))
        .await
        .map_err(Ok)
}

async fn kv_delete(t: Result<(Arc<HostCore>, String), Refused>, key: &str) -> Outcome<()> {
    let (host, ns) = t.map_err(Err)?;
    host.stores.delete(&host.shared, &ns, key).await.map_err(Ok)
}

async fn kv_increment(
    t: Result<(Arc<HostCore>, String), Refused>,
    key: &str,
    delta: i64,
    ttl_ms: Option<u64>,
) -> Outcome<i64> {
    let (host, ns) = t.map_err(Err)?;
    host.stores
        .increment(&host.shared, &ns, key, delta, ttl(ttl_ms))
        .await
        .map_err(Ok)
}

async fn kv_compare_and_swap(
    t: Result<(Arc<HostCore>, String), Refused>,
    key: &str,
    version: u32,
    value: Vec<u8>,
    ttl_ms: Option<u64>,
) -> Outcome<u32> {
    let (host, ns) = t.map_err(Err)?;
    check_value(&value).map_err(Err)?;
    let value = Bytes::from(value);
    host.stores
        .compare_and_swap(&host.shared, &ns, key, version, value, ttl(ttl_ms))
        .await
        .map_err(Ok)
}

fn check_value(v: &[u8]) -> Result<(), Refused> {
    if v.len() > MAX_VALUE_LEN {
        return Err(Refused::Invalid(format!(
            "value larger than {MAX_VALUE_LEN} bytes"
        )));
    }
    Ok(())
}

/// A TTL in milliseconds; at least one, so that a value is never written already expired.
fn ttl(ms: Option<u64>) -> Option<Duration> {
    ms.map(|t| Duration::from_millis(t.max(1)))
}

fn as_store<T>(r: Outcome<T>) -> Result<T, WitStoreError> {
    r.map_err(|e| match e {
        Ok(e) => store_error(e),
        Err(r) => r.into(),
    })
}

/// The `kv` interface is the `store` interface with `kv`'s types (and an increment without a TTL).
impl kv::Host for CompState {
    async fn get(&mut self, key: String) -> Result<Option<Entry>, KvError> {
        store::Host::get(self, key).await.map_err(kv_error)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<u32, KvError> {
        store::Host::set(self, key, value, ttl_ms)
            .await
            .map_err(kv_error)
    }

    async fn delete(&mut self, key: String) -> Result<(), KvError> {
        store::Host::delete(self, key).await.map_err(kv_error)
    }

    async fn increment(&mut self, key: String, delta: i64) -> Result<i64, KvError> {
        store::Host::increment(self, key, delta, None)
            .await
            .map_err(kv_error)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        version: u32,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<u32, KvError> {
        store::Host::compare_and_swap(self, key, version, value, ttl_ms)
            .await
            .map_err(kv_error)
    }
}

impl store::Host for CompState {
    async fn backend(&mut self) -> Result<BackendKind, WitStoreError> {
        let ns = self.namespace("backend")?;
        Ok(match self.ctx.host.stores.is_remote(&ns) {
            true => BackendKind::Redis,
            false => BackendKind::Local,
        })
    }

    async fn get(&mut self, key: String) -> Result<Option<Entry>, WitStoreError> {
        let t = self.target("get", &key);
        let waits = remote(&t).then(Instant::now);
        let r = as_store(kv_get(t, &key).await);
        self.credit_wait(waits);
        r
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<u32, WitStoreError> {
        let t = self.target("set", &key);
        let waits = remote(&t).then(Instant::now);
        let r = as_store(kv_set(t, &key, value, ttl_ms).await);
        self.credit_wait(waits);
        r
    }

    async fn delete(&mut self, key: String) -> Result<(), WitStoreError> {
        let t = self.target("delete", &key);
        let waits = remote(&t).then(Instant::now);
        let r = as_store(kv_delete(t, &key).await);
        self.credit_wait(waits);
        r
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, WitStoreError> {
        let t = self.target("increment", &key);
        let waits = remote(&t).then(Instant::now);
        let r = as_store(kv_increment(t, &key, delta, ttl_ms).await);
        self.credit_wait(waits);
        r
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        version: u32,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<u32, WitStoreError> {
        let t = self.target("compare-and-swap", &key);
        let waits = remote(&t).then(Instant::now);
        let r = as_store(kv_compare_and_swap(t, &key, version, value, ttl_ms).await);
        self.credit_wait(waits);
        r
    }
}
