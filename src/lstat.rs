//! `lstat` of many files under one folder tree. A hook looks at thousands of files in a few
//! folders: each is looked up from an open handle on its folder, opened once for the files it
//! holds, so that the kernel does not walk the whole path again for every file. Imports
//! nothing from the rest of preflight.

use rayon::prelude::*;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Below this many files the work stays on the calling thread.
const PARALLEL_FROM: usize = 512;
/// Files per piece of work when spread over the cores.
const CHUNK: usize = 256;

/// The `lstat` data of each of `paths` (relative to `root`), in the same order; `None` for a
/// path that is not there or cannot be looked at. Paths of one folder should come together
/// (a sorted list does) so that each folder is opened once.
pub fn lstat_all<P: AsRef<Path> + Sync>(root: &Path, paths: &[P]) -> Vec<Option<libc::stat>> {
    if paths.len() < PARALLEL_FROM {
        return lstat_run(root, paths);
    }
    in_file_pool(|| {
        paths
            .par_chunks(CHUNK)
            .flat_map_iter(|chunk| lstat_run(root, chunk))
            .collect()
    })
}

/// Runs `work` on the threads that look at and hash files, one per core (a run with `-j 1`
/// still looks at files on every core). One pool for all of it: each costs its threads'
/// start. Where no thread can be started, `work` runs here.
pub fn in_file_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
            .thread_name(|i| format!("preflight-files-{i}"))
            .build()
            .ok()
    });
    match pool {
        Some(pool) => pool.install(work),
        None => work(),
    }
}

/// `lstat_all` on the calling thread.
fn lstat_run<P: AsRef<Path>>(root: &Path, paths: &[P]) -> Vec<Option<libc::stat>> {
    let mut folder: Option<(&[u8], Option<std::fs::File>)> = None;
    let mut stats = Vec::with_capacity(paths.len());
    for path in paths {
        let path = path.as_ref();
        // Split by the bytes: taking a path apart component by component costs more than
        // the lstat itself, thousands of times over.
        let bytes = path.as_os_str().as_bytes();
        let (parent, name) = match bytes.iter().rposition(|&b| b == b'/') {
            Some(slash) => (&bytes[..slash], &bytes[slash + 1..]),
            None => (&b""[..], bytes),
        };
        if folder.as_ref().is_none_or(|(p, _)| *p != parent) {
            let opened = std::fs::File::options()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(root.join(std::ffi::OsStr::from_bytes(parent)))
                .ok();
            folder = Some((parent, opened));
        }
        let stat = match &folder {
            _ if matches!(name, b"" | b"." | b"..") => lstat_taken_apart(root, path),
            Some((_, Some(dir))) => lstat_at(dir, name),
            // A folder that cannot be opened is asked the long way.
            _ => lstat_path(&root.join(path)),
        };
        stats.push(stat);
    }
    stats
}

/// The `lstat` data of files, kept so that a later look at the same files in the same run
/// need not ask the kernel again.
pub struct Taken {
    /// Where each path ends in `names`: repository-relative paths, sorted by their bytes.
    ends: Vec<usize>,
    /// Each path's stat data, in the same order (`None`: not there).
    stats: Vec<Option<libc::stat>>,
    /// The paths' bytes, one after the other (one allocation for thousands of paths).
    names: Vec<u8>,
    /// When it was taken: before the first file was looked at.
    pub at: std::time::SystemTime,
}

impl std::fmt::Debug for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Taken")
            .field("files", &self.ends.len())
            .field("at", &self.at)
            .finish()
    }
}

impl Taken {
    pub fn new<P: AsRef<Path>>(
        paths: &[P],
        mut stats: Vec<Option<libc::stat>>,
        at: std::time::SystemTime,
    ) -> Taken {
        let bytes = |k: usize| paths[k].as_ref().as_os_str().as_bytes();
        // A path without stat data was not looked at: it is left out.
        let count = paths.len().min(stats.len());
        stats.truncate(count);
        let mut order: Vec<usize> = (0..count).collect();
        // Sorted already as a rule (a hook's files are): the stat data is kept, not copied.
        if !order.is_sorted_by(|&a, &b| bytes(a) <= bytes(b)) {
            order.sort_by(|&a, &b| bytes(a).cmp(bytes(b)));
            stats = order.iter().map(|&k| stats[k]).collect();
        }
        let mut names = Vec::with_capacity(order.iter().map(|&k| bytes(k).len()).sum());
        let ends = order
            .iter()
            .map(|&k| {
                names.extend_from_slice(bytes(k));
                names.len()
            })
            .collect();
        Taken {
            ends,
            stats,
            names,
            at,
        }
    }

