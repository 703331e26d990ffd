//! `preflight audit [STEP...]`: what steps really read and wrote, from the observation
//! stored with each step's last cache entry; a step with none (or all of them with `--run`)
//! is run first, observed, through the same pipeline as `preflight run`.

use super::current_dir;
use crate::cache::observed::ObservedInputs;
use crate::cache::{self, Mode, Session};
use crate::cli::{AuditArgs, Cli};
use crate::config::{Config, Step};
use crate::error::{Error, Result, exit};
use crate::git;
use crate::pipeline::{self, Args, Env, FileSource, RunRequest};
use crate::report::{self, StepAudit};
use std::collections::{BTreeSet, HashSet};
use std::path::Path;

pub fn audit(cli: &Cli, args: &AuditArgs, color: bool) -> Result<i32> {
    let repo = git::discover(&current_dir()?)?;
    pipeline::recover_unstaged(&repo, color);
    let config = super::config_for(cli, &repo)?;
    for name in &args.steps {
        if !config.steps.contains_key(name) {
            return Err(Error::Usage(format!("no step named `{name}`")));
        }
    }
    let names: Vec<String> = if args.steps.is_empty() {
        config
            .steps
            .values()
            .filter(|s| cache::is_cached(s))
            .map(|s| s.name.clone())
            .collect()
    } else {
        args.steps.clone()
    };
    let format = super::report_format(args.format);
    let dir = cache::cache_dir(&config, &repo.root)?;
    let read_only = Mode {
        read: true,
        write: false,
        force: HashSet::new(),
        explain: false,
    };
    let session = Session::open(&config, &repo, &dir, read_only.clone())?;
    let to_run: Vec<String> = names
        .iter()
        .filter(|n| args.run || session.last_observation(n).is_none())
        .filter(|n| config.steps.get(*n).is_some_and(|s| session.observes(s)))
        .cloned()
        .collect();
    drop(session);
    if !to_run.is_empty() {
        run_observed(&repo, &config, &to_run, format, color)?;
    }
    let session = Session::open(&config, &repo, &dir, read_only)?;
    let home = Env::read().home;
    let audits: Vec<StepAudit> = names
        .iter()
        .filter_map(|n| config.steps.get(n))
        .map(|step| step_audit(&session, step, home.as_deref()))
        .collect();
    report::audit(&audits, format == report::Format::Json);
    Ok(exit::SUCCESS)
}

/// Runs the steps (and what they need) as `preflight run --force STEP...` would, so that
/// each is observed and its observation stored.
fn run_observed(
    repo: &git::Repo,
    config: &Config,
    steps: &[String],
    format: report::Format,
    color: bool,
) -> Result<()> {
    let asked = Args {
        steps: steps.to_vec(),
        force: steps.to_vec(),
        no_remote: true,
        format,
        ..Args::new(FileSource::Tracked { also: Vec::new() })
    };
    let request = RunRequest::resolve(asked, &Env::read(), config, color)?;
    pipeline::run(repo, config, request, pipeline::cancel_on_signals()?)?;
    Ok(())
}

fn step_audit(session: &Session, step: &Step, home: Option<&Path>) -> StepAudit {
    let mut audit = StepAudit {
        name: step.name.clone(),
        ..StepAudit::default()
    };
    if !cache::is_cached(step) {
        audit.unobserved = Some(
            "it is not cached (it has neither `inputs` nor `files`), so it is not observed".into(),
        );
        return audit;
    }
    if !session.observe_wanted(step) {
        audit.unobserved = Some("`observe = false`".into());
        return audit;
    }
    let Some(seen) = session.last_observation(&step.name) else {
        audit.unobserved = Some(match crate::observe::support() {
            crate::observe::Support::Unavailable(why) => why.clone(),
            crate::observe::Support::Available => {
                "no observation of its last run is stored (did it pass?)".into()
            }
        });
        return audit;
    };
    sort_out(&mut audit, step, &seen, session, home);
    audit
}

/// Sorts an observation into what the user may want to declare.
fn sort_out(
    audit: &mut StepAudit,
    step: &Step,
    seen: &ObservedInputs,
    session: &Session,
    home: Option<&Path>,
) {
    for f in &seen.files {
        match &f.found {
            // Only a folder's existence is recorded; `inputs` name files.
            Some(found) if found.mode == crate::cache::observed::FOLDER_MODE => {}
            Some(_) => audit.undeclared.push(f.path.to_string()),
            None => audit.probed.push(f.path.to_string()),
        }
    }
    if !audit.undeclared.is_empty() {
        let mut globs: Vec<String> = if step.inputs.is_empty() {
            step.files.clone()
        } else {
            step.inputs.clone()
        };
        globs.extend(audit.undeclared.iter().map(|p| glob_escape(p)));
        let quoted: Vec<String> = globs.iter().map(|g| toml_string(g)).collect();
        audit.inputs_line = Some(format!("inputs = [{}]", quoted.join(", ")));
    }
    // Declared inputs only mean "files it reads" when they are `inputs` (a step given
    // `{files}` reads those by definition).
    if !step.inputs.is_empty()
        && let Some(record) = session.last_record(&step.name)
    {
        let read: BTreeSet<String> = seen.declared_read.iter().map(|p| p.to_string()).collect();
        audit.unread = record
            .inputs
            .iter()
            .map(|i| i.path.to_string())
            .filter(|p| !read.contains(p))
            .collect();
    }
    audit.undeclared_writes = seen
        .written
        .iter()
        .map(|p| p.to_string())
        .filter(|p| {
            !step
                .outputs
                .iter()
                .any(|o| Path::new(p).starts_with(o.trim_end_matches('/')))
                && !p.starts_with(".git/")
        })
        .collect();
    let executed: BTreeSet<String> = seen.executed.iter().map(|p| p.to_string()).collect();
    if let Some(home) = home {
        audit.home = seen
            .outside
            .iter()
            .map(|p| p.to_path())
            .filter(|p| p.starts_with(home) && !executed.contains(&p.to_string_lossy().to_string()))
            .map(|p| p.display().to_string())
            .collect();
    }
    audit.programs = executed.into_iter().collect();
}

/// A path as a glob that matches only itself.
fn glob_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\' | '!') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
