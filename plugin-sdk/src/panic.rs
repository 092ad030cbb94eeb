//! The panic hook [`export_filter!`](crate::export_filter) installs when an instance starts: a panic's
//! message and location go to stderr as one line (`panicked at src/lib.rs:12:9: index out of
//! bounds: ...`), which the gateway logs with the plugin, route and request, and adds to the error of
//! the call that trapped. Without it the panic would show only as "wasm `unreachable` instruction
//! executed".

use std::io::Write;
use std::panic::PanicHookInfo;
use std::sync::Once;

/// Installs the hook, once per instance (called by the export glue before `init`).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(report)));
}

fn report(info: &PanicHookInfo<'_>) {
    let message = match info.payload().downcast_ref::<&str>() {
        Some(s) => s,
        None => match info.payload().downcast_ref::<String>() {
            Some(s) => s.as_str(),
            None => "Box<dyn Any>",
        },
    };
    let line = match info.location() {
        Some(l) => format!(
            "panicked at {}:{}:{}: {message}\n",
            l.file(),
            l.line(),
            l.column()
        ),
        None => format!("panicked: {message}\n"),
    };
    // One write, so the line reaches the host whole even if the guest traps right after.
    let _ = std::io::stderr().write_all(line.as_bytes());
}
