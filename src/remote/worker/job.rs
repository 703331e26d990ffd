//! One lease, start to end: the Action from its payload, the Command and the input root
//! from the CAS, the command run in a private folder in its own process group (killed at
//! the Action's timeout), and its outputs, stdout and stderr uploaded as an ActionResult.

use super::failure::Failure;
use super::{blobs, outputs, sandbox, spawn};
use crate::remote::cas::Blobs;
use crate::remote::connection::Connection;
use crate::remote::proto::{self, pb, re};
use crate::remote::tools;
use prost::Message;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use tonic::Code;

/// What every job shares.
pub struct Context {
    pub connection: Connection,
    /// Written into each result's metadata: BuildGrid passes it on to clients as is.
    pub bot_id: String,
    pub work_dir: PathBuf,
    /// Variables of the worker's environment that actions do not get.
    pub hidden_env: Vec<String>,
    pub processes: spawn::Processes,
    /// Blobs fetched by earlier leases.
    pub cache: std::sync::Arc<blobs::Cache>,
    /// Where the managed tools that actions name are installed.
    pub tools: crate::tools::Store,
}

/// The Action a lease names: sent whole, or as the digest of one in the CAS.
#[derive(Debug, PartialEq)]
pub enum Payload {
    Action(re::Action),
    Digest(re::Digest),
}

const ACTION: &str = "build.bazel.remote.execution.v2.Action";
const DIGEST: &str = "build.bazel.remote.execution.v2.Digest";

pub fn decode_payload(payload: Option<&pb::Any>) -> Result<Payload, Failure> {
    let any = payload.ok_or_else(|| Failure::invalid("the lease has no payload"))?;
    let bad = |e: prost::DecodeError| {
        Failure::invalid(format!("the lease's payload does not decode: {e}"))
    };
    if proto::holds(any, ACTION) {
        Ok(Payload::Action(
            re::Action::decode(any.value.as_slice()).map_err(bad)?,
        ))
    } else if proto::holds(any, DIGEST) {
        let digest = re::Digest::decode(any.value.as_slice()).map_err(bad)?;
        if !proto::well_formed(&digest) {
            return Err(Failure::invalid(
                "the lease names a malformed Action digest",
            ));
        }
        Ok(Payload::Digest(digest))
    } else {
        Err(Failure::invalid(format!(
            "the lease holds a `{}`, not a REAPI Action",
            any.type_url
        )))
    }
}

/// A short name for an action in messages: the first 12 digits of its digest.
pub fn short(digest: &re::Digest) -> String {
    digest.hash.chars().take(12).collect()
}

/// How a lease ended, to report and to show.
#[derive(Debug)]
pub struct Finished {
    pub action: String,
    pub outcome: Result<Ran, Failure>,
    pub elapsed: Duration,
}

#[derive(Debug)]
pub struct Ran {
    pub result: re::ActionResult,
    pub timed_out: Option<Duration>,
    /// Processes (pid, command line) that left the action's group and outlived it.
    pub leftover: Vec<(u32, String)>,
}

/// Runs one lease; `on_start` hears of the program and the action just before it starts.
pub async fn run(
    context: &Context,
    lease: &str,
    payload: Option<&pb::Any>,
    on_start: &(dyn Fn(&str, &str) + Sync),
) -> Finished {
    let started = Instant::now();
    let mut action = String::from("????????????");
    let outcome = async {
        let (a, digest) = load_action(context, decode_payload(payload)?).await?;
        action = short(&digest);
        let dir = tempfile::Builder::new()
            .prefix("preflight-action-")
            .tempdir_in(&context.work_dir)
            .map_err(|e| Failure::local(&context.work_dir, e))?
            .keep();
        let ran = run_in(context, lease, &a, &dir, &|program| {
            on_start(program, &action)
        })
        .await;
        let _ = tokio::task::spawn_blocking(move || sandbox::remove(&dir)).await;
        ran
    }
    .await;
    // A lease cancelled before its process started is forgotten here.
    context.processes.finish(lease);
    Finished {
        action,
        outcome,
        elapsed: started.elapsed(),
    }
}

async fn load_action(
    context: &Context,
    payload: Payload,
) -> Result<(re::Action, re::Digest), Failure> {
    match payload {
        // BuildGrid re-encodes the Action it stored: its digest may differ from the
        // client's, which only matters for the name shown.
        Payload::Action(action) => {
            let digest = proto::encode(&action).0;
            Ok((action, digest))
        }
        Payload::Digest(digest) => {
            let action = read_message(&context.connection, &digest, "Action").await?;
            Ok((action, digest))
        }
    }
}

