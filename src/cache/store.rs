//! The local store: content-addressed blobs plus one action entry per key.
//!
//! ```text
//! <dir>/v1/blobs/sha256/ab/abcd…      file contents, logs, folder listings (by SHA-256)
//! <dir>/v1/ac/ab/abcd….json           the ActionResult of a key (REAPI shape, JSON)
//! <dir>/v1/keys/ab/abcd….json         the key record, for explanations
//! <dir>/v1/last/<id>                  the key a step of a repository last used
//! <dir>/v1/sha256-of-git/ab/<git id>  the SHA-256 digest of that content (REAPI names)
//! <dir>/v1/key-commands/ab/<id>.json  a `key_commands` digest remembered per program file
//! <dir>/v1/tmp/                       files being written
//! <dir>/v1/lock                       shared while writing or restoring, exclusive for gc
//! ```
//!
//! Every file is written under `tmp/` and renamed into place, so a reader sees a whole file
//! or none, and a crash leaves at most an unreferenced temp file (removed by the next gc).
//! Blobs are written before the entry that refers to them; an entry whose blob is missing or
//! does not match its digest is a miss and is evicted.

pub use super::gc::{GcReport, Stats};
use super::inputs::{RecordPath, hex};
use super::key::{KeyCommand, KeyRecord};
use crate::lock::Mode;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// A blob's address: its SHA-256 and size (REAPI `Digest`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Digest {
    pub hash: String,
    pub size_bytes: u64,
}

/// The result of a step, shaped like REAPI's `ActionResult` (field names as in the proto, so
/// that a protobuf JSON parser reads it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActionResult {
    #[serde(default)]
    pub output_files: Vec<OutputFile>,
    #[serde(default)]
    pub output_symlinks: Vec<OutputSymlink>,
    /// Declared outputs that are folders; `tree_digest` names a blob listing their
    /// subfolders (files and links inside them are in `output_files`/`output_symlinks`).
    #[serde(default)]
    pub output_directories: Vec<OutputDirectory>,
    pub exit_code: i32,
    /// The step's combined output (preflight captures stdout and stderr together).
    pub stdout_digest: Option<Digest>,
    pub stderr_digest: Option<Digest>,
    pub execution_metadata: ExecutionMetadata,
    /// What the step was seen to read (preflight's own field, not REAPI's). Missing in an
    /// entry that came from elsewhere (the remote cache, a worker) or from an older
    /// preflight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observed>,
}

