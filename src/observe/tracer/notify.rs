//! The faster handover, where the kernel allows it (Linux 5.5 and later): seccomp user
//! notification. The filter hands each path syscall to the tracer as a message on a
//! descriptor instead of a ptrace stop; the calling thread waits while the tracer reads its
//! paths, then makes the call itself (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`). There is no stop
//! at the call's end and no event for a fork or an exec (children inherit the filter), so a
//! path syscall costs one round trip instead of two ptrace stops.
//!
//! The tracer does not see a call's result: it looks the path up itself while the thread
//! waits, and records what that lookup says the call finds (`predicted`). Processes the
//! step leaves behind come to the tracer (a child subreaper), so that it knows which are
//! the step's when the step ends, and reaps them.

use super::release::StopsFd;
use super::start::{ChildPlan, exec, forbid_new_privileges, reset_signals};
use super::*;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Wake the tracer on the CPU of the thread that waits for it (Linux 6.6): a round trip
/// then costs about what a pipe's does. Older kernels refuse the flag; it only speeds up.
const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: libc::c_ulong = 1;

/// The filter's listener, and the signalfd that tells of a child's end.
pub(super) struct Listener {
    notices: OwnedFd,
    children: StopsFd,
}

/// What one wait saw.
#[derive(Default)]
struct Woken {
    notice: bool,
    /// No process uses the filter any more.
    no_one_left: bool,
    child: bool,
    wrapper_gone: bool,
}

/// Forks `plan`'s command under a filter whose path syscalls are notified, and takes the
/// filter's listener from the child. None when this does not work here (an old kernel, a
/// sandbox that forbids it): the child has then run nothing, and ptrace is used instead.
pub(super) fn start(plan: &ChildPlan) -> Option<Tracer> {
    let children = StopsFd::new()?;
    let (ours, theirs) = socket_pair()?;
    set_subreaper(true);
    // SAFETY: getpid(2) and fork(2); the child runs only `child`, which is
    // async-signal-safe.
    let tracer = unsafe { libc::getpid() };
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        set_subreaper(false);
        return None;
    }
    if pid == 0 {
        child(plan, theirs.as_raw_fd(), tracer);
    }
    drop(theirs);
    let Some(notices) = receive_fd(&ours) else {
        // The child could not install the filter and ended without running anything.
        let mut status = 0;
        // SAFETY: waitpid on our own child with a pointer to a local.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        set_subreaper(false);
        return None;
    };
    // SAFETY: an ioctl with an integer argument on our own listener.
    unsafe {
        libc::ioctl(
            notices.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
            SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
        )
    };
    Some(Tracer::new(pid, Some(Listener { notices, children })))
}

/// Runs in the forked child: install the filter, hand its listener to the tracer, exec.
/// Ends with nothing run when any of that fails. Async-signal-safe.
fn child(plan: &ChildPlan, to_tracer: RawFd, tracer: libc::pid_t) -> ! {
    let fprog = plan.fprog();
    reset_signals();
    // SAFETY: only async-signal-safe calls on data prepared before fork.
    unsafe {
        // A step whose tracer is gone would find every path syscall failing (ENOSYS): its
        // command goes with the tracer instead, as a ptrace tracee does (PTRACE_O_EXITKILL).
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != tracer || !forbid_new_privileges() {
            libc::_exit(126);
        }
        let listener = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &fprog as *const SockFprog,
        );
        if listener < 0 || !send_fd(to_tracer, listener as RawFd) {
            libc::_exit(126);
        }
        libc::close(listener as RawFd);
        libc::close(to_tracer);
    }
    exec(plan)
}

