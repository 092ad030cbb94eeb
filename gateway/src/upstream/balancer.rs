//! Picking an endpoint: weighted round robin, least request (power of two choices), weighted random, and
//! a consistent-hash ring. Every policy skips endpoints that are ejected or unhealthy.

use super::EndpointState;
use rand::Rng;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Virtual nodes per unit of weight on the hash ring.
const RING_POINTS_PER_WEIGHT: u32 = 100;
/// Longest round-robin schedule; weights are scaled down to fit.
const MAX_SCHEDULE: usize = 4096;

/// A compiled balancing policy.
pub enum Policy {
    /// A precomputed smooth weighted schedule walked by an atomic cursor.
    RoundRobin {
        /// Endpoint indexes in smooth weighted order.
        schedule: Vec<usize>,
        /// Next position.
        cursor: AtomicUsize,
    },
    /// Two weighted random picks; the one with fewer requests in flight (per weight) wins.
    LeastRequest,
    /// Weighted random.
    Random,
    /// A ring of (hash, endpoint) points.
    Hash {
        /// Sorted ring.
        ring: Vec<(u64, usize)>,
    },
}

/// Builds a smooth weighted round-robin schedule (as nginx does, precomputed).
fn schedule(weights: &[u32]) -> Vec<usize> {
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut w: Vec<u64> = weights.iter().map(|&x| (x / g) as u64).collect();
    let total: u64 = w.iter().sum();
    if total as usize > MAX_SCHEDULE {
        let scale = total as f64 / MAX_SCHEDULE as f64;
        for x in &mut w {
            *x = ((*x as f64 / scale).round() as u64).max(1);
        }
    }
    let total: i64 = w.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, &wi) in current.iter_mut().zip(&w) {
            *c += wi as i64;
        }
        let best = (0..w.len())
            .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
            .unwrap_or(0);
        current[best] -= total;
        out.push(best);
    }
    out
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A stable 64-bit hash (independent of process and version of the standard library's random keys).
pub fn stable_hash(data: &[u8]) -> u64 {
    // FNV-1a, then a finalizer to spread nearby keys around the ring.
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h
}

impl Policy {
    /// Compiles the policy for endpoints with these weights.
    pub fn new(kind: &crate::config::Balancer, endpoints: &[Arc<EndpointState>]) -> Policy {
        use crate::config::Balancer as B;
        match kind {
            B::RoundRobin => Policy::RoundRobin {
                schedule: schedule(&endpoints.iter().map(|e| e.weight).collect::<Vec<_>>()),
                cursor: AtomicUsize::new(0),
            },
            B::LeastRequest => Policy::LeastRequest,
            B::Random => Policy::Random,
            B::ConsistentHash(_) => {
                let mut ring = Vec::new();
                for (i, e) in endpoints.iter().enumerate() {
                    for p in 0..RING_POINTS_PER_WEIGHT * e.weight {
                        let key = format!("{}#{p}", e.address);
                        ring.push((stable_hash(key.as_bytes()), i));
                    }
                }
                ring.sort_unstable();
                Policy::Hash { ring }
            }
        }
    }

    /// Picks an available endpoint, avoiding `avoid` when another is available. `key` is the hash key
    /// for consistent hashing (None: a random point on the ring).
    pub fn pick(
        &self,
        eps: &[Arc<EndpointState>],
        key: Option<u64>,
        avoid: Option<usize>,
    ) -> Option<usize> {
        let ok = |i: usize| eps[i].is_available() && Some(i) != avoid;
        let found = match self {
            Policy::RoundRobin { schedule, cursor } => {
                let start = cursor.fetch_add(1, Ordering::Relaxed);
                (0..schedule.len())
                    .map(|k| schedule[(start + k) % schedule.len()])
                    .find(|&i| ok(i))
            }
            Policy::Random => weighted_random(eps, &ok),
            Policy::LeastRequest => {
                let a = weighted_random(eps, &ok);
                let b = weighted_random(eps, &ok);
                match (a, b) {
                    (Some(a), Some(b)) => {
                        let load = |i: usize| {
                            (eps[i].in_flight() as f64 + 1.0) / eps[i].weight.max(1) as f64
                        };
                        Some(if load(b) < load(a) { b } else { a })
                    }
                    (a, b) => a.or(b),
                }
            }
            Policy::Hash { ring } => {
                if ring.is_empty() {
                    None
                } else {
                    let k = key.unwrap_or_else(|| rand::rng().random());
                    let start = ring.partition_point(|&(h, _)| h < k);
                    (0..ring.len())
                        .map(|n| ring[(start + n) % ring.len()].1)
                        .find(|&i| ok(i))
                }
            }
        };
        match (found, avoid) {
            (None, Some(a)) if eps[a].is_available() => Some(a),
            (f, _) => f,
        }
    }
}

fn weighted_random(eps: &[Arc<EndpointState>], ok: &impl Fn(usize) -> bool) -> Option<usize> {
    let total: u64 = (0..eps.len())
        .filter(|&i| ok(i))
        .map(|i| eps[i].weight as u64)
        .sum();
    if total == 0 {
        return None;
    }
    let mut x = rand::rng().random_range(0..total);
    for i in (0..eps.len()).filter(|&i| ok(i)) {
        let w = eps[i].weight as u64;
        if x < w {
            return Some(i);
        }
        x -= w;
    }
    None
}

/// Hashes any value with [`stable_hash`] semantics.
pub fn hash_str(s: &str) -> u64 {
    stable_hash(s.as_bytes())
}

/// Hashes an IP address (stable across builds and processes).
pub fn hash_ip(ip: std::net::IpAddr) -> u64 {
    match ip {
        std::net::IpAddr::V4(v4) => stable_hash(&v4.octets()),
        std::net::IpAddr::V6(v6) => stable_hash(&v6.octets()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Balancer;

    fn eps(weights: &[u32]) -> Vec<Arc<EndpointState>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Arc::new(EndpointState::new(format!("10.0.0.{i}:80"), w)))
            .collect()
    }

    fn counts(p: &Policy, e: &[Arc<EndpointState>], n: usize) -> Vec<usize> {
        let mut c = vec![0; e.len()];
        for _ in 0..n {
            c[p.pick(e, None, None).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn round_robin_follows_weights_smoothly() {
        assert_eq!(schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        let e = eps(&[3, 1]);
        let p = Policy::new(&Balancer::RoundRobin, &e);
        assert_eq!(counts(&p, &e, 400), vec![300, 100]);
    }

    #[test]
    fn unavailable_endpoints_are_skipped() {
        let e = eps(&[1, 1, 1]);
        e[1].eject_for(std::time::Duration::from_secs(60));
        for kind in [
            Balancer::RoundRobin,
            Balancer::Random,
            Balancer::LeastRequest,
        ] {
            let p = Policy::new(&kind, &e);
            assert_eq!(counts(&p, &e, 300)[1], 0);
        }
        for x in &e {
            x.eject_for(std::time::Duration::from_secs(60));
        }
        assert_eq!(
            Policy::new(&Balancer::Random, &e).pick(&e, None, None),
            None
        );
    }

    #[test]
    fn random_and_least_request_follow_weights() {
        let e = eps(&[1, 3]);
        let c = counts(&Policy::new(&Balancer::Random, &e), &e, 4000);
        assert!(c[1] > 2 * c[0], "{c:?}");
        let c = counts(&Policy::new(&Balancer::LeastRequest, &e), &e, 4000);
        assert!(c[1] > c[0], "{c:?}");
    }

    #[test]
    fn consistent_hash_is_sticky_and_moves_little() {
        let e = eps(&[1, 1, 1, 1]);
        let kind = Balancer::ConsistentHash(crate::config::HashKey::ClientIp);
        let p = Policy::new(&kind, &e);
        let keys: Vec<u64> = (0..1000).map(|i| hash_str(&format!("user-{i}"))).collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|&k| p.pick(&e, Some(k), None).unwrap())
            .collect();
        let again: Vec<usize> = keys
            .iter()
            .map(|&k| p.pick(&e, Some(k), None).unwrap())
            .collect();
        assert_eq!(before, again);
        e[2].eject_for(std::time::Duration::from_secs(60));
        let after: Vec<usize> = keys
            .iter()
            .map(|&k| p.pick(&e, Some(k), None).unwrap())
            .collect();
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        let on_two = before.iter().filter(|&&i| i == 2).count();
        assert_eq!(moved, on_two, "only keys of the ejected endpoint move");
        assert!(on_two > 100 && on_two < 400, "{on_two}");
    }
}
