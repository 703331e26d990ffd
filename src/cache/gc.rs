//! Keeping the store bounded: its size, `preflight cache stats`, least-recently-used
//! eviction (`preflight cache gc`, and after a run that stored something) and
//! `preflight cache clear`. Entries and blobs are only removed under the store's exclusive
//! lock, so a running store or restore never loses a blob it needs.

use super::store::{ALIASES, ActionResult, Store};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

/// What `stats` found.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub entries: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Entries and key records.
    pub entry_bytes: u64,
    pub temp_files: u64,
    pub oldest_use: Option<SystemTime>,
    pub newest_use: Option<SystemTime>,
}

impl Stats {
    pub fn total(&self) -> u64 {
        self.blob_bytes + self.entry_bytes
    }
}

/// What a gc did.
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    pub before: u64,
    pub after: u64,
    pub evicted_entries: u64,
    pub removed_blobs: u64,
    pub removed_temp: u64,
}

impl Store {
    /// Files below a folder of the store: (path, size, mtime).
    fn walk(&self, sub: &str) -> Vec<(PathBuf, u64, SystemTime)> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.join(sub)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let Ok(meta) = e.metadata() else { continue };
                if meta.is_dir() {
                    stack.push(e.path());
                } else {
                    out.push((
                        e.path(),
                        meta.len(),
                        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    ));
                }
            }
        }
        out
    }

    /// The size of the blobs and entries, without reading them.
    pub fn size(&self) -> u64 {
        ["blobs", "ac", "keys"]
            .iter()
            .flat_map(|s| self.walk(s))
            .map(|(_, len, _)| len)
            .sum()
    }

    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for (_, len, mtime) in self.walk("ac") {
            s.entries += 1;
            s.entry_bytes += len;
            s.oldest_use = Some(s.oldest_use.map_or(mtime, |o| o.min(mtime)));
            s.newest_use = Some(s.newest_use.map_or(mtime, |o| o.max(mtime)));
        }
        s.entry_bytes += self.walk("keys").iter().map(|(_, l, _)| l).sum::<u64>();
        for (_, len, _) in self.walk("blobs") {
            s.blobs += 1;
            s.blob_bytes += len;
        }
        s.temp_files = self.walk("tmp").len() as u64;
        s
    }

    /// Evicts least-recently-used entries until the store is within `max` bytes (down to 90 %
    /// of it, so that the next runs do not each evict again), then removes the blobs no entry
    /// needs and leftover temp files. `wait`: wait for running writers instead of giving up.
    pub fn gc(&self, max: u64, wait: bool) -> std::io::Result<Option<GcReport>> {
        let Some(_lock) = self.exclusive_lock(wait)? else {
            return Ok(None);
        };
        let mut report = GcReport::default();
        // Nobody is writing: every temp file is a leftover.
        for (path, _, _) in self.walk("tmp") {
            if std::fs::remove_file(path).is_ok() {
                report.removed_temp += 1;
            }
        }
        let blobs: HashMap<String, (PathBuf, u64)> = self
            .walk("blobs")
            .into_iter()
            .filter_map(|(p, len, _)| {
                let name = p.file_name()?.to_str()?.to_string();
                Some((name, (p, len)))
            })
            .collect();
        let records: HashMap<String, u64> = self
            .walk("keys")
            .into_iter()
            .filter_map(|(p, len, _)| {
                let key = p.file_stem()?.to_str()?.to_string();
                Some((key, len))
            })
            .collect();
        struct Entry {
            key: String,
            path: PathBuf,
            size: u64,
            used: SystemTime,
            blobs: Vec<String>,
        }
        let mut entries: Vec<Entry> = Vec::new();
        let mut ac_bytes = 0;
        for (path, size, used) in self.walk("ac") {
            ac_bytes += size;
            let key = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            let parsed: Option<ActionResult> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let Some(parsed) = parsed else {
                self.evict(&key);
                report.evicted_entries += 1;
                continue;
            };
            let blobs = parsed.blobs().into_iter().map(|d| d.hash.clone()).collect();
            let size = size + records.get(&key).copied().unwrap_or(0);
            entries.push(Entry {
                key,
                path,
                size,
                used,
                blobs,
            });
        }
        entries.sort_by_key(|e| e.used);
        let mut refs: HashMap<&str, usize> = HashMap::new();
        for e in &entries {
            for b in &e.blobs {
                *refs.entry(b.as_str()).or_default() += 1;
            }
        }
        let referenced_bytes: u64 = refs
            .keys()
            .filter_map(|b| blobs.get(*b).map(|(_, len)| len))
            .sum();
        let entry_bytes: u64 = entries.iter().map(|e| e.size).sum();
        report.before =
            blobs.values().map(|(_, l)| l).sum::<u64>() + records.values().sum::<u64>() + ac_bytes;
        let mut total = referenced_bytes + entry_bytes;
        let mut evicted = 0;
        if total > max {
            let target = max / 10 * 9;
            for e in &entries {
                if total <= target {
                    break;
                }
                total -= e.size;
                for b in &e.blobs {
                    let n = refs.get_mut(b.as_str()).expect("counted");
                    *n -= 1;
                    if *n == 0 {
                        total -= blobs.get(b).map_or(0, |(_, len)| *len);
                    }
                }
                evicted += 1;
            }
        }
        for e in &entries[..evicted] {
            let _ = std::fs::remove_file(&e.path);
            let _ = std::fs::remove_file(self.record_path(&e.key));
            report.evicted_entries += 1;
        }
        let live: std::collections::HashSet<&str> =
            entries[evicted..].iter().map(|e| e.key.as_str()).collect();
        for (hash, (path, _)) in &blobs {
            if refs.get(hash.as_str()).is_none_or(|n| *n == 0) && std::fs::remove_file(path).is_ok()
            {
                report.removed_blobs += 1;
            }
        }
        for key in records.keys() {
            if !live.contains(key.as_str()) {
                let _ = std::fs::remove_file(self.record_path(key));
            }
        }
        // The remembered SHA-256 digests are only a shortcut: dropped with what they served.
        if report.evicted_entries > 0 {
            let _ = std::fs::remove_dir_all(self.root.join(ALIASES));
        }
        report.after = self.size();
        Ok(Some(report))
    }

    /// Removes everything (waiting for running writers).
    pub fn clear(&self) -> std::io::Result<u64> {
        let size = self.size();
        if !self.root.exists() {
            return Ok(0);
        }
        let _lock = self.exclusive_lock(true)?;
        for sub in ["ac", "keys", "blobs", "last", "tmp", ALIASES] {
            match std::fs::remove_dir_all(self.root.join(sub)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(size)
    }
}
