//! What the gateway offers a filter besides the request and response: one module per capability.

/// Outbound HTTP to the gateway's named upstreams (only those granted in the plugin's
/// `capabilities.upstreams`). The gateway waits for the response without blocking other requests;
/// to the filter the call is a plain function call.
///
/// ```no_run
/// use gateway_plugin_sdk::http;
/// let resp = http::send("auth", http::Request::new("POST", "/check").body(b"token"))?;
/// if resp.status == 200 { /* allowed */ }
/// # Ok::<(), gateway_plugin_sdk::Error>(())
/// ```
pub mod http {
    use crate::__bindings::gateway::filter::http_client as wit;
    use crate::Error;

    /// A request to an upstream.
    ///
    /// ```no_run
    /// let r = gateway_plugin_sdk::http::Request::new("GET", "/users/1").header("accept", "application/json");
    /// # let _ = r;
    /// ```
    #[derive(Debug, Clone, Default)]
    pub struct Request {
        /// Method.
        pub method: String,
        /// Path and query, starting with `/`.
        pub path_with_query: String,
        /// Headers.
        pub headers: Vec<(String, String)>,
        /// Body.
        pub body: Vec<u8>,
        /// Milliseconds to wait for the whole response; 0 means the gateway's maximum (60 s).
        pub timeout_ms: u32,
    }

    impl Request {
        /// A request with no headers, no body and the default timeout.
        ///
        /// ```no_run
        /// let r = gateway_plugin_sdk::http::Request::new("DELETE", "/sessions/7");
        /// # let _ = r;
        /// ```
        pub fn new(method: &str, path_with_query: &str) -> Request {
            Request {
                method: method.to_string(),
                path_with_query: path_with_query.to_string(),
                ..Request::default()
            }
        }

        /// Adds a header.
        ///
        /// ```no_run
        /// let r = gateway_plugin_sdk::http::Request::new("GET", "/").header("x-from", "filter");
        /// # let _ = r;
        /// ```
        pub fn header(mut self, name: &str, value: &str) -> Request {
            self.headers.push((name.to_string(), value.to_string()));
            self
        }

        /// Sets the body.
        ///
        /// ```no_run
        /// let r = gateway_plugin_sdk::http::Request::new("POST", "/").body(b"{}");
        /// # let _ = r;
        /// ```
        pub fn body(mut self, body: &[u8]) -> Request {
            self.body = body.to_vec();
            self
        }

        /// Sets the timeout in milliseconds.
        ///
        /// ```no_run
        /// let r = gateway_plugin_sdk::http::Request::new("GET", "/").timeout_ms(250);
        /// # let _ = r;
        /// ```
        pub fn timeout_ms(mut self, ms: u32) -> Request {
            self.timeout_ms = ms;
            self
        }
    }

    /// An upstream's response.
    ///
    /// ```no_run
    /// # let resp: gateway_plugin_sdk::http::Response = todo!();
    /// let text = String::from_utf8_lossy(&resp.body);
    /// # let _ = text;
    /// ```
    #[derive(Debug, Clone)]
    pub struct Response {
        /// Status code.
        pub status: u16,
        /// Headers.
        pub headers: Vec<(String, String)>,
        /// Body.
        pub body: Vec<u8>,
    }

    impl Response {
        /// The first value of a header.
        ///
        /// ```no_run
        /// # let resp: gateway_plugin_sdk::http::Response = todo!();
        /// let ct = resp.header("content-type");
        /// # let _ = ct;
        /// ```
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// Sends `request` to `upstream`. Errors: [`Error::Denied`] (not granted, or no such
    /// upstream), [`Error::BadRequest`], [`Error::Timeout`], [`Error::Failed`].
    ///
    /// ```no_run
    /// use gateway_plugin_sdk::http;
    /// match http::send("auth", http::Request::new("GET", "/check")) {
    ///     Ok(resp) => { let _ = resp.status; }
    ///     Err(e) => gateway_plugin_sdk::log::warn(&format!("auth call: {e}")),
    /// }
    /// ```
    pub fn send(upstream: &str, request: Request) -> Result<Response, Error> {
        from_wit(wit::send(upstream, &to_wit(request)))
    }

    /// The most requests [`send_all`] takes in one call.
    pub const MAX_SEND_ALL: usize = 32;

