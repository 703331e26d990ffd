//! Keeping unstaged work safe while pre-commit steps look at exactly what will be committed.
//!
//! Before the work tree is touched, every tracked path whose work-tree state differs from the
//! index is backed up under the git dir, byte for byte (see `backup`): the user's version, the
//! staged version git would check out, and a manifest, all synced to disk. Untracked files or
//! folders standing where a tracked path must go are moved into the backup, never deleted.
//! Only then are those paths (and no others) given their staged content, each file written
//! beside its target and renamed over it.
//!
//! Afterwards each path gets the user's bytes back, or, where a fixer changed the file, the
//! fixer's edit merged with the user's work. If the two collide, the fixer's edits are undone
//! and the user's bytes come back exactly. The backup is deleted only once every path reads
//! back as it should; the index is updated last, in one step. A backup left by a run that was
//! killed is put back by the next preflight command (or `preflight recover`), for each path
//! still holding what preflight wrote there; a path changed since is left alone and named.
//!
//! Here: `Stash`, one run's save and restore. Below it: `aside` (what was set aside and the
//! plan that puts it back), `recover` (a killed run's backup), `io` (the lock, git's NUL
//! lists, synced writes, fault points). Dependencies go down only: `io` imports none of
//! the others, and nothing below imports `Stash`.

mod aside;
mod io;
mod recover;

pub use recover::{Recovery, recover};

use crate::error::{Error, Result};
use crate::git::{GitCli, Repo};
use crate::hooks::backup::{self, Node};
use aside::{Plan, SetAside};
use io::{
    backup_root, changed_paths, fault, git_with_input, git_with_input_on, io_err, list, lock,
    nul_list, os, real_index_lock, run_name, with_paths, write_synced,
};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Unstaged work saved for the length of a pre-commit run. Dropping it without `restore`
/// (an early return, a panic) still puts the work back.
pub struct Stash {
    git: GitCli,
    root: PathBuf,
    saved: Option<SetAside>,
    /// Intent-to-add files, taken out of the index for the run and put back after.
    intent_to_add: Vec<PathBuf>,
    /// The list of those files on disk, so a killed run can be repaired.
    intent_to_add_file: Option<PathBuf>,
    /// Paths that differed from the index while the steps ran (nothing set aside), as they
    /// were: a fixer changed one of them only if it is different afterwards.
    dirty_before: BTreeMap<PathBuf, Node>,
    /// Whether `dirty_before` was taken (it is when steps may edit files).
    fixers: bool,
    /// During `git commit PATH...`: the real index, which git holds as `index.lock` and puts
    /// in place after the commit, so that staged fixes reach it too.
    real_index_lock: Option<PathBuf>,
    finished: bool,
    /// The stat data of the files looked at to find that nothing needed setting aside (and
    /// nothing was): still what the work tree holds when the steps start.
    taken: Option<crate::lstat::Taken>,
    /// Held from save to restore, so that no other preflight "recovers" this run's backup.
    _lock: std::fs::File,
}

/// How putting the work back went.
#[derive(Debug, Default)]
pub struct Restored {
    /// Files whose fixer edits were staged.
    pub staged: Vec<PathBuf>,
    /// Files fixers changed that were not staged (left as unstaged changes).
    pub left_unstaged: Vec<PathBuf>,
    /// Set when fixer edits collided with the unstaged work and were rolled back.
    pub rolled_back: Vec<PathBuf>,
    /// Where the rolled-back versions were copied first: an edit made while the steps ran
    /// (an editor saving) looks like a fixer's, and must not be lost with it.
    pub undone_kept: Option<PathBuf>,
}

