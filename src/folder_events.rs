//! Which files in some folders may have changed since a moment, without looking at each
//! file again: an inotify watch on each folder and on every folder above it up to the
//! repository's top, armed before the files are first looked at and read once afterwards.
//! The kernel queues an event in the same call that writes, truncates, renames, removes,
//! creates or changes the mode or times of a file, or closes it after opening it for
//! writing (which covers writes through a memory map), so a file with no event since the
//! arming is as it was. Any doubt answers "anything may have": a lost event (the queue
//! overflowed), a watched folder moved, removed or replaced, or a folder that could not be
//! watched. Linux only; elsewhere nothing is armed. Imports nothing from the rest of
//! preflight.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The watches of some folders, and what was seen in them so far.
pub struct FolderEvents {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
    /// Each watch's folder, repository-relative ("" is the top).
    folders: HashMap<i32, PathBuf>,
    /// The watched folders.
    watched: HashSet<PathBuf>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Something happened that a list of names cannot tell.
    doubt: bool,
    /// Repository-relative paths of the entries that had an event.
    touched: HashSet<PathBuf>,
}

/// Whether watching the folders of `files` files in `folders` folders costs less than
/// looking at each file again: many files, several to a folder.
pub fn worth_it(files: usize, folders: usize) -> bool {
    files >= 256 && folders.saturating_mul(4) <= files
}

/// The folders `paths` (repository-relative) are in, each once.
pub fn folders_of<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Vec<&'a Path> {
    use std::os::unix::ffi::OsStrExt;
    let mut seen = HashSet::new();
    paths
        .into_iter()
        .map(|path| {
            let bytes = path.as_os_str().as_bytes();
            let end = bytes.iter().rposition(|&b| b == b'/').unwrap_or(0);
            Path::new(std::ffi::OsStr::from_bytes(&bytes[..end]))
        })
        .filter(|folder| seen.insert(*folder))
        .collect()
}

/// The entries that had an event since the arming, in the watched folders.
pub struct Changes<'a> {
    touched: HashSet<PathBuf>,
    watched: &'a HashSet<PathBuf>,
}

impl Changes<'_> {
    /// Whether `path` (repository-relative) may have changed: it had an event, or its folder
    /// is not watched.
    pub fn may_have_changed(&self, path: &Path) -> bool {
        let folder = path.parent().unwrap_or(Path::new(""));
        !self.watched.contains(folder) || self.touched.contains(path)
    }
}

impl FolderEvents {
    /// Watches on the folders of `paths` (relative to `root`), armed before they are looked
    /// at, when there are enough of them that a later look at only the files with events
    /// pays (see `worth_it`).
    pub fn arm_for<P: AsRef<Path>>(root: &Path, paths: &[P]) -> Option<Self> {
        let folders = folders_of(paths.iter().map(AsRef::as_ref));
        worth_it(paths.len(), folders.len()).then(|| Self::arm(root, folders))?
    }

