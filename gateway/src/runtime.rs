//! `Config` compiled into what serves: routers per listener, routes with their actions, upstream
//! clusters. Building validates everything; a build that fails says which field of which file is wrong.

pub use crate::config::Source;
use crate::config::{self, Config, ConfigError, PathMatch};
use crate::metrics::{Metrics, RouteStats, RUNTIMES_LIVE};
use crate::router::{PathSpec, RouteMatch, Router, ValueTest};
use crate::upstream::retry::RetryPolicy;
use crate::upstream::split::{self, Split};
use crate::upstream::Cluster;
use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How many runtimes are alive: the serving one plus old ones still held by requests in flight.
pub fn live_runtimes() -> usize {
    RUNTIMES_LIVE.load(Ordering::Relaxed)
}

/// Default route timeout (whole upstream exchange until response headers).
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

/// Header changes, compiled.
#[derive(Debug, Default)]
pub struct HeaderOps {
    /// Removed first.
    pub remove: Vec<HeaderName>,
    /// Then replaced.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Then appended.
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderOps {
    /// Applies the changes.
    pub fn apply(&self, h: &mut http::HeaderMap) {
        for n in &self.remove {
            h.remove(n);
        }
        for (n, v) in &self.set {
            h.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            h.append(n.clone(), v.clone());
        }
    }

    /// No changes at all.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }
}

/// What a route does with a request.
pub enum Action {
    /// Forward to a cluster.
    Upstream(Arc<Cluster>),
    /// Forward to one of several clusters, chosen per request ([`Split::pick`]).
    Split(Box<Split>),
    /// Answer with a redirect.
    Redirect(config::Redirect),
    /// Answer with a function backend, attached by `plugins::WasmServices::attach` before the
    /// runtime serves.
    Function(crate::wasm::function::FunctionSlot),
    /// Answer with a fixed response.
    Direct {
        /// Status.
        status: StatusCode,
        /// Body.
        body: bytes::Bytes,
        /// Headers.
        headers: http::HeaderMap,
    },
}

/// Path rewrite before forwarding.
pub enum PathRewrite {
    /// Remove a prefix.
    StripPrefix(String),
    /// Replace the path.
    Replace(String),
    /// Build from template parameters.
    Template(String),
}

/// A compiled route.
pub struct Route {
    /// Name (shared with the filters' request facts, not copied per request).
    pub name: Arc<str>,
    /// What it does.
    pub action: Action,
    /// Path rewrite.
    pub path_rewrite: Option<PathRewrite>,
    /// Host rewrite.
    pub host_rewrite: Option<HeaderValue>,
    /// Request header changes.
    pub request_headers: HeaderOps,
    /// Response header changes.
    pub response_headers: HeaderOps,
    /// Whole upstream exchange timeout.
    pub timeout: Duration,
    /// Retry policy.
    pub retry: Option<RetryPolicy>,
    /// Body limit; None: the listener's.
    pub max_body_size: Option<u64>,
    /// Figures.
    pub stats: Arc<RouteStats>,
    /// Responses are also counted by consumer.
    pub consumer_metrics: bool,
    /// A copy of a share of the forwarded requests goes to a shadow cluster.
    pub mirror: Option<crate::proxy::mirror::Mirror>,
    /// The Wasm filter chain, set once by [`Runtime::attach_filters`] before the runtime serves.
    pub filters: std::sync::OnceLock<Arc<[crate::filter::chain::Stage]>>,
    /// Which protocol upgrades the route tunnels, and the tunnels' clocks.
    pub upgrades: crate::config::upgrades::Policy,
    /// gRPC-Web requests are translated to gRPC and their answers back (`proxy::grpc_web`).
    pub grpc_web: bool,
    /// REST/JSON calls are transcoded to the gRPC methods of a descriptor set (`proxy::transcode`).
    pub transcode: Option<Arc<crate::transcode::Transcoder>>,
}

impl Route {
    /// Which cluster of its split the route sends a request with these headers to (0 for a route
    /// without a split: nothing is looked at).
    pub fn pick(&self, headers: &http::HeaderMap) -> u16 {
        match &self.action {
            Action::Split(s) => s.pick(headers),
            _ => 0,
        }
    }

    /// The cluster the route forwards to, given its [`Route::pick`], if it forwards.
    pub fn cluster(&self, pick: u16) -> Option<&Arc<Cluster>> {
        match &self.action {
            Action::Upstream(c) => Some(c),
            Action::Split(s) => s.clusters.get(usize::from(pick)),
            _ => None,
        }
    }

