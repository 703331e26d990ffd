//! `preflight worker`: serves a REAPI build farm through the Remote Workers API. This layer
//! reads the flags, connects, turns signals into stops and prints what the worker does.

use crate::cli::WorkerArgs;
use crate::config::{Remote, RemoteCache};
use crate::error::{Error, Result, exit};
use crate::remote::connection::Connection;
use crate::remote::worker::{self, Event, Options, Stop};
use crate::report::{format_duration, format_size};
use crate::signals::{self, Stops};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub fn worker(args: &WorkerArgs, color: bool) -> Result<i32> {
    let mut options = options(args)?;
    let remote = Remote {
        endpoint: args.endpoint.clone(),
        instance_name: args.instance.clone(),
        ca_cert: args.ca_cert.clone(),
        headers: pairs(&args.headers, "--header", "NAME=VARIABLE")?,
        cache: RemoteCache::Off,
        ci_cache: None,
        execute: false,
        platform: BTreeMap::new(),
        // One call may stream a large blob: the deadline is per call.
        timeout: Duration::from_secs(300),
        connect_timeout: Duration::from_secs(10),
        queue_timeout: Duration::from_secs(600),
        retries: 3,
    };
    // The worker's credentials stay with the worker: actions run code from anyone who can
    // submit to the farm.
    options.hidden_env = remote.headers.iter().map(|(_, var)| var.clone()).collect();
    for (dir, what) in [
        (&options.work_dir, "work dir"),
        (&options.cache_dir, "cache dir"),
    ] {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create the {what} {}", dir.display()), e))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("preflight-worker")
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the worker's runtime", e))?;
    runtime.block_on(async {
        let (tx, rx) = watch::channel(Stop::Run);
        // Without handlers the default action stops the worker; `tx` stays, so that the
        // worker does not take a closed channel for a stop.
        let tx = Arc::new(tx);
        let _ = stop_on_signals(Arc::clone(&tx));
        let connection = Connection::open(&remote).await.map_err(|e| {
            Error::Setup(format!(
                "{e}\nIs the server running, and is --endpoint its address? A worker needs a \
                 REAPI server with remote execution (e.g. BuildGrid with an `!execution` \
                 service)."
            ))
        })?;
        let sink = printer(
            options.name.clone(),
            remote.endpoint.clone(),
            &options,
            color,
        );
        worker::serve(connection, options, rx, sink)
            .await
            .map_err(|e| Error::Setup(e.0))
    })?;
    Ok(exit::SUCCESS)
}

/// The worker's options from the flags: the name, and OSFamily and ISA of this machine
/// unless given.
fn options(args: &WorkerArgs) -> Result<Options> {
    if args.jobs == 0 {
        return Err(Error::Usage("--jobs must be at least 1".into()));
    }
    let mut properties = pairs(&args.properties, "--property", "KEY=VALUE")?;
    for (key, value) in crate::remote::host::platform() {
        if !properties.iter().any(|(k, _)| k == key) {
            properties.push((key.to_string(), value.to_string()));
        }
    }
    let name = match &args.name {
        Some(name) if name.trim().is_empty() => {
            return Err(Error::Usage("--name must not be empty".into()));
        }
        Some(name) => name.clone(),
        None => format!("{}-{}", crate::remote::host::name(), std::process::id()),
    };
    let work_dir = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    Ok(Options {
        hidden_env: Vec::new(),
        name,
        jobs: args.jobs,
        properties,
        cache_dir: match &args.cache_dir {
            Some(dir) => dir.clone(),
            None => work_dir.join("preflight-worker-cache"),
        },
        cache_max: args.cache_max,
        work_dir,
    })
}

/// `KEY=VALUE` flags as pairs.
fn pairs(flags: &[String], flag: &str, shape: &str) -> Result<Vec<(String, String)>> {
    flags
        .iter()
        .map(|f| match f.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(Error::Usage(format!("{flag} `{f}` is not {shape}"))),
        })
        .collect()
}

