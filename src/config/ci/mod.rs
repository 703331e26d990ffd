//! The `[ci]` table: how the hosted-CI files are generated from the steps.
//!
//! Every string that ends up in a generated file is checked here, with its place in the
//! file, so that the generators can trust what they get: names are plain identifiers,
//! matrix values use a small character set, and nothing carries a line break or a
//! `${{ }}` expression that a CI service would evaluate.
//!
//! Here: the typed model. Below it, in the order they depend on each other: `raw` (the
//! serde types), `checks` (text and name checks), `targets` (per-service tables), `jobs`
//! (`[ci.jobs]` and the job graph), `validate` (the whole table). They import the model
//! and `config`'s checker and helpers; nothing here imports the generators in `crate::ci`.

mod checks;
mod jobs;
mod raw;
mod targets;
mod validate;

pub use jobs::needed_jobs;
pub(super) use raw::RawCi;
pub(super) use validate::validate;

use indexmap::IndexMap;
use std::time::Duration;

/// The hosted-CI services `[ci] targets` may name.
pub const CI_TARGETS: [&str; 5] = ["github", "gitlab", "forgejo", "woodpecker", "buildkite"];

/// The name of the one CI job that runs every step when `[ci.jobs]` declares none.
pub const DEFAULT_JOB: &str = "preflight";

/// The `[ci]` table, validated.
#[derive(Debug, Clone, Default)]
pub struct Ci {
    pub targets: Vec<String>,
    /// The shell command that installs preflight in CI; `None`: `cargo install` of this version.
    pub install: Option<String>,
    /// Targets whose generated file may differ from what `preflight.toml` gives.
    pub allow_dirty: Vec<String>,
    /// Cancel a running pipeline when a newer commit arrives on the same ref.
    pub cancel_in_progress: bool,
    /// Token permissions for the whole workflow (GitHub, Forgejo).
    pub permissions: IndexMap<String, String>,
    pub triggers: Triggers,
    /// Matrix axes and their values, in the order written.
    pub matrix: IndexMap<String, Vec<String>>,
    /// Paths cached for every job that has no `cache` of its own.
    pub cache: Option<Cache>,
    /// The CI jobs; when `[ci.jobs]` is empty, one job named `preflight` with every step.
    pub jobs: IndexMap<String, CiJob>,
    pub github: ActionsSettings,
    pub forgejo: ActionsSettings,
    pub gitlab: GitlabSettings,
    pub woodpecker: WoodpeckerSettings,
    pub buildkite: BuildkiteSettings,
}

#[derive(Debug, Clone, Default)]
pub struct Triggers {
    /// Branches whose pushes run CI (globs allowed).
    pub push: Vec<String>,
    pub pull_request: bool,
    /// Tag patterns whose pushes run CI.
    pub tags: Vec<String>,
    /// Cron lines (five fields, UTC).
    pub schedule: Vec<String>,
    /// A button to run CI by hand.
    pub manual: bool,
}

#[derive(Debug, Clone)]
pub struct CiJob {
    pub steps: Vec<String>,
    pub needs: Vec<String>,
    /// The matrix axes this job runs over (all of `[ci.matrix]` unless it says).
    pub matrix: Vec<String>,
    pub timeout: Option<Duration>,
    /// Secrets exported to this job only, as environment variables of the same name.
    pub secrets: Vec<String>,
    /// Permissions this job adds to the workflow's.
    pub permissions: IndexMap<String, String>,
    pub artifacts: Option<Artifacts>,
    pub cache: Option<Cache>,
}

#[derive(Debug, Clone)]
pub struct Cache {
    pub paths: Vec<String>,
    /// Files whose contents key the cache.
    pub key_files: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Artifacts {
    pub paths: Vec<String>,
    pub when: ArtifactsWhen,
    /// How many days the service keeps them.
    pub expire_days: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactsWhen {
    OnSuccess,
    OnFailure,
    Always,
}

impl ArtifactsWhen {
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactsWhen::OnSuccess => "on_success",
            ArtifactsWhen::OnFailure => "on_failure",
            ArtifactsWhen::Always => "always",
        }
    }
}

/// An action pinned to a commit, with the release it is (shown as a comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub sha: String,
    pub version: Option<String>,
}

/// GitHub Actions and Forgejo Actions.
#[derive(Debug, Clone, Default)]
pub struct ActionsSettings {
    /// The runner label of jobs without an `os` axis.
    pub runs_on: Option<String>,
    /// `owner/repo` → pinned commit, overriding preflight's defaults.
    pub pins: IndexMap<String, Pin>,
    /// Runner label for each value of the `os` axis that needs another name here.
    pub os: IndexMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct GitlabSettings {
    /// The image of every job; none: the runner's default (or a shell runner).
    pub image: Option<String>,
    /// Runner tags of jobs without an `os` axis.
    pub tags: Vec<String>,
    /// Runner tag for each value of the `os` axis that needs another name here.
    pub os: IndexMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct WoodpeckerSettings {
    pub image: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct BuildkiteSettings {
    /// Agent tags of jobs without an `os` axis.
    pub agents: IndexMap<String, String>,
}
