//! The WIT `cache` interface (since 0.1.2): a thin adapter over the host core's response cache
//! ([`crate::host::Cache`]), in the plugin's own partition (its name). This side checks the phase and
//! the sizes, and keeps the request's fills in the instance's state for as long as the request
//! lasts: they end with `put` or `release`, or when the request ends however it ends (its instance
//! goes back to the pool or is thrown away), so a filling request that fails never holds other
//! requests beyond its own life.

use super::bindings::gateway::filter::cache::{self, CachedResponse, Entry, Key, LookupResult};
use super::bindings::gateway::filter::types::HostError;
use super::host::header_map;
use super::state::CompState;
use crate::host::{self, CacheKey, Fill, Found, Lookup, Phase};
use bytes::Bytes;
use std::time::Duration;

/// Longest key (host, path and extra together), in bytes. Default: 8KiB.
pub const MAX_CACHE_KEY_LEN: usize = 8 << 10;

impl CompState {
    fn cache_key(&self, key: Key) -> Result<CacheKey, HostError> {
        if key.host.len() + key.path.len() + key.extra.len() > MAX_CACHE_KEY_LEN {
            return Err(HostError::Invalid(format!(
                "cache key longer than {MAX_CACHE_KEY_LEN} bytes"
            )));
        }
        // The route and the upstream it chose are part of every key, whatever the plugin puts in
        // it: two routes on one URL (told apart by a header or query matcher) or the two sides of a
        // traffic split never answer with each other's responses.
        let (route, upstream) = match &self.info {
            Some(i) => (&*i.route, i.upstream.as_deref().unwrap_or("")),
            None => ("", ""),
        };
        Ok(CacheKey {
            plugin: self.ctx.name.clone(),
            host: key.host,
            path: key.path,
            extra: format!("{route}\0{upstream}\0{}", key.extra),
        })
    }

    /// Takes this request's fill of `key`, if it holds one.
    fn take_fill(&mut self, key: &CacheKey) -> Option<Fill> {
        let i = self.cache_fills.iter().position(|f| f.key() == key)?;
        Some(self.cache_fills.swap_remove(i))
    }
}

fn entry(f: Found) -> Entry {
    Entry {
        response: CachedResponse {
            status: f.response.status,
            headers: f.response.headers.clone(),
            body: f.response.body.to_vec(),
        },
        age_ms: f.age.as_millis() as u64,
        ttl_ms: f.ttl.as_millis() as u64,
    }
}

impl cache::Host for CompState {
    async fn lookup(&mut self, key: Key, wait_ms: u32) -> Result<LookupResult, HostError> {
        let headers = match (self.data.phase, self.data.req.as_ref()) {
            (Phase::RequestHeaders | Phase::RequestBody, Some(req)) => req.headers.clone(),
            _ => {
                return Err(HostError::WrongPhase(
                    "a cache lookup reads the request's headers: call it from on-request".into(),
                ))
            }
        };
        let key = self.cache_key(key)?;
        // A request fills a key once: a second lookup of a key it fills ends that fill first.
        drop(self.take_fill(&key));
        let cache = self.ctx.host.cache.clone();
        let wait = Duration::from_millis(u64::from(wait_ms));
        let started = std::time::Instant::now();
        let (found, waited) = cache.lookup(key, &headers, wait).await;
        // Waiting for another request's fill is not the plugin's CPU time.
        if waited {
            self.waited += started.elapsed();
        }
        Ok(match found {
            Lookup::Hit(f) => LookupResult::Hit(entry(f)),
            Lookup::Stale(f, fill) => {
                self.cache_fills.push(fill);
                LookupResult::Stale(entry(f))
            }
            Lookup::Expired(fill) => {
                self.cache_fills.push(fill);
                LookupResult::Expired
            }
            Lookup::Miss(fill) => {
                self.cache_fills.push(fill);
                LookupResult::Miss
            }
            Lookup::Pass(f) => LookupResult::Pass(f.map(entry)),
        })
    }

    fn put(
        &mut self,
        key: Key,
        response: CachedResponse,
        ttl_ms: u64,
        stale_ms: u64,
    ) -> Result<(), HostError> {
        let key = self.cache_key(key)?;
        let Some(fill) = self.take_fill(&key) else {
            return Err(HostError::Invalid(
                "this request does not fill that key (no miss of it in this request's lookups)"
                    .into(),
            ));
        };
        host::status(response.status).map_err(|e| HostError::Invalid(e.to_string()))?;
        header_map(&response.headers)?;
        let stored = host::CachedResponse {
            status: response.status,
            headers: response.headers,
            body: Bytes::from(response.body),
        };
        self.ctx
            .host
            .cache
            .clone()
            .put(
                fill,
                stored,
                Duration::from_millis(ttl_ms),
                Duration::from_millis(stale_ms),
            )
            .map_err(|e| HostError::Invalid(e.to_string()))
    }

    fn release(&mut self, key: Key) {
        if let Ok(key) = self.cache_key(key) {
            drop(self.take_fill(&key));
        }
    }

    fn max_entry_size(&mut self) -> u64 {
        let limits = self.ctx.host.cache.limits();
        limits.max_entry_size.min(limits.max_size)
    }
}
