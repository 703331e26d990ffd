//! The run pipeline: what `preflight run`, every hook and `preflight watch` share. A command
//! turns its arguments into [`Args`]; [`RunRequest::resolve`] adds what the environment
//! ([`Env`], read once by [`Env::read`]) and the configuration say; [`run`] picks the files
//! ([`resolve_files`]), plans, opens the cache and the remote, executes and reports.
//!
//! Lives here: the file sources, the cache and remote modes of a run, where steps run (the
//! work tree or a commit's checkout), setting unstaged work aside around a commit, the dry
//! run. Imports the layers below (plan, exec, cache, remote, git, hooks, report), never
//! `commands` or `cli`.

use crate::cache::{self, Mode, Session};
use crate::config::{self, Config, RemoteCache, did_you_mean};
use crate::error::{Error, Result, exit};
use crate::exec;
use crate::filetypes::{Contents, WorkTree};
use crate::git::{self, CommitContent, ObjectId, Repo, StoredContents};
use crate::hooks::checkout::Checkout;
use crate::hooks::stash::{self, Restored, Stash};
use crate::plan::{self, Plan, Selection};
use crate::process::Canceller;
use crate::report::{self, Format, HumanOptions, KeyState, StepKey, Summary};
use crate::signals::{self, Stops};
use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The environment variables that change a run, read once.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `PREFLIGHT_NO_CACHE` set (and not `0`): every run behaves as with `--no-cache`.
    pub no_cache: bool,
    /// `PREFLIGHT_SKIP`: steps to skip, comma-separated.
    pub skip: Option<String>,
    /// `PREFLIGHT_REMOTE_CACHE`: `off`, `read` or `read-write`.
    pub remote_cache: Option<String>,
    /// `PREFLIGHT=0`: the hooks do nothing.
    pub hooks_off: bool,
    /// `CI` set (and not `false`): no live display.
    pub in_ci: bool,
    /// `TERM=dumb`: no live display.
    pub dumb_term: bool,
    /// `GITHUB_ACTIONS=true`: step output folded in groups.
    pub github_actions: bool,
}

impl Env {
    /// The one reader of these variables.
    pub fn read() -> Env {
        Env {
            no_cache: std::env::var_os("PREFLIGHT_NO_CACHE")
                .is_some_and(|v| !v.is_empty() && v != "0"),
            skip: std::env::var_os("PREFLIGHT_SKIP").map(|v| v.to_string_lossy().into_owned()),
            remote_cache: std::env::var("PREFLIGHT_REMOTE_CACHE").ok(),
            hooks_off: std::env::var_os("PREFLIGHT").is_some_and(|v| v == "0"),
            in_ci: std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false"),
            dumb_term: std::env::var("TERM").is_ok_and(|t| t == "dumb"),
            github_actions: std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"),
        }
    }

    /// Whether output goes to a terminal for a person (not CI, not a pipe).
    pub fn interactive(&self) -> bool {
        std::io::stdout().is_terminal() && !self.in_ci && !self.dumb_term
    }
}

/// Which files a run is about, and what their content is read from.
pub enum FileSource {
    /// Every tracked file, plus those of `also` that exist (watch mode: new files not yet
    /// added to git), judged in the work tree.
    Tracked { also: Vec<PathBuf> },
    /// The staged files, judged in the index.
    Staged,
    /// The files changed from the fork point of `from` to the commit `to`, which is checked
    /// instead of the work tree.
    Range { from: String, to: String },
    /// The files changed between two commits (`from` all zeros: every file of `to`), judged
    /// in the work tree (after a checkout or a merge).
    Changed { from: String, to: String },
    /// A pushed commit, checked instead of the work tree; `refs` name it to the user.
    Pushed {
        commit: Box<CommitContent>,
        files: Vec<PathBuf>,
        refs: String,
    },
    /// These repository-relative paths, judged in the work tree.
    Paths(Vec<PathBuf>),
}

/// A run's files, resolved.
pub struct Files<'r> {
    pub list: Vec<PathBuf>,
    judged: Judged<'r>,
    /// Set when a commit is checked rather than the work tree.
    pub commit: Option<AtCommit>,
}

/// Where file types are told from: the index, a commit, or the work tree.
enum Judged<'r> {
    WorkTree(WorkTree<'r>),
    Stored(StoredContents<'r>),
}

impl Files<'_> {
    pub fn contents(&self) -> &dyn Contents {
        match &self.judged {
            Judged::WorkTree(w) => w,
            Judged::Stored(s) => s,
        }
    }
}

