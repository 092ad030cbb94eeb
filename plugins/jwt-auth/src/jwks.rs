//! The JWKS: reading a key set (RFC 7517 section 5), and the instance's cache of it, which decides
//! when to fetch again: when there is none yet, when it is older than `cache_ttl`, and when a token
//! names a key it does not have. Fetches are never closer together than `min_refresh_interval`,
//! whatever tokens come, so random `kid`s cannot make the gateway hammer the identity provider. A
//! copy that cannot be fetched again is used for `max_stale` past its `cache_ttl`, and then no more:
//! keys the provider has revoked do not verify tokens forever.
//!
//! The cache lives in the instance's memory: a warm reused instance fetches once per `cache_ttl`; a
//! fresh instance per request starts empty and fetches on every request that needs the JWKS.

use crate::keys::{self, Key};
use serde_json::Value;

/// The largest JWKS document read, in bytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The most keys kept from one JWKS (more are ignored, logged): bounds memory and the keys tried
/// for a token without `kid`.
pub const MAX_JWKS_KEYS: usize = 32;

/// A JWKS document read: its usable keys, and why others were skipped.
#[derive(Debug)]
pub struct KeySet {
    pub keys: Vec<Key>,
    pub skipped: Vec<String>,
}

/// Reads a JWKS document. Keys that cannot verify signatures here (other types, encryption keys,
/// symmetric keys) are skipped with a reason; a document with no usable key is an error.
pub fn parse(body: &[u8]) -> Result<KeySet, String> {
    if body.len() > MAX_JWKS_BYTES {
        return Err(format!("the JWKS is over {MAX_JWKS_BYTES} bytes"));
    }
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("the JWKS is not JSON ({e})"))?;
    let Some(list) = doc.get("keys").and_then(Value::as_array) else {
        return Err("the JWKS has no `keys` list".into());
    };
    let mut set = KeySet {
        keys: Vec::new(),
        skipped: Vec::new(),
    };
    for (i, jwk) in list.iter().enumerate() {
        match keys::from_jwk(jwk) {
            Ok(_) if set.keys.len() == MAX_JWKS_KEYS => set
                .skipped
                .push(format!("keys[{i}]: over {MAX_JWKS_KEYS} keys")),
            Ok(key) => set.keys.push(key),
            Err(why) => set.skipped.push(format!("keys[{i}]: {why}")),
        }
    }
    if set.keys.is_empty() {
        let why = set
            .skipped
            .first()
            .map_or("it is empty".into(), Clone::clone);
        return Err(format!("the JWKS has no usable key ({why})"));
    }
    Ok(set)
}

/// When to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a fetched JWKS is used before it is fetched again, in milliseconds.
    pub cache_ttl_ms: u64,
    /// The least time between two fetches (successful or not), in milliseconds.
    pub min_refresh_ms: u64,
    /// How long past `cache_ttl_ms` a copy that cannot be fetched again is still used, in
    /// milliseconds.
    pub max_stale_ms: u64,
}

/// The instance's copy of the JWKS.
#[derive(Debug, Default)]
pub struct Cache {
    keys: Option<Vec<Key>>,
    fetched_at: u64,
    last_attempt: Option<u64>,
}

/// Why there are no keys to give.
#[derive(Debug, PartialEq, Eq)]
pub struct Unavailable;

