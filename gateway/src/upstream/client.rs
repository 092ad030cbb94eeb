//! The HTTP client of a cluster, on hyper's connection API: a pool per endpoint, no per-request task.
//!
//! - HTTP/1: idle connections of an endpoint wait in a small LIFO list (at most
//!   `pool.max_idle_per_endpoint`; none used once idle longer than `pool.idle_timeout`). A connection
//!   goes back to its list when the response body ends ([`PooledBody`]); a body dropped before its
//!   end, a `Connection: close` exchange or a closed connection is not put back. A request takes a
//!   pooled connection only once hyper reports it ready for the next request.
//! - HTTP/2: one multiplexed connection per endpoint, replaced when it closes or idles out.
//! - A request that hyper hands back unsent (a pooled connection closed or not ready) is sent once more
//!   on a new connection.
//! - Each connection's driver is spawned once; a sweeper task per client drops idle connections that
//!   outlived `idle_timeout`, and ends when the client is dropped.

use crate::body::Body;
use crate::config;
use bytes::Bytes;
use futures_util::future::Either;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Why an exchange with an endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection could be opened (name resolution, TCP connect, TLS handshake).
    #[error("{what}")]
    Connect {
        /// The step that failed.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The exchange on an open connection failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

impl ClientError {
    /// The connection could not be opened (nothing was sent).
    pub fn is_connect(&self) -> bool {
        matches!(self, ClientError::Connect { .. })
    }
}

fn connect_error(what: &'static str, source: io::Error) -> ClientError {
    ClientError::Connect { what, source }
}

/// The pooled client of one cluster.
pub struct Client {
    protocol: config::Protocol,
    /// Pools, indexed like the cluster's endpoints.
    endpoints: Arc<Vec<Arc<EndpointPool>>>,
    connect_timeout: Duration,
    tls: Option<tokio_rustls::TlsConnector>,
    sweeper: AtomicBool,
}

/// The connections of one endpoint.
struct EndpointPool {
    /// `host:port` to dial.
    address: String,
    /// `Host` for HTTP/1 requests that have none: the endpoint without its scheme's default port.
    host: Option<HeaderValue>,
    /// Name the TLS handshake verifies (the configured `server_name` or the endpoint's host).
    server_name: Result<ServerName<'static>, String>,
    max_idle: usize,
    idle_timeout: Duration,
    /// HTTP/1 idle connections, most recently used last.
    idle: Mutex<Vec<Idle>>,
    /// The HTTP/2 connection and when a request last started on it.
    h2: Mutex<Option<(http2::SendRequest<Body>, Instant)>>,
    /// Held while an HTTP/2 connection is being opened, so concurrent requests share one.
    h2_dial: tokio::sync::Mutex<()>,
}

struct Idle {
    tx: http1::SendRequest<Body>,
    since: Instant,
}

impl Client {
    /// A client for `cfg`'s endpoints (no I/O, no tasks); `tls` when the cluster speaks TLS.
    pub fn new(cfg: &config::Upstream, tls: Option<rustls::ClientConfig>) -> Client {
        let sni = cfg.tls.as_ref().and_then(|t| t.server_name.clone());
        let default_port = if tls.is_some() { 443 } else { 80 };
        let endpoints = cfg
            .endpoints
            .iter()
            .map(|e| {
                let authority: Option<http::uri::Authority> = e.address.parse().ok();
                let host = authority.as_ref().and_then(|a| {
                    let text = match a.port_u16() {
                        Some(p) if p != default_port => format!("{}:{p}", a.host()),
                        _ => a.host().to_owned(),
                    };
                    HeaderValue::from_str(&text).ok()
                });
                let name = match (&sni, &authority) {
                    (Some(n), _) => n.clone(),
                    (None, Some(a)) => {
                        let h = a.host();
                        h.strip_prefix('[')
                            .and_then(|h| h.strip_suffix(']'))
                            .unwrap_or(h)
                            .to_owned()
                    }
                    (None, None) => e.address.clone(),
                };
                let server_name = ServerName::try_from(name.clone())
                    .map_err(|err| format!("invalid TLS server name `{name}`: {err}"));
                Arc::new(EndpointPool {
                    address: e.address.clone(),
                    host,
                    server_name,
                    max_idle: cfg.pool.max_idle_per_endpoint,
                    idle_timeout: cfg.pool.idle_timeout.0,
                    idle: Mutex::new(Vec::new()),
                    h2: Mutex::new(None),
                    h2_dial: tokio::sync::Mutex::new(()),
                })
            })
            .collect();
        let tls = tls.map(|mut c| {
            c.alpn_protocols = match cfg.protocol {
                config::Protocol::Http1 => Vec::new(),
                config::Protocol::Http2 => vec![b"h2".to_vec()],
            };
            tokio_rustls::TlsConnector::from(Arc::new(c))
        });
        Client {
            protocol: cfg.protocol,
            endpoints: Arc::new(endpoints),
            connect_timeout: cfg.connect_timeout.0,
            tls,
            sweeper: AtomicBool::new(false),
        }
    }

    /// Sends `req` to the endpoint at `idx` (an index into the cluster's endpoints, which this client
    /// was built from). The URI may be absolute or origin-form; HTTP/1 requests are sent in origin
    /// form, with the endpoint as `Host` when they have none.
    ///
    /// Not an `async fn`: the request moves straight into the protocol's future instead of being
    /// kept beside it, which keeps the future (moved with every request) small.
    pub fn send(
        &self,
        idx: usize,
        mut req: Request<Body>,
    ) -> impl Future<Output = Result<Response<PooledBody>, ClientError>> + Send + '_ {
        let ep = &self.endpoints[idx];
        match self.protocol {
            config::Protocol::Http1 => {
                if !req.headers().contains_key(header::HOST) {
                    if let Some(h) = &ep.host {
                        req.headers_mut().insert(header::HOST, h.clone());
                    }
                }
                origin_form(req.uri_mut());
                Either::Left(self.send_h1(ep, req))
            }
            config::Protocol::Http2 => Either::Right(self.send_h2(ep, req)),
        }
    }

    async fn send_h1(
        &self,
        ep: &Arc<EndpointPool>,
        mut req: Request<Body>,
    ) -> Result<Response<PooledBody>, ClientError> {
        let reusable = !closes(req.headers());
        let mut pooled = ep.checkout();
        if pooled.is_none() && ep.has_idle() {
            // Only connections still finishing their last exchange: their drivers are usually
            // about to ask for the next request. Let them run once before opening a new connection.
            tokio::task::yield_now().await;
            pooled = ep.checkout();
        }
        loop {
            let reused = pooled.is_some();
            let mut tx = match pooled.take() {
                Some(tx) => tx,
                // Boxed: the rare dial would otherwise make every request's future larger.
                None => Box::pin(self.connect_h1(ep)).await?,
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let keep = reusable
                        && ep.max_idle > 0
                        && resp.status() != StatusCode::SWITCHING_PROTOCOLS
                        && !closes(resp.headers());
                    let (parts, inner) = resp.into_parts();
                    let mut body = PooledBody {
                        inner,
                        slot: keep.then(|| (tx, ep.clone())),
                    };
                    if body.inner.is_end_stream() {
                        body.release();
                    }
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut e) => match e.take_message() {
                    // Not sent: the pooled connection was closed or not ready. Once more, on a new one.
                    Some(r) if reused => {
                        tracing::debug!(endpoint = %ep.address, error = %e.error(), "pooled connection unusable, sending on a new one");
                        req = r;
                    }
                    _ => return Err(ClientError::Http(e.into_error())),
                },
            }
        }
    }

    async fn send_h2(
        &self,
        ep: &Arc<EndpointPool>,
        mut req: Request<Body>,
    ) -> Result<Response<PooledBody>, ClientError> {
        let mut retried = false;
        loop {
            let (mut tx, reused) = match ep.h2_current() {
                Some(tx) => (tx, true),
                None => Box::pin(self.connect_h2(ep)).await?,
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    let (parts, inner) = resp.into_parts();
                    let body = PooledBody { inner, slot: None };
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut e) => match e.take_message() {
                    Some(r) if reused && !retried => {
                        tracing::debug!(endpoint = %ep.address, error = %e.error(), "HTTP/2 connection unusable, sending on a new one");
                        ep.h2_forget();
                        retried = true;
                        req = r;
                    }
                    _ => return Err(ClientError::Http(e.into_error())),
                },
            }
        }
    }

    async fn connect_h1(
        &self,
        ep: &Arc<EndpointPool>,
    ) -> Result<http1::SendRequest<Body>, ClientError> {
        let io = self.dial(ep).await?;
        let (tx, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(ClientError::Http)?;
        let address = ep.address.clone();
        // With upgrades: a 101 hands the connection to the tunnel (`proxy::upgrade`); it is never
        // pooled (see `send_h1`).
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(endpoint = %address, error = %e, "upstream connection ended");
            }
        });
        self.start_sweeper();
        Ok(tx)
    }

    /// Opens the endpoint's HTTP/2 connection, unless another request did while this one waited.
    /// Without pooling (`max_idle_per_endpoint: 0`) every request gets a connection of its own.
    async fn connect_h2(
        &self,
        ep: &Arc<EndpointPool>,
    ) -> Result<(http2::SendRequest<Body>, bool), ClientError> {
        let _dialing = match ep.max_idle {
            0 => None,
            _ => Some(ep.h2_dial.lock().await),
        };
        if let Some(tx) = ep.h2_current() {
            return Ok((tx, true));
        }
        let io = self.dial(ep).await?;
        let (tx, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(ClientError::Http)?;
        let address = ep.address.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(endpoint = %address, error = %e, "upstream HTTP/2 connection ended");
            }
        });
        if ep.max_idle > 0 {
            *ep.h2.lock().unwrap() = Some((tx.clone(), Instant::now()));
            self.start_sweeper();
        }
        Ok((tx, false))
    }

    /// A TCP connection (each resolved address in turn, sharing the connect timeout), with TLS when
    /// the cluster speaks it.
    async fn dial(&self, ep: &EndpointPool) -> Result<TokioIo<Stream>, ClientError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(ep.address.as_str())
            .await
            .map_err(|e| connect_error("cannot resolve the endpoint", e))?
            .collect();
        if addrs.is_empty() {
            return Err(connect_error(
                "cannot resolve the endpoint",
                io::Error::new(io::ErrorKind::NotFound, "no addresses"),
            ));
        }
        let per_address = self.connect_timeout / addrs.len() as u32;
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            match tokio::time::timeout(per_address, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    tcp = Some(s);
                    break;
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => {
                    last = Some(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "connect to {addr} timed out after {} ms",
                            per_address.as_millis()
                        ),
                    ))
                }
            }
        }
        let Some(tcp) = tcp else {
            let e = last.unwrap_or_else(|| io::Error::other("no address to connect to"));
            return Err(connect_error("tcp connect error", e));
        };
        tcp.set_nodelay(true)
            .map_err(|e| connect_error("tcp connect error", e))?;
        let Some(tls) = &self.tls else {
            return Ok(TokioIo::new(Stream::Tcp(tcp)));
        };
        let name = ep.server_name.clone().map_err(|e| {
            connect_error(
                "tls handshake",
                io::Error::new(io::ErrorKind::InvalidInput, e),
            )
        })?;
        let s = tls
            .connect(name, tcp)
            .await
            .map_err(|e| connect_error("tls handshake", e))?;
        Ok(TokioIo::new(Stream::Tls(Box::new(s))))
    }

    /// Spawns, once, the task that drops connections idle for longer than the idle timeout.
    fn start_sweeper(&self) {
        if self.sweeper.swap(true, Ordering::Relaxed) {
            return;
        }
        let Some(first) = self.endpoints.first().filter(|e| e.max_idle > 0) else {
            return;
        };
        let period = (first.idle_timeout / 2).max(Duration::from_millis(50));
        let weak: Weak<Vec<Arc<EndpointPool>>> = Arc::downgrade(&self.endpoints);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(endpoints) = weak.upgrade() else {
                    return;
                };
                for ep in endpoints.iter() {
                    ep.sweep(Instant::now());
                }
            }
        });
    }
}

