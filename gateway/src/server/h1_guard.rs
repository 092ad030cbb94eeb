//! A strict HTTP/1.1 framing guard between the socket and hyper.
//!
//! hyper is lenient where a proxy must not be: it accepts bare LF line endings, drops a Content-Length
//! that comes after Transfer-Encoding, and has no limit on the request target. A request that two parsers
//! could frame differently is how request smuggling starts, so every byte a client sends passes through
//! this guard first. It follows message boundaries (heads, Content-Length bodies, chunked bodies and
//! trailers), validates each head before hyper sees any of it, and on the first violation delivers only
//! the bytes before it, then end-of-stream: hyper finishes the responses it owes, and when it shuts the
//! connection down the guard writes the error response (400, 408, 414, 431, 501, 505) and closes.
//!
//! It also owns the connection's clocks: the time a client may take to send a request head, and the time
//! a connection with no request in flight may stay open. A connection that starts with the HTTP/2
//! preface is passed through untouched (HTTP/2 framing is checked by the h2 crate).
//!
//! A request that asks to upgrade the connection (`Connection: upgrade` or CONNECT) holds back every
//! byte after its head until the request handler decides: if the upstream agreed to switch protocols the
//! rest is passed through as a tunnel, otherwise parsing goes on. No byte is tunnelled before the
//! upstream agreed.

use crate::conn::{ConnShared, UPGRADE_NO, UPGRADE_NONE, UPGRADE_WAITING, UPGRADE_YES};
use bytes::{Buf, BytesMut};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The limits the guard enforces.
#[derive(Clone, Debug)]
pub struct GuardLimits {
    /// Request head bytes (and trailer bytes); over it: 431.
    pub max_header_bytes: usize,
    /// Header fields in a head (or trailer section); over it: 431.
    pub max_headers: usize,
    /// Request target bytes; over it: 414.
    pub max_uri_bytes: usize,
    /// Time from the first byte of a head to its end; then 408.
    pub header_read_timeout: Duration,
    /// Time without bytes and without a request in flight; then the connection is closed.
    pub idle_timeout: Duration,
    /// Time a write to the client may wait without progress (the client does not read); then the
    /// connection fails, and the response and its upstream connection are let go.
    pub send_timeout: Duration,
}

const IO_PRESENT: &str = "the socket is present until the guard is dropped";
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Bytes read from the socket at a time while they need checking.
const SCRATCH: usize = 16 * 1024;
/// Longest chunk-size line (size and extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// Why a request was refused before it reached hyper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Status sent.
    pub status: u16,
    /// What was wrong, sent in the body and logged.
    pub reason: &'static str,
}

fn reject(status: u16, reason: &'static str) -> Reject {
    Reject { status, reason }
}

fn bad(reason: &'static str) -> Reject {
    reject(400, reason)
}

#[derive(Debug)]
enum Chunk {
    Size(Vec<u8>),
    Data(u64),
    DataEnd(u8),
    Trailers(Vec<u8>),
}

#[derive(Debug)]
enum State {
    Sniff(Vec<u8>),
    Head(Vec<u8>, Option<Instant>),
    Length(u64),
    Chunked(Chunk),
    AwaitUpgrade,
    Passthrough,
    Closed,
}

/// What a head says about the message that follows.
#[derive(Debug, PartialEq, Eq)]
pub struct HeadInfo {
    /// Body framing.
    pub framing: Framing,
    /// The request asks to change protocols.
    pub upgrade: bool,
}

/// Body framing of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Content-Length.
    Length(u64),
    /// Transfer-Encoding: chunked.
    Chunked,
}

/// Called for every refused request.
type OnReject = Box<dyn Fn(&Reject) + Send + Sync>;

/// The socket wrapper; see the module docs.
pub struct Guarded<IO: AsyncWrite + Unpin + Send + 'static> {
    /// Present until drop.
    io: Option<IO>,
    state: State,
    limits: Arc<GuardLimits>,
    ready: BytesMut,
    /// Where in `ready` the head of the message being read starts, while none of it was delivered.
    msg_start: Option<usize>,
    held_buf: Vec<u8>,
    scratch: Vec<u8>,
    pending_reject: Option<Reject>,
    reject_out: Option<bytes::Bytes>,
    eof: bool,
    shared: Arc<ConnShared>,
    last_read: Instant,
    timer: Pin<Box<Sleep>>,
    /// The send timeout's clock, armed when a write has to wait (made on the first wait).
    write_stall: Option<Pin<Box<Sleep>>>,
    /// A write is waiting for the client to read.
    write_waiting: bool,
    on_reject: Option<OnReject>,
}

