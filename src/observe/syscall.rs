//! Decoding a path syscall: where its path arguments are, and what its result says about
//! them (read, absent, written, executed). Pure functions, so that the rules are tested
//! without a tracee.

use super::Observation;
use std::collections::{BTreeSet, HashSet};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

/// What a syscall does with its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `open`/`openat`: flags in an argument.
    Open,
    /// `openat2`: flags in the `struct open_how` an argument points to.
    OpenHow,
    /// `creat`: always O_CREAT|O_WRONLY|O_TRUNC (x86_64 only).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Creat,
    /// stat, access: learns whether the path exists and what it is.
    Probe,
    /// readlink: like `Probe`, and EINVAL says the path exists but is no link.
    ReadLink,
    Chdir,
    Fchdir,
    Exec,
    /// unlink, rmdir, truncate, chmod, mknod: changes the path.
    Modify,
    Mkdir,
    /// Both paths change.
    Rename,
    /// The first path is read (its inode gains a name), the second written.
    Link,
    /// The only path is the new link; the target is just a string.
    Symlink,
    /// A step that traces processes itself: what those read is not seen.
    Ptrace,
    /// chroot, pivot_root, mount, move_mount, setns: paths name other files from then on,
    /// in that process, than the tracer finds by the same names.
    NewView,
}

/// Where a path argument is resolved from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// The process's current folder.
    Cwd,
    /// The directory file descriptor in this argument (AT_FDCWD for the current folder).
    Arg(usize),
}

/// How to decode one syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub kind: Kind,
    pub dir: Dir,
    pub path: usize,
    /// The argument holding open flags (`Open`) or the address of `open_how` (`OpenHow`).
    pub flags: Option<usize>,
    /// A second path (rename, link).
    pub second: Option<(Dir, usize)>,
}

impl Call {
    pub const fn new(kind: Kind, dir: Dir, path: usize) -> Self {
        Call {
            kind,
            dir,
            path,
            flags: None,
            second: None,
        }
    }
    pub const fn flags(mut self, arg: usize) -> Self {
        self.flags = Some(arg);
        self
    }
    pub const fn second(mut self, dir: Dir, path: usize) -> Self {
        self.second = Some((dir, path));
        self
    }
    /// Whether the syscall carries a path at all.
    pub fn has_path(&self) -> bool {
        !matches!(self.kind, Kind::Fchdir | Kind::Ptrace | Kind::NewView)
    }
}

/// A trapped syscall, decoded at entry and waiting for its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub kind: Kind,
    /// Open flags (O_*), when the call has them.
    pub open_flags: u64,
    /// The resolved path (absent when it could not be resolved: an empty path, a
    /// descriptor that is no folder).
    pub first: Option<PathBuf>,
    pub second: Option<PathBuf>,
    /// The ptrace request, for `Kind::Ptrace`.
    pub request: u64,
}

/// A syscall's result: its return value, or the errno it failed with.
pub type Result = std::result::Result<i64, i32>;

/// Whether an open with these flags may change the file.
pub fn opens_for_writing(flags: u64) -> bool {
    let flags = flags as libc::c_int;
    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & (libc::O_CREAT | libc::O_TRUNC) != 0
}

/// The flags `creat` implies.
pub const CREAT_FLAGS: u64 = (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC) as u64;

/// Whether an errno says the path does not exist (a probe that must still fail). Any
/// other failure (EACCES, ELOOP, EISDIR, EPERM...) is read as "it is there": the call
/// got as far as the path, and a change to the path (a chmod, a new link target) may
/// change what the step does.
fn missing(errno: i32) -> bool {
    errno == libc::ENOENT || errno == libc::ENOTDIR
}

/// Whether what a finished syscall recorded answers every later call of its kind on the
/// same path: a path read or found absent stays so for a stat; an open must have succeeded
/// (`opened`), as it also names the file behind a link, or found nothing.
pub fn already_known(pending: &Pending, seen: &Observation, opened: &HashSet<PathBuf>) -> bool {
    let Some(path) = pending.first.as_ref() else {
        return false;
    };
    match pending.kind {
        Kind::Probe | Kind::ReadLink => seen.read.contains(path) || seen.absent.contains(path),
        Kind::Open | Kind::OpenHow => {
            !opens_for_writing(pending.open_flags)
                && (opened.contains(path) || seen.absent.contains(path))
        }
        _ => false,
    }
}

