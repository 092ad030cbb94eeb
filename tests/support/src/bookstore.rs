//! The bookstore gRPC service of the gRPC-Web and gRPC-JSON transcoding tests: a real tonic server
//! (`tonic::server::Grpc` over hyper's HTTP/2 server) with hand-written prost messages of
//! `tests/fixtures/protos/bookstore.proto`, and that .proto compiled to a descriptor set by `protox`
//! (a pure-Rust protobuf compiler; no protoc needed).
//!
//! - `GetShelf`: shelf 1 (or name `rooms/<any>/shelves/1`) answers `{id 1, theme "fiction", tags
//!   [a, b]}` with initial metadata `x-served-by: bookstore`; shelf 0 without a name is
//!   INVALID_ARGUMENT; metadata `x-fail: unauthenticated` is UNAUTHENTICATED; others NOT_FOUND
//!   "no shelf <n>".
//! - `UpdateShelf`: the shelf back.
//! - `CreateBook`: the book back with id `shelf * 100 + 1` and note `created`.
//! - `ListBooks` (server streaming): `page_size` books (`id` 1.., `title` "book <i>", the author
//!   asked for, `page_count` 100 + i, the first genre asked for), one every 20 ms, then OK, or the
//!   status `fail_with` with message "failed after <n>".
//! - `Echo`: the book back. `Upload` (client streaming): a shelf whose id counts the books.

use bytes::{Buf, BufMut, Bytes};
use futures_util::{Stream, StreamExt};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status, Streaming};

/// `bookstore.v1.Shelf`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Shelf {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(string, tag = "2")]
    pub theme: String,
    #[prost(string, repeated, tag = "3")]
    pub tags: Vec<String>,
    #[prost(string, tag = "4")]
    pub name: String,
}

/// `bookstore.v1.GetShelfRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetShelfRequest {
    #[prost(int64, tag = "1")]
    pub shelf: i64,
    #[prost(string, tag = "2")]
    pub name: String,
}

/// `bookstore.v1.Book`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Book {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(string, tag = "2")]
    pub author: String,
    #[prost(string, tag = "3")]
    pub title: String,
    #[prost(int32, tag = "4")]
    pub page_count: i32,
    #[prost(int32, tag = "5")]
    pub genre: i32,
    #[prost(message, optional, tag = "6")]
    pub rating: Option<i32>,
}

/// `bookstore.v1.CreateBookRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateBookRequest {
    #[prost(int64, tag = "1")]
    pub shelf: i64,
    #[prost(message, optional, tag = "2")]
    pub book: Option<Book>,
}

/// `bookstore.v1.CreateBookResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateBookResponse {
    #[prost(message, optional, tag = "1")]
    pub book: Option<Book>,
    #[prost(string, tag = "2")]
    pub note: String,
}

/// `bookstore.v1.ListBooksRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListBooksRequest {
    #[prost(int64, tag = "1")]
    pub shelf: i64,
    #[prost(int32, tag = "2")]
    pub page_size: i32,
    #[prost(string, tag = "3")]
    pub author: String,
    #[prost(int32, repeated, tag = "4")]
    pub genres: Vec<i32>,
    #[prost(int32, tag = "5")]
    pub fail_with: i32,
}

/// The descriptor set of `bookstore.proto` (with its imports), compiled by protox.
pub fn descriptor_set() -> Vec<u8> {
    descriptor_set_of(&fixtures().join("bookstore.proto"))
}

/// The descriptor set of a .proto (its imports, found beside it and in the fixtures, included).
pub fn descriptor_set_of(proto: &Path) -> Vec<u8> {
    let dir = proto.parent().expect("a file");
    let fail = |e: protox::Error| -> ! { panic!("{} does not compile: {e}", proto.display()) };
    let mut compiler =
        protox::Compiler::new([dir, fixtures().as_path()]).unwrap_or_else(|e| fail(e));
    compiler.include_imports(true);
    if let Err(e) = compiler.open_file(proto) {
        fail(e)
    }
    // Encoded by the compiler itself: a prost `FileDescriptorSet` would drop the options' extensions
    // (`google.api.http`), which prost does not know.
    compiler.encode_file_descriptor_set()
}

