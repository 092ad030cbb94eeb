//! Hostile plugins: each failure is typed, counted, throws the VM away, and the next request succeeds.

use crate::support::*;
use gateway::config::Size;
use gateway::filter::{Filter, FilterError, Verdict};
use std::sync::Arc;
use std::time::Duration;

async fn hostile() -> (Arc<gateway::wasm::LoadedPlugin>, Arc<dyn Filter>) {
    let mut cfg = plugin_cfg("hostile", &fixtures().hostile);
    cfg.limits.cpu_per_call = gateway::config::Dur(Duration::from_millis(250));
    cfg.limits.memory = Size(16 << 20);
    let p = load(cfg, host().await).await;
    let f = filter(&p, "r", "").await;
    (p, f)
}

async fn next_request_succeeds(f: &Arc<dyn Filter>) {
    let (v, req, _ctx) = request_headers(f, &[], true).await;
    assert!(matches!(v, Ok(Verdict::Continue)), "{v:?}");
    assert_eq!(hv(&req.headers, "x-hostile-ok"), "1");
}

#[tokio::test]
async fn trap() {
    let (p, f) = hostile().await;
    next_request_succeeds(&f).await;
    let (v, _, _ctx) = request_headers(&f, &[("x-hostile", "trap")], true).await;
    let Err(FilterError::Trap(msg)) = v else {
        panic!("{v:?}")
    };
    // The error names where it trapped: the backtrace, with the callback the host called last.
    assert!(msg.contains("wasm backtrace:"), "{msg}");
    assert!(msg.contains("proxy_on_request_headers"), "{msg}");
    next_request_succeeds(&f).await;
    let h = p.health().snapshot();
    assert_eq!(h.traps, 1);
    assert_eq!(h.instances_discarded, 1);
    assert_eq!(h.instances_created, 2);
    assert_eq!(h.consecutive_failures, 0);
}

