//! The Proxy-Wasm host functions (module `env`), 0.2.1 names plus the 0.2.0 ones that differ.
//! Each answers with a status; only a broken guest allocator traps.

use super::abi::{buffer, stream, Status};
use super::memory::{self, copy_out, read, write_u32, write_u64};
use super::properties;
use super::state::{deserialize, map_ref, token_kind, value, GrpcEntry, PendingCall, VmState};
use crate::filter::LocalResponse;
use crate::host::{self, MetricError, MetricKind, QueueError};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use std::time::{SystemTime, UNIX_EPOCH};
use wasmtime::{Caller, Linker};

type C<'a> = Caller<'a, VmState>;
type R = wasmtime::Result<u32>;

fn st(r: Result<(), Status>) -> u32 {
    match r {
        Ok(()) => Status::Ok.code(),
        Err(s) => s.code(),
    }
}

macro_rules! tryst {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(s) => return Ok(Status::code(s)),
        }
    };
}

/// Defines every host function on `linker`.
pub fn add_to_linker(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    logging(linker)?;
    buffers(linker)?;
    headers(linker)?;
    streams(linker)?;
    shared(linker)?;
    callouts(linker)?;
    metrics(linker)?;
    properties_and_misc(linker)?;
    Ok(())
}

fn logging(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: C<'_>, level: u32, ptr: u32, len: u32| -> R {
            let msg = tryst!(read(&mut c, ptr, len));
            let level = tryst!(host::LogLevel::from_u32(level).ok_or(Status::BadArgument));
            host::plugin_log(
                &c.data().shared.ctx.name,
                level,
                &String::from_utf8_lossy(&msg),
            );
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: C<'_>, ret: u32| -> R { Ok(st(write_u32(&mut c, ret, host::log_level() as u32))) },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, ret: u32| -> R {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            Ok(st(write_u64(&mut c, ret, now.as_nanos() as u64)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: C<'_>, ms: u32| -> R {
            let state = c.data_mut();
            let root = tryst!(state.root_of_effective().ok_or(Status::BadArgument));
            state.tick_changes.push((root, ms));
            Ok(0)
        },
    )?;
    Ok(())
}

/// The buffer `ty` of the effective context, if it exists now.
fn buffer_of(state: &mut VmState, ty: u32) -> Result<Option<&mut Bytes>, Status> {
    let effective = state.effective;
    Ok(match ty {
        buffer::HTTP_REQUEST_BODY => state
            .https
            .get_mut(&effective)
            .and_then(|h| h.data.req_body.as_mut()),
        buffer::HTTP_RESPONSE_BODY => state
            .https
            .get_mut(&effective)
            .and_then(|h| h.data.resp_body.as_mut()),
        buffer::HTTP_CALL_RESPONSE_BODY => state.callout.as_mut().map(|c| &mut c.body),
        buffer::GRPC_RECEIVE_BUFFER => state.grpc_message.as_mut(),
        buffer::DOWNSTREAM_DATA | buffer::UPSTREAM_DATA => None,
        buffer::CALL_DATA => state.call_data.as_mut(),
        _ => return Err(Status::BadArgument),
    })
}

fn buffers(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C<'_>, ty: u32, start: u32, max: u32, ptr_ptr: u32, size_ptr: u32| -> R {
            let data: Bytes = {
                let state = c.data_mut();
                let fixed = match ty {
                    buffer::VM_CONFIGURATION => Some(state.shared.vm_config.clone()),
                    buffer::PLUGIN_CONFIGURATION => state
                        .root_of_effective()
                        .and_then(|r| state.roots.get(&r))
                        .map(|r| r.config.clone()),
                    _ => None,
                };
                match fixed {
                    Some(b) => b,
                    None => match buffer_of(state, ty) {
                        Err(s) => return Ok(s.code()),
                        Ok(None) => return Ok(Status::NotFound.code()),
                        Ok(Some(b)) => b.clone(),
                    },
                }
            };
            let start = (start as usize).min(data.len());
            let end = start.saturating_add(max as usize).min(data.len());
            Ok(st(copy_out(&mut c, &data[start..end], ptr_ptr, size_ptr)?))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut c: C<'_>, ty: u32, len_ptr: u32, flags_ptr: u32| -> R {
            let len = {
                let state = c.data_mut();
                match ty {
                    buffer::VM_CONFIGURATION => state.shared.vm_config.len(),
                    buffer::PLUGIN_CONFIGURATION => tryst!(state
                        .root_of_effective()
                        .and_then(|r| state.roots.get(&r))
                        .map(|r| r.config.len())
                        .ok_or(Status::NotFound)),
                    _ => tryst!(tryst!(buffer_of(state, ty))
                        .map(|b| b.len())
                        .ok_or(Status::NotFound)),
                }
            };
            Ok(st(write_u32(&mut c, len_ptr, len as u32)
                .and_then(|_| write_u32(&mut c, flags_ptr, 0))))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, ty: u32, start: u32, len: u32, ptr: u32, size: u32| -> R {
            let data = tryst!(read(&mut c, ptr, size));
            if matches!(
                ty,
                buffer::VM_CONFIGURATION
                    | buffer::PLUGIN_CONFIGURATION
                    | buffer::HTTP_CALL_RESPONSE_BODY
                    | buffer::GRPC_RECEIVE_BUFFER
            ) {
                return Ok(Status::BadArgument.code());
            }
            let buf = tryst!(tryst!(buffer_of(c.data_mut(), ty)).ok_or(Status::NotFound));
            // Envoy: start 0 drains `len` bytes then prepends; start at or past the end appends;
            // anything in between is refused.
            let (start, len) = (start as usize, len as usize);
            let mut out = Vec::with_capacity(buf.len() + data.len());
            if start == 0 {
                out.extend_from_slice(&data);
                out.extend_from_slice(&buf[len.min(buf.len())..]);
            } else if start >= buf.len() {
                out.extend_from_slice(buf);
                out.extend_from_slice(&data);
            } else {
                return Ok(Status::BadArgument.code());
            }
            *buf = Bytes::from(out);
            Ok(0)
        },
    )?;
    Ok(())
}

