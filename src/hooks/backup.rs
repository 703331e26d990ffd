//! The on-disk record of work set aside during a pre-commit run, and the file operations that
//! put exact bytes back.
//!
//! A backup is a folder `<git dir>/preflight/unstaged/<name>/` holding:
//! - `manifest`: one line per path (paths hex-encoded, so any byte survives);
//! - `work/<path>`: the user's own version of each set-aside file, byte for byte, with its
//!   mode, and any untracked file or folder that had to move out of a tracked path's way;
//! - `index/<path>`: what was written in its place (the staged version, as git checks it out).
//!
//! Nothing here goes through git's filters: what is read is what is written back.

use sha2::{Digest as _, Sha256};
use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

const MANIFEST_HEADER: &str = "preflight-unstaged 1";

/// What is at a path of the work tree, as far as restoring it exactly is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Nothing: no entry, or a parent that is not a folder.
    Absent,
    /// A regular file: its permission bits and the SHA-256 of its bytes.
    File {
        mode: u32,
        digest: [u8; 32],
    },
    Link(PathBuf),
    Dir,
    /// A fifo, socket or device: not something preflight copies.
    Other,
}

/// One tracked path whose work-tree state was set aside.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    /// What the user had there (`File`, `Link` or `Absent`).
    pub user: Node,
}

/// Everything one set-aside did, as written in the manifest.
#[derive(Debug, Default)]
pub struct Manifest {
    pub entries: Vec<Entry>,
    /// Untracked files or folders moved to `work/<path>` because a tracked path needed the place.
    pub moved: Vec<PathBuf>,
    /// Folders created in the work tree to hold staged files, parents first.
    pub created_dirs: Vec<PathBuf>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn hex_path(path: &Path) -> String {
    hex(path.as_os_str().as_bytes())
}

fn unhex_path(text: &str) -> Option<PathBuf> {
    unhex(text).map(|b| PathBuf::from(OsString::from_vec(b)))
}

impl Manifest {
    pub fn to_text(&self) -> String {
        let mut out = format!("{MANIFEST_HEADER}\n");
        for entry in &self.entries {
            let line = match &entry.user {
                Node::File { mode, digest } => {
                    format!("file {} {mode:o} {}", hex_path(&entry.path), hex(digest))
                }
                Node::Link(target) => {
                    format!("link {} {}", hex_path(&entry.path), hex_path(target))
                }
                _ => format!("absent {}", hex_path(&entry.path)),
            };
            out.push_str(&line);
            out.push('\n');
        }
        for path in &self.moved {
            out.push_str(&format!("moved {}\n", hex_path(path)));
        }
        for path in &self.created_dirs {
            out.push_str(&format!("dir {}\n", hex_path(path)));
        }
        out
    }

    pub fn parse(text: &str) -> Option<Manifest> {
        let mut lines = text.lines();
        if lines.next()? != MANIFEST_HEADER {
            return None;
        }
        let mut manifest = Manifest::default();
        for line in lines {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields.as_slice() {
                ["file", path, mode, digest] => {
                    let digest: [u8; 32] = unhex(digest)?.try_into().ok()?;
                    manifest.entries.push(Entry {
                        path: safe_relative(unhex_path(path)?)?,
                        user: Node::File {
                            mode: u32::from_str_radix(mode, 8).ok()?,
                            digest,
                        },
                    });
                }
                ["link", path, target] => manifest.entries.push(Entry {
                    path: safe_relative(unhex_path(path)?)?,
                    user: Node::Link(unhex_path(target)?),
                }),
                ["absent", path] => manifest.entries.push(Entry {
                    path: safe_relative(unhex_path(path)?)?,
                    user: Node::Absent,
                }),
                ["moved", path] => manifest.moved.push(safe_relative(unhex_path(path)?)?),
                ["dir", path] => manifest
                    .created_dirs
                    .push(safe_relative(unhex_path(path)?)?),
                _ => return None,
            }
        }
        Some(manifest)
    }
}

/// Only plain relative paths inside the work tree (a manifest never points outside it).
fn safe_relative(path: PathBuf) -> Option<PathBuf> {
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    (plain && !path.as_os_str().is_empty()).then_some(path)
}

/// What is at `rel` below `root`, without following symlinks anywhere on the way: a path
/// below a symlink or a file counts as absent (git would not write through it either).
pub fn node_at(root: &Path, rel: &Path) -> std::io::Result<Node> {
    if blocking_ancestor(root, rel)?.is_some() {
        return Ok(Node::Absent);
    }
    node_of(&root.join(rel))
}

/// The state of exactly `path` (not following a final symlink).
pub fn node_of(path: &Path) -> std::io::Result<Node> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if is_absent(&e) => return Ok(Node::Absent),
        Err(e) => return Err(e),
    };
    let kind = meta.file_type();
    Ok(if kind.is_symlink() {
        Node::Link(std::fs::read_link(path)?)
    } else if kind.is_file() {
        Node::File {
            mode: meta.permissions().mode() & 0o7777,
            digest: digest_of(&std::fs::read(path)?),
        }
    } else if kind.is_dir() {
        Node::Dir
    } else {
        Node::Other
    })
}

