//! TLS: termination with SNI and ALPN, upstream TLS with verification failures, mutual TLS both ways,
//! and certificates that reload while a connection stays open. Certificates are made at test time.

use crate::harness::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A test CA that signs leaf certificates into files.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        Ca {
            cert,
            key,
            dir: dir.to_path_buf(),
        }
    }

    fn pem_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    /// Writes `<file>.crt` and `<file>.key` for `names`; returns the two paths.
    fn leaf(&self, file: &str, names: &[&str], expired: bool) -> (PathBuf, PathBuf) {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, file);
        if expired {
            p.not_before = rcgen::date_time_ymd(2001, 1, 1);
            p.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        let (c, k) = (
            self.dir.join(format!("{file}.crt")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config trusting `ca`, optionally with a client certificate, offering `alpn`.
fn client(ca: &Path, cert: Option<(&Path, &Path)>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match cert {
        None => b.with_no_client_auth(),
        Some((c, k)) => b
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(c)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(k).unwrap(),
            )
            .unwrap(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

async fn connect(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
}

/// One HTTP/1.1 request on an open TLS stream (keep-alive); returns the response head and body.
async fn get_on(s: &mut tokio_rustls::client::TlsStream<TcpStream>, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 16384];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("response in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn listener(ca_dir: &Path, certs: &[(PathBuf, PathBuf)], client_auth: &str) -> String {
    let _ = ca_dir;
    let mut y = String::from(
        "listeners:\n  - name: main\n    address: 127.0.0.1:0\n    tls:\n      certificates:\n",
    );
    for (c, k) in certs {
        y += &format!(
            "        - {{cert: {}, key: {}}}\n",
            c.display(),
            k.display()
        );
    }
    y += client_auth;
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_alpn_offers_h2_and_http1_still_works() {
    let dir = TempDir::new("tls-sni");
    let ca = Ca::new(&dir.0, "ca");
    let a = ca.leaf("a", &["a.example.com", "127.0.0.1"], false);
    let b = ca.leaf("b", &["b.example.com"], false);
    let w = ca.leaf("w", &["*.wild.example.com"], false);
    let gw = TestGateway::start(&format!(
        "{}routes:\n  - name: r\n    direct_response: {{body: secure}}\n    response_headers: {{set: {{strict-transport-security: max-age=31536000}}}}\n",
        listener(&dir.0, &[a, b, w], "")
    ))
    .await;
    let trust = client(&ca.pem_path("ca"), None, &[b"http/1.1"]);
    // Each name gets its own certificate (the handshake verifies the name).
    for name in ["b.example.com", "x.wild.example.com", "127.0.0.1"] {
        let mut s = connect(gw.addr, trust.clone(), name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let resp = get_on(&mut s, "/").await;
        assert_eq!(status_of(&resp), 200, "{name}: {resp}");
        assert!(resp.ends_with("secure"), "{resp}");
        assert!(
            resp.contains("strict-transport-security: max-age=31536000"),
            "{resp}"
        );
    }
    // An unknown name gets the default certificate (a.example.com), which does not match it.
    let Err(err) = connect(gw.addr, trust.clone(), "unknown.example.com").await else {
        panic!("the default certificate does not match unknown.example.com");
    };
    assert!(
        err.to_string().contains("NotValidForName") || err.to_string().contains("not valid for"),
        "{err}"
    );
    // ALPN: h2 is chosen when offered, and HTTP/2 works over it.
    let s = connect(
        gw.addr,
        client(&ca.pem_path("ca"), None, &[b"h2", b"http/1.1"]),
        "b.example.com",
    )
    .await
    .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(s),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            http::Request::get("https://b.example.com/")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Cleartext on a TLS port is a failed handshake, counted.
    let r = raw(
        gw.addr,
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(status_of(&r), 0, "{r}");
    // Two failed handshakes: the client that refused the default certificate, and the cleartext one.
    assert!(
        eventually(Duration::from_secs(2), || async {
            gw.metrics()
                .await
                .contains("gateway_tls_handshake_errors_total 2")
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_or_optional() {
    let dir = TempDir::new("tls-mtls");
    let ca = Ca::new(&dir.0, "ca");
    let clients = Ca::new(&dir.0, "clients");
    let server = ca.leaf("server", &["127.0.0.1"], false);
    let (cc, ck) = clients.leaf("client-1", &["client-1.example.com"], false);
    let other = Ca::new(&dir.0, "other");
    let (oc, ok) = other.leaf("intruder", &["intruder.example.com"], false);
    let auth = |required: bool| {
        format!(
            "      client_auth: {{ca: {}, required: {required}}}\n",
            clients.pem_path("clients").display()
        )
    };
    let route = "routes:\n  - name: r\n    direct_response: {body: hello}\n";
    let gw = TestGateway::start(&format!(
        "{}{route}",
        listener(&dir.0, std::slice::from_ref(&server), &auth(true))
    ))
    .await;
    let with = client(&ca.pem_path("ca"), Some((&cc, &ck)), &[]);
    let mut s = connect(gw.addr, with, "127.0.0.1").await.unwrap();
    assert_eq!(status_of(&get_on(&mut s, "/").await), 200);
    // Without a certificate, or with one from another CA: refused (the server's alert arrives on the
    // first read with TLS 1.3).
    for cfg in [
        client(&ca.pem_path("ca"), None, &[]),
        client(&ca.pem_path("ca"), Some((&oc, &ok)), &[]),
    ] {
        let refused = match connect(gw.addr, cfg, "127.0.0.1").await {
            Err(_) => true,
            Ok(mut s) => {
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
                let mut buf = [0u8; 64];
                !matches!(s.read(&mut buf).await, Ok(n) if n > 0)
            }
        };
        assert!(refused);
    }
    // Optional: both kinds of client are served.
    let gw2 = TestGateway::start(&format!(
        "{}{route}",
        listener(&dir.0, &[server], &auth(false))
    ))
    .await;
    let mut s = connect(gw2.addr, client(&ca.pem_path("ca"), None, &[]), "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(status_of(&get_on(&mut s, "/").await), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_verifies_and_can_present_a_client_certificate() {
    let dir = TempDir::new("tls-up");
    let ca = Ca::new(&dir.0, "ca");
    let wrong_ca = Ca::new(&dir.0, "wrong");
    let clients = Ca::new(&dir.0, "clients");
    // The upstream is another gateway terminating TLS and requiring a client certificate.
    let good = ca.leaf("up", &["up.example.com"], false);
    let expired = ca.leaf("old", &["up.example.com"], true);
    let (cc, ck) = clients.leaf("gw-client", &["gateway.example.com"], false);
    let auth = format!(
        "      client_auth: {{ca: {}}}\n",
        clients.pem_path("clients").display()
    );
    let up = TestGateway::start(&format!(
        "{}routes:\n  - name: r\n    direct_response: {{body: from-tls-upstream}}\n",
        listener(&dir.0, &[good], &auth)
    ))
    .await;
    let up_old = TestGateway::start(&format!(
        "{}routes:\n  - name: r\n    direct_response: {{body: old}}\n",
        listener(&dir.0, &[expired], &auth)
    ))
    .await;
    let cluster = |name: &str, addr: std::net::SocketAddr, tls: String| {
        format!("  - name: {name}\n    endpoints: [\"{addr}\"]\n    health: {{passive: {{consecutive_failures: 0}}}}\n    tls: {{{tls}}}\n")
    };
    let client_cert = format!(
        "client_cert: {{cert: {}, key: {}}}",
        cc.display(),
        ck.display()
    );
    let ca_pem = ca.pem_path("ca").display().to_string();
    let mut y = String::from("upstreams:\n");
    y += &cluster(
        "ok",
        up.addr,
        format!("ca: {ca_pem}, server_name: up.example.com, {client_cert}"),
    );
    y += &cluster(
        "no-client-cert",
        up.addr,
        format!("ca: {ca_pem}, server_name: up.example.com"),
    );
    y += &cluster(
        "wrong-ca",
        up.addr,
        format!(
            "ca: {}, server_name: up.example.com, {client_cert}",
            wrong_ca.pem_path("wrong").display()
        ),
    );
    y += &cluster(
        "wrong-name",
        up.addr,
        format!("ca: {ca_pem}, server_name: other.example.com, {client_cert}"),
    );
    y += &cluster(
        "expired",
        up_old.addr,
        format!("ca: {ca_pem}, server_name: up.example.com, {client_cert}"),
    );
    y += "routes:\n";
    for name in ["ok", "no-client-cert", "wrong-ca", "wrong-name", "expired"] {
        y += &format!(
            "  - name: {name}\n    match: {{path: {{prefix: /{name}}}}}\n    upstream: {name}\n"
        );
    }
    let gw = TestGateway::start(&y).await;
    let (s, _, body) = get(&gw.url("/ok")).await;
    assert_eq!((s, body.as_str()), (200, "from-tls-upstream"));
    for name in ["no-client-cert", "wrong-ca", "wrong-name", "expired"] {
        let (s, _, body) = get(&gw.url(&format!("/{name}"))).await;
        assert_eq!(s, 502, "{name}: {body}");
        assert!(body.contains("upstream_"), "{name}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_ca_file_changed_on_disk_rebuilds_its_cluster_on_reload() {
    let dir = TempDir::new("tls-up-ca");
    let ca = Ca::new(&dir.0, "ca");
    let other = Ca::new(&dir.0, "other");
    let up = TestGateway::start(&format!(
        "{}routes:\n  - name: r\n    direct_response: {{body: from-tls-upstream}}\n",
        listener(&dir.0, &[ca.leaf("up", &["up.example.com"], false)], "")
    ))
    .await;
    // The cluster trusts `bundle.pem`, which first holds a CA that did not sign the upstream.
    let bundle = dir.0.join("bundle.pem");
    std::fs::copy(other.pem_path("other"), &bundle).unwrap();
    let text = format!(
        "upstreams:\n  - name: up\n    endpoints: [\"{}\"]\n    health: {{passive: {{consecutive_failures: 0}}}}\n    tls: {{ca: {}, server_name: up.example.com}}\nroutes:\n  - name: r\n    upstream: up\n",
        up.addr,
        bundle.display()
    );
    let gw = TestGateway::start(&text).await;
    assert_eq!(get(&gw.url("/")).await.0, 502);
    // The same config text, a new bundle: the reload must not keep the old cluster.
    std::fs::copy(ca.pem_path("ca"), &bundle).unwrap();
    let full = format!(
        "listeners:\n  - name: main\n    address: 127.0.0.1:0\nadmin:\n  address: 127.0.0.1:0\nserver:\n  access_log: {{enabled: false}}\n{text}"
    );
    let report = gw.gw.as_ref().unwrap().reload_from(&full).await.unwrap();
    assert!(report.message.contains("(0 kept"), "{}", report.message);
    let (s, _, body) = get(&gw.url("/")).await;
    assert_eq!((s, body.as_str()), (200, "from-tls-upstream"));
    // Unchanged files and text: the cluster (and its pool) is taken over.
    let report = gw.gw.as_ref().unwrap().reload_from(&full).await.unwrap();
    assert!(report.message.contains("(1 kept"), "{}", report.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_while_a_connection_stays_open() {
    let dir = TempDir::new("tls-reload");
    let ca = Ca::new(&dir.0, "ca");
    let (c, k) = ca.leaf("server", &["first.example.com", "127.0.0.1"], false);
    let _ = &c;
    let text = format!(
        "{}routes:\n  - name: r\n    direct_response: {{body: ok}}\n",
        listener(&dir.0, &[(c.clone(), k.clone())], "")
    );
    let gw = TestGateway::start(&text).await;
    let trust = client(&ca.pem_path("ca"), None, &[]);
    let mut open = connect(gw.addr, trust.clone(), "first.example.com")
        .await
        .unwrap();
    assert_eq!(status_of(&get_on(&mut open, "/").await), 200);
    // New files under the same paths, then a reload (the same config text).
    ca.leaf("server", &["second.example.com", "127.0.0.1"], false);
    let full = format!(
        "admin:\n  address: 127.0.0.1:0\nserver:\n  access_log: {{enabled: false}}\n{text}"
    );
    gw.gw
        .as_ref()
        .unwrap()
        .reload_from(&full)
        .await
        .expect("reload");
    // New connections get the new certificate...
    assert!(connect(gw.addr, trust.clone(), "second.example.com")
        .await
        .is_ok());
    assert!(connect(gw.addr, trust.clone(), "first.example.com")
        .await
        .is_err());
    // ...and the connection opened before the reload still serves.
    assert_eq!(status_of(&get_on(&mut open, "/").await), 200);
    // A key that does not match its certificate is refused, naming the file; nothing changes.
    let (_, other_key) = ca.leaf("unrelated", &["x.example.com"], false);
    std::fs::copy(&other_key, &k).unwrap();
    let Err(err) = gw.gw.as_ref().unwrap().reload_from(&full).await else {
        panic!("a mismatched key is refused");
    };
    let msg = err.to_string();
    assert!(
        msg.contains("certificates[0].key") && msg.contains("server.key"),
        "{msg}"
    );
    assert!(connect(gw.addr, trust, "second.example.com").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_match_on_the_verified_client_certificate() {
    let dir = TempDir::new("tls-match");
    let ca = Ca::new(&dir.0, "ca");
    let clients = Ca::new(&dir.0, "clients");
    let server = ca.leaf("server", &["127.0.0.1"], false);
    let (ac, ak) = clients.leaf("admin-client", &["admin.clients.example.com"], false);
    let (uc, uk) = clients.leaf("user-client", &["user.clients.example.com"], false);
    let gw = TestGateway::start(&format!(
        "{}routes:\n\
         \x20 - name: admins\n    match: {{client_cert: [{{name: san, exact: \"DNS:admin.clients.example.com\"}}]}}\n    direct_response: {{body: admin}}\n\
         \x20 - name: by-subject\n    match: {{client_cert: [{{name: subject, regex: \"CN=user-.*\"}}]}}\n    direct_response: {{body: user}}\n\
         \x20 - name: anonymous\n    match: {{client_cert: [{{name: subject, present: false}}]}}\n    direct_response: {{body: anonymous}}\n",
        listener(
            &dir.0,
            &[server],
            &format!("      client_auth: {{ca: {}, required: false}}\n", clients.pem_path("clients").display())
        )
    ))
    .await;
    for (cert, want) in [
        (Some((&ac, &ak)), "admin"),
        (Some((&uc, &uk)), "user"),
        (None, "anonymous"),
    ] {
        let cfg = client(
            &ca.pem_path("ca"),
            cert.map(|(c, k)| (c.as_path(), k.as_path())),
            &[],
        );
        let mut s = connect(gw.addr, cfg, "127.0.0.1").await.unwrap();
        let resp = get_on(&mut s, "/").await;
        assert!(resp.ends_with(want), "{want}: {resp}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificate_files_are_picked_up_without_a_command() {
    let dir = TempDir::new("tls-watch");
    let ca = Ca::new(&dir.0, "ca");
    let (c, k) = ca.leaf("server", &["old.example.com", "127.0.0.1"], false);
    let gw = GatewayProcess::start_full(
        "routes:\n  - name: r\n    direct_response: {body: ok}\n",
        &format!(
            "    tls:\n      certificates: [{{cert: {}, key: {}}}]\n",
            c.display(),
            k.display()
        ),
        "warn",
    )
    .await;
    let trust = client(&ca.pem_path("ca"), None, &[]);
    let mut open = connect(gw.addr, trust.clone(), "old.example.com")
        .await
        .unwrap();
    assert_eq!(status_of(&get_on(&mut open, "/").await), 200);
    // The certificate is renewed on disk (as a certificate manager would): the gateway notices.
    ca.leaf("server", &["new.example.com", "127.0.0.1"], false);
    let renewed = eventually(Duration::from_secs(30), || {
        let trust = trust.clone();
        async move { connect(gw.addr, trust, "new.example.com").await.is_ok() }
    })
    .await;
    assert!(renewed, "new connections get the renewed certificate");
    assert_eq!(
        status_of(&get_on(&mut open, "/").await),
        200,
        "the old connection still serves"
    );
}

// TLS facts reach filters: the WIT world's `facts.get().tls` and the Proxy-Wasm `connection.*`
// properties, over a listener with optional client certificates (and absent over plain HTTP).

/// Writes a client certificate for `CN=<file>, O=Example Clients` with a DNS, a URI and an email
/// subject alternative name; returns the certificate and key paths.
fn client_leaf(ca: &Ca, file: &str) -> (PathBuf, PathBuf) {
    use rcgen::SanType;
    let mut p = CertificateParams::new(vec![format!("{file}.example.com")]).unwrap();
    p.subject_alt_names.push(SanType::URI(
        format!("spiffe://example.org/{file}").try_into().unwrap(),
    ));
    p.subject_alt_names.push(SanType::Rfc822Name(
        format!("{file}@example.com").try_into().unwrap(),
    ));
    p.distinguished_name.push(DnType::CommonName, file);
    p.distinguished_name
        .push(DnType::OrganizationName, "Example Clients");
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let (c, k) = (
        ca.dir.join(format!("{file}.crt")),
        ca.dir.join(format!("{file}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// A gateway with a TLS listener `main` (certificate for `gw.example.com`, client certificates
/// optional) and a plain listener `plain`; `/wit/...` runs the component kitchen sink and `/pw/...` the
/// Proxy-Wasm one, both forwarding to `up`.
struct FactsSetup {
    _dir: TempDir,
    ca: Ca,
    clients: Ca,
    up: MockUpstream,
    gw: TestGateway,
}

async fn facts_setup(tag: &str) -> FactsSetup {
    let dir = TempDir::new(tag);
    let ca = Ca::new(&dir.0, "ca");
    let clients = Ca::new(&dir.0, "clients");
    let (sc, sk) = ca.leaf("server", &["gw.example.com"], false);
    let up = MockUpstream::start("up").await;
    let component = &xtask::component_fixtures()
        .unwrap_or_else(|e| panic!("{e}"))
        .kitchen;
    let proxy_wasm = &xtask::proxy_wasm_fixtures()
        .unwrap_or_else(|e| panic!("{e}"))
        .kitchen;
    let gw = TestGateway::start(&format!(
        "listeners:\n  - name: main\n    address: 127.0.0.1:0\n    tls:\n      certificates: [{{cert: {}, key: {}}}]\n      client_auth: {{ca: {}, required: false}}\n  - name: plain\n    address: 127.0.0.1:0\n\
         plugins:\n  - name: wit\n    path: {}\n  - name: pw\n    path: {}\n\
         upstreams:\n  - name: up\n    endpoints: [\"{}\"]\n\
         routes:\n\
         \x20 - name: wit\n    match: {{path: {{prefix: /wit/}}}}\n    upstream: up\n    filters: [{{plugin: wit}}]\n\
         \x20 - name: pw\n    match: {{path: {{prefix: /pw/}}}}\n    upstream: up\n    filters: [{{plugin: pw}}]\n",
        sc.display(),
        sk.display(),
        clients.pem_path("clients").display(),
        component.display(),
        proxy_wasm.display(),
        up.addr
    ))
    .await;
    FactsSetup {
        _dir: dir,
        ca,
        clients,
        up,
        gw,
    }
}

impl FactsSetup {
    /// A client trusting the server's CA, with the client certificate `cert` if given.
    fn client(
        &self,
        cert: Option<&(PathBuf, PathBuf)>,
        alpn: &[&[u8]],
    ) -> Arc<rustls::ClientConfig> {
        client(
            &self.ca.pem_path("ca"),
            cert.map(|(c, k)| (c.as_path(), k.as_path())),
            alpn,
        )
    }

    /// GET `path` with `x-test: test` over a new HTTP/1.1 connection to `gw.example.com` with
    /// `cfg`; returns the headers the upstream saw.
    async fn headers_seen(
        &self,
        cfg: Arc<rustls::ClientConfig>,
        path: &str,
        test: &str,
    ) -> http::HeaderMap {
        let mut s = connect(self.gw.addr, cfg, "gw.example.com").await.unwrap();
        let hits = self.up.hits();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: gw.example.com\r\nx-test: {test}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut resp = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut resp)).await;
        let resp = String::from_utf8_lossy(&resp).into_owned();
        assert_eq!(status_of(&resp), 200, "{resp}");
        assert_eq!(self.up.hits(), hits + 1);
        self.up.last().headers
    }
}

fn h(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_else(|| "<absent>".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_filters_see_the_tls_facts_of_the_connection() {
    let t = facts_setup("tls-facts-wit").await;
    let cert = client_leaf(&t.clients, "client-1");
    let seen = t
        .headers_seen(t.client(Some(&cert), &[b"http/1.1"]), "/wit/x", "facts")
        .await;
    assert_eq!(h(&seen, "x-scheme"), "https");
    assert_eq!(h(&seen, "x-tls"), "true");
    assert_eq!(h(&seen, "x-tls-server-name"), "gw.example.com");
    assert_eq!(h(&seen, "x-tls-alpn"), "http/1.1");
    assert_eq!(h(&seen, "x-tls-version"), "TLSv1.3");
    assert_eq!(h(&seen, "x-tls-client-cert"), "true");
    assert_eq!(h(&seen, "x-tls-subject"), "CN=client-1, O=Example Clients");
    assert_eq!(
        h(&seen, "x-tls-sans"),
        "DNS:client-1.example.com,URI:spiffe://example.org/client-1,email:client-1@example.com"
    );
    // Without a client certificate (optional here) and without ALPN.
    let seen = t.headers_seen(t.client(None, &[]), "/wit/x", "facts").await;
    assert_eq!(h(&seen, "x-tls"), "true");
    assert_eq!(h(&seen, "x-tls-server-name"), "gw.example.com");
    assert_eq!(h(&seen, "x-tls-alpn"), "");
    assert_eq!(h(&seen, "x-tls-client-cert"), "false");
    assert_eq!(h(&seen, "x-tls-subject"), "<absent>");
    // HTTP/2 negotiated by ALPN.
    let s = connect(
        t.gw.addr,
        t.client(Some(&cert), &[b"h2", b"http/1.1"]),
        "gw.example.com",
    )
    .await
    .unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(s),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            http::Request::get("https://gw.example.com/wit/x")
                .header("x-test", "facts")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = t.up.last().headers;
    assert_eq!(h(&seen, "x-protocol"), "2");
    assert_eq!(h(&seen, "x-tls-alpn"), "h2");
    assert_eq!(h(&seen, "x-tls-subject"), "CN=client-1, O=Example Clients");
    // Plain HTTP: no TLS facts.
    let plain = t.gw.gw.as_ref().unwrap().addr("plain").unwrap();
    let (s, _, _) = get_with(&format!("http://{plain}/wit/x"), &[("x-test", "facts")]).await;
    assert_eq!(s, 200);
    let seen = t.up.last().headers;
    assert_eq!(h(&seen, "x-scheme"), "http");
    assert_eq!(h(&seen, "x-tls"), "false");
    assert_eq!(h(&seen, "x-tls-version"), "<absent>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_wasm_filters_read_the_tls_connection_properties() {
    let t = facts_setup("tls-facts-pw").await;
    let cert = client_leaf(&t.clients, "client-2");
    let seen = t
        .headers_seen(t.client(Some(&cert), &[b"http/1.1"]), "/pw/x", "tls-props")
        .await;
    for (name, want) in [
        ("mtls", "true"),
        ("tls_version", "TLSv1.3"),
        ("requested_server_name", "gw.example.com"),
        ("alpn", "http/1.1"),
        ("subject_peer_certificate", "CN=client-2, O=Example Clients"),
        ("dns_san_peer_certificate", "client-2.example.com"),
        ("uri_san_peer_certificate", "spiffe://example.org/client-2"),
    ] {
        assert_eq!(
            h(&seen, &format!("x-prop-connection-{name}")),
            want,
            "{name}"
        );
    }
    // TLS without a client certificate: not mutual, no peer certificate properties.
    let seen = t
        .headers_seen(t.client(None, &[]), "/pw/x", "tls-props")
        .await;
    for (name, want) in [
        ("mtls", "false"),
        ("tls_version", "TLSv1.3"),
        ("requested_server_name", "gw.example.com"),
        ("alpn", "<none>"),
        ("subject_peer_certificate", "<none>"),
        ("dns_san_peer_certificate", "<none>"),
        ("uri_san_peer_certificate", "<none>"),
    ] {
        assert_eq!(
            h(&seen, &format!("x-prop-connection-{name}")),
            want,
            "{name}"
        );
    }
    // Plain HTTP: no TLS at all.
    let plain = t.gw.gw.as_ref().unwrap().addr("plain").unwrap();
    let (s, _, _) = get_with(&format!("http://{plain}/pw/x"), &[("x-test", "tls-props")]).await;
    assert_eq!(s, 200);
    let seen = t.up.last().headers;
    assert_eq!(h(&seen, "x-prop-connection-mtls"), "false");
    for name in [
        "tls_version",
        "requested_server_name",
        "subject_peer_certificate",
    ] {
        assert_eq!(
            h(&seen, &format!("x-prop-connection-{name}")),
            "<none>",
            "{name}"
        );
    }
}
