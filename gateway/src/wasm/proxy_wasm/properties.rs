//! `proxy_get_property` / `proxy_set_property`: the attributes Envoy offers that make sense here, and
//! what plugins set themselves. Values are encoded as Envoy encodes them: strings as bytes, integers
//! as 8-byte little-endian, booleans as one byte, times and durations as nanoseconds (int64), maps
//! in the Proxy-Wasm map format.

use super::abi::{serialize_map, Status};
use super::state::VmState;
use crate::host::Phase;
use bytes::Bytes;
use http::header::{HeaderMap, HOST, REFERER, USER_AGENT};
use std::net::SocketAddr;
use std::time::UNIX_EPOCH;

fn int(v: i64) -> Bytes {
    Bytes::copy_from_slice(&v.to_le_bytes())
}

fn text(s: impl AsRef<str>) -> Bytes {
    Bytes::copy_from_slice(s.as_ref().as_bytes())
}

fn header_map(h: &HeaderMap) -> Bytes {
    let pairs: Vec<(&[u8], &[u8])> = h
        .iter()
        .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes()))
        .collect();
    Bytes::from(serialize_map(&pairs))
}

fn map_or_field(h: &HeaderMap, field: Option<&str>) -> Option<Bytes> {
    match field {
        None => Some(header_map(h)),
        Some(name) => h.get(name).map(|v| Bytes::copy_from_slice(v.as_bytes())),
    }
}

/// The request's host: its `Host` header, else its URI's authority.
fn host_of(r: &crate::filter::RequestHead) -> Option<Bytes> {
    r.headers
        .get(HOST)
        .map(|v| Bytes::copy_from_slice(v.as_bytes()))
        .or_else(|| r.uri.authority().map(|a| text(a.as_str())))
}

fn addr(a: SocketAddr, part: &str) -> Option<Bytes> {
    match part {
        "address" => Some(text(a.to_string())),
        "port" => Some(int(a.port() as i64)),
        _ => None,
    }
}

