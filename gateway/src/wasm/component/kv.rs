//! The WIT `kv` interface over the host core's shared data ([`crate::host::SharedData`]), in the
//! namespace the plugin is granted (`wit:<namespace>`, apart from Proxy-Wasm's). A stored value is an
//! 8-byte big-endian expiry (milliseconds since the Unix epoch, 0 for none) followed by the value;
//! an expired value reads as absent. Versions are the host core's CAS tokens.

use super::bindings::gateway::filter::kv::{self, Entry, KvError};
use super::state::CompState;
use crate::host::SharedData;
use bytes::{BufMut, Bytes, BytesMut};
use std::sync::Mutex;
use std::time::SystemTime;

/// Longest key, in bytes. Default: 1KiB.
pub const MAX_KEY_LEN: usize = 1 << 10;
/// Largest value, in bytes. Default: 1MiB.
pub const MAX_VALUE_LEN: usize = 1 << 20;

/// Writes that do not name a version (set, delete, and `increment` creating a key) are serialized
/// here, so `increment` on an absent key cannot lose a concurrent write; writes that name a version
/// rely on the host core's CAS.
static UNVERSIONED_WRITES: Mutex<()> = Mutex::new(());

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn encode(value: &[u8], ttl_ms: Option<u64>) -> Bytes {
    encode_until(
        value,
        ttl_ms
            .map(|t| now_ms().saturating_add(t.max(1)))
            .unwrap_or(0),
    )
}

fn encode_until(value: &[u8], expiry: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + value.len());
    b.put_u64(expiry);
    b.put_slice(value);
    b.freeze()
}

/// A live value: (value, expiry, version).
fn live(shared: &SharedData, ns: &str, key: &str) -> Option<(Bytes, u64, u32)> {
    let (raw, version) = shared.get(ns, key)?;
    if raw.len() < 8 {
        return None;
    }
    let expiry = u64::from_be_bytes(raw[..8].try_into().ok()?);
    if expiry != 0 && expiry <= now_ms() {
        return None;
    }
    Some((raw.slice(8..), expiry, version))
}

impl CompState {
    fn namespace(&self, op: &str) -> Result<String, KvError> {
        match &self.shared.capabilities.kv_namespace {
            Some(ns) => Ok(format!("wit:{ns}")),
            None => {
                tracing::warn!(plugin = %self.shared.name, op, "denied: key-value store without `capabilities.kv_namespace`");
                Err(KvError::Denied(
                    "no key-value namespace is granted to this plugin".into(),
                ))
            }
        }
    }

    fn checked_key(&self, op: &str, key: &str) -> Result<String, KvError> {
        let ns = self.namespace(op)?;
        if key.len() > MAX_KEY_LEN {
            return Err(KvError::Invalid(format!(
                "key longer than {MAX_KEY_LEN} bytes"
            )));
        }
        Ok(ns)
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

impl kv::Host for CompState {
    fn get(&mut self, key: String) -> Result<Option<Entry>, KvError> {
        let ns = self.checked_key("get", &key)?;
        Ok(
            live(&self.shared.host.shared, &ns, &key).map(|(value, _, version)| Entry {
                value: value.to_vec(),
                version,
            }),
        )
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<u32, KvError> {
        let ns = self.checked_key("set", &key)?;
        check_value(&value)?;
        let _serial = UNVERSIONED_WRITES.lock().unwrap_or_else(|e| e.into_inner());
        self.shared
            .host
            .shared
            .set(&ns, &key, encode(&value, ttl_ms), None)
            .map_err(|_| KvError::VersionMismatch)
    }

    fn delete(&mut self, key: String) -> Result<(), KvError> {
        let ns = self.checked_key("delete", &key)?;
        let _serial = UNVERSIONED_WRITES.lock().unwrap_or_else(|e| e.into_inner());
        self.shared
            .host
            .shared
            .remove(&ns, &key, None)
            .map_err(|_| KvError::VersionMismatch)
    }

    fn increment(&mut self, key: String, delta: i64) -> Result<i64, KvError> {
        let ns = self.checked_key("increment", &key)?;
        let shared = &self.shared.host.shared;
        let parse = |v: &[u8]| -> Result<i64, KvError> {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or(KvError::NotANumber)
        };
        loop {
            match live(shared, &ns, &key) {
                Some((value, expiry, version)) => {
                    let n = parse(&value)?
                        .checked_add(delta)
                        .ok_or_else(|| KvError::Invalid("increment overflows".into()))?;
                    let bytes = encode_until(n.to_string().as_bytes(), expiry);
                    if shared.set(&ns, &key, bytes, Some(version)).is_ok() {
                        return Ok(n);
                    }
                }
                None => {
                    let _serial = UNVERSIONED_WRITES.lock().unwrap_or_else(|e| e.into_inner());
                    if live(shared, &ns, &key).is_some() {
                        continue;
                    }
                    let bytes = encode_until(delta.to_string().as_bytes(), 0);
                    shared
                        .set(&ns, &key, bytes, None)
                        .map_err(|_| KvError::VersionMismatch)?;
                    return Ok(delta);
                }
            }
        }
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
        let shared = &self.shared.host.shared;
        match live(shared, &ns, &key) {
            Some((_, _, current)) if version != 0 && current == version => shared
                .set(&ns, &key, encode(&value, ttl_ms), Some(version))
                .map_err(|_| KvError::VersionMismatch),
            _ => Err(KvError::VersionMismatch),
        }
    }
}
