//! The three algorithms, written against [`Store`] (the kv namespace, or a fake in tests) and a time
//! passed in, so that they are tested natively with a clock the tests move.
//!
//! - Fixed window: one counter per window, aligned on the Unix epoch (so every gateway process
//!   agrees on the windows), created with `increment_with_ttl` and expiring after its window.
//! - Sliding window: the current window's counter plus the previous window's, weighted by the share
//!   of the previous window that a period ending now still covers (Cloudflare's and Kong's estimate).
//! - Token bucket: `tokens,last-ms` in one key, rewritten with compare-and-swap (at most
//!   [`MAX_CAS_ATTEMPTS`] tries); `burst` tokens refilled at `limit` per period.
//!
//! A window counter counts admitted requests only: a refused request's increment is given back, so a
//! client sending more than its limit still gets its limit's worth (Kong's behaviour). A token bucket
//! takes a token only from an admitted request.

use crate::config::{Algorithm, Limit};

/// Milliseconds a counter outlives its window, for clocks of gateway processes that differ a little.
pub const TTL_SLACK_MS: u64 = 5_000;

/// Compare-and-swap tries of a token bucket before the request is refused as over the limit: each
/// version mismatch means another request changed the bucket in between, so only a key under heavy
/// concurrent traffic runs out of tries. Default: 8.
pub const MAX_CAS_ATTEMPTS: usize = 8;

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Compare-and-swap with a version that is no longer the key's.
    VersionMismatch,
    /// `increment` on a value that is not a decimal integer.
    NotANumber,
    /// The store could not answer in time (a write may or may not have happened).
    Unavailable(String),
    /// Anything else (no namespace granted, a key refused).
    Failed(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::VersionMismatch => write!(f, "version mismatch"),
            StoreError::NotANumber => write!(f, "not a number"),
            StoreError::Unavailable(m) => write!(f, "store unavailable: {m}"),
            StoreError::Failed(m) => write!(f, "{m}"),
        }
    }
}

/// The calls of the kv namespace the algorithms use.
pub trait Store {
    /// Adds `delta` to the integer at `key` (absent: 0) atomically; a key it creates expires
    /// `ttl_ms` from now, an existing expiry is kept.
    fn increment_with_ttl(&mut self, key: &str, delta: i64, ttl_ms: u64)
        -> Result<i64, StoreError>;
    /// The value of `key` and its version, if set and not expired.
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    /// Writes `value` (expiring `ttl_ms` from now) if `version` is still the key's version.
    fn compare_and_swap(
        &mut self,
        key: &str,
        version: u32,
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<u32, StoreError>;
}

/// Where one limit stands after a request.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The limit.
    pub limit: Limit,
    /// What `RateLimit-Limit` shows: the limit, or a token bucket's `burst`.
    pub quota: u64,
    /// Requests still admitted now.
    pub remaining: u64,
    /// Milliseconds until the quota is whole again (a window's end; a bucket full).
    pub reset_ms: u64,
    /// Whether this limit refused the request.
    pub refused: bool,
    /// When refused: milliseconds until a request may be admitted.
    pub retry_after_ms: u64,
    /// When refused: because compare-and-swap ran out of tries.
    pub contended: bool,
}

/// The verdict of all the limits on one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Each limit's state, in config order.
    pub states: Vec<State>,
}

impl Outcome {
    /// Whether every limit admitted the request.
    pub fn admitted(&self) -> bool {
        self.states.iter().all(|s| !s.refused)
    }

    /// Milliseconds until a refused request may be admitted (the longest wait of the limits that
    /// refused it); 0 when admitted.
    pub fn retry_after_ms(&self) -> u64 {
        self.states
            .iter()
            .filter(|s| s.refused)
            .map(|s| s.retry_after_ms)
            .max()
            .unwrap_or(0)
    }

