//! Algorithms and verification keys: what a key is (an HMAC secret, or an RSA, P-256, P-384 or
//! Ed25519 public key), which algorithms it may verify, and reading keys from PEM and from JWKs.
//!
//! A key's type decides how a signature is checked, and an algorithm is only ever checked with a key
//! of its own type: an RSA public key is never an HMAC secret, whatever a token's `alg` says.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::sha2::{Sha256, Sha384, Sha512};
use rsa::signature::Verifier;
use rsa::traits::PublicKeyParts;
use serde_json::Value;
use subtle::ConstantTimeEq;

/// Strict base64url without padding: no `=`, no whitespace, no stray trailing bits.
pub fn b64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}

/// The smallest RSA modulus accepted, in bits (NIST SP 800-131A; RFC 7518 section 3.3).
pub const MIN_RSA_BITS: usize = 2048;

/// The largest RSA modulus accepted, in bits: bounds the work of one verification.
pub const MAX_RSA_BITS: usize = 8192;

/// A JWS algorithm the plugin verifies (RFC 7518, and RFC 8037 for EdDSA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// Every algorithm, in the order the README lists them.
pub const ALGORITHMS: [Alg; 12] = [
    Alg::HS256,
    Alg::HS384,
    Alg::HS512,
    Alg::RS256,
    Alg::RS384,
    Alg::RS512,
    Alg::PS256,
    Alg::PS384,
    Alg::PS512,
    Alg::ES256,
    Alg::ES384,
    Alg::EdDSA,
];

/// The kinds of keys, each verifying its own algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// A shared secret: HS256, HS384, HS512.
    Hmac,
    /// An RSA public key: RS* and PS*.
    Rsa,
    /// A P-256 public key: ES256.
    P256,
    /// A P-384 public key: ES384.
    P384,
    /// An Ed25519 public key: EdDSA.
    Ed25519,
}

impl Alg {
    /// The algorithm named `name` (exactly as in a JOSE header), if the plugin verifies it.
    pub fn parse(name: &str) -> Option<Alg> {
        ALGORITHMS.into_iter().find(|a| a.name() == name)
    }

    /// Its JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// The type of key that verifies it.
    pub fn key_type(self) -> KeyType {
        match self {
            Alg::HS256 | Alg::HS384 | Alg::HS512 => KeyType::Hmac,
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                KeyType::Rsa
            }
            Alg::ES256 => KeyType::P256,
            Alg::ES384 => KeyType::P384,
            Alg::EdDSA => KeyType::Ed25519,
        }
    }

    /// The shortest HMAC secret for it, in bytes: the hash's output (RFC 7518 section 3.2).
    pub fn min_secret_len(self) -> usize {
        match self {
            Alg::HS384 => 48,
            Alg::HS512 => 64,
            _ => 32,
        }
    }
}

/// A verification key.
#[derive(Debug, Clone)]
pub enum Material {
    /// An HMAC secret.
    Hmac(Vec<u8>),
    Rsa(rsa::PublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl Material {
    /// Its type.
    pub fn key_type(&self) -> KeyType {
        match self {
            Material::Hmac(_) => KeyType::Hmac,
            Material::Rsa(_) => KeyType::Rsa,
            Material::P256(_) => KeyType::P256,
            Material::P384(_) => KeyType::P384,
            Material::Ed25519(_) => KeyType::Ed25519,
        }
    }

    /// Whether `signature` is `alg`'s signature of `input` with this key. False whenever `alg` is
    /// not an algorithm of this key's type.
    pub fn verify(&self, alg: Alg, input: &[u8], signature: &[u8]) -> bool {
        if alg.key_type() != self.key_type() {
            return false;
        }
        match self {
            Material::Hmac(secret) => macs_equal(&hmac(alg, secret, input), signature),
            Material::Rsa(key) => verify_rsa(alg, key, input, signature),
            Material::P256(key) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify(input, &s).is_ok()),
            Material::P384(key) => p384::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify(input, &s).is_ok()),
            Material::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify_strict(input, &s).is_ok()),
        }
    }
}

/// The HMAC of `input` with `secret`, for an HS algorithm.
pub(crate) fn hmac(alg: Alg, secret: &[u8], input: &[u8]) -> Vec<u8> {
    fn mac<M: Mac + KeyInit>(secret: &[u8], input: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length.
        let mut m = <M as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
        m.update(input);
        m.finalize().into_bytes().to_vec()
    }
    match alg {
        Alg::HS384 => mac::<Hmac<Sha384>>(secret, input),
        Alg::HS512 => mac::<Hmac<Sha512>>(secret, input),
        _ => mac::<Hmac<Sha256>>(secret, input),
    }
}

