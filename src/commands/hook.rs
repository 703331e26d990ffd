//! `preflight hook NAME [ARGS]`: what the installed shims call. Runs the steps `[hooks]` binds
//! to NAME on that hook's files; around pre-commit, unstaged work is set aside and put back.

use super::current_dir;
use super::run::{self, Output};
use crate::cli::{Cli, HookArgs, OutputFormat};
use crate::config;
use crate::error::{Result, exit};
use crate::filetypes::{Contents, WorkTree};
use crate::git::{self, PushUpdate, Repo};
use crate::hooks::stash::Stash;
use crate::plan::{self, Selection};
use crate::process::Canceller;
use crate::report;
use std::io::Read as _;
use std::path::PathBuf;

pub fn hook(cli: &Cli, args: &HookArgs, color: bool) -> Result<i32> {
    let name = args.name.as_str();
    if std::env::var_os("PREFLIGHT").is_some_and(|v| v == "0") {
        report::warn(
            &format!("PREFLIGHT=0 is set, skipping the {name} hook"),
            color,
        );
        return Ok(exit::SUCCESS);
    }
    let cwd = current_dir()?;
    let repo = git::discover(&cwd)?;
    run::recover_unstaged(&repo, color);
    // A shim in a shared hooks folder also fires in repositories without a config.
    if cli.config.is_none() && config::locate(&repo.root).is_err() {
        return Ok(exit::SUCCESS);
    }
    let config = super::config_for(cli, &repo)?;
    let Some(binding) = config.hooks.get(name) else {
        return Ok(exit::SUCCESS);
    };

    let mut msg_file = None;
    let mut pushed_commits: Vec<String> = Vec::new();
    let file_set = match name {
        "pre-commit" | "pre-merge-commit" => repo.staged_files()?,
        "pre-push" => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .map_err(|e| crate::error::Error::io("cannot read the pre-push input", e))?;
            let updates = PushUpdate::parse_lines(&input)?;
            pushed_commits = updates
                .iter()
                .filter(|u| !u.is_deletion())
                .map(|u| u.local_sha.clone())
                .collect();
            let remote = args.args.first().map_or("origin", String::as_str);
            repo.pushed_files(remote, &updates)?
        }
        "commit-msg" | "prepare-commit-msg" => {
            msg_file = args.args.first().map(|f| cwd.join(f));
            Vec::new()
        }
        "post-checkout" => match args.args.as_slice() {
            [from, to, ..] => changed(&repo, from, to)?,
            _ => Vec::new(),
        },
        "post-merge" => changed(&repo, "ORIG_HEAD", "HEAD")?,
        _ => repo.tracked_files()?,
    };
    let skip = run::skip_list(&config, color);
    let selection = Selection {
        names: &binding.steps,
        fix: binding.fix,
        skip: &skip,
    };
    // File types are told from what the hook judges: the index, or the pushed commits.
    let work_tree = WorkTree { root: &repo.root };
    let stored = match name {
        "pre-commit" | "pre-merge-commit" => Some(repo.staged_contents()?),
        "pre-push" => {
            let revs: Vec<&str> = pushed_commits.iter().map(String::as_str).collect();
            Some(repo.commits_contents(&revs)?)
        }
        _ => None,
    };
    let contents: &dyn Contents = match &stored {
        Some(stored) => stored,
        None => &work_tree,
    };
    let plan = plan::build(&config, &selection, &file_set, contents)?;
    let fixers = plan.steps.iter().any(|s| s.fixes);
    let output = Output {
        jobs: None,
        fail_fast: false,
        verbose: false,
        format: OutputFormat::Human,
        color,
        ci: false,
        remote: crate::remote::Overrides::from_env(),
    };

    let canceller = Canceller::new();
    run::watch_signals(&canceller)?;
    if !matches!(name, "pre-commit" | "pre-merge-commit") {
        let cache = super::cache::default_session(&config, &repo)?;
        let summary = run::execute(
            &repo,
            &config,
            plan,
            &output,
            msg_file,
            Some(cache),
            canceller,
        );
        return Ok(run::exit_code(&summary));
    }

    // pre-commit: the steps see exactly what will be committed.
    // Steps that get files see only staged files; a step without `files` sees the whole tree.
    let whole_tree = plan
        .steps
        .iter()
        .any(|s| s.files.is_none() && s.skip.is_none());
    let stash = Stash::save(&repo, (!whole_tree).then_some(file_set.as_slice()))?;
    let cache = super::cache::default_session(&config, &repo)?;
    let summary = run::execute(&repo, &config, plan, &output, None, Some(cache), canceller);
    let stage: &[PathBuf] = if summary.success() { &file_set } else { &[] };
    let restored = stash.restore(fixers, stage)?;
    if !restored.rolled_back.is_empty() {
        report::warn(
            &format!(
                "the fixes to {} collided with your unstaged changes in the same files, so they \
                 were undone; your unstaged changes are back as they were.\n\
                 help: stage those files fully (`git add`) or stash your unstaged changes, then commit again",
                list(&restored.rolled_back)
            ),
            color,
        );
        return Ok(exit::STEPS_FAILED);
    }
    if !restored.staged.is_empty() {
        report::warn(
            &format!("staged the fixes to {}", list(&restored.staged)),
            color,
        );
    }
    if !restored.left_unstaged.is_empty() {
        report::warn(
            &format!(
                "fixers also changed {}, which are not part of this commit (left unstaged)",
                list(&restored.left_unstaged)
            ),
            color,
        );
    }
    Ok(run::exit_code(&summary))
}

fn changed(repo: &Repo, from: &str, to: &str) -> Result<Vec<PathBuf>> {
    let to = repo.resolve(to)?;
    let from = if from.bytes().all(|b| b == b'0') {
        None
    } else {
        Some(repo.resolve(from)?)
    };
    repo.changed_between(from, to)
}

fn list(paths: &[PathBuf]) -> String {
    const SHOWN: usize = 5;
    let mut names: Vec<String> = paths
        .iter()
        .take(SHOWN)
        .map(|p| p.display().to_string())
        .collect();
    if paths.len() > SHOWN {
        names.push(format!("and {} more", paths.len() - SHOWN));
    }
    names.join(", ")
}
