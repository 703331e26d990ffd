//! The plan of a run: which steps, in which dependency order, each with the files it is about.
//! Pure: no I/O, no processes.

use crate::config::{Command, Config, Step, did_you_mean};
use crate::error::{Error, Result};
use crate::files::relative_to_dir;
use crate::filetypes::{Contents, Identifier};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The steps of one run, in the order they appear in the configuration.
#[derive(Debug)]
pub struct Plan {
    pub steps: Vec<PlannedStep>,
}

#[derive(Debug)]
pub struct PlannedStep {
    pub step: Step,
    /// What runs: the step's `run`, or its `fix` in fix mode.
    pub command: Command,
    /// Whether `command` is a fixer (it may change files).
    pub fixes: bool,
    /// Positions in `Plan::steps` of the steps this one needs.
    pub needs: Vec<usize>,
    /// Steps that must have finished first, whatever their result: a fixer and another step
    /// on the same files never run at the same time.
    pub after: Vec<usize>,
    /// The step's files, relative to its `dir`; `None` when the step has no `files` globs.
    pub files: Option<Vec<PathBuf>>,
    /// Set when the step is skipped on purpose (`PREFLIGHT_SKIP`), with the reason.
    pub skip: Option<String>,
}

/// Which steps a run takes, and how.
#[derive(Debug, Default)]
pub struct Selection<'a> {
    /// Step names (empty: all steps).
    pub names: &'a [String],
    /// Run `fix` commands where steps have one.
    pub fix: bool,
    /// Steps to skip, and what asked for it (`PREFLIGHT_SKIP`).
    pub skip: &'a [String],
}

/// Picks the named steps (all when `names` is empty) plus everything they need, and attaches
/// to each the files of `file_set` (repository-relative paths) that its globs and `types`
/// select. `contents` is read only for the `types` of files whose names do not tell them.
pub fn build(
    config: &Config,
    selection: &Selection,
    file_set: &[PathBuf],
    contents: &dyn Contents,
) -> Result<Plan> {
    let identifier = Identifier::new(contents);
    let names = selection.names;
    let mut wanted = vec![names.is_empty(); config.steps.len()];
    let mut stack = Vec::new();
    for name in names {
        let index = config
            .steps
            .get_index_of(name)
            .ok_or_else(|| unknown_step(config, name))?;
        stack.push(index);
    }
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut wanted[i], true) {
            continue;
        }
        for need in &config.steps[i].needs {
            stack.push(
                config
                    .steps
                    .get_index_of(need)
                    .expect("validated: needs name steps"),
            );
        }
    }
    // Positions in the plan, for the steps that made it.
    let mut position = vec![usize::MAX; config.steps.len()];
    let mut steps = Vec::new();
    for (i, step) in config.steps.values().enumerate() {
        if !wanted[i] {
            continue;
        }
        position[i] = steps.len();
        steps.push(step);
    }
    let mut steps: Vec<PlannedStep> = steps
        .into_iter()
        .map(|step| {
            let fix = if selection.fix {
                step.fix.clone()
            } else {
                None
            };
            PlannedStep {
                needs: step
                    .needs
                    .iter()
                    .map(|n| position[config.steps.get_index_of(n).expect("validated")])
                    .collect(),
                after: Vec::new(),
                files: step.matcher.as_ref().map(|m| {
                    let mut selected = m.select(file_set);
                    if !step.types.is_empty() {
                        selected.retain(|p| identifier.is_any_of(p, step.types));
                    }
                    // A fixer rewriting a symlink's target through it would replace the link
                    // with a file (`sed -i` does): fixers are never given links.
                    if fix.is_some() {
                        selected.retain(|p| !contents.is_symlink(p));
                    }
                    relative_to_dir(&selected, step.dir.as_deref())
                        .into_iter()
                        .map(Path::to_path_buf)
                        .collect()
                }),
                fixes: fix.is_some(),
                command: fix.unwrap_or_else(|| step.run.clone()),
                skip: selection
                    .skip
                    .contains(&step.name)
                    .then(|| "PREFLIGHT_SKIP".to_string()),
                step: step.clone(),
            }
        })
        .collect();
    order_fixers(&mut steps);
    Ok(Plan { steps })
}

