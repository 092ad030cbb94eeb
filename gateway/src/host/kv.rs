//! The one key-value store both plugin ABIs use: values are bytes in namespaces, every write gets a
//! new version (never 0), a value may expire, `increment` keeps decimal text and is atomic, and
//! compare-and-swap writes only over the version it names.
//!
//! The Proxy-Wasm shared data (`proxy_{get,set}_shared_data`) is [`SharedData::get`] and
//! [`SharedData::set`], where a CAS token of 0 means "no check" as the Proxy-Wasm spec says. The WIT
//! world's `kv` interface is [`SharedData::put`], [`SharedData::delete`], [`SharedData::increment`] and
//! [`SharedData::compare_and_swap`], where a version always has to match.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A write named a version (CAS token) that is no longer current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("compare-and-swap token mismatch")]
pub struct CasMismatch;

/// Why `increment` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IncrementError {
    /// The stored value is not a decimal integer.
    #[error("the value is not a decimal integer")]
    NotANumber,
    /// The sum does not fit in an `i64`.
    #[error("the increment overflows")]
    Overflow,
}

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Compare-and-swap named a version that is not current (or the key is gone).
    #[error("compare-and-swap version mismatch")]
    VersionMismatch,
    /// `increment` on a value that is not a decimal integer.
    #[error("the value is not a decimal integer")]
    NotANumber,
    /// The sum does not fit in an `i64`.
    #[error("the increment overflows")]
    Overflow,
    /// The backend did not answer in time or could not be reached; a write may or may not have
    /// happened.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl From<IncrementError> for StoreError {
    fn from(e: IncrementError) -> Self {
        match e {
            IncrementError::NotANumber => StoreError::NotANumber,
            IncrementError::Overflow => StoreError::Overflow,
        }
    }
}

/// Writes between two sweeps of expired entries, at least (a sweep also waits for as many writes as
/// there are entries, so its cost is amortized). Default: 1024.
const SWEEP_EVERY: usize = 1024;

struct Entry {
    value: Bytes,
    version: u32,
    /// When the value stops being visible; `None` for never.
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

#[derive(Default)]
struct Store {
    map: HashMap<(String, String), Entry>,
    last_version: u32,
    writes_since_sweep: usize,
}

impl Store {
    fn live(&self, slot: &(String, String), now: Instant) -> Option<&Entry> {
        self.map.get(slot).filter(|e| e.live(now))
    }

    fn next_version(&mut self) -> u32 {
        // Versions are never 0: 0 means "no CAS" on the Proxy-Wasm wire.
        self.last_version = self.last_version.checked_add(1).unwrap_or(1);
        self.last_version
    }

