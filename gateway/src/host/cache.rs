//! The response cache (WIT `cache`, since 0.1.2): responses kept in this process's memory for the
//! plugins that store them, partitioned by plugin, bounded in bytes for all of them together
//! (`cache: {max_size, max_entry_size}` in the config), least recently used entries evicted first.
//!
//! A key's entries are its variants: the stored response's `Vary` names request headers, and a
//! request finds the entry made for a request with the same values of them. Concurrent misses of one
//! variant are coalesced: the first request holds the key's fill ([`Fill`]) until it stores a response
//! or the fill is dropped (the plugin released it, or the request ended however it ended: the host
//! keeps the fill with the request, never only with one plugin call); the others wait for it up to a
//! deadline, then find the stored response or go upstream themselves.

use crate::metrics::Exposition;
use bytes::Bytes;
use http::HeaderMap;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Default of `cache.max_size`: the bytes every plugin's entries take together. Default: 64MiB.
pub const DEFAULT_MAX_SIZE: u64 = 64 << 20;
/// Default of `cache.max_entry_size`: a larger entry is not stored. Default: 4MiB.
pub const DEFAULT_MAX_ENTRY_SIZE: u64 = 4 << 20;
/// The longest a lookup waits for another request's fill of the same key. Default: 60 s.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Lookups of one plugin waiting for fills at once; more pass upstream at once. Half the default
/// `limits.instances` (256), since each holds an instance. Default: 128.
pub const MAX_WAITING: u64 = 128;
/// What an entry is counted for besides its key, variant, headers and body (the maps' and the
/// record's own memory), so that many tiny entries cannot exceed the bound by their bookkeeping.
pub const ENTRY_OVERHEAD: u64 = 256;

/// The bounds of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// The bytes of every entry together.
    pub max_size: u64,
    /// The largest entry stored.
    pub max_entry_size: u64,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            max_size: DEFAULT_MAX_SIZE,
            max_entry_size: DEFAULT_MAX_ENTRY_SIZE,
        }
    }
}

/// What a response is cached under: the plugin's partition, what a purge names (host and path), and
/// the rest of the plugin's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The plugin whose entry it is.
    pub plugin: Arc<str>,
    /// The request's host.
    pub host: String,
    /// The request's path, without the query.
    pub path: String,
    /// The rest of the key (method, query, headers the plugin keys on), opaque here.
    pub extra: String,
}

/// A stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    /// Status code.
    pub status: u16,
    /// Headers as the response had them.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

/// An entry a lookup found.
#[derive(Debug, Clone)]
pub struct Found {
    /// The response.
    pub response: Arc<CachedResponse>,
    /// Time since it was stored.
    pub age: Duration,
    /// Its freshness when stored.
    pub ttl: Duration,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// A fresh entry.
    Hit(Found),
    /// An expired entry within its stale window; the request fills the key.
    Stale(Found, Fill),
    /// An expired entry past its stale window; the request fills the key.
    Expired(Fill),
    /// Nothing; the request fills the key.
    Miss(Fill),
    /// Another request's fill did not store a response (or the wait ran out): go upstream without
    /// filling; with the expired entry if one is within its stale window.
    Pass(Option<Found>),
}

/// Why `put` stored nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    /// The response varies on `*`.
    #[error("a response with `Vary: *` is not cached")]
    VaryStar,
    /// The entry is over `max_entry_size`.
    #[error("the entry is {size} bytes, over the cache's max_entry_size of {max}")]
    TooLarge {
        /// The entry's size.
        size: u64,
        /// The bound.
        max: u64,
    },
}

/// Bytes and entries a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Entries removed.
    pub entries: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The shared cache of the process. Cheap to clone.
#[derive(Clone, Default)]
pub struct Cache(Arc<Mutex<Inner>>);

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Cache")
            .field("limits", &inner.limits)
            .field("bytes", &inner.bytes)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    limits: CacheLimits,
    slots: HashMap<Arc<CacheKey>, Slot>,
    /// Every entry by the tick of its last use: the first is the least recently used.
    lru: BTreeMap<u64, (Arc<CacheKey>, String)>,
    tick: u64,
    bytes: u64,
    stats: HashMap<Arc<str>, Stats>,
}

/// One key: the request headers its responses vary on, its variants by their values, and the fills
/// in progress by variant.
#[derive(Default)]
struct Slot {
    vary: Vec<String>,
    variants: HashMap<String, Stored>,
    fills: HashMap<String, Arc<FillState>>,
}

struct Stored {
    response: Arc<CachedResponse>,
    at: Instant,
    ttl: Duration,
    stale: Duration,
    size: u64,
    tick: u64,
}

