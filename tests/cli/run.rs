//! `preflight run`: the graph, parallelism, failures, output formats.

use crate::common::Repo;
use std::time::{Duration, Instant};

#[test]
fn eight_steps_run_side_by_side() {
    // Each step records when it started and ended (ns). In between it waits, for at most
    // 20 s, until all eight have started: steps run side by side get through at once, steps
    // run one after another would each give up alone. The proof is that the eight intervals
    // overlap, which holds however slow the machine is.
    let step = r#"run = '''
date +%s%N > times/$PREFLIGHT_STEP.start
touch started/$PREFLIGHT_STEP
i=0
while [ "$(ls started | wc -l)" -lt 8 ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
date +%s%N > times/$PREFLIGHT_STEP.end
'''"#;
    let config: String = (0..8).map(|i| format!("[steps.s{i}]\n{step}\n")).collect();
    let repo = Repo::with_config(&config);
    std::fs::create_dir(repo.path().join("times")).unwrap();
    std::fs::create_dir(repo.path().join("started")).unwrap();
    let run = repo.run(&["run", "-j", "8"]);
    run.code(0);
    assert!(
        run.stdout.contains("8 passed, 0 failed, 0 skipped"),
        "{}",
        run.stdout
    );
    let time = |name: String| -> u128 {
        let text = String::from_utf8(repo.read(format!("times/{name}"))).unwrap();
        text.trim().parse().unwrap()
    };
    let starts: Vec<u128> = (0..8).map(|i| time(format!("s{i}.start"))).collect();
    let ends: Vec<u128> = (0..8).map(|i| time(format!("s{i}.end"))).collect();
    let last_start = *starts.iter().max().unwrap();
    let first_end = *ends.iter().min().unwrap();
    assert!(
        last_start < first_end,
        "with -j 8 the eight steps did not all run at once: starts {starts:?}, ends {ends:?}"
    );
}

/// A step that writes a line at a time (as `wc` does) is read in batches once its lines come
/// in a stream; every line still arrives, in order, from its own output and its stderr.
#[test]
fn output_written_a_line_at_a_time_is_kept_whole_and_in_order() {
    let repo = Repo::with_config(
        r#"
[steps.lines]
run = "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done; echo done >&2; exit 1"
"#,
    );
    let run = repo.run(&["run"]);
    run.code(1);
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("line-"))
        .collect();
    let expected: Vec<String> = (0..3000).map(|i| format!("line-{i}")).collect();
    assert_eq!(lines, expected, "{}", run.stdout);
    assert!(run.stdout.contains("\ndone\n"), "{}", run.stdout);
}

#[test]
fn jobs_bounds_how_many_run_at_once() {
    // Each step marks itself running and records how many steps are running at that moment.
    let step = r#"run = "touch running/$PREFLIGHT_STEP; ls running | wc -l >> peaks; sleep 0.2; rm running/$PREFLIGHT_STEP""#;
    let config: String = (0..6).map(|i| format!("[steps.s{i}]\n{step}\n")).collect();
    let repo = Repo::with_config(&config);
    repo.write("running/.keep", "");
    repo.run(&["run", "-j", "2"]).code(0);
    let peaks = String::from_utf8(repo.read("peaks")).unwrap();
    let max: usize = peaks
        .lines()
        .map(|l| l.trim().parse::<usize>().unwrap())
        .max()
        .unwrap();
    assert_eq!(peaks.lines().count(), 6);
    assert!(max <= 2, "more than 2 steps ran at once: {peaks}");
}

#[test]
fn needs_orders_steps_and_failures_stop_dependents() {
    let repo = Repo::with_config(
        r#"
[steps.build]
run = "echo built > built.txt"
[steps.test]
run = "test -f built.txt"
needs = ["build"]
[steps.lint]
run = "echo 'lint: bad style' >&2; exit 3"
[steps.docs]
run = "touch docs-ran"
needs = ["lint"]
[steps.publish]
run = "touch publish-ran"
needs = ["docs", "test"]
"#,
    );
    let run = repo.run(&["run"]);
    run.code(1);
    assert_eq!(run.status_of("build"), "passed");
    assert_eq!(run.status_of("test"), "passed");
    assert_eq!(run.status_of("lint"), "failed");
    assert!(run.line_of("lint").contains("exit code 3"));
    assert_eq!(run.status_of("docs"), "not run");
    assert!(run.line_of("docs").contains("needs `lint`, which failed"));
    assert!(
        run.line_of("publish")
            .contains("needs `docs`, which did not run")
    );
    assert!(!repo.path().join("docs-ran").exists());
    assert!(!repo.path().join("publish-ran").exists());
    // The failed step's output is shown once, as a block, and the summary counts everything.
    assert!(
        run.stdout.contains("── lint output ──\nlint: bad style\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("2 passed, 1 failed, 0 skipped, 2 not run in"),
        "{}",
        run.stdout
    );
}

#[test]
fn named_steps_run_with_what_they_need_only() {
    let repo = Repo::with_config(
        r#"
[steps.a]
run = "touch a"
[steps.b]
run = "touch b"
needs = ["a"]
[steps.c]
run = "touch c"
"#,
    );
    repo.run(&["run", "b"]).code(0);
    assert!(repo.path().join("a").exists() && repo.path().join("b").exists());
    assert!(!repo.path().join("c").exists());
}

#[test]
fn fail_fast_stops_running_steps_and_starts_nothing_new() {
    let repo = Repo::with_config(
        r#"
[steps.quick-fail]
run = "sleep 0.2; exit 1"
[steps.slow]
run = "sleep 20"
[steps.later]
run = "touch later-ran"
needs = ["slow"]
"#,
    );
    let start = Instant::now();
    let run = repo.run(&["run", "--fail-fast", "-j", "2"]);
    run.code(1);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "fail-fast did not stop `slow`"
    );
    assert_eq!(run.status_of("quick-fail"), "failed");
    assert_eq!(run.status_of("slow"), "cancelled");
    assert!(run.line_of("slow").contains("--fail-fast"));
    assert_eq!(run.status_of("later"), "not run");
    assert!(!repo.path().join("later-ran").exists());
}

#[test]
fn settings_fail_fast_works_like_the_flag() {
    let repo = Repo::with_config(
        "[settings]\nfail_fast = true\njobs = 2\n[steps.f]\nrun = \"exit 1\"\n[steps.s]\nrun = \"sleep 20\"\n",
    );
    let start = Instant::now();
    repo.run(&["run"]).code(1);
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn steps_get_env_dir_and_their_name() {
    let repo = Repo::with_config(
        r#"
[env]
GLOBAL = "g"
SHARED = "from-global"
[steps.show]
run = "echo \"$GLOBAL $SHARED $LOCAL $PREFLIGHT_STEP $(basename \"$PWD\")\" > ../out.txt"
dir = "sub"
env = { SHARED = "from-step", LOCAL = 7 }
"#,
    );
    repo.write("sub/.keep", "");
    repo.run(&["run"]).code(0);
    assert_eq!(repo.read("out.txt"), b"g from-step 7 show sub\n");
}

#[test]
fn a_missing_dir_fails_the_step_with_a_reason() {
    let repo = Repo::with_config("[steps.x]\nrun = \"true\"\ndir = \"nowhere\"\n");
    let run = repo.run(&["run"]);
    run.code(1);
    assert!(
        run.line_of("x")
            .contains("working directory `nowhere` does not exist")
    );
}

#[test]
fn array_commands_run_without_a_shell() {
    let repo = Repo::with_config(
        "[steps.x]\nrun = [\"sh\", \"-c\", \"echo $0 > out.txt\", \"$HOME;*\"]\n",
    );
    repo.run(&["run"]).code(0);
    assert_eq!(repo.read("out.txt"), b"$HOME;*\n");
}

#[test]
fn a_missing_program_says_so() {
    let repo = Repo::with_config("[steps.x]\nrun = [\"no-such-program-here\"]\n");
    let run = repo.run(&["run"]);
    run.code(1);
    assert!(
        run.line_of("x")
            .contains("cannot run `no-such-program-here`: not found"),
        "{}",
        run.stdout
    );
}

#[test]
fn json_format_prints_one_event_per_line() {
    let repo = Repo::with_config(
        "[steps.ok]\nrun = \"echo hi\"\n[steps.bad]\nrun = \"exit 4\"\n[steps.none]\nrun = \"true\"\nfiles = [\"*.nothing\"]\n",
    );
    let run = repo.run(&["run", "--format", "json"]);
    run.code(1);
    let events: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert_eq!(events[0]["event"], "run_started");
    assert_eq!(events[0]["steps"], 3);
    let finished = |step: &str| {
        events
            .iter()
            .find(|e| e["event"] == "step_finished" && e["step"] == step)
            .unwrap_or_else(|| panic!("no step_finished for {step}"))
    };
    assert_eq!(finished("ok")["status"], "passed");
    assert_eq!(finished("ok")["output"], "hi\n");
    assert_eq!(finished("bad")["status"], "failed");
    assert_eq!(finished("bad")["exit_code"], 4);
    assert_eq!(finished("none")["status"], "skipped");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "step_started" && e["step"] == "ok")
    );
    let last = events.last().unwrap();
    assert_eq!(last["event"], "run_finished");
    assert_eq!(
        (
            last["passed"].as_u64(),
            last["failed"].as_u64(),
            last["skipped"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(last["success"], false);
}

#[test]
fn verbose_streams_output_with_the_step_name() {
    let repo = Repo::with_config("[steps.talk]\nrun = \"echo one; echo two >&2\"\n");
    let run = repo.run(&["run", "-v"]);
    run.code(0);
    assert!(run.stdout.contains("talk │ one\n"), "{}", run.stdout);
    assert!(run.stdout.contains("talk │ two\n"), "{}", run.stdout);
}

#[test]
fn plain_output_has_no_escape_codes_and_github_gets_groups() {
    let repo = Repo::with_config("[steps.bad]\nrun = \"echo broken; exit 1\"\n");
    let run = repo.run(&["run"]);
    assert!(!run.stdout.contains('\x1b'), "{:?}", run.stdout);
    let gh = crate::common::Run::from(
        repo.cmd()
            .args(["run"])
            .env("GITHUB_ACTIONS", "true")
            .output()
            .unwrap(),
    );
    gh.code(1);
    assert!(
        gh.stdout
            .contains("::group::bad output\nbroken\n::endgroup::"),
        "{}",
        gh.stdout
    );
}

#[test]
fn usage_errors_exit_2_and_run_nothing() {
    let repo = Repo::with_config("[steps.test]\nrun = \"touch ran\"\n");
    let run = repo.run(&["run", "tset"]);
    run.code(2);
    assert!(
        run.stderr.contains("no step named `tset`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("did you mean `test`?"),
        "{}",
        run.stderr
    );
    repo.run(&["run", "--jobs", "many"]).code(2);
    assert!(!repo.path().join("ran").exists());
}

#[test]
fn config_is_found_from_a_subfolder_and_can_be_named() {
    let repo = Repo::with_config("[steps.root]\nrun = \"touch at-root\"\n");
    repo.write("deep/er/file.txt", "x");
    let run = crate::common::Run::from(
        repo.cmd()
            .current_dir(repo.path().join("deep/er"))
            .arg("run")
            .output()
            .unwrap(),
    );
    run.code(0);
    assert!(
        repo.path().join("at-root").exists(),
        "steps run from the repository root"
    );

    repo.write("other.toml", "[steps.other]\nrun = \"touch other-ran\"\n");
    repo.run(&["run", "--config", "other.toml"]).code(0);
    assert!(repo.path().join("other-ran").exists());

    let hidden = Repo::new();
    hidden.write(".preflight.toml", "[steps.h]\nrun = \"true\"\n");
    hidden.run(&["run"]).code(0);
}

#[test]
fn outside_a_repository_or_without_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::common::Run::from(
        std::process::Command::new(crate::common::BIN)
            .arg("run")
            .current_dir(dir.path())
            .env("GIT_CEILING_DIRECTORIES", dir.path().parent().unwrap())
            .output()
            .unwrap(),
    );
    out.code(3);
    assert!(
        out.stderr.contains("not inside a git repository"),
        "{}",
        out.stderr
    );

    let repo = Repo::new();
    let run = repo.run(&["run"]);
    run.code(3);
    assert!(
        run.stderr.contains("no preflight.toml found"),
        "{}",
        run.stderr
    );
}

#[test]
fn absurd_job_counts_are_refused_and_the_pool_never_outgrows_the_steps() {
    let repo = Repo::with_config("[steps.one]\nrun = \"true\"\n");
    for jobs in ["20000", "99999999999", "257", "many"] {
        let run = repo.run(&["run", "-j", jobs]);
        run.code(2);
        assert!(run.stderr.contains("--jobs"), "-j {jobs}: {}", run.stderr);
        assert_eq!(run.stdout, "", "-j {jobs}: nothing runs");
    }
    assert!(
        repo.run(&["run", "-j", "20000"])
            .stderr
            .contains("at most 256")
    );
    // One step needs one thread, whatever -j says.
    let run = repo.run(&["run", "-j", "256", "--format", "json"]);
    run.code(0);
    assert!(
        run.stdout.contains(r#""event":"run_started","jobs":1"#)
            || run.stdout.contains(r#""jobs":1,"#),
        "{}",
        run.stdout
    );
    repo.run(&["watch", "-j", "20000"]).code(2);
}

#[test]
fn a_step_over_many_files_keeps_the_threads_its_batches_can_use() {
    let repo =
        Repo::with_config("[steps.each]\nrun = [\"true\", \"{files}\"]\nfiles = [\"*.txt\"]\n");
    for i in 0..3 {
        repo.write(format!("f{i}.txt"), "x");
    }
    repo.add_all();
    let run = repo.run(&["run", "-j", "8", "--format", "json"]);
    run.code(0);
    assert!(run.stdout.contains(r#""jobs":3"#), "{}", run.stdout);
}

#[test]
fn the_longest_timeout_runs_without_overflow() {
    let repo = Repo::with_config("[steps.a]\nrun = \"true\"\ntimeout = \"365d\"\n");
    repo.run(&["run"]).code(0);
    let long = Repo::with_config("[steps.a]\nrun = \"true\"\ntimeout = \"9223372036854775807s\"\n");
    let run = long.run(&["run"]);
    run.code(2);
    assert!(run.stderr.contains("longer than a year"), "{}", run.stderr);
}

#[test]
fn a_missing_tool_in_a_command_string_is_named() {
    let repo = Repo::with_config(
        "[steps.fmt]\nrun = \"no-such-tool-4711 -d .\"\n[steps.script]\nrun = \"./tool.sh\"\n[steps.own]\nrun = \"exit 127\"\n",
    );
    repo.write("tool.sh", "#!/bin/sh\necho hi\n");
    let run = repo.run(&["run"]);
    run.code(1);
    assert!(
        run.line_of("fmt").ends_with(
            ": exit code 127: `no-such-tool-4711` not found (is it installed and on PATH?)"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.line_of("script").ends_with(
            ": exit code 126: `./tool.sh` cannot be run (is it executable, and a program?)"
        ),
        "{}",
        run.stdout
    );
    // A command that exits 127 on its own is not blamed on a missing tool.
    assert!(
        run.line_of("own").ends_with(": exit code 127"),
        "{}",
        run.stdout
    );
    let json = repo.run(&["run", "fmt", "--format", "json"]);
    assert!(
        json.stdout.contains("`no-such-tool-4711` not found"),
        "{}",
        json.stdout
    );
}

#[test]
fn a_file_given_twice_reaches_the_command_once() {
    let repo = Repo::with_config(
        "[steps.list]\nrun = \"printf '%s\\\\n' {files} >> seen\"\nfiles = [\"*.txt\"]\n",
    );
    repo.write("a.txt", "a");
    repo.write("b.txt", "b");
    repo.write(".gitignore", "seen\n");
    repo.add_all();
    repo.run(&["run", "--files", "a.txt", "a.txt", "./a.txt", "b.txt"])
        .code(0);
    assert_eq!(repo.read_string("seen"), "a.txt\nb.txt\n");
}

#[test]
fn explain_without_names_explains_every_step() {
    let repo = Repo::with_config(
        "[steps.lint]\nrun = \"true\"\nfiles = [\"*.txt\"]\n[steps.build]\nrun = \"true\"\ninputs = [\"*.txt\"]\n",
    );
    repo.write("a.txt", "a");
    repo.add_all();
    let run = repo.run(&["explain"]);
    run.code(0);
    assert!(run.stdout.contains("lint"), "{}", run.stdout);
    assert!(run.stdout.contains("build"), "{}", run.stdout);
    let one = repo.run(&["explain", "build"]);
    one.code(0);
    assert!(!one.stdout.contains("lint"), "{}", one.stdout);
}

#[test]
fn a_bad_remote_cache_variable_stops_run_as_a_bad_flag_does() {
    let repo = Repo::with_config("[steps.test]\nrun = \"touch ran\"\n");
    for value in ["bogus", "", " read"] {
        let run = crate::common::Run::from(
            repo.cmd()
                .env("PREFLIGHT_REMOTE_CACHE", value)
                .arg("run")
                .output()
                .unwrap(),
        );
        run.code(2);
        assert!(
            run.stderr.contains("PREFLIGHT_REMOTE_CACHE"),
            "{}",
            run.stderr
        );
        assert!(!repo.path().join("ran").exists());
    }
    let run = crate::common::Run::from(
        repo.cmd()
            .env("PREFLIGHT_REMOTE_CACHE", "off")
            .arg("run")
            .output()
            .unwrap(),
    );
    run.code(0);
    assert!(repo.path().join("ran").exists());
}

/// A plain command (`./who {files}`) runs its program directly, as a shell would have, with
/// `PWD` set to the folder it runs in; a command a shell must read still runs under `sh -c`.
#[test]
fn a_plain_command_runs_its_program_without_a_shell_between() {
    use std::os::unix::fs::PermissionsExt;
    let repo = Repo::with_config(
        "[steps.plain]\nrun = \"./who plain {files}\"\nfiles = [\"*.txt\"]\n\n\
         [steps.shell]\nrun = \"./who shell {files} && true\"\nfiles = [\"*.txt\"]\n\n\
         [steps.inner]\nrun = \"../who inner {files}\"\nfiles = [\"*.txt\"]\ndir = \"sub\"\n",
    );
    repo.write(
        "who",
        "#!/bin/sh\nname=$1; shift\n\
         printf '%s %s %s\\n' \"$(cat /proc/$PPID/comm)\" \"$PWD\" \"$*\" > \"$(dirname \"$0\")/$name.out\"\n",
    );
    let who = repo.path().join("who");
    std::fs::set_permissions(&who, std::fs::Permissions::from_mode(0o755)).unwrap();
    repo.write("a.txt", "a\n");
    repo.write("-b.txt", "b\n");
    repo.write("sub/c.txt", "c\n");
    repo.add_all();
    repo.run(&["run", "--no-cache"]).code(0);
    let root = repo.path().canonicalize().unwrap();
    let seen = |name: &str| repo.read_string(format!("{name}.out"));
    assert_eq!(
        seen("plain"),
        format!("preflight {} ./-b.txt a.txt sub/c.txt\n", root.display())
    );
    assert_eq!(
        seen("inner"),
        format!("preflight {}/sub c.txt\n", root.display())
    );
    assert!(seen("shell").starts_with("sh "), "{}", seen("shell"));
}
