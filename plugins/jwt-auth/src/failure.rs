//! Why a request is refused: each reason has its status, its stable `error` code (the JSON body's)
//! and a description for the body's `message` and the `WWW-Authenticate` challenge. Descriptions
//! are fixed texts: nothing of the token is ever echoed.

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No token where the config looks for one.
    Missing,
    /// Not a compact JWS with a JSON header and claims; the text says what is wrong.
    Malformed(&'static str),
    /// `alg` is `none`, or an algorithm the plugin does not verify.
    UnsupportedAlgorithm,
    /// No key for the token: no consumer credential, inline key or JWKS key fits its `kid` (or key
    /// claim).
    UnknownKey,
    /// The key the token names is for another algorithm than the token's `alg`.
    AlgorithmMismatch,
    /// The signature does not verify.
    BadSignature,
    /// `exp` has passed.
    Expired,
    /// `nbf` has not come yet.
    NotYetValid,
    /// `maximum_expiration` is set and the token has no `exp`.
    NoExpiry,
    /// `exp` is further away than `maximum_expiration`.
    LifetimeTooLong,
    /// `iss` is not one of `issuers`.
    BadIssuer,
    /// `aud` has none of `audiences`.
    BadAudience,
    /// The JWKS is needed, cannot be fetched, and no copy of it is cached.
    KeysUnavailable,
    /// The gateway refused to authenticate the token's consumer (a host error; logged).
    Internal,
}

impl Failure {
    /// The HTTP status of the refusal.
    pub fn status(self) -> u16 {
        match self {
            Failure::KeysUnavailable => 503,
            Failure::Internal => 500,
            _ => 401,
        }
    }

    /// The stable code of the JSON body's `error`.
    pub fn code(self) -> &'static str {
        match self {
            Failure::Missing => "missing_token",
            Failure::Malformed(_) => "malformed_token",
            Failure::UnsupportedAlgorithm => "unsupported_algorithm",
            Failure::UnknownKey => "unknown_key",
            Failure::AlgorithmMismatch => "algorithm_mismatch",
            Failure::BadSignature => "invalid_signature",
            Failure::Expired => "token_expired",
            Failure::NotYetValid => "token_not_yet_valid",
            Failure::NoExpiry => "missing_expiration",
            Failure::LifetimeTooLong => "expiration_too_far",
            Failure::BadIssuer => "invalid_issuer",
            Failure::BadAudience => "invalid_audience",
            Failure::KeysUnavailable => "jwks_unavailable",
            Failure::Internal => "internal_error",
        }
    }

    /// What went wrong, for people: the JSON body's `message` and the challenge's
    /// `error_description` (ASCII without quotes or backslashes, as RFC 6750 asks).
    pub fn description(self) -> &'static str {
        match self {
            Failure::Missing => "no bearer token in the request",
            Failure::Malformed(why) => why,
            Failure::UnsupportedAlgorithm => "the token's algorithm is none or not supported",
            Failure::UnknownKey => "no key is known for the token",
            Failure::AlgorithmMismatch => "the token's algorithm is not its key's",
            Failure::BadSignature => "the token's signature does not verify",
            Failure::Expired => "the token has expired",
            Failure::NotYetValid => "the token is not valid yet",
            Failure::NoExpiry => "the token has no expiration time",
            Failure::LifetimeTooLong => "the token's expiration time is too far away",
            Failure::BadIssuer => "the token's issuer is not accepted",
            Failure::BadAudience => "the token's audience is not accepted",
            Failure::KeysUnavailable => "the keys that verify tokens cannot be fetched",
            Failure::Internal => "the request could not be authenticated",
        }
    }

    /// The `WWW-Authenticate` challenge of a 401 (RFC 6750 section 3): the realm alone when there
    /// is no token, with `error="invalid_token"` and the description otherwise. None for other
    /// statuses: the token may be fine, the gateway is not.
    pub fn challenge(self, realm: &str) -> Option<String> {
        match self {
            _ if self.status() != 401 => None,
            Failure::Missing => Some(format!("Bearer realm=\"{realm}\"")),
            _ => Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                self.description()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Failure; 14] = [
        Failure::Missing,
        Failure::Malformed("malformed token: x"),
        Failure::UnsupportedAlgorithm,
        Failure::UnknownKey,
        Failure::AlgorithmMismatch,
        Failure::BadSignature,
        Failure::Expired,
        Failure::NotYetValid,
        Failure::NoExpiry,
        Failure::LifetimeTooLong,
        Failure::BadIssuer,
        Failure::BadAudience,
        Failure::KeysUnavailable,
        Failure::Internal,
    ];

    #[test]
    fn codes_are_distinct_and_descriptions_quotable() {
        let mut codes: Vec<&str> = ALL.iter().map(|f| f.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), ALL.len());
        for f in ALL {
            let d = f.description();
            assert!(
                d.bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'),
                "{d}"
            );
        }
    }

    #[test]
    fn challenges() {
        assert_eq!(
            Failure::Missing.challenge("api").unwrap(),
            r#"Bearer realm="api""#
        );
        assert_eq!(
            Failure::Expired.challenge("api").unwrap(),
            r#"Bearer realm="api", error="invalid_token", error_description="the token has expired""#
        );
        assert_eq!(Failure::KeysUnavailable.challenge("api"), None);
        assert_eq!(Failure::KeysUnavailable.status(), 503);
        assert_eq!(Failure::BadAudience.status(), 401);
    }
}
