//! Everything preflight writes to the terminal. The engine (`exec`) owns the `Event` and
//! `StepResult` types and sends them to a `Reporter`; this module turns them into words:
//! live and coloured on a terminal, plain lines in CI and pipes, or JSON lines.
//!
//! It imports the engine's types and calls nothing back: nothing in `exec`, `cache`,
//! `remote`, `git` or `process` may import `report`.

mod audit;
mod cache;
mod human;
mod json;
mod words;
pub use words::explanation;
pub use words::{tool_event, tool_progress};

pub use audit::{StepAudit, audit};

pub use cache::{
    KeyState, StepKey, cleared as cache_cleared, dry_run, explain, format_size, gc as cache_gc,
    stats as cache_stats,
};
pub use human::Human;
pub use json::Json;

use crate::exec::Reporter;
use std::time::Duration;

/// Which renderer a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

/// Options that shape human output.
#[derive(Debug, Clone, Copy)]
pub struct HumanOptions {
    /// Stream every step's output live, prefixed with the step name.
    pub verbose: bool,
    /// Colours and the live view (a terminal that is not `dumb`).
    pub color: bool,
    pub live: bool,
    /// GitHub Actions: fold each failed step's output in a group.
    pub github: bool,
    /// `run --ci` on GitHub Actions: fold every step's output in a group below its line.
    pub fold_each: bool,
}

pub fn reporter(format: Format, options: HumanOptions) -> Box<dyn Reporter> {
    match format {
        Format::Human => Box::new(Human::new(options)),
        Format::Json => Box::new(Json::new()),
    }
}

/// Writes an error for the user on stderr. Config diagnostics arrive already rendered.
pub fn error(message: &str, color: bool) {
    let style = console::Style::new().red().bold().force_styling(color);
    let text = message.trim_end();
    if let Some(rest) = text.strip_prefix("error:") {
        eprintln!("{}{rest}", style.apply_to("error:"));
    } else {
        eprintln!("{} {text}", style.apply_to("error:"));
    }
}

/// Writes an error for the user on stderr, then its advice: one `help:` line per hint.
pub fn error_with_hints(message: &str, hints: &[String], color: bool) {
    error(message, color);
    for hint in hints {
        eprintln!("help: {}", hint.trim_end());
    }
}

/// Writes a warning or a notice for the user on stderr, prefixed with `preflight:`.
pub fn warn(message: &str, color: bool) {
    let style = console::Style::new().yellow().bold().force_styling(color);
    eprintln!("{} {}", style.apply_to("preflight:"), message.trim_end());
}

/// The warning for processes a step left running: which, and that nothing waited for them.
pub fn left_processes(step: &str, processes: &[(u32, String)]) -> String {
    let which = if processes.is_empty() {
        "a process it started".to_string()
    } else {
        processes
            .iter()
            .map(|(pid, command)| match command.is_empty() {
                true => format!("pid {pid}"),
                false => format!("pid {pid} `{command}`"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "step `{step}` ended, but {which} left its process group and still holds its output          open; preflight did not wait for it, and it is still running"
    )
}

/// Says why `preflight watch` starts a run: which changed paths, which steps.
pub fn triggered(format: Format, color: bool, paths: &[std::path::PathBuf], steps: &[String]) {
    if format == Format::Json {
        let value = serde_json::json!({
            "event": "watch_triggered",
            "paths": paths.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>(),
            "steps": steps,
        });
        print(&format!("{value}\n"));
        return;
    }
    const SHOWN: usize = 3;
    let mut what: Vec<String> = paths
        .iter()
        .take(SHOWN)
        .map(|p| p.display().to_string())
        .collect();
    if paths.len() > SHOWN {
        what.push(format!("and {} more", paths.len() - SHOWN));
    }
    let style = console::Style::new().cyan().bold().force_styling(color);
    let line = if paths.is_empty() {
        format!("watch: running {}", steps.join(", "))
    } else {
        format!(
            "watch: {} changed; running {}",
            what.join(", "),
            steps.join(", ")
        )
    };
    print(&format!("{}\n", style.apply_to(line)));
}

/// Says that `preflight watch` waits for changes.
pub fn watching(format: Format, color: bool) {
    if format == Format::Human {
        let style = console::Style::new().dim().force_styling(color);
        print(&format!(
            "{}\n",
            style.apply_to("watch: waiting for changes (Ctrl-C to stop)")
        ));
    }
}

/// Clears the terminal before a new watch run (`--clear`).
pub fn clear_screen() {
    let _ = console::Term::stdout().clear_screen();
}

/// Writes a line of normal command output on stdout (validate, list, graph).
pub fn print(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// `1.42s`, `85ms`, `2m05s`: short and stable.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}
