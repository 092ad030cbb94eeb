//! Bodies stream both ways with bounded memory, and trailers pass through.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Samples a process's RSS every 20 ms until the returned flag is set; yields the peak in KiB.
fn sample_peak(
    pid: u32,
) -> (
    Arc<AtomicU64>,
    tokio::task::JoinHandle<()>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (p, s) = (peak.clone(), stop.clone());
    let task = tokio::spawn(async move {
        while !s.load(Ordering::SeqCst) {
            p.fetch_max(rss_kib(pid), Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (peak, task, stop)
}

const MIB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_download_and_upload_stream_with_flat_memory() {
    let up = MockUpstream::start("up").await;
    let gw = GatewayProcess::start(&format!(
        "upstreams:\n  - name: up\n    endpoints: [\"{}\"]\nroutes:\n  - name: all\n    upstream: up\n    max_body_size: 1GiB\n    timeout: 60s\nserver:\n  access_log: {{enabled: false}}\n",
        up.addr
    ))
    .await;
    // Warm up so the baseline includes pools and buffers.
    assert_eq!(get(&gw.url("/warm")).await.0, 200);
    let base = rss_kib(gw.pid());
    let (peak, task, stop) = sample_peak(gw.pid());

    // Download 256 MiB (4096 chunks of 64 KiB).
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>>(
    );
    let resp = client
        .get(gw.url("/stream/4096").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = 0u64;
    while let Some(f) = body.frame().await {
        got += f.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(got, 256 * MIB);

    // Upload 256 MiB, generated as it is sent.
    let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
    let stream = futures_util::stream::iter(
        (0..4096).map(move |_| Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone()))),
    );
    let req = http::Request::post(gw.url("/upload"))
        .body(StreamBody::new(stream).boxed())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(text, (256 * MIB).to_string());

    stop.store(true, Ordering::SeqCst);
    task.await.unwrap();
    let peak = peak.load(Ordering::SeqCst);
    let growth_mib = peak.saturating_sub(base) as f64 / 1024.0;
    eprintln!(
        "gateway RSS: base {} KiB, peak {} KiB, growth {growth_mib:.1} MiB for 512 MiB moved",
        base, peak
    );
    assert!(
        growth_mib < 32.0,
        "RSS grew by {growth_mib:.1} MiB while streaming 512 MiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_pass_through_http2_and_http1() {
    let up = MockUpstream::start("up").await;
    let h2_up = MockUpstream::start("h2up").await;
    let gw = TestGateway::start(&format!(
        "upstreams:\n  - name: up\n    endpoints: [\"{}\"]\n  - name: h2up\n    endpoints: [\"{}\"]\n    protocol: http2\n\
         routes:\n  - name: h2\n    match: {{path: {{prefix: /h2}}}}\n    upstream: h2up\n    rewrite: {{strip_prefix: /h2}}\n  - name: all\n    upstream: up\n",
        up.addr, h2_up.addr
    ))
    .await;
    // HTTP/2 client, HTTP/1 upstream.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<Bytes>>();
    for path in ["/trailers", "/h2/trailers"] {
        let resp = client.get(gw.url(path).parse().unwrap()).await.unwrap();
        assert_eq!(resp.status(), 200);
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap_or_default();
        assert_eq!(collected.to_bytes(), "with trailers\n");
        assert_eq!(
            trailers.get("x-checksum").map(|v| v.to_str().unwrap()),
            Some("abc123"),
            "{path}"
        );
    }
    // HTTP/1.1 client that accepts trailers: they arrive in the chunked trailer section.
    let resp = raw(
        gw.addr,
        b"GET /trailers HTTP/1.1\r\nHost: h\r\nTE: trailers\r\nConnection: close\r\n\r\n",
        Duration::from_millis(1500),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(resp.contains("x-checksum: abc123"), "{resp}");
    // A chunked request body with trailers reaches the upstream whole.
    let resp = raw(
        gw.addr,
        b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n",
        Duration::from_millis(1500),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(up.last().body, "abcdefg");
}