    /// The name of that cluster.
    pub fn upstream_name(&self, pick: u16) -> Option<&Arc<str>> {
        self.cluster(pick).map(|c| &c.name)
    }
}

/// The router of one listener and the routes it can return.
pub struct ListenerRoutes {
    router: Router,
    routes: Vec<Arc<Route>>,
    /// The listener's policy for encoded slashes and `;` parameters in paths.
    pub paths: config::PathPolicy,
    /// The listener takes a client's `x-request-id`.
    pub trust_request_id: bool,
    /// The proxies whose forwarding headers name the client (see [`crate::proxy::client_of`]).
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    /// The header they name it in.
    pub client_header: config::ClientHeader,
}

impl ListenerRoutes {
    /// Finds the route for a request.
    pub fn find(
        &self,
        req: &crate::router::RouteRequest<'_>,
    ) -> Option<(&Arc<Route>, crate::router::Params)> {
        self.router
            .find(req)
            .map(|(i, params)| (&self.routes[i], params))
    }
}

/// Everything that serves, built from one config.
pub struct Runtime {
    /// The config it was built from (shown on `/config`).
    pub config: Config,
    /// Routes by listener name.
    pub listeners: crate::router::HashMap<String, ListenerRoutes>,
    /// Clusters by name.
    pub upstreams: HashMap<String, Arc<Cluster>>,
    /// TLS configs of the listeners that terminate TLS, by listener name (certificate files are read
    /// when the runtime is built, so a reload picks up new certificates).
    pub listener_tls: HashMap<String, Arc<rustls::ServerConfig>>,
    /// The consumers of the config, compiled (secrets digested, read from `env:` and `file:`).
    pub consumers: Arc<crate::consumers::Registry>,
    /// Which config this is: 0 for the one the gateway started with, each applied reload adds one
    /// (set by [`crate::reload::Reloader`]). A request's tunnel belongs to the generation of the
    /// snapshot the request loaded, so a reload's drain reaches it however late its upstream switched.
    pub generation: u64,
    /// The tracing of `server.tracing`, if configured (taken over by a reload that leaves that
    /// block unchanged, so its export queue and task go on).
    pub tracing: Option<Arc<crate::telemetry::Tracing>>,
    /// `server.access_log.fields`, shared by every logged request of this config (each one's
    /// `Access` holds a reference instead of a copy of the list).
    pub access_log_fields: Arc<[crate::access_log::Field]>,
    /// Clusters taken over unchanged from the previous runtime (already started).
    kept: HashSet<String>,
    /// A digest of the files each cluster's TLS config names (CA bundle, client certificate and
    /// key), as read when the cluster was built: a cluster is only taken over when they are unchanged.
    cluster_files: HashMap<String, [u8; 32]>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        RUNTIMES_LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Compiles and validates `cfg`. Starts nothing: see [`Runtime::start`].
    pub fn build(cfg: Config, src: &Source, metrics: &Metrics) -> Result<Runtime, ConfigError> {
        Runtime::build_with(cfg, src, metrics, None)
    }

