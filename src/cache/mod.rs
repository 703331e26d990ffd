//! The content-hash cache: a step's key from its inputs, a lookup that restores its outputs
//! and replays its log on a hit, and a store after it passes.
//!
//! A `Session` is one run's view of the cache, shared by the executor's workers. Keys are
//! computed when a step is about to start (its needs have finished, so their keys are known
//! and the files they wrote are seen).
//!
//! What lives here: where the cache is (`cache_dir`), how a run uses it (`Mode`), the
//! session and each step's key (this file); hits, misses and storing (`lookup`); the key
//! record (`key`, `inputs`, `key_command`, `explain`); declared outputs (`outputs`); the
//! store on disk (`store`), kept bounded by `gc`.
//!
//! What it must not import: the reporter (`report`), the executor (`exec`), the commands,
//! the command line (`cli`), or the remote (`remote` builds on the cache, never the other
//! way round). It says what happened through values (`Lookup`, `NotSaved`, typed errors);
//! the callers put them into words.

mod blob_id;
pub mod explain;
mod gc;
pub mod inputs;
pub mod key;
pub mod key_command;
mod lookup;
pub mod observed;
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
use store::Store;

pub use lookup::{Lookup, NotImported, NotSaved, StepNotSaved};

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
            Error::Setup("cannot find a cache folder: HOME is not set".into())
                .hint("set PREFLIGHT_CACHE_DIR or `[settings] cache_dir`")
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

