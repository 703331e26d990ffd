//! The user's work survives a pre-commit run whatever happens: untracked files where tracked
//! paths used to be, clean filters, merges in progress, panics, kills and full disks. Every
//! check compares exact bytes, modes and symlink targets of the whole work tree, and the index.

use crate::common::{BIN, Repo, Run, bytes_path, git_command};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Everything in the work tree (outside `.git`): path → (kind, mode, SHA-256 or link target).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if rel == Path::new(".git") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let kind = meta.file_type();
            if kind.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(rel, format!("link {}", target.display()));
            } else if kind.is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &path, out);
            } else {
                let mode = meta.permissions().mode() & 0o777;
                let digest = crate::common::sha256_hex(&std::fs::read(&path).unwrap());
                out.insert(rel, format!("file {mode:o} {digest}"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The index: every entry with its mode, blob and stage, and which are intent-to-add.
fn index_of(repo: &Repo) -> String {
    let entries = repo.git(&["ls-files", "-s", "-z"]).stdout;
    let ita = repo
        .git(&["diff", "--name-only", "--diff-filter=A", "-z"])
        .stdout;
    format!(
        "{}\nintent-to-add: {}",
        String::from_utf8_lossy(&entries),
        String::from_utf8_lossy(&ita)
    )
}

#[track_caller]
fn assert_same(before: &BTreeMap<PathBuf, String>, after: &BTreeMap<PathBuf, String>) {
    let mut diffs = Vec::new();
    for (path, was) in before {
        match after.get(path) {
            Some(now) if now == was => {}
            now => diffs.push(format!("{}: was {was}, now {now:?}", path.display())),
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        diffs.push(format!("{}: new", path.display()));
    }
    assert!(
        diffs.is_empty(),
        "the work tree changed:\n{}",
        diffs.join("\n")
    );
}

fn backups(repo: &Repo) -> Vec<PathBuf> {
    std::fs::read_dir(repo.path().join(".git/preflight/unstaged"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// A repository with `config` and a first commit of `files`, hooks installed.
fn committed(config: &str, files: &[(&str, &str)]) -> Repo {
    let repo = Repo::with_config(config);
    for (path, text) in files {
        repo.write(path, text);
    }
    repo.run(&["install"]).code(0);
    repo.add_all();
    repo.commit("initial").code(0);
    repo
}

const WHOLE_TREE: &str = r#"
[steps.check]
run = "cat utils.py lib/x.py > \"$(git rev-parse --git-dir)/seen\""
[hooks]
pre-commit = ["check"]
"#;

#[test]
fn untracked_files_where_tracked_paths_used_to_be_are_kept() {
    let repo = committed(
        WHOLE_TREE,
        &[
            ("a.txt", "a\n"),
            ("utils.py", "def old(): ...\n"),
            ("lib/x.py", "x = 1\n"),
            ("target.txt", "t\n"),
        ],
    );
    std::os::unix::fs::symlink("target.txt", repo.path().join("link")).unwrap();
    repo.git(&["add", "link"]);
    repo.commit("a link").code(0);

    repo.write("a.txt", "a\na2\n");
    repo.git(&["add", "a.txt"]);
    // A tracked file became a folder of untracked files.
    std::fs::remove_file(repo.path().join("utils.py")).unwrap();
    repo.write("utils.py/__init__.py", "def precious(): ...\n");
    // A tracked folder became an untracked file.
    std::fs::remove_dir_all(repo.path().join("lib")).unwrap();
    repo.write("lib", "an untracked file where a folder was\n");
    // A tracked symlink became a folder with untracked files.
    std::fs::remove_file(repo.path().join("link")).unwrap();
    repo.write("link/notes.md", "precious notes\n");
    let before = snapshot(repo.path());

    repo.commit("x").code(0);
    assert_eq!(
        repo.read_string(".git/seen"),
        "def old(): ...\nx = 1\n",
        "the step saw the staged tree"
    );
    assert_eq!(repo.show("HEAD:a.txt"), "a\na2\n");
    assert_same(&before, &snapshot(repo.path()));
    assert!(backups(&repo).is_empty(), "{:?}", backups(&repo));
}

#[test]
fn clean_filters_and_line_endings_do_not_change_unstaged_bytes() {
    let repo = committed(
        "[steps.check]\nrun = \"true\"\n[hooks]\npre-commit = [\"check\"]\n",
        &[
            (".gitattributes", "*.nb filter=strip\n*.txt eol=crlf\n"),
            ("nb.nb", "cell 1\n"),
            ("staged.md", "s\n"),
            ("c.txt", "one\r\n"),
        ],
    );
    repo.git(&["config", "filter.strip.clean", "grep -v '^OUTPUT:'"]);
    repo.git(&["config", "filter.strip.smudge", "cat"]);
    repo.write("staged.md", "s2\n");
    repo.git(&["add", "staged.md"]);
    repo.write("nb.nb", "cell 1\nOUTPUT: 42\ncell 2\nOUTPUT: 43\n");
    repo.write("c.txt", "one\r\ntwo in LF\n");
    let before = snapshot(repo.path());

    repo.commit("filters").code(0);
    assert_same(&before, &snapshot(repo.path()));
    assert_eq!(
        repo.read_string("nb.nb"),
        "cell 1\nOUTPUT: 42\ncell 2\nOUTPUT: 43\n"
    );
    assert_eq!(repo.read_string("c.txt"), "one\r\ntwo in LF\n");
}

#[test]
fn odd_names_modes_links_and_deletions_come_back_exactly() {
    let repo = committed(
        "[steps.check]\nrun = \"true\"\n[hooks]\npre-commit = [\"check\"]\n",
        &[
            ("a.txt", "a\n"),
            ("run.sh", "echo hi\n"),
            ("gone.txt", "deleted in the work tree only\n"),
            ("sp ace\nnew line.txt", "odd\n"),
            ("deep/er/file.txt", "deep\n"),
        ],
    );
    let odd = bytes_path(b"caf\xe9.txt");
    std::fs::write(repo.path().join(&odd), "latin-1 name\n").unwrap();
    std::os::unix::fs::symlink("a.txt", repo.path().join("ln")).unwrap();
    repo.add_all();
    repo.commit("more").code(0);

    repo.write("a.txt", "a staged\n");
    repo.git(&["add", "a.txt"]);
    std::fs::set_permissions(
        repo.path().join("run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::remove_file(repo.path().join("gone.txt")).unwrap();
    std::fs::remove_dir_all(repo.path().join("deep")).unwrap();
    repo.write("sp ace\nnew line.txt", "odd, edited\n");
    std::fs::write(repo.path().join(&odd), b"edited \xff bytes").unwrap();
    std::fs::remove_file(repo.path().join("ln")).unwrap();
    std::os::unix::fs::symlink("elsewhere", repo.path().join("ln")).unwrap();
    repo.write("untracked/new.txt", "new\n");
    repo.write("later.txt", "intent to add\n");
    repo.git(&["add", "-N", "later.txt"]);
    let before = snapshot(repo.path());
    let index_before = index_of(&repo);
    let staged_a = repo.show(":a.txt");

    repo.commit("odd").code(0);
    assert_same(&before, &snapshot(repo.path()));
    assert_eq!(repo.show("HEAD:a.txt"), staged_a);
    let index_now = index_of(&repo);
    assert!(
        index_now.contains("later.txt"),
        "still intent-to-add: {index_now}\nwas: {index_before}"
    );
    assert!(backups(&repo).is_empty());
}

#[test]
fn a_merge_with_conflicts_is_refused_and_nothing_is_staged() {
    let config = "[steps.trim]\nrun = \"true\"\nfix = \"sed -i 's/  */ /g' {files}\"\nfiles = [\"*.txt\"]\n[hooks]\npre-commit = { steps = [\"trim\"], fix = true }\n";
    let repo = committed(config, &[("a.txt", "base\n")]);
    repo.git(&["checkout", "-q", "-b", "other"]);
    repo.write("a.txt", "theirs\n");
    repo.git(&["commit", "-q", "-am", "theirs", "--no-verify"]);
    repo.git(&["checkout", "-q", "main"]);
    repo.write("a.txt", "ours\n");
    repo.git(&["commit", "-q", "-am", "ours", "--no-verify"]);
    let merge = repo.git_run(&["merge", "-q", "other"]);
    assert_ne!(merge.code, 0, "the merge conflicts");
    let index_before = index_of(&repo);
    let before = snapshot(repo.path());

    for config_fix in [true, false] {
        if !config_fix {
            std::fs::write(
                repo.path().join("preflight.toml"),
                "[steps.check]\nrun = \"true\"\n[hooks]\npre-commit = [\"check\"]\n",
            )
            .unwrap();
        }
        let run = repo.run(&["hook", "pre-commit"]);
        // The repository is not in a state to check: an environment error.
        assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("a.txt has unresolved merge conflicts"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("git add"), "{}", run.stderr);
        assert!(!run.stderr.contains("write-tree"), "{}", run.stderr);
        assert_eq!(index_of(&repo), index_before, "the conflict is still there");
    }
    std::fs::write(
        repo.path().join("preflight.toml"),
        std::fs::read(repo.path().join("preflight.toml")).unwrap(),
    )
    .unwrap();
    let after = snapshot(repo.path());
    assert_eq!(
        before.get(Path::new("a.txt")),
        after.get(Path::new("a.txt"))
    );
}

/// A repository in the middle of a partial commit, with a fixer: everything the set-aside
/// must keep. `fix.txt` is fully staged and the fixer changes it; the rest is the user's.
fn partial_commit_with_fixer() -> Repo {
    let config = r#"
[steps.trim]
run = "true"
fix = "sed -i 's/  */ /g' {files}; [ -z \"$DIE_IN_STEP\" ] || kill -9 $PPID"
files = ["fix.txt"]
[steps.whole]
run = "true"
[hooks]
pre-commit = { steps = ["trim", "whole"], fix = true }
"#;
    let repo = committed(
        config,
        &[
            ("a.txt", "1\n2\n3\n4\n5\n6\n7\n8\n"),
            ("fix.txt", "fine\n"),
            ("utils.py", "tracked\n"),
            ("run.sh", "echo\n"),
            ("gone.txt", "g\n"),
        ],
    );
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    repo.write("big.bin", &big);
    repo.add_all();
    repo.commit("big").code(0);

    repo.write("a.txt", "1 staged\n2\n3\n4\n5\n6\n7\n8\n");
    repo.write("fix.txt", "needs  a   fix\n");
    repo.git(&["add", "a.txt", "fix.txt"]);
    repo.write("a.txt", "1 staged\n2\n3\n4\n5\n6\n7\n8 unstaged\n");
    let mut big2 = big.clone();
    big2.reverse();
    repo.write("big.bin", &big2);
    std::fs::remove_file(repo.path().join("utils.py")).unwrap();
    repo.write("utils.py/__init__.py", "precious\n");
    std::fs::set_permissions(
        repo.path().join("run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::remove_file(repo.path().join("gone.txt")).unwrap();
    repo.write("untracked.txt", "untracked\n");
    repo.write("later.txt", "ita\n");
    repo.git(&["add", "-N", "later.txt"]);
    repo
}

/// Runs the pre-commit hook directly (no shim, so nothing repairs a kill but the next command).
fn hook_with(repo: &Repo, env: &[(&str, &str)]) -> Run {
    let mut cmd = repo.cmd();
    cmd.args(["hook", "pre-commit"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().unwrap())
}

/// After a fault: the work tree and the index are exactly as before (the fixer's own edit to
/// the fully staged `fix.txt` may stay, unstaged), with at most `preflight recover` run.
#[track_caller]
fn assert_nothing_lost(repo: &Repo, before: &BTreeMap<PathBuf, String>, index_before: &str) {
    let mut now = snapshot(repo.path());
    let mut expected = before.clone();
    expected.remove(Path::new("fix.txt"));
    let fix = now.remove(Path::new("fix.txt"));
    assert!(fix.is_some());
    assert_same(&expected, &now);
    assert_eq!(index_of(repo), index_before, "the index is as it was");
    assert!(backups(repo).is_empty(), "{:?}", backups(repo));
}

/// One cell of the fault matrix: a fault at `phase` of kind `kind`, then (if the run did not
/// put everything back itself) the recovery command it printed, or the next command.
fn fault_case(phase: &str, kind: &str) {
    let repo = partial_commit_with_fixer();
    let before = snapshot(repo.path());
    let index_before = index_of(&repo);
    let spec = format!("{phase}:{kind}");
    let env: Vec<(&str, &str)> = if phase == "step" {
        vec![("DIE_IN_STEP", "1")]
    } else {
        vec![("PREFLIGHT_TEST_FAULT", spec.as_str())]
    };
    let run = hook_with(&repo, &env);
    let context = format!("{spec}: exit {}\n{}\n{}", run.code, run.stdout, run.stderr);
    assert_ne!(run.code, 0, "{context}");
    match kind {
        "kill" => assert_eq!(run.code, -1, "{context}"),
        "panic" => assert_eq!(run.code, 101, "{context}"),
        // A full disk is an I/O error, whichever phase it hits.
        _ => assert_eq!(run.code, 4, "{context}"),
    }
    if run.stderr.contains("preflight recover") {
        let recover = repo.run(&["recover"]);
        assert_eq!(recover.code, 0, "{context}\n{}", recover.stderr);
    } else if kind == "kill" {
        // No message from a killed process: the next command puts the work back.
        let next = repo.run(&["doctor"]);
        assert!(
            next.stderr.contains("they are back in the work tree") || backups(&repo).is_empty(),
            "{context}\n{}",
            next.stderr
        );
    }
    assert_nothing_lost(&repo, &before, &index_before);
    // And the commit goes through once nothing gets in the way.
    let ok = hook_with(&repo, &[]);
    assert_eq!(ok.code, 0, "{context}\n{}", ok.stderr);
}

#[test]
fn fault_matrix_kill_at_each_phase() {
    for phase in ["saved", "set-aside", "step", "restore", "restage"] {
        fault_case(phase, "kill");
    }
}

#[test]
fn fault_matrix_full_disk_at_each_phase() {
    for phase in ["saved", "set-aside", "restore", "restage"] {
        fault_case(phase, "enospc");
    }
}

#[test]
fn fault_matrix_panic_at_each_phase() {
    for phase in ["saved", "set-aside", "restore", "restage"] {
        fault_case(phase, "panic");
    }
}

#[test]
fn a_hook_killed_through_git_is_repaired_by_the_shim() {
    let repo = partial_commit_with_fixer();
    let before = snapshot(repo.path());
    let index_before = index_of(&repo);
    let run = Run::from(
        git_command(repo.path())
            .args(["commit", "-q", "-m", "killed"])
            .env("DIE_IN_STEP", "1")
            .output()
            .unwrap(),
    );
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("they are back in the work tree"),
        "{}",
        run.stderr
    );
    assert_nothing_lost(&repo, &before, &index_before);
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("preflight-tmpfs")
            .tempdir()
            .unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "this test fills a small tmpfs and needs root to mount one: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_step_that_fills_the_disk_loses_nothing_and_the_printed_command_recovers() {
    let disk = Tmpfs::new("3m");
    let root = disk.dir.path().join("repo");
    std::fs::create_dir(&root).unwrap();
    let git = |args: &[&str]| {
        let out = git_command(&root).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q", "-b", "main"]);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 253) as u8).collect();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    std::fs::write(root.join("a.txt"), "a\n").unwrap();
    std::fs::write(
        root.join("preflight.toml"),
        "[steps.fill]\nrun = \"cat /dev/zero > .git/fill 2>/dev/null; true\"\n[hooks]\npre-commit = [\"fill\"]\n",
    )
    .unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "initial"]);
    std::fs::write(root.join("a.txt"), "a\nstaged\n").unwrap();
    git(&["add", "a.txt"]);
    std::fs::write(root.join("a.txt"), "a\nstaged\nunstaged\n").unwrap();
    let mut big2 = big.clone();
    big2.reverse();
    std::fs::write(root.join("big.bin"), &big2).unwrap();
    let before = snapshot(&root);

    let cmd = |args: &[&str]| {
        Run::from(
            std::process::Command::new(BIN)
                .current_dir(&root)
                .args(args)
                .env("NO_COLOR", "1")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("PREFLIGHT_CACHE_DIR", root.join(".git/preflight-cache"))
                .env_remove("PREFLIGHT_TEST_FAULT")
                .output()
                .unwrap(),
        )
    };
    let run = cmd(&["hook", "pre-commit"]);
    assert_ne!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("preflight recover"),
        "the error says how to recover: {}",
        run.stderr
    );
    // Whatever was put back or not, no file is half written.
    for (path, bytes) in [("big.bin", &big2), ("big.bin", &big)] {
        let now = std::fs::read(root.join(path)).unwrap_or_default();
        if now.len() == bytes.len() {
            assert!(
                now == big || now == big2,
                "big.bin is one version or the other"
            );
        }
    }
    std::fs::remove_file(root.join(".git/fill")).unwrap();
    let recover = cmd(&["recover"]);
    recover.code(0);
    assert_same(&before, &snapshot(&root));
    let out = git_command(&root)
        .args(["show", ":a.txt"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"a\nstaged\n", "the index is as it was");
}

#[test]
fn fixers_report_only_files_whose_bytes_they_changed() {
    let config = "[steps.trim]\nrun = \"true\"\nfix = \"sed -i 's/  */ /g' {files}\"\nfiles = [\"*.txt\"]\n[hooks]\npre-commit = { steps = [\"trim\"], fix = true }\n";
    let repo = committed(
        config,
        &[("a.txt", "a\n"), ("mine.txt", "m\n"), ("ok.txt", "o\n")],
    );
    repo.write("a.txt", "a  b\n");
    // Staged, and rewritten by the fixer with the very same bytes.
    repo.write("ok.txt", "nothing to fix\n");
    repo.git(&["add", "a.txt", "ok.txt"]);
    // The user's own unstaged edit to a file the fixer is not given.
    repo.write("mine.txt", "my  own   spacing\n");
    let run = repo.commit("fix");
    run.code(0);
    assert!(
        run.stderr.contains("staged the fixes to a.txt"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("mine.txt"), "{}", run.stderr);
    assert!(!run.stderr.contains("ok.txt"), "{}", run.stderr);
    assert_eq!(repo.read_string("mine.txt"), "my  own   spacing\n");
    assert_eq!(repo.show("HEAD:a.txt"), "a b\n");
}

/// Keeps the names used above honest: a path with non-UTF-8 bytes is a real file name here.
#[test]
fn the_snapshot_sees_non_utf8_names() {
    let repo = Repo::new();
    std::fs::write(repo.path().join(bytes_path(b"x\xff")), "x").unwrap();
    let snap = snapshot(repo.path());
    assert!(snap.keys().any(|p| p.as_os_str().as_bytes() == b"x\xff"));
}

#[test]
fn an_only_path_commit_leaves_the_fix_in_the_real_index_too() {
    let config = "[steps.trim]\nrun = \"true\"\nfix = \"sed -i 's/  */ /g' {files}\"\nfiles = [\"*.txt\"]\n[hooks]\npre-commit = { steps = [\"trim\"], fix = true }\n";
    let repo = committed(config, &[("a.txt", "a\n"), ("b.txt", "b\n")]);
    repo.write("a.txt", "a  fixed\n");
    repo.write("b.txt", "b staged, not in this commit\n");
    repo.git(&["add", "b.txt"]);
    let run = repo.git_run(&["commit", "-q", "-m", "only a", "a.txt"]);
    run.code(0);
    assert!(
        run.stderr.contains("staged the fixes to a.txt"),
        "{}",
        run.stderr
    );
    assert_eq!(repo.show("HEAD:a.txt"), "a fixed\n");
    assert_eq!(
        repo.show(":a.txt"),
        "a fixed\n",
        "the real index has the fix"
    );
    assert_eq!(repo.read_string("a.txt"), "a fixed\n");
    assert_eq!(repo.show(":b.txt"), "b staged, not in this commit\n");
    let status = String::from_utf8(repo.git(&["status", "--porcelain"]).stdout).unwrap();
    assert_eq!(status, "M  b.txt\n", "only b.txt is still staged");
}

#[test]
fn fixes_after_a_failed_check_are_not_said_to_be_outside_the_commit() {
    let config = "[steps.trim]\nrun = \"true\"\nfix = \"sed -i 's/  */ /g' {files}\"\nfiles = [\"*.txt\"]\n[steps.fail]\nrun = \"false\"\nfiles = [\"*.txt\"]\n[hooks]\npre-commit = { steps = [\"trim\", \"fail\"], fix = true }\n";
    let repo = committed(
        "[steps.ok]\nrun = \"true\"\n[hooks]\npre-commit = [\"ok\"]\n",
        &[("a.txt", "a\n")],
    );
    repo.write("preflight.toml", config);
    repo.write("a.txt", "a  b\n");
    repo.add_all();
    let run = repo.commit("fails");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "fixers changed a.txt, and the commit stopped, so the edits are left unstaged"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(repo.show(":a.txt"), "a  b\n", "nothing staged");
    assert_eq!(repo.read_string("a.txt"), "a b\n");
}

#[test]
fn a_linked_worktree_and_a_sparse_checkout_keep_their_work() {
    let repo = committed(
        WHOLE_TREE,
        &[
            ("a.txt", "a\n"),
            ("utils.py", "u\n"),
            ("lib/x.py", "x\n"),
            ("far/away.txt", "outside the sparse cone\n"),
        ],
    );
    let linked = tempfile::Builder::new()
        .prefix("preflight-linked")
        .tempdir()
        .unwrap();
    let tree = linked.path().join("wt");
    repo.git(&[
        "worktree",
        "add",
        "-q",
        tree.to_str().unwrap(),
        "-b",
        "side",
    ]);
    let git = |args: &[&str]| {
        let out = git_command(&tree).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["sparse-checkout", "set", "--no-cone", "/*", "!/far/"]);
    assert!(
        !tree.join("far").exists(),
        "far/ is outside the sparse checkout"
    );
    std::fs::write(tree.join("a.txt"), "a\nstaged\n").unwrap();
    git(&["add", "a.txt"]);
    std::fs::write(tree.join("a.txt"), "a\nstaged\nunstaged\n").unwrap();
    std::fs::remove_file(tree.join("utils.py")).unwrap();
    std::fs::create_dir(tree.join("utils.py")).unwrap();
    std::fs::write(tree.join("utils.py/__init__.py"), "precious\n").unwrap();
    let before = snapshot(&tree);

    let run = Run::from(
        git_command(&tree)
            .args(["commit", "-q", "-m", "in the linked worktree"])
            .output()
            .unwrap(),
    );
    run.code(0);
    assert_same(&before, &snapshot(&tree));
    let out = git_command(&tree)
        .args(["show", "HEAD:a.txt"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"a\nstaged\n");
    assert!(
        !tree.join("far").exists(),
        "the sparse checkout is untouched"
    );
    let backups = repo.path().join(".git/worktrees/wt/preflight/unstaged");
    assert_eq!(
        std::fs::read_dir(&backups).map(|d| d.count()).unwrap_or(0),
        0,
        "the backup lived in the worktree's own git dir and is gone"
    );
}

#[test]
fn a_kill_while_merged_files_are_written_back_is_recovered() {
    let config = "[steps.trim]\nrun = \"true\"\nfix = \"sed -i 's/  */ /g' {files}\"\nfiles = [\"*.txt\"]\n[hooks]\npre-commit = { steps = [\"trim\"], fix = true }\n";
    let repo = committed(
        config,
        &[("a.txt", "1\n2\n3\n4\n5\n6\n7\n8\n"), ("b.txt", "b\n")],
    );
    repo.write("a.txt", "1  fix me\n2\n3\n4\n5\n6\n7\n8\n");
    repo.git(&["add", "a.txt"]);
    repo.write("a.txt", "1  fix me\n2\n3\n4\n5\n6\n7\n8 unstaged\n");
    repo.write("b.txt", "b unstaged\n");
    let index_before = index_of(&repo);
    let run = hook_with(&repo, &[("PREFLIGHT_TEST_FAULT", "restore:kill")]);
    assert_eq!(run.code, -1, "{}", run.stderr);
    let recover = repo.run(&["recover"]);
    assert_eq!(recover.code, 0, "{}", recover.stderr);
    assert_eq!(
        repo.read_string("a.txt"),
        "1 fix me\n2\n3\n4\n5\n6\n7\n8 unstaged\n",
        "the user's work, with the fix merged in"
    );
    assert_eq!(repo.read_string("b.txt"), "b unstaged\n");
    assert_eq!(index_of(&repo), index_before, "nothing was staged");
    assert!(backups(&repo).is_empty());
}
