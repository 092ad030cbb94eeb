//! The cache's bookkeeping: hits, variants, the bound and LRU order, coalesced fills, expiry, purge.

use super::*;

fn key(path: &str) -> CacheKey {
    CacheKey {
        plugin: Arc::from("p"),
        host: "example.com".into(),
        path: path.into(),
        extra: "GET".into(),
    }
}

fn resp(body: &str, headers: &[(&str, &str)]) -> CachedResponse {
    CachedResponse {
        status: 200,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: Bytes::from(body.to_owned()),
    }
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(*n, v.parse().unwrap());
    }
    h
}

const MIN: Duration = Duration::from_secs(60);

async fn fill(c: &Cache, path: &str, h: &HeaderMap) -> Fill {
    match c.lookup(key(path), h, Duration::ZERO).await.0 {
        Lookup::Miss(f) | Lookup::Expired(f) | Lookup::Stale(_, f) => f,
        other => panic!("not a fill: {other:?}"),
    }
}

#[tokio::test]
async fn a_stored_response_is_a_hit_and_counted() {
    let c = Cache::default();
    let h = HeaderMap::new();
    let f = fill(&c, "/a", &h).await;
    c.put(f, resp("one", &[]), MIN, Duration::ZERO).unwrap();
    let Lookup::Hit(found) = c.lookup(key("/a"), &h, Duration::ZERO).await.0 else {
        panic!("no hit");
    };
    assert_eq!(found.response.body, "one");
    let s = c.stats("p");
    assert_eq!((s.entries, s.misses, s.hits, s.stores), (1, 1, 1, 1));
    assert_eq!(s.bytes, c.bytes());
}

#[tokio::test]
async fn variants_by_vary_and_vary_star_refused() {
    let c = Cache::default();
    let en = headers(&[("accept-language", "en")]);
    let fr = headers(&[("accept-language", "fr")]);
    let f = fill(&c, "/v", &en).await;
    c.put(
        f,
        resp("hello", &[("Vary", "Accept-Language")]),
        MIN,
        Duration::ZERO,
    )
    .unwrap();
    assert!(matches!(
        c.lookup(key("/v"), &en, Duration::ZERO).await.0,
        Lookup::Hit(_)
    ));
    let f = fill(&c, "/v", &fr).await;
    c.put(
        f,
        resp("bonjour", &[("vary", "accept-language")]),
        MIN,
        Duration::ZERO,
    )
    .unwrap();
    for (h, body) in [(&en, "hello"), (&fr, "bonjour")] {
        let Lookup::Hit(found) = c.lookup(key("/v"), h, Duration::ZERO).await.0 else {
            panic!("no hit");
        };
        assert_eq!(found.response.body, body);
    }
    assert_eq!(c.stats("p").entries, 2);
    let f = fill(&c, "/star", &en).await;
    assert_eq!(
        c.put(f, resp("x", &[("vary", "*")]), MIN, Duration::ZERO),
        Err(PutError::VaryStar)
    );
    // The fill ended with the refusal: the next lookup fills again.
    fill(&c, "/star", &en).await;
}

#[tokio::test]
async fn the_least_recently_used_entries_go_first_and_the_bound_holds() {
    let c = Cache::default();
    let entry = entry_size(&key("/0"), "", &resp(&"x".repeat(1000), &[]));
    c.configure(CacheLimits {
        max_size: entry * 3,
        max_entry_size: entry * 2,
    });
    let h = HeaderMap::new();
    for p in ["/0", "/1", "/2"] {
        let f = fill(&c, p, &h).await;
        c.put(f, resp(&"x".repeat(1000), &[]), MIN, Duration::ZERO)
            .unwrap();
    }
    // /0 is used again, so /1 is the least recently used when /3 comes.
    assert!(matches!(
        c.lookup(key("/0"), &h, Duration::ZERO).await.0,
        Lookup::Hit(_)
    ));
    let f = fill(&c, "/3", &h).await;
    c.put(f, resp(&"x".repeat(1000), &[]), MIN, Duration::ZERO)
        .unwrap();
    assert!(c.bytes() <= entry * 3);
    assert_eq!(c.stats("p").evictions, 1);
    assert!(matches!(
        c.lookup(key("/1"), &h, Duration::ZERO).await.0,
        Lookup::Miss(_)
    ));
    for p in ["/0", "/2", "/3"] {
        assert!(matches!(
            c.lookup(key(p), &h, Duration::ZERO).await.0,
            Lookup::Hit(_)
        ));
    }
    let f = fill(&c, "/big", &h).await;
    assert!(matches!(
        c.put(f, resp(&"x".repeat(3000), &[]), MIN, Duration::ZERO),
        Err(PutError::TooLarge { .. })
    ));
    // A smaller bound evicts at once.
    c.configure(CacheLimits {
        max_size: entry,
        max_entry_size: entry,
    });
    assert_eq!(c.stats("p").entries, 1);
    assert_eq!(c.bytes(), entry);
}