async fn read_message<M: Message + Default>(
    connection: &Connection,
    digest: &re::Digest,
    what: &str,
) -> Result<M, Failure> {
    if digest.size_bytes > sandbox::MAX_MESSAGE_BLOB {
        return Err(Failure::invalid(format!(
            "the {what} {} is {} bytes, more than a worker reads",
            digest.hash, digest.size_bytes
        )));
    }
    let blobs = connection
        .read_blobs(vec![digest.clone()])
        .await
        .map_err(Failure::cas)?;
    let bytes = blobs
        .get(&digest.hash)
        .ok_or_else(|| Failure::missing(format!("{what} {}", digest.hash)))?;
    M::decode(bytes.as_slice())
        .map_err(|e| Failure::invalid(format!("the {what} {} does not decode: {e}", digest.hash)))
}

fn required(digest: &Option<re::Digest>, what: &str) -> Result<re::Digest, Failure> {
    digest
        .clone()
        .filter(proto::well_formed)
        .ok_or_else(|| Failure::invalid(format!("the Action has no valid {what} digest")))
}

/// Everything after the Action is known, in the action's folder `dir`.
async fn run_in(
    context: &Context,
    lease: &str,
    action: &re::Action,
    dir: &Path,
    on_start: &(dyn Fn(&str) + Sync),
) -> Result<Ran, Failure> {
    let connection = &context.connection;
    let mut metadata = re::ExecutedActionMetadata {
        worker: context.bot_id.clone(),
        worker_start_timestamp: Some(now()),
        input_fetch_start_timestamp: Some(now()),
        ..Default::default()
    };
    let command: re::Command = read_message(
        connection,
        &required(&action.command_digest, "Command")?,
        "Command",
    )
    .await?;
    let working_dir = sandbox::relative(&command.working_directory, "working directory")?;
    let wanted = outputs::wanted(&command)?;
    let program = command
        .arguments
        .first()
        .cloned()
        .ok_or_else(|| Failure::invalid("the Command has no arguments"))?;

    let root = dir.join("root");
    let (top, folders) = sandbox::fetch_tree(
        connection,
        &required(&action.input_root_digest, "input root")?,
    )
    .await?;
    sandbox::materialise(connection, &context.cache, &root, &top, &folders).await?;
    sandbox::make_folders(&root, &working_dir)?;
    let cwd = root.join(&working_dir);
    for (rel, _) in &wanted {
        if let Some(parent) = rel.parent() {
            sandbox::make_folders(&cwd, parent)?;
        }
    }
    metadata.input_fetch_completed_timestamp = Some(now());

    let command = with_tools(context, command).await?;
    let (stdout, stderr) = (dir.join("stdout"), dir.join("stderr"));
    // The worker observes what the action reads, as a local run does, so that the client
    // checks those files before it uses the result.
    let report = matches!(
        crate::observe::support(),
        crate::observe::Support::Available
    )
    .then(|| dir.join("observed"));
    let mut cmd = spawn::process(&command, &cwd, &stdout, &stderr, report.as_deref())?;
    for name in &context.hidden_env {
        cmd.env_remove(name);
    }
    on_start(&program);
    metadata.execution_start_timestamp = Some(now());
    let timeout = action
        .timeout
        .as_ref()
        .filter(|t| t.seconds > 0 || t.nanos > 0)
        .map(|t| Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32));
    let ended = spawn::wait(
        &context.processes,
        lease,
        &mut cmd,
        timeout,
        [&stdout, &stderr],
    )
    .await?;
    let (exit_code, timed_out) = (ended.code, ended.timed_out);
    metadata.execution_completed_timestamp = Some(now());

    metadata.output_upload_start_timestamp = Some(now());
    let mut result = re::ActionResult {
        exit_code,
        ..Default::default()
    };
    let mut blobs = Blobs::default();
    // Hashing outputs may take long: the runtime's other tasks (the heartbeat) move off
    // this thread meanwhile.
    tokio::task::block_in_place(|| {
        outputs::collect(&cwd, &wanted, &mut result, &mut blobs)?;
        result.stdout_digest = Some(log(&stdout, &mut blobs)?);
        result.stderr_digest = Some(log(&stderr, &mut blobs)?);
        Ok::<(), Failure>(())
    })?;
    connection.upload(&blobs).await.map_err(Failure::cas)?;
    // What it read, relative to the input root (the repository's layout), for a result that
    // passed: a record that cannot be made leaves the result vouching for its declared
    // inputs only.
    if exit_code == 0
        && let Some(report) = &report
        && let Ok(seen) = crate::observe::read_report(report)
        && let Ok(record) =
            tokio::task::block_in_place(|| crate::cache::observed::record_in_folder(&root, &seen))
        && let Ok(json) = serde_json::to_string(&record)
    {
        metadata
            .auxiliary_metadata
            .push(crate::remote::results::observed_any(json));
    }
    metadata.output_upload_completed_timestamp = Some(now());
    metadata.worker_completed_timestamp = Some(now());
    result.execution_metadata = Some(metadata);
    Ok(Ran {
        result,
        timed_out: timed_out.then_some(timeout.unwrap_or_default()),
        leftover: ended
            .leftover
            .into_iter()
            .map(|p| (p.pid, p.command))
            .collect(),
    })
}

