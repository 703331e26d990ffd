//! `preflight run`: its arguments as a run request (steps, file source, cache, remote,
//! output) for the pipeline, and `preflight recover`.

use super::current_dir;
use crate::cli::{Cli, RunArgs};
use crate::config;
use crate::error::{Error, Result, exit};
use crate::git;
use crate::pipeline::{self, Args, Env, FileSource, RunRequest};
use std::path::{Component, Path, PathBuf};

pub fn run(cli: &Cli, args: &RunArgs, color: bool) -> Result<i32> {
    let env = Env::read();
    let cwd = current_dir()?;
    let repo = git::discover(&cwd)?;
    pipeline::recover_unstaged(&repo, color);
    let mut config = super::config_for(cli, &repo)?;
    let job = match &args.job {
        Some(name) => {
            let job = crate::ci::jobs::job_steps(&config, name, &args.matrix)?;
            config.env.extend(job.env);
            Some(job.steps)
        }
        None => None,
    };
    if args.ci
        && let Some(code) = crate::setup::ci::check_before_run(&repo, &config, color)?
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
    let steps: Vec<String> = match (hook, &job) {
        (_, Some(steps)) => steps.clone(),
        (Some(h), None) if args.steps.is_empty() => h.steps.clone(),
        _ => args.steps.clone(),
    };
    let files = if !args.files.is_empty() {
        // A path given twice (or as `a` and `./a`) reaches the commands once.
        let mut seen = std::collections::HashSet::new();
        let mut files = Vec::new();
        for f in &args.files {
            let f = repo_relative(&repo.root, &cwd, f)?;
            if seen.insert(f.clone()) {
                files.push(f);
            }
        }
        FileSource::Paths(files)
    } else if args.staged {
        FileSource::Staged
    } else if let Some(from) = &args.from {
        // --from: the commit --to names is checked, not the work tree.
        FileSource::Range {
            from: from.clone(),
            to: args.to.clone().unwrap_or_else(|| "HEAD".into()),
        }
    } else {
        FileSource::Tracked { also: Vec::new() }
    };
    let asked = Args {
        steps,
        fix: args.fix || hook.is_some_and(|h| h.fix),
        only: job,
        no_cache: args.no_cache,
        force: args.force.clone(),
        explain: args.explain,
        dry_run: args.dry_run,
        remote_cache: args.remote.remote_cache.clone(),
        remote_execute: args.remote.remote_execute,
        no_remote: args.remote.no_remote,
        remote_flags: true,
        ci: args.ci,
        jobs: args.jobs,
        fail_fast: args.fail_fast,
        verbose: args.verbose,
        format: super::report_format(args.format),
        locked: args.locked,
        ..Args::new(files)
    };
    let request = RunRequest::resolve(asked, &env, &config, color)?;
    let canceller = pipeline::cancel_on_signals()?;
    let outcome = pipeline::run(&repo, &config, request, canceller)?;
    Ok(outcome.exit_code())
}

/// `preflight recover`: puts back what an interrupted pre-commit run set aside.
pub fn recover(color: bool) -> Result<i32> {
    let repo = git::discover(&current_dir()?)?;
    Ok(if pipeline::recover_unstaged(&repo, color) {
        exit::SUCCESS
    } else {
        exit::STEPS_FAILED
    })
}

/// A path given on the command line, made relative to the repository root.
fn repo_relative(root: &Path, cwd: &Path, path: &Path) -> Result<PathBuf> {
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