    /// Like [`Runtime::build`], taking over from `previous` every cluster whose config did not change, so
    /// that its connection pool and health state survive a reload.
    pub fn build_with(
        cfg: Config,
        src: &Source,
        metrics: &Metrics,
        previous: Option<&Runtime>,
    ) -> Result<Runtime, ConfigError> {
        let mut cfg = cfg;
        check_listeners(&cfg, src)?;
        let base = src.path.parent().unwrap_or(std::path::Path::new("."));
        let consumers = crate::consumers::Registry::build(&cfg.consumers, base).map_err(|e| {
            let field = match src.has_field(&e.field) {
                true => e.field,
                false => single_credential_field(&e.field),
            };
            src.err(field, e.message)
        })?;
        crate::config::stores::check(&cfg.kv_namespaces, base).map_err(|(f, m)| src.err(f, m))?;
        // What was written inline is digested (or held by the registry) now: the config kept for
        // `/config` and the next reload does not hold it.
        scrub_inline_secrets(&mut cfg.consumers);
        crate::plugin_source::check(&cfg, src)?;
        let mut listener_tls = HashMap::new();
        for (i, l) in cfg.listeners.iter().enumerate() {
            if let Some(t) = &l.tls {
                let at = format!("listeners[{i}].tls");
                listener_tls.insert(l.name.clone(), crate::tls::server_config(src, &at, t)?);
            }
        }
        let mut upstreams = HashMap::new();
        let mut kept = HashSet::new();
        let mut cluster_files = HashMap::new();
        for (i, u) in cfg.upstreams.iter().enumerate() {
            let at = |f: &str| format!("upstreams[{i}].{f}");
            if upstreams.contains_key(&u.name) {
                return Err(src.err(
                    at("name"),
                    format!("upstream `{}` is defined twice", u.name),
                ));
            }
            if u.endpoints.is_empty() {
                return Err(src.err(at("endpoints"), "an upstream needs at least one endpoint"));
            }
            for (j, e) in u.endpoints.iter().enumerate() {
                check_host_port(&e.address)
                    .map_err(|m| src.err(at(&format!("endpoints[{j}]")), m))?;
                if e.weight == 0 || e.weight > 10_000 {
                    return Err(src.err(
                        at(&format!("endpoints[{j}].weight")),
                        "weight must be between 1 and 10000",
                    ));
                }
            }
            if let Some(a) = &u.health.active {
                if !a.path.starts_with('/') {
                    return Err(src.err(at("health.active.path"), "the path must start with /"));
                }
                if a.interval.0.is_zero() {
                    return Err(src.err(at("health.active.interval"), "must be more than 0"));
                }
            }
            let files = tls_files_digest(src, u);
            cluster_files.insert(u.name.clone(), files);
            if let Some(c) = previous.and_then(|p| p.unchanged_cluster(u, &files)) {
                kept.insert(u.name.clone());
                upstreams.insert(u.name.clone(), c);
                continue;
            }
            let tls = u
                .tls
                .as_ref()
                .map(|t| crate::tls::client_config(src, &at("tls"), t))
                .transpose()?;
            let cluster = Cluster::new(u, metrics.upstream(&u.name), tls);
            upstreams.insert(u.name.clone(), Arc::new(cluster));
        }

        let mut names = HashSet::new();
        let mut compiled = Vec::new();
        for (i, r) in cfg.routes.iter().enumerate() {
            if !names.insert(r.name.as_str()) {
                return Err(src.err(
                    format!("routes[{i}].name"),
                    format!("route `{}` is defined twice", r.name),
                ));
            }
            for (j, l) in r.listeners.iter().enumerate() {
                if !cfg.listeners.iter().any(|x| &x.name == l) {
                    return Err(src.err(
                        format!("routes[{i}].listeners[{j}]"),
                        format!("unknown listener `{l}`"),
                    ));
                }
            }
            let m = compile_match(&r.matcher, src, i)?;
            let route = compile_route(r, &m, src, i, &upstreams, metrics)?;
            compiled.push((m, Arc::new(route)));
        }

        let mut listeners = crate::router::HashMap::default();
        for (li, l) in cfg.listeners.iter().enumerate() {
            let mut trusted_proxies = Vec::with_capacity(l.trusted_proxies.len());
            for (k, p) in l.trusted_proxies.iter().enumerate() {
                trusted_proxies
                    .push(config::parse_network(p).map_err(|m| {
                        src.err(format!("listeners[{li}].trusted_proxies[{k}]"), m)
                    })?);
            }
            let mut matches = Vec::new();
            let mut routes = Vec::new();
            for (i, r) in cfg.routes.iter().enumerate() {
                if r.listeners.is_empty() || r.listeners.contains(&l.name) {
                    matches.push(compiled[i].0.clone());
                    routes.push(compiled[i].1.clone());
                }
            }
            let router = Router::new(matches).map_err(|e| src.err("routes", e.0))?;
            listeners.insert(
                l.name.clone(),
                ListenerRoutes {
                    router,
                    routes,
                    paths: l.paths,
                    trust_request_id: l.trust_request_id,
                    trusted_proxies: trusted_proxies.into(),
                    client_header: l.client_header,
                },
            );
        }
        let tracing = match &cfg.server.tracing {
            None => None,
            Some(t) => {
                t.check()
                    .map_err(|(f, m)| src.err(format!("server.tracing.{f}"), m))?;
                let same = previous.filter(|p| p.config.server.tracing.as_ref() == Some(t));
                Some(match same.and_then(|p| p.tracing.clone()) {
                    Some(kept) => kept,
                    None => Arc::new(crate::telemetry::Tracing::new(t, metrics.tracing.clone())),
                })
            }
        };
        RUNTIMES_LIVE.fetch_add(1, Ordering::Relaxed);
        Ok(Runtime {
            tracing,
            access_log_fields: cfg.server.access_log.fields.clone().into(),
            config: cfg,
            generation: 0,
            consumers: Arc::new(consumers),
            listeners,
            upstreams,
            kept,
            cluster_files,
            listener_tls,
        })
    }

    /// This runtime's cluster for `u`, if it was built from the same upstream config and the same
    /// contents of the files that config names.
    fn unchanged_cluster(&self, u: &config::Upstream, files: &[u8; 32]) -> Option<Arc<Cluster>> {
        let same = self.config.upstreams.iter().any(|p| p == u)
            && self.cluster_files.get(&u.name) == Some(files);
        same.then(|| self.upstreams.get(&u.name).cloned()).flatten()
    }

    /// Names of the clusters taken over from the previous runtime.
    pub fn kept_upstreams(&self) -> &HashSet<String> {
        &self.kept
    }

    /// Gives routes their filter stages (made by `plugins::WasmServices::attach`), by route name.
    pub fn attach_filters(&self, mut stages: HashMap<String, Arc<[crate::filter::chain::Stage]>>) {
        let mut seen = HashSet::new();
        for routes in self.listeners.values() {
            for r in &routes.routes {
                if seen.insert(Arc::as_ptr(r)) {
                    if let Some(s) = stages.remove(&*r.name) {
                        let _ = r.filters.set(s);
                    }
                }
            }
        }
    }

    /// Calls `f` with the function slot of every route that answers with a function (filled by
    /// `wasm::function::Functions::attach` before the runtime serves).
    pub fn function_slots(&self, mut f: impl FnMut(&crate::wasm::function::FunctionSlot)) {
        for routes in self.listeners.values() {
            for r in &routes.routes {
                if let Action::Function(slot) = &r.action {
                    f(slot);
                }
            }
        }
    }

