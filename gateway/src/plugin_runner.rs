//! `gateway plugin test`: runs a built filter against requests described in a fixture file and checks
//! the outcome, in-process, without a server: the real plugin host loads the plugin and the proxy's
//! own exchange ([`Exchange`]) drives its phases; the backend and the upstreams the plugin calls are
//! answered from the fixture.
//!
//! A fixture is YAML, so that plugins in any language can use it:
//!
//! ```yaml
//! plugin:
//!   path: target/wasm32-wasip2/release/my_filter.wasm   # relative to this file
//!   config: {header: x-api-key}                         # the route's `config:` for the filter
//!   capabilities: {upstreams: [auth], kv_namespace: ns} # as in the gateway config
//!   instance_mode: fresh                                # or reuse
//!   limits: {cpu_per_call: 100ms}                       # as in the gateway config, optional
//! route: api                                            # the route name the filter sees (default `test`)
//! path_template: /{collection}                          # the route's template, for path params (optional)
//! cases:                                                # run in order; they share the store
//!   - name: a key lets the request through
//!     request: {method: GET, path: /items?page=2, headers: {x-api-key: k1}, body: ""}
//!                                  # also `client_address: 192.0.2.7` (default 127.0.0.1:40000),
//!                                  # `consumer: alice` (authenticated by an earlier filter)
//!     backend: {status: 200, headers: {content-type: text/plain}, body: "ok"}
//!     upstreams: {auth: {status: 200, headers: {x-user: ann}}}   # or {error: timeout | failed}
//!     expect:
//!       failed: false                  # whether the filter fails the request (default false)
//!       backend:                       # the request the backend received
//!         reached: true
//!         path: /items?page=2
//!         headers: {x-user: ann}       # exact values (a list for several)
//!         headers_present: [x-api-key]
//!         headers_absent: [x-debug]
//!         body: ""                     # or body_contains
//!       response:                      # what the client gets
//!         status: 200
//!         headers: {x-filtered-by: my-filter}
//!         headers_absent: [server]
//!         body_contains: ok            # or body
//!       calls: {auth: 1}               # calls per upstream
//!       consumer: alice                # whom the request ends authenticated as ("" for nobody)
//! consumers:                           # the config's consumers, as in a gateway config (optional)
//!   - {name: alice, groups: [admins], credentials: {key-auth: {key: k1}}}
//! ```
//!
//! Errors in the file are [`ConfigError`]s naming the file, line, column and field, like config errors.

use crate::body::{self, BodyWatch};
use crate::config::{
    self, field_error, ConfigError, FailurePolicy, InstanceMode, PluginCapabilities, PluginLimits,
};
use crate::errors::{ProxyError, RequestId};
use crate::exchange::{body_error, Backend, Exchange};
use crate::filter::chain::{Stage, DEFAULT_WHOLE_BODY_LIMIT};
use crate::filter::{RequestHead, RequestInfo};
use crate::host::{CalloutError, HostCore, Upstreams};
use crate::wasm::{self, EngineOptions, Plugins, WasmEngine};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a filter under test may keep a request paused with nothing in flight (the gateway
/// uses the route's timeout).
const PAUSE_LIMIT: Duration = Duration::from_secs(5);

/// A fixture file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    plugin: PluginSpec,
    #[serde(default)]
    route: Option<String>,
    /// The route's path template (`/users/{id}`): every case's path must match it, and the filter
    /// sees what it captured (`request.path-params`). Default: no template, no parameters.
    #[serde(default)]
    path_template: Option<String>,
    /// The config's consumers, as under `consumers:` in a gateway config.
    #[serde(default)]
    consumers: Vec<crate::config::consumers::Consumer>,
    cases: Vec<Case>,
}

/// The plugin under test, as a gateway config would name and configure it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginSpec {
    path: PathBuf,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    capabilities: Option<PluginCapabilities>,
    #[serde(default)]
    instance_mode: InstanceMode,
    #[serde(default)]
    limits: Option<PluginLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    request: RequestSpec,
    #[serde(default)]
    backend: BackendSpec,
    #[serde(default)]
    upstreams: BTreeMap<String, MockAnswer>,
    #[serde(default)]
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestSpec {
    #[serde(default = "get")]
    method: String,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, Value>,
    #[serde(default)]
    body: String,
    /// The client's address (`ip:port`, `[v6]:port` or a bare IP) the filter sees. Default:
    /// `127.0.0.1:40000`.
    #[serde(default)]
    client_address: Option<String>,
    /// The consumer an earlier filter on the route authenticated the request as (one of the
    /// fixture's `consumers`). Default: none.
    #[serde(default)]
    consumer: Option<String>,
}

