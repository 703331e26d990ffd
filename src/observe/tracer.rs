//! The tracer: forks the step's command with a seccomp filter that hands path syscalls to
//! ptrace, follows every child, decodes each trapped syscall at entry (its paths are read
//! from the tracee's memory and resolved against its folder or directory fd) and classifies
//! it at exit, when its result is known (a read, a probe of a missing path, a write).
//!
//! All ptrace requests are made from the one thread that attached (ptrace requires it).

use super::syscall::{self, Call, Dir, Kind, Pending};
use super::{Ended, Observation, arch, filter, links};
use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::io::Read as _;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

// ptrace requests, options and events: the same numbers on every Linux architecture (and
// spelled here because libc types them differently for glibc and musl).
const PTRACE_CONT: libc::c_long = 7;
const PTRACE_SYSCALL: libc::c_long = 24;
const PTRACE_TRACEME: u64 = 0;
const PTRACE_ATTACH: u64 = 16;
const PTRACE_GETEVENTMSG: libc::c_long = 0x4201;
const PTRACE_SEIZE: libc::c_long = 0x4206;
const PTRACE_GET_SYSCALL_INFO: libc::c_long = 0x420e;
const PTRACE_O_TRACESYSGOOD: usize = 0x01;
const PTRACE_O_TRACEFORK: usize = 0x02;
const PTRACE_O_TRACEVFORK: usize = 0x04;
const PTRACE_O_TRACECLONE: usize = 0x08;
const PTRACE_O_TRACEEXEC: usize = 0x10;
const PTRACE_O_TRACESECCOMP: usize = 0x80;
const PTRACE_O_EXITKILL: usize = 0x0010_0000;
const PTRACE_EVENT_FORK: i32 = 1;
const PTRACE_EVENT_VFORK: i32 = 2;
const PTRACE_EVENT_CLONE: i32 = 3;
const PTRACE_EVENT_EXEC: i32 = 4;
const PTRACE_EVENT_SECCOMP: i32 = 7;
const PTRACE_SYSCALL_INFO_EXIT: u8 = 2;
const PTRACE_SYSCALL_INFO_SECCOMP: u8 = 3;
const PR_SET_NO_NEW_PRIVS: libc::c_int = 38;
const PR_SET_SECCOMP: libc::c_int = 22;
const SECCOMP_MODE_FILTER: libc::c_ulong = 2;
/// Longest path the kernel takes (PATH_MAX, with its NUL).
const PATH_MAX: usize = 4096;

const OPTIONS: usize = PTRACE_O_TRACESYSGOOD
    | PTRACE_O_TRACEFORK
    | PTRACE_O_TRACEVFORK
    | PTRACE_O_TRACECLONE
    | PTRACE_O_TRACEEXEC
    | PTRACE_O_TRACESECCOMP
    | PTRACE_O_EXITKILL;

/// How long, at most, the tracer serves processes still in the step's group after the
/// step's own process has ended, before the wrapper ends (see `Tracer::settle`).
const SETTLE_AT_MOST: std::time::Duration = std::time::Duration::from_millis(100);

/// Signals the wrapper leaves to the step: a timeout or cancellation signals the whole
/// process group, and the step must get the chance to handle it as it would untraced.
pub(super) const PASSED_ON: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// `struct ptrace_syscall_info` (linux/ptrace.h): the union is read as eight u64 words.
#[repr(C)]
#[derive(Default)]
struct SyscallInfo {
    op: u8,
    pad: [u8; 3],
    arch: u32,
    instruction_pointer: u64,
    stack_pointer: u64,
    /// seccomp: nr, args[6], ret_data; exit: rval, is_error.
    data: [u64; 8],
}

/// `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const filter::Insn,
}

/// Why a traced run gave no result.
pub enum Failure {
    /// Before the command started (it may be run untraced instead).
    NotStarted(std::io::Error),
    /// After: the command's outcome is unknown.
    Lost(std::io::Error),
}

/// What a traced run left.
pub struct Traced {
    pub ended: Ended,
    pub observation: Observation,
    /// Set when something ran that the tracer could not follow.
    pub incomplete: Option<String>,
}

