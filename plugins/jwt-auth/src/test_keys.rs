//! The unit tests' keys (tests/keys, made by tests/keys/make-keys.sh) and signers: a signature of
//! every algorithm, its verification key, its JWK, and whole tokens.

use crate::keys::{Alg, Material};
use base64::Engine;
use serde_json::{json, Value};

pub const RSA_PRIVATE: &str = include_str!("../tests/keys/rsa.pem");
pub const RSA_PUB: &str = include_str!("../tests/keys/rsa.pub.pem");
pub const RSA_PKCS1_PUB: &str = include_str!("../tests/keys/rsa.pkcs1.pub.pem");
pub const RSA2_PRIVATE: &str = include_str!("../tests/keys/rsa-2.pem");
pub const RSA2_PUB: &str = include_str!("../tests/keys/rsa-2.pub.pem");
pub const P256_PRIVATE: &str = include_str!("../tests/keys/p256.pem");
pub const P256_PUB: &str = include_str!("../tests/keys/p256.pub.pem");
pub const P384_PRIVATE: &str = include_str!("../tests/keys/p384.pem");
pub const P384_PUB: &str = include_str!("../tests/keys/p384.pub.pem");
pub const ED25519_PRIVATE: &str = include_str!("../tests/keys/ed25519.pem");
pub const ED25519_PUB: &str = include_str!("../tests/keys/ed25519.pub.pem");

/// The HMAC secrets of the tests, as long as each algorithm asks.
pub fn secret(alg: Alg) -> Vec<u8> {
    let mut s = b"a test secret of jwt-auth, not for anything real: ".to_vec();
    s.resize(alg.min_secret_len(), b'!');
    s
}

/// base64url without padding.
pub fn b64e(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The signature of `input` by `alg` with the test key of its type.
pub fn sign(alg: Alg, input: &[u8]) -> Vec<u8> {
    sign_with(alg, RSA_PRIVATE, input)
}

/// The signature of `input` by `alg`; RSA algorithms use `rsa_private`.
pub fn sign_with(alg: Alg, rsa_private: &str, input: &[u8]) -> Vec<u8> {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::sha2::{Sha256, Sha384, Sha512};
    use rsa::signature::{SignatureEncoding, Signer};
    match alg {
        Alg::HS256 | Alg::HS384 | Alg::HS512 => crate::keys::hmac(alg, &secret(alg), input),
        Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
            use rsa::{pkcs1v15, pss};
            let key = rsa::PrivateKey::from_pkcs8_pem(rsa_private).unwrap();
            match alg {
                Alg::RS256 => pkcs1v15::SigningKey::<Sha256>::new(key)
                    .sign(input)
                    .to_vec(),
                Alg::RS384 => pkcs1v15::SigningKey::<Sha384>::new(key)
                    .sign(input)
                    .to_vec(),
                Alg::RS512 => pkcs1v15::SigningKey::<Sha512>::new(key)
                    .sign(input)
                    .to_vec(),
                Alg::PS256 => pss::SigningKey::<Sha256>::new(key).sign(input).to_vec(),
                Alg::PS384 => pss::SigningKey::<Sha384>::new(key).sign(input).to_vec(),
                _ => pss::SigningKey::<Sha512>::new(key).sign(input).to_vec(),
            }
        }
        Alg::ES256 => {
            let key = p256::ecdsa::SigningKey::from_pkcs8_pem(P256_PRIVATE).unwrap();
            let sig: p256::ecdsa::Signature = key.sign(input);
            sig.to_bytes().to_vec()
        }
        Alg::ES384 => {
            let key = p384::ecdsa::SigningKey::from_pkcs8_pem(P384_PRIVATE).unwrap();
            let sig: p384::ecdsa::Signature = key.sign(input);
            sig.to_bytes().to_vec()
        }
        Alg::EdDSA => {
            let key = ed25519_dalek::SigningKey::from_pkcs8_pem(ED25519_PRIVATE).unwrap();
            key.sign(input).to_bytes().to_vec()
        }
    }
}

/// The test verification key of `alg`'s type.
pub fn public(alg: Alg) -> Material {
    match alg {
        Alg::HS256 | Alg::HS384 | Alg::HS512 => Material::Hmac(secret(alg)),
        _ => crate::keys::from_pem(alg, pem(alg)).unwrap(),
    }
}

/// The PEM public key of `alg`'s type (not for HS algorithms).
pub fn pem(alg: Alg) -> &'static str {
    use crate::keys::KeyType;
    match alg.key_type() {
        KeyType::Rsa => RSA_PUB,
        KeyType::P256 => P256_PUB,
        KeyType::P384 => P384_PUB,
        KeyType::Ed25519 => ED25519_PUB,
        KeyType::Hmac => panic!("{alg:?} has no public key"),
    }
}

/// The JWK of the test public key of `alg`'s type, without `alg`.
pub fn public_jwk(alg: Alg, kid: Option<&str>) -> Value {
    public_jwk_of(alg, RSA_PUB, kid)
}

/// Like [`public_jwk`], with `rsa_pub` for RSA.
pub fn public_jwk_of(alg: Alg, rsa_pub: &str, kid: Option<&str>) -> Value {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let mut jwk = match alg.key_type() {
        crate::keys::KeyType::Rsa => {
            let key = rsa::PublicKey::from_public_key_pem(rsa_pub).unwrap();
            json!({"kty": "RSA", "n": b64e(&key.n().to_be_bytes_trimmed_vartime()),
                   "e": b64e(&key.e().to_be_bytes_trimmed_vartime())})
        }
        crate::keys::KeyType::P256 => {
            let key = p256::ecdsa::VerifyingKey::from_public_key_pem(P256_PUB).unwrap();
            let point = key.to_sec1_point(false);
            json!({"kty": "EC", "crv": "P-256", "x": b64e(point.x().unwrap()), "y": b64e(point.y().unwrap())})
        }
        crate::keys::KeyType::P384 => {
            let key = p384::ecdsa::VerifyingKey::from_public_key_pem(P384_PUB).unwrap();
            let point = key.to_sec1_point(false);
            json!({"kty": "EC", "crv": "P-384", "x": b64e(point.x().unwrap()), "y": b64e(point.y().unwrap())})
        }
        crate::keys::KeyType::Ed25519 => {
            let key = ed25519_dalek::VerifyingKey::from_public_key_pem(ED25519_PUB).unwrap();
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64e(key.as_bytes())})
        }
        crate::keys::KeyType::Hmac => panic!("{alg:?} has no JWK here"),
    };
    if let Some(kid) = kid {
        jwk["kid"] = kid.into();
    }
    jwk
}

/// A compact JWS of `claims` with `header` (its `alg` decides the signature), signed with the test
/// key of that algorithm.
pub fn token(header: Value, claims: Value) -> String {
    token_with(header, claims, RSA_PRIVATE)
}

/// Like [`token`], RSA algorithms signing with `rsa_private`.
pub fn token_with(header: Value, claims: Value, rsa_private: &str) -> String {
    let alg = Alg::parse(header["alg"].as_str().unwrap()).unwrap();
    let input = format!(
        "{}.{}",
        b64e(header.to_string().as_bytes()),
        b64e(claims.to_string().as_bytes())
    );
    let sig = sign_with(alg, rsa_private, input.as_bytes());
    format!("{input}.{}", b64e(&sig))
}
