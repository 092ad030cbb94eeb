//! The request and response a handler is given, the action it answers with, and the options it asks
//! for.

use crate::__bindings::gateway::filter::types as wit;

/// Why a host call did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The plugin's config does not grant this capability (the host logs the denial too).
    ///
    /// ```no_run
    /// # use gateway_plugin_sdk::{kv, Error};
    /// if let Err(Error::Denied(why)) = kv::get("k") {
    ///     gateway_plugin_sdk::log::warn(&why);
    /// }
    /// ```
    Denied(String),
    /// An argument was invalid (a bad header name, status, path, or value).
    ///
    /// ```no_run
    /// # use gateway_plugin_sdk::{Error, Request};
    /// # fn f(req: &Request) {
    /// assert!(matches!(req.set_header("bad name", "v"), Err(Error::Invalid(_))));
    /// # }
    /// ```
    Invalid(String),
    /// The call does not apply in this phase (changing request headers from a chunk-mode body
    /// handler, once the headers have gone on).
    ///
    /// ```no_run
    /// # use gateway_plugin_sdk::{Error, Request};
    /// # fn in_body_handler(req: &Request) {
    /// assert!(matches!(req.set_header("x", "y"), Err(Error::WrongPhase(_))));
    /// # }
    /// ```
    WrongPhase(String),
    /// The host does not implement this call.
    ///
    /// ```no_run
    /// # use gateway_plugin_sdk::Error;
    /// let e = Error::Unsupported("not yet".into());
    /// # let _ = e;
    /// ```
    Unsupported(String),
    /// Outbound HTTP: the request was malformed.
    ///
    /// ```no_run
    /// # use gateway_plugin_sdk::{http, Error};
    /// let r = http::get("auth", "no-slash");
    /// assert!(matches!(r, Err(Error::BadRequest(_))));
    /// ```
    BadRequest(String),
    /// Outbound HTTP: no response in time.
    ///
    /// ```no_run
    /// # use gateway_plugin_sdk::{http, Error};
    /// if let Err(Error::Timeout) = http::get("slow", "/") {}
    /// ```
    Timeout,
    /// Outbound HTTP: the upstream failed.
    ///
    /// ```no_run
    /// # use gateway_plugin_sdk::{http, Error};
    /// if let Err(Error::Failed(why)) = http::get("auth", "/") { let _ = why; }
    /// ```
    Failed(String),
    /// Key-value store: compare-and-swap with a version that is not current.
    ///
    /// ```no_run
    /// # use gateway_plugin_sdk::{kv, Error};
    /// assert_eq!(kv::compare_and_swap("k", 1, b"v", None), Err(Error::VersionMismatch));
    /// ```
    VersionMismatch,
    /// Key-value store: `increment` on a value that is not a decimal integer.
    ///
    /// ```no_run
    /// # use gateway_plugin_sdk::{kv, Error};
    /// kv::set("k", b"abc", None).unwrap();
    /// assert_eq!(kv::increment("k", 1), Err(Error::NotANumber));
    /// ```
    NotANumber,
    /// Key-value store: the namespace's backend (Redis) did not answer within its timeout or could
    /// not be reached; a write may or may not have happened. The filter decides (let the request
    /// through, or refuse it).
    ///
    /// ```no_run
    /// # use gateway_plugin_sdk::{kv, Error};
    /// if let Err(Error::Unavailable(why)) = kv::increment_with_ttl("hits", 1, 60_000) {
    ///     gateway_plugin_sdk::log::warn(&why);
    /// }
    /// ```
    Unavailable(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Denied(m) => write!(f, "denied: {m}"),
            Error::Invalid(m) => write!(f, "invalid: {m}"),
            Error::WrongPhase(m) => write!(f, "wrong phase: {m}"),
            Error::Unsupported(m) => write!(f, "unsupported: {m}"),
            Error::BadRequest(m) => write!(f, "bad request: {m}"),
            Error::Timeout => write!(f, "timeout"),
            Error::Failed(m) => write!(f, "failed: {m}"),
            Error::VersionMismatch => write!(f, "version mismatch"),
            Error::NotANumber => write!(f, "not a number"),
            Error::Unavailable(m) => write!(f, "unavailable: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<wit::HostError> for Error {
    fn from(e: wit::HostError) -> Error {
        match e {
            wit::HostError::Denied(m) => Error::Denied(m),
            wit::HostError::Invalid(m) => Error::Invalid(m),
            wit::HostError::WrongPhase(m) => Error::WrongPhase(m),
            wit::HostError::Unsupported(m) => Error::Unsupported(m),
        }
    }
}

/// How a filter wants to see a body.
///
/// ```no_run
/// use gateway_plugin_sdk::BodyMode;
/// let m = BodyMode::Chunks;
/// # let _ = m;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyMode {
    /// Not at all: the body streams past, nothing is buffered.
    #[default]
    Skip,
    /// Once, whole: the gateway buffers it (up to the route's body limit) and holds back the head of
    /// that direction until the body handler has run, so the handler may still change the headers
    /// (and the path, or the status), or answer with its own response instead. The head then goes on
    /// with a `Content-Length` for the body as the handler left it.
    Whole,
    /// Chunk by chunk, as it arrives.
    Chunks,
}

