//! `preflight watch`: the real binary watching a real work tree, driven by file changes.
//! Every wait is for an event, with a time limit; nothing sleeps a fixed time.

use crate::common::{Repo, processes_with};
use serde_json::Value;
use std::io::BufRead;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

struct Watching {
    child: Option<Child>,
    events: Receiver<Value>,
    /// What preflight wrote on stderr, shown when an expected event does not come.
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Watching {
    fn start(repo: &Repo, args: &[&str]) -> Watching {
        let mut cmd = repo.cmd();
        cmd.arg("watch")
            .args(args)
            .args(["--format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let err_pipe = child.stderr.take().unwrap();
        let sink = std::sync::Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err_pipe)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Watching {
            child: Some(child),
            events,
            stderr,
        }
    }

    /// The next event named `name`, skipping others.
    fn next(&self, name: &str) -> Value {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.events.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no `{name}` event in time; stderr:\n{}",
                    self.stderr.lock().unwrap()
                )
            });
            if v["event"] == name {
                return v;
            }
        }
    }

    /// Waits for a whole run: its trigger and the steps that finished. A run restarted by a
    /// late event of the same change (a busy machine splits one write in two) is followed
    /// into the run that replaced it.
    fn run(&self) -> (Value, Vec<(String, String)>) {
        let mut paths: Vec<Value> = Vec::new();
        loop {
            let mut trigger = self.next("watch_triggered");
            for p in trigger["paths"].as_array().unwrap() {
                if !paths.contains(p) {
                    paths.push(p.clone());
                }
            }
            let mut finished = Vec::new();
            loop {
                let v = self.next_any();
                match v["event"].as_str() {
                    Some("step_finished") => finished.push((
                        v["step"].as_str().unwrap().to_string(),
                        v["status"].as_str().unwrap().to_string(),
                    )),
                    Some("run_finished") => break,
                    _ => {}
                }
            }
            if v_cancelled(&finished) {
                continue;
            }
            trigger["paths"] = Value::Array(paths);
            return (trigger, finished);
        }
    }

    /// The next whole run whose trigger names `path`; runs before it must not name `unwanted`.
    fn run_for(&self, path: &str, unwanted: &[&str]) -> (Value, Vec<(String, String)>) {
        loop {
            let (trigger, finished) = self.run();
            let paths = trigger["paths"].as_array().unwrap();
            for u in unwanted {
                assert!(
                    !paths.contains(&Value::from(*u)),
                    "{u} started a run: {trigger}"
                );
            }
            if paths.contains(&Value::from(path)) {
                return (trigger, finished);
            }
        }
    }

    fn next_any(&self) -> Value {
        self.events.recv_timeout(LIMIT).expect("an event in time")
    }

    fn interrupt(mut self) -> i32 {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "watch did not stop on Ctrl-C");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            crate::common::stop_child(child);
        }
    }
}

fn v_cancelled(finished: &[(String, String)]) -> bool {
    finished.iter().any(|(_, status)| status == "cancelled")
}

fn names(finished: &[(String, String)]) -> Vec<String> {
    let mut n: Vec<String> = finished.iter().map(|(s, _)| s.clone()).collect();
    n.sort();
    n
}

const CONFIG: &str = r#"
[steps.rust]
run = "true"
files = ["*.rs"]
[steps.docs]
run = "true"
files = ["*.md"]
[steps.after-rust]
run = "true"
needs = ["rust"]
inputs = ["Cargo.toml"]
[steps.gen]
run = "mkdir -p out && date +%s%N > out/stamp"
inputs = ["gen/**"]
outputs = ["out"]
"#;

fn watched_repo() -> Repo {
    let repo = Repo::with_config(CONFIG);
    repo.write(".gitignore", "*.log\nbuild/\n");
    repo.write("src/a.rs", "a");
    repo.write("README.md", "m");
    repo.write("gen/in.txt", "g");
    repo.add_all();
    repo
}