impl<IO: AsyncWrite + Unpin + Send + 'static> Guarded<IO> {
    /// Wraps a fresh connection.
    pub fn new(io: IO, limits: Arc<GuardLimits>, shared: Arc<ConnShared>) -> Self {
        let now = Instant::now();
        Guarded {
            io: Some(io),
            state: State::Sniff(Vec::new()),
            timer: Box::pin(tokio::time::sleep_until((now + limits.idle_timeout).into())),
            limits,
            ready: BytesMut::new(),
            msg_start: None,
            held_buf: Vec::new(),
            scratch: Vec::new(),
            pending_reject: None,
            reject_out: None,
            eof: false,
            shared,
            last_read: now,
            write_stall: None,
            write_waiting: false,
            on_reject: None,
        }
    }

    /// Calls `f` for every refused request (for metrics and logs).
    pub fn on_reject(mut self, f: impl Fn(&Reject) + Send + Sync + 'static) -> Self {
        self.on_reject = Some(Box::new(f));
        self
    }

    /// Whether the connection is HTTP/2 (known once the first bytes arrived).
    pub fn is_passthrough(&self) -> bool {
        matches!(self.state, State::Passthrough)
    }

    fn fail(&mut self, r: Reject, mut at_head: bool) {
        // A body error in a message whose head hyper has not seen yet: take the head back, so the
        // request is refused whole and nothing of it is forwarded.
        if !at_head {
            if let Some(start) = self.msg_start.take() {
                self.ready.truncate(start);
                at_head = true;
            }
        }
        if let Some(f) = &self.on_reject {
            f(&r);
        }
        tracing::debug!(
            status = r.status,
            reason = r.reason,
            "refused malformed request"
        );
        if at_head {
            self.pending_reject = Some(r);
        }
        self.state = State::Closed;
        self.eof = true;
    }

    /// A complete head arrived: validates it, passes it on and follows the framing it declares.
    /// Returns false when the connection failed.
    fn head_complete(&mut self, head_bytes: &[u8]) -> bool {
        let info = match validate_head(head_bytes, &self.limits) {
            Ok(info) => info,
            Err(r) => {
                self.fail(r, true);
                return false;
            }
        };
        // Refused whole, before any of it reaches hyper: a body would be bytes the upstream reads
        // as the start of the tunnel.
        if info.upgrade && info.framing != Framing::None {
            self.fail(bad("upgrade request with a body"), true);
            return false;
        }
        self.msg_start = Some(self.ready.len());
        self.ready.extend_from_slice(head_bytes);
        self.state = match info.framing {
            _ if info.upgrade => {
                self.shared
                    .upgrade
                    .store(UPGRADE_WAITING, Ordering::Release);
                State::AwaitUpgrade
            }
            Framing::None => State::Head(Vec::new(), None),
            Framing::Length(0) => State::Head(Vec::new(), None),
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Size(Vec::new())),
        };
        true
    }

    /// Runs the state machine over newly read bytes, moving validated ones to `ready`.
    fn feed(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            match &mut self.state {
                State::Closed => return,
                State::Passthrough => {
                    self.ready.extend_from_slice(input);
                    return;
                }
                State::AwaitUpgrade => {
                    // Held back until the handler decides.
                    self.held_buf.extend_from_slice(input);
                    return;
                }
                State::Sniff(buf) => {
                    let need = H2_PREFACE.len() - buf.len();
                    let take = need.min(input.len());
                    buf.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if !H2_PREFACE.starts_with(buf) {
                        let buf = std::mem::take(buf);
                        self.state = State::Head(Vec::new(), None);
                        self.feed(&buf);
                    } else if buf.len() == H2_PREFACE.len() {
                        self.ready.extend_from_slice(H2_PREFACE);
                        self.state = State::Passthrough;
                    }
                }
                State::Head(head, started) => {
                    if head.is_empty() {
                        // Empty lines before a request line are ignored (RFC 9112 section 2.2).
                        let skip = input
                            .iter()
                            .position(|&b| b != b'\r' && b != b'\n')
                            .unwrap_or(input.len());
                        input = &input[skip..];
                        if input.is_empty() {
                            return;
                        }
                        // The bytes came in with the last read (its clock, not another reading).
                        *started = Some(self.last_read);
                        // The usual case: the whole head came in one read. It is checked where it
                        // is, with no copy into the head buffer.
                        if let Some(end) = find_head_end(input) {
                            let (head_bytes, rest) = input.split_at(end);
                            input = rest;
                            if !self.head_complete(head_bytes) {
                                return;
                            }
                            continue;
                        }
                    }
                    let before = head.len();
                    head.extend_from_slice(input);
                    let search_from = before.saturating_sub(3);
                    match find_head_end(&head[search_from..]) {
                        Some(end) => {
                            let end = search_from + end;
                            let used = end - before;
                            input = &input[used..];
                            let head_bytes = std::mem::take(head);
                            if !self.head_complete(&head_bytes[..end]) {
                                return;
                            }
                        }
                        None => {
                            if let Err(r) = check_partial_head(head, &self.limits) {
                                return self.fail(r, true);
                            }
                            return;
                        }
                    }
                }
                State::Length(n) => {
                    let take = (*n).min(input.len() as u64) as usize;
                    self.ready.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    *n -= take as u64;
                    if *n == 0 {
                        self.state = State::Head(Vec::new(), None);
                    }
                }
                State::Chunked(chunk) => match feed_chunked(chunk, input, &self.limits) {
                    Ok((used, done)) => {
                        self.ready.extend_from_slice(&input[..used]);
                        input = &input[used..];
                        if done {
                            self.state = State::Head(Vec::new(), None);
                        }
                    }
                    Err(r) => return self.fail(r, false),
                },
            }
        }
    }
}

