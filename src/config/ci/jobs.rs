//! `[ci.jobs]`: each job checked against the steps, the matrix and the other jobs, and the
//! job graph (cycles, and `needs` of steps met by the jobs before).

use super::checks::is_secret_name;
use super::raw::RawCiJob;
use super::{CiJob, DEFAULT_JOB};
use crate::config::Step;
use crate::config::checker::{Checker, is_step_name, strings};
use crate::config::{did_you_mean, parse_duration};
use indexmap::IndexMap;
use std::ops::Range;
use toml::Spanned;

/// The validated jobs; the one default job, running every step, when none is declared.
pub(super) fn validate(
    check: &mut Checker,
    raw_jobs: &IndexMap<Spanned<String>, RawCiJob>,
    steps: &IndexMap<String, Step>,
    matrix: &IndexMap<String, Vec<String>>,
    gitlab_target: bool,
) -> IndexMap<String, CiJob> {
    // Jobs: names first, so that `needs` can refer forward.
    let job_names: Vec<String> = raw_jobs.keys().map(|k| k.get_ref().clone()).collect();
    let mut jobs = IndexMap::new();
    let mut step_spans: IndexMap<String, Vec<(String, Range<usize>)>> = IndexMap::new();
    for (name, job) in raw_jobs {
        let job_name = name.get_ref().clone();
        if !is_step_name(&job_name) {
            check
                .error(name.span(), format!("invalid CI job name `{job_name}`"))
                .label = "use lowercase letters, digits, `-` and `_`".into();
        }
        if job.steps.get_ref().is_empty() {
            check
                .error(
                    job.steps.span(),
                    format!("CI job `{job_name}` has no steps"),
                )
                .label = "name the steps this job runs".into();
        }
        check.step_refs_in(job.steps.get_ref(), steps, |n| {
            format!("CI job `{job_name}` runs `{n}`, which is not a step")
        });
        for n in &job.needs {
            if !job_names.contains(n.get_ref()) {
                let d = check.error(
                    n.span(),
                    format!(
                        "CI job `{job_name}` needs `{}`, which is not a CI job",
                        n.get_ref()
                    ),
                );
                d.label = match did_you_mean(n.get_ref(), job_names.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "no `[ci.jobs]` entry has this name".into(),
                };
            } else if n.get_ref() == &job_name {
                check
                    .error(n.span(), format!("CI job `{job_name}` needs itself"))
                    .label = "remove this".into();
            }
        }
        let job_matrix = match &job.matrix {
            None => matrix.keys().cloned().collect(),
            Some(axes) => {
                for a in axes {
                    if !matrix.contains_key(a.get_ref()) {
                        let d = check.error(
                            a.span(),
                            format!("CI job `{job_name}` uses matrix axis `{}`, which `[ci.matrix]` does not define", a.get_ref()),
                        );
                        d.label = match did_you_mean(a.get_ref(), matrix.keys().map(String::as_str))
                        {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => "no such axis".into(),
                        };
                    }
                }
                strings(axes)
            }
        };
        let timeout = job
            .timeout
            .as_ref()
            .and_then(|t| match parse_duration(t.get_ref()) {
                Ok(d) if d.as_secs() >= 60 => Some(d),
                Ok(_) => {
                    check
                        .error(
                            t.span(),
                            format!("the timeout of CI job `{job_name}` is under a minute"),
                        )
                        .label = "CI services count job timeouts in minutes".into();
                    None
                }
                Err(reason) => {
                    check
                        .error(t.span(), format!("invalid timeout `{}`", t.get_ref()))
                        .label = reason;
                    None
                }
            });
        let mut secrets = Vec::new();
        for s in &job.secrets {
            if !is_secret_name(s.get_ref()) {
                let d = check.error(s.span(), format!("invalid secret name `{}`", s.get_ref()));
                d.label = "use uppercase letters, digits and `_`, not starting with GITHUB_".into();
                d.help = Some(
                    "the secret reaches the job's steps as an environment variable of this name"
                        .into(),
                );
            } else if !secrets.contains(s.get_ref()) {
                secrets.push(s.get_ref().clone());
            }
        }
        let permissions = check.permissions(job.permissions.as_ref());
        let artifacts = check.artifacts(job.artifacts.as_ref());
        let job_cache = check.cache(job.cache.as_ref(), gitlab_target);
        step_spans.insert(
            job_name.clone(),
            job.steps
                .get_ref()
                .iter()
                .map(|s| (s.get_ref().clone(), s.span()))
                .collect(),
        );
        jobs.insert(
            job_name,
            CiJob {
                steps: strings(job.steps.get_ref()),
                needs: strings(&job.needs),
                matrix: job_matrix,
                timeout,
                secrets,
                permissions,
                artifacts,
                cache: job_cache,
            },
        );
    }

    if jobs.is_empty() {
        jobs.insert(
            DEFAULT_JOB.to_string(),
            CiJob {
                steps: steps.keys().cloned().collect(),
                needs: Vec::new(),
                matrix: matrix.keys().cloned().collect(),
                timeout: None,
                secrets: Vec::new(),
                permissions: IndexMap::new(),
                artifacts: None,
                cache: None,
            },
        );
    } else if let Some(cycle) = job_cycle(&jobs) {
        let first = raw_jobs
            .keys()
            .find(|k| k.get_ref() == &cycle[0])
            .map(Spanned::span)
            .unwrap_or(0..0);
        check
            .error(
                first,
                format!("CI jobs form a cycle: {}", cycle.join(" → ")),
            )
            .label = "remove one of these `needs`".into();
    } else {
        check_needs_agree(check, &jobs, steps, &step_spans);
    }
    jobs
}

