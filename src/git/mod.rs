//! The repository, read through gix: where the work tree and the hooks are, which files git
//! tracks, which are staged, which changed between two commits or in a push. This is the only
//! module that uses gix. What gix cannot do (apply a patch, rewrite the index) goes through the
//! `git` program, via `GitCli`.
//!
//! Here: finding the repository, the index against HEAD, branches and hooks. Below: `cli`
//! (the `git` program: untracked files, submodules, what gix cannot do), `worktree` (the
//! work tree against the index, by stat data), `range` (files changed between commits or in
//! a push), `contents` (stored file contents for type detection), `index` (the index as the
//! cache reads it), `commit` (a pushed commit's content), `staged` (what the next commit
//! changes). This folder imports only `crate::error`, `crate::lstat` and the
//! `filetypes::Contents` trait it implements; nothing in it knows about config, exec, cache
//! or report.

mod cli;
mod commit;
mod contents;
mod index;
mod range;
mod staged;
mod worktree;

pub use cli::{GitCli, submodule_state, untracked_files};
pub use commit::CommitContent;
pub use contents::StoredContents;
pub use index::{IndexFile, IndexSnapshot, IndexStat, index_entries_of};
pub use range::PushUpdate;

use crate::error::{Error, Result};
pub use gix::ObjectId;
use gix::index::entry::{Flags, Mode};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A git repository with a work tree.
pub struct Repo {
    /// The top of the work tree.
    pub root: PathBuf,
    inner: gix::Repository,
}

/// Finds the repository that contains `dir`, honouring GIT_DIR, GIT_WORK_TREE and
/// GIT_INDEX_FILE as git does (hooks run with them set, e.g. during `git commit -a`).
pub fn discover(dir: &Path) -> Result<Repo> {
    let mut inner: gix::Repository =
        gix::ThreadSafeRepository::discover_with_environment_overrides(dir)
            .map_err(|e| {
                Error::Setup(format!(
                    "{} is not inside a git repository ({e})",
                    dir.display()
                ))
                .hint("run preflight inside a git work tree, or `git init` first")
            })?
            .into();
    // preflight only reads the index: checking its trailing SHA-1 (a collision-detecting one)
    // would cost more than everything else a hook does. git writes it; git checks it.
    {
        let mut config = inner.config_snapshot_mut();
        let _ = config.set_raw_value("index.skipHash", "true");
    }
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

/// Where git looks for hooks, and why.
#[derive(Debug, Clone)]
pub struct HooksDir {
    pub path: PathBuf,
    /// `core.hooksPath` when it is set, with the scope of the file that sets it.
    pub hooks_path: Option<(String, ConfigScope)>,
}

/// Which configuration file a setting comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigScope {
    /// The repository's own `.git/config` or a worktree's `config.worktree`.
    Repository,
    /// `~/.gitconfig`, `$XDG_CONFIG_HOME/git/config`, the system file, or the environment.
    Global,
}

impl Repo {
    /// This work tree's git dir (`.git`, or `.git/worktrees/NAME` for a linked worktree).
    pub fn git_dir(&self) -> &Path {
        self.inner.git_dir()
    }

    /// The git dir shared by all worktrees.
    pub fn common_dir(&self) -> &Path {
        self.inner.common_dir()
    }

    fn index(&self) -> Result<gix::worktree::Index> {
        self.inner
            .index_or_empty()
            .map_err(|e| Error::Setup(format!("cannot read the git index: {e}")))
    }

    fn object_id(&self, sha: &str) -> Result<ObjectId> {
        ObjectId::from_hex(sha.as_bytes())
            .map_err(|e| Error::Usage(format!("`{sha}` is not an object id: {e}")))
    }

    fn peel_commit(&self, id: ObjectId) -> Option<ObjectId> {
        let object = self.inner.find_object(id).ok()?;
        object.peel_to_commit().ok().map(|c| c.id)
    }

    fn tree_of(&self, commit: ObjectId) -> Result<ObjectId> {
        let commit = self.inner.find_commit(commit).map_err(git_error)?;
        commit.tree_id().map(|t| t.detach()).map_err(git_error)
    }

    fn tree_as_index(&self, tree: ObjectId) -> Result<gix::index::State> {
        if tree == empty_tree() {
            return Ok(gix::index::State::new(gix::hash::Kind::Sha1));
        }
        self.inner
            .index_from_tree(&tree)
            .map(Into::into)
            .map_err(git_error)
    }

    /// HEAD's tree in index form (empty when there is no HEAD yet), to compare with the index.
    fn head_as_index(&self) -> Result<gix::index::State> {
        let head_tree = self
            .inner
            .head_tree_id_or_empty()
            .map_err(|e| Error::Setup(format!("cannot read HEAD: {e}")))?
            .detach();
        self.tree_as_index(head_tree)
    }

