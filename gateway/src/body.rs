//! Body types: the one boxed body that flows through the proxy, a request-size limit that also holds
//! mid-stream, and a response wrapper that reports bytes and completion.

use crate::conn::StreamClock;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// Errors inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type used for requests and responses inside the gateway.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body holding `data`.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).map_err(|e| match e {}).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed()
}

/// Wraps any body whose errors convert to `BoxError`.
pub fn boxed<B>(b: B) -> Body
where
    B: HttpBody<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    b.map_err(Into::into).boxed()
}

/// The error a [`Limited`] body fails with.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit of {0} bytes")]
pub struct TooLarge(pub u64);

/// What happened to a request body on its way upstream, for mapping a failed exchange to the right
/// status (413 or 400 rather than 502).
#[derive(Debug, Default)]
pub struct BodyWatch {
    /// The body crossed the size limit.
    pub too_large: AtomicBool,
    /// The client's body broke off or was malformed.
    pub broken: AtomicBool,
    /// The filters cut the body off while it streamed (one answered, or failed): what the backend
    /// makes of it is not the backend's failure.
    pub cut: AtomicBool,
}

impl BodyWatch {
    /// Whether the body's end, not the backend, explains a failed exchange.
    pub fn explains_failure(&self) -> bool {
        self.too_large.load(Ordering::Acquire)
            || self.broken.load(Ordering::Acquire)
            || self.cut.load(Ordering::Acquire)
    }
}

/// A request body streamed through filters: an error it yields that the client's body did not
/// cause (which `Limited` records) is the filters cutting it off, and is recorded as that before
/// the reader sees it.
pub struct Filtered {
    inner: Body,
    watch: Arc<BodyWatch>,
}

impl Filtered {
    /// Watches `inner` (the filters' output) with the request's `watch`.
    pub fn new(inner: Body, watch: Arc<BodyWatch>) -> Filtered {
        Filtered { inner, watch }
    }
}

impl HttpBody for Filtered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Err(_))), false) = (&r, self.watch.explains_failure()) {
            self.watch.cut.store(true, Ordering::Release);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails once more than `limit` bytes went through, and records that it did.
pub struct Limited {
    inner: Body,
    remaining: u64,
    limit: u64,
    watch: Arc<BodyWatch>,
}

impl Limited {
    /// Wraps `inner`; `watch` records what went wrong.
    pub fn new(inner: Body, limit: u64, watch: Arc<BodyWatch>) -> Self {
        Limited {
            inner,
            remaining: limit,
            limit,
            watch,
        }
    }
}

impl HttpBody for Limited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > this.remaining {
                        this.watch.too_large.store(true, Ordering::Release);
                        return Poll::Ready(Some(Err(Box::new(TooLarge(this.limit)))));
                    }
                    this.remaining -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.watch.broken.store(true, Ordering::Release);
                Poll::Ready(Some(Err(e)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How a response body ended, for the access log and the connection's accounting.
#[derive(Debug, Clone, Copy)]
pub struct BodyEnd {
    /// Bytes handed to the client's connection.
    pub bytes: u64,
    /// The body reached its end.
    pub complete: bool,
    /// The body broke off with an error (an upstream that failed mid-body), rather than being
    /// dropped by the client's side.
    pub failed: bool,
}

/// A response body that counts bytes, reports when it is done (calls `F` once, when it is finished
/// or dropped), and (on HTTP/2) keeps the clock that tells whether the client stopped reading it.
/// `F` is held inline: the boxed body is the one allocation.
pub struct Tracked<F: FnOnce(BodyEnd)> {
    inner: Body,
    bytes: u64,
    complete: bool,
    failed: bool,
    clock: Option<Arc<StreamClock>>,
    /// With a clock: the rest of a data frame larger than [`CLOCKED_PIECE`], handed over in
    /// pieces.
    rest: Bytes,
    on_done: Option<F>,
}

/// The largest piece of a clocked (HTTP/2) response handed over at once: the protocol's default
/// frame size, so that the clock measures how long the client takes to make room for 16 KiB,
/// not for however large a piece the backend produced.
pub const CLOCKED_PIECE: usize = 16 * 1024;

impl<F: FnOnce(BodyEnd)> Tracked<F> {
    /// Wraps `inner`; with a `clock`, a piece handed over starts it and being asked for the next
    /// stops it.
    pub fn new(inner: Body, clock: Option<Arc<StreamClock>>, on_done: F) -> Self {
        Tracked {
            inner,
            bytes: 0,
            complete: false,
            failed: false,
            clock,
            rest: Bytes::new(),
            on_done: Some(on_done),
        }
    }
}

impl<F: FnOnce(BodyEnd) + Unpin> HttpBody for Tracked<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(clock) = &this.clock else {
            let r = Pin::new(&mut this.inner).poll_frame(cx);
            match &r {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(d) = frame.data_ref() {
                        this.bytes += d.len() as u64;
                    }
                }
                Poll::Ready(Some(Err(_))) => this.failed = true,
                Poll::Ready(None) => this.complete = true,
                Poll::Pending => {}
            }
            return r;
        };
        clock.resume();
        if !this.rest.is_empty() {
            let piece = this.rest.split_to(this.rest.len().min(CLOCKED_PIECE));
            this.bytes += piece.len() as u64;
            clock.wait();
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    if data.len() > CLOCKED_PIECE {
                        this.rest = data.split_off(CLOCKED_PIECE);
                    }
                    this.bytes += data.len() as u64;
                    clock.wait();
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(Some(Err(e))) => {
                this.failed = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.complete = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

impl<F: FnOnce(BodyEnd)> Drop for Tracked<F> {
    fn drop(&mut self) {
        if let Some(f) = self.on_done.take() {
            f(BodyEnd {
                bytes: self.bytes,
                complete: self.complete || (self.rest.is_empty() && self.inner.is_end_stream()),
                failed: self.failed,
            });
        }
    }
}
