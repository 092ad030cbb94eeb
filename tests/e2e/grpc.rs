//! gRPC through the gateway with real tonic clients and servers (protobuf messages, tonic's client
//! and server cores over hyper HTTP/2): unary, client-streaming, server-streaming and bidirectional
//! calls over h2c and TLS on both sides, with metadata and trailers passed; `grpc-timeout` as the
//! call's deadline; the gateway's own errors in gRPC form; retries on a gRPC status; routing by
//! service and method. Streaming checks go in lockstep over channels: each message is seen on the
//! other side before the next is sent.

use crate::harness::*;
use http::uri::PathAndQuery;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status, Streaming};

/// The one message of the test services.
#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
}

fn msg(text: &str) -> Msg {
    Msg { text: text.into() }
}

/// `Msg` as protobuf through tonic (what tonic-prost's codec does, for one type).
#[derive(Clone, Copy, Default)]
struct Proto;

impl Codec for Proto {
    type Encode = Msg;
    type Decode = Msg;
    type Encoder = Proto;
    type Decoder = Proto;

    fn encoder(&mut self) -> Proto {
        Proto
    }

    fn decoder(&mut self) -> Proto {
        Proto
    }
}

impl Encoder for Proto {
    type Item = Msg;
    type Error = Status;

    fn encode(&mut self, item: Msg, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        prost::Message::encode(&item, dst).map_err(|e| Status::internal(e.to_string()))
    }
}

