//! Git hooks: the shims `preflight install` writes, and saving unstaged work around a
//! pre-commit run (`stash`), and the checkout of a pushed commit (`checkout`).
//!
//! Here: the shims and their installation. Below: `stash` (unstaged work kept safe, a folder
//! of its own), `backup` (the byte-for-byte backup it writes), `checkout` (a pushed commit
//! checked out for pre-push). This folder imports `git`, `error`, `atomic`, `lock`, `shell`
//! and exec's `Workdir`; never config, plan, cache, commands or report: the commands decide
//! what runs, the hooks only keep the work tree safe around it.

mod backup;
pub mod checkout;
pub mod stash;

use crate::error::{Error, Result};
use crate::git::{ConfigScope, HooksDir};
use crate::shell;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The shim template, with `@HOOK@`, `@BIN@` and `@VERSION@` to fill in.
const SHIM: &str = include_str!("../../hooks/shim.sh");
/// Bumped when the shim changes, so `install --check` can call older ones stale.
pub const SHIM_VERSION: u32 = 2;
/// The line that marks a hook as ours.
const MARKER: &str = "# preflight-hook v";
/// Where a hook that was there before ours is kept (and still run, first).
pub const PREVIOUS_SUFFIX: &str = ".pre-preflight";

/// The shim for `hook`, remembering the absolute path of `bin`.
pub fn shim(hook: &str, bin: &Path) -> String {
    let quoted = String::from_utf8_lossy(&shell::quote(bin.as_os_str().as_bytes())).into_owned();
    SHIM.replace("@HOOK@", hook)
        .replace("@BIN@", &quoted)
        .replace("@VERSION@", &SHIM_VERSION.to_string())
}

fn is_ours(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .is_ok_and(|text| text.lines().nth(1).is_some_and(|l| l.starts_with(MARKER)))
}

/// What happened to one hook.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Installed,
    /// Installed, and the hook that was there kept as `NAME.pre-preflight`, running first.
    InstalledKeepingPrevious,
    Updated,
    Unchanged,
    /// Our shim removed.
    Removed,
    /// Our shim removed and the previous hook put back.
    Restored,
}

/// Refuses a `core.hooksPath` from the user's global config unless asked: hooks there run in
/// every repository, and the folder usually belongs to another tool.
pub fn check_hooks_dir(dir: &HooksDir, allow_global: bool) -> Result<()> {
    if let Some((value, ConfigScope::Global)) = &dir.hooks_path
        && !allow_global
    {
        return Err(Error::Usage(format!(
            "core.hooksPath is set outside this repository (global or system git config) to `{value}`, so git runs hooks from \
             {} for every repository, not from this one's .git/hooks.",
            dir.path.display()
        ))
        .hint("to install into that shared folder anyway: preflight install --use-global-hooks-path")
        .hint(
            "to use this repository's own hooks folder instead: \
             git config --local core.hooksPath .git/hooks && preflight install",
        ));
    }
    Ok(())
}

/// Writes (or refreshes) the shims for `hooks` in `dir`. Installing twice changes nothing.
/// Shims for hooks no longer in the config stay (they do nothing) until `uninstall`.
pub fn install(dir: &Path, hooks: &[String], bin: &Path) -> Result<Vec<(String, Change)>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    let mut changes = Vec::new();
    for hook in hooks {
        let path = dir.join(hook);
        let wanted = shim(hook, bin);
        let change = if is_ours(&path) {
            if std::fs::read_to_string(&path).is_ok_and(|t| t == wanted) {
                Change::Unchanged
            } else {
                write_executable(&path, &wanted)?;
                Change::Updated
            }
        } else if path.symlink_metadata().is_ok() {
            let previous = previous_path(&path);
            if previous.symlink_metadata().is_ok() {
                return Err(Error::Setup(format!(
                    "both {} and {} exist and neither is preflight's; move one away, then install again",
                    path.display(),
                    previous.display()
                )));
            }
            std::fs::rename(&path, &previous).map_err(|e| {
                Error::io(
                    format!("cannot keep the existing hook {}", path.display()),
                    e,
                )
            })?;
            write_executable(&path, &wanted)?;
            Change::InstalledKeepingPrevious
        } else {
            write_executable(&path, &wanted)?;
            Change::Installed
        };
        changes.push((hook.clone(), change));
    }
    Ok(changes)
}

