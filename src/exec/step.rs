//! One step: its working folder and files, its command split into processes (under the
//! tracer when it is observed), and what it left: its outcome, its output, the tracked files
//! it changed.

use super::{
    Message, Reason, Shared, Status, StepResult, TrackedWrites, invocation, not_found, writes,
};
use crate::plan::PlannedStep;
use crate::process::{self, Outcome, Spec};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::Instant;

/// A step's working folder, and its files that are still there: tracked files deleted from
/// the work tree are not handed to commands.
pub(super) fn present_files<'a>(
    shared: &Shared,
    planned: &'a PlannedStep,
) -> (PathBuf, Option<Vec<&'a Path>>) {
    let (cwd, found) = found_files(shared, planned);
    (cwd, found.map(|found| found.present()))
}

/// A step's working folder, and the stat data of each of its files (the list is sorted, so
/// each folder is opened once for the files it holds); `None` when it takes no files.
pub(super) fn found_files<'a>(
    shared: &Shared,
    planned: &'a PlannedStep,
) -> (PathBuf, Option<Found<'a>>) {
    let cwd = match &planned.step.dir {
        Some(dir) => shared.root.join(dir),
        None => shared.root.clone(),
    };
    let found = planned.files.as_ref().map(|files| {
        if let Some(found) = shared.already_taken(planned, files) {
            return found;
        }
        let taken = std::time::SystemTime::now();
        Found {
            files,
            stats: crate::lstat::lstat_all(&cwd, files),
            taken,
        }
    });
    (cwd, found)
}

impl Shared {
    /// `files` of `planned` as the run's starter looked at them, when it looked at every one
    /// and no step has ended since.
    pub(super) fn already_taken<'a>(
        &self,
        planned: &PlannedStep,
        files: &'a [PathBuf],
    ) -> Option<Found<'a>> {
        let taken = self.taken.as_ref()?;
        if self
            .activity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .one_ended
        {
            return None;
        }
        let stats = match &planned.step.dir {
            Some(dir) => files
                .iter()
                .map(|f| taken.get(&dir.join(f)))
                .collect::<Option<Vec<_>>>()?,
            None => taken.get_each(files)?,
        };
        Some(Found {
            files,
            stats,
            taken: taken.at,
        })
    }
}

/// Whether any of a step's files is still there (true when it takes no files).
pub(super) fn any_present(shared: &Shared, planned: &PlannedStep) -> bool {
    let cwd = match &planned.step.dir {
        Some(dir) => shared.root.join(dir),
        None => shared.root.clone(),
    };
    planned
        .files
        .as_ref()
        .is_none_or(|files| files.iter().any(|f| cwd.join(f).symlink_metadata().is_ok()))
}

/// A step's files as they were looked up, and when.
pub(super) struct Found<'a> {
    files: &'a [PathBuf],
    stats: Vec<Option<libc::stat>>,
    taken: std::time::SystemTime,
}

impl<'a> Found<'a> {
    /// The files that are there.
    pub(super) fn present(&self) -> Vec<&'a Path> {
        self.files
            .iter()
            .zip(&self.stats)
            .filter_map(|(file, stat)| stat.map(|_| file.as_path()))
            .collect()
    }

    pub(super) fn known(&self) -> writes::Known<'_> {
        writes::Known {
            stats: &self.stats,
            taken: self.taken,
        }
    }
}

