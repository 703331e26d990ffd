//! The words for the engine's data: why a step ended as it did, why it ran (`--explain`),
//! the warnings of a run and the stages of a remote step, said the same way by the human
//! and the JSON renderers.

use super::format_duration;
use crate::cache::observed::Drift;
use crate::exec::{
    ExecutionStage, Explanation, NotStarted, Reason, RemoteStage, RunsHere, Status, StepResult,
    TrackedWrites, Warning,
};

/// What a finished step's line says after its name, and the JSON `detail`: why it ended so,
/// when the engine knows more than its status and exit code.
pub fn detail(r: &StepResult) -> Option<String> {
    let reason = r.reason.as_ref().map(reason);
    let Some(wrote) = &r.wrote else {
        return reason;
    };
    let wrote = tracked_writes(wrote);
    Some(match (reason, r.exit_code) {
        (Some(reason), _) => format!("{reason}; {wrote}"),
        (None, Some(code)) if code != 0 => format!("exit code {code}; {wrote}"),
        (None, _) => wrote,
    })
}

fn reason(reason: &Reason) -> String {
    match reason {
        Reason::SkippedBy(setting) => format!("skipped by {setting}"),
        Reason::NoMatchingFiles => "no matching files".into(),
        Reason::NoMessageFile => {
            "{msg_file} is only known in the commit-msg and prepare-commit-msg hooks".into()
        }
        Reason::NoWorkdir(why) => why.clone(),
        Reason::MissingDir(dir) => {
            format!("its working directory `{}` does not exist", dir.display())
        }
        Reason::CommandNotFound { code, program } => {
            format!("exit code {code}: `{program}` not found (is it installed and on PATH?)")
        }
        Reason::CommandNotRunnable { code, program } => format!(
            "exit code {code}: `{program}` cannot be run (is it executable, and a program?)"
        ),
        Reason::Signal(signal) => format!("killed by signal {signal}"),
        Reason::SpawnFailed(why) => why.clone(),
        Reason::TimedOut { limit, remote } => format!(
            "killed after the {} timeout{}",
            format_duration(*limit),
            if *remote { " on the worker" } else { "" }
        ),
        Reason::Cancelled(why) => why.clone(),
        Reason::NotStarted(NotStarted::Stopped(why)) => format!("not started: {why}"),
        Reason::NotStarted(NotStarted::NoThread) => {
            "not started: no thread could be started".into()
        }
        Reason::NeedNotPassed { need, status } => {
            let how = match status {
                Some(Status::Failed) => "failed",
                Some(Status::TimedOut) => "timed out",
                Some(Status::Cancelled) => "was cancelled",
                _ => "did not run",
            };
            format!("needs `{need}`, which {how}")
        }
        Reason::NotCached(why) => format!("not cached: {why}"),
        Reason::NotObserved(why) => {
            format!("not cached: what it read could not be observed ({why})")
        }
    }
}

/// One `--explain` line: why a step ran or came from the cache.
pub fn explanation(line: &Explanation) -> String {
    // Digests are shown by their first 12 hex digits, enough to tell them apart.
    let short = |digest: &str| digest.get(..12).unwrap_or(digest).to_string();
    match line {
        Explanation::NeedHasNoKey(need) => format!("not cached: needed step `{need}` has no key"),
        Explanation::NotKeyed(why) => format!("not cached: {why}"),
        Explanation::Hit { key } => format!(
            "cache hit (key {}): outputs restored, log replayed",
            short(key)
        ),
        Explanation::RemoteHit { action } => format!(
            "remote cache hit (action {}): outputs restored, log replayed",
            short(action)
        ),
        Explanation::NotRemote(why) => format!("not remote: {why}"),
        Explanation::Miss(line) => line.clone(),
        Explanation::Fixer => "not cached: a fixer changes its own inputs".into(),
        Explanation::ReadsMessage => "not cached: it reads the commit message".into(),
        Explanation::SkippedBy(setting) => format!("skipped by {setting}"),
        Explanation::Observed(drift) => observed_drift(drift),
        Explanation::NotObserved => "its cache entry was stored without observing what the step \
                                     read, so it cannot vouch for files the step reads without \
                                     declaring them"
            .into(),
        Explanation::ObservedDamaged => "its cache entry was damaged (the record of what the step \
                                         read is missing or corrupt) and was removed"
            .into(),
        Explanation::ObservedUnreadable(why) => {
            format!("the files the step read could not be checked: {why}")
        }
    }
}