/// What a filter asks for, returned by [`crate::Filter::options`].
///
/// ```no_run
/// use gateway_plugin_sdk::{BodyMode, Options};
/// let o = Options { response_body: BodyMode::Whole, ..Options::default() };
/// # let _ = o;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// How the request body is shown to `on_request_body`. Default: skip.
    pub request_body: BodyMode,
    /// How the response body is shown to `on_response_body`. Default: skip.
    pub response_body: BodyMode,
}

fn wit_mode(m: BodyMode) -> wit::BodyMode {
    match m {
        BodyMode::Skip => wit::BodyMode::Skip,
        BodyMode::Whole => wit::BodyMode::Whole,
        BodyMode::Chunks => wit::BodyMode::Chunks,
    }
}

impl From<Options> for wit::Options {
    fn from(o: Options) -> wit::Options {
        wit::Options {
            request_body: wit_mode(o.request_body),
            response_body: wit_mode(o.response_body),
        }
    }
}

/// What a handler decided.
///
/// ```no_run
/// use gateway_plugin_sdk::Action;
/// let go_on = Action::Continue;
/// let answer = Action::respond(401, "who are you?\n").with_header("www-authenticate", "Bearer");
/// # let _ = (go_on, answer);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Go on with the next filter, the backend, or the client.
    Continue,
    /// Answer with this response instead.
    Respond {
        /// Status code.
        status: u16,
        /// Headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: Vec<u8>,
    },
}

impl Action {
    /// A local response with `status` and `body` and no headers.
    ///
    /// ```no_run
    /// let a = gateway_plugin_sdk::Action::respond(429, "slow down\n");
    /// # let _ = a;
    /// ```
    pub fn respond(status: u16, body: impl Into<Vec<u8>>) -> Action {
        Action::Respond {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header to a local response (a `Continue` stays as it is).
    ///
    /// ```no_run
    /// let a = gateway_plugin_sdk::Action::respond(200, "{}").with_header("content-type", "application/json");
    /// # let _ = a;
    /// ```
    pub fn with_header(mut self, name: &str, value: &str) -> Action {
        if let Action::Respond { headers, .. } = &mut self {
            headers.push((name.to_string(), value.to_string()));
        }
        self
    }
}

impl From<Action> for wit::Action {
    fn from(a: Action) -> wit::Action {
        match a {
            Action::Continue => wit::Action::Continue,
            Action::Respond {
                status,
                headers,
                body,
            } => wit::Action::Respond(wit::LocalResponse {
                status,
                headers,
                body,
            }),
        }
    }
}

/// The request being handled. Valid only during the handler call it is passed to.
///
/// ```no_run
/// # use gateway_plugin_sdk::Request;
/// # fn f(req: &Request) {
/// let who = req.header("x-user").unwrap_or_default();
/// let _ = req.set_header("x-seen-by", "my-filter");
/// # let _ = who;
/// # }
/// ```
pub struct Request<'a> {
    inner: &'a wit::Request,
}

impl<'a> Request<'a> {
    pub(crate) fn new(inner: &'a wit::Request) -> Request<'a> {
        Request { inner }
    }

    /// The method.
    ///
    /// ```no_run
    /// # fn f(req: &gateway_plugin_sdk::Request) {
    /// if req.method() == "POST" {}
    /// # }
    /// ```
    pub fn method(&self) -> String {
        self.inner.method()
    }

    /// The path, without the query.
    ///
    /// ```no_run
    /// # fn f(req: &gateway_plugin_sdk::Request) {
    /// let p = req.path();
    /// # let _ = p;
    /// # }
    /// ```
    pub fn path(&self) -> String {
        self.inner.path()
    }

    /// The query string without `?`, if any.
    ///
    /// ```no_run
    /// # fn f(req: &gateway_plugin_sdk::Request) {
    /// let q = req.query().unwrap_or_default();
    /// # let _ = q;
    /// # }
    /// ```
    pub fn query(&self) -> Option<String> {
        self.inner.query()
    }

    /// Replaces path and query (in `on_request`, or in `on_request_body` when the request body is
    /// asked for whole).
    ///
    /// ```no_run
    /// # fn f(req: &gateway_plugin_sdk::Request) {
    /// req.set_path_with_query("/v2/items?page=1").unwrap();
    /// # }
    /// ```
    pub fn set_path_with_query(&self, path_with_query: &str) -> Result<(), crate::Error> {
        Ok(self.inner.set_path_with_query(path_with_query)?)
    }

    /// The first value of a header.
    ///
    /// ```no_run
    /// # fn f(req: &gateway_plugin_sdk::Request) {
    /// let token = req.header("authorization");
    /// # let _ = token;
    /// # }
    /// ```
    pub fn header(&self, name: &str) -> Option<String> {
        self.inner.header(name).into_iter().next()
    }

    /// Every value of a header, in order.
    ///
    /// ```no_run
    /// # fn f(req: &gateway_plugin_sdk::Request) {
    /// let all = req.header_all("accept");
    /// # let _ = all;
    /// # }
    /// ```
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.inner.header(name)
    }

