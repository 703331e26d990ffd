//! Keeping unstaged work safe while pre-commit steps look at exactly what will be committed.
//!
//! Before the work tree is touched, the unstaged changes are written as a binary patch under
//! the git dir and synced to disk; then tracked files are reset to their staged content. After
//! the steps, fixer edits to staged files are staged, and the patch is applied back. If it
//! does not apply (a fixer edited lines the user had changed too), the fixer edits are rolled
//! back to the tree as it was before the hooks ran and the patch is applied to that, so the
//! user's work always comes back. A patch left by a killed run is found and restored by the
//! next preflight command.

use crate::error::{Error, Result};
use crate::git::{GitCli, Repo};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Unstaged work saved for the length of a pre-commit run.
pub struct Stash {
    git: GitCli,
    saved: Option<Saved>,
    /// Intent-to-add files, taken out of the index for the run and put back after.
    intent_to_add: Vec<PathBuf>,
    /// The list of those files on disk, so a killed run can be repaired.
    intent_to_add_file: Option<PathBuf>,
    /// Held from save to restore, so that no other preflight "recovers" this run's patch.
    _lock: std::fs::File,
}

/// One saved patch under `<git dir>/preflight/unstaged/`.
struct Saved {
    patch: PathBuf,
    /// The index as a tree, before any step ran: what a rollback returns to.
    tree_before: OsString,
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
}

fn backup_dir(repo: &Repo) -> PathBuf {
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

fn with_paths<'a>(args: &[&'a OsStr], paths: &'a [PathBuf]) -> Vec<&'a OsStr> {
    let mut all = args.to_vec();
    all.push(os("--"));
    all.extend(paths.iter().map(|p| p.as_os_str()));
    all
}

