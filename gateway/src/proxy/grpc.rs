//! What is gRPC-specific in proxying: telling a gRPC request by its content type, the `grpc-timeout`
//! header (read as the request's deadline, written reduced for the upstream), the status codes and
//! their mapping to and from HTTP statuses, `grpc-message` percent-encoding, the trailers-only answer
//! the gateway gives a gRPC client for an error of its own, and a request body kept while it streams
//! so that a call can be retried on a gRPC status.
//!
//! The mapping HTTP -> gRPC is the gRPC spec's (`doc/http-grpc-status-mapping.md`, what Envoy's
//! `Grpc::Utility::httpToGrpcStatus` does) with the choices written in README.md ("gRPC"); gRPC -> HTTP
//! is `google.rpc.Code`'s (what Envoy's transcoder and gRPC-Gateway answer).

use crate::body::{self, Body};
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `grpc-status` header (or trailer).
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The `grpc-message` header (or trailer), percent-encoded ([`encode_message`]).
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// The `grpc-timeout` request header ([`parse_timeout`]).
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The wire protocol a request's content type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `application/grpc`, `application/grpc+proto`, ...: gRPC over HTTP/2.
    Grpc,
    /// `application/grpc-web`, `application/grpc-web+proto`: gRPC-Web, binary.
    GrpcWeb,
    /// `application/grpc-web-text`, `application/grpc-web-text+proto`: gRPC-Web, base64.
    GrpcWebText,
}

impl Protocol {
    /// The content type of the gateway's own answers in this protocol.
    pub fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Protocol::Grpc => "application/grpc",
            Protocol::GrpcWeb => "application/grpc-web+proto",
            Protocol::GrpcWebText => "application/grpc-web-text+proto",
        })
    }
}

/// The gRPC protocol of a request or response, by its `content-type`: `application/grpc`,
/// `application/grpc-web` or `application/grpc-web-text`, alone or followed by `+format` (`+proto`,
/// `+json`) or `;parameters`, in any case. None for anything else.
pub fn protocol(headers: &HeaderMap) -> Option<Protocol> {
    let ct = headers.get(header::CONTENT_TYPE)?.as_bytes();
    let base = ct
        .iter()
        .position(|&b| b == b'+' || b == b';')
        .map_or(ct, |i| &ct[..i]);
    let base = base.trim_ascii_end();
    if base.eq_ignore_ascii_case(b"application/grpc") {
        Some(Protocol::Grpc)
    } else if base.eq_ignore_ascii_case(b"application/grpc-web") {
        Some(Protocol::GrpcWeb)
    } else if base.eq_ignore_ascii_case(b"application/grpc-web-text") {
        Some(Protocol::GrpcWebText)
    } else {
        None
    }
}

/// Whether the request is gRPC proper (`application/grpc*`, not gRPC-Web).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    protocol(headers) == Some(Protocol::Grpc)
}

/// The service and method of a gRPC path `/package.Service/Method`, if the path has that shape.
pub fn service_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

/// A gRPC status code (`grpc-status`), as the gRPC spec numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Code {
    /// 0.
    Ok = 0,
    /// 1.
    Cancelled = 1,
    /// 2.
    Unknown = 2,
    /// 3.
    InvalidArgument = 3,
    /// 4.
    DeadlineExceeded = 4,
    /// 5.
    NotFound = 5,
    /// 6.
    AlreadyExists = 6,
    /// 7.
    PermissionDenied = 7,
    /// 8.
    ResourceExhausted = 8,
    /// 9.
    FailedPrecondition = 9,
    /// 10.
    Aborted = 10,
    /// 11.
    OutOfRange = 11,
    /// 12.
    Unimplemented = 12,
    /// 13.
    Internal = 13,
    /// 14.
    Unavailable = 14,
    /// 15.
    DataLoss = 15,
    /// 16.
    Unauthenticated = 16,
}

const CODES: [(Code, &str); 17] = [
    (Code::Ok, "ok"),
    (Code::Cancelled, "cancelled"),
    (Code::Unknown, "unknown"),
    (Code::InvalidArgument, "invalid-argument"),
    (Code::DeadlineExceeded, "deadline-exceeded"),
    (Code::NotFound, "not-found"),
    (Code::AlreadyExists, "already-exists"),
    (Code::PermissionDenied, "permission-denied"),
    (Code::ResourceExhausted, "resource-exhausted"),
    (Code::FailedPrecondition, "failed-precondition"),
    (Code::Aborted, "aborted"),
    (Code::OutOfRange, "out-of-range"),
    (Code::Unimplemented, "unimplemented"),
    (Code::Internal, "internal"),
    (Code::Unavailable, "unavailable"),
    (Code::DataLoss, "data-loss"),
    (Code::Unauthenticated, "unauthenticated"),
];

