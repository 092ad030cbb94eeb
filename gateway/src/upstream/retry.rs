//! Retry decisions: which failures and methods are retried, exponential backoff with jitter, and a retry
//! budget so that retries cannot multiply load on an upstream that is already failing.

use crate::config::{self, RetryOn};
use http::Method;
use rand::Rng;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A route's compiled retry policy.
pub struct RetryPolicy {
    /// The config.
    pub cfg: config::Retry,
    budget: Mutex<Budget>,
}

struct Budget {
    balance: f64,
    last_refill: Instant,
}

/// What went wrong with one try, for retry decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryOutcome {
    /// Connection refused or connect timeout.
    ConnectFailure,
    /// Broken exchange after connecting.
    Reset,
    /// The try timed out.
    Timeout,
    /// A response with this status.
    Status(u16),
    /// A gRPC call's trailers-only answer with this status (not OK).
    Grpc(crate::proxy::grpc::Code),
}

impl RetryPolicy {
    /// Compiles a policy.
    pub fn new(cfg: config::Retry) -> Self {
        RetryPolicy {
            budget: Mutex::new(Budget {
                balance: cfg.budget_min_per_second as f64,
                last_refill: Instant::now(),
            }),
            cfg,
        }
    }

    /// Whether requests with this method may be retried.
    pub fn method_allowed(&self, m: &Method) -> bool {
        self.cfg.allow_non_idempotent
            || matches!(
                *m,
                Method::GET
                    | Method::HEAD
                    | Method::OPTIONS
                    | Method::PUT
                    | Method::DELETE
                    | Method::TRACE
            )
    }

    /// Whether the policy has a gRPC condition: a gRPC call (a POST) may then be retried whatever
    /// `allow_non_idempotent` says, as Envoy retries gRPC calls by their `retry_on` alone.
    pub fn retries_grpc(&self) -> bool {
        self.cfg.on.iter().any(|on| matches!(on, RetryOn::Grpc(_)))
    }

    /// Whether this outcome is one the policy retries.
    pub fn retries(&self, outcome: TryOutcome) -> bool {
        self.cfg.on.iter().any(|on| {
            matches!(
                (on, outcome),
                (RetryOn::ConnectFailure, TryOutcome::ConnectFailure)
                    | (RetryOn::Reset, TryOutcome::Reset)
                    | (RetryOn::Timeout, TryOutcome::Timeout)
            ) || matches!((on, outcome), (RetryOn::Status(a), TryOutcome::Status(b)) if *a == b)
                || matches!((on, outcome), (RetryOn::Grpc(a), TryOutcome::Grpc(b)) if *a == b)
        })
    }

    fn cap(&self) -> f64 {
        (self.cfg.budget_min_per_second as f64 * 10.0).max(10.0)
    }

    fn refill(&self, b: &mut Budget) {
        let now = Instant::now();
        let secs = now.duration_since(b.last_refill).as_secs_f64();
        b.last_refill = now;
        b.balance = (b.balance + secs * self.cfg.budget_min_per_second as f64).min(self.cap());
    }

    /// Credits the budget for a new request on the route.
    pub fn deposit(&self) {
        let mut b = self.budget.lock().unwrap();
        self.refill(&mut b);
        b.balance = (b.balance + self.cfg.budget_ratio).min(self.cap());
    }

    /// Takes one retry from the budget, if there is one.
    pub fn withdraw(&self) -> bool {
        let mut b = self.budget.lock().unwrap();
        self.refill(&mut b);
        if b.balance >= 1.0 {
            b.balance -= 1.0;
            true
        } else {
            false
        }
    }

    /// The pause before another try, when try number `attempt` (0 for the first) ended with
    /// `outcome`: when the policy retries that outcome, has a retry left, and the next try can
    /// start (the pause done) before `deadline`. The caller then picks an endpoint and takes the
    /// retry from the budget ([`withdraw`](Self::withdraw)).
    pub fn next_pause(
        &self,
        attempt: u32,
        outcome: TryOutcome,
        deadline: Instant,
    ) -> Option<Duration> {
        if attempt >= self.cfg.attempts || !self.retries(outcome) {
            return None;
        }
        let pause = self.backoff(attempt + 1);
        (Instant::now() + pause < deadline).then_some(pause)
    }

    /// Backoff before retry number `n` (1-based): base * 2^(n-1), capped, with full jitter in its
    /// upper half.
    pub fn backoff(&self, n: u32) -> Duration {
        let base = self.cfg.backoff_base.0;
        let exp = base.saturating_mul(1u32 << (n.saturating_sub(1)).min(16));
        let d = exp.min(self.cfg.backoff_max.0);
        let half = d / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> RetryPolicy {
        RetryPolicy::new(serde_yaml_ng::from_str(yaml).unwrap())
    }

    #[test]
    fn conditions_and_methods() {
        let p = policy("on: [connect_failure, 503]");
        assert!(p.retries(TryOutcome::ConnectFailure));
        assert!(p.retries(TryOutcome::Status(503)));
        assert!(!p.retries(TryOutcome::Status(500)));
        assert!(!p.retries(TryOutcome::Timeout));
        assert!(p.method_allowed(&Method::GET));
        assert!(!p.method_allowed(&Method::POST));
        assert!(policy("allow_non_idempotent: true").method_allowed(&Method::POST));
    }

    #[test]
    fn grpc_conditions() {
        use crate::proxy::grpc::Code;
        let p = policy("on: [grpc:unavailable, 'grpc:resource-exhausted']");
        assert!(p.retries_grpc());
        assert!(p.retries(TryOutcome::Grpc(Code::Unavailable)));
        assert!(p.retries(TryOutcome::Grpc(Code::ResourceExhausted)));
        assert!(!p.retries(TryOutcome::Grpc(Code::Internal)));
        assert!(!p.retries(TryOutcome::Status(200)));
        assert!(!policy("on: [503]").retries_grpc());
        let err = serde_yaml_ng::from_str::<config::Retry>("on: [grpc:not-found]").unwrap_err();
        assert!(err.to_string().contains("grpc:unavailable"), "{err}");
        let back = serde_yaml_ng::to_string(&p.cfg.on).unwrap();
        assert!(back.contains("grpc:resource-exhausted"), "{back}");
    }

    #[test]
    fn budget_limits_retries() {
        let p = policy("budget_ratio: 0.5\nbudget_min_per_second: 0");
        assert!(!p.withdraw());
        p.deposit();
        p.deposit();
        assert!(p.withdraw());
        assert!(!p.withdraw());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = policy("backoff_base: 10ms\nbackoff_max: 40ms");
        let b1 = p.backoff(1);
        assert!(b1 >= Duration::from_millis(5) && b1 <= Duration::from_millis(10));
        let b5 = p.backoff(5);
        assert!(b5 >= Duration::from_millis(20) && b5 <= Duration::from_millis(40));
    }
}
