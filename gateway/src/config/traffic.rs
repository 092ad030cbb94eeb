//! A route's traffic split (several upstreams, chosen per request by header or cookie rules, then by
//! weight) and its request mirror (a sampled copy of requests sent to a shadow upstream), as written
//! in YAML, with the checks that need no other part of the config. Names of upstreams are resolved
//! where routes are built (`runtime`).

use super::{Dur, Size};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `split:` instead of `upstream:`: the upstream is chosen per request, when the route is, from the
/// request as the client sent it. The first rule that matches picks its upstream; a request no rule
/// matches is sent by weight (a weight of 0 gets no such request).
///
/// ```yaml
/// split:
///   rules:
///     - {header: x-canary, exact: "1", upstream: shop-v2}
///     - {cookie: canary, exact: "1", upstream: shop-v2}
///   weights:
///     - {upstream: shop-v1, weight: 95}
///     - {upstream: shop-v2, weight: 5}
/// ```
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// Rules tried in order before the weights. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<SplitRule>,
    /// The upstreams and their shares; the weights must add up to more than 0.
    pub weights: Vec<WeightedUpstream>,
}

/// One rule of a split: a header or a cookie, a test of its value, and the upstream it picks.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitRule {
    /// A request header's name (any case). Write exactly one of `header` and `cookie`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// A cookie's name (exact case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// The value must equal this. Write exactly one of `exact`, `regex` and `present`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value must match this regular expression (whole value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// `true`: the header or cookie must be there; `false`: it must not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// The upstream a matching request goes to.
    pub upstream: String,
}

/// What a split rule looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKey<'a> {
    /// A request header.
    Header(&'a str),
    /// A cookie.
    Cookie(&'a str),
}

impl SplitRule {
    /// The header or cookie the rule looks at.
    pub fn key(&self) -> Result<RuleKey<'_>, String> {
        match (&self.header, &self.cookie) {
            (Some(h), None) => Ok(RuleKey::Header(h)),
            (None, Some(c)) if !c.is_empty() => Ok(RuleKey::Cookie(c)),
            (None, Some(_)) => Err("cookie: a cookie name cannot be empty".into()),
            _ => Err("header: write exactly one of `header` and `cookie`".into()),
        }
    }

    /// The value test, as a route's header matcher writes it.
    pub fn value_match(&self, name: &str) -> super::ValueMatch {
        super::ValueMatch {
            name: name.to_owned(),
            exact: self.exact.clone(),
            regex: self.regex.clone(),
            present: self.present,
        }
    }
}

/// An upstream of a split and its share.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightedUpstream {
    /// The upstream's name.
    pub upstream: String,
    /// Its share, relative to the others' (0 to 10000; 0 takes no weighted traffic).
    pub weight: u32,
}

/// The largest weight of one upstream of a split.
pub const MAX_SPLIT_WEIGHT: u32 = 10_000;

/// The most upstreams the weights of a split list.
pub const MAX_SPLIT_UPSTREAMS: usize = 256;

/// The most rules of a split.
pub const MAX_SPLIT_RULES: usize = 1024;

impl Split {
    /// Checks what needs no other part of the config; an error starts with the field's path under
    /// `split` (`weights[1].weight: ...`).
    pub fn check(&self) -> Result<(), String> {
        if self.weights.is_empty() {
            return Err("weights: a split needs at least one upstream".into());
        }
        if self.weights.len() > MAX_SPLIT_UPSTREAMS {
            return Err(format!(
                "weights: at most {MAX_SPLIT_UPSTREAMS} upstreams, not {}",
                self.weights.len()
            ));
        }
        if self.rules.len() > MAX_SPLIT_RULES {
            return Err(format!(
                "rules: at most {MAX_SPLIT_RULES} rules, not {}",
                self.rules.len()
            ));
        }
        for (j, w) in self.weights.iter().enumerate() {
            if w.weight > MAX_SPLIT_WEIGHT {
                return Err(format!(
                    "weights[{j}].weight: {} is more than {MAX_SPLIT_WEIGHT}",
                    w.weight
                ));
            }
            if self.weights[..j].iter().any(|o| o.upstream == w.upstream) {
                return Err(format!(
                    "weights[{j}].upstream: `{}` is listed twice",
                    w.upstream
                ));
            }
        }
        if self.weights.iter().all(|w| w.weight == 0) {
            return Err("weights: the weights add up to 0; give one upstream more".into());
        }
        for (j, r) in self.rules.iter().enumerate() {
            r.key().map_err(|m| format!("rules[{j}].{m}"))?;
            let tests = usize::from(r.exact.is_some())
                + usize::from(r.regex.is_some())
                + usize::from(r.present.is_some());
            if tests != 1 {
                return Err(format!(
                    "rules[{j}]: write exactly one of `exact`, `regex` or `present`"
                ));
            }
        }
        Ok(())
    }
}

