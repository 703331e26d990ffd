//! Managed tools on a worker. A step that uses tools of `[tools]` becomes an Action that
//! carries them: the Command's environment holds their specs and lock entries (so the
//! Action's digest, and with it every cached result, names the exact tool identities), and
//! its platform asks for a worker that can install each backend they use. The worker
//! installs them from those lock entries into its own store, with the same checks as a
//! local install, and puts them first on the action's PATH; when it cannot, it says so with
//! a status the client recognises, and the step runs where the run started.

use crate::config::{ArchiveFormat, Config, ToolSource, ToolSpec};
use crate::tools::{LockFile, LockedTool};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The Command's environment variable that carries a step's tools.
pub const TOOLS_ENV: &str = "PREFLIGHT_TOOLS";

/// The platform property a worker offers, once per backend it can install (`pypi`, `npm`,
/// `cargo`, `url`), and an Action asks for, once per backend its tools use.
pub const TOOLS_PROPERTY: &str = "preflight-tools";

/// How a worker's status message begins when it cannot provide a step's tools.
pub const UNAVAILABLE: &str = "this worker cannot provide the step's tools";

/// One tool as an Action carries it: what `[tools]` says, and what the lock says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireTool {
    pub name: String,
    pub source: WireSource,
    pub lock: LockedTool,
}

/// `ToolSource`, spelt out for the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum WireSource {
    Pypi {
        package: String,
        version: String,
    },
    Npm {
        package: String,
        version: String,
    },
    Cargo {
        package: String,
        version: String,
    },
    Url {
        url: String,
        sha256: String,
        bin: String,
        path: Option<String>,
        format: String,
    },
}

impl WireTool {
    pub fn new(spec: &ToolSpec, lock: &LockedTool) -> WireTool {
        let source = match &spec.source {
            ToolSource::Pypi { package, version } => WireSource::Pypi {
                package: package.clone(),
                version: version.clone(),
            },
            ToolSource::Npm { package, version } => WireSource::Npm {
                package: package.clone(),
                version: version.clone(),
            },
            ToolSource::Cargo { package, version } => WireSource::Cargo {
                package: package.clone(),
                version: version.clone(),
            },
            ToolSource::Url {
                url,
                sha256,
                bin,
                path,
                format,
            } => WireSource::Url {
                url: url.clone(),
                sha256: sha256.clone(),
                bin: bin.clone(),
                path: path.clone(),
                format: format.name().to_string(),
            },
        };
        WireTool {
            name: spec.name.clone(),
            source,
            lock: lock.clone(),
        }
    }

    /// The spec again, checked against its lock entry as a local install checks it: a lock
    /// entry made for another spec is refused.
    pub fn spec(&self) -> Result<ToolSpec, String> {
        let source = match &self.source {
            WireSource::Pypi { package, version } => ToolSource::Pypi {
                package: package.clone(),
                version: version.clone(),
            },
            WireSource::Npm { package, version } => ToolSource::Npm {
                package: package.clone(),
                version: version.clone(),
            },
            WireSource::Cargo { package, version } => ToolSource::Cargo {
                package: package.clone(),
                version: version.clone(),
            },
            WireSource::Url {
                url,
                sha256,
                bin,
                path,
                format,
            } => ToolSource::Url {
                url: url.clone(),
                sha256: sha256.clone(),
                bin: bin.clone(),
                path: path.clone(),
                format: ArchiveFormat::parse(format)
                    .ok_or_else(|| format!("unknown archive format `{format}`"))?,
            },
        };
        let spec = ToolSpec {
            name: self.name.clone(),
            source,
        };
        if !self.lock.matches(&spec) {
            return Err(format!(
                "its lock entry is for `{}`, not `{}`",
                self.lock.spec,
                spec.canonical()
            ));
        }
        Ok(spec)
    }

