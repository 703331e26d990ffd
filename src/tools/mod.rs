//! Managed tools: the programs of `[tools]`, resolved into `preflight.lock`, installed into
//! a store shared by every repository, and put first on the PATH of the steps that use them.
//!
//! Here: the public API ([`ensure`], [`lock`], [`Ready`], [`Policy`], [`Event`]); below:
//! `lockfile` (the lock file and a tool's identity), `store` (the shared store: folders,
//! markers, the install transaction, listing), `client` (running pip, npm, cargo), and one
//! module per backend (`pypi`, `npm`, `cargo`, `url`), each of which installs nothing
//! outside the temp folder it is given.
//!
//! Imports config (the specs), error, lock and atomic; never exec, cache, pipeline, report
//! or the commands: they call this module, and it tells them what happens through
//! [`Event`] values.

mod cargo;
mod client;
mod fetch;
mod lockfile;
mod npm;
mod pypi;
mod store;
mod url;

pub use crate::config::{ToolSource, ToolSpec};
pub use lockfile::{Artifact, Identity, LOCK_FILE, LockFile, LockedTool, lock_path};
pub use store::{Marker, Store};

use crate::config::Config;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A tool ready to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// The folder of its commands, to put first on PATH.
    pub bin: PathBuf,
    pub identity: Identity,
}

/// How strict a run is about the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// A missing or stale entry is resolved and the lock written (a first use).
    Update,
    /// The lock must hold every tool as `[tools]` says it: `--locked`, `run --ci`.
    Locked,
}

/// What happens while tools are made ready, for the caller to show.
#[derive(Debug, Clone)]
pub enum Event {
    /// A tool is being resolved against its registry (the lock lacks it).
    Resolving { name: String, spec: String },
    /// A tool is being installed into the store.
    Installing { name: String, spec: String },
    /// It was installed.
    Installed { name: String, took: Duration },
    /// The lock was written with new entries.
    LockWritten { path: PathBuf, names: Vec<String> },
}

/// The tool store of the cache folder `cache_dir`.
pub fn store_in(cache_dir: &Path) -> Store {
    Store::under(cache_dir)
}

/// Makes the tools `names` of `config` ready: read from the lock beside the configuration,
/// installed into `store` when missing (and resolved and locked first when the lock lacks
/// them, unless `policy` is `Locked`). When every tool is installed this reads the lock and
/// stats one file per tool, nothing more.
pub fn ensure(
    config: &Config,
    names: &[String],
    store: &Store,
    policy: Policy,
    on_event: &mut dyn FnMut(Event),
) -> Result<HashMap<String, Ready>> {
    ensure_with(config, names, store, policy, false, on_event)
}

/// As [`ensure`], and every installed tool's marker is read and checked against the lock:
/// a folder that says it is another tool is installed again (`preflight tools install`).
pub fn install(
    config: &Config,
    names: &[String],
    store: &Store,
    policy: Policy,
    on_event: &mut dyn FnMut(Event),
) -> Result<HashMap<String, Ready>> {
    ensure_with(config, names, store, policy, true, on_event)
}

fn ensure_with(
    config: &Config,
    names: &[String],
    store: &Store,
    policy: Policy,
    verify: bool,
    on_event: &mut dyn FnMut(Event),
) -> Result<HashMap<String, Ready>> {
    // `--locked` (and `run --ci`) checks the installed files as `tools install` does; a
    // plain run or a hook keeps the one-stat-per-command check.
    let verify = verify || policy == Policy::Locked;
    let mut ready = HashMap::new();
    if names.is_empty() {
        return Ok(ready);
    }
    let path = lock_path(&config.path);
    let existing = LockFile::read(&path)?;
    let mut lock = existing.clone().unwrap_or(LockFile {
        version: lockfile::LOCK_VERSION,
        tools: Vec::new(),
    });
    let mut added = Vec::new();
    let mut wanted = Vec::new();
    for name in names {
        let Some(spec) = config.tools.get(name) else {
            return Err(Error::Usage(format!("no tool named `{name}` in [tools]")));
        };
        let locked = match lock.get(name).filter(|l| usable(l, spec)) {
            Some(locked) => locked.clone(),
            None => {
                if policy == Policy::Locked {
                    return Err(not_locked(&path, spec, existing.is_some(), lock.get(name)));
                }
                on_event(Event::Resolving {
                    name: name.clone(),
                    spec: spec.canonical(),
                });
                let locked = resolve(spec)?;
                lock.put(locked.clone());
                added.push(name.clone());
                locked
            }
        };
        wanted.push((spec, locked));
    }
    // The lock is written once everything is resolved, whatever the installs then do: read
    // again under its lock and merged, so that a run resolving other tools meanwhile keeps
    // its entries.
    if !added.is_empty() {
        let _guard = store.lock_lockfile(&path)?;
        let mut current = LockFile::read(&path)?.unwrap_or(LockFile {
            version: lockfile::LOCK_VERSION,
            tools: Vec::new(),
        });
        for name in &added {
            if let Some(entry) = lock.get(name) {
                current.put(entry.clone());
            }
        }
        current.write(&path)?;
        on_event(Event::LockWritten { path, names: added });
    }
    // Computed once: an npm tool's identity hashes its whole tree.
    let identities: Vec<Identity> = wanted.iter().map(|(_, l)| l.identity()).collect();
    let missing: Vec<&(&ToolSpec, LockedTool)> = wanted
        .iter()
        .zip(&identities)
        .filter(|(_, identity)| verify || !store.check_and_touch(identity))
        .map(|(tool, _)| tool)
        .collect();
    install_all(store, &missing, verify, on_event)?;
    for ((spec, _), identity) in wanted.iter().zip(identities) {
        ready.insert(
            spec.name.clone(),
            Ready {
                bin: store.dir_of(&identity).join("bin"),
                identity,
            },
        );
    }
    Ok(ready)
}