fn get() -> String {
    "GET".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendSpec {
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, Value>,
    #[serde(default)]
    body: String,
}

fn ok() -> u16 {
    200
}

impl Default for BackendSpec {
    fn default() -> Self {
        BackendSpec {
            status: 200,
            headers: BTreeMap::new(),
            body: String::new(),
        }
    }
}

/// What an upstream answers the plugin's outbound call with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MockAnswer {
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, Value>,
    #[serde(default)]
    body: String,
    /// Instead of an answer: the call times out or fails.
    #[serde(default)]
    error: Option<MockError>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum MockError {
    Timeout,
    Failed,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    failed: bool,
    #[serde(default)]
    backend: Option<ExpectBackend>,
    #[serde(default)]
    response: Option<ExpectMessage>,
    #[serde(default)]
    calls: BTreeMap<String, usize>,
    /// The consumer the request ends up authenticated as; `""` for none.
    #[serde(default)]
    consumer: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectBackend {
    #[serde(default)]
    reached: Option<bool>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(flatten)]
    message: ExpectMessage,
}

/// Expectations on headers and body, shared by the backend's request and the client's response.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectMessage {
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    headers: BTreeMap<String, Value>,
    #[serde(default)]
    headers_present: Vec<String>,
    #[serde(default)]
    headers_absent: Vec<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_contains: Option<String>,
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseOutcome {
    /// The case's name.
    pub name: String,
    /// What differed from the expectations, one line each (empty: passed).
    pub failures: Vec<String>,
}

impl CaseOutcome {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The outcome of a fixture file.
#[derive(Debug, Clone)]
pub struct Report {
    /// The fixture file.
    pub file: PathBuf,
    /// Its cases, in order.
    pub cases: Vec<CaseOutcome>,
}

impl Report {
    /// Whether every case passed.
    pub fn passed(&self) -> bool {
        self.cases.iter().all(CaseOutcome::passed)
    }

    /// `PASS`/`FAIL` per case with what differed, and a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.cases {
            let verdict = if c.passed() { "PASS" } else { "FAIL" };
            let _ = writeln!(out, "{verdict}  {}", c.name);
            for f in &c.failures {
                for line in f.lines() {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
        let failed = self.cases.iter().filter(|c| !c.passed()).count();
        let _ = writeln!(
            out,
            "{}: {} passed, {failed} failed",
            self.file.display(),
            self.cases.len() - failed
        );
        out
    }
}

/// Reads a fixture file, loads its plugin (`wasm` instead of the file's `plugin.path` if given) and runs
/// its cases. Call within a tokio runtime.
pub async fn run_file(path: &Path, wasm: Option<&Path>) -> Result<Report, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        location: None,
        field: "(file)".into(),
        message: format!("cannot read: {e}"),
    })?;
    let fixture = parse(path, &text)?;
    let err = |field: &str, msg: String| field_error(path, Some(&text), field, msg);
    if fixture.cases.is_empty() {
        return Err(err("cases", "no cases: add at least one".into()));
    }
    // Every case is checked before anything runs.
    let prepared = fixture
        .cases
        .iter()
        .enumerate()
        .map(|(i, case)| prepare(case).map_err(|(f, m)| err(&format!("cases[{i}].{f}"), m)))
        .collect::<Result<Vec<_>, _>>()?;
    let params = match &fixture.path_template {
        None => vec![Vec::new(); prepared.len()],
        Some(t) => template_params(t, &prepared).map_err(|(i, m)| match i {
            None => err("path_template", m),
            Some(i) => err(&format!("cases[{i}].request.path"), m),
        })?,
    };
    let mocks = Arc::new(FixtureUpstreams {
        granted: fixture
            .plugin
            .capabilities
            .as_ref()
            .map(|c| c.upstreams.clone())
            .unwrap_or_default(),
        answers: Mutex::default(),
        calls: Mutex::default(),
    });
    let host = HostCore::new(mocks.clone());
    let engine = WasmEngine::new(EngineOptions {
        cache_dir: crate::plugins::default_cache_dir(),
        max_instances: 64,
        // An author testing a filter gets file and line in a trap's backtrace when the filter is
        // built with debug info.
        debug_info: true,
        ..EngineOptions::default()
    })
    .map_err(|e| err("plugin", format!("cannot start the Wasm engine: {e}")))?;
    // The plugin's path is relative to the fixture file; `wasm` to where the command runs.
    let cwd = std::env::current_dir().unwrap_or_default();
    let base = cwd.join(path.parent().unwrap_or(Path::new("")));
    // `auth.test.yaml` tests the plugin `auth`.
    let name = path
        .file_name()
        .map(|s| {
            s.to_string_lossy()
                .split('.')
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "plugin".into());
    let mut cfg = serde_json::json!({
        "name": name,
        "path": match wasm {
            Some(w) => cwd.join(w),
            None => base.join(&fixture.plugin.path),
        },
        "instance_mode": fixture.plugin.instance_mode,
        // Cases run one after another and may count on what a Proxy-Wasm plugin kept in its memory
        // from an earlier case: one VM, whatever the runtime's threads (ignored for a component).
        "vms": 1,
    });
    if let Some(caps) = &fixture.plugin.capabilities {
        cfg["capabilities"] = serde_json::to_value(caps).unwrap_or_default();
    }
    if let Some(limits) = &fixture.plugin.limits {
        cfg["limits"] = serde_json::to_value(limits).unwrap_or_default();
    }
    let cfg: config::Plugin =
        serde_json::from_value(cfg).map_err(|e| err("plugin", e.to_string()))?;
    let registry = Arc::new(
        crate::consumers::Registry::build(&fixture.consumers, &base)
            .map_err(|e| err(&e.field, e.message))?,
    );
    let loaded = Plugins::new(engine)
        .load(&cfg, &base, host)
        .await
        .map_err(|e| err("plugin.path", e.to_string()))?;
    let route = fixture.route.clone().unwrap_or_else(|| "test".into());
    let filter = loaded
        .filter_in(
            &route,
            wasm::config_bytes(fixture.plugin.config.as_ref()),
            FailurePolicy::Closed,
            &registry,
        )
        .await
        .map_err(|e| err("plugin.config", e.to_string()))?;
    let stages: Arc<[Stage]> = Arc::from(vec![Stage {
        filter,
        policy: FailurePolicy::Closed,
        failures: AtomicU64::new(0),
        timings: Arc::default(),
    }]);
    let route: Arc<str> = Arc::from(route);
    let mut cases = Vec::with_capacity(fixture.cases.len());
    for (i, ((case, prepared), params)) in
        fixture.cases.iter().zip(&prepared).zip(params).enumerate()
    {
        *mocks.answers.lock().unwrap() = prepared.answers.clone();
        mocks.calls.lock().unwrap().clear();
        let info = RequestInfo {
            route: route.clone(),
            upstream: Some(Arc::from("backend")),
            peer: prepared.client,
            local: "127.0.0.1:8080".parse().expect("an address"),
            scheme: "http",
            protocol: "1.1",
            id: i as u64 + 1,
            connection: i as u64 + 1,
            tls: None,
            timeout: PAUSE_LIMIT,
            identity: (!registry.is_empty())
                .then(|| Arc::new(crate::consumers::Identity::new(registry.clone()))),
            params,
            trace: None,
        };
        if let Some(name) = &case.request.consumer {
            let known = info.identity.as_ref().is_some_and(|i| i.authenticate(name));
            if !known {
                return Err(err(
                    &format!("cases[{i}].request.consumer"),
                    format!("no consumer is called `{name}` (see `consumers:`)"),
                ));
            }
        }
        let mut seen = exchange(&stages, &info, prepared).await;
        seen.consumer = info
            .identity
            .as_ref()
            .and_then(|i| i.current())
            .map(|c| c.name.to_string());
        let calls = std::mem::take(&mut *mocks.calls.lock().unwrap());
        cases.push(CaseOutcome {
            name: case.name.clone(),
            failures: compare(case, prepared, &seen, &calls),
        });
    }
    Ok(Report {
        file: path.to_owned(),
        cases,
    })
}

/// Parses fixture text; `path` names it in errors.
fn parse(path: &Path, text: &str) -> Result<Fixture, ConfigError> {
    crate::config::from_yaml(path, text)
}

/// A case with its headers, methods and statuses checked and converted.
struct Prepared {
    client: SocketAddr,
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
    backend_status: StatusCode,
    backend_headers: HeaderMap,
    backend_body: Bytes,
    answers: BTreeMap<String, Result<http::Response<Bytes>, CalloutError>>,
    expect_backend_headers: Vec<(HeaderName, Vec<String>)>,
    expect_response_headers: Vec<(HeaderName, Vec<String>)>,
}

type FieldError = (String, String);

fn header_name(field: &str, name: &str) -> Result<HeaderName, FieldError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        (
            field.to_owned(),
            format!("`{name}` is not a valid header name"),
        )
    })
}

