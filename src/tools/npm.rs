//! The npm backend: a private prefix per tool. The package's tarball is fetched with
//! `npm pack`, its SHA-512 checked against the lock's `integrity` here (not npm's word for
//! it), and only then installed from that file with `npm install --prefix`, scripts off.

use super::client::{self, Failed};
use super::lockfile::{Artifact, LockedTool};
use crate::config::ToolSpec;
use crate::error::{Error, Result};
use sha2::{Digest, Sha512};
use std::path::{Path, PathBuf};
use std::process::Command;

fn npm() -> Command {
    let mut cmd = Command::new("npm");
    cmd.env("npm_config_update_notifier", "false")
        .env("npm_config_fund", "false")
        .env("npm_config_audit", "false")
        .env_remove("npm_config_prefix")
        .env_remove("npm_config_global");
    cmd
}

fn not_found(name: &str, package: &str, version: &str) -> Error {
    Error::Usage(format!(
        "tool `{name}`: the npm registry has no {package} {version}"
    ))
    .hint(format!(
        "check the name and the version on https://www.npmjs.com/package/{package}?activeTab=versions"
    ))
}

/// Asks the registry for the exact version and its `integrity`.
pub fn resolve(spec: &ToolSpec, package: &str, version: &str) -> Result<LockedTool> {
    let name = &spec.name;
    let ran = client::run(npm().args([
        "view",
        &format!("{package}@{version}"),
        "version",
        "dist.integrity",
        "--json",
    ]))
    .map_err(|f| match f {
        Failed::Exited { output, .. }
            if output.contains("E404") || output.contains("404 Not Found") =>
        {
            not_found(name, package, version)
        }
        f => client::failed(name, "asking the npm registry", f, "npm"),
    })?;
    let text = String::from_utf8_lossy(&ran.stdout);
    if text.trim().is_empty() {
        return Err(not_found(name, package, version));
    }
    let answer: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Setup(format!("tool `{name}`: cannot read npm's answer: {e}")))?;
    let got_version = answer["version"].as_str().unwrap_or_default();
    let integrity = answer["dist.integrity"].as_str().unwrap_or_default();
    if got_version != version || !integrity.starts_with("sha512-") {
        return Err(not_found(name, package, version));
    }
    Ok(LockedTool {
        name: name.clone(),
        spec: spec.canonical(),
        backend: "npm".into(),
        package: package.into(),
        version: version.into(),
        artifacts: vec![Artifact {
            package: package.into(),
            version: version.into(),
            file: None,
            hash: integrity.into(),
        }],
        unpack: None,
    })
}

/// Fetches, checks and installs the package into `temp/env`.
pub fn install(locked: &LockedTool, temp: &Path) -> Result<Vec<(String, PathBuf)>> {
    let name = &locked.name;
    let package = &locked.package;
    let want = locked
        .artifacts
        .iter()
        .find(|a| &a.package == package)
        .map(|a| a.hash.clone())
        .ok_or_else(|| {
            Error::Usage(format!("tool `{name}`: the lock has no integrity for it"))
                .hint("run `preflight tools lock`")
        })?;
    let download = temp.join("download");
    std::fs::create_dir_all(&download)
        .map_err(|e| Error::io(format!("tool `{name}`: cannot make a folder"), e))?;
    let ran = client::run(
        npm()
            .args([
                "pack",
                &format!("{package}@{}", locked.version),
                "--json",
                "--ignore-scripts",
                "--pack-destination",
            ])
            .arg(&download),
    )
    .map_err(|f| match f {
        Failed::Exited { output, .. } if output.contains("E404") => {
            not_found(name, package, &locked.version)
        }
        f => client::failed(name, "downloading it from npm", f, "npm"),
    })?;
    let packed: serde_json::Value = serde_json::from_slice(&ran.stdout)
        .map_err(|e| Error::Setup(format!("tool `{name}`: cannot read npm's answer: {e}")))?;
    let file = packed[0]["filename"].as_str().unwrap_or_default();
    // npm names scoped tarballs `scope-name-1.0.0.tgz`; take it as named, inside the folder.
    let tarball = download.join(Path::new(file).file_name().unwrap_or_default());
    let bytes = std::fs::read(&tarball)
        .map_err(|e| Error::io(format!("tool `{name}`: cannot read its tarball"), e))?;
    let got = format!("sha512-{}", base64(&Sha512::digest(&bytes)));
    if got != want {
        return Err(Error::Setup(format!(
            "tool `{name}`: the tarball npm served does not match the integrity in preflight.lock; \
             refused\n  expected {want}\n  got      {got}"
        ))
        .hint("if the lock was edited by hand, run `preflight tools lock` again; otherwise the registry or a proxy serves another file"));
    }
    let env = temp.join("env");
    client::run(
        npm()
            .args([
                "install",
                "--no-save",
                "--ignore-scripts",
                "--omit=dev",
                "--prefix",
            ])
            .arg(&env)
            .arg(&tarball),
    )
    .map_err(|f| client::failed(name, "installing it with npm", f, "npm"))?;
    let manifest = env.join("node_modules").join(package).join("package.json");
    let meta: serde_json::Value = std::fs::read(&manifest)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Error::Setup(format!("tool `{name}`: npm installed no {package}")))?;
    let short = package.rsplit('/').next().unwrap_or(package);
    let commands: Vec<String> = match &meta["bin"] {
        serde_json::Value::String(_) => vec![short.to_string()],
        serde_json::Value::Object(map) => map.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let commands: Vec<(String, PathBuf)> = commands
        .into_iter()
        .filter(|c| !c.is_empty() && !c.contains('/') && !c.starts_with('.'))
        .map(|c| (c.clone(), PathBuf::from("env/node_modules/.bin").join(c)))
        .filter(|(_, target)| temp.join(target).exists())
        .collect();
    if commands.is_empty() {
        return Err(Error::Setup(format!(
            "tool `{name}`: {package} {} has no `bin` command",
            locked.version
        )));
    }
    let _ = std::fs::remove_dir_all(&download);
    Ok(commands)
}

/// Standard base64 with padding (npm's SRI strings).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
    }
}
