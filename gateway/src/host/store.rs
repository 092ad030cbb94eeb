//! Key-value namespaces and their backends: the one entry both ABIs use for a granted namespace
//! (`capabilities.kv_namespace`). A namespace is `local` ([`SharedData`], this process's memory) unless
//! the config's `kv_namespaces:` puts it in Redis ([`RedisStore`]), where every gateway process naming
//! the same server shares it. Both backends keep the same rules: versions never 0, TTLs, `increment`
//! on decimal text, compare-and-swap by version; a remote backend adds [`StoreError::Unavailable`]
//! for a call that did not complete within its timeout.

use super::kv::{SharedData, StoreError};
use super::redis::RedisStore;
use crate::config::stores::{KvBackend, KvNamespace};
use crate::metrics::Exposition;
use arc_swap::ArcSwap;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Where a namespace lives: this process's store (under `wit:<namespace>`), or a Redis client.
enum Backend {
    Local(String),
    Redis(Arc<RedisStore>),
}

/// The namespaces of the serving config that are not local, and their clients. One per process (in
/// the [`super::HostCore`]); replaced when a config is applied, keeping the client of a namespace
/// whose settings did not change (its connections stay open).
#[derive(Default)]
pub struct Stores {
    remote: ArcSwap<HashMap<String, Arc<RedisStore>>>,
}

/// What [`Stores::prepare`] made from a config, to [`Stores::install`].
#[derive(Default)]
pub struct StoreSet(HashMap<String, Arc<RedisStore>>);

/// A namespace's settings that cannot be used, with the field they are at.
#[derive(Debug)]
pub struct StoreConfigError {
    /// The field path (`kv_namespaces.limits.redis.password`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Stores {
    /// Clients for `namespaces` (`base`: the config file's folder, for `file:` passwords), taking
    /// over the current client of every namespace whose settings and password are unchanged. Nothing
    /// connects here: a Redis that is down does not stop a config from loading (calls to it are
    /// `unavailable` until it answers).
    pub fn prepare(
        &self,
        namespaces: &BTreeMap<String, KvNamespace>,
        base: &Path,
    ) -> Result<StoreSet, StoreConfigError> {
        let current = self.remote.load();
        let mut set = HashMap::new();
        for (name, ns) in namespaces {
            let field = |f: &str| format!("kv_namespaces.{name}{f}");
            crate::config::stores::valid_namespace(name).map_err(|message| StoreConfigError {
                field: field(""),
                message,
            })?;
            let (KvBackend::Redis, Some(settings)) = (ns.backend, &ns.redis) else {
                continue;
            };
            let password = match &settings.password {
                Some(p) => Some(p.resolve(base).map_err(|message| StoreConfigError {
                    field: field(".redis.password"),
                    message,
                })?),
                None => None,
            };
            if let Some(old) = current.get(name) {
                if old.same(settings, password.as_deref().map(|s| s.as_str())) {
                    set.insert(name.clone(), old.clone());
                    continue;
                }
            }
            let store =
                RedisStore::new(name, settings, password, base).map_err(|(at, message)| {
                    StoreConfigError {
                        field: field(at),
                        message,
                    }
                })?;
            let store = Arc::new(store);
            store.warm_up();
            set.insert(name.clone(), store);
        }
        Ok(StoreSet(set))
    }

    /// Makes `set` the one calls use; returns the one it replaces (to put back if the config that
    /// made `set` is not applied after all).
    pub fn install(&self, set: StoreSet) -> StoreSet {
        let old = self.remote.swap(Arc::new(set.0));
        StoreSet(Arc::unwrap_or_clone(old))
    }

    /// Where `namespace` lives now. Reading the set takes no reference count; only a Redis client
    /// is held (across its call's wait).
    fn backend(&self, namespace: &str) -> Backend {
        match self.remote.load().get(namespace) {
            Some(r) => Backend::Redis(r.clone()),
            None => Backend::Local(format!("wit:{namespace}")),
        }
    }

    /// Whether `namespace` is in Redis.
    pub fn is_remote(&self, namespace: &str) -> bool {
        self.remote.load().contains_key(namespace)
    }

    /// The value and version at `key`, if set and not expired.
    pub async fn get(
        &self,
        local: &SharedData,
        namespace: &str,
        key: &str,
    ) -> Result<Option<(Bytes, u32)>, StoreError> {
        match self.backend(namespace) {
            Backend::Local(ns) => Ok(local.get(&ns, key)),
            Backend::Redis(r) => r.get(key).await,
        }
    }

    /// Writes `value` (expiring after `ttl`); returns its version.
    pub async fn set(
        &self,
        local: &SharedData,
        namespace: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<u32, StoreError> {
        match self.backend(namespace) {
            Backend::Local(ns) => Ok(local.put(&ns, key, value, ttl)),
            Backend::Redis(r) => r.set(key, &value, ttl).await,
        }
    }

    /// Removes `key`.
    pub async fn delete(
        &self,
        local: &SharedData,
        namespace: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        match self.backend(namespace) {
            Backend::Local(ns) => {
                local.delete(&ns, key);
                Ok(())
            }
            Backend::Redis(r) => r.delete(key).await,
        }
    }

    /// Adds `delta` to the decimal integer at `key`, atomically; a key this creates expires after
    /// `ttl`, an existing expiry is kept.
    pub async fn increment(
        &self,
        local: &SharedData,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, StoreError> {
        match self.backend(namespace) {
            Backend::Local(ns) => Ok(local.increment(&ns, key, delta, ttl)?),
            Backend::Redis(r) => r.increment(key, delta, ttl).await,
        }
    }

    /// Writes `value` only over `version`; returns the new version.
    pub async fn compare_and_swap(
        &self,
        local: &SharedData,
        namespace: &str,
        key: &str,
        version: u32,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<u32, StoreError> {
        match self.backend(namespace) {
            Backend::Local(ns) => local
                .compare_and_swap(&ns, key, version, value, ttl)
                .map_err(|_| StoreError::VersionMismatch),
            Backend::Redis(r) => r.compare_and_swap(key, version, &value, ttl).await,
        }
    }

    /// Adds the Redis figures (`gateway_kv_redis_*`) of the serving namespaces to `e`.
    pub fn expose(&self, e: &mut Exposition) {
        let remote = self.remote.load();
        let mut names: Vec<&String> = remote.keys().collect();
        names.sort();
        let stores: Vec<&RedisStore> = names.iter().map(|n| &*remote[*n]).collect();
        super::redis::expose(&stores, e);
    }
}