    /// The most restrictive limit: the one that refused the request with the longest wait, or the
    /// one with the fewest requests remaining (the longest reset on a tie).
    pub fn tightest(&self) -> Option<&State> {
        if !self.admitted() {
            return self
                .states
                .iter()
                .filter(|s| s.refused)
                .max_by_key(|s| s.retry_after_ms);
        }
        self.states.iter().min_by(|a, b| {
            a.remaining
                .cmp(&b.remaining)
                .then(b.reset_ms.cmp(&a.reset_ms))
        })
    }
}

/// Applies `limits` to one request whose counters are keyed under `base`, at `now_ms` (Unix
/// milliseconds). Window limits are counted first; token buckets take a token only when every
/// window admitted the request, and are only read when a limit before them refused it. A store
/// error stops at once (the caller applies `on_store_error`).
pub fn apply(
    limits: &[Limit],
    base: &str,
    now_ms: u64,
    store: &mut impl Store,
) -> Result<Outcome, StoreError> {
    let mut states: Vec<Option<State>> = vec![None; limits.len()];
    let mut taken = Vec::new();
    for (i, l) in limits.iter().enumerate() {
        let state = match l.algorithm {
            Algorithm::FixedWindow => fixed_window(l, base, now_ms, store)?,
            Algorithm::SlidingWindow => sliding_window(l, base, now_ms, store)?,
            Algorithm::TokenBucket { .. } => continue,
        };
        taken.push(i);
        states[i] = Some(state);
    }
    let mut refused = states.iter().flatten().any(|s| s.refused);
    for (i, l) in limits.iter().enumerate() {
        if let Algorithm::TokenBucket { burst } = l.algorithm {
            let state = token_bucket(l, burst, base, now_ms, !refused, store)?;
            refused |= state.refused;
            states[i] = Some(state);
        }
    }
    if refused {
        // Counters count admitted requests: give this one back. A failure here only leaves a count
        // one too high until its window ends.
        for i in taken {
            let l = &limits[i];
            let _ = store.increment_with_ttl(&window_key(l, base, now_ms / l.per.ms()), -1, 0);
            if let Some(s) = states[i].as_mut().filter(|s| !s.refused) {
                s.remaining = (s.remaining + 1).min(s.quota);
            }
        }
    }
    Ok(Outcome {
        states: states.into_iter().flatten().collect(),
    })
}

fn window_key(l: &Limit, base: &str, window: u64) -> String {
    let algo = match l.algorithm {
        Algorithm::SlidingWindow => "sw",
        _ => "fw",
    };
    format!("{base}|{algo}|{}|{window}", l.per.name())
}

fn fixed_window(
    l: &Limit,
    base: &str,
    now: u64,
    store: &mut impl Store,
) -> Result<State, StoreError> {
    let period = l.per.ms();
    let window = now / period;
    let to_end = (window + 1) * period - now;
    let count = store.increment_with_ttl(&window_key(l, base, window), 1, to_end + TTL_SLACK_MS)?;
    let count = count.max(0) as u64;
    let refused = count > l.limit;
    Ok(State {
        limit: *l,
        quota: l.limit,
        remaining: l.limit.saturating_sub(count),
        reset_ms: to_end,
        refused,
        retry_after_ms: if refused { to_end } else { 0 },
        contended: false,
    })
}