    /// Starts background work (active health checks) and registers health with `/metrics`.
    pub fn start(&self, metrics: &Metrics) {
        if let Some(t) = &self.tracing {
            t.start();
        }
        for (name, c) in &self.upstreams {
            if !self.kept.contains(name) {
                c.start_health_checks();
            }
            let weak = Arc::downgrade(c);
            metrics.set_health(
                name,
                Arc::new(move || weak.upgrade().map(|c| c.health()).unwrap_or_default()),
            );
        }
        metrics.retain_health(|n| self.upstreams.contains_key(n));
    }
}

fn check_listeners(cfg: &Config, src: &Source) -> Result<(), ConfigError> {
    if cfg.listeners.is_empty() {
        return Err(src.err("listeners", "at least one listener is needed"));
    }
    let mut seen = HashSet::new();
    for (i, l) in cfg.listeners.iter().enumerate() {
        if !seen.insert(&l.name) {
            return Err(src.err(
                format!("listeners[{i}].name"),
                format!("listener `{}` is defined twice", l.name),
            ));
        }
        check_host_port(&l.address).map_err(|m| src.err(format!("listeners[{i}].address"), m))?;
        if l.limits.max_header_bytes.0 < 1024 {
            return Err(src.err(
                format!("listeners[{i}].limits.max_header_bytes"),
                "must be at least 1KiB",
            ));
        }
        if l.limits.max_connections == 0
            || l.limits.max_headers == 0
            || l.limits.h2_max_concurrent_streams == 0
        {
            return Err(src.err(
                format!("listeners[{i}].limits"),
                "limits must be more than 0",
            ));
        }
    }
    check_host_port(&cfg.admin.address).map_err(|m| src.err("admin.address", m))?;
    let admin_loopback = is_loopback(&cfg.admin.address);
    if !admin_loopback && cfg.admin.token.as_deref().is_none_or(str::is_empty) {
        return Err(src.err(
            "admin.address",
            "the admin API is bound to a non-loopback address, so `admin.token` is required",
        ));
    }
    Ok(())
}

/// Whether a `host:port` names a loopback address.
pub fn is_loopback(addr: &str) -> bool {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => addr.starts_with("localhost:"),
    }
}

