//! What one client connection shares between its server side (the HTTP/1 guard, the serving loop)
//! and the requests served on it: requests in flight and the time it went idle, the outcome of a
//! pending upgrade, the streams its client cancelled, and the clocks of responses waiting for the
//! client to read.
//!
//! It sits below both `server` and `proxy`, so the request path reaches it without reaching back
//! into the server.

use futures_util::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::time::Sleep;

/// No upgrade asked for.
pub(crate) const UPGRADE_NONE: u8 = 0;
/// An upgrade was asked for; the request handler has not decided yet.
pub(crate) const UPGRADE_WAITING: u8 = 1;
/// The upstream switched protocols: the rest of the connection is a tunnel.
pub(crate) const UPGRADE_YES: u8 = 2;
/// The upgrade did not happen: parsing goes on.
pub(crate) const UPGRADE_NO: u8 = 3;

/// The time over which a connection's client may cancel `Limits::h2_max_resets` HTTP/2 streams: the
/// count drains at that many per this window, continuously.
pub const RESET_WINDOW: Duration = Duration::from_secs(10);

/// Asks the serving loop to shut the connection down: its client cancelled too many streams.
pub const ATTEND_ABUSE: u8 = 1;
/// Asks the serving loop to start looking at stream clocks: the first one was made.
pub const ATTEND_STREAMS: u8 = 2;
/// Asks the serving loop to finish the connection gracefully: the gateway is draining.
pub const ATTEND_DRAIN: u8 = 4;

/// Past this many streams times the reset limit, a connection whose client cancelled more than
/// half of all its streams is cut too, however slowly it cancelled them (as Envoy's premature
/// reset check does).
pub const RESET_RATIO_AFTER: u64 = 4;

/// State shared between a connection's server side and the requests served on it.
#[derive(Debug)]
pub struct ConnShared {
    /// Unique in the process, from 1.
    id: u64,
    in_flight: AtomicUsize,
    /// Nanoseconds since `epoch` when the last request finished.
    idle_since: AtomicU64,
    epoch: Instant,
    /// One of the `UPGRADE_*` states.
    pub(crate) upgrade: AtomicU8,
    /// Woken when the last request ends or an upgrade is decided.
    pub(crate) waker: AtomicWaker,
    /// Cancelled streams, draining at the limit per [`RESET_WINDOW`], and when last drained.
    reset_level: Mutex<(f64, Instant)>,
    /// HTTP/2 streams started and cancelled over the connection's life.
    streams_total: AtomicU64,
    resets_total: AtomicU64,
    /// The client was found abusive (told once).
    abusive: AtomicBool,
    /// What the connection's serving loop is asked to look at ([`ATTEND_ABUSE`],
    /// [`ATTEND_STREAMS`], [`ATTEND_DRAIN`]), and the loop's waker: an atomic and a waker rather than a `Notify`
    /// per event, because the loop polls them at every wake of the connection.
    attention: AtomicU8,
    attention_waker: AtomicWaker,
    /// Clocks of the HTTP/2 responses being sent, to find one the client stopped reading.
    streams: Mutex<Streams>,
    /// A write to the client waited longer than the send timeout.
    send_timed_out: AtomicBool,
    /// Tunnels (upgraded requests) open on the connection: its serving loop, which holds the
    /// connection's place in the drain and its `max_connections` permit, waits for them.
    tunnels: AtomicUsize,
    tunnel_ended: tokio::sync::Notify,
    /// The clock of an upstream try, kept between the connection's requests ([`TryClock`]).
    try_clock: Mutex<Option<Pin<Box<Sleep>>>>,
}

/// The clock that bounds a request's upstream try: the connection's own, set again for each try, and
/// given back when dropped. A clock kept registered and set to a later time costs tokio an atomic
/// store (the timer wheel keeps its entry and moves it only if it comes round first), where a new
/// clock per request is a wheel insertion and removal (BENCHMARKS.md, issue 17). Concurrent
/// requests (HTTP/2) that find it taken make their own.
pub struct TryClock<'a> {
    conn: &'a ConnShared,
    clock: Option<Pin<Box<Sleep>>>,
}

