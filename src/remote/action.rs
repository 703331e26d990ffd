//! A step as a REAPI Action: its Command (arguments, environment, output paths, working
//! folder, platform), its input root (the Merkle tree of its inputs and of the outputs of the
//! steps it needs) and a salt for what neither says. The same Action names the step's result
//! in the remote cache and runs it on a worker, so a result built by a worker is a hit for a
//! laptop that only reads the cache, and the other way round.

use super::cas::Blobs;
use super::proto::{encode, re};
use super::tree::{self, MerkleTree, Node, TreeError};
use crate::cache::key::KeyRecord;
use crate::cache::store::Store;
use crate::config::{Remote, Step};
use crate::process::Invocation;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Bumped when the way a step becomes an Action changes.
const ACTION_VERSION: u32 = 1;

/// A step ready to be looked up, uploaded or run remotely.
#[derive(Debug)]
pub struct Prepared {
    pub action_digest: re::Digest,
    pub action: re::Action,
    pub command: re::Command,
    pub input_root: MerkleTree,
    /// The step's folder (`dir`), which REAPI paths are relative to.
    pub working_dir: PathBuf,
    /// `Err(why)` when the step cannot run on a worker (it still uses the remote cache).
    pub executable: Result<(), NotExecutable>,
}

/// Why a step cannot be described as an Action: it runs here, without the remote.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("cannot read input {}: {source}", path.display())]
    ReadInput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {output}: {source}")]
    ReadOutput {
        output: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("its command line is not UTF-8")]
    NotUtf8,
    #[error("its output `{}` is outside its `dir`", .0.display())]
    OutputOutsideDir(PathBuf),
}

/// Why a step that is an Action cannot run on a worker (it still uses the remote cache).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotExecutable {
    #[error("it declares no `inputs`, so a worker would not know which files it reads")]
    NoInputs,
    #[error("its files are split over several processes")]
    Batched,
}

impl Prepared {
    /// The Action and Command messages, to upload beside a result or before an execution.
    pub fn action_blobs(&self) -> Blobs {
        let mut blobs = Blobs::default();
        blobs.add_message(&self.command);
        blobs.add_message(&self.action);
        blobs
    }
}

/// What goes into the salt: what the key depends on that neither the Command nor the input
/// root shows. Environment values appear as their hashes, as in the local key.
#[derive(Serialize)]
struct Salt<'a> {
    version: u32,
    salt: &'a str,
    key_env: &'a BTreeMap<String, Option<String>>,
    key_commands: Vec<&'a str>,
}

/// Everything needed to describe a step as an Action.
pub struct StepAction<'a> {
    pub root: &'a Path,
    pub step: &'a Step,
    pub remote: &'a Remote,
    /// The processes the step would start here.
    pub invocations: &'a [Invocation],
    /// The environment the step gets on top of the worker's: `[env]`, its own, PREFLIGHT_STEP.
    pub env: &'a [(String, String)],
    pub record: &'a KeyRecord,
    /// The local store, which remembers the SHA-256 of contents by their git id.
    pub store: &'a Store,
    /// Declared outputs of the steps it needs (directly or not), repository-relative.
    pub needed_outputs: Vec<String>,
    /// The managed tools it uses, with their lock entries: a worker installs them.
    pub tools: &'a [super::tools::WireTool],
}

fn arguments(invocation: &Invocation) -> Result<Vec<String>, ActionError> {
    std::iter::once(&invocation.program)
        .chain(invocation.args.iter())
        .map(|a| a.to_str().map(str::to_string).ok_or(ActionError::NotUtf8))
        .collect()
}

/// `path` (repository-relative) relative to the working folder, when it is inside it.
fn relative_to(path: &Path, dir: &Path) -> Option<PathBuf> {
    path.strip_prefix(dir).ok().map(Path::to_path_buf)
}