/// A file the step read without declaring it, or looked for, and how it differs now.
fn observed_drift(drift: &Drift) -> String {
    let path = drift.path().display();
    match drift {
        Drift::Changed(_) => format!("`{path}` changed (read by the step, not declared)"),
        Drift::Removed(_) => format!("`{path}` was removed (read by the step, not declared)"),
        Drift::Appeared(_) => format!("`{path}` appeared (the step looked for it)"),
        Drift::Listed(p) if p.as_os_str().is_empty() => {
            "the names at the repository's top changed (the step listed it)".into()
        }
        Drift::Listed(_) => format!("the names in `{path}` changed (the step listed the folder)"),
    }
}

/// Which tracked files a check changed, and what to do about it. When other steps ran at the
/// same time, the change may be theirs.
fn tracked_writes(wrote: &TrackedWrites) -> String {
    const SHOWN: usize = 5;
    let changed = &wrote.files;
    let mut names: Vec<String> = changed
        .iter()
        .take(SHOWN)
        .map(|p| p.display().to_string())
        .collect();
    if changed.len() > SHOWN {
        names.push(format!("and {} more", changed.len() - SHOWN));
    }
    let count = match changed.len() {
        1 => "1 tracked file".to_string(),
        n => format!("{n} tracked files"),
    };
    let names = names.join(", ");
    if wrote.alongside.is_empty() {
        format!(
            "changed {count}: {names}; a check must not write the files it checks: make it a \
             fix step (`fix`), declare what it writes in `outputs`, or stop it from writing"
        )
    } else {
        let others = wrote
            .alongside
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{count} changed while it ran: {names}; it ran at the same time as {others}, so \
             the change may be theirs, and what it checked is not what is there now: a step \
             that is not a fixer must not write tracked files (make the one that writes a fix \
             step, declare the files in `outputs`, or stop it from writing; `-j 1` tells which)"
        )
    }
}

/// The text of a warning, without the `warning:` prefix.
pub fn warning(warning: &Warning) -> String {
    match warning {
        Warning::FewerThreads { granted, asked } => format!(
            "the system granted {granted} of {asked} threads: at most {granted} steps run at once"
        ),
        Warning::NoThread(why) => format!("cannot start a thread: {why}"),
        Warning::CacheRefused { step, why } => format!("step `{step}`: {why}"),
        Warning::IgnoredInput { step, glob, folder } => format!(
            "step `{step}`: input `{glob}` matches no file: what it matches in `{}` is ignored by \
             git, and ignored files are never inputs (declare them as `outputs` of the step that \
             writes them and list it in `needs`, or stop ignoring them)",
            folder.display()
        ),
        Warning::StoreFailed(why) => why.clone(),
        Warning::ObserveUnavailable(why) => format!(
            "cannot observe which files steps read ({why}): cached steps are keyed on their \
             declared inputs only; declare what they read in `inputs`, or set \
             `[settings] observe = false` to silence this"
        ),
        Warning::Remote(text) => text.clone(),
        Warning::RemoteStep { step, problem } => format!("step `{step}`: {problem}"),
        Warning::NotTaken { step, waited } => format!(
            "step `{step}`: it could not run remotely: the remote execution failed: no worker \
             took it within {} (does a worker offer its platform?); it runs here",
            format_duration(*waited)
        ),
        Warning::ToolsNotOnWorker { step, why } => format!(
            "step `{step}`: it could not run remotely: {why}; it runs here, with this \
             machine's copy of the same tools"
        ),
        Warning::RemoteResultUnusable { step, why } => {
            format!("step `{step}`: the remote result {why}")
        }
    }
}

