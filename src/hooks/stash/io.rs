//! The low-level steps the stash is made of: the lock, paths to and from git's NUL lists,
//! git run with input, synced writes, and the fault points tests use. A leaf: it imports
//! nothing else of the stash.

use crate::error::{Error, Result};
use crate::git::{GitCli, Repo};
use crate::lock::Mode;
use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

pub(super) fn backup_root(repo: &Repo) -> PathBuf {
    repo.git_dir().join("preflight").join("unstaged")
}

/// Opens and locks `<git dir>/preflight/unstaged.lock`; `wait = false` gives up if it is held.
pub(super) fn lock(repo: &Repo, wait: bool) -> Result<Option<std::fs::File>> {
    let dir = repo.git_dir().join("preflight");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    let path = dir.join("unstaged.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    match crate::lock::flock(&file, Mode::Exclusive, wait) {
        Ok(true) => Ok(Some(file)),
        Ok(false) => Ok(None),
        Err(e) => Err(Error::io(format!("cannot lock {}", path.display()), e)),
    }
}

/// A name for this run's files: time, then process id.
pub(super) fn run_name() -> String {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{stamp}-{}", std::process::id())
}

pub(super) fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Splits NUL-separated git output into paths.
pub(super) fn nul_paths(bytes: &[u8]) -> Vec<PathBuf> {
    bytes
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(OsString::from_vec(p.to_vec())))
        .collect()
}

pub(super) fn nul_list(paths: &[PathBuf]) -> Vec<u8> {
    let mut list = Vec::new();
    for p in paths {
        list.extend_from_slice(p.as_os_str().as_bytes());
        list.push(0);
    }
    list
}

pub(super) fn with_paths<'a>(args: &[&'a OsStr], paths: &'a [PathBuf]) -> Vec<&'a OsStr> {
    let mut all = args.to_vec();
    all.push(os("--"));
    all.extend(paths.iter().map(|p| p.as_os_str()));
    all
}

/// For tests only: `PREFLIGHT_TEST_FAULT=<phase>:<kill|panic|enospc>` makes the run die, panic
/// or meet a full disk at that phase (`saved`, `set-aside`, `restore`, `restage`), so the
/// fault-matrix tests can prove that nothing is lost. Never set it outside tests.
pub(super) fn fault(phase: &str) -> std::io::Result<()> {
    let Some(spec) = std::env::var_os("PREFLIGHT_TEST_FAULT") else {
        return Ok(());
    };
    let spec = spec.to_string_lossy();
    match spec.split_once(':') {
        Some((p, "kill")) if p == phase => {
            // SAFETY: sending a signal to this very process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            Ok(())
        }
        Some((p, "panic")) if p == phase => {
            // Once: the clean-up that runs while unwinding passes the same point again.
            static PANICKED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            if !PANICKED.swap(true, std::sync::atomic::Ordering::SeqCst) {
                panic!("PREFLIGHT_TEST_FAULT at {phase}");
            }
            Ok(())
        }
        Some((p, "enospc")) if p == phase => Err(std::io::Error::from_raw_os_error(libc::ENOSPC)),
        _ => Ok(()),
    }
}

/// The real index during `git commit PATH...`: git then hands hooks a temporary index
/// (`next-index-*.lock`) and holds the real one as `index.lock` until the commit is made.
pub(super) fn real_index_lock(repo: &Repo) -> Option<PathBuf> {
    let given = repo.root.join(std::env::var_os("GIT_INDEX_FILE")?);
    let temporary = given
        .file_name()
        .is_some_and(|n| n.as_bytes().starts_with(b"next-index-"));
    let lock = repo.git_dir().join("index.lock");
    (temporary && lock.is_file()).then_some(lock)
}

/// Tracked paths whose work-tree content differs from the index (submodules left out).
pub(super) fn changed_paths(git: &GitCli) -> Result<Vec<PathBuf>> {
    Ok(nul_paths(&git.run(&[
        os("--no-optional-locks"),
        os("diff"),
        os("--name-only"),
        os("-z"),
        os("--no-renames"),
        os("--no-ext-diff"),
        os("--ignore-submodules"),
    ])?))
}

/// Runs git with `input` on its stdin and returns its stdout.
pub(super) fn git_with_input(git: &GitCli, args: &[&OsStr], input: Vec<u8>) -> Result<Vec<u8>> {
    git_with_input_on(git, None, args, input)
}

/// The same, with `GIT_INDEX_FILE` set to `index` when given.
pub(super) fn git_with_input_on(
    git: &GitCli,
    index: Option<&Path>,
    args: &[&OsStr],
    input: Vec<u8>,
) -> Result<Vec<u8>> {
    let describe = || {
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut command = git.command();
    if let Some(index) = index {
        command.env("GIT_INDEX_FILE", index);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("cannot run git", e))?;
    let writer = child.stdin.take().map(|mut stdin| {
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        })
    });
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("cannot run git", e))?;
    if let Some(w) = writer {
        let _ = w.join();
    }
    if !out.status.success() {
        return Err(Error::Setup(format!(
            "`git {}` failed: {}",
            describe(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

pub(super) fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what.to_string(), e)
}

pub(super) fn write_copy(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Written whole and synced to disk before the caller goes on.
pub(super) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let options = crate::atomic::Options {
        mode: None,
        durable: true,
    };
    crate::atomic::write(path, bytes, options).map_err(|e| {
        Error::io(
            format!("cannot save unstaged changes to {}", path.display()),
            e,
        )
    })
}

pub(super) fn list(paths: &[PathBuf]) -> String {
    let mut names: Vec<String> = paths
        .iter()
        .take(5)
        .map(|p| p.display().to_string())
        .collect();
    if paths.len() > 5 {
        names.push(format!("and {} more", paths.len() - 5));
    }
    names.join(", ")
}

/// Marks the files listed in `list` as intent-to-add again, and removes the list.
pub(super) fn readd_intent_to_add(git: &GitCli, list: &Path) {
    if let Ok(bytes) = std::fs::read(list) {
        let files = nul_paths(&bytes);
        let _ = git.run(&with_paths(&[os("add"), os("--intent-to-add")], &files));
        let _ = std::fs::remove_file(list);
    }
}