fn status(field: &str, code: u16) -> Result<StatusCode, FieldError> {
    StatusCode::from_u16(code).map_err(|_| {
        (
            field.to_owned(),
            format!("{code} is not a status code (100-999)"),
        )
    })
}

/// Header values as written: a string (numbers and booleans as written), or a list of them.
fn header_values(field: &str, v: &Value) -> Result<Vec<String>, FieldError> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err((
            field.to_owned(),
            "expected a string or a list of strings".to_owned(),
        )),
    };
    match v {
        Value::Array(items) => items.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

fn header_list(
    field: &str,
    headers: &BTreeMap<String, Value>,
) -> Result<Vec<(HeaderName, Vec<String>)>, FieldError> {
    headers
        .iter()
        .map(|(k, v)| {
            let f = format!("{field}.{k}");
            Ok((header_name(&f, k)?, header_values(&f, v)?))
        })
        .collect()
}

fn header_map(field: &str, headers: &BTreeMap<String, Value>) -> Result<HeaderMap, FieldError> {
    let mut map = HeaderMap::new();
    for (name, values) in header_list(field, headers)? {
        for v in values {
            let value = HeaderValue::from_str(&v).map_err(|_| {
                (
                    format!("{field}.{name}"),
                    format!("`{v}` is not a valid header value"),
                )
            })?;
            map.append(name.clone(), value);
        }
    }
    Ok(map)
}

/// What the route's path template captures from each case's path, by the gateway's own router: an
/// error names the case whose path does not match (or `None` for a bad template).
fn template_params(
    template: &str,
    prepared: &[Prepared],
) -> Result<Vec<crate::router::Params>, (Option<usize>, String)> {
    use crate::router::{PathSpec, RouteMatch, RouteRequest, Router};
    let router = Router::new(vec![RouteMatch {
        host: None,
        path: Some(PathSpec::Template(template.to_owned())),
        methods: Vec::new(),
        headers: Vec::new(),
        query: Vec::new(),
        client_cert: Vec::new(),
    }])
    .map_err(|e| (None, format!("`{template}`: {e}")))?;
    prepared
        .iter()
        .enumerate()
        .map(|(i, p)| {
            router
                .find(&RouteRequest {
                    host: "localhost",
                    path: p.uri.path(),
                    query: p.uri.query(),
                    method: &p.method,
                    headers: &p.headers,
                    client_cert: None,
                })
                .map(|(_, params)| params)
                .ok_or_else(|| {
                    (
                        Some(i),
                        format!("`{}` does not match the path_template `{template}`", p.uri),
                    )
                })
        })
        .collect()
}

fn prepare(case: &Case) -> Result<Prepared, FieldError> {
    let r = &case.request;
    let method = Method::from_bytes(r.method.as_bytes()).map_err(|_| {
        (
            "request.method".to_owned(),
            format!("`{}` is not a method", r.method),
        )
    })?;
    if !r.path.starts_with('/') {
        return Err((
            "request.path".into(),
            format!("`{}` must start with `/`", r.path),
        ));
    }
    let uri: http::Uri = r
        .path
        .parse()
        .map_err(|e| ("request.path".to_owned(), format!("`{}`: {e}", r.path)))?;
    let client = match &r.client_address {
        None => SocketAddr::from(([127, 0, 0, 1], 40000)),
        Some(a) => a
            .parse::<SocketAddr>()
            .or_else(|_| a.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 40000)))
            .map_err(|_| {
                (
                    "request.client_address".to_owned(),
                    format!("`{a}` is not an address (`192.0.2.7`, `192.0.2.7:5000`, `[2001:db8::1]:5000`)"),
                )
            })?,
    };
    let mut headers = header_map("request.headers", &r.headers)?;
    // What the gateway does before a route's filters see the request.
    crate::framing::strip_connection(&mut headers);
    if !headers.contains_key(http::header::HOST) {
        headers.insert(http::header::HOST, HeaderValue::from_static("localhost"));
    }
    let mut answers = BTreeMap::new();
    for (name, a) in &case.upstreams {
        let f = format!("upstreams.{name}");
        let answer = match a.error {
            Some(MockError::Timeout) => Err(CalloutError::Timeout),
            Some(MockError::Failed) => Err(CalloutError::Failed(format!(
                "upstream `{name}` failed (mocked)"
            ))),
            None => {
                let mut resp = http::Response::new(Bytes::from(a.body.clone()));
                *resp.status_mut() = status(&format!("{f}.status"), a.status)?;
                *resp.headers_mut() = header_map(&format!("{f}.headers"), &a.headers)?;
                Ok(resp)
            }
        };
        answers.insert(name.clone(), answer);
    }
    let expect_backend_headers = match &case.expect.backend {
        Some(b) => header_list("expect.backend.headers", &b.message.headers)?,
        None => Vec::new(),
    };
    let expect_response_headers = match &case.expect.response {
        Some(m) => header_list("expect.response.headers", &m.headers)?,
        None => Vec::new(),
    };
    for (field, names) in [
        (
            "expect.backend.headers_present",
            case.expect
                .backend
                .as_ref()
                .map(|b| &b.message.headers_present),
        ),
        (
            "expect.backend.headers_absent",
            case.expect
                .backend
                .as_ref()
                .map(|b| &b.message.headers_absent),
        ),
        (
            "expect.response.headers_present",
            case.expect.response.as_ref().map(|m| &m.headers_present),
        ),
        (
            "expect.response.headers_absent",
            case.expect.response.as_ref().map(|m| &m.headers_absent),
        ),
    ] {
        for (j, n) in names.into_iter().flatten().enumerate() {
            header_name(&format!("{field}[{j}]"), n)?;
        }
    }
    if let Some(b) = &case.expect.backend {
        if b.message.status.is_some() {
            return Err((
                "expect.backend.status".into(),
                "the backend's request has no status; expect `response.status`".into(),
            ));
        }
    }
    Ok(Prepared {
        client,
        method,
        uri,
        headers,
        body: Bytes::from(r.body.clone()),
        backend_status: status("backend.status", case.backend.status)?,
        backend_headers: header_map("backend.headers", &case.backend.headers)?,
        backend_body: Bytes::from(case.backend.body.clone()),
        answers,
        expect_backend_headers,
        expect_response_headers,
    })
}

