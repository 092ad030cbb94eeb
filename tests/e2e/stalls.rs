//! Clients that stall or abuse a connection are bounded: a response the client does not read is cut
//! after the send timeout and its upstream connection let go; an HTTP/2 client that keeps cancelling
//! streams gets GOAWAY.

use crate::harness::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream that answers one request with an endless body and reports when its connection is
/// closed under it (its write fails).
async fn endless_upstream() -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Receiver<Instant>,
) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n")
            .await;
        let chunk = vec![b'x'; 64 * 1024];
        while s.write_all(&chunk).await.is_ok() {}
        let _ = tx.send(Instant::now());
    });
    (addr, rx)
}

/// Sends `GET path` over a raw HTTP/2 connection whose client never reads a body unless told to
/// (its connection task keeps reading frames and answering pings: the socket never blocks).
async fn h2_get(gw: &TestGateway, path: &str) -> http::Response<h2::RecvStream> {
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::get(format!("http://{}{path}", gw.addr))
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    resp.await.unwrap()
}

/// Waits for the endless upstream's connection to be closed under it, at least `after` from now;
/// then for the gateway to have closed the client's connection and counted a send timeout.
async fn upstream_let_go(
    gw: &TestGateway,
    closed: tokio::sync::oneshot::Receiver<Instant>,
    after: Duration,
) {
    let start = Instant::now();
    let at = tokio::time::timeout(Duration::from_secs(20), closed)
        .await
        .expect("the upstream connection was let go")
        .unwrap();
    assert!(at.duration_since(start) >= after);
    assert!(
        eventually(Duration::from_secs(5), || async {
            let m = gw.metrics().await;
            m.contains("gateway_connections_active 0")
                && m.contains("gateway_send_timeouts_total 1")
        })
        .await
    );
}

fn config(up: std::net::SocketAddr) -> String {
    format!(
        "listeners:\n  - {{name: main, address: 127.0.0.1:0, limits: {{send_timeout: 1s, h2_max_resets: 50}}}}\n\
         upstreams:\n  - {{name: up, endpoints: [\"{up}\"]}}\n\
         routes:\n  - {{name: r, match: {{}}, upstream: up}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_cut_and_its_upstream_let_go() {
    let (up, closed) = endless_upstream().await;
    let gw = TestGateway::start(&config(up)).await;
    let mut c = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    c.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The client never reads; the gateway cuts it after the send timeout, and the upstream sees
    // its connection closed.
    upstream_let_go(&gw, closed, Duration::from_millis(900)).await;
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_leaves_its_window_closed_is_cut_and_its_upstream_let_go() {
    let (up, closed) = endless_upstream().await;
    let gw = TestGateway::start(&config(up)).await;
    // The response body is never read, so the stream's window stays closed.
    let resp = h2_get(&gw, "/big").await;
    assert_eq!(resp.status(), 200);
    upstream_let_go(&gw, closed, Duration::from_millis(700)).await;
    drop(resp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_reads_slowly_is_not_cut() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&config(up.addr)).await;
    // 64 KiB chunks from the backend, read at 32 KiB/s (16 KiB every half second): each chunk
    // takes two seconds to drain, twice the send timeout, yet the client never stops reading.
    let mut body = h2_get(&gw, "/stream/40").await.into_body();
    let start = Instant::now();
    let mut total = 0usize;
    while total < 128 * 1024 {
        let chunk = body.data().await.expect("more body").expect("not cut");
        total += chunk.len();
        tokio::time::sleep(Duration::from_millis(500) * chunk.len() as u32 / (16 * 1024)).await;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    assert!(start.elapsed() >= Duration::from_secs(3));
    assert!(!gw.metrics().await.contains("gateway_send_timeouts_total 1"));
    // The rest comes at full speed.
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        total += chunk.len();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    assert_eq!(total, 40 * 64 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_that_keeps_reading_is_not_cut() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&config(up.addr)).await;
    let mut c = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    // 40 chunks of 64 KiB, read at 256 KiB every 250 ms: about 2.5 s, more than the send timeout.
    c.write_all(b"GET /stream/40 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let mut got = 0;
        while got < buf.len() {
            match c.read(&mut buf[got..]).await.unwrap() {
                0 => break,
                n => got += n,
            }
        }
        total += got;
        if got < buf.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(total > 40 * 64 * 1024, "read {total}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_keeps_cancelling_streams_gets_goaway() {
    let up = MockUpstream::start("up").await;
    let gw = TestGateway::start(&config(up.addr)).await;
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let start = Instant::now();
    let mut sent = 0;
    while sent < 2000 && start.elapsed() < Duration::from_secs(20) {
        let Ok(ready) = client.clone().ready().await else {
            break;
        };
        client = ready;
        let req = http::Request::get(format!("http://{}/delay/200", gw.addr))
            .body(())
            .unwrap();
        let Ok((resp, _)) = client.send_request(req, true) else {
            break;
        };
        sent += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
        // Dropping the response future resets the stream (RST_STREAM CANCEL).
        drop(resp);
    }
    assert!(sent < 500, "the connection took {sent} cancelled streams");
    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(
        up.hits() <= 120,
        "{} requests reached the upstream",
        up.hits()
    );
    let m = gw.metrics().await;
    assert!(m.contains("gateway_h2_reset_goaways_total 1"), "{m}");
    // A client that cancels a few stays served.
    let client2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let r = request_via(
        &client2,
        http::Request::get(gw.url("/ok"))
            .body(Default::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.0, 200);
}
