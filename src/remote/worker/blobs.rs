//! The worker's blob cache: file blobs fetched from the CAS are kept on local disk by their
//! SHA-256 (`<dir>/ab/abcdef…`), so that an input root used again (run with another
//! command, or sharing files with an earlier one) is copied from here, not downloaded again.
//!
//! Several leases, and several worker processes, may share one folder: a blob appears only
//! by the atomic rename of a complete, checked temp file; readers copy from a handle they
//! opened, which stays valid when the blob is evicted meanwhile; and a blob that is gone is
//! simply fetched again.

use crate::remote::proto::{self, re};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Inserts in progress write to temp files named so, beside the blob folders.
const TEMP_PREFIX: &str = ".tmp-";
/// A temp file nobody wrote to for this long was left by a worker that died.
const STALE_TEMP: Duration = Duration::from_secs(3600);

pub struct Cache {
    dir: PathBuf,
    max: u64,
    /// Bytes this process stored since its last trim: only a cache that grew can need one.
    /// Starts at 1, as the size is unknown until looked at once.
    added: AtomicU64,
    /// One trim at a time in this process; another process may trim at the same time,
    /// which only removes a few more blobs.
    trimming: Mutex<()>,
}

/// What a trim removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    pub blobs: usize,
    pub bytes: u64,
    /// What is left.
    pub kept: u64,
}

impl Cache {
    /// A cache in `dir` (which should exist), bound to `max` bytes.
    pub fn new(dir: PathBuf, max: u64) -> Cache {
        Cache {
            dir,
            max,
            added: AtomicU64::new(1),
            trimming: Mutex::new(()),
        }
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(&hash[..2]).join(hash)
    }

    /// The cached blob, opened, when it is there with its digest's size; the use is
    /// recorded in its mtime for the eviction. A file of another size was damaged: it is
    /// removed, and the blob fetched again.
    ///
    /// The content is not hashed again here: that would cost about what a download does.
    /// Blobs are checked against their digest when they are stored, and only a complete,
    /// checked file is ever renamed into place, so a size check catches what can still
    /// happen to one (a truncated or replaced file).
    pub fn open(&self, digest: &re::Digest) -> Option<File> {
        if !proto::well_formed(digest) {
            return None;
        }
        let path = self.path(&digest.hash);
        let file = File::open(&path).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.len() != digest.size_bytes as u64 {
            let _ = std::fs::remove_file(&path);
            return None;
        }
        // Not fatal: a blob used but not touched is only evicted a little early.
        let _ = file.set_modified(SystemTime::now());
        Some(file)
    }

    /// A new temp file in the cache folder, on the same file system as the blobs so that
    /// putting it in place is an atomic rename.
    pub fn temp(&self) -> io::Result<tempfile::TempPath> {
        Ok(self.temp_file()?.into_temp_path())
    }

    fn temp_file(&self) -> io::Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&self.dir)
    }

    /// Puts a complete temp file in place as the blob `digest` and returns a handle on it,
    /// which stays valid even if the blob is evicted at once. The caller has checked every
    /// byte written against the digest (the connection's reads check the hash as the bytes
    /// arrive); the size is checked again here, after the write.
    pub fn commit(&self, digest: &re::Digest, temp: tempfile::TempPath) -> io::Result<File> {
        if !proto::well_formed(digest) {
            return Err(io::Error::other(format!(
                "`{}` is not a SHA-256 digest",
                digest.hash
            )));
        }
        let file = File::open(&temp)?;
        let size = file.metadata()?.len();
        if size != digest.size_bytes as u64 {
            return Err(io::Error::other(format!(
                "blob {} is {} bytes on disk, not {}",
                digest.hash, size, digest.size_bytes
            )));
        }
        let target = self.path(&digest.hash);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Replaces a copy another lease or worker stored meanwhile: the same bytes.
        temp.persist(&target)?;
        self.added.fetch_add(size, Ordering::Relaxed);
        Ok(file)
    }

    /// Stores bytes already checked against `digest`.
    pub fn insert(&self, digest: &re::Digest, bytes: &[u8]) -> io::Result<()> {
        let mut temp = self.temp_file()?;
        temp.write_all(bytes)?;
        self.commit(digest, temp.into_temp_path()).map(drop)
    }

    /// Forgets a blob found damaged.
    pub fn discard(&self, digest: &re::Digest) {
        if proto::well_formed(digest) {
            let _ = std::fs::remove_file(self.path(&digest.hash));
        }
    }

    /// After a lease: when this process stored blobs since it last looked and the cache is
    /// over its bound, the least recently used blobs are removed until it is under 90% of
    /// it (so that not every lease has to trim). `None` when nothing was removed.
    pub fn trim(&self) -> Option<Trimmed> {
        let _one = self.trimming.try_lock().ok()?;
        if self.added.swap(0, Ordering::Relaxed) == 0 {
            return None;
        }
        let mut blobs = self.scan();
        let mut total: u64 = blobs.iter().map(|b| b.1).sum();
        if total <= self.max {
            return None;
        }
        let target = self.max / 10 * 9;
        blobs.sort();
        let mut trimmed = Trimmed::default();
        for (_, size, path) in blobs {
            if total <= target {
                break;
            }
            // Gone already (another worker trims too) counts as removed.
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) => continue,
            }
            total -= size;
            trimmed.blobs += 1;
            trimmed.bytes += size;
        }
        trimmed.kept = total;
        Some(trimmed)
    }

    /// Every blob as (last use, size, path); removes temp files left by dead workers.
    fn scan(&self) -> Vec<(SystemTime, u64, PathBuf)> {
        let mut blobs = Vec::new();
        let Ok(top) = std::fs::read_dir(&self.dir) else {
            return blobs;
        };
        for entry in top.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TEMP_PREFIX) {
                remove_if_stale(&entry.path());
            } else if name.len() == 2 && entry.file_type().is_ok_and(|t| t.is_dir()) {
                let Ok(folder) = std::fs::read_dir(entry.path()) else {
                    continue;
                };
                for blob in folder.flatten() {
                    // Files of other names are not the cache's to remove.
                    let ok = blob.file_name().to_str().is_some_and(|n| {
                        n.starts_with(&*name)
                            && proto::well_formed(&re::Digest {
                                hash: n.to_string(),
                                size_bytes: 0,
                            })
                    });
                    let Ok(meta) = blob.metadata() else { continue };
                    if ok && meta.is_file() {
                        let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                        blobs.push((used, meta.len(), blob.path()));
                    }
                }
            }
        }
        blobs
    }
}

