//! Running an Action on the farm: its blobs uploaded (only those missing), `Execute`
//! followed as a stream of stages, resumed with `WaitExecution` when the stream drops.

use super::action::Prepared;
use super::connection::{Connection, RemoteError};
use super::proto::{longrunning, re};
use prost::Message;
use std::time::Duration;

/// Where a remote execution is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    Uploading,
    /// The inputs are on the server: how many blobs it lacked, their bytes, the time taken.
    Uploaded {
        blobs: usize,
        missing: usize,
        bytes: u64,
        took: Duration,
    },
    Queued,
    Executing,
}

/// What the farm answered.
#[derive(Debug)]
pub struct Finished {
    pub result: re::ActionResult,
    /// The server answered from its cache without running anything.
    pub cached: bool,
    pub worker: String,
}

/// Why an execution gave no result.
#[derive(Debug)]
pub enum NotExecuted {
    /// The step ran past its timeout on the worker.
    TimedOut,
    /// No worker took it within the queue timeout; the server was asked to drop it.
    NotTaken {
        waited: Duration,
    },
    /// The worker that took it could not install the step's managed tools (its words).
    ToolsUnavailable(String),
    Failed(RemoteError),
}

impl From<RemoteError> for NotExecuted {
    fn from(e: RemoteError) -> Self {
        NotExecuted::Failed(e)
    }
}

fn stage_of(operation: &longrunning::Operation) -> Option<Stage> {
    let metadata = operation.metadata.as_ref()?;
    let meta = re::ExecuteOperationMetadata::decode(metadata.value.as_slice()).ok()?;
    match re::execution_stage::Value::try_from(meta.stage).ok()? {
        re::execution_stage::Value::Queued => Some(Stage::Queued),
        re::execution_stage::Value::Executing => Some(Stage::Executing),
        _ => None,
    }
}

/// Asks the server to drop an operation nobody will wait for (best effort).
async fn cancel(connection: &Connection, name: &str) {
    if name.is_empty() {
        return;
    }
    let mut client = longrunning::operations_client::OperationsClient::new(connection.channel());
    let request = connection.request(longrunning::CancelOperationRequest {
        name: name.to_string(),
    });
    let _ = client.cancel_operation(request).await;
}

/// Uploads what the Action needs, runs it and waits for the result. `on_stage` hears of
/// each stage once.
pub async fn execute(
    connection: &Connection,
    prepared: &Prepared,
    wait: Duration,
    queue_timeout: Duration,
    skip_cache_lookup: bool,
    on_stage: &(dyn Fn(Stage) + Sync),
) -> Result<Finished, NotExecuted> {
    on_stage(Stage::Uploading);
    let started = std::time::Instant::now();
    let mut blobs = prepared.input_root.blobs.clone();
    blobs.extend(prepared.action_blobs());
    let uploaded = connection.upload(&blobs).await?;
    on_stage(Stage::Uploaded {
        blobs: uploaded.blobs,
        missing: uploaded.missing,
        bytes: uploaded.bytes_sent,
        took: started.elapsed(),
    });

    let what = "the remote execution failed";
    let mut client = connection.execution_client();
    let request = connection.request_with_timeout(
        re::ExecuteRequest {
            instance_name: connection.instance.clone(),
            action_digest: Some(prepared.action_digest.clone()),
            skip_cache_lookup,
            ..Default::default()
        },
        wait,
    );
    let mut stream = client
        .execute(request)
        .await
        .map_err(|s| RemoteError::status(what, &s))?
        .into_inner();
    let mut last_stage = None;
    let mut name = String::new();
    let mut resumed = false;
    // Until a worker takes it, the Action may wait only so long: a platform that no worker
    // offers would otherwise wait forever.
    let queued_until = tokio::time::Instant::now() + queue_timeout;
    loop {
        let message = stream.message();
        let message = if last_stage == Some(Stage::Executing) {
            message.await
        } else {
            match tokio::time::timeout_at(queued_until, message).await {
                Ok(message) => message,
                Err(_) => {
                    cancel(connection, &name).await;
                    return Err(NotExecuted::NotTaken {
                        waited: queue_timeout,
                    });
                }
            }
        };
        let next = match message {
            Ok(next) => next,
            // A dropped stream is picked up again once, by the operation's name.
            Err(status) if !resumed && !name.is_empty() => {
                let _ = status;
                resumed = true;
                let request = connection
                    .request_with_timeout(re::WaitExecutionRequest { name: name.clone() }, wait);
                stream = client
                    .wait_execution(request)
                    .await
                    .map_err(|s| RemoteError::status(what, &s))?
                    .into_inner();
                continue;
            }
            Err(status) => return Err(RemoteError::status(what, &status).into()),
        };
        let Some(operation) = next else {
            return Err(
                RemoteError::new(what, "the server closed the stream without a result").into(),
            );
        };
        name.clone_from(&operation.name);
        if let Some(stage) = stage_of(&operation)
            && last_stage.as_ref() != Some(&stage)
        {
            on_stage(stage.clone());
            last_stage = Some(stage);
        }
        if !operation.done {
            continue;
        }
        let response = match operation.result {
            Some(longrunning::operation::Result::Response(any)) => {
                re::ExecuteResponse::decode(any.value.as_slice()).map_err(|e| {
                    RemoteError::new(what, format!("the answer does not decode: {e}"))
                })?
            }
            Some(longrunning::operation::Result::Error(status)) => {
                return Err(RemoteError::new(what, status.message).into());
            }
            None => {
                return Err(RemoteError::new(what, "the operation ended without a result").into());
            }
        };
        if let Some(status) = response.status.as_ref().filter(|s| s.code != 0) {
            if status.code == tonic::Code::DeadlineExceeded as i32 {
                return Err(NotExecuted::TimedOut);
            }
            if status.code == tonic::Code::FailedPrecondition as i32
                && status.message.starts_with(super::tools::UNAVAILABLE)
            {
                return Err(NotExecuted::ToolsUnavailable(status.message.clone()));
            }
            return Err(RemoteError::new(what, status.message.clone()).into());
        }
        let result = response
            .result
            .ok_or_else(|| RemoteError::new(what, "the answer holds no result"))?;
        let worker = result
            .execution_metadata
            .as_ref()
            .map(|m| m.worker.clone())
            .unwrap_or_default();
        return Ok(Finished {
            result,
            cached: response.cached_result,
            worker,
        });
    }
}
