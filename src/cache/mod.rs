//! The content-hash cache: a step's key from its inputs, a lookup that restores its outputs
//! and replays its log on a hit, and a store after it passes.
//!
//! A `Session` is one run's view of the cache, shared by the executor's workers. Keys are
//! computed when a step is about to start (its needs have finished, so their keys are known
//! and the files they wrote are seen).

pub mod explain;
pub mod inputs;
pub mod key;
pub mod outputs;
pub mod store;

use crate::config::{Config, Step};
use crate::error::{Error, Result};
use crate::git::{self, IndexSnapshot};
use indexmap::IndexMap;
use inputs::{Candidate, HashStats, glob_roots};
use key::{CommandRecord, InputsFrom, KEY_VERSION, KeyCommand, KeyRecord, sha256_hex};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use store::{ActionResult, ExecutionMetadata, Store};

/// Where the cache lives: `PREFLIGHT_CACHE_DIR` (relative to the current folder), else
/// `[settings] cache_dir` (relative to the repository root), else the user's cache folder.
pub fn cache_dir(config: &Config, repo_root: &Path) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PREFLIGHT_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Ok(std::path::absolute(PathBuf::from(dir)).unwrap_or_default());
    }
    if let Some(dir) = &config.settings.cache_dir {
        return Ok(repo_root.join(dir));
    }
    user_cache_dir()
        .map(|d| d.join("preflight"))
        .ok_or_else(|| {
            Error::Setup(
                "cannot find a cache folder: HOME is not set\n\
                 help: set PREFLIGHT_CACHE_DIR or `[settings] cache_dir`"
                    .into(),
            )
        })
}

fn user_cache_dir() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    if cfg!(target_os = "macos") {
        return home.map(|h| h.join("Library/Caches"));
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home.map(|h| h.join(".cache")))
}

/// How a run uses the cache.
#[derive(Debug, Clone)]
pub struct Mode {
    /// Look entries up (off with `--no-cache`).
    pub read: bool,
    /// Store passed results (off with `--no-cache` and `--dry-run`).
    pub write: bool,
    /// Steps that run even on a hit (`--force`).
    pub force: HashSet<String>,
    /// Say why each step ran.
    pub explain: bool,
}

/// A step's key and the record it was computed from.
#[derive(Debug, Clone)]
pub struct Keyed {
    pub key: String,
    pub record: KeyRecord,
    /// The record as hashed, stored beside the entry.
    pub bytes: Vec<u8>,
    pub stats: HashStats,
}

impl Keyed {
    /// Steps with neither `inputs` nor `files` have a key (their dependents use it) but are
    /// not cached.
    pub fn cacheable(&self) -> bool {
        self.record.inputs_from != InputsFrom::Nothing
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// Outputs restored; the step's log to replay.
    Hit { log: Vec<u8> },
    /// No entry: the step runs.
    Miss,
    /// An entry was there but could not be used: the step runs, and this says why.
    Unusable(String),
}

/// Untracked files below some folders (`None`: everywhere), as of a run generation.
type Listing = (u64, Arc<Vec<PathBuf>>);

/// One run's cache.
pub struct Session {
    root: PathBuf,
    /// Where outputs are restored and captured: the work tree, or a checkout of the commit
    /// being checked.
    files_root: PathBuf,
    /// The inputs are a commit's files (`index` holds its tree): their ids are taken as they
    /// are, and there are no untracked files.
    from_commit: bool,
    store: Store,
    /// The store's folder relative to the root, when it is inside the work tree: its files
    /// are never inputs.
    store_inside: Option<PathBuf>,
    index: IndexSnapshot,
    salt: String,
    max: u64,
    pub mode: Mode,
    env: IndexMap<String, String>,
    /// Bumped whenever a step really runs: files it wrote may be new inputs of later steps.
    generation: AtomicU64,
    untracked: Mutex<HashMap<Option<Vec<PathBuf>>, Listing>>,
    key_commands: Mutex<HashMap<(PathBuf, String), KeyCommand>>,
    stored: AtomicBool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("store", &self.store.dir())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn open(config: &Config, repo: &git::Repo, dir: &Path, mode: Mode) -> Result<Session> {
        let index = if config.steps.values().any(is_cached) {
            repo.index_snapshot()?
        } else {
            IndexSnapshot::default()
        };
        Ok(Session::with_index(config, repo, dir, mode, index))
    }

