//! The human view: a live line per running step on a terminal, plain lines elsewhere, the
//! output of failed steps as blocks, and a summary.

use super::{HumanOptions, format_duration};
use crate::exec::{Event, Reporter, Status, StepResult, Summary};
use console::Style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

pub struct Human {
    options: HumanOptions,
    live: Option<MultiProgress>,
    bars: HashMap<String, ProgressBar>,
    failed: Vec<StepResult>,
    name_width: usize,
    /// `--explain` lines, printed under the step's line when it finishes.
    explained: HashMap<String, Vec<String>>,
}

impl Human {
    pub fn new(options: HumanOptions) -> Self {
        let live = options
            .live
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        Human {
            options,
            live,
            bars: HashMap::new(),
            failed: Vec::new(),
            name_width: 0,
            explained: HashMap::new(),
        }
    }

    /// Each step's output is shown, folded, as soon as it finishes.
    fn folds_each(&self) -> bool {
        self.options.github && self.options.fold_each && !self.options.verbose
    }

    fn style(&self, style: Style) -> Style {
        style.force_styling(self.options.color)
    }

    /// Prints a whole line above the live area (or straight to stdout).
    fn line(&self, text: &str) {
        match &self.live {
            Some(mp) => {
                let _ = mp.println(text);
            }
            None => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
        }
    }

    fn finished_line(&self, r: &StepResult) -> String {
        let (word, style) = match r.status {
            Status::Passed => ("passed", Style::new().green()),
            Status::Failed => ("failed", Style::new().red().bold()),
            Status::TimedOut => ("timed out", Style::new().red().bold()),
            Status::Skipped => ("skipped", Style::new().dim()),
            Status::NotRun => ("not run", Style::new().yellow()),
            Status::Cancelled => ("cancelled", Style::new().yellow()),
            Status::Cached => ("cached", Style::new().cyan()),
        };
        let word = match &r.remote {
            Some(_) => format!("{word} (remote)"),
            None => format!("{word:>9}"),
        };
        let mut text = format!(
            "{} {}",
            self.style(style).apply_to(word),
            self.style(Style::new().bold()).apply_to(&r.name)
        );
        if matches!(
            r.status,
            Status::Passed | Status::Failed | Status::TimedOut | Status::Cancelled | Status::Cached
        ) {
            text.push_str(&format!(" ({})", format_duration(r.duration)));
        }
        let detail = match (super::words::detail(r), r.status, r.exit_code) {
            (Some(d), _, _) => Some(d),
            (None, Status::Failed, Some(code)) => Some(format!("exit code {code}")),
            (None, _, _)
                if r.remote
                    .as_ref()
                    .is_some_and(|o| o.executed && !o.worker.is_empty()) =>
            {
                r.remote.as_ref().map(|o| format!("on {}", o.worker))
            }
            _ => None,
        };
        if let Some(d) = detail {
            text.push_str(": ");
            text.push_str(&d);
        }
        text
    }

    fn output_blocks(&self) {
        let mut out = std::io::stdout().lock();
        for r in &self.failed {
            if r.output.is_empty() || self.options.verbose || self.folds_each() {
                continue;
            }
            if self.options.github {
                let _ = writeln!(out, "::group::{} output", r.name);
            } else {
                let header = format!("── {} output ──", r.name);
                let _ = writeln!(
                    out,
                    "\n{}",
                    self.style(Style::new().bold()).apply_to(header)
                );
            }
            let _ = out.write_all(&r.output);
            if !r.output.ends_with(b"\n") {
                let _ = writeln!(out);
            }
            if self.options.github {
                let _ = writeln!(out, "::endgroup::");
            }
        }
        let _ = out.flush();
    }

