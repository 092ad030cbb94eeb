//! The answers of the authorization server, kept in the instance's memory: keyed by the SHA-256 of
//! the token (the token itself is not kept), each until its own expiry, at most `max` of them; when
//! full, the entry used least recently makes room.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// A token's key: its SHA-256.
pub type Key = [u8; 32];

/// The key of `token`.
pub fn key(token: &str) -> Key {
    Sha256::digest(token.as_bytes()).into()
}

/// A bounded map of keys to values that expire, evicting the least recently used.
#[derive(Debug)]
pub struct Cache<V> {
    max: usize,
    /// Counts uses: each get and insert takes the next number.
    clock: u64,
    entries: HashMap<Key, Slot<V>>,
    /// The entries by their last use, oldest first.
    by_use: BTreeMap<u64, Key>,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    expires_at_ms: u64,
    used: u64,
}

impl<V> Default for Cache<V> {
    /// An empty cache of one entry.
    fn default() -> Cache<V> {
        Cache::new(1)
    }
}

impl<V> Cache<V> {
    /// An empty cache of at most `max` entries (at least one).
    pub fn new(max: usize) -> Cache<V> {
        Cache {
            max: max.max(1),
            clock: 0,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
        }
    }

    /// How many entries it holds (expired ones included until they are looked up or evicted).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The value of `key` if it has not expired at `now_ms`; an expired entry is removed.
    pub fn get(&mut self, key: &Key, now_ms: u64) -> Option<&V> {
        let expired = self.entries.get(key)?.expires_at_ms <= now_ms;
        if expired {
            self.remove(key);
            return None;
        }
        let used = self.tick();
        let slot = self.entries.get_mut(key)?;
        self.by_use.remove(&slot.used);
        slot.used = used;
        self.by_use.insert(used, *key);
        Some(&slot.value)
    }

    /// Keeps `value` under `key` until `expires_at_ms` (nothing is kept if that is not after
    /// `now_ms`), replacing what `key` had and evicting the least recently used entry when full.
    pub fn insert(&mut self, key: Key, value: V, expires_at_ms: u64, now_ms: u64) {
        if expires_at_ms <= now_ms {
            return;
        }
        self.remove(&key);
        while self.entries.len() >= self.max {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let used = self.tick();
        self.by_use.insert(used, key);
        self.entries.insert(
            key,
            Slot {
                value,
                expires_at_ms,
                used,
            },
        );
    }

    fn remove(&mut self, key: &Key) {
        if let Some(slot) = self.entries.remove(key) {
            self.by_use.remove(&slot.used);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u8) -> Key {
        [n; 32]
    }

    #[test]
    fn keys_are_the_sha256_of_the_token() {
        // sha256("abc")
        assert_eq!(key("abc")[..4], [0xba, 0x78, 0x16, 0xbf],);
        assert_ne!(key("abc"), key("abd"));
    }

    #[test]
    fn entries_expire() {
        let mut c = Cache::new(10);
        c.insert(k(1), "one", 1000, 0);
        assert_eq!(c.get(&k(1), 999), Some(&"one"));
        assert_eq!(c.get(&k(1), 1000), None);
        assert_eq!(c.len(), 0, "an expired entry is removed when looked up");
        // Nothing is kept that has already expired.
        c.insert(k(2), "two", 500, 500);
        assert_eq!(c.len(), 0);
        assert_eq!(c.get(&k(2), 0), None);
    }

    #[test]
    fn an_insert_replaces() {
        let mut c = Cache::new(2);
        c.insert(k(1), "a", 100, 0);
        c.insert(k(1), "b", 200, 0);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&k(1), 150), Some(&"b"));
        assert_eq!(c.by_use.len(), 1);
    }

    #[test]
    fn the_least_recently_used_entry_makes_room() {
        let mut c = Cache::new(3);
        for n in 1..=3 {
            c.insert(k(n), n, 1000, 0);
        }
        // 1 is used again, so 2 is now the least recently used.
        assert_eq!(c.get(&k(1), 1), Some(&1));
        c.insert(k(4), 4, 1000, 1);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&k(2), 2), None);
        for n in [1, 3, 4] {
            assert_eq!(c.get(&k(n), 2), Some(&n), "{n}");
        }
        // Many more than fit: the cache stays at its bound, with the latest.
        for n in 10..100 {
            c.insert(k(n), n, 1000, 3);
        }
        assert_eq!((c.len(), c.by_use.len()), (3, 3));
        for n in 97..100 {
            assert_eq!(c.get(&k(n), 4), Some(&n), "{n}");
        }
    }

    #[test]
    fn a_cache_holds_at_least_one() {
        let mut c = Cache::new(0);
        c.insert(k(1), (), 10, 0);
        assert_eq!(c.get(&k(1), 0), Some(&()));
    }
}