/// A plugin's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries held.
    pub entries: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Lookups that found a fresh entry.
    pub hits: u64,
    /// Lookups that found nothing (the request fills).
    pub misses: u64,
    /// Lookups that found an expired entry (the request fills).
    pub expired: u64,
    /// Lookups that went upstream without filling after another request's fill.
    pub passes: u64,
    /// Entries stored.
    pub stores: u64,
    /// Entries evicted to make room.
    pub evictions: u64,
    /// Entries removed by purges.
    pub purged: u64,
    /// Lookups waiting for another request's fill now.
    pub waiting: u64,
}

#[derive(Default)]
struct FillState {
    done: AtomicBool,
    stored: AtomicBool,
    notify: Notify,
}

/// A request's fill of one variant of a key: the other requests missing it wait until it is dropped.
/// Dropping it without [`Cache::put`] ends the fill without a response; the waiters go upstream.
pub struct Fill {
    cache: Cache,
    key: Arc<CacheKey>,
    variant: String,
    state: Arc<FillState>,
    /// The filling request's headers, for the variant of the response it stores.
    request_headers: HeaderMap,
}

impl std::fmt::Debug for Fill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fill").field("key", &self.key).finish()
    }
}

impl Fill {
    /// The key filled.
    pub fn key(&self) -> &CacheKey {
        &self.key
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        {
            let mut inner = self.cache.lock();
            if let Some(slot) = inner.slots.get_mut(&self.key) {
                if slot
                    .fills
                    .get(&self.variant)
                    .is_some_and(|f| Arc::ptr_eq(f, &self.state))
                {
                    slot.fills.remove(&self.variant);
                }
                if slot.fills.is_empty() && slot.variants.is_empty() {
                    inner.slots.remove(&self.key);
                }
            }
        }
        self.state.done.store(true, Ordering::SeqCst);
        self.state.notify.notify_waiters();
    }
}

/// The names a response varies on (lower case, sorted, without duplicates); `None` for `*`.
fn vary_names(headers: &[(String, String)]) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for (n, v) in headers {
        if !n.eq_ignore_ascii_case("vary") {
            continue;
        }
        for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if name == "*" {
                return None;
            }
            names.push(name.to_ascii_lowercase());
        }
    }
    names.sort();
    names.dedup();
    Some(names)
}

/// The variant of a request for `names`: the values of each header, in order (header values hold no
/// newline).
fn variant(names: &[String], headers: &HeaderMap) -> String {
    let mut out = String::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        for (j, v) in headers.get_all(name.as_str()).iter().enumerate() {
            if j > 0 {
                out.push_str(", ");
            }
            out.push_str(&String::from_utf8_lossy(v.as_bytes()));
        }
    }
    out
}

fn entry_size(key: &CacheKey, variant: &str, r: &CachedResponse) -> u64 {
    let headers: usize = r.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    (key.host.len() + key.path.len() + key.extra.len() + variant.len() + headers + r.body.len())
        as u64
        + ENTRY_OVERHEAD
}

impl Inner {
    fn stats(&mut self, plugin: &Arc<str>) -> &mut Stats {
        self.stats.entry(plugin.clone()).or_default()
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Removes one variant of `key` and its accounting; the slot too when nothing is left of it.
    fn remove(&mut self, key: &Arc<CacheKey>, variant: &str) -> Option<u64> {
        let slot = self.slots.get_mut(key)?;
        let st = slot.variants.remove(variant)?;
        if slot.variants.is_empty() && slot.fills.is_empty() {
            self.slots.remove(key);
        }
        self.lru.remove(&st.tick);
        self.bytes -= st.size;
        let s = self.stats(&key.plugin);
        s.entries -= 1;
        s.bytes -= st.size;
        Some(st.size)
    }

    /// Evicts least recently used entries until the bytes are within `max_size`.
    fn evict(&mut self) {
        while self.bytes > self.limits.max_size {
            let Some((key, variant)) = self.lru.values().next().cloned() else {
                break;
            };
            if self.remove(&key, &variant).is_none() {
                // Not an entry any more (cannot happen: every removal updates `lru`).
                self.lru.pop_first();
                continue;
            }
            self.stats(&key.plugin).evictions += 1;
        }
    }
}

impl Cache {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the bounds (a config was loaded), evicting what no longer fits.
    pub fn configure(&self, limits: CacheLimits) {
        let mut inner = self.lock();
        inner.limits = limits;
        inner.evict();
    }

    /// The bounds.
    pub fn limits(&self) -> CacheLimits {
        self.lock().limits
    }

