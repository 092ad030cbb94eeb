//! A plugin that panics or prints explains itself, through the real gateway binary: the panic's
//! message and location (the Rust SDK's panic hook, on the guest's stderr) and the Wasm backtrace reach
//! the gateway's log with the plugin, route and request id, while the client's 500 body stays
//! generic; a plugin's flood of output is held to its rate; `gateway plugin test` prints the panic of a
//! failing case; the log has no colour codes when stderr is not a terminal; and a reload refused for a
//! bad `.wasm` says why in one line. The hostile component's cases run on both of its builds: one
//! called without a fiber (it imports nothing that can wait), one called on a fiber (`_on_a_fiber`).

use crate::harness::*;
use std::path::Path;
use std::time::Duration;

/// The hostile component: with `fiber`, its build that imports the key-value store, which the
/// gateway calls on a fiber (`tests/wasm` asserts which path each build is on).
fn build(fiber: bool) -> &'static Path {
    let built = xtask::component_fixtures().unwrap_or_else(|e| panic!("{e}"));
    match fiber {
        true => &built.hostile_fiber,
        false => &built.hostile,
    }
}

/// `panicked at FILE:`, the start of the panic hook's line for the build.
fn panicked_at(fiber: bool) -> String {
    format!(
        "panicked at {}:",
        gateway_test_support::hostile_component_source(fiber)
    )
}

/// Checks that `gw` runs the build asked for on route `r`: only the fiber build has mode `kv`,
/// answered by the filter itself (the store is denied: no namespace is granted).
async fn serves_build(gw: &GatewayProcess, fiber: bool) {
    let (status, _, body) = get_with(&gw.url("/x"), &[("x-hostile", "kv")]).await;
    let want = if fiber { "kv denied" } else { "ok" };
    assert_eq!((status, body.as_str()), (200, want), "fiber: {fiber}");
}

/// The hostile component on route `r` (answered by the gateway itself after the filter).
fn config(wasm: &Path) -> String {
    GatewayConfig::new()
        .plugin(Plugin::new("hostile", wasm))
        .route(Route::new("r").respond("ok").filter("hostile", ""))
        .yaml()
}

fn lines(gw: &GatewayProcess) -> Vec<String> {
    gw.log.lock().unwrap().clone()
}