impl TryClock<'_> {
    /// Sets the clock to go off at `deadline`.
    pub fn set(&mut self, deadline: Instant) {
        let deadline = tokio::time::Instant::from_std(deadline);
        match &mut self.clock {
            Some(c) => c.as_mut().reset(deadline),
            None => {
                let kept = self
                    .conn
                    .try_clock
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                self.clock = Some(match kept {
                    Some(mut c) => {
                        c.as_mut().reset(deadline);
                        c
                    }
                    None => Box::pin(tokio::time::sleep_until(deadline)),
                });
            }
        }
    }

    /// Ready once the clock set last has gone off (pending before [`TryClock::set`]).
    pub fn poll_elapsed(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match &mut self.clock {
            Some(c) => c.as_mut().poll(cx),
            None => std::task::Poll::Pending,
        }
    }
}

impl Drop for TryClock<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.clock.take() {
            *self
                .conn
                .try_clock
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(c);
        }
    }
}

#[derive(Debug, Default)]
struct Streams {
    clocks: Vec<Weak<StreamClock>>,
    /// Length at which dead entries are swept out before the next push.
    sweep_at: usize,
}

impl Default for ConnShared {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ConnShared {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            epoch: Instant::now(),
            upgrade: AtomicU8::new(UPGRADE_NONE),
            waker: AtomicWaker::new(),
            reset_level: Mutex::new((0.0, Instant::now())),
            streams_total: AtomicU64::new(0),
            resets_total: AtomicU64::new(0),
            abusive: AtomicBool::new(false),
            attention: AtomicU8::new(0),
            attention_waker: AtomicWaker::new(),
            streams: Mutex::default(),
            send_timed_out: AtomicBool::new(false),
            tunnels: AtomicUsize::new(0),
            tunnel_ended: tokio::sync::Notify::new(),
            try_clock: Mutex::new(None),
        }
    }
}

/// Marks one request in flight on a connection until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<ConnShared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let now = self.0.epoch.elapsed().as_nanos() as u64;
            self.0.idle_since.store(now, Ordering::Release);
            self.0.waker.wake();
        }
    }
}

/// Marks a tunnel open on a connection until dropped.
#[derive(Debug)]
pub struct TunnelOpen(Arc<ConnShared>);

impl Drop for TunnelOpen {
    fn drop(&mut self) {
        if self.0.tunnels.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.tunnel_ended.notify_waiters();
        }
    }
}

