//! The committed `include/shmsock.h` is what cbindgen makes of the crate
//! now. `SHMSOCK_BLESS=1` rewrites it instead of failing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure should panic

use std::path::Path;

#[test]
fn header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed = crate_dir.join("../include/shmsock.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .unwrap_or_else(|e| panic!("cbindgen.toml: {e}"));
    let bindings = cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .unwrap_or_else(|e| panic!("cbindgen failed: {e}"));
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let fresh = String::from_utf8(fresh).expect("cbindgen writes UTF-8");
    if std::env::var_os("SHMSOCK_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&committed, &fresh).expect("write include/shmsock.h");
        return;
    }
    let old = std::fs::read_to_string(&committed).unwrap_or_default();
    if old != fresh {
        let first = old
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(old.lines().count().min(fresh.lines().count()));
        let show = |s: &str| s.lines().skip(first).take(6).collect::<Vec<_>>().join("\n");
        panic!(
            "include/shmsock.h is stale (first difference at line {}).\n--- committed\n{}\n+++ generated\n{}\n\
             Regenerate with: SHMSOCK_BLESS=1 cargo test -p shmsock-ffi --test header",
            first + 1,
            show(&old),
            show(&fresh)
        );
    }
}

/// Every function and type in the header carries documentation.
#[test]
fn every_function_is_documented() {
    let header =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../include/shmsock.h"))
            .expect("read include/shmsock.h");
    let lines: Vec<&str> = header.lines().collect();
    let mut undocumented = Vec::new();
    let mut decls = 0;
    for (i, l) in lines.iter().enumerate() {
        // A declaration starts at column 0 and names a shmsock item; the
        // C23 typedef of the status enum repeats a documented one.
        let decl = l.contains("shmsock_")
            && !l.starts_with([' ', '#', '/', '*', '}'])
            && !l.starts_with("typedef enum")
            && !l.starts_with("typedef int32_t");
        if !decl {
            continue;
        }
        decls += 1;
        if i == 0 || lines[i - 1].trim() != "*/" {
            undocumented.push(*l);
        }
    }
    assert!(
        decls > 60,
        "found only {decls} declarations: is the check still parsing the header?"
    );
    assert!(
        undocumented.is_empty(),
        "undocumented in the header: {undocumented:#?}"
    );
}
