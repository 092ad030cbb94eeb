//! Outbound HTTP from plugins, for both ABIs: what a plugin is granted ([`Grants`]), building its
//! request ([`callout_request`]), and starting it within its timeout ([`HostCore::callout`]). The
//! gateway implements [`Upstreams`] over its upstream clusters, each call sent by [`callout`].

use super::HostCore;
use crate::body::Body;
use crate::config::PluginCapabilities;
use crate::upstream::Cluster;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::BodyExt;
use std::future::Future;
use std::time::Duration;

/// Longest callout timeout; a timeout of 0 means this. Default: 60s.
pub const MAX_CALLOUT_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a callout got no response.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CalloutError {
    /// The plugin is not granted this upstream (`capabilities.upstreams`).
    #[error("upstream `{0}` is not granted to this plugin")]
    NotGranted(String),
    /// No upstream of that name exists.
    #[error("unknown upstream `{0}`")]
    UnknownUpstream(String),
    /// The request was malformed (missing `:method`, `:path` or `:authority`, bad header).
    #[error("bad callout request: {0}")]
    BadRequest(String),
    /// This host does not offer the call (a streaming exchange, such as gRPC, where only whole
    /// answers are offered).
    #[error("unsupported: {0}")]
    Unsupported(String),
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

    /// Sends `req` to `upstream`. `timeout` is the callout's (for the upstream's own bookkeeping);
    /// [`HostCore::callout`] bounds the whole call by it, whatever the implementation does.
    fn call(
        &self,
        upstream: &str,
        req: http::Request<Bytes>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<http::Response<Bytes>, CalloutError>>;

    /// Starts a streaming HTTP/2 exchange with `upstream` (gRPC): `req`'s body is sent as it comes,
    /// the response's body (trailers included) is read by the caller; no timeout of its own. Hosts
    /// that only answer whole responses do not offer it.
    fn stream(
        &self,
        upstream: &str,
        _req: http::Request<Body>,
    ) -> BoxFuture<'static, Result<http::Response<Body>, CalloutError>> {
        let e = CalloutError::Unsupported(format!(
            "streaming calls (gRPC) to `{upstream}` are not offered by this host"
        ));
        Box::pin(async move { Err(e) })
    }
}

/// Picks an endpoint of `cluster` (by its balancer) for a callout and points `parts` at it: the URI
/// gets the cluster's scheme and `authority` (the endpoint's address when `None`), the version the
/// cluster's protocol.
fn aim(
    cluster: &Cluster,
    parts: &mut http::request::Parts,
    authority: Option<&str>,
) -> Result<usize, CalloutError> {
    let idx = cluster
        .policy
        .pick(&cluster.endpoints, None, None)
        .ok_or_else(|| {
            CalloutError::Failed(format!(
                "no healthy endpoint in upstream `{}`",
                cluster.name
            ))
        })?;
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = authority.unwrap_or(&cluster.endpoints[idx].address);
    parts.uri = format!("{}://{authority}{pq}", cluster.scheme)
        .parse()
        .map_err(|e| CalloutError::BadRequest(format!("{e}")))?;
    parts.version = match cluster.protocol {
        crate::config::Protocol::Http1 => http::Version::HTTP_11,
        crate::config::Protocol::Http2 => http::Version::HTTP_2,
    };
    Ok(idx)
}

/// The most bytes of a callout's response body the host reads (the plugin gets it whole): a bigger
/// answer fails that call, so that callouts in flight (up to 32 per `send-all`) cannot make the
/// host hold unbounded bodies before the plugin's own memory limit could apply. Default: 16 MiB.
pub const MAX_CALLOUT_RESPONSE: usize = 16 * 1024 * 1024;

