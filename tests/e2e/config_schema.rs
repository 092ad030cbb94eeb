//! The config's JSON Schema: `gateway config schema` writes it (what docs/config.schema.json holds,
//! checked by `config::schema`'s unit test), and the admin API serves the same document at
//! `GET /config/schema`.

use crate::harness::*;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_is_written_by_the_cli_and_served_by_the_admin_api() {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["config", "schema"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli = String::from_utf8(out.stdout).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&cli).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert!(schema["properties"]["listeners"].is_object(), "{schema:#}");

    let port = free_port();
    let gw = TestGateway::start(&format!(
        "listeners:\n  - {{name: public, address: \"127.0.0.1:{port}\"}}\n"
    ))
    .await;
    let (s, h, body) = admin_call(gw.admin, "GET", "/config/schema", "").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(hv(&h, "content-type"), "application/schema+json");
    assert_eq!(body, cli);
    let (s, _, body) = admin_call(gw.admin, "POST", "/config/schema", "").await;
    assert_eq!(s, 405, "{body}");
}
