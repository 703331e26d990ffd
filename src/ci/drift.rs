//! Generated CI files against what is on disk: rendering every configured target (keeping
//! the action pins update bots raised) and the drift between the two.

use super::pins::Raised;
use super::{Source, Target};
use crate::config::{self, Config};
use crate::error::{Error, Result};
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
        std::env::current_dir()
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

pub fn configured_targets(config: &Config) -> Vec<Target> {
    config
        .ci
        .targets
        .iter()
        .filter_map(|t| Target::from_name(t))
        .collect()
}

/// The pins update bots raised in the workflows on disk, by target.
pub fn raised_pins(config: &Config, root: &Path) -> Vec<(Target, Raised)> {
    let mut found = Vec::new();
    for (target, settings, forgejo) in [
        (Target::Github, &config.ci.github, false),
        (Target::Forgejo, &config.ci.forgejo, true),
    ] {
        if let Some(existing) = read(root, target.path()) {
            let raised = super::pins::raised(&existing, &super::github::ACTIONS, |action| {
                super::github::pin(settings, action, forgejo)
            });
            found.extend(raised.into_iter().map(|r| (target, r)));
        }
    }
    found
}

/// Renders the files of `targets`, keeping the pins update bots raised.
pub fn render_all(
    config: &Config,
    root: &Path,
    targets: &[Target],
) -> Result<Vec<(Target, String)>> {
    let mut config = config.clone();
    for (target, raised) in raised_pins(&config, root) {
        let settings = match target {
            Target::Forgejo => &mut config.ci.forgejo,
            _ => &mut config.ci.github,
        };
        super::pins::apply(settings, std::slice::from_ref(&raised));
    }
    let config = &config;
    let rel = config_rel(config, root);
    let source = Source {
        config,
        config_rel: &rel,
    };
    targets
        .iter()
        .map(|&t| Ok((t, super::render(&source, t).map_err(Error::Setup)?)))
        .collect()
}

pub fn read(root: &Path, rel: &str) -> Option<String> {
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
            && super::is_generated(&actual)
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
