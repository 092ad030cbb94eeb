//! Metrics that plugins define: counters, gauges and histograms, owned by the plugin that defined them
//! and exported in the Prometheus text format as `plugin_<name>{plugin="..."}`.

use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Adds without wrapping.
fn saturating_add(v: &AtomicI64, n: i64) {
    let _ = v.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| {
        Some(x.saturating_add(n))
    });
}

/// Upper bounds of histogram buckets (plus `+Inf`).
pub const HISTOGRAM_BUCKETS: [u64; 14] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 100_000,
];

/// Most metrics one process holds across plugins; defining more fails. Default: 10 000.
pub const MAX_METRICS: usize = 10_000;

/// What kind of metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down; set by `record`.
    Gauge,
    /// Records observations into buckets.
    Histogram,
}

/// Why a metric operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    /// No metric has that id (for this plugin).
    #[error("no such metric")]
    NotFound,
    /// The operation does not apply to this kind of metric (or a counter would go down).
    #[error("operation not valid for this metric")]
    BadArgument,
    /// [`MAX_METRICS`] are defined already.
    #[error("too many metrics")]
    TooMany,
}

struct Metric {
    plugin: String,
    name: String,
    kind: MetricKind,
    value: AtomicI64,
    buckets: [AtomicU64; HISTOGRAM_BUCKETS.len() + 1],
    sum: AtomicU64,
}

/// What guest calls read without a lock: the metrics by id, and their ids by plugin and name.
#[derive(Default)]
struct Table {
    metrics: Vec<Arc<Metric>>,
    by_name: HashMap<String, HashMap<String, u32>>,
}

/// Every plugin-defined metric of the process. A guest call (define an existing name, increment,
/// record, get) reads a published table and touches atomics: nothing is locked per request; only
/// defining a new metric takes a lock and publishes a new table.
#[derive(Default)]
pub struct Metrics {
    table: ArcSwap<Table>,
    defining: Mutex<()>,
}

impl Metrics {
    /// Defines a metric (or returns the id of the one the plugin defined under that name before).
    pub fn define(&self, plugin: &str, kind: MetricKind, name: &str) -> Result<u32, MetricError> {
        let known = |t: &Table| {
            let id = *t.by_name.get(plugin)?.get(name)?;
            Some(if t.metrics[id as usize].kind == kind {
                Ok(id)
            } else {
                Err(MetricError::BadArgument)
            })
        };
        if let Some(r) = known(&self.table.load()) {
            return r;
        }
        let _one_at_a_time = self.defining.lock().unwrap_or_else(|e| e.into_inner());
        let table = self.table.load_full();
        if let Some(r) = known(&table) {
            return r;
        }
        if table.metrics.len() >= MAX_METRICS {
            return Err(MetricError::TooMany);
        }
        let id = table.metrics.len() as u32;
        let mut metrics = table.metrics.clone();
        metrics.push(Arc::new(Metric {
            plugin: plugin.to_string(),
            name: name.to_string(),
            kind,
            value: AtomicI64::new(0),
            buckets: Default::default(),
            sum: AtomicU64::new(0),
        }));
        let mut by_name = table.by_name.clone();
        by_name
            .entry(plugin.to_string())
            .or_default()
            .insert(name.to_string(), id);
        self.table.store(Arc::new(Table { metrics, by_name }));
        Ok(id)
    }

    fn with<R>(
        &self,
        plugin: &str,
        id: u32,
        f: impl FnOnce(&Metric) -> Result<R, MetricError>,
    ) -> Result<R, MetricError> {
        let table = self.table.load();
        match table.metrics.get(id as usize) {
            Some(m) if m.plugin == plugin => f(m),
            _ => Err(MetricError::NotFound),
        }
    }

    /// Adds `offset` to a counter (which cannot go down) or a gauge.
    pub fn increment(&self, plugin: &str, id: u32, offset: i64) -> Result<(), MetricError> {
        self.with(plugin, id, |m| match m.kind {
            MetricKind::Counter if offset < 0 => Err(MetricError::BadArgument),
            MetricKind::Counter | MetricKind::Gauge => {
                saturating_add(&m.value, offset);
                Ok(())
            }
            MetricKind::Histogram => Err(MetricError::BadArgument),
        })
    }

