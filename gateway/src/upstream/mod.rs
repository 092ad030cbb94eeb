//! Upstream clusters: endpoints with their health, a balancer, and a pooled HTTP client.

mod balancer;
mod client;
pub mod retry;
pub mod split;

pub use balancer::{hash_ip, hash_str, Policy};
pub use client::{Client, ClientError, PooledBody};

use crate::config;
use crate::metrics::UpstreamStats;
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_nanos() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// One endpoint and what is known of its health.
#[derive(Debug)]
pub struct EndpointState {
    /// `host:port`.
    pub address: String,
    /// `address` again, shared: what filters are told answered (`upstream.address`).
    pub shared_address: std::sync::Arc<str>,
    /// Relative weight.
    pub weight: u32,
    /// `address` parsed as a URI authority once (when it parses), for building upstream URIs.
    pub authority: Option<http::uri::Authority>,
    in_flight: AtomicUsize,
    consecutive_failures: AtomicU32,
    ejections: AtomicU32,
    /// Nanoseconds since `epoch()` until which the endpoint is ejected.
    ejected_until: AtomicU64,
    /// Set by active health checks.
    active_healthy: AtomicBool,
}

impl EndpointState {
    /// A healthy endpoint.
    pub fn new(address: String, weight: u32) -> Self {
        EndpointState {
            authority: address.parse().ok(),
            shared_address: std::sync::Arc::from(address.as_str()),
            address,
            weight,
            in_flight: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            active_healthy: AtomicBool::new(true),
        }
    }

    /// Not ejected and not marked unhealthy by active checks.
    pub fn is_available(&self) -> bool {
        if !self.active_healthy.load(Ordering::Relaxed) {
            return false;
        }
        // 0: never ejected, or the last ejection is over and a success since has cleared it; the
        // usual case needs no clock.
        let until = self.ejected_until.load(Ordering::Relaxed);
        until == 0 || until <= now_nanos()
    }

