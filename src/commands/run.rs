//! `preflight run`: load, plan, execute, report.

use super::current_dir;
use crate::cli::{Cli, OutputFormat, RunArgs};
use crate::config;
use crate::error::{Error, Result, exit};
use crate::exec;
use crate::git;
use crate::plan;
use crate::process::Canceller;
use crate::report::{self, Format, HumanOptions};
use std::io::IsTerminal;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

pub fn run(cli: &Cli, args: &RunArgs, color: bool) -> Result<i32> {
    let cwd = current_dir()?;
    let repo = git::discover(&cwd)?;
    let config_path = match &cli.config {
        Some(path) => path.clone(),
        None => config::locate(&repo.root)?,
    };
    let config = config::load(&config_path)?;
    let file_set = if args.files.is_empty() {
        repo.tracked_files()?
    } else {
        args.files
            .iter()
            .map(|f| repo_relative(&repo.root, &cwd, f))
            .collect::<Result<_>>()?
    };
    let plan = plan::build(&config, &args.steps, &file_set)?;
    let cache = super::cache::session(&config, &repo, args)?;
    if args.dry_run {
        return super::cache::dry_run(&plan, &cache, args.format);
    }

    let jobs = match args.jobs.or(Some(config.settings.jobs)) {
        Some(0) | None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Some(n) => n,
    };
    let options = exec::Options {
        jobs,
        fail_fast: args.fail_fast || config.settings.fail_fast,
        stream_output: args.verbose,
        cache: Some(Arc::new(cache)),
    };
    let canceller = Canceller::new();
    watch_signals(&canceller)?;

    let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    let human = HumanOptions {
        verbose: args.verbose,
        color,
        live: std::io::stdout().is_terminal()
            && !in_ci
            && std::env::var("TERM").map_or(true, |t| t != "dumb"),
        github: std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"),
    };
    let format = match args.format {
        OutputFormat::Human => Format::Human,
        OutputFormat::Json => Format::Json,
    };
    let mut reporter = report::reporter(format, human);
    let env = config
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let summary = exec::execute(
        plan,
        &repo.root,
        env,
        &options,
        Arc::clone(&canceller),
        reporter.as_mut(),
    );

    Ok(if summary.interrupted {
        exit::INTERRUPTED
    } else if summary.success() {
        exit::SUCCESS
    } else {
        exit::STEPS_FAILED
    })
}

/// Ctrl-C, SIGTERM and SIGHUP stop the run: the first asks running steps to stop, a second
/// kills them at once. Either way preflight then reports and exits 130.
fn watch_signals(canceller: &Arc<Canceller>) -> Result<()> {
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