/// Where a step that may use the remote is, in a few words.
pub fn remote_stage(stage: &RemoteStage) -> String {
    match stage {
        RemoteStage::Execution(ExecutionStage::Uploading) => "uploading inputs".into(),
        RemoteStage::Execution(ExecutionStage::Uploaded {
            blobs,
            missing,
            bytes,
            took,
        }) => format!(
            "uploaded {missing} of {blobs} blobs ({bytes} bytes) in {}",
            format_duration(*took)
        ),
        RemoteStage::Execution(ExecutionStage::Queued) => "queued".into(),
        RemoteStage::Execution(ExecutionStage::Executing) => "executing".into(),
        RemoteStage::RunsHere(RunsHere::NoInputs) => "runs here: it declares no `inputs`, so a \
                                                      worker would not know which files it reads"
            .into(),
        RemoteStage::RunsHere(RunsHere::Unsupported(why)) => format!("runs here: {why}"),
    }
}

/// The one line a run says about its managed tools, when it says one: installing a tool on
/// first use, and writing the lock. Resolving and finishing are not said: the run goes on.
pub fn tool_event(event: &crate::tools::Event) -> Option<String> {
    use crate::tools::Event;
    match event {
        Event::Installing { name, spec } => {
            Some(format!("installing tool `{name}` ({spec}) on first use"))
        }
        Event::LockWritten { path, names } if !names.is_empty() => Some(format!(
            "locked {} in {}",
            names.join(", "),
            crate::config::display_path(path)
        )),
        Event::Resolving { .. } | Event::Installed { .. } | Event::LockWritten { .. } => None,
    }
}