/// Removes every shim of ours from `dir`, putting back the hooks they replaced.
pub fn uninstall(dir: &Path) -> Result<Vec<(String, Change)>> {
    let mut changes = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(changes);
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| !n.ends_with(PREVIOUS_SUFFIX))
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        if !is_ours(&path) {
            continue;
        }
        std::fs::remove_file(&path)
            .map_err(|e| Error::io(format!("cannot remove {}", path.display()), e))?;
        let previous = previous_path(&path);
        if previous.symlink_metadata().is_ok() {
            std::fs::rename(&previous, &path)
                .map_err(|e| Error::io(format!("cannot put back {}", previous.display()), e))?;
            changes.push((name, Change::Restored));
        } else {
            changes.push((name, Change::Removed));
        }
    }
    Ok(changes)
}

fn previous_path(hook: &Path) -> PathBuf {
    let mut name = hook.file_name().unwrap_or_default().to_os_string();
    name.push(PREVIOUS_SUFFIX);
    hook.with_file_name(name)
}

/// Written whole or not at all, so git never runs a half-written hook.
fn write_executable(path: &Path, text: &str) -> Result<()> {
    let options = crate::atomic::Options {
        mode: Some(0o755),
        durable: false,
    };
    crate::atomic::write(path, text.as_bytes(), options)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// The state of one hook, for `install --check`.
#[derive(Debug, PartialEq, Eq)]
pub enum Health {
    Ok,
    Missing,
    /// Ours, but from another version of preflight or pointing at another binary.
    Stale(String),
    /// Another program's hook is in the place ours should be.
    Foreign,
}

pub fn health(dir: &Path, hook: &str, bin: &Path) -> Health {
    let path = dir.join(hook);
    if path.symlink_metadata().is_err() {
        return Health::Missing;
    }
    if !is_ours(&path) {
        return Health::Foreign;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    if text == shim(hook, bin) {
        return Health::Ok;
    }
    let version_line = text.lines().nth(1).unwrap_or_default();
    if !version_line.starts_with(&format!("{MARKER}{SHIM_VERSION}:")) {
        Health::Stale("written by another version of preflight".into())
    } else {
        match shim_binary(&text) {
            // After an upgrade moved preflight (a new venv, a reinstalled tool), the hook
            // falls back to whatever `preflight` is on PATH, or fails in a GUI client.
            Some(old) if !Path::new(&old).exists() => Health::Stale(format!(
                "it runs {old}, which no longer exists (moved by an upgrade or removed); \
                 this preflight is {}",
                bin.display()
            )),
            Some(old) => Health::Stale(format!(
                "it runs {old}, not this preflight ({})",
                bin.display()
            )),
            None => Health::Stale(format!(
                "it runs another preflight binary than {}",
                bin.display()
            )),
        }
    }
}

/// The binary a shim runs: its `bin=` line, unquoted as `shell_quote` quoted it.
fn shim_binary(text: &str) -> Option<String> {
    let value = text.lines().find_map(|l| l.strip_prefix("bin="))?;
    match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        Some(inner) => Some(inner.replace("'\\''", "'")),
        None => Some(value.to_string()),
    }
}

/// Our shims in `dir` (sorted), whatever hooks they are for.
pub fn installed(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .flatten()
        .filter(|e| is_ours(&e.path()))
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .collect();
    found.sort();
    found
}

/// Our shims that sit in a folder git does not use (after `core.hooksPath` was set).
pub fn shadowed(default_dir: &Path, used_dir: &Path) -> Vec<String> {
    if default_dir == used_dir {
        return Vec::new();
    }
    installed(default_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_is_marked_and_quotes_the_binary() {
        let text = shim("pre-commit", Path::new("/opt/it's here/preflight"));
        assert!(text.lines().nth(1).unwrap().starts_with(MARKER));
        assert!(text.contains("hook='pre-commit'"));
        assert!(text.contains(r"bin='/opt/it'\''s here/preflight'"));
        for placeholder in ["@HOOK@", "@BIN@", "@VERSION@"] {
            assert!(!text.contains(placeholder), "{placeholder} is filled in");
        }
    }
}
