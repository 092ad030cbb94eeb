//! The end-to-end harness: the real gateway on ephemeral ports (in-process or as its own process), and
//! clients that speak HTTP or raw bytes over real sockets. The mock upstream, `eventually` and the
//! config builder come from the support crate shared with `tests/wasm`.

#![allow(dead_code)]

use bytes::Bytes;
use gateway::{Config, Gateway, Source};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use gateway_test_support::{
    eventually, free_port, hv, metric, plugin_calls, values, GatewayConfig, MockUpstream, Plugin,
    Route, TempDir, Upstream,
};

/// A running gateway for one test.
pub struct TestGateway {
    pub gw: Option<Gateway>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

impl TestGateway {
    /// Starts a gateway from YAML. A config without a `listeners:` section gets one listener `main` on
    /// 127.0.0.1:0; the admin API always binds 127.0.0.1:0 unless the YAML sets it.
    pub async fn start(yaml: &str) -> TestGateway {
        Self::try_start(yaml)
            .await
            .unwrap_or_else(|e| panic!("gateway did not start: {e}\n{yaml}"))
    }

    /// Like `start`, returning why the gateway did not start.
    pub async fn try_start(yaml: &str) -> Result<TestGateway, gateway::server::StartError> {
        let text = config_text(yaml);
        let path = Path::new("test.yaml");
        let cfg = Config::parse(path, &text)?;
        let src = Source {
            path: path.into(),
            text: Some(text.clone()),
        };
        Self::from_config(cfg, src).await
    }

