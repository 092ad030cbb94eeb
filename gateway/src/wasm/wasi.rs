//! WASI preview 1 for core modules, as far as plugins need it: standard output and error go to the
//! log, clocks, randomness, empty arguments and environment, `proc_exit`, `sched_yield`. Every other
//! preview 1 function exists (so a module built by any SDK instantiates) and answers `ENOSYS`; there is
//! no filesystem (`fd_prestat_get` says `EBADF`, so libc finds no preopened directories) and no sockets.
//!
//! Also the guest output of both ABIs ([`GuestOutput`], [`OutputLimiter`]): what a plugin writes to
//! stdout or stderr becomes log lines (target `plugin`), each line cut at [`MAX_OUTPUT_LINE`] bytes
//! and the plugin's lines limited to [`OUTPUT_LINES_PER_SECOND`] (a token bucket of
//! [`OUTPUT_LINES_BURST`]); lines over the rate are dropped, counted, and summarised in one line.

use rand::RngCore;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wasmtime::{Caller, FuncType, Linker, Memory, Val, ValType};

/// The preview 1 module name.
pub const MODULE: &str = "wasi_snapshot_preview1";

const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
const ENOSYS: i32 = 52;

/// What the WASI shim needs from a store's data.
pub trait WasiHost: Send + 'static {
    /// The guest's exported memory, once known.
    fn memory(&self) -> Option<Memory>;
    /// Bytes written to fd 1 (stdout) or 2 (stderr).
    fn output(&mut self, fd: u32, bytes: &[u8]);
}

/// `proc_exit` was called: the guest is finished. Traps the call.
#[derive(Debug, thiserror::Error)]
#[error("the guest called proc_exit({0})")]
pub struct ProcExit(pub i32);

fn mem_write<T: WasiHost>(c: &mut Caller<'_, T>, ptr: u32, bytes: &[u8]) -> Result<(), i32> {
    let memory = c.data().memory().ok_or(EFAULT)?;
    let start = ptr as usize;
    let end = start.checked_add(bytes.len()).ok_or(EFAULT)?;
    memory
        .data_mut(c)
        .get_mut(start..end)
        .ok_or(EFAULT)?
        .copy_from_slice(bytes);
    Ok(())
}

fn mem_read<T: WasiHost>(c: &mut Caller<'_, T>, ptr: u32, len: u32) -> Result<Vec<u8>, i32> {
    let memory = c.data().memory().ok_or(EFAULT)?;
    let start = ptr as usize;
    let end = start.checked_add(len as usize).ok_or(EFAULT)?;
    memory
        .data(&c)
        .get(start..end)
        .map(<[u8]>::to_vec)
        .ok_or(EFAULT)
}

fn errno(r: Result<(), i32>) -> i32 {
    r.err().unwrap_or(ESUCCESS)
}

fn now_nanos(clock: u32) -> Result<u64, i32> {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    match clock {
        0 => Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64),
        // Monotonic, and (having no better) process and thread CPU time.
        1..=3 => Ok(START.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1),
        _ => Err(EINVAL),
    }
}

/// Signatures of the preview 1 functions this shim answers with `ENOSYS` (i = i32, I = i64).
const UNSUPPORTED: &[(&str, &str)] = &[
    ("fd_advise", "iIIi"),
    ("fd_allocate", "iII"),
    ("fd_datasync", "i"),
    ("fd_fdstat_set_flags", "ii"),
    ("fd_fdstat_set_rights", "iII"),
    ("fd_filestat_get", "ii"),
    ("fd_filestat_set_size", "iI"),
    ("fd_filestat_set_times", "iIIi"),
    ("fd_pread", "iiiIi"),
    ("fd_prestat_dir_name", "iii"),
    ("fd_pwrite", "iiiIi"),
    ("fd_read", "iiii"),
    ("fd_readdir", "iiiIi"),
    ("fd_renumber", "ii"),
    ("fd_seek", "iIii"),
    ("fd_sync", "i"),
    ("fd_tell", "ii"),
    ("path_create_directory", "iii"),
    ("path_filestat_get", "iiiii"),
    ("path_filestat_set_times", "iiiiIIi"),
    ("path_link", "iiiiiii"),
    ("path_open", "iiiiiIIii"),
    ("path_readlink", "iiiiii"),
    ("path_remove_directory", "iii"),
    ("path_rename", "iiiiii"),
    ("path_symlink", "iiiii"),
    ("path_unlink_file", "iii"),
    ("poll_oneoff", "iiii"),
    ("proc_raise", "i"),
    ("sock_accept", "iii"),
    ("sock_recv", "iiiiii"),
    ("sock_send", "iiiii"),
    ("sock_shutdown", "ii"),
];

