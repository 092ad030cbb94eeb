//! Prints the tokens and the JWKS of jwt-auth's `gateway plugin test` fixtures (tests/*.test.yaml),
//! made with the test keys in tests/keys. The fixtures hold them as text, since a fixture cannot sign;
//! their times are fixed (`exp` 4102444800 is 2100-01-01, 1000000000 is 2001-09-09). From plugins/:
//!
//!     CARGO_TARGET_DIR=../target/plugins-native cargo run -p jwt-auth --example fixture_tokens
//!
//! ECDSA (RFC 6979), Ed25519, RSA PKCS#1 v1.5 and HMAC signatures come out the same every run;
//! PSS ones differ (their salt is random) and verify all the same.

use base64::Engine;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::sha2::{Sha256, Sha384, Sha512};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");

/// The HMAC secret of the fixtures' `keys` (and consumers), as long as HS512 asks.
const SECRET: &str = "fixture secret of jwt-auth, not for anything real: 0123456789abcd";

/// A consumer's HMAC secret in the fixtures (as long as the gateway requires for HS256: 32 bytes).
const CONSUMER_SECRET: &str = "alice's secret, 32 bytes at least";

const FAR: i64 = 4_102_444_800;
const PAST: i64 = 1_000_000_000;

fn key(name: &str) -> String {
    std::fs::read_to_string(format!("{KEYS}/{name}"))
        .unwrap_or_else(|e| panic!("{KEYS}/{name}: {e}"))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn hmac<M: hmac::Mac + hmac::KeyInit>(secret: &[u8], input: &[u8]) -> Vec<u8> {
    let mut m = <M as hmac::KeyInit>::new_from_slice(secret).unwrap();
    m.update(input);
    m.finalize().into_bytes().to_vec()
}

/// The signature of `input` by `alg`; HS algorithms use `secret`, RS and PS ones `rsa`.
fn sign(alg: &str, input: &[u8], secret: &str, rsa: &str) -> Vec<u8> {
    use rsa::{pkcs1v15, pss};
    let rsa_key = || rsa::PrivateKey::from_pkcs8_pem(&key(rsa)).unwrap();
    match alg {
        "HS256" => hmac::<hmac::Hmac<Sha256>>(secret.as_bytes(), input),
        "HS384" => hmac::<hmac::Hmac<Sha384>>(secret.as_bytes(), input),
        "HS512" => hmac::<hmac::Hmac<Sha512>>(secret.as_bytes(), input),
        "RS256" => pkcs1v15::SigningKey::<Sha256>::new(rsa_key())
            .sign(input)
            .to_vec(),
        "RS384" => pkcs1v15::SigningKey::<Sha384>::new(rsa_key())
            .sign(input)
            .to_vec(),
        "RS512" => pkcs1v15::SigningKey::<Sha512>::new(rsa_key())
            .sign(input)
            .to_vec(),
        "PS256" => pss::SigningKey::<Sha256>::new(rsa_key())
            .sign(input)
            .to_vec(),
        "PS384" => pss::SigningKey::<Sha384>::new(rsa_key())
            .sign(input)
            .to_vec(),
        "PS512" => pss::SigningKey::<Sha512>::new(rsa_key())
            .sign(input)
            .to_vec(),
        "ES256" => {
            let k = p256::ecdsa::SigningKey::from_pkcs8_pem(&key("p256.pem")).unwrap();
            let s: p256::ecdsa::Signature = k.sign(input);
            s.to_bytes().to_vec()
        }
        "ES384" => {
            let k = p384::ecdsa::SigningKey::from_pkcs8_pem(&key("p384.pem")).unwrap();
            let s: p384::ecdsa::Signature = k.sign(input);
            s.to_bytes().to_vec()
        }
        "EdDSA" => {
            let k = ed25519_dalek::SigningKey::from_pkcs8_pem(&key("ed25519.pem")).unwrap();
            k.sign(input).to_bytes().to_vec()
        }
        other => panic!("no signer for {other}"),
    }
}

fn token(header: Value, claims: Value, secret: &str, rsa: &str) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let alg = header["alg"].as_str().unwrap();
    format!("{input}.{}", b64(&sign(alg, input.as_bytes(), secret, rsa)))
}

