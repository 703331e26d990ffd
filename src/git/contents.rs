//! File contents as git stores them (the index, or a set of commits), for telling file
//! types without reading the work tree.

use super::Repo;
use crate::error::Result;
use gix::ObjectId;
use gix::index::entry::Mode;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// File contents as git stores them, for telling file types (`types`) without reading
/// the work tree, which may hold unstaged changes or another branch.
pub struct StoredContents<'a> {
    repo: &'a Repo,
    source: Stored,
}

enum Stored {
    Index(gix::worktree::Index),
    Trees(Vec<gix::index::State>),
}

impl StoredContents<'_> {
    fn entry(&self, path: &Path) -> Option<(ObjectId, Mode)> {
        let path: &gix::bstr::BStr = path.as_os_str().as_bytes().into();
        let found = |state: &gix::index::State| state.entry_by_path(path).map(|e| (e.id, e.mode));
        match &self.source {
            Stored::Index(index) => found(index),
            Stored::Trees(trees) => trees.iter().find_map(found),
        }
    }
}

impl crate::filetypes::Contents for StoredContents<'_> {
    fn head(&self, path: &Path) -> Option<Vec<u8>> {
        let (id, mode) = self.entry(path)?;
        if mode != Mode::FILE && mode != Mode::FILE_EXECUTABLE {
            return None;
        }
        let blob = self.repo.inner.find_object(id).ok()?;
        let data = &blob.data;
        Some(data[..data.len().min(crate::filetypes::HEAD_BYTES)].to_vec())
    }

    fn is_executable(&self, path: &Path) -> bool {
        self.entry(path)
            .is_some_and(|(_, mode)| mode == Mode::FILE_EXECUTABLE)
    }

    fn is_symlink(&self, path: &Path) -> bool {
        self.entry(path)
            .is_some_and(|(_, mode)| mode == Mode::SYMLINK)
    }
}

impl Repo {
    /// File heads and modes as the index holds them: what a commit will contain.
    pub fn staged_contents(&self) -> Result<StoredContents<'_>> {
        Ok(StoredContents {
            repo: self,
            source: Stored::Index(self.index()?),
        })
    }

    /// File heads and modes as the trees of `commits` hold them (a revision each, looked up
    /// in order): what a push sends, or what `--from/--to` judges.
    pub fn commits_contents(&self, commits: &[&str]) -> Result<StoredContents<'_>> {
        let mut trees = Vec::new();
        for rev in commits {
            // A ref that names no commit (a tag of a tree) has no files to tell.
            let Ok(id) = self.inner.rev_parse_single(*rev) else {
                continue;
            };
            let Some(commit) = self.peel_commit(id.detach()) else {
                continue;
            };
            trees.push(self.tree_as_index(self.tree_of(commit)?)?);
        }
        Ok(StoredContents {
            repo: self,
            source: Stored::Trees(trees),
        })
    }
}
