//! Listeners and connections: accept, limit, guard, serve HTTP/1.1 and HTTP/2 on the same port, and
//! drain on shutdown.

pub mod h1_guard;

use crate::admin;
use crate::builder::RuntimeBuilder;
use crate::config::{Config, Listener};
use crate::conn::{ConnShared, ATTEND_ABUSE, ATTEND_DRAIN, ATTEND_STREAMS};
use crate::metrics::Metrics;
use crate::plugins::PluginHost;
use crate::proxy::{self, ConnInfo, Shared};
use crate::reload::{self, ReloadError, Reloader, Report, Trigger};
use crate::runtime::Source;
use arc_swap::ArcSwap;
use h1_guard::{GuardLimits, Guarded};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A socket could not be bound.
    #[error("cannot bind {what} to {address}: {source}")]
    Bind {
        /// Which listener.
        what: String,
        /// The address.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A running gateway.
pub struct Gateway {
    /// Shared state (runtime snapshot, metrics).
    pub shared: Arc<Shared>,
    addrs: HashMap<String, SocketAddr>,
    admin_addr: SocketAddr,
    stop: watch::Sender<bool>,
    stop_admin: watch::Sender<bool>,
    admin_task: tokio::task::JoinHandle<()>,
    draining: Arc<AtomicBool>,
    graceful: Arc<GracefulShutdown>,
    accept_tasks: Vec<tokio::task::JoinHandle<()>>,
    reloader: Arc<Reloader>,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// Validates `cfg`, binds every listener and the admin API, and starts serving.
    pub async fn start(cfg: Config, src: Source) -> Result<Gateway, StartError> {
        let metrics = Arc::new(Metrics::default());
        let plugins = Arc::new(PluginHost::new(
            crate::plugins::default_cache_dir(),
            cfg.server.wasm_pool.clone(),
        ));
        let runtime = RuntimeBuilder::new(&plugins, metrics.clone())
            .build(cfg, &src)
            .await?
            .runtime;
        runtime.start(&metrics);
        let file = src.path.clone();
        let listeners: Vec<Listener> = runtime.config.listeners.clone();
        let admin_cfg = runtime.config.admin.clone();
        let shared = Arc::new(Shared {
            runtime: Arc::new(ArcSwap::from_pointee(runtime)),
            metrics,
            plugins: plugins.clone(),
            tunnels: Default::default(),
        });
        plugins.bind(&shared.runtime);
        let reloader = Arc::new(Reloader::new(shared.clone(), file));
        let (stop, stop_rx) = watch::channel(false);
        let graceful = Arc::new(GracefulShutdown::new());
        let mut addrs = HashMap::new();
        let mut accept_tasks = Vec::new();
        // Client connections of all listeners together stay within half the descriptor limit
        // (the other half is for upstream connections, the admin API, plugin and certificate
        // files); each listener's `max_connections` applies within it.
        let client_budget = Arc::new(Semaphore::new(connection_budget(
            Semaphore::MAX_PERMITS,
            descriptor_limit(),
        )));
        for l in listeners {
            let tcp = TcpListener::bind(&l.address)
                .await
                .map_err(|e| StartError::Bind {
                    what: format!("listener `{}`", l.name),
                    address: l.address.clone(),
                    source: e,
                })?;
            let addr = tcp.local_addr().map_err(|e| StartError::Bind {
                what: format!("listener `{}`", l.name),
                address: l.address.clone(),
                source: e,
            })?;
            tracing::info!(listener = %l.name, %addr, "listening");
            addrs.insert(l.name.clone(), addr);
            accept_tasks.push(tokio::spawn(accept_loop(
                tcp,
                l,
                shared.clone(),
                stop_rx.clone(),
                graceful.clone(),
                client_budget.clone(),
            )));
        }
        let draining = Arc::new(AtomicBool::new(false));
        let admin_tcp =
            TcpListener::bind(&admin_cfg.address)
                .await
                .map_err(|e| StartError::Bind {
                    what: "the admin API".into(),
                    address: admin_cfg.address.clone(),
                    source: e,
                })?;
        let admin_addr = admin_tcp.local_addr().map_err(|e| StartError::Bind {
            what: "the admin API".into(),
            address: admin_cfg.address.clone(),
            source: e,
        })?;
        tracing::info!(%admin_addr, "admin API listening");
        // The admin API outlives the drain, so that /readyz can say "draining" to load balancers.
        let (stop_admin, stop_admin_rx) = watch::channel(false);
        let admin_task = tokio::spawn(admin::serve(
            admin_tcp,
            shared.clone(),
            admin_cfg.clone(),
            draining.clone(),
            stop_admin_rx,
            reloader.clone(),
        ));
        Ok(Gateway {
            shared,
            addrs,
            admin_addr,
            stop,
            stop_admin,
            admin_task,
            draining,
            graceful,
            accept_tasks,
            reloader,
            watcher: None,
        })
    }

    /// What applies reloads to this gateway (every trigger goes through it).
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    /// Applies a new config (YAML or JSON text) as a reload: validated and built completely, then
    /// swapped in; on error nothing changes.
    pub async fn reload_from(&self, text: &str) -> Result<Report, ReloadError> {
        self.reloader
            .reload_text(Trigger::Api, text.to_owned())
            .await
    }

    /// Reloads the config file whenever its content changes, until shutdown (see [`Reloader::watch`]).
    pub fn watch_config_file(&mut self) {
        if self.watcher.is_none() {
            self.watcher = Some(
                self.reloader
                    .watch(reload::WATCH_INTERVAL, reload::WATCH_DEBOUNCE),
            );
        }
    }

    /// The bound address of a listener.
    pub fn addr(&self, listener: &str) -> Option<SocketAddr> {
        self.addrs.get(listener).copied()
    }

    /// The bound address of the admin API.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Stops accepting, asks every connection to finish (HTTP/1: close when idle, `Connection: close`
    /// on the response in flight; HTTP/2: GOAWAY), and waits up to `drain` for them. Returns whether
    /// every connection finished in time.
    pub async fn shutdown(self, drain: Duration) -> bool {
        if let Some(w) = &self.watcher {
            w.abort();
        }
        self.draining.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        for t in self.accept_tasks {
            let _ = t.await;
        }
        let done = match Arc::try_unwrap(self.graceful) {
            Ok(graceful) => {
                let open = graceful.count();
                tracing::info!(
                    connections = open,
                    drain_ms = drain.as_millis() as u64,
                    "draining"
                );
                tokio::time::timeout(drain, graceful.shutdown())
                    .await
                    .is_ok()
            }
            Err(_) => false,
        };
        if !done {
            tracing::warn!("drain timeout reached; closing remaining connections");
        }
        // Tunnels the drain outlived close now (those that finished in time are gone already).
        self.shared.tunnels.close_all();
        let _ = self.stop_admin.send(true);
        let _ = self.admin_task.await;
        done
    }
}

fn guard_limits(l: &Listener) -> GuardLimits {
    GuardLimits {
        max_header_bytes: l.limits.max_header_bytes.0 as usize,
        max_headers: l.limits.max_headers,
        max_uri_bytes: l.limits.max_uri_bytes.0 as usize,
        header_read_timeout: l.limits.header_read_timeout.0,
        idle_timeout: l.limits.idle_timeout.0,
        send_timeout: l.limits.send_timeout.0,
    }
}

/// Spawns an HTTP/2 stream's task with its future boxed first. hyper hands over the stream's
/// future (the request's whole state, several KiB) by value, and spawning moves it a few times more
/// (into the task cell, into its stage); boxed, each of those moves is a pointer's. Measured on
/// gw-h2: 92 k instructions per request to 69 k (BENCHMARKS.md, issue 17).
#[derive(Clone, Copy, Debug)]
struct StreamExecutor;

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(Box::pin(fut));
    }
}