impl Code {
    /// The code numbered `n`; numbers past 16 are `Unknown`, as the spec says a client takes them.
    pub fn from_u32(n: u32) -> Code {
        CODES.get(n as usize).map_or(Code::Unknown, |(c, _)| *c)
    }

    /// The code a `grpc-status` value names, if it is a number.
    pub fn from_header(v: &HeaderValue) -> Option<Code> {
        let s = v.to_str().ok()?;
        s.parse::<u32>().ok().map(Code::from_u32)
    }

    /// The code's name as the config writes it: lower case with hyphens (`resource-exhausted`), as
    /// Envoy's `retry_on` does.
    pub fn name(self) -> &'static str {
        CODES[self as usize].1
    }

    /// The code a config name ([`Code::name`]) stands for: exactly as it writes them, lower case
    /// with hyphens (what the config schema lists).
    pub fn from_name(name: &str) -> Option<Code> {
        CODES.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
    }

    /// The code a name in another spelling stands for (`RESOURCE_EXHAUSTED`, `Resource_Exhausted`):
    /// for a config error that names the spelling it takes.
    pub fn from_other_spelling(name: &str) -> Option<Code> {
        Code::from_name(&name.to_ascii_lowercase().replace('_', "-"))
    }

    /// The code as a `grpc-status` value.
    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from(self as u16)
    }

    /// The HTTP status `google.rpc.Code` gives this code (for a gRPC answer turned into an HTTP
    /// one, as in JSON transcoding): OK 200, CANCELLED 499, INVALID_ARGUMENT / FAILED_PRECONDITION /
    /// OUT_OF_RANGE 400, DEADLINE_EXCEEDED 504, NOT_FOUND 404, ALREADY_EXISTS / ABORTED 409,
    /// PERMISSION_DENIED 403, UNAUTHENTICATED 401, RESOURCE_EXHAUSTED 429, UNIMPLEMENTED 501,
    /// UNAVAILABLE 503, UNKNOWN / INTERNAL / DATA_LOSS 500.
    pub fn http_status(self) -> StatusCode {
        let n = match self {
            Code::Ok => 200,
            Code::Cancelled => 499,
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
            Code::DeadlineExceeded => 504,
            Code::NotFound => 404,
            Code::AlreadyExists | Code::Aborted => 409,
            Code::PermissionDenied => 403,
            Code::Unauthenticated => 401,
            Code::ResourceExhausted => 429,
            Code::Unimplemented => 501,
            Code::Unavailable => 503,
            Code::Unknown | Code::Internal | Code::DataLoss => 500,
        };
        StatusCode::from_u16(n).expect("a valid status")
    }
}

/// The gRPC code for an HTTP status the gateway (or a filter) answers a gRPC request with: the gRPC
/// spec's table (400 INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED,
/// 429 / 502 / 503 / 504 UNAVAILABLE, other UNKNOWN), and for statuses it does not name: 408
/// DEADLINE_EXCEEDED, 413 RESOURCE_EXHAUSTED (what gRPC servers answer a message over their limit),
/// 500 INTERNAL, 501 UNIMPLEMENTED, 2xx and 3xx UNKNOWN (no message came).
pub fn code_of_http(status: StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 | 501 => Code::Unimplemented,
        408 => Code::DeadlineExceeded,
        413 => Code::ResourceExhausted,
        429 | 502 | 503 | 504 => Code::Unavailable,
        500 => Code::Internal,
        _ => Code::Unknown,
    }
}

/// The status of a trailers-only answer: `grpc-status` in the response headers (an answer with a
/// body has it in its trailers, which come after the body). None when the headers have none.
pub fn status_in_headers(headers: &HeaderMap) -> Option<Code> {
    headers.get(GRPC_STATUS).and_then(Code::from_header)
}