    /// The entry of `key` for a request with `headers`: a fresh one, or this request's fill of the
    /// key (with an expired entry if any). When another request fills it, waits for that fill up to
    /// `wait` (at most [`MAX_WAIT`]), then looks again if it stored a response, or passes. Returns
    /// whether it waited, too.
    pub async fn lookup(
        &self,
        key: CacheKey,
        headers: &HeaderMap,
        wait: Duration,
    ) -> (Lookup, bool) {
        let key = Arc::new(key);
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        let mut waited = false;
        loop {
            let (fill, stale) = {
                let mut guard = self.lock();
                let inner = &mut *guard;
                let now = Instant::now();
                let tick = inner.next_tick();
                let (vary, found, expired_at) = match inner.slots.get_mut(&key) {
                    None => (Vec::new(), None, None),
                    Some(slot) => {
                        let v = variant(&slot.vary, headers);
                        match slot.variants.get_mut(&v) {
                            None => (slot.vary.clone(), None, None),
                            Some(st) => {
                                let age = now.saturating_duration_since(st.at);
                                let found = Found {
                                    response: st.response.clone(),
                                    age,
                                    ttl: st.ttl,
                                };
                                if age < st.ttl {
                                    let old = std::mem::replace(&mut st.tick, tick);
                                    inner.lru.remove(&old);
                                    inner.lru.insert(tick, (key.clone(), v));
                                    inner.stats(&key.plugin).hits += 1;
                                    return (Lookup::Hit(found), waited);
                                }
                                let within = age < st.ttl + st.stale;
                                (slot.vary.clone(), within.then_some(found), Some(()))
                            }
                        }
                    }
                };
                let v = variant(&vary, headers);
                // A waiting lookup holds its request's instance of the plugin: past this many at
                // once, a lookup goes upstream instead of waiting, so that a crowd on one slow key
                // cannot take every instance (and answer 503 on every route using the plugin).
                let crowded = inner.stats(&key.plugin).waiting >= MAX_WAITING;
                let slot = inner.slots.entry(key.clone()).or_default();
                match slot.fills.get(&v) {
                    Some(_) if crowded || waited_out(deadline) => {
                        inner.stats(&key.plugin).passes += 1;
                        return (Lookup::Pass(found), waited);
                    }
                    Some(f) => (f.clone(), found),
                    None => {
                        let state = Arc::new(FillState::default());
                        slot.fills.insert(v.clone(), state.clone());
                        let fill = Fill {
                            cache: self.clone(),
                            key: key.clone(),
                            variant: v,
                            state,
                            request_headers: headers.clone(),
                        };
                        let s = inner.stats(&key.plugin);
                        let r = match (found, expired_at) {
                            (Some(found), _) => {
                                s.expired += 1;
                                Lookup::Stale(found, fill)
                            }
                            (None, Some(())) => {
                                s.expired += 1;
                                Lookup::Expired(fill)
                            }
                            (None, None) => {
                                s.misses += 1;
                                Lookup::Miss(fill)
                            }
                        };
                        return (r, waited);
                    }
                }
            };
            waited = true;
            let _waiting = Waiting::new(self, &key.plugin);
            let notified = fill.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let ended = fill.done.load(Ordering::SeqCst)
                || tokio::time::timeout_at(deadline, notified).await.is_ok();
            if !ended || !fill.stored.load(Ordering::SeqCst) {
                self.lock().stats(&key.plugin).passes += 1;
                return (Lookup::Pass(stale), waited);
            }
        }
    }

