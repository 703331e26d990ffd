//! `preflight worker`: serves a build farm through the Remote Workers API. One bot session
//! per process: created once, then updated in a loop that reports each lease's state
//! (ACTIVE leases are the heartbeat, COMPLETED ones carry their ActionResult) and receives
//! new leases. The server's long poll is cut short whenever a job ends or a signal comes,
//! so results are reported at once.
//!
//! The engine never prints: it tells the caller what happens through [`Event`]s.
//!
//! Here: the bot session loop. Below, in `worker/`: `job` (one lease, start to end),
//! `lease` (what the server is told when one ends), `sandbox` (the input root laid out),
//! `spawn` (the process and its group), `outputs` (what comes back), `blobs` (the local
//! blob cache) and `failure` (why a lease gave no result, which all of them return and
//! which imports none of them). The worker uses
//! `remote`'s connection, protocol and tree code, `process`, and `tools` to install the
//! managed tools an action names; it never imports exec, cache, config, commands or report.

mod blobs;
mod failure;
mod job;
mod lease;
mod outputs;
mod sandbox;
mod spawn;

use super::bots::{self, BotSession, BotStatus, BotsClient, Lease, LeaseState, Property};
use super::connection::Connection;
pub use failure::Failure;
use job::Context;
pub use job::{Finished, Ran};
use lease::{completed, report, status};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::Code;

/// The server may hold an update this long while nothing runs (it answers at the latest
/// after 80% of the deadline or of its keepalive, whichever is shorter).
const IDLE_POLL: Duration = Duration::from_secs(30);
/// While jobs run, the session is refreshed at least this often.
const BUSY_POLL: Duration = Duration::from_secs(8);
/// An update that came back at once is not repeated sooner than this (a server that does
/// not long-poll, or a terminating session, would otherwise be asked in a tight loop).
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The longest pause between attempts while the server is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The last report after a forced stop gets this long.
const LAST_REPORT: Duration = Duration::from_secs(5);

/// What the worker offers and how it runs actions.
#[derive(Debug, Clone)]
pub struct Options {
    /// The bot id: unique per worker.
    pub name: String,
    pub jobs: usize,
    /// Platform properties, OSFamily and ISA included.
    pub properties: Vec<(String, String)>,
    /// Where each action gets its folder.
    pub work_dir: PathBuf,
    /// Where fetched blobs are kept for later actions, and how many bytes at most.
    pub cache_dir: PathBuf,
    pub cache_max: u64,
    /// Environment variables actions must not see (those holding the worker's credentials).
    pub hidden_env: Vec<String>,
}

/// How far a stop has gone: a first signal drains, a second kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    Run,
    Drain,
    Kill,
}

/// What the caller hears of.
#[derive(Debug)]
pub enum Event<'a> {
    /// Connected: the session is being made, and work may come.
    Ready,
    Running {
        action: &'a str,
        program: &'a str,
    },
    Finished(&'a Finished),
    /// A call failed in a way that may pass: calls are made again, less and less often
    /// (up to every 30 s), until one succeeds. Said once per outage.
    Unreachable {
        error: &'a str,
    },
    Reachable,
    /// The server no longer knows the session: a new one is made, and the `running` jobs,
    /// which the server has given to other workers, are killed.
    SessionLost {
        error: &'a str,
        running: usize,
    },
    Draining {
        running: usize,
    },
    Killing {
        running: usize,
    },
    /// The blob cache went past its bound: the least recently used blobs were removed.
    Trimmed {
        blobs: usize,
        bytes: u64,
        kept: u64,
    },
}

/// Where events go; called from the jobs' tasks too.
pub type Sink = Arc<dyn Fn(&Event) + Send + Sync>;

/// Why the worker could not serve at all.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

type Answer = Result<BotSession, tonic::Status>;

/// A lease being worked on, or done and waiting to be reported.
enum Slot {
    Running,
    Done(Box<Lease>),
}

struct Worker {
    client: BotsClient,
    context: Arc<Context>,
    options: Options,
    sink: Sink,
    /// The server's last answer (name, version); empty while there is no session.
    session: BotSession,
    leases: HashMap<String, Slot>,
    jobs: JoinSet<Finished>,
    /// The lease of each job task, to report a job that panicked.
    tasks: HashMap<tokio::task::Id, String>,
    stop: Stop,
    backoff: Duration,
    unreachable: bool,
}