    /// Sends every request at once, each to its upstream with its own timeout, and waits for all of
    /// them: the call takes as long as the slowest, not the sum. The results are in the order of
    /// `requests`, each what [`send`] would have given for it alone. More than [`MAX_SEND_ALL`]
    /// requests get [`Error::BadRequest`] each, and none is sent (WIT 0.1.3).
    ///
    /// ```no_run
    /// use gateway_plugin_sdk::http;
    /// let answers = http::send_all(vec![
    ///     ("users", http::Request::new("GET", "/users/7")),
    ///     ("orders", http::Request::new("GET", "/orders?user=7").timeout_ms(500)),
    /// ]);
    /// for answer in answers { let _ = answer.map(|r| r.status); }
    /// ```
    pub fn send_all<U: AsRef<str>>(requests: Vec<(U, Request)>) -> Vec<Result<Response, Error>> {
        let requests: Vec<(String, wit::OutgoingRequest)> = requests
            .into_iter()
            .map(|(u, r)| (u.as_ref().to_string(), to_wit(r)))
            .collect();
        wit::send_all(&requests).into_iter().map(from_wit).collect()
    }

    fn to_wit(request: Request) -> wit::OutgoingRequest {
        wit::OutgoingRequest {
            method: request.method,
            path_with_query: request.path_with_query,
            headers: request.headers,
            body: request.body,
            timeout_ms: request.timeout_ms,
        }
    }

    fn from_wit(r: Result<wit::IncomingResponse, wit::HttpError>) -> Result<Response, Error> {
        match r {
            Ok(resp) => Ok(Response {
                status: resp.status,
                headers: resp.headers,
                body: resp.body,
            }),
            Err(wit::HttpError::Denied(m)) => Err(Error::Denied(m)),
            Err(wit::HttpError::BadRequest(m)) => Err(Error::BadRequest(m)),
            Err(wit::HttpError::Timeout) => Err(Error::Timeout),
            Err(wit::HttpError::Failed(m)) => Err(Error::Failed(m)),
        }
    }

    /// A `GET` of `path_with_query` on `upstream`.
    ///
    /// ```no_run
    /// let resp = gateway_plugin_sdk::http::get("users", "/users/1")?;
    /// # let _ = resp;
    /// # Ok::<(), gateway_plugin_sdk::Error>(())
    /// ```
    pub fn get(upstream: &str, path_with_query: &str) -> Result<Response, Error> {
        send(upstream, Request::new("GET", path_with_query))
    }
}

/// The shared key-value store, in the namespace granted by the plugin's `capabilities.kv_namespace`
/// (without one, every call is [`crate::Error::Denied`]). Every write gets a new version, used by
/// [`kv::compare_and_swap`]. The namespace lives in this gateway process or, by gateway config, in
/// Redis shared by every gateway process ([`kv::backend`]); then a call that cannot complete in time is
/// [`crate::Error::Unavailable`] (WIT `store`, since 0.1.2).
///
/// ```no_run
/// use gateway_plugin_sdk::kv;
/// let hits = kv::increment("hits", 1)?;
/// # let _ = hits;
/// # Ok::<(), gateway_plugin_sdk::Error>(())
/// ```
pub mod kv {
    use crate::__bindings::gateway::filter::store as wit;
    use crate::Error;

    /// A value and its version.
    ///
    /// ```no_run
    /// if let Some(e) = gateway_plugin_sdk::kv::get("k")? { let _ = (e.value, e.version); }
    /// # Ok::<(), gateway_plugin_sdk::Error>(())
    /// ```
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Entry {
        /// The value.
        pub value: Vec<u8>,
        /// The version of the write that made it (never 0).
        pub version: u32,
    }

    fn err(e: wit::StoreError) -> Error {
        match e {
            wit::StoreError::Denied(m) => Error::Denied(m),
            wit::StoreError::VersionMismatch => Error::VersionMismatch,
            wit::StoreError::NotANumber => Error::NotANumber,
            wit::StoreError::Invalid(m) => Error::Invalid(m),
            wit::StoreError::Unavailable(m) => Error::Unavailable(m),
        }
    }

    /// Where the plugin's namespace lives (gateway config: `kv_namespaces:`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Backend {
        /// In this gateway process.
        Local,
        /// In Redis, shared by every gateway process configured with the same server.
        Redis,
    }

    /// Where the plugin's namespace lives; `Error::Denied` when none is granted.
    ///
    /// ```no_run
    /// use gateway_plugin_sdk::kv;
    /// let shared = kv::backend()? == kv::Backend::Redis;
    /// # let _ = shared;
    /// # Ok::<(), gateway_plugin_sdk::Error>(())
    /// ```
    pub fn backend() -> Result<Backend, Error> {
        match wit::backend().map_err(err)? {
            wit::BackendKind::Local => Ok(Backend::Local),
            wit::BackendKind::Redis => Ok(Backend::Redis),
        }
    }

