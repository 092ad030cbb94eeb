//! The built-in `json-xml` plugin through the real gateway, in front of a mock XML and SOAP service
//! (a small hyper server in the test that records what it was sent): JSON clients of an XML
//! backend, an XML client of a JSON backend, SOAP 1.1 and 1.2 calls and faults, and malformed,
//! hostile and oversized bodies.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the service saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: http::Method,
    path: String,
    headers: http::HeaderMap,
    body: String,
}

/// The XML and SOAP service, by path:
/// - `/orders`: an order in XML;
/// - `/soap11`, `/soap12`: `GetUser` answered in an envelope of that version; the user `99` is a
///   client fault and `0` a server fault;
/// - `/json-echo`: the request body back as JSON;
/// - `/lol`, `/xxe`: a billion laughs and an external entity document;
/// - `/big`: 64 KiB of XML.
struct XmlService {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for XmlService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";

const BILLION_LAUGHS: &str = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<user><name>&lol9;</name></user>"#;

const XXE: &str = r#"<?xml version="1.0"?>
<!DOCTYPE user [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<user><name>&xxe;</name></user>"#;

/// The text of the first `<id>` in `body`.
fn id_in(body: &str) -> &str {
    body.split_once("<id>")
        .and_then(|(_, rest)| rest.split_once("</id>"))
        .map_or("", |(id, _)| id)
}

fn soap_answer(version: &str, body: &str) -> (u16, String, String) {
    let id = id_in(body);
    let (ns, content_type) = match version {
        "1.1" => (SOAP11, "text/xml; charset=utf-8"),
        _ => (SOAP12, "application/soap+xml; charset=utf-8"),
    };
    let inner = match (version, id) {
        ("1.1", "99") => "<s:Fault><faultcode>s:Client</faultcode><faultstring>no user with id 99</faultstring><detail><UserFault><id>99</id></UserFault></detail></s:Fault>".to_string(),
        ("1.1", "0") => "<s:Fault><faultcode>s:Server</faultcode><faultstring>database down</faultstring></s:Fault>".to_string(),
        (_, "99") => "<s:Fault><s:Code><s:Value>s:Sender</s:Value></s:Code><s:Reason><s:Text xml:lang=\"en\">no user with id 99</s:Text></s:Reason></s:Fault>".to_string(),
        (_, "0") => "<s:Fault><s:Code><s:Value>s:Receiver</s:Value></s:Code><s:Reason><s:Text xml:lang=\"en\">database down</s:Text></s:Reason></s:Fault>".to_string(),
        (_, id) => format!(
            "<u:GetUserResponse xmlns:u=\"urn:example:users\"><u:user><u:id>{id}</u:id>\
             <u:name>User {id}</u:name></u:user></u:GetUserResponse>"
        ),
    };
    let status = if inner.contains("Fault") { 500 } else { 200 };
    (
        status,
        content_type.into(),
        format!(
            "<?xml version=\"1.0\"?>\n<s:Envelope xmlns:s=\"{ns}\">\n  <s:Body>{inner}</s:Body>\n</s:Envelope>\n"
        ),
    )
}

async fn answer(
    req: http::Request<hyper::body::Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let path = parts.uri.path().to_string();
    seen.lock().unwrap().push(Seen {
        method: parts.method,
        path: path.clone(),
        headers: parts.headers,
        body: body.clone(),
    });
    let (status, content_type, text) = match path.as_str() {
        "/orders" => (
            200,
            "text/xml".to_string(),
            "<order>\n  <id>42</id>\n  <status>new</status>\n  <line>Pen</line>\n</order>\n"
                .to_string(),
        ),
        "/soap11" => soap_answer("1.1", &body),
        "/soap12" => soap_answer("1.2", &body),
        "/json-echo" => (200, "application/json".into(), body),
        "/lol" => (200, "application/xml".into(), BILLION_LAUGHS.into()),
        "/xxe" => (200, "application/xml".into(), XXE.into()),
        "/big" => (
            200,
            "application/xml".into(),
            format!("<a>{}</a>", "x".repeat(64 * 1024)),
        ),
        _ => (404, "text/plain".into(), "not found\n".into()),
    };
    http::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(text)))
        .unwrap()
}

impl XmlService {
    async fn start() -> XmlService {
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
                        async move { Ok::<_, std::convert::Infallible>(answer(req, log).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
                });
            }
        });
        XmlService { addr, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn last(&self) -> Seen {
        self.seen().pop().expect("the service saw a request")
    }
}

/// Sends `method` with a body and headers.
async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    request(b.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await
}

async fn post_json(url: &str, body: &str) -> Resp {
    send("POST", url, &[("content-type", "application/json")], body).await
}