/// Checks, in a throwaway child, that a notified path syscall arrives and its path can be
/// read.
pub(super) fn probe() -> bool {
    static PROBE_PATH: &[u8] = b"/\0";
    let Some((ours, theirs)) = socket_pair() else {
        return false;
    };
    let filter = filter::program(Handover::Notify);
    let fprog = SockFprog {
        len: filter.len() as libc::c_ushort,
        filter: filter.as_ptr(),
    };
    // SAFETY: fork(2); the child makes only async-signal-safe calls on data built before.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return false;
    }
    if pid == 0 {
        // SAFETY: async-signal-safe calls only.
        unsafe {
            let listener = if forbid_new_privileges() {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                    &fprog as *const SockFprog,
                )
            } else {
                -1
            };
            if listener < 0 || !send_fd(theirs.as_raw_fd(), listener as RawFd) {
                libc::_exit(1);
            }
            libc::close(listener as RawFd);
            libc::syscall(
                libc::SYS_faccessat,
                libc::AT_FDCWD,
                PROBE_PATH.as_ptr(),
                libc::F_OK,
            );
            libc::_exit(0);
        }
    }
    drop(theirs);
    let seen = receive_fd(&ours).is_some_and(|notices| {
        let mut notice = empty_notice();
        let received = receive(&notices, &mut notice)
            && notice.data.nr as libc::c_long == libc::SYS_faccessat
            && matches!(
                read_string(notice.pid as libc::pid_t, notice.data.args[1]),
                Ok(Some(path)) if path == b"/"
            );
        go_on(&notices, notice.id);
        received
    });
    let mut status = 0;
    // SAFETY: kill and reap our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
    }
    seen
}

impl Tracer {
    fn listener(&self) -> &Listener {
        self.listener.as_ref().expect("a notified tracer has a listener")
    }

    /// Serves path syscalls until the root process ends.
    pub(super) fn trace_notified(&mut self) -> std::io::Result<Ended> {
        loop {
            if let Some(ended) = self.root_ended()? {
                return Ok(ended);
            }
            // A child's end is looked at only when one is announced.
            loop {
                let woken = self.wait(None, -1);
                if woken.notice {
                    self.serve_notice();
                }
                if woken.child {
                    break;
                }
            }
        }
    }

    /// How the root ended, once it has (reaped).
    fn root_ended(&mut self) -> std::io::Result<Option<Ended>> {
        self.listener().children.drain();
        let mut status = 0;
        // SAFETY: waitpid on our own child with a pointer to a local.
        let r = unsafe { libc::waitpid(self.root, &mut status, libc::WNOHANG) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if r == 0 || !(libc::WIFEXITED(status) || libc::WIFSIGNALED(status)) {
            return Ok(None);
        }
        Ok(Some(if libc::WIFEXITED(status) {
            Ended::Exited(libc::WEXITSTATUS(status))
        } else {
            Ended::Signaled(libc::WTERMSIG(status))
        }))
    }

    /// The settle of `Tracer::settle`, notified: serves path syscalls until no process of
    /// the step's in `group` is running, at most `SETTLE_AT_MOST`.
    pub(super) fn settle_notified(&mut self, group: libc::pid_t) {
        let deadline = std::time::Instant::now() + SETTLE_AT_MOST;
        loop {
            let woken = self.wait(None, 0);
            if woken.notice {
                self.serve_notice();
                continue;
            }
            self.reap();
            if woken.no_one_left || !processes_in(group).iter().any(|p| p.running) {
                return;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            let woken = self.wait(None, left.as_millis().clamp(1, 5) as i32);
            if woken.notice {
                self.serve_notice();
            }
        }
    }

    /// The release of `Tracer::release`, notified: path syscalls go on unrecorded until no
    /// process uses the filter; the step's processes still in `group` wait at their next
    /// one until `wrapper` is gone, and are then killed.
    pub(super) fn release_notified(&mut self, group: libc::pid_t, wrapper: Option<&std::fs::File>) {
        if wrapper.is_some() {
            loop {
                self.reap();
                let woken = self.wait(wrapper, -1);
                if woken.no_one_left {
                    return;
                }
                if woken.wrapper_gone {
                    break;
                }
                if woken.notice {
                    self.serve_notice();
                }
            }
        }
        self.step_group = None;
        for process in processes_in(group) {
            // SAFETY: kill(2) on a process under this one.
            unsafe { libc::kill(process.pid, libc::SIGKILL) };
        }
        loop {
            self.reap();
            let woken = self.wait(None, -1);
            if woken.no_one_left {
                self.reap();
                return;
            }
            if woken.notice {
                self.serve_notice_after(group);
            }
        }
    }

    /// After the wrapper is gone: a process still in the step's group goes with it.
    fn serve_notice_after(&mut self, group: libc::pid_t) {
        let notices = self.listener().notices.as_raw_fd();
        let mut notice = empty_notice();
        if !receive_raw(notices, &mut notice) {
            return;
        }
        let pid = notice.pid as libc::pid_t;
        // SAFETY: getpgid and kill on a notified task's id.
        if pid > 0 && unsafe { libc::getpgid(pid) } == group {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return;
        }
        go_on_raw(notices, notice.id);
    }

    /// Reaps every child that has ended (the step's orphans come to this process, and
    /// the filter counts a process as its user until it is reaped).
    fn reap(&self) {
        self.listener().children.drain();
        let mut status = 0;
        // SAFETY: waitpid with a pointer to a local.
        while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) } > 0 {}
    }

