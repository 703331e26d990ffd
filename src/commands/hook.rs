//! `preflight hook NAME [ARGS]`: what the installed shims call. Runs the steps `[hooks]` binds
//! to NAME on that hook's files; around pre-commit, unstaged work is set aside and put back.

use super::current_dir;
use super::run::{self, Output};
use crate::cli::{Cli, HookArgs, OutputFormat};
use crate::config;
use crate::error::{Result, exit};
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
    let file_set = match name {
        "pre-commit" | "pre-merge-commit" => repo.staged_files()?,
        "pre-push" => {
            let mut input = String::new();
            std::io::stdin()
                .read_to_string(&mut input)
                .map_err(|e| crate::error::Error::io("cannot read the pre-push input", e))?;
            let updates = PushUpdate::parse_lines(&input)?;
            let remote = args.args.first().map_or("origin", String::as_str);
            return pre_push(cli, &repo, &config, remote, &updates, color);
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
    let plan = plan::build(&config, &selection, &file_set)?;
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

/// pre-push judges what is pushed: each pushed commit (the tip of each pushed ref, peeled
/// from tags; refs sending the same commit are checked once) on the files its ref changes
/// on the remote, in that commit's content and with its own preflight.toml, never the work
/// tree. The push fails when any of them fails.
fn pre_push(
    cli: &Cli,
    repo: &Repo,
    work_tree_config: &config::Config,
    remote: &str,
    updates: &[PushUpdate],
    color: bool,
) -> Result<i32> {
    let mut pushed: Vec<Pushed> = Vec::new();
    for update in updates {
        let Some(commit) = repo.pushed_commit(update)? else {
            continue;
        };
        let files = repo.pushed_files(remote, std::slice::from_ref(update))?;
        let name = update
            .remote_ref
            .strip_prefix("refs/heads/")
            .or_else(|| update.remote_ref.strip_prefix("refs/tags/"))
            .unwrap_or(&update.remote_ref)
            .to_string();
        match pushed.iter_mut().find(|p| p.commit == commit) {
            Some(p) => {
                p.refs.push(name);
                p.files.extend(files);
            }
            None => pushed.push(Pushed {
                commit,
                refs: vec![name],
                files: files.into_iter().collect(),
            }),
        }
    }
    if pushed.is_empty() {
        report::warn(
            "this push sends no commit (it only deletes refs): nothing to check",
            color,
        );
        return Ok(exit::SUCCESS);
    }
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
    let mut code = exit::SUCCESS;
    for p in pushed {
        let commit = repo.commit_content(p.commit)?;
        let refs = p.refs.join(", ");
        let config = match &cli.config {
            // A configuration named on the command line is used as it is.
            Some(_) => work_tree_config.clone(),
            None => match committed_config(repo, &commit, color)? {
                Some(config) => config,
                None => {
                    report::warn(
                        &format!(
                            "the pushed commit {} ({refs}) has no preflight.toml: nothing to check",
                            commit.short_id()
                        ),
                        color,
                    );
                    continue;
                }
            },
        };
        let Some(binding) = config.hooks.get("pre-push") else {
            report::warn(
                &format!(
                    "the preflight.toml of the pushed commit {} ({refs}) binds no step to \
                     pre-push: nothing to check",
                    commit.short_id()
                ),
                color,
            );
            continue;
        };
        let skip = run::skip_list(&config, color);
        let selection = Selection {
            names: &binding.steps,
            fix: run::no_fixes_on_a_commit(binding.fix, color),
            skip: &skip,
        };
        let files: Vec<PathBuf> = p.files.into_iter().filter(|f| commit.has_file(f)).collect();
        let plan = plan::build(&config, &selection, &files)?;
        let checked = run::Checked {
            what: "the pushed commit",
            refs: &refs,
        };
        let summary = run::execute_at_commit(
            repo,
            &config,
            plan,
            &output,
            super::cache::default_mode(),
            commit,
            &checked,
            std::sync::Arc::clone(&canceller),
        )?;
        if code == exit::SUCCESS {
            code = run::exit_code(&summary);
        }
        if summary.interrupted {
            break;
        }
    }
    Ok(code)
}

/// The configuration a commit holds (at the root, under one of the usual names).
fn committed_config(
    repo: &Repo,
    commit: &git::CommitContent,
    color: bool,
) -> Result<Option<config::Config>> {
    for name in config::FILE_NAMES {
        let Some(id) = commit.file_id(std::path::Path::new(name)) else {
            continue;
        };
        let bytes = repo.blob(id)?;
        let source = String::from_utf8(bytes).map_err(|_| {
            crate::error::Error::Usage(format!(
                "the {name} of the pushed commit {} is not UTF-8 text",
                commit.short_id()
            ))
        })?;
        let loaded = config::load_source(&repo.root.join(name), &source);
        if loaded.is_err() {
            report::warn(
                &format!(
                    "the {name} of the pushed commit {} is not valid:",
                    commit.short_id()
                ),
                color,
            );
        }
        return loaded.map(Some);
    }
    Ok(None)
}

/// One commit a push sends, the refs that send it, and the files they change.
struct Pushed {
    commit: git::ObjectId,
    refs: Vec<String>,
    files: std::collections::BTreeSet<PathBuf>,
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
