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
            .contains("the output of `cat tool-version` changed"),
        "{}",
        run.stdout
    );
    // What a key command prints may be a secret: never shown, never stored.
    assert!(!run.stdout.contains("tool 1."), "{}", run.stdout);
    for f in files_below(&cache_dir(&repo)) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("tool 1."),
            "{} holds a key command's output",
            f.display()
        );
    }
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
run = "echo lint {files} >> runs.log"
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

/// A step that counts its runs in `name.log` and fails when any of `files` says "bad".
fn grep_step(name: &str, files: &str) -> String {
    format!(
        "[steps.{name}]\nrun = \"echo run >> {name}.log; ! grep -l bad {files}\"\nfiles = [\"*.txt\"]\n"
    )
}

#[test]
fn a_needed_step_that_always_runs_and_writes_new_outputs_makes_its_dependent_run() {
    // `gen` has neither inputs nor files: it runs every time, from an ignored file.
    let config = r#"
[steps.gen]
run = "mkdir -p gen; cat stamp > gen/v.txt"
outputs = ["gen"]

[steps.use]
run = "cat gen/v.txt"
needs = ["gen"]
inputs = ["sub/**", "gen/**"]
"#;
    let repo = Repo::with_config(config);
    repo.write(".gitignore", "stamp\ngen/\n");
    repo.write("sub/x.txt", "x\n");
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "start"]);
    repo.write("stamp", "one\n");
    let first = repo.run(&["run", "-v"]);
    first.code(0);
    assert!(first.stdout.contains("use │ one"), "{}", first.stdout);
    repo.write("stamp", "two\n");
    let second = repo.run(&["run", "-v", "--explain"]);
    second.code(0);
    assert_eq!(second.status_of("use"), "passed", "{}", second.stdout);
    assert!(second.stdout.contains("use │ two"), "{}", second.stdout);
    assert!(
        second
            .stdout
            .contains("the outputs of needed step `gen` changed"),
        "{}",
        second.stdout
    );
    // Unchanged outputs: the dependent is a hit again.
    assert_eq!(repo.run(&["run"]).status_of("use"), "cached");
}

#[test]
fn an_input_glob_that_matches_only_ignored_files_is_reported() {
    let config = r#"
[steps.use]
run = "cat gen/v.txt"
inputs = ["sub/**", "gen/**"]
"#;
    let repo = Repo::with_config(config);
    repo.write(".gitignore", "gen/\n");
    repo.write("sub/x.txt", "x\n");
    repo.write("gen/v.txt", "one\n");
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "start"]);
    let run = repo.run(&["run"]);
    run.code(0);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("input `gen/**` matches no file: what it matches in `gen` is ignored by git"),
        "{all}"
    );
    assert!(!all.contains("input `sub/**`"), "{all}");
    // A glob that matches nothing there at all is no mistake to report.
    repo.write(
        "preflight.toml",
        config.replace("\"gen/**\"", "\"sub/**/*.py\""),
    );
    let run = repo.run(&["run"]);
    run.code(0);
    assert!(!run.stderr.contains("matches no file"), "{}", run.stderr);
}

#[test]
fn a_command_without_the_files_placeholder_is_keyed_on_every_file_its_globs_match() {
    let repo = Repo::with_config(&grep_step("check", "*.txt"));
    repo.write(".gitignore", "*.log\n");
    repo.write("a.txt", "fine\n");
    repo.write("b.txt", "fine\n");
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "start"]);
    repo.run(&["run", "--files", "a.txt"]).code(0);
    repo.write("b.txt", "bad\n");
    let run = repo.run(&["run", "--files", "a.txt", "--explain"]);
    run.code(1);
    assert_eq!(run.status_of("check"), "failed", "{}", run.stdout);
    assert!(
        run.stdout.contains("files changed: b.txt"),
        "{}",
        run.stdout
    );

    // The pre-commit hook: staging a previously seen a.txt must not replay a pass while
    // the committed b.txt fails.
    let repo = Repo::with_config(&format!(
        "{}[hooks]\npre-commit = [\"check\"]\n",
        grep_step("check", "*.txt")
    ));
    repo.write(".gitignore", "*.log\n");
    repo.write("a.txt", "fine\n");
    repo.write("b.txt", "fine\n");
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "start"]);
    repo.run(&["install"]).code(0);
    for content in ["fine too\n", "fine\n"] {
        repo.write("a.txt", content);
        repo.git(&["add", "a.txt"]);
        repo.commit("a").code(0);
    }
    repo.write("b.txt", "bad\n");
    repo.git(&["add", "b.txt"]);
    repo.git(&["commit", "-q", "--no-verify", "-m", "bad b"]);
    repo.write("a.txt", "fine too\n");
    repo.git(&["add", "a.txt"]);
    let commit = repo.commit("a seen before");
    assert_ne!(commit.code, 0, "{}{}", commit.stdout, commit.stderr);
}