/// The environment a step gets on top of preflight's own: `[env]`, its `env`, its name.
pub(super) fn step_env(shared: &Shared, step: &crate::config::Step) -> Vec<(String, String)> {
    let mut env = shared.env.clone();
    env.extend(step.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.push(("PREFLIGHT_STEP".into(), step.name.clone()));
    if let Some(path) = shared.tool_paths.get(&step.name) {
        env.push(("PATH".into(), path.clone()));
    }
    env
}

/// Runs one step: its files checked, its command expanded into batches run in parallel.
pub(super) fn run_step(shared: &Shared, i: usize, tx: &Sender<Message>) -> StepResult {
    run_step_observed(shared, i, tx, false).0
}

/// What the tracer saw of a step's processes: `Err` says why it cannot be told.
pub(super) type Seen = Result<crate::observe::Observation, String>;

/// Runs one step, under the tracer when `observe` is set: then also what its processes
/// read (`None` when it was not observed or did not start).
pub(super) fn run_step_observed(
    shared: &Shared,
    i: usize,
    tx: &Sender<Message>,
    observe: bool,
) -> (StepResult, Option<Seen>) {
    let planned: &PlannedStep = &shared.plan.steps[i];
    let step = &planned.step;
    let started = Instant::now();
    let result = |status| StepResult::new(&step.name, status).took(started.elapsed());

    if let Some(reason) = &planned.skip {
        return (
            result(Status::Skipped).because(Reason::SkippedBy(reason.clone())),
            None,
        );
    }
    let command = match (&shared.msg_file, planned.command.uses_msg_file()) {
        (Some(msg_file), true) => planned.command.with_msg_file(msg_file),
        (None, true) => return (result(Status::Failed).because(Reason::NoMessageFile), None),
        (_, false) => planned.command.clone(),
    };
    if let Err(why) = shared.prepare_workdir() {
        return (result(Status::Failed).because(Reason::NoWorkdir(why)), None);
    }
    let (cwd, found) = found_files(shared, planned);
    let files = found.as_ref().map(Found::present);
    if files.as_ref().is_some_and(Vec::is_empty) {
        return (
            result(Status::Skipped).because(Reason::NoMatchingFiles),
            None,
        );
    }
    if !cwd.is_dir() {
        let dir = step.dir.clone().unwrap_or_else(|| PathBuf::from("."));
        return (
            result(Status::Failed).because(Reason::MissingDir(dir)),
            None,
        );
    }
    let _ = tx.send(Message::Started(i));
    shared.begin(i);
    let watched = match &shared.watch {
        Some(watch) if !planned.fixes => {
            let known = found.as_ref().map(Found::known);
            Some((watch, watch.before(planned, known.as_ref())))
        }
        _ => None,
    };

    let mut env = step_env(shared, step);
    let path = invocation::search_path(&env);
    let direct = invocation::without_shell(&command, path.as_deref(), &cwd);
    let invocations = match (direct, cwd.to_str()) {
        (Some(direct), Some(folder)) => {
            // What `sh` would have set for the program: the folder it runs in.
            env.push(("PWD".into(), folder.to_string()));
            invocation::invocations(&direct, files.as_deref())
        }
        _ => invocation::invocations(&command, files.as_deref()),
    };
    // Each process of the step runs under the tracer, which writes what it saw into a
    // report of its own.
    let reports = if observe {
        observe_reports(invocations.len())
    } else {
        Ok(None)
    };
    let invocations = match &reports {
        Ok(Some(dir)) => invocations
            .iter()
            .enumerate()
            .map(|(k, inv)| crate::observe::wrap(inv, &report_path(dir.path(), k)))
            .collect(),
        _ => invocations,
    };
    // Validation bounds timeouts; a deadline past what the clock holds is no deadline.
    let deadline = step.timeout.and_then(|t| started.checked_add(t));

    let finished: Vec<process::Finished> = invocations
        .par_iter()
        .map(|inv| {
            let on_line = shared.stream_output.then(|| {
                let tx = tx.clone();
                Box::new(move |line: &[u8]| {
                    let _ = tx.send(Message::Line(i, line.to_vec()));
                }) as process::LineSink
            });
            let spec = Spec {
                invocation: inv,
                cwd: &cwd,
                env: &env,
                timeout: deadline.map(|d| d.saturating_duration_since(Instant::now())),
            };
            process::run(&spec, &shared.canceller, on_line)
        })
        .collect();
    let changed = watched.map_or_else(Vec::new, |(watch, before)| watch.changed(&before));
    let seen = match reports {
        Ok(None) => None,
        Ok(Some(dir)) => Some(read_reports(dir.path(), invocations.len())),
        Err(why) => Some(Err(why)),
    };
    let alongside = shared.end(i);

    let output: Vec<u8> = finished
        .iter()
        .flat_map(|f| f.output.iter().copied())
        .collect();
    let leftover: Vec<process::Leftover> = finished
        .iter()
        .filter_map(|f| f.leftover.clone())
        .flatten()
        .collect();
    if finished.iter().any(|f| f.leftover.is_some()) {
        let _ = tx.send(Message::LeftProcesses(i, leftover));
    }
    let worst = finished
        .iter()
        .map(|f| &f.outcome)
        .max_by_key(|o| match o {
            Outcome::Exited(0) => 0,
            Outcome::Exited(_) | Outcome::Signaled(_) | Outcome::SpawnFailed(_) => 1,
            Outcome::TimedOut => 2,
            Outcome::Cancelled => 3,
        })
        .cloned()
        .unwrap_or(Outcome::Exited(0));
    let mut result = match worst {
        Outcome::Exited(0) => result(Status::Passed).exited(0).with_output(output),
        Outcome::Exited(code) => {
            let why = not_found::explain(&command, code, &output, &env, &cwd);
            result(Status::Failed)
                .exited(code)
                .with_output(output)
                .because(why)
        }
        Outcome::Signaled(sig) => result(Status::Failed)
            .with_output(output)
            .because(Reason::Signal(sig)),
        Outcome::SpawnFailed(message) => result(Status::Failed)
            .with_output(output)
            .because(Reason::SpawnFailed(message)),
        Outcome::TimedOut => {
            result(Status::TimedOut)
                .with_output(output)
                .because(Reason::TimedOut {
                    limit: step.timeout.unwrap_or_default(),
                    remote: false,
                })
        }
        Outcome::Cancelled => result(Status::Cancelled).with_output(output),
    };
    // A check that wrote the files it judges did not judge what is there now.
    if !changed.is_empty() && matches!(result.status, Status::Passed | Status::Failed) {
        result.wrote = Some(TrackedWrites {
            files: changed,
            alongside,
        });
        result.status = Status::Failed;
    }
    (result, seen)
}

/// A folder for the tracer's reports of one step's processes (removed when dropped).
pub(super) fn observe_reports(count: usize) -> Result<Option<tempfile::TempDir>, String> {
    if count == 0 {
        return Ok(None);
    }
    tempfile::Builder::new()
        .prefix("preflight-observe")
        .tempdir()
        .map(Some)
        .map_err(|e| format!("cannot make a folder for the tracer's reports: {e}"))
}

pub(super) fn report_path(dir: &Path, k: usize) -> PathBuf {
    dir.join(format!("{k}.report"))
}

/// Everything the tracer saw of the step's processes, put together; `Err` when one report
/// is missing or cannot be read (what that process read is unknown).
pub(super) fn read_reports(dir: &Path, count: usize) -> Seen {
    let mut all = crate::observe::Observation::default();
    for k in 0..count {
        let one = crate::observe::read_report(&report_path(dir, k)).map_err(|e| e.to_string())?;
        all.read.extend(one.read);
        all.absent.extend(one.absent);
        all.written.extend(one.written);
        all.executed.extend(one.executed);
        all.listed.extend(one.listed);
    }
    Ok(all)
}