    /// Watches `folders` (repository-relative, "" the top) of the tree at `root`, and the
    /// folders above them. `None` when a watch cannot be set (no inotify, too many watches
    /// already, a folder that is not there or is a symbolic link).
    #[cfg(target_os = "linux")]
    pub fn arm<'a>(root: &Path, folders: impl IntoIterator<Item = &'a Path>) -> Option<Self> {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        let mut watched = HashSet::new();
        for folder in folders {
            for above in folder.ancestors() {
                if !watched.insert(above.to_path_buf()) {
                    break;
                }
            }
        }
        // SAFETY: no pointers; a new descriptor or -1.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return None;
        }
        // SAFETY: `raw` is a descriptor just opened and owned by nothing else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let mask = libc::IN_MODIFY
            | libc::IN_ATTRIB
            | libc::IN_CLOSE_WRITE
            | libc::IN_MOVED_FROM
            | libc::IN_MOVED_TO
            | libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_DELETE_SELF
            | libc::IN_MOVE_SELF
            | libc::IN_ONLYDIR
            | libc::IN_DONT_FOLLOW;
        let mut by_watch = HashMap::with_capacity(watched.len());
        for folder in &watched {
            let path = std::ffi::CString::new(root.join(folder).as_os_str().as_bytes()).ok()?;
            // SAFETY: an open inotify descriptor and a NUL-terminated path.
            let wd = unsafe {
                libc::inotify_add_watch(std::os::fd::AsRawFd::as_raw_fd(&fd), path.as_ptr(), mask)
            };
            if wd < 0 {
                return None;
            }
            by_watch.insert(wd, folder.clone());
        }
        Some(FolderEvents {
            fd,
            folders: by_watch,
            watched,
            seen: Mutex::new(Seen::default()),
        })
    }

    #[cfg(not(target_os = "linux"))]
    pub fn arm<'a>(_root: &Path, _folders: impl IntoIterator<Item = &'a Path>) -> Option<Self> {
        None
    }

    /// What changed since the arming, as far as names tell; `None` when anything may have.
    pub fn changes(&self) -> Option<Changes<'_>> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        self.drain(&mut seen);
        (!seen.doubt).then(|| Changes {
            touched: seen.touched.clone(),
            watched: &self.watched,
        })
    }

    /// Moves the queued events into `seen`.
    #[cfg(target_os = "linux")]
    fn drain(&self, seen: &mut Seen) {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: reading into a buffer we own, of the length given.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                )
            };
            if n < 0 {
                let error = std::io::Error::last_os_error();
                match error.kind() {
                    std::io::ErrorKind::Interrupted => continue,
                    std::io::ErrorKind::WouldBlock => return,
                    _ => {
                        seen.doubt = true;
                        return;
                    }
                }
            }
            let n = usize::try_from(n).unwrap_or(0);
            if n == 0 {
                return;
            }
            let mut at = 0;
            while at + HEADER <= n {
                // SAFETY: the kernel wrote whole events; an unaligned read of the header.
                let event: libc::inotify_event = unsafe {
                    std::ptr::read_unaligned(buf[at..].as_ptr().cast::<libc::inotify_event>())
                };
                let name_len = event.len as usize;
                let name_bytes = buf.get(at + HEADER..at + HEADER + name_len).unwrap_or(&[]);
                let name_end = name_bytes.iter().position(|&b| b == 0).unwrap_or(name_len);
                let name = std::ffi::OsStr::from_bytes(&name_bytes[..name_end]);
                at += HEADER + name_len;
                let lost = libc::IN_Q_OVERFLOW
                    | libc::IN_IGNORED
                    | libc::IN_UNMOUNT
                    | libc::IN_DELETE_SELF
                    | libc::IN_MOVE_SELF;
                let Some(folder) = self.folders.get(&event.wd) else {
                    seen.doubt = true;
                    continue;
                };
                if event.mask & lost != 0 || name.is_empty() {
                    seen.doubt = true;
                    continue;
                }
                let path = folder.join(name);
                // A watched folder itself came or went: what is below it now is not what
                // was watched.
                if self.watched.contains(&path) {
                    seen.doubt = true;
                }
                seen.touched.insert(path);
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn drain(&self, _seen: &mut Seen) {}
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::FolderEvents;
    use std::path::Path;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a/one", "a/two", "a/b/three", "top"] {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, f).unwrap();
        }
        dir
    }

    fn armed(dir: &tempfile::TempDir) -> FolderEvents {
        FolderEvents::arm(dir.path(), [Path::new("a"), Path::new("a/b")]).unwrap()
    }

    #[test]
    fn a_file_written_renamed_removed_or_changed_in_mode_is_named_and_no_other() {
        let dir = tree();
        let events = armed(&dir);
        let p = |f: &str| dir.path().join(f);
        let changed = |path: &str| events.changes().unwrap().may_have_changed(Path::new(path));
        assert!(!changed("a/one"));
        std::fs::OpenOptions::new()
            .append(true)
            .open(p("a/one"))
            .unwrap();
        assert!(changed("a/one"), "opened to write");
        assert!(!changed("a/two"));
        std::fs::rename(p("a/b/three"), p("a/b/3")).unwrap();
        assert!(changed("a/b/three"));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p("a/two"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(changed("a/two"));
        let _ = std::fs::read(p("top")).unwrap();
        let _ = std::fs::read(p("a/b/3")).unwrap();
        assert!(!changed("top"), "reading is not changing");
        assert!(
            changed("elsewhere/x"),
            "an unwatched folder may hold anything"
        );
    }

    #[test]
    fn a_watched_folder_or_one_above_it_moved_or_replaced_puts_everything_in_doubt() {
        for moved in ["a/b", "a"] {
            let dir = tree();
            let events = armed(&dir);
            std::fs::rename(dir.path().join(moved), dir.path().join("elsewhere")).unwrap();
            std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
            std::fs::write(dir.path().join("a/b/three"), "other").unwrap();
            assert!(events.changes().is_none(), "{moved} moved away");
        }
    }

    #[test]
    fn a_folder_that_is_not_there_or_is_a_link_is_not_armed() {
        let dir = tree();
        assert!(FolderEvents::arm(dir.path(), [Path::new("gone")]).is_none());
        std::os::unix::fs::symlink("a", dir.path().join("link")).unwrap();
        assert!(FolderEvents::arm(dir.path(), [Path::new("link")]).is_none());
    }
}
