//! One CI job of `[ci.jobs]` as a local run: its steps, and the environment its matrix
//! values give (`run --ci --job NAME --matrix AXIS=VALUE`).

use crate::config::{self, Config};
use crate::error::{Error, Result};

/// The steps of a CI job, and the environment its `--matrix` values give.
pub struct JobRun {
    pub steps: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// What `run --ci --job NAME --matrix AXIS=VALUE` runs.
pub fn job_steps(config: &Config, name: &str, matrix: &[String]) -> Result<JobRun> {
    let job = config.ci.jobs.get(name).ok_or_else(|| {
        let hint = match config::did_you_mean(name, config.ci.jobs.keys().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!(
                "the CI jobs are: {}",
                config
                    .ci
                    .jobs
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Error::Usage(format!(
            "no CI job named `{name}` in {}",
            config::display_path(&config.path)
        ))
        .hint(hint)
    })?;
    let mut env = Vec::new();
    for pair in matrix {
        let Some((axis, value)) = pair.split_once('=') else {
            return Err(Error::Usage(format!(
                "--matrix takes AXIS=VALUE, not `{pair}`"
            )));
        };
        if !job.matrix.iter().any(|a| a == axis) {
            return Err(Error::Usage(format!(
                "CI job `{name}` has no matrix axis `{axis}`{}",
                if job.matrix.is_empty() {
                    String::new()
                } else {
                    format!(" (its axes: {})", job.matrix.join(", "))
                }
            )));
        }
        if !config.ci.matrix[axis].iter().any(|v| v == value) {
            return Err(Error::Usage(format!(
                "`{value}` is not a value of matrix axis `{axis}` (its values: {})",
                config.ci.matrix[axis].join(", ")
            )));
        }
        env.push((super::matrix_env(axis), value.to_string()));
    }
    Ok(JobRun {
        steps: job.steps.clone(),
        env,
    })
}
