//! What the policy answers: whether an origin is allowed, the answer to a preflight, and the headers
//! a response to a CORS request gets. Pure functions of the config and the request's values, so the
//! handlers in `lib.rs` only read and write headers.

use crate::config::{Cors, Listed};

/// Header names, as the gateway writes them (lower case).
pub const ALLOW_ORIGIN: &str = "access-control-allow-origin";
pub const ALLOW_CREDENTIALS: &str = "access-control-allow-credentials";
pub const ALLOW_METHODS: &str = "access-control-allow-methods";
pub const ALLOW_HEADERS: &str = "access-control-allow-headers";
pub const EXPOSE_HEADERS: &str = "access-control-expose-headers";
pub const MAX_AGE: &str = "access-control-max-age";
pub const REQUEST_METHOD: &str = "access-control-request-method";
pub const REQUEST_HEADERS: &str = "access-control-request-headers";
pub const VARY: &str = "vary";

/// Why a preflight is refused (answered 403, without CORS headers).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Origin,
    Method,
}

impl Refusal {
    /// The 403's body.
    pub fn body(&self) -> &'static str {
        match self {
            Refusal::Origin => "CORS preflight refused: origin not allowed\n",
            Refusal::Method => "CORS preflight refused: method not allowed\n",
        }
    }
}

/// The headers a response to an actual CORS request gets.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoration {
    /// Set, after the upstream's own `Access-Control-Allow-Origin`, `-Allow-Credentials` and
    /// `-Expose-Headers` are removed; empty when the origin is not allowed.
    pub set: Vec<(&'static str, String)>,
    /// Whether `Origin` belongs in `Vary` (the answer depends on it: everything but a literal `*`).
    pub vary_origin: bool,
}

impl Cors {
    /// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed: `*` when any origin
    /// is (credentials are then off, the config guarantees it), else the origin as sent.
    pub fn allow_origin(&self, origin: &str) -> Option<String> {
        let o = &self.origins;
        if o.any {
            return Some("*".into());
        }
        // `exact` is lower-cased at init, so no lower-cased copy of the origin is needed.
        let allowed = o.exact.iter().any(|e| e.eq_ignore_ascii_case(origin))
            || o.regexes.iter().any(|r| r.is_match(origin));
        allowed.then(|| origin.to_string())
    }

    /// The headers of the 204 that answers a preflight from `origin` for `method` (the request's
    /// `Access-Control-Request-Method`) and `request_headers` (its `Access-Control-Request-Headers`
    /// values), or why it is refused.
    pub fn preflight(
        &self,
        origin: &str,
        method: &str,
        request_headers: &[String],
    ) -> Result<Vec<(&'static str, String)>, Refusal> {
        let allow_origin = self.allow_origin(origin).ok_or(Refusal::Origin)?;
        let mut vary = Vec::new();
        if allow_origin != "*" {
            vary.push("Origin");
        }
        let mut h = vec![(ALLOW_ORIGIN, allow_origin)];
        if self.credentials {
            h.push((ALLOW_CREDENTIALS, "true".into()));
        }
        match &self.methods {
            Listed::Only(names, value) => {
                if !names.iter().any(|n| n == method) {
                    return Err(Refusal::Method);
                }
                h.push((ALLOW_METHODS, value.clone()));
            }
            Listed::Echo => {
                h.push((ALLOW_METHODS, method.to_string()));
                vary.push("Access-Control-Request-Method");
            }
        }
        match &self.headers {
            Listed::Only(_, value) if value.is_empty() => {}
            Listed::Only(_, value) => h.push((ALLOW_HEADERS, value.clone())),
            Listed::Echo => {
                let asked = request_headers.join(", ");
                if !asked.trim().is_empty() {
                    h.push((ALLOW_HEADERS, asked));
                }
                vary.push("Access-Control-Request-Headers");
            }
        }
        if let Some(age) = &self.max_age {
            h.push((MAX_AGE, age.clone()));
        }
        if !vary.is_empty() {
            h.push((VARY, vary.join(", ")));
        }
        Ok(h)
    }

    /// What a response to an actual CORS request from `origin` gets (also a preflight passed to
    /// the backend with `preflight_continue`).
    pub fn decorate(&self, origin: &str) -> Decoration {
        let Some(allow_origin) = self.allow_origin(origin) else {
            return Decoration {
                set: Vec::new(),
                vary_origin: true,
            };
        };
        let vary_origin = allow_origin != "*";
        let mut set = vec![(ALLOW_ORIGIN, allow_origin)];
        if self.credentials {
            set.push((ALLOW_CREDENTIALS, "true".into()));
        }
        if let Some(expose) = &self.expose {
            set.push((EXPOSE_HEADERS, expose.clone()));
        }
        Decoration { set, vary_origin }
    }
}

