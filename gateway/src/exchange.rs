//! One request through a route: the request phase of its filters, the request body (held whole for
//! a filter that asked for it, else streamed), the backend, the response phase in reverse order, and
//! the response body. [`run`] owns the chain's bookkeeping (which filters answered, held heads, body
//! modes, the declared length, a filter answering while the body is on its way); the proxy routes and
//! chooses the [`Backend`], `gateway plugin test` drives the same exchange with a fixture backend.

use crate::body::{self, Body, BodyWatch, Limited};
use crate::errors::{self, ProxyError, RequestId};
use crate::filter::chain::{local_to_response, ChainError, ChainRun, Flow, Held, Stage};
use crate::filter::{BodyMode, RequestHead, RequestInfo, ResponseHead};
use http::request::Parts;
use http::{header, Response, StatusCode};
use http_body::Body as _;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::oneshot;

/// What answers a request once its filters let it through: an upstream cluster, a fixed response, a
/// redirect, a function, or a test fixture. A new kind plugs in here without touching the chain.
pub trait Backend {
    /// What the backend reports for the access log (e.g. the endpoint that answered).
    type Note: Default + Send;

    /// Whether the backend reads the request body. One that does not (a fixed answer) gets an empty
    /// body, after the filters that asked for the body have seen all of it.
    fn takes_body(&self) -> bool {
        true
    }

    /// The upstream endpoint that answered, as the backend's note tells (for filters).
    fn answered_by(_note: &Self::Note) -> Option<Arc<str>> {
        None
    }

    /// Answers `parts` with `body`. `declared`: the body's length when it is known. `watch` tells a
    /// body that broke off because it went over the limit from one that broke.
    fn serve(
        self,
        parts: Parts,
        body: Body,
        declared: Option<u64>,
        watch: &BodyWatch,
    ) -> impl Future<Output = (Result<Response<Body>, ProxyError>, Self::Note)> + Send;
}

/// What an exchange ended in.
pub struct Outcome<N> {
    /// The response for the client (an error's response when it failed).
    pub resp: Response<Body>,
    /// The filter contexts, to be kept until the response body is done (filters see `on_done`
    /// after the exchange).
    pub chain: Option<ChainRun>,
    /// Whether the backend was asked.
    pub served: bool,
    /// What the backend reported.
    pub note: N,
    /// The error the response was made from, if any (the detail for the log).
    pub error: Option<ProxyError>,
    /// With filters streaming the response body: their outcome, once the body has ended.
    pub response_body: Option<oneshot::Receiver<Result<Flow, ChainError>>>,
}

/// The request as the exchange takes it.
pub struct Exchange<'a> {
    /// The route's filters, if it has any.
    pub stages: Option<&'a Arc<[Stage]>>,
    /// The request body's limit; over it: 413.
    pub limit: u64,
    /// The request's id, for error responses.
    pub id: &'a RequestId,
}

impl<N: Default> Outcome<N> {
    fn new(resp: Response<Body>, chain: Option<ChainRun>) -> Self {
        Outcome {
            resp,
            chain,
            served: false,
            note: N::default(),
            error: None,
            response_body: None,
        }
    }

    fn failed(id: &RequestId, error: ProxyError, chain: Option<ChainRun>) -> Self {
        let mut o = Outcome::new(errors::respond(&error, id), chain);
        o.error = Some(error);
        o
    }
}

/// The answer a filter gave, or the failure it ended in, while the request body was on its way.
enum Early {
    Local(crate::filter::LocalResponse, usize),
    Failed(ChainError),
}

/// Resolves if a filter answered (or failed) during the request body; never resolves otherwise.
async fn body_phase_answer(verdict: &mut oneshot::Receiver<Result<Flow, ChainError>>) -> Early {
    match verdict.await {
        Ok(Ok(Flow::Respond { response, upto })) => Early::Local(response, upto),
        Ok(Err(e)) => Early::Failed(e),
        _ => std::future::pending().await,
    }
}

