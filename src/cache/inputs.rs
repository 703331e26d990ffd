//! The input files of a step and their digests.
//!
//! Every input file has one digest whatever its state: its git blob id (SHA-1 of
//! `blob <len>\0<content>`, or of the link target for a symlink). A tracked file whose stat
//! data still matches the index takes its id from the index without being read (unless the
//! entry is "racy": modified in the same instant as the index was written, when equal stat
//! data proves nothing). Dirty and untracked files are hashed, in parallel.

use super::blob_id::hash_file;
pub use super::blob_id::{git_blob_id, hex};
use crate::git::{IndexFile, IndexSnapshot};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One input file as it goes into the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    pub path: RecordPath,
    /// The git mode: `100644`, `100755` or `120000` (symlink).
    pub mode: String,
    /// The git blob id, in hex.
    pub digest: String,
}

/// A repository-relative path in a record: a string when it is UTF-8, else its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RecordPath {
    Text(String),
    Bytes(Vec<u8>),
}

impl RecordPath {
    pub fn new(path: &Path) -> Self {
        match path.to_str() {
            Some(s) => RecordPath::Text(s.to_string()),
            None => RecordPath::Bytes(path.as_os_str().as_bytes().to_vec()),
        }
    }

    pub fn to_path(&self) -> PathBuf {
        match self {
            RecordPath::Text(s) => PathBuf::from(s),
            RecordPath::Bytes(b) => PathBuf::from(std::ffi::OsStr::from_bytes(b)),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            RecordPath::Text(s) => s.as_bytes(),
            RecordPath::Bytes(b) => b,
        }
    }
}

/// Paths sort by their bytes, as git sorts them, whatever their form.
impl Ord for RecordPath {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes().cmp(other.bytes())
    }
}

impl PartialOrd for RecordPath {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for RecordPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.bytes()))
    }
}

/// What hashing the inputs cost: for the explanation and for measuring.
#[derive(Debug, Default, Clone, Copy)]
pub struct HashStats {
    /// Files whose digest came from the index.
    pub from_index: usize,
    /// Files read and hashed, and their bytes.
    pub hashed: usize,
    pub hashed_bytes: u64,
}

/// A file that may be an input: its repository-relative path and, when git tracks it, its
/// index entry.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub path: &'a Path,
    pub entry: Option<&'a IndexFile>,
}

impl<'a> Candidate<'a> {
    /// A path whose index entry, if any, is looked up.
    pub fn lookup(index: &'a IndexSnapshot, path: &'a Path) -> Self {
        let key = path.as_os_str().as_bytes();
        let entry = index
            .files
            .binary_search_by(|f| f.path.as_os_str().as_bytes().cmp(key))
            .ok()
            .map(|i| &index.files[i]);
        Candidate { path, entry }
    }
}

/// How many files of one folder one task takes on.
const GROUP: usize = 256;
/// Below this many files, hashing stays on the calling thread.
const SMALL: usize = 64;

/// The digests of `candidates` (sorted by path, unique). Paths that are gone from the work
/// tree, or are folders, are left out. Files are examined folder by folder, relative to an
/// open handle on the folder, so that the kernel does not walk the whole path each time.
pub fn digest_all(
    root: &Path,
    index: &IndexSnapshot,
    candidates: &[Candidate],
) -> std::io::Result<(Vec<InputFile>, HashStats)> {
    let mut groups: Vec<&[Candidate]> = Vec::new();
    let mut start = 0;
    for i in 1..=candidates.len() {
        if i == candidates.len()
            || i - start == GROUP
            || candidates[i].path.parent() != candidates[start].path.parent()
        {
            if i > start {
                groups.push(&candidates[start..i]);
            }
            start = i;
        }
    }
    // A handful of files (a typical hook) is faster on this thread than on a pool.
    let results: Vec<std::io::Result<Vec<Digested>>> = if candidates.len() < SMALL {
        groups
            .iter()
            .map(|g| digest_group(root, index, g))
            .collect()
    } else {
        crate::lstat::in_file_pool(|| {
            groups
                .par_iter()
                .map(|g| digest_group(root, index, g))
                .collect()
        })
    };
    let mut files = Vec::with_capacity(candidates.len());
    let mut stats = HashStats::default();
    for r in results {
        for (file, hashed) in r? {
            match hashed {
                Some(bytes) => {
                    stats.hashed += 1;
                    stats.hashed_bytes += bytes;
                }
                None => stats.from_index += 1,
            }
            files.push(file);
        }
    }
    Ok((files, stats))
}

/// The digests of `candidates` taken from a commit's tree (the entries of a snapshot made
/// from it): nothing is read or hashed. A candidate the commit does not hold is left out.
/// The record is the one `digest_all` makes for the same content in the work tree: same git
/// blob id, and the mode git gives the file (`100755` when executable, `120000` for a link).
pub fn digest_from_tree(candidates: &[Candidate]) -> (Vec<InputFile>, HashStats) {
    let files: Vec<InputFile> = candidates
        .iter()
        .filter_map(|c| {
            let entry = c.entry?;
            let mode = if entry.symlink {
                "120000"
            } else if entry.executable {
                "100755"
            } else {
                "100644"
            };
            Some(InputFile {
                path: RecordPath::new(c.path),
                mode: mode.into(),
                digest: hex(&entry.id),
            })
        })
        .collect();
    let stats = HashStats {
        from_index: files.len(),
        ..HashStats::default()
    };
    (files, stats)
}