/// Sends one callout to an endpoint of `cluster` (picked by its balancer, over its pooled client) and
/// reads the whole response (at most [`MAX_CALLOUT_RESPONSE`] bytes of body) within `timeout`; the
/// outcome counts for the endpoint's passive health (an answer too big is the endpoint's answer,
/// not its failure).
pub async fn callout(
    cluster: &Cluster,
    req: http::Request<Bytes>,
    timeout: Duration,
) -> Result<http::Response<Bytes>, CalloutError> {
    let (mut parts, body) = req.into_parts();
    let idx = aim(cluster, &mut parts, None)?;
    let ep = cluster.endpoints[idx].clone();
    let req = http::Request::from_parts(parts, crate::body::full(body));
    let mut too_big = false;
    let exchange = async {
        let resp = cluster
            .client
            .send(idx, req)
            .await
            .map_err(|e| CalloutError::Failed(e.to_string()))?;
        let (parts, body) = resp.into_parts();
        let body = match http_body_util::Limited::new(body, MAX_CALLOUT_RESPONSE)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                too_big = true;
                return Err(CalloutError::Failed(format!(
                    "the response body is over {MAX_CALLOUT_RESPONSE} bytes"
                )));
            }
            Err(e) => return Err(CalloutError::Failed(e.to_string())),
        };
        Ok(http::Response::from_parts(parts, body))
    };
    // Bounded here as well as by `HostCore::callout` (the bound every `Upstreams` gets), so that
    // an endpoint that did not answer in time counts against its passive health.
    let result = match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(CalloutError::Timeout),
    };
    ep.record(result.is_ok() || too_big, &cluster.passive);
    result
}

/// Starts a streaming exchange (gRPC) with an endpoint of `cluster`, which must speak HTTP/2: `req`'s
/// `:authority` is kept. Reaching the endpoint and getting response headers counts for its passive
/// health; the body is the caller's to read.
pub async fn stream_callout(
    cluster: &Cluster,
    req: http::Request<Body>,
) -> Result<http::Response<Body>, CalloutError> {
    if cluster.protocol != crate::config::Protocol::Http2 {
        return Err(CalloutError::Failed(format!(
            "upstream `{}` speaks HTTP/1.1; gRPC needs `protocol: http2`",
            cluster.name
        )));
    }
    let (mut parts, body) = req.into_parts();
    let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
    let idx = aim(cluster, &mut parts, authority.as_deref())?;
    let ep = cluster.endpoints[idx].clone();
    let result = cluster
        .client
        .send(idx, http::Request::from_parts(parts, body))
        .await;
    ep.record(result.is_ok(), &cluster.passive);
    let resp = result.map_err(|e| CalloutError::Failed(e.to_string()))?;
    Ok(resp.map(crate::body::boxed))
}

/// The upstreams a plugin may call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum UpstreamGrant {
    /// Any upstream of the config (a Proxy-Wasm plugin without `capabilities`).
    Any,
    /// Only these.
    Only(Vec<String>),
}

/// What a plugin is granted beyond logs, metrics, clock and randomness, from its `capabilities`.
/// Checked by the host for both ABIs; a refusal is logged and answered with the ABI's typed error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    upstreams: UpstreamGrant,
    kv_namespace: Option<String>,
    consumers: bool,
}

impl Grants {
    /// Exactly `capabilities` (nothing without it): the grants of a component.
    pub fn listed(capabilities: Option<&PluginCapabilities>) -> Grants {
        let caps = capabilities.cloned().unwrap_or_default();
        Grants {
            upstreams: UpstreamGrant::Only(caps.upstreams),
            kv_namespace: caps.kv_namespace,
            consumers: caps.consumers,
        }
    }

    /// `capabilities` when the config lists them, otherwise every upstream: the grants of a
    /// Proxy-Wasm plugin (filters written for Envoy call clusters by name, with no grants).
    pub fn listed_or_any_upstream(capabilities: Option<&PluginCapabilities>) -> Grants {
        match capabilities {
            Some(_) => Grants::listed(capabilities),
            None => Grants {
                upstreams: UpstreamGrant::Any,
                kv_namespace: None,
                consumers: false,
            },
        }
    }

    /// Whether the plugin may send requests to `upstream`.
    pub fn upstream(&self, upstream: &str) -> bool {
        match &self.upstreams {
            UpstreamGrant::Any => true,
            UpstreamGrant::Only(list) => list.iter().any(|u| u == upstream),
        }
    }

    /// Whether the plugin may check credentials and authenticate requests as consumers.
    pub fn consumers(&self) -> bool {
        self.consumers
    }

    /// The key-value namespace the plugin may use, if any.
    pub fn kv_namespace(&self) -> Option<&str> {
        self.kv_namespace.as_deref()
    }
}

/// The timeout of a callout asked for `ms` milliseconds: 0 is [`MAX_CALLOUT_TIMEOUT`], and no
/// callout waits longer than that.
pub fn callout_timeout(ms: u64) -> Duration {
    match ms {
        0 => MAX_CALLOUT_TIMEOUT,
        ms => Duration::from_millis(ms).min(MAX_CALLOUT_TIMEOUT),
    }
}

