//! Upstream clusters: endpoints with their health, a balancer, and a pooled HTTP client.

mod balancer;
pub mod retry;

pub use balancer::{hash_ip, hash_str, Policy};

use crate::body::Body;
use crate::config;
use crate::metrics::UpstreamStats;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
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
        self.active_healthy.load(Ordering::Relaxed)
            && self.ejected_until.load(Ordering::Relaxed) <= now_nanos()
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
            self.consecutive_failures.store(0, Ordering::Relaxed);
            if self.ejected_until.load(Ordering::Relaxed) <= now_nanos() {
                self.ejections.store(0, Ordering::Relaxed);
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

/// The HTTP client of a cluster (TLS when the cluster has it).
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

/// A compiled upstream cluster.
pub struct Cluster {
    /// Name from config.
    pub name: String,
    /// Endpoints in config order.
    pub endpoints: Vec<Arc<EndpointState>>,
    /// Balancing policy.
    pub policy: Policy,
    /// What consistent hashing keys on.
    pub hash_key: Option<config::HashKey>,
    /// Protocol to endpoints.
    pub protocol: config::Protocol,
    /// Pooled client.
    pub client: HttpClient,
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
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.connect_timeout.0));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let scheme = if tls.is_some() { "https" } else { "http" };
        // A cluster without TLS never dials https; its TLS config is an empty, unused one.
        let tls_config = tls.unwrap_or_else(|| {
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
        });
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config)
            .https_or_http();
        let builder = match cfg.tls.as_ref().and_then(|t| t.server_name.clone()) {
            Some(name) => builder.with_server_name_resolver(move |_: &_| {
                rustls::pki_types::ServerName::try_from(name.clone())
            }),
            None => builder,
        };
        let connector = match cfg.protocol {
            config::Protocol::Http1 => builder.enable_http1().wrap_connector(connector),
            config::Protocol::Http2 => builder.enable_http2().wrap_connector(connector),
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(cfg.pool.idle_timeout.0)
            .pool_max_idle_per_host(cfg.pool.max_idle_per_endpoint)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(cfg.protocol == config::Protocol::Http2);
        let hash_key = match &cfg.balancer {
            config::Balancer::ConsistentHash(k) => Some(k.clone()),
            _ => None,
        };
        Cluster {
            name: cfg.name.clone(),
            policy: Policy::new(&cfg.balancer, &endpoints),
            endpoints,
            hash_key,
            protocol: cfg.protocol,
            client: builder.build(connector),
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
                    let ok = cluster.probe(ep, &active).await;
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

    async fn probe(&self, ep: &EndpointState, active: &config::Active) -> bool {
        let uri = format!("{}://{}{}", self.scheme, ep.address, active.path);
        let Ok(req) = http::Request::get(uri)
            .header(http::header::USER_AGENT, "gateway-health-check")
            .body(crate::body::empty())
        else {
            return false;
        };
        match tokio::time::timeout(active.timeout.0, self.client.request(req)).await {
            Ok(Ok(resp)) => resp.status().is_success(),
            _ => false,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(h) = self.checker.lock().unwrap().take() {
            h.abort();
        }
    }
}
