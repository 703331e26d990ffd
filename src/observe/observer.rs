//! The two processes of `preflight __observe`. The wrapper (the process the executor or the
//! worker starts and waits for, in the step's process group) forks the tracer; the tracer
//! forks the step, which stays in the wrapper's group, and then moves to a group of its own,
//! away from the step's output and folder.
//!
//! So the group kill that ends a step (its end, a timeout, a cancellation) reaches the
//! wrapper, the step and whatever stayed in the group, as it does untraced, but not the
//! tracer. When the step's own process ends, the tracer hands the wrapper how it ended and
//! what it read; the wrapper writes the report and ends the same way at once. Once the
//! wrapper is gone, the tracer kills the traced processes still in the step's group (as the
//! group kill that follows does: a direct caller of `__observe` may not kill the group), and
//! stays with the processes that left the group (a daemon started with `setsid`) until they
//! end: their seccomp filter hands path syscalls to a tracer, and without one those calls
//! would fail.
//!
//! A tracer that is itself killed takes its tracees with it (PTRACE_O_EXITKILL): a process
//! whose file syscalls all fail is worse than one that is gone. Nothing in preflight kills
//! the tracer any more.

use super::tracer::{self, Failure};
use super::{Ended, Run, report};
use std::ffi::{OsStr, OsString};
use std::io::{Read as _, Write as _};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

/// How the tracer tells the wrapper what became of the step (in a message framed by
/// `send`): one line, then for a traced run the encoded report, else the reason in words.
const EXITED: &str = "exited";
const SIGNALED: &str = "signaled";
const NOT_STARTED: &str = "not-started";
const LOST: &str = "lost";

/// Runs `program args` under the tracer and writes the report: the body of the wrapper.
pub fn run(report_path: &Path, program: &OsStr, args: &[OsString]) -> Run {
    for signal in tracer::PASSED_ON {
        // SAFETY: setting a disposition; the step puts back the default before exec.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    let (from_tracer, to_wrapper) = match pipe() {
        Ok(pair) => pair,
        Err(e) => return Run::NotStarted(e),
    };
    // SAFETY: fork(2). This process is single-threaded (the hidden subcommand runs before
    // anything else starts a thread), so the child may run ordinary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Run::NotStarted(std::io::Error::last_os_error());
    }
    if pid == 0 {
        drop(from_tracer);
        // Whatever happens in the tracer, it never returns into the wrapper's code.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tracer_process(program, args, to_wrapper)
        }));
        // SAFETY: ending the tracer process.
        unsafe { libc::_exit(0) };
    }
    drop(to_wrapper);
    let mut from_tracer = std::fs::File::from(from_tracer);
    let run = match read_message(&mut from_tracer) {
        Ok(message) => received(report_path, &message),
        Err(e) => Run::Lost(e),
    };
    if matches!(run, Run::NotStarted(_)) {
        // The tracer has ended: reaped, so that the command run untraced in this process
        // does not find a child it never started.
        let mut status = 0;
        // SAFETY: waitpid on our own child with a pointer to a local.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    run
}

