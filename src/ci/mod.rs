//! Hosted-CI files generated from `[ci]`: one per target, rendered from the templates in
//! `templates/ci/` (embedded in the binary), and compared with what is on disk.
//!
//! The generated files stay thin: they check out, install preflight, restore its cache and
//! run `preflight run --ci --job NAME`. The steps' commands never leave `preflight.toml`.
//! Each target module turns the config into a template context; the templates only lay
//! it out. Every string reaches YAML through the `q` filter (a double-quoted scalar).
//!
//! Here: what every target shares (the header, quoting, the install and run commands).
//! One module per service (`github` also serves Forgejo), and `pins` for the pinned
//! actions. This folder reads the validated `crate::config` and uses `crate::shell`; it
//! never imports exec, cache, remote, commands or report, and the targets never import
//! each other.

mod buildkite;
pub mod drift;
pub mod github;
mod gitlab;
pub mod install;
pub mod jobs;
pub mod pins;
mod woodpecker;

use crate::config::{CI_TARGETS, Ci, CiJob, Config};
use crate::shell;
use minijinja::Environment;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::path::Path;

/// The version of preflight the generated files install.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where preflight keeps its cache in CI (relative to the checkout), on services that
/// cache it between runs.
pub const CI_CACHE_DIR: &str = ".preflight-ci/cache";

/// A hosted-CI service preflight writes a file for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Github,
    Gitlab,
    Forgejo,
    Woodpecker,
    Buildkite,
}

impl Target {
    pub const ALL: [Target; 5] = [
        Target::Github,
        Target::Gitlab,
        Target::Forgejo,
        Target::Woodpecker,
        Target::Buildkite,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Github => "github",
            Target::Gitlab => "gitlab",
            Target::Forgejo => "forgejo",
            Target::Woodpecker => "woodpecker",
            Target::Buildkite => "buildkite",
        }
    }

    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The file this target reads, relative to the repository root.
    pub fn path(self) -> &'static str {
        match self {
            Target::Github => ".github/workflows/preflight.yml",
            Target::Gitlab => ".gitlab-ci.yml",
            Target::Forgejo => ".forgejo/workflows/preflight.yml",
            Target::Woodpecker => ".woodpecker/preflight.yaml",
            Target::Buildkite => ".buildkite/pipeline.yml",
        }
    }
}

const _: () = assert!(CI_TARGETS.len() == Target::ALL.len());

/// The first line of every generated file. `is_generated` recognises it.
pub fn header(config_name: &str) -> String {
    format!(
        "# Generated from {config_name} by preflight. Do not edit by hand: \
         change {config_name} and run `preflight ci generate`."
    )
}

/// Whether `text` is a file preflight generated (its first line is the header).
pub fn is_generated(text: &str) -> bool {
    let first = text.lines().next().unwrap_or("");
    first.starts_with("# Generated from ") && first.contains(" by preflight. Do not edit by hand")
}

/// What the generators need besides the config.
pub struct Source<'a> {
    pub config: &'a Config,
    /// The config file's path relative to the repository root (for `--config` in CI).
    pub config_rel: &'a Path,
}

/// Renders the file of one target.
pub fn render(source: &Source, target: Target) -> Result<String, String> {
    let ci = &source.config.ci;
    let common = Common::new(source);
    let (template, context) = match target {
        Target::Github => ("github", github::context(ci, &common, false)),
        Target::Forgejo => ("github", github::context(ci, &common, true)),
        Target::Gitlab => ("gitlab", gitlab::context(ci, &common)),
        Target::Woodpecker => ("woodpecker", woodpecker::context(ci, &common)),
        Target::Buildkite => ("buildkite", buildkite::context(ci, &common)),
    };
    let env = environment();
    let tmpl = env.get_template(template).map_err(|e| e.to_string())?;
    let mut out = tmpl
        .render(context)
        .map_err(|e| format!("cannot render the {} file: {e:#}", target.name()))?;
    // One trailing newline, whatever the template's whitespace control left.
    while out.ends_with("\n\n") {
        out.pop();
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_filter("q", |s: String| yaml_quote(&s));
    env.add_filter("flow", |list: Vec<String>| flow_list(&list));
    for (name, text) in [
        ("github", include_str!("../../templates/ci/github.yml.j2")),
        ("gitlab", include_str!("../../templates/ci/gitlab.yml.j2")),
        (
            "woodpecker",
            include_str!("../../templates/ci/woodpecker.yaml.j2"),
        ),
        (
            "buildkite",
            include_str!("../../templates/ci/buildkite.yml.j2"),
        ),
    ] {
        env.add_template(name, text)
            .expect("the embedded CI templates parse");
    }
    env
}

/// A YAML double-quoted scalar: every value means exactly itself, whatever it contains.
pub fn yaml_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // Control characters, and the ones YAML treats as line breaks or a BOM.
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `["a", "b"]`, each element quoted.
pub fn flow_list(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| yaml_quote(s)).collect();
    format!("[{}]", items.join(", "))
}

