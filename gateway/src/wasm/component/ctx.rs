//! One request through a component filter: the instance it runs on (taken at its first phase, given
//! back or dropped when the request is done), the data lent to each handler call, and what the
//! handler's action becomes.

use super::bindings::gateway::filter::types::{Action, BodyMode as WitBodyMode};
use super::bindings::Filter as Exports;
use super::host::header_map;
use super::{CompState, FilterInner, Instance};
use crate::filter::{
    BodyMode, FilterCtx, FilterError, LocalResponse, RequestHead, RequestInfo, ResponseHead,
    Verdict,
};
use crate::host::{Lent, Phase, SkippedHeads};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::StatusCode;
use std::sync::Arc;
use wasmtime::component::Resource;
use wasmtime::Store;

/// The rep of the one request (or response) handle a call sees. A borrow cannot outlive the call,
/// so the handle never names anything of another call or request.
const HANDLE: u32 = 0;

pub(crate) struct ComponentCtx {
    inner: Arc<FilterInner>,
    info: RequestInfo,
    inst: Option<Instance>,
    /// The instance failed during this request; later phases are not run.
    failed: bool,
    done: bool,
    /// Copies of the heads of the head handlers the filter did not declare, for its body handlers
    /// in chunks (a whole-body call is lent its head); put in the instance's data at its next call.
    skipped: Option<Box<SkippedHeads>>,
}

impl ComponentCtx {
    pub(crate) fn new(inner: Arc<FilterInner>, info: RequestInfo) -> ComponentCtx {
        ComponentCtx {
            inner,
            info,
            inst: None,
            failed: false,
            done: false,
            skipped: None,
        }
    }

