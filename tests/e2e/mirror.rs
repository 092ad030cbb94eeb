//! Request mirroring: a route's `mirror:` sends a copy of a sampled share of its requests to a shadow
//! upstream, fire and forget. The shadow gets the same request; a slow, silent or absent shadow never
//! changes the main response; bodies over the limit and mirrors over the cap are skipped and
//! counted.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// Upstreams `main` and `shadow`, and a route `r` to main mirrored to shadow with `mirror` (the
/// inside of the braces, after `upstream: shadow`).
fn mirrored(main: SocketAddr, shadow: SocketAddr, mirror: &str) -> String {
    GatewayConfig::new()
        .upstream(Upstream::new("main").endpoint(main))
        .upstream(Upstream::new("shadow").endpoint(shadow))
        .route(
            Route::new("r")
                .upstream("main")
                .lines(&format!("    mirror: {{upstream: shadow{mirror}}}\n")),
        )
        .yaml()
}

/// The count of one outcome of route `r`'s mirror.
fn outcome(metrics: &str, outcome: &str) -> f64 {
    metric(
        metrics,
        &format!("gateway_mirror_requests_total{{route=\"r\",outcome=\"{outcome}\"}}"),
    )
    .unwrap_or_else(|| panic!("no {outcome} count in\n{metrics}"))
}

fn in_flight(metrics: &str) -> f64 {
    metric(metrics, "gateway_mirror_in_flight{route=\"r\"}").expect("the in-flight gauge")
}

/// Waits until route `r` has no mirror in flight, and returns the metrics then.
async fn settled(gw: &TestGateway) -> String {
    let mut last = String::new();
    let done = eventually(Duration::from_secs(20), async || {
        last = gw.metrics().await;
        in_flight(&last) == 0.0
    })
    .await;
    assert!(done, "mirrors still in flight:\n{last}");
    last
}

