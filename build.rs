//! Records what `preflight --version` prints besides the version: the commit the binary was
//! built from and the target it was built for.
//!
//! The commit comes from git when the sources are a checkout of preflight's own repository,
//! else from `.cargo_vcs_info.json` (which `cargo package` writes into every crates.io
//! tarball), else `PREFLIGHT_COMMIT`, else "unknown". A build never fails for want of it.

use std::path::Path;
use std::process::Command;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let dir = Path::new(&manifest_dir);
    let commit = std::env::var("PREFLIGHT_COMMIT")
        .ok()
        .filter(|c| is_commit(c))
        .or_else(|| git_commit(dir))
        .or_else(|| vcs_info_commit(dir))
        .unwrap_or_else(|| "unknown".into());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let short = commit.get(..12).unwrap_or(&commit);
    println!("cargo:rustc-env=PREFLIGHT_COMMIT={commit}");
    println!("cargo:rustc-env=PREFLIGHT_TARGET={target}");
    println!("cargo:rustc-env=PREFLIGHT_VERSION_LINE={version} (commit {short}, {target})");
    println!("cargo:rerun-if-env-changed=PREFLIGHT_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
}

fn is_commit(text: &str) -> bool {
    text.len() >= 7 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// HEAD of the repository the sources are the root of. A crate unpacked inside some other
/// repository (vendored, or in cargo's registry cache under a dotfiles repo) has no `.git`
/// of its own and must not report that repository's commit.
fn git_commit(dir: &Path) -> Option<String> {
    if !dir.join(".git").exists() {
        return None;
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).filter(|c| is_commit(c))?;
    // Rebuild when HEAD moves: its file, and the branch file it points to.
    for path in [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["symbolic-ref", "-q", "HEAD"])
            .and_then(|r| git(&["rev-parse", "--git-path", r.as_str()])),
        git(&["rev-parse", "--git-path", "packed-refs"]),
    ]
    .into_iter()
    .flatten()
    {
        let path = dir.join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(commit)
}

/// `{"git": {"sha1": "…"}, …}` as cargo writes it; read without a JSON parser.
fn vcs_info_commit(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(".cargo_vcs_info.json")).ok()?;
    let after = &text[text.find("\"sha1\"")? + "\"sha1\"".len()..];
    let value = after.trim_start().strip_prefix(':')?.trim_start();
    let value = value.strip_prefix('"')?;
    let commit = &value[..value.find('"')?];
    is_commit(commit).then(|| commit.to_string())
}