/// Serves until stopped. Fails only when the server cannot take a worker at all (no Bots
/// service, a refused session).
pub async fn serve(
    connection: Connection,
    options: Options,
    mut stop: watch::Receiver<Stop>,
    sink: Sink,
) -> Result<(), Fatal> {
    let client = BotsClient::new(connection.channel());
    // It offers the backends of managed tools it can install, unless its flags say which.
    let mut options = options;
    let tools = super::tools::TOOLS_PROPERTY;
    if !options.properties.iter().any(|(key, _)| key == tools) {
        for backend in super::tools::backends_here() {
            options
                .properties
                .push((tools.to_string(), backend.to_string()));
        }
    }
    let context = Arc::new(Context {
        connection,
        bot_id: options.name.clone(),
        work_dir: options.work_dir.clone(),
        hidden_env: options.hidden_env.clone(),
        processes: spawn::Processes::default(),
        cache: Arc::new(blobs::Cache::new(
            options.cache_dir.clone(),
            options.cache_max,
        )),
        tools: crate::tools::Store::under(&options.cache_dir),
    });
    let mut worker = Worker {
        client,
        context,
        options,
        sink,
        session: BotSession::default(),
        leases: HashMap::new(),
        jobs: JoinSet::new(),
        tasks: HashMap::new(),
        stop: Stop::Run,
        backoff: MIN_INTERVAL,
        unreachable: false,
    };
    // The server may hold the creation until it has work, so a server that says it runs
    // actions is taken at its word and the worker is ready from here; another is believed
    // once the session exists. A stop meanwhile just ends, as nothing runs yet.
    let executes = worker.context.connection.capabilities.execution;
    if executes {
        (worker.sink)(&Event::Ready);
    }
    // A server that goes away meanwhile (a restart) is waited for; one that has no Bots
    // service, or refuses this worker, ends it.
    loop {
        let request = worker.create_request();
        let mut client = worker.client.clone();
        let created = tokio::select! {
            created = client.create(request) => created,
            Ok(_) = stop.wait_for(|s| *s != Stop::Run) => return Ok(()),
        };
        match created {
            Ok(session) => {
                worker.accept(session);
                break;
            }
            Err(s)
                if matches!(
                    s.code(),
                    Code::Unavailable | Code::Unknown | Code::DeadlineExceeded
                ) =>
            {
                if !worker.unreachable {
                    worker.unreachable = true;
                    (worker.sink)(&Event::Unreachable {
                        error: &format!("{:?}: {}", s.code(), s.message()),
                    });
                }
                let pause = worker.backoff;
                worker.backoff = (worker.backoff * 2).min(MAX_BACKOFF);
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    Ok(_) = stop.wait_for(|s| *s != Stop::Run) => return Ok(()),
                }
            }
            Err(s) => return Err(refused(&worker.context.connection.endpoint, &s)),
        }
    }
    if worker.unreachable {
        worker.unreachable = false;
        worker.backoff = MIN_INTERVAL;
        (worker.sink)(&Event::Reachable);
    }
    if !executes {
        (worker.sink)(&Event::Ready);
    }
    worker.run(&mut stop).await
}

fn refused(endpoint: &str, s: &tonic::Status) -> Fatal {
    if s.code() == Code::Unimplemented {
        Fatal(format!(
            "the server at {endpoint} hands out no work (it has no Remote Workers `Bots` \
             service): enable remote execution there (BuildGrid: an `!execution` service \
             with a scheduler)"
        ))
    } else {
        Fatal(format!(
            "the server at {endpoint} refused the worker: {:?}: {}",
            s.code(),
            s.message()
        ))
    }
}

impl Worker {
    fn status(&self) -> BotStatus {
        if self.stop == Stop::Run {
            BotStatus::Ok
        } else {
            BotStatus::BotTerminating
        }
    }

    fn running(&self) -> usize {
        self.leases
            .values()
            .filter(|s| matches!(s, Slot::Running))
            .count()
    }

