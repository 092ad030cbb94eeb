//! Plugin callouts for tests that drive filters without a gateway: named [`MockUpstream`]s, each
//! reached through a cluster built from config and the gateway's own callout client
//! ([`gateway::host::callout`]), so the tests exercise the path the proxy takes.

use crate::config::{GatewayConfig, Upstream};
use crate::mock::MockUpstream;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use gateway::host::{CalloutError, Upstreams};
use gateway::upstream::Cluster;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Named mock upstreams that plugins can call out to; they stop when this is dropped.
pub struct MockUpstreams {
    clusters: HashMap<String, (Arc<Cluster>, MockUpstream)>,
}

impl MockUpstreams {
    /// Starts one [`MockUpstream`] per name, each the only endpoint of the upstream of that name.
    pub async fn start(names: &[&str]) -> MockUpstreams {
        let mut clusters = HashMap::new();
        for name in names {
            let mock = MockUpstream::start(name).await;
            let cfg = GatewayConfig::new()
                .upstream(Upstream::new(name).endpoint(mock.addr))
                .parse();
            let cluster = Arc::new(Cluster::new(&cfg.upstreams[0], Default::default(), None));
            clusters.insert(name.to_string(), (cluster, mock));
        }
        MockUpstreams { clusters }
    }

    /// The mock behind the upstream `name`.
    pub fn mock(&self, name: &str) -> &MockUpstream {
        &self.clusters[name].1
    }
}

impl Upstreams for MockUpstreams {
    fn has(&self, upstream: &str) -> bool {
        self.clusters.contains_key(upstream)
    }

    fn call(
        &self,
        upstream: &str,
        req: http::Request<Bytes>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<http::Response<Bytes>, CalloutError>> {
        let cluster = self.clusters.get(upstream).map(|(c, _)| c.clone());
        let name = upstream.to_owned();
        Box::pin(async move {
            let cluster = cluster.ok_or(CalloutError::UnknownUpstream(name))?;
            gateway::host::callout(&cluster, req, timeout).await
        })
    }

    fn stream(
        &self,
        upstream: &str,
        req: http::Request<gateway::body::Body>,
    ) -> BoxFuture<'static, Result<http::Response<gateway::body::Body>, CalloutError>> {
        let cluster = self.clusters.get(upstream).map(|(c, _)| c.clone());
        let name = upstream.to_owned();
        Box::pin(async move {
            let cluster = cluster.ok_or(CalloutError::UnknownUpstream(name))?;
            gateway::host::stream_callout(&cluster, req).await
        })
    }
}
