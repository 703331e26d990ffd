//! The tool store, shared by every repository of the user:
//!
//! ```text
//! <cache>/tools/<backend>/<package>/<version>/<integrity16>/   one installed tool
//!     bin/                     its commands (relative links into what the backend made)
//!     .preflight-tool.json     written last: without it the folder is not a tool
//! <cache>/tools/.tmp/<key>-<random>/   installs in progress, renamed into place when done
//! <cache>/tools/.locks/<key>.lock      one flock per tool: two processes install it once
//! ```
//! Using an installed tool costs one `stat` of its marker: no process, no hashing.

use super::lockfile::{Identity, LockedTool};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The marker's name; its presence means "complete".
pub const MARKER: &str = ".preflight-tool.json";

/// What the marker says: who the tool is and when it was last used (for `prune`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    pub name: String,
    pub backend: String,
    pub package: String,
    pub version: String,
    pub integrity: String,
    /// The commands in `bin/`.
    pub commands: Vec<String>,
    /// SHA-256 of the installed files (see `tree_digest`), taken at install time: checked by
    /// `preflight tools install` and `--locked` runs, not on every commit.
    #[serde(default)]
    pub tree: Option<String>,
}

/// The store's root folder.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

/// A file-system-safe form of a package name (`@scope/pkg` → `@scope+pkg`).
fn safe(component: &str) -> String {
    component
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@+".contains(c) {
                c
            } else {
                '+'
            }
        })
        .collect()
}

impl Store {
    /// The store under a cache folder.
    pub fn under(cache_dir: &Path) -> Store {
        Store {
            root: cache_dir.join("tools"),
        }
    }

    /// The folder of a tool with this identity.
    pub fn dir_of(&self, id: &Identity) -> PathBuf {
        self.root
            .join(safe(&id.backend))
            .join(safe(&id.package))
            .join(safe(&id.version))
            .join(&id.integrity[..16.min(id.integrity.len())])
    }

    /// A short name for locks and temp folders.
    fn key_of(id: &Identity) -> String {
        key(&id.backend, &id.package, &id.version, &id.integrity)
    }

    /// Opens (creating) the install lock of the tool with this key.
    fn lock_file(&self, key: &str) -> std::io::Result<std::fs::File> {
        let locks = self.root.join(".locks");
        std::fs::create_dir_all(&locks)?;
        std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(locks.join(format!("{key}.lock")))
    }

    /// Holds the lock of the lock file at `lock_path` until the returned file is dropped:
    /// two runs that each add entries read, merge and write it one after the other.
    pub fn lock_lockfile(&self, lock_path: &Path) -> Result<std::fs::File> {
        use sha2::{Digest, Sha256};
        let full = lock_path
            .parent()
            .and_then(|d| d.canonicalize().ok())
            .map_or_else(|| lock_path.to_path_buf(), |d| d.join(super::LOCK_FILE));
        let digest = Sha256::digest(full.as_os_str().as_encoded_bytes());
        let key = format!("lockfile-{}", &super::lockfile::hex(&digest)[..16]);
        let io = |e| Error::io(format!("cannot lock {}", lock_path.display()), e);
        let file = self.lock_file(&key).map_err(io)?;
        crate::lock::flock(&file, crate::lock::Mode::Exclusive, true).map_err(io)?;
        Ok(file)
    }

    /// Whether the installed files still have the digest its marker recorded at install
    /// time (reads every file: for `tools install` and `--locked`, not for hooks).
    pub fn intact(&self, id: &Identity) -> bool {
        let Some(want) = self.marker(id).and_then(|m| m.tree) else {
            return false;
        };
        tree_digest(&self.dir_of(id)).is_ok_and(|got| got == want)
    }

    /// Whether the folder holds the tool, complete: its marker says this identity and each
    /// of its commands is there (one read of the marker, one `stat` per command; no
    /// hashing). Returns the marker's last-use time as well.
    fn complete(&self, id: &Identity) -> Option<SystemTime> {
        let dir = self.dir_of(id);
        let file = std::fs::File::open(dir.join(MARKER)).ok()?;
        let used = file.metadata().ok()?.modified().ok()?;
        let marker: Marker = serde_json::from_reader(std::io::BufReader::new(file)).ok()?;
        let bin = dir.join("bin");
        let whole = marker.integrity == id.integrity
            && marker
                .commands
                .iter()
                .all(|c| std::fs::metadata(bin.join(c)).is_ok_and(|m| m.is_file()));
        whole.then_some(used)
    }

    /// Whether the tool is installed: one stat of its marker.
    pub fn is_installed(&self, id: &Identity) -> bool {
        self.dir_of(id).join(MARKER).is_file()
    }

