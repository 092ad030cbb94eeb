//! Running a route's filters on one request: request phases in order, response phases in reverse, bodies
//! streamed through the filters that asked for them (and only those), failure policies applied. When a
//! filter asks for a whole body, that direction's head is held until the body has been read and its
//! body phases have run (`*_body_whole`), so they may still change the head or answer.

use super::{
    BodyMode, Filter, FilterCtx, FilterError, HeadSnapshot, LocalResponse, RequestHead,
    RequestInfo, ResponseHead, Verdict,
};
use crate::body::{self, Body, BoxError};
use crate::config::FailurePolicy;
use crate::metrics::Histogram;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Response};
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, StreamBody};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Frames in flight between a body task and the body it feeds.
const BODY_CHANNEL: usize = 4;

/// One filter stage of a route.
pub struct Stage {
    /// The configured filter.
    pub filter: Arc<dyn Filter>,
    /// What a failure does.
    pub policy: FailurePolicy,
    /// Requests on which this stage failed and was skipped (fail-open) or failed the request.
    pub failures: AtomicU64,
    /// How long its calls take, by phase (shared with the stages of the same plugin on the same
    /// route in earlier and later configs).
    pub timings: Arc<StageTimings>,
}

/// The phases of a filter, as `gateway_plugin_call_duration_seconds` labels them: a body phase
/// includes the trailers call that ends it.
pub const PHASES: [&str; 4] = [
    "request_headers",
    "request_body",
    "response_headers",
    "response_body",
];

/// How long one stage's calls take (wall time of the call, host waits such as outbound HTTP
/// included), one histogram per phase of [`PHASES`].
#[derive(Debug)]
pub struct StageTimings([Histogram; 4]);

impl Default for StageTimings {
    fn default() -> StageTimings {
        StageTimings(std::array::from_fn(|_| {
            Histogram::with_bounds(&crate::metrics::CALL_BUCKETS)
        }))
    }
}

impl StageTimings {
    /// The histogram of each phase, in the order of [`PHASES`].
    pub fn phases(&self) -> impl Iterator<Item = (&'static str, &Histogram)> {
        PHASES.iter().copied().zip(self.0.iter())
    }

    fn observe(&self, dir: Direction, body: bool, started: Instant) {
        let i = usize::from(body) + if dir == Direction::Response { 2 } else { 0 };
        self.0[i].observe(started.elapsed());
    }
}

/// Ends a stage call's span (see [`ChainRun::start_span`]).
fn end_span(
    trace: Option<&crate::telemetry::RequestTrace>,
    verdict: &Result<Verdict, FilterError>,
) {
    let Some(t) = trace else {
        return;
    };
    if !t.sampled() {
        return;
    }
    use crate::telemetry::StageEnd;
    let message;
    let end = match verdict {
        Ok(Verdict::Continue) => StageEnd::Continue,
        Ok(Verdict::Buffer) => StageEnd::Buffer,
        Ok(Verdict::Respond(r)) => StageEnd::Respond(r.status.as_u16()),
        Err(e) => {
            message = e.to_string();
            let kind = match e {
                FilterError::Trap(_) => "trap",
                FilterError::CpuLimit => "cpu_limit",
                FilterError::MemoryLimit => "memory_limit",
                FilterError::Abi(_) => "abi",
                FilterError::Unavailable(_) => "unavailable",
                FilterError::BodyTooLarge(_) => "body_too_large",
                FilterError::Reset => "reset",
            };
            StageEnd::Failed(kind, &message)
        }
    };
    t.end_stage(end);
}

/// A filter failure that ends the request (fail-closed).
#[derive(Debug, thiserror::Error)]
#[error("filter `{plugin}` failed: {error}")]
pub struct ChainError {
    /// The plugin's name.
    pub plugin: String,
    /// What happened.
    pub error: FilterError,
}

/// What a request phase decided for the whole chain.
pub enum Flow {
    /// Go on to the backend.
    Continue,
    /// Answer with this response; the response phase runs on filters `0..upto`: the filter that
    /// answered and those before it, in reverse (as Envoy runs a local reply through the filter that
    /// sent it and the ones that saw the request before it).
    Respond {
        /// The response.
        response: LocalResponse,
        /// The filter that answered and those before it.
        upto: usize,
    },
}

struct Slot {
    ctx: Option<Box<dyn FilterCtx>>,
}

/// The contexts of one request; `on_done` runs for each when the last holder (the request, or a body
/// task still streaming) lets go.
struct Slots(Vec<Slot>);

impl Drop for Slots {
    fn drop(&mut self) {
        for s in self.0.iter_mut() {
            if let Some(mut c) = s.ctx.take() {
                c.on_done();
            }
        }
    }
}

impl std::ops::Deref for Slots {
    type Target = Vec<Slot>;
    fn deref(&self) -> &Vec<Slot> {
        &self.0
    }
}

impl std::ops::DerefMut for Slots {
    fn deref_mut(&mut self) -> &mut Vec<Slot> {
        &mut self.0
    }
}

/// The filter contexts of one request.
pub struct ChainRun {
    stages: Arc<[Stage]>,
    slots: Arc<Mutex<Slots>>,
    /// Whom the request is authenticated as (for the access log).
    identity: Option<Arc<crate::consumers::Identity>>,
    /// The most a held response body may be (see [`ChainRun::with_body_limit`]).
    body_limit: u64,
    /// The request's trace: header and whole-body calls get a span each when it is sampled.
    trace: Option<crate::telemetry::RequestTrace>,
}

