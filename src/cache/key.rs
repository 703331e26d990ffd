//! The cache key: SHA-256 over a canonical, versioned record of everything a step's result
//! depends on. The record itself is kept beside the entry so that a later miss can say
//! exactly what changed.

use super::inputs::InputFile;
use crate::config::Command;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Bumped whenever the record's shape or meaning changes: old entries then stop matching.
pub const KEY_VERSION: u32 = 2;

/// Everything that goes into a step's key. Maps are sorted and inputs are sorted by path, so
/// that the same facts always give the same bytes. Environment values and what `key_commands`
/// print appear only as their SHA-256: the record is stored, and secrets must not be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub version: u32,
    pub step: String,
    /// `[settings] salt`.
    pub salt: String,
    pub os: String,
    pub arch: String,
    /// The step as written.
    pub run: CommandRecord,
    pub dir: Option<String>,
    pub outputs: Vec<String>,
    /// `[env]` and the step's `env`, merged: name → SHA-256 of the value.
    pub env: BTreeMap<String, String>,
    /// `key_env`: name → SHA-256 of the value, `None` when unset.
    pub key_env: BTreeMap<String, Option<String>>,
    /// `key_commands`, in order, with the digest of what each printed.
    pub key_commands: Vec<KeyCommand>,
    /// The keys of the steps it needs: name → key.
    pub needs: BTreeMap<String, String>,
    /// What the steps it needs produced: name → SHA-256 of their declared outputs as they
    /// are on disk when this step starts (steps without outputs are left out). A needed step
    /// that always runs may write something new under the same key.
    pub needs_outputs: BTreeMap<String, String>,
    /// Where the input list came from: `inputs` globs or the step's `files`.
    pub inputs_from: InputsFrom,
    pub inputs: Vec<InputFile>,
    /// The managed tools it uses (`[tools]`): name → identity (backend, package, version
    /// and the lock's integrity), so that a tool upgrade reruns exactly its steps. Left out
    /// when empty, so that steps without tools keep their keys.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CommandRecord {
    Shell(String),
    Argv(Vec<String>),
}

impl From<&Command> for CommandRecord {
    fn from(c: &Command) -> Self {
        match c {
            Command::Shell(s) => CommandRecord::Shell(s.clone()),
            Command::Argv(a) => CommandRecord::Argv(a.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputsFrom {
    Inputs,
    /// The step's selected files (its command takes them with `{files}`).
    Files,
    /// Every file its `files` globs match (its command takes no `{files}`, so it may read
    /// any of them).
    AllFiles,
    /// Neither: the step is not cached, its key only names its definition.
    Nothing,
}

/// The output of one `key_commands` entry. Only its digest is kept: a command such as
/// `cat .env.local` prints secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCommand {
    pub command: String,
    /// SHA-256 of its stdout and stderr, and its exit status.
    pub digest: String,
    pub exit_code: Option<i32>,
}

impl KeyRecord {
    /// The record's canonical JSON, and the key: the SHA-256 of that JSON, in hex.
    pub fn canonical(&self) -> (Vec<u8>, String) {
        let bytes = serde_json::to_vec(self).expect("a record serialises");
        let key = sha256_hex(&bytes);
        (bytes, key)
    }

    pub fn key(&self) -> String {
        self.canonical().1
    }
}

/// SHA-256 of some bytes, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    super::inputs::hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> KeyRecord {
        KeyRecord {
            version: KEY_VERSION,
            step: "build".into(),
            salt: String::new(),
            os: "linux".into(),
            arch: "x86_64".into(),
            run: CommandRecord::Shell("make".into()),
            dir: None,
            outputs: vec!["out".into()],
            env: BTreeMap::new(),
            key_env: BTreeMap::new(),
            key_commands: Vec::new(),
            needs: BTreeMap::new(),
            needs_outputs: BTreeMap::new(),
            inputs_from: InputsFrom::Inputs,
            inputs: Vec::new(),
            tools: BTreeMap::new(),
        }
    }

    #[test]
    fn the_key_is_stable_and_sees_every_field() {
        let a = record();
        assert_eq!(a.key(), record().key());
        assert_eq!(a.key().len(), 64);
        let mut b = record();
        b.salt = "x".into();
        assert_ne!(a.key(), b.key());
        let mut c = record();
        c.run = CommandRecord::Argv(vec!["make".into()]);
        assert_ne!(a.key(), c.key());
        let mut d = record();
        d.tools.insert("ruff".into(), "pypi:ruff@1 ab".into());
        assert_ne!(a.key(), d.key());
    }
}