    /// The value of `key`, if set and not expired.
    ///
    /// ```no_run
    /// let v = gateway_plugin_sdk::kv::get("config:limit")?;
    /// # let _ = v;
    /// # Ok::<(), gateway_plugin_sdk::Error>(())
    /// ```
    pub fn get(key: &str) -> Result<Option<Entry>, Error> {
        wit::get(key)
            .map(|o| {
                o.map(|e| Entry {
                    value: e.value,
                    version: e.version,
                })
            })
            .map_err(err)
    }

    /// Sets `key`, expiring after `ttl_ms` milliseconds if given; returns the new version.
    ///
    /// ```no_run
    /// gateway_plugin_sdk::kv::set("session:1", b"alice", Some(60_000))?;
    /// # Ok::<(), gateway_plugin_sdk::Error>(())
    /// ```
    pub fn set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<u32, Error> {
        wit::set(key, value, ttl_ms).map_err(err)
    }

    /// Removes `key`.
    ///
    /// ```no_run
    /// gateway_plugin_sdk::kv::delete("session:1")?;
    /// # Ok::<(), gateway_plugin_sdk::Error>(())
    /// ```
    pub fn delete(key: &str) -> Result<(), Error> {
        wit::delete(key).map_err(err)
    }

    /// Adds `delta` to the decimal integer at `key` (absent is 0), atomically; returns the result.
    ///
    /// ```no_run
    /// let n = gateway_plugin_sdk::kv::increment("requests", 1)?;
    /// # let _ = n;
    /// # Ok::<(), gateway_plugin_sdk::Error>(())
    /// ```
    pub fn increment(key: &str, delta: i64) -> Result<i64, Error> {
        wit::increment(key, delta, None).map_err(err)
    }

    /// As [`increment`], and when this call creates the key (absent or expired) it expires
    /// `ttl_ms` milliseconds from now (at least 1: a `ttl_ms` of 0 expires at once; for a counter
    /// that never expires use [`increment`]); an existing expiry is kept. A window counter in one call,
    /// atomic across every gateway process sharing the namespace.
    ///
    /// ```no_run
    /// let in_this_minute = gateway_plugin_sdk::kv::increment_with_ttl("hits:29480211", 1, 60_000)?;
    /// # let _ = in_this_minute;
    /// # Ok::<(), gateway_plugin_sdk::Error>(())
    /// ```
    pub fn increment_with_ttl(key: &str, delta: i64, ttl_ms: u64) -> Result<i64, Error> {
        wit::increment(key, delta, Some(ttl_ms)).map_err(err)
    }

    /// Writes `value` only if `version` is still the key's version; returns the new version.
    ///
    /// ```no_run
    /// use gateway_plugin_sdk::kv;
    /// if let Some(e) = kv::get("k")? {
    ///     let _ = kv::compare_and_swap("k", e.version, b"next", None);
    /// }
    /// # Ok::<(), gateway_plugin_sdk::Error>(())
    /// ```
    pub fn compare_and_swap(
        key: &str,
        version: u32,
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<u32, Error> {
        wit::compare_and_swap(key, version, value, ttl_ms).map_err(err)
    }
}

/// Logging through the gateway's logger (target `plugin`, with the plugin's name).
///
/// ```no_run
/// gateway_plugin_sdk::log::info("configured");
/// ```
pub mod log {
    use crate::__bindings::gateway::filter::log as wit;

    /// Logs at trace level.
    ///
    /// ```no_run
    /// gateway_plugin_sdk::log::trace("entering on_request");
    /// ```
    pub fn trace(message: &str) {
        wit::log(wit::Level::Trace, message)
    }

    /// Logs at debug level.
    ///
    /// ```no_run
    /// gateway_plugin_sdk::log::debug("cache miss");
    /// ```
    pub fn debug(message: &str) {
        wit::log(wit::Level::Debug, message)
    }

    /// Logs at info level.
    ///
    /// ```no_run
    /// gateway_plugin_sdk::log::info("configured");
    /// ```
    pub fn info(message: &str) {
        wit::log(wit::Level::Info, message)
    }

    /// Logs at warn level.
    ///
    /// ```no_run
    /// gateway_plugin_sdk::log::warn("upstream slow");
    /// ```
    pub fn warn(message: &str) {
        wit::log(wit::Level::Warn, message)
    }