impl ChainRun {
    /// Makes the contexts for one request, which share its facts `info`. A stage whose context
    /// cannot be made fails the request (closed) or is skipped (open).
    pub fn start(stages: Arc<[Stage]>, info: RequestInfo) -> Result<ChainRun, ChainError> {
        let info = Arc::new(info);
        let mut slots = Vec::with_capacity(stages.len());
        for stage in stages.iter() {
            let ctx = match stage.filter.new_ctx(&info) {
                Ok(c) => Some(c),
                Err(e) => {
                    fail_open_or_closed(stage, e)?;
                    None
                }
            };
            slots.push(Slot { ctx });
        }
        Ok(ChainRun {
            stages,
            slots: Arc::new(Mutex::new(Slots(slots))),
            identity: info.identity.clone(),
            body_limit: DEFAULT_WHOLE_BODY_LIMIT,
            trace: info.trace.clone().filter(|t| t.sampled()),
        })
    }

    /// Starts the span of stage `i`'s call in `phase`, if the request is traced and sampled.
    fn start_span(&self, i: usize, phase: &'static str) -> Option<&crate::telemetry::RequestTrace> {
        let t = self.trace.as_ref()?;
        t.start_stage(self.stages[i].filter.name(), phase);
        Some(t)
    }

    /// The consumer a filter authenticated the request as, if any.
    pub fn consumer(&self) -> Option<Arc<crate::consumers::Consumer>> {
        self.identity.as_ref().and_then(|i| i.current())
    }

    /// The request headers phase, in chain order. The stages that read the head later are then
    /// given the head as the phase left it ([`FilterCtx::request_headers_left`]).
    pub async fn request_headers(
        &self,
        head: &mut RequestHead,
        end_of_stream: bool,
    ) -> Result<Flow, ChainError> {
        let mut slots = super::lock(&self.slots).await;
        // The hand-over runs when `left` drops: after the phase, and also when the phase's future
        // is dropped half way (a client gone while a later stage waits on a callout), so that the
        // stages that ran and kept no copy of their own still read the head in `on_log`.
        let left = RequestLeft {
            slots: &mut slots,
            head,
        };
        self.request_headers_in(&mut *left.slots, &mut *left.head, end_of_stream)
            .await
    }

