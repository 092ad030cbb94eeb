//! A function instance's store data: WASI (environment, read-only directories, stdout and stderr to
//! the log, no sockets), `wasi:http` with the gateway's hooks (outgoing requests only to granted
//! upstreams, through the gateway's upstream client), the memory limiter and the CPU account.

use super::sync_body::SyncBody;
use crate::upstream::retry::{RetryPolicy, TryOutcome};
use crate::upstream::Cluster;
use crate::wasm::sandbox::{SandboxState, StoreLimiter};
use crate::wasm::wasi::{GuestOutput, OutputPipe, Stream};
use bytes::Bytes;
use http_body_util::BodyExt;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

/// Finds the serving config's upstream cluster by name.
pub type Resolver = Arc<dyn Fn(&str) -> Option<Arc<Cluster>> + Send + Sync>;

/// What every instance of one function shares for its outgoing requests.
pub(crate) struct Outbound {
    /// The function's name (logs).
    pub(crate) name: Arc<str>,
    /// Upstreams it may call, with how.
    pub(crate) granted: Vec<Grant>,
    /// The serving config's clusters.
    pub(crate) resolve: Resolver,
    /// Time to the response head of a grant without its own `timeout`: the function's own request
    /// timeout (a guest's shorter `first-byte-timeout` wins).
    pub(crate) timeout: Duration,
}

/// The gateway's `wasi:http` hooks of one instance.
pub(crate) struct Hooks {
    pub(crate) outbound: Arc<Outbound>,
}

/// Store data of one function instance.
pub(crate) struct FnState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: Hooks,
    limiter: StoreLimiter,
    output: Arc<Mutex<GuestOutput>>,
    /// CPU time of the request being served (and, before the first, of instantiating).
    pub(crate) cpu: Arc<super::cpu::CpuMeter>,
}

impl FnState {
    pub(crate) fn new(
        wasi: WasiCtx,
        output: Arc<Mutex<GuestOutput>>,
        limiter: StoreLimiter,
        outbound: Arc<Outbound>,
    ) -> FnState {
        FnState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: Hooks { outbound },
            limiter,
            output,
            cpu: Arc::default(),
        }
    }

    /// The WASI context of a new instance: `env`, read-only `dirs` (guest path, host path), stdout
    /// and stderr into `output`, no sockets.
    pub(crate) fn wasi(
        env: &[(String, String)],
        dirs: &[(String, std::path::PathBuf)],
        output: &Arc<Mutex<GuestOutput>>,
    ) -> Result<WasiCtx, String> {
        let mut b = WasiCtx::builder();
        for (k, v) in env {
            b.env(k, v);
        }
        for (guest, host) in dirs {
            b.preopened_dir(host, guest, wasmtime_wasi::FsPerms::ReadOnly)
                .map_err(|e| format!("cannot open {}: {e:#}", host.display()))?;
        }
        b.stdout(OutputPipe::new(output.clone(), Stream::Stdout))
            .stderr(OutputPipe::new(output.clone(), Stream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        Ok(b.build())
    }

    /// A new request begins on this instance: its CPU account starts at zero.
    pub(crate) fn begin_request(&mut self) {
        self.cpu.reset();
        self.limiter.reset();
        crate::wasm::wasi::lock(&self.output).begin_call(None);
    }
}

impl SandboxState for FnState {
    // The epoch callback is the function's own (see `LoadedFunction::store`).
    const WAITS: bool = false;

    fn limiter(&mut self) -> &mut StoreLimiter {
        &mut self.limiter
    }

    fn last_words(&mut self) -> Vec<String> {
        crate::wasm::wasi::lock(&self.output).take_last_words()
    }
}

impl WasiView for FnState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for FnState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for Hooks {
    // The gateway sets Host itself, to the endpoint it picked.
    fn set_host_header(&mut self) -> bool {
        false
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let out = self.outbound.clone();
        Box::new(async move {
            let (grant, cluster) = granted(&out, &request)?;
            let timeout = grant.timeout.unwrap_or(out.timeout);
            let timeout = match options.and_then(|o| o.first_byte_timeout) {
                Some(t) => t.min(timeout),
                None => timeout,
            };
            send(&out, grant, cluster, request, timeout).await
        })
    }
}

/// An upstream granted to a function, with how its requests to it are tried.
pub(crate) struct Grant {
    /// The upstream's name.
    pub(crate) upstream: String,
    /// Retries (none: one try).
    pub(crate) retry: Option<RetryPolicy>,
    /// Time to the response head, all tries included (none: the function's timeout).
    pub(crate) timeout: Option<Duration>,
}

impl Grant {
    pub(crate) fn new(cfg: &crate::config::functions::Grant) -> Grant {
        use crate::config::functions::Grant as Cfg;
        match cfg {
            Cfg::Name(n) => Grant {
                upstream: n.clone(),
                retry: None,
                timeout: None,
            },
            Cfg::Upstream(o) => Grant {
                upstream: o.upstream.clone(),
                retry: o.retry.clone().map(RetryPolicy::new),
                timeout: o.timeout.map(|t| t.0),
            },
        }
    }
}

/// The grant and upstream a request's authority names, or why it is refused.
fn granted<'a>(
    out: &'a Outbound,
    request: &http::Request<WasiBody>,
) -> Result<(&'a Grant, Arc<Cluster>), HttpError> {
    let authority = request.uri().authority().map(|a| a.as_str()).unwrap_or("");
    let denied = |why: &str| {
        tracing::warn!(function = %out.name, authority, "outgoing request refused: {why}");
        HttpError::HttpRequestDenied
    };
    let grant = out
        .granted
        .iter()
        .find(|g| g.upstream == authority)
        .ok_or_else(|| denied("not an upstream granted to the function (`upstreams:`)"))?;
    let cluster = (out.resolve)(authority).ok_or_else(|| denied("no such upstream"))?;
    Ok((grant, cluster))
}

