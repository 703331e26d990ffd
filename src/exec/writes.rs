//! A step that is not a fixer must not change tracked files: a check that rewrites what it
//! checks (a linter with `fix = true` in its own config) would pass while the commit records
//! the unfixed version. Before such a step runs, the tracked files it is about are noted:
//! their stat data, and their content's git blob id, taken from the index when the stat data
//! still matches it and read otherwise. After the step, only files whose stat data moved are
//! read again. Declared `outputs` of the run's steps are written on purpose and never watched.

use crate::cache::inputs::git_blob_id;
use crate::git::{IndexFile, IndexSnapshot};
use crate::plan::PlannedStep;
use rayon::prelude::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Below this many files, noting and comparing stay on the calling thread.
const SMALL: usize = 64;
/// A file changed this recently may change again with the same stat data (coarse file
/// system clocks, one- or two-second timestamps): it is compared by content, whatever its
/// stat data says.
const RECENT: Duration = Duration::from_secs(3);
/// The same for a file whose timestamps carry fractions of a second: its file system keeps
/// them to 10 ms or finer (ext4, xfs, btrfs, apfs, ntfs: nanoseconds, stamped from a clock
/// that ticks at least every 10 ms; exfat: 10 ms), so a later write moves them once a tick
/// has passed. The margin is many ticks wide. Without it, every file staged in the last
/// seconds was read twice around each check.
const RECENT_FINE: Duration = Duration::from_millis(250);

/// Stat data of a step's given files (in their order; `None`: not there), and when it was
/// taken.
pub struct Known<'a> {
    pub stats: &'a [Option<libc::stat>],
    pub taken: SystemTime,
}

/// The tracked files of a run, and what no step's check may be blamed for writing.
pub struct Watch {
    root: PathBuf,
    tracked: Arc<IndexSnapshot>,
    /// Declared outputs of every step in the run (repository-relative).
    outputs: Vec<PathBuf>,
    /// The index file (what `git commit` records), and its entries as last listed.
    index: Option<PathBuf>,
    index_seen: std::sync::Mutex<Option<IndexSeen>>,
}

/// The index file's stat data and its bytes.
type IndexSeen = (Option<Stat>, Arc<Vec<u8>>);

/// The watched files of one step, as they were before it ran.
pub struct Before {
    taken: SystemTime,
    /// The files, folder by folder.
    folders: Vec<Vec<Noted>>,
    /// The index file's stat data and bytes before the step.
    index: Option<IndexSeen>,
}

struct Noted {
    /// Position in the index snapshot.
    entry: usize,
    stat: Option<Stat>,
    content: Content,
}

