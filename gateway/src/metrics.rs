//! Process-wide metrics, kept across config reloads, rendered as Prometheus text on `/metrics`.
//!
//! The hot path touches only atomics of objects it already holds (its route's and upstream's stats); the
//! registry's maps are locked only when a runtime is built and when `/metrics` is rendered.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Latency bucket bounds in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cum}");
        }
        cum += self.counts[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cum}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cum}");
    }
}

/// Counts by status code.
#[derive(Debug, Default)]
pub struct StatusCounts(Mutex<BTreeMap<u16, u64>>);

impl StatusCounts {
    /// Counts one response.
    pub fn inc(&self, status: u16) {
        *self.0.lock().unwrap().entry(status).or_default() += 1;
    }

    /// The count for a status.
    pub fn get(&self, status: u16) -> u64 {
        self.0.lock().unwrap().get(&status).copied().unwrap_or(0)
    }
}

/// Per-route figures.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Responses by status.
    pub responses: StatusCounts,
    /// Time to response headers.
    pub latency: Histogram,
}

/// Per-upstream figures.
#[derive(Debug, Default)]
pub struct UpstreamStats {
    /// Tries sent (retries included).
    pub requests: AtomicU64,
    /// Tries that failed: connect, protocol, timeout.
    pub errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Retries sent.
    pub retries: AtomicU64,
    /// Time to response headers per try.
    pub latency: Histogram,
}

impl UpstreamStats {
    /// Counts a failed try by kind.
    pub fn error(&self, kind: &'static str) {
        *self.errors.lock().unwrap().entry(kind).or_default() += 1;
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

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# TYPE gateway_requests_total counter\n");
        let routes = self.routes.lock().unwrap().clone();
        for (name, s) in &routes {
            for (status, n) in s.responses.0.lock().unwrap().iter() {
                let _ = writeln!(
                    out,
                    "gateway_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                    esc(name)
                );
            }
        }
        let _ = writeln!(
            out,
            "gateway_requests_total{{route=\"\",status=\"404\"}} {}",
            self.no_route.load(Ordering::Relaxed)
        );
        out.push_str("# TYPE gateway_request_duration_seconds histogram\n");
        for (name, s) in &routes {
            s.latency.render(
                &mut out,
                "gateway_request_duration_seconds",
                &format!("route=\"{}\"", esc(name)),
            );
        }
        out.push_str("# TYPE gateway_requests_refused_total counter\n");
        for (status, n) in self.refused.0.lock().unwrap().iter() {
            let _ = writeln!(
                out,
                "gateway_requests_refused_total{{status=\"{status}\"}} {n}"
            );
        }
        let ups = self.upstreams.lock().unwrap().clone();
        out.push_str("# TYPE gateway_upstream_requests_total counter\n");
        for (name, s) in &ups {
            let _ = writeln!(
                out,
                "gateway_upstream_requests_total{{upstream=\"{}\"}} {}",
                esc(name),
                s.requests.load(Ordering::Relaxed)
            );
        }
        out.push_str("# TYPE gateway_upstream_retries_total counter\n");
        for (name, s) in &ups {
            let _ = writeln!(
                out,
                "gateway_upstream_retries_total{{upstream=\"{}\"}} {}",
                esc(name),
                s.retries.load(Ordering::Relaxed)
            );
        }
        out.push_str("# TYPE gateway_upstream_errors_total counter\n");
        for (name, s) in &ups {
            for (kind, n) in s.errors.lock().unwrap().iter() {
                let _ = writeln!(
                    out,
                    "gateway_upstream_errors_total{{upstream=\"{}\",kind=\"{kind}\"}} {n}",
                    esc(name)
                );
            }
        }
        out.push_str("# TYPE gateway_upstream_duration_seconds histogram\n");
        for (name, s) in &ups {
            s.latency.render(
                &mut out,
                "gateway_upstream_duration_seconds",
                &format!("upstream=\"{}\"", esc(name)),
            );
        }
        out.push_str("# TYPE gateway_upstream_endpoint_healthy gauge\n");
        let health = self.health.lock().unwrap().clone();
        for (name, probe) in &health {
            for (ep, healthy) in probe() {
                let _ = writeln!(
                    out,
                    "gateway_upstream_endpoint_healthy{{upstream=\"{}\",endpoint=\"{}\"}} {}",
                    esc(name),
                    esc(&ep),
                    u8::from(healthy)
                );
            }
        }
        scalar(
            &mut out,
            "gateway_connections_active",
            "gauge",
            self.connections_active.load(Ordering::Relaxed),
        );
        scalar(
            &mut out,
            "gateway_connections_total",
            "counter",
            self.connections_total.load(Ordering::Relaxed),
        );
        scalar(
            &mut out,
            "gateway_tls_handshake_errors_total",
            "counter",
            self.tls_handshake_errors.load(Ordering::Relaxed),
        );
        scalar(
            &mut out,
            "gateway_connections_rejected_total",
            "counter",
            self.connections_rejected.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# TYPE gateway_reloads_total counter\ngateway_reloads_total{{result=\"ok\"}} {}\ngateway_reloads_total{{result=\"error\"}} {}",
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed)
        );
        scalar(
            &mut out,
            "gateway_config_last_reload_successful",
            "gauge",
            u8::from(self.last_reload_ok.load(Ordering::Relaxed)),
        );
        scalar(
            &mut out,
            "gateway_config_last_reload_success_timestamp_seconds",
            "gauge",
            self.last_reload_success_unix.load(Ordering::Relaxed),
        );
        scalar(
            &mut out,
            "gateway_runtimes_live",
            "gauge",
            RUNTIMES_LIVE.load(Ordering::Relaxed),
        );
        out
    }
}

/// Writes one unlabelled metric with its TYPE line.
fn scalar(out: &mut String, name: &str, kind: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {value}");
}

/// Escapes a Prometheus label value.
pub fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
}