/// The environment variable that carries a matrix axis's value into the job.
pub fn matrix_env(axis: &str) -> String {
    format!("PREFLIGHT_MATRIX_{}", axis.to_ascii_uppercase())
}

/// What every target computes the same way.
pub struct Common {
    pub header: String,
    /// `--config PATH` when the config is not at the default place, else empty.
    config_arg: String,
    /// How jobs install preflight (`[ci] install`).
    pub method: install::Method,
    /// A short digest of the install command, so that a cached binary follows it.
    pub install_key: String,
    /// Jobs in an order where each comes after the jobs it needs.
    pub order: Vec<String>,
    /// What every job does to have the managed tools, when the config has `[tools]`.
    pub tools: Option<ManagedTools>,
}

/// Managed tools (`[tools]`) in a generated job: the tool store is restored from the
/// service's cache, keyed on the lock file (and the runner's OS and CPU), and then
/// `preflight tools install --locked` installs what the cache did not have, checked
/// against the lock. No runner image needs to have the tools.
pub struct ManagedTools {
    /// The lock file, relative to the repository root (beside the config).
    pub lock: String,
    /// The command that installs them.
    pub install: String,
    /// The tool store, relative to the checkout.
    pub store: String,
}

/// Where the tool store lives in CI (relative to the checkout): inside preflight's cache
/// folder, where the store always is. It is cached under a key of its own, and left out of
/// the step cache where the service can leave a path out.
pub fn ci_tools_dir() -> String {
    crate::tools::Store::under(std::path::Path::new(CI_CACHE_DIR))
        .root
        .to_string_lossy()
        .into_owned()
}

impl Common {
    fn new(source: &Source) -> Common {
        let ci = &source.config.ci;
        let name = source
            .config_rel
            .file_name()
            .map_or("preflight.toml".into(), |n| {
                n.to_string_lossy().into_owned()
            });
        let default_place = source.config_rel.parent() == Some(Path::new(""))
            && name == crate::config::FILE_NAMES[0];
        let config_arg = if default_place {
            String::new()
        } else {
            format!(
                " --config {}",
                shell::quote_word(&source.config_rel.to_string_lossy())
            )
        };
        let method = install::Method::of(ci);
        let install_text = match &method {
            install::Method::Custom(cmd) => cmd.clone(),
            install::Method::Cargo => Common::cargo_install(None),
            prebuilt => install::prebuilt(prebuilt).unwrap_or_default(),
        };
        let digest = Sha256::digest(install_text.as_bytes());
        let install_key = format!("{VERSION}-{}", &hex(&digest)[..12]);
        let tools = (!source.config.tools.is_empty()).then(|| ManagedTools {
            lock: crate::tools::lock_path(source.config_rel)
                .to_string_lossy()
                .into_owned(),
            install: format!("preflight{config_arg} tools install --locked"),
            store: ci_tools_dir(),
        });
        Common {
            header: header(&source.config_rel.to_string_lossy()),
            config_arg,
            method,
            install_key,
            order: job_order(ci),
            tools,
        }
    }

    /// `preflight run --ci --job NAME` with one `--matrix axis=VALUE` per axis, where
    /// `value(axis)` is the target's way to say the axis's value.
    pub fn run_command(&self, name: &str, job: &CiJob, value: impl Fn(&str) -> String) -> String {
        let mut cmd = format!("preflight{} run --ci --job {name}", self.config_arg);
        for axis in &job.matrix {
            let _ = write!(cmd, " --matrix {}", value(axis));
        }
        cmd
    }