/// Waits until a line of the log has every one of `parts`; returns it.
async fn line_with(gw: &GatewayProcess, parts: &[&str]) -> String {
    let mut found = None;
    eventually(Duration::from_secs(5), || {
        found = lines(gw)
            .into_iter()
            .find(|l| parts.iter().all(|p| l.contains(p)));
        let done = found.is_some();
        async move { done }
    })
    .await;
    found.unwrap_or_else(|| panic!("no line with {parts:?} in:\n{}", lines(gw).join("\n")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_logged_with_message_location_and_backtrace_and_the_client_sees_neither() {
    a_panic_is_logged(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_on_a_fiber_is_logged_with_message_location_and_backtrace() {
    a_panic_is_logged(true).await;
}

async fn a_panic_is_logged(fiber: bool) {
    let gw = GatewayProcess::start_with_log(&config(build(fiber)), "info").await;
    serves_build(&gw, fiber).await;
    let (status, _, body) = get_with(&gw.url("/x"), &[("x-hostile", "index")]).await;
    assert_eq!(status, 500, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "filter_failed", "{body}");
    let id = v["request_id"].as_str().expect("a request id").to_owned();
    for secret in ["index out of bounds", "lib.rs", "unreachable", "backtrace"] {
        assert!(
            !body.contains(secret),
            "the client was told {secret:?}: {body}"
        );
    }

    // The panic hook's line, as the plugin's stderr, with the plugin, route and request.
    let line = line_with(
        &gw,
        &[
            "index out of bounds: the len is 0 but the index is 5",
            &panicked_at(fiber),
            "stream=\"stderr\"",
        ],
    )
    .await;
    assert!(line.contains("plugin=\"hostile\""), "{line}");
    assert!(line.contains("route=r"), "{line}");
    assert!(line.contains(&id), "{line}");
    // The failure's line carries the panic and the backtrace with function names.
    line_with(&gw, &["plugin call failed", "unreachable"]).await;
    let log = lines(&gw).join("\n");
    let failed = &log[log.find("plugin call failed").unwrap()..];
    assert!(failed.contains("guest stderr:"), "{failed}");
    assert!(failed.contains("wasm backtrace:"), "{failed}");
    assert!(
        failed.contains("gateway_plugin_sdk::rt::Dyn>::on_request"),
        "{failed}"
    );

    // The instance was thrown away; the next request is served.
    let (status, _, body) = get_with(&gw.url("/x"), &[]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_plugin_output_stays_under_the_rate() {
    a_flood_of_output_stays_under_the_rate(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_plugin_output_on_a_fiber_stays_under_the_rate() {
    a_flood_of_output_stays_under_the_rate(true).await;
}

async fn a_flood_of_output_stays_under_the_rate(fiber: bool) {
    // Time enough for the flood on a loaded machine (the deadline counts wall time).
    let gw = GatewayProcess::start_with_log(
        &GatewayConfig::new()
            .plugin(Plugin::new("hostile", build(fiber)).lines("    limits: {cpu_per_call: 5s}\n"))
            .route(Route::new("r").respond("ok").filter("hostile", ""))
            .yaml(),
        "info",
    )
    .await;
    serves_build(&gw, fiber).await;
    // 300 lines on each stream in one request, twice.
    let started = std::time::Instant::now();
    for _ in 0..2 {
        let (status, _, body) = get_with(&gw.url("/x"), &[("x-hostile", "chatty")]).await;
        assert_eq!(status, 200, "{body}");
    }
    let summary = line_with(&gw, &["lines dropped", "plugin=\"hostile\""]).await;
    assert!(summary.contains("lines per second"), "{summary}");
    let chatty = lines(&gw)
        .iter()
        .filter(|l| l.contains("chatty std"))
        .count();
    // The burst, and what the rate refilled while the requests ran (whole seconds, rounded up, so
    // a loaded machine that takes longer is allowed what the rate gave it meanwhile).
    let seconds = started.elapsed().as_secs() + 1;
    let most = gateway::wasm::wasi::OUTPUT_LINES_BURST
        + gateway::wasm::wasi::OUTPUT_LINES_PER_SECOND * seconds as u32;
    assert!(chatty >= 50, "only {chatty} lines logged");
    assert!(chatty <= most as usize, "{chatty} lines logged of 1200");
    let dropped: u64 = lines(&gw)
        .iter()
        .filter(|l| l.contains("lines dropped"))
        .filter_map(|l| {
            l.split("dropped=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(dropped > 0, "no count of dropped lines");
    // The same count on /metrics: every line not logged (1 200 written).
    let m = get(&format!("http://{}/metrics", gw.admin)).await.2;
    let counted = metric(
        &m,
        "gateway_plugin_output_lines_dropped_total{plugin=\"hostile\"}",
    )
    .unwrap_or_else(|| panic!("no dropped-lines figure: {m}"));
    assert_eq!(counted as usize + chatty, 1200, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_has_no_colour_codes_when_stderr_is_not_a_terminal() {
    let gw = GatewayProcess::start_with_log(&config(build(false)), "info").await;
    let _ = get_with(&gw.url("/x"), &[("x-hostile", "trap")]).await;
    line_with(&gw, &["plugin call failed"]).await;
    let log = lines(&gw);
    assert!(log.len() > 2, "{log:?}");
    let coloured: Vec<_> = log.iter().filter(|l| l.contains('\x1b')).collect();
    assert!(coloured.is_empty(), "escape codes in: {coloured:?}");
}

#[test]
fn plugin_test_prints_the_panic_of_a_failing_case() {
    plugin_test_prints_the_panic(false);
}

#[test]
fn plugin_test_prints_the_panic_of_a_failing_case_on_a_fiber() {
    plugin_test_prints_the_panic(true);
}

fn plugin_test_prints_the_panic(fiber: bool) {
    let dir = TempDir::new("panic-fixture");
    let fixture = dir.0.join("hostile.test.yaml");
    std::fs::write(
        &fixture,
        format!(
            "plugin:\n  path: {}\ncases:\n  - name: an index out of bounds\n    request: {{path: /, headers: {{x-hostile: index}}}}\n    expect:\n      response: {{status: 200}}\n",
            build(fiber).display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["plugin", "test"])
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL  an index out of bounds"), "{stdout}");
    assert!(
        stdout.contains(&panicked_at(fiber))
            && stdout.contains("index out of bounds: the len is 0 but the index is 5"),
        "{stdout}"
    );
    assert!(stdout.contains("wasm backtrace:"), "{stdout}");
    assert!(
        stdout.contains("gateway_plugin_sdk::rt::Dyn>::on_request"),
        "{stdout}"
    );
    // The fixture keeps its debug info and `plugin test` reads it: frames name their file and line.
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with("at ") && l.contains(".rs:")),
        "no file:line in the backtrace: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_refused_for_a_plugin_that_panics_says_why_in_one_line() {
    a_reload_refused_for_a_panic(false).await;
}

/// `init` runs on the fiber too (instantiation and the call are async).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_refused_for_a_plugin_that_panics_on_a_fiber_says_why_in_one_line() {
    a_reload_refused_for_a_panic(true).await;
}

async fn a_reload_refused_for_a_panic(fiber: bool) {
    let gw = GatewayProcess::start_with_log(&config(build(fiber)), "info").await;
    serves_build(&gw, fiber).await;
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    // The plugin panics in `init` with this config: the new config cannot be built.
    replace_file(
        &gw.config_path,
        &text.replace(
            "{plugin: hostile, config: \"\"}",
            "{plugin: hostile, config: \"trap\"}",
        ),
    );
    gw.signal("HUP");
    let line = line_with(&gw, &["config reload failed"]).await;
    assert!(line.contains("trap in init"), "{line}");
    assert!(line.contains(&panicked_at(fiber)), "{line}");
    // The line is the whole event: the next line of the log is another event (a timestamp).
    let log = lines(&gw);
    let at = log.iter().position(|l| *l == line).unwrap();
    if let Some(next) = log.get(at + 1) {
        assert!(
            next.starts_with("20"),
            "the reload failure goes on: {next:?}"
        );
    }
    // The running config stays.
    let (status, _, body) = get_with(&gw.url("/x"), &[]).await;
    assert_eq!(status, 200, "{body}");
}

/// Through `gateway plugin test`, which has no start-up deadline (a cold compile of the Go
/// component can take longer than a gateway process is given to start on a loaded machine).
#[test]
fn a_go_panic_shows_its_message_and_goroutine_trace() {
    let kitchen = xtask::go::go_kitchen().unwrap_or_else(|e| panic!("{e}"));
    let dir = TempDir::new("go-panic-fixture");
    let fixture = dir.0.join("kitchen.test.yaml");
    std::fs::write(
        &fixture,
        format!(
            "plugin:\n  path: {}\n  instance_mode: reuse\nroute: r\ncases:\n  - name: a go panic\n    request: {{path: /, headers: {{x-test: panic}}}}\n    expect:\n      response: {{status: 200}}\n",
            kitchen.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["plugin", "test"])
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Go's runtime writes the panic to stderr before it traps: a log line of the plugin's.
    assert!(
        stderr.lines().any(
            |l| l.contains("panic: kitchen: panic in OnRequest as asked")
                && l.contains("stream=\"stderr\"")
                && l.contains("route=r")
        ),
        "{stderr}"
    );
    // The failure keeps the message (the first lines) and where it was (the goroutine's trace and
    // the Wasm backtrace).
    assert!(stdout.contains("FAIL  a go panic"), "{stdout}");
    assert!(
        stdout.contains("panic: kitchen: panic in OnRequest as asked"),
        "{stdout}"
    );
    assert!(stdout.contains("kitchen/main.go:"), "{stdout}");
    assert!(stdout.contains("main.__Kitchen_.OnRequest"), "{stdout}");
}
