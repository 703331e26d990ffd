//! The npm backend: a private prefix per tool, its whole dependency tree locked.
//!
//! Resolving: in a temp folder, a package.json that depends on exactly `PKG@VER` and
//! `npm install --package-lock-only` (which resolves without installing); every package of
//! the resulting package-lock.json becomes one artefact of the lock entry: where it goes in
//! the tree, its version, the URL it comes from, its `integrity`, and the rest of its entry
//! that `npm ci` needs. Installing: the package's own tarball is fetched with `npm pack`
//! and its SHA-512 checked here (not npm's word for it); then package.json and
//! package-lock.json are written again from the lock entry and `npm ci` installs exactly
//! that tree, refusing any tarball whose integrity differs. Scripts never run.

use super::client::{self, Failed};
use super::lockfile::{Artifact, LockedTool};
use crate::config::ToolSpec;
use crate::error::{Error, Result};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The name of the project folder's own package (never published, never installed).
const PROJECT: &str = "preflight-tool";

/// Fields of a package-lock.json entry that are not kept: the artefact has its own fields
/// for the first three, the others do not change what is installed.
const NOT_KEPT: [&str; 7] = [
    "version",
    "resolved",
    "integrity",
    "license",
    "funding",
    "deprecated",
    "engines",
];

fn npm() -> Command {
    let mut cmd = Command::new("npm");
    cmd.env("npm_config_update_notifier", "false")
        .env("npm_config_fund", "false")
        .env("npm_config_audit", "false")
        // The lock needs every package's URL and a lockfile v3 laid out as npm does by
        // default, whatever the user's .npmrc says.
        .env("npm_config_omit_lockfile_registry_resolved", "false")
        .env("npm_config_package_lock", "true")
        .env("npm_config_lockfile_version", "3")
        .env("npm_config_install_strategy", "hoisted")
        .env_remove("npm_config_prefix")
        .env_remove("npm_config_global")
        .env_remove("npm_config_package_lock_only")
        .env_remove("npm_config_dry_run");
    // npm retries a download whose integrity differs as if the network had failed, waiting
    // up to a minute between tries by default: a refused tarball should not take minutes.
    for (key, value) in [
        ("npm_config_fetch_retry_mintimeout", "1000"),
        ("npm_config_fetch_retry_maxtimeout", "5000"),
    ] {
        if std::env::var_os(key).is_none() {
            cmd.env(key, value);
        }
    }
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

/// Whether npm's output says the package or the version does not exist.
fn says_not_found(output: &str) -> bool {
    output.contains("E404") || output.contains("404 Not Found") || output.contains("ETARGET")
}

/// The project's package.json: it depends on exactly the tool.
fn manifest(package: &str, version: &str) -> Value {
    json!({
        "name": PROJECT,
        "version": "0.0.0",
        "private": true,
        "dependencies": { package: version },
    })
}

/// Writes the project's package.json into `dir`.
fn write_manifest(name: &str, dir: &Path, package: &str, version: &str) -> Result<()> {
    std::fs::create_dir_all(dir)
        .and_then(|()| {
            std::fs::write(
                dir.join("package.json"),
                manifest(package, version).to_string(),
            )
        })
        .map_err(|e| Error::io(format!("tool `{name}`: cannot write its package.json"), e))
}

/// Resolves `package@version` and its whole dependency tree with npm.
pub fn resolve(spec: &ToolSpec, package: &str, version: &str) -> Result<LockedTool> {
    let name = &spec.name;
    let dir = tempfile::Builder::new()
        .prefix("preflight-npm-")
        .tempdir()
        .map_err(|e| Error::io(format!("tool `{name}`: cannot make a temp folder"), e))?;
    write_manifest(name, dir.path(), package, version)?;
    client::run(
        npm()
            .args([
                "install",
                "--package-lock-only",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--prefix",
            ])
            .arg(dir.path())
            .current_dir(dir.path()),
    )
    .map_err(|f| match f {
        Failed::Exited { output, .. } if says_not_found(&output) => {
            not_found(name, package, version)
        }
        f => client::failed(name, "resolving it with npm", f, "npm"),
    })?;
    let text = std::fs::read(dir.path().join("package-lock.json"))
        .map_err(|e| Error::io(format!("tool `{name}`: npm wrote no package-lock.json"), e))?;
    let lock: Value = serde_json::from_slice(&text).map_err(|e| {
        Error::Setup(format!(
            "tool `{name}`: cannot read npm's package-lock.json: {e}"
        ))
    })?;
    let artifacts = artifacts_of(&lock)
        .map_err(|why| Error::Setup(format!("tool `{name}`: npm's package-lock.json {why}")))?;
    let locked = LockedTool {
        name: name.clone(),
        spec: spec.canonical(),
        backend: "npm".into(),
        package: package.into(),
        version: version.into(),
        artifacts,
        unpack: None,
    };
    check_tree(&locked).map_err(|why| {
        Error::Setup(format!(
            "tool `{name}`: npm resolved {package} {version} to a tree preflight cannot lock: {why}"
        ))
        .hint("pin a version whose dependencies all come from the registry")
    })?;
    Ok(locked)
}

/// The artefacts of every package of a package-lock.json (v2 or v3), sorted by their
/// place in the tree.
fn artifacts_of(lock: &Value) -> std::result::Result<Vec<Artifact>, String> {
    let packages = lock["packages"]
        .as_object()
        .ok_or("has no `packages` (npm 7 or later is needed)")?;
    let mut artifacts = Vec::new();
    for (path, entry) in packages {
        if path.is_empty() {
            continue;
        }
        let entry = entry
            .as_object()
            .ok_or_else(|| format!("has an entry `{path}` that is not an object"))?;
        let text = |key: &str| entry.get(key).and_then(Value::as_str).map(str::to_string);
        let version = text("version").ok_or_else(|| format!("gives `{path}` no version"))?;
        let package = text("name").unwrap_or_else(|| folder_name(path).to_string());
        let meta: Map<String, Value> = entry
            .iter()
            .filter(|(k, _)| !NOT_KEPT.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        artifacts.push(Artifact {
            package,
            version,
            path: Some(path.clone()),
            file: text("resolved"),
            hash: text("integrity").unwrap_or_default(),
            meta: (!meta.is_empty()).then(|| Value::Object(meta).to_string()),
        });
    }
    artifacts.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(artifacts)
}

/// The folder name a package gets at `path` (`node_modules/@s/p` → `@s/p`).
fn folder_name(path: &str) -> &str {
    path.rsplit_once("node_modules/").map_or(path, |(_, n)| n)
}

/// Whether a lock entry holds a whole tree `npm ci` can install safely: the package itself
/// at the top, every package inside `node_modules`, downloaded over http(s) with an
/// integrity (or bundled in another's tarball), nothing linked from elsewhere. `Err` says
/// what is wrong, for `LockedTool::agrees_with`.
pub fn check_tree(locked: &LockedTool) -> std::result::Result<(), String> {
    let top = format!("node_modules/{}", locked.package);
    if locked.artifacts.iter().any(|a| a.path.is_none()) {
        return Err("it has no list of its dependencies (an older preflight wrote it)".into());
    }
    if !locked.artifacts.iter().any(|a| {
        a.path.as_deref() == Some(top.as_str())
            && a.package == locked.package
            && a.version == locked.version
    }) {
        return Err(format!(
            "its dependency list has no {}@{} at the top",
            locked.package, locked.version
        ));
    }
    for a in &locked.artifacts {
        let path = a.path.as_deref().unwrap_or_default();
        let parts: Vec<&str> = path.split('/').collect();
        let inside = parts.first() == Some(&"node_modules")
            && parts.last() != Some(&"node_modules")
            && parts
                .iter()
                .all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\\'));
        if !inside {
            return Err(format!(
                "its dependency `{path}` is not inside node_modules"
            ));
        }
        let meta = match a.meta.as_deref().map(serde_json::from_str::<Value>) {
            None => Map::new(),
            Some(Ok(Value::Object(map))) => map,
            Some(_) => return Err(format!("its dependency `{path}` has an unreadable `meta`")),
        };
        if meta.get("link").is_some_and(|v| v != &Value::Bool(false)) {
            return Err(format!(
                "its dependency `{path}` is a link to a local folder"
            ));
        }
        if meta.get("inBundle") == Some(&Value::Bool(true)) {
            continue;
        }
        let from_registry = a
            .file
            .as_deref()
            .is_some_and(|f| f.starts_with("https://") || f.starts_with("http://"));
        let hashed = a.hash.starts_with("sha") && !a.hash.contains(char::is_whitespace);
        if !from_registry || !hashed {
            return Err(format!(
                "its dependency `{path}` lacks a registry URL or an integrity"
            ));
        }
    }
    Ok(())
}

/// The package-lock.json that installs exactly the locked tree.
fn package_lock(locked: &LockedTool) -> Value {
    let mut packages = Map::new();
    let mut root = manifest(&locked.package, &locked.version);
    if let Some(map) = root.as_object_mut() {
        map.remove("private");
    }
    packages.insert(String::new(), root);
    for a in &locked.artifacts {
        let Some(path) = &a.path else { continue };
        let mut entry = match a.meta.as_deref().map(serde_json::from_str::<Value>) {
            Some(Ok(Value::Object(map))) => map,
            _ => Map::new(),
        };
        if a.package != folder_name(path) {
            entry.insert("name".into(), a.package.clone().into());
        }
        entry.insert("version".into(), a.version.clone().into());
        if let Some(url) = &a.file {
            entry.insert("resolved".into(), url.clone().into());
        }
        if !a.hash.is_empty() {
            entry.insert("integrity".into(), a.hash.clone().into());
        }
        packages.insert(path.clone(), Value::Object(entry));
    }
    json!({
        "name": PROJECT,
        "version": "0.0.0",
        "lockfileVersion": 3,
        "requires": true,
        "packages": packages,
    })
}

/// The error for what npm served not matching the lock: names the tool, the package when
/// npm's output shows which, and what to do.
fn refused(name: &str, what: &str, detail: &str) -> Error {
    Error::Setup(format!(
        "tool `{name}`: {what} does not match the integrity in preflight.lock; refused{detail}"
    ))
    .hint(format!(
        "if preflight.lock was edited by hand, restore it (or run `preflight tools update {name}` \
         to lock what the registry serves now); otherwise the registry or a proxy serves other files"
    ))
}

/// Fetches, checks and installs the locked tree into `temp/env`.
pub fn install(locked: &LockedTool, temp: &Path) -> Result<Vec<(String, PathBuf)>> {
    let name = &locked.name;
    let package = &locked.package;
    check_tree(locked).map_err(|why| {
        Error::Usage(format!("tool `{name}`: its entry in preflight.lock: {why}"))
            .hint(format!("run `preflight tools update {name}`"))
    })?;
    let top = format!("node_modules/{package}");
    let want = locked
        .artifacts
        .iter()
        .find(|a| a.path.as_deref() == Some(top.as_str()))
        .map(|a| a.hash.clone())
        .unwrap_or_default();
    // Registry integrities are SHA-512 but for packages older than 2017; npm checks those.
    if want.starts_with("sha512-") {
        check_tarball(locked, temp, &want)?;
    }
    let env = temp.join("env");
    write_manifest(name, &env, package, &locked.version)?;
    std::fs::write(
        env.join("package-lock.json"),
        package_lock(locked).to_string(),
    )
    .map_err(|e| {
        Error::io(
            format!("tool `{name}`: cannot write its package-lock.json"),
            e,
        )
    })?;
    client::run(
        npm()
            .args([
                "ci",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--prefix",
            ])
            .arg(&env)
            .current_dir(&env),
    )
    .map_err(|f| match f {
        Failed::Exited { output, .. } if output.contains("EINTEGRITY") => {
            let which = locked
                .artifacts
                .iter()
                .find(|a| !a.hash.is_empty() && output.contains(&a.hash))
                .map_or_else(
                    || "a package npm served".to_string(),
                    |a| format!("its dependency {}@{}", a.package, a.version),
                );
            // npm's own words for it are the `npm error` lines; its retries are noise.
            let said: Vec<&str> = output
                .lines()
                .filter(|l| l.starts_with("npm error") && !l.contains("complete log"))
                .collect();
            refused(name, &which, &format!(":\n{}", said.join("\n")))
        }
        f => client::failed(name, "installing it with npm", f, "npm"),
    })?;
    let manifest = env.join("node_modules").join(package).join("package.json");
    let meta: Value = std::fs::read(&manifest)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Error::Setup(format!("tool `{name}`: npm installed no {package}")))?;
    let short = package.rsplit('/').next().unwrap_or(package);
    let commands: Vec<String> = match &meta["bin"] {
        Value::String(_) => vec![short.to_string()],
        Value::Object(map) => map.keys().cloned().collect(),
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
    Ok(commands)
}

/// Fetches the package's own tarball with `npm pack` and checks its SHA-512 against the
/// lock here, before npm is trusted with the rest.
fn check_tarball(locked: &LockedTool, temp: &Path, want: &str) -> Result<()> {
    let name = &locked.name;
    let package = &locked.package;
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
    let packed: Value = serde_json::from_slice(&ran.stdout)
        .map_err(|e| Error::Setup(format!("tool `{name}`: cannot read npm's answer: {e}")))?;
    let file = packed[0]["filename"].as_str().unwrap_or_default();
    // npm names scoped tarballs `scope-name-1.0.0.tgz`; take it as named, inside the folder.
    let tarball = download.join(Path::new(file).file_name().unwrap_or_default());
    let bytes = std::fs::read(&tarball)
        .map_err(|e| Error::io(format!("tool `{name}`: cannot read its tarball"), e))?;
    let got = format!("sha512-{}", base64(&Sha512::digest(&bytes)));
    let _ = std::fs::remove_dir_all(&download);
    if got != want {
        return Err(refused(
            name,
            "the tarball npm served",
            &format!("\n  expected {want}\n  got      {got}"),
        ));
    }
    Ok(())
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
    use super::*;

    /// npm's package-lock.json for a tool with one dependency, one nested package, one
    /// alias and one bundled package.
    fn npm_lock() -> Value {
        json!({
            "name": PROJECT, "version": "0.0.0", "lockfileVersion": 3, "requires": true,
            "packages": {
                "": { "name": PROJECT, "version": "0.0.0", "dependencies": { "t": "1.0.0" } },
                "node_modules/t": {
                    "version": "1.0.0", "resolved": "https://r.example/t-1.0.0.tgz",
                    "integrity": "sha512-T", "license": "MIT", "bin": { "t": "cli.js" },
                    "dependencies": { "d": "^2", "e": "npm:f@^3" }, "engines": { "node": ">=8" }
                },
                "node_modules/d": {
                    "version": "2.1.0", "resolved": "https://r.example/d-2.1.0.tgz",
                    "integrity": "sha512-D", "funding": { "url": "x" }
                },
                "node_modules/e": {
                    "name": "f", "version": "3.0.0", "resolved": "https://r.example/f-3.0.0.tgz",
                    "integrity": "sha512-F", "bundleDependencies": ["g"],
                    "dependencies": { "g": "1" }
                },
                "node_modules/e/node_modules/g": { "version": "1.0.0", "inBundle": true }
            }
        })
    }

    fn locked(artifacts: Vec<Artifact>) -> LockedTool {
        LockedTool {
            name: "t".into(),
            spec: "npm:t@1.0.0".into(),
            backend: "npm".into(),
            package: "t".into(),
            version: "1.0.0".into(),
            artifacts,
            unpack: None,
        }
    }

    #[test]
    fn every_package_of_the_tree_is_kept_and_the_tree_is_written_again_as_npm_had_it() {
        let artifacts = artifacts_of(&npm_lock()).unwrap();
        let paths: Vec<&str> = artifacts.iter().filter_map(|a| a.path.as_deref()).collect();
        assert_eq!(
            paths,
            [
                "node_modules/d",
                "node_modules/e",
                "node_modules/e/node_modules/g",
                "node_modules/t"
            ]
        );
        assert_eq!(artifacts[1].package, "f");
        assert_eq!(artifacts[0].meta, None, "license and funding are dropped");
        let tool = locked(artifacts);
        assert_eq!(check_tree(&tool), Ok(()));
        // What `npm ci` is given is npm's own lock without the fields that change nothing.
        let mut want = npm_lock();
        for entry in want["packages"].as_object_mut().unwrap().values_mut() {
            for key in ["license", "funding", "engines"] {
                entry.as_object_mut().unwrap().remove(key);
            }
        }
        assert_eq!(package_lock(&tool), want);
    }

    #[test]
    fn a_tree_that_is_missing_unsafe_or_unhashed_is_refused() {
        let good = artifacts_of(&npm_lock()).unwrap();
        let with = |change: &dyn Fn(&mut Artifact)| {
            let mut artifacts = good.clone();
            let d = artifacts.iter_mut().find(|a| a.package == "d").unwrap();
            change(d);
            check_tree(&locked(artifacts)).unwrap_err()
        };
        assert!(with(&|a| a.path = None).contains("no list of its dependencies"));
        assert!(with(&|a| a.path = Some("node_modules/../../x".into())).contains("not inside"));
        assert!(with(&|a| a.path = Some("/tmp/x".into())).contains("not inside"));
        assert!(with(&|a| a.file = Some("git+ssh://h/x.git".into())).contains("registry URL"));
        assert!(with(&|a| a.hash = String::new()).contains("integrity"));
        assert!(with(&|a| a.meta = Some("{\"link\":true}".into())).contains("link"));
        assert!(with(&|a| a.meta = Some("[".into())).contains("unreadable"));
        let mut no_top = good.clone();
        no_top.retain(|a| a.package != "t");
        assert!(
            check_tree(&locked(no_top))
                .unwrap_err()
                .contains("at the top")
        );
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
