//! The built-in `proxy-cache` plugin through the real gateway, in front of an origin written for the
//! test (a small hyper server that counts hits per path and answers with the cache headers a path
//! asks for): hit ratio and headers, responses and requests that are not cached, variants by `Vary`,
//! the memory bound and LRU eviction read from /metrics, request coalescing (50 concurrent misses,
//! one upstream request), a 1 MiB body byte for byte, purge through the admin API, stale-if-error
//! with the origin failing and gone, and a bad config at its line. Waiting for expiry sleeps past a
//! 1 s TTL; nothing asserts how long anything took.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// What the origin answers with, by path:
/// - `/cc/{value}`: `Cache-Control: {value}` (`+` for spaces, `~` for commas);
/// - `/vary`: `Vary: Accept-Language`, the body naming the request's language;
/// - `/held`: waits until the test releases it (before looking at `failing`);
/// - `/big`: a 1 MiB body;
/// - `/size/{n}/...`: a body of n bytes;
/// - anything else: `origin {path} #{hits of that path}`.
///
/// With `failing` set, every answer is a 503.
#[derive(Default)]
struct OriginState {
    hits: Mutex<HashMap<String, usize>>,
    failing: AtomicBool,
    connections: Mutex<Vec<tokio::task::AbortHandle>>,
}

struct Origin {
    addr: std::net::SocketAddr,
    state: Arc<OriginState>,
    release: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// 1 MiB of text that differs all along (an LCG's digits), so a byte out of place shows.
fn big_body() -> String {
    let mut x: u32 = 12345;
    (0..1 << 20)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            char::from(b'a' + ((x >> 16) % 26) as u8)
        })
        .collect()
}

async fn origin_answer(
    req: http::Request<hyper::body::Incoming>,
    state: Arc<OriginState>,
    mut release: watch::Receiver<bool>,
) -> http::Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let n = {
        let mut hits = state.hits.lock().unwrap();
        let n = hits.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    if path == "/held" {
        let _ = release.wait_for(|r| *r).await;
    }
    let mut b = http::Response::builder().header("content-type", "text/plain");
    if state.failing.load(Ordering::SeqCst) {
        return b
            .status(503)
            .body(Full::new(Bytes::from("origin failing\n")))
            .unwrap();
    }
    let body = if let Some(cc) = path.strip_prefix("/cc/") {
        b = b.header("cache-control", cc.replace('+', " ").replace('~', ","));
        format!("origin {path} #{n}")
    } else if path == "/vary" {
        b = b.header("vary", "Accept-Language");
        let lang = req
            .headers()
            .get("accept-language")
            .map(|v| v.to_str().unwrap_or("?").to_owned())
            .unwrap_or_default();
        format!("lang {lang} #{n}")
    } else if path == "/held" {
        format!("held #{n}")
    } else if path == "/big" {
        big_body()
    } else if let Some(rest) = path.strip_prefix("/size/") {
        let len: usize = rest.split('/').next().unwrap().parse().unwrap();
        "s".repeat(len)
    } else {
        format!("origin {path} #{n}")
    };
    b.body(Full::new(Bytes::from(body))).unwrap()
}

impl Origin {
    async fn start() -> Origin {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let state = Arc::new(OriginState::default());
        let (release, rx) = watch::channel(false);
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = tcp.accept().await else {
                    continue;
                };
                let (st, rx) = (st.clone(), rx.clone());
                let conns = st.clone();
                let conn = tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (st, rx) = (st.clone(), rx.clone());
                        async move {
                            Ok::<_, std::convert::Infallible>(origin_answer(req, st, rx).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
                conns.connections.lock().unwrap().push(conn.abort_handle());
            }
        });
        Origin {
            addr,
            state,
            release,
            task,
        }
    }

    /// Stops listening and closes every connection: the origin is gone.
    async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        for c in self.state.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    fn total_hits(&self) -> usize {
        self.state.hits.lock().unwrap().values().sum()
    }
}