impl Stash {
    /// Saves the unstaged changes and leaves tracked files as they are staged. When every step
    /// only looks at the files it is given, `scope` names those files: if none of them has
    /// unstaged changes, nothing needs to be set aside and the work tree is left alone.
    /// `fixers` says whether steps may edit files (so their edits must be told apart).
    pub fn save(repo: &Repo, scope: Option<&[PathBuf]>, fixers: bool) -> Result<Stash> {
        let lock = lock(repo, true)?
            .ok_or_else(|| Error::Setup("cannot lock the unstaged-work folder".into()))?;
        let unmerged = repo.unmerged_files()?;
        if !unmerged.is_empty() {
            return Err(Error::Setup(format!(
                "{} {} unresolved merge conflicts, so there is nothing to check yet",
                list(&unmerged),
                if unmerged.len() == 1 { "has" } else { "have" }
            ))
            .hint("resolve the conflicts and `git add` the files, then commit again"));
        }
        let git = repo.cli()?;
        let dir = backup_root(repo);
        let name = run_name();
        let intent_to_add = repo.intent_to_add_files()?;
        let mut intent_to_add_file = None;
        if !intent_to_add.is_empty() {
            // Written before the index changes, so a killed run can put them back.
            let path = dir.join(format!("{name}.ita"));
            write_synced(&path, &nul_list(&intent_to_add))?;
            intent_to_add_file = Some(path);
            git.run(&with_paths(
                &[os("rm"), os("--cached"), os("--quiet")],
                &intent_to_add,
            ))?;
        }
        let mut stash = Stash {
            git,
            root: repo.root.clone(),
            saved: None,
            intent_to_add,
            intent_to_add_file,
            dirty_before: BTreeMap::new(),
            fixers,
            real_index_lock: real_index_lock(repo),
            finished: false,
            taken: None,
            _lock: lock,
        };
        // The common case, no unstaged changes, is decided from the index's stat data alone.
        let (clean, taken) = match stash.intent_to_add.is_empty() {
            true => repo.work_tree_matches_index_taken(scope)?,
            false => (false, None),
        };
        if clean && !fixers {
            stash.taken = taken;
            return Ok(stash);
        }
        let changed = changed_paths(&stash.git)?;
        if clean || changed.is_empty() {
            // Nothing set aside: remember what was already different, to know fixers' edits.
            for path in changed {
                let node = backup::node_at(&stash.root, &path)
                    .map_err(io_err(format!("cannot read {}", path.display())))?;
                stash.dirty_before.insert(path, node);
            }
            return Ok(stash);
        }
        match SetAside::capture(&stash.git, &stash.root, &dir.join(&name), &changed) {
            Ok(saved) => stash.saved = Some(saved),
            Err(e) => {
                // Nothing is set aside: only the intent-to-add files need to go back.
                stash.finished = true;
                stash.readd_intent_to_add();
                return Err(e);
            }
        }
        // From here on, dropping the stash (an error, a panic) puts everything back.
        let ready = fault("saved")
            .map_err(io_err("cannot save unstaged changes"))
            .and_then(|()| match &stash.saved {
                Some(saved) => saved.set_staged_content(&stash.root),
                None => Ok(()),
            })
            .and_then(|()| fault("set-aside").map_err(io_err("cannot set the work tree up")));
        if let Err(e) = ready {
            stash.finished = true;
            let undone = stash.put_back(false, &[], true);
            stash.readd_intent_to_add();
            return Err(match undone {
                Ok(_) => e.reworded(|e| {
                    format!("cannot set unstaged changes aside ({e}); the work tree is as it was")
                }),
                Err(again) => again,
            });
        }
        Ok(stash)
    }

    /// Whether unstaged changes were set aside.
    /// The stat data taken of the files checked for unstaged work, when nothing was set
    /// aside: the files are as they were then, so the steps' first look can use it.
    pub fn take_stats(&mut self) -> Option<crate::lstat::Taken> {
        self.taken.take()
    }

    pub fn saved_changes(&self) -> bool {
        self.saved.is_some()
    }

    /// Puts the unstaged work back. When fixers ran, their edits to the files in `stage` are
    /// staged; their edits elsewhere stay as unstaged changes.
    pub fn restore(mut self, fixers_ran: bool, stage: &[PathBuf]) -> Result<Restored> {
        // A panic inside leaves `finished` unset, so that dropping the stash still puts the
        // work back.
        let result = self.put_back(fixers_ran, stage, false);
        self.finished = true;
        self.readd_intent_to_add();
        result
    }