    /// Every file in the index that is present as a file in the work tree: no submodules,
    /// no sparse directories, no skip-worktree entries, each path once even during a merge.
    pub fn tracked_files(&self) -> Result<Vec<PathBuf>> {
        let index = self.index()?;
        let mut files: Vec<PathBuf> = Vec::with_capacity(index.entries().len());
        let mut last: Option<&[u8]> = None;
        for entry in index.entries() {
            if !is_file_entry(entry) {
                continue;
            }
            let path: &[u8] = entry.path(&index);
            // Conflicted paths appear once per stage, next to each other.
            if last == Some(path) {
                continue;
            }
            last = Some(path);
            files.push(to_path(path));
        }
        Ok(files)
    }

    /// Whether the index records exactly HEAD's tree, so that a commit made now would change
    /// nothing. False when there is no HEAD yet (the first commit is never "empty").
    pub fn index_matches_head(&self) -> Result<bool> {
        let head = self
            .inner
            .head()
            .map_err(|e| Error::Setup(format!("cannot read HEAD: {e}")))?;
        if head.is_unborn() {
            return Ok(false);
        }
        let base = self.head_as_index()?;
        let index = self.index()?;
        // Intent-to-add entries have no content staged: git does not commit them.
        let committed = index
            .entries()
            .iter()
            .filter(|e| !e.flags.contains(Flags::INTENT_TO_ADD))
            .map(|e| (e.path(&index), e.id, e.mode, e.stage_raw()));
        let in_head = base
            .entries()
            .iter()
            .map(|e| (e.path(&base), e.id, e.mode, e.stage_raw()));
        Ok(committed.eq(in_head))
    }

    /// The staged content of `path` (repository-relative): what the next commit records.
    /// `Ok(None)` when the index has no content for it (untracked, removed, or only
    /// intent-to-add); an error when it has merge conflicts.
    pub fn staged_blob(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        let index = self.index()?;
        let key = gix::bstr::BStr::new(path.as_os_str().as_bytes());
        let Some(entry) = index.entry_by_path(key) else {
            return Ok(None);
        };
        if entry.stage_raw() != 0 {
            return Err(Error::Setup(format!(
                "{} has unresolved merge conflicts in the index",
                path.display()
            ))
            .hint(format!(
                "resolve them and `git add {}`, then commit again",
                path.display()
            )));
        }
        if entry.flags.contains(Flags::INTENT_TO_ADD) || entry.mode == Mode::COMMIT {
            return Ok(None);
        }
        let blob = self.inner.find_object(entry.id).map_err(git_error)?;
        Ok(Some(blob.detach().data))
    }

    /// Whether a merge is being concluded (MERGE_HEAD exists): its commit may rightly keep
    /// HEAD's tree.
    pub fn merge_in_progress(&self) -> bool {
        self.git_dir().join("MERGE_HEAD").exists()
    }

    /// The branch the repository's work goes to: what `origin/HEAD` points at (the remote's
    /// default branch), else the branch checked out (even before its first commit), else
    /// `None` (a detached HEAD).
    pub fn default_branch(&self) -> Option<String> {
        let origin = self
            .inner
            .find_reference("refs/remotes/origin/HEAD")
            .ok()
            .and_then(|r| match r.target() {
                gix::refs::TargetRef::Symbolic(name) => Some(name.as_bstr().to_vec()),
                gix::refs::TargetRef::Object(_) => None,
            })
            .and_then(|name| {
                name.strip_prefix(b"refs/remotes/origin/")
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            });
        origin.or_else(|| self.current_branch())
    }

