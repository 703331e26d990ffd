//! `[remote]`: a REAPI v2 server (BuildGrid, Buildbarn, NativeLink, BuildBuddy, bazel-remote)
//! as a cache shared between machines, as a farm that runs steps, and the worker that
//! serves such a farm (`preflight worker`).
//!
//! A cache never fails a run: when the server is down, slow or refusing, the run says so
//! once and goes on locally.
//!
//! What lives here: the session of one run (this file), a step as an Action (`action`,
//! `tree`), the channel and its errors (`connection`, `proto`), blob transfer (`cas`),
//! results between the local and the remote store (`results`), remote execution
//! (`execute`), and the worker (`worker`, `bots`, `host`).
//!
//! What it may import: the configuration, the local cache (`cache`: the store, keys,
//! inputs), `process`, `git`, and `tools` (a worker installs a step's managed tools, `tools`). What it must not import: the reporter (`report`), the
//! executor (`exec`), the commands or the command line (`cli`); and the cache never imports
//! this module. Problems go back as values (`Warning`, `RemoteError`, typed errors), which
//! the executor puts into words.

pub mod action;
pub mod bots;
pub mod cas;
pub mod connection;
pub mod execute;
pub mod host;
pub mod proto;
pub mod results;
pub mod tools;
pub mod tree;
pub mod worker;

use crate::cache::store::{self, Store};
use crate::config::{Remote, RemoteCache};
use action::Prepared;
use connection::{Connection, RemoteError};
use proto::re;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The `--remote-cache`, `--remote-execute` and `--no-remote` flags.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub cache: Option<RemoteCache>,
    pub execute: Option<bool>,
    pub off: bool,
}

/// A problem to report: `None` when it was already reported (the server is down).
#[derive(Debug)]
pub enum Warning {
    /// About the remote as a whole (down, no Execution service): said once per run.
    Remote(String),
    /// About one step's use of it: the caller names the step.
    Step(String),
    /// Already said.
    Said,
}

/// One run's use of the remote.
pub struct Session {
    /// Started at the first remote call: a run whose steps all hit the local cache (a
    /// commit hook, mostly) pays nothing for having a remote.
    runtime: OnceLock<std::io::Result<tokio::runtime::Runtime>>,
    pub config: Remote,
    pub cache: RemoteCache,
    pub execute: bool,
    connection: OnceLock<Result<Connection, RemoteError>>,
    /// Set at the first sign that the server is unreachable: the rest of the run is local.
    down: AtomicBool,
    /// Set when the server turns out to have no Execution service: steps run here, the
    /// cache is still used.
    no_execution: AtomicBool,
    /// The run's managed tools as Actions carry them, by name (`with_tools`).
    pub tools: std::collections::HashMap<String, tools::WireTool>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("endpoint", &self.config.endpoint)
            .field("cache", &self.cache)
            .field("execute", &self.execute)
            .finish_non_exhaustive()
    }
}

/// The failures that mean the server cannot be used at all right now.
fn unreachable(e: &RemoteError) -> bool {
    match e.code {
        // Errors without a gRPC code are about one blob or one result, not the server.
        None => false,
        Some(code) => matches!(
            code,
            tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Unauthenticated
                | tonic::Code::PermissionDenied
                | tonic::Code::Cancelled
        ),
    }
}

/// A remote hit or execution, as a local entry with its log.
#[derive(Debug)]
pub struct Fetched {
    pub entry: store::ActionResult,
    pub worker: String,
}

impl Session {
    /// The run's remote, unless there is none or it is switched off.
    /// Nothing connects yet: a run whose steps all hit the local cache never does.
    pub fn open(remote: Option<&Remote>, overrides: &Overrides) -> Option<Session> {
        let remote = remote.filter(|_| !overrides.off)?;
        let cache = overrides.cache.unwrap_or(remote.cache);
        let execute = overrides.execute.unwrap_or(remote.execute);
        if !cache.reads() && !execute {
            return None;
        }
        Some(Session {
            runtime: OnceLock::new(),
            config: remote.clone(),
            cache,
            execute,
            connection: OnceLock::new(),
            down: AtomicBool::new(false),
            no_execution: AtomicBool::new(false),
            tools: std::collections::HashMap::new(),
        })
    }

