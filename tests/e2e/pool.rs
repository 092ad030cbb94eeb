//! The upstream connection pool through the real gateway: keep-alive reuse, connections the upstream
//! closed, `Connection: close`, abandoned response bodies, parallel requests and the idle bound, the
//! idle timeout, and one shared HTTP/2 connection.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One upstream `up` at `addr` with extra upstream lines (indented 4 spaces), and one catch-all route
/// `r` to it.
fn one_route(addr: SocketAddr, upstream_extra: &str) -> String {
    GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(addr).lines(upstream_extra))
        .route(Route::new("r").upstream("up"))
        .yaml()
}

/// Counts of a test upstream's connections.
#[derive(Default)]
struct Conns {
    accepted: AtomicUsize,
    open: AtomicUsize,
}

/// A raw HTTP/1.1 upstream: for each request head it writes `response(connection number)`, then
/// closes the connection if `close_after` says so. Connections are numbered from 1.
async fn raw_upstream(
    response: fn(usize) -> String,
    close_after: bool,
) -> (SocketAddr, Arc<Conns>, tokio::task::JoinHandle<()>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let conns = Arc::new(Conns::default());
    let c = conns.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = tcp.accept().await else {
                continue;
            };
            let n = c.accepted.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..i + 4);
                        if s.write_all(response(n).as_bytes()).await.is_err() {
                            return;
                        }
                        if close_after {
                            let _ = s.shutdown().await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, conns, task)
}