/// Every byte of a word 1, and every byte's high bit: for looking at eight bytes at a time.
const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The index of the first `needle` in `hay`, eight bytes at a time.
fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    let pattern = LO * u64::from(needle);
    let mut chunks = hay.chunks_exact(8);
    let mut at = 0;
    for c in chunks.by_ref() {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ pattern;
        // The lowest byte flagged here is the first zero byte of `w` (borrows only run upwards).
        let zero = w.wrapping_sub(LO) & !w & HI;
        if zero != 0 {
            return Some(at + (zero.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| at + i)
}

/// The lines of `b` split at LF (as `split(|&b| b == b'\n')` does), each without a trailing CR.
fn lines(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(b);
    std::iter::from_fn(move || {
        let r = rest?;
        let line = match find_byte(r, b'\n') {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                &r[..i]
            }
            None => {
                rest = None;
                r
            }
        };
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
}

/// The index just past the `\r\n\r\n` that ends a head, if present.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = find_byte(&buf[from..], b'\n') {
        let i = from + i;
        if i >= 3 && &buf[i - 3..=i] == b"\r\n\r\n" {
            return Some(i + 1);
        }
        from = i + 1;
    }
    None
}

/// Checks an incomplete head for what is already certain: bare LF, size limits.
fn check_partial_head(head: &[u8], limits: &GuardLimits) -> Result<(), Reject> {
    if has_bare_lf(head) {
        return Err(bad("line ends with a bare LF"));
    }
    let line_end = head.windows(2).position(|w| w == b"\r\n");
    if line_end.is_none() && head.len() > limits.max_uri_bytes + 32 {
        return Err(reject(414, "request target too long"));
    }
    if head.len() > limits.max_header_bytes {
        return Err(reject(431, "request head too large"));
    }
    Ok(())
}

/// A CR not followed by LF (RFC 9112 section 2.2: invalid, or to be read as SP).
/// Whether CR and LF appear in `b` only as CRLF pairs: one pass, eight bytes at a time, standing in
/// for [`has_bare_lf`] and [`has_bare_cr`] on a well-formed head (those say which one is wrong).
fn crlf_pairs_only(b: &[u8]) -> bool {
    let (cr, lf) = (LO * u64::from(b'\r'), LO * u64::from(b'\n'));
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        // The first CR or LF from `i`: the lowest byte flagged in either word is exact.
        let found = if rest.len() >= 8 {
            let w = u64::from_le_bytes([
                rest[0], rest[1], rest[2], rest[3], rest[4], rest[5], rest[6], rest[7],
            ]);
            let (a, c) = (w ^ cr, w ^ lf);
            let hit = (a.wrapping_sub(LO) & !a | c.wrapping_sub(LO) & !c) & HI;
            if hit == 0 {
                i += 8;
                continue;
            }
            (hit.trailing_zeros() / 8) as usize
        } else {
            match rest.iter().position(|&x| x == b'\r' || x == b'\n') {
                Some(j) => j,
                None => return true,
            }
        };
        let j = i + found;
        // An LF met first has no CR before it (that CR would have been met, with its LF).
        if b[j] != b'\r' || b.get(j + 1) != Some(&b'\n') {
            return false;
        }
        i = j + 2;
    }
    true
}

fn has_bare_cr(b: &[u8]) -> bool {
    let mut from = 0;
    while let Some(i) = find_byte(&b[from..], b'\r') {
        let i = from + i;
        if b.get(i + 1) != Some(&b'\n') {
            return true;
        }
        from = i + 1;
    }
    false
}

fn has_bare_lf(b: &[u8]) -> bool {
    let mut from = 0;
    while let Some(i) = find_byte(&b[from..], b'\n') {
        let i = from + i;
        if i == 0 || b[i - 1] != b'\r' {
            return true;
        }
        from = i + 1;
    }
    false
}

/// A table of the bytes for which `f` holds.
const fn byte_table(kind: u8) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = match kind {
            // tchar (RFC 9110 section 5.6.2)
            0 => {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'!' | b'#'
                            | b'$'
                            | b'%'
                            | b'&'
                            | b'\''
                            | b'*'
                            | b'+'
                            | b'-'
                            | b'.'
                            | b'^'
                            | b'_'
                            | b'`'
                            | b'|'
                            | b'~'
                    )
            }
            // field-vchar, SP and HTAB (obs-text allowed)
            1 => b == b'\t' || b == b' ' || (b >= 0x21 && b <= 0x7e) || b >= 0x80,
            // what a Host value may hold
            _ => {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'-' | b'.'
                            | b'_'
                            | b'~'
                            | b'!'
                            | b'$'
                            | b'&'
                            | b'\''
                            | b'('
                            | b')'
                            | b'*'
                            | b'+'
                            | b','
                            | b';'
                            | b'='
                            | b':'
                            | b'['
                            | b']'
                            | b'%'
                    )
            }
        };
        i += 1;
    }
    t
}

static TCHAR: [bool; 256] = byte_table(0);
static FIELD_VCHAR: [bool; 256] = byte_table(1);
static HOST_CHAR: [bool; 256] = byte_table(2);

fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

fn is_field_vchar(b: u8) -> bool {
    FIELD_VCHAR[b as usize]
}

