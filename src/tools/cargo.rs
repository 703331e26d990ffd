//! The crates.io backend: `cargo install --locked --root` into the temp folder. The lock
//! holds the crate's checksum from the sparse index; before installing, the index is asked
//! again and must give the same, and cargo then checks the `.crate` it downloads against it.

use super::client;
use super::fetch;
use super::lockfile::{Artifact, LockedTool};
use crate::config::ToolSpec;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

fn index_url() -> String {
    std::env::var("PREFLIGHT_CRATES_INDEX_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "https://index.crates.io".into())
}

/// The sparse index's path of a crate (cargo's registry-index layout).
fn index_path(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    match name.len() {
        1 => format!("1/{name}"),
        2 => format!("2/{name}"),
        3 => format!("3/{}/{name}", &name[..1]),
        _ => format!("{}/{}/{name}", &name[..2], &name[2..4]),
    }
}

/// The index's checksum of `package` `version`.
fn checksum(tool: &str, package: &str, version: &str) -> Result<String> {
    let not_found = || {
        Error::Usage(format!(
            "tool `{tool}`: crates.io has no {package} {version}"
        ))
        .hint(format!(
            "check the name and the version on https://crates.io/crates/{package}/versions"
        ))
    };
    let url = format!("{}/{}", index_url(), index_path(package));
    let text = fetch::text(tool, &url)?.ok_or_else(not_found)?;
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if entry["vers"].as_str() != Some(version) {
            continue;
        }
        if entry["yanked"].as_bool() == Some(true) {
            return Err(Error::Usage(format!(
                "tool `{tool}`: {package} {version} was yanked from crates.io"
            ))
            .hint("pin another version in [tools]"));
        }
        if let Some(cksum) = entry["cksum"].as_str() {
            return Ok(cksum.to_string());
        }
    }
    Err(not_found())
}

pub fn resolve(spec: &ToolSpec, package: &str, version: &str) -> Result<LockedTool> {
    let cksum = checksum(&spec.name, package, version)?;
    Ok(LockedTool {
        name: spec.name.clone(),
        spec: spec.canonical(),
        backend: "cargo".into(),
        package: package.into(),
        version: version.into(),
        artifacts: vec![Artifact {
            package: package.into(),
            version: version.into(),
            path: None,
            file: None,
            hash: format!("sha256:{cksum}"),
            meta: None,
        }],
        unpack: None,
    })
}

pub fn install(locked: &LockedTool, temp: &Path) -> Result<Vec<(String, PathBuf)>> {
    let name = &locked.name;
    let want = locked
        .artifacts
        .first()
        .and_then(|a| a.hash.strip_prefix("sha256:"))
        .unwrap_or_default();
    let now = checksum(name, &locked.package, &locked.version)?;
    if now != want {
        return Err(Error::Setup(format!(
            "tool `{name}`: crates.io's checksum of {} {} does not match preflight.lock; refused\n  \
             expected {want}\n  got      {now}",
            locked.package, locked.version
        ))
        .hint(format!(
            "if preflight.lock was edited by hand, restore it (or run `preflight tools update {name}` \
             to lock what the registry serves now)"
        )));
    }
    let root = temp.join("env");
    client::run(
        Command::new("cargo")
            .args(["install", "--locked", "--quiet", "--force", "--version"])
            .arg(format!("={}", locked.version))
            .arg(&locked.package)
            .arg("--root")
            .arg(&root)
            .arg("--target-dir")
            .arg(temp.join("target"))
            .env_remove("CARGO_INSTALL_ROOT")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS"),
    )
    .map_err(|f| client::failed(name, "building it with cargo install", f, "cargo"))?;
    let _ = std::fs::remove_dir_all(temp.join("target"));
    let commands: Vec<(String, PathBuf)> = std::fs::read_dir(root.join("bin"))
        .map(|e| {
            e.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .map(|n| (n.clone(), PathBuf::from("env/bin").join(n)))
                .collect()
        })
        .unwrap_or_default();
    if commands.is_empty() {
        return Err(Error::Setup(format!(
            "tool `{name}`: {} {} installs no binary",
            locked.package, locked.version
        )));
    }
    Ok(commands)
}

#[cfg(test)]
mod tests {
    #[test]
    fn index_paths_follow_cargo() {
        assert_eq!(super::index_path("a"), "1/a");
        assert_eq!(super::index_path("ab"), "2/ab");
        assert_eq!(super::index_path("abc"), "3/a/abc");
        assert_eq!(super::index_path("Serde"), "se/rd/serde");
    }
}