impl Exchange<'_> {
    /// Runs the exchange. `info` makes the filters' request facts, and is called only when the route
    /// has filters.
    pub async fn run<B: Backend>(
        self,
        info: impl FnOnce() -> RequestInfo,
        mut parts: Parts,
        incoming: Body,
        backend: B,
    ) -> Outcome<B::Note> {
        let (limit, id) = (self.limit, self.id);
        let mut declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Outcome::failed(id, ProxyError::BodyTooLarge { limit }, None);
        }
        let end_of_stream = incoming.is_end_stream();
        // A body's watch is shared with the body; a request without one has nothing that records
        // into its watch, which is then a plain value (no allocation).
        let shared = (!end_of_stream).then(|| Arc::new(BodyWatch::default()));
        let quiet = BodyWatch::default();
        let watch: &BodyWatch = shared.as_deref().unwrap_or(&quiet);
        // The answer to a HEAD request has no body, whatever its Content-Length says.
        let head_request = parts.method == http::Method::HEAD;
        let mut body = match &shared {
            None => body::empty(),
            Some(w) => body::boxed(Limited::new(incoming, limit, w.clone())),
        };
        // For a backend that reshapes the body on its way (gRPC-Web text decoding) to record the
        // client's malformed body; no other request needs it.
        if let (Some(w), Some(crate::proxy::grpc::Protocol::GrpcWebText)) = (&shared, id.grpc()) {
            parts.extensions.insert(w.clone());
        }
        let Some(stages) = self.stages else {
            let (result, note) = backend.serve(parts, body, declared, watch).await;
            return finish(result, note, None, id);
        };

        // The request phase of the route's filters.
        let run = match ChainRun::start(stages.clone(), info()) {
            Ok(run) => run.with_body_limit(limit),
            Err(e) => return Outcome::failed(id, ProxyError::Filter(e), None),
        };
        let upto = stages.len();
        let mut head = RequestHead {
            method: parts.method.clone(),
            uri: std::mem::take(&mut parts.uri),
            headers: std::mem::take(&mut parts.headers),
        };
        match run.request_headers(&mut head, end_of_stream).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::Respond { response, upto }) => {
                return local(&run, response, upto, head_request, id)
                    .await
                    .with(run);
            }
            Err(e) => return Outcome::failed(id, ProxyError::Filter(e), Some(run)),
        }
        // A filter asked for the whole body: the head waits for it, and may still change.
        let mode = if end_of_stream {
            BodyMode::Skip
        } else {
            run.request_body_mode().await
        };
        if mode == BodyMode::Whole {
            let taken = std::mem::replace(&mut body, body::empty());
            let err = match run.request_body_whole(&mut head, taken).await {
                Held::Body(b, len) => {
                    (body, declared) = (b, len);
                    None
                }
                Held::Respond { response, upto } => {
                    return local(&run, response, upto, head_request, id)
                        .await
                        .with(run);
                }
                Held::Failed(e) => Some(ProxyError::Filter(e)),
                Held::TooLarge(_) | Held::Overflow(_) => Some(ProxyError::BodyTooLarge { limit }),
                Held::Unreadable(e) => Some(body_error(watch, e.to_string(), limit)),
            };
            if let Some(err) = err {
                return Outcome::failed(id, err, Some(run));
            }
        }
        parts.method = head.method;
        parts.uri = head.uri;
        parts.headers = head.headers;
        // A Content-Length a filter wrote does not frame the body the backend gets: the client's
        // does (or, for a held body, the one `held` wrote; a streamed body has none, below).
        if mode != BodyMode::Whole {
            keep_length(&mut parts.headers, declared.map(http::HeaderValue::from));
        }
        let mut verdict = None;
        // (Only a request with a body streams it, so its watch is the shared one.)
        if let (BodyMode::Stream, Some(w)) = (mode, &shared) {
            // A filter may change the body, so its length is no longer known.
            parts.headers.remove(header::CONTENT_LENGTH);
            declared = None;
            let (b, v) = run.request_body(body);
            body = body::boxed(body::Filtered::new(b, w.clone()));
            verdict = Some(v);
        }

        // A backend that takes no body: the body is read through the filters first, so that a
        // filter's answer on it comes before the backend's. (Not one `if let` over a tuple: that
        // would take the verdict from a backend that does take the body, and lose the race below.)
        let takes_body = backend.takes_body();
        if let Some(mut v) = verdict.take_if(|_| !takes_body) {
            let drained = http_body_util::BodyExt::collect(body).await;
            body = body::empty();
            match v.try_recv() {
                Ok(Ok(Flow::Respond { response, upto })) => {
                    return local(&run, response, upto, head_request, id)
                        .await
                        .with(run);
                }
                Ok(Err(e)) => return Outcome::failed(id, ProxyError::Filter(e), Some(run)),
                _ => {}
            }
            if let Err(e) = drained {
                return Outcome::failed(id, body_error(watch, e.to_string(), limit), Some(run));
            }
        }
        // The backend, raced against a filter answering while the request body streams; an answer
        // that is already there when the backend is done replaces the backend's.
        // (Awaited where it is made: a future made first and awaited later is copied into the
        // exchange's state, a few hundred bytes per request.)
        let (result, note) = match verdict {
            None => backend.serve(parts, body, declared, watch).await,
            Some(mut verdict) => {
                let serve = backend.serve(parts, body, declared, watch);
                let raced = {
                    let answer = body_phase_answer(&mut verdict);
                    tokio::select! {
                        done = serve => Ok(done),
                        early = answer => Err(early),
                    }
                };
                let early = match raced {
                    Ok(done) => match verdict.try_recv() {
                        Ok(Ok(Flow::Respond { response, upto })) => {
                            Err(Early::Local(response, upto))
                        }
                        Ok(Err(e)) => Err(Early::Failed(e)),
                        _ => Ok(done),
                    },
                    Err(early) => Err(early),
                };
                match early {
                    Ok(done) => done,
                    Err(Early::Local(response, at)) => {
                        return local(&run, response, at, head_request, id).await.with(run);
                    }
                    Err(Early::Failed(e)) => {
                        return Outcome::failed(id, ProxyError::Filter(e), Some(run));
                    }
                }
            }
        };
        // The backend's response (or its error's) through the response phase.
        let (resp, error) = match result {
            Ok(resp) => (resp, None),
            Err(e) => (errors::respond(&e, id), Some(e)),
        };
        let upstream = B::answered_by(&note);
        let answer = response_phase(&run, resp, upstream, upto, head_request, id).await;
        Outcome {
            resp: answer.resp,
            chain: Some(run),
            served: true,
            note,
            error: answer.error.or(error),
            response_body: answer.body_verdict,
        }
    }
}