    /// Logs at error level.
    ///
    /// ```no_run
    /// gateway_plugin_sdk::log::error("cannot parse token");
    /// ```
    pub fn error(message: &str) {
        wit::log(wit::Level::Error, message)
    }

    /// Whether debug messages are recorded (to skip building expensive ones).
    ///
    /// ```no_run
    /// if gateway_plugin_sdk::log::debug_enabled() { gateway_plugin_sdk::log::debug("details"); }
    /// ```
    pub fn debug_enabled() -> bool {
        wit::enabled(wit::Level::Debug)
    }

    /// Log levels, for [`log`] and [`enabled`].
    ///
    /// ```no_run
    /// use gateway_plugin_sdk::log::{self, Level};
    /// log::log(Level::Info, "configured");
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum Level {
        /// Trace.
        Trace,
        /// Debug.
        Debug,
        /// Info.
        Info,
        /// Warn.
        Warn,
        /// Error.
        Error,
    }

    fn wit_level(level: Level) -> wit::Level {
        match level {
            Level::Trace => wit::Level::Trace,
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        }
    }

    /// Logs `message` at `level`.
    ///
    /// ```no_run
    /// use gateway_plugin_sdk::log::{self, Level};
    /// log::log(Level::Warn, "retrying");
    /// ```
    pub fn log(level: Level, message: &str) {
        wit::log(wit_level(level), message)
    }

    /// Whether messages at `level` are recorded (to skip building expensive ones).
    ///
    /// ```no_run
    /// use gateway_plugin_sdk::log::{self, Level};
    /// if log::enabled(Level::Trace) { log::trace("every detail"); }
    /// ```
    pub fn enabled(level: Level) -> bool {
        wit::enabled(wit_level(level))
    }
}

/// Metrics defined by name on first use, exported on the gateway's `/metrics` as
/// `plugin_<name>{plugin="..."}`.
///
/// ```no_run
/// gateway_plugin_sdk::metrics::counter_add("denied_total", 1);
/// ```
pub mod metrics {
    use crate::__bindings::gateway::filter::metrics as wit;
    use crate::Error;

    /// Adds to a counter.
    ///
    /// ```no_run
    /// gateway_plugin_sdk::metrics::counter_add("requests_total", 1).unwrap();
    /// ```
    pub fn counter_add(name: &str, delta: u64) -> Result<(), Error> {
        Ok(wit::counter_add(name, delta)?)
    }

    /// Sets a gauge.
    ///
    /// ```no_run
    /// gateway_plugin_sdk::metrics::gauge_set("queue_depth", 3).unwrap();
    /// ```
    pub fn gauge_set(name: &str, value: u64) -> Result<(), Error> {
        Ok(wit::gauge_set(name, value)?)
    }

    /// Adds to a gauge (may be negative).
    ///
    /// ```no_run
    /// gateway_plugin_sdk::metrics::gauge_add("in_flight", -1).unwrap();
    /// ```
    pub fn gauge_add(name: &str, delta: i64) -> Result<(), Error> {
        Ok(wit::gauge_add(name, delta)?)
    }

    /// Records a value into a histogram.
    ///
    /// ```no_run
    /// gateway_plugin_sdk::metrics::histogram_record("body_bytes", 512).unwrap();
    /// ```
    pub fn histogram_record(name: &str, value: u64) -> Result<(), Error> {
        Ok(wit::histogram_record(name, value)?)
    }
}

/// Time.
///
/// ```no_run
/// let now = gateway_plugin_sdk::clock::now_ms();
/// # let _ = now;
/// ```
pub mod clock {
    use crate::__bindings::gateway::filter::clock as wit;

    /// Milliseconds since the Unix epoch.
    ///
    /// ```no_run
    /// let now = gateway_plugin_sdk::clock::now_ms();
    /// # let _ = now;
    /// ```
    pub fn now_ms() -> u64 {
        wit::now_ms()
    }

    /// A monotonic clock in nanoseconds (only differences mean something).
    ///
    /// ```no_run
    /// use gateway_plugin_sdk::clock::monotonic_ns;
    /// let start = monotonic_ns();
    /// let took = monotonic_ns() - start;
    /// # let _ = took;
    /// ```
    pub fn monotonic_ns() -> u64 {
        wit::monotonic_ns()
    }
}

/// Randomness from the gateway's cryptographically secure generator.
///
/// ```no_run
/// let id = gateway_plugin_sdk::random::u64();
/// # let _ = id;
/// ```
pub mod random {
    use crate::__bindings::gateway::filter::random as wit;

