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
    Complete(Option<Returning>),
    /// It was dropped before its end, after the guest returned (hyper stops at a `content-length`
    /// or for a HEAD request, a response filter replaced it): whether the guest finished it is the
    /// task's to see.
    Left(B, Option<Returning>),
}

/// Instances on their way back to a function's warm pool (reuse mode), and the requests waiting
/// for one: a request that finds none warm waits a little for one only while more are on their
/// way back than requests already wait for, and each return wakes one waiter.
#[derive(Debug, Default)]
pub(crate) struct Returns {
    counts: std::sync::Mutex<Counts>,
    /// Told once per instance back (or known not to come back): wakes one waiter.
    pub(crate) returned: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Counts {
    /// Instances whose response was let go of and which the request's task has not put back yet.
    returning: usize,
    /// Requests waiting for one of them.
    waiting: usize,
}

impl Returns {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enlists a request as waiting for an instance on its way back, if one is not spoken for.
    pub(crate) fn enlist(self: &std::sync::Arc<Self>) -> Option<Waiter> {
        let mut c = self.counts();
        if c.returning > c.waiting {
            c.waiting += 1;
            Some(Waiter(self.clone()))
        } else {
            None
        }
    }
}

/// A request waiting for an instance on its way back; no longer counted when dropped.
#[derive(Debug)]
pub(crate) struct Waiter(std::sync::Arc<Returns>);

impl Waiter {
    /// Whether an instance is still on its way for this waiter: as many are coming as there are
    /// waiters (an instance that went elsewhere, or was dropped, leaves one waiter without).
    pub(crate) fn still_coming(&self) -> bool {
        let c = self.0.counts();
        c.returning >= c.waiting
    }
}

/// How a [`Waiter`]'s wait ended.
#[derive(Debug)]
pub(crate) enum Waited<T> {
    /// It found an instance.
    Got(T),
    /// None is on its way for it any more (another request took it, or it was dropped).
    NotComing,
    /// The bound passed; what a last look found.
    TimedOut(Option<T>),
}

impl Waiter {
    /// Waits, up to `until`, for `take` (a look into the warm pool) to find an instance, woken by
    /// each return. Registered for the next return before each look: `notify_one` keeps only one
    /// wake-up for waiters not yet registered, so two instances coming back while two waiters
    /// looked (or checked [`still_coming`](Self::still_coming)) would wake only one of them, and
    /// the other would wait out the bound with an instance in the pool. A wake-up taken by a
    /// waiter that then stops waiting passes to the next (tokio's `Notified` does that on drop).
    pub(crate) async fn wait<T>(
        &self,
        until: tokio::time::Instant,
        mut take: impl FnMut() -> Option<T>,
    ) -> Waited<T> {
        loop {
            let mut returned = std::pin::pin!(self.0.returned.notified());
            returned.as_mut().enable();
            if let Some(t) = take() {
                return Waited::Got(t);
            }
            if !self.still_coming() {
                return Waited::NotComing;
            }
            if tokio::time::timeout_at(until, returned).await.is_err() {
                return Waited::TimedOut(take());
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.0.counts().waiting -= 1;
    }
}

/// One instance on its way back: counted from when its body is let go of until this is dropped,
/// which the request's task does after putting the instance back, and which also happens when the
/// task is gone or never takes it (a [`Close`] not received), so the count cannot leak.
#[derive(Debug)]
pub(crate) struct Returning(std::sync::Arc<Returns>);

impl Returning {
    fn new(r: &std::sync::Arc<Returns>) -> Returning {
        r.counts().returning += 1;
        Returning(r.clone())
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        self.0.counts().returning -= 1;
        self.0.returned.notify_one();
    }
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
    /// Reuse mode: where the body counts its instance as on its way back when it tells the task it
    /// was let go of, so that a request arriving meanwhile waits for the instance.
    returns: Option<std::sync::Arc<Returns>>,
    /// The head's `content-length` (0 for a HEAD request), less the bytes passed on so far: at 0
    /// the client has the whole answer, and hyper drops the body without waiting for its end.
    left: Option<u64>,
    /// The instance counted as on its way back from when the body was let go of (a body drained
    /// to its end by [`drain`](Self::drain) after that).
    early: Option<Returning>,
    /// Spawns a task that reads the rest of a body let go of with nothing more owed to the
    /// client while the guest still runs (none on that body itself).
    drain: Option<fn(FunctionBody<B>)>,
}

impl<B> Drop for FunctionBody<B> {
    fn drop(&mut self) {
        // Handed to the task only once the guest has returned without failing: everything it wrote
        // is then in the body. While it still runs (the client went away mid-stream), the body is
        // dropped here, so its next write fails instead of waiting for room in a body nobody reads
        // until the request's timeout, holding the function's slot.
        //
        // A body with nothing more owed to the client (its declared length has all gone out, or
        // the request was a HEAD) while the guest has not returned yet is read to its end (a
        // HEAD's only up to a small bound: the client wants none of it) by a task of its own,
        // which tells the request's task as the body would have: hyper drops
        // such a body as soon as it has written the last byte (or the head), which on a busy
        // machine comes before the guest's `finish` and return. Dropping it then threw a good
        // instance away and counted a failure. The instance counts as on its way back from now.
        let returned = match (&self.outcome, self.done.as_mut()) {
            (Some(o), _) => o.is_ok(),
            (None, Some(rx)) => match rx.try_recv() {
                Ok(o) => {
                    let ok = o.is_ok();
                    self.outcome = Some(o);
                    ok
                }
                Err(_) => false,
            },
            (None, None) => false,
        };
        if returned {
            if let (Some(tx), Some(inner)) = (self.closed.take(), self.inner.take()) {
                let _ = tx.send(Close::Left(inner, self.returning()));
            }
            return;
        }
        let owed_nothing = self.left == Some(0) && self.outcome.is_none();
        if let (true, Some(drain), Some(_), Some(_)) =
            (owed_nothing, self.drain, &self.closed, &self.inner)
        {
            let rest = FunctionBody {
                inner: self.inner.take(),
                function: std::mem::take(&mut self.function),
                done: self.done.take(),
                outcome: None,
                closed: self.closed.take(),
                early: self.returns.as_ref().map(Returning::new),
                returns: self.returns.take(),
                left: self.left,
                drain: None,
            };
            drain(rest);
        }
    }
}

impl<B> FunctionBody<B> {
    pub(crate) fn new(
        inner: B,
        function: String,
        done: oneshot::Receiver<Outcome>,
        closed: oneshot::Sender<Close<B>>,
        returns: Option<std::sync::Arc<Returns>>,
        declared: Option<u64>,
        drain: fn(FunctionBody<B>),
    ) -> FunctionBody<B> {
        FunctionBody {
            inner: Some(inner),
            function,
            done: Some(done),
            outcome: None,
            closed: Some(closed),
            returns,
            left: declared,
            early: None,
            drain: Some(drain),
        }
    }

    fn returning(&mut self) -> Option<Returning> {
        self.early
            .take()
            .or_else(|| self.returns.as_ref().map(Returning::new))
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
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(left), Some(data)) = (&mut this.left, frame.data_ref()) {
                    *left = left.saturating_sub(data.len() as u64);
                }
                Poll::Ready(Some(Ok(frame)))
            }
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
                    let _ = tx.send(Close::Complete(this.returning()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    /// Two waiters have looked into the empty pool and are about to wait when two instances come
    /// back: each is woken and takes one; neither waits out the bound (2 s here) with an instance
    /// in the pool. Four are on their way back, so both waiters still expect one after two came.
    #[test]
    fn two_returns_while_two_waiters_look_wake_both() {
        let returns = Arc::new(Returns::default());
        let mut coming: Vec<Returning> = (0..4).map(|_| Returning::new(&returns)).collect();
        let pool = Arc::new(Mutex::new(Vec::<u32>::new()));
        let looked = Arc::new(Barrier::new(3));
        let back = Arc::new(Barrier::new(3));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let waiter = returns.enlist().expect("enlisted");
                let (pool, looked, back) = (pool.clone(), looked.clone(), back.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .unwrap();
                    let until = tokio::time::Instant::now() + Duration::from_secs(2);
                    let mut first = true;
                    rt.block_on(waiter.wait(until, || {
                        let got = pool.lock().unwrap().pop();
                        if std::mem::take(&mut first) {
                            // Both have looked, and found nothing, when the two come back.
                            looked.wait();
                            back.wait();
                        }
                        got
                    }))
                })
            })
            .collect();
        looked.wait();
        for i in 0..2 {
            // As the request's task does: put back, then no longer on its way.
            pool.lock().unwrap().push(i);
            drop(coming.pop());
        }
        back.wait();
        for w in waiters {
            let waited = w.join().unwrap();
            assert!(matches!(waited, Waited::Got(_)), "{waited:?}");
        }
        assert!(pool.lock().unwrap().is_empty());
    }
}
