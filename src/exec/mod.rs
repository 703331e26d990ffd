//! The executor: walks the plan's graph on a rayon pool, starting each step as soon as the
//! steps it needs have passed, and tells a `Reporter` what happens.
//!
//! Here live the run itself (`execute`), one step's processes and what they left (`step`),
//! the cache and remote around each step, the scheduler, and the engine's vocabulary (`event`: `Event`, `StepResult`, `Summary`):
//! events carry data (durations, reasons, stages), never sentences. exec must not import
//! `report` nor the commands: `report` depends on exec, not the other way.

mod cached;
mod event;
pub use cached::{Foreseen, Preview, preview};
pub mod invocation;
mod not_found;
mod remote;
pub mod scheduler;
mod step;
mod writes;

pub use event::{
    Event, ExecutionStage, Explanation, NotStarted, Reason, RemoteOrigin, RemoteStage, Reporter,
    RunsHere, Status, StepResult, Summary, TrackedWrites, Warning,
};

use crate::plan::Plan;
use crate::process::{self, Canceller};
use scheduler::Scheduler;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Steps (and batches) running at once; at least 1.
    pub jobs: usize,
    /// At the first failure, start nothing new and stop what runs.
    pub fail_fast: bool,
    /// Send each output line to the reporter as it arrives.
    pub stream_output: bool,
    /// The commit message file, for `{msg_file}` (commit-msg, prepare-commit-msg).
    pub msg_file: Option<PathBuf>,
    /// The cache, when steps may be skipped on a hit and stored after a pass.
    pub cache: Option<Arc<crate::cache::Session>>,
    /// `[remote]`, when the run uses it (its cache, its workers).
    pub remote: Option<Arc<crate::remote::Session>>,
    /// The index as the run starts: steps that are not fixers must leave these files alone.
    /// `None` turns the check off.
    pub tracked: Option<Arc<crate::git::IndexSnapshot>>,
    /// The folder the steps run in, when it is made on demand (a checkout of a commit):
    /// a run whose steps are all cache hits never makes it.
    pub workdir: Option<Arc<dyn Workdir>>,
    /// The PATH of each step that uses managed tools (step name → PATH, its tools' folders
    /// first); other steps inherit preflight's.
    pub tool_paths: Arc<std::collections::HashMap<String, String>>,
    /// Stat data of files in the root (repository-relative) taken just before the run by
    /// whoever started it, with nothing changed since (the pre-commit check for unstaged
    /// work): a step's first look at its files uses it while no step has ended.
    pub taken: Option<Arc<crate::lstat::Taken>>,
}

/// A folder made the first time a step needs it.
pub trait Workdir: Send + Sync + std::fmt::Debug {
    /// Makes the folder, once; later calls give the first call's answer. `Err` says why it
    /// could not be made.
    fn prepare(&self) -> Result<(), String>;
    /// Whether it has been made.
    fn is_ready(&self) -> bool;
}

/// What every step of a run shares.
struct Shared {
    plan: Plan,
    root: PathBuf,
    /// `[env]`, applied before each step's own `env`.
    env: Vec<(String, String)>,
    canceller: Arc<Canceller>,
    stream_output: bool,
    msg_file: Option<PathBuf>,
    cache: Option<Arc<crate::cache::Session>>,
    /// Each step's cache key, once computed (its dependents' keys include it).
    keys: Mutex<Vec<Option<String>>>,
    remote: Option<Arc<crate::remote::Session>>,
    /// What checks may not write.
    watch: Option<writes::Watch>,
    /// Which steps run processes now, and which ran beside each: a change seen while others
    /// ran cannot be pinned on one.
    activity: Mutex<Activity>,
    workdir: Option<Arc<dyn Workdir>>,
    tool_paths: Arc<std::collections::HashMap<String, String>>,
    /// See `Options::taken`; `None` when a fixer may change files before a step looks.
    taken: Option<Arc<crate::lstat::Taken>>,
}

struct Activity {
    /// Whether a step has ended: its writes may have made `Shared::taken` stale.
    one_ended: bool,
    running: Vec<usize>,
    /// For each step, the steps that ran at some moment of its run.
    alongside: Vec<Vec<usize>>,
}