    /// `len` random bytes (at most 65 536).
    ///
    /// ```no_run
    /// let nonce = gateway_plugin_sdk::random::bytes(16);
    /// # let _ = nonce;
    /// ```
    pub fn bytes(len: u32) -> Vec<u8> {
        wit::bytes(len)
    }

    /// A random 64-bit number.
    ///
    /// ```no_run
    /// let n = gateway_plugin_sdk::random::u64();
    /// # let _ = n;
    /// ```
    pub fn u64() -> u64 {
        wit::next_u64()
    }
}

/// Facts about the current request that are not headers.
///
/// ```no_run
/// let f = gateway_plugin_sdk::facts::get();
/// gateway_plugin_sdk::log::info(&format!("route {} from {}", f.route, f.client_address));
/// ```
pub mod facts {
    use crate::__bindings::gateway::filter::facts as wit;

    /// TLS facts of the client connection.
    ///
    /// ```no_run
    /// if let Some(tls) = gateway_plugin_sdk::facts::get().tls { let _ = tls.server_name; }
    /// ```
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Tls {
        /// The SNI server name the client sent, if any.
        pub server_name: Option<String>,
        /// The negotiated ALPN protocol (`h2`, `http/1.1`), if any.
        pub alpn: Option<String>,
        /// The protocol version (`TLSv1.2`, `TLSv1.3`).
        pub version: String,
        /// The verified client certificate, when the client presented one (mutual TLS).
        pub client_certificate: Option<ClientCertificate>,
    }

    /// A client certificate the listener verified.
    ///
    /// ```no_run
    /// let subject = gateway_plugin_sdk::facts::get()
    ///     .tls
    ///     .and_then(|t| t.client_certificate)
    ///     .map(|c| c.subject);
    /// # let _ = subject;
    /// ```
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ClientCertificate {
        /// The subject distinguished name, RFC 4514 style (`CN=alice, O=Example`).
        pub subject: String,
        /// The subject alternative names (`DNS:...`, `IP:...`, `URI:...`, `EMAIL:...`).
        pub sans: Vec<String>,
    }

    /// The request's facts.
    ///
    /// ```no_run
    /// let route = gateway_plugin_sdk::facts::get().route;
    /// # let _ = route;
    /// ```
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Facts {
        /// The route's name.
        pub route: String,
        /// The upstream the route forwards to, if any.
        pub upstream: Option<String>,
        /// The client's address (`ip:port`).
        pub client_address: String,
        /// The local address the request came in on.
        pub local_address: String,
        /// `http` or `https`.
        pub scheme: String,
        /// `1.0`, `1.1` or `2`.
        pub protocol: String,
        /// A process-unique request id.
        pub request_id: u64,
        /// Present when the client connected over TLS.
        pub tls: Option<Tls>,
    }

    /// The facts of the request being handled (empty strings during `init`).
    ///
    /// ```no_run
    /// let id = gateway_plugin_sdk::facts::get().request_id;
    /// # let _ = id;
    /// ```
    pub fn get() -> Facts {
        let f = wit::get();
        Facts {
            route: f.route,
            upstream: f.upstream,
            client_address: f.client_address,
            local_address: f.local_address,
            scheme: f.scheme,
            protocol: f.protocol,
            request_id: f.request_id,
            tls: f.tls.map(|t| Tls {
                server_name: t.server_name,
                alpn: t.alpn,
                version: t.version,
                client_certificate: t.client_certificate.map(|c| ClientCertificate {
                    subject: c.subject,
                    sans: c.sans,
                }),
            }),
        }
    }
}

/// The consumers the gateway's config names, and which of them the request is authenticated as
/// (WIT `consumers`, since 0.1.1). Secrets stay in the gateway: a plugin asks whether a key, a
/// password or a MAC belongs to a consumer. All but [`current`] and [`get`] need the plugin's
/// `capabilities.consumers` grant (built-in plugins have it).
///
/// ```no_run
/// use gateway_plugin_sdk::consumers;
/// if let Some(c) = consumers::find_by_key("key-auth", "the key the client sent") {
///     let _ = consumers::authenticate(&c.name);
/// }
/// ```
pub mod consumers {
    use crate::__bindings::gateway::filter::consumers as wit;
    use crate::Error;