fn headers(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, ty: u32, ptr_ptr: u32, size_ptr: u32| -> R {
            let pairs = match map_ref(c.data_mut(), ty, false) {
                Ok(m) => m.pairs(),
                Err(Status::NotFound) => Vec::new(),
                Err(s) => return Ok(s.code()),
            };
            let bytes = super::abi::serialize_map(&pairs);
            Ok(st(copy_out(&mut c, &bytes, ptr_ptr, size_ptr)?))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: C<'_>, ty: u32, ptr: u32, size: u32| -> R {
            let bytes = tryst!(read(&mut c, ptr, size));
            let pairs = tryst!(deserialize(&bytes));
            let mut m = tryst!(map_ref(c.data_mut(), ty, true));
            Ok(st(m.set_pairs(&pairs)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C<'_>, ty: u32, kp: u32, ks: u32, ptr_ptr: u32, size_ptr: u32| -> R {
            let key = tryst!(read(&mut c, kp, ks));
            let found = tryst!(map_ref(c.data_mut(), ty, false)).get(&key);
            let Some(v) = found else {
                return Ok(Status::NotFound.code());
            };
            Ok(st(copy_out(&mut c, &v, ptr_ptr, size_ptr)?))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: C<'_>, ty: u32, ret: u32| -> R {
            let n = match map_ref(c.data_mut(), ty, false) {
                Ok(m) => super::abi::serialize_map(&m.pairs()).len(),
                Err(s) => return Ok(s.code()),
            };
            Ok(st(write_u32(&mut c, ret, n as u32)))
        },
    )?;
    for (name, op) in [
        ("proxy_add_header_map_value", 0u8),
        ("proxy_replace_header_map_value", 1u8),
    ] {
        linker.func_wrap(
            "env",
            name,
            move |mut c: C<'_>, ty: u32, kp: u32, ks: u32, vp: u32, vs: u32| -> R {
                let key = tryst!(read(&mut c, kp, ks));
                let val = tryst!(read(&mut c, vp, vs));
                let mut m = tryst!(map_ref(c.data_mut(), ty, true));
                Ok(st(if op == 0 {
                    m.add(&key, &val)
                } else {
                    m.replace(&key, &val)
                }))
            },
        )?;
    }
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: C<'_>, ty: u32, kp: u32, ks: u32| -> R {
            let key = tryst!(read(&mut c, kp, ks));
            let mut m = tryst!(map_ref(c.data_mut(), ty, true));
            Ok(st(m.remove(&key)))
        },
    )?;
    Ok(())
}

fn continue_stream(c: &mut C<'_>, ty: u32) -> u32 {
    let effective = c.data().effective;
    let Some(http) = c.data_mut().https.get_mut(&effective) else {
        return Status::NotFound.code();
    };
    match ty {
        stream::HTTP_REQUEST => http.continue_request = true,
        stream::HTTP_RESPONSE => http.continue_response = true,
        // TCP streams do not exist on an HTTP context.
        stream::DOWNSTREAM | stream::UPSTREAM => return Status::BadArgument.code(),
        _ => return Status::BadArgument.code(),
    }
    http.wake().notify_one();
    0
}

