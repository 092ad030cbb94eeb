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

/// The handlers a filter implements, as [`crate::export_filter!`] found them in its `impl Filter`
/// block (WIT `phases`, since 0.1.5); `None`: not known (the `export_filter!(Type)` form), every
/// handler is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phases(Option<PhaseSet>);

use crate::__bindings::gateway::filter::phases::PhaseSet;

impl Phases {
    /// Not known: the host calls every handler.
    pub const ALL: Phases = Phases(None);

    /// The handlers named by the items of an `impl Filter` block, given as the block's top-level
    /// tokens (`fn`, `on_request`, `(...)`, ...): a handler is implemented when `fn` and its name
    /// follow each other. Nested tokens are one group each, so only the block's own items count.
    pub const fn of(tokens: &[&str]) -> Phases {
        let mut set = PhaseSet::empty();
        let mut i = 0;
        while i + 1 < tokens.len() {
            if eq(tokens[i], "fn") {
                let name = tokens[i + 1];
                if eq(name, "on_request") {
                    set = set.union(PhaseSet::REQUEST);
                } else if eq(name, "on_request_body") {
                    set = set.union(PhaseSet::REQUEST_BODY);
                } else if eq(name, "on_response") {
                    set = set.union(PhaseSet::RESPONSE);
                } else if eq(name, "on_response_body") {
                    set = set.union(PhaseSet::RESPONSE_BODY);
                }
            }
            i += 1;
        }
        Phases(Some(set))
    }

    /// The declared set, if known.
    pub fn declared(self) -> Option<PhaseSet> {
        self.0
    }
}

const fn eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Makes and configures the instance's filter, and declares the handlers it has when they are known.
pub fn init<F: Filter>(config: &str, phases: Phases) -> InitResult {
    let mut f = F::default();
    f.init(config)?;
    let options = f.options().into();
    if let Some(set) = phases.declared() {
        crate::__bindings::gateway::filter::phases::declare(set)
            .map_err(|e| format!("the gateway refused the filter's phases: {e:?}"))?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_the_fns_of_the_impl_block() {
        let p = Phases::of(&[
            "fn",
            "init",
            "(&mut self, config : &str)",
            "{ fn on_response() {} }",
            "fn",
            "on_request",
            "(&mut self, _req : &Request)",
            "->",
            "Action",
            "{ Action::Continue }",
            "fn",
            "on_response_body",
            "(...)",
            "{}",
        ]);
        assert_eq!(
            p.declared(),
            Some(PhaseSet::REQUEST | PhaseSet::RESPONSE_BODY),
            "a name inside a body (one token) is not a handler"
        );
        assert_eq!(Phases::of(&[]).declared(), Some(PhaseSet::empty()));
        assert_eq!(Phases::ALL.declared(), None);
    }
}
