//! The cache from the command line: `preflight explain STEP` and
//! `preflight cache stats|gc|clear`.

use super::{current_dir, load_config};
use crate::cache::{self, Mode, Session};
use crate::cli::{CacheCommand, Cli, ExplainArgs};
use crate::config;
use crate::error::{Error, Result, exit};
use crate::filetypes::WorkTree;
use crate::git;
use crate::plan;
use crate::report::{self, StepKey};
use std::collections::HashSet;

/// `preflight explain [STEP...]`: the named steps, or every step.
pub fn explain(cli: &Cli, args: &ExplainArgs) -> Result<i32> {
    let repo = git::discover(&current_dir()?)?;
    let config_path = match &cli.config {
        Some(path) => path.clone(),
        None => config::locate(&repo.root)?,
    };
    let config = config::load(&config_path)?;
    let selection = plan::Selection {
        names: &args.steps,
        ..Default::default()
    };
    let plan = plan::build(
        &config,
        &selection,
        &repo.tracked_files()?,
        &WorkTree { root: &repo.root },
    )?;
    let mode = Mode {
        read: true,
        write: false,
        force: HashSet::new(),
        explain: true,
    };
    let session = Session::open(
        &config,
        &repo,
        &cache::cache_dir(&config, &repo.root)?,
        mode,
    )?
    .with_tools(crate::tools::locked_identities(&config));
    // Named steps are explained without the steps they need; no names: every step.
    let wanted: HashSet<&str> = args.steps.iter().map(String::as_str).collect();
    let steps: Vec<StepKey> = crate::pipeline::step_keys(&plan, &session, Some(&repo.root))
        .into_iter()
        .filter(|s| wanted.is_empty() || wanted.contains(s.name.as_str()))
        .collect();
    report::explain(&steps);
    Ok(exit::SUCCESS)
}

/// `preflight cache stats|gc|clear`. Works outside a repository too (with the default or
/// `PREFLIGHT_CACHE_DIR` location and bound).
pub fn cache(cli: &Cli, command: &CacheCommand) -> Result<i32> {
    let (dir, max) = match load_config(cli) {
        Ok(config) => {
            let root = git::discover(&current_dir()?)?.root;
            (cache::cache_dir(&config, &root)?, config.settings.cache_max)
        }
        Err(e) if e.kind() == crate::error::Kind::Setup && cli.config.is_none() => {
            let empty = config::parse(std::path::Path::new("preflight.toml"), "")
                .expect("an empty configuration is valid");
            let root = current_dir()?;
            (cache::cache_dir(&empty, &root)?, config::DEFAULT_CACHE_MAX)
        }
        Err(e) => return Err(e),
    };
    let store = cache::store::Store::new(&dir);
    match command {
        CacheCommand::Stats => report::cache_stats(&dir, &store.stats(), max),
        CacheCommand::Gc => {
            let r = store
                .gc(max, true)
                .map_err(|e| Error::io(format!("cannot clean {}", dir.display()), e))?
                .unwrap_or_default();
            report::cache_gc(&r, max);
        }
        CacheCommand::Clear => {
            let bytes = store
                .clear()
                .map_err(|e| Error::io(format!("cannot clear {}", dir.display()), e))?;
            report::cache_cleared(&dir, bytes);
        }
    }
    Ok(exit::SUCCESS)
}
