//! A step and `[remote]`: after a local miss, the remote cache is asked; a step that may
//! run on the farm runs there; a step that passed here is uploaded. Every remote failure is
//! a warning and the step runs (or stays) local: a remote never fails a run.

use super::{
    Explanation, Reason, RemoteOrigin, RemoteStage, RunsHere, Status, StepResult, Warning,
};
use super::{Message, Shared, invocation};
use crate::cache::{self, Keyed};
use crate::remote::action::{self, Prepared, StepAction};
use crate::remote::{self, Executed};
use std::sync::mpsc::Sender;
use std::time::Instant;

/// A step's remote context, when the step uses the remote at all.
pub(super) struct RemoteStep<'a> {
    session: &'a remote::Session,
    pub prepared: Prepared,
}

/// Reports a warning of the remote, naming the step when it is about the step.
fn warn(tx: &Sender<Message>, step: &str, warning: remote::Warning) {
    let warning = match warning {
        remote::Warning::Remote(text) => Warning::Remote(text),
        remote::Warning::Step(problem) => Warning::RemoteStep {
            step: step.to_string(),
            problem,
        },
        remote::Warning::Said => return,
    };
    let _ = tx.send(Message::Warning(warning));
}

/// The outputs declared by every step `i` needs, directly or not.
fn needed_outputs(shared: &Shared, i: usize) -> Vec<String> {
    let mut seen = vec![false; shared.plan.steps.len()];
    let mut stack = shared.plan.steps[i].needs.clone();
    let mut outputs = Vec::new();
    while let Some(j) = stack.pop() {
        if std::mem::replace(&mut seen[j], true) {
            continue;
        }
        outputs.extend(shared.plan.steps[j].step.outputs.iter().cloned());
        stack.extend(shared.plan.steps[j].needs.iter().copied());
    }
    outputs
}

/// Describes the step as an Action, when the run has a remote and the step may use it.
pub(super) fn prepare<'a>(
    shared: &'a Shared,
    i: usize,
    cache: &cache::Session,
    keyed: &Keyed,
    tx: &Sender<Message>,
) -> Option<RemoteStep<'a>> {
    let session = shared.remote.as_deref()?;
    let planned = &shared.plan.steps[i];
    let step = &planned.step;
    if !step.remote {
        return None;
    }
    if !keyed.cacheable() {
        if session.execute {
            let _ = tx.send(Message::Remote(
                i,
                RemoteStage::RunsHere(RunsHere::NoInputs),
            ));
        }
        return None;
    }
    // A worker installs the step's tools from their lock entries; one the lock lacks keeps
    // the step here.
    let mut tools = Vec::new();
    for name in &step.tools {
        match session.tools.get(name) {
            Some(tool) => tools.push(tool.clone()),
            None => {
                if session.execute {
                    let why =
                        format!("its tool `{name}` is not in preflight.lock as [tools] says it");
                    let _ = tx.send(Message::Remote(
                        i,
                        RemoteStage::RunsHere(RunsHere::Unsupported(why)),
                    ));
                }
                return None;
            }
        }
    }
    let (_, files) = super::step::present_files(shared, planned);
    let invocations = invocation::invocations(&planned.command, files.as_deref());
    // The PATH that puts this machine's copies of the tools first is this machine's: the
    // worker makes its own.
    let mut env = super::step::step_env(shared, step);
    if let Some(tool_path) = shared.tool_paths.get(&step.name) {
        env.retain(|(k, v)| !(k == "PATH" && v == tool_path));
    }
    let described = StepAction {
        root: &shared.root,
        step,
        remote: &session.config,
        invocations: &invocations,
        env: &env,
        record: &keyed.record,
        store: cache.store(),
        needed_outputs: needed_outputs(shared, i),
        tools: &tools,
    };
    match action::prepare(&described) {
        Ok(prepared) => Some(RemoteStep { session, prepared }),
        // The step cannot be an Action: it stays here, and says why when asked.
        Err(why) => {
            if cache.mode.explain {
                let _ = tx.send(Message::Explain(
                    i,
                    vec![Explanation::NotRemote(why.to_string())],
                ));
            }
            if session.execute {
                let _ = tx.send(Message::Remote(
                    i,
                    RemoteStage::RunsHere(RunsHere::Unsupported(why.to_string())),
                ));
            }
            None
        }
    }
}