/// The stat data that moves when a file is written, renamed over or deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    dev: u64,
    ino: u64,
    mode: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stat {
    fn of(meta: &std::fs::Metadata) -> Self {
        Stat {
            dev: meta.dev(),
            ino: meta.ino(),
            mode: meta.mode(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn from_libc(st: &libc::stat) -> Self {
        Stat {
            dev: st.st_dev,
            ino: st.st_ino,
            mode: st.st_mode,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }

    fn recent(&self, taken: SystemTime) -> bool {
        let since_epoch = |(s, ns): (i64, i64)| {
            u64::try_from(s).map_or(Duration::ZERO, |s| {
                Duration::new(s, u32::try_from(ns).unwrap_or(0))
            })
        };
        let newest = since_epoch(self.mtime).max(since_epoch(self.ctime));
        let taken = taken
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        // Whole seconds in both stamps: a file system (or a file) whose clock may be coarse.
        let fine = self.mtime.1 != 0 || self.ctime.1 != 0;
        newest + if fine { RECENT_FINE } else { RECENT } >= taken
    }
}

/// What a path holds, as far as a commit is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    Gone,
    /// A file or a symlink: its git blob id, and its git mode bits that count.
    Blob {
        id: [u8; 20],
        symlink: bool,
        executable: bool,
    },
    /// A folder or something else that git cannot hold as a file.
    Other,
    /// Could not be read (permissions): compared by stat data alone.
    Unreadable,
}

impl Watch {
    pub fn new(root: &Path, tracked: Arc<IndexSnapshot>, steps: &[PlannedStep]) -> Watch {
        let outputs = steps
            .iter()
            .flat_map(|s| s.step.outputs.iter().map(PathBuf::from))
            .collect();
        Watch {
            root: root.to_path_buf(),
            index: tracked.path.clone(),
            tracked,
            outputs,
            index_seen: std::sync::Mutex::new(None),
        }
    }

    /// The index's stat data and bytes now; they are read again only when its stat moved.
    /// Its entries are listed only when the bytes differ (see `changed`): the common case, an
    /// index nobody touched, costs one read and one comparison.
    fn index_now(&self) -> Option<IndexSeen> {
        let path = self.index.as_ref()?;
        let stat = std::fs::metadata(path).ok().map(|m| Stat::of(&m));
        let mut seen = self
            .index_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((seen_stat, entries)) = seen.as_ref() {
            // A stat taken in the file's last few seconds may not move on the next write.
            if *seen_stat == stat && stat.is_some_and(|s| !s.recent(SystemTime::now())) {
                return Some((stat, Arc::clone(entries)));
            }
        }
        let bytes = Arc::new(std::fs::read(path).ok()?);
        *seen = Some((stat, Arc::clone(&bytes)));
        Some((stat, bytes))
    }

    /// The tracked files `planned` is about, as positions in the index snapshot: the files it
    /// is given when its command takes `{files}`; every tracked file its globs match when it
    /// reads the tree itself; every tracked file when it has no `files`. With each, its stat
    /// data when `known` holds it (given files only).
    fn watched(
        &self,
        planned: &PlannedStep,
        known: Option<&Known>,
    ) -> Vec<(usize, Option<Stat>, bool)> {
        let files = &self.tracked.files;
        let declared = |f: &IndexFile| self.outputs.iter().any(|o| f.path.starts_with(o));
        let mut from = 0;
        let mut chosen: Vec<(usize, Option<Stat>, bool)> =
            match (&planned.files, planned.command.uses_files()) {
                (Some(given), true) => given
                    .iter()
                    .enumerate()
                    .filter_map(|(k, f)| {
                        let path = match &planned.step.dir {
                            Some(dir) => &dir.join(f),
                            None => f,
                        };
                        let stat = known.and_then(|known| known.stats.get(k));
                        let found = self.position(path, from);
                        if let Some(i) = found {
                            from = i + 1;
                        }
                        found.map(|i| {
                            (
                                i,
                                stat.and_then(|s| s.as_ref().map(Stat::from_libc)),
                                stat.is_some(),
                            )
                        })
                    })
                    .collect(),
                _ => (0..files.len())
                    .filter(|&i| {
                        planned
                            .step
                            .matcher
                            .as_ref()
                            .is_none_or(|m| m.is_match(&files[i].path))
                    })
                    .map(|i| (i, None, false))
                    .collect(),
            };
        chosen.retain(|&(i, _, _)| !declared(&files[i]));
        chosen
    }

    /// Where `path` is in the index snapshot, looked for first at `from`.
    fn position(&self, path: &Path, from: usize) -> Option<usize> {
        use std::os::unix::ffi::OsStrExt;
        let key = path.as_os_str().as_bytes();
        let files = &self.tracked.files;
        crate::lstat::find_sorted(files.len(), from, key, |i| {
            files[i].path.as_os_str().as_bytes()
        })
    }

    /// Notes the watched files of `planned` before it runs; `known`: stat data of its given
    /// files taken just before, used rather than looked up again.
    pub fn before(&self, planned: &PlannedStep, known: Option<&Known>) -> Before {
        let taken = known.map_or_else(SystemTime::now, |k| k.taken);
        let watched = self.watched(planned, known);
        let groups = self.by_folder(&watched);
        let folders = map_files(&groups, watched.len(), |group| {
            let stats: Vec<Option<Stat>> = if group.iter().all(|&(_, _, known)| known) {
                group.iter().map(|&(_, stat, _)| stat).collect()
            } else {
                let entries: Vec<usize> = group.iter().map(|&(i, _, _)| i).collect();
                self.stat_group(&entries)
            };
            let noted = group
                .iter()
                .zip(stats)
                .map(|(&(entry, _, _), stat)| Noted {
                    entry,
                    stat,
                    content: self.content_before(entry, stat.as_ref(), taken),
                })
                .collect();
            Some(noted)
        });
        let index = self.index_now();
        Before {
            taken,
            folders,
            index,
        }
    }

    /// What a watched file holds before the step: the index's blob when the stat data
    /// vouches for it, else what is read. The index's blob id is of the file as git cleans it
    /// (filters, line endings), while a file read again later is hashed as its raw bytes: a
    /// file that will be read again (written just now, as the pre-commit set-aside does) is
    /// hashed raw here too.
    fn content_before(&self, entry: usize, stat: Option<&Stat>, taken: SystemTime) -> Content {
        let file = &self.tracked.files[entry];
        match stat {
            None => Content::Gone,
            Some(st)
                if self.tracked.sha1
                    && !st.recent(taken)
                    && matches_index(file, st, self.tracked.written) =>
            {
                Content::Blob {
                    id: file.id,
                    symlink: file.symlink,
                    executable: file.executable,
                }
            }
            Some(_) => read(&self.root.join(&file.path)),
        }
    }

    /// The watched files that changed since `before`, repository-relative and sorted.
    pub fn changed(&self, before: &Before) -> Vec<PathBuf> {
        let count = before.folders.iter().map(Vec::len).sum();
        let changed = map_files(&before.folders, count, |folder| {
            let entries: Vec<usize> = folder.iter().map(|n| n.entry).collect();
            let stats = self.stat_group(&entries);
            let changed: Vec<PathBuf> = folder
                .iter()
                .zip(stats)
                .filter_map(|(noted, stat)| {
                    if stat == noted.stat
                        && (noted.content == Content::Unreadable
                            || stat.is_none_or(|s| !s.recent(before.taken)))
                    {
                        return None;
                    }
                    let file = &self.tracked.files[noted.entry];
                    let now = match stat {
                        None => Content::Gone,
                        Some(_) => read(&self.root.join(&file.path)),
                    };
                    (now != noted.content).then(|| file.path.clone())
                })
                .collect();
            Some(changed)
        });
        let mut changed: Vec<PathBuf> = changed.into_iter().flatten().collect();
        // A check that stages (`git add`, `git update-index`) changes what is committed
        // without touching the work tree.
        if let (Some((_, was)), Some((_, now))) = (&before.index, self.index_now())
            && **was != *now
            && let (Some(was), Some(now)) = (
                crate::git::index_entries_of(was),
                crate::git::index_entries_of(&now),
            )
        {
            for path in entries_differing(&was, &now) {
                if !changed.contains(&path) {
                    changed.push(path);
                }
            }
            changed.sort();
        }
        changed
    }

    /// `entries` (positions in the snapshot first, in path order) cut into runs of files in
    /// the same folder.
    fn by_folder<'a, T>(&self, entries: &'a [(usize, T, bool)]) -> Vec<&'a [(usize, T, bool)]> {
        const GROUP: usize = 256;
        // The folder part of a path's bytes (quicker than taking the path apart).
        let parent = |i: usize| {
            use std::os::unix::ffi::OsStrExt;
            let path = self.tracked.files[entries[i].0].path.as_os_str().as_bytes();
            &path[..path.iter().rposition(|&b| b == b'/').unwrap_or(0)]
        };
        let mut groups = Vec::new();
        let mut start = 0;
        for i in 1..=entries.len() {
            if i == entries.len() || i - start == GROUP || parent(i) != parent(start) {
                if i > start {
                    groups.push(&entries[start..i]);
                }
                start = i;
            }
        }
        groups
    }

    /// The stat data of the files of one folder (see `crate::lstat`). `None` for a file that
    /// is not there.
    fn stat_group(&self, group: &[usize]) -> Vec<Option<Stat>> {
        let files = &self.tracked.files;
        let paths: Vec<&Path> = group.iter().map(|&i| files[i].path.as_path()).collect();
        crate::lstat::lstat_all(&self.root, &paths)
            .iter()
            .map(|raw| raw.as_ref().map(Stat::from_libc))
            .collect()
    }
}

/// Paths whose index entries differ between two listings, repository-relative.
fn entries_differing(was: &[u8], now: &[u8]) -> Vec<PathBuf> {
    use std::collections::BTreeMap;
    use std::os::unix::ffi::OsStrExt;
    let parse = |listing: &[u8]| -> BTreeMap<Vec<u8>, Vec<Vec<u8>>> {
        let mut entries: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
        for record in listing.split(|&b| b == 0).filter(|r| !r.is_empty()) {
            let tab = record.iter().position(|&b| b == b'\t').unwrap_or(0);
            let (head, path) = record.split_at(tab);
            let path = path.get(1..).unwrap_or_default().to_vec();
            entries.entry(path).or_default().push(head.to_vec());
        }
        entries
    };
    let (was, now) = (parse(was), parse(now));
    was.keys()
        .chain(now.keys())
        .filter(|path| was.get(*path) != now.get(*path))
        .map(|path| PathBuf::from(std::ffi::OsStr::from_bytes(path)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// `f` over `items` (which hold `files` files in all), in parallel on the hashing pool, from
/// a plain thread: a worker of the step pool that waited on another pool would start other
/// steps meanwhile. A few files stay on the calling thread.
fn map_files<I: Sync, T: Send>(
    items: &[I],
    files: usize,
    f: impl Fn(&I) -> Option<T> + Sync + Send,
) -> Vec<T> {
    if files < SMALL {
        return items.iter().filter_map(f).collect();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| crate::lstat::in_file_pool(|| items.par_iter().filter_map(&f).collect()))
            .join()
            .unwrap_or_default()
    })
}

/// Whether the stat data says the file is what the index recorded, and is not racy.
fn matches_index(entry: &IndexFile, st: &Stat, written: (u64, u32)) -> bool {
    let same_time = |(s, ns): (u32, u32), (secs, nsecs): (i64, i64)| {
        s == secs as u32 && (ns == 0 || ns == nsecs as u32)
    };
    let kind = st.mode & libc::S_IFMT;
    let symlink = kind == libc::S_IFLNK;
    let index = &entry.stat;
    if symlink != entry.symlink
        || (!symlink && kind != libc::S_IFREG)
        || (!symlink && (st.mode & 0o100 != 0) != entry.executable)
        || index.size != st.size as u32
        || index.ino != st.ino as u32
        || !same_time(index.mtime, st.mtime)
        || !same_time(index.ctime, st.ctime)
    {
        return false;
    }
    // Racy git: changed in the same instant the index was written, equal stat data proves
    // nothing.
    let (ms, mns) = index.mtime;
    let racy = if mns == 0 {
        u64::from(ms) >= written.0
    } else {
        (u64::from(ms), mns) >= written
    };
    !racy
}

/// What `path` holds now.
fn read(path: &Path) -> Content {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Content::Gone;
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        return match std::fs::read_link(path) {
            Ok(target) => {
                use std::os::unix::ffi::OsStrExt;
                Content::Blob {
                    id: git_blob_id(target.as_os_str().as_bytes()),
                    symlink: true,
                    executable: false,
                }
            }
            Err(_) => Content::Unreadable,
        };
    }
    if !kind.is_file() {
        return Content::Other;
    }
    match std::fs::read(path) {
        Ok(data) => Content::Blob {
            id: git_blob_id(&data),
            symlink: false,
            executable: meta.mode() & 0o100 != 0,
        },
        Err(_) => Content::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_at(secs: i64) -> Stat {
        Stat {
            dev: 1,
            ino: 2,
            mode: libc::S_IFREG | 0o644,
            size: 3,
            mtime: (secs, 0),
            ctime: (secs, 0),
        }
    }

    #[test]
    fn a_file_changed_just_before_the_snapshot_is_compared_by_content() {
        let taken = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert!(stat_at(999).recent(taken));
        assert!(stat_at(1_000).recent(taken));
        assert!(!stat_at(990).recent(taken));
    }

    #[test]
    fn fine_timestamps_are_trusted_sooner_than_whole_seconds() {
        let at = |ms: u64| {
            let t = Duration::from_millis(ms);
            let stamp = (t.as_secs() as i64, i64::from(t.subsec_nanos()));
            Stat {
                mtime: stamp,
                ctime: stamp,
                ..stat_at(0)
            }
        };
        let taken = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000);
        assert!(at(999_900).recent(taken));
        assert!(at(999_750).recent(taken));
        assert!(!at(999_700).recent(taken));
        // A whole-second stamp as old may still be in the same tick as a later write.
        assert!(stat_at(999).recent(taken));
    }
}