/// What happened to one request.
#[derive(Debug, Default)]
struct Seen {
    /// The request the backend received, if it was reached.
    backend: Option<(RequestHead, Bytes)>,
    /// What the client got.
    status: u16,
    headers: HeaderMap,
    body: Bytes,
    /// Why the filter failed the request, if it did.
    failure: Option<String>,
    /// The consumer the request was authenticated as.
    consumer: Option<String>,
}

/// Runs one request through the same exchange the proxy runs (request phases, bodies, the backend,
/// response phases), with the fixture's answer as the backend, in memory.
async fn exchange(stages: &Arc<[Stage]>, info: &RequestInfo, p: &Prepared) -> Seen {
    let mut seen = Seen::default();
    let mut req = http::Request::new(());
    *req.method_mut() = p.method.clone();
    *req.uri_mut() = p.uri.clone();
    *req.headers_mut() = p.headers.clone();
    let (parts, ()) = req.into_parts();
    let id = RequestId::new();
    let exchange = Exchange {
        stages: Some(stages),
        limit: DEFAULT_WHOLE_BODY_LIMIT,
        id: &id,
    };
    let body = if p.body.is_empty() {
        body::empty()
    } else {
        body::full(p.body.clone())
    };
    let backend = FixtureBackend { p };
    let outcome = exchange.run(|| info.clone(), parts, body, backend).await;
    seen.backend = outcome.note;
    seen.failure = outcome.error.map(|e| e.to_string());
    let (parts, b) = outcome.resp.into_parts();
    seen.status = parts.status.as_u16();
    seen.headers = parts.headers;
    match b.collect().await {
        Ok(c) => seen.body = c.to_bytes(),
        Err(e) => {
            let chain = match outcome.response_body {
                Some(v) => v.await.ok().and_then(|r| r.err()),
                None => None,
            };
            seen.failure = Some(match chain {
                Some(chain) => chain.to_string(),
                None => format!("the response body broke off: {e}"),
            });
        }
    }
    drop(outcome.chain);
    seen
}