/// A line for `preflight tools`: every event, said plainly.
pub fn tool_progress(event: &crate::tools::Event) -> String {
    use crate::tools::Event;
    match event {
        Event::Resolving { name, spec } => format!("resolving {name} ({spec})"),
        Event::Installing { name, spec } => format!("installing {name} ({spec})"),
        Event::Installed { name, took } => {
            format!("installed {name} in {}", format_duration(*took))
        }
        Event::LockWritten { path, names } if names.is_empty() => {
            format!("wrote {}", crate::config::display_path(path))
        }
        Event::LockWritten { path, names } => format!(
            "wrote {} ({})",
            crate::config::display_path(path),
            names.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    fn step(status: Status, exit_code: Option<i32>, reason: Option<Reason>) -> StepResult {
        let result = StepResult::new("lint", status).because(reason);
        match exit_code {
            Some(code) => result.exited(code),
            None => result,
        }
    }

    #[test]
    fn the_detail_names_a_few_changed_files_and_counts_the_rest() {
        let files: Vec<PathBuf> = (0..7).map(|i| PathBuf::from(format!("f{i}.py"))).collect();
        let alone = tracked_writes(&TrackedWrites {
            files: files.clone(),
            alongside: Vec::new(),
        });
        assert!(
            alone.starts_with(
                "changed 7 tracked files: f0.py, f1.py, f2.py, f3.py, f4.py, and 2 more;"
            ),
            "{alone}"
        );
        let beside = tracked_writes(&TrackedWrites {
            files: files[..1].to_vec(),
            alongside: vec!["lint".into()],
        });
        assert!(
            beside.starts_with(
                "1 tracked file changed while it ran: f0.py; it ran at the same time as `lint`"
            ),
            "{beside}"
        );
    }

    #[test]
    fn changed_files_follow_the_reason_or_the_exit_code() {
        let wrote = TrackedWrites {
            files: vec![PathBuf::from("a.py")],
            alongside: Vec::new(),
        };
        let note = tracked_writes(&wrote);
        let mut failed = step(Status::Failed, Some(1), None);
        failed.wrote = Some(wrote.clone());
        assert_eq!(detail(&failed), Some(format!("exit code 1; {note}")));
        let mut passed = step(Status::Failed, Some(0), None);
        passed.wrote = Some(wrote.clone());
        assert_eq!(detail(&passed), Some(note.clone()));
        let mut missing = step(
            Status::Failed,
            Some(127),
            Some(Reason::CommandNotFound {
                code: 127,
                program: "shfmt".into(),
            }),
        );
        missing.wrote = Some(wrote);
        assert_eq!(
            detail(&missing),
            Some(format!(
                "exit code 127: `shfmt` not found (is it installed and on PATH?); {note}"
            ))
        );
        assert_eq!(detail(&step(Status::Failed, Some(1), None)), None);
    }

    #[test]
    fn a_timeout_says_its_limit_and_where() {
        let here = Reason::TimedOut {
            limit: Duration::from_millis(1500),
            remote: false,
        };
        assert_eq!(
            detail(&step(Status::TimedOut, None, Some(here))).as_deref(),
            Some("killed after the 1.50s timeout")
        );
        let there = Reason::TimedOut {
            limit: Duration::from_secs(90),
            remote: true,
        };
        assert_eq!(
            detail(&step(Status::TimedOut, None, Some(there))).as_deref(),
            Some("killed after the 1m30s timeout on the worker")
        );
        let blocked = Reason::NeedNotPassed {
            need: "build".into(),
            status: Some(Status::TimedOut),
        };
        assert_eq!(
            detail(&step(Status::NotRun, None, Some(blocked))).as_deref(),
            Some("needs `build`, which timed out")
        );
    }

    #[test]
    fn an_explained_hit_shows_the_start_of_its_key() {
        let hit = Explanation::Hit {
            key: "0123456789abcdef0123".into(),
        };
        assert_eq!(
            explanation(&hit),
            "cache hit (key 0123456789ab): outputs restored, log replayed"
        );
        let short = Explanation::RemoteHit {
            action: "abc".into(),
        };
        assert_eq!(
            explanation(&short),
            "remote cache hit (action abc): outputs restored, log replayed"
        );
    }

    #[test]
    fn a_worker_without_the_tools_gives_the_step_back_with_its_words() {
        let w = Warning::ToolsNotOnWorker {
            step: "lint".into(),
            why: "this worker cannot provide the step's tools: tool `ruff`: no network".into(),
        };
        assert_eq!(
            warning(&w),
            "step `lint`: it could not run remotely: this worker cannot provide the step's \
             tools: tool `ruff`: no network; it runs here, with this machine's copy of the same \
             tools"
        );
    }

    #[test]
    fn a_warning_about_a_step_names_it() {
        let ignored = Warning::IgnoredInput {
            step: "build".into(),
            glob: "gen/**".into(),
            folder: PathBuf::from("gen"),
        };
        assert!(
            warning(&ignored).starts_with(
                "step `build`: input `gen/**` matches no file: what it matches in `gen` is \
                 ignored by git, and ignored files are never inputs (declare"
            ),
            "{}",
            warning(&ignored)
        );
        let threads = Warning::FewerThreads {
            granted: 2,
            asked: 8,
        };
        assert_eq!(
            warning(&threads),
            "the system granted 2 of 8 threads: at most 2 steps run at once"
        );
    }

    #[test]
    fn a_stage_carries_its_figures_and_says_them() {
        let uploaded = RemoteStage::Execution(ExecutionStage::Uploaded {
            blobs: 7,
            missing: 2,
            bytes: 120,
            took: Duration::from_millis(1500),
        });
        assert_eq!(
            remote_stage(&uploaded),
            "uploaded 2 of 7 blobs (120 bytes) in 1.50s"
        );
        assert_eq!(
            remote_stage(&RemoteStage::RunsHere(RunsHere::NoInputs)),
            "runs here: it declares no `inputs`, so a worker would not know which files it reads"
        );
        let not_taken = Warning::NotTaken {
            step: "lint".into(),
            waited: Duration::from_secs(2),
        };
        assert_eq!(
            warning(&not_taken),
            "step `lint`: it could not run remotely: the remote execution failed: no worker took \
             it within 2.00s (does a worker offer its platform?); it runs here"
        );
    }
}
