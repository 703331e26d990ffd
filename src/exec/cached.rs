//! The cache around one step: its key (from its inputs and the keys of its needs), a lookup
//! that restores outputs and replays the log on a hit, the reason it ran for `--explain`,
//! and the store after a pass.

use super::{Explanation, Reason, Status, StepResult, Warning};
use super::{Message, Shared};
use crate::cache::{Lookup, NotSaved};
use std::sync::mpsc::Sender;
use std::time::{Instant, SystemTime};

pub(super) fn run_step(shared: &Shared, i: usize, tx: &Sender<Message>) -> StepResult {
    let planned = &shared.plan.steps[i];
    // A fixer changes its own inputs, and a commit message is no input the key knows of:
    // neither result may stand for a later run. A step skipped on purpose has nothing to key.
    let uncacheable = planned.fixes || planned.skip.is_some() || planned.command.uses_msg_file();
    let Some(cache) = shared.cache.as_ref().filter(|c| c.active() && !uncacheable) else {
        return super::run_step(shared, i, tx);
    };
    let step = &planned.step;
    let started = Instant::now();
    let started_at = SystemTime::now();
    let explain = |lines: Vec<Explanation>| {
        if cache.mode.explain {
            let _ = tx.send(Message::Explain(i, lines));
        }
    };

    let mut needs = Vec::new();
    let mut missing_need = None;
    {
        let keys = shared.keys.lock().unwrap_or_else(|e| e.into_inner());
        for &j in &planned.needs {
            let need = &shared.plan.steps[j].step;
            match &keys[j] {
                Some(k) => needs.push((need, k.clone())),
                None => missing_need = Some(need.name.clone()),
            }
        }
    }
    if let Some(name) = missing_need {
        explain(vec![Explanation::NeedHasNoKey(name)]);
        let result = super::run_step(shared, i, tx);
        cache.step_ran();
        return result;
    }
    // Hashing runs on the cache's own pool. Waiting for it from a worker of the step pool
    // would let that worker start other steps meanwhile (rayon keeps a waiting worker busy),
    // so a plain thread waits instead.
    let keyed = std::thread::scope(|scope| {
        scope
            .spawn(|| cache.key(step, planned.files.as_deref(), &needs))
            .join()
            .expect("computing a key does not panic")
    });
    let keyed = match keyed {
        Ok(k) => k,
        Err(e) => {
            explain(vec![Explanation::NotKeyed(e.to_string())]);
            let mut result = super::run_step(shared, i, tx);
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
    if shared.workdir_ready()
        && super::present_files(shared, planned)
            .1
            .is_some_and(|files| files.is_empty())
    {
        return super::run_step(shared, i, tx);
    }
    // A hit restores outputs into the folder the steps run in, and a remote action reads its
    // input files there: both need it made.
    // When it cannot be made, the step fails, saying why.
    if (!step.outputs.is_empty() || shared.remote.is_some()) && shared.prepare_workdir().is_err() {
        return super::run_step(shared, i, tx);
    }

    let mut unusable = None;
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
        let lines = match &unusable {
            Some(why) => vec![why.to_string()],
            None => cache.explain_miss(step, &keyed),
        };
        explain(lines.into_iter().map(Explanation::Miss).collect());
    }
    let needed: Vec<_> = needs.iter().map(|(step, _)| *step).collect();
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
    let mut result = super::run_step(shared, i, tx);
    cache.step_ran();
    if result.status == Status::Passed {
        match cache.save(step, &keyed, &result.output, started_at) {
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
