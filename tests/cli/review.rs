//! Adversarial checks of the trust guarantees: what a check changes behind the user's back
//! must not reach a commit as passed.

use crate::common::Repo;

/// A check that stages content of its own (`git update-index`, `git add`) changes what the
/// commit records without touching the work tree: it must fail like a check that writes.
#[test]
fn a_check_that_changes_the_index_fails() {
    let repo = Repo::with_config(
        r#"
[steps.sneaky]
run = "git update-index --cacheinfo 100644,$(echo evil | git hash-object -w --stdin),a.txt"
[hooks]
pre-commit = { steps = ["sneaky"] }
"#,
    );
    repo.write("a.txt", "good\n");
    repo.add_all();
    repo.git_run(&["commit", "-q", "--no-verify", "-m", "initial"])
        .code(0);

    let run = repo.run(&["run", "-j", "1"]);
    assert_ne!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("a.txt"), "{}", run.stdout);

    // Through the hook: no commit records the staged content no check judged.
    repo.git(&["reset", "-q"]);
    repo.run(&["install"]).code(0);
    repo.write("b.txt", "new\n");
    repo.git(&["add", "b.txt"]);
    let commit = repo.commit("add b");
    assert_ne!(commit.code, 0, "{}", commit.stderr);
    assert_eq!(repo.show("HEAD:a.txt"), "good\n");
}

/// Reading or refreshing the index (`git status`, `git diff`) is not a change.
#[test]
fn a_check_that_only_refreshes_the_index_passes() {
    let repo = Repo::with_config(
        r#"
[steps.looks]
run = "touch a.txt && git status --porcelain >/dev/null && git diff --quiet"
"#,
    );
    repo.write("a.txt", "good\n");
    repo.add_all();
    repo.git_run(&["commit", "-q", "--no-verify", "-m", "initial"])
        .code(0);
    let run = repo.run(&["run", "-j", "1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}
