//! A real gRPC server for the gateway's gRPC tests, written with tonic's server (`tonic::server::Grpc`)
//! over hyper's HTTP/2 server, cleartext or TLS. Messages are raw bytes (a pass-through codec), so no
//! generated code is needed:
//!
//! - `test.Authz/Check` (unary): `allow` answers `ok:<x-user metadata>` with initial metadata
//!   `x-initial: check`; `deny` fails with PERMISSION_DENIED "no entry"; `slow` answers `ok:slow`
//!   after 500 ms; anything else is INVALID_ARGUMENT.
//! - `test.Echo/Chat` (bidirectional): initial metadata `x-initial: hello`, each message back in
//!   upper case, then (once the client ends its side) status OK with `x-count: <messages>` in the
//!   trailers; it counts streams ended cleanly and streams reset.
//! - `test.Echo/Fail`: a trailers-only NOT_FOUND "missing".
//! - any other path: UNIMPLEMENTED.

use bytes::{Buf, BufMut, Bytes};
use futures_util::{Stream, StreamExt};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status, Streaming};

/// Messages as they are on the wire.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// What the server saw.
#[derive(Default)]
struct Seen {
    /// Each call: path, `:authority`, `grpc-timeout`, `x-user`.
    calls: Mutex<Vec<SeenCall>>,
    /// Streams whose client side ended cleanly (half-closed).
    streams_ended: AtomicUsize,
    /// Streams the client reset (cancelled).
    streams_reset: AtomicUsize,
}

/// One call as the server saw it.
#[derive(Clone, Debug)]
pub struct SeenCall {
    pub path: String,
    pub authority: String,
    pub grpc_timeout: Option<String>,
    pub user: Option<String>,
    pub content_type: Option<String>,
    pub te: Option<String>,
}

/// A running gRPC server; it stops when dropped.
pub struct GrpcServer {
    pub addr: SocketAddr,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Check;

impl tonic::server::UnaryService<Bytes> for Check {
    type Response = Bytes;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Bytes>, Status>> + Send>>;

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        Box::pin(async move {
            let user = req
                .metadata()
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            match req.get_ref().as_ref() {
                b"allow" => {
                    let mut resp = Response::new(Bytes::from(format!("ok:{user}")));
                    resp.metadata_mut()
                        .insert("x-initial", MetadataValue::from_static("check"));
                    Ok(resp)
                }
                b"deny" => Err(Status::permission_denied("no entry")),
                b"slow" => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Ok(Response::new(Bytes::from_static(b"ok:slow")))
                }
                other => Err(Status::invalid_argument(format!(
                    "unknown verdict `{}`",
                    String::from_utf8_lossy(other)
                ))),
            }
        })
    }
}

struct Chat(Arc<Seen>);

type Replies = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

impl tonic::server::StreamingService<Bytes> for Chat {
    type Response = Bytes;
    type ResponseStream = Replies;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Replies>, Status>> + Send>>;

    fn call(&mut self, req: Request<Streaming<Bytes>>) -> Self::Future {
        let seen = self.0.clone();
        Box::pin(async move {
            let mut incoming = req.into_inner();
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move {
                let mut n = 0;
                loop {
                    match incoming.next().await {
                        Some(Ok(m)) => {
                            n += 1;
                            let _ = tx.send(Ok(Bytes::from(m.to_ascii_uppercase())));
                        }
                        Some(Err(_)) => {
                            seen.streams_reset.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        None => break,
                    }
                }
                seen.streams_ended.fetch_add(1, Ordering::SeqCst);
                // Status OK with trailing metadata: tonic sends an `Ok` status item as the trailers.
                let mut end = Status::new(Code::Ok, "");
                end.metadata_mut()
                    .insert("x-count", MetadataValue::from(n as u64));
                let _ = tx.send(Err(end));
            });
            let replies = tokio_stream_from(rx);
            let mut resp = Response::new(replies);
            resp.metadata_mut()
                .insert("x-initial", MetadataValue::from_static("hello"));
            Ok(resp)
        })
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Result<Bytes, Status>>,
) -> Replies {
    Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// Answers one request.
async fn serve(
    seen: Arc<Seen>,
    req: http::Request<Incoming>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let h = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    seen.calls.lock().unwrap().push(SeenCall {
        path: req.uri().path().to_owned(),
        authority: req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        grpc_timeout: h("grpc-timeout"),
        user: h("x-user"),
        content_type: h("content-type"),
        te: h("te"),
    });
    let mut grpc = tonic::server::Grpc::new(Raw);
    Ok(match req.uri().path() {
        "/test.Authz/Check" => grpc.unary(Check, req).await,
        "/test.Echo/Chat" => grpc.streaming(Chat(seen.clone()), req).await,
        "/test.Echo/Fail" => Status::not_found("missing").into_http(),
        _ => Status::unimplemented("no such method").into_http(),
    })
}

impl GrpcServer {
    /// Starts a server on an ephemeral port: cleartext HTTP/2, or TLS when `tls` is given (its
    /// ALPN is set to `h2`).
    pub async fn start(tls: Option<rustls::ServerConfig>) -> GrpcServer {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let acceptor = tls.map(|mut c| {
            c.alpn_protocols = vec![b"h2".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(c))
        });
        let state = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = tcp.accept().await else {
                    return;
                };
                let seen = state.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| serve(seen.clone(), req));
                    let http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(a) => {
                            if let Ok(s) = a.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        });
        GrpcServer { addr, seen, task }
    }

    /// Every call the server received, in order.
    pub fn calls(&self) -> Vec<SeenCall> {
        self.seen.calls.lock().unwrap().clone()
    }

    /// How many `Chat` streams the client ended cleanly (half-closed).
    pub fn streams_ended(&self) -> usize {
        self.seen.streams_ended.load(Ordering::SeqCst)
    }

    /// How many `Chat` streams the client reset (cancelled).
    pub fn streams_reset(&self) -> usize {
        self.seen.streams_reset.load(Ordering::SeqCst)
    }
}
