//! One commit's content (a pushed commit the cache reads) and whether the work tree is
//! exactly that commit.

use super::worktree::same_content;
use super::{
    IndexFile, IndexSnapshot, IndexStat, PushUpdate, Repo, git_error, is_file_entry, to_path,
    untracked_files,
};
use crate::error::Result;
use gix::ObjectId;
use gix::index::entry::{Flags, Mode};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A commit's content as the cache reads it, and whether the work tree is exactly it.
#[derive(Debug)]
pub struct CommitContent {
    pub id: ObjectId,
    /// The commit's files with their blob ids and modes, sorted by path (no stat data: a
    /// commit's content is what its tree says).
    pub files: IndexSnapshot,
}

impl CommitContent {
    /// Whether the commit holds a file (not a folder, not a submodule) at `path`.
    pub fn has_file(&self, path: &Path) -> bool {
        let key = path.as_os_str().as_bytes();
        self.files
            .files
            .binary_search_by(|f| f.path.as_os_str().as_bytes().cmp(key))
            .is_ok()
    }

    /// The blob id of the file at `path` in the commit.
    pub fn file_id(&self, path: &Path) -> Option<[u8; 20]> {
        self.file(path).map(|f| f.id)
    }

    /// The commit's entry for the file at `path`.
    pub fn file(&self, path: &Path) -> Option<&IndexFile> {
        let key = path.as_os_str().as_bytes();
        self.files
            .files
            .binary_search_by(|f| f.path.as_os_str().as_bytes().cmp(key))
            .ok()
            .map(|i| &self.files.files[i])
    }

    /// The first seven hex digits of the commit id.
    pub fn short_id(&self) -> String {
        self.id.to_hex_with_len(7).to_string()
    }
}

impl Repo {
    /// The commit a ref line of a push sends, peeled from a tag; `None` for a deletion or a
    /// tag of something that is not a commit.
    pub fn pushed_commit(&self, update: &PushUpdate) -> Result<Option<ObjectId>> {
        if update.is_deletion() {
            return Ok(None);
        }
        Ok(self.peel_commit(self.object_id(&update.local_sha)?))
    }

    /// The content of a blob (a file as committed).
    pub fn blob(&self, id: [u8; 20]) -> Result<Vec<u8>> {
        let object = self
            .inner
            .find_object(ObjectId::Sha1(id))
            .map_err(git_error)?;
        Ok(object.detach().data)
    }

    /// Whether the work tree is `commit` unchanged: HEAD is this commit, nothing is staged or
    /// modified, and there are no untracked files. Steps may then run in the work tree and
    /// see exactly the commit (plus ignored files).
    pub fn work_tree_is_commit(&self, commit: ObjectId) -> Result<bool> {
        match self.inner.head_id() {
            Ok(head) if head.detach() == commit => {}
            _ => return Ok(false),
        }
        let tree = self.tree_as_index(self.tree_of(commit)?)?;
        self.work_tree_is(commit, &tree)
    }

    /// The files of `commit` read from its tree (blob ids, no hashing).
    pub fn commit_content(&self, commit: ObjectId) -> Result<CommitContent> {
        let tree = self.tree_as_index(self.tree_of(commit)?)?;
        let mut files: Vec<IndexFile> = Vec::with_capacity(tree.entries().len());
        let mut gitlinks = Vec::new();
        for entry in tree.entries() {
            if entry.mode == Mode::COMMIT {
                gitlinks.push((to_path(entry.path(&tree)), entry.id.to_string()));
                continue;
            }
            if !is_file_entry(entry) {
                continue;
            }
            let mut id = [0u8; 20];
            id.copy_from_slice(entry.id.as_slice());
            files.push(IndexFile {
                path: to_path(entry.path(&tree)),
                id,
                symlink: entry.mode == Mode::SYMLINK,
                executable: entry.mode == Mode::FILE_EXECUTABLE,
                stat: IndexStat {
                    mtime: (0, 0),
                    ctime: (0, 0),
                    ino: 0,
                    size: 0,
                },
            });
        }
        Ok(CommitContent {
            id: commit,
            files: IndexSnapshot {
                files,
                written: (0, 0),
                sha1: true,
                gitlinks,
                path: None,
            },
        })
    }

    /// HEAD is `commit`, the index holds its tree exactly, no tracked file is modified and
    /// no untracked file is there. Cheapest tests first.
    fn work_tree_is(&self, commit: ObjectId, tree: &gix::index::State) -> Result<bool> {
        let Ok(head) = self.inner.head_id() else {
            return Ok(false);
        };
        if head.detach() != commit {
            return Ok(false);
        }
        let index = self.index()?;
        let same_entries = index.entries().len() == tree.entries().len()
            && index.entries().iter().zip(tree.entries()).all(|(i, t)| {
                i.id == t.id
                    && i.mode == t.mode
                    && i.stage_raw() == 0
                    && !i
                        .flags
                        .intersects(Flags::SKIP_WORKTREE | Flags::INTENT_TO_ADD)
                    && i.path(&index) == t.path(tree)
            });
        if !same_entries || !self.files_match_index(&index) {
            return Ok(false);
        }
        Ok(untracked_files(&self.root, &[])?.is_empty())
    }

    /// Whether every tracked file in the work tree holds what the index records: by stat
    /// data, and by content where the stat data cannot tell (racily clean entries, common
    /// right after a commit). One lstat per file, spread over the cores.
    fn files_match_index(&self, index: &gix::worktree::Index) -> bool {
        use rayon::prelude::*;
        let index_time = index.timestamp();
        let options = gix::index::entry::stat::Options::default();
        let state: &gix::index::State = index;
        let root = &self.root;
        let differs = |entry: &gix::index::Entry| {
            if !is_file_entry(entry) {
                return false;
            }
            let path = root.join(to_path(entry.path(state)));
            let stat_says_same = gix::index::fs::Metadata::from_path_no_follow(&path)
                .ok()
                .and_then(|meta| gix::index::entry::Stat::from_fs(&meta).ok())
                .is_some_and(|stat| {
                    entry.stat.matches(&stat, options) && !entry.stat.is_racy(index_time, options)
                });
            !stat_says_same && !same_content(&path, entry)
        };
        !state.entries().par_iter().with_min_len(256).any(differs)
    }
}
