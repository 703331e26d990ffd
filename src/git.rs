//! The repository, read through gix: where the work tree and the hooks are, which files git
//! tracks, which are staged, which changed between two commits or in a push. This is the only
//! module that uses gix. What gix cannot do (apply a patch, rewrite the index) goes through the
//! `git` program, via `GitCli`.

use crate::error::{Error, Result};
pub use gix::ObjectId;
use gix::index::entry::{Flags, Mode};
use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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

/// One line of what git gives a pre-push hook on stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushUpdate {
    pub local_ref: String,
    pub local_sha: String,
    pub remote_ref: String,
    pub remote_sha: String,
}

impl PushUpdate {
    /// Parses `<local ref> <local sha> <remote ref> <remote sha>` lines.
    pub fn parse_lines(text: &str) -> Result<Vec<PushUpdate>> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let parts: Vec<&str> = line.split_whitespace().collect();
                match parts.as_slice() {
                    [lr, ls, rr, rs] => Ok(PushUpdate {
                        local_ref: lr.to_string(),
                        local_sha: ls.to_string(),
                        remote_ref: rr.to_string(),
                        remote_sha: rs.to_string(),
                    }),
                    _ => Err(Error::Usage(format!(
                        "unexpected pre-push input line: {line:?}"
                    ))),
                }
            })
            .collect()
    }

    pub fn is_deletion(&self) -> bool {
        is_null_sha(&self.local_sha)
    }
}

