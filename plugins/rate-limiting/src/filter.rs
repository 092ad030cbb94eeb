//! The filter: the SDK's kv namespace as the limiter's [`Store`], the request as the key's
//! [`key::Request`], the namespace (and `policy` against its backend) checked at init, and the
//! headers of the request phase set again on whatever response comes back.

use crate::config::{self, Policy};
use crate::key;
use crate::limiter::{Store, StoreError};
use crate::policy::{Limiter, Verdict};
use gateway_plugin_sdk::{clock, consumers, facts, kv, log, metrics, Action, Error, Filter};

/// The plugin's kv namespace.
struct Kv;

fn store_error(e: Error) -> StoreError {
    match e {
        Error::VersionMismatch => StoreError::VersionMismatch,
        Error::NotANumber => StoreError::NotANumber,
        Error::Unavailable(m) => StoreError::Unavailable(m),
        other => StoreError::Failed(other.to_string()),
    }
}

impl Store for Kv {
    fn increment_with_ttl(
        &mut self,
        key: &str,
        delta: i64,
        ttl_ms: u64,
    ) -> Result<i64, StoreError> {
        kv::increment_with_ttl(key, delta, ttl_ms).map_err(store_error)
    }

    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        kv::get(key)
            .map(|e| e.map(|e| (e.value, e.version)))
            .map_err(store_error)
    }

    fn compare_and_swap(
        &mut self,
        key: &str,
        version: u32,
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<u32, StoreError> {
        kv::compare_and_swap(key, version, value, Some(ttl_ms)).map_err(store_error)
    }
}

/// The request as the key sees it.
struct Incoming<'a> {
    req: &'a gateway_plugin_sdk::Request<'a>,
    facts: &'a facts::Facts,
}

impl key::Request for Incoming<'_> {
    fn route(&self) -> String {
        self.facts.route.clone()
    }
    fn client_address(&self) -> String {
        self.facts.client_address.clone()
    }
    fn consumer(&self) -> Option<String> {
        consumers::current().map(|c| c.name)
    }
    fn header(&self, name: &str) -> Option<String> {
        self.req.header(name)
    }
    fn path(&self) -> String {
        self.req.path()
    }
}

/// The check that the plugin has a kv namespace, and of `policy` against its backend. Without a
/// namespace every request would fail to count, so the config is refused rather than left to
/// `on_store_error`.
fn check_namespace(policy: Option<Policy>) -> Result<(), String> {
    let backend = match kv::backend() {
        Ok(backend) => backend,
        Err(Error::Denied(why)) => {
            return Err(format!(
                "config: the counters need a kv namespace and the plugin has none ({why}); \
                 grant one in the plugin entry's capabilities.kv_namespace"
            ))
        }
        Err(e) if policy.is_some() => {
            return Err(format!(
                "policy: the backend of the plugin's kv namespace is unknown ({e})"
            ))
        }
        Err(_) => return Ok(()),
    };
    match (policy, backend) {
        (None, _)
        | (Some(Policy::Local), kv::Backend::Local)
        | (Some(Policy::Cluster), kv::Backend::Redis) => Ok(()),
        (Some(Policy::Cluster), _) => Err(
            "policy: cluster needs a kv namespace whose backend is redis; \
             configure one (kv_namespaces: {NAME: {backend: redis, ...}}) and grant it in the \
             plugin entry (capabilities: {kv_namespace: NAME}), or use policy: local"
                .into(),
        ),
        (Some(Policy::Local), _) => Err(
            "policy: local needs a kv namespace whose backend is local, and \
             the plugin's namespace is shared through redis; use policy: cluster, or leave \
             policy out"
                .into(),
        ),
    }
}

/// The filter of one route.
#[derive(Default)]
pub struct RateLimitingFilter {
    /// The route's limiter (set by `init`).
    limiter: Option<Limiter>,
    /// The headers the response gets (set by each request).
    headers: Vec<(String, String)>,
}

// The export of the component (the `impl` inside it tells the gateway which handlers there are).
gateway_plugin_sdk::export_filter! {
    impl Filter for RateLimitingFilter {
        fn init(&mut self, config: &str) -> Result<(), String> {
            let config = config::parse(config)?;
            check_namespace(config.policy)?;
            self.limiter = Some(Limiter::new(config));
            Ok(())
        }

        fn on_request(&mut self, req: &gateway_plugin_sdk::Request) -> Action {
            self.headers.clear();
            let Some(limiter) = &mut self.limiter else {
                return Action::Continue;
            };
            let facts = facts::get();
            // The id the gateway logs and writes in its own error bodies; the numeric one of `facts`
            // where the request has none (as in `gateway plugin test`).
            let id = req
                .header("x-request-id")
                .unwrap_or_else(|| facts.request_id.to_string());
            let incoming = Incoming { req, facts: &facts };
            let (verdict, outcome) = limiter.check(&incoming, &id, clock::now_ms(), &mut Kv, log::warn);
            let _ = metrics::counter_add(outcome.metric(), 1);
            match verdict {
                Verdict::Continue { headers } => {
                    self.headers = headers;
                    Action::Continue
                }
                Verdict::Respond {
                    status,
                    headers,
                    body,
                } => Action::Respond {
                    status,
                    headers,
                    body,
                },
            }
        }

        fn on_response(&mut self, resp: &gateway_plugin_sdk::Response) -> Action {
            for (name, value) in &self.headers {
                if let Err(e) = resp.set_header(name, value) {
                    log::debug(&format!("rate-limiting: cannot set {name}: {e}"));
                }
            }
            Action::Continue
        }
    }
}
