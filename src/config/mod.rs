//! `preflight.toml`: the schema, loading, and validation that points at file, line and column.
//!
//! Loading is two passes: serde turns the text into `raw` types that keep the spans of the
//! values a later check may complain about, then `validate` checks what serde cannot (names,
//! references, cycles, durations, globs) and builds the typed `Config`. Every problem found is
//! reported, not just the first.
//!
//! Here: the typed model (`Config`, `Step`, `Command`, `Hook`), loading and durations.
//! Below: `raw` (serde types), `validate` (raw to typed), `checker` (the diagnostics
//! collector every check writes to), `diagnostic` (messages with spans), and one module
//! per table or concern: `ci`, `remote`, `tools`, `cache_keys`, `limits`. They depend on `checker`
//! and the model, never on each other in a circle. This folder imports only leaf modules
//! (`error`, `files`, `filetypes`, `shell`): never exec, plan, cache, remote, commands or
//! report, which all read the config.

mod cache_keys;
mod checker;
mod ci;
mod diagnostic;
mod limits;
mod raw;
mod remote;
mod tools;
mod validate;

pub use cache_keys::parse_size;
pub use ci::{
    ActionsSettings, Artifacts, ArtifactsWhen, CI_TARGETS, Cache, Ci, CiJob, DEFAULT_JOB, Pin,
    Triggers, needed_jobs,
};
pub use diagnostic::{Diagnostic, did_you_mean};
pub use limits::{MAX_DURATION, MAX_JOBS};
pub use remote::{Remote, RemoteCache};
pub use tools::{ArchiveFormat, ToolSource, ToolSpec};

use crate::error::{Error, Result};
use crate::files::Matcher;
use indexmap::IndexMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A JSON Schema of preflight.toml, for editors (Taplo, Even Better TOML): the file's schema
/// with the `[ci]` part, which is kept beside the CI templates, put in its place.
pub fn schema() -> String {
    let mut whole: serde_json::Value =
        serde_json::from_str(include_str!("../../templates/preflight.schema.json"))
            .expect("valid JSON");
    let ci: serde_json::Value =
        serde_json::from_str(include_str!("../../templates/ci/ci.schema.json"))
            .expect("valid JSON");
    whole["properties"]["ci"] = ci;
    serde_json::to_string_pretty(&whole).expect("serialisable") + "\n"
}

/// The names a configuration file may have at the root of the work tree, in order of preference.
pub const FILE_NAMES: [&str; 2] = ["preflight.toml", ".preflight.toml"];

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from.
    pub path: PathBuf,
    pub settings: Settings,
    /// Environment for every step.
    pub env: IndexMap<String, String>,
    /// Steps in the order they are written.
    pub steps: IndexMap<String, Step>,
    pub hooks: IndexMap<String, Hook>,
    pub ci: Ci,
    /// `[remote]`: a REAPI server for the cache and for running steps.
    pub remote: Option<Remote>,
    /// `[tools]`: the programs steps use, by name, in the order written.
    pub tools: IndexMap<String, ToolSpec>,
}

#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// How many steps run at once; 0 means one per core.
    pub jobs: usize,
    pub fail_fast: bool,
    /// Mixed into every cache key: changing it throws the whole cache away.
    pub salt: String,
    /// Where the cache lives (relative paths: from the repository root), unless
    /// `PREFLIGHT_CACHE_DIR` says otherwise.
    pub cache_dir: Option<PathBuf>,
    /// The cache's size bound in bytes.
    pub cache_max: u64,
    /// Whether cached steps' file reads are observed and checked on a lookup.
    pub observe: bool,
}

/// The cache's size bound when `[settings] cache_max` is not given: 5 GB.
pub const DEFAULT_CACHE_MAX: u64 = 5_000_000_000;

/// What a step runs: a shell string (`sh -c`) or an argument vector run directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Shell(String),
    Argv(Vec<String>),
}

/// The placeholder that expands to a step's files.
pub const FILES_PLACEHOLDER: &str = "{files}";
/// The placeholder for the commit message file in commit-msg and prepare-commit-msg hooks.
pub const MSG_FILE_PLACEHOLDER: &str = "{msg_file}";

impl Command {
    pub fn uses_msg_file(&self) -> bool {
        match self {
            Command::Shell(s) => s.contains(MSG_FILE_PLACEHOLDER),
            Command::Argv(args) => args.iter().any(|a| a.contains(MSG_FILE_PLACEHOLDER)),
        }
    }

    /// The command with `{msg_file}` replaced by `path` (shell-quoted in a shell string).
    pub fn with_msg_file(&self, path: &std::path::Path) -> Command {
        use std::os::unix::ffi::OsStrExt;
        match self {
            Command::Shell(s) => {
                let quoted = crate::shell::quote(path.as_os_str().as_bytes());
                Command::Shell(s.replace(MSG_FILE_PLACEHOLDER, &String::from_utf8_lossy(&quoted)))
            }
            Command::Argv(args) => Command::Argv(
                args.iter()
                    .map(|a| a.replace(MSG_FILE_PLACEHOLDER, &path.to_string_lossy()))
                    .collect(),
            ),
        }
    }

