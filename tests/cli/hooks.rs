//! Git hooks end to end: `preflight install`, then real `git commit` and `git push`.

use crate::common::{Repo, Run, git_command};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A repository with `config`, hooks installed, and a first commit of `files`.
fn hooked(config: &str, files: &[(&str, &str)]) -> Repo {
    let repo = Repo::with_config(config);
    for (path, text) in files {
        repo.write(path, text);
    }
    repo.run(&["install"]).code(0);
    repo.add_all();
    repo.commit("initial").code(0);
    repo
}

/// A step that records the files it was given, one per line, in `seen` in the git dir
/// (outside the work tree).
const RECORD: &str = r#"
[steps.record]
run = "printf '%s\n' {files} >> \"$(git rev-parse --git-dir)/seen\""
files = ["*"]
[hooks]
pre-commit = ["record"]
"#;

fn seen(repo: &Repo) -> Vec<String> {
    let text = std::fs::read_to_string(repo.path().join(".git/seen")).unwrap_or_default();
    let _ = std::fs::remove_file(repo.path().join(".git/seen"));
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines.sort();
    lines
}

#[test]
fn install_is_idempotent_and_uninstall_cleans_up() {
    let repo = Repo::with_config(
        "[steps.a]\nrun = \"true\"\n[hooks]\npre-commit = [\"a\"]\npre-push = [\"a\"]\n",
    );
    let first = repo.run(&["install"]);
    first.code(0);
    assert!(
        first.stdout.contains("installed pre-commit"),
        "{}",
        first.stdout
    );
    let hook = repo.path().join(".git/hooks/pre-commit");
    let text = std::fs::read_to_string(&hook).unwrap();
    assert!(
        text.contains(crate::common::BIN),
        "the shim remembers the binary's absolute path"
    );
    assert_eq!(
        std::fs::metadata(&hook).unwrap().permissions().mode() & 0o111,
        0o111
    );
    let again = repo.run(&["install"]);
    assert!(
        again.stdout.contains("pre-commit already installed"),
        "{}",
        again.stdout
    );
    assert_eq!(std::fs::read_to_string(&hook).unwrap(), text);
    let doctor = repo.run(&["doctor"]);
    doctor.code(0);
    assert!(
        doctor.stdout.contains("ok       pre-commit")
            && doctor.stdout.contains("ok       pre-push")
    );

    // A hook dropped from [hooks] keeps its (now idle) shim, and doctor says so.
    repo.write(
        "preflight.toml",
        "[steps.a]\nrun = \"true\"\n[hooks]\npre-commit = [\"a\"]\n",
    );
    repo.run(&["install"]).code(0);
    let doctor = repo.run(&["doctor"]);
    assert!(
        doctor.stdout.contains("unused   pre-push: not in [hooks]"),
        "{}",
        doctor.stdout
    );
    let bad = repo.run(&["install", "--hook", "pre-comit"]);
    bad.code(2);
    assert!(
        bad.stderr.contains("did you mean `pre-commit`?"),
        "{}",
        bad.stderr
    );
    repo.run(&["install", "--hook", "../escape"]).code(2);
    assert!(!repo.path().join(".git/escape").exists());

    repo.run(&["uninstall"]).code(0);
    assert!(!hook.exists());
    assert!(!repo.path().join(".git/hooks/pre-push").exists());
    let doctor = repo.run(&["install", "--check"]);
    doctor.code(1);
    assert!(
        doctor.stdout.contains("missing  pre-commit"),
        "{}",
        doctor.stdout
    );
}

