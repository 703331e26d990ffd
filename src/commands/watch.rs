//! `preflight watch`: run the selected steps, then again whenever files they care about change.

use super::current_dir;
use super::run::{self, Output};
use crate::cli::{Cli, OutputFormat, WatchArgs};
use crate::config::Config;
use crate::error::{Result, exit};
use crate::files::Matcher;
use crate::filetypes::WorkTree;
use crate::git;
use crate::plan::{self, Selection};
use crate::process::Canceller;
use crate::report::{self, Format};
use crate::watch::{self, Batch};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which changed paths concern a step: its `files` and `inputs` globs (`None`: any change).
struct Interest {
    name: String,
    matcher: Option<Matcher>,
    needs: Vec<String>,
}

pub fn watch(cli: &Cli, args: &WatchArgs, color: bool) -> Result<i32> {
    let repo = git::discover(&current_dir()?)?;
    let config = super::config_for(cli, &repo)?;
    // Validate the names (and learn the closure of needs) once, up front.
    let selected: Vec<String> = plan::build(
        &config,
        &Selection {
            names: &args.steps,
            ..Default::default()
        },
        &[],
        &WorkTree { root: &repo.root },
    )?
    .steps
    .into_iter()
    .map(|s| s.step.name)
    .collect();
    let interests = Arc::new(interests(&config, &selected));
    let format = match args.format {
        OutputFormat::Human => Format::Human,
        OutputFormat::Json => Format::Json,
    };

    let (tx, rx) = mpsc::channel::<Batch>();
    let _watcher = watch::start(
        &repo.root,
        outputs_matcher(&config, &selected),
        Duration::from_millis(args.debounce),
        args.poll,
        tx.clone(),
    )?;

    // The run in progress, so that a change (or Ctrl-C) can stop it.
    let current: Arc<Mutex<Option<Arc<Canceller>>>> = Arc::new(Mutex::new(None));
    let stopping = Arc::new(AtomicBool::new(false));
    stop_on_signals(Arc::clone(&current), Arc::clone(&stopping), tx)?;
    // Batches go through a dispatcher that restarts the run they concern.
    let (work_tx, work_rx) = mpsc::channel::<Batch>();
    {
        let current = Arc::clone(&current);
        let interests = Arc::clone(&interests);
        let restart = !args.no_restart;
        std::thread::spawn(move || {
            for batch in rx {
                if let Batch::Changed(paths) = &batch
                    && restart
                    && !affected(&interests, paths).is_empty()
                    && let Some(c) = current.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
                {
                    c.cancel("restarted: files changed");
                }
                if work_tx.send(batch).is_err() {
                    return;
                }
            }
        });
    }

    let output = Output {
        jobs: args.jobs,
        fail_fast: false,
        verbose: args.verbose,
        format: args.format,
        color,
        ci: false,
        remote: crate::remote::Overrides::from_env(),
        guard_writes: false,
    };
    let mut steps: BTreeSet<String> = selected.iter().cloned().collect();
    let mut changed: Vec<PathBuf> = Vec::new();
    loop {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        if args.clear && run::interactive() {
            report::clear_screen();
        }
        let names: Vec<String> = selected
            .iter()
            .filter(|s| steps.contains(*s))
            .cloned()
            .collect();
        let mut file_set = repo.tracked_files()?;
        // New files not yet added to git count too while watching.
        for path in &changed {
            if repo.root.join(path).is_file() && !file_set.contains(path) {
                file_set.push(path.clone());
            }
        }
        let plan = plan::build(
            &config,
            &Selection {
                names: &names,
                ..Default::default()
            },
            &file_set,
            &WorkTree { root: &repo.root },
        )?;
        let running: Vec<String> = plan.steps.iter().map(|s| s.step.name.clone()).collect();
        report::triggered(format, color, &changed, &running);
        let canceller = Canceller::new();
        *current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&canceller));
        // A new session each run: the cache sees the files as they are now.
        let cache = super::cache::default_session(&config, &repo)?;
        run::execute(
            &repo,
            &config,
            plan,
            &output,
            None,
            Some(cache),
            Arc::clone(&canceller),
        );
        *current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let restarted = canceller.is_cancelled() && !stopping.load(Ordering::SeqCst);

        // What changed meanwhile (or, idle, the next change) decides the next run.
        let mut next: BTreeSet<String> = if restarted { steps } else { BTreeSet::new() };
        let mut paths: BTreeSet<PathBuf> = BTreeSet::new();
        let mut take = |batch: Batch, next: &mut BTreeSet<String>| match batch {
            Batch::Changed(p) => {
                next.extend(affected(&interests, &p));
                // Only the paths some step cares about are worth naming.
                paths.extend(
                    p.into_iter()
                        .filter(|path| concerns_a_step(&interests, path)),
                );
                true
            }
            Batch::Failed(message) => {
                report::warn(&message, color);
                true
            }
            Batch::Stop => false,
        };
        let mut keep_going = true;
        while let Ok(batch) = work_rx.try_recv() {
            keep_going &= take(batch, &mut next);
        }
        let mut said_waiting = false;
        while keep_going && next.is_empty() && !stopping.load(Ordering::SeqCst) {
            if !std::mem::replace(&mut said_waiting, true) {
                report::watching(format, color);
            }
            match work_rx.recv() {
                Ok(batch) => keep_going = take(batch, &mut next),
                Err(_) => keep_going = false,
            }
        }
        if !keep_going {
            break;
        }
        steps = next;
        changed = paths.into_iter().collect();
    }
    Ok(exit::SUCCESS)
}

