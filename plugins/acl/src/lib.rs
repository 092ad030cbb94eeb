//! acl: allow and deny lists of consumers for a route (Kong's `acl`, APISIX's
//! `consumer-restriction`). An entry names a consumer or a group (`admins`), or only one of them
//! (`consumer:alice`, `group:admins`); a request whose consumer matches a `deny` entry, or no `allow`
//! entry when `allow` is given, is answered 403; a request that no earlier filter authenticated is
//! answered 401. The consumer is the one an auth plugin before this one on the route authenticated
//! (`consumers::current`). See README.md.
//!
//! ```yaml
//! filters:
//!   - plugin: key-auth
//!     config: {}
//!   - plugin: acl
//!     config: {allow: [admins, ops], deny: [group:suspended]}
//! ```

mod config;
mod policy;

use config::Acl;
use gateway_plugin_sdk::{consumers, export_filter, log, metrics, Action, Filter, Request};
use policy::Verdict;

/// The header that tells the upstream the consumer's groups (the one the auth plugins write).
const GROUPS_HEADER: &str = "x-consumer-groups";

#[derive(Default)]
struct AclFilter {
    /// The route's policy (set by `init`).
    acl: Option<Acl>,
}

fn count(outcome: &str) {
    let _ = metrics::counter_add(&format!("acl_{outcome}"), 1);
}

/// Logs a failed header edit (not expected: the name is fixed and the values are the consumer's).
fn edited(r: Result<(), gateway_plugin_sdk::Error>) {
    if let Err(e) = r {
        log::warn(&format!("acl: cannot change x-consumer-groups: {e}"));
    }
}

impl Filter for AclFilter {
    fn init(&mut self, config: &str) -> Result<(), String> {
        let acl = config::parse(config)?;
        // A `consumer:` entry is explicit: a name that is not in the config is a mistake (a
        // misspelt deny entry would refuse nobody).
        for (path, name) in acl.named_consumers() {
            if consumers::get(name).is_none() {
                return Err(format!("{path}: no consumer is called `{name}`"));
            }
        }
        self.acl = Some(acl);
        Ok(())
    }

    fn on_request(&mut self, req: &Request) -> Action {
        let Some(acl) = &self.acl else {
            return Action::Continue;
        };
        let consumer = consumers::current();
        let verdict = acl.verdict(consumer.as_ref());
        let why = match (&verdict, &consumer) {
            (Verdict::Allow, Some(c)) => {
                count("allowed");
                // The upstream learns the groups as the gateway knows them, whoever wrote the
                // header before (a client, or an auth plugin that does not write it).
                edited(req.remove_header(GROUPS_HEADER));
                if !acl.hide_groups_header && !c.groups.is_empty() {
                    edited(req.set_header(GROUPS_HEADER, &c.groups.join(", ")));
                }
                return Action::Continue;
            }
            (Verdict::Denied(e), Some(c)) => {
                format!("consumer `{}` matches the deny entry `{e}`", c.name)
            }
            (Verdict::NotAllowed, Some(c)) => {
                format!("consumer `{}` matches no allow entry", c.name)
            }
            _ => "no consumer (no auth plugin before acl authenticated the request)".to_owned(),
        };
        let (status, code, message) = policy::refusal(&verdict);
        count(if status == 401 {
            "unauthenticated"
        } else {
            "forbidden"
        });
        let id = plugin_auth::request_id(req);
        log::debug(&format!("acl: request {id} refused: {why}"));
        plugin_auth::refuse(status, code, message, &id, Vec::new())
    }
}

export_filter!(AclFilter);