/// A gateway with one route `/` to the origin through proxy-cache configured with `config` (a YAML
/// flow map's inside), and `top` (top-level YAML, e.g. `cache:`).
async fn gateway(origin: &Origin, config: &str, top: &str) -> TestGateway {
    let yaml = GatewayConfig::new()
        .upstream(Upstream::new("origin").endpoint(origin.addr))
        .route(
            Route::new("cached")
                .prefix("/")
                .upstream("origin")
                .lines(&format!(
                    "    filters: [{{plugin: proxy-cache, config: {{{config}}}}}]\n"
                )),
        )
        .raw(top)
        .yaml();
    TestGateway::start(&yaml).await
}

fn status(h: &http::HeaderMap) -> String {
    hv(h, "x-cache-status")
}

fn series(name: &str) -> String {
    format!("{name}{{plugin=\"proxy-cache\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_requests_for_m_urls_reach_the_origin_m_times_with_the_cache_headers() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "ttl: 60s", "").await;
    let urls = ["/a", "/b?x=1", "/b?x=2"];
    let mut first: HashMap<&str, String> = HashMap::new();
    for round in 0..10 {
        for u in urls {
            let (s, h, body) = get(&gw.url(u)).await;
            assert_eq!(s, 200, "{body}");
            if round == 0 {
                assert_eq!(status(&h), "MISS", "{u}");
                assert!(h.get("age").is_none(), "{u}: a miss has no Age");
                first.insert(u, body);
            } else {
                assert_eq!(status(&h), "HIT", "{u} round {round}");
                let age: u64 = hv(&h, "age").parse().expect("Age on a hit");
                assert!(age < 60, "{age}");
                assert_eq!(body, first[u], "a hit is the stored answer");
                assert_eq!(hv(&h, "content-type"), "text/plain");
            }
        }
    }
    assert_eq!(
        origin.total_hits(),
        urls.len(),
        "one upstream request per URL"
    );
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, &series("gateway_cache_entries")),
        Some(3.0),
        "{m}"
    );
    let hits = r#"gateway_cache_lookups_total{plugin="proxy-cache",result="hit"}"#;
    assert_eq!(metric(&m, hits), Some(27.0), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_store_and_private_are_not_stored_and_authorization_bypasses() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "", "").await;
    for path in [
        "/cc/no-store",
        "/cc/private",
        "/cc/no-cache",
        "/cc/max-age=0",
    ] {
        for _ in 0..3 {
            let (s, h, _) = get(&gw.url(path)).await;
            assert_eq!((s, status(&h).as_str()), (200, "MISS"), "{path}");
        }
        assert_eq!(origin.hits(path), 3, "{path} is never stored");
    }
    // A cacheable URL, stored by a first request...
    assert_eq!(status(&get(&gw.url("/cc/max-age=60")).await.1), "MISS");
    assert_eq!(status(&get(&gw.url("/cc/max-age=60")).await.1), "HIT");
    // ...is not served to a request with credentials, which goes upstream.
    for _ in 0..2 {
        let (s, h, body) =
            get_with(&gw.url("/cc/max-age=60"), &[("authorization", "Bearer t")]).await;
        assert_eq!((s, status(&h).as_str()), (200, "BYPASS"), "{body}");
    }
    let (_, h, _) = get_with(&gw.url("/cc/max-age=60"), &[("cache-control", "no-cache")]).await;
    assert_eq!(status(&h), "BYPASS");
    assert_eq!(origin.hits("/cc/max-age=60"), 4);
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, &series("plugin_cache_bypasses_total")),
        Some(3.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_the_gateways_limit_bypasses_the_cache() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "cache_key: {headers: [x-tenant]}", "").await;
    // The key holds the header's value: 9000 bytes is over the 8 KiB a key may have.
    let long = "t".repeat(9000);
    for _ in 0..2 {
        let (s, h, _) = get_with(&gw.url("/tenant"), &[("x-tenant", &long)]).await;
        assert_eq!((s, status(&h).as_str()), (200, "BYPASS"));
    }
    assert_eq!(origin.hits("/tenant"), 2);
    let (_, h, _) = get_with(&gw.url("/tenant"), &[("x-tenant", "short")]).await;
    assert_eq!(status(&h), "MISS");
    let (_, h, _) = get_with(&gw.url("/tenant"), &[("x-tenant", "short")]).await;
    assert_eq!(status(&h), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_key_auth_each_consumer_has_its_own_entries() {
    let origin = Origin::start().await;
    let yaml = GatewayConfig::new()
        .upstream(Upstream::new("origin").endpoint(origin.addr))
        .route(Route::new("cached").prefix("/").upstream("origin").lines(
            "    filters:\n      - plugin: key-auth\n      - plugin: proxy-cache\n        config: {cache_key: {consumer: true}}\n",
        ))
        .raw(
            "consumers:\n  - name: alice\n    credentials: {key-auth: {key: k-alice}}\n  - name: bob\n    credentials: {key-auth: {key: k-bob}}\n",
        )
        .yaml();
    let gw = TestGateway::start(&yaml).await;
    for (round, want) in [(0, "MISS"), (1, "HIT")] {
        for (key, n) in [("k-alice", 1), ("k-bob", 2)] {
            let (s, h, body) = get_with(&gw.url("/me"), &[("apikey", key)]).await;
            assert_eq!((s, status(&h).as_str()), (200, want), "{key} round {round}");
            assert_eq!(
                body,
                format!("origin /me #{n}"),
                "{key} gets its own answer"
            );
        }
    }
    // Without a key, key-auth answers before the cache is looked at.
    let (s, h, _) = get(&gw.url("/me")).await;
    assert_eq!(s, 401);
    assert!(h.get("x-cache-status").is_none());
    assert_eq!(origin.hits("/me"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accept_languages_are_two_entries() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "", "").await;
    for round in 0..3 {
        for lang in ["en", "fr"] {
            let (s, h, body) = get_with(&gw.url("/vary"), &[("accept-language", lang)]).await;
            assert_eq!(s, 200);
            assert_eq!(
                body,
                format!("lang {lang} #{}", if lang == "en" { 1 } else { 2 })
            );
            let want = if round == 0 { "MISS" } else { "HIT" };
            assert_eq!(status(&h), want, "{lang} round {round}");
            assert_eq!(hv(&h, "vary"), "Accept-Language");
        }
    }
    assert_eq!(origin.hits("/vary"), 2);
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, &series("gateway_cache_entries")),
        Some(2.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_stays_within_max_size_and_evicts_the_oldest() {
    let origin = Origin::start().await;
    // 64 KiB of cache; 40 responses of 4 KiB each (160 KiB) go through it.
    let gw = gateway(
        &origin,
        "",
        "cache: {max_size: 64KiB, max_entry_size: 16KiB}\n",
    )
    .await;
    for i in 0..40 {
        let (s, h, body) = get(&gw.url(&format!("/size/4096/{i}"))).await;
        assert_eq!((s, body.len()), (200, 4096));
        assert_eq!(status(&h), "MISS");
        let m = gw.metrics().await;
        let bytes = metric(&m, &series("gateway_cache_bytes")).expect("bytes");
        assert!(bytes <= 65536.0, "{bytes} over the bound after {i}");
        assert!(metric(&m, "gateway_cache_bytes_used").unwrap() <= 65536.0);
    }
    let m = gw.metrics().await;
    let evictions = metric(&m, &series("gateway_cache_evictions_total")).unwrap();
    let entries = metric(&m, &series("gateway_cache_entries")).unwrap();
    assert!(entries >= 10.0, "{m}");
    assert_eq!(entries + evictions, 40.0, "{m}");
    assert_eq!(metric(&m, "gateway_cache_max_bytes"), Some(65536.0));
    // The newest is still there; the oldest went first.
    assert_eq!(status(&get(&gw.url("/size/4096/39")).await.1), "HIT");
    assert_eq!(status(&get(&gw.url("/size/4096/0")).await.1), "MISS");
    // An entry over max_entry_size is not stored at all.
    for _ in 0..2 {
        let (s, h, body) = get(&gw.url("/size/20000/x")).await;
        assert_eq!((s, body.len(), status(&h).as_str()), (200, 20000, "MISS"));
    }
    assert_eq!(origin.hits("/size/20000/x"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_new_bounds_and_keeps_the_entries() {
    let origin = Origin::start().await;
    let yaml = |top: &str| {
        GatewayConfig::new()
            .upstream(Upstream::new("origin").endpoint(origin.addr))
            .route(
                Route::new("cached")
                    .prefix("/")
                    .upstream("origin")
                    .lines("    filters: [{plugin: proxy-cache}]\n"),
            )
            .raw(top)
            .yaml()
    };
    let gw = TestGateway::start(&yaml("")).await;
    for i in 0..10 {
        get(&gw.url(&format!("/size/4096/{i}"))).await;
    }
    let m = gw.metrics().await;
    assert_eq!(
        metric(&m, &series("gateway_cache_entries")),
        Some(10.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "gateway_cache_max_bytes"),
        Some((64 << 20) as f64)
    );
    let (s, _, body) = admin_call(
        gw.admin,
        "PUT",
        "/config",
        &config_text(&yaml("cache: {max_size: 16KiB}\n")),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let m = gw.metrics().await;
    assert_eq!(metric(&m, "gateway_cache_max_bytes"), Some(16384.0), "{m}");
    assert!(
        metric(&m, &series("gateway_cache_bytes")).unwrap() <= 16384.0,
        "{m}"
    );
    let evicted = metric(&m, &series("gateway_cache_evictions_total")).unwrap();
    let entries = metric(&m, &series("gateway_cache_entries")).unwrap();
    assert!(entries >= 1.0 && entries + evicted == 10.0, "{m}");
    // The newest entry survived the reload and the smaller bound.
    assert_eq!(status(&get(&gw.url("/size/4096/9")).await.1), "HIT");
    let (_, _, config) = get(&format!("http://{}/config", gw.admin)).await;
    let shown = &json(&config)["cache"];
    assert_eq!(
        (&shown["max_size"], &shown["max_entry_size"]),
        (&serde_json::json!("16KiB"), &serde_json::json!("16KiB")),
        "{config}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_misses_make_one_upstream_request() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "lock_timeout: 30s", "").await;
    let url = gw.url("/held");
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    // Every request is in: one at the origin, 49 waiting for its fill.
    let waiting = series("gateway_cache_waiting");
    let all_in = eventually(Duration::from_secs(10), async || {
        origin.hits("/held") == 1 && metric(&gw.metrics().await, &waiting) == Some(49.0)
    })
    .await;
    assert!(all_in, "{}", gw.metrics().await);
    // Waiting longer than a plugin call's CPU budget (100ms) is not the plugin's CPU time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    origin.release.send(true).unwrap();
    let mut labels = HashMap::<String, usize>::new();
    for c in clients {
        let (s, h, body) = c.await.unwrap();
        assert_eq!((s, body.as_str()), (200, "held #1"));
        *labels.entry(status(&h)).or_default() += 1;
    }
    assert_eq!(origin.hits("/held"), 1);
    assert_eq!(
        labels,
        HashMap::from([("MISS".into(), 1), ("HIT".into(), 49)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_fails_lets_the_waiters_go_upstream() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "lock_timeout: 30s", "").await;
    let url = gw.url("/held");
    let clients: Vec<_> = (0..5)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    let waiting = series("gateway_cache_waiting");
    let all_in = eventually(Duration::from_secs(10), async || {
        origin.hits("/held") == 1 && metric(&gw.metrics().await, &waiting) == Some(4.0)
    })
    .await;
    assert!(all_in, "{}", gw.metrics().await);
    // The filling request's answer is a 503, not stored: the four waiters each go upstream.
    origin.state.failing.store(true, Ordering::SeqCst);
    origin.release.send(true).unwrap();
    for c in clients {
        let (s, h, _) = c.await.unwrap();
        assert_eq!((s, status(&h).as_str()), (503, "MISS"));
    }
    assert_eq!(origin.hits("/held"), 5);
    let m = gw.metrics().await;
    assert_eq!(metric(&m, &series("gateway_cache_waiting")), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filling_request_that_goes_away_releases_the_waiters() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "lock_timeout: 30s", "").await;
    // Over HTTP/2, so that the client can end its request by resetting the stream (an HTTP/1 client's
    // FIN is a half-close: the gateway finishes the request and only then finds the client gone).
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let url = gw.url("/held");
    let filler = {
        let (h2, url) = (h2.clone(), url.clone());
        tokio::spawn(async move {
            let req = http::Request::get(url)
                .body(Full::new(Bytes::new()))
                .unwrap();
            h2.request(req).await.map(|r| r.status())
        })
    };
    let filling = eventually(Duration::from_secs(10), async || origin.hits("/held") == 1).await;
    assert!(filling);
    let waiter = tokio::spawn(async move { get(&url).await });
    let waiting = series("gateway_cache_waiting");
    let waits = eventually(Duration::from_secs(10), async || {
        metric(&gw.metrics().await, &waiting) == Some(1.0)
    })
    .await;
    assert!(waits, "{}", gw.metrics().await);
    // The filling request goes away (its stream reset): its fill ends with it, and the waiter goes
    // upstream itself.
    filler.abort();
    let released = eventually(Duration::from_secs(10), async || {
        origin.hits("/held") == 2 && metric(&gw.metrics().await, &waiting) == Some(0.0)
    })
    .await;
    assert!(released, "{}", gw.metrics().await);
    origin.release.send(true).unwrap();
    let (s, h, body) = waiter.await.unwrap();
    assert_eq!(
        (s, status(&h).as_str(), body.as_str()),
        (200, "MISS", "held #2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_mib_response_is_served_from_the_cache_byte_for_byte() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "", "").await;
    let want = big_body();
    let (s, h, body) = get(&gw.url("/big")).await;
    assert_eq!((s, status(&h).as_str()), (200, "MISS"));
    assert!(body == want, "the miss is the origin's body");
    let (s, h, body) = get(&gw.url("/big")).await;
    assert_eq!((s, status(&h).as_str()), (200, "HIT"));
    assert_eq!(body.len(), want.len());
    assert!(body == want, "the hit is the same bytes");
    assert_eq!(origin.hits("/big"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_every_variant_of_a_url_and_the_next_request_misses() {
    let origin = Origin::start().await;
    let gw = gateway(&origin, "", "").await;
    for lang in ["en", "fr"] {
        get_with(&gw.url("/vary"), &[("accept-language", lang)]).await;
    }
    get(&gw.url("/other")).await;
    assert_eq!(
        status(
            &get_with(&gw.url("/vary"), &[("accept-language", "en")])
                .await
                .1
        ),
        "HIT"
    );
    let host = gw.addr.to_string();
    let (s, _, body) = admin_call(
        gw.admin,
        "DELETE",
        &format!("/cache?plugin=proxy-cache&host={host}&path=/vary"),
        "",
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["purged"]["entries"], 2, "{body}");
    assert!(v["purged"]["bytes"].as_u64().unwrap() > 0);
    for lang in ["en", "fr"] {
        let (_, h, body) = get_with(&gw.url("/vary"), &[("accept-language", lang)]).await;
        assert_eq!(status(&h), "MISS", "{lang}");
        assert!(
            body.ends_with(if lang == "en" { "#3" } else { "#4" }),
            "{body}"
        );
    }
    assert_eq!(
        status(&get(&gw.url("/other")).await.1),
        "HIT",
        "other URLs stay"
    );
    // Bad purges are refused; another method is not allowed.
    let (s, _, body) = admin_call(gw.admin, "DELETE", "/cache?url=/x", "").await;
    assert_eq!(s, 400, "{body}");
    let (s, _, _) = admin_call(gw.admin, "GET", "/cache", "").await;
    assert_eq!(s, 405);
    // Without parameters, everything goes.
    let (s, _, body) = admin_call(gw.admin, "DELETE", "/cache", "").await;
    assert_eq!(s, 200);
    assert_eq!(json(&body)["purged"]["entries"], 3, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_serves_the_expired_entry_when_the_origin_fails_or_is_gone() {
    let mut origin = Origin::start().await;
    let gw = gateway(&origin, "stale_if_error: 5m", "").await;
    let (_, h, stored) = get(&gw.url("/cc/max-age=1")).await;
    assert_eq!(status(&h), "MISS");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Expired, and the origin answers 503: the stored answer instead.
    origin.state.failing.store(true, Ordering::SeqCst);
    let (s, h, body) = get(&gw.url("/cc/max-age=1")).await;
    assert_eq!((s, status(&h).as_str()), (200, "STALE"));
    assert_eq!(body, stored);
    assert!(hv(&h, "age").parse::<u64>().unwrap() >= 1);
    // The origin gone (connection refused: the gateway's 502): the stored answer again.
    let addr = origin.addr;
    origin.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    let (s, h, body) = get(&gw.url("/cc/max-age=1")).await;
    assert_eq!((s, status(&h).as_str()), (200, "STALE"));
    assert_eq!(body, stored);
    // Without a stale window, an expired entry is refreshed (EXPIRED) and a failure goes through.
    let origin = Origin::start().await;
    let gw = gateway(&origin, "", "").await;
    get(&gw.url("/cc/max-age=1")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, h, _) = get(&gw.url("/cc/max-age=1")).await;
    assert_eq!((s, status(&h).as_str()), (200, "EXPIRED"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    origin.state.failing.store(true, Ordering::SeqCst);
    let (s, h, _) = get(&gw.url("/cc/max-age=1")).await;
    assert_eq!((s, status(&h).as_str()), (503, "EXPIRED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_are_refused_at_their_line() {
    let origin = Origin::start().await;
    let yaml = GatewayConfig::new()
        .upstream(Upstream::new("origin").endpoint(origin.addr))
        .route(
            Route::new("cached")
                .prefix("/")
                .upstream("origin")
                .lines("    filters:\n      - plugin: proxy-cache\n        config:\n          cache_key: {headers: [ok, \"not ok\"]}\n"),
        )
        .yaml();
    let err = refused(&yaml).await;
    let line = line_ending(&yaml, "\"not ok\"]}");
    assert!(
        err.contains(&format!("test.yaml:{line}:"))
            && err.contains("routes[0].filters[0].config.cache_key.headers[1]")
            && err.contains("`not ok` is not a valid header name"),
        "{err}"
    );
    let yaml = GatewayConfig::new()
        .upstream(Upstream::new("origin").endpoint(origin.addr))
        .route(Route::new("cached").prefix("/").upstream("origin"))
        .raw("cache:\n  max_size: 1MiB\n  max_entry_size: 2MiB\n")
        .yaml();
    let err = refused(&yaml).await;
    // At the `cache:` map (its first line), where the two sizes are.
    let line = line_ending(&yaml, "max_size: 1MiB");
    assert!(
        err.contains(&format!("test.yaml:{line}:"))
            && err.contains("max_entry_size: 2097152 bytes is more than max_size"),
        "{err}"
    );
}

/// The two sides of a traffic split, and two routes on one URL, keep their own entries: a canary's
/// answer cached for a request with `x-canary: 1` is never the answer to a request without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sides_of_a_split_and_two_routes_on_one_url_do_not_share_entries() {
    let (stable, canary) = (Origin::start().await, Origin::start().await);
    let yaml = format!(
        "upstreams:\n  - name: stable\n    endpoints: [\"{}\"]\n  - name: canary\n    endpoints: [\"{}\"]\n\
routes:\n  - name: beta\n    match: {{path: {{prefix: /}}, headers: [{{name: x-beta, exact: \"1\"}}]}}\n    upstream: canary\n    filters: [{{plugin: proxy-cache, config: {{ttl: 60s}}}}]\n\
\x20 - name: split\n    match: {{path: {{prefix: /}}}}\n    split:\n      rules: [{{header: x-canary, exact: \"1\", upstream: canary}}]\n      weights: [{{upstream: stable, weight: 1}}]\n    filters: [{{plugin: proxy-cache, config: {{ttl: 60s}}}}]\n",
        stable.addr, canary.addr
    );
    let gw = TestGateway::start(&yaml).await;
    let ask = |headers: &'static [(&'static str, &'static str)]| {
        let url = gw.url("/p");
        async move { get_with(&url, headers).await }
    };
    // The canary side first: stored under the split route and the canary upstream.
    let (_, h, to_canary) = ask(&[("x-canary", "1")]).await;
    assert_eq!(status(&h), "MISS");
    let (_, h, _) = ask(&[]).await;
    assert_eq!(status(&h), "MISS", "the stable side has its own entry");
    assert_eq!((stable.hits("/p"), canary.hits("/p")), (1, 1));
    // Each side hits its own entry.
    let (_, h, again) = ask(&[("x-canary", "1")]).await;
    assert_eq!((status(&h), again), ("HIT".to_string(), to_canary.clone()));
    let (_, h, _) = ask(&[]).await;
    assert_eq!(status(&h), "HIT");
    // Another route on the same URL (told apart by a header) keeps its own too.
    let (_, h, _) = ask(&[("x-beta", "1")]).await;
    assert_eq!(status(&h), "MISS");
    assert_eq!(canary.hits("/p"), 2);
}