/// Whether a change to `path` concerns any watched step.
fn concerns_a_step(interests: &[Interest], path: &std::path::Path) -> bool {
    interests
        .iter()
        .any(|i| i.matcher.as_ref().is_none_or(|m| m.is_match(path)))
}

/// The steps a change to any of `paths` concerns, and the steps that need them.
fn affected(interests: &[Interest], paths: &[PathBuf]) -> BTreeSet<String> {
    let mut hit: BTreeSet<String> = interests
        .iter()
        .filter(|i| match &i.matcher {
            None => true,
            Some(m) => paths.iter().any(|p| m.is_match(p)),
        })
        .map(|i| i.name.clone())
        .collect();
    loop {
        let more: Vec<String> = interests
            .iter()
            .filter(|i| !hit.contains(&i.name) && i.needs.iter().any(|n| hit.contains(n)))
            .map(|i| i.name.clone())
            .collect();
        if more.is_empty() {
            return hit;
        }
        hit.extend(more);
    }
}

fn interests(config: &Config, selected: &[String]) -> Vec<Interest> {
    selected
        .iter()
        .map(|name| {
            let step = &config.steps[name];
            // A step with only `types` is about files anywhere.
            let any_file = (step.files.is_empty() && !step.types.is_empty()).then_some("*");
            let globs: Vec<&str> = step
                .files
                .iter()
                .chain(&step.inputs)
                .map(String::as_str)
                .chain(any_file)
                .collect();
            let matcher = if globs.is_empty() {
                None
            } else {
                Matcher::new(
                    &globs,
                    &step.exclude.iter().map(String::as_str).collect::<Vec<_>>(),
                )
                .ok()
            };
            Interest {
                name: name.clone(),
                matcher,
                needs: step.needs.clone(),
            }
        })
        .collect()
}

/// The steps' declared outputs (files or folders): writing them must not start another run.
fn outputs_matcher(config: &Config, selected: &[String]) -> Option<Matcher> {
    let globs: Vec<String> = selected
        .iter()
        .flat_map(|n| config.steps[n].outputs.iter())
        .flat_map(|o| {
            let o = o.trim_end_matches('/');
            [format!("/{o}"), format!("/{o}/**")]
        })
        .collect();
    if globs.is_empty() {
        return None;
    }
    Matcher::new(&globs, &[]).ok()
}

/// Ctrl-C (or SIGTERM, SIGHUP) ends the watch: the run in progress is stopped, its processes
/// killed, and preflight exits 0. A second signal kills at once.
fn stop_on_signals(
    current: Arc<Mutex<Option<Arc<Canceller>>>>,
    stopping: Arc<AtomicBool>,
    tx: mpsc::Sender<Batch>,
) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| crate::error::Error::io("cannot install signal handlers", e))?;
    std::thread::spawn(move || {
        for _ in signals.forever() {
            let again = stopping.swap(true, Ordering::SeqCst);
            if let Some(c) = current.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                if again {
                    c.kill_now();
                } else {
                    c.cancel("stopped");
                }
            }
            let _ = tx.send(Batch::Stop);
        }
    });
    Ok(())
}