    /// The run's managed tools with their lock entries: the Actions of the steps that use
    /// them carry them.
    pub fn with_tools(mut self, tools: std::collections::HashMap<String, tools::WireTool>) -> Self {
        self.tools = tools;
        self
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, Warning> {
        let runtime = self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("preflight-remote")
                .enable_all()
                .build()
        });
        runtime
            .as_ref()
            .map_err(|e| self.once(format!("cannot start the remote client: {e}")))
    }

    /// The connection, opened at first use; `Err` carries the warning to show (once).
    fn connection(&self) -> Result<&Connection, Warning> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Warning::Said);
        }
        let runtime = self.runtime()?;
        let opened = self
            .connection
            .get_or_init(|| runtime.block_on(Connection::open(&self.config)));
        match opened {
            Ok(c) => Ok(c),
            Err(e) => Err(self.once(format!("{e}; the run goes on without the remote"))),
        }
    }

    /// Turns a failure into the warning to show, marking the server down when it is
    /// unreachable (then only the first such failure is shown).
    fn warn(&self, what: &str, e: &RemoteError) -> Warning {
        if unreachable(e) {
            return self.once(format!(
                "the remote at {} stopped answering ({e}); the rest of the run is local",
                self.config.endpoint
            ));
        }
        Warning::Step(format!("{what}: {e}"))
    }

    /// Marks the remote down; the warning is said by the first step that finds out.
    fn once(&self, text: String) -> Warning {
        if self.down.swap(true, Ordering::SeqCst) {
            Warning::Said
        } else {
            Warning::Remote(text)
        }
    }

    /// Looks the Action up in the remote cache and, on a hit, downloads its outputs into
    /// the local store. `Ok(None)` is a miss.
    pub fn lookup(&self, prepared: &Prepared, store: &Store) -> Result<Option<Fetched>, Warning> {
        if !self.cache.reads() {
            return Ok(None);
        }
        let connection = self.connection()?;
        let found = self.runtime()?.block_on(async {
            let answer = connection
                .action_cache_client()
                .get_action_result(connection.request(re::GetActionResultRequest {
                    instance_name: connection.instance.clone(),
                    action_digest: Some(prepared.action_digest.clone()),
                    ..Default::default()
                }))
                .await;
            let result = match answer {
                Ok(r) => r.into_inner(),
                Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
                Err(s) => return Err(RemoteError::status("cannot ask the remote cache", &s)),
            };
            if result.exit_code != 0 {
                return Ok(None);
            }
            let worker = result
                .execution_metadata
                .as_ref()
                .map(|m| m.worker.clone())
                .unwrap_or_default();
            let entry = results::fetch(connection, &result, &prepared.working_dir, store).await?;
            Ok(Some(Fetched { entry, worker }))
        });
        found.map_err(|e| self.warn("the remote cache entry could not be used", &e))
    }

    /// Uploads a result that passed here: the blobs the server lacks, then the result.
    pub fn upload(
        &self,
        prepared: &Prepared,
        entry: &store::ActionResult,
        store: &Store,
    ) -> Result<cas::Uploaded, Warning> {
        if !self.cache.writes() {
            return Ok(cas::Uploaded::default());
        }
        let (result, mut blobs) = results::to_remote(entry, &prepared.working_dir, store)
            .map_err(|e| Warning::Step(format!("not uploaded to the remote cache: {e}")))?;
        let connection = self.connection()?;
        blobs.extend(prepared.action_blobs());
        let uploaded = self.runtime()?.block_on(async {
            let uploaded = connection.upload(&blobs).await?;
            connection
                .call("cannot store the result in the remote cache", || {
                    let mut client = connection.action_cache_client();
                    let request = connection.request(re::UpdateActionResultRequest {
                        instance_name: connection.instance.clone(),
                        action_digest: Some(prepared.action_digest.clone()),
                        action_result: Some(result.clone()),
                        ..Default::default()
                    });
                    async move { client.update_action_result(request).await }
                })
                .await?;
            Ok(uploaded)
        });
        uploaded.map_err(|e| self.warn("not uploaded to the remote cache", &e))
    }

    /// Runs the step on the farm and downloads its outputs into the local store.
    pub fn execute(
        &self,
        prepared: &Prepared,
        timeout: Option<Duration>,
        forced: bool,
        store: &Store,
        on_stage: &(dyn Fn(execute::Stage) + Sync),
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Executed, Warning> {
        let connection = self.connection()?;
        if !connection.capabilities.execution {
            if self.no_execution.swap(true, Ordering::SeqCst) {
                return Err(Warning::Said);
            }
            return Err(Warning::Remote(format!(
                "the remote at {} does not run actions (no Execution service); steps run here",
                self.config.endpoint
            )));
        }
        // Waiting is bounded by the step's timeout (the worker enforces it) plus queueing.
        let wait = timeout.map_or(Duration::from_secs(24 * 3600), |t| {
            t + Duration::from_secs(600)
        });
        // The server answers from its cache unless the run may not read it, or the step is
        // forced to run.
        let skip_cache = forced || !self.cache.reads();
        let queue = self.config.queue_timeout;
        let run = async {
            let mut done =
                execute::execute(connection, prepared, wait, queue, skip_cache, on_stage).await;
            // A failure the server kept in its cache may have been a flaky one: run it again.
            if let Ok(finished) = &done
                && finished.cached
                && finished.result.exit_code != 0
            {
                done = execute::execute(connection, prepared, wait, queue, true, on_stage).await;
            }
            match done {
                Ok(finished) => {
                    let entry =
                        results::fetch(connection, &finished.result, &prepared.working_dir, store)
                            .await?;
                    Ok(Executed::Done {
                        exit_code: finished.result.exit_code,
                        worker: finished.worker,
                        entry: Box::new(entry),
                    })
                }
                Err(execute::NotExecuted::TimedOut) => Ok(Executed::TimedOut),
                Err(execute::NotExecuted::NotTaken { waited }) => Ok(Executed::NotTaken { waited }),
                Err(execute::NotExecuted::ToolsUnavailable(why)) => {
                    Ok(Executed::ToolsUnavailable { why })
                }
                Err(execute::NotExecuted::Failed(e)) => Err(e),
            }
        };
        // Ctrl-C and --fail-fast stop waiting for the farm (the worker may still finish).
        let stop = async {
            while !cancelled() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let outcome = self.runtime()?.block_on(async {
            tokio::select! {
                outcome = run => outcome,
                () = stop => Ok(Executed::Cancelled),
            }
        });
        outcome.map_err(|e| self.warn("it could not run remotely", &e))
    }
}

/// How a remote execution ended.
#[derive(Debug)]
pub enum Executed {
    Done {
        exit_code: i32,
        worker: String,
        entry: Box<store::ActionResult>,
    },
    TimedOut,
    /// No worker took it within the queue timeout (the server was asked to drop it).
    NotTaken {
        waited: Duration,
    },
    /// The worker could not provide the step's managed tools: it runs here.
    ToolsUnavailable {
        why: String,
    },
    /// The run was stopped while it waited.
    Cancelled,
}
