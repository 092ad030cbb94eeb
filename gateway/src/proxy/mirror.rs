//! Request mirroring (Envoy's `request_mirror_policies`, nginx's `mirror`): a copy of a sampled share
//! of a route's forwarded requests goes to a shadow upstream, fire and forget.
//!
//! - The copy is the request as the main upstream gets it (method, rewritten path and query, headers
//!   after the route's changes), with `-shadow` appended to its Host (`api.example.com:8080` ->
//!   `api.example.com-shadow:8080`), as Envoy does, so the shadow and its logs can tell copies apart.
//! - The request body streams to the main upstream as before; up to `max_body` bytes of it are
//!   copied on the way, and the mirror is sent once the body has ended. A body declared or found
//!   larger is not mirrored (`skipped_body`); one that never ends is not either (`incomplete`).
//! - The mirror runs in a task of its own: its answer is read and dropped, it has its own timeout,
//!   and nothing of it reaches the main request or response. At most `max_in_flight` mirrors of a
//!   route run at once (past it: `skipped_busy`), each holding at most `max_body` bytes.

use super::target::{upstream_uri, version_and_authority, UpstreamPath};
use crate::body::{Body, BoxError};
use crate::metrics::{MirrorOutcome, RouteStats};
use crate::upstream::{Cluster, EndpointGuard};
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use rand::Rng;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::oneshot;

/// A route's mirror, compiled.
pub struct Mirror {
    /// The shadow cluster.
    pub cluster: Arc<Cluster>,
    /// Share of requests mirrored, 0 to 100.
    percent: f64,
    max_body: u64,
    max_in_flight: usize,
    timeout: Duration,
    /// The route's figures: the mirror's outcomes and its count in flight.
    stats: Arc<RouteStats>,
}

impl Mirror {
    /// A mirror to `cluster`; marks the route's mirror figures as shown.
    pub fn new(
        cluster: Arc<Cluster>,
        cfg: &crate::config::traffic::Mirror,
        route_timeout: Duration,
        stats: Arc<RouteStats>,
    ) -> Mirror {
        stats.mirror.configured.store(true, Ordering::Relaxed);
        Mirror {
            cluster,
            percent: cfg.percent,
            max_body: cfg.max_body.0,
            max_in_flight: cfg.max_in_flight as usize,
            timeout: cfg.timeout.map_or(route_timeout, |t| t.0),
            stats,
        }
    }

    fn sampled(&self) -> bool {
        match self.percent {
            p if p >= 100.0 => true,
            p if p <= 0.0 => false,
            p => rand::rng().random::<f64>() * 100.0 < p,
        }
    }

    /// Starts mirroring a request, if it is sampled and within the limits: `path` and `headers` are
    /// what the main upstream gets. Returns the body to send to the main upstream (`body` itself, or
    /// `body` keeping a copy of what passes).
    pub(super) fn start(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Body,
        declared: Option<u64>,
    ) -> Body {
        if !self.sampled() {
            return body;
        }
        let count = |o| self.stats.mirror.count(o);
        if declared.is_some_and(|n| n > self.max_body) {
            count(MirrorOutcome::SkippedBody);
            return body;
        }
        let Some(slot) = Slot::take(&self.stats, self.max_in_flight) else {
            count(MirrorOutcome::SkippedBusy);
            return body;
        };
        let mut headers = headers.clone();
        if let Some(h) = headers.get(header::HOST).and_then(shadow_host) {
            headers.insert(header::HOST, h);
        }
        let copy = Copy {
            method: method.clone(),
            path: path.to_owned(),
            headers,
        };
        let (body, rest) = if body.is_end_stream() {
            (body, Rest::Ready(Bytes::new()))
        } else {
            let (tx, rx) = oneshot::channel();
            let cap = declared.unwrap_or(0).min(self.max_body) as usize;
            let tee = Tee {
                inner: body,
                copy: BytesMut::with_capacity(cap),
                limit: self.max_body,
                tx: Some(tx),
            };
            (tee.boxed(), Rest::Pending(rx))
        };
        tokio::spawn(send(self.cluster.clone(), copy, rest, self.timeout, slot));
        body
    }
}

/// `host-shadow`, before the port if there is one.
fn shadow_host(h: &HeaderValue) -> Option<HeaderValue> {
    let s = h.to_str().ok()?;
    let text = match s.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{host}-shadow:{port}")
        }
        _ => format!("{s}-shadow"),
    };
    HeaderValue::try_from(text).ok()
}

/// A mirror in flight, counted in its route's figures until dropped.
struct Slot(Arc<RouteStats>);

