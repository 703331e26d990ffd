//! The repository, read through gix: where the work tree is and which files git tracks.
//! This is the only module that talks to git.

use crate::error::{Error, Result};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A git repository with a work tree.
pub struct Repo {
    /// The top of the work tree.
    pub root: PathBuf,
    inner: gix::Repository,
}

/// Finds the repository that contains `dir`.
pub fn discover(dir: &Path) -> Result<Repo> {
    let inner = gix::discover(dir).map_err(|e| {
        Error::Setup(format!(
            "{} is not inside a git repository ({e})\n\
             help: run preflight inside a git work tree, or `git init` first",
            dir.display()
        ))
    })?;
    let root = inner
        .workdir()
        .ok_or_else(|| {
            Error::Setup(format!(
                "{} is a bare repository; preflight needs a work tree",
                inner.git_dir().display()
            ))
        })?
        .to_path_buf();
    // Keep the root absolute and free of `..` so paths built from it read well in messages.
    let root = std::path::absolute(&root).unwrap_or(root);
    Ok(Repo { root, inner })
}

impl Repo {
    /// Every file in the index that is present as a file in the work tree: no submodules,
    /// no sparse directories, no skip-worktree entries, each path once even during a merge.
    pub fn tracked_files(&self) -> Result<Vec<PathBuf>> {
        let index = self
            .inner
            .index_or_empty()
            .map_err(|e| Error::Setup(format!("cannot read the git index: {e}")))?;
        let mut files: Vec<PathBuf> = Vec::with_capacity(index.entries().len());
        let mut last: Option<&[u8]> = None;
        for entry in index.entries() {
            let mode = entry.mode;
            if mode == gix::index::entry::Mode::COMMIT
                || mode.is_sparse()
                || entry
                    .flags
                    .contains(gix::index::entry::Flags::SKIP_WORKTREE)
            {
                continue;
            }
            let path: &[u8] = entry.path(&index);
            // Conflicted paths appear once per stage, next to each other.
            if last == Some(path) {
                continue;
            }
            last = Some(path);
            files.push(PathBuf::from(std::ffi::OsStr::from_bytes(path)));
        }
        Ok(files)
    }
}

/// What the cache needs from the index: each tracked file's blob id and the stat data git
/// recorded for it, so that a clean file's digest can be taken without reading it.
#[derive(Debug, Default)]
pub struct IndexSnapshot {
    /// Tracked files, sorted by path bytes (the index order).
    pub files: Vec<IndexFile>,
    /// When the index was written (seconds, nanoseconds): entries modified at or after this
    /// moment are "racy" and must be hashed again.
    pub written: (u64, u32),
    /// Whether the blob ids are SHA-1 (the form preflight computes for other files).
    pub sha1: bool,
}

/// One tracked file in the index.
#[derive(Debug, Clone)]
pub struct IndexFile {
    pub path: PathBuf,
    /// The git blob id (SHA-1 of `blob <len>\0<content>`; for a symlink, of its target).
    pub id: [u8; 20],
    pub symlink: bool,
    pub executable: bool,
    pub stat: IndexStat,
}

/// The stat data of an index entry, as git stores it (truncated to 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStat {
    pub mtime: (u32, u32),
    pub ctime: (u32, u32),
    pub ino: u32,
    pub size: u32,
}

impl Repo {
    /// The index's tracked files with their blob ids and stat data (see `tracked_files` for
    /// which entries count).
    pub fn index_snapshot(&self) -> Result<IndexSnapshot> {
        let index = self
            .inner
            .index_or_empty()
            .map_err(|e| Error::Setup(format!("cannot read the git index: {e}")))?;
        let written = index.timestamp();
        let sha1 = index.object_hash() == gix::hash::Kind::Sha1;
        let mut files: Vec<IndexFile> = Vec::with_capacity(index.entries().len());
        for entry in index.entries() {
            let mode = entry.mode;
            if mode == gix::index::entry::Mode::COMMIT
                || mode.is_sparse()
                || entry
                    .flags
                    .contains(gix::index::entry::Flags::SKIP_WORKTREE)
            {
                continue;
            }
            let path: &[u8] = entry.path(&index);
            if files
                .last()
                .is_some_and(|f| f.path.as_os_str().as_bytes() == path)
            {
                continue;
            }
            let mut id = [0u8; 20];
            if sha1 {
                id.copy_from_slice(entry.id.as_slice());
            }
            let s = &entry.stat;
            files.push(IndexFile {
                path: PathBuf::from(std::ffi::OsStr::from_bytes(path)),
                id,
                symlink: mode == gix::index::entry::Mode::SYMLINK,
                executable: mode == gix::index::entry::Mode::FILE_EXECUTABLE,
                stat: IndexStat {
                    mtime: (s.mtime.secs, s.mtime.nsecs),
                    ctime: (s.ctime.secs, s.ctime.nsecs),
                    ino: s.ino,
                    size: s.size,
                },
            });
        }
        Ok(IndexSnapshot {
            files,
            written: (
                u64::try_from(written.unix_seconds()).unwrap_or(0),
                written.nanoseconds(),
            ),
            sha1,
        })
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
