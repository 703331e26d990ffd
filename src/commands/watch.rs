//! `preflight watch`: run the selected steps, then again whenever files they care about
//! change. Each run is a pipeline run of the tracked files (and new ones that changed).

use super::current_dir;
use crate::cli::{Cli, WatchArgs};
use crate::error::{Result, exit};
use crate::filetypes::WorkTree;
use crate::git;
use crate::pipeline::{self, Args, Env, FileSource, RunRequest};
use crate::plan::{self, Selection};
use crate::process::Canceller;
use crate::report;
use crate::signals::{self, Stops};
use crate::watch::{self, Batch, Interests};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    let interests = Arc::new(Interests::new(&config, &selected));
    let format = super::report_format(args.format);
    let env = Env::read();

    let (tx, rx) = mpsc::channel::<Batch>();
    let _watcher = watch::start(
        &repo.root,
        watch::outputs_matcher(&config, &selected),
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
                    && !interests.affected(paths).is_empty()
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

    let mut steps: BTreeSet<String> = selected.iter().cloned().collect();
    let mut changed: Vec<PathBuf> = Vec::new();
    loop {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        if args.clear && env.interactive() {
            report::clear_screen();
        }
        let names: Vec<String> = selected
            .iter()
            .filter(|s| steps.contains(*s))
            .cloned()
            .collect();
        let asked = Args {
            steps: names,
            jobs: args.jobs,
            verbose: args.verbose,
            format,
            guard_writes: false,
            env_skip: false,
            // New files not yet added to git count too while watching.
            ..Args::new(FileSource::Tracked {
                also: changed.clone(),
            })
        };
        let request = RunRequest::resolve(asked, &env, &config, color)?;
        let prepared = pipeline::prepare(&repo, &config, request)?;
        report::triggered(format, color, &changed, &prepared.step_names());
        let canceller = Canceller::new();
        *current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&canceller));
        // A new session each run: the cache sees the files as they are now.
        prepared.run(Arc::clone(&canceller))?;
        *current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let restarted = canceller.is_cancelled() && !stopping.load(Ordering::SeqCst);

        // What changed meanwhile (or, idle, the next change) decides the next run.
        let mut next: BTreeSet<String> = if restarted { steps } else { BTreeSet::new() };
        let mut paths: BTreeSet<PathBuf> = BTreeSet::new();
        let mut take = |batch: Batch, next: &mut BTreeSet<String>| match batch {
            Batch::Changed(p) => {
                next.extend(interests.affected(&p));
                // Only the paths some step cares about are worth naming.
                paths.extend(p.into_iter().filter(|path| interests.concern(path)));
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

/// Ctrl-C (or SIGTERM, SIGHUP) ends the watch: the run in progress is stopped, its processes
/// killed, and preflight exits 0. A second signal kills at once.
fn stop_on_signals(
    current: Arc<Mutex<Option<Arc<Canceller>>>>,
    stopping: Arc<AtomicBool>,
    tx: mpsc::Sender<Batch>,
) -> Result<()> {
    signals::on_stop(Stops::InterruptTermHangup, move |_| {
        let again = stopping.swap(true, Ordering::SeqCst);
        if let Some(c) = current.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if again {
                c.kill_now();
            } else {
                c.cancel("stopped");
            }
        }
        let _ = tx.send(Batch::Stop);
    })
}