/// The tracer's message: its length (8 bytes, little-endian), then that many bytes. The
/// tracer keeps the pipe open after it, to see when the wrapper is gone.
fn read_message(from_tracer: &mut std::fs::File) -> std::io::Result<Vec<u8>> {
    let cut_short = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            std::io::Error::other("the tracer ended before the step did")
        }
        _ => e,
    };
    let mut length = [0u8; 8];
    from_tracer.read_exact(&mut length).map_err(cut_short)?;
    let length = u64::from_le_bytes(length);
    let mut message = Vec::new();
    from_tracer.take(length).read_to_end(&mut message)?;
    if (message.len() as u64) < length {
        return Err(cut_short(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(message)
}

/// The wrapper's side: what the tracer's message says, the report written.
fn received(report_path: &Path, message: &[u8]) -> Run {
    let (head, body) = match message.iter().position(|&b| b == b'\n') {
        Some(at) => (&message[..at], &message[at + 1..]),
        None => (message, &message[message.len()..]),
    };
    let head = String::from_utf8_lossy(head);
    let words = || std::io::Error::other(String::from_utf8_lossy(body).into_owned());
    let ended = match head.split_once(' ') {
        Some((EXITED, code)) => code.parse().ok().map(Ended::Exited),
        Some((SIGNALED, signal)) => signal.parse().ok().map(Ended::Signaled),
        _ => None,
    };
    match (ended, &*head) {
        (Some(ended), _) => Run::Traced {
            ended,
            report_error: report::write_encoded(report_path, body).err(),
        },
        (None, NOT_STARTED) => Run::NotStarted(words()),
        (None, LOST) => Run::Lost(words()),
        (None, _) => Run::Lost(std::io::Error::other(format!(
            "the tracer said something unexpected: {head}"
        ))),
    }
}

/// The tracer's side: starts the step, leaves the wrapper's group and output, follows the
/// step to its end, tells the wrapper, and stays until every traced process has ended.
fn tracer_process(program: &OsStr, args: &[OsString], to_wrapper: OwnedFd) {
    let mut to_wrapper = std::fs::File::from(to_wrapper);
    // SAFETY: getpgrp(2) cannot fail.
    let group = unsafe { libc::getpgrp() };
    let mut tracer = match tracer::start_traced(program, args) {
        Ok(tracer) => tracer,
        Err(Failure::NotStarted(e) | Failure::Lost(e)) => {
            send(&mut to_wrapper, format!("{NOT_STARTED}\n{e}").as_bytes());
            return;
        }
    };
    leave_the_step();
    let message = match tracer.follow_root(group) {
        Ok(traced) => {
            let head = match traced.ended {
                Ended::Exited(code) => format!("{EXITED} {code}\n"),
                Ended::Signaled(signal) => format!("{SIGNALED} {signal}\n"),
            };
            let mut message = head.into_bytes();
            message.extend(report::encode(
                &traced.observation,
                traced.incomplete.as_deref(),
            ));
            message
        }
        Err(Failure::Lost(e) | Failure::NotStarted(e)) => format!("{LOST}\n{e}").into_bytes(),
    };
    // A wrapper already killed (a timeout) cannot take it: the write fails, and no report
    // claims a run that was cut short.
    let told = send(&mut to_wrapper, &message);
    tracer.release(group, told.then_some(&to_wrapper));
}

/// Sends the wrapper a message (see `read_message`); false when it is gone.
fn send(to_wrapper: &mut std::fs::File, message: &[u8]) -> bool {
    let length = (message.len() as u64).to_le_bytes();
    to_wrapper
        .write_all(&length)
        .and_then(|()| to_wrapper.write_all(message))
        .is_ok()
}

/// Out of the step's process group (so that its group kill does not reach the tracer),
/// its output (so that whoever reads it sees its end when the step's processes are gone)
/// and its folder.
fn leave_the_step() {
    // SAFETY: plain libc calls on this process and its own descriptors.
    unsafe {
        libc::setpgid(0, 0);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        for fd in 0..3 {
            if null >= 0 {
                libc::dup2(null, fd);
            } else {
                libc::close(fd);
            }
        }
        if null > 2 {
            libc::close(null);
        }
        libc::chdir(c"/".as_ptr());
    }
}

/// A pipe whose ends are closed on exec: the step never holds it.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just made and are owned here alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(parts: &[&[u8]]) -> std::fs::File {
        let (from_tracer, to_wrapper) = pipe().unwrap();
        let mut to_wrapper = std::fs::File::from(to_wrapper);
        for part in parts {
            to_wrapper.write_all(part).unwrap();
        }
        std::fs::File::from(from_tracer)
    }

    #[test]
    fn a_framed_message_is_read_whole_and_a_cut_one_is_an_error() {
        let body = b"exited 3\nreport";
        let length = (body.len() as u64).to_le_bytes();
        assert_eq!(
            read_message(&mut message(&[&length, body])).unwrap(),
            body.to_vec()
        );
        let cut = read_message(&mut message(&[&length, &body[..4]])).unwrap_err();
        assert!(cut.to_string().contains("ended before the step did"), "{cut}");
        let nothing = read_message(&mut message(&[])).unwrap_err();
        assert!(nothing.to_string().contains("ended before the step did"));
    }

    #[test]
    fn the_tracers_word_decides_how_the_wrapper_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report");
        let report = report::encode(&super::super::Observation::default(), None);
        let traced = [b"signaled 15\n".as_slice(), &report].concat();
        assert!(matches!(
            received(&path, &traced),
            Run::Traced {
                ended: Ended::Signaled(15),
                report_error: None
            }
        ));
        assert!(super::super::read_report(&path).is_ok());
        assert!(matches!(
            received(&path, b"not-started\nno fork"),
            Run::NotStarted(e) if e.to_string() == "no fork"
        ));
        assert!(matches!(received(&path, b"lost\nwhy"), Run::Lost(_)));
        for garbage in [b"".as_slice(), b"exited x\n", b"exited", b"\xff\xfe"] {
            assert!(matches!(received(&path, garbage), Run::Lost(_)));
        }
    }
}