    /// The marker of an installed tool, read (not on the hot path).
    pub fn marker(&self, id: &Identity) -> Option<Marker> {
        let bytes = std::fs::read(self.dir_of(id).join(MARKER)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Installs the tool of `locked` unless it is there, with `build` making its files in a
    /// temp folder: `build(temp, final)` fills `temp` (which becomes `final`) and returns the
    /// commands' paths relative to it. Holds the tool's lock the whole time, so a second
    /// process waits and then finds it installed. Returns whether it installed.
    pub fn install(
        &self,
        locked: &LockedTool,
        verify: bool,
        build: impl FnOnce(&Path, &Path) -> Result<Vec<(String, PathBuf)>>,
    ) -> Result<bool> {
        let id = locked.identity();
        let dir = self.dir_of(&id);
        let usable =
            |store: &Store| store.complete(&id).is_some() && (!verify || store.intact(&id));
        if usable(self) {
            return Ok(false);
        }
        let io = |what: &str, e: std::io::Error| {
            Error::io(format!("tool `{}`: cannot {what}", id.name), e)
        };
        let key = Self::key_of(&id);
        let lock_file = self
            .lock_file(&key)
            .map_err(|e| io("open the tool store's lock", e))?;
        crate::lock::flock(&lock_file, crate::lock::Mode::Exclusive, true)
            .map_err(|e| io("lock the tool store", e))?;
        if usable(self) {
            return Ok(false);
        }
        // With the lock held, what is left of an earlier attempt is nobody's: a folder
        // without its marker or missing a command, temp folders of an install that was
        // killed.
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| io("remove a half-installed copy", e))?;
        }
        let tmp_root = self.root.join(".tmp");
        std::fs::create_dir_all(&tmp_root).map_err(|e| io("create the tool store", e))?;
        if let Ok(entries) = std::fs::read_dir(&tmp_root) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{key}-"))
                {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let temp = TempDir(tmp_root.join(format!("{key}-{}", uuid::Uuid::new_v4().simple())));
        std::fs::create_dir(&temp.0).map_err(|e| io("create a temp folder", e))?;
        let commands = build(&temp.0, &dir)?;
        let bin = temp.0.join("bin");
        std::fs::create_dir_all(&bin).map_err(|e| io("create its bin folder", e))?;
        let mut names = Vec::new();
        for (name, target) in &commands {
            // Relative links survive the rename into place.
            let link = Path::new("..").join(target);
            std::os::unix::fs::symlink(&link, bin.join(name))
                .map_err(|e| io(&format!("link its command `{name}`"), e))?;
            names.push(name.clone());
        }
        let tree = tree_digest(&temp.0).map_err(|e| io("read what it installed", e))?;
        let marker = Marker {
            tree: Some(tree),
            name: id.name.clone(),
            backend: id.backend.clone(),
            package: id.package.clone(),
            version: id.version.clone(),
            integrity: id.integrity.clone(),
            commands: names,
        };
        let bytes = serde_json::to_vec_pretty(&marker).unwrap_or_default();
        crate::atomic::write(
            &temp.0.join(MARKER),
            &bytes,
            crate::atomic::Options {
                mode: None,
                durable: true,
            },
        )
        .map_err(|e| io("write its marker", e))?;
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("create the tool store", e))?;
        }
        std::fs::rename(&temp.0, &dir).map_err(|e| io("move it into the store", e))?;
        std::mem::forget(temp);
        Ok(true)
    }

    /// Every installed tool: its folder, its marker and when it was last used.
    pub fn installed(&self) -> Vec<(PathBuf, Marker, SystemTime)> {
        let mut found = Vec::new();
        for backend in read_dirs(&self.root) {
            if backend
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            for package in read_dirs(&backend) {
                for version in read_dirs(&package) {
                    for dir in read_dirs(&version) {
                        let marker_path = dir.join(MARKER);
                        let Ok(bytes) = std::fs::read(&marker_path) else {
                            continue;
                        };
                        let Ok(marker) = serde_json::from_slice::<Marker>(&bytes) else {
                            continue;
                        };
                        let used = last_used(&dir);
                        found.push((dir, marker, used));
                    }
                }
            }
        }
        found
    }

    /// Removes an installed tool's folder: first its marker goes (from then on no run uses
    /// it), then the folder is moved aside and deleted.
    pub fn remove(&self, dir: &Path) -> std::io::Result<()> {
        // Compared once `..` and links are resolved: a lexical prefix is not containment.
        let root = self.root.canonicalize()?;
        let inside = dir
            .canonicalize()
            .is_ok_and(|d| d.starts_with(&root) && d != root);
        if !inside {
            return Err(std::io::Error::other("not a folder of the tool store"));
        }
        match std::fs::remove_file(dir.join(MARKER)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let trash = self.root.join(".tmp");
        std::fs::create_dir_all(&trash)?;
        let aside = trash.join(format!("removed-{}", uuid::Uuid::new_v4().simple()));
        std::fs::rename(dir, &aside)?;
        std::fs::remove_dir_all(&aside)
    }

    /// Whether the tool is installed and complete (see `complete`), noting that it is used:
    /// the marker's mtime is the last use `prune` goes by, moved forward at most every
    /// [`TOUCH_EVERY`] so that a commit seldom writes.
    pub fn check_and_touch(&self, id: &Identity) -> bool {
        let Some(used) = self.complete(id) else {
            return false;
        };
        let stale = used.elapsed().map_or(true, |age| age > TOUCH_EVERY);
        if stale {
            touch(&self.dir_of(id).join(MARKER));
        }
        true
    }

    /// Removes an installed tool for `prune` unless it is in use: its install lock is
    /// held by another process, or it was used within [`IN_USE`]. Returns whether it went.
    pub fn remove_unused(&self, dir: &Path, marker: &Marker) -> std::io::Result<bool> {
        let key = key(
            &marker.backend,
            &marker.package,
            &marker.version,
            &marker.integrity,
        );
        let lock_file = self.lock_file(&key)?;
        if !crate::lock::flock(&lock_file, crate::lock::Mode::Exclusive, false)? {
            return Ok(false);
        }
        let recent = last_used(dir).elapsed().map_or(true, |age| age < IN_USE);
        if recent {
            return Ok(false);
        }
        self.remove(dir)?;
        Ok(true)
    }
}

