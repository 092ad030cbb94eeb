//! TLS with rustls: listener configs (certificates chosen by SNI, ALPN h2/http1.1, optional client
//! certificates) and upstream client configs (system roots or a CA bundle, SNI, client certificates).
//! Files are read when a runtime is built, so a reload picks up changed certificates; errors name the
//! file and the config field.

use crate::config::Source;
use crate::config::{self, ConfigError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `p` as the config means it: relative paths are relative to the config file's directory.
pub fn resolve(src: &Source, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        src.path.parent().unwrap_or(Path::new(".")).join(p)
    }
}

fn read_certs(
    src: &Source,
    field: &str,
    p: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let path = resolve(src, p);
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(&path)
        .map_err(|e| {
            src.err(
                field,
                format!("cannot read certificates from {}: {e}", path.display()),
            )
        })?
        .collect();
    let certs = certs.map_err(|e| {
        src.err(
            field,
            format!("{}: not a valid PEM certificate: {e}", path.display()),
        )
    })?;
    if certs.is_empty() {
        return Err(src.err(field, format!("{} holds no certificate", path.display())));
    }
    Ok(certs)
}

fn read_key(src: &Source, field: &str, p: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let path = resolve(src, p);
    PrivateKeyDer::from_pem_file(&path).map_err(|e| {
        src.err(
            field,
            format!("{}: no usable PEM private key: {e}", path.display()),
        )
    })
}

/// A certificate and its key, checked to belong together.
fn certified_key(
    src: &Source,
    at: &str,
    ck: &config::CertKey,
) -> Result<CertifiedKey, ConfigError> {
    let certs = read_certs(src, &format!("{at}.cert"), &ck.cert)?;
    let key = read_key(src, &format!("{at}.key"), &ck.key)?;
    let signing = provider().key_provider.load_private_key(key).map_err(|e| {
        src.err(
            format!("{at}.key"),
            format!("{}: unsupported private key: {e}", ck.key.display()),
        )
    })?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|_| {
        src.err(
            format!("{at}.key"),
            format!(
                "{} is not the key of the certificate in {}",
                ck.key.display(),
                ck.cert.display()
            ),
        )
    })?;
    Ok(certified)
}

/// DNS names a certificate is for (its subject alternative names).
fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Picks a certificate by SNI: an exact name, then a `*.suffix` wildcard, then the default (first).
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(self.default.clone());
        };
        let name = name.to_ascii_lowercase();
        if let Some(c) = self.exact.get(&name) {
            return Some(c.clone());
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(c) = self.wildcard.get(parent) {
                return Some(c.clone());
            }
        }
        Some(self.default.clone())
    }
}

/// The rustls server config of a TLS listener.
pub fn server_config(
    src: &Source,
    at: &str,
    tls: &config::ListenerTls,
) -> Result<Arc<ServerConfig>, ConfigError> {
    if tls.certificates.is_empty() {
        return Err(src.err(
            format!("{at}.certificates"),
            "a TLS listener needs at least one certificate",
        ));
    }
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    let mut default = None;
    for (i, ck) in tls.certificates.iter().enumerate() {
        let key = Arc::new(certified_key(src, &format!("{at}.certificates[{i}]"), ck)?);
        for name in dns_names(&key.cert[0]) {
            match name.strip_prefix("*.") {
                Some(parent) => wildcard
                    .entry(parent.to_owned())
                    .or_insert_with(|| key.clone()),
                None => exact.entry(name).or_insert_with(|| key.clone()),
            };
        }
        default.get_or_insert(key);
    }
    let resolver = Arc::new(SniResolver {
        exact,
        wildcard,
        default: default.expect("at least one certificate"),
    });
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| src.err(at, e.to_string()))?;
    let mut cfg = match &tls.client_auth {
        None => builder.with_no_client_auth().with_cert_resolver(resolver),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(src, &format!("{at}.client_auth.ca"), &ca.ca)? {
                roots.add(c).map_err(|e| {
                    src.err(
                        format!("{at}.client_auth.ca"),
                        format!("unusable CA certificate: {e}"),
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if ca.required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| src.err(format!("{at}.client_auth"), e.to_string()))?;
            builder
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(resolver)
        }
    };
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The rustls client config of an upstream with TLS.
pub fn client_config(
    src: &Source,
    at: &str,
    tls: &config::UpstreamTls,
) -> Result<ClientConfig, ConfigError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| src.err(at, e.to_string()))?;
    let builder = if tls.insecure_skip_verify {
        tracing::warn!(field = at, "TLS certificate verification is DISABLED for this upstream (insecure_skip_verify); traffic to it can be intercepted");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        let mut roots = RootCertStore::empty();
        match &tls.ca {
            Some(ca) => {
                for c in read_certs(src, &format!("{at}.ca"), ca)? {
                    roots.add(c).map_err(|e| {
                        src.err(format!("{at}.ca"), format!("unusable CA certificate: {e}"))
                    })?;
                }
            }
            None => {
                let native = rustls_native_certs_or_empty();
                if native.is_empty() {
                    return Err(src.err(
                        format!("{at}.ca"),
                        "no system CA certificates found; set `ca`",
                    ));
                }
                for c in native {
                    let _ = roots.add(c);
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    match &tls.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some(ck) => {
            let certs = read_certs(src, &format!("{at}.client_cert.cert"), &ck.cert)?;
            let key = read_key(src, &format!("{at}.client_cert.key"), &ck.key)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| src.err(format!("{at}.client_cert"), e.to_string()))
        }
    }
}

/// System root certificates (from the platform store), or none.
fn rustls_native_certs_or_empty() -> Vec<CertificateDer<'static>> {
    let dirs = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ];
    for f in dirs {
        if let Ok(iter) = CertificateDer::pem_file_iter(f) {
            let certs: Vec<_> = iter.filter_map(Result::ok).collect();
            if !certs.is_empty() {
                return certs;
            }
        }
    }
    Vec::new()
}

/// A verifier that accepts any certificate (only with `insecure_skip_verify`).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What a TLS handshake established, kept for the connection's requests (route matchers, filters).
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// The SNI server name the client sent.
    pub server_name: Option<String>,
    /// The negotiated ALPN protocol.
    pub alpn: Option<String>,
    /// The protocol version (`TLSv1.2`, `TLSv1.3`).
    pub version: &'static str,
    /// The verified client certificate, if the client presented one.
    pub peer_cert: Option<PeerCert>,
}

impl TlsInfo {
    /// Reads the facts of an established server-side connection.
    pub fn of(conn: &rustls::ServerConnection) -> TlsInfo {
        TlsInfo {
            server_name: conn.server_name().map(str::to_string),
            alpn: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            version: match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                _ => "unknown",
            },
            peer_cert: conn
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(peer_cert),
        }
    }
}

/// The verified client certificate of a connection: subject and DNS/URI/email SANs.
#[derive(Debug, Clone, Default)]
pub struct PeerCert {
    /// Subject distinguished name, RFC 4514 style.
    pub subject: String,
    /// Subject alternative names.
    pub sans: Vec<String>,
}

/// Reads subject and SANs from a client's leaf certificate.
pub fn peer_cert(cert: &CertificateDer<'_>) -> Option<PeerCert> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let sans = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => format!("DNS:{d}"),
                    x509_parser::extensions::GeneralName::URI(u) => format!("URI:{u}"),
                    x509_parser::extensions::GeneralName::RFC822Name(e) => format!("email:{e}"),
                    other => format!("{other}"),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(PeerCert {
        subject: parsed.subject().to_string(),
        sans,
    })
}