/// Puts a fixer and any other step on overlapping files one after the other, in
/// configuration order, so that no step reads or writes a file while a fixer rewrites it.
fn order_fixers(steps: &mut [PlannedStep]) {
    if !steps.iter().any(|s| s.fixes) {
        return;
    }
    let repo_files: Vec<Option<HashSet<PathBuf>>> = steps
        .iter()
        .map(|s| {
            s.files.as_ref().map(|files| match &s.step.dir {
                Some(dir) => files.iter().map(|f| dir.join(f)).collect(),
                None => files.iter().cloned().collect(),
            })
        })
        .collect();
    let overlap = |a: &Option<HashSet<PathBuf>>, b: &Option<HashSet<PathBuf>>| match (a, b) {
        // A step without `files` may touch any file.
        (None, _) | (_, None) => true,
        (Some(a), Some(b)) => !a.is_disjoint(b),
    };
    for j in 0..steps.len() {
        for i in 0..j {
            if (steps[i].fixes || steps[j].fixes)
                && overlap(&repo_files[i], &repo_files[j])
                && !steps[j].needs.contains(&i)
            {
                steps[j].after.push(i);
            }
        }
    }
}

fn unknown_step(config: &Config, name: &str) -> Error {
    let hint = match did_you_mean(name, config.steps.keys().map(String::as_str)) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!(
            "the steps are: {}",
            config.steps.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    };
    Error::Usage(format!(
        "no step named `{name}` in {}",
        config.path.display()
    ))
    .hint(hint)
}

