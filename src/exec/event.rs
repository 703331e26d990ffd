//! The engine's vocabulary: what it tells a `Reporter` while a run goes (`Event`) and how
//! each step ended (`StepResult`). Payloads are data, never sentences: `report` turns them
//! into words.

/// Where an execution on the farm is: uploading, queued, executing.
pub use crate::remote::execute::Stage as ExecutionStage;

use std::path::PathBuf;
use std::time::Duration;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Passed,
    Failed,
    TimedOut,
    /// Its files globs matched none of the run's files.
    Skipped,
    /// A step it needs did not pass, or the run stopped before it started.
    NotRun,
    /// Killed by --fail-fast or Ctrl-C while running.
    Cancelled,
    /// Not run: its inputs already passed, its outputs and log came back from the cache.
    Cached,
}

impl Status {
    /// Whether the steps that need this one may run.
    pub fn satisfies_dependents(self) -> bool {
        matches!(self, Status::Passed | Status::Skipped | Status::Cached)
    }
}

/// The result of one step.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub name: String,
    pub status: Status,
    pub duration: Duration,
    /// The exit code of the failing (or last) process, when there was one.
    pub exit_code: Option<i32>,
    /// Combined stdout and stderr of the step's processes, in batch order.
    pub output: Vec<u8>,
    /// Why it was skipped, not run, or failed, when there is more to say than its status
    /// and exit code (and why a passed step was not cached).
    pub reason: Option<Reason>,
    /// Tracked files it changed though it is no fixer: that alone fails it.
    pub wrote: Option<TrackedWrites>,
    /// Set when the result came from `[remote]`: its cache or one of its workers.
    pub remote: Option<RemoteOrigin>,
}

impl StepResult {
    /// A result that says only how the step ended; the methods below add the rest.
    pub fn new(name: impl Into<String>, status: Status) -> Self {
        StepResult {
            name: name.into(),
            status,
            duration: Duration::ZERO,
            exit_code: None,
            output: Vec::new(),
            reason: None,
            wrote: None,
            remote: None,
        }
    }

    pub fn took(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    pub fn exited(mut self, code: i32) -> Self {
        self.exit_code = Some(code);
        self
    }

    pub fn with_output(mut self, output: Vec<u8>) -> Self {
        self.output = output;
        self
    }

    /// Why it ended so; `None` leaves it unsaid.
    pub fn because(mut self, reason: impl Into<Option<Reason>>) -> Self {
        self.reason = reason.into();
        self
    }

    pub fn from_remote(mut self, origin: RemoteOrigin) -> Self {
        self.remote = Some(origin);
        self
    }
}

/// Why a step ran or came from the cache (`--explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Explanation {
    /// A step it needs has no key, so neither has this one: it is not cached.
    NeedHasNoKey(String),
    /// Its key could not be computed, and why: it is not cached.
    NotKeyed(String),
    /// A hit in the local cache, under this key.
    Hit { key: String },
    /// A hit in the remote cache, for the Action with this digest.
    RemoteHit { action: String },
    /// It cannot run on the farm, and why.
    NotRemote(String),
    /// A miss, as the cache tells it (what changed since the last pass).
    Miss(String),
    /// A fixer changes its own inputs: it is not cached.
    Fixer,
    /// It reads the commit message, which no key knows of: it is not cached.
    ReadsMessage,
    /// Skipped on purpose, by the setting named (`PREFLIGHT_SKIP`).
    SkippedBy(String),
    /// A miss: a file it read without declaring it (or looked for) is not as it was.
    Observed(crate::cache::observed::Drift),
    /// A miss: its entry was stored without observing what it read, and this run observes.
    NotObserved,
    /// A miss: the record of what it read was damaged (the entry was removed).
    ObservedDamaged,
    /// A miss: the files it read could not be checked, and why.
    ObservedUnreadable(String),
}

/// Why a step ended as it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Skipped on purpose, by the setting named (`PREFLIGHT_SKIP`).
    SkippedBy(String),
    /// Its `files` globs matched none of the run's files that are still there.
    NoMatchingFiles,
    /// It uses `{msg_file}` outside the hooks that have a commit message.
    NoMessageFile,
    /// The folder the steps run in could not be made, and why.
    NoWorkdir(String),
    /// Its working directory (`dir`, relative to the root) does not exist.
    MissingDir(PathBuf),
    /// The shell could not find the program its command names.
    CommandNotFound { code: i32, program: String },
    /// The shell found the program but could not run it.
    CommandNotRunnable { code: i32, program: String },
    /// Killed by this signal.
    Signal(i32),
    /// Its process could not be started, and why.
    SpawnFailed(String),
    /// Killed when it reached its timeout, here or on a remote worker.
    TimedOut { limit: Duration, remote: bool },
    /// Stopped while it ran, for the canceller's reason (`--fail-fast`, Ctrl-C).
    Cancelled(String),
    /// Never started: the run stopped first.
    NotStarted(NotStarted),
    /// A step it needs did not pass; how that one ended, when it did.
    NeedNotPassed {
        need: String,
        status: Option<Status>,
    },
    /// It passed, but its result was not stored in the cache, and why.
    NotCached(String),
    /// It passed, but what it read could not be observed, so its result was not stored.
    NotObserved(String),
}