/// Ctrl-C or SIGTERM: the first drains (running actions finish and are reported), the
/// second kills them, a third leaves at once.
fn stop_on_signals(tx: Arc<watch::Sender<Stop>>) -> Result<()> {
    signals::on_stop(Stops::InterruptTerm, move |count| {
        let stop = match count {
            1 => Stop::Drain,
            2 => Stop::Kill,
            _ => std::process::exit(exit::INTERRUPTED),
        };
        let _ = tx.send(stop);
    })
}

/// One line on stderr per thing the worker does.
fn printer(name: String, endpoint: String, options: &Options, color: bool) -> worker::Sink {
    let prefix = console::Style::new()
        .cyan()
        .bold()
        .force_styling(color)
        .apply_to(format!("worker {name}:"))
        .to_string();
    let offers = options
        .properties
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    let jobs = options.jobs;
    Arc::new(move |event: &Event| {
        let line = match event {
            Event::Ready => {
                format!("serving {endpoint} ({jobs} at once; {offers}); Ctrl-C to stop")
            }
            Event::Running { action, program } => {
                format!("running {program} (action {action})")
            }
            Event::Finished(f) => {
                let took = format_duration(f.elapsed);
                if let Ok(ran) = &f.outcome
                    && !ran.leftover.is_empty()
                {
                    let which = ran
                        .leftover
                        .iter()
                        .map(|(pid, command)| format!("pid {pid} `{command}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    eprintln!(
                        "{prefix} warning: {which} left the group of action {} and still \
                         holds its output open; it was not waited for, and is still running",
                        f.action
                    );
                }
                match &f.outcome {
                    Ok(ran) if ran.timed_out.is_some() => {
                        format!("timed out, killed in {took} (action {})", f.action)
                    }
                    Ok(ran) => format!(
                        "done exit {} in {took} (action {})",
                        ran.result.exit_code, f.action
                    ),
                    Err(e) => format!("failed in {took}: {} (action {})", e.message, f.action),
                }
            }
            Event::Unreachable { error } => format!(
                "the server at {endpoint} is not answering ({error}); trying again, every \
                 30s at most, until it does (running actions go on)"
            ),
            Event::Reachable => format!("the server at {endpoint} answers again"),
            Event::SessionLost { error, running } => format!(
                "the server no longer knows this worker ({error}); starting a new session \
                 ({running} running action(s) dropped: the server gives them to others)"
            ),
            Event::Draining { running } => format!(
                "stopping: no new work; waiting for {running} running action(s) (Ctrl-C again \
                 to kill them)"
            ),
            Event::Killing { running } => format!("killing {running} running action(s)"),
            Event::Trimmed { blobs, bytes, kept } => format!(
                "blob cache over its bound: removed the {blobs} least recently used blob(s) \
                 ({}); {} kept",
                format_size(*bytes),
                format_size(*kept)
            ),
        };
        eprintln!("{prefix} {line}");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(properties: &[&str]) -> WorkerArgs {
        WorkerArgs {
            endpoint: "grpc://127.0.0.1:1".into(),
            instance: String::new(),
            jobs: 2,
            properties: properties.iter().map(|p| p.to_string()).collect(),
            name: Some("w".into()),
            work_dir: None,
            cache_dir: None,
            cache_max: 5_000_000_000,
            ca_cert: None,
            headers: Vec::new(),
        }
    }

    #[test]
    fn this_machine_is_described_unless_the_flags_say_otherwise() {
        let o = options(&args(&["pool=a", "ISA=custom"])).unwrap();
        assert_eq!(
            o.properties,
            [
                ("pool".to_string(), "a".to_string()),
                ("ISA".to_string(), "custom".to_string()),
                ("OSFamily".to_string(), std::env::consts::OS.to_string()),
            ]
        );
        assert!(options(&args(&["novalue"])).is_err());
        assert!(options(&args(&["=x"])).is_err());
    }

    #[test]
    fn the_blob_cache_is_in_the_work_dir_unless_given() {
        let mut a = args(&[]);
        a.work_dir = Some("/srv/work".into());
        assert_eq!(
            options(&a).unwrap().cache_dir,
            std::path::Path::new("/srv/work/preflight-worker-cache")
        );
        a.cache_dir = Some("/srv/blobs".into());
        assert_eq!(
            options(&a).unwrap().cache_dir,
            std::path::Path::new("/srv/blobs")
        );
    }
}
