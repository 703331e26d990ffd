//! Never commit what no check passed: a check that writes fails, a commit the fixers emptied
//! stops, and the hook judges a commit by the configuration staged with it.

use crate::common::Repo;

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

fn commit_count(repo: &Repo) -> usize {
    String::from_utf8(repo.git(&["rev-list", "--count", "HEAD"]).stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A fixer that strips trailing blanks, bound to pre-commit in fix mode.
const TRIM: &str = r#"
[steps.trim]
run = "! grep -q ' $' {files}"
fix = "sed -i 's/ *$//' {files}"
files = ["*.txt"]
[hooks]
pre-commit = { steps = ["trim"], fix = true }
"#;

#[test]
fn a_commit_that_the_fixers_emptied_is_stopped() {
    let repo = hooked(TRIM, &[("a.txt", "hello\n")]);
    // The only staged change is one the fixer undoes.
    repo.write("a.txt", "hello   \n");
    repo.git(&["add", "a.txt"]);
    let commit = repo.commit("only blanks");
    assert_ne!(commit.code, 0, "{}", commit.stderr);
    assert!(
        commit.stderr.contains("would be empty") && commit.stderr.contains("a.txt"),
        "{}",
        commit.stderr
    );
    assert_eq!(commit_count(&repo), 1, "no empty commit was recorded");
    assert_eq!(repo.read_string("a.txt"), "hello\n");

    // A fix that leaves a real change is committed as before.
    repo.write("a.txt", "hello  \nworld\n");
    repo.git(&["add", "a.txt"]);
    repo.commit("real change").code(0);
    assert_eq!(repo.show("HEAD:a.txt"), "hello\nworld\n");

    // An empty commit the user asks for (nothing staged) is not the hook's business.
    repo.git_run(&["commit", "-q", "--allow-empty", "-m", "marker"])
        .code(0);
    assert_eq!(commit_count(&repo), 3);
}

#[test]
fn a_merge_that_keeps_heads_tree_is_not_refused() {
    let repo = hooked(TRIM, &[("a.txt", "hello\n")]);
    repo.git(&["checkout", "-q", "-b", "side"]);
    repo.write("b.txt", "side\n");
    repo.add_all();
    repo.commit("side").code(0);
    repo.git(&["checkout", "-q", "main"]);
    // Merge keeping main's tree, with a staged change the fixer reverts.
    repo.git(&["merge", "-q", "--no-commit", "-s", "ours", "side"]);
    repo.write("a.txt", "hello \n");
    repo.git(&["add", "a.txt"]);
    repo.commit("merge").code(0);
    assert_eq!(commit_count(&repo), 3, "initial, side, and the merge");
}

/// A check that refuses the word BAD, bound to pre-commit.
const NO_BAD: &str = r#"
[steps.no-bad]
run = "! grep -n BAD {files}"
files = ["*.txt"]
[hooks]
pre-commit = ["no-bad"]
"#;

#[test]
fn the_hook_runs_by_the_staged_config_not_the_work_trees() {
    let repo = hooked(NO_BAD, &[("a.txt", "fine\n")]);

    // A failing step added to the work tree's config but not staged: an unrelated commit
    // is judged by the config it records, which does not have that step.
    repo.write(
        "preflight.toml",
        format!("{NO_BAD}\n[steps.wip]\nrun = \"false\"\n").replace(
            "pre-commit = [\"no-bad\"]",
            "pre-commit = [\"no-bad\", \"wip\"]",
        ),
    );
    repo.write("a.txt", "still fine\n");
    repo.git(&["add", "a.txt"]);
    repo.commit("unrelated").code(0);

    // A check removed from the work tree's config only still guards the commit: the commit
    // still records it.
    repo.write("preflight.toml", "[steps.none]\nrun = \"true\"\n");
    repo.write("a.txt", "BAD\n");
    repo.git(&["add", "a.txt"]);
    let commit = repo.commit("sneaky");
    assert_ne!(commit.code, 0, "{}", commit.stderr);
    assert!(commit.stderr.contains("no-bad"), "{}", commit.stderr);
    assert_eq!(repo.show("HEAD:a.txt"), "still fine\n");

    // Once the change to the config is staged, it is the one that counts.
    repo.git(&["add", "preflight.toml"]);
    repo.commit("drop the check").code(0);
}

#[test]
fn an_error_in_the_staged_config_points_at_the_staged_text() {
    let repo = hooked(NO_BAD, &[("a.txt", "fine\n")]);
    // A typo staged, then fixed in the work tree only: the commit would record the typo.
    let typo = NO_BAD.replace("files = ", "\n\nfils = ");
    repo.write("preflight.toml", &typo);
    repo.git(&["add", "preflight.toml"]);
    repo.write("preflight.toml", NO_BAD);
    let commit = repo.commit("typo");
    assert_ne!(commit.code, 0);
    assert!(
        commit.stderr.contains("--> preflight.toml:6:1 (staged)")
            && commit.stderr.contains("did you mean `files`?"),
        "{}",
        commit.stderr
    );
    // Staging the fix lets the commit through.
    repo.write("a.txt", "more\n");
    repo.git(&["add", "preflight.toml", "a.txt"]);
    repo.commit("fixed").code(0);
}

#[test]
fn a_config_that_is_not_staged_yet_is_used_with_a_warning() {
    let repo = Repo::with_config(NO_BAD);
    repo.run(&["install"]).code(0);
    repo.write("a.txt", "BAD\n");
    repo.git(&["add", "a.txt"]);
    let commit = repo.commit("first");
    assert_ne!(
        commit.code, 0,
        "the work tree's config still guards the commit"
    );
    assert!(
        commit.stderr.contains("preflight.toml is not staged")
            && commit.stderr.contains("git add preflight.toml"),
        "{}",
        commit.stderr
    );
    // Deleted from the work tree but still staged: the staged copy counts.
    repo.git(&["add", "preflight.toml"]);
    std::fs::remove_file(repo.path().join("preflight.toml")).unwrap();
    assert_ne!(repo.commit("second").code, 0);
}

/// A check that rewrites the files it is given.
const SED: &str = r#"
[steps.sloppy]
run = "sed -i 's/foo/bar/' {files}"
files = ["*.txt"]
[hooks]
pre-commit = ["sloppy"]
"#;

#[test]
fn a_check_that_rewrites_staged_files_fails_the_commit() {
    // `sed -i` replaces every file it is given, changed or not: same bytes is no change.
    let repo = hooked(SED, &[("a.txt", "ok\n"), ("b.txt", "ok\n")]);
    repo.write("a.txt", "foo\n");
    repo.write("b.txt", "fine\n");
    repo.git(&["add", "a.txt", "b.txt"]);
    let commit = repo.commit("rewritten");
    assert_ne!(commit.code, 0, "{}", commit.stderr);
    assert!(
        commit.stderr.contains("failed sloppy")
            && commit
                .stderr
                .contains("changed 1 tracked file: a.txt; a check must not write"),
        "{}",
        commit.stderr
    );
    assert_eq!(repo.show("HEAD:a.txt"), "ok\n", "nothing was committed");
    assert_eq!(
        repo.show(":a.txt"),
        "foo\n",
        "the index is as the user staged it"
    );
    assert_eq!(
        repo.read_string("a.txt"),
        "bar\n",
        "the step's edit is left to look at"
    );
}

#[test]
fn a_check_that_puts_the_modification_time_back_still_fails_the_commit() {
    // Staged a while before the commit, so the guard goes by stat data rather than content;
    // the check writes the same size and restores the modification time, not the change time.
    let config = r#"
[steps.sneaky]
run = "if grep -q foo a.txt; then cp -p a.txt .git/a.saved && printf 'bar\\n' > a.txt && touch -r .git/a.saved a.txt; fi"
files = ["*.txt"]
[hooks]
pre-commit = ["sneaky"]
"#;
    let repo = hooked(config, &[("a.txt", "ok\n")]);
    repo.write("a.txt", "foo\n");
    repo.git(&["add", "a.txt"]);
    std::thread::sleep(std::time::Duration::from_millis(600));
    let commit = repo.commit("sneaky");
    assert_ne!(commit.code, 0, "{}", commit.stderr);
    assert!(
        commit
            .stderr
            .contains("changed 1 tracked file: a.txt; a check must not write"),
        "{}",
        commit.stderr
    );
    assert_eq!(repo.show("HEAD:a.txt"), "ok\n", "nothing was committed");
}

#[test]
fn a_check_that_rewrites_tracked_files_fails_in_run_too() {
    let repo = Repo::with_config(SED);
    repo.write("a.txt", "foo\n");
    repo.write("b.txt", "ok\n");
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "initial"]);
    let run = repo.run(&["run"]);
    run.code(1);
    assert!(
        run.line_of("sloppy")
            .contains("changed 1 tracked file: a.txt"),
        "{}",
        run.stdout
    );
    // An unstaged edit counts as well: what changed is judged against the file before the
    // step, not against the index.
    repo.write("b.txt", "foo, unstaged\n");
    let run = repo.run(&["run"]);
    run.code(1);
    assert!(
        run.line_of("sloppy")
            .contains("changed 1 tracked file: b.txt"),
        "{}",
        run.stdout
    );
    // Nothing left to rewrite: it passes.
    repo.run(&["run"]).code(0);
}

