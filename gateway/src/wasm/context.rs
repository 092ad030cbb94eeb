//! What one loaded plugin's calls need, whichever its ABI: [`PluginCtx`] holds its name, the host
//! core, its grants (from `capabilities`, checked for both ABIs) and its sandbox (limits, health,
//! admission). One per plugin, shared by every instance's store behind an `Arc`; each ABI adds only
//! what its wire format needs (Proxy-Wasm: the VM configuration and the VM's namespace).

use crate::config::{self, PluginAbi};
use crate::host::{CalloutError, Grants, HostCore};
use crate::wasm::sandbox::Sandbox;
use crate::wasm::WasmEngine;
use std::sync::Arc;

/// One plugin's context, for both ABIs.
pub(crate) struct PluginCtx {
    /// The plugin's name (logs, metrics, errors).
    pub(crate) name: Arc<str>,
    /// Shared data, queues, metrics and outbound HTTP.
    pub(crate) host: Arc<HostCore>,
    /// What the plugin may use: a component only what `capabilities` lists; a Proxy-Wasm plugin
    /// without `capabilities` any upstream ([`Grants::listed_or_any_upstream`]).
    pub(crate) grants: Grants,
    /// Limits, health and admission.
    pub(crate) sandbox: Sandbox,
}

impl PluginCtx {
    /// The context of plugin `cfg` speaking `abi`.
    pub(crate) fn new(
        cfg: &config::Plugin,
        abi: PluginAbi,
        engine: Arc<WasmEngine>,
        host: Arc<HostCore>,
    ) -> Arc<PluginCtx> {
        let name: Arc<str> = Arc::from(cfg.name.as_str());
        let grants = match abi {
            PluginAbi::Component => Grants::listed(cfg.capabilities.as_ref()),
            PluginAbi::ProxyWasm => Grants::listed_or_any_upstream(cfg.capabilities.as_ref()),
        };
        Arc::new(PluginCtx {
            sandbox: Sandbox::new(name.clone(), engine, &cfg.limits),
            name,
            host,
            grants,
        })
    }

    /// Whether the plugin may send a callout to `upstream` now (granted, and it exists); a refusal
    /// is logged.
    pub(crate) fn callout_allowed(&self, upstream: &str) -> Result<(), CalloutError> {
        self.host
            .callout_allowed(&self.name, &self.grants, upstream)
    }

    /// Whether the plugin may check credentials and authenticate requests (`what` it tried); a
    /// refusal is logged.
    pub(crate) fn consumers_allowed(&self, what: &str) -> bool {
        let allowed = self.grants.consumers();
        if !allowed {
            tracing::warn!(
                plugin = %self.name,
                call = what,
                "denied: consumer credentials and authentication need `capabilities.consumers: true`"
            );
        }
        allowed
    }
}