fn remove_if_stale(path: &Path) {
    let stale = path
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > STALE_TEMP);
    if stale {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn cache(max: u64) -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf(), max);
        (dir, cache)
    }

    fn read(mut file: File) -> Vec<u8> {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn a_stored_blob_is_found_by_its_digest() {
        let (dir, cache) = cache(1 << 20);
        let digest = proto::digest_of(b"hello");
        assert!(cache.open(&digest).is_none());
        cache.insert(&digest, b"hello").unwrap();
        let path = dir.path().join(&digest.hash[..2]).join(&digest.hash);
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert_eq!(read(cache.open(&digest).unwrap()), b"hello");
        // Nothing is left beside the blob folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_blob_of_the_wrong_size_is_dropped_and_never_stored() {
        let (dir, cache) = cache(1 << 20);
        let digest = proto::digest_of(b"hello");
        assert!(cache.insert(&digest, b"hell").is_err());
        assert!(cache.open(&digest).is_none());
        cache.insert(&digest, b"hello").unwrap();
        let path = dir.path().join(&digest.hash[..2]).join(&digest.hash);
        std::fs::write(&path, b"hell").unwrap();
        assert!(cache.open(&digest).is_none());
        assert!(!path.exists());
        // The failed insert left no temp file.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_handle_outlives_the_eviction_of_its_blob() {
        let (_dir, cache) = cache(1 << 20);
        let digest = proto::digest_of(b"kept open");
        cache.insert(&digest, b"kept open").unwrap();
        let open = cache.open(&digest).unwrap();
        cache.discard(&digest);
        assert!(cache.open(&digest).is_none());
        assert_eq!(read(open), b"kept open");
    }

    #[test]
    fn the_least_recently_used_blobs_go_first_down_to_90_percent() {
        let (dir, cache) = cache(1000);
        let blobs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 300]).collect();
        let digests: Vec<_> = blobs.iter().map(|b| proto::digest_of(b)).collect();
        let start = SystemTime::now() - Duration::from_secs(600);
        for (i, (digest, bytes)) in digests.iter().zip(&blobs).enumerate() {
            cache.insert(digest, bytes).unwrap();
            let path = dir.path().join(&digest.hash[..2]).join(&digest.hash);
            let when = start + Duration::from_secs(10 * i as u64);
            File::open(&path).unwrap().set_modified(when).unwrap();
        }
        // Using the oldest makes it the newest.
        cache.open(&digests[0]).unwrap();
        std::fs::write(dir.path().join("not-a-blob"), b"x").unwrap();
        let trimmed = cache.trim().unwrap();
        // 1500 bytes, bound 1000: down to 900 or less, oldest first.
        assert_eq!(
            trimmed,
            Trimmed {
                blobs: 2,
                bytes: 600,
                kept: 900
            }
        );
        let kept: Vec<bool> = digests.iter().map(|d| cache.open(d).is_some()).collect();
        assert_eq!(kept, [true, false, false, true, true]);
        assert!(dir.path().join("not-a-blob").exists());
        // Nothing stored since: the next lease does not look again.
        assert_eq!(cache.trim(), None);
    }

    #[test]
    fn temp_files_of_dead_workers_are_removed() {
        let (dir, cache) = cache(1000);
        let old = dir.path().join(format!("{TEMP_PREFIX}dead"));
        let new = dir.path().join(format!("{TEMP_PREFIX}busy"));
        std::fs::write(&old, b"x").unwrap();
        std::fs::write(&new, b"x").unwrap();
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(SystemTime::now() - 2 * STALE_TEMP)
            .unwrap();
        cache.scan();
        assert!(!old.exists());
        assert!(new.exists());
    }
}
