//! Running one process: its own process group, environment and working directory, combined
//! stdout+stderr captured (and optionally streamed line by line), a timeout, and cancellation
//! that kills the whole group so nothing is left behind. A process that left the group
//! (`setsid`, a daemon) and still holds the output open is not waited for: the step ends when
//! its own process does, and the holders are named.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A program and its arguments, ready to spawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// Receives each complete line of a process's output as it arrives.
pub type LineSink = Box<dyn FnMut(&[u8]) + Send>;

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    /// Killed by a signal it did not expect (not by preflight).
    Signaled(i32),
    TimedOut,
    /// Killed because the run was cancelled (Ctrl-C or --fail-fast), or never started.
    Cancelled,
    /// The program could not be started at all.
    SpawnFailed(String),
}

impl Outcome {
    pub fn success(&self) -> bool {
        *self == Outcome::Exited(0)
    }
}

/// A finished process: how it ended and everything it printed.
#[derive(Debug)]
pub struct Finished {
    pub outcome: Outcome,
    pub output: Vec<u8>,
    /// Set when the output was still held open after the process had ended: the processes
    /// holding it, as far as they can be found (empty when they cannot).
    pub leftover: Option<Vec<Leftover>>,
}

/// A process that outlived a step's own process and escaped its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub pid: u32,
    /// Its command line, shortened; empty when it cannot be read.
    pub command: String,
}

/// What to run and how.
pub struct Spec<'a> {
    pub invocation: &'a Invocation,
    pub cwd: &'a Path,
    pub env: &'a [(String, String)],
    pub timeout: Option<Duration>,
}

/// Captured output beyond this is dropped (with a note) so a runaway step cannot eat memory.
const MAX_CAPTURE: usize = 16 << 20;
/// How long a process group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// After the step's own process has ended, how long its output may take to reach end of
/// file before whatever still holds it open is given up on.
const DRAIN_GRACE: Duration = Duration::from_millis(200);
/// How much longer the end of file may take when no other process is seen holding the pipe
/// (a busy machine is slow to schedule the reader; a holder /proc cannot show is given up on).
const LATE_GRACE: Duration = Duration::from_secs(2);
/// Once the reader is given up on, at most this many more reads take what is in the pipe.
const FINAL_READS: usize = 16;
/// How often the output reader looks whether it has been given up on.
const POLL_INTERVAL_MS: i32 = 50;
/// A program that writes a line at a time (`wc`, many linters) would wake the reader once
/// per line: 2,000 files, 2,000 wake-ups, each a switch between two processes. After this
/// many reads in a row that found the pipe nearly empty, the reader pauses `TRICKLE_PAUSE`
/// between reads, so that each read takes what a millisecond of writing filled. A short
/// output is read at once, as before.
const TRICKLE_READS: u32 = 8;
const TRICKLE_READ_BYTES: usize = 4096;
const TRICKLE_PAUSE: Duration = Duration::from_millis(1);

/// The live process groups of a run, so that a timeout, --fail-fast or Ctrl-C can kill them.
#[derive(Default)]
pub struct Canceller {
    groups: Mutex<HashSet<i32>>,
    cancelled: AtomicBool,
    reason: OnceLock<String>,
    interrupted: AtomicBool,
}

impl Canceller {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Why the run was cancelled, as said to the user ("interrupted", "stopped by --fail-fast").
    pub fn reason(&self) -> &str {
        self.reason.get().map_or("cancelled", String::as_str)
    }

    /// Stops new processes from starting and asks every running group to stop: SIGTERM, then
    /// SIGKILL for groups still alive after a grace period.
    pub fn cancel(self: &Arc<Self>, reason: &str) {
        let _ = self.reason.set(reason.to_string());
        if self.cancelled.swap(true, Ordering::SeqCst) {
            return;
        }
        self.signal_all(libc::SIGTERM);
        let this = Arc::clone(self);
        std::thread::spawn(move || {
            std::thread::sleep(KILL_GRACE);
            this.signal_all(libc::SIGKILL);
        });
    }

