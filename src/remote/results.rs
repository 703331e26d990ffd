//! Results between the two stores: a REAPI `ActionResult` downloaded into the local store
//! as a local entry (then restored exactly as a local hit), and a local entry turned into a
//! REAPI `ActionResult` with the blobs it needs (output folders as `Tree` messages).

use super::cas::Blobs;
use super::connection::{Connection, RemoteError, RemoteResult};
use super::proto::{from_store, re, to_store, well_formed};
use super::tree::{self, Flat, Node};
use crate::cache::inputs::RecordPath;
use crate::cache::store::{
    ActionResult, ExecutionMetadata, FolderListing, NodeProperties, Observed, OutputDirectory,
    OutputFile, OutputSymlink, Store,
};
use prost::Message;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// A path from the server, relative to the step's folder: plain names only.
fn safe_path(path: &str) -> RemoteResult<PathBuf> {
    let p = Path::new(path);
    let plain = !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if plain {
        Ok(p.to_path_buf())
    } else {
        Err(RemoteError::new(
            "the remote result is unusable",
            format!("it names an unsafe path `{path}`"),
        ))
    }
}

fn mode(executable: bool) -> NodeProperties {
    NodeProperties {
        unix_mode: if executable { 0o755 } else { 0o644 },
    }
}

/// Blobs bigger than this go to disk as they arrive rather than through memory.
const STREAM_TO_DISK: i64 = 16 << 20;
/// Smaller blobs are fetched in rounds of about this many bytes.
const ROUND_BYTES: i64 = 64 << 20;
/// A Tree message (the listing of an output folder) bigger than this is refused.
const MAX_TREE: i64 = 64 << 20;

/// Streams one big blob into a temp file beside the store, then files it there.
async fn fetch_to_store(
    connection: &Connection,
    digest: &re::Digest,
    store: &Store,
) -> RemoteResult<()> {
    let local = |e: std::io::Error| RemoteError::caused("cannot write to the local cache", e);
    let tmp =
        tempfile::NamedTempFile::new_in(store.scratch_dir().map_err(local)?).map_err(local)?;
    // Checked against its digest as it arrives, then moved in without another copy.
    connection.download_file(digest, tmp.path()).await?;
    let path = tmp.into_temp_path().keep().map_err(|e| local(e.error))?;
    store.adopt(&path, &to_store(digest)).map_err(local)
}

