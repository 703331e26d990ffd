//! The cache from the command line: the run's cache session, `run --dry-run`,
//! `preflight explain STEP` and `preflight cache stats|gc|clear`.

use super::{current_dir, load_config};
use crate::cache::{self, Keyed, Mode, Session};
use crate::cli::{CacheCommand, Cli, ExplainArgs, OutputFormat, RunArgs};
use crate::config::{self, Config, did_you_mean};
use crate::error::{Error, Result, exit};
use crate::filetypes::WorkTree;
use crate::git;
use crate::plan::{self, Plan};
use crate::report::{self, KeyState, StepKey};
use std::collections::HashSet;

/// The cache as `preflight run` uses it, from its flags.
pub fn session(config: &Config, repo: &git::Repo, args: &RunArgs) -> Result<Session> {
    session_with(config, repo, run_mode(config, args)?)
}

/// How `preflight run` uses the cache, from its flags.
pub fn run_mode(config: &Config, args: &RunArgs) -> Result<Mode> {
    for name in &args.force {
        if !config.steps.contains_key(name) {
            let hint = match did_you_mean(name, config.steps.keys().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "name a step of the configuration".into(),
            };
            return Err(
                Error::Usage(format!("--force names `{name}`, which is not a step")).hint(hint),
            );
        }
    }
    let no_cache = args.no_cache || no_cache_from_env();
    Ok(Mode {
        read: !no_cache,
        write: !no_cache && !args.dry_run,
        force: args.force.iter().cloned().collect(),
        explain: args.explain || args.dry_run,
    })
}

/// The cache as hooks and watch mode use it: read and write, nothing forced.
pub fn default_session(config: &Config, repo: &git::Repo) -> Result<Session> {
    session_with(config, repo, default_mode())
}

/// How hooks and watch mode use the cache.
pub fn default_mode() -> Mode {
    let use_cache = !no_cache_from_env();
    Mode {
        read: use_cache,
        write: use_cache,
        force: Default::default(),
        explain: false,
    }
}

