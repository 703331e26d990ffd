//! Using a key: looking it up (restoring the outputs and replaying the log on a hit),
//! saying why a step missed, filing a result that came from elsewhere, and storing a passed
//! result.

use super::observed::{ObservedInputs, ObservedMiss};
use super::outputs;
use super::store::{self, ActionResult, ExecutionMetadata};
use super::{Keyed, Session};
use super::{explain, inputs::Candidate};
use crate::config::Step;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// Outputs restored; the step's log to replay.
    Hit { log: Vec<u8> },
    /// No entry: the step runs.
    Miss,
    /// An entry was there but could not be used: the step runs, and this says why.
    Unusable(String),
    /// An entry was there, but what the step read without declaring it is not what it
    /// read then (or cannot be checked): the step runs.
    Observed(ObservedMiss),
    /// The entry is good but restoring it would delete files preflight did not write: the
    /// step runs, and the user must be told (a warning, not only `--explain`).
    Refused(String),
}

/// Why a passed result was not stored.
#[derive(Debug)]
pub enum NotSaved {
    /// The store cannot be written (read-only, full, no permission): said once per run.
    Store(String),
    /// This step's result cannot be stored (an output is missing or unsafe).
    Step(StepNotSaved),
}

/// Why one step's passed result cannot be stored while the store itself is writable.
#[derive(Debug, thiserror::Error)]
pub enum StepNotSaved {
    #[error(transparent)]
    Outputs(#[from] outputs::NotCaptured),
    #[error("cannot store the log: {0}")]
    Log(#[source] std::io::Error),
    #[error("cannot write the cache entry: {0}")]
    Entry(#[source] std::io::Error),
    #[error("cannot store what the step read: {0}")]
    Observed(#[source] std::io::Error),
}

/// Why a result from elsewhere (the remote cache, a worker) could not be filed locally.
#[derive(Debug, thiserror::Error)]
pub enum NotImported {
    #[error("cannot lock the cache: {0}")]
    Lock(#[source] std::io::Error),
    #[error("cannot write the cache entry: {0}")]
    Entry(#[source] std::io::Error),
}

impl Session {
    /// Whether an entry exists for this key with all its blobs present (not read), and
    /// when it does, whether the files the step read without declaring them still match.
    pub fn has_entry(&self, step: &Step, keyed: &Keyed) -> Option<Result<(), ObservedMiss>> {
        let entry = self.store.get(&keyed.key)?;
        let whole = entry.exit_code == 0
            && entry
                .blobs()
                .iter()
                .all(|d| self.store.blob_file(d).is_file());
        whole.then(|| self.check_observed(step, &entry))
    }

    /// Looks the key up and, on a hit, restores the step's outputs.
    pub fn lookup(&self, step: &Step, keyed: &Keyed) -> Lookup {
        if !self.mode.read || !keyed.cacheable() {
            return Lookup::Miss;
        }
        let Ok(_lock) = self.store.read_lock() else {
            return Lookup::Miss;
        };
        let Some(entry) = self.store.get(&keyed.key) else {
            return Lookup::Miss;
        };
        // Only a pass is ever stored; an entry that says otherwise was not written by this
        // store's rules (a hand-made or foreign entry) and must not pass a step.
        if entry.exit_code != 0 {
            self.store.evict(&keyed.key);
            return Lookup::Unusable(format!(
                "its cache entry records a failure (exit code {}) and was removed",
                entry.exit_code
            ));
        }

        // Second level: the files it read without declaring them must be as it saw them.
        match self.check_observed(step, &entry) {
            Ok(()) => {}
            Err(ObservedMiss::Damaged) => {
                self.store.evict(&keyed.key);
                return Lookup::Observed(ObservedMiss::Damaged);
            }
            Err(miss) => return Lookup::Observed(miss),
        }

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
        let allow = |changed: &[PathBuf]| self.check_nothing_lost(step, changed);
        match outputs::restore(&self.files_root, &step.outputs, &entry, &self.store, &allow) {
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
            Err(outputs::NotRestored::Refused(why)) => Lookup::Refused(why),
            Err(why) => Lookup::Unusable(format!("its outputs could not be restored: {why}")),
        }
    }

    /// A restore replaces the declared outputs with the entry's files: what else is below
    /// them goes, what differs is overwritten. That is only allowed for files git ignores
    /// (stale outputs); a tracked file, or an untracked one git does not ignore, may be the
    /// user's work.
    fn check_nothing_lost(
        &self,
        step: &Step,
        extra: &[PathBuf],
    ) -> std::result::Result<(), outputs::NotRestored> {
        if extra.is_empty() {
            return Ok(());
        }
        let declared: Vec<PathBuf> = step
            .outputs
            .iter()
            .map(|o| PathBuf::from(o.trim_end_matches('/')))
            .collect();
        let untracked = self.untracked(Some(declared)).map_err(|e| {
            outputs::NotRestored::Refused(format!("its outputs were not restored: {e}"))
        })?;
        let untracked: HashSet<&PathBuf> = untracked.iter().collect();
        let precious: Vec<String> = extra
            .iter()
            .filter(|p| {
                untracked.contains(p)
                    || Candidate::lookup(&self.index, p).entry.is_some()
                    || self.index.gitlinks.iter().any(|(g, _)| p.starts_with(g))
            })
            .map(|p| format!("`{}`", p.display()))
            .collect();
        if precious.is_empty() {
            return Ok(());
        }
        let shown = precious.len().min(5);
        let more = if precious.len() > shown {
            format!(" and {} more", precious.len() - shown)
        } else {
            String::new()
        };
        Err(outputs::NotRestored::Refused(format!(
            "its cached outputs were not restored: that would delete or overwrite {}{more}, \
             which git does not ignore; the step runs instead (keep your own files out of \
             `{}`, or let git ignore what the step writes there)",
            precious[..shown].join(", "),
            step.outputs.join("`, `")
        )))
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
    pub fn import(
        &self,
        keyed: &Keyed,
        entry: &ActionResult,
    ) -> std::result::Result<(), NotImported> {
        let _lock = self.store.shared_lock().map_err(NotImported::Lock)?;
        self.store
            .put(&keyed.key, entry, &keyed.bytes)
            .map_err(NotImported::Entry)?;
        self.stored.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Stores a passed step's outputs and log, and what it was seen to read (`None`: it
    /// was not observed). `Err` says why it was not cached.
    pub fn save(
        &self,
        step: &Step,
        keyed: &Keyed,
        log: &[u8],
        started: SystemTime,
        observed: Option<&ObservedInputs>,
    ) -> std::result::Result<(), NotSaved> {
        if !self.mode.write || !keyed.cacheable() {
            return Ok(());
        }
        let unwritable = |e: std::io::Error| {
            NotSaved::Store(format!(
                "the cache at {} cannot be written ({e}); results are not stored",
                self.store.dir().display()
            ))
        };
        let _lock = self.store.shared_lock().map_err(unwritable)?;
        self.store.check_writable().map_err(unwritable)?;
        let captured = outputs::capture(&self.files_root, &step.outputs, &self.store)
            .map_err(|e| NotSaved::Step(e.into()))?;
        let stdout_digest = self
            .store
            .put_bytes(log)
            .map_err(|e| NotSaved::Step(StepNotSaved::Log(e)))?;
        let observed = match observed {
            None => store::Observed::NotObserved,
            Some(record) => {
                let bytes = serde_json::to_vec(record).map_err(|e| {
                    NotSaved::Step(StepNotSaved::Observed(std::io::Error::other(e)))
                })?;
                let digest = self
                    .store
                    .put_bytes(&bytes)
                    .map_err(|e| NotSaved::Step(StepNotSaved::Observed(e)))?;
                store::Observed::Recorded(digest)
            }
        };
        let entry = ActionResult {
            observed: Some(observed),
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
            .map_err(|e| NotSaved::Step(StepNotSaved::Entry(e)))?;
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
