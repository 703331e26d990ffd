//! The plan of a run: which steps, in which dependency order, each with the files it is about.
//! Pure: no I/O, no processes.

use crate::config::{Config, Step, did_you_mean};
use crate::error::{Error, Result};
use crate::files::relative_to_dir;
use std::path::{Path, PathBuf};

/// The steps of one run, in the order they appear in the configuration.
#[derive(Debug)]
pub struct Plan {
    pub steps: Vec<PlannedStep>,
}

#[derive(Debug)]
pub struct PlannedStep {
    pub step: Step,
    /// Positions in `Plan::steps` of the steps this one needs.
    pub needs: Vec<usize>,
    /// The step's files, relative to its `dir`; `None` when the step has no `files` globs.
    pub files: Option<Vec<PathBuf>>,
}

/// Picks the named steps (all when `names` is empty) plus everything they need, and attaches
/// to each the files of `file_set` (repository-relative paths) that its globs select.
pub fn build(config: &Config, names: &[String], file_set: &[PathBuf]) -> Result<Plan> {
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
    let steps = steps
        .into_iter()
        .map(|step| PlannedStep {
            needs: step
                .needs
                .iter()
                .map(|n| position[config.steps.get_index_of(n).expect("validated")])
                .collect(),
            files: step.matcher.as_ref().map(|m| {
                let selected = m.select(file_set);
                relative_to_dir(&selected, step.dir.as_deref())
                    .into_iter()
                    .map(Path::to_path_buf)
                    .collect()
            }),
            step: step.clone(),
        })
        .collect();
    Ok(Plan { steps })
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
        "no step named `{name}` in {}\nhelp: {hint}",
        config.path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let plan = build(&config(GRAPH), &[], &[]).unwrap();
        let names: Vec<_> = plan.steps.iter().map(|s| s.step.name.as_str()).collect();
        assert_eq!(names, ["fmt", "build", "test", "lint"]);
        assert_eq!(plan.steps[2].needs, vec![1]);
    }

    #[test]
    fn a_named_step_brings_what_it_needs() {
        let plan = build(&config(GRAPH), &["test".into()], &[]).unwrap();
        let names: Vec<_> = plan.steps.iter().map(|s| s.step.name.as_str()).collect();
        assert_eq!(names, ["fmt", "build", "test"]);
        assert_eq!(plan.steps[1].needs, vec![0]);
    }

    #[test]
    fn an_unknown_step_is_a_usage_error_with_a_suggestion() {
        let err = build(&config(GRAPH), &["tset".into()], &[]).unwrap_err();
        assert!(err.to_string().contains("did you mean `test`?"), "{err}");
    }

    #[test]
    fn files_are_attached_by_glob() {
        let files = vec![PathBuf::from("src/a.rs"), PathBuf::from("README.md")];
        let plan = build(&config(GRAPH), &[], &files).unwrap();
        assert_eq!(plan.steps[0].files, Some(vec![PathBuf::from("src/a.rs")]));
        assert_eq!(plan.steps[1].files, None);
    }
}
