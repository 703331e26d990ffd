//! An action's private folder: its input root laid out from the CAS, the folders its
//! outputs go in, and its removal. Nothing the server sends is trusted as a path: names are
//! single components (tree::flatten), paths are relative without `..`, and nothing is
//! written through a symlink.

use super::blobs::Cache;
use super::failure::Failure;
use crate::remote::connection::Connection;
use crate::remote::proto::re;
use crate::remote::tree::{self, Flat};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The biggest Action, Command or Directory message a worker reads: a bigger one is a
/// mistake or an attack, and would only exhaust memory.
pub const MAX_MESSAGE_BLOB: i64 = 64 << 20;

/// Files this big or bigger are streamed to disk one by one rather than read in batches.
const LARGE: i64 = 1 << 20;
/// Small files are fetched in rounds of at most this many bytes, to bound memory.
const ROUND: i64 = 32 << 20;
/// Large files downloaded at once.
const PARALLEL: usize = 4;

/// A path from the server, relative to a folder of the action: plain names only (`.`
/// parts are dropped). `what` names it in the error.
pub fn relative(path: &str, what: &str) -> Result<PathBuf, Failure> {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => {
                return Err(Failure::invalid(format!(
                    "{what} `{path}` is absolute or leaves its folder"
                )));
            }
        }
    }
    Ok(out)
}

/// Reads a tree's folders from the CAS, one level per round trip, each checked against its
/// digest; returns the root and every folder by hash.
pub async fn fetch_tree(
    connection: &Connection,
    root: &re::Digest,
) -> Result<(re::Directory, HashMap<String, re::Directory>), Failure> {
    let mut folders: HashMap<String, re::Directory> = HashMap::new();
    let mut asked: HashSet<String> = HashSet::from([root.hash.clone()]);
    let mut wanted = vec![root.clone()];
    let mut depth = 0;
    while !wanted.is_empty() {
        depth += 1;
        if depth > 256 {
            return Err(Failure::invalid(
                "the input root is deeper than 256 folders",
            ));
        }
        if let Some(huge) = wanted.iter().find(|d| d.size_bytes > MAX_MESSAGE_BLOB) {
            return Err(Failure::invalid(format!(
                "folder {} of the input root is {} bytes, more than a worker reads",
                huge.hash, huge.size_bytes
            )));
        }
        let blobs = connection
            .read_blobs(wanted.clone())
            .await
            .map_err(Failure::cas)?;
        let mut next = Vec::new();
        for digest in wanted {
            let bytes = blobs
                .get(&digest.hash)
                .ok_or_else(|| Failure::missing(format!("folder {}", digest.hash)))?;
            let folder = re::Directory::decode(bytes.as_slice()).map_err(|e| {
                Failure::invalid(format!("folder {} does not decode: {e}", digest.hash))
            })?;
            for child in &folder.directories {
                let d = child
                    .digest
                    .clone()
                    .filter(crate::remote::proto::well_formed)
                    .ok_or_else(|| {
                        Failure::invalid(format!("folder `{}` has no digest", child.name))
                    })?;
                if asked.insert(d.hash.clone()) {
                    next.push(d);
                }
            }
            folders.insert(digest.hash, folder);
        }
        wanted = next;
    }
    let top = folders.get(&root.hash).cloned().unwrap_or_default();
    Ok((top, folders))
}

/// Lays the input root out under `root` (which must not exist yet): folders, then files
/// with their executable bit, then symlinks last, so that no file is ever written through
/// a link. Every blob is checked against its digest. Blobs in `cache` are copied from it
/// (never linked: an action may change its inputs); the others are fetched into it first.
pub async fn materialise(
    connection: &Connection,
    cache: &Arc<Cache>,
    root: &Path,
    top: &re::Directory,
    folders: &HashMap<String, re::Directory>,
) -> Result<(), Failure> {
    let entries = tree::flatten(top, folders).map_err(|e| Failure::invalid(e.to_string()))?;
    let (files, links) = tokio::task::block_in_place(|| lay_out(root, entries))?;
    let missing = tokio::task::block_in_place(|| copy_cached(cache, files))?;
    let (large, small): (Vec<_>, Vec<_>) = missing
        .into_iter()
        .partition(|(d, _)| d.size_bytes >= LARGE);
    write_small(connection, cache, small).await?;
    write_large(connection, cache, large).await?;
    for (path, target) in links {
        std::os::unix::fs::symlink(&target, &path).map_err(|e| Failure::local(&path, e))?;
    }
    Ok(())
}

/// A blob to write and the files that hold it.
type Copies = (re::Digest, Vec<PathBuf>);
/// Links to make: where, and their targets.
type Links = Vec<(PathBuf, String)>;