    /// Waits up to `timeout_ms` (-1: for ever) for a notified syscall, a child's end or
    /// `wrapper`'s reader to be gone.
    fn wait(&self, wrapper: Option<&std::fs::File>, timeout_ms: i32) -> Woken {
        let listener = self.listener();
        let mut polled = [
            listener.notices.as_raw_fd(),
            listener.children.raw,
            wrapper.map_or(-1, |w| w.as_raw_fd()),
        ]
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        polled[2].events = 0;
        // SAFETY: poll on valid pollfds that live for the call (-1 is skipped).
        let r = unsafe { libc::poll(polled.as_mut_ptr(), 3, timeout_ms) };
        if r <= 0 {
            return Woken::default();
        }
        Woken {
            notice: polled[0].revents & libc::POLLIN != 0,
            no_one_left: polled[0].revents & libc::POLLIN == 0
                && polled[0].revents & (libc::POLLHUP | libc::POLLERR) != 0,
            child: polled[1].revents != 0,
            wrapper_gone: polled[2].revents != 0,
        }
    }

    /// Takes one notified syscall: records it (while recording), and lets it go on, except
    /// for a process still in the step's group after the recording (it would read
    /// unrecorded; it waits to be killed with the group).
    fn serve_notice(&mut self) {
        let notices = self.listener().notices.as_raw_fd();
        let mut notice = empty_notice();
        if !receive_raw(notices, &mut notice) {
            return;
        }
        let tid = notice.pid as libc::pid_t;
        if self.recording {
            self.noticed(notices, &notice);
        } else if let Some(group) = self.step_group
            // SAFETY: getpgid on a notified task's id.
            && tid > 0
            && unsafe { libc::getpgid(tid) } == group
        {
            return;
        }
        go_on_raw(notices, notice.id);
    }

    /// Records what a notified syscall will do, from its arguments and a lookup of its
    /// paths made while its thread waits.
    fn noticed(&mut self, notices: RawFd, notice: &libc::seccomp_notif) {
        let tid = notice.pid as libc::pid_t;
        if tid <= 0 {
            self.incomplete(
                "a process in another pid namespace used a path: the tracer cannot read it",
            );
            return;
        }
        let nr = notice.data.nr as u64;
        let Some(pending) = self.decode(tid, notice.data.arch, nr, &notice.data.args) else {
            return;
        };
        if self.settled.contains(&pending) {
            return;
        }
        // The thread may have been killed while its memory was read, and its id reused.
        // SAFETY: an ioctl reading a local u64.
        if unsafe { libc::ioctl(notices, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &notice.id) } != 0 {
            return;
        }
        // What is known of the paths a change names is forgotten before the change runs.
        self.unsettle(&pending);
        let result = predicted(&pending, nr, &notice.data.args);
        let opened = match (pending.kind, result) {
            (Kind::Open | Kind::OpenHow | Kind::Creat, Ok(_)) => {
                pending.first.as_ref().map(|path| self.opened_file(path))
            }
            _ => None,
        };
        let through_link = self.finished(&pending, result, opened);
        if !through_link
            && syscall::already_known(&pending, &self.observation, &self.opened)
            && self.named_physically(pending.first.as_deref())
        {
            self.settled.insert(&pending);
        }
    }

