//! Running a backend's client (python3, pip, uv, npm, cargo): its output captured, its
//! failure turned into one error that names the tool and says what to do.

use crate::error::Error;
use std::process::{Command, Stdio};

/// What a client printed.
pub struct Ran {
    pub stdout: Vec<u8>,
}

/// How a client failed, for the backend to put into words.
pub enum Failed {
    /// The program is not installed (or not on PATH).
    Missing(String),
    /// It ran and failed: its exit code and the end of what it printed.
    Exited { code: Option<i32>, output: String },
}

/// Runs `cmd` with no input; `Err` says how it failed.
pub fn run(cmd: &mut Command) -> std::result::Result<Ran, Failed> {
    use std::os::unix::process::CommandExt;
    let program = cmd.get_program().to_string_lossy().into_owned();
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent. An install
    // whose preflight is killed stops with it rather than write on into a temp folder
    // that the next install will clear.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                Failed::Missing(program.clone())
            }
            _ => Failed::Exited {
                code: None,
                output: e.to_string(),
            },
        })?;
    if out.status.success() {
        return Ok(Ran { stdout: out.stdout });
    }
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    if text.trim().is_empty() {
        text = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    Err(Failed::Exited {
        code: out.status.code(),
        output: tail(&text, 12),
    })
}

/// The last `lines` non-empty lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The error for a client that is not there.
pub fn missing(tool: &str, program: &str, backend: &str) -> Error {
    let hint = match backend {
        "pypi" => "install Python 3 with pip (and its venv module), or put `uv` on PATH",
        "npm" => "install Node.js with npm",
        "cargo" => "install Rust with rustup (https://rustup.rs)",
        _ => "install it, or put it on PATH",
    };
    Error::Setup(format!(
        "tool `{tool}`: cannot install it: `{program}` is not installed or not on PATH"
    ))
    .hint(hint)
}

/// The words for a failure that looks like no network or a registry that does not answer.
pub fn looks_unreachable(output: &str) -> bool {
    let o = output.to_ascii_lowercase();
    [
        "connection",
        "network",
        "name resolution",
        "getaddrinfo",
        "enotfound",
        "eai_again",
        "econnrefused",
        "timed out",
        "timeout",
        "unreachable",
        "proxy",
        "ssl",
        "certificate",
    ]
    .iter()
    .any(|w| o.contains(w))
}

/// The words for a failure that says the disk is full.
pub fn looks_disk_full(output: &str) -> bool {
    let o = output.to_ascii_lowercase();
    o.contains("no space left") || o.contains("enospc") || o.contains("disk quota")
}

/// One error for a client that ran and failed while doing `doing` for `tool`.
pub fn failed(tool: &str, doing: &str, failure: Failed, backend: &str) -> Error {
    match failure {
        Failed::Missing(program) => missing(tool, &program, backend),
        Failed::Exited { code, output } => {
            let code = code.map_or_else(|| "it was stopped".into(), |c| format!("exit code {c}"));
            let message = format!("tool `{tool}`: {doing} failed ({code}):\n{output}");
            if looks_disk_full(&output) {
                Error::io(message, std::io::Error::from_raw_os_error(libc::ENOSPC))
                    .hint("free some disk space (or `preflight tools prune`), then try again")
            } else if looks_unreachable(&output) {
                Error::Setup(message)
                    .hint("the registry could not be reached: check the network (and proxy), then try again")
            } else {
                Error::Setup(message)
            }
        }
    }
}
