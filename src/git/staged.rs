//! What the next commit changes: the index against HEAD's tree, folder by folder. A folder
//! whose entry in the index's cache tree (the `TREE` extension git keeps up to date as files
//! are staged) is valid and names HEAD's tree for it is skipped unread: `git commit` writes
//! that very tree, so nothing in it changes. A commit of a few files in a large repository
//! then reads only the trees on the way to them, as `git diff --cached` does, rather than
//! every tree of HEAD.

use super::{Repo, git_error, to_path};
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
    ///
    /// A staged change git keeps out of the work tree (skip-worktree: outside a sparse
    /// checkout) cannot be checked by any step: it is an error, unless the commit brings in
    /// another commit (`merging`, or a merge, a cherry-pick or a revert being concluded),
    /// whose changes git stages there without them being the user's edits.
    pub fn staged_files(&self, merging: bool) -> Result<Vec<PathBuf>> {
        let index = self.index()?;
        // Asked only of a staged change that is out of the work tree, which is rare.
        let allowed = std::cell::OnceCell::new();
        let hidden_allowed = || *allowed.get_or_init(|| merging || self.bringing_in_a_commit());
        if index.is_sparse() {
            // Folder entries stand for whole trees there: compare entry by entry.
            let base = self.head_as_index()?;
            if let Some(path) = self.staged_out_of_the_work_tree(&base, &index)?
                && !hidden_allowed()
            {
                return Err(skipped_by_the_work_tree(&path));
            }
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
        self.staged_in(&index, root, &hidden_allowed, &mut out)?;
        Ok(out)
    }

    /// Whether the commit being made brings in another one: a merge, a cherry-pick or a
    /// revert being concluded.
    fn bringing_in_a_commit(&self) -> bool {
        ["MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD"]
            .iter()
            .any(|head| self.git_dir().join(head).exists())
    }

    /// In a sparse index, the first path whose staged version git keeps out of the work tree
    /// while it differs from HEAD: a skip-worktree file, or a folder left out of the sparse
    /// checkout whose tree is not HEAD's (`git sparse-checkout reapply` folds a staged change
    /// into it).
    fn staged_out_of_the_work_tree(
        &self,
        base: &gix::index::State,
        index: &gix::index::State,
    ) -> Result<Option<Vec<u8>>> {
        let head = self.inner.head_tree().ok();
        for entry in index.entries() {
            let path: &[u8] = entry.path(index);
            if !entry.flags.contains(Flags::SKIP_WORKTREE)
                || entry.flags.contains(Flags::INTENT_TO_ADD)
            {
                continue;
            }
            let same = if entry.mode.is_sparse() {
                let folder = to_path(path.strip_suffix(b"/").unwrap_or(path));
                let in_head = match &head {
                    Some(tree) => tree.lookup_entry_by_path(&folder).map_err(git_error)?,
                    None => None,
                };
                in_head.is_some_and(|e| e.mode().is_tree() && e.object_id() == entry.id)
            } else if is_file_mode(entry.mode) {
                base.entry_by_path(path.into())
                    .is_some_and(|b| b.id == entry.id && b.mode == entry.mode)
            } else {
                true
            };
            if !same {
                return Ok(Some(path.to_vec()));
            }
        }
        Ok(None)
    }

    /// The staged files of `folder`, added to `out`; a staged skip-worktree file is an error
    /// unless `hidden_allowed()`.
    fn staged_in(
        &self,
        index: &gix::index::State,
        folder: Folder<'_>,
        hidden_allowed: &dyn Fn() -> bool,
        out: &mut Vec<PathBuf>,
    ) -> Result<()> {
        if vouched_for(&folder) {
            return Ok(());
        }
        let head_tree = folder
            .tree
            .map(|id| self.inner.find_tree(id))
            .transpose()
            .map_err(git_error)?;
        let decoded = head_tree
            .as_ref()
            .map(|tree| tree.decode())
            .transpose()
            .map_err(git_error)?;
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
                self.staged_in(index, sub, hidden_allowed, out)?;
                i = end;
                continue;
            }
            let entry = &entries[i];
            i += 1;
            // Intent-to-add entries have no content staged: git does not commit them.
            // Skip-worktree entries are judged below, once known to be staged.
            if !is_file_mode(entry.mode) || entry.flags.contains(Flags::INTENT_TO_ADD) {
                continue;
            }
            let same = find(in_head, rest, false).is_some_and(|e| {
                e.oid == entry.id.as_ref() && index_mode(e.mode.kind()) == Some(entry.mode)
            });
            if same {
                continue;
            }
            if entry.flags.contains(Flags::SKIP_WORKTREE) {
                // What is staged for it is not in the work tree: no step could check it.
                if hidden_allowed() {
                    continue;
                }
                return Err(skipped_by_the_work_tree(path));
            }
            // Conflicted paths appear once per stage, next to each other.
            let listed = out
                .last()
                .is_some_and(|last: &PathBuf| last.as_os_str().as_encoded_bytes() == path);
            if !listed {
                out.push(to_path(path));
            }
        }
        Ok(())
    }
}

/// A file (or link) entry, as opposed to a gitlink or a sparse folder.
fn is_file_mode(mode: Mode) -> bool {
    matches!(mode, Mode::FILE | Mode::FILE_EXECUTABLE | Mode::SYMLINK)
}

