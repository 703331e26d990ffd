//! Commands that read the configuration and print it: validate, list, graph.

use super::load_config;
use crate::cli::{Cli, GraphFormat};
use crate::config::display_path;
use crate::error::{Result, exit};
use crate::report;
use std::fmt::Write as _;

pub fn validate(cli: &Cli) -> Result<i32> {
    let config = load_config(cli)?;
    let n = config.steps.len();
    let hooks = config.hooks.len();
    report::print(&format!(
        "{} is valid: {n} step{}, {hooks} hook{}\n",
        display_path(&config.path),
        if n == 1 { "" } else { "s" },
        if hooks == 1 { "" } else { "s" },
    ));
    Ok(exit::SUCCESS)
}

pub fn list(cli: &Cli) -> Result<i32> {
    let config = load_config(cli)?;
    let rows: Vec<[String; 4]> = config
        .steps
        .values()
        .map(|step| {
            let hooks: Vec<&str> = config
                .hooks
                .iter()
                .filter(|(_, h)| h.steps.contains(&step.name))
                .map(|(name, _)| name.as_str())
                .collect();
            let mut selection: Vec<String> = step.files.clone();
            if !step.types.is_empty() {
                selection.push(format!("types:{}", step.types.names().join(",")));
            }
            let files = if step.exclude.is_empty() {
                selection.join(" ")
            } else {
                format!("{} (not {})", selection.join(" "), step.exclude.join(" "))
            };
            [
                step.name.clone(),
                step.needs.join(" "),
                files,
                hooks.join(" "),
            ]
            .map(|c| if c.is_empty() { "-".to_string() } else { c })
        })
        .collect();
    let header = ["STEP", "NEEDS", "FILES", "HOOKS"].map(String::from);
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    report::print(&out);
    Ok(exit::SUCCESS)
}

pub fn graph(cli: &Cli, format: GraphFormat) -> Result<i32> {
    let config = load_config(cli)?;
    let mut out = String::new();
    match format {
        GraphFormat::Dot => {
            out.push_str("digraph preflight {\n  rankdir=LR;\n  node [shape=box];\n");
            for step in config.steps.values() {
                let _ = writeln!(out, "  \"{}\";", step.name);
            }
            for step in config.steps.values() {
                for need in &step.needs {
                    let _ = writeln!(out, "  \"{need}\" -> \"{}\";", step.name);
                }
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("graph LR\n");
            // Node ids by position: names may hold characters Mermaid gives meaning to.
            for (i, step) in config.steps.values().enumerate() {
                let _ = writeln!(out, "  s{i}[\"{}\"]", step.name);
            }
            for (i, step) in config.steps.values().enumerate() {
                for need in &step.needs {
                    let j = config.steps.get_index_of(need).expect("validated");
                    let _ = writeln!(out, "  s{j} --> s{i}");
                }
            }
        }
    }
    report::print(&out);
    Ok(exit::SUCCESS)
}
