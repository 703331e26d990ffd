//! The set-aside work of one run: what was backed up, giving paths their staged content,
//! and, afterwards, the plan that puts the user's bytes (or a clean merge with a fixer's
//! edit) back. Imports the low-level helpers of `io`, never the `Stash` above it.

use super::io::{fault, git_with_input, io_err, nul_list, os, write_copy};
use crate::error::{Error, Result};
use crate::git::GitCli;
use crate::hooks::backup::{self, Entry, Manifest, Node, Replacement};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// One backup folder under `<git dir>/preflight/unstaged/`, and what it records.
pub(super) struct SetAside {
    pub(super) dir: PathBuf,
    pub(super) manifest: Manifest,
}

/// One set-aside file that a step changed: its new content, to stage and merge.
pub(super) struct Fixed {
    pub(super) path: PathBuf,
    pub(super) bytes: Vec<u8>,
    pub(super) mode: u32,
}

/// What to write back for each backed-up path.
#[derive(Default)]
pub(super) struct Plan {
    /// Per manifest entry: the content to write (`None`: the user's own version).
    pub(super) merged: Vec<Option<Vec<u8>>>,
    pub(super) fixed: Vec<Fixed>,
    /// A fixer's edit could not be merged with the user's work.
    pub(super) collided: bool,
}

