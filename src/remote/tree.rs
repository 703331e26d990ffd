//! Folder hierarchies as REAPI Merkle trees: built from files on disk (an input root, an
//! output folder) and read back safely (every name a single plain component).

use super::cas::Blobs;
use super::proto::{encode, re};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// A file or a link placed in a tree.
#[derive(Debug, Clone)]
pub enum Node {
    File {
        digest: re::Digest,
        executable: bool,
        /// Where its bytes are, to upload them.
        source: PathBuf,
    },
    Symlink {
        target: String,
    },
    /// An empty folder (folders with content appear through their entries).
    Folder,
}

#[derive(Default)]
struct Folder {
    files: BTreeMap<String, re::FileNode>,
    links: BTreeMap<String, re::SymlinkNode>,
    folders: BTreeMap<String, Folder>,
}

/// A hierarchy encoded as `Directory` messages.
#[derive(Debug, Default)]
pub struct MerkleTree {
    pub root_digest: re::Digest,
    pub root: re::Directory,
    /// Every folder below the root, once each.
    pub children: Vec<re::Directory>,
    /// The folders' messages and the files' contents, to upload.
    pub blobs: Blobs,
}

impl MerkleTree {
    /// The same hierarchy as one `Tree` message (how REAPI returns an output folder).
    pub fn to_tree(&self) -> re::Tree {
        re::Tree {
            root: Some(self.root.clone()),
            children: self.children.clone(),
        }
    }
}

/// Why some paths do not make a tree, or a tree from the server cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("`{}` is not UTF-8", .0.to_string_lossy())]
    NotUtf8(std::ffi::OsString),
    #[error("`{}` is not a plain relative path", .0.display())]
    NotPlain(PathBuf),
    #[error("`{}` is both a file and a folder", .0.display())]
    FileAndFolder(PathBuf),
    #[error("`{}` appears twice", .0.display())]
    Twice(PathBuf),
    #[error("the remote sent an unsafe name `{0}`")]
    UnsafeName(String),
    #[error("the remote sent a tree deeper than 256 folders")]
    TooDeep,
    #[error("file `{0}` has no valid digest")]
    NoDigest(String),
    #[error("folder `{}` is missing from the tree", .0.display())]
    MissingFolder(PathBuf),
}

fn name_of(part: &std::ffi::OsStr) -> Result<String, TreeError> {
    part.to_str()
        .map(str::to_string)
        .ok_or_else(|| TreeError::NotUtf8(part.to_os_string()))
}

/// Builds the tree of some entries, each at a relative path made of plain names.
pub fn build(entries: impl IntoIterator<Item = (PathBuf, Node)>) -> Result<MerkleTree, TreeError> {
    let mut top = Folder::default();
    let mut blobs = Blobs::default();
    for (path, node) in entries {
        let mut parts: Vec<String> = Vec::new();
        for c in path.components() {
            match c {
                Component::Normal(p) => parts.push(name_of(p)?),
                Component::CurDir => {}
                _ => return Err(TreeError::NotPlain(path.clone())),
            }
        }
        let Some(last) = parts.pop() else {
            continue;
        };
        let mut folder = &mut top;
        for part in parts {
            if folder.files.contains_key(&part) || folder.links.contains_key(&part) {
                return Err(TreeError::FileAndFolder(path));
            }
            folder = folder.folders.entry(part).or_default();
        }
        let clash = folder.files.contains_key(&last)
            || folder.links.contains_key(&last)
            || (folder.folders.contains_key(&last) && !matches!(node, Node::Folder));
        if clash {
            return Err(TreeError::Twice(path));
        }
        match node {
            Node::File {
                digest,
                executable,
                source,
            } => {
                folder.files.insert(
                    last.clone(),
                    re::FileNode {
                        name: last,
                        digest: Some(digest.clone()),
                        is_executable: executable,
                        node_properties: None,
                    },
                );
                blobs.add_file(digest, source);
            }
            Node::Symlink { target } => {
                folder.links.insert(
                    last.clone(),
                    re::SymlinkNode {
                        name: last,
                        target,
                        node_properties: None,
                    },
                );
            }
            Node::Folder => {
                folder.folders.entry(last).or_default();
            }
        }
    }
    let mut tree = MerkleTree {
        blobs,
        ..MerkleTree::default()
    };
    let mut seen = std::collections::HashSet::new();
    let root = encode_folder(top, &mut tree, &mut seen);
    let (root_digest, bytes) = encode(&root);
    tree.blobs.add_bytes(bytes);
    tree.root_digest = root_digest;
    tree.root = root;
    Ok(tree)
}

