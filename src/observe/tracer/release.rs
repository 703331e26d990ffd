//! After the root's end: the settle, and serving the processes that outlive the step (a
//! daemon that left its group) until they end, as their seccomp filter needs a tracer.

use super::*;

impl Tracer {
    /// After the root's end, before the wrapper is told: serves the remaining tasks until
    /// none still in process group `group` (the step's) is on its way (running, or stopped
    /// for the tracer), at most `SETTLE_AT_MOST`. The group kill that follows the step's
    /// end then finds a process that was leaving the group (`setsid` starting a daemon)
    /// out of it, as it would untraced (where it runs faster: no stop for a tracer). A
    /// step that left nothing behind costs one waitpid here.
    pub(super) fn settle(&mut self, group: libc::pid_t) {
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
        // Until ECHILD: no task is left.
        while let Ok(waited) = wait_any(0) {
            let Some((tid, status)) = waited else {
                continue;
            };
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
            match wait_any(libc::WNOHANG) {
                Ok(None) => return true,
                Err(_) => return false,
                Ok(Some((tid, status))) if self.recording => self.on_stop(tid, status),
                Ok(Some((tid, status))) => self.resume_released(tid, status),
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
