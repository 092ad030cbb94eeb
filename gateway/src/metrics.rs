//! Process-wide metrics, kept across config reloads, shown as Prometheus text on `/metrics`.
//!
//! The hot path touches only atomics of objects it already holds (its route's and upstream's stats,
//! counts by status in a small lock-free table); the registry's maps are locked only when a runtime
//! is built and when `/metrics` is scraped. Every writer (these figures, the plugins' health, the
//! metrics plugins define) adds its families to one [`Exposition`], written by prometheus-client's
//! text encoder: `# HELP` and `# TYPE` for every family, counters ending in `_total`, label values
//! escaped in one place.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Latency bucket bounds in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bucket bounds in seconds for calls into a plugin, which take microseconds rather than the
/// milliseconds of a request.
pub const CALL_BUCKETS: [f64; 14] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
    1.0, 10.0,
];

/// A latency histogram: request latency bounds ([`Histogram::default`]) or others
/// ([`Histogram::with_bounds`]).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, then `+Inf`.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::with_bounds(&BUCKETS)
    }
}

impl Histogram {
    /// A histogram with these upper bounds in seconds, ascending.
    pub fn with_bounds(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Observations so far, and their sum in seconds.
    pub fn count_and_sum(&self) -> (u64, f64) {
        let count = self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        (count, self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9)
    }

    /// Per-bucket counts (the last is `+Inf`), the sum in seconds, and the count.
    pub(crate) fn snapshot(&self) -> Value {
        let buckets = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect::<Vec<_>>();
        let count = buckets.iter().map(|(_, n)| n).sum();
        Value::Histogram {
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count,
            buckets,
        }
    }
}

/// Distinct statuses counted one by one per [`StatusCounts`]; more are counted as `status="other"`.
/// Default: 24.
const STATUS_SLOTS: usize = 24;

/// Counts by status code, without a lock: a small table whose slots are claimed by the first response
/// with each status.
#[derive(Debug, Default)]
pub struct StatusCounts {
    status: [AtomicU16; STATUS_SLOTS],
    count: [AtomicU64; STATUS_SLOTS],
    other: AtomicU64,
}

impl StatusCounts {
    /// Counts one response.
    pub fn inc(&self, status: u16) {
        for (slot, count) in self.status.iter().zip(&self.count) {
            let mut s = slot.load(Ordering::Acquire);
            if s == 0 {
                s = match slot.compare_exchange(0, status, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => status,
                    Err(taken) => taken,
                };
            }
            if s == status {
                count.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        self.other.fetch_add(1, Ordering::Relaxed);
    }

    /// The count for a status.
    pub fn get(&self, status: u16) -> u64 {
        self.status
            .iter()
            .zip(&self.count)
            .find(|(s, _)| s.load(Ordering::Acquire) == status)
            .map_or(0, |(_, c)| c.load(Ordering::Relaxed))
    }

    /// Every status counted, in order, and the count of statuses past the table.
    fn snapshot(&self) -> (Vec<(u16, u64)>, u64) {
        let mut v: Vec<(u16, u64)> = self
            .status
            .iter()
            .zip(&self.count)
            .map(|(s, c)| (s.load(Ordering::Acquire), c.load(Ordering::Relaxed)))
            .filter(|&(s, _)| s != 0)
            .collect();
        v.sort_unstable();
        (v, self.other.load(Ordering::Relaxed))
    }
}

/// Per-route figures.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Responses by status.
    pub responses: StatusCounts,
    /// Time to response headers.
    pub latency: Histogram,
    /// Responses by consumer and status, on routes with `consumer_metrics` (as many keys as the
    /// config has consumers times the statuses they get).
    pub by_consumer: Mutex<BTreeMap<(Arc<str>, u16), u64>>,
    /// The route's request mirror.
    pub mirror: MirrorStats,
    /// The route's tunnels (upgraded connections).
    pub tunnels: TunnelStats,
}

/// What a route's tunnels (WebSocket and other upgrades) carried. Kept across reloads with the
/// route's figures; shown once the route has opened a tunnel.
#[derive(Debug, Default)]
pub struct TunnelStats {
    /// Tunnels opened (the upstream switched protocols and the client got the switch).
    pub opened: AtomicU64,
    /// Tunnels open now.
    pub open: AtomicI64,
    /// Bytes read from the client and sent on to the upstream.
    pub to_upstream: AtomicU64,
    /// Bytes read from the upstream and sent on to the client.
    pub to_client: AtomicU64,
    /// Tunnels closed, by why (indexed like [`TUNNEL_CLOSES`]).
    pub closed: [AtomicU64; TUNNEL_CLOSES.len()],
}

/// Why a tunnel closed (the `reason` label of `gateway_tunnels_closed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelClose {
    /// Both sides finished (each closed its direction) or one side closed the connection.
    Closed = 0,
    /// No byte either way for the route's `upgrades.idle_timeout`.
    IdleTimeout = 1,
    /// The route's `upgrades.max_duration` passed.
    MaxDuration = 2,
    /// The gateway's drain timeout passed on shutdown or reload.
    Drain = 3,
    /// A read or write failed on either side.
    Error = 4,
}

/// The `reason` label of each [`TunnelClose`].
pub const TUNNEL_CLOSES: [&str; 5] = ["closed", "idle_timeout", "max_duration", "drain", "error"];

impl TunnelStats {
    /// Counts a tunnel that closed.
    pub fn close(&self, why: TunnelClose) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.closed[why as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// What became of the requests a route's mirror took (see [`MIRROR_OUTCOMES`]), and how many are in
/// flight. Kept across reloads with the route's figures, so the cap on mirrors in flight holds for
/// those an older config started too.
#[derive(Debug, Default)]
pub struct MirrorStats {
    /// Set when a config gives the route a mirror: its outcomes are shown, zeros included.
    pub configured: AtomicBool,
    /// Counts by outcome, indexed like [`MIRROR_OUTCOMES`].
    pub outcomes: [AtomicU64; MIRROR_OUTCOMES.len()],
    /// Mirrored requests started and not finished.
    pub in_flight: std::sync::atomic::AtomicUsize,
}

/// What became of a request a mirror took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MirrorOutcome {
    /// The shadow answered (any status); its answer was read and dropped.
    Sent = 0,
    /// No answer: no endpoint, the connection or exchange failed, or the mirror's timeout passed.
    Failed = 1,
    /// The request body was over `max_body`: not mirrored.
    SkippedBody = 2,
    /// `max_in_flight` mirrors of the route were in flight: not mirrored.
    SkippedBusy = 3,
    /// The request body never ended (the client or the main upstream broke it off): not mirrored.
    Incomplete = 4,
}

/// The `outcome` label of each [`MirrorOutcome`].
pub const MIRROR_OUTCOMES: [&str; 5] = [
    "sent",
    "failed",
    "skipped_body",
    "skipped_busy",
    "incomplete",
];

impl MirrorStats {
    /// Counts one outcome.
    pub fn count(&self, o: MirrorOutcome) {
        self.outcomes[o as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The count of one outcome.
    pub fn get(&self, o: MirrorOutcome) -> u64 {
        self.outcomes[o as usize].load(Ordering::Relaxed)
    }
}

impl RouteStats {
    /// Counts a response to a request authenticated as `consumer`.
    pub fn consumer_response(&self, consumer: &Arc<str>, status: u16) {
        let mut m = self.by_consumer.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((consumer.clone(), status)).or_default() += 1;
    }
}

/// Per-upstream figures.
#[derive(Debug, Default)]
pub struct UpstreamStats {
    /// Tries sent (retries included).
    pub requests: AtomicU64,
    /// Tries that failed, by kind (see [`UPSTREAM_ERRORS`]).
    pub errors: [AtomicU64; UPSTREAM_ERRORS.len()],
    /// Retries sent.
    pub retries: AtomicU64,
    /// Time to response headers per try.
    pub latency: Histogram,
}

/// The kinds of failed upstream tries.
pub const UPSTREAM_ERRORS: [&str; 3] = ["connect", "protocol", "timeout"];

impl UpstreamStats {
    /// Counts a failed try by kind, one of [`UPSTREAM_ERRORS`].
    pub fn error(&self, kind: &'static str) {
        if let Some(i) = UPSTREAM_ERRORS.iter().position(|k| *k == kind) {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Endpoint health as seen by `/metrics`.
pub type HealthProbe = Arc<dyn Fn() -> Vec<(String, bool)> + Send + Sync>;

/// Runtimes alive in this process: built and not yet dropped, the serving one plus old ones still
/// held by requests in flight (shown as `gateway_runtimes_live`).
pub static RUNTIMES_LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The registry.
#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<String, Arc<RouteStats>>>,
    upstreams: Mutex<BTreeMap<String, Arc<UpstreamStats>>>,
    health: Mutex<BTreeMap<String, HealthProbe>>,
    /// Open client connections.
    pub connections_active: AtomicI64,
    /// Client connections accepted.
    pub connections_total: AtomicU64,
    /// Client connections closed at once because of `max_connections`.
    pub connections_rejected: AtomicU64,
    /// Accepts that failed because the process or system is out of descriptors.
    pub accept_errors_fd_limit: AtomicU64,
    /// Accepts that failed otherwise.
    pub accept_errors_other: AtomicU64,
    /// HTTP/2 connections sent GOAWAY because their client cancelled too many streams.
    pub h2_reset_goaways: AtomicU64,
    /// Connections closed because their client did not read a response for the send timeout.
    pub send_timeouts: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_errors: AtomicU64,
    /// Requests refused before routing (malformed HTTP/1, limits), by status.
    pub refused: StatusCounts,
    /// Requests that matched no route.
    pub no_route: AtomicU64,
    /// Config reloads applied.
    pub reloads_ok: AtomicU64,
    /// Config reloads refused (the running config stayed).
    pub reloads_failed: AtomicU64,
    /// Whether the last reload was applied (1 until a reload fails).
    pub last_reload_ok: AtomicBool,
    /// Unix time in seconds of the last config applied (start or reload).
    pub last_reload_success_unix: AtomicU64,
    /// Span export figures of `server.tracing` (kept across reloads).
    pub tracing: Arc<TraceStats>,
}

/// Span export figures of `server.tracing` (`crate::telemetry`), kept across reloads (on `/metrics` as `gateway_tracing_*`).
#[derive(Debug, Default)]
pub struct TraceStats {
    /// Spans dropped because the export queue was full.
    pub dropped: AtomicU64,
    /// Spans the collector accepted.
    pub exported: AtomicU64,
    /// Spans in exports that failed (collector unreachable, refused, timed out).
    pub failed: AtomicU64,
}

impl Metrics {
    /// The stats of a route, created on first use and kept across reloads.
    pub fn route(&self, name: &str) -> Arc<RouteStats> {
        self.routes
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// The stats of an upstream, created on first use and kept across reloads.
    pub fn upstream(&self, name: &str) -> Arc<UpstreamStats> {
        self.upstreams
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// Registers how to read an upstream's endpoint health (replacing the previous runtime's).
    pub fn set_health(&self, upstream: &str, probe: HealthProbe) {
        self.health
            .lock()
            .unwrap()
            .insert(upstream.to_owned(), probe);
    }

    /// Forgets health probes of upstreams that are gone.
    pub fn retain_health(&self, keep: impl Fn(&str) -> bool) {
        self.health.lock().unwrap().retain(|k, _| keep(k));
    }

    /// Prometheus text exposition of these figures alone (see [`Metrics::expose`]).
    pub fn render(&self) -> String {
        let mut e = Exposition::default();
        self.expose(&mut e);
        e.render()
    }

    /// Adds the gateway's own families to `e`.
    pub fn expose(&self, e: &mut Exposition) {
        let routes = self.routes.lock().unwrap().clone();
        let f = e.counter("gateway_requests", "Responses by route and status.");
        for (name, s) in &routes {
            let (counts, other) = s.responses.snapshot();
            for (status, n) in counts {
                f.sample(&[("route", name), ("status", &status.to_string())], n);
            }
            if other > 0 {
                f.sample(&[("route", name), ("status", "other")], other);
            }
        }
        f.sample(
            &[("route", ""), ("status", "404")],
            self.no_route.load(Ordering::Relaxed),
        );
        let f = e.counter(
            "gateway_consumer_requests",
            "Responses by route, consumer and status (routes with `consumer_metrics`).",
        );
        for (name, s) in &routes {
            let m = s.by_consumer.lock().unwrap_or_else(|e| e.into_inner());
            for ((consumer, status), n) in m.iter() {
                let status = status.to_string();
                f.sample(
                    &[("route", name), ("consumer", consumer), ("status", &status)],
                    *n,
                );
            }
        }
        let f = e.counter(
            "gateway_mirror_requests",
            "Requests a route's mirror took, by route and outcome (sent, failed, skipped_body, skipped_busy, incomplete).",
        );
        for (name, s) in &routes {
            if !s.mirror.configured.load(Ordering::Relaxed) {
                continue;
            }
            for (outcome, n) in MIRROR_OUTCOMES.iter().zip(&s.mirror.outcomes) {
                f.sample(
                    &[("route", name), ("outcome", outcome)],
                    n.load(Ordering::Relaxed),
                );
            }
        }
        let f = e.gauge(
            "gateway_mirror_in_flight",
            "Mirrored requests of a route waiting for their body or their shadow's answer.",
        );
        for (name, s) in &routes {
            if s.mirror.configured.load(Ordering::Relaxed) {
                f.sample(
                    &[("route", name)],
                    s.mirror.in_flight.load(Ordering::Relaxed) as u64,
                );
            }
        }
        let tunnelled: Vec<_> = routes
            .iter()
            .filter(|(_, s)| s.tunnels.opened.load(Ordering::Relaxed) > 0)
            .collect();
        let f = e.counter(
            "gateway_tunnels",
            "Tunnels (WebSocket and other upgrades) opened, by route.",
        );
        for (name, s) in &tunnelled {
            f.sample(&[("route", name)], s.tunnels.opened.load(Ordering::Relaxed));
        }
        let f = e.gauge("gateway_tunnels_open", "Tunnels open, by route.");
        for (name, s) in &tunnelled {
            let open = s.tunnels.open.load(Ordering::Relaxed).max(0) as u64;
            f.sample(&[("route", name)], open);
        }
        let f = e.counter(
            "gateway_tunnel_bytes",
            "Bytes carried by tunnels, by route and direction (to_upstream, to_client).",
        );
        for (name, s) in &tunnelled {
            let t = &s.tunnels;
            f.sample(
                &[("route", name), ("direction", "to_upstream")],
                t.to_upstream.load(Ordering::Relaxed),
            );
            f.sample(
                &[("route", name), ("direction", "to_client")],
                t.to_client.load(Ordering::Relaxed),
            );
        }
        let f = e.counter(
            "gateway_tunnels_closed",
            "Tunnels closed, by route and reason (closed, idle_timeout, max_duration, drain, error).",
        );
        for (name, s) in &tunnelled {
            for (reason, n) in TUNNEL_CLOSES.iter().zip(&s.tunnels.closed) {
                f.sample(
                    &[("route", name), ("reason", reason)],
                    n.load(Ordering::Relaxed),
                );
            }
        }
        let f = e.histogram(
            "gateway_request_duration_seconds",
            "Time from a request to its response headers, by route.",
        );
        for (name, s) in &routes {
            f.sample(&[("route", name)], s.latency.snapshot());
        }
        let f = e.counter(
            "gateway_requests_refused",
            "Requests refused before routing (malformed HTTP, limits), by status.",
        );
        let (counts, other) = self.refused.snapshot();
        for (status, n) in counts {
            f.sample(&[("status", &status.to_string())], n);
        }
        if other > 0 {
            f.sample(&[("status", "other")], other);
        }
        let ups = self.upstreams.lock().unwrap().clone();
        let f = e.counter(
            "gateway_upstream_requests",
            "Tries sent to an upstream cluster, retries included.",
        );
        for (name, s) in &ups {
            f.sample(&[("upstream", name)], s.requests.load(Ordering::Relaxed));
        }
        let f = e.counter(
            "gateway_upstream_retries",
            "Retries sent to an upstream cluster.",
        );
        for (name, s) in &ups {
            f.sample(&[("upstream", name)], s.retries.load(Ordering::Relaxed));
        }
        let f = e.counter(
            "gateway_upstream_errors",
            "Tries that failed, by upstream cluster and kind (connect, protocol, timeout).",
        );
        for (name, s) in &ups {
            for (kind, n) in UPSTREAM_ERRORS.iter().zip(&s.errors) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    f.sample(&[("upstream", name), ("kind", kind)], n);
                }
            }
        }
        let f = e.histogram(
            "gateway_upstream_duration_seconds",
            "Time from a try to its response headers, by upstream cluster.",
        );
        for (name, s) in &ups {
            f.sample(&[("upstream", name)], s.latency.snapshot());
        }
        let health = self.health.lock().unwrap().clone();
        let f = e.gauge(
            "gateway_upstream_endpoint_healthy",
            "Whether an endpoint takes traffic (1) or is ejected or unhealthy (0).",
        );
        for (name, probe) in &health {
            for (ep, healthy) in probe() {
                f.sample(&[("upstream", name), ("endpoint", &ep)], u64::from(healthy));
            }
        }
        e.gauge("gateway_connections_active", "Open client connections.")
            .value(self.connections_active.load(Ordering::Relaxed));
        e.counter("gateway_connections", "Client connections accepted.")
            .value(self.connections_total.load(Ordering::Relaxed));
        e.counter(
            "gateway_tls_handshake_errors",
            "TLS handshakes that failed or timed out.",
        )
        .value(self.tls_handshake_errors.load(Ordering::Relaxed));
        e.counter(
            "gateway_connections_rejected",
            "Client connections closed at once because of max_connections.",
        )
        .value(self.connections_rejected.load(Ordering::Relaxed));
        e.counter(
            "gateway_accept_errors",
            "Failed accepts on data-plane listeners, by kind (fd_limit: out of descriptors).",
        )
        .sample(
            &[("kind", "fd_limit")],
            self.accept_errors_fd_limit.load(Ordering::Relaxed),
        )
        .sample(
            &[("kind", "other")],
            self.accept_errors_other.load(Ordering::Relaxed),
        );
        e.counter(
            "gateway_h2_reset_goaways",
            "HTTP/2 connections shut down because their client cancelled too many streams.",
        )
        .value(self.h2_reset_goaways.load(Ordering::Relaxed));
        e.counter(
            "gateway_send_timeouts",
            "Connections closed because their client did not read a response for the send timeout.",
        )
        .value(self.send_timeouts.load(Ordering::Relaxed));
        e.counter("gateway_reloads", "Config reloads, by result.")
            .sample(&[("result", "ok")], self.reloads_ok.load(Ordering::Relaxed))
            .sample(
                &[("result", "error")],
                self.reloads_failed.load(Ordering::Relaxed),
            );
        e.gauge(
            "gateway_config_last_reload_successful",
            "Whether the last reload was applied.",
        )
        .value(u64::from(self.last_reload_ok.load(Ordering::Relaxed)));
        e.gauge(
            "gateway_config_last_reload_success_timestamp_seconds",
            "Unix time of the last config applied (start or reload).",
        )
        .value(self.last_reload_success_unix.load(Ordering::Relaxed));
        e.gauge(
            "gateway_runtimes_live",
            "Runtimes alive: the serving one and old ones held by requests in flight.",
        )
        .value(RUNTIMES_LIVE.load(Ordering::Relaxed) as u64);
        let t = &self.tracing;
        e.counter(
            "gateway_tracing_spans_dropped",
            "Spans dropped because the trace export queue was full.",
        )
        .value(t.dropped.load(Ordering::Relaxed));
        e.counter(
            "gateway_tracing_spans_exported",
            "Spans the OTLP collector accepted.",
        )
        .value(t.exported.load(Ordering::Relaxed));
        e.counter(
            "gateway_tracing_spans_failed",
            "Spans of trace exports that failed (collector unreachable, refused, timed out).",
        )
        .value(t.failed.load(Ordering::Relaxed));
    }
}

/// A sample's value.
#[derive(Debug, Clone)]
pub enum Value {
    /// A counter's or an unsigned gauge's value.
    Int(u64),
    /// A gauge that may be negative.
    Signed(i64),
    /// A histogram: per-bucket counts (not cumulative) by upper bound, the sum and the count.
    Histogram {
        /// Sum of the observations.
        sum: f64,
        /// Number of observations.
        count: u64,
        /// Upper bound and count of each bucket.
        buckets: Vec<(f64, u64)>,
    },
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Signed(v)
    }
}

/// One metric family of a scrape: its name (counters without `_total`, which the encoder adds), help,
/// type and samples.
#[derive(Debug)]
pub struct Family {
    name: String,
    help: String,
    kind: MetricType,
    unlabelled: Option<Value>,
    samples: Vec<(Vec<(String, String)>, Value)>,
}

impl Family {
    /// Adds a sample with these labels.
    pub fn sample(&mut self, labels: &[(&str, &str)], v: impl Into<Value>) -> &mut Family {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples.push((labels, v.into()));
        self
    }

    /// Adds `n` to the last sample written (a counter or gauge written twice for one series).
    pub fn add_to_last(&mut self, n: i64) {
        if let Some((_, v)) = self.samples.last_mut() {
            *v = match *v {
                Value::Int(x) => Value::Int(x.saturating_add(u64::try_from(n).unwrap_or(0))),
                Value::Signed(x) => Value::Signed(x.saturating_add(n)),
                ref h @ Value::Histogram { .. } => h.clone(),
            };
        }
    }

    /// Sets the family's one sample without labels.
    pub fn value(&mut self, v: impl Into<Value>) -> &mut Family {
        self.unlabelled = Some(v.into());
        self
    }
}

/// Every metric family of one scrape of `/metrics`, written by prometheus-client's encoder.
#[derive(Debug, Default)]
pub struct Exposition {
    families: Vec<Family>,
}

impl Exposition {
    fn family(&mut self, name: &str, help: &str, kind: MetricType) -> &mut Family {
        let name = match kind {
            MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        self.families.push(Family {
            name: name.to_owned(),
            help: help.to_owned(),
            kind,
            unlabelled: None,
            samples: Vec::new(),
        });
        self.families.last_mut().expect("just pushed")
    }

    /// A counter family; `name` gets `_total` (a `_total` it already has is not doubled).
    pub fn counter(&mut self, name: &str, help: &str) -> &mut Family {
        self.family(name, help, MetricType::Counter)
    }

    /// A gauge family.
    pub fn gauge(&mut self, name: &str, help: &str) -> &mut Family {
        self.family(name, help, MetricType::Gauge)
    }

    /// A histogram family.
    pub fn histogram(&mut self, name: &str, help: &str) -> &mut Family {
        self.family(name, help, MetricType::Histogram)
    }

    /// The Prometheus text (format 0.0.4).
    pub fn render(self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail; an encoder error would be a bug in a family's shape.
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "cannot write the metrics");
        }
        out
    }
}

/// A sample's value as the encoder takes it.
#[derive(Debug)]
struct Sample<'a>(&'a Value, MetricType);

impl EncodeMetric for Sample<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        match (self.0, self.1) {
            (Value::Int(v), MetricType::Counter) => {
                encoder.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(v, None)
            }
            (Value::Signed(v), MetricType::Counter) => encoder
                .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(
                &u64::try_from(*v).unwrap_or(0),
                None,
            ),
            (Value::Int(v), _) => encoder.encode_gauge(v),
            (Value::Signed(v), _) => encoder.encode_gauge(v),
            (
                Value::Histogram {
                    sum,
                    count,
                    buckets,
                },
                _,
            ) => encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                *sum, *count, buckets, None,
            ),
        }
    }

