//! `preflight run`: load, pick the file set, plan, execute, report. The pipeline after the
//! file set is shared with `preflight hook`.

use super::current_dir;
use crate::cli::{Cli, OutputFormat, RunArgs};
use crate::config::{self, Config};
use crate::error::{Error, Result, exit};
use crate::exec;
use crate::exec::Summary;
use crate::filetypes::{Contents, WorkTree};
use crate::git::{self, Repo};
use crate::hooks::checkout::Checkout;
use crate::hooks::stash;
use crate::plan::{self, Selection};
use crate::process::Canceller;
use crate::report::{self, Format, HumanOptions};
use std::io::IsTerminal;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// How the steps of a run are shown and bounded, from the command line.
pub struct Output {
    pub jobs: Option<usize>,
    pub fail_fast: bool,
    pub verbose: bool,
    pub format: OutputFormat,
    pub color: bool,
    /// `--ci`: plain lines, and on GitHub Actions each step's output folded in a group.
    pub ci: bool,
    /// `--remote-cache`, `--remote-execute`, `--no-remote`.
    pub remote: crate::remote::Overrides,
    /// Fail a check that changes tracked files. Off in watch mode, where the person editing
    /// while a step runs changes them too.
    pub guard_writes: bool,
}

pub fn run(cli: &Cli, args: &RunArgs, color: bool) -> Result<i32> {
    let cwd = current_dir()?;
    let repo = git::discover(&cwd)?;
    recover_unstaged(&repo, color);
    let mut config = super::config_for(cli, &repo)?;
    let job = match &args.job {
        Some(name) => {
            let job = super::ci::job_steps(&config, name, &args.matrix)?;
            config.env.extend(job.env);
            Some(job.steps)
        }
        None => None,
    };
    if args.ci
        && let Some(code) = super::ci::check_before_run(&repo, &config, color)?
    {
        return Ok(code);
    }

    // --hook NAME: that hook's steps (and its fix setting), unless steps are named too.
    let hook = match &args.hook {
        Some(name) => Some(config.hooks.get(name).ok_or_else(|| {
            Error::Usage(format!(
                "no hook named `{name}` in [hooks] of {}",
                config::display_path(&config.path)
            ))
        })?),
        None => None,
    };
    let names: Vec<String> = match (hook, &job) {
        (_, Some(steps)) => steps.clone(),
        (Some(h), None) if args.steps.is_empty() => h.steps.clone(),
        _ => args.steps.clone(),
    };
    let mut fix = args.fix || hook.is_some_and(|h| h.fix);

    // --from: the commit --to names is checked, not the work tree.
    let mut at_commit = None;
    let file_set = if !args.files.is_empty() {
        // A path given twice (or as `a` and `./a`) reaches the commands once.
        let mut seen = std::collections::HashSet::new();
        let mut files = Vec::new();
        for f in &args.files {
            let f = repo_relative(&repo.root, &cwd, f)?;
            if seen.insert(f.clone()) {
                files.push(f);
            }
        }
        files
    } else if args.staged {
        repo.staged_files()?
    } else if let Some(from) = &args.from {
        let to = repo.resolve(args.to.as_deref().unwrap_or("HEAD"))?;
        let files = repo.changed_since_fork(repo.resolve(from)?, to)?;
        at_commit = Some(repo.commit_content(to)?);
        fix = no_fixes_on_a_commit(fix, color);
        files
    } else {
        repo.tracked_files()?
    };
    let output = Output {
        jobs: args.jobs,
        fail_fast: args.fail_fast,
        verbose: args.verbose,
        format: args.format,
        color,
        ci: args.ci,
        remote: crate::remote::Overrides {
            // The flag (or PREFLIGHT_REMOTE_CACHE), else under --ci the `ci_cache` mode.
            cache: args
                .remote
                .remote_cache
                .as_deref()
                .and_then(crate::config::RemoteCache::parse)
                .or_else(|| {
                    config
                        .remote
                        .as_ref()
                        .and_then(|r| r.ci_cache)
                        .filter(|_| args.ci)
                }),
            execute: args.remote.remote_execute.then_some(true),
            off: args.remote.no_remote,
        },
        guard_writes: true,
    };
    let skip = skip_list(&config, color);
    let selection = Selection {
        names: &names,
        fix,
        skip: &skip,
    };
    // File types are told from what is judged: the index, the commit, or the work tree.
    let work_tree = WorkTree { root: &repo.root };
    let stored = if !args.files.is_empty() {
        None
    } else if args.staged {
        Some(repo.staged_contents()?)
    } else if args.from.is_some() {
        Some(repo.commits_contents(&[args.to.as_deref().unwrap_or("HEAD")])?)
    } else {
        None
    };
    let contents: &dyn Contents = match &stored {
        Some(stored) => stored,
        None => &work_tree,
    };
    let mut plan = plan::build(&config, &selection, &file_set, contents)?;
    if let Some(steps) = &job {
        plan = super::ci::only_steps(plan, steps);
    }
    if let Some(commit) = at_commit {
        let mode = super::cache::run_mode(&config, args)?;
        if args.dry_run {
            let cache =
                super::cache::session_at_commit(&config, &repo, mode, commit.files, &repo.root)?;
            return super::cache::dry_run(&plan, &cache, args.format);
        }
        let canceller = Canceller::new();
        watch_signals(&canceller)?;
        let label = args.to.clone().unwrap_or_else(|| "HEAD".into());
        let checked = Checked {
            what: "the commit",
            refs: &label,
        };
        let summary = execute_at_commit(
            &repo, &config, plan, &output, mode, commit, &checked, canceller,
        )?;
        return Ok(exit_code(&summary));
    }
    let cache = super::cache::session(&config, &repo, args)?;
    if args.dry_run {
        return super::cache::dry_run(&plan, &cache, args.format);
    }
    let canceller = Canceller::new();
    watch_signals(&canceller)?;
    let summary = execute(&repo, &config, plan, &output, None, Some(cache), canceller);
    Ok(exit_code(&summary))
}

