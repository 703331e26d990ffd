//! Observed inputs: the files inside the repository a step read (or looked for and did not
//! find) without declaring them, recorded with its cache entry and checked on a lookup.
//!
//! A lookup has two levels: the key from declared inputs finds the entry, then every file the
//! step was seen to read must still have the same blob id, and every file it looked for and
//! did not find must still be absent. The digests come from the same place as the declared
//! inputs' (the index's stat data when fresh, else the file is hashed; a commit's tree when a
//! commit is checked), so a hit costs no hashing beyond the observed files.
//!
//! The record also keeps what `preflight audit` shows: the declared inputs the step read,
//! the files it wrote, and what it read or ran outside the repository.

mod check;

pub use check::ObservedMiss;

use super::Session;
use super::inputs::{Candidate, RecordPath};
use crate::config::Step;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// The format of the record; another version is never trusted.
pub const OBSERVED_VERSION: u32 = 2;

/// What a step was seen to read, as stored with its cache entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedInputs {
    pub version: u32,
    /// Files inside the repository the step read or looked for, not declared and not
    /// written by it: checked on every lookup. Sorted by path.
    pub files: Vec<ObservedFile>,
    /// Folders inside the repository the step listed, with the names they held: checked
    /// on every lookup (a new `tests/b.sh` where the step ran `tests/*.sh`).
    #[serde(default)]
    pub listed: Vec<ListedFolder>,
    /// Declared inputs the step read (not checked again: the key covers them).
    #[serde(default)]
    pub declared_read: Vec<RecordPath>,
    /// Files inside the repository the step wrote.
    #[serde(default)]
    pub written: Vec<RecordPath>,
    /// Files outside the repository it read (absolute paths).
    #[serde(default)]
    pub outside: Vec<RecordPath>,
    /// Programs outside the repository it ran (absolute paths).
    #[serde(default)]
    pub executed: Vec<RecordPath>,
}

/// One observed path inside the repository and what it was when the step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedFile {
    pub path: RecordPath,
    /// `None`: the step looked for it and it was not there.
    pub found: Option<FoundFile>,
}

/// A folder the step listed, and every name in it when the step ended (ignored files
/// included: the step saw them), sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedFolder {
    pub path: RecordPath,
    pub names: Vec<RecordPath>,
}

/// A file that was there: its git mode and blob id. A folder has mode `FOLDER_MODE` and
/// no digest: only that it is a folder counts (`test -d migrations`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundFile {
    pub mode: String,
    pub digest: String,
}

/// The mode of a folder, as git writes it in a tree.
pub const FOLDER_MODE: &str = "040000";

/// How an observed file differs from what the step saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// It was read, and its content (or mode) is not the same any more.
    Changed(PathBuf),
    /// It was read, and it is gone.
    Removed(PathBuf),
    /// The step looked for it and did not find it; it is there now.
    Appeared(PathBuf),
    /// The step listed this folder; the names in it are not the same (or it is gone).
    Listed(PathBuf),
}

impl Drift {
    pub fn path(&self) -> &Path {
        match self {
            Drift::Changed(p) | Drift::Removed(p) | Drift::Appeared(p) | Drift::Listed(p) => p,
        }
    }
}

/// A path made relative to `root`, when it lies below it; `..` and `.` are resolved
/// lexically (the tracer reports absolute paths, perhaps not normalised).
fn below(path: &Path, roots: &[PathBuf]) -> Option<PathBuf> {
    let mut clean = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    roots
        .iter()
        .find_map(|r| clean.strip_prefix(r).ok().map(Path::to_path_buf))
}

fn sorted(paths: impl IntoIterator<Item = PathBuf>) -> Vec<RecordPath> {
    let set: BTreeSet<PathBuf> = paths.into_iter().collect();
    let mut out: Vec<RecordPath> = set.iter().map(|p| RecordPath::new(p)).collect();
    out.sort();
    out
}