    /// Records a value: adds to a counter, sets a gauge, observes into a histogram (as Envoy does).
    pub fn record(&self, plugin: &str, id: u32, value: u64) -> Result<(), MetricError> {
        let v = i64::try_from(value).unwrap_or(i64::MAX);
        self.with(plugin, id, |m| {
            match m.kind {
                MetricKind::Counter => saturating_add(&m.value, v),
                MetricKind::Gauge => m.value.store(v, Ordering::Relaxed),
                MetricKind::Histogram => {
                    let slot = HISTOGRAM_BUCKETS
                        .iter()
                        .position(|b| value <= *b)
                        .unwrap_or(HISTOGRAM_BUCKETS.len());
                    m.buckets[slot].fetch_add(1, Ordering::Relaxed);
                    let _ = m
                        .sum
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                            Some(s.saturating_add(value))
                        });
                }
            }
            Ok(())
        })
    }

    /// The value of a counter or gauge (a negative gauge reads as 0, the ABI being unsigned).
    pub fn get(&self, plugin: &str, id: u32) -> Result<u64, MetricError> {
        self.with(plugin, id, |m| match m.kind {
            MetricKind::Histogram => Err(MetricError::BadArgument),
            _ => Ok(u64::try_from(m.value.load(Ordering::Relaxed)).unwrap_or(0)),
        })
    }

    /// Adds every plugin metric to `e`, one family per name (`plugin_<name>`, counters ending in
    /// `_total`), a sample per plugin that defined it.
    pub fn expose(&self, e: &mut crate::metrics::Exposition) {
        let table = self.table.load_full();
        // One family per exposed name: a counter's `_total` is the encoder's, so `hits` and
        // `hits_total` are one family (and one series per plugin, their values added); a name
        // taken by another kind gets the kind as a suffix, so no name is typed twice.
        let rank = |k: MetricKind| match k {
            MetricKind::Counter => 0,
            MetricKind::Gauge => 1,
            MetricKind::Histogram => 2,
        };
        let mut by_family: Vec<(String, &Metric)> = table
            .metrics
            .iter()
            .map(|m| &**m)
            .map(|m| {
                let name = format!("plugin_{}", sanitize(&m.name));
                let base = match m.kind {
                    MetricKind::Counter => name.strip_suffix("_total").map(str::to_owned),
                    _ => None,
                };
                (base.unwrap_or(name), m)
            })
            .collect();
        by_family.sort_by(|a, b| {
            (&a.0, rank(a.1.kind), &a.1.plugin).cmp(&(&b.0, rank(b.1.kind), &b.1.plugin))
        });
        let mut current: Option<(String, MetricKind, &mut crate::metrics::Family)> = None;
        let mut last_series: Option<(String, MetricKind, &str)> = None;
        for (family, m) in by_family {
            let series = (family.clone(), m.kind, m.plugin.as_str());
            if last_series.as_ref() == Some(&series) {
                // The same series again (`hits` and `hits_total` of one plugin): counted into
                // the sample already written.
                if let (Some((_, _, f)), MetricKind::Counter | MetricKind::Gauge) =
                    (current.as_mut(), m.kind)
                {
                    f.add_to_last(m.value.load(Ordering::Relaxed));
                }
                continue;
            }
            last_series = Some(series);
            let same = current
                .as_ref()
                .is_some_and(|(name, kind, _)| *name == family && *kind == m.kind);
            if !same {
                let help = format!("Defined by plugins: {}.", m.name);
                let taken = current.as_ref().is_some_and(|(name, _, _)| *name == family);
                let exposed = if taken {
                    format!(
                        "{family}_{}",
                        ["counter", "gauge", "histogram"][rank(m.kind)]
                    )
                } else {
                    family.clone()
                };
                let f = match m.kind {
                    MetricKind::Counter => e.counter(&exposed, &help),
                    MetricKind::Gauge => e.gauge(&exposed, &help),
                    MetricKind::Histogram => e.histogram(&exposed, &help),
                };
                current = Some((family, m.kind, f));
            }
            let (_, _, f) = current.as_mut().expect("set above");
            let labels = [("plugin", m.plugin.as_str())];
            match m.kind {
                MetricKind::Counter => {
                    f.sample(
                        &labels,
                        u64::try_from(m.value.load(Ordering::Relaxed)).unwrap_or(0),
                    );
                }
                MetricKind::Gauge => {
                    f.sample(&labels, m.value.load(Ordering::Relaxed));
                }
                MetricKind::Histogram => {
                    let buckets: Vec<(f64, u64)> = HISTOGRAM_BUCKETS
                        .iter()
                        .map(|&b| b as f64)
                        .chain(std::iter::once(f64::INFINITY))
                        .zip(m.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
                        .collect();
                    // The count from the buckets read, so that the two agree in every scrape.
                    let count = buckets.iter().map(|(_, n)| n).sum();
                    f.sample(
                        &labels,
                        crate::metrics::Value::Histogram {
                            sum: m.sum.load(Ordering::Relaxed) as f64,
                            count,
                            buckets,
                        },
                    );
                }
            }
        }
    }
}

