//! WebSocket through the gateway (issue 21): a real WebSocket client and echo server
//! (tokio-tungstenite) on both sides of the gateway, over HTTP/1.1 (plain and TLS listeners) and
//! HTTP/2 extended CONNECT (RFC 8441) to an HTTP/1.1 upstream; the handshake through the route's
//! filters; the tunnel's idle timeout, longest life, metrics, drain on shutdown and reload; and
//! the framing guards around a handshake (bodies, pipelined bytes, refused upgrades).

use crate::harness::*;
use futures_util::{SinkExt, StreamExt};
use gateway_test_support::metric;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A WebSocket echo server: every text or binary message comes back as it was sent. It records
/// the head of each handshake it accepted.
struct Echo {
    addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<http::request::Parts>>>,
}

impl Echo {
    async fn start() -> Echo {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let seen = handshakes.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = tcp.accept().await else {
                    return;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    #[allow(clippy::result_large_err)] // tungstenite's callback type
                    let record = |req: &http::Request<()>, resp| {
                        let mut r = http::Request::new(());
                        *r.method_mut() = req.method().clone();
                        *r.uri_mut() = req.uri().clone();
                        *r.headers_mut() = req.headers().clone();
                        seen.lock().unwrap().push(r.into_parts().0);
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(s, record).await else {
                        return;
                    };
                    while let Some(Ok(m)) = ws.next().await {
                        match m {
                            Message::Text(_) | Message::Binary(_) => {
                                // A failed send ends the stream, which the next read sees.
                                let _ = ws.send(m).await;
                            }
                            Message::Close(_) => return,
                            _ => {}
                        }
                    }
                });
            }
        });
        Echo { addr, handshakes }
    }

    fn last(&self) -> http::request::Parts {
        self.handshakes
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a handshake")
    }

    fn count(&self) -> usize {
        self.handshakes.lock().unwrap().len()
    }
}

fn config(echo: SocketAddr, route_lines: &str) -> GatewayConfig {
    GatewayConfig::new()
        .upstream(Upstream::new("echo").endpoint(echo))
        .route(Route::new("ws").upstream("echo").lines(route_lines))
}

/// Opens a WebSocket to `path` over `stream`, with extra handshake headers.
async fn ws_on<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<WebSocketStream<S>, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://gateway.test{path}")
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    tokio_tungstenite::client_async(req, stream)
        .await
        .map(|(ws, resp)| {
            assert_eq!(resp.status(), 101);
            ws
        })
}

async fn ws(addr: SocketAddr, path: &str) -> WebSocketStream<TcpStream> {
    ws_on(TcpStream::connect(addr).await.unwrap(), path, &[])
        .await
        .expect("handshake")
}

/// Sends `m` and expects it back within 5 s.
async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, m: Message) {
    ws.send(m.clone()).await.expect("send");
    let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the echo in time")
        .expect("a message")
        .expect("a good frame");
    assert_eq!(back, m);
}