    /// Cancels because the user asked to stop (Ctrl-C, SIGTERM, SIGHUP).
    pub fn interrupt(self: &Arc<Self>) {
        self.interrupted.store(true, Ordering::SeqCst);
        self.cancel("interrupted");
    }

    pub fn was_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Kills every running group at once (a second Ctrl-C).
    pub fn kill_now(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.signal_all(libc::SIGKILL);
    }

    fn signal_all(&self, signal: i32) {
        let groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        for &pgid in groups.iter() {
            kill_group(pgid, signal);
        }
    }

    /// Spawns under the lock, so that a cancel either sees the new group or stops the spawn.
    fn spawn(&self, cmd: &mut std::process::Command) -> Option<std::io::Result<Child>> {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_cancelled() {
            return None;
        }
        let child = cmd.spawn();
        if let Ok(child) = &child {
            groups.insert(child.id() as i32);
        }
        Some(child)
    }

    fn forget(&self, pgid: i32) {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pgid);
    }
}

/// Sends `signal` to every process of group `pgid`.
pub fn kill_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; it has no memory effects.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Runs one process to completion. `on_line` receives each complete output line as it arrives.
pub fn run(spec: &Spec, canceller: &Canceller, on_line: Option<LineSink>) -> Finished {
    let (reader, writer) = match std::io::pipe() {
        Ok(pair) => pair,
        Err(e) => return spawn_failed(format!("cannot create a pipe: {e}")),
    };
    let stderr_writer = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return spawn_failed(format!("cannot create a pipe: {e}")),
    };
    let mut cmd = std::process::Command::new(&spec.invocation.program);
    cmd.args(&spec.invocation.args)
        .current_dir(spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(stderr_writer)
        .process_group(0);
    let spawned = canceller.spawn(&mut cmd);
    // Our copies of the pipe's write end must close, or reading would never see EOF.
    drop(cmd);
    let mut child = match spawned {
        None => {
            return Finished {
                outcome: Outcome::Cancelled,
                output: Vec::new(),
                leftover: None,
            };
        }
        Some(Err(e)) => {
            let program = spec.invocation.program.to_string_lossy();
            return spawn_failed(match e.kind() {
                std::io::ErrorKind::NotFound => {
                    format!("cannot run `{program}`: not found (is it installed and on PATH?)")
                }
                _ => format!("cannot run `{program}`: {e}"),
            });
        }
        Some(Ok(child)) => child,
    };
    let pgid = child.id() as i32;
    let pipe = pipe_inode(&reader);
    let abandon = Arc::new(AtomicBool::new(false));
    let (output_tx, output_rx) = mpsc::channel();
    {
        let abandon = Arc::clone(&abandon);
        std::thread::spawn(move || {
            let _ = output_tx.send(capture(reader, on_line, &abandon));
        });
    }

    let status = wait_with_timeout(&mut child, spec.timeout);
    // Whatever the step left running in its group goes with it.
    kill_group(pgid, libc::SIGKILL);
    canceller.forget(pgid);
    // A process outside the group may still hold the pipe: the step is over all the same.
    let (output, leftover) = match output_rx.recv_timeout(DRAIN_GRACE) {
        Ok(output) => (output, None),
        Err(mpsc::RecvTimeoutError::Disconnected) => (Vec::new(), None),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let holders = pipe.map(pipe_holders).unwrap_or_default();
            let late = match holders.is_empty() {
                true => output_rx.recv_timeout(LATE_GRACE).ok(),
                false => None,
            };
            match late {
                Some(output) => (output, None),
                None => {
                    abandon.store(true, Ordering::SeqCst);
                    (output_rx.recv().unwrap_or_default(), Some(holders))
                }
            }
        }
    };

    let outcome = match status {
        None => Outcome::TimedOut,
        Some(_) if canceller.is_cancelled() => Outcome::Cancelled,
        Some(status) => exit_outcome(status),
    };
    Finished {
        outcome,
        output,
        leftover,
    }
}