/// A commit a run checks, and what the run tells the user it checked.
pub struct AtCommit {
    pub content: CommitContent,
    /// `the pushed commit`, `the commit`.
    pub what: &'static str,
    /// The refs or revision that name it.
    pub refs: String,
}

/// The files of `source`, the contents their types are told from, and the commit checked.
pub fn resolve_files(repo: &Repo, source: FileSource) -> Result<Files<'_>> {
    let work_tree = || Judged::WorkTree(WorkTree { root: &repo.root });
    Ok(match source {
        FileSource::Tracked { also } => {
            let mut list = repo.tracked_files()?;
            for path in also {
                if repo.root.join(&path).is_file() && !list.contains(&path) {
                    list.push(path);
                }
            }
            Files {
                list,
                judged: work_tree(),
                commit: None,
            }
        }
        FileSource::Staged => Files {
            list: repo.staged_files()?,
            judged: Judged::Stored(repo.staged_contents()?),
            commit: None,
        },
        FileSource::Range { from, to } => {
            let to_id = repo.resolve(&to)?;
            let list = repo.changed_since_fork(repo.resolve(&from)?, to_id)?;
            let content = repo.commit_content(to_id)?;
            Files {
                list,
                judged: Judged::Stored(repo.commits_contents(&[&to])?),
                commit: Some(AtCommit {
                    content,
                    what: "the commit",
                    refs: to,
                }),
            }
        }
        FileSource::Changed { from, to } => {
            let to = repo.resolve(&to)?;
            let from = if from.bytes().all(|b| b == b'0') {
                None
            } else {
                Some(repo.resolve(&from)?)
            };
            Files {
                list: repo.changed_between(from, to)?,
                judged: work_tree(),
                commit: None,
            }
        }
        FileSource::Pushed {
            commit,
            files,
            refs,
        } => {
            let list = files.into_iter().filter(|f| commit.has_file(f)).collect();
            // File types are told from the pushed commit's own files.
            let judged = Judged::Stored(repo.commits_contents(&[&commit.id.to_string()])?);
            Files {
                list,
                judged,
                commit: Some(AtCommit {
                    content: *commit,
                    what: "the pushed commit",
                    refs,
                }),
            }
        }
        FileSource::Paths(list) => Files {
            list,
            judged: work_tree(),
            commit: None,
        },
    })
}

/// What a command asks of a run, from its arguments alone.
pub struct Args {
    /// Step names (empty: all steps).
    pub steps: Vec<String>,
    pub fix: bool,
    /// Keep only these of the planned steps (a CI job's own steps).
    pub only: Option<Vec<String>>,
    pub files: FileSource,
    pub no_cache: bool,
    pub force: Vec<String>,
    pub explain: bool,
    pub dry_run: bool,
    /// `--remote-cache`, already checked by the parser.
    pub remote_cache: Option<String>,
    pub remote_execute: bool,
    pub no_remote: bool,
    /// The command has the remote flags: a bad `PREFLIGHT_REMOTE_CACHE` is an error, as a
    /// bad flag is. Hooks and watch ignore it instead.
    pub remote_flags: bool,
    /// `--ci`: plain lines, the `ci_cache` remote mode, and on GitHub Actions each step's
    /// output folded in a group.
    pub ci: bool,
    pub jobs: Option<usize>,
    pub fail_fast: bool,
    pub verbose: bool,
    pub format: Format,
    /// Fail a check that changes tracked files. Off in watch mode, where the person editing
    /// while a step runs changes them too.
    pub guard_writes: bool,
    /// The commit message file given to `commit-msg` hooks.
    pub msg_file: Option<PathBuf>,
    /// pre-commit: unstaged work is set aside while the steps run, and passed fixes staged.
    pub set_aside_unstaged: bool,
    /// Steps named in `PREFLIGHT_SKIP` are skipped (not in watch mode).
    pub env_skip: bool,
}

