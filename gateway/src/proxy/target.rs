//! Where a request to an upstream goes: the path and query it is sent with, its HTTP version and
//! authority for the cluster's protocol, and its URI. Shared by forwarding and the mirror; it knows
//! nothing of routes.

use crate::config::Protocol;
use crate::errors::ProxyError;
use crate::upstream::EndpointState;
use http::header;
use http::uri::{PathAndQuery, Scheme};
use http::{Uri, Version};

/// The path and query sent upstream: the request's own (shared, not copied) when the route does not
/// rewrite it, else the rewritten text.
pub(super) enum UpstreamPath {
    Same(PathAndQuery),
    Text(String),
}

impl UpstreamPath {
    pub(super) fn as_str(&self) -> &str {
        match self {
            UpstreamPath::Same(pq) => pq.as_str(),
            UpstreamPath::Text(s) => s,
        }
    }
}

/// The HTTP version a request to a cluster of `protocol` is sent with, and its authority: over HTTP/2
/// the request's authority is `:authority`, with no `host` header beside it (RFC 9113 8.3.1), as
/// Envoy sends it (taken out of `headers`); over HTTP/1 it is the Host header (`None` here).
pub(super) fn version_and_authority(
    protocol: Protocol,
    headers: &mut http::HeaderMap,
) -> (Version, Option<http::uri::Authority>) {
    match protocol {
        Protocol::Http1 => (Version::HTTP_11, None),
        Protocol::Http2 => {
            let authority = headers
                .remove(header::HOST)
                .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok());
            (Version::HTTP_2, authority)
        }
    }
}

/// `scheme://authority/path?query`, from parts parsed once where possible; for HTTP/1 the request's
/// own path and query alone when they go unchanged (the origin form the upstream client sends
/// anyway). `authority`: the request's, for HTTP/2 (else the endpoint's address).
pub(super) fn upstream_uri(
    scheme: &'static str,
    version: Version,
    ep: &EndpointState,
    authority: Option<&http::uri::Authority>,
    path: &UpstreamPath,
) -> Result<Uri, ProxyError> {
    if let (Version::HTTP_11, UpstreamPath::Same(pq)) = (version, path) {
        return Ok(Uri::from(pq.clone()));
    }
    let invalid = |e: &dyn std::fmt::Display| ProxyError::Protocol {
        endpoint: ep.address.clone(),
        detail: format!("cannot build the upstream URI: {e}"),
    };
    let known = match scheme {
        "http" => Some(Scheme::HTTP),
        "https" => Some(Scheme::HTTPS),
        _ => None,
    };
    let authority = authority.or(ep.authority.as_ref());
    if let (Some(s), Some(authority), UpstreamPath::Same(pq)) = (known, authority, path) {
        let mut p = http::uri::Parts::default();
        p.scheme = Some(s);
        p.authority = Some(authority.clone());
        p.path_and_query = Some(pq.clone());
        return Uri::from_parts(p).map_err(|e| invalid(&e));
    }
    let authority = authority.map_or(ep.address.as_str(), |a| a.as_str());
    format!("{scheme}://{authority}{}", path.as_str())
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&e))
}