/// Whether a stored result records what its step read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Observed {
    /// The blob of its `ObservedInputs` record.
    Recorded(Digest),
    /// It ran without being observed (observing was off, or the system cannot observe).
    NotObserved,
    /// A worker ran it (remote execution) from an input root that holds only the step's
    /// declared inputs: it could read nothing undeclared.
    OnWorker,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputFile {
    pub path: RecordPath,
    pub digest: Digest,
    pub is_executable: bool,
    pub node_properties: NodeProperties,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeProperties {
    /// Permission bits (0o777 at most: setuid, setgid and sticky are never kept).
    pub unix_mode: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputSymlink {
    pub path: RecordPath,
    pub target: RecordPath,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputDirectory {
    pub path: RecordPath,
    pub tree_digest: Digest,
}

/// The subfolders of an output folder, relative to it (`""` is the folder itself).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FolderListing {
    pub directories: Vec<RecordPath>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecutionMetadata {
    pub worker: String,
    /// RFC 3339 timestamps.
    pub execution_start_timestamp: String,
    pub execution_completed_timestamp: String,
}

impl ActionResult {
    /// Every blob the entry needs.
    pub fn blobs(&self) -> Vec<&Digest> {
        let mut all: Vec<&Digest> = self.output_files.iter().map(|f| &f.digest).collect();
        all.extend(self.output_directories.iter().map(|d| &d.tree_digest));
        all.extend(self.stdout_digest.iter());
        all.extend(self.stderr_digest.iter());
        if let Some(Observed::Recorded(d)) = &self.observed {
            all.push(d);
        }
        all
    }
}

pub struct Store {
    pub(super) root: PathBuf,
}

/// A held lock on the store; released when dropped.
pub struct Lock {
    _file: File,
}

/// Where the SHA-256 of contents known by their git id are remembered (for REAPI).
pub(super) const ALIASES: &str = "sha256-of-git";

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn two(hash: &str) -> &str {
    hash.get(..2).unwrap_or("__")
}

/// A read-only file system, or a folder this user may not write.
pub fn not_writable(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM)
    )
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Store {
    /// The store at `dir` (created when first written).
    pub fn new(dir: &Path) -> Self {
        Store {
            root: dir.join("v1"),
        }
    }

    pub fn dir(&self) -> &Path {
        self.root.parent().unwrap_or(&self.root)
    }

    fn blob_path(&self, hash: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(two(hash)).join(hash)
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        self.root
            .join("ac")
            .join(two(key))
            .join(format!("{key}.json"))
    }

    pub(super) fn record_path(&self, key: &str) -> PathBuf {
        self.root
            .join("keys")
            .join(two(key))
            .join(format!("{key}.json"))
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A new temp file under `tmp/`, open for writing.
    fn temp_file(&self) -> std::io::Result<(PathBuf, File)> {
        let dir = self.tmp_dir();
        std::fs::create_dir_all(&dir)?;
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let path = dir.join(format!("{}-{n}-{nanos}.tmp", std::process::id()));
            match File::options().write(true).create_new(true).open(&path) {
                Ok(f) => return Ok((path, f)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves a finished temp file into place (creating the folder), or removes it on error.
    fn commit(&self, tmp: &Path, dest: &Path) -> std::io::Result<()> {
        let result = dest
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::rename(tmp, dest));
        if result.is_err() {
            let _ = std::fs::remove_file(tmp);
        }
        result
    }

    fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let (tmp, mut file) = self.temp_file()?;
        if let Err(e) = file.write_all(bytes) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        drop(file);
        self.commit(&tmp, dest)
    }

    /// Stores some bytes as a blob.
    pub fn put_bytes(&self, bytes: &[u8]) -> std::io::Result<Digest> {
        let hash = hex(&Sha256::digest(bytes));
        let dest = self.blob_path(&hash);
        if !dest.exists() {
            self.write_atomic(&dest, bytes)?;
        }
        Ok(Digest {
            hash,
            size_bytes: bytes.len() as u64,
        })
    }

    /// A folder for files on their way into the store (a leftover is removed by gc).
    pub fn scratch_dir(&self) -> std::io::Result<PathBuf> {
        let dir = self.tmp_dir();
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Moves a file of the scratch folder whose content was checked against `d` into the
    /// store as that blob, without copying it.
    pub fn adopt(&self, checked: &Path, d: &Digest) -> std::io::Result<()> {
        let dest = self.blob_path(&d.hash);
        if dest.exists() {
            let _ = std::fs::remove_file(checked);
            return Ok(());
        }
        self.commit(checked, &dest)
    }

    /// Stores a file's content as a blob, hashing it as it is copied.
    pub fn put_file(&self, src: &Path) -> std::io::Result<Digest> {
        let mut input = File::open(src)?;
        let (tmp, mut out) = self.temp_file()?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        let copied: std::io::Result<()> = (|| {
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])?;
                size += n as u64;
            }
        })();
        drop(out);
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let hash = hex(&hasher.finalize());
        let dest = self.blob_path(&hash);
        if dest.exists() {
            let _ = std::fs::remove_file(&tmp);
        } else {
            self.commit(&tmp, &dest)?;
        }
        Ok(Digest {
            hash,
            size_bytes: size,
        })
    }

    /// Whether the blob is present and its content matches its digest (a damaged one is
    /// removed).
    pub fn verify(&self, d: &Digest) -> bool {
        let Ok(mut file) = File::open(self.blob_path(&d.hash)) else {
            return false;
        };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    size += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        let ok = size == d.size_bytes && hex(&hasher.finalize()) == d.hash;
        if !ok {
            self.discard(d);
        }
        ok
    }

    /// Removes a blob found damaged, so that the next store writes it afresh.
    fn discard(&self, d: &Digest) {
        let _ = std::fs::remove_file(self.blob_path(&d.hash));
    }

    /// A blob's bytes, when present and intact.
    pub fn read_verified(&self, d: &Digest) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.blob_path(&d.hash)).ok()?;
        if bytes.len() as u64 == d.size_bytes && hex(&Sha256::digest(&bytes)) == d.hash {
            Some(bytes)
        } else {
            self.discard(d);
            None
        }
    }

    /// Where a verified blob lives, to copy it out.
    pub fn blob_file(&self, d: &Digest) -> PathBuf {
        self.blob_path(&d.hash)
    }

    /// The entry of a key, when there is a readable one.
    pub fn get(&self, key: &str) -> Option<ActionResult> {
        let bytes = std::fs::read(self.entry_path(key)).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(entry) => Some(entry),
            Err(_) => {
                self.evict(key);
                None
            }
        }
    }

    /// Writes a key's entry and record (its blobs must be stored already).
    pub fn put(&self, key: &str, entry: &ActionResult, record: &[u8]) -> std::io::Result<()> {
        self.write_atomic(&self.record_path(key), record)?;
        let entry_bytes = serde_json::to_vec_pretty(entry).map_err(std::io::Error::other)?;
        self.write_atomic(&self.entry_path(key), &entry_bytes)?;
        // The kernel stamps files with a coarse clock: entries written within a few
        // milliseconds would tie. Least-recently-used order needs the precise time.
        self.touch(key);
        Ok(())
    }

    /// Marks an entry as just used (least-recently-used eviction goes by this time).
    pub fn touch(&self, key: &str) {
        if let Ok(f) = File::options().write(true).open(self.entry_path(key)) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    /// Removes an entry (its blobs go at the next gc if nothing else needs them).
    pub fn evict(&self, key: &str) {
        let _ = std::fs::remove_file(self.entry_path(key));
        let _ = std::fs::remove_file(self.record_path(key));
    }

    pub fn record(&self, key: &str) -> Option<KeyRecord> {
        let bytes = std::fs::read(self.record_path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn last_path(&self, repo: &Path, step: &str) -> PathBuf {
        let mut id = repo.as_os_str().as_encoded_bytes().to_vec();
        id.push(0);
        id.extend_from_slice(step.as_bytes());
        self.root.join("last").join(hex(&Sha256::digest(&id)))
    }

    fn sha256_alias_path(&self, git_id: &str) -> Option<PathBuf> {
        let valid = git_id.len() == 40 && git_id.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| self.root.join(ALIASES).join(two(git_id)).join(git_id))
    }

    /// The SHA-256 digest of content known by its git blob id, when computed before: the
    /// index gives git ids for free, and REAPI names blobs by SHA-256.
    pub fn sha256_of_git(&self, git_id: &str) -> Option<Digest> {
        let text = std::fs::read_to_string(self.sha256_alias_path(git_id)?).ok()?;
        let (hash, size) = text.trim().split_once(' ')?;
        Some(Digest {
            hash: hash.to_string(),
            size_bytes: size.parse().ok()?,
        })
        .filter(|d| is_hex64(&d.hash))
    }

    pub fn remember_sha256_of_git(&self, git_id: &str, digest: &Digest) {
        if let Some(path) = self.sha256_alias_path(git_id) {
            let text = format!("{} {}", digest.hash, digest.size_bytes);
            let _ = self.write_atomic(&path, text.as_bytes());
        }
    }

    fn key_command_path(&self, id: &str) -> Option<PathBuf> {
        is_hex64(id).then(|| {
            self.root
                .join("key-commands")
                .join(two(id))
                .join(format!("{id}.json"))
        })
    }

    /// A `key_commands` result remembered under `id` (see `key_command::memo_id`).
    pub fn key_command(&self, id: &str) -> Option<KeyCommand> {
        let bytes = std::fs::read(self.key_command_path(id)?).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn remember_key_command(&self, id: &str, result: &KeyCommand) {
        if let Some(path) = self.key_command_path(id)
            && let Ok(bytes) = serde_json::to_vec(result)
        {
            let _ = self.write_atomic(&path, &bytes);
        }
    }

    /// The key the step of this repository last used (hit or stored).
    pub fn last_key(&self, repo: &Path, step: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.last_path(repo, step)).ok()?;
        let key = text.trim();
        is_hex64(key).then(|| key.to_string())
    }

    pub fn set_last_key(&self, repo: &Path, step: &str, key: &str) {
        if self.last_key(repo, step).as_deref() != Some(key) {
            let _ = self.write_atomic(&self.last_path(repo, step), key.as_bytes());
        }
    }

    fn lock(&self, mode: Mode, wait: bool) -> std::io::Result<Option<Lock>> {
        std::fs::create_dir_all(&self.root)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("lock"))?;
        let locked = crate::lock::flock(&file, mode, wait)?;
        Ok(locked.then_some(Lock { _file: file }))
    }

    /// Held while storing or restoring: gc waits for it.
    pub fn shared_lock(&self) -> std::io::Result<Lock> {
        Ok(self
            .lock(Mode::Shared, true)?
            .expect("a blocking lock is granted"))
    }

    /// Held while reading entries and restoring from them. A store this process may not
    /// write (a read-only mount, another user's folder) is still read: the lock file is
    /// opened for reading, or, when it cannot be created, reading goes on without it.
    pub fn read_lock(&self) -> std::io::Result<Option<Lock>> {
        match self.shared_lock() {
            Ok(lock) => Ok(Some(lock)),
            Err(e) if not_writable(&e) => {
                let file = match File::open(self.root.join("lock")) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                };
                crate::lock::flock(&file, Mode::Shared, true)?;
                Ok(Some(Lock { _file: file }))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether a file can be written into the store now: `Err` says why not.
    pub fn check_writable(&self) -> std::io::Result<()> {
        let (tmp, file) = self.temp_file()?;
        drop(file);
        std::fs::remove_file(tmp)
    }

    /// For gc: waits for writers when `wait`, else gives up when one is busy.
    pub fn exclusive_lock(&self, wait: bool) -> std::io::Result<Option<Lock>> {
        self.lock(Mode::Exclusive, wait)
    }
}

/// Now, as RFC 3339.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