/// The stat data preflight compares with the index.
#[derive(Debug, Clone, Copy)]
struct FileStat {
    symlink: bool,
    regular: bool,
    mode: u32,
    size: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStat {
    fn from_libc(st: &libc::stat) -> Self {
        let kind = st.st_mode & libc::S_IFMT;
        FileStat {
            symlink: kind == libc::S_IFLNK,
            regular: kind == libc::S_IFREG,
            mode: st.st_mode,
            size: st.st_size as u64,
            ino: st.st_ino,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }
}

/// Whether the file's stat data says it is what the index recorded, and is not racy.
fn clean(entry: &IndexFile, st: &FileStat, written: (u64, u32)) -> bool {
    let same_time = |(s, ns): (u32, u32), (secs, nsecs): (i64, i64)| {
        s == secs as u32 && (ns == 0 || ns == nsecs as u32)
    };
    let stat = &entry.stat;
    if *stat == crate::git::IndexStat::UNKNOWN
        || st.symlink != entry.symlink
        || (!st.symlink && (st.mode & 0o100 != 0) != entry.executable)
        || stat.size != st.size as u32
        || stat.ino != st.ino as u32
        || !same_time(stat.mtime, st.mtime)
        || !same_time(stat.ctime, st.ctime)
    {
        return false;
    }
    // Racy git: a file changed in the same instant the index was written may have changed
    // again after it, with the same stat data. When the index keeps no nanoseconds, compare
    // whole seconds.
    let (ws, wns) = written;
    let (ms, mns) = stat.mtime;
    let racy = if mns == 0 {
        u64::from(ms) >= ws
    } else {
        (u64::from(ms), mns) >= (ws, wns)
    };
    !racy
}

/// An input and, when it was read, how many bytes were hashed.
type Digested = (InputFile, Option<u64>);

fn cstring(name: &std::ffi::OsStr) -> std::io::Result<std::ffi::CString> {
    std::ffi::CString::new(name.as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL in a path"))
}

fn gone(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
        || e.kind() == std::io::ErrorKind::NotFound
}

/// The files of one folder.
fn digest_group(
    root: &Path,
    index: &IndexSnapshot,
    group: &[Candidate],
) -> std::io::Result<Vec<Digested>> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::{AsRawFd, FromRawFd};
    let parent = group[0].path.parent().unwrap_or(Path::new(""));
    let dir = match std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(root.join(parent))
    {
        Ok(d) => d,
        Err(e) if gone(&e) => return Ok(Vec::new()),
        Err(e) => return Err(with_path(e, parent)),
    };
    let dirfd = dir.as_raw_fd();
    let mut out = Vec::with_capacity(group.len());
    for c in group {
        let Some(name) = c.path.file_name() else {
            continue;
        };
        let cname = cstring(name)?;
        let mut raw = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: a valid descriptor, a NUL-terminated name, and a buffer of the right type.
        let r = unsafe {
            libc::fstatat(
                dirfd,
                cname.as_ptr(),
                raw.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if gone(&e) {
                continue;
            }
            return Err(with_path(e, c.path));
        }
        // SAFETY: fstatat succeeded, so it filled the buffer.
        let raw = unsafe { raw.assume_init() };
        let st = FileStat::from_libc(&raw);
        if !(st.regular || st.symlink) {
            continue;
        }
        let mode = if st.symlink {
            "120000"
        } else if st.mode & 0o100 != 0 {
            "100755"
        } else {
            "100644"
        };
        if index.sha1
            && let Some(entry) = c.entry
            && clean(entry, &st, index.written)
        {
            out.push((
                InputFile {
                    path: RecordPath::new(c.path),
                    mode: mode.into(),
                    digest: hex(&entry.id),
                },
                None,
            ));
            continue;
        }
        let (id, bytes) = if st.symlink {
            let mut buf = vec![0u8; 4096];
            // SAFETY: a valid descriptor and name, and a buffer of the given length.
            let n = unsafe {
                libc::readlinkat(dirfd, cname.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            };
            if n < 0 {
                return Err(with_path(std::io::Error::last_os_error(), c.path));
            }
            buf.truncate(n as usize);
            (git_blob_id(&buf), buf.len() as u64)
        } else {
            // SAFETY: a valid descriptor and name; the new descriptor is owned by the File.
            let fd = unsafe {
                libc::openat(
                    dirfd,
                    cname.as_ptr(),
                    libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                )
            };
            if fd < 0 {
                let e = std::io::Error::last_os_error();
                if gone(&e) {
                    continue;
                }
                return Err(with_path(e, c.path));
            }
            // SAFETY: fd was just opened and nothing else owns it.
            let file = unsafe { std::fs::File::from_raw_fd(fd) };
            hash_file(file, st.size).map_err(|e| with_path(e, c.path))?
        };
        out.push((
            InputFile {
                path: RecordPath::new(c.path),
                mode: mode.into(),
                digest: hex(&id),
            },
            Some(bytes),
        ));
    }
    Ok(out)
}

fn with_path(e: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The paths below which the files matching `globs` can be: each glob's literal leading
/// part (`src/**/*.rs` → `src`); `None` when some glob can match anywhere.
pub fn glob_roots(globs: &[String]) -> Option<Vec<PathBuf>> {
    let mut roots = Vec::new();
    for glob in globs {
        let g = crate::files::normalize_glob(glob);
        let mut literal = PathBuf::new();
        for part in g.split('/') {
            if part.contains(['*', '?', '[', '{', '\\']) {
                break;
            }
            literal.push(part);
        }
        if literal.as_os_str().is_empty() {
            return None;
        }
        roots.push(literal);
    }
    roots.sort();
    roots.dedup();
    Some(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Metadata;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn from_meta(meta: &Metadata) -> FileStat {
        FileStat {
            symlink: meta.file_type().is_symlink(),
            regular: meta.file_type().is_file(),
            mode: meta.mode(),
            size: meta.size(),
            ino: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn entry_for(meta: &Metadata) -> IndexFile {
        IndexFile {
            path: PathBuf::from("f"),
            id: [0; 20],
            symlink: false,
            executable: false,
            stat: crate::git::IndexStat {
                mtime: (meta.mtime() as u32, meta.mtime_nsec() as u32),
                ctime: (meta.ctime() as u32, meta.ctime_nsec() as u32),
                ino: meta.ino() as u32,
                size: meta.size() as u32,
            },
        }
    }

    #[test]
    fn racy_entries_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "same").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let meta = path.symlink_metadata().unwrap();
        let entry = entry_for(&meta);
        let mtime = (meta.mtime() as u64, meta.mtime_nsec() as u32);
        let meta = from_meta(&meta);
        // Index written after the file: its stat data can be trusted.
        assert!(clean(&entry, &meta, (mtime.0 + 1, 0)));
        // Index written in the same instant: the file may have changed since, unseen.
        assert!(!clean(&entry, &meta, mtime));
        // Index keeps whole seconds only: the same second is racy too.
        let mut coarse = entry.clone();
        coarse.stat.mtime.1 = 0;
        coarse.stat.ctime.1 = 0;
        assert!(!clean(&coarse, &meta, (mtime.0, 0)));
        assert!(clean(&coarse, &meta, (mtime.0 + 1, 0)));
        // Any stat difference means dirty.
        let mut other = entry.clone();
        other.stat.size += 1;
        assert!(!clean(&other, &meta, (mtime.0 + 1, 0)));
    }

    #[test]
    fn a_commit_tree_gives_the_records_the_work_tree_gives() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plain"), "plain\n").unwrap();
        std::fs::write(dir.path().join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            dir.path().join("tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("plain", dir.path().join("link")).unwrap();
        let tree_entry = |name: &str, content: &[u8], symlink, executable| IndexFile {
            path: PathBuf::from(name),
            id: git_blob_id(content),
            symlink,
            executable,
            stat: crate::git::IndexStat {
                mtime: (0, 0),
                ctime: (0, 0),
                ino: 0,
                size: 0,
            },
        };
        let tree = [
            tree_entry("link", b"plain", true, false),
            tree_entry("plain", b"plain\n", false, false),
            tree_entry("tool", b"#!/bin/sh\n", false, true),
        ];
        let paths: Vec<PathBuf> = tree.iter().map(|f| f.path.clone()).collect();
        let untracked: Vec<Candidate> = paths
            .iter()
            .map(|p| Candidate {
                path: p,
                entry: None,
            })
            .collect();
        let from_tree: Vec<Candidate> = paths
            .iter()
            .zip(&tree)
            .map(|(p, e)| Candidate {
                path: p,
                entry: Some(e),
            })
            .collect();
        let (worked, _) = digest_all(dir.path(), &IndexSnapshot::default(), &untracked).unwrap();
        let (committed, stats) = digest_from_tree(&from_tree);
        assert_eq!(worked, committed);
        assert_eq!(stats.hashed, 0);
        let modes: Vec<&str> = committed.iter().map(|f| f.mode.as_str()).collect();
        assert_eq!(modes, ["120000", "100644", "100755"]);
    }

    #[test]
    fn roots_are_the_literal_folders() {
        let g = |v: &[&str]| glob_roots(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            g(&["src/**/*.rs", "tests/data/"]),
            Some(vec![PathBuf::from("src"), PathBuf::from("tests/data")])
        );
        assert_eq!(g(&["*.rs"]), None);
        assert_eq!(g(&["docs/"]), None);
        assert_eq!(g(&["/Cargo.toml"]), Some(vec![PathBuf::from("Cargo.toml")]));
    }
}