/// Whether every byte of a field value is a field-vchar, SP or HTAB (what [`is_field_vchar`]
/// accepts), eight bytes at a time: every header value of every request goes through here. A word
/// is looked at byte by byte only when it may hold a control byte (below 0x20, which HTAB is) or DEL.
fn field_value_ok(v: &[u8]) -> bool {
    let mut chunks = v.chunks_exact(8);
    for c in chunks.by_ref() {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // A byte below 0x20 with its high bit clear sets its high bit in `w - 0x20..`, and the
        // lowest such byte is always flagged (borrows only run upwards); the same for a zero byte
        // of `w ^ 0x7f..`, a DEL.
        let control = w.wrapping_sub(LO * 0x20) & !w & HI;
        let del = w ^ (LO * 0x7f);
        let del = del.wrapping_sub(LO) & !del & HI;
        if control | del != 0 && !c.iter().all(|&b| is_field_vchar(b)) {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| is_field_vchar(b))
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &v[start..end]
}

/// Validates header field lines (of a head or a trailer section); calls `each` with name and value.
fn validate_fields<'a>(
    lines: impl Iterator<Item = &'a [u8]>,
    limits: &GuardLimits,
    mut each: impl FnMut(&'a [u8], &'a [u8]) -> Result<(), Reject>,
) -> Result<(), Reject> {
    let mut count = 0;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(bad("obsolete line folding"));
        }
        let colon = find_byte(line, b':').ok_or_else(|| bad("header line without a colon"))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() {
            return Err(bad("empty header name"));
        }
        if !name.iter().all(|&b| is_tchar(b)) {
            return Err(bad("invalid character in header name"));
        }
        if !field_value_ok(value) {
            return Err(bad("invalid character in header value"));
        }
        count += 1;
        if count > limits.max_headers {
            return Err(reject(431, "too many header fields"));
        }
        each(name, trim_ows(value))?;
    }
    Ok(())
}

