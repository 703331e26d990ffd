//! Observing what a step's processes read, write and execute, through the kernel: the step
//! runs under `preflight __observe`, a ptrace tracer whose seccomp filter stops the step
//! only on syscalls that take a path. Static binaries and raw syscalls are seen as well as
//! libc calls; every child, however it was forked, is followed.
//!
//! `wrap` turns an invocation into the traced one, `read_report` reads what it saw.
//! Where tracing cannot work, `support` says why, once, and nothing is wrapped.

/// Items that exist only where the tracer works: Linux on x86_64 or aarch64.
macro_rules! where_traceable {
    ($($item:item)*) => {
        $(
            #[cfg(all(
                target_os = "linux",
                any(target_arch = "x86_64", target_arch = "aarch64")
            ))]
            $item
        )*
    };
}

where_traceable! {
    mod arch;
    mod filter;
    mod links;
    mod observer;
    mod syscall;
    mod tracer;
}
mod report;

use crate::process::Invocation;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use report::read_report;

/// What a step's processes did with paths. All paths are absolute and lexically
/// normalised (relative ones resolved against the process's folder or directory fd).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// Existing files and folders opened for reading, stat'ed, accessed, read as links,
    /// listed or executed.
    pub read: BTreeSet<PathBuf>,
    /// Paths probed that did not exist (ENOENT, ENOTDIR): they must still be absent.
    pub absent: BTreeSet<PathBuf>,
    /// Opened for writing, created, truncated, renamed to or from, unlinked, made.
    pub written: BTreeSet<PathBuf>,
    /// Programs executed (also in `read`), with the interpreters their `#!` lines name.
    pub executed: BTreeSet<PathBuf>,
    /// Folders whose list of names may have been read: every folder opened successfully
    /// for reading (not `O_PATH`), by its real path. Also in `read`, by the name opened.
    pub listed: BTreeSet<PathBuf>,
}

/// Whether steps can be observed on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    Available,
    /// Why not, in words for the user (said once).
    Unavailable(String),
}

/// Why an observation cannot be used (then nothing is cached from the run).
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("no observation was written to {path}")]
    Missing { path: PathBuf },
    #[error("cannot read the observation in {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the observation in {path} is damaged: {what}")]
    Corrupt { path: PathBuf, what: String },
    /// The run did something the tracer cannot follow; what it read is not fully known.
    #[error("the step's file accesses were not fully observed: {0}")]
    Incomplete(String),
}

/// The name of the hidden subcommand that runs a step under the tracer.
pub const SUBCOMMAND: &str = "__observe";

/// Whether observing works here; probed once per process.
pub fn support() -> &'static Support {
    static SUPPORT: OnceLock<Support> = OnceLock::new();
    SUPPORT.get_or_init(probe)
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn probe() -> Support {
    if std::env::current_exe().is_err() {
        return Support::Unavailable("preflight cannot find its own program file".into());
    }
    match tracer::probe() {
        Ok(()) => Support::Available,
        Err(why) => Support::Unavailable(why),
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn probe() -> Support {
    Support::Unavailable(
        "observing what steps read needs Linux on x86_64 or aarch64; steps are keyed on their \
         declared inputs only"
            .into(),
    )
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_program_file_is_started_through_proc_self_exe() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("preflight");
        std::fs::write(&present, "").unwrap();
        assert_eq!(program_file(Ok(present.clone())), present.into_os_string());
        let deleted = dir.path().join("preflight (deleted)");
        assert_eq!(program_file(Ok(deleted)), OsString::from("/proc/self/exe"));
        let unknown = Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(program_file(unknown), OsString::from("/proc/self/exe"));
    }
}

/// Turns a step's invocation into one that runs it under the tracer, which writes what it
/// saw to `report`. Use it only when `support()` is `Available`.
pub fn wrap(invocation: &Invocation, report: &Path) -> Invocation {
    let exe = program_file(std::env::current_exe());
    let mut args: Vec<OsString> = vec![
        SUBCOMMAND.into(),
        "--report".into(),
        report.as_os_str().to_owned(),
        "--".into(),
        invocation.program.clone(),
    ];
    args.extend(invocation.args.iter().cloned());
    Invocation { program: exe, args }
}

/// The program file that starts the tracer, given where this process's program is
/// (`current_exe()`). When that file is gone (replaced by a build or an upgrade while
/// preflight runs: Linux then names it "... (deleted)"), `/proc/self/exe` still starts
/// the same program in the child preflight forks for the step.
pub fn program_file(current: std::io::Result<PathBuf>) -> OsString {
    match current {
        Ok(path) if path.is_file() => path.into_os_string(),
        _ if cfg!(target_os = "linux") => OsString::from("/proc/self/exe"),
        Ok(path) => path.into_os_string(),
        Err(_) => OsString::from("preflight"),
    }
}

/// How the traced command ended, for the wrapper to end the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
}

/// How a traced run went, for `preflight __observe` to say and end with.
#[derive(Debug)]
pub enum Run {
    /// The command ran traced and ended so; `report_error` is set when the report could
    /// not be written (the run then is not cached, its outcome stands).
    Traced {
        ended: Ended,
        report_error: Option<std::io::Error>,
    },
    /// Tracing could not start: the command is to run untraced (no report is written).
    NotStarted(std::io::Error),
    /// The tracer lost track of the command: its outcome is unknown.
    Lost(std::io::Error),
}

/// Runs `program args` under the tracer and writes the report. This is the body of
/// `preflight __observe`; the tracer outlives it while processes the step left running
/// outside its process group live (see `observer`).
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub fn run(report_path: &Path, program: &std::ffi::OsStr, args: &[OsString]) -> Run {
    observer::run(report_path, program, args)
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
pub fn run(_report: &Path, _program: &std::ffi::OsStr, _args: &[OsString]) -> Run {
    Run::NotStarted(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "observing steps needs Linux on x86_64 or aarch64",
    ))
}

/// Replaces this process with `program args`, untraced, with the signal dispositions a
/// step gets. Returns only when the program cannot be run.
pub fn exec_untraced(program: &std::ffi::OsStr, args: &[OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: restoring the default disposition of a signal.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    std::process::Command::new(program).args(args).exec()
}

/// Ends this process the way the traced command ended: the same exit code, or the same
/// signal (without a core file of the wrapper).
pub fn end_like(ended: Ended) -> i32 {
    match ended {
        Ended::Exited(code) => code,
        Ended::Signaled(signal) => {
            // SAFETY: plain libc calls on this process.
            unsafe {
                let no_core = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                libc::signal(signal, libc::SIG_DFL);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, signal);
                libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                libc::raise(signal);
            }
            128 + signal
        }
    }
}
