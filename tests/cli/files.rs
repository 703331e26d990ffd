//! The run's file set, globs, `{files}` expansion, hostile names and batching.

use crate::common::{Repo, bytes_path, git_command};
use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;

/// Names that break naive tools: options, spaces, quotes, shell syntax, newlines, non-UTF-8.
fn hostile_names() -> Vec<Vec<u8>> {
    vec![
        b"-x.txt".to_vec(),
        b"--help.txt".to_vec(),
        b"a b.txt".to_vec(),
        "ü.txt".as_bytes().to_vec(),
        b"$(touch pwned).txt".to_vec(),
        b"it's \"quoted\".txt".to_vec(),
        b"semi;colon&amp.txt".to_vec(),
        b"new\nline.txt".to_vec(),
        b"sub dir/*.txt".to_vec(),
        b"bad-\xff\xfe.txt".to_vec(),
    ]
}

/// Reads NUL-separated names written by `printf '%s\0'`.
fn nul_list(bytes: &[u8]) -> BTreeSet<Vec<u8>> {
    bytes
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn expected(names: &[Vec<u8>]) -> BTreeSet<Vec<u8>> {
    names
        .iter()
        .map(|n| {
            if n.starts_with(b"-") {
                [b"./", n.as_slice()].concat()
            } else {
                n.clone()
            }
        })
        .collect()
}

#[test]
fn hostile_names_reach_a_shell_command_intact() {
    let repo = Repo::with_config(
        "[steps.names]\nrun = \"printf '%s\\\\0' {files} > ../names.out\"\nfiles = [\"*.txt\"]\ndir = \"d\"\n",
    );
    let names = hostile_names();
    for n in &names {
        repo.write(bytes_path(&[b"d/", n.as_slice()].concat()), "x");
    }
    repo.add_all();
    repo.run(&["run"]).code(0);
    assert_eq!(nul_list(&repo.read("names.out")), expected(&names));
    assert!(!repo.path().join("d/pwned").exists() && !repo.path().join("pwned").exists());
}

#[test]
fn hostile_names_reach_an_argv_command_intact() {
    let repo = Repo::with_config(
        "[steps.names]\nrun = [\"sh\", \"-c\", \"printf '%s\\\\0' \\\"$@\\\" > names.out\", \"sh\", \"{files}\"]\nfiles = [\"*.txt\"]\n",
    );
    let names = hostile_names();
    for n in &names {
        repo.write(bytes_path(n), "x");
    }
    repo.add_all();
    repo.run(&["run"]).code(0);
    assert_eq!(nul_list(&repo.read("names.out")), expected(&names));
}

#[test]
fn five_thousand_files_are_batched_and_each_is_passed_once() {
    let repo = Repo::with_config(
        "[steps.count]\nrun = \"echo batch >> batches.out; printf '%s\\\\n' {files} >> files.out\"\nfiles = [\"*.txt\"]\n",
    );
    let names: Vec<String> = (0..5000)
        .map(|i| {
            format!(
                "folder-{:02}/a-rather-long-file-name-to-fill-batches-{i:05}.txt",
                i % 50
            )
        })
        .collect();
    for n in &names {
        repo.write(n, "");
    }
    repo.add_all();
    repo.run(&["run"]).code(0);
    let out = String::from_utf8(repo.read("files.out")).unwrap();
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), 5000, "every file exactly once");
    let unique: BTreeSet<&str> = got.iter().copied().collect();
    assert_eq!(unique, names.iter().map(String::as_str).collect());
    let batches = String::from_utf8(repo.read("batches.out"))
        .unwrap()
        .lines()
        .count();
    assert!(
        batches > 1,
        "5,000 long names must not fit one command line"
    );
}

#[test]
fn globs_select_files_and_a_step_with_none_is_skipped() {
    let repo = Repo::with_config(
        r#"
[steps.rust]
run = "printf '%s\n' {files} > rust.out"
files = ["*.rs"]
exclude = ["vendor/"]
[steps.bin]
run = "printf '%s\n' {files} > bin.out"
files = ["bin/*"]
[steps.python]
run = "touch python-ran"
files = ["*.py"]
[steps.after-python]
run = "touch after-python-ran"
needs = ["python"]
"#,
    );
    for f in [
        "main.rs",
        "src/lib.rs",
        "vendor/dep/x.rs",
        "bin/tool",
        "bin/sub/deep",
        "README.md",
    ] {
        repo.write(f, "x");
    }
    repo.write("untracked.rs", "x");
    repo.add_all();
    repo.git(&["rm", "-q", "--cached", "untracked.rs"]);
    let run = repo.run(&["run"]);
    run.code(0);
    assert_eq!(repo.read("rust.out"), b"main.rs\nsrc/lib.rs\n");
    assert_eq!(repo.read("bin.out"), b"bin/tool\n");
    assert_eq!(run.status_of("python"), "skipped");
    assert!(run.line_of("python").contains("no matching files"));
    assert!(!repo.path().join("python-ran").exists());
    // A skipped step does not hold back the steps that need it.
    assert_eq!(run.status_of("after-python"), "passed");
}