impl ConnShared {
    /// A clock for a request's upstream tries ([`TryClock`]), not set yet.
    pub fn try_clock(&self) -> TryClock<'_> {
        TryClock {
            conn: self,
            clock: None,
        }
    }

    /// Counts a tunnel open on this connection until the returned guard drops.
    pub fn open_tunnel(self: &Arc<Self>) -> TunnelOpen {
        self.tunnels.fetch_add(1, Ordering::AcqRel);
        TunnelOpen(self.clone())
    }

    /// Resolves once no tunnel is open on this connection.
    pub async fn tunnels_closed(&self) {
        loop {
            let ended = self.tunnel_ended.notified();
            let mut ended = std::pin::pin!(ended);
            // Registered before the count is read, so an end in between is not missed.
            ended.as_mut().enable();
            if self.tunnels.load(Ordering::Acquire) == 0 {
                return;
            }
            ended.await;
        }
    }

    /// The connection's number, unique in the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Counts a request in flight until the returned guard drops.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Whether a request is in flight.
    pub(crate) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// When the last request finished (the connection's start if none has).
    pub(crate) fn idle_since(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.idle_since.load(Ordering::Acquire))
    }

    /// Tells the guard whether the upgrade asked for by the current request happened. Only meaningful
    /// while an upgrade request is pending; otherwise does nothing.
    pub fn decide_upgrade(&self, upgraded: bool) {
        let to = if upgraded { UPGRADE_YES } else { UPGRADE_NO };
        if self
            .upgrade
            .compare_exchange(UPGRADE_WAITING, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.waker.wake();
        }
    }

    /// Counts an HTTP/2 stream started on this connection.
    pub fn note_stream(&self) {
        self.streams_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a stream the client cancelled before its response ended; returns true (once) when
    /// the client cancelled more than `limit` within [`RESET_WINDOW`] (a count that drains
    /// continuously), or more than half of its streams once it has started
    /// [`RESET_RATIO_AFTER`] × `limit`; then asks the serving loop to shut the connection down.
    pub fn note_reset(&self, limit: u64) -> bool {
        self.note_reset_at(limit, Instant::now())
    }

    fn note_reset_at(&self, limit: u64, now: Instant) -> bool {
        let total = self.resets_total.fetch_add(1, Ordering::Relaxed) + 1;
        let over_rate = {
            let mut l = self.reset_level.lock().unwrap_or_else(|e| e.into_inner());
            let drained = now.saturating_duration_since(l.1).as_secs_f64() * limit as f64
                / RESET_WINDOW.as_secs_f64();
            *l = ((l.0 - drained).max(0.0) + 1.0, now);
            l.0 > limit as f64
        };
        let streams = self.streams_total.load(Ordering::Relaxed);
        let over_share = streams >= RESET_RATIO_AFTER * limit && total * 2 > streams;
        if (over_rate || over_share) && !self.abusive.swap(true, Ordering::AcqRel) {
            self.attend(ATTEND_ABUSE);
            return true;
        }
        false
    }

    /// Asks the connection to finish gracefully (HTTP/1: close when idle; HTTP/2: GOAWAY), as the
    /// gateway does when it drains.
    pub fn drain(&self) {
        self.attend(ATTEND_DRAIN);
    }

    fn attend(&self, what: u8) {
        self.attention.fetch_or(what, Ordering::AcqRel);
        self.attention_waker.wake();
    }

    /// What the serving loop is asked to look at since it last asked (a set of `ATTEND_*` bits);
    /// pending until there is something.
    pub fn attention(&self) -> impl std::future::Future<Output = u8> + '_ {
        std::future::poll_fn(|cx| {
            self.attention_waker.register(cx.waker());
            if self.attention.load(Ordering::Acquire) == 0 {
                return std::task::Poll::Pending;
            }
            std::task::Poll::Ready(self.attention.swap(0, Ordering::AcqRel))
        })
    }

    /// A clock for one response being sent on this connection; [`ConnShared::longest_wait`] sees
    /// it until it is dropped.
    pub fn stream_clock(&self) -> Arc<StreamClock> {
        let clock = Arc::new(StreamClock {
            since: AtomicU64::new(0),
            epoch: self.epoch,
        });
        let mut s = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if s.clocks.is_empty() && s.sweep_at == 0 {
            self.attend(ATTEND_STREAMS);
        }
        if s.clocks.len() >= s.sweep_at {
            s.clocks.retain(|c| c.strong_count() > 0);
            s.sweep_at = (s.clocks.len() * 2).max(64);
        }
        s.clocks.push(Arc::downgrade(&clock));
        clock
    }

    /// How long the response that has waited longest for the client to read has been waiting
    /// (zero if none waits).
    pub fn longest_wait(&self) -> Duration {
        let now = self.epoch.elapsed();
        let mut s = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let mut longest = Duration::ZERO;
        s.clocks.retain(|c| match c.upgrade() {
            Some(c) => {
                if let Some(since) = c.waiting_since() {
                    longest = longest.max(now.saturating_sub(since));
                }
                true
            }
            None => false,
        });
        longest
    }

    /// Records that a write to the client waited longer than the send timeout.
    pub(crate) fn note_send_timeout(&self) {
        self.send_timed_out.store(true, Ordering::Release);
    }

    /// Whether a write to the client waited longer than the send timeout.
    pub fn send_timed_out(&self) -> bool {
        self.send_timed_out.load(Ordering::Acquire)
    }
}

/// When a response being sent handed over its last piece without being asked for the next: it
/// waits for the client to make room (an HTTP/2 flow-control window).
#[derive(Debug)]
pub struct StreamClock {
    /// Milliseconds since the connection's epoch, plus one, when the wait began; 0 when not
    /// waiting.
    since: AtomicU64,
    epoch: Instant,
}

impl StreamClock {
    /// The response handed over a piece and waits to be asked for the next.
    #[inline]
    pub fn wait(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64 + 1;
        self.since.store(ms, Ordering::Relaxed);
    }

    /// The response was asked for its next piece (or ended).
    #[inline]
    pub fn resume(&self) {
        if self.since.load(Ordering::Relaxed) != 0 {
            self.since.store(0, Ordering::Relaxed);
        }
    }