#[test]
fn outputs_ignored_and_untracked_files_may_be_written() {
    let repo = Repo::with_config(
        r#"
[steps.gen]
run = "sleep 0.3; echo generated > gen.txt; mkdir -p build; echo x > build/out; echo y > new.txt"
outputs = ["gen.txt"]
[steps.look]
run = "sleep 0.6"
[steps.fmt-check]
run = "true"
fix = "echo fixed > fixed.txt"
files = ["fixed.txt"]
"#,
    );
    repo.write(".gitignore", "build/\n");
    repo.write("gen.txt", "old\n");
    repo.write("fixed.txt", "old\n");
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "initial"]);
    // `look` reads the whole tree while `gen` writes its declared output beside it.
    let run = repo.run(&["run", "-j", "3", "--fix"]);
    run.code(0);
    assert_eq!(repo.read_string("gen.txt"), "generated\n");
    assert_eq!(
        repo.read_string("fixed.txt"),
        "fixed\n",
        "a fixer may write"
    );
}

#[test]
fn a_change_seen_while_other_steps_ran_names_them_all() {
    // The steps meet through files, not sleeps (a loaded machine may start one late): the
    // writer writes once the other two have started, and they end once it has written.
    let wait = crate::common::sh_wait_for_file;
    let wait_for_the_write = |name: &str| format!(": > .git/{name}-up; {}", wait(".git/written"));
    let repo = Repo::with_config(&format!(
        r#"
[steps.writer]
run = "{reader_up}; {elsewhere_up}; echo more >> {{files}}; : > .git/written"
files = ["w.txt"]
[steps.reader]
run = "{reader}"
[steps.elsewhere]
run = "{elsewhere}"
files = ["e.txt"]
"#,
        reader_up = wait(".git/reader-up"),
        elsewhere_up = wait(".git/elsewhere-up"),
        reader = wait_for_the_write("reader"),
        elsewhere = wait_for_the_write("elsewhere"),
    ));
    repo.write("w.txt", "w\n");
    repo.write("e.txt", "e\n");
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "initial"]);
    let run = repo.run(&["run", "-j", "3"]);
    run.code(1);
    let writer = run.line_of("writer");
    assert!(
        writer.contains("1 tracked file changed while it ran: w.txt")
            && writer.contains("at the same time as `reader`, `elsewhere`"),
        "{writer}"
    );
    // The reader saw it too, and is not blamed alone; a step on other files saw nothing.
    assert!(
        run.line_of("reader")
            .contains("at the same time as `writer`, `elsewhere`"),
        "{}",
        run.stdout
    );
    assert_eq!(run.status_of("elsewhere"), "passed");

    // Alone, the writer is named for what it did.
    let run = repo.run(&["run", "-j", "1", "writer"]);
    assert!(
        run.line_of("writer")
            .contains("changed 1 tracked file: w.txt"),
        "{}",
        run.stdout
    );
}