/// `grpc-message` as the spec encodes it: printable ASCII (0x20-0x7E) but `%` as it is, every other
/// byte of the UTF-8 text as `%XX`.
pub fn encode_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `grpc-message` decoded: `%XX` escapes to bytes, bad escapes and bad UTF-8 kept as they are
/// (the spec asks a reader not to fail on them).
pub fn decode_message(value: &[u8]) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match (
            value[i],
            value.get(i + 1).copied().and_then(hex),
            value.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The longest `grpc-timeout` value: 8 digits, as the spec allows.
const MAX_TIMEOUT_DIGITS: usize = 8;

/// A `grpc-timeout` value (`TimeoutValue TimeoutUnit`: 1 to 8 digits, then `H`, `M`, `S`, `m`
/// (milliseconds), `u` or `n`) as a duration. None when malformed (the call then has no deadline of
/// its own, as gRPC servers take it).
pub fn parse_timeout(v: &HeaderValue) -> Option<Duration> {
    let b = v.as_bytes();
    let (digits, unit) = b.split_at(b.len().checked_sub(1)?);
    if digits.is_empty()
        || digits.len() > MAX_TIMEOUT_DIGITS
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit[0] {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A duration as a `grpc-timeout` value: in the finest unit whose count fits in 8 digits, rounded
/// up (so that the upstream never gets a deadline earlier than the one it was given; a zero
/// duration is `0n`, already expired).
pub fn timeout_value(d: Duration) -> HeaderValue {
    let max = 10u128.pow(MAX_TIMEOUT_DIGITS as u32) - 1;
    let nanos = d.as_nanos();
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let (n, unit) = units
        .iter()
        .map(|&(per, u)| (nanos.div_ceil(per), u))
        .find(|&(n, _)| n <= max)
        .unwrap_or((max, 'H'));
    HeaderValue::from_str(&format!("{n}{unit}")).expect("digits and a letter")
}

/// Makes `resp` the trailers-only gRPC answer for `code` and `message`: HTTP 200, the protocol's
/// content type, `grpc-status` and `grpc-message` (percent-encoded) in the headers, no body. Its
/// other headers (`x-request-id`, a route's response headers) stay.
pub fn make_trailers_only(
    resp: &mut Response<Body>,
    protocol: Protocol,
    code: Code,
    message: &str,
) {
    *resp.status_mut() = StatusCode::OK;
    *resp.body_mut() = body::empty();
    let h = resp.headers_mut();
    h.remove(header::CONTENT_LENGTH);
    h.remove(header::TRANSFER_ENCODING);
    h.insert(header::CONTENT_TYPE, protocol.content_type());
    h.insert(GRPC_STATUS, code.header_value());
    match HeaderValue::from_str(&encode_message(message)) {
        Ok(v) if !message.is_empty() => {
            h.insert(GRPC_MESSAGE, v);
        }
        _ => {
            h.remove(GRPC_MESSAGE);
        }
    }
}

/// A trailers-only gRPC answer ([`make_trailers_only`]) made from nothing.
pub fn trailers_only(protocol: Protocol, code: Code, message: &str) -> Response<Body> {
    let mut resp = Response::new(body::empty());
    make_trailers_only(&mut resp, protocol, code, message);
    resp
}

/// What a [`Recorded`] body has kept of the request body so far.
#[derive(Default)]
struct Record {
    bytes: BytesMut,
    /// The body ended and every byte of it is in `bytes`.
    complete: bool,
    /// Over the limit, or it had trailers: it cannot be sent again.
    lost: bool,
}

/// A request body that streams to the upstream as it comes while a copy is kept (up to a limit),
/// so that the request can be sent again once it has ended: how a streamed gRPC call is retried,
/// as Envoy buffers a request for retries without holding it back.
pub struct Recorded {
    inner: Body,
    limit: usize,
    record: Arc<Mutex<Record>>,
}

/// The copy a [`Recorded`] body keeps.
#[derive(Clone)]
pub struct Recording(Arc<Mutex<Record>>);

impl Recorded {
    /// Wraps `inner`, keeping up to `limit` bytes.
    pub fn new(inner: Body, limit: usize) -> (Recorded, Recording) {
        let record = Arc::new(Mutex::new(Record::default()));
        let rec = Recording(record.clone());
        (
            Recorded {
                inner,
                limit,
                record,
            },
            rec,
        )
    }
}

impl Recording {
    /// The whole body, if it has ended and was kept whole.
    pub fn replay(&self) -> Option<Bytes> {
        let r = self.0.lock().unwrap();
        (r.complete && !r.lost).then(|| Bytes::copy_from_slice(&r.bytes))
    }
}

impl http_body::Body for Recorded {
    type Data = Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        if let std::task::Poll::Ready(ref frame) = polled {
            let mut r = this.record.lock().unwrap();
            match frame {
                Some(Ok(f)) => match f.data_ref() {
                    Some(d) if !r.lost && r.bytes.len() + d.len() <= this.limit => {
                        r.bytes.extend_from_slice(d);
                    }
                    Some(_) => {
                        r.lost = true;
                        r.bytes = BytesMut::new();
                    }
                    None => r.lost = true,
                },
                Some(Err(_)) => r.lost = true,
                None => r.complete = true,
            }
            if this.inner.is_end_stream() {
                r.complete = true;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// When the gateway received a gRPC request (a request extension): the start of the client's
/// deadline (`grpc-timeout`), which counts from the request's arrival, not from when the filters
/// are done with it.
#[derive(Debug, Clone, Copy)]
pub struct Arrival(pub std::time::Instant);

/// A gRPC response body that ends at the call's deadline: if the upstream has not finished by
/// then, the upstream stream is dropped (reset) and the client gets trailers with
/// DEADLINE_EXCEEDED after what it already had, as a gRPC server ends a call past its deadline.
pub struct Deadline<B> {
    inner: Option<B>,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<B> Deadline<B> {
    /// Wraps `inner`, ending it at `deadline`.
    pub fn new(inner: B, deadline: tokio::time::Instant) -> Deadline<B> {
        Deadline {
            inner: Some(inner),
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl<B: http_body::Body<Data = Bytes> + Unpin> http_body::Body for Deadline<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        // The timer first: an upstream whose frames are always ready must still end at the deadline.
        if this.sleep.as_mut().poll(cx).is_pending() {
            return match std::pin::Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(f))) if f.is_trailers() => {
                    this.inner = None;
                    Poll::Ready(Some(Ok(f)))
                }
                Poll::Ready(None) => {
                    this.inner = None;
                    Poll::Ready(None)
                }
                polled => polled,
            };
        }
        this.inner = None;
        let mut t = HeaderMap::new();
        t.insert(GRPC_STATUS, Code::DeadlineExceeded.header_value());
        t.insert(GRPC_MESSAGE, HeaderValue::from_static("deadline exceeded"));
        Poll::Ready(Some(Ok(http_body::Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn protocols_by_content_type() {
        let p = |ct: &str| protocol(&headers(ct));
        assert_eq!(p("application/grpc"), Some(Protocol::Grpc));
        assert_eq!(p("application/grpc+proto"), Some(Protocol::Grpc));
        assert_eq!(p("Application/GRPC; charset=utf-8"), Some(Protocol::Grpc));
        assert_eq!(p("application/grpc-web+proto"), Some(Protocol::GrpcWeb));
        assert_eq!(p("application/grpc-web-text"), Some(Protocol::GrpcWebText));
        assert_eq!(p("application/grpcx"), None);
        assert_eq!(p("application/json"), None);
        assert_eq!(protocol(&HeaderMap::new()), None);
        assert!(is_grpc(&headers("application/grpc+json")));
        assert!(!is_grpc(&headers("application/grpc-web")));
    }

    #[test]
    fn paths() {
        assert_eq!(service_method("/pkg.Svc/Get"), Some(("pkg.Svc", "Get")));
        assert_eq!(service_method("/pkg.Svc/"), None);
        assert_eq!(service_method("/pkg.Svc/Get/x"), None);
        assert_eq!(service_method("pkg.Svc/Get"), None);
    }

    #[test]
    fn codes_and_names() {
        assert_eq!(
            Code::from_name("resource-exhausted"),
            Some(Code::ResourceExhausted)
        );
        // Only the config's spelling (the schema's); the others are told what to write.
        assert_eq!(Code::from_name("DEADLINE_EXCEEDED"), None);
        assert_eq!(Code::from_name("deadline_exceeded"), None);
        assert_eq!(
            Code::from_other_spelling("DEADLINE_EXCEEDED"),
            Some(Code::DeadlineExceeded)
        );
        assert_eq!(Code::from_name("unavailible"), None);
        assert_eq!(Code::Unavailable.name(), "unavailable");
        assert_eq!(Code::from_u32(16), Code::Unauthenticated);
        assert_eq!(Code::from_u32(99), Code::Unknown);
        assert_eq!(
            Code::from_header(&HeaderValue::from_static("14")),
            Some(Code::Unavailable)
        );
        assert_eq!(Code::from_header(&HeaderValue::from_static("x")), None);
        for (c, _) in CODES {
            assert_eq!(Code::from_u32(c as u32), c);
        }
    }

    #[test]
    fn status_mappings() {
        let g = |s: u16| code_of_http(StatusCode::from_u16(s).unwrap());
        assert_eq!(g(401), Code::Unauthenticated);
        assert_eq!(g(403), Code::PermissionDenied);
        assert_eq!(g(404), Code::Unimplemented);
        assert_eq!(g(429), Code::Unavailable);
        assert_eq!(g(413), Code::ResourceExhausted);
        assert_eq!(g(503), Code::Unavailable);
        assert_eq!(g(418), Code::Unknown);
        assert_eq!(Code::ResourceExhausted.http_status(), 429);
        assert_eq!(Code::Cancelled.http_status().as_u16(), 499);
        assert_eq!(Code::Unavailable.http_status(), 503);
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(encode_message("no entry"), "no entry");
        assert_eq!(encode_message("100% sûr\n"), "100%25 s%C3%BBr%0A");
        assert_eq!(decode_message(b"100%25 s%C3%BBr%0A"), "100% sûr\n");
        assert_eq!(decode_message(b"bad %zz end%"), "bad %zz end%");
    }

    #[test]
    fn timeouts() {
        let p = |s: &str| parse_timeout(&HeaderValue::from_str(s).unwrap());
        assert_eq!(p("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(p("2S"), Some(Duration::from_secs(2)));
        assert_eq!(p("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(p("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(p("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(p("123456789m"), None);
        assert_eq!(p("m"), None);
        assert_eq!(p("10x"), None);
        assert_eq!(p("-1S"), None);
        let v = |d: Duration| timeout_value(d).to_str().unwrap().to_owned();
        assert_eq!(v(Duration::from_millis(1500)), "1500000u");
        assert_eq!(v(Duration::from_nanos(1234)), "1234n");
        assert_eq!(v(Duration::from_secs(200)), "200000m");
        assert_eq!(v(Duration::from_secs(400_000)), "400000S");
        assert_eq!(v(Duration::ZERO), "0n");
        for d in [
            Duration::from_nanos(99_999_999_999),
            Duration::from_secs(1 << 40),
        ] {
            assert!(p(&v(d)).unwrap() >= d.min(Duration::from_secs(99_999_999 * 3600)));
        }
    }

    #[test]
    fn trailers_only_answer() {
        let r = trailers_only(Protocol::Grpc, Code::Unavailable, "upstream down\n");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(r.headers()["grpc-message"], "upstream down%0A");
        assert!(http_body::Body::is_end_stream(r.body()));
    }

    /// A body whose next frame is always ready: data, forever.
    struct Endless;

    impl http_body::Body for Endless {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(b"x")))))
        }
    }

    #[tokio::test]
    async fn a_deadline_ends_an_always_ready_body() {
        use http_body_util::BodyExt;
        // Already past (the clock has gone beyond it): the first frame is the DEADLINE_EXCEEDED
        // trailers.
        let mut b = Deadline::new(Endless, tokio::time::Instant::now());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let f = b.frame().await.unwrap().unwrap();
        let t = f.into_trailers().expect("trailers, not more data");
        assert_eq!(t["grpc-status"], "4");
        assert!(b.frame().await.is_none());
        // Before the deadline the data passes; at it the body ends, however fast the data comes.
        let mut b = Deadline::new(
            Endless,
            tokio::time::Instant::now() + Duration::from_millis(30),
        );
        let mut data = 0u64;
        let start = std::time::Instant::now();
        loop {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "past the deadline"
            );
            let f = b.frame().await.unwrap().unwrap();
            if f.is_trailers() {
                break;
            }
            data += 1;
            // A yield lets the clock move on a single-threaded runtime.
            tokio::task::yield_now().await;
        }
        assert!(data > 0);
    }

    #[tokio::test]
    async fn a_recorded_body_replays_only_when_whole() {
        use http_body_util::BodyExt;
        let (b, rec) = Recorded::new(body::full("hello"), 16);
        assert_eq!(rec.replay(), None);
        let got = b.collect().await.unwrap().to_bytes();
        assert_eq!(
            (got.as_ref(), rec.replay().as_deref()),
            (&b"hello"[..], Some(&b"hello"[..]))
        );
        let (b, rec) = Recorded::new(body::full("hello"), 4);
        b.collect().await.unwrap();
        assert_eq!(rec.replay(), None);
    }
}