impl Args {
    /// A run of these files with nothing else asked: all steps, the cache read and written,
    /// the human report, writes guarded.
    pub fn new(files: FileSource) -> Args {
        Args {
            steps: Vec::new(),
            fix: false,
            only: None,
            files,
            no_cache: false,
            force: Vec::new(),
            explain: false,
            dry_run: false,
            remote_cache: None,
            remote_execute: false,
            no_remote: false,
            remote_flags: false,
            ci: false,
            jobs: None,
            fail_fast: false,
            verbose: false,
            format: Format::Human,
            guard_writes: true,
            msg_file: None,
            set_aside_unstaged: false,
            env_skip: true,
        }
    }
}

/// One run, everything decided: what the arguments, the environment and the configuration
/// together ask for.
pub struct RunRequest {
    pub selection: StepSelection,
    pub files: FileSource,
    pub cache: Mode,
    pub remote: crate::remote::Overrides,
    pub output: Output,
    pub dry_run: bool,
    pub msg_file: Option<PathBuf>,
    pub set_aside_unstaged: bool,
}

/// Which steps run, and how.
pub struct StepSelection {
    pub names: Vec<String>,
    pub fix: bool,
    pub only: Option<Vec<String>>,
    /// Skipped on purpose (`PREFLIGHT_SKIP`).
    pub skip: Vec<String>,
}

/// How the steps of a run are shown and bounded.
pub struct Output {
    pub jobs: Option<usize>,
    pub fail_fast: bool,
    pub verbose: bool,
    pub format: Format,
    pub color: bool,
    pub ci: bool,
    pub guard_writes: bool,
    /// A live display on a terminal for a person.
    pub live: bool,
    /// On GitHub Actions: step output folded in groups.
    pub github: bool,
}

impl RunRequest {
    /// The run `args` ask for, as `env` and `config` shape it. The only place where the
    /// environment has its say on a run.
    pub fn resolve(args: Args, env: &Env, config: &Config, color: bool) -> Result<RunRequest> {
        for name in &args.force {
            if !config.steps.contains_key(name) {
                let hint = match did_you_mean(name, config.steps.keys().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "name a step of the configuration".into(),
                };
                return Err(Error::Usage(format!(
                    "--force names `{name}`, which is not a step\nhelp: {hint}"
                )));
            }
        }
        let no_cache = args.no_cache || env.no_cache;
        let cache = Mode {
            read: !no_cache,
            write: !no_cache && !args.dry_run,
            force: args.force.iter().cloned().collect(),
            explain: args.explain || args.dry_run,
        };
        let remote = crate::remote::Overrides {
            // The flag (or PREFLIGHT_REMOTE_CACHE), else under --ci the `ci_cache` mode.
            cache: remote_cache(&args, env)?.or_else(|| {
                config
                    .remote
                    .as_ref()
                    .and_then(|r| r.ci_cache)
                    .filter(|_| args.ci)
            }),
            execute: args.remote_execute.then_some(true),
            off: args.no_remote,
        };
        let output = Output {
            jobs: args.jobs,
            fail_fast: args.fail_fast,
            verbose: args.verbose,
            format: args.format,
            color,
            ci: args.ci,
            guard_writes: args.guard_writes,
            live: env.interactive() && !args.ci,
            github: env.github_actions,
        };
        Ok(RunRequest {
            selection: StepSelection {
                names: args.steps,
                fix: args.fix,
                only: args.only,
                skip: match args.env_skip {
                    true => skip_list(env, config, color),
                    false => Vec::new(),
                },
            },
            files: args.files,
            cache,
            remote,
            output,
            dry_run: args.dry_run,
            msg_file: args.msg_file,
            set_aside_unstaged: args.set_aside_unstaged,
        })
    }
}

/// The remote cache mode the flag or `PREFLIGHT_REMOTE_CACHE` names. Where the flag exists,
/// the variable is held to the flag's values; a hook or a watch ignores a bad value rather
/// than stop a commit over it.
fn remote_cache(args: &Args, env: &Env) -> Result<Option<RemoteCache>> {
    if let Some(flag) = &args.remote_cache {
        return Ok(RemoteCache::parse(flag));
    }
    let Some(value) = env.remote_cache.as_deref() else {
        return Ok(None);
    };
    if !args.remote_flags {
        return Ok(RemoteCache::parse(value.trim()));
    }
    match RemoteCache::parse(value) {
        Some(mode) => Ok(Some(mode)),
        None => Err(Error::Usage(format!(
            "invalid value '{value}' for PREFLIGHT_REMOTE_CACHE (the --remote-cache setting)\n\
             help: one of off, read, read-write"
        ))),
    }
}

