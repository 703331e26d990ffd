//! What the next commit changes: the index against HEAD's tree, folder by folder. A folder
//! whose entry in the index's cache tree (the `TREE` extension git keeps up to date as files
//! are staged) is valid and names HEAD's tree for it is skipped unread: `git commit` writes
//! that very tree, so nothing in it changes. A commit of a few files in a large repository
//! then reads only the trees on the way to them, as `git diff --cached` does, rather than
//! every tree of HEAD.

use super::{Repo, git_error, is_file_entry, to_path};
use crate::error::{Error, Result};
use gix::ObjectId;
use gix::index::entry::{Flags, Mode};
use gix::index::extension::Tree as CachedTree;
use gix::objs::tree::{EntryKind, EntryRef};
use std::path::PathBuf;

/// One folder's look at the index: its entries (every entry whose path starts with
/// `prefix_len` bytes of folder path and a `/`), HEAD's tree for it (`None`: HEAD has no
/// such folder), and the cache tree's record of it.
struct Folder<'a> {
    tree: Option<ObjectId>,
    prefix_len: usize,
    entries: &'a [gix::index::Entry],
    cached: Option<&'a CachedTree>,
}

impl Repo {
    /// Files whose index version differs from HEAD: added, copied, modified, renamed (the new
    /// name), type-changed. Deleted files are not in the list. With no HEAD, everything staged.
    pub fn staged_files(&self) -> Result<Vec<PathBuf>> {
        let index = self.index()?;
        if index.is_sparse() {
            // Folder entries stand for whole trees there: compare entry by entry.
            let base = self.head_as_index()?;
            return Ok(super::changed_entries(&base, &index));
        }
        let head = self
            .inner
            .head_tree_id_or_empty()
            .map_err(|e| Error::Setup(format!("cannot read HEAD: {e}")))?
            .detach();
        let root = Folder {
            tree: (head != super::empty_tree()).then_some(head),
            prefix_len: 0,
            entries: index.entries(),
            cached: index.tree(),
        };
        let mut out = Vec::new();
        self.staged_in(&index, root, &mut out)?;
        Ok(out)
    }

    fn staged_in(
        &self,
        index: &gix::index::State,
        folder: Folder<'_>,
        out: &mut Vec<PathBuf>,
    ) -> Result<()> {
        if vouched_for(&folder) {
            return Ok(());
        }
        let head_tree = match folder.tree {
            Some(id) => Some(self.inner.find_tree(id).map_err(git_error)?),
            None => None,
        };
        let decoded = match &head_tree {
            Some(tree) => Some(tree.decode().map_err(git_error)?),
            None => None,
        };
        let in_head = decoded.as_ref().map_or(&[][..], |d| d.entries.as_slice());
        let entries = folder.entries;
        let mut i = 0;
        while i < entries.len() {
            let path: &[u8] = entries[i].path(index);
            let rest = &path[folder.prefix_len..];
            if let Some(slash) = rest.iter().position(|&b| b == b'/') {
                let name = &rest[..slash];
                let sub_prefix = folder.prefix_len + slash + 1;
                let under = &path[..sub_prefix];
                let end = i + entries[i..]
                    .iter()
                    .position(|e| !<&[u8]>::from(e.path(index)).starts_with(under))
                    .unwrap_or(entries.len() - i);
                let sub = Folder {
                    tree: find(in_head, name, true)
                        .filter(|e| e.mode.kind() == EntryKind::Tree)
                        .map(|e| e.oid.to_owned()),
                    prefix_len: sub_prefix,
                    entries: &entries[i..end],
                    // Kept sorted by name (as gix reads them): a folder of thousands of
                    // folders is not searched once per folder.
                    cached: folder.cached.and_then(|c| {
                        c.children
                            .binary_search_by(|t| t.name.as_slice().cmp(name))
                            .ok()
                            .map(|k| &c.children[k])
                    }),
                };
                self.staged_in(index, sub, out)?;
                i = end;
                continue;
            }
            let entry = &entries[i];
            i += 1;
            // Intent-to-add entries have no content staged: git does not commit them.
            if !is_file_entry(entry) || entry.flags.contains(Flags::INTENT_TO_ADD) {
                continue;
            }
            let same = find(in_head, rest, false).is_some_and(|e| {
                e.oid == entry.id.as_ref() && index_mode(e.mode.kind()) == Some(entry.mode)
            });
            // Conflicted paths appear once per stage, next to each other.
            let listed = out
                .last()
                .is_some_and(|last: &PathBuf| last.as_os_str().as_encoded_bytes() == path);
            if !same && !listed {
                out.push(to_path(path));
            }
        }
        Ok(())
    }
}

/// The entry of a tree named `name` (a folder when `folder`), found by halving: a tree keeps
/// its entries in git's order, by name with each folder's name read as if it ended in `/`.
/// A tree out of that order can only have an entry missed, and so a file listed as staged.
fn find<'t, 'e>(
    entries: &'e [EntryRef<'t>],
    name: &[u8],
    folder: bool,
) -> Option<&'e EntryRef<'t>> {
    entries
        .binary_search_by(|e| git_order(e.filename, e.mode.is_tree(), name, folder))
        .ok()
        .map(|i| &entries[i])
}

/// Two tree entry names in git's order: a folder's name as if it ended in `/`.
fn git_order(a: &[u8], a_folder: bool, b: &[u8], b_folder: bool) -> std::cmp::Ordering {
    // The common length compared at once; only the rest of the longer name, and the `/`,
    // byte by byte.
    let n = a.len().min(b.len());
    a[..n].cmp(&b[..n]).then_with(|| {
        let a = a[n..].iter().chain(a_folder.then_some(&b'/'));
        let b = b[n..].iter().chain(b_folder.then_some(&b'/'));
        a.cmp(b)
    })
}

/// Whether the cache tree says the folder's entries are exactly HEAD's tree for it: valid,
/// the same tree, as many entries as it counted, none of them in conflict.
fn vouched_for(folder: &Folder<'_>) -> bool {
    let (Some(tree), Some(cached)) = (folder.tree, folder.cached) else {
        return false;
    };
    cached.id == tree
        && cached.num_entries.and_then(|n| usize::try_from(n).ok()) == Some(folder.entries.len())
        && folder.entries.iter().all(|e| e.stage_raw() == 0)
}

/// The index's mode for a file of a tree.
fn index_mode(kind: EntryKind) -> Option<Mode> {
    match kind {
        EntryKind::Tree => None,
        EntryKind::Blob => Some(Mode::FILE),
        EntryKind::BlobExecutable => Some(Mode::FILE_EXECUTABLE),
        EntryKind::Link => Some(Mode::SYMLINK),
        EntryKind::Commit => Some(Mode::COMMIT),
    }
}

#[cfg(test)]
mod tests {
    use super::git_order;
    use std::cmp::Ordering::{Equal, Greater, Less};

    #[test]
    fn a_folder_sorts_as_if_its_name_ended_in_a_slash() {
        assert_eq!(git_order(b"m", true, b"m.d", true), Greater);
        assert_eq!(git_order(b"m-x", true, b"m", true), Less);
        assert_eq!(git_order(b"m0", false, b"m", true), Greater);
        assert_eq!(git_order(b"m", false, b"m", true), Less);
        assert_eq!(git_order(b"m.d.txt", false, b"m.d", true), Less);
        assert_eq!(git_order(b"m", true, b"m", true), Equal);
        assert_eq!(git_order(b"one.txt", false, b"one.txt", false), Equal);
        assert_eq!(git_order(b"a", false, b"abc", false), Less);
    }
}
