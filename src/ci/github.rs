//! GitHub Actions, and Forgejo Actions (the same dialect, with a few differences: runner
//! labels instead of GitHub's images, no `hashFiles`, and Forgejo's own artifact action).

use super::install::{self, BIN_DIR, Method, TOOL_DIR};
use super::{Axis, CI_CACHE_DIR, Common, axes};
use crate::config::{ActionsSettings, ArtifactsWhen, Ci, Pin};
use indexmap::IndexMap;
use minijinja::Value;
use serde::Serialize;

/// Actions the workflow uses, pinned to commits unless `[ci.github.pins]` or
/// `[ci.forgejo.pins]` says otherwise.
const CHECKOUT: &str = "actions/checkout";
const CACHE: &str = "actions/cache";
const UPLOAD: &str = "actions/upload-artifact";

/// Every action the workflows use.
pub const ACTIONS: [&str; 3] = [CHECKOUT, CACHE, UPLOAD];

fn default_pin(action: &str, forgejo: bool) -> Pin {
    let (sha, version) = match (action, forgejo) {
        // Forgejo runners keep the Node 20 releases: v5 and later need Node 24.
        (CHECKOUT, true) => ("11bd71901bbe5b1630ceea73d27597364c9af683", "v4.2.2"),
        (CACHE, true) => ("5a3ec84eff668545956fd18022155c47e93e2684", "v4.2.3"),
        // Forgejo's artifact store speaks the protocol of upload-artifact v3.
        (UPLOAD, true) => ("a8a3f3ad30e3422c9c7b888a15615d19a852ae32", "v3.1.3"),
        (CHECKOUT, false) => ("8e8c483db84b4bee98b60c0593521ed34d9990e8", "v6.0.1"),
        (CACHE, false) => ("9255dc7a253b0ccc959486e2bca901246202afeb", "v5.0.1"),
        (UPLOAD, false) => ("b7c566a772e6b6bfb58ed0dc250532a479d7789f", "v6.0.0"),
        _ => unreachable!("only known actions have default pins"),
    };
    Pin {
        sha: sha.into(),
        version: Some(version.into()),
    }
}

/// The pin of `action`: `[ci.github.pins]` (or forgejo's), else preflight's default.
pub fn pin(settings: &ActionsSettings, action: &str, forgejo: bool) -> Pin {
    settings
        .pins
        .get(action)
        .cloned()
        .unwrap_or_else(|| default_pin(action, forgejo))
}

/// `owner/repo@sha # version`, as written after `uses:`.
fn uses(settings: &ActionsSettings, action: &str, forgejo: bool) -> String {
    let pin = pin(settings, action, forgejo);
    match pin.version {
        Some(v) => format!("{action}@{} # {v}", pin.sha),
        None => format!("{action}@{}", pin.sha),
    }
}

#[derive(Serialize)]
struct Context {
    header: String,
    forgejo: bool,
    push: Vec<String>,
    tags: Vec<String>,
    pull_request: bool,
    schedule: Vec<String>,
    manual: bool,
    permissions: IndexMap<String, String>,
    cancel_in_progress: bool,
    /// Tags trigger the workflow: cache steps are skipped on tag builds (releases start clean).
    tag_builds: bool,
    cache_dir: &'static str,
    /// What the step cache holds: the cache folder, less the tool store (cached apart).
    cache_paths: String,
    checkout: String,
    cache_action: String,
    upload: String,
    jobs: Vec<Job>,
}