/// The pipe's inode number, by which other processes' descriptors of it can be recognised.
fn pipe_inode(reader: &std::io::PipeReader) -> Option<u64> {
    // SAFETY: fstat on a descriptor we own, into a zeroed local of the right type (all of
    // whose fields are plain integers).
    let (r, stat) = unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        let r = libc::fstat(reader.as_raw_fd(), &mut stat);
        (r, stat)
    };
    #[allow(clippy::unnecessary_cast)] // st_ino is u32 on some targets
    (r == 0).then_some(stat.st_ino as u64)
}

/// The processes (other than preflight) with a descriptor of pipe `inode`, found through
/// /proc on Linux; elsewhere none can be named.
fn pipe_holders(inode: u64) -> Vec<Leftover> {
    let target = format!("pipe:[{inode}]");
    holders(|link| link.as_os_str() == &*target)
}

/// The processes (other than preflight) with a descriptor whose /proc link `is_target`
/// accepts (a file's path, `pipe:[inode]`); none where there is no /proc.
pub fn holders(is_target: impl Fn(&Path) -> bool) -> Vec<Leftover> {
    let own = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| is_target(&l)));
        if holds {
            found.push(Leftover {
                pid,
                command: command_line(pid),
            });
        }
    }
    found
}

/// A process's command line, its arguments joined by spaces and cut at 120 characters.
fn command_line(pid: u32) -> String {
    const SHOWN: usize = 120;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let joined = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    if joined.chars().count() > SHOWN {
        joined.chars().take(SHOWN).collect::<String>() + "…"
    } else {
        joined
    }
}

fn spawn_failed(message: String) -> Finished {
    Finished {
        output: format!("{message}\n").into_bytes(),
        outcome: Outcome::SpawnFailed(message),
        leftover: None,
    }
}

fn exit_outcome(status: ExitStatus) -> Outcome {
    match (status.code(), status.signal()) {
        (Some(code), _) => Outcome::Exited(code),
        (None, Some(sig)) => Outcome::Signaled(sig),
        (None, None) => Outcome::Exited(1),
    }
}

/// Waits for the child; `None` means the timeout hit and the group was killed.
fn wait_with_timeout(child: &mut Child, timeout: Option<Duration>) -> Option<ExitStatus> {
    let Some(timeout) = timeout else {
        return Some(
            child
                .wait()
                .unwrap_or_else(|_| ExitStatus::from_raw(1 << 8)),
        );
    };
    let pgid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    // A thread blocks in waitpid so that this one can give up at the deadline.
    let pid = child.id();
    std::thread::spawn(move || {
        let mut status = 0;
        // SAFETY: waitpid on our own child's pid, with a valid pointer to a local.
        let r = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
        let _ = tx.send((r, status));
    });
    match rx.recv_timeout(timeout) {
        Ok(r) => Some(raw_status(r)),
        Err(_) => {
            kill_group(pgid, libc::SIGTERM);
            if rx.recv_timeout(KILL_GRACE).is_err() {
                kill_group(pgid, libc::SIGKILL);
                let _ = rx.recv();
            }
            None
        }
    }
}

fn raw_status((r, status): (i32, i32)) -> ExitStatus {
    if r < 0 {
        ExitStatus::from_raw(1 << 8)
    } else {
        ExitStatus::from_raw(status)
    }
}

/// Whether `reader` has something to read (or reached end of file) within `timeout_ms`.
fn readable(reader: &std::io::PipeReader, timeout_ms: i32) -> bool {
    poll_pipe(reader, libc::POLLIN, timeout_ms)
}

/// Waits `pause`, or less if every writer of the pipe has closed it: the last line of a
/// trickling step is then read at once, not a pause after the step has ended.
fn pause_unless_closed(reader: &std::io::PipeReader, pause: Duration) {
    // No events asked for: poll still reports POLLHUP, and new data does not wake it.
    poll_pipe(
        reader,
        0,
        i32::try_from(pause.as_millis()).unwrap_or(i32::MAX),
    );
}