/// The property at `path` (segments separated by NUL) for the effective context.
pub fn get(state: &VmState, path: &[u8]) -> Result<Bytes, Status> {
    let segments: Vec<String> = path
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let effective = state.effective;
    let http = state.https.get(&effective);
    let root_id = state.root_of_effective();
    let root = root_id.and_then(|r| state.roots.get(&r));
    let shared = &state.shared;

    let builtin: Option<Bytes> = match segs.as_slice() {
        ["plugin_name"] => Some(text(&*shared.ctx.name)),
        ["plugin_vm_id"] => Some(text(&*shared.ctx.name)),
        ["plugin_root_id"] => root.map(|r| text(&*r.route)),
        ["route_name"] | ["xds", "route_name"] => root.map(|r| text(&*r.route)),
        ["cluster_name"] | ["xds", "cluster_name"] | ["upstream", "name"] => {
            http.and_then(|h| h.info.upstream.as_deref().map(text))
        }
        ["request", rest @ ..] => {
            let h = http.ok_or(Status::NotFound)?;
            let req = h.request();
            match rest {
                ["path"] => req.and_then(|r| r.uri.path_and_query().map(|p| text(p.as_str()))),
                ["url_path"] => req.map(|r| text(r.uri.path())),
                ["query"] => req.map(|r| text(r.uri.query().unwrap_or(""))),
                ["host"] => req.and_then(host_of),
                ["scheme"] => Some(text(
                    req.and_then(|r| r.uri.scheme_str())
                        .unwrap_or(h.info.scheme),
                )),
                ["method"] => req.map(|r| text(r.method.as_str())),
                ["headers"] => req.map(|r| header_map(&r.headers)),
                ["headers", name] => req.and_then(|r| map_or_field(&r.headers, Some(name))),
                ["referer"] => req.and_then(|r| map_or_field(&r.headers, Some(REFERER.as_str()))),
                ["useragent"] => {
                    req.and_then(|r| map_or_field(&r.headers, Some(USER_AGENT.as_str())))
                }
                ["id"] => Some(
                    req.and_then(|r| map_or_field(&r.headers, Some("x-request-id")))
                        .unwrap_or_else(|| text(h.info.id.to_string())),
                ),
                ["protocol"] => Some(text(format!("HTTP/{}", h.info.protocol))),
                ["time"] => Some(int(h
                    .started_wall
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as i64)
                    .unwrap_or(0))),
                ["duration"] => Some(int(h
                    .ended
                    .unwrap_or_else(std::time::Instant::now)
                    .duration_since(h.started)
                    .as_nanos() as i64)),
                ["size"] => Some(int(h.req_body_size as i64)),
                ["trailers"] => h.data.req_trailers.as_ref().map(header_map),
                _ => None,
            }
        }
        ["response", rest @ ..] => {
            let h = http.ok_or(Status::NotFound)?;
            let resp = h.response();
            match rest {
                ["code"] => resp.map(|r| int(r.status.as_u16() as i64)),
                ["code_details"] => resp.map(|_| text("via_upstream")),
                ["headers"] => resp.map(|r| header_map(&r.headers)),
                ["headers", name] => resp.and_then(|r| map_or_field(&r.headers, Some(name))),
                ["trailers"] => h.data.resp_trailers.as_ref().map(header_map),
                ["size"] => Some(int(h.resp_body_size as i64)),
                ["grpc_status"] => resp.and_then(|r| {
                    r.headers
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok()?.parse::<i64>().ok())
                        .map(int)
                }),
                _ => None,
            }
        }
        ["connection_id"] => http.map(|h| int(h.info.connection as i64)),
        // Whom a filter authenticated the request as (text; groups comma-separated).
        ["consumer", part] => {
            let c = http.and_then(|h| h.info.identity.as_ref()?.current());
            match *part {
                "name" => c.map(|c| text(&*c.name)),
                "groups" => c.map(|c| text(c.groups.join(","))),
                _ => None,
            }
        }
        // The endpoint that answered, once its response is here (`host:port` as configured).
        ["upstream", "address"] => http
            .and_then(|h| h.response())
            .and_then(|r| r.upstream.as_deref().map(text)),
        ["upstream", "port"] => http
            .and_then(|h| h.response())
            .and_then(|r| r.upstream.as_deref())
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse::<i64>().ok())
            .map(int),
        // Kong Gateway's names for the same facts, as text (ngx_wasm_module answers in text).
        ["kong", rest @ ..] => {
            let h = http.ok_or(Status::NotFound)?;
            let req = h.request();
            match rest {
                ["route_id"] => root.map(|r| text(&*r.route)),
                ["service_id"] => h.info.upstream.as_deref().map(text),
                ["client", "protocol"] | ["request", "forwarded_scheme"] => {
                    Some(text(h.info.scheme))
                }
                ["request", "port"] | ["request", "forwarded_port"] => {
                    Some(text(h.info.local.port().to_string()))
                }
                ["request", "forwarded_host"] => req.and_then(host_of),
                _ => None,
            }
        }
        // nginx variables, as Kong's ngx_wasm_module exposes them: text.
        ["ngx", var] => {
            let h = http.ok_or(Status::NotFound)?;
            let req = h.request();
            match *var {
                "remote_addr" => Some(text(h.info.peer.ip().to_string())),
                "remote_port" => Some(text(h.info.peer.port().to_string())),
                "server_addr" => Some(text(h.info.local.ip().to_string())),
                "server_port" => Some(text(h.info.local.port().to_string())),
                "scheme" => Some(text(h.info.scheme)),
                "server_protocol" => Some(text(format!("HTTP/{}", h.info.protocol))),
                "request_method" => req.map(|r| text(r.method.as_str())),
                "request_uri" => req.and_then(|r| r.uri.path_and_query().map(|p| text(p.as_str()))),
                "uri" => req.map(|r| text(r.uri.path())),
                "args" | "query_string" => req.map(|r| text(r.uri.query().unwrap_or(""))),
                "host" => req.and_then(host_of),
                "request_id" => Some(text(h.info.id.to_string())),
                v => v.strip_prefix("http_").and_then(|name| {
                    let name = name.replace('_', "-");
                    req.and_then(|r| map_or_field(&r.headers, Some(&name)))
                }),
            }
        }
        ["source", part] => http.and_then(|h| addr(h.info.peer, part)),
        ["destination", part] => http.and_then(|h| addr(h.info.local, part)),
        ["connection", rest @ ..] => {
            let h = http.ok_or(Status::NotFound)?;
            let tls = h.info.tls.as_deref();
            let peer = tls.and_then(|t| t.peer_cert.as_ref());
            // Envoy gives the first SAN of a kind, without our `KIND:` prefix.
            let first_san = |kind: &str| {
                peer.and_then(|c| c.sans.iter().find_map(|s| s.strip_prefix(kind)))
                    .map(text)
            };
            match rest {
                ["id"] => Some(int(h.info.connection as i64)),
                ["mtls"] => Some(Bytes::from_static(if peer.is_some() { &[1] } else { &[0] })),
                ["tls_version"] => tls.map(|t| text(t.version)),
                ["requested_server_name"] => tls.and_then(|t| t.server_name.as_deref().map(text)),
                ["alpn"] => tls.and_then(|t| t.alpn.as_deref().map(text)),
                ["subject_peer_certificate"] => peer.map(|c| text(&c.subject)),
                ["dns_san_peer_certificate"] => first_san("DNS:"),
                ["uri_san_peer_certificate"] => first_san("URI:"),
                _ => None,
            }
        }
        _ => None,
    };
    if let Some(v) = builtin {
        return Ok(v);
    }
    // The consumer is the gateway's fact: never what a plugin stored under that name.
    if segs.first() == Some(&"consumer") {
        return Err(Status::NotFound);
    }
    if let Some(v) = http.and_then(|h| h.properties.get(path)) {
        return Ok(v.clone());
    }
    if let Some(v) = root.and_then(|r| r.properties.get(path)) {
        return Ok(v.clone());
    }
    Err(Status::NotFound)
}

