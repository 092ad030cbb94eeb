//! Reading a compact JWS (RFC 7515 section 7.1): `header.payload.signature`, each part base64url
//! without padding, header and payload JSON objects. Nothing here trusts the token: it only says
//! what the token claims to be, for the key search and the signature check that follow.

use crate::failure::Failure;
use crate::keys::{b64, Alg};
use serde_json::{Map, Value};

/// The longest token read, in bytes. Longer ones are malformed (a header line carrying one is
/// bounded by the gateway anyway; this bounds the work of decoding it).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// A token, parsed but not verified.
#[derive(Debug)]
pub struct Token<'t> {
    /// The header's `alg`.
    pub alg: Alg,
    /// The header's `kid`, if any.
    pub kid: Option<String>,
    /// The payload's claims.
    pub claims: Map<String, Value>,
    /// What the signature signs: `header.payload`, as sent.
    pub signing_input: &'t str,
    /// The signature's bytes.
    pub signature: Vec<u8>,
}

fn json_object(part: &str, what: &'static str) -> Result<Map<String, Value>, Failure> {
    let bytes = b64(part).ok_or(Failure::Malformed(
        "malformed token: a part is not base64url",
    ))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Failure::Malformed(what)),
    }
}

/// Parses `text` as a compact JWS with a JSON payload.
pub fn parse(text: &str) -> Result<Token<'_>, Failure> {
    if text.len() > MAX_TOKEN_LEN {
        return Err(Failure::Malformed("malformed token: too long"));
    }
    let mut parts = text.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::Malformed(
            "malformed token: not three base64url parts separated by dots",
        ));
    };
    let header_fields = json_object(header, "malformed token: the header is not a JSON object")?;
    let alg = match header_fields.get("alg") {
        Some(Value::String(name)) => Alg::parse(name).ok_or(Failure::UnsupportedAlgorithm)?,
        _ => return Err(Failure::Malformed("malformed token: the header has no alg")),
    };
    // RFC 7515 section 4.1.11: extensions named in `crit` must be understood, and none are.
    if header_fields.contains_key("crit") {
        return Err(Failure::Malformed(
            "malformed token: the header names critical extensions, which are not supported",
        ));
    }
    let kid = match header_fields.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(Failure::Malformed("malformed token: kid is not a string")),
    };
    let claims = json_object(payload, "malformed token: the payload is not a JSON object")?;
    for (claim, why) in [
        ("exp", "malformed token: exp is not a number"),
        ("nbf", "malformed token: nbf is not a number"),
    ] {
        if claims.get(claim).is_some_and(|v| !v.is_number()) {
            return Err(Failure::Malformed(why));
        }
    }
    let signature = b64(signature).ok_or(Failure::Malformed(
        "malformed token: a part is not base64url",
    ))?;
    Ok(Token {
        alg,
        kid,
        claims,
        signing_input: &text[..header.len() + 1 + payload.len()],
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys::b64e;
    use serde_json::json;

    fn raw(header: &str, payload: &str, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64e(header.as_bytes()),
            b64e(payload.as_bytes()),
            b64e(sig)
        )
    }

    #[test]
    fn a_token_is_read() {
        let t = raw(
            r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#,
            r#"{"sub":"ann","exp":1.5}"#,
            b"sig",
        );
        let token = parse(&t).unwrap();
        assert_eq!(token.alg, Alg::ES256);
        assert_eq!(token.kid.as_deref(), Some("k1"));
        assert_eq!(token.claims["sub"], "ann");
        assert_eq!(token.signature, b"sig");
        assert_eq!(token.signing_input, t.rsplit_once('.').unwrap().0);
    }

    #[test]
    fn none_and_unknown_algorithms_are_unsupported() {
        for alg in ["none", "NONE", "HS1", "ES512", "RSA-OAEP", "hs256"] {
            let t = raw(&json!({"alg": alg}).to_string(), "{}", b"");
            assert_eq!(
                parse(&t).unwrap_err(),
                Failure::UnsupportedAlgorithm,
                "{alg}"
            );
        }
        // `alg: none` with no signature part at all is not even a JWS.
        let t = format!("{}.{}.", b64e(br#"{"alg":"none"}"#), b64e(b"{}"));
        assert_eq!(parse(&t).unwrap_err(), Failure::UnsupportedAlgorithm);
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        let h = b64e(br#"{"alg":"HS256"}"#);
        let p = b64e(b"{}");
        for (t, why) in [
            (String::new(), "three base64url parts"),
            ("abc".into(), "three base64url parts"),
            (format!("{h}.{p}"), "three base64url parts"),
            (format!("{h}.{p}.c2ln.c2ln"), "three base64url parts"),
            (format!("{h}=.{p}.c2ln"), "not base64url"),
            (format!("{h}.{p}.c2ln="), "not base64url"),
            (format!("{h}.{p}.c2l+"), "not base64url"),
            (format!("{h}.{p}.c2lu Zw"), "not base64url"),
            (
                format!("{}.{p}.c2ln", b64e(b"[1]")),
                "header is not a JSON object",
            ),
            (
                format!("{}.{p}.c2ln", b64e(b"{")),
                "header is not a JSON object",
            ),
            (format!("{}.{p}.c2ln", b64e(br#"{"typ":"JWT"}"#)), "no alg"),
            (format!("{}.{p}.c2ln", b64e(br#"{"alg":256}"#)), "no alg"),
            (
                format!("{}.{p}.c2ln", b64e(br#"{"alg":"HS256","kid":1}"#)),
                "kid is not a string",
            ),
            (
                format!("{}.{p}.c2ln", b64e(br#"{"alg":"HS256","crit":["b64"]}"#)),
                "critical",
            ),
            (
                format!("{h}.{}.c2ln", b64e(b"\"claims\"")),
                "payload is not a JSON object",
            ),
            (
                format!("{h}.{}.c2ln", b64e(br#"{"exp":"tomorrow"}"#)),
                "exp is not a number",
            ),
            (
                format!("{h}.{}.c2ln", b64e(br#"{"nbf":null}"#)),
                "nbf is not a number",
            ),
            ("a".repeat(MAX_TOKEN_LEN + 1), "too long"),
        ] {
            match parse(&t) {
                Err(Failure::Malformed(m)) => assert!(m.contains(why), "{t}: {m}"),
                other => panic!("{t}: {other:?}"),
            }
        }
    }
}