/// The cache for a run that checks a commit: keys from the commit's `files`, outputs restored
/// and captured in `files_root`, where its steps run.
pub fn session_at_commit(
    config: &Config,
    repo: &git::Repo,
    mode: Mode,
    files: git::IndexSnapshot,
    files_root: &std::path::Path,
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

/// `PREFLIGHT_NO_CACHE=1`: every run, hook and watch run behaves as with `--no-cache`.
fn no_cache_from_env() -> bool {
    std::env::var_os("PREFLIGHT_NO_CACHE").is_some_and(|v| !v.is_empty() && v != "0")
}

fn session_with(config: &Config, repo: &git::Repo, mode: Mode) -> Result<Session> {
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

/// Positions of the plan's steps, each after the steps it needs.
fn dependency_order(plan: &Plan) -> Vec<usize> {
    fn visit(i: usize, plan: &Plan, done: &mut [bool], order: &mut Vec<usize>) {
        if done[i] {
            return;
        }
        done[i] = true;
        for &j in &plan.steps[i].needs {
            visit(j, plan, done, order);
        }
        order.push(i);
    }
    let mut done = vec![false; plan.steps.len()];
    let mut order = Vec::new();
    for i in 0..plan.steps.len() {
        visit(i, plan, &mut done, &mut order);
    }
    order
}

/// Every step's key and state, computed without running anything (in plan order).
fn keys(plan: &Plan, session: &Session, root: &std::path::Path) -> Vec<StepKey> {
    let mut computed: Vec<Option<Keyed>> = vec![None; plan.steps.len()];
    let mut out: Vec<Option<StepKey>> = (0..plan.steps.len()).map(|_| None).collect();
    for i in dependency_order(plan) {
        let planned = &plan.steps[i];
        let step = &planned.step;
        let mut needs = Vec::new();
        let mut missing = None;
        for &j in &planned.needs {
            match &computed[j] {
                Some(k) => needs.push((&plan.steps[j].step, k.key.clone())),
                None => missing = Some(plan.steps[j].step.name.clone()),
            }
        }
        let cwd = step
            .dir
            .as_ref()
            .map_or_else(|| root.to_path_buf(), |d| root.join(d));
        let skipped = planned
            .files
            .as_ref()
            .is_some_and(|files| !files.iter().any(|f| cwd.join(f).symlink_metadata().is_ok()));
        let result = match missing {
            Some(name) => Err(format!("needed step `{name}` has no key")),
            None => session
                .key(step, planned.files.as_deref(), &needs)
                .map_err(|e| e.to_string()),
        };
        out[i] = Some(match result {
            Err(why) => StepKey {
                name: step.name.clone(),
                key: None,
                state: KeyState::NotCached,
                reasons: vec![format!("not cached: {why}")],
                inputs: Vec::new(),
                from_index: 0,
                hashed: 0,
                hashed_bytes: 0,
            },
            Ok(keyed) => {
                let (state, reasons) = if skipped {
                    (KeyState::Skipped, Vec::new())
                } else if !keyed.cacheable() || !session.mode.read {
                    (KeyState::NotCached, session.explain_miss(step, &keyed))
                } else if session.mode.force.contains(&step.name) {
                    (KeyState::Miss, session.explain_miss(step, &keyed))
                } else if session.has_entry(&keyed) {
                    (KeyState::Hit, Vec::new())
                } else {
                    (KeyState::Miss, session.explain_miss(step, &keyed))
                };
                let s = StepKey {
                    name: step.name.clone(),
                    key: Some(keyed.key.clone()),
                    state,
                    reasons,
                    inputs: keyed.record.inputs.clone(),
                    from_index: keyed.stats.from_index,
                    hashed: keyed.stats.hashed,
                    hashed_bytes: keyed.stats.hashed_bytes,
                };
                computed[i] = Some(keyed);
                s
            }
        });
    }
    out.into_iter().flatten().collect()
}

/// `preflight run --dry-run`.
pub fn dry_run(plan: &Plan, session: &Session, format: OutputFormat) -> Result<i32> {
    let root = current_root()?;
    let steps = keys(plan, session, &root);
    report::dry_run(&steps, format == OutputFormat::Json);
    Ok(exit::SUCCESS)
}

fn current_root() -> Result<std::path::PathBuf> {
    Ok(git::discover(&current_dir()?)?.root)
}

/// `preflight explain [STEP...]`: the named steps, or every step.
pub fn explain(cli: &Cli, args: &ExplainArgs) -> Result<i32> {
    let repo = git::discover(&current_dir()?)?;
    let config_path = match &cli.config {
        Some(path) => path.clone(),
        None => config::locate(&repo.root)?,
    };
    let config = config::load(&config_path)?;
    let selection = plan::Selection {
        names: &args.steps,
        ..Default::default()
    };
    let plan = plan::build(
        &config,
        &selection,
        &repo.tracked_files()?,
        &WorkTree { root: &repo.root },
    )?;
    let mode = Mode {
        read: true,
        write: false,
        force: HashSet::new(),
        explain: true,
    };
    let session = Session::open(
        &config,
        &repo,
        &cache::cache_dir(&config, &repo.root)?,
        mode,
    )?;
    // Named steps are explained without the steps they need; no names: every step.
    let wanted: HashSet<&str> = args.steps.iter().map(String::as_str).collect();
    let steps: Vec<StepKey> = keys(&plan, &session, &repo.root)
        .into_iter()
        .filter(|s| wanted.is_empty() || wanted.contains(s.name.as_str()))
        .collect();
    report::explain(&steps);
    Ok(exit::SUCCESS)
}

/// `preflight cache stats|gc|clear`. Works outside a repository too (with the default or
/// `PREFLIGHT_CACHE_DIR` location and bound).
pub fn cache(cli: &Cli, command: &CacheCommand) -> Result<i32> {
    let (dir, max) = match load_config(cli) {
        Ok(config) => {
            let root = git::discover(&current_dir()?)?.root;
            (cache::cache_dir(&config, &root)?, config.settings.cache_max)
        }
        Err(e) if e.kind() == crate::error::Kind::Setup && cli.config.is_none() => {
            let empty = config::parse(std::path::Path::new("preflight.toml"), "")
                .expect("an empty configuration is valid");
            let root = current_dir()?;
            (cache::cache_dir(&empty, &root)?, config::DEFAULT_CACHE_MAX)
        }
        Err(e) => return Err(e),
    };
    let store = cache::store::Store::new(&dir);
    match command {
        CacheCommand::Stats => report::cache_stats(&dir, &store.stats(), max),
        CacheCommand::Gc => {
            let r = store
                .gc(max, true)
                .map_err(|e| Error::io(format!("cannot clean {}", dir.display()), e))?
                .unwrap_or_default();
            report::cache_gc(&r, max);
        }
        CacheCommand::Clear => {
            let bytes = store
                .clear()
                .map_err(|e| Error::io(format!("cannot clear {}", dir.display()), e))?;
            report::cache_cleared(&dir, bytes);
        }
    }
    Ok(exit::SUCCESS)
}