    /// The branch HEAD is on, even when it has no commit yet; `None` when detached.
    pub fn current_branch(&self) -> Option<String> {
        let name = self.inner.head_name().ok()??;
        name.as_bstr()
            .strip_prefix(b"refs/heads/")
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// The short names of the local branches and of the remote-tracking ones (without the
    /// remote's name: `origin/master` is `master`), and the branch HEAD is on.
    pub fn branch_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.current_branch().into_iter().collect();
        let refs = self.inner.references().map_err(git_error)?;
        for r in refs.all().map_err(git_error)?.flatten() {
            let full = r.name().as_bstr();
            let short = if let Some(local) = full.strip_prefix(b"refs/heads/") {
                local
            } else if let Some(remote) = full.strip_prefix(b"refs/remotes/") {
                match remote.iter().position(|&b| b == b'/') {
                    Some(slash) => &remote[slash + 1..],
                    None => continue,
                }
            } else {
                continue;
            };
            if short != b"HEAD" {
                names.push(String::from_utf8_lossy(short).into_owned());
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Files added with `git add -N`: in the index, but with no content staged yet.
    pub fn intent_to_add_files(&self) -> Result<Vec<PathBuf>> {
        let index = self.index()?;
        Ok(index
            .entries()
            .iter()
            .filter(|e| e.flags.contains(Flags::INTENT_TO_ADD))
            .map(|e| to_path(e.path(&index)))
            .collect())
    }

    /// Paths with unresolved merge conflicts (entries at stage 1, 2 or 3), each once.
    pub fn unmerged_files(&self) -> Result<Vec<PathBuf>> {
        let index = self.index()?;
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in index.entries().iter().filter(|e| e.stage_raw() != 0) {
            let path = to_path(entry.path(&index));
            if files.last() != Some(&path) {
                files.push(path);
            }
        }
        Ok(files)
    }

    /// The files of the index that decide what each of `paths` is: the path itself, the
    /// files below it (a folder's), and any of its parent folders that is a file or a link
    /// in the index (`link/conf` goes through `link`). Sorted, without repeats; an empty
    /// path is the whole repository.
    pub fn tracked_at_or_under(&self, paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
        let index = self.index()?;
        let state: &gix::index::State = &index;
        let mut found = std::collections::BTreeSet::new();
        for path in paths {
            let bytes = path.as_os_str().as_bytes();
            let parents = path
                .ancestors()
                .skip(1)
                .filter(|p| !p.as_os_str().is_empty());
            for at in std::iter::once(path.as_path()).chain(parents) {
                let key = gix::bstr::BStr::new(at.as_os_str().as_bytes());
                if let Some(entry) = state.entry_by_path(key) {
                    found.insert(PathBuf::from(OsStr::from_bytes(entry.path(state))));
                }
            }
            let mut prefix = bytes.to_vec();
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            for entry in state
                .prefixed_entries(prefix.as_slice().into())
                .unwrap_or(&[])
            {
                found.insert(PathBuf::from(OsStr::from_bytes(entry.path(state))));
            }
        }
        Ok(found.into_iter().collect())
    }

    /// The folder git runs hooks from: `core.hooksPath` when set, else the common git dir's
    /// `hooks` (shared by linked worktrees).
    pub fn hooks_dir(&self) -> HooksDir {
        let config = self.inner.config_snapshot();
        let file = config.plumbing();
        let mut setting = None;
        if let Some(sections) = file.sections_by_name("core") {
            for section in sections {
                if let Some(value) = section.value("hooksPath") {
                    let scope = match section.meta().source {
                        gix::config::Source::Local | gix::config::Source::Worktree => {
                            ConfigScope::Repository
                        }
                        _ => ConfigScope::Global,
                    };
                    // Later files win, as in git.
                    setting = Some((String::from_utf8_lossy(value.as_ref()).into_owned(), scope));
                }
            }
        }
        let path = match &setting {
            Some((value, _)) => {
                let expanded = match value.strip_prefix("~/") {
                    Some(rest) => std::env::home_dir().unwrap_or_default().join(rest),
                    None => PathBuf::from(value),
                };
                // A relative hooksPath is relative to where hooks run: the work tree root.
                self.root.join(expanded)
            }
            None => self.common_dir().join("hooks"),
        };
        HooksDir {
            path,
            hooks_path: setting,
        }
    }
}

fn git_error(e: impl std::fmt::Display) -> Error {
    Error::Setup(format!("git: {e}"))
}

fn to_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

fn is_file_entry(entry: &gix::index::Entry) -> bool {
    entry.mode != Mode::COMMIT
        && !entry.mode.is_sparse()
        && !entry.flags.contains(Flags::SKIP_WORKTREE)
}

/// The empty tree, for diffs against "nothing" (an unborn branch, a root commit).
fn empty_tree() -> ObjectId {
    ObjectId::empty_tree(gix::hash::Kind::Sha1)
}

/// Paths whose entry in `new` differs from `old` (by id or mode), or is new. Both are sorted
/// by path, so one merge pass does it.
fn changed_entries(old: &gix::index::State, new: &gix::index::State) -> Vec<PathBuf> {
    let mut old_iter = old.entries().iter().peekable();
    let mut out = Vec::new();
    let mut last: Option<&[u8]> = None;
    for entry in new.entries() {
        // Intent-to-add entries have no content staged: git does not commit them.
        if !is_file_entry(entry) || entry.flags.contains(Flags::INTENT_TO_ADD) {
            continue;
        }
        let path: &[u8] = entry.path(new);
        while let Some(o) = old_iter.peek() {
            if <&[u8]>::from(o.path(old)) < path {
                old_iter.next();
            } else {
                break;
            }
        }
        let same = old_iter.peek().is_some_and(|o| {
            <&[u8]>::from(o.path(old)) == path && o.id == entry.id && o.mode == entry.mode
        });
        if !same && last != Some(path) {
            out.push(to_path(path));
            last = Some(path);
        }
    }
    out
}
