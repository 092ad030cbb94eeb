//! Outbound gRPC from plugins, for any ABI: a unary call or a stream to a named upstream over
//! HTTP/2 (cleartext or TLS, as the upstream is configured), its messages framed and unframed here,
//! and what comes back reported as [`GrpcEvent`]s in order. The ABI keeps the [`GrpcCall`] (to send,
//! half-close or cancel) and delivers the events to the plugin.
//!
//! Request: `POST /{service}/{method}`, `content-type: application/grpc`, `te: trailers`, the plugin's
//! metadata as headers, `grpc-timeout` for a unary call with a timeout; `:authority` is the
//! upstream's name (as Envoy sends it for a cluster), or the one the plugin gave.
//!
//! What comes back, as Envoy's gRPC client reports it:
//! - a unary call ends in exactly one event: [`GrpcEvent::Reply`] (status OK and a message: the last,
//!   when several came) or [`GrpcEvent::Close`] (any failure; OK without a message is INTERNAL); it
//!   never reports metadata;
//! - a stream reports its initial metadata, each message, its trailing metadata, then `Close`; a
//!   stream that fails still reports both metadata (empty when none came) before its close;
//! - the status is the trailers' `grpc-status` (UNKNOWN when absent, or when the data ends without
//!   trailers); an answer that is not HTTP 200 closes with its `grpc-status` when it is trailers-only,
//!   otherwise with the status gRPC's mapping gives the HTTP status;
//! - no connection: UNAVAILABLE (14); a reset or broken body, a compressed message: INTERNAL (13);
//!   a message over [`MAX_MESSAGE`]: RESOURCE_EXHAUSTED (8), each with the reason;
//! - a unary call past its timeout: DEADLINE_EXCEEDED (4).

use super::{CalloutError, HostCore};
use crate::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, TE};
use http::{HeaderMap, Method, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use std::time::Duration;
use tokio::sync::mpsc;

/// gRPC status codes the host itself produces.
pub mod code {
    /// Success.
    pub const OK: u32 = 0;
    /// The call was cancelled.
    pub const CANCELLED: u32 = 1;
    /// The answer had no status.
    pub const UNKNOWN: u32 = 2;
    /// The deadline passed.
    pub const DEADLINE_EXCEEDED: u32 = 4;
    /// The caller may not do this.
    pub const PERMISSION_DENIED: u32 = 7;
    /// A message was too large.
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    /// The method does not exist.
    pub const UNIMPLEMENTED: u32 = 12;
    /// The answer was malformed.
    pub const INTERNAL: u32 = 13;
    /// The upstream could not be reached.
    pub const UNAVAILABLE: u32 = 14;
    /// The caller is not authenticated.
    pub const UNAUTHENTICATED: u32 = 16;
}

/// The most messages a stream holds for its upstream before a send is refused (the plugin sends
/// faster than the upstream reads).
pub const MAX_QUEUED_MESSAGES: usize = 1024;

/// The largest message accepted from an upstream (gRPC's usual default receive limit is 4 MiB).
pub const MAX_MESSAGE: usize = 4 << 20;

/// The most events of one call read from the upstream and not yet taken by the plugin; then the
/// upstream's stream is not read further (HTTP/2 flow control holds it back) until the plugin catches
/// up.
pub const MAX_QUEUED_EVENTS: usize = 64;

/// What a gRPC call reports, in the order it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcEvent {
    /// A stream's response headers.
    InitialMetadata(HeaderMap),
    /// One message of a stream.
    Message(Bytes),
    /// A stream's trailers (the headers of a trailers-only answer).
    TrailingMetadata(HeaderMap),
    /// A unary call's answer: status OK and this one message. Its last event.
    Reply(Bytes),
    /// The call ended with `status` and `message`. Its last event.
    Close {
        /// The gRPC status code.
        status: u32,
        /// The `grpc-message` as sent (percent-encoded), or the host's reason.
        message: String,
    },
}

impl GrpcEvent {
    /// Whether nothing follows this event.
    pub fn is_last(&self) -> bool {
        matches!(self, GrpcEvent::Reply(_) | GrpcEvent::Close { .. })
    }

    fn close(status: u32, message: impl Into<String>) -> GrpcEvent {
        GrpcEvent::Close {
            status,
            message: message.into(),
        }
    }
}