fn sliding_window(
    l: &Limit,
    base: &str,
    now: u64,
    store: &mut impl Store,
) -> Result<State, StoreError> {
    let period = l.per.ms();
    let window = now / period;
    let elapsed = now - window * period;
    let to_end = period - elapsed;
    // The current counter is the previous one during the next window: it lives through both.
    let current = store
        .increment_with_ttl(
            &window_key(l, base, window),
            1,
            to_end + period + TTL_SLACK_MS,
        )?
        .max(0) as f64;
    let previous = match window.checked_sub(1) {
        None => 0.0,
        Some(w) => match store.get(&window_key(l, base, w))? {
            None => 0.0,
            Some((value, _)) => std::str::from_utf8(&value)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .unwrap_or(0)
                .max(0) as f64,
        },
    };
    let (limit, p) = (l.limit as f64, period as f64);
    let weight = (period - elapsed) as f64 / p;
    let estimate = previous * weight + current;
    let refused = estimate > limit;
    let retry_after_ms = if !refused {
        0
    } else if current <= limit {
        // This window has room (`current - 1` admitted, as this one is given back, and one more):
        // wait until the previous window weighs little enough.
        let at = p * (1.0 - (limit - current) / previous);
        ceil_ms(at - elapsed as f64).max(1)
    } else {
        // The next window, where this window's admitted requests weigh in: `current` less the one
        // being refused, which is given back.
        let admitted = current - 1.0;
        let into_next = if admitted <= 0.0 {
            0.0
        } else {
            p * (1.0 - (limit - 1.0) / admitted).max(0.0)
        };
        to_end + ceil_ms(into_next)
    };
    // What the estimate is once a refused request is given back.
    let counted = if refused { estimate - 1.0 } else { estimate };
    Ok(State {
        limit: *l,
        quota: l.limit,
        remaining: (limit - counted).floor().max(0.0) as u64,
        reset_ms: to_end,
        refused,
        retry_after_ms,
        contended: false,
    })
}

/// Milliseconds rounded up, ignoring the float error of `60000 * (1 - 0.7)` = 18000.000000000004.
fn ceil_ms(ms: f64) -> u64 {
    (ms - 1e-6).ceil().max(0.0) as u64
}

/// A token bucket's state as stored: `tokens,last-ms` (tokens with six decimals).
fn bucket_value(tokens: f64, at: u64) -> String {
    format!("{tokens:.6},{at}")
}

fn parse_bucket(value: &[u8]) -> Option<(f64, u64)> {
    let s = std::str::from_utf8(value).ok()?;
    let (tokens, at) = s.split_once(',')?;
    let tokens = tokens.parse::<f64>().ok().filter(|t| t.is_finite())?;
    Some((tokens, at.parse().ok()?))
}

fn token_bucket(
    l: &Limit,
    burst: u64,
    base: &str,
    now: u64,
    take: bool,
    store: &mut impl Store,
) -> Result<State, StoreError> {
    let key = format!("{base}|tb|{}", l.per.name());
    let per_ms = l.limit as f64 / l.per.ms() as f64;
    let full = burst as f64;
    // A bucket untouched for this long is full again, as a bucket that is not there.
    let ttl = ceil_ms(full / per_ms) + TTL_SLACK_MS;
    let state = |tokens: f64, refused: bool, contended: bool| State {
        limit: *l,
        quota: burst,
        remaining: tokens.floor().max(0.0) as u64,
        reset_ms: ceil_ms((full - tokens).max(0.0) / per_ms),
        refused,
        retry_after_ms: if refused {
            ceil_ms((1.0 - tokens).max(0.0) / per_ms).max(1)
        } else {
            0
        },
        contended,
    };
    let (mut tries, mut created) = (0, false);
    while tries < MAX_CAS_ATTEMPTS {
        let Some((value, version)) = store.get(&key)? else {
            if !take {
                return Ok(state(full, false, false));
            }
            // Creates the key ("0", with its TTL) so that compare-and-swap has a version to name;
            // whoever wrote a bucket in between makes this a harmless NotANumber. A key gone again
            // after that counts as a try.
            if created {
                tries += 1;
            }
            created = true;
            match store.increment_with_ttl(&key, 0, ttl) {
                Ok(_) | Err(StoreError::NotANumber) => continue,
                Err(e) => return Err(e),
            }
        };
        // A bucket just created ("0") or unreadable is a full one.
        let (tokens, at) = parse_bucket(&value).unwrap_or((full, now));
        let refilled = (tokens + now.saturating_sub(at) as f64 * per_ms).min(full);
        if !take {
            return Ok(state(refilled, false, false));
        }
        if refilled < 1.0 {
            return Ok(state(refilled, true, false));
        }
        let left = refilled - 1.0;
        match store.compare_and_swap(&key, version, bucket_value(left, now).as_bytes(), ttl) {
            Ok(_) => return Ok(state(left, false, false)),
            Err(StoreError::VersionMismatch) => tries += 1,
            Err(e) => return Err(e),
        }
    }
    // Other requests changed the bucket between each read and write: the key is busy enough to be
    // refused. The client may try again soon: a token's refill, at most a second (a bucket of 100 a
    // day refills one token in 864 s, which says nothing of a busy key).
    let mut busy = state(0.0, true, true);
    busy.retry_after_ms = busy.retry_after_ms.min(CONTENDED_RETRY_MS);
    Ok(busy)
}

