//! The tracer: forks the step's command with a seccomp filter that hands path syscalls to
//! ptrace, follows every child, decodes each trapped syscall at entry (its paths are read
//! from the tracee's memory and resolved against its folder or directory fd) and classifies
//! it at exit, when its result is known (a read, a probe of a missing path, a write).
//!
//! All ptrace requests are made from the one thread that attached (ptrace requires it).
//! `kernel` holds the ptrace requests and the reading of a stopped task; `start` sets the
//! step up under the filter; `release` serves what outlives the step.

use super::syscall::{self, Call, Dir, Kind, Pending};
use super::{Ended, Observation, arch, filter, links};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::io::Read as _;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

mod kernel;
mod release;
mod start;

use kernel::*;

pub use start::{probe, start_traced};

/// How long, at most, the tracer serves processes still in the step's group after the
/// step's own process has ended, before the wrapper ends (see `Tracer::settle`).
const SETTLE_AT_MOST: std::time::Duration = std::time::Duration::from_millis(100);

/// Signals the wrapper leaves to the step: a timeout or cancellation signals the whole
/// process group, and the step must get the chance to handle it as it would untraced.
pub(super) const PASSED_ON: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

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

#[derive(Default)]
struct Task {
    pending: Option<Pending>,
    /// A read let go at its entry, its answer known (see `Settled`), until the task stops
    /// again: until then it may not have run yet (see `look_again`).
    let_go: Option<Pending>,
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
    settled: syscall::Settled,
    /// Folders found to be no symbolic links, when following paths through links.
    real_dirs: BTreeSet<PathBuf>,
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
            settled: syscall::Settled::default(),
            real_dirs: BTreeSet::new(),
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

    /// A task forked or cloned: its child is known from now on, before its first stop.
    fn forked(&mut self, tid: libc::pid_t) {
        if let Some(child) = event_message(tid) {
            self.tasks.entry(child).or_default();
        }
    }

