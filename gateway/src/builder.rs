//! The one way to a runtime that can serve: the config compiled (`Runtime::build_with`, off the async
//! workers), then every plugin loaded and configured with each route's config and the filter stages
//! attached (`PluginHost::attach`). Start, `gateway check` and every reload go through it, so what
//! `check` accepts is what a start or a reload serves.

use crate::config::{Config, ConfigError, Source};
use crate::metrics::Metrics;
use crate::plugins::{AttachReport, PluginHost};
use crate::runtime::Runtime;
use std::sync::Arc;

/// Builds complete runtimes for one plugin host.
pub struct RuntimeBuilder<'a> {
    host: &'a PluginHost,
    metrics: Arc<Metrics>,
    previous: Option<Arc<Runtime>>,
}

/// A runtime ready to serve, and what attaching its plugins did.
pub struct Built {
    /// The runtime: routes, clusters and filter stages.
    pub runtime: Runtime,
    /// Plugins and routes reused or rebuilt.
    pub plugins: AttachReport,
}

impl<'a> RuntimeBuilder<'a> {
    /// A builder whose runtimes load plugins through `host` and report to `metrics`.
    pub fn new(host: &'a PluginHost, metrics: Arc<Metrics>) -> RuntimeBuilder<'a> {
        RuntimeBuilder {
            host,
            metrics,
            previous: None,
        }
    }

    /// Builds a runtime that takes over from `previous` what did not change (clusters with their
    /// connections and health; plugins and filter stages with their instances).
    pub fn replacing(mut self, previous: Arc<Runtime>) -> RuntimeBuilder<'a> {
        self.previous = Some(previous);
        self
    }

    /// Compiles and validates `cfg` completely, plugins included. Nothing serves it yet: the caller
    /// swaps it in and calls [`Runtime::start`]. On error nothing has changed.
    pub async fn build(self, cfg: Config, src: &Source) -> Result<Built, ConfigError> {
        let (metrics, previous, from) = (self.metrics, self.previous, src.clone());
        // Compiling reads certificate and key files and builds routers: off the async workers.
        let runtime = tokio::task::spawn_blocking(move || {
            Runtime::build_with(cfg, &from, &metrics, previous.as_deref())
        })
        .await
        .map_err(|e| src.err("(build)", format!("the build stopped: {e}")))??;
        let plugins = self.host.attach(src, &runtime).await?;
        Ok(Built { runtime, plugins })
    }
}
