//! What [`crate::export_filter!`] expands to calls: the one filter value of the instance and the
//! conversions between the SDK's types and the bindings. Not part of the API.

use crate::handles::{Request, Response};
use crate::Filter;
use std::cell::RefCell;

pub use crate::__bindings::gateway::filter::types::{
    Action as WitAction, Request as WitRequest, Response as WitResponse,
};
pub use crate::__bindings::Guest;

/// What `init` returns to the host.
pub type InitResult = Result<crate::__bindings::gateway::filter::types::Options, String>;

/// The filter's handlers, type-erased.
trait Dyn {
    fn on_request(&mut self, req: &Request) -> crate::Action;
    fn on_request_body(&mut self, req: &Request, eos: bool) -> crate::Action;
    fn on_response(&mut self, resp: &Response) -> crate::Action;
    fn on_response_body(&mut self, resp: &Response, eos: bool) -> crate::Action;
}

impl<F: Filter> Dyn for F {
    fn on_request(&mut self, req: &Request) -> crate::Action {
        Filter::on_request(self, req)
    }
    fn on_request_body(&mut self, req: &Request, eos: bool) -> crate::Action {
        Filter::on_request_body(self, req, eos)
    }
    fn on_response(&mut self, resp: &Response) -> crate::Action {
        Filter::on_response(self, resp)
    }
    fn on_response_body(&mut self, resp: &Response, eos: bool) -> crate::Action {
        Filter::on_response_body(self, resp, eos)
    }
}

thread_local! {
    static FILTER: RefCell<Option<Box<dyn Dyn>>> = const { RefCell::new(None) };
}

/// Makes and configures the instance's filter.
pub fn init<F: Filter>(config: &str) -> InitResult {
    let mut f = F::default();
    f.init(config)?;
    let options = f.options().into();
    FILTER.with(|s| *s.borrow_mut() = Some(Box::new(f)));
    Ok(options)
}

fn with(f: impl FnOnce(&mut dyn Dyn) -> crate::Action) -> WitAction {
    FILTER
        .with(|s| match s.borrow_mut().as_mut() {
            Some(filter) => f(filter.as_mut()),
            // The host always calls `init` first; a filter without it continues.
            None => crate::Action::Continue,
        })
        .into()
}

/// `on-request`.
pub fn on_request(req: &WitRequest) -> WitAction {
    with(|f| f.on_request(&Request::new(req)))
}

/// `on-request-body`.
pub fn on_request_body(req: &WitRequest, eos: bool) -> WitAction {
    with(|f| f.on_request_body(&Request::new(req), eos))
}

/// `on-response`.
pub fn on_response(resp: &WitResponse) -> WitAction {
    with(|f| f.on_response(&Response::new(resp)))
}

/// `on-response-body`.
pub fn on_response_body(resp: &WitResponse, eos: bool) -> WitAction {
    with(|f| f.on_response_body(&Response::new(resp), eos))
}
