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

/// A 500 for a request acl could not handle (a header edit refused, no config; neither expected),
/// logged. It fails closed: the request does not go on with groups acl could not set right.
fn failed(id: &str, why: &str) -> Action {
    log::error(&format!("acl: request {id}: {why}"));
    count("failed");
    plugin_auth::refuse(
        500,
        plugin_auth::INTERNAL_ERROR,
        "the request could not be authorized",
        id,
        Vec::new(),
    )
}

/// Tells the upstream the consumer's groups as the gateway knows them, whoever wrote the header
/// before (a client, or an auth plugin that does not write it); none with `hide_groups_header`.
fn set_groups(
    acl: &Acl,
    req: &Request,
    consumer: &consumers::Consumer,
) -> Result<(), gateway_plugin_sdk::Error> {
    req.remove_header(GROUPS_HEADER)?;
    if !acl.hide_groups_header && !consumer.groups.is_empty() {
        req.set_header(GROUPS_HEADER, &consumer.groups.join(", "))?;
    }
    Ok(())
}

export_filter! {
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
                // Never expected (the gateway calls `init` first); access control fails closed.
                return failed(&plugin_auth::request_id(req), "no config");
            };
            let consumer = consumers::current();
            let verdict = acl.verdict(consumer.as_ref());
            let why = match (&verdict, &consumer) {
                (Verdict::Allow, Some(c)) => {
                    if let Err(e) = set_groups(acl, req, c) {
                        let id = plugin_auth::request_id(req);
                        return failed(&id, &format!("cannot change {GROUPS_HEADER}: {e}"));
                    }
                    count("allowed");
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
}