/// Puts back the `content-length` a message came with (or none), whatever a filter wrote: one lookup
/// when nothing changed.
fn keep_length(h: &mut http::HeaderMap, declared: Option<http::HeaderValue>) {
    if h.get(header::CONTENT_LENGTH) == declared.as_ref() {
        return;
    }
    match declared {
        Some(v) => h.insert(header::CONTENT_LENGTH, v),
        None => h.remove(header::CONTENT_LENGTH),
    };
}

/// The error for a request body that could not be read: over the limit, or broken.
pub fn body_error(watch: &BodyWatch, detail: String, limit: u64) -> ProxyError {
    if watch.too_large.load(Ordering::Acquire) {
        ProxyError::BodyTooLarge { limit }
    } else {
        ProxyError::BadRequestBody(detail)
    }
}

/// The backend's result as an outcome: its response, or the response for its error.
fn finish<N: Default>(
    result: Result<Response<Body>, ProxyError>,
    note: N,
    chain: Option<ChainRun>,
    id: &RequestId,
) -> Outcome<N> {
    let mut o = match result {
        Ok(resp) => Outcome::new(resp, chain),
        Err(e) => Outcome::failed(id, e, chain),
    };
    o.served = true;
    o.note = note;
    o
}

/// A filter's local answer, through the response phase of the filters before it.
async fn local<N: Default>(
    run: &ChainRun,
    response: crate::filter::LocalResponse,
    upto: usize,
    head_request: bool,
    id: &RequestId,
) -> Outcome<N> {
    // What a gRPC client is told instead of a local answer that is not a success (`errors::grpc_form`);
    // nothing to make for other clients.
    let made = (id.grpc().is_some() && !response.status.is_success()).then(|| errors::Made {
        status: response.status,
        grpc: crate::proxy::grpc::code_of_http(response.status),
        message: errors::local_message(response.status, &response.body),
    });
    let mut resp = local_to_response(response);
    if let Some(m) = made {
        resp.extensions_mut().insert(m);
    }
    let answer = response_phase(run, resp, None, upto, head_request, id).await;
    let mut o = Outcome::new(answer.resp, None);
    o.response_body = answer.body_verdict;
    o.error = answer.error;
    o
}

