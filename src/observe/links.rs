//! Following a path through its symbolic links the way the kernel does, from the tracer:
//! a stat, an exec or an open that failed tells only about the path as written, but what
//! the step depends on is every link on the way and what the last one leads to (a file
//! that is there, or one that is not: a dangling `.env -> .env.local`).

use super::syscall;
use std::collections::{BTreeSet, VecDeque};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Links the kernel follows before giving up with ELOOP.
const MAX_LINKS: usize = 40;

/// Where a path leads.
#[derive(Debug, PartialEq, Eq)]
pub struct Followed {
    /// Every symbolic link on the way, in the order followed.
    pub links: Vec<PathBuf>,
    /// The path with every link replaced by what it names; `exists` says whether it is there.
    pub target: PathBuf,
    pub exists: bool,
}

/// Follows `path` (absolute, normalised) through its links. None when it holds none (the
/// path is its own target), when it is under /proc or /dev or leads there (whose links
/// differ per process), or when a folder on the way cannot be read. `real_dirs` remembers
/// folders found to be no links, so that each is looked at once.
pub fn follow(path: &Path, real_dirs: &mut BTreeSet<PathBuf>) -> Option<Followed> {
    if path.starts_with("/proc") || path.starts_with("/dev") {
        return None;
    }
    let mut todo: VecDeque<OsString> = names(path).collect();
    let mut at = PathBuf::from("/");
    let mut links = Vec::new();
    while let Some(name) = todo.pop_front() {
        // A link into /proc or /dev leads somewhere else for each process.
        if at.starts_with("/proc") || at.starts_with("/dev") {
            return None;
        }
        if name == ".." {
            at.pop();
            continue;
        }
        let next = at.join(&name);
        if real_dirs.contains(&next) {
            at = next;
            continue;
        }
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if links.len() == MAX_LINKS {
                    return None;
                }
                let target = std::fs::read_link(&next).ok()?;
                links.push(next);
                if target.is_absolute() {
                    at = PathBuf::from("/");
                }
                for (i, name) in names(&target).enumerate() {
                    todo.insert(i, name);
                }
            }
            Ok(meta) => {
                if meta.is_dir() {
                    real_dirs.insert(next.clone());
                }
                at = next;
            }
            Err(e) if gone(&e) => {
                let rest: PathBuf = todo.iter().collect();
                let target = syscall::absolute(&next, &rest);
                return (!links.is_empty()).then_some(Followed {
                    links,
                    target,
                    exists: false,
                });
            }
            Err(_) => return None,
        }
    }
    (!links.is_empty()).then_some(Followed {
        links,
        target: at,
        exists: true,
    })
}

/// Whether no folder on the way to `folder` (absolute, normalised), itself included, is a
/// symbolic link: each is a real folder, up to one that is missing or no folder (nothing
/// under that is a link either). `real_dirs` remembers the real folders found.
pub fn has_no_link_on_the_way(folder: &Path, real_dirs: &mut BTreeSet<PathBuf>) -> bool {
    let mut at = PathBuf::from("/");
    for name in folder.components().skip(1) {
        at.push(name);
        if real_dirs.contains(&at) {
            continue;
        }
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => {
                real_dirs.insert(at.clone());
            }
            Ok(meta) => return !meta.file_type().is_symlink(),
            Err(e) => return gone(&e),
        }
    }
    true
}

/// Drops `path` and every path under it from `set`. In a path's order (name by name) they
/// come together, right from `path` on.
pub fn remove_under(set: &mut BTreeSet<PathBuf>, path: &Path) {
    let under: Vec<PathBuf> = set
        .range::<Path, _>((std::ops::Bound::Included(path), std::ops::Bound::Unbounded))
        .take_while(|known| known.starts_with(path))
        .cloned()
        .collect();
    for known in under {
        set.remove(&known);
    }
}

fn gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// The names in a path, `..` kept (a link's target is resolved from the link's folder).
fn names(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(name) => Some(name.to_owned()),
        Component::ParentDir => Some("..".into()),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_on_the_way_and_the_last_target_are_found() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        std::fs::write(root.join("real/sub/f"), "").unwrap();
        symlink("real", root.join("dir")).unwrap();
        symlink("sub/f", root.join("real/file")).unwrap();
        symlink(".env.local", root.join(".env")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        let mut dirs = BTreeSet::new();
        let followed = follow(&root.join("dir/file"), &mut dirs).unwrap();
        assert_eq!(
            followed,
            Followed {
                links: vec![root.join("dir"), root.join("real/file")],
                target: root.join("real/sub/f"),
                exists: true,
            }
        );
        let dangling = follow(&root.join(".env"), &mut dirs).unwrap();
        assert_eq!(dangling.target, root.join(".env.local"));
        assert!(!dangling.exists);
        let missing = follow(&root.join("dir/none/deeper"), &mut dirs).unwrap();
        assert_eq!(missing.target, root.join("real/none/deeper"));
        assert!(!missing.exists);
        assert_eq!(follow(&root.join("real/sub/f"), &mut dirs), None);
        assert_eq!(follow(&root.join("loop"), &mut dirs), None);
        assert_eq!(follow(Path::new("/proc/self/exe"), &mut dirs), None);
        symlink("/proc/self/cwd", root.join("here")).unwrap();
        assert_eq!(follow(&root.join("here/x"), &mut dirs), None);
        let mut fresh = BTreeSet::new();
        assert!(has_no_link_on_the_way(&root.join("real/sub"), &mut dirs));
        assert!(!has_no_link_on_the_way(&root.join("dir/sub"), &mut fresh));
        assert!(has_no_link_on_the_way(&root.join("real/sub/f/x"), &mut fresh));
        assert!(has_no_link_on_the_way(&root.join("none/deeper"), &mut fresh));
        assert!(!has_no_link_on_the_way(&root.join("real/file"), &mut fresh));
        assert!(!has_no_link_on_the_way(&root.join(".env/x"), &mut fresh));
        let mut set: BTreeSet<PathBuf> = ["/r/p", "/r/p/a", "/r/p/a/b", "/r/p.txt", "/r/p2", "/r/o"]
            .iter()
            .map(PathBuf::from)
            .collect();
        remove_under(&mut set, Path::new("/r/p"));
        let left: Vec<&str> = set.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(left, ["/r/o", "/r/p.txt", "/r/p2"]);
    }
}