/// Steps named in PREFLIGHT_SKIP (comma-separated); unknown names are reported, not fatal.
fn skip_list(env: &Env, config: &Config, color: bool) -> Vec<String> {
    let Some(value) = &env.skip else {
        return Vec::new();
    };
    let names: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    for name in names
        .iter()
        .filter(|n| !config.steps.contains_key(n.as_str()))
    {
        report::warn(
            &format!("PREFLIGHT_SKIP names `{name}`, which is not a step"),
            color,
        );
    }
    names
}

/// What a run came to.
pub enum Outcome {
    /// `--dry-run`: the keys were shown, nothing ran.
    DryRun,
    Ran(Summary),
    /// A pre-commit run: its summary, and what became of the unstaged work set aside.
    Committed {
        summary: Summary,
        restored: Restored,
        /// Whether fixers ran (and may have changed files).
        fixers: bool,
    },
}

impl Outcome {
    pub fn summary(&self) -> Option<&Summary> {
        match self {
            Outcome::DryRun => None,
            Outcome::Ran(summary) | Outcome::Committed { summary, .. } => Some(summary),
        }
    }

    pub fn exit_code(&self) -> i32 {
        self.summary().map_or(exit::SUCCESS, exit_code)
    }
}

pub fn exit_code(summary: &Summary) -> i32 {
    if summary.interrupted {
        exit::INTERRUPTED
    } else if summary.success() {
        exit::SUCCESS
    } else {
        exit::STEPS_FAILED
    }
}

/// Runs `request` in `repo` by `config`; `canceller` stops it.
pub fn run(
    repo: &Repo,
    config: &Config,
    request: RunRequest,
    canceller: Arc<Canceller>,
) -> Result<Outcome> {
    prepare(repo, config, request)?.run(canceller)
}

/// A run planned and not started yet.
pub struct Prepared<'r> {
    repo: &'r Repo,
    config: &'r Config,
    plan: Plan,
    files: Vec<PathBuf>,
    commit: Option<AtCommit>,
    cache: Mode,
    remote: crate::remote::Overrides,
    output: Output,
    dry_run: bool,
    msg_file: Option<PathBuf>,
    set_aside_unstaged: bool,
}

/// Resolves the files of `request` and plans its steps.
pub fn prepare<'r>(
    repo: &'r Repo,
    config: &'r Config,
    request: RunRequest,
) -> Result<Prepared<'r>> {
    let RunRequest {
        selection,
        files,
        cache,
        remote,
        output,
        dry_run,
        msg_file,
        set_aside_unstaged,
    } = request;
    let files = resolve_files(repo, files)?;
    let fix = match &files.commit {
        Some(_) => no_fixes_on_a_commit(selection.fix, output.color),
        None => selection.fix,
    };
    let picked = Selection {
        names: &selection.names,
        fix,
        skip: &selection.skip,
    };
    let mut plan = plan::build(config, &picked, &files.list, files.contents())?;
    if let Some(steps) = &selection.only {
        plan = plan::only_steps(plan, steps);
    }
    let Files { list, commit, .. } = files;
    Ok(Prepared {
        repo,
        config,
        plan,
        files: list,
        commit,
        cache,
        remote,
        output,
        dry_run,
        msg_file,
        set_aside_unstaged,
    })
}

