//! The built-in `ext-auth` plugin through the real gateway: a real auth service (a small hyper server
//! in the test) decides, the route's upstream is a mock that counts hits. The plugin is named by a
//! route without a path; a `plugins:` entry without a source grants it the auth upstreams.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the auth service saw it.
#[derive(Clone, Debug)]
struct AuthSeen {
    method: http::Method,
    uri: String,
    headers: http::HeaderMap,
    body: Bytes,
}

/// The auth service: `authorization: Bearer good` gets 200 with `x-user-id: ann`, anything else 401
/// with a `www-authenticate` challenge; `/body` allows the body `let me in`; `/slow` waits 2 s.
struct AuthServer {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<AuthSeen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> http::Response<Full<Bytes>> {
    let mut b = http::Response::builder().status(status);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
}

async fn decide(
    req: http::Request<hyper::body::Incoming>,
    seen: Arc<Mutex<Vec<AuthSeen>>>,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    seen.lock().unwrap().push(AuthSeen {
        method: parts.method.clone(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let allow = [("x-user-id", "ann")];
    match parts.uri.path() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            answer(200, &allow, "")
        }
        "/body" if &body[..] == b"let me in" => answer(200, &allow, ""),
        "/body" => answer(403, &[("content-type", "text/plain")], "no\n"),
        _ if parts
            .headers
            .get("authorization")
            .is_some_and(|v| v == "Bearer good") =>
        {
            answer(
                200,
                &[("x-user-id", "ann"), ("x-auth-debug", "internal")],
                "ok",
            )
        }
        _ => answer(
            401,
            &[
                ("www-authenticate", r#"Bearer realm="api""#),
                ("content-type", "text/plain"),
                ("x-auth-debug", "internal"),
            ],
            "unauthorized\n",
        ),
    }
}

impl AuthServer {
    async fn start() -> AuthServer {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = tcp.accept().await else {
                    continue;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let log = log.clone();
                        async move { Ok::<_, std::convert::Infallible>(decide(req, log).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        AuthServer { addr, seen, task }
    }

    fn seen(&self) -> Vec<AuthSeen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A gateway whose routes use the built-in plugin: `/strict` asks the auth service, `/down` and
/// `/degraded` an auth upstream nobody listens on (the second with `allow_degradation`), `/slow` one
/// that answers too late for its `timeout_ms`, `/body` sends the request body.
async fn setup() -> (TestGateway, MockUpstream, AuthServer) {
    let up = MockUpstream::start("up").await;
    let auth = AuthServer::start().await;
    let route = |name: &str, config: &str| {
        Route::new(name)
            .prefix(&format!("/{name}"))
            .upstream("up")
            .lines(&format!(
                "    filters: [{{plugin: ext-auth, config: {{{config}}}}}]\n"
            ))
    };
    let config = GatewayConfig::new()
        .upstream(Upstream::new("up").endpoint(up.addr))
        .upstream(Upstream::new("auth").endpoint(auth.addr))
        .upstream(Upstream::new("auth-down").endpoint(format!("127.0.0.1:{}", free_port())))
        .route(route(
            "strict",
            "upstream: auth, path: /verify, upstream_headers: [x-user-id]",
        ))
        .route(route(
            "down",
            "upstream: auth-down, upstream_headers: [x-user-id]",
        ))
        .route(route(
            "degraded",
            "upstream: auth-down, upstream_headers: [x-user-id], allow_degradation: true",
        ))
        .route(route("slow", "upstream: auth, path: /slow, timeout_ms: 200"))
        .route(route(
            "body",
            "upstream: auth, path: /body, method: POST, request_body: true, upstream_headers: [x-user-id]",
        ))
        .yaml();
    // No path: the entry gives the built-in plugin its grants.
    let grant = "plugins:\n  - name: ext-auth\n    capabilities: {upstreams: [auth, auth-down]}\n";
    let gw = TestGateway::start(&format!("{grant}{config}")).await;
    (gw, up, auth)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_request_reaches_the_upstream_with_the_auth_services_headers() {
    let (gw, up, auth) = setup().await;
    let (s, h, body) = get_with(
        &gw.url("/strict/items?page=2"),
        &[("authorization", "Bearer good"), ("x-user-id", "mallory")],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(hv(&h, "x-upstream"), "up");
    assert_eq!(hv(&h, "x-auth-debug"), "");

    // The upstream got the auth service's user, not the client's, and nothing else of the answer.
    let got = up.last();
    assert_eq!(values(&got.headers, "x-user-id"), ["ann"]);
    assert_eq!(hv(&got.headers, "authorization"), "Bearer good");
    assert_eq!(hv(&got.headers, "x-auth-debug"), "");

    // The auth service was told what the request is, and got only the listed client headers.
    let asked = auth.seen();
    assert_eq!(asked.len(), 1);
    let a = &asked[0];
    assert_eq!((a.method.as_str(), a.uri.as_str()), ("GET", "/verify"));
    assert_eq!(hv(&a.headers, "authorization"), "Bearer good");
    assert_eq!(hv(&a.headers, "x-forwarded-method"), "GET");
    assert_eq!(hv(&a.headers, "x-forwarded-uri"), "/strict/items?page=2");
    assert_eq!(hv(&a.headers, "x-forwarded-host"), gw.addr.to_string());
    assert_eq!(hv(&a.headers, "x-forwarded-proto"), "http");
    assert_eq!(hv(&a.headers, "x-forwarded-for"), "127.0.0.1");
    assert_eq!(hv(&a.headers, "x-user-id"), "");
    // One request id for the auth call and the upstream request.
    assert!(!hv(&a.headers, "x-request-id").is_empty());
    assert_eq!(
        hv(&a.headers, "x-request-id"),
        hv(&got.headers, "x-request-id")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_request_gets_the_auth_services_answer_and_never_reaches_the_upstream() {
    let (gw, up, _auth) = setup().await;
    for creds in [&[("authorization", "Bearer bad")][..], &[]] {
        let (s, h, body) = get_with(&gw.url("/strict/items"), creds).await;
        assert_eq!(s, 401);
        assert_eq!(hv(&h, "www-authenticate"), r#"Bearer realm="api""#);
        assert_eq!(hv(&h, "content-type"), "text/plain");
        assert_eq!(hv(&h, "x-auth-debug"), "");
        assert_eq!(body, "unauthorized\n");
    }
    assert_eq!(up.hits(), 0);
    let series = r#"plugin_ext_auth_denied_total{plugin="ext-auth"}"#;
    assert_eq!(metric(&gw.metrics().await, series), Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_service_that_is_down_is_a_503_with_a_stable_code() {
    let (gw, up, _auth) = setup().await;
    let (s, h, body) = get_with(&gw.url("/down/items"), &[("authorization", "Bearer good")]).await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(hv(&h, "content-type"), "application/json");
    let v = json(&body);
    assert_eq!(v["error"], "auth_unavailable");
    // The gateway's request id, as in its own error bodies.
    assert_eq!(values(&h, "x-request-id").len(), 1);
    let id = hv(&h, "x-request-id");
    assert_eq!(id.len(), 16, "{body}");
    assert_eq!(v["request_id"], id.as_str());
    assert_eq!(up.hits(), 0);

    // Too late is the same as not at all: the call is cut at `timeout_ms`.
    let start = Instant::now();
    let (s, _, body) = get_with(&gw.url("/slow/items"), &[]).await;
    assert_eq!(s, 503);
    assert_eq!(json(&body)["error"], "auth_unavailable");
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_degradation_lets_requests_through_when_the_auth_service_is_down() {
    let (gw, up, _auth) = setup().await;
    let (s, h, body) = get_with(
        &gw.url("/degraded/items"),
        &[("authorization", "Bearer good"), ("x-user-id", "mallory")],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(hv(&h, "x-upstream"), "up");
    assert_eq!(up.hits(), 1);
    // Unchecked, so the upstream gets no user at all, and never the client's.
    assert_eq!(
        values(&up.last().headers, "x-user-id"),
        Vec::<String>::new()
    );
    let series = r#"plugin_ext_auth_degraded_total{plugin="ext-auth"}"#;
    assert_eq!(metric(&gw.metrics().await, series), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_sends_the_whole_body_to_the_auth_service() {
    let (gw, up, auth) = setup().await;
    let post = |body: &'static str| {
        http::Request::post(gw.url("/body/transfers"))
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    let (s, _, _) = request(post("let me in")).await;
    assert_eq!(s, 200);
    let got = up.last();
    assert_eq!(&got.body[..], b"let me in");
    assert_eq!(values(&got.headers, "x-user-id"), ["ann"]);
    let a = auth.seen().pop().unwrap();
    assert_eq!(
        (a.method.as_str(), &a.body[..]),
        ("POST", &b"let me in"[..])
    );
    assert_eq!(hv(&a.headers, "content-type"), "text/plain");
    assert_eq!(hv(&a.headers, "x-forwarded-method"), "POST");

    let (s, _, body) = request(post("nope")).await;
    assert_eq!((s, body.as_str()), (403, "no\n"));
    assert_eq!(up.hits(), 1);

    // A chunked body is announced by Transfer-Encoding, which the filter sees (hop-by-hop headers
    // other than what Connection names go only when forwarding): one call, with the body.
    let calls = auth.seen().len();
    let chunked = b"POST /body/transfers HTTP/1.1\r\nHost: x\r\ncontent-type: text/plain\r\n\
        transfer-encoding: chunked\r\nconnection: close\r\n\r\n9\r\nlet me in\r\n0\r\n\r\n";
    let text = raw(gw.addr, chunked, std::time::Duration::from_secs(5)).await;
    assert_eq!(status_of(&text), 200, "{text}");
    let seen = auth.seen();
    assert_eq!(seen.len(), calls + 1, "one call, with the body");
    assert_eq!(&seen.last().unwrap().body[..], b"let me in");
    assert_eq!(&up.last().body[..], b"let me in");
}
