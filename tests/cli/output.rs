//! What users see, snapshotted: the report of a run on a terminal (a real pseudo-terminal),
//! in a pipe and as JSON lines; a pre-commit hook; a failed step's output; a run in GitHub
//! Actions. Only the real binary is used, so these snapshots hold whatever the code inside
//! looks like.
//!
//! Steps run one at a time (`jobs = 1`), so the order of the lines is fixed; durations and
//! the temporary folder are filtered out. On a terminal the live view redraws as often as
//! the machine's speed allows, so the raw bytes are replayed on a terminal model (vt100) and only
//! the final screen is compared: that does not depend on how many redraws happened.

use crate::common::{BIN, Repo, Run, cache_dir_for};
use std::process::{Command, Stdio};

/// Every status a step can end with in an ordinary run: `lint` is cached (a first run stores
/// it), `ok` passes (slowly enough for the live view to redraw), `boom` fails with output,
/// `after` needs `boom` so it does not run, `docs` matches no file so it is skipped.
const EVERY_STATUS: &str = r#"
[settings]
jobs = 1

[steps.lint]
run = "echo linted"
files = ["*.txt"]

[steps.ok]
run = "sleep 0.3; echo fine"

[steps.boom]
run = "echo 'checking a.txt'; echo 'a.txt: something broke' >&2; exit 3"

[steps.after]
run = "true"
needs = ["boom"]

[steps.docs]
run = "true"
files = ["*.md"]

[hooks]
pre-commit = ["lint", "boom"]
"#;

/// A repository with every status ready: `lint` already in the cache.
fn every_status_repo() -> Repo {
    let repo = Repo::with_config(EVERY_STATUS);
    repo.write("a.txt", "hello\n");
    repo.add_all();
    repo.run(&["run", "lint"]).code(0);
    repo
}

/// Snapshots `text` under `name`, with durations and the repository's path filtered.
fn snapshot(repo: &Repo, name: &str, text: &str) {
    let root = repo.path().to_string_lossy().into_owned();
    insta::with_settings!({
        prepend_module_to_snapshot => false,
        omit_expression => true,
        filters => vec![
            (regex_escape(&root).as_str(), "[repo]"),
            (r"\b\d+(\.\d+)?m?s\b", "[time]"),
            (r"\b\d+m\d\ds\b", "[time]"),
            (r#""duration_ms":\d+"#, r#""duration_ms":"[ms]""#),
        ],
    }, {
        insta::assert_snapshot!(name, text);
    });
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

/// Runs `command` (a shell command line) in a pseudo-terminal of `COLUMNS`×40 with TERM=xterm and
/// colours allowed, and returns the exit code and the final screen, escape characters shown
/// as `␛`.
fn on_terminal(repo: &Repo, command: &str) -> (i32, String) {
    let line = format!("stty cols {COLUMNS} rows 40 || exit 99; exec {command}");
    let out = Command::new("script")
        .args(["-qefc", &line, "/dev/null"])
        .current_dir(repo.path())
        .env("SHELL", "/bin/sh")
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("PREFLIGHT")
        .env_remove("PREFLIGHT_SKIP")
        .env_remove("PREFLIGHT_NO_CACHE")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .env("PREFLIGHT_CACHE_DIR", cache_dir_for(repo.path()))
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    let code = out.status.code().unwrap_or(-1);
    (code, final_screen(&out.stdout))
}

/// The pseudo-terminal's width.
const COLUMNS: u16 = 100;

/// The screen a terminal of `COLUMNS` columns shows after `raw`, one line per row, trailing
/// blanks and empty rows dropped. Colours and styles stay, written as the escape sequences
/// vt100 gives for each row, with the escape character shown as `␛`.
fn final_screen(raw: &[u8]) -> String {
    // Taller than the pseudo-terminal, so that nothing this short scrolls off the model.
    let rows = std::num::NonZeroU16::new(200).expect("non-zero");
    let columns = std::num::NonZeroU16::new(COLUMNS).expect("non-zero");
    let mut parser = vt100::Parser::new(rows, columns, 0);
    parser.process(raw);
    let mut rows: Vec<String> = parser
        .screen()
        .rows_formatted(0, COLUMNS)
        .map(|row| row.replace('\u{1b}', "␛").trim_end().to_string())
        .collect();
    while rows.last().is_some_and(|row| row.is_empty()) {
        rows.pop();
    }
    rows.join("\n") + "\n"
}

#[test]
fn a_run_on_a_terminal() {
    let repo = every_status_repo();
    let (code, screen) = on_terminal(&repo, &format!("'{BIN}' run"));
    assert_eq!(code, 1, "{screen}");
    snapshot(&repo, "output-run-terminal", &screen);
}

#[test]
fn a_run_in_a_pipe() {
    let repo = every_status_repo();
    let run = repo.run(&["run"]);
    run.code(1);
    assert_eq!(run.stderr, "");
    snapshot(&repo, "output-run-plain", &run.stdout);
}

#[test]
fn a_run_as_json() {
    let repo = every_status_repo();
    let run = repo.run(&["run", "--format", "json"]);
    run.code(1);
    assert_eq!(run.stderr, "");
    for line in run.stdout.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("each line is a JSON object");
    }
    snapshot(&repo, "output-run-json", &run.stdout);
}

/// A repository with the pre-commit hook installed and a change staged.
fn hooked_repo() -> Repo {
    let repo = every_status_repo();
    repo.run(&["install"]).code(0);
    repo
}

#[test]
fn a_pre_commit_hook_on_a_terminal() {
    let repo = hooked_repo();
    let (code, screen) = on_terminal(&repo, "git commit -q -m change");
    assert_eq!(code, 1, "{screen}");
    snapshot(&repo, "output-hook-terminal", &screen);
}

#[test]
fn a_pre_commit_hook_in_a_pipe() {
    let repo = hooked_repo();
    let commit = repo.commit("change");
    commit.code(1);
    // git gives the hook's output to stderr.
    snapshot(
        &repo,
        "output-hook-plain",
        &format!("--- stdout\n{}--- stderr\n{}", commit.stdout, commit.stderr),
    );
}

const FAILING: &str = r#"
[steps.test]
run = "echo 'running 2 tests'; echo 'test a ... ok'; echo 'test b ... FAILED' >&2; printf 'no newline at the end'; exit 101"
"#;

#[test]
fn a_failed_step_prints_its_output() {
    let repo = Repo::with_config(FAILING);
    let run = repo.run(&["run"]);
    run.code(1);
    snapshot(&repo, "output-failure-plain", &run.stdout);
    let (code, screen) = on_terminal(&repo, &format!("'{BIN}' run"));
    assert_eq!(code, 1, "{screen}");
    snapshot(&repo, "output-failure-terminal", &screen);
}

#[test]
fn a_run_in_github_actions_folds_output_in_groups() {
    let repo = every_status_repo();
    let run = in_github_actions(&repo);
    run.code(1);
    snapshot(&repo, "output-run-github", &run.stdout);
    let failing = Repo::with_config(FAILING);
    let run = in_github_actions(&failing);
    run.code(1);
    snapshot(&failing, "output-failure-github", &run.stdout);
}

fn in_github_actions(repo: &Repo) -> Run {
    Run::from(
        repo.cmd()
            .args(["run", "--ci"])
            .env("GITHUB_ACTIONS", "true")
            .output()
            .expect("preflight runs"),
    )
}
