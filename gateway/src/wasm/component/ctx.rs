//! One request through a component filter: the instance it runs on (taken at its first phase, given
//! back or dropped when the request is done), the data lent to each handler call, and what the
//! handler's action becomes.

use super::bindings::gateway::filter::types::{Action, BodyMode as WitBodyMode};
use super::host::header_map;
use super::state::Phase;
use super::{FilterInner, Instance};
use crate::filter::{
    BodyMode, FilterCtx, FilterError, LocalResponse, RequestHead, RequestInfo, ResponseHead,
    Verdict,
};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, Method, StatusCode, Uri};
use std::sync::Arc;
use wasmtime::component::Resource;

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
}

/// What a handler call is lent.
enum Lent<'a> {
    Req(&'a mut RequestHead),
    ReqBody(&'a mut Bytes),
    Resp(&'a mut ResponseHead),
    RespBody(&'a mut Bytes),
    /// A whole-mode body call: the body and the live head, which the call may change.
    ReqWhole(&'a mut RequestHead, &'a mut Bytes),
    RespWhole(&'a mut ResponseHead, &'a mut Bytes),
}

fn placeholder_req() -> RequestHead {
    RequestHead {
        method: Method::GET,
        uri: Uri::default(),
        headers: HeaderMap::new(),
    }
}

impl ComponentCtx {
    pub(crate) fn new(inner: Arc<FilterInner>, info: RequestInfo) -> ComponentCtx {
        ComponentCtx {
            inner,
            info,
            inst: None,
            failed: false,
            done: false,
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
            match self.inner.acquire().await {
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
        let inst = self.instance().await?;
        let state = inst.store.data_mut();
        state.whole = matches!(lent, Lent::ReqWhole(..) | Lent::RespWhole(..));
        state.phase = match &mut lent {
            Lent::Req(r) => {
                state.req = Some(std::mem::replace(*r, placeholder_req()));
                Phase::RequestHead
            }
            Lent::ReqBody(b) => {
                state.body = Some(std::mem::take(*b));
                Phase::RequestBody
            }
            Lent::Resp(r) => {
                let status = r.status;
                state.resp = Some(std::mem::replace(
                    *r,
                    ResponseHead {
                        status,
                        headers: HeaderMap::new(),
                    },
                ));
                Phase::ResponseHead
            }
            Lent::RespBody(b) => {
                state.body = Some(std::mem::take(*b));
                Phase::ResponseBody
            }
            Lent::ReqWhole(r, b) => {
                state.req = Some(std::mem::replace(*r, placeholder_req()));
                state.body = Some(std::mem::take(*b));
                Phase::RequestBody
            }
            Lent::RespWhole(r, b) => {
                let status = r.status;
                state.resp = Some(std::mem::replace(
                    *r,
                    ResponseHead {
                        status,
                        headers: HeaderMap::new(),
                    },
                ));
                state.body = Some(std::mem::take(*b));
                Phase::ResponseBody
            }
        };
        plugin.sandbox.enter(&mut inst.store);
        let b = &inst.bindings;
        let s = &mut inst.store;
        let r = match &lent {
            Lent::Req(_) => b.call_on_request(s, Resource::new_borrow(HANDLE)).await,
            Lent::ReqBody(_) => {
                b.call_on_request_body(s, Resource::new_borrow(HANDLE), eos)
                    .await
            }
            Lent::Resp(_) => b.call_on_response(s, Resource::new_borrow(HANDLE)).await,
            Lent::RespBody(_) => {
                b.call_on_response_body(s, Resource::new_borrow(HANDLE), eos)
                    .await
            }
            Lent::ReqWhole(..) => {
                b.call_on_request_body(s, Resource::new_borrow(HANDLE), true)
                    .await
            }
            Lent::RespWhole(..) => {
                b.call_on_response_body(s, Resource::new_borrow(HANDLE), true)
                    .await
            }
        };
        let state = inst.store.data_mut();
        state.phase = Phase::Idle;
        state.whole = false;
        match &mut lent {
            Lent::Req(r) => {
                if let Some(req) = state.req.take() {
                    if keep_req {
                        state.req = Some(req.clone());
                    }
                    **r = req;
                }
            }
            Lent::ReqBody(b) | Lent::RespBody(b) => **b = state.body.take().unwrap_or_default(),
            Lent::Resp(r) => {
                if let Some(resp) = state.resp.take() {
                    if keep_resp {
                        state.resp = Some(resp.clone());
                    }
                    **r = resp;
                }
            }
            Lent::ReqWhole(r, b) => {
                **b = state.body.take().unwrap_or_default();
                if let Some(req) = state.req.take() {
                    state.req = Some(req.clone());
                    **r = req;
                }
            }
            Lent::RespWhole(r, b) => {
                **b = state.body.take().unwrap_or_default();
                if let Some(resp) = state.resp.take() {
                    state.resp = Some(resp.clone());
                    **r = resp;
                }
            }
        }
        let action = match plugin.sandbox.leave(r, &mut inst.store) {
            Ok(a) => a,
            Err(err) => {
                self.discard();
                return Err(err);
            }
        };
        match action {
            Action::Continue => {
                plugin.sandbox.success();
                Ok(Verdict::Continue)
            }
            Action::Respond(local) => {
                let status = StatusCode::from_u16(local.status)
                    .map_err(|_| format!("local response with status {}", local.status));
                let headers =
                    header_map(&local.headers).map_err(|e| format!("local response with {e:?}"));
                match (status, headers) {
                    (Ok(status), Ok(headers)) => {
                        plugin.sandbox.success();
                        Ok(Verdict::Respond(LocalResponse {
                            status,
                            headers,
                            body: Bytes::from(local.body),
                        }))
                    }
                    (Err(m), _) | (_, Err(m)) => {
                        let err = plugin.sandbox.violation(m);
                        self.discard();
                        Err(err)
                    }
                }
            }
        }
    }

    /// Throws the instance away after a failure; later phases of this request are not run.
    fn discard(&mut self) {
        self.inner.plugin.sandbox.discarded();
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
            if !self.failed && inst.store.data().phase == Phase::Idle {
                self.inner.release(inst);
            }
        }
        self.inner.plugin.sandbox.release();
    }
}

impl Drop for ComponentCtx {
    fn drop(&mut self) {
        self.finish();
    }
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
        Box::pin(self.run(Lent::Req(req), false))
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
                _ => self.run(Lent::ReqBody(body), end_of_stream).await,
            }
        })
    }

    fn on_request_body_whole<'a>(
        &'a mut self,
        req: &'a mut RequestHead,
        body: &'a mut Bytes,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(self.run(Lent::ReqWhole(req, body), true))
    }

    fn on_response_headers<'a>(
        &'a mut self,
        resp: &'a mut ResponseHead,
        _end_of_stream: bool,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(self.run(Lent::Resp(resp), false))
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
                _ => self.run(Lent::RespBody(body), end_of_stream).await,
            }
        })
    }

    fn on_response_body_whole<'a>(
        &'a mut self,
        resp: &'a mut ResponseHead,
        body: &'a mut Bytes,
    ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
        Box::pin(self.run(Lent::RespWhole(resp, body), true))
    }

    fn on_done(&mut self) {
        self.finish();
    }
}
