//! Declared outputs: captured into the store after a pass, restored from it on a hit.
//!
//! The rules that keep a restore safe: every path of an entry is relative, made of plain
//! names and inside one of the step's declared outputs; a symlink is kept only when its
//! target is relative and stays inside the repository; nothing is written through a symlink
//! that is already there; permission bits are kept but setuid, setgid and sticky are dropped;
//! and every blob is checked against its digest before the first file is touched, so a
//! damaged entry is a miss, never a partial restore. And before a run: no cached step may
//! declare an output folder that holds tracked files (a hit would revert edits to them).

use super::inputs::RecordPath;
use super::store::{
    ActionResult, Digest, FolderListing, NodeProperties, OutputDirectory, OutputFile,
    OutputSymlink, Store,
};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::git::IndexSnapshot;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The outputs of a step, as stored.
#[derive(Debug, Default)]
pub struct Captured {
    pub files: Vec<OutputFile>,
    pub symlinks: Vec<OutputSymlink>,
    pub directories: Vec<OutputDirectory>,
}

/// A repository-relative path made only of plain names.
fn plain(path: &Path) -> bool {
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Whether a link at `link` (repository-relative) pointing at `target` stays inside.
fn link_stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: Vec<&std::ffi::OsStr> = link
        .parent()
        .map(|p| {
            p.components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    for c in target.components() {
        match c {
            Component::Normal(n) => depth.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// The first folder above `rel` (inside the repository) that is a symlink, if any.
fn symlinked_parent(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut at = PathBuf::new();
    let parent = rel.parent()?;
    for c in parent.components() {
        at.push(c);
        if root
            .join(&at)
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            return Some(at);
        }
    }
    None
}

/// Why a step's outputs cannot be captured: its result is then not cached.
#[derive(Debug, thiserror::Error)]
pub enum NotCaptured {
    #[error("output `{output}` is below `{}`, a symlink", link.display())]
    BelowSymlink { output: String, link: PathBuf },
    #[error("the step did not write its output `{0}`")]
    Missing(String),
    #[error("cannot read output `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read output folder `{}`: {source}", path.display())]
    ReadFolder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot store output `{}`: {source}", path.display())]
    Store {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("output `{}` is a symlink to `{}`, outside the repository", path.display(), target.display())]
    LinkOutside { path: PathBuf, target: PathBuf },
    #[error("output `{}` is neither a file, a folder nor a symlink", .0.display())]
    NotAFile(PathBuf),
    #[error(transparent)]
    Listing(#[from] serde_json::Error),
}

/// Stores the declared outputs. `Err` says why the result cannot be cached.
pub fn capture(root: &Path, outputs: &[String], store: &Store) -> Result<Captured, NotCaptured> {
    let mut captured = Captured::default();
    for out in outputs {
        let rel = Path::new(out.trim_end_matches('/'));
        if let Some(link) = symlinked_parent(root, rel) {
            return Err(NotCaptured::BelowSymlink {
                output: out.clone(),
                link,
            });
        }
        let meta = match root.join(rel).symlink_metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(NotCaptured::Missing(out.clone()));
            }
            Err(source) => {
                return Err(NotCaptured::Read {
                    path: out.into(),
                    source,
                });
            }
        };
        if meta.is_dir() {
            let mut listing = FolderListing::default();
            capture_dir(root, rel, Path::new(""), store, &mut captured, &mut listing)?;
            let bytes = serde_json::to_vec(&listing)?;
            let tree_digest = store
                .put_bytes(&bytes)
                .map_err(|source| NotCaptured::Store {
                    path: out.into(),
                    source,
                })?;
            captured.directories.push(OutputDirectory {
                path: RecordPath::new(rel),
                tree_digest,
            });
        } else {
            capture_one(root, rel, &meta, store, &mut captured)?;
        }
    }
    Ok(captured)
}

fn capture_one(
    root: &Path,
    rel: &Path,
    meta: &std::fs::Metadata,
    store: &Store,
    captured: &mut Captured,
) -> Result<(), NotCaptured> {
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = std::fs::read_link(root.join(rel)).map_err(|source| NotCaptured::Read {
            path: rel.to_path_buf(),
            source,
        })?;
        if !link_stays_inside(rel, &target) {
            return Err(NotCaptured::LinkOutside {
                path: rel.to_path_buf(),
                target,
            });
        }
        captured.symlinks.push(OutputSymlink {
            path: RecordPath::new(rel),
            target: RecordPath::new(&target),
        });
    } else if kind.is_file() {
        let digest = store
            .put_file(&root.join(rel))
            .map_err(|source| NotCaptured::Store {
                path: rel.to_path_buf(),
                source,
            })?;
        let mode = meta.permissions().mode() & 0o777;
        captured.files.push(OutputFile {
            path: RecordPath::new(rel),
            digest,
            is_executable: mode & 0o100 != 0,
            node_properties: NodeProperties { unix_mode: mode },
        });
    } else {
        return Err(NotCaptured::NotAFile(rel.to_path_buf()));
    }
    Ok(())
}

fn capture_dir(
    root: &Path,
    base: &Path,
    sub: &Path,
    store: &Store,
    captured: &mut Captured,
    listing: &mut FolderListing,
) -> Result<(), NotCaptured> {
    listing.directories.push(RecordPath::new(sub));
    let dir = base.join(sub);
    let mut children: Vec<_> = std::fs::read_dir(root.join(&dir))
        .map_err(|source| NotCaptured::ReadFolder {
            path: dir.clone(),
            source,
        })?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    children.sort();
    for name in children {
        let rel = dir.join(&name);
        let meta = root
            .join(&rel)
            .symlink_metadata()
            .map_err(|source| NotCaptured::Read {
                path: rel.clone(),
                source,
            })?;
        if meta.is_dir() {
            capture_dir(root, base, &sub.join(&name), store, captured, listing)?;
        } else {
            capture_one(root, &rel, &meta, store, captured)?;
        }
    }
    Ok(())
}

/// The files and symlinks below the declared outputs as they are on disk (an output that is
/// a file counts itself), repository-relative, sorted by their bytes. Symlinks are not
/// followed.
pub fn files_below(root: &Path, outputs: &[String]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack: Vec<PathBuf> = outputs
        .iter()
        .map(|o| PathBuf::from(o.trim_end_matches('/')))
        .filter(|o| plain(o))
        .collect();
    while let Some(rel) = stack.pop() {
        let Ok(meta) = root.join(&rel).symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(children) = std::fs::read_dir(root.join(&rel)) {
                stack.extend(children.flatten().map(|c| rel.join(c.file_name())));
            }
        } else {
            found.push(rel);
        }
    }
    found.sort_unstable_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    found.dedup();
    found
}

/// Files a restore of `entry` would delete: on disk below the declared outputs, but not in
/// the entry.
pub fn in_the_way(root: &Path, outputs: &[String], entry: &ActionResult) -> Vec<PathBuf> {
    let stored: std::collections::HashSet<PathBuf> = entry
        .output_files
        .iter()
        .map(|f| f.path.to_path())
        .chain(entry.output_symlinks.iter().map(|l| l.path.to_path()))
        .collect();
    files_below(root, outputs)
        .into_iter()
        .filter(|p| !stored.contains(p))
        .collect()
}

/// Why a restore did not happen; the step then runs.
#[derive(Debug, thiserror::Error)]
pub enum NotRestored {
    /// The entry is damaged (a blob is missing or wrong, a path is unsafe): evict it.
    #[error("{0}")]
    BadEntry(String),
    /// The work tree does not allow a safe restore (a symlink in the way).
    #[error("{0}")]
    Unsafe(String),
    /// Writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The restore would change or delete files the caller must keep (see `restore`).
    #[error("{0}")]
    Refused(String),
}

/// Puts an entry's outputs back into the work tree. Before anything is written, `allow` is
/// given every existing path the restore would delete or change; an `Err` from it stops the
/// restore with nothing touched.
pub fn restore(
    root: &Path,
    outputs: &[String],
    entry: &ActionResult,
    store: &Store,
    allow: &dyn Fn(&[PathBuf]) -> Result<(), NotRestored>,
) -> Result<(), NotRestored> {
    let declared: Vec<PathBuf> = outputs
        .iter()
        .map(|o| PathBuf::from(o.trim_end_matches('/')))
        .collect();
    let bad = |what: String| NotRestored::BadEntry(what);
    let inside = |p: &Path| plain(p) && declared.iter().any(|o| p.starts_with(o));

    // 1. Every path is safe, every blob is there and intact, before anything is written.
    let mut folders: Vec<PathBuf> = Vec::new();
    for d in &entry.output_directories {
        let base = d.path.to_path();
        if !inside(&base) {
            return Err(bad(format!(
                "unsafe folder `{}` in the entry",
                base.display()
            )));
        }
        let listing: FolderListing = store
            .read_verified(&d.tree_digest)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| bad(format!("the listing of `{}` is damaged", base.display())))?;
        for sub in &listing.directories {
            let sub = sub.to_path();
            let full = if sub.as_os_str().is_empty() {
                base.clone()
            } else {
                base.join(&sub)
            };
            if !inside(&full) {
                return Err(bad(format!(
                    "unsafe folder `{}` in the entry",
                    full.display()
                )));
            }
            folders.push(full);
        }
    }
    for f in &entry.output_files {
        let p = f.path.to_path();
        if !inside(&p) {
            return Err(bad(format!("unsafe path `{}` in the entry", p.display())));
        }
        if !store.verify(&f.digest) {
            return Err(bad(format!(
                "the stored content of `{}` is missing or damaged",
                p.display()
            )));
        }
    }
    for l in &entry.output_symlinks {
        let p = l.path.to_path();
        if !inside(&p) || !link_stays_inside(&p, &l.target.to_path()) {
            return Err(bad(format!(
                "unsafe symlink `{}` in the entry",
                p.display()
            )));
        }
    }
    for o in &declared {
        if let Some(link) = symlinked_parent(root, o) {
            return Err(NotRestored::Unsafe(format!(
                "`{}` is a symlink; outputs are not restored through it",
                link.display()
            )));
        }
    }

    // 2. What would be lost: files not in the entry, and files whose content would change.
    let mut changed = in_the_way(root, outputs, entry);
    let mut unchanged: std::collections::HashSet<PathBuf> = Default::default();
    for f in &entry.output_files {
        let p = f.path.to_path();
        let dest = root.join(&p);
        match dest.symlink_metadata() {
            Ok(meta)
                if meta.is_file()
                    && same_file(&dest, &meta, &f.digest, f.node_properties.unix_mode) =>
            {
                unchanged.insert(p);
            }
            Ok(meta) if !meta.is_dir() => changed.push(p),
            _ => {}
        }
    }
    for l in &entry.output_symlinks {
        let p = l.path.to_path();
        if let Ok(meta) = root.join(&p).symlink_metadata()
            && !meta.is_dir()
            && std::fs::read_link(root.join(&p)).ok() != Some(l.target.to_path())
        {
            changed.push(p);
        }
    }
    // A symlink in the way holds no bytes of its own (its target is never touched).
    changed.retain(|p| root.join(p).symlink_metadata().is_ok_and(|m| m.is_file()));
    allow(&changed)?;

    // 3. Clear what stands in the way, then write.
    let io = |what: &Path, source: std::io::Error| NotRestored::Io {
        path: what.to_path_buf(),
        source,
    };
    let stored_dirs: Vec<PathBuf> = entry
        .output_directories
        .iter()
        .map(|d| d.path.to_path())
        .collect();
    for o in &declared {
        let full = root.join(o);
        let Ok(meta) = full.symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            std::fs::remove_dir_all(&full).map_err(|e| io(o, e))?;
        } else if stored_dirs.contains(o) || meta.file_type().is_symlink() {
            std::fs::remove_file(&full).map_err(|e| io(o, e))?;
        }
        // A plain file stays until its replacement is renamed over it (or is kept when it
        // already holds the stored content).
    }
    for folder in &folders {
        make_dirs(root, folder).map_err(|e| io(folder, e))?;
    }
    for f in &entry.output_files {
        let p = f.path.to_path();
        let dest = root.join(&p);
        if unchanged.contains(&p) && dest.symlink_metadata().is_ok_and(|m| m.is_file()) {
            continue;
        }
        if let Some(parent) = p.parent() {
            make_dirs(root, parent).map_err(|e| io(&p, e))?;
        }
        let tmp = temp_beside(&dest);
        let written = std::fs::copy(store.blob_file(&f.digest), &tmp).and_then(|_| {
            std::fs::set_permissions(
                &tmp,
                std::fs::Permissions::from_mode(f.node_properties.unix_mode & 0o777),
            )
        });
        let placed = written.and_then(|()| replace(&tmp, &dest));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&p, e));
        }
    }
    for l in &entry.output_symlinks {
        let p = l.path.to_path();
        let dest = root.join(&p);
        if let Some(parent) = p.parent() {
            make_dirs(root, parent).map_err(|e| io(&p, e))?;
        }
        let tmp = temp_beside(&dest);
        let placed = std::os::unix::fs::symlink(l.target.to_path(), &tmp)
            .and_then(|()| replace(&tmp, &dest));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&p, e));
        }
    }
    Ok(())
}