    /// A session that keys steps on a commit's files (`files`, read from its tree) instead
    /// of the work tree, and restores and captures outputs in `files_root` (where the steps
    /// run: the work tree when it is that commit, else a checkout of it).
    pub fn open_at_commit(
        config: &Config,
        repo: &git::Repo,
        dir: &Path,
        mode: Mode,
        files: IndexSnapshot,
        files_root: &Path,
    ) -> Session {
        let mut session = Session::with_index(config, repo, dir, mode, files);
        session.from_commit = true;
        session.files_root = files_root.to_path_buf();
        session
    }

    fn with_index(
        config: &Config,
        repo: &git::Repo,
        dir: &Path,
        mode: Mode,
        index: IndexSnapshot,
    ) -> Session {
        Session {
            root: repo.root.clone(),
            files_root: repo.root.clone(),
            from_commit: false,
            store: Store::new(dir),
            store_inside: std::path::absolute(dir)
                .ok()
                .and_then(|d| d.strip_prefix(&repo.root).ok().map(Path::to_path_buf))
                .filter(|d| !d.as_os_str().is_empty()),
            index,
            salt: config.settings.salt.clone(),
            max: config.settings.cache_max,
            mode,
            env: config.env.clone(),
            generation: AtomicU64::new(0),
            untracked: Mutex::new(HashMap::new()),
            key_commands: Mutex::new(HashMap::new()),
            stored: AtomicBool::new(false),
        }
    }