/// The Command with the managed tools it names installed and first on its PATH. They are
/// installed from the lock entries the Action carries, with the checks a local install
/// makes; when that fails, the status says so in words the client recognises, and the
/// step runs where its run started.
async fn with_tools(context: &Context, mut command: re::Command) -> Result<re::Command, Failure> {
    let Some(value) = command
        .environment_variables
        .iter()
        .find(|v| v.name == tools::TOOLS_ENV)
        .map(|v| v.value.clone())
    else {
        return Ok(command);
    };
    let unavailable = |why: String| {
        Failure::new(
            Code::FailedPrecondition,
            format!("{}: {why}", tools::UNAVAILABLE),
        )
    };
    let wanted = tools::decode(&value).map_err(unavailable)?;
    let store = context.tools.clone();
    let bins = tokio::task::spawn_blocking(move || {
        let mut bins = Vec::new();
        for tool in &wanted {
            let spec = tool
                .spec()
                .map_err(|why| format!("tool `{}`: {why}", tool.name))?;
            crate::tools::install_one(&store, &spec, &tool.lock, &mut |_| {}).map_err(|e| {
                let mut why = e.to_string();
                for hint in e.hints() {
                    why.push_str(&format!(" ({hint})"));
                }
                why
            })?;
            bins.push(store.dir_of(&tool.lock.identity()).join("bin"));
        }
        Ok::<_, String>(bins)
    })
    .await
    .map_err(|e| Failure::internal(format!("installing the tools stopped: {e}")))?
    .map_err(unavailable)?;
    let inherited = command
        .environment_variables
        .iter()
        .rev()
        .find(|v| v.name == "PATH")
        .map(|v| std::ffi::OsString::from(&v.value))
        .or_else(|| std::env::var_os("PATH"));
    let bins: Vec<&Path> = bins.iter().map(PathBuf::as_path).collect();
    let path = crate::tools::path_with(&bins, inherited.as_deref());
    // The tools' lock entries have done their work: the step does not see them (as a local
    // step does not), and a big npm tree could not even be passed (128 KiB per variable).
    command
        .environment_variables
        .retain(|v| v.name != "PATH" && v.name != tools::TOOLS_ENV);
    command
        .environment_variables
        .push(re::command::EnvironmentVariable {
            name: "PATH".into(),
            value: path.to_string_lossy().into_owned(),
        });
    Ok(command)
}

fn now() -> pb::Timestamp {
    proto::timestamp(SystemTime::now())
}

fn log(path: &Path, blobs: &mut Blobs) -> Result<re::Digest, Failure> {
    let digest = crate::remote::tree::hash_file(path).map_err(|e| Failure::local(path, e))?;
    blobs.add_file(digest.clone(), path.to_path_buf());
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn a_payload_is_an_action_or_its_digest() {
        let action = re::Action {
            command_digest: Some(proto::digest_of(b"command")),
            ..Default::default()
        };
        let packed = proto::pack(ACTION, &action);
        assert_eq!(
            decode_payload(Some(&packed)).unwrap(),
            Payload::Action(action)
        );
        let digest = proto::digest_of(b"action");
        let packed = proto::pack(DIGEST, &digest);
        assert_eq!(
            decode_payload(Some(&packed)).unwrap(),
            Payload::Digest(digest)
        );
    }

    #[test]
    fn other_payloads_are_refused() {
        let bad = re::Digest {
            hash: "../../etc/passwd".into(),
            size_bytes: 1,
        };
        let unsafe_digest = proto::pack(DIGEST, &bad);
        let other = proto::pack("google.rpc.Status", &proto::rpc::Status::default());
        for payload in [None, Some(&unsafe_digest), Some(&other)] {
            let err = decode_payload(payload).unwrap_err();
            assert_eq!(err.code, Code::InvalidArgument, "{}", err.message);
        }
    }
}