/// `tests/fixtures/protos`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/protos")
}

/// A prost codec (tonic's own lives in the separate `tonic-prost` crate).
struct Prost<E, D>(PhantomData<fn(E) -> D>);

impl<E, D> Default for Prost<E, D> {
    fn default() -> Self {
        Prost(PhantomData)
    }
}

impl<E, D> Codec for Prost<E, D>
where
    E: prost::Message + Send + 'static,
    D: prost::Message + Default + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = Prost<E, ()>;
    type Decoder = Prost<(), D>;

    fn encoder(&mut self) -> Self::Encoder {
        Prost(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        Prost(PhantomData)
    }
}

impl<E: prost::Message + Send + 'static> Encoder for Prost<E, ()> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

impl<D: prost::Message + Default + Send + 'static> Decoder for Prost<(), D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        D::decode(bytes)
            .map(Some)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

type Answer<T> = Pin<Box<dyn Future<Output = Result<Response<T>, Status>> + Send>>;

/// A unary handler from a closure.
struct Unary<F>(F);

impl<Q, A, F> tonic::server::UnaryService<Q> for Unary<F>
where
    F: Fn(Request<Q>) -> Result<Response<A>, Status> + Send + Clone + 'static,
    Q: Send + 'static,
    A: Send + 'static,
{
    type Response = A;
    type Future = Answer<A>;

    fn call(&mut self, req: Request<Q>) -> Self::Future {
        let f = self.0.clone();
        Box::pin(async move { f(req) })
    }
}

fn get_shelf(req: Request<GetShelfRequest>) -> Result<Response<Shelf>, Status> {
    if req
        .metadata()
        .get("x-fail")
        .is_some_and(|v| v == "unauthenticated")
    {
        return Err(Status::unauthenticated("who are you?"));
    }
    let r = req.into_inner();
    let id = match (r.shelf, r.name.as_str()) {
        (0, "") => return Err(Status::invalid_argument("shelf is required")),
        (0, name) => name
            .rsplit('/')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(-1),
        (n, _) => n,
    };
    if id != 1 {
        return Err(Status::not_found(format!("no shelf {id} (ünïcode)")));
    }
    let mut resp = Response::new(Shelf {
        id: 1,
        theme: "fiction".into(),
        tags: vec!["a".into(), "b".into()],
        name: r.name,
    });
    resp.metadata_mut()
        .insert("x-served-by", MetadataValue::from_static("bookstore"));
    Ok(resp)
}

fn create_book(req: Request<CreateBookRequest>) -> Result<Response<CreateBookResponse>, Status> {
    let r = req.into_inner();
    let mut book = r.book.unwrap_or_default();
    book.id = r.shelf * 100 + 1;
    Ok(Response::new(CreateBookResponse {
        book: Some(book),
        note: "created".into(),
    }))
}

struct ListBooks;

type Books = Pin<Box<dyn Stream<Item = Result<Book, Status>> + Send>>;

impl tonic::server::ServerStreamingService<ListBooksRequest> for ListBooks {
    type Response = Book;
    type ResponseStream = Books;
    type Future = Answer<Books>;

    fn call(&mut self, req: Request<ListBooksRequest>) -> Self::Future {
        let r = req.into_inner();
        Box::pin(async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel(4);
            tokio::spawn(async move {
                for i in 1..=r.page_size {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let book = Book {
                        id: i64::from(i),
                        author: r.author.clone(),
                        title: format!("book {i}"),
                        page_count: 100 + i,
                        genre: r.genres.first().copied().unwrap_or(0),
                        rating: None,
                    };
                    if tx.send(Ok(book)).await.is_err() {
                        return;
                    }
                }
                if r.fail_with != 0 {
                    let code = Code::from_i32(r.fail_with);
                    let _ = tx
                        .send(Err(Status::new(
                            code,
                            format!("failed after {}", r.page_size),
                        )))
                        .await;
                }
            });
            let books: Books = Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
            Ok(Response::new(books))
        })
    }
}