    fn summary(&self, s: &Summary) -> String {
        let mut parts = vec![
            self.style(Style::new().green())
                .apply_to(format!("{} passed", s.passed))
                .to_string(),
        ];
        let failed = format!("{} failed", s.failed);
        parts.push(if s.failed > 0 {
            self.style(Style::new().red().bold())
                .apply_to(failed)
                .to_string()
        } else {
            failed
        });
        parts.push(format!("{} skipped", s.skipped));
        if s.cancelled > 0 {
            parts.push(
                self.style(Style::new().yellow())
                    .apply_to(format!("{} cancelled", s.cancelled))
                    .to_string(),
            );
        }
        if s.cached > 0 {
            parts.push(
                self.style(Style::new().cyan())
                    .apply_to(format!("{} cached", s.cached))
                    .to_string(),
            );
        }
        if s.not_run > 0 {
            parts.push(
                self.style(Style::new().yellow())
                    .apply_to(format!("{} not run", s.not_run))
                    .to_string(),
            );
        }
        let prefix = if s.interrupted { "interrupted: " } else { "" };
        format!(
            "{prefix}{} in {}",
            parts.join(", "),
            format_duration(s.duration)
        )
    }
}

impl Reporter for Human {
    fn event(&mut self, event: Event) {
        match event {
            Event::RunStarted { .. } => {}
            Event::StepStarted { name } => {
                self.name_width = self.name_width.max(name.len());
                if let Some(mp) = &self.live {
                    let bar = mp.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_message(format!("{:>8} {name}", "running"));
                    bar.enable_steady_tick(Duration::from_millis(100));
                    self.bars.insert(name, bar);
                }
            }
            Event::StepOutput { name, line } => {
                let prefix = self
                    .style(Style::new().cyan())
                    .apply_to(format!("{name} │"));
                self.line(&format!("{prefix} {}", String::from_utf8_lossy(&line)));
            }
            Event::StepExplained { name, lines } => {
                self.explained
                    .entry(name)
                    .or_default()
                    .extend(lines.iter().map(super::words::explanation));
            }
            Event::StepRemote { name, stage } => {
                let stage = super::words::remote_stage(&stage);
                match self.bars.get(&name) {
                    Some(bar) => bar.set_message(format!("{stage:>8} {name} (remote)")),
                    None => {
                        let text = format!("{:>9} remote {name} → {stage}", "·");
                        self.line(&self.style(Style::new().dim()).apply_to(text).to_string());
                    }
                }
            }
            Event::Warning(warning) => {
                let text = format!("warning: {}", super::words::warning(&warning));
                self.line(&self.style(Style::new().yellow()).apply_to(text).to_string());
            }
            Event::StepLeftProcesses { name, processes } => {
                let text = format!("warning: {}", super::left_processes(&name, &processes));
                self.line(&self.style(Style::new().yellow()).apply_to(text).to_string());
            }
            Event::StepFinished(result) => {
                if let Some(bar) = self.bars.remove(&result.name) {
                    bar.finish_and_clear();
                    if let Some(mp) = &self.live {
                        mp.remove(&bar);
                    }
                }
                self.line(&self.finished_line(&result));
                for why in self.explained.remove(&result.name).unwrap_or_default() {
                    let text = self
                        .style(Style::new().dim())
                        .apply_to(format!("{:>9} {why}", "·"));
                    self.line(&text.to_string());
                }
                if self.folds_each() && !result.output.is_empty() {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "::group::{} output", result.name);
                    let _ = out.write_all(&result.output);
                    if !result.output.ends_with(b"\n") {
                        let _ = writeln!(out);
                    }
                    let _ = writeln!(out, "::endgroup::");
                    let _ = out.flush();
                }
                if matches!(result.status, Status::Failed | Status::TimedOut) {
                    self.failed.push(result);
                }
            }
            Event::RunFinished(summary) => {
                if let Some(mp) = self.live.take() {
                    let _ = mp.clear();
                }
                self.output_blocks();
                let text = self.summary(&summary);
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "{}{text}",
                    if self.failed.is_empty() { "" } else { "\n" }
                );
                let _ = out.flush();
            }
        }
    }
}
