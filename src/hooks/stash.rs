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

use super::backup::{self, Entry, Manifest, Node, Replacement};
use crate::error::{Error, Result};
use crate::git::{GitCli, Repo};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

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
    /// Held from save to restore, so that no other preflight "recovers" this run's backup.
    _lock: std::fs::File,
}

/// One backup folder under `<git dir>/preflight/unstaged/`, and what it records.
struct SetAside {
    dir: PathBuf,
    manifest: Manifest,
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

fn backup_root(repo: &Repo) -> PathBuf {
    repo.git_dir().join("preflight").join("unstaged")
}

/// Opens and locks `<git dir>/preflight/unstaged.lock`; `wait = false` gives up if it is held.
fn lock(repo: &Repo, wait: bool) -> Result<Option<std::fs::File>> {
    use std::os::fd::AsRawFd;
    let dir = repo.git_dir().join("preflight");
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    let path = dir.join("unstaged.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let mode = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    // SAFETY: flock on a descriptor we own; the lock goes with the file when it is dropped.
    let r = unsafe { libc::flock(file.as_raw_fd(), mode) };
    if r != 0 {
        let err = std::io::Error::last_os_error();
        if !wait && err.kind() == std::io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        return Err(Error::io(format!("cannot lock {}", path.display()), err));
    }
    Ok(Some(file))
}

/// A name for this run's files: time, then process id.
fn run_name() -> String {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{stamp}-{}", std::process::id())
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Splits NUL-separated git output into paths.
fn nul_paths(bytes: &[u8]) -> Vec<PathBuf> {
    bytes
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(OsString::from_vec(p.to_vec())))
        .collect()
}

fn nul_list(paths: &[PathBuf]) -> Vec<u8> {
    let mut list = Vec::new();
    for p in paths {
        list.extend_from_slice(p.as_os_str().as_bytes());
        list.push(0);
    }
    list
}

fn with_paths<'a>(args: &[&'a OsStr], paths: &'a [PathBuf]) -> Vec<&'a OsStr> {
    let mut all = args.to_vec();
    all.push(os("--"));
    all.extend(paths.iter().map(|p| p.as_os_str()));
    all
}

/// For tests only: `PREFLIGHT_TEST_FAULT=<phase>:<kill|panic|enospc>` makes the run die, panic
/// or meet a full disk at that phase (`saved`, `set-aside`, `restore`, `restage`), so the
/// fault-matrix tests can prove that nothing is lost. Never set it outside tests.
fn fault(phase: &str) -> std::io::Result<()> {
    let Some(spec) = std::env::var_os("PREFLIGHT_TEST_FAULT") else {
        return Ok(());
    };
    let spec = spec.to_string_lossy();
    match spec.split_once(':') {
        Some((p, "kill")) if p == phase => {
            // SAFETY: sending a signal to this very process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            Ok(())
        }
        Some((p, "panic")) if p == phase => {
            // Once: the clean-up that runs while unwinding passes the same point again.
            static PANICKED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            if !PANICKED.swap(true, std::sync::atomic::Ordering::SeqCst) {
                panic!("PREFLIGHT_TEST_FAULT at {phase}");
            }
            Ok(())
        }
        Some((p, "enospc")) if p == phase => Err(std::io::Error::from_raw_os_error(libc::ENOSPC)),
        _ => Ok(()),
    }
}

/// The real index during `git commit PATH...`: git then hands hooks a temporary index
/// (`next-index-*.lock`) and holds the real one as `index.lock` until the commit is made.
fn real_index_lock(repo: &Repo) -> Option<PathBuf> {
    let given = repo.root.join(std::env::var_os("GIT_INDEX_FILE")?);
    let temporary = given
        .file_name()
        .is_some_and(|n| n.as_bytes().starts_with(b"next-index-"));
    let lock = repo.git_dir().join("index.lock");
    (temporary && lock.is_file()).then_some(lock)
}

/// Tracked paths whose work-tree content differs from the index (submodules left out).
fn changed_paths(git: &GitCli) -> Result<Vec<PathBuf>> {
    Ok(nul_paths(&git.run(&[
        os("--no-optional-locks"),
        os("diff"),
        os("--name-only"),
        os("-z"),
        os("--no-renames"),
        os("--no-ext-diff"),
        os("--ignore-submodules"),
    ])?))
}

/// Runs git with `input` on its stdin and returns its stdout.
fn git_with_input(git: &GitCli, args: &[&OsStr], input: Vec<u8>) -> Result<Vec<u8>> {
    git_with_input_on(git, None, args, input)
}

/// The same, with `GIT_INDEX_FILE` set to `index` when given.
fn git_with_input_on(
    git: &GitCli,
    index: Option<&Path>,
    args: &[&OsStr],
    input: Vec<u8>,
) -> Result<Vec<u8>> {
    let describe = || {
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut command = git.command();
    if let Some(index) = index {
        command.env("GIT_INDEX_FILE", index);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("cannot run git", e))?;
    let writer = child.stdin.take().map(|mut stdin| {
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        })
    });
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("cannot run git", e))?;
    if let Some(w) = writer {
        let _ = w.join();
    }
    if !out.status.success() {
        return Err(Error::Setup(format!(
            "`git {}` failed: {}",
            describe(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what.to_string(), e)
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
            _lock: lock,
        };
        // The common case, no unstaged changes, is decided from the index's stat data alone.
        let clean = stash.intent_to_add.is_empty() && repo.work_tree_matches_index(scope)?;
        if clean && !fixers {
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

/// One set-aside file that a step changed: its new content, to stage and merge.
struct Fixed {
    path: PathBuf,
    bytes: Vec<u8>,
    mode: u32,
}

/// What to write back for each backed-up path.
#[derive(Default)]
struct Plan {
    /// Per manifest entry: the content to write (`None`: the user's own version).
    merged: Vec<Option<Vec<u8>>>,
    fixed: Vec<Fixed>,
    /// A fixer's edit could not be merged with the user's work.
    collided: bool,
}

impl SetAside {
    /// Backs up every path in `changed` into `dir`; the work tree is not touched yet.
    fn capture(git: &GitCli, root: &Path, dir: &Path, changed: &[PathBuf]) -> Result<SetAside> {
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
    fn written_paths(&self, root: &Path) -> Vec<PathBuf> {
        let entries = self.manifest.entries.iter().map(|e| &e.path);
        entries
            .chain(&self.manifest.moved)
            .map(|p| root.join(p))
            .collect()
    }

    /// Whether `path` lies in (or is) an untracked thing that is still in its place: not
    /// moved aside yet, or already moved back. Such a path was never written.
    fn in_unmoved(&self, path: &Path) -> bool {
        self.manifest.moved.iter().any(|m| {
            path.starts_with(m) && std::fs::symlink_metadata(self.dir.join("work").join(m)).is_err()
        })
    }

    /// Moves what is in the way aside, then writes each path's staged version.
    fn set_staged_content(&self, root: &Path) -> Result<()> {
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
    fn plan(&self, git: &GitCli, root: &Path, undo_all: bool) -> Result<Plan> {
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
    fn merge(&self, git: &GitCli, root: &Path, entry: &Entry) -> Result<Option<Vec<u8>>> {
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
    fn write_back(&self, root: &Path, plan: &Plan) -> Result<()> {
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
    fn keep_merged(&self, plan: &Plan) -> std::io::Result<()> {
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

    fn put_entry(
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

    fn move_back(&self, root: &Path, path: &Path) -> std::io::Result<()> {
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

    fn recovery_error(&self, path: &Path, e: std::io::Error) -> Error {
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
fn remove_created_dirs(root: &Path, manifest: &Manifest) {
    for dir in manifest.created_dirs.iter().rev() {
        let _ = std::fs::remove_dir(root.join(dir));
    }
}

/// Writes the backup into `partial`: each path's staged version (from git), the user's own
/// version, and the manifest, all synced.
fn capture(git: &GitCli, root: &Path, partial: &Path, changed: &[PathBuf]) -> Result<Manifest> {
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

fn write_copy(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Written whole and synced to disk before the caller goes on.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let options = crate::atomic::Options {
        mode: None,
        durable: true,
    };
    crate::atomic::write(path, bytes, options).map_err(|e| {
        Error::io(
            format!("cannot save unstaged changes to {}", path.display()),
            e,
        )
    })
}

fn list(paths: &[PathBuf]) -> String {
    let mut names: Vec<String> = paths
        .iter()
        .take(5)
        .map(|p| p.display().to_string())
        .collect();
    if paths.len() > 5 {
        names.push(format!("and {} more", paths.len() - 5));
    }
    names.join(", ")
}

/// What became of work left set aside by a run that was killed before it could put it back.
pub enum Recovery {
    /// Back in the work tree; the backup is gone.
    Restored(PathBuf),
    /// Kept in the backup folder: these paths changed since and were left alone.
    NeedsHelp {
        backup: PathBuf,
        paths: Vec<PathBuf>,
    },
    /// A patch saved by an older version of preflight, for the user to apply.
    OldPatch(PathBuf),
}

/// Finds what an interrupted pre-commit run left set aside and puts it back where that is
/// safe: a path gets the user's version back only while it still holds what preflight wrote.
pub fn recover(repo: &Repo) -> Result<Vec<Recovery>> {
    let dir = backup_root(repo);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut left: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    if left.is_empty() {
        return Ok(Vec::new());
    }
    // A pre-commit run in progress holds the lock: what is there is its own, not left over.
    let Some(_lock) = lock(repo, false)? else {
        return Ok(Vec::new());
    };
    left.sort();
    let git = repo.cli()?;
    let mut outcomes = Vec::new();
    for path in left {
        let ext = path.extension().and_then(OsStr::to_str).unwrap_or("");
        match ext {
            // Killed while writing the backup: nothing in the work tree was touched yet.
            "partial" => {
                let _ = std::fs::remove_dir_all(&path);
            }
            // Intent-to-add files of a run that set nothing else aside.
            "ita" if std::fs::symlink_metadata(path.with_extension("")).is_err() => {
                readd_intent_to_add(&git, &path);
                outcomes.push(Recovery::Restored(path));
            }
            "" if path.is_dir() => {
                let outcome = recover_one(&repo.root, &path);
                if matches!(outcome, Recovery::Restored(_)) {
                    let mut ita = path.clone().into_os_string();
                    ita.push(".ita");
                    readd_intent_to_add(&git, Path::new(&ita));
                }
                outcomes.push(outcome);
            }
            // Left by an older preflight, which saved a patch.
            "patch" => outcomes.push(Recovery::OldPatch(path)),
            _ => {}
        }
    }
    Ok(outcomes)
}

fn recover_one(root: &Path, dir: &Path) -> Recovery {
    let needs_help = |paths: Vec<PathBuf>| Recovery::NeedsHelp {
        backup: dir.to_path_buf(),
        paths,
    };
    let Some(manifest) = std::fs::read_to_string(dir.join("manifest"))
        .ok()
        .and_then(|t| Manifest::parse(&t))
    else {
        return needs_help(Vec::new());
    };
    let saved = SetAside {
        dir: dir.to_path_buf(),
        manifest,
    };
    // Each path: back to the user's version if it holds what preflight wrote (or is already
    // back); anything else was changed since, by someone, and is left alone.
    let mut changed_since = Vec::new();
    for entry in &saved.manifest.entries {
        if saved.in_unmoved(&entry.path) {
            continue;
        }
        let _ = std::fs::remove_file(backup::temp_beside(&root.join(&entry.path)));
        let now = backup::node_at(root, &entry.path).unwrap_or(Node::Other);
        let staged = backup::node_of(&dir.join("index").join(&entry.path)).unwrap_or(Node::Other);
        let merged = backup::node_of(&dir.join("merged").join(&entry.path)).ok();
        if now == entry.user || merged.as_ref() == Some(&now) {
            // Already back: as it was, or with a fixer's edit merged in.
            continue;
        }
        if now != staged || saved.put_entry(root, entry, None).is_err() {
            changed_since.push(entry.path.clone());
        }
    }
    remove_created_dirs(root, &saved.manifest);
    for path in &saved.manifest.moved {
        if saved.move_back(root, path).is_err() {
            changed_since.push(path.clone());
        }
    }
    if !changed_since.is_empty() || backup::sync_paths(root, &saved.written_paths(root)).is_err() {
        return needs_help(changed_since);
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Recovery::Restored(dir.to_path_buf()),
        Err(_) => needs_help(Vec::new()),
    }
}

/// Marks the files listed in `list` as intent-to-add again, and removes the list.
fn readd_intent_to_add(git: &GitCli, list: &Path) {
    if let Ok(bytes) = std::fs::read(list) {
        let files = nul_paths(&bytes);
        let _ = git.run(&with_paths(&[os("add"), os("--intent-to-add")], &files));
        let _ = std::fs::remove_file(list);
    }
}