    async fn request_headers_in(
        &self,
        slots: &mut Slots,
        head: &mut RequestHead,
        end_of_stream: bool,
    ) -> Result<Flow, ChainError> {
        for (i, slot) in slots.iter_mut().enumerate() {
            let Some(ctx) = slot.ctx.as_mut() else {
                continue;
            };
            if !ctx.wants_request_headers() {
                ctx.request_headers_skipped(head);
                continue;
            }
            let started = Instant::now();
            let traced = self.start_span(i, "request_headers");
            let verdict = ctx.on_request_headers(head, end_of_stream).await;
            end_span(traced, &verdict);
            self.stages[i]
                .timings
                .observe(Direction::Request, false, started);
            match verdict {
                Ok(Verdict::Continue) | Ok(Verdict::Buffer) => {}
                Ok(Verdict::Respond(response)) => {
                    return Ok(Flow::Respond {
                        response,
                        upto: i + 1,
                    })
                }
                Err(e) => {
                    slot.ctx = None;
                    fail_open_or_closed(&self.stages[i], e)?;
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// What the filters ask of the request body, the most demanding first: `Whole` if one holds it,
    /// else `Stream` if one wants to see it, else `Skip`.
    pub async fn request_body_mode(&self) -> BodyMode {
        let slots = super::lock(&self.slots).await;
        strongest(slots.iter(), |c| c.request_body_mode())
    }

    /// Like [`ChainRun::request_body_mode`], for the response body and filters `0..upto`.
    pub async fn response_body_mode(&self, upto: usize) -> BodyMode {
        let slots = super::lock(&self.slots).await;
        strongest(slots[..upto].iter(), |c| c.response_body_mode())
    }

    /// Streams the request body through the filters that asked for it. Returns the body to send on,
    /// and a receiver that yields a local response (or a failure) if a filter answers during the body.
    pub fn request_body(&self, body: Body) -> (Body, oneshot::Receiver<Result<Flow, ChainError>>) {
        self.body_task(body, Direction::Request, self.stages.len())
    }

    /// The response headers phase on filters `0..upto`, in reverse order. The stages that read the
    /// head later are then given the head as the phase left it
    /// ([`FilterCtx::response_headers_left`]).
    pub async fn response_headers(
        &self,
        head: &mut ResponseHead,
        end_of_stream: bool,
        upto: usize,
    ) -> Result<Flow, ChainError> {
        let mut slots = super::lock(&self.slots).await;
        // As in the request phase: the hand-over runs when `left` drops, also half way.
        let left = ResponseLeft {
            slots: &mut slots,
            head,
            upto,
        };
        self.response_headers_in(&mut *left.slots, &mut *left.head, end_of_stream, upto)
            .await
    }

    async fn response_headers_in(
        &self,
        slots: &mut Slots,
        head: &mut ResponseHead,
        end_of_stream: bool,
        upto: usize,
    ) -> Result<Flow, ChainError> {
        for i in (0..upto).rev() {
            let slot = &mut slots[i];
            let Some(ctx) = slot.ctx.as_mut() else {
                continue;
            };
            if !ctx.wants_response_headers() {
                ctx.response_headers_skipped(head);
                continue;
            }
            let started = Instant::now();
            let traced = self.start_span(i, "response_headers");
            let verdict = ctx.on_response_headers(head, end_of_stream).await;
            end_span(traced, &verdict);
            self.stages[i]
                .timings
                .observe(Direction::Response, false, started);
            match verdict {
                Ok(Verdict::Continue) | Ok(Verdict::Buffer) => {}
                Ok(Verdict::Respond(response)) => {
                    return Ok(Flow::Respond {
                        response,
                        upto: i + 1,
                    })
                }
                Err(e) => {
                    slot.ctx = None;
                    fail_open_or_closed(&self.stages[i], e)?;
                }
            }
        }
        Ok(Flow::Continue)
    }

    /// Streams the response body through filters `0..upto` (in reverse) that asked for it. A filter
    /// cannot replace the response once its headers are sent: an answer or a failure in this phase ends
    /// the body with an error (the client sees a broken response), and is reported on the receiver.
    /// (A filter that asks for the whole body gets the head held instead:
    /// [`Self::response_body_whole`].)
    pub fn response_body(
        &self,
        body: Body,
        upto: usize,
    ) -> (Body, oneshot::Receiver<Result<Flow, ChainError>>) {
        let (run, done_rx) = self.inline_run(body, Direction::Response, upto);
        let stream = futures_util::stream::unfold(run, InlineRun::next);
        let body = InlineBody(std::sync::Mutex::new(Box::pin(stream)));
        (body::boxed(body), done_rx)
    }

    /// Sets the most bytes a held response body may have (the route's body limit). Default:
    /// [`DEFAULT_WHOLE_BODY_LIMIT`].
    pub fn with_body_limit(mut self, limit: u64) -> ChainRun {
        self.body_limit = limit;
        self
    }

    /// Holds the request: reads all of `body` (whose limit is enforced by the body itself, as a
    /// `Limited`), runs the body phase of every filter that wants the body, in chain order (whole-mode
    /// filters with `head` open to changes, streaming ones with the body as one last chunk), then the
    /// trailers phase. On `Held::Body`, `head` carries the body's `Content-Length` (none when the body
    /// ends in trailers).
    pub async fn request_body_whole(&self, head: &mut RequestHead, body: Body) -> Held {
        let (mut data, mut trailers) = match collect(body, self.body_limit).await {
            Collected::All(data, trailers) => (data, trailers),
            Collected::Over(..) => return Held::TooLarge(self.body_limit),
            Collected::Broken(e) => return Held::Unreadable(e),
        };
        let order = Order {
            dir: Direction::Request,
            upto: self.stages.len(),
        };
        let mut slots = super::lock(&self.slots).await;
        let outcome = run_whole(
            &mut slots,
            &self.stages,
            order,
            HeadMut::Req(head),
            &mut data,
            trailers.as_mut(),
            self.trace.as_ref(),
        )
        .await;
        held(outcome, &mut head.headers, data, trailers)
    }

    /// Holds the response of filters `0..upto`: reads all of `body` up to the body limit, runs the body
    /// phases in reverse chain order (as `request_body_whole`), and on `Held::Body` leaves the
    /// `Content-Length` in `head`. A body over the limit fails each whole-mode filter by its failure
    /// policy; if all of them fail open, the body streams on unchanged (`Held::Overflow`).
    pub async fn response_body_whole(
        &self,
        head: &mut ResponseHead,
        body: Body,
        upto: usize,
    ) -> Held {
        let limit = self.body_limit;
        let (mut data, mut trailers) = match collect(body, limit).await {
            Collected::All(data, trailers) => (data, trailers),
            Collected::Broken(e) => return Held::Unreadable(e),
            Collected::Over(read, rest) => {
                let mut slots = super::lock(&self.slots).await;
                for i in (0..upto).rev() {
                    let whole = slots[i]
                        .ctx
                        .as_ref()
                        .is_some_and(|c| c.response_body_mode() == BodyMode::Whole);
                    if whole {
                        slots[i].ctx = None;
                        if let Err(e) =
                            fail_open_or_closed(&self.stages[i], FilterError::BodyTooLarge(limit))
                        {
                            return Held::Failed(e);
                        }
                    }
                }
                return Held::Overflow(body::boxed(Prepended {
                    first: Some(read),
                    rest,
                }));
            }
        };
        let order = Order {
            dir: Direction::Response,
            upto,
        };
        let mut slots = super::lock(&self.slots).await;
        let outcome = run_whole(
            &mut slots,
            &self.stages,
            order,
            HeadMut::Resp(head),
            &mut data,
            trailers.as_mut(),
            self.trace.as_ref(),
        )
        .await;
        held(outcome, &mut head.headers, data, trailers)
    }

    /// Filters `0..upto` (in order for requests, in reverse for responses) run over `body` as it is
    /// read; the receiver gets the outcome when the body ends.
    fn inline_run(
        &self,
        body: Body,
        dir: Direction,
        upto: usize,
    ) -> (InlineRun, oneshot::Receiver<Result<Flow, ChainError>>) {
        let (done_tx, done_rx) = oneshot::channel();
        let run = InlineRun {
            body,
            slots: self.slots.clone(),
            guard: None,
            stages: self.stages.clone(),
            order: Order { dir, upto },
            held: Vec::new(),
            dir,
            done: Some(done_tx),
            queued: None,
        };
        (run, done_rx)
    }

    /// Like [`Self::inline_run`], read by a task of its own into a small channel, so the filters see
    /// the body as it arrives whatever the reader's pace (request bodies: as the client sends them,
    /// not as the upstream takes them).
    fn body_task(
        &self,
        body: Body,
        dir: Direction,
        upto: usize,
    ) -> (Body, oneshot::Receiver<Result<Flow, ChainError>>) {
        let (tx, rx) = mpsc::channel::<FrameResult>(BODY_CHANNEL);
        let (run, done_rx) = self.inline_run(body, dir, upto);
        tokio::spawn(async move {
            let mut frames = std::pin::pin!(futures_util::stream::unfold(run, InlineRun::next));
            while let Some(frame) = futures_util::StreamExt::next(&mut frames).await {
                if tx.send(frame).await.is_err() {
                    // Nobody reads on: the filters' outcome no longer matters.
                    break;
                }
            }
        });
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
            );
        (body::boxed(StreamBody::new(stream)), done_rx)
    }
}

type FrameResult = Result<Frame<Bytes>, BoxError>;

/// A body filtered as it is read, on the reader's task: each frame the reader asks for is read from
/// `body` and run through the filters before it is handed on (the reader's pace is the filters'
/// pace). The outcome goes to `done` when the body ends. Response bodies are read this way by hyper
/// itself; request bodies by a task of their own ([`ChainRun::body_task`]).
struct InlineRun {
    body: Body,
    slots: Arc<Mutex<Slots>>,
    guard: Option<tokio::sync::OwnedMutexGuard<Slots>>,
    stages: Arc<[Stage]>,
    order: Order,
    /// By stage: the chunks a filter that buffers keeps (sized when one first does).
    held: Vec<Option<BytesMut>>,
    dir: Direction,
    done: Option<oneshot::Sender<Result<Flow, ChainError>>>,
    /// Trailers to send after the last data frame.
    queued: Option<HeaderMap>,
}

impl InlineRun {
    fn end(&mut self, outcome: Result<Flow, ChainError>) {
        if let Some(done) = self.done.take() {
            let _ = done.send(outcome);
        }
        self.guard = None;
    }

    async fn next(mut self) -> Option<(FrameResult, InlineRun)> {
        if let Some(t) = self.queued.take() {
            return Some((Ok(Frame::trailers(t)), self));
        }
        self.done.as_ref()?;
        if self.guard.is_none() {
            self.guard = Some(match self.slots.clone().try_lock_owned() {
                Ok(g) => g,
                Err(_) => self.slots.clone().lock_owned().await,
            });
        }
        loop {
            let mut trailers = None;
            let (chunk, eos) = match self.body.frame().await {
                None => (Bytes::new(), true),
                Some(Err(e)) => {
                    self.end(Ok(Flow::Continue));
                    return Some((Err(e), self));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(d) => (d, self.body.is_end_stream()),
                    Err(frame) => {
                        trailers = frame.into_trailers().ok();
                        (Bytes::new(), true)
                    }
                },
            };
            let slots = self.guard.as_mut()?;
            let flow = run_chunk(
                slots,
                &self.stages,
                self.order,
                &mut self.held,
                chunk,
                eos,
                self.dir,
            )
            .await;
            let data = match flow {
                Ok(ChunkFlow::Send(data)) => data,
                Ok(ChunkFlow::Respond(response, upto)) => {
                    self.end(Ok(Flow::Respond { response, upto }));
                    return Some((Err("a filter answered during the body".into()), self));
                }
                Err(e) => {
                    let msg = e.to_string();
                    self.end(Err(e));
                    return Some((Err(msg.into()), self));
                }
            };
            if eos {
                if let Some(mut t) = trailers {
                    match run_trailers(slots, &self.stages, self.order, &mut t, self.dir).await {
                        Ok(None) => self.queued = Some(t),
                        Ok(Some((response, upto))) => {
                            self.end(Ok(Flow::Respond { response, upto }));
                            return Some((Err("a filter answered on trailers".into()), self));
                        }
                        Err(e) => {
                            let msg = e.to_string();
                            self.end(Err(e));
                            return Some((Err(msg.into()), self));
                        }
                    }
                }
                self.end(Ok(Flow::Continue));
            }
            if !data.is_empty() {
                return Some((Ok(Frame::data(data)), self));
            }
            if let Some(t) = self.queued.take() {
                return Some((Ok(Frame::trailers(t)), self));
            }
            if eos {
                return None;
            }
        }
    }
}

/// [`InlineRun`]'s stream as a body. The stream holds filter calls in progress, which are `Send` but
/// not `Sync`; the mutex makes the body `Sync` without ever being locked (only `get_mut` is used).
struct InlineBody(std::sync::Mutex<futures_util::stream::BoxStream<'static, FrameResult>>);

impl http_body::Body for InlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<FrameResult>> {
        let stream = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(|e| e.into_inner());
        futures_util::Stream::poll_next(stream.as_mut(), cx)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Request,
    Response,
}

/// Filters `0..upto` in the order a direction runs them: in chain order for requests, in reverse
/// for responses.
#[derive(Clone, Copy)]
struct Order {
    dir: Direction,
    upto: usize,
}

impl Order {
    fn indices(self) -> impl Iterator<Item = usize> {
        let (upto, reverse) = (self.upto, matches!(self.dir, Direction::Response));
        (0..upto).map(move |k| if reverse { upto - 1 - k } else { k })
    }
}

enum ChunkFlow {
    Send(Bytes),
    Respond(LocalResponse, usize),
}

/// Runs one chunk through the filters in `order`. A filter that buffers keeps the chunk (and those
/// after it) until the end of the stream, then sees the whole body at once.
async fn run_chunk(
    slots: &mut [Slot],
    stages: &[Stage],
    order: Order,
    held: &mut Vec<Option<BytesMut>>,
    mut data: Bytes,
    eos: bool,
    dir: Direction,
) -> Result<ChunkFlow, ChainError> {
    for i in order.indices() {
        let Some(ctx) = slots[i].ctx.as_mut() else {
            continue;
        };
        let mode = match dir {
            Direction::Request => ctx.request_body_mode(),
            Direction::Response => ctx.response_body_mode(),
        };
        if mode == BodyMode::Skip {
            continue;
        }
        if let Some(buf) = held.get_mut(i).and_then(Option::as_mut) {
            buf.extend_from_slice(&data);
            if !eos {
                return Ok(ChunkFlow::Send(Bytes::new()));
            }
            data = held[i].take().map(BytesMut::freeze).unwrap_or_default();
        }
        let started = Instant::now();
        let verdict = match dir {
            Direction::Request => ctx.on_request_body(&mut data, eos).await,
            Direction::Response => ctx.on_response_body(&mut data, eos).await,
        };
        stages[i].timings.observe(dir, true, started);
        match verdict {
            Ok(Verdict::Continue) => {}
            Ok(Verdict::Buffer) if !eos => {
                if held.len() < stages.len() {
                    held.resize_with(stages.len(), || None);
                }
                held[i] = Some(BytesMut::from(&data[..]));
                return Ok(ChunkFlow::Send(Bytes::new()));
            }
            // Buffering at the end of the stream has nothing more to wait for.
            Ok(Verdict::Buffer) => {}
            Ok(Verdict::Respond(r)) => return Ok(ChunkFlow::Respond(r, i + 1)),
            Err(e) => {
                slots[i].ctx = None;
                fail_open_or_closed(&stages[i], e)?;
            }
        }
    }
    Ok(ChunkFlow::Send(data))
}

async fn run_trailers(
    slots: &mut [Slot],
    stages: &[Stage],
    order: Order,
    trailers: &mut HeaderMap,
    dir: Direction,
) -> Result<Option<(LocalResponse, usize)>, ChainError> {
    for i in order.indices() {
        let Some(ctx) = slots[i].ctx.as_mut() else {
            continue;
        };
        let started = Instant::now();
        let verdict = match dir {
            Direction::Request => ctx.on_request_trailers(trailers).await,
            Direction::Response => ctx.on_response_trailers(trailers).await,
        };
        stages[i].timings.observe(dir, true, started);
        match verdict {
            Ok(Verdict::Respond(r)) => return Ok(Some((r, i + 1))),
            Ok(_) => {}
            Err(e) => {
                slots[i].ctx = None;
                fail_open_or_closed(&stages[i], e)?;
            }
        }
    }
    Ok(None)
}

/// The most bytes of a held body when no limit was set with [`ChainRun::with_body_limit`] (the
/// gateway always sets the route's `max_body_size`). Default: 10 MiB, the listener default.
pub const DEFAULT_WHOLE_BODY_LIMIT: u64 = 10 * 1024 * 1024;

/// What holding a body for the filters that asked for it whole came to.
pub enum Held {
    /// Send on: the body as the filters left it, and its length (`None` when it ends in trailers,
    /// which need a chunked message). The head already has the matching `Content-Length`.
    Body(Body, Option<u64>),
    /// Responses only: the body is over the limit and every whole-mode filter failed open; this is
    /// the body as read so far and then the rest, unchanged, to stream through the other filters.
    Overflow(Body),
    /// A filter answered instead; the response phase runs on filters `0..upto`.
    Respond {
        /// The response.
        response: LocalResponse,
        /// The filter that answered and those before it.
        upto: usize,
    },
    /// A request body over this limit.
    TooLarge(u64),
    /// The body broke off (or, for a request, its `Limited` wrapper refused it).
    Unreadable(BoxError),
    /// A filter failed and its failure policy is closed.
    Failed(ChainError),
}

/// A body read to its end, or not.
enum Collected {
    /// All the data and the trailers, if any.
    All(Bytes, Option<HeaderMap>),
    /// Over the limit: what was read (including the chunk that crossed it) and the rest.
    Over(Bytes, Body),
    /// The body failed.
    Broken(BoxError),
}

/// Reads `body` to its end, keeping at most `limit` bytes.
async fn collect(mut body: Body, limit: u64) -> Collected {
    let mut data = BytesMut::new();
    let mut trailers: Option<HeaderMap> = None;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => return Collected::Broken(e),
        };
        match frame.into_data() {
            Ok(chunk) => {
                data.extend_from_slice(&chunk);
                if data.len() as u64 > limit {
                    return Collected::Over(data.freeze(), body);
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers.get_or_insert_with(HeaderMap::new).extend(t);
                }
            }
        }
    }
    Collected::All(data.freeze(), trailers)
}

/// The head a whole-body call may change.
enum HeadMut<'a> {
    Req(&'a mut RequestHead),
    Resp(&'a mut ResponseHead),
}

/// Runs the body phase of the filters in `order` on a held body, then their trailers phase.
async fn run_whole(
    slots: &mut [Slot],
    stages: &[Stage],
    order: Order,
    mut head: HeadMut<'_>,
    data: &mut Bytes,
    trailers: Option<&mut HeaderMap>,
    trace: Option<&crate::telemetry::RequestTrace>,
) -> Result<Option<(LocalResponse, usize)>, ChainError> {
    let dir = match head {
        HeadMut::Req(_) => Direction::Request,
        HeadMut::Resp(_) => Direction::Response,
    };
    for i in order.indices() {
        let Some(ctx) = slots[i].ctx.as_mut() else {
            continue;
        };
        let started = Instant::now();
        let mode = match &head {
            HeadMut::Req(_) => ctx.request_body_mode(),
            HeadMut::Resp(_) => ctx.response_body_mode(),
        };
        if mode == BodyMode::Skip {
            continue;
        }
        let traced = trace.inspect(|t| {
            let phase = match dir {
                Direction::Request => "request_body",
                Direction::Response => "response_body",
            };
            t.start_stage(stages[i].filter.name(), phase);
        });
        let verdict = match (&mut head, mode) {
            (HeadMut::Req(h), BodyMode::Whole) => ctx.on_request_body_whole(h, data).await,
            (HeadMut::Req(_), _) => ctx.on_request_body(data, true).await,
            (HeadMut::Resp(h), BodyMode::Whole) => ctx.on_response_body_whole(h, data).await,
            (HeadMut::Resp(_), _) => ctx.on_response_body(data, true).await,
        };
        end_span(traced, &verdict);
        stages[i].timings.observe(dir, true, started);
        match verdict {
            // Buffering at the end of the stream has nothing more to wait for.
            Ok(Verdict::Continue) | Ok(Verdict::Buffer) => {}
            Ok(Verdict::Respond(r)) => return Ok(Some((r, i + 1))),
            Err(e) => {
                slots[i].ctx = None;
                fail_open_or_closed(&stages[i], e)?;
            }
        }
    }
    match trailers {
        Some(t) => run_trailers(slots, stages, order, t, dir).await,
        None => Ok(None),
    }
}

/// The outcome of a held body phase; on going on, the body to send, with its `Content-Length` put in
/// `headers`.
fn held(
    outcome: Result<Option<(LocalResponse, usize)>, ChainError>,
    headers: &mut HeaderMap,
    data: Bytes,
    trailers: Option<HeaderMap>,
) -> Held {
    match outcome {
        Ok(Some((response, upto))) => Held::Respond { response, upto },
        Err(e) => Held::Failed(e),
        Ok(None) => {
            headers.remove(header::TRANSFER_ENCODING);
            headers.remove(header::CONTENT_LENGTH);
            match trailers {
                None => {
                    let len = data.len() as u64;
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                    Held::Body(body::full(data), Some(len))
                }
                Some(t) => {
                    let mut frames = Vec::with_capacity(2);
                    if !data.is_empty() {
                        frames.push(Ok::<_, BoxError>(Frame::data(data)));
                    }
                    frames.push(Ok(Frame::trailers(t)));
                    let stream = futures_util::stream::iter(frames);
                    Held::Body(body::boxed(StreamBody::new(stream)), None)
                }
            }
        }
    }
}

/// A body that yields `first`, then the frames of `rest`.
struct Prepended {
    first: Option<Bytes>,
    rest: Body,
}

impl http_body::Body for Prepended {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            return std::task::Poll::Ready(Some(Ok(Frame::data(first))));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let first = self.first.as_ref().map_or(0, |b| b.len() as u64);
        let rest = self.rest.size_hint();
        let mut hint = http_body::SizeHint::new();
        hint.set_lower(rest.lower() + first);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + first);
        }
        hint
    }
}