    fn waiting_since(&self) -> Option<Duration> {
        match self.since.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms - 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_past_the_limit_notify_once() {
        let c = ConnShared::default();
        let t = Instant::now();
        for _ in 0..3 {
            assert!(!c.note_reset_at(3, t));
        }
        assert!(c.note_reset_at(3, t));
        assert!(!c.note_reset_at(3, t));
    }

    #[test]
    fn the_count_drains_continuously_so_no_window_boundary_doubles_it() {
        let c = ConnShared::default();
        let t = Instant::now();
        // 10 per 10 s: a burst of 10 at the end of one second and 10 more at the start of the
        // next is over the limit (a fixed window would have let 19 through).
        for i in 0..10 {
            assert!(!c.note_reset_at(10, t), "{i}");
        }
        let later = t + Duration::from_millis(1100);
        assert!(!c.note_reset_at(10, later));
        assert!(c.note_reset_at(10, later));
        // Spaced at the drain rate, it never is.
        let c = ConnShared::default();
        for i in 0..35 {
            c.note_stream();
            c.note_stream();
            c.note_stream();
            assert!(!c.note_reset_at(10, t + Duration::from_secs(i)), "{i}");
        }
    }

    #[test]
    fn slowly_spaced_resets_of_most_streams_are_cut_in_the_end() {
        let c = ConnShared::default();
        let t = Instant::now();
        // One stream, one reset, every two seconds: within the rate, but every stream cancelled.
        let mut cut = None;
        for i in 0..100u64 {
            c.note_stream();
            if c.note_reset_at(10, t + Duration::from_secs(2 * i)) {
                cut = Some(i);
                break;
            }
        }
        assert_eq!(cut, Some(RESET_RATIO_AFTER * 10 - 1));
    }

    #[test]
    fn the_longest_wait_is_of_live_waiting_clocks_only() {
        let c = ConnShared::default();
        assert_eq!(c.longest_wait(), Duration::ZERO);
        let a = c.stream_clock();
        let b = c.stream_clock();
        a.wait();
        std::thread::sleep(Duration::from_millis(30));
        assert!(c.longest_wait() >= Duration::from_millis(20));
        a.resume();
        assert_eq!(c.longest_wait(), Duration::ZERO);
        b.wait();
        drop(b);
        assert_eq!(c.longest_wait(), Duration::ZERO);
        // Dead clocks are swept as new ones come.
        for _ in 0..1000 {
            drop(c.stream_clock());
        }
        assert!(c.streams.lock().unwrap().clocks.len() <= 130);
    }

    /// Whether `clock` has gone off, polled once.
    fn gone_off(clock: &mut TryClock<'_>) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        clock.poll_elapsed(&mut cx).is_ready()
    }

    #[tokio::test]
    async fn a_kept_try_clock_goes_off_at_the_time_it_was_set_to_last() {
        let c = ConnShared::default();
        // One that went off, given back and set again: not off until its new time.
        let mut first = c.try_clock();
        first.set(Instant::now() + Duration::from_millis(10));
        std::future::poll_fn(|cx| first.poll_elapsed(cx)).await;
        drop(first);
        assert!(c.try_clock.lock().unwrap().is_some());
        let mut again = c.try_clock();
        let start = Instant::now();
        again.set(start + Duration::from_millis(100));
        assert!(!gone_off(&mut again));
        std::future::poll_fn(|cx| again.poll_elapsed(cx)).await;
        assert!(start.elapsed() >= Duration::from_millis(100));
        // One set for a short time, given back before it went off, then set for a longer one: it
        // does not go off at the short time.
        again.set(Instant::now() + Duration::from_millis(20));
        drop(again);
        let mut later = c.try_clock();
        let start = Instant::now();
        later.set(start + Duration::from_millis(300));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!gone_off(&mut later));
        std::future::poll_fn(|cx| later.poll_elapsed(cx)).await;
        assert!(start.elapsed() >= Duration::from_millis(300));
        // Set to an earlier time than it holds, it goes off then.
        let start = Instant::now();
        later.set(start + Duration::from_secs(60));
        later.set(start + Duration::from_millis(20));
        std::future::poll_fn(|cx| later.poll_elapsed(cx)).await;
        assert!(start.elapsed() < Duration::from_secs(30));
    }
}