impl Cache {
    /// The JWKS keys to verify a token with, at `now_ms`. Fetches with `fetch` (at most once per
    /// call) when there is no copy or it has expired, or when `fits` says the copy has no key for
    /// the token; in each case only if the last fetch was at least `min_refresh_ms` ago. A failed
    /// fetch keeps the copy there is (logged by `fetch`). `Unavailable` when there is no copy, or
    /// the copy is older than `cache_ttl_ms + max_stale_ms`.
    pub fn keys(
        &mut self,
        timing: Timing,
        now_ms: u64,
        fits: impl Fn(&[Key]) -> bool,
        fetch: impl FnOnce() -> Result<Vec<Key>, String>,
    ) -> Result<&[Key], Unavailable> {
        let may_fetch = self
            .last_attempt
            .is_none_or(|t| now_ms.saturating_sub(t) >= timing.min_refresh_ms);
        let wanted = match &self.keys {
            None => true,
            Some(_) if now_ms.saturating_sub(self.fetched_at) >= timing.cache_ttl_ms => true,
            Some(keys) => !fits(keys),
        };
        if wanted && may_fetch {
            self.last_attempt = Some(now_ms);
            if let Ok(keys) = fetch() {
                self.keys = Some(keys);
                self.fetched_at = now_ms;
            }
        }
        let too_old = now_ms.saturating_sub(self.fetched_at)
            >= timing.cache_ttl_ms.saturating_add(timing.max_stale_ms);
        match &self.keys {
            Some(keys) if !too_old => Ok(keys),
            _ => Err(Unavailable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{search, Alg, Search};
    use crate::test_keys::*;
    use serde_json::json;
    use std::cell::Cell;

    const T: Timing = Timing {
        cache_ttl_ms: 300_000,
        min_refresh_ms: 10_000,
        max_stale_ms: 1_200_000,
    };

    fn set(kids: &[&str]) -> Vec<Key> {
        kids.iter()
            .map(|k| keys::from_jwk(&public_jwk(Alg::ES256, Some(k))).unwrap())
            .collect()
    }

    fn has(kid: &'static str) -> impl Fn(&[Key]) -> bool {
        move |keys| matches!(search(keys, Some(kid), Alg::ES256), Search::Found(_))
    }

    /// Asks the cache for `kid` at `now`, serving `serve` (or failing) if it fetches; returns
    /// whether it fetched and the kids it gave.
    fn ask(
        cache: &mut Cache,
        now: u64,
        kid: &'static str,
        serve: Option<&[&str]>,
    ) -> (bool, Option<Vec<String>>) {
        let fetched = Cell::new(false);
        let got = cache.keys(T, now, has(kid), || {
            fetched.set(true);
            serve.map(set).ok_or_else(|| "refused".to_string())
        });
        let kids = got
            .ok()
            .map(|keys| keys.iter().map(|k| k.kid.clone().unwrap()).collect());
        (fetched.get(), kids)
    }

    #[test]
    fn fetched_once_then_cached_until_the_ttl() {
        let mut c = Cache::default();
        let k1 = Some(&["k1"][..]);
        assert_eq!(
            ask(&mut c, 1_000, "k1", k1),
            (true, Some(vec!["k1".into()]))
        );
        assert!(!ask(&mut c, 2_000, "k1", k1).0);
        assert!(!ask(&mut c, 300_999, "k1", k1).0);
        assert!(ask(&mut c, 301_000, "k1", k1).0);
        assert!(!ask(&mut c, 301_001, "k1", k1).0);
    }

    #[test]
    fn an_unknown_kid_refreshes_at_most_once_per_interval() {
        let mut c = Cache::default();
        let both = Some(&["k1", "k2"][..]);
        assert!(ask(&mut c, 0, "k1", Some(&["k1"])).0);
        // Too soon after the first fetch: k2 stays unknown, nothing is fetched.
        assert_eq!(
            ask(&mut c, 9_999, "k2", both),
            (false, Some(vec!["k1".into()]))
        );
        // Then one refresh finds it.
        assert_eq!(
            ask(&mut c, 10_000, "k2", both),
            (true, Some(vec!["k1".into(), "k2".into()]))
        );
        // A kid nobody has: one refresh, then none within the interval however often it comes.
        assert!(ask(&mut c, 20_000, "k3", both).0);
        for now in [20_001, 25_000, 29_999] {
            assert!(!ask(&mut c, now, "k3", both).0);
        }
        assert!(ask(&mut c, 30_000, "k3", both).0);
        // A known kid never refreshes early.
        assert!(!ask(&mut c, 45_000, "k1", both).0);
    }

    #[test]
    fn a_failed_fetch_keeps_the_copy_and_waits_the_interval() {
        let mut c = Cache::default();
        // Nothing cached and the fetch fails: unavailable, and no new try within the interval.
        assert_eq!(ask(&mut c, 0, "k1", None), (true, None));
        assert_eq!(ask(&mut c, 5_000, "k1", Some(&["k1"])), (false, None));
        assert!(ask(&mut c, 10_000, "k1", Some(&["k1"])).0);
        // Expired, and the identity provider is down: the old keys still serve.
        assert_eq!(
            ask(&mut c, 310_000, "k1", None),
            (true, Some(vec!["k1".into()]))
        );
        assert!(!ask(&mut c, 315_000, "k1", Some(&["k1"])).0);
        assert!(ask(&mut c, 320_000, "k1", Some(&["k1"])).0);
    }

    #[test]
    fn a_copy_that_cannot_be_refreshed_serves_for_max_stale_then_no_more() {
        let mut c = Cache::default();
        assert!(ask(&mut c, 0, "k1", Some(&["k1"])).0);
        // Expired at 300 s; the provider is down from then on. The copy serves until
        // cache_ttl + max_stale (1500 s) after its fetch...
        let k1 = Some(vec!["k1".to_string()]);
        assert_eq!(ask(&mut c, 300_000, "k1", None), (true, k1.clone()));
        assert_eq!(ask(&mut c, 1_499_999, "k1", None), (true, k1.clone()));
        // ...and then no more: unavailable, whatever the tokens, fetched again once per interval.
        assert_eq!(ask(&mut c, 1_500_000, "k1", None), (false, None));
        assert_eq!(ask(&mut c, 1_509_998, "k1", None), (false, None));
        assert_eq!(ask(&mut c, 1_509_999, "k1", None), (true, None));
        // A fetch that works again brings it back.
        assert_eq!(ask(&mut c, 1_519_999, "k1", Some(&["k1"])), (true, k1));
    }

    #[test]
    fn key_sets_are_read() {
        let doc = json!({"keys": [
            public_jwk(Alg::RS256, Some("rsa")),
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hs"},
            public_jwk(Alg::EdDSA, Some("ed")),
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
        ]});
        let set = parse(doc.to_string().as_bytes()).unwrap();
        let kids: Vec<_> = set.keys.iter().map(|k| k.kid.clone().unwrap()).collect();
        assert_eq!(kids, ["rsa", "ed"]);
        assert_eq!(set.skipped.len(), 2);
        assert!(set.skipped[0].starts_with("keys[1]: "), "{:?}", set.skipped);

        for (body, why) in [
            (b"<html>".to_vec(), "not JSON"),
            (b"{\"keys\": {}}".to_vec(), "no `keys` list"),
            (b"[]".to_vec(), "no `keys` list"),
            (b"{\"keys\": []}".to_vec(), "no usable key (it is empty)"),
            (
                json!({"keys": [{"kty": "oct", "k": "AA"}]})
                    .to_string()
                    .into_bytes(),
                "no usable key (keys[0]: symmetric",
            ),
            (vec![b' '; MAX_JWKS_BYTES + 1], "over"),
        ] {
            let e = parse(&body).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn a_key_set_keeps_a_bounded_number_of_keys() {
        let many: Vec<Value> = (0..MAX_JWKS_KEYS + 3)
            .map(|i| public_jwk(Alg::EdDSA, Some(&format!("k{i}"))))
            .collect();
        let set = parse(json!({ "keys": many }).to_string().as_bytes()).unwrap();
        assert_eq!(set.keys.len(), MAX_JWKS_KEYS);
        assert_eq!(set.skipped.len(), 3);
    }
}