    pub fn uses_files(&self) -> bool {
        match self {
            Command::Shell(s) => s.contains(FILES_PLACEHOLDER),
            Command::Argv(args) => args.iter().any(|a| a == FILES_PLACEHOLDER),
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Shell(s) => f.write_str(s),
            Command::Argv(args) => f.write_str(&args.join(" ")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub run: Command,
    pub fix: Option<Command>,
    /// Working directory, relative to the repository root.
    pub dir: Option<PathBuf>,
    pub env: IndexMap<String, String>,
    pub needs: Vec<String>,
    pub files: Vec<String>,
    pub exclude: Vec<String>,
    /// `types`: a file must also be of one of these (empty: any file).
    pub types: crate::filetypes::Types,
    /// The compiled `files`/`exclude` globs (`*` when only `types` is given); `None` when
    /// the step selects no files.
    pub matcher: Option<Matcher>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub key_env: Vec<String>,
    /// Commands whose output is part of the cache key (e.g. `rustc -V`).
    pub key_commands: Vec<String>,
    /// The compiled `inputs` globs; `None` when the step has no `inputs`.
    pub input_matcher: Option<Matcher>,
    pub timeout: Option<Duration>,
    /// Whether the step may use `[remote]` (its cache and its workers).
    pub remote: bool,
    /// Platform properties a remote worker must match (`OSFamily = "linux"`).
    pub platform: std::collections::BTreeMap<String, String>,
    /// The names of the `[tools]` it uses, first on its PATH and part of its key.
    pub tools: Vec<String>,
    /// Whether its file reads may be observed (`[settings] observe` must allow it too).
    pub observe: bool,
}

/// The steps a git hook runs.
#[derive(Debug, Clone)]
pub struct Hook {
    pub steps: Vec<String>,
    /// Run the steps' `fix` commands instead of their checks where they have one.
    pub fix: bool,
}

/// The hooks git knows (githooks(5)); `[hooks]` may bind steps to any of them.
pub const GIT_HOOKS: [&str; 22] = [
    "applypatch-msg",
    "pre-applypatch",
    "post-applypatch",
    "pre-commit",
    "pre-merge-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "pre-rebase",
    "post-checkout",
    "post-merge",
    "pre-push",
    "pre-receive",
    "update",
    "proc-receive",
    "post-receive",
    "post-update",
    "reference-transaction",
    "push-to-checkout",
    "pre-auto-gc",
    "post-rewrite",
    "sendemail-validate",
];

/// Finds the configuration file at the root of the work tree.
pub fn locate(root: &Path) -> Result<PathBuf> {
    FILE_NAMES
        .iter()
        .map(|name| root.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Setup(format!(
                "no preflight.toml found at the root of the repository ({})",
                root.display()
            ))
            .hint("create one (see `preflight --help`), or pass --config PATH")
        })
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    load_text(path, &source, None)
}

/// Validates configuration text that stands for the file at `path` without being read from
/// it (the copy staged in git's index); `origin` says which in every diagnostic, whose
/// line and column are those of `source`.
pub fn load_text(path: &Path, source: &str, origin: Option<&str>) -> Result<Config> {
    parse(path, source).map_err(|diagnostics| {
        let shown = display_path(path);
        Error::Config {
            rendered: diagnostics
                .iter()
                .map(|d| d.render_from(source, &shown, origin))
                .collect::<Vec<_>>()
                .join("\n"),
            count: diagnostics.len(),
        }
    })
}

/// A path as the user would like to read it: relative to the current folder when inside it.
pub fn display_path(path: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    path.strip_prefix(&cwd)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Parses and validates configuration text; `path` is only used in diagnostics.
pub fn parse(path: &Path, source: &str) -> std::result::Result<Config, Vec<Diagnostic>> {
    let raw: raw::RawConfig = toml::from_str(source)
        .map_err(|e| vec![diagnostic::diagnose_toml_error(path, source, &e)])?;
    validate::validate(path, raw)
}

/// Parses a duration such as `500ms`, `90s`, `10m`, `1h` or `1m 30s`, longer than zero and
/// at most `MAX_DURATION`.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    parse_duration_up_to(text, MAX_DURATION, "a year")
}

/// As `parse_duration`, with another longest value (`max`, said in words as `max_words`).
pub fn parse_duration_up_to(
    text: &str,
    max: Duration,
    max_words: &str,
) -> std::result::Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("a timeout must be longer than zero".into());
    }
    if d > max {
        return Err(format!(
            "it is longer than {max_words}, the longest duration preflight takes"
        ));
    }
    Ok(d)
}
