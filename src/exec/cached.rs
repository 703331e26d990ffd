//! The cache around one step: its key (from its inputs and the keys of its needs), a lookup
//! that restores outputs and replays the log on a hit, the reason it ran for `--explain`,
//! and the store after a pass.

use super::{Explanation, Reason, Status, StepResult, Warning};
use super::{Message, Shared};
use crate::cache::observed::ObservedMiss;
use crate::cache::{Keyed, Lookup, NotSaved, Session};
use crate::config::Step;
use crate::plan::{Plan, PlannedStep};
use std::path::Path;
use std::sync::mpsc::Sender;
use std::time::{Instant, SystemTime};

pub(super) fn run_step(shared: &Shared, i: usize, tx: &Sender<Message>) -> StepResult {
    let planned = &shared.plan.steps[i];
    let Some(cache) = shared
        .cache
        .as_ref()
        .filter(|c| c.active() && !uncacheable(planned))
    else {
        return super::step::run_step(shared, i, tx);
    };
    let step = &planned.step;
    let started = Instant::now();
    let started_at = SystemTime::now();
    let explain = |lines: Vec<Explanation>| {
        if cache.mode.explain {
            let _ = tx.send(Message::Explain(i, lines));
        }
    };

    let known = shared
        .keys
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    // Hashing runs on the cache's own pool. Waiting for it from a worker of the step pool
    // would let that worker start other steps meanwhile (rayon keeps a waiting worker busy),
    // so a plain thread waits instead.
    let keyed = std::thread::scope(|scope| {
        scope
            .spawn(|| step_key(cache, &shared.plan, i, &known))
            .join()
            .expect("computing a key does not panic")
    });
    let keyed = match keyed {
        Ok(k) => k,
        Err(NoKey::Need(name)) => {
            explain(vec![Explanation::NeedHasNoKey(name)]);
            let result = super::step::run_step(shared, i, tx);
            cache.step_ran();
            return result;
        }
        Err(NoKey::Failed(e)) => {
            explain(vec![Explanation::NotKeyed(e.to_string())]);
            let mut result = super::step::run_step(shared, i, tx);
            cache.step_ran();
            if result.status == Status::Passed && result.reason.is_none() {
                result.reason = Some(Reason::NotCached(e.to_string()));
            }
            return result;
        }
    };
    shared.keys.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(keyed.key.clone());

    // A step whose files are all gone is skipped, never looked up (its key still counts for
    // the steps that need it). A checkout still to be made holds all of them.
    if shared.workdir_ready() && !super::step::any_present(shared, planned) {
        return super::step::run_step(shared, i, tx);
    }
    // A hit restores outputs into the folder the steps run in, and a remote action reads its
    // input files there: both need it made.
    // When it cannot be made, the step fails, saying why.
    // So does checking files the step read beside a commit's tree.
    if (!step.outputs.is_empty() || shared.remote.is_some() || cache.needs_place(&keyed))
        && shared.prepare_workdir().is_err()
    {
        return super::step::run_step(shared, i, tx);
    }

    let mut unusable = None;
    let mut observed_miss = None;
    if !cache.mode.force.contains(&step.name) {
        match cache.lookup(step, &keyed) {
            Lookup::Hit { log } => {
                explain(vec![Explanation::Hit {
                    key: keyed.key.clone(),
                }]);
                replay(shared, i, &log, tx);
                return StepResult::new(&step.name, Status::Cached)
                    .took(started.elapsed())
                    .exited(0)
                    .with_output(log);
            }
            Lookup::Miss => {}
            Lookup::Observed(miss) => observed_miss = Some(miss),
            Lookup::Unusable(why) => unusable = Some(why),
            Lookup::Refused(why) => {
                let _ = tx.send(Message::Warning(Warning::CacheRefused {
                    step: step.name.clone(),
                    why: why.to_string(),
                }));
                unusable = Some(why);
            }
        }
    }
    let remote = super::remote::prepare(shared, i, cache, &keyed, tx);
    if let Some(remote) = &remote
        && cache.mode.read
        && !cache.mode.force.contains(&step.name)
        && let Some(result) = remote.lookup(shared, i, cache, &keyed, tx)
    {
        explain(vec![Explanation::RemoteHit {
            action: remote.prepared.action_digest.hash.clone(),
        }]);
        replay(shared, i, &result.output, tx);
        return result;
    }
    if cache.mode.explain {
        let lines = match (&unusable, observed_miss) {
            (Some(why), _) => vec![Explanation::Miss(why.to_string())],
            (None, Some(miss)) => observed_explanations(miss),
            (None, None) => cache
                .explain_miss(step, &keyed)
                .into_iter()
                .map(Explanation::Miss)
                .collect(),
        };
        explain(lines);
    }
    let needed: Vec<_> = planned
        .needs
        .iter()
        .map(|&j| &shared.plan.steps[j].step)
        .collect();
    for ignored in cache.unmatched_inputs(step, &keyed, &needed) {
        let _ = tx.send(Message::Warning(Warning::IgnoredInput {
            step: step.name.clone(),
            glob: ignored.glob,
            folder: ignored.folder,
        }));
    }
    if let Some(remote) = &remote
        && let Some(result) = remote.execute(shared, i, cache, &keyed, tx)
    {
        cache.step_ran();
        return result;
    }
    let observe = observe_this(cache, step, &keyed, tx);
    let (mut result, seen) = super::step::run_step_observed(shared, i, tx, observe);
    cache.step_ran();
    if result.status == Status::Passed {
        // What it read is part of its entry: when it cannot be told, nothing is stored.
        let observed = match seen.map(|seen| {
            seen.and_then(|seen| {
                cache
                    .record_observation(step, &keyed, &seen, started_at)
                    .map_err(|e| e.to_string())
            })
        }) {
            None => None,
            Some(Ok(record)) => Some(record),
            Some(Err(why)) => {
                result.reason = Some(Reason::NotObserved(why));
                return result;
            }
        };
        match cache.save(step, &keyed, &result.output, started_at, observed.as_ref()) {
            Err(NotSaved::Step(why)) => result.reason = Some(Reason::NotCached(why.to_string())),
            Err(NotSaved::Store(why)) => {
                if cache.first_store_failure() {
                    let _ = tx.send(Message::Warning(Warning::StoreFailed(why.to_string())));
                }
            }
            Ok(()) => {
                if let Some(remote) = &remote {
                    remote.upload(cache, &keyed, tx);
                }
            }
        }
    }
    result
}

