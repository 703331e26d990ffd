//! `preflight hook NAME [ARGS]`: what the installed shims call. Runs the steps `[hooks]` binds
//! to NAME on that hook's files; around pre-commit, unstaged work is set aside and put back.

use super::current_dir;
use crate::cli::{Cli, HookArgs};
use crate::config::{self, Config};
use crate::error::{Error, Result, exit};
use crate::git::{self, PushUpdate, Repo};
use crate::pipeline::{self, Args, Env, FileSource, Outcome, RunRequest};
use crate::report;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub fn hook(cli: &Cli, args: &HookArgs, color: bool) -> Result<i32> {
    let name = args.name.as_str();
    let env = Env::read();
    if env.hooks_off {
        report::warn(
            &format!("PREFLIGHT=0 is set, skipping the {name} hook"),
            color,
        );
        return Ok(exit::SUCCESS);
    }
    let cwd = current_dir()?;
    let repo = git::discover(&cwd)?;
    pipeline::recover_unstaged(&repo, color);
    let Some(config) = hook_config(cli, &repo, name, color)? else {
        return Ok(exit::SUCCESS);
    };
    // A push is judged by the configuration each pushed commit holds, whatever the work
    // tree's copy binds (an uncommitted edit must not drop a check from a push).
    if name == "pre-push" {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .map_err(|e| Error::io("cannot read the pre-push input", e))?;
        let updates = PushUpdate::parse_lines(&input)?;
        let remote = args.args.first().map_or("origin", String::as_str);
        return pre_push(cli, &repo, &config, remote, &updates, &env, color);
    }
    let Some(binding) = config.hooks.get(name) else {
        return Ok(exit::SUCCESS);
    };

    let commit = matches!(name, "pre-commit" | "pre-merge-commit");
    let mut msg_file = None;
    // File types are told from what the hook judges: the index for a commit.
    let files = match name {
        "pre-commit" => FileSource::Staged,
        "pre-merge-commit" => FileSource::Merging,
        "commit-msg" | "prepare-commit-msg" => {
            msg_file = args.args.first().map(|f| cwd.join(f));
            FileSource::Paths(Vec::new())
        }
        "post-checkout" => match args.args.as_slice() {
            [from, to, ..] => FileSource::Changed {
                from: from.clone(),
                to: to.clone(),
            },
            _ => FileSource::Paths(Vec::new()),
        },
        "post-merge" => FileSource::Changed {
            from: "ORIG_HEAD".into(),
            to: "HEAD".into(),
        },
        _ => FileSource::Tracked { also: Vec::new() },
    };
    let asked = Args {
        steps: binding.steps.clone(),
        fix: binding.fix,
        msg_file,
        set_aside_unstaged: commit,
        ..Args::new(files)
    };
    let request = RunRequest::resolve(asked, &env, &config, color)?;
    let canceller = pipeline::cancel_on_signals()?;
    let (summary, restored, fixers) = match pipeline::run(&repo, &config, request, canceller)? {
        Outcome::Committed {
            summary,
            restored,
            fixers,
        } => (summary, restored, fixers),
        outcome => return Ok(outcome.exit_code()),
    };
    if !restored.rolled_back.is_empty() {
        report::warn(
            &format!(
                "the {} {} collided with your unstaged changes in the same files, so they \
                 were undone; your unstaged changes are back as they were{}.\n\
                 help: stage those files fully (`git add`) or stash your unstaged changes, then commit again",
                // Without fixers, only something outside preflight (an editor) can have changed them.
                if fixers { "fixes to" } else { "changes made while the steps ran to" },
                list(&restored.rolled_back),
                restored.undone_kept.as_ref().map_or_else(String::new, |dir| format!(
                    "; the undone versions (with any edit saved while the steps ran) are kept in {}",
                    dir.display()
                ))
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
    if summary.success()
        && let Some(code) = refuse_empty_commit(&repo, &restored.staged, color)?
    {
        return Ok(code);
    }
    if !restored.left_unstaged.is_empty() {
        let message = if summary.success() {
            "which are not part of this commit (left unstaged)"
        } else {
            "and the commit stopped, so the edits are left unstaged"
        };
        report::warn(
            &format!(
                "fixers changed {}, {message}",
                list(&restored.left_unstaged)
            ),
            color,
        );
    }
    Ok(pipeline::exit_code(&summary))
}

/// The configuration a hook runs by: the one `--config` names; for a commit, the copy staged
/// in the index, so that the commit is judged by the configuration it records; otherwise the
/// work tree's. `None` when there is none: a shim in a shared hooks folder also fires in
/// repositories without a config.
fn hook_config(cli: &Cli, repo: &Repo, name: &str, color: bool) -> Result<Option<Config>> {
    if cli.config.is_some() {
        return super::config_for(cli, repo).map(Some);
    }
    let in_work_tree = config::locate(&repo.root).ok();
    // Every hook of a commit, its message hooks too, judges what the commit records.
    if matches!(
        name,
        "pre-commit" | "pre-merge-commit" | "prepare-commit-msg" | "commit-msg"
    ) {
        for file_name in config::FILE_NAMES {
            let Some(bytes) = repo.staged_blob(Path::new(file_name))? else {
                continue;
            };
            let text = String::from_utf8(bytes).map_err(|_| {
                Error::Usage(format!("the staged {file_name} is not UTF-8 text"))
                    .hint(format!("fix the file, then `git add {file_name}`"))
            })?;
            let path = repo.root.join(file_name);
            return config::load_text(&path, &text, Some("staged")).map(Some);
        }
        // Said once per commit, by the hook that checks its files.
        let says = matches!(name, "pre-commit" | "pre-merge-commit");
        if let Some(path) = in_work_tree.as_ref().filter(|_| says) {
            let shown = config::display_path(path);
            report::warn(
                &format!(
                    "{shown} is not staged, so this commit does not record it; the hook runs by \
                     the work tree's copy\nhelp: `git add {shown}` to commit it"
                ),
                color,
            );
        }
    }
    in_work_tree.map(|path| config::load(&path)).transpose()
}

/// Stops a commit that the fixers emptied: they undid every staged change, yet git would
/// still record a commit with HEAD's tree. A merge may rightly do that, and a commit made
/// with nothing staged (`--allow-empty`) never gets here: no fixer had files to stage.
fn refuse_empty_commit(repo: &Repo, staged: &[PathBuf], color: bool) -> Result<Option<i32>> {
    if staged.is_empty() || repo.merge_in_progress() || !repo.index_matches_head()? {
        return Ok(None);
    }
    report::error(
        &format!(
            "the fixers undid every staged change (in {}), so this commit would be empty; \
             nothing was committed\n\
             help: the fixed files are staged and match HEAD; stage other changes and commit \
             again, or skip the hook once with PREFLIGHT=0 to record an empty commit",
            list(staged)
        ),
        color,
    );
    Ok(Some(exit::STEPS_FAILED))
}

/// pre-push judges what is pushed: each pushed commit (the tip of each pushed ref, peeled
/// from tags; refs sending the same commit are checked once) on the files its ref changes
/// on the remote, in that commit's content and with its own preflight.toml, never the work
/// tree. The push fails when any of them fails.
fn pre_push(
    cli: &Cli,
    repo: &Repo,
    work_tree_config: &Config,
    remote: &str,
    updates: &[PushUpdate],
    env: &Env,
    color: bool,
) -> Result<i32> {
    let pushed = pipeline::pushed_commits(repo, remote, updates)?;
    if pushed.is_empty() {
        report::warn(
            "this push sends no commit (it only deletes refs): nothing to check",
            color,
        );
        return Ok(exit::SUCCESS);
    }
    let canceller = pipeline::cancel_on_signals()?;
    let mut code = exit::SUCCESS;
    for p in pushed {
        let commit = repo.commit_content(p.commit)?;
        let refs = p.refs.join(", ");
        let config = match &cli.config {
            // A configuration named on the command line is used as it is.
            Some(_) => work_tree_config.clone(),
            None => match pipeline::committed_config(repo, &commit, color)? {
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
        let asked = Args {
            steps: binding.steps.clone(),
            fix: binding.fix,
            ..Args::new(FileSource::Pushed {
                commit: Box::new(commit),
                files: p.files.into_iter().collect(),
                refs,
            })
        };
        let request = RunRequest::resolve(asked, env, &config, color)?;
        let outcome = pipeline::run(repo, &config, request, Arc::clone(&canceller))?;
        if code == exit::SUCCESS {
            code = outcome.exit_code();
        }
        if outcome.summary().is_some_and(|s| s.interrupted) {
            break;
        }
    }
    Ok(code)
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
