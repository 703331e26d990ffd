//! Starting a step traced: the child set-up before its exec (stop for the tracer, no new
//! privileges, the seccomp filter), and the probe that checks all of it works here.

use super::*;

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
        if !forbid_new_privileges() || !install_filter(&fprog) {
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
            if !forbid_new_privileges() {
                libc::_exit(10);
            }
            if !install_filter(&fprog) {
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

/// Forbids this process and its children to gain privileges (set-user-id programs), which
/// an unprivileged process must before it installs a seccomp filter. Async-signal-safe.
fn forbid_new_privileges() -> bool {
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        ) == 0
    }
}

/// Installs the seccomp filter `fprog` on this process and its future children.
/// Async-signal-safe.
fn install_filter(fprog: &SockFprog) -> bool {
    // SAFETY: `fprog` points to a filter program that outlives the call.
    unsafe {
        libc::prctl(
            PR_SET_SECCOMP,
            SECCOMP_MODE_FILTER,
            fprog as *const SockFprog,
        ) == 0
    }
}
