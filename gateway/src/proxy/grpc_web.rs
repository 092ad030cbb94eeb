//! gRPC-Web (PROTOCOL-WEB.md of grpc/grpc): a browser's `application/grpc-web[+proto]` or
//! `application/grpc-web-text[+proto]` request, over HTTP/1.1 or HTTP/2, goes to the upstream as
//! gRPC (`application/grpc`, over the cluster's HTTP/2), and its answer comes back as gRPC-Web: the
//! messages as they are, the trailers as one last frame in the body (flag `0x80`, then
//! `name:value\r\n` lines), and in text mode everything base64 (each upstream chunk encoded on its
//! own, padded, as the protocol allows). A trailers-only answer stays in the response headers.

use crate::body::{self, Body, BodyWatch, BoxError};
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http_body::Frame;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A gRPC-Web request's kind, kept for its answer.
pub struct WebCall {
    /// Text mode (`grpc-web-text`): bodies are base64 both ways.
    text: bool,
    /// The request's content type, which the answer carries.
    content_type: HeaderValue,
}

/// The gRPC-Web kind of a request by its content type, if it is one.
pub fn detect(headers: &http::HeaderMap) -> Option<WebCall> {
    let text = match super::grpc::protocol(headers)? {
        super::grpc::Protocol::GrpcWeb => false,
        super::grpc::Protocol::GrpcWebText => true,
        super::grpc::Protocol::Grpc => return None,
    };
    Some(WebCall {
        text,
        content_type: headers.get(header::CONTENT_TYPE)?.clone(),
    })
}

impl WebCall {
    /// Makes the request a gRPC one: its content type (the message format kept), its body decoded
    /// from base64 in text mode. A text body that is not base64 is the client's fault: it is
    /// recorded in the request's body watch (in the request's extensions when it has a body), so
    /// the failed exchange is a 400, not the endpoint's failure.
    pub fn request(&self, parts: &mut http::request::Parts, body: Body) -> Body {
        let ct = self
            .content_type
            .to_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let format = ct
            .split(';')
            .next()
            .and_then(|e| e.trim().split_once('+'))
            .map(|(_, f)| f.to_owned());
        let grpc = match format {
            Some(f) => HeaderValue::from_str(&format!("application/grpc+{f}"))
                .unwrap_or(HeaderValue::from_static("application/grpc")),
            None => HeaderValue::from_static("application/grpc"),
        };
        let h = &mut parts.headers;
        h.insert(header::CONTENT_TYPE, grpc);
        // The length changes in text mode, and an HTTP/2 upstream needs none.
        h.remove(header::CONTENT_LENGTH);
        // The browser's own marker headers are not gRPC's.
        h.remove("x-grpc-web");
        if h.get(header::ACCEPT)
            .is_some_and(|a| a.as_bytes().starts_with(b"application/grpc-web"))
        {
            h.remove(header::ACCEPT);
        }
        match self.text {
            true => body::boxed(TextDecode {
                inner: body,
                pending: BytesMut::new(),
                watch: parts.extensions.get::<Arc<BodyWatch>>().cloned(),
            }),
            false => body,
        }
    }

    /// Makes a gRPC answer a gRPC-Web one.
    pub fn response(&self, resp: http::Response<Body>) -> http::Response<Body> {
        let (mut parts, body) = resp.into_parts();
        let grpc = parts
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|c| c.as_bytes().starts_with(b"application/grpc"));
        if !grpc && !parts.headers.contains_key("grpc-status") {
            // Not a gRPC answer (the gateway's own error, a non-gRPC upstream): as it is.
            return http::Response::from_parts(parts, body);
        }
        parts
            .headers
            .insert(header::CONTENT_TYPE, self.content_type.clone());
        parts.headers.remove(header::CONTENT_LENGTH);
        let body = body::boxed(WebBody {
            inner: Some(body),
            text: self.text,
        });
        http::Response::from_parts(parts, body)
    }
}

/// Decodes a base64 request body as it arrives, in groups of four characters (so padded chunks
/// one after the other decode too).
struct TextDecode {
    inner: Body,
    pending: BytesMut,
    /// The request's body watch, told when the body is malformed.
    watch: Option<Arc<BodyWatch>>,
}

impl TextDecode {
    /// The client's body is malformed: recorded before the reader (the upstream connection) sees it.
    fn malformed(&mut self, why: String) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.pending.clear();
        if let Some(w) = &self.watch {
            w.broken.store(true, Ordering::Release);
        }
        Poll::Ready(Some(Err(why.into())))
    }
}