/// A route `/{path}` to the service with json-xml configured by `config` (a YAML flow map's inside).
fn route(path: &str, config: &str) -> Route {
    Route::new(path)
        .prefix(&format!("/{path}"))
        .upstream("svc")
        .lines(&format!(
            "    filters: [{{plugin: json-xml, config: {{{config}}}}}]\n"
        ))
}

/// Asserts the gateway's error shape with `code` and a message containing `message`, and that its
/// request id is the response's.
fn assert_error(resp: &Resp, status: u16, code: &str, message: &str) {
    let (s, h, body) = resp;
    assert_eq!(*s, status, "{body}");
    assert_eq!(hv(h, "content-type"), "application/json", "{body}");
    let j = json(body);
    assert_eq!(j["error"], code, "{body}");
    assert!(
        j["message"].as_str().unwrap().contains(message),
        "{message:?} not in {body}"
    );
    assert_eq!(j["request_id"], hv(h, "x-request-id"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_clients_of_an_xml_backend_and_back() {
    let svc = XmlService::start().await;
    let config = GatewayConfig::new()
        .upstream(Upstream::new("svc").endpoint(svc.addr))
        .route(route(
            "orders",
            r#"root: order, infer_types: true, array_paths: ["/line"]"#,
        ))
        .route(route(
            "json-echo",
            "request: xml_to_json, response: json_to_xml, root: user",
        ))
        .yaml();
    let gw = TestGateway::start(&config).await;

    // JSON in, XML to the backend (members in the JSON's order), XML answer out as JSON.
    let (s, h, body) = send(
        "POST",
        &gw.url("/orders"),
        &[
            ("content-type", "application/json"),
            ("accept-encoding", "gzip"),
        ],
        r#"{"qty": 2, "item": ["Pen", "Ink & nib"], "@ref": "A-1"}"#,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let seen = svc.last();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/orders")
    );
    assert_eq!(
        seen.body,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><order ref=\"A-1\"><qty>2</qty><item>Pen</item>\
         <item>Ink &amp; nib</item></order>"
    );
    assert_eq!(
        hv(&seen.headers, "content-type"),
        "application/xml; charset=utf-8"
    );
    assert_eq!(
        hv(&seen.headers, "content-length"),
        seen.body.len().to_string()
    );
    assert!(seen.headers.get("accept-encoding").is_none());
    assert_eq!(hv(&h, "content-type"), "application/json");
    assert_eq!(hv(&h, "content-length"), body.len().to_string());
    assert_eq!(body, "{\"id\":42,\"status\":\"new\",\"line\":[\"Pen\"]}\n");

    // A body of another type passes unchanged.
    let (s, _, _) = send(
        "POST",
        &gw.url("/orders"),
        &[("content-type", "text/plain")],
        "{not json}",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(svc.last().body, "{not json}");

    // An XML client of a JSON backend: XML in, JSON to the backend, its JSON back as XML.
    let (s, h, body) = send(
        "POST",
        &gw.url("/json-echo"),
        &[("content-type", "text/xml")],
        "<user id=\"7\"><name>Ann</name><tags><tag>a</tag><tag>b</tag></tags></user>",
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let seen = svc.last();
    assert_eq!(
        seen.body,
        "{\"@id\":\"7\",\"name\":\"Ann\",\"tags\":{\"tag\":[\"a\",\"b\"]}}\n"
    );
    assert_eq!(hv(&seen.headers, "content-type"), "application/json");
    assert_eq!(hv(&h, "content-type"), "application/xml; charset=utf-8");
    assert_eq!(
        body,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><user id=\"7\"><name>Ann</name><tags><tag>a</tag>\
         <tag>b</tag></tags></user>"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soap_service_behind_a_json_api() {
    let svc = XmlService::start().await;
    let soap = |version: &str| {
        format!(
            "namespaces: strip, soap: {{version: \"{version}\", operation: GetUser, \
             namespace: \"urn:example:users\", action: \"urn:example:users/GetUser\"}}"
        )
    };
    let config = GatewayConfig::new()
        .upstream(Upstream::new("svc").endpoint(svc.addr))
        .route(route("soap11", &soap("1.1")))
        .route(route("soap12", &soap("1.2")))
        .yaml();
    let gw = TestGateway::start(&config).await;

    for (version, path) in [("1.1", "/soap11"), ("1.2", "/soap12")] {
        // A PUT with JSON: a POST of the envelope, the Body's content back as JSON.
        let (s, h, body) = send(
            "PUT",
            &gw.url(path),
            &[("content-type", "application/json")],
            r#"{"id": 7}"#,
        )
        .await;
        assert_eq!(
            (s, hv(&h, "content-type").as_str()),
            (200, "application/json"),
            "{version}: {body}"
        );
        assert_eq!(
            json(&body),
            serde_json::json!({"user": {"id": "7", "name": "User 7"}}),
            "{version}"
        );
        let seen = svc.last();
        assert_eq!(seen.method, "POST", "{version}");
        let ns = if version == "1.1" { SOAP11 } else { SOAP12 };
        assert_eq!(
            seen.body,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"{ns}\">\
                 <soap:Body><GetUser xmlns=\"urn:example:users\"><id>7</id></GetUser></soap:Body>\
                 </soap:Envelope>"
            )
        );
        if version == "1.1" {
            assert_eq!(hv(&seen.headers, "content-type"), "text/xml; charset=utf-8");
            assert_eq!(
                hv(&seen.headers, "soapaction"),
                "\"urn:example:users/GetUser\""
            );
        } else {
            assert_eq!(
                hv(&seen.headers, "content-type"),
                "application/soap+xml; charset=utf-8; action=\"urn:example:users/GetUser\""
            );
            assert!(seen.headers.get("soapaction").is_none());
        }

        // The client's fault: 400; the service's: 502; both JSON with the fault.
        let resp = post_json(&gw.url(path), r#"{"id": 99}"#).await;
        assert_error(&resp, 400, "soap_fault", "no user with id 99");
        let code = if version == "1.1" {
            "s:Client"
        } else {
            "s:Sender"
        };
        assert_eq!(json(&resp.2)["fault"]["code"], code);
        let resp = post_json(&gw.url(path), r#"{"id": 0}"#).await;
        assert_error(&resp, 502, "soap_fault", "database down");
    }
    // On a SOAP route, a body that is not JSON never reaches the service.
    let before = svc.seen().len();
    let resp = send(
        "POST",
        &gw.url("/soap11"),
        &[("content-type", "application/x-www-form-urlencoded")],
        "id=7",
    )
    .await;
    assert_error(&resp, 415, "unsupported_media_type", "application/json");
    assert_eq!(svc.seen().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_hostile_and_oversized_bodies() {
    let svc = XmlService::start().await;
    let config = GatewayConfig::new()
        .upstream(Upstream::new("svc").endpoint(svc.addr))
        .route(route("orders", "root: order"))
        .route(route(
            "json-echo",
            "request: xml_to_json, response: json_to_xml, root: user",
        ))
        .route(route("lol", ""))
        .route(route("xxe", ""))
        .route(route("big", "").lines("    max_body_size: 16KiB\n"))
        .yaml();
    let gw = TestGateway::start(&config).await;

    // Requests: 400s that never reach the service.
    let resp = post_json(&gw.url("/orders"), r#"{"qty": "#).await;
    assert_error(
        &resp,
        400,
        "invalid_json",
        "the request body is not valid JSON: ",
    );
    let resp = post_json(&gw.url("/orders"), r#"{"first name": "Ann"}"#).await;
    assert_error(
        &resp,
        400,
        "invalid_json",
        "/first name: `first name` is not an XML element name",
    );
    let xml = [("content-type", "application/xml")];
    let started = Instant::now();
    let resp = send("POST", &gw.url("/json-echo"), &xml, BILLION_LAUGHS).await;
    assert_error(&resp, 400, "invalid_xml", "a DOCTYPE is not accepted");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let resp = send("POST", &gw.url("/json-echo"), &xml, XXE).await;
    assert_error(&resp, 400, "invalid_xml", "a DOCTYPE is not accepted");
    assert!(
        !resp.2.contains("root:"),
        "nothing of /etc/passwd: {}",
        resp.2
    );
    let resp = send(
        "POST",
        &gw.url("/json-echo"),
        &xml,
        "<user><name>Ann</user>",
    )
    .await;
    assert_error(
        &resp,
        400,
        "invalid_xml",
        "the request body is not valid XML: ",
    );
    assert!(svc.seen().is_empty(), "{:?}", svc.seen());

    // Answers: 502s in place of the service's XML.
    let resp = get(&gw.url("/lol")).await;
    assert_error(
        &resp,
        502,
        "upstream_invalid_xml",
        "a DOCTYPE is not accepted",
    );
    assert_eq!(hv(&resp.1, "cache-control"), "no-store");
    let resp = get(&gw.url("/xxe")).await;
    assert_error(
        &resp,
        502,
        "upstream_invalid_xml",
        "a DOCTYPE is not accepted",
    );

    // Over the route's body limit: a request gets the gateway's 413 before the plugin sees it; an
    // answer fails the filter (closed: 500) rather than pass unconverted.
    let big = format!("{{\"a\": \"{}\"}}", "x".repeat(32 * 1024));
    let (s, _, body) = post_json(&gw.url("/big"), &big).await;
    assert_eq!(s, 413, "{body}");
    let hits = svc.seen().len();
    let (s, _, body) = get(&gw.url("/big")).await;
    assert_eq!(s, 500, "{body}");
    assert_eq!(json(&body)["error"], "filter_failed", "{body}");
    assert_eq!(svc.seen().len(), hits + 1);
}