/// Defines all of WASI preview 1 on `linker`.
pub fn add_to_linker<T: WasiHost>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut c: Caller<'_, T>, fd: i32, iovs: u32, n: u32, ret: u32| -> i32 {
            if fd != 1 && fd != 2 {
                return EBADF;
            }
            let mut total: u32 = 0;
            for i in 0..n {
                let Some(at) = i.checked_mul(8).and_then(|o| iovs.checked_add(o)) else {
                    return EFAULT;
                };
                let iov = match mem_read(&mut c, at, 8) {
                    Ok(v) => v,
                    Err(e) => return e,
                };
                let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                let bytes = match mem_read(&mut c, ptr, len) {
                    Ok(v) => v,
                    Err(e) => return e,
                };
                c.data_mut().output(fd as u32, &bytes);
                total = total.saturating_add(len);
            }
            errno(mem_write(&mut c, ret, &total.to_le_bytes()))
        },
    )?;
    for (name, count_only) in [("args_sizes_get", true), ("environ_sizes_get", true)] {
        let _ = count_only;
        linker.func_wrap(
            MODULE,
            name,
            |mut c: Caller<'_, T>, count: u32, size: u32| -> i32 {
                errno(
                    mem_write(&mut c, count, &0u32.to_le_bytes())
                        .and_then(|_| mem_write(&mut c, size, &0u32.to_le_bytes())),
                )
            },
        )?;
    }
    for name in ["args_get", "environ_get"] {
        linker.func_wrap(MODULE, name, |_c: Caller<'_, T>, _a: u32, _b: u32| -> i32 {
            ESUCCESS
        })?;
    }
    linker.func_wrap(
        MODULE,
        "clock_time_get",
        |mut c: Caller<'_, T>, id: u32, _precision: u64, ret: u32| -> i32 {
            match now_nanos(id) {
                Ok(t) => errno(mem_write(&mut c, ret, &t.to_le_bytes())),
                Err(e) => e,
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_res_get",
        |mut c: Caller<'_, T>, id: u32, ret: u32| -> i32 {
            match now_nanos(id) {
                Ok(_) => errno(mem_write(&mut c, ret, &1u64.to_le_bytes())),
                Err(e) => e,
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "random_get",
        |mut c: Caller<'_, T>, ptr: u32, len: u32| -> i32 {
            let mut buf = vec![0u8; len as usize];
            rand::rng().fill_bytes(&mut buf);
            errno(mem_write(&mut c, ptr, &buf))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |_c: Caller<'_, T>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::new(ProcExit(code)))
        },
    )?;
    linker.func_wrap(MODULE, "sched_yield", |_c: Caller<'_, T>| -> i32 {
        ESUCCESS
    })?;
    linker.func_wrap(MODULE, "fd_close", |_c: Caller<'_, T>, _fd: i32| -> i32 {
        EBADF
    })?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_get",
        |_c: Caller<'_, T>, _fd: i32, _ret: u32| -> i32 { EBADF },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_fdstat_get",
        |mut c: Caller<'_, T>, fd: i32, ret: u32| -> i32 {
            if !(0..=2).contains(&fd) {
                return EBADF;
            }
            // fdstat: filetype u8 (2 = character device), flags u16, rights base u64, rights inheriting u64.
            let mut stat = [0u8; 24];
            stat[0] = 2;
            let rights: u64 = if fd == 0 { 2 } else { 64 }; // fd_read / fd_write
            stat[8..16].copy_from_slice(&rights.to_le_bytes());
            errno(mem_write(&mut c, ret, &stat))
        },
    )?;
    let engine = linker.engine().clone();
    for (name, sig) in UNSUPPORTED {
        let params: Vec<ValType> = sig
            .chars()
            .map(|ch| {
                if ch == 'I' {
                    ValType::I64
                } else {
                    ValType::I32
                }
            })
            .collect();
        let ty = FuncType::new(&engine, params, [ValType::I32]);
        linker.func_new(MODULE, name, ty, |_c, _params, results| {
            results[0] = Val::I32(ENOSYS);
            Ok(())
        })?;
    }
    Ok(())
}

/// Longest line of guest output logged as one line; a longer line is logged in pieces of this
/// size, so a guest that never writes a newline holds at most this much host memory per stream.
/// Default: 4KiB.
pub const MAX_OUTPUT_LINE: usize = 4 << 10;

/// Lines of stdout and stderr one plugin may log per second, over all its instances, once its
/// burst is spent. Default: 20.
pub const OUTPUT_LINES_PER_SECOND: u32 = 20;

