//! GitLab CI: one stage per depth of the job graph, `needs` for the exact order,
//! `parallel:matrix` for the matrix, `workflow:rules` for the triggers.

use super::install::{self, Method};
use super::{CI_CACHE_DIR, Common, all_secrets, axes, depth, expand_axes, matrix_env};
use crate::config::Ci;
use indexmap::IndexMap;
use minijinja::Value;
use serde::Serialize;

/// The matrix variable that carries the runner tag of an `os` value.
const RUNNER_TAG: &str = "PREFLIGHT_RUNNER_TAG";

/// Where the default install puts preflight: inside the project, so GitLab can cache it.
const INSTALL_ROOT: &str = ".preflight-ci";

#[derive(Serialize)]
struct Context {
    header: String,
    rules: Vec<Rule>,
    cancel_in_progress: bool,
    stages: Vec<String>,
    cache_dir: &'static str,
    jobs: Vec<Job>,
}

#[derive(Serialize)]
struct Rule {
    condition: String,
    never: bool,
}

#[derive(Serialize)]
struct Job {
    id: String,
    stage: String,
    needs: Vec<String>,
    tags: Vec<String>,
    image: Option<String>,
    /// `parallel:matrix` entries: variable → values.
    matrix: Vec<IndexMap<String, Vec<String>>>,
    timeout: Option<String>,
    bin_key: Option<String>,
    script: Vec<String>,
    caches: Vec<JobCache>,
    artifacts: Option<JobArtifacts>,
}

#[derive(Serialize)]
struct JobCache {
    key: Option<String>,
    key_files: Vec<String>,
    prefix: Option<String>,
    paths: Vec<String>,
}

#[derive(Serialize)]
struct JobArtifacts {
    when: &'static str,
    paths: Vec<String>,
    expire_in: Option<String>,
}

/// A GitLab regular expression literal matching a branch or tag glob (`*` = any run).
fn glob_regex(glob: &str) -> String {
    let mut re = String::from("/^");
    for c in glob.chars() {
        match c {
            '*' => re.push_str(".*"),
            c if ".+?()|[]{}^$/\\".contains(c) => {
                re.push('\\');
                re.push(c);
            }
            c => re.push(c),
        }
    }
    re.push_str("$/");
    re
}

fn stage(level: usize) -> String {
    format!("preflight-{}", level + 1)
}