impl http_body::Body for TextDecode {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            let this = &mut *self;
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    if this.pending.is_empty() {
                        return Poll::Ready(None);
                    }
                    return this
                        .malformed("the grpc-web-text body ends inside a base64 group".into());
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(f))) => {
                    let Ok(data) = f.into_data() else {
                        continue;
                    };
                    this.pending
                        .extend(data.iter().copied().filter(|b| !b.is_ascii_whitespace()));
                    let whole = this.pending.len() / 4 * 4;
                    if whole == 0 {
                        continue;
                    }
                    let groups = this.pending.split_to(whole);
                    let mut out = Vec::with_capacity(whole / 4 * 3);
                    for g in groups.chunks(4) {
                        if let Err(e) = B64.decode_vec(g, &mut out) {
                            return this
                                .malformed(format!("the grpc-web-text body is not base64: {e}"));
                        }
                    }
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
            }
        }
    }
}

/// A gRPC answer's body as gRPC-Web: data as it is (base64 in text mode), trailers as a frame.
struct WebBody {
    inner: Option<Body>,
    text: bool,
}

impl WebBody {
    fn out(&self, raw: Bytes) -> Bytes {
        match self.text {
            true => Bytes::from(B64.encode(&raw)),
            false => raw,
        }
    }
}

/// The trailer frame: flag `0x80`, the length, then `name:value\r\n` for each trailer.
pub fn trailer_frame(trailers: &http::HeaderMap) -> Bytes {
    let mut block = Vec::new();
    for (name, value) in trailers {
        block.extend_from_slice(name.as_str().as_bytes());
        block.push(b':');
        block.extend_from_slice(value.as_bytes());
        block.extend_from_slice(b"\r\n");
    }
    let mut frame = BytesMut::with_capacity(5 + block.len());
    frame.put_u8(0x80);
    frame.put_u32(block.len() as u32);
    frame.extend_from_slice(&block);
    frame.freeze()
}

impl http_body::Body for WebBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                // Ended without trailers: the answer stops here (the client sees no status, as
                // it would have over gRPC).
                self.inner = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                self.inner = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(f))) => match f.into_data() {
                Ok(d) => Poll::Ready(Some(Ok(Frame::data(self.out(d))))),
                Err(f) => match f.into_trailers() {
                    Ok(t) => {
                        self.inner = None;
                        let frame = trailer_frame(&t);
                        Poll::Ready(Some(Ok(Frame::data(self.out(frame)))))
                    }
                    Err(_) => Poll::Ready(Some(Ok(Frame::data(Bytes::new())))),
                },
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn kinds_by_content_type() {
        let kind = |ct: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            detect(&h).map(|c| c.text)
        };
        assert_eq!(kind("application/grpc-web"), Some(false));
        assert_eq!(kind("application/grpc-web+proto"), Some(false));
        assert_eq!(kind("Application/gRPC-Web-Text; charset=x"), Some(true));
        assert_eq!(kind("application/grpc-web-text+proto"), Some(true));
        assert_eq!(kind("application/grpc"), None);
        assert_eq!(kind("application/grpc-webx"), None);
        assert_eq!(kind("application/json"), None);
    }

    #[tokio::test]
    async fn text_bodies_decode_across_chunks_and_padding() {
        // "hello" and "world!" padded on their own, then cut at odd places.
        let wire = format!("{}{}", B64.encode("hello"), B64.encode("world!"));
        let (a, b) = wire.split_at(3);
        let (b, c) = b.split_at(6);
        let chunks: Vec<Result<Frame<Bytes>, BoxError>> = [a, b, c]
            .into_iter()
            .map(|s| Ok(Frame::data(Bytes::from(s.to_owned()))))
            .collect();
        let body = body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
            chunks,
        )));
        let decoded = TextDecode {
            inner: body,
            pending: BytesMut::new(),
            watch: None,
        };
        let got = decoded.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], b"helloworld!");

        // A body cut inside a group, or not base64, is the client's: recorded in the watch.
        for bad in ["aGVsbG8", "!!!!!!!!"] {
            let watch = Arc::new(BodyWatch::default());
            let decoded = TextDecode {
                inner: body::full(bad),
                pending: BytesMut::new(),
                watch: Some(watch.clone()),
            };
            assert!(decoded.collect().await.is_err(), "{bad}");
            assert!(watch.explains_failure(), "{bad}");
        }
    }

    #[test]
    fn trailers_become_a_frame() {
        let mut t = http::HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        t.insert("x-count", HeaderValue::from_static("2"));
        let f = trailer_frame(&t);
        assert_eq!(f[0], 0x80);
        let len = u32::from_be_bytes(f[1..5].try_into().unwrap()) as usize;
        assert_eq!(&f[5..], b"grpc-status:0\r\nx-count:2\r\n");
        assert_eq!(len, f.len() - 5);
    }
}