/// Reads answered once, by the path's bytes, per kind of read: a later call of the same kind
/// on the same path is let go at its entry (a toolchain stats and opens the same files
/// thousands of times). An answer holds until the step changes the path or what leads to it
/// (`forget`, `forget_under`): a file or link made where nothing was, a folder replaced by a
/// link, a rename.
#[derive(Default)]
pub struct Settled {
    /// By kind of read (`kind_of_read`): a stat, a readlink (which does not follow the link
    /// a later stat follows), an open for reading.
    answered: [BTreeSet<Vec<u8>>; 3],
}

/// Which of `Settled`'s sets answers `pending`: none for a call that may write.
fn kind_of_read(pending: &Pending) -> Option<usize> {
    match pending.kind {
        Kind::Probe => Some(0),
        Kind::ReadLink => Some(1),
        Kind::Open | Kind::OpenHow if !opens_for_writing(pending.open_flags) => Some(2),
        _ => None,
    }
}

impl Settled {
    pub fn contains(&self, pending: &Pending) -> bool {
        match (kind_of_read(pending), &pending.first) {
            (Some(kind), Some(path)) => self.answered[kind].contains(path.as_os_str().as_bytes()),
            _ => false,
        }
    }

    /// Keeps the answer of a finished read, when `already_known` says it holds for later ones.
    pub fn insert(&mut self, pending: &Pending) {
        if let (Some(kind), Some(path)) = (kind_of_read(pending), &pending.first) {
            self.answered[kind].insert(path.as_os_str().as_bytes().to_vec());
        }
    }

    /// The step made or truncated `path`: what was known of it may no longer hold.
    pub fn forget(&mut self, path: &Path) {
        let bytes = path.as_os_str().as_bytes();
        for set in &mut self.answered {
            set.remove(bytes);
        }
    }

    /// The step removed, renamed or made a link at `path`: what was known of it and of
    /// every path under it may no longer hold (a folder that is now a link leads elsewhere).
    pub fn forget_under(&mut self, path: &Path) {
        let folder = path.as_os_str().as_bytes();
        if folder == b"/" {
            *self = Settled::default();
            return;
        }
        // By bytes, `folder` and `folder/...` are two runs: `folder.txt` sorts between.
        let mut below = folder.to_vec();
        below.push(b'/');
        let mut past = folder.to_vec();
        past.push(b'/' + 1);
        for set in &mut self.answered {
            set.remove(folder);
            let under: Vec<Vec<u8>> = set.range(below.clone()..past.clone()).cloned().collect();
            for known in under {
                set.remove(&known);
            }
        }
    }
}

/// Records what a finished syscall says about its paths. Returns true when the current
/// folder of some process may have changed.
pub fn record(pending: &Pending, result: Result, into: &mut Observation) -> bool {
    let Some(first) = pending.first.clone() else {
        // A link made from a descriptor (linkat with an empty path) names only its new path.
        if let (Kind::Link, Some(second), Ok(_)) = (pending.kind, &pending.second, result) {
            into.written.insert(second.clone());
        }
        return pending.kind == Kind::Fchdir && result.is_ok();
    };
    match pending.kind {
        Kind::Open | Kind::OpenHow | Kind::Creat => {
            let writes = opens_for_writing(pending.open_flags);
            match result {
                Ok(_) if writes => {
                    into.written.insert(first);
                }
                Ok(_) => {
                    into.read.insert(first);
                }
                Err(e) if missing(e) => {
                    into.absent.insert(first);
                }
                Err(_) => {
                    into.read.insert(first);
                }
            }
        }
        Kind::Probe | Kind::ReadLink | Kind::Chdir => match result {
            Ok(_) => {
                into.read.insert(first);
                return pending.kind == Kind::Chdir;
            }
            Err(e) if missing(e) => {
                into.absent.insert(first);
            }
            Err(_) => {
                into.read.insert(first);
            }
        },
        Kind::Exec => match result {
            Ok(_) => {
                into.read.insert(first.clone());
                into.executed.insert(first);
            }
            Err(e) if missing(e) => {
                into.absent.insert(first);
            }
            Err(_) => {
                into.read.insert(first);
            }
        },
        Kind::Modify | Kind::Mkdir | Kind::Symlink => match result {
            Ok(_) => {
                into.written.insert(first);
            }
            Err(e) if missing(e) && pending.kind == Kind::Modify => {
                into.absent.insert(first);
            }
            Err(e) if missing(e) => {}
            Err(_) => {
                into.read.insert(first);
            }
        },
        Kind::Rename | Kind::Link => match result {
            Ok(_) => {
                if pending.kind == Kind::Rename {
                    into.written.insert(first);
                } else {
                    into.read.insert(first);
                }
                if let Some(second) = pending.second.clone() {
                    into.written.insert(second);
                }
            }
            Err(e) if missing(e) => {
                into.absent.insert(first);
            }
            Err(_) => {
                into.read.insert(first);
            }
        },
        Kind::Fchdir | Kind::Ptrace | Kind::NewView => {}
    }
    false
}

