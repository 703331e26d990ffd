//! Which files changed: between two commits, since a branch forked, or in a push (the
//! updates git gives a pre-push hook, and the commits the remote does not have yet).

use super::{Repo, changed_entries, empty_tree, git_error};
use crate::error::{Error, Result};
use gix::ObjectId;
use std::path::PathBuf;

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

impl Repo {
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
}