impl EndpointPool {
    /// The most recently pooled HTTP/1 connection that is ready for a request. Closed and idled-out
    /// ones are dropped on the way; one still finishing its last exchange (its driver has not yet
    /// asked for the next request, or the request body is still being written) stays for later.
    fn checkout(&self) -> Option<http1::SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap();
        if idle.is_empty() {
            return None;
        }
        let now = Instant::now();
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let e = &idle[i];
            if e.tx.is_closed() || now.saturating_duration_since(e.since) > self.idle_timeout {
                idle.remove(i);
            } else if e.tx.is_ready() {
                return Some(idle.remove(i).tx);
            }
        }
        None
    }

    fn has_idle(&self) -> bool {
        !self.idle.lock().unwrap().is_empty()
    }

    /// Pools a connection whose exchange is complete, unless it is closed or the pool is full.
    fn put(&self, tx: http1::SendRequest<Body>) {
        if tx.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap();
        if idle.len() < self.max_idle {
            idle.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
    }

    fn sweep(&self, now: Instant) {
        let expired = |since: Instant| now.saturating_duration_since(since) > self.idle_timeout;
        let stale: Vec<_> = {
            let mut idle = self.idle.lock().unwrap();
            if idle.is_empty() {
                Vec::new()
            } else {
                let (keep, stale) = std::mem::take(&mut *idle)
                    .into_iter()
                    .partition(|e| !e.tx.is_closed() && !expired(e.since));
                *idle = keep;
                stale
            }
        };
        drop(stale);
        let mut h2 = self.h2.lock().unwrap();
        if h2
            .as_ref()
            .is_some_and(|(tx, used)| tx.is_closed() || expired(*used))
        {
            *h2 = None;
        }
    }

    /// A handle on the open HTTP/2 connection, if there is one that has not idled out.
    fn h2_current(&self) -> Option<http2::SendRequest<Body>> {
        let mut h2 = self.h2.lock().unwrap();
        let (tx, used) = h2.as_mut()?;
        let now = Instant::now();
        if tx.is_closed() || now.saturating_duration_since(*used) > self.idle_timeout {
            *h2 = None;
            return None;
        }
        *used = now;
        Some(tx.clone())
    }

    /// Forgets the HTTP/2 connection after it handed a request back unsent: the next request opens
    /// a new one.
    fn h2_forget(&self) {
        self.h2.lock().unwrap().take();
    }
}

