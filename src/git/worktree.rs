//! The work tree against the index, judged by the index's stat data as git judges it: one
//! lstat per file, no process, no hashing unless the stat data cannot decide.

use super::{Repo, is_file_entry, to_path};
use crate::error::Result;
use gix::index::entry::{Flags, Mode};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

impl Repo {
    /// True when no tracked file (or none of `only`, when given) can differ from its index
    /// version, judged by the index's stat data: no process, one lstat per file from its
    /// folder, spread over the cores. Racily clean entries count as dirty.
    pub fn work_tree_matches_index(&self, only: Option<&[PathBuf]>) -> Result<bool> {
        self.work_tree_matches_index_taken(only)
            .map(|(clean, _)| clean)
    }

    /// [`Self::work_tree_matches_index`], with the stat data it took of the files it looked
    /// at (`None` when it decided without looking at any).
    pub fn work_tree_matches_index_taken(
        &self,
        only: Option<&[PathBuf]>,
    ) -> Result<(bool, Option<crate::lstat::Taken>)> {
        let index = self.index()?;
        let index_time = index.timestamp();
        let options = gix::index::entry::stat::Options::default();
        let state: &gix::index::State = &index;
        let root = &self.root;
        let entries = state.entries();
        if entries
            .iter()
            .any(|e| e.flags.contains(Flags::INTENT_TO_ADD) || e.stage_raw() != 0)
        {
            return Ok((false, None));
        }
        let at = std::time::SystemTime::now();
        let differs = |entry: &gix::index::Entry, stat: Option<&libc::stat>| {
            let Some(stat) = stat else {
                return true; // Deleted from the work tree.
            };
            let stat = index_stat(stat);
            !entry.stat.matches(&stat, options) || entry.stat.is_racy(index_time, options)
        };
        let (dirty, taken) = match only {
            // Few files: one whose stat data cannot decide (racily clean, or smudged by git
            // for that reason) is compared by content, as git itself would.
            Some(paths) => {
                // Both sorted as a rule (and no path twice: no conflicts here), so each is
                // found a step or two after the last.
                let mut from = 0;
                let found: Option<Vec<&gix::index::Entry>> = paths
                    .iter()
                    .map(|p| {
                        let key = p.as_os_str().as_bytes();
                        let i = crate::lstat::find_sorted(entries.len(), from, key, |i| {
                            entries[i].path(state)
                        })?;
                        from = i + 1;
                        Some(&entries[i])
                    })
                    .collect();
                // A path the index does not have: not what was staged.
                let Some(found) = found else {
                    return Ok((false, None));
                };
                let stats = crate::lstat::lstat_all(root, paths);
                let dirty = found
                    .iter()
                    .zip(&stats)
                    .zip(paths)
                    .any(|((entry, stat), path)| {
                        is_file_entry(entry)
                            && differs(entry, stat.as_ref())
                            && !same_content(&root.join(path), entry)
                    });
                (dirty, crate::lstat::Taken::new(paths, stats, at))
            }
            None => {
                let files: Vec<(&gix::index::Entry, PathBuf)> = entries
                    .iter()
                    .filter(|e| is_file_entry(e))
                    .map(|e| (e, to_path(e.path(state))))
                    .collect();
                let paths: Vec<&Path> = files.iter().map(|(_, p)| p.as_path()).collect();
                let stats = crate::lstat::lstat_all(root, &paths);
                let dirty = files
                    .iter()
                    .zip(&stats)
                    .any(|((entry, _), stat)| differs(entry, stat.as_ref()));
                (dirty, crate::lstat::Taken::new(&paths, stats, at))
            }
        };
        Ok((!dirty, Some(taken)))
    }
}

/// A file's lstat data as the index records it: times, device and inode cut to 32 bits, as
/// git and gix do; a time before 1970 as zero.
fn index_stat(st: &libc::stat) -> gix::index::entry::Stat {
    use gix::index::entry::stat::Time;
    let time = |secs: i64, nsecs: i64| match secs >= 0 {
        true => Time {
            secs: secs as u32,
            nsecs: nsecs as u32,
        },
        false => Time::default(),
    };
    gix::index::entry::Stat {
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
        dev: st.st_dev as u32,
        ino: st.st_ino as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size as u32,
    }
}

/// Whether the file at `path` holds exactly the blob `entry` records (links: their target).
pub(super) fn same_content(path: &Path, entry: &gix::index::Entry) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let data = if meta.file_type().is_symlink() {
        match std::fs::read_link(path) {
            Ok(target) => target.into_os_string().into_vec(),
            Err(_) => return false,
        }
    } else if meta.is_file() {
        // The executable bit is part of what is staged.
        use std::os::unix::fs::PermissionsExt;
        let executable = meta.permissions().mode() & 0o111 != 0;
        if executable != (entry.mode == Mode::FILE_EXECUTABLE) {
            return false;
        }
        match std::fs::read(path) {
            Ok(data) => data,
            Err(_) => return false,
        }
    } else {
        return false;
    };
    gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, &data)
        .is_ok_and(|id| id == entry.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_data_from_lstat_is_what_gix_reads() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "content\n").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink("f", &link).unwrap();
        for path in [&file, &link] {
            let meta = gix::index::fs::Metadata::from_path_no_follow(path).unwrap();
            let from_gix = gix::index::entry::Stat::from_fs(&meta).unwrap();
            let raw = crate::lstat::lstat_all(dir.path(), &[path.file_name().unwrap()]);
            assert_eq!(index_stat(raw[0].as_ref().unwrap()), from_gix);
        }
    }
}
