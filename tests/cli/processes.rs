//! Process groups: timeouts and Ctrl-C leave no process behind.

use crate::common::{Repo, Run, processes_with, wait_for};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A preflight process that is killed if the test fails before it ends.
struct Running(Option<std::process::Child>);

impl Running {
    fn signal(&self, signal: i32) {
        let pid = self.0.as_ref().expect("running").id() as i32;
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(pid, signal) };
    }

    fn finish(mut self) -> Run {
        Run::from(self.0.take().expect("running").wait_with_output().unwrap())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            crate::common::stop_child(child);
        }
    }
}

#[test]
fn a_timeout_kills_the_whole_process_group() {
    // The step starts a grandchild in the background and waits; both must die at the timeout.
    let marker = &format!("4242.{}", std::process::id());
    let repo = Repo::with_config(&format!(
        "[steps.hang]\nrun = \"sleep {marker} & sleep {marker}; wait\"\ntimeout = \"300ms\"\n[steps.fine]\nrun = \"true\"\n"
    ));
    let start = Instant::now();
    let run = repo.run(&["run"]);
    run.code(1);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the timeout did not stop the step"
    );
    assert_eq!(run.status_of("hang"), "timed out");
    assert!(
        run.line_of("hang").contains("300ms timeout"),
        "{}",
        run.stdout
    );
    assert_eq!(run.status_of("fine"), "passed");
    wait_for(Duration::from_secs(3), "the step's processes to go", || {
        processes_with(marker).is_empty()
    });
}

#[test]
fn ctrl_c_stops_every_step_and_leaves_no_process() {
    let marker = &format!("3131.{}", std::process::id());
    let repo = Repo::with_config(&format!(
        r#"
[steps.one]
run = "echo started >> started; sleep {marker} & sleep {marker}; wait"
[steps.two]
run = "echo started >> started; sh -c 'sleep {marker}'"
[steps.three]
run = "echo started >> started; trap '' TERM; sleep {marker}"
[steps.after]
run = "touch after-ran"
needs = ["one"]
"#
    ));
    let child = Running(Some(
        repo.cmd()
            .args(["run", "-j", "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let started = repo.path().join("started");
    wait_for(Duration::from_secs(10), "three steps to start", || {
        std::fs::read_to_string(&started).is_ok_and(|s| s.lines().count() == 3)
    });
    wait_for(Duration::from_secs(5), "the sleeps to start", || {
        processes_with(marker).len() >= 4
    });
    child.signal(libc::SIGINT);
    let start = Instant::now();
    let run = child.finish();
    run.code(130);
    // `three` ignores SIGTERM, so it goes at the SIGKILL after the grace period.
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "preflight took {:?} to stop",
        start.elapsed()
    );
    assert_eq!(run.status_of("one"), "cancelled");
    assert!(run.line_of("one").contains("interrupted"));
    assert_eq!(run.status_of("after"), "not run");
    assert!(run.stdout.contains("interrupted: "), "{}", run.stdout);
    assert!(!repo.path().join("after-ran").exists());
    wait_for(Duration::from_secs(3), "no process left behind", || {
        processes_with(marker).is_empty()
    });
}

#[test]
fn sigterm_is_handled_like_ctrl_c() {
    let marker = &format!("2718.{}", std::process::id());
    let repo = Repo::with_config(&format!(
        "[steps.wait]\nrun = \"touch started; sleep {marker}\"\n"
    ));
    let child = Running(Some(
        repo.cmd()
            .arg("run")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    wait_for(Duration::from_secs(10), "the step to start", || {
        !processes_with(marker).is_empty()
    });
    child.signal(libc::SIGTERM);
    let run = child.finish();
    run.code(130);
    wait_for(Duration::from_secs(3), "no process left behind", || {
        processes_with(marker).is_empty()
    });
}

/// Kills the processes a test's daemons left (they escaped every process group on purpose).
struct Daemons<'a>(&'a str);

impl Drop for Daemons<'_> {
    fn drop(&mut self) {
        for line in processes_with(self.0) {
            if let Some(pid) = line.split(':').next().and_then(|p| p.parse::<i32>().ok()) {
                // SAFETY: signalling a process this test started (through preflight).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

#[test]
fn a_daemon_that_leaves_the_group_does_not_hold_the_step() {
    let marker = &format!("5151.{}", std::process::id());
    let _daemons = Daemons(marker);
    let repo = Repo::with_config(&format!(
        "[steps.daemon]\nrun = \"(setsid sleep {marker} &); sleep 0.3; echo started\"\ntimeout = \"2s\"\n"
    ));
    let start = Instant::now();
    let run = repo.run(&["run"]);
    let took = start.elapsed();
    run.code(0);
    assert!(took < Duration::from_secs(5), "the run took {took:?}");
    assert_eq!(run.status_of("daemon"), "passed");
    // The leftover is named, by pid and command line.
    let daemon = processes_with(marker);
    assert_eq!(daemon.len(), 1, "{daemon:?}");
    let pid = daemon[0].split(':').next().unwrap();
    let warning = run
        .stdout
        .lines()
        .find(|l| l.contains("warning:"))
        .unwrap_or_else(|| panic!("no warning in:\n{}", run.stdout));
    assert!(
        warning.contains(&format!("pid {pid} `sleep {marker}`"))
            && warning.contains("step `daemon`")
            && warning.contains("did not wait"),
        "{warning}"
    );
    let json = repo.run(&["run", "--format", "json"]);
    assert!(
        json.stdout.contains("\"event\":\"step_left_processes\""),
        "{}",
        json.stdout
    );
    // What the step printed before it ended is all there.
    assert!(
        json.stdout.contains("\"output\":\"started\\n\""),
        "{}",
        json.stdout
    );
}

#[test]
fn the_timeout_acts_on_the_step_even_with_a_daemon_holding_its_output() {
    let marker = &format!("5252.{}", std::process::id());
    let _daemons = Daemons(marker);
    let repo = Repo::with_config(&format!(
        "[steps.daemon]\nrun = \"(setsid sleep {marker} &); echo before; sleep 30\"\ntimeout = \"500ms\"\n"
    ));
    let start = Instant::now();
    let run = repo.run(&["run"]);
    let took = start.elapsed();
    run.code(1);
    assert!(took < Duration::from_secs(5), "the run took {took:?}");
    assert_eq!(run.status_of("daemon"), "timed out");
    // What the step printed before it was killed is kept.
    assert!(run.stdout.contains("before"), "{}", run.stdout);
}

#[test]
fn ctrl_c_stops_a_step_whose_daemon_holds_its_output() {
    let marker = &format!("5353.{}", std::process::id());
    let _daemons = Daemons(marker);
    let repo = Repo::with_config(&format!(
        "[steps.daemon]\nrun = \"(setsid sleep {marker} &); touch started; sleep 30\"\n"
    ));
    let child = Running(Some(
        repo.cmd()
            .arg("run")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let started = repo.path().join("started");
    wait_for(Duration::from_secs(10), "the step to start", || {
        started.exists()
    });
    child.signal(libc::SIGINT);
    let start = Instant::now();
    let run = child.finish();
    run.code(130);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "preflight took {:?} to stop",
        start.elapsed()
    );
    assert_eq!(run.status_of("daemon"), "cancelled");
}