impl Slot {
    fn take(stats: &Arc<RouteStats>, max: usize) -> Option<Slot> {
        let in_flight = &stats.mirror.in_flight;
        if in_flight.fetch_add(1, Ordering::AcqRel) >= max {
            in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(stats.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.mirror.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The head of a mirrored request.
struct Copy {
    method: Method,
    path: String,
    headers: HeaderMap,
}

/// The body of a mirrored request: known already, or copied as the main request's streams.
enum Rest {
    Ready(Bytes),
    /// The copy once the body has ended; None when it was over the limit; a dropped sender when
    /// it never ended.
    Pending(oneshot::Receiver<Option<Bytes>>),
}

/// Sends a mirrored request once its body is complete, and reads and drops the answer.
async fn send(cluster: Arc<Cluster>, copy: Copy, rest: Rest, timeout: Duration, slot: Slot) {
    let body = match rest {
        Rest::Ready(b) => b,
        Rest::Pending(rx) => match rx.await {
            Ok(Some(b)) => b,
            Ok(None) => return slot.0.mirror.count(MirrorOutcome::SkippedBody),
            Err(_) => return slot.0.mirror.count(MirrorOutcome::Incomplete),
        },
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let outcome = exchange(&cluster, copy, body, deadline).await;
    slot.0.mirror.count(outcome);
    if outcome == MirrorOutcome::Failed {
        tracing::debug!(upstream = %cluster.name, "mirrored request failed");
    }
}

/// One try at the shadow cluster, within `deadline` (the answer's body included).
async fn exchange(
    cluster: &Cluster,
    copy: Copy,
    body: Bytes,
    deadline: tokio::time::Instant,
) -> MirrorOutcome {
    let Some(idx) = cluster.policy.pick(&cluster.endpoints, None, None) else {
        return MirrorOutcome::Failed;
    };
    let ep = cluster.endpoints[idx].clone();
    let _guard = EndpointGuard::new(ep.clone());
    let mut headers = copy.headers;
    // The copy is whole: a request that had a body (even an empty one) is framed by its length,
    // whatever framed the original.
    let framed = headers.remove(header::TRANSFER_ENCODING).is_some()
        | headers.remove(header::CONTENT_LENGTH).is_some();
    if framed || !body.is_empty() {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    let (version, authority) = version_and_authority(cluster.protocol, &mut headers);
    let path = UpstreamPath::Text(copy.path);
    let Ok(uri) = upstream_uri(cluster.scheme, version, &ep, authority.as_ref(), &path) else {
        return MirrorOutcome::Failed;
    };
    let mut req = Request::new(crate::body::full(body));
    *req.method_mut() = copy.method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    cluster.stats.requests.fetch_add(1, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let resp = match tokio::time::timeout_at(deadline, cluster.client.send(idx, req)).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            ep.record(false, &cluster.passive);
            cluster.stats.error(if e.is_connect() {
                "connect"
            } else {
                "protocol"
            });
            return MirrorOutcome::Failed;
        }
        Err(_) => {
            ep.record(false, &cluster.passive);
            cluster.stats.error("timeout");
            return MirrorOutcome::Failed;
        }
    };
    cluster.stats.latency.observe(started.elapsed());
    ep.record(
        !matches!(resp.status().as_u16(), 502..=504),
        &cluster.passive,
    );
    // Read to its end (so the connection can be reused) within the same deadline, and dropped.
    let _ = tokio::time::timeout_at(deadline, resp.into_body().collect()).await;
    MirrorOutcome::Sent
}

/// The request body on its way to the main upstream, copying up to `limit` bytes for the mirror;
/// the copy is handed over when the body ends (None once it went over the limit).
struct Tee {
    inner: Body,
    copy: BytesMut,
    limit: u64,
    tx: Option<oneshot::Sender<Option<Bytes>>>,
}

impl Tee {
    fn finish(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Some(std::mem::take(&mut self.copy).freeze()));
        }
    }
}

impl http_body::Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(_)) = (frame.data_ref(), &this.tx) {
                    if (this.copy.len() + data.len()) as u64 > this.limit {
                        this.copy = BytesMut::new();
                        if let Some(tx) = this.tx.take() {
                            let _ = tx.send(None);
                        }
                    } else {
                        this.copy.extend_from_slice(data);
                    }
                }
                // A reader may stop at the frame that ends the body without polling again.
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Err(_))) => this.tx = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_host_goes_before_the_port() {
        let shadow = |h: &str| {
            shadow_host(&HeaderValue::from_str(h).unwrap())
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(shadow("api.example.com"), "api.example.com-shadow");
        assert_eq!(
            shadow("api.example.com:8080"),
            "api.example.com-shadow:8080"
        );
        assert_eq!(shadow("[::1]:80"), "[::1]-shadow:80");
        assert_eq!(shadow("[::1]"), "[::1]-shadow");
    }

    async fn teed(chunks: &[&'static str], limit: u64) -> (Bytes, Option<Option<Bytes>>) {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        let inner = http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed();
        let (tx, mut rx) = oneshot::channel();
        let tee = Tee {
            inner,
            copy: BytesMut::new(),
            limit,
            tx: Some(tx),
        };
        let main = tee.collect().await.unwrap().to_bytes();
        (main, rx.try_recv().ok())
    }

    #[tokio::test]
    async fn the_copy_is_the_body_up_to_the_limit() {
        let (main, copy) = teed(&["ab", "cd", "e"], 5).await;
        assert_eq!(
            (&main[..], copy),
            (&b"abcde"[..], Some(Some("abcde".into())))
        );
        let (main, copy) = teed(&["ab", "cd", "ef"], 5).await;
        assert_eq!((&main[..], copy), (&b"abcdef"[..], Some(None)));
    }
}