impl Shared {
    /// Makes the folder the steps run in, if it is made on demand and not made yet.
    fn prepare_workdir(&self) -> Result<(), String> {
        self.workdir.as_ref().map_or(Ok(()), |w| w.prepare())
    }

    /// Whether the files of the root can be looked at (not a checkout still to be made).
    fn workdir_ready(&self) -> bool {
        self.workdir.as_ref().is_none_or(|w| w.is_ready())
    }

    fn begin(&self, i: usize) {
        let mut a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        for j in a.running.clone() {
            a.alongside[j].push(i);
            a.alongside[i].push(j);
        }
        a.running.push(i);
    }

    /// Ends step `i`'s run; returns the names of the steps that ran beside it.
    fn end(&self, i: usize) -> Vec<String> {
        let mut a = self.activity.lock().unwrap_or_else(|e| e.into_inner());
        a.one_ended = true;
        a.running.retain(|&j| j != i);
        let mut alongside = std::mem::take(&mut a.alongside[i]);
        alongside.sort_unstable();
        alongside.dedup();
        alongside
            .into_iter()
            .map(|j| self.plan.steps[j].step.name.clone())
            .collect()
    }
}

enum Message {
    Started(usize),
    Line(usize, Vec<u8>),
    /// Why the step ran or was cached (`--explain`).
    Explain(usize, Vec<Explanation>),
    /// A remote execution's stage.
    Remote(usize, RemoteStage),
    Warning(Warning),
    /// Processes that outlived the step's own process and still held its output open.
    LeftProcesses(usize, Vec<process::Leftover>),
    Done(usize, StepResult),
}