/// The fixture's answer as a backend: it reads the whole request body and records the request.
struct FixtureBackend<'a> {
    p: &'a Prepared,
}

impl Backend for FixtureBackend<'_> {
    type Note = Option<(RequestHead, Bytes)>;

    async fn serve(
        self,
        parts: http::request::Parts,
        body: body::Body,
        _declared: Option<u64>,
        watch: &BodyWatch,
    ) -> (Result<http::Response<body::Body>, ProxyError>, Self::Note) {
        let body = match body.collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                let err = body_error(watch, e.to_string(), DEFAULT_WHOLE_BODY_LIMIT);
                return (Err(err), None);
            }
        };
        let head = RequestHead {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
        };
        let mut resp = http::Response::new(body::full(self.p.backend_body.clone()));
        *resp.status_mut() = self.p.backend_status;
        *resp.headers_mut() = self.p.backend_headers.clone();
        (Ok(resp), Some((head, body)))
    }
}

/// A value for a diff line: text as a quoted string, binary as its length.
fn show(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => format!("{s:?}"),
        Err(_) => format!("<{} bytes of binary>", b.len()),
    }
}

fn header_text(h: &HeaderMap, name: &HeaderName) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// Checks headers and body of a message against `want`; `what` prefixes each difference.
fn compare_message(
    what: &str,
    want: &ExpectMessage,
    want_headers: &[(HeaderName, Vec<String>)],
    headers: &HeaderMap,
    body: &[u8],
    out: &mut Vec<String>,
) {
    for (name, values) in want_headers {
        let got = header_text(headers, name);
        if &got != values {
            let got = if got.is_empty() {
                "(absent)".to_owned()
            } else {
                format!("{got:?}")
            };
            out.push(format!(
                "{what}.headers.{name}: expected {values:?}, got {got}"
            ));
        }
    }
    for name in &want.headers_present {
        if !headers.contains_key(name.as_str()) {
            out.push(format!(
                "{what}.headers.{name}: expected present, got (absent)"
            ));
        }
    }
    for name in &want.headers_absent {
        let got = header_text(
            headers,
            &HeaderName::from_bytes(name.as_bytes()).expect("checked"),
        );
        if !got.is_empty() {
            out.push(format!(
                "{what}.headers.{name}: expected absent, got {got:?}"
            ));
        }
    }
    if let Some(b) = &want.body {
        if b.as_bytes() != body {
            out.push(format!(
                "{what}.body:\n  expected {}\n  got      {}",
                show(b.as_bytes()),
                show(body)
            ));
        }
    }
    if let Some(part) = &want.body_contains {
        let found = part.is_empty() || body.windows(part.len()).any(|w| w == part.as_bytes());
        if !found {
            out.push(format!(
                "{what}.body: expected to contain {}\n  got {}",
                show(part.as_bytes()),
                show(body)
            ));
        }
    }
}