/// Installs several tools at once (each backend waits on the network and its client, not
/// on this machine's cores); the first error is returned once all have finished, so that
/// none is left half-done.
fn install_all(
    store: &Store,
    tools: &[&(&ToolSpec, LockedTool)],
    verify: bool,
    on_event: &mut dyn FnMut(Event),
) -> Result<()> {
    if let [(spec, locked)] = tools {
        return install_checked(store, spec, locked, verify, on_event).map(|_| ());
    }
    let (tx, rx) = std::sync::mpsc::channel::<Event>();
    std::thread::scope(|scope| {
        let handles: Vec<_> = tools
            .iter()
            .map(|(spec, locked)| {
                let tx = tx.clone();
                scope.spawn(move || {
                    install_checked(store, spec, locked, verify, &mut |e| {
                        let _ = tx.send(e);
                    })
                })
            })
            .collect();
        drop(tx);
        for event in rx {
            on_event(event);
        }
        let mut first = None;
        for handle in handles {
            let result = handle.join().unwrap_or_else(|_| {
                Err(Error::Setup("a tool install stopped unexpectedly".into()))
            });
            if let Err(e) = result {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    })
}

/// The identities the lock gives the tools of `config` as `[tools]` says them, without
/// installing anything (for `explain`, which must key steps as a run would). Tools the lock
/// lacks, or holds for another spec, are left out.
pub fn locked_identities(config: &Config) -> HashMap<String, String> {
    let Ok(Some(lock)) = LockFile::read(&lock_path(&config.path)) else {
        return HashMap::new();
    };
    config
        .tools
        .iter()
        .filter_map(|(name, spec)| {
            let locked = lock.get(name).filter(|l| usable(l, spec))?;
            Some((name.clone(), locked.identity().describe()))
        })
        .collect()
}

/// Whether a lock entry may be used for `spec`: resolved from it, and installing what it
/// names.
fn usable(locked: &LockedTool, spec: &ToolSpec) -> bool {
    locked.matches(spec) && locked.agrees_with(spec).is_ok()
}

/// The error for a tool the lock lacks or holds for another spec, under `--locked`.
fn not_locked(
    path: &Path,
    spec: &ToolSpec,
    lock_exists: bool,
    entry: Option<&LockedTool>,
) -> Error {
    let shown = crate::config::display_path(path);
    let message = match (lock_exists, entry) {
        (false, _) => format!(
            "tool `{}`: there is no {shown}, and --locked forbids resolving tools",
            spec.name
        ),
        (true, None) => format!("tool `{}` is not in {shown} (--locked)", spec.name),
        (true, Some(entry)) => match entry.agrees_with(spec) {
            Err(why) if entry.matches(spec) => format!(
                "tool `{}`: its entry in {shown} does not agree with [tools]: {why} (--locked)",
                spec.name
            ),
            _ => format!(
                "tool `{}`: {shown} is stale: it locks `{}`, [tools] says `{}` (--locked)",
                spec.name,
                entry.spec,
                spec.canonical()
            ),
        },
    };
    Error::Usage(message).hint("run `preflight tools lock` and commit preflight.lock")
}

/// Resolves one spec against its registry.
pub fn resolve(spec: &ToolSpec) -> Result<LockedTool> {
    match &spec.source {
        ToolSource::Pypi { package, version } => pypi::resolve(spec, package, version),
        ToolSource::Npm { package, version } => npm::resolve(spec, package, version),
        ToolSource::Cargo { package, version } => cargo::resolve(spec, package, version),
        ToolSource::Url { .. } => url::resolve(spec),
    }
}

/// Installs one locked tool into the store (nothing when it is there).
pub fn install_one(
    store: &Store,
    spec: &ToolSpec,
    locked: &LockedTool,
    on_event: &mut dyn FnMut(Event),
) -> Result<bool> {
    install_checked(store, spec, locked, false, on_event)
}

/// As [`install_one`]; with `verify`, an installed copy whose files no longer have the
/// digest recorded when it was installed is installed again.
fn install_checked(
    store: &Store,
    spec: &ToolSpec,
    locked: &LockedTool,
    verify: bool,
    on_event: &mut dyn FnMut(Event),
) -> Result<bool> {
    if let Err(why) = locked.agrees_with(spec) {
        return Err(Error::Usage(format!(
            "tool `{}`: its entry in preflight.lock does not agree with [tools]: {why}",
            spec.name
        ))
        .hint("run `preflight tools lock`"));
    }
    let identity = locked.identity();
    // A folder that says it is another tool or lacks a command is replaced (under the
    // tool's lock, by `store.install`), never used.
    if store.check_and_touch(&identity) && (!verify || store.intact(&identity)) {
        return Ok(false);
    }
    on_event(Event::Installing {
        name: spec.name.clone(),
        spec: spec.canonical(),
    });
    let started = Instant::now();
    let installed = store.install(locked, verify, |temp, dest| match &spec.source {
        ToolSource::Pypi { .. } => pypi::install(locked, temp, dest),
        ToolSource::Npm { .. } => npm::install(locked, temp),
        ToolSource::Cargo { .. } => cargo::install(locked, temp),
        ToolSource::Url { .. } => url::install(spec, locked, temp),
    })?;
    if installed {
        on_event(Event::Installed {
            name: spec.name.clone(),
            took: started.elapsed(),
        });
    }
    Ok(installed)
}

/// Resolves `names` (all of `[tools]` when empty) and writes the lock: entries that match
/// `[tools]` are kept unless `update` names them (or is `Some` and empty: all), entries of
/// tools no longer in `[tools]` are dropped. Returns the lock written.
pub fn lock(
    config: &Config,
    store: &Store,
    update: Option<&[String]>,
    on_event: &mut dyn FnMut(Event),
) -> Result<LockFile> {
    let path = lock_path(&config.path);
    // Held while resolving: a run adding entries meanwhile waits, then merges into this.
    let _guard = store.lock_lockfile(&path)?;
    // An unreadable lock (conflict markers, say) is written again from [tools]: the caller
    // says so (`LockFile::read_for_rewrite`).
    let old = LockFile::read_for_rewrite(&path)?.0.unwrap_or(LockFile {
        version: lockfile::LOCK_VERSION,
        tools: Vec::new(),
    });
    if let Some(names) = update {
        for name in names {
            if !config.tools.contains_key(name) {
                return Err(unknown_tool(config, name));
            }
        }
    }
    let mut new = LockFile {
        version: lockfile::LOCK_VERSION,
        tools: Vec::new(),
    };
    let mut changed = Vec::new();
    for (name, spec) in &config.tools {
        let forced = update.is_some_and(|names| names.is_empty() || names.contains(name));
        match old.get(name).filter(|l| usable(l, spec) && !forced) {
            Some(kept) => new.put(kept.clone()),
            None => {
                on_event(Event::Resolving {
                    name: name.clone(),
                    spec: spec.canonical(),
                });
                let locked = resolve(spec)?;
                if old.get(name) != Some(&locked) {
                    changed.push(name.clone());
                }
                new.put(locked);
            }
        }
    }
    if new != old || !path.exists() {
        new.write(&path)?;
        on_event(Event::LockWritten {
            path,
            names: changed,
        });
    }
    Ok(new)
}

/// The error for a name that is not in `[tools]`.
pub fn unknown_tool(config: &Config, name: &str) -> Error {
    let hint = match crate::config::did_you_mean(name, config.tools.keys().map(String::as_str)) {
        Some(s) => format!("did you mean `{s}`?"),
        None if config.tools.is_empty() => "preflight.toml has no [tools]".into(),
        None => format!(
            "the tools are: {}",
            config.tools.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    };
    Error::Usage(format!("no tool named `{name}` in [tools]")).hint(hint)
}

/// The PATH a step with these tools' bin folders gets: them first, then `inherited`.
pub fn path_with(bins: &[&Path], inherited: Option<&std::ffi::OsStr>) -> std::ffi::OsString {
    let mut parts: Vec<PathBuf> = bins.iter().map(|b| b.to_path_buf()).collect();
    if let Some(inherited) = inherited {
        parts.extend(std::env::split_paths(inherited));
    }
    std::env::join_paths(parts).unwrap_or_else(|_| inherited.unwrap_or_default().to_os_string())
}
