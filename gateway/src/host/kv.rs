//! Shared key-value data with compare-and-swap, in the Proxy-Wasm shared-data model: every value has a
//! CAS token that changes on each write; a write that names a token succeeds only if it is current.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;

/// A write named a CAS token that is no longer current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("compare-and-swap token mismatch")]
pub struct CasMismatch;

#[derive(Default)]
struct Entry {
    value: Bytes,
    cas: u32,
}

/// Shared data, partitioned by namespace (a Proxy-Wasm VM id; the WIT world uses its own).
#[derive(Default)]
pub struct SharedData {
    // One lock: every operation is a short map access, and CAS needs read-compare-write to be atomic.
    map: Mutex<HashMap<(String, String), Entry>>,
    next_cas: Mutex<u32>,
}

impl SharedData {
    /// The value and its CAS token, or `None` when the key has never been written.
    pub fn get(&self, namespace: &str, key: &str) -> Option<(Bytes, u32)> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(namespace.to_string(), key.to_string()))
            .map(|e| (e.value.clone(), e.cas))
    }

    /// Writes `value`. With `cas` set (non-zero), the write happens only if it is the key's current token.
    /// Returns the new token.
    pub fn set(
        &self,
        namespace: &str,
        key: &str,
        value: Bytes,
        cas: Option<u32>,
    ) -> Result<u32, CasMismatch> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let slot = (namespace.to_string(), key.to_string());
        let current = map.get(&slot).map(|e| e.cas);
        if let Some(want) = cas.filter(|c| *c != 0) {
            if current != Some(want) {
                return Err(CasMismatch);
            }
        }
        let token = self.next_token();
        map.insert(slot, Entry { value, cas: token });
        Ok(token)
    }

    /// Removes the key (with the same CAS rule as `set`).
    pub fn remove(&self, namespace: &str, key: &str, cas: Option<u32>) -> Result<(), CasMismatch> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let slot = (namespace.to_string(), key.to_string());
        if let Some(want) = cas.filter(|c| *c != 0) {
            if map.get(&slot).map(|e| e.cas) != Some(want) {
                return Err(CasMismatch);
            }
        }
        map.remove(&slot);
        Ok(())
    }

    fn next_token(&self) -> u32 {
        let mut next = self.next_cas.lock().unwrap_or_else(|e| e.into_inner());
        // Tokens are never 0: 0 means "no CAS" on the wire.
        *next = next.checked_add(1).unwrap_or(1);
        *next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn cas_rules() {
        let kv = SharedData::default();
        assert!(kv.get("ns", "k").is_none());
        let t1 = kv.set("ns", "k", Bytes::from_static(b"a"), None).unwrap();
        assert_eq!(kv.get("ns", "k").unwrap(), (Bytes::from_static(b"a"), t1));
        assert_eq!(
            kv.set("ns", "k", Bytes::from_static(b"b"), Some(t1 + 7)),
            Err(CasMismatch)
        );
        let t2 = kv
            .set("ns", "k", Bytes::from_static(b"b"), Some(t1))
            .unwrap();
        assert_ne!(t1, t2);
        assert!(kv.get("other", "k").is_none());
        assert_eq!(kv.remove("ns", "k", Some(t1)), Err(CasMismatch));
        kv.remove("ns", "k", Some(t2)).unwrap();
        assert!(kv.get("ns", "k").is_none());
    }

    #[test]
    fn concurrent_cas_increments_lose_nothing() {
        let kv = Arc::new(SharedData::default());
        kv.set("ns", "n", Bytes::from_static(b"0"), None).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let kv = kv.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        loop {
                            let (v, cas) = kv.get("ns", "n").unwrap();
                            let n: u64 = String::from_utf8_lossy(&v).parse().unwrap();
                            let next = Bytes::from((n + 1).to_string());
                            if kv.set("ns", "n", next, Some(cas)).is_ok() {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(kv.get("ns", "n").unwrap().0, Bytes::from_static(b"2000"));
    }
}