/// Applies a stage's failure policy: open skips it (logged, counted), closed fails the request.
fn strongest<'a>(
    slots: impl Iterator<Item = &'a Slot>,
    mode: impl Fn(&dyn FilterCtx) -> BodyMode,
) -> BodyMode {
    slots
        .filter_map(|s| s.ctx.as_deref().map(&mode))
        .max()
        .unwrap_or(BodyMode::Skip)
}

fn fail_open_or_closed(stage: &Stage, error: FilterError) -> Result<(), ChainError> {
    if matches!(error, FilterError::Reset) {
        // The filter's own decision: the request ends whatever the policy says.
        return Err(ChainError {
            plugin: stage.filter.name().to_owned(),
            error,
        });
    }
    stage.failures.fetch_add(1, Ordering::Relaxed);
    match stage.policy {
        FailurePolicy::Open => {
            tracing::warn!(plugin = stage.filter.name(), %error, "filter failed; skipped (failure policy open)");
            Ok(())
        }
        FailurePolicy::Closed => {
            tracing::warn!(plugin = stage.filter.name(), %error, "filter failed; request failed (failure policy closed)");
            Err(ChainError {
                plugin: stage.filter.name().to_owned(),
                error,
            })
        }
    }
}

/// A local response as an HTTP response.
pub fn local_to_response(r: LocalResponse) -> Response<Body> {
    let mut resp = Response::new(body::full(r.body));
    *resp.status_mut() = r.status;
    *resp.headers_mut() = r.headers;
    // The body is what it is: its framing is the gateway's, whatever the filter wrote.
    crate::framing::strip_framing(resp.headers_mut());
    resp
}