#[test]
fn a_submodule_is_keyed_on_its_commit_and_its_changes() {
    let sub = Repo::new();
    sub.write("lib.txt", "v1\n");
    sub.add_all();
    sub.git(&["commit", "-q", "-m", "v1"]);
    let repo = Repo::with_config(
        "[steps.build]\nrun = \"echo run >> runs.log; cat sm/lib.txt\"\ninputs = [\"sm/**\"]\n",
    );
    repo.write(".gitignore", "runs.log\n");
    let sub_path = sub.path().to_str().unwrap().to_string();
    repo.git(&[
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        &sub_path,
        "sm",
    ]);
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "start"]);
    let dry = repo.run(&["run", "--dry-run"]);
    assert!(dry.stdout.contains("inputs  1 file"), "{}", dry.stdout);
    assert!(dry.stdout.contains("          sm\n"), "{}", dry.stdout);
    repo.run(&["run"]).code(0);
    assert_eq!(repo.run(&["run"]).status_of("build"), "cached");
    assert_eq!(runs(&repo), 1);

    // A bump of the submodule, committed.
    let sm = repo.path().join("sm");
    let git_in_sm = |args: &[&str]| {
        let out = crate::common::git_command(&sm).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(sm.join("lib.txt"), "v2\n").unwrap();
    git_in_sm(&["commit", "-q", "-am", "v2"]);
    repo.git(&["add", "sm"]);
    repo.git(&["commit", "-q", "-m", "bump"]);
    assert_eq!(repo.run(&["run"]).status_of("build"), "passed");
    assert_eq!(repo.run(&["run"]).status_of("build"), "cached");

    // An uncommitted edit inside the submodule, and a second edit of the same file.
    std::fs::write(sm.join("lib.txt"), "v3\n").unwrap();
    assert_eq!(repo.run(&["run"]).status_of("build"), "passed");
    std::fs::write(sm.join("lib.txt"), "v4\n").unwrap();
    assert_eq!(repo.run(&["run"]).status_of("build"), "passed");
    assert_eq!(repo.run(&["run"]).status_of("build"), "cached");
    assert_eq!(runs(&repo), 4);
}

#[test]
fn skip_worktree_and_assume_unchanged_files_are_keyed_on_their_content() {
    for flag in ["--skip-worktree", "--assume-unchanged"] {
        let repo = repo_with(BUILD);
        repo.git(&["update-index", flag, "src/a.txt"]);
        repo.run(&["run"]).code(0);
        repo.write("src/a.txt", "edited once\n");
        let run = repo.run(&["run", "--explain"]);
        assert_eq!(run.status_of("build"), "passed", "{flag}: {}", run.stdout);
        assert!(
            run.stdout.contains("files changed: src/a.txt"),
            "{flag}: {}",
            run.stdout
        );
        assert_eq!(repo.run(&["run"]).status_of("build"), "cached", "{flag}");
        repo.write("src/a.txt", "edited twice\n");
        assert_eq!(repo.run(&["run"]).status_of("build"), "passed", "{flag}");
        assert_eq!(
            repo.read_string("out/all.txt"),
            "edited twice\nbeta\n",
            "{flag}"
        );
    }
}

#[test]
fn a_local_entry_that_records_a_failure_is_a_miss() {
    let repo = repo_with(BUILD);
    repo.run(&["run"]).code(0);
    let entry = files_below(&cache_dir(&repo).join("v1/ac")).pop().unwrap();
    let text = std::fs::read_to_string(&entry).unwrap();
    assert!(text.contains("\"exit_code\": 0"), "{text}");
    std::fs::write(&entry, text.replace("\"exit_code\": 0", "\"exit_code\": 1")).unwrap();
    let dry = repo.run(&["run", "--dry-run"]);
    assert!(dry.stdout.contains("build: miss"), "{}", dry.stdout);
    let run = repo.run(&["run", "--explain"]);
    assert_eq!(run.status_of("build"), "passed", "{}", run.stdout);
    assert!(
        run.stdout.contains("records a failure (exit code 1)"),
        "{}",
        run.stdout
    );
    assert_eq!(runs(&repo), 2);
}

