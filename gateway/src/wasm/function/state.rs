//! A function instance's store data: WASI (environment, read-only directories, stdout and stderr to
//! the log, no sockets), `wasi:http` with the gateway's hooks (outgoing requests only to granted
//! upstreams, through the gateway's upstream client), the memory limiter and the CPU account.

use super::sync_body::SyncBody;
use crate::upstream::Cluster;
use crate::wasm::sandbox::{SandboxState, StoreLimiter};
use crate::wasm::wasi::{GuestOutput, OutputPipe, Stream};
use bytes::Bytes;
use http_body_util::BodyExt;
use std::future::Future;
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
    /// Upstreams it may call.
    pub(crate) granted: Vec<String>,
    /// The serving config's clusters.
    pub(crate) resolve: Resolver,
    /// Time to the response head when the guest sets no `first-byte-timeout`: the function's own
    /// request timeout.
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
    /// Epoch ticks the guest ran through in the request being served.
    pub(crate) cpu_ticks: u64,
    /// When the epoch callback last ran (a tick is counted as the guest's only when the previous
    /// one ran just before: the guest ran through it, rather than waiting in the host).
    pub(crate) last_tick: Instant,
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
            cpu_ticks: 0,
            last_tick: Instant::now(),
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
        self.cpu_ticks = 0;
        self.last_tick = Instant::now();
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
            let aimed = aim(&out, request)?;
            let timeout = options
                .and_then(|o| o.first_byte_timeout)
                .unwrap_or(out.timeout);
            send(aimed, timeout).await
        })
    }
}

/// A function's request, pointed at endpoint `idx` of `cluster`.
struct Aimed {
    cluster: Arc<Cluster>,
    idx: usize,
    req: http::Request<crate::body::Body>,
}

/// The granted upstream a request's authority names, and the request pointed at one of its endpoints.
fn aim(out: &Outbound, request: http::Request<WasiBody>) -> Result<Aimed, HttpError> {
    let (mut parts, body) = request.into_parts();
    let authority = parts.uri.authority().map(|a| a.as_str()).unwrap_or("");
    let denied = |why: &str| {
        tracing::warn!(function = %out.name, authority, "outgoing request refused: {why}");
        HttpError::HttpRequestDenied
    };
    if !out.granted.iter().any(|g| g == authority) {
        return Err(denied(
            "not an upstream granted to the function (`upstreams:`)",
        ));
    }
    let cluster = (out.resolve)(authority).ok_or_else(|| denied("no such upstream"))?;
    let idx = cluster
        .policy
        .pick(&cluster.endpoints, None, None)
        .ok_or(HttpError::DestinationUnavailable)?;
    let ep = &cluster.endpoints[idx];
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("{}://{}{pq}", cluster.scheme, ep.address)
        .parse()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    parts.version = match cluster.protocol {
        crate::config::Protocol::Http1 => http::Version::HTTP_11,
        crate::config::Protocol::Http2 => http::Version::HTTP_2,
    };
    if let Ok(v) = http::HeaderValue::from_str(&ep.address) {
        parts.headers.insert(http::header::HOST, v);
    }
    let body = crate::body::boxed(SyncBody::new(
        body.map_err(|e| -> crate::body::BoxError { Box::new(e) }),
    ));
    Ok(Aimed {
        cluster,
        idx,
        req: http::Request::from_parts(parts, body),
    })
}

/// Sends the request over the cluster's pooled client; the response head within `timeout` counts
/// for the endpoint's passive health. The body streams to the guest as it comes.
async fn send(
    Aimed { cluster, idx, req }: Aimed,
    timeout: Duration,
) -> Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
> {
    let ep = cluster.endpoints[idx].clone();
    let result = tokio::time::timeout(timeout, cluster.client.send(idx, req)).await;
    let resp = match result {
        Ok(Ok(resp)) => {
            ep.record(true, &cluster.passive);
            resp
        }
        Ok(Err(e)) => {
            ep.record(false, &cluster.passive);
            tracing::debug!(upstream = %cluster.name, endpoint = %ep.address, "function's request failed: {e}");
            return Err(HttpError::ConnectionRefused);
        }
        Err(_) => {
            ep.record(false, &cluster.passive);
            return Err(HttpError::HttpResponseTimeout);
        }
    };
    let resp = resp.map(|b| {
        b.map_frame(|f: http_body::Frame<Bytes>| f)
            .map_err(|e| HttpError::InternalError(Some(e.to_string())))
            .boxed_unsync()
    });
    let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(async { Ok(()) });
    Ok((resp, io))
}
