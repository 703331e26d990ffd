//! The `[ci]` table: how the hosted-CI files are generated from the steps.
//!
//! Every string that ends up in a generated file is checked here, with its place in the
//! file, so that the generators can trust what they get: names are plain identifiers,
//! matrix values use a small character set, and nothing carries a line break or a
//! `${{ }}` expression that a CI service would evaluate.

use super::raw::{Checker, is_step_name, strings};
use super::{Step, did_you_mean, parse_duration, parse_duration_up_to};

/// How long CI artifacts may be kept: GitLab takes years (and "never" expiring).
const MAX_ARTIFACT_AGE: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);
use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::fmt;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

/// The hosted-CI services `[ci] targets` may name.
pub const CI_TARGETS: [&str; 5] = ["github", "gitlab", "forgejo", "woodpecker", "buildkite"];

/// The name of the one CI job that runs every step when `[ci.jobs]` declares none.
pub const DEFAULT_JOB: &str = "preflight";

/// GitHub token scopes that `permissions` may name.
const PERMISSION_SCOPES: [&str; 16] = [
    "actions",
    "attestations",
    "checks",
    "contents",
    "deployments",
    "discussions",
    "id-token",
    "issues",
    "models",
    "packages",
    "pages",
    "pull-requests",
    "repository-projects",
    "security-events",
    "statuses",
    "artifact-metadata",
];

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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCi {
    #[serde(default)]
    targets: Vec<Spanned<String>>,
    install: Option<Spanned<String>>,
    allow_dirty: Option<Spanned<AllowDirty>>,
    cancel_in_progress: Option<bool>,
    permissions: Option<Spanned<IndexMap<Spanned<String>, Spanned<String>>>>,
    #[serde(default)]
    triggers: Option<Spanned<RawTriggers>>,
    #[serde(default)]
    matrix: IndexMap<Spanned<String>, Spanned<Vec<Spanned<String>>>>,
    cache: Option<Spanned<RawCache>>,
    #[serde(default)]
    jobs: IndexMap<Spanned<String>, RawCiJob>,
    #[serde(default)]
    github: RawActions,
    #[serde(default)]
    forgejo: RawActions,
    #[serde(default)]
    gitlab: RawGitlab,
    #[serde(default)]
    woodpecker: RawWoodpecker,
    #[serde(default)]
    buildkite: RawBuildkite,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTriggers {
    #[serde(default)]
    push: Vec<Spanned<String>>,
    #[serde(default)]
    pull_request: bool,
    #[serde(default)]
    tags: Vec<Spanned<String>>,
    #[serde(default)]
    schedule: Vec<Spanned<String>>,
    #[serde(default)]
    manual: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCiJob {
    steps: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    needs: Vec<Spanned<String>>,
    matrix: Option<Vec<Spanned<String>>>,
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    secrets: Vec<Spanned<String>>,
    permissions: Option<Spanned<IndexMap<Spanned<String>, Spanned<String>>>>,
    artifacts: Option<Spanned<RawArtifacts>>,
    cache: Option<Spanned<RawCache>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    paths: Vec<Spanned<String>>,
    #[serde(default)]
    key_files: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArtifacts {
    paths: Vec<Spanned<String>>,
    when: Option<Spanned<String>>,
    expire: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawActions {
    runs_on: Option<Spanned<String>>,
    #[serde(default)]
    pins: IndexMap<Spanned<String>, Spanned<RawPin>>,
    #[serde(default)]
    os: IndexMap<Spanned<String>, Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGitlab {
    image: Option<Spanned<String>>,
    #[serde(default)]
    tags: Vec<Spanned<String>>,
    #[serde(default)]
    os: IndexMap<Spanned<String>, Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWoodpecker {
    image: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBuildkite {
    #[serde(default)]
    agents: IndexMap<Spanned<String>, Spanned<String>>,
}

/// `allow_dirty = true` or `allow_dirty = ["github", ...]`.
enum AllowDirty {
    All(bool),
    Targets(Vec<String>),
}

impl<'de> Deserialize<'de> for AllowDirty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AllowDirty;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false, or a list of CI targets")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<AllowDirty, E> {
                Ok(AllowDirty::All(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AllowDirty, A::Error> {
                let mut targets = Vec::new();
                while let Some(t) = seq.next_element::<String>()? {
                    targets.push(t);
                }
                Ok(AllowDirty::Targets(targets))
            }
        }
        d.deserialize_any(V)
    }
}

/// `"<sha>"` or `{ sha = "<sha>", version = "v4.2.2" }`.
struct RawPin {
    sha: String,
    version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPinTable {
    sha: String,
    version: Option<String>,
}

impl<'de> Deserialize<'de> for RawPin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawPin;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a commit SHA, or a table { sha = \"...\", version = \"...\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPin, E> {
                Ok(RawPin {
                    sha: v.to_string(),
                    version: None,
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawPin, A::Error> {
                let t = RawPinTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawPin {
                    sha: t.sha,
                    version: t.version,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A name that is safe as a YAML key, a job id on every service and part of a file name.
fn is_axis_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Matrix values appear in runner labels, job names, artifact names, cache keys and
/// command lines: a small character set that is safe in all of them.
fn is_matrix_value(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
}

/// One part of `owner/repo`.
fn is_name_part(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn is_secret_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        // GitHub's own token is the one GITHUB_ name a job may ask for (a release upload).
        && (!name.starts_with("GITHUB_") || name == "GITHUB_TOKEN")
}

impl Checker<'_> {
    /// A free-form string that goes into a generated file: one line, no expression syntax.
    fn ci_text(&mut self, s: &Spanned<String>, what: &str) -> bool {
        let text = s.get_ref();
        if text.trim().is_empty() {
            self.error(s.span(), format!("{what} is empty")).label = "give a value".into();
            return false;
        }
        if text.chars().any(char::is_control) {
            self.error(s.span(), format!("{what} contains a control character"))
                .label = "line breaks and tabs cannot go into a CI file here".into();
            return false;
        }
        if text.contains("${{") {
            let d = self.error(s.span(), format!("{what} contains `${{{{`"));
            d.label = "GitHub and Forgejo would evaluate this as an expression".into();
            d.help = Some("preflight writes the expressions it needs itself".into());
            return false;
        }
        true
    }

    /// Branch and tag patterns: git ref names (git-check-ref-format) with `*` globs.
    fn ref_patterns(&mut self, list: &[Spanned<String>], what: &str) -> Vec<String> {
        let mut out = Vec::new();
        for s in list {
            if !self.ci_text(s, what) {
                continue;
            }
            let text = s.get_ref();
            let bad = text
                .chars()
                .find(|c| matches!(c, ' ' | '~' | '^' | ':' | '?' | '[' | '\\'));
            if bad.is_some() || text.contains("..") || text.contains("@{") {
                let d = self.error(s.span(), format!("`{text}` is not a valid {what}"));
                d.label = match bad {
                    Some(c) => format!("git ref names cannot contain {c:?}"),
                    None => "git ref names cannot contain `..` or `@{`".into(),
                };
                d.help = Some("use `*` to match any run of characters".into());
                continue;
            }
            out.push(text.clone());
        }
        out
    }

    fn permissions(
        &mut self,
        raw: Option<&Spanned<IndexMap<Spanned<String>, Spanned<String>>>>,
    ) -> IndexMap<String, String> {
        let mut out = IndexMap::new();
        let Some(raw) = raw else { return out };
        for (scope, level) in raw.get_ref() {
            if !PERMISSION_SCOPES.contains(&scope.get_ref().as_str()) {
                let d = self.error(
                    scope.span(),
                    format!("unknown permission `{}`", scope.get_ref()),
                );
                d.label = match did_you_mean(scope.get_ref(), PERMISSION_SCOPES) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "not a GitHub token permission".into(),
                };
                continue;
            }
            if !["read", "write", "none"].contains(&level.get_ref().as_str()) {
                self.error(
                    level.span(),
                    format!(
                        "invalid level `{}` for permission `{}`",
                        level.get_ref(),
                        scope.get_ref()
                    ),
                )
                .label = "one of: read, write, none".into();
                continue;
            }
            out.insert(scope.get_ref().clone(), level.get_ref().clone());
        }
        out
    }

    fn paths(&mut self, list: &[Spanned<String>], what: &str) -> Vec<String> {
        let mut out = Vec::new();
        for p in list {
            if !self.ci_text(p, what) {
                continue;
            }
            if p.get_ref().split('/').any(|c| c == "..") {
                self.error(p.span(), format!("{what} leaves the repository"))
                    .label = "`..` is not allowed here".into();
                continue;
            }
            out.push(p.get_ref().clone());
        }
        out
    }

    fn cache(&mut self, raw: Option<&Spanned<RawCache>>, gitlab: bool) -> Option<Cache> {
        let raw = raw?;
        let c = raw.get_ref();
        if c.paths.is_empty() {
            self.error(raw.span(), "`cache` has no `paths`").label =
                "list the folders to keep between runs".into();
        }
        let paths = self.paths(&c.paths, "a cache path");
        if gitlab {
            for p in &c.paths {
                let text = p.get_ref();
                if text.starts_with('/') || text.starts_with('~') || text.starts_with('$') {
                    let d = self.error(p.span(), "GitLab caches only paths inside the project");
                    d.label = "make it relative to the repository root".into();
                    d.help = Some(
                        "for tool folders such as ~/.cargo, point the tool's home into the \
                         repository (e.g. CARGO_HOME in [env]) and cache that"
                            .into(),
                    );
                }
            }
        }
        if gitlab && c.key_files.len() > 2 {
            self.error(
                c.key_files[2].span(),
                "GitLab keys a cache on at most two files",
            )
            .label = "GitLab's `cache:key:files` takes one or two files".into();
        }
        let key_files = self.paths(&c.key_files, "a cache key file");
        Some(Cache { paths, key_files })
    }

    fn artifacts(&mut self, raw: Option<&Spanned<RawArtifacts>>) -> Option<Artifacts> {
        let raw = raw?;
        let a = raw.get_ref();
        if a.paths.is_empty() {
            self.error(raw.span(), "`artifacts` has no `paths`").label =
                "list the files or folders to keep".into();
        }
        let paths = self.paths(&a.paths, "an artifact path");
        let when = match a.when.as_ref() {
            None => ArtifactsWhen::OnFailure,
            Some(w) => match w.get_ref().as_str() {
                "on_success" => ArtifactsWhen::OnSuccess,
                "on_failure" => ArtifactsWhen::OnFailure,
                "always" => ArtifactsWhen::Always,
                other => {
                    let options = ["on_success", "on_failure", "always"];
                    self.error(
                        w.span(),
                        format!("invalid `when` = `{other}` for artifacts"),
                    )
                    .label = match did_you_mean(other, options) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "one of: on_success, on_failure, always".into(),
                    };
                    ArtifactsWhen::OnFailure
                }
            },
        };
        let expire_days = a.expire.as_ref().and_then(|e| {
            match parse_duration_up_to(e.get_ref(), MAX_ARTIFACT_AGE, "a century") {
                Ok(d) if d.as_secs() >= 86_400 => Some(d.as_secs().div_ceil(86_400)),
                Ok(_) => {
                    self.error(e.span(), "artifacts are kept for at least a day")
                        .label = "write a number of days, such as \"7d\"".into();
                    None
                }
                Err(reason) => {
                    self.error(e.span(), format!("invalid `expire` `{}`", e.get_ref()))
                        .label = reason;
                    None
                }
            }
        });
        Some(Artifacts {
            paths,
            when,
            expire_days,
        })
    }

    /// `os = { VALUE = "label" }`: each key a value of the `os` matrix axis.
    fn os_map(
        &mut self,
        raw: &IndexMap<Spanned<String>, Spanned<String>>,
        matrix: &IndexMap<String, Vec<String>>,
    ) -> IndexMap<String, String> {
        let mut out = IndexMap::new();
        for (value, label) in raw {
            let values = matrix.get("os");
            if !values.is_some_and(|v| v.contains(value.get_ref())) {
                let d = self.error(
                    value.span(),
                    format!(
                        "`{}` is not a value of the `os` matrix axis",
                        value.get_ref()
                    ),
                );
                d.label = match values {
                    Some(v) => match did_you_mean(value.get_ref(), v.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("its values: {}", v.join(", ")),
                    },
                    None => "`[ci.matrix]` has no `os` axis".into(),
                };
                continue;
            }
            if self.ci_text(label, "a runner label") {
                out.insert(value.get_ref().clone(), label.get_ref().clone());
            }
        }
        out
    }

    fn actions(
        &mut self,
        raw: &RawActions,
        matrix: &IndexMap<String, Vec<String>>,
    ) -> ActionsSettings {
        let os = self.os_map(&raw.os, matrix);
        let runs_on = raw
            .runs_on
            .as_ref()
            .filter(|r| self.ci_text(r, "`runs_on`"))
            .map(|r| r.get_ref().clone());
        let mut pins = IndexMap::new();
        for (action, pin) in &raw.pins {
            let name = action.get_ref();
            let parts: Vec<&str> = name.split('/').collect();
            if parts.len() < 2 || !parts.iter().all(|p| is_name_part(p)) {
                self.error(action.span(), format!("`{name}` is not an action name"))
                    .label = "write it as owner/repository, as in `uses:`".into();
                continue;
            }
            let p = pin.get_ref();
            if p.sha.len() != 40 || !p.sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                let d = self.error(
                    pin.span(),
                    format!("the pin of `{name}` is not a commit SHA"),
                );
                d.label = "a full 40-character commit hash".into();
                d.help = Some("tags and branches can move; a commit cannot".into());
                continue;
            }
            if let Some(v) = &p.version
                && (v.trim().is_empty() || v.chars().any(char::is_control))
            {
                self.error(
                    pin.span(),
                    format!("the version of `{name}` is not one line"),
                )
                .label = "a release name such as \"v4.2.2\"".into();
                continue;
            }
            pins.insert(
                name.clone(),
                Pin {
                    sha: p.sha.to_ascii_lowercase(),
                    version: p.version.clone(),
                },
            );
        }
        ActionsSettings { runs_on, pins, os }
    }
}

pub(super) fn validate(check: &mut Checker, raw: RawCi, steps: &IndexMap<String, Step>) -> Ci {
    for (i, t) in raw.targets.iter().enumerate() {
        if raw.targets[..i].iter().any(|u| u.get_ref() == t.get_ref()) {
            check
                .error(
                    t.span(),
                    format!("CI target `{}` is listed twice", t.get_ref()),
                )
                .label = "remove one".into();
        } else if !CI_TARGETS.contains(&t.get_ref().as_str()) {
            let d = check.error(t.span(), format!("unknown CI target `{}`", t.get_ref()));
            d.label = match did_you_mean(t.get_ref(), CI_TARGETS) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("one of: {}", CI_TARGETS.join(", ")),
            };
        }
    }
    let targets = strings(&raw.targets);
    let allow_dirty = match raw.allow_dirty.as_ref() {
        None => Vec::new(),
        Some(a) => match a.get_ref() {
            AllowDirty::All(true) => targets.clone(),
            AllowDirty::All(false) => Vec::new(),
            AllowDirty::Targets(list) => {
                for t in list {
                    if !targets.contains(t) {
                        check
                            .error(
                                a.span(),
                                format!("`allow_dirty` names `{t}`, which is not in `targets`"),
                            )
                            .label = format!("the targets are: {}", targets.join(", "));
                    }
                }
                list.clone()
            }
        },
    };
    let install = raw
        .install
        .as_ref()
        .filter(|i| check.ci_text(i, "`install`"))
        .map(|i| i.get_ref().trim().to_string());

    let mut permissions = check.permissions(raw.permissions.as_ref());
    if raw.permissions.is_none() {
        permissions.insert("contents".into(), "read".into());
    }

    let triggers = match &raw.triggers {
        None => Triggers {
            push: vec!["main".into()],
            pull_request: true,
            ..Triggers::default()
        },
        Some(t) => {
            let span = t.span();
            let t = t.get_ref();
            if t.push.is_empty()
                && !t.pull_request
                && t.tags.is_empty()
                && t.schedule.is_empty()
                && !t.manual
            {
                let d = check.error(span, "`[ci.triggers]` starts CI on nothing");
                d.label = "enable at least one trigger".into();
                d.help = Some(
                    "set `push`, `pull_request`, `tags`, `schedule` or `manual`; \
                     to stop generating CI files, remove the targets"
                        .into(),
                );
            }
            for cron in &t.schedule {
                if check.ci_text(cron, "a schedule")
                    && cron.get_ref().split_whitespace().count() != 5
                {
                    let d = check.error(
                        cron.span(),
                        format!("`{}` is not a cron line", cron.get_ref()),
                    );
                    d.label = "five fields: minute hour day-of-month month day-of-week".into();
                    d.help = Some("for example \"17 3 * * 1\": Mondays at 03:17 UTC".into());
                }
            }
            Triggers {
                push: check.ref_patterns(&t.push, "branch pattern"),
                pull_request: t.pull_request,
                tags: check.ref_patterns(&t.tags, "tag pattern"),
                schedule: strings(&t.schedule),
                manual: t.manual,
            }
        }
    };

    let mut matrix = IndexMap::new();
    for (axis, values) in &raw.matrix {
        if !is_axis_name(axis.get_ref()) {
            check
                .error(
                    axis.span(),
                    format!("invalid matrix axis name `{}`", axis.get_ref()),
                )
                .label = "use lowercase letters, digits and `_`, starting with a letter".into();
        }
        if values.get_ref().is_empty() {
            check
                .error(
                    values.span(),
                    format!("matrix axis `{}` has no values", axis.get_ref()),
                )
                .label = "give at least one value".into();
        }
        let mut seen = Vec::new();
        for v in values.get_ref() {
            if !is_matrix_value(v.get_ref()) {
                let d = check.error(v.span(), format!("invalid matrix value `{}`", v.get_ref()));
                d.label = "use letters, digits and . _ - +".into();
                d.help = Some("matrix values become runner labels, job names and arguments".into());
            } else if seen.contains(v.get_ref()) {
                check
                    .error(
                        v.span(),
                        format!("matrix value `{}` is listed twice", v.get_ref()),
                    )
                    .label = "remove one".into();
            }
            seen.push(v.get_ref().clone());
        }
        matrix.insert(axis.get_ref().clone(), seen);
    }

    let gitlab_target = targets.iter().any(|t| t == "gitlab");
    let cache = check.cache(raw.cache.as_ref(), gitlab_target);

    // Jobs: names first, so that `needs` can refer forward.
    let job_names: Vec<String> = raw.jobs.keys().map(|k| k.get_ref().clone()).collect();
    let mut jobs = IndexMap::new();
    let mut step_spans: IndexMap<String, Vec<(String, Range<usize>)>> = IndexMap::new();
    for (name, job) in &raw.jobs {
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
        let first = raw
            .jobs
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

    let mut gitlab_tags = Vec::new();
    for t in &raw.gitlab.tags {
        if check.ci_text(t, "a runner tag") {
            gitlab_tags.push(t.get_ref().clone());
        }
    }
    let mut agents = IndexMap::new();
    for (k, v) in &raw.buildkite.agents {
        if check.ci_text(k, "an agent tag") && check.ci_text(v, "an agent tag value") {
            agents.insert(k.get_ref().clone(), v.get_ref().clone());
        }
    }
    let image = |check: &mut Checker, i: &Option<Spanned<String>>| {
        i.as_ref()
            .filter(|i| check.ci_text(i, "`image`"))
            .map(|i| i.get_ref().clone())
    };
    let github = check.actions(&raw.github, &matrix);
    let forgejo = check.actions(&raw.forgejo, &matrix);
    let gitlab_os = check.os_map(&raw.gitlab.os, &matrix);
    Ci {
        targets,
        install,
        allow_dirty,
        cancel_in_progress: raw.cancel_in_progress.unwrap_or(true),
        permissions,
        triggers,
        matrix,
        cache,
        jobs,
        github,
        forgejo,
        gitlab: GitlabSettings {
            image: image(check, &raw.gitlab.image),
            tags: gitlab_tags,
            os: gitlab_os,
        },
        woodpecker: WoodpeckerSettings {
            image: image(check, &raw.woodpecker.image),
        },
        buildkite: BuildkiteSettings { agents },
    }
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
