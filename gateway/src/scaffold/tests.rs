use super::*;

#[test]
fn names() {
    assert!(check_name("api-key").is_ok());
    assert!(check_name("f2").is_ok());
    for bad in ["", "Api", "2f", "a_b", "a-", "a/b", "../x"] {
        assert!(check_name(bad).is_err(), "{bad}");
    }
    assert_eq!(artifact_name("api-key"), "api_key");
}

#[test]
fn go_versions_and_modules() {
    assert_eq!(parse_go_version("go1.27.3\n"), Some((1, 27)));
    assert_eq!(parse_go_version("go1.25rc1"), Some((1, 25)));
    assert_eq!(parse_go_version("devel +abc"), None);
    assert_eq!(go_module("module api-key\n\ngo 1.24\n"), Some("api-key"));
    assert_eq!(
        go_module("// x\nmodule \"example.com/f/hello\"\n"),
        Some("example.com/f/hello")
    );
    assert_eq!(go_module("modules x\n"), None);
}

#[test]
fn the_cdylib_is_found_among_cargo_messages() {
    let dir = std::env::temp_dir().join(format!("gateway-scaffold-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Cargo.toml"), "").unwrap();
    let manifest = std::fs::canonicalize(dir.join("Cargo.toml")).unwrap();
    let messages = format!(
        "{{\"reason\":\"compiler-artifact\",\"manifest_path\":\"/elsewhere/Cargo.toml\",\"filenames\":[\"/t/libdep.rlib\"]}}\n\
         not json\n\
         {{\"reason\":\"compiler-artifact\",\"manifest_path\":{:?},\"filenames\":[\"/t/release/f.wasm\"]}}\n\
         {{\"reason\":\"build-finished\",\"success\":true}}\n",
        manifest.to_str().unwrap()
    );
    assert_eq!(
        cdylib_of(&messages, &manifest),
        Some(PathBuf::from("/t/release/f.wasm"))
    );
    assert_eq!(cdylib_of("", &manifest), None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sdk_paths_with_spaces_and_quotes_stay_one_value() {
    assert_eq!(sdk_in(Lang::Go, "./sdk"), "./sdk");
    assert_eq!(
        sdk_in(Lang::Go, "/home/me/My SDK/go"),
        "\"/home/me/My SDK/go\""
    );
    assert_eq!(sdk_in(Lang::Rust, "/home/me/My SDK"), "/home/me/My SDK");
    assert_eq!(sdk_in(Lang::Rust, "C:\\sdk\"x"), "C:\\\\sdk\\\"x");
    assert_eq!(sdk_in(Lang::Go, "a\"b"), "\"a\\\"b\"");
}

#[test]
fn the_carried_wit_has_a_version_for_js_imports() {
    let v = wit_version();
    assert!(
        v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok()),
        "{v}"
    );
    assert!(sdk::WIT.contains(&format!("package gateway:filter@{v};")));
}
