//! `preflight tools install|list|lock|update|prune|which`: the managed tools of `[tools]`
//! from the command line. Progress is a spinner per tool on a terminal, plain lines
//! otherwise.

use super::{current_dir, load_config};
use crate::cache;
use crate::cli::{Cli, ToolsCommand};
use crate::config::{self, Config};
use crate::error::{Error, Result, exit};
use crate::git;
use crate::pipeline::Env;
use crate::report;
use crate::tools::{self, Event, LockFile, Policy, Store};
use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

pub fn tools(cli: &Cli, command: &ToolsCommand, color: bool) -> Result<i32> {
    let config = load_config(cli)?;
    let root = match &cli.config {
        Some(path) => path
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default(),
        None => git::discover(&current_dir()?)?.root,
    };
    let store = tools::store_in(&cache::cache_dir(&config, &root)?);
    let mut progress = Progress::new(color);
    match command {
        ToolsCommand::Install { names, locked } => {
            let names = pick(&config, names)?;
            let policy = match locked {
                true => Policy::Locked,
                false => Policy::Update,
            };
            let ready = tools::install(&config, &names, &store, policy, &mut |e| progress.event(e));
            progress.finish();
            let ready = ready?;
            report::print(&format!(
                "{} tool{} ready in {}\n",
                ready.len(),
                if ready.len() == 1 { "" } else { "s" },
                store.root.display()
            ));
        }
        ToolsCommand::Lock => {
            say_if_unreadable(&config, color);
            let lock = tools::lock(&config, &store, None, &mut |e| progress.event(e));
            progress.finish();
            let lock = lock?;
            report::print(&format!(
                "{} tool{} locked in {}\n",
                lock.tools.len(),
                if lock.tools.len() == 1 { "" } else { "s" },
                config::display_path(&tools::lock_path(&config.path))
            ));
        }
        ToolsCommand::Update { names } => {
            say_if_unreadable(&config, color);
            let lock = tools::lock(&config, &store, Some(names), &mut |e| progress.event(e));
            progress.finish();
            lock?;
        }
        ToolsCommand::List => list(&config, &store)?,
        ToolsCommand::Prune { days, keep } => prune(&config, &store, *days, *keep)?,
        ToolsCommand::Which { name } => {
            let found = which(&config, &store, name, &mut progress);
            progress.finish();
            report::print(&format!("{}\n", found?.display()));
        }
    }
    Ok(exit::SUCCESS)
}

/// The named tools, checked, or every tool.
fn pick(config: &Config, names: &[String]) -> Result<Vec<String>> {
    if names.is_empty() {
        return Ok(config.tools.keys().cloned().collect());
    }
    for name in names {
        if !config.tools.contains_key(name) {
            return Err(tools::unknown_tool(config, name));
        }
    }
    Ok(names.to_vec())
}

fn list(config: &Config, store: &Store) -> Result<()> {
    let lock = LockFile::read(&tools::lock_path(&config.path))?;
    let mut out = String::new();
    for (name, spec) in &config.tools {
        let entry = lock
            .as_ref()
            .and_then(|l| l.get(name))
            .filter(|l| l.matches(spec));
        let state = match entry {
            None => "not locked".to_string(),
            Some(locked) => {
                let id = locked.identity();
                match store.marker(&id) {
                    Some(m) => format!(
                        "installed: {} in {}",
                        m.commands.join(", "),
                        store.dir_of(&id).join("bin").display()
                    ),
                    None => format!("locked {}, not installed", locked.version),
                }
            }
        };
        out.push_str(&format!("{name:<16} {:<40} {state}\n", spec.canonical()));
    }
    if config.tools.is_empty() {
        out.push_str("no [tools] in the configuration\n");
    }
    report::print(&out);
    Ok(())
}