/// What a plugin asks for.
pub struct GrpcRequest {
    /// The upstream, by name.
    pub upstream: String,
    /// `:authority` to send instead of the upstream's name.
    pub authority: Option<String>,
    /// The fully qualified service, e.g. `envoy.service.auth.v3.Authorization`.
    pub service: String,
    /// The method, e.g. `Check`.
    pub method: String,
    /// Initial metadata, sent as request headers.
    pub metadata: HeaderMap,
    /// A unary call's message and timeout (`None`: a stream).
    pub unary: Option<(Bytes, Duration)>,
}

/// Why a message could not be sent on a gRPC call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrpcError {
    /// Sending on a unary call, or on a stream already half-closed.
    #[error("this call takes no more messages")]
    NotSendable,
    /// Too many messages wait for the upstream ([`MAX_QUEUED_MESSAGES`]).
    #[error("too many messages wait for the upstream")]
    Full,
}

/// The error a cancelled stream's request body ends with, so that the upstream sees the stream
/// reset, not a clean end of the client's messages.
#[derive(Debug, thiserror::Error)]
#[error("the plugin cancelled the call")]
struct Cancelled;

type MessageSender = http_body_util::channel::Sender<Bytes, Cancelled>;

/// A call in flight. Dropping it cancels the call: no event follows, and a stream is reset.
pub struct GrpcCall {
    /// Messages to a stream; `None` for a unary call and once the stream is half-closed.
    sender: Option<MessageSender>,
    unary: bool,
    task: tokio::task::AbortHandle,
}

impl GrpcCall {
    /// Whether this is a unary call (not a stream).
    pub fn is_unary(&self) -> bool {
        self.unary
    }

    /// Whether this stream's sending side is closed.
    pub fn is_half_closed(&self) -> bool {
        !self.unary && self.sender.is_none()
    }

    /// Sends one message on a stream, and half-closes it after when `end_stream`.
    pub fn send(&mut self, message: &[u8], end_stream: bool) -> Result<(), GrpcError> {
        let sender = self.sender.as_mut().ok_or(GrpcError::NotSendable)?;
        if sender.capacity() == 0 {
            return Err(GrpcError::Full);
        }
        // With room in the queue, a refusal means the exchange is over (the upstream closed or
        // reset the stream; its close is on the way to the plugin): nobody reads that message.
        let _ = sender.try_send(http_body::Frame::data(frame(message)));
        if end_stream {
            self.half_close();
        }
        Ok(())
    }

    /// Ends the stream's sending side (the upstream sees the end of the request); answers keep
    /// coming until the upstream closes.
    pub fn half_close(&mut self) {
        self.sender = None;
    }
}

impl Drop for GrpcCall {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            sender.abort(Cancelled);
        }
        self.task.abort();
    }
}

/// A message with its gRPC prefix: not compressed, 4-byte big-endian length.
pub fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out.freeze()
}

/// Takes the complete messages off the front of `buf`. An error (with its status) for a compressed
/// message (none was asked for) or one over [`MAX_MESSAGE`].
fn unframe(buf: &mut BytesMut, out: &mut Vec<Bytes>) -> Result<(), (u32, String)> {
    while buf.len() >= 5 {
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if buf[0] != 0 {
            return Err((
                code::INTERNAL,
                "a compressed message, which was not asked for".into(),
            ));
        }
        if len > MAX_MESSAGE {
            return Err((
                code::RESOURCE_EXHAUSTED,
                format!("a message of {len} bytes, over the limit of {MAX_MESSAGE}"),
            ));
        }
        if buf.len() < 5 + len {
            break;
        }
        buf.advance(5);
        out.push(buf.split_to(len).freeze());
    }
    Ok(())
}

/// The status and message a map of trailers (or trailers-only headers) carries: `None` without a
/// `grpc-status`; one that is not a number is UNKNOWN. The message is `grpc-message` as sent
/// (percent-encoded), as Envoy gives it to filters.
fn status_of(map: &HeaderMap) -> Option<(u32, String)> {
    let status = map.get("grpc-status")?;
    let status = status
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(code::UNKNOWN);
    let message = map
        .get("grpc-message")
        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
        .unwrap_or_default();
    Some((status, message))
}