#[tokio::test]
async fn infinite_loop_is_stopped_by_the_cpu_limit() {
    let (p, f) = hostile().await;
    let started = std::time::Instant::now();
    let (v, _, _ctx) = request_headers(&f, &[("x-hostile", "loop")], true).await;
    assert!(matches!(v, Err(FilterError::CpuLimit)), "{v:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    next_request_succeeds(&f).await;
    assert_eq!(p.health().snapshot().cpu_limits, 1);
}

#[tokio::test]
async fn memory_growth_past_the_cap() {
    let (p, f) = hostile().await;
    let (v, _, _ctx) = request_headers(&f, &[("x-hostile", "memory")], true).await;
    assert!(matches!(v, Err(FilterError::MemoryLimit)), "{v:?}");
    next_request_succeeds(&f).await;
    assert_eq!(p.health().snapshot().memory_limits, 1);
}

#[tokio::test]
async fn deep_recursion_is_a_stack_overflow_trap() {
    let (_p, f) = hostile().await;
    let (v, _, _ctx) = request_headers(&f, &[("x-hostile", "recursion")], true).await;
    match v {
        Err(FilterError::Trap(msg)) => assert!(msg.contains("call stack exhausted"), "{msg}"),
        other => panic!("{other:?}"),
    }
    next_request_succeeds(&f).await;
}

#[tokio::test]
async fn bad_pointers_get_error_statuses() {
    let (_p, f) = hostile().await;
    let (v, req, _ctx) = request_headers(&f, &[("x-hostile", "bad-pointers")], true).await;
    assert!(matches!(v, Ok(Verdict::Continue)), "{v:?}");
    // InvalidMemoryAccess (6) for every out-of-range pointer or length, BadArgument (2) for unknown
    // buffer and map types and an unknown context id.
    assert_eq!(hv(&req.headers, "x-statuses"), "6,6,6,6,6,6,6,2,2,2");
    next_request_succeeds(&f).await;
}

#[tokio::test]
async fn header_values_with_cr_lf_nul_are_refused() {
    let (p, f) = hostile().await;
    let (v, req, _ctx) = request_headers(&f, &[("x-hostile", "crlf")], true).await;
    assert!(matches!(v, Ok(Verdict::Continue)), "{v:?}");
    assert_eq!(hv(&req.headers, "x-statuses"), "2,2,2,2,2,2,2");
    assert!(req.headers.get("x-injected").is_none());
    assert!(req.headers.get("x-evil").is_none());
    // Through the SDK the error status is a panic: the request fails, nothing was set.
    let (v, req, _ctx) = request_headers(&f, &[("x-hostile", "crlf-sdk")], true).await;
    assert!(matches!(v, Err(FilterError::Trap(_))), "{v:?}");
    assert!(req.headers.get("x-injected").is_none());
    next_request_succeeds(&f).await;
    assert!(p.health().snapshot().healthy);
}

#[tokio::test]
async fn repeated_failures_make_the_plugin_unhealthy_until_a_success() {
    let (p, f) = hostile().await;
    for _ in 0..6 {
        let (v, _, _ctx) = request_headers(&f, &[("x-hostile", "trap")], true).await;
        assert!(v.is_err());
    }
    let h = p.health().snapshot();
    assert!(!h.healthy);
    assert_eq!(h.consecutive_failures, 6);
    next_request_succeeds(&f).await;
    assert!(p.health().snapshot().healthy);
}

#[tokio::test]
async fn instance_limit_bounds_requests_in_flight() {
    let mut cfg = plugin_cfg("limited", &fixtures().hostile);
    cfg.limits.instances = 2;
    let p = load(cfg, host().await).await;
    let f = filter(&p, "r", "").await;
    let a = f.new_ctx(&info()).unwrap();
    let _b = f.new_ctx(&info()).unwrap();
    assert!(matches!(
        f.new_ctx(&info()),
        Err(FilterError::Unavailable(_))
    ));
    drop(a);
    assert!(eventually(WAIT, async || f.new_ctx(&info()).is_ok()).await);
}

/// The hostile component (the Rust SDK, whose export glue installs a panic hook): with `fiber`, its
/// build that is called on a fiber (then its output reaches the host through wasmtime-wasi's own
/// stream calls, not the synchronous ones of a component called without a fiber).
async fn hostile_component(fiber: bool) -> Arc<dyn Filter> {
    let built = xtask::component_fixtures().unwrap_or_else(|e| panic!("{e}"));
    let path = match fiber {
        true => &built.hostile_fiber,
        false => &built.hostile,
    };
    let p = load(plugin_cfg("hostile-component", path), host().await).await;
    assert_eq!(p.on_fiber(), fiber, "{}", path.display());
    filter(&p, "r", "").await
}

async fn a_panic_carries_its_message_location_and_backtrace(fiber: bool) {
    let f = hostile_component(fiber).await;
    let (v, _, _ctx) = request_headers(&f, &[("x-hostile", "index")], true).await;
    let Err(FilterError::Trap(msg)) = v else {
        panic!("{v:?}")
    };
    // Without the hook and the captured stderr, all there was: "wasm `unreachable` instruction executed".
    assert!(
        msg.contains("index out of bounds: the len is 0 but the index is 5"),
        "{msg}"
    );
    // The location, as the guest's compiler wrote it (`hostile/src/lib.rs:LINE:COL`).
    let location = format!(
        "panicked at {}:",
        gateway_test_support::hostile_component_source(fiber)
    );
    let at = msg
        .find(&location)
        .unwrap_or_else(|| panic!("no location in {msg}"));
    let line: String = msg[at + location.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(line.parse::<u32>().unwrap() > 0, "{msg}");
    // Function names (the SDK's glue that ran the filter, demangled).
    assert!(
        msg.contains("gateway_plugin_sdk::rt::Dyn>::on_request"),
        "{msg}"
    );
    assert!(msg.contains("wasm backtrace:"), "{msg}");
    // The panic of one request is not carried into the error of another.
    let (v, _, _ctx) = request_headers(&f, &[("x-hostile", "trap")], true).await;
    let Err(FilterError::Trap(msg)) = v else {
        panic!("{v:?}")
    };
    assert!(msg.contains(&location), "{msg}");
    assert!(msg.contains("hostile trap"), "{msg}");
    assert!(!msg.contains("index out of bounds"), "{msg}");
}

#[tokio::test]
async fn a_component_panic_carries_its_message_location_and_backtrace() {
    a_panic_carries_its_message_location_and_backtrace(false).await;
}

#[tokio::test]
async fn a_component_panic_on_a_fiber_carries_its_message_location_and_backtrace() {
    a_panic_carries_its_message_location_and_backtrace(true).await;
}