impl Prepared<'_> {
    /// The names of the planned steps, in plan order.
    pub fn step_names(&self) -> Vec<String> {
        self.plan
            .steps
            .iter()
            .map(|s| s.step.name.clone())
            .collect()
    }

    /// Opens the cache and the remote, executes and reports; `canceller` stops it.
    pub fn run(self, canceller: Arc<Canceller>) -> Result<Outcome> {
        let Prepared {
            repo,
            config,
            plan,
            files,
            commit,
            cache,
            remote,
            output,
            dry_run,
            msg_file,
            set_aside_unstaged,
        } = self;
        if let Some(commit) = commit {
            if dry_run {
                let session =
                    session_at_commit(config, repo, cache, commit.content.files, &repo.root)?;
                show_dry_run(&plan, &session, &repo.root, output.format);
                return Ok(Outcome::DryRun);
            }
            let summary = execute_at_commit(
                repo, config, plan, &output, &remote, cache, commit, canceller,
            )?;
            return Ok(Outcome::Ran(summary));
        }
        let session = session(config, repo, cache)?;
        if dry_run {
            show_dry_run(&plan, &session, &repo.root, output.format);
            return Ok(Outcome::DryRun);
        }
        let place = Place::work_tree(repo);
        if !set_aside_unstaged {
            let summary = execute_in(
                repo,
                &place,
                config,
                plan,
                &output,
                &remote,
                msg_file,
                Some(session),
                canceller,
            );
            return Ok(Outcome::Ran(summary));
        }
        // The steps see exactly what will be committed. Steps that get files see only staged
        // files; a step without `files`, or whose command does not take `{files}`, reads the
        // whole tree, and a fixer may write anywhere.
        let fixers = plan.steps.iter().any(|s| s.fixes);
        let whole_tree = plan
            .steps
            .iter()
            .any(|s| (s.files.is_none() || !s.command.uses_files() || s.fixes) && s.skip.is_none());
        let stash = Stash::save(repo, (!whole_tree).then_some(files.as_slice()), fixers)?;
        let summary = execute_in(
            repo,
            &place,
            config,
            plan,
            &output,
            &remote,
            msg_file,
            Some(session),
            canceller,
        );
        let stage: &[PathBuf] = if summary.success() { &files } else { &[] };
        let restored = stash.restore(fixers, stage)?;
        Ok(Outcome::Committed {
            summary,
            restored,
            fixers,
        })
    }
}

/// A commit's checkout is thrown away: fixes made there would be lost, so its checks run.
fn no_fixes_on_a_commit(fix: bool, color: bool) -> bool {
    if fix {
        report::warn(
            "fixes are not applied when a commit is checked (they would change neither the \
             commit nor your work tree): the checks run instead",
            color,
        );
    }
    false
}

/// A new canceller that Ctrl-C, SIGTERM and SIGHUP trigger: the first asks running steps to
/// stop, a second kills them at once. Either way the run then reports and exits 130.
pub fn cancel_on_signals() -> Result<Arc<Canceller>> {
    let canceller = Canceller::new();
    let on_signal = Arc::clone(&canceller);
    signals::on_stop(Stops::InterruptTermHangup, move |count| {
        if count > 1 {
            on_signal.kill_now();
        } else {
            on_signal.interrupt();
        }
    })?;
    Ok(canceller)
}

/// The cache of a run in the work tree.
fn session(config: &Config, repo: &Repo, mode: Mode) -> Result<Session> {
    let dir = match cache::cache_dir(config, &repo.root) {
        Ok(dir) => dir,
        // Without cached steps, a missing cache folder does not matter.
        Err(_) if !config.steps.values().any(cache::is_cached) => {
            return Session::open(
                config,
                repo,
                &repo.root,
                Mode {
                    read: false,
                    write: false,
                    ..mode
                },
            );
        }
        Err(e) => return Err(e),
    };
    Session::open(config, repo, &dir, mode)
}

/// The cache for a run that checks a commit: keys from the commit's `files`, outputs restored
/// and captured in `files_root`, where its steps run.
fn session_at_commit(
    config: &Config,
    repo: &Repo,
    mode: Mode,
    files: git::IndexSnapshot,
    files_root: &Path,
) -> Result<Session> {
    let cached = config.steps.values().any(cache::is_cached);
    let (dir, mode) = match cache::cache_dir(config, &repo.root) {
        Ok(dir) => (dir, mode),
        // Without cached steps, a missing cache folder does not matter.
        Err(_) if !cached => (
            repo.root.clone(),
            Mode {
                read: false,
                write: false,
                ..mode
            },
        ),
        Err(e) => return Err(e),
    };
    Ok(Session::open_at_commit(
        config, repo, &dir, mode, files, files_root,
    ))
}

/// `run --dry-run`: every step's key and state, nothing run.
fn show_dry_run(plan: &Plan, session: &Session, root: &Path, format: Format) {
    let steps = step_keys(plan, session, root);
    report::dry_run(&steps, format == Format::Json);
}