    /// A consumer: its name and groups.
    ///
    /// ```no_run
    /// let admin = gateway_plugin_sdk::consumers::current()
    ///     .is_some_and(|c| c.groups.iter().any(|g| g == "admin"));
    /// # let _ = admin;
    /// ```
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Consumer {
        /// Its name, unique in the config.
        pub name: String,
        /// The groups it belongs to, in config order.
        pub groups: Vec<String>,
    }

    /// A consumer's credential of one kind, without its secret.
    ///
    /// ```no_run
    /// let cred = gateway_plugin_sdk::consumers::credential("jwt-auth", "issuer-1");
    /// let alg = cred.as_ref().and_then(|c| c.attribute("algorithm"));
    /// # let _ = alg;
    /// ```
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Credential {
        /// Whose credential it is.
        pub consumer: Consumer,
        /// Its identifier (`basic-auth`: the username; `jwt-auth`: the key).
        pub id: String,
        /// The kind's fields that are not secret (`jwt-auth`: `algorithm`, `public-key`).
        pub attributes: Vec<(String, String)>,
    }

    impl Credential {
        /// The attribute `name`, if the credential has it.
        ///
        /// ```no_run
        /// # let c: gateway_plugin_sdk::consumers::Credential = todo!();
        /// let pem = c.attribute("public-key");
        /// # let _ = pem;
        /// ```
        pub fn attribute(&self, name: &str) -> Option<&str> {
            self.attributes
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// The hash functions [`verify_hmac`] can use.
    ///
    /// ```no_run
    /// let a = gateway_plugin_sdk::consumers::HmacAlgorithm::Sha256;
    /// # let _ = a;
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum HmacAlgorithm {
        /// HMAC-SHA-256.
        Sha256,
        /// HMAC-SHA-384.
        Sha384,
        /// HMAC-SHA-512.
        Sha512,
    }

    fn consumer(c: wit::Consumer) -> Consumer {
        Consumer {
            name: c.name,
            groups: c.groups,
        }
    }

    /// The consumer the request is authenticated as (by an earlier filter, or this one), if any.
    ///
    /// ```no_run
    /// let who = gateway_plugin_sdk::consumers::current().map(|c| c.name);
    /// # let _ = who;
    /// ```
    pub fn current() -> Option<Consumer> {
        wit::current().map(consumer)
    }

    /// Authenticates the request as the consumer `name`, for every later filter, the access log and
    /// metrics. Request phases only ([`Error::WrongPhase`] after); [`Error::Invalid`] when no consumer
    /// has that name.
    ///
    /// ```no_run
    /// gateway_plugin_sdk::consumers::authenticate("alice").unwrap();
    /// ```
    pub fn authenticate(name: &str) -> Result<(), Error> {
        wit::authenticate(name).map_err(Error::from)
    }

    /// The consumer called `name`, if the config has one.
    ///
    /// ```no_run
    /// let anonymous = gateway_plugin_sdk::consumers::get("anonymous");
    /// # let _ = anonymous;
    /// ```
    pub fn get(name: &str) -> Option<Consumer> {
        wit::get(name).map(consumer)
    }

    /// The consumer holding a credential of `kind` whose secret is `key` (`key-auth`).
    ///
    /// ```no_run
    /// let c = gateway_plugin_sdk::consumers::find_by_key("key-auth", "k-123");
    /// # let _ = c;
    /// ```
    pub fn find_by_key(kind: &str, key: &str) -> Option<Consumer> {
        wit::find_by_key(kind, key).map(consumer)
    }

    /// The consumer holding a credential of `kind` with identifier `id` and secret `secret`
    /// (`basic-auth`: username and password), compared in constant time.
    ///
    /// ```no_run
    /// let c = gateway_plugin_sdk::consumers::check_secret("basic-auth", "alice", "s3cret");
    /// # let _ = c;
    /// ```
    pub fn check_secret(kind: &str, id: &str, secret: &str) -> Option<Consumer> {
        wit::check_secret(kind, id, secret).map(consumer)
    }

    /// The credential of `kind` with identifier `id`, without its secret.
    ///
    /// ```no_run
    /// let c = gateway_plugin_sdk::consumers::credential("jwt-auth", "issuer-1");
    /// # let _ = c;
    /// ```
    pub fn credential(kind: &str, id: &str) -> Option<Credential> {
        wit::find_credential(kind, id).map(|c| Credential {
            consumer: consumer(c.consumer),
            id: c.id,
            attributes: c.attributes,
        })
    }

    /// The consumer holding the credential of `kind` with identifier `id`, when `mac` is the HMAC of
    /// `message` keyed with that credential's secret (`jwt-auth`'s HS256/384/512), compared by the
    /// gateway in constant time. The secret never leaves the gateway, nor does anything made with it.
    ///
    /// ```no_run
    /// use gateway_plugin_sdk::consumers::{verify_hmac, HmacAlgorithm};
    /// # let signature: Vec<u8> = vec![];
    /// let who = verify_hmac("jwt-auth", "issuer-1", HmacAlgorithm::Sha256, b"header.payload", &signature);
    /// # let _ = who;
    /// ```
    pub fn verify_hmac(
        kind: &str,
        id: &str,
        algorithm: HmacAlgorithm,
        message: &[u8],
        mac: &[u8],
    ) -> Option<Consumer> {
        let algorithm = match algorithm {
            HmacAlgorithm::Sha256 => wit::HmacAlgorithm::Sha256,
            HmacAlgorithm::Sha384 => wit::HmacAlgorithm::Sha384,
            HmacAlgorithm::Sha512 => wit::HmacAlgorithm::Sha512,
        };
        wit::verify_hmac(kind, id, algorithm, message, mac).map(consumer)
    }
}

/// The gateway's response cache (since 0.1.2): responses kept in the gateway's memory, bounded in bytes
/// by its config (`cache: {max_size, max_entry_size}`) for every plugin together, least recently used
/// first out; each plugin sees only its own entries. Concurrent misses of a key are coalesced: the
/// first request to miss fills it ([`cache::put`] or [`cache::release`]) while the others wait in
/// [`cache::lookup`]. A fill ends when the request ends, however it ends, so a failing request never
/// keeps the others waiting longer than itself.
///
/// ```no_run
/// use gateway_plugin_sdk::cache::{self, Key, Lookup};
/// let key = Key { host: "example.com".into(), path: "/items".into(), extra: "GET".into() };
/// match cache::lookup(&key, 5_000)? {
///     Lookup::Hit(entry) => { let _ = entry.response.body; /* answer with it */ }
///     Lookup::Miss | Lookup::Expired | Lookup::Stale(_) => { /* go upstream, then put or release */ }
///     Lookup::Pass(_) => { /* go upstream, do not put */ }
/// }
/// # Ok::<(), gateway_plugin_sdk::Error>(())
/// ```
pub mod cache {
    use crate::__bindings::gateway::filter::cache as wit;
    use crate::Error;