fn check_host_port(a: &str) -> Result<(), String> {
    let (host, port) = a
        .rsplit_once(':')
        .ok_or_else(|| format!("`{a}` is not host:port"))?;
    if host.is_empty() {
        return Err(format!("`{a}` has no host"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("`{a}` has an invalid port"))?;
    if host.contains('/') || host.contains(' ') {
        return Err(format!("`{a}` is not host:port"));
    }
    Ok(())
}

/// A route's path in the canonical form requests are matched in (`/a//b` -> `/a/b`, `%7e` -> `~`), so
/// that a matcher written either way matches the same requests.
fn canonical_path(
    p: &str,
    src: &Source,
    at: &dyn Fn(&str) -> String,
) -> Result<String, ConfigError> {
    crate::canonical::normalize_path(p, config::EscapedSlashes::Keep)
        .map(|c| c.into_owned())
        .map_err(|e| src.err(at("path"), format!("`{p}`: {e}")))
}

/// `consumers[i].credentials.<kind>[0].<rest>` as it is written when the kind is one map, not a
/// list: `consumers[i].credentials.<kind>.<rest>`.
fn single_credential_field(field: &str) -> String {
    let Some((head, tail)) = field.split_once(".credentials.") else {
        return field.to_owned();
    };
    match tail.split_once("[0]") {
        Some((kind, rest)) if !kind.contains('.') => format!("{head}.credentials.{kind}{rest}"),
        _ => field.to_owned(),
    }
}

/// Replaces every secret written inline in `consumers` by the redaction mark (references to `env:`
/// and `file:` stay: they are not secrets).
fn scrub_inline_secrets(consumers: &mut [config::consumers::Consumer]) {
    use config::consumers::Secret;
    let scrub = |s: &mut Secret| {
        if s.reference().is_none() {
            *s = Secret::new(config::redact::REDACTED);
        }
    };
    for c in consumers {
        let creds = &mut c.credentials;
        creds.key_auth.iter_mut().for_each(|k| scrub(&mut k.key));
        creds
            .basic_auth
            .iter_mut()
            .for_each(|b| scrub(&mut b.password));
        for j in &mut creds.jwt_auth {
            j.secret.iter_mut().for_each(scrub);
        }
    }
}

fn compile_match(m: &config::Match, src: &Source, i: usize) -> Result<RouteMatch, ConfigError> {
    let at = |f: &str| format!("routes[{i}].match.{f}");
    let host = match &m.host {
        None => None,
        Some(h) => {
            let h = h.to_ascii_lowercase();
            let body = h.strip_prefix("*.").unwrap_or(&h);
            if body.is_empty() || body.contains('*') || body.contains('/') || body.contains(':') {
                return Err(src.err(
                    at("host"),
                    format!("`{h}` is not a host or `*.suffix` pattern"),
                ));
            }
            Some(h)
        }
    };
    let path = match &m.path {
        None => None,
        Some(PathMatch::Exact(p))
        | Some(PathMatch::Prefix(p))
        | Some(PathMatch::StringPrefix(p))
        | Some(PathMatch::Template(p))
            if !p.starts_with('/') =>
        {
            return Err(src.err(at("path"), format!("`{p}` must start with /")));
        }
        Some(PathMatch::Exact(p)) => Some(PathSpec::Exact(canonical_path(p, src, &at)?)),
        Some(PathMatch::Prefix(p)) => Some(PathSpec::Prefix(canonical_path(p, src, &at)?)),
        Some(PathMatch::StringPrefix(p)) => {
            Some(PathSpec::StringPrefix(canonical_path(p, src, &at)?))
        }
        Some(PathMatch::Template(p)) => Some(PathSpec::Template(canonical_path(p, src, &at)?)),
        Some(PathMatch::Regex(r)) => {
            regex::Regex::new(r)
                .map_err(|e| src.err(at("path.regex"), format!("invalid regex: {e}")))?;
            Some(PathSpec::Regex(r.clone()))
        }
    };
    if let Some(PathSpec::Template(t)) = &path {
        Router::new(vec![RouteMatch {
            host: None,
            path: Some(PathSpec::Template(t.clone())),
            methods: vec![],
            headers: vec![],
            query: vec![],
            client_cert: vec![],
        }])
        .map_err(|e| src.err(at("path.template"), e.0))?;
    }
    let mut methods = Vec::new();
    for (j, name) in m.methods.iter().enumerate() {
        let method = Method::from_bytes(name.to_ascii_uppercase().as_bytes()).map_err(|_| {
            src.err(
                at(&format!("methods[{j}]")),
                format!("`{name}` is not a method"),
            )
        })?;
        methods.push(method);
    }
    let mut headers = Vec::new();
    for (j, v) in m.headers.iter().enumerate() {
        let name = HeaderName::from_bytes(v.name.as_bytes()).map_err(|_| {
            src.err(
                at(&format!("headers[{j}].name")),
                format!("`{}` is not a header name", v.name),
            )
        })?;
        headers.push((name, value_test(v, src, &at(&format!("headers[{j}]")))?));
    }
    let mut client_cert = Vec::new();
    for (j, v) in m.client_cert.iter().enumerate() {
        let field = match v.name.as_str() {
            "subject" => crate::router::CertField::Subject,
            "san" => crate::router::CertField::San,
            other => {
                return Err(src.err(
                    at(&format!("client_cert[{j}].name")),
                    format!("`{other}` is not a certificate field; use `subject` or `san`"),
                ))
            }
        };
        client_cert.push((
            field,
            value_test(v, src, &at(&format!("client_cert[{j}]")))?,
        ));
    }
    let mut query = Vec::new();
    for (j, v) in m.query.iter().enumerate() {
        query.push((
            v.name.clone(),
            value_test(v, src, &at(&format!("query[{j}]")))?,
        ));
    }
    let (path, methods) = match &m.grpc {
        None => (path, methods),
        Some(g) => grpc_match(g, m, &mut headers, src, &at)?,
    };
    Ok(RouteMatch {
        host,
        path,
        methods,
        headers,
        query,
        client_cert,
    })
}

/// A `grpc:` matcher as the router takes it: `POST`, a gRPC content type (`application/grpc*`,
/// gRPC-Web's included), and the path `/<service>/<method>` (exact) or `/<service>/` (a string
/// prefix, any method of the service).
fn grpc_match(
    g: &config::GrpcMatch,
    m: &config::Match,
    headers: &mut Vec<(HeaderName, ValueTest)>,
    src: &Source,
    at: &dyn Fn(&str) -> String,
) -> Result<(Option<PathSpec>, Vec<Method>), ConfigError> {
    if m.path.is_some() || !m.methods.is_empty() {
        return Err(src.err(
            at("grpc"),
            "`grpc` sets the path and the method (POST); write no `path` or `methods` with it",
        ));
    }
    let ident = |s: &str| {
        s.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
    };
    if !ident(&g.service) {
        return Err(src.err(
            at("grpc.service"),
            format!(
                "`{}` is not a fully qualified service name like `pkg.v1.Service`",
                g.service
            ),
        ));
    }
    let path = match &g.method {
        Some(method) if method.contains('.') || !ident(method) => {
            return Err(src.err(
                at("grpc.method"),
                format!("`{method}` is not a method name like `GetBook`"),
            ));
        }
        Some(method) => PathSpec::Exact(format!("/{}/{method}", g.service)),
        None => PathSpec::StringPrefix(format!("/{}/", g.service)),
    };
    let content_type = regex::Regex::new(r"^(?i:application/grpc(-web(-text)?)?\s*([+;].*)?)$")
        .expect("a valid regex");
    headers.push((http::header::CONTENT_TYPE, ValueTest::Regex(content_type)));
    Ok((Some(path), vec![Method::POST]))
}

fn value_test(v: &config::ValueMatch, src: &Source, at: &str) -> Result<ValueTest, ConfigError> {
    match (&v.exact, &v.regex, v.present) {
        (Some(e), None, None) => Ok(ValueTest::Exact(e.clone())),
        (None, Some(r), None) => regex::Regex::new(&format!("^(?:{r})$"))
            .map(ValueTest::Regex)
            .map_err(|e| src.err(format!("{at}.regex"), format!("invalid regex: {e}"))),
        (None, None, Some(p)) => Ok(ValueTest::Present(p)),
        _ => Err(src.err(at, "write exactly one of `exact`, `regex` or `present`")),
    }
}

fn header_ops(ops: &config::HeaderOps, src: &Source, at: &str) -> Result<HeaderOps, ConfigError> {
    let name = |n: &str| {
        HeaderName::from_bytes(n.as_bytes())
            .map_err(|_| src.err(at, format!("`{n}` is not a valid header name")))
    };
    // Framing is the gateway's to write (a wrong `content-length` would desync the connection);
    // removing such a header is harmless.
    let written = |n: &str| {
        let name = name(n)?;
        if crate::framing::is_framing(&name) {
            return Err(src.err(
                at,
                format!("`{n}` frames the message; the gateway writes it from the body it sends"),
            ));
        }
        Ok(name)
    };
    let value = |n: &str, v: &str| {
        HeaderValue::from_str(v).map_err(|_| {
            src.err(
                at,
                format!("the value of `{n}` is not a valid header value"),
            )
        })
    };
    let mut out = HeaderOps::default();
    for n in &ops.remove {
        out.remove.push(name(n)?);
    }
    for (n, v) in &ops.set {
        out.set.push((written(n)?, value(n, v)?));
    }
    for (n, v) in &ops.add {
        out.add.push((written(n)?, value(n, v)?));
    }
    Ok(out)
}

fn compile_route(
    r: &config::Route,
    m: &RouteMatch,
    src: &Source,
    i: usize,
    upstreams: &HashMap<String, Arc<Cluster>>,
    metrics: &Metrics,
) -> Result<Route, ConfigError> {
    let at = |f: &str| format!("routes[{i}].{f}");
    let actions = usize::from(r.upstream.is_some())
        + usize::from(r.split.is_some())
        + usize::from(r.redirect.is_some())
        + usize::from(r.direct_response.is_some())
        + usize::from(r.function.is_some());
    if actions != 1 {
        return Err(src.err(
            at("name"),
            format!(
                "route `{}` needs exactly one of `upstream`, `split`, `redirect`, `direct_response` or `function`",
                r.name
            ),
        ));
    }
    let action = if let Some(u) = &r.upstream {
        let c = upstreams.get(u).ok_or_else(|| {
            src.err(
                at("upstream"),
                format!("unknown upstream `{u}`; define it under `upstreams`"),
            )
        })?;
        Action::Upstream(c.clone())
    } else if let Some(sp) = &r.split {
        Action::Split(Box::new(compile_split(sp, src, &at("split"), upstreams)?))
    } else if let Some(f) = &r.function {
        Action::Function(crate::wasm::function::FunctionSlot::new(f))
    } else if let Some(rd) = &r.redirect {
        if ![301, 302, 303, 307, 308].contains(&rd.status) {
            return Err(src.err(
                at("redirect.status"),
                "a redirect status is 301, 302, 303, 307 or 308",
            ));
        }
        if let Some(s) = &rd.scheme {
            if s != "http" && s != "https" {
                return Err(src.err(at("redirect.scheme"), "the scheme is http or https"));
            }
        }
        Action::Redirect(rd.clone())
    } else {
        let d = r.direct_response.as_ref().expect("counted above");
        let status = StatusCode::from_u16(d.status)
            .ok()
            .filter(|s| s.as_u16() >= 200)
            .ok_or_else(|| src.err(at("direct_response.status"), "not a final HTTP status code"))?;
        let ops = header_ops(
            &config::HeaderOps {
                set: d.headers.clone(),
                ..Default::default()
            },
            src,
            &at("direct_response.headers"),
        )?;
        let mut headers = http::HeaderMap::new();
        ops.apply(&mut headers);
        Action::Direct {
            status,
            body: bytes::Bytes::from(d.body.clone()),
            headers,
        }
    };
    let mut path_rewrite = None;
    let mut host_rewrite = None;
    if let Some(rw) = &r.rewrite {
        let n = usize::from(rw.strip_prefix.is_some())
            + usize::from(rw.path.is_some())
            + usize::from(rw.template.is_some());
        if n > 1 {
            return Err(src.err(
                at("rewrite"),
                "write at most one of `strip_prefix`, `path` or `template`",
            ));
        }
        if let Some(p) = &rw.strip_prefix {
            let p = canonical_path(p, src, &|_: &str| at("rewrite.strip_prefix"))?;
            path_rewrite = Some(PathRewrite::StripPrefix(p));
        }
        if let Some(p) = &rw.path {
            if !p.starts_with('/') {
                return Err(src.err(at("rewrite.path"), "must start with /"));
            }
            path_rewrite = Some(PathRewrite::Replace(p.clone()));
        }
        if let Some(t) = &rw.template {
            let Some(PathSpec::Template(mt)) = &m.path else {
                return Err(src.err(
                    at("rewrite.template"),
                    "needs a `match.path.template` to take parameters from",
                ));
            };
            for name in template_params(t) {
                if !template_params(mt).contains(&name) {
                    return Err(src.err(
                        at("rewrite.template"),
                        format!("`{{{name}}}` is not a parameter of the match template `{mt}`"),
                    ));
                }
            }
            path_rewrite = Some(PathRewrite::Template(t.clone()));
        }
        if let Some(h) = &rw.host {
            host_rewrite = Some(
                HeaderValue::from_str(h)
                    .map_err(|_| src.err(at("rewrite.host"), "not a valid host"))?,
            );
        }
    }
    check_grpc_route(r, &action, src, &at)?;
    let timeout = r.timeout.map_or(DEFAULT_ROUTE_TIMEOUT, |d| d.0);
    let stats = metrics.route(&r.name);
    let mirror = match &r.mirror {
        None => None,
        Some(_) if !matches!(action, Action::Upstream(_) | Action::Split(_)) => {
            return Err(src.err(
                at("mirror"),
                "a route mirrors what it forwards: it needs `upstream` or `split`",
            ));
        }
        Some(m) => {
            m.check()
                .map_err(|e| field_message(src, &at("mirror"), e))?;
            let c = upstreams.get(&m.upstream).ok_or_else(|| {
                src.err(
                    at("mirror.upstream"),
                    format!(
                        "unknown upstream `{}`; define it under `upstreams`",
                        m.upstream
                    ),
                )
            })?;
            Some(crate::proxy::mirror::Mirror::new(
                c.clone(),
                m,
                timeout,
                stats.clone(),
            ))
        }
    };
    Ok(Route {
        name: Arc::from(r.name.as_str()),
        action,
        path_rewrite,
        host_rewrite,
        request_headers: header_ops(&r.request_headers, src, &at("request_headers"))?,
        response_headers: header_ops(&r.response_headers, src, &at("response_headers"))?,
        timeout,
        retry: r.retry.clone().map(RetryPolicy::new),
        max_body_size: r.max_body_size.map(|s| s.0),
        stats,
        consumer_metrics: r.consumer_metrics,
        mirror,
        filters: std::sync::OnceLock::new(),
        upgrades: match &r.upgrades {
            None => crate::config::upgrades::Policy::new(&Default::default()),
            Some(u) => {
                u.check().map_err(|(field, message)| {
                    src.err(at(&format!("upgrades.{field}")), message)
                })?;
                crate::config::upgrades::Policy::new(u)
            }
        },
        grpc_web: r.grpc_web,
        transcode: match &r.grpc_transcode {
            None => None,
            Some(t) => Some(Arc::new(crate::transcode::load(
                t,
                src,
                &at("grpc_transcode"),
            )?)),
        },
    })
}

/// A route that converts to gRPC (`grpc_web`, `grpc_transcode`) forwards to HTTP/2 clusters only,
/// and a transcoded call keeps its gRPC path (no path rewrite).
fn check_grpc_route(
    r: &config::Route,
    action: &Action,
    src: &Source,
    at: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    let field = match (r.grpc_transcode.is_some(), r.grpc_web) {
        (true, _) => "grpc_transcode",
        (false, true) => "grpc_web",
        (false, false) => return Ok(()),
    };
    let clusters: Vec<&Arc<Cluster>> = match action {
        Action::Upstream(c) => vec![c],
        Action::Split(s) => s.clusters.iter().collect(),
        _ => return Err(src.err(
            at(field),
            "a gRPC conversion forwards to a gRPC server: the route needs `upstream` or `split`",
        )),
    };
    if let Some(c) = clusters
        .iter()
        .find(|c| c.protocol != config::Protocol::Http2)
    {
        return Err(src.err(
            at(field),
            format!(
                "upstream `{}` speaks HTTP/1.1; gRPC needs `protocol: http2` on it",
                c.name
            ),
        ));
    }
    let rewrites_path = r
        .rewrite
        .as_ref()
        .is_some_and(|rw| rw.path.is_some() || rw.strip_prefix.is_some() || rw.template.is_some());
    if r.grpc_transcode.is_some() && rewrites_path {
        return Err(src.err(
            at("grpc_transcode"),
            "a transcoded call goes to its method's gRPC path: the route cannot also rewrite the path",
        ));
    }
    Ok(())
}

/// An error `field: message` of a check under `at` as the error of the field `at.field`.
fn field_message(src: &Source, at: &str, e: String) -> ConfigError {
    match e.split_once(": ") {
        Some((field, message)) => {
            let sep = if field.starts_with('[') { "" } else { "." };
            src.err(format!("{at}{sep}{field}"), message)
        }
        None => src.err(at, e),
    }
}

/// A route's `split`, its upstreams resolved: those of its weights in order, then those only its
/// rules name.
fn compile_split(
    sp: &config::traffic::Split,
    src: &Source,
    at: &str,
    upstreams: &HashMap<String, Arc<Cluster>>,
) -> Result<Split, ConfigError> {
    sp.check().map_err(|e| field_message(src, at, e))?;
    let mut clusters: Vec<Arc<Cluster>> = Vec::with_capacity(sp.weights.len());
    let mut index = |name: &str, field: String| {
        let c = upstreams.get(name).ok_or_else(|| {
            src.err(
                field,
                format!("unknown upstream `{name}`; define it under `upstreams`"),
            )
        })?;
        Ok::<usize, ConfigError>(match clusters.iter().position(|x| Arc::ptr_eq(x, c)) {
            Some(i) => i,
            None => {
                clusters.push(c.clone());
                clusters.len() - 1
            }
        })
    };
    let mut weights = Vec::with_capacity(sp.weights.len());
    for (j, w) in sp.weights.iter().enumerate() {
        index(&w.upstream, format!("{at}.weights[{j}].upstream"))?;
        weights.push(w.weight);
    }
    let mut rules = Vec::with_capacity(sp.rules.len());
    for (j, r) in sp.rules.iter().enumerate() {
        let rat = format!("{at}.rules[{j}]");
        let cluster = index(&r.upstream, format!("{rat}.upstream"))?;
        let (key, name) = match r.key().map_err(|e| field_message(src, &rat, e))? {
            config::traffic::RuleKey::Header(h) => {
                let name = HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                    src.err(
                        format!("{rat}.header"),
                        format!("`{h}` is not a header name"),
                    )
                })?;
                (split::RuleKey::Header(name), h)
            }
            config::traffic::RuleKey::Cookie(c) => (split::RuleKey::Cookie(c.to_owned()), c),
        };
        let test = value_test(&r.value_match(name), src, &rat)?;
        rules.push(split::Rule { key, test, cluster });
    }
    Ok(Split::new(clusters, &weights, rules))
}

