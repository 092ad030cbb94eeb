//! A mock upstream: a real HTTP/1.1 and HTTP/2 server on 127.0.0.1 that records what it saw and behaves
//! by path:
//!
//! - `/status/{code}`: answers with that status;
//! - `/delay/{ms}`: waits, then 200;
//! - `/slow`: waits 3 s, then 200 (longer than the callout timeouts of the fixture plugins);
//! - `/close`: drops the connection without answering;
//! - `/auth`: 200 `allowed`, or 403 `forbidden` when the request body is `deny` (no newline: plugins
//!   copy it into a header);
//! - `/echo`: answers with the request body;
//! - `/upload`: reads the body without keeping it and answers with its length;
//! - `/stream/{n}`: answers with n chunks of 64 KiB, generated as they are sent;
//! - `/foo/{n}`: n chunks `foo {i}\n`, streamed;
//! - `/trailers`: a body followed by trailers;
//! - anything else: 200 `mock {name} {path}`.
//!
//! Every answer carries `x-upstream: {name}`, and `x-echo-from` with the request's `x-from` if it had one.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// One request as the mock saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub uri: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct State {
    name: String,
    hits: AtomicUsize,
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    /// Answer the next N requests with this status.
    fail_next: Mutex<(usize, u16)>,
}

/// A running mock upstream; it stops when dropped.
pub struct MockUpstream {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockUpstream {
    /// Starts a mock named `name` on an ephemeral port.
    pub async fn start(name: &str) -> MockUpstream {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(name, tcp)
    }

    /// Starts a mock on a given listener (e.g. to reuse a port).
    pub fn serve(name: &str, tcp: TcpListener) -> MockUpstream {
        let addr = tcp.local_addr().unwrap();
        let state = Arc::new(State {
            name: name.into(),
            ..Default::default()
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = tcp.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        MockUpstream { addr, state, task }
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the mock saw a request")
    }

    /// Answers the next `n` requests with `status`.
    pub fn fail_next(&self, n: usize, status: u16) {
        *self.state.fail_next.lock().unwrap() = (n, status);
    }
}

struct InFlight(Arc<State>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn full(s: impl Into<Bytes>) -> BoxBody {
    http_body_util::Full::new(s.into()).boxed()
}

async fn handle(
    st: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<BoxBody>, std::io::Error> {
    st.hits.fetch_add(1, Ordering::SeqCst);
    let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _guard = InFlight(st.clone());
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let keep_body = path != "/upload";
    let mut uploaded = 0u64;
    let body = if keep_body {
        match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return Err(std::io::Error::other(e)),
        }
    } else {
        let mut b = body;
        while let Some(f) = b.frame().await {
            match f {
                Ok(f) => uploaded += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        Bytes::new()
    };
    st.seen.lock().unwrap().push(Seen {
        method: parts.method.clone(),
        uri: parts.uri.to_string(),
        version: parts.version,
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    {
        let mut f = st.fail_next.lock().unwrap();
        if f.0 > 0 {
            f.0 -= 1;
            let mut r = Response::new(full(format!("mock {} forced failure\n", st.name)));
            *r.status_mut() = http::StatusCode::from_u16(f.1).unwrap();
            return Ok(r);
        }
    }
    let mut resp = if let Some(code) = path.strip_prefix("/status/") {
        let mut r = Response::new(full(format!("status {code}\n")));
        *r.status_mut() = http::StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap();
        r
    } else if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Response::new(full("delayed\n"))
    } else if let Some(ms) = path.strip_prefix("/delay/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        Response::new(full("delayed\n"))
    } else if path == "/close" {
        return Err(std::io::Error::other("closing without a response"));
    } else if path == "/auth" && &body[..] == b"deny" {
        let mut r = Response::new(full("forbidden"));
        *r.status_mut() = http::StatusCode::FORBIDDEN;
        r
    } else if path == "/auth" {
        Response::new(full("allowed"))
    } else if path == "/echo" {
        Response::new(full(body))
    } else if path == "/upload" {
        Response::new(full(uploaded.to_string()))
    } else if let Some(n) = path.strip_prefix("/stream/") {
        let n: usize = n.parse().unwrap_or(1);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_util::stream::iter(
            (0..n).map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone()))),
        );
        Response::new(StreamBody::new(stream).boxed())
    } else if let Some(n) = path.strip_prefix("/foo/") {
        let n: usize = n.parse().unwrap_or(1);
        let stream = futures_util::stream::iter(
            (0..n).map(|i| Ok::<_, Infallible>(Frame::data(Bytes::from(format!("foo {i}\n"))))),
        );
        Response::new(StreamBody::new(stream).boxed())
    } else if path == "/trailers" {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "abc123".parse().unwrap());
        let frames = vec![
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"with trailers\n"))),
            Ok(Frame::trailers(trailers)),
        ];
        let mut r = Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed());
        r.headers_mut()
            .insert("trailer", "x-checksum".parse().unwrap());
        r
    } else {
        Response::new(full(format!("mock {} {}\n", st.name, path)))
    };
    resp.headers_mut()
        .insert("x-upstream", st.name.parse().unwrap());
    if let Some(from) = parts.headers.get("x-from") {
        resp.headers_mut().insert("x-echo-from", from.clone());
    }
    Ok(resp)
}