impl SetAside {
    /// Backs up every path in `changed` into `dir`; the work tree is not touched yet.
    pub(super) fn capture(
        git: &GitCli,
        root: &Path,
        dir: &Path,
        changed: &[PathBuf],
    ) -> Result<SetAside> {
        let mut partial = dir.as_os_str().to_os_string();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let manifest = match capture(git, root, &partial, changed) {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(e);
            }
        };
        if let Err(e) = std::fs::rename(&partial, dir) {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(Error::io("cannot save unstaged changes", e));
        }
        backup::sync_parent(dir);
        Ok(SetAside {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// Every work-tree path a restore writes, moves back or removes.
    pub(super) fn written_paths(&self, root: &Path) -> Vec<PathBuf> {
        let entries = self.manifest.entries.iter().map(|e| &e.path);
        entries
            .chain(&self.manifest.moved)
            .map(|p| root.join(p))
            .collect()
    }

    /// Whether `path` lies in (or is) an untracked thing that is still in its place: not
    /// moved aside yet, or already moved back. Such a path was never written.
    pub(super) fn in_unmoved(&self, path: &Path) -> bool {
        self.manifest.moved.iter().any(|m| {
            path.starts_with(m) && std::fs::symlink_metadata(self.dir.join("work").join(m)).is_err()
        })
    }

    /// Moves what is in the way aside, then writes each path's staged version.
    pub(super) fn set_staged_content(&self, root: &Path) -> Result<()> {
        let work = self.dir.join("work");
        for path in &self.manifest.moved {
            let to = work.join(path);
            let moved = to
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::rename(root.join(path), &to));
            moved.map_err(|e| {
                Error::io(
                    format!(
                        "cannot move the untracked {} out of the way of a tracked path (to {})",
                        path.display(),
                        to.display()
                    ),
                    e,
                )
            })?;
            backup::sync_parent(&to);
            backup::sync_parent(&root.join(path));
        }
        for path in &self.manifest.created_dirs {
            let target = root.join(path);
            if backup::node_of(&target).ok() != Some(Node::Dir) {
                std::fs::create_dir(&target)
                    .map_err(io_err(format!("cannot create {}", target.display())))?;
            }
        }
        for entry in &self.manifest.entries {
            let staged = Replacement::read(&self.dir.join("index").join(&entry.path))
                .map_err(io_err("cannot read the saved staged version"))?;
            let target = root.join(&entry.path);
            backup::replace_with(&target, &staged)
                .map_err(io_err(format!("cannot write {}", target.display())))?;
        }
        Ok(())
    }

    /// Decides what each path gets back: the user's version, or the user's version merged
    /// with a fixer's edit. With `undo_all`, every path gets the user's version.
    pub(super) fn plan(&self, git: &GitCli, root: &Path, undo_all: bool) -> Result<Plan> {
        let mut plan = Plan::default();
        for entry in &self.manifest.entries {
            if self.in_unmoved(&entry.path) {
                plan.merged.push(None);
                continue;
            }
            let now = backup::node_at(root, &entry.path)
                .map_err(io_err(format!("cannot read {}", entry.path.display())))?;
            let staged = backup::node_of(&self.dir.join("index").join(&entry.path))
                .map_err(io_err("cannot read the saved staged version"))?;
            if now == staged || now == entry.user || undo_all {
                plan.merged.push(None);
                continue;
            }
            // A step changed the file: keep its edit if it merges with the user's work.
            let merged = match (&now, &entry.user, &staged) {
                (Node::File { mode, .. }, Node::File { .. }, Node::File { .. }) => {
                    let bytes = std::fs::read(root.join(&entry.path))
                        .map_err(io_err(format!("cannot read {}", entry.path.display())))?;
                    plan.fixed.push(Fixed {
                        path: entry.path.clone(),
                        bytes,
                        mode: *mode,
                    });
                    self.merge(git, root, entry)?
                }
                _ => None,
            };
            if merged.is_none() {
                plan.collided = true;
                if !plan.fixed.iter().any(|f| f.path == entry.path) {
                    plan.fixed.push(Fixed {
                        path: entry.path.clone(),
                        bytes: Vec::new(),
                        mode: 0,
                    });
                }
            }
            plan.merged.push(merged);
        }
        Ok(plan)
    }

    /// The user's version with the fixer's edit merged in, or `None` when they collide.
    pub(super) fn merge(
        &self,
        git: &GitCli,
        root: &Path,
        entry: &Entry,
    ) -> Result<Option<Vec<u8>>> {
        let out = git.output(&[
            os("merge-file"),
            os("-p"),
            os("--quiet"),
            self.dir.join("work").join(&entry.path).as_os_str(),
            self.dir.join("index").join(&entry.path).as_os_str(),
            root.join(&entry.path).as_os_str(),
        ])?;
        Ok(out.status.success().then_some(out.stdout))
    }

    /// Writes the plan into the work tree, puts moved things back, and deletes the backup once
    /// all of it reads back as it should.
    pub(super) fn write_back(&self, root: &Path, plan: &Plan) -> Result<()> {
        let undo_fixes = plan.collided;
        if !undo_fixes {
            self.keep_merged(plan)
                .map_err(|e| self.recovery_error(Path::new("the merged files"), e))?;
        }
        for (i, entry) in self.manifest.entries.iter().enumerate() {
            let merged = if undo_fixes {
                None
            } else {
                plan.merged.get(i).cloned().flatten()
            };
            self.put_entry(root, entry, merged)
                .map_err(|e| self.recovery_error(&entry.path, e))?;
            if i == 0 {
                fault("restore").map_err(|e| self.recovery_error(&entry.path, e))?;
            }
        }
        remove_created_dirs(root, &self.manifest);
        for path in &self.manifest.moved {
            self.move_back(root, path)
                .map_err(|e| self.recovery_error(path, e))?;
        }
        // The user's files must be on disk before their only other copy goes.
        backup::sync_paths(root, &self.written_paths(root))
            .map_err(|e| self.recovery_error(Path::new("the work tree"), e))?;
        std::fs::remove_dir_all(&self.dir)
            .map_err(|e| self.recovery_error(Path::new("the backup"), e))?;
        Ok(())
    }

    /// Records in the backup (`merged/<path>`) what each merged file is about to become, so
    /// that a run killed while writing them can tell that version from an edit made since.
    pub(super) fn keep_merged(&self, plan: &Plan) -> std::io::Result<()> {
        let mut kept = Vec::new();
        for (entry, merged) in self.manifest.entries.iter().zip(&plan.merged) {
            if let (Some(bytes), Node::File { mode, .. }) = (merged, &entry.user) {
                let path = self.dir.join("merged").join(&entry.path);
                write_copy(&path, bytes, *mode)?;
                kept.push(path);
            }
        }
        if kept.is_empty() {
            return Ok(());
        }
        backup::sync_paths(&self.dir, &kept)
    }

    pub(super) fn put_entry(
        &self,
        root: &Path,
        entry: &Entry,
        merged: Option<Vec<u8>>,
    ) -> std::io::Result<()> {
        if self.in_unmoved(&entry.path) {
            return Ok(());
        }
        let target = root.join(&entry.path);
        match (&entry.user, merged) {
            (Node::File { mode, .. }, Some(bytes)) => {
                backup::replace_with(&target, &Replacement::File { bytes, mode: *mode })
            }
            (Node::File { .. } | Node::Link(_), None) => {
                let mine = self.dir.join("work").join(&entry.path);
                let content = match &entry.user {
                    Node::Link(to) => Replacement::Link(to.clone()),
                    _ => Replacement::read(&mine)?,
                };
                if backup::node_at(root, &entry.path)? == entry.user {
                    return Ok(());
                }
                backup::replace_with(&target, &content)?;
                if backup::node_of(&target)? != entry.user {
                    return Err(std::io::Error::other(
                        "the saved copy does not match what was saved",
                    ));
                }
                Ok(())
            }
            _ => {
                // The user had nothing here: remove the staged version written in its place.
                match backup::node_at(root, &entry.path)? {
                    Node::Absent => Ok(()),
                    Node::Dir => Err(std::io::Error::other(
                        "a folder now stands where the user had nothing",
                    )),
                    _ => std::fs::remove_file(&target),
                }
            }
        }
    }

    pub(super) fn move_back(&self, root: &Path, path: &Path) -> std::io::Result<()> {
        let from = self.dir.join("work").join(path);
        if std::fs::symlink_metadata(&from).is_err() {
            return Ok(()); // Never moved (or already back).
        }
        if backup::node_at(root, path)? != Node::Absent
            || backup::blocking_ancestor(root, path)?.is_some()
        {
            return Err(std::io::Error::other(format!(
                "something now stands at {}",
                path.display()
            )));
        }
        std::fs::rename(&from, root.join(path))?;
        backup::sync_parent(&root.join(path));
        Ok(())
    }

    pub(super) fn recovery_error(&self, path: &Path, e: std::io::Error) -> Error {
        Error::Io {
            message: format!(
                "cannot put back {}: {e}\nyour unstaged work is safe in {}: your own versions of \
                 the files are in its work/ folder, by path.",
                path.display(),
                self.dir.display()
            ),
            source: e,
        }
        .hint(
            "once the cause is fixed (free some disk space?), run `preflight recover` to put \
             everything back",
        )
    }
}

/// Removes the folders the set-aside created, deepest first, when they are empty again.
pub(super) fn remove_created_dirs(root: &Path, manifest: &Manifest) {
    for dir in manifest.created_dirs.iter().rev() {
        let _ = std::fs::remove_dir(root.join(dir));
    }
}

/// Writes the backup into `partial`: each path's staged version (from git), the user's own
/// version, and the manifest, all synced.
pub(super) fn capture(
    git: &GitCli,
    root: &Path,
    partial: &Path,
    changed: &[PathBuf],
) -> Result<Manifest> {
    let failed = |e| {
        Error::io(
            format!("cannot save unstaged changes to {}", partial.display()),
            e,
        )
    };
    let work = partial.join("work");
    std::fs::create_dir_all(&work).map_err(failed)?;
    let mut prefix = partial.join("index").into_os_string();
    prefix.push("/");
    let mut prefix_arg = OsString::from("--prefix=");
    prefix_arg.push(&prefix);
    git_with_input(
        git,
        &[os("checkout-index"), os("-z"), os("--stdin"), &prefix_arg],
        nul_list(changed),
    )?;
    let mut manifest = Manifest::default();
    let mut moved = BTreeSet::new();
    for path in changed {
        if let Some(blocker) = backup::blocking_ancestor(root, path).map_err(failed)? {
            moved.insert(blocker);
            manifest.entries.push(Entry {
                path: path.clone(),
                user: Node::Absent,
            });
            continue;
        }
        let user = match backup::node_of(&root.join(path)).map_err(failed)? {
            Node::Dir => {
                moved.insert(path.clone());
                Node::Absent
            }
            Node::Other => {
                return Err(Error::Setup(format!(
                    "cannot set aside {}: it is neither a file, a symlink nor a folder",
                    path.display()
                ))
                .hint("move it away, then commit again"));
            }
            Node::File { mode, .. } => {
                let bytes = std::fs::read(root.join(path)).map_err(failed)?;
                let copy = work.join(path);
                write_copy(&copy, &bytes, mode).map_err(failed)?;
                Node::File {
                    mode,
                    digest: backup::digest_of(&bytes),
                }
            }
            node => node,
        };
        manifest.entries.push(Entry {
            path: path.clone(),
            user,
        });
    }
    // Folders the staged files need that are not there (or will be moved away).
    let mut created = BTreeSet::new();
    for path in changed {
        let mut prefix = PathBuf::new();
        for part in path.parent().into_iter().flat_map(Path::components) {
            prefix.push(part);
            let in_moved = moved.iter().any(|m| prefix.starts_with(m));
            if in_moved || backup::node_at(root, &prefix).map_err(failed)? == Node::Absent {
                created.insert(prefix.clone());
            }
        }
    }
    manifest.moved = moved.into_iter().collect();
    manifest.created_dirs = created.into_iter().collect();
    std::fs::write(partial.join("manifest"), manifest.to_text()).map_err(failed)?;
    let written = backup::files_below(partial).map_err(failed)?;
    backup::sync_paths(partial, &written).map_err(failed)?;
    Ok(manifest)
}