fn streams(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: C<'_>, ty: u32| -> R { Ok(continue_stream(&mut c, ty)) },
    )?;
    linker.func_wrap("env", "proxy_continue_request", |mut c: C<'_>| -> R {
        Ok(continue_stream(&mut c, stream::HTTP_REQUEST))
    })?;
    linker.func_wrap("env", "proxy_continue_response", |mut c: C<'_>| -> R {
        Ok(continue_stream(&mut c, stream::HTTP_RESPONSE))
    })?;
    linker.func_wrap("env", "proxy_close_stream", |mut c: C<'_>, ty: u32| -> R {
        if ty > stream::UPSTREAM {
            return Ok(Status::BadArgument.code());
        }
        let effective = c.data().effective;
        let http = tryst!(c
            .data_mut()
            .https
            .get_mut(&effective)
            .ok_or(Status::NotFound));
        http.closed = true;
        http.wake().notify_one();
        Ok(0)
    })?;
    linker.func_wrap("env", "proxy_clear_route_cache", |_c: C<'_>| -> R { Ok(0) })?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: C<'_>,
         status: u32,
         _details_ptr: u32,
         _details_size: u32,
         body_ptr: u32,
         body_size: u32,
         headers_ptr: u32,
         headers_size: u32,
         grpc_status: i32|
         -> R {
            let body = tryst!(read(&mut c, body_ptr, body_size));
            let raw_headers = tryst!(read(&mut c, headers_ptr, headers_size));
            let pairs = tryst!(deserialize(&raw_headers));
            let mut headers = HeaderMap::new();
            for (k, v) in &pairs {
                let name = tryst!(
                    http::header::HeaderName::from_bytes(&k.to_ascii_lowercase())
                        .map_err(|_| Status::BadArgument)
                );
                headers.append(name, tryst!(value(v)));
            }
            let (status, body) = if grpc_status >= 0 {
                // The gRPC form: a trailers-only style answer with HTTP 200 and the gRPC status.
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/grpc"),
                );
                headers.insert("grpc-status", http::HeaderValue::from(grpc_status));
                if !body.is_empty() {
                    let msg = percent_encode(&body);
                    headers.insert("grpc-message", tryst!(value(msg.as_bytes())));
                }
                (StatusCode::OK, Bytes::new())
            } else {
                let code = tryst!(u16::try_from(status)
                    .ok()
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .ok_or(Status::BadArgument));
                (code, Bytes::from(body))
            };
            let effective = c.data().effective;
            let http = tryst!(c
                .data_mut()
                .https
                .get_mut(&effective)
                .ok_or(Status::NotFound));
            http.local = Some(LocalResponse {
                status,
                headers,
                body,
            });
            http.wake().notify_one();
            Ok(0)
        },
    )?;
    Ok(())
}

/// `grpc-message` is percent-encoded: every byte outside 0x20..0x7E, and `%` itself (gRPC over
/// HTTP/2, "Responses").
const GRPC_MESSAGE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

fn percent_encode(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, GRPC_MESSAGE).to_string()
}

/// The Redis namespace the plugin's shared data lives in, if its `capabilities.kv_namespace` is one
/// (`kv_namespaces:` with `backend: redis`); otherwise shared data is the VM's, as in Envoy.
fn remote_namespace(shared: &super::Shared) -> Option<&str> {
    let ns = shared.ctx.grants.kv_namespace()?;
    shared.ctx.host.stores.is_remote(ns).then_some(ns)
}

/// Whether the plugin's shared data is in Redis, so that its host calls may wait.
pub(super) fn shared_data_waits(shared: &super::Shared) -> bool {
    remote_namespace(shared).is_some()
}

/// Runs a store call to Redis from a Proxy-Wasm host function, which is synchronous (Proxy-Wasm VMs
/// are called without fibers, the cheap way): the call runs on a small runtime of its own and this
/// thread waits for it, bounded by the namespace's command timeout, which the call applies itself.
/// On the gateway's multi-threaded runtime the wait is `block_in_place`, so the worker's other tasks
/// move to another thread meanwhile.
fn wait_for_store<T: Send + 'static>(
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> Option<T> {
    static BRIDGE: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = BRIDGE.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("store-bridge")
            .enable_all()
            .build()
            .expect("a tokio runtime for Proxy-Wasm store calls")
    });
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi {
        tokio::task::block_in_place(|| rx.recv().ok())
    } else {
        rx.recv().ok()
    }
}

/// Keys and values in a Redis namespace are held to the sizes the WIT store allows.
fn check_sizes(key: &str, value: &[u8]) -> Result<(), Status> {
    use crate::wasm::component::{MAX_KEY_LEN, MAX_VALUE_LEN};
    if key.len() > MAX_KEY_LEN || value.len() > MAX_VALUE_LEN {
        return Err(Status::BadArgument);
    }
    Ok(())
}

