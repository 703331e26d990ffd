//! Process groups: timeouts and Ctrl-C leave no process behind.

use crate::common::{Repo, Run, processes_with};
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

/// Waits until `check` holds, or panics after `limit`.
fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
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