/// Makes the folders and the (empty) files; returns the files by content and the links,
/// which come last.
fn lay_out(
    root: &Path,
    entries: Vec<(PathBuf, Flat)>,
) -> Result<(HashMap<String, Copies>, Links), Failure> {
    std::fs::create_dir(root).map_err(|e| Failure::local(root, e))?;
    let mut files: HashMap<String, Copies> = HashMap::new();
    let mut links = Vec::new();
    for (rel, flat) in entries {
        let path = root.join(&rel);
        match flat {
            // create_dir, not create_dir_all: a name used twice is an error, not a merge.
            Flat::Folder => std::fs::create_dir(&path).map_err(|e| Failure::local(&path, e))?,
            Flat::File { digest, executable } => {
                // Claims the name now, so that two entries cannot share it.
                create_new(&path, executable)?;
                files
                    .entry(digest.hash.clone())
                    .or_insert_with(|| (digest, Vec::new()))
                    .1
                    .push(path);
            }
            Flat::Symlink { target } => links.push((path, target)),
        }
    }
    Ok((files, links))
}

/// An empty file with its mode, refusing a name that exists.
fn create_new(path: &Path, executable: bool) -> Result<(), Failure> {
    let mode = if executable { 0o755 } else { 0o644 };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Failure::local(path, e))?;
    // The umask may have taken bits away.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| Failure::local(path, e))
}

/// Fills the files whose blob the cache holds; returns the others.
fn copy_cached(cache: &Cache, files: HashMap<String, Copies>) -> Result<Vec<Copies>, Failure> {
    let mut missing = Vec::new();
    for (digest, paths) in files.into_values() {
        let copied = match cache.open(&digest) {
            Some(blob) => fill(cache, &blob, &digest, &paths)?,
            None => false,
        };
        if !copied {
            missing.push((digest, paths));
        }
    }
    Ok(missing)
}

/// Copies a cached blob into each of its files (whose modes lay_out set). False when the
/// copy does not have the digest's size: the cached file changed after it was checked, and
/// is dropped.
fn fill(
    cache: &Cache,
    blob: &File,
    digest: &re::Digest,
    paths: &[PathBuf],
) -> Result<bool, Failure> {
    for path in paths {
        let mut out = open_empty(path)?;
        let mut from = blob;
        from.rewind().map_err(|e| Failure::local(path, e))?;
        // On Linux this is copy_file_range: the bytes need not pass through the worker.
        let copied = std::io::copy(&mut from, &mut out).map_err(|e| Failure::local(path, e))?;
        if copied != digest.size_bytes as u64 {
            cache.discard(digest);
            return Ok(false);
        }
    }
    Ok(true)
}

/// A file lay_out made, emptied: it may hold part of a copy that failed.
fn open_empty(path: &Path) -> Result<File, Failure> {
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Failure::local(path, e))
}

/// Small files in batched reads, a bounded number of bytes per round, each blob stored in
/// the cache and written from memory.
async fn write_small(
    connection: &Connection,
    cache: &Cache,
    mut files: Vec<Copies>,
) -> Result<(), Failure> {
    while !files.is_empty() {
        let mut round = Vec::new();
        let mut bytes = 0;
        while let Some(next) = files.pop() {
            bytes += next.0.size_bytes;
            round.push(next);
            if bytes >= ROUND {
                break;
            }
        }
        let digests = round.iter().map(|(d, _)| d.clone()).collect();
        let blobs = connection.read_blobs(digests).await.map_err(Failure::cas)?;
        // Writing may take long: the runtime's other tasks move off this thread meanwhile.
        tokio::task::block_in_place(|| write_round(cache, &blobs, round))?;
    }
    Ok(())
}

fn write_round(
    cache: &Cache,
    blobs: &HashMap<String, Arc<Vec<u8>>>,
    round: Vec<Copies>,
) -> Result<(), Failure> {
    for (digest, paths) in round {
        // read_blobs checked each blob against its digest.
        let content = blobs
            .get(&digest.hash)
            .ok_or_else(|| Failure::missing(format!("blob {}", digest.hash)))?;
        cache
            .insert(&digest, content)
            .map_err(|e| cache_failure(&digest, e))?;
        for path in paths {
            open_empty(&path)?
                .write_all(content)
                .map_err(|e| Failure::local(&path, e))?;
        }
    }
    Ok(())
}

