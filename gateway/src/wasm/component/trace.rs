//! The WIT `trace` interface (since 0.1.4): attributes and events on the span of the stage call
//! in progress, through the request's trace (a no-op when it is not traced).

use super::bindings::gateway::filter::trace;
use super::state::CompState;

impl CompState {
    fn trace(&self) -> Option<&crate::telemetry::RequestTrace> {
        self.info.as_ref()?.trace.as_ref()
    }
}

impl trace::Host for CompState {
    fn set_attribute(&mut self, key: String, value: String) {
        if let Some(t) = self.trace() {
            t.stage_attribute(&key, &value);
        }
    }

    fn add_event(&mut self, name: String, attributes: Vec<(String, String)>) {
        if let Some(t) = self.trace() {
            t.stage_event(&name, &attributes);
        }
    }
}