impl<N> Outcome<N> {
    fn with(mut self, run: ChainRun) -> Self {
        self.chain = Some(run);
        self
    }
}

/// The response phase of filters `0..upto`, in reverse order. `head_request`: the response to a HEAD
/// request, which (like a 1xx, 204 or 304) has no body to show filters, and keeps its Content-Length.
async fn response_phase(
    run: &ChainRun,
    resp: Response<Body>,
    upstream: Option<Arc<str>>,
    upto: usize,
    head_request: bool,
    id: &RequestId,
) -> Answer {
    let (mut parts, body) = resp.into_parts();
    // The length the backend declared, for a body the filters leave as it is.
    let declared = parts.headers.get(header::CONTENT_LENGTH).cloned();
    let bodiless = head_request
        || parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    let mut head = ResponseHead {
        status: parts.status,
        headers: std::mem::take(&mut parts.headers),
        upstream,
    };
    match run
        .response_headers(&mut head, body.is_end_stream(), upto)
        .await
    {
        Ok(Flow::Continue) => {}
        Ok(Flow::Respond { response, .. }) => return Answer::plain(local_to_response(response)),
        Err(e) => return Answer::failed(ProxyError::Filter(e), id),
    }
    // A filter asked for the whole body: the head waits for it, and may still change.
    let mut held = false;
    let mut mode = if bodiless || body.is_end_stream() {
        BodyMode::Skip
    } else {
        run.response_body_mode(upto).await
    };
    let body = if mode == BodyMode::Whole {
        match run.response_body_whole(&mut head, body, upto).await {
            Held::Body(b, _) => {
                held = true;
                b
            }
            Held::Overflow(b) => {
                // The whole-mode filters failed open: ask again who still wants the body.
                mode = run.response_body_mode(upto).await;
                b
            }
            Held::Respond { response, .. } => return Answer::plain(local_to_response(response)),
            Held::Failed(e) => return Answer::failed(ProxyError::Filter(e), id),
            Held::TooLarge(_) | Held::Unreadable(_) => {
                tracing::warn!("the response body held for a whole-body filter broke off");
                return Answer::plain(errors::error_response(
                    StatusCode::BAD_GATEWAY,
                    "upstream_protocol_error",
                    "the response body broke off before it was whole",
                    id,
                ));
            }
        }
    } else {
        body
    };
    parts.status = head.status;
    parts.headers = head.headers;
    // Framing headers a filter wrote do not reach the wire: hyper frames the body that is sent, and
    // a body the filters did not touch keeps the length its backend declared. (A 101's `Upgrade`
    // and `Connection` are the switch itself.)
    if parts.status != StatusCode::SWITCHING_PROTOCOLS {
        crate::framing::strip_connection_framing(&mut parts.headers);
        // A held body's length was written by `held`, from the body itself; a streamed one loses
        // its length below; a body no filter touched keeps the length its backend declared.
        if !held && (mode == BodyMode::Skip || body.is_end_stream()) {
            keep_length(&mut parts.headers, declared);
        }
    }
    if !held && mode != BodyMode::Skip && !body.is_end_stream() {
        parts.headers.remove(header::CONTENT_LENGTH);
        let (body, verdict) = run.response_body(body, upto);
        let mut answer = Answer::plain(Response::from_parts(parts, body));
        answer.body_verdict = Some(verdict);
        return answer;
    }
    Answer::plain(Response::from_parts(parts, body))
}

/// What the response phase made of a response.
struct Answer {
    resp: Response<Body>,
    /// Filters stream the body: their outcome, once it has ended.
    body_verdict: Option<oneshot::Receiver<Result<Flow, ChainError>>>,
    /// A filter failed (closed): `resp` is the response for this error.
    error: Option<ProxyError>,
}

impl Answer {
    fn plain(resp: Response<Body>) -> Answer {
        Answer {
            resp,
            body_verdict: None,
            error: None,
        }
    }

    fn failed(error: ProxyError, id: &RequestId) -> Answer {
        Answer {
            resp: errors::respond(&error, id),
            body_verdict: None,
            error: Some(error),
        }
    }
}
