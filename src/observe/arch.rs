//! What differs between the architectures preflight observes on: the audit arch a seccomp
//! filter checks, and which syscall numbers take paths and how. x86_64 keeps the old
//! path syscalls (`open`, `stat`, ...); aarch64 has only the `*at` forms.

use super::syscall::{Call, Dir, Kind};

/// `AUDIT_ARCH_*` of the native ABI: any other (32-bit `int 0x80` on x86_64) is not decoded.
#[cfg(target_arch = "x86_64")]
pub const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
pub const AUDIT_ARCH: u32 = 0xc000_00b7;

/// Syscall numbers at or above this are another ABI sharing the arch (x32 on x86_64).
#[cfg(target_arch = "x86_64")]
pub const FOREIGN_NR_FLOOR: Option<u32> = Some(0x4000_0000);
#[cfg(target_arch = "aarch64")]
pub const FOREIGN_NR_FLOOR: Option<u32> = None;

/// A syscall number as the filter and `PTRACE_GET_SYSCALL_INFO` give it.
fn nr(n: libc::c_long) -> u64 {
    n as u64
}

/// Every syscall that takes a path, with how to read it. The filter traps exactly these.
pub fn calls() -> Vec<(u64, Call)> {
    use Dir::{Arg, Cwd};
    let mut calls = vec![
        (
            nr(libc::SYS_openat),
            Call::new(Kind::Open, Arg(0), 1).flags(2),
        ),
        (
            nr(libc::SYS_openat2),
            Call::new(Kind::OpenHow, Arg(0), 1).flags(2),
        ),
        (nr(libc::SYS_newfstatat), Call::new(Kind::Probe, Arg(0), 1)),
        (nr(libc::SYS_statx), Call::new(Kind::Probe, Arg(0), 1)),
        (nr(libc::SYS_faccessat), Call::new(Kind::Probe, Arg(0), 1)),
        (nr(libc::SYS_faccessat2), Call::new(Kind::Probe, Arg(0), 1)),
        (
            nr(libc::SYS_readlinkat),
            Call::new(Kind::ReadLink, Arg(0), 1),
        ),
        (nr(libc::SYS_chdir), Call::new(Kind::Chdir, Cwd, 0)),
        (nr(libc::SYS_fchdir), Call::new(Kind::Fchdir, Cwd, 0)),
        (nr(libc::SYS_execve), Call::new(Kind::Exec, Cwd, 0)),
        (nr(libc::SYS_execveat), Call::new(Kind::Exec, Arg(0), 1)),
        (nr(libc::SYS_unlinkat), Call::new(Kind::Modify, Arg(0), 1)),
        (nr(libc::SYS_mkdirat), Call::new(Kind::Mkdir, Arg(0), 1)),
        (nr(libc::SYS_mknodat), Call::new(Kind::Modify, Arg(0), 1)),
        (nr(libc::SYS_fchmodat), Call::new(Kind::Modify, Arg(0), 1)),
        (nr(libc::SYS_truncate), Call::new(Kind::Modify, Cwd, 0)),
        (
            nr(libc::SYS_renameat),
            Call::new(Kind::Rename, Arg(0), 1).second(Arg(2), 3),
        ),
        (
            nr(libc::SYS_renameat2),
            Call::new(Kind::Rename, Arg(0), 1).second(Arg(2), 3),
        ),
        (
            nr(libc::SYS_linkat),
            Call::new(Kind::Link, Arg(0), 1).second(Arg(2), 3),
        ),
        (nr(libc::SYS_symlinkat), Call::new(Kind::Symlink, Arg(1), 2)),
        (nr(libc::SYS_ptrace), Call::new(Kind::Ptrace, Cwd, 0)),
        (nr(libc::SYS_chroot), Call::new(Kind::NewView, Cwd, 0)),
        (nr(libc::SYS_pivot_root), Call::new(Kind::NewView, Cwd, 0)),
        (nr(libc::SYS_mount), Call::new(Kind::NewView, Cwd, 0)),
        (nr(libc::SYS_move_mount), Call::new(Kind::NewView, Cwd, 0)),
        (nr(libc::SYS_setns), Call::new(Kind::NewView, Cwd, 0)),
    ];
    calls.extend(legacy_calls());
    calls
}

#[cfg(target_arch = "x86_64")]
fn legacy_calls() -> Vec<(u64, Call)> {
    use Dir::Cwd;
    vec![
        (nr(libc::SYS_open), Call::new(Kind::Open, Cwd, 0).flags(1)),
        (nr(libc::SYS_creat), Call::new(Kind::Creat, Cwd, 0)),
        (nr(libc::SYS_stat), Call::new(Kind::Probe, Cwd, 0)),
        (nr(libc::SYS_lstat), Call::new(Kind::Probe, Cwd, 0)),
        (nr(libc::SYS_access), Call::new(Kind::Probe, Cwd, 0)),
        (nr(libc::SYS_readlink), Call::new(Kind::ReadLink, Cwd, 0)),
        (nr(libc::SYS_unlink), Call::new(Kind::Modify, Cwd, 0)),
        (nr(libc::SYS_rmdir), Call::new(Kind::Modify, Cwd, 0)),
        (nr(libc::SYS_mkdir), Call::new(Kind::Mkdir, Cwd, 0)),
        (nr(libc::SYS_mknod), Call::new(Kind::Modify, Cwd, 0)),
        (nr(libc::SYS_chmod), Call::new(Kind::Modify, Cwd, 0)),
        (
            nr(libc::SYS_rename),
            Call::new(Kind::Rename, Cwd, 0).second(Cwd, 1),
        ),
        (
            nr(libc::SYS_link),
            Call::new(Kind::Link, Cwd, 0).second(Cwd, 1),
        ),
        (nr(libc::SYS_symlink), Call::new(Kind::Symlink, Cwd, 1)),
    ]
}

#[cfg(target_arch = "aarch64")]
fn legacy_calls() -> Vec<(u64, Call)> {
    Vec::new()
}

/// Syscalls answered with ENOSYS instead of run: io_uring does file I/O the filter never
/// sees; programs that use it (libuv) fall back to plain syscalls when it is refused.
pub fn refused() -> Vec<u64> {
    vec![nr(libc::SYS_io_uring_setup)]
}
