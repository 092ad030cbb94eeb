//! Bodies between wasmtime-wasi-http (whose bodies are `Send` but not `Sync`) and the gateway
//! (whose bodies are both), and the function's response body, which ends well only if the function
//! did.

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use tokio::sync::oneshot;

/// A `Send` body made `Sync`: only ever polled through `&mut`, so the lock is never contended.
pub(crate) struct SyncBody<B>(Mutex<B>);

impl<B> SyncBody<B> {
    pub(crate) fn new(b: B) -> SyncBody<B> {
        SyncBody(Mutex::new(b))
    }

    fn inner(self: Pin<&mut Self>) -> Pin<&mut B>
    where
        B: Unpin,
    {
        Pin::new(
            self.get_mut()
                .0
                .get_mut()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }
}

impl<B> HttpBody for SyncBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.inner().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().map(|b| b.is_end_stream()).unwrap_or(false)
    }

    fn size_hint(&self) -> SizeHint {
        self.0.lock().map(|b| b.size_hint()).unwrap_or_default()
    }
}

/// How the guest's call ended, as the response body learns it.
pub(crate) type Outcome = Result<(), String>;

/// Why a function's response body broke off.
#[derive(Debug, thiserror::Error)]
#[error("function `{function}` response aborted: {why}")]
pub struct Aborted {
    /// The function.
    pub function: String,
    /// What happened.
    pub why: String,
}

/// How a function's response body was let go of, for the request's task (which holds the instance
/// until then).
pub(crate) enum Close<B> {
    /// It ended: the guest finished it.
    Complete,
    /// It was dropped before its end (hyper stops at a `content-length` or for a HEAD request, a
    /// response filter replaced it): whether the guest finished it is the task's to see, once the
    /// guest has returned.
    Left(B),
}

/// The body of a function's response: the guest's body as it writes it, which ends only when the
/// guest both finished it (`outgoing-body.finish`) and returned from its handler without failing.
/// A trap, a limit or the timeout after the head, or a handler that returned without finishing its
/// body, turns into an error (the client's connection is closed or its stream reset), never a clean
/// end of a truncated body. Reaching its end or being dropped tells the request's task ([`Close`]);
/// an aborted body tells it nothing (the instance is not reused).
pub(crate) struct FunctionBody<B> {
    inner: Option<B>,
    function: String,
    done: Option<oneshot::Receiver<Outcome>>,
    outcome: Option<Outcome>,
    closed: Option<oneshot::Sender<Close<B>>>,
    /// Counted up when the body tells the task it was let go of (the task counts it down once the
    /// instance is back), so that a request arriving meanwhile waits for the instance.
    closing: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
}

impl<B> Drop for FunctionBody<B> {
    fn drop(&mut self) {
        if let (Some(tx), Some(inner)) = (self.closed.take(), self.inner.take()) {
            if !matches!(self.outcome, Some(Err(_))) {
                self.closing();
                let _ = tx.send(Close::Left(inner));
            }
        }
    }
}

impl<B> FunctionBody<B> {
    pub(crate) fn new(
        inner: B,
        function: String,
        done: oneshot::Receiver<Outcome>,
        closed: oneshot::Sender<Close<B>>,
        closing: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
    ) -> FunctionBody<B> {
        FunctionBody {
            inner: Some(inner),
            function,
            done: Some(done),
            outcome: None,
            closed: Some(closed),
            closing,
        }
    }

    fn closing(&self) {
        if let Some(c) = &self.closing {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn abort(&mut self, why: String) -> Poll<Option<Result<Frame<Bytes>, crate::body::BoxError>>> {
        self.closed.take();
        self.done.take();
        Poll::Ready(Some(Err(Box::new(Aborted {
            function: self.function.clone(),
            why,
        }))))
    }
}

impl<B> FunctionBody<B> {
    /// Takes the guest's outcome if it has come (registering for it otherwise).
    fn poll_outcome(&mut self, cx: &mut Context<'_>) {
        if self.outcome.is_some() {
            return;
        }
        if let Some(rx) = &mut self.done {
            if let Poll::Ready(r) = Pin::new(rx).poll(cx) {
                self.done = None;
                self.outcome = Some(r.unwrap_or_else(|_| Err("the function's task ended".into())));
            }
        }
    }
}

impl<B> HttpBody for FunctionBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.closed.is_none() {
            return Poll::Ready(None);
        }
        // The outcome before the body: once the guest is known to have returned, the body's state is
        // final (everything it wrote is in the channel), so a body still pending will never end.
        this.poll_outcome(cx);
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            // What the guest wrote goes out, also when it failed afterwards (the end says so).
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(e))) => this.abort(format!("the function aborted its body: {e}")),
            Poll::Ready(None) => {
                // The body ends when the guest finishes it or when its instance goes (after a
                // failure, whose outcome is sent before the instance is dropped): look again.
                this.poll_outcome(cx);
                if let Some(Err(why)) = &this.outcome {
                    let why = why.clone();
                    return this.abort(why);
                }
                if let Some(tx) = this.closed.take() {
                    this.closing();
                    let _ = tx.send(Close::Complete);
                }
                Poll::Ready(None)
            }
            Poll::Pending => match &this.outcome {
                Some(Err(why)) => {
                    let why = why.clone();
                    this.abort(why)
                }
                Some(Ok(())) => {
                    this.abort("the function returned without finishing its response body".into())
                }
                None => Poll::Pending,
            },
        }
    }
}

use std::future::Future as _;
