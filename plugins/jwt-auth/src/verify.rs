//! Verifying a token with the route's keys and the JWKS: which keys fit its `kid` and algorithm,
//! when the JWKS is asked, and what a miss is called. (Consumer credentials need the gateway and
//! are verified in `lib.rs`.)

use crate::config::{Jwks, JwtAuth};
use crate::failure::Failure;
use crate::jwks::Cache;
use crate::keys::{self, Key, KeyType, Search};
use crate::token::Token;

/// Whether one of `keys` verifies the token.
fn any_verifies(keys: &[&Key], token: &Token) -> bool {
    keys.iter().any(|k| {
        k.material
            .verify(token.alg, token.signing_input.as_bytes(), &token.signature)
    })
}

/// Verifies `token` with the route's keys, then, when none fits its `kid` and algorithm, with the
/// JWKS (from `cache`, which may `fetch` it at `now_ms`).
pub fn with_keys(
    auth: &JwtAuth,
    cache: &mut Cache,
    token: &Token,
    now_ms: u64,
    fetch: impl FnOnce(&Jwks) -> Result<Vec<Key>, String>,
) -> Result<(), Failure> {
    let kid = token.kid.as_deref();
    let inline = keys::search(&auth.keys, kid, token.alg);
    if let Search::Found(found) = &inline {
        return if any_verifies(found, token) {
            Ok(())
        } else {
            Err(Failure::BadSignature)
        };
    }
    let miss = if matches!(inline, Search::Mismatch) {
        Failure::AlgorithmMismatch
    } else {
        Failure::UnknownKey
    };
    // A JWKS never holds HMAC secrets (they are skipped when read), so it is not asked for them.
    let Some(source) = auth
        .jwks
        .as_ref()
        .filter(|_| token.alg.key_type() != KeyType::Hmac)
    else {
        return Err(miss);
    };
    let fits = |keys: &[Key]| matches!(keys::search(keys, kid, token.alg), Search::Found(_));
    let keys = cache
        .keys(source.timing, now_ms, fits, || fetch(source))
        .map_err(|_| Failure::KeysUnavailable)?;
    match keys::search(keys, kid, token.alg) {
        Search::Found(found) if any_verifies(&found, token) => Ok(()),
        Search::Found(_) => Err(Failure::BadSignature),
        Search::Mismatch => Err(Failure::AlgorithmMismatch),
        Search::NoKey => Err(miss),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::keys::{Alg, ALGORITHMS};
    use crate::test_keys::*;
    use crate::token;
    use serde_json::{json, Value};
    use std::cell::Cell;

    fn route(v: Value) -> JwtAuth {
        config::parse(&config::fields(&v.to_string()).unwrap()).unwrap()
    }

    fn hs(alg: Alg) -> String {
        String::from_utf8(secret(alg)).unwrap()
    }

    /// Verifies `t` at time 0 with a JWKS that serves `jwks` (or fails); returns the outcome and
    /// how many times the JWKS was fetched.
    fn check(
        auth: &JwtAuth,
        cache: &mut Cache,
        t: &str,
        jwks: Option<Value>,
    ) -> (Result<(), Failure>, usize) {
        let fetched = Cell::new(0);
        let parsed = token::parse(t).unwrap();
        let r = with_keys(auth, cache, &parsed, 0, |_| {
            fetched.set(fetched.get() + 1);
            let doc = jwks.ok_or("down")?;
            Ok(crate::jwks::parse(doc.to_string().as_bytes())?.keys)
        });
        (r, fetched.get())
    }

    fn inline(auth: &JwtAuth, t: &str) -> Result<(), Failure> {
        check(auth, &mut Cache::default(), t, None).0
    }

    #[test]
    fn every_algorithm_verifies_with_a_route_key() {
        for alg in ALGORITHMS {
            let key = match alg.key_type() {
                KeyType::Hmac => json!({"algorithm": alg.name(), "secret": hs(alg)}),
                _ => json!({"algorithm": alg.name(), "public_key": pem(alg)}),
            };
            let auth = route(json!({ "keys": [key] }));
            let t = token(json!({"alg": alg.name()}), json!({"sub": "ann"}));
            assert_eq!(inline(&auth, &t), Ok(()), "{alg:?}");
            // The same claims with another signature, and a changed payload, do not verify.
            let (input, sig) = t.rsplit_once('.').unwrap();
            let (head, _) = input.split_once('.').unwrap();
            let forged = format!("{head}.{}.{sig}", b64e(br#"{"sub":"root"}"#));
            assert_eq!(
                inline(&auth, &forged),
                Err(Failure::BadSignature),
                "{alg:?}"
            );
        }
    }

    #[test]
    fn a_key_verifies_only_its_own_algorithm() {
        // The RS256 route key, asked for an HS256 token MACed with its own PEM: key confusion.
        let auth = route(json!({"keys": [{"algorithm": "RS256", "public_key": RSA_PUB}]}));
        let input = format!(
            "{}.{}",
            b64e(br#"{"alg":"HS256"}"#),
            b64e(br#"{"sub":"root"}"#)
        );
        let mac = crate::keys::hmac(Alg::HS256, RSA_PUB.as_bytes(), input.as_bytes());
        let forged = format!("{input}.{}", b64e(&mac));
        assert_eq!(inline(&auth, &forged), Err(Failure::AlgorithmMismatch));
        // Same type, other algorithm: an RS256 key does not verify PS256 either.
        let ps = token(json!({"alg": "PS256"}), json!({}));
        assert_eq!(inline(&auth, &ps), Err(Failure::AlgorithmMismatch));
        // No key at all.
        assert_eq!(
            inline(
                &route(json!({})),
                &token(json!({"alg": "ES256"}), json!({}))
            ),
            Err(Failure::UnknownKey)
        );
    }

    #[test]
    fn kids_pick_route_keys() {
        let auth = route(json!({"keys": [
            {"kid": "a", "algorithm": "RS256", "public_key": RSA2_PUB},
            {"kid": "b", "algorithm": "RS256", "public_key": RSA_PUB},
        ]}));
        let signed_by_1 = |kid: &str| token(json!({"alg": "RS256", "kid": kid}), json!({}));
        assert_eq!(inline(&auth, &signed_by_1("b")), Ok(()));
        assert_eq!(inline(&auth, &signed_by_1("a")), Err(Failure::BadSignature));
        assert_eq!(inline(&auth, &signed_by_1("c")), Err(Failure::UnknownKey));
        // Without a kid, every key of the algorithm is tried.
        assert_eq!(
            inline(&auth, &token(json!({"alg": "RS256"}), json!({}))),
            Ok(())
        );
        let by_2 = token_with(json!({"alg": "RS256"}), json!({}), RSA2_PRIVATE);
        assert_eq!(inline(&auth, &by_2), Ok(()));
    }

    #[test]
    fn the_jwks_is_asked_when_no_route_key_fits() {
        let auth = route(json!({
            "keys": [{"kid": "hs", "algorithm": "HS256", "secret": hs(Alg::HS256)}],
            "jwks": {"upstream": "idp"},
        }));
        let jwks = json!({"keys": [public_jwk(Alg::ES256, Some("ec")), public_jwk(Alg::RS256, Some("rsa"))]});
        let mut cache = Cache::default();
        let es = token(json!({"alg": "ES256", "kid": "ec"}), json!({}));
        assert_eq!(
            check(&auth, &mut cache, &es, Some(jwks.clone())),
            (Ok(()), 1)
        );
        // Cached: the next tokens need no fetch.
        let rs = token(json!({"alg": "RS512", "kid": "rsa"}), json!({}));
        assert_eq!(
            check(&auth, &mut cache, &rs, Some(jwks.clone())),
            (Ok(()), 0)
        );
        let hs256 = token(json!({"alg": "HS256", "kid": "hs"}), json!({}));
        assert_eq!(
            check(&auth, &mut cache, &hs256, Some(jwks.clone())),
            (Ok(()), 0)
        );
        // The EC key under the RSA kid: the JWKS's key is for another algorithm.
        let wrong = token(json!({"alg": "ES256", "kid": "rsa"}), json!({}));
        assert_eq!(
            check(&auth, &mut cache, &wrong, None),
            (Err(Failure::AlgorithmMismatch), 0)
        );
        let bad = token_with(
            json!({"alg": "RS256", "kid": "rsa"}),
            json!({}),
            RSA2_PRIVATE,
        );
        assert_eq!(
            check(&auth, &mut cache, &bad, None),
            (Err(Failure::BadSignature), 0)
        );
        // An HMAC token with an unknown kid never asks the JWKS.
        let mut empty = Cache::default();
        let other_hs = token(json!({"alg": "HS256", "kid": "zz"}), json!({}));
        assert_eq!(
            check(&auth, &mut empty, &other_hs, None),
            (Err(Failure::UnknownKey), 0)
        );
    }

    #[test]
    fn a_jwks_that_cannot_be_fetched_is_unavailable() {
        let auth = route(json!({"jwks": {"upstream": "idp"}}));
        let t = token(json!({"alg": "EdDSA", "kid": "ed"}), json!({}));
        let mut cache = Cache::default();
        assert_eq!(
            check(&auth, &mut cache, &t, None),
            (Err(Failure::KeysUnavailable), 1)
        );
        // Within the interval, not even tried again.
        assert_eq!(
            check(&auth, &mut cache, &t, None),
            (Err(Failure::KeysUnavailable), 0)
        );
    }
}
