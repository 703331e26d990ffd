//! The second level of a lookup: an entry found by its key is used only if the files the
//! step was seen to read (and the folders it listed) are still what it saw.

use super::{Drift, FoundFile, ObservedInputs};
use crate::cache::Session;
use crate::config::Step;
use std::path::PathBuf;

/// Why an entry found by its key is not used, as far as what the step read goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObservedMiss {
    /// Files it read without declaring them (or looked for) are not what it saw.
    Drifted(Vec<Drift>),
    /// The entry was stored without observing the step, and this run observes it: it
    /// cannot vouch for the files the step reads without declaring them.
    NotObserved,
    /// The record of what it read is missing or corrupt (the entry is removed).
    Damaged,
    /// The observed files could not be read now, and why.
    Unreadable(String),
}

impl Session {
    /// The observed files that are not what the step saw; empty when all still match.
    /// `Err` when they cannot be read (a miss, never a hit).
    pub fn drifted(&self, observed: &ObservedInputs) -> std::io::Result<Vec<Drift>> {
        let paths: Vec<PathBuf> = observed.files.iter().map(|f| f.path.to_path()).collect();
        let (now, missing) = self.observed_states(paths.iter())?;
        let now: std::collections::HashMap<PathBuf, Option<FoundFile>> = now.into_iter().collect();
        let mut drift = Vec::new();
        for (file, path) in observed.files.iter().zip(paths) {
            let current = now.get(&path).cloned().flatten();
            match (&file.found, current) {
                (None, None) if missing.contains(&path) => {}
                (None, _) => drift.push(Drift::Appeared(path)),
                (Some(_), None) => drift.push(Drift::Removed(path)),
                (Some(was), Some(is)) if *was != is => drift.push(Drift::Changed(path)),
                (Some(_), Some(_)) => {}
            }
        }
        Ok(drift)
    }

    /// The folders the step listed whose names are not what it saw.
    fn relisted(&self, observed: &ObservedInputs) -> std::io::Result<Vec<Drift>> {
        if observed.listed.is_empty() {
            return Ok(Vec::new());
        }
        let untracked = self
            .untracked(None)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(observed
            .listed
            .iter()
            .filter(|l| self.names_in(&l.path.to_path(), &untracked) != l.names)
            .map(|l| Drift::Listed(l.path.to_path()))
            .collect())
    }

    /// Checks an entry's observed inputs against the files as they are now.
    pub fn check_observed(
        &self,
        step: &Step,
        entry: &crate::cache::store::ActionResult,
    ) -> Result<(), ObservedMiss> {
        use crate::cache::store::Observed;
        let digest = match &entry.observed {
            Some(Observed::Recorded(d)) => d,
            // A worker ran it from an input root holding only its declared inputs: there
            // was nothing undeclared to read.
            Some(Observed::OnWorker) => return Ok(()),
            // Stored without observing (by an older preflight, with observing off, or a
            // result from elsewhere that records nothing): a run that observes the step
            // cannot trust it, or what the step reads undeclared would never count.
            Some(Observed::NotObserved) | None if self.observes(step) => {
                return Err(ObservedMiss::NotObserved);
            }
            // Neither did this run observe it: its declared inputs are all there is.
            Some(Observed::NotObserved) | None => return Ok(()),
        };
        let record = self.read_record(digest).ok_or(ObservedMiss::Damaged)?;
        // A file of the outputs that is gone comes back from the entry as the step left it
        // (the record and the entry were both taken when it ended): no reason to rerun.
        let drifted = self.drifted(&record).and_then(|mut drift| {
            drift.retain(|d| !(matches!(d, Drift::Removed(_)) && Self::in_outputs(step, d.path())));
            drift.extend(self.relisted(&record)?);
            Ok(drift)
        });
        match drifted {
            Ok(drift) if drift.is_empty() => Ok(()),
            Ok(drift) => Err(ObservedMiss::Drifted(drift)),
            Err(e) => Err(ObservedMiss::Unreadable(e.to_string())),
        }
    }

    /// Whether checking this key's entry needs the folder the steps run in, which is not
    /// made yet: a commit is checked and the step read (or looked for) files that are not
    /// in the commit's tree (files git ignores, in the work tree it ran in). Before that
    /// folder is made, they would look absent.
    pub fn needs_place(&self, keyed: &crate::cache::Keyed) -> bool {
        if !self.from_commit || self.files_root.symlink_metadata().is_ok() {
            return false;
        }
        let Some(crate::cache::store::Observed::Recorded(d)) =
            self.store.get(&keyed.key).and_then(|e| e.observed)
        else {
            return false;
        };
        self.read_record(&d).is_some_and(|r| {
            r.files.iter().any(|f| !self.in_tree(&f.path.to_path()))
                || r.listed.iter().any(|l| !self.in_tree(&l.path.to_path()))
        })
    }

    /// The key record of the entry a step of this repository last used.
    pub fn last_record(&self, step: &str) -> Option<crate::cache::key::KeyRecord> {
        self.store.record(&self.store.last_key(&self.root, step)?)
    }

    /// The record of what a step was last seen to read, from the entry of its last key
    /// in this repository (for `audit`).
    pub fn last_observation(&self, step: &str) -> Option<ObservedInputs> {
        let key = self.store.last_key(&self.root, step)?;
        let entry = self.store.get(&key)?;
        let Some(crate::cache::store::Observed::Recorded(d)) = entry.observed else {
            return None;
        };
        self.read_record(&d)
    }

    /// The repository-relative paths a hit on this key rests on beyond the step's declared
    /// inputs: every file it read or looked for and every folder it listed (none when it
    /// was not observed). `None` when there is no entry or its record cannot be read.
    pub fn observed_paths(&self, keyed: &crate::cache::Keyed) -> Option<Vec<PathBuf>> {
        let entry = self.store.get(&keyed.key)?;
        let Some(crate::cache::store::Observed::Recorded(d)) = entry.observed else {
            return Some(Vec::new());
        };
        let record = self.read_record(&d)?;
        Some(
            (record.files.iter().map(|f| f.path.to_path()))
                .chain(record.listed.iter().map(|l| l.path.to_path()))
                .collect(),
        )
    }

    /// The record of what a step read, stored under `digest`; `None` when it is missing,
    /// damaged or of another format version.
    fn read_record(&self, digest: &crate::cache::store::Digest) -> Option<ObservedInputs> {
        self.store
            .read_verified(digest)
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .filter(|r: &ObservedInputs| r.version == super::OBSERVED_VERSION)
    }
}
