//! The HTTP side of gRPC-JSON transcoding (see [`crate::transcode`]): the REST request becomes one
//! framed gRPC message `POST`ed to the method's path on the route's cluster; the answer becomes
//! JSON, with the gRPC status as an HTTP status ([`grpc::Code::http_status`]) and a JSON
//! error body `{"code": <grpc code>, "message": "..."}`.
//!
//! A server stream is written as its messages come (a JSON array, or one message per line); its
//! head waits for the first message, so a stream that fails before any gets its error status. A
//! stream that fails later ends the response unfinished (no closing `]`, the HTTP/1 chunked body or
//! HTTP/2 stream cut), so the client cannot take a partial answer for a whole one.

use super::grpc::{self, Code};
use super::{forward, EndpointName, RouteBackend};
use crate::body::{self, Body, BodyWatch, BoxError};
use crate::config::grpc::StreamFormat;
use crate::errors::ProxyError;
use crate::exchange::body_error;
use crate::transcode::{Call, Found, Transcoder};
use crate::upstream::Cluster;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The largest answer message transcoded: 4 MiB, gRPC's default receive limit. A larger one is a
/// 502.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Whether a request is gRPC or gRPC-Web already: it goes through untranscoded, as in Envoy.
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    grpc::protocol(headers).is_some()
}

/// Serves a REST/JSON request through the route's gRPC cluster.
pub(super) async fn serve(
    t: &Arc<Transcoder>,
    b: &RouteBackend<'_>,
    cluster: &Cluster,
    mut parts: http::request::Parts,
    body: Body,
    watch: &BodyWatch,
) -> (Result<Response<Body>, ProxyError>, Option<EndpointName>) {
    let call = match t.find(&parts.method, parts.uri.path()) {
        None => {
            let m = format!(
                "no gRPC method is mapped to {} {}",
                parts.method,
                parts.uri.path()
            );
            return (Ok(json_error(StatusCode::NOT_FOUND, 5, &m)), None);
        }
        Some(Found::Unsupported(m)) => {
            let m = format!(
                "`{}` streams its requests: only unary and server-streaming methods are transcoded",
                m.desc.full_name()
            );
            return (Ok(json_error(StatusCode::NOT_IMPLEMENTED, 12, &m)), None);
        }
        Some(Found::Call(c)) => c,
    };
    let limit = b.route.max_body_size.unwrap_or(b.info.max_body_size);
    let json = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => return (Err(body_error(watch, e.to_string(), limit)), None),
    };
    let message = match t.request(&call, parts.uri.query(), &json) {
        Ok(m) => m,
        Err(e) => return (Ok(json_error(StatusCode::BAD_REQUEST, 3, &e)), None),
    };
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.extend_from_slice(&message);
    let len = framed.len() as u64;
    let started = std::time::Instant::now();
    parts.method = http::Method::POST;
    parts.uri = http::Uri::from(call.path.clone());
    let h = &mut parts.headers;
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.remove(header::CONTENT_LENGTH);
    h.remove(header::ACCEPT_ENCODING);
    let sent = forward::forward(
        b.route,
        cluster,
        b.info,
        b.client,
        parts,
        body::full(framed.freeze()),
        b.params,
        watch,
        Some(len),
        None,
    )
    .await;
    let (resp, ep) = match sent {
        Ok(r) => r,
        Err(e) => {
            let endpoint = e.endpoint().map(|e| EndpointName::Text(e.to_owned()));
            return (Err(e), endpoint);
        }
    };
    let endpoint = ep.address.clone();
    // The route's timeout bounds the exchange up to the response head, which here waits for the
    // first message (a REST client sends no grpc-timeout): an upstream that sends its headers and
    // stalls is a 504 when the route's timeout has passed since the request went out.
    let answer = match tokio::time::timeout_at(
        (started + b.route.timeout).into(),
        answer(t.clone(), call, resp, &endpoint),
    )
    .await
    {
        Ok(a) => a,
        Err(_) => {
            ep.record(false, &cluster.passive);
            cluster.stats.error("timeout");
            Err(ProxyError::Timeout {
                endpoint,
                after_ms: started.elapsed().as_millis() as u64,
            })
        }
    };
    (answer, Some(EndpointName::State(ep)))
}