    /// Every header, in order.
    ///
    /// ```no_run
    /// # fn f(req: &gateway_plugin_sdk::Request) {
    /// for (name, value) in req.headers() { let _ = (name, value); }
    /// # }
    /// ```
    pub fn headers(&self) -> Vec<(String, String)> {
        self.inner.headers()
    }

    /// Sets a header, replacing its values (in `on_request`, or in `on_request_body` when the request
    /// body is asked for whole).
    ///
    /// ```no_run
    /// # fn f(req: &gateway_plugin_sdk::Request) {
    /// req.set_header("x-tenant", "blue").unwrap();
    /// # }
    /// ```
    pub fn set_header(&self, name: &str, value: &str) -> Result<(), crate::Error> {
        Ok(self.inner.set_header(name, value)?)
    }

    /// Adds a value to a header (in `on_request`, or in `on_request_body` when the request body is
    /// asked for whole).
    ///
    /// ```no_run
    /// # fn f(req: &gateway_plugin_sdk::Request) {
    /// req.append_header("via", "gateway").unwrap();
    /// # }
    /// ```
    pub fn append_header(&self, name: &str, value: &str) -> Result<(), crate::Error> {
        Ok(self.inner.append_header(name, value)?)
    }

    /// Removes a header (in `on_request`, or in `on_request_body` when the request body is asked for
    /// whole).
    ///
    /// ```no_run
    /// # fn f(req: &gateway_plugin_sdk::Request) {
    /// req.remove_header("cookie").unwrap();
    /// # }
    /// ```
    pub fn remove_header(&self, name: &str) -> Result<(), crate::Error> {
        Ok(self.inner.remove_header(name)?)
    }

    /// The body shown to this call (the chunk, or the whole body); `None` in `on_request`.
    ///
    /// ```no_run
    /// # fn f(req: &gateway_plugin_sdk::Request) {
    /// let len = req.body().map_or(0, |b| b.len());
    /// # let _ = len;
    /// # }
    /// ```
    pub fn body(&self) -> Option<Vec<u8>> {
        self.inner.body()
    }

    /// Replaces the body shown to this call (body handler only).
    ///
    /// ```no_run
    /// # fn f(req: &gateway_plugin_sdk::Request) {
    /// req.set_body(b"{}").unwrap();
    /// # }
    /// ```
    pub fn set_body(&self, body: &[u8]) -> Result<(), crate::Error> {
        Ok(self.inner.set_body(body)?)
    }

    /// Replaces the method (an HTTP token such as `POST`), in the same phases as
    /// [`Request::set_header`] (WIT 0.1.3).
    ///
    /// ```no_run
    /// # fn f(req: &gateway_plugin_sdk::Request) {
    /// req.set_method("POST").unwrap();
    /// # }
    /// ```
    pub fn set_method(&self, method: &str) -> Result<(), crate::Error> {
        Ok(self.inner.set_method(method)?)
    }

    /// The parameters the route's path template captured, in template order (`/users/{id}` matched
    /// by `/users/7` gives `[("id", "7")]`), with their percent-encoding kept; empty when the route
    /// has no template (WIT 0.1.3).
    ///
    /// ```no_run
    /// # fn f(req: &gateway_plugin_sdk::Request) {
    /// for (name, value) in req.path_params() { let _ = (name, value); }
    /// # }
    /// ```
    pub fn path_params(&self) -> Vec<(String, String)> {
        self.inner.path_params()
    }

