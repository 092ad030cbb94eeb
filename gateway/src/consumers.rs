//! Consumers: the API users of the config's `consumers:` section, compiled into a [`Registry`] that
//! authentication plugins query through the host (never reading a secret), and the consumer one
//! request is authenticated as ([`Identity`]), which every later filter, the access log and metrics see.
//!
//! Secrets at rest: `key-auth` keys and `basic-auth` passwords are kept only as HMAC-SHA-256 digests
//! under a key drawn at random for each registry (so a digest is worth nothing outside this process),
//! and compared with `ring::hmac::verify` (constant time). A `key-auth` key is its own identifier: it
//! is found by its digest in a map, which reveals nothing of the key to a timing observer since the
//! digest is keyed. `jwt-auth` secrets are HMAC keys themselves and cannot be hashed: they stay in the
//! host (wiped on drop) and plugins can only ask whether a MAC was made with one (never for one, which
//! would let any plugin sign tokens for any consumer).

use crate::config::consumers::{Consumer as ConsumerConfig, Secret};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// The kinds of credentials the config knows.
pub const KINDS: [&str; 3] = ["key-auth", "basic-auth", "jwt-auth"];

/// The `jwt-auth` algorithms a credential may name.
pub const JWT_ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// An HMAC-SHA-256 tag as a fixed-size map key.
fn tag_bytes(tag: &ring::hmac::Tag) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// The shortest secret an HMAC algorithm takes: its hash's output size.
fn hmac_key_bytes(algorithm: &str) -> usize {
    match algorithm {
        "HS384" => 48,
        "HS512" => 64,
        _ => 32,
    }
}

/// A running digest of a `consumers:` section. Secrets enter it only as HMACs under a key drawn once
/// per process, so equal secrets give equal fingerprints within the process and the fingerprint says
/// nothing about them.
#[derive(Default)]
struct Fingerprint(sha2::Sha256);

impl Fingerprint {
    fn add(&mut self, tag: &[u8], value: &[u8]) {
        use sha2::Digest;
        for part in [tag, value] {
            self.0.update((part.len() as u64).to_le_bytes());
            self.0.update(part);
        }
    }

    fn secret(&mut self, tag: &[u8], secret: &[u8]) {
        static KEY: std::sync::OnceLock<ring::hmac::Key> = std::sync::OnceLock::new();
        let key = KEY.get_or_init(|| {
            ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
                .expect("the system's random generator works")
        });
        self.add(tag, ring::hmac::sign(key, secret).as_ref());
    }

    fn finish(self) -> [u8; 32] {
        use sha2::Digest;
        self.0.finalize().into()
    }
}

/// A consumer.
#[derive(Debug, PartialEq, Eq)]
pub struct Consumer {
    /// Its name.
    pub name: Arc<str>,
    /// Its groups, in config order.
    pub groups: Vec<String>,
}

/// A credential: whose, its identifier, its secret's digest or key, and its public attributes.
struct Credential {
    consumer: Arc<Consumer>,
    id: String,
    /// The secret as an HMAC digest (`basic-auth`).
    digest: Option<ring::hmac::Tag>,
    /// The secret itself, for kinds whose secret is a MAC key (`jwt-auth`).
    mac_key: Option<Zeroizing<Vec<u8>>>,
    attributes: Vec<(String, String)>,
}

/// A consumer's credential without its secret, as plugins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialView {
    /// Whose it is.
    pub consumer: Arc<Consumer>,
    /// Its identifier.
    pub id: String,
    /// Its attributes that are not secret.
    pub attributes: Vec<(String, String)>,
}

/// The hash functions [`Registry::verify_hmac`] can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-384.
    Sha384,
    /// HMAC-SHA-512.
    Sha512,
}

/// The compiled `consumers:` of one config.
pub struct Registry {
    /// Keys secrets' digests.
    pepper: ring::hmac::Key,
    by_name: HashMap<Arc<str>, Arc<Consumer>>,
    /// Consumers by the digest of a secret that is its own identifier (`key-auth`), by kind.
    by_secret: HashMap<(&'static str, [u8; 32]), Arc<Consumer>>,
    /// Credentials with an identifier, by kind and identifier.
    by_id: HashMap<(&'static str, String), Credential>,
    /// A digest no secret has, compared against when an identifier is unknown, so that an unknown
    /// username costs what a wrong password does.
    decoy: ring::hmac::Tag,
    /// What the consumers are, as one digest: equal for equal `consumers:` sections (secrets
    /// included, as read) within one process.
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("consumers", &self.by_name.len())
            .finish_non_exhaustive()
    }
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::empty()
    }
}