impl RemoteStep<'_> {
    /// A remote cache hit, restored into the work tree as a local hit is.
    pub(super) fn lookup(
        &self,
        shared: &Shared,
        i: usize,
        cache: &cache::Session,
        keyed: &Keyed,
        tx: &Sender<Message>,
    ) -> Option<StepResult> {
        let step = &shared.plan.steps[i].step;
        let started = Instant::now();
        // Held from the download to the restore, so that a gc elsewhere cannot remove the
        // blobs in between.
        let _lock = cache.store().shared_lock().ok()?;
        let fetched = match self.session.lookup(&self.prepared, cache.store()) {
            Ok(Some(f)) => f,
            Ok(None) => return None,
            Err(w) => {
                warn(tx, &step.name, w);
                return None;
            }
        };
        let log = restore(shared, i, cache, keyed, &fetched.entry, tx)?;
        Some(
            StepResult::new(&step.name, Status::Cached)
                .took(started.elapsed())
                .exited(0)
                .with_output(log)
                .from_remote(RemoteOrigin {
                    executed: false,
                    worker: fetched.worker,
                }),
        )
    }

    /// Runs the step on the farm; `None` when it must run here instead.
    pub(super) fn execute(
        &self,
        shared: &Shared,
        i: usize,
        cache: &cache::Session,
        keyed: &Keyed,
        tx: &Sender<Message>,
    ) -> Option<StepResult> {
        if !self.session.execute {
            return None;
        }
        let step = &shared.plan.steps[i].step;
        if let Err(why) = &self.prepared.executable {
            let _ = tx.send(Message::Remote(
                i,
                RemoteStage::RunsHere(RunsHere::Unsupported(why.to_string())),
            ));
            return None;
        }
        let started = Instant::now();
        let _ = tx.send(Message::Started(i));
        let on_stage = |stage: remote::execute::Stage| {
            let _ = tx.send(Message::Remote(i, RemoteStage::Execution(stage)));
        };
        let executed = self.session.execute(
            &self.prepared,
            step.timeout,
            cache.mode.force.contains(&step.name),
            cache.store(),
            &on_stage,
            &|| shared.canceller.is_cancelled(),
        );
        let result = |status, worker: String| {
            StepResult::new(&step.name, status)
                .took(started.elapsed())
                .from_remote(RemoteOrigin {
                    executed: true,
                    worker,
                })
        };
        match executed {
            Err(w) => {
                warn(tx, &step.name, w);
                None
            }
            Ok(Executed::NotTaken { waited }) => {
                let _ = tx.send(Message::Warning(Warning::NotTaken {
                    step: step.name.clone(),
                    waited,
                }));
                None
            }
            Ok(Executed::ToolsUnavailable { why }) => {
                let _ = tx.send(Message::Warning(Warning::ToolsNotOnWorker {
                    step: step.name.clone(),
                    why,
                }));
                None
            }
            Ok(Executed::Cancelled) => Some(result(Status::Cancelled, String::new())),
            Ok(Executed::TimedOut) => Some(result(Status::TimedOut, String::new()).because(
                Reason::TimedOut {
                    limit: step.timeout.unwrap_or_default(),
                    remote: true,
                },
            )),
            Ok(Executed::Done {
                exit_code,
                worker,
                entry,
            }) if exit_code != 0 => {
                let log = entry
                    .stdout_digest
                    .as_ref()
                    .and_then(|d| cache.store().read_verified(d))
                    .unwrap_or_default();
                Some(
                    result(Status::Failed, worker)
                        .exited(exit_code)
                        .with_output(log),
                )
            }
            Ok(Executed::Done { worker, entry, .. }) => {
                let log = restore(shared, i, cache, keyed, &entry, tx)?;
                Some(result(Status::Passed, worker).exited(0).with_output(log))
            }
        }
    }

    /// Uploads a result that passed here, when the remote cache takes writes.
    pub(super) fn upload(&self, cache: &cache::Session, keyed: &Keyed, tx: &Sender<Message>) {
        if !self.session.cache.writes() {
            return;
        }
        // A result built here stands for the Action only when this machine has the OS and
        // instruction set the Action names.
        let platform = self.prepared.action.platform.iter().flat_map(|p| {
            p.properties
                .iter()
                .map(|p| (p.name.as_str(), p.value.as_str()))
        });
        if !remote::host::satisfies(platform) {
            return;
        }
        let Some(entry) = cache.store().get(&keyed.key) else {
            return;
        };
        if let Err(w) = self.session.upload(&self.prepared, &entry, cache.store()) {
            warn(tx, &keyed.record.step, w);
        }
    }
}

/// Files a remote result as the step's local entry and restores it; the log on success.
fn restore(
    shared: &Shared,
    i: usize,
    cache: &cache::Session,
    keyed: &Keyed,
    entry: &crate::cache::store::ActionResult,
    tx: &Sender<Message>,
) -> Option<Vec<u8>> {
    let step = &shared.plan.steps[i].step;
    if let Err(why) = cache.import(keyed, entry) {
        let _ = tx.send(Message::Warning(Warning::RemoteStep {
            step: step.name.clone(),
            problem: why.to_string(),
        }));
        return None;
    }
    match cache.lookup(step, keyed) {
        cache::Lookup::Hit { log } => Some(log),
        cache::Lookup::Miss | cache::Lookup::Observed(_) => None,
        cache::Lookup::Unusable(why) | cache::Lookup::Refused(why) => {
            let _ = tx.send(Message::Warning(Warning::RemoteResultUnusable {
                step: step.name.clone(),
                why: why.to_string(),
            }));
            None
        }
    }
}
