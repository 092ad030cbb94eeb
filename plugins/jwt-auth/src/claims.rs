//! The checks of a verified token's claims: `exp` and `nbf` against the gateway's clock (with the
//! configured skew), how far away `exp` may be, `iss` and `aud`; and the values of claims copied to
//! request headers.

use crate::failure::Failure;
use serde_json::{Map, Value};

/// The claim checks of a route.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    /// Seconds of tolerance for `exp` and `nbf`, for clocks that differ a little.
    pub clock_skew: u64,
    /// When above 0: tokens must have `exp`, at most this many seconds away.
    pub maximum_expiration: u64,
    /// When not empty: `iss` must be one of these.
    pub issuers: Vec<String>,
    /// When not empty: `aud` (a string, or a list of strings) must hold one of these.
    pub audiences: Vec<String>,
}

impl Rules {
    /// Checks `claims` at `now_ms` (milliseconds since the Unix epoch). `exp` and `nbf` are
    /// NumericDates (seconds, possibly with a fraction); the parser made sure they are numbers.
    pub fn check(&self, claims: &Map<String, Value>, now_ms: u64) -> Result<(), Failure> {
        let now = now_ms as f64 / 1000.0;
        let skew = self.clock_skew as f64;
        let exp = claims.get("exp").and_then(Value::as_f64);
        // RFC 7519 section 4.1.4: the token must not be accepted on or after `exp`.
        if exp.is_some_and(|exp| now >= exp + skew) {
            return Err(Failure::Expired);
        }
        // Section 4.1.5: nor before `nbf`.
        if claims
            .get("nbf")
            .and_then(Value::as_f64)
            .is_some_and(|nbf| now + skew < nbf)
        {
            return Err(Failure::NotYetValid);
        }
        if self.maximum_expiration > 0 {
            match exp {
                None => return Err(Failure::NoExpiry),
                Some(exp) if exp - now > self.maximum_expiration as f64 => {
                    return Err(Failure::LifetimeTooLong)
                }
                Some(_) => {}
            }
        }
        if !self.issuers.is_empty() {
            let iss = claims.get("iss").and_then(Value::as_str);
            if !iss.is_some_and(|iss| self.issuers.iter().any(|i| i == iss)) {
                return Err(Failure::BadIssuer);
            }
        }
        if !self.audiences.is_empty() {
            let accepted = |a: &Value| {
                a.as_str()
                    .is_some_and(|a| self.audiences.iter().any(|x| x == a))
            };
            let ok = match claims.get("aud") {
                Some(Value::Array(list)) => list.iter().any(accepted),
                Some(one) => accepted(one),
                None => false,
            };
            if !ok {
                return Err(Failure::BadAudience);
            }
        }
        Ok(())
    }
}

/// A claim's value as a header value: a string as it is, anything else as compact JSON.
pub fn header_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000_000;
    const NOW_S: i64 = 1_700_000_000;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn check(rules: &Rules, v: Value) -> Result<(), Failure> {
        rules.check(&claims(v), NOW)
    }

    #[test]
    fn exp_and_nbf() {
        let r = Rules::default();
        assert_eq!(check(&r, json!({})), Ok(()));
        assert_eq!(check(&r, json!({"exp": NOW_S + 1})), Ok(()));
        assert_eq!(check(&r, json!({"exp": NOW_S})), Err(Failure::Expired));
        assert_eq!(check(&r, json!({"exp": NOW_S as f64 + 0.5})), Ok(()));
        assert_eq!(check(&r, json!({"exp": 0})), Err(Failure::Expired));
        assert_eq!(check(&r, json!({"exp": -1})), Err(Failure::Expired));
        assert_eq!(check(&r, json!({"exp": 1e300})), Ok(()));
        assert_eq!(check(&r, json!({"nbf": NOW_S})), Ok(()));
        assert_eq!(
            check(&r, json!({"nbf": NOW_S + 1})),
            Err(Failure::NotYetValid)
        );
        assert_eq!(
            check(&r, json!({"nbf": NOW_S + 1, "exp": NOW_S - 1})),
            Err(Failure::Expired)
        );
    }

    #[test]
    fn clock_skew_widens_both_ends() {
        let r = Rules {
            clock_skew: 30,
            ..Rules::default()
        };
        assert_eq!(check(&r, json!({"exp": NOW_S - 29})), Ok(()));
        assert_eq!(check(&r, json!({"exp": NOW_S - 30})), Err(Failure::Expired));
        assert_eq!(check(&r, json!({"nbf": NOW_S + 30})), Ok(()));
        assert_eq!(
            check(&r, json!({"nbf": NOW_S + 31})),
            Err(Failure::NotYetValid)
        );
    }

    #[test]
    fn maximum_expiration_needs_a_near_exp() {
        let r = Rules {
            maximum_expiration: 3600,
            ..Rules::default()
        };
        assert_eq!(check(&r, json!({})), Err(Failure::NoExpiry));
        assert_eq!(check(&r, json!({"exp": NOW_S + 3600})), Ok(()));
        assert_eq!(
            check(&r, json!({"exp": NOW_S + 3601})),
            Err(Failure::LifetimeTooLong)
        );
        assert_eq!(check(&r, json!({"exp": NOW_S - 1})), Err(Failure::Expired));
    }

    #[test]
    fn issuers_and_audiences() {
        let r = Rules {
            issuers: vec!["https://idp.example".into(), "other".into()],
            audiences: vec!["api".into(), "admin".into()],
            ..Rules::default()
        };
        let ok = |v: Value| check(&r, v);
        assert_eq!(ok(json!({"iss": "other", "aud": "api"})), Ok(()));
        assert_eq!(
            ok(json!({"iss": "https://idp.example", "aud": ["x", "admin"]})),
            Ok(())
        );
        assert_eq!(ok(json!({"aud": "api"})), Err(Failure::BadIssuer));
        assert_eq!(
            ok(json!({"iss": "https://idp.example/", "aud": "api"})),
            Err(Failure::BadIssuer)
        );
        assert_eq!(
            ok(json!({"iss": ["other"], "aud": "api"})),
            Err(Failure::BadIssuer)
        );
        assert_eq!(ok(json!({"iss": "other"})), Err(Failure::BadAudience));
        assert_eq!(
            ok(json!({"iss": "other", "aud": "API"})),
            Err(Failure::BadAudience)
        );
        assert_eq!(
            ok(json!({"iss": "other", "aud": []})),
            Err(Failure::BadAudience)
        );
        assert_eq!(
            ok(json!({"iss": "other", "aud": [["api"]]})),
            Err(Failure::BadAudience)
        );
        // Without lists, neither is looked at.
        assert_eq!(
            check(&Rules::default(), json!({"iss": 1, "aud": 2})),
            Ok(())
        );
    }

    #[test]
    fn header_values() {
        assert_eq!(header_value(&json!("ann")), "ann");
        assert_eq!(header_value(&json!(42)), "42");
        assert_eq!(header_value(&json!(true)), "true");
        assert_eq!(header_value(&json!(["a", "b"])), r#"["a","b"]"#);
        assert_eq!(header_value(&json!({"r": 1})), r#"{"r":1}"#);
    }
}
