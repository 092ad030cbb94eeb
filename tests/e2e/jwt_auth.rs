//! The built-in `jwt-auth` plugin through the real gateway, with real tokens: the test signs them with
//! ring (HMAC, RSA PKCS#1 v1.5 and PSS, ECDSA P-256 and P-384, Ed25519), and an identity provider in
//! the test serves the JWKS and counts its fetches. The RSA keys are jwt-auth's test keys
//! (plugins/jwt-auth/tests/keys); the others are made here.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const RSA_PRIVATE: &str = include_str!("../../plugins/jwt-auth/tests/keys/rsa.pem");
const RSA2_PRIVATE: &str = include_str!("../../plugins/jwt-auth/tests/keys/rsa-2.pem");

/// The HMAC secret of the routes' own HS keys (64 bytes: long enough for HS512).
const SECRET: &str = "e2e secret of jwt-auth, not for anything real, 0123456789abcdefgh";

fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The DER inside a PEM.
fn pem_der(pem: &str) -> Vec<u8> {
    let text: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The test's signing keys.
struct Keys {
    rng: SystemRandom,
    rsa: RsaKeyPair,
    rsa2: RsaKeyPair,
    p256: EcdsaKeyPair,
    p384: EcdsaKeyPair,
    ed: Ed25519KeyPair,
}

impl Keys {
    fn new() -> Keys {
        let rng = SystemRandom::new();
        let ec = |alg| {
            let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            EcdsaKeyPair::from_pkcs8(alg, doc.as_ref(), &rng).unwrap()
        };
        let p256 = ec(&sig::ECDSA_P256_SHA256_FIXED_SIGNING);
        let p384 = ec(&sig::ECDSA_P384_SHA384_FIXED_SIGNING);
        let ed = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref())
            .unwrap();
        Keys {
            rsa: RsaKeyPair::from_pkcs8(&pem_der(RSA_PRIVATE)).unwrap(),
            rsa2: RsaKeyPair::from_pkcs8(&pem_der(RSA2_PRIVATE)).unwrap(),
            rng,
            p256,
            p384,
            ed,
        }
    }

    /// The JWK of the RSA key (no `alg`: every RSA algorithm), or of `rsa2`.
    fn rsa_jwk(&self, kid: &str, second: bool) -> Value {
        let key = if second { &self.rsa2 } else { &self.rsa };
        let c: ring::rsa::PublicKeyComponents<Vec<u8>> = key.public().into();
        json!({"kty": "RSA", "kid": kid, "use": "sig", "n": b64url(&c.n), "e": b64url(&c.e)})
    }

    /// The JWKS `kids` names: `rsa`, `rsa2`, `ec256`, `ec384`, `ed`, each with that kid.
    fn jwks(&self, kids: &[&str]) -> String {
        let ec = |crv: &str, key: &EcdsaKeyPair, kid: &str| {
            let point = key.public_key().as_ref();
            let half = (point.len() - 1) / 2;
            json!({"kty": "EC", "crv": crv, "kid": kid,
                   "x": b64url(&point[1..1 + half]), "y": b64url(&point[1 + half..])})
        };
        let keys: Vec<Value> = kids
            .iter()
            .map(|kid| match *kid {
                "rsa" => self.rsa_jwk(kid, false),
                "rsa2" => self.rsa_jwk(kid, true),
                "ec256" => ec("P-256", &self.p256, kid),
                "ec384" => ec("P-384", &self.p384, kid),
                "ed" => json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                               "x": b64url(self.ed.public_key().as_ref())}),
                other => panic!("no key {other}"),
            })
            .collect();
        json!({ "keys": keys }).to_string()
    }

    /// A compact JWS of `claims`, signed by `alg` with the test key of its type; `kid` in the header
    /// when given.
    fn token(&self, alg: &str, kid: Option<&str>, claims: &Value) -> String {
        self.token_by(alg, kid, claims, &self.rsa)
    }

    /// Like `token`, RSA algorithms signing with `rsa`.
    fn token_by(
        &self,
        alg: &str,
        kid: Option<&str>,
        claims: &Value,
        rsa_key: &RsaKeyPair,
    ) -> String {
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let msg = input.as_bytes();
        let rsa = |key: &RsaKeyPair, pad: &'static dyn sig::RsaEncoding| {
            let mut out = vec![0; key.public().modulus_len()];
            key.sign(pad, &self.rng, msg, &mut out).unwrap();
            out
        };
        let hmac = |a| ring::hmac::sign(&ring::hmac::Key::new(a, SECRET.as_bytes()), msg);
        let signature: Vec<u8> = match alg {
            "HS256" => hmac(ring::hmac::HMAC_SHA256).as_ref().to_vec(),
            "HS384" => hmac(ring::hmac::HMAC_SHA384).as_ref().to_vec(),
            "HS512" => hmac(ring::hmac::HMAC_SHA512).as_ref().to_vec(),
            "RS256" => rsa(rsa_key, &sig::RSA_PKCS1_SHA256),
            "RS384" => rsa(rsa_key, &sig::RSA_PKCS1_SHA384),
            "RS512" => rsa(rsa_key, &sig::RSA_PKCS1_SHA512),
            "PS256" => rsa(rsa_key, &sig::RSA_PSS_SHA256),
            "PS384" => rsa(rsa_key, &sig::RSA_PSS_SHA384),
            "PS512" => rsa(rsa_key, &sig::RSA_PSS_SHA512),
            "ES256" => self.p256.sign(&self.rng, msg).unwrap().as_ref().to_vec(),
            "ES384" => self.p384.sign(&self.rng, msg).unwrap().as_ref().to_vec(),
            "EdDSA" => self.ed.sign(msg).as_ref().to_vec(),
            other => panic!("no signer for {other}"),
        };
        format!("{input}.{}", b64url(&signature))
    }
}