    /// What a response is cached under. `host` and `path` are what the admin API's purge names
    /// (`DELETE /cache?plugin=...&host=...&path=...`); `extra` is the rest (method, query, headers
    /// the plugin keys on), opaque to the gateway.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct Key {
        /// The request's host.
        pub host: String,
        /// The request's path, without the query.
        pub path: String,
        /// Everything else the response depends on.
        pub extra: String,
    }

    /// A stored response.
    ///
    /// ```no_run
    /// let r = gateway_plugin_sdk::cache::CachedResponse { status: 200, headers: vec![], body: b"ok".to_vec() };
    /// # let _ = r;
    /// ```
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct CachedResponse {
        /// Status code.
        pub status: u16,
        /// Headers.
        pub headers: Vec<(String, String)>,
        /// Body.
        pub body: Vec<u8>,
    }

    /// An entry found by [`lookup`].
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Entry {
        /// The response.
        pub response: CachedResponse,
        /// Milliseconds since it was stored.
        pub age_ms: u64,
        /// Milliseconds of freshness it had when stored.
        pub ttl_ms: u64,
    }

    /// What [`lookup`] found.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Lookup {
        /// A fresh entry.
        Hit(Entry),
        /// An expired entry within its stale window (to answer with if the upstream fails); this
        /// request fills the key.
        Stale(Entry),
        /// An expired entry past its stale window; this request fills the key.
        Expired,
        /// Nothing; this request fills the key.
        Miss,
        /// Another request was filling the key and stored nothing (or the wait ran out): go upstream
        /// without filling; with the expired entry if one is within its stale window.
        Pass(Option<Entry>),
    }

    impl Lookup {
        /// Whether this request now fills the key (and must [`put`] or [`release`] it).
        ///
        /// ```no_run
        /// assert!(gateway_plugin_sdk::cache::Lookup::Miss.fills());
        /// ```
        pub fn fills(&self) -> bool {
            matches!(self, Lookup::Stale(_) | Lookup::Expired | Lookup::Miss)
        }
    }

