//! Balancing: weighted round robin, random, least request, consistent hashing.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_follows_weights_exactly() {
    let a = MockUpstream::start("a").await;
    let b = MockUpstream::start("b").await;
    let gw = TestGateway::start(
        &GatewayConfig::new()
            .upstream(Upstream::new("up").weighted(a.addr, 3).weighted(b.addr, 1))
            .route(Route::new("r").upstream("up"))
            .yaml(),
    )
    .await;
    let mut by_header: HashMap<String, usize> = HashMap::new();
    for i in 0..40 {
        let r = get(&gw.url(&format!("/rr/{i}"))).await;
        assert_eq!(r.0, 200, "{r:?}");
        *by_header.entry(answered_by(&r)).or_default() += 1;
    }
    assert_eq!(
        (a.hits(), b.hits()),
        (30, 10),
        "weights 3:1 over 40 requests"
    );
    assert_eq!(by_header.get("a"), Some(&30), "{by_header:?}");
    assert_eq!(by_header.get("b"), Some(&10), "{by_header:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sends_traffic_to_every_endpoint() {
    let a = MockUpstream::start("a").await;
    let b = MockUpstream::start("b").await;
    let gw = TestGateway::start(&one_route(&[a.addr, b.addr], "    balancer: random\n", "")).await;
    for _ in 0..40 {
        assert_eq!(get(&gw.url("/rand")).await.0, 200);
    }
    assert_eq!(a.hits() + b.hits(), 40);
    assert!(
        a.hits() > 0 && b.hits() > 0,
        "a={} b={}",
        a.hits(),
        b.hits()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_sends_fewer_requests_to_a_slow_endpoint() {
    // The slow endpoint is a second gateway that answers every request through `/delay/300` of its
    // own mock; the fast endpoint is a mock answering at once.
    let fast = MockUpstream::start("fast").await;
    let slow = MockUpstream::start("slow").await;
    let relay = TestGateway::start(&one_route(
        &[slow.addr],
        "",
        "    rewrite: {path: /delay/300}\n",
    ))
    .await;
    let gw = TestGateway::start(&one_route(
        &[fast.addr, relay.addr],
        "    balancer: least_request\n",
        "",
    ))
    .await;
    const N: usize = 80;
    let mut tasks = Vec::new();
    for _ in 0..N {
        let url = gw.url("/lr");
        tasks.push(tokio::spawn(async move { get(&url).await.0 }));
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let (f, s) = (fast.hits(), slow.hits());
    assert_eq!(f + s, N);
    // Power of two choices over two endpoints: the loaded one wins only when both picks are it (~1/4);
    // random would give it ~1/2.
    assert!(
        s < f && s * 10 <= N * 4,
        "slow endpoint got {s} of {N}, fast {f}"
    );
}

/// Sends `n` requests per key and returns the endpoint that answered each key; asserts stickiness.
async fn sticky_per_key<F, Fut>(keys: &[String], n: usize, mut send: F) -> HashMap<String, String>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    let mut out = HashMap::new();
    for k in keys {
        let mut seen = HashSet::new();
        for _ in 0..n {
            let r = send(k.clone()).await;
            assert_eq!(r.0, 200, "{r:?}");
            seen.insert(answered_by(&r));
        }
        assert_eq!(seen.len(), 1, "key {k} went to {seen:?}");
        out.insert(k.clone(), seen.into_iter().next().unwrap());
    }
    out
}

async fn three_mocks() -> (MockUpstream, MockUpstream, MockUpstream) {
    (
        MockUpstream::start("m0").await,
        MockUpstream::start("m1").await,
        MockUpstream::start("m2").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_by_header_is_sticky_and_spreads() {
    let (m0, m1, m2) = three_mocks().await;
    let gw = TestGateway::start(&one_route(
        &[m0.addr, m1.addr, m2.addr],
        "    balancer: {consistent_hash: {header: x-user}}\n",
        "",
    ))
    .await;
    let keys: Vec<String> = (0..20).map(|i| format!("user-{i}")).collect();
    let url = gw.url("/hash");
    let map = sticky_per_key(&keys, 4, |k| {
        let url = url.clone();
        async move { get_with(&url, &[("x-user", &k)]).await }
    })
    .await;
    let used: HashSet<_> = map.values().collect();
    assert!(used.len() >= 2, "20 keys all went to {used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_by_cookie_is_sticky_and_spreads() {
    let (m0, m1, m2) = three_mocks().await;
    let gw = TestGateway::start(&one_route(
        &[m0.addr, m1.addr, m2.addr],
        "    balancer: {consistent_hash: {cookie: sid}}\n",
        "",
    ))
    .await;
    let keys: Vec<String> = (0..20).map(|i| format!("session-{i}")).collect();
    let url = gw.url("/hash");
    let map = sticky_per_key(&keys, 4, |k| {
        let url = url.clone();
        // Other cookies around the one hashed on, and a changing one, must not matter.
        let n = rand_suffix();
        async move {
            get_with(
                &url,
                &[("cookie", &format!("theme=dark; sid={k}; nonce={n}"))],
            )
            .await
        }
    })
    .await;
    let used: HashSet<_> = map.values().collect();
    assert!(used.len() >= 2, "20 cookies all went to {used:?}");
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_by_client_ip_is_sticky_and_spreads() {
    let (m0, m1, m2) = three_mocks().await;
    let gw = TestGateway::start(&one_route(
        &[m0.addr, m1.addr, m2.addr],
        "    balancer: {consistent_hash: {client_ip: true}}\n",
        "",
    ))
    .await;
    let url = gw.url("/hash");
    // Client addresses 127.0.0.1 .. 127.0.0.20, each on fresh connections (so fresh source ports).
    let keys: Vec<String> = (1..=20).map(|i| format!("127.0.0.{i}")).collect();
    let map = sticky_per_key(&keys, 4, |k| {
        let url = url.clone();
        async move { get_from(k.parse().unwrap(), &url).await }
    })
    .await;
    let used: HashSet<_> = map.values().collect();
    assert!(used.len() >= 2, "20 client addresses all went to {used:?}");
    // The mocks saw the client address in X-Forwarded-For.
    let xff: HashSet<String> = [&m0, &m1, &m2]
        .iter()
        .flat_map(|m| m.seen())
        .flat_map(|s| values(&s.headers, "x-forwarded-for"))
        .collect();
    assert_eq!(xff.len(), 20, "{xff:?}");
}
