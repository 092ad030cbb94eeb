//! The decision on one request: the limits applied through the store, then the answer (go on with
//! headers, 429), or, when the store fails, `on_store_error` (go on without headers, or 503) with a
//! warning logged at most every [`WARNING_INTERVAL_MS`].

use crate::answer;
use crate::config::{OnStoreError, RateLimiting};
use crate::key;
use crate::limiter::{self, Store};

/// The shortest time between two warnings about store failures (each instance keeps its own
/// clock). Failures in between are counted in the metric and the next warning says how many.
/// Default: 30 s.
pub const WARNING_INTERVAL_MS: u64 = 30_000;

/// What happens to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It goes on; `headers` go on the response (whatever answers it).
    Continue {
        /// The rate-limit headers.
        headers: Vec<(String, String)>,
    },
    /// The plugin answers.
    Respond {
        /// 429 or 503.
        status: u16,
        /// Headers of the answer (rate-limit headers, `Retry-After`, `content-type`).
        headers: Vec<(String, String)>,
        /// A JSON body.
        body: Vec<u8>,
    },
}

/// Which metric a request counts in (`plugin_rate_limiting_<outcome>_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every limit admitted it.
    Admitted,
    /// A limit refused it (429).
    Refused,
    /// A token bucket's compare-and-swap ran out of tries (429).
    Contended,
    /// The store failed; `on_store_error: allow` let it through.
    StoreErrorAllowed,
    /// The store failed; `on_store_error: deny` answered 503.
    StoreErrorDenied,
}

impl Outcome {
    /// The metric's name.
    pub fn metric(self) -> &'static str {
        match self {
            Outcome::Admitted => "rate_limiting_admitted",
            Outcome::Refused => "rate_limiting_refused",
            Outcome::Contended => "rate_limiting_contended",
            Outcome::StoreErrorAllowed => "rate_limiting_store_error_allowed",
            Outcome::StoreErrorDenied => "rate_limiting_store_error_denied",
        }
    }
}

/// A route's limiter: its config and its warning clock.
#[derive(Debug)]
pub struct Limiter {
    /// The route's config.
    pub config: RateLimiting,
    /// When the last store warning was logged.
    last_warning_ms: Option<u64>,
    /// Store failures not logged since.
    unlogged: u64,
}

impl Limiter {
    /// A limiter for `config`.
    pub fn new(config: RateLimiting) -> Limiter {
        Limiter {
            config,
            last_warning_ms: None,
            unlogged: 0,
        }
    }

    /// Decides on `req` at `now_ms`; `warn` logs a warning.
    pub fn check(
        &mut self,
        req: &impl key::Request,
        request_id: &str,
        now_ms: u64,
        store: &mut impl Store,
        warn: impl FnOnce(&str),
    ) -> (Verdict, Outcome) {
        let base = key::base(&self.config, req);
        let outcome = match limiter::apply(&self.config.limits, &base, now_ms, store) {
            Ok(o) => o,
            Err(e) => return self.store_failed(&e, request_id, now_ms, warn),
        };
        let headers = answer::headers(self.config.headers, &outcome);
        if outcome.admitted() {
            return (Verdict::Continue { headers }, Outcome::Admitted);
        }
        let contended = outcome.states.iter().any(|s| s.refused && s.contended);
        let (status, headers, body) =
            answer::too_many(&outcome, headers, &self.config.message, request_id);
        let why = if contended {
            Outcome::Contended
        } else {
            Outcome::Refused
        };
        (
            Verdict::Respond {
                status,
                headers,
                body,
            },
            why,
        )
    }

