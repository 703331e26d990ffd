//! The user guide builds with mdbook (installed into target/tools when missing).

use crate::common::tools;
use std::path::Path;
use std::process::Command;

#[test]
fn the_book_builds_without_warnings() {
    let mdbook = tools::cargo("mdbook", "0.5.4", "mdbook");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(mdbook)
        .arg("build")
        .arg(root.join("book"))
        .arg("--dest-dir")
        .arg(out_dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mdbook build failed:\n{stderr}");
    assert!(
        !stderr.contains("WARN") && !stderr.contains("ERROR"),
        "{stderr}"
    );
    assert!(out_dir.path().join("config.html").is_file());
}