/// Every difference between what the case expects and what happened.
fn compare(case: &Case, p: &Prepared, seen: &Seen, calls: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    let e = &case.expect;
    match (&seen.failure, e.failed) {
        (Some(why), false) => out.push(format!("the filter failed the request: {why}")),
        (None, true) => out.push("expected the filter to fail the request; it did not".into()),
        _ => {}
    }
    if let Some(want) = &e.consumer {
        let got = seen.consumer.as_deref().unwrap_or("");
        if got != want {
            out.push(format!("consumer: expected {want:?}, got {got:?}"));
        }
    }
    for (upstream, path) in calls {
        if !p.answers.contains_key(upstream) {
            out.push(format!(
                "the plugin called upstream `{upstream}` ({path}), which this case does not mock under `upstreams`"
            ));
        }
    }
    for (upstream, n) in &e.calls {
        let got = calls.iter().filter(|(u, _)| u == upstream).count();
        if got != *n {
            out.push(format!("calls.{upstream}: expected {n}, got {got}"));
        }
    }
    if let Some(want) = &e.backend {
        match (&seen.backend, want.reached) {
            (None, Some(false)) => {}
            (None, _) => {
                out.push("backend: expected the request to reach the backend; it did not".into())
            }
            (Some(_), Some(false)) => {
                out.push("backend: expected the request not to reach the backend; it did".into())
            }
            (Some((head, body)), _) => {
                if let Some(m) = &want.method {
                    if !head.method.as_str().eq_ignore_ascii_case(m) {
                        out.push(format!("backend.method: expected {m}, got {}", head.method));
                    }
                }
                if let Some(path) = &want.path {
                    let got = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
                    if got != path {
                        out.push(format!("backend.path: expected {path:?}, got {got:?}"));
                    }
                }
                compare_message(
                    "backend",
                    &want.message,
                    &p.expect_backend_headers,
                    &head.headers,
                    body,
                    &mut out,
                );
            }
        }
    }
    if let Some(want) = &e.response {
        if let Some(s) = want.status {
            if s != seen.status {
                out.push(format!(
                    "response.status: expected {s}, got {}",
                    seen.status
                ));
            }
        }
        compare_message(
            "response",
            want,
            &p.expect_response_headers,
            &seen.headers,
            &seen.body,
            &mut out,
        );
    }
    out
}