/// poll(2) on `reader` for `events` (POLLHUP is always reported): whether it reported one
/// within `timeout_ms`. An error other than an interruption counts as reported, so that
/// read() reports it.
fn poll_pipe(reader: &std::io::PipeReader, events: libc::c_short, timeout_ms: i32) -> bool {
    let mut poll = libc::pollfd {
        fd: reader.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd that lives for the call.
    let r = unsafe { libc::poll(&mut poll, 1, timeout_ms) };
    r > 0 || (r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted)
}

/// Reads the output pipe to EOF, or until `abandon` is set, keeping up to MAX_CAPTURE bytes
/// and streaming whole lines.
fn capture(
    mut reader: std::io::PipeReader,
    mut on_line: Option<LineSink>,
    abandon: &AtomicBool,
) -> Vec<u8> {
    let mut output = Vec::new();
    let mut dropped = 0usize;
    let mut line_start = 0usize;
    let mut pending = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let mut final_reads = 0;
    let mut small_reads = 0u32;
    loop {
        // Given up on: what is already in the pipe is still kept, then reading stops.
        let giving_up = abandon.load(Ordering::SeqCst);
        if giving_up {
            final_reads += 1;
            if final_reads > FINAL_READS {
                break;
            }
        }
        if !readable(&reader, if giving_up { 0 } else { POLL_INTERVAL_MS }) {
            if giving_up {
                break;
            }
            continue;
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = &buf[..n];
        if let Some(cb) = on_line.as_mut() {
            pending.extend_from_slice(chunk);
            while let Some(pos) = pending[line_start..].iter().position(|&b| b == b'\n') {
                cb(&pending[line_start..line_start + pos]);
                line_start += pos + 1;
            }
            pending.drain(..line_start);
            line_start = 0;
        }
        let room = MAX_CAPTURE.saturating_sub(output.len());
        output.extend_from_slice(&chunk[..room.min(n)]);
        dropped += n.saturating_sub(room);
        small_reads = if n < TRICKLE_READ_BYTES {
            small_reads.saturating_add(1)
        } else {
            0
        };
        if small_reads >= TRICKLE_READS && !giving_up {
            pause_unless_closed(&reader, TRICKLE_PAUSE);
        }
    }
    if let Some(cb) = on_line.as_mut()
        && !pending.is_empty()
    {
        cb(&pending);
    }
    if dropped > 0 {
        output.extend_from_slice(
            format!("\n[preflight: {dropped} more bytes of output not kept]\n").as_bytes(),
        );
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Instant;

    #[test]
    fn a_pause_ends_as_soon_as_every_writer_has_closed_the_pipe() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        writer.write_all(b"last line\n").unwrap();
        drop(writer);
        let started = Instant::now();
        pause_unless_closed(&reader, Duration::from_secs(20));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn new_output_does_not_cut_a_pause_short() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        writer.write_all(b"a line\n").unwrap();
        let started = Instant::now();
        pause_unless_closed(&reader, Duration::from_millis(50));
        assert!(started.elapsed() >= Duration::from_millis(50));
        drop(writer);
    }

    #[test]
    fn a_trickle_then_a_burst_then_a_late_writer_closing_loses_no_byte() {
        for round in 0..50 {
            let (reader, mut writer) = std::io::pipe().unwrap();
            // A child of the step holding the pipe a little longer than the step.
            let late = writer.try_clone().unwrap();
            let step = std::thread::spawn(move || {
                let mut written = Vec::new();
                for i in 0..300u32 {
                    let line = format!("{round}:{i}\n");
                    writer.write_all(line.as_bytes()).unwrap();
                    written.extend_from_slice(line.as_bytes());
                    if i % 50 == 0 {
                        std::thread::sleep(Duration::from_micros(300));
                    }
                }
                let burst = vec![b'x'; 200_000];
                writer.write_all(&burst).unwrap();
                written.extend_from_slice(&burst);
                written
            });
            let child = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(3));
                drop(late);
            });
            let read = capture(
                reader,
                Some(Box::new(|_: &[u8]| {})),
                &AtomicBool::new(false),
            );
            let written = step.join().unwrap();
            child.join().unwrap();
            assert_eq!(read.len(), written.len(), "round {round}");
            assert!(read == written, "round {round}");
        }
    }
}