    /// The path of entry `i`.
    fn name(&self, i: usize) -> &[u8] {
        let start = i.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.names[start..self.ends[i]]
    }

    /// The stat data of `path` when it was taken; `None` when it was not looked at.
    pub fn get(&self, path: &Path) -> Option<Option<libc::stat>> {
        let key = path.as_os_str().as_bytes();
        find_sorted(self.ends.len(), 0, key, |i| self.name(i)).map(|i| self.stats[i])
    }

    /// The stat data of each of `paths` when it was taken; `None` when any was not looked at.
    pub fn get_each<P: AsRef<Path>>(&self, paths: &[P]) -> Option<Vec<Option<libc::stat>>> {
        let mut from = 0;
        paths
            .iter()
            .map(|path| {
                let key = path.as_ref().as_os_str().as_bytes();
                let i = find_sorted(self.ends.len(), from, key, |i| self.name(i))?;
                from = i + 1;
                Some(self.stats[i])
            })
            .collect()
    }
}

/// The position of `key` among `len` keys in sorted order, `key_at(i)` the `i`th; looked
/// for first just after `from`, where the next of a sorted run of keys usually is (a hook's
/// files are a sorted subset of what was looked at), then by a binary search.
pub fn find_sorted<'k>(
    len: usize,
    from: usize,
    key: &[u8],
    key_at: impl Fn(usize) -> &'k [u8],
) -> Option<usize> {
    const NEAR: usize = 4;
    for i in from.min(len)..from.saturating_add(NEAR).min(len) {
        match key_at(i).cmp(key) {
            std::cmp::Ordering::Less => continue,
            std::cmp::Ordering::Equal => return Some(i),
            std::cmp::Ordering::Greater => break,
        }
    }
    let (mut low, mut high) = (0, len);
    while low < high {
        let mid = low + (high - low) / 2;
        match key_at(mid).cmp(key) {
            std::cmp::Ordering::Less => low = mid + 1,
            std::cmp::Ordering::Equal => return Some(mid),
            std::cmp::Ordering::Greater => high = mid,
        }
    }
    None
}

/// A path that does not end in a plain name (a trailing `/`, a `.` or `..`; git never
/// writes one), taken apart as `Path` does: `a/` is `a` itself, `a/.` the folder.
fn lstat_taken_apart(root: &Path, path: &Path) -> Option<libc::stat> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(root.join(parent))
            .ok()
            .and_then(|dir| lstat_at(&dir, name.as_bytes())),
        _ => lstat_path(&root.join(path)),
    }
}

fn lstat_at(dir: &std::fs::File, name: &[u8]) -> Option<libc::stat> {
    if name.contains(&0) {
        return None; // No file has a NUL in its name.
    }
    // Most names fit a buffer on the stack, which saves an allocation per file.
    let mut short = [0u8; 256];
    let owned;
    let name: &std::ffi::CStr = if name.len() < short.len() {
        short[..name.len()].copy_from_slice(name);
        std::ffi::CStr::from_bytes_until_nul(&short[..=name.len()]).ok()?
    } else {
        owned = CString::new(name).ok()?;
        &owned
    };
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: an open descriptor, a NUL-terminated name, a buffer of the right type that is
    // only read when the call succeeded (and so filled it).
    unsafe {
        let r = libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            stat.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        );
        (r == 0).then(|| stat.assume_init())
    }
}

