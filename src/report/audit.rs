//! What `preflight audit` prints: per step, what it read without declaring it (with the
//! `inputs` line to add), what it declared and never read, what it wrote without declaring
//! it, and what outside the repository may change its result.

use serde_json::json;
use std::fmt::Write as _;

/// What one step was seen to do, sorted into what the user may want to declare.
#[derive(Debug, Default)]
pub struct StepAudit {
    pub name: String,
    /// Why there is nothing to show (never observed, observing off or impossible).
    pub unobserved: Option<String>,
    /// Files inside the repository it read and did not declare.
    pub undeclared: Vec<String>,
    /// Files inside the repository it looked for and did not find.
    pub probed: Vec<String>,
    /// The `inputs = [...]` line that declares them, when there are some.
    pub inputs_line: Option<String>,
    /// Declared inputs it never read.
    pub unread: Vec<String>,
    /// Files it wrote that are not below its `outputs`.
    pub undeclared_writes: Vec<String>,
    /// Files in the home folder it read (tool configs).
    pub home: Vec<String>,
    /// Programs outside the repository it ran.
    pub programs: Vec<String>,
}

/// Prints the audit of each step, as text or as one JSON line per step.
pub fn audit(steps: &[StepAudit], json: bool) {
    let mut out = String::new();
    for s in steps {
        if json {
            let line = json!({
                "event": "audit",
                "step": s.name,
                "observed": s.unobserved.is_none(),
                "why_not": s.unobserved,
                "read_not_declared": s.undeclared,
                "looked_for_absent": s.probed,
                "inputs_line": s.inputs_line,
                "declared_never_read": s.unread,
                "written_not_declared": s.undeclared_writes,
                "home_folder_reads": s.home,
                "programs": s.programs,
            });
            let _ = writeln!(out, "{line}");
            continue;
        }
        let _ = writeln!(out, "{}", s.name);
        if let Some(why) = &s.unobserved {
            let _ = writeln!(out, "  not observed: {why}");
            continue;
        }
        let mut section = |title: &str, items: &[String]| {
            if !items.is_empty() {
                let _ = writeln!(out, "  {title}:");
                for i in items {
                    let _ = writeln!(out, "    {i}");
                }
            }
        };
        section("read, not declared", &s.undeclared);
        section("looked for, not there (must stay absent)", &s.probed);
        section("declared in `inputs`, never read", &s.unread);
        section("written, not declared in `outputs`", &s.undeclared_writes);
        section("read in your home folder (not part of the key)", &s.home);
        section(
            "programs it ran from outside the repository (pin them in `[tools]` or name a version probe in `key_commands`)",
            &s.programs,
        );
        if let Some(line) = &s.inputs_line {
            let _ = writeln!(out, "  to declare what it read, set in [steps.{}]:", s.name);
            let _ = writeln!(out, "    {line}");
        }
        let nothing = s.undeclared.is_empty()
            && s.probed.is_empty()
            && s.unread.is_empty()
            && s.undeclared_writes.is_empty()
            && s.home.is_empty()
            && s.programs.is_empty();
        if nothing {
            let _ = writeln!(out, "  reads and writes only what it declares");
        }
    }
    super::print(&out);
}
