//! `examples/legacy-soap` as its README runs it: the example's own gateway config (listener and admin
//! on free ports, the SOAP service's address substituted) in front of the example's own SOAP service
//! (`soap_service.py`, run with python3), called as the JSON REST API it exposes: key-auth,
//! request-validation and json-xml with a SOAP envelope.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The example's SOAP service on a free port, its log (one line per request) in a file; killed
/// when dropped.
struct SoapService {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl Drop for SoapService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SoapService {
    async fn start(example: &Path) -> SoapService {
        let dir = TempDir::new("legacy-soap");
        let log = dir.0.join("service.log");
        let port = free_port();
        let child = Command::new("python3")
            .arg(example.join("soap_service.py"))
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run python3 for the example's SOAP service (install python3): {e}")
            });
        let up = eventually(Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(up, "soap_service.py did not start");
        SoapService {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// The SOAP calls the service has received.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("soap-service: /soap/users"))
            .map(str::to_owned)
            .collect()
    }
}

async fn post(url: &str, key: Option<&str>, body: &str) -> Resp {
    let mut b = http::Request::post(url).header("content-type", "application/json");
    if let Some(key) = key {
        b = b.header("apikey", key);
    }
    request(b.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soap_service_answers_as_a_json_rest_api() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/legacy-soap");
    let service = SoapService::start(&example).await;
    let text = std::fs::read_to_string(example.join("gateway.yaml")).unwrap();
    for address in ["127.0.0.1:8080", "127.0.0.1:9901", "127.0.0.1:8088"] {
        assert!(text.contains(address), "the example uses {address}");
    }
    let text = text
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9901", "127.0.0.1:0")
        .replace("127.0.0.1:8088", &format!("127.0.0.1:{}", service.port));
    let gw = TestGateway::start(&text).await;
    let lookup = gw.url("/api/users/lookup");

    // No key: key-auth's 401, and the service is not called.
    let (s, h, body) = post(&lookup, None, r#"{"id": 7}"#).await;
    assert_eq!(s, 401, "{body}");
    assert!(h.contains_key("www-authenticate"), "{h:?}");
    assert_eq!(json(&body)["error"], "missing_credentials");
    let (s, _, body) = post(&lookup, Some("wrong-key"), r#"{"id": 7}"#).await;
    assert_eq!(s, 401, "{body}");
    assert!(service.calls().is_empty(), "{:?}", service.calls());

    // request-validation: a body that is not JSON, or JSON its schema refuses, gets a 400 listing
    // the violations, and the service is not called.
    let (s, h, body) = post(&lookup, Some("demo-key"), r#"{"id": "#).await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(hv(&h, "content-type"), "application/json");
    let j = json(&body);
    assert_eq!(j["errors"][0]["in"], "body", "{body}");
    assert_eq!(j["errors"][0]["expected"], "JSON", "{body}");
    let (s, _, body) = post(&lookup, Some("demo-key"), r#"{"id": "seven", "x": 1}"#).await;
    assert_eq!(s, 400, "{body}");
    let pointers: Vec<String> = json(&body)["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pointers, ["/id", "/x"], "{body}");
    let (s, _, body) = post(
        &gw.url("/api/users/search"),
        Some("demo-key"),
        r#"{"name": ""}"#,
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(json(&body)["errors"][0]["pointer"], "/name", "{body}");
    assert!(service.calls().is_empty(), "{:?}", service.calls());

    // A user: a SOAP GetUser call, its answer as JSON.
    let (s, h, body) = post(&lookup, Some("demo-key"), r#"{"id": 7}"#).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(hv(&h, "content-type"), "application/json");
    assert_eq!(
        json(&body),
        serde_json::json!({"user": {"id": "7", "name": "Ann Lee", "email": "ann@example.com",
                                    "roles": {"role": ["admin"]}}})
    );
    let calls = service.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(
        calls[0].contains("SOAPAction=\"urn:example:users/GetUser\"")
            && calls[0].contains("<GetUser xmlns=\"urn:example:users\"><id>7</id></GetUser>"),
        "{calls:?}"
    );

    // The service's faults: its client fault a 400, its server fault a 502, both JSON.
    let (s, h, body) = post(&lookup, Some("demo-key"), r#"{"id": 99}"#).await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(hv(&h, "content-type"), "application/json");
    let j = json(&body);
    assert_eq!(j["error"], "soap_fault");
    assert_eq!(j["message"], "no user with id 99");
    assert_eq!(j["request_id"], hv(&h, "x-request-id"));
    assert_eq!(
        j["fault"],
        serde_json::json!({"code": "soap:Client", "detail": {"UserNotFound": {"id": "99"}}})
    );
    let (s, _, body) = post(&lookup, Some("demo-key"), r#"{"id": 13}"#).await;
    assert_eq!(s, 502, "{body}");
    assert_eq!(json(&body)["fault"]["code"], "soap:Server");

    // The other operation: a list, an array even for one user.
    let search = gw.url("/api/users/search");
    let (s, _, body) = post(&search, Some("demo-key"), r#"{"name": "bo"}"#).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        json(&body),
        serde_json::json!({"users": {"user": [{"id": "8", "name": "Bo Chan", "email": "bo@example.com",
                                               "roles": {"role": ["ops", "billing"]}}]}})
    );
    assert_eq!(service.calls().len(), 4);
}