#[test]
fn ruff_fixing_what_it_checks_fails_the_commit() {
    let bin = crate::common::tools::pip("ruff==0.17.6", "ruff");
    let config = format!(
        r#"
[steps.ruff]
run = ["{}", "check", "{{files}}"]
files = ["*.py"]
[hooks]
pre-commit = ["ruff"]
"#,
        bin.join("ruff").display()
    );
    let repo = hooked(
        &config,
        &[
            ("pyproject.toml", "[tool.ruff]\nfix = true\n"),
            ("a.py", "print('hi')\n"),
        ],
    );
    repo.write("a.py", "import os\nprint('hi')\n");
    repo.git(&["add", "a.py"]);
    let commit = repo.commit("unused import");
    assert_ne!(commit.code, 0, "{}", commit.stderr);
    assert!(
        commit.stderr.contains("changed 1 tracked file: a.py"),
        "{}",
        commit.stderr
    );
    assert_eq!(
        repo.show("HEAD:a.py"),
        "print('hi')\n",
        "nothing was committed"
    );
    assert_eq!(
        repo.read_string("a.py"),
        "print('hi')\n",
        "ruff's fix is left to look at"
    );
    // Staged as ruff would have it, the commit goes through.
    repo.git(&["add", "a.py"]);
    repo.write("b.py", "print('b')\n");
    repo.git(&["add", "b.py"]);
    repo.commit("clean").code(0);
}

