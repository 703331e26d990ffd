//! `preflight ci generate` (write, `--check`, `--stdout`), and what `preflight run --ci`
//! adds to a run: the drift check first, then one CI job's steps with its matrix values.

use super::{current_dir, load_config};
use crate::ci::pins::Raised;
use crate::ci::{self, Source, Target};
use crate::cli::{CiGenerateArgs, Cli};
use crate::config::{self, Config};
use crate::error::{Error, Result, exit};
use crate::git::{self, Repo};
use crate::plan::Plan;
use crate::report;
use std::path::{Path, PathBuf};

/// One generated file that differs from what is on disk.
pub struct Drift {
    pub path: &'static str,
    /// What preflight would write; `None`: the file should not exist.
    pub expected: Option<String>,
    /// What is there; `None`: missing.
    pub actual: Option<String>,
}

impl Drift {
    /// A unified diff from the file on disk to what it should be.
    pub fn diff(&self) -> String {
        let old = self.actual.as_deref().unwrap_or("");
        let new = self.expected.as_deref().unwrap_or("");
        let old_name = match self.actual {
            Some(_) => format!("a/{}", self.path),
            None => "/dev/null".into(),
        };
        let new_name = match self.expected {
            Some(_) => format!("b/{}", self.path),
            None => "/dev/null".into(),
        };
        similar::TextDiff::from_lines(old, new)
            .unified_diff()
            .context_radius(3)
            .header(&old_name, &new_name)
            .to_string()
    }
}

fn config_rel(config: &Config, root: &Path) -> PathBuf {
    let absolute = if config.path.is_absolute() {
        config.path.clone()
    } else {
        current_dir()
            .map(|d| d.join(&config.path))
            .unwrap_or_else(|_| config.path.clone())
    };
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let absolute = absolute.canonicalize().unwrap_or(absolute);
    absolute
        .strip_prefix(&root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| PathBuf::from(config::FILE_NAMES[0]))
}

fn configured_targets(config: &Config) -> Vec<Target> {
    config
        .ci
        .targets
        .iter()
        .filter_map(|t| Target::from_name(t))
        .collect()
}

/// The pins update bots raised in the workflows on disk, by target.
fn raised_pins(config: &Config, root: &Path) -> Vec<(Target, Raised)> {
    let mut found = Vec::new();
    for (target, settings, forgejo) in [
        (Target::Github, &config.ci.github, false),
        (Target::Forgejo, &config.ci.forgejo, true),
    ] {
        if let Some(existing) = read(root, target.path()) {
            let raised = ci::pins::raised(&existing, &ci::github::ACTIONS, |action| {
                ci::github::pin(settings, action, forgejo)
            });
            found.extend(raised.into_iter().map(|r| (target, r)));
        }
    }
    found
}

/// Renders the files of `targets`, keeping the pins update bots raised.
fn render_all(config: &Config, root: &Path, targets: &[Target]) -> Result<Vec<(Target, String)>> {
    let mut config = config.clone();
    for (target, raised) in raised_pins(&config, root) {
        let settings = match target {
            Target::Forgejo => &mut config.ci.forgejo,
            _ => &mut config.ci.github,
        };
        ci::pins::apply(settings, std::slice::from_ref(&raised));
    }
    let config = &config;
    let rel = config_rel(config, root);
    let source = Source {
        config,
        config_rel: &rel,
    };
    targets
        .iter()
        .map(|&t| Ok((t, ci::render(&source, t).map_err(Error::Setup)?)))
        .collect()
}

fn read(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(root.join(rel)).ok()
}

/// Every generated file that differs from `preflight.toml`, including generated files of
/// targets no longer listed. Targets in `skip` are not checked.
pub fn drift(config: &Config, root: &Path, skip: &[String]) -> Result<Vec<Drift>> {
    // Without `[ci] targets` nothing is kept in sync: files written by
    // `ci generate TARGET` then are the user's (see `generate_without_targets`).
    if config.ci.targets.is_empty() {
        return Ok(Vec::new());
    }
    let wanted = configured_targets(config);
    let mut found = Vec::new();
    for (target, expected) in render_all(config, root, &wanted)? {
        if skip.iter().any(|s| s == target.name()) {
            continue;
        }
        let actual = read(root, target.path());
        if actual.as_deref() != Some(expected.as_str()) {
            found.push(Drift {
                path: target.path(),
                expected: Some(expected),
                actual,
            });
        }
    }
    for target in Target::ALL {
        if wanted.contains(&target) || skip.iter().any(|s| s == target.name()) {
            continue;
        }
        if let Some(actual) = read(root, target.path())
            && ci::is_generated(&actual)
        {
            found.push(Drift {
                path: target.path(),
                expected: None,
                actual: Some(actual),
            });
        }
    }
    Ok(found)
}

