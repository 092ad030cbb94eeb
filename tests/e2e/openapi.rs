//! The OpenAPI export of the routes (`gateway routes --openapi`, `/routes/openapi.json`), read back by
//! a typed OpenAPI 3.1 model: both give the same document, and it says what the routes are.

use crate::harness::*;
use std::process::Command;

fn config(up: std::net::SocketAddr, port: u16) -> String {
    format!(
        "listeners:\n  - {{name: public, address: \"127.0.0.1:{port}\"}}\n\
         upstreams:\n  - {{name: users, endpoints: [\"{up}\"]}}\n\
         consumers:\n  - {{name: ann, credentials: {{key-auth: {{key: k-ann}}}}}}\n\
         routes:\n\
         \x20 - name: user\n    match: {{path: {{template: \"/users/{{id}}\"}}, methods: [GET, PUT]}}\n    upstream: users\n    filters: [{{plugin: key-auth, config: {{key_names: [x-api-key]}}}}]\n\
         \x20 - name: health\n    match: {{path: {{exact: /health}}, methods: [GET]}}\n    direct_response: {{body: ok}}\n\
         \x20 - name: legacy\n    match: {{path: {{regex: \"/v[0-9]+/.*\"}}}}\n    upstream: users\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_are_exported_as_openapi_by_the_cli_and_the_admin_api() {
    let up = MockUpstream::start("up").await;
    let port = free_port();
    let dir = TempDir::new("openapi");
    let yaml = config(up.addr, port);
    let file = dir.0.join("gateway.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["routes", "--openapi", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli = String::from_utf8(out.stdout).unwrap();
    let spec = oas3::from_json(&cli).unwrap_or_else(|e| panic!("{e}\n{cli}"));
    let mut ops: Vec<(String, String, Option<String>)> = spec
        .operations()
        .map(|(path, method, op)| (path, method.to_string(), op.operation_id.clone()))
        .collect();
    ops.sort();
    assert_eq!(
        ops,
        [
            (
                "/health".to_owned(),
                "GET".to_owned(),
                Some("health_get".to_owned())
            ),
            (
                "/users/{id}".to_owned(),
                "GET".to_owned(),
                Some("user_get".to_owned())
            ),
            (
                "/users/{id}".to_owned(),
                "PUT".to_owned(),
                Some("user_put".to_owned())
            ),
        ]
    );
    let doc: serde_json::Value = serde_json::from_str(&cli).unwrap();
    let get = &doc["paths"]["/users/{id}"]["get"];
    assert_eq!(get["parameters"][0]["name"], "id");
    assert_eq!(
        get["security"][0]["key-auth_header_x-api-key"],
        serde_json::json!([])
    );
    assert_eq!(doc["servers"][0]["url"], format!("http://127.0.0.1:{port}"));
    assert_eq!(doc["x-gateway-unlisted"][0]["route"], "legacy");
    // The admin API serves the running config's document: the same one.
    let gw = TestGateway::start(&yaml).await;
    let (s, h, body) = admin_call(gw.admin, "GET", "/routes/openapi.json", "").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(hv(&h, "content-type"), "application/json");
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(served, doc);
    let (s, _, body) =
        admin_call(gw.admin, "GET", "/routes/openapi.json?listener=public", "").await;
    assert_eq!(s, 200, "{body}");
    let (s, _, body) = admin_call(gw.admin, "GET", "/routes/openapi.json?listener=nope", "").await;
    assert_eq!(s, 404, "{body}");
    assert!(body.contains("public"), "{body}");
    // A bad config is the CLI's error, with its line.
    std::fs::write(&file, "routes: [{name: r, upstreem: x}]\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["routes", "--openapi", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gateway.yaml:1"), "{err}");
}
