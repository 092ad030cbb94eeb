//! Outbound HTTP from plugins: the gateway implements [`Upstreams`] over its upstream clusters.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use std::time::Duration;

/// Why a callout got no response.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CalloutError {
    /// No upstream of that name exists (or the plugin may not call it).
    #[error("unknown upstream `{0}`")]
    UnknownUpstream(String),
    /// The request was malformed (missing `:method`, `:path` or `:authority`, bad header).
    #[error("bad callout request: {0}")]
    BadRequest(String),
    /// The timeout passed before a response arrived.
    #[error("callout timed out")]
    Timeout,
    /// The upstream could not be reached or failed mid-response.
    #[error("callout failed: {0}")]
    Failed(String),
}

/// Sends plugin callouts to named upstreams. The gateway implements it over its clusters; tests use a
/// small client. The future must be `'static`: it is spawned and outlives the host call that started it.
pub trait Upstreams: Send + Sync {
    /// Whether `upstream` exists, so that a call to an unknown one fails at dispatch, as in Envoy.
    fn has(&self, upstream: &str) -> bool;

    /// Sends `req` to `upstream` and waits at most `timeout` for the whole response.
    fn call(
        &self,
        upstream: &str,
        req: http::Request<Bytes>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<http::Response<Bytes>, CalloutError>>;
}