fn ptrace(request: libc::c_long, pid: libc::pid_t, addr: usize, data: usize) -> libc::c_long {
    // SAFETY: a raw ptrace(2) on a tracee of this thread; `addr`/`data` are either plain
    // numbers or point at live locals of the size the request writes.
    unsafe { libc::syscall(libc::SYS_ptrace, request, pid as libc::c_long, addr, data) }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn syscall_info(tid: libc::pid_t) -> Option<SyscallInfo> {
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
fn read_memory(tid: libc::pid_t, addr: u64, buf: &mut [u8]) -> Result<usize, i32> {
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
struct Unreadable;

/// The NUL-terminated string at `addr` in the tracee, read a page at a time (the next page
/// may be unmapped). None where the kernel cannot read a path either (a NULL or bad
/// pointer, a string longer than PATH_MAX: the call fails) or the task is gone.
fn read_string(tid: libc::pid_t, addr: u64) -> Result<Option<Vec<u8>>, Unreadable> {
    if addr == 0 {
        return Ok(None);
    }
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < PATH_MAX {
        let to_page_end = 4096 - (at % 4096) as usize;
        let mut chunk = vec![0u8; to_page_end.min(PATH_MAX - out.len())];
        let n = match read_memory(tid, at, &mut chunk) {
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
fn task_link(path: &str) -> Result<Option<PathBuf>, Unreadable> {
    match std::fs::read_link(path) {
        Ok(target) => Ok(target.is_absolute().then_some(target)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(_) => Err(Unreadable),
    }
}

fn read_link(path: &str) -> Option<PathBuf> {
    let target = std::fs::read_link(path).ok()?;
    // Pipes, sockets and anonymous files read as "pipe:[123]": not paths.
    target.is_absolute().then_some(target)
}

/// Everything the child needs, built before fork: after fork only async-signal-safe calls
/// are allowed.
struct ChildPlan {
    /// Owns the strings `argv_ptrs` points into.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    filter: Vec<filter::Insn>,
    not_found: Vec<u8>,
    not_runnable: Vec<u8>,
}

/// Runs in the forked child: stop until the tracer has attached, install the filter, exec.
fn child(plan: &ChildPlan) -> ! {
    let fprog = SockFprog {
        len: plan.filter.len() as libc::c_ushort,
        filter: plan.filter.as_ptr(),
    };
    // SAFETY: only async-signal-safe calls on data prepared before fork.
    unsafe {
        // As std::process::Command does for its children: default SIGPIPE, empty mask.
        for signal in PASSED_ON.iter().chain(&[libc::SIGPIPE]) {
            libc::signal(*signal, libc::SIG_DFL);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::raise(libc::SIGSTOP);
        if libc::prctl(
            PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        ) != 0
            || libc::prctl(
                PR_SET_SECCOMP,
                SECCOMP_MODE_FILTER,
                &fprog as *const SockFprog,
            ) != 0
        {
            let message = b"preflight: cannot install the seccomp filter that observes the step\n";
            libc::write(2, message.as_ptr().cast(), message.len());
            libc::_exit(126);
        }
        libc::execvp(plan.argv_ptrs[0], plan.argv_ptrs.as_ptr());
        let (message, code) = if errno() == libc::ENOENT {
            (&plan.not_found, 127)
        } else {
            (&plan.not_runnable, 126)
        };
        libc::write(2, message.as_ptr().cast(), message.len());
        libc::_exit(code)
    }
}

fn plan(program: &OsStr, args: &[OsString]) -> std::io::Result<ChildPlan> {
    let argv = std::iter::once(program)
        .chain(args.iter().map(OsString::as_os_str))
        .map(|a| CString::new(a.as_bytes().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "an argument holds a NUL byte",
            )
        })?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let name = program.to_string_lossy();
    Ok(ChildPlan {
        _argv: argv,
        argv_ptrs,
        filter: filter::program(),
        not_found: format!("preflight: cannot run `{name}`: program not found\n").into_bytes(),
        not_runnable: format!("preflight: cannot run `{name}`: it is not an executable program\n")
            .into_bytes(),
    })
}

/// Forks `plan`'s command stopped, and attaches to it. Returns its pid.
fn start(plan: &ChildPlan) -> std::io::Result<libc::pid_t> {
    // SAFETY: fork(2); the child runs only `child`, which is async-signal-safe.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        child(plan);
    }
    let mut status = 0;
    // SAFETY: waitpid on our own child with a pointer to a local.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
    if r != pid || !libc::WIFSTOPPED(status) {
        return Err(std::io::Error::other(
            "the step's process ended before it could be observed",
        ));
    }
    if ptrace(PTRACE_SEIZE, pid, 0, OPTIONS) != 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: kill and reap our own stopped child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, &mut status, 0);
        }
        return Err(e);
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    Ok(pid)
}

/// Starts `program args` traced, in this process's group; its signal dispositions are the
/// ones a step gets. The caller follows it with `Tracer::follow_root`.
pub fn start_traced(program: &OsStr, args: &[OsString]) -> Result<Tracer, Failure> {
    let plan = plan(program, args).map_err(Failure::NotStarted)?;
    let root = start(&plan).map_err(Failure::NotStarted)?;
    Ok(Tracer::new(root))
}

#[derive(Default)]
struct Task {
    pending: Option<Pending>,
}

/// Follows a traced step and every process it starts.
pub struct Tracer {
    root: libc::pid_t,
    tasks: HashMap<libc::pid_t, Task>,
    /// Current folder per thread, dropped whenever any chdir succeeds (threads may share it).
    cwds: HashMap<libc::pid_t, PathBuf>,
    calls: HashMap<u64, Call>,
    /// Paths seen opened successfully (and so, the file behind them if they are links).
    opened: HashSet<PathBuf>,
    /// Folders found to be no symbolic links, when following paths through links.
    real_dirs: HashSet<PathBuf>,
    observation: Observation,
    incomplete: Option<String>,
    /// Whether stops are still recorded: until the observation is taken, after the root's
    /// end and the settle that follows it.
    recording: bool,
    /// The step's process group, once the observation is taken (see `resume_released`).
    step_group: Option<libc::pid_t>,
}

impl Tracer {
    fn new(root: libc::pid_t) -> Self {
        Tracer {
            root,
            tasks: HashMap::new(),
            cwds: HashMap::new(),
            calls: arch::calls().into_iter().collect(),
            opened: HashSet::new(),
            real_dirs: HashSet::new(),
            observation: Observation::default(),
            incomplete: None,
            recording: true,
            step_group: None,
        }
    }

    fn incomplete(&mut self, why: &str) {
        if self.incomplete.is_none() {
            self.incomplete = Some(why.to_string());
        }
    }

    /// Resumes a stopped task: to its next trapped syscall, or to the end of the current
    /// one when its result is awaited.
    fn resume(&self, tid: libc::pid_t, signal: i32) {
        let pending = self.tasks.get(&tid).is_some_and(|t| t.pending.is_some());
        let request = if pending { PTRACE_SYSCALL } else { PTRACE_CONT };
        // A task killed meanwhile (ESRCH) reports its exit next: nothing to do here.
        ptrace(request, tid, 0, signal as usize);
    }

    /// Follows every task until the root process ends, then through the settle (see
    /// `settle`): how the root ended and what the step's processes did up to then, the
    /// settle included (what runs in it may read and write too). What outlives that is left
    /// to `release`.
    pub fn follow_root(&mut self, group: libc::pid_t) -> Result<Traced, Failure> {
        let ended = self.trace().map_err(Failure::Lost)?;
        self.settle(group);
        self.recording = false;
        self.step_group = Some(group);
        Ok(Traced {
            ended,
            observation: std::mem::take(&mut self.observation),
            incomplete: self.incomplete.take(),
        })
    }

    /// After the root's end, before the wrapper is told: serves the remaining tasks until
    /// none still in process group `group` (the step's) is on its way (running, or stopped
    /// for the tracer), at most `SETTLE_AT_MOST`. The group kill that follows the step's
    /// end then finds a process that was leaving the group (`setsid` starting a daemon)
    /// out of it, as it would untraced (where it runs faster: no stop for a tracer). A
    /// step that left nothing behind costs one waitpid here.
    fn settle(&mut self, group: libc::pid_t) {
        let deadline = std::time::Instant::now() + SETTLE_AT_MOST;
        self.serve(None, |tracer| tracer.settled(group), Some(deadline));
    }

    /// After the root's end: lets every remaining task run on, untraced in effect (nothing
    /// is recorded any more, each trapped syscall goes on at once), until none is left.
    ///
    /// Tasks still in process group `group` are killed once `wrapper` is gone (the write
    /// end of a pipe the wrapper reads: it reports an error when the wrapper has ended), as
    /// the group kill that follows the wrapper's end does. What left the group (a daemon)
    /// so runs to its own end, and the tracer must stay with it: its seccomp filter fails
    /// path syscalls (ENOSYS) in a process that has no tracer.
    pub fn release(&mut self, group: libc::pid_t, wrapper: Option<&std::fs::File>) {
        if wrapper.is_some() && !self.serve(wrapper, |_| false, None) {
            return;
        }
        for &tid in self.tasks.keys() {
            kill_if_in(tid, group);
        }
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a pointer to a local.
            let tid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
            if tid < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                // ECHILD: no task is left.
                return;
            }
            if libc::WIFSTOPPED(status) && kill_if_in(tid, group) {
                continue;
            }
            self.resume_released(tid, status);
        }
    }

    /// Whether no task in `group` is on its way: each one is asleep (blocked in a syscall
    /// that is not the tracer's), stopped by a signal, or gone.
    fn settled(&self, group: libc::pid_t) -> bool {
        self.tasks.keys().all(|&tid| {
            // SAFETY: getpgid on a tracee's id.
            if unsafe { libc::getpgid(tid) } != group {
                return true;
            }
            let Ok(stat) = std::fs::read(format!("/proc/{tid}/stat")) else {
                return true;
            };
            // The state follows the command's closing parenthesis (which may hold one).
            let state = stat
                .iter()
                .rposition(|&b| b == b')')
                .and_then(|at| stat.get(at + 2).copied());
            !matches!(state, Some(b'R' | b't'))
        })
    }

    /// Serves every stop of the remaining tasks until `done` says so, `wrapper` reports
    /// its reader gone, or `deadline` passes. False when no task is left.
    fn serve(
        &mut self,
        wrapper: Option<&std::fs::File>,
        done: impl Fn(&Self) -> bool,
        deadline: Option<std::time::Instant>,
    ) -> bool {
        use std::os::fd::AsRawFd;
        // Stops arrive as SIGCHLD on a signalfd, so that one poll waits for either, made
        // at the first wait (after it, the stops already waiting are taken again).
        let mut stops: Option<StopsFd> = None;
        loop {
            if !self.resume_waiting() {
                return false;
            }
            if done(self) {
                return true;
            }
            let Some(fd) = &stops else {
                match StopsFd::new() {
                    Some(fd) => stops = Some(fd),
                    // Cannot wait: give up serving.
                    None => return true,
                }
                continue;
            };
            let timeout = match deadline {
                None => -1,
                Some(at) => {
                    let left = at.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return true;
                    }
                    i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX)
                }
            };
            let mut polled = [fd.raw, -1].map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            if let Some(wrapper) = wrapper {
                polled[1] = libc::pollfd {
                    fd: wrapper.as_raw_fd(),
                    events: 0,
                    revents: 0,
                };
            }
            // SAFETY: poll on valid pollfds that live for the call (-1 is skipped).
            let r = unsafe { libc::poll(polled.as_mut_ptr(), 2, timeout) };
            if r < 0 && errno() != libc::EINTR {
                return true;
            }
            if polled[1].revents != 0 {
                return true;
            }
            fd.drain();
        }
    }

    /// Resumes every stop already waiting; false when no task is left.
    fn resume_waiting(&mut self) -> bool {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a pointer to a local.
            let tid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL | libc::WNOHANG) };
            match tid {
                0 => return true,
                _ if tid < 0 && errno() == libc::EINTR => continue,
                _ if tid < 0 => return false,
                _ if self.recording => self.on_stop(tid, status),
                _ => self.resume_released(tid, status),
            }
        }
    }

    /// Resumes a task's stop after the root's end: only a signal on its way to the task is
    /// passed on; every other stop (a trapped syscall, an event, a group stop) goes on.
    fn resume_released(&mut self, tid: libc::pid_t, status: i32) {
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            self.tasks.remove(&tid);
            return;
        }
        if !libc::WIFSTOPPED(status) {
            return;
        }
        // A task still in the step's group is past what was recorded, and is about to be
        // killed with the group: it is held at its next path syscall (it would read
        // unrecorded) until then.
        if status >> 16 == PTRACE_EVENT_SECCOMP
            && let Some(group) = self.step_group
            // SAFETY: getpgid on a tracee's id.
            && unsafe { libc::getpgid(tid) } == group
        {
            return;
        }
        self.tasks.entry(tid).or_default().pending = None;
        let signal = match status >> 16 {
            0 if libc::WSTOPSIG(status) != libc::SIGTRAP | 0x80 => libc::WSTOPSIG(status),
            PTRACE_EVENT_FORK | PTRACE_EVENT_VFORK | PTRACE_EVENT_CLONE => {
                self.forked(tid);
                0
            }
            _ => 0,
        };
        ptrace(PTRACE_CONT, tid, 0, signal as usize);
    }

    /// A task forked or cloned: its child is known from now on, before its first stop.
    fn forked(&mut self, tid: libc::pid_t) {
        let mut child: libc::c_ulong = 0;
        if ptrace(
            PTRACE_GETEVENTMSG,
            tid,
            0,
            &mut child as *mut libc::c_ulong as usize,
        ) == 0
        {
            self.tasks.entry(child as libc::pid_t).or_default();
        }
    }

    /// Follows every task until the root process ends.
    fn trace(&mut self) -> std::io::Result<Ended> {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a pointer to a local.
            let tid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
            if tid < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                return Err(std::io::Error::last_os_error());
            }
            if tid == self.root && (libc::WIFEXITED(status) || libc::WIFSIGNALED(status)) {
                self.tasks.remove(&tid);
                self.cwds.remove(&tid);
                return Ok(if libc::WIFEXITED(status) {
                    Ended::Exited(libc::WEXITSTATUS(status))
                } else {
                    Ended::Signaled(libc::WTERMSIG(status))
                });
            }
            self.on_stop(tid, status);
        }
    }

    /// Records what a task's stop (or end) says and lets it go on.
    fn on_stop(&mut self, tid: libc::pid_t, status: i32) {
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            self.tasks.remove(&tid);
            self.cwds.remove(&tid);
            return;
        }
        if !libc::WIFSTOPPED(status) {
            return;
        }
        self.tasks.entry(tid).or_default();
        let signal = libc::WSTOPSIG(status);
        match status >> 16 {
            PTRACE_EVENT_SECCOMP => {
                self.entered(tid);
                self.resume(tid, 0);
            }
            PTRACE_EVENT_EXEC => {
                self.exec_replaced_thread(tid);
                self.resume(tid, 0);
            }
            0 if signal == libc::SIGTRAP | 0x80 => {
                self.exited(tid);
                self.resume(tid, 0);
            }
            PTRACE_EVENT_FORK | PTRACE_EVENT_VFORK | PTRACE_EVENT_CLONE => {
                self.forked(tid);
                self.resume(tid, 0);
            }
            // A signal on its way to the task: deliver it.
            0 => self.resume(tid, signal),
            // A new task's first stop, a group stop: go on.
            _ => self.resume(tid, 0),
        }
    }

    /// After a non-leader thread's execve, the kernel gives it the leader's id.
    fn exec_replaced_thread(&mut self, tid: libc::pid_t) {
        let mut former: libc::c_ulong = 0;
        if ptrace(
            PTRACE_GETEVENTMSG,
            tid,
            0,
            &mut former as *mut libc::c_ulong as usize,
        ) != 0
        {
            return;
        }
        let former = former as libc::pid_t;
        if former != tid
            && let Some(task) = self.tasks.remove(&former)
        {
            self.cwds.remove(&former);
            self.tasks.insert(tid, task);
        }
    }

    /// A trapped syscall is entering: decode it while its arguments are still there.
    fn entered(&mut self, tid: libc::pid_t) {
        let Some(info) = syscall_info(tid) else {
            return;
        };
        if info.op != PTRACE_SYSCALL_INFO_SECCOMP {
            return;
        }
        let nr = info.data[0];
        let foreign = arch::FOREIGN_NR_FLOOR.is_some_and(|floor| nr >= u64::from(floor));
        if info.arch != arch::AUDIT_ARCH || foreign {
            self.incomplete(
                "a program used another syscall ABI (32-bit or x32), which is not decoded",
            );
            return;
        }
        let Some(call) = self.calls.get(&nr).copied() else {
            return;
        };
        let args: [u64; 6] = [
            info.data[1],
            info.data[2],
            info.data[3],
            info.data[4],
            info.data[5],
            info.data[6],
        ];
        let resolved = (
            if call.has_path() {
                self.resolve(tid, call.dir, &args, args[call.path])
            } else {
                Ok(None)
            },
            match call.second {
                Some((dir, path)) => self.resolve(tid, dir, &args, args[path]),
                None => Ok(None),
            },
        );
        let resolved = match resolved {
            // fexecve: execveat(fd, "", ..., AT_EMPTY_PATH) runs the file `fd` names.
            (Ok(None), second) if call.kind == Kind::Exec => {
                (self.executed_descriptor(tid, call, &args), second)
            }
            other => other,
        };
        let (Ok(first), Ok(second)) = resolved else {
            self.incomplete(
                "a process whose memory or folders the tracer may not read (a non-dumpable \
                 program) used a path",
            );
            return;
        };
        let open_flags = match (call.kind, call.flags) {
            (Kind::Open, Some(arg)) => args[arg],
            (Kind::OpenHow, Some(arg)) => {
                // struct open_how starts with `u64 flags`.
                let mut flags = [0u8; 8];
                if read_memory(tid, args[arg], &mut flags) == Ok(8) {
                    u64::from_ne_bytes(flags)
                } else {
                    // Unreadable: the call fails with EFAULT; count it as a write, never a read.
                    syscall::CREAT_FLAGS
                }
            }
            (Kind::Creat, _) => syscall::CREAT_FLAGS,
            _ => 0,
        };
        let pending = Pending {
            kind: call.kind,
            open_flags,
            first,
            second,
            request: args[0],
        };
        // An empty path (fstat() is newfstatat(fd, "", AT_EMPTY_PATH)) works on a
        // descriptor, observed when it was opened; a bad pointer makes the call fail.
        // Neither needs the call's end.
        let nothing_named = call.has_path() && pending.first.is_none();
        if nothing_named || syscall::already_known(&pending, &self.observation, &self.opened) {
            return;
        }
        if let Some(task) = self.tasks.get_mut(&tid) {
            task.pending = Some(pending);
        }
    }

    /// A trapped syscall has finished: classify its paths by its result.
    fn exited(&mut self, tid: libc::pid_t) {
        let Some(pending) = self.tasks.get_mut(&tid).and_then(|t| t.pending.take()) else {
            return;
        };
        let Some(info) = syscall_info(tid) else {
            return;
        };
        if info.op != PTRACE_SYSCALL_INFO_EXIT {
            return;
        }
        let rval = info.data[0] as i64;
        let result = if info.data[1] & 0xff != 0 {
            Err(rval
                .checked_neg()
                .and_then(|e| i32::try_from(e).ok())
                .unwrap_or(0))
        } else {
            Ok(rval)
        };
        match (pending.kind, result) {
            (Kind::Ptrace, Ok(_))
                if matches!(pending.request, PTRACE_TRACEME | PTRACE_ATTACH)
                    || pending.request == PTRACE_SEIZE as u64 =>
            {
                self.incomplete("the step traces processes itself (a debugger, strace): what they read is not seen");
            }
            (Kind::Open | Kind::OpenHow | Kind::Creat, Ok(fd)) => {
                let fd_path = format!("/proc/{tid}/fd/{fd}");
                let real = read_link(&fd_path);
                // An O_PATH descriptor can neither read nor list: a later real open of
                // the same path must still be seen to its end.
                let path_only = pending.open_flags & libc::O_PATH as u64 != 0;
                if let Some(path) = &pending.first
                    && !path_only
                {
                    self.opened.insert(path.clone());
                    if !syscall::opens_for_writing(pending.open_flags)
                        && std::fs::metadata(&fd_path).is_ok_and(|m| m.is_dir())
                    {
                        let listed = real.clone().unwrap_or_else(|| path.clone());
                        self.observation.listed.insert(listed);
                    }
                }
                // Through a symbolic link, the file really opened is an input too.
                if let (Some(lexical), Some(real)) = (&pending.first, real)
                    && *lexical != real
                {
                    if syscall::opens_for_writing(pending.open_flags) {
                        self.observation.written.insert(real);
                    } else {
                        self.observation.read.insert(real);
                    }
                }
            }
            (Kind::Exec, Ok(_)) => {
                if let Some(interpreter) = pending.first.as_deref().and_then(interpreter_of) {
                    self.observation.read.insert(interpreter.clone());
                    self.observation.executed.insert(interpreter);
                }
            }
            _ => {}
        }
        if syscall::record(&pending, result, &mut self.observation) {
            self.cwds.clear();
        }
        self.follow_links(&pending, result);
    }

    /// A stat, an exec, a `cd` or an open that failed names a path that may lead through
    /// symbolic links: each link is read, and what the last one leads to is read or must
    /// stay absent. (A successful open names its file through `/proc/TID/fd` instead.)
    fn follow_links(&mut self, pending: &Pending, result: syscall::Result) {
        let follows = match pending.kind {
            Kind::Probe | Kind::Exec | Kind::Chdir => true,
            Kind::Open | Kind::OpenHow | Kind::Creat => result.is_err(),
            _ => false,
        };
        let Some(path) = pending.first.as_ref().filter(|_| follows) else {
            return;
        };
        let Some(followed) = links::follow(path, &mut self.real_dirs) else {
            return;
        };
        let o = &mut self.observation;
        if followed.links.contains(path) {
            // The path is itself a link: it is there, whatever it leads to.
            o.absent.remove(path);
            o.read.insert(path.clone());
        }
        o.read.extend(followed.links);
        if followed.exists {
            if pending.kind == Kind::Exec && result.is_ok() {
                o.executed.insert(followed.target.clone());
            }
            o.read.insert(followed.target);
        } else {
            o.absent.insert(followed.target);
        }
    }

    /// The absolute, normalised path a syscall argument names; None when it names none
    /// (an empty path with AT_EMPTY_PATH, a bad pointer, a descriptor that is no folder).
    fn resolve(
        &mut self,
        tid: libc::pid_t,
        dir: Dir,
        args: &[u64; 6],
        addr: u64,
    ) -> Result<Option<PathBuf>, Unreadable> {
        let Some(bytes) = read_string(tid, addr)? else {
            return Ok(None);
        };
        if bytes.is_empty() {
            return Ok(None);
        }
        let path = PathBuf::from(OsString::from_vec(bytes));
        if path.is_absolute() {
            return Ok(Some(syscall::absolute(Path::new("/"), &path)));
        }
        let base = match dir {
            Dir::Arg(arg) if args[arg] as i32 != libc::AT_FDCWD => {
                task_link(&format!("/proc/{tid}/fd/{}", args[arg] as i32))?
            }
            _ => self.cwd(tid)?,
        };
        Ok(base.map(|base| syscall::absolute(&base, &path)))
    }

    /// The file an `execveat` with an empty path runs: its directory descriptor's.
    fn executed_descriptor(
        &self,
        tid: libc::pid_t,
        call: Call,
        args: &[u64; 6],
    ) -> Result<Option<PathBuf>, Unreadable> {
        let Dir::Arg(fd_arg) = call.dir else {
            return Ok(None);
        };
        if read_string(tid, args[call.path])?.is_none_or(|path| !path.is_empty()) {
            return Ok(None);
        }
        task_link(&format!("/proc/{tid}/fd/{}", args[fd_arg] as i32))
    }

    fn cwd(&mut self, tid: libc::pid_t) -> Result<Option<PathBuf>, Unreadable> {
        if let Some(cwd) = self.cwds.get(&tid) {
            return Ok(Some(cwd.clone()));
        }
        let cwd = task_link(&format!("/proc/{tid}/cwd"))?;
        if let Some(cwd) = &cwd {
            self.cwds.insert(tid, cwd.clone());
        }
        Ok(cwd)
    }
}

