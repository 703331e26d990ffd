//! The kernel side of tracing: ptrace requests and their numbers, waiting for a traced
//! task, and reading a stopped task's registers, memory and `/proc` links.

use super::filter;
use std::path::PathBuf;

// ptrace requests, options and events: the same numbers on every Linux architecture (and
// spelled here because libc types them differently for glibc and musl).
pub(super) const PTRACE_CONT: libc::c_long = 7;
pub(super) const PTRACE_SYSCALL: libc::c_long = 24;
pub(super) const PTRACE_TRACEME: u64 = 0;
pub(super) const PTRACE_ATTACH: u64 = 16;
pub(super) const PTRACE_GETEVENTMSG: libc::c_long = 0x4201;
pub(super) const PTRACE_SEIZE: libc::c_long = 0x4206;
pub(super) const PTRACE_GET_SYSCALL_INFO: libc::c_long = 0x420e;
pub(super) const PTRACE_O_TRACESYSGOOD: usize = 0x01;
pub(super) const PTRACE_O_TRACEFORK: usize = 0x02;
pub(super) const PTRACE_O_TRACEVFORK: usize = 0x04;
pub(super) const PTRACE_O_TRACECLONE: usize = 0x08;
pub(super) const PTRACE_O_TRACEEXEC: usize = 0x10;
pub(super) const PTRACE_O_TRACESECCOMP: usize = 0x80;
pub(super) const PTRACE_O_EXITKILL: usize = 0x0010_0000;
pub(super) const PTRACE_EVENT_FORK: i32 = 1;
pub(super) const PTRACE_EVENT_VFORK: i32 = 2;
pub(super) const PTRACE_EVENT_CLONE: i32 = 3;
pub(super) const PTRACE_EVENT_EXEC: i32 = 4;
pub(super) const PTRACE_EVENT_SECCOMP: i32 = 7;
pub(super) const PTRACE_SYSCALL_INFO_EXIT: u8 = 2;
pub(super) const PTRACE_SYSCALL_INFO_SECCOMP: u8 = 3;
pub(super) const PR_SET_NO_NEW_PRIVS: libc::c_int = 38;
pub(super) const PR_SET_SECCOMP: libc::c_int = 22;
pub(super) const SECCOMP_MODE_FILTER: libc::c_ulong = 2;
/// Longest path the kernel takes (PATH_MAX, with its NUL).
pub(super) const PATH_MAX: usize = 4096;

pub(super) const OPTIONS: usize = PTRACE_O_TRACESYSGOOD
    | PTRACE_O_TRACEFORK
    | PTRACE_O_TRACEVFORK
    | PTRACE_O_TRACECLONE
    | PTRACE_O_TRACEEXEC
    | PTRACE_O_TRACESECCOMP
    | PTRACE_O_EXITKILL;

/// `struct ptrace_syscall_info` (linux/ptrace.h): the union is read as eight u64 words.
#[repr(C)]
#[derive(Default)]
pub(super) struct SyscallInfo {
    pub(super) op: u8,
    pub(super) pad: [u8; 3],
    pub(super) arch: u32,
    pub(super) instruction_pointer: u64,
    pub(super) stack_pointer: u64,
    /// seccomp: nr, args[6], ret_data; exit: rval, is_error.
    pub(super) data: [u64; 8],
}

/// `struct sock_fprog`.
#[repr(C)]
pub(super) struct SockFprog {
    pub(super) len: libc::c_ushort,
    pub(super) filter: *const filter::Insn,
}

pub(super) fn ptrace(request: libc::c_long, pid: libc::pid_t, addr: usize, data: usize) -> libc::c_long {
    // SAFETY: a raw ptrace(2) on a tracee of this thread; `addr`/`data` are either plain
    // numbers or point at live locals of the size the request writes.
    unsafe { libc::syscall(libc::SYS_ptrace, request, pid as libc::c_long, addr, data) }
}

