//! Keeps `wit/` of this crate (the WIT world the bindings are generated from, packed with the crate so
//! that it builds outside the repository) a copy of the repository's `../wit/`. Inside the repository
//! the copy is refreshed whenever `../wit/*.wit` changes, so nobody has to remember a step; in a packed
//! or copied crate there is no `../wit` and the crate's own `wit/` is used as it is. The gateway's
//! `tests/e2e/cli.rs` checks that the two are identical.

use std::path::Path;

fn main() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = here.join("../wit");
    // The repository's layout: `wit/` next to `plugin-sdk/`, which has the Go SDK too. Anything else
    // (a packed crate, a copy of this folder) has only its own `wit/`.
    if !(source.join("world.wit").is_file() && here.join("go/go.mod").is_file()) {
        return;
    }
    println!("cargo:rerun-if-changed=../wit");
    let packed = here.join("wit");
    std::fs::create_dir_all(&packed).expect("cannot create plugin-sdk/wit");
    for entry in std::fs::read_dir(&source).expect("cannot read ../wit") {
        let path = entry.expect("cannot read ../wit").path();
        if path.extension().is_none_or(|x| x != "wit") {
            continue;
        }
        println!("cargo:rerun-if-changed={}", path.display());
        let text = std::fs::read(&path).expect("cannot read a WIT file");
        let copy = packed.join(path.file_name().expect("a file name"));
        if std::fs::read(&copy).ok().as_deref() != Some(&text[..]) {
            std::fs::write(&copy, &text).expect("cannot write plugin-sdk/wit");
        }
    }
}
