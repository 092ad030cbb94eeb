//! The host core's key-value namespaces, local and in a real redis-server, given the same calls:
//! the answers must be the same (the backend is config, not code).

use crate::support::*;
use bytes::Bytes;
use gateway::host::{HostCore, StoreError};
use std::time::Duration;

/// One call's answer, in a form both backends can be compared by (versions differ in value).
async fn script(host: &HostCore, ns: &str) -> Vec<String> {
    let (st, local) = (&host.stores, &host.shared);
    let mut out = Vec::new();
    let mut note = |what: &str, r: String| out.push(format!("{what}: {r}"));
    let b = |s: &'static str| Bytes::from_static(s.as_bytes());
    // A TTL no clock can add is no expiry, on both (Redis would refuse the PEXPIRE).
    let v = st
        .set(local, ns, "forever", b("x"), Some(Duration::MAX))
        .await;
    note("set with a huge TTL", format!("{:?}", v.map(|v| v > 0)));
    let got = st.get(local, ns, "forever").await.unwrap();
    note("get it", format!("{:?}", got.map(|(v, _)| v)));
    // Integers as Redis reads them.
    for text in ["0", "-12", "007", "+5", " 5", "-0", "5.0"] {
        st.set(local, ns, "n", Bytes::from(text), None)
            .await
            .unwrap();
        let r = st.increment(local, ns, "n", 1, None).await;
        note(&format!("increment {text:?}"), format!("{r:?}"));
    }
    st.set(local, ns, "big", Bytes::from(i64::MAX.to_string()), None)
        .await
        .unwrap();
    let r = st.increment(local, ns, "big", 1, None).await;
    note("overflow", format!("{:?}", r == Err(StoreError::Overflow)));
    // Versions: never 0, a write makes a new one, CAS only over the current one.
    let v1 = st.set(local, ns, "k", b("one"), None).await.unwrap();
    let stale = st
        .compare_and_swap(local, ns, "k", v1.wrapping_add(7), b("x"), None)
        .await;
    note("cas stale", format!("{stale:?}"));
    let v2 = st
        .compare_and_swap(local, ns, "k", v1, b("two"), None)
        .await
        .unwrap();
    note("cas", format!("{}", v1 != 0 && v2 != 0 && v2 != v1));
    let absent = st
        .compare_and_swap(local, ns, "none", v2, b("x"), None)
        .await;
    note("cas on an absent key", format!("{absent:?}"));
    // A TTL on the increment that creates a key, kept by the next ones.
    let ttl = Some(Duration::from_millis(400));
    let first = st.increment(local, ns, "w", 2, ttl).await;
    let second = st.increment(local, ns, "w", 3, None).await;
    note("window", format!("{first:?} {second:?}"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = st.get(local, ns, "w").await.unwrap();
    note("window after its TTL", format!("{after:?}"));
    st.delete(local, ns, "k").await.unwrap();
    note(
        "deleted",
        format!("{:?}", st.get(local, ns, "k").await.unwrap()),
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_namespace_answers_as_the_local_store_does() {
    let redis = gateway_test_support::RedisServer::start();
    let host = host().await;
    let namespaces = serde_yaml_ng::from_str(&format!(
        "remote: {{backend: redis, redis: {{url: \"{}\", command_timeout: 2s}}}}",
        redis.url()
    ))
    .unwrap();
    let set = host
        .stores
        .prepare(&namespaces, std::path::Path::new("/"))
        .unwrap();
    host.stores.install(set);
    let local = script(&host, "here").await;
    let remote = script(&host, "remote").await;
    assert_eq!(local, remote);
    // And what they say is what the rules say.
    for said in [
        "get it: Some(b\"x\")",
        "increment \"007\": Err(NotANumber)",
        "increment \"-12\": Ok(-11)",
        "cas stale: Err(VersionMismatch)",
        "window: Ok(2) Ok(5)",
        "window after its TTL: None",
    ] {
        assert!(local.contains(&said.to_string()), "{said}: {local:#?}");
    }
    // Nothing of the remote namespace is in the process's memory.
    assert!(host.shared.get("wit:remote", "forever").is_none());
    assert!(redis.dbsize() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_fails_calls_at_once_for_a_while() {
    let redis = gateway_test_support::RedisServer::start();
    let host = host().await;
    let namespaces = serde_yaml_ng::from_str(&format!(
        "remote: {{backend: redis, redis: {{url: \"{}\", command_timeout: 300ms}}}}",
        redis.url()
    ))
    .unwrap();
    let set = host
        .stores
        .prepare(&namespaces, std::path::Path::new("/"))
        .unwrap();
    host.stores.install(set);
    let (st, local) = (&host.stores, &host.shared);
    assert_eq!(st.increment(local, "remote", "n", 1, None).await, Ok(1));
    redis.freeze();
    // The first call waits its timeout; the ones right after fail without waiting (the breaker),
    // so twenty calls take far less than twenty timeouts (a bound, not a speed assertion).
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let r = st.increment(local, "remote", "n", 1, None).await;
        assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "20 calls took {:?}: each waited its timeout",
        started.elapsed()
    );
    redis.thaw();
    // After the window, calls go to Redis again.
    let back = gateway_test_support::eventually(Duration::from_secs(10), async || {
        st.increment(local, "remote", "n", 0, None).await.is_ok()
    })
    .await;
    assert!(back);
}