impl Decoder for Proto {
    type Item = Msg;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Msg>, Status> {
        prost::Message::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

// ---- The server ----------------------------------------------------------------------------------

/// What a test server shares with its test.
struct State {
    name: String,
    /// `grpc-timeout` of each call, as it arrived.
    timeouts: Mutex<Vec<Option<String>>>,
    /// Unary calls that asked to fail once.
    failed_once: AtomicUsize,
    /// Each streamed message the server reads, as it reads it.
    arrived: mpsc::UnboundedSender<String>,
    /// What `Watch` sends, fed by the test (one `Watch` call per server).
    feed: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

/// A test gRPC server. Every service has the methods (the path's last segment):
/// - `Unary`: `<name>:<text>:<x-user metadata>` with initial metadata `x-server: <name>`;
///   `fail-once` is UNAVAILABLE the first time; `sleep:<ms>` answers after that long;
///   `status:<code>:<message>` fails with that status.
/// - `Collect` (client streaming): the texts joined with `,`; UNAVAILABLE at once on a message
///   `fail-now` (the rest unread), or after the last message if that is `fail`.
/// - `Watch` (server streaming): what the test feeds, then OK with trailer `x-total`.
/// - `Chat` (bidirectional): each text upper-cased, then OK with trailer `x-count`.
struct Server {
    addr: SocketAddr,
    state: Arc<State>,
    arrived: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    feed: mpsc::UnboundedSender<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Reply<T> = Pin<Box<dyn Future<Output = Result<Response<T>, Status>> + Send>>;
type Replies = Pin<Box<dyn futures_util::Stream<Item = Result<Msg, Status>> + Send>>;

struct Svc(Arc<State>);

impl tonic::server::UnaryService<Msg> for Svc {
    type Response = Msg;
    type Future = Reply<Msg>;

    fn call(&mut self, req: Request<Msg>) -> Reply<Msg> {
        let state = self.0.clone();
        Box::pin(async move {
            let user = req
                .metadata()
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let text = req.into_inner().text;
            if text == "fail-once" && state.failed_once.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(Status::unavailable("try again"));
            }
            if let Some(ms) = text.strip_prefix("sleep:") {
                tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
            }
            if let Some(rest) = text.strip_prefix("status:") {
                let (code, message) = rest.split_once(':').unwrap();
                return Err(Status::new(
                    Code::from_i32(code.parse().unwrap()),
                    message.to_owned(),
                ));
            }
            let mut resp = Response::new(msg(&format!("{}:{text}:{user}", state.name)));
            resp.metadata_mut()
                .insert("x-server", state.name.parse().unwrap());
            Ok(resp)
        })
    }
}

impl tonic::server::ClientStreamingService<Msg> for Svc {
    type Response = Msg;
    type Future = Reply<Msg>;

    fn call(&mut self, req: Request<Streaming<Msg>>) -> Reply<Msg> {
        let state = self.0.clone();
        Box::pin(async move {
            let mut incoming = req.into_inner();
            let mut all = Vec::new();
            while let Some(m) = incoming.message().await? {
                let _ = state.arrived.send(m.text.clone());
                if m.text == "fail-now" {
                    return Err(Status::unavailable("busy"));
                }
                all.push(m.text);
            }
            if all.last().is_some_and(|t| t == "fail") {
                return Err(Status::unavailable("busy"));
            }
            Ok(Response::new(msg(&all.join(","))))
        })
    }
}

impl tonic::server::ServerStreamingService<Msg> for Svc {
    type Response = Msg;
    type ResponseStream = Replies;
    type Future = Reply<Replies>;

    fn call(&mut self, _req: Request<Msg>) -> Reply<Replies> {
        let feed = self.0.feed.lock().unwrap().take();
        Box::pin(async move {
            let mut feed = feed.ok_or_else(|| Status::failed_precondition("fed once"))?;
            let mut sent = 0u64;
            let mut done = false;
            let replies = futures_util::stream::poll_fn(move |cx| {
                if done {
                    return Poll::Ready(None);
                }
                match feed.poll_recv(cx) {
                    Poll::Ready(Some(t)) if t != END => {
                        sent += 1;
                        Poll::Ready(Some(Ok(msg(&t))))
                    }
                    Poll::Ready(_) => {
                        // OK with trailing metadata: tonic sends an `Ok` status item as trailers.
                        done = true;
                        let mut end = Status::new(Code::Ok, "");
                        end.metadata_mut()
                            .insert("x-total", MetadataValue::from(sent));
                        Poll::Ready(Some(Err(end)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            });
            Ok(Response::new(Box::pin(replies) as Replies))
        })
    }
}

impl tonic::server::StreamingService<Msg> for Svc {
    type Response = Msg;
    type ResponseStream = Replies;
    type Future = Reply<Replies>;

    fn call(&mut self, req: Request<Streaming<Msg>>) -> Reply<Replies> {
        let state = self.0.clone();
        Box::pin(async move {
            let mut incoming = req.into_inner();
            let (tx, mut rx) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                let mut n = 0u64;
                loop {
                    match incoming.message().await {
                        Ok(Some(m)) => {
                            n += 1;
                            let _ = state.arrived.send(m.text.clone());
                            let _ = tx.send(Ok(msg(&m.text.to_uppercase())));
                        }
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
                let mut end = Status::new(Code::Ok, "");
                end.metadata_mut().insert("x-count", MetadataValue::from(n));
                let _ = tx.send(Err(end));
            });
            let replies = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
            Ok(Response::new(Box::pin(replies) as Replies))
        })
    }
}

async fn serve(
    state: Arc<State>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<tonic::body::Body>, std::convert::Infallible> {
    state.timeouts.lock().unwrap().push(
        req.headers()
            .get("grpc-timeout")
            .map(|v| v.to_str().unwrap().to_owned()),
    );
    let mut grpc = tonic::server::Grpc::new(Proto);
    let method = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
    Ok(match method.as_str() {
        "Unary" => grpc.unary(Svc(state), req).await,
        "Collect" => grpc.client_streaming(Svc(state), req).await,
        "Watch" => grpc.server_streaming(Svc(state), req).await,
        "Chat" => grpc.streaming(Svc(state), req).await,
        _ => Status::unimplemented("no such method").into_http(),
    })
}

impl Server {
    /// A server named `name` on an ephemeral port: h2c, or TLS (ALPN h2) with `tls`.
    async fn start(name: &str, tls: Option<rustls::ServerConfig>) -> Server {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let (arrived_tx, arrived_rx) = mpsc::unbounded_channel();
        let (feed_tx, feed_rx) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            name: name.into(),
            timeouts: Mutex::default(),
            failed_once: AtomicUsize::new(0),
            arrived: arrived_tx,
            feed: Mutex::new(Some(feed_rx)),
        });
        let acceptor = tls.map(|mut c| {
            c.alpn_protocols = vec![b"h2".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(c))
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = tcp.accept().await {
                let state = shared.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| serve(state.clone(), req));
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
        Server {
            addr,
            state,
            arrived: tokio::sync::Mutex::new(arrived_rx),
            feed: feed_tx,
            task,
        }
    }

    /// The next streamed message the server read.
    async fn next_arrival(&self) -> String {
        let mut rx = self.arrived.lock().await;
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the message reached the server")
            .unwrap()
    }

    /// How many calls the server has had.
    fn calls(&self) -> usize {
        self.state.timeouts.lock().unwrap().len()
    }

    /// The `grpc-timeout` of the last call, as a duration.
    fn last_timeout(&self) -> Option<Duration> {
        let t = self
            .state
            .timeouts
            .lock()
            .unwrap()
            .last()
            .cloned()
            .flatten()?;
        gateway::proxy::grpc::parse_timeout(&t.parse().unwrap())
    }
}

// ---- The client ----------------------------------------------------------------------------------

/// One HTTP/2 connection as tonic's client transport.
#[derive(Clone)]
struct Conn(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

type Sent = Pin<
    Box<dyn Future<Output = Result<http::Response<hyper::body::Incoming>, hyper::Error>> + Send>,
>;

impl tower_service::Service<http::Request<tonic::body::Body>> for Conn {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Sent;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Sent {
        Box::pin(self.0.send_request(req))
    }
}

type Client = tonic::client::Grpc<Conn>;

/// A tonic client on a new connection to `addr`: h2c prior knowledge, or TLS (ALPN h2) trusting
/// `tls.0` for the name `tls.1`.
async fn client(addr: SocketAddr, tls: Option<(Arc<rustls::ClientConfig>, &str)>) -> Client {
    let (conn, origin) = connect(addr, tls).await;
    tonic::client::Grpc::with_origin(conn, origin.parse().unwrap())
}

/// A new HTTP/2 connection to `addr` (see [`client`]) and the origin to call it by.
async fn connect(
    addr: SocketAddr,
    tls: Option<(Arc<rustls::ClientConfig>, &str)>,
) -> (Conn, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let exec = TokioExecutor::new();
    let (send, origin) = match tls {
        None => {
            let (send, conn) = hyper::client::conn::http2::handshake(exec, TokioIo::new(tcp))
                .await
                .unwrap();
            tokio::spawn(conn);
            (send, format!("http://{addr}"))
        }
        Some((cfg, name)) => {
            let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
            let s = tokio_rustls::TlsConnector::from(cfg)
                .connect(server_name, tcp)
                .await
                .unwrap();
            assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            let (send, conn) = hyper::client::conn::http2::handshake(exec, TokioIo::new(s))
                .await
                .unwrap();
            tokio::spawn(conn);
            (send, format!("https://{name}:{}", addr.port()))
        }
    };
    (Conn(send), origin)
}

fn path(p: &'static str) -> PathAndQuery {
    PathAndQuery::from_static(p)
}

async fn unary(
    c: &mut Client,
    p: &'static str,
    req: Request<Msg>,
) -> Result<Response<Msg>, Status> {
    c.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    c.unary(req, path(p), Proto).await
}

async fn call(c: &mut Client, p: &'static str, text: &str) -> Result<String, Status> {
    unary(c, p, Request::new(msg(text)))
        .await
        .map(|r| r.into_inner().text)
}

/// A request stream the test feeds message by message.
fn feed() -> (
    mpsc::UnboundedSender<Msg>,
    impl futures_util::Stream<Item = Msg> + Send + 'static,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    (
        tx,
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)),
    )
}

async fn next(s: &mut Streaming<Msg>) -> Result<Option<String>, Status> {
    tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .expect("a message or the end within 10 s")
        .map(|m| m.map(|m| m.text))
}

fn grpc_upstream(name: &str, addr: SocketAddr) -> Upstream {
    Upstream::new(name)
        .endpoint(addr)
        .lines("    protocol: http2\n    health: {passive: {consecutive_failures: 0}}\n")
}

/// A route `name` for the gRPC service `service` (and `method`) to `upstream`.
fn grpc_route(name: &str, service: &str, method: Option<&str>, upstream: &str) -> Route {
    let m = method.map(|m| format!(", method: {m}")).unwrap_or_default();
    Route::new(name)
        .upstream(upstream)
        .lines(&format!("    match: {{grpc: {{service: {service}{m}}}}}\n"))
}

/// Runs the four kinds of call against `c` (whose gateway routes `test.v1.Echo` to `up`).
async fn four_kinds_of_call(c: &Client, up: &Server) {
    // Unary: metadata both ways.
    let mut req = Request::new(msg("hi"));
    req.metadata_mut().insert("x-user", "ann".parse().unwrap());
    let resp = unary(&mut c.clone(), "/test.v1.Echo/Unary", req)
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("x-server").unwrap(), "up");
    assert_eq!(resp.into_inner().text, "up:hi:ann");

    // A status with a message that needs percent-encoding passes as the upstream sent it.
    let err = call(
        &mut c.clone(),
        "/test.v1.Echo/Unary",
        "status:5:gone 100% — for good",
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::NotFound, "gone 100% — for good")
    );

    // Client streaming: each message reaches the server before the next is sent.
    let (tx, stream) = feed();
    let mut cc = c.clone();
    let collect = tokio::spawn(async move {
        cc.ready().await.unwrap();
        cc.client_streaming(Request::new(stream), path("/test.v1.Echo/Collect"), Proto)
            .await
    });
    for t in ["a", "b", "c"] {
        tx.send(msg(t)).unwrap();
        assert_eq!(up.next_arrival().await, t);
    }
    drop(tx);
    let got = collect.await.unwrap().unwrap().into_inner().text;
    assert_eq!(got, "a,b,c");

    // Server streaming: each message reaches the client before the server has the next; the
    // trailers (status OK and metadata) come through.
    let mut cc = c.clone();
    cc.ready().await.unwrap();
    let mut watch = cc
        .server_streaming(Request::new(msg("go")), path("/test.v1.Echo/Watch"), Proto)
        .await
        .unwrap()
        .into_inner();
    for t in ["one", "two", "three"] {
        up.feed.send(t.into()).unwrap();
        assert_eq!(next(&mut watch).await.unwrap().as_deref(), Some(t));
    }
    up.feed.send(END.into()).unwrap();
    assert_eq!(next(&mut watch).await.unwrap(), None);
    let trailers = watch.trailers().await.unwrap().unwrap();
    assert_eq!(trailers.get("x-total").unwrap(), "3");

    // Bidirectional: each reply comes back before the next message is sent; trailers at the end.
    let (tx, stream) = feed();
    let mut cc = c.clone();
    cc.ready().await.unwrap();
    let mut chat = cc
        .streaming(Request::new(stream), path("/test.v1.Echo/Chat"), Proto)
        .await
        .unwrap()
        .into_inner();
    for t in ["x", "y", "z"] {
        tx.send(msg(t)).unwrap();
        assert_eq!(up.next_arrival().await, t);
        assert_eq!(next(&mut chat).await.unwrap(), Some(t.to_uppercase()));
    }
    drop(tx);
    assert_eq!(next(&mut chat).await.unwrap(), None);
    let trailers = chat.trailers().await.unwrap().unwrap();
    assert_eq!(trailers.get("x-count").unwrap(), "3");
}

/// The feed text that ends a `Watch` (the test's sender lives as long as its `Server`).
const END: &str = "end of feed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_of_every_kind_over_h2c_routed_by_service_and_method() {
    let up = Server::start("up", None).await;
    let other = Server::start("other", None).await;
    let cfg = GatewayConfig::new()
        .upstream(grpc_upstream("up", up.addr))
        .upstream(grpc_upstream("other", other.addr))
        .route(grpc_route("echo", "test.v1.Echo", None, "up"))
        .route(grpc_route(
            "other-unary",
            "test.v2.Other",
            Some("Unary"),
            "other",
        ))
        .route(grpc_route("other-rest", "test.v2.Other", None, "up"));
    let gw = TestGateway::start(&cfg.yaml()).await;
    let c = client(gw.addr, None).await;

    four_kinds_of_call(&c, &up).await;

    // The method's route wins over its service's; the service's takes its other methods.
    let mut cc = c.clone();
    assert_eq!(
        call(&mut cc, "/test.v2.Other/Unary", "who").await.unwrap(),
        "other:who:"
    );
    let (tx, stream) = feed();
    tx.send(msg("m")).unwrap();
    drop(tx);
    cc.ready().await.unwrap();
    let r = cc
        .client_streaming(Request::new(stream), path("/test.v2.Other/Collect"), Proto)
        .await
        .unwrap();
    assert_eq!(r.into_inner().text, "m");
    assert_eq!(up.next_arrival().await, "m");

    // A service no route names: UNIMPLEMENTED from the gateway (not the upstream's words).
    let err = call(&mut cc, "/test.v9.None/Unary", "x").await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unimplemented, "no route matches this request")
    );

    // The same path without a gRPC content type is not a gRPC call: no route, HTTP 404.
    let req = http::Request::post(gw.url("/test.v1.Echo/Unary"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    let (s, h, _) = request(req).await;
    assert_eq!(
        (s, hv(&h, "content-type").as_str()),
        (404, "application/json")
    );
}

/// A listener certificate for `localhost` signed by a new CA: (cert, key) files, and a client
/// config trusting the CA that offers h2.
fn listener_tls(dir: &std::path::Path) -> ((PathBuf, PathBuf), Arc<rustls::ClientConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = p.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let (c, k) = (dir.join("gw.pem"), dir.join("gw.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    ((c, k), Arc::new(cfg))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_of_every_kind_over_tls_on_both_sides() {
    let dir = TempDir::new("grpc-tls");
    let (ca, server_tls) = test_ca_server(&dir.0, "up-ca.pem", "grpc.example.com");
    let up = Server::start("up", Some(server_tls)).await;
    let ((cert, key), client_tls) = listener_tls(&dir.0);
    let yaml = format!(
        "listeners:\n  - name: main\n    address: 127.0.0.1:0\n    tls:\n      certificates:\n        - {{cert: {}, key: {}}}\n{}",
        cert.display(),
        key.display(),
        GatewayConfig::new()
            .upstream(grpc_upstream("up", up.addr).lines(&format!(
                "    tls: {{ca: {}, server_name: grpc.example.com}}\n",
                ca.display()
            )))
            .route(grpc_route("echo", "test.v1.Echo", None, "up"))
            .yaml()
    );
    let gw = TestGateway::start(&yaml).await;
    let c = client(gw.addr, Some((client_tls, "localhost"))).await;
    four_kinds_of_call(&c, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeout_is_the_deadline_and_goes_upstream_reduced() {
    let up = Server::start("up", None).await;
    let cfg = GatewayConfig::new()
        .upstream(grpc_upstream("up", up.addr))
        .route(grpc_route("echo", "test.v1.Echo", None, "up").lines("    timeout: 10s\n"))
        .route(grpc_route("short", "test.v1.Short", None, "up").lines("    timeout: 300ms\n"));
    let gw = TestGateway::start(&cfg.yaml()).await;
    let mut c = client(gw.addr, None).await;
    let timed = |text: &str, t: Duration| {
        let mut r = Request::new(msg(text));
        r.set_timeout(t);
        r
    };

    // Without grpc-timeout the upstream gets none (the route's timeout is the gateway's own).
    call(&mut c, "/test.v1.Echo/Unary", "plain").await.unwrap();
    assert_eq!(up.last_timeout(), None);

    // The client's deadline goes upstream, less what the gateway spent (never more).
    unary(
        &mut c,
        "/test.v1.Echo/Unary",
        timed("hi", Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let seen = up.last_timeout().unwrap();
    assert!(
        seen <= Duration::from_secs(5) && seen > Duration::from_secs(1),
        "{seen:?}"
    );

    // The route's shorter timeout bounds only the response headers: the upstream gets the call's
    // deadline, which also bounds a stream after the headers.
    unary(
        &mut c,
        "/test.v1.Short/Unary",
        timed("hi", Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let seen = up.last_timeout().unwrap();
    assert!(
        seen <= Duration::from_secs(5) && seen > Duration::from_secs(1),
        "{seen:?}"
    );

    // A deadline hit: DEADLINE_EXCEEDED from the gateway, before the upstream's answer (2 s).
    for (p, t) in [
        ("/test.v1.Echo/Unary", Duration::from_millis(300)),
        ("/test.v1.Short/Unary", Duration::from_secs(5)),
    ] {
        let start = Instant::now();
        let err = unary(&mut c, p, timed("sleep:2000", t)).await.unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (
                Code::DeadlineExceeded,
                "the upstream did not answer in time"
            ),
            "{p}"
        );
        assert!(start.elapsed() < Duration::from_millis(1900), "{p}");
    }

    // A stream past its deadline ends with DEADLINE_EXCEEDED after what it already had.
    c.ready().await.unwrap();
    let mut watch = c
        .server_streaming(
            timed("go", Duration::from_millis(600)),
            path("/test.v1.Echo/Watch"),
            Proto,
        )
        .await
        .unwrap()
        .into_inner();
    up.feed.send("first".into()).unwrap();
    assert_eq!(next(&mut watch).await.unwrap().as_deref(), Some("first"));
    let err = next(&mut watch).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_own_errors_answer_in_grpc_form() {
    let up = Server::start("up", None).await;
    let closed = free_port();
    let consumers = "consumers:\n  - name: ann\n    credentials: {key-auth: {key: k-ann}}\n";
    let cfg = GatewayConfig::new()
        .upstream(grpc_upstream("up", up.addr))
        .upstream(grpc_upstream(
            "down",
            format!("127.0.0.1:{closed}").parse().unwrap(),
        ))
        .route(grpc_route("down", "test.v1.Down", None, "down"))
        .route(grpc_route("echo", "test.v1.Echo", None, "up"))
        .route(grpc_route("small", "test.v1.Small", None, "up").lines("    max_body_size: 16\n"))
        .route(
            grpc_route("auth", "test.v1.Auth", None, "up")
                .lines("    filters: [{plugin: key-auth, config: {}}]\n"),
        )
        .route(
            grpc_route("deny", "test.v1.Deny", None, "up").lines(
                "    filters: [{plugin: ip-restriction, config: {deny: [\"127.0.0.1\"]}}]\n",
            ),
        )
        .route(grpc_route("limited", "test.v1.Limited", None, "up").lines(
            "    filters: [{plugin: rate-limiting, config: {limits: [{per: minute, limit: 1}]}}]\n",
        ))
        .raw(consumers);
    let gw = TestGateway::start(&cfg.yaml()).await;
    let mut c = client(gw.addr, None).await;
    let code = |r: Result<String, Status>| {
        let e = r.unwrap_err();
        (e.code(), e.message().to_owned())
    };

    // No route, on the wire: HTTP 200, application/grpc, the status in the headers, no body.
    let (mut conn, _) = connect(gw.addr, None).await;
    let req = http::Request::post(format!("http://{}/test.v9.None/Unary", gw.addr))
        .header("content-type", "application/grpc+proto")
        .header("te", "trailers")
        .body(tonic::body::Body::empty())
        .unwrap();
    std::future::poll_fn(|cx| tower_service::Service::poll_ready(&mut conn, cx))
        .await
        .unwrap();
    let resp = tower_service::Service::call(&mut conn, req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "application/grpc");
    assert_eq!(h["grpc-status"], "12");
    assert_eq!(h["grpc-message"], "no route matches this request");
    assert_eq!(h["x-request-id"].len(), 16);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap();
    assert!(body.trailers().is_none());
    assert!(body.to_bytes().is_empty());

    assert_eq!(
        code(call(&mut c, "/test.v9.None/Unary", "x").await),
        (Code::Unimplemented, "no route matches this request".into())
    );
    assert_eq!(
        code(call(&mut c, "/test.v1.Down/Unary", "x").await),
        (
            Code::Unavailable,
            "the upstream could not be reached".into()
        )
    );
    assert_eq!(
        code(call(&mut c, "/test.v1.Small/Unary", "more than sixteen bytes").await),
        (
            Code::ResourceExhausted,
            "the request body exceeds the limit of 16 bytes".into()
        )
    );
    // Filters' local answers: 401, 403, 429, with their messages.
    let (c401, m401) = code(call(&mut c, "/test.v1.Auth/Unary", "x").await);
    assert_eq!(c401, Code::Unauthenticated, "{m401}");
    assert!(!m401.is_empty() && !m401.starts_with('{'), "{m401}");
    let mut keyed = Request::new(msg("k"));
    keyed
        .metadata_mut()
        .insert("apikey", "k-ann".parse().unwrap());
    let ok = unary(&mut c, "/test.v1.Auth/Unary", keyed).await;
    assert!(ok.is_ok(), "{ok:?}");
    let (c403, m403) = code(call(&mut c, "/test.v1.Deny/Unary", "x").await);
    assert_eq!(c403, Code::PermissionDenied, "{m403}");
    call(&mut c, "/test.v1.Limited/Unary", "first")
        .await
        .unwrap();
    let (c429, m429) = code(call(&mut c, "/test.v1.Limited/Unary", "second").await);
    assert_eq!(
        (c429, m429.as_str()),
        (Code::Unavailable, "API rate limit exceeded")
    );

    // The upstream's own statuses are its own: a trailers-only UNAVAILABLE passes as it is.
    assert_eq!(
        code(call(&mut c, "/test.v1.Echo/Unary", "status:14:busy").await),
        (Code::Unavailable, "busy".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_retried_on_a_grpc_status() {
    let up = Server::start("up", None).await;
    let cfg =
        GatewayConfig::new()
            .upstream(grpc_upstream("up", up.addr))
            .route(grpc_route("retried", "test.v1.Echo", None, "up").lines(
                "    retry: {attempts: 2, on: [grpc:unavailable, grpc:resource-exhausted]}\n",
            ))
            .route(
                grpc_route("once", "test.v1.Once", None, "up")
                    .lines("    retry: {on: [grpc:internal]}\n"),
            );
    let gw = TestGateway::start(&cfg.yaml()).await;
    let mut c = client(gw.addr, None).await;
    let retries = || async {
        metric(
            &gw.metrics().await,
            "gateway_upstream_retries_total{upstream=\"up\"}",
        )
        .unwrap()
    };

    // UNAVAILABLE once, then OK: the client sees OK, and the retry is counted.
    assert_eq!(
        call(&mut c, "/test.v1.Echo/Unary", "fail-once")
            .await
            .unwrap(),
        "up:fail-once:"
    );
    assert_eq!(up.state.failed_once.load(Ordering::SeqCst), 2);
    assert_eq!(retries().await, 1.0);

    // A status the route does not retry on comes back as it is, tried once.
    let err = call(&mut c, "/test.v1.Once/Unary", "status:14:busy")
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::Unavailable, "busy"));
    assert_eq!(retries().await, 1.0);

    // Retried to the end: the last answer is the client's.
    let err = call(&mut c, "/test.v1.Echo/Unary", "status:8:full")
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::ResourceExhausted, "full")
    );
    assert_eq!(retries().await, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_config_errors_name_their_line() {
    let cases = [
        (
            "    retry: {on: [grpc:not-found]}\n",
            "retry: {on: [grpc:not-found]}",
            "grpc:unavailable",
        ),
        (
            "    retry: {on: [grpc:RESOURCE_EXHAUSTED]}\n",
            "retry: {on: [grpc:RESOURCE_EXHAUSTED]}",
            "written `grpc:resource-exhausted`",
        ),
        (
            "    retry: {on: [grpc:deadline_exceeded]}\n",
            "retry: {on: [grpc:deadline_exceeded]}",
            "written `grpc:deadline-exceeded`",
        ),
        (
            "    match: {grpc: {service: \"pkg/Svc\"}}\n",
            "match: {grpc: {service: \"pkg/Svc\"}}",
            "routes[0].match.grpc.service",
        ),
        (
            "    match: {grpc: {service: pkg.Svc, method: \"a.b\"}}\n",
            "match: {grpc: {service: pkg.Svc, method: \"a.b\"}}",
            "routes[0].match.grpc.method",
        ),
        (
            "    match: {path: {prefix: /x}, grpc: {service: pkg.Svc}}\n",
            "match: {path: {prefix: /x}, grpc: {service: pkg.Svc}}",
            "`grpc` sets the path",
        ),
        (
            "    match: {grpc: {service: pkg.Svc, methods: [Get]}}\n",
            "match: {grpc: {service: pkg.Svc, methods: [Get]}}",
            "unknown field `methods`",
        ),
    ];
    for (lines, end, says) in cases {
        let yaml = GatewayConfig::new()
            .upstream(Upstream::new("up").endpoint("127.0.0.1:1"))
            .route(Route::new("r").upstream("up").lines(lines))
            .yaml();
        let err = refused(&yaml).await;
        let line = line_ending(&yaml, end);
        assert!(err.contains(&format!("test.yaml:{line}:")), "{err}");
        assert!(err.contains(says), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_timeout_longer_than_the_route_timeout_bounds_the_whole_call() {
    let up = Server::start("up", None).await;
    let cfg = GatewayConfig::new()
        .upstream(grpc_upstream("up", up.addr))
        .route(grpc_route("echo", "test.v1.Echo", None, "up").lines("    timeout: 1s\n"));
    let gw = TestGateway::start(&cfg.yaml()).await;
    let mut c = client(gw.addr, None).await;

    // The route's 1 s bounds the headers only: a 30 s deadline lets a 2 s stream run to its end,
    // and the upstream is told the call's deadline, not the route's.
    let mut r = Request::new(msg("go"));
    r.set_timeout(Duration::from_secs(30));
    c.ready().await.unwrap();
    let mut watch = c
        .server_streaming(r, path("/test.v1.Echo/Watch"), Proto)
        .await
        .unwrap()
        .into_inner();
    let seen = up.last_timeout().unwrap();
    assert!(seen > Duration::from_secs(25), "{seen:?}");
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        up.feed.send(format!("m{i}")).unwrap();
        assert_eq!(
            next(&mut watch).await.unwrap(),
            Some(format!("m{i}")),
            "message {i}"
        );
    }
    up.feed.send(END.into()).unwrap();
    assert_eq!(next(&mut watch).await.unwrap(), None);
    let trailers = watch.trailers().await.unwrap().unwrap();
    assert_eq!(trailers.get("x-total").unwrap(), "5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_counts_from_the_requests_arrival() {
    let up = Server::start("up", None).await;
    // A retry policy: the gateway reads a small body whole before it forwards the call.
    let cfg = GatewayConfig::new()
        .upstream(grpc_upstream("up", up.addr))
        .route(
            grpc_route("echo", "test.v1.Echo", None, "up")
                .lines("    retry: {on: [grpc:unavailable]}\n"),
        );
    let gw = TestGateway::start(&cfg.yaml()).await;
    let (mut conn, _) = connect(gw.addr, None).await;
    // `Msg { text: "hi" }` in a gRPC frame, sent 600 ms after the headers.
    let frame = bytes::Bytes::from_static(&[0, 0, 0, 0, 4, 0x0a, 2, b'h', b'i']);
    let late = futures_util::stream::once(async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(frame))
    });
    let req = http::Request::post(format!("http://{}/test.v1.Echo/Unary", gw.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "2S")
        .header("content-length", "9")
        .body(tonic::body::Body::new(http_body_util::StreamBody::new(
            late,
        )))
        .unwrap();
    std::future::poll_fn(|cx| tower_service::Service::poll_ready(&mut conn, cx))
        .await
        .unwrap();
    let resp = tower_service::Service::call(&mut conn, req).await.unwrap();
    assert_eq!(resp.status(), 200);
    // The client's 2 s began when its headers came: the upstream has what is left of them.
    let seen = up.last_timeout().unwrap();
    assert!(seen <= Duration::from_millis(1450), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_grpc_timeout_is_not_passed_on() {
    let up = Server::start("up", None).await;
    let cfg = GatewayConfig::new()
        .upstream(grpc_upstream("up", up.addr))
        .route(grpc_route("echo", "test.v1.Echo", None, "up"));
    let gw = TestGateway::start(&cfg.yaml()).await;
    let (mut conn, _) = connect(gw.addr, None).await;
    for bad in ["5x", "123456789m", "S"] {
        let req = http::Request::post(format!("http://{}/test.v1.Echo/Unary", gw.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", bad)
            .body(tonic::body::Body::new(http_body_util::Full::new(
                bytes::Bytes::from_static(&[0, 0, 0, 0, 4, 0x0a, 2, b'h', b'i']),
            )))
            .unwrap();
        std::future::poll_fn(|cx| tower_service::Service::poll_ready(&mut conn, cx))
            .await
            .unwrap();
        let resp = tower_service::Service::call(&mut conn, req).await.unwrap();
        assert_eq!(resp.status(), 200, "{bad}");
        let got = up.state.timeouts.lock().unwrap().last().cloned();
        assert_eq!(got, Some(None), "{bad} reached the upstream");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_over_the_limit_or_unfinished_is_not_retried() {
    let up = Server::start("up", None).await;
    let cfg = GatewayConfig::new()
        .upstream(grpc_upstream("up", up.addr))
        .route(
            grpc_route("echo", "test.v1.Echo", None, "up")
                .lines("    retry: {attempts: 2, on: [grpc:unavailable], buffer_limit: 64}\n"),
        );
    let gw = TestGateway::start(&cfg.yaml()).await;
    let c = client(gw.addr, None).await;
    let collect = |texts: Vec<String>| {
        let mut c = c.clone();
        async move {
            c.ready().await.unwrap();
            let s = futures_util::stream::iter(texts.into_iter().map(|t| msg(&t)));
            c.client_streaming(Request::new(s), path("/test.v1.Echo/Collect"), Proto)
                .await
        }
    };
    let unavailable = |r: Result<Response<Msg>, Status>| {
        let e = r.unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::Unavailable, "busy"));
    };

    // A small body that ended before the answer: kept whole and sent again, twice.
    let before = up.calls();
    unavailable(collect(vec!["a".into(), "fail".into()]).await);
    assert_eq!(up.calls() - before, 3);

    // Over `buffer_limit` (64 bytes): streamed, not kept, so tried once.
    let before = up.calls();
    unavailable(collect(vec!["x".repeat(40), "y".repeat(40), "fail".into()]).await);
    assert_eq!(up.calls() - before, 1);

    // Answered while the client was still sending: the body had not ended, so tried once.
    let before = up.calls();
    let (tx, rx) = feed();
    let mut cc = c.clone();
    cc.ready().await.unwrap();
    tx.send(msg("fail-now")).unwrap();
    let r = cc
        .client_streaming(Request::new(rx), path("/test.v1.Echo/Collect"), Proto)
        .await;
    unavailable(r);
    drop(tx);
    assert_eq!(up.calls() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailers_only_unavailable_counts_against_the_endpoint() {
    let up = Server::start("up", None).await;
    let cfg = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr).lines(
            "    protocol: http2\n    health: {passive: {consecutive_failures: 2, ejection_time: 30s}}\n",
        ))
        .route(grpc_route("echo", "test.v1.Echo", None, "up"));
    let gw = TestGateway::start(&cfg.yaml()).await;
    let mut c = client(gw.addr, None).await;

    // Other statuses are the call's, not the endpoint's: they do not count.
    for _ in 0..3 {
        let e = call(&mut c, "/test.v1.Echo/Unary", "status:5:none")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }
    // Two UNAVAILABLE in a row (as Envoy maps it, 503) eject the endpoint: the next call is the
    // gateway's own UNAVAILABLE, and does not reach it.
    for _ in 0..2 {
        let e = call(&mut c, "/test.v1.Echo/Unary", "status:14:busy")
            .await
            .unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::Unavailable, "busy"));
    }
    let before = up.calls();
    let e = call(&mut c, "/test.v1.Echo/Unary", "hi").await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert_ne!(e.message(), "busy");
    assert_eq!(up.calls(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_try_span_has_the_http_and_the_grpc_status() {
    use crate::tracing::{attr, Collector};
    use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode};
    let up = Server::start("up", None).await;
    let otlp = Collector::start().await;
    let cfg = GatewayConfig::new()
        .upstream(grpc_upstream("up", up.addr))
        .route(
            grpc_route("echo", "test.v1.Echo", None, "up")
                .lines("    retry: {on: [grpc:unavailable]}\n"),
        )
        .raw(&format!(
            "server:\n  access_log: {{enabled: false}}\n  tracing:\n    endpoint: http://{}/v1/traces\n    scheduled_delay: 50ms\n",
            otlp.addr
        ));
    let gw = TestGateway::start(&cfg.yaml()).await;
    let mut c = client(gw.addr, None).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut r = Request::new(msg("fail-once"));
    r.metadata_mut().insert(
        "traceparent",
        format!("00-{trace}-00f067aa0ba902b7-01").parse().unwrap(),
    );
    unary(&mut c, "/test.v1.Echo/Unary", r).await.unwrap();

    // UNAVAILABLE (trailers-only, HTTP 200), then OK: both tries have HTTP 200 and their gRPC
    // status; only the first is an error, named by its gRPC status.
    let id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let spans = otlp.trace(&id, 3).await;
    let mut tries: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    tries.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(tries.len(), 2, "{spans:#?}");
    let a = |i: usize, k: &str| attr(&tries[i].attributes, k);
    let error =
        |i: usize| tries[i].status.as_ref().map(|s| s.code) == Some(StatusCode::Error as i32);
    assert_eq!(a(0, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(a(0, "rpc.grpc.status_code").as_deref(), Some("14"));
    assert_eq!(a(0, "error.type").as_deref(), Some("UNAVAILABLE"));
    assert!(error(0), "{:?}", tries[0]);
    assert_eq!(a(1, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(a(1, "error.type"), None);
    assert!(!error(1), "{:?}", tries[1]);
}
