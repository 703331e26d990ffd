//! Each kind of error exits with its own code (book/src/errors.md): 2 for the command line
//! or the configuration, 3 for the repository or the environment, 4 for a file that cannot
//! be read or written. The advice comes after the message, as `help:` lines.

use crate::common::{BIN, Repo, Run};

#[test]
fn a_config_error_exits_2_and_runs_nothing() {
    let repo = Repo::with_config("[steps.a]\nrun = \"touch ran\"\nneds = []\n");
    let run = repo.run(&["run"]);
    run.code(2);
    assert!(run.stderr.contains("unknown key `neds`"), "{}", run.stderr);
    assert!(!repo.path().join("ran").exists());
}

#[test]
fn an_unknown_step_exits_2_with_its_hint_on_a_help_line() {
    let repo = Repo::with_config("[steps.test]\nrun = \"touch ran\"\n");
    let run = repo.run(&["run", "tset"]);
    run.code(2);
    let config = repo.path().join("preflight.toml");
    assert_eq!(
        run.stderr,
        format!(
            "error: no step named `tset` in {}\nhelp: did you mean `test`?\n",
            config.display()
        )
    );
    assert!(!repo.path().join("ran").exists());
}

#[test]
fn outside_a_git_repository_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let run = Run::from(
        std::process::Command::new(BIN)
            .arg("run")
            .current_dir(dir.path())
            .env("GIT_CEILING_DIRECTORIES", dir.path().parent().unwrap())
            .output()
            .unwrap(),
    );
    run.code(3);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stderr);
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains("is not inside a git repository"),
        "{}",
        run.stderr
    );
    assert_eq!(
        lines[1],
        "help: run preflight inside a git work tree, or `git init` first"
    );
}

#[test]
fn a_repository_without_preflight_toml_exits_3() {
    let repo = Repo::new();
    let run = repo.run(&["run"]);
    run.code(3);
    assert!(
        run.stderr.contains("no preflight.toml found")
            && run
                .stderr
                .ends_with("\nhelp: create one (see `preflight --help`), or pass --config PATH\n"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_cache_folder_that_is_a_file_is_an_io_error_exiting_4() {
    let repo = Repo::with_config("[steps.a]\nrun = \"true\"\n");
    let file = repo.path().join("not-a-folder");
    std::fs::write(&file, "mine\n").unwrap();
    let run = Run::from(
        repo.cmd()
            .args(["cache", "gc"])
            .env("PREFLIGHT_CACHE_DIR", &file)
            .output()
            .unwrap(),
    );
    run.code(4);
    assert!(
        run.stderr.starts_with("error: cannot clean ") && run.stderr.contains("Not a directory"),
        "{}",
        run.stderr
    );
    assert_eq!(repo.read_string("not-a-folder"), "mine\n");
}

#[test]
fn help_lists_the_exit_codes() {
    let repo = Repo::new();
    let run = repo.run(&["--help"]);
    run.code(0);
    for code in [
        "0 passed",
        "1 a step failed",
        "2 usage",
        "3 environment",
        "4 I/O",
        "130 interrupted",
    ] {
        assert!(run.stdout.contains(code), "{code}: {}", run.stdout);
    }
}