    fn write(&mut self, slot: (String, String), value: Bytes, expires: Option<Instant>) -> u32 {
        let version = self.next_version();
        self.map.insert(
            slot,
            Entry {
                value,
                version,
                expires,
            },
        );
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY.max(self.map.len()) {
            let now = Instant::now();
            self.map.retain(|_, e| e.live(now));
            self.writes_since_sweep = 0;
        }
        version
    }
}

/// A decimal integer as Redis reads one for `HINCRBY` (so both backends agree): `0`, or an optional
/// `-` and digits without a leading zero; no spaces, no `+`.
fn strict_integer(text: &[u8]) -> Option<i64> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    let canonical = text == b"0"
        || (!digits.is_empty() && digits[0] != b'0' && digits.iter().all(u8::is_ascii_digit));
    if !canonical {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn slot(namespace: &str, key: &str) -> (String, String) {
    (namespace.to_string(), key.to_string())
}

fn expiry(ttl: Option<Duration>, now: Instant) -> Option<Instant> {
    // A TTL too large for the clock is as good as none.
    ttl.and_then(|t| now.checked_add(t))
}

/// The shared key-value store, partitioned by namespace (a Proxy-Wasm VM id, or `wit:<namespace>` for
/// the WIT world). One per process, in the [`crate::host::HostCore`].
#[derive(Default)]
pub struct SharedData {
    // One lock: every operation is a short map access, and CAS and increment need
    // read-compare-write to be atomic.
    store: Mutex<Store>,
}

impl SharedData {
    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value and its version, or `None` when the key is not set (or has expired).
    pub fn get(&self, namespace: &str, key: &str) -> Option<(Bytes, u32)> {
        let store = self.lock();
        store
            .live(&slot(namespace, key), Instant::now())
            .map(|e| (e.value.clone(), e.version))
    }

    /// Proxy-Wasm `set_shared_data`: writes `value` (without expiry). With `cas` set and non-zero, the
    /// write happens only if it is the key's current version; 0 or `None` means no check. Returns the
    /// new version.
    pub fn set(
        &self,
        namespace: &str,
        key: &str,
        value: Bytes,
        cas: Option<u32>,
    ) -> Result<u32, CasMismatch> {
        let mut store = self.lock();
        let slot = slot(namespace, key);
        if let Some(want) = cas.filter(|c| *c != 0) {
            if store.live(&slot, Instant::now()).map(|e| e.version) != Some(want) {
                return Err(CasMismatch);
            }
        }
        Ok(store.write(slot, value, None))
    }

    /// Writes `value` unconditionally; with `ttl` it expires that long from now. Returns the version.
    pub fn put(&self, namespace: &str, key: &str, value: Bytes, ttl: Option<Duration>) -> u32 {
        let now = Instant::now();
        self.lock()
            .write(slot(namespace, key), value, expiry(ttl, now))
    }

    /// Writes `value` only if `version` is the key's current version (a version of 0, an absent or an
    /// expired key never match); with `ttl` it expires that long from now. Returns the new version.
    pub fn compare_and_swap(
        &self,
        namespace: &str,
        key: &str,
        version: u32,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<u32, CasMismatch> {
        let now = Instant::now();
        let mut store = self.lock();
        let slot = slot(namespace, key);
        match store.live(&slot, now) {
            Some(e) if e.version == version => Ok(store.write(slot, value, expiry(ttl, now))),
            _ => Err(CasMismatch),
        }
    }

    /// Adds `delta` to the decimal integer at `key` (an absent or expired key counts as 0) and returns
    /// the sum, atomically. A key this creates expires after `ttl`; an existing expiry is kept.
    pub fn increment(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, IncrementError> {
        let now = Instant::now();
        let mut store = self.lock();
        let slot = slot(namespace, key);
        let (current, expires) = match store.live(&slot, now) {
            None => (0, expiry(ttl, now)),
            Some(e) => {
                let n = strict_integer(&e.value).ok_or(IncrementError::NotANumber)?;
                (n, e.expires)
            }
        };
        let sum = current.checked_add(delta).ok_or(IncrementError::Overflow)?;
        store.write(slot, Bytes::from(sum.to_string()), expires);
        Ok(sum)
    }

    /// Removes the key (nothing happens if it is absent).
    pub fn delete(&self, namespace: &str, key: &str) {
        self.lock().map.remove(&slot(namespace, key));
    }

    /// Removes the key with the rule of [`SharedData::set`]: a non-zero `cas` must be the current
    /// version.
    pub fn remove(&self, namespace: &str, key: &str, cas: Option<u32>) -> Result<(), CasMismatch> {
        let mut store = self.lock();
        let slot = slot(namespace, key);
        if let Some(want) = cas.filter(|c| *c != 0) {
            if store.live(&slot, Instant::now()).map(|e| e.version) != Some(want) {
                return Err(CasMismatch);
            }
        }
        store.map.remove(&slot);
        Ok(())
    }

    /// Entries held, including expired ones not swept yet.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn proxy_wasm_cas_rules() {
        let kv = SharedData::default();
        assert!(kv.get("ns", "k").is_none());
        // A token on a key that was never written does not match.
        assert_eq!(kv.set("ns", "k", b("a"), Some(3)), Err(CasMismatch));
        let t1 = kv.set("ns", "k", b("a"), None).unwrap();
        assert_ne!(t1, 0);
        assert_eq!(kv.get("ns", "k").unwrap(), (b("a"), t1));
        assert_eq!(kv.set("ns", "k", b("b"), Some(t1 + 7)), Err(CasMismatch));
        let t2 = kv.set("ns", "k", b("b"), Some(t1)).unwrap();
        assert_ne!(t1, t2);
        // 0 means "no check".
        let t3 = kv.set("ns", "k", b("c"), Some(0)).unwrap();
        assert_eq!(kv.get("ns", "k").unwrap(), (b("c"), t3));
        assert_eq!(kv.remove("ns", "k", Some(t2)), Err(CasMismatch));
        kv.remove("ns", "k", Some(t3)).unwrap();
        assert!(kv.get("ns", "k").is_none());
        kv.set("ns", "k", b("d"), None).unwrap();
        kv.remove("ns", "k", Some(0)).unwrap();
        assert!(kv.get("ns", "k").is_none());
    }

    #[test]
    fn values_expire_after_their_ttl() {
        let kv = SharedData::default();
        kv.put("ns", "short", b("s"), Some(Duration::from_millis(200)));
        kv.put("ns", "long", b("l"), Some(Duration::from_secs(60)));
        kv.put("ns", "forever", b("f"), None);
        assert_eq!(kv.get("ns", "short").unwrap().0, b("s"));
        std::thread::sleep(Duration::from_millis(300));
        assert!(kv.get("ns", "short").is_none());
        assert_eq!(kv.get("ns", "long").unwrap().0, b("l"));
        assert_eq!(kv.get("ns", "forever").unwrap().0, b("f"));
        // An expired key counts as absent for increment and compare-and-swap, and its old version
        // no longer matches.
        let v = kv.put("ns", "gone", b("41"), Some(Duration::from_millis(1)));
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(
            kv.compare_and_swap("ns", "gone", v, b("x"), None),
            Err(CasMismatch)
        );
        assert_eq!(kv.increment("ns", "gone", 1, None), Ok(1));
        assert_eq!(kv.set("ns", "short", b("y"), Some(v)), Err(CasMismatch));
    }

    #[test]
    fn increment_keeps_the_ttl() {
        let kv = SharedData::default();
        kv.put("ns", "n", b("1"), Some(Duration::from_millis(200)));
        assert_eq!(kv.increment("ns", "n", 1, None), Ok(2));
        std::thread::sleep(Duration::from_millis(300));
        assert!(kv.get("ns", "n").is_none(), "the increment kept the expiry");
    }

    #[test]
    fn expired_entries_are_swept() {
        let kv = SharedData::default();
        for i in 0..100 {
            kv.put(
                "ns",
                &format!("k{i}"),
                b("v"),
                Some(Duration::from_millis(1)),
            );
        }
        std::thread::sleep(Duration::from_millis(10));
        for i in 0..SWEEP_EVERY {
            kv.put("other", &format!("k{}", i % 10), b("v"), None);
        }
        assert!(kv.len() <= 10, "{} entries left", kv.len());
        assert!(!kv.is_empty());
    }

    #[test]
    fn increment_on_missing_and_non_numeric_values() {
        let kv = SharedData::default();
        assert_eq!(kv.increment("ns", "n", 5, None), Ok(5));
        assert_eq!(kv.increment("ns", "n", -7, None), Ok(-2));
        assert_eq!(kv.get("ns", "n").unwrap().0, b("-2"));
        kv.put("ns", "text", b("abc"), None);
        let before = kv.get("ns", "text").unwrap();
        assert_eq!(
            kv.increment("ns", "text", 1, None),
            Err(IncrementError::NotANumber)
        );
        assert_eq!(kv.get("ns", "text").unwrap(), before, "nothing written");
        kv.put("ns", "big", Bytes::from(i64::MAX.to_string()), None);
        assert_eq!(
            kv.increment("ns", "big", 1, None),
            Err(IncrementError::Overflow)
        );
        // Each increment is a write with a new version.
        let (_, v1) = kv.get("ns", "n").unwrap();
        kv.increment("ns", "n", 0, None).unwrap();
        assert_ne!(kv.get("ns", "n").unwrap().1, v1);
    }

    #[test]
    fn increment_reads_integers_as_redis_does() {
        let kv = SharedData::default();
        for ok in ["0", "7", "-12", "9223372036854775806"] {
            kv.put("ns", "n", Bytes::from(ok), None);
            let want = ok.parse::<i64>().unwrap() + 1;
            assert_eq!(kv.increment("ns", "n", 1, None), Ok(want), "{ok}");
        }
        for bad in ["007", "+5", " 5", "5\n", "-0", "", "-", "1e3", "5.0"] {
            kv.put("ns", "n", Bytes::from(bad), None);
            assert_eq!(
                kv.increment("ns", "n", 1, None),
                Err(IncrementError::NotANumber),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_increment_that_creates_a_key_sets_its_expiry_and_later_ones_keep_it() {
        let kv = SharedData::default();
        // Long enough that three increments never straddle it on a loaded machine.
        let ttl = Some(Duration::from_millis(600));
        assert_eq!(kv.increment("ns", "w", 1, ttl), Ok(1));
        // Later increments neither extend nor drop the first one's expiry.
        assert_eq!(
            kv.increment("ns", "w", 1, Some(Duration::from_secs(3600))),
            Ok(2)
        );
        assert_eq!(kv.increment("ns", "w", 1, None), Ok(3));
        std::thread::sleep(Duration::from_millis(700));
        assert!(kv.get("ns", "w").is_none(), "expired with the first TTL");
        assert_eq!(kv.increment("ns", "w", 1, None), Ok(1), "a new window");
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            kv.get("ns", "w").is_some(),
            "created without a TTL: no expiry"
        );
    }

    #[test]
    fn compare_and_swap_needs_the_current_version() {
        let kv = SharedData::default();
        assert_eq!(
            kv.compare_and_swap("ns", "k", 1, b("x"), None),
            Err(CasMismatch),
            "an absent key never matches"
        );
        let v1 = kv.put("ns", "k", b("one"), None);
        assert_eq!(
            kv.compare_and_swap("ns", "k", 0, b("x"), None),
            Err(CasMismatch),
            "0 is never a version"
        );
        assert_eq!(
            kv.compare_and_swap("ns", "k", v1.wrapping_add(1000), b("x"), None),
            Err(CasMismatch)
        );
        assert_eq!(kv.get("ns", "k").unwrap(), (b("one"), v1));
        let v2 = kv
            .compare_and_swap("ns", "k", v1, b("two"), Some(Duration::from_millis(200)))
            .unwrap();
        assert_ne!(v1, v2);
        assert_eq!(
            kv.compare_and_swap("ns", "k", v1, b("three"), None),
            Err(CasMismatch),
            "a version is used once"
        );
        assert_eq!(kv.get("ns", "k").unwrap(), (b("two"), v2));
        std::thread::sleep(Duration::from_millis(300));
        assert!(kv.get("ns", "k").is_none(), "the swap set the TTL");
    }

    #[test]
    fn namespaces_are_apart() {
        let kv = SharedData::default();
        kv.put("a", "k", b("in a"), None);
        kv.set("b", "k", b("in b"), None).unwrap();
        assert_eq!(kv.get("a", "k").unwrap().0, b("in a"));
        assert_eq!(kv.get("b", "k").unwrap().0, b("in b"));
        assert!(kv.get("c", "k").is_none());
        assert_eq!(kv.increment("c", "k", 1, None), Ok(1));
        kv.delete("a", "k");
        assert!(kv.get("a", "k").is_none());
        assert_eq!(kv.get("b", "k").unwrap().0, b("in b"));
        // The namespace and key are not joined into one string that two pairs could share.
        kv.put("x:", "y", b("1"), None);
        assert!(kv.get("x", ":y").is_none());
    }

    #[test]
    fn concurrent_cas_increments_lose_nothing() {
        let kv = Arc::new(SharedData::default());
        kv.set("ns", "n", b("0"), None).unwrap();
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
        assert_eq!(kv.get("ns", "n").unwrap().0, b("2000"));
    }

    #[test]
    fn concurrent_increments_lose_nothing() {
        let kv = Arc::new(SharedData::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let kv = kv.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        kv.increment("ns", "n", 1, None).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(kv.get("ns", "n").unwrap().0, b("2000"));
    }
}