    /// The digests of some candidate inputs, from the work tree or from the commit.
    fn digest(&self, candidates: &[Candidate]) -> Result<(Vec<inputs::InputFile>, HashStats)> {
        if self.from_commit {
            return Ok(inputs::digest_from_tree(candidates));
        }
        inputs::digest_all(&self.root, &self.index, candidates)
            .map_err(|e| Error::io("cannot read an input file", e))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether the cache is used at all in this run.
    pub fn active(&self) -> bool {
        self.mode.read || self.mode.write || self.mode.explain
    }

    /// Records that a step really ran (its files may be inputs of the next ones).
    pub fn step_ran(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn untracked(&self, roots: Option<Vec<PathBuf>>) -> Result<Arc<Vec<PathBuf>>> {
        if self.from_commit {
            return Ok(Arc::new(Vec::new()));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let mut known = self.untracked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((g, files)) = known.get(&roots)
            && *g == generation
        {
            return Ok(Arc::clone(files));
        }
        let files = Arc::new(git::untracked_files(
            &self.root,
            roots.as_deref().unwrap_or(&[]),
        )?);
        known.insert(roots, (generation, Arc::clone(&files)));
        Ok(files)
    }

    fn in_store(&self, path: &Path) -> bool {
        self.store_inside
            .as_ref()
            .is_some_and(|d| path.starts_with(d))
    }

    /// The key of `step`, whose `files` the plan selected (relative to its `dir`), given the
    /// keys of the steps it needs.
    pub fn key(
        &self,
        step: &Step,
        files: Option<&[PathBuf]>,
        needs: BTreeMap<String, String>,
    ) -> Result<Keyed> {
        let (inputs_from, inputs, stats) = match (&step.input_matcher, files) {
            (Some(matcher), _) => {
                // Git lists the untracked files while the tracked ones are checked.
                let roots = glob_roots(&step.inputs);
                let (tracked, untracked) = std::thread::scope(|scope| {
                    let listing = scope.spawn(|| self.untracked(roots));
                    let tracked: Vec<Candidate> = inputs::pool().install(|| {
                        self.index
                            .files
                            .par_iter()
                            .filter(|f| matcher.is_match(&f.path) && !self.in_store(&f.path))
                            .map(|f| Candidate {
                                path: &f.path,
                                entry: Some(f),
                            })
                            .collect()
                    });
                    let tracked = self.digest(&tracked);
                    let untracked = listing.join().expect("the listing thread does not panic");
                    (tracked, untracked)
                });
                let (mut inputs, mut stats) = tracked?;
                let untracked = untracked?;
                let extra: Vec<Candidate> = untracked
                    .iter()
                    .filter(|p| matcher.is_match(p) && !self.in_store(p))
                    .map(|p| Candidate {
                        path: p,
                        entry: None,
                    })
                    .collect();
                if !extra.is_empty() {
                    let (more, more_stats) = self.digest(&extra)?;
                    inputs.extend(more);
                    stats.hashed += more_stats.hashed;
                    stats.hashed_bytes += more_stats.hashed_bytes;
                    stats.from_index += more_stats.from_index;
                }
                inputs.sort_unstable_by(|a, b| a.path.cmp(&b.path));
                inputs.dedup_by(|a, b| a.path == b.path);
                (InputsFrom::Inputs, inputs, stats)
            }
            (None, Some(files)) => {
                let mut paths: Vec<PathBuf> = files
                    .iter()
                    .map(|f| match &step.dir {
                        Some(d) => d.join(f),
                        None => f.clone(),
                    })
                    .collect();
                paths.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
                paths.dedup();
                let candidates: Vec<Candidate> = paths
                    .iter()
                    .map(|p| Candidate::lookup(&self.index, p))
                    .collect();
                let (inputs, stats) = self.digest(&candidates)?;
                (InputsFrom::Files, inputs, stats)
            }
            (None, None) => (InputsFrom::Nothing, Vec::new(), HashStats::default()),
        };
        let mut merged = self.env.clone();
        merged.extend(step.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let key_env = step
            .key_env
            .iter()
            .map(|name| {
                let value = match merged.get(name) {
                    Some(v) => Some(sha256_hex(v.as_bytes())),
                    None => std::env::var_os(name).map(|v| sha256_hex(v.as_encoded_bytes())),
                };
                (name.clone(), value)
            })
            .collect();
        let env = merged
            .iter()
            .map(|(k, v)| (k.clone(), sha256_hex(v.as_bytes())))
            .collect();
        let cwd = step
            .dir
            .as_ref()
            .map_or_else(|| self.root.clone(), |d| self.root.join(d));
        let key_commands = step
            .key_commands
            .iter()
            .map(|c| self.key_command(&cwd, c, &merged))
            .collect();
        let record = KeyRecord {
            version: KEY_VERSION,
            step: step.name.clone(),
            salt: self.salt.clone(),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            run: CommandRecord::from(&step.run),
            dir: step.dir.as_ref().map(|d| d.to_string_lossy().into_owned()),
            outputs: step.outputs.clone(),
            env,
            key_env,
            key_commands,
            needs,
            inputs_from,
            inputs,
        };
        let (bytes, key) = record.canonical();
        Ok(Keyed {
            key,
            record,
            bytes,
            stats,
        })
    }

    /// Runs a `key_commands` entry once per run and folder.
    fn key_command(&self, cwd: &Path, command: &str, env: &IndexMap<String, String>) -> KeyCommand {
        let id = (cwd.to_path_buf(), command.to_string());
        if let Some(k) = self
            .key_commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return k.clone();
        }
        let out = std::process::Command::new("sh")
            .args(["-c", command])
            .current_dir(cwd)
            .envs(env.iter())
            .stdin(std::process::Stdio::null())
            .output();
        let k = match out {
            Ok(out) => {
                let mut all = out.stdout.clone();
                all.push(0);
                all.extend_from_slice(&out.stderr);
                let text = String::from_utf8_lossy(if out.stdout.is_empty() {
                    &out.stderr
                } else {
                    &out.stdout
                })
                .into_owned();
                KeyCommand {
                    command: command.to_string(),
                    digest: sha256_hex(&all),
                    exit_code: out.status.code(),
                    first_line: text
                        .lines()
                        .next()
                        .unwrap_or("")
                        .chars()
                        .take(200)
                        .collect(),
                }
            }
            Err(e) => KeyCommand {
                command: command.to_string(),
                digest: sha256_hex(e.to_string().as_bytes()),
                exit_code: None,
                first_line: format!("cannot run: {e}"),
            },
        };
        self.key_commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, k.clone());
        k
    }

    /// Whether an entry exists for this key with all its blobs present (not read).
    pub fn has_entry(&self, keyed: &Keyed) -> bool {
        self.store.get(&keyed.key).is_some_and(|entry| {
            entry
                .blobs()
                .iter()
                .all(|d| self.store.blob_file(d).is_file())
        })
    }

    /// Looks the key up and, on a hit, restores the step's outputs.
    pub fn lookup(&self, step: &Step, keyed: &Keyed) -> Lookup {
        if !self.mode.read || !keyed.cacheable() {
            return Lookup::Miss;
        }
        let Ok(_lock) = self.store.shared_lock() else {
            return Lookup::Miss;
        };
        let Some(entry) = self.store.get(&keyed.key) else {
            return Lookup::Miss;
        };
        let log = match &entry.stdout_digest {
            None => Some(Vec::new()),
            Some(d) => self.store.read_verified(d),
        };
        let Some(log) = log else {
            self.store.evict(&keyed.key);
            return Lookup::Unusable(
                "its cache entry was damaged (the stored log is missing or corrupt) and was removed"
                    .into(),
            );
        };
        match outputs::restore(&self.files_root, &step.outputs, &entry, &self.store) {
            Ok(()) => {
                self.store.touch(&keyed.key);
                if self.mode.write {
                    self.store.set_last_key(&self.root, &step.name, &keyed.key);
                }
                Lookup::Hit { log }
            }
            Err(outputs::NotRestored::BadEntry(why)) => {
                self.store.evict(&keyed.key);
                Lookup::Unusable(format!(
                    "its cache entry was damaged ({why}) and was removed"
                ))
            }
            Err(why) => Lookup::Unusable(format!("its outputs could not be restored: {why}")),
        }
    }

    /// Why the step does not hit: lines for `--explain`.
    pub fn explain_miss(&self, step: &Step, keyed: &Keyed) -> Vec<String> {
        if !keyed.cacheable() {
            return vec!["not cached: the step has neither `inputs` nor `files`".into()];
        }
        if !self.mode.read {
            return vec!["the cache is off (--no-cache)".into()];
        }
        if self.mode.force.contains(&step.name) {
            return vec!["forced to run (--force)".into()];
        }
        let Some(last) = self.store.last_key(&self.root, &step.name) else {
            return vec!["no cache entry for this step yet".into()];
        };
        if last == keyed.key {
            return vec![
                "its key is unchanged but its cache entry is gone (evicted or cleared)".into(),
            ];
        }
        let Some(old) = self.store.record(&last) else {
            return vec![
                "its key changed; the entry it last used was evicted, so there is nothing to compare"
                    .into(),
            ];
        };
        let lines = explain::diff(&old, &keyed.record);
        if lines.is_empty() {
            vec!["its key changed".into()]
        } else {
            lines
        }
    }

    /// Files a result that came from elsewhere (the remote cache, a worker) as the entry
    /// of this key; `lookup` then restores it.
    pub fn import(&self, keyed: &Keyed, entry: &ActionResult) -> std::result::Result<(), String> {
        let _lock = self
            .store
            .shared_lock()
            .map_err(|e| format!("cannot lock the cache: {e}"))?;
        self.store
            .put(&keyed.key, entry, &keyed.bytes)
            .map_err(|e| format!("cannot write the cache entry: {e}"))?;
        self.stored.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Stores a passed step's outputs and log. `Err` says why it was not cached.
    pub fn save(
        &self,
        step: &Step,
        keyed: &Keyed,
        log: &[u8],
        started: SystemTime,
    ) -> std::result::Result<(), String> {
        if !self.mode.write || !keyed.cacheable() {
            return Ok(());
        }
        let _lock = self
            .store
            .shared_lock()
            .map_err(|e| format!("cannot lock the cache: {e}"))?;
        let captured = outputs::capture(&self.files_root, &step.outputs, &self.store)?;
        let stdout_digest = self
            .store
            .put_bytes(log)
            .map_err(|e| format!("cannot store the log: {e}"))?;
        let entry = ActionResult {
            output_files: captured.files,
            output_symlinks: captured.symlinks,
            output_directories: captured.directories,
            exit_code: 0,
            stdout_digest: Some(stdout_digest),
            stderr_digest: None,
            execution_metadata: ExecutionMetadata {
                worker: "preflight".into(),
                execution_start_timestamp: store::timestamp(started),
                execution_completed_timestamp: store::timestamp(SystemTime::now()),
            },
        };
        self.store
            .put(&keyed.key, &entry, &keyed.bytes)
            .map_err(|e| format!("cannot write the cache entry: {e}"))?;
        self.store.set_last_key(&self.root, &step.name, &keyed.key);
        self.stored.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// After a run that stored something: evicts old entries when the store is over its bound
    /// (unless another preflight is writing right now; it will do it).
    pub fn finish(&self) {
        if self.stored.load(Ordering::SeqCst) && self.store.size() > self.max {
            let _ = self.store.gc(self.max, false);
        }
    }
}

/// Whether a step is cached: it has `inputs` or `files`.
pub fn is_cached(step: &Step) -> bool {
    step.input_matcher.is_some() || step.matcher.is_some()
}
