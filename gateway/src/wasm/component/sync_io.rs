//! Which components are called synchronously, without a fiber, and the `wasi:io` functions that lets
//! them link. wasmtime runs a component on a fiber (`call_async`) only because a host function it
//! imports is defined `async`; a store whose instance imports none is called with a plain `call`,
//! which costs a few thousand instructions less per entry (the fiber's start and switches).
//!
//! [`imports_wait`] is the rule: a component that imports a host call that can wait (outbound HTTP,
//! the key-value store, a cache lookup, a WASI timer or socket, the filesystem) keeps the fiber. Any
//! other component links with [`shadow`]: the `wasi:io` functions that wasmtime-wasi defines `async`
//! (the blocking stream calls, `poll`, `pollable.block` and `ready`, the stream destructors) replaced
//! by synchronous ones. Such a component reaches only stdin, stdout and stderr, which are always
//! ready (stdout and stderr go to the log), so each of these calls is polled once and finished; one
//! that would still wait traps instead of blocking the thread.

use std::future::Future;
use std::task::{Context, Poll, Waker};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, Resource, ResourceTable, ResourceType};
use wasmtime::{Engine, StoreContextMut};
use wasmtime_wasi::p2::bindings::io::poll::{Host as _, HostPollable};
use wasmtime_wasi::p2::bindings::io::streams::{
    self as wit, Host as _, HostInputStream, HostOutputStream,
};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, StreamError};

/// The `wasi:io` interfaces as wasmtime-wasi 48 defines them (components of any 0.2 version link).
const STREAMS: &str = "wasi:io/streams@0.2.12";
const POLL: &str = "wasi:io/poll@0.2.12";

/// Whether `component` imports a function that can wait (then it is called on a fiber).
pub(crate) fn imports_wait(component: &Component, engine: &Engine) -> bool {
    let ty = component.component_type();
    let waits = ty.imports(engine).any(|(name, import)| {
        let interface = name.split('@').next().unwrap_or(name);
        match import.ty {
            ComponentItem::ComponentInstance(instance) => {
                instance.exports(engine).any(|(item, export)| {
                    let what = match export.ty {
                        ComponentItem::ComponentFunc(_) => Some(item),
                        ComponentItem::Resource(_) => None,
                        _ => return false,
                    };
                    waits(interface, what)
                })
            }
            // A type the world `use`s (the `request` and `response` its exports take); the worlds
            // linked here import no function outside an interface.
            _ => false,
        }
    });
    waits
}

/// Whether function `func` of `interface` can wait (`None`: a resource type of it, whose
/// destructor can wait).
fn waits(interface: &str, func: Option<&str>) -> bool {
    match interface {
        "gateway:filter/http-client" | "gateway:filter/kv" | "gateway:filter/store" => {
            func.is_some()
        }
        "gateway:filter/cache" => func == Some("lookup"),
        // A timer's pollable is the one a stdio-only component could wait on.
        "wasi:clocks/monotonic-clock" => func.is_some_and(|f| f.starts_with("subscribe")),
        "wasi:filesystem/types" => true,
        _ => interface.starts_with("wasi:sockets/"),
    }
}

/// The result of a host future that is ready now; one that is not traps the call (a component
/// linked with [`shadow`] has nothing that waits, so this is a bug, not a guest's fault).
fn now<F: Future>(future: F) -> wasmtime::Result<F::Output> {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => Err(wasmtime::Error::msg(
            "a host call of a plugin linked without waits would have waited",
        )),
    }
}

type WitResult<T> = wasmtime::Result<(Result<T, wit::StreamError>,)>;

fn stream_result<T>(table: &mut ResourceTable, r: Result<T, StreamError>) -> WitResult<T> {
    match r {
        Ok(v) => Ok((Ok(v),)),
        Err(e) => Ok((Err(table.convert_stream_error(e)?),)),
    }
}

