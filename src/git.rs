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
