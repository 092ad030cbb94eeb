//! Upstream behaviour through the real gateway over real sockets: balancing, timeouts and upstream
//! errors, retries and the retry budget, passive and active health, header hygiene and rewrites,
//! HTTP/2 on either side, and the upstream metrics.

mod balancing;
mod failures;
mod headers;
mod health;
mod protocols;

use crate::harness::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------

/// One upstream `up` with these endpoints and extra upstream lines (indented 4 spaces), and one
/// catch-all route `r` to it with extra route lines (indented 4 spaces).
fn one_route(endpoints: &[SocketAddr], upstream_extra: &str, route_extra: &str) -> String {
    let up = endpoints
        .iter()
        .fold(Upstream::new("up"), |up, addr| up.endpoint(addr));
    GatewayConfig::new()
        .upstream(up.lines(upstream_extra))
        .route(Route::new("r").upstream("up").lines(route_extra))
        .yaml()
}

/// The `error` code of a JSON error body ("" if the body is not one).
fn error_code(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// An address that refuses connections: a socket bound to it but not listening, so that no other
/// test can take the port while the returned socket is alive.
fn closed_addr() -> (tokio::net::TcpSocket, SocketAddr) {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

/// A listener that is never accepted: connections complete in the kernel's backlog, requests are
/// written and never answered. Keep it alive for as long as the endpoint should hang.
fn black_hole() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

/// POST a body with a known length.
async fn post(url: &str, body: &'static str) -> Resp {
    request(
        http::Request::post(url)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap(),
    )
    .await
}

/// GET with a client whose connections come from `ip` (any 127.0.0.0/8 address on Linux).
async fn get_from(ip: IpAddr, url: &str) -> Resp {
    let mut conn = HttpConnector::new();
    conn.set_local_address(Some(ip));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(conn);
    let req = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    request_via(&client, req).await
}

/// The `x-upstream` header of a response (the mock that answered).
fn answered_by(r: &Resp) -> String {
    r.1.get("x-upstream")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// A minimal HTTP/1.1 upstream that answers every request head with `response` (keep-alive).
async fn fixed_upstream(response: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = tcp.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..i + 4);
                        if s.write_all(response).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, task)
}
