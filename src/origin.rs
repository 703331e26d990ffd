//! Where the running preflight came from (pip, pipx, uv, npm, cargo, the install script, a
//! build), told from its path, and how to upgrade it. `preflight doctor` prints it, and
//! checks that the hooks still run this binary after an upgrade moved it.

use std::path::{Path, PathBuf};

/// What `preflight --version` prints after the name.
pub const VERSION_LINE: &str = env!("PREFLIGHT_VERSION_LINE");

/// How a binary at some path was installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Pipx,
    UvTool,
    /// A Python virtualenv (pip), with its folder.
    Venv(PathBuf),
    /// pip outside a virtualenv (`pip install --user`, a system Python).
    Pip,
    Npm,
    Cargo,
    /// `~/.local/bin`, where the install script puts it.
    InstallScript,
    /// A cargo build folder (`target/debug`, `target/release`).
    Build,
    Unknown,
}

impl Origin {
    /// Tells the origin of the binary at `path` (canonical, links resolved).
    pub fn of(path: &Path) -> Origin {
        let text = path.to_string_lossy();
        let parent = path.parent();
        let in_venv = parent
            .and_then(Path::parent)
            .filter(|v| v.join("pyvenv.cfg").is_file());
        if text.contains("/pipx/venvs/") {
            Origin::Pipx
        } else if text.contains("/uv/tools/") || text.contains("/uv-tools/") {
            Origin::UvTool
        } else if let Some(venv) = in_venv {
            Origin::Venv(venv.to_path_buf())
        } else if text.contains("/node_modules/") {
            Origin::Npm
        } else if text.contains("/.cargo/bin/") {
            Origin::Cargo
        } else if text.contains("/target/debug/")
            || text.contains("/target/release/")
            || text.contains("/target/x86_64-")
            || text.contains("/target/aarch64-")
        {
            Origin::Build
        } else if text.contains("/site-packages/")
            || parent.is_some_and(|p| p.join("pip").is_file())
        {
            Origin::Pip
        } else if text.ends_with("/.local/bin/preflight") {
            Origin::InstallScript
        } else {
            Origin::Unknown
        }
    }

    /// "installed by …; upgrade with …".
    pub fn describe(&self) -> String {
        match self {
            Origin::Pipx => "pipx (upgrade: `pipx upgrade preflight-ci`)".into(),
            Origin::UvTool => "uv tool (upgrade: `uv tool upgrade preflight-ci`)".into(),
            Origin::Venv(dir) => format!(
                "pip, in the virtualenv {} (upgrade: `{}/bin/pip install -U preflight-ci`)",
                dir.display(),
                dir.display()
            ),
            Origin::Pip => "pip (upgrade: `pip install -U preflight-ci`)".into(),
            Origin::Npm => "npm, package preflight-ci (upgrade: `npm install preflight-ci@latest`)".into(),
            Origin::Cargo => "cargo (upgrade: `cargo install --locked preflight`)".into(),
            Origin::InstallScript => {
                "the install script, or a copy in ~/.local/bin (upgrade: run the install script again)"
                    .into()
            }
            Origin::Build => "a build from source (cargo build)".into(),
            Origin::Unknown => "unknown (not pip, pipx, uv, npm or cargo)".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_told_from_the_path() {
        let of = |p: &str| Origin::of(Path::new(p));
        assert_eq!(
            of("/home/u/.local/share/pipx/venvs/preflight-ci/bin/preflight"),
            Origin::Pipx
        );
        assert_eq!(
            of("/home/u/.local/share/uv/tools/preflight-ci/bin/preflight"),
            Origin::UvTool
        );
        assert_eq!(
            of("/p/node_modules/preflight-ci-linux-x64/bin/preflight"),
            Origin::Npm
        );
        assert_eq!(of("/home/u/.cargo/bin/preflight"), Origin::Cargo);
        assert_eq!(of("/home/u/.local/bin/preflight"), Origin::InstallScript);
        assert_eq!(of("/w/target/debug/preflight"), Origin::Build);
        assert_eq!(of("/opt/thing/preflight"), Origin::Unknown);
    }
}
