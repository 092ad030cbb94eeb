//! ip-restriction: allow and deny lists of client addresses for a route (APISIX's and Kong's
//! `ip-restriction`). A client in a `deny` entry, or outside every `allow` entry when `allow` is
//! given, is answered with a JSON refusal (403 by default) and the upstream is not called. The
//! client's address is the gateway's (`facts`), never a header. See README.md.
//!
//! ```yaml
//! filters:
//!   - plugin: ip-restriction
//!     config: {allow: ["10.0.0.0/8", "2001:db8::/32"], deny: ["10.0.13.0/24"]}
//! ```

mod config;
mod policy;

use config::IpRestriction;
use gateway_plugin_sdk::{export_filter, facts, log, metrics, Action, Filter, Request};
use policy::Verdict;

#[derive(Default)]
struct IpRestrictionFilter {
    /// The route's policy (set by `init`).
    policy: Option<IpRestriction>,
}

fn count(outcome: &str) {
    let _ = metrics::counter_add(&format!("ip_restriction_{outcome}"), 1);
}

export_filter! {
    impl Filter for IpRestrictionFilter {
        fn init(&mut self, config: &str) -> Result<(), String> {
            self.policy = Some(config::parse(config)?);
            Ok(())
        }

        fn on_request(&mut self, req: &Request) -> Action {
            let Some(policy) = &self.policy else {
                return Action::Continue;
            };
            let facts = facts::get();
            let (why, level): (String, fn(&str)) = match policy.verdict(&facts.client_address) {
                Verdict::Allow => {
                    count("allowed");
                    return Action::Continue;
                }
                Verdict::Denied(net) => (format!("in the deny entry {net}"), log::debug),
                Verdict::NotAllowed => ("in no allow entry".into(), log::debug),
                // The gateway always knows its client; an address it cannot read is worth a look.
                Verdict::Unknown => ("not an IP address".into(), log::warn),
            };
            count("denied");
            // The id the gateway logs and writes in its own error bodies; the numeric one of `facts`
            // where the request has none (outside the gateway's proxy, as in `gateway plugin test`).
            let id = req
                .header("x-request-id")
                .unwrap_or_else(|| facts.request_id.to_string());
            level(&format!(
                "ip-restriction: request {id} from `{}` refused: {why}",
                facts.client_address
            ));
            let (status, headers, body) = policy.refusal(&id);
            Action::Respond {
                status,
                headers,
                body,
            }
        }
    }
}