    async fn instance(&mut self) -> Result<&mut Instance, FilterError> {
        if self.failed {
            return Err(FilterError::Unavailable(format!(
                "plugin `{}` failed earlier in this request",
                self.inner.plugin.name()
            )));
        }
        if self.inst.is_none() {
            match self
                .inner
                .acquire(self.info.identity.as_ref().map(|i| i.registry()))
                .await
            {
                Ok(mut inst) => {
                    inst.store.data_mut().info = Some(self.info.clone());
                    self.inst = Some(inst);
                }
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
        self.inst
            .as_mut()
            .ok_or_else(|| FilterError::Unavailable("no instance".into()))
    }

    /// Runs one handler with `lent` data under the per-call limits. A failure throws the instance
    /// away (after the data is given back).
    async fn run(&mut self, mut lent: Lent<'_>, eos: bool) -> Result<Verdict, FilterError> {
        let plugin = self.inner.plugin.clone();
        let keep_req = self.inner.options.0 != WitBodyMode::Skip;
        let keep_resp = self.inner.options.1 != WitBodyMode::Skip;
        let keep_head = match &lent {
            Lent::RequestHead(_) => keep_req,
            Lent::ResponseHead(_) => keep_resp,
            _ => true,
        };
        let skipped = self.skipped.take();
        let inst = self.instance().await?;
        let data = &mut inst.store.data_mut().data;
        if let Some(mut skipped) = skipped {
            skipped.hand_in(data);
        }
        data.lend(&mut lent);
        plugin.ctx.sandbox.enter(&mut inst.store);
        let b = &inst.bindings;
        let s = &mut inst.store;
        let r = if plugin.is_sync() {
            call_sync(b, s, &lent, eos)
        } else {
            match &lent {
                Lent::RequestHead(_) => b.call_on_request(s, Resource::new_borrow(HANDLE)).await,
                Lent::RequestBody(_) => {
                    b.call_on_request_body(s, Resource::new_borrow(HANDLE), eos)
                        .await
                }
                Lent::ResponseHead(_) => b.call_on_response(s, Resource::new_borrow(HANDLE)).await,
                Lent::ResponseBody(_) => {
                    b.call_on_response_body(s, Resource::new_borrow(HANDLE), eos)
                        .await
                }
                Lent::WholeRequest(..) => {
                    b.call_on_request_body(s, Resource::new_borrow(HANDLE), true)
                        .await
                }
                Lent::WholeResponse(..) => {
                    b.call_on_response_body(s, Resource::new_borrow(HANDLE), true)
                        .await
                }
                // The WIT world has no trailer handlers; trailers are never lent to a component.
                Lent::RequestTrailers(_) | Lent::ResponseTrailers(_) => Ok(Action::Continue),
            }
        };
        inst.store.data_mut().data.take_back(&mut lent, keep_head);
        let action = match plugin.ctx.sandbox.leave(r, &mut inst.store) {
            Ok(a) => a,
            Err(err) => {
                self.discard();
                return Err(err);
            }
        };
        match action {
            Action::Continue => {
                plugin.ctx.sandbox.success();
                Ok(Verdict::Continue)
            }
            Action::Respond(local) => {
                let status = StatusCode::from_u16(local.status)
                    .map_err(|_| format!("local response with status {}", local.status));
                let headers =
                    header_map(&local.headers).map_err(|e| format!("local response with {e:?}"));
                match (status, headers) {
                    (Ok(status), Ok(headers)) => {
                        plugin.ctx.sandbox.success();
                        Ok(Verdict::Respond(LocalResponse {
                            status,
                            headers,
                            body: Bytes::from(local.body),
                        }))
                    }
                    (Err(m), _) | (_, Err(m)) => {
                        let err = plugin.ctx.sandbox.violation(m);
                        self.discard();
                        Err(err)
                    }
                }
            }
        }
    }

    /// Throws the instance away after a failure; later phases of this request are not run.
    fn discard(&mut self) {
        self.inner.plugin.ctx.sandbox.discarded();
        self.inst = None;
        self.failed = true;
    }

    fn finish(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        if let Some(inst) = self.inst.take() {
            // A phase other than idle means the request ended (its future was dropped) in the
            // middle of a guest call: the guest's state is half-way through it, so the instance
            // is not given to another request.
            if !self.failed && inst.store.data().data.phase == Phase::Idle {
                self.inner.release(inst);
            }
        }
        self.inner.plugin.ctx.sandbox.release();
    }
}

impl Drop for ComponentCtx {
    fn drop(&mut self) {
        self.finish();
    }
}

/// [`ComponentCtx::run`]'s call for a plugin that imports nothing that can wait: on this thread's
/// stack, without a fiber.
fn call_sync(
    b: &Exports,
    s: &mut Store<CompState>,
    lent: &Lent<'_>,
    eos: bool,
) -> wasmtime::Result<Action> {
    let r = match lent {
        Lent::RequestHead(_) => b.func_on_request().call(s, (Resource::new_borrow(HANDLE),)),
        Lent::RequestBody(_) => b
            .func_on_request_body()
            .call(s, (Resource::new_borrow(HANDLE), eos)),
        Lent::ResponseHead(_) => b
            .func_on_response()
            .call(s, (Resource::new_borrow(HANDLE),)),
        Lent::ResponseBody(_) => b
            .func_on_response_body()
            .call(s, (Resource::new_borrow(HANDLE), eos)),
        Lent::WholeRequest(..) => b
            .func_on_request_body()
            .call(s, (Resource::new_borrow(HANDLE), true)),
        Lent::WholeResponse(..) => b
            .func_on_response_body()
            .call(s, (Resource::new_borrow(HANDLE), true)),
        Lent::RequestTrailers(_) | Lent::ResponseTrailers(_) => return Ok(Action::Continue),
    };
    r.map(|(a,)| a)
}

fn mode(m: WitBodyMode) -> BodyMode {
    match m {
        WitBodyMode::Skip => BodyMode::Skip,
        WitBodyMode::Whole => BodyMode::Whole,
        WitBodyMode::Chunks => BodyMode::Stream,
    }
}

impl FilterCtx for ComponentCtx {
    fn on_request_headers<'a>(
        &'a mut self,
        req: &'a mut RequestHead,
        _end_of_stream: bool,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        if !self.inner.interest.request {
            self.request_headers_skipped(req);
            return Box::pin(std::future::ready(Ok(Verdict::Continue)));
        }
        Box::pin(self.run(Lent::RequestHead(req), false))
    }

    fn wants_request_headers(&self) -> bool {
        self.inner.interest.request
    }

    fn wants_response_headers(&self) -> bool {
        self.inner.interest.response
    }

    fn request_headers_skipped(&mut self, req: &RequestHead) {
        if self.inner.options.0 == WitBodyMode::Chunks {
            self.skipped
                .get_or_insert_with(Box::default)
                .keep_request(req);
        }
    }

    fn response_headers_skipped(&mut self, resp: &ResponseHead) {
        if self.inner.options.1 == WitBodyMode::Chunks {
            self.skipped
                .get_or_insert_with(Box::default)
                .keep_response(resp);
        }
    }

    fn request_body_mode(&self) -> BodyMode {
        mode(self.inner.options.0)
    }

    fn on_request_body<'a>(
        &'a mut self,
        body: &'a mut Bytes,
        end_of_stream: bool,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(async move {
            match self.inner.options.0 {
                WitBodyMode::Skip => Ok(Verdict::Continue),
                WitBodyMode::Whole if !end_of_stream => Ok(Verdict::Buffer),
                _ => self.run(Lent::RequestBody(body), end_of_stream).await,
            }
        })
    }

    fn on_request_body_whole<'a>(
        &'a mut self,
        req: &'a mut RequestHead,
        body: &'a mut Bytes,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(self.run(Lent::WholeRequest(req, body), true))
    }

    fn on_response_headers<'a>(
        &'a mut self,
        resp: &'a mut ResponseHead,
        _end_of_stream: bool,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        if !self.inner.interest.response {
            self.response_headers_skipped(resp);
            return Box::pin(std::future::ready(Ok(Verdict::Continue)));
        }
        Box::pin(self.run(Lent::ResponseHead(resp), false))
    }

    fn response_body_mode(&self) -> BodyMode {
        mode(self.inner.options.1)
    }

    fn on_response_body<'a>(
        &'a mut self,
        body: &'a mut Bytes,
        end_of_stream: bool,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(async move {
            match self.inner.options.1 {
                WitBodyMode::Skip => Ok(Verdict::Continue),
                WitBodyMode::Whole if !end_of_stream => Ok(Verdict::Buffer),
                _ => self.run(Lent::ResponseBody(body), end_of_stream).await,
            }
        })
    }

    fn on_response_body_whole<'a>(
        &'a mut self,
        resp: &'a mut ResponseHead,
        body: &'a mut Bytes,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(self.run(Lent::WholeResponse(resp, body), true))
    }

    fn on_done(&mut self) {
        self.finish();
    }
}