/// Keeps only the named steps of a plan: the steps they need outside the job ran in the
/// CI jobs this one needs.
pub fn only_steps(plan: Plan, names: &[String]) -> Plan {
    let keep: Vec<bool> = plan
        .steps
        .iter()
        .map(|s| names.contains(&s.step.name))
        .collect();
    let mut position = vec![usize::MAX; keep.len()];
    let mut next = 0;
    for (i, &k) in keep.iter().enumerate() {
        if k {
            position[i] = next;
            next += 1;
        }
    }
    let remap = |list: Vec<usize>| -> Vec<usize> {
        list.into_iter()
            .filter(|&i| keep[i])
            .map(|i| position[i])
            .collect()
    };
    let steps = plan
        .steps
        .into_iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(mut s, _)| {
            s.needs = remap(std::mem::take(&mut s.needs));
            s.after = remap(std::mem::take(&mut s.after));
            s
        })
        .collect();
    Plan { steps }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// File contents for the plan's `types`, held in memory: path → (head, executable).
    struct Files(&'static [(&'static str, &'static str, bool)]);

    impl Contents for Files {
        fn head(&self, path: &Path) -> Option<Vec<u8>> {
            self.0
                .iter()
                .find(|(p, _, _)| Path::new(p) == path)
                .map(|(_, head, _)| head.as_bytes().to_vec())
        }
        fn is_executable(&self, path: &Path) -> bool {
            self.0.iter().any(|(p, _, x)| Path::new(p) == path && *x)
        }
        fn is_symlink(&self, _: &Path) -> bool {
            false
        }
    }

    const NO_CONTENTS: Files = Files(&[]);

    fn config(text: &str) -> Config {
        crate::config::parse(Path::new("preflight.toml"), text).expect("valid")
    }

    const GRAPH: &str = r#"
[steps.fmt]
run = "true"
files = ["*.rs"]
[steps.build]
run = "true"
needs = ["fmt"]
[steps.test]
run = "true"
needs = ["build"]
[steps.lint]
run = "true"
"#;

    #[test]
    fn all_steps_by_default() {
        let plan = build(&config(GRAPH), &Selection::default(), &[], &NO_CONTENTS).unwrap();
        let names: Vec<_> = plan.steps.iter().map(|s| s.step.name.as_str()).collect();
        assert_eq!(names, ["fmt", "build", "test", "lint"]);
        assert_eq!(plan.steps[2].needs, vec![1]);
    }

    #[test]
    fn a_named_step_brings_what_it_needs() {
        let plan = build(
            &config(GRAPH),
            &Selection {
                names: &["test".into()],
                ..Default::default()
            },
            &[],
            &NO_CONTENTS,
        )
        .unwrap();
        let names: Vec<_> = plan.steps.iter().map(|s| s.step.name.as_str()).collect();
        assert_eq!(names, ["fmt", "build", "test"]);
        assert_eq!(plan.steps[1].needs, vec![0]);
    }

    #[test]
    fn an_unknown_step_is_a_usage_error_with_a_suggestion() {
        let err = build(
            &config(GRAPH),
            &Selection {
                names: &["tset".into()],
                ..Default::default()
            },
            &[],
            &NO_CONTENTS,
        )
        .unwrap_err();
        assert_eq!(err.hints(), ["did you mean `test`?"], "{err}");
    }

    #[test]
    fn files_are_attached_by_glob() {
        let files = vec![PathBuf::from("src/a.rs"), PathBuf::from("README.md")];
        let plan = build(&config(GRAPH), &Selection::default(), &files, &NO_CONTENTS).unwrap();
        assert_eq!(plan.steps[0].files, Some(vec![PathBuf::from("src/a.rs")]));
        assert_eq!(plan.steps[1].files, None);
    }

    #[test]
    fn fixers_on_shared_files_run_one_after_the_other() {
        let c = config(
            r#"
[steps.fmt]
run = "check-fmt"
fix = "fmt"
files = ["*.rs"]
[steps.lint]
run = "lint"
files = ["*.rs"]
[steps.docs]
run = "docs"
files = ["*.md"]
[steps.imports]
run = "check-imports"
fix = "fix-imports"
files = ["*.rs"]
"#,
        );
        let files = vec![PathBuf::from("a.rs"), PathBuf::from("b.md")];
        let fixing = Selection {
            fix: true,
            ..Default::default()
        };
        let plan = build(&c, &fixing, &files, &NO_CONTENTS).unwrap();
        assert_eq!(plan.steps[0].command, Command::Shell("fmt".into()));
        assert_eq!(plan.steps[1].after, vec![0], "lint reads what fmt writes");
        assert!(plan.steps[2].after.is_empty(), "docs shares no file");
        assert_eq!(plan.steps[3].after, vec![0, 1]);
        let checking = build(&c, &Selection::default(), &files, &NO_CONTENTS).unwrap();
        assert!(
            checking
                .steps
                .iter()
                .all(|s| s.after.is_empty() && !s.fixes)
        );
    }

    #[test]
    fn types_select_by_name_or_by_first_line_and_combine_with_files() {
        let c = config(
            r#"
[steps.shell]
run = "true"
types = ["shell"]
[steps.bin-sh]
run = "true"
files = ["bin/*"]
types = ["sh"]
[steps.runnable]
run = "true"
types = ["executable"]
"#,
        );
        let contents = Files(&[
            ("bin/a", "#!/bin/sh\n", true),
            ("bin/b", "#!/usr/bin/env bash\n", false),
            ("bin/c", "not a script\n", true),
            (".aliases", "#!/usr/bin/env bash\nalias l=ls\n", false),
            ("x.py", "#!/bin/sh\n", false),
        ]);
        let files: Vec<PathBuf> = [
            "bin/a", "bin/b", "bin/c", ".aliases", ".bashrc", "x.py", "s.sh",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let plan = build(&c, &Selection::default(), &files, &contents).unwrap();
        let got = |i: usize| {
            plan.steps[i]
                .files
                .clone()
                .unwrap()
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(got(0), ["bin/a", "bin/b", ".aliases", ".bashrc", "s.sh"]);
        assert_eq!(got(1), ["bin/a"]);
        assert_eq!(got(2), ["bin/a", "bin/c"]);
    }

    #[test]
    fn only_steps_keeps_the_named_steps_and_their_order_among_themselves() {
        let config = config(
            "[steps.a]\nrun = \"true\"\n[steps.b]\nrun = \"true\"\nneeds = [\"a\"]\n\
             [steps.c]\nrun = \"true\"\nneeds = [\"b\"]\n",
        );
        let plan = build(&config, &Selection::default(), &[], &NO_CONTENTS).unwrap();
        let kept = only_steps(plan, &["a".to_string(), "c".to_string()]);
        let names: Vec<&str> = kept.steps.iter().map(|s| s.step.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        // `c` needed `b`, which ran elsewhere (in the CI job `c`'s job needs): no edge left.
        assert!(kept.steps[1].needs.is_empty());
        let kept = only_steps(
            build(&config, &Selection::default(), &[], &NO_CONTENTS).unwrap(),
            &["b".to_string(), "c".to_string()],
        );
        assert_eq!(kept.steps[1].needs, [0]);
    }
}