fn lstat_path(path: &Path) -> Option<libc::stat> {
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: a NUL-terminated path and a buffer of the right type, read only on success.
    unsafe {
        let r = libc::lstat(path.as_ptr(), stat.as_mut_ptr());
        (r == 0).then(|| stat.assume_init())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn every_path_gets_its_own_answer_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("top"), "1").unwrap();
        std::fs::write(dir.path().join("a/one"), "22").unwrap();
        std::fs::write(dir.path().join("a/b/two"), "333").unwrap();
        std::os::unix::fs::symlink("nowhere", dir.path().join("a/link")).unwrap();
        let mut paths: Vec<PathBuf> = ["top", "a/one", "a/gone", "a/link", "a/b/two", "no/x"]
            .iter()
            .map(PathBuf::from)
            .collect();
        // Many more than a chunk, so that the parallel path is taken and kept in order.
        for i in 0..1500 {
            paths.push(PathBuf::from(format!("a/missing{i}")));
        }
        paths.push(PathBuf::from("a/b/two"));
        let stats = lstat_all(dir.path(), &paths);
        assert_eq!(stats.len(), paths.len());
        let sizes: Vec<Option<i64>> = stats.iter().map(|s| s.map(|s| s.st_size)).collect();
        assert_eq!(
            &sizes[..6],
            &[Some(1), Some(2), None, Some(7), Some(3), None]
        );
        assert!(sizes[6..sizes.len() - 1].iter().all(Option::is_none));
        assert_eq!(sizes.last(), Some(&Some(3)));
        // Not followed: the link itself, not a missing target.
        assert_eq!(stats[3].unwrap().st_mode & libc::S_IFMT, libc::S_IFLNK);
    }
    #[test]
    fn odd_names_get_the_answer_the_whole_path_gets() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        let longest = "n".repeat(255);
        std::fs::write(dir.path().join("a").join(&longest), "1").unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("link")).unwrap();
        let paths = [
            "link/".to_string(),
            "a/.".to_string(),
            "a/..".to_string(),
            format!("a/{longest}"),
            format!("a/{longest}x"),
            "a/with\0nul".to_string(),
            "a".to_string(),
        ];
        let stats = lstat_all(dir.path(), &paths);
        let kinds: Vec<Option<u32>> = stats
            .iter()
            .map(|s| s.map(|s| s.st_mode & libc::S_IFMT))
            .collect();
        assert_eq!(
            kinds,
            [
                Some(libc::S_IFLNK),
                Some(libc::S_IFDIR),
                Some(libc::S_IFDIR),
                Some(libc::S_IFREG),
                None,
                None,
                Some(libc::S_IFDIR)
            ]
        );
    }

    #[test]
    fn keys_are_found_in_any_order_and_missing_ones_are_not() {
        let items: Vec<&[u8]> = vec![b"a/1", b"a/2", b"a/3", b"b/1", b"c", b"d/x/y", b"e"];
        let find = |from, key: &[u8]| find_sorted(items.len(), from, key, |i| items[i]);
        let mut from = 0;
        for (k, key) in items.iter().enumerate() {
            assert_eq!(find(from, key), Some(k));
            from = k + 1;
        }
        assert_eq!(find(0, b"e"), Some(6), "far ahead of where the walk is");
        assert_eq!(find(5, b"a/2"), Some(1), "behind it");
        assert_eq!(find(99, b"c"), Some(4), "past the end");
        assert_eq!(find(0, b"a/15"), None);
        assert_eq!(find(3, b"zz"), None);
        assert_eq!(find_sorted(0, 0, b"a", |_| b""), None);
    }

    #[test]
    fn taken_stat_data_is_found_by_path_sorted_or_not() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [("a", "1"), ("b/c", "22"), ("b/d", "333")] {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let now = std::time::SystemTime::now();
        for order in [["a", "b/c", "b/d", "gone"], ["b/d", "gone", "a", "b/c"]] {
            let paths: Vec<PathBuf> = order.iter().map(PathBuf::from).collect();
            let taken = Taken::new(&paths, lstat_all(dir.path(), &paths), now);
            let size = |p: &str| taken.get(Path::new(p)).map(|s| s.map(|s| s.st_size));
            assert_eq!(size("a"), Some(Some(1)), "{order:?}");
            assert_eq!(size("b/c"), Some(Some(2)), "{order:?}");
            assert_eq!(size("b/d"), Some(Some(3)), "{order:?}");
            assert_eq!(size("gone"), Some(None), "{order:?}");
            assert_eq!(size("b"), None, "not looked at");
            let each = taken
                .get_each(&[Path::new("b/c"), Path::new("b/d")])
                .unwrap();
            assert_eq!(
                each.iter().map(|s| s.unwrap().st_size).collect::<Vec<_>>(),
                [2, 3]
            );
            assert!(taken.get_each(&[Path::new("a"), Path::new("zz")]).is_none());
        }
    }
}
