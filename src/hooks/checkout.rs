//! A temporary checkout of a commit, for checks that must judge a commit's content and not
//! the work tree (pre-push, `run --from/--to`): made only when a step must really run, and
//! removed on every way out (a failed step, an error, Ctrl-C: the run stops its steps and
//! returns, then removes it). When the work tree is exactly that commit, the checkout is a
//! link to the work tree (steps run in place, with its build folders); else it is a
//! detached linked worktree in a temp folder. Deciding only then keeps a run whose steps
//! are all cache hits free of both the check and the checkout.

use crate::error::Result;
use crate::exec::Workdir;
use crate::git::{GitCli, ObjectId, Repo};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct Checkout {
    git: GitCli,
    repo_root: PathBuf,
    commit: ObjectId,
    /// The checkout's folder, inside `temp`; git creates it.
    path: PathBuf,
    state: Mutex<State>,
    /// Dropped after `Drop::drop` has asked git to forget the checkout.
    _temp: tempfile::TempDir,
}

enum State {
    NotMade,
    /// A link to the work tree, which is the commit.
    InPlace,
    Made,
    /// `git worktree add` failed (it may have left something behind): why.
    Failed(String),
    /// Removed after the run: no step may make it again.
    Removed,
}

impl Checkout {
    /// A checkout of `commit`, not made yet.
    pub fn new(repo: &Repo, commit: ObjectId) -> Result<Checkout> {
        let temp = tempfile::Builder::new()
            .prefix("preflight-check-")
            .tempdir()
            .map_err(|e| crate::error::Error::io("cannot make a temporary folder", e))?;
        // The folder's name is unique, so git names the checkout after it.
        let name = temp
            .path()
            .file_name()
            .map(OsStr::to_os_string)
            .unwrap_or_default();
        Ok(Checkout {
            git: repo.cli()?,
            repo_root: repo.root.clone(),
            commit,
            path: temp.path().join(&name),
            state: Mutex::new(State::NotMade),
            _temp: temp,
        })
    }

    /// The folder the steps run in (it exists once `prepare` has made it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the steps' git commands must see: this checkout, not the repository a hook's
    /// `GIT_DIR` (set by git in a linked worktree) names. `.git` in the checkout is the
    /// right git dir (or git file) whichever way it is made. Empty when git set none.
    pub fn git_env(&self) -> Vec<(String, String)> {
        let inherited = ["GIT_DIR", "GIT_WORK_TREE"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
        if !inherited {
            return Vec::new();
        }
        let text = |p: &Path| p.to_string_lossy().into_owned();
        vec![
            ("GIT_DIR".into(), text(&self.path.join(".git"))),
            ("GIT_WORK_TREE".into(), text(&self.path)),
        ]
    }

    /// Links the checkout to the work tree when it is the commit; `Ok(false)` when not.
    fn link_in_place(&self) -> std::result::Result<bool, String> {
        let in_place = crate::git::discover(&self.repo_root)
            .and_then(|repo| repo.work_tree_is_commit(self.commit))
            .map_err(|e| format!("cannot compare the work tree with the commit: {e}"))?;
        if !in_place {
            return Ok(false);
        }
        std::os::unix::fs::symlink(&self.repo_root, &self.path)
            .map_err(|e| format!("cannot link {}: {e}", self.path.display()))?;
        Ok(true)
    }

    fn make(&self) -> std::result::Result<(), String> {
        let mut cmd = self.git.command();
        // No hook of the repository (a post-checkout) runs for this checkout.
        cmd.args(["-c", "core.hooksPath=/dev/null", "worktree", "add"])
            .args(["--detach", "--quiet"])
            .arg(&self.path)
            .arg(self.commit.to_string())
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE");
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run git to check out {}: {e}", self.commit))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "cannot check out commit {} in a temporary folder: {}",
                self.commit,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn git_quietly(&self, args: &[&OsStr]) -> bool {
        let mut cmd = self.git.command();
        cmd.args(args)
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE");
        cmd.output().is_ok_and(|o| o.status.success())
    }
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("commit", &self.commit)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Workdir for Checkout {
    fn prepare(&self) -> std::result::Result<(), String> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &*state {
            State::Made | State::InPlace => Ok(()),
            State::Failed(why) => Err(why.clone()),
            State::Removed => Err("the run is over: its checkout was removed".into()),
            State::NotMade => {
                let made = match self.link_in_place() {
                    Ok(true) => Ok(State::InPlace),
                    Ok(false) => self.make().map(|()| State::Made),
                    Err(why) => Err(why),
                };
                match made {
                    Ok(ready) => {
                        *state = ready;
                        Ok(())
                    }
                    Err(why) => {
                        *state = State::Failed(why.clone());
                        Err(why)
                    }
                }
            }
        }
    }

    fn is_ready(&self) -> bool {
        matches!(
            *self.state.lock().unwrap_or_else(|e| e.into_inner()),
            State::Made | State::InPlace
        )
    }
}

impl Checkout {
    /// Removes the checkout and makes git forget it. Called when the run is over: a step
    /// thread may still hold the checkout for a moment, and a process that exits does not
    /// wait for its threads to drop what they hold. Dropping it removes it too.
    pub fn remove(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let was = std::mem::replace(&mut *state, State::Removed);
        match was {
            State::NotMade | State::Removed => return,
            // Only the link goes: never anything it points to.
            State::InPlace => {
                let _ = std::fs::remove_file(&self.path);
                return;
            }
            State::Made | State::Failed(_) => {}
        }
        if self
            .path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            let _ = std::fs::remove_file(&self.path);
            return;
        }
        let removed = self.git_quietly(&[
            OsStr::new("worktree"),
            OsStr::new("remove"),
            OsStr::new("--force"),
            OsStr::new("--force"),
            self.path.as_os_str(),
        ]);
        if !removed {
            // A half-made checkout: remove its files, then let git forget what is gone.
            let _ = std::fs::remove_dir_all(&self.path);
            self.git_quietly(&[OsStr::new("worktree"), OsStr::new("prune")]);
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        self.remove();
    }
}