/// A JSON error answer: `{"code": <grpc code>, "message": "..."}`.
pub fn json_error(status: StatusCode, code: u32, message: &str) -> Response<Body> {
    let text = serde_json::json!({ "code": code, "message": message }).to_string();
    let mut resp = Response::new(body::full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The gRPC status of a header block (headers of a trailers-only answer, or trailers), with its
/// message percent-decoded.
fn grpc_status(h: &http::HeaderMap) -> Option<(u32, String)> {
    let code = h
        .get(grpc::GRPC_STATUS)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let message = h
        .get(grpc::GRPC_MESSAGE)
        .map(|m| grpc::decode_message(m.as_bytes()))
        .unwrap_or_default();
    Some((code, message))
}

fn status_error(code: u32, message: &str) -> Response<Body> {
    json_error(Code::from_u32(code).http_status(), code, message)
}

/// The upstream's answer as JSON.
async fn answer(
    t: Arc<Transcoder>,
    call: Call,
    resp: Response<Body>,
    endpoint: &str,
) -> Result<Response<Body>, ProxyError> {
    let protocol = |detail: String| ProxyError::Protocol {
        endpoint: endpoint.to_owned(),
        detail,
    };
    let (mut parts, mut incoming) = resp.into_parts();
    if parts.status != StatusCode::OK || !grpc::is_grpc(&parts.headers) {
        // Not a gRPC answer: as it is (an upstream that is not gRPC, or a proxy's error page).
        if let Some((code, message)) = grpc_status(&parts.headers).filter(|(c, _)| *c != 0) {
            return Ok(status_error(code, &message));
        }
        return Ok(Response::from_parts(parts, incoming));
    }
    // A trailers-only answer has its status in the headers and no body: an error, or OK for an
    // empty server stream (grpc-go and grpc-java answer an immediately ended stream so).
    let head_status = grpc_status(&parts.headers);
    if let Some((code, message)) = head_status.as_ref().filter(|(c, _)| *c != 0) {
        return Ok(status_error(*code, message));
    }
    let trailers_only = head_status.is_some();
    // The initial metadata stays as headers; what describes the gRPC body goes.
    let h = &mut parts.headers;
    let described: Vec<_> = h
        .keys()
        .filter(|n| n.as_str().starts_with("grpc-"))
        .cloned()
        .collect();
    for n in described {
        h.remove(n);
    }
    h.remove(header::CONTENT_LENGTH);
    let mut buf = BytesMut::new();
    // Reads until a whole message is buffered, or the end: its trailers.
    let mut trailers = None;
    while !trailers_only && frame_len(&buf).is_none_or(|n| buf.len() < n) {
        match incoming.frame().await {
            None => break,
            Some(Err(e)) => return Err(protocol(format!("the answer broke off: {e}"))),
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => {
                    buf.extend_from_slice(&d);
                    if buf.len() > MAX_MESSAGE_BYTES + 5 {
                        return Err(protocol(format!(
                            "an answer message is larger than {MAX_MESSAGE_BYTES} bytes"
                        )));
                    }
                }
                Err(f) => {
                    trailers = f.into_trailers().ok();
                    break;
                }
            },
        }
    }
    let status = trailers.as_ref().and_then(grpc_status).or(head_status);
    if let Some((code, message)) = status.as_ref().filter(|(c, _)| *c != 0) {
        return Ok(status_error(*code, message));
    }
    let first = match take_message(&mut buf).map_err(protocol)? {
        Some(m) => Some(m),
        None if !buf.is_empty() => {
            return Err(protocol("the answer ends inside a message".into()));
        }
        None => None,
    };
    let streaming = call.method.is_server_streaming();
    if !streaming {
        let Some(m) = first else {
            return Err(protocol(match status {
                Some(_) => "the unary answer ended with status OK but no message".into(),
                None => "the answer ended without a grpc-status".into(),
            }));
        };
        // Anything after the message is read to its trailers (a unary answer has one message),
        // frame by frame, within the size of one message.
        if trailers.is_none() && !trailers_only {
            let mut received = buf.len();
            let mut end = None;
            while let Some(f) = incoming.frame().await {
                let f = f.map_err(|e| protocol(format!("the answer broke off: {e}")))?;
                match f.into_data() {
                    Ok(d) => {
                        received += d.len();
                        if received > MAX_MESSAGE_BYTES + 5 {
                            return Err(protocol(format!(
                                "the unary answer goes on after its message for more than {MAX_MESSAGE_BYTES} bytes"
                            )));
                        }
                    }
                    Err(f) => {
                        end = f.into_trailers().ok();
                        break;
                    }
                }
            }
            match end.as_ref().and_then(grpc_status) {
                Some((0, _)) => {}
                Some((code, message)) => return Ok(status_error(code, &message)),
                None => return Err(protocol("the answer ended without a grpc-status".into())),
            }
        } else if status.is_none() {
            return Err(protocol("the answer ended without a grpc-status".into()));
        }
        let json = t.response(&call, &m).map_err(protocol)?;
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(Response::from_parts(parts, body::full(json)));
    }
    let format = t.stream_format;
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(match format {
            StreamFormat::JsonArray => "application/json",
            StreamFormat::Ndjson => "application/x-ndjson",
        }),
    );
    let stream = JsonStream {
        inner: (trailers.is_none() && !trailers_only).then_some(incoming),
        buf,
        t,
        call,
        sent: 0,
        ended: matches!(status, Some((0, _))),
        closed: false,
        first,
    };
    Ok(Response::from_parts(parts, body::boxed(stream)))
}