/// `Connection: close` among the headers.
fn closes(h: &http::HeaderMap) -> bool {
    h.get_all(header::CONNECTION).iter().any(|v| {
        let b = v.as_bytes();
        // The usual single tokens first, without splitting.
        if b.eq_ignore_ascii_case(b"keep-alive") {
            return false;
        }
        b.eq_ignore_ascii_case(b"close")
            || b.split(|&c| c == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

/// Drops scheme and authority: HTTP/1 requests to an origin carry only path and query.
fn origin_form(uri: &mut Uri) {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return;
    }
    let pq = match uri.path_and_query() {
        Some(pq) if pq.as_str().starts_with('/') => pq.clone(),
        Some(pq) if pq.as_str().starts_with('?') => match format!("/{}", pq.as_str()).parse() {
            Ok(p) => p,
            Err(_) => http::uri::PathAndQuery::from_static("/"),
        },
        _ => http::uri::PathAndQuery::from_static("/"),
    };
    *uri = Uri::from(pq);
}

/// A response body that puts its HTTP/1 connection back in the pool once it has been read to the end.
pub struct PooledBody {
    inner: Incoming,
    slot: Option<(http1::SendRequest<Body>, Arc<EndpointPool>)>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((tx, pool)) = self.slot.take() {
            pool.put(tx);
        }
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) => {
                if this.slot.is_some() && this.inner.is_end_stream() {
                    this.release();
                }
            }
            // A broken body leaves the connection in an unknown state: it is not reused.
            Poll::Ready(Some(Err(_))) => this.slot = None,
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Dropped after its end without being polled to `None` (e.g. an empty body never read).
        if self.slot.is_some() && self.inner.is_end_stream() {
            self.release();
        }
    }
}

/// A connection to an endpoint: plain TCP or TLS.
enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use http_body_util::BodyExt;
    use std::sync::atomic::AtomicUsize;

    /// An HTTP/1 server answering with the request path; counts the connections it accepted.
    async fn path_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                        let path = Bytes::from(req.uri().path().to_owned());
                        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                            path,
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn client_for(addr: SocketAddr) -> Client {
        let cfg: config::Upstream =
            serde_yaml_ng::from_str(&format!("name: up\nendpoints: [\"{addr}\"]\n")).unwrap();
        Client::new(&cfg, None)
    }

    #[tokio::test]
    async fn a_request_handed_back_unsent_is_sent_again_on_a_new_connection() {
        let (addr, accepted) = path_server().await;
        let client = client_for(addr);
        // A pooled connection that is ready (its driver asked for the next request) but whose driver
        // goes away before taking it, as when the upstream closes an idle connection.
        let (io, _peer) = tokio::io::duplex(4096);
        let (tx, conn) = http1::handshake::<_, Body>(TokioIo::new(io)).await.unwrap();
        let mut conn = Box::pin(conn);
        assert!(conn.as_mut().now_or_never().is_none());
        assert!(tx.is_ready());
        client.endpoints[0].put(tx);
        let stop = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(conn);
        });
        let req = Request::get(format!("http://{addr}/again"))
            .body(crate::body::empty())
            .unwrap();
        let resp = client.send(0, req).await.expect("sent on a new connection");
        stop.await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "/again");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_still_finishing_its_exchange_is_kept_but_not_used() {
        let (addr, accepted) = path_server().await;
        let client = client_for(addr);
        // Ready only once its driver runs: until then checkout passes it over and keeps it.
        let (io, _peer) = tokio::io::duplex(4096);
        let (tx, conn) = http1::handshake::<_, Body>(TokioIo::new(io)).await.unwrap();
        let ep = &client.endpoints[0];
        ep.put(tx);
        assert!(ep.checkout().is_none());
        assert_eq!(ep.idle.lock().unwrap().len(), 1);
        let mut conn = Box::pin(conn);
        assert!(conn.as_mut().now_or_never().is_none());
        assert!(ep.checkout().is_some());
        // Closed ones are dropped at checkout.
        let (io, _peer) = tokio::io::duplex(4096);
        let (tx, conn2) = http1::handshake::<_, Body>(TokioIo::new(io)).await.unwrap();
        ep.put(tx);
        drop(conn2);
        assert!(ep.checkout().is_none());
        assert_eq!(ep.idle.lock().unwrap().len(), 0);
        // A request then opens a connection, which goes back to the pool when its body ends.
        let req = Request::get("/x").body(crate::body::empty()).unwrap();
        let resp = client.send(0, req).await.unwrap();
        assert_eq!(ep.idle.lock().unwrap().len(), 0);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "/x");
        assert_eq!(ep.idle.lock().unwrap().len(), 1);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        drop(conn);
    }

    #[test]
    fn origin_form_keeps_path_and_query_only() {
        let mut u: Uri = "http://10.0.0.1:8080/a/b?x=1".parse().unwrap();
        origin_form(&mut u);
        assert_eq!(u.to_string(), "/a/b?x=1");
        let mut u: Uri = "https://h".parse().unwrap();
        origin_form(&mut u);
        assert_eq!(u.to_string(), "/");
        let mut u: Uri = "/already?q".parse().unwrap();
        origin_form(&mut u);
        assert_eq!(u.to_string(), "/already?q");
    }

    #[test]
    fn connection_close_is_found_among_tokens() {
        let mut h = http::HeaderMap::new();
        assert!(!closes(&h));
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        assert!(!closes(&h));
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, Close"),
        );
        assert!(closes(&h));
    }
}