    /// The file an open of `path` finds, as `/proc/TID/fd` would name it.
    fn opened_file(&mut self, path: &Path) -> Opened {
        if path.starts_with("/proc") || path.starts_with("/dev") {
            return Opened::default();
        }
        let real = match links::follow(path, &mut self.real_dirs) {
            Some(followed) => followed.target,
            None => path.to_path_buf(),
        };
        Opened {
            is_dir: std::fs::metadata(&real).is_ok_and(|m| m.is_dir()),
            real: Some(real),
        }
    }
}

/// What a path syscall will return, told from the state of its paths before it runs (the
/// thread waits meanwhile), with the errors the kernel gives for the same lookups. Where
/// the lookup cannot tell, a call that writes is taken to fail: a path wrongly taken as
/// written would be left out of the step's inputs, one wrongly taken as read only costs a
/// cache hit. Under /proc and /dev, where names differ per process, a call is taken to
/// succeed (what it finds there is no input of the repository's).
fn predicted(pending: &Pending, nr: u64, args: &[u64; 6]) -> syscall::Result {
    let Some(path) = pending.first.as_deref() else {
        return Ok(0);
    };
    if path.starts_with("/proc") || path.starts_with("/dev") {
        return Ok(0);
    }
    match pending.kind {
        Kind::Open | Kind::OpenHow | Kind::Creat => opened(path, pending.open_flags),
        Kind::Probe | Kind::Chdir => following(path).map(|_| 0),
        Kind::Exec => match following(path)? {
            meta if meta.is_file() => Ok(0),
            _ => Err(libc::EACCES),
        },
        Kind::ReadLink => match not_following(path)? {
            meta if meta.file_type().is_symlink() => Ok(0),
            _ => Err(libc::EINVAL),
        },
        Kind::Mkdir | Kind::Symlink => made(path),
        Kind::Modify => match arch::modification(nr, args) {
            arch::Modification::Node => made(path),
            arch::Modification::RemoveFile => match not_following(path)? {
                meta if meta.is_dir() => Err(libc::EISDIR),
                _ => name_changeable(path),
            },
            arch::Modification::RemoveFolder => match not_following(path)? {
                meta if !meta.is_dir() => Err(libc::ENOTDIR),
                _ if !is_empty_folder(path) => Err(libc::ENOTEMPTY),
                _ => name_changeable(path),
            },
            arch::Modification::Change => following(path).map(|_| 0),
        },
        Kind::Rename => renamed(path, pending.second.as_deref(), arch::rename_flags(nr, args)),
        Kind::Link => {
            let meta = not_following(path)?;
            let Some(new) = pending.second.as_deref() else {
                return Err(libc::ENOENT);
            };
            if meta.is_dir() {
                return Err(libc::EPERM);
            }
            made(new)
        }
        Kind::Fchdir | Kind::Ptrace | Kind::NewView => Ok(0),
    }
}