/// Downloads what a remote result refers to into the local store (blobs already there are
/// not fetched again; every one fetched is checked against its digest) and returns the
/// local entry it makes. Paths become repository-relative: REAPI's are relative to the
/// step's folder.
pub async fn fetch(
    connection: &Connection,
    result: &re::ActionResult,
    working_dir: &Path,
    store: &Store,
) -> RemoteResult<ActionResult> {
    let bad = |why: String| RemoteError::new("the remote result is unusable", why);
    // Output folders come as Tree messages: read those first to learn their files.
    let tree_digests: Vec<re::Digest> = result
        .output_directories
        .iter()
        .map(|d| d.tree_digest.clone().filter(well_formed))
        .collect::<Option<_>>()
        .ok_or_else(|| bad("an output folder has no valid tree digest".into()))?;
    if let Some(huge) = tree_digests.iter().find(|d| d.size_bytes > MAX_TREE) {
        return Err(bad(format!(
            "an output folder's tree is {} bytes, more than preflight reads",
            huge.size_bytes
        )));
    }
    let trees = connection.read_blobs(tree_digests.clone()).await?;

    let mut entry = ActionResult {
        exit_code: result.exit_code,
        ..ActionResult::default()
    };
    let mut wanted: Vec<re::Digest> = Vec::new();
    for f in &result.output_files {
        let digest = f
            .digest
            .clone()
            .filter(well_formed)
            .ok_or_else(|| bad(format!("output `{}` has no valid digest", f.path)))?;
        entry.output_files.push(OutputFile {
            path: RecordPath::new(&working_dir.join(safe_path(&f.path)?)),
            digest: to_store(&digest),
            is_executable: f.is_executable,
            node_properties: mode(f.is_executable),
        });
        wanted.push(digest);
    }
    // Older servers and workers still fill the split symlink lists.
    #[allow(deprecated)]
    let links = result
        .output_symlinks
        .iter()
        .chain(&result.output_file_symlinks)
        .chain(&result.output_directory_symlinks);
    for l in links {
        entry.output_symlinks.push(OutputSymlink {
            path: RecordPath::new(&working_dir.join(safe_path(&l.path)?)),
            target: RecordPath::new(Path::new(&l.target)),
        });
    }
    for (dir, tree_digest) in result.output_directories.iter().zip(&tree_digests) {
        let base = working_dir.join(safe_path(&dir.path)?);
        let bytes = trees
            .get(&tree_digest.hash)
            .ok_or_else(|| bad(format!("the tree of `{}` is missing", dir.path)))?;
        let tree = re::Tree::decode(bytes.as_slice())
            .map_err(|e| bad(format!("the tree of `{}` does not decode: {e}", dir.path)))?;
        let root = tree
            .root
            .clone()
            .ok_or_else(|| bad(format!("the tree of `{}` has no root", dir.path)))?;
        let mut listing = FolderListing {
            directories: vec![RecordPath::new(Path::new(""))],
        };
        for (rel, flat) in tree::flatten(&root, &tree::tree_children(&tree))
            .map_err(|e| RemoteError::caused("the remote result is unusable", e))?
        {
            let path = base.join(&rel);
            match flat {
                Flat::File { digest, executable } => {
                    entry.output_files.push(OutputFile {
                        path: RecordPath::new(&path),
                        digest: to_store(&digest),
                        is_executable: executable,
                        node_properties: mode(executable),
                    });
                    wanted.push(digest);
                }
                Flat::Symlink { target } => entry.output_symlinks.push(OutputSymlink {
                    path: RecordPath::new(&path),
                    target: RecordPath::new(Path::new(&target)),
                }),
                Flat::Folder => listing.directories.push(RecordPath::new(&rel)),
            }
        }
        let listing = serde_json::to_vec(&listing).expect("a listing serialises");
        let tree_digest = store
            .put_bytes(&listing)
            .map_err(|e| RemoteError::caused("cannot write to the local cache", e))?;
        entry.output_directories.push(OutputDirectory {
            path: RecordPath::new(&base),
            tree_digest,
        });
    }

    // The log: stdout then stderr (preflight keeps one combined log).
    let mut log_parts: Vec<re::Digest> = Vec::new();
    for d in [&result.stdout_digest, &result.stderr_digest]
        .into_iter()
        .flatten()
    {
        if !well_formed(d) {
            return Err(bad("a log has an invalid digest".into()));
        }
        log_parts.push(d.clone());
    }
    wanted.extend(log_parts.iter().cloned());

    let (large, missing): (Vec<re::Digest>, Vec<re::Digest>) = wanted
        .into_iter()
        .filter(|d| !store.blob_file(&to_store(d)).is_file())
        .partition(|d| d.size_bytes > STREAM_TO_DISK);
    for digest in &large {
        fetch_to_store(connection, digest, store).await?;
    }
    // In rounds, so that a result of many files never sits in memory whole.
    let local = |e: std::io::Error| RemoteError::caused("cannot write to the local cache", e);
    let mut round: Vec<re::Digest> = Vec::new();
    let mut round_bytes = 0i64;
    let mut rest = missing.into_iter().peekable();
    while let Some(digest) = rest.next() {
        round_bytes += digest.size_bytes;
        round.push(digest);
        if round_bytes >= ROUND_BYTES || rest.peek().is_none() {
            for bytes in connection
                .read_blobs(std::mem::take(&mut round))
                .await?
                .values()
            {
                store.put_bytes(bytes).map_err(local)?;
            }
            round_bytes = 0;
        }
    }
    let mut log = result.stdout_raw.clone();
    for d in &log_parts {
        let bytes = store.read_verified(&to_store(d)).ok_or_else(|| {
            RemoteError::new(
                "cannot read the log of a remote result",
                "it is not in the local cache",
            )
        })?;
        log.extend_from_slice(&bytes);
    }
    log.extend_from_slice(&result.stderr_raw);
    entry.stdout_digest = Some(
        store
            .put_bytes(&log)
            .map_err(|e| RemoteError::caused("cannot write to the local cache", e))?,
    );
    entry.observed = observed_from(result, store)?;
    entry.execution_metadata = ExecutionMetadata {
        worker: result
            .execution_metadata
            .as_ref()
            .map(|m| m.worker.clone())
            .unwrap_or_default(),
        execution_start_timestamp: String::new(),
        execution_completed_timestamp: String::new(),
    };
    Ok(entry)
}