    /// Copies what `paths` hold now (files and symlinks) to `<git dir>/preflight/undone/<run>/`
    /// before they are rolled back; `None` when none of them holds anything.
    fn keep_undone(&self, paths: &[PathBuf]) -> Result<Option<PathBuf>> {
        let mut kept_dir = None;
        for path in paths {
            let source = self.root.join(path);
            let Ok(meta) = std::fs::symlink_metadata(&source) else {
                continue;
            };
            if !meta.is_file() && !meta.is_symlink() {
                continue;
            }
            let dir = match &kept_dir {
                Some(dir) => PathBuf::clone(dir),
                None => {
                    let base = self.git.run(&[
                        os("rev-parse"),
                        os("--path-format=absolute"),
                        os("--git-path"),
                        os("preflight/undone"),
                    ])?;
                    let base = PathBuf::from(OsString::from_vec(
                        base.strip_suffix(b"\n").unwrap_or(&base).to_vec(),
                    ));
                    base.join(run_name())
                }
            };
            let target = dir.join(path);
            let kept = target
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| {
                    if meta.is_symlink() {
                        std::os::unix::fs::symlink(std::fs::read_link(&source)?, &target)
                    } else {
                        std::fs::copy(&source, &target).map(|_| ())
                    }
                });
            kept.map_err(|e| {
                Error::io(
                    format!(
                        "cannot keep a copy of {} (to {}) before undoing the changes made to it",
                        path.display(),
                        target.display()
                    ),
                    e,
                )
            })?;
            kept_dir = Some(dir);
        }
        Ok(kept_dir)
    }

    fn put_back(&self, fixers_ran: bool, stage: &[PathBuf], undo_all: bool) -> Result<Restored> {
        let mut restored = Restored::default();
        let listed: BTreeSet<&Path> = self
            .saved
            .iter()
            .flat_map(|s| s.manifest.entries.iter().map(|e| e.path.as_path()))
            .collect();
        // Files outside the backup that a fixer changed (they matched the index before, or
        // were already different and are different again now).
        let mut others = Vec::new();
        if fixers_ran && (self.fixers || self.saved.is_some()) {
            for path in changed_paths(&self.git)? {
                if listed.contains(path.as_path()) {
                    continue;
                }
                if let Some(before) = self.dirty_before.get(&path)
                    && backup::node_at(&self.root, &path).ok().as_ref() == Some(before)
                {
                    continue;
                }
                others.push(path);
            }
        }
        let plan = match &self.saved {
            Some(saved) => saved.plan(&self.git, &self.root, undo_all)?,
            None => Plan::default(),
        };
        let in_stage = |p: &PathBuf| stage.iter().any(|s| s == p);
        if plan.collided || undo_all {
            restored.rolled_back = plan.fixed.iter().map(|f| f.path.clone()).collect();
            restored.rolled_back.extend(others.iter().cloned());
            restored.undone_kept = self.keep_undone(&restored.rolled_back)?;
            if let Some(saved) = &self.saved {
                saved.write_back(&self.root, &plan)?;
            }
            // Files that matched the index before the fixers ran get that content back (the
            // index has not changed); files with the user's own edits are left alone.
            let revert: Vec<PathBuf> = others
                .iter()
                .filter(|p| !self.dirty_before.contains_key(*p))
                .cloned()
                .collect();
            if !revert.is_empty() {
                self.git.run(&with_paths(
                    &[os("checkout-index"), os("-f"), os("-q")],
                    &revert,
                ))?;
            }
            if !undo_all {
                restored.rolled_back.sort();
            }
            return Ok(restored);
        }
        // The fixers' versions of set-aside files are made into blobs before the files get
        // the user's work back (merged with the fix).
        let mut index_info = Vec::new();
        for fixed in &plan.fixed {
            if !in_stage(&fixed.path) {
                restored.left_unstaged.push(fixed.path.clone());
                continue;
            }
            let mut path_arg = OsString::from("--path=");
            path_arg.push(fixed.path.as_os_str());
            let id = git_with_input(
                &self.git,
                &[os("hash-object"), os("-w"), os("--stdin"), &path_arg],
                fixed.bytes.clone(),
            )?;
            let mode = if fixed.mode & 0o111 != 0 {
                "100755"
            } else {
                "100644"
            };
            index_info.extend_from_slice(mode.as_bytes());
            index_info.push(b' ');
            index_info.extend_from_slice(String::from_utf8_lossy(&id).trim().as_bytes());
            index_info.push(b'\t');
            index_info.extend_from_slice(fixed.path.as_os_str().as_bytes());
            index_info.push(0);
            restored.staged.push(fixed.path.clone());
        }
        if let Some(saved) = &self.saved {
            saved.write_back(&self.root, &plan)?;
        }
        let (to_add, unstaged): (Vec<PathBuf>, Vec<PathBuf>) =
            others.into_iter().partition(|p| in_stage(p));
        restored.left_unstaged.extend(unstaged);
        fault("restage").map_err(io_err("cannot stage the fixes"))?;
        if !index_info.is_empty() {
            git_with_input(
                &self.git,
                &[os("update-index"), os("-z"), os("--index-info")],
                index_info,
            )?;
        }
        if !to_add.is_empty() {
            self.git.run(&with_paths(&[os("add")], &to_add))?;
        }
        restored.staged.extend(to_add);
        restored.staged.sort();
        if let Some(lock) = &self.real_index_lock
            && !restored.staged.is_empty()
        {
            let entries = self.git.run(&with_paths(
                &[os("ls-files"), os("--stage"), os("-z")],
                &restored.staged,
            ))?;
            git_with_input_on(
                &self.git,
                Some(lock),
                &[os("update-index"), os("-z"), os("--index-info")],
                entries,
            )?;
        }
        restored.left_unstaged.sort();
        Ok(restored)
    }

    fn readd_intent_to_add(&self) {
        if !self.intent_to_add.is_empty() {
            let _ = self.git.run(&with_paths(
                &[os("add"), os("--intent-to-add")],
                &self.intent_to_add,
            ));
        }
        if let Some(list) = &self.intent_to_add_file {
            let _ = std::fs::remove_file(list);
        }
    }
}

impl Drop for Stash {
    /// A run that ends without `restore` (an error, a panic) undoes every edit made since the
    /// save and puts the user's work back; what cannot be put back stays in the backup, for
    /// the next command to recover.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let _ = self.put_back(false, &[], true);
        self.readd_intent_to_add();
    }
}