    fn metric_type(&self) -> MetricType {
        self.1
    }
}

impl prometheus_client::collector::Collector for Exposition {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            let mut m = encoder.encode_descriptor(&f.name, &f.help, None, f.kind)?;
            if let Some(v) = &f.unlabelled {
                Sample(v, f.kind).encode(m)?;
                continue;
            }
            for (labels, v) in &f.samples {
                Sample(v, f.kind).encode(m.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_histograms() {
        let m = Metrics::default();
        let r = m.route("api");
        r.responses.inc(200);
        r.responses.inc(200);
        r.latency.observe(Duration::from_millis(3));
        let text = m.render();
        assert!(text.contains("gateway_requests_total{route=\"api\",status=\"200\"} 2"));
        assert!(
            text.contains("gateway_request_duration_seconds_bucket{route=\"api\",le=\"0.0025\"} 0")
        );
        assert!(
            text.contains("gateway_request_duration_seconds_bucket{route=\"api\",le=\"0.005\"} 1")
        );
        assert!(text.contains("gateway_request_duration_seconds_count{route=\"api\"} 1"));
        assert!(Arc::ptr_eq(&m.route("api"), &r));
    }

    #[test]
    fn every_family_has_help_and_type_and_counters_end_in_total() {
        let m = Metrics::default();
        m.route("a\"b").responses.inc(503);
        m.upstream("u").error("timeout");
        m.refused.inc(400);
        let text = m.render();
        let lines: Vec<&str> = text.lines().collect();
        let mut families = 0;
        for (i, l) in lines.iter().enumerate() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                families += 1;
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    lines[i - 1].starts_with(&format!("# HELP {name} ")),
                    "{text}"
                );
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "{name}");
                }
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(
                    text.contains(&format!(
                        "# TYPE {}",
                        name.trim_end_matches("_bucket")
                            .trim_end_matches("_sum")
                            .trim_end_matches("_count")
                    )),
                    "{name} has no family"
                );
            }
        }
        assert!(families >= 15, "{text}");
        // Label values are escaped once, by the encoder.
        assert!(
            text.contains("gateway_requests_total{route=\"a\\\"b\",status=\"503\"} 1"),
            "{text}"
        );
        assert!(text.contains("gateway_upstream_errors_total{upstream=\"u\",kind=\"timeout\"} 1"));
        assert!(text.contains("gateway_requests_refused_total{status=\"400\"} 1"));
    }

    #[test]
    fn status_counts_past_the_table_count_as_other() {
        let c = StatusCounts::default();
        for s in 100..100 + STATUS_SLOTS as u16 + 5 {
            c.inc(s);
        }
        c.inc(100);
        assert_eq!(c.get(100), 2);
        let (counted, other) = c.snapshot();
        assert_eq!(counted.len(), STATUS_SLOTS);
        assert_eq!(other, 5);
    }
}