/// Every step's key and state as a run would find them, in plan order, for the report.
pub fn step_keys(plan: &Plan, session: &Session, root: &Path) -> Vec<StepKey> {
    exec::preview(plan, session, root)
        .into_iter()
        .map(|p| {
            let state = match p.foreseen {
                exec::Foreseen::Hit => KeyState::Hit,
                exec::Foreseen::Miss => KeyState::Miss,
                exec::Foreseen::NotCached => KeyState::NotCached,
                exec::Foreseen::Skipped => KeyState::Skipped,
            };
            match p.keyed {
                Some(keyed) => StepKey {
                    name: p.name,
                    key: Some(keyed.key),
                    state,
                    reasons: p.reasons,
                    inputs: keyed.record.inputs,
                    from_index: keyed.stats.from_index,
                    hashed: keyed.stats.hashed,
                    hashed_bytes: keyed.stats.hashed_bytes,
                },
                None => StepKey {
                    name: p.name,
                    key: None,
                    state,
                    reasons: p.reasons,
                    inputs: Vec::new(),
                    from_index: 0,
                    hashed: 0,
                    hashed_bytes: 0,
                },
            }
        })
        .collect()
}

/// Runs `plan` on a commit's content rather than the work tree. Every step is keyed on the
/// commit's files, read from its tree, so a step that passed on the same content before
/// (at commit time) is a hit. The place where steps run is made only when one must run: the
/// work tree when it is exactly that commit, else a temporary checkout of it; it is removed
/// afterwards. Outputs made in a checkout are cached (they are the commit's) and never
/// reach the work tree.
#[allow(clippy::too_many_arguments)]
fn execute_at_commit(
    repo: &Repo,
    config: &Config,
    plan: Plan,
    output: &Output,
    remote: &crate::remote::Overrides,
    mode: Mode,
    commit: AtCommit,
    canceller: Arc<Canceller>,
) -> Result<Summary> {
    let short = commit.content.short_id();
    let checkout = Arc::new(Checkout::new(repo, commit.content.id)?);
    let place = Place {
        root: checkout.path().to_path_buf(),
        env: checkout.git_env(),
        workdir: Some(Arc::clone(&checkout) as Arc<dyn exec::Workdir>),
    };
    let cache = session_at_commit(config, repo, mode, commit.content.files, &place.root)?;
    let summary = execute_in(
        repo,
        &place,
        config,
        plan,
        output,
        remote,
        None,
        Some(cache),
        canceller,
    );
    // The checkout goes before the last word, so that nothing is left behind when it is read.
    checkout.remove();
    report::warn(
        &format!(
            "checked {} {short} ({}), not your work tree",
            commit.what, commit.refs
        ),
        output.color,
    );
    Ok(summary)
}

/// Where a run's steps run.
struct Place {
    root: PathBuf,
    /// Variables set for every step on top of `[env]`.
    env: Vec<(String, String)>,
    /// When the root is made on demand.
    workdir: Option<Arc<dyn exec::Workdir>>,
}