/// Parameter names in a template (`{id}`, `{*rest}` as `rest`).
pub fn template_params(t: &str) -> Vec<String> {
    t.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|s| s.trim_start_matches('*').to_owned())
        .collect()
}

/// A digest of the contents of the files an upstream's TLS config names (a file that cannot be read
/// counts as empty: building the cluster then reports it).
fn tls_files_digest(src: &Source, u: &config::Upstream) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    if let Some(t) = &u.tls {
        let files = t.ca.iter().chain(
            t.client_cert
                .iter()
                .flat_map(|c| [&c.cert, &c.key].into_iter()),
        );
        for f in files {
            let bytes = std::fs::read(crate::tls::resolve(src, f)).unwrap_or_default();
            h.update(Sha256::digest(bytes));
        }
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn build(yaml: &str) -> Result<Runtime, ConfigError> {
        let path = Path::new("test.yaml");
        let cfg = Config::parse(path, yaml)?;
        let src = Source {
            path: path.into(),
            text: Some(yaml.into()),
        };
        Runtime::build(cfg, &src, &Metrics::default())
    }

    const BASE: &str = "listeners:\n  - name: main\n    address: 127.0.0.1:0\n";

    #[test]
    fn unknown_upstream_names_line_and_field() {
        let yaml = format!("{BASE}routes:\n  - name: r\n    upstream: nope\n");
        let err = build(&yaml).err().unwrap();
        assert_eq!(err.field, "routes[0].upstream");
        assert_eq!(err.location, Some((6, 5)));
        let text = err.to_string();
        assert!(
            text.starts_with("test.yaml:6:5: routes[0].upstream: unknown upstream `nope`"),
            "{text}"
        );
    }

    #[test]
    fn unknown_field_and_bad_duration_are_located() {
        let err = build(&format!("{BASE}    limits: {{idle_timeout: 5x}}\n"))
            .err()
            .unwrap();
        assert_eq!(err.field, "listeners[0].limits.idle_timeout");
        assert!(err.message.contains("unknown unit"), "{}", err.message);
        assert_eq!(err.location.map(|l| l.0), Some(4));
        let err = build(&format!("{BASE}    bogus: 1\n")).err().unwrap();
        assert!(
            err.message.contains("unknown field `bogus`"),
            "{}",
            err.message
        );
        assert_eq!(err.location.map(|l| l.0), Some(4));
    }

    #[test]
    fn the_effective_config_reads_back_as_the_same_config() {
        let yaml = format!(
            "{BASE}upstreams:\n  - name: a\n    endpoints: [127.0.0.1:1]\n    balancer: {{consistent_hash: {{client_ip: true}}}}\n  - name: b\n    endpoints: [127.0.0.1:2]\n    balancer: {{consistent_hash: {{header: x-user}}}}\n  - name: c\n    endpoints: [127.0.0.1:3]\n    balancer: least_request\n"
        );
        let rt = build(&yaml).unwrap();
        let json = serde_json::to_string(&rt.config).unwrap();
        let back = Config::parse(Path::new("back.json"), &json).unwrap();
        assert_eq!(back.upstreams, rt.config.upstreams);
    }

    #[test]
    fn semantic_checks() {
        let cases = [
            ("routes:\n  - name: r\n", "exactly one of"),
            ("routes:\n  - name: r\n    direct_response: {status: 200}\n  - name: r\n    direct_response: {}\n", "defined twice"),
            ("routes:\n  - name: r\n    match: {path: {regex: '('}}\n    direct_response: {}\n", "invalid regex"),
            ("routes:\n  - name: r\n    match: {path: {prefix: api}}\n    direct_response: {}\n", "must start with /"),
            ("routes:\n  - name: r\n    match: {headers: [{name: x, exact: a, present: true}]}\n    direct_response: {}\n", "exactly one of `exact`"),
            ("routes:\n  - name: r\n    rewrite: {template: '/x/{id}'}\n    direct_response: {}\n", "needs a `match.path.template`"),
            ("upstreams:\n  - name: u\n    endpoints: []\n", "at least one endpoint"),
            ("upstreams:\n  - name: u\n    endpoints: [nohost]\n", "not host:port"),
            ("admin: {address: 0.0.0.0:9901}\n", "admin.token"),
            ("routes:\n  - name: r\n    listeners: [other]\n    direct_response: {}\n", "unknown listener"),
        ];
        for (extra, want) in cases {
            let err = build(&format!("{BASE}{extra}"))
                .err()
                .unwrap_or_else(|| panic!("accepted: {extra}"));
            assert!(err.to_string().contains(want), "{extra}: {err}");
        }
        assert!(build(&format!(
            "{BASE}admin: {{address: 0.0.0.0:9901, token: s3cret}}\n"
        ))
        .is_ok());
    }
}