/// The request of a callout: `method`, `path_with_query` (which starts with `/`) and `headers` as
/// the ABI read them, without hop-by-hop headers and `content-length` (the gateway frames the body
/// it sends); `authority`, when given, becomes the `host` header.
pub fn callout_request(
    method: &[u8],
    path_with_query: &[u8],
    authority: Option<&[u8]>,
    mut headers: HeaderMap,
    body: Bytes,
) -> Result<http::Request<Bytes>, CalloutError> {
    let bad = CalloutError::BadRequest;
    let method = Method::from_bytes(method)
        .map_err(|_| bad(format!("bad method `{}`", String::from_utf8_lossy(method))))?;
    if !path_with_query.starts_with(b"/") {
        return Err(bad("the path must start with `/`".into()));
    }
    let uri = http::uri::PathAndQuery::try_from(path_with_query)
        .map(http::Uri::from)
        .map_err(|e| bad(format!("bad path: {e}")))?;
    if let Some(a) = authority {
        let host = HeaderValue::from_bytes(a).map_err(|_| bad("bad `:authority`".into()))?;
        headers.insert(http::header::HOST, host);
    }
    // Hop-by-hop headers are the gateway's, as on the main request; the length is the body's.
    crate::framing::strip_for_callout(&mut headers);
    let mut req = http::Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Ok(req)
}

impl HostCore {
    /// Whether `plugin` may send a callout to `upstream` now: it is granted (a refusal is logged)
    /// and exists.
    pub fn callout_allowed(
        &self,
        plugin: &str,
        grants: &Grants,
        upstream: &str,
    ) -> Result<(), CalloutError> {
        if !grants.upstream(upstream) {
            tracing::warn!(
                plugin,
                upstream,
                "denied: outbound HTTP to an upstream not granted in `capabilities.upstreams`"
            );
            return Err(CalloutError::NotGranted(upstream.to_string()));
        }
        if !self.upstreams.has(upstream) {
            return Err(CalloutError::UnknownUpstream(upstream.to_string()));
        }
        Ok(())
    }

    /// Starts a callout that [`HostCore::callout_allowed`] allowed: `req` to `upstream`, bounded by
    /// `timeout` (from [`callout_timeout`]). The future is `'static`, to be awaited or spawned.
    pub fn callout(
        &self,
        upstream: &str,
        req: http::Request<Bytes>,
        timeout: Duration,
    ) -> impl Future<Output = Result<http::Response<Bytes>, CalloutError>> + Send + 'static {
        let fut = self.upstreams.call(upstream, req, timeout);
        async move {
            match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(CalloutError::Timeout),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_of_each_abi() {
        let caps = PluginCapabilities {
            upstreams: vec!["auth".into()],
            kv_namespace: None,
            consumers: false,
        };
        assert!(!Grants::listed(None).upstream("auth"));
        assert!(!Grants::listed(Some(&caps)).consumers());
        assert!(!Grants::listed_or_any_upstream(None).consumers());
        let consumers = PluginCapabilities {
            consumers: true,
            ..Default::default()
        };
        assert!(Grants::listed(Some(&consumers)).consumers());
        assert!(Grants::listed(Some(&caps)).upstream("auth"));
        assert!(!Grants::listed(Some(&caps)).upstream("other"));
        assert!(Grants::listed_or_any_upstream(None).upstream("other"));
        assert!(!Grants::listed_or_any_upstream(Some(&caps)).upstream("other"));
        assert!(
            !Grants::listed_or_any_upstream(Some(&PluginCapabilities::default())).upstream("auth")
        );
    }

    #[test]
    fn timeouts_are_clamped_once() {
        assert_eq!(callout_timeout(0), MAX_CALLOUT_TIMEOUT);
        assert_eq!(callout_timeout(250), Duration::from_millis(250));
        assert_eq!(callout_timeout(u64::MAX), MAX_CALLOUT_TIMEOUT);
    }

    #[test]
    fn requests_need_a_method_and_an_absolute_path() {
        let r = callout_request(
            b"POST",
            b"/a?b=1",
            Some(b"svc"),
            HeaderMap::new(),
            Bytes::new(),
        )
        .unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri(), "/a?b=1");
        assert_eq!(r.headers()["host"], "svc");
        for (m, p) in [(&b"G T"[..], &b"/"[..]), (b"GET", b"a"), (b"GET", b"/a b")] {
            let e = callout_request(m, p, None, HeaderMap::new(), Bytes::new());
            assert!(matches!(e, Err(CalloutError::BadRequest(_))), "{e:?}");
        }
    }
}