/// The error for a staged change git keeps out of the work tree (`skip-worktree`, as a
/// sparse checkout marks the files it leaves out).
fn skipped_by_the_work_tree(path: &[u8]) -> Error {
    let path = String::from_utf8_lossy(path);
    Error::Setup(format!(
        "`{path}` has a staged change, but git keeps it out of the work tree (skip-worktree), \
         so no step can check what is staged for it"
    ))
    .hint(format!(
        "`git update-index --no-skip-worktree {path}` (or add its folder to the sparse \
         checkout), then commit again"
    ))
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

/// `staged_files` against `git diff --cached` over random repositories whose names sort
/// differently in a tree than byte by byte (`a-b`, `a.c`, `a0`, `a/`), with bytes below
/// `/` and above ASCII, executables, symlinks, gitlinks, deletions, a file become a folder
/// and back, partial staging, and a cache tree made valid again at random.
#[cfg(test)]
mod against_git {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::process::{Command, Output};

    /// xorshift64: the same repositories on every run, for any seed.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    const NAMES: &[&[u8]] = &[
        b"a",
        b"a-b",
        b"a.c",
        b"a0",
        b"ab",
        b"a b",
        b"\x01",
        b"a\x01",
        b"m",
        b"m.d",
        b"m-x",
        b"a~",
        b"a\xc3\xa9",
        b"a\xff",
        b"\xff",
        b"Z",
        b"a!",
    ];

    fn git_output(dir: &Path, args: &[&str]) -> Output {
        Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git runs")
    }

    fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
        let out = git_output(dir, args);
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn random_path(rng: &mut Rng) -> Vec<u8> {
        let depth = 1 + rng.below(3);
        let names: Vec<&[u8]> = (0..depth).map(|_| NAMES[rng.below(NAMES.len())]).collect();
        names.join(&b'/')
    }

    fn remove(path: &Path) {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).unwrap(),
            Ok(_) => std::fs::remove_file(path).unwrap(),
            Err(_) => {}
        }
    }

    /// Puts a file (`kind` 0), an executable (1) or a symlink (2) at `rel`, removing a file
    /// where a folder must go and whatever is at `rel`.
    fn put(root: &Path, rel: &[u8], content: &[u8], kind: usize) {
        let path = root.join(OsStr::from_bytes(rel));
        let folders: Vec<&Path> = path
            .ancestors()
            .skip(1)
            .take_while(|a| *a != root)
            .collect();
        for folder in folders.into_iter().rev() {
            if std::fs::symlink_metadata(folder).is_ok_and(|m| !m.is_dir()) {
                std::fs::remove_file(folder).unwrap();
            }
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        remove(&path);
        match kind {
            0 => std::fs::write(&path, content).unwrap(),
            1 => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::write(&path, content).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            _ => std::os::unix::fs::symlink(OsStr::from_bytes(content), &path).unwrap(),
        }
    }

    /// What git says the next commit changes: no deletions, no gitlinks (preflight hands
    /// steps files only), renames as deletion and addition.
    fn staged_by_git(root: &Path) -> Vec<Vec<u8>> {
        let raw = git(root, &["diff", "--cached", "--raw", "-z", "--no-renames"]);
        let mut fields = raw.split(|&b| b == 0);
        let mut out = Vec::new();
        while let Some(meta) = fields.next().filter(|m| !m.is_empty()) {
            let path = fields.next().unwrap().to_vec();
            let meta = String::from_utf8_lossy(meta);
            let meta: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
            if meta[4] != "D" && meta[1] != "160000" {
                out.push(path);
            }
        }
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn the_staged_files_are_what_git_diff_cached_lists() {
        for seed in 1..=40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            git(root, &["init", "-q"]);
            for k in 0..3 + rng.below(25) {
                let path = random_path(&mut rng);
                put(root, &path, format!("c{k}").as_bytes(), rng.below(3));
            }
            git(root, &["add", "-A"]);
            if rng.below(3) == 0 {
                // A gitlink, when its name is free (not a file's folder, not a folder).
                let path = String::from_utf8_lossy(&random_path(&mut rng)).into_owned();
                let info = format!("160000,{},{path}", "1".repeat(40));
                git_output(root, &["update-index", "--add", "--cacheinfo", &info]);
            }
            git(root, &["commit", "-q", "--allow-empty", "-m", "one"]);
            for _ in 0..1 + rng.below(3) {
                for k in 0..1 + rng.below(6) {
                    let path = random_path(&mut rng);
                    match rng.below(4) {
                        3 => remove(&root.join(OsStr::from_bytes(&path))),
                        kind => put(root, &path, format!("d{k}").as_bytes(), kind % 3),
                    }
                }
                match rng.below(2) {
                    0 => git(root, &["add", "-A"]),
                    // Part of the changes only (a pathspec that matches nothing is refused).
                    _ => git_output(root, &["add", "-A", "--", "a", "m"]).stdout,
                };
                if rng.below(3) == 0 {
                    git(root, &["write-tree"]);
                }
            }
            let repo = crate::git::discover(root).unwrap();
            let mut found: Vec<Vec<u8>> = repo
                .staged_files(false)
                .unwrap()
                .iter()
                .map(|p| p.as_os_str().as_bytes().to_vec())
                .collect();
            found.sort();
            let show = |paths: Vec<&Vec<u8>>| -> Vec<String> {
                paths
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect()
            };
            let wanted = staged_by_git(root);
            let missing = show(wanted.iter().filter(|p| !found.contains(p)).collect());
            let extra = show(found.iter().filter(|p| !wanted.contains(p)).collect());
            assert!(
                missing.is_empty() && extra.is_empty(),
                "seed {seed}: missing {missing:?}, extra {extra:?}, in {}",
                dir.keep().display()
            );
        }
    }
}