/// The longest `Retry-After` of a request refused because its bucket was too busy to update.
const CONTENDED_RETRY_MS: u64 = 1000;

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::config::Period;
    use std::collections::HashMap;

    /// An in-memory store with a clock the test sets, expiring keys as the kv store does.
    #[derive(Default)]
    pub struct FakeStore {
        pub now: u64,
        /// key -> (value, version, expires at)
        pub map: HashMap<String, (Vec<u8>, u32, Option<u64>)>,
        pub version: u32,
        /// Each call fails with this while set.
        pub down: Option<StoreError>,
        /// Compare-and-swaps that fail with a version mismatch (another writer won), before they
        /// succeed again.
        pub steal_cas: usize,
        pub calls: usize,
    }

    impl FakeStore {
        fn live(&mut self, key: &str) -> Option<&(Vec<u8>, u32, Option<u64>)> {
            let now = self.now;
            if self
                .map
                .get(key)
                .is_some_and(|e| e.2.is_some_and(|t| t <= now))
            {
                self.map.remove(key);
            }
            self.map.get(key)
        }

        fn up(&mut self) -> Result<(), StoreError> {
            self.calls += 1;
            match &self.down {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            }
        }

        pub fn int(&mut self, key: &str) -> Option<i64> {
            let e = self.live(key)?;
            std::str::from_utf8(&e.0).ok()?.parse().ok()
        }
    }

    impl Store for FakeStore {
        fn increment_with_ttl(
            &mut self,
            key: &str,
            delta: i64,
            ttl_ms: u64,
        ) -> Result<i64, StoreError> {
            self.up()?;
            let now = self.now;
            let (n, expires) = match self.live(key) {
                None => (0, Some(now + ttl_ms)),
                Some((v, _, exp)) => {
                    let exp = *exp;
                    let n = std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .ok_or(StoreError::NotANumber)?;
                    (n, exp)
                }
            };
            self.version += 1;
            let sum = n + delta;
            self.map.insert(
                key.into(),
                (sum.to_string().into_bytes(), self.version, expires),
            );
            Ok(sum)
        }

        fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            self.up()?;
            Ok(self.live(key).map(|e| (e.0.clone(), e.1)))
        }

        fn compare_and_swap(
            &mut self,
            key: &str,
            version: u32,
            value: &[u8],
            ttl_ms: u64,
        ) -> Result<u32, StoreError> {
            self.up()?;
            if self.steal_cas > 0 {
                self.steal_cas -= 1;
                return Err(StoreError::VersionMismatch);
            }
            let now = self.now;
            match self.live(key) {
                Some(e) if e.1 == version => {
                    self.version += 1;
                    let v = self.version;
                    self.map
                        .insert(key.into(), (value.to_vec(), v, Some(now + ttl_ms)));
                    Ok(v)
                }
                _ => Err(StoreError::VersionMismatch),
            }
        }
    }

    fn limit(per: Period, limit: u64, algorithm: Algorithm) -> Limit {
        Limit {
            per,
            limit,
            algorithm,
        }
    }

    /// Sends `n` requests at the store's time; how many were admitted.
    fn admitted(limits: &[Limit], store: &mut FakeStore, n: usize) -> usize {
        (0..n)
            .filter(|_| apply(limits, "k", store.now, store).unwrap().admitted())
            .count()
    }

    const MIN: u64 = 60_000;

    #[test]
    fn fixed_window_admits_the_limit_then_refuses_until_the_window_ends() {
        let l = [limit(Period::Minute, 3, Algorithm::FixedWindow)];
        let mut s = FakeStore {
            now: 100 * MIN + 15_000,
            ..FakeStore::default()
        };
        let o = apply(&l, "k", s.now, &mut s).unwrap();
        assert!(o.admitted());
        assert_eq!((o.states[0].remaining, o.states[0].reset_ms), (2, 45_000));
        assert_eq!(admitted(&l, &mut s, 2), 2);
        let o = apply(&l, "k", s.now, &mut s).unwrap();
        assert!(!o.admitted());
        assert_eq!(o.states[0].remaining, 0);
        assert_eq!(o.retry_after_ms(), 45_000);
        assert_eq!(
            s.int("k|fw|minute|100"),
            Some(3),
            "refused requests are given back"
        );
        // The last millisecond of the window is still the window; the next one is a new window.
        s.now = 101 * MIN - 1;
        assert_eq!(apply(&l, "k", s.now, &mut s).unwrap().retry_after_ms(), 1);
        s.now = 101 * MIN;
        assert_eq!(admitted(&l, &mut s, 5), 3);
        // The counter expires after its window (and the slack).
        assert!(s.live("k|fw|minute|101").is_some());
        s.now = 102 * MIN + TTL_SLACK_MS;
        assert!(s.live("k|fw|minute|101").is_none());
    }

    #[test]
    fn keys_count_apart() {
        let l = [limit(Period::Second, 1, Algorithm::FixedWindow)];
        let mut s = FakeStore::default();
        assert!(apply(&l, "a", 0, &mut s).unwrap().admitted());
        assert!(apply(&l, "b", 0, &mut s).unwrap().admitted());
        assert!(!apply(&l, "a", 0, &mut s).unwrap().admitted());
    }

    #[test]
    fn sliding_window_weighs_the_previous_window() {
        let l = [limit(Period::Minute, 10, Algorithm::SlidingWindow)];
        let mut s = FakeStore {
            now: 10 * MIN + 30_000,
            ..FakeStore::default()
        };
        assert_eq!(admitted(&l, &mut s, 12), 10);
        // A quarter into the next window, the previous 10 weigh 7.5: two more fit (9.5), not three.
        s.now = 11 * MIN + 15_000;
        let o = apply(&l, "k", s.now, &mut s).unwrap();
        assert!(o.admitted());
        assert_eq!(o.states[0].remaining, 1, "10 - (7.5 + 1)");
        assert!(apply(&l, "k", s.now, &mut s).unwrap().admitted());
        let o = apply(&l, "k", s.now, &mut s).unwrap();
        assert!(!o.admitted());
        // 7.5 + 2 admitted: one more fits once the previous window weighs 7, at 18 s.
        assert_eq!(o.retry_after_ms(), 3_000);
        s.now = 11 * MIN + 18_000;
        assert_eq!(admitted(&l, &mut s, 2), 1);
        // Half-way, the previous window weighs 5: 10 - 5 - 3 = 2 more.
        s.now = 11 * MIN + 30_000;
        assert_eq!(admitted(&l, &mut s, 5), 2);
        // Two windows on, nothing weighs: the previous counter (window 12) is empty.
        s.now = 13 * MIN;
        assert_eq!(admitted(&l, &mut s, 11), 10);
    }

    #[test]
    fn sliding_window_full_window_waits_into_the_next() {
        let l = [limit(Period::Minute, 4, Algorithm::SlidingWindow)];
        let mut s = FakeStore {
            now: 5 * MIN + 45_000,
            ..FakeStore::default()
        };
        assert_eq!(admitted(&l, &mut s, 4), 4);
        let o = apply(&l, "k", s.now, &mut s).unwrap();
        // 15 s to the window's end, then until 4 * (1 - f) + 1 <= 4: f = 1/4, 15 s more.
        assert_eq!(o.retry_after_ms(), 30_000);
        s.now += 30_000;
        assert_eq!(admitted(&l, &mut s, 2), 1);
    }

    #[test]
    fn token_bucket_bursts_then_refills_at_the_rate() {
        let l = [limit(
            Period::Second,
            2,
            Algorithm::TokenBucket { burst: 5 },
        )];
        let mut s = FakeStore {
            now: 1_000_000,
            ..FakeStore::default()
        };
        let o = apply(&l, "k", s.now, &mut s).unwrap();
        assert_eq!((o.states[0].quota, o.states[0].remaining), (5, 4));
        assert_eq!(o.states[0].reset_ms, 500, "one token at 2 per second");
        assert_eq!(admitted(&l, &mut s, 6), 4, "the burst");
        let o = apply(&l, "k", s.now, &mut s).unwrap();
        assert!(!o.admitted());
        assert_eq!(o.retry_after_ms(), 500);
        assert_eq!(o.states[0].reset_ms, 2_500);
        s.now += 499;
        assert_eq!(admitted(&l, &mut s, 1), 0);
        s.now += 1;
        assert_eq!(admitted(&l, &mut s, 2), 1);
        // Refill never exceeds the burst.
        s.now += 60_000;
        assert_eq!(admitted(&l, &mut s, 7), 5);
        // A bucket left alone long enough expires, and a new one is full.
        s.now += 2_500 + TTL_SLACK_MS;
        assert!(s.live("k|tb|second").is_none());
        assert_eq!(admitted(&l, &mut s, 7), 5);
    }

    #[test]
    fn token_bucket_state_is_tokens_and_time() {
        let l = [limit(
            Period::Minute,
            6,
            Algorithm::TokenBucket { burst: 3 },
        )];
        let mut s = FakeStore {
            now: 7_000,
            ..FakeStore::default()
        };
        assert!(apply(&l, "k", s.now, &mut s).unwrap().admitted());
        let (v, _) = s.get("k|tb|minute").unwrap().unwrap();
        assert_eq!(String::from_utf8(v).unwrap(), "2.000000,7000");
        s.now = 12_000;
        assert!(apply(&l, "k", s.now, &mut s).unwrap().admitted());
        let (v, _) = s.get("k|tb|minute").unwrap().unwrap();
        assert_eq!(String::from_utf8(v).unwrap(), "1.500000,12000");
    }

    #[test]
    fn token_bucket_retries_compare_and_swap_then_refuses() {
        let l = [limit(
            Period::Second,
            10,
            Algorithm::TokenBucket { burst: 10 },
        )];
        let mut s = FakeStore {
            steal_cas: MAX_CAS_ATTEMPTS - 1,
            ..FakeStore::default()
        };
        let o = apply(&l, "k", 0, &mut s).unwrap();
        assert!(o.admitted(), "the last try succeeds");
        assert_eq!(o.states[0].remaining, 9);
        s.steal_cas = MAX_CAS_ATTEMPTS;
        let calls = s.calls;
        let o = apply(&l, "k", 0, &mut s).unwrap();
        assert!(!o.admitted());
        assert!(o.states[0].contended);
        assert_eq!(o.retry_after_ms(), 100, "one token's refill");
        assert_eq!(
            s.calls - calls,
            2 * MAX_CAS_ATTEMPTS,
            "bounded: a get and a CAS per try"
        );
        assert!(apply(&l, "k", 0, &mut s).unwrap().admitted());
        // A slow bucket: the wait is a second at most, not a token's refill.
        let slow = [limit(
            Period::Day,
            100,
            Algorithm::TokenBucket { burst: 100 },
        )];
        s.steal_cas = MAX_CAS_ATTEMPTS;
        let o = apply(&slow, "slow", 0, &mut s).unwrap();
        assert!(o.states[0].contended);
        assert_eq!(o.retry_after_ms(), CONTENDED_RETRY_MS);
    }

    #[test]
    fn several_limits_all_apply() {
        let l = [
            limit(Period::Second, 2, Algorithm::FixedWindow),
            limit(Period::Minute, 3, Algorithm::SlidingWindow),
            limit(Period::Hour, 100, Algorithm::TokenBucket { burst: 4 }),
        ];
        let mut s = FakeStore::default();
        let o = apply(&l, "k", 0, &mut s).unwrap();
        assert_eq!(
            o.states.iter().map(|s| s.remaining).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(o.tightest().unwrap().limit.per, Period::Second);
        assert!(apply(&l, "k", 0, &mut s).unwrap().admitted());
        // The second's limit refuses: nothing is counted or taken by the others.
        let o = apply(&l, "k", 500, &mut s).unwrap();
        assert!(!o.admitted());
        assert_eq!(
            o.states.iter().map(|s| s.refused).collect::<Vec<_>>(),
            [true, false, false]
        );
        assert_eq!(o.retry_after_ms(), 500);
        assert_eq!(o.tightest().unwrap().limit.per, Period::Second);
        assert_eq!(s.int("k|fw|second|0"), Some(2));
        assert_eq!(s.int("k|sw|minute|0"), Some(2));
        assert_eq!(o.states[1].remaining, 1, "as given back");
        assert_eq!(o.states[2].remaining, 2, "read, not taken");
        // Next second: the minute's third request, then the minute refuses.
        let o = apply(&l, "k", 1_000, &mut s).unwrap();
        assert!(o.admitted());
        assert_eq!(o.tightest().unwrap().limit.per, Period::Minute);
        let o = apply(&l, "k", 1_000, &mut s).unwrap();
        assert_eq!(
            o.states.iter().map(|s| s.refused).collect::<Vec<_>>(),
            [false, true, false]
        );
        assert_eq!(s.int("k|fw|second|1"), Some(1), "given back");
        assert_eq!(o.retry_after_ms(), 59_000 + 20_000);
        // The bucket refuses too once empty, and the windows give their counts back.
        let l2 = [
            limit(Period::Second, 100, Algorithm::FixedWindow),
            limit(Period::Hour, 1, Algorithm::TokenBucket { burst: 1 }),
        ];
        assert!(apply(&l2, "b", 0, &mut s).unwrap().admitted());
        let o = apply(&l2, "b", 0, &mut s).unwrap();
        assert_eq!(
            o.states.iter().map(|s| s.refused).collect::<Vec<_>>(),
            [false, true]
        );
        assert_eq!(o.retry_after_ms(), 3_600_000);
        assert_eq!(s.int("b|fw|second|0"), Some(1));
    }

    #[test]
    fn store_errors_stop_the_request() {
        for l in [
            limit(Period::Minute, 3, Algorithm::FixedWindow),
            limit(Period::Minute, 3, Algorithm::SlidingWindow),
            limit(Period::Minute, 3, Algorithm::TokenBucket { burst: 3 }),
        ] {
            let mut s = FakeStore {
                down: Some(StoreError::Unavailable("timed out".into())),
                ..FakeStore::default()
            };
            assert_eq!(
                apply(&[l], "k", 0, &mut s),
                Err(StoreError::Unavailable("timed out".into()))
            );
            assert_eq!(s.calls, 1, "{l:?}: no retry against a store that is down");
            s.down = None;
            assert!(apply(&[l], "k", 0, &mut s).unwrap().admitted());
        }
    }

    #[test]
    fn a_day_window_starts_at_midnight_utc() {
        let l = [limit(Period::Day, 1, Algorithm::FixedWindow)];
        let mut s = FakeStore::default();
        let day = 86_400_000;
        let o = apply(&l, "k", 20_000 * day + 3_600_000, &mut s).unwrap();
        assert_eq!(o.states[0].reset_ms, 23 * 3_600_000);
        assert!(s.live("k|fw|day|20000").is_some());
    }
}