/// A folder made read-only, undone when dropped: for root (who ignores file permissions, as
/// CI runs) a read-only bind mount of the folder over itself; for anyone else, its write bits
/// taken away.
enum ReadOnly {
    Mount(PathBuf),
    Modes(Vec<(PathBuf, u32)>),
}

impl ReadOnly {
    fn new(dir: &Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            let mut modes = Vec::new();
            let mut stack = vec![dir.to_path_buf()];
            while let Some(path) = stack.pop() {
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    for entry in std::fs::read_dir(&path).unwrap() {
                        stack.push(entry.unwrap().path());
                    }
                }
                if !meta.file_type().is_symlink() {
                    let mode = meta.permissions().mode();
                    modes.push((path.clone(), mode));
                    let ro = std::fs::Permissions::from_mode(mode & !0o222);
                    std::fs::set_permissions(&path, ro).unwrap();
                }
            }
            return ReadOnly::Modes(modes);
        }
        let mount = |args: &[&str]| {
            let out = std::process::Command::new("mount")
                .args(args)
                .arg(dir)
                .arg(dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "mount {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        mount(&["--bind"]);
        let guard = ReadOnly::Mount(dir.to_path_buf());
        mount(&["-o", "remount,ro,bind"]);
        guard
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        match self {
            ReadOnly::Mount(dir) => {
                let _ = std::process::Command::new("umount").arg(&*dir).status();
            }
            ReadOnly::Modes(modes) => {
                for (path, mode) in modes.iter().rev() {
                    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode));
                }
            }
        }
    }
}

#[test]
fn a_read_only_cache_is_still_read() {
    let repo = repo_with(BUILD);
    repo.run(&["run"]).code(0);
    std::fs::remove_dir_all(repo.path().join("out")).unwrap();
    let _ro = ReadOnly::new(&cache_dir(&repo));
    let hit = repo.run(&["run", "--explain"]);
    hit.code(0);
    assert_eq!(hit.status_of("build"), "cached", "{}", hit.stdout);
    assert!(!hit.stdout.contains("gone"), "{}", hit.stdout);
    assert_eq!(repo.read_string("out/all.txt"), "alpha\nbeta\n");
    assert_eq!(runs(&repo), 1);
    // A miss runs and says once that nothing can be stored; the run still passes.
    let config = format!("{BUILD}\n[steps.other]\nrun = \"true\"\ninputs = [\"src/**\"]\n");
    repo.write("preflight.toml", config);
    repo.write("src/a.txt", "changed\n");
    let miss = repo.run(&["run"]);
    miss.code(0);
    assert_eq!(miss.status_of("build"), "passed", "{}", miss.stdout);
    let all = format!("{}{}", miss.stdout, miss.stderr);
    assert_eq!(
        all.matches("cannot be written").count(),
        1,
        "one warning expected:\n{all}"
    );
}