/// An `inputs` glob that matches files on disk, below `folder`, but only ones git ignores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredInput {
    pub glob: String,
    pub folder: PathBuf,
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
    index: Arc<IndexSnapshot>,
    salt: String,
    max: u64,
    pub mode: Mode,
    env: IndexMap<String, String>,
    /// Bumped whenever a step really runs: files it wrote may be new inputs of later steps.
    generation: AtomicU64,
    untracked: Mutex<HashMap<Option<Vec<PathBuf>>, Listing>>,
    key_commands: Mutex<HashMap<(PathBuf, String), KeyCommand>>,
    stored: AtomicBool,
    /// Whether a failure to write the store was already reported.
    store_failure_said: AtomicBool,
    /// The identities of the run's managed tools, by name (see `with_tools`).
    tools: HashMap<String, String>,
    /// `[settings] observe`: steps' file reads may be observed.
    observe: bool,
    /// Whether the system's inability to observe was already reported.
    unobservable_said: AtomicBool,
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
        outputs::check_output_folders(config, &index)?;
        Ok(Session::with_index(config, repo, dir, mode, index))
    }

    /// The work tree's index as this session read it when it opened, for others that need
    /// the same snapshot at the same moment (the write guard); `None` when it keys a commit
    /// or did not read the index.
    pub fn work_tree_index(&self) -> Option<Arc<IndexSnapshot>> {
        (!self.from_commit && self.index.path.is_some()).then(|| Arc::clone(&self.index))
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
            index: Arc::new(index),
            salt: config.settings.salt.clone(),
            max: config.settings.cache_max,
            mode,
            env: config.env.clone(),
            generation: AtomicU64::new(0),
            untracked: Mutex::new(HashMap::new()),
            key_commands: Mutex::new(HashMap::new()),
            stored: AtomicBool::new(false),
            store_failure_said: AtomicBool::new(false),
            tools: HashMap::new(),
            observe: config.settings.observe,
            unobservable_said: AtomicBool::new(false),
        }
    }

    /// The same session, keying each step on the identities of the tools it uses
    /// (name → identity): a step's `tools` are part of its key.
    pub fn with_tools(mut self, tools: HashMap<String, String>) -> Session {
        self.tools = tools;
        self
    }

    /// The digests of some candidate inputs, from the work tree or from the commit.
    fn digest(&self, candidates: &[Candidate]) -> Result<(Vec<inputs::InputFile>, HashStats)> {
        if self.from_commit {
            return Ok(inputs::digest_from_tree(candidates));
        }
        inputs::digest_all(&self.root, &self.index, candidates)
            .map_err(|e| Error::io("cannot read an input file", e))
    }

    /// True the first time a failure to write the store is reported in this run.
    pub fn first_store_failure(&self) -> bool {
        !self.store_failure_said.swap(true, Ordering::SeqCst)
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
    /// steps it needs with their keys (they have finished: their outputs are on disk).
    pub fn key(
        &self,
        step: &Step,
        files: Option<&[PathBuf]>,
        needed: &[(&Step, String)],
    ) -> Result<Keyed> {
        let (inputs_from, inputs, stats) = match (&step.input_matcher, &step.matcher, files) {
            (Some(matcher), _, _) => {
                let (inputs, stats) =
                    self.matching_files(matcher, glob_roots(&step.inputs), None)?;
                (InputsFrom::Inputs, inputs, stats)
            }
            // A command without `{files}` reads whatever it reads: every file its globs
            // match, not only the selected ones.
            (None, Some(matcher), Some(_)) if !step.run.uses_files() => {
                let (inputs, stats) =
                    self.matching_files(matcher, glob_roots(&step.files), step.dir.as_deref())?;
                (InputsFrom::AllFiles, inputs, stats)
            }
            (None, _, Some(files)) => {
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
            (None, _, None) => (InputsFrom::Nothing, Vec::new(), HashStats::default()),
        };
        let mut needs = BTreeMap::new();
        let mut needs_outputs = BTreeMap::new();
        for (need, key) in needed {
            needs.insert(need.name.clone(), key.clone());
            if !need.outputs.is_empty() {
                needs_outputs.insert(need.name.clone(), self.outputs_digest(&need.outputs)?);
            }
        }
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
            needs_outputs,
            inputs_from,
            inputs,
            tools: step
                .tools
                .iter()
                .filter_map(|t| Some((t.clone(), self.tools.get(t)?.clone())))
                .collect(),
        };
        let (bytes, key) = record.canonical();
        Ok(Keyed {
            key,
            record,
            bytes,
            stats,
        })
    }

    /// Every file `matcher` matches in the work tree (tracked, or untracked and not ignored;
    /// below `under` when given), and the submodules whose content it may match.
    fn matching_files(
        &self,
        matcher: &crate::files::Matcher,
        roots: Option<Vec<PathBuf>>,
        under: Option<&Path>,
    ) -> Result<(Vec<inputs::InputFile>, HashStats)> {
        let wanted = |p: &Path| {
            matcher.is_match(p) && !self.in_store(p) && under.is_none_or(|d| p.starts_with(d))
        };
        let submodules = self.submodules(roots.as_deref(), &wanted)?;
        // Git lists the untracked files while the tracked ones are checked.
        let (tracked, untracked) = std::thread::scope(|scope| {
            let listing = scope.spawn(|| self.untracked(roots));
            let tracked: Vec<Candidate> = crate::lstat::in_file_pool(|| {
                self.index
                    .files
                    .par_iter()
                    .filter(|f| wanted(&f.path))
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
            .filter(|p| wanted(p))
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
        inputs.extend(submodules);
        inputs.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        inputs.dedup_by(|a, b| a.path == b.path);
        Ok((inputs, stats))
    }

    /// The submodules below the globs' literal folders (all of them when a glob can match
    /// anywhere) or matched themselves: each as an input of mode `160000` whose digest is the
    /// commit checked out in it, with its uncommitted changes when it has some (the index's
    /// commit when it is not checked out).
    fn submodules(
        &self,
        roots: Option<&[PathBuf]>,
        wanted: &dyn Fn(&Path) -> bool,
    ) -> Result<Vec<inputs::InputFile>> {
        let mut found = Vec::new();
        for (path, commit) in &self.index.gitlinks {
            let reachable = match roots {
                None => true,
                Some(roots) => roots
                    .iter()
                    .any(|r| r.starts_with(path) || path.starts_with(r)),
            };
            if !(reachable || wanted(path)) {
                continue;
            }
            // A commit's submodule is the commit its gitlink names; a work tree's, what is
            // checked out in it.
            let state = if self.from_commit {
                commit.clone()
            } else {
                git::submodule_state(&self.root, path)?.unwrap_or_else(|| commit.clone())
            };
            found.push(inputs::InputFile {
                path: inputs::RecordPath::new(path),
                mode: "160000".into(),
                digest: state,
            });
        }
        Ok(found)
    }

    /// A digest of what is on disk below some declared outputs: each file's path, mode and
    /// git blob id.
    fn outputs_digest(&self, declared: &[String]) -> Result<String> {
        let paths = outputs::files_below(&self.files_root, declared);
        let candidates: Vec<Candidate> = paths
            .iter()
            .map(|p| Candidate {
                path: p,
                entry: None,
            })
            .collect();
        let (files, _) = inputs::digest_all(&self.files_root, &self.index, &candidates)
            .map_err(|e| Error::io("cannot read an output of a needed step", e))?;
        let bytes = serde_json::to_vec(&files).map_err(|e| {
            Error::io(
                "cannot list the outputs of a needed step",
                std::io::Error::other(e),
            )
        })?;
        Ok(sha256_hex(&bytes))
    }

    /// Runs a `key_commands` entry once per run and folder; a plain call of a program is
    /// remembered in the store for as long as the program's file is the same.
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
        let memo = key_command::memo_id(cwd, command, env);
        let remembered = memo
            .as_deref()
            .and_then(|m| self.store.key_command(m))
            .filter(|k| k.command == command);
        let k = match remembered {
            Some(k) => k,
            None => {
                let k = key_command::run(cwd, command, env);
                if let Some(m) = &memo
                    && k.exit_code.is_some()
                {
                    self.store.remember_key_command(m, &k);
                }
                k
            }
        };
        self.key_commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, k.clone());
        k
    }

    /// `inputs` globs that match files on disk but no input: git ignores those files, and
    /// ignored files are never inputs. Folders that steps it needs declare as
    /// outputs are keyed through those steps, so they are not reported.
    pub fn unmatched_inputs(
        &self,
        step: &Step,
        keyed: &Keyed,
        needed: &[&Step],
    ) -> Vec<IgnoredInput> {
        let mut unmatched = Vec::new();
        for glob in &step.inputs {
            let Some(root) =
                glob_roots(std::slice::from_ref(glob)).and_then(|r| r.first().cloned())
            else {
                continue;
            };
            let produced = needed.iter().flat_map(|n| &n.outputs).any(|o| {
                let o = Path::new(o.trim_end_matches('/'));
                root.starts_with(o) || o.starts_with(&root)
            });
            if produced || !self.root.join(&root).exists() {
                continue;
            }
            let Ok(matcher) = crate::files::Matcher::new(std::slice::from_ref(glob), &[]) else {
                continue;
            };
            if !keyed
                .record
                .inputs
                .iter()
                .any(|i| matcher.is_match(&i.path.to_path()))
                && self.any_file_below(&root, &matcher)
            {
                unmatched.push(IgnoredInput {
                    glob: glob.clone(),
                    folder: root,
                });
            }
        }
        unmatched
    }

    /// Whether a file below `rel` (repository-relative) on disk matches: stops at the first.
    fn any_file_below(&self, rel: &Path, matcher: &crate::files::Matcher) -> bool {
        let mut stack = vec![rel.to_path_buf()];
        while let Some(at) = stack.pop() {
            let Ok(meta) = self.root.join(&at).symlink_metadata() else {
                continue;
            };
            if !meta.is_dir() {
                if matcher.is_match(&at) && !self.in_store(&at) {
                    return true;
                }
                continue;
            }
            if let Ok(children) = std::fs::read_dir(self.root.join(&at)) {
                stack.extend(children.flatten().map(|c| at.join(c.file_name())));
            }
        }
        false
    }
}

/// Whether a step is cached: it has `inputs` or `files`.
pub fn is_cached(step: &Step) -> bool {
    step.input_matcher.is_some() || step.matcher.is_some()
}