/// The record of what a step read inside `root` (a remote worker's input root, laid out as
/// the repository): every file read with its blob id, hashed now, and every path looked
/// for and not found. The worker does not know which files were declared: they are in the
/// record too, and the client checks them again (from its index, cheaply). Folders, and
/// the names in folders the step listed, are left out: the input root holds only the
/// declared inputs and the folders the worker made, which say nothing of the client's.
pub fn record_in_folder(
    root: &Path,
    seen: &crate::observe::Observation,
) -> std::io::Result<ObservedInputs> {
    let mut roots = vec![root.to_path_buf()];
    if let Ok(real) = root.canonicalize()
        && real != root
    {
        roots.push(real);
    }
    let counted = |rel: &PathBuf| !rel.as_os_str().is_empty() && !rel.starts_with(".git");
    let written: BTreeSet<PathBuf> = seen
        .written
        .iter()
        .filter_map(|p| below(p, &roots))
        .collect();
    let read: BTreeSet<PathBuf> = seen
        .read
        .iter()
        .chain(&seen.executed)
        .filter_map(|p| below(p, &roots))
        .filter(|rel| counted(rel) && !written.contains(rel))
        .collect();
    let absent: BTreeSet<PathBuf> = seen
        .absent
        .iter()
        .filter_map(|p| below(p, &roots))
        .filter(|rel| counted(rel) && !written.contains(rel) && !read.contains(rel))
        .collect();
    let mut files = Vec::new();
    for rel in read.iter().chain(&absent) {
        let full = root.join(rel);
        let meta = match full.symlink_metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                files.push(ObservedFile {
                    path: RecordPath::new(rel),
                    found: None,
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        let (mode, id) = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&full)?;
            (
                "120000",
                super::blob_id::git_blob_id(target.as_os_str().as_encoded_bytes()),
            )
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let file = std::fs::File::open(&full)?;
            let (id, _) = super::blob_id::hash_file(file, meta.len())?;
            let mode = if meta.permissions().mode() & 0o100 != 0 {
                "100755"
            } else {
                "100644"
            };
            (mode, id)
        } else {
            continue;
        };
        files.push(ObservedFile {
            path: RecordPath::new(rel),
            found: Some(FoundFile {
                mode: mode.into(),
                digest: super::blob_id::hex(&id),
            }),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(ObservedInputs {
        version: OBSERVED_VERSION,
        files,
        listed: Vec::new(),
        declared_read: Vec::new(),
        written: sorted(written),
        // The worker's own system files say nothing about the client's: left out, so that
        // the record travelling with the result stays small.
        outside: Vec::new(),
        executed: sorted(
            seen.executed
                .iter()
                .filter(|p| below(p, &roots).is_none())
                .cloned(),
        ),
    })
}

/// A path and what is there now (`None`: no file nor link).
type State = (PathBuf, Option<FoundFile>);

impl Session {
    /// The folders an observed absolute path may start with to be inside the repository:
    /// where steps run, as given and with its links resolved.
    fn observed_roots(&self) -> Vec<PathBuf> {
        let mut roots = vec![self.files_root.clone()];
        if let Ok(real) = self.files_root.canonicalize()
            && real != self.files_root
        {
            roots.push(real);
        }
        roots
    }

    /// Whether a repository-relative path can never be an observed input: git's own folder
    /// and the cache's.
    fn never_observed(&self, path: &Path) -> bool {
        path.as_os_str().is_empty() || path.starts_with(".git") || self.in_store(path)
    }

    /// Whether a repository-relative path lies in the step's declared outputs. A file there
    /// that the step read and did not make is an input (a user's `out/local.cfg`): a hit
    /// would put the old one back over an edit.
    fn in_outputs(step: &Step, path: &Path) -> bool {
        step.outputs
            .iter()
            .any(|o| path.starts_with(o.trim_end_matches('/')))
    }

    /// Turns what the tracer saw into the record stored with the entry: the undeclared
    /// files inside the repository with their digests as they are now (the step has
    /// ended), those it looked for and did not find, and the rest for `audit`.
    pub fn record_observation(
        &self,
        step: &Step,
        keyed: &super::Keyed,
        seen: &crate::observe::Observation,
        started: std::time::SystemTime,
    ) -> std::io::Result<ObservedInputs> {
        let roots = self.observed_roots();
        let written: BTreeSet<PathBuf> = seen
            .written
            .iter()
            .filter_map(|p| below(p, &roots))
            .collect();
        // Only what the step made is its own: a tracked file it wrote (`chmod +x` of a
        // script it then runs, a database opened read-write) was there before it, and
        // what it read there is an input.
        let own: BTreeSet<&PathBuf> = written
            .iter()
            .filter(|p| Candidate::lookup(&self.index, p).entry.is_none())
            .collect();
        let declared: BTreeSet<PathBuf> = keyed
            .record
            .inputs
            .iter()
            .map(|i| i.path.to_path())
            .collect();
        let mut outside = Vec::new();
        let mut read = BTreeSet::new();
        let mut declared_read = BTreeSet::new();
        for p in seen.read.iter().chain(&seen.executed) {
            match below(p, &roots) {
                None => outside.push(p.clone()),
                Some(rel) if self.never_observed(&rel) || own.contains(&rel) => {}
                Some(rel) if declared.contains(&rel) => {
                    declared_read.insert(rel);
                }
                Some(rel) => {
                    read.insert(rel);
                }
            }
        }
        let absent: BTreeSet<PathBuf> = seen
            .absent
            .iter()
            .filter_map(|p| below(p, &roots))
            .filter(|rel| {
                // What is missing in the outputs is the cache's to restore.
                !self.never_observed(rel)
                    && !Self::in_outputs(step, rel)
                    && !own.contains(rel)
                    && !declared.contains(rel)
                    && !read.contains(rel)
            })
            .collect();
        // The digests are taken now that the step has ended: a file changed while it ran
        // may not be what it read, so nothing is recorded then. A file it changed itself
        // is recorded as it left it.
        // A file it read that is gone was removed while it ran.
        let gone = |p: &PathBuf| !self.exists(p);
        if let Some(changed) = read
            .iter()
            .filter(|p| !written.contains(*p))
            .find(|p| self.changed_since(p, started) || gone(p))
            .or_else(|| absent.iter().find(|p| self.changed_since(p, started)))
        {
            return Err(std::io::Error::other(format!(
                "`{}` changed while the step ran",
                changed.display()
            )));
        }
        // Folders it listed, but not those it made, nor its outputs (a hit restores them).
        let listed: BTreeSet<PathBuf> = seen
            .listed
            .iter()
            .filter_map(|p| below(p, &roots).or_else(|| roots.contains(p).then(PathBuf::new)))
            .filter(|rel| {
                (rel.as_os_str().is_empty() || !self.never_observed(rel))
                    && !Self::in_outputs(step, rel)
                    && !own.contains(rel)
            })
            .collect();
        let listed = if listed.is_empty() {
            Vec::new()
        } else {
            // Taken now, as what the step left (the run's list may be older).
            let below_all = if listed.iter().any(|p| p.as_os_str().is_empty()) {
                Vec::new()
            } else {
                listed.iter().cloned().collect()
            };
            let untracked = if self.from_commit {
                Vec::new()
            } else {
                crate::git::untracked_files(&self.root, &below_all)
                    .map_err(|e| std::io::Error::other(e.to_string()))?
            };
            listed
                .into_iter()
                .map(|path| ListedFolder {
                    names: self.names_in(&path, &untracked),
                    path: RecordPath::new(&path),
                })
                .collect()
        };
        let mut files = Vec::with_capacity(read.len() + absent.len());
        let (digests, missing) = self.observed_states(read.iter().chain(&absent))?;
        for (path, found) in digests {
            // Neither file, link nor folder (a socket, a fifo): nothing to check.
            if found.is_none() && !missing.contains(&path) {
                continue;
            }
            files.push(ObservedFile {
                path: RecordPath::new(&path),
                found,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ObservedInputs {
            version: OBSERVED_VERSION,
            files,
            listed,
            declared_read: sorted(declared_read),
            written: sorted(written),
            outside: sorted(outside),
            executed: sorted(
                seen.executed
                    .iter()
                    .filter(|p| below(p, &roots).is_none())
                    .cloned(),
            ),
        })
    }

    /// What each path is now: its mode and blob id when it is a file or a link, the folder
    /// mode when it is a folder; `None` otherwise. The second set holds the paths that do
    /// not exist at all.
    fn observed_states<'p>(
        &self,
        paths: impl Iterator<Item = &'p PathBuf>,
    ) -> std::io::Result<(Vec<State>, BTreeSet<PathBuf>)> {
        let mut paths: Vec<&PathBuf> = paths.collect();
        paths.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
        paths.dedup();
        let candidates: Vec<Candidate> = paths
            .iter()
            .map(|p| Candidate::lookup(&self.index, p))
            .collect();
        // A commit's files come from its tree; what is not in it (a file git ignores, one
        // an earlier step made) from the folder the step ran in.
        let (in_tree, on_disk): (Vec<Candidate>, Vec<Candidate>) = if self.from_commit {
            candidates.into_iter().partition(|c| c.entry.is_some())
        } else {
            (Vec::new(), candidates)
        };
        let mut digested = super::inputs::digest_from_tree(&in_tree).0;
        digested.extend(super::inputs::digest_all(&self.files_root, &self.index, &on_disk)?.0);
        let mut by_path: std::collections::HashMap<PathBuf, FoundFile> = digested
            .into_iter()
            .map(|f| {
                (
                    f.path.to_path(),
                    FoundFile {
                        mode: f.mode,
                        digest: f.digest,
                    },
                )
            })
            .collect();
        let mut missing = BTreeSet::new();
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            let found = by_path.remove(p.as_path()).or_else(|| {
                self.is_folder(p).then(|| FoundFile {
                    mode: FOLDER_MODE.into(),
                    digest: String::new(),
                })
            });
            if found.is_none() && !self.exists(p) {
                missing.insert(p.clone());
            }
            out.push((p.clone(), found));
        }
        Ok((out, missing))
    }

    /// The names in a repository-relative folder as git sees it: its tracked files and
    /// folders (from the index, or the commit's tree when a commit is checked) and the
    /// untracked ones git does not ignore, sorted. An ignored file is no input, listed or
    /// not. A tracked name deleted from the folder the steps run in is not there: the step
    /// did not see it. `untracked`: the untracked files below it, at least.
    fn names_in(&self, rel: &Path, untracked: &[PathBuf]) -> Vec<RecordPath> {
        let files = &self.index.files;
        let mut prefix = rel.as_os_str().as_encoded_bytes().to_vec();
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        // The index is sorted by path bytes: the files below `rel/` are one run of it.
        let start = files.partition_point(|f| f.path.as_os_str().as_encoded_bytes() < &prefix[..]);
        let tracked = files[start..]
            .iter()
            .map(|f| f.path.as_path())
            .take_while(|p| p.as_os_str().as_encoded_bytes().starts_with(&prefix));
        let others = self
            .index
            .gitlinks
            .iter()
            .map(|(g, _)| g.as_path())
            .chain(untracked.iter().map(PathBuf::as_path));
        let names: BTreeSet<PathBuf> = tracked
            .chain(others)
            .filter_map(|p| {
                let first = p.strip_prefix(rel).ok()?.components().next()?;
                Some(PathBuf::from(first.as_os_str()))
            })
            .collect();
        names
            .iter()
            .filter(|n| {
                self.from_commit || self.files_root.join(rel).join(n).symlink_metadata().is_ok()
            })
            .map(|n| RecordPath::new(n))
            .collect()
    }

    /// Whether a repository-relative path is a folder: in the commit's tree when a commit
    /// is checked, or in the folder the steps run in (a link to a folder is a link).
    fn is_folder(&self, rel: &Path) -> bool {
        if self.in_tree(rel) {
            return Candidate::lookup(&self.index, rel).entry.is_none();
        }
        self.files_root
            .join(rel)
            .symlink_metadata()
            .is_ok_and(|m| m.is_dir())
    }

    /// Whether a path is in the commit's tree (a file, a folder or a submodule) when a
    /// commit is checked: its state comes from there, not from the folder the step ran in.
    fn in_tree(&self, rel: &Path) -> bool {
        if !self.from_commit {
            return false;
        }
        let key = rel.as_os_str().as_encoded_bytes();
        // A folder of the tree: some file's path starts with `rel/` (the files are sorted
        // by path bytes, so the first one at or after that prefix tells).
        let mut prefix = key.to_vec();
        prefix.push(b'/');
        let files = &self.index.files;
        let at = files.partition_point(|f| f.path.as_os_str().as_encoded_bytes() < &prefix[..]);
        Candidate::lookup(&self.index, rel).entry.is_some()
            || files
                .get(at)
                .is_some_and(|f| f.path.as_os_str().as_encoded_bytes().starts_with(&prefix))
            || self.index.gitlinks.iter().any(|(g, _)| g == rel)
    }

    /// Whether the file or link at a repository-relative path was changed (or made) at or
    /// after `since`, by its change time. A commit's files do not change.
    fn changed_since(&self, rel: &Path, since: std::time::SystemTime) -> bool {
        use std::os::unix::fs::MetadataExt;
        if self.in_tree(rel) {
            return false;
        }
        // Only a folder's existence is recorded, and its change time moves whenever the
        // step itself adds a file to it.
        let Ok(meta) = self.files_root.join(rel).symlink_metadata() else {
            return false;
        };
        if meta.is_dir() {
            return false;
        }
        let changed = std::time::UNIX_EPOCH
            + std::time::Duration::new(
                meta.ctime().max(0) as u64,
                meta.ctime_nsec().clamp(0, 999_999_999) as u32,
            );
        changed >= since
    }

    /// Whether anything (a file, a link, a folder) is at a repository-relative path: in the
    /// commit's tree when a commit is checked, or in the folder the steps run in.
    fn exists(&self, rel: &Path) -> bool {
        if self.in_tree(rel) {
            return true;
        }
        match self.files_root.join(rel).symlink_metadata() {
            Ok(_) => true,
            Err(e) => !matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)),
        }
    }

    /// Whether this step's reads are to be observed: `[settings] observe` and its own
    /// `observe` allow it.
    pub fn observe_wanted(&self, step: &Step) -> bool {
        self.observe && step.observe
    }

    /// Whether this step's reads are observed when it runs: observing is wanted and the
    /// system can observe.
    pub fn observes(&self, step: &Step) -> bool {
        self.observe_wanted(step)
            && matches!(
                crate::observe::support(),
                crate::observe::Support::Available
            )
    }

    /// True the first time in this run that observing was wanted and could not be done.
    pub fn first_unobservable(&self) -> bool {
        !self
            .unobservable_said
            .swap(true, std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_below_the_root_are_made_relative_and_normalised() {
        let roots = vec![PathBuf::from("/repo"), PathBuf::from("/real/repo")];
        assert_eq!(
            below(Path::new("/repo/a/../.shellcheckrc"), &roots),
            Some(PathBuf::from(".shellcheckrc"))
        );
        assert_eq!(
            below(Path::new("/real/repo/lib/./h.sh"), &roots),
            Some(PathBuf::from("lib/h.sh"))
        );
        assert_eq!(below(Path::new("/repository/x"), &roots), None);
        assert_eq!(below(Path::new("/etc/passwd"), &roots), None);
    }
}