/// Resolves with what ended the stream (a close frame, an error, or its end), within `within`.
async fn ended<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    within: Duration,
) -> String {
    let start = Instant::now();
    loop {
        let left = within.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => panic!("the tunnel is still open after {within:?}"),
            Ok(None) => return "end".into(),
            Ok(Some(Err(e))) => return format!("error: {e}"),
            Ok(Some(Ok(Message::Close(c)))) => return format!("close: {c:?}"),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

fn tunnel_metric(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_binary_frames_echo_through_plain_and_tls_listeners() {
    let echo = Echo::start().await;
    let dir = TempDir::new("websocket-tls");
    let (cert, key, client_tls) = self_signed(&dir.0, "gateway.test");
    let yaml = config(echo.addr, "")
        .raw(&format!(
            "listeners:\n  - name: main\n    address: 127.0.0.1:0\n  - name: tls\n    address: 127.0.0.1:0\n    tls:\n      certificates:\n        - {{cert: {}, key: {}}}\n",
            cert.display(),
            key.display()
        ))
        .yaml();
    let gw = TestGateway::start(&yaml).await;

    let mut plain = ws(gw.addr, "/chat?room=1").await;
    round_trip(&mut plain, Message::text("hello")).await;
    round_trip(&mut plain, Message::binary(vec![0u8, 1, 2, 255])).await;
    // A message larger than a read buffer, both ways.
    round_trip(&mut plain, Message::binary(vec![7u8; 300_000])).await;
    let up = echo.last();
    assert_eq!(up.uri, "/chat?room=1");
    assert_eq!(up.method, http::Method::GET);
    assert!(hv(&up.headers, "upgrade").eq_ignore_ascii_case("websocket"));
    assert_eq!(hv(&up.headers, "x-forwarded-for"), "127.0.0.1");

    // While a tunnel is open the metrics say so, and count what it carried.
    let text = gw.metrics().await;
    assert_eq!(
        tunnel_metric(&text, r#"gateway_tunnels_open{route="ws"}"#),
        1.0
    );
    assert!(
        tunnel_metric(
            &text,
            r#"gateway_tunnel_bytes_total{route="ws",direction="to_upstream"}"#
        ) > 300_000.0
    );
    assert!(
        tunnel_metric(
            &text,
            r#"gateway_tunnel_bytes_total{route="ws",direction="to_client"}"#
        ) > 300_000.0
    );

    // The same over TLS.
    let tls_addr = gw.gw.as_ref().unwrap().addr("tls").unwrap();
    let tcp = TcpStream::connect(tls_addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(client_tls)
        .connect("gateway.test".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let mut secure = ws_on(tls, "/secure", &[])
        .await
        .expect("handshake over TLS");
    round_trip(&mut secure, Message::text("over tls")).await;
    round_trip(&mut secure, Message::binary(vec![9u8; 70_000])).await;
    assert_eq!(echo.last().uri, "/secure");
    assert_eq!(echo.last().headers["x-forwarded-proto"], "https");

    // Closed by the clients: the gauge goes back to 0, and each tunnel is counted closed.
    plain.close(None).await.unwrap();
    secure.close(None).await.unwrap();
    ended(&mut plain, Duration::from_secs(5)).await;
    let closed = eventually(Duration::from_secs(5), || async {
        let t = gw.metrics().await;
        metric(&t, r#"gateway_tunnels_open{route="ws"}"#) == Some(0.0)
            && metric(
                &t,
                r#"gateway_tunnels_closed_total{route="ws",reason="closed"}"#,
            ) == Some(2.0)
    })
    .await;
    assert!(closed, "{}", gw.metrics().await);
    let t = gw.metrics().await;
    assert_eq!(
        tunnel_metric(&t, r#"gateway_tunnels_total{route="ws"}"#),
        2.0
    );
    assert_eq!(
        tunnel_metric(&t, r#"gateway_requests_total{route="ws",status="101"}"#),
        2.0
    );
}

/// A self-signed certificate for `name` in `dir`, and a client config that trusts it.
fn self_signed(
    dir: &std::path::Path,
    name: &str,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    Arc<rustls::ClientConfig>,
) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (c, k, Arc::new(cfg))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_filter_refuses_the_handshake_with_its_own_answer() {
    let echo = Echo::start().await;
    let yaml = config(echo.addr, "    filters: [{plugin: key-auth, config: {}}]\n")
        .raw("consumers:\n  - name: alice\n    credentials: {key-auth: {key: k-alice}}\n")
        .yaml();
    let gw = TestGateway::start(&yaml).await;

    let refused = ws_on(TcpStream::connect(gw.addr).await.unwrap(), "/ws", &[]).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 401);
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default());
            assert!(body.contains("key"), "{body}");
        }
        other => panic!("expected key-auth's 401, got {other:?}"),
    }
    assert_eq!(
        echo.count(),
        0,
        "a refused handshake never reaches the upstream"
    );

    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let mut ws = ws_on(stream, "/ws", &[("apikey", "k-alice")])
        .await
        .expect("a known key opens the tunnel");
    round_trip(&mut ws, Message::text("authenticated")).await;
    assert_eq!(hv(&echo.last().headers, "apikey"), "k-alice");

    // The same refusal over HTTP/2 extended CONNECT.
    let (status, _) = h2_connect(gw.addr, "/ws", &[]).await;
    assert_eq!(status, 401);
    assert_eq!(echo.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_and_max_duration_close_tunnels() {
    let echo = Echo::start().await;
    let yaml = GatewayConfig::new()
        .upstream(Upstream::new("echo").endpoint(echo.addr))
        .route(
            Route::new("idle")
                .prefix("/idle")
                .upstream("echo")
                .lines("    upgrades: {idle_timeout: 1500ms}\n"),
        )
        .route(
            Route::new("short")
                .prefix("/short")
                .upstream("echo")
                .lines("    upgrades: {max_duration: 800ms, idle_timeout: 10s}\n"),
        )
        .yaml();
    let gw = TestGateway::start(&yaml).await;

    // Traffic every 100 ms for twice the idle timeout keeps its clock from running out (a wide
    // margin: a loaded machine may stretch a sleep and a round trip well past 100 ms)...
    let mut busy = ws(gw.addr, "/idle/busy").await;
    for i in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        round_trip(&mut busy, Message::text(format!("tick {i}"))).await;
    }
    // ...and silence lets it: the gateway closes both sides.
    let quiet_since = Instant::now();
    let how = ended(&mut busy, Duration::from_secs(6)).await;
    let after = quiet_since.elapsed();
    assert!(
        after >= Duration::from_millis(1400) && after < Duration::from_secs(5),
        "{after:?} {how}"
    );

    // A tunnel busy all along still ends at its longest life.
    let mut short = ws(gw.addr, "/short").await;
    let opened = Instant::now();
    let mut closed_after = None;
    while opened.elapsed() < Duration::from_secs(5) {
        let sent = short.send(Message::text("still here")).await;
        let back = tokio::time::timeout(Duration::from_millis(500), short.next()).await;
        match (sent, back) {
            (Ok(()), Ok(Some(Ok(Message::Text(_))))) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            _ => {
                closed_after = Some(opened.elapsed());
                break;
            }
        }
    }
    let closed_after = closed_after.expect("max_duration closes a busy tunnel");
    assert!(
        closed_after >= Duration::from_millis(750) && closed_after < Duration::from_secs(3),
        "{closed_after:?}"
    );

    let counted = eventually(Duration::from_secs(3), || async {
        let t = gw.metrics().await;
        metric(
            &t,
            r#"gateway_tunnels_closed_total{route="idle",reason="idle_timeout"}"#,
        ) == Some(1.0)
            && metric(
                &t,
                r#"gateway_tunnels_closed_total{route="short",reason="max_duration"}"#,
            ) == Some(1.0)
    })
    .await;
    assert!(counted, "{}", gw.metrics().await);
}

/// Reads the responses on a kept-alive connection (until it is quiet for a second).
async fn read_responses(s: &mut TcpStream) -> String {
    read_all(s, Duration::from_secs(1)).await
}

const HANDSHAKE: &str = "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_forbidden_upgrades_stay_http() {
    // An upstream that does not speak WebSocket answers the handshake with 200.
    let plain = MockUpstream::start("plain").await;
    let yaml = GatewayConfig::new()
        .upstream(Upstream::new("plain").endpoint(plain.addr))
        .route(
            Route::new("forbidden")
                .prefix("/forbidden")
                .upstream("plain")
                .lines("    upgrades: {allow: []}\n"),
        )
        .route(Route::new("fixed").prefix("/fixed").respond("fixed"))
        .route(Route::new("all").upstream("plain"))
        .yaml();
    let gw = TestGateway::start(&yaml).await;

    // The upstream's answer comes back as a normal response, and bytes the client sent after the
    // handshake are the next request on the same connection, not tunnel bytes.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(format!("{HANDSHAKE}\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let resp = read_responses(&mut s).await;
    assert_eq!(resp.matches("HTTP/1.1 200").count(), 2, "{resp}");
    assert!(!resp.contains("101"), "{resp}");
    let seen = plain.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].uri, "/ws");
    assert!(
        hv(&seen[0].headers, "upgrade").eq_ignore_ascii_case("websocket"),
        "the upstream was asked: {:?}",
        seen[0].headers
    );
    assert_eq!(seen[1].uri, "/after");
    assert!(!seen[1].headers.contains_key("upgrade"));

    // A route that forbids upgrades, and a protocol no route allows: 403, upstream not asked.
    for (path, upgrade) in [("/forbidden/x", "websocket"), ("/other", "foo/1")] {
        let req = HANDSHAKE
            .replace("/ws", path)
            .replace("Upgrade: websocket", &format!("Upgrade: {upgrade}"));
        let resp = raw(
            gw.addr,
            format!("{req}\r\n").as_bytes(),
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(status_of(&resp), 403, "{resp}");
        assert!(resp.contains("upgrade_refused"), "{resp}");
    }
    assert_eq!(plain.hits(), 2);

    // An h2c offer is not an upgrade: served as HTTP/1.1, without the offer.
    let resp = raw(
        gw.addr,
        b"GET /h2c HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(!plain.last().headers.contains_key("upgrade"));
    assert!(!plain.last().headers.contains_key("http2-settings"));

    // A route that answers itself: a plain answer, and the connection goes on.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let req = HANDSHAKE.replace("/ws", "/fixed");
    s.write_all(format!("{req}\r\nGET /fixed/2 HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let resp = read_responses(&mut s).await;
    assert_eq!(resp.matches("HTTP/1.1 200").count(), 2, "{resp}");

    // A handshake with a body is refused before anything is forwarded.
    for framing in [
        "Content-Length: 5\r\n\r\nhello",
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        let resp = raw(
            gw.addr,
            format!("{HANDSHAKE}{framing}").as_bytes(),
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(status_of(&resp), 400, "{resp}");
    }
    assert_eq!(plain.hits(), 3);
}

/// A masked client frame (RFC 6455 section 5.3) with a text payload.
fn client_text_frame(text: &str) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x81, 0x80 | text.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_pipelined_after_the_handshake_reach_the_upstream_only_after_its_101() {
    let echo = Echo::start().await;
    let gw = TestGateway::start(&config(echo.addr, "").yaml()).await;

    // The handshake and a first frame in one write: the frame is held until the upstream switched,
    // then tunnelled, and comes back echoed after the 101.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut bytes = format!("{HANDSHAKE}\r\n").into_bytes();
    bytes.extend(client_text_frame("early"));
    s.write_all(&bytes).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !got.windows(5).any(|w| w == b"early") && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("upgrade: websocket"),
        "{text}"
    );
    let head_end = text.find("\r\n\r\n").unwrap() + 4;
    // The echo server's unmasked frame follows the head.
    assert_eq!(&got[head_end..], &[&[0x81u8, 5][..], b"early"].concat()[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_settings_are_checked_at_their_line() {
    for (lines, field, end) in [
        (
            "    upgrades:\n      allow: [websocket, 'web socket']\n",
            "routes[0].upgrades.allow[1]",
            "allow: [websocket, 'web socket']",
        ),
        (
            "    upgrades:\n      idle_timeout: 0s\n",
            "routes[0].upgrades.idle_timeout",
            "idle_timeout: 0s",
        ),
        (
            "    upgrades:\n      max_duration: soon\n",
            "routes[0].upgrades.max_duration",
            "max_duration: soon",
        ),
        (
            "    upgrades:\n      allowed: [websocket]\n",
            "routes[0].upgrades",
            "allowed: [websocket]",
        ),
    ] {
        let yaml = config("127.0.0.1:1".parse().unwrap(), lines).yaml();
        let e = refused(&yaml).await;
        let line = line_ending(&yaml, end);
        assert!(e.contains(&format!("test.yaml:{line}:")), "{e}");
        assert!(e.contains(field), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_tunnels_finish_within_the_drain_then_closes_them() {
    let echo = Echo::start().await;
    // Both close within the drain: shutdown ends as soon as they do.
    let gw = TestGateway::start(&config(echo.addr, "").yaml()).await;
    let mut a = ws(gw.addr, "/a").await;
    let addr = gw.addr;
    let started = Instant::now();
    let shutdown = tokio::spawn(gw.shutdown(Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Draining: the tunnel still works, new connections are not accepted.
    round_trip(&mut a, Message::text("during the drain")).await;
    assert!(
        TcpStream::connect(addr).await.is_err() || {
            raw(
                addr,
                b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
                Duration::from_millis(500),
            )
            .await
            .is_empty()
        }
    );
    a.close(None).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), shutdown)
            .await
            .expect("shutdown ends when the tunnel closes")
            .unwrap(),
        "every connection finished in time"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // One outlives the drain: it is closed when the drain timeout passes.
    let gw = TestGateway::start(&config(echo.addr, "").yaml()).await;
    let mut b = ws(gw.addr, "/b").await;
    let started = Instant::now();
    let shutdown = tokio::spawn(gw.shutdown(Duration::from_millis(800)));
    round_trip(&mut b, Message::text("still served")).await;
    let how = ended(&mut b, Duration::from_secs(5)).await;
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(700) && after < Duration::from_secs(4),
        "{after:?} {how}"
    );
    assert!(!shutdown.await.unwrap(), "the drain timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_gives_tunnels_of_the_old_config_the_drain_timeout() {
    let echo = Echo::start().await;
    let yaml = config(echo.addr, "")
        .raw("server:\n  drain_timeout: 700ms\n  access_log: {enabled: false}\n")
        .yaml();
    let gw = TestGateway::start(&yaml).await;
    let mut old = ws(gw.addr, "/old").await;
    let reloaded = Instant::now();
    gw.gw
        .as_ref()
        .unwrap()
        .reload_from(&config_text(&yaml))
        .await
        .expect("reload");
    // Opened after the reload: not affected by it.
    let mut new = ws(gw.addr, "/new").await;
    round_trip(&mut old, Message::text("old still works")).await;
    let how = ended(&mut old, Duration::from_secs(5)).await;
    let after = reloaded.elapsed();
    assert!(
        after >= Duration::from_millis(600) && after < Duration::from_secs(4),
        "{after:?} {how}"
    );
    round_trip(&mut new, Message::text("new lives on")).await;
    let t = gw.metrics().await;
    assert_eq!(
        tunnel_metric(
            &t,
            r#"gateway_tunnels_closed_total{route="ws",reason="drain"}"#
        ),
        1.0
    );
    assert_eq!(
        tunnel_metric(&t, r#"gateway_tunnels_open{route="ws"}"#),
        1.0
    );
}

/// An HTTP/2 extended CONNECT (RFC 8441) for `:protocol websocket` to `path`, over cleartext
/// HTTP/2: the response status and, for a 2xx, the tunnel.
async fn h2_connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<hyper::upgrade::Upgraded>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    // A first request, so that the server's SETTINGS (ENABLE_CONNECT_PROTOCOL) have come.
    let warm = http::Request::get(format!("http://gateway.test{path}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let _ = tx.send_request(warm).await;
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://gateway.test{path}"))
        .header("sec-websocket-version", "13");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(http_body_util::Empty::new()).unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let mut resp = tx.send_request(req).await.expect("a response");
    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        return (status, None);
    }
    let tunnel = hyper::upgrade::on(&mut resp).await.expect("the tunnel");
    (status, Some(tunnel))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_http2_extended_connect_reaches_an_http1_upstream() {
    let echo = Echo::start().await;
    let gw = TestGateway::start(&config(echo.addr, "").yaml()).await;
    let (status, tunnel) = h2_connect(gw.addr, "/h2/chat?x=1", &[]).await;
    assert_eq!(status, 200);
    let io = hyper_util::rt::TokioIo::new(tunnel.unwrap());
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Client, None).await;
    round_trip(&mut ws, Message::text("over h2")).await;
    round_trip(&mut ws, Message::binary(vec![3u8; 100_000])).await;
    // The upstream got an HTTP/1.1 handshake made from the CONNECT.
    let up = echo.last();
    assert_eq!(up.method, http::Method::GET);
    assert_eq!(up.uri, "/h2/chat?x=1");
    assert!(hv(&up.headers, "upgrade").eq_ignore_ascii_case("websocket"));
    assert_eq!(hv(&up.headers, "sec-websocket-version"), "13");
    assert_eq!(hv(&up.headers, "sec-websocket-key").len(), 24);
    ws.close(None).await.unwrap();
    ended(&mut ws, Duration::from_secs(5)).await;
    let closed = eventually(Duration::from_secs(5), || async {
        let t = gw.metrics().await;
        metric(&t, r#"gateway_tunnels_open{route="ws"}"#) == Some(0.0)
    })
    .await;
    assert!(closed, "{}", gw.metrics().await);

    // A forbidden upgrade over HTTP/2 is a 403, not a tunnel.
    let gw = TestGateway::start(&config(echo.addr, "    upgrades: {allow: []}\n").yaml()).await;
    let (status, tunnel) = h2_connect(gw.addr, "/x", &[]).await;
    assert_eq!(status, 403);
    assert!(tunnel.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_offers_and_http10_upgrade_headers_are_plain_requests_with_their_bodies() {
    let plain = MockUpstream::start("plain").await;
    let yaml = GatewayConfig::new()
        .upstream(Upstream::new("plain").endpoint(plain.addr))
        .route(Route::new("all").upstream("plain"))
        .yaml();
    let gw = TestGateway::start(&yaml).await;

    // What `curl --http2 -d hello` sends: the offer is dropped, the body forwarded, and the
    // connection goes on as HTTP/1.1.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /h2c HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello\
          GET /after HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .await
    .unwrap();
    let resp = read_responses(&mut s).await;
    assert_eq!(resp.matches("HTTP/1.1 200").count(), 2, "{resp}");
    let seen = plain.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].uri, "/h2c");
    assert_eq!(&seen[0].body[..], b"hello");
    assert!(!seen[0].headers.contains_key("upgrade"));
    assert!(!seen[0].headers.contains_key("http2-settings"));
    assert_eq!(seen[1].uri, "/after");

    // HTTP/1.0 cannot upgrade (RFC 9110 section 7.8): a plain request, body and all, and the
    // upstream is not asked to switch.
    let resp = raw(
        gw.addr,
        b"POST /old HTTP/1.0\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 5\r\n\r\nhello",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let up = plain.last();
    assert_eq!(up.uri, "/old");
    assert_eq!(&up.body[..], b"hello");
    assert!(!up.headers.contains_key("upgrade"), "{:?}", up.headers);
    assert!(!hv(&up.headers, "connection")
        .to_ascii_lowercase()
        .contains("upgrade"));
}

/// An upstream that answers every request with a WebSocket 101 once `release` gives it a permit,
/// and keeps the connection open; each request head it got goes to the returned channel.
async fn switching_upstream(
    release: Arc<tokio::sync::Semaphore>,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (heads, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = tcp.accept().await {
            let (heads, release) = (heads.clone(), release.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
                release.acquire().await.unwrap().forget();
                let switch = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
                if s.write_all(switch.as_bytes()).await.is_err() {
                    return;
                }
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_the_client_cannot_take_is_a_502() {
    let (addr, mut heads) = switching_upstream(Arc::new(tokio::sync::Semaphore::new(100))).await;
    let gw = TestGateway::start(&config(addr, "").yaml()).await;

    // An HTTP/1.0 "handshake" is a plain request: the upstream is not asked to switch, and its
    // 101 anyway is no answer for a client that cannot switch (not a 101 then a closed connection).
    let resp = raw(
        gw.addr,
        format!(
            "{}\r\n",
            HANDSHAKE
                .replace("HTTP/1.1", "HTTP/1.0")
                .replace("/ws", "/old")
        )
        .as_bytes(),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(status_of(&resp), 502, "{resp}");
    assert!(resp.contains("upgrade_failed"), "{resp}");
    let head = heads.recv().await.unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /old "), "{head}");
    assert!(!head.contains("upgrade"), "the upstream was asked: {head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extended_connect_the_upstream_answers_without_a_switch_is_a_502() {
    let plain = MockUpstream::start("plain").await;
    let yaml = GatewayConfig::new()
        .upstream(Upstream::new("plain").endpoint(plain.addr))
        .route(Route::new("plain").prefix("/plain").upstream("plain"))
        .yaml();
    let gw = TestGateway::start(&yaml).await;

    // RFC 8441: a 2xx to an extended CONNECT says the tunnel is open. An upstream that answers
    // the translated handshake with a page opened none: 502.
    let (status, tunnel) = h2_connect(gw.addr, "/plain/ws", &[]).await;
    assert_eq!(status, 502);
    assert!(tunnel.is_none());
    assert!(
        hv(&plain.last().headers, "upgrade").eq_ignore_ascii_case("websocket"),
        "the upstream was asked: {:?}",
        plain.last().headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_begun_before_a_reload_is_drained_with_the_old_config() {
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let (addr, mut heads) = switching_upstream(release.clone()).await;
    let yaml = config(addr, "")
        .raw("server:\n  drain_timeout: 500ms\n  access_log: {enabled: false}\n")
        .yaml();
    let gw = TestGateway::start(&yaml).await;

    // The handshake reaches the upstream under the first config; the config is replaced (and the
    // drain clock starts) before the upstream switches.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(format!("{HANDSHAKE}\r\n").as_bytes())
        .await
        .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(5), heads.recv())
        .await
        .expect("the handshake reaches the upstream")
        .unwrap();
    assert!(head.starts_with("GET /ws"), "{head}");
    let reloaded = Instant::now();
    gw.gw
        .as_ref()
        .unwrap()
        .reload_from(&config_text(&yaml))
        .await
        .expect("reload");
    release.add_permits(1);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => return,
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    // The tunnel opened under the new config but belongs to the old one: its drain closes it.
    assert!(
        closed.is_ok(),
        "the tunnel outlived the reload's drain: {:?}",
        reloaded.elapsed()
    );
    let t = gw.metrics().await;
    assert_eq!(
        tunnel_metric(
            &t,
            r#"gateway_tunnels_closed_total{route="ws",reason="drain"}"#
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_tunnel_is_drained_like_an_http1_one() {
    let echo = Echo::start().await;
    // Closed by its client within the drain: shutdown ends as soon as it is.
    let gw = TestGateway::start(&config(echo.addr, "").yaml()).await;
    let (status, tunnel) = h2_connect(gw.addr, "/h2/a", &[]).await;
    assert_eq!(status, 200);
    let io = hyper_util::rt::TokioIo::new(tunnel.unwrap());
    let mut a = WebSocketStream::from_raw_socket(io, Role::Client, None).await;
    let started = Instant::now();
    let shutdown = tokio::spawn(gw.shutdown(Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    round_trip(&mut a, Message::text("during the drain, over h2")).await;
    a.close(None).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), shutdown)
            .await
            .expect("shutdown ends when the h2 tunnel closes")
            .unwrap(),
        "every connection finished in time"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // Outliving the drain: the stream is ended when the drain timeout passes.
    let gw = TestGateway::start(&config(echo.addr, "").yaml()).await;
    let (status, tunnel) = h2_connect(gw.addr, "/h2/b", &[]).await;
    assert_eq!(status, 200);
    let io = hyper_util::rt::TokioIo::new(tunnel.unwrap());
    let mut b = WebSocketStream::from_raw_socket(io, Role::Client, None).await;
    let started = Instant::now();
    let shutdown = tokio::spawn(gw.shutdown(Duration::from_millis(800)));
    round_trip(&mut b, Message::text("still served over h2")).await;
    let how = ended(&mut b, Duration::from_secs(5)).await;
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(700) && after < Duration::from_secs(4),
        "{after:?} {how}"
    );
    assert!(!shutdown.await.unwrap(), "the drain timed out");
}