/// A commit's checkout is thrown away: fixes made there would be lost, so its checks run.
pub fn no_fixes_on_a_commit(fix: bool, color: bool) -> bool {
    if fix {
        report::warn(
            "fixes are not applied when a commit is checked (they would change neither the \
             commit nor your work tree): the checks run instead",
            color,
        );
    }
    false
}

/// What a run that checks a commit tells the user it checked.
pub struct Checked<'a> {
    /// `the pushed commit`, `the commit`.
    pub what: &'a str,
    /// The refs or revision that name it.
    pub refs: &'a str,
}

/// Runs `plan` on a commit's content rather than the work tree. Every step is keyed on the
/// commit's files, read from its tree, so a step that passed on the same content before
/// (at commit time) is a hit. The place where steps run is made only when one must run: the
/// work tree when it is exactly that commit, else a temporary checkout of it; it is removed
/// afterwards. Outputs made in a checkout are cached (they are the commit's) and never
/// reach the work tree.
#[allow(clippy::too_many_arguments)]
pub fn execute_at_commit(
    repo: &Repo,
    config: &Config,
    plan: plan::Plan,
    output: &Output,
    mode: crate::cache::Mode,
    commit: git::CommitContent,
    checked: &Checked,
    canceller: Arc<Canceller>,
) -> Result<Summary> {
    let short = commit.short_id();
    let checkout = Arc::new(Checkout::new(repo, commit.id)?);
    let place = Place {
        root: checkout.path().to_path_buf(),
        env: checkout.git_env(),
        workdir: Some(Arc::clone(&checkout) as Arc<dyn exec::Workdir>),
    };
    let cache = super::cache::session_at_commit(config, repo, mode, commit.files, &place.root)?;
    let summary = execute_in(
        repo,
        &place,
        config,
        plan,
        output,
        None,
        Some(cache),
        canceller,
    );
    // The checkout goes before the last word, so that nothing is left behind when it is read.
    checkout.remove();
    report::warn(
        &format!(
            "checked {} {short} ({}), not your work tree",
            checked.what, checked.refs
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

/// Steps named in PREFLIGHT_SKIP (comma-separated); unknown names are reported, not fatal.
pub fn skip_list(config: &Config, color: bool) -> Vec<String> {
    let Some(value) = std::env::var_os("PREFLIGHT_SKIP") else {
        return Vec::new();
    };
    let value = value.to_string_lossy();
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

/// Runs a plan in the work tree with the reporter the output options ask for; `canceller`
/// stops it.
pub fn execute(
    repo: &Repo,
    config: &Config,
    plan: plan::Plan,
    output: &Output,
    msg_file: Option<PathBuf>,
    cache: Option<crate::cache::Session>,
    canceller: Arc<Canceller>,
) -> Summary {
    let place = Place::work_tree(repo);
    execute_in(
        repo, &place, config, plan, output, msg_file, cache, canceller,
    )
}

#[allow(clippy::too_many_arguments)]
fn execute_in(
    repo: &Repo,
    place: &Place,
    config: &Config,
    plan: plan::Plan,
    output: &Output,
    msg_file: Option<PathBuf>,
    cache: Option<crate::cache::Session>,
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
        .and_then(|_| crate::remote::Session::open(config.remote.as_ref(), &output.remote))
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
        live: interactive() && !output.ci,
        github: std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"),
        fold_each: output.ci,
    };
    let format = match output.format {
        OutputFormat::Human => Format::Human,
        OutputFormat::Json => Format::Json,
    };
    let mut reporter = report::reporter(format, human);
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

/// Whether output goes to a terminal for a person (not CI, not a pipe).
pub fn interactive() -> bool {
    let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    std::io::stdout().is_terminal() && !in_ci && std::env::var("TERM").map_or(true, |t| t != "dumb")
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

/// `preflight recover`: puts back what an interrupted pre-commit run set aside.
pub fn recover(color: bool) -> Result<i32> {
    let repo = git::discover(&current_dir()?)?;
    Ok(if recover_unstaged(&repo, color) {
        exit::SUCCESS
    } else {
        exit::STEPS_FAILED
    })
}

/// Ctrl-C, SIGTERM and SIGHUP stop the run: the first asks running steps to stop, a second
/// kills them at once. Either way preflight then reports and exits 130.
pub fn watch_signals(canceller: &Arc<Canceller>) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Error::io("cannot install signal handlers", e))?;
    let canceller = Arc::clone(canceller);
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if canceller.was_interrupted() {
                canceller.kill_now();
            } else {
                canceller.interrupt();
            }
        }
    });
    Ok(())
}

/// A path given on the command line, made relative to the repository root.
pub fn repo_relative(root: &Path, cwd: &Path, path: &Path) -> Result<PathBuf> {
    let joined = cwd.join(path);
    let mut normal = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            c => normal.push(c),
        }
    }
    normal
        .strip_prefix(root)
        .map(Path::to_path_buf)
        .map_err(|_| {
            Error::Usage(format!(
                "{} is outside the repository ({})",
                path.display(),
                root.display()
            ))
        })
}