/// Outbound calls answered from the current case's `upstreams`, recorded as (upstream, path): the
/// fixture's answers, in-process, so a plugin author's test needs no server (the gateway's own tests
/// use a mock server instead, through the real callout client).
struct FixtureUpstreams {
    /// The upstreams the plugin is granted: they exist, whether or not a case mocks them.
    granted: Vec<String>,
    answers: Mutex<BTreeMap<String, Result<http::Response<Bytes>, CalloutError>>>,
    calls: Mutex<Vec<(String, String)>>,
}

impl Upstreams for FixtureUpstreams {
    fn has(&self, upstream: &str) -> bool {
        self.granted.iter().any(|g| g == upstream)
            || self.answers.lock().unwrap().contains_key(upstream)
    }

    fn call(
        &self,
        upstream: &str,
        req: http::Request<Bytes>,
        _timeout: Duration,
    ) -> BoxFuture<'static, Result<http::Response<Bytes>, CalloutError>> {
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        self.calls.lock().unwrap().push((upstream.to_owned(), path));
        let answer = match self.answers.lock().unwrap().get(upstream) {
            Some(Ok(resp)) => {
                let mut r = http::Response::new(resp.body().clone());
                *r.status_mut() = resp.status();
                *r.headers_mut() = resp.headers().clone();
                Ok(r)
            }
            Some(Err(e)) => Err(e.clone()),
            None => Err(CalloutError::Failed(format!(
                "no answer for upstream `{upstream}` in this case"
            ))),
        };
        Box::pin(async move { answer })
    }
}