/// A signalfd that reads SIGCHLD (which announces every stop and end of a tracee), with
/// SIGCHLD blocked while it lives.
struct StopsFd {
    raw: libc::c_int,
    former: libc::sigset_t,
}

impl StopsFd {
    fn new() -> Option<Self> {
        // SAFETY: plain libc calls on this process's signal mask and a new descriptor.
        unsafe {
            let mut chld: libc::sigset_t = std::mem::zeroed();
            let mut former: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut chld);
            libc::sigaddset(&mut chld, libc::SIGCHLD);
            libc::sigprocmask(libc::SIG_BLOCK, &chld, &mut former);
            let raw = libc::signalfd(-1, &chld, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
            if raw < 0 {
                libc::sigprocmask(libc::SIG_SETMASK, &former, std::ptr::null_mut());
                return None;
            }
            Some(StopsFd { raw, former })
        }
    }

    /// Takes the signals read so far (one may stand for several stops).
    fn drain(&self) {
        let mut buf = [0u8; 4 * std::mem::size_of::<libc::signalfd_siginfo>()];
        // SAFETY: reads into a local buffer of its size from our own non-blocking fd.
        while unsafe { libc::read(self.raw, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

impl Drop for StopsFd {
    fn drop(&mut self) {
        // SAFETY: closing our own descriptor and putting back the mask saved in `new`.
        unsafe {
            libc::close(self.raw);
            libc::sigprocmask(libc::SIG_SETMASK, &self.former, std::ptr::null_mut());
        }
    }
}

/// Kills task `tid` when its process is in process group `group`; true when it was.
fn kill_if_in(tid: libc::pid_t, group: libc::pid_t) -> bool {
    // SAFETY: getpgid and kill on a tracee's id; no memory is involved.
    unsafe {
        if libc::getpgid(tid) == group {
            libc::kill(tid, libc::SIGKILL);
            return true;
        }
    }
    false
}

/// The interpreter an executed script's `#!` line names.
fn interpreter_of(program: &Path) -> Option<PathBuf> {
    let mut head = [0u8; 256];
    let mut file = std::fs::File::open(program).ok()?;
    let n = file.read(&mut head).ok()?;
    syscall::shebang_interpreter(&head[..n])
}

/// Checks, in a throwaway child, that everything the tracer needs works here: ptrace may
/// attach, no_new_privs and a seccomp filter may be set, the filter stops the child at a
/// path syscall, and the tracer can read the syscall and its path.
pub fn probe() -> Result<(), String> {
    static PROBE_PATH: &[u8] = b"/\0";
    let filter = filter::program();
    let fprog = SockFprog {
        len: filter.len() as libc::c_ushort,
        filter: filter.as_ptr(),
    };
    // SAFETY: fork(2); the child makes only async-signal-safe calls on data built before.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!(
            "cannot start a process: {}",
            std::io::Error::last_os_error()
        ));
    }
    if pid == 0 {
        // SAFETY: async-signal-safe calls only.
        unsafe {
            libc::raise(libc::SIGSTOP);
            if libc::prctl(
                PR_SET_NO_NEW_PRIVS,
                1 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            ) != 0
            {
                libc::_exit(10);
            }
            if libc::prctl(
                PR_SET_SECCOMP,
                SECCOMP_MODE_FILTER,
                &fprog as *const SockFprog,
            ) != 0
            {
                libc::_exit(11);
            }
            libc::syscall(
                libc::SYS_faccessat,
                libc::AT_FDCWD,
                PROBE_PATH.as_ptr(),
                libc::F_OK,
            );
            libc::_exit(0);
        }
    }
    let result = probe_child(pid);
    // SAFETY: kill and reap our own child, whatever state the probe left it in.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut status = 0;
        while libc::waitpid(pid, &mut status, libc::__WALL) == pid
            && !libc::WIFEXITED(status)
            && !libc::WIFSIGNALED(status)
        {}
    }
    result
}