#[test]
fn a_change_reruns_exactly_the_steps_it_concerns() {
    let repo = watched_repo();
    let w = Watching::start(&repo, &[]);
    let (first, done) = w.run();
    assert_eq!(first["paths"].as_array().unwrap().len(), 0);
    assert_eq!(names(&done), ["after-rust", "docs", "gen", "rust"]);

    repo.write("src/a.rs", "changed");
    let (_, done) = w.run_for("src/a.rs", &[]);
    assert_eq!(
        names(&done),
        ["after-rust", "rust"],
        "the step and the one that needs it"
    );

    // Ignored files and the steps' own outputs start nothing.
    let unwanted = ["debug.log", "build/x.rs", "out/manual", "out/stamp"];
    repo.write("debug.log", "x");
    repo.write("build/x.rs", "x");
    repo.write("out/manual", "x");
    repo.write("README.md", "changed");
    let (trigger, done) = w.run_for("README.md", &unwanted);
    assert_eq!(trigger["paths"], serde_json::json!(["README.md"]));
    assert_eq!(names(&done), ["docs"]);

    // `gen` writes its declared output: no loop. A new folder and an editor's rename-save count.
    repo.write("gen/in.txt", "again");
    let (_, done) = w.run_for("gen/in.txt", &unwanted);
    assert_eq!(names(&done), ["gen"]);
    repo.write("new/deep/b.rs", "b");
    w.run_for("new/deep/b.rs", &unwanted);
    repo.write("src/.a.rs.swp", "tmp");
    std::fs::rename(
        repo.path().join("src/.a.rs.swp"),
        repo.path().join("src/a.rs"),
    )
    .unwrap();
    let (_, done) = w.run_for("src/a.rs", &unwanted);
    assert_eq!(names(&done), ["after-rust", "rust"]);
    assert_eq!(w.interrupt(), 0);
}

#[test]
fn a_burst_of_changes_is_one_run() {
    let repo = watched_repo();
    let w = Watching::start(&repo, &["docs"]);
    w.run();
    for i in 0..1000 {
        repo.write(format!("notes/n{i:04}.md"), "x");
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut runs = 0;
    while seen.len() < 1000 {
        let (trigger, done) = w.run();
        runs += 1;
        assert_eq!(names(&done), ["docs"]);
        for p in trigger["paths"].as_array().unwrap() {
            seen.insert(p.as_str().unwrap().to_string());
        }
    }
    assert!(runs <= 3, "1,000 files took {runs} runs");
    assert_eq!(w.interrupt(), 0);
}

#[test]
fn a_change_during_a_run_restarts_it_and_ctrl_c_leaves_nothing() {
    // Unique to this test process, so leftovers of another run cannot confuse it.
    let marker = format!("5151.{}", std::process::id());
    let repo = Repo::with_config(&format!(
        "[steps.slow]\nrun = \"touch .git/started; sleep {marker}\"\nfiles = [\"*.rs\"]\n"
    ));
    repo.write("a.rs", "a");
    repo.add_all();
    let w = Watching::start(&repo, &[]);
    w.next("watch_triggered");
    w.next("step_started");
    repo.write("a.rs", "changed while running");
    let finished = w.next("step_finished");
    assert_eq!(finished["status"], "cancelled");
    let trigger = w.next("watch_triggered");
    assert_eq!(trigger["steps"], serde_json::json!(["slow"]));
    w.next("step_started");
    let deadline = Instant::now() + LIMIT;
    while processes_with(&marker).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the restarted step never started its process"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(w.interrupt(), 0);
    let deadline = Instant::now() + LIMIT;
    while !processes_with(&marker).is_empty() {
        assert!(Instant::now() < deadline, "a step outlived Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn no_restart_queues_the_change() {
    let repo = Repo::with_config("[steps.slow]\nrun = \"sleep 1\"\nfiles = [\"*.rs\"]\n");
    repo.write("a.rs", "a");
    repo.add_all();
    let w = Watching::start(&repo, &["--no-restart"]);
    w.next("watch_triggered");
    w.next("step_started");
    repo.write("a.rs", "changed while running");
    assert_eq!(w.next("step_finished")["status"], "passed");
    let (_, done) = w.run_for("a.rs", &[]);
    assert_eq!(done, [("slow".to_string(), "passed".to_string())]);
    assert_eq!(w.interrupt(), 0);
}

#[test]
fn poll_mode_sees_changes_too() {
    let repo = watched_repo();
    let w = Watching::start(&repo, &["--poll", "docs"]);
    w.run();
    repo.write("README.md", "polled");
    w.run_for("README.md", &[]);
    assert_eq!(w.interrupt(), 0);
}