/// Whether the `Vary` values already cover `name` (listed, or `*`).
pub fn vary_covers(values: &[String], name: &str) -> bool {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn cors(config: &str) -> Cors {
        parse(config).unwrap()
    }

    #[test]
    fn origins() {
        let c = cors(
            r#"{"allow_origins": ["https://a.example", "null"],
                "allow_origins_by_regex": ["https://[a-z]+\\.b\\.example(:[0-9]+)?",
                                           "(?i)https://[a-z]+\\.c\\.example:\\d+"]}"#,
        );
        assert_eq!(
            c.allow_origin("https://a.example").as_deref(),
            Some("https://a.example")
        );
        assert_eq!(
            c.allow_origin("HTTPS://A.example").as_deref(),
            Some("HTTPS://A.example")
        );
        assert_eq!(c.allow_origin("null").as_deref(), Some("null"));
        assert!(c.allow_origin("https://x.b.example:8443").is_some());
        assert!(c.allow_origin("https://X.C.example:8443").is_some());
        assert!(c.allow_origin("https://x.c.example").is_none());
        assert!(c.allow_origin("http://a.example").is_none());
        assert!(c.allow_origin("https://a.example.evil").is_none());
        assert!(c.allow_origin("https://x.b.example.evil").is_none());
        let any = cors(r#"{"allow_origins": ["*"]}"#);
        assert_eq!(any.allow_origin("https://z.example").as_deref(), Some("*"));
    }

    #[test]
    fn preflight_answers() {
        let c = cors(
            r#"{"allow_origins": ["https://a.example"], "allow_credentials": true, "max_age": 600,
                "allow_headers": ["x-a", "content-type"]}"#,
        );
        let h = c.preflight("https://a.example", "PUT", &[]).unwrap();
        assert_eq!(
            h,
            [
                (ALLOW_ORIGIN, "https://a.example".to_string()),
                (ALLOW_CREDENTIALS, "true".into()),
                (ALLOW_METHODS, "GET, HEAD, PUT, PATCH, POST, DELETE".into()),
                (ALLOW_HEADERS, "x-a, content-type".into()),
                (MAX_AGE, "600".into()),
                (VARY, "Origin".into()),
            ]
        );
        assert_eq!(
            c.preflight("https://b.example", "GET", &[]),
            Err(Refusal::Origin)
        );
        assert_eq!(
            c.preflight("https://a.example", "TRACE", &[]),
            Err(Refusal::Method)
        );
    }

    #[test]
    fn preflight_echoes() {
        let c = cors(r#"{"allow_origins": ["*"], "allow_methods": ["*"], "max_age": null}"#);
        let asked = ["x-a, x-b".to_string(), "authorization".to_string()];
        let h = c.preflight("https://a.example", "PURGE", &asked).unwrap();
        assert_eq!(
            h,
            [
                (ALLOW_ORIGIN, "*".to_string()),
                (ALLOW_METHODS, "PURGE".into()),
                (ALLOW_HEADERS, "x-a, x-b, authorization".into()),
                (
                    VARY,
                    "Access-Control-Request-Method, Access-Control-Request-Headers".into()
                ),
            ]
        );
    }

    #[test]
    fn decorations() {
        let c = cors(r#"{"allow_origins": ["https://a.example"], "expose_headers": ["x-total"]}"#);
        assert_eq!(
            c.decorate("https://a.example"),
            Decoration {
                set: vec![
                    (ALLOW_ORIGIN, "https://a.example".into()),
                    (EXPOSE_HEADERS, "x-total".into())
                ],
                vary_origin: true
            }
        );
        assert_eq!(
            c.decorate("https://b.example"),
            Decoration {
                set: vec![],
                vary_origin: true
            }
        );
        let any = cors(r#"{"allow_origins": ["*"]}"#);
        assert!(!any.decorate("https://b.example").vary_origin);
    }

    #[test]
    fn vary() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(vary_covers(&v(&["Accept-Encoding, origin"]), "Origin"));
        assert!(vary_covers(&v(&["accept", "*"]), "Origin"));
        assert!(!vary_covers(&v(&["Accept-Encoding", "X-Origin"]), "Origin"));
        assert!(!vary_covers(&[], "Origin"));
    }
}
