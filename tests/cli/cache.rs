//! The content-hash cache: hits, every kind of miss, restored outputs, a damaged or
//! interrupted store, two runs at once, the size bound, and the explanations.

use crate::common::{BIN, Repo, Run};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A step with inputs and outputs that counts its real runs in `runs.log` (ignored by git).
const BUILD: &str = r#"
[steps.build]
run = "echo run >> runs.log; echo building; mkdir -p out; cat src/*.txt > out/all.txt"
inputs = ["src/**"]
outputs = ["out"]
"#;

fn cache_dir(repo: &Repo) -> PathBuf {
    repo.path().join(".git/preflight-cache")
}

/// A repository with `config`, `src/a.txt` and `src/b.txt`, committed.
fn repo_with(config: &str) -> Repo {
    let repo = Repo::with_config(config);
    repo.write(".gitignore", "runs.log\nout/\n");
    repo.write("src/a.txt", "alpha\n");
    repo.write("src/b.txt", "beta\n");
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "start"]);
    repo
}

fn runs(repo: &Repo) -> usize {
    std::fs::read_to_string(repo.path().join("runs.log"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn mode(path: &Path) -> u32 {
    path.symlink_metadata().unwrap().permissions().mode() & 0o7777
}

/// Every file below a folder.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

fn entries(repo: &Repo) -> usize {
    files_below(&cache_dir(repo).join("v1/ac")).len()
}

#[test]
fn a_passed_step_is_cached_and_its_log_replayed() {
    let repo = repo_with(BUILD);
    let first = repo.run(&["run"]);
    first.code(0);
    assert_eq!(first.status_of("build"), "passed");
    assert_eq!(runs(&repo), 1);

    let second = repo.run(&["run"]);
    second.code(0);
    assert_eq!(second.status_of("build"), "cached");
    assert!(second.stdout.contains("1 cached"), "{}", second.stdout);
    assert_eq!(runs(&repo), 1, "a hit must not run the command");

    // The log comes back: streamed with -v, and in the JSON event.
    let verbose = repo.run(&["run", "-v"]);
    assert!(
        verbose.stdout.contains("build │ building"),
        "{}",
        verbose.stdout
    );
    let json = repo.run(&["run", "--format", "json"]);
    let finished = json
        .stdout
        .lines()
        .find(|l| l.contains("step_finished"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(finished).unwrap();
    assert_eq!(v["status"], "cached");
    assert_eq!(v["output"], "building\n");
    assert!(json.stdout.contains(r#""cached":1"#), "{}", json.stdout);
    assert_eq!(runs(&repo), 1);
}

/// Runs once, applies `change`, and expects a real run whose explanation contains `why`.
#[track_caller]
fn miss_after(config: &str, change: impl FnOnce(&Repo), why: &str) {
    let repo = repo_with(config);
    repo.run(&["run"]).code(0);
    assert_eq!(repo.run(&["run"]).status_of("build"), "cached");
    change(&repo);
    let run = repo.run(&["run", "--explain"]);
    run.code(0);
    assert_eq!(run.status_of("build"), "passed", "{}", run.stdout);
    assert!(
        run.stdout.contains(why),
        "expected `{why}` in:\n{}",
        run.stdout
    );
    // And the new state is cached in turn.
    assert_eq!(repo.run(&["run"]).status_of("build"), "cached");
}

#[test]
fn an_edited_input_is_a_miss_that_names_the_file() {
    miss_after(
        BUILD,
        |r| r.write("src/a.txt", "ALPHA\n"),
        "files changed: src/a.txt",
    );
}

#[test]
fn a_mode_change_is_a_miss() {
    miss_after(
        BUILD,
        |r| {
            let p = r.path().join("src/b.txt");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        },
        "file modes changed: src/b.txt (100644 → 100755)",
    );
}

#[test]
fn a_new_untracked_file_matching_the_globs_is_a_miss() {
    miss_after(
        BUILD,
        |r| r.write("src/c.txt", "new\n"),
        "files added: src/c.txt",
    );
}

#[test]
fn an_ignored_file_is_not_an_input() {
    let repo = repo_with(BUILD);
    repo.write(".gitignore", "runs.log\nout/\nsrc/*.log\n");
    repo.run(&["run"]).code(0);
    repo.write("src/debug.log", "noise\n");
    assert_eq!(repo.run(&["run"]).status_of("build"), "cached");
}

#[test]
fn a_deleted_input_is_a_miss() {
    miss_after(
        BUILD,
        |r| std::fs::remove_file(r.path().join("src/b.txt")).unwrap(),
        "files removed: src/b.txt",
    );
}

#[test]
fn an_edited_command_is_a_miss() {
    miss_after(
        BUILD,
        |r| {
            let text = String::from_utf8(r.read("preflight.toml")).unwrap();
            r.write(
                "preflight.toml",
                text.replace("echo building", "echo building again"),
            );
        },
        "the command (`run`) was edited",
    );
}

#[test]
fn a_changed_key_env_value_is_a_miss_and_the_value_is_never_shown() {
    let config = format!("{BUILD}key_env = [\"FLAVOUR\"]\n");
    let repo = repo_with(&config);
    let run = |value: &str, args: &[&str]| {
        Run::from(
            repo.cmd()
                .args(args)
                .env("FLAVOUR", value)
                .output()
                .unwrap(),
        )
    };
    run("vanilla-secret", &["run"]).code(0);
    assert_eq!(run("vanilla-secret", &["run"]).status_of("build"), "cached");
    let changed = run("chocolate-secret", &["run", "--explain"]);
    assert_eq!(changed.status_of("build"), "passed");
    assert!(
        changed.stdout.contains("key_env values changed: FLAVOUR"),
        "{}",
        changed.stdout
    );
    assert!(!changed.stdout.contains("secret"), "{}", changed.stdout);
    // Values are not stored either, only their digests.
    for f in files_below(&cache_dir(&repo)) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("secret"),
            "{} holds an env value",
            f.display()
        );
    }
}

#[test]
fn a_changed_needed_step_is_a_miss() {
    let config = r#"
[steps.gen]
run = "mkdir -p out; cp src/a.txt out/gen.txt"
inputs = ["src/a.txt"]
outputs = ["out/gen.txt"]

[steps.build]
run = "echo run >> runs.log; echo building"
needs = ["gen"]
inputs = ["src/b.txt"]
"#;
    miss_after(
        config,
        |r| r.write("src/a.txt", "changed\n"),
        "needed step `gen` has a new key",
    );
}

#[test]
fn a_changed_key_command_output_is_a_miss() {
    let config = format!("{BUILD}key_commands = [\"cat tool-version\"]\n");
    let repo = repo_with(&config);
    repo.write("tool-version", "tool 1.0\n");
    repo.write(".gitignore", "runs.log\nout/\ntool-version\n");
    repo.run(&["run"]).code(0);
    assert_eq!(repo.run(&["run"]).status_of("build"), "cached");
    repo.write("tool-version", "tool 1.1\n");
    let run = repo.run(&["run", "--explain"]);
    assert_eq!(run.status_of("build"), "passed");
    assert!(
        run.stdout
            .contains("the output of `cat tool-version` changed: tool 1.0 → tool 1.1"),
        "{}",
        run.stdout
    );
}

#[test]
fn the_salt_throws_the_cache_away() {
    miss_after(
        BUILD,
        |r| {
            let text = String::from_utf8(r.read("preflight.toml")).unwrap();
            r.write(
                "preflight.toml",
                format!("[settings]\nsalt = \"2\"\n{text}"),
            );
        },
        "the cache salt",
    );
}

#[test]
fn outputs_come_back_byte_for_byte_and_mode_for_mode() {
    let config = r#"
[steps.build]
run = """
echo run >> runs.log
mkdir -p out/sub/empty
head -c 300000 /dev/urandom > out/sub/data.bin
printf '#!/bin/sh\necho hi\n' > out/tool && chmod 755 out/tool
echo private > out/secret && chmod 600 out/secret
echo s > out/setuid && chmod 4755 out/setuid
ln -s sub/data.bin out/latest
echo single > single.txt
"""
inputs = ["src/**"]
outputs = ["out", "single.txt"]
"#;
    let repo = repo_with(config);
    repo.write(".gitignore", "runs.log\nout/\nsingle.txt\n");
    repo.run(&["run"]).code(0);
    let out = repo.path().join("out");
    let data = std::fs::read(out.join("sub/data.bin")).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_file(repo.path().join("single.txt")).unwrap();

    let run = repo.run(&["run"]);
    run.code(0);
    assert_eq!(run.status_of("build"), "cached");
    assert_eq!(runs(&repo), 1);
    assert_eq!(std::fs::read(out.join("sub/data.bin")).unwrap(), data);
    assert_eq!(mode(&out.join("tool")), 0o755);
    assert_eq!(mode(&out.join("secret")), 0o600);
    assert_eq!(mode(&out.join("setuid")), 0o755, "setuid must be dropped");
    assert!(out.join("sub/empty").is_dir());
    assert_eq!(
        std::fs::read_link(out.join("latest")).unwrap(),
        Path::new("sub/data.bin")
    );
    assert_eq!(repo.read("single.txt"), b"single\n");
    let tool = std::process::Command::new(out.join("tool"))
        .output()
        .unwrap();
    assert_eq!(tool.stdout, b"hi\n");
}

#[test]
fn a_restore_replaces_stale_outputs_and_never_writes_through_a_symlink() {
    let config = r#"
[steps.build]
run = "echo run >> runs.log; mkdir -p out; echo fresh > out/a.txt; echo one > single.txt"
inputs = ["src/**"]
outputs = ["out", "single.txt"]
"#;
    let repo = repo_with(config);
    repo.write(".gitignore", "runs.log\nout/\nsingle.txt\nvictim/\n");
    repo.run(&["run"]).code(0);
    // Outputs replaced by symlinks that point at files the restore must not touch.
    repo.write("victim/a.txt", "precious\n");
    repo.write("victim/single.txt", "precious\n");
    std::fs::remove_dir_all(repo.path().join("out")).unwrap();
    std::fs::remove_file(repo.path().join("single.txt")).unwrap();
    std::os::unix::fs::symlink("victim", repo.path().join("out")).unwrap();
    std::os::unix::fs::symlink("victim/single.txt", repo.path().join("single.txt")).unwrap();
    // A stale file in an output folder goes away.
    let run = repo.run(&["run"]);
    assert_eq!(run.status_of("build"), "cached");
    assert_eq!(repo.read("victim/a.txt"), b"precious\n");
    assert_eq!(repo.read("victim/single.txt"), b"precious\n");
    let out = repo.path().join("out");
    assert!(
        out.symlink_metadata().unwrap().is_dir(),
        "out is a real folder again"
    );
    assert_eq!(repo.read("out/a.txt"), b"fresh\n");
    assert!(
        !repo
            .path()
            .join("single.txt")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    repo.write("out/stale.txt", "old\n");
    std::fs::remove_file(repo.path().join("out/a.txt")).unwrap();
    assert_eq!(repo.run(&["run"]).status_of("build"), "cached");
    assert!(!repo.path().join("out/stale.txt").exists());
    assert_eq!(repo.read("out/a.txt"), b"fresh\n");
}

#[test]
fn a_symlink_output_pointing_outside_the_repository_is_refused_at_store_time() {
    let config = r#"
[steps.build]
run = "echo run >> runs.log; mkdir -p out; ln -sf /etc/hostname out/escape"
inputs = ["src/**"]
outputs = ["out"]
"#;
    let repo = repo_with(config);
    let run = repo.run(&["run"]);
    run.code(0);
    assert_eq!(run.status_of("build"), "passed");
    assert!(
        run.line_of("build").contains(
            "not cached: output `out/escape` is a symlink to `/etc/hostname`, outside the repository"
        ),
        "{}",
        run.stdout
    );
    assert_eq!(entries(&repo), 0);
    assert_eq!(repo.run(&["run"]).status_of("build"), "passed");
    assert_eq!(runs(&repo), 2);
}

#[test]
fn a_missing_output_is_not_cached() {
    let config = r#"
[steps.build]
run = "echo run >> runs.log"
inputs = ["src/**"]
outputs = ["out/never.txt"]
"#;
    let repo = repo_with(config);
    let run = repo.run(&["run"]);
    run.code(0);
    assert!(
        run.line_of("build")
            .contains("not cached: the step did not write its output `out/never.txt`"),
        "{}",
        run.stdout
    );
    assert_eq!(repo.run(&["run"]).status_of("build"), "passed");
}

#[test]
fn a_failed_step_is_not_cached() {
    let config = r#"
[steps.build]
run = "echo run >> runs.log; exit 1"
inputs = ["src/**"]
"#;
    let repo = repo_with(config);
    repo.run(&["run"]).code(1);
    repo.run(&["run"]).code(1);
    assert_eq!(runs(&repo), 2);
    assert_eq!(entries(&repo), 0);
}

#[test]
fn a_hand_corrupted_blob_is_a_miss_never_a_partial_restore() {
    let repo = repo_with(BUILD);
    repo.run(&["run"]).code(0);
    let entry_file = &files_below(&cache_dir(&repo).join("v1/ac"))[0];
    let entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(entry_file).unwrap()).unwrap();
    let hash = entry["output_files"][0]["digest"]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = cache_dir(&repo)
        .join("v1/blobs/sha256")
        .join(&hash[..2])
        .join(&hash);
    std::fs::write(&blob, "garbage").unwrap();
    std::fs::remove_dir_all(repo.path().join("out")).unwrap();

    let run = repo.run(&["run", "--explain"]);
    run.code(0);
    assert_eq!(run.status_of("build"), "passed");
    assert!(run.stdout.contains("damaged"), "{}", run.stdout);
    assert_eq!(repo.read("out/all.txt"), b"alpha\nbeta\n");
    // The fresh result is stored whole again.
    std::fs::remove_dir_all(repo.path().join("out")).unwrap();
    assert_eq!(repo.run(&["run"]).status_of("build"), "cached");
    assert_eq!(repo.read("out/all.txt"), b"alpha\nbeta\n");
}

#[test]
fn two_runs_at_once_share_one_cache() {
    let config = r#"
[steps.build]
run = "sleep 0.3; mkdir -p out; head -c 200000 /dev/urandom > out/big.bin; echo done"
inputs = ["src/**"]
outputs = ["out"]
"#;
    let a = repo_with(config);
    let b = repo_with(config);
    let shared = a.path().join(".git/shared-cache");
    let spawn = |repo: &Repo| {
        repo.cmd()
            .arg("run")
            .env("PREFLIGHT_CACHE_DIR", &shared)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    for _ in 0..3 {
        let (pa, pb) = (spawn(&a), spawn(&b));
        let ra = Run::from(pa.wait_with_output().unwrap());
        let rb = Run::from(pb.wait_with_output().unwrap());
        ra.code(0);
        rb.code(0);
        // Start over: both miss again and race to store the same key.
        std::fs::remove_dir_all(shared.join("v1/ac")).unwrap();
    }
    let (pa, pb) = (spawn(&a), spawn(&b));
    Run::from(pa.wait_with_output().unwrap()).code(0);
    Run::from(pb.wait_with_output().unwrap()).code(0);
    // Whichever result won, both repositories now restore that one, whole.
    for repo in [&a, &b] {
        std::fs::remove_dir_all(repo.path().join("out")).unwrap();
        let run = Run::from(
            repo.cmd()
                .arg("run")
                .env("PREFLIGHT_CACHE_DIR", &shared)
                .output()
                .unwrap(),
        );
        run.code(0);
        assert_eq!(run.status_of("build"), "cached");
        assert_eq!(repo.read("out/big.bin").len(), 200_000);
    }
    assert_eq!(a.read("out/big.bin"), b.read("out/big.bin"));
    assert_eq!(files_below(&shared.join("v1/tmp")).len(), 0);
}

#[test]
fn a_kill_during_a_store_leaves_a_usable_cache() {
    let config = r#"
[steps.build]
run = "mkdir -p out; head -c 150000000 /dev/zero > out/big.bin; echo made"
inputs = ["src/**"]
outputs = ["out"]
"#;
    let repo = repo_with(config);
    let tmp = cache_dir(&repo).join("v1/tmp");
    let mut killed_while_storing = false;
    for _ in 0..10 {
        let _ = std::fs::remove_dir_all(cache_dir(&repo));
        let mut child = repo
            .cmd()
            .arg("run")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if !files_below(&tmp).is_empty() {
                child.kill().unwrap(); // SIGKILL
                killed_while_storing = true;
                break;
            }
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = child.wait();
        if killed_while_storing {
            break;
        }
    }
    assert!(killed_while_storing, "never caught preflight while storing");
    assert_eq!(entries(&repo), 0, "no entry without its blobs");

    // The next run misses and stores; the one after hits and restores the whole file.
    let run = repo.run(&["run"]);
    run.code(0);
    assert_eq!(run.status_of("build"), "passed");
    std::fs::remove_dir_all(repo.path().join("out")).unwrap();
    let run = repo.run(&["run"]);
    assert_eq!(run.status_of("build"), "cached");
    let big = repo.path().join("out/big.bin");
    assert_eq!(big.metadata().unwrap().len(), 150_000_000);
    // gc removes what the killed process left.
    repo.run(&["cache", "gc"]).code(0);
    assert!(files_below(&tmp).is_empty());
}

#[test]
fn gc_keeps_the_cache_under_its_bound() {
    let mut config = String::from("[settings]\ncache_max = \"300kB\"\n");
    for i in 0..6 {
        config.push_str(&format!(
            "[steps.s{i}]\nrun = \"mkdir -p out; head -c 80000 /dev/urandom > out/{i}.bin\"\n\
             inputs = [\"src/**\"]\noutputs = [\"out/{i}.bin\"]\n"
        ));
    }
    let repo = repo_with(&config);
    repo.run(&["run", "-j", "1"]).code(0);
    let size = |repo: &Repo| -> u64 {
        files_below(&cache_dir(repo).join("v1"))
            .iter()
            .filter(|p| {
                let s = p.to_string_lossy();
                s.contains("/blobs/") || s.contains("/ac/") || s.contains("/keys/")
            })
            .map(|p| p.metadata().unwrap().len())
            .sum()
    };
    assert!(size(&repo) <= 300_000, "cache holds {} bytes", size(&repo));
    let kept = entries(&repo);
    assert!((1..6).contains(&kept), "{kept} entries kept");
    // The most recently stored step is among those kept.
    let run = repo.run(&["run", "s5"]);
    assert_eq!(run.status_of("s5"), "cached");

    let stats = repo.run(&["cache", "stats"]);
    stats.code(0);
    assert!(stats.stdout.contains("of 300.00 kB"), "{}", stats.stdout);
    let gc = repo.run(&["cache", "gc"]);
    gc.code(0);
    assert!(size(&repo) <= 300_000);
    let clear = repo.run(&["cache", "clear"]);
    clear.code(0);
    assert_eq!(entries(&repo), 0);
    assert_eq!(repo.run(&["run", "s5"]).status_of("s5"), "passed");
}

#[test]
fn dry_run_prints_keys_hits_and_inputs_and_runs_nothing() {
    let repo = repo_with(BUILD);
    let dry = repo.run(&["run", "--dry-run", "--format", "json"]);
    dry.code(0);
    let v: serde_json::Value = serde_json::from_str(dry.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(v["step"], "build");
    assert_eq!(v["cache"], "miss");
    assert_eq!(v["key"].as_str().unwrap().len(), 64);
    let paths: Vec<&str> = v["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["src/a.txt", "src/b.txt"]);
    // The digest is git's blob id.
    let blob = repo.git(&["hash-object", "src/a.txt"]);
    assert_eq!(
        v["inputs"][0]["digest"].as_str().unwrap(),
        String::from_utf8_lossy(&blob.stdout).trim()
    );
    assert_eq!(runs(&repo), 0);
    assert_eq!(entries(&repo), 0);

    repo.run(&["run"]).code(0);
    let dry = repo.run(&["run", "--dry-run"]);
    assert!(dry.stdout.contains("build: hit"), "{}", dry.stdout);
    assert!(dry.stdout.contains("          src/a.txt"), "{}", dry.stdout);
    assert_eq!(runs(&repo), 1);
}

#[test]
fn no_cache_runs_everything_and_writes_nothing() {
    let repo = repo_with(BUILD);
    repo.run(&["run", "--no-cache"]).code(0);
    repo.run(&["run", "--no-cache"]).code(0);
    assert_eq!(runs(&repo), 2);
    assert_eq!(entries(&repo), 0);
    repo.run(&["run"]).code(0);
    assert_eq!(
        repo.run(&["run", "--no-cache"]).status_of("build"),
        "passed"
    );
}

#[test]
fn force_reruns_one_step() {
    let config = format!(
        "{BUILD}\n[steps.other]\nrun = \"echo other >> other.log\"\ninputs = [\"src/**\"]\n"
    );
    let repo = repo_with(&config);
    repo.run(&["run"]).code(0);
    let run = repo.run(&["run", "--force", "build", "--explain"]);
    run.code(0);
    assert_eq!(run.status_of("build"), "passed");
    assert_eq!(run.status_of("other"), "cached");
    assert!(
        run.stdout.contains("forced to run (--force)"),
        "{}",
        run.stdout
    );
    let bad = repo.run(&["run", "--force", "biuld"]);
    bad.code(2);
    assert!(
        bad.stderr.contains("did you mean `build`?"),
        "{}",
        bad.stderr
    );
}

#[test]
fn explain_says_why_a_step_would_run() {
    let repo = repo_with(BUILD);
    let never = repo.run(&["explain", "build"]);
    never.code(0);
    assert!(
        never.stdout.contains("no cache entry for this step yet"),
        "{}",
        never.stdout
    );
    repo.run(&["run"]).code(0);
    let hit = repo.run(&["explain", "build"]);
    assert!(hit.stdout.contains("build: cached"), "{}", hit.stdout);
    repo.write("src/a.txt", "edited\n");
    repo.write("src/new.txt", "new\n");
    let changed = repo.run(&["explain", "build"]);
    assert!(
        changed.stdout.contains("files changed: src/a.txt"),
        "{}",
        changed.stdout
    );
    assert!(
        changed.stdout.contains("files added: src/new.txt"),
        "{}",
        changed.stdout
    );
    assert_eq!(runs(&repo), 1, "explain runs nothing");
    repo.run(&["explain", "nope"]).code(2);
}

#[test]
fn a_step_with_files_is_keyed_on_them_and_one_without_is_not_cached() {
    let config = r#"
[steps.lint]
run = "echo lint >> runs.log"
files = ["*.txt"]

[steps.plain]
run = "echo plain >> plain.log"
"#;
    let repo = repo_with(config);
    repo.write(".gitignore", "runs.log\nplain.log\n");
    repo.run(&["run"]).code(0);
    let run = repo.run(&["run", "--explain"]);
    assert_eq!(run.status_of("lint"), "cached");
    assert_eq!(run.status_of("plain"), "passed");
    assert!(
        run.stdout
            .contains("not cached: the step has neither `inputs` nor `files`"),
        "{}",
        run.stdout
    );
    repo.write("src/a.txt", "changed\n");
    assert_eq!(repo.run(&["run"]).status_of("lint"), "passed");
    // --files narrows the run: a different set of files is a different key.
    assert_eq!(
        repo.run(&["run", "--files", "src/b.txt"]).status_of("lint"),
        "passed"
    );
    assert_eq!(
        repo.run(&["run", "--files", "src/b.txt"]).status_of("lint"),
        "cached"
    );
}

#[test]
fn outputs_and_inputs_outside_the_repository_are_config_errors() {
    let repo = Repo::with_config(
        r#"
[steps.build]
run = "true"
inputs = ["../elsewhere/**"]
outputs = ["/tmp/out", "../up", "dist/**"]
"#,
    );
    let run = repo.run(&["validate"]);
    run.code(2);
    assert!(
        run.stderr
            .contains("input `../elsewhere/**` of step `build` is outside the repository"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("invalid output `/tmp/out`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("invalid output `../up`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("write `dist` to keep the whole folder"),
        "{}",
        run.stderr
    );
}

#[test]
fn cache_commands_work_outside_a_repository() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["cache", "stats"])
        .current_dir(dir.path())
        .env("PREFLIGHT_CACHE_DIR", dir.path().join("c"))
        .output()
        .unwrap();
    let run = Run::from(out);
    run.code(0);
    assert!(run.stdout.contains("entries:  0"), "{}", run.stdout);
}

#[test]
fn a_cache_inside_the_work_tree_is_never_an_input() {
    let config = r#"
[settings]
cache_dir = ".cache-here"

[steps.build]
run = "echo run >> runs.log"
inputs = ["**"]
"#;
    let repo = repo_with(config);
    // Not ignored on purpose: the store's own files must still not count.
    repo.write(".gitignore", "runs.log\n");
    let run = |repo: &Repo| {
        Run::from(
            repo.cmd()
                .arg("run")
                .env_remove("PREFLIGHT_CACHE_DIR")
                .output()
                .unwrap(),
        )
    };
    run(&repo).code(0);
    assert!(repo.path().join(".cache-here/v1/ac").is_dir());
    assert_eq!(run(&repo).status_of("build"), "cached");
}

#[test]
fn inputs_with_names_that_are_not_utf8_are_keyed() {
    use std::os::unix::ffi::OsStrExt;
    let repo = repo_with(BUILD);
    let name = std::ffi::OsStr::from_bytes(b"src/caf\xe9.txt");
    std::fs::write(repo.path().join(name), "latin-1\n").unwrap();
    repo.run(&["run"]).code(0);
    assert_eq!(repo.run(&["run"]).status_of("build"), "cached");
    std::fs::write(repo.path().join(name), "changed\n").unwrap();
    let run = repo.run(&["run", "--explain"]);
    assert_eq!(run.status_of("build"), "passed");
    assert!(
        run.stdout.contains("files changed: src/caf"),
        "{}",
        run.stdout
    );
    // Staged, the same content gives the same key.
    repo.add_all();
    assert_eq!(repo.run(&["run"]).status_of("build"), "cached");
}

#[test]
fn a_step_after_a_skipped_one_is_still_cached() {
    let config = r#"
[steps.lint]
run = "true"
files = ["*.rs"]

[steps.build]
run = "echo run >> runs.log"
needs = ["lint"]
inputs = ["src/**"]
"#;
    let repo = repo_with(config);
    let run = repo.run(&["run"]);
    assert_eq!(run.status_of("lint"), "skipped");
    assert_eq!(run.status_of("build"), "passed");
    let run = repo.run(&["run"]);
    assert_eq!(run.status_of("lint"), "skipped");
    assert_eq!(run.status_of("build"), "cached");
}

#[test]
fn gc_evicts_the_least_recently_used_entries_first() {
    let steps: String = (0..4)
        .map(|i| {
            format!(
                "[steps.s{i}]\nrun = \"mkdir -p out; head -c 50000 /dev/urandom > out/{i}.bin\"\n\
                 inputs = [\"src/**\"]\noutputs = [\"out/{i}.bin\"]\n"
            )
        })
        .collect();
    let repo = repo_with(&steps);
    repo.run(&["run", "-j", "1"]).code(0);
    // s0 is the oldest entry, but using it makes it the most recent.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(repo.run(&["run", "s0"]).status_of("s0"), "cached");
    // A bound that fits about two entries.
    repo.write(
        "preflight.toml",
        format!("[settings]\ncache_max = \"125kB\"\n{steps}"),
    );
    repo.run(&["cache", "gc"]).code(0);
    let run = repo.run(&["run", "--dry-run"]);
    assert!(run.stdout.contains("s0: hit"), "{}", run.stdout);
    assert!(run.stdout.contains("s3: hit"), "{}", run.stdout);
    assert!(run.stdout.contains("s1: miss"), "{}", run.stdout);
    assert!(run.stdout.contains("s2: miss"), "{}", run.stdout);
}

#[test]
fn a_step_in_a_folder_is_keyed_on_its_files_by_their_repository_paths() {
    let config = r#"
[steps.web]
dir = "web"
run = "echo run >> ../runs.log; cat {files} > ../out.txt"
files = ["web/*.js"]
outputs = ["out.txt"]
"#;
    let repo = repo_with(config);
    repo.write("web/a.js", "a\n");
    repo.write("web/b.js", "b\n");
    repo.write(".gitignore", "runs.log\nout.txt\n");
    repo.add_all();
    repo.run(&["run"]).code(0);
    std::fs::remove_file(repo.path().join("out.txt")).unwrap();
    assert_eq!(repo.run(&["run"]).status_of("web"), "cached");
    assert_eq!(repo.read("out.txt"), b"a\nb\n");
    repo.write("web/b.js", "B\n");
    let run = repo.run(&["run", "--explain"]);
    assert_eq!(run.status_of("web"), "passed");
    assert!(
        run.stdout.contains("files changed: web/b.js"),
        "{}",
        run.stdout
    );
    assert_eq!(runs(&repo), 2);
}

#[test]
fn cached_steps_keep_jobs_and_order() {
    // Each step marks itself running and records how many steps are running at that moment.
    let step = r#"run = "touch running/$PREFLIGHT_STEP; ls running | wc -l >> peaks; echo $PREFLIGHT_STEP >> order; sleep 0.1; rm running/$PREFLIGHT_STEP"
inputs = ["src/**"]"#;
    let config: String = (0..4).map(|i| format!("[steps.s{i}]\n{step}\n")).collect();
    let repo = repo_with(&config);
    repo.write(".gitignore", "runs.log\npeaks\norder\nrunning/\n");
    std::fs::create_dir(repo.path().join("running")).unwrap();
    repo.run(&["run", "-j", "1"]).code(0);
    let order = String::from_utf8(repo.read("order")).unwrap();
    assert_eq!(order, "s0\ns1\ns2\ns3\n");
    let peaks = String::from_utf8(repo.read("peaks")).unwrap();
    assert!(peaks.lines().all(|l| l.trim() == "1"), "{peaks}");
}

#[test]
fn a_missing_blob_is_a_miss_and_the_entry_is_evicted() {
    let repo = repo_with(BUILD);
    repo.run(&["run"]).code(0);
    let entry_file = files_below(&cache_dir(&repo).join("v1/ac"))[0].clone();
    let entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&entry_file).unwrap()).unwrap();
    let hash = entry["output_files"][0]["digest"]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(
        cache_dir(&repo)
            .join("v1/blobs/sha256")
            .join(&hash[..2])
            .join(&hash),
    )
    .unwrap();
    repo.write("out/all.txt", "stale\n");
    // Seen by a dry run too: an entry without its blobs is no hit.
    let dry = repo.run(&["run", "--dry-run"]);
    assert!(dry.stdout.contains("build: miss"), "{}", dry.stdout);
    let run = repo.run(&["run", "--explain"]);
    assert_eq!(run.status_of("build"), "passed");
    assert!(run.stdout.contains("was removed"), "{}", run.stdout);
    assert_eq!(repo.read("out/all.txt"), b"alpha\nbeta\n");
    assert_eq!(runs(&repo), 2);
    assert_eq!(repo.run(&["run"]).status_of("build"), "cached");
}

#[test]
fn preflight_no_cache_in_the_environment_runs_everything_and_stores_nothing() {
    let repo = repo_with(BUILD);
    let run = crate::common::Run::from(
        repo.cmd()
            .arg("run")
            .env("PREFLIGHT_NO_CACHE", "1")
            .output()
            .unwrap(),
    );
    run.code(0);
    assert_eq!(entries(&repo), 0, "nothing stored");
    repo.run(&["run"]).code(0);
    let again = crate::common::Run::from(
        repo.cmd()
            .arg("run")
            .env("PREFLIGHT_NO_CACHE", "1")
            .output()
            .unwrap(),
    );
    assert_eq!(
        again.status_of("build"),
        "passed",
        "an entry exists, yet the step ran"
    );
}