#[derive(Serialize)]
struct Job {
    id: String,
    needs: Vec<String>,
    runs_on: String,
    timeout_minutes: Option<u64>,
    /// Set when the job widens the workflow's permissions: the whole set it gets.
    permissions: Option<IndexMap<String, String>>,
    axes: Vec<Axis>,
    /// `os` value → runner label, added to the matrix as `runner` (`[ci.github] os`).
    runners: Vec<Runner>,
    /// `-${{ matrix.a }}-${{ matrix.b }}`: makes cache keys and artifact names unique.
    matrix_suffix: String,
    /// The key of the default install's cached binary; `None` for a custom install.
    bin_key: Option<String>,
    /// What that cache holds.
    bin_paths: Vec<String>,
    install: String,
    run: String,
    /// Secret names exported to the run step.
    secrets: Vec<String>,
    cache: Option<JobCache>,
    artifacts: Option<JobArtifacts>,
    tools: Option<JobTools>,
}

/// The managed tools: the store restored from the cache, then installed from the lock.
#[derive(Serialize)]
struct JobTools {
    /// Forgejo: a shell step computes the lock's digest (`hashFiles` is GitHub's).
    digest_script: Option<String>,
    key: String,
    path: String,
    install: String,
}

#[derive(Serialize)]
struct Runner {
    os: String,
    label: String,
}

#[derive(Serialize)]
struct JobCache {
    paths: Vec<String>,
    /// Forgejo: a shell step computes the digest (`hashFiles` is GitHub's).
    digest_script: Option<String>,
    key: String,
    restore_key: String,
}

#[derive(Serialize)]
struct JobArtifacts {
    condition: &'static str,
    name: String,
    paths: Vec<String>,
    retention_days: Option<u64>,
}