    /// Requests in flight to this endpoint.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Ejects the endpoint for `d`.
    pub fn eject_for(&self, d: Duration) {
        self.ejected_until
            .store(now_nanos() + d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Records the outcome of a request for passive health.
    pub fn record(&self, ok: bool, passive: &config::Passive) {
        if ok {
            if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
            // A success after an ejection is over resets the ejection count and clears the
            // ejection (unless a new one has just replaced it).
            let until = self.ejected_until.load(Ordering::Relaxed);
            if until != 0 && until <= now_nanos() {
                self.ejections.store(0, Ordering::Relaxed);
                let _ = self.ejected_until.compare_exchange(
                    until,
                    0,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            return;
        }
        if passive.consecutive_failures == 0 {
            return;
        }
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= passive.consecutive_failures {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            // 1x, 2x, 4x, 8x, then 10x the ejection time for consecutive ejections.
            let prior = self.ejections.fetch_add(1, Ordering::Relaxed);
            let times = 1u32.checked_shl(prior).unwrap_or(u32::MAX).min(10);
            let d = passive.ejection_time.0 * times;
            tracing::warn!(endpoint = %self.address, failures = n, ejected_for_ms = d.as_millis() as u64, "endpoint ejected");
            self.eject_for(d);
        }
    }

    fn set_active_healthy(&self, healthy: bool) {
        if self.active_healthy.swap(healthy, Ordering::Relaxed) != healthy {
            tracing::warn!(endpoint = %self.address, healthy, "active health check changed state");
        }
    }
}

/// Counts a request in flight to an endpoint until dropped.
pub struct EndpointGuard(Arc<EndpointState>);

impl EndpointGuard {
    /// Marks a request in flight to `ep`.
    pub fn new(ep: Arc<EndpointState>) -> Self {
        ep.in_flight.fetch_add(1, Ordering::Relaxed);
        EndpointGuard(ep)
    }
}

impl Drop for EndpointGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A compiled upstream cluster.
pub struct Cluster {
    /// Name from config (shared with the filters' request facts, not copied per request).
    pub name: Arc<str>,
    /// Endpoints in config order.
    pub endpoints: Vec<Arc<EndpointState>>,
    /// Balancing policy.
    pub policy: Policy,
    /// What consistent hashing keys on.
    pub hash_key: Option<config::HashKey>,
    /// Protocol to endpoints.
    pub protocol: config::Protocol,
    /// Pooled client, with a pool per endpoint (indexed like `endpoints`).
    pub client: Client,
    /// `https` when the cluster speaks TLS, else `http`.
    pub scheme: &'static str,
    /// Passive health settings.
    pub passive: config::Passive,
    /// Active health settings.
    pub active: Option<config::Active>,
    /// Figures.
    pub stats: Arc<UpstreamStats>,
    checker: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Cluster {
    /// Compiles a cluster from config (no I/O, no tasks). `tls` is the client config when the cluster
    /// speaks TLS (see `tls::client_config`).
    pub fn new(
        cfg: &config::Upstream,
        stats: Arc<UpstreamStats>,
        tls: Option<rustls::ClientConfig>,
    ) -> Cluster {
        let endpoints: Vec<_> = cfg
            .endpoints
            .iter()
            .map(|e| Arc::new(EndpointState::new(e.address.clone(), e.weight)))
            .collect();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client = Client::new(cfg, tls);
        let hash_key = match &cfg.balancer {
            config::Balancer::ConsistentHash(k) => Some(k.clone()),
            _ => None,
        };
        Cluster {
            name: Arc::from(cfg.name.as_str()),
            policy: Policy::new(&cfg.balancer, &endpoints),
            endpoints,
            hash_key,
            protocol: cfg.protocol,
            client,
            scheme,
            passive: cfg.health.passive.clone(),
            active: cfg.health.active.clone(),
            stats,
            checker: std::sync::Mutex::new(None),
        }
    }

    /// Endpoint addresses and whether each is available now.
    pub fn health(&self) -> Vec<(String, bool)> {
        self.endpoints
            .iter()
            .map(|e| (e.address.clone(), e.is_available()))
            .collect()
    }

    /// Starts active health checks, if configured. They stop when the cluster is dropped.
    pub fn start_health_checks(self: &Arc<Self>) {
        let Some(active) = self.active.clone() else {
            return;
        };
        let weak = Arc::downgrade(self);
        let handle = tokio::spawn(async move {
            let mut streaks = vec![(0u32, 0u32); weak.upgrade().map_or(0, |c| c.endpoints.len())];
            let mut tick = tokio::time::interval(active.interval.0);
            loop {
                tick.tick().await;
                let Some(cluster) = weak.upgrade() else {
                    return;
                };
                for (i, ep) in cluster.endpoints.iter().enumerate() {
                    let ok = cluster.probe(i, ep, &active).await;
                    let (good, badn) = &mut streaks[i];
                    if ok {
                        *good += 1;
                        *badn = 0;
                        if *good >= active.healthy_threshold {
                            ep.set_active_healthy(true);
                        }
                    } else {
                        *badn += 1;
                        *good = 0;
                        if *badn >= active.unhealthy_threshold {
                            ep.set_active_healthy(false);
                        }
                    }
                }
            }
        });
        *self.checker.lock().unwrap() = Some(handle);
    }

    async fn probe(&self, idx: usize, ep: &EndpointState, active: &config::Active) -> bool {
        let uri = format!("{}://{}{}", self.scheme, ep.address, active.path);
        let Ok(req) = http::Request::get(uri)
            .header(http::header::USER_AGENT, "gateway-health-check")
            .body(crate::body::empty())
        else {
            return false;
        };
        let deadline = tokio::time::Instant::now() + active.timeout.0;
        let Ok(Ok(resp)) = tokio::time::timeout_at(deadline, self.client.send(idx, req)).await
        else {
            return false;
        };
        let ok = resp.status().is_success();
        // The verdict is the status. Reading the (small) answer, within the same timeout, lets the
        // next probe reuse the connection.
        let _ = tokio::time::timeout_at(deadline, resp.into_body().collect()).await;
        ok
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(h) = self.checker.lock().unwrap().take() {
            h.abort();
        }
    }
}