fn http_builder(l: &Listener) -> auto::Builder<StreamExecutor> {
    let mut b = auto::Builder::new(StreamExecutor);
    let head = l.limits.max_header_bytes.0 as usize;
    b.http1()
        .timer(TokioTimer::new())
        // The guard enforces the head timeout with its own clock and a 408.
        .header_read_timeout(None)
        .half_close(true)
        .max_headers(l.limits.max_headers.max(1))
        .max_buf_size((head + 16 * 1024).max(8192 + 1024));
    b.http2()
        .timer(TokioTimer::new())
        // WebSocket over HTTP/2 (RFC 8441), tunnelled to HTTP/1.1 upstreams (`proxy::upgrade`).
        .enable_connect_protocol()
        .max_concurrent_streams(l.limits.h2_max_concurrent_streams)
        .max_header_list_size(head as u32);
    b
}

async fn accept_loop(
    tcp: TcpListener,
    l: Listener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    graceful: Arc<GracefulShutdown>,
    client_budget: Arc<Semaphore>,
) {
    let limits = Arc::new(guard_limits(&l));
    let builder = Arc::new(http_builder(&l));
    let name: Arc<str> = Arc::from(l.name.as_str());
    let max = connection_budget(l.limits.max_connections, descriptor_limit());
    if max < l.limits.max_connections {
        tracing::warn!(listener = %name, configured = l.limits.max_connections, max, "max_connections is more than the process's descriptor limit allows; capped (raise `ulimit -n`)");
    }
    let permits = Arc::new(Semaphore::new(max));
    let mut last_warned: Option<std::time::Instant> = None;
    // The connections this loop accepted, told to finish when the gateway drains: through their
    // serving loop's one attention atomic, which it polls at every wake anyway, rather than a
    // drain channel each connection would poll too. Swept of closed ones as it grows.
    let mut open: Vec<std::sync::Weak<ConnShared>> = Vec::new();
    let mut sweep_at = 64;
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => {
                for c in open.iter().filter_map(std::sync::Weak::upgrade) {
                    c.drain();
                }
                return;
            }
            r = tcp.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors: established connections keep being served; new ones wait
                    // in the kernel's backlog until some close.
                    let fd = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                    let counter = if fd {
                        &shared.metrics.accept_errors_fd_limit
                    } else {
                        &shared.metrics.accept_errors_other
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    if last_warned.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                        tracing::warn!(listener = %name, error = %e, "accept failed");
                        last_warned = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let metrics = shared.metrics.clone();
        let permit = match (
            permits.clone().try_acquire_owned(),
            client_budget.clone().try_acquire_owned(),
        ) {
            (Ok(listener), Ok(process)) => (listener, process),
            (l, _) => {
                metrics.connections_rejected.fetch_add(1, Ordering::Relaxed);
                let what = if l.is_err() {
                    "max_connections reached"
                } else {
                    "the process's client connections fill half its descriptor limit"
                };
                tracing::warn!(listener = %name, %peer, "{what}; closing new connection");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(ConnShared::default());
        if open.len() >= sweep_at {
            open.retain(|c| c.strong_count() > 0);
            sweep_at = (open.len() * 2).max(64);
        }
        open.push(Arc::downgrade(&conn));
        let info = ConnInfo {
            listener: name.clone(),
            peer,
            forwarded_for: proxy::forwarded_for(peer.ip()),
            local: stream.local_addr().unwrap_or(peer),
            scheme: "http",
            tls: None,
            conn: conn.clone(),
            max_body_size: l.limits.max_body_size.0,
            max_uri_bytes: l.limits.max_uri_bytes.0 as usize,
            max_headers: l.limits.max_headers,
            h2_max_resets: l.limits.h2_max_resets,
        };
        let tls = shared.runtime.load().listener_tls.get(&*name).cloned();
        let handshake_timeout = l.limits.header_read_timeout.0;
        let watcher = graceful.watcher();
        let (shared, limits, builder) = (shared.clone(), limits.clone(), builder.clone());
        tokio::spawn(async move {
            metrics.connections_total.fetch_add(1, Ordering::Relaxed);
            metrics.connections_active.fetch_add(1, Ordering::Relaxed);
            let mut info = info;
            match tls {
                None => serve_connection(stream, info, shared, limits, builder, watcher).await,
                Some(cfg) => {
                    let accept = tokio_rustls::TlsAcceptor::from(cfg).accept(stream);
                    match tokio::time::timeout(handshake_timeout, accept).await {
                        Ok(Ok(tls)) => {
                            info.scheme = "https";
                            info.tls = Some(Arc::new(crate::tls::TlsInfo::of(tls.get_ref().1)));
                            serve_connection(tls, info, shared, limits, builder, watcher).await
                        }
                        Ok(Err(e)) => {
                            metrics.tls_handshake_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(peer = %info.peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            metrics.tls_handshake_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(peer = %info.peer, "TLS handshake timed out");
                        }
                    }
                }
            }
            metrics.connections_active.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// The process's soft limit on open descriptors, if it has one.
fn descriptor_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit it is given, which lives for the call.
    #[allow(unsafe_code)]
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    (ok && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// Client connections a listener, or all listeners together, may hold: `configured`, or half the
/// descriptor limit if that is less (the other half is for upstream connections, the admin API,
/// plugin and certificate files).
pub fn connection_budget(configured: usize, descriptor_limit: Option<u64>) -> usize {
    match descriptor_limit {
        Some(n) => configured.min(usize::try_from(n / 2).unwrap_or(usize::MAX).max(1)),
        None => configured,
    }
}

async fn serve_connection<IO>(
    stream: IO,
    info: ConnInfo,
    shared: Arc<Shared>,
    limits: Arc<GuardLimits>,
    builder: Arc<auto::Builder<StreamExecutor>>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn_state = info.conn.clone();
    let counters = shared.metrics.clone();
    let metrics = shared.metrics.clone();
    let send_timeout = limits.send_timeout;
    let io = Guarded::new(stream, limits, info.conn.clone())
        .on_reject(move |r| metrics.refused.inc(r.status));
    // One count per request for what the connection's requests share.
    let info = Arc::new(info);
    let svc = service_fn(move |req| {
        // A filter that closed the stream makes this an error: hyper resets the HTTP/2 stream or
        // closes the HTTP/1 connection, with no response.
        // (Not boxed: hyper's HTTP/1 slot takes the future in place, and a box would cost an
        // allocation and a copy of it per request; HTTP/2 streams are boxed by `StreamExecutor`.)
        proxy::handle(shared.clone(), info.clone(), req)
    });
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), svc)
        .into_owned();
    // The drain watcher only counts the connection (the drain waits for it); the connection is
    // told to finish here, on a drain or when its client cancels too many HTTP/2 streams, so that
    // both go through hyper's graceful shutdown (GOAWAY, in-flight streams finish).
    let _counted = watcher;
    let mut conn = std::pin::pin!(conn);
    let mut finishing = false;
    // HTTP/2 responses the client stops reading (a flow-control window left closed) do not block
    // the socket, so the guard's write clock does not see them: their clocks are looked at a few
    // times per send timeout, from the first HTTP/2 response on.
    let mut stall_check: Option<tokio::time::Interval> = None;
    let result = loop {
        tokio::select! {
            // The connection first: the other branches are rare, and a fixed order spares the
            // random draw per poll.
            biased;
            r = conn.as_mut() => break r,
            what = conn_state.attention() => {
                if what & (ATTEND_ABUSE | ATTEND_DRAIN) != 0 && !finishing {
                    finishing = true;
                    if what & ATTEND_ABUSE != 0 {
                        counters.h2_reset_goaways.fetch_add(1, Ordering::Relaxed);
                    }
                    conn.as_mut().graceful_shutdown();
                }
                if what & ATTEND_STREAMS != 0 && stall_check.is_none() {
                    let period = (send_timeout / 4).max(Duration::from_millis(50));
                    let mut every =
                        tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    stall_check = Some(every);
                }
            }
            _ = async { stall_check.as_mut().expect("checked").tick().await }, if stall_check.is_some() => {
                if conn_state.longest_wait() >= send_timeout {
                    // hyper offers no handle to reset one stream, so the connection goes; its
                    // streams' bodies, and their upstream connections, are dropped with it.
                    tracing::debug!("an HTTP/2 client did not read a response for the send timeout; closing");
                    conn_state.note_send_timeout();
                    break Ok(());
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
    // An upgraded connection lives on as a tunnel: it keeps its place in the drain and its
    // `max_connections` permit until the tunnel closes.
    conn_state.tunnels_closed().await;
    if conn_state.send_timed_out() {
        counters.send_timeouts.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::connection_budget;

    #[test]
    fn max_connections_fits_the_descriptor_limit() {
        assert_eq!(connection_budget(10_000, Some(1024)), 512);
        assert_eq!(connection_budget(100, Some(1024)), 100);
        assert_eq!(connection_budget(10_000, Some(1_048_576)), 10_000);
        assert_eq!(connection_budget(10_000, None), 10_000);
        assert_eq!(connection_budget(10, Some(1)), 1);
        assert!(super::descriptor_limit().is_some_and(|n| n > 0));
    }
}
