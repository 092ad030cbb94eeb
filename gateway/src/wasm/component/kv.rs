//! The WIT `kv` interface: a thin adapter over the host core's store ([`crate::host::SharedData`],
//! which also serves Proxy-Wasm shared data), in the namespace the plugin is granted (`wit:<namespace>`,
//! apart from Proxy-Wasm's). This side checks the grant and the sizes and maps the errors.

use super::bindings::gateway::filter::kv::{self, Entry, KvError};
use super::state::CompState;
use crate::host::{IncrementError, SharedData};
use bytes::Bytes;
use std::time::Duration;

/// Longest key, in bytes. Default: 1KiB.
pub const MAX_KEY_LEN: usize = 1 << 10;
/// Largest value, in bytes. Default: 1MiB.
pub const MAX_VALUE_LEN: usize = 1 << 20;

impl CompState {
    /// The plugin's namespace in the store, after checking the key's size.
    fn checked_key(&self, op: &str, key: &str) -> Result<String, KvError> {
        let Some(ns) = self.ctx.grants.kv_namespace() else {
            tracing::warn!(plugin = %self.ctx.name, op, "denied: key-value store without `capabilities.kv_namespace`");
            return Err(KvError::Denied(
                "no key-value namespace is granted to this plugin".into(),
            ));
        };
        if key.len() > MAX_KEY_LEN {
            return Err(KvError::Invalid(format!(
                "key longer than {MAX_KEY_LEN} bytes"
            )));
        }
        Ok(format!("wit:{ns}"))
    }

    fn store(&self) -> &SharedData {
        &self.ctx.host.shared
    }
}

fn check_value(v: &[u8]) -> Result<(), KvError> {
    if v.len() > MAX_VALUE_LEN {
        return Err(KvError::Invalid(format!(
            "value larger than {MAX_VALUE_LEN} bytes"
        )));
    }
    Ok(())
}

/// A TTL in milliseconds; at least one, so that a value is never written already expired.
fn ttl(ms: Option<u64>) -> Option<Duration> {
    ms.map(|t| Duration::from_millis(t.max(1)))
}

impl kv::Host for CompState {
    fn get(&mut self, key: String) -> Result<Option<Entry>, KvError> {
        let ns = self.checked_key("get", &key)?;
        Ok(self.store().get(&ns, &key).map(|(value, version)| Entry {
            value: value.to_vec(),
            version,
        }))
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<u32, KvError> {
        let ns = self.checked_key("set", &key)?;
        check_value(&value)?;
        Ok(self.store().put(&ns, &key, Bytes::from(value), ttl(ttl_ms)))
    }

    fn delete(&mut self, key: String) -> Result<(), KvError> {
        let ns = self.checked_key("delete", &key)?;
        self.store().delete(&ns, &key);
        Ok(())
    }

    fn increment(&mut self, key: String, delta: i64) -> Result<i64, KvError> {
        let ns = self.checked_key("increment", &key)?;
        self.store()
            .increment(&ns, &key, delta)
            .map_err(|e| match e {
                IncrementError::NotANumber => KvError::NotANumber,
                IncrementError::Overflow => KvError::Invalid("increment overflows".into()),
            })
    }

    fn compare_and_swap(
        &mut self,
        key: String,
        version: u32,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<u32, KvError> {
        let ns = self.checked_key("compare-and-swap", &key)?;
        check_value(&value)?;
        self.store()
            .compare_and_swap(&ns, &key, version, Bytes::from(value), ttl(ttl_ms))
            .map_err(|_| KvError::VersionMismatch)
    }
}