fn is_absent(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

pub fn digest_of(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The first parent folder of `rel` (inside the work tree) that is not a real folder: a file,
/// a symlink or something else sitting where a tracked path needs a folder.
pub fn blocking_ancestor(root: &Path, rel: &Path) -> std::io::Result<Option<PathBuf>> {
    let mut prefix = PathBuf::new();
    let parents: Vec<Component> = rel
        .parent()
        .map_or(Vec::new(), |p| p.components().collect());
    for part in parents {
        prefix.push(part);
        match std::fs::symlink_metadata(root.join(&prefix)) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => return Ok(Some(prefix)),
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The name of the temporary file written beside `target` before it is renamed over it.
pub fn temp_beside(target: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(target.file_name().unwrap_or_default());
    name.push(".preflight-tmp");
    target.with_file_name(name)
}

/// Replaces whatever file or symlink is at `target` with `bytes` (mode `mode`) or a symlink to
/// `link`: written beside it, then renamed over it, so that a full disk or a kill leaves
/// the old version or the new one, never a part. Then reads it back to check. For a power
/// cut, the caller syncs the file system once (`sync_file_system`) before relying on it.
pub fn replace_with(target: &Path, content: &Replacement) -> std::io::Result<()> {
    let temp = temp_beside(target);
    let _ = std::fs::remove_file(&temp);
    let written = (|| {
        match content {
            Replacement::File { bytes, mode } => {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&temp)?;
                file.write_all(bytes)?;
                file.set_permissions(std::fs::Permissions::from_mode(*mode))?;
            }
            Replacement::Link(to) => std::os::unix::fs::symlink(to, &temp)?,
        }
        std::fs::rename(&temp, target)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    let expected = match content {
        Replacement::File { bytes, mode } => Node::File {
            mode: *mode,
            digest: digest_of(bytes),
        },
        Replacement::Link(to) => Node::Link(to.clone()),
    };
    if node_of(target)? != expected {
        return Err(std::io::Error::other(format!(
            "{} does not read back as written",
            target.display()
        )));
    }
    Ok(())
}

/// New content for one work-tree path.
pub enum Replacement {
    File { bytes: Vec<u8>, mode: u32 },
    Link(PathBuf),
}

impl Replacement {
    /// The file or symlink at `path` as it is now, to be written elsewhere.
    pub fn read(path: &Path) -> std::io::Result<Replacement> {
        let meta = std::fs::symlink_metadata(path)?;
        if meta.file_type().is_symlink() {
            Ok(Replacement::Link(std::fs::read_link(path)?))
        } else {
            Ok(Replacement::File {
                bytes: std::fs::read(path)?,
                mode: meta.permissions().mode() & 0o7777,
            })
        }
    }
}

/// Syncs the folder holding `path`, so a rename in it survives a power cut.
pub fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
    {
        let _ = d.sync_all();
    }
}

/// Makes `paths` and the folders holding them (up to `top`) durable: one sync each when
/// they are few, else one sync of the whole file system holding `top` (cheaper for hundreds
/// of files, though it also waits for other programs' writes).
pub fn sync_paths(top: &Path, paths: &[PathBuf]) -> std::io::Result<()> {
    const FEW: usize = 64;
    let mut dirs = std::collections::BTreeSet::new();
    for path in paths {
        for dir in path.ancestors().skip(1) {
            if !dir.starts_with(top) {
                break;
            }
            dirs.insert(dir.to_path_buf());
        }
    }
    if paths.len() + dirs.len() > FEW {
        return sync_file_system(top);
    }
    let sync = |path: &Path| match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() || m.is_dir() => std::fs::File::open(path)?.sync_all(),
        Ok(_) => Ok(()),
        Err(e) if is_absent(&e) => Ok(()),
        Err(e) => Err(e),
    };
    for path in paths {
        sync(path)?;
    }
    for dir in &dirs {
        sync(dir)?;
    }
    Ok(())
}

/// Every file and symlink below `dir`.
pub fn files_below(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            found.extend(files_below(&entry.path())?);
        } else {
            found.push(entry.path());
        }
    }
    Ok(found)
}

/// Writes everything written so far on the file system holding `path` to disk: one call
/// instead of a sync per file, which would cost seconds for a few hundred files.
pub fn sync_file_system(path: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let dir = std::fs::File::open(path)?;
        // SAFETY: syncfs on a descriptor we own.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        // SAFETY: sync takes no arguments and cannot fail.
        unsafe { libc::sync() };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_reads_back_with_any_bytes_in_names() {
        let manifest = Manifest {
            entries: vec![
                Entry {
                    path: PathBuf::from(OsString::from_vec(b"new\nline \xff.txt".to_vec())),
                    user: Node::File {
                        mode: 0o755,
                        digest: [7; 32],
                    },
                },
                Entry {
                    path: "a b/link".into(),
                    user: Node::Link("../x y".into()),
                },
                Entry {
                    path: "gone".into(),
                    user: Node::Absent,
                },
            ],
            moved: vec!["utils.py".into()],
            created_dirs: vec!["lib".into(), "lib/sub".into()],
        };
        let back = Manifest::parse(&manifest.to_text()).unwrap();
        assert_eq!(back.to_text(), manifest.to_text());
        assert_eq!(back.entries[0].path, manifest.entries[0].path);
    }

    #[test]
    fn a_manifest_cannot_point_outside_the_work_tree() {
        for bad in ["/etc/passwd", "../x", "a/../../x"] {
            let text = format!("{MANIFEST_HEADER}\nabsent {}\n", hex(bad.as_bytes()));
            assert!(Manifest::parse(&text).is_none(), "{bad}");
        }
        assert!(Manifest::parse("something else\n").is_none());
    }
}