    /// Follows every task until the root process ends.
    fn trace(&mut self) -> std::io::Result<Ended> {
        loop {
            let Some((tid, status)) = wait_any(0)? else {
                continue;
            };
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
        // Whatever this stop is, the task's last syscall has run.
        self.tasks.entry(tid).or_default().let_go = None;
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
        let Some(former) = event_message(tid) else {
            return;
        };
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
        if call.kind == Kind::NewView {
            // Counted whether or not it succeeds: its result would cost a stop, and a step
            // that tries it is rare.
            self.incomplete(
                "a process tried to change what paths name (chroot, mount): what it read \
                 would not be seen under the names the tracer knows",
            );
            return;
        }
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
        // (linkat(fd, "", new, AT_EMPTY_PATH) names only its new path.)
        let nothing_named =
            call.has_path() && pending.first.is_none() && pending.second.is_none();
        if nothing_named {
            return;
        }
        if self.settled.contains(&pending) {
            if let Some(task) = self.tasks.get_mut(&tid) {
                task.let_go = Some(pending);
            }
            return;
        }
        self.unsettle(&pending);
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
        let result = there_after_all(&pending, result);
        // Whether the answer came through a symbolic link: a link on the way may be
        // pointed elsewhere later by a change to it alone, so such an answer is not kept.
        let mut through_link = false;
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
                through_link = real.as_ref() != pending.first.as_ref();
                // Through a symbolic link, the file really opened is an input too.
                if let (Some(lexical), Some(real)) = (&pending.first, real)
                    && *lexical != real
                {
                    if syscall::opens_for_writing(pending.open_flags) {
                        self.settled.forget(&real);
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
            (Kind::Exec, Err(FOUND)) => {
                // A script that is there but would not run: its interpreter is missing,
                // or is no program. Either way, installing it changes what the step does.
                if let Some(interpreter) = pending.first.as_deref().and_then(interpreter_of) {
                    if interpreter.symlink_metadata().is_ok() {
                        self.observation.read.insert(interpreter);
                    } else {
                        self.observation.absent.insert(interpreter);
                    }
                }
            }
            _ => {}
        }
        if syscall::record(&pending, result, &mut self.observation) {
            self.cwds.clear();
        }
        through_link |= self.follow_links(&pending, result);
        if !through_link
            && !self.a_change_is_under_way()
            && syscall::already_known(&pending, &self.observation, &self.opened)
            && self.named_physically(pending.first.as_deref())
        {
            self.settled.insert(&pending);
        }
        if result.is_ok() {
            self.unsettle(&pending);
            if tree_change(&pending).is_some() {
                self.look_again();
            }
        }
    }

    /// After a change to the tree: the reads let go at their entry whose tasks have not
    /// stopped since may run after it, and find what it made (a link swapped in by a
    /// rename leads elsewhere). What they would find now is recorded too.
    fn look_again(&mut self) {
        let let_go: Vec<Pending> = self
            .tasks
            .values()
            .filter_map(|task| task.let_go.clone())
            .collect();
        for pending in let_go {
            let Some(path) = pending.first.as_deref() else {
                continue;
            };
            if path.starts_with("/proc") || path.starts_with("/dev") {
                continue;
            }
            let result = match std::fs::metadata(path) {
                Ok(_) => Ok(0),
                Err(e) => Err(e.raw_os_error().unwrap_or(libc::ENOENT)),
            };
            syscall::record(&pending, result, &mut self.observation);
            self.record_where_it_leads(path, false);
        }
    }

    /// What a call that may change the tree may change is no longer known: what was known
    /// of its paths (and, for a removal, a rename or a new link, of every path under them)
    /// is asked again, and folders known to be no links there are looked at again. Done
    /// when the call enters (so that no process's read is let go while the change may be
    /// under way) and again when it has succeeded (what was learnt meanwhile may predate it).
    fn unsettle(&mut self, pending: &Pending) {
        let Some(under) = tree_change(pending) else {
            return;
        };
        for path in [&pending.first, &pending.second].into_iter().flatten() {
            if path.starts_with("/proc") || path.starts_with("/dev") {
                // A write to /dev/null or /dev/fd/N changes no name (the file behind a
                // descriptor is forgotten by its real path, in `exited`); a name made or
                // removed there (`/proc/self/cwd/x`) may be any path.
                if under {
                    self.settled = syscall::Settled::default();
                    self.real_dirs.clear();
                }
                continue;
            }
            if under {
                links::remove_under(&mut self.real_dirs, path);
            }
            // Answers are kept only for paths named without links on the way, so a change
            // made through a linked folder may touch any of them.
            if !self.named_physically(Some(path)) {
                self.settled = syscall::Settled::default();
                self.real_dirs.clear();
            } else if under {
                self.settled.forget_under(path);
            } else {
                self.settled.forget(path);
            }
        }
    }

    /// Whether some task is inside a call that may change the tree: what a read finds then
    /// may be from before or after the change, and is not kept.
    fn a_change_is_under_way(&self) -> bool {
        self.tasks
            .values()
            .any(|task| task.pending.as_ref().is_some_and(|p| tree_change(p).is_some()))
    }

    /// Whether `path` is named without a link among its folders (the last name may be
    /// one) and outside /proc and /dev (whose names differ per process): then a change to
    /// it, or to a folder above it, is made under this same name.
    fn named_physically(&mut self, path: Option<&Path>) -> bool {
        let Some(folder) = path.and_then(Path::parent) else {
            return false;
        };
        !folder.starts_with("/proc")
            && !folder.starts_with("/dev")
            && links::has_no_link_on_the_way(folder, &mut self.real_dirs)
    }

    /// A stat, an exec, a `cd` or an open that failed names a path that may lead through
    /// symbolic links: each link is read, and what the last one leads to is read or must
    /// stay absent. (A successful open names its file through `/proc/TID/fd` instead.)
    /// Returns whether the path led through a link.
    fn follow_links(&mut self, pending: &Pending, result: syscall::Result) -> bool {
        let follows = match pending.kind {
            Kind::Probe | Kind::Exec | Kind::Chdir => true,
            Kind::Open | Kind::OpenHow | Kind::Creat => result.is_err(),
            _ => false,
        };
        match pending.first.as_ref().filter(|_| follows) {
            Some(path) => {
                self.record_where_it_leads(path, pending.kind == Kind::Exec && result.is_ok())
            }
            None => false,
        }
    }

    /// Records the links on the way to `path` as read, and what the last one leads to as
    /// read (and `executed`, when it was run) or as to stay absent. Returns whether the path
    /// led through a link.
    fn record_where_it_leads(&mut self, path: &Path, executed: bool) -> bool {
        let Some(followed) = links::follow(path, &mut self.real_dirs) else {
            return false;
        };
        let o = &mut self.observation;
        if followed.links.iter().any(|link| link == path) {
            // The path is itself a link: it is there, whatever it leads to.
            o.absent.remove(path);
            o.read.insert(path.to_path_buf());
        }
        o.read.extend(followed.links);
        if followed.exists {
            if executed {
                o.executed.insert(followed.target.clone());
            }
            o.read.insert(followed.target);
        } else {
            o.absent.insert(followed.target);
        }
        true
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
        let path = through_process_link(tid, &path)?.unwrap_or(path);
        let base = if path.is_absolute() {
            Some(PathBuf::from("/"))
        } else {
            match dir {
                Dir::Arg(arg) if args[arg] as i32 != libc::AT_FDCWD => {
                    task_link(&format!("/proc/{tid}/fd/{}", args[arg] as i32))?
                }
                _ => self.cwd(tid)?,
            }
        };
        let Some(base) = base else {
            return Ok(None);
        };
        if path.components().any(|c| c == Component::ParentDir) {
            return Ok(Some(self.physical(&base.join(&path))));
        }
        Ok(Some(syscall::absolute(&base, &path)))
    }

    /// `path` with `..` taken the way the kernel takes it: the folder above where the path
    /// so far leads, through its links (`link/..` is the parent of the link's target, not
    /// the folder holding the link). The links on the way are read. Where the path so far
    /// is no folder (missing, a file, a dangling link), the kernel stops there and the
    /// call fails: that name is what the call depends on, and is returned.
    fn physical(&mut self, path: &Path) -> PathBuf {
        let mut out = PathBuf::from("/");
        for component in path.components() {
            match component {
                Component::Normal(name) => out.push(name),
                Component::ParentDir => {
                    if let Some(followed) = links::follow(&out, &mut self.real_dirs) {
                        self.observation.read.extend(followed.links);
                        if !followed.exists {
                            // The call fails there; it would not, were the target made.
                            self.observation.absent.insert(followed.target);
                            return out;
                        }
                        out = followed.target;
                    }
                    if !out.is_dir() {
                        return out;
                    }
                    out.pop();
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        out
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

/// The errno a failure is recorded with when it looked like "missing" but its path is
/// there (see `there_after_all`): any errno that is not ENOENT or ENOTDIR records a read.
const FOUND: i32 = libc::EEXIST;

/// A failure that reads as "the path is missing" although it is there: ENOTDIR for a file
/// named with a trailing slash, a folder renamed onto a file or rmdir of a file; ENOENT
/// from an exec whose script is there and whose interpreter is not. The call found the
/// path (and recorded as absent, it would make the step run every time): it becomes a
/// failure that records a read. Looked up at the call's end, before the caller goes on.
fn there_after_all(pending: &Pending, result: syscall::Result) -> syscall::Result {
    let looks_missing = match result {
        Err(libc::ENOTDIR) => true,
        Err(libc::ENOENT) => pending.kind == Kind::Exec,
        _ => false,
    };
    match pending.first.as_deref() {
        Some(path)
            if looks_missing
                && !path.starts_with("/proc")
                && !path.starts_with("/dev")
                && path.symlink_metadata().is_ok() =>
        {
            Err(FOUND)
        }
        _ => result,
    }
}

/// `path` named through a process's link in /proc (`/proc/self/cwd/x`, `/proc/PID/root/x`,
/// `/proc/thread-self/fd/3/x`, `/dev/fd/3/x`) as the path where that link leads for the
/// calling thread `tid`, followed by the rest; None for any other path. A link with
/// nothing after it names the process's own folder or descriptor, and is left as it is:
/// what it opens is named through /proc/TID/fd at the call's end.
fn through_process_link(tid: libc::pid_t, path: &Path) -> Result<Option<PathBuf>, Unreadable> {
    // Most paths are not under /proc or /dev: told apart by their first bytes, before
    // anything is taken apart.
    let bytes = path.as_os_str().as_bytes();
    if !(bytes.starts_with(b"/proc/") || bytes.starts_with(b"/dev/fd/")) {
        return Ok(None);
    }
    // Names, and `..` (kept for the rest of the path, which is resolved from the link's
    // target as the kernel does).
    let names: Vec<&OsStr> = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .map(|c| c.as_os_str())
        .collect();
    // The process whose links these are, and where its links start among the names.
    let (process, at) = match names.as_slice() {
        [dev, fd, ..] if *dev == "dev" && *fd == "fd" => (tid.to_string(), 1),
        [proc, who, ..] if *proc == "proc" && (*who == "self" || *who == "thread-self") => {
            (tid.to_string(), 2)
        }
        [proc, who, ..]
            if *proc == "proc" && who.as_bytes().iter().all(u8::is_ascii_digit) =>
        {
            (who.to_string_lossy().into_owned(), 2)
        }
        _ => return Ok(None),
    };
    let (link, rest) = match &names[at..] {
        [kind, rest @ ..] if *kind == "cwd" || *kind == "root" => {
            (format!("/proc/{process}/{}", kind.to_string_lossy()), rest)
        }
        [fd, number, rest @ ..]
            if *fd == "fd" && number.as_bytes().iter().all(u8::is_ascii_digit) =>
        {
            (format!("/proc/{process}/fd/{}", number.to_string_lossy()), rest)
        }
        _ => return Ok(None),
    };
    if rest.is_empty() {
        return Ok(None);
    }
    Ok(task_link(&link)?.map(|target| rest.iter().fold(target, |at, name| at.join(name))))
}

/// Whether a call may change the tree: `Some(true)` when it may change what lies under its
/// paths too (a removal, a rename, a new link, a hard link, a chmod), `Some(false)` when only
/// the paths themselves (a file written, a folder made).
fn tree_change(pending: &Pending) -> Option<bool> {
    match pending.kind {
        // A hard link of a symbolic link is a new link.
        Kind::Modify | Kind::Rename | Kind::Symlink | Kind::Link => Some(true),
        Kind::Mkdir | Kind::Creat => Some(false),
        Kind::Open | Kind::OpenHow => syscall::opens_for_writing(pending.open_flags).then_some(false),
        _ => None,
    }
}

/// The interpreter an executed script's `#!` line names.
fn interpreter_of(program: &Path) -> Option<PathBuf> {
    let mut head = [0u8; 256];
    let mut file = std::fs::File::open(program).ok()?;
    let n = file.read(&mut head).ok()?;
    syscall::shebang_interpreter(&head[..n])
}
