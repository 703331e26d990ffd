//! An action's private folder: its input root laid out from the CAS, the folders its
//! outputs go in, and its removal. Nothing the server sends is trusted as a path: names are
//! single components (tree::flatten), paths are relative without `..`, and nothing is
//! written through a symlink.

use super::job::Failure;
use crate::remote::connection::Connection;
use crate::remote::proto::re;
use crate::remote::tree::{self, Flat};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

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
        if let Some(huge) = wanted
            .iter()
            .find(|d| d.size_bytes > super::job::MAX_MESSAGE_BLOB)
        {
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
/// a link. Every blob is checked against its digest.
pub async fn materialise(
    connection: &Connection,
    root: &Path,
    top: &re::Directory,
    folders: &HashMap<String, re::Directory>,
) -> Result<(), Failure> {
    let entries = tree::flatten(top, folders).map_err(Failure::invalid)?;
    let (files, links) = tokio::task::block_in_place(|| lay_out(root, entries))?;
    let (large, small): (Vec<_>, Vec<_>) = files
        .into_values()
        .partition(|(d, _)| d.size_bytes >= LARGE);
    write_small(connection, small).await?;
    write_large(connection, large).await?;
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

/// Small files in batched reads, a bounded number of bytes per round.
async fn write_small(connection: &Connection, mut files: Vec<Copies>) -> Result<(), Failure> {
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
        tokio::task::block_in_place(|| write_round(&blobs, round))?;
    }
    Ok(())
}

fn write_round(blobs: &HashMap<String, Arc<Vec<u8>>>, round: Vec<Copies>) -> Result<(), Failure> {
    for (digest, paths) in round {
        let content = blobs
            .get(&digest.hash)
            .ok_or_else(|| Failure::missing(format!("blob {}", digest.hash)))?;
        for path in paths {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Failure::local(&path, e))?;
            file.write_all(content)
                .map_err(|e| Failure::local(&path, e))?;
        }
    }
    Ok(())
}

/// Large files streamed to disk, a few at once; a content used twice is copied locally.
async fn write_large(connection: &Connection, files: Vec<Copies>) -> Result<(), Failure> {
    let limit = Arc::new(Semaphore::new(PARALLEL));
    let mut tasks = JoinSet::new();
    for (digest, paths) in files {
        let connection = connection.clone();
        let limit = Arc::clone(&limit);
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let first = &paths[0];
            connection
                .download_file(&digest, first)
                .await
                .map_err(Failure::cas)?;
            for path in &paths[1..] {
                std::fs::copy(first, path).map_err(|e| Failure::local(path, e))?;
            }
            Ok::<(), Failure>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| Failure::internal(format!("a download task failed: {e}")))??;
    }
    Ok(())
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
