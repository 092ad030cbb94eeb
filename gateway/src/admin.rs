//! The admin API: `/healthz`, `/readyz`, `/metrics`, `/config` (GET shows the running config, PUT
//! applies a new one), `/reload` (POST reads the config file again, GET shows the last reload),
//! `/plugins` (each plugin's hash, source, routes, instances, calls, failures and last reload), `/cache`
//! (DELETE purges cached responses). Loopback
//! by default; when a token is configured (required off loopback) every request must carry
//! `Authorization: Bearer <token>`.

use crate::body::{self, Body};
use crate::errors::json_error;
use crate::proxy::Shared;
use crate::reload::{ReloadError, Reloader, Report, Trigger};
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The largest config accepted by `PUT /config`; larger bodies get 413. Default: 16MiB.
pub const MAX_CONFIG_BODY: usize = 16 << 20;

/// Whether `authorization` carries the bearer token `token`: the scheme in any case (RFC 9110
/// section 11.1), the token compared in time that depends only on its length (subtle's
/// constant-time comparison).
pub fn bearer_matches(authorization: Option<&header::HeaderValue>, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    let Some((scheme, given)) = authorization
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
    else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && bool::from(given.trim_start().as_bytes().ct_eq(token.as_bytes()))
}

/// Serves the admin API until `stop` fires. The admin listener has limits of its own, so that it
/// cannot take what the data plane needs: at most `max_connections` connections (more are closed as
/// soon as accepted), a head must arrive within `header_read_timeout`, and a failed accept (out of
/// descriptors) waits a moment instead of spinning.
pub async fn serve(
    tcp: TcpListener,
    shared: Arc<Shared>,
    admin: crate::config::Admin,
    draining: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
    reloader: Arc<Reloader>,
) {
    let token: Option<Arc<str>> = admin.token.clone().map(Arc::from);
    let public_health = admin.public_health;
    let permits = Arc::new(tokio::sync::Semaphore::new(admin.max_connections.max(1)));
    let head_timeout = admin.header_read_timeout.0;
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.changed() => return,
            r = tcp.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!("admin max_connections reached; closing a new connection");
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        let token = token.clone();
        let draining = draining.clone();
        let reloader = reloader.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                let token = token.clone();
                let draining = draining.clone();
                let reloader = reloader.clone();
                async move {
                    let auth = Auth {
                        token: token.as_deref(),
                        public_health,
                    };
                    let resp = answer(req, &shared, auth, &draining, &reloader).await;
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(head_timeout)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            drop(permit);
        });
    }
}

/// Who may ask what: the token every request must carry when one is set, except `/healthz` and
/// `/readyz` when `public_health` says so.
#[derive(Clone, Copy)]
struct Auth<'a> {
    token: Option<&'a str>,
    public_health: bool,
}

