//! Woodpecker (Codeberg's CI): one workflow file, a step per CI job with `depends_on`, and
//! the matrix at the top, where Woodpecker substitutes `${VAR}` before it reads the file.

use super::{Common, all_secrets, expand_axes, matrix_env};
use crate::config::Ci;
use indexmap::IndexMap;
use minijinja::Value;
use serde::Serialize;

/// The image of every step when `[ci.woodpecker] image` is not set: it has cargo.
const DEFAULT_IMAGE: &str = "rust:1";

#[derive(Serialize)]
struct Context {
    header: String,
    when: Vec<When>,
    matrix: IndexMap<String, Vec<String>>,
    /// Agent labels: with an `os` axis, each matrix instance asks for agents of its os.
    labels: IndexMap<String, String>,
    steps: Vec<Step>,
}

#[derive(Serialize)]
struct When {
    event: &'static str,
    branch: Vec<String>,
    reference: Option<String>,
}

#[derive(Serialize)]
struct Step {
    name: String,
    image: String,
    depends_on: Vec<String>,
    secrets: Vec<String>,
    commands: Vec<String>,
    /// Axes the job does not use: it runs only where they have their first value.
    only: IndexMap<String, String>,
}

pub(super) fn context(ci: &Ci, common: &Common) -> Value {
    let t = &ci.triggers;
    let mut when = Vec::new();
    if !t.push.is_empty() {
        when.push(When {
            event: "push",
            branch: t.push.clone(),
            reference: None,
        });
    }
    if t.pull_request {
        when.push(When {
            event: "pull_request",
            branch: Vec::new(),
            reference: None,
        });
    }
    for tag in &t.tags {
        when.push(When {
            event: "tag",
            branch: Vec::new(),
            reference: Some(format!("refs/tags/{tag}")),
        });
    }
    if !t.schedule.is_empty() {
        when.push(When {
            event: "cron",
            branch: Vec::new(),
            reference: None,
        });
    }
    if t.manual {
        when.push(When {
            event: "manual",
            branch: Vec::new(),
            reference: None,
        });
    }
    let secrets = all_secrets(ci);
    let image = ci.woodpecker.image.as_deref().unwrap_or(DEFAULT_IMAGE);
    let steps = common
        .order
        .iter()
        .map(|name| {
            let job = &ci.jobs[name];
            let mut commands = common.job_prelude(&secrets, &job.secrets);
            commands.push(common.run_command(name, job, |axis| {
                format!("{axis}=${{{}}}", matrix_env(axis))
            }));
            Step {
                name: name.clone(),
                image: expand_axes(image, ci, |a| format!("${{{}}}", matrix_env(a))),
                depends_on: job.needs.clone(),
                secrets: job.secrets.clone(),
                commands,
                only: ci
                    .matrix
                    .iter()
                    .filter(|(axis, _)| !job.matrix.contains(axis))
                    .map(|(axis, values)| (matrix_env(axis), values[0].clone()))
                    .collect(),
            }
        })
        .collect();
    Value::from_serialize(Context {
        header: common.header.clone(),
        when,
        matrix: ci
            .matrix
            .iter()
            .map(|(axis, values)| (matrix_env(axis), values.clone()))
            .collect(),
        labels: if ci.matrix.contains_key("os") {
            IndexMap::from([("os".to_string(), format!("${{{}}}", matrix_env("os")))])
        } else {
            IndexMap::new()
        },
        steps,
    })
}