/// Lines one plugin may log at once before [`OUTPUT_LINES_PER_SECOND`] applies. Default: 100.
pub const OUTPUT_LINES_BURST: u32 = 100;

/// How long after the first line it refused a plugin's budget logs how many it refused (one line
/// for all refused meanwhile). Default: 1s.
pub const OUTPUT_SUMMARY_DELAY: Duration = Duration::from_secs(1);

/// Lines of stderr kept from the running call of a component for the error of a call that fails:
/// the first [`FIRST_WORDS`] (Go prints its panic's message before the goroutine traces) and the
/// last [`LAST_WORDS`] (a Rust panic hook's line comes last). Defaults: 2 and 10.
pub const FIRST_WORDS: usize = 2;

/// See [`FIRST_WORDS`].
pub const LAST_WORDS: usize = 10;

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output, logged at info.
    Stdout,
    /// Standard error, logged at warn.
    Stderr,
}

/// The request a guest's output was written during: its route and id.
#[derive(Debug, Clone)]
pub struct OutputRequest {
    /// The route's name.
    pub route: Arc<str>,
    /// The process-unique number of the request ([`crate::filter::RequestInfo::id`]).
    pub id: u64,
}

/// One plugin's budget of output lines (shared by all its instances): a token bucket.
#[derive(Debug)]
pub struct OutputLimiter {
    plugin: Arc<str>,
    bucket: Mutex<Bucket>,
    dropped: AtomicU64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Lines dropped since the last summary.
    unreported: u64,
    /// A summary of the lines dropped is to be logged.
    summary_due: bool,
}

impl OutputLimiter {
    /// The budget of plugin `plugin`, full.
    pub fn new(plugin: Arc<str>) -> OutputLimiter {
        let now = Instant::now();
        OutputLimiter {
            plugin,
            bucket: Mutex::new(Bucket {
                tokens: f64::from(OUTPUT_LINES_BURST),
                refilled: now,
                unreported: 0,
                summary_due: false,
            }),
            dropped: AtomicU64::new(0),
        }
    }

    /// The plugin's name.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// Lines dropped for the rate since the plugin was loaded.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Takes a token for one line. A line refused is counted, and the lines refused are summarised
    /// in one log line a second after the first of them ([`OUTPUT_SUMMARY_DELAY`]; at once when
    /// lines pass again if there is no async runtime to wait on).
    fn admit(self: &Arc<Self>) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let elapsed = now.duration_since(b.refilled).as_secs_f64();
        b.refilled = now;
        b.tokens = (b.tokens + elapsed * f64::from(OUTPUT_LINES_PER_SECOND))
            .min(f64::from(OUTPUT_LINES_BURST));
        let admitted = b.tokens >= 1.0;
        if admitted {
            b.tokens -= 1.0;
            if b.unreported > 0 && !b.summary_due {
                drop(b);
                self.summarise();
            }
            return true;
        }
        b.unreported += 1;
        self.dropped.fetch_add(1, Ordering::Relaxed);
        if !b.summary_due {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                b.summary_due = true;
                let this = self.clone();
                rt.spawn(async move {
                    tokio::time::sleep(OUTPUT_SUMMARY_DELAY).await;
                    this.summarise();
                });
            }
        }
        false
    }

    /// Logs how many lines were refused since the last summary, if any.
    fn summarise(&self) {
        let n = {
            let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
            b.summary_due = false;
            std::mem::take(&mut b.unreported)
        };
        if n > 0 {
            tracing::warn!(
                target: "plugin",
                plugin = &*self.plugin,
                dropped = n,
                "plugin output over {OUTPUT_LINES_PER_SECOND} lines per second: {n} lines dropped"
            );
        }
    }

    /// Logs one line of output, if the budget allows.
    fn line(self: &Arc<Self>, stream: Stream, request: Option<&OutputRequest>, text: &str) {
        if !self.admit() {
            return;
        }
        let plugin = &*self.plugin;
        // A `\r` or an escape sequence in a guest's line cannot rewrite the log's own lines.
        let text = &escape_controls(text);
        let stream_name = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        match (stream, request) {
            (Stream::Stdout, Some(r)) => tracing::info!(
                target: "plugin", plugin, route = %r.route,
                request_id = %crate::errors::RequestId::text_of(r.id), stream = stream_name, "{text}"
            ),
            (Stream::Stdout, None) => {
                tracing::info!(target: "plugin", plugin, stream = stream_name, "{text}")
            }
            (Stream::Stderr, Some(r)) => tracing::warn!(
                target: "plugin", plugin, route = %r.route,
                request_id = %crate::errors::RequestId::text_of(r.id), stream = stream_name, "{text}"
            ),
            (Stream::Stderr, None) => {
                tracing::warn!(target: "plugin", plugin, stream = stream_name, "{text}")
            }
        }
    }

    /// Adds `bytes` written to `stream` to the partial line in `pending` and logs every line it
    /// completes (without its line end), and a piece of [`MAX_OUTPUT_LINE`] bytes of a longer one.
    /// Each line logged is also given to `seen`.
    pub fn write(
        self: &Arc<Self>,
        pending: &mut Vec<u8>,
        stream: Stream,
        request: Option<&OutputRequest>,
        mut bytes: &[u8],
        mut seen: impl FnMut(&str),
    ) {
        while !bytes.is_empty() {
            let room = MAX_OUTPUT_LINE - pending.len();
            let take = match bytes.iter().take(room).position(|b| *b == b'\n') {
                Some(nl) => nl + 1,
                None => bytes.len().min(room),
            };
            pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if pending.last() == Some(&b'\n') || pending.len() >= MAX_OUTPUT_LINE {
                self.flush(pending, stream, request, &mut seen);
            }
        }
    }

    /// Logs what is left in `pending` as a line (the guest ended without a line end).
    pub fn flush(
        self: &Arc<Self>,
        pending: &mut Vec<u8>,
        stream: Stream,
        request: Option<&OutputRequest>,
        mut seen: impl FnMut(&str),
    ) {
        if pending.is_empty() {
            return;
        }
        let mut line = &pending[..];
        if let Some(rest) = line.strip_suffix(b"\n") {
            line = rest.strip_suffix(b"\r").unwrap_or(rest);
        }
        let text = String::from_utf8_lossy(line);
        seen(&text);
        self.line(stream, request, &text);
        pending.clear();
    }
}