fn keep_alive_answer(n: usize) -> String {
    let body = format!("conn {n}");
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn close_answer(n: usize) -> String {
    let body = format!("conn {n}");
    format!(
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// An HTTP/1.1 upstream that waits `delay`, answers `path` and keeps count of open connections.
async fn counting_upstream(
    delay: Duration,
) -> (SocketAddr, Arc<Conns>, tokio::task::JoinHandle<()>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let conns = Arc::new(Conns::default());
    let c = conns.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = tcp.accept().await else {
                continue;
            };
            c.accepted.fetch_add(1, Ordering::SeqCst);
            c.open.fetch_add(1, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                let svc = service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        tokio::time::sleep(delay).await;
                        let path = req.uri().path().to_owned();
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(path))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
                c.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, conns, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_reuse_one_upstream_connection() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(up.addr, "")).await;
    for i in 0..30 {
        let r = get(&gw.url(&format!("/n{i}"))).await;
        assert_eq!(
            (r.0, r.2.as_str()),
            (200, format!("mock up /n{i}\n").as_str())
        );
    }
    // Streamed bodies both ways, and an empty answer, end their exchange on the same connection too.
    let r = get(&gw.url("/foo/50")).await;
    assert_eq!(r.2.lines().count(), 50, "{}", r.2);
    let body = "x".repeat(100_000);
    let r = request(
        http::Request::post(gw.url("/echo"))
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap(),
    )
    .await;
    assert_eq!((r.0, r.2.len()), (200, body.len()));
    let r = get(&gw.url("/status/204")).await;
    assert_eq!(r.0, 204);
    let r = get(&gw.url("/last")).await;
    assert_eq!(r.2, "mock up /last\n");
    assert_eq!(up.hits(), 34);
    assert_eq!(
        up.connections(),
        1,
        "every exchange on one pooled connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_connection_the_upstream_closed_does_not_fail_the_next_request() {
    // The upstream answers as keep-alive (no `Connection: close`), then closes the socket.
    let (addr, conns, _task) = raw_upstream(keep_alive_answer, true).await;
    let gw = TestGateway::start(&one_route(addr, "")).await;
    for i in 1..=10 {
        let r = get(&gw.url("/")).await;
        assert_eq!(
            (r.0, r.2.as_str()),
            (200, format!("conn {i}").as_str()),
            "{r:?}"
        );
        // Time for the gateway to see the upstream's FIN (the race with a request written at the
        // same moment is inherent to HTTP/1 keep-alive).
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(conns.accepted.load(Ordering::SeqCst), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_answers_are_not_pooled() {
    // The upstream says `Connection: close` but leaves the socket open: the gateway must not send
    // another request on it.
    let (addr, conns, _task) = raw_upstream(close_answer, false).await;
    let gw = TestGateway::start(&one_route(addr, "")).await;
    for i in 1..=5 {
        let r = get(&gw.url("/")).await;
        assert_eq!(
            (r.0, r.2.as_str()),
            (200, format!("conn {i}").as_str()),
            "{r:?}"
        );
    }
    assert_eq!(conns.accepted.load(Ordering::SeqCst), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_response_body_does_not_return_its_connection() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(up.addr, "")).await;
    assert_eq!(get(&gw.url("/first")).await.0, 200);
    assert_eq!(up.connections(), 1);

    // 200 chunks of 64 KiB; the client reads a little and goes away.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /stream/200 HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let mut got = 0;
    let mut buf = vec![0u8; 65536];
    while got < 200_000 {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("data in time")
            .unwrap();
        assert!(n > 0, "the stream ended early");
        got += n;
    }
    drop(s);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The cut exchange's connection is gone; the next ones are whole and correct, on one new
    // connection.
    for i in 0..5 {
        let r = get(&gw.url(&format!("/foo/{}", 3 + i))).await;
        let want: String = (0..3 + i).map(|k| format!("foo {k}\n")).collect();
        assert_eq!((r.0, r.2.as_str()), (200, want.as_str()));
    }
    assert_eq!(
        up.connections(),
        2,
        "the abandoned connection was not reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_requests_are_answered_and_idle_connections_stay_bounded() {
    let (addr, conns, _task) = counting_upstream(Duration::from_millis(400)).await;
    let gw = TestGateway::start(&one_route(
        addr,
        "    pool: {max_idle_per_endpoint: 4, idle_timeout: 30s}\n",
    ))
    .await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let url = gw.url(&format!("/p{i}"));
            tokio::spawn(async move { (i, get(&url).await) })
        })
        .collect();
    for t in tasks {
        let (i, r) = t.await.unwrap();
        assert_eq!((r.0, r.2), (200, format!("/p{i}")));
    }
    let opened = conns.accepted.load(Ordering::SeqCst);
    assert!(
        (5..=16).contains(&opened),
        "the requests overlapped: {opened}"
    );
    // All but four are closed; four wait for reuse.
    let bounded = eventually(Duration::from_secs(3), || async {
        conns.open.load(Ordering::SeqCst) == 4
    })
    .await;
    assert!(bounded, "open: {}", conns.open.load(Ordering::SeqCst));
    for i in 0..8 {
        let r = get(&gw.url(&format!("/s{i}"))).await;
        assert_eq!(r.2, format!("/s{i}"));
    }
    assert_eq!(
        conns.accepted.load(Ordering::SeqCst),
        opened,
        "sequential requests use the pooled connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let (addr, conns, _task) = counting_upstream(Duration::ZERO).await;
    let gw = TestGateway::start(&one_route(addr, "    pool: {idle_timeout: 1s}\n")).await;
    assert_eq!(get(&gw.url("/a")).await.2, "/a");
    assert_eq!(get(&gw.url("/b")).await.2, "/b");
    assert_eq!(conns.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(conns.open.load(Ordering::SeqCst), 1);
    // Nothing uses it: the gateway closes it by itself.
    let closed = eventually(Duration::from_secs(5), || async {
        conns.open.load(Ordering::SeqCst) == 0
    })
    .await;
    assert!(closed, "the idle connection outlived its timeout");
    assert_eq!(get(&gw.url("/c")).await.2, "/c");
    assert_eq!(conns.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upstream_requests_share_one_connection() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(up.addr, "    protocol: http2\n")).await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let url = gw.url(&format!("/delay/{}", 200 + i));
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!((r.0, r.2.as_str()), (200, "delayed\n"));
    }
    for i in 0..10 {
        let r = get(&gw.url(&format!("/q{i}"))).await;
        assert_eq!(r.2, format!("mock up /q{i}\n"));
    }
    assert_eq!(up.last().version, http::Version::HTTP_2);
    assert!(up.max_in_flight() > 1, "the streams overlapped");
    assert_eq!(up.connections(), 1, "one multiplexed connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_the_upstream_closed_is_replaced() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    // Each connection serves one request, then the server shuts it down (GOAWAY and close).
    let _task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = tcp.accept().await else {
                continue;
            };
            let n = a.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
                let svc = service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let _ = tx.try_send(());
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(format!(
                            "conn {n}"
                        )))))
                    }
                });
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = rx.recv() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            });
        }
    });
    let gw = TestGateway::start(&one_route(addr, "    protocol: http2\n")).await;
    for i in 1..=4 {
        let r = get(&gw.url("/")).await;
        assert_eq!(
            (r.0, r.2.as_str()),
            (200, format!("conn {i}").as_str()),
            "{r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_body_is_released_only_after_its_end_so_requests_do_not_mix() {
    // Interleave slow streamed answers and quick ones from several clients: each client must get
    // exactly its own body, whichever pooled connection carried it.
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&one_route(up.addr, "")).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let gw_url = gw.url("");
            tokio::spawn(async move {
                for k in 0..10 {
                    let n = 1 + (i + k) % 7;
                    let r = get(&format!("{gw_url}/foo/{n}")).await;
                    let want: String = (0..n).map(|j| format!("foo {j}\n")).collect();
                    assert_eq!((r.0, r.2), (200, want));
                    let r = get(&format!("{gw_url}/c{i}-{k}")).await;
                    assert_eq!(r.2, format!("mock up /c{i}-{k}\n"));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(up.hits(), 160);
    // Eight clients at a time: a handful of connections, not one per request.
    assert!(up.connections() < 40, "connections: {}", up.connections());
}

/// A CA certificate (written to `dir/ca.pem`) and a leaf for `name` signed by it (`dir/up.crt`,
/// `dir/up.key`).
fn ca_and_leaf(dir: &std::path::Path, name: &str) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "pool-ca");
    let ca_key = KeyPair::generate().unwrap();
    let ca = p.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let mut p = CertificateParams::new(vec![name.to_owned()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("up.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("up.key"), key.serialize_pem()).unwrap();
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstream_connections_are_reused_over_http1_and_http2() {
    let dir = TempDir::new("pool-tls");
    ca_and_leaf(&dir.0, "up.example.com");
    // The upstream is another gateway terminating TLS (ALPN h2 and http/1.1); its metrics count the
    // connections it accepted.
    let up = TestGateway::start(&format!(
        "listeners:\n  - name: main\n    address: 127.0.0.1:0\n    tls:\n      certificates:\n        - {{cert: {}, key: {}}}\nroutes:\n  - name: r\n    direct_response: {{body: from-tls-upstream}}\n",
        dir.0.join("up.crt").display(),
        dir.0.join("up.key").display()
    ))
    .await;
    let ca = dir.0.join("ca.pem");
    let mut y = String::from("upstreams:\n");
    for (name, protocol) in [("h1", "http1"), ("h2", "http2")] {
        y += &format!(
            "  - name: {name}\n    endpoints: [\"{}\"]\n    protocol: {protocol}\n    tls: {{ca: {}, server_name: up.example.com}}\n",
            up.addr,
            ca.display()
        );
    }
    y += "routes:\n";
    for name in ["h1", "h2"] {
        y += &format!(
            "  - name: {name}\n    match: {{path: {{prefix: /{name}}}}}\n    upstream: {name}\n"
        );
    }
    let gw = TestGateway::start(&y).await;
    for name in ["h1", "h2"] {
        let before = counter(&up.metrics().await, "gateway_connections_total");
        for i in 0..10 {
            let r = get(&gw.url(&format!("/{name}/{i}"))).await;
            assert_eq!((r.0, r.2.as_str()), (200, "from-tls-upstream"), "{name}");
        }
        let after = counter(&up.metrics().await, "gateway_connections_total");
        // The admin listener's own connection for `metrics()` is not counted among listener ones.
        assert_eq!(
            after - before,
            1,
            "{name}: one TLS connection for ten requests"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_idle_zero_turns_pooling_off() {
    for protocol in ["http1", "http2"] {
        let up = MockUpstream::start("up").await;
        let gw = TestGateway::start(&one_route(
            up.addr,
            &format!("    protocol: {protocol}\n    pool: {{max_idle_per_endpoint: 0}}\n"),
        ))
        .await;
        for i in 0..4 {
            let r = get(&gw.url(&format!("/z{i}"))).await;
            assert_eq!(r.2, format!("mock up /z{i}\n"), "{protocol}");
        }
        assert_eq!(up.connections(), 4, "{protocol}: a connection per request");
    }
}
