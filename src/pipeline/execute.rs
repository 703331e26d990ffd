//! Executing a plan: in the work tree or a commit's checkout, with the cache session, the
//! remote and the reporter the request asks for; and the dry run's keys.

use crate::cache::{self, Mode, Session};
use crate::config::Config;
use crate::error::Result;
use crate::exec;
use crate::exec::Summary;
use crate::git::{self, Repo};
use crate::hooks::checkout::Checkout;
use crate::plan::Plan;
use crate::process::Canceller;
use crate::report::{self, Format, HumanOptions, KeyState, StepKey};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{AtCommit, Output};

/// The cache of a run in the work tree.
pub(super) fn session(config: &Config, repo: &Repo, mode: Mode) -> Result<Session> {
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
pub(super) fn session_at_commit(
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
pub(super) fn show_dry_run(plan: &Plan, session: &Session, root: Option<&Path>, format: Format) {
    let steps = step_keys(plan, session, root);
    report::dry_run(&steps, format == Format::Json);
}

/// Every step's key and state as a run would find them, in plan order, for the report.
pub fn step_keys(plan: &Plan, session: &Session, root: Option<&Path>) -> Vec<StepKey> {
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
                    reasons: p.reasons.iter().map(report::explanation).collect(),
                    inputs: keyed.record.inputs,
                    from_index: keyed.stats.from_index,
                    hashed: keyed.stats.hashed,
                    hashed_bytes: keyed.stats.hashed_bytes,
                },
                None => StepKey {
                    name: p.name,
                    key: None,
                    state,
                    reasons: p.reasons.iter().map(report::explanation).collect(),
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
pub(super) fn execute_at_commit(
    repo: &Repo,
    config: &Config,
    plan: Plan,
    output: &Output,
    remote: &crate::remote::Overrides,
    mode: Mode,
    commit: AtCommit,
    tools: &super::tools::RunTools,
    canceller: Arc<Canceller>,
) -> Result<Summary> {
    let short = commit.content.short_id();
    let checkout = Arc::new(Checkout::new(repo, commit.content.id)?);
    let place = Place {
        root: checkout.path().to_path_buf(),
        env: checkout.git_env(),
        workdir: Some(Arc::clone(&checkout) as Arc<dyn exec::Workdir>),
        tool_paths: Arc::clone(&tools.paths),
        taken: None,
    };
    let cache = session_at_commit(config, repo, mode, commit.content.files, &place.root)?
        .with_tools(tools.identities.clone());
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
pub(super) struct Place {
    root: PathBuf,
    /// Variables set for every step on top of `[env]`.
    env: Vec<(String, String)>,
    /// When the root is made on demand.
    workdir: Option<Arc<dyn exec::Workdir>>,
    /// Each step's PATH with its managed tools first.
    tool_paths: Arc<std::collections::HashMap<String, String>>,
    /// Stat data of files in it taken a moment before the run (see `exec::Options::taken`).
    taken: Option<Arc<crate::lstat::Taken>>,
}

impl Place {
    pub(super) fn work_tree(repo: &Repo, tools: &super::tools::RunTools) -> Place {
        Place {
            root: repo.root.clone(),
            env: Vec::new(),
            workdir: None,
            tool_paths: Arc::clone(&tools.paths),
            taken: None,
        }
    }

    /// The work tree, whose files were just looked at (`taken`) and not changed since.
    pub(super) fn work_tree_taken(
        repo: &Repo,
        tools: &super::tools::RunTools,
        taken: Option<crate::lstat::Taken>,
    ) -> Place {
        Place {
            taken: taken.map(Arc::new),
            ..Place::work_tree(repo, tools)
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn execute_in(
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
        .map(|s| s.with_tools(crate::remote::tools::of_config(config)))
        .map(Arc::new);
    // Checks must leave tracked files alone; the index says which they are. A checkout of a
    // commit made for this run is nobody's work: it is not watched.
    let guarded = output.guard_writes
        && place.workdir.is_none()
        && plan.steps.iter().any(|s| !s.fixes && s.skip.is_none());
    // The cache session read the index a moment ago, at the same point of the run: the
    // guard starts from that snapshot rather than reading it again.
    let shared_index = cache.as_ref().and_then(Session::work_tree_index);
    let tracked = match guarded.then(|| match shared_index {
        Some(index) => Ok(index),
        None => repo.index_snapshot().map(Arc::new),
    }) {
        Some(Ok(index)) => Some(index),
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
        tool_paths: Arc::clone(&place.tool_paths),
        taken: place.taken.clone(),
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