/// Encodes a folder's children first (a folder's message names their digests), keeping
/// each distinct child message once. Entries are sorted by name, as REAPI requires.
fn encode_folder(
    folder: Folder,
    tree: &mut MerkleTree,
    seen: &mut std::collections::HashSet<String>,
) -> re::Directory {
    let mut directories = Vec::with_capacity(folder.folders.len());
    for (name, child) in folder.folders {
        let message = encode_folder(child, tree, seen);
        let (digest, bytes) = encode(&message);
        if seen.insert(digest.hash.clone()) {
            tree.blobs.add_bytes(bytes);
            tree.children.push(message);
        }
        directories.push(re::DirectoryNode {
            name,
            digest: Some(digest),
        });
    }
    re::Directory {
        files: folder.files.into_values().collect(),
        directories,
        symlinks: folder.links.into_values().collect(),
        node_properties: None,
    }
}

/// Feeds a file to `take` chunk by chunk; returns how many bytes it read.
fn read_chunks(file: &mut std::fs::File, mut take: impl FnMut(&[u8])) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(size),
            Ok(n) => {
                take(&buf[..n]);
                size += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The SHA-256 digest of a file's content.
pub fn hash_file(path: &Path) -> std::io::Result<re::Digest> {
    let mut sha256 = Sha256::new();
    let size = read_chunks(&mut std::fs::File::open(path)?, |chunk| {
        sha256.update(chunk)
    })?;
    Ok(re::Digest {
        hash: crate::cache::inputs::hex(&sha256.finalize()),
        size_bytes: size as i64,
    })
}

/// A file's SHA-256 digest and its git blob id, from one read: the pair is only worth
/// remembering when both describe the same bytes.
pub fn hash_file_with_git_id(path: &Path) -> std::io::Result<(String, re::Digest)> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut sha256 = Sha256::new();
    let mut sha1 = sha1::Sha1::new();
    sha1.update(format!("blob {len}\0").as_bytes());
    let size = read_chunks(&mut file, |chunk| {
        sha256.update(chunk);
        sha1.update(chunk);
    })?;
    if size != len {
        return Err(std::io::Error::other("the file changed while it was read"));
    }
    Ok((
        crate::cache::inputs::hex(&sha1.finalize()),
        re::Digest {
            hash: crate::cache::inputs::hex(&sha256.finalize()),
            size_bytes: size as i64,
        },
    ))
}

/// The node for what is at `path` (not following a symlink), hashing a file.
pub fn node_at(path: &Path) -> std::io::Result<Node> {
    let meta = path.symlink_metadata()?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)?;
        let target = target.to_str().map(str::to_string).ok_or_else(|| {
            std::io::Error::other(format!("the target of {} is not UTF-8", path.display()))
        })?;
        Ok(Node::Symlink { target })
    } else if meta.is_dir() {
        Ok(Node::Folder)
    } else {
        Ok(Node::File {
            digest: hash_file(path)?,
            executable: meta.permissions().mode() & 0o111 != 0,
            source: path.to_path_buf(),
        })
    }
}

/// Every file, link and empty folder below `dir`, relative to it (symlinks not followed).
pub fn scan(dir: &Path) -> std::io::Result<Vec<(PathBuf, Node)>> {
    let mut found = Vec::new();
    scan_into(dir, Path::new(""), &mut found)?;
    Ok(found)
}

fn scan_into(base: &Path, rel: &Path, found: &mut Vec<(PathBuf, Node)>) -> std::io::Result<()> {
    let mut any = false;
    for entry in std::fs::read_dir(base.join(rel))? {
        let entry = entry?;
        any = true;
        let child = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            scan_into(base, &child, found)?;
        } else {
            found.push((child.clone(), node_at(&base.join(&child))?));
        }
    }
    if !any && !rel.as_os_str().is_empty() {
        found.push((rel.to_path_buf(), Node::Folder));
    }
    Ok(())
}