/// A Redis call begun at `started` waited that long, which is not the guest's CPU time (the next
/// epoch deadline credits it).
fn credit_wait(c: &mut C<'_>, started: std::time::Instant) {
    c.data_mut().waited += started.elapsed();
}

fn shared(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: C<'_>, kp: u32, ks: u32, ptr_ptr: u32, size_ptr: u32, cas_ptr: u32| -> R {
            let key = tryst!(read(&mut c, kp, ks));
            let key = String::from_utf8_lossy(&key);
            let shared = c.data().shared.clone();
            let got = match remote_namespace(&shared).map(str::to_owned) {
                Some(ns) => {
                    tryst!(check_sizes(&key, &[]));
                    let (key, host) = (key.into_owned(), shared.ctx.host.clone());
                    let started = std::time::Instant::now();
                    let r =
                        wait_for_store(
                            async move { host.stores.get(&host.shared, &ns, &key).await },
                        );
                    credit_wait(&mut c, started);
                    tryst!(r.and_then(Result::ok).ok_or(Status::InternalFailure))
                }
                None => shared.ctx.host.shared.get(&shared.namespace, &key),
            };
            let Some((v, cas)) = got else {
                return Ok(Status::NotFound.code());
            };
            tryst!(write_u32(&mut c, cas_ptr, cas));
            Ok(st(copy_out(&mut c, &v, ptr_ptr, size_ptr)?))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: C<'_>, kp: u32, ks: u32, vp: u32, vs: u32, cas: u32| -> R {
            let key = tryst!(read(&mut c, kp, ks));
            let key = String::from_utf8_lossy(&key);
            let v = Bytes::from(tryst!(read(&mut c, vp, vs)));
            let shared = c.data().shared.clone();
            let Some(ns) = remote_namespace(&shared).map(str::to_owned) else {
                let r = shared
                    .ctx
                    .host
                    .shared
                    .set(&shared.namespace, &key, v, Some(cas));
                return Ok(if r.is_ok() {
                    0
                } else {
                    Status::CasMismatch.code()
                });
            };
            tryst!(check_sizes(&key, &v));
            let (key, host) = (key.into_owned(), shared.ctx.host.clone());
            let started = std::time::Instant::now();
            let r = wait_for_store(async move {
                let stores = &host.stores;
                // A CAS token of 0 means no check (the Proxy-Wasm spec).
                match cas {
                    0 => stores.set(&host.shared, &ns, &key, v, None).await,
                    cas => {
                        stores
                            .compare_and_swap(&host.shared, &ns, &key, cas, v, None)
                            .await
                    }
                }
            });
            credit_wait(&mut c, started);
            Ok(match r {
                Some(Ok(_)) => 0,
                Some(Err(host::StoreError::VersionMismatch)) => Status::CasMismatch.code(),
                _ => Status::InternalFailure.code(),
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: C<'_>, np: u32, ns: u32, ret: u32| -> R {
            let name = tryst!(read(&mut c, np, ns));
            let root = tryst!(c.data().root_of_effective().ok_or(Status::BadArgument));
            let shared = c.data().shared.clone();
            let notify = shared.queue_notifier(c.data().slot, root);
            let id = shared.ctx.host.queues.register(
                &shared.namespace,
                &String::from_utf8_lossy(&name),
                Some(notify),
            );
            Ok(st(write_u32(&mut c, ret, id)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, vp: u32, vs: u32, np: u32, ns: u32, ret: u32| -> R {
            let vm_id = tryst!(read(&mut c, vp, vs));
            let name = tryst!(read(&mut c, np, ns));
            let shared = c.data().shared.clone();
            // An empty VM id means this VM's own namespace.
            let namespace = if vm_id.is_empty() {
                shared.namespace.clone()
            } else {
                String::from_utf8_lossy(&vm_id).into_owned()
            };
            let id = tryst!(shared
                .ctx
                .host
                .queues
                .resolve(&namespace, &String::from_utf8_lossy(&name))
                .ok_or(Status::NotFound));
            Ok(st(write_u32(&mut c, ret, id)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, id: u32, ptr_ptr: u32, size_ptr: u32| -> R {
            let shared = c.data().shared.clone();
            match shared.ctx.host.queues.dequeue(id) {
                Err(_) => Ok(Status::NotFound.code()),
                Ok(None) => Ok(Status::Empty.code()),
                Ok(Some(v)) => Ok(st(copy_out(&mut c, &v, ptr_ptr, size_ptr)?)),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: C<'_>, id: u32, vp: u32, vs: u32| -> R {
            let v = tryst!(read(&mut c, vp, vs));
            let shared = c.data().shared.clone();
            Ok(match shared.ctx.host.queues.enqueue(id, Bytes::from(v)) {
                Ok(()) => 0,
                Err(QueueError::NotFound) => Status::NotFound.code(),
                Err(QueueError::Full) => Status::InternalFailure.code(),
            })
        },
    )?;
    Ok(())
}

/// The parts of a callout request in the ABI's header map: `:method`, `:path` and `:authority` are
/// required (as in Envoy), `:scheme` is ignored, other pseudo-headers are refused.
type CalloutParts = (Vec<u8>, Vec<u8>, Vec<u8>, HeaderMap);

fn callout_parts(pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<CalloutParts, Status> {
    let (mut method, mut path, mut authority) = (None, None, None);
    let mut headers = HeaderMap::new();
    for (k, v) in pairs {
        match k.as_slice() {
            b":method" => method = Some(v.clone()),
            b":path" => path = Some(v.clone()),
            b":authority" => authority = Some(v.clone()),
            b":scheme" => {}
            k if k.starts_with(b":") => return Err(Status::BadArgument),
            k => {
                let name = http::header::HeaderName::from_bytes(&k.to_ascii_lowercase())
                    .map_err(|_| Status::BadArgument)?;
                headers.append(name, value(v)?);
            }
        }
    }
    match (method, path, authority) {
        (Some(m), Some(p), Some(a)) => Ok((m, p, a, headers)),
        _ => Err(Status::BadArgument),
    }
}

/// The upstream of a gRPC call's `service` argument, and the `:authority` and metadata it adds: the
/// name of an upstream, or (as Envoy reads it first) a serialized `envoy.config.core.v3.GrpcService`
/// with `envoy_grpc` set. Anything else is `ParseFailure`, as Envoy answers an unknown cluster.
fn grpc_target(
    ctx: &crate::wasm::context::PluginCtx,
    service: &[u8],
) -> Result<GrpcTarget, Status> {
    let name = std::str::from_utf8(service).ok().filter(|n| !n.is_empty());
    let (upstream, authority, metadata) = match name {
        Some(n) if ctx.host.upstreams.has(n) => (n.to_string(), None, Vec::new()),
        _ => {
            let proto = <GrpcServiceProto as prost::Message>::decode(service)
                .map_err(|_| Status::ParseFailure)?;
            let envoy = proto.envoy_grpc.ok_or(Status::ParseFailure)?;
            let metadata = proto
                .initial_metadata
                .into_iter()
                .map(|h| {
                    let v = if h.value.is_empty() {
                        h.raw_value
                    } else {
                        h.value.into_bytes()
                    };
                    (h.key.into_bytes(), v)
                })
                .collect();
            let authority = Some(envoy.authority).filter(|a| !a.is_empty());
            (envoy.cluster_name, authority, metadata)
        }
    };
    ctx.callout_allowed(&upstream)
        .map_err(|_| Status::ParseFailure)?;
    Ok(GrpcTarget {
        upstream,
        authority,
        metadata,
    })
}

/// Where a gRPC call goes, from its `service` argument.
struct GrpcTarget {
    upstream: String,
    authority: Option<String>,
    /// The `GrpcService`'s initial metadata, sent before the filter's.
    metadata: super::abi::Pairs,
}

/// The parts of `envoy.config.core.v3.GrpcService` a gRPC callout uses.
#[derive(Clone, PartialEq, prost::Message)]
struct GrpcServiceProto {
    #[prost(message, optional, tag = "1")]
    envoy_grpc: Option<EnvoyGrpcProto>,
    #[prost(message, repeated, tag = "5")]
    initial_metadata: Vec<HeaderValueProto>,
}

/// `envoy.config.core.v3.GrpcService.EnvoyGrpc`.
#[derive(Clone, PartialEq, prost::Message)]
struct EnvoyGrpcProto {
    #[prost(string, tag = "1")]
    cluster_name: String,
    #[prost(string, tag = "2")]
    authority: String,
}

/// `envoy.config.core.v3.HeaderValue`.
#[derive(Clone, PartialEq, prost::Message)]
struct HeaderValueProto {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
    #[prost(bytes = "vec", tag = "3")]
    raw_value: Vec<u8>,
}

/// Starts a gRPC call (`unary`: its message and timeout) or stream. `args` are the pointers and
/// sizes of the service, service name, method name and metadata. Failures to start answer
/// `ParseFailure` (unknown or ungranted upstream, bad names or metadata), as the SDKs expect.
fn start_grpc(
    c: &mut C<'_>,
    args: [u32; 8],
    unary: Option<(Bytes, std::time::Duration)>,
    token_ptr: u32,
) -> R {
    let [sp, ss, np, ns, mp, ms, hp, hs] = args;
    let service = tryst!(read(c, sp, ss));
    let service_name = tryst!(read(c, np, ns));
    let method = tryst!(read(c, mp, ms));
    let raw = tryst!(read(c, hp, hs));
    tryst!(memory::check(c, token_ptr, 4));
    let shared = c.data().shared.clone();
    let GrpcTarget {
        upstream,
        authority,
        metadata: extra,
    } = tryst!(grpc_target(&shared.ctx, &service));
    let pairs = tryst!(deserialize(&raw).map_err(|_| Status::ParseFailure));
    let mut metadata = HeaderMap::new();
    for (k, v) in extra.into_iter().chain(pairs) {
        let name = tryst!(
            http::header::HeaderName::from_bytes(&k.to_ascii_lowercase())
                .map_err(|_| Status::ParseFailure)
        );
        metadata.append(name, tryst!(value(&v).map_err(|_| Status::ParseFailure)));
    }
    if let Some(t) = c.data().trace() {
        t.inject_callout(&mut metadata);
    }
    let utf8 = |b: Vec<u8>| String::from_utf8(b).map_err(|_| Status::ParseFailure);
    let kind = if unary.is_some() {
        token_kind::GRPC_CALL
    } else {
        token_kind::GRPC_STREAM
    };
    let req = host::GrpcRequest {
        upstream,
        authority,
        service: tryst!(utf8(service_name)),
        method: tryst!(utf8(method)),
        metadata,
        unary,
    };
    // The call belongs to the root context of the context that makes it.
    let root_id = tryst!(c.data().root_of_effective().ok_or(Status::InternalFailure));
    let (call, rx) = tryst!(shared
        .ctx
        .host
        .grpc(&shared.handle, req)
        .map_err(|_| Status::ParseFailure));
    let state = c.data_mut();
    let token = state.next_token(kind);
    let context_id = state.effective;
    state.grpc.insert(
        token,
        GrpcEntry {
            call,
            root_id,
            remote_closed: false,
        },
    );
    state.pending.push(PendingCall::grpc(
        token,
        context_id,
        rx,
        kind == token_kind::GRPC_CALL,
    ));
    Ok(st(write_u32(c, token_ptr, token)))
}

fn callouts(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: C<'_>,
         up: u32,
         up_size: u32,
         hp: u32,
         hs: u32,
         bp: u32,
         bs: u32,
         _tp: u32,
         _ts: u32,
         timeout_ms: u32,
         token_ptr: u32|
         -> R {
            let upstream = tryst!(read(&mut c, up, up_size));
            let raw = tryst!(read(&mut c, hp, hs));
            let body = tryst!(read(&mut c, bp, bs));
            tryst!(memory::check(&mut c, token_ptr, 4));
            let upstream = String::from_utf8_lossy(&upstream).into_owned();
            let shared = c.data().shared.clone();
            // Not granted or unknown: BadArgument, as Envoy answers a bad cluster name.
            let allowed = shared.ctx.callout_allowed(&upstream);
            tryst!(allowed.map_err(|_| Status::BadArgument));
            let pairs = tryst!(deserialize(&raw));
            let (method, path, authority, headers) = tryst!(callout_parts(&pairs));
            let req =
                host::callout_request(&method, &path, Some(&authority), headers, Bytes::from(body));
            let mut req = tryst!(req.map_err(|_| Status::BadArgument));
            if let Some(t) = c.data().trace() {
                t.inject_callout(req.headers_mut());
            }
            let timeout = host::callout_timeout(u64::from(timeout_ms));
            let fut = shared.ctx.host.callout(&upstream, req, timeout);
            let state = c.data_mut();
            let token = state.next_token(token_kind::HTTP);
            let (tx, rx) = tokio::sync::oneshot::channel();
            shared.handle.spawn(async move {
                let _ = tx.send(fut.await);
            });
            let context_id = state.effective;
            if let Some(http) = state.https.get_mut(&context_id) {
                http.callouts += 1;
            }
            state.pending.push(PendingCall::http(token, context_id, rx));
            Ok(st(write_u32(&mut c, token_ptr, token)))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |mut c: C<'_>,
         sp: u32,
         ss: u32,
         np: u32,
         ns: u32,
         mp: u32,
         ms: u32,
         hp: u32,
         hs: u32,
         bp: u32,
         bs: u32,
         timeout_ms: u32,
         token_ptr: u32|
         -> R {
            let message = tryst!(read(&mut c, bp, bs));
            let timeout = host::callout_timeout(u64::from(timeout_ms));
            let unary = Some((Bytes::from(message), timeout));
            start_grpc(&mut c, [sp, ss, np, ns, mp, ms, hp, hs], unary, token_ptr)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |mut c: C<'_>,
         sp: u32,
         ss: u32,
         np: u32,
         ns: u32,
         mp: u32,
         ms: u32,
         hp: u32,
         hs: u32,
         token_ptr: u32|
         -> R { start_grpc(&mut c, [sp, ss, np, ns, mp, ms, hp, hs], None, token_ptr) },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |mut c: C<'_>, token: u32, mp: u32, ms: u32, end_stream: u32| -> R {
            let message = tryst!(read(&mut c, mp, ms));
            if token & 3 != token_kind::GRPC_STREAM {
                return Ok(Status::BadArgument.code());
            }
            let entry = tryst!(c.data_mut().grpc.get_mut(&token).ok_or(Status::NotFound));
            if entry.remote_closed {
                // Nobody reads it any more; Envoy takes it too.
                return Ok(0);
            }
            Ok(match entry.call.send(&message, end_stream != 0) {
                Ok(()) => 0,
                Err(host::GrpcError::Full) => {
                    tracing::warn!(plugin = %c.data().shared.ctx.name, "gRPC send refused: {} messages already wait for the upstream", host::GRPC_MAX_QUEUED);
                    Status::InternalFailure.code()
                }
                Err(_) => Status::BadArgument.code(),
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_cancel",
        |mut c: C<'_>, token: u32| -> R {
            if !matches!(token & 3, token_kind::GRPC_CALL | token_kind::GRPC_STREAM) {
                return Ok(Status::BadArgument.code());
            }
            // Dropping the entry ends the call (a stream is reset); no callback follows.
            Ok(match c.data_mut().grpc.remove(&token) {
                Some(_) => 0,
                None => Status::NotFound.code(),
            })
        },
    )?;
    linker.func_wrap("env", "proxy_grpc_close", |mut c: C<'_>, token: u32| -> R {
        let grpc = &mut c.data_mut().grpc;
        match token & 3 {
            // Closing a unary call cancels it.
            token_kind::GRPC_CALL => Ok(match grpc.remove(&token) {
                Some(_) => 0,
                None => Status::NotFound.code(),
            }),
            // A stream is half-closed: answers keep coming until the upstream closes; one the
            // upstream already closed is done.
            token_kind::GRPC_STREAM => {
                let entry = tryst!(grpc.get_mut(&token).ok_or(Status::NotFound));
                if entry.remote_closed {
                    grpc.remove(&token);
                } else {
                    entry.call.half_close();
                }
                Ok(0)
            }
            _ => Ok(Status::BadArgument.code()),
        }
    })?;
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: C<'_>, code_ptr: u32, ptr_ptr: u32, size_ptr: u32| -> R {
            let (code, msg) = c.data().status.clone();
            tryst!(write_u32(&mut c, code_ptr, code));
            Ok(st(copy_out(&mut c, &msg, ptr_ptr, size_ptr)?))
        },
    )?;
    Ok(())
}

fn metric_status(r: Result<(), MetricError>) -> u32 {
    match r {
        Ok(()) => 0,
        Err(MetricError::NotFound) => Status::NotFound.code(),
        Err(MetricError::BadArgument) => Status::BadArgument.code(),
        Err(MetricError::TooMany) => Status::InternalFailure.code(),
    }
}

fn metrics(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: C<'_>, ty: u32, np: u32, ns: u32, ret: u32| -> R {
            let name = tryst!(read(&mut c, np, ns));
            let kind = match ty {
                0 => MetricKind::Counter,
                1 => MetricKind::Gauge,
                2 => MetricKind::Histogram,
                _ => return Ok(Status::BadArgument.code()),
            };
            tryst!(memory::check(&mut c, ret, 4));
            let shared = c.data().shared.clone();
            match shared.ctx.host.metrics.define(
                &shared.ctx.name,
                kind,
                &String::from_utf8_lossy(&name),
            ) {
                Ok(id) => Ok(st(write_u32(&mut c, ret, id))),
                Err(e) => Ok(metric_status(Err(e))),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |c: C<'_>, id: u32, offset: i64| -> R {
            let shared = c.data().shared.clone();
            Ok(metric_status(shared.ctx.host.metrics.increment(
                &shared.ctx.name,
                id,
                offset,
            )))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |c: C<'_>, id: u32, v: u64| -> R {
            let shared = c.data().shared.clone();
            Ok(metric_status(shared.ctx.host.metrics.record(
                &shared.ctx.name,
                id,
                v,
            )))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: C<'_>, id: u32, ret: u32| -> R {
            let shared = c.data().shared.clone();
            match shared.ctx.host.metrics.get(&shared.ctx.name, id) {
                Ok(v) => Ok(st(write_u64(&mut c, ret, v))),
                Err(e) => Ok(metric_status(Err(e))),
            }
        },
    )?;
    Ok(())
}

fn properties_and_misc(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: C<'_>, pp: u32, ps: u32, ptr_ptr: u32, size_ptr: u32| -> R {
            let path = tryst!(read(&mut c, pp, ps));
            let v = tryst!(properties::get(c.data(), &path));
            Ok(st(copy_out(&mut c, &v, ptr_ptr, size_ptr)?))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: C<'_>, pp: u32, ps: u32, vp: u32, vs: u32| -> R {
            let path = tryst!(read(&mut c, pp, ps));
            let v = tryst!(read(&mut c, vp, vs));
            Ok(st(properties::set(c.data_mut(), path, Bytes::from(v))))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: C<'_>, id: u32| -> R {
            let state = c.data_mut();
            if state.roots.contains_key(&id) || state.https.contains_key(&id) {
                state.effective = id;
                Ok(0)
            } else {
                Ok(Status::BadArgument.code())
            }
        },
    )?;
    linker.func_wrap("env", "proxy_done", |mut c: C<'_>| -> R {
        let state = c.data_mut();
        let effective = state.effective;
        if state.roots.contains_key(&effective) {
            return Ok(0);
        }
        // An HTTP context that kept itself alive (`on_done` returned false) ends after this
        // callback, as proxy-wasm-cpp-host moves it to its pending deletions.
        match state.https.get(&effective) {
            Some(h) if h.awaiting_done => {
                if !state.done_requested.contains(&effective) {
                    state.done_requested.push(effective);
                }
                Ok(0)
            }
            _ => Ok(Status::NotFound.code()),
        }
    })?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: C<'_>, np: u32, ns: u32, ap: u32, asz: u32, ret_ptr: u32, ret_size: u32| -> R {
            let name = tryst!(read(&mut c, np, ns));
            tryst!(
                memory::check(&mut c, ret_ptr, 4).and_then(|_| memory::check(&mut c, ret_size, 4))
            );
            if let Some(span_call) = SpanCall::named(&name) {
                let args = tryst!(read(&mut c, ap, asz));
                let pairs = tryst!(deserialize(&args).map_err(|_| Status::BadArgument));
                tryst!(span_call.run(c.data().trace(), pairs));
                // No result: a null pointer and a length of 0.
                tryst!(write_u32(&mut c, ret_ptr, 0));
                return Ok(st(write_u32(&mut c, ret_size, 0)));
            }
            tracing::debug!(
                plugin = %c.data().shared.ctx.name,
                function = %String::from_utf8_lossy(&name),
                "unknown foreign function"
            );
            Ok(Status::NotFound.code())
        },
    )?;
    Ok(())
}

/// The foreign functions on the span of the current filter call (the Proxy-Wasm side of WIT
/// `trace`). Both take a map serialized as for headers; both are a no-op when the request is not
/// traced or not sampled.
enum SpanCall {
    /// `set_span_attribute`: every pair is an attribute (key, value).
    SetAttribute,
    /// `add_span_event`: the pair with key `name` names the event (required), the others are its
    /// attributes.
    AddEvent,
}

impl SpanCall {
    fn named(name: &[u8]) -> Option<SpanCall> {
        match name {
            b"set_span_attribute" => Some(SpanCall::SetAttribute),
            b"add_span_event" => Some(SpanCall::AddEvent),
            _ => None,
        }
    }

    fn run(
        self,
        trace: Option<&crate::telemetry::RequestTrace>,
        pairs: super::abi::Pairs,
    ) -> Result<(), Status> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            SpanCall::SetAttribute => {
                if let Some(t) = trace {
                    for (k, v) in &pairs {
                        t.stage_attribute(&text(k), &text(v));
                    }
                }
            }
            SpanCall::AddEvent => {
                let name = pairs
                    .iter()
                    .find(|(k, _)| &k[..] == b"name")
                    .ok_or(Status::BadArgument)?;
                if let Some(t) = trace {
                    let attrs: Vec<(String, String)> = pairs
                        .iter()
                        .filter(|(k, _)| &k[..] != b"name")
                        .map(|(k, v)| (text(k), text(v)))
                        .collect();
                    t.stage_event(&text(&name.1), &attrs);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn grpc_messages_escape_percent_controls_and_non_ascii_only() {
        assert_eq!(
            super::percent_encode("50% done: é\n~".as_bytes()),
            "50%25 done: %C3%A9%0A~"
        );
    }
}