    /// Starts a gateway from a parsed config; its address is that of the first listener.
    async fn from_config(
        cfg: Config,
        src: Source,
    ) -> Result<TestGateway, gateway::server::StartError> {
        let first = cfg.listeners[0].name.clone();
        let gw = Gateway::start(cfg, src).await?;
        Ok(TestGateway {
            addr: gw.addr(&first).expect("listener"),
            admin: gw.admin_addr(),
            gw: Some(gw),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn metrics(&self) -> String {
        get(&format!("http://{}/metrics", self.admin)).await.2
    }

    pub async fn shutdown(mut self, drain: Duration) -> bool {
        self.gw.take().unwrap().shutdown(drain).await
    }
}

/// Parses a JSON body, or panics with the text.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A response as the tests look at it.
pub type Resp = (u16, http::HeaderMap, String);

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET a URL.
pub async fn get(url: &str) -> Resp {
    request(
        http::Request::get(url)
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
}

/// Sends a request with a fresh client.
pub async fn request(req: http::Request<Full<Bytes>>) -> Resp {
    request_via(&client(), req).await
}

/// Sends a request with `client` and collects the whole response.
pub async fn request_via<C>(
    client: &Client<C, Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> Resp
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("response in time")
        .expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// GET with extra headers.
pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = http::Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    request(b.body(Full::new(Bytes::new())).unwrap()).await
}

/// Writes `bytes` on a new connection and reads until the server closes or `wait` passes without data.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    read_all(&mut s, wait).await
}

/// Reads until EOF, or until `wait` passes without new data.
pub async fn read_all(s: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in raw response text (0 if there is none).
pub fn status_of(resp: &str) -> u16 {
    resp.strip_prefix("HTTP/1.1 ")
        .or_else(|| resp.strip_prefix("HTTP/1.0 "))
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Resident memory of a process in KiB, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The gateway binary started as its own process (for signals and memory figures).
pub struct GatewayProcess {
    pub child: std::process::Child,
    /// Lines the process wrote to stderr so far (read continuously, so the pipe never fills).
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: std::path::PathBuf,
    _dir: TempDir,
}

impl GatewayProcess {
    /// Writes `yaml` (which must not define listeners or admin: one listener `main` and the admin API
    /// are added on free ports) and starts `gateway run`, waiting until the admin API answers.
    pub async fn start(yaml: &str) -> GatewayProcess {
        Self::start_with_log(yaml, "warn").await
    }

    /// Like `start`, with `GATEWAY_LOG` set to `log`; stderr is piped for the test to read.
    pub async fn start_with_log(yaml: &str, log: &str) -> GatewayProcess {
        Self::start_full(yaml, "", log).await
    }

    /// Like `start`, with `listener_extra` (indented YAML lines) added to the listener `main`.
    pub async fn start_full(yaml: &str, listener_extra: &str, log: &str) -> GatewayProcess {
        let dir = TempDir::new("proc");
        let port = free_port();
        let admin_port = free_port();
        let text = process_config_text(port, listener_extra, admin_port, yaml);
        let config_path = dir.0.join("gateway.yaml");
        std::fs::write(&config_path, text).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["run", "--config"])
            .arg(&config_path)
            .env("GATEWAY_LOG", log)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the gateway binary");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(line);
            }
        });
        let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
        let ready = eventually(Duration::from_secs(20), || async move {
            TcpStream::connect(admin).await.is_ok()
        })
        .await;
        assert!(ready, "the gateway process did not start");
        GatewayProcess {
            child,
            log,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            admin,
            config_path,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit and returns its status.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let end = std::time::Instant::now() + within;
        while std::time::Instant::now() < end {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The error of a gateway that refuses to start with `yaml`.
pub async fn refused(yaml: &str) -> String {
    TestGateway::try_start(yaml)
        .await
        .err()
        .expect("refused")
        .to_string()
}

/// The 1-based line of `config_text(yaml)` (what a `TestGateway` reads) that ends with `end`.
pub fn line_ending(yaml: &str, end: &str) -> usize {
    config_text(yaml)
        .lines()
        .position(|l| l.ends_with(end))
        .unwrap_or_else(|| panic!("no line ends with {end:?}"))
        + 1
}

/// The config text `TestGateway::start` serves for `yaml`: one listener `main` on 127.0.0.1:0 unless the
/// YAML has listeners, the admin API on 127.0.0.1:0 unless it has `admin:`, no access log unless set.
/// Reloads of a `TestGateway` must send text built the same way, since listeners cannot change.
pub fn config_text(yaml: &str) -> String {
    let mut text = String::new();
    if !yaml.contains("listeners:") {
        text.push_str("listeners:\n  - name: main\n    address: 127.0.0.1:0\n");
    }
    if !yaml.contains("admin:") {
        text.push_str("admin:\n  address: 127.0.0.1:0\n");
    }
    if !yaml.contains("access_log") {
        text.push_str("server:\n  access_log: {enabled: false}\n");
    }
    text.push_str(yaml);
    text
}

/// Replaces a file in one step (write a sibling, rename), so that a watcher never reads half of it.
pub fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A request to the admin API with a method and a body.
pub async fn admin_call(admin: SocketAddr, method: &str, path: &str, body: &str) -> Resp {
    request(
        http::Request::builder()
            .method(method)
            .uri(format!("http://{admin}{path}"))
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap(),
    )
    .await
}

/// A gateway started in-process from a config file, so that `POST /reload` has a file to read.
pub struct FileGateway {
    pub gw: TestGateway,
    pub config_path: std::path::PathBuf,
    _dir: TempDir,
}

impl FileGateway {
    /// Writes `config_text(yaml)` to a file and starts the gateway from it (the file is not watched).
    pub async fn start(yaml: &str) -> FileGateway {
        let dir = TempDir::new("file");
        let config_path = dir.0.join("gateway.yaml");
        std::fs::write(&config_path, config_text(yaml)).unwrap();
        let (cfg, src) = Source::load(&config_path).unwrap();
        let gw = TestGateway::from_config(cfg, src)
            .await
            .unwrap_or_else(|e| panic!("gateway did not start: {e}\n{yaml}"));
        FileGateway {
            gw,
            config_path,
            _dir: dir,
        }
    }

    /// Replaces the config file with `config_text(yaml)`.
    pub fn write(&self, yaml: &str) {
        replace_file(&self.config_path, &config_text(yaml));
    }
}

impl GatewayProcess {
    /// Replaces the config file with `yaml` plus the listener and admin sections it was started with.
    pub fn write_config(&self, yaml: &str) {
        let text = process_config_text(self.addr.port(), "", self.admin.port(), yaml);
        replace_file(&self.config_path, &text);
    }
}

/// The config text of a `GatewayProcess`: `yaml` after one listener `main` on `port` (with
/// `listener_extra`, indented YAML lines) and the admin API on `admin_port`.
fn process_config_text(port: u16, listener_extra: &str, admin_port: u16, yaml: &str) -> String {
    format!(
        "listeners:\n  - name: main\n    address: 127.0.0.1:{port}\n{listener_extra}admin:\n  address: 127.0.0.1:{admin_port}\n{yaml}"
    )
}

/// A fresh test CA (its certificate written to `dir/<file>`) and a rustls server config with a
/// certificate for `name` signed by it: for test servers that speak TLS.
pub fn test_ca_server(
    dir: &Path,
    file: &str,
    name: &str,
) -> (std::path::PathBuf, rustls::ServerConfig) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = p.self_signed(&ca_key).unwrap();
    let ca_pem = dir.join(file);
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    let leaf = CertificateParams::new(vec![name.to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (ca_pem, config)
}