/// Says that the lock cannot be read and will be written again from `[tools]`.
fn say_if_unreadable(config: &Config, color: bool) {
    if let Ok((_, Some(why))) = LockFile::read_for_rewrite(&tools::lock_path(&config.path)) {
        report::warn(&format!("{why}; writing it again"), color);
    }
}

/// Removes tools unused for `days`, then the least recently used beyond `keep`; the tools
/// this repository's lock holds stay, and so do tools in use (installing, or used within
/// the last hour: a step may be running them).
fn prune(config: &Config, store: &Store, days: u64, keep: Option<usize>) -> Result<()> {
    let kept: Vec<String> = LockFile::read(&tools::lock_path(&config.path))
        .ok()
        .flatten()
        .map(|l| l.tools.iter().map(|t| t.identity().integrity).collect())
        .unwrap_or_default();
    let mut installed = store.installed();
    // Most recently used first.
    installed.sort_by_key(|i| std::cmp::Reverse(i.2));
    let bound = SystemTime::now()
        .checked_sub(Duration::from_secs(days.saturating_mul(24 * 3600)))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut removed = 0usize;
    let mut freed_lines = String::new();
    for (rank, (dir, marker, used)) in installed.into_iter().enumerate() {
        let ours = kept.contains(&marker.integrity);
        let too_old = used < bound;
        let too_many = keep.is_some_and(|k| rank >= k);
        if ours || !(too_old || too_many) {
            continue;
        }
        let gone = store
            .remove_unused(&dir, &marker)
            .map_err(|e| Error::io(format!("cannot remove {}", dir.display()), e))?;
        if !gone {
            continue;
        }
        removed += 1;
        freed_lines.push_str(&format!(
            "removed {} {}:{}@{}\n",
            marker.name, marker.backend, marker.package, marker.version
        ));
    }
    report::print(&format!(
        "{freed_lines}{removed} tool{} removed\n",
        if removed == 1 { "" } else { "s" }
    ));
    Ok(())
}

/// The path of `name`'s command: a tool (its command of the same name, else its only one)
/// or a command that one of the tools provides.
fn which(
    config: &Config,
    store: &Store,
    name: &str,
    progress: &mut Progress,
) -> Result<std::path::PathBuf> {
    let candidates: Vec<String> = if config.tools.contains_key(name) {
        vec![name.to_string()]
    } else {
        config.tools.keys().cloned().collect()
    };
    let ready = tools::ensure(config, &candidates, store, Policy::Update, &mut |e| {
        progress.event(e)
    })?;
    for tool in &candidates {
        let Some(r) = ready.get(tool) else { continue };
        let Some(marker) = store.marker(&r.identity) else {
            continue;
        };
        let command = if marker.commands.iter().any(|c| c == name) {
            Some(name.to_string())
        } else if tool == name && marker.commands.len() == 1 {
            marker.commands.first().cloned()
        } else {
            None
        };
        if let Some(command) = command {
            return Ok(r.bin.join(command));
        }
    }
    Err(tools::unknown_tool(config, name))
}

/// Progress while tools are resolved and installed: a spinner on a terminal, plain lines
/// otherwise (CI logs, pipes).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    live: bool,
    color: bool,
}

impl Progress {
    fn new(color: bool) -> Progress {
        Progress {
            bar: None,
            live: std::io::stderr().is_terminal() && Env::read().live_display(),
            color,
        }
    }

    fn event(&mut self, event: Event) {
        let line = report::tool_progress(&event);
        if !self.live {
            report::warn(&line, self.color);
            return;
        }
        match event {
            Event::Resolving { .. } | Event::Installing { .. } => {
                let bar = self.bar.get_or_insert_with(|| {
                    let bar = indicatif::ProgressBar::new_spinner();
                    bar.enable_steady_tick(Duration::from_millis(100));
                    bar
                });
                bar.set_message(line);
            }
            Event::Installed { .. } | Event::LockWritten { .. } => match &self.bar {
                Some(bar) => bar.println(line),
                None => report::warn(&line, self.color),
            },
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
