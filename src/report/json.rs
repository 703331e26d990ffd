//! `--format json`: one JSON object per line on stdout, for scripts and editors.

use crate::exec::{Event, Reporter, Status};
use serde_json::json;
use std::io::Write;

pub struct Json;

impl Json {
    pub fn new() -> Self {
        Json
    }
}

impl Default for Json {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for Json {
    fn event(&mut self, event: Event) {
        let value = match event {
            Event::RunStarted { steps, jobs } => {
                json!({"event": "run_started", "steps": steps, "jobs": jobs})
            }
            Event::StepStarted { name } => json!({"event": "step_started", "step": name}),
            Event::StepOutput { name, line } => json!({
                "event": "step_output", "step": name, "line": String::from_utf8_lossy(&line),
            }),
            Event::StepExplained { name, lines } => {
                let reasons: Vec<String> = lines.iter().map(super::words::explanation).collect();
                json!({"event": "step_explained", "step": name, "reasons": reasons})
            }
            Event::StepRemote { name, stage } => {
                json!({"event": "step_remote", "step": name, "stage": super::words::remote_stage(&stage)})
            }
            Event::Warning(warning) => {
                json!({"event": "warning", "message": super::words::warning(&warning)})
            }
            Event::StepLeftProcesses { name, processes } => json!({
                "event": "step_left_processes",
                "step": name,
                "message": super::left_processes(&name, &processes),
                "processes": processes
                    .iter()
                    .map(|(pid, command)| json!({"pid": pid, "command": command}))
                    .collect::<Vec<_>>(),
            }),
            Event::StepFinished(r) => json!({
                "event": "step_finished",
                "step": r.name,
                "status": status_name(r.status),
                "duration_ms": r.duration.as_millis() as u64,
                "exit_code": r.exit_code,
                "detail": super::words::detail(&r),
                "remote": r.remote.as_ref().map(|o| json!({"executed": o.executed, "worker": o.worker})),
                "output": String::from_utf8_lossy(&r.output),
            }),
            Event::RunFinished(s) => json!({
                "event": "run_finished",
                "passed": s.passed,
                "failed": s.failed,
                "skipped": s.skipped,
                "not_run": s.not_run,
                "cancelled": s.cancelled,
                "cached": s.cached,
                "interrupted": s.interrupted,
                "success": s.success(),
                "duration_ms": s.duration.as_millis() as u64,
            }),
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{value}");
        let _ = out.flush();
    }
}

/// The word `status` holds for each way a step ends.
fn status_name(status: Status) -> &'static str {
    match status {
        Status::Passed => "passed",
        Status::Failed => "failed",
        Status::TimedOut => "timed_out",
        Status::Skipped => "skipped",
        Status::NotRun => "not_run",
        Status::Cancelled => "cancelled",
        Status::Cached => "cached",
    }
}
