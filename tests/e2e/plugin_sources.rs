//! Plugins fetched from `https://` URLs pinned by sha256: fetched once from a local HTTPS server (a test
//! CA made at test time), verified, cached and never fetched again (a restart works with the server
//! gone); a sha256 mismatch, an unreachable server, an error answer or a URL without sha256 fail the
//! reload (changing nothing) or the start, with the field named.

use crate::harness::*;
use crate::reload::{sha256_hex, versioned_body, versioned_builds};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// An HTTPS server on 127.0.0.1 with a certificate for `localhost` from a fresh test CA, serving
/// files by path and counting the requests (also serves the function tests' components).
pub(crate) struct WasmServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    pub(crate) ca: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl WasmServer {
    pub(crate) async fn start(dir: &Path, files: Vec<(&'static str, Vec<u8>)>) -> WasmServer {
        let (ca, tls) = test_ca_server(dir, "plugin-ca.pem", "localhost");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let files = Arc::new(files);
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = tcp.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let files = files.clone();
                let hits = counter.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                        hits.fetch_add(1, Ordering::SeqCst);
                        let found = files
                            .iter()
                            .find(|(p, _)| *p == req.uri().path())
                            .map(|(_, b)| b.clone());
                        async move {
                            let resp = match found {
                                Some(b) => http::Response::new(http_body_util::Full::new(
                                    bytes::Bytes::from(b),
                                )),
                                None => http::Response::builder()
                                    .status(404)
                                    .body(http_body_util::Full::new(bytes::Bytes::from_static(
                                        b"not found",
                                    )))
                                    .unwrap(),
                            };
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        WasmServer {
            addr,
            hits,
            ca,
            task,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for WasmServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A config with plugin `ver` fetched from `url` (pinned to `sha`, verified with `ca`) on route `r`,
/// its compiled code and fetched file kept in `cache`.
fn url_config(cache: &Path, url: &str, sha: &str, ca: &Path, label: &str) -> String {
    format!(
        "server:\n  access_log: {{enabled: false}}\n  cache_dir: {}\nplugins:\n  - name: ver\n    url: {url}\n    sha256: {sha}\n    ca: {}\nroutes:\n  - name: r\n    filters: [{{plugin: ver, config: {label}}}]\n    direct_response: {{}}\n",
        cache.display(),
        ca.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_plugin_is_fetched_once_verified_cached_and_works_offline_after() {
    let (v1, _) = versioned_builds();
    let bytes = std::fs::read(v1).unwrap();
    let sha = sha256_hex(&bytes);
    let dir = TempDir::new("url");
    let server = WasmServer::start(&dir.0, vec![("/v1.wasm", bytes.clone())]).await;
    let cache = dir.0.join("cache");
    let yaml = url_config(&cache, &server.url("/v1.wasm"), &sha, &server.ca, "one");
    let fg = FileGateway::start(&yaml).await;
    let gw = &fg.gw;
    assert_eq!(get(&gw.url("/")).await.2, versioned_body("v1", "one", 1));
    assert_eq!(server.hits(), 1, "fetched once");
    let kept = cache.join("sources").join(format!("{sha}.wasm"));
    assert_eq!(std::fs::read(&kept).unwrap(), bytes, "kept by its sha256");

    let (s, _, body) = admin_call(gw.admin, "GET", "/plugins", "").await;
    assert_eq!(s, 200);
    let p = &json(&body)["plugins"][0];
    assert_eq!(p["source"]["url"], server.url("/v1.wasm"));
    assert_eq!(p["sha256"], sha);

    // A reload with another route config keeps the plugin: nothing is fetched.
    fg.write(&url_config(
        &cache,
        &server.url("/v1.wasm"),
        &sha,
        &server.ca,
        "two",
    ));
    let (s, _, body) = admin_call(gw.admin, "POST", "/reload", "").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(get(&gw.url("/")).await.2, versioned_body("v1", "two", 1));
    assert_eq!(server.hits(), 1);
    drop(fg);

    // With the server gone, a new gateway starts from the cached file.
    drop(server);
    let again = FileGateway::start(&yaml).await;
    assert_eq!(
        get(&again.gw.url("/")).await.2,
        versioned_body("v1", "one", 1)
    );

    // A corrupt cached file is not used: it is fetched again (and here the server is gone).
    std::fs::write(&kept, b"garbage").unwrap();
    let e = TestGateway::try_start(&yaml)
        .await
        .err()
        .expect("no server to fetch from");
    let msg = e.to_string();
    assert!(
        msg.contains("plugins[0].url") && msg.contains("cannot fetch"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha256_mismatch_unreachable_url_and_error_answers_fail_the_reload_and_the_start() {
    let (v1, v2) = versioned_builds();
    let (b1, b2) = (std::fs::read(v1).unwrap(), std::fs::read(v2).unwrap());
    let (sha1, sha2) = (sha256_hex(&b1), sha256_hex(&b2));
    let dir = TempDir::new("url-errors");
    let big = vec![0u8; gateway::plugin_source::MAX_FETCH_BYTES + 1];
    let server = WasmServer::start(
        &dir.0,
        vec![
            ("/v1.wasm", b1.clone()),
            ("/v2.wasm", b2),
            ("/big.wasm", big),
        ],
    )
    .await;
    let cache = dir.0.join("cache");
    let good = url_config(&cache, &server.url("/v1.wasm"), &sha1, &server.ca, "one");
    let fg = FileGateway::start(&good).await;
    let gw = &fg.gw;
    let config_before = admin_call(gw.admin, "GET", "/config", "").await.2;
    let closed = free_port();
    let other_ca = dir.0.join("other-ca.pem");
    let _ = test_ca_server(&dir.0, "other-ca.pem", "localhost");
    let cases = [
        (
            url_config(&cache, &server.url("/v1.wasm"), &sha2, &server.ca, "x"),
            "plugins[0].sha256",
            format!(
                "sha256 mismatch: {} sent a file with sha256 {sha1}, the config pins {sha2}",
                server.url("/v1.wasm")
            ),
        ),
        (
            url_config(
                &cache,
                &format!("https://localhost:{closed}/v2.wasm"),
                &sha2,
                &server.ca,
                "x",
            ),
            "plugins[0].url",
            format!("cannot fetch https://localhost:{closed}/v2.wasm"),
        ),
        (
            url_config(&cache, &server.url("/missing.wasm"), &sha2, &server.ca, "x"),
            "plugins[0].url",
            "the server answered 404".to_string(),
        ),
        (
            url_config(&cache, &server.url("/big.wasm"), &sha2, &server.ca, "x"),
            "plugins[0].url",
            format!(
                "the file is larger than {} bytes",
                gateway::plugin_source::MAX_FETCH_BYTES
            ),
        ),
        (
            url_config(&cache, &server.url("/v2.wasm"), &sha2, &other_ca, "x"),
            "plugins[0].url",
            "certificate".to_string(),
        ),
    ];
    for (yaml, field, want) in &cases {
        fg.write(yaml);
        let (s, _, body) = admin_call(gw.admin, "POST", "/reload", "").await;
        assert_eq!(s, 400, "{body}");
        let e = json(&body);
        assert_eq!(e["field"], *field, "{body}");
        assert!(e["line"].as_u64().is_some(), "{body}");
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains(want.as_str()), "{msg}\nwant: {want}");
        assert_eq!(get(&gw.url("/")).await.2, versioned_body("v1", "one", 1));
        assert_eq!(
            admin_call(gw.admin, "GET", "/config", "").await.2,
            config_before
        );
        // The same config fails a start, with the same field named.
        let start = TestGateway::try_start(yaml).await.err().expect("refused");
        let text = start.to_string();
        assert!(
            text.contains(field) && text.contains(want.as_str()),
            "{text}"
        );
    }
    let m = gw.metrics().await;
    assert!(
        m.contains(&format!(
            "gateway_reloads_total{{result=\"error\"}} {}",
            cases.len()
        )),
        "{m}"
    );
    assert!(
        !cache.join("sources").join(format!("{sha2}.wasm")).exists(),
        "nothing unverified is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_without_sha256_is_a_config_error_with_file_line_and_field() {
    let yaml = "plugins:\n  - name: ver\n    url: https://localhost:1/p.wasm\nroutes:\n  - name: r\n    direct_response: {}\n";
    let e = TestGateway::try_start(yaml).await.err().expect("refused");
    let text = e.to_string();
    let line = config_text(yaml)
        .lines()
        .position(|l| l.trim_start().starts_with("url:"))
        .unwrap()
        + 1;
    assert!(
        text.starts_with(&format!("test.yaml:{line}:5: plugins[0].url: "))
            && text.contains("needs `sha256`"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_with_sha256_is_checked() {
    let (v1, v2) = versioned_builds();
    let sha1 = sha256_hex(&std::fs::read(v1).unwrap());
    let sha2 = sha256_hex(&std::fs::read(v2).unwrap());
    let yaml = |path: &Path, sha: &str| {
        format!(
            "plugins:\n  - name: ver\n    path: {}\n    sha256: {sha}\nroutes:\n  - name: r\n    filters: [{{plugin: ver, config: r}}]\n    direct_response: {{}}\n",
            path.display()
        )
    };
    let gw = TestGateway::start(&yaml(v1, &sha1.to_uppercase())).await;
    assert_eq!(get(&gw.url("/")).await.2, versioned_body("v1", "r", 1));
    let e = TestGateway::try_start(&yaml(v2, &sha1))
        .await
        .err()
        .expect("refused");
    let text = e.to_string();
    assert!(
        text.contains("plugins[0].sha256")
            && text.contains(&format!("has {sha2}, the config pins {sha1}")),
        "{text}"
    );
}