impl Place {
    fn work_tree(repo: &Repo) -> Place {
        Place {
            root: repo.root.clone(),
            env: Vec::new(),
            workdir: None,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn execute_in(
    repo: &Repo,
    place: &Place,
    config: &Config,
    plan: Plan,
    output: &Output,
    remote: &crate::remote::Overrides,
    msg_file: Option<PathBuf>,
    cache: Option<Session>,
    canceller: Arc<Canceller>,
) -> Summary {
    let jobs = match output.jobs.or(Some(config.settings.jobs)) {
        Some(0) | None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Some(n) => n,
    };
    // Without the local cache there is nothing to restore a remote result into.
    let remote = cache
        .as_ref()
        .filter(|c| c.mode.read && c.mode.write)
        .and_then(|_| crate::remote::Session::open(config.remote.as_ref(), remote))
        .map(Arc::new);
    // Checks must leave tracked files alone; the index says which they are. A checkout of a
    // commit made for this run is nobody's work: it is not watched.
    let guarded = output.guard_writes
        && place.workdir.is_none()
        && plan.steps.iter().any(|s| !s.fixes && s.skip.is_none());
    let tracked = match guarded.then(|| repo.index_snapshot()) {
        Some(Ok(index)) => Some(Arc::new(index)),
        Some(Err(e)) => {
            report::warn(
                &format!("cannot tell whether checks change tracked files: {e}"),
                output.color,
            );
            None
        }
        None => None,
    };
    let options = exec::Options {
        jobs,
        fail_fast: output.fail_fast || config.settings.fail_fast,
        stream_output: output.verbose,
        msg_file,
        cache: cache.map(Arc::new),
        remote,
        tracked,
        workdir: place.workdir.clone(),
    };

    let human = HumanOptions {
        verbose: output.verbose,
        color: output.color,
        live: output.live,
        github: output.github,
        fold_each: output.ci,
    };
    let mut reporter = report::reporter(output.format, human);
    let env = config
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(place.env.iter().cloned())
        .collect();
    exec::execute(
        plan,
        &place.root,
        env,
        &options,
        canceller,
        reporter.as_mut(),
    )
}

/// The configuration a pushed commit holds (at the root, under one of the usual names).
pub fn committed_config(
    repo: &Repo,
    commit: &CommitContent,
    color: bool,
) -> Result<Option<Config>> {
    for name in config::FILE_NAMES {
        let Some(id) = commit.file_id(Path::new(name)) else {
            continue;
        };
        let bytes = repo.blob(id)?;
        let source = String::from_utf8(bytes).map_err(|_| {
            Error::Usage(format!(
                "the {name} of the pushed commit {} is not UTF-8 text",
                commit.short_id()
            ))
        })?;
        let origin = format!("in the pushed commit {}", commit.short_id());
        let loaded = config::load_text(&repo.root.join(name), &source, Some(&origin));
        if loaded.is_err() {
            report::warn(
                &format!(
                    "the {name} of the pushed commit {} is not valid:",
                    commit.short_id()
                ),
                color,
            );
        }
        return loaded.map(Some);
    }
    Ok(None)
}

/// One commit a push sends, the refs that send it, and the files they change.
pub struct Pushed {
    pub commit: ObjectId,
    pub refs: Vec<String>,
    pub files: BTreeSet<PathBuf>,
}

/// The commits a push sends, each once (refs sending the same commit are checked once),
/// with the files their refs change on `remote`.
pub fn pushed_commits(
    repo: &Repo,
    remote: &str,
    updates: &[git::PushUpdate],
) -> Result<Vec<Pushed>> {
    let mut pushed: Vec<Pushed> = Vec::new();
    for update in updates {
        let Some(commit) = repo.pushed_commit(update)? else {
            continue;
        };
        let files = repo.pushed_files(remote, std::slice::from_ref(update))?;
        let name = update
            .remote_ref
            .strip_prefix("refs/heads/")
            .or_else(|| update.remote_ref.strip_prefix("refs/tags/"))
            .unwrap_or(&update.remote_ref)
            .to_string();
        match pushed.iter_mut().find(|p| p.commit == commit) {
            Some(p) => {
                p.refs.push(name);
                p.files.extend(files);
            }
            None => pushed.push(Pushed {
                commit,
                refs: vec![name],
                files: files.into_iter().collect(),
            }),
        }
    }
    Ok(pushed)
}

/// Puts back unstaged work that a killed pre-commit run left saved, or says how. Returns
/// whether everything that was set aside is back.
pub fn recover_unstaged(repo: &Repo, color: bool) -> bool {
    let outcomes = match stash::recover(repo) {
        Ok(outcomes) => outcomes,
        Err(e) => {
            report::warn(
                &format!("cannot check for saved unstaged changes: {e}"),
                color,
            );
            return false;
        }
    };
    let mut all_back = true;
    for outcome in outcomes {
        let message = match outcome {
            stash::Recovery::Restored(backup) => format!(
                "an interrupted pre-commit run had set your unstaged changes aside; \
                 they are back in the work tree (from {})",
                backup.display()
            ),
            stash::Recovery::NeedsHelp { backup, paths } => {
                all_back = false;
                let changed = if paths.is_empty() {
                    "it could not be read back".to_string()
                } else {
                    let names: Vec<String> =
                        paths.iter().map(|p| p.display().to_string()).collect();
                    format!(
                        "{} changed since, so preflight left {} alone",
                        names.join(", "),
                        if paths.len() == 1 { "it" } else { "them" }
                    )
                };
                format!(
                    "an interrupted pre-commit run set your unstaged changes aside in {0}, and \
                     {changed}.\nhelp: your own versions of the files are in {0}/work/, by path; \
                     copy back what you want to keep (e.g. `cp -a {0}/work/FILE FILE`), then \
                     delete {0}",
                    backup.display()
                )
            }
            stash::Recovery::OldPatch(patch) => {
                all_back = false;
                format!(
                    "an older preflight left your unstaged changes in {0}.\nhelp: look at it, \
                     then `git apply --3way {0}` to get them back, and delete the file when done",
                    patch.display()
                )
            }
        };
        report::warn(&message, color);
    }
    all_back
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        config::parse(Path::new("preflight.toml"), text).unwrap()
    }

    fn resolve(args: Args, env: &Env, config: &Config) -> Result<RunRequest> {
        RunRequest::resolve(args, env, config, false)
    }

    const REMOTE: &str = "[steps.a]\nrun = \"true\"\n[steps.b]\nrun = \"true\"\n\
                          [remote]\nendpoint = \"grpc://localhost:1\"\nci_cache = \"read-write\"\n";

    #[test]
    fn no_cache_from_the_environment_turns_the_cache_off() {
        let config = config(REMOTE);
        let env = Env {
            no_cache: true,
            ..Env::default()
        };
        let request = resolve(Args::new(FileSource::Staged), &env, &config).unwrap();
        assert!(!request.cache.read && !request.cache.write);
        let request = resolve(Args::new(FileSource::Staged), &Env::default(), &config).unwrap();
        assert!(request.cache.read && request.cache.write && !request.cache.explain);
        let dry = Args {
            dry_run: true,
            ..Args::new(FileSource::Staged)
        };
        let request = resolve(dry, &Env::default(), &config).unwrap();
        assert!(request.cache.read && !request.cache.write && request.cache.explain);
    }

    #[test]
    fn the_remote_cache_comes_from_the_flag_the_environment_then_ci_cache() {
        let config = config(REMOTE);
        let read = Env {
            remote_cache: Some(" read".into()),
            ..Env::default()
        };
        // A hook trims the value and ignores a bad one.
        let hook = resolve(Args::new(FileSource::Staged), &read, &config).unwrap();
        assert_eq!(hook.remote.cache, Some(RemoteCache::Read));
        let bad = Env {
            remote_cache: Some("bogus".into()),
            ..Env::default()
        };
        let hook = resolve(Args::new(FileSource::Staged), &bad, &config).unwrap();
        assert_eq!(hook.remote.cache, None);
        // Where the flag exists, the variable is held to its values.
        let strict = || Args {
            remote_flags: true,
            ..Args::new(FileSource::Staged)
        };
        assert!(resolve(strict(), &bad, &config).is_err());
        assert!(resolve(strict(), &read, &config).is_err());
        let flag = Args {
            remote_cache: Some("off".into()),
            ..strict()
        };
        assert_eq!(
            resolve(flag, &bad, &config).unwrap().remote.cache,
            Some(RemoteCache::Off)
        );
        // Under --ci, without flag or variable, the `ci_cache` mode.
        let ci = Args {
            ci: true,
            ..strict()
        };
        assert_eq!(
            resolve(ci, &Env::default(), &config).unwrap().remote.cache,
            Some(RemoteCache::ReadWrite)
        );
        assert_eq!(
            resolve(strict(), &Env::default(), &config)
                .unwrap()
                .remote
                .cache,
            None
        );
    }

    #[test]
    fn preflight_skip_names_steps_except_in_watch_mode() {
        let config = config(REMOTE);
        let env = Env {
            skip: Some(" a, ,c".into()),
            ..Env::default()
        };
        let request = resolve(Args::new(FileSource::Staged), &env, &config).unwrap();
        assert_eq!(request.selection.skip, ["a", "c"]);
        let watch = Args {
            env_skip: false,
            ..Args::new(FileSource::Staged)
        };
        assert!(
            resolve(watch, &env, &config)
                .unwrap()
                .selection
                .skip
                .is_empty()
        );
    }

    #[test]
    fn ci_and_github_actions_shape_the_output() {
        let config = config(REMOTE);
        let env = Env {
            in_ci: true,
            github_actions: true,
            ..Env::default()
        };
        assert!(!env.interactive());
        let request = resolve(Args::new(FileSource::Staged), &env, &config).unwrap();
        assert!(!request.output.live && request.output.github);
        let dumb = Env {
            dumb_term: true,
            ..Env::default()
        };
        assert!(!dumb.interactive());
    }

    #[test]
    fn force_must_name_a_step() {
        let config = config(REMOTE);
        let args = Args {
            force: vec!["c".into()],
            ..Args::new(FileSource::Staged)
        };
        let err = resolve(args, &Env::default(), &config).err().unwrap();
        assert!(err.to_string().contains("--force names `c`"), "{err}");
    }
}