fn is_null_sha(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

/// The empty tree, for diffs against "nothing" (an unborn branch, a root commit).
fn empty_tree() -> ObjectId {
    ObjectId::empty_tree(gix::hash::Kind::Sha1)
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

    /// Files whose index version differs from HEAD: added, copied, modified, renamed (the new
    /// name), type-changed. Deleted files are not in the list. With no HEAD, everything staged.
    pub fn staged_files(&self) -> Result<Vec<PathBuf>> {
        let head_tree = self
            .inner
            .head_tree_id_or_empty()
            .map_err(|e| Error::Setup(format!("cannot read HEAD: {e}")))?
            .detach();
        let index = self.index()?;
        let base = self.tree_as_index(head_tree)?;
        Ok(changed_entries(&base, &index))
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
        let head_tree = self
            .inner
            .head_tree_id_or_empty()
            .map_err(|e| Error::Setup(format!("cannot read HEAD: {e}")))?
            .detach();
        let index = self.index()?;
        let base = self.tree_as_index(head_tree)?;
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

    /// Files present in `to` that differ from `from` (`None`: from nothing).
    pub fn changed_between(&self, from: Option<ObjectId>, to: ObjectId) -> Result<Vec<PathBuf>> {
        let from = match from {
            Some(c) => self.tree_of(c)?,
            None => empty_tree(),
        };
        let to = self.tree_of(to)?;
        Ok(changed_entries(
            &self.tree_as_index(from)?,
            &self.tree_as_index(to)?,
        ))
    }

    /// Resolves a revision (`main`, `HEAD~2`, a sha) to a commit id.
    pub fn resolve(&self, rev: &str) -> Result<ObjectId> {
        let id = self
            .inner
            .rev_parse_single(rev)
            .map_err(|e| Error::Usage(format!("cannot resolve `{rev}`: {e}")))?;
        let commit = id
            .object()
            .and_then(|o| o.peel_to_commit())
            .map_err(|e| Error::Usage(format!("`{rev}` does not name a commit: {e}")))?;
        Ok(commit.id)
    }

    /// Files changed on `to` since it forked from `from` (like `git diff from...to`).
    pub fn changed_since_fork(&self, from: ObjectId, to: ObjectId) -> Result<Vec<PathBuf>> {
        let base = self
            .inner
            .merge_base(from, to)
            .map_err(|e| Error::Setup(format!("cannot find a merge base: {e}")))?
            .map(|id| id.detach());
        self.changed_between(base, to)
    }

    /// The files a push sends: for each updated ref, what changed between what the remote has
    /// and what is pushed. A new branch counts the commits that no remote-tracking ref of
    /// `remote` has; a deleted ref contributes nothing.
    pub fn pushed_files(&self, remote: &str, updates: &[PushUpdate]) -> Result<Vec<PathBuf>> {
        let mut files = std::collections::BTreeSet::new();
        for update in updates.iter().filter(|u| !u.is_deletion()) {
            let local = self.object_id(&update.local_sha)?;
            let Some(local) = self.peel_commit(local) else {
                continue; // A tag pointing at a tree or blob: no files to check.
            };
            let known_remote = (!is_null_sha(&update.remote_sha))
                .then(|| self.object_id(&update.remote_sha).ok())
                .flatten()
                .and_then(|id| self.peel_commit(id));
            let changed = match known_remote {
                Some(remote_commit) => self.changed_since_fork(remote_commit, local)?,
                None => self.new_on_remote(remote, local)?,
            };
            files.extend(changed);
        }
        Ok(files.into_iter().collect())
    }

    /// What commits reachable from `local` but from no `refs/remotes/<remote>/*` change. When
    /// the push goes to a URL (or a remote with no tracking refs yet), every remote-tracking
    /// ref counts, so a first push never means "all history" by accident.
    fn new_on_remote(&self, remote: &str, local: ObjectId) -> Result<Vec<PathBuf>> {
        let prefix = format!("refs/remotes/{remote}/");
        let mut of_remote = Vec::new();
        let mut all_remotes = Vec::new();
        let refs = self.inner.references().map_err(git_error)?;
        for r in refs.all().map_err(git_error)?.flatten() {
            let name = r.name().as_bstr().to_vec();
            if !name.starts_with(b"refs/remotes/") {
                continue;
            }
            if let Ok(id) = r.into_fully_peeled_id()
                && let Some(commit) = self.peel_commit(id.detach())
            {
                if name.starts_with(prefix.as_bytes()) {
                    of_remote.push(commit);
                }
                all_remotes.push(commit);
            }
        }
        let hidden = if of_remote.is_empty() {
            all_remotes
        } else {
            of_remote
        };
        let walk = self
            .inner
            .rev_walk([local])
            .with_hidden(hidden)
            .all()
            .map_err(git_error)?;
        let mut new_commits = Vec::new();
        for info in walk {
            new_commits.push(info.map_err(git_error)?.id);
        }
        // Each new commit against its first parent (nothing, for a root commit).
        let mut files = std::collections::BTreeSet::new();
        for id in new_commits {
            let commit = self.inner.find_commit(id).map_err(git_error)?;
            let parent = commit.parent_ids().next().map(|p| p.detach());
            files.extend(self.changed_between(parent, id)?);
        }
        Ok(files.into_iter().collect())
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

    /// True when no tracked file (or none of `only`, when given) can differ from its index
    /// version, judged by the index's stat data: no process, one lstat per file, spread over
    /// the cores. Racily clean entries count as dirty.
    pub fn work_tree_matches_index(&self, only: Option<&[PathBuf]>) -> Result<bool> {
        use rayon::prelude::*;
        let index = self.index()?;
        let index_time = index.timestamp();
        let options = gix::index::entry::stat::Options::default();
        let state: &gix::index::State = &index;
        let root = &self.root;
        let entries = state.entries();
        if entries
            .iter()
            .any(|e| e.flags.contains(Flags::INTENT_TO_ADD) || e.stage_raw() != 0)
        {
            return Ok(false);
        }
        let differs = |entry: &gix::index::Entry| {
            if !is_file_entry(entry) {
                return false;
            }
            let path = root.join(to_path(entry.path(state)));
            let Ok(meta) = gix::index::fs::Metadata::from_path_no_follow(&path) else {
                return true; // Deleted from the work tree.
            };
            let Ok(stat) = gix::index::entry::Stat::from_fs(&meta) else {
                return true;
            };
            !entry.stat.matches(&stat, options) || entry.stat.is_racy(index_time, options)
        };
        let dirty = match only {
            // Few files: one whose stat data cannot decide (racily clean, or smudged by git
            // for that reason) is compared by content, as git itself would.
            Some(paths) => paths.iter().any(|p| {
                let key = gix::bstr::BStr::new(p.as_os_str().as_bytes());
                state
                    .entry_by_path(key)
                    .is_none_or(|e| differs(e) && !same_content(&root.join(p), e))
            }),
            None => entries.par_iter().with_min_len(256).any(differs),
        };
        Ok(!dirty)
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

/// Whether the file at `path` holds exactly the blob `entry` records (links: their target).
fn same_content(path: &Path, entry: &gix::index::Entry) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let data = if meta.file_type().is_symlink() {
        match std::fs::read_link(path) {
            Ok(target) => target.into_os_string().into_vec(),
            Err(_) => return false,
        }
    } else if meta.is_file() {
        // The executable bit is part of what is staged.
        use std::os::unix::fs::PermissionsExt;
        let executable = meta.permissions().mode() & 0o111 != 0;
        if executable != (entry.mode == Mode::FILE_EXECUTABLE) {
            return false;
        }
        match std::fs::read(path) {
            Ok(data) => data,
            Err(_) => return false,
        }
    } else {
        return false;
    };
    gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, &data)
        .is_ok_and(|id| id == entry.id)
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
    /// Submodules: each gitlink's path and the commit the index records, in hex.
    pub gitlinks: Vec<(PathBuf, String)>,
    /// The index file it was read from (`GIT_INDEX_FILE` honoured); `None` for a commit.
    pub path: Option<PathBuf>,
}

/// The entries of the index file at `path` (mode, blob id, stage, path; every stage and kind),
/// one NUL-terminated record each, as `git ls-files --stage -z` lists them; `None` when it
/// cannot be read.
pub fn index_entries_at(path: &Path) -> Option<Vec<u8>> {
    let file = gix::index::File::at(path, gix::hash::Kind::Sha1, true, Default::default()).ok()?;
    let mut out = Vec::new();
    for entry in file.entries() {
        let head = format!("{:o} {} {:?}\t", entry.mode.bits(), entry.id, entry.stage());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(entry.path(&file));
        out.push(0);
    }
    Some(out)
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

impl IndexStat {
    /// For entries whose stat data says nothing about the work-tree file (skip-worktree and
    /// assume-unchanged: git stops looking at the file): matches no file, so it is hashed.
    pub const UNKNOWN: IndexStat = IndexStat {
        mtime: (0, 0),
        ctime: (0, 0),
        ino: 0,
        size: 0,
    };
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
        let mut gitlinks = Vec::new();
        for entry in index.entries() {
            let mode = entry.mode;
            if mode == gix::index::entry::Mode::COMMIT {
                let path = PathBuf::from(std::ffi::OsStr::from_bytes(entry.path(&index)));
                if gitlinks.last().is_none_or(|(p, _)| *p != path) {
                    gitlinks.push((path, entry.id.to_string()));
                }
                continue;
            }
            if mode.is_sparse() {
                continue;
            }
            // git no longer compares these files with the index: their content is whatever
            // the work tree holds, so they are hashed.
            let untrusted = entry.flags.intersects(
                gix::index::entry::Flags::SKIP_WORKTREE | gix::index::entry::Flags::ASSUME_VALID,
            );
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
                stat: if untrusted {
                    IndexStat::UNKNOWN
                } else {
                    IndexStat {
                        mtime: (s.mtime.secs, s.mtime.nsecs),
                        ctime: (s.ctime.secs, s.ctime.nsecs),
                        ino: s.ino,
                        size: s.size,
                    }
                },
            });
        }
        Ok(IndexSnapshot {
            files,
            gitlinks,
            path: Some(self.inner.index_path()),
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