#[test]
fn files_flag_narrows_the_set_relative_to_the_current_folder() {
    let repo = Repo::with_config(
        "[steps.list]\nrun = \"printf '%s\\n' {files} > list.out\"\nfiles = [\"*.txt\"]\n",
    );
    for f in ["a.txt", "src/b.txt", "src/c.txt"] {
        repo.write(f, "x");
    }
    repo.add_all();
    let run = crate::common::Run::from(
        repo.cmd()
            .current_dir(repo.path().join("src"))
            .args(["run", "--files", "b.txt", "../a.txt"])
            .output()
            .unwrap(),
    );
    run.code(0);
    assert_eq!(repo.read("list.out"), b"src/b.txt\na.txt\n");
    let outside = repo.run(&["run", "--files", "/etc/passwd"]);
    outside.code(2);
    assert!(
        outside.stderr.contains("outside the repository"),
        "{}",
        outside.stderr
    );
}

#[test]
fn deleted_tracked_files_are_not_passed() {
    let repo = Repo::with_config(
        "[steps.list]\nrun = \"printf '%s\\n' {files} > list.out\"\nfiles = [\"*.txt\"]\n",
    );
    repo.write("keep.txt", "x");
    repo.write("gone.txt", "x");
    repo.add_all();
    std::fs::remove_file(repo.path().join("gone.txt")).unwrap();
    repo.run(&["run"]).code(0);
    assert_eq!(repo.read("list.out"), b"keep.txt\n");
}

#[test]
fn non_utf8_paths_survive_in_the_file_set() {
    let repo = Repo::with_config(
        "[steps.list]\nrun = \"printf '%s' {files} > list.out\"\nfiles = [\"*.bin\"]\n",
    );
    repo.write(bytes_path(b"\xe9t\xe9.bin"), "x");
    repo.add_all();
    repo.run(&["run"]).code(0);
    assert_eq!(
        repo.read("list.out"),
        bytes_path(b"\xe9t\xe9.bin").as_os_str().as_bytes()
    );
}

/// Scripts as dotfiles repositories hold them: by extension, by name, by `#!` line only.
fn scripts_of_every_kind(repo: &Repo) {
    repo.write("install.sh", "echo install\n");
    repo.write(".bashrc", "alias ll='ls -l'\n");
    repo.write(".aliases", "#!/usr/bin/env bash\nalias g=git\n");
    repo.write(".exports", "export EDITOR=vim\n");
    repo.write("bin/hook", "#!/bin/sh\necho hook\n");
    repo.write("bin/tool", "#!/usr/bin/env python3\nprint(1)\n");
    repo.write("bin/blob", b"\x7fELF\x00\x00".as_slice());
    repo.write(".zshrc", "setopt autocd\n");
    repo.write("notes.txt", "#!/bin/sh is how scripts start\n");
}

fn listed(repo: &Repo, file: &str) -> Vec<String> {
    let mut names: Vec<String> = repo.read_string(file).lines().map(String::from).collect();
    names.sort();
    names
}

#[test]
fn types_pick_scripts_by_extension_name_and_first_line_in_run_and_hooks() {
    let repo = Repo::with_config(
        r#"
[steps.posix]
run = "printf '%s\n' {files} > .git/posix.out"
types = ["sh", "bash"]
[steps.bin-python]
run = "printf '%s\n' {files} > .git/python.out"
files = ["bin/*"]
types = ["python"]
[steps.binary]
run = "printf '%s\n' {files} > .git/binary.out"
types = ["binary"]
exclude = ["notes.txt"]
[hooks]
pre-commit = ["posix"]
"#,
    );
    scripts_of_every_kind(&repo);
    repo.add_all();
    repo.run(&["run"]).code(0);
    assert_eq!(
        listed(&repo, ".git/posix.out"),
        [".aliases", ".bashrc", "bin/hook", "install.sh"]
    );
    assert_eq!(listed(&repo, ".git/python.out"), ["bin/tool"]);
    assert_eq!(listed(&repo, ".git/binary.out"), ["bin/blob"]);

    // The pre-commit hook sees the staged scripts the same way.
    repo.run(&["install"]).code(0);
    repo.commit("scripts").code(0);
    std::fs::remove_file(repo.path().join(".git/posix.out")).unwrap();
    repo.write("bin/new", "#!/bin/dash\necho new\n");
    repo.write("bin/other", "just text\n");
    repo.git(&["add", "bin/new", "bin/other"]);
    repo.commit("more").code(0);
    assert_eq!(listed(&repo, ".git/posix.out"), ["bin/new"]);

    // A commit with no script of those types skips the step.
    std::fs::remove_file(repo.path().join(".git/posix.out")).unwrap();
    repo.write("bin/readme", "plain\n");
    repo.git(&["add", "bin/readme"]);
    repo.commit("plain").code(0);
    assert!(!repo.path().join(".git/posix.out").exists());
}