type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
);

/// Sends the request over the cluster's pooled client, retried by the grant's policy (the route's
/// [`RetryPolicy`]: conditions, methods, per-try timeout, backoff, budget), within `timeout` to the
/// response head. A body is sent again only if it was kept: none, or a `content-length` within the
/// policy's `buffer_limit` (collected before the first try, as a route does); a streamed body goes
/// once. Each try counts for its endpoint's passive health. The last try's answer, or its error,
/// is the guest's; the answer's body streams to the guest as it comes.
async fn send(
    out: &Outbound,
    grant: &Grant,
    cluster: Arc<Cluster>,
    request: http::Request<WasiBody>,
    timeout: Duration,
) -> Result<Sent, HttpError> {
    let start = Instant::now();
    let deadline = start + timeout;
    let (mut parts, body) = request.into_parts();
    let body = crate::body::boxed(SyncBody::new(
        body.map_err(|e| -> crate::body::BoxError { Box::new(e) }),
    ));
    parts.version = match cluster.protocol {
        crate::config::Protocol::Http1 => http::Version::HTTP_11,
        crate::config::Protocol::Http2 => http::Version::HTTP_2,
    };
    let retry = grant
        .retry
        .as_ref()
        .filter(|p| p.method_allowed(&parts.method));
    if let Some(p) = retry {
        p.deposit();
    }
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let replayable = retry.is_some_and(|p| {
        http_body::Body::is_end_stream(&body) || declared.is_some_and(|n| n <= p.cfg.buffer_limit.0)
    });
    let (mut once, replay) = if replayable {
        // The guest writes it after `handle`; it has the time to the head to do so.
        match tokio::time::timeout_at(deadline.into(), body.collect()).await {
            Ok(Ok(c)) => (None, Some(c.to_bytes())),
            Ok(Err(e)) => return Err(HttpError::InternalError(Some(format!("request body: {e}")))),
            Err(_) => return Err(HttpError::HttpResponseTimeout),
        }
    } else {
        (Some(body), None)
    };
    let retry = retry.filter(|_| replay.is_some());
    // One try takes the head; with retries each try gets a copy (as `proxy::forward` does).
    let mut parts = Some(parts);

    let mut idx = cluster
        .policy
        .pick(&cluster.endpoints, None, None)
        .ok_or(HttpError::DestinationUnavailable)?;
    let mut attempt = 0u32;
    loop {
        let ep = cluster.endpoints[idx].clone();
        let mut head = match retry {
            Some(_) => parts.clone(),
            None => parts.take(),
        }
        .expect("without retries there is one try");
        let uri = format!(
            "{}://{}{}",
            cluster.scheme,
            ep.address,
            head.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        head.uri = uri.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;
        if let Ok(v) = http::HeaderValue::from_str(&ep.address) {
            head.headers.insert(http::header::HOST, v);
        }
        let body = match (&replay, once.take()) {
            (Some(b), _) => crate::body::full(b.clone()),
            (None, Some(b)) => b,
            (None, None) => crate::body::empty(),
        };
        let req = http::Request::from_parts(head, body);
        let remaining = deadline.saturating_duration_since(Instant::now());
        let per_try = retry
            .and_then(|p| p.cfg.per_try_timeout)
            .map_or(remaining, |t| t.0.min(remaining));
        cluster.stats.requests.fetch_add(1, Ordering::Relaxed);
        let result = tokio::time::timeout(per_try, cluster.client.send(idx, req)).await;
        let (outcome, result) = match result {
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                ep.record(!matches!(status, 502..=504), &cluster.passive);
                (TryOutcome::Status(status), Ok(resp))
            }
            Ok(Err(e)) => {
                ep.record(false, &cluster.passive);
                tracing::debug!(function = %out.name, upstream = %cluster.name, endpoint = %ep.address, "function's request failed: {e}");
                if e.is_connect() {
                    cluster.stats.error("connect");
                    (
                        TryOutcome::ConnectFailure,
                        Err(HttpError::ConnectionRefused),
                    )
                } else {
                    cluster.stats.error("protocol");
                    (TryOutcome::Reset, Err(HttpError::ConnectionTerminated))
                }
            }
            Err(_) => {
                ep.record(false, &cluster.passive);
                cluster.stats.error("timeout");
                (TryOutcome::Timeout, Err(HttpError::HttpResponseTimeout))
            }
        };
        let next = retry.and_then(|p| {
            let pause = p.next_pause(attempt, outcome, deadline)?;
            let next = cluster.policy.pick(&cluster.endpoints, None, Some(idx))?;
            p.withdraw().then_some((next, pause))
        });
        let Some((next, pause)) = next else {
            let resp = result?.map(|b| {
                b.map_frame(|f: http_body::Frame<Bytes>| f)
                    .map_err(|e| HttpError::InternalError(Some(e.to_string())))
                    .boxed_unsync()
            });
            let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            return Ok((resp, io));
        };
        drop(result);
        attempt += 1;
        cluster.stats.retries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(function = %out.name, upstream = %cluster.name, endpoint = %ep.address, ?outcome, attempt, "retrying");
        tokio::time::sleep(pause).await;
        idx = next;
    }
}
