//! Outbound HTTP from plugins: the gateway implements [`Upstreams`] over its upstream clusters, each
//! call made by [`callout`].

use crate::upstream::Cluster;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;
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

/// Sends plugin callouts to named upstreams. The gateway implements it over its clusters (with
/// [`callout`]), `gateway plugin test` with answers from a fixture file. The future must be
/// `'static`: it is spawned and outlives the host call that started it.
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

/// Sends one callout to an endpoint of `cluster` (picked by its balancer, over its pooled client) and
/// reads the whole response within `timeout`; the outcome counts for the endpoint's passive health.
pub async fn callout(
    cluster: &Cluster,
    req: http::Request<Bytes>,
    timeout: Duration,
) -> Result<http::Response<Bytes>, CalloutError> {
    let idx = cluster
        .policy
        .pick(&cluster.endpoints, None, None)
        .ok_or_else(|| {
            CalloutError::Failed(format!(
                "no healthy endpoint in upstream `{}`",
                cluster.name
            ))
        })?;
    let ep = cluster.endpoints[idx].clone();
    let (mut parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = format!("{}://{}{pq}", cluster.scheme, ep.address)
        .parse()
        .map_err(|e| CalloutError::BadRequest(format!("{e}")))?;
    parts.version = match cluster.protocol {
        crate::config::Protocol::Http1 => http::Version::HTTP_11,
        crate::config::Protocol::Http2 => http::Version::HTTP_2,
    };
    let req = http::Request::from_parts(parts, crate::body::full(body));
    let exchange = async {
        let resp = cluster
            .client
            .send(idx, req)
            .await
            .map_err(|e| CalloutError::Failed(e.to_string()))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| CalloutError::Failed(e.to_string()))?
            .to_bytes();
        Ok(http::Response::from_parts(parts, body))
    };
    let result = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| CalloutError::Timeout)?;
    ep.record(result.is_ok(), &cluster.passive);
    result
}
