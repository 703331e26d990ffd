//! `preflight init`: write a starter preflight.toml (never over an existing one without
//! --force, and then only after showing the difference), and optionally install the hooks.

use super::current_dir;
use crate::cli::{Cli, InitArgs};
use crate::config;
use crate::error::{Error, Result, exit};
use crate::filetypes::WorkTree;
use crate::git;
use crate::init;
use crate::report;
use std::path::{Path, PathBuf};

pub fn init(cli: &Cli, args: &InitArgs, color: bool) -> Result<i32> {
    let repo = git::discover(&current_dir()?)?;
    let existing = config::FILE_NAMES
        .iter()
        .map(|n| repo.root.join(n))
        .find(|p| p.is_file());
    let target = existing
        .clone()
        .unwrap_or_else(|| repo.root.join(config::FILE_NAMES[0]));
    let files = repository_files(&repo.root);
    let starter = init::starter(
        &files,
        |program| which::which(program).is_ok(),
        |path| std::fs::read_to_string(repo.root.join(path)).ok(),
        &WorkTree { root: &repo.root },
        &init::registry::current_versions,
    );
    let mut text = starter.text.clone();
    if !args.ci.is_empty() {
        for t in &args.ci {
            if !config::CI_TARGETS.contains(&t.as_str()) {
                return Err(Error::Usage(format!("unknown CI target `{t}`"))
                    .hint(format!("one of: {}", config::CI_TARGETS.join(", "))));
            }
        }
        let list: Vec<String> = args.ci.iter().map(|t| format!("{t:?}")).collect();
        text.push_str(&format!(
            "\n# Hosted CI runs the same steps: `preflight ci generate` writes its files.\n[ci]\ntargets = [{}]\n",
            list.join(", ")
        ));
        // CI runs on pushes to the branch this repository's work goes to.
        // Names outside the plain set (quotes, `${{`) could not go into a CI file safely.
        let branch = repo
            .default_branch()
            .filter(|b| {
                b.chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
            })
            .unwrap_or_else(|| "main".to_string());
        text.push_str(&format!(
            "\n[ci.triggers]\npush = [{branch:?}]\npull_request = true\n"
        ));
    }
    let shown = config::display_path(&target);
    if let Some(path) = &existing {
        let old = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("cannot read {shown}"), e))?;
        if !args.force {
            return Err(Error::Usage(format!(
                "{shown} already exists; preflight init leaves it alone"
            ))
            .hint("`preflight init --force` replaces it, after showing the difference"));
        }
        let diff = similar::TextDiff::from_lines(&old, &text)
            .unified_diff()
            .header(&format!("{shown} (yours)"), &format!("{shown} (from init)"))
            .to_string();
        report::print(&diff);
    }
    crate::atomic::write(&target, text.as_bytes(), Default::default())
        .map_err(|e| Error::io(format!("cannot write {shown}"), e))?;
    // What init writes must load; a failure here is a bug worth hearing about at once.
    config::load(&target)?;
    let mut message = format!(
        "wrote {shown}: {} kind{} of check{} found",
        starter.kinds,
        if starter.kinds == 1 { "" } else { "s" },
        if starter.kinds == 1 { "" } else { "s" }
    );
    if !starter.pinned.is_empty() {
        message.push_str(&format!(
            "; pinned in [tools], installed at first use: {}",
            starter.pinned.join(", ")
        ));
    }
    if !starter.missing.is_empty() {
        message.push_str(&format!(
            "; not on PATH, so their steps are commented out: {}",
            starter.missing.join(", ")
        ));
    }
    report::print(&format!("{message}\n"));
    if !starter.pinned.is_empty() {
        // `run --ci` and the generated CI jobs install from the lock and never resolve.
        report::print(
            "the pinned tools: `preflight tools lock` writes preflight.lock (the first run does \
             too); commit it with the config, CI installs from it\n",
        );
    }
    if !args.ci.is_empty() {
        let config = super::load_config(cli)?;
        let code = crate::setup::ci::generate(&repo, &config, &Default::default(), color)?;
        if code != exit::SUCCESS {
            return Ok(code);
        }
    }
    if args.install {
        crate::pipeline::recover_unstaged(&repo, color);
        let config = super::config_for(cli, &repo)?;
        return crate::setup::install::install(&repo, &config, &Default::default());
    }
    report::print("next: `preflight run` to try it, `preflight install` to add the git hooks\n");
    Ok(exit::SUCCESS)
}

/// The repository's files (tracked or not, but not ignored), a few folders deep: enough to
/// recognise the kind of project.
fn repository_files(root: &Path) -> Vec<PathBuf> {
    ignore::WalkBuilder::new(root)
        .hidden(false)
        .max_depth(Some(4))
        .filter_entry(|e| e.file_name() != ".git")
        .build()
        .flatten()
        .filter(|e| e.file_type().is_some_and(|t| t.is_file()))
        .filter_map(|e| e.path().strip_prefix(root).ok().map(Path::to_path_buf))
        .collect()
}