fn code_of(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn following(path: &Path) -> Result<std::fs::Metadata, i32> {
    std::fs::metadata(path).map_err(code_of)
}

fn not_following(path: &Path) -> Result<std::fs::Metadata, i32> {
    std::fs::symlink_metadata(path).map_err(code_of)
}

/// An open with `flags`.
fn opened(path: &Path, flags: u64) -> syscall::Result {
    let flags = flags as libc::c_int;
    let creating = flags & libc::O_CREAT != 0;
    if creating && flags & libc::O_EXCL != 0 {
        return made(path);
    }
    let found = if flags & libc::O_NOFOLLOW != 0 {
        not_following(path)
    } else {
        following(path)
    };
    let meta = match found {
        Ok(meta) => meta,
        Err(libc::ENOENT) if creating => return name_makeable(path),
        Err(e) => return Err(e),
    };
    if flags & libc::O_DIRECTORY != 0 && !meta.is_dir() {
        return Err(libc::ENOTDIR);
    }
    if meta.file_type().is_symlink() && flags & libc::O_PATH == 0 {
        return Err(libc::ELOOP);
    }
    if syscall::opens_for_writing(flags as u64) && flags & libc::O_PATH == 0 {
        if meta.is_dir() {
            return Err(libc::EISDIR);
        }
        if !accessible(path, libc::W_OK) {
            return Err(libc::EACCES);
        }
    }
    Ok(0)
}

/// A call that makes `path` (mkdir, symlink, mknod, link, O_CREAT|O_EXCL).
fn made(path: &Path) -> syscall::Result {
    match not_following(path) {
        Ok(_) => Err(libc::EEXIST),
        Err(libc::ENOENT) => name_makeable(path),
        Err(e) => Err(e),
    }
}

/// Whether missing `path` can be made: its folder is there and may be written.
fn name_makeable(path: &Path) -> syscall::Result {
    let Some(folder) = path.parent() else {
        return Err(libc::EEXIST);
    };
    match following(folder)? {
        meta if !meta.is_dir() => Err(libc::ENOTDIR),
        _ if accessible(folder, libc::W_OK | libc::X_OK) => Ok(0),
        _ => Err(libc::EACCES),
    }
}

/// A call that removes or moves the name `path` (which exists).
fn name_changeable(path: &Path) -> syscall::Result {
    if folder_writable(path) {
        Ok(0)
    } else {
        Err(libc::EACCES)
    }
}

/// rename(`from`, `to`) with RENAME_* `flags`.
fn renamed(from: &Path, to: Option<&Path>, flags: libc::c_uint) -> syscall::Result {
    let source = not_following(from)?;
    let Some(to) = to else {
        return Err(libc::ENOENT);
    };
    let exchange = flags & libc::RENAME_EXCHANGE != 0;
    match not_following(to) {
        Ok(_) if flags & libc::RENAME_NOREPLACE != 0 => Err(libc::EEXIST),
        Ok(_) if exchange => name_changeable(from).and_then(|_| name_changeable(to)),
        Ok(target) if target.is_dir() && !source.is_dir() => Err(libc::EISDIR),
        Ok(target) if !target.is_dir() && source.is_dir() => Err(libc::ENOTDIR),
        Ok(target) if target.is_dir() && !is_empty_folder(to) => Err(libc::ENOTEMPTY),
        Ok(_) => name_changeable(from).and_then(|_| name_changeable(to)),
        Err(_) if exchange => Err(libc::ENOENT),
        Err(libc::ENOENT) => name_changeable(from).and_then(|_| name_makeable(to)),
        Err(e) => Err(e),
    }
}

fn is_empty_folder(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none())
}

/// Whether a name may be removed or moved in the folder holding `path`.
fn folder_writable(path: &Path) -> bool {
    path.parent()
        .is_some_and(|folder| folder.is_dir() && accessible(folder, libc::W_OK | libc::X_OK))
}

/// access(2) with the tracer's credentials, which are the step's (no program of the step
/// may gain privileges).
fn accessible(path: &Path, mode: libc::c_int) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) on a NUL-terminated path.
    unsafe { libc::access(path.as_ptr(), mode) == 0 }
}

fn empty_notice() -> libc::seccomp_notif {
    // SAFETY: a plain C struct of integers, for which all zeroes is a value (and what
    // SECCOMP_IOCTL_NOTIF_RECV requires).
    unsafe { std::mem::zeroed() }
}

fn receive(notices: &OwnedFd, notice: &mut libc::seccomp_notif) -> bool {
    receive_raw(notices.as_raw_fd(), notice)
}

/// Takes the next notified syscall; false when there is none (its thread was killed
/// meanwhile, or a signal interrupted the wait).
fn receive_raw(notices: RawFd, notice: &mut libc::seccomp_notif) -> bool {
    // SAFETY: the ioctl writes one seccomp_notif into `notice`.
    unsafe { libc::ioctl(notices, libc::SECCOMP_IOCTL_NOTIF_RECV, notice as *mut _) == 0 }
}

fn go_on(notices: &OwnedFd, id: u64) {
    go_on_raw(notices.as_raw_fd(), id);
}

/// Lets a notified syscall go on as if no filter were there. A thread killed meanwhile
/// makes it fail (ENOENT), which changes nothing.
fn go_on_raw(notices: RawFd, id: u64) {
    let response = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: 0,
        flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
    };
    // SAFETY: the ioctl reads one seccomp_notif_resp from a local.
    unsafe { libc::ioctl(notices, libc::SECCOMP_IOCTL_NOTIF_SEND, &response) };
}