/// Stores a property on the effective context (a request's for an HTTP context, the route config's
/// for a root context). Built-in attributes keep their values; reading them gives the built-in.
pub fn set(state: &mut VmState, path: Vec<u8>, value: Bytes) -> Result<(), Status> {
    let effective = state.effective;
    if path == b"consumer\0name" {
        return authenticate(state, &value);
    }
    if path.starts_with(b"consumer\0") {
        return Err(Status::BadArgument);
    }
    if let Some(h) = state.https.get_mut(&effective) {
        h.properties.insert(path, value);
        return Ok(());
    }
    if let Some(r) = state.roots.get_mut(&effective) {
        r.properties.insert(path, value);
        return Ok(());
    }
    Err(Status::NotFound)
}

/// `consumer.name` set by a request's filter: authenticates the request as that consumer, as the WIT
/// world's `consumers.authenticate` does. Before the response only; the name must be a consumer's.
fn authenticate(state: &VmState, name: &[u8]) -> Result<(), Status> {
    let h = state
        .https
        .get(&state.effective)
        .ok_or(Status::BadArgument)?;
    let request_phase = matches!(
        h.data.phase,
        Phase::RequestHeaders | Phase::RequestBody | Phase::RequestTrailers
    );
    if !request_phase
        || !state
            .shared
            .ctx
            .consumers_allowed("set_property consumer.name")
    {
        return Err(Status::BadArgument);
    }
    let identity = h.info.identity.as_ref().ok_or(Status::BadArgument)?;
    let name = std::str::from_utf8(name).map_err(|_| Status::BadArgument)?;
    match identity.authenticate(name) {
        true => Ok(()),
        false => Err(Status::BadArgument),
    }
}
