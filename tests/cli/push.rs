//! pre-push: the files of what a push sends, from the refs git gives the hook, checked in
//! the pushed commits' content (a temporary checkout when the work tree is not that commit).

use crate::common::{Repo, Run, git_command, processes_with};
use std::path::Path;

/// Steps log to `@LOG@` (the repository's git folder, by absolute path): they may run in a
/// checkout of the pushed commit, where `.git` is a file.
const CONFIG: &str = r#"
[steps.record]
run = "printf '%s\n' {files} >> @LOG@/pushed"
files = ["*"]
[steps.always]
run = "echo ran >> @LOG@/always"
[hooks]
pre-push = ["record", "always"]
"#;

/// A repository with `config`, `@LOG@` made its git folder.
fn repo_with(config: &str) -> Repo {
    let repo = Repo::new();
    repo.write("preflight.toml", logging(&repo, config));
    repo
}

fn logging(repo: &Repo, config: &str) -> String {
    config.replace("@LOG@", repo.path().join(".git").to_str().unwrap())
}

struct Pushing {
    repo: Repo,
    _remote: tempfile::TempDir,
}

fn pushing() -> Pushing {
    pushing_with(CONFIG)
}

fn pushing_with(config: &str) -> Pushing {
    let remote = tempfile::tempdir().unwrap();
    let bare = git_command(remote.path())
        .args(["init", "-q", "--bare", "-b", "main"])
        .output()
        .unwrap();
    assert!(bare.status.success());
    let repo = repo_with(config);
    repo.write("base.txt", "x");
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "base"]);
    repo.git(&["remote", "add", "origin", remote.path().to_str().unwrap()]);
    repo.git(&["push", "-q", "origin", "main"]);
    repo.run(&["install"]).code(0);
    Pushing {
        repo,
        _remote: remote,
    }
}

impl Pushing {
    fn commit_file(&self, path: &str) {
        self.repo.write(path, path);
        self.repo.git(&["add", path]);
        self.repo.git(&["commit", "-q", "--no-verify", "-m", path]);
    }

    fn push(&self, args: &[&str]) -> Run {
        let mut all = vec!["push", "-q"];
        all.extend_from_slice(args);
        self.repo.git_run(&all)
    }

    /// The files the last push's step got, and whether the file-less step ran.
    fn pushed(&self) -> (Vec<String>, bool) {
        let path = self.repo.path().join(".git/pushed");
        let mut files: Vec<String> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect();
        files.sort();
        files.dedup();
        let _ = std::fs::remove_file(path);
        let always = self.repo.path().join(".git/always");
        let ran = always.exists();
        let _ = std::fs::remove_file(always);
        (files, ran)
    }
}

#[test]
fn an_update_checks_only_what_the_remote_lacks() {
    let p = pushing();
    p.commit_file("one.txt");
    p.commit_file("two.txt");
    p.push(&["origin", "main"]).code(0);
    assert_eq!(p.pushed(), (vec!["one.txt".into(), "two.txt".into()], true));
    p.commit_file("three.txt");
    p.push(&["origin", "main"]).code(0);
    assert_eq!(p.pushed().0, ["three.txt"]);
}

#[test]
fn a_new_branch_checks_the_commits_no_remote_branch_has() {
    let p = pushing();
    p.repo.git(&["checkout", "-q", "-b", "feature"]);
    p.commit_file("feature.txt");
    p.push(&["origin", "feature"]).code(0);
    assert_eq!(p.pushed().0, ["feature.txt"], "never all files by accident");

    // A new branch at a commit the remote already has: nothing to check, but it still runs.
    p.repo.git(&["branch", "copy", "main"]);
    p.push(&["origin", "copy"]).code(0);
    assert_eq!(p.pushed(), (vec![], true));
}

#[test]
fn a_force_push_checks_the_rewritten_files() {
    let p = pushing();
    p.commit_file("first.txt");
    p.push(&["origin", "main"]).code(0);
    p.pushed();
    p.repo.git(&["reset", "-q", "--hard", "HEAD~1"]);
    p.commit_file("instead.txt");
    p.push(&["--force", "origin", "main"]).code(0);
    let (files, _) = p.pushed();
    assert!(files.contains(&"instead.txt".to_string()), "{files:?}");
    assert!(!files.contains(&"base.txt".to_string()), "{files:?}");
}

