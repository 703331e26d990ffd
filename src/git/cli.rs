//! The `git` program, for what gix does not do: apply a patch, rewrite the index, list
//! untracked files with every ignore rule applied, look into a submodule's work tree.

use super::Repo;
use crate::error::{Error, Result};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

impl Repo {
    /// The `git` program, run in the work tree with the caller's environment.
    pub fn cli(&self) -> Result<GitCli> {
        let program = which::which("git").map_err(|_| {
            Error::Setup("the `git` program is not on PATH; preflight needs it to save and restore unstaged changes".into())
        })?;
        Ok(GitCli {
            program,
            root: self.root.clone(),
        })
    }
}

/// The `git` program, for what gix does not do: patches and index rewrites.
pub struct GitCli {
    program: PathBuf,
    root: PathBuf,
}

impl GitCli {
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.current_dir(&self.root).stdin(Stdio::null());
        cmd
    }

    /// Runs git and returns its stdout; a failure carries git's own words.
    pub fn run(&self, args: &[&OsStr]) -> Result<Vec<u8>> {
        let out = self.output(args)?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(Error::Setup(format!(
                "`git {}` failed: {}",
                args.iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    pub fn output(&self, args: &[&OsStr]) -> Result<Output> {
        self.command()
            .args(args)
            .output()
            .map_err(|e| Error::io("cannot run git", e))
    }
}

/// The files git does not track and does not ignore, below `pathspecs` (repository-relative
/// folders; empty means the whole work tree). Asks the `git` binary: listing untracked files
/// needs a walk of the work tree with every ignore rule applied, which it does fastest.
pub fn untracked_files(root: &Path, pathspecs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let git = which::which("git").map_err(|e| {
        Error::Setup(format!(
            "cannot find the `git` program to list untracked files: {e}"
        ))
    })?;
    let mut cmd = std::process::Command::new(git);
    cmd.current_dir(root)
        .args(["ls-files", "-z", "--others", "--exclude-standard", "--"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for p in pathspecs {
        // Literal paths: a folder named `[a]` must not turn into a pattern.
        let mut spec = std::ffi::OsString::from(":(literal)");
        spec.push(p.as_os_str());
        cmd.arg(spec);
    }
    let out = cmd
        .output()
        .map_err(|e| Error::io("cannot run `git ls-files`", e))?;
    if !out.status.success() {
        return Err(Error::Setup(format!(
            "`git ls-files --others` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out
        .stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p)))
        .collect())
}

/// What a submodule's work tree holds, for cache keys: the commit checked out in it and, when
/// it has changes, a digest of `git status` and of its diff against that commit (untracked
/// files count by name). `None` when the submodule is not checked out.
pub fn submodule_state(root: &Path, path: &Path) -> Result<Option<String>> {
    let dir = root.join(path);
    if !dir.join(".git").exists() {
        return Ok(None);
    }
    let git = which::which("git")
        .map_err(|e| Error::Setup(format!("cannot find the `git` program: {e}")))?;
    let run = |args: &[&str]| -> Result<Vec<u8>> {
        let out = std::process::Command::new(&git)
            .current_dir(&dir)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .map_err(|e| Error::io("cannot run git in a submodule", e))?;
        if !out.status.success() {
            return Err(Error::Setup(format!(
                "`git {}` failed in the submodule `{}`: {}",
                args.join(" "),
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(out.stdout)
    };
    let head = run(&["rev-parse", "--verify", "-q", "HEAD"])?;
    let head = String::from_utf8_lossy(&head).trim().to_string();
    let status = run(&["status", "--porcelain=v1", "-z", "--ignore-submodules=none"])?;
    if status.is_empty() {
        return Ok(Some(head));
    }
    let diff = run(&["diff", "HEAD", "--binary", "--no-ext-diff", "--no-textconv"])?;
    let mut all = status;
    all.push(0);
    all.extend_from_slice(&diff);
    use sha2::Digest as _;
    let digest: String = sha2::Sha256::digest(&all)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Some(format!("{head}+dirty-{digest}")))
}
