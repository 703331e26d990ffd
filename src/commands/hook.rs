//! `preflight hook NAME [ARGS]`: what the installed shims call. Runs the steps `[hooks]` binds
//! to NAME on that hook's files; around pre-commit, unstaged work is set aside and put back.

use super::current_dir;
use super::run::{self, Output};
use crate::cli::{Cli, HookArgs, OutputFormat};
use crate::config::{self, Config};
use crate::error::{Error, Result, exit};
use crate::filetypes::{Contents, WorkTree};
use crate::git::{self, PushUpdate, Repo};
use crate::hooks::stash::Stash;
use crate::plan::{self, Selection};
use crate::process::Canceller;
use crate::report;
use std::io::Read as _;
use std::path::{Path, PathBuf};

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
        return pre_push(cli, &repo, &config, remote, &updates, color);
    }
    let Some(binding) = config.hooks.get(name) else {
        return Ok(exit::SUCCESS);
    };

    let mut msg_file = None;
    let file_set = match name {
        "pre-commit" | "pre-merge-commit" => repo.staged_files()?,
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
    // File types are told from what the hook judges: the index for a commit.
    let work_tree = WorkTree { root: &repo.root };
    let stored = match name {
        "pre-commit" | "pre-merge-commit" => Some(repo.staged_contents()?),
        _ => None,
    };
    let contents: &dyn Contents = match &stored {
        Some(stored) => stored,
        None => &work_tree,
    };
    let plan = plan::build(&config, &selection, &file_set, contents)?;
    let fixers = plan.steps.iter().any(|s| s.fixes);
    let output = hook_output(color);

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
    // Steps that get files see only staged files; a step without `files`, or whose command
    // does not take `{files}`, reads the whole tree, and a fixer may write anywhere.
    let whole_tree = plan
        .steps
        .iter()
        .any(|s| (s.files.is_none() || !s.command.uses_files() || s.fixes) && s.skip.is_none());
    let stash = Stash::save(&repo, (!whole_tree).then_some(file_set.as_slice()), fixers)?;
    let cache = super::cache::default_session(&config, &repo)?;
    let summary = run::execute(&repo, &config, plan, &output, None, Some(cache), canceller);
    let stage: &[PathBuf] = if summary.success() { &file_set } else { &[] };
    let restored = stash.restore(fixers, stage)?;
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
    Ok(run::exit_code(&summary))
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
    let output = hook_output(color);
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
        // File types are told from the pushed commit's own files.
        let contents = repo.commits_contents(&[&commit.id.to_string()])?;
        let plan = plan::build(&config, &selection, &files, &contents)?;
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
        let origin = format!("in the pushed commit {}", commit.short_id());
        let loaded = config::load_text(&repo.root.join(name), &source, Some(&origin));
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

/// How every hook reports: plain human lines, checks watched for writes, the remote as the
/// environment says (`PREFLIGHT_REMOTE_CACHE`).
fn hook_output(color: bool) -> Output {
    Output {
        jobs: None,
        fail_fast: false,
        verbose: false,
        format: OutputFormat::Human,
        color,
        ci: false,
        remote: crate::remote::Overrides::from_env(),
        guard_writes: true,
    }
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