#[test]
fn a_deletion_sends_no_commit_so_nothing_is_checked() {
    let p = pushing();
    p.repo.git(&["checkout", "-q", "-b", "doomed"]);
    p.commit_file("doomed.txt");
    p.push(&["origin", "doomed"]).code(0);
    p.pushed();
    let run = p.push(&["origin", "--delete", "doomed"]);
    run.code(0);
    assert_eq!(p.pushed(), (vec![], false));
    assert!(run.stderr.contains("nothing to check"), "{}", run.stderr);
}

#[test]
fn several_refs_and_tags_in_one_push() {
    let p = pushing();
    p.commit_file("on-main.txt");
    p.repo.git(&["checkout", "-q", "-b", "other"]);
    p.commit_file("on-other.txt");
    p.repo.git(&["tag", "-a", "v1", "-m", "v1"]);
    // Each pushed commit is checked on its own files: main's tip, and other's (which the tag
    // names too, so it is checked once).
    let run = p.push(&["origin", "main", "other", "v1"]);
    run.code(0);
    assert_eq!(p.pushed().0, ["on-main.txt", "on-other.txt"]);
    assert!(
        run.stderr.contains("(other, v1), not your work tree"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("(main), not your work tree"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_failing_step_stops_the_push() {
    let p = pushing();
    p.repo.write(
        "preflight.toml",
        logging(
            &p.repo,
            &CONFIG.replace("echo ran >> @LOG@/always", "exit 1"),
        ),
    );
    p.repo.git(&["commit", "-q", "--no-verify", "-am", "break"]);
    let run = p.push(&["origin", "main"]);
    assert_ne!(run.code, 0);
    let remote_head = p.repo.git_run(&["ls-remote", "origin", "main"]).stdout;
    let local_head = p.repo.git_run(&["rev-parse", "HEAD"]).stdout;
    assert!(
        !remote_head.starts_with(local_head.trim()),
        "the push was refused"
    );
}

#[test]
fn run_selects_a_hook_and_a_range_by_hand() {
    let p = pushing();
    p.commit_file("x.txt");
    p.commit_file("y.txt");
    let run = p.repo.run(&[
        "run",
        "--hook",
        "pre-push",
        "--from",
        "origin/main",
        "--to",
        "HEAD",
    ]);
    run.code(0);
    assert_eq!(p.pushed(), (vec!["x.txt".into(), "y.txt".into()], true));
    p.repo.write("z.txt", "z");
    p.repo.git(&["add", "z.txt"]);
    p.repo
        .run(&["run", "--hook", "pre-push", "--staged"])
        .code(0);
    assert_eq!(p.pushed().0, ["z.txt"]);
    p.repo
        .run(&["run", "--hook", "pre-push", "--all-files"])
        .code(0);
    assert_eq!(
        p.pushed().0,
        ["base.txt", "preflight.toml", "x.txt", "y.txt", "z.txt"]
    );
}

/// A "compile" check: fails while `code.txt` says `broken`. `check` keys on the file,
/// `whole` declares nothing (it always runs, in the pushed content).
const CHECKS: &str = r#"
[steps.check]
run = "! grep -q broken code.txt"
inputs = ["code.txt"]
[steps.whole]
run = "pwd > @LOG@/where; ! grep -q broken code.txt"
[hooks]
pre-push = ["check", "whole"]
"#;

fn worktrees(repo: &Repo) -> usize {
    let list = repo.git(&["worktree", "list", "--porcelain"]).stdout;
    String::from_utf8_lossy(&list)
        .lines()
        .filter(|l| l.starts_with("worktree "))
        .count()
}

fn remote_has(p: &Pushing, commit: &str) -> bool {
    let remote_head = p.repo.git_run(&["ls-remote", "origin", "main"]).stdout;
    remote_head.starts_with(commit)
}

#[test]
fn a_broken_commit_fixed_only_in_the_work_tree_does_not_reach_the_remote() {
    let p = pushing_with(CHECKS);
    p.repo.write("code.txt", "broken");
    p.repo.git(&["add", "code.txt"]);
    p.repo.git(&["commit", "-q", "--no-verify", "-m", "broken"]);
    // Fixed in the work tree, not committed: the checks must still judge the commit.
    p.repo.write("code.txt", "fixed");
    let run = p.push(&["origin", "main"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    let head = p.repo.git_run(&["rev-parse", "HEAD"]).stdout;
    assert!(!remote_has(&p, head.trim()), "the broken commit was pushed");
    let short = &head.trim()[..7];
    assert!(
        run.stderr.contains(&format!(
            "checked the pushed commit {short} (main), not your work tree"
        )),
        "{}",
        run.stderr
    );
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("failed check") && all.contains("failed whole"),
        "{all}"
    );
    assert_eq!(
        p.repo.read_string("code.txt"),
        "fixed",
        "the work tree is left alone"
    );

    // Committed, the fix goes through; the check's outputs never touched the work tree.
    p.repo.git(&["commit", "-q", "--no-verify", "-am", "fixed"]);
    p.push(&["origin", "main"]).code(0);
    assert!(p.repo.git_run(&["status", "--porcelain"]).stdout.is_empty());
}

#[test]
fn a_step_reads_the_pushed_content_in_a_checkout_that_is_gone_afterwards() {
    let p = pushing_with(CHECKS);
    p.repo.write("code.txt", "good");
    p.repo.git(&["add", "code.txt"]);
    p.repo.git(&["commit", "-q", "--no-verify", "-m", "good"]);
    // Broken in the work tree only, plus an untracked file: neither is pushed.
    p.repo.write("code.txt", "broken");
    p.repo.write("untracked.txt", "broken");
    p.push(&["origin", "main"]).code(0);
    let head = p.repo.git_run(&["rev-parse", "HEAD"]).stdout;
    assert!(remote_has(&p, head.trim()));
    let where_ = p.repo.read_string(".git/where");
    let where_ = Path::new(where_.trim());
    assert_ne!(
        where_,
        p.repo.path(),
        "the dirty work tree was not where it ran"
    );
    assert!(
        !where_.exists(),
        "the checkout {} is left",
        where_.display()
    );
    assert_eq!(worktrees(&p.repo), 1, "git still lists the checkout");
    assert_eq!(p.repo.read_string("code.txt"), "broken");
}

#[test]
fn untracked_files_do_not_leak_into_the_check() {
    let config = r#"
[steps.globbed]
run = "test ! -e extra.txt"
inputs = ["*.txt"]
[steps.whole]
run = "test ! -e extra.txt && test ! -e sub/extra.txt"
[hooks]
pre-push = ["globbed", "whole"]
"#;
    let p = pushing_with(config);
    p.commit_file("a.txt");
    p.repo.write("extra.txt", "not committed");
    p.repo.write("sub/extra.txt", "not committed");
    p.push(&["origin", "main"]).code(0);
    assert!(p.repo.path().join("extra.txt").exists());
}

#[test]
fn a_clean_work_tree_at_the_pushed_commit_runs_in_place() {
    let p = pushing_with(CHECKS);
    p.repo.write("code.txt", "good");
    p.repo.git(&["add", "code.txt"]);
    p.repo.git(&["commit", "-q", "--no-verify", "-m", "good"]);
    p.push(&["origin", "main"]).code(0);
    let where_ = p.repo.read_string(".git/where");
    assert_eq!(Path::new(where_.trim()), p.repo.path());
    // Removing the link to the work tree left the work tree alone.
    assert_eq!(p.repo.read_string("code.txt"), "good");
    assert!(p.repo.git_run(&["status", "--porcelain"]).stdout.is_empty());
    assert_eq!(worktrees(&p.repo), 1);
}

#[test]
fn a_push_of_what_passed_at_commit_time_is_all_cache_hits() {
    // Files with an executable bit and a symlink: their key records from the commit's tree
    // must be the ones the work tree gave at commit time.
    let config = r#"
[steps.listed]
run = "test -x tool.sh && cat {files} > /dev/null && echo listed >> @LOG@/ran"
files = ["*.txt", "*.sh"]
[steps.globbed]
run = "test -L link && cat link > /dev/null && echo globbed >> @LOG@/ran"
inputs = ["*.txt", "tool.sh", "link"]
[steps.built]
run = "mkdir -p out && cat a.txt > out/a && echo built >> @LOG@/ran"
inputs = ["a.txt"]
outputs = ["out"]
[hooks]
pre-commit = ["listed", "globbed", "built"]
pre-push = ["listed", "globbed", "built"]
"#;
    let p = pushing_with(config);
    p.repo.write(".gitignore", "out/\n");
    p.repo.write("a.txt", "a");
    p.repo.write("tool.sh", "#!/bin/sh\n");
    std::os::unix::fs::symlink("a.txt", p.repo.path().join("link")).unwrap();
    let mut perms = std::fs::metadata(p.repo.path().join("tool.sh"))
        .unwrap()
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(p.repo.path().join("tool.sh"), perms).unwrap();
    p.repo.add_all();
    p.repo.commit("checked at commit time").code(0);
    let ran = p.repo.read_string(".git/ran");
    assert_eq!(ran.lines().count(), 3, "{ran}");
    // The work tree moves on: the push must still find the commit's results.
    p.repo.write("a.txt", "changed");
    p.repo.write("new.txt", "untracked");
    let run = p.push(&["origin", "main"]);
    run.code(0);
    assert_eq!(p.repo.read_string(".git/ran"), ran, "nothing ran again");
    let all = format!("{}{}", run.stdout, run.stderr);
    for step in ["listed", "globbed", "built"] {
        assert!(all.contains(&format!("cached {step}")), "{step}: {all}");
    }
    assert_eq!(worktrees(&p.repo), 1);
}

#[test]
fn ctrl_c_during_a_push_removes_the_checkout() {
    use std::os::unix::process::CommandExt;
    let config = r#"
[steps.slow]
run = "pwd > @LOG@/where; touch @LOG@/started; sleep 30 # push-sigint-marker"
[hooks]
pre-push = ["slow"]
"#;
    let p = pushing_with(config);
    p.commit_file("a.txt");
    p.repo.write("a.txt", "dirty");
    let mut child = git_command(p.repo.path())
        .args(["push", "-q", "origin", "main"])
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = p.repo.path().join(".git/started");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !started.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(started.exists(), "the step did not start");
    let where_ = p.repo.read_string(".git/where");
    let where_ = Path::new(where_.trim()).to_path_buf();
    assert!(where_.exists());
    // Ctrl-C in a terminal: SIGINT to the whole foreground group.
    // SAFETY: signalling the process group of our own child.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(!status.success());
    // git returns at once; preflight stops its step and removes the checkout.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // git removes the folder first, then forgets the worktree.
    while (where_.exists()
        || !processes_with("push-sigint-marker").is_empty()
        || worktrees(&p.repo) != 1)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        !where_.exists(),
        "the checkout {} is left",
        where_.display()
    );
    assert_eq!(worktrees(&p.repo), 1, "git still lists the checkout");
    assert_eq!(p.repo.read_string("a.txt"), "dirty");
}

#[test]
fn run_from_to_checks_the_commit_not_the_work_tree() {
    let p = pushing_with(CHECKS);
    p.repo.write("code.txt", "broken");
    p.repo.git(&["add", "code.txt"]);
    p.repo.git(&["commit", "-q", "--no-verify", "-m", "broken"]);
    p.repo.write("code.txt", "fixed");
    let run = p
        .repo
        .run(&["run", "--hook", "pre-push", "--from", "origin/main"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("checked the commit") && run.stderr.contains("(HEAD)"),
        "{}",
        run.stderr
    );
    // The other way round: a good commit under a broken work tree passes.
    p.repo.write("code.txt", "good");
    p.repo.git(&["commit", "-q", "--no-verify", "-am", "good"]);
    p.repo.write("code.txt", "broken");
    p.repo
        .run(&[
            "run",
            "--hook",
            "pre-push",
            "--from",
            "origin/main",
            "--to",
            "HEAD",
        ])
        .code(0);
    assert_eq!(worktrees(&p.repo), 1);
}

#[test]
fn each_pushed_commit_is_checked_with_its_own_configuration() {
    let p = pushing_with(CHECKS);
    let stricter = format!(
        "{}\n[steps.strict]\nrun = \"exit 3\"\n",
        CHECKS.replace(
            r#"pre-push = ["check", "whole"]"#,
            r#"pre-push = ["check", "whole", "strict"]"#
        )
    );
    p.repo.write("preflight.toml", logging(&p.repo, &stricter));
    p.repo.write("code.txt", "good");
    p.repo.add_all();
    p.repo
        .git(&["commit", "-q", "--no-verify", "-m", "stricter"]);
    // The work tree drops the new check without committing that: the push still has it.
    p.repo.write("preflight.toml", logging(&p.repo, CHECKS));
    let run = p.push(&["origin", "main"]);
    assert_ne!(run.code, 0);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("failed strict"), "{all}");
    // The work tree drops its pre-push binding altogether: the push is still checked.
    let unbound = CHECKS.replace(r#"pre-push = ["check", "whole"]"#, "");
    assert_ne!(unbound, CHECKS);
    p.repo.write("preflight.toml", logging(&p.repo, &unbound));
    let run = p.push(&["origin", "main"]);
    assert_ne!(run.code, 0);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("failed strict"), "{all}");

    // A commit without a configuration has nothing to check.
    p.repo.git(&["rm", "-q", "--cached", "preflight.toml"]);
    p.repo
        .git(&["commit", "-q", "--no-verify", "-m", "no config"]);
    let run = p.push(&["origin", "main"]);
    run.code(0);
    assert!(
        run.stderr
            .contains("has no preflight.toml: nothing to check"),
        "{}",
        run.stderr
    );
}
