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

/// The body of a function's response: the guest's body as it writes it, which ends only when the
/// guest both finished it (`outgoing-body.finish`) and returned from its handler without failing.
/// A trap, a limit or the timeout after the head, or a handler that returned without finishing its
/// body, turns into an error (the client's connection is closed or its stream reset), never a clean
/// end of a truncated body. Dropping it (or reaching its end) tells the request's task, which
/// holds the instance until then: `true` when the body ended complete.
pub(crate) struct FunctionBody<B> {
    inner: B,
    function: String,
    done: Option<oneshot::Receiver<Outcome>>,
    outcome: Option<Outcome>,
    closed: Option<oneshot::Sender<bool>>,
}

impl<B> FunctionBody<B> {
    pub(crate) fn new(
        inner: B,
        function: String,
        done: oneshot::Receiver<Outcome>,
        closed: oneshot::Sender<bool>,
    ) -> FunctionBody<B> {
        FunctionBody {
            inner,
            function,
            done: Some(done),
            outcome: None,
            closed: Some(closed),
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
        // The guest's outcome first: once it is known to have returned, the body's state is final
        // (everything it wrote is already in the channel), so a pending body will never end.
        if this.outcome.is_none() {
            if let Some(rx) = &mut this.done {
                if let Poll::Ready(r) = Pin::new(rx).poll(cx) {
                    this.done = None;
                    this.outcome =
                        Some(r.unwrap_or_else(|_| Err("the function's task ended".into())));
                }
            }
        }
        if let Some(Err(why)) = &this.outcome {
            let why = why.clone();
            return this.abort(why);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(e))) => this.abort(format!("the function aborted its body: {e}")),
            // The guest finished the body (the instance is alive until this body says so, so the
            // end cannot come from the instance going away).
            Poll::Ready(None) => {
                if let Some(tx) = this.closed.take() {
                    let _ = tx.send(true);
                }
                Poll::Ready(None)
            }
            Poll::Pending if matches!(this.outcome, Some(Ok(()))) => {
                this.abort("the function returned without finishing its response body".into())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

use std::future::Future as _;