/// `base` joined with `path`, with `.` and `..` resolved lexically. `base` must be absolute.
pub fn absolute(base: &Path, path: &Path) -> PathBuf {
    let joined = base.join(path);
    if is_normal(joined.as_os_str().as_bytes()) {
        return joined;
    }
    let mut out = PathBuf::from("/");
    for component in joined.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Whether a path is already what `absolute` makes of it (most are): `/` alone, or
/// `/name` repeated, no name empty, `.` or `..`.
fn is_normal(path: &[u8]) -> bool {
    match path {
        [b'/'] => true,
        [b'/', rest @ ..] => rest
            .split(|&b| b == b'/')
            .all(|name| !matches!(name, b"" | b"." | b"..")),
        _ => false,
    }
}

/// The interpreter a `#!` line names (the kernel runs it without a syscall of its own).
pub fn shebang_interpreter(head: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|&b| b == b'\n').next()?;
    let start = line.iter().position(|b| !b.is_ascii_whitespace())?;
    let word = &line[start..];
    let end = word
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(word.len());
    let interpreter = Path::new(std::ffi::OsStr::from_bytes(&word[..end]));
    interpreter.is_absolute().then(|| interpreter.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(kind: Kind, flags: i32, path: &str) -> Pending {
        Pending {
            kind,
            open_flags: flags as u64,
            first: Some(PathBuf::from(path)),
            second: None,
            request: 0,
        }
    }

    #[test]
    fn an_open_is_a_read_an_absence_or_a_write_by_flags_and_result() {
        let mut o = Observation::default();
        record(&pending(Kind::Open, libc::O_RDONLY, "/r/a"), Ok(3), &mut o);
        record(
            &pending(Kind::Open, libc::O_RDONLY, "/r/missing"),
            Err(libc::ENOENT),
            &mut o,
        );
        record(
            &pending(Kind::Open, libc::O_RDONLY, "/r/f/x"),
            Err(libc::ENOTDIR),
            &mut o,
        );
        record(
            &pending(Kind::Open, libc::O_RDONLY, "/r/secret"),
            Err(libc::EACCES),
            &mut o,
        );
        let create = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC;
        record(&pending(Kind::Open, create, "/r/out"), Ok(4), &mut o);
        record(&pending(Kind::Open, libc::O_RDWR, "/r/db"), Ok(5), &mut o);
        record(
            &pending(
                Kind::Open,
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                "/r/lock",
            ),
            Err(libc::EEXIST),
            &mut o,
        );
        let set = |s: &[&str]| s.iter().map(PathBuf::from).collect();
        assert_eq!(o.read, set(&["/r/a", "/r/lock", "/r/secret"]));
        assert_eq!(o.absent, set(&["/r/missing", "/r/f/x"]));
        assert_eq!(o.written, set(&["/r/out", "/r/db"]));
    }

    #[test]
    fn probes_execs_and_changes_are_told_apart() {
        let mut o = Observation::default();
        record(
            &pending(Kind::Probe, 0, "/r/.cfg"),
            Err(libc::ENOENT),
            &mut o,
        );
        record(&pending(Kind::Probe, 0, "/r/dir"), Ok(0), &mut o);
        record(&pending(Kind::Exec, 0, "/bin/sh"), Ok(0), &mut o);
        record(
            &pending(Kind::Exec, 0, "/usr/local/bin/sh"),
            Err(libc::ENOENT),
            &mut o,
        );
        record(&pending(Kind::Modify, 0, "/r/gone"), Ok(0), &mut o);
        record(
            &pending(Kind::Mkdir, 0, "/r/dir"),
            Err(libc::EEXIST),
            &mut o,
        );
        let mut rename = pending(Kind::Rename, 0, "/r/tmp");
        rename.second = Some(PathBuf::from("/r/final"));
        record(&rename, Ok(0), &mut o);
        assert!(o.absent.contains(Path::new("/r/.cfg")));
        assert!(o.absent.contains(Path::new("/usr/local/bin/sh")));
        assert!(o.read.contains(Path::new("/r/dir")));
        assert!(o.executed.contains(Path::new("/bin/sh")));
        assert!(o.read.contains(Path::new("/bin/sh")));
        for written in ["/r/gone", "/r/tmp", "/r/final"] {
            assert!(o.written.contains(Path::new(written)), "{written}");
        }
    }

    #[test]
    fn a_readlink_of_a_file_that_is_no_link_is_a_read() {
        let mut o = Observation::default();
        record(
            &pending(Kind::ReadLink, 0, "/r/file"),
            Err(libc::EINVAL),
            &mut o,
        );
        record(
            &pending(Kind::ReadLink, 0, "/r/none"),
            Err(libc::ENOENT),
            &mut o,
        );
        assert!(o.read.contains(Path::new("/r/file")));
        assert!(o.absent.contains(Path::new("/r/none")));
    }

    #[test]
    fn a_failure_that_is_no_absence_says_the_path_is_there() {
        let mut o = Observation::default();
        for (kind, errno, path) in [
            (Kind::Probe, libc::EACCES, "/r/not-executable"),
            (Kind::Probe, libc::ELOOP, "/r/loop"),
            (Kind::Probe, libc::EINVAL, "/r/odd-flags"),
            (Kind::Exec, libc::EACCES, "/r/script"),
            (Kind::Exec, libc::ETXTBSY, "/r/busy"),
            (Kind::Open, libc::EISDIR, "/r/folder"),
            (Kind::Modify, libc::EPERM, "/r/immutable"),
            (Kind::Mkdir, libc::EEXIST, "/r/made"),
        ] {
            record(&pending(kind, 0, path), Err(errno), &mut o);
            assert!(o.read.contains(Path::new(path)), "{path}");
        }
        record(
            &pending(Kind::Mkdir, 0, "/r/no/made"),
            Err(libc::ENOENT),
            &mut o,
        );
        assert!(o.absent.is_empty(), "{:?}", o.absent);
    }

    #[test]
    fn only_reads_of_paths_already_seen_skip_their_result() {
        let mut o = Observation::default();
        o.read.insert(PathBuf::from("/r/a"));
        o.read.insert(PathBuf::from("/r/link"));
        o.absent.insert(PathBuf::from("/r/none"));
        let opened: HashSet<PathBuf> = [PathBuf::from("/r/a")].into();
        assert!(already_known(&pending(Kind::Probe, 0, "/r/a"), &o, &opened));
        assert!(already_known(
            &pending(Kind::Open, libc::O_RDONLY, "/r/a"),
            &o,
            &opened
        ));
        assert!(already_known(
            &pending(Kind::Open, libc::O_RDONLY, "/r/none"),
            &o,
            &opened
        ));
        // Stat'ed but never opened: the open may lead through a link to another file.
        assert!(!already_known(
            &pending(Kind::Open, libc::O_RDONLY, "/r/link"),
            &o,
            &opened
        ));
        assert!(!already_known(
            &pending(Kind::Probe, 0, "/r/new"),
            &o,
            &opened
        ));
        assert!(!already_known(
            &pending(Kind::Open, libc::O_WRONLY, "/r/a"),
            &o,
            &opened
        ));
        assert!(!already_known(
            &pending(Kind::Chdir, 0, "/r/a"),
            &o,
            &opened
        ));
        assert!(!already_known(&pending(Kind::Exec, 0, "/r/a"), &o, &opened));
    }

    #[test]
    fn a_settled_read_stays_settled_until_the_path_is_written() {
        let mut settled = Settled::default();
        let probe = pending(Kind::Probe, 0, "/r/a");
        let open = pending(Kind::Open, libc::O_RDONLY, "/r/a");
        settled.insert(&probe);
        assert!(settled.contains(&probe));
        assert!(!settled.contains(&pending(Kind::ReadLink, 0, "/r/a")));
        // A stat says nothing of what an open through a link reaches.
        assert!(!settled.contains(&open));
        settled.insert(&open);
        assert!(settled.contains(&open));
        let write = pending(Kind::Open, libc::O_WRONLY, "/r/a");
        settled.insert(&write);
        assert!(!settled.contains(&write));
        assert!(!settled.contains(&pending(Kind::Exec, 0, "/r/a")));
        settled.forget(Path::new("/r/a"));
        assert!(!settled.contains(&probe));
        assert!(!settled.contains(&open));
    }

    #[test]
    fn a_folder_changed_unsettles_everything_under_it() {
        let mut settled = Settled::default();
        for path in ["/r/pkg", "/r/pkg/lib.txt", "/r/pkg/a/b", "/r/pkg2/x", "/r/p"] {
            settled.insert(&pending(Kind::Probe, 0, path));
        }
        settled.forget_under(Path::new("/r/pkg"));
        let left: Vec<bool> = ["/r/pkg", "/r/pkg/lib.txt", "/r/pkg/a/b", "/r/pkg2/x", "/r/p"]
            .iter()
            .map(|path| settled.contains(&pending(Kind::Probe, 0, path)))
            .collect();
        assert_eq!(left, [false, false, false, true, true]);
        settled.forget_under(Path::new("/"));
        assert!(!settled.contains(&pending(Kind::Probe, 0, "/r/p")));
    }

    #[test]
    fn a_chdir_says_the_folder_changed() {
        let mut o = Observation::default();
        assert!(record(&pending(Kind::Chdir, 0, "/r/sub"), Ok(0), &mut o));
        assert!(!record(
            &pending(Kind::Chdir, 0, "/r/no"),
            Err(libc::ENOENT),
            &mut o
        ));
        let mut fchdir = pending(Kind::Fchdir, 0, "/");
        fchdir.first = None;
        assert!(record(&fchdir, Ok(0), &mut o));
    }

    #[test]
    fn paths_are_normalised_lexically() {
        let base = Path::new("/repo/sub");
        assert_eq!(
            absolute(base, Path::new("a/./b")),
            Path::new("/repo/sub/a/b")
        );
        assert_eq!(absolute(base, Path::new("../x")), Path::new("/repo/x"));
        assert_eq!(
            absolute(base, Path::new("/etc//passwd")),
            Path::new("/etc/passwd")
        );
        assert_eq!(absolute(base, Path::new("../../../..")), Path::new("/"));
        assert_eq!(absolute(base, Path::new(".")), Path::new("/repo/sub"));
        assert_eq!(absolute(base, Path::new("a/")), Path::new("/repo/sub/a"));
        assert_eq!(absolute(base, Path::new("a/..")), Path::new("/repo/sub"));
        assert_eq!(absolute(base, Path::new("/")), Path::new("/"));
        assert_eq!(absolute(base, Path::new("//x")), Path::new("/x"));
        assert_eq!(absolute(base, Path::new("/x/.y")), Path::new("/x/.y"));
    }

    #[test]
    fn a_shebang_names_its_interpreter() {
        assert_eq!(
            shebang_interpreter(b"#!/bin/sh\necho"),
            Some("/bin/sh".into())
        );
        assert_eq!(
            shebang_interpreter(b"#! /usr/bin/env python3\n"),
            Some("/usr/bin/env".into())
        );
        assert_eq!(shebang_interpreter(b"\x7fELF"), None);
        assert_eq!(shebang_interpreter(b"#!relative\n"), None);
    }
}