/// One instance's output: the partial lines of both streams, the request being served, and the
/// stderr lines of the running call ([`LAST_WORDS`]).
#[derive(Debug)]
pub struct GuestOutput {
    limiter: Arc<OutputLimiter>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    request: Option<OutputRequest>,
    last_words: Words,
}

/// The stderr lines of one call: the first few, the last few, and how many between were left out.
#[derive(Debug, Default)]
struct Words {
    first: Vec<String>,
    last: VecDeque<String>,
    left_out: usize,
}

impl Words {
    fn remember(&mut self, line: &str) {
        if self.first.len() < FIRST_WORDS {
            self.first.push(line.to_owned());
            return;
        }
        if self.last.len() == LAST_WORDS {
            self.last.pop_front();
            self.left_out += 1;
        }
        self.last.push_back(line.to_owned());
    }

    fn take(&mut self) -> Vec<String> {
        let Words {
            first,
            last,
            left_out,
        } = std::mem::take(self);
        let mut all = first;
        if left_out > 0 {
            all.push(format!("... ({left_out} lines left out)"));
        }
        all.extend(last);
        all
    }
}

impl GuestOutput {
    /// The output of a new instance of the plugin whose budget is `limiter`.
    pub fn new(limiter: Arc<OutputLimiter>) -> GuestOutput {
        GuestOutput {
            limiter,
            stdout: Vec::new(),
            stderr: Vec::new(),
            request: None,
            last_words: Words::default(),
        }
    }

    /// A call into the guest begins, serving `request` (or none: `init`, between requests).
    pub fn begin_call(&mut self, request: Option<OutputRequest>) {
        self.request = request;
        self.last_words = Words::default();
    }

    /// Bytes the guest wrote to `stream`.
    pub fn write(&mut self, stream: Stream, bytes: &[u8]) {
        let GuestOutput {
            limiter,
            stdout,
            stderr,
            request,
            last_words,
        } = self;
        let (pending, keep) = match stream {
            Stream::Stdout => (stdout, false),
            Stream::Stderr => (stderr, true),
        };
        limiter.write(pending, stream, request.as_ref(), bytes, |line| {
            if keep {
                last_words.remember(line);
            }
        });
    }

    /// The call failed: its partial lines are logged, and the stderr lines it wrote are returned.
    pub fn take_last_words(&mut self) -> Vec<String> {
        let GuestOutput {
            limiter,
            stdout,
            stderr,
            request,
            last_words,
        } = self;
        limiter.flush(stdout, Stream::Stdout, request.as_ref(), |_| {});
        limiter.flush(stderr, Stream::Stderr, request.as_ref(), |line| {
            last_words.remember(line)
        });
        last_words.take()
    }
}