/// Why a local entry cannot be sent as a REAPI result.
#[derive(Debug, thiserror::Error)]
pub enum NotUploadable {
    #[error("output `{0}` is outside the step's folder")]
    OutsideFolder(String),
    #[error("output `{}` is not UTF-8", .0.display())]
    NotUtf8(PathBuf),
    #[error(transparent)]
    Tree(#[from] tree::TreeError),
}

/// A local entry as a REAPI result, with every blob it refers to (read from the store).
pub fn to_remote(
    entry: &ActionResult,
    working_dir: &Path,
    store: &Store,
) -> Result<(re::ActionResult, Blobs), NotUploadable> {
    let mut blobs = Blobs::default();
    let relative = |p: &RecordPath| -> Result<PathBuf, NotUploadable> {
        p.to_path()
            .strip_prefix(working_dir)
            .map(Path::to_path_buf)
            .map_err(|_| NotUploadable::OutsideFolder(p.to_string()))
    };
    let text = |p: &Path| -> Result<String, NotUploadable> {
        p.to_str()
            .map(str::to_string)
            .ok_or_else(|| NotUploadable::NotUtf8(p.to_path_buf()))
    };
    let mut result = re::ActionResult {
        exit_code: entry.exit_code,
        ..Default::default()
    };
    let folders: Vec<PathBuf> = entry
        .output_directories
        .iter()
        .map(|d| d.path.to_path())
        .collect();
    let mut inside: HashMap<usize, Vec<(PathBuf, Node)>> = HashMap::new();
    // Which output folder holds a path (then it goes into that folder's Tree), and where
    // inside it.
    let place = |p: &Path| {
        folders
            .iter()
            .enumerate()
            .find_map(|(i, f)| p.strip_prefix(f).ok().map(|rel| (i, rel.to_path_buf())))
    };
    for f in &entry.output_files {
        let path = f.path.to_path();
        let node = Node::File {
            digest: from_store(&f.digest),
            executable: f.is_executable,
            source: store.blob_file(&f.digest),
        };
        match place(&path) {
            Some((i, rel)) => inside.entry(i).or_default().push((rel, node)),
            None => {
                blobs.add_file(from_store(&f.digest), store.blob_file(&f.digest));
                result.output_files.push(re::OutputFile {
                    path: text(&relative(&f.path)?)?,
                    digest: Some(from_store(&f.digest)),
                    is_executable: f.is_executable,
                    ..Default::default()
                });
            }
        }
    }
    for l in &entry.output_symlinks {
        let path = l.path.to_path();
        let target = text(&l.target.to_path())?;
        match place(&path) {
            Some((i, rel)) => inside
                .entry(i)
                .or_default()
                .push((rel, Node::Symlink { target })),
            None => result.output_symlinks.push(re::OutputSymlink {
                path: text(&relative(&l.path)?)?,
                target,
                node_properties: None,
            }),
        }
    }
    for (i, d) in entry.output_directories.iter().enumerate() {
        let mut entries = inside.remove(&i).unwrap_or_default();
        if let Some(listing) = store
            .read_verified(&d.tree_digest)
            .and_then(|b| serde_json::from_slice::<FolderListing>(&b).ok())
        {
            entries.extend(
                listing
                    .directories
                    .iter()
                    .map(|sub| sub.to_path())
                    .filter(|sub| !sub.as_os_str().is_empty())
                    .map(|sub| (sub, Node::Folder)),
            );
        }
        let merkle = tree::build(entries)?;
        blobs.extend(merkle.blobs.clone());
        let tree_digest = blobs.add_message(&merkle.to_tree());
        result.output_directories.push(re::OutputDirectory {
            path: text(&relative(&d.path)?)?,
            tree_digest: Some(tree_digest),
            is_topologically_sorted: false,
            root_directory_digest: Some(merkle.root_digest.clone()),
        });
    }
    if let Some(d) = &entry.stdout_digest {
        blobs.add_file(from_store(d), store.blob_file(d));
        result.stdout_digest = Some(from_store(d));
    }
    result.execution_metadata = Some(re::ExecutedActionMetadata {
        worker: format!("{UPLOADER}{}", super::host::name()),
        auxiliary_metadata: observed_to(entry, store).into_iter().collect(),
        ..Default::default()
    });
    Ok((result, blobs))
}

/// How a result a preflight uploaded names its worker (then the host's name).
const UPLOADER: &str = "preflight@";

/// How a result carries what its step was seen to read: the record's JSON as a
/// `google.protobuf.StringValue` in its `auxiliary_metadata` (a well-known type, so that
/// servers and tools that print results can show it). It is told from other strings by
/// parsing as a record of the version preflight writes.
const OBSERVED_TYPE: &str = "google.protobuf.StringValue";

/// A record of what a step read (its JSON), packed for a result's `auxiliary_metadata`.
pub(crate) fn observed_any(json: String) -> super::proto::pb::Any {
    super::proto::pack(
        OBSERVED_TYPE,
        &super::proto::pb::StringValue { value: json },
    )
}

/// What a local entry's step was seen to read, for the remote result; `None` when it was
/// not observed (or the record is unreadable: the result then vouches for its declared
/// inputs only, as one from another client does).
fn observed_to(entry: &ActionResult, store: &Store) -> Option<super::proto::pb::Any> {
    let Some(Observed::Recorded(d)) = &entry.observed else {
        return None;
    };
    String::from_utf8(store.read_verified(d)?)
        .ok()
        .map(observed_any)
}

/// The record of what the step read that a remote result carries, filed in the local
/// store: the lookup that follows checks it as it checks a local entry's.
fn observed_from(result: &re::ActionResult, store: &Store) -> RemoteResult<Option<Observed>> {
    let record = result
        .execution_metadata
        .iter()
        .flat_map(|m| &m.auxiliary_metadata)
        .filter(|a| super::proto::holds(a, OBSERVED_TYPE))
        .filter_map(|a| super::proto::pb::StringValue::decode(a.value.as_slice()).ok())
        .find(|s| {
            serde_json::from_str::<crate::cache::observed::ObservedInputs>(&s.value)
                .is_ok_and(|r| r.version == crate::cache::observed::OBSERVED_VERSION)
        });
    let Some(record) = record else {
        // A result a preflight uploaded records what its step read when it was observed;
        // one that records nothing was not. A result a worker made ran from an input root
        // holding only the declared inputs: it could read nothing else.
        let uploaded = result
            .execution_metadata
            .as_ref()
            .is_some_and(|m| m.worker.starts_with(UPLOADER));
        return Ok((!uploaded).then_some(Observed::OnWorker));
    };
    let digest = store
        .put_bytes(record.value.as_bytes())
        .map_err(|e| RemoteError::caused("cannot write to the local cache", e))?;
    Ok(Some(Observed::Recorded(digest)))
}