/// A string inside a GitHub expression's single quotes.
fn expr_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub(super) fn context(ci: &Ci, common: &Common, forgejo: bool) -> Value {
    let settings = if forgejo { &ci.forgejo } else { &ci.github };
    let default_runner = if forgejo { "docker" } else { "ubuntu-latest" };
    let jobs = common
        .order
        .iter()
        .map(|name| {
            let job = &ci.jobs[name];
            let axes = axes(ci, job);
            let matrix_suffix: String = axes
                .iter()
                .map(|a| format!("-${{{{ matrix.{} }}}}", a.name))
                .collect();
            let os_axis = job.matrix.iter().any(|a| a == "os");
            let runners: Vec<Runner> = if os_axis && !settings.os.is_empty() {
                ci.matrix["os"]
                    .iter()
                    .map(|os| Runner {
                        os: os.clone(),
                        label: settings.os.get(os).unwrap_or(os).clone(),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let runs_on = if !runners.is_empty() {
                "${{ matrix.runner }}".to_string()
            } else if os_axis {
                "${{ matrix.os }}".to_string()
            } else {
                settings
                    .runs_on
                    .clone()
                    .unwrap_or_else(|| default_runner.into())
            };
            let permissions = (!job.permissions.is_empty()).then(|| {
                let mut all = ci.permissions.clone();
                all.extend(job.permissions.clone());
                all
            });
            let cache = job.cache.as_ref().or(ci.cache.as_ref()).map(|c| {
                let prefix = format!("{name}-${{{{ runner.os }}}}{matrix_suffix}-");
                if c.key_files.is_empty() {
                    return JobCache {
                        paths: c.paths.clone(),
                        digest_script: None,
                        key: format!("{prefix}${{{{ github.sha }}}}"),
                        restore_key: prefix,
                    };
                }
                if forgejo {
                    let files: Vec<String> =
                        c.key_files.iter().map(|f| crate::shell::quote_word(f)).collect();
                    JobCache {
                        paths: c.paths.clone(),
                        digest_script: Some(format!(
                            "echo \"digest=$(cat -- {} | sha256sum | cut -c1-32)\" >> \"$GITHUB_OUTPUT\"",
                            files.join(" ")
                        )),
                        key: format!("{prefix}${{{{ steps.cache-digest.outputs.digest }}}}"),
                        restore_key: prefix,
                    }
                } else {
                    let files: Vec<String> = c.key_files.iter().map(|f| expr_string(f)).collect();
                    JobCache {
                        paths: c.paths.clone(),
                        digest_script: None,
                        key: format!("{prefix}${{{{ hashFiles({}) }}}}", files.join(", ")),
                        restore_key: prefix,
                    }
                }
            });
            let artifacts = job.artifacts.as_ref().map(|a| JobArtifacts {
                condition: match a.when {
                    ArtifactsWhen::OnSuccess => "success()",
                    ArtifactsWhen::OnFailure => "failure()",
                    ArtifactsWhen::Always => "always()",
                },
                name: format!("{name}{matrix_suffix}"),
                paths: a.paths.clone(),
                retention_days: a.expire_days,
            });
            let (install, bin_paths) = match &common.method {
                Method::Custom(cmd) => (Common::install_unless_present(cmd), Vec::new()),
                Method::Cargo => (
                    format!(
                        "command -v preflight >/dev/null 2>&1 || {}",
                        Common::cargo_install(None)
                    ),
                    vec!["~/.cargo/bin/preflight".to_string()],
                ),
                prebuilt => (
                    format!(
                        "{}\n{}\necho \"$PWD/{BIN_DIR}\" >> \"$GITHUB_PATH\"",
                        install::export_path(),
                        install::prebuilt(prebuilt).unwrap_or_default()
                    ),
                    vec![BIN_DIR.to_string(), TOOL_DIR.to_string()],
                ),
            };
            let tools = common.tools.as_ref().map(|t| {
                let prefix = "preflight-tools-${{ runner.os }}-${{ runner.arch }}-";
                if forgejo {
                    JobTools {
                        // A missing lock gives an empty digest here; the install then
                        // says what is wrong.
                        digest_script: Some(format!(
                            "echo \"digest=$(cat -- {} 2>/dev/null | sha256sum | cut -c1-32)\" >> \"$GITHUB_OUTPUT\"",
                            crate::shell::quote_word(&t.lock)
                        )),
                        key: format!("{prefix}${{{{ steps.tools-digest.outputs.digest }}}}"),
                        path: t.store.clone(),
                        install: t.install.clone(),
                    }
                } else {
                    JobTools {
                        digest_script: None,
                        key: format!("{prefix}${{{{ hashFiles({}) }}}}", expr_string(&t.lock)),
                        path: t.store.clone(),
                        install: t.install.clone(),
                    }
                }
            });
            Job {
                id: name.clone(),
                needs: job.needs.clone(),
                runs_on,
                timeout_minutes: job.timeout.map(|t| t.as_secs().div_ceil(60)),
                permissions,
                run: common.run_command(name, job, |axis| {
                    format!("\"{axis}=${}\"", super::matrix_env(axis))
                }),
                axes,
                runners,
                matrix_suffix,
                bin_key: (!bin_paths.is_empty())
                    .then(|| format!(
                        "preflight-bin-${{{{ runner.os }}}}-${{{{ runner.arch }}}}-{}",
                        common.install_key
                    )),
                bin_paths,
                install,
                secrets: job.secrets.clone(),
                cache,
                artifacts,
                tools,
            }
        })
        .collect();
    Value::from_serialize(Context {
        header: common.header.clone(),
        forgejo,
        push: ci.triggers.push.clone(),
        tags: ci.triggers.tags.clone(),
        pull_request: ci.triggers.pull_request,
        schedule: ci.triggers.schedule.clone(),
        manual: ci.triggers.manual,
        permissions: ci.permissions.clone(),
        cancel_in_progress: ci.cancel_in_progress,
        tag_builds: !ci.triggers.tags.is_empty(),
        cache_dir: CI_CACHE_DIR,
        cache_paths: match &common.tools {
            Some(tools) => format!("{CI_CACHE_DIR}\n!{}", tools.store),
            None => CI_CACHE_DIR.to_string(),
        },
        checkout: uses(settings, CHECKOUT, forgejo),
        cache_action: uses(settings, CACHE, forgejo),
        upload: uses(settings, UPLOAD, forgejo),
        jobs,
    })
}