/// Whether the step runs under the tracer: only when its result will be stored (nothing
/// else would use what it read) and observing is wanted. Where the system cannot observe,
/// the run says so once and the step is keyed on its declared inputs.
fn observe_this(cache: &Session, step: &Step, keyed: &Keyed, tx: &Sender<Message>) -> bool {
    if !(cache.mode.write && keyed.cacheable() && cache.observe_wanted(step)) {
        return false;
    }
    match crate::observe::support() {
        crate::observe::Support::Available => true,
        crate::observe::Support::Unavailable(why) => {
            if cache.first_unobservable() {
                let _ = tx.send(Message::Warning(Warning::ObserveUnavailable(why.clone())));
            }
            false
        }
    }
}

/// The `--explain` lines of an entry not used because of what the step read.
fn observed_explanations(miss: ObservedMiss) -> Vec<Explanation> {
    match miss {
        ObservedMiss::Drifted(drift) => drift.into_iter().map(Explanation::Observed).collect(),
        ObservedMiss::NotObserved => vec![Explanation::NotObserved],
        ObservedMiss::Damaged => vec![Explanation::ObservedDamaged],
        ObservedMiss::Unreadable(why) => vec![Explanation::ObservedUnreadable(why)],
    }
}

/// Sends a cached log to the reporter line by line, when output is streamed.
fn replay(shared: &Shared, i: usize, log: &[u8], tx: &Sender<Message>) {
    if shared.stream_output {
        for line in log
            .strip_suffix(b"\n")
            .unwrap_or(log)
            .split(|&b| b == b'\n')
        {
            let _ = tx.send(Message::Line(i, line.to_vec()));
        }
    }
}

/// A fixer changes its own inputs, and a commit message is no input the key knows of:
/// neither result may stand for a later run. A step skipped on purpose has nothing to key.
fn uncacheable(planned: &PlannedStep) -> bool {
    planned.fixes || planned.skip.is_some() || planned.command.uses_msg_file()
}

/// Why a step has no key.
enum NoKey {
    /// A step it needs has none.
    Need(String),
    /// Its inputs could not be hashed.
    Failed(crate::error::Error),
}