    /// Stores `response` for the key `fill` fills (its variant by the response's `Vary` and the
    /// filling request's headers), fresh for `ttl` and then stale for `stale` more, evicting least
    /// recently used entries to stay within `max_size`. Ends the fill either way.
    pub fn put(
        &self,
        fill: Fill,
        response: CachedResponse,
        ttl: Duration,
        stale: Duration,
    ) -> Result<(), PutError> {
        let names = vary_names(&response.headers).ok_or(PutError::VaryStar)?;
        let v = variant(&names, &fill.request_headers);
        let size = entry_size(&fill.key, &v, &response);
        let mut inner = self.lock();
        let max = inner.limits.max_entry_size.min(inner.limits.max_size);
        if size > max {
            return Err(PutError::TooLarge { size, max });
        }
        let key = fill.key.clone();
        // The entry it replaces goes, and all of them when the resource varies on other headers
        // now (they were made for the old ones).
        let replaced: Vec<String> = match inner.slots.get(&key) {
            Some(slot) if slot.vary != names => slot.variants.keys().cloned().collect(),
            _ => vec![v.clone()],
        };
        for old in replaced {
            inner.remove(&key, &old);
        }
        let tick = inner.next_tick();
        let slot = inner.slots.entry(key.clone()).or_default();
        slot.vary = names;
        slot.variants.insert(
            v.clone(),
            Stored {
                response: Arc::new(response),
                at: Instant::now(),
                ttl,
                stale,
                size,
                tick,
            },
        );
        inner.lru.insert(tick, (key.clone(), v));
        inner.bytes += size;
        let s = inner.stats(&key.plugin);
        s.entries += 1;
        s.bytes += size;
        s.stores += 1;
        inner.evict();
        drop(inner);
        fill.state.stored.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Removes the entries of `plugin` (every plugin's when `None`), of `host` and `path` when given
    /// (the host without regard to case): every variant, method and query of that URL.
    pub fn purge(&self, plugin: Option<&str>, host: Option<&str>, path: Option<&str>) -> Purged {
        let mut inner = self.lock();
        let matching: Vec<(Arc<CacheKey>, Vec<String>)> = inner
            .slots
            .iter()
            .filter(|(k, _)| {
                plugin.is_none_or(|p| *k.plugin == *p)
                    && host.is_none_or(|h| k.host.eq_ignore_ascii_case(h))
                    && path.is_none_or(|p| k.path == p)
            })
            .map(|(k, s)| (k.clone(), s.variants.keys().cloned().collect()))
            .collect();
        let mut purged = Purged::default();
        for (key, variants) in matching {
            for v in variants {
                if let Some(size) = inner.remove(&key, &v) {
                    purged.entries += 1;
                    purged.bytes += size;
                    inner.stats(&key.plugin).purged += 1;
                }
            }
        }
        purged
    }

    /// The bytes of every entry.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// The figures of `plugin`.
    pub fn stats(&self, plugin: &str) -> Stats {
        self.lock().stats.get(plugin).copied().unwrap_or_default()
    }

    /// Adds the cache's families to `e`: its bound and bytes, and each plugin's entries, bytes,
    /// lookups by result, stores, evictions and purges.
    pub fn expose(&self, e: &mut Exposition) {
        let inner = self.lock();
        e.gauge(
            "gateway_cache_max_bytes",
            "The response cache's bound (cache.max_size).",
        )
        .value(inner.limits.max_size);
        e.gauge(
            "gateway_cache_bytes_used",
            "Bytes of every plugin's cached responses together.",
        )
        .value(inner.bytes);
        let mut plugins: Vec<(&Arc<str>, &Stats)> = inner.stats.iter().collect();
        plugins.sort_by(|a, b| a.0.cmp(b.0));
        let f = e.gauge("gateway_cache_entries", "Cached responses, by plugin.");
        for (p, s) in &plugins {
            f.sample(&[("plugin", p)], s.entries);
        }
        let f = e.gauge(
            "gateway_cache_bytes",
            "Bytes of cached responses, by plugin.",
        );
        for (p, s) in &plugins {
            f.sample(&[("plugin", p)], s.bytes);
        }
        let f = e.gauge(
            "gateway_cache_waiting",
            "Lookups waiting now for another request's fill of the same key, by plugin.",
        );
        for (p, s) in &plugins {
            f.sample(&[("plugin", p)], s.waiting);
        }
        let f = e.counter(
            "gateway_cache_lookups",
            "Cache lookups by plugin and result: hit (fresh), miss, expired (the request refreshes \
             it), pass (went upstream after another request's fill stored nothing).",
        );
        for (p, s) in &plugins {
            for (result, n) in [
                ("hit", s.hits),
                ("miss", s.misses),
                ("expired", s.expired),
                ("pass", s.passes),
            ] {
                f.sample(&[("plugin", p), ("result", result)], n);
            }
        }
        for (name, help, get) in [
            (
                "gateway_cache_stores",
                "Responses stored, by plugin.",
                (|s: &Stats| s.stores) as fn(&Stats) -> u64,
            ),
            (
                "gateway_cache_evictions",
                "Entries evicted to stay within cache.max_size, by plugin.",
                |s: &Stats| s.evictions,
            ),
            (
                "gateway_cache_purged",
                "Entries removed through the admin API, by plugin.",
                |s: &Stats| s.purged,
            ),
        ] {
            let f = e.counter(name, help);
            for (p, s) in &plugins {
                f.sample(&[("plugin", p)], get(s));
            }
        }
    }
}

/// A lookup counted as waiting while it lives (a request dropped mid-wait stops counting).
struct Waiting<'a> {
    cache: &'a Cache,
    plugin: &'a Arc<str>,
}

impl<'a> Waiting<'a> {
    fn new(cache: &'a Cache, plugin: &'a Arc<str>) -> Self {
        cache.lock().stats(plugin).waiting += 1;
        Waiting { cache, plugin }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.cache.lock().stats(self.plugin).waiting -= 1;
    }
}

fn waited_out(deadline: tokio::time::Instant) -> bool {
    tokio::time::Instant::now() >= deadline
}

#[cfg(test)]
mod tests;