fn probe_child(pid: libc::pid_t) -> Result<(), String> {
    let mut status = 0;
    // SAFETY: waitpid on our own child with a pointer to a local.
    if unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) } != pid
        || !libc::WIFSTOPPED(status)
    {
        return Err("a test process did not start as expected".into());
    }
    if ptrace(
        PTRACE_SEIZE,
        pid,
        0,
        PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL,
    ) != 0
    {
        return Err(format!(
            "ptrace is not permitted here ({}; see kernel.yama.ptrace_scope, or the container's seccomp profile)",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let mut seen = false;
    loop {
        // SAFETY: as above.
        if unsafe { libc::waitpid(pid, &mut status, libc::__WALL) } != pid {
            return Err("lost the test process".into());
        }
        if libc::WIFEXITED(status) {
            return match libc::WEXITSTATUS(status) {
                10 => Err("the kernel refused no_new_privs".into()),
                11 => Err("seccomp filters are not allowed here (a kernel without CONFIG_SECCOMP_FILTER?)".into()),
                _ if seen => Ok(()),
                _ => Err("the seccomp filter did not stop the test process".into()),
            };
        }
        if libc::WIFSIGNALED(status) {
            return Err("the test process was killed".into());
        }
        let mut signal = 0;
        if status >> 16 == PTRACE_EVENT_SECCOMP {
            let info = syscall_info(pid)
                .ok_or("the kernel is older than 5.3 (no PTRACE_GET_SYSCALL_INFO)")?;
            if info.op != PTRACE_SYSCALL_INFO_SECCOMP || info.data[0] != libc::SYS_faccessat as u64
            {
                return Err("the kernel reported an unexpected syscall".into());
            }
            if !matches!(read_string(pid, info.data[2]), Ok(Some(path)) if path == b"/") {
                return Err(
                    "cannot read a traced process's memory (process_vm_readv refused)".into(),
                );
            }
            seen = true;
        } else if status >> 16 == 0 {
            signal = libc::WSTOPSIG(status);
        }
        ptrace(PTRACE_CONT, pid, 0, signal as usize);
    }
}