/// Whether the file already holds exactly this content and mode.
fn same_file(path: &Path, meta: &std::fs::Metadata, digest: &Digest, mode: u32) -> bool {
    use sha2::{Digest as _, Sha256};
    if meta.len() != digest.size_bytes || meta.permissions().mode() & 0o7777 != mode & 0o777 {
        return false;
    }
    std::fs::read(path)
        .is_ok_and(|bytes| super::inputs::hex(&Sha256::digest(&bytes)) == digest.hash)
}

/// Creates `rel` and its parents as real folders. A symlink or file in the way is removed
/// (the callers only reach here for paths inside declared outputs, whose parents were checked
/// to hold no symlink).
fn make_dirs(root: &Path, rel: &Path) -> std::io::Result<()> {
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        match at.symlink_metadata() {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                std::fs::remove_file(&at)?;
                std::fs::create_dir(&at)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::create_dir(&at) {
                Ok(()) => {}
                // Another step restoring into the same folder made it first.
                Err(e)
                    if e.kind() == std::io::ErrorKind::AlreadyExists
                        && at.symlink_metadata().is_ok_and(|m| m.is_dir()) => {}
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Renames `tmp` over `dest`; a folder at `dest` goes first. rename(2) replaces a symlink
/// itself, never what it points to.
fn replace(tmp: &Path, dest: &Path) -> std::io::Result<()> {
    if dest.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        std::fs::remove_dir_all(dest)?;
    }
    std::fs::rename(tmp, dest)
}

fn temp_beside(dest: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(
        ".{name}.preflight-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// An output folder of a cached step must not hold tracked files or submodules: a hit
/// replaces the folder with what the step wrote, which would revert edits to them.
pub fn check_output_folders(config: &Config, index: &IndexSnapshot) -> Result<()> {
    for step in config.steps.values().filter(|s| super::is_cached(s)) {
        for output in &step.outputs {
            let folder = output.trim_end_matches('/');
            let mut prefix = folder.as_bytes().to_vec();
            prefix.push(b'/');
            let start = index
                .files
                .partition_point(|f| f.path.as_os_str().as_bytes() < prefix.as_slice());
            let mut tracked: Vec<String> = index.files[start..]
                .iter()
                .take_while(|f| f.path.as_os_str().as_bytes().starts_with(&prefix))
                .map(|f| f.path.display().to_string())
                .collect();
            tracked.extend(
                index
                    .gitlinks
                    .iter()
                    .filter(|(p, _)| {
                        p.as_os_str().as_bytes().starts_with(&prefix) || p == Path::new(folder)
                    })
                    .map(|(p, _)| format!("{} (a submodule)", p.display())),
            );
            if tracked.is_empty() {
                continue;
            }
            let shown = tracked.len().min(5);
            let more = if tracked.len() > shown {
                format!(" and {} more", tracked.len() - shown)
            } else {
                String::new()
            };
            return Err(Error::Usage(format!(
                "step `{}` declares the output folder `{folder}`, which holds tracked files: \
                 {}{more}\n\
                 a cache hit replaces an output folder with what the step wrote, which would \
                 revert edits to those files",
                step.name,
                tracked[..shown].join(", ")
            ))
            .hint(format!(
                "declare the generated files themselves (e.g. outputs = [\"{folder}/gen.rs\"]), \
                 or generate into a folder git does not track"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_must_stay_inside() {
        let l = |link: &str, target: &str| link_stays_inside(Path::new(link), Path::new(target));
        assert!(l("out/a", "b"));
        assert!(l("out/a", "../src/b"));
        assert!(!l("out/a", "../../b"));
        assert!(!l("a", "../b"));
        assert!(!l("out/a", "/etc/passwd"));
        assert!(l("out/x/a", "./../../README"));
    }

    #[test]
    fn plain_paths_only() {
        assert!(plain(Path::new("out/a")));
        assert!(!plain(Path::new("../a")));
        assert!(!plain(Path::new("/a")));
        assert!(!plain(Path::new("")));
    }
}
