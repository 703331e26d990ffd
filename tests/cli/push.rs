//! pre-push: the files of what a push sends, from the refs git gives the hook.

use crate::common::{Repo, Run, git_command};

const CONFIG: &str = r#"
[steps.record]
run = "printf '%s\n' {files} >> .git/pushed"
files = ["*"]
[steps.always]
run = "echo ran >> .git/always"
[hooks]
pre-push = ["record", "always"]
"#;

struct Pushing {
    repo: Repo,
    _remote: tempfile::TempDir,
}

fn pushing() -> Pushing {
    let remote = tempfile::tempdir().unwrap();
    let bare = git_command(remote.path())
        .args(["init", "-q", "--bare", "-b", "main"])
        .output()
        .unwrap();
    assert!(bare.status.success());
    let repo = Repo::with_config(CONFIG);
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
fn a_deletion_has_no_files_but_file_less_steps_run() {
    let p = pushing();
    p.repo.git(&["checkout", "-q", "-b", "doomed"]);
    p.commit_file("doomed.txt");
    p.push(&["origin", "doomed"]).code(0);
    p.pushed();
    p.push(&["origin", "--delete", "doomed"]).code(0);
    assert_eq!(p.pushed(), (vec![], true));
}

#[test]
fn several_refs_and_tags_in_one_push() {
    let p = pushing();
    p.commit_file("on-main.txt");
    p.repo.git(&["checkout", "-q", "-b", "other"]);
    p.commit_file("on-other.txt");
    p.repo.git(&["tag", "-a", "v1", "-m", "v1"]);
    // Steps check files in the work tree: `other` is checked out and holds both files.
    p.push(&["origin", "main", "other", "v1"]).code(0);
    assert_eq!(p.pushed().0, ["on-main.txt", "on-other.txt"]);
}

#[test]
fn a_failing_step_stops_the_push() {
    let p = pushing();
    p.repo.write(
        "preflight.toml",
        CONFIG.replace("echo ran >> .git/always", "exit 1"),
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
