//! Tunnels: what an upgraded request becomes once both sides switched (see [`super::upgrade`]).
//! Bytes flow both ways, counted per route, until a side ends, the route's idle timeout or longest
//! life passes, or a drain closes the tunnel. A tunnel keeps its client connection counted (the
//! connection's serving loop waits for it), so a shutdown's drain waits for it too.

use crate::conn::{InFlight, TunnelOpen};
use crate::metrics::TunnelClose;
use crate::runtime::Route;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

/// Tunnels of the process: the signal that closes those a drain outlived.
pub struct Tunnels {
    /// Tunnels of a config generation ([`crate::runtime::Runtime::generation`]) below this value
    /// close.
    close_below: Arc<watch::Sender<u64>>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels {
            close_below: Arc::new(watch::channel(0).0),
        }
    }
}

impl Tunnels {
    /// Config generation `g` serves: tunnels of requests that loaded an older config (opened
    /// already, or whose upstream has yet to switch) close once `drain` has passed (as nginx's old
    /// workers close theirs at `worker_shutdown_timeout`).
    pub fn retire(&self, g: u64, drain: Duration) {
        let close = self.close_below.clone();
        tokio::spawn(async move {
            tokio::time::sleep(drain).await;
            close.send_if_modified(|v| {
                let raise = *v < g;
                *v = (*v).max(g);
                raise
            });
        });
    }

    /// Closes every tunnel (the drain timeout of a shutdown passed).
    pub fn close_all(&self) {
        self.close_below.send_replace(u64::MAX);
    }
}

/// A tunnel waiting for both sides' switch.
pub(super) struct Pending {
    pub client: OnUpgrade,
    pub upstream: OnUpgrade,
    pub route: Arc<Route>,
}

impl Pending {
    /// Counts the tunnel open (on the route, and on its connection so that the connection's drain
    /// waits for it) and runs it in a task of its own. `generation`: that of the config snapshot
    /// the request loaded (not the one serving now, which a reload may have replaced while the
    /// upstream took its time to switch).
    pub(super) fn spawn(
        self,
        tunnels: &Tunnels,
        generation: u64,
        open: TunnelOpen,
        busy: InFlight,
    ) {
        let close = tunnels.close_below.subscribe();
        let Pending {
            client,
            upstream,
            route,
        } = self;
        let stats = &route.stats.tunnels;
        stats.opened.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let why = run(client, upstream, &route, close, generation).await;
            tracing::debug!(route = %route.name, reason = ?why, "tunnel closed");
            route.stats.tunnels.close(why);
            drop(open);
            drop(busy);
        });
    }
}

/// Carries bytes both ways once both sides switched, until the tunnel ends; says why it ended.
async fn run(
    client: OnUpgrade,
    upstream: OnUpgrade,
    route: &Route,
    mut close: watch::Receiver<u64>,
    generation: u64,
) -> TunnelClose {
    let policy = &route.upgrades;
    let stats = &route.stats.tunnels;
    let start = Instant::now();
    // Milliseconds from `start` of the last byte either way.
    let active = AtomicU64::new(0);
    let closed = async {
        // A closed sender (the gateway is gone) closes the tunnel too.
        let _ = close.wait_for(|below| *below > generation).await;
    };
    let max = async {
        match policy.max_duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let idle = async {
        loop {
            let last = Duration::from_millis(active.load(Ordering::Relaxed));
            let at = start + last + policy.idle_timeout;
            if Instant::now() >= at {
                return;
            }
            tokio::time::sleep_until(at.into()).await;
        }
    };
    let pump = async {
        let (client, upstream) = match tokio::join!(client, upstream) {
            (Ok(c), Ok(u)) => (c, u),
            (c, u) => {
                let e = c.err().or(u.err()).map(|e| e.to_string());
                tracing::debug!(error = ?e, "a side of the tunnel did not switch");
                return TunnelClose::Error;
            }
        };
        let client = Counted {
            io: TokioIo::new(client),
            read: &stats.to_upstream,
            active: &active,
            start,
        };
        let upstream = Counted {
            io: TokioIo::new(upstream),
            read: &stats.to_client,
            active: &active,
            start,
        };
        pump(client, upstream).await
    };
    tokio::select! {
        why = pump => why,
        _ = idle => TunnelClose::IdleTimeout,
        _ = max => TunnelClose::MaxDuration,
        _ = closed => TunnelClose::Drain,
    }
}

/// Copies bytes both ways. The upstream is the server: when it ends its side, the session is over
/// and the client's side is closed as soon as what the upstream sent is written. A client that ends
/// its side (half-closes) still gets what the upstream sends until the upstream ends too (or the
/// idle timeout passes).
async fn pump<C, U>(client: C, upstream: U) -> TunnelClose
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    let (mut client_rx, mut client_tx) = tokio::io::split(client);
    let (mut upstream_rx, mut upstream_tx) = tokio::io::split(upstream);
    let to_upstream = async {
        tokio::io::copy(&mut client_rx, &mut upstream_tx).await?;
        upstream_tx.shutdown().await?;
        // Half-closed by the client: the other direction decides when the tunnel ends.
        std::future::pending::<std::io::Result<()>>().await
    };
    let to_client = async {
        tokio::io::copy(&mut upstream_rx, &mut client_tx).await?;
        client_tx.shutdown().await
    };
    let ended = tokio::select! {
        r = to_upstream => r,
        r = to_client => r,
    };
    match ended {
        Ok(()) => TunnelClose::Closed,
        Err(e) => {
            tracing::debug!(error = %e, "tunnel broke");
            TunnelClose::Error
        }
    }
}

/// One side of a tunnel: counts the bytes read from it, and stamps the tunnel's last activity.
struct Counted<'a, IO> {
    io: IO,
    read: &'a AtomicU64,
    active: &'a AtomicU64,
    start: Instant,
}

impl<IO> Counted<'_, IO> {
    fn stamp(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.active.fetch_max(ms, Ordering::Relaxed);
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Counted<'_, IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read.fetch_add(n as u64, Ordering::Relaxed);
            self.stamp();
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Counted<'_, IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.stamp();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