/// The length of the frame at the start of `buf` (prefix included), once its prefix is in.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let prefix = buf.get(..5)?;
    Some(5 + u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize)
}

/// Takes the first whole message of `buf`, if it is in.
fn take_message(buf: &mut BytesMut) -> Result<Option<Bytes>, String> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let n = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if n > MAX_MESSAGE_BYTES {
        return Err(format!(
            "an answer message is larger than {MAX_MESSAGE_BYTES} bytes"
        ));
    }
    if buf.len() < 5 + n {
        return Ok(None);
    }
    let flag = buf[0];
    if flag & 1 != 0 {
        return Err("the upstream compressed a message (no grpc-accept-encoding was sent)".into());
    }
    buf.advance(5);
    Ok(Some(buf.split_to(n).freeze()))
}

/// A server stream's messages as JSON, each written as it comes.
struct JsonStream {
    /// The upstream body, until its trailers.
    inner: Option<Body>,
    buf: BytesMut,
    t: Arc<Transcoder>,
    call: Call,
    /// Messages written.
    sent: usize,
    /// The upstream ended with status OK.
    ended: bool,
    /// The closing `]` (or the end) is written.
    closed: bool,
    /// The first message, read before the head.
    first: Option<Bytes>,
}

impl JsonStream {
    fn element(&mut self, m: &[u8]) -> Result<Bytes, BoxError> {
        let json = self.t.response(&self.call, m)?;
        let mut out = BytesMut::with_capacity(json.len() + 2);
        match self.t.stream_format {
            StreamFormat::JsonArray => {
                out.put_u8(if self.sent == 0 { b'[' } else { b',' });
                out.extend_from_slice(&json);
            }
            StreamFormat::Ndjson => {
                out.extend_from_slice(&json);
                out.put_u8(b'\n');
            }
        }
        self.sent += 1;
        Ok(out.freeze())
    }

    fn close(&mut self) -> Option<Bytes> {
        self.closed = true;
        match self.t.stream_format {
            StreamFormat::JsonArray if self.sent == 0 => Some(Bytes::from_static(b"[]")),
            StreamFormat::JsonArray => Some(Bytes::from_static(b"]")),
            StreamFormat::Ndjson => None,
        }
    }
}

impl http_body::Body for JsonStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(m) = this.first.take() {
            return Poll::Ready(Some(this.element(&m).map(Frame::data)));
        }
        loop {
            match take_message(&mut this.buf) {
                Err(e) => {
                    this.inner = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Ok(Some(m)) => return Poll::Ready(Some(this.element(&m).map(Frame::data))),
                Ok(None) => {}
            }
            let Some(inner) = this.inner.as_mut() else {
                if this.closed {
                    return Poll::Ready(None);
                }
                if !this.ended || !this.buf.is_empty() {
                    this.closed = true;
                    return Poll::Ready(Some(Err(
                        "the upstream's stream ended without status OK".into()
                    )));
                }
                return Poll::Ready(this.close().map(|b| Ok(Frame::data(b))));
            };
            match Pin::new(inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.inner = None,
                Poll::Ready(Some(Err(e))) => {
                    this.inner = None;
                    this.closed = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(f))) => match f.into_data() {
                    Ok(d) => this.buf.extend_from_slice(&d),
                    Err(f) => {
                        this.inner = None;
                        if let Ok(t) = f.into_trailers() {
                            match grpc_status(&t) {
                                Some((0, _)) => this.ended = true,
                                Some((code, message)) => {
                                    this.closed = true;
                                    return Poll::Ready(Some(Err(format!(
                                        "the upstream ended the stream with gRPC status {code}: {message}"
                                    )
                                    .into())));
                                }
                                None => {}
                            }
                        }
                    }
                },
            }
        }
    }
}
