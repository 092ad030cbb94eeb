//! Loading: the disk cache, rejections at load, ABI checks.

use crate::support::*;
use bytes::Bytes;
use gateway::config::FailurePolicy;
use gateway::wasm::{EngineOptions, PluginError, Plugins, WasmEngine};
use std::path::Path;

#[tokio::test]
async fn compiled_code_is_cached_on_disk() {
    let dir = std::env::temp_dir().join(format!("gateway-wasm-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = EngineOptions {
        cache_dir: Some(dir.clone()),
        max_instances: 20,
        ..Default::default()
    };
    let host = host().await;
    let cfg = plugin_cfg("cached", &fixtures().kitchen);

    let first = Plugins::new(WasmEngine::new(options.clone()).unwrap());
    let p = first
        .load(&cfg, Path::new("/"), host.clone())
        .await
        .unwrap();
    assert_eq!(first.engine().compilations(), 1);
    assert_eq!(p.sha256().len(), 64);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    // A second engine (as after a restart) with the same settings compiles nothing.
    let second = Plugins::new(WasmEngine::new(options).unwrap());
    let p2 = second.load(&cfg, Path::new("/"), host).await.unwrap();
    assert_eq!(second.engine().compilations(), 0);
    let f = p2
        .filter("r", Bytes::from_static(b"tag=c"), FailurePolicy::Closed)
        .await
        .unwrap();
    let (v, req, _ctx) = request_headers(&f, &[], true).await;
    assert!(v.is_ok());
    assert_eq!(hv(&req.headers, "x-seen-tag"), "c");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn on_configure_false_rejects_the_route_config() {
    let p = load(plugin_cfg("picky", &fixtures().kitchen), host().await).await;
    let err = p
        .proxy_wasm_filter(
            "route-x",
            Bytes::from_static(b"reject=1"),
            FailurePolicy::Closed,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, PluginError::ConfigureRejected { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("picky") && err.to_string().contains("route-x"),
        "{err}"
    );
    // Other configs of the same plugin still work.
    let f = filter(&p, "route-y", "tag=y").await;
    let (v, _, _ctx) = request_headers(&f, &[], true).await;
    assert!(v.is_ok());
}

#[tokio::test]
async fn on_vm_start_false_rejects_the_plugin() {
    let mut cfg = plugin_cfg("vm-picky", &fixtures().kitchen);
    cfg.vm_config = Some(serde_json::Value::String("reject".into()));
    let p = load(cfg, host().await).await;
    let err = p
        .proxy_wasm_filter("r", Bytes::new(), FailurePolicy::Closed)
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::VmStartRejected { .. }), "{err}");
    assert!(err.to_string().contains("vm-picky"));
}

#[tokio::test]
async fn not_a_proxy_wasm_module() {
    let dir = std::env::temp_dir().join(format!("gateway-wasm-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // An empty but valid core module: no ABI version export.
    std::fs::write(dir.join("empty.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(dir.join("junk.wasm"), b"not wasm").unwrap();
    let host = host().await;
    let err = plugins()
        .load(
            &plugin_cfg("empty", Path::new("empty.wasm")),
            &dir,
            host.clone(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::Unsupported { .. }), "{err}");
    let err = plugins()
        .load(
            &plugin_cfg("junk", Path::new("junk.wasm")),
            &dir,
            host.clone(),
        )
        .await
        .unwrap_err();
    // Not Wasm at all: said in one line, before the compiler is asked.
    assert!(
        matches!(&err, PluginError::Unsupported { reason, .. } if reason.starts_with("not a WebAssembly module or component")),
        "{err}"
    );
    let err = plugins()
        .load(&plugin_cfg("missing", Path::new("nope.wasm")), &dir, host)
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::Read { .. }), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