/// How often a use moves a tool's last-use time forward.
pub const TOUCH_EVERY: Duration = Duration::from_secs(10 * 60);

/// `prune` never removes a tool used this recently (a step may be running it): well above
/// [`TOUCH_EVERY`], so that a tool used in the last 50 minutes always counts as in use.
pub const IN_USE: Duration = Duration::from_secs(3600);

/// A short name for a tool's lock and temp folders.
fn key(backend: &str, package: &str, version: &str, integrity: &str) -> String {
    format!(
        "{}-{}-{}-{}",
        safe(backend),
        safe(package).replace('@', ""),
        safe(version),
        &integrity[..16.min(integrity.len())]
    )
}

/// SHA-256 over every entry under `root` in name order: its relative path, its kind, the
/// executable bit and the content of files or the target of links. The marker is left out
/// (its mtime is the last use), and so are Python's `__pycache__` folders, which a tool
/// writes into its own environment when it runs.
fn tree_digest(root: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    fn walk(dir: &Path, rel: &Path, hasher: &mut Sha256) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            if (rel.as_os_str().is_empty() && name == MARKER) || name == "__pycache__" {
                continue;
            }
            let path = entry.path();
            let rel = rel.join(&name);
            let meta = std::fs::symlink_metadata(&path)?;
            hasher.update(rel.as_os_str().as_encoded_bytes());
            hasher.update([0]);
            if meta.is_dir() {
                hasher.update(b"d");
                walk(&path, &rel, hasher)?;
            } else if meta.file_type().is_symlink() {
                hasher.update(b"l");
                hasher.update(std::fs::read_link(&path)?.as_os_str().as_encoded_bytes());
            } else {
                let exec = meta.permissions().mode() & 0o111 != 0;
                hasher.update(if exec { b"x" } else { b"f" });
                let mut file = std::fs::File::open(&path)?;
                let mut content = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = std::io::Read::read(&mut file, &mut buf)?;
                    if n == 0 {
                        break;
                    }
                    content.update(&buf[..n]);
                }
                hasher.update(content.finalize());
            }
            hasher.update([0]);
        }
        Ok(())
    }
    let mut hasher = Sha256::new();
    walk(root, Path::new(""), &mut hasher)?;
    Ok(super::lockfile::hex(&hasher.finalize()))
}

/// Sets a file's mtime to now (failures do not matter: it only ages the tool for `prune`).
fn touch(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: a NUL-terminated path and a null `times` (meaning "now"); no memory is kept.
    unsafe {
        libc::utimensat(libc::AT_FDCWD, c.as_ptr(), std::ptr::null(), 0);
    }
}

/// When a tool folder was last used: its marker's mtime.
fn last_used(dir: &Path) -> SystemTime {
    std::fs::metadata(dir.join(MARKER))
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// A temp folder removed when dropped (a failed install leaves nothing behind).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