async fn answer(
    req: Request<Incoming>,
    shared: &Shared,
    auth: Auth<'_>,
    draining: &AtomicBool,
    reloader: &Reloader,
) -> Response<Body> {
    let health = req.method() == Method::GET && matches!(req.uri().path(), "/healthz" | "/readyz");
    if let Some(t) = auth.token.filter(|_| !(health && auth.public_health)) {
        if !bearer_matches(req.headers().get(header::AUTHORIZATION), t) {
            return json_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid admin token is required",
            );
        }
    }
    let text = |status: StatusCode, ctype: &'static str, s: String| {
        let mut r = Response::new(body::full(s));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(ctype),
        );
        r
    };
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/readyz") => {
            if draining.load(Ordering::SeqCst) {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "draining\n".into(),
                )
            } else {
                text(StatusCode::OK, "text/plain", "ready\n".into())
            }
        }
        (&Method::GET, "/metrics") => text(StatusCode::OK, "text/plain; version=0.0.4", {
            let mut e = crate::metrics::Exposition::default();
            shared.metrics.expose(&mut e);
            shared.plugins.expose_metrics(&mut e);
            e.render()
        }),
        (&Method::GET, "/config") => {
            let rt = shared.runtime.load();
            // Shown without secrets (see `config::redact`).
            match crate::config::redact::view(&rt.config)
                .and_then(|v| serde_json::to_string_pretty(&v))
            {
                Ok(s) => text(StatusCode::OK, "application/json", s + "\n"),
                Err(e) => json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    &e.to_string(),
                ),
            }
        }
        // The config's JSON Schema, as `gateway config schema` writes it, for editors pointed at a
        // running gateway.
        (&Method::GET, "/config/schema") => {
            static SCHEMA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let schema = SCHEMA.get_or_init(crate::config::schema::config_schema_text);
            text(StatusCode::OK, "application/schema+json", schema.clone())
        }
        (&Method::PUT, "/config") => {
            let limited = http_body_util::Limited::new(req.into_body(), MAX_CONFIG_BODY);
            let bytes = match limited.collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return json_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        &format!("a config is at most {MAX_CONFIG_BODY} bytes"),
                    )
                }
                Err(e) => {
                    return json_error(StatusCode::BAD_REQUEST, "bad_request", &e.to_string())
                }
            };
            let Ok(text) = String::from_utf8(bytes.to_vec()) else {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the config must be UTF-8 YAML or JSON",
                );
            };
            reload_response(reloader.reload_text(Trigger::PutConfig, text).await)
        }
        (&Method::POST, "/reload") => reload_response(reloader.reload_file(Trigger::Admin).await),
        (&Method::GET, "/reload") => {
            let body = serde_json::json!({
                "file": reloader.file().display().to_string(),
                "generation": reloader.generation(),
                "last": reloader.last(),
            });
            text(StatusCode::OK, "application/json", format!("{body:#}\n"))
        }
        (&Method::GET, "/plugins") => {
            let rt = shared.runtime.load();
            let (plugins, functions, cache) = match shared.plugins.services() {
                Some(s) => (
                    s.describe(&rt),
                    s.functions.describe(&rt),
                    s.cache_figures(),
                ),
                None => (Vec::new(), Vec::new(), serde_json::Value::Null),
            };
            let body = serde_json::json!({
                "plugins": plugins,
                "functions": functions,
                "cache": cache,
                "live_plugins": crate::wasm::live_plugins(),
                "live_instances": crate::wasm::live_instances(),
                "last_reload": reloader.last(),
            });
            text(StatusCode::OK, "application/json", format!("{body:#}\n"))
        }
        (&Method::GET, "/routes/openapi.json") => {
            // `?listener=NAME`: the routes of one listener; every route without it.
            let listener = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .find(|(k, _)| k == "listener")
                .map(|(_, v)| v.into_owned());
            let rt = shared.runtime.load();
            match crate::openapi::document(&rt.config, listener.as_deref()) {
                Ok(doc) => text(StatusCode::OK, "application/json", format!("{doc:#}\n")),
                Err(e) => json_error(StatusCode::NOT_FOUND, "no_such_listener", &e),
            }
        }
        (&Method::DELETE, "/cache") => purge_cache(req.uri().query(), shared),
        (_, "/cache") => json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use DELETE (with plugin, host and path to narrow it) to purge cached responses",
        ),
        (
            _,
            "/healthz"
            | "/readyz"
            | "/metrics"
            | "/plugins"
            | "/routes/openapi.json"
            | "/config/schema",
        ) => json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use GET",
        ),
        (_, "/config") => json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use GET, or PUT with a new config",
        ),
        (_, "/reload") => json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use POST to reload, GET for the last result",
        ),
        _ => json_error(StatusCode::NOT_FOUND, "not_found", "unknown admin path"),
    }
}

/// `DELETE /cache?plugin=NAME&host=HOST&path=/PATH`: removes the cached responses (WIT `cache`) of
/// that plugin, host and path, each optional (all of them when none is given): every variant, method
/// and query of the URL. 200 with what was removed; 400 for another parameter or one given twice.
fn purge_cache(query: Option<&str>, shared: &Shared) -> Response<Body> {
    let (mut plugin, mut host, mut path) = (None, None, None);
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let slot = match &*k {
            "plugin" => &mut plugin,
            "host" => &mut host,
            "path" => &mut path,
            other => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &format!("unknown parameter `{other}`: use plugin, host and path"),
                )
            }
        };
        if slot.replace(v.into_owned()).is_some() {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("`{k}` is given twice"),
            );
        }
    }
    let purged = match shared.plugins.services() {
        Some(s) => s
            .host
            .cache
            .purge(plugin.as_deref(), host.as_deref(), path.as_deref()),
        None => crate::host::Purged::default(),
    };
    let body = serde_json::json!({
        "purged": {"entries": purged.entries, "bytes": purged.bytes},
        "plugin": plugin,
        "host": host,
        "path": path,
    });
    let mut resp = Response::new(body::full(format!("{body:#}\n")));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// 200 with the report, or 400 `{"error":"reload_failed","message":...}` with the located field.
fn reload_response(r: Result<Report, ReloadError>) -> Response<Body> {
    let (status, body) = match r {
        Ok(report) => (
            StatusCode::OK,
            serde_json::to_value(&report).unwrap_or_default(),
        ),
        Err(ReloadError::Config(e)) => (
            StatusCode::BAD_REQUEST,
            serde_json::json!({
                "error": "reload_failed",
                "message": e.to_string(),
                "file": e.file.display().to_string(),
                "line": e.location.map(|l| l.0),
                "column": e.location.map(|l| l.1),
                "field": e.field,
            }),
        ),
        Err(e @ ReloadError::Internal(_)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error": "reload_failed", "message": e.to_string()}),
        ),
    };
    let mut resp = Response::new(body::full(format!("{body:#}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::bearer_matches;
    use http::HeaderValue;

    #[test]
    fn token_comparison() {
        let ok = |v: &str| bearer_matches(Some(&HeaderValue::from_str(v).unwrap()), "secret");
        assert!(ok("Bearer secret"));
        assert!(ok("bearer secret"));
        assert!(ok("BEARER  secret"));
        assert!(!ok("Bearer secreT"));
        assert!(!ok("Bearer secre"));
        assert!(!ok("Basic secret"));
        assert!(!ok("Bearersecret"));
        assert!(!bearer_matches(None, "secret"));
    }
}