/// A shadow that accepts connections, reads what comes, and never answers.
struct Silent {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// What each connection sent so far.
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Silent {
    async fn start() -> Silent {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (a, r) = (accepted.clone(), received.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = tcp.accept().await {
                let n = a.fetch_add(1, Ordering::SeqCst);
                r.lock().unwrap().push(Vec::new());
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    // Reads until the gateway closes; never writes.
                    while let Ok(k) = s.read(&mut buf).await {
                        if k == 0 {
                            break;
                        }
                        r.lock().unwrap()[n].extend_from_slice(&buf[..k]);
                    }
                    // Held open until the task is aborted or the peer closes.
                    std::future::pending::<()>().await;
                });
            }
        });
        Silent {
            addr,
            accepted,
            received,
            task,
        }
    }

    /// Connections whose request head has fully arrived.
    fn heads(&self) -> usize {
        let r = self.received.lock().unwrap();
        r.iter()
            .filter(|b| b.windows(4).any(|w| w == b"\r\n\r\n"))
            .count()
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadow_gets_the_same_request_with_a_shadow_host() {
    let main = MockUpstream::start("main").await;
    let shadow = MockUpstream::start("shadow").await;
    let gw = TestGateway::start(&mirrored(main.addr, shadow.addr, "")).await;
    let body = "{\"order\": 42}";
    let req = http::Request::post(gw.url("/orders/7?expand=items&x=%20y"))
        .header("host", "shop.example.com:8080")
        .header("content-type", "application/json")
        .header("x-from", "client")
        .header("x-multi", "one")
        .header("x-multi", "two")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (status, h, text) = request(req).await;
    assert_eq!(
        (status, hv(&h, "x-upstream").as_str()),
        (200, "main"),
        "{text}"
    );
    let arrived = eventually(Duration::from_secs(10), || async { shadow.hits() == 1 }).await;
    assert!(arrived, "the shadow got the copy");
    let (m, s) = (main.last(), shadow.last());
    assert_eq!(s.method, "POST");
    assert_eq!(s.uri, "/orders/7?expand=items&x=%20y");
    assert_eq!(s.uri, m.uri);
    assert_eq!(&s.body[..], body.as_bytes());
    assert_eq!(hv(&s.headers, "host"), "shop.example.com-shadow:8080");
    assert_eq!(hv(&m.headers, "host"), "shop.example.com:8080");
    for name in [
        "content-type",
        "x-from",
        "x-request-id",
        "x-forwarded-for",
        "content-length",
    ] {
        assert_eq!(hv(&s.headers, name), hv(&m.headers, name), "{name}");
    }
    assert_eq!(values(&s.headers, "x-multi"), ["one", "two"]);
    let m = settled(&gw).await;
    assert_eq!(outcome(&m, "sent"), 1.0);
    assert_eq!(outcome(&m, "failed"), 0.0);

    // A chunked body is copied as it streams, and sent whole (with its length) once it ends.
    let raw_req = "POST /chunked HTTP/1.1\r\nhost: a.example\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let resp = raw(gw.addr, raw_req.as_bytes(), Duration::from_secs(10)).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(resp.contains("mock main /chunked"), "{resp}");
    let arrived = eventually(Duration::from_secs(10), || async { shadow.hits() == 2 }).await;
    assert!(arrived, "the shadow got the chunked copy");
    let s = shadow.last();
    assert_eq!(
        (s.uri.as_str(), &s.body[..]),
        ("/chunked", &b"hello world"[..])
    );
    assert_eq!(hv(&s.headers, "host"), "a.example-shadow");
    assert_eq!(&main.last().body[..], b"hello world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_0_and_100_are_exact_and_50_is_within_six_sigma() {
    let main = MockUpstream::start("main").await;
    let shadow = MockUpstream::start("shadow").await;
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let send = |gw: &TestGateway, n: usize| {
        let (client, url) = (client.clone(), gw.url("/p"));
        async move {
            for i in 0..n {
                let req = http::Request::get(format!("{url}/{i}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let (status, h, _) = request_via(&client, req).await;
                assert_eq!((status, hv(&h, "x-upstream").as_str()), (200, "main"));
            }
        }
    };
    let gw = TestGateway::start(&mirrored(main.addr, shadow.addr, ", percent: 0")).await;
    send(&gw, 200).await;
    let m = settled(&gw).await;
    assert_eq!((outcome(&m, "sent"), shadow.hits()), (0.0, 0));
    drop(gw);

    let gw = TestGateway::start(&mirrored(main.addr, shadow.addr, ", percent: 100")).await;
    send(&gw, 200).await;
    let m = settled(&gw).await;
    assert_eq!((outcome(&m, "sent"), shadow.hits()), (200.0, 200));
    drop(gw);

    // Binomial(1000, 0.5): sigma ~15.8; six sigma either side fails about once in 500 million.
    const N: usize = 1000;
    let gw = TestGateway::start(&mirrored(
        main.addr,
        shadow.addr,
        ", percent: 50, max_in_flight: 10000",
    ))
    .await;
    send(&gw, N).await;
    let m = settled(&gw).await;
    let sent = outcome(&m, "sent");
    assert_eq!(sent as usize, shadow.hits() - 200);
    assert_eq!(outcome(&m, "skipped_busy") + outcome(&m, "failed"), 0.0);
    let (mean, sigma) = (N as f64 * 0.5, (N as f64 * 0.25).sqrt());
    assert!(
        (sent - mean).abs() <= 6.0 * sigma,
        "{sent} of {N} mirrored at 50%"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_that_never_answers_does_not_hold_the_main_response() {
    let main = MockUpstream::start("main").await;
    let shadow = Silent::start().await;
    let gw = TestGateway::start(&mirrored(main.addr, shadow.addr, ", timeout: 60s")).await;
    let (status, h, _) = get(&gw.url("/first")).await;
    assert_eq!((status, hv(&h, "x-upstream").as_str()), (200, "main"));
    let held = eventually(Duration::from_secs(10), || async { shadow.heads() == 1 }).await;
    assert!(held, "the shadow has the first copy");
    // The first copy is held by the shadow (which never answers): the next request's response
    // arrives while both copies are still out, and nothing has been counted as done.
    let req = http::Request::post(gw.url("/second"))
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let (status, h, body) = request(req).await;
    assert_eq!(
        (status, hv(&h, "x-upstream").as_str()),
        (200, "main"),
        "{body}"
    );
    assert_eq!(body, "mock main /second\n");
    let m = gw.metrics().await;
    assert_eq!(outcome(&m, "sent") + outcome(&m, "failed"), 0.0, "{m}");
    assert!(in_flight(&m) >= 1.0, "{m}");
    assert!(shadow.accepted.load(Ordering::SeqCst) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_past_the_cap_are_skipped() {
    let main = MockUpstream::start("main").await;
    let shadow = Silent::start().await;
    let gw = TestGateway::start(&mirrored(
        main.addr,
        shadow.addr,
        ", max_in_flight: 1, timeout: 60s",
    ))
    .await;
    assert_eq!(get(&gw.url("/one")).await.0, 200);
    let held = eventually(Duration::from_secs(10), || async { shadow.heads() == 1 }).await;
    assert!(held, "the shadow holds the first copy");
    for path in ["/two", "/three"] {
        let (status, h, _) = get(&gw.url(path)).await;
        assert_eq!((status, hv(&h, "x-upstream").as_str()), (200, "main"));
    }
    let m = gw.metrics().await;
    assert_eq!(outcome(&m, "skipped_busy"), 2.0, "{m}");
    assert_eq!(in_flight(&m), 1.0, "{m}");
    assert_eq!(shadow.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_shadow_is_given_up_at_the_mirror_timeout() {
    let main = MockUpstream::start("main").await;
    let shadow = Silent::start().await;
    let gw = TestGateway::start(&mirrored(main.addr, shadow.addr, ", timeout: 200ms")).await;
    assert_eq!(get(&gw.url("/one")).await.0, 200);
    let m = settled(&gw).await;
    assert_eq!(
        (outcome(&m, "failed"), outcome(&m, "sent")),
        (1.0, 0.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "gateway_upstream_errors_total{upstream=\"shadow\",kind=\"timeout\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_that_is_down_leaves_the_response_intact_and_counts_failed() {
    let main = MockUpstream::start("main").await;
    let down: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = TestGateway::start(&mirrored(main.addr, down, "")).await;
    for i in 0..5 {
        let req = http::Request::post(gw.url(&format!("/echo?i={i}")))
            .body(Full::new(Bytes::from(format!("body {i}"))))
            .unwrap();
        let (status, h, body) = request(req).await;
        assert_eq!((status, body), (200, format!("body {i}")));
        assert_eq!(hv(&h, "x-upstream"), "main");
    }
    let m = settled(&gw).await;
    assert_eq!(
        (outcome(&m, "failed"), outcome(&m, "sent")),
        (5.0, 0.0),
        "{m}"
    );
    assert_eq!(main.hits(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_not_mirrored() {
    let main = MockUpstream::start("main").await;
    let shadow = MockUpstream::start("shadow").await;
    let gw = TestGateway::start(&mirrored(main.addr, shadow.addr, ", max_body: 16")).await;
    let post = |path: &str, body: &'static [u8]| {
        http::Request::post(gw.url(path))
            .body(Full::new(Bytes::from_static(body)))
            .unwrap()
    };
    // Declared over the limit: the main upstream gets it all, the shadow nothing.
    let (status, _, body) = request(post("/echo", b"0123456789abcdefXYZ")).await;
    assert_eq!((status, body.as_str()), (200, "0123456789abcdefXYZ"));
    // At the limit: mirrored.
    let (status, _, _) = request(post("/echo", b"0123456789abcdef")).await;
    assert_eq!(status, 200);
    // Chunked, found over the limit as it streams: the main upstream still gets it all.
    let raw_req = "POST /echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\na\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n";
    let resp = raw(gw.addr, raw_req.as_bytes(), Duration::from_secs(10)).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(resp.ends_with("0123456789abcdefghij"), "{resp}");
    let m = settled(&gw).await;
    assert_eq!(
        (outcome(&m, "skipped_body"), outcome(&m, "sent")),
        (2.0, 1.0),
        "{m}"
    );
    assert_eq!(shadow.hits(), 1);
    assert_eq!(&shadow.last().body[..], b"0123456789abcdef");
    assert_eq!(main.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_route_is_mirrored_too_and_bad_mirrors_are_refused_at_their_line() {
    let a = MockUpstream::start("a").await;
    let shadow = MockUpstream::start("shadow").await;
    let gw = TestGateway::start(
        &GatewayConfig::new()
            .upstream(Upstream::new("a").endpoint(a.addr))
            .upstream(Upstream::new("shadow").endpoint(shadow.addr))
            .route(Route::new("r").lines(
                "    split:\n      weights: [{upstream: a, weight: 1}]\n    mirror: {upstream: shadow}\n",
            ))
            .yaml(),
    )
    .await;
    assert_eq!(get(&gw.url("/split")).await.0, 200);
    let m = settled(&gw).await;
    assert_eq!(outcome(&m, "sent"), 1.0);
    assert_eq!(shadow.last().uri, "/split");

    let up = "upstreams:\n  - name: a\n    endpoints: [127.0.0.1:1]\n";
    let cases = [
        (
            "    upstream: a\n    mirror:\n      upstream: nope\n",
            "upstream: nope",
            7,
            "routes[0].mirror.upstream: unknown upstream `nope`",
        ),
        (
            "    upstream: a\n    mirror:\n      upstream: a\n      percent: 150\n",
            "percent: 150",
            7,
            "routes[0].mirror.percent: 150 is not between 0 and 100",
        ),
        (
            "    direct_response: {body: hi}\n    mirror: {upstream: a}\n",
            "mirror: {upstream: a}",
            5,
            "routes[0].mirror: a route mirrors what it forwards",
        ),
        (
            "    upstream: a\n    mirror: {upstream: a, max_body: lots}\n",
            "max_body: lots}",
            0,
            "routes[0].mirror.max_body",
        ),
    ];
    for (lines, end, col, want) in cases {
        let yaml = format!("{up}routes:\n  - name: r\n{lines}");
        let err = refused(&yaml).await;
        let line = line_ending(&yaml, end);
        let want = match col {
            0 => format!("test.yaml:{line}:"),
            _ => format!("test.yaml:{line}:{col}: {want}"),
        };
        assert!(err.contains(&want), "want {want}\n got {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_ends_is_not_mirrored() {
    use tokio::io::AsyncWriteExt;
    let main = MockUpstream::start("main").await;
    let shadow = MockUpstream::start("shadow").await;
    let gw = TestGateway::start(&mirrored(main.addr, shadow.addr, "")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    // Once the main upstream has the request, its mirror has begun copying the body; then the
    // client goes away before the body's end.
    let started = eventually(Duration::from_secs(10), || async { main.hits() == 1 }).await;
    assert!(started, "the main upstream got the request");
    drop(s);
    let m = settled(&gw).await;
    assert_eq!(
        (outcome(&m, "incomplete"), outcome(&m, "sent")),
        (1.0, 0.0),
        "{m}"
    );
    assert_eq!(shadow.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_shadow_gets_the_shadow_host_as_its_authority() {
    let main = MockUpstream::start("main").await;
    let shadow = MockUpstream::start("shadow").await;
    let gw = TestGateway::start(
        &GatewayConfig::new()
            .upstream(Upstream::new("main").endpoint(main.addr))
            .upstream(
                Upstream::new("shadow")
                    .endpoint(shadow.addr)
                    .lines("    protocol: http2\n"),
            )
            .route(
                Route::new("r")
                    .upstream("main")
                    .lines("    mirror: {upstream: shadow}\n"),
            )
            .yaml(),
    )
    .await;
    let (status, _, _) = get_with(&gw.url("/h2?x=1"), &[("host", "shop.example.com")]).await;
    assert_eq!(status, 200);
    let m = settled(&gw).await;
    assert_eq!(outcome(&m, "sent"), 1.0, "{m}");
    let s = shadow.last();
    assert_eq!(s.version, http::Version::HTTP_2);
    assert_eq!(s.uri, "http://shop.example.com-shadow/h2?x=1");
    assert!(s.headers.get("host").is_none(), "{:?}", s.headers);
}
