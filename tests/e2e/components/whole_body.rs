//! Whole-body mode holds the head; chunk mode streams; trailers; bodiless responses.

use super::*;

// Whole-body mode holds the head: a filter that asks for the whole body sees it before the head of
// that direction is sent on, so its body call may change the head or answer instead; chunk mode still
// streams with the head already sent.

/// A backend that answers every request with a chunked `first`, then waits for `release` before it
/// sends `last` and ends the body.
async fn paused_upstream() -> (std::net::SocketAddr, std::sync::Arc<tokio::sync::Notify>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let r = release.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let r = r.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                if s.write_all(format!("{head}5\r\nfirst\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                r.notified().await;
                let _ = s.write_all(b"4\r\nlast\r\n0\r\n\r\n").await;
                let _ = read_all(&mut s, Duration::from_millis(200)).await;
            });
        }
    });
    (addr, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_response_body_call_changes_the_head_and_the_length_is_right() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin("kitchen", kitchen(), "")],
            &[
                route("whole", "kitchen", "response-body=whole", ""),
                route("small", "kitchen", "response-body=whole", "")
                    .lines("    max_body_size: 1KiB\n"),
                route(
                    "smallopen",
                    "kitchen",
                    "response-body=whole",
                    ", failure: open",
                )
                .lines("    max_body_size: 1KiB\n"),
            ],
        )
        .await;
    // Header and status set in the body call arrive, with the length of the replaced body.
    let (s, h, body) = get_with(
        &gw.url("/whole/foo/3"),
        &[("x-resp-test", "late-status"), ("x-want-status", "299")],
    )
    .await;
    assert_eq!((s, body.as_str()), (299, "len=18;late=ok;status=ok"));
    assert_eq!(hv(&h, "x-late"), "1");
    assert_eq!(hv(&h, "content-length"), body.len().to_string());
    assert!(h.get("transfer-encoding").is_none());
    // The same on HTTP/1.1 bytes on the wire: a Content-Length message, not chunked.
    let resp = raw(
        gw.addr,
        b"GET /whole/foo/2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    let lower = resp.to_lowercase();
    assert!(lower.contains("\r\ncontent-length: 14\r\n"), "{resp}");
    assert!(!lower.contains("transfer-encoding"), "{resp}");
    assert!(resp.ends_with("\r\n\r\nlen=12;late=ok"), "{resp}");

    // A local answer from the body call replaces the response: its status, headers and body only.
    let req = http::Request::post(gw.url("/whole/echo"))
        .body(Full::new(Bytes::from_static(b"deny this")))
        .unwrap();
    let (s, h, body) = request(req).await;
    assert_eq!((s, body.as_str()), (403, "denied by body\n"));
    assert_eq!(hv(&h, "x-denied-by"), "response-body");
    assert_eq!(hv(&h, "content-length"), "15");
    assert!(h.get("x-upstream").is_none(), "{h:?}");
    assert!(h.get("x-late").is_none(), "{h:?}");

    // Trailers still pass after a held body (HTTP/2 client, so they are delivered).
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let resp = client
        .get(gw.url("/whole/trailers").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(hv(resp.headers(), "x-late"), "1");
    let collected = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    assert_eq!(collected.to_bytes(), "len=14;late=ok");
    assert_eq!(hv(&trailers, "x-checksum"), "abc123");

    // Over the route's body limit the filter fails by its policy: closed fails the request ...
    let (s, _, body) = get(&gw.url("/small/stream/1")).await;
    assert_eq!(s, 500, "{body}");
    // The client is told which filter failed, not why (that is in the log with the request id).
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "filter_failed", "{body}");
    assert!(!body.contains("whole-body limit"), "{body}");
    assert_eq!(v["request_id"].as_str().map(str::len), Some(16), "{body}");
    // ... open skips the filter and the body streams on unchanged.
    let (s, h, body) = get(&gw.url("/smallopen/stream/2")).await;
    assert_eq!(s, 200);
    assert_eq!(body.len(), 2 * 64 * 1024);
    assert!(body.bytes().all(|c| c == b'x'));
    assert!(h.get("x-late").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_request_body_call_changes_the_head_upstream_and_can_answer() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin("kitchen", kitchen(), "")],
            &[
                route("whole", "kitchen", "request-body=whole", ""),
                route("small", "kitchen", "request-body=whole", "")
                    .lines("    max_body_size: 1KiB\n"),
            ],
        )
        .await;
    // A chunked request: the upstream gets the header set in the body call and a Content-Length for
    // the replaced body.
    let resp = raw(
        gw.addr,
        b"POST /whole/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(resp.ends_with("ABCD|chunks=1"), "{resp}");
    let seen = b.up.last();
    assert_eq!(seen.body, "ABCD|chunks=1");
    assert_eq!(hv(&seen.headers, "x-late"), "1");
    assert_eq!(hv(&seen.headers, "content-length"), "13");
    assert!(seen.headers.get("transfer-encoding").is_none());
    // A declared length that the filter changes is corrected too.
    let req = http::Request::post(gw.url("/whole/echo"))
        .body(Full::new(Bytes::from_static(b"xyz")))
        .unwrap();
    let (s, h, body) = request(req).await;
    assert_eq!((s, body.as_str()), (200, "XYZ|chunks=1"));
    assert_eq!(hv(&h, "x-body-phase-set-header"), "ok");
    assert_eq!(hv(&b.up.last().headers, "content-length"), "12");

    // A local answer from the body call: the upstream is not asked.
    let hits = b.up.hits();
    let req = http::Request::post(gw.url("/whole/echo"))
        .body(Full::new(Bytes::from_static(b"deny me")))
        .unwrap();
    let (s, h, body) = request(req).await;
    assert_eq!((s, body.as_str()), (403, "denied by request body\n"));
    assert_eq!(hv(&h, "x-denied-by"), "request-body");
    assert_eq!(b.up.hits(), hits);

    // Over the route's limit: 413 as without the filter, also when the length was not declared.
    let big = Bytes::from(vec![b'a'; 2048]);
    let req = http::Request::post(gw.url("/small/echo"))
        .body(Full::new(big))
        .unwrap();
    assert_eq!(request(req).await.0, 413);
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /small/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n400\r\n")
        .await
        .unwrap();
    s.write_all(&[b'a'; 0x400]).await.unwrap();
    s.write_all(b"\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The gateway may answer and close as soon as the limit is crossed.
    let _ = s.write_all(b"400\r\n").await;
    let _ = s.write_all(&[b'a'; 0x400]).await;
    let _ = s.write_all(b"\r\n0\r\n\r\n").await;
    let resp = read_all(&mut s, Duration::from_secs(3)).await;
    assert_eq!(status_of(&resp), 413, "{resp}");
    assert_eq!(b.up.hits(), hits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_mode_streams_while_whole_mode_holds_the_response_head() {
    let (addr, release) = paused_upstream().await;
    let gw = TestGateway::start(&format!(
        "plugins:\n{}upstreams:\n  - name: up\n    endpoints: [\"{addr}\"]\nroutes:\n{}{}",
        plugin("kitchen", kitchen(), ""),
        route("chunks", "kitchen", "response-body=chunks", ""),
        route("whole", "kitchen", "response-body=whole", ""),
    ))
    .await;
    // Chunks: the first chunk reaches the client while the upstream is still waiting to finish.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /chunks/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let early = read_all(&mut s, Duration::from_millis(1500)).await;
    assert_eq!(status_of(&early), 200, "{early}");
    assert!(
        early.contains("first"),
        "the first chunk did not stream: {early}"
    );
    release.notify_one();
    let rest = read_all(&mut s, Duration::from_secs(3)).await;
    let all = early + &rest;
    // The last call's replacement says the header edit was refused; the header is not there.
    assert!(all.contains(";late=wrong-phase"), "{all}");
    assert!(!all.to_lowercase().contains("x-late:"), "{all}");

    // Whole: nothing reaches the client until the upstream has finished.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /whole/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let early = read_all(&mut s, Duration::from_millis(700)).await;
    assert_eq!(early, "", "the head was sent before the body was whole");
    release.notify_one();
    let resp = read_all(&mut s, Duration::from_secs(3)).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let lower = resp.to_lowercase();
    assert!(lower.contains("\r\nx-late: 1\r\n"), "{resp}");
    assert!(lower.contains("\r\ncontent-length: 13\r\n"), "{resp}");
    assert!(resp.ends_with("\r\n\r\nlen=9;late=ok"), "{resp}");
}

/// A backend that sends each request it gets, as raw text (head, chunked body, trailers), on the
/// channel, and answers `ok`.
async fn recording_upstream() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut text = String::new();
                let mut buf = [0u8; 4096];
                loop {
                    if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                        let head = head.to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|n| n.trim().parse::<usize>().ok());
                        let complete = match len {
                            Some(n) => rest.len() >= n,
                            None if head.contains("transfer-encoding: chunked") => {
                                rest.ends_with("\r\n\r\n")
                                    && (rest.starts_with("0\r\n") || rest.contains("\r\n0\r\n"))
                            }
                            None => true,
                        };
                        if complete {
                            break;
                        }
                    }
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
                    }
                }
                let _ = tx.send(text);
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_trailers_pass_after_a_held_request_body() {
    let (addr, mut seen) = recording_upstream().await;
    let gw = TestGateway::start(&format!(
        "plugins:\n{}upstreams:\n  - name: up\n    endpoints: [\"{addr}\"]\nroutes:\n{}",
        plugin("kitchen", kitchen(), ""),
        route("whole", "kitchen", "request-body=whole", ""),
    ))
    .await;
    let resp = raw(
        gw.addr,
        b"POST /whole/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\nConnection: close\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\nx-sum: 7\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let up = tokio::time::timeout(Duration::from_secs(3), seen.recv())
        .await
        .unwrap()
        .unwrap();
    let lower = up.to_lowercase();
    // The body as the filter left it, sent chunked (trailers need it), then the trailers.
    assert!(lower.contains("\r\nx-late: 1\r\n"), "{up}");
    assert!(!lower.contains("content-length"), "{up}");
    assert!(up.contains("ABCD|chunks=1"), "{up}");
    assert!(lower.ends_with("\r\n0\r\nx-sum: 7\r\n\r\n"), "{up}");
}

/// A filter that holds the response body whole is not shown (and does not wait for) a body that a
/// response cannot have: the answer to HEAD keeps the backend's Content-Length and sends no body, 204
/// and 304 go through, and the keep-alive connection stays in step for the request after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_body_filters_skip_responses_without_a_body() {
    let b = Backends::start().await;
    let gw = b
        .gateway(
            &[plugin("kitchen", kitchen(), "")],
            &[route("whole", "kitchen", "response-body=whole", "")],
        )
        .await;
    // What the backend itself says to HEAD.
    let direct = raw(
        b.up.addr,
        b"HEAD /auth HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    let length = direct
        .to_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length: ").map(str::to_owned))
        .unwrap_or_else(|| panic!("the backend sends a length to HEAD: {direct}"));
    assert!(length.trim() != "0", "{direct}");

    let started = Instant::now();
    let resp = raw(
        gw.addr,
        b"HEAD /whole/auth HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /whole/status/204 HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /whole/status/304 HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /whole/foo/2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "nothing waits for a body that cannot come: {resp}"
    );
    let parts: Vec<&str> = resp.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(parts.len(), 4, "four answers in order: {resp}");
    let head = parts[0].to_lowercase();
    assert!(head.starts_with("200 "), "{resp}");
    assert!(
        head.contains(&format!("\r\ncontent-length: {}\r\n", length.trim())),
        "HEAD keeps the backend's length: {resp}"
    );
    assert!(head.ends_with("\r\n\r\n"), "no body after HEAD: {resp}");
    assert!(
        parts[1].starts_with("204 ") && parts[1].ends_with("\r\n\r\n"),
        "{resp}"
    );
    assert!(
        parts[2].starts_with("304 ") && parts[2].ends_with("\r\n\r\n"),
        "{resp}"
    );
    assert!(parts[3].starts_with("200 "), "{resp}");
    assert!(parts[3].ends_with("\r\n\r\nlen=12;late=ok"), "{resp}");
}