/// Why a run started no more steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotStarted {
    /// It was stopped, for the canceller's reason.
    Stopped(String),
    /// Not even one thread could be started.
    NoThread,
}

/// Tracked files a step that is no fixer changed, and the steps that ran beside it (the
/// change may be theirs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedWrites {
    pub files: Vec<PathBuf>,
    pub alongside: Vec<String>,
}

/// Where a remote result came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOrigin {
    /// Run by a worker in this run (else found in the remote cache).
    pub executed: bool,
    /// The worker that built it, as the server names it.
    pub worker: String,
}

/// Totals for the end of a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub not_run: usize,
    pub cancelled: usize,
    pub cached: usize,
    pub duration: Duration,
    pub interrupted: bool,
}

impl Summary {
    pub fn add(&mut self, status: Status) {
        match status {
            Status::Passed => self.passed += 1,
            Status::Failed | Status::TimedOut => self.failed += 1,
            Status::Cancelled => self.cancelled += 1,
            Status::Skipped => self.skipped += 1,
            Status::NotRun => self.not_run += 1,
            Status::Cached => self.cached += 1,
        }
    }

    pub fn success(&self) -> bool {
        self.failed == 0 && self.not_run == 0 && self.cancelled == 0 && !self.interrupted
    }
}

/// What the engine tells the reporter, in the order it happens.
#[derive(Debug)]
pub enum Event {
    RunStarted {
        steps: usize,
        jobs: usize,
    },
    StepStarted {
        name: String,
    },
    /// One line of a step's output, sent only when output is streamed (`-v`).
    StepOutput {
        name: String,
        line: Vec<u8>,
    },
    /// Why a step ran or came from the cache (`--explain`); sent before it finishes.
    StepExplained {
        name: String,
        lines: Vec<Explanation>,
    },
    /// A step that may use the remote changed stage (uploading, queued, executing), or
    /// stays here.
    StepRemote {
        name: String,
        stage: RemoteStage,
    },
    /// Something the user should know that does not fail the run (the remote is down).
    Warning(Warning),
    /// Processes (pid, command line) that outlived a step's own process, left its process
    /// group and still held its output open: the step was reported without waiting for them.
    StepLeftProcesses {
        name: String,
        processes: Vec<(u32, String)>,
    },
    StepFinished(StepResult),
    RunFinished(Summary),
}

/// Where a step that may use the remote is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteStage {
    /// A stage of its execution on the farm.
    Execution(ExecutionStage),
    /// It runs here instead of on a worker.
    RunsHere(RunsHere),
}

/// Why a step that may run remotely runs here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunsHere {
    /// It declares no `inputs`, so a worker would not know which files it reads.
    NoInputs,
    /// It cannot be an Action a worker runs, and why.
    Unsupported(String),
}

/// What the engine warns of: nothing here fails the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The system granted fewer threads than the run asked for.
    FewerThreads { granted: usize, asked: usize },
    /// Not even one thread could be started: no step runs.
    NoThread(String),
    /// The cache holds an entry for the step that it refuses to restore, and why.
    CacheRefused { step: String, why: String },
    /// An `inputs` glob of the step matches only files git ignores, below `folder`.
    IgnoredInput {
        step: String,
        glob: String,
        folder: PathBuf,
    },
    /// The cache store cannot be written (said once per run).
    StoreFailed(String),
    /// Steps' file reads cannot be observed on this system, and why: cached steps are keyed
    /// on their declared inputs only (said once per run).
    ObserveUnavailable(String),
    /// About the remote as a whole (down, no Execution service): said once per run.
    Remote(String),
    /// About one step's use of the remote.
    RemoteStep { step: String, problem: String },
    /// No worker took the step within the queue timeout: it runs here.
    NotTaken { step: String, waited: Duration },
    /// The worker that took the step could not provide its managed tools: it runs here.
    ToolsNotOnWorker { step: String, why: String },
    /// A result the remote gave for the step cannot be used here.
    RemoteResultUnusable { step: String, why: String },
}

pub trait Reporter {
    fn event(&mut self, event: Event);
}
