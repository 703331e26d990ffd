//! Which files a run is about (`FileSource`), resolved in one place over git: the file list,
//! the contents their types are told from, and the commit checked instead of the work tree.

use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::filetypes::{Contents, WorkTree};
use crate::git::{self, CommitContent, ObjectId, Repo, StoredContents};
use crate::report;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Which files a run is about, and what their content is read from.
pub enum FileSource {
    /// Every tracked file, plus those of `also` that exist (watch mode: new files not yet
    /// added to git), judged in the work tree.
    Tracked { also: Vec<PathBuf> },
    /// The staged files, judged in the index.
    Staged,
    /// The staged files of a merge being committed (`pre-merge-commit`, which runs before git
    /// writes MERGE_HEAD): as `Staged`, except that what git stages outside a sparse
    /// checkout is the merged commit's, not the user's edits.
    Merging,
    /// The files changed from the fork point of `from` to the commit `to`, which is checked
    /// instead of the work tree.
    Range { from: String, to: String },
    /// The files changed between two commits (`from` all zeros: every file of `to`), judged
    /// in the work tree (after a checkout or a merge).
    Changed { from: String, to: String },
    /// A pushed commit, checked instead of the work tree; `refs` name it to the user.
    Pushed {
        commit: Box<CommitContent>,
        files: Vec<PathBuf>,
        refs: String,
    },
    /// These repository-relative paths, judged in the work tree.
    Paths(Vec<PathBuf>),
}

/// A run's files, resolved.
pub struct Files<'r> {
    pub list: Vec<PathBuf>,
    judged: Judged<'r>,
    /// Set when a commit is checked rather than the work tree.
    pub commit: Option<AtCommit>,
}

/// Where file types are told from: the index, a commit, or the work tree.
enum Judged<'r> {
    WorkTree(WorkTree<'r>),
    Stored(StoredContents<'r>),
}

impl Files<'_> {
    pub fn contents(&self) -> &dyn Contents {
        match &self.judged {
            Judged::WorkTree(w) => w,
            Judged::Stored(s) => s,
        }
    }
}

/// A commit a run checks, and what the run tells the user it checked.
pub struct AtCommit {
    pub content: CommitContent,
    /// `the pushed commit`, `the commit`.
    pub what: &'static str,
    /// The refs or revision that name it.
    pub refs: String,
}

/// The files of `source`, the contents their types are told from, and the commit checked.
pub fn resolve_files(repo: &Repo, source: FileSource) -> Result<Files<'_>> {
    let work_tree = || Judged::WorkTree(WorkTree { root: &repo.root });
    Ok(match source {
        FileSource::Tracked { also } => {
            let mut list = repo.tracked_files()?;
            for path in also {
                if repo.root.join(&path).is_file() && !list.contains(&path) {
                    list.push(path);
                }
            }
            Files {
                list,
                judged: work_tree(),
                commit: None,
            }
        }
        FileSource::Staged | FileSource::Merging => Files {
            list: repo.staged_files(matches!(source, FileSource::Merging))?,
            judged: Judged::Stored(repo.staged_contents()?),
            commit: None,
        },
        FileSource::Range { from, to } => {
            let to_id = repo.resolve(&to)?;
            let list = repo.changed_since_fork(repo.resolve(&from)?, to_id)?;
            let content = repo.commit_content(to_id)?;
            Files {
                list,
                judged: Judged::Stored(repo.commits_contents(&[&to])?),
                commit: Some(AtCommit {
                    content,
                    what: "the commit",
                    refs: to,
                }),
            }
        }
        FileSource::Changed { from, to } => {
            let to = repo.resolve(&to)?;
            let from = if from.bytes().all(|b| b == b'0') {
                None
            } else {
                Some(repo.resolve(&from)?)
            };
            Files {
                list: repo.changed_between(from, to)?,
                judged: work_tree(),
                commit: None,
            }
        }
        FileSource::Pushed {
            commit,
            files,
            refs,
        } => {
            let list = files.into_iter().filter(|f| commit.has_file(f)).collect();
            // File types are told from the pushed commit's own files.
            let judged = Judged::Stored(repo.commits_contents(&[&commit.id.to_string()])?);
            Files {
                list,
                judged,
                commit: Some(AtCommit {
                    content: *commit,
                    what: "the pushed commit",
                    refs,
                }),
            }
        }
        FileSource::Paths(list) => Files {
            list,
            judged: work_tree(),
            commit: None,
        },
    })
}

/// The configuration a pushed commit holds (at the root, under one of the usual names).
pub fn committed_config(
    repo: &Repo,
    commit: &CommitContent,
    color: bool,
) -> Result<Option<Config>> {
    for name in config::FILE_NAMES {
        let Some(id) = commit.file_id(Path::new(name)) else {
            continue;
        };
        let bytes = repo.blob(id)?;
        let source = String::from_utf8(bytes).map_err(|_| {
            Error::Usage(format!(
                "the {name} of the pushed commit {} is not UTF-8 text",
                commit.short_id()
            ))
        })?;
        let origin = format!("in the pushed commit {}", commit.short_id());
        let loaded = config::load_text(&repo.root.join(name), &source, Some(&origin));
        if loaded.is_err() {
            report::warn(
                &format!(
                    "the {name} of the pushed commit {} is not valid:",
                    commit.short_id()
                ),
                color,
            );
        }
        return loaded.map(Some);
    }
    Ok(None)
}

/// One commit a push sends, the refs that send it, and the files they change.
pub struct Pushed {
    pub commit: ObjectId,
    pub refs: Vec<String>,
    pub files: BTreeSet<PathBuf>,
}

/// The commits a push sends, each once (refs sending the same commit are checked once),
/// with the files their refs change on `remote`.
pub fn pushed_commits(
    repo: &Repo,
    remote: &str,
    updates: &[git::PushUpdate],
) -> Result<Vec<Pushed>> {
    let mut pushed: Vec<Pushed> = Vec::new();
    for update in updates {
        let Some(commit) = repo.pushed_commit(update)? else {
            continue;
        };
        let files = repo.pushed_files(remote, std::slice::from_ref(update))?;
        let name = update
            .remote_ref
            .strip_prefix("refs/heads/")
            .or_else(|| update.remote_ref.strip_prefix("refs/tags/"))
            .unwrap_or(&update.remote_ref)
            .to_string();
        match pushed.iter_mut().find(|p| p.commit == commit) {
            Some(p) => {
                p.refs.push(name);
                p.files.extend(files);
            }
            None => pushed.push(Pushed {
                commit,
                refs: vec![name],
                files: files.into_iter().collect(),
            }),
        }
    }
    Ok(pushed)
}
