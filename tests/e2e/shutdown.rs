//! Graceful shutdown of the real binary on SIGTERM/SIGINT.

use crate::harness::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(up: &MockUpstream, drain: &str) -> String {
    GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .route(Route::new("all").upstream("up").lines("    timeout: 30s\n"))
        .raw(&format!("server:\n  drain_timeout: {drain}\n"))
        .yaml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_closes_idle_ones_and_exits() {
    let up = MockUpstream::start("up").await;
    let mut gw = GatewayProcess::start(&config(&up, "10s")).await;

    // An idle keep-alive connection (one request done).
    let mut idle = TcpStream::connect(gw.addr).await.unwrap();
    idle.write_all(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 200);

    // A busy connection: its request takes 800 ms.
    let mut busy = TcpStream::connect(gw.addr).await.unwrap();
    busy.write_all(b"GET /delay/800 HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    // An HTTP/2 connection with a request in flight.
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let h2_req = tokio::spawn({
        let url = gw.url("/delay/800");
        async move {
            h2.get(url.parse().unwrap())
                .await
                .map(|r| r.status().as_u16())
        }
    });
    assert!(eventually(Duration::from_secs(3), || async { up.hits() >= 3 }).await);

    gw.signal("TERM");

    // The idle connection is closed promptly.
    let rest = read_all(&mut idle, Duration::from_secs(3)).await;
    assert!(rest.is_empty(), "{rest}");
    // The busy one gets its response, marked Connection: close, and then EOF.
    let resp = read_all(&mut busy, Duration::from_secs(5)).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("connection: close"),
        "{resp}"
    );
    // The HTTP/2 request in flight completes (the connection got GOAWAY, not a reset).
    assert_eq!(h2_req.await.unwrap().expect("h2 request completes"), 200);
    // No new connections are accepted.
    assert!(
        TcpStream::connect(gw.addr).await.is_err() || {
            let r = raw(
                gw.addr,
                b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
                Duration::from_millis(500),
            )
            .await;
            r.is_empty()
        }
    );
    let status = gw
        .wait_exit(Duration::from_secs(8))
        .await
        .expect("the gateway exits");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_bounds_shutdown() {
    let up = MockUpstream::start("up").await;
    let mut gw = GatewayProcess::start(&config(&up, "300ms")).await;
    let mut busy = TcpStream::connect(gw.addr).await.unwrap();
    busy.write_all(b"GET /delay/5000 HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(3), || async { up.hits() >= 1 }).await);
    let started = std::time::Instant::now();
    gw.signal("INT");
    let status = gw
        .wait_exit(Duration::from_secs(4))
        .await
        .expect("exits after the drain timeout");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