/// `mirror:`: a copy of a sampled share of the route's forwarded requests goes to a shadow upstream,
/// fire and forget (its answer is read and dropped; it never changes, delays or fails the request).
///
/// ```yaml
/// mirror: {upstream: shadow, percent: 10, max_body: 64KiB}
/// ```
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// The shadow upstream.
    pub upstream: String,
    /// Share of requests copied, 0 to 100 (fractions allowed: `0.5`). Default: 100.
    #[serde(default = "hundred")]
    pub percent: f64,
    /// Request bodies up to this size are copied; a request with a larger body is not mirrored
    /// (counted as `skipped_body`). Default: 64KiB.
    #[serde(default = "default_mirror_body")]
    pub max_body: Size,
    /// Mirrored requests of this route in flight at once; past it a request is not mirrored
    /// (counted as `skipped_busy`). Default: 64.
    #[serde(default = "default_mirror_in_flight")]
    pub max_in_flight: u32,
    /// Time for a mirrored request, from the end of the request body to the end of the shadow's
    /// response. Default: the route's `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
}

fn hundred() -> f64 {
    100.0
}
fn default_mirror_body() -> Size {
    Size(64 * 1024)
}
fn default_mirror_in_flight() -> u32 {
    64
}

/// The largest `max_in_flight` of a mirror.
pub const MAX_MIRROR_IN_FLIGHT: u32 = 10_000;

impl Mirror {
    /// Checks what needs no other part of the config; an error starts with the field's path under
    /// `mirror`.
    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=100.0).contains(&self.percent) {
            return Err(format!(
                "percent: {} is not between 0 and 100",
                self.percent
            ));
        }
        if self.max_in_flight == 0 || self.max_in_flight > MAX_MIRROR_IN_FLIGHT {
            return Err(format!(
                "max_in_flight: must be between 1 and {MAX_MIRROR_IN_FLIGHT}"
            ));
        }
        if self.timeout.is_some_and(|t| t.0.is_zero()) {
            return Err("timeout: must be more than 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(yaml: &str) -> Result<(), String> {
        let s: Split = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
        s.check()
    }

    #[test]
    fn split_checks_name_the_field() {
        let cases = [
            ("weights: []", "weights: a split needs"),
            ("weights: [{upstream: a, weight: 0}, {upstream: b, weight: 0}]", "weights: the weights add up to 0"),
            ("weights: [{upstream: a, weight: 10001}]", "weights[0].weight: 10001 is more"),
            ("weights: [{upstream: a, weight: 1}, {upstream: a, weight: 2}]", "weights[1].upstream: `a` is listed twice"),
            ("weights: [{upstream: a, weight: 1}]\nrules: [{exact: x, upstream: a}]", "rules[0].header: write exactly one of"),
            ("weights: [{upstream: a, weight: 1}]\nrules: [{header: h, cookie: c, exact: x, upstream: a}]", "rules[0].header: write exactly one of"),
            ("weights: [{upstream: a, weight: 1}]\nrules: [{cookie: '', exact: x, upstream: a}]", "rules[0].cookie: a cookie name"),
            ("weights: [{upstream: a, weight: 1}]\nrules: [{header: h, upstream: a}]", "rules[0]: write exactly one of `exact`"),
            ("weights: [{upstream: a, weight: 1}]\nrules: [{header: h, exact: x, present: true, upstream: a}]", "rules[0]: write exactly one of `exact`"),
        ];
        for (yaml, want) in cases {
            let err = split(yaml).expect_err(yaml);
            assert!(err.starts_with(want), "{yaml}: {err}");
        }
        let many: Vec<String> = (0..=MAX_SPLIT_UPSTREAMS)
            .map(|i| format!("{{upstream: u{i}, weight: 1}}"))
            .collect();
        let err = split(&format!("weights: [{}]", many.join(", "))).unwrap_err();
        assert!(err.starts_with("weights: at most 256 upstreams"), "{err}");
        split("weights: [{upstream: a, weight: 100}, {upstream: b, weight: 0}]\nrules: [{cookie: c, present: true, upstream: b}]").unwrap();
    }

    #[test]
    fn both_read_back_as_written_out() {
        // `/config` shows the effective config as JSON; reading it back gives the same.
        let s: Split = serde_yaml_ng::from_str(
            "rules: [{cookie: c, regex: 'a|b', upstream: b}]\nweights: [{upstream: a, weight: 3}]",
        )
        .unwrap();
        let back: Split = serde_yaml_ng::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let m: Mirror =
            serde_yaml_ng::from_str("{upstream: s, percent: 2.5, max_body: 1KiB, timeout: 3s}")
                .unwrap();
        let back: Mirror = serde_yaml_ng::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn mirror_checks_and_defaults() {
        let m: Mirror = serde_yaml_ng::from_str("upstream: s").unwrap();
        assert_eq!(
            (m.percent, m.max_body, m.max_in_flight, m.timeout),
            (100.0, Size(65536), 64, None)
        );
        m.check().unwrap();
        for (yaml, want) in [
            ("{upstream: s, percent: 101}", "percent: 101 is not between"),
            ("{upstream: s, percent: -1}", "percent: -1 is not between"),
            (
                "{upstream: s, percent: .nan}",
                "percent: NaN is not between",
            ),
            (
                "{upstream: s, max_in_flight: 0}",
                "max_in_flight: must be between",
            ),
            ("{upstream: s, timeout: 0s}", "timeout: must be more than 0"),
        ] {
            let m: Mirror = serde_yaml_ng::from_str(yaml).unwrap();
            let err = m.check().expect_err(yaml);
            assert!(err.starts_with(want), "{yaml}: {err}");
        }
    }
}