/// Validates a complete request head (ending with the empty line) and tells how the body is framed.
pub fn validate_head(head: &[u8], limits: &GuardLimits) -> Result<HeadInfo, Reject> {
    let paired = crlf_pairs_only(head);
    if !paired && has_bare_lf(head) {
        return Err(bad("line ends with a bare LF"));
    }
    if head.len() > limits.max_header_bytes {
        return Err(reject(431, "request head too large"));
    }
    let body = &head[..head.len() - 4];
    let mut lines = lines(body);
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(bad("malformed request line")),
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(bad("invalid method"));
    }
    if target.len() > limits.max_uri_bytes {
        return Err(reject(414, "request target too long"));
    }
    if target.is_empty() || !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(bad("invalid request target"));
    }
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        v if v.len() == 8
            && v.starts_with(b"HTTP/")
            && v[5].is_ascii_digit()
            && v[6] == b'.'
            && v[7].is_ascii_digit() =>
        {
            return Err(reject(505, "HTTP version not supported"))
        }
        _ => return Err(bad("invalid HTTP version")),
    };
    let connect = method == b"CONNECT";
    let form_ok = match target[0] {
        b'/' => !connect,
        b'*' => target == b"*" && method == b"OPTIONS",
        _ if connect => !target.contains(&b'/'),
        _ => {
            let lower = target.to_ascii_lowercase();
            lower.starts_with(b"http://") || lower.starts_with(b"https://")
        }
    };
    if !form_ok {
        return Err(bad("invalid request target form"));
    }

    let mut hosts = 0;
    let mut content_length: Option<u64> = None;
    let mut te: Vec<Vec<u8>> = Vec::new();
    let mut connection: Vec<&[u8]> = Vec::new();
    let mut upgrade: Vec<&[u8]> = Vec::new();
    validate_fields(lines, limits, |name, value| {
        // Only names of the lengths below can matter.
        if !matches!(name.len(), 4 | 7 | 10 | 14 | 17) {
            return Ok(());
        }
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            if !value.iter().all(|&b| HOST_CHAR[b as usize]) {
                return Err(bad("invalid Host header"));
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            for part in value.split(|&b| b == b',') {
                let part = trim_ows(part);
                if part.is_empty() || part.len() > 18 || !part.iter().all(u8::is_ascii_digit) {
                    return Err(bad("invalid Content-Length"));
                }
                let n: u64 = std::str::from_utf8(part)
                    .unwrap_or("x")
                    .parse()
                    .map_err(|_| bad("invalid Content-Length"))?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(bad("differing Content-Length values"));
                }
                content_length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            for part in value.split(|&b| b == b',') {
                let part = trim_ows(part);
                if part.is_empty() {
                    return Err(bad("empty transfer coding"));
                }
                te.push(part.to_ascii_lowercase());
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection.push(value);
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade.push(value);
        }
        Ok(())
    })?;
    if hosts > 1 {
        return Err(bad("more than one Host header"));
    }
    if hosts == 0 && http11 {
        return Err(bad("missing Host header"));
    }
    // A CR that no LF follows can only be left where the checks above skip empty lines (a line of a
    // lone CR); hyper's parser refuses it, so it is refused here with the others.
    if !paired && has_bare_cr(head) {
        return Err(bad("bare CR in the request head"));
    }
    let framing = if !te.is_empty() {
        if !http11 {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if content_length.is_some() {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        if te.last().map(Vec::as_slice) != Some(b"chunked") {
            return Err(bad("Transfer-Encoding does not end in chunked"));
        }
        if te[..te.len() - 1].iter().any(|c| c == b"chunked") {
            return Err(bad("chunked applied more than once"));
        }
        if te.len() > 1 {
            return Err(reject(501, "transfer coding not implemented"));
        }
        Framing::Chunked
    } else if let Some(n) = content_length {
        Framing::Length(n)
    } else {
        Framing::None
    };
    Ok(HeadInfo {
        framing,
        // The proxy's own reading of the head (an h2c offer, or any `Upgrade` in HTTP/1.0, is a
        // plain request whose body passes).
        upgrade: connect
            || crate::proxy::upgrade::h1_protocols(http11, connection, upgrade)
                .next()
                .is_some(),
    })
}

/// Validates chunked-body bytes. Returns how many bytes of `input` were consumed and whether the body
/// (with its trailers) ended.
fn feed_chunked(
    chunk: &mut Chunk,
    input: &[u8],
    limits: &GuardLimits,
) -> Result<(usize, bool), Reject> {
    let mut used = 0;
    while used < input.len() {
        let rest = &input[used..];
        match chunk {
            Chunk::Size(line) => {
                let nl = rest.iter().position(|&b| b == b'\n');
                let take = nl.map_or(rest.len(), |i| i + 1);
                line.extend_from_slice(&rest[..take]);
                used += take;
                if line.len() > MAX_CHUNK_LINE {
                    return Err(bad("chunk size line too long"));
                }
                if nl.is_none() {
                    continue;
                }
                let size = parse_chunk_size(line)?;
                *chunk = if size == 0 {
                    Chunk::Trailers(Vec::new())
                } else {
                    Chunk::Data(size)
                };
            }
            Chunk::Data(n) => {
                let take = (*n).min(rest.len() as u64) as usize;
                used += take;
                *n -= take as u64;
                if *n == 0 {
                    *chunk = Chunk::DataEnd(0);
                }
            }
            Chunk::DataEnd(seen) => {
                let want = b"\r\n"[*seen as usize];
                if rest[0] != want {
                    return Err(bad("chunk data not followed by CRLF"));
                }
                used += 1;
                *seen += 1;
                if *seen == 2 {
                    *chunk = Chunk::Size(Vec::new());
                }
            }
            Chunk::Trailers(buf) => {
                let before = buf.len();
                buf.extend_from_slice(rest);
                // The trailer section ends with an empty line; with no trailers that is a lone CRLF.
                let end = if buf.starts_with(b"\r\n") {
                    Some(2)
                } else {
                    find_head_end(buf)
                };
                match end {
                    Some(end) => {
                        let section = &buf[..end];
                        if has_bare_lf(section) {
                            return Err(bad("line ends with a bare LF"));
                        }
                        let fields = &section[..end - 2];
                        validate_fields(lines(fields), limits, |_, _| Ok(()))?;
                        if has_bare_cr(section) {
                            return Err(bad("bare CR in the trailers"));
                        }
                        used += end - before;
                        return Ok((used, true));
                    }
                    None => {
                        if has_bare_lf(buf) {
                            return Err(bad("line ends with a bare LF"));
                        }
                        if buf.len() > limits.max_header_bytes {
                            return Err(reject(431, "trailers too large"));
                        }
                        used = input.len();
                    }
                }
            }
        }
    }
    Ok((used, false))
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, Reject> {
    let line = line
        .strip_suffix(b"\r\n")
        .ok_or_else(|| bad("chunk size line ends with a bare LF"))?;
    let hex_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    if hex_end == 0 {
        return Err(bad("invalid chunk size"));
    }
    if hex_end > 15 {
        return Err(bad("chunk size too large"));
    }
    let ext = &line[hex_end..];
    if !ext.is_empty() {
        let ext = trim_ows(ext);
        if !ext.starts_with(b";") || !ext.iter().all(|&b| is_field_vchar(b)) {
            return Err(bad("invalid chunk extension"));
        }
    }
    let digits = std::str::from_utf8(&line[..hex_end]).map_err(|_| bad("invalid chunk size"))?;
    u64::from_str_radix(digits, 16).map_err(|_| bad("invalid chunk size"))
}

fn reject_bytes(r: &Reject) -> bytes::Bytes {
    let reason = match r.status {
        400 => "Bad Request",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    };
    // The body every error answered by the gateway has (see `errors::respond`).
    let id = crate::errors::RequestId::new();
    let code = crate::errors::status_code(r.status);
    tracing::debug!(
        request_id = id.as_str(),
        code,
        reason = r.reason,
        "HTTP/1 request refused"
    );
    let body = crate::errors::error_body(code, r.reason, &id);
    bytes::Bytes::from(format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {}\r\nconnection: close\r\n\r\n{body}",
        r.status,
        body.len(),
        id.as_str()
    ))
}

impl<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static> Guarded<IO> {
    /// The clock that applies now, if any, and what happens when it runs out.
    fn deadline(&self) -> Option<(Instant, bool)> {
        match &self.state {
            State::Head(h, Some(started)) if !h.is_empty() => {
                Some((*started + self.limits.header_read_timeout, true))
            }
            State::Head(..) | State::Sniff(_) | State::Passthrough => {
                if self.shared.busy() {
                    return None;
                }
                let since = self.last_read.max(self.shared.idle_since());
                Some((since + self.limits.idle_timeout, false))
            }
            _ => None,
        }
    }

    fn poll_timers(&mut self, cx: &mut Context<'_>) -> bool {
        self.shared.waker.register(cx.waker());
        let Some((at, is_header)) = self.deadline() else {
            return false;
        };
        // Moved only to an earlier time. The idle deadline moves later with every request; the
        // timer is left where it is and, when it goes off early, set again to the deadline then
        // (one wheel entry per idle period instead of one per request).
        let at_tokio = tokio::time::Instant::from(at);
        if at_tokio < self.timer.deadline() {
            self.timer.as_mut().reset(at_tokio);
        }
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            // It went off at the deadline it had, which may be before `at` now.
            if tokio::time::Instant::now() >= at_tokio {
                break;
            }
            self.timer.as_mut().reset(at_tokio);
        }
        if is_header {
            self.fail(reject(408, "request head not received in time"), true);
        } else {
            tracing::debug!("closing idle connection");
            self.state = State::Closed;
            self.eof = true;
        }
        true
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if matches!(this.state, State::AwaitUpgrade) {
                match this.shared.upgrade.load(Ordering::Acquire) {
                    UPGRADE_YES => this.state = State::Passthrough,
                    UPGRADE_NO => this.state = State::Head(Vec::new(), None),
                    _ => {}
                }
                if !matches!(this.state, State::AwaitUpgrade) {
                    this.shared.upgrade.store(UPGRADE_NONE, Ordering::Release);
                    let held = std::mem::take(&mut this.held_buf);
                    this.feed(&held);
                }
            }
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                this.msg_start = this.msg_start.and_then(|s| s.checked_sub(n));
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if matches!(this.state, State::AwaitUpgrade) {
                this.shared.waker.register(cx.waker());
                // Re-check after registering, so a decision made in between is not missed.
                if this.shared.upgrade.load(Ordering::Acquire) == UPGRADE_WAITING {
                    // Keep reading into the held buffer so a closed socket is noticed.
                    let mut tmp = [0u8; 8192];
                    let mut rb = ReadBuf::new(&mut tmp);
                    match Pin::new(this.io.as_mut().expect(IO_PRESENT)).poll_read(cx, &mut rb) {
                        Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                            this.eof = true;
                            continue;
                        }
                        Poll::Ready(Ok(())) => {
                            // The clock a held head's header timeout starts from, once fed.
                            this.last_read = Instant::now();
                            this.held_buf.extend_from_slice(rb.filled());
                            if this.held_buf.len() > this.limits.max_header_bytes {
                                this.fail(bad("bytes sent before the upgrade was accepted"), false);
                            }
                            continue;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                continue;
            }
            // Bytes that need no checking (a tunnel or HTTP/2, a Content-Length body) go straight into
            // hyper's buffer; the rest is read into a scratch buffer and checked first.
            let direct = match this.state {
                State::Passthrough => Some(buf.remaining()),
                State::Length(n) => Some(buf.remaining().min(n.min(usize::MAX as u64) as usize)),
                _ => None,
            };
            if let Some(limit) = direct.filter(|&l| l > 0) {
                let io = Pin::new(this.io.as_mut().expect(IO_PRESENT));
                let (r, n) = if limit >= buf.remaining() {
                    // hyper's buffer as it is: bounding the read would zero its unfilled part
                    // first (16 KiB per read of an HTTP/2 connection).
                    let before = buf.filled().len();
                    let r = io.poll_read(cx, buf);
                    (r, buf.filled().len() - before)
                } else {
                    let dst = buf.initialize_unfilled_to(limit);
                    let mut rb = ReadBuf::new(dst);
                    let r = io.poll_read(cx, &mut rb);
                    let n = rb.filled().len();
                    if let Poll::Ready(Ok(())) = r {
                        buf.advance(n);
                    }
                    (r, n)
                };
                match r {
                    Poll::Ready(Ok(())) if n == 0 => {
                        this.eof = true;
                        continue;
                    }
                    Poll::Ready(Ok(())) => {
                        this.last_read = Instant::now();
                        if let State::Length(left) = &mut this.state {
                            *left -= n as u64;
                            if *left == 0 {
                                this.state = State::Head(Vec::new(), None);
                            }
                        }
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        if this.poll_timers(cx) {
                            continue;
                        }
                        return Poll::Pending;
                    }
                }
            }
            let mut scratch = std::mem::take(&mut this.scratch);
            scratch.resize(SCRATCH, 0);
            let mut rb = ReadBuf::new(&mut scratch);
            let r = Pin::new(this.io.as_mut().expect(IO_PRESENT)).poll_read(cx, &mut rb);
            let n = rb.filled().len();
            if let Poll::Ready(Ok(())) = r {
                if n == 0 {
                    this.eof = true;
                } else {
                    this.last_read = Instant::now();
                    this.feed(&scratch[..n]);
                }
            }
            this.scratch = scratch;
            match r {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if this.poll_timers(cx) {
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin + Send + 'static> Guarded<IO> {
    /// A write's outcome, with the send timeout applied: a write that waits is timed from the
    /// first wait; any progress stops the clock.
    fn timed<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Pending => {
                if !self.write_waiting {
                    self.write_waiting = true;
                    let deadline = tokio::time::Instant::now() + self.limits.send_timeout;
                    match &mut self.write_stall {
                        Some(t) => t.as_mut().reset(deadline),
                        None => {
                            self.write_stall = Some(Box::pin(tokio::time::sleep_until(deadline)))
                        }
                    }
                }
                let stall = self.write_stall.as_mut().expect("armed above");
                if stall.as_mut().poll(cx).is_ready() {
                    tracing::debug!("the client did not read for the send timeout; closing");
                    self.shared.note_send_timeout();
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "send timeout: the client does not read",
                    )));
                }
                Poll::Pending
            }
            ready => {
                self.write_waiting = false;
                ready
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin + Send + 'static> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(this.io.as_mut().expect(IO_PRESENT)).poll_write(cx, buf);
        this.timed(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(this.io.as_mut().expect(IO_PRESENT)).poll_write_vectored(cx, bufs);
        this.timed(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let r = Pin::new(this.io.as_mut().expect(IO_PRESENT)).poll_flush(cx);
        this.timed(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(r) = this.pending_reject.take() {
            this.reject_out = Some(reject_bytes(&r));
        }
        while let Some(out) = this.reject_out.as_mut() {
            if out.is_empty() {
                this.reject_out = None;
                break;
            }
            let n = std::task::ready!(
                Pin::new(this.io.as_mut().expect(IO_PRESENT)).poll_write(cx, out)
            )?;
            if n == 0 {
                this.reject_out = None;
                break;
            }
            out.advance(n);
        }
        Pin::new(this.io.as_mut().expect(IO_PRESENT)).poll_shutdown(cx)
    }
}

impl<IO: AsyncWrite + Unpin + Send + 'static> Drop for Guarded<IO> {
    /// hyper may drop the socket without shutting it down (after a request that asked for an upgrade
    /// that did not happen); a refusal still owed to the client is then written by a task of its own.
    fn drop(&mut self) {
        let out = match (self.pending_reject.take(), self.reject_out.take()) {
            (Some(r), _) => reject_bytes(&r),
            (None, Some(out)) if !out.is_empty() => out,
            _ => return,
        };
        let (Some(mut io), Ok(rt)) = (self.io.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        rt.spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                let _ = io.write_all(&out).await;
                let _ = io.shutdown().await;
            })
            .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs of every length up to 40 over a small alphabet that makes CR, LF and colons common.
    fn samples() -> Vec<Vec<u8>> {
        let alphabet = b"\r\n:a \x00\xff";
        let mut out = vec![Vec::new()];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 1..=40 {
            for _ in 0..60 {
                let v: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        alphabet[(x % alphabet.len() as u64) as usize]
                    })
                    .collect();
                out.push(v);
            }
        }
        out.push(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n".to_vec());
        out
    }

    #[test]
    fn field_value_check_matches_the_byte_table() {
        // Every byte value at every position of a word and in the tail, among valid bytes.
        for len in [1, 7, 8, 9, 16, 23] {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut v = vec![b'a'; len];
                    v[at] = b;
                    assert_eq!(
                        field_value_ok(&v),
                        is_field_vchar(b),
                        "{b:#x} at {at} of {len}"
                    );
                }
            }
        }
        for s in samples() {
            assert_eq!(
                field_value_ok(&s),
                s.iter().all(|&b| is_field_vchar(b)),
                "{s:?}"
            );
        }
        assert!(field_value_ok(b""));
        assert!(field_value_ok("caf\u{e9} \t x".as_bytes()));
    }

    #[test]
    fn byte_search_matches_the_obvious_definitions() {
        for s in samples() {
            for needle in [b'\n', b'\r', b':', 0, 0xff] {
                assert_eq!(
                    find_byte(&s, needle),
                    s.iter().position(|&b| b == needle),
                    "{s:?}"
                );
            }
            assert_eq!(
                find_head_end(&s),
                s.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4),
                "{s:?}"
            );
            assert_eq!(
                crlf_pairs_only(&s),
                !has_bare_lf(&s) && !has_bare_cr(&s),
                "{s:?}"
            );
            assert_eq!(
                has_bare_lf(&s),
                s.iter()
                    .enumerate()
                    .any(|(i, &c)| c == b'\n' && (i == 0 || s[i - 1] != b'\r')),
                "{s:?}"
            );
            assert_eq!(
                has_bare_cr(&s),
                s.iter()
                    .enumerate()
                    .any(|(i, &c)| c == b'\r' && s.get(i + 1) != Some(&b'\n')),
                "{s:?}"
            );
            let want: Vec<&[u8]> = s
                .split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .collect();
            assert_eq!(lines(&s).collect::<Vec<_>>(), want, "{s:?}");
        }
    }

    #[test]
    fn byte_tables_match_the_grammar() {
        for b in 0..=255u8 {
            assert_eq!(
                is_tchar(b),
                b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
            );
            assert_eq!(
                is_field_vchar(b),
                b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
            );
            assert_eq!(
                HOST_CHAR[b as usize],
                b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b)
            );
        }
    }

    /// Heads made by mutating valid ones at random (seeded, so every run checks the same 60 000):
    /// the guard never panics, refuses with a 4xx or 5xx, and what it lets through is a complete,
    /// valid head for hyper's parser (httparse) with the framing the guard reported; so hyper never
    /// sees a head the guard should have answered.
    #[test]
    fn random_heads_never_panic_and_what_passes_parses() {
        let limits = GuardLimits {
            max_header_bytes: 8192,
            max_headers: 32,
            max_uri_bytes: 1024,
            header_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            send_timeout: Duration::from_secs(1),
        };
        let seeds: [&[u8]; 6] = [
            b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
            b"POST /up HTTP/1.1\r\nHost: a:8080\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\n",
            b"PUT /x HTTP/1.1\r\nhost: b\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n",
            b"GET / HTTP/1.0\r\nUser-Agent: t\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: h\r\nContent-Length: 0, 0\r\n\r\n",
        ];
        let alphabet: &[u8] = b"\r\n: \t,;/?#a0Z\x00\x7f\x80\xff-";
        let fragments: [&[u8]; 8] = [
            b"\r\n",
            b"Host: x\r\n",
            b"Content-Length: 3\r\n",
            b"Transfer-Encoding: gzip, chunked\r\n",
            b" ",
            b"HTTP/1.1",
            b"\r\n ",
            b":",
        ];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut passed, mut refused) = (0, 0);
        for _ in 0..60_000 {
            let mut m = seeds[(next() % seeds.len() as u64) as usize].to_vec();
            for _ in 0..=(next() % 4) {
                let at = (next() % (m.len() as u64 + 1)) as usize;
                match next() % 4 {
                    0 if at < m.len() => {
                        m[at] = alphabet[(next() % alphabet.len() as u64) as usize]
                    }
                    1 => m.insert(at, alphabet[(next() % alphabet.len() as u64) as usize]),
                    2 if at < m.len() => {
                        m.remove(at);
                    }
                    _ => {
                        let f = fragments[(next() % fragments.len() as u64) as usize];
                        m.splice(at..at, f.iter().copied());
                    }
                }
            }
            // The guard sees a head up to the first empty line, as `feed` cuts it.
            if find_head_end(&m).is_none() {
                m.extend_from_slice(b"\r\n\r\n");
            }
            let head = &m[..find_head_end(&m).unwrap()];
            match validate_head(head, &limits) {
                Err(r) => {
                    refused += 1;
                    assert!((400..600).contains(&r.status), "{r:?} for {head:?}");
                }
                Ok(info) => {
                    passed += 1;
                    let mut headers = [httparse::EMPTY_HEADER; 64];
                    let mut req = httparse::Request::new(&mut headers);
                    let parsed = req.parse(head);
                    assert!(
                        matches!(parsed, Ok(httparse::Status::Complete(n)) if n == head.len()),
                        "the guard let through a head httparse refuses ({parsed:?}): {:?}",
                        String::from_utf8_lossy(head)
                    );
                    let lengths: Vec<&[u8]> = req
                        .headers
                        .iter()
                        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .map(|h| h.value)
                        .collect();
                    let chunked = req
                        .headers
                        .iter()
                        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
                    match info.framing {
                        Framing::Chunked => assert!(chunked && lengths.is_empty()),
                        Framing::Length(_) => assert!(!lengths.is_empty() && !chunked),
                        Framing::None => assert!(lengths.is_empty() && !chunked),
                    }
                }
            }
        }
        // The mutations keep a fair share valid, so both sides of the check run.
        assert!(
            passed > 5_000 && refused > 5_000,
            "{passed} passed, {refused} refused"
        );
    }

    #[test]
    fn heads() {
        let limits = GuardLimits {
            max_header_bytes: 1024,
            max_headers: 4,
            max_uri_bytes: 64,
            header_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            send_timeout: Duration::from_secs(1),
        };
        let ok = |h: &str| validate_head(h.as_bytes(), &limits);
        assert_eq!(
            ok("GET / HTTP/1.1\r\nHost: a\r\nX-Long-Header-Name: 1\r\n\r\n"),
            Ok(HeadInfo {
                framing: Framing::None,
                upgrade: false
            })
        );
        assert_eq!(
            ok("POST / HTTP/1.1\r\nHOST: a\r\nContent-Length: 5, 5\r\n\r\n").map(|i| i.framing),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            ok("POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n")
                .map(|i| i.framing),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: x\r\n\r\n")
                .map(|i| i.upgrade),
            Ok(true)
        );
        // Not upgrades, so their bodies pass: an h2c offer, empty tokens, HTTP/1.0, no
        // `Connection: upgrade`.
        for head in [
            "POST / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: ,\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.0\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\n",
        ] {
            assert_eq!(
                ok(head),
                Ok(HeadInfo {
                    framing: Framing::Length(5),
                    upgrade: false
                }),
                "{head}"
            );
        }
        assert_eq!(
            ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\nUpgrade: websocket\r\n\r\n")
                .map(|i| i.upgrade),
            Ok(true)
        );
        let err = |h: &str| ok(h).unwrap_err();
        assert_eq!(
            err("GET / HTTP/1.1\nHost: a\r\n\r\n").reason,
            "line ends with a bare LF"
        );
        assert_eq!(err("GET / HTTP/1.1\r\n\r\n").reason, "missing Host header");
        assert_eq!(
            err("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n").reason,
            "more than one Host header"
        );
        assert_eq!(
            err("GET / HTTP/1.1\r\nHost: a b\r\n\r\n").reason,
            "invalid Host header"
        );
        assert_eq!(
            err("GET / HTTP/1.1\r\nHost: a\r\nBad Name: 1\r\n\r\n").reason,
            "invalid character in header name"
        );
        assert_eq!(
            err("GET / HTTP/1.1\r\nHost: a\r\nx: \x01\r\n\r\n").reason,
            "invalid character in header value"
        );
        assert_eq!(
            err("GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n").reason,
            "header line without a colon"
        );
        assert_eq!(
            err("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n").reason,
            "both Content-Length and Transfer-Encoding"
        );
        assert_eq!(
            err("GET / HTTP/1.1\r\nHost: a\r\na: 1\r\nb: 1\r\nc: 1\r\nd: 1\r\n\r\n").status,
            431
        );
    }
}