/// A process under the tracer (see `processes_in`).
struct Process {
    pid: libc::pid_t,
    running: bool,
}

/// The processes under this one in process group `group`: the step's (every process the
/// step leaves comes to this one, its subreaper), whatever else shares the group.
fn processes_in(group: libc::pid_t) -> Vec<Process> {
    // SAFETY: getpid(2) cannot fail.
    let me = unsafe { libc::getpid() };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut all: Vec<(libc::pid_t, libc::pid_t, libc::pid_t, u8)> = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command's closing parenthesis (which may hold one): state ppid pgrp.
        let Some(at) = stat.iter().rposition(|&b| b == b')') else {
            continue;
        };
        let fields: Vec<&[u8]> = stat[at + 1..]
            .split(|&b| b == b' ')
            .filter(|f| !f.is_empty())
            .take(3)
            .collect();
        let number = |f: &[u8]| std::str::from_utf8(f).ok()?.parse::<libc::pid_t>().ok();
        if let [state, ppid, pgrp] = fields[..]
            && let (Some(ppid), Some(pgrp)) = (number(ppid), number(pgrp))
        {
            all.push((pid, ppid, pgrp, state[0]));
        }
    }
    let parent_of: HashMap<libc::pid_t, libc::pid_t> =
        all.iter().map(|&(pid, ppid, _, _)| (pid, ppid)).collect();
    let under_me = |mut pid: libc::pid_t| {
        for _ in 0..all.len() {
            match parent_of.get(&pid) {
                Some(&parent) if parent == me => return true,
                Some(&parent) if parent > 1 => pid = parent,
                _ => return false,
            }
        }
        false
    };
    all.iter()
        .filter(|&&(pid, _, pgrp, _)| pgrp == group && under_me(pid))
        .map(|&(pid, _, _, state)| Process {
            pid,
            running: state == b'R',
        })
        .collect()
}


fn set_subreaper(on: bool) {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, libc::c_ulong::from(on), 0, 0, 0) };
}

/// A connected pair of Unix sockets, closed on exec.
fn socket_pair() -> Option<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into the local array.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    // SAFETY: both descriptors were just made and are owned here alone.
    (r == 0).then(|| unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Space for one descriptor in a control message, aligned as `cmsghdr` needs.
#[repr(C)]
union ControlBuffer {
    buf: [u8; 64],
    _align: libc::cmsghdr,
}

/// Sends descriptor `fd` over socket `socket`. Async-signal-safe.
fn send_fd(socket: RawFd, fd: RawFd) -> bool {
    // SAFETY: builds a message with one SCM_RIGHTS control message in local buffers and
    // sends it; the CMSG_* macros only compute addresses inside `control`.
    unsafe {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut control = ControlBuffer { buf: [0; 64] };
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.buf.as_mut_ptr().cast();
        message.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as _;
        let header = libc::CMSG_FIRSTHDR(&message);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<RawFd>(), fd);
        libc::sendmsg(socket, &message, 0) == 1
    }
}

/// Receives one descriptor sent by `send_fd`; None when the other end closed first.
fn receive_fd(socket: &OwnedFd) -> Option<OwnedFd> {
    // SAFETY: receives into local buffers, then reads the descriptor from the control
    // message the kernel filled in, checking its level, type and length first.
    unsafe {
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut control = ControlBuffer { buf: [0; 64] };
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.buf.as_mut_ptr().cast();
        message.msg_controllen = std::mem::size_of::<ControlBuffer>() as _;
        loop {
            let n = libc::recvmsg(socket.as_raw_fd(), &mut message, libc::MSG_CMSG_CLOEXEC);
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            if n != 1 {
                return None;
            }
            break;
        }
        let header = libc::CMSG_FIRSTHDR(&message);
        if header.is_null()
            || (*header).cmsg_level != libc::SOL_SOCKET
            || (*header).cmsg_type != libc::SCM_RIGHTS
            || ((*header).cmsg_len as usize)
                < libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize
        {
            return None;
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(header).cast::<RawFd>());
        Some(OwnedFd::from_raw_fd(fd))
    }
}