pub fn generate(cli: &Cli, args: &CiGenerateArgs, color: bool) -> Result<i32> {
    let config = load_config(cli)?;
    let repo = git::discover(&current_dir()?)?;
    let root = &repo.root;
    warn_of_missing_branches(&repo, &config, color);

    if let Some(name) = &args.stdout {
        let target = parse_target(name)?;
        let (_, text) = render_all(&config, root, &[target])?.remove(0);
        report::print(&text);
        return Ok(exit::SUCCESS);
    }
    if config.ci.targets.is_empty() && !args.targets.is_empty() && !args.check {
        return generate_without_targets(&config, root, &args.targets, color);
    }
    if config.ci.targets.is_empty() {
        return Err(Error::Usage(format!(
            "{} has no CI targets\nhelp: add `[ci] targets = [\"github\"]` (or gitlab, forgejo, \
             woodpecker, buildkite)",
            config::display_path(&config.path)
        )));
    }
    let configured = configured_targets(&config);
    let chosen: Vec<Target> = if args.targets.is_empty() {
        configured.clone()
    } else {
        let mut chosen = Vec::new();
        for name in &args.targets {
            let t = parse_target(name)?;
            if !configured.contains(&t) {
                return Err(Error::Usage(format!(
                    "`{name}` is not in `[ci] targets` of {}\nhelp: add it there first",
                    config::display_path(&config.path)
                )));
            }
            chosen.push(t);
        }
        chosen
    };

    for (target, raised) in raised_pins(&config, root) {
        if chosen.contains(&target) {
            report_raised(target, &raised, &config, color);
        }
    }

    if args.check {
        let skip: Vec<String> = Target::ALL
            .iter()
            .filter(|t| !args.targets.is_empty() && !chosen.contains(t))
            .map(|t| t.name().to_string())
            .collect();
        let drifted = drift(&config, root, &skip)?;
        return Ok(report_drift(&drifted, &config, false, color));
    }

    for (target, text) in render_all(&config, root, &chosen)? {
        let path = root.join(target.path());
        if read(root, target.path()).as_deref() == Some(text.as_str()) {
            report::print(&format!("unchanged {}\n", target.path()));
            continue;
        }
        crate::atomic::write(&path, text.as_bytes(), Default::default())
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        report::print(&format!("wrote {}\n", target.path()));
    }
    if args.targets.is_empty() {
        for target in Target::ALL {
            if configured.contains(&target) {
                continue;
            }
            if let Some(text) = read(root, target.path())
                && ci::is_generated(&text)
            {
                let path = root.join(target.path());
                std::fs::remove_file(&path)
                    .map_err(|e| Error::io(format!("cannot remove {}", path.display()), e))?;
                report::print(&format!(
                    "removed {} (`{}` is no longer a target)\n",
                    target.path(),
                    target.name()
                ));
            }
        }
    }
    Ok(exit::SUCCESS)
}

/// `ci generate TARGET` in a repository without `[ci] targets`: writes the named targets
/// with the defaults (one job running every step), and says how to keep them in sync.
fn generate_without_targets(
    config: &Config,
    root: &Path,
    names: &[String],
    color: bool,
) -> Result<i32> {
    let chosen = names
        .iter()
        .map(|n| parse_target(n))
        .collect::<Result<Vec<_>>>()?;
    for (target, text) in render_all(config, root, &chosen)? {
        let path = root.join(target.path());
        crate::atomic::write(&path, text.as_bytes(), Default::default())
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        report::print(&format!("wrote {}\n", target.path()));
    }
    let list: Vec<String> = chosen.iter().map(|t| format!("\"{}\"", t.name())).collect();
    report::warn(
        &format!(
            "{} has no `[ci]` targets, so the file was written with the defaults and nothing \
             keeps it in sync\nhelp: add `[ci] targets = [{}]` to {}: then `preflight run --ci` \
             and `preflight ci generate --check` catch a stale file",
            config::display_path(&config.path),
            list.join(", "),
            config::display_path(&config.path),
        ),
        color,
    );
    Ok(exit::SUCCESS)
}

