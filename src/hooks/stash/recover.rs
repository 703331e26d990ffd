//! Putting back a backup that a killed run left: each path still holding what preflight
//! wrote gets the user's version again; a path changed since is left alone and named.

use super::aside::{SetAside, remove_created_dirs};
use super::io::{backup_root, lock, readd_intent_to_add};
use crate::error::Result;
use crate::git::Repo;
use crate::hooks::backup::{self, Manifest, Node};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

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