/// The jobs `job` needs, directly or through others.
pub fn needed_jobs(jobs: &IndexMap<String, CiJob>, job: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut stack: Vec<&str> = jobs
        .get(job)
        .map(|j| j.needs.iter().map(String::as_str).collect())
        .unwrap_or_default();
    while let Some(n) = stack.pop() {
        if found.iter().any(|f| f == n) {
            continue;
        }
        found.push(n.to_string());
        if let Some(j) = jobs.get(n) {
            stack.extend(j.needs.iter().map(String::as_str));
        }
    }
    found
}

/// A step's `needs` must be met inside its CI job or by a job that job needs: CI runs a
/// job's steps only, trusting that the jobs before it ran the rest.
fn check_needs_agree(
    check: &mut Checker,
    jobs: &IndexMap<String, CiJob>,
    steps: &IndexMap<String, Step>,
    step_spans: &IndexMap<String, Vec<(String, Range<usize>)>>,
) {
    for (name, job) in jobs {
        let before = needed_jobs(jobs, name);
        for (step_name, span) in &step_spans[name] {
            let Some(step) = steps.get(step_name) else {
                continue;
            };
            for need in &step.needs {
                if job.steps.contains(need) || before.iter().any(|b| jobs[b].steps.contains(need)) {
                    continue;
                }
                let owners: Vec<&String> = jobs
                    .iter()
                    .filter(|(_, j)| j.steps.contains(need))
                    .map(|(n, _)| n)
                    .collect();
                let d = check.error(
                    span.clone(),
                    format!("step `{step_name}` in CI job `{name}` needs step `{need}`, which this job does not run"),
                );
                match owners.first() {
                    Some(owner) => {
                        d.label = format!("`{need}` runs in CI job `{owner}`");
                        d.help = Some(format!(
                            "add `needs = [\"{owner}\"]` to `[ci.jobs.{name}]`, or add `{need}` to its steps"
                        ));
                    }
                    None => {
                        d.label = format!("no CI job runs `{need}`");
                        d.help = Some(format!(
                            "add `{need}` to the steps of `[ci.jobs.{name}]` or of a job it needs"
                        ));
                    }
                }
            }
        }
    }
}

fn job_cycle(jobs: &IndexMap<String, CiJob>) -> Option<Vec<String>> {
    for start in jobs.keys() {
        // Depth-first from each job, looking for a path back to it.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = Vec::new();
        while let Some((at, path)) = stack.pop() {
            for n in &jobs.get(&at).map(|j| j.needs.clone()).unwrap_or_default() {
                if n == start {
                    let mut cycle = path.clone();
                    cycle.push(n.clone());
                    return Some(cycle);
                }
                if !seen.contains(n) {
                    seen.push(n.clone());
                    let mut p = path.clone();
                    p.push(n.clone());
                    stack.push((n.clone(), p));
                }
            }
        }
    }
    None
}