struct Upload;

impl tonic::server::ClientStreamingService<Book> for Upload {
    type Response = Shelf;
    type Future = Answer<Shelf>;

    fn call(&mut self, req: Request<Streaming<Book>>) -> Self::Future {
        Box::pin(async move {
            let mut books = req.into_inner();
            let mut n = 0;
            while let Some(b) = books.next().await {
                b?;
                n += 1;
            }
            Ok(Response::new(Shelf {
                id: n,
                ..Default::default()
            }))
        })
    }
}

/// One call as the server saw it.
#[derive(Clone, Debug)]
pub struct BookCall {
    pub path: String,
    pub content_type: Option<String>,
    pub user: Option<String>,
}

/// A running bookstore server; it stops when dropped.
pub struct BookstoreServer {
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<BookCall>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BookstoreServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    calls: Arc<Mutex<Vec<BookCall>>>,
    req: http::Request<Incoming>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    calls.lock().unwrap().push(BookCall {
        path: req.uri().path().to_owned(),
        content_type: h("content-type"),
        user: h("x-user"),
    });
    let path = req.uri().path().to_owned();
    let Some(method) = path.strip_prefix("/bookstore.v1.Bookstore/") else {
        return Ok(Status::unimplemented("no such service").into_http());
    };
    Ok(match method {
        "GetShelf" => {
            tonic::server::Grpc::new(Prost::<Shelf, GetShelfRequest>::default())
                .unary(Unary(get_shelf), req)
                .await
        }
        "UpdateShelf" => {
            tonic::server::Grpc::new(Prost::<Shelf, Shelf>::default())
                .unary(
                    Unary(|r: Request<Shelf>| Ok(Response::new(r.into_inner()))),
                    req,
                )
                .await
        }
        "CreateBook" => {
            tonic::server::Grpc::new(Prost::<CreateBookResponse, CreateBookRequest>::default())
                .unary(Unary(create_book), req)
                .await
        }
        "ListBooks" => {
            tonic::server::Grpc::new(Prost::<Book, ListBooksRequest>::default())
                .server_streaming(ListBooks, req)
                .await
        }
        "Echo" => {
            tonic::server::Grpc::new(Prost::<Book, Book>::default())
                .unary(
                    Unary(|r: Request<Book>| Ok(Response::new(r.into_inner()))),
                    req,
                )
                .await
        }
        "Upload" => {
            tonic::server::Grpc::new(Prost::<Shelf, Book>::default())
                .client_streaming(Upload, req)
                .await
        }
        _ => Status::unimplemented("no such method").into_http(),
    })
}

impl BookstoreServer {
    /// Starts a cleartext HTTP/2 server on an ephemeral port of 127.0.0.1.
    pub async fn start() -> BookstoreServer {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = tcp.accept().await else {
                    return;
                };
                let calls = seen.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| serve(calls.clone(), req));
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        BookstoreServer { addr, calls, task }
    }

    /// Every call the server received, in order.
    pub fn calls(&self) -> Vec<BookCall> {
        self.calls.lock().unwrap().clone()
    }
}

/// One gRPC message frame (flag 0, length, message), as gRPC and gRPC-Web carry it.
pub fn frame(message: &impl prost::Message) -> Bytes {
    let m = message.encode_to_vec();
    let mut out = Vec::with_capacity(5 + m.len());
    out.put_u8(0);
    out.put_u32(m.len() as u32);
    out.extend_from_slice(&m);
    Bytes::from(out)
}