fn jwks() -> Value {
    let rsa = rsa::PublicKey::from_public_key_pem(&key("rsa.pub.pem")).unwrap();
    let ec = p256::ecdsa::VerifyingKey::from_public_key_pem(&key("p256.pub.pem")).unwrap();
    let ec = ec.to_sec1_point(false);
    let ed = ed25519_dalek::VerifyingKey::from_public_key_pem(&key("ed25519.pub.pem")).unwrap();
    json!({"keys": [
        {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
         "n": b64(&rsa.n().to_be_bytes_trimmed_vartime()), "e": b64(&rsa.e().to_be_bytes_trimmed_vartime())},
        {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": b64(ec.x().unwrap()), "y": b64(ec.y().unwrap())},
        {"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": b64(ed.as_bytes())},
        {"kty": "oct", "kid": "hs-1", "k": b64(SECRET.as_bytes())},
    ]})
}

fn main() {
    let user = json!({"sub": "ann", "roles": ["reader", "writer"], "exp": FAR});
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, t: String| out.push((name.to_owned(), t));

    // Every algorithm, with the route's own keys (jwt-auth.test.yaml).
    for alg in [
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
        "ES384", "EdDSA",
    ] {
        let t = token(
            json!({"alg": alg, "typ": "JWT"}),
            user.clone(),
            SECRET,
            "rsa.pem",
        );
        add(alg, t);
    }
    let es = |claims: Value| token(json!({"alg": "ES256"}), claims, SECRET, "rsa.pem");
    add("ES256 expired", es(json!({"sub": "ann", "exp": PAST})));
    add("ES256 not yet valid", es(json!({"sub": "ann", "nbf": FAR})));
    add("ES256 no exp", es(json!({"sub": "ann"})));
    add(
        "ES256 iss, aud",
        es(json!({"sub": "ann", "iss": "https://idp.example", "aud": ["api", "web"], "exp": FAR})),
    );
    add(
        "ES256 other iss",
        es(json!({"sub": "ann", "iss": "https://evil.example", "aud": "api", "exp": FAR})),
    );
    add(
        "ES256 other aud",
        es(json!({"sub": "ann", "iss": "https://idp.example", "aud": "billing", "exp": FAR})),
    );
    add(
        "RS256 by rsa-2",
        token(json!({"alg": "RS256"}), user.clone(), SECRET, "rsa-2.pem"),
    );
    // HS256 MACed with the RSA public key's PEM: the key-confusion forgery.
    add(
        "HS256 keyed with the RSA PEM",
        token(
            json!({"alg": "HS256"}),
            user.clone(),
            &key("rsa.pub.pem"),
            "rsa.pem",
        ),
    );
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none"}).to_string().as_bytes()),
        b64(user.to_string().as_bytes())
    );
    add("alg none", none);

    // Consumers (jwt-auth.consumers.test.yaml).
    add(
        "HS256 iss alice-iss",
        token(
            json!({"alg": "HS256"}),
            json!({"iss": "alice-iss", "sub": "a1", "exp": FAR}),
            CONSUMER_SECRET,
            "rsa.pem",
        ),
    );
    add(
        "HS256 iss alice-iss, wrong secret",
        token(
            json!({"alg": "HS256"}),
            json!({"iss": "alice-iss", "exp": FAR}),
            "not alice's",
            "rsa.pem",
        ),
    );
    add(
        "HS384 iss alice-iss",
        token(
            json!({"alg": "HS384"}),
            json!({"iss": "alice-iss", "exp": FAR}),
            CONSUMER_SECRET,
            "rsa.pem",
        ),
    );
    add(
        "RS256 kid bob-kid",
        token(
            json!({"alg": "RS256", "kid": "bob-kid"}),
            json!({"sub": "b1", "exp": FAR}),
            SECRET,
            "rsa.pem",
        ),
    );
    add(
        "HS256 kid bob-kid keyed with bob's PEM",
        token(
            json!({"alg": "HS256", "kid": "bob-kid"}),
            json!({"exp": FAR}),
            &key("rsa.pub.pem"),
            "rsa.pem",
        ),
    );
    add(
        "EdDSA iss carol-iss",
        token(
            json!({"alg": "EdDSA"}),
            json!({"iss": "carol-iss", "exp": FAR}),
            SECRET,
            "rsa.pem",
        ),
    );
    add(
        "HS256 iss nobody",
        token(
            json!({"alg": "HS256"}),
            json!({"iss": "nobody", "exp": FAR}),
            CONSUMER_SECRET,
            "rsa.pem",
        ),
    );

    // A consumer's token made to look like the identity provider's: alice's credential named by
    // kid, the provider's iss and aud, someone else's sub (jwt-auth.idp.test.yaml).
    add(
        "HS256 kid alice-iss, the idp's iss and aud, sub victim",
        token(
            json!({"alg": "HS256", "kid": "alice-iss"}),
            json!({"iss": "https://idp.example", "aud": "api", "sub": "victim", "exp": FAR}),
            CONSUMER_SECRET,
            "rsa.pem",
        ),
    );

    // The JWKS (jwt-auth.jwks.test.yaml).
    let kid = |alg: &str, kid: &str, claims: Value| {
        token(json!({"alg": alg, "kid": kid}), claims, SECRET, "rsa.pem")
    };
    let staff = json!({"sub": "dave", "preferred_username": "dave", "exp": FAR});
    add("RS256 kid rsa-1", kid("RS256", "rsa-1", staff.clone()));
    add("PS256 kid rsa-1", kid("PS256", "rsa-1", staff.clone()));
    add("ES256 kid ec-1", kid("ES256", "ec-1", staff.clone()));
    add("EdDSA kid ed-1", kid("EdDSA", "ed-1", staff.clone()));
    add("ES256 kid ec-9", kid("ES256", "ec-9", staff.clone()));
    add("HS256 kid hs-1", kid("HS256", "hs-1", staff));

    for (name, t) in out {
        println!("# {name}\n{t}\n");
    }
    println!("# JWKS\n{}", jwks());
}