/// A tool whose `--version` is slow and counts its calls in `calls.log`.
fn slow_tool(repo: &Repo, version: &str) -> PathBuf {
    let bin = repo.path().join(".git/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let tool = bin.join("slowtool");
    let log = repo.path().join("calls.log");
    std::fs::write(
        &tool,
        format!(
            "#!/bin/sh\necho call >> '{}'\nsleep 0.3\necho 'slowtool {version}'\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn a_plain_key_command_is_remembered_while_its_program_is_the_same_file() {
    let config = format!("{BUILD}key_commands = [\"slowtool --version\"]\n");
    let repo = repo_with(&config);
    repo.write(".gitignore", "runs.log\nout/\ncalls.log\n");
    let bin = slow_tool(&repo, "1.0");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let calls = || {
        std::fs::read_to_string(repo.path().join("calls.log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let run = |args: &[&str]| Run::from(repo.cmd().args(args).env("PATH", &path).output().unwrap());
    run(&["run"]).code(0);
    assert_eq!(calls(), 1);
    assert_eq!(run(&["run"]).status_of("build"), "cached");
    // Counted, not timed: a loaded machine can make any run slow.
    assert_eq!(calls(), 1, "a remembered key command is not run again");
    // A new program file (an upgrade): run again, and a new key.
    std::thread::sleep(Duration::from_millis(20));
    slow_tool(&repo, "2.0");
    let upgraded = run(&["run", "--explain"]);
    assert_eq!(upgraded.status_of("build"), "passed", "{}", upgraded.stdout);
    assert!(
        upgraded
            .stdout
            .contains("the output of `slowtool --version` changed"),
        "{}",
        upgraded.stdout
    );
    assert_eq!(calls(), 2);
}

#[test]
fn an_output_folder_holding_tracked_files_is_refused_before_anything_runs() {
    let config = r#"
[steps.codegen]
run = "echo run >> runs.log; echo 'pub fn gen() {}' > src/gen.rs"
inputs = ["schema.txt"]
outputs = ["src"]
"#;
    let repo = Repo::with_config(config);
    repo.write(".gitignore", "runs.log\n");
    repo.write("schema.txt", "s\n");
    repo.write("src/main.rs", "fn main() {}\n");
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "start"]);
    let run = repo.run(&["run"]);
    run.code(2);
    assert!(
        run.stderr
            .contains("declares the output folder `src`, which holds tracked files: src/main.rs"),
        "{}",
        run.stderr
    );
    assert_eq!(runs(&repo), 0);
    assert_eq!(repo.read_string("src/main.rs"), "fn main() {}\n");
}

#[test]
fn a_restore_never_deletes_files_git_does_not_ignore() {
    // `out` is not ignored and not committed: files a user puts there are their own.
    let repo = Repo::with_config(BUILD);
    repo.write(".gitignore", "runs.log\n");
    repo.write("src/a.txt", "alpha\n");
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "start"]);
    repo.run(&["run"]).code(0);
    repo.write("out/notes.md", "precious\n");
    repo.write("out/all.txt", "hand edit\n");
    let run = repo.run(&["run"]);
    run.code(0);
    assert_eq!(run.status_of("build"), "passed", "{}", run.stdout);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("would delete or overwrite `out/notes.md`"),
        "a refusal must be said: {all}"
    );
    assert_eq!(repo.read_string("out/notes.md"), "precious\n");
    // Ignored leftovers are stale outputs: a restore replaces them.
    let repo = repo_with(BUILD);
    repo.run(&["run"]).code(0);
    repo.write("out/stale.txt", "old output\n");
    assert_eq!(repo.run(&["run"]).status_of("build"), "cached");
    assert!(!repo.path().join("out/stale.txt").exists());
}

/// A small deterministic generator, so that a failing sequence can be replayed from its seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

#[test]
fn random_edits_of_every_kind_never_give_a_false_hit() {
    // Each step's log names what it saw; a hit must replay exactly what a run would print.
    let seed = std::env::var("PREFLIGHT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed {seed} (replay with PREFLIGHT_TEST_SEED={seed})");
    let mut rng = Lcg(seed);
    let sub = Repo::new();
    sub.write("lib.txt", "0\n");
    sub.add_all();
    sub.git(&["commit", "-q", "-m", "0"]);
    let config = r#"
[steps.gen]
run = "mkdir -p gen; cat stamp > gen/v.txt"
outputs = ["gen"]

[steps.use]
run = "cat gen/v.txt src/*.txt"
needs = ["gen"]
inputs = ["src/**"]

[steps.whole]
run = "cat src/*.txt"
files = ["src/*.txt"]

[steps.sub]
run = "cat sm/lib.txt"
inputs = ["sm/**"]

[steps.hidden]
run = "cat src/a.txt conf/hidden.txt; if test -e conf/optional; then cat conf/optional; fi"
files = ["src/a.txt"]
"#;
    let repo = Repo::with_config(config);
    repo.write(".gitignore", "stamp\ngen/\n");
    repo.write("stamp", "0\n");
    for f in ["a", "b", "c"] {
        repo.write(format!("src/{f}.txt"), format!("{f}0\n"));
    }
    repo.write("conf/hidden.txt", "h0\n");
    let sub_path = sub.path().to_str().unwrap().to_string();
    repo.git(&[
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        &sub_path,
        "sm",
    ]);
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "start"]);
    repo.git(&["update-index", "--skip-worktree", "src/c.txt"]);
    let sm = repo.path().join("sm");
    let expected = |repo: &Repo, step: &str| -> String {
        let script = match step {
            "use" => "cat gen/v.txt src/*.txt",
            "whole" => "cat src/*.txt",
            "hidden" => {
                "cat src/a.txt conf/hidden.txt; if test -e conf/optional; then cat conf/optional; fi"
            }
            _ => "cat sm/lib.txt",
        };
        let out = std::process::Command::new("sh")
            .args(["-c", script])
            .current_dir(repo.path())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    for round in 0..12 {
        let what = rng.next(7);
        let n = rng.next(1000);
        match what {
            // The always-run needed step writes something new.
            0 => repo.write("stamp", format!("{n}\n")),
            // A file the whole-tree step reads but `--files` does not name.
            1 => repo.write("src/b.txt", format!("b{n}\n")),
            // A skip-worktree file edited in place.
            2 => repo.write("src/c.txt", format!("c{n}\n")),
            // A submodule bump, committed.
            3 => {
                std::fs::write(sm.join("lib.txt"), format!("{n}\n")).unwrap();
                let out = crate::common::git_command(&sm)
                    .args(["commit", "-q", "-am", "bump"])
                    .output()
                    .unwrap();
                assert!(out.status.success());
                repo.git(&["add", "sm"]);
                repo.git(&["commit", "-q", "-m", "bump"]);
            }
            // A file the step reads without declaring it.
            4 => repo.write("conf/hidden.txt", format!("h{n}\n")),
            // A file the step looks for: it appears, or goes.
            5 => {
                let optional = repo.path().join("conf/optional");
                if optional.exists() {
                    std::fs::remove_file(optional).unwrap();
                } else {
                    repo.write("conf/optional", format!("o{n}\n"));
                }
            }
            // Nothing: the next run must be all hits.
            _ => {}
        }
        // Make gen's output match the stamp as the run will.
        let run = repo.run(&["run", "-v", "--files", "src/a.txt", "--format", "json"]);
        run.code(0);
        std::fs::create_dir_all(repo.path().join("gen")).unwrap();
        for step in ["use", "whole", "sub", "hidden"] {
            let finished: serde_json::Value = run
                .stdout
                .lines()
                .filter(|l| l.contains("step_finished"))
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .find(|v| v["step"] == step)
                .unwrap_or_else(|| panic!("no result for {step}: {}", run.stdout));
            assert_eq!(
                finished["output"].as_str().unwrap(),
                expected(&repo, step),
                "round {round} (edit kind {what}, seed {seed}): `{step}` was {}",
                finished["status"]
            );
        }
    }
}