#[tokio::test]
async fn waiters_get_the_fill_or_pass_when_it_stores_nothing() {
    let c = Cache::default();
    let h = HeaderMap::new();
    let f = fill(&c, "/c", &h).await;
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                c.lookup(key("/c"), &HeaderMap::new(), Duration::from_secs(10))
                    .await
            })
        })
        .collect();
    while c.stats("p").waiting < 5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.put(f, resp("filled", &[]), MIN, Duration::ZERO).unwrap();
    for w in waiters {
        let (r, _) = w.await.unwrap();
        let Lookup::Hit(found) = r else {
            panic!("{r:?}")
        };
        assert_eq!(found.response.body, "filled");
    }
    // A fill dropped without a response: the waiters pass.
    let f = fill(&c, "/d", &h).await;
    let w = {
        let c = c.clone();
        tokio::spawn(async move {
            c.lookup(key("/d"), &HeaderMap::new(), Duration::from_secs(10))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(f);
    let (r, waited) = w.await.unwrap();
    assert!(matches!(r, Lookup::Pass(None)), "{r:?}");
    assert!(waited);
    assert_eq!(c.stats("p").waiting, 0);
    // Nobody holds it now: the next lookup fills.
    fill(&c, "/d", &h).await;
}

#[tokio::test]
async fn a_wait_is_bounded() {
    let c = Cache::default();
    let h = HeaderMap::new();
    let _f = fill(&c, "/e", &h).await;
    let (r, _) = c.lookup(key("/e"), &h, Duration::from_millis(20)).await;
    assert!(matches!(r, Lookup::Pass(None)), "{r:?}");
}

#[tokio::test]
async fn expired_entries_are_stale_within_their_window_then_expired() {
    let c = Cache::default();
    let h = HeaderMap::new();
    let f = fill(&c, "/s", &h).await;
    c.put(f, resp("old", &[]), Duration::ZERO, MIN).unwrap();
    let Lookup::Stale(found, f) = c.lookup(key("/s"), &h, Duration::ZERO).await.0 else {
        panic!("not stale");
    };
    assert_eq!(found.response.body, "old");
    c.put(f, resp("gone", &[]), Duration::ZERO, Duration::ZERO)
        .unwrap();
    assert!(matches!(
        c.lookup(key("/s"), &h, Duration::ZERO).await.0,
        Lookup::Expired(_)
    ));
}

#[tokio::test]
async fn purge_removes_every_variant_of_a_url_and_only_those() {
    let c = Cache::default();
    let en = headers(&[("accept-language", "en")]);
    let fr = headers(&[("accept-language", "fr")]);
    for (path, h) in [("/x", &en), ("/x", &fr), ("/y", &en)] {
        let f = fill(&c, path, h).await;
        c.put(
            f,
            resp("b", &[("vary", "accept-language")]),
            MIN,
            Duration::ZERO,
        )
        .unwrap();
    }
    let p = c.purge(Some("p"), Some("EXAMPLE.com"), Some("/x"));
    assert_eq!(p.entries, 2);
    assert_eq!(c.stats("p").entries, 1);
    assert_eq!(c.purge(Some("other"), None, None), Purged::default());
    assert_eq!(c.purge(None, None, None).entries, 1);
    assert_eq!(c.bytes(), 0);
}

#[tokio::test]
async fn a_response_that_varies_on_other_headers_replaces_every_variant() {
    let c = Cache::default();
    let en = headers(&[("accept-language", "en")]);
    let fr = headers(&[("accept-language", "fr")]);
    for h in [&en, &fr] {
        let f = fill(&c, "/r", h).await;
        c.put(
            f,
            resp("lang", &[("vary", "accept-language")]),
            MIN,
            Duration::ZERO,
        )
        .unwrap();
    }
    assert_eq!(c.stats("p").entries, 2);
    // The upstream stops varying: one entry for everyone, made by the next fill.
    let Lookup::Hit(_) = c.lookup(key("/r"), &en, Duration::ZERO).await.0 else {
        panic!("no hit");
    };
    let f = fill(&c, "/r", &headers(&[("accept-language", "de")])).await;
    c.put(f, resp("same", &[]), MIN, Duration::ZERO).unwrap();
    assert_eq!(c.stats("p").entries, 1);
    assert_eq!(c.bytes(), c.stats("p").bytes);
    for h in [&en, &fr] {
        let Lookup::Hit(found) = c.lookup(key("/r"), h, Duration::ZERO).await.0 else {
            panic!("no hit");
        };
        assert_eq!(found.response.body, "same");
    }
}
