//! The admin API: `/healthz`, `/readyz`, `/metrics`, `/config`. Loopback by default; when a token is
//! configured (required off loopback) every request must carry `Authorization: Bearer <token>`.

use crate::body::{self, Body};
use crate::errors::json_error;
use crate::proxy::Shared;
use http::{header, Method, Request, Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves the admin API until `stop` fires.
pub async fn serve(
    tcp: TcpListener,
    shared: Arc<Shared>,
    token: Option<String>,
    draining: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let token: Option<Arc<str>> = token.map(Arc::from);
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.changed() => return,
            r = tcp.accept() => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        let shared = shared.clone();
        let token = token.clone();
        let draining = draining.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let resp = answer(&req, &shared, token.as_deref(), &draining);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn answer<B>(
    req: &Request<B>,
    shared: &Shared,
    token: Option<&str>,
    draining: &AtomicBool,
) -> Response<Body> {
    if let Some(t) = token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), t.as_bytes()) {
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
    match (req.method(), req.uri().path()) {
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
        (&Method::GET, "/metrics") => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            shared.metrics.render(),
        ),
        (&Method::GET, "/config") => {
            let rt = shared.runtime.load();
            match serde_json::to_string_pretty(&rt.config) {
                Ok(s) => text(StatusCode::OK, "application/json", s + "\n"),
                Err(e) => json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    &e.to_string(),
                ),
            }
        }
        (_, "/healthz" | "/readyz" | "/metrics" | "/config") => json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use GET",
        ),
        _ => json_error(StatusCode::NOT_FOUND, "not_found", "unknown admin path"),
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secre"));
    }
}
