//! The managed tools of a run: those of the planned steps, made ready (installed on first
//! use, said in one line) before anything runs; each step then gets its tools first on
//! PATH, and their identities in its key.

use crate::cache;
use crate::config::Config;
use crate::error::Result;
use crate::git::Repo;
use crate::plan::Plan;
use crate::report;
use crate::tools::{self, Policy};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// What the run's steps get from their tools.
#[derive(Debug, Default)]
pub(super) struct RunTools {
    /// Tool name → identity, for the cache key.
    pub(super) identities: HashMap<String, String>,
    /// Step name → PATH with its tools' folders first.
    pub(super) paths: Arc<HashMap<String, String>>,
}

/// Makes the tools of `plan`'s steps ready. Steps skipped on purpose or without files this
/// time do not count: a commit of Markdown files installs no linter.
pub(super) fn prepare(
    config: &Config,
    repo: &Repo,
    plan: &Plan,
    policy: Policy,
    dry_run: bool,
    color: bool,
) -> Result<RunTools> {
    // A dry run installs nothing: it keys steps on the tools as the lock has them.
    if dry_run {
        return Ok(RunTools {
            identities: tools::locked_identities(config),
            paths: Arc::default(),
        });
    }
    let runs = |s: &&crate::plan::PlannedStep| {
        s.skip.is_none() && s.files.as_ref().is_none_or(|f| !f.is_empty())
    };
    let mut names: Vec<String> = Vec::new();
    for step in plan.steps.iter().filter(runs) {
        for name in &step.step.tools {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    if names.is_empty() {
        return Ok(RunTools::default());
    }
    let store = tools::store_in(&cache::cache_dir(config, &repo.root)?);
    let ready = tools::ensure(config, &names, &store, policy, &mut |event| {
        if let Some(line) = report::tool_event(&event) {
            report::warn(&line, color);
        }
    })?;
    let inherited = std::env::var_os("PATH");
    let mut paths = HashMap::new();
    for step in plan.steps.iter().filter(runs) {
        let bins: Vec<&Path> = step
            .step
            .tools
            .iter()
            .filter_map(|t| ready.get(t).map(|r| r.bin.as_path()))
            .collect();
        if bins.is_empty() {
            continue;
        }
        // A PATH set in `[env]` or the step's `env` is the one its tools go before.
        let base = step
            .step
            .env
            .get("PATH")
            .or_else(|| config.env.get("PATH"))
            .map(std::ffi::OsString::from)
            .or_else(|| inherited.clone());
        let path = tools::path_with(&bins, base.as_deref());
        paths.insert(step.step.name.clone(), path.to_string_lossy().into_owned());
    }
    Ok(RunTools {
        identities: ready
            .into_iter()
            .map(|(name, r)| (name, r.identity.describe()))
            .collect(),
        paths: Arc::new(paths),
    })
}