/// Runs the plan and returns the totals. Every step of the plan gets exactly one
/// `StepFinished` event.
pub fn execute(
    plan: Plan,
    root: &Path,
    env: Vec<(String, String)>,
    options: &Options,
    canceller: Arc<Canceller>,
    reporter: &mut dyn Reporter,
) -> Summary {
    let started = Instant::now();
    let jobs = pool_size(options.jobs, &plan);
    let needs: Vec<Vec<usize>> = plan.steps.iter().map(|s| s.needs.clone()).collect();
    let after: Vec<Vec<usize>> = plan.steps.iter().map(|s| s.after.clone()).collect();
    let mut scheduler = Scheduler::new(&needs, &after);
    let names: Vec<String> = plan.steps.iter().map(|s| s.step.name.clone()).collect();
    let mut statuses: Vec<Option<Status>> = vec![None; names.len()];
    let watch = options
        .tracked
        .clone()
        .map(|tracked| writes::Watch::new(root, tracked, &plan.steps));
    let plan_has_fixers = plan.steps.iter().any(|s| s.fixes);
    let shared = Arc::new(Shared {
        plan,
        root: root.to_path_buf(),
        env,
        canceller: Arc::clone(&canceller),
        stream_output: options.stream_output,
        msg_file: options.msg_file.clone(),
        cache: options.cache.clone(),
        keys: Mutex::new(vec![None; names.len()]),
        remote: options.remote.clone(),
        watch,
        activity: Mutex::new(Activity {
            one_ended: false,
            running: Vec::new(),
            alongside: vec![Vec::new(); names.len()],
        }),
        workdir: options.workdir.clone(),
        tool_paths: Arc::clone(&options.tool_paths),
        taken: options.taken.clone().filter(|_| !plan_has_fixers),
    });
    let (pool, jobs) = match step_pool(jobs) {
        Ok((pool, granted)) => {
            if granted < jobs {
                reporter.event(Event::Warning(Warning::FewerThreads {
                    granted,
                    asked: jobs,
                }));
            }
            (Some(pool), granted)
        }
        Err(e) => {
            reporter.event(Event::Warning(Warning::NoThread(e.to_string())));
            (None, 0)
        }
    };
    let (tx, rx) = mpsc::channel::<Message>();
    let mut summary = Summary::default();
    let mut running = 0usize;
    reporter.event(Event::RunStarted {
        steps: names.len(),
        jobs,
    });

    let mut finish = |reporter: &mut dyn Reporter,
                      statuses: &mut Vec<Option<Status>>,
                      result: StepResult,
                      i: usize| {
        summary.add(result.status);
        statuses[i] = Some(result.status);
        reporter.event(Event::StepFinished(result));
    };

    loop {
        if let Some(pool) = pool.as_ref().filter(|_| !canceller.is_cancelled()) {
            while let Some(i) = scheduler.next_ready() {
                running += 1;
                let shared = Arc::clone(&shared);
                let tx = tx.clone();
                pool.spawn(move || {
                    let result = cached::run_step(&shared, i, &tx);
                    let _ = tx.send(Message::Done(i, result));
                });
            }
        }
        if running == 0 {
            let why = match pool {
                Some(_) => NotStarted::Stopped(canceller.reason().to_string()),
                None => NotStarted::NoThread,
            };
            for i in scheduler.drain_waiting() {
                let result = not_run(&names[i], Reason::NotStarted(why.clone()));
                finish(reporter, &mut statuses, result, i);
            }
            break;
        }
        let Ok(message) = rx.recv() else { break };
        match message {
            Message::Started(i) => reporter.event(Event::StepStarted {
                name: names[i].clone(),
            }),
            Message::Line(i, line) => reporter.event(Event::StepOutput {
                name: names[i].clone(),
                line,
            }),
            Message::Explain(i, lines) => reporter.event(Event::StepExplained {
                name: names[i].clone(),
                lines,
            }),
            Message::Remote(i, stage) => reporter.event(Event::StepRemote {
                name: names[i].clone(),
                stage,
            }),
            Message::Warning(warning) => reporter.event(Event::Warning(warning)),
            Message::LeftProcesses(i, left) => reporter.event(Event::StepLeftProcesses {
                name: names[i].clone(),
                processes: left.into_iter().map(|p| (p.pid, p.command)).collect(),
            }),
            Message::Done(i, mut result) => {
                running -= 1;
                if result.status == Status::Cancelled {
                    result.reason = Some(Reason::Cancelled(canceller.reason().to_string()));
                }
                let ok = result.status.satisfies_dependents();
                finish(reporter, &mut statuses, result, i);
                for (blocked, because) in scheduler.finish(i, ok) {
                    let why = Reason::NeedNotPassed {
                        need: names[because].clone(),
                        status: statuses[because],
                    };
                    let result = not_run(&names[blocked], why);
                    finish(reporter, &mut statuses, result, blocked);
                }
                if !ok && options.fail_fast {
                    canceller.cancel("stopped by --fail-fast");
                }
            }
        }
    }
    if let Some(cache) = &shared.cache {
        cache.finish();
    }
    summary.duration = started.elapsed();
    summary.interrupted = canceller.was_interrupted();
    reporter.event(Event::RunFinished(summary.clone()));
    summary
}

/// The threads a run needs: `jobs` (at least 1, at most `MAX_JOBS`), but never more than
/// the processes the plan can have running at once (one per step, or one per file for a step
/// whose command is split into batches of its files).
fn pool_size(jobs: usize, plan: &Plan) -> usize {
    let most_at_once = plan
        .steps
        .iter()
        .map(|s| match &s.files {
            Some(files) if s.command.uses_files() => files.len().max(1),
            _ => 1,
        })
        .fold(0usize, usize::saturating_add);
    jobs.clamp(1, crate::config::MAX_JOBS)
        .min(most_at_once.max(1))
}

/// The step pool: `jobs` threads, or as many as the system grants (halving down to one),
/// with how many it has.
fn step_pool(jobs: usize) -> Result<(rayon::ThreadPool, usize), rayon::ThreadPoolBuildError> {
    let mut threads = jobs.max(1);
    loop {
        match rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("preflight-worker-{i}"))
            .build()
        {
            Ok(pool) => return Ok((pool, threads)),
            Err(e) if threads == 1 => return Err(e),
            Err(_) => threads /= 2,
        }
    }
}

fn not_run(name: &str, reason: Reason) -> StepResult {
    StepResult::new(name, Status::NotRun).because(reason)
}
