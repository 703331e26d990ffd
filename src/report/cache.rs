//! What the cache commands print: `run --dry-run`, `explain`, `cache stats|gc|clear`.

use crate::cache::inputs::InputFile;
use crate::cache::store::{GcReport, Stats};
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

/// What a dry run found for one step.
#[derive(Debug)]
pub struct StepKey {
    pub name: String,
    /// `None` when the key could not be computed (see `reasons`).
    pub key: Option<String>,
    pub state: KeyState,
    pub reasons: Vec<String>,
    pub inputs: Vec<InputFile>,
    /// Inputs whose digest came from git's index, and those read and hashed (with bytes).
    pub from_index: usize,
    pub hashed: usize,
    pub hashed_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Hit,
    Miss,
    /// Neither `inputs` nor `files`, or the cache is off.
    NotCached,
    /// Its files globs match no file: it would be skipped.
    Skipped,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Hit => "hit",
            KeyState::Miss => "miss",
            KeyState::NotCached => "not_cached",
            KeyState::Skipped => "skipped",
        }
    }
}

/// `run --dry-run`: every step's key, hit or miss, and inputs.
pub fn dry_run(steps: &[StepKey], json: bool) {
    let mut out = String::new();
    for s in steps {
        if json {
            let inputs: Vec<_> = s
                .inputs
                .iter()
                .map(|i| json!({"path": i.path.to_string(), "mode": i.mode, "digest": i.digest}))
                .collect();
            let line = json!({
                "event": "dry_run",
                "step": s.name,
                "key": s.key,
                "cache": s.state.as_str(),
                "reasons": s.reasons,
                "inputs": inputs,
                "digests": {
                    "from_index": s.from_index,
                    "hashed": s.hashed,
                    "hashed_bytes": s.hashed_bytes,
                },
            });
            let _ = writeln!(out, "{line}");
            continue;
        }
        let state = match s.state {
            KeyState::Hit => "hit (would be restored from the cache)",
            KeyState::Miss => "miss (would run)",
            KeyState::NotCached => "not cached (would run)",
            KeyState::Skipped => "skipped (no matching files)",
        };
        let _ = writeln!(out, "{}: {state}", s.name);
        if let Some(key) = &s.key {
            let _ = writeln!(out, "  key     {key}");
        }
        for (n, why) in s.reasons.iter().enumerate() {
            let _ = writeln!(out, "  {:<7} {why}", if n == 0 { "why" } else { "" });
        }
        let _ = write!(
            out,
            "  inputs  {} file{}",
            s.inputs.len(),
            if s.inputs.len() == 1 { "" } else { "s" }
        );
        if s.hashed > 0 {
            let _ = write!(
                out,
                " ({} hashed, {}; {} from git's index)",
                s.hashed,
                format_size(s.hashed_bytes),
                s.from_index
            );
        }
        let _ = writeln!(out);
        for i in &s.inputs {
            let _ = writeln!(out, "          {}", i.path);
        }
    }
    super::print(&out);
}

/// `preflight explain`: why each step would run.
pub fn explain(steps: &[StepKey]) {
    let mut out = String::new();
    for s in steps {
        let head = match s.state {
            KeyState::Hit => "cached: its inputs already passed; a run restores its outputs",
            KeyState::Miss => "would run",
            KeyState::NotCached => "would run (not cached)",
            KeyState::Skipped => "would be skipped: no matching files",
        };
        let _ = writeln!(out, "{}: {head}", s.name);
        for why in &s.reasons {
            let _ = writeln!(out, "  - {why}");
        }
    }
    super::print(&out);
}

/// `1.25 GB`, `930 kB`, `12 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

fn ago(t: SystemTime) -> String {
    let d = SystemTime::now().duration_since(t).unwrap_or_default();
    let d = std::time::Duration::from_secs(d.as_secs());
    if d.as_secs() == 0 {
        "just now".into()
    } else {
        format!("{} ago", humantime::format_duration(d))
    }
}

pub fn stats(dir: &Path, s: &Stats, max: u64) {
    let mut out = String::new();
    let _ = writeln!(out, "cache:    {}", dir.display());
    let _ = write!(out, "entries:  {}", s.entries);
    if let (Some(old), Some(new)) = (s.oldest_use, s.newest_use) {
        let _ = write!(
            out,
            " (last used {}, least recently {})",
            ago(new),
            ago(old)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "blobs:    {} ({})", s.blobs, format_size(s.blob_bytes));
    let percent = if max == 0 {
        0.0
    } else {
        s.total() as f64 * 100.0 / max as f64
    };
    let _ = writeln!(
        out,
        "size:     {} of {} ({percent:.0}%)",
        format_size(s.total()),
        format_size(max)
    );
    if s.temp_files > 0 {
        let _ = writeln!(
            out,
            "temp:     {} leftover file{} (removed by `preflight cache gc`)",
            s.temp_files,
            if s.temp_files == 1 { "" } else { "s" }
        );
    }
    super::print(&out);
}

pub fn gc(r: &GcReport, max: u64) {
    super::print(&format!(
        "evicted {} entr{} and removed {} blob{}: {} → {} (bound {})\n",
        r.evicted_entries,
        if r.evicted_entries == 1 { "y" } else { "ies" },
        r.removed_blobs,
        if r.removed_blobs == 1 { "" } else { "s" },
        format_size(r.before),
        format_size(r.after),
        format_size(max)
    ));
}

pub fn cleared(dir: &Path, bytes: u64) {
    super::print(&format!(
        "cleared {} ({})\n",
        dir.display(),
        format_size(bytes)
    ));
}