/// Why a `consumers:` section does not compile: the field path inside `consumers` and what is wrong.
#[derive(Debug, PartialEq, Eq)]
pub struct RegistryError {
    /// The field, e.g. `consumers[1].credentials.key-auth[0].key`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Registry {
    /// A registry with no consumers.
    pub fn empty() -> Registry {
        let rng = ring::rand::SystemRandom::new();
        let pepper = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .expect("the system's random generator works");
        let decoy = ring::hmac::sign(&pepper, b"\0no secret is this\0");
        Registry {
            pepper,
            by_name: HashMap::new(),
            by_secret: HashMap::new(),
            by_id: HashMap::new(),
            decoy,
            fingerprint: Fingerprint::default().finish(),
        }
    }

    /// Compiles `consumers` (from the config file in folder `base`): reads `env:` and `file:`
    /// secrets, digests keys and passwords, and refuses duplicate names, keys and identifiers.
    pub fn build(consumers: &[ConsumerConfig], base: &Path) -> Result<Registry, RegistryError> {
        let mut reg = Registry::empty();
        let mut print = Fingerprint::default();
        for (i, c) in consumers.iter().enumerate() {
            let at = |f: &str| format!("consumers[{i}].{f}");
            let err = |field: String, message: String| RegistryError { field, message };
            if c.name.is_empty() {
                return Err(err(at("name"), "a consumer needs a name".into()));
            }
            // Names and groups go into headers (`x-consumer-username`) and the access log.
            if c.name.chars().any(char::is_control) {
                return Err(err(at("name"), "a name has no control characters".into()));
            }
            let name: Arc<str> = Arc::from(c.name.as_str());
            if reg.by_name.contains_key(&name) {
                return Err(err(
                    at("name"),
                    format!("consumer `{}` is defined twice", c.name),
                ));
            }
            for (j, g) in c.groups.iter().enumerate() {
                if g.is_empty() || g.contains(',') || g.chars().any(char::is_control) {
                    return Err(err(
                        at(&format!("groups[{j}]")),
                        "a group is a non-empty name without commas or control characters".into(),
                    ));
                }
            }
            let consumer = Arc::new(Consumer {
                name: name.clone(),
                groups: c.groups.clone(),
            });
            print.add(b"consumer", c.name.as_bytes());
            for g in &c.groups {
                print.add(b"group", g.as_bytes());
            }
            reg.by_name.insert(name, consumer.clone());
            let secret =
                |s: &Secret, field: String| s.resolve(base).map_err(|message| err(field, message));
            for (j, k) in c.credentials.key_auth.iter().enumerate() {
                let field = at(&format!("credentials.key-auth[{j}].key"));
                let key = secret(&k.key, field.clone())?;
                print.secret(b"key-auth", key.as_bytes());
                let digest = ring::hmac::sign(&reg.pepper, key.as_bytes());
                let slot = ("key-auth", tag_bytes(&digest));
                if let Some(other) = reg.by_secret.get(&slot) {
                    return Err(err(
                        field,
                        format!("this key is also consumer `{}`'s", other.name),
                    ));
                }
                reg.by_secret.insert(slot, consumer.clone());
            }
            for (j, b) in c.credentials.basic_auth.iter().enumerate() {
                let at = |f: &str| at(&format!("credentials.basic-auth[{j}].{f}"));
                if b.username.is_empty()
                    || b.username.contains(':')
                    || b.username.chars().any(char::is_control)
                {
                    return Err(err(
                        at("username"),
                        "a username is non-empty, without `:` (RFC 7617) or control characters"
                            .into(),
                    ));
                }
                let password = secret(&b.password, at("password"))?;
                print.add(b"basic-auth", b.username.as_bytes());
                print.secret(b"password", password.as_bytes());
                let cred = Credential {
                    consumer: consumer.clone(),
                    id: b.username.clone(),
                    digest: Some(ring::hmac::sign(&reg.pepper, password.as_bytes())),
                    mac_key: None,
                    attributes: Vec::new(),
                };
                reg.insert_by_id("basic-auth", cred, at("username"))?;
            }
            for (j, t) in c.credentials.jwt_auth.iter().enumerate() {
                let at = |f: &str| at(&format!("credentials.jwt-auth[{j}].{f}"));
                if t.key.is_empty() || t.key.chars().any(char::is_control) {
                    return Err(err(
                        at("key"),
                        "the key is non-empty, without control characters".into(),
                    ));
                }
                if !JWT_ALGORITHMS.contains(&t.algorithm.as_str()) {
                    return Err(err(
                        at("algorithm"),
                        format!(
                            "unknown algorithm `{}` (expected one of {})",
                            t.algorithm,
                            JWT_ALGORITHMS.join(", ")
                        ),
                    ));
                }
                let hmac = t.algorithm.starts_with("HS");
                let mut attributes = vec![("algorithm".to_owned(), t.algorithm.clone())];
                let mac_key = match (&t.secret, &t.public_key, hmac) {
                    (Some(s), None, true) => {
                        let s = secret(s, at("secret"))?;
                        // RFC 7518 3.2: a key at least as long as the hash's output; a shorter one
                        // falls to an offline search from a single token.
                        let least = hmac_key_bytes(&t.algorithm);
                        if s.len() < least {
                            return Err(err(
                                at("secret"),
                                format!(
                                    "{} needs a secret of at least {least} bytes (RFC 7518)",
                                    t.algorithm
                                ),
                            ));
                        }
                        Some(Zeroizing::new(s.as_bytes().to_vec()))
                    }
                    (None, Some(p), false) => {
                        let pem = secret(p, at("public_key"))?;
                        if !pem.contains("-----BEGIN ") {
                            return Err(err(
                                at("public_key"),
                                "expected a PEM public key (-----BEGIN PUBLIC KEY-----)".into(),
                            ));
                        }
                        attributes.push(("public-key".to_owned(), pem.to_string()));
                        None
                    }
                    (_, _, true) => {
                        return Err(err(
                            at("secret"),
                            format!("{} needs a `secret` and no `public_key`", t.algorithm),
                        ))
                    }
                    (_, _, false) => {
                        return Err(err(
                            at("public_key"),
                            format!("{} needs a `public_key` and no `secret`", t.algorithm),
                        ))
                    }
                };
                print.add(b"jwt-auth", t.key.as_bytes());
                for (k, v) in &attributes {
                    print.add(k.as_bytes(), v.as_bytes());
                }
                if let Some(k) = &mac_key {
                    print.secret(b"secret", k);
                }
                let cred = Credential {
                    consumer: consumer.clone(),
                    id: t.key.clone(),
                    digest: None,
                    mac_key,
                    attributes,
                };
                reg.insert_by_id("jwt-auth", cred, at("key"))?;
            }
        }
        reg.fingerprint = print.finish();
        Ok(reg)
    }