/// The message of a task's last ptrace event: a new child's id (fork, clone), the thread
/// id an execve replaced.
pub(super) fn event_message(tid: libc::pid_t) -> Option<libc::pid_t> {
    let mut message: libc::c_ulong = 0;
    let asked = ptrace(
        PTRACE_GETEVENTMSG,
        tid,
        0,
        &mut message as *mut libc::c_ulong as usize,
    );
    (asked == 0).then_some(message as libc::pid_t)
}

pub(super) fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The next stop or end of any traced task, with `flags` beside `__WALL`: its id and wait
/// status; `None` when `WNOHANG` finds nothing waiting. Retried when interrupted; an error
/// (ECHILD: no task is left) is the kernel's.
pub(super) fn wait_any(flags: libc::c_int) -> std::io::Result<Option<(libc::pid_t, libc::c_int)>> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a pointer to a local.
        let tid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL | flags) };
        match tid {
            0 => return Ok(None),
            _ if tid > 0 => return Ok(Some((tid, status))),
            _ if errno() == libc::EINTR => continue,
            _ => return Err(std::io::Error::last_os_error()),
        }
    }
}

pub(super) fn syscall_info(tid: libc::pid_t) -> Option<SyscallInfo> {
    let mut info = SyscallInfo::default();
    let size = std::mem::size_of::<SyscallInfo>();
    let r = ptrace(
        PTRACE_GET_SYSCALL_INFO,
        tid,
        size,
        &mut info as *mut SyscallInfo as usize,
    );
    (r > 0).then_some(info)
}

/// Reads `len` bytes at `addr` in the tracee. Err(errno) when nothing could be read.
pub(super) fn read_memory(tid: libc::pid_t, addr: u64, buf: &mut [u8]) -> Result<usize, i32> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` covers `buf`, which outlives the call; the remote side is only read.
    let n = unsafe { libc::process_vm_readv(tid, &local, 1, &remote, 1, 0) };
    usize::try_from(n).map_err(|_| errno())
}

/// A path argument the tracer could not read, although the kernel may (a process that
/// made itself non-dumpable): what the call touched is unknown.
#[derive(Debug)]
pub(super) struct Unreadable;

/// The NUL-terminated string at `addr` in the tracee, read a page at a time (the next page
/// may be unmapped). None where the kernel cannot read a path either (a NULL or bad
/// pointer, a string longer than PATH_MAX: the call fails) or the task is gone.
pub(super) fn read_string(tid: libc::pid_t, addr: u64) -> Result<Option<Vec<u8>>, Unreadable> {
    if addr == 0 {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(256);
    let mut at = addr;
    // Most paths are short: small reads copy less than the rest of the page would.
    let mut chunk = [0u8; 256];
    while out.len() < PATH_MAX {
        let to_page_end = 4096 - (at % 4096) as usize;
        let chunk = &mut chunk[..to_page_end.min(PATH_MAX - out.len()).min(256)];
        let n = match read_memory(tid, at, chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if e == libc::EFAULT || e == libc::ESRCH => return Ok(None),
            Err(_) => return Err(Unreadable),
        };
        if let Some(end) = chunk[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..end]);
            return Ok(Some(out));
        }
        out.extend_from_slice(&chunk[..n]);
        at += n as u64;
    }
    Ok(None)
}

/// Where a task's `/proc/TID/{cwd,fd/N}` link points: None when it names no folder the
/// kernel could use either (no such descriptor, a pipe, the task is gone), Unreadable when
/// the tracer is refused it (a non-dumpable process).
pub(super) fn task_link(path: &str) -> Result<Option<PathBuf>, Unreadable> {
    match std::fs::read_link(path) {
        Ok(target) => Ok(target.is_absolute().then_some(target)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(_) => Err(Unreadable),
    }
}

pub(super) fn read_link(path: &str) -> Option<PathBuf> {
    let target = std::fs::read_link(path).ok()?;
    // Pipes, sockets and anonymous files read as "pipe:[123]": not paths.
    target.is_absolute().then_some(target)
}
