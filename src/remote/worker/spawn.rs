//! An action's process: found on its PATH, with its environment, in its own process group,
//! its output into files; killed with its group at its timeout, when its lease is taken
//! back, or at a second Ctrl-C, so that nothing outlives it.

use super::failure::Failure;
use crate::process::kill_group;
use crate::remote::proto::re;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::Duration;
use tonic::Code;

/// The process groups of running actions, by lease, so that a lease the server takes back
/// or a second Ctrl-C can kill its whole group.
#[derive(Default)]
pub struct Processes {
    state: Mutex<Groups>,
}

#[derive(Default)]
struct Groups {
    running: HashMap<String, i32>,
    cancelled: HashSet<String>,
    all_cancelled: bool,
}

impl Processes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Groups> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawns under the lock, so that a cancel either sees the group or stops the spawn.
    fn spawn(
        &self,
        lease: &str,
        cmd: &mut std::process::Command,
    ) -> Option<std::io::Result<Child>> {
        let mut groups = self.lock();
        if groups.all_cancelled || groups.cancelled.contains(lease) {
            return None;
        }
        let child = cmd.spawn();
        if let Ok(child) = &child {
            groups.running.insert(lease.to_string(), child.id() as i32);
        }
        Some(child)
    }

    /// Forgets a lease; true when it was cancelled.
    pub fn finish(&self, lease: &str) -> bool {
        let mut groups = self.lock();
        groups.running.remove(lease);
        groups.cancelled.remove(lease) || groups.all_cancelled
    }

    /// Kills one lease's group now, or keeps it from starting.
    pub fn cancel(&self, lease: &str) {
        let mut groups = self.lock();
        groups.cancelled.insert(lease.to_string());
        if let Some(&pgid) = groups.running.get(lease) {
            kill_group(pgid, libc::SIGKILL);
        }
    }

    /// Kills every group now, and every one that would start.
    pub fn cancel_all(&self) {
        let mut groups = self.lock();
        groups.all_cancelled = true;
        for &pgid in groups.running.values() {
            kill_group(pgid, libc::SIGKILL);
        }
    }
}

/// The command as a process: arguments[0] found on the PATH the action will see (or
/// relative to its working directory when it has a slash), the worker's environment plus
/// the Command's, stdin closed, output into files outside the input root, its own process
/// group; with `observed`, under the tracer (whose own process leaves the group, and stays
/// only with what the action left running outside it).
pub fn process(
    command: &re::Command,
    cwd: &Path,
    stdout: &Path,
    stderr: &Path,
    observed: Option<&Path>,
) -> Result<std::process::Command, Failure> {
    let env: Vec<(&str, &str)> = command
        .environment_variables
        .iter()
        .map(|v| (v.name.as_str(), v.value.as_str()))
        .collect();
    let path_var: Option<OsString> = env
        .iter()
        .rev()
        .find(|(name, _)| *name == "PATH")
        .map(|(_, value)| value.into())
        .or_else(|| std::env::var_os("PATH"));
    let arg0 = &command.arguments[0];
    let program = if arg0.contains('/') {
        cwd.join(arg0)
    } else {
        which::which_in(arg0, path_var, cwd).map_err(|_| {
            Failure::new(
                Code::FailedPrecondition,
                format!("`{arg0}` is not on the worker's PATH"),
            )
        })?
    };
    let file = |path: &Path| std::fs::File::create(path).map_err(|e| Failure::local(path, e));
    // Observed, it runs under the tracer, which writes what it read to `observed`.
    let invocation = crate::process::Invocation {
        program: program.into_os_string(),
        args: command.arguments[1..].iter().map(OsString::from).collect(),
    };
    let invocation = match observed {
        Some(report) => crate::observe::wrap(&invocation, report),
        None => invocation,
    };
    let mut cmd = std::process::Command::new(&invocation.program);
    cmd.args(&invocation.args)
        .envs(env)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(file(stdout)?)
        .stderr(file(stderr)?)
        .process_group(0);
    Ok(cmd)
}

/// How an action's process ended.
pub struct Ended {
    /// The exit code (128 + signal when killed).
    pub code: i32,
    pub timed_out: bool,
    /// Processes that left the action's group and still hold its output files open.
    pub leftover: Vec<crate::process::Leftover>,
}

/// Runs the process to its end or its timeout; then kills what is left of its group, so
/// that nothing in it outlives the action. A process that left the group is not waited
/// for: it is named when it still holds `logs` (the action's output files) open.
pub async fn wait(
    processes: &Processes,
    lease: &str,
    cmd: &mut std::process::Command,
    timeout: Option<Duration>,
    logs: [&Path; 2],
) -> Result<Ended, Failure> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = match processes.spawn(lease, cmd) {
        None => {
            processes.finish(lease);
            return Err(Failure::stopped());
        }
        Some(Err(e)) => {
            processes.finish(lease);
            return Err(Failure::new(
                Code::FailedPrecondition,
                format!("cannot run {program}: {e}"),
            ));
        }
        Some(Ok(child)) => child,
    };
    let pgid = child.id() as i32;
    let mut waiting = tokio::task::spawn_blocking(move || child.wait());
    let mut timed_out = false;
    let status = match timeout {
        Some(limit) => match tokio::time::timeout(limit, &mut waiting).await {
            Ok(status) => status,
            Err(_) => {
                timed_out = true;
                kill_group(pgid, libc::SIGKILL);
                waiting.await
            }
        },
        None => waiting.await,
    };
    kill_group(pgid, libc::SIGKILL);
    let cancelled = processes.finish(lease);
    let status = status
        .map_err(|e| Failure::internal(format!("waiting for {program} failed: {e}")))?
        .map_err(|e| Failure::internal(format!("waiting for {program} failed: {e}")))?;
    if cancelled {
        return Err(Failure::stopped());
    }
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    // /proc shows absolute, resolved paths.
    let logs: Vec<std::path::PathBuf> = logs
        .iter()
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()))
        .collect();
    let leftover = tokio::task::block_in_place(|| {
        crate::process::holders(|link| logs.iter().any(|l| l == link))
    });
    Ok(Ended {
        code,
        timed_out,
        leftover,
    })
}