pub fn prepare(s: &StepAction) -> Result<Prepared, ActionError> {
    let step = s.step;
    let working_dir = step.dir.clone().unwrap_or_default();
    let mut executable: Result<(), NotExecutable> = Ok(());
    let mut not_here = |why: NotExecutable| {
        if executable.is_ok() {
            executable = Err(why);
        }
    };
    if step.input_matcher.is_none() {
        not_here(NotExecutable::NoInputs);
    }

    // The input root: declared inputs (hashed once per content: the git id the key already
    // has finds the SHA-256), then outputs of the steps it needs.
    let mut entries: Vec<(PathBuf, Node)> = s
        .record
        .inputs
        .par_iter()
        .map(|f| {
            let path = f.path.to_path();
            let at = s.root.join(&path);
            let node = match f.mode.as_str() {
                "120000" => tree::node_at(&at),
                mode => {
                    let digest = match s.store.sha256_of_git(&f.digest) {
                        Some(d) => Ok(super::proto::from_store(&d)),
                        // Remembered only when the bytes read are those the key saw (a file
                        // edited meanwhile, or one git filters, has other bytes on disk).
                        None => tree::hash_file_with_git_id(&at).map(|(git_id, d)| {
                            if git_id == f.digest {
                                s.store
                                    .remember_sha256_of_git(&f.digest, &super::proto::to_store(&d));
                            }
                            d
                        }),
                    };
                    digest.map(|digest| Node::File {
                        digest,
                        executable: mode == "100755",
                        source: at.clone(),
                    })
                }
            };
            node.map(|n| (path.clone(), n))
                .map_err(|source| ActionError::ReadInput { path, source })
        })
        .collect::<Result<_, _>>()?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for out in &s.needed_outputs {
        let rel = PathBuf::from(out.trim_end_matches('/'));
        let at = s.root.join(&rel);
        match at.symlink_metadata() {
            Ok(meta) if meta.is_dir() => {
                let found = tree::scan(&at).map_err(|source| ActionError::ReadOutput {
                    output: out.clone(),
                    source,
                })?;
                for (inner, _) in found {
                    paths.push(rel.join(inner));
                }
            }
            Ok(_) => paths.push(rel),
            Err(_) => {}
        }
    }
    // An output of a needed step that is also a declared input is already there.
    let known: std::collections::HashSet<PathBuf> =
        entries.iter().map(|(p, _)| p.clone()).collect();
    paths.retain(|p| !known.contains(p));
    paths.sort();
    paths.dedup();
    let outputs: Vec<(PathBuf, Node)> = paths
        .par_iter()
        .map(|p| {
            tree::node_at(&s.root.join(p))
                .map(|node| (p.clone(), node))
                .map_err(|source| ActionError::ReadInput {
                    path: p.clone(),
                    source,
                })
        })
        .collect::<Result<_, _>>()?;
    entries.extend(outputs);
    if !working_dir.as_os_str().is_empty()
        && !entries.iter().any(|(p, _)| p.starts_with(&working_dir))
    {
        entries.push((working_dir.clone(), Node::Folder));
    }
    let input_root = tree::build(entries)?;

    // The Command.
    let arguments = match s.invocations {
        [one] => arguments(one)?,
        _ => {
            not_here(NotExecutable::Batched);
            vec![
                "preflight-batches".into(),
                s.invocations
                    .iter()
                    .map(|i| {
                        std::iter::once(&i.program)
                            .chain(i.args.iter())
                            .map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
            ]
        }
    };
    let mut env: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in s.env {
        env.insert(k, v);
    }
    // The tools travel as their lock entries: the worker installs them and puts them on
    // the PATH; the Action, and every result of it, names their exact identities.
    let tools = super::tools::encode(s.tools);
    if !s.tools.is_empty() {
        env.insert(super::tools::TOOLS_ENV, &tools);
    }
    let mut output_paths = Vec::new();
    for out in &step.outputs {
        let out = Path::new(out.trim_end_matches('/'));
        match relative_to(out, &working_dir) {
            Some(rel) => output_paths.push(rel.to_string_lossy().into_owned()),
            // REAPI output paths stay inside the working folder.
            None => {
                return Err(ActionError::OutputOutsideDir(out.to_path_buf()));
            }
        }
    }
    output_paths.sort();
    // A step that names no OS or instruction set gets this machine's: a result built on
    // another OS or architecture is not this one's, and a worker must match it to run it.
    let mut properties = s.remote.platform_of(step);
    for (name, value) in super::host::platform() {
        properties
            .entry(name.to_string())
            .or_insert_with(|| value.to_string());
    }
    let mut properties: Vec<(String, String)> = properties.into_iter().collect();
    // Only a worker that can install each backend the tools use may take it.
    for tool in s.tools {
        properties.push((super::tools::TOOLS_PROPERTY.into(), tool.backend().into()));
    }
    // REAPI wants them sorted by name, then value.
    properties.sort();
    properties.dedup();
    let platform = re::Platform {
        properties: properties
            .into_iter()
            .map(|(name, value)| re::platform::Property { name, value })
            .collect(),
    };
    // Servers older than REAPI 2.2 read the platform from the Command.
    #[allow(deprecated)]
    let command = re::Command {
        arguments,
        environment_variables: env
            .into_iter()
            .map(|(name, value)| re::command::EnvironmentVariable {
                name: name.into(),
                value: value.into(),
            })
            .collect(),
        output_paths,
        working_directory: working_dir.to_string_lossy().into_owned(),
        platform: Some(platform.clone()),
        ..Default::default()
    };

    let salt = Salt {
        version: ACTION_VERSION,
        salt: &s.record.salt,
        key_env: &s.record.key_env,
        key_commands: s
            .record
            .key_commands
            .iter()
            .map(|k| k.digest.as_str())
            .collect(),
    };
    let action = re::Action {
        command_digest: Some(encode(&command).0),
        input_root_digest: Some(input_root.root_digest.clone()),
        timeout: step.timeout.map(|t| super::proto::pb::Duration {
            seconds: t.as_secs() as i64,
            nanos: t.subsec_nanos() as i32,
        }),
        do_not_cache: false,
        salt: serde_json::to_vec(&salt).expect("the salt serialises"),
        platform: Some(platform),
    };
    Ok(Prepared {
        action_digest: encode(&action).0,
        action,
        command,
        input_root,
        working_dir,
        executable,
    })
}