/// Says when a branch pattern of `[ci.triggers] push` matches no branch of this repository,
/// local or remote-tracking: pushes would then never start CI (a `main` trigger in a
/// repository whose branch is `master`).
fn warn_of_missing_branches(repo: &Repo, config: &Config, color: bool) {
    if config.ci.targets.is_empty() {
        return;
    }
    let Ok(branches) = repo.branch_names() else {
        return;
    };
    if branches.is_empty() {
        return;
    }
    for pattern in &config.ci.triggers.push {
        let matches = match globset::Glob::new(pattern) {
            Ok(glob) => {
                let glob = glob.compile_matcher();
                branches.iter().any(|b| glob.is_match(b))
            }
            Err(_) => branches.contains(pattern),
        };
        if !matches {
            report::warn(
                &format!(
                    "CI runs on pushes to `{pattern}`, but this repository has no such branch \
                     (local or remote-tracking), so pushes will not start it\n\
                     help: the branches are: {}; set `[ci.triggers] push = [...]` in {}",
                    branches.join(", "),
                    config::display_path(&config.path)
                ),
                color,
            );
        }
    }
}

/// Says that a pin an update bot raised in a workflow is kept, and how to record it.
fn report_raised(target: Target, raised: &Raised, config: &Config, color: bool) {
    let version = |p: &config::Pin| p.version.clone().unwrap_or_default();
    report::warn(
        &format!(
            "keeping {action} {found} ({sha}) from {path}, newer than the {configured} {name} \
             gives\nhelp: to record it there, add to [ci.{target}.pins]: \
             \"{action}\" = {{ sha = \"{sha}\", version = \"{found}\" }}",
            action = raised.action,
            found = version(&raised.found),
            sha = raised.found.sha,
            path = target.path(),
            configured = version(&raised.configured),
            name = config::display_path(&config.path),
            target = target.name(),
        ),
        color,
    );
}

fn parse_target(name: &str) -> Result<Target> {
    Target::from_name(name).ok_or_else(|| {
        let hint = match config::did_you_mean(name, config::CI_TARGETS) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("the targets are: {}", config::CI_TARGETS.join(", ")),
        };
        Error::Usage(format!("unknown CI target `{name}`\nhelp: {hint}"))
    })
}

/// Prints the diffs and a summary; returns the exit code.
fn report_drift(drifted: &[Drift], config: &Config, in_run: bool, color: bool) -> i32 {
    if drifted.is_empty() {
        if !in_run {
            report::print("the generated CI files are up to date\n");
        }
        return exit::SUCCESS;
    }
    for d in drifted {
        report::print(&d.diff());
    }
    let list: Vec<String> = drifted
        .iter()
        .map(|d| match (&d.expected, &d.actual) {
            (None, _) => format!("{} should no longer exist", d.path),
            (Some(_), None) => format!("{} is missing", d.path),
            (Some(_), Some(_)) => format!("{} is out of date", d.path),
        })
        .collect();
    let name = config::display_path(&config.path);
    let mut message = format!(
        "the generated CI files do not match {name}:\n  {}\nhelp: run `preflight ci generate` and commit the result",
        list.join("\n  ")
    );
    if in_run {
        message.push_str(", or list the target in `[ci] allow_dirty`");
    }
    report::error(&message, color);
    exit::STEPS_FAILED
}

/// The drift check `preflight run --ci` starts with; `Some(code)` stops the run.
pub fn check_before_run(repo: &Repo, config: &Config, color: bool) -> Result<Option<i32>> {
    let drifted = drift(config, &repo.root, &config.ci.allow_dirty)?;
    match report_drift(&drifted, config, true, color) {
        exit::SUCCESS => Ok(None),
        code => Ok(Some(code)),
    }
}

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
            "no CI job named `{name}` in {}\nhelp: {hint}",
            config::display_path(&config.path)
        ))
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
        env.push((ci::matrix_env(axis), value.to_string()));
    }
    Ok(JobRun {
        steps: job.steps.clone(),
        env,
    })
}

/// Keeps only the named steps of a plan: the steps they need outside the job ran in the
/// CI jobs this one needs.
pub fn only_steps(plan: Plan, names: &[String]) -> Plan {
    let keep: Vec<bool> = plan
        .steps
        .iter()
        .map(|s| names.contains(&s.step.name))
        .collect();
    let mut position = vec![usize::MAX; keep.len()];
    let mut next = 0;
    for (i, &k) in keep.iter().enumerate() {
        if k {
            position[i] = next;
            next += 1;
        }
    }
    let remap = |list: Vec<usize>| -> Vec<usize> {
        list.into_iter()
            .filter(|&i| keep[i])
            .map(|i| position[i])
            .collect()
    };
    let steps = plan
        .steps
        .into_iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(mut s, _)| {
            s.needs = remap(std::mem::take(&mut s.needs));
            s.after = remap(std::mem::take(&mut s.after));
            s
        })
        .collect();
    Plan { steps }
}