    /// What the consumers are, as one digest (equal for the same consumers, groups and credentials
    /// within this process; never the secrets themselves).
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    fn insert_by_id(
        &mut self,
        kind: &'static str,
        cred: Credential,
        field: String,
    ) -> Result<(), RegistryError> {
        let slot = (kind, cred.id.clone());
        if let Some(other) = self.by_id.get(&slot) {
            return Err(RegistryError {
                field,
                message: format!(
                    "`{}` is already a {kind} credential of consumer `{}`",
                    cred.id, other.consumer.name
                ),
            });
        }
        self.by_id.insert(slot, cred);
        Ok(())
    }

    /// Whether the config names no consumer.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The consumer called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Consumer>> {
        self.by_name.get(name)
    }

    fn kind(kind: &str) -> Option<&'static str> {
        KINDS.into_iter().find(|k| *k == kind)
    }

    /// The consumer holding a credential of `kind` whose secret is `key`.
    pub fn find_by_key(&self, kind: &str, key: &str) -> Option<&Arc<Consumer>> {
        let kind = Registry::kind(kind)?;
        // Found by its keyed digest, no further comparison: the map compares digests under a key
        // drawn at random for this registry, so how long a lookup takes says nothing of the keys (a
        // second, constant-time comparison of the same digest was a second HMAC for nothing:
        // 4,000 instructions a request, BENCHMARKS.md).
        let digest = ring::hmac::sign(&self.pepper, key.as_bytes());
        self.by_secret.get(&(kind, tag_bytes(&digest)))
    }

    /// The consumer holding the credential of `kind` with identifier `id` and secret `secret`. An
    /// unknown identifier costs what a wrong secret does.
    pub fn check_secret(&self, kind: &str, id: &str, secret: &str) -> Option<&Arc<Consumer>> {
        let cred = Registry::kind(kind).and_then(|k| self.by_id.get(&(k, id.to_owned())));
        let stored = cred.and_then(|c| c.digest.as_ref()).unwrap_or(&self.decoy);
        let ok = self.verify(secret.as_bytes(), stored);
        cred.filter(|c| ok && c.digest.is_some())
            .map(|c| &c.consumer)
    }

    /// Whether `secret`'s digest is `stored`, compared in constant time (`ring::hmac::verify`).
    fn verify(&self, secret: &[u8], stored: &ring::hmac::Tag) -> bool {
        #[cfg(test)]
        tests::VERIFIES.with(|n| n.set(n.get() + 1));
        ring::hmac::verify(&self.pepper, secret, stored.as_ref()).is_ok()
    }

    /// The credential of `kind` with identifier `id`, without its secret.
    pub fn credential(&self, kind: &str, id: &str) -> Option<CredentialView> {
        let cred = self.by_id.get(&(Registry::kind(kind)?, id.to_owned()))?;
        Some(CredentialView {
            consumer: cred.consumer.clone(),
            id: cred.id.clone(),
            attributes: cred.attributes.clone(),
        })
    }

    /// The consumer holding the credential of `kind` with identifier `id`, when `mac` is the HMAC of
    /// `message` keyed with its secret (compared in constant time). Nothing made with a secret leaves
    /// the registry: a plugin can check a signature, not make one.
    pub fn verify_hmac(
        &self,
        kind: &str,
        id: &str,
        algorithm: HmacAlgorithm,
        message: &[u8],
        mac: &[u8],
    ) -> Option<&Arc<Consumer>> {
        let cred = self.by_id.get(&(Registry::kind(kind)?, id.to_owned()))?;
        let secret = cred.mac_key.as_ref()?;
        let algorithm = match algorithm {
            HmacAlgorithm::Sha256 => ring::hmac::HMAC_SHA256,
            HmacAlgorithm::Sha384 => ring::hmac::HMAC_SHA384,
            HmacAlgorithm::Sha512 => ring::hmac::HMAC_SHA512,
        };
        let key = ring::hmac::Key::new(algorithm, secret);
        ring::hmac::verify(&key, message, mac).ok()?;
        Some(&cred.consumer)
    }
}