/// Redefines the `async` functions of `wasi:io` on `linker` (which has them from
/// `wasmtime_wasi::p2::add_to_linker_async`) as synchronous ones; `table` finds the store's
/// resource table.
pub(crate) fn shadow<T: Send + 'static>(
    linker: &mut Linker<T>,
    table: fn(&mut T) -> &mut ResourceTable,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut s = linker.instance(STREAMS)?;
    s.resource(
        "output-stream",
        ResourceType::host::<DynOutputStream>(),
        move |mut store, rep| {
            now(HostOutputStream::drop(
                table(store.data_mut()),
                Resource::new_own(rep),
            ))?
        },
    )?;
    s.resource(
        "input-stream",
        ResourceType::host::<DynInputStream>(),
        move |mut store, rep| {
            now(HostInputStream::drop(
                table(store.data_mut()),
                Resource::new_own(rep),
            ))?
        },
    )?;
    s.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        move |mut store: StoreContextMut<'_, T>,
              (this, bytes): (Resource<DynOutputStream>, Vec<u8>)|
              -> WitResult<()> {
            let t = table(store.data_mut());
            let r = now(t.blocking_write_and_flush(this, bytes))?;
            stream_result(t, r)
        },
    )?;
    s.func_wrap(
        "[method]output-stream.blocking-write-zeroes-and-flush",
        move |mut store: StoreContextMut<'_, T>,
              (this, len): (Resource<DynOutputStream>, u64)|
              -> WitResult<()> {
            let t = table(store.data_mut());
            let r = now(t.blocking_write_zeroes_and_flush(this, len))?;
            stream_result(t, r)
        },
    )?;
    s.func_wrap(
        "[method]output-stream.blocking-flush",
        move |mut store: StoreContextMut<'_, T>,
              (this,): (Resource<DynOutputStream>,)|
              -> WitResult<()> {
            let t = table(store.data_mut());
            let r = now(t.blocking_flush(this))?;
            stream_result(t, r)
        },
    )?;
    s.func_wrap(
        "[method]output-stream.blocking-splice",
        move |mut store: StoreContextMut<'_, T>,
              (this, src, len): (Resource<DynOutputStream>, Resource<DynInputStream>, u64)|
              -> WitResult<u64> {
            let t = table(store.data_mut());
            let r = now(HostOutputStream::blocking_splice(t, this, src, len))?;
            stream_result(t, r)
        },
    )?;
    s.func_wrap(
        "[method]input-stream.blocking-read",
        move |mut store: StoreContextMut<'_, T>,
              (this, len): (Resource<DynInputStream>, u64)|
              -> WitResult<Vec<u8>> {
            let t = table(store.data_mut());
            let r = now(t.blocking_read(this, len))?;
            stream_result(t, r)
        },
    )?;
    s.func_wrap(
        "[method]input-stream.blocking-skip",
        move |mut store: StoreContextMut<'_, T>,
              (this, len): (Resource<DynInputStream>, u64)|
              -> WitResult<u64> {
            let t = table(store.data_mut());
            let r = now(t.blocking_skip(this, len))?;
            stream_result(t, r)
        },
    )?;
    let mut p = linker.instance(POLL)?;
    p.func_wrap(
        "poll",
        move |mut store: StoreContextMut<'_, T>,
              (list,): (Vec<Resource<DynPollable>>,)|
              -> wasmtime::Result<(Vec<u32>,)> {
            Ok((now(table(store.data_mut()).poll(list))??,))
        },
    )?;
    p.func_wrap(
        "[method]pollable.block",
        move |mut store: StoreContextMut<'_, T>,
              (this,): (Resource<DynPollable>,)|
              -> wasmtime::Result<()> { now(table(store.data_mut()).block(this))? },
    )?;
    p.func_wrap(
        "[method]pollable.ready",
        move |mut store: StoreContextMut<'_, T>,
              (this,): (Resource<DynPollable>,)|
              -> wasmtime::Result<(bool,)> {
            Ok((now(table(store.data_mut()).ready(this))??,))
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_that_can_wait_are_the_world_s_async_ones_timers_sockets_and_files() {
        assert!(waits("gateway:filter/http-client", Some("send")));
        assert!(waits("gateway:filter/kv", Some("get")));
        assert!(!waits("gateway:filter/kv", None));
        assert!(waits("gateway:filter/store", Some("increment")));
        assert!(waits("gateway:filter/cache", Some("lookup")));
        assert!(!waits("gateway:filter/cache", Some("insert")));
        assert!(!waits("gateway:filter/log", Some("log")));
        assert!(waits(
            "wasi:clocks/monotonic-clock",
            Some("subscribe-duration")
        ));
        assert!(!waits("wasi:clocks/monotonic-clock", Some("now")));
        assert!(waits("wasi:sockets/tcp", None));
        assert!(waits(
            "wasi:filesystem/types",
            Some("[method]descriptor.stat")
        ));
        assert!(!waits(
            "wasi:io/streams",
            Some("[method]output-stream.blocking-flush")
        ));
        assert!(!waits("wasi:cli/stderr", Some("get-stderr")));
    }

    #[test]
    fn a_future_that_is_not_ready_traps_instead_of_waiting() {
        assert_eq!(now(async { 7 }).unwrap(), 7);
        let err = now(std::future::pending::<()>()).unwrap_err();
        assert!(err.to_string().contains("would have waited"), "{err}");
    }
}