/// An identity provider that serves a JWKS (changeable while it runs) and counts its fetches.
struct Idp {
    addr: std::net::SocketAddr,
    jwks: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Idp {
    async fn start(jwks: String) -> Idp {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let jwks = Arc::new(Mutex::new(jwks));
        let hits = Arc::new(AtomicUsize::new(0));
        let (doc, count) = (jwks.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = tcp.accept().await else {
                    continue;
                };
                let (doc, count) = (doc.clone(), count.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                        let (doc, count) = (doc.clone(), count.clone());
                        async move {
                            let resp = if req.uri().path() == "/.well-known/jwks.json" {
                                count.fetch_add(1, Ordering::SeqCst);
                                let body = doc.lock().unwrap().clone();
                                http::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                            } else {
                                http::Response::builder()
                                    .status(404)
                                    .body(Full::new(Bytes::new()))
                            };
                            Ok::<_, std::convert::Infallible>(resp.unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Idp {
            addr,
            jwks,
            hits,
            task,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn serve(&self, jwks: String) {
        *self.jwks.lock().unwrap() = jwks;
    }
}

/// A route `/{name}` to the upstream `up` with jwt-auth configured by `config`.
fn route(name: &str, config: Value) -> Route {
    Route::new(name)
        .prefix(&format!("/{name}"))
        .upstream("up")
        .lines(&format!(
            "    filters: [{{plugin: jwt-auth, config: {config}}}]\n"
        ))
}

/// A gateway with the built-in jwt-auth (on instances of `mode`, or its default; granted the
/// upstreams `idp` and `idp-down`) on `routes`, with `raw` YAML after them.
async fn gateway(
    mode: Option<&str>,
    up: &MockUpstream,
    idp: &Idp,
    routes: Vec<Route>,
    raw: &str,
) -> TestGateway {
    let mut config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .upstream(Upstream::new("idp").endpoint(idp.addr))
        .upstream(Upstream::new("idp-down").endpoint(format!("127.0.0.1:{}", free_port())));
    for r in routes {
        config = config.route(r);
    }
    let config = config.raw(raw).yaml();
    // No path: the entry gives the built-in plugin its grant (and instance mode).
    let mode = mode.map_or(String::new(), |m| format!("    instance_mode: {m}\n"));
    let grant = format!(
        "plugins:\n  - name: jwt-auth\n{mode}    capabilities: {{upstreams: [idp, idp-down]}}\n"
    );
    TestGateway::start(&format!("{grant}{config}")).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_verifies_and_the_jwks_is_fetched_once() {
    let keys = Keys::new();
    let up = MockUpstream::start("up").await;
    let idp = Idp::start(keys.jwks(&["rsa", "ec256", "ec384", "ed"])).await;
    let config = json!({
        "keys": [
            {"algorithm": "HS256", "secret": SECRET},
            {"algorithm": "HS384", "secret": SECRET},
            {"algorithm": "HS512", "secret": SECRET},
        ],
        "jwks": {"upstream": "idp"},
        "claims_to_headers": {"sub": "x-user", "scope": "x-scope"},
    });
    let gw = gateway(None, &up, &idp, vec![route("api", config)], "").await;
    let claims = json!({"sub": "ann", "scope": ["read", "write"], "exp": now() + 600});
    for (alg, kid) in [
        ("HS256", None),
        ("HS384", None),
        ("HS512", None),
        ("RS256", Some("rsa")),
        ("RS384", Some("rsa")),
        ("RS512", Some("rsa")),
        ("PS256", Some("rsa")),
        ("PS384", Some("rsa")),
        ("PS512", Some("rsa")),
        ("ES256", Some("ec256")),
        ("ES384", Some("ec384")),
        ("EdDSA", Some("ed")),
        // Without a kid, every key of the JWKS that fits the algorithm is tried.
        ("EdDSA", None),
    ] {
        let token = keys.token(alg, kid, &claims);
        let (s, _, body) = get_with(
            &gw.url("/api/items"),
            &[("authorization", &bearer(&token)), ("x-user", "root")],
        )
        .await;
        assert_eq!(s, 200, "{alg} {kid:?}: {body}");
        let seen = up.last();
        assert_eq!(values(&seen.headers, "x-user"), ["ann"], "{alg}");
        assert_eq!(hv(&seen.headers, "x-scope"), r#"["read","write"]"#, "{alg}");
        // Without hide_credentials the token goes on.
        assert_eq!(hv(&seen.headers, "authorization"), bearer(&token));
    }
    // One warm instance (jwt-auth's default) served them all, with one fetch of the JWKS.
    assert_eq!(idp.hits(), 1);
    assert_eq!(up.hits(), 13);
    let series = r#"plugin_jwt_auth_allowed_total{plugin="jwt-auth"}"#;
    assert_eq!(metric(&gw.metrics().await, series), Some(13.0));
    let series = r#"plugin_jwt_auth_jwks_fetches_total{plugin="jwt-auth"}"#;
    assert_eq!(metric(&gw.metrics().await, series), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_refreshes_the_jwks_once_per_interval_and_expiry_refreshes_it() {
    let keys = Keys::new();
    let up = MockUpstream::start("up").await;
    let idp = Idp::start(keys.jwks(&["ec256"])).await;
    // Sleeps are measured from after the call that fetched, so the intervals have surely passed;
    // the calls meant to fall inside an interval are a few quick requests.
    let config = json!({"jwks": {"upstream": "idp", "min_refresh_interval": 2, "cache_ttl": 4}});
    let gw = gateway(None, &up, &idp, vec![route("api", config)], "").await;
    let claims = json!({"sub": "ann"});
    let call = |alg: &'static str, kid: &'static str| {
        let token = keys.token(alg, Some(kid), &claims);
        let url = gw.url("/api/items");
        async move { get_with(&url, &[("authorization", &bearer(&token))]).await }
    };
    let code =
        |r: &(u16, http::HeaderMap, String)| json(&r.2)["error"].as_str().unwrap_or("").to_owned();
    let interval = Duration::from_millis(2100);

    assert_eq!(call("ES256", "ec256").await.0, 200);
    let fetched = Instant::now();
    for _ in 0..2 {
        assert_eq!(call("ES256", "ec256").await.0, 200);
    }
    assert_eq!(idp.hits(), 1);

    // The identity provider rotates in an Ed25519 key. Right after the fetch, its kid is unknown
    // and not refetched: min_refresh_interval (2 s) has not passed.
    idp.serve(keys.jwks(&["ec256", "ed"]));
    let r = call("EdDSA", "ed").await;
    assert_eq!((r.0, code(&r)), (401, "unknown_key".into()));
    assert_eq!(idp.hits(), 1);

    // Once it has, one refresh finds the key.
    tokio::time::sleep_until((fetched + interval).into()).await;
    assert_eq!(call("EdDSA", "ed").await.0, 200);
    let fetched = Instant::now();
    assert_eq!(idp.hits(), 2);

    // A kid nobody has: no refetch within the interval, however many come...
    for _ in 0..5 {
        let r = call("ES256", "nobody").await;
        assert_eq!((r.0, code(&r)), (401, "unknown_key".into()));
    }
    assert_eq!(idp.hits(), 2);
    // ...then one, and again none.
    tokio::time::sleep_until((fetched + interval).into()).await;
    assert_eq!(call("ES256", "nobody").await.0, 401);
    let fetched = Instant::now();
    for _ in 0..4 {
        assert_eq!(call("ES256", "nobody").await.0, 401);
    }
    assert_eq!(idp.hits(), 3);

    // cache_ttl (4 s) after the last fetch, a known kid refetches too: a removed key stops working.
    idp.serve(keys.jwks(&["ec256"]));
    assert_eq!(call("EdDSA", "ed").await.0, 200);
    assert_eq!(idp.hits(), 3);
    tokio::time::sleep_until((fetched + Duration::from_millis(4100)).into()).await;
    let r = call("EdDSA", "ed").await;
    assert_eq!((r.0, code(&r)), (401, "unknown_key".into()));
    assert_eq!(idp.hits(), 4);
    assert_eq!(call("ES256", "ec256").await.0, 200);
    assert_eq!(idp.hits(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_instances_fetch_the_jwks_for_every_request() {
    let keys = Keys::new();
    let up = MockUpstream::start("up").await;
    let idp = Idp::start(keys.jwks(&["rsa"])).await;
    let config = json!({"jwks": {"upstream": "idp"}});
    let gw = gateway(Some("fresh"), &up, &idp, vec![route("api", config)], "").await;
    let token = keys.token("RS256", Some("rsa"), &json!({"sub": "ann"}));
    for _ in 0..3 {
        let (s, _, body) = get_with(&gw.url("/api/x"), &[("authorization", &bearer(&token))]).await;
        assert_eq!(s, 200, "{body}");
    }
    assert_eq!(idp.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_a_challenge_and_a_stable_code() {
    let keys = Keys::new();
    let up = MockUpstream::start("up").await;
    let idp = Idp::start(keys.jwks(&["rsa", "ec256"])).await;
    let config = json!({
        "jwks": {"upstream": "idp"},
        "issuers": ["https://idp.example"],
        "audiences": ["api"],
        "realm": "api",
    });
    let gw = gateway(None, &up, &idp, vec![route("api", config)], "").await;
    let good = json!({"iss": "https://idp.example", "aud": "api", "exp": now() + 600});
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let es = |claims: &Value| keys.token("ES256", Some("ec256"), claims);
    let valid = es(&good);
    let (s, _, body) = get_with(&gw.url("/api/x"), &[("authorization", &bearer(&valid))]).await;
    assert_eq!(s, 200, "{body}");

    // The payload changed, the signature kept.
    let parts: Vec<&str> = valid.split('.').collect();
    let forged_claims = with(json!({"sub": "root"}));
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64url(forged_claims.to_string().as_bytes()),
        parts[2]
    );
    // Signed by another RSA key, under the JWKS key's kid.
    let other_key = keys.token_by("RS256", Some("rsa"), &good, &keys.rsa2);
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none"}"#),
        b64url(good.to_string().as_bytes())
    );
    let invalid =
        |d: &str| format!(r#"Bearer realm="api", error="invalid_token", error_description="{d}""#);
    for (token, code, challenge) in [
        (None, "missing_token", r#"Bearer realm="api""#.to_string()),
        (
            Some("abc.def".to_string()),
            "malformed_token",
            invalid("malformed token: not three base64url parts separated by dots"),
        ),
        (
            Some(none),
            "unsupported_algorithm",
            invalid("the token's algorithm is none or not supported"),
        ),
        (
            Some(tampered),
            "invalid_signature",
            invalid("the token's signature does not verify"),
        ),
        (
            Some(other_key),
            "invalid_signature",
            invalid("the token's signature does not verify"),
        ),
        (
            Some(es(&with(json!({"exp": now() - 5})))),
            "token_expired",
            invalid("the token has expired"),
        ),
        (
            Some(es(&with(json!({"nbf": now() + 600})))),
            "token_not_yet_valid",
            invalid("the token is not valid yet"),
        ),
        (
            Some(es(&with(json!({"iss": "https://evil.example"})))),
            "invalid_issuer",
            invalid("the token's issuer is not accepted"),
        ),
        (
            Some(es(&with(json!({"aud": ["web"]})))),
            "invalid_audience",
            invalid("the token's audience is not accepted"),
        ),
        (
            Some(keys.token("ES256", Some("k-unknown"), &good)),
            "unknown_key",
            invalid("no key is known for the token"),
        ),
        (
            Some(keys.token("EdDSA", Some("ec256"), &good)),
            "algorithm_mismatch",
            invalid("the token's algorithm is not its key's"),
        ),
    ] {
        let auth = token.as_ref().map(|t| bearer(t));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let (s, h, body) = get_with(&gw.url("/api/x"), &headers).await;
        assert_eq!(s, 401, "{code}: {body}");
        assert_eq!(hv(&h, "www-authenticate"), challenge, "{code}");
        assert_eq!(hv(&h, "content-type"), "application/json");
        let v = json(&body);
        assert_eq!(v["error"], code, "{body}");
        // The gateway's request id, as in its own error bodies; nothing of the token.
        let id = hv(&h, "x-request-id");
        assert_eq!(id.len(), 16, "{body}");
        assert_eq!(v["request_id"], id.as_str());
        if let Some(t) = &token {
            assert!(!body.contains(t.as_str()));
        }
    }
    assert_eq!(up.hits(), 1);
    let series = r#"plugin_jwt_auth_denied_total{plugin="jwt-auth"}"#;
    assert_eq!(metric(&gw.metrics().await, series), Some(11.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hide_credentials_keeps_the_token_from_the_upstream_and_consumers_are_authenticated() {
    let keys = Keys::new();
    let up = MockUpstream::start("up").await;
    let idp = Idp::start(keys.jwks(&["ed"])).await;
    let hidden = json!({
        "jwks": {"upstream": "idp"},
        "cookie_names": ["session"],
        "hide_credentials": true,
        "consumer_claim": "preferred_username",
        "claims_to_headers": {"sub": "x-user", "email_verified": "x-email-verified"},
    });
    // Kong's way: the token's iss names a consumer's credential; its HMAC is checked by the gateway.
    let consumers = "consumers:\n  - name: alice\n    groups: [staff]\n    credentials:\n      jwt-auth: {key: alice-iss, secret: \"alice's secret of 32 bytes or so\"}\n  - name: dave\n";
    let gw = gateway(
        None,
        &up,
        &idp,
        vec![route("hidden", hidden), route("kong", json!({}))],
        consumers,
    )
    .await;
    let claims = json!({"sub": "d1", "preferred_username": "dave", "email_verified": true});
    let token = keys.token("EdDSA", Some("ed"), &claims);

    // The same token in a header, the query and a cookie (several different ones are refused):
    // every copy is hidden.
    let (s, _, body) = get_with(
        &gw.url(&format!("/hidden/items?jwt={token}&page=2")),
        &[
            ("authorization", &bearer(&token)),
            ("cookie", &format!("theme=dark; session={token}")),
            ("x-consumer-username", "root"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let seen = up.last();
    assert_eq!(hv(&seen.headers, "authorization"), "");
    assert_eq!(seen.uri, "/hidden/items?page=2");
    assert_eq!(hv(&seen.headers, "cookie"), "theme=dark");
    assert!(!format!("{:?}", seen.headers).contains(&token));
    assert_eq!(values(&seen.headers, "x-user"), ["d1"]);
    assert_eq!(hv(&seen.headers, "x-email-verified"), "true");
    // consumer_claim: the JWKS-verified token names the consumer dave.
    assert_eq!(values(&seen.headers, "x-consumer-username"), ["dave"]);

    // The same token in the query parameter only.
    let (s, _, _) = get_with(&gw.url(&format!("/hidden/items?jwt={token}")), &[]).await;
    assert_eq!(s, 200);
    assert_eq!(up.last().uri, "/hidden/items");

    // A consumer's HS256 credential, with the secret only the gateway holds.
    let input = format!(
        "{}.{}",
        b64url(br#"{"alg":"HS256"}"#),
        b64url(
            json!({"iss": "alice-iss", "sub": "a1"})
                .to_string()
                .as_bytes()
        )
    );
    let mac = |secret: &[u8]| {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        b64url(ring::hmac::sign(&key, input.as_bytes()).as_ref())
    };
    let alice = format!("{input}.{}", mac(b"alice's secret of 32 bytes or so"));
    let (s, _, body) = get_with(
        &gw.url("/kong/items"),
        &[("authorization", &bearer(&alice))],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let seen = up.last();
    assert_eq!(hv(&seen.headers, "x-consumer-username"), "alice");
    assert_eq!(hv(&seen.headers, "x-consumer-groups"), "staff");
    assert_eq!(hv(&seen.headers, "x-credential-identifier"), "alice-iss");
    assert_eq!(hv(&seen.headers, "authorization"), bearer(&alice));
    let forged = format!("{input}.{}", mac(b"a guess"));
    let (s, _, body) = get_with(
        &gw.url("/kong/items"),
        &[("authorization", &bearer(&forged))],
    )
    .await;
    assert_eq!(
        (s, json(&body)["error"].as_str()),
        (401, Some("invalid_signature"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_jwks_without_a_cached_copy_is_a_503() {
    let keys = Keys::new();
    let up = MockUpstream::start("up").await;
    let idp = Idp::start(keys.jwks(&["ec256"])).await;
    let config = json!({"jwks": {"upstream": "idp-down", "timeout_ms": 500}});
    let gw = gateway(None, &up, &idp, vec![route("api", config)], "").await;
    let token = keys.token("ES256", Some("ec256"), &json!({"sub": "ann"}));
    let (s, h, body) = get_with(&gw.url("/api/x"), &[("authorization", &bearer(&token))]).await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(hv(&h, "www-authenticate"), "");
    let v = json(&body);
    assert_eq!(v["error"], "jwks_unavailable");
    assert_eq!(v["request_id"], hv(&h, "x-request-id").as_str());
    assert_eq!(up.hits(), 0);
    let series = r#"plugin_jwt_auth_jwks_fetch_failures_total{plugin="jwt-auth"}"#;
    assert_eq!(metric(&gw.metrics().await, series), Some(1.0));
}

/// An HS256 token of `claims` (with `kid` in its header when given), MACed with `secret`: what a
/// consumer holding that secret can sign.
fn hs256(kid: Option<&str>, claims: &Value, secret: &[u8]) -> String {
    let mut header = json!({"alg": "HS256"});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    format!(
        "{input}.{}",
        b64url(ring::hmac::sign(&key, input.as_bytes()).as_ref())
    )
}

/// A consumer holding an HS256 credential cannot sign a token that passes for the identity
/// provider's on a route that trusts the provider's JWKS: neither by naming its credential in the
/// token's `kid` (which used to be looked up after `iss`) with the provider's `iss` and `aud` and a
/// victim's `sub`, nor by its own `iss`. Only a route that opts in (`consumer_credentials: true`)
/// trusts consumers' credentials, and there only the one `iss` names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_cannot_sign_tokens_for_the_identity_provider() {
    let keys = Keys::new();
    let up = MockUpstream::start("up").await;
    let idp = Idp::start(keys.jwks(&["ed"])).await;
    const ISS: &str = "https://login.example";
    let idp_route = json!({
        "jwks": {"upstream": "idp"},
        "issuers": [ISS],
        "audiences": ["api"],
        "claims_to_headers": {"sub": "x-user"},
    });
    let mut both = idp_route.clone();
    both["consumer_credentials"] = true.into();
    both["issuers"] = json!([ISS, "alice-key"]);
    let consumers = "consumers:\n  - name: alice\n    credentials:\n      jwt-auth: {key: alice-key, secret: \"alice's secret of 32 bytes or so\"}\n";
    let gw = gateway(
        None,
        &up,
        &idp,
        vec![route("idp", idp_route), route("both", both)],
        consumers,
    )
    .await;
    let secret = b"alice's secret of 32 bytes or so";
    let victim = json!({"iss": ISS, "aud": "api", "sub": "victim", "exp": now() + 600});
    let forged = hs256(Some("alice-key"), &victim, secret);
    let own = hs256(
        None,
        &json!({"iss": "alice-key", "aud": "api", "sub": "victim", "exp": now() + 600}),
        secret,
    );
    let call = |path: &'static str, token: &str| {
        let (url, auth) = (gw.url(path), bearer(token));
        async move { get_with(&url, &[("authorization", &auth)]).await }
    };

    // The provider's own token goes through.
    let real = keys.token(
        "EdDSA",
        Some("ed"),
        &json!({"iss": ISS, "aud": "api", "sub": "ann"}),
    );
    let (s, _, body) = call("/idp/x", &real).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(hv(&up.last().headers, "x-user"), "ann");
    // alice's MAC under her kid, the provider's claims: no key of the route verifies it.
    for path in ["/idp/x", "/both/x"] {
        let (s, _, body) = call(path, &forged).await;
        assert_eq!(
            (s, json(&body)["error"].as_str()),
            (401, Some("unknown_key")),
            "{path}"
        );
    }
    // Her own token (her key in iss): not on the provider's route...
    let (s, _, body) = call("/idp/x", &own).await;
    assert_eq!(
        (s, json(&body)["error"].as_str()),
        (401, Some("unknown_key"))
    );
    assert_eq!(up.hits(), 1);
    // ...but where the route opts in, as alice, which the upstream is told.
    let (s, _, body) = call("/both/x", &own).await;
    assert_eq!(s, 200, "{body}");
    let seen = up.last();
    assert_eq!(hv(&seen.headers, "x-consumer-username"), "alice");
    assert_eq!(hv(&seen.headers, "x-credential-identifier"), "alice-key");
}

/// A request with several different tokens is refused (Kong: "Multiple tokens provided"), wherever
/// they are: the plugin would check one while the upstream may read another. Query parameter names
/// are read decoded, so `?jw%74=` is `?jwt=`, and hide_credentials takes it out too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_tokens_are_refused_and_every_spelling_of_a_name_counts() {
    let keys = Keys::new();
    let up = MockUpstream::start("up").await;
    let idp = Idp::start(keys.jwks(&["ed"])).await;
    let config = json!({
        "jwks": {"upstream": "idp"},
        "cookie_names": ["session"],
        "hide_credentials": true,
        "claims_to_headers": {"sub": "x-user"},
    });
    let gw = gateway(None, &up, &idp, vec![route("api", config)], "").await;
    let ann = keys.token("EdDSA", Some("ed"), &json!({"sub": "ann"}));
    let root = keys.token("EdDSA", Some("ed"), &json!({"sub": "root"}));
    let malformed = |resp: Resp| {
        let (s, h, body) = resp;
        assert_eq!(s, 401, "{body}");
        assert_eq!(json(&body)["error"], "malformed_token", "{body}");
        assert!(
            hv(&h, "www-authenticate").contains("multiple tokens provided"),
            "{h:?}"
        );
    };
    let mut two = http::Request::get(gw.url("/api/x"));
    for t in [&ann, &root] {
        two = two.header("authorization", bearer(t));
    }
    malformed(request(two.body(Full::new(Bytes::new())).unwrap()).await);
    malformed(
        get_with(
            &gw.url(&format!("/api/x?jw%74={root}")),
            &[("authorization", &bearer(&ann))],
        )
        .await,
    );
    malformed(get(&gw.url(&format!("/api/x?jwt={ann}&jwt={root}"))).await);
    malformed(
        get_with(
            &gw.url("/api/x"),
            &[
                ("authorization", &bearer(&ann)),
                ("cookie", &format!("session={root}")),
            ],
        )
        .await,
    );
    assert_eq!(up.hits(), 0);

    // One token, in a name spelt with an escape: read, and hidden from the upstream.
    let (s, _, body) = get(&gw.url(&format!("/api/x?a=1&jw%74={ann}&b=2"))).await;
    assert_eq!(s, 200, "{body}");
    let seen = up.last();
    assert_eq!(seen.uri, "/api/x?a=1&b=2");
    assert_eq!(hv(&seen.headers, "x-user"), "ann");
}

/// A JWKS copy that cannot be fetched again serves for `max_stale` past its `cache_ttl`, then no
/// more: keys the identity provider revoked do not verify tokens forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_that_cannot_be_refreshed_is_used_for_max_stale_then_is_a_503() {
    let keys = Keys::new();
    let up = MockUpstream::start("up").await;
    let idp = Idp::start(keys.jwks(&["ed"])).await;
    let config = json!({"jwks": {"upstream": "idp", "cache_ttl": 1, "max_stale": 1, "min_refresh_interval": 1}});
    let gw = gateway(None, &up, &idp, vec![route("api", config)], "").await;
    let token = keys.token("EdDSA", Some("ed"), &json!({"sub": "ann"}));
    let call =
        || async { get_with(&gw.url("/api/x"), &[("authorization", &bearer(&token))]).await };
    let fetched = Instant::now();
    assert_eq!(call().await.0, 200);
    assert_eq!(idp.hits(), 1);
    // From now on the provider answers with something that is no JWKS.
    idp.serve("<html>maintenance</html>".into());
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // Expired, the refresh fails: the copy still serves (1.3 s old, under cache_ttl + max_stale).
    let (s, _, body) = call().await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(idp.hits(), 2);
    tokio::time::sleep(Duration::from_millis(2300).saturating_sub(fetched.elapsed())).await;
    // Past cache_ttl + max_stale: no keys, a 503, not the old ones.
    let (s, _, body) = call().await;
    assert_eq!(
        (s, json(&body)["error"].as_str()),
        (503, Some("jwks_unavailable")),
        "{body}"
    );
}
