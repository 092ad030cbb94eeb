//! What the client sees: the rate-limit headers of an [`Outcome`], and the 429 and 503 answers.

use crate::config::HeaderStyle;
use crate::limiter::Outcome;

/// The error code of a 429's JSON body.
pub const RATE_LIMITED: &str = "rate_limited";

/// The error code of the 503 that `on_store_error: deny` answers.
pub const STORE_UNAVAILABLE: &str = "rate_limit_store_unavailable";

/// Whole seconds, rounded up.
fn seconds(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// `Retry-After` of a refused request: seconds, rounded up, at least 1.
pub fn retry_after(outcome: &Outcome) -> u64 {
    seconds(outcome.retry_after_ms()).max(1)
}

/// The headers `style` adds to every answer: for `ietf`, the most restrictive limit's
/// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds, rounded up); for
/// `x-ratelimit`, `X-RateLimit-Limit-<Period>` and `X-RateLimit-Remaining-<Period>` of each limit.
pub fn headers(style: HeaderStyle, outcome: &Outcome) -> Vec<(String, String)> {
    match style {
        HeaderStyle::None => Vec::new(),
        HeaderStyle::Ietf => match outcome.tightest() {
            None => Vec::new(),
            Some(s) => vec![
                ("ratelimit-limit".into(), s.quota.to_string()),
                ("ratelimit-remaining".into(), s.remaining.to_string()),
                ("ratelimit-reset".into(), seconds(s.reset_ms).to_string()),
            ],
        },
        HeaderStyle::XRateLimit => outcome
            .states
            .iter()
            .flat_map(|s| {
                let period = s.limit.per.name();
                [
                    (format!("x-ratelimit-limit-{period}"), s.quota.to_string()),
                    (
                        format!("x-ratelimit-remaining-{period}"),
                        s.remaining.to_string(),
                    ),
                ]
            })
            .collect(),
    }
}

/// A JSON error answer in the shape of the gateway's own error bodies.
fn json(
    status: u16,
    mut headers: Vec<(String, String)>,
    body: serde_json::Value,
    request_id: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    headers.push(("content-type".into(), "application/json".into()));
    headers.push(("x-request-id".into(), request_id.into()));
    (status, headers, format!("{body}\n").into_bytes())
}

/// The 429: `headers` (the style's), `Retry-After`, and
/// `{"error":"rate_limited","message":...,"request_id":...,"retry_after":<seconds>}`.
pub fn too_many(
    outcome: &Outcome,
    mut headers: Vec<(String, String)>,
    message: &str,
    request_id: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let wait = retry_after(outcome);
    headers.push(("retry-after".into(), wait.to_string()));
    let body = serde_json::json!({
        "error": RATE_LIMITED,
        "message": message,
        "request_id": request_id,
        "retry_after": wait,
    });
    json(429, headers, body, request_id)
}

/// The 503 of `on_store_error: deny`.
pub fn unavailable(request_id: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let body = serde_json::json!({
        "error": STORE_UNAVAILABLE,
        "message": "Rate limiting is unavailable; try again later",
        "request_id": request_id,
    });
    json(503, Vec::new(), body, request_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Algorithm, Limit, Period};
    use crate::limiter::State;

    fn state(per: Period, quota: u64, remaining: u64, reset_ms: u64, retry: Option<u64>) -> State {
        State {
            limit: Limit {
                per,
                limit: quota,
                algorithm: Algorithm::FixedWindow,
            },
            quota,
            remaining,
            reset_ms,
            refused: retry.is_some(),
            retry_after_ms: retry.unwrap_or(0),
            contended: false,
        }
    }

    fn pairs(h: &[(String, String)]) -> Vec<(&str, &str)> {
        h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
    }

    #[test]
    fn ietf_names_the_tightest_limit() {
        let o = Outcome {
            states: vec![
                state(Period::Minute, 100, 40, 30_001, None),
                state(Period::Hour, 1000, 5, 1_800_000, None),
            ],
        };
        assert_eq!(
            pairs(&headers(HeaderStyle::Ietf, &o)),
            [
                ("ratelimit-limit", "1000"),
                ("ratelimit-remaining", "5"),
                ("ratelimit-reset", "1800")
            ]
        );
        assert_eq!(
            pairs(&headers(HeaderStyle::XRateLimit, &o)),
            [
                ("x-ratelimit-limit-minute", "100"),
                ("x-ratelimit-remaining-minute", "40"),
                ("x-ratelimit-limit-hour", "1000"),
                ("x-ratelimit-remaining-hour", "5")
            ]
        );
        assert!(headers(HeaderStyle::None, &o).is_empty());
    }

    #[test]
    fn a_refusal_names_the_limit_that_refused() {
        let o = Outcome {
            states: vec![
                state(Period::Second, 5, 0, 400, Some(400)),
                state(Period::Day, 3, 0, 80_000_000, None),
            ],
        };
        assert_eq!(
            pairs(&headers(HeaderStyle::Ietf, &o)),
            [
                ("ratelimit-limit", "5"),
                ("ratelimit-remaining", "0"),
                ("ratelimit-reset", "1")
            ]
        );
        let (status, h, body) = too_many(&o, headers(HeaderStyle::None, &o), "slow \"down\"", "r1");
        assert_eq!(status, 429);
        assert_eq!(
            pairs(&h),
            [
                ("retry-after", "1"),
                ("content-type", "application/json"),
                ("x-request-id", "r1")
            ]
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "{\"error\":\"rate_limited\",\"message\":\"slow \\\"down\\\"\",\"request_id\":\"r1\",\"retry_after\":1}\n"
        );
        let (status, _, body) = unavailable("r2");
        assert_eq!(status, 503);
        assert!(String::from_utf8(body)
            .unwrap()
            .starts_with("{\"error\":\"rate_limit_store_unavailable\""));
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(seconds(0), 0);
        assert_eq!(seconds(1), 1);
        assert_eq!(seconds(1000), 1);
        assert_eq!(seconds(1001), 2);
    }
}