#[test]
fn an_unknown_type_is_a_config_error_with_a_suggestion() {
    let repo = Repo::with_config("[steps.a]\nrun = \"true\"\ntypes = [\"shel\"]\n");
    let run = repo.run(&["validate"]);
    run.code(2);
    assert!(
        run.stderr.contains("unknown file type `shel` in step `a`")
            && run.stderr.contains("did you mean `shell`?")
            && run
                .stderr
                .contains("the types are: text, binary, executable, shell"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("preflight.toml:3:"), "{}", run.stderr);
}

const SH_RECORDER: &str = r#"
[steps.posix]
run = "printf '%s\n' {files} > .git/posix.out"
types = ["sh"]
[hooks]
pre-commit = ["posix"]
pre-push = ["posix"]
"#;

#[test]
fn types_are_told_from_the_staged_file_not_the_work_tree() {
    let repo = Repo::with_config(SH_RECORDER);
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "config"]);
    repo.run(&["install"]).code(0);
    // Staged: a sh script. In the work tree, unstaged: the #! line is gone.
    repo.write("bin/deploy", "#!/bin/sh\necho deploy\n");
    repo.git(&["add", "bin/deploy"]);
    repo.write("bin/deploy", "echo deploy\n");
    // Staged: plain text. In the work tree, unstaged: a #! line.
    repo.write("bin/notes", "plain\n");
    repo.git(&["add", "bin/notes"]);
    repo.write("bin/notes", "#!/bin/sh\nplain\n");
    repo.commit("scripts").code(0);
    assert_eq!(listed(&repo, ".git/posix.out"), ["bin/deploy"]);
    assert_eq!(
        repo.read_string("bin/deploy"),
        "echo deploy\n",
        "unstaged work kept"
    );
    // `run --staged` judges the same.
    repo.git(&["add", "bin/deploy", "bin/notes"]);
    std::fs::remove_file(repo.path().join(".git/posix.out")).unwrap();
    repo.write("bin/notes", "plain again\n");
    repo.write("bin/deploy", "#!/bin/sh\necho deploy\n");
    repo.run(&["run", "--no-cache", "--staged"]).code(0);
    assert_eq!(listed(&repo, ".git/posix.out"), ["bin/notes"]);
}

#[test]
fn types_are_told_from_the_pushed_commits_not_the_work_tree() {
    let remote = tempfile::tempdir().unwrap();
    let bare = git_command(remote.path())
        .args(["init", "-q", "--bare", "-b", "main"])
        .output()
        .unwrap();
    assert!(bare.status.success());
    // The pushed commit is checked in a checkout of its own: the record goes outside both.
    let out = tempfile::tempdir().unwrap();
    let record = out.path().join("posix.out");
    let config = SH_RECORDER.replace(".git/posix.out", record.to_str().unwrap());
    let repo = Repo::with_config(&config);
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "config"]);
    repo.git(&["remote", "add", "origin", remote.path().to_str().unwrap()]);
    repo.git(&["push", "-q", "origin", "main"]);
    repo.run(&["install"]).code(0);
    // Committed: a sh script. In the work tree, not committed: the #! line is gone.
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("bin/release", "#!/bin/sh\necho release\n");
    repo.git(&["add", "bin/release"]);
    repo.git(&["commit", "-q", "--no-verify", "-m", "release script"]);
    repo.write("bin/release", "echo release\n");
    let push = repo.git_run(&["push", "-q", "origin", "feature"]);
    push.code(0);
    assert!(record.exists(), "{}{}", push.stdout, push.stderr);
    assert_eq!(listed(&repo, record.to_str().unwrap()), ["bin/release"]);
    // `run --from/--to` judges the commits too.
    std::fs::remove_file(&record).unwrap();
    repo.run(&["run", "--no-cache", "--from", "main", "--to", "feature"])
        .code(0);
    assert_eq!(listed(&repo, record.to_str().unwrap()), ["bin/release"]);
}