/// One entry of a tree read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Flat {
    File {
        digest: re::Digest,
        executable: bool,
    },
    Symlink {
        target: String,
    },
    Folder,
}

/// A name from the server: one plain component, never `.`, `..` or a path.
fn safe_name(name: &str) -> Result<&str, TreeError> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0');
    if plain {
        Ok(name)
    } else {
        Err(TreeError::UnsafeName(name.to_string()))
    }
}

/// Lists a tree's entries by relative path, folders before what they hold. `children`
/// holds the messages of its folders by digest; a missing one is an error.
pub fn flatten(
    root: &re::Directory,
    children: &HashMap<String, re::Directory>,
) -> Result<Vec<(PathBuf, Flat)>, TreeError> {
    let mut out = Vec::new();
    flatten_into(root, Path::new(""), children, &mut out, 0)?;
    Ok(out)
}

fn flatten_into(
    dir: &re::Directory,
    at: &Path,
    children: &HashMap<String, re::Directory>,
    out: &mut Vec<(PathBuf, Flat)>,
    depth: usize,
) -> Result<(), TreeError> {
    if depth > 256 {
        return Err(TreeError::TooDeep);
    }
    for f in &dir.files {
        let digest = f
            .digest
            .clone()
            .filter(super::proto::well_formed)
            .ok_or_else(|| TreeError::NoDigest(f.name.clone()))?;
        out.push((
            at.join(safe_name(&f.name)?),
            Flat::File {
                digest,
                executable: f.is_executable,
            },
        ));
    }
    for l in &dir.symlinks {
        out.push((
            at.join(safe_name(&l.name)?),
            Flat::Symlink {
                target: l.target.clone(),
            },
        ));
    }
    for d in &dir.directories {
        let path = at.join(safe_name(&d.name)?);
        let digest = d.digest.clone().unwrap_or_default();
        let child = children
            .get(&digest.hash)
            .ok_or_else(|| TreeError::MissingFolder(path.clone()))?;
        out.push((path.clone(), Flat::Folder));
        flatten_into(child, &path, children, out, depth + 1)?;
    }
    Ok(())
}

/// The folders of a `Tree` message by digest.
pub fn tree_children(tree: &re::Tree) -> HashMap<String, re::Directory> {
    tree.children
        .iter()
        .map(|d| (encode(d).0.hash, d.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::proto::digest_of;

    fn file(content: &[u8]) -> Node {
        Node::File {
            digest: digest_of(content),
            executable: false,
            source: PathBuf::from("/nonexistent"),
        }
    }

    #[test]
    fn a_tree_round_trips_and_is_independent_of_order() {
        let entries = vec![
            (PathBuf::from("b/x.txt"), file(b"x")),
            (PathBuf::from("a.txt"), file(b"a")),
            (
                PathBuf::from("b/link"),
                Node::Symlink {
                    target: "x.txt".into(),
                },
            ),
            (PathBuf::from("c/d/e.txt"), file(b"a")),
        ];
        let mut reversed = entries.clone();
        reversed.reverse();
        let one = build(entries).unwrap();
        let two = build(reversed).unwrap();
        assert_eq!(one.root_digest, two.root_digest);
        let tree = one.to_tree();
        let flat = flatten(tree.root.as_ref().unwrap(), &tree_children(&tree)).unwrap();
        let paths: Vec<_> = flat.iter().map(|(p, _)| p.display().to_string()).collect();
        assert_eq!(
            paths,
            ["a.txt", "b", "b/x.txt", "b/link", "c", "c/d", "c/d/e.txt"]
        );
    }

    #[test]
    fn unsafe_names_from_a_server_are_refused() {
        let root = re::Directory {
            files: vec![re::FileNode {
                name: "../escape".into(),
                digest: Some(digest_of(b"")),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(flatten(&root, &HashMap::new()).is_err());
    }

    #[test]
    fn a_path_cannot_be_a_file_and_a_folder() {
        let err = build(vec![
            (PathBuf::from("a"), file(b"1")),
            (PathBuf::from("a/b"), file(b"2")),
        ])
        .unwrap_err();
        assert!(matches!(err, TreeError::FileAndFolder(_)), "{err}");
        assert_eq!(err.to_string(), "`a/b` is both a file and a folder");
    }
}