#[test]
fn a_step_that_reads_the_tree_itself_sees_the_commit_not_unstaged_work() {
    // `files` only says when the step is relevant; the command reads every file itself.
    let repo = hooked(
        r#"
[steps.suite]
run = "grep -q fixed helper.txt"
files = ["*.txt"]
[hooks]
pre-commit = ["suite"]
"#,
        &[("helper.txt", "fixed\n"), ("a.txt", "a\n")],
    );
    // The breakage is committed (skipping the hook); its fix is only in the work tree, and
    // an unrelated file is committed: the suite must judge the commit, not the work tree.
    repo.write("helper.txt", "broken\n");
    repo.git(&["add", "helper.txt"]);
    repo.git(&["commit", "-q", "--no-verify", "-m", "break"]);
    repo.write("helper.txt", "fixed, not staged\n");
    repo.write("a.txt", "a3\n");
    repo.git(&["add", "a.txt"]);
    let commit = repo.commit("judged by the work tree");
    assert_ne!(
        commit.code, 0,
        "the commit records the broken helper.txt: {}",
        commit.stderr
    );
    assert_eq!(
        repo.read_string("helper.txt"),
        "fixed, not staged\n",
        "the unstaged work is back"
    );
}

#[test]
fn the_message_hooks_run_by_the_staged_config_too() {
    let config = r#"
[steps.subject]
run = "grep -q . {msg_file}"
[hooks]
commit-msg = ["subject"]
"#;
    let repo = hooked(config, &[("a.txt", "a\n")]);
    // A rule added to the work tree's config only does not judge this commit's message.
    repo.write(
        "preflight.toml",
        config.replace(
            "run = \"grep -q . {msg_file}\"",
            "run = \"grep -q JIRA- {msg_file}\"",
        ),
    );
    repo.write("a.txt", "b\n");
    repo.git(&["add", "a.txt"]);
    repo.commit("no ticket").code(0);
    // Staged, it does.
    repo.git(&["add", "preflight.toml"]);
    let commit = repo.commit("still no ticket");
    assert_ne!(commit.code, 0, "{}", commit.stderr);
    assert!(commit.stderr.contains("subject"), "{}", commit.stderr);
}

#[test]
fn a_check_in_a_folder_is_watched_on_its_files_by_their_repository_paths() {
    let repo = Repo::with_config(
        r#"
[steps.sub]
run = "sed -i 's/foo/bar/' {files}"
dir = "sub"
files = ["sub/*.txt"]
"#,
    );
    repo.write("sub/a.txt", "foo\n");
    repo.write("a.txt", "foo\n");
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "initial"]);
    let run = repo.run(&["run"]);
    run.code(1);
    assert!(
        run.line_of("sub")
            .contains("changed 1 tracked file: sub/a.txt;"),
        "{}",
        run.stdout
    );
    assert_eq!(repo.read_string("a.txt"), "foo\n");
}

