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

/// An edit saved while the pre-commit steps run (an editor saving, a second terminal) to a
/// file that has unstaged changes looks like a fixer's edit; when it collides with the
/// unstaged work, it is undone, but never lost: a copy is kept and named.
#[test]
fn an_edit_saved_while_the_hook_runs_is_kept_when_undone() {
    let repo = Repo::with_config(&format!(
        r#"
[steps.slow]
run = ": > .git/running; {}"
files = ["*.txt"]
[hooks]
pre-commit = {{ steps = ["slow"] }}
"#,
        crate::common::sh_wait_for_file(".git/told")
    ));
    repo.write("a.txt", "one\n");
    repo.add_all();
    repo.git_run(&["commit", "-q", "--no-verify", "-m", "initial"])
        .code(0);
    repo.run(&["install"]).code(0);
    repo.write("a.txt", "staged\n");
    repo.git(&["add", "a.txt"]);
    repo.write("a.txt", "staged\nunstaged\n");

    let commit = crate::common::git_command(repo.path())
        .args(["commit", "-q", "-m", "slow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The edit is made while the step runs: it waits until told.
    crate::common::wait_for_file(
        &repo.path().join(".git/running"),
        "the hook's step to start",
    );
    repo.write("a.txt", "saved while the hook ran\n");
    std::fs::write(repo.path().join(".git/told"), "").unwrap();
    let out = commit.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(repo.read_string("a.txt"), "staged\nunstaged\n", "{stderr}");

    // The edit made meanwhile is still somewhere the user is told about.
    let undone = repo.path().join(".git/preflight/undone");
    let kept: Vec<String> = std::fs::read_dir(&undone)
        .map(|dirs| {
            dirs.flatten()
                .filter_map(|d| std::fs::read_to_string(d.path().join("a.txt")).ok())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(kept, ["saved while the hook ran\n"], "{stderr}");
    assert!(stderr.contains("preflight/undone/"), "{stderr}");
    // No fixer ran: the message does not blame one.
    assert!(
        stderr.contains("changes made while the steps ran to a.txt"),
        "{stderr}"
    );
}

/// `sed -i` through a tracked symlink replaces the link with a file: a fixer is never given
/// links, so the commit keeps the link and the file it points to is fixed on its own.
#[test]
fn a_fixer_never_turns_a_tracked_symlink_into_a_file() {
    let repo = Repo::with_config(
        r#"
[steps.spaces]
run = "! grep -l ' $' {files}"
fix = "sed -i 's/ *$//' {files}"
files = ["*"]
[hooks]
pre-commit = { steps = ["spaces"], fix = true }
"#,
    );
    repo.add_all();
    repo.git_run(&["commit", "-q", "--no-verify", "-m", "config"])
        .code(0);
    repo.run(&["install"]).code(0);
    repo.write("t", "trailing \n");
    std::os::unix::fs::symlink("t", repo.path().join("link")).unwrap();
    repo.git(&["add", "-A"]);
    let commit = repo.git_run(&["commit", "-q", "-m", "link"]);
    commit.code(0);
    let tree = repo.show("HEAD^{tree}");
    let listing = String::from_utf8(repo.git(&["ls-tree", "HEAD"]).stdout).unwrap();
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("120000") && l.ends_with("\tlink")),
        "{listing}\n{tree}"
    );
    let meta = std::fs::symlink_metadata(repo.path().join("link")).unwrap();
    assert!(meta.file_type().is_symlink());
    assert_eq!(repo.read_string("t"), "trailing\n");
    assert_eq!(repo.show("HEAD:t"), "trailing\n");
}
