//! `bench-ws-echo server ADDR`: a WebSocket echo server (every message sent back as it came).
//! `bench-ws-echo client URL CONNECTIONS SECONDS SIZE`: CONNECTIONS WebSocket connections, each sending
//! a SIZE-byte binary message and waiting for its echo, again and again for SECONDS; prints one line
//! `BENCHJSON {"requests":N,"duration_us":D,"errors":E,"mean_us":M}` (a request is one round trip).
//! Both run on one thread, so `taskset` pins them to one core like wrk.

use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("server") if args.len() == 3 => server(&args[2]).await,
        Some("client") if args.len() == 6 => {
            let n: usize = args[3].parse().expect("CONNECTIONS");
            let secs: u64 = args[4].parse().expect("SECONDS");
            let size: usize = args[5].parse().expect("SIZE");
            client(&args[2], n, Duration::from_secs(secs), size).await
        }
        _ => {
            eprintln!("usage: bench-ws-echo server ADDR | client URL CONNECTIONS SECONDS SIZE");
            std::process::exit(2);
        }
    }
}

async fn server(addr: &str) {
    let listener = TcpListener::bind(addr).await.expect("bind");
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            while let Some(Ok(m)) = ws.next().await {
                match m {
                    Message::Binary(_) | Message::Text(_) => {
                        if ws.send(m).await.is_err() {
                            return;
                        }
                    }
                    Message::Close(_) => return,
                    _ => {}
                }
            }
        });
    }
}

async fn client(url: &str, connections: usize, length: Duration, size: usize) {
    let authority = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .expect("url")
        .to_string();
    let mut tasks = Vec::new();
    let start = Instant::now();
    let end = start + length;
    for _ in 0..connections {
        let (url, authority) = (url.to_string(), authority.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            let mut errors = 0u64;
            let mut waited = Duration::ZERO;
            let tcp = match TcpStream::connect(&authority).await {
                Ok(t) => t,
                Err(_) => return (0, 1, waited),
            };
            let _ = tcp.set_nodelay(true);
            let Ok((mut ws, _)) = tokio_tungstenite::client_async(url.as_str(), tcp).await else {
                return (0, 1, waited);
            };
            let payload = vec![b'x'; size];
            while Instant::now() < end {
                let t = Instant::now();
                if ws.send(Message::binary(payload.clone())).await.is_err() {
                    errors += 1;
                    break;
                }
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) if b.len() == size => {
                        done += 1;
                        waited += t.elapsed();
                    }
                    _ => {
                        errors += 1;
                        break;
                    }
                }
            }
            let _ = ws.close(None).await;
            (done, errors, waited)
        }));
    }
    let (mut done, mut errors, mut waited) = (0u64, 0u64, Duration::ZERO);
    for t in tasks {
        let (d, e, w) = t.await.unwrap_or((0, 1, Duration::ZERO));
        done += d;
        errors += e;
        waited += w;
    }
    let duration = start.elapsed();
    let mean_us = if done > 0 { waited.as_secs_f64() * 1e6 / done as f64 } else { 0.0 };
    println!(
        "BENCHJSON {{\"requests\":{done},\"duration_us\":{},\"errors\":{errors},\"mean_us\":{mean_us:.1}}}",
        duration.as_micros()
    );
}