/// Whether two MACs are equal, in time that does not depend on where they differ.
pub fn macs_equal(expected: &[u8], given: &[u8]) -> bool {
    expected.len() == given.len() && bool::from(expected.ct_eq(given))
}

fn verify_rsa(alg: Alg, key: &rsa::PublicKey, input: &[u8], signature: &[u8]) -> bool {
    use rsa::{pkcs1v15, pss};
    // A signature is exactly as long as the modulus (RFC 8017 section 8.2.2).
    if signature.len() != key.size() {
        return false;
    }
    let key = key.clone();
    match alg {
        Alg::RS256 | Alg::RS384 | Alg::RS512 => {
            let Ok(sig) = pkcs1v15::Signature::try_from(signature) else {
                return false;
            };
            match alg {
                Alg::RS256 => pkcs1v15::VerifyingKey::<Sha256>::new(key).verify(input, &sig),
                Alg::RS384 => pkcs1v15::VerifyingKey::<Sha384>::new(key).verify(input, &sig),
                _ => pkcs1v15::VerifyingKey::<Sha512>::new(key).verify(input, &sig),
            }
            .is_ok()
        }
        _ => {
            let Ok(sig) = pss::Signature::try_from(signature) else {
                return false;
            };
            // RFC 7518 section 3.5: the salt is as long as the hash's output.
            match alg {
                Alg::PS256 => pss::VerifyingKey::<Sha256>::new(key).verify(input, &sig),
                Alg::PS384 => pss::VerifyingKey::<Sha384>::new(key).verify(input, &sig),
                _ => pss::VerifyingKey::<Sha512>::new(key).verify(input, &sig),
            }
            .is_ok()
        }
    }
}

fn rsa_size_ok(key: rsa::PublicKey) -> Result<Material, String> {
    let bits = key.size() * 8;
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(format!(
            "an RSA key of {bits} bits (expected {MIN_RSA_BITS} to {MAX_RSA_BITS})"
        ));
    }
    Ok(Material::Rsa(key))
}

/// Reads a PEM public key for `alg`: `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo) of the
/// algorithm's key type, or for RSA also `-----BEGIN RSA PUBLIC KEY-----` (PKCS#1).
pub fn from_pem(alg: Alg, pem: &str) -> Result<Material, String> {
    let pem = pem.trim();
    let expected = match alg.key_type() {
        KeyType::Hmac => return Err(format!("{} takes a secret, not a public key", alg.name())),
        KeyType::Rsa => "an RSA public key",
        KeyType::P256 => "a P-256 public key",
        KeyType::P384 => "a P-384 public key",
        KeyType::Ed25519 => "an Ed25519 public key",
    };
    let wrong = || {
        format!(
            "expected {expected} for {} in PEM (-----BEGIN PUBLIC KEY-----)",
            alg.name()
        )
    };
    if !pem.starts_with("-----BEGIN ") {
        return Err(wrong());
    }
    match alg.key_type() {
        KeyType::Hmac => unreachable!("refused above"),
        KeyType::Rsa => {
            let key = if pem.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
                rsa::PublicKey::from_pkcs1_pem(pem).map_err(|_| wrong())?
            } else {
                rsa::PublicKey::from_public_key_pem(pem).map_err(|_| wrong())?
            };
            rsa_size_ok(key).map_err(|why| format!("{why}, for {}", alg.name()))
        }
        KeyType::P256 => p256::ecdsa::VerifyingKey::from_public_key_pem(pem)
            .map(Material::P256)
            .map_err(|_| wrong()),
        KeyType::P384 => p384::ecdsa::VerifyingKey::from_public_key_pem(pem)
            .map(Material::P384)
            .map_err(|_| wrong()),
        KeyType::Ed25519 => ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
            .map(Material::Ed25519)
            .map_err(|_| wrong()),
    }
}

/// A key of the route's config or of a JWKS: its `kid`, the algorithm it is for (always named in
/// the config; in a JWKS, the JWK's `alg` if it has one, otherwise any algorithm of its type), and
/// the key itself.
#[derive(Debug, Clone)]
pub struct Key {
    pub kid: Option<String>,
    pub alg: Option<Alg>,
    pub material: Material,
}