    pub fn backend(&self) -> &'static str {
        match self.source {
            WireSource::Pypi { .. } => "pypi",
            WireSource::Npm { .. } => "npm",
            WireSource::Cargo { .. } => "cargo",
            WireSource::Url { .. } => "url",
        }
    }
}

/// Every tool of `[tools]` that `preflight.lock` holds as `[tools]` says it, as an Action
/// carries it. A tool missing here makes the steps that use it run where the run started.
pub fn of_config(config: &Config) -> HashMap<String, WireTool> {
    if config.tools.is_empty() {
        return HashMap::new();
    }
    let Ok(Some(lock)) = LockFile::read(&crate::tools::lock_path(&config.path)) else {
        return HashMap::new();
    };
    config
        .tools
        .iter()
        .filter_map(|(name, spec)| {
            let locked = lock.get(name).filter(|l| l.matches(spec))?;
            Some((name.clone(), WireTool::new(spec, locked)))
        })
        .collect()
}

/// The environment value for a step's tools (in the order the step names them).
pub fn encode(tools: &[WireTool]) -> String {
    serde_json::to_string(tools).unwrap_or_default()
}

pub fn decode(text: &str) -> Result<Vec<WireTool>, String> {
    serde_json::from_str(text).map_err(|e| format!("the tools it names do not decode: {e}"))
}

/// The backends this machine can install with: a worker offers them. `url` needs nothing;
/// the others need their client on PATH.
pub fn backends_here() -> Vec<&'static str> {
    let on_path = |p: &str| which::which(p).is_ok();
    let mut backends = Vec::new();
    if on_path("cargo") {
        backends.push("cargo");
    }
    if on_path("npm") {
        backends.push("npm");
    }
    if on_path("uv") || on_path("python3") {
        backends.push("pypi");
    }
    backends.push("url");
    backends
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::Artifact;

    fn locked(spec: &ToolSpec) -> LockedTool {
        LockedTool {
            name: spec.name.clone(),
            spec: spec.canonical(),
            backend: spec.backend().into(),
            package: "ruff".into(),
            version: "0.17.5".into(),
            artifacts: vec![Artifact {
                package: "ruff".into(),
                version: "0.17.5".into(),
                path: None,
                file: Some("ruff-0.17.5-py3-none-any.whl".into()),
                hash: "sha256:00".into(),
                meta: None,
            }],
            unpack: None,
        }
    }

    #[test]
    fn a_tool_goes_over_the_wire_and_back_unchanged() {
        let specs = [
            ToolSpec {
                name: "ruff".into(),
                source: ToolSource::Pypi {
                    package: "ruff".into(),
                    version: "0.17.5".into(),
                },
            },
            ToolSpec {
                name: "lint".into(),
                source: ToolSource::Url {
                    url: "https://example.invalid/lint.tar.gz".into(),
                    sha256: "ab".repeat(32),
                    bin: "lint".into(),
                    path: Some("dist/lint".into()),
                    format: ArchiveFormat::TarGz,
                },
            },
        ];
        let wire: Vec<WireTool> = specs.iter().map(|s| WireTool::new(s, &locked(s))).collect();
        let back = decode(&encode(&wire)).unwrap();
        assert_eq!(back, wire);
        for (w, s) in back.iter().zip(&specs) {
            assert_eq!(&w.spec().unwrap(), s);
            assert_eq!(w.backend(), s.backend());
        }
    }

    #[test]
    fn a_lock_entry_for_another_version_is_refused() {
        let spec = ToolSpec {
            name: "ruff".into(),
            source: ToolSource::Pypi {
                package: "ruff".into(),
                version: "0.17.5".into(),
            },
        };
        let mut wire = WireTool::new(&spec, &locked(&spec));
        wire.source = WireSource::Pypi {
            package: "ruff".into(),
            version: "0.17.6".into(),
        };
        let why = wire.spec().unwrap_err();
        assert!(why.contains("pypi:ruff@0.17.5"), "{why}");
        assert!(decode("[{\"name\": 1}]").is_err());
    }
}
