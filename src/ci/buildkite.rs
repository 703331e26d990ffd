//! Buildkite: a command step per CI job, keyed, with `depends_on` and a `matrix` setup.
//! Buildkite substitutes `$VAR` when the pipeline is uploaded; `$$` is a literal `$`.
//! Triggers, cancelling and secrets are pipeline settings and agent hooks, not YAML.

use super::{Common, all_secrets};
use crate::config::Ci;
use indexmap::IndexMap;
use minijinja::Value;
use serde::Serialize;

#[derive(Serialize)]
struct Context {
    header: String,
    steps: Vec<Step>,
}

#[derive(Serialize)]
struct Step {
    key: String,
    label: String,
    depends_on: Vec<String>,
    commands: Vec<String>,
    setup: IndexMap<String, Vec<String>>,
    agents: IndexMap<String, String>,
    timeout_minutes: Option<u64>,
    artifact_paths: Vec<String>,
}

pub(super) fn context(ci: &Ci, common: &Common) -> Value {
    let secrets = all_secrets(ci);
    let steps = common
        .order
        .iter()
        .map(|name| {
            let job = &ci.jobs[name];
            let mut commands = common.job_prelude(&secrets, &job.secrets);
            commands.push(
                common.run_command(name, job, |axis| format!("{axis}={{{{matrix.{axis}}}}}")),
            );
            let mut agents = ci.buildkite.agents.clone();
            if job.matrix.iter().any(|a| a == "os") {
                agents.insert("os".into(), "{{matrix.os}}".into());
            }
            let label = if job.matrix.is_empty() {
                name.clone()
            } else {
                let values: Vec<String> = job
                    .matrix
                    .iter()
                    .map(|a| format!("{{{{matrix.{a}}}}}"))
                    .collect();
                format!("{name} ({})", values.join(", "))
            };
            Step {
                key: name.clone(),
                label,
                depends_on: job.needs.clone(),
                commands,
                setup: job
                    .matrix
                    .iter()
                    .map(|a| (a.clone(), ci.matrix[a].clone()))
                    .collect(),
                agents,
                timeout_minutes: job.timeout.map(|t| t.as_secs().div_ceil(60)),
                artifact_paths: job
                    .artifacts
                    .as_ref()
                    .map(|a| a.paths.clone())
                    .unwrap_or_default(),
            }
        })
        .collect();
    Value::from_serialize(Context {
        header: common.header.clone(),
        steps,
    })
}