/// Which keys of a set may verify a token.
#[derive(Debug)]
pub enum Search<'k> {
    /// No key has the token's `kid` (or none has no `kid`).
    NoKey,
    /// Keys fit the `kid`, but none is for the token's algorithm.
    Mismatch,
    /// These keys fit the `kid` and the algorithm.
    Found(Vec<&'k Key>),
}

impl Key {
    /// Whether this key may verify `alg`.
    pub fn allows(&self, alg: Alg) -> bool {
        match self.alg {
            Some(a) => a == alg,
            None => self.material.key_type() == alg.key_type(),
        }
    }

    /// Whether this key is one a token with `kid` names: the same `kid`, or either has none.
    pub fn fits(&self, kid: Option<&str>) -> bool {
        match (self.kid.as_deref(), kid) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        }
    }
}

/// The keys of `keys` that may verify a token with `kid` and `alg`.
pub fn search<'k>(keys: &'k [Key], kid: Option<&str>, alg: Alg) -> Search<'k> {
    let fitting: Vec<&Key> = keys.iter().filter(|k| k.fits(kid)).collect();
    if fitting.is_empty() {
        return Search::NoKey;
    }
    let found: Vec<&Key> = fitting.into_iter().filter(|k| k.allows(alg)).collect();
    if found.is_empty() {
        Search::Mismatch
    } else {
        Search::Found(found)
    }
}