    fn store_failed(
        &mut self,
        e: &limiter::StoreError,
        request_id: &str,
        now_ms: u64,
        warn: impl FnOnce(&str),
    ) -> (Verdict, Outcome) {
        let (verdict, outcome, what) = match self.config.on_store_error {
            OnStoreError::Allow => (
                Verdict::Continue {
                    headers: Vec::new(),
                },
                Outcome::StoreErrorAllowed,
                "let through unlimited (on_store_error: allow)",
            ),
            OnStoreError::Deny => {
                let (status, headers, body) = answer::unavailable(request_id);
                (
                    Verdict::Respond {
                        status,
                        headers,
                        body,
                    },
                    Outcome::StoreErrorDenied,
                    "answered 503 (on_store_error: deny)",
                )
            }
        };
        let due = self
            .last_warning_ms
            .is_none_or(|t| now_ms.saturating_sub(t) >= WARNING_INTERVAL_MS);
        if due {
            let also = match self.unlogged {
                0 => String::new(),
                n => format!(" ({n} more store failures since the last warning)"),
            };
            warn(&format!(
                "rate-limiting: the counters' store failed ({e}); request {request_id} {what}{also}"
            ));
            self.last_warning_ms = Some(now_ms);
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        (verdict, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::limiter::tests::FakeStore;
    use crate::limiter::StoreError;

    struct Req;

    impl key::Request for Req {
        fn route(&self) -> String {
            "api".into()
        }
        fn client_address(&self) -> String {
            "127.0.0.1:5000".into()
        }
        fn consumer(&self) -> Option<String> {
            None
        }
        fn header(&self, _: &str) -> Option<String> {
            None
        }
        fn path(&self) -> String {
            "/".into()
        }
    }

    fn limiter(extra: &str) -> Limiter {
        Limiter::new(
            parse(&format!(
                r#"{{"limits": [{{"per": "minute", "limit": 2}}]{extra}}}"#
            ))
            .unwrap(),
        )
    }

    #[test]
    fn admits_then_refuses_with_headers() {
        let mut l = limiter("");
        let mut s = FakeStore::default();
        let (v, o) = l.check(&Req, "r1", 0, &mut s, |_| panic!("no warning"));
        assert_eq!(o, Outcome::Admitted);
        assert_eq!(
            v,
            Verdict::Continue {
                headers: vec![
                    ("ratelimit-limit".into(), "2".into()),
                    ("ratelimit-remaining".into(), "1".into()),
                    ("ratelimit-reset".into(), "60".into()),
                ]
            }
        );
        l.check(&Req, "r2", 0, &mut s, |_| panic!("no warning"));
        let (v, o) = l.check(&Req, "r3", 59_001, &mut s, |_| panic!("no warning"));
        assert_eq!(o, Outcome::Refused);
        let Verdict::Respond {
            status, headers, ..
        } = v
        else {
            panic!("{v:?}")
        };
        assert_eq!(status, 429);
        assert!(headers.contains(&("retry-after".into(), "1".into())));
        assert!(headers.contains(&("ratelimit-remaining".into(), "0".into())));
    }

    #[test]
    fn store_down_allow_goes_on_without_headers_and_warns_once_in_a_while() {
        let mut l = limiter("");
        let mut s = FakeStore {
            down: Some(StoreError::Unavailable("timed out after 50 ms".into())),
            ..FakeStore::default()
        };
        let mut warnings = Vec::new();
        for t in [0, 1_000, 29_999, 30_000, 30_001] {
            let (v, o) = l.check(&Req, "r", t, &mut s, |w| warnings.push((t, w.to_string())));
            assert_eq!(o, Outcome::StoreErrorAllowed);
            assert_eq!(v, Verdict::Continue { headers: vec![] });
        }
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!(warnings[0].0, 0);
        assert!(
            warnings[0].1.contains("timed out after 50 ms"),
            "{}",
            warnings[0].1
        );
        assert!(warnings[0].1.contains("on_store_error: allow"));
        assert_eq!(warnings[1].0, 30_000);
        assert!(
            warnings[1].1.contains("(2 more store failures"),
            "{}",
            warnings[1].1
        );
        // Back up: limited again.
        s.down = None;
        let (_, o) = l.check(&Req, "r", 31_000, &mut s, |_| panic!("no warning"));
        assert_eq!(o, Outcome::Admitted);
    }

    #[test]
    fn store_down_deny_answers_503() {
        let mut l = limiter(r#", "on_store_error": "deny""#);
        let mut s = FakeStore {
            down: Some(StoreError::Unavailable("connection refused".into())),
            ..FakeStore::default()
        };
        let mut warned = 0;
        let (v, o) = l.check(&Req, "r9", 0, &mut s, |_| warned += 1);
        assert_eq!(o, Outcome::StoreErrorDenied);
        let Verdict::Respond { status, body, .. } = v else {
            panic!("{v:?}")
        };
        assert_eq!(status, 503);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "{\"error\":\"rate_limit_store_unavailable\",\"message\":\"Rate limiting is \
             unavailable; try again later\",\"request_id\":\"r9\"}\n"
        );
        assert_eq!(warned, 1);
    }

    #[test]
    fn contention_is_a_refusal_of_its_own() {
        let mut l = Limiter::new(
            parse(r#"{"limits": [{"per": "second", "limit": 5, "algorithm": "token_bucket"}]}"#)
                .unwrap(),
        );
        let mut s = FakeStore {
            steal_cas: 1_000,
            ..FakeStore::default()
        };
        let (v, o) = l.check(&Req, "r", 0, &mut s, |_| panic!("no warning"));
        assert_eq!(o, Outcome::Contended);
        assert!(matches!(v, Verdict::Respond { status: 429, .. }));
    }
}