/// Many staged files in a few folders, and a check that writes one of them in `how`. Ways
/// a watch on the folders would not see are among the cases: the check looks at every file.
fn many_files_and_a_check_that(how: &str) -> Repo {
    let config = format!(
        "[steps.sloppy]\nrun = \"{how}; : {{files}}\"\nfiles = [\"many/**\"]\n[hooks]\npre-commit = [\"sloppy\"]\n"
    );
    let files: Vec<(String, String)> = (0..300)
        .map(|i| {
            (
                format!("many/{}/f{i:03}.txt", ["a", "b", "c/d"][i % 3]),
                "ok\n".into(),
            )
        })
        .collect();
    let repo = Repo::with_config(&config);
    for (path, text) in &files {
        repo.write(path, text);
    }
    repo.run(&["install"]).code(0);
    repo.add_all();
    let skipped = crate::common::git_command(repo.path())
        .args(["commit", "-q", "-m", "initial"])
        .env("PREFLIGHT", "0")
        .output()
        .unwrap();
    assert!(skipped.status.success());
    for (path, _) in &files {
        repo.write(path, "staged\n");
    }
    repo.add_all();
    repo
}

#[test]
fn a_check_that_writes_one_of_many_files_fails_the_commit_however_it_writes() {
    let python = "python3 -c \\\"import mmap; f = open('many/a/f003.txt', 'r+b'); m = mmap.mmap(f.fileno(), 0); f.close(); m[0:1] = b'X'; m.flush()\\\"";
    let cases = [
        ("printf x >> many/b/f001.txt", "many/b/f001.txt"),
        (
            "printf 'new' > .git/t && mv .git/t many/c/d/f002.txt",
            "many/c/d/f002.txt",
        ),
        (python, "many/a/f003.txt"),
        ("chmod +x many/a/f006.txt", "many/a/f006.txt"),
        ("rm many/b/f004.txt", "many/b/f004.txt"),
        ("truncate -s 0 many/c/d/f005.txt", "many/c/d/f005.txt"),
        (
            "mv many/c .git/away && mkdir -p many/c/d && cp -p .git/away/d/* many/c/d/ && printf y >> many/c/d/f011.txt",
            "many/c/d/f011.txt",
        ),
        (
            "mv many/c/d many/c/e && mv many/c/e many/c/d && printf y >> many/c/d/f014.txt",
            "many/c/d/f014.txt",
        ),
        // Written through another name, made before or by the check itself.
        ("printf z >> .git/alias", "many/a/f009.txt"),
        (
            "ln many/a/f000.txt many/a/zz && printf EVIL >> many/a/zz && rm many/a/zz",
            "many/a/f000.txt",
        ),
        // Through a memory map that a process leaving the step keeps open past its end.
        (
            "setsid python3 -c \\\"import mmap, os, time; fd = os.open('many/b/f007.txt', os.O_RDWR); m = mmap.mmap(fd, 0); m[0:1] = b'X'; m.flush(); open('.git/written', 'w').close(); time.sleep(2)\\\" </dev/null >/dev/null 2>&1 & for i in $(seq 200); do [ -e .git/written ] && break; sleep 0.05; done",
            "many/b/f007.txt",
        ),
    ];
    for (how, written) in cases {
        let repo = many_files_and_a_check_that(how);
        std::fs::hard_link(
            repo.path().join("many/a/f009.txt"),
            repo.path().join(".git/alias"),
        )
        .unwrap();
        let commit = repo.commit("rewritten");
        let now = std::fs::read(repo.path().join(written)).unwrap_or_default();
        assert_ne!(
            commit.code,
            0,
            "{how}: {} ({written} holds {:?})",
            commit.stderr,
            String::from_utf8_lossy(&now)
        );
        assert!(
            commit.stderr.contains(&format!(
                "changed 1 tracked file: {written}; a check must not write"
            )),
            "{how}: {}",
            commit.stderr
        );
    }
    let repo = many_files_and_a_check_that("cat many/a/f000.txt > /dev/null");
    repo.commit("only read").code(0);
}

#[test]
fn a_run_of_a_check_that_writes_one_of_many_files_fails() {
    let repo = many_files_and_a_check_that("printf x >> many/b/f001.txt");
    let run = repo.run(&["run", "--no-cache", "sloppy"]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("changed 1 tracked file: many/b/f001.txt; a check must not write"),
        "{}",
        run.stdout
    );
}