/// Who one request is authenticated as: the registry of the config it is served by, and the consumer
/// a filter authenticated it as. Shared by the request's filter contexts and the access log. Made
/// only for requests that run filters under a config with consumers.
#[derive(Debug)]
pub struct Identity {
    registry: Arc<Registry>,
    current: Mutex<Option<Arc<Consumer>>>,
}

impl Identity {
    /// A request not yet authenticated, served under `registry`.
    pub fn new(registry: Arc<Registry>) -> Identity {
        Identity {
            registry,
            current: Mutex::new(None),
        }
    }

    /// The registry of the request's config.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The consumer the request is authenticated as.
    pub fn current(&self) -> Option<Arc<Consumer>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Authenticates the request as the consumer `name`; false when there is none of that name.
    pub fn authenticate(&self, name: &str) -> bool {
        let Some(c) = self.registry.get(name) else {
            return false;
        };
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Constant-time comparisons made on this thread.
        pub(super) static VERIFIES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// The comparisons `f` makes.
    fn verifies(f: impl FnOnce()) -> usize {
        let before = VERIFIES.with(|n| n.get());
        f();
        VERIFIES.with(|n| n.get()) - before
    }

    /// Timing, by construction rather than by stopwatch (timed tests flake on a shared machine): a
    /// password check makes exactly one constant-time comparison whether the username exists, the
    /// password is wrong or right; a key is found by its digest under the registry's random key,
    /// with no comparison of the key itself, right or wrong.
    #[test]
    fn secrets_are_compared_in_constant_time_whatever_the_outcome() {
        let reg = registry(CONSUMERS).unwrap();
        for (user, pass) in [
            ("alice", "pa:ss"),
            ("alice", "pa:sx"),
            ("nobody", "pa:ss"),
            ("", ""),
        ] {
            assert_eq!(
                verifies(|| {
                    reg.check_secret("basic-auth", user, pass);
                }),
                1,
                "{user}:{pass}"
            );
        }
        assert_eq!(
            verifies(|| assert!(reg.find_by_key("key-auth", "k-bob").is_some())),
            0
        );
        assert_eq!(
            verifies(|| assert!(reg.find_by_key("key-auth", "k-bo").is_none())),
            0
        );
    }

    fn registry(yaml: &str) -> Result<Registry, RegistryError> {
        let cfg: Vec<ConsumerConfig> = serde_yaml_ng::from_str(yaml).unwrap();
        Registry::build(&cfg, Path::new("."))
    }

    const CONSUMERS: &str = "
- name: alice
  groups: [admins, ops]
  credentials:
    key-auth: [{key: k-alice}, {key: k-alice-2}]
    basic-auth: {username: alice, password: 'pa:ss'}
    jwt-auth: {key: alice-iss, secret: hs-secret-of-at-least-32-bytes-xxxxx}
- name: bob
  credentials:
    key-auth: {key: k-bob}
    jwt-auth: {key: bob-kid, algorithm: ES256, public_key: \"-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\"}
";

    #[test]
    fn lookups_find_the_consumer_only_with_the_right_secret() {
        let reg = registry(CONSUMERS).unwrap();
        assert_eq!(
            &*reg.find_by_key("key-auth", "k-alice").unwrap().name,
            "alice"
        );
        assert_eq!(
            &*reg.find_by_key("key-auth", "k-alice-2").unwrap().name,
            "alice"
        );
        assert_eq!(&*reg.find_by_key("key-auth", "k-bob").unwrap().name, "bob");
        assert!(reg.find_by_key("key-auth", "k-carol").is_none());
        assert!(reg.find_by_key("basic-auth", "k-alice").is_none());
        assert!(reg.find_by_key("no-such-kind", "k-alice").is_none());

        assert_eq!(
            &*reg
                .check_secret("basic-auth", "alice", "pa:ss")
                .unwrap()
                .name,
            "alice"
        );
        assert!(reg.check_secret("basic-auth", "alice", "pa:sS").is_none());
        assert!(reg.check_secret("basic-auth", "alice", "").is_none());
        assert!(reg.check_secret("basic-auth", "carol", "pa:ss").is_none());
        // A jwt-auth credential has a MAC key, not a digest: no password check passes on it.
        assert!(reg
            .check_secret(
                "jwt-auth",
                "alice-iss",
                "hs-secret-of-at-least-32-bytes-xxxxx"
            )
            .is_none());

        let bob = reg.credential("jwt-auth", "bob-kid").unwrap();
        assert_eq!(&*bob.consumer.name, "bob");
        assert!(bob
            .attributes
            .contains(&("algorithm".into(), "ES256".into())));
        assert!(bob
            .attributes
            .iter()
            .any(|(k, v)| k == "public-key" && v.contains("BEGIN")));
        let alice = reg.credential("jwt-auth", "alice-iss").unwrap();
        assert_eq!(alice.attributes, vec![("algorithm".into(), "HS256".into())]);

        let key = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            b"hs-secret-of-at-least-32-bytes-xxxxx",
        );
        let mac = ring::hmac::sign(&key, b"a.b");
        let verify = |id, alg, msg: &[u8], mac: &[u8]| {
            reg.verify_hmac("jwt-auth", id, alg, msg, mac)
                .map(|c| c.name.to_string())
        };
        assert_eq!(
            verify("alice-iss", HmacAlgorithm::Sha256, b"a.b", mac.as_ref()).as_deref(),
            Some("alice")
        );
        assert!(verify("alice-iss", HmacAlgorithm::Sha256, b"a.c", mac.as_ref()).is_none());
        assert!(verify("alice-iss", HmacAlgorithm::Sha384, b"a.b", mac.as_ref()).is_none());
        assert!(verify(
            "alice-iss",
            HmacAlgorithm::Sha256,
            b"a.b",
            &mac.as_ref()[1..]
        )
        .is_none());
        assert!(verify("bob-kid", HmacAlgorithm::Sha256, b"a.b", mac.as_ref()).is_none());
        assert!(reg
            .verify_hmac(
                "basic-auth",
                "alice",
                HmacAlgorithm::Sha256,
                b"a.b",
                mac.as_ref()
            )
            .is_none());
    }

    #[test]
    fn the_fingerprint_changes_with_any_consumer_group_or_secret() {
        let print = |yaml: &str| registry(yaml).unwrap().fingerprint();
        let base = print(CONSUMERS);
        assert_eq!(base, print(CONSUMERS), "the same section, read twice");
        for changed in [
            CONSUMERS.replace("k-bob", "k-bob2"),
            CONSUMERS.replace("'pa:ss'", "'pa:sS'"),
            CONSUMERS.replace("[admins, ops]", "[admins]"),
            CONSUMERS.replace("name: bob", "name: bobby"),
            CONSUMERS.replace("xxxxx", "xxxxy"),
            CONSUMERS.replace("ES256", "ES384"),
        ] {
            assert_ne!(base, print(&changed), "{changed}");
        }
        assert_eq!(Registry::empty().fingerprint(), print("[]"));
    }

    #[test]
    fn an_identity_takes_only_configured_consumers() {
        let id = Identity::new(Arc::new(registry(CONSUMERS).unwrap()));
        assert!(id.current().is_none());
        assert!(!id.authenticate("carol"));
        assert!(id.authenticate("bob"));
        assert_eq!(&*id.current().unwrap().name, "bob");
        assert!(id.authenticate("alice"));
        assert_eq!(id.current().unwrap().groups, ["admins", "ops"]);
    }

    #[test]
    fn bad_sections_name_the_field() {
        for (yaml, field, message) in [
            ("- {name: a}\n- {name: a}", "consumers[1].name", "defined twice"),
            ("- {name: ''}", "consumers[0].name", "needs a name"),
            ("- {name: a, groups: ['x,y']}", "consumers[0].groups[0]", "without commas"),
            ("- {name: a, groups: [\"x\\ny\"]}", "consumers[0].groups[0]", "control characters"),
            ("- {name: \"a\\rb\"}", "consumers[0].name", "no control characters"),
            (
                "- {name: a, credentials: {key-auth: {key: k}}}\n- {name: b, credentials: {key-auth: [{key: j}, {key: k}]}}",
                "consumers[1].credentials.key-auth[1].key",
                "also consumer `a`'s",
            ),
            (
                "- {name: a, credentials: {key-auth: {key: ''}}}",
                "consumers[0].credentials.key-auth[0].key",
                "is empty",
            ),
            (
                "- {name: a, credentials: {key-auth: {key: 'env:GW_TEST_NEVER_SET'}}}",
                "consumers[0].credentials.key-auth[0].key",
                "GW_TEST_NEVER_SET",
            ),
            (
                "- {name: a, credentials: {basic-auth: {username: 'a:b', password: p}}}",
                "consumers[0].credentials.basic-auth[0].username",
                "RFC 7617",
            ),
            (
                "- {name: a, credentials: {basic-auth: {username: u, password: p}}}\n- {name: b, credentials: {basic-auth: {username: u, password: q}}}",
                "consumers[1].credentials.basic-auth[0].username",
                "already a basic-auth credential of consumer `a`",
            ),
            (
                "- {name: a, credentials: {jwt-auth: {key: k, algorithm: none, secret: s}}}",
                "consumers[0].credentials.jwt-auth[0].algorithm",
                "unknown algorithm `none`",
            ),
            (
                "- {name: a, credentials: {jwt-auth: {key: k, algorithm: HS384, secret: 0123456789012345678901234567890123456789}}}",
                "consumers[0].credentials.jwt-auth[0].secret",
                "at least 48 bytes",
            ),
            (
                "- {name: a, credentials: {key-auth: {key: '<redacted>'}}}",
                "consumers[0].credentials.key-auth[0].key",
                "how /config shows a secret",
            ),
            (
                "- {name: a, credentials: {jwt-auth: {key: k}}}",
                "consumers[0].credentials.jwt-auth[0].secret",
                "HS256 needs a `secret`",
            ),
            (
                "- {name: a, credentials: {jwt-auth: {key: k, algorithm: RS256, secret: s}}}",
                "consumers[0].credentials.jwt-auth[0].public_key",
                "RS256 needs a `public_key`",
            ),
            (
                "- {name: a, credentials: {jwt-auth: {key: k, algorithm: EdDSA, public_key: abc}}}",
                "consumers[0].credentials.jwt-auth[0].public_key",
                "expected a PEM",
            ),
        ] {
            let e = registry(yaml).unwrap_err();
            assert_eq!(e.field, field, "{yaml}");
            assert!(e.message.contains(message), "{yaml}: {}", e.message);
        }
    }
}
