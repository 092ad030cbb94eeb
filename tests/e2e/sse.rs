//! Server-sent events and other long-lived responses stream through without buffering (issue 21):
//! the upstream sends an event, waits until the client has it, then sends the next; a gateway that
//! held any part of the body back would leave the client waiting, and the test would time out.
//! Checked over HTTP/1.1 and HTTP/2 to the client, on a route without filters and on one whose
//! filters (key-auth on the request, cors on the response) do not ask for bodies.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// The body and content type of a `Feed`'s next response.
type Next = Arc<Mutex<Option<(mpsc::Receiver<Bytes>, &'static str)>>>;

/// An upstream whose next response streams what the test feeds it, with the given content type.
struct Feed {
    addr: SocketAddr,
    next: Next,
}

impl Feed {
    async fn start() -> Feed {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let next: Next = Arc::default();
        let slot = next.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = tcp.accept().await {
                let slot = slot.clone();
                let svc = hyper::service::service_fn(move |_req| {
                    let (rx, ctype) = slot.lock().unwrap().take().expect("a feed for the request");
                    let events = futures_util::stream::unfold(rx, |mut rx| async move {
                        let b = rx.recv().await?;
                        Some((Ok::<_, Infallible>(Frame::data(b)), rx))
                    });
                    let resp = http::Response::builder()
                        .header("content-type", ctype)
                        .header("cache-control", "no-cache")
                        .body(StreamBody::new(events))
                        .unwrap();
                    async move { Ok::<_, Infallible>(resp) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc),
                );
            }
        });
        Feed { addr, next }
    }

    /// The sender of the next response's body.
    fn feed(&self, content_type: &'static str) -> mpsc::Sender<Bytes> {
        let (tx, rx) = mpsc::channel(1);
        *self.next.lock().unwrap() = Some((rx, content_type));
        tx
    }
}

/// Sends three events, each only once the client has read the one before; then ends the body.
async fn lockstep(
    feed: &Feed,
    content_type: &'static str,
    h2: bool,
    url: String,
    headers: &[(&str, &str)],
) {
    let tx = feed.feed(content_type);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(h2)
        .build_http::<Empty<Bytes>>();
    let mut req = http::Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    // The head comes before any event (a filter holding the body would hold the head too).
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        client.request(req.body(Empty::new()).unwrap()),
    )
    .await
    .expect("the response head was held back")
    .expect("response head");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], content_type);
    // On the filtered route, the response filter (cors) did run on the head.
    let filtered = headers.iter().any(|(k, _)| *k == "origin");
    assert_eq!(
        resp.headers().contains_key("access-control-allow-origin"),
        filtered
    );
    let mut body = resp.into_body();
    let mut got = String::new();
    for i in 0..3 {
        let event = format!("id: {i}\nevent: tick\ndata: {{\"n\":{i}}}\n\n");
        tx.send(Bytes::from(event.clone())).await.unwrap();
        // The event must arrive while the upstream waits for this read to send the next one.
        while !got.ends_with(&event) {
            let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
                .await
                .unwrap_or_else(|_| panic!("event {i} held back; so far {got:?}"))
                .expect("the body goes on")
                .expect("a good frame");
            if let Ok(data) = frame.into_data() {
                got.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }
    drop(tx);
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .expect("the body ends")
        .unwrap()
        .to_bytes();
    assert!(rest.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_client_one_by_one_through_routes_with_and_without_filters() {
    let feed = Feed::start().await;
    let yaml = GatewayConfig::new()
        .upstream(Upstream::new("feed").endpoint(feed.addr))
        .route(
            Route::new("filtered")
                .prefix("/filtered")
                .upstream("feed")
                .lines("    filters:\n      - {plugin: key-auth, config: {}}\n      - {plugin: cors, config: {allow_origins: [\"*\"]}}\n"),
        )
        .route(Route::new("bare").upstream("feed"))
        .raw("consumers:\n  - name: alice\n    credentials: {key-auth: {key: k-alice}}\n")
        .yaml();
    let gw = TestGateway::start(&yaml).await;
    let auth = [("apikey", "k-alice"), ("origin", "https://app.example")];
    for h2 in [false, true] {
        lockstep(&feed, "text/event-stream", h2, gw.url("/events"), &[]).await;
        lockstep(
            &feed,
            "text/event-stream",
            h2,
            gw.url("/filtered/events"),
            &auth,
        )
        .await;
        // A long-polling or streamed answer of another type streams the same way.
        lockstep(&feed, "application/x-ndjson", h2, gw.url("/poll"), &[]).await;
        lockstep(
            &feed,
            "application/octet-stream",
            h2,
            gw.url("/filtered/poll"),
            &auth,
        )
        .await;
    }
}