/// A Prometheus metric name from anything: other characters become `_`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_rendering() {
        let m = Metrics::default();
        let c = m.define("p", MetricKind::Counter, "reqs.total").unwrap();
        assert_eq!(m.define("p", MetricKind::Counter, "reqs.total"), Ok(c));
        assert_eq!(
            m.define("p", MetricKind::Gauge, "reqs.total"),
            Err(MetricError::BadArgument)
        );
        let g = m.define("p", MetricKind::Gauge, "level").unwrap();
        let h = m.define("p", MetricKind::Histogram, "size").unwrap();
        m.increment("p", c, 2).unwrap();
        assert_eq!(m.increment("p", c, -1), Err(MetricError::BadArgument));
        assert_eq!(m.increment("other", c, 1), Err(MetricError::NotFound));
        m.record("p", g, 7).unwrap();
        m.increment("p", g, -2).unwrap();
        m.record("p", h, 3).unwrap();
        m.record("p", h, 1_000_000).unwrap();
        assert_eq!(m.get("p", c), Ok(2));
        assert_eq!(m.get("p", g), Ok(5));
        assert_eq!(m.get("p", h), Err(MetricError::BadArgument));
        let mut e = crate::metrics::Exposition::default();
        m.expose(&mut e);
        let out = e.render();
        assert!(
            out.contains("# TYPE plugin_reqs_total counter\nplugin_reqs_total{plugin=\"p\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("plugin_level{plugin=\"p\"} 5\n"), "{out}");
        assert!(
            out.contains("plugin_size_bucket{plugin=\"p\",le=\"5\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("plugin_size_bucket{plugin=\"p\",le=\"+Inf\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("plugin_size_count{plugin=\"p\"} 2\n"), "{out}");
    }
}

#[cfg(test)]
mod exposition_tests {
    use super::*;

    #[test]
    fn one_family_per_exposed_name_whatever_the_plugins_called_them() {
        let m = Metrics::default();
        let a = m.define("p", MetricKind::Counter, "hits").unwrap();
        let b = m.define("p", MetricKind::Counter, "hits_total").unwrap();
        let c = m.define("q", MetricKind::Counter, "hits").unwrap();
        let g = m.define("r", MetricKind::Gauge, "hits").unwrap();
        m.increment("p", a, 2).unwrap();
        m.increment("p", b, 3).unwrap();
        m.increment("q", c, 1).unwrap();
        m.record("r", g, 7).unwrap();
        let mut e = crate::metrics::Exposition::default();
        m.expose(&mut e);
        let text = e.render();
        assert_eq!(
            text.matches("# TYPE plugin_hits_total counter").count(),
            1,
            "{text}"
        );
        assert!(text.contains("plugin_hits_total{plugin=\"p\"} 5"), "{text}");
        assert!(text.contains("plugin_hits_total{plugin=\"q\"} 1"), "{text}");
        assert_eq!(
            text.matches("plugin_hits_total{plugin=\"p\"}").count(),
            1,
            "{text}"
        );
        assert!(text.contains("# TYPE plugin_hits_gauge gauge"), "{text}");
        assert!(text.contains("plugin_hits_gauge{plugin=\"r\"} 7"), "{text}");
    }
}