/// Hands the request head, as the phase left it, to the stages that read it later
/// ([`FilterCtx::request_headers_left`]) when dropped.
struct RequestLeft<'a> {
    slots: &'a mut Slots,
    head: &'a mut RequestHead,
}

impl Drop for RequestLeft<'_> {
    fn drop(&mut self) {
        let mut left = HeadSnapshot::new(&*self.head);
        for ctx in self.slots.iter_mut().filter_map(|s| s.ctx.as_mut()) {
            ctx.request_headers_left(&mut left);
        }
    }
}

/// [`RequestLeft`] for the response head and stages `0..upto`.
struct ResponseLeft<'a> {
    slots: &'a mut Slots,
    head: &'a mut ResponseHead,
    upto: usize,
}

impl Drop for ResponseLeft<'_> {
    fn drop(&mut self) {
        let mut left = HeadSnapshot::new(&*self.head);
        for ctx in self.slots[..self.upto]
            .iter_mut()
            .filter_map(|s| s.ctx.as_mut())
        {
            ctx.response_headers_left(&mut left);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The chain's ordering, buffering and failure policies, with filters written in Rust for the test.
    use super::*;
    use crate::filter::{Filter, FilterCtx, RequestInfo};
    use futures_util::future::BoxFuture;
    use http::StatusCode;
    use std::sync::Mutex as StdMutex;

    /// A filter that records its calls and acts as told.
    struct Probe {
        name: &'static str,
        log: Arc<StdMutex<Vec<String>>>,
        body: BodyMode,
        buffer: bool,
        respond_on_headers: bool,
        fail_on_headers: bool,
    }

    struct ProbeCtx {
        name: &'static str,
        log: Arc<StdMutex<Vec<String>>>,
        body: BodyMode,
        buffer: bool,
        respond_on_headers: bool,
        fail_on_headers: bool,
    }

    impl Filter for Probe {
        fn name(&self) -> &str {
            self.name
        }
        fn new_ctx(&self, _: &Arc<RequestInfo>) -> Result<Box<dyn FilterCtx>, FilterError> {
            Ok(Box::new(ProbeCtx {
                name: self.name,
                log: self.log.clone(),
                body: self.body,
                buffer: self.buffer,
                respond_on_headers: self.respond_on_headers,
                fail_on_headers: self.fail_on_headers,
            }))
        }
    }

    impl FilterCtx for ProbeCtx {
        fn on_request_headers<'a>(
            &'a mut self,
            req: &'a mut RequestHead,
            _: bool,
        ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
            Box::pin(async move {
                self.log.lock().unwrap().push(format!("{}:req", self.name));
                req.headers.append("x-seen", self.name.parse().unwrap());
                if self.fail_on_headers {
                    return Err(FilterError::Trap("boom".into()));
                }
                if self.respond_on_headers {
                    return Ok(Verdict::Respond(LocalResponse {
                        status: StatusCode::FORBIDDEN,
                        headers: HeaderMap::new(),
                        body: Bytes::from_static(b"denied"),
                    }));
                }
                Ok(Verdict::Continue)
            })
        }
        fn request_body_mode(&self) -> BodyMode {
            self.body
        }
        fn response_body_mode(&self) -> BodyMode {
            self.body
        }
        fn on_request_body<'a>(
            &'a mut self,
            body: &'a mut Bytes,
            eos: bool,
        ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
            Box::pin(async move {
                self.log.lock().unwrap().push(format!(
                    "{}:body:{}:{eos}",
                    self.name,
                    String::from_utf8_lossy(body)
                ));
                if self.buffer && !eos {
                    return Ok(Verdict::Buffer);
                }
                *body = Bytes::from(String::from_utf8_lossy(body).to_uppercase());
                Ok(Verdict::Continue)
            })
        }
        fn on_response_headers<'a>(
            &'a mut self,
            resp: &'a mut ResponseHead,
            _: bool,
        ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
            Box::pin(async move {
                self.log.lock().unwrap().push(format!(
                    "{}:resp:{}",
                    self.name,
                    resp.status.as_u16()
                ));
                Ok(Verdict::Continue)
            })
        }
        fn on_request_body_whole<'a>(
            &'a mut self,
            req: &'a mut RequestHead,
            body: &'a mut Bytes,
        ) -> BoxFuture<'a, Result<Verdict, FilterError>> {
            Box::pin(async move {
                let text = String::from_utf8_lossy(body).into_owned();
                self.log
                    .lock()
                    .unwrap()
                    .push(format!("{}:whole:{text}", self.name));
                req.headers.insert("x-whole", HeaderValue::from(body.len()));
                *body = Bytes::from(format!("{text}!"));
                Ok(Verdict::Continue)
            })
        }
        fn on_done(&mut self) {
            self.log.lock().unwrap().push(format!("{}:done", self.name));
        }
    }

    fn stage(p: Probe, policy: FailurePolicy) -> Stage {
        Stage {
            filter: Arc::new(p),
            policy,
            failures: AtomicU64::new(0),
            timings: Arc::default(),
        }
    }

    fn probe(name: &'static str, log: &Arc<StdMutex<Vec<String>>>) -> Probe {
        Probe {
            name,
            log: log.clone(),
            body: BodyMode::Skip,
            buffer: false,
            respond_on_headers: false,
            fail_on_headers: false,
        }
    }

    fn info() -> RequestInfo {
        RequestInfo {
            route: Arc::from("r"),
            upstream: None,
            peer: "127.0.0.1:1".parse().unwrap(),
            local: "127.0.0.1:2".parse().unwrap(),
            scheme: "http",
            protocol: "1.1",
            id: 1,
            connection: 1,
            tls: None,
            timeout: std::time::Duration::from_secs(5),
            identity: None,
            params: Vec::new(),
            trace: None,
        }
    }

    fn head() -> RequestHead {
        RequestHead {
            method: http::Method::GET,
            uri: "/".parse().unwrap(),
            headers: HeaderMap::new(),
        }
    }

    #[tokio::test]
    async fn request_in_order_response_in_reverse_and_local_responses_go_back_through_the_answering_filter(
    ) {
        let log = Arc::new(StdMutex::new(Vec::new()));
        let mut c = probe("c", &log);
        c.respond_on_headers = true;
        let stages: Arc<[Stage]> = vec![
            stage(probe("a", &log), FailurePolicy::Closed),
            stage(probe("b", &log), FailurePolicy::Closed),
            stage(c, FailurePolicy::Closed),
            stage(probe("d", &log), FailurePolicy::Closed),
        ]
        .into();
        let run = ChainRun::start(stages, info()).unwrap();
        let mut h = head();
        let Flow::Respond { response, upto } = run.request_headers(&mut h, true).await.unwrap()
        else {
            panic!("c answers");
        };
        assert_eq!((response.status.as_u16(), upto), (403, 3));
        let mut rh = ResponseHead {
            status: response.status,
            headers: HeaderMap::new(),
            upstream: None,
        };
        run.response_headers(&mut rh, true, upto).await.unwrap();
        drop(run);
        assert_eq!(
            *log.lock().unwrap(),
            [
                "a:req",
                "b:req",
                "c:req",
                "c:resp:403",
                "b:resp:403",
                "a:resp:403",
                "a:done",
                "b:done",
                "c:done",
                "d:done"
            ]
        );
    }

    #[tokio::test]
    async fn failure_policies() {
        let log = Arc::new(StdMutex::new(Vec::new()));
        let mut bad = probe("bad", &log);
        bad.fail_on_headers = true;
        let open: Arc<[Stage]> = vec![
            stage(bad, FailurePolicy::Open),
            stage(probe("next", &log), FailurePolicy::Closed),
        ]
        .into();
        let run = ChainRun::start(open.clone(), info()).unwrap();
        let mut h = head();
        assert!(matches!(
            run.request_headers(&mut h, true).await,
            Ok(Flow::Continue)
        ));
        assert_eq!(h.headers.get_all("x-seen").iter().count(), 2);
        assert_eq!(open[0].failures.load(Ordering::Relaxed), 1);

        let mut bad = probe("bad", &log);
        bad.fail_on_headers = true;
        let closed: Arc<[Stage]> = vec![
            stage(bad, FailurePolicy::Closed),
            stage(probe("never", &log), FailurePolicy::Closed),
        ]
        .into();
        let run = ChainRun::start(closed, info()).unwrap();
        let err = run
            .request_headers(&mut head(), true)
            .await
            .err()
            .expect("closed fails");
        assert_eq!(err.plugin, "bad");
        assert!(!log.lock().unwrap().iter().any(|l| l == "never:req"));
    }

    #[tokio::test]
    async fn bodies_stream_through_interested_filters_and_buffer_on_request() {
        let log = Arc::new(StdMutex::new(Vec::new()));
        let mut streamer = probe("s", &log);
        streamer.body = BodyMode::Stream;
        let mut bufferer = probe("b", &log);
        bufferer.body = BodyMode::Stream;
        bufferer.buffer = true;
        let stages: Arc<[Stage]> = vec![
            stage(streamer, FailurePolicy::Closed),
            stage(probe("skip", &log), FailurePolicy::Closed),
            stage(bufferer, FailurePolicy::Closed),
        ]
        .into();
        let run = ChainRun::start(stages, info()).unwrap();
        assert_eq!(run.request_body_mode().await, BodyMode::Stream);
        let frames = vec![
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from("ab"))),
            Ok(Frame::data(Bytes::from("cd"))),
        ];
        let input = body::boxed(StreamBody::new(futures_util::stream::iter(frames)));
        let (out, verdict) = run.request_body(input);
        let bytes = out.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "ABCD");
        assert!(matches!(verdict.await, Ok(Ok(Flow::Continue))));
        let log = log.lock().unwrap().clone();
        assert_eq!(
            log,
            [
                "s:body:ab:false",
                "b:body:AB:false",
                "s:body:cd:false",
                "s:body::true",
                "b:body:ABCD:true"
            ]
        );
    }

    #[tokio::test]
    async fn a_whole_mode_filter_holds_the_head_and_sees_the_whole_body_with_it() {
        let log = Arc::new(StdMutex::new(Vec::new()));
        let mut streamer = probe("s", &log);
        streamer.body = BodyMode::Stream;
        let mut whole = probe("w", &log);
        whole.body = BodyMode::Whole;
        let stages: Arc<[Stage]> = vec![
            stage(streamer, FailurePolicy::Closed),
            stage(whole, FailurePolicy::Closed),
        ]
        .into();
        let run = ChainRun::start(stages.clone(), info()).unwrap();
        let mut h = head();
        h.headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        run.request_headers(&mut h, false).await.unwrap();
        assert_eq!(run.request_body_mode().await, BodyMode::Whole);
        let frames = vec![
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from("ab"))),
            Ok(Frame::data(Bytes::from("cd"))),
        ];
        let input = body::boxed(StreamBody::new(futures_util::stream::iter(frames)));
        let Held::Body(out, len) = run.request_body_whole(&mut h, input).await else {
            panic!("the body goes on");
        };
        // The streaming filter sees the held body as one last chunk, then the whole-mode filter sees
        // it with the head, which it changes.
        assert_eq!(out.collect().await.unwrap().to_bytes(), "ABCD!");
        assert_eq!(len, Some(5));
        assert_eq!(h.headers["x-whole"], "4");
        assert_eq!(h.headers[header::CONTENT_LENGTH], "5");
        assert!(h.headers.get(header::TRANSFER_ENCODING).is_none());
        assert_eq!(
            log.lock().unwrap()[2..],
            ["s:body:abcd:true", "w:whole:ABCD"]
        );

        // Trailers pass; the body then has no length (it goes chunked).
        let run = ChainRun::start(stages, info()).unwrap();
        let mut h = head();
        run.request_headers(&mut h, false).await.unwrap();
        let mut t = HeaderMap::new();
        t.insert("x-sum", HeaderValue::from_static("1"));
        let frames = vec![
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from("x"))),
            Ok(Frame::trailers(t)),
        ];
        let input = body::boxed(StreamBody::new(futures_util::stream::iter(frames)));
        let Held::Body(out, None) = run.request_body_whole(&mut h, input).await else {
            panic!("the body goes on, without a length");
        };
        let got = out.collect().await.unwrap();
        assert_eq!(got.trailers().unwrap()["x-sum"], "1");
        assert_eq!(got.to_bytes(), "X!");
        assert!(h.headers.get(header::CONTENT_LENGTH).is_none());

        // A response body over the limit fails the whole-mode filter by its policy (closed here).
        let log = Arc::new(StdMutex::new(Vec::new()));
        let mut whole = probe("w", &log);
        whole.body = BodyMode::Whole;
        let stages: Arc<[Stage]> = vec![stage(whole, FailurePolicy::Closed)].into();
        let run = ChainRun::start(stages, info()).unwrap().with_body_limit(3);
        let mut rh = ResponseHead {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            upstream: None,
        };
        assert_eq!(run.response_body_mode(1).await, BodyMode::Whole);
        match run
            .response_body_whole(&mut rh, body::full("abcd"), 1)
            .await
        {
            Held::Failed(e) => assert!(matches!(e.error, FilterError::BodyTooLarge(3))),
            _ => panic!("over the limit, closed"),
        }
    }
}