#[test]
fn an_existing_hook_is_kept_chained_and_put_back() {
    let repo = Repo::with_config(
        "[steps.a]\nrun = \"touch .git/preflight-ran\"\n[hooks]\npre-commit = [\"a\"]\n",
    );
    let mine = "#!/bin/sh\necho mine >> .git/mine-ran\n[ ! -f .git/block ]\n";
    repo.write(".git/hooks/pre-commit", mine);
    std::fs::set_permissions(
        repo.path().join(".git/hooks/pre-commit"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let install = repo.run(&["install"]);
    assert!(
        install.stdout.contains("kept as pre-commit.pre-preflight"),
        "{}",
        install.stdout
    );
    repo.write("f.txt", "x");
    repo.add_all();
    repo.commit("one").code(0);
    assert!(
        repo.path().join(".git/mine-ran").exists(),
        "the old hook still runs"
    );
    assert!(repo.path().join(".git/preflight-ran").exists());

    // Its exit status is respected: it runs first, and a failure stops the commit.
    std::fs::remove_file(repo.path().join(".git/preflight-ran")).unwrap();
    repo.write(".git/block", "");
    repo.write("f.txt", "y");
    repo.add_all();
    assert_ne!(repo.commit("two").code, 0);
    assert!(!repo.path().join(".git/preflight-ran").exists());

    repo.run(&["uninstall"]).code(0);
    assert_eq!(
        std::fs::read_to_string(repo.path().join(".git/hooks/pre-commit")).unwrap(),
        mine
    );
    assert!(
        !repo
            .path()
            .join(".git/hooks/pre-commit.pre-preflight")
            .exists()
    );
}

#[test]
fn install_goes_where_core_hooks_path_points() {
    let repo = Repo::with_config(RECORD);
    repo.git(&["config", "core.hooksPath", ".githooks"]);
    repo.run(&["install"]).code(0);
    assert!(repo.path().join(".githooks/pre-commit").is_file());
    assert!(!repo.path().join(".git/hooks/pre-commit").exists());
    repo.write("a.txt", "x");
    repo.add_all();
    repo.commit("one").code(0);
    assert_eq!(
        seen(&repo),
        [".githooks/pre-commit", "a.txt", "preflight.toml"]
    );
}

#[test]
fn a_global_hooks_path_is_reported_not_fought() {
    let repo = Repo::with_config(RECORD);
    let global = repo.path().join(".git/global-config");
    std::fs::write(&global, "[core]\n\thooksPath = /tmp/someone-elses-hooks\n").unwrap();
    let run = Run::from(
        repo.cmd()
            .arg("install")
            .env("GIT_CONFIG_GLOBAL", &global)
            .output()
            .unwrap(),
    );
    run.code(2);
    assert!(
        run.stderr
            .contains("core.hooksPath is set outside this repository"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("--use-global-hooks-path"),
        "{}",
        run.stderr
    );
    let shared = repo.path().join(".git/shared-hooks");
    std::fs::write(
        &global,
        format!("[core]\n\thooksPath = {}\n", shared.display()),
    )
    .unwrap();
    Run::from(
        repo.cmd()
            .args(["install", "--use-global-hooks-path"])
            .env("GIT_CONFIG_GLOBAL", &global)
            .output()
            .unwrap(),
    )
    .code(0);
    assert!(shared.join("pre-commit").is_file());
}

#[test]
fn pre_commit_gets_staged_files_only() {
    let repo = hooked(
        RECORD,
        &[("old.txt", "x"), ("keep.txt", "x"), ("gone.txt", "x")],
    );
    seen(&repo);
    repo.write("new file.txt", "x");
    repo.write("untracked.txt", "x");
    repo.write("keep.txt", "changed but not staged");
    repo.git(&["add", "new file.txt"]);
    repo.git(&["mv", "old.txt", "renamed.txt"]);
    repo.git(&["rm", "-q", "gone.txt"]);
    repo.commit("two").code(0);
    assert_eq!(seen(&repo), ["new file.txt", "renamed.txt"]);
}

/// What git itself lists as staged (deletions aside, renames as their new name).
fn staged_by_git(repo: &Repo) -> Vec<String> {
    let out = repo.git(&[
        "diff",
        "--cached",
        "--name-only",
        "--no-renames",
        "--diff-filter=d",
    ]);
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

#[test]
fn the_staged_files_are_what_git_lists_whatever_state_its_cache_tree_is_in() {
    let mut files = vec![];
    for d in ["a", "a/b", "a/b/c", "g", "g/i", "k", "m", "m.d", "m-x"] {
        for f in ["one.txt", "two.txt"] {
            files.push((format!("{d}/{f}"), format!("{d} {f}\n")));
        }
    }
    files.push(("top.txt".into(), "top\n".into()));
    // Names whose place in a tree (a folder's name read as `m/`) is not their byte order.
    for f in ["m+", "m0", "m.d.txt"] {
        files.push((f.into(), format!("{f}\n")));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let repo = hooked(RECORD, &files);
    let hook = |what: &str| {
        seen(&repo);
        let out = repo
            .cmd()
            .args(["hook", "pre-commit"])
            .env("PREFLIGHT_NO_CACHE", "1")
            .output()
            .unwrap();
        Run::from(out).code(0);
        assert_eq!(seen(&repo), staged_by_git(&repo), "{what}");
    };
    // `git add` leaves the cache tree valid for the folders it did not touch.
    repo.write("a/b/c/one.txt", "changed\n");
    repo.git(&["add", "a/b/c/one.txt"]);
    hook("a file deep down, the cache tree partly valid");
    // write-tree makes every folder valid again, the changed ones with new trees.
    repo.git(&["write-tree"]);
    hook("the cache tree all valid");
    repo.git(&["update-index", "--chmod=+x", "g/one.txt"]);
    hook("a mode change");
    std::fs::remove_file(repo.path().join("k/one.txt")).unwrap();
    std::os::unix::fs::symlink("two.txt", repo.path().join("k/one.txt")).unwrap();
    repo.git(&["add", "k/one.txt"]);
    repo.git(&["write-tree"]);
    hook("a file become a symlink");
    repo.git(&["rm", "-q", "-r", "--cached", "g/i"]);
    std::fs::remove_dir_all(repo.path().join("g/i")).unwrap();
    repo.write("g/i", "a file where a folder was\n");
    repo.write("m.d/new.txt", "new\n");
    repo.git(&["add", "g/i", "m.d/new.txt"]);
    hook("a folder become a file, a new file beside folders with like names");
    for f in [
        "m+",
        "m0",
        "m.d.txt",
        "m/two.txt",
        "m.d/one.txt",
        "m-x/two.txt",
    ] {
        repo.write(f, "changed\n");
        repo.git(&["add", f]);
    }
    hook("files beside folders of like names, git's order not the bytes'");
    repo.git(&["reset", "-q"]);
    hook("nothing staged");
    assert!(staged_by_git(&repo).is_empty());
}

#[test]
fn a_staged_change_git_keeps_out_of_the_work_tree_stops_the_commit() {
    let repo = hooked(RECORD, &[("a.txt", "1\n"), ("b.txt", "1\n")]);
    seen(&repo);
    repo.write("a.txt", "2\n");
    repo.git(&["add", "a.txt"]);
    // Marked skip-worktree after staging (as sparse checkouts mark the files they leave out):
    // what is staged for it is not in the work tree for a step to check.
    repo.git(&["update-index", "--skip-worktree", "a.txt"]);
    refused_for_a_hidden_change(&repo, "a.txt");
    // Once git keeps it in the work tree again, the step checks it.
    repo.git(&["update-index", "--no-skip-worktree", "a.txt"]);
    repo.commit("the change to a.txt").code(0);
    assert_eq!(seen(&repo), ["a.txt"]);
}

#[test]
fn a_staged_change_folded_into_a_sparse_folder_stops_the_commit() {
    let repo = hooked(RECORD, &[("dir/a.txt", "1\n"), ("keep/k.txt", "k\n")]);
    seen(&repo);
    repo.git(&["sparse-checkout", "init", "--cone", "--sparse-index"]);
    repo.git(&["sparse-checkout", "set", "keep"]);
    repo.write(".git/blob", "2\n");
    let blob = String::from_utf8(repo.git(&["hash-object", "-w", ".git/blob"]).stdout).unwrap();
    let info = format!("100644,{},dir/a.txt", blob.trim());
    repo.git(&["update-index", "--cacheinfo", &info]);
    repo.git(&["update-index", "--skip-worktree", "dir/a.txt"]);
    // Folds `dir/` back into one sparse entry whose tree holds the staged change.
    repo.git(&["sparse-checkout", "reapply"]);
    assert!(
        String::from_utf8_lossy(&repo.git(&["ls-files", "--sparse"]).stdout).contains("dir/\n"),
        "the index is sparse"
    );
    refused_for_a_hidden_change(&repo, "dir/");
}

/// A commit refused because `path` has a staged change git keeps out of the work tree:
/// the error names it, and nothing is committed.
fn refused_for_a_hidden_change(repo: &Repo, path: &str) {
    let head = repo.git(&["rev-parse", "HEAD"]).stdout;
    let commit = repo.commit("the hidden change");
    assert_ne!(commit.code, 0, "{}{}", commit.stdout, commit.stderr);
    assert!(
        commit.stderr.contains(path) && commit.stderr.contains("skip-worktree"),
        "{}",
        commit.stderr
    );
    assert_eq!(
        repo.git(&["rev-parse", "HEAD"]).stdout,
        head,
        "nothing committed"
    );
}

#[test]
fn a_merge_in_a_sparse_checkout_commits_what_it_brings_in_outside_it() {
    let repo = hooked(
        &RECORD.replace(
            "pre-commit = [\"record\"]",
            "pre-commit = [\"record\"]\npre-merge-commit = [\"record\"]",
        ),
        &[("dir/a.txt", "1\n"), ("keep/k.txt", "k\n")],
    );
    seen(&repo);
    for (branch, file) in [("side", "dir/a.txt"), ("other", "dir/b.txt")] {
        repo.git(&["checkout", "-q", "-b", branch, "main"]);
        repo.write(file, "from the branch\n");
        repo.git(&["add", file]);
        repo.git_run(&["commit", "-q", "--no-verify", "-m", branch])
            .code(0);
    }
    repo.git(&["checkout", "-q", "main"]);
    repo.write("keep/k.txt", "k2\n");
    repo.git(&["add", "keep/k.txt"]);
    repo.commit("main").code(0);
    seen(&repo);
    repo.git(&["sparse-checkout", "set", "keep"]);
    // `dir/` is outside the checkout: git stages what the merge brings there, hidden.
    repo.git_run(&["merge", "-q", "--no-edit", "side"]).code(0);
    assert!(
        repo.git(&["log", "-1", "--format=%P"]).stdout.len() > 41,
        "a merge commit"
    );
    repo.git_run(&["merge", "-q", "--no-commit", "other"])
        .code(0);
    repo.commit("merge other").code(0);
    assert_eq!(repo.show("HEAD:dir/b.txt"), "from the branch\n");
    assert!(
        seen(&repo).is_empty(),
        "nothing to check inside the checkout"
    );

    // A cherry-pick stopped by a conflict inside the checkout, concluded by `git commit`:
    // what it brings outside is the picked commit's.
    repo.git(&["sparse-checkout", "disable"]);
    repo.git(&["checkout", "-q", "-b", "picked", "side"]);
    repo.write("dir/c.txt", "picked\n");
    repo.write("keep/k.txt", "k from the pick\n");
    repo.git(&["add", "dir/c.txt", "keep/k.txt"]);
    repo.git_run(&["commit", "-q", "--no-verify", "-m", "to pick"])
        .code(0);
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["sparse-checkout", "set", "keep"]);
    assert_ne!(
        repo.git_run(&["cherry-pick", "picked"]).code,
        0,
        "a conflict"
    );
    repo.write("keep/k.txt", "resolved\n");
    repo.git(&["add", "keep/k.txt"]);
    repo.commit("the pick").code(0);
    assert_eq!(repo.show("HEAD:dir/c.txt"), "picked\n");
    assert_eq!(seen(&repo), ["keep/k.txt"]);
}

#[test]
fn the_first_commit_detached_head_and_an_empty_commit_work() {
    let repo = Repo::with_config(
        &format!("{RECORD}\n[steps.always]\nrun = \"touch .git/always-ran\"\n").replace(
            "pre-commit = [\"record\"]",
            "pre-commit = [\"record\", \"always\"]",
        ),
    );
    repo.run(&["install"]).code(0);
    repo.write("a.txt", "x");
    repo.add_all();
    repo.commit("first, no HEAD yet").code(0);
    assert_eq!(seen(&repo), ["a.txt", "preflight.toml"]);

    repo.git(&["checkout", "-q", "--detach"]);
    repo.write("b.txt", "x");
    repo.git(&["add", "b.txt"]);
    repo.commit("detached").code(0);
    assert_eq!(seen(&repo), ["b.txt"]);

    std::fs::remove_file(repo.path().join(".git/always-ran")).unwrap();
    repo.git_run(&["commit", "-q", "--allow-empty", "-m", "empty"])
        .code(0);
    assert!(seen(&repo).is_empty(), "no files: the file step is skipped");
    assert!(
        repo.path().join(".git/always-ran").exists(),
        "a step without files still runs"
    );
}

#[test]
fn commit_all_amend_and_a_merge_see_the_right_files() {
    let repo = hooked(RECORD, &[("a.txt", "1"), ("b.txt", "1")]);
    seen(&repo);
    repo.write("a.txt", "2");
    repo.git_run(&["commit", "-q", "-a", "-m", "all"]).code(0);
    assert_eq!(seen(&repo), ["a.txt"]);

    repo.write("b.txt", "2");
    repo.git(&["add", "b.txt"]);
    repo.git_run(&["commit", "-q", "--amend", "--no-edit"])
        .code(0);
    assert_eq!(seen(&repo), ["b.txt"]);

    // A merge with a conflict, resolved by hand: the hook runs during the merge commit.
    repo.git(&["checkout", "-q", "-b", "side"]);
    repo.write("a.txt", "side");
    repo.write("side.txt", "s");
    repo.add_all();
    repo.commit("side").code(0);
    repo.git(&["checkout", "-q", "main"]);
    repo.write("a.txt", "main");
    repo.add_all();
    repo.commit("main").code(0);
    seen(&repo);
    assert_ne!(repo.git_run(&["merge", "-q", "side"]).code, 0, "a conflict");
    assert!(repo.path().join(".git/MERGE_HEAD").exists());
    repo.write("a.txt", "resolved");
    repo.write("wip.txt", "unstaged work during the merge");
    repo.git(&["add", "a.txt"]);
    repo.git_run(&["commit", "-q", "--no-edit"]).code(0);
    assert_eq!(seen(&repo), ["a.txt", "side.txt"]);
    assert_eq!(
        repo.read_string("wip.txt"),
        "unstaged work during the merge"
    );
}

#[test]
fn steps_see_exactly_what_is_staged_and_unstaged_work_comes_back() {
    let config = r#"
[steps.check]
run = "cat {files} > .git/checked; ! grep -q WIP {files}"
files = ["*.txt"]
[hooks]
pre-commit = ["check"]
"#;
    let repo = hooked(
        config,
        &[("a.txt", "line 1\nline 2\n"), ("img.bin", "\x00\x01")],
    );
    repo.write("a.txt", "line 1 staged\nline 2\n");
    repo.git(&["add", "a.txt"]);
    repo.write("a.txt", "line 1 staged\nline 2 WIP\n");
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    repo.write("img.bin", &binary);
    repo.write("new.txt", "untracked WIP stays");
    let run = repo.commit("partial");
    run.code(0);
    assert_eq!(
        repo.read_string(".git/checked"),
        "line 1 staged\nline 2\n",
        "the check saw the staged text"
    );
    assert_eq!(repo.show("HEAD:a.txt"), "line 1 staged\nline 2\n");
    assert_eq!(
        repo.read_string("a.txt"),
        "line 1 staged\nline 2 WIP\n",
        "unstaged work is back"
    );
    assert_eq!(
        repo.read("img.bin"),
        binary,
        "binary unstaged changes come back byte for byte"
    );
    assert_eq!(repo.read_string("new.txt"), "untracked WIP stays");
    assert!(
        std::fs::read_dir(repo.path().join(".git/preflight/unstaged"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn intent_to_add_files_keep_their_content_and_status() {
    let repo = hooked(RECORD, &[("a.txt", "1")]);
    seen(&repo);
    repo.write("later.txt", "not staged yet");
    repo.git(&["add", "-N", "later.txt"]);
    repo.write("a.txt", "2");
    repo.git(&["add", "a.txt"]);
    repo.write("a.txt", "3 unstaged");
    repo.commit("with ita").code(0);
    assert_eq!(seen(&repo), ["a.txt"]);
    assert_eq!(repo.read_string("later.txt"), "not staged yet");
    let status = String::from_utf8(repo.git(&["status", "--porcelain"]).stdout).unwrap();
    assert!(
        status.contains(" A later.txt"),
        "still intent-to-add: {status}"
    );
    assert!(status.contains(" M a.txt"), "{status}");
}

const FIXER: &str = r#"
[steps.trim]
run = "! grep -l '  ' {files}"
fix = "sed -i 's/  */ /g' {files}"
files = ["*.txt"]
[hooks]
pre-commit = { steps = ["trim"], fix = true }
"#;

#[test]
fn fixes_to_staged_files_are_staged() {
    let repo = hooked(
        FIXER,
        &[
            ("a.txt", "ok\n"),
            ("far.txt", "1\n2\n3\n4\n5\n6\n7\n8\n9\n"),
        ],
    );
    repo.write("a.txt", "too  many   spaces\n");
    repo.write("far.txt", "1  x\n2\n3\n4\n5\n6\n7\n8\n9\n");
    repo.add_all();
    repo.write("far.txt", "1  x\n2\n3\n4\n5\n6\n7\n8\n9 WIP\n");
    repo.write("untouched.md", "unrelated  unstaged work\n");
    let run = repo.commit("fixed");
    run.code(0);
    assert!(run.stderr.contains("staged the fixes to"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("untouched.md"),
        "no fixer touched it: {}",
        run.stderr
    );
    assert_eq!(
        repo.read_string("untouched.md"),
        "unrelated  unstaged work\n"
    );
    assert_eq!(repo.show("HEAD:a.txt"), "too many spaces\n");
    assert_eq!(
        repo.show("HEAD:far.txt"),
        "1 x\n2\n3\n4\n5\n6\n7\n8\n9\n",
        "the fix is committed"
    );
    assert_eq!(
        repo.read_string("far.txt"),
        "1 x\n2\n3\n4\n5\n6\n7\n8\n9 WIP\n",
        "WIP kept on top of the fix"
    );
}

#[test]
fn a_fix_colliding_with_unstaged_work_is_rolled_back_and_the_commit_fails() {
    let repo = hooked(FIXER, &[("a.txt", "one two\n")]);
    repo.write("a.txt", "one  two\n");
    repo.git(&["add", "a.txt"]);
    repo.write("a.txt", "one  two  and my unstaged work\n");
    let run = repo.commit("collides");
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("collided with your unstaged changes"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("a.txt"));
    assert_eq!(
        repo.read_string("a.txt"),
        "one  two  and my unstaged work\n",
        "the work is back"
    );
    assert_eq!(
        repo.show(":a.txt"),
        "one  two\n",
        "the index is as it was before the hook"
    );
    assert_eq!(
        repo.show("HEAD:a.txt"),
        "one two\n",
        "nothing was committed"
    );
}

#[test]
fn a_killed_hook_loses_nothing_and_the_next_run_restores() {
    // The step kills preflight itself while the unstaged work is set aside. Its parent may
    // be the observer rather than preflight: the test hands it preflight's process id.
    let handed = tempfile::tempdir().unwrap();
    let pid_file = handed.path().join("pid");
    let config = format!(
        "[steps.die]\nrun = \"i=0; while [ ! -s '{pid}' ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; kill -9 $(cat '{pid}'); sleep 5\"\nfiles = [\"*.txt\"]\n[hooks]\npre-commit = [\"die\"]\n",
        pid = pid_file.display()
    );
    let repo = hooked(
        "[steps.die]\nrun = \"true\"\n[hooks]\npre-commit = [\"die\"]\n",
        &[("a.txt", "base\n")],
    );
    repo.write("preflight.toml", &config);
    repo.write("a.txt", "staged\n");
    repo.add_all();
    repo.write("a.txt", "staged\nand unstaged work\n");
    // Run directly, as git would without the shim (which repairs a kill itself).
    let hook = repo
        .cmd()
        .args(["hook", "pre-commit"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let written = handed.path().join("pid.new");
    std::fs::write(&written, hook.id().to_string()).unwrap();
    std::fs::rename(&written, &pid_file).unwrap();
    let run = Run::from(hook.wait_with_output().unwrap());
    assert_ne!(run.code, 0);
    assert_eq!(
        repo.read_string("a.txt"),
        "staged\n",
        "the work tree was left at the staged version"
    );
    let saved: Vec<_> = std::fs::read_dir(repo.path().join(".git/preflight/unstaged"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(saved.len(), 1, "the unstaged work is on disk");
    assert_eq!(
        std::fs::read(saved[0].join("work/a.txt")).unwrap(),
        b"staged\nand unstaged work\n",
        "byte for byte, under work/ by path"
    );

    let next = repo.run(&["install", "--check"]);
    assert!(
        next.stderr.contains("they are back in the work tree"),
        "{}",
        next.stderr
    );
    assert_eq!(repo.read_string("a.txt"), "staged\nand unstaged work\n");
    assert_eq!(repo.show(":a.txt"), "staged\n");
}

#[test]
fn hostile_staged_names_reach_the_step_intact() {
    let config = "[steps.names]\nrun = \"printf '%s\\\\0' {files} > .git/names\"\nfiles = [\"*.txt\"]\n[hooks]\npre-commit = [\"names\"]\n";
    let repo = hooked(config, &[("base.txt", "x")]);
    let names = [
        "-x.txt",
        "a b.txt",
        "ü.txt",
        "it's.txt",
        "new\nline.txt",
        "$(touch pwned).txt",
    ];
    for n in names {
        repo.write(n, "x");
    }
    repo.add_all();
    repo.commit("names").code(0);
    let mut got: Vec<String> = std::fs::read_to_string(repo.path().join(".git/names"))
        .unwrap()
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    got.sort();
    let mut want: Vec<String> = names
        .iter()
        .map(|n| {
            if n.starts_with('-') {
                format!("./{n}")
            } else {
                n.to_string()
            }
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
    assert!(!repo.path().join("pwned").exists());
}

#[test]
fn symlinks_and_submodules_are_handled() {
    let sub = hooked(
        "[steps.a]\nrun = \"true\"\n[hooks]\npre-commit = [\"a\"]\n",
        &[("lib.txt", "x")],
    );
    let repo = hooked(RECORD, &[("a.txt", "x")]);
    seen(&repo);
    std::os::unix::fs::symlink("a.txt", repo.path().join("link.txt")).unwrap();
    repo.git(&["add", "link.txt"]);
    repo.git(&[
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        sub.path().to_str().unwrap(),
        "vendor/sub",
    ]);
    repo.commit("link and submodule").code(0);
    let got = seen(&repo);
    assert!(got.contains(&"link.txt".to_string()), "{got:?}");
    assert!(
        !got.iter().any(|p| p == "vendor/sub"),
        "a submodule is not a file: {got:?}"
    );

    // Inside the submodule, install writes into its own git dir's hooks folder.
    let inner = repo.path().join("vendor/sub");
    let run = Run::from(
        repo.cmd()
            .current_dir(&inner)
            .arg("install")
            .output()
            .unwrap(),
    );
    run.code(0);
    assert!(
        repo.path()
            .join(".git/modules/vendor/sub/hooks/pre-commit")
            .is_file(),
        "{}",
        run.stdout
    );
}

#[test]
fn a_linked_worktree_runs_the_hooks_installed_in_the_main_one() {
    let repo = hooked(RECORD, &[("a.txt", "x")]);
    seen(&repo);
    let wt = tempfile::tempdir().unwrap();
    let wt_path = wt.path().join("wt");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        "-b",
        "feature",
        wt_path.to_str().unwrap(),
    ]);
    std::fs::write(wt_path.join("b.txt"), "x").unwrap();
    let add = git_command(&wt_path)
        .args(["add", "b.txt"])
        .output()
        .unwrap();
    assert!(add.status.success());
    let commit = Run::from(
        git_command(&wt_path)
            .args(["commit", "-q", "-m", "in worktree"])
            .output()
            .unwrap(),
    );
    commit.code(0);
    let seen_in_wt = std::fs::read_to_string(repo.path().join(".git/worktrees/wt/seen")).unwrap();
    assert_eq!(seen_in_wt, "b.txt\n");
}

#[test]
fn preflight_0_and_preflight_skip_are_honoured_and_said() {
    let config = "[steps.a]\nrun = \"touch .git/a-ran\"\n[steps.b]\nrun = \"touch .git/b-ran\"\n[hooks]\npre-commit = [\"a\", \"b\"]\n";
    let repo = hooked(config, &[]);
    for f in [".git/a-ran", ".git/b-ran"] {
        let _ = std::fs::remove_file(repo.path().join(f));
    }
    repo.write("f.txt", "1");
    repo.add_all();
    let run = Run::from(
        git_command(repo.path())
            .args(["commit", "-q", "-m", "x"])
            .env("PREFLIGHT", "0")
            .output()
            .unwrap(),
    );
    run.code(0);
    assert!(run.stderr.contains("PREFLIGHT=0"), "{}", run.stderr);
    assert!(!repo.path().join(".git/a-ran").exists());

    repo.write("f.txt", "2");
    repo.add_all();
    let run = Run::from(
        git_command(repo.path())
            .args(["commit", "-q", "-m", "y"])
            .env("PREFLIGHT_SKIP", "a")
            .output()
            .unwrap(),
    );
    run.code(0);
    assert!(
        run.stderr.contains("skipped a: skipped by PREFLIGHT_SKIP"),
        "{}",
        run.stderr
    );
    assert!(!repo.path().join(".git/a-ran").exists());
    assert!(repo.path().join(".git/b-ran").exists());
}

#[test]
fn commit_msg_gets_the_message_file() {
    let config = "[steps.ticket]\nrun = \"grep -q '^[A-Z]*-[0-9]' {msg_file}\"\n[hooks]\ncommit-msg = [\"ticket\"]\n";
    let repo = Repo::with_config(config);
    repo.run(&["install"]).code(0);
    repo.write("f.txt", "1");
    repo.add_all();
    assert_eq!(repo.commit("no ticket").code, 1);
    repo.commit("ABC-12 with a ticket").code(0);
}

#[test]
fn a_gui_client_with_a_thin_path_still_finds_preflight() {
    let repo = hooked(RECORD, &[]);
    seen(&repo);
    repo.write("f.txt", "1");
    repo.add_all();
    let git = which_git();
    let run = Run::from(
        git_command(repo.path())
            .args(["commit", "-q", "-m", "gui"])
            .env("PATH", "/usr/bin:/bin")
            .env("GIT_EXEC_PATH", git_exec_path(&git))
            .output()
            .unwrap(),
    );
    run.code(0);
    assert_eq!(seen(&repo), ["f.txt"]);

    // With the remembered binary gone and none on PATH, the shim says what to do.
    let hook = repo.path().join(".git/hooks/pre-commit");
    let text = std::fs::read_to_string(&hook)
        .unwrap()
        .replace(crate::common::BIN, "/nonexistent/preflight");
    std::fs::write(&hook, text).unwrap();
    repo.write("f.txt", "2");
    repo.add_all();
    let run = Run::from(
        git_command(repo.path())
            .args(["commit", "-q", "-m", "gone"])
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("cannot find preflight"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("preflight install"), "{}", run.stderr);
}

fn which_git() -> std::path::PathBuf {
    which::which("git").unwrap()
}

fn git_exec_path(git: &Path) -> String {
    let out = std::process::Command::new(git)
        .arg("--exec-path")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn fixers_on_the_same_files_never_overlap() {
    let config = r#"
[steps.one]
run = "true"
fix = "echo start-one >> .git/log; sleep 0.3; echo end-one >> .git/log"
files = ["*.txt"]
[steps.two]
run = "true"
fix = "echo start-two >> .git/log; sleep 0.3; echo end-two >> .git/log"
files = ["*.txt"]
[steps.other]
run = "true"
fix = "echo start-other >> .git/log; sleep 0.3; echo end-other >> .git/log"
files = ["*.md"]
"#;
    let repo = Repo::with_config(config);
    repo.write("a.txt", "x");
    repo.write("a.md", "x");
    repo.add_all();
    repo.run(&["run", "--fix", "-j", "3"]).code(0);
    let log = repo.read_string(".git/log");
    let lines: Vec<&str> = log.lines().collect();
    let pos = |s: &str| lines.iter().position(|l| *l == s).unwrap();
    assert!(
        pos("end-one") < pos("start-two") || pos("end-two") < pos("start-one"),
        "{log}"
    );
    assert!(
        pos("start-other") < pos("end-one"),
        "a fixer on other files runs alongside: {log}"
    );
}

#[test]
fn a_step_without_files_sees_the_whole_tree_as_staged() {
    let config =
        "[steps.whole]\nrun = \"cat b.txt > .git/b-seen\"\n[hooks]\npre-commit = [\"whole\"]\n";
    let repo = hooked(config, &[("a.txt", "a\n"), ("b.txt", "b committed\n")]);
    repo.write("a.txt", "a staged\n");
    repo.git(&["add", "a.txt"]);
    repo.write("b.txt", "b WIP, never staged\n");
    repo.commit("whole tree").code(0);
    assert_eq!(
        repo.read_string(".git/b-seen"),
        "b committed\n",
        "the step saw the tree being committed"
    );
    assert_eq!(repo.read_string("b.txt"), "b WIP, never staged\n");
}

#[test]
fn post_checkout_and_post_merge_get_the_files_that_changed() {
    let config = "[steps.record]\nrun = \"printf '%s\\\\n' {files} >> \\\"$(git rev-parse --git-dir)/seen\\\"\"\nfiles = [\"*\"]\n[hooks]\npost-checkout = [\"record\"]\npost-merge = [\"record\"]\n";
    let repo = hooked(config, &[("a.txt", "1"), ("b.txt", "1")]);
    repo.git(&["checkout", "-q", "-b", "side"]);
    seen(&repo);
    repo.write("b.txt", "2");
    repo.write("c.txt", "new");
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "side"]);
    repo.git(&["checkout", "-q", "main"]);
    // Back on main: b.txt differs from `side`; c.txt is not on main, so there is nothing to check.
    assert_eq!(seen(&repo), ["b.txt"]);
    repo.git(&["merge", "-q", "--ff-only", "side"]);
    assert_eq!(seen(&repo), ["b.txt", "c.txt"]);
}