pub(super) fn context(ci: &Ci, common: &Common) -> Value {
    let t = &ci.triggers;
    let mut rules = Vec::new();
    if t.pull_request {
        rules.push(Rule {
            condition: "$CI_PIPELINE_SOURCE == \"merge_request_event\"".into(),
            never: false,
        });
        // A branch with an open merge request runs once, as a merge request pipeline.
        rules.push(Rule {
            condition:
                "$CI_COMMIT_BRANCH && $CI_OPEN_MERGE_REQUESTS && $CI_PIPELINE_SOURCE == \"push\""
                    .into(),
            never: true,
        });
    }
    for branch in &t.push {
        rules.push(Rule {
            condition: format!(
                "$CI_PIPELINE_SOURCE == \"push\" && $CI_COMMIT_BRANCH =~ {}",
                glob_regex(branch)
            ),
            never: false,
        });
    }
    for tag in &t.tags {
        rules.push(Rule {
            condition: format!("$CI_COMMIT_TAG =~ {}", glob_regex(tag)),
            never: false,
        });
    }
    if !t.schedule.is_empty() {
        rules.push(Rule {
            condition: "$CI_PIPELINE_SOURCE == \"schedule\"".into(),
            never: false,
        });
    }
    if t.manual {
        rules.push(Rule {
            condition: "$CI_PIPELINE_SOURCE == \"web\"".into(),
            never: false,
        });
    }

    let levels = ci.jobs.keys().map(|n| depth(ci, n)).max().unwrap_or(0);
    let secrets = all_secrets(ci);
    let jobs = common
        .order
        .iter()
        .map(|name| {
            let job = &ci.jobs[name];
            let mut script: Vec<String> = secrets
                .iter()
                .filter(|s| !job.secrets.contains(s))
                .map(|s| format!("unset {s}"))
                .collect();
            let bin_key = match &common.method {
                Method::Custom(cmd) => {
                    script.push(Common::install_unless_present(cmd));
                    None
                }
                Method::Pypi | Method::Script => {
                    script.push(install::export_path());
                    script.extend(install::prebuilt(&common.method));
                    Some(format!("preflight-bin-{}", common.install_key))
                }
                Method::Cargo => {
                    script.push(format!(
                        "export PATH=\"$PATH:$CI_PROJECT_DIR/{INSTALL_ROOT}/bin\""
                    ));
                    script.push(format!(
                        "command -v preflight >/dev/null 2>&1 || {}",
                        Common::cargo_install(Some(INSTALL_ROOT))
                    ));
                    Some(format!("preflight-bin-{}", common.install_key))
                }
            };
            if let Some(tools) = &common.tools {
                script.push(tools.install.clone());
            }
            script.push(common.run_command(name, job, |axis| {
                format!("\"{axis}=${}\"", matrix_env(axis))
            }));
            let mut caches = Vec::new();
            if let Some(key) = &bin_key {
                caches.push(JobCache {
                    key: Some(key.clone()),
                    key_files: Vec::new(),
                    prefix: None,
                    paths: match common.method {
                        Method::Cargo => vec![format!("{INSTALL_ROOT}/bin")],
                        _ => vec![install::BIN_DIR.into(), install::TOOL_DIR.into()],
                    },
                });
            }
            // The tool store, keyed on the lock. GitLab has no variable for the runner's OS
            // and CPU that a cache key may hold (keys cannot contain `/`); the job's name
            // does, with its matrix values, and each job is sent to its runners by tags.
            // GitLab cannot leave a path out of a cache, so the step cache below holds the
            // store too; its folders are named by content, so the two never disagree.
            if let Some(tools) = &common.tools {
                caches.push(JobCache {
                    key: None,
                    key_files: vec![tools.lock.clone()],
                    prefix: Some("preflight-tools-$CI_JOB_NAME_SLUG".into()),
                    paths: vec![tools.store.clone()],
                });
            }
            caches.push(JobCache {
                key: Some("preflight-$CI_JOB_NAME_SLUG".into()),
                key_files: Vec::new(),
                prefix: None,
                paths: vec![CI_CACHE_DIR.into()],
            });
            if let Some(c) = job.cache.as_ref().or(ci.cache.as_ref()) {
                caches.push(if c.key_files.is_empty() {
                    JobCache {
                        key: Some(format!("{name}-$CI_JOB_NAME_SLUG")),
                        key_files: Vec::new(),
                        prefix: None,
                        paths: c.paths.clone(),
                    }
                } else {
                    JobCache {
                        key: None,
                        key_files: c.key_files.clone(),
                        prefix: Some(format!("{name}-$CI_JOB_NAME_SLUG")),
                        paths: c.paths.clone(),
                    }
                });
            }
            let os_axis = job.matrix.iter().any(|a| a == "os");
            let all: IndexMap<String, Vec<String>> = axes(ci, job)
                .into_iter()
                .map(|a| (a.env, a.values))
                .collect();
            // With `[ci.gitlab] os`, one matrix entry per os value carries its runner tag.
            let (matrix, tags) = if os_axis && !ci.gitlab.os.is_empty() {
                let entries = ci.matrix["os"]
                    .iter()
                    .map(|os| {
                        let mut entry = all.clone();
                        entry.insert(matrix_env("os"), vec![os.clone()]);
                        entry.insert(
                            RUNNER_TAG.into(),
                            vec![ci.gitlab.os.get(os).unwrap_or(os).clone()],
                        );
                        entry
                    })
                    .collect();
                (entries, vec![format!("${RUNNER_TAG}")])
            } else if os_axis {
                (vec![all], vec![format!("${}", matrix_env("os"))])
            } else if all.is_empty() {
                (Vec::new(), ci.gitlab.tags.clone())
            } else {
                (vec![all], ci.gitlab.tags.clone())
            };
            Job {
                id: name.clone(),
                stage: stage(depth(ci, name)),
                needs: job.needs.clone(),
                tags,
                image: ci.gitlab.image.as_ref().map(|i| {
                    expand_axes(i, ci, |a| {
                        if job.matrix.iter().any(|m| m == a) {
                            format!("${}", matrix_env(a))
                        } else {
                            ci.matrix[a][0].clone()
                        }
                    })
                }),
                matrix,
                timeout: job
                    .timeout
                    .map(|t| format!("{} minutes", t.as_secs().div_ceil(60))),
                bin_key,
                script,
                caches,
                artifacts: job.artifacts.as_ref().map(|a| JobArtifacts {
                    when: a.when.as_str(),
                    paths: a.paths.clone(),
                    expire_in: a.expire_days.map(|d| format!("{d} days")),
                }),
            }
        })
        .collect();
    Value::from_serialize(Context {
        header: common.header.clone(),
        rules,
        cancel_in_progress: ci.cancel_in_progress,
        stages: (0..=levels).map(stage).collect(),
        cache_dir: CI_CACHE_DIR,
        jobs,
    })
}

#[cfg(test)]
mod tests {
    use super::glob_regex;

    #[test]
    fn globs_become_anchored_regexes() {
        assert_eq!(glob_regex("main"), "/^main$/");
        assert_eq!(glob_regex("release/*"), "/^release\\/.*$/");
        assert_eq!(glob_regex("v1.*"), "/^v1\\..*$/");
    }
}