/// The gRPC status of an HTTP status that is not 200 (gRPC's HTTP to gRPC status mapping).
fn from_http(status: StatusCode) -> u32 {
    match status.as_u16() {
        400 => code::INTERNAL,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 => code::UNIMPLEMENTED,
        429 | 502 | 503 | 504 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

/// `grpc-timeout` for `timeout`, in milliseconds (at most 8 digits, as the spec allows).
fn grpc_timeout(timeout: Duration) -> HeaderValue {
    let ms = timeout.as_millis().min(99_999_999);
    HeaderValue::from_str(&format!("{ms}m")).expect("digits and a unit")
}

/// The HTTP/2 request of `req`, its body to be filled by the caller.
fn http_request(req: &GrpcRequest, body: Body) -> Result<http::Request<Body>, CalloutError> {
    let bad = |what: &str| CalloutError::BadRequest(what.to_string());
    let path = format!("/{}/{}", req.service, req.method);
    let path = http::uri::PathAndQuery::try_from(path)
        .map_err(|_| bad("the service and method must form a path"))?;
    if req.service.is_empty() || req.method.is_empty() || path.query().is_some() {
        return Err(bad("the service and method must be names"));
    }
    let authority = req.authority.as_deref().unwrap_or(&req.upstream);
    let authority = http::uri::Authority::try_from(authority)
        .map_err(|_| bad("the authority (or the upstream's name) is not a valid `:authority`"))?;
    let uri = http::Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| CalloutError::BadRequest(e.to_string()))?;
    let mut headers = req.metadata.clone();
    crate::framing::strip_for_callout(&mut headers);
    headers.remove(http::header::HOST);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(TE, HeaderValue::from_static("trailers"));
    if let Some((_, timeout)) = &req.unary {
        headers.insert(
            HeaderName::from_static("grpc-timeout"),
            grpc_timeout(*timeout),
        );
    }
    let mut out = http::Request::new(body);
    *out.method_mut() = Method::POST;
    *out.uri_mut() = uri;
    *out.version_mut() = http::Version::HTTP_2;
    *out.headers_mut() = headers;
    Ok(out)
}

impl HostCore {
    /// Starts a gRPC call that [`HostCore::callout_allowed`] allowed, on `runtime`. Its events come
    /// on the receiver, the last one [`GrpcEvent::is_last`]; the receiver ends without a last event
    /// only when the call was dropped (cancelled).
    pub fn grpc(
        &self,
        runtime: &tokio::runtime::Handle,
        req: GrpcRequest,
    ) -> Result<(GrpcCall, mpsc::Receiver<GrpcEvent>), CalloutError> {
        let (sender, body) = match &req.unary {
            Some((message, _)) => (None, crate::body::full(frame(message))),
            None => {
                let (tx, rx) =
                    http_body_util::channel::Channel::<Bytes, Cancelled>::new(MAX_QUEUED_MESSAGES);
                (Some(tx), crate::body::boxed(rx))
            }
        };
        let http = http_request(&req, body)?;
        let exchange = self.upstreams.stream(&req.upstream, http);
        let (events, rx) = mpsc::channel(MAX_QUEUED_EVENTS);
        let unary = req.unary.as_ref().map(|(_, t)| *t);
        let task = runtime.spawn(async move {
            match unary {
                Some(timeout) => {
                    let last = match tokio::time::timeout(timeout, unary_call(exchange)).await {
                        Ok(event) => event,
                        Err(_) => GrpcEvent::close(code::DEADLINE_EXCEEDED, "deadline exceeded"),
                    };
                    let _ = events.send(last).await;
                }
                None => stream_call(exchange, &events).await,
            }
        });
        let call = GrpcCall {
            sender,
            unary: unary.is_some(),
            task: task.abort_handle(),
        };
        Ok((call, rx))
    }
}

type Exchange =
    futures_util::future::BoxFuture<'static, Result<http::Response<Body>, CalloutError>>;

/// How an answer ended: its trailing metadata, status and message.
struct End {
    trailers: HeaderMap,
    status: u32,
    message: String,
}

impl End {
    fn error(status: u32, message: impl Into<String>) -> End {
        End {
            trailers: HeaderMap::new(),
            status,
            message: message.into(),
        }
    }

    fn from_trailers(trailers: HeaderMap) -> End {
        let (status, message) = status_of(&trailers).unwrap_or((code::UNKNOWN, String::new()));
        End {
            trailers,
            status,
            message,
        }
    }
}

/// Where an answer's events go while it is read.
enum Sink<'a> {
    /// A unary call keeps the last message (metadata is not reported).
    Last(&'a mut Option<Bytes>),
    /// A stream sends each event on, waiting when the plugin is behind; `started` once its initial
    /// metadata went.
    Events(&'a mpsc::Sender<GrpcEvent>, bool),
}

impl Sink<'_> {
    /// Takes an event; false when nobody listens any more.
    async fn emit(&mut self, event: GrpcEvent) -> bool {
        match self {
            Sink::Last(last) => {
                if let GrpcEvent::Message(m) = event {
                    **last = Some(m);
                }
                true
            }
            Sink::Events(tx, started) => {
                *started |= matches!(event, GrpcEvent::InitialMetadata(_));
                tx.send(event).await.is_ok()
            }
        }
    }
}

/// Reads an answer, handing its initial metadata and each message to `sink`, and returns how it
/// ended.
async fn read_answer(exchange: Exchange, sink: &mut Sink<'_>) -> End {
    let resp = match exchange.await {
        Ok(r) => r,
        Err(e) => return End::error(code::UNAVAILABLE, e.to_string()),
    };
    let (parts, mut body) = resp.into_parts();
    // A trailers-only answer: its headers are its trailers, its initial metadata is empty.
    let trailers_only = body.is_end_stream();
    let initial = if trailers_only {
        HeaderMap::new()
    } else {
        parts.headers.clone()
    };
    if !sink.emit(GrpcEvent::InitialMetadata(initial)).await {
        return End::error(code::CANCELLED, "cancelled");
    }
    if parts.status != StatusCode::OK {
        if trailers_only && status_of(&parts.headers).is_some() {
            return End::from_trailers(parts.headers);
        }
        return End::error(
            from_http(parts.status),
            format!("the upstream answered HTTP {}", parts.status.as_u16()),
        );
    }
    if trailers_only {
        return End::from_trailers(parts.headers);
    }
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    loop {
        let frame = match body.frame().await {
            // The data ended without trailers, so without a status.
            None => return End::error(code::UNKNOWN, ""),
            Some(Err(e)) => return End::error(code::INTERNAL, e.to_string()),
            Some(Ok(frame)) => frame,
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                buf.extend_from_slice(&data);
                if let Err((status, e)) = unframe(&mut buf, &mut messages) {
                    return End::error(status, e);
                }
                for m in messages.drain(..) {
                    if !sink.emit(GrpcEvent::Message(m)).await {
                        return End::error(code::CANCELLED, "cancelled");
                    }
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(trailers) = frame.into_trailers() {
            if !buf.is_empty() {
                return End::error(code::INTERNAL, "the answer ended mid-message");
            }
            return End::from_trailers(trailers);
        }
    }
}

/// A unary call's one event. As in Envoy, a successful answer of several messages gives its last.
async fn unary_call(exchange: Exchange) -> GrpcEvent {
    let mut last = None;
    let end = read_answer(exchange, &mut Sink::Last(&mut last)).await;
    match (end.status, last) {
        (code::OK, Some(m)) => GrpcEvent::Reply(m),
        (code::OK, None) => GrpcEvent::close(code::INTERNAL, "the answer held no message"),
        (status, _) => GrpcEvent::Close {
            status,
            message: end.message,
        },
    }
}

/// A stream's events until it closes (or nobody listens): initial metadata (empty when the answer
/// had none), the messages, trailing metadata (empty when none came), then the close.
async fn stream_call(exchange: Exchange, events: &mpsc::Sender<GrpcEvent>) {
    let mut sink = Sink::Events(events, false);
    let end = read_answer(exchange, &mut sink).await;
    if let Sink::Events(_, false) = sink {
        let _ = events
            .send(GrpcEvent::InitialMetadata(HeaderMap::new()))
            .await;
    }
    let _ = events.send(GrpcEvent::TrailingMetadata(end.trailers)).await;
    let _ = events
        .send(GrpcEvent::Close {
            status: end.status,
            message: end.message,
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Frame;

    /// An exchange that answers `status`, `headers` and `frames` (none: a trailers-only answer).
    fn answer(status: u16, headers: &[(&str, &str)], frames: Vec<Frame<Bytes>>) -> Exchange {
        let body = if frames.is_empty() {
            crate::body::empty()
        } else {
            let frames = frames.into_iter().map(Ok::<_, std::convert::Infallible>);
            crate::body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
                frames,
            )))
        };
        let mut resp = http::Response::new(body);
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        for (k, v) in headers {
            resp.headers_mut().insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        Box::pin(async move { Ok(resp) })
    }

    fn data(messages: &[&[u8]]) -> Frame<Bytes> {
        let mut out = BytesMut::new();
        for m in messages {
            out.extend_from_slice(&frame(m));
        }
        Frame::data(out.freeze())
    }

    fn trailers(status: &str, message: &str) -> Frame<Bytes> {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_str(status).unwrap());
        if !message.is_empty() {
            t.insert("grpc-message", HeaderValue::from_str(message).unwrap());
        }
        Frame::trailers(t)
    }

    fn close(status: u32, message: &str) -> GrpcEvent {
        GrpcEvent::close(status, message)
    }

    #[tokio::test]
    async fn unary_answers_end_in_one_event_as_envoy_reports_them() {
        let ok = |frames| answer(200, &[], frames);
        let reply = |m: &'static [u8]| GrpcEvent::Reply(Bytes::from_static(m));
        let cases: Vec<(Exchange, GrpcEvent)> = vec![
            (ok(vec![data(&[b"one"]), trailers("0", "")]), reply(b"one")),
            // Several messages: the last, as Envoy keeps it.
            (
                ok(vec![data(&[b"a", b"b"]), trailers("0", "")]),
                reply(b"b"),
            ),
            (
                ok(vec![trailers("0", "")]),
                close(code::INTERNAL, "the answer held no message"),
            ),
            (ok(vec![data(&[b"x"]), trailers("7", "no")]), close(7, "no")),
            // Trailers-only: the status is in the headers.
            (
                answer(
                    200,
                    &[("grpc-status", "5"), ("grpc-message", "missing")],
                    vec![],
                ),
                close(5, "missing"),
            ),
            (answer(404, &[("grpc-status", "12")], vec![]), close(12, "")),
            (
                answer(503, &[], vec![data(&[b"x"])]),
                close(code::UNAVAILABLE, "the upstream answered HTTP 503"),
            ),
            (ok(vec![data(&[b"x"])]), close(code::UNKNOWN, "")),
            (
                ok(vec![Frame::data(Bytes::from_static(&[1, 0, 0, 0, 1, 9]))]),
                close(
                    code::INTERNAL,
                    "a compressed message, which was not asked for",
                ),
            ),
            (
                ok(vec![
                    Frame::data(Bytes::from_static(&[0, 0, 0, 0, 9, 1])),
                    trailers("0", ""),
                ]),
                close(code::INTERNAL, "the answer ended mid-message"),
            ),
            (
                Box::pin(async { Err(CalloutError::Failed("refused".into())) }),
                close(code::UNAVAILABLE, "callout failed: refused"),
            ),
        ];
        for (i, (exchange, want)) in cases.into_iter().enumerate() {
            assert_eq!(unary_call(exchange).await, want, "case {i}");
        }
    }

    async fn stream_events(exchange: Exchange) -> Vec<GrpcEvent> {
        let (tx, mut rx) = mpsc::channel(MAX_QUEUED_EVENTS);
        tokio::spawn(async move { stream_call(exchange, &tx).await });
        let mut out = Vec::new();
        while let Some(e) = rx.recv().await {
            out.push(e);
        }
        out
    }

    #[tokio::test]
    async fn streams_report_metadata_messages_and_close_even_when_they_fail() {
        let got = stream_events(answer(
            200,
            &[("x-initial", "hi")],
            vec![data(&[b"a"]), data(&[b"b", b"c"]), trailers("0", "")],
        ))
        .await;
        assert!(matches!(&got[0], GrpcEvent::InitialMetadata(h) if h["x-initial"] == "hi"));
        let messages: Vec<_> = got[1..4]
            .iter()
            .map(|e| match e {
                GrpcEvent::Message(m) => m.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(messages, vec![&b"a"[..], b"b", b"c"]);
        assert!(matches!(&got[4], GrpcEvent::TrailingMetadata(t) if t["grpc-status"] == "0"));
        assert_eq!(got[5], close(0, ""));
        assert_eq!(got.len(), 6);
        // Failing before any answer: both metadata callbacks (empty), then the close.
        let got = stream_events(Box::pin(async { Err(CalloutError::Timeout) })).await;
        assert_eq!(
            got,
            vec![
                GrpcEvent::InitialMetadata(HeaderMap::new()),
                GrpcEvent::TrailingMetadata(HeaderMap::new()),
                close(code::UNAVAILABLE, "callout timed out"),
            ]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_stream_is_not_read_ahead_of_the_plugin_by_more_than_the_event_limit() {
        let many: Vec<&[u8]> = vec![b"m"; 3 * MAX_QUEUED_EVENTS];
        let exchange = answer(200, &[], vec![data(&many), trailers("0", "")]);
        let (tx, mut rx) = mpsc::channel(MAX_QUEUED_EVENTS);
        let producer = tokio::spawn(async move { stream_call(exchange, &tx).await });
        for _ in 0..10_000 {
            if rx.len() == MAX_QUEUED_EVENTS {
                break;
            }
            tokio::task::yield_now().await;
        }
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            rx.len(),
            MAX_QUEUED_EVENTS,
            "the queue holds the limit, no more"
        );
        assert!(!producer.is_finished(), "the reader waits for the plugin");
        let mut n = 0;
        while rx.recv().await.is_some() {
            n += 1;
        }
        assert_eq!(n, 3 * MAX_QUEUED_EVENTS + 3);
    }

    #[test]
    fn messages_are_framed_and_unframed_across_chunks() {
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&frame(b"hello"));
        wire.extend_from_slice(&frame(b""));
        wire.extend_from_slice(&frame(b"world"));
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in wire.chunks(3) {
            buf.extend_from_slice(chunk);
            unframe(&mut buf, &mut out).unwrap();
        }
        assert_eq!(out, vec![&b"hello"[..], b"", b"world"]);
        assert!(buf.is_empty());
        let mut compressed = BytesMut::from(&[1u8, 0, 0, 0, 1, 7][..]);
        assert!(unframe(&mut compressed, &mut out).is_err());
        let mut huge = BytesMut::from(&[0u8, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(unframe(&mut huge, &mut out).is_err());
    }

    #[test]
    fn statuses_come_from_trailers_or_the_http_status() {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("7"));
        t.insert("grpc-message", HeaderValue::from_static("no%20entry"));
        assert_eq!(status_of(&t), Some((7, "no%20entry".into())));
        t.insert("grpc-status", HeaderValue::from_static("seven"));
        assert_eq!(status_of(&t), Some((code::UNKNOWN, "no%20entry".into())));
        assert_eq!(status_of(&HeaderMap::new()), None);
        assert_eq!(from_http(StatusCode::UNAUTHORIZED), 16);
        assert_eq!(
            from_http(StatusCode::SERVICE_UNAVAILABLE),
            code::UNAVAILABLE
        );
        assert_eq!(from_http(StatusCode::IM_A_TEAPOT), code::UNKNOWN);
        assert_eq!(grpc_timeout(Duration::from_millis(1500)), "1500m");
    }

    #[test]
    fn requests_name_the_method_and_carry_the_metadata() {
        let mut metadata = HeaderMap::new();
        metadata.insert("x-user", HeaderValue::from_static("ann"));
        metadata.insert("connection", HeaderValue::from_static("close"));
        let req = GrpcRequest {
            upstream: "authz".into(),
            authority: None,
            service: "pkg.Authz".into(),
            method: "Check".into(),
            metadata,
            unary: Some((Bytes::new(), Duration::from_secs(2))),
        };
        let http = http_request(&req, crate::body::empty()).unwrap();
        assert_eq!(http.uri(), "http://authz/pkg.Authz/Check");
        assert_eq!(http.method(), Method::POST);
        let h = http.headers();
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["grpc-timeout"], "2000m");
        assert_eq!(h["x-user"], "ann");
        assert!(!h.contains_key("connection"));
        let bad = GrpcRequest {
            method: "a b".into(),
            ..req
        };
        assert!(http_request(&bad, crate::body::empty()).is_err());
    }
}
