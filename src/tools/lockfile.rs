//! `preflight.lock`: every tool of `[tools]` resolved to an exact version and the registry's
//! integrity hash of every artefact it installs. Written by `preflight tools lock` (and on a
//! first install), read on every run: the hot path parses it and nothing else.

use crate::config::ToolSpec;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The lock file's name, beside the configuration.
pub const LOCK_FILE: &str = "preflight.lock";

/// Bumped when the lock's shape or meaning changes.
pub const LOCK_VERSION: u32 = 1;

/// Bumped when the way a backend installs changes: installed tools then get new folders.
pub const RECIPE_VERSION: u32 = 1;

/// The whole lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub version: u32,
    #[serde(default, rename = "tool")]
    pub tools: Vec<LockedTool>,
}

/// One tool, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedTool {
    /// Its name in `[tools]`.
    pub name: String,
    /// The spec it was resolved from (`ToolSpec::canonical`): when `[tools]` says something
    /// else, the entry is stale.
    pub spec: String,
    pub backend: String,
    pub package: String,
    pub version: String,
    /// What gets downloaded, each with the registry's hash of it.
    #[serde(default, rename = "artifact")]
    pub artifacts: Vec<Artifact>,
    /// What is taken out of the download (url tools: `path=... format=...`): another
    /// program of the same archive is another tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpack: Option<String>,
}

/// One downloaded file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// The package it belongs to (a PyPI tool locks its whole closure).
    pub package: String,
    pub version: String,
    /// Where npm puts it in the tool's tree (`node_modules/a/node_modules/b`): an npm tool
    /// locks every package of its tree, one artefact each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The file's name (PyPI wheels: one entry per platform's wheel), or the URL npm
    /// downloads it from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The registry's hash: `sha256:<hex>` (PyPI, crates.io, url) or npm's SRI
    /// `sha512-<base64>` (empty for a package bundled inside another's tarball).
    pub hash: String,
    /// npm: the rest of the package's entry in package-lock.json that `npm ci` lays the
    /// tree out from (its dependencies, bin, os, cpu, optional, ...), as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<String>,
}

/// Who a tool is: what goes into the cache key of the steps that use it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub name: String,
    pub backend: String,
    pub package: String,
    pub version: String,
    /// SHA-256 of the lock entry's artefacts and the install recipe, in hex.
    pub integrity: String,
}

impl Identity {
    /// One line for the cache key and `tools list`.
    pub fn describe(&self) -> String {
        format!(
            "{}:{}@{} {}",
            self.backend, self.package, self.version, self.integrity
        )
    }
}

impl LockedTool {
    /// The tool's identity: the integrity covers every artefact hash, so a tampered lock
    /// is another tool.
    pub fn identity(&self) -> Identity {
        #[derive(Serialize)]
        struct Canonical<'a> {
            recipe: u32,
            backend: &'a str,
            package: &'a str,
            version: &'a str,
            artifacts: &'a [Artifact],
            #[serde(skip_serializing_if = "Option::is_none")]
            unpack: Option<&'a str>,
        }
        let bytes = serde_json::to_vec(&Canonical {
            recipe: RECIPE_VERSION,
            backend: &self.backend,
            package: &self.package,
            version: &self.version,
            artifacts: &self.artifacts,
            unpack: self.unpack.as_deref(),
        })
        .unwrap_or_default();
        Identity {
            name: self.name.clone(),
            backend: self.backend.clone(),
            package: self.package.clone(),
            version: self.version.clone(),
            integrity: hex(&Sha256::digest(&bytes)),
        }
    }

    /// Whether this entry was resolved from `spec` as it is written now.
    pub fn matches(&self, spec: &ToolSpec) -> bool {
        self.name == spec.name && self.spec == spec.canonical() && self.backend == spec.backend()
    }

    /// Whether what the entry installs is what `spec` asks for: its spec line alone proves
    /// nothing (it is text anyone can edit). `Err` says what differs.
    pub fn agrees_with(&self, spec: &ToolSpec) -> std::result::Result<(), String> {
        use crate::config::ToolSource;
        if self.backend != spec.backend() {
            return Err(format!("it is a `{}` tool", self.backend));
        }
        match &spec.source {
            ToolSource::Pypi { package, version }
            | ToolSource::Npm { package, version }
            | ToolSource::Cargo { package, version } => {
                if &self.package != package || &self.version != version {
                    return Err(format!("it locks {}@{}", self.package, self.version));
                }
                let pypi = matches!(spec.source, ToolSource::Pypi { .. });
                let named = |a: &Artifact| {
                    if pypi {
                        a.file
                            .as_deref()
                            .is_some_and(|f| wheel_is(f, package, version))
                    } else {
                        &a.package == package && &a.version == version
                    }
                };
                if !self.artifacts.iter().any(named) {
                    return Err(format!("it has no file of {package} {version}"));
                }
                if matches!(spec.source, ToolSource::Npm { .. }) {
                    super::npm::check_tree(self)?;
                }
            }
            ToolSource::Url { sha256, bin, .. } => {
                let hash = format!("sha256:{}", sha256.to_ascii_lowercase());
                let hashes: Vec<String> = self
                    .artifacts
                    .iter()
                    .map(|a| a.hash.to_ascii_lowercase())
                    .collect();
                if hashes != [hash] {
                    return Err("its sha256 is not the one in [tools]".into());
                }
                if &self.package != bin
                    || self.version != sha256[..12.min(sha256.len())]
                    || self.unpack.as_deref() != Some(super::url::unpack_of(spec).as_str())
                {
                    return Err("it takes another program out of the download".into());
                }
            }
        }
        Ok(())
    }
}

