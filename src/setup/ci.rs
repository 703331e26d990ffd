//! Writing the generated CI files (`preflight ci generate`, `init --ci`), checking them
//! (`--check`, and before `run --ci`), and what is said about them.

use crate::ci::drift::{configured_targets, raised_pins, read, render_all};
use crate::ci::pins::Raised;
use crate::ci::{self, Target};
use crate::config::{self, Config};
use crate::error::{Error, Result, exit};
use crate::git::Repo;
use crate::report;
use std::path::Path;

/// What `ci generate` is asked: the targets to write (empty: all configured ones), or only
/// to check them, or to print one.
#[derive(Debug, Default)]
pub struct Generate {
    pub targets: Vec<String>,
    pub check: bool,
    pub stdout: Option<String>,
}

/// Writes (or checks, or prints) the generated CI files of `config`; returns the exit code.
pub fn generate(repo: &Repo, config: &Config, args: &Generate, color: bool) -> Result<i32> {
    let root = &repo.root;
    warn_of_missing_branches(repo, config, color);

    if let Some(name) = &args.stdout {
        let target = parse_target(name)?;
        let (_, text) = render_all(config, root, &[target])?.remove(0);
        report::print(&text);
        return Ok(exit::SUCCESS);
    }
    if config.ci.targets.is_empty() && !args.targets.is_empty() && !args.check {
        return generate_without_targets(config, root, &args.targets, color);
    }
    if config.ci.targets.is_empty() {
        return Err(Error::Usage(format!(
            "{} has no CI targets",
            config::display_path(&config.path)
        ))
        .hint("add `[ci] targets = [\"github\"]` (or gitlab, forgejo, woodpecker, buildkite)"));
    }
    let configured = configured_targets(config);
    let chosen: Vec<Target> = if args.targets.is_empty() {
        configured.clone()
    } else {
        let mut chosen = Vec::new();
        for name in &args.targets {
            let t = parse_target(name)?;
            if !configured.contains(&t) {
                return Err(Error::Usage(format!(
                    "`{name}` is not in `[ci] targets` of {}",
                    config::display_path(&config.path)
                ))
                .hint("add it there first"));
            }
            chosen.push(t);
        }
        chosen
    };

    for (target, raised) in raised_pins(config, root) {
        if chosen.contains(&target) {
            report_raised(target, &raised, config, color);
        }
    }

    if args.check {
        let skip: Vec<String> = Target::ALL
            .iter()
            .filter(|t| !args.targets.is_empty() && !chosen.contains(t))
            .map(|t| t.name().to_string())
            .collect();
        let drifted = ci::drift::drift(config, root, &skip)?;
        return Ok(report_drift(&drifted, config, false, color));
    }

    for (target, text) in render_all(config, root, &chosen)? {
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
        Error::Usage(format!("unknown CI target `{name}`")).hint(hint)
    })
}

/// Prints the diffs and a summary; returns the exit code.
pub fn report_drift(
    drifted: &[ci::drift::Drift],
    config: &Config,
    in_run: bool,
    color: bool,
) -> i32 {
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
    let drifted = ci::drift::drift(config, &repo.root, &config.ci.allow_dirty)?;
    match report_drift(&drifted, config, true, color) {
        exit::SUCCESS => Ok(None),
        code => Ok(Some(code)),
    }
}
