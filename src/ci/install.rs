//! How a generated CI job gets preflight: by default the PyPI package `preflight-ci` at the
//! exact version that wrote the file (a prebuilt binary in a wheel: seconds, no compiler),
//! through uv, pipx or a venv, whichever the image has, and the checked install script
//! where it has no Python. `[ci] install` may choose `"cargo"` (compile it), `"script"`
//! (the install script only) or give its own shell command.
//!
//! Everything lands in `.preflight-ci/` in the checkout: the services cache it from there,
//! and `BIN_DIR` goes on the PATH.

use super::VERSION;
use crate::config::Ci;
use sha2::{Digest, Sha256};

/// The distribution name on PyPI and npm (`preflight` is taken on both).
pub const PACKAGE: &str = "preflight-ci";

/// Where the installed command is, relative to the checkout.
pub const BIN_DIR: &str = ".preflight-ci/bin";

/// What the install puts there besides the command (a venv, or uv's or pipx's tool folder).
pub const TOOL_DIR: &str = ".preflight-ci/tool";

/// Where the release files are: `/download/vVERSION/` holds the archives, each with
/// its `.sha256`, and install.sh.
pub const RELEASES: &str = "https://github.com/preflight-ci/preflight/releases";

/// The install script, as released beside the archives (it takes the version as an
/// argument, so the released file is these bytes and the generated files can check them).
const INSTALL_SH: &str = include_str!("../../templates/dist/install.sh");

/// The ways `[ci] install` can say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `preflight-ci==VERSION` from PyPI (the default, or `install = "pypi"`).
    Pypi,
    /// The release archive through the checked install script (`install = "script"`).
    Script,
    /// `cargo install --locked` of this version (`install = "cargo"`).
    Cargo,
    /// The user's own shell command.
    Custom(String),
}

impl Method {
    pub fn of(ci: &Ci) -> Method {
        match ci.install.as_deref() {
            None | Some("pypi") => Method::Pypi,
            Some("script") => Method::Script,
            Some("cargo") => Method::Cargo,
            Some(cmd) => Method::Custom(cmd.to_string()),
        }
    }
}

/// The SHA-256 of the install script this version releases.
pub fn install_sh_sha256() -> String {
    super::hex(&Sha256::digest(INSTALL_SH.as_bytes()))
}

/// Shell lines that download the install script of this version, check it against the
/// checksum written into the generated file, and run it into `BIN_DIR`.
fn script_install() -> String {
    let url = format!("{RELEASES}/download/v{VERSION}/install.sh");
    format!(
        "if command -v curl >/dev/null 2>&1; then curl -fsSL {url} -o .preflight-ci/install.sh; \
         else wget -q -O .preflight-ci/install.sh {url}; fi\n\
         echo \"{sha}  .preflight-ci/install.sh\" | sha256sum -c -\n\
         sh .preflight-ci/install.sh --version {VERSION} --to \"$PWD/{BIN_DIR}\"",
        sha = install_sh_sha256(),
    )
}

/// `preflight-ci==VERSION` through uv, pipx or a venv, else the install script.
fn pypi_install() -> String {
    let spec = format!("{PACKAGE}=={VERSION}");
    format!(
        "if command -v uv >/dev/null 2>&1; then\n\
         \x20 UV_TOOL_DIR=\"$PWD/{TOOL_DIR}\" UV_TOOL_BIN_DIR=\"$PWD/{BIN_DIR}\" uv tool install {spec}\n\
         elif command -v pipx >/dev/null 2>&1; then\n\
         \x20 PIPX_HOME=\"$PWD/{TOOL_DIR}\" PIPX_BIN_DIR=\"$PWD/{BIN_DIR}\" pipx install {spec}\n\
         elif command -v python3 >/dev/null 2>&1 && python3 -m venv \"$PWD/{TOOL_DIR}\"; then\n\
         \x20 \"$PWD/{TOOL_DIR}/bin/pip\" install --quiet --disable-pip-version-check {spec}\n\
         \x20 mkdir -p \"$PWD/{BIN_DIR}\"\n\
         \x20 ln -sf \"$PWD/{TOOL_DIR}/bin/preflight\" \"$PWD/{BIN_DIR}/preflight\"\n\
         else\n\
         {script}\n\
         fi",
        script = indent(&script_install()),
    )
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The commands that install preflight by `method` unless it is on the PATH already (as
/// on a self-hosted runner, or in tests). `None` for a custom command: the caller runs it
/// as it always did.
pub fn prebuilt(method: &Method) -> Option<String> {
    let install = match method {
        Method::Pypi => pypi_install(),
        Method::Script => script_install(),
        Method::Cargo | Method::Custom(_) => return None,
    };
    // The folder is git-ignored, so that the steps' file sets never see the venv.
    Some(format!(
        "if ! command -v preflight >/dev/null 2>&1; then\n\
         \x20 mkdir -p \"$PWD/.preflight-ci\"\n\
         \x20 echo '*' > \"$PWD/.preflight-ci/.gitignore\"\n\
         {}\nfi",
        indent(&install)
    ))
}

/// The line that puts `BIN_DIR` on the PATH of a shell (GitLab, Woodpecker, Buildkite).
pub fn export_path() -> String {
    format!("export PATH=\"$PATH:$PWD/{BIN_DIR}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_names_the_exact_version_and_checks_the_script() {
        let text = prebuilt(&Method::Pypi).unwrap();
        assert!(text.contains(&format!("preflight-ci=={VERSION}")));
        assert!(text.contains(&install_sh_sha256()));
        assert!(!text.contains("cargo"));
        assert_eq!(prebuilt(&Method::Cargo), None);
    }
}