    /// The first commands of a job on a service that runs one shell list per job (Buildkite,
    /// Woodpecker): unset the secrets the job does not name, then install preflight unless it
    /// is there. `$` in a custom install is doubled: both services substitute `$VAR` in it.
    pub fn job_prelude(&self, secrets: &[String], job_secrets: &[String]) -> Vec<String> {
        let mut commands: Vec<String> = secrets
            .iter()
            .filter(|s| !job_secrets.contains(s))
            .map(|s| format!("unset {s}"))
            .collect();
        match &self.method {
            install::Method::Custom(cmd) => {
                commands.push(Common::install_unless_present(&cmd.replace('$', "$$")));
            }
            install::Method::Cargo => {
                commands.push(Common::install_unless_present(&Common::cargo_install(None)));
            }
            prebuilt => {
                commands.push(install::export_path().replace('$', "$$"));
                commands.extend(install::prebuilt(prebuilt).map(|s| s.replace('$', "$$")));
            }
        }
        // These services keep no files between builds here: the tools are installed each
        // time, checked against the lock all the same.
        if let Some(tools) = &self.tools {
            commands.push(tools.install.replace('$', "$$"));
        }
        commands
    }

    /// A shell snippet that runs `install` unless preflight is already on the PATH (as on
    /// a self-hosted runner, or in tests). The command gets lines of its own, so that
    /// whatever it contains (a `#` comment, `;`) cannot reach the test around it.
    pub fn install_unless_present(install: &str) -> String {
        format!("if ! command -v preflight >/dev/null 2>&1; then\n  {install}\nfi")
    }

    /// The default install, `cargo install` of this version (into `root` when given).
    pub fn cargo_install(root: Option<&str>) -> String {
        match root {
            Some(root) => {
                format!("cargo install --locked --version {VERSION} --root {root} preflight")
            }
            None => format!("cargo install --locked --version {VERSION} preflight"),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Jobs in dependency order (stable: ties keep the order of the file).
fn job_order(ci: &Ci) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    while order.len() < ci.jobs.len() {
        let before = order.len();
        for (name, job) in &ci.jobs {
            if !order.contains(name) && job.needs.iter().all(|n| order.contains(n)) {
                order.push(name.clone());
            }
        }
        if order.len() == before {
            // A cycle is rejected by validation; never loop.
            let rest: Vec<String> = ci
                .jobs
                .keys()
                .filter(|n| !order.contains(n))
                .cloned()
                .collect();
            order.extend(rest);
        }
    }
    order
}

/// How deep a job sits in the job graph: 0 for jobs that need none.
pub fn depth(ci: &Ci, name: &str) -> usize {
    ci.jobs[name]
        .needs
        .iter()
        .map(|n| depth(ci, n) + 1)
        .max()
        .unwrap_or(0)
}

/// A matrix axis as the templates see it.
#[derive(Serialize)]
pub struct Axis {
    pub name: String,
    pub env: String,
    pub values: Vec<String>,
}

pub fn axes(ci: &Ci, job: &CiJob) -> Vec<Axis> {
    job.matrix
        .iter()
        .map(|a| Axis {
            name: a.clone(),
            env: matrix_env(a),
            values: ci.matrix[a].clone(),
        })
        .collect()
}

/// Every secret some job names, for the jobs that must not see it.
pub fn all_secrets(ci: &Ci) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for job in ci.jobs.values() {
        for s in &job.secrets {
            if !all.contains(s) {
                all.push(s.clone());
            }
        }
    }
    all
}

/// Replaces `{axis}` in an image name with the target's way to say the axis's value.
pub fn expand_axes(text: &str, ci: &Ci, value: impl Fn(&str) -> String) -> String {
    let mut out = text.to_string();
    for axis in ci.matrix.keys() {
        out = out.replace(&format!("{{{axis}}}"), &value(axis));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_every_value_literal() {
        assert_eq!(yaml_quote("plain"), "\"plain\"");
        assert_eq!(yaml_quote("a: b # c"), "\"a: b # c\"");
        assert_eq!(yaml_quote("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
        assert_eq!(yaml_quote("x\ny\u{7}"), "\"x\\ny\\u0007\"");
        assert_eq!(yaml_quote("\u{2028}"), "\"\\u2028\"");
    }

    #[test]
    fn the_header_is_recognised() {
        let h = header("preflight.toml");
        assert!(is_generated(&format!("{h}\nname: x\n")));
        assert!(!is_generated("name: x\n"));
    }
}
