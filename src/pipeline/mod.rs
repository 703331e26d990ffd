//! The run pipeline: what `preflight run`, every hook and `preflight watch` share. A command
//! turns its arguments into [`Args`]; [`RunRequest::resolve`] adds what the environment
//! ([`Env`], read once by [`Env::read`]) and the configuration say; [`run`] picks the files
//! ([`resolve_files`]), plans, opens the cache and the remote, executes and reports.
//!
//! Lives here: the file sources, the cache and remote modes of a run, where steps run (the
//! work tree or a commit's checkout), setting unstaged work aside around a commit, the dry
//! run. Imports the layers below (plan, exec, cache, remote, git, hooks, report), never
//! `commands` or `cli`.
//!
//! `request`: Args, Env and the resolved RunRequest; `files`: the file sources; `execute`:
//! where and how a plan runs; `unstaged`: recovering what a killed pre-commit set aside.

mod execute;
mod files;
mod request;
mod tools;
mod unstaged;

pub use execute::step_keys;
pub use files::{
    AtCommit, FileSource, Files, Pushed, committed_config, pushed_commits, resolve_files,
};
pub use request::{Args, Env, Output, RunRequest, StepSelection};
pub use unstaged::recover_unstaged;

use crate::cache::Mode;
use crate::config::Config;
use crate::error::{Result, exit};
use crate::exec::Summary;
use crate::git::Repo;
use crate::hooks::stash::{Restored, Stash};
use crate::plan::{self, Plan, Selection};
use crate::process::Canceller;
use crate::report;
use crate::signals::{self, Stops};
use execute::{Place, execute_at_commit, execute_in, session, session_at_commit, show_dry_run};
use std::path::PathBuf;
use std::sync::Arc;

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
    tools: tools::RunTools,
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
        tools: tool_policy,
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
    let tools = tools::prepare(config, repo, &plan, tool_policy, dry_run, output.color)?;
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
        tools,
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
            tools,
        } = self;
        let session = |config, repo, mode| {
            session(config, repo, mode).map(|s| s.with_tools(tools.identities.clone()))
        };
        if let Some(commit) = commit {
            if dry_run {
                let session =
                    session_at_commit(config, repo, cache, commit.content.files, &repo.root)?
                        .with_tools(tools.identities.clone());
                show_dry_run(&plan, &session, None, output.format);
                return Ok(Outcome::DryRun);
            }
            let summary = execute_at_commit(
                repo, config, plan, &output, &remote, cache, commit, &tools, canceller,
            )?;
            return Ok(Outcome::Ran(summary));
        }
        let fixers = plan.steps.iter().any(|s| s.fixes);
        // The steps see exactly what will be committed. Steps that get files see only staged
        // files; a step without `files`, or whose command does not take `{files}`, reads the
        // whole tree, and a fixer may write anywhere. So does a step with declared `inputs`.
        let whole_tree = plan.steps.iter().any(|s| {
            (s.files.is_none() || !s.command.uses_files() || s.fixes || !s.step.inputs.is_empty())
                && s.skip.is_none()
        });
        // A step whose reads are observed for the cache reads more than its files too (a
        // config, a helper it sources), and what is recorded must be the staged versions;
        // unless it will not run (see `scope_of_hits`).
        let observed: Vec<String> = plan
            .steps
            .iter()
            .filter(|s| {
                cache.write
                    && config.settings.observe
                    && s.step.observe
                    && crate::cache::is_cached(&s.step)
                    && s.skip.is_none()
            })
            .map(|s| s.step.name.clone())
            .collect();
        // The session that foresaw the hits serves the run too when nothing is set aside.
        let mut foreseeing = None;
        let scope = match (whole_tree, observed.is_empty()) {
            _ if !set_aside_unstaged => None,
            (true, _) => None,
            (false, true) => Some(files.clone()),
            (false, false) => {
                let opened = foreseeing.insert(session(config, repo, cache.clone())?);
                scope_of_hits(repo, &plan, opened, &observed, &files)?
            }
        };
        if !set_aside_unstaged && dry_run {
            let session = session(config, repo, cache)?;
            show_dry_run(&plan, &session, Some(&repo.root), output.format);
            return Ok(Outcome::DryRun);
        }
        let run_in_work_tree = |session, taken| {
            let place = Place::work_tree_taken(repo, &tools, taken);
            execute_in(
                repo,
                &place,
                config,
                plan,
                &output,
                &remote,
                msg_file,
                Some(session),
                canceller,
            )
        };
        if !set_aside_unstaged {
            let summary = run_in_work_tree(session(config, repo, cache)?, None);
            return Ok(Outcome::Ran(summary));
        }
        let mut stash = Stash::save(repo, scope.as_deref(), fixers)?;
        let taken = stash.take_stats();
        // Opened once the unstaged work is aside: the cache sees the files the steps see.
        // Stat data taken means the check found nothing to set aside and changed nothing.
        let session = match (foreseeing, &taken) {
            (Some(opened), Some(_)) => opened,
            _ => session(config, repo, cache)?,
        };
        let summary = run_in_work_tree(session, taken);
        let stage: &[PathBuf] = if summary.success() { &files } else { &[] };
        let restored = stash.restore(fixers, stage)?;
        Ok(Outcome::Committed {
            summary,
            restored,
            fixers,
        })
    }
}

/// The files to check for unstaged work when every observed step in `observed` will be a
/// cache hit: the staged `files` and every tracked file the hits rest on (read, looked for,
/// or in a folder listed). When these match the index, the hits hold for the staged
/// content, nothing runs that could read other unstaged work, and the rest of the tree need
/// not be looked at. `None` (the whole tree) when any of them will run.
fn scope_of_hits(
    repo: &Repo,
    plan: &Plan,
    session: &crate::cache::Session,
    observed: &[String],
    files: &[PathBuf],
) -> Result<Option<Vec<PathBuf>>> {
    // A key command runs a program, which may read unstaged work: only after it is aside.
    if plan.steps.iter().any(|s| !s.step.key_commands.is_empty()) {
        return Ok(None);
    }
    // The steps the observed ones need, however far: a miss there changes their keys when
    // it runs (new outputs).
    let mut counted = vec![false; plan.steps.len()];
    let mut todo: Vec<usize> = (0..plan.steps.len())
        .filter(|&i| observed.contains(&plan.steps[i].step.name))
        .collect();
    while let Some(i) = todo.pop() {
        if !std::mem::replace(&mut counted[i], true) {
            todo.extend(&plan.steps[i].needs);
        }
    }
    let mut rests_on = Vec::new();
    let previews = crate::exec::preview(plan, session, Some(&repo.root));
    for preview in previews {
        let Some(i) = plan.steps.iter().position(|s| s.step.name == preview.name) else {
            continue;
        };
        if !counted[i] {
            continue;
        }
        let paths = match (preview.foreseen, &preview.keyed) {
            (crate::exec::Foreseen::Skipped, _) => Vec::new(),
            (crate::exec::Foreseen::Hit, Some(keyed)) => match session.observed_paths(keyed) {
                Some(paths) => paths,
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        rests_on.extend(paths);
    }
    let mut scope = repo.tracked_at_or_under(&rests_on)?;
    scope.extend(files.iter().cloned());
    scope.sort();
    scope.dedup();
    Ok(Some(scope))
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
