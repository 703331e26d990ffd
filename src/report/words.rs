//! The words for the engine's data: the warnings of a run and the stages of a remote step,
//! said the same way by the human and the JSON renderers.

use super::format_duration;
use crate::exec::{ExecutionStage, RemoteStage, RunsHere, Warning};

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
        Warning::Remote(text) => text.clone(),
        Warning::RemoteStep { step, problem } => format!("step `{step}`: {problem}"),
        Warning::NotTaken { step, waited } => format!(
            "step `{step}`: it could not run remotely: the remote execution failed: no worker \
             took it within {} (does a worker offer its platform?); it runs here",
            format_duration(*waited)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

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
