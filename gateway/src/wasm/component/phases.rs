//! The WIT `phases` interface (since 0.1.5): `init` declares the handlers the filter has, and the
//! host calls only those (no guest entry, no instance taken, no body buffered for a phase the filter
//! does not use). A component that never declares (built against 0.1.0 to 0.1.4) gets every handler.

use super::bindings::gateway::filter::phases::{self, PhaseSet};
use super::bindings::gateway::filter::types::HostError;
use super::state::CompState;

impl phases::Host for CompState {
    fn declare(&mut self, used: PhaseSet) -> Result<(), HostError> {
        if !self.initializing {
            return Err(HostError::WrongPhase(
                "phases.declare is possible only in `init`".into(),
            ));
        }
        self.declared = Some(used);
        Ok(())
    }
}

/// The handlers a filter has, as the host uses them on every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Interest {
    pub(crate) request: bool,
    pub(crate) request_body: bool,
    pub(crate) response: bool,
    pub(crate) response_body: bool,
}

impl Interest {
    /// What a component that declared nothing gets: every handler.
    pub(crate) const ALL: Interest = Interest {
        request: true,
        request_body: true,
        response: true,
        response_body: true,
    };

    /// From what `init` declared (every handler when it declared nothing).
    pub(crate) fn from_declared(declared: Option<PhaseSet>) -> Interest {
        match declared {
            None => Interest::ALL,
            Some(p) => Interest {
                request: p.contains(PhaseSet::REQUEST),
                request_body: p.contains(PhaseSet::REQUEST_BODY),
                response: p.contains(PhaseSet::RESPONSE),
                response_body: p.contains(PhaseSet::RESPONSE_BODY),
            },
        }
    }
}