/// Where the lock of the configuration at `config_path` lives.
pub fn lock_path(config_path: &Path) -> PathBuf {
    config_path
        .parent()
        .map_or_else(|| PathBuf::from(LOCK_FILE), |d| d.join(LOCK_FILE))
}

impl LockFile {
    /// Reads the lock at `path`; `None` when there is none.
    pub fn read(path: &Path) -> Result<Option<LockFile>> {
        match Self::read_for_rewrite(path)? {
            (lock, None) => Ok(lock),
            (_, Some(why)) => {
                Err(Error::Usage(why).hint("run `preflight tools lock` to write it again"))
            }
        }
    }

    /// Reads the lock at `path` for `preflight tools lock`, which writes it again: a file it
    /// cannot take (not TOML, conflict markers, another lock version) is `(None, Some(why))`
    /// rather than an error. Only failing to read the file is an error.
    pub fn read_for_rewrite(path: &Path) -> Result<(Option<LockFile>, Option<String>)> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, None)),
            Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
        };
        let lock: LockFile = match toml::from_str(&text) {
            Ok(lock) => lock,
            Err(e) => {
                let why = format!(
                    "{} is not a valid lock file: {}",
                    path.display(),
                    e.message().trim_end()
                );
                return Ok((None, Some(why)));
            }
        };
        if lock.version != LOCK_VERSION {
            let why = format!(
                "{} has lock version {}, this preflight reads version {LOCK_VERSION}",
                path.display(),
                lock.version
            );
            return Ok((None, Some(why)));
        }
        Ok((Some(lock), None))
    }

    /// Writes the lock at `path` in one step (a reader sees the old one or the new one).
    pub fn write(&self, path: &Path) -> Result<()> {
        let body = toml::to_string(self).map_err(|e| {
            Error::io(
                "cannot write the lock file",
                std::io::Error::other(e.to_string()),
            )
        })?;
        let text = format!(
            "# Written by `preflight tools lock`: the tools of [tools], each resolved to an exact\n\
             # version with the registry's hash of every file it installs. Commit this file.\n\n{body}"
        );
        crate::atomic::write(path, text.as_bytes(), crate::atomic::Options::default())
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
    }

    pub fn get(&self, name: &str) -> Option<&LockedTool> {
        self.tools.iter().find(|t| t.name == name)
    }

    /// Puts `tool` in, replacing the entry of the same name; entries stay sorted by name so
    /// that the file diffs well.
    pub fn put(&mut self, tool: LockedTool) {
        self.tools.retain(|t| t.name != tool.name);
        self.tools.push(tool);
        self.tools.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

/// Whether `file` is a wheel of `package` at `version` (`{name}-{version}-...whl`, the name
/// compared as PEP 503 normalises it).
fn wheel_is(file: &str, package: &str, version: &str) -> bool {
    let normal = |n: &str| n.to_ascii_lowercase().replace(['_', '.'], "-");
    let Some(stem) = file.strip_suffix(".whl") else {
        return false;
    };
    let mut parts = stem.split('-');
    matches!(
        (parts.next(), parts.next()),
        (Some(n), Some(v)) if normal(n) == normal(package) && v == version
    )
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(hash: &str) -> LockedTool {
        LockedTool {
            name: "ruff".into(),
            spec: "pypi:ruff@1".into(),
            backend: "pypi".into(),
            package: "ruff".into(),
            version: "1".into(),
            artifacts: vec![Artifact {
                package: "ruff".into(),
                version: "1".into(),
                path: None,
                file: Some("ruff-1-py3-none-any.whl".into()),
                hash: hash.into(),
                meta: None,
            }],
            unpack: None,
        }
    }

    #[test]
    fn the_identity_covers_every_hash_and_the_file_round_trips() {
        assert_ne!(
            tool("sha256:aa").identity().integrity,
            tool("sha256:ab").identity().integrity
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let mut lock = LockFile {
            version: LOCK_VERSION,
            tools: Vec::new(),
        };
        lock.put(tool("sha256:aa"));
        lock.write(&path).unwrap();
        assert_eq!(LockFile::read(&path).unwrap(), Some(lock));
        assert_eq!(LockFile::read(&dir.path().join("none")).unwrap(), None);
    }
}