impl Stash {
    /// Saves the unstaged changes and leaves tracked files as they are staged. When every step
    /// only looks at the files it is given, `scope` names those files: if none of them has
    /// unstaged changes, nothing needs to be set aside and the work tree is left alone.
    pub fn save(repo: &Repo, scope: Option<&[PathBuf]>) -> Result<Stash> {
        let lock = lock(repo, true)?.expect("a waiting lock is always taken");
        let git = repo.cli()?;
        let dir = backup_dir(repo);
        let name = run_name();
        let intent_to_add = repo.intent_to_add_files()?;
        let mut intent_to_add_file = None;
        if !intent_to_add.is_empty() {
            // Written before the index changes, so a killed run can put them back.
            let path = dir.join(format!("{name}.ita"));
            let mut list = Vec::new();
            for p in &intent_to_add {
                list.extend_from_slice(p.as_os_str().as_bytes());
                list.push(0);
            }
            write_synced(&path, &list)?;
            intent_to_add_file = Some(path);
            git.run(&with_paths(
                &[os("rm"), os("--cached"), os("--quiet")],
                &intent_to_add,
            ))?;
        }
        let mut stash = Stash {
            git,
            saved: None,
            intent_to_add,
            intent_to_add_file,
            _lock: lock,
        };
        // The common case, no unstaged changes, is decided from the index's stat data alone.
        if stash.intent_to_add.is_empty() && repo.work_tree_matches_index(scope)? {
            return Ok(stash);
        }
        let out = stash.git.output(&[
            os("diff"),
            os("--ignore-submodules"),
            os("--binary"),
            os("--exit-code"),
            os("--no-color"),
            os("--no-ext-diff"),
            os("--"),
        ])?;
        match out.status.code() {
            Some(0) => return Ok(stash),
            Some(1) => {}
            _ => {
                return Err(Error::Setup(format!(
                    "cannot save unstaged changes: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        let tree_before = trim(stash.git.run(&[os("write-tree")])?);
        let patch = dir.join(format!("{name}.patch"));
        write_synced(&patch, &out.stdout)?;
        stash.saved = Some(Saved { patch, tree_before });
        // Only now, with the patch safe on disk, are tracked files reset to their staged content.
        checkout_index(&stash.git)?;
        Ok(stash)
    }

    /// Whether unstaged changes were set aside.
    pub fn saved_changes(&self) -> bool {
        self.saved.is_some()
    }

    /// Puts the unstaged work back. When fixers ran, their edits to the files in `stage` are
    /// staged first; their edits elsewhere stay as unstaged changes.
    pub fn restore(self, fixers_ran: bool, stage: &[PathBuf]) -> Result<Restored> {
        let mut restored = Restored::default();
        // Since the save, tracked files matched the index: any difference now is a fixer's.
        let changed = if fixers_ran {
            nul_paths(&self.git.run(&[
                os("diff"),
                os("--name-only"),
                os("-z"),
                os("--no-ext-diff"),
            ])?)
        } else {
            Vec::new()
        };
        let (to_stage, others): (Vec<PathBuf>, Vec<PathBuf>) = changed
            .into_iter()
            .partition(|p| stage.iter().any(|s| s == p));
        if !to_stage.is_empty() {
            self.git.run(&with_paths(&[os("add")], &to_stage))?;
        }
        restored.left_unstaged = others;
        restored.staged = to_stage;

        if let Some(saved) = &self.saved
            && self.apply(&saved.patch).is_err()
        {
            // The fixers' edits collide with the user's: undo them, index and files alike.
            restored.rolled_back = std::mem::take(&mut restored.staged);
            restored.rolled_back.append(&mut restored.left_unstaged);
            self.git.run(&[os("read-tree"), &saved.tree_before])?;
            checkout_index(&self.git)?;
            self.apply(&saved.patch).map_err(|e| {
                Error::Setup(format!(
                    "{e}\nyour unstaged changes are safe in {}; put them back with: git apply --3way {0}",
                    saved.patch.display()
                ))
            })?;
        }
        if !self.intent_to_add.is_empty() {
            self.git.run(&with_paths(
                &[os("add"), os("--intent-to-add")],
                &self.intent_to_add,
            ))?;
        }
        if let Some(saved) = &self.saved {
            let _ = std::fs::remove_file(&saved.patch);
        }
        if let Some(list) = &self.intent_to_add_file {
            let _ = std::fs::remove_file(list);
        }
        Ok(restored)
    }

    fn apply(&self, patch: &Path) -> Result<()> {
        self.git
            .run(&[
                os("apply"),
                os("--whitespace=nowarn"),
                os("--binary"),
                patch.as_os_str(),
            ])
            .map(drop)
    }
}

/// Resets every tracked file to its staged content (submodules left alone).
fn checkout_index(git: &GitCli) -> Result<()> {
    git.run(&[
        os("-c"),
        os("submodule.recurse=0"),
        os("checkout"),
        os("--"),
        os("."),
    ])
    .map(drop)
}

fn trim(mut bytes: Vec<u8>) -> OsString {
    while bytes.last().is_some_and(u8::is_ascii_whitespace) {
        bytes.pop();
    }
    OsString::from_vec(bytes)
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

/// What became of patches left by a run that was killed before it could restore them.
pub enum Recovery {
    /// Applied to the work tree (or found already applied) and removed.
    Restored(PathBuf),
    /// Could not be applied; the user must look.
    NeedsHelp(PathBuf),
}

/// Finds what an interrupted pre-commit run left set aside and puts it back where that is safe.
pub fn recover(repo: &Repo) -> Result<Vec<Recovery>> {
    let dir = backup_dir(repo);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut left: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "patch" || e == "ita"))
        .collect();
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
        if path.extension().is_some_and(|e| e == "ita") {
            if !path.with_extension("patch").exists() {
                readd_intent_to_add(&git, &path);
                outcomes.push(Recovery::Restored(path));
            }
            continue;
        }
        let apply = |extra: &[&OsStr]| {
            let mut args = vec![os("apply"), os("--whitespace=nowarn"), os("--binary")];
            args.extend_from_slice(extra);
            args.push(path.as_os_str());
            git.output(&args).is_ok_and(|o| o.status.success())
        };
        let done = if apply(&[os("--check")]) {
            apply(&[])
        } else {
            // Already back in the work tree (killed after the restore, before the cleanup)?
            apply(&[os("--check"), os("--reverse")])
        };
        if done {
            let _ = std::fs::remove_file(&path);
            readd_intent_to_add(&git, &path.with_extension("ita"));
            outcomes.push(Recovery::Restored(path));
        } else {
            outcomes.push(Recovery::NeedsHelp(path));
        }
    }
    Ok(outcomes)
}

/// Marks the files listed in `list` as intent-to-add again, and removes the list.
fn readd_intent_to_add(git: &GitCli, list: &Path) {
    if let Ok(bytes) = std::fs::read(list) {
        let files = nul_paths(&bytes);
        let _ = git.run(&with_paths(&[os("add"), os("--intent-to-add")], &files));
        let _ = std::fs::remove_file(list);
    }
}