    fn key(k: &Key) -> wit::Key {
        wit::Key {
            host: k.host.clone(),
            path: k.path.clone(),
            extra: k.extra.clone(),
        }
    }

    fn entry(e: wit::Entry) -> Entry {
        Entry {
            response: CachedResponse {
                status: e.response.status,
                headers: e.response.headers,
                body: e.response.body,
            },
            age_ms: e.age_ms,
            ttl_ms: e.ttl_ms,
        }
    }

    /// The entry of `k` for this request (by the stored response's `Vary` and this request's
    /// headers: call it from `on_request`). When another request fills the key, waits for it up to
    /// `wait_ms` (at most 60000); the wait is not the plugin's CPU time.
    ///
    /// ```no_run
    /// # let k = gateway_plugin_sdk::cache::Key::default();
    /// let found = gateway_plugin_sdk::cache::lookup(&k, 5_000)?;
    /// # let _ = found;
    /// # Ok::<(), gateway_plugin_sdk::Error>(())
    /// ```
    pub fn lookup(k: &Key, wait_ms: u32) -> Result<Lookup, Error> {
        Ok(match wit::lookup(&key(k), wait_ms)? {
            wit::LookupResult::Hit(e) => Lookup::Hit(entry(e)),
            wit::LookupResult::Stale(e) => Lookup::Stale(entry(e)),
            wit::LookupResult::Expired => Lookup::Expired,
            wit::LookupResult::Miss => Lookup::Miss,
            wit::LookupResult::Pass(e) => Lookup::Pass(e.map(entry)),
        })
    }

    /// Stores `response` for `k`, which this request fills, fresh for `ttl_ms` and then stale for
    /// `stale_ms` more; [`Error::Invalid`] when the request does not fill `k`, or the response is
    /// `Vary: *` or over the gateway's `max_entry_size` (not stored). Ends the fill either way.
    ///
    /// ```no_run
    /// use gateway_plugin_sdk::cache::{put, CachedResponse, Key};
    /// # let k = Key::default();
    /// put(&k, &CachedResponse { status: 200, headers: vec![], body: b"ok".to_vec() }, 60_000, 0)?;
    /// # Ok::<(), gateway_plugin_sdk::Error>(())
    /// ```
    pub fn put(
        k: &Key,
        response: &CachedResponse,
        ttl_ms: u64,
        stale_ms: u64,
    ) -> Result<(), Error> {
        let r = wit::CachedResponse {
            status: response.status,
            headers: response.headers.clone(),
            body: response.body.clone(),
        };
        Ok(wit::put(&key(k), &r, ttl_ms, stale_ms)?)
    }

    /// Ends this request's fill of `k` without storing anything (the response is not cacheable); the
    /// requests waiting for it go upstream themselves.
    ///
    /// ```no_run
    /// # let k = gateway_plugin_sdk::cache::Key::default();
    /// gateway_plugin_sdk::cache::release(&k);
    /// ```
    pub fn release(k: &Key) {
        wit::release(&key(k))
    }

    /// The largest entry [`put`] stores, in bytes (the gateway's `cache.max_entry_size`; an entry is
    /// its body, headers and key, and 256 bytes more), to stop collecting a body that will not fit.
    ///
    /// ```no_run
    /// let max = gateway_plugin_sdk::cache::max_entry_size();
    /// # let _ = max;
    /// ```
    pub fn max_entry_size() -> u64 {
        wit::max_entry_size()
    }
}

/// Attributes and events on the span of the current filter call, when the gateway traces the
/// request (`server.tracing`; WIT 0.1.4). Each call does nothing when the request is not traced or
/// not sampled, or outside a filter call; it never fails. Keys over 256 bytes are ignored, values
/// and names cut at 4096 bytes.
///
/// ```no_run
/// use gateway_plugin_sdk::trace;
/// trace::set_attribute("auth.scheme", "key");
/// trace::add_event("cache.miss", &[("key", "/users/1")]);
/// ```
pub mod trace {
    use crate::__bindings::gateway::filter::trace as wit;

    /// Sets the attribute `key` to `value` on the span of this call (a later call with the same
    /// key replaces it).
    pub fn set_attribute(key: &str, value: &str) {
        wit::set_attribute(key, value)
    }

    /// Adds the event `name`, timestamped now, with `attributes`, to the span of this call.
    pub fn add_event(name: &str, attributes: &[(&str, &str)]) {
        let attrs: Vec<(String, String)> = attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        wit::add_event(name, &attrs)
    }
}
