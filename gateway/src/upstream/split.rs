//! A route's traffic split, compiled: the upstream clusters it may send a request to, the header and
//! cookie rules tried first, and the weights that choose among the clusters otherwise. Choosing is a
//! walk over the rules and one random number: no lock, no allocation.

use super::Cluster;
use crate::router::ValueTest;
use http::header::{HeaderMap, HeaderName, COOKIE};
use rand::Rng;
use std::sync::Arc;

/// What a rule looks at.
#[derive(Debug)]
pub enum RuleKey {
    /// A request header (every value is tried, as route matchers do).
    Header(HeaderName),
    /// A cookie (its first occurrence).
    Cookie(String),
}

/// A rule: a header or cookie, a test of its value, and the cluster it picks.
#[derive(Debug)]
pub struct Rule {
    /// What the rule looks at.
    pub key: RuleKey,
    /// The test of its value (absent: `None`).
    pub test: ValueTest,
    /// Index into [`Split::clusters`].
    pub cluster: usize,
}

impl Rule {
    fn matches(&self, headers: &HeaderMap) -> bool {
        match &self.key {
            RuleKey::Header(name) => {
                let mut values = headers.get_all(name).iter().peekable();
                if values.peek().is_none() {
                    return self.test.test(None);
                }
                values.any(|v| self.test.test_header(v))
            }
            RuleKey::Cookie(name) => self.test.test(cookie(headers, name)),
        }
    }
}

/// A compiled split.
pub struct Split {
    /// The clusters it sends to: those of its weights in order, then those only rules name.
    pub clusters: Vec<Arc<Cluster>>,
    rules: Vec<Rule>,
    /// `(end, cluster)`: a draw below `end` (and at or above the previous end) picks `cluster`;
    /// clusters of weight 0 are left out.
    ranges: Vec<(u32, usize)>,
    /// The sum of the weights (more than 0).
    total: u32,
}

impl Split {
    /// A split over `clusters`, `weights[i]` being that of `clusters[i]` (clusters past the weights
    /// are only picked by rules). The caller checked that the weights add up to more than 0.
    pub fn new(clusters: Vec<Arc<Cluster>>, weights: &[u32], rules: Vec<Rule>) -> Split {
        let mut ranges = Vec::with_capacity(weights.len());
        let mut total = 0u32;
        for (i, &w) in weights.iter().enumerate() {
            if w > 0 {
                total += w;
                ranges.push((total, i));
            }
        }
        assert!(total > 0, "a split's weights add up to more than 0");
        assert!(
            clusters.len() <= usize::from(u16::MAX),
            "a split's clusters are counted in a u16"
        );
        Split {
            clusters,
            rules,
            ranges,
            total,
        }
    }

    /// The index in [`Split::clusters`] of the cluster for a request with these headers: the first
    /// rule that matches, else a draw by weight.
    pub fn pick(&self, headers: &HeaderMap) -> u16 {
        let i = match self.rules.iter().find(|r| r.matches(headers)) {
            Some(r) => r.cluster,
            None => self.by_weight(rand::rng().random_range(0..self.total)),
        };
        i as u16
    }

    /// The cluster a draw in `0..total` picks.
    fn by_weight(&self, draw: u32) -> usize {
        let i = self.ranges.partition_point(|&(end, _)| end <= draw);
        self.ranges[i.min(self.ranges.len() - 1)].1
    }
}

/// The value of the first cookie called `name` in the request's Cookie headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::UpstreamStats;

    fn cluster(name: &str) -> Arc<Cluster> {
        let cfg: crate::config::Upstream =
            serde_yaml_ng::from_str(&format!("{{name: {name}, endpoints: [127.0.0.1:1]}}"))
                .unwrap();
        Arc::new(Cluster::new(&cfg, Arc::new(UpstreamStats::default()), None))
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn draws_cover_each_weight_exactly() {
        let s = Split::new(
            vec![cluster("a"), cluster("b"), cluster("c")],
            &[3, 0, 2],
            vec![],
        );
        let picks: Vec<usize> = (0..5).map(|d| s.by_weight(d)).collect();
        assert_eq!(picks, [0, 0, 0, 2, 2]);
    }

    #[test]
    fn rules_come_first_in_order_then_weights() {
        let s = Split::new(
            vec![cluster("stable"), cluster("canary"), cluster("beta")],
            &[1, 0],
            vec![
                Rule {
                    key: RuleKey::Header(HeaderName::from_static("x-canary")),
                    test: ValueTest::Exact("1".into()),
                    cluster: 1,
                },
                Rule {
                    key: RuleKey::Cookie("beta".into()),
                    test: ValueTest::Present(true),
                    cluster: 2,
                },
            ],
        );
        assert_eq!(s.pick(&headers(&[("x-canary", "1")])), 1);
        assert_eq!(s.pick(&headers(&[("x-canary", "0"), ("x-canary", "1")])), 1);
        assert_eq!(s.pick(&headers(&[("cookie", "a=1; beta=yes")])), 2);
        assert_eq!(
            s.pick(&headers(&[("cookie", "beta=1"), ("x-canary", "1")])),
            1
        );
        for h in [
            headers(&[]),
            headers(&[("x-canary", "2")]),
            headers(&[("cookie", "betamax=1; xbeta=2")]),
        ] {
            assert_eq!(s.pick(&h), 0, "{h:?}");
        }
    }
}
