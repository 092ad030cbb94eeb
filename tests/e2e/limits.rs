//! Every listener limit and the route body limit, each hit over real sockets.

use crate::harness::*;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const W: Duration = Duration::from_millis(1500);

/// Whether a new connection gets a 200 within `within`.
async fn serves_within(addr: std::net::SocketAddr, within: Duration) -> bool {
    eventually(within, || async {
        let ask = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
        status_of(&raw(addr, ask, W).await) == 200
    })
    .await
}

fn config(up: &MockUpstream, limits: &str) -> String {
    format!(
        "listeners:\n  - name: main\n    address: 127.0.0.1:0\n    limits: {{{limits}}}\n\
         upstreams:\n  - name: up\n    endpoints: [\"{}\"]\n\
         routes:\n  - name: small\n    match: {{path: {{prefix: /small}}}}\n    upstream: up\n    max_body_size: 1KiB\n\
         \x20 - name: all\n    upstream: up\n",
        up.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_bytes_and_count_over_the_limit_get_431() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&config(&up, "max_header_bytes: 2KiB, max_headers: 10")).await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
        "a".repeat(3000)
    );
    let resp = raw(gw.addr, big.as_bytes(), W).await;
    assert_eq!(status_of(&resp), 431, "{resp}");
    let mut many = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
    for i in 0..10 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let resp = raw(gw.addr, many.as_bytes(), W).await;
    assert_eq!(status_of(&resp), 431, "11 fields: {resp}");
    // Just under both limits is fine.
    let ok = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(1500)
    );
    assert_eq!(status_of(&raw(gw.addr, ok.as_bytes(), W).await), 200);
    assert_eq!(up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_request_target_gets_414() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&config(&up, "max_uri_bytes: 100")).await;
    let req = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "p".repeat(200));
    assert_eq!(status_of(&raw(gw.addr, req.as_bytes(), W).await), 414);
    // Also when the request line is still arriving (no CRLF yet).
    let partial = format!("GET /{}", "p".repeat(400));
    assert_eq!(status_of(&raw(gw.addr, partial.as_bytes(), W).await), 414);
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_body_limit_gives_413_up_front_and_mid_stream() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&config(&up, "max_body_size: 64KiB")).await;
    // Declared too large: refused before anything is forwarded.
    let req = format!(
        "POST /small HTTP/1.1\r\nHost: h\r\nContent-Length: 2048\r\n\r\n{}",
        "b".repeat(2048)
    );
    let resp = raw(gw.addr, req.as_bytes(), W).await;
    assert_eq!(status_of(&resp), 413, "{resp}");
    assert!(resp.contains("body_too_large"), "{resp}");
    assert_eq!(up.hits(), 0);
    // Chunked: the limit is crossed by the third chunk, which arrives later.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /small/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n",
    )
    .await
    .unwrap();
    s.write_all(&[b'c'; 0x200]).await.unwrap();
    s.write_all(b"\r\n200\r\n").await.unwrap();
    s.write_all(&[b'c'; 0x200]).await.unwrap();
    s.write_all(b"\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = s.write_all(b"200\r\n").await;
    let _ = s.write_all(&[b'c'; 0x200]).await;
    let _ = s.write_all(b"\r\n0\r\n\r\n").await;
    let resp = read_all(&mut s, W).await;
    assert_eq!(status_of(&resp), 413, "{resp}");
    // The listener default applies to other routes: 64 KiB passes there.
    let req = format!(
        "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n{}",
        "d".repeat(4096)
    );
    let resp = raw(gw.addr, req.as_bytes(), W).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let over = format!(
        "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        65 * 1024
    );
    assert_eq!(status_of(&raw(gw.addr, over.as_bytes(), W).await), 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_head_gets_408_and_the_connection_closes() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&config(&up, "header_read_timeout: 300ms")).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let resp = read_all(&mut s, Duration::from_secs(5)).await;
    assert_eq!(status_of(&resp), 408, "{resp}");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_but_slow_requests_are_not_cut() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&config(&up, "idle_timeout: 300ms")).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /delay/700 HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    // The request takes longer than the idle timeout: it still completes.
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read(&mut s, &mut buf),
    )
    .await
    .expect("response")
    .unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert_eq!(status_of(&resp), 200, "{resp}");
    // Then, idle, the connection is closed by the gateway.
    let started = std::time::Instant::now();
    let rest = read_all(&mut s, Duration::from_secs(3)).await;
    assert!(rest.is_empty(), "{rest}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_millis(2500),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_max_connections_are_closed() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&config(&up, "max_connections: 2")).await;
    let a = TcpStream::connect(gw.addr).await.unwrap();
    let b = TcpStream::connect(gw.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resp = raw(gw.addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", W).await;
    assert!(resp.is_empty(), "a third connection must be closed: {resp}");
    let m = gw.metrics().await;
    assert!(m.contains("gateway_connections_rejected_total 1"), "{m}");
    drop(a);
    drop(b);
    assert!(
        serves_within(gw.addr, Duration::from_secs(3)).await,
        "a slot frees up when a connection closes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_concurrent_streams_are_capped() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&config(&up, "h2_max_concurrent_streams: 2")).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    // One request first, so that the client has the server's SETTINGS before it opens streams at once
    // (streams opened before that are refused with REFUSED_STREAM, which is the limit working too).
    let warm = client.get(gw.url("/warm").parse().unwrap()).await.unwrap();
    assert_eq!(warm.status(), 200);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let c = client.clone();
        let url = gw.url("/delay/300");
        tasks.push(tokio::spawn(async move {
            let r = c.get(url.parse().unwrap()).await.unwrap();
            r.status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(up.hits(), 7);
    assert!(
        up.max_in_flight() <= 2,
        "upstream saw {} at once",
        up.max_in_flight()
    );
}

/// Out of descriptors, the data plane keeps serving the connections it has and says so in a metric;
/// once descriptors free up, the waiting connections are taken in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_established_connections_are_served_and_counted() {
    use tokio::io::AsyncReadExt;
    let gw = GatewayProcess::start("routes:\n  - name: r\n    direct_response: {body: ok}\n").await;
    let mut kept = TcpStream::connect(gw.addr).await.unwrap();
    let ask = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let answer = async |s: &mut TcpStream| {
        s.write_all(ask).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(W, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        status_of(&String::from_utf8_lossy(&buf[..n]))
    };
    assert_eq!(answer(&mut kept).await, 200);
    // Lower the running gateway's descriptor limit to a few above what it holds now.
    let pid = gw.child.id() as libc::pid_t;
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64;
    let lim = libc::rlimit {
        rlim_cur: open + 4,
        rlim_max: open + 4,
    };
    // SAFETY: prlimit reads `lim` and writes nothing (the old limit is not asked for).
    let r = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
    let mut crowd = Vec::new();
    for _ in 0..20 {
        crowd.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The established connection is served all along.
    assert_eq!(answer(&mut kept).await, 200);
    assert_eq!(answer(&mut kept).await, 200);
    // The crowd leaves; the metric says what happened.
    drop(crowd);
    drop(kept);
    let counted = eventually(Duration::from_secs(10), || async {
        let Ok(mut s) = TcpStream::connect(gw.admin).await else {
            return false;
        };
        let _ = s
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            .await;
        let m = read_all(&mut s, W).await;
        m.lines().any(|l| {
            l.starts_with("gateway_accept_errors_total{kind=\"fd_limit\"}") && !l.ends_with(" 0")
        })
    })
    .await;
    assert!(
        counted,
        "accept failures for want of descriptors were counted"
    );
    // And new connections are served again.
    assert!(serves_within(gw.addr, Duration::from_secs(5)).await);
}