/// A dry run computes keys as the run does: a fixer is never cached, so neither it nor a
/// step that needs it has a key, and the dry run must not promise one.
#[test]
fn a_dry_run_of_fixers_says_what_the_run_does() {
    let repo = repo_with(
        "[steps.fmt]\nrun = \"true\"\nfix = \"true\"\nfiles = [\"src/*.txt\"]\n\
         [steps.lint]\nrun = \"echo run >> runs.log\"\ninputs = [\"src/**\"]\nneeds = [\"fmt\"]\n",
    );
    let states = |run: &crate::common::Run| -> Vec<(String, String)> {
        run.stdout
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                (
                    v["step"].as_str().unwrap().to_string(),
                    v["cache"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let dry = repo.run(&["run", "--fix", "--dry-run", "--format", "json"]);
    dry.code(0);
    let not_cached = vec![
        ("fmt".to_string(), "not_cached".to_string()),
        ("lint".to_string(), "not_cached".to_string()),
    ];
    assert_eq!(states(&dry), not_cached, "{}", dry.stdout);
    let explained = repo.run(&["run", "--fix", "--explain"]);
    explained.code(0);
    assert!(
        explained
            .stdout
            .contains("not cached: needed step `fmt` has no key"),
        "{}",
        explained.stdout
    );
    // The real run cached nothing, as the dry run said.
    assert_eq!(repo.run(&["run", "--fix"]).status_of("lint"), "passed");
    assert_eq!(runs(&repo), 2);
    let dry = repo.run(&["run", "--fix", "--dry-run", "--format", "json"]);
    assert_eq!(states(&dry), not_cached, "{}", dry.stdout);
    // Without --fix the check is cached like any step.
    let dry = repo.run(&["run", "--dry-run", "--format", "json"]);
    assert_eq!(
        states(&dry),
        vec![
            ("fmt".to_string(), "miss".to_string()),
            ("lint".to_string(), "miss".to_string()),
        ],
        "{}",
        dry.stdout
    );
}

/// `run --from --dry-run` judges the commit, as the run does: a file deleted in the work tree
/// but present in the commit does not make its step look skipped.
#[test]
fn a_dry_run_of_a_commit_reads_the_commit_not_the_work_tree() {
    let repo = repo_with(
        "[steps.check]\nrun = \"echo run >> runs.log; cat {files}\"\nfiles = [\"src/*.txt\"]\n",
    );
    repo.write("src/c.txt", "gamma\n");
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "c"]);
    std::fs::remove_file(repo.path().join("src/c.txt")).unwrap();
    let dry = repo.run(&["run", "--from", "HEAD~1", "--dry-run", "--format", "json"]);
    dry.code(0);
    let v: serde_json::Value = serde_json::from_str(dry.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(v["step"], "check");
    assert_eq!(v["cache"], "miss", "{}", dry.stdout);
    let run = repo.run(&["run", "--from", "HEAD~1"]);
    run.code(0);
    assert_eq!(run.status_of("check"), "passed");
}