/// Reads one JWK (RFC 7517) for verifying signatures: `RSA` (`n`, `e`), `EC` on P-256 or P-384
/// (`x`, `y`) or `OKP` Ed25519 (`x`). Symmetric (`oct`) keys are refused: a JWKS is public, and a
/// secret from it would let anyone sign. So is a key whose `use` is not `sig`, whose `key_ops` do
/// not include `verify`, or whose `alg` does not fit its type.
pub fn from_jwk(jwk: &Value) -> Result<Key, String> {
    let Value::Object(m) = jwk else {
        return Err("not a JSON object".into());
    };
    let text = |field: &str| -> Result<Option<&str>, String> {
        match m.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("`{field}` is not a string")),
        }
    };
    let bytes = |field: &str| -> Result<Vec<u8>, String> {
        let s = text(field)?.ok_or_else(|| format!("no `{field}`"))?;
        b64(s).ok_or_else(|| format!("`{field}` is not base64url"))
    };
    if let Some(u) = text("use")? {
        if u != "sig" {
            return Err(format!("`use` is `{u}`, not `sig`"));
        }
    }
    if let Some(ops) = m.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o == "verify"));
        if !verifies {
            return Err("`key_ops` does not include `verify`".into());
        }
    }
    let kid = text("kid")?.map(str::to_owned);
    let alg = match text("alg")? {
        None => None,
        Some(name) => Some(Alg::parse(name).ok_or_else(|| format!("unsupported `alg` `{name}`"))?),
    };
    let kty = text("kty")?.ok_or("no `kty`")?;
    let material = match kty {
        "RSA" => {
            let n = bytes("n")?;
            let e = bytes("e")?;
            let key = rsa::PublicKey::new(
                rsa::BoxedUint::from_be_slice_vartime(&n),
                rsa::BoxedUint::from_be_slice_vartime(&e),
            )
            .map_err(|e| format!("not a usable RSA key ({e})"))?;
            rsa_size_ok(key)?
        }
        "EC" => {
            let crv = text("crv")?.ok_or("no `crv`")?;
            let (x, y) = (bytes("x")?, bytes("y")?);
            let size = match crv {
                "P-256" => 32,
                "P-384" => 48,
                other => return Err(format!("unsupported curve `{other}`")),
            };
            if x.len() != size || y.len() != size {
                return Err(format!("`x` and `y` of a {crv} key are {size} bytes each"));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let bad = |_| format!("not a point of {crv}");
            if crv == "P-256" {
                Material::P256(p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).map_err(bad)?)
            } else {
                Material::P384(p384::ecdsa::VerifyingKey::from_sec1_bytes(&point).map_err(bad)?)
            }
        }
        "OKP" => {
            let crv = text("crv")?.ok_or("no `crv`")?;
            if crv != "Ed25519" {
                return Err(format!("unsupported curve `{crv}`"));
            }
            let x: [u8; 32] = bytes("x")?
                .try_into()
                .map_err(|_| "`x` of an Ed25519 key is 32 bytes".to_string())?;
            Material::Ed25519(
                ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|_| "not an Ed25519 public key".to_string())?,
            )
        }
        "oct" => return Err("symmetric (`oct`) keys are never taken from a JWKS".into()),
        other => return Err(format!("unsupported `kty` `{other}`")),
    };
    if let Some(a) = alg {
        if a.key_type() != material.key_type() {
            return Err(format!("`alg` {} does not fit a `{kty}` key", a.name()));
        }
    }
    Ok(Key { kid, alg, material })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys::*;

    #[test]
    fn algorithms_by_name() {
        for a in ALGORITHMS {
            assert_eq!(Alg::parse(a.name()), Some(a));
        }
        for bad in ["none", "None", "hs256", "RS1", "ES512", "Ed25519", ""] {
            assert_eq!(Alg::parse(bad), None, "{bad}");
        }
        assert_eq!(Alg::EdDSA.key_type(), KeyType::Ed25519);
        assert_eq!(Alg::PS384.key_type(), KeyType::Rsa);
        assert_eq!(
            (
                Alg::HS256.min_secret_len(),
                Alg::HS384.min_secret_len(),
                Alg::HS512.min_secret_len()
            ),
            (32, 48, 64)
        );
    }

    #[test]
    fn every_algorithm_verifies_its_own_signature_and_nothing_else() {
        let input = b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0";
        for alg in ALGORITHMS {
            let (sig, key) = (sign(alg, input), public(alg));
            assert!(key.verify(alg, input, &sig), "{alg:?}");
            assert!(
                !key.verify(alg, b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiIn0", &sig),
                "{alg:?}"
            );
            let mut flipped = sig.clone();
            flipped[3] ^= 1;
            assert!(!key.verify(alg, input, &flipped), "{alg:?}");
            assert!(!key.verify(alg, input, &sig[..sig.len() - 1]), "{alg:?}");
            assert!(!key.verify(alg, input, b""), "{alg:?}");
            // Another algorithm's name never makes a signature good.
            for other in ALGORITHMS.into_iter().filter(|o| *o != alg) {
                assert!(!key.verify(other, input, &sig), "{alg:?} as {other:?}");
            }
        }
    }

    #[test]
    fn an_rsa_public_key_is_never_an_hmac_secret() {
        // The classic key confusion: HMAC a token with the server's public key (the PEM text, or
        // its DER) and call it HS256. Only an Hmac key runs HMAC.
        let input = b"header.payload";
        let key = from_pem(Alg::RS256, RSA_PUB).unwrap();
        for secret in [
            RSA_PUB.as_bytes().to_vec(),
            RSA_PUB.trim().as_bytes().to_vec(),
        ] {
            let forged = hmac(Alg::HS256, &secret, input);
            assert!(!key.verify(Alg::HS256, input, &forged));
            assert!(!key.verify(Alg::RS256, input, &forged));
        }
    }

    #[test]
    fn macs_are_compared_whole() {
        assert!(macs_equal(b"abc", b"abc"));
        assert!(!macs_equal(b"abc", b"abd"));
        assert!(!macs_equal(b"abc", b"ab"));
        assert!(!macs_equal(b"", b"a"));
    }

    #[test]
    fn pem_keys_are_read_for_their_algorithm() {
        assert!(matches!(
            from_pem(Alg::RS256, RSA_PUB),
            Ok(Material::Rsa(_))
        ));
        assert!(matches!(
            from_pem(Alg::PS512, RSA_PUB),
            Ok(Material::Rsa(_))
        ));
        // PKCS#1 is the same key.
        let pkcs1 = from_pem(Alg::RS256, RSA_PKCS1_PUB).unwrap();
        let input = b"x.y";
        assert!(pkcs1.verify(Alg::RS256, input, &sign(Alg::RS256, input)));
        assert!(matches!(
            from_pem(Alg::ES256, P256_PUB),
            Ok(Material::P256(_))
        ));
        assert!(matches!(
            from_pem(Alg::ES384, P384_PUB),
            Ok(Material::P384(_))
        ));
        assert!(matches!(
            from_pem(Alg::EdDSA, ED25519_PUB),
            Ok(Material::Ed25519(_))
        ));

        for (alg, pem, message) in [
            (Alg::RS256, P256_PUB, "expected an RSA public key for RS256"),
            (
                Alg::ES256,
                P384_PUB,
                "expected a P-256 public key for ES256",
            ),
            (
                Alg::ES384,
                P256_PUB,
                "expected a P-384 public key for ES384",
            ),
            (
                Alg::EdDSA,
                RSA_PUB,
                "expected an Ed25519 public key for EdDSA",
            ),
            (Alg::RS256, "MIIBIjANBgkqh", "in PEM"),
            (
                Alg::RS256,
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
                "RSA",
            ),
            (Alg::HS256, RSA_PUB, "HS256 takes a secret"),
            // A private key is not a public key (and must not be pasted in a config).
            (Alg::ES256, P256_PRIVATE, "expected a P-256 public key"),
        ] {
            let e = from_pem(alg, pem).unwrap_err();
            assert!(e.contains(message), "{alg:?}: {e}");
        }
    }

    #[test]
    fn small_rsa_keys_are_refused() {
        // 1024 bits, made with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024`.
        let small = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC7VJTUt9Us8cKjMzEfYyjiWA4R
4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvuNMoSfm76oqFv
AAp9HeIxVu+d7clR0z1Lp2Fs4c3p8iQ/MMm1gjpxONs3bRlCGuTkMDlDBrnfuzo0
KqKVKu7QV9t6K1BqjwIDAQAB
-----END PUBLIC KEY-----";
        let e = from_pem(Alg::RS256, small).unwrap_err();
        assert!(e.contains("1024 bits (expected 2048 to 8192)"), "{e}");
    }

    #[test]
    fn jwks_keys_of_every_type() {
        for alg in [Alg::RS256, Alg::ES256, Alg::ES384, Alg::EdDSA] {
            let jwk = from_jwk(&public_jwk(alg, Some("k1"))).unwrap();
            assert_eq!(jwk.kid.as_deref(), Some("k1"));
            assert_eq!(jwk.alg, None);
            let input = b"a.b";
            assert!(
                jwk.material.verify(alg, input, &sign(alg, input)),
                "{alg:?}"
            );
            assert!(jwk.allows(alg));
        }
        // Without `alg`, an RSA key verifies every RSA algorithm; with one, only that one.
        let any = from_jwk(&public_jwk(Alg::RS256, None)).unwrap();
        assert!(any.allows(Alg::PS256) && any.allows(Alg::RS512) && !any.allows(Alg::HS256));
        let mut named = public_jwk(Alg::RS256, None);
        named["alg"] = "PS256".into();
        let named = from_jwk(&named).unwrap();
        assert!(named.allows(Alg::PS256) && !named.allows(Alg::RS256));
    }

    #[test]
    fn unusable_jwks_keys_say_why() {
        let with = |alg: Alg, field: &str, value: Value| {
            let mut j = public_jwk(alg, Some("k"));
            j[field] = value;
            j
        };
        let without = |alg: Alg, field: &str| {
            let mut j = public_jwk(alg, Some("k"));
            j.as_object_mut().unwrap().remove(field);
            j
        };
        for (jwk, message) in [
            (serde_json::json!({"kty": "oct", "k": "c2VjcmV0"}), "`oct`"),
            (serde_json::json!("k"), "not a JSON object"),
            (with(Alg::RS256, "use", "enc".into()), "`use` is `enc`"),
            (
                with(Alg::RS256, "key_ops", serde_json::json!(["encrypt"])),
                "`key_ops`",
            ),
            (with(Alg::RS256, "alg", "HS256".into()), "does not fit"),
            (
                with(Alg::RS256, "alg", "none".into()),
                "unsupported `alg` `none`",
            ),
            (with(Alg::RS256, "kty", "DSA".into()), "unsupported `kty`"),
            (with(Alg::RS256, "n", "AQAB".into()), "RSA"),
            (with(Alg::RS256, "n", "!!".into()), "`n` is not base64url"),
            (without(Alg::RS256, "e"), "no `e`"),
            (with(Alg::ES256, "crv", "P-521".into()), "unsupported curve"),
            (with(Alg::ES256, "x", "AAAA".into()), "32 bytes each"),
            (with(Alg::ES256, "kid", 7.into()), "`kid` is not a string"),
            (
                with(Alg::EdDSA, "crv", "X25519".into()),
                "unsupported curve `X25519`",
            ),
            (with(Alg::EdDSA, "x", "AAAA".into()), "32 bytes"),
        ] {
            let e = from_jwk(&jwk).unwrap_err();
            assert!(e.contains(message), "{jwk}: {e}");
        }
        // A point that is not on the curve.
        let mut off = public_jwk(Alg::ES256, None);
        off["y"] = b64e(&[1u8; 32]).into();
        assert!(from_jwk(&off).unwrap_err().contains("not a point of P-256"));
    }
}