/// Large files streamed into the cache, a few at once, then copied from there.
async fn write_large(
    connection: &Connection,
    cache: &Arc<Cache>,
    files: Vec<Copies>,
) -> Result<(), Failure> {
    let limit = Arc::new(Semaphore::new(PARALLEL));
    let mut tasks = JoinSet::new();
    for (digest, paths) in files {
        let connection = connection.clone();
        let cache = Arc::clone(cache);
        let limit = Arc::clone(&limit);
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let temp = cache.temp().map_err(|e| cache_failure(&digest, e))?;
            // Checks the hash as the bytes arrive; the temp file is removed on an error.
            connection
                .download_file(&digest, &temp)
                .await
                .map_err(Failure::cas)?;
            tokio::task::spawn_blocking(move || {
                let blob = cache
                    .commit(&digest, temp)
                    .map_err(|e| cache_failure(&digest, e))?;
                if fill(&cache, &blob, &digest, &paths)? {
                    Ok(())
                } else {
                    Err(Failure::internal(format!(
                        "blob {} changed in the worker's cache while it was copied",
                        digest.hash
                    )))
                }
            })
            .await
            .map_err(|e| Failure::internal(format!("a copy task failed: {e}")))?
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| Failure::internal(format!("a download task failed: {e}")))??;
    }
    Ok(())
}

/// The cache could not store a blob (a full disk, say): this machine's fault, as with the
/// action's folder.
fn cache_failure(digest: &re::Digest, e: std::io::Error) -> Failure {
    Failure::internal(format!(
        "cannot store blob {} in the worker's cache: {e}",
        digest.hash
    ))
}

/// Creates the folders from `base` down to `rel` that do not exist. A part that is a
/// symlink or a file ends the walk: the folders are a courtesy, and following a link
/// could create them outside the action's folder.
pub fn make_folders(base: &Path, rel: &Path) -> Result<(), Failure> {
    let mut at = base.to_path_buf();
    for part in rel.components() {
        at.push(part);
        match at.symlink_metadata() {
            Ok(meta) if meta.is_dir() => {}
            // A link here could lead the action's folder (or an output's) out of the
            // sandbox: refused rather than followed.
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Failure::new(
                    tonic::Code::InvalidArgument,
                    format!(
                        "`{}` is a symlink in the input root: no folder is made through it",
                        at.strip_prefix(base).unwrap_or(&at).display()
                    ),
                ));
            }
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&at).map_err(|e| Failure::local(&at, e))?;
            }
            Err(e) => return Err(Failure::local(&at, e)),
        }
    }
    Ok(())
}

/// Removes an action's folder even when the command made parts of it read-only.
pub fn remove(dir: &Path) {
    if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
        return;
    }
    let _ = make_writable(dir);
    let _ = std::fs::remove_dir_all(dir);
}

fn make_writable(dir: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // file_type does not follow symlinks: a link to a folder elsewhere is left alone.
        if entry.file_type()?.is_dir() {
            let _ = make_writable(&entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_accepted() {
        assert_eq!(relative("a/./b", "output").unwrap(), PathBuf::from("a/b"));
        assert_eq!(relative("", "working directory").unwrap(), PathBuf::new());
        for bad in ["/etc/passwd", "../x", "a/../../x", "a/.."] {
            let err = relative(bad, "output").unwrap_err();
            assert!(err.message.contains(bad), "{}", err.message);
        }
    }

    #[test]
    fn a_name_the_server_sends_twice_is_refused() {
        let file = || Flat::File {
            digest: crate::remote::proto::digest_of(b"x"),
            executable: true,
        };
        let dir = tempfile::tempdir().unwrap();
        let (files, _) =
            lay_out(&dir.path().join("ok"), vec![(PathBuf::from("a"), file())]).unwrap();
        assert_eq!(files.len(), 1);
        let mode = std::fs::metadata(dir.path().join("ok/a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        for twice in [
            vec![(PathBuf::from("a"), file()), (PathBuf::from("a"), file())],
            vec![
                (PathBuf::from("a"), file()),
                (PathBuf::from("a"), Flat::Folder),
            ],
        ] {
            let root = dir.path().join(format!("r{}", twice.len()));
            let _ = std::fs::remove_dir_all(&root);
            assert!(lay_out(&root, twice).is_err());
        }
    }

    #[test]
    fn folders_are_not_made_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        make_folders(dir.path(), Path::new("a/b")).unwrap();
        assert!(make_folders(dir.path(), Path::new("link/c")).is_err());
        assert!(dir.path().join("a/b").is_dir());
        assert!(!outside.path().join("c").exists());
    }

    #[test]
    fn read_only_folders_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let job = dir.path().join("job");
        std::fs::create_dir_all(job.join("ro/sub")).unwrap();
        std::fs::write(job.join("ro/sub/f"), b"x").unwrap();
        for d in ["ro/sub", "ro"] {
            std::fs::set_permissions(job.join(d), std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        remove(&job);
        assert!(!job.exists());
    }
}