/// The key of the plan's step `i`, given the keys of the steps before it (`None`: none).
/// The one key chain: a real run and a dry run both compute keys here, so that a dry run
/// never promises what the run would not do.
fn step_key(
    cache: &Session,
    plan: &Plan,
    i: usize,
    keys: &[Option<String>],
) -> Result<Keyed, NoKey> {
    let planned = &plan.steps[i];
    let mut needs = Vec::new();
    for &j in &planned.needs {
        let need = &plan.steps[j].step;
        match &keys[j] {
            Some(k) => needs.push((need, k.clone())),
            None => return Err(NoKey::Need(need.name.clone())),
        }
    }
    cache
        .key(&planned.step, planned.files.as_deref(), &needs)
        .map_err(NoKey::Failed)
}

/// What a run would do with a step's cache entry, foreseen without running anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreseen {
    Hit,
    Miss,
    /// Not looked up: no inputs, the cache is off, a fixer, or no key.
    NotCached,
    /// Its files are all gone: it would be skipped.
    Skipped,
}

/// One step of a dry run: its key (when it has one), what the run would do, and why.
pub struct Preview {
    pub name: String,
    pub keyed: Option<Keyed>,
    pub foreseen: Foreseen,
    pub reasons: Vec<Explanation>,
}

/// Every step's key and what a run would do with it, in plan order, computed as the run
/// computes them. `root`: where the steps would run; `None` for a checkout still to be
/// made, which holds every file the plan names.
pub fn preview(plan: &Plan, cache: &Session, root: Option<&Path>) -> Vec<Preview> {
    let mut keys: Vec<Option<String>> = vec![None; plan.steps.len()];
    let mut out: Vec<Option<Preview>> = (0..plan.steps.len()).map(|_| None).collect();
    for i in dependency_order(plan) {
        let planned = &plan.steps[i];
        let step = &planned.step;
        // As the run decides: a step whose files are all gone is skipped.
        let skipped = root.is_some_and(|root| {
            let cwd = step
                .dir
                .as_ref()
                .map_or_else(|| root.to_path_buf(), |d| root.join(d));
            planned
                .files
                .as_ref()
                .is_some_and(|files| !files.iter().any(|f| cwd.join(f).symlink_metadata().is_ok()))
        });
        let not_cached = |keyed: Option<Keyed>, reasons: Vec<Explanation>| Preview {
            name: step.name.clone(),
            keyed,
            foreseen: Foreseen::NotCached,
            reasons,
        };
        if let Some(why) = &planned.skip {
            out[i] = Some(Preview {
                name: step.name.clone(),
                keyed: None,
                foreseen: Foreseen::Skipped,
                reasons: vec![Explanation::SkippedBy(why.clone())],
            });
            continue;
        }
        if uncacheable(planned) {
            let why = if planned.fixes {
                Explanation::Fixer
            } else {
                Explanation::ReadsMessage
            };
            out[i] = Some(not_cached(None, vec![why]));
            continue;
        }
        let keyed = match step_key(cache, plan, i, &keys) {
            Ok(keyed) => keyed,
            Err(NoKey::Need(name)) => {
                out[i] = Some(not_cached(None, vec![Explanation::NeedHasNoKey(name)]));
                continue;
            }
            Err(NoKey::Failed(e)) => {
                out[i] = Some(not_cached(None, vec![Explanation::NotKeyed(e.to_string())]));
                continue;
            }
        };
        let misses = |lines: Vec<String>| lines.into_iter().map(Explanation::Miss).collect();
        let (foreseen, reasons) = if skipped {
            (Foreseen::Skipped, Vec::new())
        } else if !keyed.cacheable() || !cache.mode.read {
            (
                Foreseen::NotCached,
                misses(cache.explain_miss(step, &keyed)),
            )
        } else if cache.mode.force.contains(&step.name) {
            (Foreseen::Miss, misses(cache.explain_miss(step, &keyed)))
        } else if let Some(found) = cache.has_entry(step, &keyed) {
            match found {
                Ok(()) => (Foreseen::Hit, Vec::new()),
                Err(miss) => (Foreseen::Miss, observed_explanations(miss)),
            }
        } else {
            (Foreseen::Miss, misses(cache.explain_miss(step, &keyed)))
        };
        keys[i] = Some(keyed.key.clone());
        out[i] = Some(Preview {
            name: step.name.clone(),
            keyed: Some(keyed),
            foreseen,
            reasons,
        });
    }
    out.into_iter().flatten().collect()
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