/// Runs fixture files one after another on a runtime of its own and prints each report (to stdout)
/// or error (to stderr). Returns whether every case of every file passed.
pub fn run_files(files: &[PathBuf], wasm: Option<&Path>) -> bool {
    let io = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(io) => io,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return false;
        }
    };
    let mut all = true;
    for f in files {
        match io.block_on(run_file(f, wasm)) {
            Ok(report) => {
                print!("{}", report.render());
                all &= report.passed();
            }
            Err(e) => {
                eprintln!("error: {e}");
                all = false;
            }
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_errors_name_file_line_and_field() {
        let p = Path::new("f.test.yaml");
        let e = parse(p, "plugin: {path: x.wasm}\ncases:\n  - name: a\n    request: {path: /}\n    expect: {respons: {}}\n").unwrap_err();
        assert_eq!(e.field, "cases[0].expect.respons");
        assert_eq!(e.location.map(|l| l.0), Some(5));
        assert!(
            e.message.contains("unknown field `respons`"),
            "{}",
            e.message
        );
        let e = parse(p, "plugin: {path: x.wasm}\ncases:\n  - name: a\n    request: {path: /, method: 5}\n    upstreams: {auth: {error: nope}}\n").unwrap_err();
        assert!(e.field.starts_with("cases[0].upstreams"), "{e}");
        assert!(e.message.contains("timeout"), "{e}");
    }

    #[test]
    fn the_documented_format_parses() {
        let src = include_str!("plugin_runner.rs");
        let doc: String = src
            .lines()
            .skip_while(|l| *l != "//! ```yaml")
            .skip(1)
            .take_while(|l| *l != "//! ```")
            .map(|l| {
                format!(
                    "{}\n",
                    l.strip_prefix("//!")
                        .unwrap_or(l)
                        .strip_prefix(' ')
                        .unwrap_or("")
                )
            })
            .collect();
        assert!(doc.contains("cases:"), "{doc}");
        let f = parse(Path::new("doc.yaml"), &doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        assert_eq!(f.cases.len(), 1);
        let prepared = prepare(&f.cases[0]).unwrap();
        let params = template_params(f.path_template.as_deref().unwrap(), &[prepared]).unwrap();
        assert_eq!(params[0], [(Arc::from("collection"), "items".to_owned())]);
    }

    #[test]
    fn a_path_template_captures_each_cases_parameters_or_names_the_case_it_does_not_match() {
        let text = "plugin: {path: x.wasm}\ncases:\n  - name: a\n    request: {path: /u/7/o/a%20b}\n  - name: b\n    request: {path: /v/7}\n";
        let f = parse(Path::new("f.yaml"), text).unwrap();
        let prepared: Vec<_> = f.cases.iter().map(|c| prepare(c).unwrap()).collect();
        let ok = template_params("/u/{id}/o/{order}", &prepared[..1]).unwrap();
        assert_eq!(
            ok[0],
            [
                (Arc::from("id"), "7".to_owned()),
                (Arc::from("order"), "a%20b".to_owned())
            ]
        );
        let (case, msg) = template_params("/u/{id}/o/{order}", &prepared).unwrap_err();
        assert_eq!(case, Some(1));
        assert!(msg.contains("does not match"), "{msg}");
        let (case, _) = template_params("/u/{id", &prepared).unwrap_err();
        assert_eq!(case, None);
    }

    #[test]
    fn cases_are_checked_before_they_run() {
        let text = "plugin: {path: x.wasm}\ncases:\n  - name: a\n    request:\n      path: /\n      headers: {\"bad name\": v}\n";
        let f = parse(Path::new("f.yaml"), text).unwrap();
        let Err((field, msg)) = prepare(&f.cases[0]) else {
            panic!("a bad header name is refused")
        };
        assert_eq!(field, "request.headers.bad name");
        assert!(msg.contains("not a valid header name"), "{msg}");
        let e = field_error(
            Path::new("f.yaml"),
            Some(text),
            &format!("cases[0].{field}"),
            msg,
        );
        assert_eq!(e.location, Some((6, 17)));
        let text = "plugin: {path: x.wasm}\ncases:\n  - name: a\n    request: {path: nope}\n";
        let f = parse(Path::new("f.yaml"), text).unwrap();
        assert_eq!(prepare(&f.cases[0]).err().unwrap().0, "request.path");
        let text = "plugin: {path: x.wasm}\ncases:\n  - name: a\n    request: {path: /}\n    backend: {status: 1000}\n";
        let f = parse(Path::new("f.yaml"), text).unwrap();
        assert_eq!(prepare(&f.cases[0]).err().unwrap().0, "backend.status");
    }

    #[test]
    fn differences_are_listed_one_per_line() {
        let text = "plugin: {path: x.wasm}\ncases:\n  - name: a\n    request: {path: /}\n    expect:\n      backend: {path: /x, headers: {x-user: ann}, headers_absent: [x-debug]}\n      response: {status: 401, body: no}\n";
        let f = parse(Path::new("f.yaml"), text).unwrap();
        let p = prepare(&f.cases[0]).unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-debug", HeaderValue::from_static("1"));
        let seen = Seen {
            backend: Some((
                RequestHead {
                    method: Method::GET,
                    uri: "/y".parse().unwrap(),
                    headers: h,
                },
                Bytes::new(),
            )),
            status: 200,
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"yes"),
            failure: None,
            consumer: None,
        };
        let diff = compare(&f.cases[0], &p, &seen, &[("auth".into(), "/check".into())]);
        assert_eq!(
            diff,
            [
                "the plugin called upstream `auth` (/check), which this case does not mock under `upstreams`",
                "backend.path: expected \"/x\", got \"/y\"",
                "backend.headers.x-user: expected [\"ann\"], got (absent)",
                "backend.headers.x-debug: expected absent, got [\"1\"]",
                "response.status: expected 401, got 200",
                "response.body:\n  expected \"no\"\n  got      \"yes\"",
            ]
        );
    }
}