    /// The value of one path template parameter, as [`Request::path_params`] gives it.
    ///
    /// ```no_run
    /// # fn f(req: &gateway_plugin_sdk::Request) {
    /// let id = req.path_param("id").unwrap_or_default();
    /// # let _ = id;
    /// # }
    /// ```
    pub fn path_param(&self, name: &str) -> Option<String> {
        self.path_params()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

/// The response being handled. Valid only during the handler call it is passed to.
///
/// ```no_run
/// # fn f(resp: &gateway_plugin_sdk::Response) {
/// if resp.status() >= 500 { let _ = resp.set_header("retry-after", "1"); }
/// # }
/// ```
pub struct Response<'a> {
    inner: &'a wit::Response,
}

impl<'a> Response<'a> {
    pub(crate) fn new(inner: &'a wit::Response) -> Response<'a> {
        Response { inner }
    }

    /// The status code.
    ///
    /// ```no_run
    /// # fn f(resp: &gateway_plugin_sdk::Response) {
    /// let ok = resp.status() < 400;
    /// # let _ = ok;
    /// # }
    /// ```
    pub fn status(&self) -> u16 {
        self.inner.status()
    }

    /// Changes the status code (in `on_response`, or in `on_response_body` when the response body is
    /// asked for whole).
    ///
    /// ```no_run
    /// # fn f(resp: &gateway_plugin_sdk::Response) {
    /// resp.set_status(404).unwrap();
    /// # }
    /// ```
    pub fn set_status(&self, status: u16) -> Result<(), crate::Error> {
        Ok(self.inner.set_status(status)?)
    }

    /// The first value of a header.
    ///
    /// ```no_run
    /// # fn f(resp: &gateway_plugin_sdk::Response) {
    /// let ct = resp.header("content-type");
    /// # let _ = ct;
    /// # }
    /// ```
    pub fn header(&self, name: &str) -> Option<String> {
        self.inner.header(name).into_iter().next()
    }

    /// Every value of a header, in order.
    ///
    /// ```no_run
    /// # fn f(resp: &gateway_plugin_sdk::Response) {
    /// let cookies = resp.header_all("set-cookie");
    /// # let _ = cookies;
    /// # }
    /// ```
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.inner.header(name)
    }

    /// Every header, in order.
    ///
    /// ```no_run
    /// # fn f(resp: &gateway_plugin_sdk::Response) {
    /// let n = resp.headers().len();
    /// # let _ = n;
    /// # }
    /// ```
    pub fn headers(&self) -> Vec<(String, String)> {
        self.inner.headers()
    }

    /// Sets a header (in `on_response`, or in `on_response_body` when the response body is asked for
    /// whole).
    ///
    /// ```no_run
    /// # fn f(resp: &gateway_plugin_sdk::Response) {
    /// resp.set_header("cache-control", "no-store").unwrap();
    /// # }
    /// ```
    pub fn set_header(&self, name: &str, value: &str) -> Result<(), crate::Error> {
        Ok(self.inner.set_header(name, value)?)
    }

    /// Adds a value to a header (in `on_response`, or in `on_response_body` when the response body is
    /// asked for whole).
    ///
    /// ```no_run
    /// # fn f(resp: &gateway_plugin_sdk::Response) {
    /// resp.append_header("vary", "origin").unwrap();
    /// # }
    /// ```
    pub fn append_header(&self, name: &str, value: &str) -> Result<(), crate::Error> {
        Ok(self.inner.append_header(name, value)?)
    }

    /// Removes a header (in `on_response`, or in `on_response_body` when the response body is asked
    /// for whole).
    ///
    /// ```no_run
    /// # fn f(resp: &gateway_plugin_sdk::Response) {
    /// resp.remove_header("server").unwrap();
    /// # }
    /// ```
    pub fn remove_header(&self, name: &str) -> Result<(), crate::Error> {
        Ok(self.inner.remove_header(name)?)
    }

    /// The body shown to this call; `None` in `on_response`.
    ///
    /// ```no_run
    /// # fn f(resp: &gateway_plugin_sdk::Response) {
    /// let body = resp.body().unwrap_or_default();
    /// # let _ = body;
    /// # }
    /// ```
    pub fn body(&self) -> Option<Vec<u8>> {
        self.inner.body()
    }

    /// Replaces the body shown to this call (body handler only).
    ///
    /// ```no_run
    /// # fn f(resp: &gateway_plugin_sdk::Response) {
    /// resp.set_body(b"").unwrap();
    /// # }
    /// ```
    pub fn set_body(&self, body: &[u8]) -> Result<(), crate::Error> {
        Ok(self.inner.set_body(body)?)
    }
}
