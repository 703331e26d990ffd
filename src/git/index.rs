//! The index as the cache reads it: each tracked file's blob id and recorded stat data, so
//! that a clean file's digest can be taken without reading it.

use super::Repo;
use crate::error::{Error, Result};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// What the cache needs from the index: each tracked file's blob id and the stat data git
/// recorded for it, so that a clean file's digest can be taken without reading it.
#[derive(Debug, Default)]
pub struct IndexSnapshot {
    /// Tracked files, sorted by path bytes (the index order).
    pub files: Vec<IndexFile>,
    /// When the index was written (seconds, nanoseconds): entries modified at or after this
    /// moment are "racy" and must be hashed again.
    pub written: (u64, u32),
    /// Whether the blob ids are SHA-1 (the form preflight computes for other files).
    pub sha1: bool,
    /// Submodules: each gitlink's path and the commit the index records, in hex.
    pub gitlinks: Vec<(PathBuf, String)>,
    /// The index file it was read from (`GIT_INDEX_FILE` honoured); `None` for a commit.
    pub path: Option<PathBuf>,
}

/// The entries of an index file's bytes (mode, blob id, stage, path; every stage and kind),
/// one NUL-terminated record each, as `git ls-files --stage -z` lists them; `None` when they
/// cannot be decoded.
pub fn index_entries_of(bytes: &[u8]) -> Option<Vec<u8>> {
    let (state, _) = gix::index::State::from_bytes(
        bytes,
        filetime::FileTime::zero(),
        gix::hash::Kind::Sha1,
        Default::default(),
    )
    .ok()?;
    use std::io::Write;
    let mut out = Vec::with_capacity(state.entries().len() * 80);
    for entry in state.entries() {
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "{:o} {} {:?}\t",
            entry.mode.bits(),
            entry.id,
            entry.stage()
        );
        out.extend_from_slice(entry.path(&state));
        out.push(0);
    }
    Some(out)
}

/// One tracked file in the index.
#[derive(Debug, Clone)]
pub struct IndexFile {
    pub path: PathBuf,
    /// The git blob id (SHA-1 of `blob <len>\0<content>`; for a symlink, of its target).
    pub id: [u8; 20],
    pub symlink: bool,
    pub executable: bool,
    pub stat: IndexStat,
}

/// The stat data of an index entry, as git stores it (truncated to 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStat {
    pub mtime: (u32, u32),
    pub ctime: (u32, u32),
    pub ino: u32,
    pub size: u32,
}

impl IndexStat {
    /// For entries whose stat data says nothing about the work-tree file (skip-worktree and
    /// assume-unchanged: git stops looking at the file): matches no file, so it is hashed.
    pub const UNKNOWN: IndexStat = IndexStat {
        mtime: (0, 0),
        ctime: (0, 0),
        ino: 0,
        size: 0,
    };
}

impl Repo {
    /// The index's tracked files with their blob ids and stat data (see `tracked_files` for
    /// which entries count).
    pub fn index_snapshot(&self) -> Result<IndexSnapshot> {
        let index = self
            .inner
            .index_or_empty()
            .map_err(|e| Error::Setup(format!("cannot read the git index: {e}")))?;
        let written = index.timestamp();
        let sha1 = index.object_hash() == gix::hash::Kind::Sha1;
        let mut files: Vec<IndexFile> = Vec::with_capacity(index.entries().len());
        let mut gitlinks = Vec::new();
        for entry in index.entries() {
            let mode = entry.mode;
            if mode == gix::index::entry::Mode::COMMIT {
                let path = PathBuf::from(std::ffi::OsStr::from_bytes(entry.path(&index)));
                if gitlinks.last().is_none_or(|(p, _)| *p != path) {
                    gitlinks.push((path, entry.id.to_string()));
                }
                continue;
            }
            if mode.is_sparse() {
                continue;
            }
            // git no longer compares these files with the index: their content is whatever
            // the work tree holds, so they are hashed.
            let untrusted = entry.flags.intersects(
                gix::index::entry::Flags::SKIP_WORKTREE | gix::index::entry::Flags::ASSUME_VALID,
            );
            let path: &[u8] = entry.path(&index);
            if files
                .last()
                .is_some_and(|f| f.path.as_os_str().as_bytes() == path)
            {
                continue;
            }
            let mut id = [0u8; 20];
            if sha1 {
                id.copy_from_slice(entry.id.as_slice());
            }
            let s = &entry.stat;
            files.push(IndexFile {
                path: PathBuf::from(std::ffi::OsStr::from_bytes(path)),
                id,
                symlink: mode == gix::index::entry::Mode::SYMLINK,
                executable: mode == gix::index::entry::Mode::FILE_EXECUTABLE,
                stat: if untrusted {
                    IndexStat::UNKNOWN
                } else {
                    IndexStat {
                        mtime: (s.mtime.secs, s.mtime.nsecs),
                        ctime: (s.ctime.secs, s.ctime.nsecs),
                        ino: s.ino,
                        size: s.size,
                    }
                },
            });
        }
        Ok(IndexSnapshot {
            files,
            gitlinks,
            path: Some(self.inner.index_path()),
            written: (
                u64::try_from(written.unix_seconds()).unwrap_or(0),
                written.nanoseconds(),
            ),
            sha1,
        })
    }
}