    /// What the worker offers: BuildGrid matches platforms against the properties of the
    /// first device only, and reads how many leases it may hold from `capacity`.
    fn description(&self) -> bots::Worker {
        let pairs = |list: &[(String, String)]| {
            list.iter()
                .map(|(key, value)| Property {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect()
        };
        bots::Worker {
            devices: vec![bots::Device {
                handle: self.options.name.clone(),
                properties: pairs(&self.options.properties),
            }],
            properties: Vec::new(),
            configs: pairs(&[("capacity".into(), self.options.jobs.to_string())]),
        }
    }

    fn create_request(&self) -> tonic::Request<bots::CreateBotSessionRequest> {
        let session = BotSession {
            bot_id: self.options.name.clone(),
            status: self.status() as i32,
            worker: Some(self.description()),
            ..Default::default()
        };
        let request = bots::CreateBotSessionRequest {
            parent: self.context.connection.instance.clone(),
            bot_session: Some(session),
        };
        self.context
            .connection
            .request_with_timeout(request, IDLE_POLL)
    }

    /// The session as this worker sees it: running leases ACTIVE (the heartbeat), finished
    /// ones COMPLETED with their results, and the server's version echoed back.
    fn update_request(&self) -> tonic::Request<bots::UpdateBotSessionRequest> {
        let mut session = self.session.clone();
        session.status = self.status() as i32;
        // Sent every time: BuildGrid recomputes the worker's platforms from each update.
        session.worker = Some(self.description());
        session.leases = self
            .leases
            .iter()
            .map(|(id, slot)| match slot {
                Slot::Running => Lease {
                    id: id.clone(),
                    state: LeaseState::Active as i32,
                    ..Default::default()
                },
                Slot::Done(lease) => lease.as_ref().clone(),
            })
            .collect();
        let poll = if self.stop == Stop::Kill {
            LAST_REPORT
        } else if self.running() > 0 {
            BUSY_POLL
        } else {
            IDLE_POLL
        };
        let request = bots::UpdateBotSessionRequest {
            name: session.name.clone(),
            bot_session: Some(session),
        };
        self.context.connection.request_with_timeout(request, poll)
    }

    /// The next call: a new session when there is none, else an update.
    fn next_call(&self) -> Pin<Box<dyn Future<Output = Answer> + Send>> {
        let mut client = self.client.clone();
        if self.session.name.is_empty() {
            let request = self.create_request();
            Box::pin(async move { client.create(request).await })
        } else {
            let request = self.update_request();
            Box::pin(async move { client.update(request).await })
        }
    }

    async fn run(&mut self, stop: &mut watch::Receiver<Stop>) -> Result<(), Fatal> {
        let mut next_call = Instant::now();
        let mut signals = true;
        loop {
            let unreported = self.leases.values().any(|s| matches!(s, Slot::Done(_)));
            let stopping = self.stop != Stop::Run && self.running() == 0;
            if stopping && !unreported && self.session.status == BotStatus::BotTerminating as i32 {
                return Ok(());
            }
            // Stopping, nothing running, and the server gone: what is left to report cannot
            // be delivered (the server requeues it when the session expires).
            if stopping && self.unreachable {
                return Ok(());
            }
            if Instant::now() < next_call {
                tokio::select! {
                    _ = tokio::time::sleep_until(next_call.into()) => {}
                    Some(joined) = self.jobs.join_next_with_id() => {
                        self.finish(joined);
                        next_call = Instant::now();
                    }
                    changed = stop.changed(), if signals => {
                        signals = changed.is_ok();
                        next_call = Instant::now();
                        self.on_stop(*stop.borrow());
                    }
                }
                continue;
            }
            let last_try = self.stop == Stop::Kill && self.running() == 0;
            let asked = Instant::now();
            let sent_status = self.status();
            let call = self.next_call();
            tokio::select! {
                answer = call => {
                    if last_try {
                        return Ok(());
                    }
                    next_call = match answer {
                        Ok(mut session) => {
                            if self.unreachable {
                                self.unreachable = false;
                                (self.sink)(&Event::Reachable);
                            }
                            self.backoff = MIN_INTERVAL;
                            let news = session
                                .leases
                                .iter()
                                .any(|l| !self.leases.contains_key(&l.id));
                            // What the server now knows of this worker's state.
                            session.status = sent_status as i32;
                            self.accept(session);
                            if news || asked.elapsed() >= MIN_INTERVAL {
                                Instant::now()
                            } else {
                                asked + MIN_INTERVAL
                            }
                        }
                        Err(s) => self.failed(&s)?,
                    };
                }
                // A job ended: the poll is dropped (the server sees it cancelled) and the
                // next call reports the result at once.
                Some(joined) = self.jobs.join_next_with_id() => {
                    self.finish(joined);
                    next_call = Instant::now();
                }
                changed = stop.changed(), if signals => {
                    signals = changed.is_ok();
                    next_call = Instant::now();
                    self.on_stop(*stop.borrow());
                }
            }
        }
    }

    fn on_stop(&mut self, stop: Stop) {
        if stop <= self.stop {
            return;
        }
        self.stop = stop;
        let running = self.running();
        if stop == Stop::Kill {
            self.context.processes.cancel_all();
            (self.sink)(&Event::Killing { running });
        } else {
            (self.sink)(&Event::Draining { running });
        }
    }

    /// A failed call: wait and try again, or start a new session when the server has
    /// forgotten this one. Returns when to call next.
    fn failed(&mut self, s: &tonic::Status) -> Result<Instant, Fatal> {
        let error = format!("{:?}: {}", s.code(), s.message());
        match s.code() {
            // The server held the poll past the deadline: nothing happened.
            Code::DeadlineExceeded => Ok(Instant::now()),
            Code::Unimplemented => Err(refused(&self.context.connection.endpoint, s)),
            Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition | Code::DataLoss
                if !self.session.name.is_empty() =>
            {
                let running = self.running();
                (self.sink)(&Event::SessionLost {
                    error: &error,
                    running,
                });
                for (id, slot) in self.leases.drain() {
                    if matches!(slot, Slot::Running) {
                        self.context.processes.cancel(&id);
                    }
                }
                self.session = BotSession::default();
                Ok(Instant::now())
            }
            _ => {
                let retry_in = self.backoff;
                if !self.unreachable {
                    self.unreachable = true;
                    (self.sink)(&Event::Unreachable { error: &error });
                }
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                Ok(Instant::now() + retry_in)
            }
        }
    }

    /// Takes an answer of the server: reported leases are forgotten, new ones start, and
    /// running ones it no longer lists (cancelled, or given to another worker) are killed.
    fn accept(&mut self, session: BotSession) {
        let listed: HashMap<&str, i32> = session
            .leases
            .iter()
            .map(|l| (l.id.as_str(), l.state))
            .collect();
        let processes = &self.context.processes;
        self.leases.retain(|id, slot| match slot {
            Slot::Done(_) => false,
            Slot::Running => {
                let keep = listed
                    .get(id.as_str())
                    .is_some_and(|&state| state != LeaseState::Cancelled as i32);
                if !keep {
                    processes.cancel(id);
                }
                keep
            }
        });
        for lease in &session.leases {
            let new = lease.state == LeaseState::Active as i32
                || lease.state == LeaseState::Pending as i32;
            if new && !self.leases.contains_key(&lease.id) {
                self.start(lease);
            }
        }
        self.session = session;
        self.session.leases.clear();
    }

    fn start(&mut self, lease: &Lease) {
        if self.stop != Stop::Run {
            // Given before the server heard that this worker stops: handed back, to run
            // elsewhere (BuildGrid requeues UNAVAILABLE).
            let status = status(Code::Unavailable, "the worker is stopping");
            self.leases.insert(
                lease.id.clone(),
                Slot::Done(Box::new(completed(&lease.id, status, None))),
            );
            return;
        }
        self.leases.insert(lease.id.clone(), Slot::Running);
        // A job given back to this worker keeps its lease id: forget an old cancellation.
        self.context.processes.finish(&lease.id);
        let context = Arc::clone(&self.context);
        let sink = Arc::clone(&self.sink);
        let (id, payload) = (lease.id.clone(), lease.payload.clone());
        let task = self.jobs.spawn(async move {
            let on_start = |program: &str, action: &str| sink(&Event::Running { action, program });
            job::run(&context, &id, payload.as_ref(), &on_start).await
        });
        self.tasks.insert(task.id(), lease.id.clone());
    }

    /// A job ended: shown, and kept to be reported unless the lease was taken back.
    fn finish(&mut self, joined: Result<(tokio::task::Id, Finished), tokio::task::JoinError>) {
        let (task, outcome) = match joined {
            Ok((task, finished)) => (task, Ok(finished)),
            Err(e) => (e.id(), Err(e.to_string())),
        };
        let Some(id) = self.tasks.remove(&task) else {
            return;
        };
        let (status, result) = match &outcome {
            Ok(finished) => {
                (self.sink)(&Event::Finished(finished));
                report(finished)
            }
            Err(panic) => (
                status(Code::Internal, &format!("the worker failed: {panic}")),
                None,
            ),
        };
        if matches!(self.leases.get(&id), Some(Slot::Running)) {
            let lease = completed(&id, status, result);
            self.leases.insert(id, Slot::Done(Box::new(lease)));
        }
        // Off the loop, so that the result is reported meanwhile.
        let cache = Arc::clone(&self.context.cache);
        let sink = Arc::clone(&self.sink);
        tokio::task::spawn_blocking(move || {
            if let Some(t) = cache.trim() {
                sink(&Event::Trimmed {
                    blobs: t.blobs,
                    bytes: t.bytes,
                    kept: t.kept,
                });
            }
        });
    }
}