impl Drop for GuestOutput {
    /// A partial line left when the instance goes is logged.
    fn drop(&mut self) {
        let request = self.request.as_ref();
        self.limiter
            .flush(&mut self.stdout, Stream::Stdout, request, |_| {});
        self.limiter
            .flush(&mut self.stderr, Stream::Stderr, request, |_| {});
    }
}

/// A component instance's stdout or stderr for wasmtime-wasi: what the guest writes goes to the
/// instance's [`GuestOutput`] at once (nothing is queued between the guest and the log).
#[derive(Clone)]
pub struct OutputPipe {
    output: Arc<Mutex<GuestOutput>>,
    stream: Stream,
}

impl OutputPipe {
    /// The pipe of `stream` into `output`.
    pub fn new(output: Arc<Mutex<GuestOutput>>, stream: Stream) -> OutputPipe {
        OutputPipe { output, stream }
    }

    fn put(&self, bytes: &[u8]) {
        lock(&self.output).write(self.stream, bytes);
    }
}

/// The output of an instance, even if a thread panicked holding it.
pub fn lock(output: &Mutex<GuestOutput>) -> std::sync::MutexGuard<'_, GuestOutput> {
    output.lock().unwrap_or_else(|e| e.into_inner())
}

impl wasmtime_wasi::cli::IsTerminal for OutputPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for OutputPipe {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl wasmtime_wasi::p2::OutputStream for OutputPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.put(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        // Always ready: what is written is logged or dropped at once.
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for OutputPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for OutputPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.put(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// `text` with control characters (newlines, carriage returns, escapes) written as `\u{..}`: guest
/// text (stderr lines, function names) cannot start a line of the gateway's log of its own.
pub(crate) fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_unicode().to_string(),
            false => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod output_tests {
    use super::*;

    fn limiter() -> Arc<OutputLimiter> {
        Arc::new(OutputLimiter::new(Arc::from("p")))
    }

    #[test]
    fn lines_are_split_at_line_ends_and_cut_at_the_limit() {
        let l = limiter();
        let mut pending = Vec::new();
        let mut seen = Vec::new();
        l.write(&mut pending, Stream::Stdout, None, b"one\ntw", |s| {
            seen.push(s.to_owned())
        });
        l.write(&mut pending, Stream::Stdout, None, b"o\r\nthr", |s| {
            seen.push(s.to_owned())
        });
        assert_eq!(seen, ["one", "two"]);
        assert_eq!(pending, b"thr");
        let long = vec![b'x'; MAX_OUTPUT_LINE * 2 + 10];
        seen.clear();
        l.write(&mut pending, Stream::Stdout, None, &long, |s| {
            seen.push(s.to_owned())
        });
        assert_eq!(seen.len(), 2);
        assert!(seen.iter().all(|s| s.len() == MAX_OUTPUT_LINE));
        assert!(pending.len() <= MAX_OUTPUT_LINE, "{}", pending.len());
    }

    #[test]
    fn lines_over_the_rate_are_dropped_and_counted() {
        let l = limiter();
        let mut pending = Vec::new();
        let flood = "line\n".repeat(OUTPUT_LINES_BURST as usize * 3);
        l.write(&mut pending, Stream::Stderr, None, flood.as_bytes(), |_| {});
        // The burst passes (and the few tokens refilled while it ran); the rest is dropped.
        let dropped = l.dropped();
        assert!(
            dropped >= u64::from(OUTPUT_LINES_BURST) * 2 - 5,
            "only {dropped} dropped"
        );
    }

    #[test]
    fn a_failed_call_gets_the_stderr_lines_it_wrote() {
        let mut out = GuestOutput::new(limiter());
        out.write(Stream::Stderr, b"before\n");
        out.begin_call(None);
        out.write(Stream::Stdout, b"not this\n");
        out.write(
            Stream::Stderr,
            b"panic: the message first, as Go writes it\n",
        );
        for i in 0..FIRST_WORDS + LAST_WORDS + 2 {
            out.write(Stream::Stderr, format!("line {i}\n").as_bytes());
        }
        out.write(Stream::Stderr, b"panicked at src/lib.rs:3:5: boom");
        let words = out.take_last_words();
        assert_eq!(words.len(), FIRST_WORDS + 1 + LAST_WORDS, "{words:?}");
        assert_eq!(words[0], "panic: the message first, as Go writes it");
        assert_eq!(words[FIRST_WORDS], "... (4 lines left out)");
        assert_eq!(words.last().unwrap(), "panicked at src/lib.rs:3:5: boom");
        assert!(!words.iter().any(|w| w == "before" || w == "not this"));
        // The next call starts with nothing.
        out.begin_call(None);
        assert!(out.take_last_words().is_empty());
    }
}
